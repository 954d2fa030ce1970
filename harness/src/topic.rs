//! Reading the saga topic as it is: where each partition ends now, and every event (or raw
//! message) published after such a mark. A chaos or benchmark run marks the ends when it
//! starts, so the events of earlier runs on the same topic are never read; a test, whose topic
//! is its own, reads it from the beginning.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, bail};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    message::BorrowedMessage,
    types::RDKafkaErrorCode,
};
use serde::Deserialize;

/// The replication factor that asks for the brokers' `default.replication.factor`.
const BROKER_DEFAULT: i32 = -1;

/// Creates `topic` with `partitions` partitions, replicated as the brokers' default says,
/// unless it exists.
pub async fn create(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topics = [NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(BROKER_DEFAULT),
    )];
    let results = admin
        .create_topics(&topics, &options)
        .await
        .with_context(|| format!("Kafka not reachable at {bootstrap}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create {topic}: {code}"),
        }
    }
    Ok(())
}

/// The offset each partition will give its next message: the partition's end.
pub type Marks = HashMap<i32, i64>;

/// What the checks and the benchmark need of an event: the envelope that every event has
/// (saga-rules §3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_type: String,
    pub event_id: String,
    /// When the emitting service made the event (in the transaction that writes it to its
    /// outbox), in epoch milliseconds.
    pub timestamp: i64,
    pub order_id: i64,
    /// The Kafka record's own timestamp (epoch milliseconds): when the service's outbox relay
    /// handed the event to its producer. Not in the JSON; set from the record when read.
    #[serde(skip)]
    pub published: Option<i64>,
}

