//! The deadline service in process, against real Kafka and PostgreSQL: this test plays the
//! order service, publishing `OrderCreated`, `OrderPlaced` and `OrderRejected`, and checks the
//! deadlines and the `DeadlineReached` the timer emits.

use common_events::{Envelope, Event, EventType};
use deadline_service::DeadlineService;
use e2e_tests::{
    in_process::{PATIENCE, TestApp, event},
    wait_until,
};
use rust_decimal::Decimal;

fn created() -> Event {
    Event::OrderCreated {
        holder_id: "jjy".into(),
        currency_id: None,
        amount: Decimal::from(500),
    }
}

async fn status(app: &TestApp, order_id: i64) -> anyhow::Result<String> {
    Ok(
        app.get(&format!("/deadlines/{order_id}")).await?.1["status"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Waits until the wall clock is past `at`.
async fn past(at: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    wait_until(PATIENCE, || async {
        (chrono::Utc::now() > at).then_some(())
    })
    .await
}

#[tokio::test]
async fn a_scheduled_deadline_fires_once_at_its_time() -> anyhow::Result<()> {
    let app = TestApp::spawn::<DeadlineService>((), &[]).await?;
    let scheduled = event(1, 400, created());
    app.publish(&scheduled).await?;
    let reached = app.emitted(1, EventType::DeadlineReached).await?;
    assert_eq!(reached.deadline, scheduled.deadline);
    let lateness = chrono::Utc::now() - scheduled.deadline;
    assert!(lateness >= chrono::Duration::zero(), "never early");
    assert_eq!(status(&app, 1).await?, "FIRED");
    // How late it fires is the benchmark's to measure (scripts/bench), not a test's to assert.
    let (_, deadline) = app.get("/deadlines/1").await?;
    let fired: chrono::DateTime<chrono::Utc> =
        deadline["firedAt"].as_str().unwrap_or_default().parse()?;
    assert!(
        fired >= scheduled.deadline,
        "fired at {fired}, before its time"
    );
    Ok(())
}

#[tokio::test]
async fn a_saga_that_ends_in_time_cancels_its_deadline_and_it_never_fires() -> anyhow::Result<()> {
    let app = TestApp::spawn::<DeadlineService>((), &[]).await?;
    // Far enough ahead that both events are handled before it, even on a busy machine.
    let scheduled = event(2, 3_000, created());
    app.publish(&scheduled).await?;
    app.handled(&scheduled).await?;
    let placed = Envelope::new(2, scheduled.deadline, Event::OrderPlaced);
    app.publish(&placed).await?;
    app.handled(&placed).await?;
    assert_eq!(status(&app, 2).await?, "CANCELLED");
    past(scheduled.deadline + chrono::Duration::milliseconds(500)).await?;
    assert!(
        app.events(2)
            .await?
            .iter()
            .all(|e| e.event.event_type() != EventType::DeadlineReached)
    );
    Ok(())
}

#[tokio::test]
async fn a_cancel_before_the_schedule_wins_and_cancelling_twice_is_a_no_op() -> anyhow::Result<()> {
    let app = TestApp::spawn::<DeadlineService>((), &[]).await?;
    let rejected = event(
        3,
        30_000,
        Event::OrderRejected {
            reason: "point limit".into(),
        },
    );
    app.publish(&rejected).await?;
    app.handled(&rejected).await?;
    let late = Envelope::new(3, rejected.deadline, created());
    let again = Envelope::new(3, rejected.deadline, Event::OrderPlaced);
    app.publish(&late).await?;
    app.publish(&again).await?;
    assert_eq!(
        app.handled(&late).await?,
        ("IGNORED".into(), Some("already scheduled".into()))
    );
    assert_eq!(
        app.handled(&again).await?,
        ("IGNORED".into(), Some("already fired or cancelled".into()))
    );
    assert_eq!(status(&app, 3).await?, "CANCELLED");
    Ok(())
}

#[tokio::test]
async fn deadlines_that_passed_while_the_service_was_stopped_fire_when_it_starts()
-> anyhow::Result<()> {
    let app = TestApp::spawn::<DeadlineService>((), &[]).await?;
    let scheduled = event(4, 1_000, created());
    app.publish(&scheduled).await?;
    app.handled(&scheduled).await?;
    let app = app
        .restart_after::<DeadlineService>((), scheduled.deadline)
        .await?;
    let reached = app.emitted(4, EventType::DeadlineReached).await?;
    assert_eq!(reached.order_id, 4);
    assert_eq!(status(&app, 4).await?, "FIRED");
    Ok(())
}
