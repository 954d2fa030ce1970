//! What the faults of a chaos run cost: the sagas it lost, and which fault lost each.
//!
//! A saga is **lost** when it was rejected by its deadline although its holder had the points:
//! its amount is at most what the holder had left when it was created, the opening balance
//! less the orders created before it that were approved. Had nothing held it up, it would have
//! been approved then (the orders after it would have found less).
//!
//! Each lost saga is put down to the last fault injected before its deadline: sagas take tens
//! of milliseconds when nothing is wrong, so one that ran into its deadline was held up by
//! what happened while it was open. Its **loss window** runs from the creation of the first
//! saga it lost to that of the last; set beside how long the faulty part was unavailable, it
//! says whether recovery took longer than the fault itself.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use harness::api::Order;

/// The status of an order rejected by its deadline.
pub const REJECTED_BY_DEADLINE: &str = "REJECTED DUE TO DEADLINE";

/// A fault as it happened.
#[derive(Debug, Clone)]
pub struct FaultWindow {
    /// What was done, as the run printed it.
    pub label: String,
    pub injected: DateTime<Utc>,
    /// When what it stopped was back (its restart or resume had returned); `None` if that
    /// failed.
    pub healed: Option<DateTime<Utc>>,
}

impl FaultWindow {
    /// How long the faulty part was unavailable, in seconds.
    pub fn unavailable_secs(&self) -> Option<f64> {
        self.healed.map(|healed| secs(healed - self.injected))
    }
}

/// What one fault cost.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultCost {
    /// How many sagas it lost.
    pub lost: usize,
    /// From the creation of the first saga it lost to that of the last, in seconds.
    pub window_secs: f64,
}

/// The lost sagas of a run, put down to its faults.
#[derive(Debug, Clone, PartialEq)]
pub struct Losses {
    /// One entry per fault, in the order of the faults given.
    pub per_fault: Vec<FaultCost>,
    /// Lost sagas whose deadline came before any fault: nothing the run did explains them.
    pub unexplained: Vec<i64>,
}

impl Losses {
    pub fn total(&self) -> usize {
        self.per_fault.iter().map(|cost| cost.lost).sum::<usize>() + self.unexplained.len()
    }

    pub fn longest_window_secs(&self) -> f64 {
        self.per_fault
            .iter()
            .map(|cost| cost.window_secs)
            .fold(0.0, f64::max)
    }
}

/// The orders among `orders` that were lost, every holder's account having opened with
/// `initial` points.
pub fn lost<'a>(orders: impl IntoIterator<Item = &'a Order>, initial: Decimal) -> Vec<&'a Order> {
    let mut by_creation: Vec<&Order> = orders.into_iter().collect();
    by_creation.sort_by_key(|order| (order.created_at, order.id));
    let mut left: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut lost = Vec::new();
    for order in by_creation {
        let left = left.entry(&order.holder_id).or_insert(initial);
        match order.status.as_str() {
            "APPROVED" => *left -= order.amount,
            REJECTED_BY_DEADLINE if order.amount <= *left => lost.push(order),
            _ => {}
        }
    }
    lost
}

/// Puts each lost order down to the last of `faults` (in the order they were injected)
/// injected before its deadline.
pub fn attribute(lost: &[&Order], faults: &[FaultWindow]) -> Losses {
    let mut created: Vec<Vec<DateTime<Utc>>> = vec![Vec::new(); faults.len()];
    let mut unexplained = Vec::new();
    for order in lost {
        match faults
            .iter()
            .rposition(|fault| fault.injected < order.deadline)
        {
            Some(fault) => created[fault].push(order.created_at),
            None => unexplained.push(order.id),
        }
    }
    let per_fault = created
        .into_iter()
        .map(|times| FaultCost {
            lost: times.len(),
            window_secs: match (times.iter().min(), times.iter().max()) {
                (Some(first), Some(last)) => secs(*last - *first),
                _ => 0.0,
            },
        })
        .collect();
    Losses {
        per_fault,
        unexplained,
    }
}

fn secs(duration: chrono::TimeDelta) -> f64 {
    duration.num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn at(secs: f64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::milliseconds((secs * 1000.0) as i64)
    }

    fn order(id: i64, holder: &str, amount: i64, status: &str, created: f64) -> Order {
        Order {
            id,
            holder_id: holder.into(),
            amount: Decimal::from(amount),
            status: status.into(),
            compensation: Some("DONE".into()),
            created_at: at(created),
            deadline: at(created + 5.0),
        }
    }

    #[test]
    fn a_saga_is_lost_only_if_its_deadline_rejected_it_while_its_holder_had_the_points() {
        // Holders open with 1000; what is left is what approvals created earlier leave.
        let orders = [
            order(1, "a", 700, "APPROVED", 0.0),
            order(2, "a", 300, REJECTED_BY_DEADLINE, 1.0), // 300 left: lost
            order(3, "a", 301, REJECTED_BY_DEADLINE, 2.0), // more than is left
            order(4, "a", 100, "REJECTED DUE TO POINT LIMIT", 3.0),
            order(5, "a", 200, "APPROVED", 4.0),
            order(6, "a", 100, REJECTED_BY_DEADLINE, 5.0), // 100 left: lost
            order(7, "b", 1000, REJECTED_BY_DEADLINE, 6.0), // another holder's 1000
        ];
        let lost: Vec<i64> = lost(&orders, Decimal::from(1000))
            .iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(lost, [2, 6, 7]);
    }

    #[test]
    fn each_loss_goes_to_the_last_fault_injected_before_its_deadline() {
        let fault = |label: &str, injected: f64, healed: f64| FaultWindow {
            label: label.into(),
            injected: at(injected),
            healed: Some(at(healed)),
        };
        let faults = [fault("first", 10.0, 12.0), fault("second", 20.0, 25.0)];
        let orders = [
            order(1, "a", 1, REJECTED_BY_DEADLINE, 2.0), // deadline 7: before any fault
            order(2, "a", 1, REJECTED_BY_DEADLINE, 9.0), // deadline 14: the first
            order(3, "a", 1, REJECTED_BY_DEADLINE, 11.5), // deadline 16.5: the first
            order(4, "a", 1, REJECTED_BY_DEADLINE, 16.0), // deadline 21: the second
        ];
        let lost: Vec<&Order> = orders.iter().collect();
        let losses = attribute(&lost, &faults);
        assert_eq!(
            losses.per_fault,
            [
                FaultCost {
                    lost: 2,
                    window_secs: 2.5
                },
                FaultCost {
                    lost: 1,
                    window_secs: 0.0
                }
            ]
        );
        assert_eq!(losses.unexplained, [1]);
        assert_eq!(losses.total(), 4);
        assert_eq!(losses.longest_window_secs(), 2.5);
        assert_eq!(faults[1].unavailable_secs(), Some(5.0));
    }
}
