//! Seeing the saga (saga-rules §6): the saga view, its timeline page in a real browser, metrics.

use std::{path::PathBuf, process::Command};

use e2e_tests::{
    APPROVED_EVENTS, REJECTED_BY_DEADLINE_EVENTS, REJECTED_FOR_POINTS_EVENTS, SETTLE, Stack,
    wait_until,
};
use serde_json::Value;

fn types(view: &Value) -> Vec<&str> {
    view["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["eventType"].as_str())
        .collect()
}

/// What `service` did with the saga's `event_type`: (outcome, detail, duplicates).
fn consumption(
    view: &Value,
    event_type: &str,
    service: &str,
) -> Option<(String, Option<String>, i64)> {
    let event = view["events"]
        .as_array()?
        .iter()
        .find(|e| e["eventType"] == event_type)?;
    let by = event["consumedBy"]
        .as_array()?
        .iter()
        .find(|c| c["service"] == service)?;
    Some((
        by["outcome"].as_str()?.to_string(),
        by["detail"].as_str().map(String::from),
        by["duplicates"].as_i64()?,
    ))
}

async fn saga(stack: &Stack, order_id: i64) -> anyhow::Result<Value> {
    let (status, view) = stack.get("gateway", &format!("/sagas/{order_id}")).await?;
    anyhow::ensure!(status == 200, "saga view of {order_id}: {status} {view}");
    Ok(view)
}

#[tokio::test]
async fn the_saga_view_tells_each_story_in_order_with_ignored_and_duplicate_events_marked()
-> anyhow::Result<()> {
    let mut stack = Stack::start("sagaview", &[("DEADLINE_MS", "3000")]).await?;
    stack.restart("gateway", &[]).await?;
    stack.open_account("jjy", 10000).await?;

    let happy = stack.order("jjy", 1, 500).await?;
    let limited = stack.order("jjy", 1, 50000).await?;
    stack.finished(happy, "APPROVED", SETTLE).await?;
    stack
        .finished(limited, "REJECTED DUE TO POINT LIMIT", SETTLE)
        .await?;
    stack.stop("exchange").await?;
    let late = stack.order("jjy", 1, 700).await?;
    stack.settled(late, SETTLE).await?;
    stack.restart("exchange", &[]).await?;
    stack
        .finished(late, "REJECTED DUE TO DEADLINE", SETTLE)
        .await?;
    // The happy saga's OrderCreated, delivered once more.
    let created = stack
        .events()
        .await?
        .into_iter()
        .find(|e| e["orderId"] == happy && e["eventType"] == "OrderCreated")
        .ok_or_else(|| anyhow::anyhow!("no OrderCreated"))?;
    stack.republish(&created).await?;
    wait_until(SETTLE, || async {
        let view = saga(&stack, happy).await.ok()?;
        let exchange = consumption(&view, "OrderCreated", "exchange")?.2;
        let deadline = consumption(&view, "OrderCreated", "deadline")?.2;
        (exchange == 1 && deadline == 1).then_some(())
    })
    .await?;

    let view = saga(&stack, happy).await?;
    assert_eq!(types(&view), APPROVED_EVENTS);
    assert_eq!(view["order"]["status"], "APPROVED");
    assert_eq!(view["deadlineStatus"]["status"], "CANCELLED");
    assert_eq!(view["exchange"]["status"], "EXCHANGED");
    assert_eq!(view["points"]["status"], "USED");
    assert_eq!(view["events"][0]["emittedBy"], "order");
    assert_eq!(
        consumption(&view, "OrderCreated", "exchange"),
        Some(("APPLIED".into(), None, 1))
    );
    assert_eq!(
        consumption(&view, "OrderCreated", "deadline"),
        Some(("APPLIED".into(), None, 1))
    );
    assert_eq!(
        consumption(&view, "OrderPlaced", "deadline"),
        Some(("APPLIED".into(), None, 0))
    );

    let view = saga(&stack, limited).await?;
    assert_eq!(types(&view), REJECTED_FOR_POINTS_EVENTS);
    assert_eq!(view["order"]["status"], "REJECTED DUE TO POINT LIMIT");
    assert_eq!(view["exchange"]["status"], "COMPENSATED");
    assert_eq!(
        consumption(&view, "PointRefunded", "order"),
        Some(("APPLIED".into(), None, 0))
    );

    let view = saga(&stack, late).await?;
    assert_eq!(types(&view), REJECTED_BY_DEADLINE_EVENTS);
    assert_eq!(view["deadlineStatus"]["status"], "FIRED");
    assert_eq!(view["events"][1]["emittedBy"], "deadline");
    assert_eq!(view["events"][1]["afterDeadline"], true);
    assert_eq!(
        consumption(&view, "OrderCreated", "exchange"),
        Some(("IGNORED".into(), Some("expired".into()), 0))
    );
    assert_eq!(
        consumption(&view, "OrderRejected", "deadline"),
        Some((
            "IGNORED".into(),
            Some("already fired or cancelled".into()),
            0
        ))
    );

    let text = reqwest::Client::new()
        .get(format!("{}/sagas/{late}", stack.url("gateway")))
        .header("accept", "text/plain")
        .send()
        .await?
        .text()
        .await?;
    for expected in [
        "REJECTED DUE TO DEADLINE",
        "deadline",
        "DeadlineReached",
        "exchange ignored (expired",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let (status, _) = stack.get("gateway", "/sagas/99999").await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn a_browser_shows_the_timeline_of_a_finished_saga() -> anyhow::Result<()> {
    let mut stack = Stack::start("timeline", &[]).await?;
    stack.restart("gateway", &[]).await?;
    stack.open_account("jjy", 100).await?;
    let order_id = stack.order("jjy", 1, 500).await?;
    stack
        .finished(order_id, "REJECTED DUE TO POINT LIMIT", SETTLE)
        .await?;
    let url = format!("{}/sagas/{order_id}", stack.url("gateway"));

    let dom = chromium(&["--dump-dom", &url])?;
    let page = [
        "Saga of order",
        "REJECTED DUE TO POINT LIMIT",
        "id=\"deadline\"",
        "deadline ·",
    ];
    for expected in page.into_iter().chain(REJECTED_FOR_POINTS_EVENTS) {
        assert!(dom.contains(expected), "{expected:?} missing from the page");
    }
    assert_eq!(
        dom.matches("class=\"event\"").count(),
        6,
        "one circle per event"
    );

    let artifacts = artifacts_dir()?;
    let screenshot = artifacts.join(format!("saga-timeline-{}.png", stack.id));
    chromium(&[
        "--window-size=1200,900",
        &format!("--screenshot={}", screenshot.display()),
        &url,
    ])?;
    let size = std::fs::metadata(&screenshot)?.len();
    assert!(
        size > 20_000,
        "a screenshot of a drawn page, not a blank one ({size} bytes)"
    );
    println!("timeline screenshot: {}", screenshot.display());

    let index = chromium(&["--dump-dom", &format!("{}/sagas", stack.url("gateway"))])?;
    assert!(
        index.contains(&format!("href=\"/sagas/{order_id}\"")),
        "the index links to the saga"
    );
    Ok(())
}

#[tokio::test]
async fn metrics_count_what_happened() -> anyhow::Result<()> {
    let mut stack = Stack::start("metrics", &[("DEADLINE_MS", "3000")]).await?;
    stack.open_account("jjy", 10000).await?;
    // First the saga that runs into its deadline: restarting the exchange resets its counters.
    stack.stop("exchange").await?;
    let late = stack.order("jjy", 1, 10).await?;
    stack.settled(late, SETTLE).await?;
    stack.restart("exchange", &[]).await?;
    stack
        .finished(late, "REJECTED DUE TO DEADLINE", SETTLE)
        .await?;
    let mut orders = Vec::new();
    for amount in [100, 200, 300] {
        orders.push((stack.order("jjy", 1, amount).await?, "APPROVED"));
    }
    for _ in 0..2 {
        orders.push((
            stack.order("jjy", 1, 50000).await?,
            "REJECTED DUE TO POINT LIMIT",
        ));
    }
    orders.push((
        stack.order("nobody", 1, 10).await?,
        "REJECTED DUE TO POINT LIMIT",
    ));
    for (order_id, status) in &orders {
        stack.finished(*order_id, status, SETTLE).await?;
    }

    // service | metric | labels it must have (label=value, comma-separated) | expected value
    const EXPECTED: &str = "
        order    | sagas_finished                  | outcome=APPROVED                    | 3
        order    | sagas_finished                  | outcome=REJECTED DUE TO POINT LIMIT | 3
        order    | sagas_finished                  | outcome=REJECTED DUE TO DEADLINE    | 1
        order    | saga_duration_seconds_count     | outcome=APPROVED                    | 3
        order    | messages_produced               | app=order-service,job=OrderCreated  | 7
        order    | messages_produced               | job=OrderPlaced                     | 3
        order    | messages_produced               | job=OrderRejected                   | 4
        order    | messages_consumed               | job=PointUsed                       | 3
        order    | messages_consumed               | job=PointUseFailed                  | 3
        order    | messages_consumed               | job=PointRefunded                   | 4
        exchange | messages_consumed               | job=OrderCreated                    | 7
        exchange | messages_produced               | job=ExchangeSucceed                 | 6
        exchange | events_ignored                  | job=OrderCreated,reason=expired     | 1
        point    | messages_produced               | job=PointUsed                       | 3
        point    | messages_produced               | job=PointUseFailed                  | 3
        deadline | messages_produced               | job=DeadlineReached                 | 1
        deadline | deadline_lateness_seconds_count |                                     | 1
        deadline | events_ignored                  | job=OrderRejected,reason=already fired or cancelled | 1
    ";
    for row in EXPECTED.lines().filter(|row| !row.trim().is_empty()) {
        let fields: Vec<&str> = row.split('|').map(str::trim).collect();
        let [service, name, labels, expected] = fields[..] else {
            anyhow::bail!("not a row of four fields: {row}");
        };
        let labels: Vec<(&str, &str)> = (labels.split(','))
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let expected: f64 = expected.parse()?;
        let value = wait_until(SETTLE, || async {
            let value = stack.metric(service, name, &labels).await.ok()?;
            (value == expected).then_some(value)
        })
        .await;
        let actual = stack.metric(service, name, &labels).await?;
        assert!(
            value.is_ok(),
            "{service} {name}{labels:?}: expected {expected}, got {actual}"
        );
    }
    for service in e2e_tests::SERVICES {
        assert_eq!(
            stack.metric(service, "message_errors", &[]).await?,
            0.0,
            "{service} had errors"
        );
        assert_eq!(
            stack.metric(service, "outbox_backlog", &[]).await?,
            0.0,
            "{service} backlog"
        );
    }
    let lateness_ok = stack
        .metric(
            "deadline",
            "deadline_lateness_seconds_bucket",
            &[("le", "0.1")],
        )
        .await?;
    assert_eq!(
        lateness_ok, 1.0,
        "the deadline fired within 100 ms of its time"
    );
    Ok(())
}

#[tokio::test]
async fn json_logs_carry_the_order_and_event_ids_of_every_event_line() -> anyhow::Result<()> {
    let stack = Stack::start("jsonlogs", &[("LOG_FORMAT", "json")]).await?;
    stack.open_account("jjy", 10000).await?;
    let order_id = stack.order("jjy", 1, 500).await?;
    stack.finished(order_id, "APPROVED", SETTLE).await?;
    let applied = wait_until(SETTLE, || async {
        let log = stack.log("deadline").ok()?;
        (log.matches("event applied").count() >= 2).then_some(())
    })
    .await;
    assert!(
        applied.is_ok(),
        "the deadline service applied OrderCreated and OrderPlaced"
    );
    for service in e2e_tests::SERVICES {
        let log = stack.log(service)?;
        let mut event_lines = 0;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let entry: Value = serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("{service}: not JSON: {line}: {e}"))?;
            if entry["message"] == "event applied" {
                event_lines += 1;
                let span = &entry["span"];
                assert_eq!(span["order.id"], order_id, "{line}");
                assert!(
                    span["event.id"].as_str().is_some_and(|id| id.len() == 36),
                    "{line}"
                );
                assert!(
                    span["event.type"].is_string() && span["kafka.offset"].is_number(),
                    "{line}"
                );
            }
        }
        assert!(event_lines > 0, "{service} logged the events it applied");
    }
    Ok(())
}

/// Runs Debian's Chromium headless (as the machine's notes prescribe) and returns its stdout.
fn chromium(args: &[&str]) -> anyhow::Result<String> {
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempdir()?;
    let output = Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {binary} (apt-get install chromium): {e}"))?;
    let _ = std::fs::remove_dir_all(&profile);
    anyhow::ensure!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("chromium-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `target/e2e-artifacts`, where screenshots are kept.
fn artifacts_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or_else(|| anyhow::anyhow!("no target directory"))?;
    let dir = target.join("e2e-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
