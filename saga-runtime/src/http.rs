//! HTTP pieces every service shares: the API's error type and error body, extractors whose
//! rejections use that error format (a JSON body, query parameters, path parameters, a page of a
//! list), the tower layers that keep a server responsive under overload ([`layers`]), and the
//! operational routes `/healthz`, `/readyz` and `/metrics`.
//!
//! Every answer that is not a success is a JSON [`ErrorBody`], whoever gives it: a handler, an
//! extractor refusing the request, the router (unknown route, method not allowed) or a layer.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    BoxError, Json, Router,
    error_handling::HandleErrorLayer,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::{ServiceBuilder, limit::GlobalConcurrencyLimitLayer};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnFailure, TraceLayer},
};
use utoipa::{
    IntoParams, IntoResponses, ToSchema,
    openapi::{
        ObjectBuilder, RefOr, Required,
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{KnownFormat, SchemaFormat, Type},
    },
};

use crate::{config::HttpConfig, kafka::Producer, metrics::Metrics, openapi};

/// What a request can end in besides success. Client errors name the problem; server errors
/// are logged with their cause and answered with an opaque message.
/// The request header that makes a POST safe to send again: the same key places one order
/// (`POST /orders`), and lets the gateway try another instance after one failed.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

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
    #[error("{0}")]
    TooLarge(String),
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
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::Unprocessable(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput)
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error.message = format!("{cause:#}"), "request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        error_response(status, code, message)
    }
}

/// The kind of failure an error answer reports, for a client to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidInput,
    NotFound,
    MethodNotAllowed,
    Conflict,
    TooLarge,
    Overloaded,
    Timeout,
    Internal,
    /// From the gateway: the service is not answering.
    ServiceUnavailable,
    /// From the gateway: the service did not answer in time.
    UpstreamTimeout,
    /// From the gateway: the service failed while answering.
    UpstreamFailed,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// What is wrong, naming the field or parameter; opaque for internal errors.
    pub message: String,
}

/// An error answer: `status` with an [`ErrorBody`].
pub fn error_response(
    status: StatusCode,
    error: ErrorCode,
    message: impl Into<String>,
) -> Response {
    let body = ErrorBody {
        error,
        message: message.into(),
    };
    (status, Json(body)).into_response()
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

/// `Json<T>` whose rejections are API errors: 400 for a body that is not JSON (or not declared
/// as JSON), 413 for one over the size limit, 422 naming the field for JSON of the wrong shape.
///
/// The body is parsed as JSON first and then read into `T`, so a shape error names its field
/// (`amount: must be greater than zero`) without serde_json's line and column.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) =
            Json::<Value>::from_request(request, state)
                .await
                .map_err(|rejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::TooLarge(rejection.body_text())
                    } else {
                        ApiError::BadRequest(rejection.body_text())
                    }
                })?;
        serde_path_to_error::deserialize(value)
            .map(JsonBody)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))
    }
}

/// The answers [`JsonBody`] gives for a body it refuses.
impl<T> IntoResponses for JsonBody<T> {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        BTreeMap::from([
            (
                "400".to_string(),
                openapi::error("The body is not JSON, or not sent as `application/json`").into(),
            ),
            (
                "413".to_string(),
                openapi::error("The body is over the size limit").into(),
            ),
            (
                "422".to_string(),
                openapi::error("A field is missing or invalid; the message names it").into(),
            ),
        ])
    }
}

/// `Query<T>` whose rejections are 400 API errors naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// `Path<T>` whose rejections (a segment that is not UTF-8, say) are API errors.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(rejection) if rejection.status().is_server_error() => {
                Err(ApiError::Internal(anyhow::anyhow!(rejection.body_text())))
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `?limit=N` on list endpoints: the newest N rows, 100 unless asked. A limit outside
/// 1..=1000 is refused with a 400 naming it, not quietly changed: a client asking for 5000
/// rows should learn that it got at most 1000.
#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<i64>,
}

impl Page {
    pub const DEFAULT_LIMIT: i64 = 100;
    pub const MAX_LIMIT: i64 = 1000;

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(Self::DEFAULT_LIMIT)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let QueryParams(page) = QueryParams::<Page>::from_request_parts(parts, state).await?;
        if !(1..=Self::MAX_LIMIT).contains(&page.limit()) {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {}",
                Self::MAX_LIMIT
            )));
        }
        Ok(page)
    }
}

impl IntoParams for Page {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(Self::MAX_LIMIT))
            .default(Some(json!(Self::DEFAULT_LIMIT)));
        vec![
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("How many rows, newest first"))
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// The answer [`Page`] gives for a `limit` it refuses.
impl IntoResponses for Page {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        BTreeMap::from([(
            "400".to_string(),
            openapi::error("A query parameter is not valid; the message names it").into(),
        )])
    }
}

