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
//!   events whose handling fails after `EVENT_MAX_ATTEMPTS` attempts. Failures of the
//!   infrastructure itself (the database down) are retried for as long as they last.
//! - **Per-order order, cross-order concurrency** (saga-rules §4 rule 9): events wait in one queue
//!   per order ([`queues`]); the heads of different orders' queues are applied together, in
//!   batches of one transaction each, and an event whose handling deliberately waits runs alone,
//!   so a slow saga holds up only itself.
//! - **Self-healing**: a consumer that librdkafka declares fatally failed (a fenced static
//!   member, say, after a broker restart), or that has been out of its group for
//!   [`OUT_OF_GROUP`] while the broker answers (one whose requests to the group coordinator
//!   stayed queued after a broker pause), is replaced by a new one that rejoins the group; what
//!   the old one had fetched but not finished is fetched again. A revoked partition's waiting
//!   events are dropped: its new owner fetches them from the last commit.
//!
//! Stopping (the shutdown token) fetches nothing more, lets running transactions finish, and
//! commits the finished offsets before returning.

mod apply;
mod dead_letter;
mod offsets;
mod queues;

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::Context;
use common_events::{Envelope, Event, EventType};
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{
        BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
    },
    error::KafkaError,
    message::{Headers, OwnedMessage},
    types::RDKafkaErrorCode,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{Instrument, Span};

use self::{
    apply::{Done, apply, is_transient},
    dead_letter::DeadLetters,
    offsets::{Assignment, Offsets},
    queues::OrderQueues,
};
use crate::{
    config::Config,
    db::Held,
    kafka::{self, Producer},
    metrics::{self, Metrics},
    outbox,
};

/// What a handler did with an event.
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
    pub outbox: outbox::Wake,
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
    let mut failures = crate::retry::Backoff::DEFAULT.start();
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
    consumer.state().drop_waiting(|_| false);
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

/// How long a consumer may be out of its group while the broker answers before it is
/// replaced: well beyond a rebalance, even one that a paused member holds up until its
/// session times out (2 s, see `kafka::consumer_settings`).
pub const OUT_OF_GROUP: Duration = Duration::from_secs(10);

/// How one consumer's fetching ended.
enum Ended {
    Shutdown,
    /// Failed fatally, or stuck out of its group: it must be replaced.
    Unusable(Option<RDKafkaErrorCode>, String),
}

/// What the statistics of the current Kafka consumer last said of its membership in its group:
/// librdkafka's group state is `up` and its join state `steady` while it is a member.
#[derive(Default)]
struct Membership {
    /// When the statistics last came; they come each second while the consumer is polled.
    reported: Option<Instant>,
    /// Since when it has been out of its group, if it is.
    out_since: Option<Instant>,
}

impl Membership {
    fn report(&mut self, in_group: bool) {
        let now = Instant::now();
        self.reported = Some(now);
        if in_group {
            self.out_since = None;
        } else {
            self.out_since.get_or_insert(now);
        }
    }

    /// Out of its group for `limit`, by statistics that are still current.
    fn stuck(&self, limit: Duration) -> bool {
        let current = self
            .reported
            .is_some_and(|at| at.elapsed() < Duration::from_secs(3));
        current && self.out_since.is_some_and(|since| since.elapsed() >= limit)
    }
}

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

/// A partition's committable offset, for the fetch loop to store.
struct Watermark {
    generation: u64,
    partition: i32,
    offset: i64,
}

/// The parts shared by the fetch loop, the batch applier and the events running alone.
struct Consumer<H> {
    handler: Arc<H>,
    pool: PgPool,
    outbox: outbox::Wake,
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
    /// Events whose order has nothing else running, waiting for the next batch.
    ready: VecDeque<Job>,
}

impl State {
    /// Drops the events that have not started and for which `keep` is false.
    fn drop_waiting(&mut self, keep: impl Fn(i32) -> bool) {
        self.queues.retain(|job| keep(job.message.partition()));
        let (kept, dropped): (VecDeque<Job>, VecDeque<Job>) = self
            .ready
            .drain(..)
            .partition(|job| keep(job.message.partition()));
        self.ready = kept;
        for job in dropped {
            // Its order's waiting events were of the same partition and are gone too.
            let _ = self.queues.next(job.event.order_id);
        }
    }

