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
/// How long a pause (SIGSTOP, then SIGCONT) or a cut in the network lasts, in milliseconds,
/// inclusive: as a long GC pause, a stalled VM or a failed link.
const PAUSE_MS: (u64, u64) = (2000, 12000);
/// How long an instance runs with its clock off, before it is restarted with the right one.
const SKEW_MS: (u64, u64) = (10_000, 30_000);
/// How far off a skewed clock is, ahead or behind: a host whose time sync has drifted.
pub const SKEW: i64 = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL of a service instance, restarted after its downtime.
    Kill,
    /// SIGTERM of a service instance: it stops gracefully.
    Term,
    /// SIGSTOP of a service instance, SIGCONT after its downtime.
    Pause,
    /// SIGKILL of a service instance that stays down until the load is over: the other
    /// instances must take its work over.
    KillForGood,
    /// SIGKILL of the Kafka broker.
    Broker,
    /// SIGSTOP of the Kafka broker, SIGCONT after its downtime.
    BrokerPause,
    /// PostgreSQL stopped with `-m immediate`.
    Postgres,
    /// A service instance restarted with its clock [`SKEW`] ahead or behind, and restarted
    /// with the right one after its downtime.
    Skew,
    /// A broker cut off from the other two, both ways (on three brokers, on hosts of their
    /// own); clients still reach it.
    CutBroker,
    /// A service instance cut off from every broker, both ways (on hosts of their own).
    CutKafka,
    /// A service instance cut off from PostgreSQL, both ways (on hosts of their own).
    CutPostgres,
    /// The packets of a service instance to the brokers dropped, or theirs to it, not both
    /// (on hosts of their own).
    CutOneWay,
}

impl FaultKind {
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Kill,
        FaultKind::Term,
        FaultKind::Pause,
        FaultKind::KillForGood,
        FaultKind::Broker,
        FaultKind::BrokerPause,
        FaultKind::Postgres,
        FaultKind::Skew,
        FaultKind::CutBroker,
        FaultKind::CutKafka,
        FaultKind::CutPostgres,
        FaultKind::CutOneWay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Term => "term",
            FaultKind::Pause => "pause",
            FaultKind::KillForGood => "kill-for-good",
            FaultKind::Broker => "broker",
            FaultKind::BrokerPause => "broker-pause",
            FaultKind::Postgres => "postgres",
            FaultKind::Skew => "skew",
            FaultKind::CutBroker => "cut-broker",
            FaultKind::CutKafka => "cut-kafka",
            FaultKind::CutPostgres => "cut-postgres",
            FaultKind::CutOneWay => "cut-one-way",
        }
    }

    /// Whether a stack of `brokers` can have it: cuts need hosts of their own, and a broker
    /// cut off from the others needs others.
    pub fn fits(self, brokers: u32, hosts: bool) -> bool {
        match self {
            FaultKind::CutBroker => hosts && brokers > 1,
            FaultKind::CutKafka | FaultKind::CutPostgres | FaultKind::CutOneWay => hosts,
            _ => true,
        }
    }

    /// Whether it hits one of several brokers, when there are several.
    fn hits_a_broker(self) -> bool {
        matches!(
            self,
            FaultKind::Broker | FaultKind::BrokerPause | FaultKind::CutBroker
        )
    }

    /// Whether it hits one service instance (rather than the broker or the database).
    pub fn hits_an_instance(self) -> bool {
        matches!(
            self,
            FaultKind::Kill
                | FaultKind::Term
                | FaultKind::Pause
                | FaultKind::KillForGood
                | FaultKind::Skew
                | FaultKind::CutKafka
                | FaultKind::CutPostgres
                | FaultKind::CutOneWay
        )
    }

    fn downtime_ms(self) -> (u64, u64) {
        match self {
            FaultKind::Pause
            | FaultKind::BrokerPause
            | FaultKind::CutBroker
            | FaultKind::CutKafka
            | FaultKind::CutPostgres
            | FaultKind::CutOneWay => PAUSE_MS,
            FaultKind::Skew => SKEW_MS,
            _ => DOWNTIME_MS,
        }
    }
}

