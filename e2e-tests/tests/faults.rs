//! The saga under faults (saga-rules §4): downtime, slow steps around the expiry check, redelivery,
//! a killed or doubled deadline service, approvals racing the deadline, poison events.

use std::{collections::HashMap, time::Duration};

use anyhow::Context;

use e2e_tests::{REJECTED_BY_DEADLINE_EVENTS, SETTLE, Stack, normalize, wait_until};
use serde_json::{Value, json};

#[tokio::test]
async fn an_order_placed_while_exchange_is_down_is_rejected_and_its_expired_event_ignored()
-> anyhow::Result<()> {
    let mut stack = Stack::start("downtime", &[("DEADLINE_MS", "1500")]).await?;
    stack.open_account("jjy", 10000).await?;
    assert!(
        stack.stop("exchange").await?,
        "exchange stops cleanly on SIGTERM"
    );

    let without_currency = json!({ "holderId": "jjy", "amount": "500" });
    let (status, order) = stack.post("order", "/orders", &without_currency).await?;
    assert_eq!(status, 201, "{order}");
    let order_id = order["id"].as_i64().unwrap_or_default();
    let order = stack.settled(order_id, SETTLE).await?;
    assert_eq!(order["status"], "REJECTED DUE TO DEADLINE");

    stack.restart("exchange", &[]).await?;
    stack
        .finished(order_id, "REJECTED DUE TO DEADLINE", SETTLE)
        .await?;
    assert_eq!(stack.balance("jjy").await?, "10000");
    let (_, exchange) = stack
        .get("exchange", &format!("/exchanges/{order_id}"))
        .await?;
    assert_eq!(
        (&exchange["status"], normalize(&exchange["point"])),
        (&json!("COMPENSATED"), "0".into())
    );

    let ignored: (String, Option<String>) = sqlx::query_as(
        "SELECT outcome, detail FROM inbox WHERE order_id = $1 AND event_type = 'OrderCreated'",
    )
    .bind(order_id)
    .fetch_one(&stack.db("exchange").await?)
    .await?;
    assert_eq!(ignored, ("IGNORED".into(), Some("expired".into())));
    assert_eq!(
        stack.saga_events(order_id).await?,
        REJECTED_BY_DEADLINE_EVENTS
    );
    Ok(())
}

