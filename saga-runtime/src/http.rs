//! HTTP pieces every service shares: the API's error type, a JSON extractor whose rejections use
//! that error format, and the operational routes `/healthz`, `/readyz` and `/metrics`.

use axum::{
    Json, Router,
    extract::{FromRequest, Path, Request, State, rejection::JsonRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use rdkafka::producer::{FutureProducer, Producer};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

use crate::{kafka::GroupMembership, metrics::Metrics};

/// What a request can end in besides success. Client errors name the problem; server errors
/// are logged with their cause and answered with an opaque message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error.message = format!("{cause:#}"), "request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        (status, Json(json!({ "error": code, "message": message }))).into_response()
    }
}

/// An id from a request path. One that is not a number names nothing, so it is a 404 like an
/// id that is not there; `missing` says what was not found.
pub fn path_id(raw: &str, missing: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(missing.to_string()))
}

/// The row a lookup found, or a 404 saying what is `missing`.
pub fn found<T>(row: Option<T>, missing: &str) -> Result<Json<T>, ApiError> {
    row.map(Json)
        .ok_or_else(|| ApiError::NotFound(missing.to_string()))
}

/// `Json<T>` whose rejections (wrong content type, malformed JSON, wrong shape) are API errors.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::Unprocessable(e.body_text())),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// What the operational routes look at.
#[derive(Clone)]
pub struct Probes {
    pub pool: PgPool,
    pub producer: FutureProducer,
    pub metrics: Metrics,
    pub membership: GroupMembership,
}

/// `/healthz` (the process answers), `/readyz` (database and Kafka reachable, consumer in its
/// group), `/metrics`, and
/// JSON errors for unknown routes.
pub fn operational_routes(probes: Probes) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/sagas/{order_id}/events", get(saga_events))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(probes)
}

/// A JSON 405 for a known path asked with a method it does not serve.
pub async fn method_not_allowed() -> Response {
    let body =
        json!({ "error": "method_not_allowed", "message": "method not allowed on this path" });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

async fn ready(State(probes): State<Probes>) -> Response {
    let database = sqlx::query("SELECT 1").execute(&probes.pool).await.is_ok();
    let producer = probes.producer.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok()
    })
    .await
    .unwrap_or(false);
    let consumer = probes.membership.joined();
    let status = if database && kafka && consumer {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "database": database, "kafka": kafka, "consumer": consumer });
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
    Path(order_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let emitted: Vec<serde_json::Value> = emitted
        .into_iter()
        .map(|row| {
            let event = serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null);
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

/// `?limit=N` on list endpoints: the newest N rows, 100 unless asked, at most 1000.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    limit: Option<i64>,
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}
