//! Fetching and offsets: the loop that owns the Kafka consumer. It fetches messages (at most
//! `CONSUMER_MAX_IN_FLIGHT` unfinished at once), sends each on its way ([`dispatch`]), and
//! stores the committable offsets that finished events report back ([`Watermark`]); librdkafka's
//! background committer commits what was stored. Only this loop touches the Kafka consumer, so
//! the other parts report to it through a channel.
//!
//! [`dispatch`]: Consumer::dispatch

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use common_events::{Envelope, EventType};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer as _, StreamConsumer},
    error::KafkaError,
    message::{Headers, OwnedMessage},
    types::RDKafkaErrorCode,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{
    Consumer, EventHandler, Job,
    group::{Events, Membership, OUT_OF_GROUP},
};
use crate::{kafka, metrics};

/// How one consumer's fetching ended.
pub enum Ended {
    Shutdown,
    /// Failed fatally, or stuck out of its group: it must be replaced.
    Unusable(Option<RDKafkaErrorCode>, String),
}

/// A partition's committable offset, for the fetch loop to store.
pub struct Watermark {
    /// Of the Kafka consumer that fetched the events: a replaced one's offsets are not stored.
    pub generation: u64,
    pub partition: i32,
    pub offset: i64,
}

impl<H: EventHandler> Consumer<H> {
    /// A new Kafka consumer, of the current generation, subscribed to the saga topic.
    pub(super) fn subscribe(self: &Arc<Self>) -> anyhow::Result<StreamConsumer<Events<H>>> {
        *self.membership() = Membership::default();
        let events = Events {
            consumer: self.clone(),
            generation: self.state().generation,
        };
        let kafka: StreamConsumer<Events<H>> = kafka::consumer_settings(&self.config.kafka)
            .create_with_context(events)
            .with_context(|| {
                format!(
                    "cannot create Kafka consumer for {}",
                    self.config.kafka.bootstrap
                )
            })?;
        kafka
            .subscribe(&[&self.config.kafka.topic])
            .with_context(|| format!("cannot subscribe to {}", self.config.kafka.topic))?;
        Ok(kafka)
    }

