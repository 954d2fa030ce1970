//! The deadline service in process, against real Kafka and PostgreSQL: this test plays the
//! order service, publishing `OrderCreated`, `OrderPlaced` and `OrderRejected`, and checks the
//! deadlines and the `DeadlineReached` the timer emits.
//!
//! The timer's tests run the service on a manual clock that the test moves: a deadline comes
//! due when the test says so, and nothing waits for the wall clock. To see that the timer has
//! NOT fired a deadline, a test lets it fire a later one: the timer fires every due deadline,
//! earliest first, so once the later one has fired, the earlier one would have too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use common_events::{Envelope, Event, EventType, OrderId};
use deadline_service::DeadlineService;
use e2e_tests::in_process::{TestApp, event};
use rust_decimal::Decimal;
use saga_runtime::Clock;

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

/// A manual clock at the current time, to the millisecond as deadlines travel, and the
/// service running on it.
async fn on_manual_clock() -> anyhow::Result<(TestApp, Clock)> {
    let start = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let clock = Clock::manual(start);
    let app = TestApp::spawn_on_clock::<DeadlineService>((), &[], clock.clone()).await?;
    Ok((app, clock))
}

/// Schedules the deadline of saga `order_id`, `in_s` seconds after `clock`'s time; returns
/// once the service has scheduled it.
async fn schedule(
    app: &TestApp,
    clock: &Clock,
    order_id: OrderId,
    in_s: i64,
) -> anyhow::Result<Envelope> {
    let deadline = clock.now() + chrono::Duration::seconds(in_s);
    let scheduled = Envelope::new(order_id, deadline, created());
    app.publish(&scheduled).await?;
    app.handled(&scheduled).await?;
    assert_eq!(status(app, order_id).await?, "PENDING");
    Ok(scheduled)
}

/// How many `DeadlineReached` the service has emitted for `order_id`.
async fn reached(app: &TestApp, order_id: OrderId) -> anyhow::Result<usize> {
    Ok(app
        .events(order_id)
        .await?
        .iter()
        .filter(|e| e.event.event_type() == EventType::DeadlineReached)
        .count())
}

#[tokio::test]
async fn a_deadline_fires_once_when_the_clock_reaches_it_and_not_before() -> anyhow::Result<()> {
    let (app, clock) = on_manual_clock().await?;
    let scheduled = schedule(&app, &clock, 1, 60).await?;
    schedule(&app, &clock, 2, 30).await?;
    clock.advance(Duration::from_secs(30));
    app.emitted(2, EventType::DeadlineReached).await?;
    assert_eq!(reached(&app, 1).await?, 0, "fired before its time");
    assert_eq!(status(&app, 1).await?, "PENDING");

    clock.advance(Duration::from_secs(30));
    let fired = app.emitted(1, EventType::DeadlineReached).await?;
    assert_eq!(fired.deadline, scheduled.deadline);
    assert_eq!(status(&app, 1).await?, "FIRED");
    // Once a later deadline has fired, the timer has looked at the fired one again.
    schedule(&app, &clock, 3, 30).await?;
    clock.advance(Duration::from_secs(30));
    app.emitted(3, EventType::DeadlineReached).await?;
    assert_eq!(reached(&app, 1).await?, 1, "fired more than once");
    Ok(())
}

#[tokio::test]
async fn a_saga_that_ends_in_time_cancels_its_deadline_and_it_never_fires() -> anyhow::Result<()> {
    let (app, clock) = on_manual_clock().await?;
    let scheduled = schedule(&app, &clock, 1, 60).await?;
    let placed = Envelope::new(1, scheduled.deadline, Event::OrderPlaced);
    app.publish(&placed).await?;
    app.handled(&placed).await?;
    assert_eq!(status(&app, 1).await?, "CANCELLED");
    schedule(&app, &clock, 2, 90).await?;
    clock.advance(Duration::from_secs(90));
    app.emitted(2, EventType::DeadlineReached).await?;
    assert_eq!(reached(&app, 1).await?, 0, "a cancelled deadline fired");
    assert_eq!(status(&app, 1).await?, "CANCELLED");
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
    let (app, clock) = on_manual_clock().await?;
    schedule(&app, &clock, 4, 60).await?;
    let app = app
        .restart::<DeadlineService>((), || clock.advance(Duration::from_secs(61)))
        .await?;
    let reached = app.emitted(4, EventType::DeadlineReached).await?;
    assert_eq!(reached.order_id, 4);
    assert_eq!(status(&app, 4).await?, "FIRED");
    Ok(())
}
