//! A month-old history for the retention to prune while the load runs (`--history SAGAS`):
//! finished sagas in the order service's tables, as many rows per saga as the service keeps
//! (an order, its two published events, two handled events), under negative ids so they never
//! meet the run's own and come first in the order retention walks the tables. Start the stack with a short `PRUNE_INTERVAL_MS` so that pruning
//! runs during the load; the report then says how many rows it removed meanwhile.

use std::time::Instant;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;

use crate::Bench;

/// Sagas written per statement: a few seconds each, with a progress line between them.
const CHUNK: u64 = 500_000;

/// Writes `sagas` finished sagas of a month ago into the order service's database.
pub async fn fill(bench: &Bench, sagas: u64) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/saga_order", bench.pg_url))
        .await
        .context("cannot connect to the order service's database")?;
    let started = Instant::now();
    let lowest: i64 = sqlx::query_scalar("SELECT coalesce(min(id), 0) FROM orders")
        .fetch_one(&db)
        .await?;
    let mut written = 0;
    while written < sagas {
        let count = CHUNK.min(sagas - written);
        let (from, to) = (
            lowest - written as i64 - count as i64,
            lowest - written as i64 - 1,
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO orders (id, holder_id, amount, status, deadline, created_at, updated_at)
             SELECT n, 'history', 1, 'APPROVED', now() - interval '30 days',
                    now() - interval '30 days', now() - interval '30 days'
             FROM generate_series({from}, {to}) n;
             INSERT INTO outbox (id, order_id, event_id, event_type, payload, created_at, published_at)
             SELECT 2 * n - k, n, gen_random_uuid(), kind, '{{}}', now() - interval '30 days',
                    now() - interval '30 days'
             FROM generate_series({from}, {to}) n,
                  unnest(ARRAY['OrderCreated', 'OrderPlaced']) WITH ORDINALITY AS e(kind, k);
             INSERT INTO inbox (event_id, order_id, event_type, handled_at)
             SELECT gen_random_uuid(), n, kind, now() - interval '30 days'
             FROM generate_series({from}, {to}) n, unnest(ARRAY['PointUsed', 'DeadlineReached']) kind;"
        )))
        .execute(&db)
        .await
        .context("cannot write the history")?;
        written += count;
        println!(
            "history: {written} of {sagas} sagas written ({} rows) after {:.0} s",
            written * 5,
            started.elapsed().as_secs_f64()
        );
    }
    sqlx::query("VACUUM (ANALYZE) orders, outbox, inbox")
        .execute(&db)
        .await?;
    Ok(())
}

/// The history rows still in the order service's tables.
pub async fn left(bench: &Bench) -> anyhow::Result<i64> {
    let db = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{}/saga_order", bench.pg_url))
        .await
        .context("cannot connect to the order service's database")?;
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM orders WHERE id < 0)
              + (SELECT count(*) FROM outbox WHERE order_id < 0)
              + (SELECT count(*) FROM inbox WHERE order_id < 0)",
    )
    .fetch_one(&db)
    .await?;
    Ok(left)
}
