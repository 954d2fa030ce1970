//! The order service in process, against real Kafka and PostgreSQL: this test places orders
//! over HTTP, plays the point and deadline services by publishing their events, and checks the
//! orders and the events the service emits.

use std::time::Duration;

use common_events::{Event, EventType};
use e2e_tests::in_process::{PATIENCE, TestApp, event};
use order_service::{OrderService, Settings};
use rust_decimal::Decimal;
use serde_json::json;

async fn app() -> anyhow::Result<TestApp> {
    let settings = Settings {
        deadline: Duration::from_secs(30),
    };
    TestApp::spawn::<OrderService>(settings, &[]).await
}

/// Places an order and returns its id once its `OrderCreated` is on the topic.
async fn place(app: &TestApp) -> anyhow::Result<i64> {
    let (status, order) = app
        .post(
            "/orders",
            &json!({ "holderId": "jjy", "currencyId": "1", "amount": "500" }),
        )
        .await?;
    anyhow::ensure!(status == 201, "{status} {order}");
    let id = order["id"].as_i64().unwrap_or_default();
    app.emitted(id, EventType::OrderCreated).await?;
    Ok(id)
}

fn point_used() -> Event {
    Event::PointUsed {
        user_id: "jjy".into(),
        point: Decimal::from(500),
        balance: Decimal::from(9500),
    }
}

async fn order(app: &TestApp, id: i64) -> anyhow::Result<serde_json::Value> {
    Ok(app.get(&format!("/orders/{id}")).await?.1)
}

#[tokio::test]
async fn an_order_is_created_with_its_deadline_and_announced() -> anyhow::Result<()> {
    let app = app().await?;
    let id = place(&app).await?;
    let created = app.emitted(id, EventType::OrderCreated).await?;
    assert_eq!(
        created.event,
        Event::OrderCreated {
            holder_id: "jjy".into(),
            currency_id: Some("1".into()),
            amount: Decimal::from(500)
        }
    );
    let ahead = created.deadline - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::seconds(25) && ahead <= chrono::Duration::seconds(30),
        "the deadline is 30 s after creation: {ahead}"
    );
    assert_eq!(order(&app, id).await?["status"], "PENDING");
    Ok(())
}

#[tokio::test]
async fn orders_placed_at_once_are_written_together_and_each_answer_is_its_own()
-> anyhow::Result<()> {
    let app = app().await?;
    // The test holds the orders table, so the first write waits and the orders that come
    // meanwhile queue behind it, to be written by the next writer in one transaction.
    let mut holder = app.db.begin().await?;
    sqlx::query("LOCK TABLE orders IN EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await?;
    let placing = futures::future::try_join_all((1..=40).map(|n| {
        let body = json!({ "holderId": format!("holder-{n}"), "amount": n.to_string() });
        let app = &app;
        async move { app.post("/orders", &body).await }
    }));
    let release = async {
        e2e_tests::wait_until(PATIENCE, || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO orders%'",
            )
            .fetch_one(&app.db)
            .await
            .ok()?;
            (waiting > 0).then_some(())
        })
        .await?;
        holder.rollback().await?;
        anyhow::Ok(())
    };
    let (answers, released) = tokio::join!(placing, release);
    released?;
    let mut ids = std::collections::HashSet::new();
    for (n, (status, order)) in (1..=40).zip(answers?) {
        assert_eq!(status, 201, "{order}");
        assert_eq!(order["holderId"], format!("holder-{n}"));
        assert_eq!(order["amount"], n.to_string());
        let id = order["id"].as_i64().unwrap_or_default();
        assert!(ids.insert(id), "order {id} answered twice");
        let created = app.emitted(id, EventType::OrderCreated).await?;
        assert_eq!(
            created.event,
            Event::OrderCreated {
                holder_id: format!("holder-{n}"),
                currency_id: None,
                amount: Decimal::from(n)
            }
        );
    }
    // A transaction's rows share its start time: fewer times than orders, fewer transactions.
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT created_at) FROM orders")
        .fetch_one(&app.db)
        .await?;
    assert!(
        transactions < 40,
        "40 orders placed at once took {transactions} transactions"
    );
    Ok(())
}

