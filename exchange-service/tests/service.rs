//! The exchange service in process, against real Kafka and PostgreSQL: this test plays the
//! order service, publishing `OrderCreated` and `OrderRejected`, and checks the exchanges and
//! the events the service emits.

use common_events::{Event, EventType};
use e2e_tests::in_process::{TestApp, event};
use exchange_service::{ExchangeService, fault::FaultHooks};
use rust_decimal::Decimal;
use saga_runtime::config::Vars;

fn hooks(vars: &[(&str, &str)]) -> anyhow::Result<FaultHooks> {
    FaultHooks::from_vars(&vars.iter().copied().collect::<Vars>())
}

async fn app() -> anyhow::Result<TestApp> {
    TestApp::spawn::<ExchangeService>(hooks(&[("FAULT_HOOKS", "off")])?, &[]).await
}

fn created(currency_id: &str, amount: i64) -> Event {
    Event::OrderCreated {
        holder_id: "jjy".into(),
        currency_id: Some(currency_id.into()),
        amount: Decimal::from(amount),
    }
}

fn rejected() -> Event {
    Event::OrderRejected {
        reason: "deadline reached".into(),
    }
}

#[tokio::test]
async fn an_order_in_time_is_exchanged_into_points_for_its_holder() -> anyhow::Result<()> {
    let app = app().await?;
    app.publish(&event(1, 30_000, created("1", 500))).await?;
    let succeed = app.emitted(1, EventType::ExchangeSucceed).await?;
    assert_eq!(
        succeed.event,
        Event::ExchangeSucceed {
            user_id: "jjy".into(),
            point: Decimal::from(500)
        }
    );
    let (_, exchange) = app.get("/exchanges/1").await?;
    assert_eq!(exchange["status"], "EXCHANGED");
    Ok(())
}

#[tokio::test]
async fn an_expired_order_is_ignored_and_nothing_is_exchanged() -> anyhow::Result<()> {
    let app = app().await?;
    let late = event(2, -1, created("1", 500));
    app.publish(&late).await?;
    assert_eq!(
        app.handled(&late).await?,
        ("IGNORED".into(), Some("expired".into()))
    );
    assert_eq!(app.get("/exchanges/2").await?.0, 404);
    Ok(())
}

#[tokio::test]
async fn a_rejection_undoes_the_exchange_and_says_how_many_points_it_undid() -> anyhow::Result<()> {
    let app = app().await?;
    app.publish(&event(3, 30_000, created("1", 700))).await?;
    app.emitted(3, EventType::ExchangeSucceed).await?;
    app.publish(&event(3, 30_000, rejected())).await?;
    let undone = app.emitted(3, EventType::ExchangeCompensated).await?;
    assert_eq!(
        undone.event,
        Event::ExchangeCompensated {
            point: Decimal::from(700)
        }
    );
    let (_, exchange) = app.get("/exchanges/3").await?;
    assert_eq!(exchange["status"], "COMPENSATED");
    Ok(())
}

#[tokio::test]
async fn a_rejection_before_any_exchange_still_compensates_and_a_late_order_is_ignored()
-> anyhow::Result<()> {
    let app = app().await?;
    app.publish(&event(4, 30_000, rejected())).await?;
    let undone = app.emitted(4, EventType::ExchangeCompensated).await?;
    assert_eq!(
        undone.event,
        Event::ExchangeCompensated {
            point: Decimal::ZERO
        }
    );
    let late = event(4, 30_000, created("1", 500));
    app.publish(&late).await?;
    assert_eq!(
        app.handled(&late).await?,
        ("IGNORED".into(), Some("saga already compensated".into()))
    );
    Ok(())
}

/// `currencyId=200`: the exchange waits after deciding; the deadline passes meanwhile, and the
/// write's own check refuses the exchange. An ordinary order is exchanged during the wait.
#[tokio::test]
async fn a_deadline_passing_between_decision_and_write_refuses_the_exchange_and_holds_up_no_one()
-> anyhow::Result<()> {
    let app = TestApp::spawn::<ExchangeService>(
        hooks(&[
            ("FAULT_HOOKS", "on"),
            ("FAULT_DELAY_AFTER_CHECK_MS", "5000"),
        ])?,
        &[],
    )
    .await?;
    // The decision must come before the deadline and the write after it: 2.5 s of margin on
    // either side, so that a busy machine cannot move the decision past the deadline.
    let hooked = event(5, 2_500, created("200", 500));
    app.publish(&hooked).await?;
    app.publish(&event(6, 30_000, created("1", 300))).await?;
    app.emitted(6, EventType::ExchangeSucceed).await?;
    assert_eq!(
        app.handled(&hooked).await?,
        ("IGNORED".into(), Some("expired during processing".into()))
    );
    assert_eq!(
        app.get("/exchanges/5").await?.0,
        404,
        "nothing was exchanged"
    );
    assert_eq!(app.events(5).await?.len(), 1, "nothing was emitted");
    Ok(())
}
