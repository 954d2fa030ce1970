//! Configuration, read once at start and validated there, so a typo fails loudly instead of
//! half-working. Every variable the runtime understands is read in [`Config::from_vars`], from a
//! map of variables: the process environment in `main`, a map of the test's in tests.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use anyhow::{Context, bail};

use crate::{clock::Clock, retry::Backoff};

/// Settings every service shares.
#[derive(Debug, Clone)]
pub struct Config {
    /// Service name, e.g. `order-service`; the `app` label of metrics.
    pub app: &'static str,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub consumer: ConsumerConfig,
    pub retention: RetentionConfig,
    pub log_format: LogFormat,
    /// How long a stopping process may take, from SIGTERM to its exit, before it exits
    /// anyway: whatever it had not committed is redone after its restart.
    pub shutdown_timeout: Duration,
    /// Test-only crash point: abort right after committing the handling of this event type.
    pub crash_after_commit: Option<String>,
    /// The time the service decides by: the system's (moved by `FAULT_CLOCK_SKEW_MS`, 0 unless
    /// set, as on a host whose clock is off), or a test's manual clock.
    pub clock: Clock,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// A request that takes longer is answered 503.
    pub timeout: Duration,
    /// Requests handled at once; more are answered 503 at once instead of queueing.
    pub max_concurrency: usize,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    /// Longest a statement (its waits for locks included) may take before it fails.
    pub statement_timeout: Duration,
    /// Longest a transaction may wait between two statements before PostgreSQL ends it.
    pub idle_in_transaction_timeout: Duration,
}

/// How long rows that record the past are kept, and how often they are pruned (see
/// [`crate::retention`]).
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub keep: Duration,
    pub every: Duration,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap: String,
    pub topic: String,
    /// Where events that cannot be applied are set aside.
    pub dead_letter_topic: String,
    /// Partitions of the topic when this service has to create it.
    pub partitions: i32,
    pub group_id: String,
    /// Any librdkafka setting, from `RDKAFKA_SOME_SETTING=value` → `some.setting=value`.
    pub extra: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Attempts at an event whose handling keeps failing before it is set aside. Failures of
    /// the infrastructure (the database unreachable) are not counted: they are retried forever.
    pub max_attempts: u32,
    /// Waits between attempts, doubling from `initial` up to `max`.
    pub retry: Backoff,
    /// The most events applied in one database transaction.
    pub batch_size: usize,
    /// Events fetched but not yet applied: back-pressure for slow handlers.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env(app: &'static str, default_port: u16, database: &str) -> anyhow::Result<Self> {
        Self::from_vars(app, default_port, database, &Vars::from_env())
    }

    /// Reads the settings from `vars`. `DATABASE_URL` wins; otherwise the database is
    /// `database` on the server of `PG_URL`, which lets one variable serve every service.
    pub fn from_vars(
        app: &'static str,
        default_port: u16,
        database: &str,
        vars: &Vars,
    ) -> anyhow::Result<Self> {
        let url = match vars.get("DATABASE_URL") {
            Some(url) => url,
            None => {
                let server: String =
                    vars.parse("PG_URL", "postgres://saga:saga@127.0.0.1:5432".to_string())?;
                format!("{}/{database}", server.trim_end_matches('/'))
            }
        };
        let topic: String = vars.parse("KAFKA_TOPIC", "choreography.deadline".to_string())?;
        let group_prefix: String = vars.parse("KAFKA_GROUP_PREFIX", String::new())?;
        let partitions = vars.parse("KAFKA_PARTITIONS", 6)?;
        if partitions < 1 {
            bail!("KAFKA_PARTITIONS must be at least 1");
        }
        let consumer = ConsumerConfig {
            max_attempts: vars.parse("EVENT_MAX_ATTEMPTS", 5)?,
            retry: Backoff {
                initial: vars.millis("EVENT_RETRY_BACKOFF_MS", Duration::from_millis(100))?,
                max: Duration::from_secs(5),
            },
            batch_size: vars.parse("CONSUMER_BATCH_SIZE", 64)?,
            max_in_flight: vars.parse("CONSUMER_MAX_IN_FLIGHT", 1024)?,
        };
        if consumer.max_attempts < 1 || consumer.batch_size < 1 || consumer.max_in_flight < 1 {
            bail!(
                "EVENT_MAX_ATTEMPTS, CONSUMER_BATCH_SIZE and CONSUMER_MAX_IN_FLIGHT must be at least 1"
            );
        }
        Ok(Config {
            app,
            http: HttpConfig::from_vars(vars, default_port)?,
            database: DatabaseConfig {
                url,
                max_connections: vars.parse("DATABASE_MAX_CONNECTIONS", 20)?,
                statement_timeout: vars
                    .millis("DATABASE_STATEMENT_TIMEOUT_MS", Duration::from_secs(10))?,
                idle_in_transaction_timeout: vars.millis(
                    "DATABASE_IDLE_TRANSACTION_TIMEOUT_MS",
                    Duration::from_secs(2),
                )?,
            },
            retention: RetentionConfig {
                keep: Duration::from_secs(3600 * vars.parse("RETENTION_HOURS", 8 * 24)?),
                every: vars.millis("PRUNE_INTERVAL_MS", Duration::from_secs(3600))?,
            },
            kafka: KafkaConfig {
                bootstrap: vars.parse("KAFKA_BOOTSTRAP", "127.0.0.1:9092".to_string())?,
                dead_letter_topic: vars.parse("KAFKA_DEAD_LETTER_TOPIC", format!("{topic}.DLT"))?,
                topic,
                partitions,
                group_id: format!("{group_prefix}{app}"),
                extra: vars.rdkafka_settings(),
            },
            consumer,
            log_format: LogFormat::from_vars(vars)?,
            shutdown_timeout: shutdown_timeout(vars)?,
            crash_after_commit: vars.get("FAULT_CRASH_AFTER_COMMIT"),
            clock: Clock::skewed(chrono::Duration::milliseconds(
                vars.parse("FAULT_CLOCK_SKEW_MS", 0)?,
            )),
        })
    }
}

