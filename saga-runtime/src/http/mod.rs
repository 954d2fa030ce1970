//! HTTP pieces every service shares: the API's error type and error body (`errors`),
//! extractors whose rejections use that error format (`extract`: a JSON body, query
//! parameters, path parameters, a page of a list), the tower layers that keep a server
//! responsive under overload (`layers`), and the operational routes `/healthz`, `/readyz`
//! and `/metrics` (`routes`).
//!
//! Every answer that is not a success is a JSON [`ErrorBody`], whoever gives it: a handler, an
//! extractor refusing the request, the router (unknown route, method not allowed) or a layer.

mod errors;
mod extract;
mod layers;
mod routes;

pub use self::{
    errors::{ApiError, ErrorBody, ErrorCode, error_response, found, method_not_allowed, path_id},
    extract::{JsonBody, Page, PathParam, QueryParams},
    layers::layers,
    routes::{Probes, operational_routes, probe_routes},
};

/// The request header that makes a POST safe to send again: the same key places one order
/// (`POST /orders`), and lets the gateway try another instance after one failed.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What the tests of the HTTP parts share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::{sync::Arc, time::Duration};

    use axum::{Router, body::Body, extract::Request, response::Response, routing::get};
    use tokio::sync::Notify;

    use crate::config::HttpConfig;

    pub(crate) fn config(max_concurrency: usize) -> HttpConfig {
        HttpConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            timeout: Duration::from_secs(2),
            max_concurrency,
            max_body_bytes: 64,
        }
    }

    pub(crate) fn request(path: &str) -> Request {
        Request::get(path).body(Body::empty()).unwrap()
    }

    pub(crate) async fn json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// A route that holds its request until released.
    pub(crate) fn held(entered: Arc<Notify>, release: Arc<Notify>) -> Router {
        Router::new().route(
            "/held",
            get(move || async move {
                entered.notify_one();
                release.notified().await;
                "done"
            }),
        )
    }
}
