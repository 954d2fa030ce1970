//! The exchange's decisions, without I/O.
//!
//! `OrderCreated` exchanges the amount into points (one point per unit of currency) unless the
//! saga has expired or was already handled; `OrderRejected` always compensates, and always
//! answers with `ExchangeCompensated`, even when there was nothing to undo (saga-rules §4 rule 4).
//! Each decision carries everything the shell writes and publishes.
//!
//! The exchange's write re-checks the deadline when the row is written, however long ago the
//! decision was made, and a row another instance wrote meanwhile wins: [`record`] and
//! [`compensated`] state what each write leaves, and `tests/guards.rs` runs the statements
//! against PostgreSQL on every state to hold them to it.

use common_events::Event;
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Exchanged,
    Compensated,
}

impl Status {
    pub const ALL: [Status; 2] = [Status::Exchanged, Status::Compensated];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Exchanged => "EXCHANGED",
            Status::Compensated => "COMPENSATED",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// The exchange of one saga, if this service has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exchange {
    pub status: Status,
    pub point: Decimal,
}

/// An exchange to record, with everything its row holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewExchange {
    pub user_id: String,
    pub currency_id: Option<String>,
    pub amount: Decimal,
    pub point: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record `exchange` and publish `emit` (`ExchangeSucceed`), provided the saga's deadline
    /// still holds when the row is written. That guard belongs to the write itself (saga-rules §4
    /// rule 5): an exchange the guard refuses is recorded as [`EXPIRED_DURING_PROCESSING`].
    Exchange {
        exchange: NewExchange,
        emit: Event,
    },
    /// Mark the saga compensated (with a row of its own if nothing was exchanged) and publish
    /// `emit` (`ExchangeCompensated` with the points undone, zero if none).
    Compensate {
        emit: Event,
    },
    Ignore(&'static str),
}

/// Why an exchange decided in time was not recorded: its deadline passed before the write.
pub const EXPIRED_DURING_PROCESSING: &str = "expired during processing";

/// The saga's exchange after the write of a decided exchange of `point` points, when the write
/// finds `existing` and the deadline `expired` (or not) by the database's clock: recorded only
/// where none exists and the deadline still holds. A decision the write refused is ignored as
/// [`EXPIRED_DURING_PROCESSING`].
pub fn record(existing: Option<Exchange>, point: Decimal, expired: bool) -> Option<Exchange> {
    match existing {
        None if !expired => Some(Exchange {
            status: Status::Exchanged,
            point,
        }),
        _ => existing,
    }
}

/// The saga's exchange after its compensation's write, when the write finds `existing`: marked
/// compensated, keeping the points it undid; with no points where nothing was exchanged.
pub fn compensated(existing: Option<Exchange>) -> Exchange {
    Exchange {
        status: Status::Compensated,
        point: existing.map_or(Decimal::ZERO, |e| e.point),
    }
}

/// Points for an amount of currency. The rate is one; a real exchange would look it up.
pub fn points_for(amount: Decimal) -> Decimal {
    amount
}

pub fn decide(exchange: Option<Exchange>, event: &Event, expired: bool) -> Decision {
    let compensate = |point| Decision::Compensate {
        emit: Event::ExchangeCompensated { point },
    };
    match (event, exchange) {
        (
            Event::OrderCreated {
                holder_id,
                currency_id,
                amount,
            },
            None,
        ) if !expired => {
            let point = points_for(*amount);
            Decision::Exchange {
                exchange: NewExchange {
                    user_id: holder_id.clone(),
                    currency_id: currency_id.clone(),
                    amount: *amount,
                    point,
                },
                emit: Event::ExchangeSucceed {
                    user_id: holder_id.clone(),
                    point,
                },
            }
        }
        (Event::OrderCreated { .. }, None) => Decision::Ignore("expired"),
        (Event::OrderCreated { .. }, Some(e)) if e.status == Status::Compensated => {
            Decision::Ignore("saga already compensated")
        }
        (Event::OrderCreated { .. }, Some(_)) => Decision::Ignore("already exchanged"),
        (Event::OrderRejected { .. }, None) => compensate(Decimal::ZERO),
        (Event::OrderRejected { .. }, Some(e)) if e.status == Status::Exchanged => {
            compensate(e.point)
        }
        (Event::OrderRejected { .. }, Some(_)) => Decision::Ignore("already compensated"),
        _ => Decision::Ignore("not an exchange event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Event {
        Event::OrderCreated {
            holder_id: "jjy".into(),
            currency_id: Some("1".into()),
            amount: Decimal::from(500),
        }
    }

    fn rejected() -> Event {
        Event::OrderRejected {
            reason: "deadline reached".into(),
        }
    }

    fn exchange(status: Status) -> Option<Exchange> {
        Some(Exchange {
            status,
            point: Decimal::from(500),
        })
    }

    #[test]
    fn an_order_in_time_is_exchanged_one_point_per_unit() {
        assert_eq!(
            decide(None, &created(), false),
            Decision::Exchange {
                exchange: NewExchange {
                    user_id: "jjy".into(),
                    currency_id: Some("1".into()),
                    amount: Decimal::from(500),
                    point: Decimal::from(500),
                },
                emit: Event::ExchangeSucceed {
                    user_id: "jjy".into(),
                    point: Decimal::from(500)
                }
            }
        );
    }

    #[test]
    fn an_expired_order_is_ignored() {
        assert_eq!(decide(None, &created(), true), Decision::Ignore("expired"));
    }

    #[test]
    fn a_late_order_created_after_compensation_is_ignored() {
        assert_eq!(
            decide(exchange(Status::Compensated), &created(), false),
            Decision::Ignore("saga already compensated")
        );
        assert_eq!(
            decide(exchange(Status::Exchanged), &created(), false),
            Decision::Ignore("already exchanged")
        );
    }

    #[test]
    fn a_rejection_undoes_the_exchange() {
        assert_eq!(
            decide(exchange(Status::Exchanged), &rejected(), true),
            Decision::Compensate {
                emit: Event::ExchangeCompensated {
                    point: Decimal::from(500)
                }
            }
        );
    }

    #[test]
    fn a_rejection_with_nothing_exchanged_still_compensates() {
        assert_eq!(
            decide(None, &rejected(), true),
            Decision::Compensate {
                emit: Event::ExchangeCompensated {
                    point: Decimal::ZERO
                }
            }
        );
    }

    #[test]
    fn compensation_happens_once() {
        assert_eq!(
            decide(exchange(Status::Compensated), &rejected(), true),
            Decision::Ignore("already compensated")
        );
    }

    #[test]
    fn an_exchange_is_recorded_only_where_none_exists_and_the_deadline_holds() {
        let point = Decimal::from(500);
        let recorded = Some(Exchange {
            status: Status::Exchanged,
            point,
        });
        assert_eq!(record(None, point, false), recorded);
        assert_eq!(record(None, point, true), None);
        for existing in [exchange(Status::Exchanged), exchange(Status::Compensated)] {
            for expired in [false, true] {
                assert_eq!(record(existing, Decimal::from(7), expired), existing);
            }
        }
    }

    #[test]
    fn a_compensation_keeps_the_points_it_undid() {
        assert_eq!(compensated(None).point, Decimal::ZERO);
        for existing in [exchange(Status::Exchanged), exchange(Status::Compensated)] {
            assert_eq!(
                compensated(existing),
                Exchange {
                    status: Status::Compensated,
                    point: Decimal::from(500)
                }
            );
        }
    }
}
