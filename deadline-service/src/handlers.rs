//! Scheduling and cancelling: `OrderCreated` schedules the saga's deadline; `OrderPlaced` and
//! `OrderRejected` cancel it, where a missing or already fired deadline is a no-op.

use common_events::{Envelope, Event, EventType};
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::DeadlineService;

impl EventHandler for DeadlineService {
    const CONSUMES: &'static [EventType] = &[
        EventType::OrderCreated,
        EventType::OrderPlaced,
        EventType::OrderRejected,
    ];

    async fn handle(&self, conn: &mut PgConnection, event: &Envelope) -> anyhow::Result<Outcome> {
        let changed = match event.event {
            Event::OrderCreated { .. } => sqlx::query(
                "INSERT INTO deadlines (order_id, deadline) VALUES ($1, $2)
                     ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(event.order_id)
            .bind(event.deadline)
            .execute(conn)
            .await?
            .rows_affected(),
            // A cancel that arrives first leaves a CANCELLED row, so nothing schedules it later.
            _ => sqlx::query(
                "INSERT INTO deadlines (order_id, deadline, status, cancelled_at)
                     VALUES ($1, $2, 'CANCELLED', now())
                     ON CONFLICT (order_id) DO UPDATE SET status = 'CANCELLED', cancelled_at = now()
                     WHERE deadlines.status = 'PENDING'",
            )
            .bind(event.order_id)
            .bind(event.deadline)
            .execute(conn)
            .await?
            .rows_affected(),
        };
        Ok(match (changed, &event.event) {
            (0, Event::OrderCreated { .. }) => Outcome::Ignored("already scheduled"),
            (0, _) => Outcome::Ignored("already fired or cancelled"),
            _ => Outcome::Applied,
        })
    }
}
