//! The order's state machine, without I/O: given the order and an event, the order as it must be
//! stored next and the event to emit, or why the event changes nothing.
//!
//! An order is placed `PENDING`, with the deadline its saga must end by, and its
//! `OrderCreated` starts the saga ([`place`]). It ends in exactly one terminal state (saga-rules §4 rule 3):
//! approved on `PointUsed` before the deadline, rejected on `PointUseFailed` or
//! `DeadlineReached`. A rejected order's compensation is pending until `PointRefunded` ends the
//! chain. A `PointUsed` that comes after the deadline is ignored: the `DeadlineReached` that
//! follows rejects the order and the compensation chain gives the points back.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use common_events::Event;
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Approved,
    RejectedPointLimit,
    RejectedDeadline,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Approved,
        Status::RejectedPointLimit,
        Status::RejectedDeadline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Approved => "APPROVED",
            Status::RejectedPointLimit => "REJECTED DUE TO POINT LIMIT",
            Status::RejectedDeadline => "REJECTED DUE TO DEADLINE",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// Where a rejected order's compensation chain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compensation {
    Pending,
    Done,
}

impl Compensation {
    pub const ALL: [Compensation; 2] = [Compensation::Pending, Compensation::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            Compensation::Pending => "PENDING",
            Compensation::Done => "DONE",
        }
    }

    pub fn parse(text: &str) -> Option<Compensation> {
        Compensation::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// The part of an order the saga changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Order {
    pub status: Status,
    pub reason: Option<String>,
    /// `None` unless the order was rejected.
    pub compensation: Option<Compensation>,
}

impl Order {
    /// An order as it is created.
    pub fn created() -> Order {
        Order {
            status: Status::Pending,
            reason: None,
            compensation: None,
        }
    }

    /// Whether the order is history, which the retention may prune once old: its saga has
    /// ended, and its compensation too if it was rejected.
    pub fn finished(&self) -> bool {
        self.status != Status::Pending && self.compensation != Some(Compensation::Pending)
    }
}

/// An order as a holder places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub holder_id: String,
    pub currency_id: Option<String>,
    pub amount: Decimal,
}

/// A placed order: its first state, its saga's deadline and the event that starts the saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub order: Order,
    pub deadline: DateTime<Utc>,
    pub created: Event,
}