/// Wraps `router` in the layers every HTTP server of the suite has, outermost first:
/// - a request id, taken from `x-request-id` or made up, carried by the request's trace span
///   (so every log line about the request has it) and sent back in the response;
/// - load shedding: beyond `max_concurrency` requests at once, the next is answered 503 with
///   `Retry-After` at once instead of queueing without bound;
/// - a timeout: a request still running after `timeout` is answered 503;
/// - a body size limit (413 past `max_body_bytes`).
pub fn layers(router: Router, config: &HttpConfig) -> Router {
    let timeout = config.timeout;
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<_>| {
                        let id = request
                            .headers()
                            .get("x-request-id")
                            .and_then(|id| id.to_str().ok())
                            .unwrap_or_default();
                        tracing::info_span!(
                            "request",
                            http.method = %request.method(),
                            http.path = request.uri().path(),
                            request.id = id,
                        )
                    })
                    // A 503 from /readyz is an answer, not a failure; errors log themselves.
                    .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(HandleErrorLayer::new(move |error: BoxError| async move {
                overloaded(&error, timeout)
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(config.max_concurrency))
            .timeout(timeout)
            .layer(DefaultBodyLimit::max(config.max_body_bytes)),
    )
}

/// The answer when the layers refused or gave up on a request.
fn overloaded(error: &BoxError, timeout: Duration) -> Response {
    let (code, message) = if error.is::<tower::timeout::error::Elapsed>() {
        (
            ErrorCode::Timeout,
            format!("the request took longer than {timeout:?}"),
        )
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        (
            ErrorCode::Overloaded,
            "too many requests at once; try again shortly".to_string(),
        )
    } else {
        tracing::error!(error.message = %error, "request failed in a layer");
        (ErrorCode::Internal, "internal error".to_string())
    };
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

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

/// `/healthz` and `/readyz`, to be merged after [`layers`]: a probe is answered even when the
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

/// A JSON 405 for a known path asked with a method it does not serve; axum adds the `Allow`
/// header listing the methods it does serve.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    )
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

    use axum::{body::Body, routing::post};
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    fn config(max_concurrency: usize) -> HttpConfig {
        HttpConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            timeout: Duration::from_secs(2),
            max_concurrency,
            max_body_bytes: 64,
        }
    }

    fn request(path: &str) -> Request {
        Request::get(path).body(Body::empty()).unwrap()
    }

    async fn json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// A route that holds its request until released.
    fn held(entered: Arc<Notify>, release: Arc<Notify>) -> Router {
        Router::new().route(
            "/held",
            get(move || async move {
                entered.notify_one();
                release.notified().await;
                "done"
            }),
        )
    }

    #[tokio::test]
    async fn a_request_beyond_the_concurrency_limit_gets_a_quick_503_with_retry_after() {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let app = layers(held(entered.clone(), release.clone()), &config(1));
        let first = tokio::spawn(app.clone().oneshot(request("/held")));
        entered.notified().await;

        let refused = app.clone().oneshot(request("/held")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        assert_eq!(json(refused).await["error"], "overloaded");

        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    }

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

    #[tokio::test(start_paused = true)]
    async fn a_request_that_takes_too_long_is_answered_503_at_the_timeout() {
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let app = layers(held(entered, release), &config(8));
        let started = tokio::time::Instant::now();
        let answer = app.oneshot(request("/held")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(json(answer).await["error"], "timeout");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_413_json_error() {
        let echo = |JsonBody(body): JsonBody<serde_json::Value>| async move { Json(body) };
        let app = layers(Router::new().route("/echo", post(echo)), &config(8));
        let request = |text: String| {
            Request::post("/echo")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(text))
                .unwrap()
        };
        let small = app.clone().oneshot(request("[1]".into())).await.unwrap();
        assert_eq!(small.status(), StatusCode::OK);
        let large = app
            .oneshot(request(format!("[{}1]", "1,".repeat(64))))
            .await
            .unwrap();
        assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json(large).await["error"], "too_large");
    }

    #[tokio::test]
    async fn refused_queries_and_methods_get_json_errors() {
        let list = |page: Page| async move { Json(page.limit()) };
        let app = Router::new()
            .route("/list", get(list))
            .method_not_allowed_fallback(method_not_allowed);
        for (query, status) in [
            ("", StatusCode::OK),
            ("?limit=1000", StatusCode::OK),
            ("?limit=1001", StatusCode::BAD_REQUEST),
            ("?limit=0", StatusCode::BAD_REQUEST),
            ("?limit=false", StatusCode::BAD_REQUEST),
        ] {
            let path = format!("/list{query}");
            let answer = app.clone().oneshot(request(&path)).await.unwrap();
            assert_eq!(answer.status(), status, "{query}");
            if status != StatusCode::OK {
                let error = json(answer).await;
                assert_eq!(error["error"], "bad_request", "{query}: {error}");
                assert!(
                    error["message"].as_str().unwrap().contains("limit"),
                    "{error}"
                );
            }
        }
        let post = Request::post("/list").body(Body::empty()).unwrap();
        let refused = app.oneshot(post).await.unwrap();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()[header::ALLOW], "GET,HEAD");
        assert_eq!(json(refused).await["error"], "method_not_allowed");
    }

    #[tokio::test]
    async fn every_answer_carries_a_request_id_keeping_the_callers() {
        let app = layers(Router::new().route("/", get(|| async { "hi" })), &config(8));
        let made = app.clone().oneshot(request("/")).await.unwrap();
        let id = made.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let given = Request::get("/")
            .header("x-request-id", "abc-1")
            .body(Body::empty())
            .unwrap();
        let kept = app.oneshot(given).await.unwrap();
        assert_eq!(kept.headers()["x-request-id"], "abc-1");
    }
}