/// `currencyId=100` waits before the exchange's expiry check, `200` after it; meanwhile an
/// ordinary order goes through in its usual time.
#[tokio::test]
async fn a_wait_around_the_expiry_check_ends_in_rejection_never_approval_and_holds_up_no_one()
-> anyhow::Result<()> {
    let stack = Stack::start(
        "hooks",
        &[
            ("DEADLINE_MS", "3000"),
            ("FAULT_HOOKS", "on"),
            ("FAULT_DELAY_BEFORE_CHECK_MS", "5000"),
            ("FAULT_DELAY_AFTER_CHECK_MS", "5000"),
        ],
    )
    .await?;
    stack.open_account("jjy", 10000).await?;
    let before = stack.order("jjy", 100, 500).await?;
    let after = stack.order("jjy", 200, 700).await?;
    // More waiting orders than the exchange has database connections (5 in tests).
    let mut waiting = Vec::new();
    for _ in 0..8 {
        waiting.push(stack.order("jjy", 100, 1).await?);
    }
    let normal = stack.order("jjy", 1, 300).await?;

    stack
        .finished(normal, "APPROVED", Duration::from_secs(3))
        .await
        .context("the ordinary order was held up by the waiting ones")?;

    // Watch both orders until they finish, remembering every status they show on the way.
    let mut seen: HashMap<i64, Vec<String>> = HashMap::new();
    let started = std::time::Instant::now();
    loop {
        let mut done = true;
        for id in [before, after] {
            let (_, order) = stack.get("order", &format!("/orders/{id}")).await?;
            seen.entry(id)
                .or_default()
                .push(order["status"].as_str().unwrap_or_default().to_string());
            done &=
                order["status"] == "REJECTED DUE TO DEADLINE" && order["compensation"] == "DONE";
        }
        if done {
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "hooked orders never finished: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in [before, after] {
        assert!(
            !seen[&id].iter().any(|s| s == "APPROVED"),
            "order {id} went through {:?}",
            seen[&id]
        );
        let (_, exchange) = stack.get("exchange", &format!("/exchanges/{id}")).await?;
        assert_eq!(
            exchange["status"], "COMPENSATED",
            "no active exchange for {id}"
        );
        let events = stack.saga_events(id).await?;
        assert!(
            !events
                .iter()
                .any(|e| e == "PointUsed" || e == "OrderPlaced"),
            "{id}: {events:?}"
        );
    }
    for id in waiting {
        stack
            .finished(id, "REJECTED DUE TO DEADLINE", SETTLE)
            .await?;
    }
    assert_eq!(
        stack.balance("jjy").await?,
        "9700",
        "only the ordinary order took points"
    );

    let outcomes: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT order_id, outcome, detail FROM inbox
         WHERE event_type = 'OrderCreated' AND order_id = ANY($1) ORDER BY order_id",
    )
    .bind([before, after, normal])
    .fetch_all(&stack.db("exchange").await?)
    .await?;
    assert_eq!(
        outcomes,
        [
            (before, "IGNORED".into(), Some("expired".into())),
            (
                after,
                "IGNORED".into(),
                Some("expired during processing".into())
            ),
            (normal, "APPLIED".into(), None),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn redelivering_every_event_of_finished_sagas_changes_nothing() -> anyhow::Result<()> {
    let stack = Stack::start("redelivery", &[]).await?;
    stack.open_account("jjy", 10000).await?;
    let happy = stack.order("jjy", 1, 500).await?;
    let limited = stack.order("jjy", 1, 50000).await?;
    let unknown = stack.order("nobody", 1, 10).await?;
    stack.finished(happy, "APPROVED", SETTLE).await?;
    stack
        .finished(limited, "REJECTED DUE TO POINT LIMIT", SETTLE)
        .await?;
    stack
        .finished(unknown, "REJECTED DUE TO POINT LIMIT", SETTLE)
        .await?;
    // The order's outcome does not wait for the deadline service to cancel its deadline.
    wait_until(SETTLE, || async {
        let (_, deadlines) = stack.get("deadline", "/deadlines").await.ok()?;
        let deadlines = deadlines.as_array()?;
        (deadlines.len() == 3 && deadlines.iter().all(|d| d["status"] == "CANCELLED")).then_some(())
    })
    .await
    .map_err(|e| e.context("the deadlines of the finished sagas were not all cancelled"))?;
    let before = snapshot(&stack).await?;

    let events = stack.events().await?;
    for _ in 0..2 {
        for event in &events {
            stack.republish(event).await?;
        }
    }
    // Each service skips twice every event of a type it consumes.
    let consumed: [(&str, &[&str]); 4] = [
        (
            "order",
            &[
                "PointUsed",
                "PointUseFailed",
                "DeadlineReached",
                "PointRefunded",
            ],
        ),
        ("exchange", &["OrderCreated", "OrderRejected"]),
        ("point", &["ExchangeSucceed", "ExchangeCompensated"]),
        (
            "deadline",
            &["OrderCreated", "OrderPlaced", "OrderRejected"],
        ),
    ];
    for (service, types) in consumed {
        let expected = 2 * events
            .iter()
            .filter(|e| types.iter().any(|t| e["eventType"] == *t))
            .count();
        wait_until(SETTLE, || async {
            let skipped = stack
                .metric(service, "duplicates_skipped", &[])
                .await
                .ok()?;
            (skipped as usize >= expected).then_some(())
        })
        .await
        .map_err(|e| e.context(format!("{service} did not skip {expected} duplicates")))?;
    }
    assert_eq!(snapshot(&stack).await?, before);
    assert_eq!(
        stack.events().await?.len(),
        3 * events.len(),
        "nothing new was emitted"
    );
    Ok(())
}

#[tokio::test]
async fn pending_deadlines_fire_once_after_the_deadline_service_is_killed() -> anyhow::Result<()> {
    let mut stack = Stack::start("deadlinekill", &[("DEADLINE_MS", "2000")]).await?;
    stack.open_account("jjy", 10000).await?;
    stack.stop("exchange").await?;
    let mut orders = Vec::new();
    for _ in 0..5 {
        orders.push(stack.order("jjy", 1, 100).await?);
    }
    wait_until(SETTLE, || async {
        let (_, deadlines) = stack.get("deadline", "/deadlines").await.ok()?;
        let pending = deadlines
            .as_array()?
            .iter()
            .filter(|d| d["status"] == "PENDING")
            .count();
        (pending == orders.len()).then_some(())
    })
    .await?;
    stack.kill("deadline")?;
    // Let every deadline pass while the service is dead, then bring it back.
    let (_, last) = stack
        .get("order", &format!("/orders/{}", orders[orders.len() - 1]))
        .await?;
    let deadline =
        chrono::DateTime::parse_from_rfc3339(last["deadline"].as_str().unwrap_or_default())?;
    wait_until(SETTLE, || async {
        (chrono::Utc::now() > deadline).then_some(())
    })
    .await?;
    stack.restart("deadline", &[]).await?;
    stack.restart("exchange", &[]).await?;

    for order_id in &orders {
        stack
            .finished(*order_id, "REJECTED DUE TO DEADLINE", SETTLE)
            .await?;
    }
    assert_eq!(stack.balance("jjy").await?, "10000");
    assert_each_deadline_fired_once(&stack, &orders).await
}

#[tokio::test]
async fn two_deadline_services_at_once_fire_each_deadline_once() -> anyhow::Result<()> {
    let mut stack = Stack::start("deadlinetwice", &[("DEADLINE_MS", "1000")]).await?;
    stack.spawn_instance("deadline", "deadline-2", &[])?;
    stack.wait_ready("deadline-2").await?;
    stack.open_account("jjy", 10000).await?;
    stack.stop("exchange").await?;
    let mut orders = Vec::new();
    for _ in 0..20 {
        orders.push(stack.order("jjy", 1, 10).await?);
    }
    for order_id in &orders {
        stack.settled(*order_id, SETTLE).await?;
    }
    stack.restart("exchange", &[]).await?;
    for order_id in &orders {
        stack
            .finished(*order_id, "REJECTED DUE TO DEADLINE", SETTLE)
            .await?;
    }
    assert_each_deadline_fired_once(&stack, &orders).await
}

/// Deadlines from far too short to comfortable: in the rounds between, the deadline passes
/// about when the points are used, so approval and rejection race. Whichever wins, every saga
/// ends consistent with the invariants of saga-rules §4.
#[tokio::test]
async fn approvals_racing_the_deadline_always_end_consistently() -> anyhow::Result<()> {
    let mut approved_total = 0;
    let mut rejected_total = 0;
    for deadline_ms in ["50", "150", "300", "600", "2000"] {
        let stack = Stack::start(
            &format!("race{deadline_ms}"),
            &[("DEADLINE_MS", deadline_ms)],
        )
        .await?;
        stack.open_account("jjy", 10000).await?;
        let orders = place_at_once(&stack, 30).await?;
        let settled = stack
            .settle_and_check("jjy", 10000, &orders, SETTLE)
            .await?;
        approved_total += settled.approved;
        rejected_total += settled.rejected;
    }
    println!("racing the deadline: {approved_total} approved, {rejected_total} rejected");
    assert!(
        approved_total > 0 && rejected_total > 0,
        "both outcomes occur, or nothing raced"
    );
    Ok(())
}

#[tokio::test]
async fn poison_events_are_dead_lettered_and_sagas_after_them_complete() -> anyhow::Result<()> {
    let stack = Stack::start("poison", &[]).await?;
    let unknown = json!({
        "eventType": "OrderShipped", "eventId": uuid::Uuid::new_v4(), "timestamp": 1,
        "orderId": 1, "deadline": "2030-01-01T00:00:00Z"
    });
    let invalid = json!({
        "eventType": "OrderCreated", "eventId": uuid::Uuid::new_v4(), "timestamp": 1,
        "orderId": 1, "deadline": "2030-01-01T00:00:00Z", "holderId": "jjy", "amount": "-5"
    });
    stack.publish("1", "this is not json", None).await?;
    stack
        .publish("1", &unknown.to_string(), Some("OrderShipped"))
        .await?;
    stack
        .publish("1", &invalid.to_string(), Some("OrderCreated"))
        .await?;

    stack.open_account("jjy", 10000).await?;
    let order_id = stack.order("jjy", 1, 500).await?;
    stack.finished(order_id, "APPROVED", SETTLE).await?;

    // Every service sets aside what it cannot read; only exchange and deadline read OrderCreated.
    let expected = 4 + 4 + 2;
    let letters = wait_until(SETTLE, || async {
        let letters = stack.dead_letters().await.ok()?;
        (letters.len() >= expected).then_some(letters)
    })
    .await?;
    assert_eq!(letters.len(), expected);
    assert_eq!(
        letters
            .iter()
            .filter(|l| **l == json!("this is not json"))
            .count(),
        4
    );
    assert_eq!(
        letters
            .iter()
            .filter(|l| l["eventType"] == "OrderShipped")
            .count(),
        4
    );
    assert_eq!(
        letters
            .iter()
            .filter(|l| l["eventType"] == "OrderCreated")
            .count(),
        2
    );
    for service in e2e_tests::SERVICES {
        let counted = stack.metric(service, "events_dead_lettered", &[]).await?;
        assert!(counted >= 2.0, "{service} counted {counted}");
    }
    Ok(())
}

/// Everything a saga leaves behind, as the APIs show it.
async fn snapshot(stack: &Stack) -> anyhow::Result<Vec<Value>> {
    let mut state = Vec::new();
    for (service, path) in [
        ("order", "/orders"),
        ("point", "/points"),
        ("point", "/transactions"),
        ("exchange", "/exchanges"),
        ("deadline", "/deadlines"),
    ] {
        state.push(stack.get(service, path).await?.1);
    }
    Ok(state)
}

async fn assert_each_deadline_fired_once(stack: &Stack, orders: &[i64]) -> anyhow::Result<()> {
    let events = stack.events().await?;
    for order_id in orders {
        let fired = events
            .iter()
            .filter(|e| e["orderId"] == *order_id && e["eventType"] == "DeadlineReached")
            .count();
        assert_eq!(fired, 1, "DeadlineReached of order {order_id}");
    }
    let (_, deadlines) = stack.get("deadline", "/deadlines").await?;
    for deadline in deadlines.as_array().into_iter().flatten() {
        assert_eq!(deadline["status"], "FIRED", "{deadline}");
    }
    Ok(())
}

/// Places `count` orders of 10 points at once.
async fn place_at_once(stack: &Stack, count: usize) -> anyhow::Result<Vec<i64>> {
    futures::future::try_join_all((0..count).map(|_| stack.order("jjy", 1, 10))).await
}
