//! The saga's events as they travel on Kafka (saga-rules §3): an [`Envelope`] that every event
//! shares and the [`Event`] itself. Plain serde types, no I/O, so every service and test speaks
//! exactly the same JSON.
//!
//! On the wire an event is one flat JSON object:
//! `{"eventType":"OrderCreated","eventId":"…","timestamp":1666666399668,"orderId":7,
//!   "deadline":"2026-11-23T01:00:05Z","holderId":"jjy","currencyId":"1","amount":"500"}`.
//! Amounts are exact decimals written as JSON strings; numbers are accepted on the way in.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The order id is the saga id and the Kafka key, so one saga's events stay in order.
pub type OrderId = i64;

/// What every event carries besides its own fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub event_id: Uuid,
    /// When the event was created, in epoch milliseconds.
    pub timestamp: i64,
    pub order_id: OrderId,
    /// Fixed once when the order is created and copied into every later event
    /// (saga-rules §4 rule 1).
    #[serde(with = "rfc3339_utc")]
    pub deadline: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// The saga's events, named in the past tense as in the seed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "eventType", rename_all_fields = "camelCase")]
pub enum Event {
    OrderCreated {
        holder_id: String,
        /// Optional, as in the seed's downtime walkthrough (`http :8088/orders holderId=… amount=…`).
        currency_id: Option<String>,
        amount: Decimal,
    },
    ExchangeSucceed {
        user_id: String,
        point: Decimal,
    },
    PointUsed {
        user_id: String,
        point: Decimal,
        balance: Decimal,
    },
    PointUseFailed {
        reason: String,
    },
    OrderPlaced,
    DeadlineReached,
    OrderRejected {
        reason: String,
    },
    /// Always emitted on `OrderRejected`; `point` is what was undone (zero if nothing was).
    ExchangeCompensated {
        point: Decimal,
    },
    /// Ends the compensation chain; `point` is what was given back (zero if nothing was used).
    PointRefunded {
        point: Decimal,
    },
}

/// Why a message on the topic cannot be applied: it is set aside, never retried.
#[derive(Debug, thiserror::Error)]
pub enum InvalidEvent {
    #[error("unreadable event: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error("invalid event: {0}")]
    Invalid(&'static str),
}

impl InvalidEvent {
    /// A short label for metrics and the dead-letter header.
    pub fn kind(&self) -> &'static str {
        match self {
            InvalidEvent::Unreadable(_) => "unreadable",
            InvalidEvent::Invalid(_) => "invalid",
        }
    }
}

impl Envelope {
    /// A new event of the saga `order_id`, stamped now with a fresh id.
    pub fn new(order_id: OrderId, deadline: DateTime<Utc>, event: Event) -> Self {
        Envelope {
            event_id: Uuid::now_v7(),
            timestamp: Utc::now().timestamp_millis(),
            order_id,
            deadline,
            event,
        }
    }

    /// The next event of the same saga: same order id and deadline.
    pub fn follow_up(&self, event: Event) -> Self {
        Envelope::new(self.order_id, self.deadline, event)
    }

    /// Parses and validates a message value; anything that fails is poison.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InvalidEvent> {
        let envelope: Envelope = serde_json::from_slice(bytes)?;
        envelope.validate()?;
        Ok(envelope)
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// True once the saga's deadline has passed at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.deadline
    }

    fn validate(&self) -> Result<(), InvalidEvent> {
        let non_negative = |d: &Decimal| !d.is_sign_negative();
        let ok = match &self.event {
            Event::OrderCreated {
                holder_id, amount, ..
            } => !holder_id.trim().is_empty() && *amount > Decimal::ZERO,
            Event::ExchangeSucceed { user_id, point } => {
                !user_id.trim().is_empty() && *point > Decimal::ZERO
            }
            Event::PointUsed { point, balance, .. } => non_negative(point) && non_negative(balance),
            Event::ExchangeCompensated { point } | Event::PointRefunded { point } => {
                non_negative(point)
            }
            Event::PointUseFailed { .. }
            | Event::OrderPlaced
            | Event::DeadlineReached
            | Event::OrderRejected { .. } => true,
        };
        if self.order_id <= 0 {
            return Err(InvalidEvent::Invalid("orderId must be positive"));
        }
        if !ok {
            return Err(InvalidEvent::Invalid("event fields out of range"));
        }
        Ok(())
    }
}

