//! The gateway: one address (:8088) for the whole suite, as in the seed's walkthrough. Each
//! request goes to the service that owns its first path segment, unchanged; the answer comes
//! back unchanged. A service that is down gives a 502 naming it.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Json, Router,
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use saga_runtime::config::env_or;
use serde_json::json;

/// The largest request body passed on; the API's bodies are a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

struct Gateway {
    client: reqwest::Client,
    /// First path segment → base URL of the service that owns it.
    routes: HashMap<&'static str, String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_runtime::telemetry::init();
    let order = env_or("ORDER_URL", "http://127.0.0.1:8081".to_string())?;
    let exchange = env_or("EXCHANGE_URL", "http://127.0.0.1:8082".to_string())?;
    let point = env_or("POINT_URL", "http://127.0.0.1:8083".to_string())?;
    let deadline = env_or("DEADLINE_URL", "http://127.0.0.1:8084".to_string())?;
    let routes = HashMap::from([
        ("orders", order),
        ("exchanges", exchange),
        ("points", point.clone()),
        ("transactions", point),
        ("deadlines", deadline),
    ]);
    let gateway = Arc::new(Gateway {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build HTTP client")?,
        routes,
    });
    let app = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .fallback(forward)
        .with_state(gateway);
    let addr: SocketAddr = format!(
        "{}:{}",
        env_or("HOST", "0.0.0.0".to_string())?,
        env_or("PORT", 8088u16)?
    )
    .parse()
    .context("HOST/PORT do not form an address")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "gateway started");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let signal = saga_runtime::service::shutdown_signal().await;
            tracing::info!(signal, "shutting down");
        })
        .await
        .context("gateway failed")
}

async fn forward(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let path = request.uri().path();
    let segment = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let Some(base) = gateway.routes.get(segment.as_str()) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {}", request.uri().path()),
        );
    };
    let method = request.method().clone();
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let body = match to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_request",
                "request body too large".into(),
            );
        }
    };
    let mut upstream = gateway
        .client
        .request(method, format!("{base}{path_and_query}"))
        .body(body);
    if let Some(content_type) = content_type {
        upstream = upstream.header(header::CONTENT_TYPE, content_type);
    }
    match upstream.send().await {
        Ok(answer) => {
            let status = answer.status();
            let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
            match answer.bytes().await {
                Ok(bytes) => {
                    let mut response = (status, Body::from(bytes)).into_response();
                    if let Some(content_type) = content_type {
                        response
                            .headers_mut()
                            .insert(header::CONTENT_TYPE, content_type);
                    }
                    response
                }
                Err(e) => upstream_down(&segment, base, &e),
            }
        }
        Err(e) => upstream_down(&segment, base, &e),
    }
}

fn upstream_down(segment: &str, base: &str, cause: &reqwest::Error) -> Response {
    tracing::warn!(upstream = base, error.message = %cause, "service unreachable");
    error(
        StatusCode::BAD_GATEWAY,
        "service_unavailable",
        format!("the service behind /{segment} ({base}) is not answering"),
    )
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    let mut response = (status, Json(json!({ "error": code, "message": message }))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
