//! Explores every interleaving of each scenario and fails with the shortest sequence of steps
//! that breaks a property of saga-rules §4. Every scenario lets the deadline pass at any point.

use std::io::Write;

use order_service::domain::Status;
use rust_decimal::Decimal;
use saga_model::{
    explorer::{Verdict, explore},
    model::{Faults, Scenario},
};

/// A consumer crash and a relay crash: events delivered and published again, with their ids.
const REDELIVERED: Faults = Faults {
    crashes: 1,
    relay_crashes: 1,
    copies: 0,
};

/// An event published again under a new id, which only the decisions can recognise.
const COPIED: Faults = Faults {
    crashes: 0,
    relay_crashes: 0,
    copies: 1,
};

fn check(name: &str, scenario: Scenario) {
    let report = explore(&scenario);
    let summary = format!(
        "saga-model {name}: {} states ({} unique, {} ended), depth {}, in {:.2?}\n",
        report.states, report.unique_states, report.end_states, report.depth, report.elapsed
    );
    // Straight to stderr, past the test harness's capture, so every run shows the counts.
    let _ = std::io::stderr().write_all(summary.as_bytes());
    match report.verdict {
        Verdict::Holds => {}
        Verdict::Broken { property, steps } => {
            let steps: Vec<String> = steps
                .iter()
                .enumerate()
                .map(|(i, step)| format!("{:>3}. {step}", i + 1))
                .collect();
            panic!(
                "{name}: \"{property}\" is broken after {} steps:\n{}",
                steps.len(),
                steps.join("\n")
            );
        }
        Verdict::Unreached(properties) => {
            panic!("{name}: no run reaches {properties:?}, so the check proves nothing")
        }
    }
}

/// One saga of 500 points, by a holder with `balance` (`None`: no account), explored once with
/// each kind of fault: the two together would take minutes (see the crate docs' bounds).
fn one_saga_settles(name: &str, balance: Option<i64>) {
    let can_pay = balance.is_some_and(|b| b >= 500);
    for (kind, faults) in [("redelivered", REDELIVERED), ("copied", COPIED)] {
        let scenario = Scenario {
            holder: "jjy",
            balance: balance.map(Decimal::from),
            amounts: vec![Decimal::from(500)],
            faults,
            reachable: vec![
                if can_pay {
                    Status::Approved
                } else {
                    Status::RejectedPointLimit
                },
                Status::RejectedDeadline,
            ],
        };
        check(&format!("{name}, {kind}"), scenario);
    }
}

#[test]
fn a_saga_with_enough_points_settles_whatever_comes_again() {
    one_saga_settles("enough points", Some(500));
}

#[test]
fn a_saga_with_too_few_points_settles_whatever_comes_again() {
    one_saga_settles("too few points", Some(300));
}

#[test]
fn a_holder_without_an_account_settles_whatever_comes_again() {
    one_saga_settles("no account", None);
}

/// Two sagas share only the holder's balance; their faults are explored one saga at a time
/// above, since one crash more takes this scenario from 100 thousand states to 1.5 million.
#[test]
fn two_sagas_of_a_holder_whose_points_cover_one_settle_in_every_interleaving() {
    check(
        "two sagas, points for one",
        Scenario {
            holder: "jjy",
            balance: Some(Decimal::from(500)),
            amounts: vec![Decimal::from(300), Decimal::from(400)],
            faults: Faults {
                crashes: 0,
                relay_crashes: 0,
                copies: 0,
            },
            reachable: vec![
                Status::Approved,
                Status::RejectedPointLimit,
                Status::RejectedDeadline,
            ],
        },
    );
}