/// The kinds of event, without their fields: what services declare they consume and produce,
/// so that a typo is a compile error rather than an event silently passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    OrderCreated,
    ExchangeSucceed,
    PointUsed,
    PointUseFailed,
    OrderPlaced,
    DeadlineReached,
    OrderRejected,
    ExchangeCompensated,
    PointRefunded,
}

impl EventType {
    /// Every type this version knows.
    pub const ALL: [EventType; 9] = [
        EventType::OrderCreated,
        EventType::ExchangeSucceed,
        EventType::PointUsed,
        EventType::PointUseFailed,
        EventType::OrderPlaced,
        EventType::DeadlineReached,
        EventType::OrderRejected,
        EventType::ExchangeCompensated,
        EventType::PointRefunded,
    ];

    /// The `eventType` name, also sent as the `type` header.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "OrderCreated",
            EventType::ExchangeSucceed => "ExchangeSucceed",
            EventType::PointUsed => "PointUsed",
            EventType::PointUseFailed => "PointUseFailed",
            EventType::OrderPlaced => "OrderPlaced",
            EventType::DeadlineReached => "DeadlineReached",
            EventType::OrderRejected => "OrderRejected",
            EventType::ExchangeCompensated => "ExchangeCompensated",
            EventType::PointRefunded => "PointRefunded",
        }
    }

    /// The type named `name`, if this version knows it.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::OrderCreated { .. } => EventType::OrderCreated,
            Event::ExchangeSucceed { .. } => EventType::ExchangeSucceed,
            Event::PointUsed { .. } => EventType::PointUsed,
            Event::PointUseFailed { .. } => EventType::PointUseFailed,
            Event::OrderPlaced => EventType::OrderPlaced,
            Event::DeadlineReached => EventType::DeadlineReached,
            Event::OrderRejected { .. } => EventType::OrderRejected,
            Event::ExchangeCompensated { .. } => EventType::ExchangeCompensated,
            Event::PointRefunded { .. } => EventType::PointRefunded,
        }
    }
}

/// Deadlines are written as RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T01:00:05.123Z`.
mod rfc3339_utc {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn every_event() -> Vec<Event> {
        vec![
            Event::OrderCreated {
                holder_id: "jjy".into(),
                currency_id: Some("1".into()),
                amount: dec("500"),
            },
            Event::ExchangeSucceed {
                user_id: "jjy".into(),
                point: dec("500"),
            },
            Event::PointUsed {
                user_id: "jjy".into(),
                point: dec("500"),
                balance: dec("9500"),
            },
            Event::PointUseFailed {
                reason: "point limit".into(),
            },
            Event::OrderPlaced,
            Event::DeadlineReached,
            Event::OrderRejected {
                reason: "deadline".into(),
            },
            Event::ExchangeCompensated { point: dec("500") },
            Event::PointRefunded { point: dec("0") },
        ]
    }

    fn envelope(event: Event) -> Envelope {
        let deadline = DateTime::parse_from_rfc3339("2026-11-23T01:00:05.123Z")
            .unwrap()
            .with_timezone(&Utc);
        Envelope::new(7, deadline, event)
    }

    #[test]
    fn every_event_round_trips_through_json() {
        for event in every_event() {
            let original = envelope(event);
            let parsed = Envelope::from_json(original.to_json().as_bytes()).unwrap();
            assert_eq!(parsed, original);
        }
    }

    #[test]
    fn every_event_has_the_envelope_fields_and_its_own_in_camel_case() {
        let own_fields: [(&str, &[&str]); 9] = [
            ("OrderCreated", &["holderId", "currencyId", "amount"]),
            ("ExchangeSucceed", &["userId", "point"]),
            ("PointUsed", &["userId", "point", "balance"]),
            ("PointUseFailed", &["reason"]),
            ("OrderPlaced", &[]),
            ("DeadlineReached", &[]),
            ("OrderRejected", &["reason"]),
            ("ExchangeCompensated", &["point"]),
            ("PointRefunded", &["point"]),
        ];
        for (event, (name, fields)) in every_event().into_iter().zip(own_fields) {
            let value: Value = serde_json::from_str(&envelope(event).to_json()).unwrap();
            let mut keys: Vec<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            keys.sort_unstable();
            let mut expected = vec!["eventType", "eventId", "timestamp", "orderId", "deadline"];
            expected.extend_from_slice(fields);
            expected.sort_unstable();
            assert_eq!(keys, expected, "{name}");
            assert_eq!(value["eventType"], name);
        }
    }

