//! Kafka as the tests use it: a topic of each test's own, publishing as a service would, and
//! reading a topic to its end (with [`harness::topic`], which the tools read with too).

use std::time::Duration;

use anyhow::Context;
use harness::topic::{Marks, Topic};
use rdkafka::{
    ClientConfig, Message,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;

use crate::Stack;

/// Partitions of each test's topic.
pub const PARTITIONS: i32 = 4;

pub(crate) async fn create_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    saga_runtime::testing::create_topic(bootstrap, topic, PARTITIONS).await
}

/// Publishes `payload` under `key`, with a `type` header when given, as the services' relays
/// do.
pub(crate) async fn publish(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &str,
    event_type: Option<&str>,
) -> anyhow::Result<()> {
    let mut record = FutureRecord::to(topic).key(key).payload(payload);
    if let Some(event_type) = event_type {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: "type",
            value: Some(event_type),
        }));
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .with_context(|| format!("publishing to {topic}"))?;
    Ok(())
}

/// Reads a topic from the beginning to its current end: each message's JSON, or its text as a
/// JSON string when it is not JSON.
pub async fn read_topic(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<Value>> {
    let topic = Topic {
        bootstrap: bootstrap.to_string(),
        name: topic.to_string(),
    };
    tokio::task::spawn_blocking(move || {
        topic.read_messages_since(&Marks::new(), |message| {
            let text = String::from_utf8_lossy(message.payload()?);
            Some(serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned())))
        })
    })
    .await?
}

impl Stack {
    /// Publishes a message to the stack's topic, with a `type` header when given.
    pub async fn publish(
        &self,
        key: &str,
        payload: &str,
        event_type: Option<&str>,
    ) -> anyhow::Result<()> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.servers.kafka)
            .create()?;
        publish(&producer, &self.topic, key, payload, event_type).await
    }

    /// Publishes `event` again, as the relay would have: keyed by its order, with its type.
    pub async fn republish(&self, event: &Value) -> anyhow::Result<()> {
        self.publish(
            &event["orderId"].to_string(),
            &event.to_string(),
            event["eventType"].as_str(),
        )
        .await
    }

    /// Every event of the stack's topic published so far, in order per partition.
    pub async fn events(&self) -> anyhow::Result<Vec<Value>> {
        read_topic(&self.servers.kafka, &self.topic).await
    }

    /// The event types of one saga, in the order they were published.
    pub async fn saga_events(&self, order_id: i64) -> anyhow::Result<Vec<String>> {
        Ok(self
            .events()
            .await?
            .into_iter()
            .filter(|event| event["orderId"] == order_id)
            .filter_map(|event| event["eventType"].as_str().map(String::from))
            .collect())
    }

    /// Every message on the stack's dead-letter topic.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<Value>> {
        read_topic(&self.servers.kafka, &format!("{}.DLT", self.topic)).await
    }
}
