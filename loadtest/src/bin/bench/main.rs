//! The benchmark (saga-rules §7): how fast, how costly and how punctual the running stack is.
//! Run it with `scripts/bench`, which builds the binaries and starts the stack first; it asserts
//! nothing about speed, it measures and reports.
//!
//! In order, on one stack (the scripts' local one, found through `.local/`):
//! 1. Accounts for every holder of the run are opened first, so that their commits never land
//!    in a measurement.
//! 2. Start-up ([`startup`]): each service instance and the gateway is restarted, one at a
//!    time, and timed from its process's start to its first ready answer.
//! 3. Idle: the stack is left alone for [`STATS_FLUSH`] to settle, then measured for as long
//!    again: CPU time per second of each process, commits per second, and resident memory.
//! 4. Load ([`load`]): at each offered rate, an open-loop load through the gateway, measured
//!    from the events' own timestamps (and the Kafka records'), with each process's CPU time
//!    and PostgreSQL's commits per saga. A sweep stops after the first rate the stack could not keep up with.
//! 5. Resident memory again, after the load.
//! 6. Deadline precision ([`deadlines`]): the lateness of deadlines that fire while many others
//!    are pending.
//!
//! Then it prints a table and writes the figures as JSON and a chart as SVG under
//! `target/bench/` ([`report`]); a full run (not `--quick`) also writes the chart to
//! `docs/bench.svg`, and a PNG of it when Chromium is there to draw it.

mod deadlines;
mod history;
mod load;
mod machine;
mod report;
mod startup;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{CommandFactory, Parser, ValueEnum, error::ErrorKind};
use futures::{StreamExt, TryStreamExt, stream};
use harness::topic::Topic;
use loadtest::{
    gateway::{Gateway, READERS},
    metrics,
    procfs::{self, Process},
    stack::{self, Local, Scripts, StackEnv},
};
use rust_decimal::Decimal;
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::report::{Idle, Memory, Report};

/// Measures the running stack: start-up, idle cost, an open-loop load at fixed rates (latency,
/// throughput, CPU and commits per saga) and deadline precision; prints a table and writes JSON
/// and a chart under target/bench/. scripts/bench builds the release binaries and starts the
/// stack with them (--instances N of each service, 1 unless asked), then runs this.
#[derive(Parser, Debug)]
#[command(bin_name = "scripts/bench")]
struct Options {
    /// Offered rates of the sweep, in sagas per second, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,300,400,500")]
    rates: Vec<f64>,
    /// One rate instead of the sweep (the run of saga-rules §7: --sustained 400 --duration 60).
    #[arg(long, conflicts_with = "rates")]
    sustained: Option<f64>,
    /// Seconds of load at each rate.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Deadlines kept pending in the deadline service while others fire.
    #[arg(long, default_value_t = 100_000)]
    deadlines: u32,
    /// Orders whose deadlines fire during the deadline measurement.
    #[arg(long, default_value_t = 2000)]
    deadline_orders: usize,
    /// The rate at which those orders are placed, per second.
    #[arg(long, default_value_t = 200.0)]
    deadline_rate: f64,
    /// Parts to leave out, comma-separated: startup, deadlines.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<Part>,
    /// CI's brief run, so that the benchmark cannot rot: 3 s at 20 sagas/s, 1,000 deadlines
    /// pending and 50 firing, and no chart in docs/.
    #[arg(long, conflicts_with_all = ["rates", "sustained", "duration", "deadlines", "deadline_orders", "deadline_rate", "chart"])]
    quick: bool,
    /// Finished sagas of a month ago written into the order service's tables before the load,
    /// five rows each, for the load to run while retention prunes them (start the stack with a
    /// short PRUNE_INTERVAL_MS, such as 10000).
    #[arg(long)]
    history: Option<u64>,
    /// How long to wait for a rate's sagas to end after its load (seconds).
    #[arg(long, default_value_t = 60)]
    settle_timeout: u64,
    /// The gateway's address; the local stack's unless given.
    #[arg(long)]
    gateway: Option<String>,
    /// Where every run's JSON and chart go, relative to the repository.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Where a full run also writes its chart, relative to the repository (the README shows
    /// it); a PNG of it goes beside the run's SVG under --out when Chromium can draw it.
    #[arg(long, default_value = "docs/bench.svg")]
    chart: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    Startup,
    Deadlines,
}

