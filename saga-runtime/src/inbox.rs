//! The inbox: one row per consumed event, keyed by `eventId`, written in the same transaction
//! as the event's effects. The shape is zero2prod's idempotency table: insert, look at the rows
//! affected, and carry on in the same transaction.

use common_events::Envelope;
use sqlx::PgConnection;

/// Claims `event` for this transaction. `false` means it was applied (or ignored) before; the
/// redelivery is then counted on its row. A concurrent claim of the same event waits here
/// until the first transaction ends.
pub async fn claim(conn: &mut PgConnection, event: &Envelope) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "INSERT INTO inbox (event_id, order_id, event_type) VALUES ($1, $2, $3)
         ON CONFLICT (event_id) DO UPDATE SET duplicates = inbox.duplicates + 1
         RETURNING duplicates = 0",
    )
    .bind(event.event_id)
    .bind(event.order_id)
    .bind(event.event.event_type())
    .fetch_one(conn)
    .await
}

/// Records that a claimed event was deliberately not acted on, and why.
pub async fn mark_ignored(
    conn: &mut PgConnection,
    event: &Envelope,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE inbox SET outcome = 'IGNORED', detail = $2, handled_at = clock_timestamp()
         WHERE event_id = $1",
    )
    .bind(event.event_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}
