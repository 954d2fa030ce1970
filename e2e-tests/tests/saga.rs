//! The saga end to end: real Kafka, real PostgreSQL, the service binaries.

use std::time::Duration;

use e2e_tests::{
    APPROVED_EVENTS, REJECTED_FOR_POINTS_EVENTS, SETTLE, Stack, ids, normalize, wait_until,
};
use serde_json::{Value, json};

#[tokio::test]
async fn the_happy_path_approves_the_order_and_takes_the_points_once() -> anyhow::Result<()> {
    let stack = Stack::start("happy", &[]).await?;
    stack.open_account("jjy", 10000).await?;
    let order_id = stack.order("jjy", 1, 500).await?;

    let order = stack.finished(order_id, "APPROVED", SETTLE).await?;
    assert_eq!(order["compensation"], Value::Null);
    assert_eq!(stack.balance("jjy").await?, "9500");

    let (_, exchange) = stack
        .get("exchange", &format!("/exchanges/{order_id}"))
        .await?;
    assert_eq!(exchange["status"], "EXCHANGED");
    assert_eq!(normalize(&exchange["point"]), "500");
    let (_, ledger) = stack.get("point", "/transactions").await?;
    assert_eq!(ledger[0]["orderId"], order_id);
    assert_eq!(ledger[0]["status"], "USED");
    let deadline = wait_until(SETTLE, || async {
        let (_, deadlines) = stack.get("deadline", "/deadlines").await.ok()?;
        (deadlines[0]["status"] == "CANCELLED").then_some(deadlines)
    })
    .await?;
    assert_eq!(deadline[0]["orderId"], order_id);

    assert_eq!(stack.saga_events(order_id).await?, APPROVED_EVENTS);
    Ok(())
}

#[tokio::test]
async fn an_order_over_the_point_limit_is_rejected_and_compensated() -> anyhow::Result<()> {
    let stack = Stack::start("limit", &[]).await?;
    stack.open_account("jjy", 9500).await?;
    let order_id = stack.order("jjy", 1, 50000).await?;

    let order = stack
        .finished(order_id, "REJECTED DUE TO POINT LIMIT", SETTLE)
        .await?;
    assert!(
        order["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("point limit"),
        "{order}"
    );
    assert_eq!(stack.balance("jjy").await?, "9500");
    let (_, exchange) = stack
        .get("exchange", &format!("/exchanges/{order_id}"))
        .await?;
    assert_eq!(exchange["status"], "COMPENSATED");
    assert_eq!(
        stack.saga_events(order_id).await?,
        REJECTED_FOR_POINTS_EVENTS
    );
    Ok(())
}

#[tokio::test]
async fn an_order_for_a_holder_without_an_account_is_rejected_long_before_its_deadline()
-> anyhow::Result<()> {
    let stack = Stack::start("noaccount", &[("DEADLINE_MS", "60000")]).await?;
    let order_id = stack.order("nobody", 1, 500).await?;

    let order = stack.settled(order_id, Duration::from_secs(15)).await?;
    assert_eq!(order["status"], "REJECTED DUE TO POINT LIMIT");
    assert_eq!(order["reason"], "no point account for nobody");
    stack
        .finished(order_id, "REJECTED DUE TO POINT LIMIT", SETTLE)
        .await?;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_naming_the_problem_and_writes_nothing()
-> anyhow::Result<()> {
    let stack = Stack::start("badinput", &[]).await?;
    stack.open_account("jjy", 10000).await?;

    let orders: [(Value, &str); 14] = [
        (json!({ "currencyId": 1, "amount": 500 }), "holderId"),
        (
            json!({ "holderId": "", "currencyId": 1, "amount": 500 }),
            "holderId",
        ),
        (json!({ "holderId": "jjy", "currencyId": 1 }), "amount"),
        (json!({ "holderId": "jjy", "amount": "" }), "amount"),
        (json!({ "holderId": "jjy", "amount": "abc" }), "amount"),
        (json!({ "holderId": "jjy", "amount": "NaN" }), "amount"),
        (json!({ "holderId": "jjy", "amount": 0 }), "amount"),
        (json!({ "holderId": "jjy", "amount": "-5" }), "amount"),
        (json!({ "holderId": "jjy", "amount": "1e40" }), "amount"),
        (
            json!({ "holderId": "jjy", "amount": 99999999999999u64 }),
            "amount",
        ),
        (json!({ "holderId": "jjy", "amount": true }), "amount"),
        (json!({ "holderId": ["jjy"], "amount": 5 }), "holderId"),
        (
            json!({ "holderId": "jjy", "currencyId": {}, "amount": 5 }),
            "currencyId",
        ),
        (json!([1, 2]), ""),
    ];
    for (body, field) in orders {
        let (status, error) = stack.post("order", "/orders", &body).await?;
        assert!((400..500).contains(&status), "{body} → {status}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body} → {error}");
    }
    for raw in ["{", "not json", ""] {
        let (status, error) = stack.post_raw("order", "/orders", raw).await?;
        assert_eq!(status, 400, "{raw:?} → {error}");
        assert!(error["message"].is_string(), "{error}");
    }

    let points: [(Value, &str); 5] = [
        (json!({ "point": 100 }), "userId"),
        (json!({ "userId": "kim" }), "point"),
        (json!({ "userId": "kim", "point": "-1" }), "point"),
        (json!({ "userId": "kim", "point": "ten" }), "point"),
        (json!({ "userId": " ", "point": 10 }), "userId"),
    ];
    for (body, field) in points {
        let (status, error) = stack.post("point", "/points", &body).await?;
        assert_eq!(status, 422, "{body} → {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains(field),
            "{error}"
        );
    }
    let again = json!({ "userId": "jjy", "point": "5" });
    let (status, error) = stack.post("point", "/points", &again).await?;
    assert_eq!(status, 409, "{error}");
    assert_eq!(stack.balance("jjy").await?, "10000");

    for (path, service) in [
        ("/orders/999", "order"),
        ("/orders/abc", "order"),
        ("/points/ghost", "point"),
        ("/exchanges/999", "exchange"),
    ] {
        let (status, error) = stack.get(service, path).await?;
        assert_eq!(status, 404, "{path} → {error}");
        assert_eq!(error["error"], "not_found");
    }

    let (status, error) = stack.get("order", "/nowhere").await?;
    assert_eq!((status, &error["error"]), (404, &json!("not_found")));
    let (status, error) = stack.post("exchange", "/exchanges", &json!({})).await?;
    assert_eq!(
        (status, &error["error"]),
        (405, &json!("method_not_allowed"))
    );

    let (_, orders) = stack.get("order", "/orders").await?;
    assert_eq!(orders, json!([]));
    let (_, accounts) = stack.get("point", "/points").await?;
    assert_eq!(accounts.as_array().map(Vec::len), Some(1));
    assert!(
        stack.events().await?.is_empty(),
        "no event may be published"
    );
    Ok(())
}

/// Each participant is killed right after committing its step; after a restart the saga
/// completes with every step applied exactly once.
#[tokio::test]
async fn a_service_killed_right_after_committing_loses_nothing_and_applies_nothing_twice()
-> anyhow::Result<()> {
    for (service, event) in [
        ("exchange", "OrderCreated"),
        ("point", "ExchangeSucceed"),
        ("order", "PointUsed"),
    ] {
        let mut stack =
            Stack::prepare(&format!("crash_{service}"), &[("DEADLINE_MS", "60000")]).await?;
        for name in e2e_tests::SERVICES {
            let crash: &[(&str, &str)] = if name == service {
                &[("FAULT_CRASH_AFTER_COMMIT", event)]
            } else {
                &[]
            };
            stack.spawn(name, crash)?;
        }
        for name in e2e_tests::SERVICES {
            stack.wait_ready(name).await?;
        }
        stack.open_account("jjy", 10000).await?;
        let order_id = stack.order("jjy", 1, 500).await?;

        stack.wait_exit(service, SETTLE).await?;
        let inbox = stack.db(service).await?;
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE event_type = $1")
            .bind(event)
            .fetch_one(&inbox)
            .await?;
        assert_eq!(applied, 1, "{service} committed {event} before dying");

        stack.restart(service, &[]).await?;
        stack.finished(order_id, "APPROVED", SETTLE).await?;
        // The event whose offset was never committed comes again and is recognised.
        wait_until(SETTLE, || async {
            let skipped = stack
                .metric(service, "duplicates_skipped", &[("job", event)])
                .await
                .ok()?;
            (skipped >= 1.0).then_some(())
        })
        .await
        .map_err(|e| e.context(format!("{service} never saw {event} again")))?;
        assert_eq!(
            stack.balance("jjy").await?,
            "9500",
            "points taken once ({service})"
        );
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE event_type = $1")
            .bind(event)
            .fetch_one(&inbox)
            .await?;
        assert_eq!(applied, 1, "{service} applied {event} once");

        let mut ids: Vec<(String, String)> = stack
            .events()
            .await?
            .iter()
            .filter(|e| e["orderId"] == order_id)
            .map(|e| {
                (
                    e["eventType"].as_str().unwrap_or_default().to_string(),
                    e["eventId"].to_string(),
                )
            })
            .collect();
        ids.sort();
        ids.dedup();
        let types: Vec<&str> = ids.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "ExchangeSucceed",
                "OrderCreated",
                "OrderPlaced",
                "PointUsed"
            ],
            "each event exists once, by id ({service})"
        );
    }
    Ok(())
}