    /// The consumer is being replaced: nothing fetched so far will be committed.
    fn forget_all(&mut self) {
        self.generation += 1;
        self.offsets.clear();
        self.drop_waiting(|_| false);
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

    /// Whether the current consumer has been out of its group for [`OUT_OF_GROUP`] although
    /// the broker answers (a broker that is down or paused explains it, and is waited for).
    async fn stuck_out_of_group(&self) -> bool {
        if !self.membership().stuck(OUT_OF_GROUP) {
            return false;
        }
        self.dead_letters
            .producer
            .broker_answers(Duration::from_secs(1))
            .await
    }

    fn subscribe(self: &Arc<Self>) -> anyhow::Result<StreamConsumer<Events<H>>> {
        *self.membership() = Membership::default();
        let events = Events {
            consumer: self.clone(),
            generation: self.state().generation,
        };
        let kafka: StreamConsumer<Events<H>> = kafka::consumer_settings(&self.config.kafka)
            .create_with_context(events)
            .with_context(|| {
                format!(
                    "cannot create Kafka consumer for {}",
                    self.config.kafka.bootstrap
                )
            })?;
        kafka
            .subscribe(&[&self.config.kafka.topic])
            .with_context(|| format!("cannot subscribe to {}", self.config.kafka.topic))?;
        Ok(kafka)
    }

    /// Fetches and dispatches events, and stores finished offsets, until shutdown or a fatal
    /// error of the Kafka consumer.
    async fn fetch(
        self: &Arc<Self>,
        kafka: &StreamConsumer<Events<H>>,
        generation: u64,
        permits: &Arc<Semaphore>,
        finished: &mut mpsc::UnboundedReceiver<Watermark>,
    ) -> Ended {
        let mut permit = None;
        // librdkafka reports every failed connection attempt of an outage as an event of its
        // own, and reconnects by itself: the errors are drained at once (a rebalance waits behind
        // them in the same queue), and only a change of error is logged.
        let mut last_error = None;
        let mut membership_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ended::Shutdown,
                _ = membership_check.tick() => {
                    if self.stuck_out_of_group().await {
                        let reason = format!(
                            "out of its group for {OUT_OF_GROUP:?} while the broker answers"
                        );
                        return Ended::Unusable(None, reason);
                    }
                }
                Some(watermark) = finished.recv() => self.store(kafka, generation, watermark),
                acquired = permits.clone().acquire_owned(), if permit.is_none() => {
                    permit = acquired.ok();
                }
                message = kafka.recv(), if permit.is_some() => match message {
                    Ok(message) => {
                        last_error = None;
                        if let Some(permit) = permit.take() {
                            self.dispatch(message.detach(), permit);
                        }
                    }
                    Err(KafkaError::MessageConsumptionFatal(code)) => {
                        let reason = kafka.client().fatal_error().map_or_else(
                            || code.to_string(),
                            |(_, reason)| reason,
                        );
                        return Ended::Unusable(Some(code), reason);
                    }
                    Err(error) => {
                        if let Some((code, reason)) = kafka.client().fatal_error() {
                            return Ended::Unusable(Some(code), reason);
                        }
                        self.metrics.error(metrics::CONSUME, "kafka");
                        let error = error.to_string();
                        if last_error.as_ref() != Some(&error) {
                            tracing::warn!(error.message = error, "kafka consumer error");
                            last_error = Some(error);
                        }
                    }
                },
            }
        }
    }

    fn store(&self, kafka: &StreamConsumer<Events<H>>, generation: u64, watermark: Watermark) {
        if watermark.generation != generation {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        let stored = offsets
            .add_partition_offset(
                &self.config.kafka.topic,
                watermark.partition,
                Offset::Offset(watermark.offset),
            )
            .and_then(|_| kafka.store_offsets(&offsets));
        if let Err(error) = stored {
            // The partition was revoked meanwhile; its new owner starts from the last commit.
            tracing::debug!(kafka.partition = watermark.partition, error.message = %error, "offset not stored");
        }
    }

    /// Sends a fetched message on its way: passed over, set aside, or queued for its order.
    fn dispatch(self: &Arc<Self>, message: OwnedMessage, permit: OwnedSemaphorePermit) {
        let (partition, offset) = (message.partition(), message.offset());
        let assignment = self.state().offsets.start(partition, offset);
        // Known events this service does not consume are passed over without parsing.
        if let Some(event_type) = event_type_header(&message)
            && !H::CONSUMES.contains(&event_type)
        {
            self.finish_offset(partition, assignment, offset);
            return;
        }
        let event = match Envelope::from_json(message.payload().unwrap_or_default()) {
            Ok(event) => event,
            Err(invalid) => {
                let this = self.clone();
                self.tasks.spawn(async move {
                    let reason = invalid.to_string();
                    if this
                        .dead_letters
                        .send(&message, invalid.kind(), &reason, &this.shutdown)
                        .await
                    {
                        this.finish_offset(partition, assignment, offset);
                    }
                    drop(permit);
                });
                return;
            }
        };
        if !H::CONSUMES.contains(&event.event.event_type()) {
            self.finish_offset(partition, assignment, offset);
            return;
        }
        let order_id = event.order_id;
        let job = Job {
            message,
            event,
            assignment,
            _permit: permit,
        };
        let runnable = self.state().queues.push(order_id, job);
        if let Some(job) = runnable {
            self.start(job);
        }
    }

    /// Starts an event whose order has nothing else running: alone, or in the next batch.
    fn start(self: &Arc<Self>, job: Job) {
        if self.handler.runs_alone(&job.event) {
            self.tasks.spawn(self.clone().apply_alone(job, true));
        } else {
            self.state().ready.push_back(job);
            self.ready_to_apply.notify_one();
        }
    }

    /// Applies the ready events in batches, one transaction each, until shutdown, on a
    /// connection kept from one batch to the next.
    async fn apply_batches(self: Arc<Self>) {
        let mut conn = Held::new(self.pool.clone());
        loop {
            let batch: Vec<Job> = {
                let mut state = self.state();
                let size = state.ready.len().min(self.config.consumer.batch_size);
                state.ready.drain(..size).collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.ready_to_apply.notified() => continue,
                }
            }
            if self.shutdown.is_cancelled() {
                return; // unfinished: fetched again after restart
            }
            self.apply_batch(&mut conn, batch).await;
        }
    }

    async fn apply_batch(self: &Arc<Self>, conn: &mut Held, batch: Vec<Job>) {
        let mut failures = self.config.consumer.retry.start();
        loop {
            let jobs: Vec<&Job> = batch.iter().collect();
            let applied = async {
                let mut kept = conn.take().await.context("cannot connect")?;
                let done = apply(&mut kept, &self.outbox, &*self.handler, &jobs).await?;
                conn.keep(kept);
                Ok(done)
            };
            match applied.await {
                Ok(done) => {
                    for (job, done) in batch.into_iter().zip(done) {
                        self.record(&job, done);
                        self.finish(job);
                    }
                    return;
                }
                Err(error) if is_transient(&error) => {
                    for job in &batch {
                        self.metrics
                            .error(job.event.event.event_type().as_str(), "database");
                    }
                    tracing::warn!(
                        error.message = format!("{error:#}"),
                        events = batch.len(),
                        "cannot apply a batch of events, retrying"
                    );
                    if !failures.wait(&self.shutdown).await {
                        return;
                    }
                }
                Err(error) => {
                    // One of them fails whatever happens: try each alone, so the others go on.
                    tracing::warn!(
                        error.message = format!("{error:#}"),
                        events = batch.len(),
                        "a batch of events failed; applying each alone"
                    );
                    for job in batch {
                        self.tasks.spawn(self.clone().apply_alone(job, false));
                    }
                    return;
                }
            }
        }
    }

    /// Applies one event in its own transaction, with bounded attempts: after
    /// `EVENT_MAX_ATTEMPTS` failures of its own it is set aside, and its order moves on.
    async fn apply_alone(self: Arc<Self>, job: Job, first_wait: bool) {
        let span = job.span();
        async move {
            if first_wait {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.handler.before_transaction(&job.event) => {}
                }
            }
            let event_type = job.event.event.event_type();
            let (mut failures, mut attempts) = (self.config.consumer.retry.start(), 0);
            loop {
                let applied = async {
                    let mut conn = self.pool.acquire().await.context("cannot connect")?;
                    apply(&mut conn, &self.outbox, &*self.handler, &[&job]).await
                };
                let error = match applied.await {
                    Ok(done) => {
                        self.record(&job, done[0]);
                        break;
                    }
                    Err(error) => error,
                };
                let transient = is_transient(&error);
                if !transient {
                    attempts += 1;
                }
                let exception = if transient { "database" } else { "handler" };
                self.metrics.error(event_type.as_str(), exception);
                if attempts >= self.config.consumer.max_attempts {
                    let reason = format!("{error:#}");
                    tracing::error!(error.message = reason, attempts, "giving up on event");
                    if !self
                        .dead_letters
                        .send(&job.message, "failed", &reason, &self.shutdown)
                        .await
                    {
                        return;
                    }
                    break;
                }
                tracing::warn!(
                    error.message = format!("{error:#}"),
                    attempts,
                    transient,
                    "cannot apply event, retrying"
                );
                if !failures.wait(&self.shutdown).await {
                    return; // unfinished: fetched again after restart
                }
            }
            self.finish(job);
        }
        .instrument(span)
        .await
    }

    /// Counts and logs what became of an event, and crashes at the test-only crash point.
    fn record(&self, job: &Job, done: Done) {
        let _span = job.span().entered();
        let event_type = job.event.event.event_type();
        match done {
            Done::Applied => {
                self.metrics.consumed(event_type.as_str());
                tracing::info!("event applied");
            }
            Done::Ignored(reason) => {
                self.metrics.consumed(event_type.as_str());
                self.metrics.ignored(event_type.as_str(), reason);
                tracing::info!(reason, "event ignored");
            }
            Done::Duplicate => {
                self.metrics.duplicate(event_type.as_str());
                tracing::info!("duplicate event skipped");
            }
        }
        if self.config.crash_after_commit.as_deref() == Some(event_type.as_str()) {
            tracing::error!("fault point: crashing right after commit");
            std::process::abort();
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
        let next = self.state().queues.next(event.order_id);
        if let Some(next) = next {
            self.start(next);
        }
    }

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

    /// The group took partitions away from the consumer of `generation`: their events that have
    /// not started are dropped (the new owner fetches them from the last commit) and their
    /// offsets are forgotten.
    fn revoke(&self, generation: u64, partitions: &HashSet<i32>) {
        let mut state = self.state();
        if state.generation != generation {
            return; // a replaced consumer closing: its partitions are forgotten already
        }
        for partition in partitions {
            state.offsets.revoke(*partition);
        }
        state.drop_waiting(|partition| !partitions.contains(&partition));
    }
}

