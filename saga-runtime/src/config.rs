//! Configuration from environment variables, with defaults for a local run. Read once at start
//! and validated there, so a typo fails loudly instead of half-working.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, bail};

/// Settings every service shares.
#[derive(Debug, Clone)]
pub struct Config {
    /// Service name, e.g. `order-service`; the `app` label of metrics.
    pub app: &'static str,
    pub http_addr: SocketAddr,
    pub database_url: String,
    pub kafka: KafkaConfig,
    /// Test-only crash point: abort right after committing the handling of this event type.
    pub crash_after_commit: Option<String>,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: String,
    pub topic: String,
    /// Where unreadable or invalid events are set aside.
    pub dead_letter_topic: String,
    /// Partitions of the topic when this service has to create it.
    pub partitions: i32,
    pub group_id: String,
    /// Static group membership: a restarted instance with the same id gets its partitions back
    /// at once instead of after the session timeout. Unique per running instance.
    pub group_instance_id: Option<String>,
    /// Any librdkafka setting, from `RDKAFKA_SOME_SETTING=value` → `some.setting=value`.
    pub extra: Vec<(String, String)>,
}

impl Config {
    /// Reads the shared settings. `DATABASE_URL` wins; otherwise the database is `database`
    /// on the server of `PG_URL`, which lets one variable serve every service.
    pub fn from_env(app: &'static str, default_port: u16, database: &str) -> anyhow::Result<Self> {
        let port = env_or("PORT", default_port)?;
        let host = env_or("HOST", "0.0.0.0".to_string())?;
        let http_addr = format!("{host}:{port}")
            .parse()
            .with_context(|| format!("HOST/PORT do not form an address: {host}:{port}"))?;
        let database_url = match std::env::var("DATABASE_URL") {
            Ok(url) => url,
            Err(_) => {
                let server = env_or("PG_URL", "postgres://saga:saga@127.0.0.1:5432".to_string())?;
                format!("{}/{database}", server.trim_end_matches('/'))
            }
        };
        let topic = env_or("KAFKA_TOPIC", "choreography.deadline".to_string())?;
        let group_prefix = env_or("KAFKA_GROUP_PREFIX", String::new())?;
        let partitions = env_or("KAFKA_PARTITIONS", 6)?;
        if partitions < 1 {
            bail!("KAFKA_PARTITIONS must be at least 1");
        }
        let extra = std::env::vars()
            .filter_map(|(key, value)| {
                let setting = key.strip_prefix("RDKAFKA_")?;
                Some((setting.to_lowercase().replace('_', "."), value))
            })
            .collect();
        Ok(Config {
            app,
            http_addr,
            database_url,
            kafka: KafkaConfig {
                bootstrap: env_or("KAFKA_BOOTSTRAP", "127.0.0.1:9092".to_string())?,
                dead_letter_topic: env_or("KAFKA_DEAD_LETTER_TOPIC", format!("{topic}.DLT"))?,
                topic,
                partitions,
                group_id: format!("{group_prefix}{app}"),
                group_instance_id: std::env::var("KAFKA_GROUP_INSTANCE_ID")
                    .ok()
                    .filter(|id| !id.is_empty()),
                extra,
            },
            crash_after_commit: std::env::var("FAULT_CRASH_AFTER_COMMIT").ok(),
        })
    }
}

/// Reads `name`, parsing it, or gives `default` when it is unset or empty.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={text:?} is not valid: {e}")),
        _ => Ok(default),
    }
}

/// Reads a duration given in milliseconds.
pub fn env_millis(name: &str, default: Duration) -> anyhow::Result<Duration> {
    let millis = env_or(name, default.as_millis() as u64)?;
    Ok(Duration::from_millis(millis))
}