/// The walkthrough `scripts/demo` and `scripts/compose-test` run, with its httpie strings, then
/// what else the gateway serves.
#[tokio::test]
async fn the_seed_walkthrough_ends_as_the_seed_says_through_the_gateway() -> anyhow::Result<()> {
    let mut stack = Stack::start("gateway", &[("FAULT_HOOKS", "on")]).await?;
    stack.restart("gateway", &[]).await?;

    let walkthrough = stack.walk_the_seed().await?;
    let outcomes: Vec<String> = walkthrough.checks.iter().map(ToString::to_string).collect();
    assert!(walkthrough.passed(), "{outcomes:#?}");
    assert_eq!(outcomes.len(), 14, "{outcomes:#?}");

    let other = json!({ "holderId": "someone-else", "amount": "1" });
    stack.post("gateway", "/orders", &other).await?;
    let (_, orders) = stack.get("gateway", "/orders?holderId=jjy").await?;
    let placed = ["after", "before", "down", "limit", "happy"].map(|name| walkthrough.orders[name]);
    assert_eq!(ids(&orders), placed, "one holder's orders, newest first");
    for path in [
        "/orders",
        "/exchanges",
        "/deadlines",
        "/transactions",
        "/points",
    ] {
        let (status, list) = stack.get("gateway", path).await?;
        assert_eq!(status, 200, "{path}");
        assert!(
            list.as_array().is_some_and(|l| !l.is_empty()),
            "{path} → {list}"
        );
    }
    let (status, document) = stack.get("gateway", "/openapi.json").await?;
    assert_eq!(status, 200);
    assert!(
        document["paths"]["/orders"]["post"].is_object(),
        "the API description is served"
    );
    let (status, error) = stack.get("gateway", "/nowhere").await?;
    assert_eq!((status, &error["error"]), (404, &json!("not_found")));

    stack.kill("exchange")?;
    let (status, error) = stack.get("gateway", "/exchanges").await?;
    assert_eq!(status, 502, "{error}");
    Ok(())
}
