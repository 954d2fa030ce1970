//! The demo's fault hooks (SPEC §4 rule 10): `currencyId=100` makes the exchange wait before
//! its expiry check, `currencyId=200` after it. They show that a slow step cannot break the
//! saga: the wait before the check ends in an ignored, expired event; the wait after it ends in
//! the guarded write refusing an exchange whose deadline passed meanwhile.

use std::time::Duration;

use saga_runtime::config::{env_millis, env_or};

#[derive(Debug, Clone)]
pub struct FaultHooks {
    enabled: bool,
    before_check: Duration,
    after_check: Duration,
}

impl FaultHooks {
    /// `FAULT_HOOKS=off` switches them off; `FAULT_DELAY_BEFORE_CHECK_MS` and
    /// `FAULT_DELAY_AFTER_CHECK_MS` set the waits (10 s each by default).
    pub fn from_env() -> anyhow::Result<Self> {
        let switch: String = env_or("FAULT_HOOKS", "on".to_string())?;
        Ok(FaultHooks {
            enabled: !matches!(switch.to_lowercase().as_str(), "off" | "false" | "0" | "no"),
            before_check: env_millis("FAULT_DELAY_BEFORE_CHECK_MS", Duration::from_secs(10))?,
            after_check: env_millis("FAULT_DELAY_AFTER_CHECK_MS", Duration::from_secs(10))?,
        })
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
