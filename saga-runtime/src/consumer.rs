//! The consumer loop: every event is applied at most once and its offset is stored only after
//! the database transaction that applied it has committed.
//!
//! Guarantees and how they are kept:
//! - **Once**: each event is claimed in the [inbox](crate::inbox) in the same transaction as
//!   its effects, so a redelivery (after a crash, a rebalance or a replay) finds the claim and
//!   changes nothing.
//! - **Nothing lost**: a partition's stored offset is its lowest offset not yet finished, so a
//!   crash redelivers everything unfinished. A failing handler is retried with backoff, never
//!   skipped; only unreadable or invalid events are set aside, on the dead-letter topic, and
//!   only once Kafka has acknowledged them there.
//! - **Per-order order, cross-order concurrency** (SPEC §4 rule 9): events are queued per order
//!   id, one worker per order with work, so a saga that waits holds up only itself.
//!
//! Stopping (the shutdown token) fetches nothing more, lets running handlers finish, and commits
//! the stored offsets before returning.

use std::{
    collections::{BTreeSet, HashMap, hash_map::Entry},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use common_events::{Envelope, InvalidEvent, OrderId};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer as _, StreamConsumer},
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{config::Config, inbox, kafka, metrics::Metrics, outbox::backoff};

/// Events fetched but not yet finished, across all orders: back-pressure for slow handlers.
const MAX_IN_FLIGHT: usize = 1024;

/// What a handler did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Recorded in the inbox with this reason, but not acted on (SPEC §4 rules 2–4).
    Ignored(&'static str),
}

/// A service's reaction to the events it consumes.
pub trait EventHandler: Send + Sync + 'static {
    /// Whether this service acts on `event_type`; other events are passed over unread.
    fn consumes(&self, event_type: &str) -> bool;

    /// Runs before the event's transaction begins, holding no database connection: the place
    /// for a deliberate wait (the exchange's fault hook), so that a waiting saga ties up
    /// nothing the others need.
    fn before_transaction(&self, _event: &Envelope) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Applies `event` inside the transaction `conn`, writing state and outbox rows there.
    /// An error rolls the transaction back and the event is retried.
    fn handle(
        &self,
        conn: &mut PgConnection,
        event: &Envelope,
    ) -> impl Future<Output = anyhow::Result<Outcome>> + Send;
}

/// Runs the consumer until `shutdown`.
pub async fn run<H: EventHandler>(
    config: Config,
    pool: PgPool,
    producer: FutureProducer,
    handler: Arc<H>,
    metrics: Metrics,
    membership: kafka::GroupMembership,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let consumer = Arc::new(kafka::consumer(&config.kafka, membership)?);
    consumer
        .subscribe(&[&config.kafka.topic])
        .with_context(|| format!("cannot subscribe to {}", config.kafka.topic))?;
    let loop_ = Arc::new(Loop {
        consumer: consumer.clone(),
        pool,
        producer,
        handler,
        metrics,
        topic: config.kafka.topic.clone(),
        dead_letter_topic: config.kafka.dead_letter_topic.clone(),
        app: config.app,
        crash_after_commit: config.crash_after_commit.clone(),
        state: Mutex::new(State::default()),
        workers: TaskTracker::new(),
        shutdown: shutdown.clone(),
    });
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut failures = 0;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.context("permits closed")?,
        };
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => {
                failures = 0;
                loop_.dispatch(message.detach(), permit);
            }
            Err(error) => {
                failures += 1;
                loop_.metrics.error("consume", "kafka");
                tracing::warn!(error.message = %error, "kafka consumer error");
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
    // Queued events that have not started stay unfinished, so they are redelivered later.
    loop_.state_lock().queues.clear();
    loop_.workers.close();
    loop_.workers.wait().await;
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .or_else(|e| match e.rdkafka_error_code() {
            // Nothing was consumed since the last commit.
            Some(rdkafka::types::RDKafkaErrorCode::NoOffset) => Ok(()),
            _ => Err(e),
        })
        .context("cannot commit offsets at shutdown")?;
    Ok(())
}

/// The shared parts of one consumer loop; workers reach it through an `Arc`.
struct Loop<H> {
    consumer: Arc<StreamConsumer<kafka::ConsumerEvents>>,
    pool: PgPool,
    producer: FutureProducer,
    handler: Arc<H>,
    metrics: Metrics,
    topic: String,
    dead_letter_topic: String,
    app: &'static str,
    crash_after_commit: Option<String>,
    state: Mutex<State>,
    workers: TaskTracker,
    shutdown: CancellationToken,
}