impl HttpConfig {
    /// `HOST` and `PORT` (default `default_port`), `HTTP_TIMEOUT_MS`, `HTTP_MAX_CONCURRENCY` and
    /// `HTTP_MAX_BODY_BYTES`.
    pub fn from_vars(vars: &Vars, default_port: u16) -> anyhow::Result<Self> {
        let port: u16 = vars.parse("PORT", default_port)?;
        let host: String = vars.parse("HOST", "0.0.0.0".to_string())?;
        Ok(HttpConfig {
            addr: format!("{host}:{port}")
                .parse()
                .with_context(|| format!("HOST/PORT do not form an address: {host}:{port}"))?,
            timeout: vars.millis("HTTP_TIMEOUT_MS", Duration::from_secs(10))?,
            max_concurrency: vars.parse("HTTP_MAX_CONCURRENCY", 512)?,
            max_body_bytes: vars.parse("HTTP_MAX_BODY_BYTES", 64 * 1024)?,
        })
    }
}

/// `SHUTDOWN_TIMEOUT_MS`: how long a process may take from SIGTERM to its exit (10 s), for
/// the services and the gateway alike.
pub fn shutdown_timeout(vars: &Vars) -> anyhow::Result<Duration> {
    vars.millis("SHUTDOWN_TIMEOUT_MS", Duration::from_secs(10))
}

impl LogFormat {
    /// `LOG_FORMAT`: `text` (the default) or `json`.
    pub fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        match vars.get("LOG_FORMAT").map(|f| f.to_lowercase()).as_deref() {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => bail!("LOG_FORMAT={other:?} is not valid: text or json"),
        }
    }
}

/// Configuration variables by name, with typed access; unset and blank are the same.
#[derive(Debug, Clone, Default)]
pub struct Vars(HashMap<String, String>);

impl Vars {
    pub fn from_env() -> Self {
        Vars(std::env::vars().collect())
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    }

    /// `RDKAFKA_SOME_SETTING=value` → (`some.setting`, `value`), sorted for a stable order.
    fn rdkafka_settings(&self) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = self
            .0
            .iter()
            .filter_map(|(key, value)| {
                let setting = key.strip_prefix("RDKAFKA_")?;
                Some((setting.to_lowercase().replace('_', "."), value.clone()))
            })
            .collect();
        settings.sort();
        settings
    }

    /// Reads `name`, parsing it, or gives `default` when it is unset or blank.
    pub fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            Some(text) => text
                .parse()
                .map_err(|e| anyhow::anyhow!("{name}={text:?} is not valid: {e}")),
            None => Ok(default),
        }
    }

    /// Reads a duration given in milliseconds.
    pub fn millis(&self, name: &str, default: Duration) -> anyhow::Result<Duration> {
        let millis = self.parse(name, default.as_millis() as u64)?;
        Ok(Duration::from_millis(millis))
    }

    /// Reads an on/off switch.
    pub fn switch(&self, name: &str, default: bool) -> anyhow::Result<bool> {
        match self.get(name).map(|text| text.to_lowercase()).as_deref() {
            None => Ok(default),
            Some("on" | "true" | "1" | "yes") => Ok(true),
            Some("off" | "false" | "0" | "no") => Ok(false),
            Some(other) => bail!("{name}={other:?} is not valid: on or off"),
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Vars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Vars(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let vars: Vars = vars.iter().copied().collect();
        Config::from_vars("order-service", 8081, "saga_order", &vars)
    }

    #[test]
    fn defaults_serve_a_local_run() {
        let config = config(&[]).unwrap();
        assert_eq!(config.http.addr.to_string(), "0.0.0.0:8081");
        assert_eq!(
            config.database.url,
            "postgres://saga:saga@127.0.0.1:5432/saga_order"
        );
        assert_eq!(config.kafka.topic, "choreography.deadline");
        assert_eq!(config.kafka.dead_letter_topic, "choreography.deadline.DLT");
        assert_eq!(config.kafka.group_id, "order-service");
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn one_server_url_names_each_services_database_unless_a_full_url_is_given() {
        let server = config(&[("PG_URL", "postgres://u:p@db:5432/")]).unwrap();
        assert_eq!(server.database.url, "postgres://u:p@db:5432/saga_order");
        let full = config(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("PG_URL", "postgres://z"),
        ]);
        assert_eq!(full.unwrap().database.url, "postgres://x/y");
    }

    #[test]
    fn bad_values_are_named_in_the_error() {
        for (name, value) in [
            ("PORT", "eighty"),
            ("KAFKA_PARTITIONS", "0"),
            ("EVENT_MAX_ATTEMPTS", "0"),
            ("LOG_FORMAT", "xml"),
            ("HTTP_TIMEOUT_MS", "-1"),
        ] {
            let error = config(&[(name, value)]).unwrap_err().to_string();
            assert!(error.contains(name), "{name}: {error}");
        }
    }

    #[test]
    fn rdkafka_variables_become_librdkafka_settings() {
        let config = config(&[("RDKAFKA_SECURITY_PROTOCOL", "ssl"), ("PATH", "/bin")]).unwrap();
        assert_eq!(
            config.kafka.extra,
            [("security.protocol".to_string(), "ssl".to_string())]
        );
    }
}
