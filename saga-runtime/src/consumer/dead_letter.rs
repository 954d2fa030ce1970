//! Setting events aside on the dead-letter topic: unreadable or invalid messages at once, and
//! events whose handling failed every attempt. The message goes there as it came (key and
//! payload), with headers saying why, who gave up on it and where it came from. It counts as
//! set aside only once Kafka has acknowledged it there; until then its offset is not committed.

use std::{sync::Arc, time::Duration};

use rdkafka::{
    Message,
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::FutureRecord,
    util::Timeout,
};
use tokio_util::sync::CancellationToken;

use crate::{kafka::Producer, metrics::Metrics, retry::Backoff};

pub struct DeadLetters {
    pub producer: Arc<Producer>,
    pub topic: String,
    pub metrics: Metrics,
}

impl DeadLetters {
    /// Sets `message` aside because of `reason` (of kind `unreadable`, `invalid` or `failed`),
    /// retrying until Kafka has it; `false` if shutdown came first (the message is then fetched
    /// again after the restart).
    pub async fn send(
        &self,
        message: &OwnedMessage,
        kind: &str,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let app = self.metrics.app();
        let (partition, offset) = (
            message.partition().to_string(),
            message.offset().to_string(),
        );
        let headers = [
            ("dlt.reason", reason),
            ("dlt.exception", kind),
            ("dlt.consumer", app),
            ("dlt.topic", message.topic()),
            ("dlt.partition", partition.as_str()),
            ("dlt.offset", offset.as_str()),
        ];
        let mut failures = Backoff::DEFAULT.start();
        loop {
            let headers = headers
                .iter()
                .fold(OwnedHeaders::new(), |all, (key, value)| {
                    all.insert(Header {
                        key,
                        value: Some(*value),
                    })
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            let sent = self
                .producer
                .get()
                .send(record, Timeout::After(Duration::from_secs(15)))
                .await;
            match sent {
                Ok(_) => {
                    self.producer.delivered();
                    self.metrics.dead_lettered(kind);
                    tracing::warn!(
                        kafka.partition = message.partition(),
                        kafka.offset = message.offset(),
                        error.message = reason,
                        "event set aside on the dead-letter topic"
                    );
                    return true;
                }
                Err((error, _)) => {
                    self.producer.failed();
                    self.metrics.error(crate::metrics::DEAD_LETTER, "kafka");
                    tracing::warn!(error.message = %error, "cannot dead-letter event, retrying");
                    if !failures.wait(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rdkafka::{
        ClientConfig, Timestamp,
        consumer::{Consumer, StreamConsumer},
        message::Headers,
    };

    use super::*;
    use crate::{
        config::KafkaConfig,
        testing::{create_topic, kafka, unique},
    };

    #[tokio::test]
    async fn a_message_set_aside_arrives_as_it_came_with_why_and_where_from_and_is_counted() {
        let topic = unique("test.dlt");
        create_topic(&kafka(), &topic, 1).await.unwrap();
        let config = KafkaConfig {
            bootstrap: kafka(),
            topic: "test.saga".into(),
            dead_letter_topic: topic.clone(),
            partitions: 1,
            group_id: unique("test"),
            extra: Vec::new(),
        };
        let metrics = Metrics::new("test", &[], &[]).unwrap();
        let dead_letters = DeadLetters {
            producer: Arc::new(Producer::new(&config, metrics.clone()).unwrap()),
            topic: topic.clone(),
            metrics: metrics.clone(),
        };
        let poison = OwnedMessage::new(
            Some(b"{not json".to_vec()),
            Some(b"42".to_vec()),
            "test.saga".into(),
            Timestamp::NotAvailable,
            3,
            17,
            None,
        );

        let sent = dead_letters
            .send(
                &poison,
                "unreadable",
                "expected value",
                &CancellationToken::new(),
            )
            .await;

        assert!(sent);
        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka())
            .set("group.id", unique("test"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        reader.subscribe(&[&topic]).unwrap();
        let received = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("the dead letter arrives")
            .unwrap();
        assert_eq!(received.key(), Some(&b"42"[..]));
        assert_eq!(received.payload(), Some(&b"{not json"[..]));
        let headers: HashMap<&str, &str> = received
            .headers()
            .unwrap()
            .iter()
            .map(|h| (h.key, std::str::from_utf8(h.value.unwrap()).unwrap()))
            .collect();
        assert_eq!(
            headers,
            HashMap::from([
                ("dlt.reason", "expected value"),
                ("dlt.exception", "unreadable"),
                ("dlt.consumer", "test"),
                ("dlt.topic", "test.saga"),
                ("dlt.partition", "3"),
                ("dlt.offset", "17"),
            ])
        );
        assert!(
            metrics
                .render()
                .contains(r#"events_dead_lettered{app="test",exception="unreadable"} 1"#)
        );
    }
}