/// Bookkeeping shared by the fetch loop and the workers; held only for map updates.
#[derive(Default)]
struct State {
    partitions: HashMap<i32, PartitionOffsets>,
    /// One queue per order that has events waiting or running; removed when it drains.
    queues: HashMap<OrderId, Queue>,
}

struct Queue {
    sender: mpsc::UnboundedSender<Job>,
    pending: usize,
}

/// A fetched event on its way through a worker; the permit is returned when it is dropped.
struct Job {
    message: OwnedMessage,
    event: Envelope,
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct PartitionOffsets {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset fetched: the watermark when nothing is in flight.
    next: i64,
}

impl PartitionOffsets {
    fn start(&mut self, offset: i64) {
        self.in_flight.insert(offset);
        self.next = self.next.max(offset + 1);
    }

    /// Finishes `offset`; returns the new committable offset (the lowest unfinished one).
    fn finish(&mut self, offset: i64) -> i64 {
        self.in_flight.remove(&offset);
        self.in_flight.first().copied().unwrap_or(self.next)
    }
}

impl<H: EventHandler> Loop<H> {
    fn state_lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker never panics while holding the lock, but if one did the maps are still
        // consistent (every update is a single insert or remove), so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn dispatch(self: &Arc<Self>, message: OwnedMessage, permit: OwnedSemaphorePermit) {
        let (partition, offset) = (message.partition(), message.offset());
        self.state_lock()
            .partitions
            .entry(partition)
            .or_default()
            .start(offset);

        // Known events this service does not consume are passed over without parsing.
        let event_type = header(&message, "type");
        if let Some(event_type) = &event_type
            && is_known(event_type)
            && !self.handler.consumes(event_type)
        {
            self.finish(partition, offset, None);
            return;
        }
        let event = match Envelope::from_json(message.payload().unwrap_or_default()) {
            Ok(event) => event,
            Err(invalid) => {
                let this = self.clone();
                self.workers.spawn(async move {
                    if this.dead_letter(&message, &invalid).await {
                        this.finish(partition, offset, None);
                    }
                    drop(permit);
                });
                return;
            }
        };
        if !self.handler.consumes(event.event.event_type()) {
            self.finish(partition, offset, None);
            return;
        }
        let order_id = event.order_id;
        let job = Job {
            message,
            event,
            _permit: permit,
        };
        let mut state = self.state_lock();
        match state.queues.entry(order_id) {
            Entry::Occupied(mut queue) => {
                let queue = queue.get_mut();
                queue.pending += 1;
                // The worker only exits after removing its queue under this lock, so it is alive.
                let _ = queue.sender.send(job);
            }
            Entry::Vacant(slot) => {
                let (sender, receiver) = mpsc::unbounded_channel();
                let _ = sender.send(job);
                slot.insert(Queue { sender, pending: 1 });
                let this = self.clone();
                self.workers.spawn(async move { this.work(receiver).await });
            }
        }
    }

