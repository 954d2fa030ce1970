//! Test support: the Kafka and PostgreSQL the tests run against (`KAFKA_BOOTSTRAP` and
//! `PG_URL`, the local ones by default), a scratch database per test, a topic per test, and a
//! handler with a few saga rules for the consumer's tests.

use std::time::Duration;

use anyhow::Context;
use harness::Servers;
use sqlx::{PgPool, migrate::Migrator};

use crate::{config::DatabaseConfig, db};

pub fn kafka() -> String {
    Servers::from_env().kafka
}

fn postgres() -> String {
    Servers::from_env().postgres
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates `topic` with `partitions` on the broker at `bootstrap`.
pub use harness::topic::create as create_topic;

/// A database of its own, migrated, dropped with it.
pub struct ScratchDb {
    pub pool: PgPool,
    pub url: String,
    pub name: String,
}

impl ScratchDb {
    /// A database with the runtime's tables (outbox and inbox) only.
    pub async fn create() -> anyhow::Result<ScratchDb> {
        ScratchDb::migrated("test_runtime", &Migrator::DEFAULT).await
    }

    /// A database named after `prefix`, with the runtime's tables and `migrations`.
    pub async fn migrated(prefix: &str, migrations: &Migrator) -> anyhow::Result<ScratchDb> {
        let name = unique(prefix);
        let config = DatabaseConfig {
            url: format!("{}/{name}", postgres()),
            max_connections: 5,
            statement_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(10),
        };
        let pool = db::connect(&config, migrations)
            .await
            .context("cannot create a scratch database")?;
        Ok(ScratchDb {
            pool,
            url: config.url,
            name,
        })
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        drop_databases(postgres(), vec![self.name.clone()]);
    }
}

/// Drops `databases` on the server at `postgres` (a URL without a database), ending the
/// sessions still connected to them. It is called from `Drop`, which runs inside the test's
/// runtime: the clean-up gets a thread and a runtime of its own, and leaves the connections of
/// the blocked runtime to `WITH (FORCE)`. A failure is ignored: the databases' names are
/// unique, so one left behind disturbs no other test.
pub fn drop_databases(postgres: String, databases: Vec<String>) {
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let admin = PgPool::connect(&format!("{postgres}/postgres")).await?;
            for database in databases {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                )))
                .execute(&admin)
                .await?;
            }
            anyhow::Ok(())
        })
    })
    .join();
}

/// A handler with a few saga rules, for the consumer's tests.
#[cfg(test)]
pub(crate) mod rules {
    use std::{collections::HashMap, sync::Mutex};

    use chrono::Utc;
    use common_events::{Envelope, Event, EventType, OrderId};
    use sqlx::PgConnection;
    use uuid::Uuid;

    use crate::{EventHandler, Outcome};

    /// Places an order on `OrderCreated`, ignores `DeadlineReached`, fails on anything else;
    /// remembers the order in which each saga's events were handled.
    #[derive(Default)]
    pub struct Handler {
        pub handled: Mutex<HashMap<OrderId, Vec<Uuid>>>,
    }

    impl EventHandler for Handler {
        const CONSUMES: &'static [EventType] = &[
            EventType::OrderCreated,
            EventType::DeadlineReached,
            EventType::OrderRejected,
        ];

        async fn handle(
            &self,
            _conn: &mut PgConnection,
            events: &[&Envelope],
        ) -> anyhow::Result<Vec<Outcome>> {
            let outcomes = events
                .iter()
                .map(|event| match event.event {
                    Event::OrderCreated { .. } => Ok(Outcome::Applied(Some(Event::OrderPlaced))),
                    Event::DeadlineReached => Ok(Outcome::Ignored("late")),
                    _ => anyhow::bail!("no rule for {}", event.event.event_type()),
                })
                .collect::<anyhow::Result<_>>()?;
            let mut handled = self.handled.lock().unwrap();
            for event in events {
                handled
                    .entry(event.order_id)
                    .or_default()
                    .push(event.event_id);
            }
            Ok(outcomes)
        }
    }

    /// An `OrderCreated` of `order_id`, its deadline now.
    pub fn created(order_id: OrderId) -> Envelope {
        let event = Event::OrderCreated {
            holder_id: "jjy".into(),
            currency_id: None,
            amount: 500.into(),
        };
        Envelope::new(order_id, Utc::now(), event)
    }
}