#[tokio::test]
async fn points_used_in_time_approve_the_order_and_a_late_deadline_changes_nothing()
-> anyhow::Result<()> {
    let app = app().await?;
    let id = place(&app).await?;
    let deadline = app.emitted(id, EventType::OrderCreated).await?.deadline;
    let used = common_events::Envelope::new(id, deadline, point_used());
    app.publish(&used).await?;
    app.emitted(id, EventType::OrderPlaced).await?;
    assert_eq!(order(&app, id).await?["status"], "APPROVED");

    let late = common_events::Envelope::new(id, deadline, Event::DeadlineReached);
    app.publish(&late).await?;
    assert_eq!(
        app.handled(&late).await?,
        ("IGNORED".into(), Some("order already final".into()))
    );
    assert_eq!(order(&app, id).await?["status"], "APPROVED");
    Ok(())
}

#[tokio::test]
async fn points_used_after_the_deadline_never_approve_and_the_deadline_rejects_then_compensation_ends()
-> anyhow::Result<()> {
    let app = app().await?;
    let id = place(&app).await?;
    let expired = event(id, -1, point_used());
    app.publish(&expired).await?;
    assert_eq!(
        app.handled(&expired).await?,
        ("IGNORED".into(), Some("expired".into()))
    );
    app.publish(&event(id, -1, Event::DeadlineReached)).await?;
    let rejected = app.emitted(id, EventType::OrderRejected).await?;
    assert_eq!(
        rejected.event,
        Event::OrderRejected {
            reason: "deadline reached".into()
        }
    );
    let state = order(&app, id).await?;
    assert_eq!(
        (&state["status"], &state["compensation"]),
        (&json!("REJECTED DUE TO DEADLINE"), &json!("PENDING"))
    );
    let refunded = event(
        id,
        -1,
        Event::PointRefunded {
            point: Decimal::from(500),
        },
    );
    app.publish(&refunded).await?;
    app.handled(&refunded).await?;
    assert_eq!(order(&app, id).await?["compensation"], "DONE");
    Ok(())
}

#[tokio::test]
async fn a_failed_point_use_rejects_for_the_point_limit_with_its_reason() -> anyhow::Result<()> {
    let app = app().await?;
    let id = place(&app).await?;
    let failed = Event::PointUseFailed {
        reason: "point limit exceeded: balance 100, needed 500".into(),
    };
    app.publish(&event(id, 30_000, failed)).await?;
    app.emitted(id, EventType::OrderRejected).await?;
    let state = order(&app, id).await?;
    assert_eq!(state["status"], "REJECTED DUE TO POINT LIMIT");
    assert_eq!(
        state["reason"],
        "point limit exceeded: balance 100, needed 500"
    );
    Ok(())
}

/// Counts rows: `table_where` is a table and maybe a `WHERE` clause.
async fn count(app: &TestApp, table_where: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table_where}"
    )))
    .fetch_one(&app.db)
    .await?)
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_gets_the_same_order_and_starts_no_second_saga()
-> anyhow::Result<()> {
    let app = app().await?;
    let body = json!({ "holderId": "jjy", "currencyId": "1", "amount": "500" });
    let key = [("Idempotency-Key", "order-of-jjy-1")];
    let (status, headers, first) = app.post_with_headers("/orders", &body, &key).await?;
    assert_eq!(status, 201, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let id = first["id"].as_i64().unwrap_or_default();
    app.emitted(id, EventType::OrderCreated).await?;

    let (status, headers, retry) = app.post_with_headers("/orders", &body, &key).await?;
    assert_eq!(status, 201, "{retry}");
    assert_eq!(retry, first, "the retry gets the first order back");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(count(&app, "orders").await?, 1);
    assert_eq!(
        count(&app, "outbox WHERE event_type = 'OrderCreated'").await?,
        1,
        "one saga started"
    );

    let other = json!({ "holderId": "jjy", "currencyId": "1", "amount": "700" });
    let (status, _, refused) = app.post_with_headers("/orders", &other, &key).await?;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("order {id} with another body"))),
        "{refused}"
    );
    let bad = [("Idempotency-Key", "")];
    let (status, _, refused) = app.post_with_headers("/orders", &body, &bad).await?;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        count(&app, "orders").await?,
        1,
        "refused POSTs write nothing"
    );
    Ok(())
}

