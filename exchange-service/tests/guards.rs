//! Each write of the exchange service, run against PostgreSQL on every state its row can be in
//! when the write comes, must leave the row as the domain's rule says (`domain::record` and
//! `domain::compensated`, the rules the model checker explores). A guard broken in the SQL
//! breaks this test even when the unit tests and the model checker stay green.

use chrono::{Duration, Utc};
use e2e_tests::in_process;
use exchange_service::{
    ExchangeService,
    domain::{self, Exchange, NewExchange, Status},
    store::{self, Exchanges},
};
use rust_decimal::Decimal;
use sqlx::{Connection, PgConnection};

/// Every state an exchange's row can be in: none, exchanged, compensated after an exchange or
/// with nothing exchanged.
fn rows() -> [Option<Exchange>; 4] {
    let row = |status, point: i64| {
        Some(Exchange {
            status,
            point: Decimal::from(point),
        })
    };
    [
        None,
        row(Status::Exchanged, 500),
        row(Status::Compensated, 500),
        row(Status::Compensated, 0),
    ]
}

async fn seed(conn: &mut PgConnection, row: Option<Exchange>) -> anyhow::Result<()> {
    if let Some(exchange) = row {
        sqlx::query(
            "INSERT INTO exchanges (order_id, point, status, deadline) VALUES (1, $1, $2, now())",
        )
        .bind(exchange.point)
        .bind(exchange.status.as_str())
        .execute(conn)
        .await?;
    }
    Ok(())
}

async fn exchange(conn: &mut PgConnection) -> anyhow::Result<Option<Exchange>> {
    let row: Option<(String, Decimal)> =
        sqlx::query_as("SELECT status, point FROM exchanges WHERE order_id = 1")
            .fetch_optional(conn)
            .await?;
    Ok(row.and_then(|(status, point)| {
        Some(Exchange {
            status: Status::parse(&status)?,
            point,
        })
    }))
}

#[tokio::test]
async fn the_exchange_statement_records_only_where_the_domain_says() -> anyhow::Result<()> {
    let database = in_process::database::<ExchangeService>().await?;
    let mut conn = database.pool.acquire().await?;
    let point = Decimal::from(7);
    for expired in [false, true] {
        let deadline = Utc::now()
            + if expired {
                -Duration::hours(1)
            } else {
                Duration::hours(1)
            };
        for row in rows() {
            // Each case in a transaction of its own, rolled back: the next starts from nothing.
            let mut tx = conn.begin().await?;
            seed(&mut tx, row).await?;
            let mut exchanges = Exchanges::default();
            let new = NewExchange {
                user_id: "jjy".into(),
                currency_id: None,
                amount: point,
                point,
            };
            exchanges.push(1, deadline, new);
            let refused = exchanges.record(&mut tx).await?;
            let expected = domain::record(row, point, expired);
            assert_eq!(
                exchange(&mut tx).await?,
                expected,
                "over {row:?}, expired={expired}"
            );
            assert_eq!(
                refused.contains(&1),
                expected == row,
                "over {row:?}, expired={expired}: the refusal is reported wrong"
            );
            tx.rollback().await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_compensation_statement_leaves_what_the_domain_says() -> anyhow::Result<()> {
    let database = in_process::database::<ExchangeService>().await?;
    let mut conn = database.pool.acquire().await?;
    for row in rows() {
        let mut tx = conn.begin().await?;
        seed(&mut tx, row).await?;
        store::compensate(&mut tx, &[(1, Utc::now())]).await?;
        assert_eq!(
            exchange(&mut tx).await?,
            Some(domain::compensated(row)),
            "over {row:?}"
        );
        tx.rollback().await?;
    }
    Ok(())
}