/// PostgreSQL backends publish their counters (`pg_stat_database`) at most once a second while
/// busy, and within 10 s once idle (PGSTAT_IDLE_INTERVAL); a count read sooner misses the
/// last ones. Commits are therefore read this long after the work they count has ended.
pub const STATS_FLUSH: Duration = Duration::from_secs(11);
/// Each order asks for this many points; every holder's balance covers millions of orders,
/// so every saga of a run is approved unless something is wrong.
const AMOUNT: i64 = 100;
const BALANCE: i64 = 1_000_000_000;
/// Holders per rate. Orders go to them in turn, so a holder's next order comes 200/rate s
/// after its last one (0.4 s at 500/s): sagas never wait for each other's account row
/// unless the stack is already far behind.
const HOLDERS_PER_RATE: usize = 200;
/// Most orders per holder in the deadline measurement, so that one page of
/// `GET /orders?holderId=` lists them all.
const ORDERS_PER_DEADLINE_HOLDER: usize = 500;

/// What every part needs: the clients of the stack and where its processes are.
pub struct Bench {
    gateway: Gateway,
    /// For the services' own ports (`/metrics`, `/readyz`), with short timeouts.
    http: reqwest::Client,
    topic: Topic,
    /// PostgreSQL's `postgres` database, for `pg_stat_database`: no service uses it, so these
    /// queries add no commits to the services' databases.
    stats: PgPool,
    pg_url: String,
    scripts: Scripts,
    local: Local,
    env: StackEnv,
    settle_timeout: Duration,
}

/// The services' databases, as the services name them by default (`PG_URL` + `saga_NAME`).
const DATABASES: [&str; 4] = ["order", "exchange", "point", "deadline"];

impl Bench {
    /// Every process of the stack now (pids change when an instance restarts).
    fn processes(&self) -> anyhow::Result<Vec<Process>> {
        stack::processes(&self.local, &self.env)
    }

    /// Service instances and the gateway: the processes whose start-up and memory count.
    fn instances(&self) -> Vec<(&'static str, u32)> {
        let mut instances: Vec<(&str, u32)> = loadtest::plan::SERVICES
            .iter()
            .flat_map(|service| (1..=self.env.instances).map(move |n| (*service, n)))
            .collect();
        instances.push(("gateway", 1));
        instances
    }

