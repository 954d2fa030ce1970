//! The deadline service's decisions, without I/O: what a saga's events do to its deadline.
//!
//! `OrderCreated` schedules the deadline it carries, once. `OrderPlaced` and `OrderRejected`
//! cancel it; a cancel for a deadline that has fired or was cancelled is a no-op, never an error
//! (saga-rules §4 rule 7). A cancel that arrives before the schedule (a replay, say) still leaves a
//! cancelled deadline behind, so the late `OrderCreated` cannot schedule a dead saga's deadline.

use chrono::{DateTime, Utc};
use common_events::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Fired,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::Fired, Status::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Fired => "FIRED",
            Status::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep a pending deadline at this time.
    Schedule {
        deadline: DateTime<Utc>,
    },
    /// Mark the deadline cancelled (with a row of its own if none was scheduled), unless the
    /// timer fires it first; the shell's write only cancels a pending deadline.
    Cancel,
    Ignore(&'static str),
}

/// Decides what `event`, of a saga whose deadline is `deadline`, does to the deadline this
/// service keeps in `status` (`None`: none yet).
pub fn decide(status: Option<Status>, event: &Event, deadline: DateTime<Utc>) -> Decision {
    match (event, status) {
        (Event::OrderCreated { .. }, None) => Decision::Schedule { deadline },
        (Event::OrderCreated { .. }, Some(_)) => Decision::Ignore("already scheduled"),
        (Event::OrderPlaced | Event::OrderRejected { .. }, None | Some(Status::Pending)) => {
            Decision::Cancel
        }
        (Event::OrderPlaced | Event::OrderRejected { .. }, Some(_)) => {
            Decision::Ignore("already fired or cancelled")
        }
        _ => Decision::Ignore("not a deadline event"),
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn created() -> Event {
        Event::OrderCreated {
            holder_id: "jjy".into(),
            currency_id: None,
            amount: Decimal::from(500),
        }
    }

    fn ending() -> [Event; 2] {
        [
            Event::OrderPlaced,
            Event::OrderRejected {
                reason: "point limit".into(),
            },
        ]
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000).unwrap()
    }

    #[test]
    fn a_new_order_schedules_its_deadline_once() {
        assert_eq!(
            decide(None, &created(), at()),
            Decision::Schedule { deadline: at() }
        );
        for status in [Status::Pending, Status::Fired, Status::Cancelled] {
            assert_eq!(
                decide(Some(status), &created(), at()),
                Decision::Ignore("already scheduled")
            );
        }
    }

    #[test]
    fn an_ended_saga_cancels_its_pending_deadline() {
        for event in ending() {
            assert_eq!(
                decide(Some(Status::Pending), &event, at()),
                Decision::Cancel
            );
        }
    }

    #[test]
    fn a_cancel_before_the_schedule_still_cancels_so_the_schedule_is_ignored() {
        for event in ending() {
            assert_eq!(decide(None, &event, at()), Decision::Cancel);
        }
    }

    #[test]
    fn cancelling_a_fired_or_cancelled_deadline_is_a_no_op() {
        for status in [Status::Fired, Status::Cancelled] {
            for event in ending() {
                assert_eq!(
                    decide(Some(status), &event, at()),
                    Decision::Ignore("already fired or cancelled")
                );
            }
        }
    }

    #[test]
    fn other_events_are_not_the_deadlines_business() {
        assert_eq!(
            decide(None, &Event::DeadlineReached, at()),
            Decision::Ignore("not a deadline event")
        );
    }
}
