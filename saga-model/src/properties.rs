//! What must hold (saga-rules §4): safety in every reachable state, settlement wherever a run has
//! ended, and the outcomes that some run must reach.

use common_events::EventType;
use deadline_service::domain as deadline;
use exchange_service::domain as exchange;
use order_service::domain::{self as order, Status};
use point_service::domain as point;
use rust_decimal::Decimal;

use crate::{
    explorer::Property,
    model::{Scenario, State},
};

pub fn of(scenario: &Scenario) -> Vec<Property<Scenario>> {
    let mut properties = vec![
        Property::always("no balance is ever negative", no_balance_is_negative),
        Property::always(
            "each balance is its initial value less the points its sagas hold as USED",
            balances_add_up,
        ),
        Property::always("a terminal order status never changes", terminal_is_final),
        Property::always(
            "a saga has at most one event of each type, and not both OrderPlaced and OrderRejected",
            one_event_of_each_type,
        ),
        Property::always(
            "nothing is exchanged, taken or approved once the deadline has passed",
            nothing_forward_after_the_deadline,
        ),
        Property::always(
            "the point service's ledger and accounts agree",
            ledger_and_accounts_agree,
        ),
        Property::at_the_end("every order ends approved or rejected", every_order_ends),
        Property::at_the_end(
            "an approved order has its exchange and its points taken",
            approved_orders_are_complete,
        ),
        Property::at_the_end(
            "a rejected order has its compensation done, its exchange compensated and its points back",
            rejected_orders_are_compensated,
        ),
        Property::at_the_end("no deadline is left pending", no_deadline_is_pending),
    ];
    properties.extend(
        scenario
            .reachable
            .iter()
            .filter_map(|outcome| match outcome {
                Status::Approved => {
                    Some(Property::sometimes("an order is approved", some_approved))
                }
                Status::RejectedPointLimit => Some(Property::sometimes(
                    "an order is rejected for its points",
                    some_rejected_for_points,
                )),
                Status::RejectedDeadline => Some(Property::sometimes(
                    "an order is rejected by its deadline",
                    some_rejected_by_deadline,
                )),
                Status::Pending => None,
            }),
    );
    properties
}

fn no_balance_is_negative(_: &Scenario, state: &State) -> bool {
    state.accounts.values().all(|b| !b.is_sign_negative())
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

fn terminal_is_final(_: &Scenario, state: &State) -> bool {
    state.sagas.iter().all(|saga| {
        saga.first_terminal
            .is_none_or(|first| saga.order.status == first)
    })
}

fn one_event_of_each_type(_: &Scenario, state: &State) -> bool {
    state.sagas.iter().all(|saga| {
        let count = |t| saga.events().filter(|e| e.event_type() == t).count();
        EventType::ALL.into_iter().all(|t| count(t) <= 1)
            && count(EventType::OrderPlaced) + count(EventType::OrderRejected) <= 1
    })
}

fn nothing_forward_after_the_deadline(_: &Scenario, state: &State) -> bool {
    state
        .sagas
        .iter()
        .all(|saga| saga.late_forward_change.is_none())
}

fn ledger_and_accounts_agree(_: &Scenario, state: &State) -> bool {
    state.sagas.iter().all(|saga| saga.inconsistency.is_none())
}

fn every_order_ends(_: &Scenario, state: &State) -> bool {
    state
        .sagas
        .iter()
        .all(|saga| saga.order.status != Status::Pending)
}

fn approved_orders_are_complete(_: &Scenario, state: &State) -> bool {
    state.sagas.iter().all(|saga| {
        saga.order.status != Status::Approved
            || (saga.exchange.map(|e| e.status) == Some(exchange::Status::Exchanged)
                && saga.ledger.as_ref().map(|e| e.status) == Some(point::Status::Used))
    })
}

fn rejected_orders_are_compensated(_: &Scenario, state: &State) -> bool {
    state.sagas.iter().all(|saga| {
        let rejected = matches!(
            saga.order.status,
            Status::RejectedPointLimit | Status::RejectedDeadline
        );
        let points_back = saga
            .ledger
            .as_ref()
            .is_some_and(|e| e.status != point::Status::Used);
        !rejected
            || (saga.order.compensation == Some(order::Compensation::Done)
                && saga.exchange.map(|e| e.status) == Some(exchange::Status::Compensated)
                && points_back)
    })
}

fn no_deadline_is_pending(_: &Scenario, state: &State) -> bool {
    state.sagas.iter().all(|saga| {
        matches!(
            saga.deadline,
            Some(deadline::Status::Fired | deadline::Status::Cancelled)
        )
    })
}

fn some_approved(_: &Scenario, state: &State) -> bool {
    reached(state, Status::Approved)
}

fn some_rejected_for_points(_: &Scenario, state: &State) -> bool {
    reached(state, Status::RejectedPointLimit)
}

fn some_rejected_by_deadline(_: &Scenario, state: &State) -> bool {
    reached(state, Status::RejectedDeadline)
}

fn reached(state: &State, status: Status) -> bool {
    state.sagas.iter().any(|saga| saga.order.status == status)
}
