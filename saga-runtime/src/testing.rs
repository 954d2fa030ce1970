//! Test support: the Kafka and PostgreSQL the tests run against (`KAFKA_BOOTSTRAP` and
//! `PG_URL`, the local ones by default), a scratch database per test, and a topic per test.

use std::time::Duration;

use anyhow::Context;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};
use sqlx::{PgPool, migrate::Migrator};

use crate::{config::DatabaseConfig, db};

pub fn kafka() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn postgres() -> String {
    std::env::var("PG_URL").unwrap_or_else(|_| "postgres://saga:saga@127.0.0.1:5432".into())
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates `topic` with `partitions`.
pub async fn create_topic(topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    for result in admin.create_topics(&topics, &options).await? {
        result.map_err(|(topic, code)| anyhow::anyhow!("cannot create {topic}: {code}"))?;
    }
    Ok(())
}

/// A database of its own with the runtime's tables (outbox and inbox), dropped with it.
pub struct ScratchDb {
    pub pool: PgPool,
    pub url: String,
    name: String,
}

impl ScratchDb {
    pub async fn create() -> anyhow::Result<ScratchDb> {
        let name = unique("test_runtime");
        let config = DatabaseConfig {
            url: format!("{}/{name}", postgres()),
            max_connections: 5,
            statement_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(10),
        };
        let pool = db::connect(&config, &Migrator::DEFAULT)
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
        let name = self.name.clone();
        // Drop runs inside the test's runtime: the clean-up gets a thread and runtime of its
        // own, and DROP ... WITH (FORCE) ends the pool's connections.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let admin = PgPool::connect(&format!("{}/postgres", postgres())).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&admin)
                .await?;
                anyhow::Ok(())
            })
        })
        .join();
    }
}
