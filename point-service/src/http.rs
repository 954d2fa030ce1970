//! The point API: `POST /points`, `GET /points`, `GET /points/{userId}`, `GET /transactions`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::get,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use saga_runtime::{
    http::{ApiError, JsonBody, Page, found, path_id},
    input::{self, Body},
};
use serde::Serialize;

use crate::PointService;

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    user_id: String,
    /// The balance, named as in `POST /points {userId, point}`.
    point: Decimal,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    order_id: i64,
    user_id: Option<String>,
    point: Decimal,
    status: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    compensated_at: Option<DateTime<Utc>>,
}

pub fn routes(service: Arc<PointService>) -> Router {
    Router::new()
        .route("/points", get(list).post(create))
        .route("/points/{user_id}", get(show))
        .route("/transactions", get(transactions))
        .route("/transactions/{order_id}", get(transaction))
        .with_state(service)
}

/// Opens an account; an existing one is a 409 and keeps its balance.
async fn create(
    State(service): State<Arc<PointService>>,
    JsonBody(body): JsonBody<Body>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let user_id = input::required_id(&body, "userId")?;
    let point = input::positive_amount(&body, "point")?;
    let account: Option<AccountView> = sqlx::query_as(
        "INSERT INTO points (user_id, balance) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING
         RETURNING user_id, balance AS point, created_at, updated_at",
    )
    .bind(&user_id)
    .bind(point)
    .fetch_optional(&service.pool)
    .await?;
    let account = account
        .ok_or_else(|| ApiError::Conflict(format!("point account {user_id} already exists")))?;
    tracing::info!(user.id = user_id, "point account opened");
    Ok((StatusCode::CREATED, Json(account)))
}

async fn list(
    State(service): State<Arc<PointService>>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let accounts = sqlx::query_as(
        "SELECT user_id, balance AS point, created_at, updated_at FROM points ORDER BY user_id LIMIT $1",
    )
    .bind(page.limit())
    .fetch_all(&service.pool)
    .await?;
    Ok(Json(accounts))
}

async fn show(
    State(service): State<Arc<PointService>>,
    Path(user_id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    sqlx::query_as(
        "SELECT user_id, balance AS point, created_at, updated_at FROM points WHERE user_id = $1",
    )
    .bind(&user_id)
    .fetch_optional(&service.pool)
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::NotFound(format!("point account {user_id} not found")))
}

async fn transactions(
    State(service): State<Arc<PointService>>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<TransactionView>>, ApiError> {
    let rows = sqlx::query_as(
        "SELECT order_id, user_id, point, status, reason, created_at, compensated_at
         FROM point_transactions ORDER BY order_id DESC LIMIT $1",
    )
    .bind(page.limit())
    .fetch_all(&service.pool)
    .await?;
    Ok(Json(rows))
}

async fn transaction(
    State(service): State<Arc<PointService>>,
    Path(order_id): Path<String>,
) -> Result<Json<TransactionView>, ApiError> {
    let missing = format!("no point transaction for order {order_id}");
    let row = sqlx::query_as(
        "SELECT order_id, user_id, point, status, reason, created_at, compensated_at
         FROM point_transactions WHERE order_id = $1",
    )
    .bind(path_id(&order_id, &missing)?)
    .fetch_optional(&service.pool)
    .await?;
    found(row, &missing)
}