#[tokio::test]
async fn posts_sent_at_once_with_one_idempotency_key_place_one_order() -> anyhow::Result<()> {
    let app = app().await?;
    let body = json!({ "holderId": "jjy", "amount": "5" });
    // Sent at once, they meet in one batch of the group commit and in batches one after the
    // other, the paths where a key is found taken inside the insert.
    let answers = futures::future::try_join_all((0..30).map(|_| {
        let (app, body) = (&app, &body);
        async move {
            app.post_with_headers("/orders", body, &[("Idempotency-Key", "once")])
                .await
        }
    }))
    .await?;
    let ids: std::collections::BTreeSet<i64> = answers
        .iter()
        .map(|(status, _, order)| {
            assert_eq!(*status, 201, "{order}");
            order["id"].as_i64().unwrap_or_default()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the same order: {ids:?}");
    assert_eq!(count(&app, "orders").await?, 1);
    assert_eq!(count(&app, "outbox").await?, 1, "one OrderCreated");
    Ok(())
}

#[tokio::test]
async fn a_relay_stalled_inside_its_transaction_frees_the_lock_for_the_other_instances()
-> anyhow::Result<()> {
    let app = app().await?;
    // Another instance's relay takes the lock and stalls, as a paused process would.
    let mut stalled = app.service_connection().await?;
    sqlx::raw_sql(saga_runtime::outbox::RELAY_BEGIN)
        .execute(&mut stalled)
        .await?;
    let id = place(&app).await?;
    assert!(
        sqlx::query("SELECT 1").execute(&mut stalled).await.is_err(),
        "PostgreSQL ended the stalled relay's transaction"
    );
    assert_eq!(app.emitted(id, EventType::OrderCreated).await?.order_id, id);
    Ok(())
}

#[tokio::test]
async fn pruning_a_large_history_keeps_what_is_unfinished_while_orders_flow() -> anyhow::Result<()>
{
    let app = TestApp::spawn::<OrderService>(
        Settings {
            deadline: Duration::from_secs(30),
        },
        &[("RETENTION_HOURS", "25"), ("PRUNE_INTERVAL_MS", "100")],
    )
    .await?;
    // Pruned at about 8,000 rows a second, a table after the other, beside the test's orders.
    const OLD: i64 = 60_000;
    // A month-old history: finished sagas with their published events and handled events,
    // one saga still pending and one whose compensation has not ended.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO orders (id, holder_id, amount, status, deadline, created_at)
         SELECT -n, 'old', 1, 'APPROVED', now() - interval '30 days', now() - interval '30 days'
         FROM generate_series(1, {OLD}) n;
         UPDATE orders SET status = 'PENDING' WHERE id = -1;
         UPDATE orders SET status = 'REJECTED DUE TO DEADLINE', compensation = 'PENDING'
         WHERE id = -2;
         INSERT INTO outbox (order_id, event_id, event_type, payload, created_at, published_at)
         SELECT -n, gen_random_uuid(), 'OrderCreated', '{{}}',
                now() - interval '30 days', now() - interval '30 days'
         FROM generate_series(1, {OLD}) n;
         INSERT INTO inbox (event_id, order_id, event_type, handled_at)
         SELECT gen_random_uuid(), -n, 'PointUsed', now() - interval '30 days'
         FROM generate_series(1, {OLD}) n;"
    )))
    .execute(&app.db)
    .await?;

    let (mut placed, started) = (Vec::new(), std::time::Instant::now());
    while count(&app, "orders WHERE id < 0").await? > 2 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the history was not pruned within 5 minutes"
        );
        placed.push(place(&app).await?);
    }
    e2e_tests::wait_until(e2e_tests::in_process::PATIENCE, || async {
        let left = count(&app, "outbox WHERE order_id < 0").await.ok()?
            + count(&app, "inbox WHERE order_id < 0").await.ok()?;
        (left == 0).then_some(())
    })
    .await?;
    let kept: Vec<i64> = sqlx::query_scalar("SELECT id FROM orders WHERE id < 0 ORDER BY id DESC")
        .fetch_all(&app.db)
        .await?;
    assert_eq!(kept, [-1, -2], "unfinished sagas are kept");
    assert_eq!(
        count(&app, "orders WHERE id > 0").await?,
        placed.len() as i64,
        "every order placed meanwhile is kept"
    );
    let metrics = reqwest::get(app.url("/metrics")).await?.text().await?;
    assert!(
        metrics.contains(&format!(
            r#"rows_pruned{{app="order-service",table="orders"}} {}"#,
            OLD - 2
        )),
        "{metrics}"
    );
    Ok(())
}