    /// Applies one order's events in offset order until its queue drains.
    async fn work(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            if self.shutdown.is_cancelled() {
                return; // unfinished: redelivered after restart
            }
            let span = tracing::info_span!(
                "event",
                order.id = job.event.order_id,
                event.id = %job.event.event_id,
                event.r#type = job.event.event.event_type(),
                kafka.partition = job.message.partition(),
                kafka.offset = job.message.offset(),
            );
            let applied = async {
                self.handler.before_transaction(&job.event).await;
                self.apply_with_retry(&job.event).await
            };
            if !applied.instrument(span).await {
                return;
            }
            self.finish(
                job.message.partition(),
                job.message.offset(),
                Some(job.event.order_id),
            );
        }
    }

    /// Retries until the event is applied; `false` if shutdown came first.
    async fn apply_with_retry(&self, event: &Envelope) -> bool {
        let event_type = event.event.event_type();
        for attempt in 1.. {
            match self.apply(event).await {
                Ok(()) => return true,
                Err(error) => {
                    self.metrics.error(event_type, "handler");
                    tracing::warn!(
                        error.message = format!("{error:#}"),
                        attempt,
                        "cannot apply event, retrying"
                    );
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
            }
        }
        false
    }

    async fn apply(&self, event: &Envelope) -> anyhow::Result<()> {
        let event_type = event.event.event_type();
        let mut tx = self
            .pool
            .begin()
            .await
            .context("cannot begin transaction")?;
        if !inbox::claim(&mut tx, event)
            .await
            .context("cannot claim event in inbox")?
        {
            tx.commit().await.context("cannot count duplicate")?;
            self.metrics.duplicate(event_type);
            tracing::info!("duplicate event skipped");
            return Ok(());
        }
        let outcome = self.handler.handle(&mut tx, event).await?;
        if let Outcome::Ignored(reason) = outcome {
            inbox::mark_ignored(&mut tx, event, reason).await?;
        }
        tx.commit().await.context("cannot commit event")?;
        self.metrics.consumed(event_type);
        match outcome {
            Outcome::Applied => tracing::info!("event applied"),
            Outcome::Ignored(reason) => {
                self.metrics.ignored(event_type, reason);
                tracing::info!(reason, "event ignored");
            }
        }
        if self.crash_after_commit.as_deref() == Some(event_type) {
            tracing::error!("fault point: crashing right after commit");
            std::process::abort();
        }
        Ok(())
    }

    /// Marks an offset finished, stores the partition's new watermark and, for a queued
    /// event, retires its order's queue once it is empty.
    fn finish(&self, partition: i32, offset: i64, order_id: Option<OrderId>) {
        let mut state = self.state_lock();
        let watermark = state
            .partitions
            .entry(partition)
            .or_default()
            .finish(offset);
        if let Some(order_id) = order_id
            && let Entry::Occupied(mut queue) = state.queues.entry(order_id)
        {
            queue.get_mut().pending -= 1;
            if queue.get().pending == 0 {
                queue.remove();
            }
        }
        drop(state);
        let mut offsets = TopicPartitionList::new();
        let stored = offsets
            .add_partition_offset(&self.topic, partition, Offset::Offset(watermark))
            .and_then(|_| self.consumer.store_offsets(&offsets));
        if let Err(error) = stored {
            // The partition was revoked meanwhile; its new owner starts from the last commit.
            tracing::debug!(kafka.partition = partition, error.message = %error, "offset not stored");
        }
    }

    /// Sets an unreadable or invalid event aside, retrying until Kafka has it; `false` if
    /// shutdown came first (it is then fetched again after restart).
    async fn dead_letter(&self, message: &OwnedMessage, invalid: &InvalidEvent) -> bool {
        self.metrics.dead_lettered(invalid.kind());
        self.metrics.error("dead-letter", invalid.kind());
        let reason = invalid.to_string();
        tracing::warn!(
            kafka.partition = message.partition(),
            kafka.offset = message.offset(),
            error.message = %reason,
            "event set aside on the dead-letter topic"
        );
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        for attempt in 1.. {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "dlt.reason",
                    value: Some(reason.as_str()),
                })
                .insert(Header {
                    key: "dlt.consumer",
                    value: Some(self.app),
                })
                .insert(Header {
                    key: "dlt.topic",
                    value: Some(self.topic.as_str()),
                })
                .insert(Header {
                    key: "dlt.partition",
                    value: Some(partition.as_str()),
                })
                .insert(Header {
                    key: "dlt.offset",
                    value: Some(offset.as_str()),
                });
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&self.dead_letter_topic).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self
                .producer
                .send(record, Timeout::After(Duration::from_secs(15)))
                .await
            {
                Ok(_) => return true,
                Err((error, _)) => {
                    tracing::warn!(error.message = %error, attempt, "cannot dead-letter event, retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
            }
        }
        false
    }
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value)
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

fn is_known(event_type: &str) -> bool {
    common_events::EVENT_TYPES.contains(&event_type)
}

#[cfg(test)]
mod tests {
    use super::PartitionOffsets;

    #[test]
    fn the_watermark_is_the_lowest_unfinished_offset() {
        let mut partition = PartitionOffsets::default();
        for offset in 10..14 {
            partition.start(offset);
        }
        assert_eq!(partition.finish(11), 10, "10 is still running");
        assert_eq!(partition.finish(13), 10);
        assert_eq!(partition.finish(10), 12, "12 is still running");
        assert_eq!(partition.finish(12), 14, "everything fetched is done");
    }
}
