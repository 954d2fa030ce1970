//! The consumer: every event is applied at most once, and its offset is committed only after
//! the database transaction that applied it has committed.
//!
//! Guarantees and how they are kept:
//! - **Once**: each event is claimed in the [inbox](crate::inbox) in the same transaction as
//!   its effects ([`apply`]), so a redelivery (after a crash, a rebalance or a replay) finds the
//!   claim and changes nothing.
//! - **Nothing lost**: a partition's committed offset is its lowest offset not yet finished
//!   ([`offsets`]), so a crash redelivers everything unfinished. An event is finished when its
//!   transaction has committed, or when it has been set aside on the dead-letter topic
//!   ([`dead_letter`]) and Kafka has acknowledged it there: unreadable or invalid events at once,
//!   events whose handling fails after `EVENT_MAX_ATTEMPTS` attempts ([`batches`]). Failures of
//!   the infrastructure itself (the database down) are retried for as long as they last.
//! - **Per-order order, cross-order concurrency** (saga-rules §4 rule 9): events wait in one queue
//!   per order ([`queues`]); the heads of different orders' queues are applied together, in
//!   batches of one transaction each, and an event whose handling deliberately waits runs alone,
//!   so a slow saga holds up only itself.
//! - **Self-healing** ([`group`]): a consumer that librdkafka declares fatally failed, or that
//!   has been out of its group for [`OUT_OF_GROUP`] while the broker answers, is replaced by a
//!   new one that rejoins the group; what the old one had fetched but not finished is fetched
//!   again. A revoked partition's waiting events are dropped: its new owner fetches them from
//!   the last commit.
//!
//! Stopping (the shutdown token) fetches nothing more, lets running transactions finish, and
//! commits the finished offsets before returning.
//!
//! Read in this order: [`fetch`] (the Kafka consumer, dispatch and offset storage), [`queues`]
//! (which event may start), [`batches`] (applying with retries), [`apply`] (one transaction),
//! [`dead_letter`], and [`group`] (rebalances and membership).

mod apply;
mod batches;
mod dead_letter;
mod fetch;
mod group;
mod offsets;
mod queues;
#[cfg(test)]
mod tests;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use anyhow::Context;
use common_events::{Envelope, Event, EventType, OrderId};
use rdkafka::{
    Message,
    consumer::{CommitMode, Consumer as _},
    message::OwnedMessage,
    types::RDKafkaErrorCode,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Span;

pub use self::group::OUT_OF_GROUP;
use self::{
    dead_letter::DeadLetters,
    fetch::{Ended, Watermark},
    group::Membership,
    offsets::{Assignment, Offsets},
    queues::{OrderQueues, Scheduled},
};
use crate::{config::Config, kafka::Producer, metrics::Metrics, outbox, retry::Backoff};

/// What a handler did with an event. A redelivered event never reaches the handler (the inbox
/// turns it away), so it has no outcome: the consumer counts it as a duplicate.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Acted on. The event it causes, if any, is written to the outbox in the same
    /// transaction.
    Applied(Option<Event>),
    /// Recorded in the inbox with this reason, but not acted on (saga-rules §4 rules 2–4).
    Ignored(&'static str),
}

/// A service's reaction to the events it consumes.
pub trait EventHandler: Send + Sync + 'static {
    /// The events this service acts on; every other event is passed over unread.
    const CONSUMES: &'static [EventType];

    /// Whether handling `event` deliberately waits (the exchange's fault hooks): such an event
    /// is applied alone, in a transaction of its own, so that it holds up no other saga.
    fn runs_alone(&self, _event: &Envelope) -> bool {
        false
    }

    /// Runs before an event that [runs alone](Self::runs_alone) begins its transaction,
    /// holding no database connection: the place for a deliberate wait.
    fn before_transaction(&self, _event: &Envelope) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Applies `events`, each of a different order, inside the transaction `conn`, and says
    /// what became of each, in order. A handler reads the states of all of them at once,
    /// decides each, and writes the changes with a statement for all of them, not one per
    /// event: statements cost round trips. An error rolls the transaction back and the events
    /// are tried again.
    fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[&Envelope],
    ) -> impl Future<Output = anyhow::Result<Vec<Outcome>>> + Send;
}

/// What the consumer needs from the service it runs in.
pub struct Parts<H> {
    pub handler: Arc<H>,
    pub pool: PgPool,
    pub producer: Arc<Producer>,
    pub metrics: Metrics,
    pub outbox: outbox::Outbox,
}

