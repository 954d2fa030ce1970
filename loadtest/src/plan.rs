//! What a chaos run does, derived from its seed alone: the accounts, the orders, and the
//! faults with their times, targets and downtimes. The same seed and settings give the same
//! plan, so a run can be replayed (with the same build: the generator comes from `rand`, whose
//! version Cargo.lock pins).
//!
//! Accounts and amounts are chosen so that both outcomes are common: a holder's orders ask for
//! about two and a half times its balance, so roughly the first 40% of them are approved and
//! the rest are rejected for the point limit. Rejections for the deadline come from the faults.
//!
//! Fault kinds come in shuffled rounds of every selected kind, so a plan with at least as many
//! faults as kinds has each kind at least once, and never a long run of one kind.

use std::{fmt, str::FromStr, time::Duration};

use anyhow::bail;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use rust_decimal::Decimal;

/// The services whose instances faults hit. The gateway is left out: it holds no state, so
/// killing it only fails requests, which tests nothing of the saga.
pub const SERVICES: [&str; 4] = ["order", "exchange", "point", "deadline"];

/// Each holder's balance when its account is opened.
pub const BALANCE: i64 = 1000;
/// Orders per holder, on average (a holder's orders must fit one page of `GET /orders`).
const ORDERS_PER_HOLDER: usize = 10;
/// Order amounts, inclusive: about a quarter of a balance on average.
const AMOUNTS: (i64, i64) = (50, 450);
/// How long a fault lasts before its restart, in milliseconds, inclusive.
const DOWNTIME_MS: (u64, u64) = (500, 3000);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL of a service instance.
    Kill,
    /// SIGTERM of a service instance: it stops gracefully.
    Term,
    /// SIGKILL of the Kafka broker.
    Broker,
    /// PostgreSQL stopped with `-m immediate`.
    Postgres,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Kill,
        FaultKind::Term,
        FaultKind::Broker,
        FaultKind::Postgres,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Term => "term",
            FaultKind::Broker => "broker",
            FaultKind::Postgres => "postgres",
        }
    }
}

impl FromStr for FaultKind {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match FaultKind::ALL.into_iter().find(|kind| kind.name() == text) {
            Some(kind) => Ok(kind),
            None => bail!("unknown fault kind {text:?} (kill, term, broker or postgres)"),
        }
    }
}

