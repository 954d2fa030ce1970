//! Scheduling and cancelling: lock the saga's deadline, decide, write the change.

use common_events::{Envelope, EventType};
use saga_runtime::{EventHandler, Outcome};
use sqlx::PgConnection;

use crate::{
    DeadlineService,
    domain::{self, Decision, Status},
};

impl EventHandler for DeadlineService {
    const CONSUMES: &'static [EventType] = &[
        EventType::OrderCreated,
        EventType::OrderPlaced,
        EventType::OrderRejected,
    ];

    async fn handle(&self, conn: &mut PgConnection, event: &Envelope) -> anyhow::Result<Outcome> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM deadlines WHERE order_id = $1 FOR UPDATE")
                .bind(event.order_id)
                .fetch_optional(&mut *conn)
                .await?;
        let status = status
            .map(|s| Status::parse(&s).ok_or_else(|| anyhow::anyhow!("unknown status {s}")))
            .transpose()?;
        // The writes below keep their conditions (ON CONFLICT ... WHERE): with two instances, a
        // saga's row can appear between the read and the write, and the timer may fire a pending
        // deadline meanwhile; neither must be overwritten.
        let (written, otherwise) = match domain::decide(status, &event.event, event.deadline) {
            Decision::Ignore(reason) => return Ok(Outcome::Ignored(reason)),
            Decision::Schedule { deadline } => (
                sqlx::query(
                    "INSERT INTO deadlines (order_id, deadline) VALUES ($1, $2)
                 ON CONFLICT (order_id) DO NOTHING",
                )
                .bind(event.order_id)
                .bind(deadline)
                .execute(conn)
                .await?,
                "already scheduled",
            ),
            Decision::Cancel => (
                sqlx::query(
                    "INSERT INTO deadlines (order_id, deadline, status, cancelled_at)
                 VALUES ($1, $2, 'CANCELLED', now())
                 ON CONFLICT (order_id) DO UPDATE SET status = 'CANCELLED', cancelled_at = now()
                 WHERE deadlines.status = 'PENDING'",
                )
                .bind(event.order_id)
                .bind(event.deadline)
                .execute(conn)
                .await?,
                "already fired or cancelled",
            ),
        };
        Ok(if written.rows_affected() == 0 {
            Outcome::Ignored(otherwise)
        } else {
            Outcome::Applied(None)
        })
    }
}
