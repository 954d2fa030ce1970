//! The consumer as a whole against the running Kafka and PostgreSQL: fetching, per-order
//! order, dead-lettering and the offsets committed at shutdown.

use std::{collections::HashMap, time::Duration};

use super::*;
use crate::testing::{
    ScratchDb, create_topic, kafka,
    rules::{Handler, created},
    unique,
};
use chrono::Utc;
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer as _},
    producer::{FutureProducer, FutureRecord},
};

async fn publish(producer: &FutureProducer, topic: &str, key: &str, payload: &str) {
    let record = FutureRecord::to(topic).key(key).payload(payload);
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

/// Polls `done` until it holds, for at most 60 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    waited
        .await
        .unwrap_or_else(|_| panic!("{what} never happened"));
}

#[tokio::test]
async fn every_event_is_finished_in_its_orders_order_and_committed_at_shutdown() {
    let db = ScratchDb::create().await.unwrap();
    let topic = unique("test.consumer");
    create_topic(&kafka(), &topic, 3).await.unwrap();
    create_topic(&kafka(), &format!("{topic}.DLT"), 1)
        .await
        .unwrap();
    let vars: crate::config::Vars = [
        ("KAFKA_BOOTSTRAP", kafka()),
        ("KAFKA_TOPIC", topic.clone()),
        ("KAFKA_GROUP_PREFIX", unique("g")),
        ("DATABASE_URL", db.url.clone()),
        ("EVENT_MAX_ATTEMPTS", "2".into()),
        ("EVENT_RETRY_BACKOFF_MS", "10".into()),
        ("CONSUMER_BATCH_SIZE", "4".into()),
    ]
    .into_iter()
    .collect();
    let config = Config::from_vars("test-consumer", 0, "unused", &vars).unwrap();
    let metrics = Metrics::new("test", Handler::CONSUMES, &[]).unwrap();
    let handler = Arc::new(Handler::default());
    let parts = Parts {
        handler: handler.clone(),
        pool: db.pool.clone(),
        producer: Arc::new(Producer::new(&config.kafka, metrics.clone()).unwrap()),
        metrics: metrics.clone(),
        outbox: outbox::Outbox::default(),
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    // Each saga: created, then its deadline reached, published in that order.
    let mut sagas = HashMap::new();
    for order_id in 1..=12 {
        let created = created(order_id);
        let reached = created.follow_up(Event::DeadlineReached);
        for event in [&created, &reached] {
            publish(&producer, &topic, &order_id.to_string(), &event.to_json()).await;
        }
        sagas.insert(order_id, vec![created.event_id, reached.event_id]);
    }
    let rejected = Envelope::new(99, Utc::now(), Event::OrderRejected { reason: "x".into() });
    publish(&producer, &topic, "99", &rejected.to_json()).await;
    publish(&producer, &topic, "98", "{not json").await;

    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { run(&config, parts, shutdown).await }
    });
    let set_aside =
        |kind: &str| format!(r#"events_dead_lettered{{app="test",exception="{kind}"}} 1"#);
    eventually("every saga handled and both bad events set aside", || {
        let handled: usize = handler.handled.lock().unwrap().values().map(Vec::len).sum();
        let text = metrics.render();
        handled == 2 * sagas.len()
            && text.contains(&set_aside("failed"))
            && text.contains(&set_aside("unreadable"))
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(
        *handler.handled.lock().unwrap(),
        sagas,
        "each saga's events in order"
    );
    let text = metrics.render();
    assert!(
        text.contains(r#"message_errors{app="test",exception="handler",job="OrderRejected"} 2"#),
        "two attempts before giving up:\n{text}"
    );
    // Everything was finished, so the group's committed offsets are the partitions' ends.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", &config.kafka.group_id)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in 0..3 {
        partitions.add_partition(&topic, partition);
    }
    let committed = reader
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    for element in committed.elements() {
        let (_, end) = reader
            .fetch_watermarks(&topic, element.partition(), Duration::from_secs(10))
            .unwrap();
        let expected = if end == 0 {
            Offset::Invalid
        } else {
            Offset::Offset(end)
        };
        assert_eq!(
            element.offset(),
            expected,
            "partition {}",
            element.partition()
        );
    }
}
