//! The exchange API: `GET /exchanges`, `GET /exchanges/{orderId}`. [`router`] builds the routes
//! and their OpenAPI description together.

use std::sync::Arc;

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use saga_runtime::{
    http::{ApiError, ErrorBody, Page, PathParam, found, path_id},
    openapi::{DecimalText, string_enum},
};
use serde::Serialize;
use utoipa::{ToSchema, openapi::Object};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{ExchangeService, domain::Status};

/// One saga's exchange of currency into points.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Exchange)]
pub struct ExchangeView {
    order_id: i64,
    user_id: Option<String>,
    currency_id: Option<String>,
    #[schema(value_type = Option<DecimalText>)]
    amount: Option<Decimal>,
    /// The points the amount was exchanged into.
    #[schema(value_type = DecimalText)]
    point: Decimal,
    /// `COMPENSATED` once the saga was rejected.
    #[schema(schema_with = status_schema)]
    status: String,
    deadline: DateTime<Utc>,
    created_at: DateTime<Utc>,
    compensated_at: Option<DateTime<Utc>>,
}

fn status_schema() -> Object {
    string_enum(Status::ALL.map(Status::as_str))
}

macro_rules! columns {
    () => {
        "order_id, user_id, currency_id, amount, point, status, deadline, created_at, compensated_at"
    };
}

/// The routes with their OpenAPI operations, built together so neither can change alone.
pub fn router() -> OpenApiRouter<Arc<ExchangeService>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
}

/// The newest exchanges.
#[utoipa::path(
    get,
    path = "/exchanges",
    operation_id = "listExchanges",
    params(Page),
    responses(
        (status = OK, description = "The newest exchanges first", body = [ExchangeView]),
        Page,
    ),
)]
async fn list(
    State(service): State<Arc<ExchangeService>>,
    page: Page,
) -> Result<Json<Vec<ExchangeView>>, ApiError> {
    let exchanges = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM exchanges ORDER BY order_id DESC LIMIT $1"
    ))
    .bind(page.limit())
    .fetch_all(&service.pool)
    .await?;
    Ok(Json(exchanges))
}

/// The exchange of one order.
#[utoipa::path(
    get,
    path = "/exchanges/{orderId}",
    operation_id = "getExchange",
    params(("orderId" = i64, Path, description = "The order's id")),
    responses(
        (status = OK, description = "The order's exchange", body = ExchangeView),
        (status = NOT_FOUND, description = "No exchange for that order", body = ErrorBody),
    ),
)]
async fn show(
    State(service): State<Arc<ExchangeService>>,
    PathParam(order_id): PathParam<String>,
) -> Result<Json<ExchangeView>, ApiError> {
    let missing = format!("no exchange for order {order_id}");
    let row = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM exchanges WHERE order_id = $1"
    ))
    .bind(path_id(&order_id, &missing)?)
    .fetch_optional(&service.pool)
    .await?;
    found(row, &missing)
}