    /// Fetches and dispatches events, and stores finished offsets, until shutdown or a fatal
    /// error of the Kafka consumer.
    pub(super) async fn fetch(
        self: &Arc<Self>,
        kafka: &StreamConsumer<Events<H>>,
        generation: u64,
        permits: &Arc<Semaphore>,
        finished: &mut mpsc::UnboundedReceiver<Watermark>,
    ) -> Ended {
        let mut permit = None;
        // librdkafka reports every failed connection attempt of an outage as an event of its
        // own, and reconnects by itself: the errors are drained at once (a rebalance waits behind
        // them in the same queue), and only a change of error is logged.
        let mut last_error = None;
        let mut membership_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ended::Shutdown,
                _ = membership_check.tick() => {
                    if self.stuck_out_of_group().await {
                        let reason = format!(
                            "out of its group for {OUT_OF_GROUP:?} while the broker answers"
                        );
                        return Ended::Unusable(None, reason);
                    }
                }
                Some(watermark) = finished.recv() => self.store(kafka, generation, watermark),
                acquired = permits.clone().acquire_owned(), if permit.is_none() => {
                    permit = acquired.ok();
                }
                message = kafka.recv(), if permit.is_some() => match message {
                    Ok(message) => {
                        last_error = None;
                        if let Some(permit) = permit.take() {
                            self.dispatch(message.detach(), permit);
                        }
                    }
                    Err(KafkaError::MessageConsumptionFatal(code)) => {
                        let reason = kafka.client().fatal_error().map_or_else(
                            || code.to_string(),
                            |(_, reason)| reason,
                        );
                        return Ended::Unusable(Some(code), reason);
                    }
                    Err(error) => {
                        if let Some((code, reason)) = kafka.client().fatal_error() {
                            return Ended::Unusable(Some(code), reason);
                        }
                        self.metrics.error(metrics::CONSUME, "kafka");
                        let error = error.to_string();
                        if last_error.as_ref() != Some(&error) {
                            tracing::warn!(error.message = error, "kafka consumer error");
                            last_error = Some(error);
                        }
                    }
                },
            }
        }
    }

    /// Whether the current consumer has been out of its group for [`OUT_OF_GROUP`] although
    /// the broker answers (a broker that is down or paused explains it, and is waited for).
    async fn stuck_out_of_group(&self) -> bool {
        if !self.membership().stuck(OUT_OF_GROUP) {
            return false;
        }
        self.dead_letters
            .producer
            .broker_answers(Duration::from_secs(1))
            .await
    }

    /// Stores a committable offset reported by a finished event, if it is of this consumer.
    pub(super) fn store(
        &self,
        kafka: &StreamConsumer<Events<H>>,
        generation: u64,
        watermark: Watermark,
    ) {
        if watermark.generation != generation {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        let stored = offsets
            .add_partition_offset(
                &self.config.kafka.topic,
                watermark.partition,
                Offset::Offset(watermark.offset),
            )
            .and_then(|_| kafka.store_offsets(&offsets));
        if let Err(error) = stored {
            // The partition was revoked meanwhile; its new owner starts from the last commit.
            tracing::debug!(kafka.partition = watermark.partition, error.message = %error, "offset not stored");
        }
    }

    /// Sends a fetched message on its way: passed over, set aside, or queued for its order.
    fn dispatch(self: &Arc<Self>, message: OwnedMessage, permit: OwnedSemaphorePermit) {
        let (partition, offset) = (message.partition(), message.offset());
        let assignment = self.state().offsets.start(partition, offset);
        // Known events this service does not consume are passed over without parsing.
        if let Some(event_type) = event_type_header(&message)
            && !H::CONSUMES.contains(&event_type)
        {
            self.finish_offset(partition, assignment, offset);
            return;
        }
        let event = match Envelope::from_json(message.payload().unwrap_or_default()) {
            Ok(event) => event,
            Err(invalid) => {
                let this = self.clone();
                self.tasks.spawn(async move {
                    let reason = invalid.to_string();
                    if this
                        .dead_letters
                        .send(&message, invalid.kind(), &reason, &this.shutdown)
                        .await
                    {
                        this.finish_offset(partition, assignment, offset);
                    }
                    drop(permit);
                });
                return;
            }
        };
        if !H::CONSUMES.contains(&event.event.event_type()) {
            self.finish_offset(partition, assignment, offset);
            return;
        }
        let job = Job {
            message,
            event,
            assignment,
            _permit: permit,
        };
        let startable = self.state().queues.push(job);
        if let Some(job) = startable {
            self.start(job);
        }
    }
}

/// The event type a message's `type` header names, if this version knows it.
fn event_type_header(message: &OwnedMessage) -> Option<EventType> {
    let header = message.headers()?.iter().find(|h| h.key == "type")?;
    EventType::parse(std::str::from_utf8(header.value?).ok()?)
}

#[cfg(test)]
mod tests {
    use rdkafka::{
        Timestamp,
        message::{Header, OwnedHeaders},
    };

    use super::*;

    fn message(headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            headers,
        )
    }

    fn type_header(value: &[u8]) -> OwnedHeaders {
        OwnedHeaders::new().insert(Header {
            key: "type",
            value: Some(value),
        })
    }

    #[test]
    fn the_type_header_names_the_event_only_when_this_version_knows_it() {
        assert_eq!(
            event_type_header(&message(Some(type_header(b"OrderCreated")))),
            Some(EventType::OrderCreated)
        );
        assert_eq!(
            event_type_header(&message(Some(type_header(b"SomethingNew")))),
            None,
            "an unknown type is parsed, to be judged by its payload"
        );
        assert_eq!(
            event_type_header(&message(Some(type_header(&[0xff])))),
            None
        );
        assert_eq!(event_type_header(&message(None)), None);
    }
}
