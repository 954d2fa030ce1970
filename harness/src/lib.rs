//! What the end-to-end tests (`e2e-tests`) and the tools (`loadtest`'s chaos run and benchmark)
//! share, so that each is written once: the servers a stack runs against ([`Servers`]), the saga
//! as the public API shows it ([`api`]), reading the saga topic ([`topic`]), the invariants of
//! SPEC §4 judged on what those show, with exact decimals ([`invariants`]), the local stack's
//! ports ([`ports`]), the seed's walkthrough ([`walkthrough`]), the servers and processes a
//! stack runs on ([`kafka_server`], [`postgres_server`], [`process`]), the local stack the
//! scripts run with them ([`local`]) and waiting with a time limit ([`wait`]).

use std::path::{Path, PathBuf};

pub mod api;
pub mod invariants;
pub mod kafka_server;
pub mod local;
pub mod network;
pub mod ports;
pub mod postgres_server;
pub mod process;
pub mod topic;
pub mod wait;
pub mod walkthrough;

/// The repository this crate was built from: its scripts, its `kafka/` configuration and its
/// `.local/`.
pub fn repository() -> PathBuf {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR"));
    harness.parent().unwrap_or(harness).to_path_buf()
}

/// The Kafka broker and PostgreSQL server a stack runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Servers {
    /// Kafka's bootstrap servers, as `KAFKA_BOOTSTRAP` takes them.
    pub kafka: String,
    /// A server URL without a database, as `PG_URL` takes it.
    pub postgres: String,
}

impl Servers {
    /// Those `KAFKA_BOOTSTRAP` and `PG_URL` name (as `scripts/infra` exports them), or the
    /// local servers `scripts/infra up` starts.
    pub fn from_env() -> Servers {
        Servers {
            kafka: env_or("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            postgres: env_or("PG_URL", "postgres://saga:saga@127.0.0.1:5432"),
        }
    }

    /// These servers with another Kafka broker.
    pub fn with_kafka(self, kafka: String) -> Servers {
        Servers { kafka, ..self }
    }

    /// These servers with another PostgreSQL server.
    pub fn with_postgres(self, postgres: String) -> Servers {
        Servers { postgres, ..self }
    }
}

/// An environment variable, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_string())
}