/// One topic on one broker. The calls block (rdkafka's base consumer), so async code runs them
/// with `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct Topic {
    pub bootstrap: String,
    pub name: String,
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl Topic {
    /// The topic the local stack's services use (`KAFKA_TOPIC`, or their default), on its
    /// brokers (`KAFKA_BOOTSTRAP`, or every broker of the local cluster).
    pub fn of_local_stack() -> anyhow::Result<Topic> {
        let local = crate::local::Local::new(crate::repository());
        Ok(Topic {
            bootstrap: local.bootstrap()?,
            name: crate::env_or("KAFKA_TOPIC", "choreography.deadline"),
        })
    }

    fn consumer(&self) -> anyhow::Result<BaseConsumer> {
        // No group is joined (partitions are assigned by hand), so nothing is committed.
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "harness-reader")
            .set("enable.auto.commit", "false")
            .create()
            .with_context(|| format!("cannot create a Kafka consumer for {}", self.bootstrap))
    }

    /// Where every partition of the topic ends now.
    pub fn ends(&self) -> anyhow::Result<Marks> {
        let consumer = self.consumer()?;
        self.ends_with(&consumer)
    }

    /// The broker that leads the most partitions of the topic now.
    pub fn busiest_leader(&self) -> anyhow::Result<i32> {
        let metadata = self
            .consumer()?
            .fetch_metadata(Some(&self.name), TIMEOUT)
            .with_context(|| format!("cannot read the metadata of {}", self.name))?;
        let mut led: HashMap<i32, usize> = HashMap::new();
        for partition in metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions())
        {
            *led.entry(partition.leader()).or_default() += 1;
        }
        led.into_iter()
            .filter(|&(leader, _)| leader >= 0)
            .max_by_key(|&(leader, count)| (count, -leader))
            .map(|(leader, _)| leader)
            .with_context(|| format!("no partition of {} has a leader", self.name))
    }

    /// Whether every partition of the topic has a leader and every replica in sync.
    pub fn fully_replicated(&self) -> anyhow::Result<bool> {
        let layout = self.layout()?;
        Ok((layout.iter())
            .all(|&(_, leader, in_sync, replicas)| leader >= 0 && in_sync == replicas))
    }

    /// Each partition's id, leader, in-sync replicas and replicas, as the broker asked sees them
    /// (a broker cut off from the others sees what it knew last).
    pub fn layout(&self) -> anyhow::Result<Vec<(i32, i32, usize, usize)>> {
        let metadata = self
            .consumer()?
            .fetch_metadata(Some(&self.name), TIMEOUT)
            .with_context(|| format!("cannot read the metadata of {}", self.name))?;
        let partitions = metadata.topics().iter().flat_map(|t| t.partitions());
        let mut layout: Vec<_> = partitions
            .map(|p| (p.id(), p.leader(), p.isr().len(), p.replicas().len()))
            .collect();
        layout.sort();
        Ok(layout)
    }

    fn ends_with(&self, consumer: &BaseConsumer) -> anyhow::Result<Marks> {
        let metadata = consumer
            .fetch_metadata(Some(&self.name), TIMEOUT)
            .with_context(|| format!("cannot read the metadata of {}", self.name))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            bail!("topic {} has no partitions (does it exist?)", self.name);
        }
        partitions
            .into_iter()
            .map(|partition| Ok((partition, self.watermarks(consumer, partition)?.1)))
            .collect()
    }

    /// The first and next offsets of `partition`. A broker just restarted, or a partition whose
    /// leader moves, answers "not leader" for a while: asked again until [`TIMEOUT`] is over.
    fn watermarks(&self, consumer: &BaseConsumer, partition: i32) -> anyhow::Result<(i64, i64)> {
        let started = std::time::Instant::now();
        loop {
            match consumer.fetch_watermarks(&self.name, partition, TIMEOUT) {
                Ok(marks) => return Ok(marks),
                Err(error) if started.elapsed() > TIMEOUT => {
                    return Err(error).with_context(|| {
                        format!("cannot read the offsets of partition {partition}")
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Every event published after `marks` up to the topic's current end, in order within
    /// each partition. A partition without a mark is read from its beginning; a message that
    /// is not an event is left out (the checks are about sagas).
    pub fn read_since(&self, marks: &Marks) -> anyhow::Result<Vec<Event>> {
        self.read_messages_since(marks, |message| {
            let mut event: Event = serde_json::from_slice(message.payload()?).ok()?;
            event.published = message.timestamp().to_millis();
            Some(event)
        })
    }

    /// Every message published after `marks` up to the topic's current end, in order within
    /// each partition, as `read` makes it; those it returns `None` for are left out. A
    /// partition without a mark is read from its beginning.
    pub fn read_messages_since<T>(
        &self,
        marks: &Marks,
        mut read: impl FnMut(&BorrowedMessage<'_>) -> Option<T>,
    ) -> anyhow::Result<Vec<T>> {
        let consumer = self.consumer()?;
        let ends = self.ends_with(&consumer)?;
        let mut assignment = TopicPartitionList::new();
        let mut remaining = HashMap::new();
        for (&partition, &end) in &ends {
            // A partition without a mark is read from the first message it still holds.
            let start = match marks.get(&partition) {
                Some(&mark) => mark,
                None => self.watermarks(&consumer, partition)?.0,
            };
            if start < end {
                assignment.add_partition_offset(&self.name, partition, Offset::Offset(start))?;
                remaining.insert(partition, end);
            }
        }
        let mut messages = Vec::new();
        if remaining.is_empty() {
            return Ok(messages);
        }
        consumer.assign(&assignment)?;
        let started = std::time::Instant::now();
        // A broker of a cluster that is down is an error of the client, not of the topic: its
        // partitions are read from their new leaders.
        let mut last_error = None;
        while !remaining.is_empty() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "could not read {} to its end within 60 s (last error: {last_error:?})",
                    self.name
                );
            }
            let message = match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(error)) => {
                    last_error = Some(error);
                    continue;
                }
                Some(Ok(message)) => message,
            };
            messages.extend(read(&message));
            if remaining.get(&message.partition()) == Some(&(message.offset() + 1)) {
                remaining.remove(&message.partition());
            }
        }
        Ok(messages)
    }
}