/// Runs the consumer until `shutdown`.
pub async fn run<H: EventHandler>(
    config: &Config,
    parts: Parts<H>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (watermarks, mut finished) = mpsc::unbounded_channel();
    let consumer = Arc::new(Consumer {
        dead_letters: DeadLetters {
            producer: parts.producer.clone(),
            topic: config.kafka.dead_letter_topic.clone(),
            metrics: parts.metrics.clone(),
        },
        handler: parts.handler,
        pool: parts.pool,
        outbox: parts.outbox,
        metrics: parts.metrics,
        config: config.clone(),
        state: Mutex::new(State::default()),
        ready_to_apply: Notify::new(),
        watermarks,
        membership: Mutex::default(),
        tasks: TaskTracker::new(),
        shutdown: shutdown.clone(),
    });
    consumer.tasks.spawn(consumer.clone().apply_batches());
    let permits = Arc::new(Semaphore::new(config.consumer.max_in_flight));
    // Waits before creating a consumer again: short after one that ran a while, longer when
    // new ones keep failing at once.
    let mut failures = Backoff::DEFAULT.start();
    let mut last = None;
    while !shutdown.is_cancelled() {
        let kafka = match consumer.subscribe() {
            Ok(kafka) => kafka,
            Err(error) => {
                tracing::warn!(
                    error.message = format!("{error:#}"),
                    "cannot create kafka consumer, retrying"
                );
                failures.wait(&shutdown).await;
                continue;
            }
        };
        let generation = consumer.state().generation;
        let started = std::time::Instant::now();
        let ended = consumer
            .fetch(&kafka, generation, &permits, &mut finished)
            .await;
        if let Ended::Unusable(code, reason) = ended {
            // The old consumer is unusable: forget what it fetched (its running events still
            // finish, but commit nothing), then join the group again with a new one.
            consumer.metrics.client_recreated("consumer");
            consumer.metrics.partitions_assigned.set(0);
            tracing::warn!(
                error.code = ?code,
                error.message = reason,
                "kafka consumer unusable; recreating it"
            );
            consumer.state().forget_all();
            tokio::task::spawn_blocking(move || drop(kafka));
            if started.elapsed() > RECREATED_RECENTLY {
                failures.reset();
            }
            failures.wait(&shutdown).await;
        } else {
            last = Some(kafka);
        }
    }
    // Events waiting or queued for a batch stay unfinished, so they are fetched again later.
    consumer.state().queues.drop_waiting(|_| false);
    consumer.tasks.close();
    consumer.tasks.wait().await;
    if let Some(kafka) = last {
        let generation = consumer.state().generation;
        while let Ok(watermark) = finished.try_recv() {
            consumer.store(&kafka, generation, watermark);
        }
        kafka
            .commit_consumer_state(CommitMode::Sync)
            .or_else(|e| match e.rdkafka_error_code() {
                // Nothing was consumed since the last commit.
                Some(RDKafkaErrorCode::NoOffset) => Ok(()),
                _ => Err(e),
            })
            .context("cannot commit offsets at shutdown")?;
    }
    Ok(())
}

/// A consumer that failed within this time of its creation makes the next wait longer.
const RECREATED_RECENTLY: Duration = Duration::from_secs(30);

/// A fetched event on its way to being applied; its permit is returned when it is dropped.
struct Job {
    message: OwnedMessage,
    event: Envelope,
    assignment: Assignment,
    _permit: OwnedSemaphorePermit,
}

impl Job {
    fn span(&self) -> Span {
        tracing::info_span!(
            "event",
            order.id = self.event.order_id,
            event.id = %self.event.event_id,
            event.r#type = %self.event.event.event_type(),
            kafka.partition = self.message.partition(),
            kafka.offset = self.message.offset(),
        )
    }
}

impl Scheduled for Job {
    fn order_id(&self) -> OrderId {
        self.event.order_id
    }

    fn partition(&self) -> i32 {
        self.message.partition()
    }
}

/// The parts shared by the fetch loop, the batch applier and the events running alone.
struct Consumer<H> {
    handler: Arc<H>,
    pool: PgPool,
    outbox: outbox::Outbox,
    metrics: Metrics,
    config: Config,
    dead_letters: DeadLetters,
    state: Mutex<State>,
    /// Wakes the batch applier when an event is ready.
    ready_to_apply: Notify,
    /// Finished offsets, to the fetch loop: only it touches the Kafka consumer.
    watermarks: mpsc::UnboundedSender<Watermark>,
    /// Of the current Kafka consumer.
    membership: Mutex<Membership>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Bookkeeping of fetched events; the lock is held only for map updates.
#[derive(Default)]
struct State {
    /// Bumped when the Kafka consumer is replaced.
    generation: u64,
    offsets: Offsets,
    queues: OrderQueues<Job>,
}

impl State {
    /// The consumer is being replaced: nothing fetched so far will be committed.
    fn forget_all(&mut self) {
        self.generation += 1;
        self.offsets.clear();
        self.queues.drop_waiting(|_| false);
    }

    /// The group took `partitions` away from the consumer of `generation`: their events that
    /// have not started are dropped (the new owner fetches them from the last commit) and
    /// their offsets are forgotten.
    fn revoke(&mut self, generation: u64, partitions: &HashSet<i32>) {
        if self.generation != generation {
            return; // a replaced consumer closing: its partitions are forgotten already
        }
        for partition in partitions {
            self.offsets.revoke(*partition);
        }
        self.queues
            .drop_waiting(|partition| !partitions.contains(&partition));
    }
}

impl<H: EventHandler> Consumer<H> {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update under this lock is a single insert or remove, so the state is consistent
        // even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn membership(&self) -> MutexGuard<'_, Membership> {
        self.membership
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts an event whose order has nothing else running: alone, or in the next batch.
    fn start(self: &Arc<Self>, job: Job) {
        if self.handler.runs_alone(&job.event) {
            self.tasks.spawn(self.clone().apply_alone(job, true));
        } else {
            self.state().queues.ready(job);
            self.ready_to_apply.notify_one();
        }
    }

    /// An event is done: its offset may be committed, and its order's next event may start.
    fn finish(self: &Arc<Self>, job: Job) {
        let Job {
            message,
            event,
            assignment,
            _permit,
        } = job;
        self.finish_offset(message.partition(), assignment, message.offset());
        let next = self.state().queues.finish(event.order_id);
        if let Some(next) = next {
            self.start(next);
        }
    }

    /// An offset is done: if that moves its partition's committable offset, the fetch loop is
    /// told to store it.
    fn finish_offset(&self, partition: i32, assignment: Assignment, offset: i64) {
        let mut state = self.state();
        if let Some(offset) = state.offsets.finish(partition, assignment, offset) {
            let _ = self.watermarks.send(Watermark {
                generation: state.generation,
                partition,
                offset,
            });
        }
    }
}
