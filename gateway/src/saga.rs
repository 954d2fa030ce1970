//! The saga view (saga-rules §6): one saga's story, assembled from what each service recorded.
//!
//! Every service keeps the events it emitted (its outbox) and the events it consumed with what
//! it did with them (its inbox). The gateway asks all four at once and merges the answers by
//! event id: each event with its time, who emitted it, who consumed it and whether they acted
//! on it, ignored it (and why) or saw it again as a duplicate; plus the deadline, the order's
//! outcome, the exchange and the points. A service that does not answer is named in
//! `unavailable` and the rest is shown.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadline_service::http::DeadlineView;
use exchange_service::http::ExchangeView;
use order_service::view::OrderView;
use point_service::http::TransactionView;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::Gateway;

/// One saga: the services' records of it and its events in time order. The records are the
/// services' own answers, passed on as they are.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Saga)]
pub struct SagaView {
    pub order_id: i64,
    #[schema(value_type = OrderView)]
    pub order: Value,
    pub deadline: Option<DateTime<Utc>>,
    /// The deadline service's record: PENDING, FIRED or CANCELLED, with times.
    #[schema(value_type = Option<DeadlineView>)]
    pub deadline_status: Option<Value>,
    #[schema(value_type = Option<ExchangeView>)]
    pub exchange: Option<Value>,
    /// The point ledger's entry.
    #[schema(value_type = Option<TransactionView>)]
    pub points: Option<Value>,
    pub events: Vec<EventView>,
    /// The services that did not answer; their parts are missing.
    pub unavailable: Vec<String>,
}

/// An event of the saga.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SagaEvent)]
pub struct EventView {
    pub event_id: String,
    pub event_type: String,
    /// The emitting service (`order`, `exchange`, `point`, `deadline`), if known.
    pub emitted_by: Option<String>,
    pub at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub after_deadline: bool,
    /// The event's own fields, without the envelope.
    #[schema(value_type = Object)]
    pub fields: Value,
    pub consumed_by: Vec<Consumption>,
}

/// What a service did with an event it consumed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumption {
    pub service: String,
    /// APPLIED or IGNORED.
    pub outcome: String,
    /// Why it was ignored (`expired`, `order already final`, …).
    pub detail: Option<String>,
    /// How many times it was delivered again and skipped.
    pub duplicates: i64,
    pub at: DateTime<Utc>,
}

pub const SERVICES: [&str; 4] = ["order", "exchange", "point", "deadline"];
const ENVELOPE: [&str; 5] = ["eventType", "eventId", "timestamp", "orderId", "deadline"];

/// Assembles the view; `None` when the order service does not know the order.
pub async fn assemble(gateway: &Gateway, order_id: i64) -> Result<Option<SagaView>, String> {
    let get = |service: &'static str, path: String| async move {
        let answer = gateway.upstreams[service]
            .send(true, |client, base| client.get(format!("{base}{path}")))
            .await
            .map_err(|_| service)?;
        if answer.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(service);
        }
        serde_json::from_slice(&answer.body)
            .map(Some)
            .map_err(|_| service)
    };
    let histories = futures::future::join_all(
        SERVICES.map(|service| get(service, format!("/sagas/{order_id}/events"))),
    );
    let (order, deadline, exchange, points, histories) = tokio::join!(
        get("order", format!("/orders/{order_id}")),
        get("deadline", format!("/deadlines/{order_id}")),
        get("exchange", format!("/exchanges/{order_id}")),
        get("point", format!("/transactions/{order_id}")),
        histories,
    );
    let order = match order {
        Ok(Some(order)) => order,
        Ok(None) => return Ok(None),
        Err(_) => return Err("the order service is not answering".into()),
    };
    let mut unavailable = Vec::new();
    let mut keep = |result: Result<Option<Value>, &str>| match result {
        Ok(value) => value,
        Err(service) => {
            if !unavailable.iter().any(|s| s == service) {
                unavailable.push(service.to_string());
            }
            None
        }
    };
    let deadline_status = keep(deadline);
    let exchange = keep(exchange);
    let points = keep(points);
    let histories: Vec<(&str, Value)> = SERVICES
        .into_iter()
        .zip(histories)
        .filter_map(|(service, history)| keep(history).map(|h| (service, h)))
        .collect();
    let deadline = order["deadline"]
        .as_str()
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&Utc));
    Ok(Some(SagaView {
        order_id,
        order,
        deadline,
        deadline_status,
        exchange,
        points,
        events: merge(&histories, deadline),
        unavailable,
    }))
}

