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
