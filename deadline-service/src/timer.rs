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
use saga_runtime::{outbox, retry::Backoff};
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

const MAX_SLEEP: Duration = Duration::from_secs(5);
const BATCH: i64 = 500;

pub async fn run(
    pool: PgPool,
    outbox: outbox::Wake,
    lateness: Histogram,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(&pool)
        .await
        .context("cannot listen for scheduled deadlines")?;
    listener.listen("deadline_scheduled").await?;
    let mut failures = Backoff::DEFAULT.start();
    // The deadline to wake up for; now, to fire what passed while the service was down.
    let mut next = Some(Utc::now());
    while !shutdown.is_cancelled() {
        if next.is_some_and(|at| at <= Utc::now()) {
            let fired = async {
                fire_due(&pool, &outbox, &lateness).await?;
                next_deadline(&pool).await
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
        let wait = next.map(|at| (at - Utc::now()).to_std().unwrap_or_default());
        let fallback = wait.is_none_or(|wait| wait > MAX_SLEEP);
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
                    next = Some(Utc::now());
                }
            },
            _ = tokio::time::sleep(wait.unwrap_or(MAX_SLEEP).min(MAX_SLEEP)) => {
                if fallback {
                    next = Some(Utc::now());
                }
            }
        }
    }
    Ok(())
}

fn epoch_millis(payload: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(payload.parse().ok()?)
}

async fn next_deadline(pool: &PgPool) -> anyhow::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT min(deadline) FROM deadlines WHERE status = 'PENDING'")
        .fetch_one(pool)
        .await
        .context("cannot read the next deadline")
}

/// Fires every deadline that is due, in batches.
async fn fire_due(
    pool: &PgPool,
    outbox: &outbox::Wake,
    lateness: &Histogram,
) -> anyhow::Result<()> {
    loop {
        // The bound is a parameter, not clock_timestamp(): a volatile function cannot bound an
        // index scan, and PostgreSQL would read every pending deadline to find the due ones.
        // It is read before the transaction begins, so that the outbox row's created_at (the
        // transaction's start) is never earlier than the deadline it reports.
        let due = Utc::now();
        let mut tx = pool.begin().await?;
        let fired: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE deadlines SET status = 'FIRED', fired_at = clock_timestamp()
             WHERE order_id IN (
                 SELECT order_id FROM deadlines
                 WHERE status = 'PENDING' AND deadline <= $2
                 ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING order_id, deadline, fired_at",
        )
        .bind(BATCH)
        .bind(due)
        .fetch_all(&mut *tx)
        .await
        .context("cannot take due deadlines")?;
        let reached: Vec<Envelope> = fired
            .iter()
            .map(|(order_id, deadline, _)| {
                Envelope::new(*order_id, *deadline, Event::DeadlineReached)
            })
            .collect();
        outbox::append(&mut tx, &reached).await?;
        tx.commit().await.context("cannot commit fired deadlines")?;
        for (event, (_, deadline, fired_at)) in reached.iter().zip(&fired) {
            tracing::info!(
                order.id = event.order_id,
                event.id = %event.event_id,
                lateness_ms = (*fired_at - *deadline).num_milliseconds(),
                "deadline reached"
            );
        }
        if !fired.is_empty() {
            outbox.committed();
        }
        for (_, deadline, fired_at) in &fired {
            lateness.observe((*fired_at - *deadline).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
        if (fired.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
