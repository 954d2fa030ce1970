//! The demo's fault hooks (saga-rules §4 rule 10): `currencyId=100` makes the exchange wait before
//! its expiry check, `currencyId=200` after it. They show that a slow step cannot break the
//! saga: the wait before the check ends in an ignored, expired event; the wait after it ends in
//! the guarded write refusing an exchange whose deadline passed meanwhile.
//!
//! The wait before the check runs before the event's transaction, holding nothing. The wait
//! after it is, by its purpose, inside the transaction, between the check and the write, so each
//! `currencyId=200` order holds one database connection while it waits.

use std::time::Duration;

use saga_runtime::config::Vars;

#[derive(Debug, Clone)]
pub struct FaultHooks {
    enabled: bool,
    before_check: Duration,
    after_check: Duration,
}

impl FaultHooks {
    /// Off unless `FAULT_HOOKS=on`: a client could otherwise make the exchange hold a
    /// database connection for 10 s with one order. `FAULT_DELAY_BEFORE_CHECK_MS` and
    /// `FAULT_DELAY_AFTER_CHECK_MS` set the waits (10 s each by default).
    pub fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        Ok(FaultHooks {
            enabled: vars.switch("FAULT_HOOKS", false)?,
            before_check: vars.millis("FAULT_DELAY_BEFORE_CHECK_MS", Duration::from_secs(10))?,
            after_check: vars.millis("FAULT_DELAY_AFTER_CHECK_MS", Duration::from_secs(10))?,
        })
    }

    /// Whether an order of `currency_id` waits in a hook.
    pub fn applies_to(&self, currency_id: Option<&str>) -> bool {
        let waits = |trigger, delay: Duration| currency_id == Some(trigger) && !delay.is_zero();
        self.enabled && (waits("100", self.before_check) || waits("200", self.after_check))
    }

    pub async fn before_check(&self, currency_id: Option<&str>) {
        self.wait(currency_id, "100", self.before_check, "before")
            .await;
    }

    pub async fn after_check(&self, currency_id: Option<&str>) {
        self.wait(currency_id, "200", self.after_check, "after")
            .await;
    }

    async fn wait(&self, currency_id: Option<&str>, trigger: &str, delay: Duration, when: &str) {
        if self.enabled && currency_id == Some(trigger) && !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "fault hook: waiting {when} the expiry check"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn hooks(enabled: bool) -> FaultHooks {
        FaultHooks {
            enabled,
            before_check: Duration::from_secs(10),
            after_check: Duration::from_secs(3),
        }
    }

    /// How long each hook waited for an order of `currency_id`, on tokio's paused clock.
    async fn waited(hooks: &FaultHooks, currency_id: Option<&str>) -> (Duration, Duration) {
        let start = Instant::now();
        hooks.before_check(currency_id).await;
        let before = start.elapsed();
        hooks.after_check(currency_id).await;
        (before, start.elapsed() - before)
    }

    #[tokio::test(start_paused = true)]
    async fn currency_100_waits_before_the_check_and_200_after_it() {
        let hooks = hooks(true);
        let (ten, three) = (Duration::from_secs(10), Duration::from_secs(3));
        assert_eq!(waited(&hooks, Some("100")).await, (ten, Duration::ZERO));
        assert_eq!(waited(&hooks, Some("200")).await, (Duration::ZERO, three));
    }

    #[test]
    fn only_hooked_orders_are_said_to_wait() {
        let on = hooks(true);
        assert!(on.applies_to(Some("100")) && on.applies_to(Some("200")));
        assert!(!on.applies_to(Some("1")) && !on.applies_to(None));
        assert!(!hooks(false).applies_to(Some("100")));
    }

    #[test]
    fn the_hooks_are_off_unless_switched_on() {
        let vars = |pairs: &[(&str, &str)]| pairs.iter().copied().collect::<Vars>();
        let off = FaultHooks::from_vars(&vars(&[])).unwrap();
        assert!(!off.applies_to(Some("100")) && !off.applies_to(Some("200")));
        let on = FaultHooks::from_vars(&vars(&[("FAULT_HOOKS", "on")])).unwrap();
        assert!(on.applies_to(Some("100")) && on.applies_to(Some("200")));
    }

    #[tokio::test(start_paused = true)]
    async fn other_orders_and_switched_off_hooks_never_wait() {
        let none = (Duration::ZERO, Duration::ZERO);
        for currency_id in [Some("1"), None] {
            assert_eq!(waited(&hooks(true), currency_id).await, none);
        }
        for currency_id in [Some("100"), Some("200")] {
            assert_eq!(waited(&hooks(false), currency_id).await, none);
        }
    }
}
