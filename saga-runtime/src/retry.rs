//! Waiting between attempts, written once for every loop that retries: the consumer's fetches,
//! the handling of an event, the dead-letter producer, the outbox relay and the deadline timer.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff: `initial` after the first failure, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// 100 ms doubling up to 1 s: for infrastructure that is down and will come back. One
    /// attempt a second costs a down server nothing, and a longer wait would hold sagas up
    /// after it is back.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };

    /// The wait after the `failures`-th failure in a row (the first is 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }

    /// A fresh count of failures in a row, for one loop.
    pub fn start(self) -> Failures {
        Failures {
            backoff: self,
            count: 0,
        }
    }
}

/// Failures in a row of one retrying loop, and the wait they call for.
#[derive(Debug)]
pub struct Failures {
    backoff: Backoff,
    count: u32,
}

impl Failures {
    /// Counts a failure and waits as long as the backoff says; `false` if `shutdown` came
    /// first, when the caller should give up.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        self.count += 1;
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(self.backoff.delay(self.count)) => true,
        }
    }

    /// After a success: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.count = 0;
    }

    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_maximum() {
        let delays: Vec<u64> = (1..=6)
            .map(|n| Backoff::DEFAULT.delay(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(Backoff::DEFAULT.delay(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_wait_until_shutdown_and_start_over_after_a_success() {
        let shutdown = CancellationToken::new();
        let mut failures = Backoff::DEFAULT.start();
        let started = tokio::time::Instant::now();
        assert!(failures.wait(&shutdown).await);
        assert!(failures.wait(&shutdown).await);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        failures.reset();
        assert_eq!(failures.count(), 0);
        shutdown.cancel();
        assert!(!failures.wait(&shutdown).await, "shutdown ends the wait");
    }
}
