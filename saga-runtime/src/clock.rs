//! The time a service decides by: the system's clock in a running service, or a clock that a
//! test sets and moves by hand, so that what depends on time (a saga's expiry, the deadline
//! timer) is tested without waiting for the wall clock.
//!
//! The database's own clock is not this one: the exchange's guarded write checks the deadline
//! with PostgreSQL's `clock_timestamp()`, at the moment the row is written.

use std::{fmt, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<watch::Sender<DateTime<Utc>>>>,
    /// How far the system's clock is moved, as on a host whose clock is off.
    skew: chrono::Duration,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The system's clock moved by `skew` (ahead if positive), as a host's clock may be off:
    /// what the chaos run injects to see what skew does to the sagas (`FAULT_CLOCK_SKEW_MS`).
    pub fn skewed(skew: chrono::Duration) -> Clock {
        Clock { manual: None, skew }
    }

    /// A clock that shows `start` until [`Clock::advance`] moves it.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock {
            manual: Some(Arc::new(watch::Sender::new(start))),
            skew: chrono::Duration::zero(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now() + self.skew,
            Some(manual) => *manual.borrow(),
        }
    }

    /// Moves a manual clock forward by `by`, waking whoever sleeps until a time it reaches. The
    /// system's clock cannot be moved: it is left alone.
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.manual {
            let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
            manual.send_modify(|now| *now = now.checked_add_signed(by).unwrap_or(*now));
        }
    }

    /// Returns once the clock shows `at` or later, or after `at most` has passed by it,
    /// whichever is first.
    pub async fn sleep_until(&self, at: DateTime<Utc>, at_most: Duration) {
        let wait = (at - self.now()).to_std().unwrap_or_default().min(at_most);
        match &self.manual {
            None => tokio::time::sleep(wait).await,
            Some(manual) => {
                let until = self.now() + wait;
                // The sender lives in `self`, so the wait ends only when the time comes.
                let _ = manual.subscribe().wait_for(|now| *now >= until).await;
            }
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None if self.skew.is_zero() => f.write_str("Clock::system"),
            None => write!(f, "Clock::skewed({} ms)", self.skew.num_milliseconds()),
            Some(manual) => write!(f, "Clock::manual({})", *manual.borrow()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000).unwrap()
    }

    #[test]
    fn a_manual_clock_shows_its_time_until_advanced() {
        let clock = Clock::manual(start());
        assert_eq!(clock.now(), start());
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), start() + chrono::Duration::milliseconds(1500));
    }

    #[tokio::test]
    async fn a_sleep_on_a_manual_clock_ends_when_the_clock_reaches_its_time() {
        let clock = Clock::manual(start());
        let at = start() + chrono::Duration::seconds(60);
        let sleeping = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(at, Duration::from_secs(3600)).await }
        });
        // The sleeper reads the clock when it starts: let it start before the clock moves.
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeping.is_finished(), "woke a second early");
        clock.advance(Duration::from_secs(1));
        sleeping.await.unwrap();
    }

    #[tokio::test]
    async fn a_sleep_on_a_manual_clock_ends_after_its_longest_wait() {
        let clock = Clock::manual(start());
        let far = start() + chrono::Duration::days(1);
        let sleeping = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(far, Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(5));
        sleeping.await.unwrap();
    }

    #[test]
    fn a_skewed_clock_is_the_systems_moved_by_its_skew() {
        let ahead = Clock::skewed(chrono::Duration::seconds(2));
        let (before, skewed, after) = (Utc::now(), ahead.now(), Utc::now());
        assert!(skewed >= before + chrono::Duration::seconds(2));
        assert!(skewed <= after + chrono::Duration::seconds(2));
        assert_eq!(format!("{ahead:?}"), "Clock::skewed(2000 ms)");
    }

    #[tokio::test]
    async fn a_sleep_until_a_time_that_passed_returns_at_once() {
        let clock = Clock::manual(start());
        clock
            .sleep_until(
                start() - chrono::Duration::seconds(1),
                Duration::from_secs(5),
            )
            .await;
    }
}
