//! The deadline service's rules, without I/O: what a saga's events do to its deadline, and when
//! the timer fires it.
//!
//! `OrderCreated` schedules the deadline it carries, once. `OrderPlaced` and `OrderRejected`
//! cancel it; a cancel for a deadline that has fired or was cancelled is a no-op, never an error
//! (saga-rules §4 rule 7). A cancel that arrives before the schedule (a replay, say) still leaves a
//! cancelled deadline behind, so the late `OrderCreated` cannot schedule a dead saga's deadline.
//! A pending deadline fires once the clock reaches it, and only a pending one.
//!
//! The row may change between the handler's read and its write (another instance schedules the
//! same deadline, the timer fires it), so each write re-checks its guard in the same statement:
//! [`written`] and [`fire`] state those guards, and `tests/guards.rs` runs the statements
//! against PostgreSQL on every state to hold them to it.

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
    /// timer fires it first.
    Cancel,
    Ignore(&'static str),
}

/// Why an `OrderCreated` changes nothing: the saga's deadline exists.
pub const ALREADY_SCHEDULED: &str = "already scheduled";
/// Why the end of a saga changes nothing: its deadline has fired or was cancelled.
pub const ALREADY_ENDED: &str = "already fired or cancelled";

/// Decides what `event`, of a saga whose deadline is `deadline`, does to the deadline this
/// service keeps in `status` (`None`: none yet).
pub fn decide(status: Option<Status>, event: &Event, deadline: DateTime<Utc>) -> Decision {
    match (event, status) {
        (Event::OrderCreated { .. }, None) => Decision::Schedule { deadline },
        (Event::OrderCreated { .. }, Some(_)) => Decision::Ignore(ALREADY_SCHEDULED),
        (Event::OrderPlaced | Event::OrderRejected { .. }, None | Some(Status::Pending)) => {
            Decision::Cancel
        }
        (Event::OrderPlaced | Event::OrderRejected { .. }, Some(_)) => {
            Decision::Ignore(ALREADY_ENDED)
        }
        _ => Decision::Ignore("not a deadline event"),
    }
}

/// The deadline's status after the write of `decision`, when the write finds it in `row`: a
/// schedule inserts only where no deadline exists, a cancel changes only a pending (or missing)
/// deadline, never a fired one.
pub fn written(decision: Decision, row: Option<Status>) -> Option<Status> {
    match (decision, row) {
        (Decision::Schedule { .. }, None) => Some(Status::Pending),
        (Decision::Cancel, None | Some(Status::Pending)) => Some(Status::Cancelled),
        _ => row,
    }
}

/// Whether a deadline is history, which the retention may prune once old: it can no longer fire.
pub fn finished(status: Status) -> bool {
    status != Status::Pending
}

/// Why a decision whose write found the deadline changed since it was read is ignored.
pub fn refused(decision: Decision) -> &'static str {
    match decision {
        Decision::Schedule { .. } => ALREADY_SCHEDULED,
        Decision::Cancel => ALREADY_ENDED,
        Decision::Ignore(reason) => reason,
    }
}

/// The timer's rule: the deadline's status after the timer looks at it at `now`. A pending
/// deadline fires once `now` reaches it; every other is left as it is.
pub fn fire(row: Option<Status>, deadline: DateTime<Utc>, now: DateTime<Utc>) -> Option<Status> {
    match row {
        Some(Status::Pending) if deadline <= now => Some(Status::Fired),
        _ => row,
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
                Decision::Ignore(ALREADY_SCHEDULED)
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
                    Decision::Ignore(ALREADY_ENDED)
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

    #[test]
    fn a_write_changes_the_deadline_only_where_its_guard_holds() {
        let schedule = Decision::Schedule { deadline: at() };
        assert_eq!(written(schedule, None), Some(Status::Pending));
        assert_eq!(written(Decision::Cancel, None), Some(Status::Cancelled));
        assert_eq!(
            written(Decision::Cancel, Some(Status::Pending)),
            Some(Status::Cancelled)
        );
        for row in Status::ALL {
            assert_eq!(
                written(schedule, Some(row)),
                Some(row),
                "schedule over {row:?}"
            );
        }
        for row in [Status::Fired, Status::Cancelled] {
            assert_eq!(
                written(Decision::Cancel, Some(row)),
                Some(row),
                "cancel over {row:?}"
            );
        }
        assert_eq!(refused(schedule), ALREADY_SCHEDULED);
        assert_eq!(refused(Decision::Cancel), ALREADY_ENDED);
    }

    #[test]
    fn only_a_pending_deadline_fires_and_only_once_its_time_has_come() {
        let early = at() - chrono::Duration::milliseconds(1);
        assert_eq!(
            fire(Some(Status::Pending), at(), early),
            Some(Status::Pending)
        );
        assert_eq!(fire(Some(Status::Pending), at(), at()), Some(Status::Fired));
        for row in [None, Some(Status::Fired), Some(Status::Cancelled)] {
            assert_eq!(fire(row, at(), at()), row);
        }
    }
}