    #[test]
    fn order_created_has_the_documented_shape() {
        let event = envelope(Event::OrderCreated {
            holder_id: "jjy".into(),
            currency_id: Some("1".into()),
            amount: dec("500"),
        });
        let value: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(value["orderId"], json!(7));
        assert_eq!(value["deadline"], json!("2026-11-23T01:00:05.123Z"));
        assert_eq!(value["amount"], json!("500"));
        assert_eq!(value["holderId"], json!("jjy"));
        assert_eq!(value["currencyId"], json!("1"));
        assert!(value["eventId"].as_str().unwrap().parse::<Uuid>().is_ok());
        assert!(value["timestamp"].is_i64());
    }

    #[test]
    fn numbers_are_accepted_where_amounts_are_expected() {
        let text = r#"{"eventType":"ExchangeSucceed","eventId":"0190b9a0-0000-7000-8000-000000000000",
            "timestamp":1,"orderId":3,"deadline":"2026-11-23T01:00:05Z","userId":"jjy","point":500.25}"#;
        let parsed = Envelope::from_json(text.as_bytes()).unwrap();
        assert_eq!(
            parsed.event,
            Event::ExchangeSucceed {
                user_id: "jjy".into(),
                point: dec("500.25")
            }
        );
    }

    #[test]
    fn garbage_unknown_types_and_bad_values_are_rejected() {
        let base = |extra: &str| {
            format!(
                r#"{{"eventId":"0190b9a0-0000-7000-8000-000000000000","timestamp":1,"orderId":3,
                "deadline":"2026-11-23T01:00:05Z",{extra}}}"#
            )
        };
        let cases = [
            "not json at all".to_string(),
            base(r#""eventType":"OrderShipped""#),
            base(r#""eventType":"OrderCreated","holderId":"jjy","amount":"-5""#),
            base(r#""eventType":"OrderCreated","holderId":" ","amount":"5""#),
            base(r#""eventType":"ExchangeSucceed","userId":"jjy""#),
            r#"{"eventType":"OrderPlaced","eventId":"x","timestamp":1,"orderId":3,"deadline":"2026-11-23T01:00:05Z"}"#.to_string(),
            r#"{"eventType":"OrderPlaced","eventId":"0190b9a0-0000-7000-8000-000000000000","timestamp":1,"orderId":0,"deadline":"2026-11-23T01:00:05Z"}"#.to_string(),
        ];
        for case in cases {
            assert!(Envelope::from_json(case.as_bytes()).is_err(), "{case}");
        }
    }

    #[test]
    fn every_type_is_named_as_on_the_wire() {
        for event in every_event() {
            let value: Value = serde_json::from_str(&envelope(event.clone()).to_json()).unwrap();
            let name = value["eventType"].as_str().unwrap();
            assert_eq!(event.event_type().as_str(), name);
            assert_eq!(EventType::parse(name), Some(event.event_type()));
        }
        assert_eq!(EventType::parse("OrderShipped"), None);
    }

    #[test]
    fn an_event_expires_at_its_deadline() {
        let event = envelope(Event::OrderPlaced);
        assert!(!event.is_expired(event.deadline - chrono::Duration::milliseconds(1)));
        assert!(event.is_expired(event.deadline));
    }

    #[test]
    fn follow_ups_keep_the_saga_and_get_a_new_id() {
        let first = envelope(Event::DeadlineReached);
        let next = first.follow_up(Event::OrderPlaced);
        assert_eq!(
            (next.order_id, next.deadline),
            (first.order_id, first.deadline)
        );
        assert_ne!(next.event_id, first.event_id);
    }
}