impl FromStr for FaultKind {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match FaultKind::ALL.into_iter().find(|kind| kind.name() == text) {
            Some(kind) => Ok(kind),
            None => {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
                bail!("unknown fault kind {text:?} ({})", names.join(", "))
            }
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

/// Which broker of a cluster of several a broker fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// Broker N (from 1), `kafka-N`.
    Number(u32),
    /// The active controller of the quorum, found when the fault comes.
    Controller,
    /// The broker that leads the most partitions of the saga topic, found when the fault
    /// comes.
    Leader,
}

impl Broker {
    /// As `--target-broker` takes it.
    pub fn arg(self) -> String {
        match self {
            Broker::Controller => "controller".into(),
            Broker::Leader => "leader".into(),
            Broker::Number(number) => number.to_string(),
        }
    }
}

impl FromStr for Broker {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "controller" => Ok(Broker::Controller),
            "leader" => Ok(Broker::Leader),
            number => match number.parse() {
                Ok(number @ 1..=3) => Ok(Broker::Number(number)),
                _ => bail!("not a broker: {text:?} (controller, leader, or 1 to 3)"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// The instance a fault of a service instance hits; none for the broker and PostgreSQL.
    pub target: Option<Instance>,
    /// The broker a broker fault hits on a cluster of several; none on a single broker.
    pub broker: Option<Broker>,
    /// How far off a skew fault sets the instance's clock, in milliseconds.
    pub skew_ms: Option<i64>,
    /// For a one-way cut: whether the instance's packets to the brokers are dropped (rather
    /// than theirs to it).
    pub outbound: Option<bool>,
    /// When to inject it, from the start of the load.
    pub at: Duration,
    /// How long to leave it before restarting or resuming what it stopped; for a kill for
    /// good, until the load is over.
    pub downtime: Duration,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.target) {
            (FaultKind::Kill, Some(target)) => write!(f, "SIGKILL {target}"),
            (FaultKind::Term, Some(target)) => write!(f, "SIGTERM {target}"),
            (FaultKind::Pause, Some(target)) => write!(f, "SIGSTOP {target}"),
            (FaultKind::KillForGood, Some(target)) => write!(f, "SIGKILL {target} for good"),
            (FaultKind::Skew, Some(target)) => {
                let skew = self.skew_ms.unwrap_or_default() as f64 / 1000.0;
                write!(f, "clock of {target} {skew:+.1} s off")
            }
            (FaultKind::Broker, _) => write!(f, "SIGKILL {}", broker(self.broker)),
            (FaultKind::BrokerPause, _) => write!(f, "SIGSTOP {}", broker(self.broker)),
            (FaultKind::Postgres, _) => write!(f, "PostgreSQL stopped with -m immediate"),
            (FaultKind::CutBroker, _) => write!(f, "{} cut off", broker(self.broker)),
            (FaultKind::CutKafka, Some(target)) => write!(f, "{target} cut off from Kafka"),
            (FaultKind::CutPostgres, Some(target)) => {
                write!(f, "{target} cut off from PostgreSQL")
            }
            (FaultKind::CutOneWay, Some(target)) => match self.outbound {
                Some(true) => write!(f, "{target} -> Kafka dropped"),
                _ => write!(f, "Kafka -> {target} dropped"),
            },
            (kind, None) => write!(f, "{} without a target", kind.name()),
        }
    }
}

/// A broker as a fault's description names it.
fn broker(broker: Option<Broker>) -> String {
    match broker {
        None => "the Kafka broker".into(),
        Some(Broker::Number(number)) => format!("kafka-{number}"),
        Some(Broker::Controller) => "the active controller".into(),
        Some(Broker::Leader) => "the busiest leader".into(),
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
    /// Kafka brokers: 1, or 3 for a cluster whose broker faults take turns at the active
    /// controller, the busiest leader and a broker picked at random.
    pub brokers: u32,
    /// How long the load lasts: faults are spread over it.
    pub window: Duration,
    /// About how often a fault starts.
    pub fault_interval: Duration,
    /// How long every fault lasts, instead of a random time for its kind.
    pub downtime: Option<Duration>,
    /// The broker every broker fault hits, instead of taking turns.
    pub broker: Option<Broker>,
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
    // A service with an instance killed for good is left alone afterwards, and so one kill for
    // good at most per service: its other instances must carry it, and a fault of those too
    // would be an outage of the service, not a failover.
    let mut services: Vec<&'static str> = SERVICES.to_vec();
    let mut faults = Vec::with_capacity(count);
    let mut broker_faults = 0;
    for (i, kind) in kinds.into_iter().take(count).enumerate() {
        let kind = match kind {
            FaultKind::KillForGood if services.len() < 2 || settings.instances < 2 => {
                FaultKind::Kill
            }
            kind => kind,
        };
        let target = kind.hits_an_instance().then(|| Instance {
            service: services[rng.random_range(0..services.len())],
            number: rng.random_range(1..=settings.instances),
        });
        let broker = (settings.brokers > 1 && kind.hits_a_broker()).then(|| {
            broker_faults += 1;
            let turn = match broker_faults % 3 {
                1 => Broker::Controller,
                2 => Broker::Leader,
                _ => Broker::Number(rng.random_range(1..=settings.brokers)),
            };
            settings.broker.unwrap_or(turn)
        });
        let skew_ms =
            (kind == FaultKind::Skew).then(|| if rng.random_bool(0.5) { SKEW } else { -SKEW });
        let outbound = (kind == FaultKind::CutOneWay).then(|| rng.random_bool(0.5));
        let at = slot * (i as f64 + rng.random_range(0.25..0.75));
        let (shortest, longest) = kind.downtime_ms();
        let mut downtime = Duration::from_millis(rng.random_range(shortest..=longest));
        if let Some(fixed) = settings.downtime {
            downtime = fixed;
        }
        if let (FaultKind::KillForGood, Some(target)) = (kind, target) {
            services.retain(|service| *service != target.service);
            downtime = settings.window.saturating_sub(Duration::from_secs_f64(at));
        }
        faults.push(Fault {
            kind,
            target,
            broker,
            skew_ms,
            outbound,
            at: Duration::from_secs_f64(at),
            downtime,
        });
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kinds: &[FaultKind]) -> Settings {
        Settings {
            sagas: 1000,
            kinds: kinds.to_vec(),
            instances: 2,
            brokers: 1,
            window: Duration::from_secs(100),
            fault_interval: Duration::from_secs(4),
            downtime: None,
            broker: None,
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
        for fault in &plan.faults {
            let (shortest, longest) = match fault.kind {
                FaultKind::Pause
                | FaultKind::BrokerPause
                | FaultKind::CutBroker
                | FaultKind::CutKafka
                | FaultKind::CutPostgres
                | FaultKind::CutOneWay => (2, 12),
                FaultKind::Skew => (10, 30),
                FaultKind::KillForGood => (0, 100),
                _ => (0, 3),
            };
            let range = Duration::from_secs(shortest)..=Duration::from_secs(longest);
            assert!(range.contains(&fault.downtime), "{fault:?}");
            let skew = fault.skew_ms.map(i64::abs);
            assert_eq!(
                skew,
                (fault.kind == FaultKind::Skew).then_some(SKEW),
                "{fault:?}"
            );
        }
    }

    #[test]
    fn every_round_of_faults_has_each_selected_kind_once() {
        let kinds: Vec<FaultKind> = FaultKind::ALL
            .into_iter()
            .filter(|kind| *kind != FaultKind::KillForGood)
            .collect();
        let plan = Plan::from_seed(2, &settings(&kinds));
        for round in plan.faults.chunks_exact(kinds.len()) {
            let mut round: Vec<FaultKind> = round.iter().map(|f| f.kind).collect();
            round.sort();
            assert_eq!(round, kinds);
        }
    }

    #[test]
    fn an_instance_killed_for_good_stays_down_to_the_end_and_its_service_is_spared_after() {
        let plan = Plan::from_seed(9, &settings(&FaultKind::ALL));
        let for_good: Vec<&Fault> = plan
            .faults
            .iter()
            .filter(|f| f.kind == FaultKind::KillForGood)
            .collect();
        assert!(!for_good.is_empty());
        for fault in for_good {
            assert_eq!(fault.at + fault.downtime, Duration::from_secs(100));
            let service = fault.target.unwrap().service;
            let later = plan.faults.iter().filter(|f| f.at > fault.at);
            assert!(later.filter_map(|f| f.target).all(|t| t.service != service));
        }
        let one_instance = Settings {
            instances: 1,
            ..settings(&[FaultKind::KillForGood])
        };
        let plan = Plan::from_seed(9, &one_instance);
        assert!(plan.faults.iter().all(|f| f.kind == FaultKind::Kill));
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
    fn only_faults_of_instances_have_a_target_and_it_is_an_instance_that_runs() {
        let plan = Plan::from_seed(4, &settings(&FaultKind::ALL));
        for fault in &plan.faults {
            match (fault.kind.hits_an_instance(), fault.target) {
                (true, Some(target)) => {
                    assert!(SERVICES.contains(&target.service));
                    assert!((1..=2).contains(&target.number), "{target}");
                }
                (false, None) => {}
                other => panic!("unexpected target {other:?} for {fault:?}"),
            }
        }
    }

    #[test]
    fn on_three_brokers_broker_faults_take_turns_at_the_controller_the_leader_and_any_broker() {
        let one = Plan::from_seed(9, &settings(&FaultKind::ALL));
        assert!(one.faults.iter().all(|fault| fault.broker.is_none()));
        let three = Plan::from_seed(
            9,
            &Settings {
                brokers: 3,
                ..settings(&[FaultKind::Broker, FaultKind::BrokerPause])
            },
        );
        let brokers: Vec<Broker> = three.faults.iter().filter_map(|f| f.broker).collect();
        assert_eq!(brokers.len(), three.faults.len());
        assert_eq!(brokers[..2], [Broker::Controller, Broker::Leader]);
        assert!(matches!(brokers[2], Broker::Number(1..=3)), "{brokers:?}");
        assert_eq!(
            three.faults[0].to_string(),
            format!(
                "{} the active controller",
                match three.faults[0].kind {
                    FaultKind::Broker => "SIGKILL",
                    _ => "SIGSTOP",
                }
            )
        );
    }

    #[test]
    fn cuts_need_hosts_and_a_broker_cut_off_needs_other_brokers() {
        let cuts = [
            FaultKind::CutBroker,
            FaultKind::CutKafka,
            FaultKind::CutPostgres,
            FaultKind::CutOneWay,
        ];
        for kind in FaultKind::ALL {
            assert_eq!(kind.fits(1, false), !cuts.contains(&kind), "{kind:?}");
            assert!(kind.fits(3, true), "{kind:?}");
        }
        assert!(!FaultKind::CutBroker.fits(1, true));
        assert!(FaultKind::CutKafka.fits(1, true));
    }

    #[test]
    fn a_one_way_cut_drops_one_direction_between_an_instance_and_the_brokers() {
        let plan = Plan::from_seed(
            12,
            &Settings {
                brokers: 3,
                ..settings(&[FaultKind::CutOneWay, FaultKind::CutBroker])
            },
        );
        let one_way: Vec<&Fault> = (plan.faults.iter())
            .filter(|f| f.kind == FaultKind::CutOneWay)
            .collect();
        let directions: Vec<bool> = one_way.iter().filter_map(|f| f.outbound).collect();
        assert_eq!(directions.len(), one_way.len());
        assert!(directions.contains(&true) && directions.contains(&false));
        for fault in one_way {
            let target = fault.target.expect("an instance").to_string();
            let expected = match fault.outbound {
                Some(true) => format!("{target} -> Kafka dropped"),
                _ => format!("Kafka -> {target} dropped"),
            };
            assert_eq!(fault.to_string(), expected);
        }
        let cut_off = (plan.faults.iter()).find(|f| f.kind == FaultKind::CutBroker);
        assert!(cut_off.is_some_and(|f| f.broker.is_some() && f.target.is_none()));
    }

    #[test]
    fn a_fixed_downtime_and_target_broker_replace_the_random_ones() {
        let fixed = Settings {
            brokers: 3,
            downtime: Some(Duration::from_secs(10)),
            broker: Some(Broker::Leader),
            ..settings(&[FaultKind::Broker, FaultKind::Pause])
        };
        let plan = Plan::from_seed(13, &fixed);
        assert!(
            plan.faults
                .iter()
                .all(|f| f.downtime == Duration::from_secs(10))
        );
        let brokers = plan.faults.iter().filter_map(|f| f.broker);
        assert!(brokers.clone().count() > 1);
        assert!(brokers.into_iter().all(|b| b == Broker::Leader));
        assert_eq!("controller".parse::<Broker>().unwrap(), Broker::Controller);
        assert_eq!("2".parse::<Broker>().unwrap(), Broker::Number(2));
        assert!("4".parse::<Broker>().is_err());
        assert_eq!(Broker::Number(3).arg(), "3");
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
        assert_eq!(
            parse_kinds("broker-pause,kill-for-good,pause").unwrap(),
            [
                FaultKind::Pause,
                FaultKind::KillForGood,
                FaultKind::BrokerPause
            ]
        );
    }
}
