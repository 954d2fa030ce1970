//! The chaos run (saga-rules §8): sagas at a steady rate through the gateway while faults hit the
//! stack, then, with no human action, every saga must end and the invariants of saga-rules §4 hold.
//! Run it with `scripts/chaos`, which starts the stack with the instances asked for.
//!
//! 1. Fresh accounts are opened, with names no earlier run used, and the topic's partition
//!    ends are marked, so that only this run's orders and events are judged.
//! 2. The load and the faults run side by side. The load is open loop: one POST every
//!    1/rate s whatever happens to the ones before, so a fault meets sagas at every stage.
//!    Each POST carries an idempotency key, and one that gets no answer or a 5xx is retried
//!    with it for up to a minute: the order is placed once, whatever the faults did to the
//!    tries. A POST that still fails has an unknown outcome (the order may exist); it is
//!    counted, and step 3 finds every order of the run's holders anyway.
//!    Faults run one at a time: inject, leave it for its downtime, restart (or resume a
//!    paused process), then the next. An instance killed for good stays down while the next
//!    faults run, and is restarted once the load is over.
//!    That keeps each outage as long as printed; it is also needed because
//!    `scripts/service start` provisions the infrastructure, and would end a broker or
//!    PostgreSQL outage early if it ran inside one. A fault whose time has come while the one
//!    before is still healing waits for it, so on a slow machine faults may go on after the
//!    load. The defaults (6 sagas/s, a fault about every 8 s) give 1,000 sagas 21 faults,
//!    which about fill the load's 167 s with broker restarts of 10 to 20 s.
//! 3. Once the last fault is healed, the run polls until every order has ended (and a
//!    rejected one has finished compensating), for at most the settle timeout.
//! 4. It reads every order, exchange, point record and balance through the gateway, and the
//!    run's events from the topic, and checks them ([`harness::invariants`]).
//! 5. It counts the sagas the faults lost, put down to the fault that lost them
//!    ([`loadtest::availability`]), and prints them fault by fault beside how long the faulty
//!    part was unavailable.
//!
//! It exits non-zero on any violation, unsettled or duplicate saga, or fault command that
//! failed. Lost sagas are measured, not judged: what a fault may cost depends on the machine.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::Utc;
use clap::{CommandFactory, Parser, error::ErrorKind};
use futures::{StreamExt, TryStreamExt, stream};
use harness::{
    api::Order,
    invariants::{self, Invariant, Observed, Outcome, Saga, Violation},
    kafka_server,
    topic::Topic,
};
use loadtest::{
    availability::{self, FaultWindow, Losses},
    gateway::{Gateway, READERS},
    plan::{self, BALANCE, Broker, Fault, FaultKind, Plan, Settings},
    stack::{self, Local, Scripts},
};
use rust_decimal::Decimal;
use tokio::task::JoinSet;

