//! The exchange service's SQL: every read and write of its `exchanges` table. Each write
//! leaves the row as [`crate::domain`] says it does ([`crate::domain::record`], [`crate::domain::compensated`]);
//! `tests/guards.rs` holds each statement to it.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use crate::domain::{Exchange, NewExchange, Status};

/// The exchanges of `orders` that exist, locked until the transaction ends.
pub async fn lock(
    conn: &mut PgConnection,
    orders: &[i64],
) -> anyhow::Result<HashMap<i64, Exchange>> {
    let rows: Vec<(i64, String, Decimal)> = sqlx::query_as(
        "SELECT order_id, status, point FROM exchanges
         WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
    )
    .bind(orders)
    .fetch_all(conn)
    .await
    .context("cannot lock the batch's exchanges")?;
    rows.into_iter()
        .map(|(order_id, status, point)| {
            let status = Status::parse(&status)
                .with_context(|| format!("order {order_id} has an unknown status {status}"))?;
            Ok((order_id, Exchange { status, point }))
        })
        .collect()
}

/// Exchanges to record, as columns.
#[derive(Debug, Default)]
pub struct Exchanges {
    orders: Vec<i64>,
    users: Vec<String>,
    currencies: Vec<Option<String>>,
    amounts: Vec<Decimal>,
    points: Vec<Decimal>,
    deadlines: Vec<DateTime<Utc>>,
}

impl Exchanges {
    pub fn push(&mut self, order_id: i64, deadline: DateTime<Utc>, exchange: NewExchange) {
        self.orders.push(order_id);
        self.users.push(exchange.user_id);
        self.currencies.push(exchange.currency_id);
        self.amounts.push(exchange.amount);
        self.points.push(exchange.point);
        self.deadlines.push(deadline);
    }

    /// Records the exchanges [`crate::domain::record`] lets through: none yet, and the deadline still
    /// holding by the database's clock as the row is written (saga-rules §4 rule 5). Returns
    /// the orders it refused.
    pub async fn record(self, conn: &mut PgConnection) -> anyhow::Result<HashSet<i64>> {
        if self.orders.is_empty() {
            return Ok(HashSet::new());
        }
        let orders = self.orders.clone();
        let recorded: HashSet<i64> = sqlx::query_scalar(
            "INSERT INTO exchanges (order_id, user_id, currency_id, amount, point, status, deadline)
             SELECT order_id, user_id, currency_id, amount, point, $7, deadline
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[], $5::numeric[],
                         $6::timestamptz[])
                 AS new (order_id, user_id, currency_id, amount, point, deadline)
             WHERE clock_timestamp() < deadline
             ON CONFLICT (order_id) DO NOTHING
             RETURNING order_id",
        )
        .bind(self.orders)
        .bind(self.users)
        .bind(self.currencies)
        .bind(self.amounts)
        .bind(self.points)
        .bind(self.deadlines)
        .bind(Status::Exchanged.as_str())
        .fetch_all(conn)
        .await
        .context("cannot record exchanges")?
        .into_iter()
        .collect();
        Ok(orders
            .into_iter()
            .filter(|order| !recorded.contains(order))
            .collect())
    }
}

/// Marks the sagas of `orders` compensated, as [`crate::domain::compensated`] says, with a row of
/// their own where nothing was exchanged.
pub async fn compensate(
    conn: &mut PgConnection,
    orders: &[(i64, DateTime<Utc>)],
) -> anyhow::Result<()> {
    if orders.is_empty() {
        return Ok(());
    }
    let (orders, deadlines): (Vec<i64>, Vec<DateTime<Utc>>) = orders.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO exchanges (order_id, status, deadline, compensated_at)
         SELECT order_id, $3, deadline, now()
         FROM unnest($1::bigint[], $2::timestamptz[]) AS new (order_id, deadline)
         ON CONFLICT (order_id) DO UPDATE SET status = $3, compensated_at = now()",
    )
    .bind(orders)
    .bind(deadlines)
    .bind(Status::Compensated.as_str())
    .execute(conn)
    .await
    .context("cannot compensate exchanges")?;
    Ok(())
}
