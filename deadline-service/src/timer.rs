//! The deadline timer: sleeps until the nearest pending deadline, then fires every due one.
//!
//! Firing marks a deadline FIRED and writes its `DeadlineReached` to the outbox in one
//! transaction, taking rows with `FOR UPDATE SKIP LOCKED`; with two instances running, each
//! deadline is taken by one of them only, and fired once. The timer is woken early when a
//! deadline is scheduled (a NOTIFY at commit), and never sleeps longer than [`MAX_SLEEP`], so
//! a missed notification costs at most that. Deadlines that passed while the service was down
//! are due at once when it starts.

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
    lateness: Histogram,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(&pool)
        .await
        .context("cannot listen for scheduled deadlines")?;
    listener.listen("deadline_scheduled").await?;
    let mut failures = Backoff::DEFAULT.start();
    while !shutdown.is_cancelled() {
        let next = async {
            fire_due(&pool, &lateness).await?;
            next_deadline(&pool).await
        };
        let sleep = match next.await {
            Ok(next) => {
                failures.reset();
                next.map_or(MAX_SLEEP, |at| {
                    (at - Utc::now())
                        .to_std()
                        .unwrap_or_default()
                        .min(MAX_SLEEP)
                })
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
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = listener.recv() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
    Ok(())
}

async fn next_deadline(pool: &PgPool) -> anyhow::Result<Option<DateTime<Utc>>> {
    Ok(
        sqlx::query_scalar("SELECT min(deadline) FROM deadlines WHERE status = 'PENDING'")
            .fetch_one(pool)
            .await?,
    )
}

/// Fires every deadline that is due, in batches.
async fn fire_due(pool: &PgPool, lateness: &Histogram) -> anyhow::Result<()> {
    loop {
        let mut tx = pool.begin().await?;
        let fired: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE deadlines SET status = 'FIRED', fired_at = clock_timestamp()
             WHERE order_id IN (
                 SELECT order_id FROM deadlines
                 WHERE status = 'PENDING' AND deadline <= clock_timestamp()
                 ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING order_id, deadline, fired_at",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await
        .context("cannot take due deadlines")?;
        for (order_id, deadline, fired_at) in &fired {
            let reached = Envelope::new(*order_id, *deadline, Event::DeadlineReached);
            outbox::append(&mut tx, &reached).await?;
            tracing::info!(
                order.id = order_id,
                event.id = %reached.event_id,
                lateness_ms = (*fired_at - *deadline).num_milliseconds(),
                "deadline reached"
            );
        }
        tx.commit().await.context("cannot commit fired deadlines")?;
        for (_, deadline, fired_at) in &fired {
            lateness.observe((*fired_at - *deadline).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
        if (fired.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
