//! Retention: rows that only record the past are deleted once they are older than the
//! service's `RETENTION_HOURS`, by a task of their own, in small batches, so that neither the
//! relay nor the consumer ever waits on it.
//!
//! Every growing table is walked in the order of a key that grows with time (an order id, or
//! the outbox's id) through that key's index: a round starts at the oldest row and stops at the
//! first batch that holds a row younger than the retention, so it reads only what it deletes
//! and the rows it must keep (an unpublished event, an unfinished saga). After each batch it
//! waits nine times as long as the batch took, so pruning uses at most a tenth of one
//! connection's time: enough to keep up with what a busy service writes (the README's
//! performance section has the figures), while the sagas flowing beside it keep their latency.
//!
//! What must be kept (saga-rules §9): the inbox for at least as long as Kafka may redeliver an
//! event (checked at start-up by [`check`]), so that a redelivered event still finds its row
//! and changes nothing.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;

use crate::{config::RetentionConfig, metrics::Metrics};

/// Rows per batch: one short transaction each.
const BATCH: i64 = 1000;
/// After a batch, the pause, in multiples of the batch's time.
const PAUSE_PER_BATCH_TIME: u32 = 9;

/// A table that grows, and which of its rows may go once they are old.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    /// An indexed column that grows with time (rows are walked in its order).
    pub key: &'static str,
    /// The column whose age decides.
    pub age: &'static str,
    /// What else a row must be to go (SQL, `true` if nothing).
    pub finished: &'static str,
}

/// The runtime's own tables, which every service has.
pub const OUTBOX: Table = Table {
    name: "outbox",
    key: "id",
    age: "created_at",
    // An event is never pruned before Kafka has it.
    finished: "published_at IS NOT NULL",
};
pub const INBOX: Table = Table {
    name: "inbox",
    key: "order_id",
    age: "handled_at",
    finished: "true",
};

impl Table {
    /// One batch: the next [`BATCH`] keys after `$1`, their rows older than `$2` deleted.
    /// Returns the last key read, the rows deleted, and whether a row younger than `$2` was
    /// among them (the end of what this round may prune). A batch holds a lock named by its
    /// table; one that finds it taken (another instance of the service is pruning the table)
    /// reads nothing, which ends its round, so one instance prunes a table at a time.
    fn batch_sql(&self) -> String {
        let Table {
            name,
            key,
            age,
            finished,
        } = self;
        format!(
            "WITH alone AS (
                 SELECT pg_try_advisory_xact_lock(hashtext('prune {name}')) AS alone
             ), batch AS (
                 SELECT DISTINCT {key} AS key FROM {name}
                 WHERE {key} > $1 AND (SELECT alone FROM alone)
                 ORDER BY {key} LIMIT $3
             ), pruned AS (
                 DELETE FROM {name}
                 WHERE {key} IN (SELECT key FROM batch) AND {age} < $2 AND {finished}
                 RETURNING 1
             )
             SELECT (SELECT max(key) FROM batch),
                    (SELECT count(*) FROM pruned),
                    EXISTS (SELECT 1 FROM {name} WHERE {key} IN (SELECT key FROM batch) AND {age} >= $2)"
        )
    }
}

/// Refuses a retention shorter than the longest the saga topic may keep an event
/// (`topic_keeps`, see [`crate::kafka::ensure_topics`]): an event Kafka can still redeliver must
/// still find its inbox row.
pub fn check(config: &RetentionConfig, topic_keeps: Option<Duration>) -> anyhow::Result<()> {
    let Some(topic_keeps) = topic_keeps else {
        anyhow::bail!(
            "the saga topic keeps events for ever (retention.ms=-1): no retention of the inbox \
             outlasts a redelivery; give the topic a retention.ms"
        );
    };
    anyhow::ensure!(
        config.keep >= topic_keeps,
        "RETENTION_HOURS={} is shorter than the saga topic may keep an event ({:.1} h: its \
         retention.ms and segment.ms): an event Kafka redelivers after its inbox row was pruned \
         would be applied twice",
        config.keep.as_secs() / 3600,
        topic_keeps.as_secs_f64() / 3600.0
    );
    Ok(())
}

/// Prunes `tables` every `config.every` until `shutdown`, keeping `config.keep` of history.
pub async fn run(
    pool: PgPool,
    tables: Vec<Table>,
    config: RetentionConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        for table in &tables {
            match prune(&pool, table, config.keep, &metrics, &shutdown).await {
                Ok(Some((rows, took))) => tracing::info!(
                    table = table.name,
                    rows,
                    took_ms = took.as_millis() as u64,
                    "pruned rows older than the retention"
                ),
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    table = table.name,
                    error.message = format!("{error:#}"),
                    "cannot prune; trying again at the next round"
                ),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.every) => {}
        }
    }
}

/// One round over `table`: the rows it deleted and how long it took, if it deleted any.
async fn prune(
    pool: &PgPool,
    table: &Table,
    keep: Duration,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(u64, Duration)>> {
    let sql = table.batch_sql();
    let started = Instant::now();
    let cutoff = chrono::Utc::now() - keep;
    let (mut after, mut total) = (i64::MIN, 0u64);
    while !shutdown.is_cancelled() {
        let batch_started = Instant::now();
        let (last, pruned, reached): (Option<i64>, i64, bool) =
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(after)
                .bind(cutoff)
                .bind(BATCH)
                .fetch_one(pool)
                .await
                .with_context(|| format!("cannot prune {}", table.name))?;
        let pruned = pruned as u64;
        total += pruned;
        metrics.pruned(table.name, pruned);
        let Some(last) = last else { break };
        if reached {
            break;
        }
        after = last;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(batch_started.elapsed() * PAUSE_PER_BATCH_TIME) => {}
        }
    }
    Ok((total > 0).then(|| (total, started.elapsed())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeping(hours: u64) -> RetentionConfig {
        RetentionConfig {
            keep: Duration::from_secs(hours * 3600),
            every: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_retention_shorter_than_the_topics_or_beside_a_topic_kept_for_ever_is_refused() {
        let day = Some(Duration::from_secs(25 * 3600));
        assert!(check(&keeping(25), day).is_ok());
        assert!(check(&keeping(168), day).is_ok());
        let short = check(&keeping(24), day).unwrap_err().to_string();
        assert!(
            short.contains(
                "RETENTION_HOURS=24 is shorter than the saga topic may keep an event (25.0 h"
            ),
            "{short}"
        );
        assert!(check(&keeping(168), None).is_err());
    }
}
