//! The tower layers every HTTP server of the suite has, which keep it responsive under
//! overload, and the answers they give when they refuse or give up on a request.

use std::time::Duration;

use axum::{
    BoxError, Router,
    error_handling::HandleErrorLayer,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use tower::{ServiceBuilder, limit::GlobalConcurrencyLimitLayer};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnFailure, TraceLayer},
};

use super::{ErrorCode, error_response};
use crate::config::HttpConfig;

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{body::Body, routing::get};
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;
    use crate::http::test_support::{config, held, json, request};

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
