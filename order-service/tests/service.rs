//! The order service in process, against real Kafka and PostgreSQL: this test places orders
//! over HTTP, plays the point and deadline services by publishing their events, and checks the
//! orders and the events the service emits.

use std::time::Duration;

use common_events::{Event, EventType};
use e2e_tests::in_process::{TestApp, event};
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
    // Sent at once, most of them queue behind the first write and are written together.
    let answers = futures::future::try_join_all((1..=40).map(|n| {
        let body = json!({ "holderId": format!("holder-{n}"), "amount": n.to_string() });
        let app = &app;
        async move { app.post("/orders", &body).await }
    }))
    .await?;
    let mut ids = std::collections::HashSet::new();
    for (n, (status, order)) in (1..=40).zip(answers) {
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
