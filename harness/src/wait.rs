//! Waiting without sleeping for a fixed time: every wait polls a condition until a timeout.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::bail;

/// How long a test waits for what it expects before it fails: long enough for every saga of a
/// stack to settle after a broker or database restart on a loaded 2-core machine. Waits end as
/// soon as their condition holds, so a passing test never waits this long.
pub const SETTLE: Duration = Duration::from_secs(90);

/// How often a wait polls.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if started.elapsed() > timeout {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How long `what` takes to become true, polled every 50 ms, up to `timeout`.
pub async fn time_until<F, Fut>(timeout: Duration, mut what: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    wait_until(timeout, || {
        let check = what();
        async move { check.await.then_some(()) }
    })
    .await?;
    Ok(started.elapsed())
}
