//! The order's state machine, without I/O: given the order and an event, what changes.
//!
//! An order starts `PENDING` and ends in exactly one terminal state (SPEC §4 rule 3): approved
//! on `PointUsed` before the deadline, rejected on `PointUseFailed` or `DeadlineReached`.
//! A `PointUsed` that comes after the deadline is ignored: the `DeadlineReached` that follows
//! rejects the order and the compensation chain gives the points back.

use common_events::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    RejectedPointLimit,
    RejectedDeadline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Approved => "APPROVED",
            Status::RejectedPointLimit => "REJECTED DUE TO POINT LIMIT",
            Status::RejectedDeadline => "REJECTED DUE TO DEADLINE",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Approved,
            Status::RejectedPointLimit,
            Status::RejectedDeadline,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    fn is_rejected(self) -> bool {
        matches!(self, Status::RejectedPointLimit | Status::RejectedDeadline)
    }
}

/// What the decisions need to know of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub status: Status,
    pub compensation_done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approve and emit `OrderPlaced`.
    Approve,
    /// Reject with this status and reason and emit `OrderRejected`.
    Reject(Status, String),
    /// The compensation chain has finished: record it.
    FinishCompensation,
    Ignore(&'static str),
}

/// Decides what `event` does to `order`; `expired` says whether its deadline has passed.
pub fn decide(order: Order, event: &Event, expired: bool) -> Decision {
    let pending = order.status == Status::Pending;
    match event {
        Event::PointUsed { .. } if !pending => Decision::Ignore("order already final"),
        Event::PointUsed { .. } if expired => Decision::Ignore("expired"),
        Event::PointUsed { .. } => Decision::Approve,
        Event::PointUseFailed { reason } if pending => {
            Decision::Reject(Status::RejectedPointLimit, reason.clone())
        }
        Event::DeadlineReached if pending => {
            Decision::Reject(Status::RejectedDeadline, "deadline reached".into())
        }
        Event::PointUseFailed { .. } | Event::DeadlineReached => {
            Decision::Ignore("order already final")
        }
        Event::PointRefunded { .. } if order.status.is_rejected() && !order.compensation_done => {
            Decision::FinishCompensation
        }
        Event::PointRefunded { .. } => Decision::Ignore("compensation already finished"),
        _ => Decision::Ignore("not an order event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn order(status: Status) -> Order {
        Order {
            status,
            compensation_done: false,
        }
    }

    fn point_used() -> Event {
        Event::PointUsed {
            user_id: "jjy".into(),
            point: Decimal::from(500),
            balance: Decimal::from(9500),
        }
    }

    fn failed() -> Event {
        Event::PointUseFailed {
            reason: "point limit exceeded".into(),
        }
    }

    fn refunded() -> Event {
        Event::PointRefunded {
            point: Decimal::from(500),
        }
    }

    #[test]
    fn a_pending_order_is_approved_when_points_are_used_in_time() {
        assert_eq!(
            decide(order(Status::Pending), &point_used(), false),
            Decision::Approve
        );
    }

    #[test]
    fn an_order_never_approves_after_its_deadline() {
        assert_eq!(
            decide(order(Status::Pending), &point_used(), true),
            Decision::Ignore("expired")
        );
    }

    #[test]
    fn a_failed_point_use_rejects_for_the_point_limit_with_its_reason() {
        assert_eq!(
            decide(order(Status::Pending), &failed(), false),
            Decision::Reject(Status::RejectedPointLimit, "point limit exceeded".into())
        );
    }

    #[test]
    fn the_deadline_rejects_a_pending_order() {
        assert!(matches!(
            decide(order(Status::Pending), &Event::DeadlineReached, true),
            Decision::Reject(Status::RejectedDeadline, _)
        ));
    }

    #[test]
    fn terminal_states_never_change() {
        for status in [
            Status::Approved,
            Status::RejectedPointLimit,
            Status::RejectedDeadline,
        ] {
            for event in [point_used(), failed(), Event::DeadlineReached] {
                for expired in [false, true] {
                    assert_eq!(
                        decide(order(status), &event, expired),
                        Decision::Ignore("order already final")
                    );
                }
            }
        }
    }

    #[test]
    fn a_refund_finishes_the_compensation_of_a_rejected_order_once() {
        for status in [Status::RejectedPointLimit, Status::RejectedDeadline] {
            assert_eq!(
                decide(order(status), &refunded(), true),
                Decision::FinishCompensation
            );
            let done = Order {
                status,
                compensation_done: true,
            };
            assert_eq!(
                decide(done, &refunded(), true),
                Decision::Ignore("compensation already finished")
            );
        }
        assert!(matches!(
            decide(order(Status::Approved), &refunded(), false),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn statuses_read_back_from_their_names() {
        for status in [
            Status::Pending,
            Status::Approved,
            Status::RejectedPointLimit,
            Status::RejectedDeadline,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("SHIPPED"), None);
    }
}