/// The event type a message's `type` header names, if this version knows it.
fn event_type_header(message: &OwnedMessage) -> Option<EventType> {
    let header = message.headers()?.iter().find(|h| h.key == "type")?;
    EventType::parse(std::str::from_utf8(header.value?).ok()?)
}

/// The callbacks of one Kafka consumer (of one generation), run by the fetch loop while it
/// polls.
struct Events<H> {
    consumer: Arc<Consumer<H>>,
    generation: u64,
}

impl<H: EventHandler> ClientContext for Events<H> {
    /// The fetch loop logs the errors `recv` returns; the same ones come here too.
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error.message = %error, reason, "kafka consumer error");
    }

    /// Reads only the group's part of the statistics, for [`Membership`].
    fn stats_raw(&self, statistics: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Statistics {
            cgrp: Option<Group>,
        }
        #[derive(serde::Deserialize)]
        struct Group {
            state: String,
            join_state: String,
        }
        if self.consumer.state().generation != self.generation {
            return;
        }
        if let Ok(Statistics { cgrp: Some(group) }) = serde_json::from_slice(statistics) {
            let in_group = group.state == "up" && group.join_state == "steady";
            self.consumer.membership().report(in_group);
        }
    }
}

impl<H: EventHandler> ConsumerContext for Events<H> {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let partitions: HashSet<i32> =
                revoked.elements().iter().map(|p| p.partition()).collect();
            tracing::info!(partitions = ?partitions, "kafka partitions revoked");
            self.consumer.revoke(self.generation, &partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // A replaced consumer, or one closing at shutdown, has nothing to report; and asking
        // librdkafka for the assignment while the consumer closes can wait forever (a service
        // stopped right after it joined its group hung here in its consumer's drop).
        if self.consumer.state().generation != self.generation
            || self.consumer.shutdown.is_cancelled()
        {
            return;
        }
        let assigned = consumer.assignment().map_or(0, |a| a.count());
        self.consumer
            .metrics
            .partitions_assigned
            .set(assigned as i64);
        match rebalance {
            Rebalance::Assign(added) => {
                let added: Vec<i32> = added.elements().iter().map(|p| p.partition()).collect();
                tracing::info!(partitions = ?added, assigned, "kafka partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(error.message = %error, "kafka rebalance failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_stuck_only_once_current_statistics_have_said_so_for_long_enough() {
        let mut membership = Membership::default();
        assert!(!membership.stuck(Duration::ZERO), "no statistics yet");
        membership.report(false);
        assert!(membership.stuck(Duration::ZERO));
        assert!(!membership.stuck(Duration::from_secs(60)), "not for long");
        membership.report(true);
        assert!(!membership.stuck(Duration::ZERO), "back in its group");
        membership.report(false);
        membership.reported = Some(Instant::now() - Duration::from_secs(10));
        assert!(
            !membership.stuck(Duration::ZERO),
            "statistics no longer current"
        );
    }
}
