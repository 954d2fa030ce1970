//! The invariants of saga-rules §4, judged from what a user can see once the run is over: every
//! order of the run with its exchange and point record (the public API), every balance, and
//! the events the run put on the topic.
//!
//! A saga that has not ended (still pending, or rejected with its compensation unfinished) is
//! unsettled: that is reported on its own, and such a saga, with its holder's balance, is not
//! judged further, since it may still change. The event checks hold at every moment, so they
//! cover every saga. The same event (one `eventId`) may be on the topic twice, when a relay
//! crashed between publishing it and marking it published: at-least-once delivery allows it,
//! and the inboxes apply it once. Two distinct events of one kind for one saga are a violation.
//!
//! The chaos run and the end-to-end tests both judge with [`check`]. The model checker
//! (`saga-model/src/properties.rs`) states the same rules on a different kind of state: every
//! reachable state of the handlers' decisions, typed with the services' domain enums and with
//! facts no API shows (the first terminal status, a forward change after the deadline), not the
//! strings and event ids a finished run leaves behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;

use crate::{
    api::{Order, Record},
    topic::Event,
};

/// One saga as the API shows it.
#[derive(Debug, Clone)]
pub struct Saga {
    pub order: Order,
    pub exchange: Option<Record>,
    /// The point service's record of the saga.
    pub transaction: Option<Record>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    CreatedOrderListed,
    ApprovedExchange,
    ApprovedPoints,
    RejectedExchange,
    RejectedPoints,
    Balance,
    NegativeBalance,
    DistinctEventsOfOneKind,
    PlacedAndRejected,
    OutcomeNotOnTopic,
}

impl Invariant {
    pub fn description(self) -> &'static str {
        match self {
            Invariant::CreatedOrderListed => "an order answered with 201 is kept",
            Invariant::ApprovedExchange => "an approved order has one active exchange",
            Invariant::ApprovedPoints => "an approved order has its points taken exactly once",
            Invariant::RejectedExchange => "a rejected order has no active exchange",
            Invariant::RejectedPoints => "a rejected order has its points back",
            Invariant::Balance => "each balance is its initial value minus its approved orders",
            Invariant::NegativeBalance => "no balance is negative",
            Invariant::DistinctEventsOfOneKind => "no saga has two distinct events of one kind",
            Invariant::PlacedAndRejected => "no saga has both OrderPlaced and OrderRejected",
            Invariant::OutcomeNotOnTopic => {
                "an ended saga's OrderPlaced or OrderRejected is on the topic"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    /// The order id, or the holder for balances.
    pub subject: String,
    pub detail: String,
}

/// How an order ended, if it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Approved,
    Rejected,
    Unsettled,
}

pub fn outcome(order: &Order) -> Outcome {
    match order.status.as_str() {
        "APPROVED" => Outcome::Approved,
        status
            if status.starts_with("REJECTED") && order.compensation.as_deref() == Some("DONE") =>
        {
            Outcome::Rejected
        }
        _ => Outcome::Unsettled,
    }
}

/// What a run saw once it was over.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Every order of the run's holders, found by listing them.
    pub sagas: Vec<Saga>,
    /// The ids of the orders whose POST answered 201.
    pub created: Vec<i64>,
    /// Each holder's balance now.
    pub balances: BTreeMap<String, Decimal>,
    /// Each holder's balance when its account was opened.
    pub initial: Decimal,
    /// The events published during the run; events of other sagas are left out.
    pub events: Vec<Event>,
}

