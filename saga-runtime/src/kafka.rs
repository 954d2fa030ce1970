//! Kafka clients configured once: an idempotent producer (`acks=all`) that replaces itself after
//! a fatal error, the consumer's settings (it never stores offsets by itself), and topic
//! creation for a fresh broker. Settings given as `RDKAFKA_*` variables are applied last, so
//! they override these defaults.

use std::{
    sync::{
        RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, Producer as _},
    types::RDKafkaErrorCode,
};

use crate::{config::KafkaConfig, metrics::Metrics};

pub fn settings(config: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap);
    // librdkafka waits up to 10 s between reconnects by default: after a broker restart, clients
    // would come back that much later than the broker.
    client.set("reconnect.backoff.max.ms", "1000");
    // When a broker of a cluster dies, stalls or is cut off, the controller moves the leadership
    // of its partitions to the others within about 2 s (kafka/server.properties); clients must
    // follow within the saga's deadline. A request unanswered for 2 s fails (60 s by default),
    // so that a client gives up on a stalled broker, and clients read the partitions' leaders
    // every second (every 5 minutes by default), so that they find the new ones even when the
    // old one never answers. Measured at 200 sagas/s on three brokers: the busiest leader
    // paused for 10 s cost 395 sagas before, 0 or 1 after; killed for good, 84 before, 0 after.
    client.set("socket.timeout.ms", "2000");
    client.set("topic.metadata.refresh.interval.ms", "1000");
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in &config.extra {
        client.set(key, value);
    }
    client
}

/// The consumer's settings. Offsets are stored by the consumer loop only after the database
/// commit; the background committer then commits what was stored (the at-least-once pattern of
/// rust-rdkafka).
pub fn consumer_settings(config: &KafkaConfig) -> ClientConfig {
    let mut defaults = vec![
        ("group.id", config.group_id.as_str()),
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "500"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        // The broker answers a fetch as soon as data arrives, so a long wait adds no latency;
        // it only bounds how often an idle consumer asks, and every ask costs the broker CPU
        // whether or not it brings anything.
        ("fetch.wait.max.ms", "500"),
        // Under load, that answer comes as soon as any relay publishes anything, so each
        // consumer would fetch a few events at a time, hundreds of times a second, and the
        // broker's CPU would go into requests rather than events. Instead, a fetch that brought
        // events is followed by a pause of 10 ms before the next one (librdkafka backs off while
        // its queue holds a message, and it always does right after a fetch): a busy consumer
        // fetches at most about 100 times a second, and its batches grow, which is cheaper per
        // saga for the broker and for the consumer's batched transactions. An idle one still
        // waits at the broker, so the first event after a quiet spell comes at once, and idling
        // costs nothing more.
        ("queued.min.messages", "1"),
        ("fetch.queue.backoff.ms", "10"),
        // Each second the consumer learns from these whether it is in its group (see
        // `consumer::group::Membership`).
        ("statistics.interval.ms", "1000"),
    ];
    // Failover: a member that stops heartbeating (killed, paused) loses its partitions to the
    // others after its session, 2 s, well within a saga's 5 s deadline; one that stops leaves
    // the group at once. The broker must allow so short a session (`group.min.session.
    // timeout.ms`, 6 s by default, is 1 s in kafka/server.properties). Only the moved
    // partitions pause during a rebalance (cooperative-sticky). With the newer protocol
    // (`RDKAFKA_GROUP_PROTOCOL=consumer`) the broker sets all of this itself.
    let consumer_protocol = config
        .extra
        .iter()
        .any(|(key, value)| key == "group.protocol" && value == "consumer");
    if !consumer_protocol {
        defaults.extend([
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("session.timeout.ms", "2000"),
            ("heartbeat.interval.ms", "500"),
        ]);
    }
    settings(config, &defaults)
}

/// The idempotent producer every part of a service publishes with. Idempotence keeps retries
/// from duplicating or reordering a partition's messages. A delivery that failed replaces the
/// producer ([`Producer::failed`]): a fatal error (raised when librdkafka cannot keep the
/// idempotence promise) leaves it unusable, and one whose sends timed out against a paused
/// broker can stay wedged long after the broker is back, timing out every send. Whatever the
/// old one had not delivered is published again by its caller: the outbox keeps its rows until
/// Kafka has acknowledged them, and the consumers' inboxes absorb a copy the old one delivered
/// late.
pub struct Producer {
    config: KafkaConfig,
    current: RwLock<FutureProducer>,
    metrics: Metrics,
    /// The last delivery failed and none has succeeded since: `/readyz` says so.
    failing: AtomicBool,
}

impl Producer {
    pub fn new(config: &KafkaConfig, metrics: Metrics) -> anyhow::Result<Self> {
        Ok(Producer {
            config: config.clone(),
            current: RwLock::new(create_producer(config)?),
            metrics,
            failing: AtomicBool::new(false),
        })
    }

