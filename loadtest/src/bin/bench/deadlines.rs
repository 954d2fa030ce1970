//! Deadline precision (saga-rules §7): how late `DeadlineReached` is, with many deadlines pending.
//!
//! **The pending ones** are written straight into the deadline service's `deadlines` table,
//! one statement for 100,000 rows, instead of through 100,000 sagas: posting them would take
//! minutes and hold every other service busy, and the deadline service cannot tell the
//! difference, since its timer sees only its table. They are the rows its handler writes
//! (`PENDING`, a deadline), with order ids below zero, which no order has (ids start at 1),
//! and deadlines a year away, so that none fires even if a run is interrupted; the table is
//! analysed after the insert, as autovacuum would have done for a backlog built up over time.
//!
//! **The ones that fire** belong to real orders placed through the gateway with the exchange
//! stopped (`scripts/service stop exchange`), as in the seed's downtime scenario: no saga can
//! finish, so each order's deadline fires `DEADLINE_MS` (5 s) after its creation, while the
//! orders after it are still being placed. The lateness of each is `fired_at − deadline`,
//! both written by the deadline service (microseconds): the moment its timer took the
//! deadline, in the transaction that writes `DeadlineReached` to its outbox.
//!
//! **Afterwards**, whatever happened, the pending rows are deleted (and the table vacuumed)
//! and the exchange started again; the run then waits until the orders it placed have been
//! rejected and compensated, so the stack is as a run found it.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use harness::invariants::{self, Outcome};
use loadtest::percentiles::Percentiles;
use serde::Serialize;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio::time::Instant;

use crate::{Bench, Progress, load};

/// How far in the future the pending deadlines are.
const FAR: &str = "1 year";
/// How long after the last measured deadline its lateness is first read.
const FIRE_MARGIN: Duration = Duration::from_millis(500);

#[derive(Debug, Serialize)]
pub struct Deadlines {
    /// Deadlines pending while the measured ones fired (counted when the last had fired).
    pub pending: i64,
    pub orders: usize,
    pub fired: usize,
    pub lateness_ms: Option<Percentiles>,
    /// Orders that had not ended (rejected and compensated) when the run stopped waiting.
    pub unsettled: usize,
}

async fn connect(bench: &Bench) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/saga_deadline", bench.pg_url))
        .await
        .context("cannot connect to the deadline service's database")
}

/// Deletes the pending deadlines a run wrote (and those of an interrupted one).
pub async fn remove_far(bench: &Bench) -> anyhow::Result<()> {
    let db = connect(bench).await?;
    let removed = sqlx::query("DELETE FROM deadlines WHERE order_id < 0")
        .execute(&db)
        .await
        .context("cannot delete the far deadlines")?
        .rows_affected();
    if removed > 0 {
        // VACUUM runs outside a transaction; each statement here is one.
        sqlx::query("VACUUM (ANALYZE) deadlines")
            .execute(&db)
            .await
            .context("cannot vacuum the deadlines")?;
        println!("deadlines: removed {removed} far deadlines");
    }
    Ok(())
}

pub async fn measure(
    bench: &Bench,
    pending: u32,
    holders: Arc<[String]>,
    orders: usize,
    rate: f64,
) -> anyhow::Result<Deadlines> {
    let db = connect(bench).await?;
    println!("deadlines: writing {pending} pending deadlines, {FAR} away");
    sqlx::query(
        "INSERT INTO deadlines (order_id, deadline)
         SELECT -g, now() + $2::interval + g * interval '1 millisecond'
         FROM generate_series(1, $1) AS g",
    )
    .bind(i64::from(pending))
    .bind(FAR)
    .execute(&db)
    .await
    .context("cannot write the pending deadlines")?;
    sqlx::query("ANALYZE deadlines").execute(&db).await?;

    println!("deadlines: stopping the exchange, placing {orders} orders at {rate}/s");
    let measured = match bench.every_instance("stop", "exchange").await {
        Ok(()) => fire(bench, &db, holders.clone(), orders, rate).await,
        Err(e) => Err(e),
    };
    // Clean up whatever happened, then report the first error.
    let removed = remove_far(bench).await;
    let started = bench.every_instance("start", "exchange").await;
    let mut figures = measured?;
    removed?;
    started?;
    figures.unsettled = settle(bench, &holders).await?;
    Ok(figures)
}

/// Places the orders, waits until each one's deadline has fired, and reads the lateness.
async fn fire(
    bench: &Bench,
    db: &PgPool,
    holders: Arc<[String]>,
    orders: usize,
    rate: f64,
) -> anyhow::Result<Deadlines> {
    let posted = load::drive(&bench.gateway, holders, rate, orders).await;
    if let Some(failure) = posted.failures.first() {
        println!(
            "deadlines: {} POSTs failed, the first: {failure}",
            posted.failures.len()
        );
    }
    let ids = posted.created;
    // Nothing is asked of the database while the deadlines fire: wait for the last one, then
    // count, so the measurement is the timer's alone.
    let last: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT max(deadline) FROM deadlines WHERE order_id = ANY($1)")
            .bind(&ids)
            .fetch_one(db)
            .await
            .context("cannot read the orders' deadlines")?;
    if let Some(last) = last {
        let wait = (last - chrono::Utc::now()).to_std().unwrap_or_default() + FIRE_MARGIN;
        println!(
            "deadlines: waiting {:.1} s for the last of them to fire",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
    let give_up = Instant::now() + bench.settle_timeout;
    let lateness_ms: Vec<f64> = loop {
        let fired: Vec<f64> = sqlx::query_scalar(
            "SELECT (extract(epoch FROM fired_at - deadline) * 1000)::float8 FROM deadlines
             WHERE order_id = ANY($1) AND status = 'FIRED'",
        )
        .bind(&ids)
        .fetch_all(db)
        .await
        .context("cannot read the fired deadlines")?;
        if fired.len() >= ids.len() || Instant::now() >= give_up {
            break fired;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deadlines WHERE order_id < 0 AND status = 'PENDING'",
    )
    .fetch_one(db)
    .await?;
    Ok(Deadlines {
        pending,
        orders: ids.len(),
        fired: lateness_ms.len(),
        lateness_ms: Percentiles::of(lateness_ms),
        unsettled: 0,
    })
}

/// Waits until the holders' orders (this part's alone) are rejected and compensated, as the
/// exchange catches up once restarted; returns how many were not when the run gave up.
async fn settle(bench: &Bench, holders: &[String]) -> anyhow::Result<usize> {
    println!("deadlines: waiting for the rejected orders to be compensated");
    let give_up = Instant::now() + bench.settle_timeout;
    let mut progress = Progress::new();
    loop {
        let orders = bench.gateway.orders_of_holders(holders).await?;
        let open = orders
            .iter()
            .filter(|order| invariants::outcome(order) == Outcome::Unsettled)
            .count();
        if open == 0 || Instant::now() >= give_up {
            return Ok(open);
        }
        if progress.due() {
            println!("  {open} of {} orders not yet compensated", orders.len());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
