//! Applying events, with one retry policy ([`Attempts`]). Events that may start are applied in
//! batches by one task that every saga shares, on a connection it keeps from one batch to the
//! next; an event that runs alone, or whose batch failed, is applied by a task of its own.
//!
//! After a failed attempt:
//! - a failure of the infrastructure (see [`is_transient`]) is retried, as long as it lasts,
//!   wherever it happened: every other event would fail the same way;
//! - a batch that failed otherwise is split, each event applied alone, so that the one at fault
//!   holds up none of the others while it is retried;
//! - an event applied alone that failed otherwise is tried again, up to `EVENT_MAX_ATTEMPTS`
//!   times in all, and then set aside on the dead-letter topic, so that its order moves on.
//!
//! Once applied (or set aside), an event is finished: its offset may be committed and its
//! order's next event may start.

use std::sync::Arc;

use anyhow::Context;
use common_events::{Envelope, EventType};
use tracing::Instrument;

use super::{
    Consumer, EventHandler, Job, Outcome,
    apply::{apply, is_transient},
};
use crate::{db::Held, metrics::Metrics};

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Wait (with backoff) and try the same events again.
    Retry,
    /// Apply each event alone, by a task of its own.
    ApplyEachAlone,
    /// Set the event aside on the dead-letter topic.
    GiveUp,
}

/// The retry policy of one set of events being applied: by the shared batch applier, or alone.
#[derive(Debug)]
pub struct Attempts {
    /// `None` in the shared batch applier, which never retries an event's own failure.
    max: Option<u32>,
    /// Failures that were the event's own, not the infrastructure's.
    failed: u32,
}

impl Attempts {
    /// For a batch in the applier that every saga shares.
    pub fn shared() -> Self {
        Attempts {
            max: None,
            failed: 0,
        }
    }

    /// For one event in a task of its own, allowed `max` failures of its own.
    pub fn alone(max: u32) -> Self {
        Attempts {
            max: Some(max),
            failed: 0,
        }
    }

    /// Decides what follows a failed attempt, `transient` if the infrastructure failed.
    pub fn after_failure(&mut self, transient: bool) -> AfterFailure {
        if transient {
            return AfterFailure::Retry;
        }
        let Some(max) = self.max else {
            return AfterFailure::ApplyEachAlone;
        };
        self.failed += 1;
        if self.failed >= max {
            AfterFailure::GiveUp
        } else {
            AfterFailure::Retry
        }
    }
}

impl<H: EventHandler> Consumer<H> {
    /// Applies the events in line in batches, one transaction each, until shutdown, on a
    /// connection kept from one batch to the next.
    pub(super) async fn apply_batches(self: Arc<Self>) {
        let mut conn = Held::new(self.pool.clone());
        loop {
            let batch = self.state().queues.batch(self.config.consumer.batch_size);
            if batch.is_empty() {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.ready_to_apply.notified() => continue,
                }
            }
            if self.shutdown.is_cancelled() {
                return; // unfinished: fetched again after restart
            }
            self.apply_with_retries(&mut conn, batch, Attempts::shared())
                .await;
        }
    }

    /// Applies one event in a task of its own; `first_wait`: let the handler wait first (see
    /// [`EventHandler::before_transaction`]).
    pub(super) async fn apply_alone(self: Arc<Self>, job: Job, first_wait: bool) {
        let span = job.span();
        async move {
            if first_wait {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = self.handler.before_transaction(&job.event) => {}
                }
            }
            let attempts = Attempts::alone(self.config.consumer.max_attempts);
            let mut conn = Held::new(self.pool.clone());
            self.apply_with_retries(&mut conn, vec![job], attempts)
                .await;
        }
        .instrument(span)
        .await
    }

    /// Hands each of `jobs` to a task of its own. (A plain function: spawning from inside
    /// [`apply_with_retries`](Self::apply_with_retries), which the spawned task awaits, would
    /// make the compiler's proof that the task is `Send` circular.)
    fn apply_each_alone(self: &Arc<Self>, jobs: Vec<Job>) {
        for job in jobs {
            self.tasks.spawn(self.clone().apply_alone(job, false));
        }
    }

    /// Applies `jobs` in one transaction, retrying as `attempts` says, until they are finished,
    /// handed to tasks of their own, or shutdown comes (then they stay unfinished, and are
    /// fetched again after the restart).
    async fn apply_with_retries(
        self: &Arc<Self>,
        conn: &mut Held,
        jobs: Vec<Job>,
        mut attempts: Attempts,
    ) {
        let mut failures = self.config.consumer.retry.start();
        loop {
            let events: Vec<&Envelope> = jobs.iter().map(|job| &job.event).collect();
            let applied = async {
                let mut kept = conn.take().await.context("cannot connect")?;
                let outcomes = apply(&mut kept, &self.outbox, &*self.handler, &events).await?;
                conn.keep(kept);
                anyhow::Ok(outcomes)
            };
            let error = match applied.await {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        self.record(&job, outcome.as_ref());
                        self.finish(job);
                    }
                    return;
                }
                Err(error) => error,
            };
            let transient = is_transient(&error);
            let error = format!("{error:#}");
            let next = attempts.after_failure(transient);
            if next != AfterFailure::ApplyEachAlone {
                let exception = if transient { "database" } else { "handler" };
                for job in &jobs {
                    self.metrics
                        .error(job.event.event.event_type().as_str(), exception);
                }
            }
            match next {
                AfterFailure::Retry => {
                    tracing::warn!(
                        error.message = error,
                        events = jobs.len(),
                        attempts = attempts.failed,
                        transient,
                        "cannot apply events, retrying"
                    );
                    if !failures.wait(&self.shutdown).await {
                        return;
                    }
                }
                AfterFailure::ApplyEachAlone => {
                    tracing::warn!(
                        error.message = error,
                        events = jobs.len(),
                        "a batch of events failed; applying each alone"
                    );
                    self.apply_each_alone(jobs);
                    return;
                }
                AfterFailure::GiveUp => {
                    tracing::error!(
                        error.message = error,
                        attempts = attempts.failed,
                        "giving up on event"
                    );
                    for job in jobs {
                        let sent =
                            self.dead_letters
                                .send(&job.message, "failed", &error, &self.shutdown);
                        if !sent.await {
                            return;
                        }
                        self.finish(job);
                    }
                    return;
                }
            }
        }
    }

    /// Counts and logs what became of an event, and crashes at the test-only crash point
    /// (`FAULT_CRASH_AFTER_COMMIT`), which the end-to-end tests use to kill a service right
    /// after a commit.
    fn record(&self, job: &Job, outcome: Option<&Outcome>) {
        let _span = job.span().entered();
        let event_type = job.event.event.event_type();
        count(&self.metrics, event_type, outcome);
        match outcome {
            Some(Outcome::Applied(_)) => tracing::info!("event applied"),
            Some(Outcome::Ignored(reason)) => tracing::info!(reason, "event ignored"),
            None => tracing::info!("duplicate event skipped"),
        }
        if self.config.crash_after_commit.as_deref() == Some(event_type.as_str()) {
            tracing::error!("fault point: crashing right after commit");
            std::process::abort();
        }
    }
}

