//! The inbox: one row per consumed event, keyed by `eventId`, written in the same transaction
//! as the event's effects. The shape is zero2prod's idempotency table: insert, look at the rows
//! affected, and carry on in the same transaction.

use std::collections::HashSet;

use common_events::Envelope;
use sqlx::PgConnection;
use uuid::Uuid;

/// Claims `events` for this transaction, in one statement; returns, for each, whether it is new.
/// `false` means it was applied (or ignored) before; the redelivery is then counted on its row.
/// A concurrent claim of the same event (another instance, during a rebalance) waits here until
/// the first transaction ends. The events must have distinct ids.
pub async fn claim(conn: &mut PgConnection, events: &[&Envelope]) -> sqlx::Result<Vec<bool>> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let orders: Vec<i64> = events.iter().map(|e| e.order_id).collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.event.event_type().as_str())
        .collect();
    let fresh: HashSet<Uuid> = sqlx::query_scalar::<_, Option<Uuid>>(
        "INSERT INTO inbox (event_id, order_id, event_type)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[])
         ON CONFLICT (event_id) DO UPDATE SET duplicates = inbox.duplicates + 1
         RETURNING CASE WHEN duplicates = 0 THEN event_id END",
    )
    .bind(&ids)
    .bind(&orders)
    .bind(&types)
    .fetch_all(conn)
    .await?
    .into_iter()
    .flatten()
    .collect();
    Ok(ids.iter().map(|id| fresh.contains(id)).collect())
}

/// Records that claimed events were deliberately not acted on, and why.
pub async fn mark_ignored(conn: &mut PgConnection, ignored: &[(Uuid, &str)]) -> sqlx::Result<()> {
    if ignored.is_empty() {
        return Ok(());
    }
    let (ids, reasons): (Vec<Uuid>, Vec<&str>) = ignored.iter().copied().unzip();
    sqlx::query(
        "UPDATE inbox SET outcome = 'IGNORED', detail = ignored.reason,
             handled_at = clock_timestamp()
         FROM unnest($1::uuid[], $2::text[]) AS ignored (event_id, reason)
         WHERE inbox.event_id = ignored.event_id",
    )
    .bind(&ids)
    .bind(&reasons)
    .execute(conn)
    .await?;
    Ok(())
}
