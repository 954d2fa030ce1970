//! The seed's walkthrough against a running stack ([`harness::walkthrough`]): `scripts/demo`
//! runs it against the local stack and `scripts/compose-test` against the Docker one, each
//! saying how the exchange is stopped and started there. It prints each command and its
//! answer, then what happened, and exits non-zero if an outcome differs from the seed's.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use harness::{
    ports,
    walkthrough::{Exchange, Walkthrough},
};

#[derive(Parser, Debug)]
#[command(bin_name = "walkthrough")]
struct Options {
    /// The shell command that stops the exchange service (for the downtime scenario).
    #[arg(long)]
    stop_exchange: String,
    /// The shell command that starts it again.
    #[arg(long)]
    start_exchange: String,
    /// The gateway's address, where the seed's `:8088` commands go.
    #[arg(long, default_value_t = ports::gateway_url())]
    gateway: String,
    /// The point service's address, where the seed's `:8083` command goes.
    #[arg(long, default_value_t = format!("http://127.0.0.1:{}", ports::port("point", 1).unwrap_or(8083)))]
    point: String,
    /// Writes the scenarios' order ids to this file, one `name=id` a line (for scripts that
    /// look further at those sagas).
    #[arg(long)]
    orders_to: Option<std::path::PathBuf>,
}

/// The exchange stopped and started by shell commands.
struct Commands<'a> {
    stop: &'a str,
    start: &'a str,
}

impl Exchange for Commands<'_> {
    async fn stop(&mut self) -> anyhow::Result<()> {
        run(self.stop).await
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        run(self.start).await
    }
}

async fn run(command: &str) -> anyhow::Result<()> {
    println!("$ {command}");
    let status = tokio::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .await
        .with_context(|| format!("cannot run {command}"))?;
    if !status.success() {
        bail!("{command} failed ({status})");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let options = Options::parse();
    let mut walkthrough = Walkthrough::new(&options.gateway, &options.point, true);
    let holder = walkthrough.holder().await?;
    if holder != "jjy" {
        println!("(jjy already has an account on this stack; this run uses {holder})");
    }
    let mut exchange = Commands {
        stop: &options.stop_exchange,
        start: &options.start_exchange,
    };
    let walked = walkthrough.run(&holder, &mut exchange).await;
    if let Some(path) = &options.orders_to {
        let lines: String = (walkthrough.orders.iter())
            .map(|(name, id)| format!("{name}={id}\n"))
            .collect();
        std::fs::write(path, lines).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("\n\x1b[1mwhat happened\x1b[0m");
    for check in &walkthrough.checks {
        println!("  {check}");
    }
    walked?;
    let failed = walkthrough.checks.iter().filter(|c| !c.passed()).count();
    println!(
        "walkthrough: {} outcomes as the seed's, {failed} different",
        walkthrough.checks.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