/// Drives sagas through the gateway while injecting faults, then checks that every saga ended
/// and the saga's invariants hold. scripts/chaos starts the stack first (from release binaries
/// with --release) and then runs this.
#[derive(Parser, Debug)]
#[command(bin_name = "scripts/chaos")]
struct Options {
    /// How many sagas to start.
    #[arg(long, default_value_t = 1000)]
    sagas: usize,
    /// Sagas started per second.
    #[arg(long, default_value_t = 6.0)]
    rate: f64,
    /// Fault kinds, comma-separated: kill, term, pause (SIGKILL, SIGTERM, SIGSTOP of a
    /// service instance), kill-for-good (SIGKILL of an instance that stays down until the
    /// load is over), broker, broker-pause (SIGKILL, SIGSTOP of Kafka), postgres (stop -m
    /// immediate), skew (an instance restarted with its clock 2 s ahead or behind, for 10 to
    /// 30 s); with --hosts: cut-broker (a broker cut off from the other two, on 3 brokers),
    /// cut-kafka, cut-postgres (an instance cut off from the brokers, from PostgreSQL),
    /// cut-one-way (an instance's packets to the brokers dropped, or theirs to it); or none.
    /// Every kind the stack allows unless given.
    #[arg(long)]
    faults: Option<String>,
    /// About how many seconds apart faults start (at least one of each kind is planned).
    #[arg(long, default_value_t = 8.0)]
    fault_interval: f64,
    /// The broker every broker fault hits on 3 brokers: controller (the active one), leader
    /// (of the most partitions), or its number; they take turns unless given.
    #[arg(long)]
    target_broker: Option<Broker>,
    /// How long every fault lasts, in seconds (a random time for its kind unless given).
    #[arg(long)]
    downtime: Option<f64>,
    /// Instances of each service in the stack.
    #[arg(long, default_value_t = 2)]
    instances: u32,
    /// Kafka brokers in the stack: 1, or 3 (whose broker faults take turns at the active
    /// controller, the broker leading the most partitions, and one picked at random).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3))]
    brokers: u32,
    /// The stack runs on hosts of its own (HOSTS=1), whose network can be cut.
    #[arg(long)]
    hosts: bool,
    /// The seed of the plan (orders and faults); a run with the same seed and options
    /// replays the same inputs. Random unless given.
    #[arg(long)]
    seed: Option<u64>,
    /// How long to wait, after the last fault, for every saga to end (seconds).
    #[arg(long, default_value_t = 120)]
    settle_timeout: u64,
    /// The gateway's address; the local stack's unless given.
    #[arg(long)]
    gateway: Option<String>,
    /// Prints the faults the seed and options plan, with their times and downtimes, and
    /// exits without running anything.
    #[arg(long)]
    plan: bool,
}

