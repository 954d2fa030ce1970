//! The order service's reactions to `PointUsed`, `PointUseFailed`, `DeadlineReached` and
//! `PointRefunded`: lock the order, decide, write the new state and its event together.

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

    async fn handle(&self, conn: &mut PgConnection, event: &Envelope) -> anyhow::Result<Outcome> {
        let row: Option<OrderRow> = sqlx::query_as(
            "SELECT status, reason, compensation, created_at FROM orders WHERE id = $1 FOR UPDATE",
        )
        .bind(event.order_id)
        .fetch_optional(&mut *conn)
        .await?;
        let (current, created_at) = match row {
            Some(row) => {
                let order = Order {
                    status: Status::parse(&row.status)
                        .ok_or_else(|| anyhow::anyhow!("unknown status {}", row.status))?,
                    reason: row.reason,
                    compensation: row.compensation.as_deref().and_then(Compensation::parse),
                };
                (Some(order), row.created_at)
            }
            None => (None, Utc::now()),
        };
        // The row lock is held from here to commit, so the check and the change are one step.
        let decision = domain::decide(current.as_ref(), &event.event, event.is_expired(Utc::now()));
        let (order, emit) = match decision {
            Decision::Ignore(reason) => return Ok(Outcome::Ignored(reason)),
            Decision::Change { order, emit } => (order, emit),
        };
        sqlx::query(
            "UPDATE orders SET status = $2, reason = $3, compensation = $4, updated_at = now()
             WHERE id = $1",
        )
        .bind(event.order_id)
        .bind(order.status.as_str())
        .bind(&order.reason)
        .bind(order.compensation.map(Compensation::as_str))
        .execute(&mut *conn)
        .await?;
        if current.is_some_and(|before| before.status != order.status) {
            let seconds = (Utc::now() - created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.metrics.finished(order.status.as_str(), seconds);
            tracing::info!(status = order.status.as_str(), "order status changed");
        }
        Ok(Outcome::Applied(emit))
    }
}
