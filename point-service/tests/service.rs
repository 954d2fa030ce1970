//! The point service in process, against real Kafka and PostgreSQL: this test plays the
//! exchange, publishing `ExchangeSucceed` and `ExchangeCompensated`, and checks balances, the
//! ledger and the events the service emits.

use common_events::{Event, EventType};
use e2e_tests::in_process::{TestApp, event};
use point_service::PointService;
use rust_decimal::Decimal;
use serde_json::json;

async fn app_with_account(balance: i64) -> anyhow::Result<TestApp> {
    let app = TestApp::spawn::<PointService>((), &[]).await?;
    let (status, _) = app
        .post("/points", &json!({ "userId": "jjy", "point": balance }))
        .await?;
    assert_eq!(status, 201);
    Ok(app)
}

fn exchanged(point: i64) -> Event {
    Event::ExchangeSucceed {
        user_id: "jjy".into(),
        point: Decimal::from(point),
    }
}

fn compensated(point: i64) -> Event {
    Event::ExchangeCompensated {
        point: Decimal::from(point),
    }
}

async fn balance(app: &TestApp) -> anyhow::Result<Decimal> {
    let (_, account) = app.get("/points/jjy").await?;
    Ok(account["point"].as_str().unwrap_or_default().parse()?)
}

#[tokio::test]
async fn exchanged_points_are_taken_from_the_holder_and_reported_with_the_balance_left()
-> anyhow::Result<()> {
    let app = app_with_account(10000).await?;
    app.publish(&event(1, 30_000, exchanged(500))).await?;
    let used = app.emitted(1, EventType::PointUsed).await?;
    assert_eq!(
        used.event,
        Event::PointUsed {
            user_id: "jjy".into(),
            point: Decimal::from(500),
            balance: Decimal::from(9500)
        }
    );
    assert_eq!(balance(&app).await?, Decimal::from(9500));
    let (_, ledger) = app.get("/transactions/1").await?;
    assert_eq!(ledger["status"], "USED");
    Ok(())
}

#[tokio::test]
async fn more_points_than_the_balance_are_refused_with_the_reason_and_nothing_taken()
-> anyhow::Result<()> {
    let app = app_with_account(100).await?;
    app.publish(&event(2, 30_000, exchanged(500))).await?;
    let failed = app.emitted(2, EventType::PointUseFailed).await?;
    let Event::PointUseFailed { reason } = failed.event else {
        anyhow::bail!("expected PointUseFailed");
    };
    assert!(reason.contains("point limit"), "{reason}");
    assert_eq!(balance(&app).await?, Decimal::from(100));
    Ok(())
}

#[tokio::test]
async fn two_sagas_of_one_holder_each_see_the_points_the_other_took() -> anyhow::Result<()> {
    let app = app_with_account(1000).await?;
    // Published together, they usually arrive in one batch, which decides them in turn.
    let (first, second) = (
        event(11, 30_000, exchanged(600)),
        event(12, 30_000, exchanged(600)),
    );
    tokio::try_join!(app.publish(&first), app.publish(&second))?;
    let mut emitted = Vec::new();
    for order in [11, 12] {
        let outcome = e2e_tests::wait_until(e2e_tests::in_process::PATIENCE, || async {
            app.events(order).await.ok()?.into_iter().find(|e| {
                matches!(
                    e.event.event_type(),
                    EventType::PointUsed | EventType::PointUseFailed
                )
            })
        })
        .await?;
        emitted.push(outcome.event.event_type());
    }
    emitted.sort_by_key(|t| t.as_str());
    assert_eq!(emitted, [EventType::PointUseFailed, EventType::PointUsed]);
    assert_eq!(balance(&app).await?, Decimal::from(400));
    Ok(())
}

