//! The order service's reactions to `PointUsed`, `PointUseFailed`, `DeadlineReached` and
//! `PointRefunded`: lock the batch's orders, decide each, write the new states and their events
//! together.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use common_events::{Envelope, EventType};
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::{
    OrderService,
    domain::{self, Compensation, Decision, Order, Status},
};

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: i64,
    status: String,
    reason: Option<String>,
    compensation: Option<String>,
    created_at: DateTime<Utc>,
}

impl EventHandler for OrderService {
    const CONSUMES: &'static [EventType] = &[
        EventType::PointUsed,
        EventType::PointUseFailed,
        EventType::DeadlineReached,
        EventType::PointRefunded,
    ];

    async fn handle(
        &self,
        conn: &mut PgConnection,
        events: &[&Envelope],
    ) -> anyhow::Result<Vec<Outcome>> {
        let ids: Vec<i64> = events.iter().map(|e| e.order_id).collect();
        // The row locks are held to commit, so each check and its change are one step. Taken
        // in id order, so that two batches never wait for each other's locks in a cycle.
        let rows: Vec<OrderRow> = sqlx::query_as(
            "SELECT id, status, reason, compensation, created_at FROM orders
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut current = HashMap::with_capacity(rows.len());
        for row in rows {
            let order = Order {
                status: Status::parse(&row.status)
                    .ok_or_else(|| anyhow::anyhow!("unknown status {}", row.status))?,
                reason: row.reason,
                compensation: row.compensation.as_deref().and_then(Compensation::parse),
            };
            current.insert(row.id, (order, row.created_at));
        }
        let now = self.clock.now();
        let mut outcomes = Vec::with_capacity(events.len());
        let mut changes = Changes::default();
        let mut finished = Vec::new();
        for event in events {
            let before = current.get(&event.order_id);
            let expired = event.is_expired(now);
            match domain::decide(before.map(|(order, _)| order), &event.event, expired) {
                Decision::Ignore(reason) => outcomes.push(Outcome::Ignored(reason)),
                Decision::Change { order, emit } => {
                    if let Some((before, created_at)) = before
                        && before.status != order.status
                    {
                        finished.push((event, order.status, now - *created_at));
                    }
                    changes.push(event.order_id, order);
                    outcomes.push(Outcome::Applied(emit));
                }
            }
        }
        if changes.ids.is_empty() {
            return Ok(outcomes);
        }
        sqlx::query(
            "UPDATE orders SET status = new.status, reason = new.reason,
                 compensation = new.compensation, updated_at = now()
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
                 AS new (id, status, reason, compensation)
             WHERE orders.id = new.id",
        )
        .bind(&changes.ids)
        .bind(&changes.statuses)
        .bind(&changes.reasons)
        .bind(&changes.compensations)
        .execute(&mut *conn)
        .await?;
        for (event, status, took) in finished {
            let seconds = took.num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.metrics.finished(status.as_str(), seconds);
            tracing::info!(
                order.id = event.order_id,
                event.id = %event.event_id,
                status = status.as_str(),
                "order status changed"
            );
        }
        Ok(outcomes)
    }
}

/// The new states of the batch's orders, as columns.
#[derive(Default)]
struct Changes {
    ids: Vec<i64>,
    statuses: Vec<&'static str>,
    reasons: Vec<Option<String>>,
    compensations: Vec<Option<&'static str>>,
}

impl Changes {
    fn push(&mut self, id: i64, order: Order) {
        self.ids.push(id);
        self.statuses.push(order.status.as_str());
        self.reasons.push(order.reason);
        self.compensations
            .push(order.compensation.map(Compensation::as_str));
    }
}