/// Places `new` at `now`, for a saga that may take `timeout`. The deadline is kept to the
/// millisecond, as it travels in the saga's events: the order keeps the deadline every service
/// decides by, and the deadline never fires before the order's own.
pub fn place(new: &NewOrder, now: DateTime<Utc>, timeout: Duration) -> Placed {
    let timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    let deadline = now
        .checked_add_signed(timeout)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    Placed {
        order: Order::created(),
        deadline: deadline.trunc_subsecs(3),
        created: Event::OrderCreated {
            holder_id: new.holder_id.clone(),
            currency_id: new.currency_id.clone(),
            amount: new.amount,
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store `order` as the order's new state and publish `emit`, if any.
    Change { order: Order, emit: Option<Event> },
    /// Record the event as ignored, for this reason.
    Ignore(&'static str),
}

/// Decides what `event` does to `order` (`None`: no such order); `expired` says whether the
/// saga's deadline has passed.
pub fn decide(order: Option<&Order>, event: &Event, expired: bool) -> Decision {
    let Some(order) = order else {
        return Decision::Ignore("unknown order");
    };
    let pending = order.status == Status::Pending;
    let reject = |status, reason: &str| Decision::Change {
        order: Order {
            status,
            reason: Some(reason.to_string()),
            compensation: Some(Compensation::Pending),
        },
        emit: Some(Event::OrderRejected {
            reason: reason.to_string(),
        }),
    };
    match event {
        Event::PointUsed { .. } if !pending => Decision::Ignore("order already final"),
        Event::PointUsed { .. } if expired => Decision::Ignore("expired"),
        Event::PointUsed { .. } => Decision::Change {
            order: Order {
                status: Status::Approved,
                reason: None,
                compensation: None,
            },
            emit: Some(Event::OrderPlaced),
        },
        Event::PointUseFailed { reason } if pending => reject(Status::RejectedPointLimit, reason),
        Event::DeadlineReached if pending => reject(Status::RejectedDeadline, "deadline reached"),
        Event::PointUseFailed { .. } | Event::DeadlineReached => {
            Decision::Ignore("order already final")
        }
        Event::PointRefunded { .. } if order.compensation == Some(Compensation::Pending) => {
            Decision::Change {
                order: Order {
                    compensation: Some(Compensation::Done),
                    ..order.clone()
                },
                emit: None,
            }
        }
        Event::PointRefunded { .. } => Decision::Ignore("compensation already finished"),
        _ => Decision::Ignore("not an order event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: Status) -> Order {
        let compensation = matches!(
            status,
            Status::RejectedPointLimit | Status::RejectedDeadline
        )
        .then_some(Compensation::Pending);
        Order {
            status,
            reason: None,
            compensation,
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
            decide(Some(&Order::created()), &point_used(), false),
            Decision::Change {
                order: order(Status::Approved),
                emit: Some(Event::OrderPlaced)
            }
        );
    }

    #[test]
    fn an_order_never_approves_after_its_deadline() {
        assert_eq!(
            decide(Some(&Order::created()), &point_used(), true),
            Decision::Ignore("expired")
        );
    }

    #[test]
    fn a_failed_point_use_rejects_for_the_point_limit_with_its_reason_and_compensation_pending() {
        assert_eq!(
            decide(Some(&Order::created()), &failed(), false),
            Decision::Change {
                order: Order {
                    status: Status::RejectedPointLimit,
                    reason: Some("point limit exceeded".into()),
                    compensation: Some(Compensation::Pending),
                },
                emit: Some(Event::OrderRejected {
                    reason: "point limit exceeded".into()
                })
            }
        );
    }

    #[test]
    fn the_deadline_rejects_a_pending_order() {
        let Decision::Change { order, emit } =
            decide(Some(&Order::created()), &Event::DeadlineReached, true)
        else {
            panic!("expected a change");
        };
        assert_eq!(order.status, Status::RejectedDeadline);
        assert_eq!(order.compensation, Some(Compensation::Pending));
        assert!(matches!(emit, Some(Event::OrderRejected { .. })));
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
                        decide(Some(&order(status)), &event, expired),
                        Decision::Ignore("order already final")
                    );
                }
            }
        }
    }

    #[test]
    fn a_refund_finishes_the_compensation_of_a_rejected_order_once() {
        for status in [Status::RejectedPointLimit, Status::RejectedDeadline] {
            let rejected = order(status);
            let Decision::Change { order: done, emit } = decide(Some(&rejected), &refunded(), true)
            else {
                panic!("expected a change");
            };
            assert_eq!(
                (done.status, done.compensation),
                (status, Some(Compensation::Done))
            );
            assert_eq!(emit, None, "the chain ends here");
            assert_eq!(
                decide(Some(&done), &refunded(), true),
                Decision::Ignore("compensation already finished")
            );
        }
        assert!(matches!(
            decide(Some(&order(Status::Approved)), &refunded(), false),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn an_event_for_an_unknown_order_is_ignored() {
        assert_eq!(
            decide(None, &point_used(), false),
            Decision::Ignore("unknown order")
        );
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
        for compensation in [Compensation::Pending, Compensation::Done] {
            assert_eq!(
                Compensation::parse(compensation.as_str()),
                Some(compensation)
            );
        }
    }

    #[test]
    fn a_placed_order_is_pending_with_its_deadline_to_the_millisecond_and_starts_its_saga() {
        let new = NewOrder {
            holder_id: "jjy".into(),
            currency_id: Some("1".into()),
            amount: Decimal::from(500),
        };
        let now = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        let placed = place(&new, now, Duration::from_secs(5));
        assert_eq!(placed.order, Order::created());
        assert_eq!(placed.order.status, Status::Pending);
        assert_eq!(
            placed.deadline,
            DateTime::from_timestamp_millis(1_800_000_005_123).unwrap()
        );
        assert_eq!(
            placed.created,
            Event::OrderCreated {
                holder_id: "jjy".into(),
                currency_id: Some("1".into()),
                amount: Decimal::from(500),
            }
        );
    }
}
