//! Test support: the Kafka and PostgreSQL the tests run against (`KAFKA_BOOTSTRAP` and
//! `PG_URL`, the local ones by default), a scratch database per test, a topic per test, and a
//! handler with a few saga rules for the consumer's tests.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use anyhow::Context;
use chrono::Utc;
use common_events::{Envelope, Event, EventType, OrderId};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};
use sqlx::{PgConnection, PgPool, migrate::Migrator};
use uuid::Uuid;

use crate::{EventHandler, Outcome, config::DatabaseConfig, db};

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
