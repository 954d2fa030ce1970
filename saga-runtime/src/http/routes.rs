//! The operational routes: `/healthz`, `/readyz`, `/metrics`, and the saga's events as this
//! service saw them, for the gateway's saga view.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{ApiError, PathParam, path_id};
use crate::{kafka::Producer, metrics::Metrics};

/// What the operational routes look at.
#[derive(Clone)]
pub struct Probes {
    pub pool: PgPool,
    pub producer: Arc<Producer>,
    pub metrics: Metrics,
}

/// `/healthz` (the process answers), `/readyz` (see [`ready`]), `/metrics`, the saga's events
/// as this service saw them, and JSON errors for unknown routes.
pub fn operational_routes(probes: Probes) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/sagas/{order_id}/events", get(saga_events))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(probes)
}

/// `/healthz` and `/readyz`, to be merged after [`layers`](super::layers()): a probe is answered even when the
/// service sheds load, so that an orchestrator does not restart a busy instance. Each answers
/// within about a second.
pub fn probe_routes(probes: Probes) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .with_state(probes)
}

/// Ready means able to do its work: the database answers, the broker answers, the producer is
/// not failing to deliver, and the consumer is a member of its group with partitions. 503
/// otherwise, with what is missing in the body.
async fn ready(State(probes): State<Probes>) -> Response {
    let probe = Duration::from_secs(1);
    let database = tokio::time::timeout(probe, sqlx::query("SELECT 1").execute(&probes.pool))
        .await
        .is_ok_and(|answered| answered.is_ok());
    let kafka = probes.producer.broker_answers(probe).await;
    let producing = probes.producer.healthy();
    let partitions = probes.metrics.partitions_assigned.get();
    let consumer = partitions > 0;
    let status = if database && kafka && producing && consumer {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "database": database,
        "kafka": kafka,
        "producer": producing,
        "consumer": consumer,
        "partitions": partitions,
    });
    (status, Json(body)).into_response()
}

/// An event this service wrote to its outbox.
#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct Emitted {
    event_id: uuid::Uuid,
    event_type: String,
    #[serde(skip)]
    payload: String,
    created_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
}

/// An event this service consumed: applied or ignored, and how often it came again.
#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct Consumed {
    event_id: uuid::Uuid,
    event_type: String,
    outcome: String,
    detail: Option<String>,
    duplicates: i32,
    handled_at: DateTime<Utc>,
}

/// What this service emitted and consumed for one saga, for the gateway's saga view.
async fn saga_events(
    State(probes): State<Probes>,
    PathParam(order_id): PathParam<String>,
) -> Result<Json<Value>, ApiError> {
    let order_id = path_id(&order_id, &format!("order {order_id} not found"))?;
    let emitted: Vec<Emitted> = sqlx::query_as(
        "SELECT event_id, event_type, payload, created_at, published_at
         FROM outbox WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(&probes.pool)
    .await?;
    let consumed: Vec<Consumed> = sqlx::query_as(
        "SELECT event_id, event_type, outcome, detail, duplicates, handled_at
         FROM inbox WHERE order_id = $1 ORDER BY handled_at",
    )
    .bind(order_id)
    .fetch_all(&probes.pool)
    .await?;
    let emitted: Vec<Value> = emitted
        .into_iter()
        .map(|row| {
            let event = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
            let mut value = serde_json::to_value(&row).unwrap_or_default();
            value["event"] = event;
            value
        })
        .collect();
    Ok(Json(
        json!({ "service": probes.metrics.app(), "emitted": emitted, "consumed": consumed }),
    ))
}

async fn metrics(State(probes): State<Probes>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        probes.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;
    use crate::config::HttpConfig;
    use crate::http::{
        layers,
        test_support::{config, held, json, request},
    };

    #[tokio::test]
    async fn health_probes_are_answered_while_the_service_sheds_load() {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let probes = Probes {
            // Neither is reached by /healthz; /readyz finds both down.
            pool: sqlx::postgres::PgPoolOptions::new()
                .connect_lazy("postgres://nobody@127.0.0.1:1/none")
                .unwrap(),
            producer: Arc::new(
                crate::kafka::Producer::new(
                    &crate::kafka::tests::config(),
                    Metrics::new("test", &[], &[]).unwrap(),
                )
                .unwrap(),
            ),
            metrics: Metrics::new("test", &[], &[]).unwrap(),
        };
        // The held request outlasts the readiness probe's second or two.
        let config = HttpConfig {
            timeout: Duration::from_secs(30),
            ..config(1)
        };
        let app =
            layers(held(entered.clone(), release.clone()), &config).merge(probe_routes(probes));
        let first = tokio::spawn(app.clone().oneshot(request("/held")));
        entered.notified().await;
        let refused = app.clone().oneshot(request("/held")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

        let health = app.clone().oneshot(request("/healthz")).await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        let ready = app.clone().oneshot(request("/readyz")).await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(ready).await["database"], false, "the probe itself ran");

        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}
