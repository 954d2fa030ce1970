//! The order API: `POST /orders`, `GET /orders` (`?holderId=X` for one holder's),
//! `GET /orders/{id}`. [`router`] builds the routes and their OpenAPI description together.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use saga_runtime::{
    http::{
        ApiError, ErrorBody, IDEMPOTENCY_KEY, JsonBody, Page, PathParam, QueryParams, found,
        path_id,
    },
    input::{Amount, Id},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    OrderService, domain,
    group_commit::{self, Placed},
    view::{OrderView, columns},
};

/// The routes with their OpenAPI operations, built together so neither can change alone.
pub fn router() -> OpenApiRouter<Arc<OrderService>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
}

/// A new order, as `POST /orders` takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    rename_all = "camelCase",
    expecting = "an object with holderId, amount and maybe currencyId"
)]
struct NewOrder {
    /// The holder whose points pay for the order.
    holder_id: Id,
    /// `100` and `200` trigger the demo's fault hooks (saga-rules §4 rule 10).
    currency_id: Option<Id>,
    amount: Amount,
}

/// Set on the answer to a retry: the order was placed by an earlier request with the key.
const REPLAYED: &str = "idempotent-replayed";

/// Places an order: its saga starts, with a deadline.
///
/// The order and its `OrderCreated` event are written in one transaction; the deadline is fixed
/// here and travels in every event of the saga. The order is `PENDING` until the saga ends.
///
/// With an `Idempotency-Key` header (1 to 255 visible ASCII characters, a UUID for example), a
/// retry whose answer was lost is safe: the same key and body give back the order the first
/// request placed (with `Idempotent-Replayed: true`), never a second saga; the same key with
/// another body is refused. A key names its order for as long as the order is kept.
#[utoipa::path(
    post,
    path = "/orders",
    operation_id = "createOrder",
    request_body = NewOrder,
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
            description = "Makes a retry safe: the same key and body place one order"),
    ),
    responses(
        (status = CREATED, description = "The order, `PENDING`; or the order placed earlier with the same `Idempotency-Key`", body = OrderView),
        (status = UNPROCESSABLE_ENTITY, description = "The body is invalid, or the `Idempotency-Key` was used for another order", body = ErrorBody),
        JsonBody<NewOrder>,
    ),
)]
async fn create(
    State(service): State<Arc<OrderService>>,
    headers: HeaderMap,
    JsonBody(order): JsonBody<NewOrder>,
) -> Result<Response, ApiError> {
    let new = domain::NewOrder {
        holder_id: order.holder_id.into_string(),
        currency_id: order.currency_id.map(Id::into_string),
        amount: order.amount.value(),
    };
    let order = group_commit::Order {
        placed: domain::place(&new, service.clock.now(), service.deadline),
        new,
        idempotency_key: idempotency_key(&headers)?,
    };
    Ok(match service.placing.place(order).await? {
        Placed::Created(order) => (StatusCode::CREATED, Json(order)).into_response(),
        Placed::Replayed(order) => (
            StatusCode::CREATED,
            [(REPLAYED, HeaderValue::from_static("true"))],
            Json(order),
        )
            .into_response(),
    })
}

/// The request's `Idempotency-Key`, if it has a valid one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key.to_string())),
        None => Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        )),
    }
}

/// `?holderId=X` on `GET /orders`: only that holder's orders.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct Filter {
    /// Only this holder's orders.
    holder_id: Option<String>,
}

/// The newest orders, all or one holder's.
#[utoipa::path(
    get,
    path = "/orders",
    operation_id = "listOrders",
    params(Filter, Page),
    responses(
        (status = OK, description = "The newest orders first", body = [OrderView]),
        Page,
    ),
)]
async fn list(
    State(service): State<Arc<OrderService>>,
    QueryParams(filter): QueryParams<Filter>,
    page: Page,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let query = match &filter.holder_id {
        Some(holder_id) => sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM orders WHERE holder_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(holder_id),
        None => sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM orders ORDER BY id DESC LIMIT $1"
        )),
    };
    let orders = query.bind(page.limit()).fetch_all(&service.pool).await?;
    Ok(Json(orders))
}

/// One order.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    operation_id = "getOrder",
    params(("id" = i64, Path, description = "The order's id")),
    responses(
        (status = OK, description = "The order", body = OrderView),
        (status = NOT_FOUND, description = "No such order", body = ErrorBody),
    ),
)]
async fn show(
    State(service): State<Arc<OrderService>>,
    PathParam(id): PathParam<String>,
) -> Result<Json<OrderView>, ApiError> {
    let missing = format!("order {id} not found");
    let row = sqlx::query_as(concat!("SELECT ", columns!(), " FROM orders WHERE id = $1"))
        .bind(path_id(&id, &missing)?)
        .fetch_optional(&service.pool)
        .await?;
    found(row, &missing)
}