    /// Commits so far in each service's database.
    async fn commits(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let names: Vec<String> = DATABASES
            .iter()
            .map(|name| format!("saga_{name}"))
            .collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT datname::text, xact_commit FROM pg_stat_database WHERE datname = ANY($1)",
        )
        .bind(&names)
        .fetch_all(&self.stats)
        .await
        .context("cannot read pg_stat_database")?;
        Ok(rows
            .into_iter()
            .map(|(name, commits)| (name.trim_start_matches("saga_").to_string(), commits))
            .collect())
    }

    /// How many sagas have ended, as the deadline service counts them: it consumes each saga's
    /// `OrderPlaced` or `OrderRejected` (and cancels its deadline), the last step of a saga
    /// that is approved or rejected for the point limit. Read from its `/metrics`, so that
    /// waiting for the end of a run costs the databases nothing.
    async fn sagas_ended(&self) -> anyhow::Result<u64> {
        let mut ended = 0.0;
        for n in 1..=self.env.instances {
            let page = metrics::scrape(&self.http, &self.local.url("deadline", n)?).await?;
            for event in ["OrderPlaced", "OrderRejected"] {
                ended += metrics::sum(&page, "messages_consumed", &[("job", event)]);
            }
        }
        Ok(ended as u64)
    }

    /// Runs `scripts/service ACTION SERVICE N` for every instance of a service.
    async fn every_instance(&self, action: &str, service: &str) -> anyhow::Result<()> {
        for n in 1..=self.env.instances {
            self.scripts
                .run(&format!("service {action} {service} {n}"))
                .await?;
        }
        Ok(())
    }

    /// Opens an account with a balance no run can use up for each holder.
    async fn open_accounts(&self, holders: &[String]) -> anyhow::Result<()> {
        stream::iter(holders)
            .map(|holder| self.gateway.open_account(holder, Decimal::from(BALANCE)))
            .buffer_unordered(READERS)
            .try_collect::<()>()
            .await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut options = Options::parse();
    if options.quick {
        (options.rates, options.duration) = (vec![20.0], 3.0);
        (
            options.deadlines,
            options.deadline_orders,
            options.deadline_rate,
        ) = (1000, 50, 50.0);
    }
    let rates = options
        .sustained
        .map_or(options.rates.clone(), |rate| vec![rate]);
    if rates.iter().any(|rate| *rate <= 0.0)
        || options.duration <= 0.0
        || options.deadline_rate <= 0.0
    {
        Options::command()
            .error(
                ErrorKind::InvalidValue,
                "rates and --duration must be greater than zero",
            )
            .exit();
    }

    let root = stack::repo_root();
    let local = Local::new(&root);
    let env = local.stack_env()?;
    let machine = machine::Machine::read(&root, &env)?;
    println!("{}", machine.describe());
    if let Some(warning) = machine.load_warning() {
        println!("warning: {warning}");
    }

    let pg_url = harness::env_or("PG_URL", &local.postgres().url());
    let gateway = match &options.gateway {
        Some(url) => url.clone(),
        None => local.url("gateway", 1)?,
    };
    let stats = PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{pg_url}/postgres"))
        .await
        .context("cannot connect to PostgreSQL (PG_URL)")?;
    let bench = Bench {
        gateway: Gateway::new(&gateway, Duration::from_secs(15))?,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?,
        topic: Topic::of_local_stack()?,
        stats,
        pg_url,
        scripts: Scripts::new(&root),
        local,
        env,
        settle_timeout: Duration::from_secs(options.settle_timeout),
    };
    let skip = |part| options.skip.contains(&part);

    // Leftovers of an interrupted run would be measured with everything else.
    if !skip(Part::Deadlines) {
        deadlines::remove_far(&bench).await?;
    }
    let run_id = format!("{:06x}", rand::random::<u32>() >> 8);
    let holders: Vec<Arc<[String]>> = rates
        .iter()
        .map(|rate| {
            (0..HOLDERS_PER_RATE)
                .map(|i| format!("bench-{run_id}-{rate}-{i}"))
                .collect()
        })
        .collect();
    let deadline_holders: Arc<[String]> =
        (0..options.deadline_orders.div_ceil(ORDERS_PER_DEADLINE_HOLDER))
            .map(|i| format!("bench-{run_id}-deadline-{i}"))
            .collect();
    let every: Vec<String> = holders.iter().flat_map(|h| h.iter().cloned()).collect();
    println!("opening {} accounts", every.len() + deadline_holders.len());
    bench.open_accounts(&every).await?;
    bench.open_accounts(&deadline_holders).await?;

    if let Some(sagas) = options.history {
        history::fill(&bench, sagas).await?;
    }
    let startup = if skip(Part::Startup) {
        Vec::new()
    } else {
        startup::measure(&bench).await?
    };

    println!(
        "idle: letting the stack settle for {} s, then measuring it for as long",
        STATS_FLUSH.as_secs()
    );
    tokio::time::sleep(STATS_FLUSH).await;
    let (idle, mut commits) = measure_idle(&bench).await?;

    let history_before = match options.history {
        Some(_) => Some(history::left(&bench).await?),
        None => None,
    };
    let mut points = Vec::new();
    for (rate, holders) in rates.iter().zip(holders) {
        let (point, after) =
            load::measure(&bench, holders, *rate, options.duration, &commits).await?;
        commits = after;
        println!("{}", report::point_line(&point));
        let saturated = report::saturated(&point);
        points.push(point);
        if saturated && points.len() < rates.len() {
            println!("the stack fell behind at {rate}/s: the higher rates are left out");
            break;
        }
    }
    if let Some(before) = history_before {
        let after = history::left(&bench).await?;
        println!(
            "history: {} rows pruned during the load, {after} left",
            before - after
        );
    }
    let memory = memory(&bench, &idle.rss_mb)?;

    let deadlines = if skip(Part::Deadlines) {
        None
    } else {
        Some(
            deadlines::measure(
                &bench,
                options.deadlines,
                deadline_holders,
                options.deadline_orders,
                options.deadline_rate,
            )
            .await?,
        )
    };

    let report = Report::new(machine, startup, idle, memory, points, deadlines);
    println!("\n{}", report.table());
    let chart = (!options.quick).then(|| root.join(&options.chart));
    let written = report.write(&root.join(&options.out), chart.as_deref())?;
    let written: Vec<String> = written.iter().map(|path| shown(&root, path)).collect();
    println!(
        "\nwrote {} (and latest.* beside the first)",
        written.join(", ")
    );
    Ok(())
}

