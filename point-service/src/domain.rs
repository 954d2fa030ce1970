//! The point service's decisions, without I/O.
//!
//! `ExchangeSucceed` takes the points if the saga is in time, the account exists and holds
//! enough; otherwise it answers `PointUseFailed` with the reason, promptly (SPEC §4 rule 9).
//! `ExchangeCompensated` refunds only what was taken, once, and always answers `PointRefunded`
//! so the order learns that the chain has finished.

use common_events::Event;
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Used,
    Refunded,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Used => "USED",
            Status::Refunded => "REFUNDED",
            Status::Rejected => "REJECTED",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [Status::Used, Status::Refunded, Status::Rejected]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// This service's record of one saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    pub status: Status,
    pub point: Decimal,
    pub compensated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take `point` from the account, leaving `balance`; emit `PointUsed`.
    Use {
        point: Decimal,
        balance: Decimal,
    },
    /// Record the refusal; emit `PointUseFailed`.
    Refuse {
        reason: String,
    },
    /// Give back `point` (zero if nothing was taken); emit `PointRefunded`.
    Refund {
        point: Decimal,
    },
    Ignore(&'static str),
}

/// `balance` is the holder's balance, `None` when there is no account.
pub fn decide(
    transaction: Option<Transaction>,
    balance: Option<Decimal>,
    event: &Event,
    expired: bool,
) -> Decision {
    match (event, transaction) {
        (Event::ExchangeSucceed { .. }, Some(t)) if t.compensated => {
            Decision::Ignore("saga already compensated")
        }
        (Event::ExchangeSucceed { .. }, Some(_)) => Decision::Ignore("already decided"),
        (Event::ExchangeSucceed { .. }, None) if expired => Decision::Ignore("expired"),
        (Event::ExchangeSucceed { user_id, point }, None) => match balance {
            None => Decision::Refuse {
                reason: format!("no point account for {user_id}"),
            },
            Some(balance) if balance < *point => Decision::Refuse {
                reason: format!("point limit exceeded: balance {balance}, needed {point}"),
            },
            Some(balance) => Decision::Use {
                point: *point,
                balance: balance - point,
            },
        },
        (Event::ExchangeCompensated { .. }, Some(t)) if t.compensated => {
            Decision::Ignore("already compensated")
        }
        (Event::ExchangeCompensated { .. }, Some(t)) if t.status == Status::Used => {
            Decision::Refund { point: t.point }
        }
        (Event::ExchangeCompensated { .. }, _) => Decision::Refund {
            point: Decimal::ZERO,
        },
        _ => Decision::Ignore("not a point event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn succeed(point: i64) -> Event {
        Event::ExchangeSucceed {
            user_id: "jjy".into(),
            point: Decimal::from(point),
        }
    }

    fn compensated() -> Event {
        Event::ExchangeCompensated {
            point: Decimal::from(500),
        }
    }

    fn transaction(status: Status, compensated: bool) -> Option<Transaction> {
        Some(Transaction {
            status,
            point: Decimal::from(500),
            compensated,
        })
    }

    #[test]
    fn points_are_used_when_the_balance_covers_them() {
        assert_eq!(
            decide(None, Some(Decimal::from(10000)), &succeed(500), false),
            Decision::Use {
                point: Decimal::from(500),
                balance: Decimal::from(9500)
            }
        );
        assert_eq!(
            decide(None, Some(Decimal::from(500)), &succeed(500), false),
            Decision::Use {
                point: Decimal::from(500),
                balance: Decimal::ZERO
            }
        );
    }

    #[test]
    fn more_than_the_balance_is_refused_with_the_reason() {
        let Decision::Refuse { reason } =
            decide(None, Some(Decimal::from(9500)), &succeed(50000), false)
        else {
            panic!("expected a refusal");
        };
        assert!(reason.contains("point limit"), "{reason}");
    }

    #[test]
    fn a_holder_without_an_account_is_refused_at_once() {
        assert_eq!(
            decide(None, None, &succeed(500), false),
            Decision::Refuse {
                reason: "no point account for jjy".into()
            }
        );
    }

    #[test]
    fn an_expired_exchange_is_ignored() {
        assert_eq!(
            decide(None, Some(Decimal::from(10000)), &succeed(500), true),
            Decision::Ignore("expired")
        );
    }

    #[test]
    fn a_saga_is_decided_once() {
        for status in [Status::Used, Status::Rejected] {
            assert_eq!(
                decide(
                    transaction(status, false),
                    Some(Decimal::from(10000)),
                    &succeed(500),
                    false
                ),
                Decision::Ignore("already decided")
            );
        }
    }

    #[test]
    fn after_compensation_late_forward_events_are_ignored() {
        for status in [Status::Refunded, Status::Rejected] {
            assert_eq!(
                decide(
                    transaction(status, true),
                    Some(Decimal::from(10000)),
                    &succeed(500),
                    false
                ),
                Decision::Ignore("saga already compensated")
            );
        }
    }

    #[test]
    fn compensation_refunds_only_what_was_used_and_only_once() {
        assert_eq!(
            decide(transaction(Status::Used, false), None, &compensated(), true),
            Decision::Refund {
                point: Decimal::from(500)
            }
        );
        assert_eq!(
            decide(
                transaction(Status::Rejected, false),
                None,
                &compensated(),
                true
            ),
            Decision::Refund {
                point: Decimal::ZERO
            }
        );
        assert_eq!(
            decide(None, None, &compensated(), true),
            Decision::Refund {
                point: Decimal::ZERO
            }
        );
        assert_eq!(
            decide(
                transaction(Status::Refunded, true),
                None,
                &compensated(),
                true
            ),
            Decision::Ignore("already compensated")
        );
    }
}
