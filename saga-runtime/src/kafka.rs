//! Kafka clients configured once: an idempotent producer (`acks=all`), a consumer that never
//! stores offsets by itself, and topic creation for a fresh broker. Settings given as
//! `RDKAFKA_*` variables are applied last, so they override these defaults.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::{ClientContext, DefaultClientContext},
    config::FromClientConfig,
    consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer},
    producer::FutureProducer,
    types::RDKafkaErrorCode,
};

use crate::config::KafkaConfig;

fn settings(config: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap);
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in &config.extra {
        client.set(key, value);
    }
    client
}

fn client<T: FromClientConfig>(
    config: &KafkaConfig,
    defaults: &[(&str, &str)],
) -> anyhow::Result<T> {
    settings(config, defaults)
        .create()
        .with_context(|| format!("cannot create Kafka client for {}", config.bootstrap))
}

/// Whether the consumer has joined its group and been given its share of the partitions;
/// `/readyz` reports it, since a service that has not joined yet consumes nothing.
#[derive(Clone, Default)]
pub struct GroupMembership(Arc<AtomicBool>);

impl GroupMembership {
    pub fn joined(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The consumer's callbacks: records when the group has given it partitions.
pub struct ConsumerEvents(GroupMembership);

impl ClientContext for ConsumerEvents {}

impl ConsumerContext for ConsumerEvents {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.0.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Idempotence keeps retries from duplicating or reordering a partition's messages.
pub fn producer(config: &KafkaConfig) -> anyhow::Result<FutureProducer> {
    client(
        config,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "1"),
            ("message.timeout.ms", "10000"),
        ],
    )
}

/// Offsets are stored by the consumer loop only after the database commit; the background
/// committer then commits what was stored (the at-least-once pattern of rust-rdkafka).
pub fn consumer(
    config: &KafkaConfig,
    membership: GroupMembership,
) -> anyhow::Result<StreamConsumer<ConsumerEvents>> {
    let mut settings = vec![
        ("group.id", config.group_id.as_str()),
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "500"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("session.timeout.ms", "10000"),
        ("fetch.wait.max.ms", "10"),
    ];
    if let Some(instance) = &config.group_instance_id {
        settings.push(("group.instance.id", instance));
    }
    self::settings(config, &settings)
        .create_with_context(ConsumerEvents(membership))
        .with_context(|| format!("cannot create Kafka consumer for {}", config.bootstrap))
}

/// Creates the saga topic and the dead-letter topic if they are missing.
pub async fn ensure_topics(config: &KafkaConfig) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(config, &[])?;
    let topics = [
        NewTopic::new(&config.topic, config.partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&config.dead_letter_topic, 1, TopicReplication::Fixed(1)),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .with_context(|| format!("cannot reach Kafka at {}", config.bootstrap))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(())
}
