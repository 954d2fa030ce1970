//! Applying events: a batch of events of different orders in one database transaction. Each
//! is claimed in the inbox and, if it is new, handled; the outcomes are recorded; then one
//! commit makes all of it durable at once, or none of it, with the events they cause (written
//! to the outbox by [`crate::outbox::Outbox::commit`]).

use anyhow::Context;
use common_events::Envelope;
use sqlx::{Connection, PgConnection};

use super::{EventHandler, Outcome};
use crate::{inbox, outbox};

/// Applies `events` (at most one per order) in one transaction on `conn`. Returns, for each
/// event in order, the handler's [`Outcome`], or `None` for a redelivery: an event the inbox
/// had claimed before, which the handler never sees.
pub async fn apply<H: EventHandler>(
    conn: &mut PgConnection,
    outbox: &outbox::Outbox,
    handler: &H,
    events: &[&Envelope],
) -> anyhow::Result<Vec<Option<Outcome>>> {
    let mut tx = conn.begin().await.context("cannot begin transaction")?;
    let fresh = inbox::claim(&mut tx, events)
        .await
        .context("cannot claim events in the inbox")?;
    let new_events: Vec<&Envelope> = events
        .iter()
        .zip(&fresh)
        .filter_map(|(event, fresh)| fresh.then_some(*event))
        .collect();
    let outcomes = if new_events.is_empty() {
        Vec::new()
    } else {
        handler
            .handle(&mut tx, &new_events)
            .await
            .with_context(|| format!("cannot handle {}", describe(&new_events)))?
    };
    anyhow::ensure!(
        outcomes.len() == new_events.len(),
        "the handler gave {} outcomes for {} events",
        outcomes.len(),
        new_events.len()
    );
    let mut outcomes = new_events.iter().zip(outcomes);
    let mut results = Vec::with_capacity(events.len());
    let mut ignored = Vec::new();
    let mut emitted = Vec::new();
    for fresh in fresh {
        let Some((event, outcome)) = fresh.then(|| outcomes.next()).flatten() else {
            results.push(None);
            continue;
        };
        match &outcome {
            Outcome::Applied(emit) => {
                emitted.extend(emit.clone().map(|emit| event.follow_up(emit)));
            }
            Outcome::Ignored(reason) => ignored.push((event.event_id, *reason)),
        }
        results.push(Some(outcome));
    }
    inbox::mark_ignored(&mut tx, &ignored)
        .await
        .context("cannot record ignored events")?;
    outbox.commit(tx, &emitted).await?;
    Ok(results)
}

/// Names events for an error: the one, or how many and of which orders.
fn describe(events: &[&Envelope]) -> String {
    match events {
        [event] => format!(
            "{} {} of order {}",
            event.event.event_type(),
            event.event_id,
            event.order_id
        ),
        _ => {
            let orders: Vec<String> = events.iter().map(|e| e.order_id.to_string()).collect();
            format!("{} events of orders {}", events.len(), orders.join(", "))
        }
    }
}

/// Whether `error` is the infrastructure's rather than the event's: the database unreachable,
/// restarting, out of connections, or a transaction that lost a deadlock. Such failures are
/// retried for as long as they last, since every other event would fail the same way; any
/// other failure counts against the event's attempts.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(error)) => error.code().is_some_and(|c| transient(&c)),
            Some(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::BeginFailed,
            ) => true,
            _ => false,
        })
}

