//! Start-up time: each service instance, and the gateway, is stopped and started again with
//! `scripts/service`, one at a time, and timed from the moment its process was created to its
//! first 200 on `/readyz` (the gateway's `/healthz`): connected to its database and the broker,
//! a member of its consumer group with partitions. Both ends are on the kernel's boot clock
//! (the process's start time in `/proc`, and `/proc/uptime` when the answer came), so the
//! script's own work before it starts the binary is not counted; they are exact to 10 ms.
//! The instance's readiness is asked every [`PROBE`], on its own port.
//!
//! Restarting also makes every run measure the binaries just built, whatever the stack was
//! running before.

use std::time::Duration;

use anyhow::bail;
use loadtest::procfs;
use serde::Serialize;
use tokio::time::Instant;

use crate::{Bench, instance_name};

const PROBE: Duration = Duration::from_millis(5);
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize)]
pub struct Startup {
    pub instance: String,
    pub ready_ms: f64,
}

pub async fn measure(bench: &Bench) -> anyhow::Result<Vec<Startup>> {
    let mut figures = Vec::new();
    for (service, n) in bench.instances() {
        let name = instance_name(service, n);
        let path = if service == "gateway" {
            "/healthz"
        } else {
            "/readyz"
        };
        bench
            .scripts
            .run(&format!("service stop {service} {n}"))
            .await?;
        let url = format!("{}{path}", bench.local.url(service, n)?);
        let start = format!("service start {service} {n}");
        let (ready_at, started) = tokio::join!(ready(&bench.http, &url), bench.scripts.run(&start));
        started?;
        let ready_at = ready_at?;
        let created = procfs::stat(bench.local.pid(&name)?)?.started_after_boot();
        let ready_ms = ready_at.saturating_sub(created).as_secs_f64() * 1000.0;
        println!("start-up: {name} ready in {ready_ms:.0} ms");
        figures.push(Startup {
            instance: name,
            ready_ms,
        });
    }
    Ok(figures)
}

/// Asks `url` until it answers 200; returns when, on the clock of process start times.
async fn ready(http: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let give_up = Instant::now() + READY_TIMEOUT;
    loop {
        let answer = http.get(url).timeout(Duration::from_secs(1)).send().await;
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return procfs::uptime();
        }
        if Instant::now() >= give_up {
            bail!("{url} did not answer 200 within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(PROBE).await;
    }
}
