//! The gateway: one address (:8088) for the whole suite, as in the seed's walkthrough. Each
//! request goes to the service that owns its first path segment, unchanged, spread over the
//! service's instances (see [`upstream`]); the answer comes back unchanged. A service that is
//! down gives a 502 naming it, one that does not answer in time a 504. The gateway also serves what
//! needs all services at once: the saga view (`/sagas/{orderId}`, as JSON, an HTML timeline or
//! text) and the API description (`/openapi.json`, see [`api_document`]).

mod api_document;
mod render;
mod saga;
mod upstream;

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Json,
    body::{Body, Bytes, to_bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use deadline_service::DeadlineService;
use exchange_service::ExchangeService;
use order_service::OrderService;
use point_service::PointService;
use saga_runtime::{
    Service,
    config::{HttpConfig, LogFormat, Vars},
    http::{ErrorBody, ErrorCode, IDEMPOTENCY_KEY, PathParam, error_response, method_not_allowed},
};
use serde::Serialize;
use serde_json::Value;
use upstream::{Timeouts, Upstream, UpstreamError};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

pub struct Gateway {
    /// Service name (`order`, `exchange`, `point`, `deadline`) → its instances.
    upstreams: HashMap<&'static str, Upstream>,
    /// The largest request body passed on.
    max_body_bytes: usize,
    /// The API document, written once at start.
    api_document: Bytes,
}

/// The first path segments the gateway forwards, each with the service that owns it.
const OWNERS: [(&str, &str); 5] = [
    ("orders", "order"),
    ("exchanges", "exchange"),
    ("points", "point"),
    ("transactions", "point"),
    ("deadlines", "deadline"),
];

/// The service that owns a path's first segment.
fn owner(segment: &str) -> Option<&'static str> {
    OWNERS
        .iter()
        .find(|(owned, _)| *owned == segment)
        .map(|(_, service)| *service)
}

/// The gateway's port unless `PORT` says otherwise.
const PORT: u16 = 8088;

/// Where the gateway finds service `S` unless told otherwise: on this host, at its default port.
fn local_url<S: Service>() -> String {
    format!("http://127.0.0.1:{}", S::PORT)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let vars = Vars::from_env();
    saga_runtime::telemetry::init(LogFormat::from_vars(&vars)?);
    let timeouts = Timeouts {
        connect: vars.millis("UPSTREAM_CONNECT_TIMEOUT_MS", Duration::from_secs(1))?,
        request: vars.millis("UPSTREAM_TIMEOUT_MS", Duration::from_secs(10))?,
    };
    let shutdown_timeout = saga_runtime::config::shutdown_timeout(&vars)?;
    let mut http = HttpConfig::from_vars(&vars, PORT)?;
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
            vars.parse("ORDER_URL", local_url::<OrderService>())?,
        )?,
        upstream(
            "exchange",
            vars.parse("EXCHANGE_URL", local_url::<ExchangeService>())?,
        )?,
        upstream(
            "point",
            vars.parse("POINT_URL", local_url::<PointService>())?,
        )?,
        upstream(
            "deadline",
            vars.parse("DEADLINE_URL", local_url::<DeadlineService>())?,
        )?,
    ]);
    let (routes, mut own_api) = router().split_for_parts();
    let (probe, probe_api) = probe().split_for_parts();
    own_api.merge(probe_api);
    let api_document = serde_json::to_vec(&api_document::document(own_api))
        .context("cannot write the API document")?;
    let gateway = Arc::new(Gateway {
        upstreams,
        max_body_bytes: http.max_body_bytes,
        api_document: api_document.into(),
    });
    let app = routes
        .fallback(forward)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway.clone());
    let app = saga_runtime::http::layers(app, &http).merge(probe.with_state(gateway));
    let addr = http.addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "gateway started");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let signal = saga_runtime::service::shutdown_signal().await;
            tracing::info!(signal, "shutting down");
            saga_runtime::service::exit_after(shutdown_timeout);
        })
        .await
        .context("gateway failed")
}

/// The gateway's own routes with their OpenAPI operations, built together, but for [`probe`];
/// every other path is forwarded.
fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new()
        .routes(routes!(openapi))
        .routes(routes!(sagas))
        .routes(routes!(show_saga))
}

/// The health probe, served outside the load-shedding limit: a busy gateway is alive, and an
/// orchestrator must not restart it for being busy.
fn probe() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The gateway answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "gatewayHealth",
    responses((status = OK, description = "The gateway is up", body = Health)),
)]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "apiDocument",
    responses((status = OK, description = "The OpenAPI document", body = Object)),
)]
async fn openapi(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        gateway.api_document.clone(),
    )
        .into_response()
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

