//! The point service's decisions, without I/O: given a saga's ledger entry, the account it
//! concerns and an event, the new entry, the new balance and the event to emit, or why the event
//! changes nothing.
//!
//! `ExchangeSucceed` takes the points if the saga is in time, the account exists and holds
//! enough; otherwise it answers `PointUseFailed` with the reason, promptly (saga-rules §4 rule 9).
//! `ExchangeCompensated` refunds only what was taken, once, and always answers `PointRefunded`
//! so the order learns that the chain has finished. After compensation every late event of the
//! saga is ignored.

use common_events::Event;
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Points were taken.
    Used,
    /// Points were taken and given back.
    Refunded,
    /// Nothing was taken: point limit, no account, or the saga was compensated first.
    Rejected,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Used, Status::Refunded, Status::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Used => "USED",
            Status::Refunded => "REFUNDED",
            Status::Rejected => "REJECTED",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// This service's record of one saga: its row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub user_id: Option<String>,
    pub status: Status,
    pub point: Decimal,
    pub reason: Option<String>,
    /// `ExchangeCompensated` was handled.
    pub compensated: bool,
}

/// A point account and its balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    pub balance: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write `entry` as the saga's ledger row, set `account`'s balance if given, and publish
    /// `emit`.
    Change {
        entry: Entry,
        account: Option<Account>,
        emit: Event,
    },
    Ignore(&'static str),
    /// The ledger and the accounts disagree; nothing can be decided (accounts are never
    /// deleted, so this means the data was changed by hand).
    Inconsistent(&'static str),
}

/// The account whose balance `event` may change, which the shell must read (and lock) before
/// deciding: the event's holder when using points, the ledger's when refunding.
pub fn account_of<'a>(entry: Option<&'a Entry>, event: &'a Event) -> Option<&'a str> {
    match event {
        Event::ExchangeSucceed { user_id, .. } => Some(user_id),
        _ => entry?.user_id.as_deref(),
    }
}

/// Decides what `event` does, given the saga's ledger `entry` and the `account` that
/// [`account_of`] named (`None` if there is no such account).
pub fn decide(
    entry: Option<&Entry>,
    account: Option<&Account>,
    event: &Event,
    expired: bool,
) -> Decision {
    match (event, entry) {
        (Event::ExchangeSucceed { .. }, Some(entry)) if entry.compensated => {
            Decision::Ignore("saga already compensated")
        }
        (Event::ExchangeSucceed { .. }, Some(_)) => Decision::Ignore("already decided"),
        (Event::ExchangeSucceed { .. }, None) if expired => Decision::Ignore("expired"),
        (Event::ExchangeSucceed { user_id, point }, None) => use_points(user_id, *point, account),
        (Event::ExchangeCompensated { .. }, Some(entry)) if entry.compensated => {
            Decision::Ignore("already compensated")
        }
        (Event::ExchangeCompensated { .. }, entry) => refund(entry, account),
        _ => Decision::Ignore("not a point event"),
    }
}

fn use_points(user_id: &str, point: Decimal, account: Option<&Account>) -> Decision {
    let refuse = |reason: String| Decision::Change {
        entry: Entry {
            user_id: Some(user_id.to_string()),
            status: Status::Rejected,
            point: Decimal::ZERO,
            reason: Some(reason.clone()),
            compensated: false,
        },
        account: None,
        emit: Event::PointUseFailed { reason },
    };
    match account {
        None => refuse(format!("no point account for {user_id}")),
        Some(account) if account.balance < point => refuse(format!(
            "point limit exceeded: balance {}, needed {point}",
            account.balance
        )),
        Some(account) => {
            let balance = account.balance - point;
            Decision::Change {
                entry: Entry {
                    user_id: Some(user_id.to_string()),
                    status: Status::Used,
                    point,
                    reason: None,
                    compensated: false,
                },
                account: Some(Account {
                    user_id: user_id.to_string(),
                    balance,
                }),
                emit: Event::PointUsed {
                    user_id: user_id.to_string(),
                    point,
                    balance,
                },
            }
        }
    }
}

/// Gives back what was taken, if anything; a saga compensated before any use gets an entry
/// of its own, so a late `ExchangeSucceed` finds it and is ignored.
fn refund(entry: Option<&Entry>, account: Option<&Account>) -> Decision {
    let refunded = |entry: Entry, account, point| Decision::Change {
        entry: Entry {
            compensated: true,
            ..entry
        },
        account,
        emit: Event::PointRefunded { point },
    };
    match entry {
        Some(entry) if entry.status == Status::Used => {
            let Some(account) = account else {
                return Decision::Inconsistent("points were used from an account that is gone");
            };
            let account = Account {
                user_id: account.user_id.clone(),
                balance: account.balance + entry.point,
            };
            let given_back = Entry {
                status: Status::Refunded,
                ..entry.clone()
            };
            refunded(given_back, Some(account), entry.point)
        }
        Some(entry) => refunded(entry.clone(), None, Decimal::ZERO),
        None => refunded(
            Entry {
                user_id: None,
                status: Status::Rejected,
                point: Decimal::ZERO,
                reason: Some("compensated before use".into()),
                compensated: false,
            },
            None,
            Decimal::ZERO,
        ),
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

    fn account(balance: i64) -> Account {
        Account {
            user_id: "jjy".into(),
            balance: Decimal::from(balance),
        }
    }

    fn entry(status: Status, compensated: bool) -> Entry {
        Entry {
            user_id: Some("jjy".into()),
            status,
            point: Decimal::from(500),
            reason: None,
            compensated,
        }
    }

    fn emitted(decision: Decision) -> Event {
        match decision {
            Decision::Change { emit, .. } => emit,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn points_are_used_when_the_balance_covers_them() {
        assert_eq!(
            decide(None, Some(&account(10000)), &succeed(500), false),
            Decision::Change {
                entry: entry(Status::Used, false),
                account: Some(account(9500)),
                emit: Event::PointUsed {
                    user_id: "jjy".into(),
                    point: Decimal::from(500),
                    balance: Decimal::from(9500)
                }
            }
        );
        let Decision::Change { account: left, .. } =
            decide(None, Some(&account(500)), &succeed(500), false)
        else {
            panic!("expected a change");
        };
        assert_eq!(left, Some(account(0)), "the whole balance may be used");
    }

    #[test]
    fn more_than_the_balance_is_refused_with_the_reason_and_nothing_taken() {
        let decision = decide(None, Some(&account(9500)), &succeed(50000), false);
        let Decision::Change { entry, account, .. } = &decision else {
            panic!("expected a change");
        };
        assert_eq!(
            (entry.status, entry.point),
            (Status::Rejected, Decimal::ZERO)
        );
        assert_eq!(*account, None, "no balance is touched");
        let Event::PointUseFailed { reason } = emitted(decision) else {
            panic!("expected PointUseFailed");
        };
        assert!(reason.contains("point limit"), "{reason}");
    }

    #[test]
    fn a_holder_without_an_account_is_refused_at_once() {
        assert_eq!(
            emitted(decide(None, None, &succeed(500), false)),
            Event::PointUseFailed {
                reason: "no point account for jjy".into()
            }
        );
    }

    #[test]
    fn an_expired_exchange_is_ignored() {
        assert_eq!(
            decide(None, Some(&account(10000)), &succeed(500), true),
            Decision::Ignore("expired")
        );
    }

    #[test]
    fn a_saga_is_decided_once() {
        for status in [Status::Used, Status::Rejected] {
            assert_eq!(
                decide(
                    Some(&entry(status, false)),
                    Some(&account(10000)),
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
                    Some(&entry(status, true)),
                    Some(&account(10000)),
                    &succeed(500),
                    false
                ),
                Decision::Ignore("saga already compensated")
            );
        }
    }

    #[test]
    fn compensation_refunds_what_was_used_to_the_ledgers_account() {
        let used = entry(Status::Used, false);
        assert_eq!(account_of(Some(&used), &compensated()), Some("jjy"));
        assert_eq!(
            decide(Some(&used), Some(&account(9500)), &compensated(), true),
            Decision::Change {
                entry: entry(Status::Refunded, true),
                account: Some(account(10000)),
                emit: Event::PointRefunded {
                    point: Decimal::from(500)
                }
            }
        );
    }

    #[test]
    fn compensation_without_a_use_refunds_nothing_and_marks_the_saga() {
        let refused = entry(Status::Rejected, false);
        assert_eq!(
            decide(Some(&refused), None, &compensated(), true),
            Decision::Change {
                entry: entry(Status::Rejected, true),
                account: None,
                emit: Event::PointRefunded {
                    point: Decimal::ZERO
                }
            }
        );
        let Decision::Change { entry: first, .. } = decide(None, None, &compensated(), true) else {
            panic!("expected a change");
        };
        assert!(first.compensated && first.status == Status::Rejected);
        assert_eq!(account_of(None, &compensated()), None);
    }

    #[test]
    fn compensation_happens_once() {
        assert_eq!(
            decide(
                Some(&entry(Status::Refunded, true)),
                Some(&account(10000)),
                &compensated(),
                true
            ),
            Decision::Ignore("already compensated")
        );
    }

    #[test]
    fn a_refund_to_an_account_that_is_gone_is_an_inconsistency_not_a_loss() {
        assert!(matches!(
            decide(
                Some(&entry(Status::Used, false)),
                None,
                &compensated(),
                true
            ),
            Decision::Inconsistent(_)
        ));
    }
}
