//! Each write of the deadline service, run against PostgreSQL on every state its row can be in
//! when the write comes, must leave the row as the domain's rule says (`domain::written` and
//! `domain::fire`, the rules the model checker explores). A guard broken in the SQL breaks this
//! test even when the unit tests and the model checker stay green.

use chrono::{DateTime, Duration, Utc};
use deadline_service::{
    DeadlineService,
    domain::{self, Decision, Status},
    store::{self, Deadlines},
};
use e2e_tests::in_process;
use saga_runtime::Service;
use sqlx::{Connection, PgConnection};

/// Every state a deadline's row can be in: none, or one of each status.
fn rows() -> impl Iterator<Item = Option<Status>> {
    std::iter::once(None).chain(Status::ALL.map(Some))
}

fn deadline() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000).unwrap_or_default()
}

async fn seed(conn: &mut PgConnection, row: Option<Status>) -> anyhow::Result<()> {
    if let Some(status) = row {
        sqlx::query("INSERT INTO deadlines (order_id, deadline, status) VALUES (1, $1, $2)")
            .bind(deadline())
            .bind(status.as_str())
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn status(conn: &mut PgConnection) -> anyhow::Result<Option<Status>> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM deadlines WHERE order_id = 1")
            .fetch_optional(conn)
            .await?;
    Ok(status.as_deref().and_then(Status::parse))
}

#[tokio::test]
async fn the_schedule_and_cancel_statements_change_a_deadline_only_where_the_domain_says()
-> anyhow::Result<()> {
    let database = in_process::database::<DeadlineService>().await?;
    let mut conn = database.pool.acquire().await?;
    let schedule = Decision::Schedule {
        deadline: deadline(),
    };
    for decision in [schedule, Decision::Cancel] {
        for row in rows() {
            // Each case in a transaction of its own, rolled back: the next starts from nothing.
            let mut tx = conn.begin().await?;
            seed(&mut tx, row).await?;
            let mut deadlines = Deadlines::default();
            deadlines.push(1, deadline());
            let changed = match decision {
                Decision::Schedule { .. } => deadlines.schedule(&mut tx).await?,
                _ => deadlines.cancel(&mut tx).await?,
            };
            let expected = domain::written(decision, row);
            assert_eq!(
                status(&mut tx).await?,
                expected,
                "{decision:?} over {row:?}"
            );
            assert_eq!(
                changed.contains(&1),
                expected != row,
                "{decision:?} over {row:?} reports the wrong change"
            );
            tx.rollback().await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_timer_fires_a_deadline_only_where_the_domain_says() -> anyhow::Result<()> {
    let database = in_process::database::<DeadlineService>().await?;
    let mut conn = database.pool.acquire().await?;
    for now in [deadline() - Duration::milliseconds(1), deadline()] {
        for row in rows() {
            let mut tx = conn.begin().await?;
            seed(&mut tx, row).await?;
            let fired = store::fire_due(&mut tx, now, 10).await?;
            let expected = domain::fire(row, deadline(), now);
            assert_eq!(status(&mut tx).await?, expected, "{row:?} at {now}");
            assert_eq!(
                fired.iter().any(|f| f.order_id == 1),
                expected != row,
                "{row:?} at {now} reports the wrong change"
            );
            tx.rollback().await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_retention_prunes_only_the_deadlines_the_domain_calls_finished() -> anyhow::Result<()> {
    let database = in_process::database::<DeadlineService>().await?;
    let mut conn = database.pool.acquire().await?;
    let [deadlines] = DeadlineService::RETAINED else {
        anyhow::bail!("the deadline service retains one table");
    };
    for status in Status::ALL {
        let mut tx = conn.begin().await?;
        seed(&mut tx, Some(status)).await?;
        let finished: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM deadlines WHERE order_id = 1",
            deadlines.finished
        )))
        .fetch_one(&mut *tx)
        .await?;
        assert_eq!(finished, domain::finished(status), "{status:?}");
        tx.rollback().await?;
    }
    Ok(())
}