/// Merges the services' histories into one list of events in time order.
pub fn merge(histories: &[(&str, Value)], deadline: Option<DateTime<Utc>>) -> Vec<EventView> {
    let mut events: Vec<EventView> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (service, history) in histories {
        for emitted in history["emitted"].as_array().into_iter().flatten() {
            let event_id = text(&emitted["eventId"]);
            let Some(at) = time(&emitted["createdAt"]) else {
                continue;
            };
            let fields = emitted["event"]
                .as_object()
                .map(|event| {
                    event
                        .iter()
                        .filter(|(key, _)| !ENVELOPE.contains(&key.as_str()))
                        .map(|(key, value)| (key.clone(), value.clone()))
                        .collect()
                })
                .unwrap_or_default();
            index.insert(event_id.clone(), events.len());
            events.push(EventView {
                event_id,
                event_type: text(&emitted["eventType"]),
                emitted_by: Some(service.to_string()),
                at,
                published_at: time(&emitted["publishedAt"]),
                after_deadline: deadline.is_some_and(|d| at >= d),
                fields: Value::Object(fields),
                consumed_by: Vec::new(),
            });
        }
    }
    for (service, history) in histories {
        for consumed in history["consumed"].as_array().into_iter().flatten() {
            let event_id = text(&consumed["eventId"]);
            let Some(at) = time(&consumed["handledAt"]) else {
                continue;
            };
            let position = *index.entry(event_id.clone()).or_insert_with(|| {
                // Consumed but emitted by no service that answered (or published by hand).
                events.push(EventView {
                    event_id,
                    event_type: text(&consumed["eventType"]),
                    emitted_by: None,
                    at,
                    published_at: None,
                    after_deadline: deadline.is_some_and(|d| at >= d),
                    fields: Value::Object(Default::default()),
                    consumed_by: Vec::new(),
                });
                events.len() - 1
            });
            events[position].consumed_by.push(Consumption {
                service: service.to_string(),
                outcome: text(&consumed["outcome"]),
                detail: consumed["detail"].as_str().map(String::from),
                duplicates: consumed["duplicates"].as_i64().unwrap_or(0),
                at,
            });
        }
    }
    for event in &mut events {
        event.consumed_by.sort_by_key(|c| c.at);
    }
    events.sort_by_key(|event| event.at);
    events
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| value.to_string())
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    Some(
        DateTime::parse_from_rfc3339(value.as_str()?)
            .ok()?
            .with_timezone(&Utc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_merged_by_id_in_time_order_with_their_consumers() {
        let histories = [
            (
                "order",
                json!({
                    "emitted": [{ "eventId": "a", "eventType": "OrderCreated", "createdAt": "2026-01-01T00:00:00.000Z",
                                  "publishedAt": "2026-01-01T00:00:00.010Z",
                                  "event": { "eventType": "OrderCreated", "orderId": 1, "amount": "500" } }],
                    "consumed": [{ "eventId": "b", "eventType": "DeadlineReached", "outcome": "IGNORED",
                                   "detail": "order already final", "duplicates": 0, "handledAt": "2026-01-01T00:00:05.010Z" }]
                }),
            ),
            (
                "deadline",
                json!({
                    "emitted": [{ "eventId": "b", "eventType": "DeadlineReached", "createdAt": "2026-01-01T00:00:05.001Z",
                                  "publishedAt": null, "event": { "eventType": "DeadlineReached", "orderId": 1 } }],
                    "consumed": [{ "eventId": "a", "eventType": "OrderCreated", "outcome": "APPLIED",
                                   "detail": null, "duplicates": 2, "handledAt": "2026-01-01T00:00:00.020Z" }]
                }),
            ),
        ];
        let deadline = time(&json!("2026-01-01T00:00:05.000Z"));
        let events = merge(&histories, deadline);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_type, "OrderCreated");
        assert_eq!(events[0].fields, json!({ "amount": "500" }));
        assert_eq!(events[0].consumed_by[0].service, "deadline");
        assert_eq!(events[0].consumed_by[0].duplicates, 2);
        assert!(!events[0].after_deadline);
        assert_eq!(events[1].emitted_by.as_deref(), Some("deadline"));
        assert!(events[1].after_deadline);
        assert_eq!(
            events[1].consumed_by[0].detail.as_deref(),
            Some("order already final")
        );
    }
}
