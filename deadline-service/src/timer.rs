//! The deadline timer: sleeps until the nearest pending deadline, then fires every due one.
//!
//! Firing marks a deadline FIRED and writes its `DeadlineReached` to the outbox in one
//! transaction, taking rows with `FOR UPDATE SKIP LOCKED`; with two instances running, each
//! deadline is taken by one of them only, and fired once. Deadlines that passed while the
//! service was down are due at once when it starts.
//!
//! The timer reads its table only when it must: when the deadline it waits for comes due, when
//! a transaction schedules an earlier one (its NOTIFY carries the earliest deadline it
//! scheduled), and every [`MAX_SLEEP`] in case a notification was missed or another instance
//! scheduled a deadline and died. Both of its queries read the pending deadlines' index, with a
//! bound from the timer's clock, so a large backlog of far deadlines costs nothing.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use common_events::{Envelope, Event};
use prometheus::Histogram;
use saga_runtime::{Clock, outbox, retry::Backoff};
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use crate::store;

const MAX_SLEEP: Duration = Duration::from_secs(5);
const BATCH: i64 = 500;

/// What the timer needs from its service.
pub struct Timer {
    pub pool: PgPool,
    pub outbox: outbox::Outbox,
    pub clock: Clock,
    /// How long after its deadline each `DeadlineReached` was written.
    pub lateness: Histogram,
}

impl Timer {
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .context("cannot listen for scheduled deadlines")?;
        listener.listen("deadline_scheduled").await?;
        let mut failures = Backoff::DEFAULT.start();
        // The deadline to wake up for; now, to fire what passed while the service was down.
        let mut next = Some(self.clock.now());
        while !shutdown.is_cancelled() {
            if next.is_some_and(|at| at <= self.clock.now()) {
                let fired = async {
                    self.fire_due().await?;
                    store::next_pending(&self.pool).await
                };
                match fired.await {
                    Ok(pending) => {
                        failures.reset();
                        next = pending;
                    }
                    Err(error) => {
                        tracing::warn!(
                            error.message = format!("{error:#}"),
                            failures = failures.count() + 1,
                            "deadline timer failed, retrying"
                        );
                        failures.wait(&shutdown).await;
                        continue;
                    }
                }
            }
            // With nothing to wait for, or a deadline far off, look again after MAX_SLEEP.
            let wake_at = next.unwrap_or(DateTime::<Utc>::MAX_UTC);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                notification = listener.recv() => match notification {
                    Ok(notification) => {
                        if let Some(at) = epoch_millis(notification.payload()) {
                            next = Some(next.map_or(at, |next| next.min(at)));
                        }
                    }
                    Err(error) => {
                        // The listener reconnects at the next call; a notification may be lost.
                        tracing::warn!(error.message = %error, "deadline notifications interrupted");
                        failures.wait(&shutdown).await;
                        next = Some(self.clock.now());
                    }
                },
                _ = self.clock.sleep_until(wake_at, MAX_SLEEP) => {
                    let now = self.clock.now();
                    next = Some(next.map_or(now, |at| at.min(now)));
                }
            }
        }
        Ok(())
    }

    /// Fires every deadline that is due, in batches.
    async fn fire_due(&self) -> anyhow::Result<()> {
        loop {
            // The bound is a parameter, not clock_timestamp(): a volatile function cannot bound
            // an index scan, and PostgreSQL would read every pending deadline to find the due
            // ones. It is read before the transaction begins, so that the outbox row's
            // created_at (the transaction's start) is never earlier than the deadline it reports.
            let due = self.clock.now();
            let mut tx = self.pool.begin().await?;
            let fired = store::fire_due(&mut tx, due, BATCH).await?;
            let reached: Vec<Envelope> = fired
                .iter()
                .map(|fired| Envelope::new(fired.order_id, fired.deadline, Event::DeadlineReached))
                .collect();
            self.outbox
                .commit(tx, &reached)
                .await
                .context("cannot commit fired deadlines")?;
            for (event, fired) in reached.iter().zip(&fired) {
                let lateness = fired.fired_at - fired.deadline;
                tracing::info!(
                    order.id = event.order_id,
                    event.id = %event.event_id,
                    lateness_ms = lateness.num_milliseconds(),
                    "deadline reached"
                );
                self.lateness
                    .observe(lateness.num_microseconds().unwrap_or(0) as f64 / 1e6);
            }
            if (fired.len() as i64) < BATCH {
                return Ok(());
            }
        }
    }
}

fn epoch_millis(payload: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(payload.parse().ok()?)
}
