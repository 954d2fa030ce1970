//! The order service's SQL held to its domain's rules, against PostgreSQL.

use e2e_tests::in_process;
use order_service::{
    OrderService,
    domain::{Compensation, Order, Status},
};
use saga_runtime::Service;
use sqlx::Connection;

#[tokio::test]
async fn the_retention_prunes_only_the_orders_the_domain_calls_finished() -> anyhow::Result<()> {
    let database = in_process::database::<OrderService>().await?;
    let mut conn = database.pool.acquire().await?;
    let [orders] = OrderService::RETAINED else {
        anyhow::bail!("the order service retains one table");
    };
    let compensations = std::iter::once(None).chain(Compensation::ALL.map(Some));
    for compensation in compensations {
        for status in Status::ALL {
            let order = Order {
                status,
                reason: None,
                compensation,
            };
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO orders (id, holder_id, amount, status, compensation, deadline)
                 VALUES (1, 'jjy', 1, $1, $2, now())",
            )
            .bind(status.as_str())
            .bind(compensation.map(Compensation::as_str))
            .execute(&mut *tx)
            .await?;
            let finished: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM orders WHERE id = 1",
                orders.finished
            )))
            .fetch_one(&mut *tx)
            .await?;
            assert_eq!(finished, order.finished(), "{order:?}");
            tx.rollback().await?;
        }
    }
    Ok(())
}
