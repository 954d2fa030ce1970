//! The exchange API: `GET /exchanges`, `GET /exchanges/{orderId}`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use saga_runtime::http::{ApiError, Page, found, path_id};
use serde::Serialize;

use crate::ExchangeService;

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeView {
    order_id: i64,
    user_id: Option<String>,
    currency_id: Option<String>,
    amount: Option<Decimal>,
    point: Decimal,
    status: String,
    deadline: DateTime<Utc>,
    created_at: DateTime<Utc>,
    compensated_at: Option<DateTime<Utc>>,
}

macro_rules! columns {
    () => {
        "order_id, user_id, currency_id, amount, point, status, deadline, created_at, compensated_at"
    };
}

pub fn routes(service: Arc<ExchangeService>) -> Router {
    Router::new()
        .route("/exchanges", get(list))
        .route("/exchanges/{order_id}", get(show))
        .with_state(service)
}

async fn list(
    State(service): State<Arc<ExchangeService>>,
    Query(page): Query<Page>,
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

async fn show(
    State(service): State<Arc<ExchangeService>>,
    Path(order_id): Path<String>,
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