/// The stack left alone for [`STATS_FLUSH`]: its processes' CPU time per second, its commits
/// per second, and its memory. Returns the commits at the end, where the first rate's count
/// starts.
async fn measure_idle(bench: &Bench) -> anyhow::Result<(Idle, BTreeMap<String, i64>)> {
    let processes = bench.processes()?;
    let (cpu_before, commits_before, started) = (
        procfs::sample_cpu(&processes)?,
        bench.commits().await?,
        Instant::now(),
    );
    tokio::time::sleep(STATS_FLUSH).await;
    let (cpu_after, commits_after) = (procfs::sample_cpu(&processes)?, bench.commits().await?);
    let seconds = started.elapsed().as_secs_f64();
    let idle = Idle {
        seconds,
        cpu_ms_per_s: procfs::cpu_used(&cpu_before, &cpu_after)
            .into_iter()
            .map(|(name, used)| (name, used.map(|used| used.as_secs_f64() * 1000.0 / seconds)))
            .collect(),
        commits_per_s: report::per(&commits_before, &commits_after, seconds),
        rss_mb: rss_of(bench)?,
    };
    Ok((idle, commits_after))
}

/// Resident memory after the load, next to the idle figures.
fn memory(bench: &Bench, idle: &BTreeMap<String, f64>) -> anyhow::Result<Vec<Memory>> {
    let after = rss_of(bench)?;
    Ok(idle
        .iter()
        .map(|(name, idle)| Memory {
            instance: name.clone(),
            idle_mb: *idle,
            after_load_mb: after.get(name).copied(),
        })
        .collect())
}

/// The resident memory of each service instance and of the gateway, in MB.
fn rss_of(bench: &Bench) -> anyhow::Result<BTreeMap<String, f64>> {
    bench
        .instances()
        .into_iter()
        .map(|(service, n)| {
            let name = instance_name(service, n);
            let bytes = procfs::rss(bench.local.pid(&name)?)?;
            Ok((name, bytes as f64 / 1e6))
        })
        .collect()
}

/// How the scripts name an instance: `order-1`, or `gateway`.
fn instance_name(service: &str, n: u32) -> String {
    if service == "gateway" {
        service.to_string()
    } else {
        format!("{service}-{n}")
    }
}

/// Prints a line of progress at most every [`Progress::EVERY`]: long waits show they go on.
struct Progress {
    next: Instant,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(5);

    fn new() -> Progress {
        Progress {
            next: Instant::now() + Self::EVERY,
        }
    }

    /// Whether a line is due now; if so, the next is due [`Progress::EVERY`] later.
    fn due(&mut self) -> bool {
        let due = Instant::now() >= self.next;
        if due {
            self.next = Instant::now() + Self::EVERY;
        }
        due
    }
}

/// A path relative to the repository, for messages.
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
