//! The gateway: one address (:8088) for the whole suite, as in the seed's walkthrough. Each
//! request goes to the service that owns its first path segment, unchanged, spread over the
//! service's instances (see [`upstream`]); the answer comes back unchanged. A service that is
//! down gives a 502 naming it, one that does not answer in time a 504. The gateway also serves what
//! needs all services at once: the saga view (`/sagas/{orderId}`, as JSON, an HTML timeline or
//! text) and the API description (`/openapi.json`).

mod render;
mod saga;
mod upstream;

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Json, Router,
    body::{Body, to_bytes},
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use saga_runtime::config::{HttpConfig, LogFormat, Vars};
use serde_json::{Value, json};
use upstream::{Timeouts, Upstream, UpstreamError};

const OPENAPI: &str = include_str!("../openapi.json");

pub struct Gateway {
    /// Service name (`order`, `exchange`, `point`, `deadline`) → its instances.
    upstreams: HashMap<&'static str, Upstream>,
    /// The largest request body passed on.
    max_body_bytes: usize,
}

/// The service that owns a path's first segment.
fn owner(segment: &str) -> Option<&'static str> {
    match segment {
        "orders" => Some("order"),
        "exchanges" => Some("exchange"),
        "points" | "transactions" => Some("point"),
        "deadlines" => Some("deadline"),
        _ => None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let vars = Vars::from_env();
    saga_runtime::telemetry::init(LogFormat::from_vars(&vars)?);
    let timeouts = Timeouts {
        connect: vars.millis("UPSTREAM_CONNECT_TIMEOUT_MS", Duration::from_secs(1))?,
        request: vars.millis("UPSTREAM_TIMEOUT_MS", Duration::from_secs(10))?,
    };
    let mut http = HttpConfig::from_vars(&vars, 8088)?;
    // An upstream that does not answer in time gets its own 504, naming it, before the
    // gateway's own timeout could answer a vaguer 503.
    http.timeout = http.timeout.max(timeouts.request + Duration::from_secs(1));
    let client = upstream::client(timeouts)?;
    // Each *_URL is one base URL or a comma-separated list of them, one per instance.
    let upstream = |service, urls: String| {
        Upstream::new(service, &urls, client.clone(), timeouts).map(|upstream| (service, upstream))
    };
    let upstreams = HashMap::from([
        upstream(
            "order",
            vars.parse("ORDER_URL", "http://127.0.0.1:8081".to_string())?,
        )?,
        upstream(
            "exchange",
            vars.parse("EXCHANGE_URL", "http://127.0.0.1:8082".to_string())?,
        )?,
        upstream(
            "point",
            vars.parse("POINT_URL", "http://127.0.0.1:8083".to_string())?,
        )?,
        upstream(
            "deadline",
            vars.parse("DEADLINE_URL", "http://127.0.0.1:8084".to_string())?,
        )?,
    ]);
    let gateway = Arc::new(Gateway {
        upstreams,
        max_body_bytes: http.max_body_bytes,
    });
    let app = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/openapi.json", get(openapi))
        .route("/sagas", get(sagas))
        .route("/sagas/{order_id}", get(show_saga))
        .fallback(forward)
        .with_state(gateway);
    let app = saga_runtime::http::layers(app, &http);
    let addr = http.addr;
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

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// What the client asked for: a page, text, or (by default) JSON.
enum Format {
    Html,
    Text,
    Json,
}

fn format(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("");
    if accept.contains("text/html") {
        Format::Html
    } else if accept.contains("text/plain") {
        Format::Text
    } else {
        Format::Json
    }
}

/// Recent sagas: a page linking to each timeline, or the orders as JSON.
async fn sagas(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let orders = gateway.upstreams["order"]
        .send(|client, base| client.get(format!("{base}/orders?limit=100")))
        .await;
    let orders: Vec<Value> = match orders {
        Ok(answer) => serde_json::from_slice(&answer.body).unwrap_or_default(),
        Err(e) => return e.into_response(),
    };
    match format(&headers) {
        Format::Html => Html(render::index(&orders)).into_response(),
        _ => Json(orders).into_response(),
    }
}

async fn show_saga(
    State(gateway): State<Arc<Gateway>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("order {order_id} not found"),
        )
    };
    let Ok(numeric) = order_id.parse::<i64>() else {
        return not_found();
    };
    match saga::assemble(&gateway, numeric).await {
        Ok(Some(view)) => match format(&headers) {
            Format::Html => Html(render::html(&view)).into_response(),
            Format::Text => render::text(&view).into_response(),
            Format::Json => Json(view).into_response(),
        },
        Ok(None) => not_found(),
        Err(message) => error(StatusCode::BAD_GATEWAY, "service_unavailable", message),
    }
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
    let Some(upstream) = owner(&segment).map(|service| &gateway.upstreams[service]) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {path}"),
        );
    };
    let method = request.method().clone();
    // The request id goes along, so the service's log lines carry the gateway's id.
    let passed_on: Vec<_> = [
        header::CONTENT_TYPE,
        HeaderName::from_static("x-request-id"),
    ]
    .into_iter()
    .filter_map(|name| Some((name.clone(), request.headers().get(&name)?.clone())))
    .collect();
    let body = match to_bytes(request.into_body(), gateway.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body over {} bytes", gateway.max_body_bytes),
            );
        }
    };
    let answer = upstream
        .send(|client, base| {
            let request = client
                .request(method.clone(), format!("{base}{path_and_query}"))
                .body(body.clone());
            passed_on.iter().fold(request, |request, (name, value)| {
                request.header(name, value)
            })
        })
        .await;
    match answer {
        Ok(answer) => {
            let mut response = (answer.status, Body::from(answer.body)).into_response();
            if let Some(content_type) = answer.content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

impl IntoResponse for UpstreamError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            UpstreamError::Down { .. } => (StatusCode::BAD_GATEWAY, "service_unavailable"),
            UpstreamError::TimedOut { .. } => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            UpstreamError::Failed { .. } => (StatusCode::BAD_GATEWAY, "upstream_failed"),
        };
        error(status, code, self.to_string())
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    let mut response = (status, Json(json!({ "error": code, "message": message }))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