/// Counts a committed event: consumed (and why ignored, if it was), or a duplicate (`None`).
fn count(metrics: &Metrics, event_type: EventType, outcome: Option<&Outcome>) {
    let event_type = event_type.as_str();
    match outcome {
        Some(Outcome::Applied(_)) => metrics.consumed(event_type),
        Some(Outcome::Ignored(reason)) => {
            metrics.consumed(event_type);
            metrics.ignored(event_type, reason);
        }
        None => metrics.duplicate(event_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_batch_is_split_at_once_and_never_set_aside_by_the_shared_applier() {
        let mut attempts = Attempts::shared();
        for _ in 0..10 {
            assert_eq!(attempts.after_failure(false), AfterFailure::ApplyEachAlone);
        }
    }

    #[test]
    fn an_event_alone_is_set_aside_at_its_last_allowed_failure_of_its_own() {
        let mut attempts = Attempts::alone(3);
        assert_eq!(attempts.after_failure(false), AfterFailure::Retry);
        assert_eq!(attempts.after_failure(false), AfterFailure::Retry);
        assert_eq!(attempts.after_failure(false), AfterFailure::GiveUp);
        let mut once = Attempts::alone(1);
        assert_eq!(once.after_failure(false), AfterFailure::GiveUp);
    }

    #[test]
    fn failures_of_the_infrastructure_are_retried_without_counting_against_the_event() {
        let mut shared = Attempts::shared();
        assert_eq!(shared.after_failure(true), AfterFailure::Retry);
        let mut alone = Attempts::alone(2);
        for _ in 0..100 {
            assert_eq!(alone.after_failure(true), AfterFailure::Retry);
        }
        assert_eq!(
            alone.after_failure(false),
            AfterFailure::Retry,
            "its first own failure"
        );
        assert_eq!(alone.after_failure(true), AfterFailure::Retry);
        assert_eq!(alone.after_failure(false), AfterFailure::GiveUp);
    }

    #[test]
    fn applied_and_ignored_events_count_as_consumed_and_redeliveries_as_duplicates() {
        let metrics = Metrics::new("test", &[EventType::ExchangeSucceed], &[]).unwrap();
        let job = EventType::ExchangeSucceed;
        count(&metrics, job, Some(&Outcome::Applied(None)));
        count(&metrics, job, Some(&Outcome::Ignored("expired")));
        count(&metrics, job, None);
        let text = metrics.render();
        for series in [
            r#"messages_consumed{app="test",job="ExchangeSucceed"} 2"#,
            r#"events_ignored{app="test",job="ExchangeSucceed",reason="expired"} 1"#,
            r#"duplicates_skipped{app="test",job="ExchangeSucceed"} 1"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }
}