/// Every violation in what was seen.
pub fn check(observed: &Observed) -> Vec<Violation> {
    let Observed {
        sagas,
        created,
        balances,
        initial,
        events,
    } = observed;
    let mut violations = Vec::new();
    let mut found = |invariant, subject: String, detail: String| {
        violations.push(Violation {
            invariant,
            subject,
            detail,
        })
    };

    let mut ids_by_kind: BTreeMap<(i64, &str), BTreeSet<&str>> = BTreeMap::new();
    for event in events {
        ids_by_kind
            .entry((event.order_id, event.event_type.as_str()))
            .or_default()
            .insert(&event.event_id);
    }
    let published = |order_id: i64, kind: &str| ids_by_kind.contains_key(&(order_id, kind));

    let mut taken: HashMap<&str, Decimal> = HashMap::new();
    let mut unsettled_holders = BTreeSet::new();
    for saga in sagas {
        let order = &saga.order;
        let id = order.id.to_string();
        let exchange = saga.exchange.as_ref().map(|e| e.status.as_str());
        let points = saga.transaction.as_ref();
        match outcome(order) {
            Outcome::Approved => {
                *taken.entry(&order.holder_id).or_default() += order.amount;
                if exchange != Some("EXCHANGED") {
                    found(
                        Invariant::ApprovedExchange,
                        id.clone(),
                        format!("exchange {exchange:?}"),
                    );
                }
                if !points.is_some_and(|p| p.status == "USED" && p.point == order.amount) {
                    let detail = format!("amount {}, point record {points:?}", order.amount);
                    found(Invariant::ApprovedPoints, id.clone(), detail);
                }
                if !published(order.id, "OrderPlaced") {
                    found(
                        Invariant::OutcomeNotOnTopic,
                        id,
                        "approved, no OrderPlaced".into(),
                    );
                }
            }
            Outcome::Rejected => {
                if exchange.is_some_and(|status| status != "COMPENSATED") {
                    found(
                        Invariant::RejectedExchange,
                        id.clone(),
                        format!("exchange {exchange:?}"),
                    );
                }
                if points.is_some_and(|p| p.status == "USED") {
                    found(
                        Invariant::RejectedPoints,
                        id.clone(),
                        format!("point record {points:?}"),
                    );
                }
                if !published(order.id, "OrderRejected") {
                    found(
                        Invariant::OutcomeNotOnTopic,
                        id,
                        "rejected, no OrderRejected".into(),
                    );
                }
            }
            Outcome::Unsettled => {
                unsettled_holders.insert(order.holder_id.as_str());
            }
        }
    }

    for (holder, &balance) in balances {
        if balance < Decimal::ZERO {
            found(
                Invariant::NegativeBalance,
                holder.clone(),
                format!("balance {balance}"),
            );
        }
        let expected = *initial - taken.get(holder.as_str()).copied().unwrap_or_default();
        if !unsettled_holders.contains(holder.as_str()) && balance != expected {
            let detail = format!("balance {balance}, expected {expected}");
            found(Invariant::Balance, holder.clone(), detail);
        }
    }

    let ours: BTreeSet<i64> = sagas.iter().map(|saga| saga.order.id).collect();
    for id in created.iter().filter(|id| !ours.contains(id)) {
        found(
            Invariant::CreatedOrderListed,
            id.to_string(),
            "not listed".into(),
        );
    }
    for ((order_id, kind), ids) in &ids_by_kind {
        if ours.contains(order_id) && ids.len() > 1 {
            let detail = format!("{} {kind} events", ids.len());
            found(
                Invariant::DistinctEventsOfOneKind,
                order_id.to_string(),
                detail,
            );
        }
    }
    for &order_id in &ours {
        if published(order_id, "OrderPlaced") && published(order_id, "OrderRejected") {
            let detail = "OrderPlaced and OrderRejected".into();
            found(Invariant::PlacedAndRejected, order_id.to_string(), detail);
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    const INITIAL: i64 = 1000;

    fn saga(
        id: i64,
        amount: i64,
        status: &str,
        exchange: Option<&str>,
        points: Option<&str>,
    ) -> Saga {
        let rejected = status.starts_with("REJECTED");
        Saga {
            order: Order {
                id,
                holder_id: "h".into(),
                amount: Decimal::from(amount),
                status: status.into(),
                compensation: rejected.then(|| "DONE".into()),
                created_at: chrono::DateTime::UNIX_EPOCH,
                deadline: chrono::DateTime::UNIX_EPOCH,
            },
            exchange: exchange.map(|status| Record {
                status: status.into(),
                point: Decimal::from(amount),
            }),
            transaction: points.map(|status| Record {
                status: status.into(),
                point: Decimal::from(amount),
            }),
        }
    }

    fn event(order_id: i64, event_type: &str, event_id: &str) -> Event {
        Event {
            event_type: event_type.into(),
            event_id: event_id.into(),
            timestamp: 0,
            order_id,
            published: None,
        }
    }

    /// An approved saga of 300, a point-limit one and a deadline one, with their outcomes on
    /// the topic; the holder has 700 left.
    fn healthy() -> Observed {
        let sagas = vec![
            saga(1, 300, "APPROVED", Some("EXCHANGED"), Some("USED")),
            saga(
                2,
                900,
                "REJECTED DUE TO POINT LIMIT",
                Some("COMPENSATED"),
                Some("REJECTED"),
            ),
            saga(3, 200, "REJECTED DUE TO DEADLINE", None, None),
        ];
        let balances = BTreeMap::from([("h".to_string(), Decimal::from(700))]);
        let events = vec![
            event(1, "OrderCreated", "a"),
            event(1, "OrderPlaced", "b"),
            event(2, "OrderRejected", "c"),
            event(3, "OrderRejected", "d"),
        ];
        Observed {
            sagas,
            created: vec![1, 2, 3],
            balances,
            initial: Decimal::from(INITIAL),
            events,
        }
    }

    fn invariants(observed: &Observed) -> Vec<Invariant> {
        check(observed).into_iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_healthy_run_has_no_violation() {
        assert_eq!(invariants(&healthy()), []);
    }

    #[test]
    fn an_order_answered_with_201_but_not_listed_is_a_violation() {
        let mut run = healthy();
        run.created.push(4);
        assert_eq!(invariants(&run), [Invariant::CreatedOrderListed]);
    }

    #[test]
    fn the_same_event_twice_on_the_topic_is_not_a_violation() {
        let mut run = healthy();
        run.events.push(event(1, "OrderPlaced", "b"));
        assert_eq!(invariants(&run), []);
    }

    #[test]
    fn two_distinct_events_of_one_kind_for_one_saga_are_a_violation() {
        let mut run = healthy();
        run.events.push(event(2, "OrderRejected", "e"));
        assert_eq!(invariants(&run), [Invariant::DistinctEventsOfOneKind]);
    }

    #[test]
    fn events_of_other_sagas_are_ignored() {
        let mut run = healthy();
        run.events.push(event(99, "OrderPlaced", "x"));
        run.events.push(event(99, "OrderPlaced", "y"));
        run.events.push(event(99, "OrderRejected", "z"));
        assert_eq!(invariants(&run), []);
    }

    #[test]
    fn a_saga_both_placed_and_rejected_is_a_violation() {
        let mut run = healthy();
        run.events.push(event(1, "OrderRejected", "e"));
        assert_eq!(invariants(&run), [Invariant::PlacedAndRejected]);
    }

    #[test]
    fn an_approved_order_without_its_exchange_or_points_is_a_violation() {
        let mut run = healthy();
        run.sagas[0].exchange.as_mut().unwrap().status = "COMPENSATED".into();
        run.sagas[0].transaction = None;
        assert_eq!(
            invariants(&run),
            [Invariant::ApprovedExchange, Invariant::ApprovedPoints]
        );
    }

    #[test]
    fn an_approved_order_whose_points_differ_from_its_amount_is_a_violation() {
        let mut run = healthy();
        run.sagas[0].transaction.as_mut().unwrap().point = Decimal::from(600);
        assert_eq!(invariants(&run), [Invariant::ApprovedPoints]);
    }

    #[test]
    fn a_rejected_order_with_an_active_exchange_or_points_kept_is_a_violation() {
        let mut run = healthy();
        run.sagas[2].exchange = Some(Record {
            status: "EXCHANGED".into(),
            point: Decimal::from(200),
        });
        run.sagas[2].transaction = Some(Record {
            status: "USED".into(),
            point: Decimal::from(200),
        });
        run.balances.insert("h".into(), Decimal::from(500));
        assert_eq!(
            invariants(&run),
            [
                Invariant::RejectedExchange,
                Invariant::RejectedPoints,
                Invariant::Balance
            ]
        );
    }

    #[test]
    fn a_balance_that_is_not_initial_minus_approved_or_is_negative_is_a_violation() {
        let mut run = healthy();
        run.balances.insert("h".into(), Decimal::from(-5));
        assert_eq!(
            invariants(&run),
            [Invariant::NegativeBalance, Invariant::Balance]
        );
    }

    #[test]
    fn an_ended_saga_whose_outcome_is_not_on_the_topic_is_a_violation() {
        let mut run = healthy();
        run.events.retain(|e| e.event_type != "OrderPlaced");
        assert_eq!(invariants(&run), [Invariant::OutcomeNotOnTopic]);
    }

    #[test]
    fn an_unsettled_saga_and_its_holders_balance_are_not_judged() {
        let mut run = healthy();
        run.sagas
            .push(saga(4, 100, "PENDING", Some("EXCHANGED"), Some("USED")));
        run.sagas[2].order.compensation = Some("PENDING".into());
        run.balances.insert("h".into(), Decimal::from(600));
        assert_eq!(outcome(&run.sagas[2].order), Outcome::Unsettled);
        assert_eq!(outcome(&run.sagas[3].order), Outcome::Unsettled);
        assert_eq!(invariants(&run), []);
    }
}