/// SQLSTATEs of a database that will be fine again: connection exceptions (08), insufficient
/// resources (53), shutting down or starting up (57P), a serialization failure or deadlock
/// (40001, 40P01), a lock timeout (55P03), a cancelled statement (57014), a read-only standby
/// (25006).
fn transient(sqlstate: &str) -> bool {
    sqlstate.starts_with("08")
        || sqlstate.starts_with("53")
        || sqlstate.starts_with("57P")
        || matches!(sqlstate, "40001" | "40P01" | "55P03" | "57014" | "25006")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::Utc;
    use common_events::{Event, OrderId};

    use super::*;
    use crate::testing::{
        ScratchDb,
        rules::{Handler, created},
    };

    fn event(order_id: OrderId, event: Event) -> Envelope {
        Envelope::new(order_id, Utc::now(), event)
    }

    async fn apply_on(
        db: &ScratchDb,
        handler: &Handler,
        events: &[&Envelope],
    ) -> anyhow::Result<Vec<Option<Outcome>>> {
        let mut conn = db.pool.acquire().await?;
        apply(&mut conn, &outbox::Outbox::default(), handler, events).await
    }

    #[tokio::test]
    async fn a_batch_is_claimed_handled_and_committed_with_the_events_it_causes() {
        let db = ScratchDb::create().await.unwrap();
        let handler = Handler::default();
        let (placed, late) = (created(1), event(2, Event::DeadlineReached));

        let outcomes = apply_on(&db, &handler, &[&placed, &late]).await.unwrap();

        assert_eq!(
            outcomes,
            [
                Some(Outcome::Applied(Some(Event::OrderPlaced))),
                Some(Outcome::Ignored("late"))
            ]
        );
        let outbox: Vec<(i64, String)> =
            sqlx::query_as("SELECT order_id, event_type FROM outbox ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert_eq!(outbox, [(1, "OrderPlaced".to_string())]);
        let inbox: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT order_id, outcome, detail FROM inbox ORDER BY order_id")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        assert_eq!(
            inbox,
            [
                (1, "APPLIED".to_string(), None),
                (2, "IGNORED".to_string(), Some("late".to_string()))
            ]
        );
    }

    #[tokio::test]
    async fn a_redelivered_event_is_not_handled_again_and_comes_back_as_none() {
        let db = ScratchDb::create().await.unwrap();
        let handler = Handler::default();
        let (first, second) = (created(1), created(2));
        apply_on(&db, &handler, &[&first]).await.unwrap();

        let outcomes = apply_on(&db, &handler, &[&first, &second]).await.unwrap();

        assert_eq!(
            outcomes,
            [None, Some(Outcome::Applied(Some(Event::OrderPlaced)))]
        );
        assert_eq!(
            *handler.handled.lock().unwrap(),
            HashMap::from([(1, vec![first.event_id]), (2, vec![second.event_id])]),
            "the redelivery never reached the handler"
        );
        let duplicates: i32 = sqlx::query_scalar("SELECT duplicates FROM inbox WHERE order_id = 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(duplicates, 1);
        let placed: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(
            placed, 2,
            "one OrderPlaced per order, none for the redelivery"
        );
    }

    #[tokio::test]
    async fn a_failing_handler_rolls_the_whole_batch_back_as_an_error_of_the_event() {
        let db = ScratchDb::create().await.unwrap();
        let handler = Handler::default();
        let (placed, broken) = (created(1), event(2, Event::OrderPlaced));

        let error = apply_on(&db, &handler, &[&placed, &broken])
            .await
            .unwrap_err();

        assert!(!is_transient(&error), "{error:#}");
        let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let emitted: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!((claimed, emitted), (0, 0), "nothing of the batch was kept");
        let retried = apply_on(&db, &handler, &[&placed]).await.unwrap();
        assert_eq!(
            retried,
            [Some(Outcome::Applied(Some(Event::OrderPlaced)))],
            "still new"
        );
    }

    #[test]
    fn an_unreachable_database_is_transient_and_a_broken_rule_is_not() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let down = anyhow::Error::from(sqlx::Error::Io(refused)).context("cannot begin");
        assert!(is_transient(&down));
        assert!(is_transient(&sqlx::Error::PoolTimedOut.into()));
        assert!(!is_transient(&anyhow::anyhow!("no account to refund")));
        assert!(!is_transient(&sqlx::Error::RowNotFound.into()));
    }

    #[test]
    fn sqlstates_of_a_database_that_will_recover_are_transient() {
        for code in ["08006", "57P01", "57P03", "53300", "40P01", "40001"] {
            assert!(transient(code), "{code}");
        }
        for code in ["23514", "23505", "22003", "42P01"] {
            assert!(!transient(code), "{code}");
        }
    }
}