/// Recent sagas: the newest 100 orders as JSON, or a page linking to each saga's timeline for
/// `Accept: text/html`.
#[utoipa::path(
    get,
    path = "/sagas",
    operation_id = "listSagas",
    responses(
        (status = OK, description = "The newest orders first", content(
            ([order_service::view::OrderView] = "application/json"),
            (String = "text/html"),
        )),
        (status = BAD_GATEWAY, description = "The order service is not answering", body = ErrorBody),
    ),
)]
async fn sagas(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let orders = gateway.upstreams["order"]
        .send(true, |client, base| {
            client.get(format!("{base}/orders?limit=100"))
        })
        .await;
    let orders: Vec<Value> = match orders {
        Ok(answer) => serde_json::from_slice(&answer.body).unwrap_or_default(),
        Err(e) => return e.into_response(),
    };
    match format(&headers) {
        Format::Html => page(render::index(&orders)),
        _ => Json(orders).into_response(),
    }
}

/// One saga, assembled from every service: its events in order, who emitted and who consumed
/// each, what was ignored and why, its deadline and how it ended.
///
/// JSON by default; an HTML timeline for `Accept: text/html`, plain text for
/// `Accept: text/plain`.
#[utoipa::path(
    get,
    path = "/sagas/{orderId}",
    operation_id = "getSaga",
    params(("orderId" = i64, Path, description = "The order's id")),
    responses(
        (status = OK, description = "The saga", content(
            (saga::SagaView = "application/json"),
            (String = "text/html"),
            (String = "text/plain"),
        )),
        (status = NOT_FOUND, description = "No such order", body = ErrorBody),
        (status = BAD_GATEWAY, description = "The order service is not answering", body = ErrorBody),
    ),
)]
async fn show_saga(
    State(gateway): State<Arc<Gateway>>,
    PathParam(order_id): PathParam<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("order {order_id} not found"),
        )
    };
    let Ok(numeric) = order_id.parse::<i64>() else {
        return not_found();
    };
    match saga::assemble(&gateway, numeric).await {
        Ok(Some(view)) => match format(&headers) {
            Format::Html => page(render::html(&view)),
            Format::Text => render::text(&view).into_response(),
            Format::Json => Json(view).into_response(),
        },
        Ok(None) => not_found(),
        Err(message) => error(
            StatusCode::BAD_GATEWAY,
            ErrorCode::ServiceUnavailable,
            message,
        ),
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
            ErrorCode::NotFound,
            format!("no route for {path}"),
        );
    };
    let method = request.method().clone();
    let repeatable = method == Method::GET || request.headers().contains_key(IDEMPOTENCY_KEY);
    // The request id goes along, so the service's log lines carry the gateway's id; the
    // idempotency key, so that a retried POST places one order.
    let passed_on: Vec<_> = [
        header::CONTENT_TYPE,
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static(IDEMPOTENCY_KEY),
    ]
    .into_iter()
    .filter_map(|name| Some((name.clone(), request.headers().get(&name)?.clone())))
    .collect();
    let body = match to_bytes(request.into_body(), gateway.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("request body over {} bytes", gateway.max_body_bytes),
            );
        }
    };
    let answer = upstream
        .send(repeatable, |client, base| {
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
            response.headers_mut().extend(answer.headers);
            response
        }
        Err(e) => e.into_response(),
    }
}

impl IntoResponse for UpstreamError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            UpstreamError::Down { .. } => (StatusCode::BAD_GATEWAY, ErrorCode::ServiceUnavailable),
            UpstreamError::TimedOut { .. } => {
                (StatusCode::GATEWAY_TIMEOUT, ErrorCode::UpstreamTimeout)
            }
            UpstreamError::Failed { .. } => (StatusCode::BAD_GATEWAY, ErrorCode::UpstreamFailed),
        };
        error(status, code, self.to_string())
    }
}

/// A rendered page, or an opaque 500 with the cause logged.
fn page(rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error.message = %e, "cannot render a page");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "cannot render the page".into(),
            )
        }
    }
}

/// An error answer of the gateway's own, never to be cached: the next request may succeed.
fn error(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let mut response = error_response(status, code, message);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ports_are_the_local_stacks_port_table() {
        use harness::ports::port;
        assert_eq!(port("gateway", 1), Some(PORT));
        assert_eq!(port("order", 1), Some(OrderService::PORT));
        assert_eq!(port("exchange", 1), Some(ExchangeService::PORT));
        assert_eq!(port("point", 1), Some(PointService::PORT));
        assert_eq!(port("deadline", 1), Some(DeadlineService::PORT));
    }
}