#[tokio::test]
async fn a_holder_without_an_account_is_refused_at_once() -> anyhow::Result<()> {
    let app = TestApp::spawn::<PointService>((), &[]).await?;
    app.publish(&event(3, 30_000, exchanged(500))).await?;
    let failed = app.emitted(3, EventType::PointUseFailed).await?;
    assert_eq!(
        failed.event,
        Event::PointUseFailed {
            reason: "no point account for jjy".into()
        }
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_exchange_is_ignored_and_recorded_as_such() -> anyhow::Result<()> {
    let app = app_with_account(10000).await?;
    let late = event(4, -1, exchanged(500));
    app.publish(&late).await?;
    assert_eq!(
        app.handled(&late).await?,
        ("IGNORED".into(), Some("expired".into()))
    );
    assert_eq!(balance(&app).await?, Decimal::from(10000));
    assert!(app.events(4).await?.len() == 1, "nothing was emitted");
    Ok(())
}

#[tokio::test]
async fn a_compensation_refunds_what_was_used_once_however_often_it_comes() -> anyhow::Result<()> {
    let app = app_with_account(10000).await?;
    app.publish(&event(5, 30_000, exchanged(500))).await?;
    app.emitted(5, EventType::PointUsed).await?;
    // Three compensations, each under an id of its own, so the inbox cannot tell them apart.
    let copies: Vec<_> = (0..3).map(|_| event(5, 30_000, compensated(500))).collect();
    for copy in &copies {
        app.publish(copy).await?;
    }
    let mut outcomes = Vec::new();
    for copy in &copies {
        outcomes.push(app.handled(copy).await?);
    }
    assert_eq!(outcomes[0], ("APPLIED".into(), None));
    for outcome in &outcomes[1..] {
        assert_eq!(
            *outcome,
            ("IGNORED".into(), Some("already compensated".into()))
        );
    }
    let refunded = app.emitted(5, EventType::PointRefunded).await?;
    assert_eq!(
        refunded.event,
        Event::PointRefunded {
            point: Decimal::from(500)
        }
    );
    assert_eq!(balance(&app).await?, Decimal::from(10000));
    let (_, ledger) = app.get("/transactions/5").await?;
    assert_eq!(ledger["status"], "REFUNDED");
    Ok(())
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing_the_second_time() -> anyhow::Result<()> {
    let app = app_with_account(10000).await?;
    let once = event(6, 30_000, exchanged(500));
    app.publish(&once).await?;
    app.publish(&once).await?;
    app.emitted(6, EventType::PointUsed).await?;
    e2e_tests::wait_until(e2e_tests::in_process::PATIENCE, || async {
        let duplicates: i32 =
            sqlx::query_scalar("SELECT duplicates FROM inbox WHERE event_id = $1")
                .bind(once.event_id)
                .fetch_one(&app.db)
                .await
                .ok()?;
        (duplicates == 1).then_some(())
    })
    .await?;
    assert_eq!(balance(&app).await?, Decimal::from(9500));
    let used = app
        .events(6)
        .await?
        .into_iter()
        .filter(|e| e.event.event_type() == EventType::PointUsed)
        .count();
    assert_eq!(used, 1);
    Ok(())
}

#[tokio::test]
async fn an_event_that_always_fails_is_set_aside_after_its_attempts_and_the_rest_flows_on()
-> anyhow::Result<()> {
    let app = TestApp::spawn::<PointService>(
        (),
        &[
            ("EVENT_MAX_ATTEMPTS", "2"),
            ("EVENT_RETRY_BACKOFF_MS", "10"),
        ],
    )
    .await?;
    for user in ["poison", "jjy"] {
        app.post("/points", &json!({ "userId": user, "point": 1000 }))
            .await?;
    }
    sqlx::query(
        "ALTER TABLE point_transactions ADD CONSTRAINT refuse_poison
         CHECK (user_id IS DISTINCT FROM 'poison')",
    )
    .execute(&app.db)
    .await?;
    let poisoned = event(
        7,
        30_000,
        Event::ExchangeSucceed {
            user_id: "poison".into(),
            point: Decimal::from(10),
        },
    );
    app.publish(&poisoned).await?;
    app.publish(&event(8, 30_000, exchanged(10))).await?;
    app.emitted(8, EventType::PointUsed).await?;
    let letters = e2e_tests::wait_until(e2e_tests::in_process::PATIENCE, || async {
        let letters = e2e_tests::read_topic(
            &e2e_tests::Servers::from_env().kafka,
            &format!("{}.DLT", app.topic),
        )
        .await
        .ok()?;
        (!letters.is_empty()).then_some(letters)
    })
    .await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["eventId"], poisoned.event_id.to_string());
    Ok(())
}
