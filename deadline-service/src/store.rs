//! The deadline service's SQL: every read and write of its `deadlines` table. Each write
//! re-checks, in its own statement, the guard that [`crate::domain`] states for it, and returns
//! the deadlines it changed; `tests/guards.rs` holds each statement to the domain's rule.
//!
//! The statements name the statuses as literals made from [`Status`], once: the index of
//! pending deadlines is a partial one, which PostgreSQL uses only for a query whose predicate
//! names the status as it does, never for a parameter.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::Status;

/// The statuses of the deadlines of `orders` that exist, locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, orders: &[i64]) -> anyhow::Result<HashMap<i64, Status>> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT order_id, status FROM deadlines
         WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
    )
    .bind(orders)
    .fetch_all(conn)
    .await
    .context("cannot lock the batch's deadlines")?;
    rows.into_iter()
        .map(|(order_id, status)| {
            let status = Status::parse(&status)
                .with_context(|| format!("order {order_id} has an unknown status {status}"))?;
            Ok((order_id, status))
        })
        .collect()
}

/// `statement` with `{pending}`, `{fired}` and `{cancelled}` replaced by the statuses' names,
/// quoted.
fn with_statuses(statement: &str) -> String {
    Status::ALL
        .iter()
        .fold(statement.to_string(), |sql, status| {
            let name = status.as_str();
            sql.replace(
                &format!("{{{}}}", name.to_lowercase()),
                &format!("'{name}'"),
            )
        })
}

static SCHEDULE: LazyLock<String> = LazyLock::new(|| {
    with_statuses(
        "INSERT INTO deadlines (order_id, deadline, status)
         SELECT order_id, deadline, {pending}
         FROM unnest($1::bigint[], $2::timestamptz[]) AS new (order_id, deadline)
         ON CONFLICT (order_id) DO NOTHING
         RETURNING order_id",
    )
});

static CANCEL: LazyLock<String> = LazyLock::new(|| {
    with_statuses(
        "INSERT INTO deadlines (order_id, deadline, status, cancelled_at)
         SELECT order_id, deadline, {cancelled}, now()
         FROM unnest($1::bigint[], $2::timestamptz[]) AS new (order_id, deadline)
         ON CONFLICT (order_id) DO UPDATE SET status = {cancelled}, cancelled_at = now()
         WHERE deadlines.status = {pending}
         RETURNING order_id",
    )
});

static FIRE_DUE: LazyLock<String> = LazyLock::new(|| {
    with_statuses(
        "UPDATE deadlines SET status = {fired}, fired_at = clock_timestamp()
         WHERE order_id IN (
             SELECT order_id FROM deadlines
             WHERE status = {pending} AND deadline <= $2
             ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING order_id, deadline, fired_at",
    )
});

static NEXT_PENDING: LazyLock<String> =
    LazyLock::new(|| with_statuses("SELECT min(deadline) FROM deadlines WHERE status = {pending}"));

/// Deadlines to write, as columns.
#[derive(Debug, Default)]
pub struct Deadlines {
    orders: Vec<i64>,
    deadlines: Vec<DateTime<Utc>>,
}

impl Deadlines {
    pub fn push(&mut self, order_id: i64, deadline: DateTime<Utc>) {
        self.orders.push(order_id);
        self.deadlines.push(deadline);
    }

    /// Schedules the deadlines that do not exist yet; the orders it scheduled.
    pub async fn schedule(self, conn: &mut PgConnection) -> anyhow::Result<HashSet<i64>> {
        self.write(conn, SCHEDULE.as_str())
            .await
            .context("cannot schedule deadlines")
    }

    /// Cancels the deadlines that are pending or do not exist yet; the orders it cancelled.
    pub async fn cancel(self, conn: &mut PgConnection) -> anyhow::Result<HashSet<i64>> {
        self.write(conn, CANCEL.as_str())
            .await
            .context("cannot cancel deadlines")
    }

    /// Runs `statement` with the deadlines as `$1` and `$2`; the orders it changed.
    async fn write(
        self,
        conn: &mut PgConnection,
        statement: &'static str,
    ) -> sqlx::Result<HashSet<i64>> {
        if self.orders.is_empty() {
            return Ok(HashSet::new());
        }
        let changed: Vec<i64> = sqlx::query_scalar(statement)
            .bind(self.orders)
            .bind(self.deadlines)
            .fetch_all(conn)
            .await?;
        Ok(changed.into_iter().collect())
    }
}

/// A deadline the timer fired.
#[derive(Debug)]
pub struct Fired {
    pub order_id: i64,
    pub deadline: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
}

/// Fires at most `limit` pending deadlines due at `now`, earliest first, skipping those another
/// transaction holds (the other instance's timer, a handler cancelling one).
pub async fn fire_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<Fired>> {
    let fired: Vec<(i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(FIRE_DUE.as_str())
        .bind(limit)
        .bind(now)
        .fetch_all(conn)
        .await
        .context("cannot take due deadlines")?;
    Ok(fired
        .into_iter()
        .map(|(order_id, deadline, fired_at)| Fired {
            order_id,
            deadline,
            fired_at,
        })
        .collect())
}

/// The earliest pending deadline, if any.
pub async fn next_pending(pool: &PgPool) -> anyhow::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(NEXT_PENDING.as_str())
        .fetch_one(pool)
        .await
        .context("cannot read the next deadline")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_names_its_statuses_as_literals() {
        for statement in [&SCHEDULE, &CANCEL, &FIRE_DUE, &NEXT_PENDING] {
            assert!(
                !statement.contains('{'),
                "a status left unnamed: {}",
                **statement
            );
        }
        assert!(NEXT_PENDING.ends_with("status = 'PENDING'"));
    }
}