/// Reads a comma-separated list of fault kinds (`kill,broker`), or `none`.
pub fn parse_kinds(text: &str) -> anyhow::Result<Vec<FaultKind>> {
    if text.trim() == "none" {
        return Ok(Vec::new());
    }
    let mut kinds = text
        .split(',')
        .map(|kind| kind.trim().parse())
        .collect::<anyhow::Result<Vec<FaultKind>>>()?;
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

/// Instance `number` (from 1) of a service, as the scripts name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    pub service: &'static str,
    pub number: u32,
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.service, self.number)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// The instance hit by a kill or term; none for the broker and PostgreSQL.
    pub target: Option<Instance>,
    /// When to inject it, from the start of the load.
    pub at: Duration,
    /// How long to leave it before restarting what it stopped.
    pub downtime: Duration,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.target) {
            (FaultKind::Kill, Some(target)) => write!(f, "SIGKILL {target}"),
            (FaultKind::Term, Some(target)) => write!(f, "SIGTERM {target}"),
            (FaultKind::Broker, _) => write!(f, "SIGKILL the Kafka broker"),
            (FaultKind::Postgres, _) => write!(f, "PostgreSQL stopped with -m immediate"),
            (kind, None) => write!(f, "{} without a target", kind.name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOrder {
    /// Index into [`Plan::holders`].
    pub holder: usize,
    pub amount: Decimal,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub sagas: usize,
    pub kinds: Vec<FaultKind>,
    /// Instances of each service in the stack.
    pub instances: u32,
    /// How long the load lasts: faults are spread over it.
    pub window: Duration,
    /// About how often a fault starts.
    pub fault_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// How many holders the orders go to; each starts with [`BALANCE`].
    pub holders: usize,
    pub orders: Vec<PlannedOrder>,
    /// In the order of their times.
    pub faults: Vec<Fault>,
}

impl Plan {
    pub fn from_seed(seed: u64, settings: &Settings) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let holders = settings.sagas.div_ceil(ORDERS_PER_HOLDER).max(1);
        let orders = (0..settings.sagas)
            .map(|_| PlannedOrder {
                holder: rng.random_range(0..holders),
                amount: Decimal::from(rng.random_range(AMOUNTS.0..=AMOUNTS.1)),
            })
            .collect();
        let faults = faults(&mut rng, settings);
        Plan {
            holders,
            orders,
            faults,
        }
    }
}

fn faults(rng: &mut StdRng, settings: &Settings) -> Vec<Fault> {
    if settings.kinds.is_empty() {
        return Vec::new();
    }
    let wanted = settings.window.as_secs_f64() / settings.fault_interval.as_secs_f64();
    let count = (wanted.round() as usize).max(settings.kinds.len());
    let mut kinds = Vec::with_capacity(count);
    while kinds.len() < count {
        let mut round = settings.kinds.clone();
        round.shuffle(rng);
        kinds.extend(round);
    }
    // One fault in each of `count` equal slots of the window, somewhere in its middle half,
    // so that two faults never start at the same moment.
    let slot = settings.window.as_secs_f64() / count as f64;
    kinds
        .into_iter()
        .take(count)
        .enumerate()
        .map(|(i, kind)| {
            let target = matches!(kind, FaultKind::Kill | FaultKind::Term).then(|| Instance {
                service: SERVICES[rng.random_range(0..SERVICES.len())],
                number: rng.random_range(1..=settings.instances),
            });
            let at = slot * (i as f64 + rng.random_range(0.25..0.75));
            Fault {
                kind,
                target,
                at: Duration::from_secs_f64(at),
                downtime: Duration::from_millis(rng.random_range(DOWNTIME_MS.0..=DOWNTIME_MS.1)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kinds: &[FaultKind]) -> Settings {
        Settings {
            sagas: 1000,
            kinds: kinds.to_vec(),
            instances: 2,
            window: Duration::from_secs(100),
            fault_interval: Duration::from_secs(4),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let all = settings(&FaultKind::ALL);
        let (a, b, c) = (
            Plan::from_seed(7, &all),
            Plan::from_seed(7, &all),
            Plan::from_seed(8, &all),
        );
        assert_eq!((&a.orders, &a.faults), (&b.orders, &b.faults));
        assert_ne!(a.orders, c.orders);
        assert_ne!(a.faults, c.faults);
    }

    #[test]
    fn faults_are_spread_over_the_window_in_order_of_time() {
        let plan = Plan::from_seed(1, &settings(&FaultKind::ALL));
        assert_eq!(plan.faults.len(), 25);
        assert!(plan.faults.windows(2).all(|pair| pair[0].at < pair[1].at));
        assert!(plan.faults.iter().all(|f| f.at < Duration::from_secs(100)));
        assert!(plan.faults.iter().all(|f| {
            (Duration::from_millis(500)..=Duration::from_secs(3)).contains(&f.downtime)
        }));
    }

    #[test]
    fn every_round_of_faults_has_each_selected_kind_once() {
        let plan = Plan::from_seed(2, &settings(&FaultKind::ALL));
        for round in plan.faults.chunks_exact(4) {
            let mut kinds: Vec<FaultKind> = round.iter().map(|f| f.kind).collect();
            kinds.sort();
            assert_eq!(kinds, FaultKind::ALL);
        }
    }

    #[test]
    fn a_short_run_still_has_one_fault_of_each_kind() {
        let short = Settings {
            window: Duration::from_secs(5),
            ..settings(&FaultKind::ALL)
        };
        let mut kinds: Vec<FaultKind> = Plan::from_seed(3, &short)
            .faults
            .iter()
            .map(|f| f.kind)
            .collect();
        kinds.sort();
        assert_eq!(kinds, FaultKind::ALL);
    }

    #[test]
    fn only_kills_and_terms_have_a_target_and_it_is_an_instance_that_runs() {
        let plan = Plan::from_seed(4, &settings(&FaultKind::ALL));
        for fault in &plan.faults {
            match (fault.kind, fault.target) {
                (FaultKind::Kill | FaultKind::Term, Some(target)) => {
                    assert!(SERVICES.contains(&target.service));
                    assert!((1..=2).contains(&target.number), "{target}");
                }
                (FaultKind::Broker | FaultKind::Postgres, None) => {}
                other => panic!("unexpected target {other:?}"),
            }
        }
    }

    #[test]
    fn only_the_selected_kinds_are_planned_and_none_when_none_is_selected() {
        let plan = Plan::from_seed(5, &settings(&[FaultKind::Postgres]));
        assert!(plan.faults.iter().all(|f| f.kind == FaultKind::Postgres));
        assert!(Plan::from_seed(5, &settings(&[])).faults.is_empty());
    }

    #[test]
    fn orders_ask_each_holder_for_more_than_its_balance_so_both_outcomes_are_common() {
        let plan = Plan::from_seed(6, &settings(&FaultKind::ALL));
        assert_eq!(plan.holders, 100);
        let mut asked = vec![Decimal::ZERO; plan.holders];
        for order in &plan.orders {
            assert!(order.amount >= Decimal::from(50) && order.amount <= Decimal::from(450));
            asked[order.holder] += order.amount;
        }
        let total: Decimal = asked.iter().sum();
        let balances = Decimal::from(BALANCE * plan.holders as i64);
        assert!(total > balances * Decimal::from(2), "{total} vs {balances}");
        assert!(total < balances * Decimal::from(3), "{total} vs {balances}");
    }

    #[test]
    fn fault_kinds_are_read_from_a_list_of_names_or_none() {
        assert_eq!(
            parse_kinds("postgres, kill,postgres").unwrap(),
            [FaultKind::Kill, FaultKind::Postgres]
        );
        assert_eq!(parse_kinds("none").unwrap(), []);
        assert!(parse_kinds("kill,reboot").is_err());
    }
}