    /// The producer to send with now (a cheap handle).
    pub fn get(&self) -> FutureProducer {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn delivered(&self) {
        self.failing.store(false, Ordering::Relaxed);
    }

    /// After a failed delivery: replaces the producer, saying why.
    pub fn failed(&self) {
        self.failing.store(true, Ordering::Relaxed);
        let fatal = self.get().client().fatal_error();
        match create_producer(&self.config) {
            Ok(fresh) => {
                let Ok(mut current) = self.current.write() else {
                    return;
                };
                *current = fresh;
                drop(current);
                self.metrics.client_recreated("producer");
                match fatal {
                    Some((code, reason)) => tracing::warn!(
                        error.code = ?code,
                        error.message = reason,
                        "kafka producer recreated after a fatal error"
                    ),
                    None => tracing::warn!("kafka producer recreated after a failed delivery"),
                }
            }
            Err(error) => tracing::error!(
                error.message = format!("{error:#}"),
                "cannot recreate the kafka producer"
            ),
        }
    }

    /// Whether the producer can deliver, as far as it knows: not fatally broken, and its last
    /// delivery did not fail.
    pub fn healthy(&self) -> bool {
        !self.failing.load(Ordering::Relaxed) && self.get().client().fatal_error().is_none()
    }

    /// Whether the broker answers a metadata request within `timeout`.
    pub async fn broker_answers(&self, timeout: Duration) -> bool {
        let kafka = self.get();
        tokio::task::spawn_blocking(move || kafka.client().fetch_metadata(None, timeout).is_ok())
            .await
            .unwrap_or(false)
    }
}

fn create_producer(config: &KafkaConfig) -> anyhow::Result<FutureProducer> {
    settings(
        config,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "1"),
            // A send not acknowledged by the saga's deadline (5 s by default) is given up and
            // retried on a fresh producer: waiting longer only holds up the relay.
            ("message.timeout.ms", "5000"),
            // How long a broker may wait for the in-sync replicas before answering (30 s by
            // default); a send that timed out is retried, on the new leader if there is one.
            ("request.timeout.ms", "2000"),
        ],
    )
    .create()
    .with_context(|| format!("cannot create Kafka producer for {}", config.bootstrap))
}

/// The replication factor that asks for the brokers' `default.replication.factor`: the local
/// cluster sets it to its size (3 on three brokers, with `min.insync.replicas=2`), and a managed
/// cluster to what its operator chose.
const BROKER_DEFAULT: i32 = -1;

/// Creates the saga topic and the dead-letter topic if they are missing, and returns how long
/// the saga topic may keep an event: `None` if for ever.
///
/// Kafka deletes whole segments, once the newest event of one is older than `retention.ms`;
/// a segment is closed after `segment.ms`. So an event may stay up to the sum of the two. A
/// topic created here gets hour-long segments, so that it keeps events barely longer than its
/// retention.
pub async fn ensure_topics(config: &KafkaConfig) -> anyhow::Result<Option<Duration>> {
    let admin: AdminClient<DefaultClientContext> = settings(config, &[])
        .create()
        .with_context(|| format!("cannot create Kafka admin client for {}", config.bootstrap))?;
    let topics = [
        NewTopic::new(
            &config.topic,
            config.partitions,
            TopicReplication::Fixed(BROKER_DEFAULT),
        )
        .set("segment.ms", "3600000"),
        NewTopic::new(
            &config.dead_letter_topic,
            1,
            TopicReplication::Fixed(BROKER_DEFAULT),
        ),
    ];
    // A request is given up after 10 s rather than librdkafka's 60 s: one sent to a broker that
    // is re-registering after a pause can go unanswered.
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
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
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&config.topic)], &options)
        .await
        .with_context(|| format!("cannot describe topic {}", config.topic))?;
    let topic = described
        .into_iter()
        .next()
        .and_then(Result::ok)
        .with_context(|| format!("topic {} has no configuration", config.topic))?;
    let millis = |name: &str| -> anyhow::Result<Option<Duration>> {
        let value = topic
            .get(name)
            .and_then(|entry| entry.value.clone())
            .with_context(|| format!("topic {} has no {name}", config.topic))?;
        let millis: i64 = value
            .parse()
            .with_context(|| format!("{name} of {} is not a number: {value}", config.topic))?;
        Ok(u64::try_from(millis).ok().map(Duration::from_millis))
    };
    Ok(match (millis("retention.ms")?, millis("segment.ms")?) {
        (Some(retention), Some(segment)) => Some(retention + segment),
        _ => None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use rdkafka::{bindings, types::RDKafkaRespErr};

    use super::*;

    /// A configuration whose broker does not exist: creating a client needs none.
    pub(crate) fn config() -> KafkaConfig {
        KafkaConfig {
            bootstrap: "127.0.0.1:1".into(),
            topic: "t".into(),
            dead_letter_topic: "t.DLT".into(),
            partitions: 1,
            group_id: "g".into(),
            extra: Vec::new(),
        }
    }

    #[test]
    fn a_producer_whose_delivery_failed_is_replaced_and_counted_fatal_or_not() {
        let metrics = Metrics::new("test", &[], &[]).unwrap();
        let producer = Producer::new(&config(), metrics.clone()).unwrap();
        let first = producer.get();
        producer.failed();
        assert!(!producer.healthy(), "a failed delivery is reported");
        assert_ne!(
            first.client().native_ptr(),
            producer.get().client().native_ptr(),
            "a new producer"
        );
        assert!(
            metrics
                .render()
                .contains(r#"kafka_clients_recreated{app="test",client="producer"} 1"#)
        );

        let broken = producer.get();
        // librdkafka's own hook for raising a fatal error, as an idempotence violation would.
        let raised = unsafe {
            bindings::rd_kafka_test_fatal_error(
                broken.client().native_ptr(),
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                c"test".as_ptr(),
            )
        };
        assert_eq!(raised, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
        assert!(broken.client().fatal_error().is_some());

        producer.failed();
        assert!(
            producer.get().client().fatal_error().is_none(),
            "a new producer"
        );
        assert!(
            metrics
                .render()
                .contains(r#"kafka_clients_recreated{app="test",client="producer"} 2"#)
        );
        producer.delivered();
        assert!(producer.healthy());
    }
}