/// How long a request to the gateway may take; longer than the gateway's own upstream
/// timeout (10 s), so a slow service shows as the gateway's 504.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let options = Options::parse();
    let invalid = |message: String| {
        Options::command()
            .error(ErrorKind::InvalidValue, message)
            .exit()
    };
    let fits = |kind: &FaultKind| kind.fits(options.brokers, options.hosts);
    let kinds = match &options.faults {
        Some(faults) => {
            plan::parse_kinds(faults).unwrap_or_else(|e| invalid(format!("--faults: {e}")))
        }
        None => FaultKind::ALL.into_iter().filter(fits).collect(),
    };
    if let Some(kind) = kinds.iter().find(|kind| !fits(kind)) {
        invalid(format!(
            "--faults: {} needs --hosts{}",
            kind.name(),
            if *kind == FaultKind::CutBroker {
                " and --brokers 3"
            } else {
                ""
            }
        ));
    }
    if options.sagas == 0
        || options.rate <= 0.0
        || options.fault_interval <= 0.0
        || options.downtime.is_some_and(|downtime| downtime < 0.0)
    {
        invalid(
            "--sagas, --rate and --fault-interval must be greater than zero, --downtime not \
             negative"
                .into(),
        );
    }
    let seed = options.seed.unwrap_or_else(rand::random);
    let plan = Plan::from_seed(
        seed,
        &Settings {
            sagas: options.sagas,
            kinds: kinds.clone(),
            instances: options.instances,
            brokers: options.brokers,
            window: Duration::from_secs_f64(options.sagas as f64 / options.rate),
            fault_interval: Duration::from_secs_f64(options.fault_interval),
            downtime: options.downtime.map(Duration::from_secs_f64),
            broker: options.target_broker,
        },
    );
    let kinds = if kinds.is_empty() {
        "none".to_string()
    } else {
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
    };
    println!(
        "chaos: seed {seed}; replay: scripts/chaos --seed {seed} --sagas {} --rate {} --faults {kinds} --fault-interval {} --instances {} --brokers {}{}{}{}",
        options.sagas,
        options.rate,
        options.fault_interval,
        options.instances,
        options.brokers,
        if options.hosts { " --hosts" } else { "" },
        (options.downtime).map_or(String::new(), |downtime| format!(" --downtime {downtime}")),
        (options.target_broker).map_or(String::new(), |broker| format!(
            " --target-broker {}",
            broker.arg()
        ))
    );
    println!(
        "chaos: {} holders with {BALANCE} points each, {} faults planned",
        plan.holders,
        plan.faults.len(),
    );
    if options.plan {
        for fault in &plan.faults {
            println!(
                "+{:6.1} s  {fault:<38} for {:.1} s",
                fault.at.as_secs_f64(),
                fault.downtime.as_secs_f64()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    let gateway = match &options.gateway {
        Some(url) => url.clone(),
        None => Local::new(stack::repo_root()).url("gateway", 1)?,
    };
    let gateway = Gateway::new(&gateway, REQUEST_TIMEOUT)?;
    let topic = Topic::of_local_stack()?;
    let marks = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || topic.ends()).await??
    };
    // A run id besides the seed, so that a replay opens accounts of its own.
    let run_id = format!("{:06x}", rand::random::<u32>() >> 8);
    let holders: Vec<String> = (0..plan.holders)
        .map(|i| format!("chaos-{seed}-{run_id}-{i}"))
        .collect();
    let initial = Decimal::from(BALANCE);
    for holder in &holders {
        gateway.open_account(holder, initial).await?;
    }

    let (started, started_at) = (Instant::now(), Utc::now());
    let scripts = Scripts::new(stack::repo_root());
    let (load, faults) = tokio::join!(
        drive_load(&gateway, &holders, &plan, options.rate, started),
        inject_faults(&scripts, &topic, &plan.faults, started),
    );

    let timeout = Duration::from_secs(options.settle_timeout);
    let orders = settle(&gateway, &holders, timeout, started).await?;
    println!("{}  reading the final state", stamp(started));
    let sagas = read_sagas(&gateway, orders).await?;
    let balances = read_balances(&gateway, &holders).await?;
    let events = tokio::task::spawn_blocking(move || topic.read_since(&marks)).await??;
    let Load {
        created,
        retried,
        failures,
    } = load;
    let observed = Observed {
        sagas,
        created,
        balances,
        initial,
        events,
    };
    let violations = invariants::check(&observed);
    let lost = availability::lost(observed.sagas.iter().map(|s| &s.order), initial);
    let losses = availability::attribute(&lost, &faults.windows);

    let (unsettled, duplicates) = report(&observed, retried, &failures, &faults, &violations);
    report_losses(&faults.windows, &losses, started_at);
    println!(
        "chaos: {} sagas, {} faults, {} violations, {unsettled} unsettled, {duplicates} duplicates, {} lost (longest window {:.1} s){}",
        observed.sagas.len(),
        faults.injected.values().sum::<usize>(),
        violations.len(),
        losses.total(),
        losses.longest_window_secs(),
        if faults.errors.is_empty() {
            String::new()
        } else {
            format!(", {} fault commands failed", faults.errors.len())
        }
    );
    let passed = !observed.sagas.is_empty()
        && violations.is_empty()
        && unsettled == 0
        && duplicates == 0
        && faults.errors.is_empty();
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The time since the load started, as every line of the run shows it.
fn stamp(started: Instant) -> String {
    format!("+{:6.1} s", started.elapsed().as_secs_f64())
}

/// How long a POST is retried with its idempotency key before its outcome is unknown.
const POST_GIVE_UP: Duration = Duration::from_secs(60);

struct Load {
    /// The ids of the orders whose POST answered 201.
    created: Vec<i64>,
    /// The orders that took more than one try.
    retried: usize,
    /// Why each POST that failed every try failed.
    failures: Vec<String>,
}

impl Load {
    fn record(&mut self, post: Result<anyhow::Result<(i64, u32)>, tokio::task::JoinError>) {
        match post {
            Ok(Ok((id, tries))) => {
                self.created.push(id);
                self.retried += usize::from(tries > 1);
            }
            Ok(Err(e)) => self.failures.push(format!("{e:#}")),
            Err(e) => self.failures.push(e.to_string()),
        }
    }
}

/// Posts the plan's orders at `rate` per second, each in its own task, and waits for them all.
async fn drive_load(
    gateway: &Gateway,
    holders: &[String],
    plan: &Plan,
    rate: f64,
    started: Instant,
) -> Load {
    let mut load = Load {
        created: Vec::new(),
        retried: 0,
        failures: Vec::new(),
    };
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut posts = JoinSet::new();
    let mut next_progress = Duration::from_secs(10);
    for (posted, order) in plan.orders.iter().enumerate() {
        ticks.tick().await;
        let (gateway, holder) = (gateway.clone(), holders[order.holder].clone());
        let (amount, key) = (order.amount, format!("{holder}-{posted}"));
        posts.spawn(async move {
            gateway
                .place_order_retrying(&holder, amount, &key, POST_GIVE_UP)
                .await
        });
        while let Some(result) = posts.try_join_next() {
            load.record(result);
        }
        if started.elapsed() >= next_progress {
            next_progress += Duration::from_secs(10);
            println!(
                "{}  load: {} posted, {} created, {} POSTs failed",
                stamp(started),
                posted + 1,
                load.created.len(),
                load.failures.len()
            );
        }
    }
    while let Some(result) = posts.join_next().await {
        load.record(result);
    }
    println!(
        "{}  load done: {} posted, {} created ({} after retries), {} POSTs failed (outcome unknown)",
        stamp(started),
        plan.orders.len(),
        load.created.len(),
        load.retried,
        load.failures.len()
    );
    load
}

struct Faults {
    injected: BTreeMap<FaultKind, usize>,
    /// The fault commands that failed, with their output.
    errors: Vec<String>,
    /// Every fault as it happened, in the order they were injected.
    windows: Vec<FaultWindow>,
}

/// Injects the faults one at a time, each at its planned time or as soon as the one before it
/// has healed, and restarts or resumes what each stopped after its downtime. Instances killed
/// for good are restarted at the end of their downtime, once the other faults are done.
async fn inject_faults(
    scripts: &Scripts,
    topic: &Topic,
    plan: &[Fault],
    started: Instant,
) -> Faults {
    let mut faults = Faults {
        injected: BTreeMap::new(),
        errors: Vec::new(),
        windows: Vec::new(),
    };
    // Faults that last while others come (a kill for good, a skewed clock), healed once their
    // time has come, in the order of that time.
    let mut lasting: Vec<(Instant, String, Fault, usize)> = Vec::new();
    for (i, planned) in plan.iter().enumerate() {
        let name = format!("fault {}/{}", i + 1, plan.len());
        tokio::time::sleep_until((started + planned.at).into()).await;
        lasting.sort_by_key(|(due, ..)| *due);
        while lasting
            .first()
            .is_some_and(|(due, ..)| *due <= Instant::now())
        {
            let (_, name, fault, window) = lasting.remove(0);
            heal(scripts, &name, &fault, &mut faults, window, started).await;
        }
        let fault = match which_broker(topic, planned).await {
            Ok(fault) => fault,
            Err(e) => {
                println!("{}  {name}: {planned} FAILED: {e:#}", stamp(started));
                faults.errors.push(format!("{e:#}"));
                continue;
            }
        };
        let label = match (planned.broker, fault.broker) {
            (Some(Broker::Controller | Broker::Leader), Some(Broker::Number(number))) => {
                format!("{planned} (kafka-{number})")
            }
            _ => fault.to_string(),
        };
        let window = faults.windows.len();
        faults.windows.push(FaultWindow {
            label: label.clone(),
            injected: Utc::now(),
            healed: None,
        });
        match scripts.inject(&fault).await {
            Ok(command) => {
                println!("{}  {name}: {label:<38} {command}", stamp(started));
                *faults.injected.entry(fault.kind).or_default() += 1;
            }
            Err(e) => {
                println!("{}  {name}: {fault} FAILED: {e:#}", stamp(started));
                faults.errors.push(format!("{e:#}"));
            }
        }
        if matches!(fault.kind, FaultKind::KillForGood | FaultKind::Skew) {
            lasting.push((Instant::now() + fault.downtime, name, fault, window));
            continue;
        }
        tokio::time::sleep(fault.downtime).await;
        heal(scripts, &name, &fault, &mut faults, window, started).await;
    }
    lasting.sort_by_key(|(due, ..)| *due);
    for (due, name, fault, window) in lasting {
        tokio::time::sleep_until(due.into()).await;
        heal(scripts, &name, &fault, &mut faults, window, started).await;
    }
    faults
}

/// The fault with the broker it hits by number, where it named the active controller or the
/// busiest leader, as they are now.
async fn which_broker(topic: &Topic, fault: &Fault) -> anyhow::Result<Fault> {
    let number = match fault.broker {
        Some(Broker::Controller) => kafka_server::active_controller(&topic.bootstrap).await?,
        Some(Broker::Leader) => {
            let topic = topic.clone();
            let leader = tokio::task::spawn_blocking(move || topic.busiest_leader()).await??;
            u32::try_from(leader)?
        }
        _ => return Ok(fault.clone()),
    };
    Ok(Fault {
        broker: Some(Broker::Number(number)),
        ..fault.clone()
    })
}

/// Restarts or resumes what `fault` stopped; harmless if injecting it failed, and needed if it
/// half happened.
async fn heal(
    scripts: &Scripts,
    name: &str,
    fault: &Fault,
    faults: &mut Faults,
    window: usize,
    started: Instant,
) {
    match scripts.heal(fault).await {
        Ok(command) => {
            let healed = Utc::now();
            let down = (healed - faults.windows[window].injected).num_milliseconds();
            let what = format!("back after {:.1} s", down as f64 / 1000.0);
            println!("{}  {name}: {what:<38} {command}", stamp(started));
            faults.windows[window].healed = Some(healed);
        }
        Err(e) => {
            println!("{}  {name}: restart FAILED: {e:#}", stamp(started));
            faults.errors.push(format!("{e:#}"));
        }
    }
}

/// Polls until every order has ended or `timeout` has passed, and returns the orders.
async fn settle(
    gateway: &Gateway,
    holders: &[String],
    timeout: Duration,
    started: Instant,
) -> anyhow::Result<Vec<Order>> {
    let since = Instant::now();
    let mut last_report = None;
    loop {
        let listed = gateway.orders_of_holders(holders).await;
        let open = match &listed {
            Ok(orders) => {
                let open = orders
                    .iter()
                    .filter(|o| invariants::outcome(o) == Outcome::Unsettled)
                    .count();
                if open == 0 {
                    println!("{}  settled: every saga has ended", stamp(started));
                    return listed;
                }
                format!("{open} of {} sagas still open", orders.len())
            }
            Err(e) => format!("cannot list the orders yet ({e:#})"),
        };
        if since.elapsed() >= timeout {
            println!(
                "{}  settling: gave up after {timeout:?}: {open}",
                stamp(started)
            );
            return listed.context("cannot list the run's orders");
        }
        if last_report.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(5)) {
            println!("{}  settling: {open}", stamp(started));
            last_report = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Each order with its exchange and point record.
async fn read_sagas(gateway: &Gateway, orders: Vec<Order>) -> anyhow::Result<Vec<Saga>> {
    stream::iter(orders)
        .map(|order| async move {
            let (exchange, transaction) =
                tokio::try_join!(gateway.exchange(order.id), gateway.transaction(order.id))?;
            anyhow::Ok(Saga {
                order,
                exchange,
                transaction,
            })
        })
        .buffered(READERS)
        .try_collect()
        .await
}

async fn read_balances(
    gateway: &Gateway,
    holders: &[String],
) -> anyhow::Result<BTreeMap<String, Decimal>> {
    stream::iter(holders)
        .map(|holder| async move { anyhow::Ok((holder.clone(), gateway.balance(holder).await?)) })
        .buffered(READERS)
        .try_collect()
        .await
}

/// Prints the summary table; returns the numbers of unsettled and duplicate sagas.
fn report(
    observed: &Observed,
    retried: usize,
    post_failures: &[String],
    faults: &Faults,
    violations: &[Violation],
) -> (usize, usize) {
    let sagas = &observed.sagas;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut unsettled = Vec::new();
    for saga in sagas {
        if invariants::outcome(&saga.order) == Outcome::Unsettled {
            let compensation = saga.order.compensation.as_deref().unwrap_or("none");
            unsettled.push(format!(
                "{} ({}, compensation {compensation})",
                saga.order.id, saga.order.status
            ));
        } else {
            *by_status.entry(saga.order.status.clone()).or_default() += 1;
        }
    }
    let row = |label: &str, count: usize, note: String| {
        let line = format!("  {label:<44} {count:>6}  {note}");
        println!("{}", line.trim_end());
    };
    println!("\nsummary");
    let unanswered = sagas.len().saturating_sub(observed.created.len());
    // Each POST that failed every try may have placed its order; any other saga that no POST
    // was answered with is a second saga of one order.
    let duplicates = unanswered.saturating_sub(post_failures.len());
    row(
        "sagas",
        sagas.len(),
        format!("({unanswered} placed by POSTs that failed every try)"),
    );
    for (status, count) in &by_status {
        row(&format!("  {status}"), *count, String::new());
    }
    row("  unsettled", unsettled.len(), first(&unsettled));
    row("duplicate sagas", duplicates, String::new());
    row(
        "POST /orders retried with their key",
        retried,
        String::new(),
    );
    row(
        "POSTs failed every try (outcome unknown)",
        post_failures.len(),
        first(post_failures),
    );
    row("faults", faults.injected.values().sum(), String::new());
    for kind in FaultKind::ALL {
        if let Some(count) = faults.injected.get(&kind) {
            row(&format!("  {}", kind.name()), *count, String::new());
        }
    }
    if !faults.errors.is_empty() {
        row(
            "fault commands failed",
            faults.errors.len(),
            first(&faults.errors),
        );
    }
    row("violations", violations.len(), String::new());
    let mut by_invariant: BTreeMap<Invariant, Vec<String>> = BTreeMap::new();
    for violation in violations {
        by_invariant
            .entry(violation.invariant)
            .or_default()
            .push(format!("{}: {}", violation.subject, violation.detail));
    }
    for (invariant, cases) in &by_invariant {
        row(
            &format!("  {}", invariant.description()),
            cases.len(),
            first(cases),
        );
    }
    (unsettled.len(), duplicates)
}

/// Prints, fault by fault, how long the faulty part was unavailable and what the fault cost.
fn report_losses(windows: &[FaultWindow], losses: &Losses, started_at: chrono::DateTime<Utc>) {
    println!("\navailability (lost: rejected by the deadline although the holder had the points)");
    println!(
        "  {:<52} {:>11}  {:>11}  {:>5}",
        "fault (from the start of the load)", "unavailable", "loss window", "lost"
    );
    for (window, cost) in windows.iter().zip(&losses.per_fault) {
        let unavailable = window
            .unavailable_secs()
            .map_or("not healed".to_string(), |secs| format!("{secs:.1} s"));
        let at = (window.injected - started_at).num_milliseconds() as f64 / 1000.0;
        println!(
            "  {:<52} {unavailable:>11}  {:>9.1} s  {:>5}",
            format!("+{at:6.1} s  {}", window.label),
            cost.window_secs,
            cost.lost
        );
    }
    if !losses.unexplained.is_empty() {
        let ids: Vec<String> = losses.unexplained.iter().map(i64::to_string).collect();
        println!(
            "  {:<52} {:>11}  {:>11}  {:>5}  orders {}",
            "before any fault",
            "",
            "",
            losses.unexplained.len(),
            first(&ids)
        );
    }
}

/// The first few distinct items of a list, each with how often it occurs, for a summary row.
fn first(items: &[String]) -> String {
    let mut counted: Vec<(&str, usize)> = Vec::new();
    for item in items {
        match counted.iter_mut().find(|(seen, _)| seen == item) {
            Some((_, count)) => *count += 1,
            None => counted.push((item, 1)),
        }
    }
    let mut shown: Vec<String> = counted
        .iter()
        .take(3)
        .map(|(item, count)| match count {
            1 => item.to_string(),
            _ => format!("{item} (x{count})"),
        })
        .collect();
    if counted.len() > 3 {
        shown.push("...".into());
    }
    shown.join("; ")
}
