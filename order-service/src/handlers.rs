//! The order service's reactions to `PointUsed`, `PointUseFailed`, `DeadlineReached` and
//! `PointRefunded`: lock the order, decide, write the change and its event together.

use chrono::{DateTime, Utc};
use common_events::{Envelope, Event, EventType};
use saga_runtime::{EventHandler, Outcome, outbox};
use sqlx::PgConnection;

use crate::{
    OrderService,
    domain::{self, Decision, Order, Status},
};

impl EventHandler for OrderService {
    const CONSUMES: &'static [EventType] = &[
        EventType::PointUsed,
        EventType::PointUseFailed,
        EventType::DeadlineReached,
        EventType::PointRefunded,
    ];

    async fn handle(&self, conn: &mut PgConnection, event: &Envelope) -> anyhow::Result<Outcome> {
        let row: Option<(String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT status, compensation, created_at FROM orders WHERE id = $1 FOR UPDATE",
        )
        .bind(event.order_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((status, compensation, created_at)) = row else {
            return Ok(Outcome::Ignored("unknown order"));
        };
        let order = Order {
            status: Status::parse(&status)
                .ok_or_else(|| anyhow::anyhow!("unknown status {status}"))?,
            compensation_done: compensation.as_deref() == Some("DONE"),
        };
        // The row lock is held from here to commit, so the check and the change are one step.
        match domain::decide(order, &event.event, event.is_expired(Utc::now())) {
            Decision::Approve => {
                set_status(conn, event, Status::Approved, None).await?;
                self.metrics
                    .finished(Status::Approved.as_str(), seconds_since(created_at));
                outbox::append(conn, &event.follow_up(Event::OrderPlaced)).await?;
            }
            Decision::Reject(status, reason) => {
                set_status(conn, event, status, Some(&reason)).await?;
                self.metrics
                    .finished(status.as_str(), seconds_since(created_at));
                outbox::append(conn, &event.follow_up(Event::OrderRejected { reason })).await?;
            }
            Decision::FinishCompensation => {
                sqlx::query(
                    "UPDATE orders SET compensation = 'DONE', updated_at = now() WHERE id = $1",
                )
                .bind(event.order_id)
                .execute(&mut *conn)
                .await?;
            }
            Decision::Ignore(reason) => return Ok(Outcome::Ignored(reason)),
        }
        Ok(Outcome::Applied)
    }
}

fn seconds_since(at: DateTime<Utc>) -> f64 {
    (Utc::now() - at).num_microseconds().unwrap_or(0) as f64 / 1e6
}

async fn set_status(
    conn: &mut PgConnection,
    event: &Envelope,
    status: Status,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    let compensation = (status != Status::Approved).then_some("PENDING");
    sqlx::query(
        "UPDATE orders SET status = $2, reason = $3, compensation = $4, updated_at = now() WHERE id = $1",
    )
    .bind(event.order_id)
    .bind(status.as_str())
    .bind(reason)
    .bind(compensation)
    .execute(conn)
    .await?;
    tracing::info!(status = status.as_str(), "order status changed");
    Ok(())
}
