//! What must hold (SPEC §4): safety in every reachable state, settlement wherever a run has
//! ended, and the outcomes that some run must reach.

use common_events::EventType;
use exchange_service::domain as exchange;
use order_service::domain as order;
use point_service::domain as point;
use rust_decimal::Decimal;

use crate::{
    explorer::Property,
    model::{Saga, Scenario, State},
};

pub fn of(scenario: &Scenario) -> Vec<Property<Scenario>> {
    let mut properties = vec![
        Property::always("no balance is ever negative", |_, state: &State| {
            state.accounts.values().all(|b| !b.is_sign_negative())
        }),
        Property::always(
            "each balance is its initial value less the points its sagas hold as USED",
            balances_add_up,
        ),
        Property::always(
            "a terminal order status never changes",
            |_, state: &State| {
                state.sagas.iter().all(|saga| {
                    saga.first_terminal
                        .is_none_or(|first| saga.order.status == first)
                })
            },
        ),
        Property::always(
            "a saga has at most one event of each type, and never both OrderPlaced and OrderRejected",
            |_, state: &State| state.sagas.iter().all(events_are_consistent),
        ),
        Property::always(
            "nothing is exchanged, taken or approved once the deadline has passed",
            |_, state: &State| {
                state
                    .sagas
                    .iter()
                    .all(|saga| saga.late_forward_change.is_none())
            },
        ),
        Property::always(
            "the point service's ledger and accounts agree",
            |_, state: &State| state.sagas.iter().all(|saga| saga.inconsistency.is_none()),
        ),
        Property::at_the_end(
            "every order ends approved or rejected",
            |_, state: &State| {
                state
                    .sagas
                    .iter()
                    .all(|saga| saga.order.status != order::Status::Pending)
            },
        ),
        Property::at_the_end(
            "an approved order has its exchange and its points taken",
            |_, state: &State| state.sagas.iter().all(approved_is_complete),
        ),
        Property::at_the_end(
            "a rejected order has its compensation done, its exchange compensated and its points back",
            |_, state: &State| state.sagas.iter().all(rejected_is_compensated),
        ),
        Property::at_the_end("no deadline is left pending", |_, state: &State| {
            state.sagas.iter().all(|saga| {
                saga.deadline.is_some()
                    && saga.deadline != Some(deadline_service::domain::Status::Pending)
            })
        }),
    ];
    for outcome in &scenario.reachable {
        properties.push(match outcome {
            order::Status::Approved => {
                Property::sometimes("an order is approved", |_, state: &State| {
                    ended(state, order::Status::Approved)
                })
            }
            order::Status::RejectedPointLimit => {
                Property::sometimes("an order is rejected for its points", |_, state: &State| {
                    ended(state, order::Status::RejectedPointLimit)
                })
            }
            order::Status::RejectedDeadline => Property::sometimes(
                "an order is rejected by its deadline",
                |_, state: &State| ended(state, order::Status::RejectedDeadline),
            ),
            order::Status::Pending => continue,
        });
    }
    properties
}

fn ended(state: &State, status: order::Status) -> bool {
    state.sagas.iter().any(|saga| saga.order.status == status)
}

fn balances_add_up(scenario: &Scenario, state: &State) -> bool {
    state.accounts.iter().all(|(holder, balance)| {
        let used: Decimal = state
            .sagas
            .iter()
            .filter_map(|saga| saga.ledger.as_ref())
            .filter(|entry| {
                entry.status == point::Status::Used && entry.user_id.as_deref() == Some(holder)
            })
            .map(|entry| entry.point)
            .sum();
        Some(*balance + used) == scenario.balance
    })
}

fn events_are_consistent(saga: &Saga) -> bool {
    let count = |t| saga.events().filter(|e| e.event_type() == t).count();
    EventType::ALL.into_iter().all(|t| count(t) <= 1)
        && count(EventType::OrderPlaced) + count(EventType::OrderRejected) <= 1
}

fn approved_is_complete(saga: &Saga) -> bool {
    saga.order.status != order::Status::Approved
        || (saga.exchange.map(|e| e.status) == Some(exchange::Status::Exchanged)
            && saga.ledger.as_ref().map(|e| e.status) == Some(point::Status::Used))
}

fn rejected_is_compensated(saga: &Saga) -> bool {
    let rejected = matches!(
        saga.order.status,
        order::Status::RejectedPointLimit | order::Status::RejectedDeadline
    );
    !rejected
        || (saga.order.compensation == Some(order::Compensation::Done)
            && saga.exchange.map(|e| e.status) == Some(exchange::Status::Compensated)
            && saga
                .ledger
                .as_ref()
                .is_some_and(|e| e.status != point::Status::Used))
}
