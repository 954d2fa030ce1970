//! The transactional outbox and its relay.
//!
//! An event leaves a service one way: [`Outbox::commit`] writes it in the transaction of the
//! state change that caused it, so the event exists if and only if the change committed, and
//! wakes the relay of its own process. [`relay`] publishes the unpublished rows in id
//! order, marking them published in a transaction that commits only once Kafka has
//! acknowledged them (`acks=all`; `published_at` is when the relay took them): a crash before
//! the commit publishes a row again, which the consumers' inboxes absorb, and so does a
//! producer replaced after a fatal error (see [`Producer`]). The relay also polls now and then
//! for rows another instance left behind when it died. Published rows are kept as the
//! record of what the service emitted, until [`crate::retention`] prunes them.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use common_events::Envelope;
use futures::future::try_join_all;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::FutureRecord,
    util::Timeout,
};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    db::Held,
    kafka::Producer,
    metrics::{self, Metrics},
    retry::Backoff,
};

const BATCH: i64 = 500;
const POLL_FALLBACK: Duration = Duration::from_secs(1);
/// How long a relay whose last delivery failed gives the broker to answer before it takes the
/// lock again.
const PROBE: Duration = Duration::from_secs(1);
/// Begins a relay's transaction and takes the one lock that lets a single relay of a service
/// publish at a time (any constant names it), in one round trip. A relay waits for Kafka's
/// acknowledgements inside this transaction: if its process stalls meanwhile, PostgreSQL ends
/// the transaction once it has been idle too long (see [`crate::db::options`]) and frees the lock
/// for the other instances. What it had sent goes out again from them; the inboxes absorb the
/// copies.
pub const RELAY_BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(504463781752)";

/// The service's outbox: where its events are written, and how its relay is woken. The wake is
/// an in-process signal rather than a NOTIFY from the table: a NOTIFY costs the database a
/// queue entry, a signal to the listening backend and, at commit, a lock that every notifying
/// transaction of the cluster takes in turn.
#[derive(Clone, Default)]
pub struct Outbox(Arc<Notify>);

impl Outbox {
    /// Writes `events` to the outbox in `tx`, commits it, and wakes the relay: the one way an
    /// event leaves a service.
    pub async fn commit(
        &self,
        mut tx: Transaction<'_, Postgres>,
        events: &[Envelope],
    ) -> anyhow::Result<()> {
        append(&mut tx, events).await?;
        tx.commit().await.context("cannot commit")?;
        if !events.is_empty() {
            self.committed();
        }
        Ok(())
    }

    /// Wakes that come while the relay is busy make one more batch, not one each.
    fn committed(&self) {
        self.0.notify_one();
    }
}

/// Writes `events` to the outbox, in one statement, inside the caller's transaction.
async fn append(conn: &mut PgConnection, events: &[Envelope]) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let orders: Vec<i64> = events.iter().map(|e| e.order_id).collect();
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.event.event_type().as_str())
        .collect();
    let payloads: Vec<String> = events.iter().map(Envelope::to_json).collect();
    // Rows get their ids in the events' order.
    sqlx::query(
        "INSERT INTO outbox (order_id, event_id, event_type, payload)
         SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[])",
    )
    .bind(orders)
    .bind(ids)
    .bind(types)
    .bind(payloads)
    .execute(conn)
    .await
    .context("cannot write events to the outbox")?;
    Ok(())
}

/// Publishes the outbox until `shutdown`, then publishes what is left and returns.
pub async fn relay(
    pool: PgPool,
    producer: &Producer,
    topic: String,
    metrics: Metrics,
    wake: Outbox,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut failures = Backoff::DEFAULT.start();
    let mut conn = Held::new(pool.clone());
    loop {
        let published = async {
            // A relay whose last delivery failed takes the lock again only once the broker
            // answers it: while it cannot deliver, the other instances' relays publish.
            if !producer.healthy() && !producer.broker_answers(PROBE).await {
                anyhow::bail!("the broker does not answer this instance's producer");
            }
            let mut kept = conn.take().await.context("cannot connect")?;
            let published = publish_batch(&mut kept, producer, &topic, &metrics).await?;
            conn.keep(kept);
            anyhow::Ok(published)
        };
        match published.await {
            Ok(published) => {
                failures.reset();
                if published == BATCH as usize {
                    continue;
                }
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = wake.0.notified() => {}
                    _ = tokio::time::sleep(POLL_FALLBACK) => {}
                }
            }
            Err(error) => {
                metrics.error(metrics::PUBLISH, "kafka");
                tracing::warn!(
                    error.message = format!("{error:#}"),
                    failures = failures.count() + 1,
                    "outbox relay failed, retrying"
                );
                if shutdown.is_cancelled() && failures.count() >= 2 {
                    // The rows stay in the outbox and go out at the next start.
                    return Err(error.context("outbox relay gave up at shutdown"));
                }
                failures.wait(&shutdown).await;
            }
        }
    }
}

/// Publishes up to [`BATCH`] unpublished rows, in id order, in three round trips: the lock
/// with the `BEGIN`, the rows marked and read in one statement, and the commit once Kafka has
/// acknowledged them. If Kafka fails, the transaction rolls back and the rows stay unpublished.
async fn publish_batch(
    conn: &mut PgConnection,
    producer: &Producer,
    topic: &str,
    metrics: &Metrics,
) -> anyhow::Result<usize> {
    // With two instances of a service, two relays publishing at once could reorder a saga's
    // events; the transaction-scoped lock lets one publish while the other waits.
    let mut tx = conn.begin_with(RELAY_BEGIN).await?;
    let mut rows: Vec<(i64, i64, uuid::Uuid, String, String)> = sqlx::query_as(
        "UPDATE outbox SET published_at = now()
         WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1)
         RETURNING id, order_id, event_id, event_type, payload",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.commit().await?;
        metrics.outbox_backlog.set(0);
        return Ok(0);
    }
    rows.sort_unstable_by_key(|row| row.0);
    let kafka = producer.get();
    let sends = rows
        .iter()
        .map(|(_, order_id, event_id, event_type, payload)| {
            let key = order_id.to_string();
            let headers = OwnedHeaders::new().insert(Header {
                key: "type",
                value: Some(event_type.as_str()),
            });
            let kafka = &kafka;
            async move {
                let record = FutureRecord::to(topic)
                    .key(&key)
                    .payload(payload)
                    .headers(headers);
                kafka
                    .send(record, Timeout::After(Duration::from_secs(15)))
                    .await
                    .map_err(|(error, _)| error)
                    .with_context(|| {
                        format!("cannot publish {event_type} {event_id} of order {order_id}")
                    })
            }
        });
    if let Err(error) = try_join_all(sends).await {
        producer.failed();
        return Err(error);
    }
    producer.delivered();
    tx.commit().await?;
    let backlog: i64 = if rows.len() == BATCH as usize {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&mut *conn)
            .await?
    } else {
        0
    };
    metrics.outbox_backlog.set(backlog);
    for (_, order_id, event_id, event_type, _) in &rows {
        metrics.produced(event_type);
        tracing::debug!(order.id = order_id, event.id = %event_id, event.r#type = event_type, "event published");
    }
    Ok(rows.len())
}
