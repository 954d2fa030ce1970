//! The point API: `POST /points`, `GET /points`, `GET /points/{userId}`, `GET /transactions`,
//! `GET /transactions/{orderId}`. [`router`] builds the routes and their OpenAPI description
//! together.

use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use saga_runtime::{
    http::{ApiError, ErrorBody, JsonBody, Page, PathParam, found, path_id},
    input::{Amount, Id},
    openapi::{DecimalText, string_enum},
};
use serde::{Deserialize, Serialize};
use utoipa::{ToSchema, openapi::Object};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{PointService, domain::Status};

/// A point account.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Account)]
pub struct AccountView {
    user_id: String,
    /// The balance, named as in `POST /points {userId, point}`.
    #[schema(value_type = DecimalText)]
    point: Decimal,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// One saga's entry in the point ledger.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Transaction)]
pub struct TransactionView {
    order_id: i64,
    user_id: Option<String>,
    #[schema(value_type = DecimalText)]
    point: Decimal,
    /// `USED`: taken; `REFUNDED`: taken and given back; `REJECTED`: nothing taken.
    #[schema(schema_with = status_schema)]
    status: String,
    /// Why nothing was taken.
    reason: Option<String>,
    created_at: DateTime<Utc>,
    compensated_at: Option<DateTime<Utc>>,
}

fn status_schema() -> Object {
    string_enum(Status::ALL.map(Status::as_str))
}

/// The routes with their OpenAPI operations, built together so neither can change alone.
pub fn router() -> OpenApiRouter<Arc<PointService>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(transactions))
        .routes(routes!(transaction))
}

/// A new point account, as `POST /points` takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    rename_all = "camelCase",
    expecting = "an object with userId and point"
)]
struct NewAccount {
    user_id: Id,
    /// The opening balance.
    point: Amount,
}

/// Opens a point account.
///
/// An account that exists is a 409 and keeps its balance.
#[utoipa::path(
    post,
    path = "/points",
    operation_id = "openAccount",
    request_body = NewAccount,
    responses(
        (status = CREATED, description = "The account", body = AccountView),
        (status = CONFLICT, description = "The account exists; its balance is unchanged", body = ErrorBody),
        JsonBody<NewAccount>,
    ),
)]
async fn create(
    State(service): State<Arc<PointService>>,
    JsonBody(account): JsonBody<NewAccount>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let user_id = account.user_id.into_string();
    let account: Option<AccountView> = sqlx::query_as(
        "INSERT INTO points (user_id, balance) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING
         RETURNING user_id, balance AS point, created_at, updated_at",
    )
    .bind(&user_id)
    .bind(account.point.value())
    .fetch_optional(&service.pool)
    .await?;
    let account = account
        .ok_or_else(|| ApiError::Conflict(format!("point account {user_id} already exists")))?;
    tracing::info!(user.id = user_id, "point account opened");
    Ok((StatusCode::CREATED, Json(account)))
}

/// Point accounts, by user id.
#[utoipa::path(
    get,
    path = "/points",
    operation_id = "listAccounts",
    params(Page),
    responses(
        (status = OK, description = "Accounts in user id order", body = [AccountView]),
        Page,
    ),
)]
async fn list(
    State(service): State<Arc<PointService>>,
    page: Page,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let accounts = sqlx::query_as(
        "SELECT user_id, balance AS point, created_at, updated_at FROM points ORDER BY user_id LIMIT $1",
    )
    .bind(page.limit())
    .fetch_all(&service.pool)
    .await?;
    Ok(Json(accounts))
}

/// One account and its balance.
#[utoipa::path(
    get,
    path = "/points/{userId}",
    operation_id = "getAccount",
    params(("userId" = String, Path, description = "The account's user id")),
    responses(
        (status = OK, description = "The account", body = AccountView),
        (status = NOT_FOUND, description = "No such account", body = ErrorBody),
    ),
)]
async fn show(
    State(service): State<Arc<PointService>>,
    PathParam(user_id): PathParam<String>,
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

/// The point ledger: what each saga took or gave back, newest first.
#[utoipa::path(
    get,
    path = "/transactions",
    operation_id = "listTransactions",
    params(Page),
    responses(
        (status = OK, description = "The newest entries first", body = [TransactionView]),
        Page,
    ),
)]
async fn transactions(
    State(service): State<Arc<PointService>>,
    page: Page,
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

/// The ledger entry of one order.
#[utoipa::path(
    get,
    path = "/transactions/{orderId}",
    operation_id = "getTransaction",
    params(("orderId" = i64, Path, description = "The order's id")),
    responses(
        (status = OK, description = "The order's entry", body = TransactionView),
        (status = NOT_FOUND, description = "No entry for that order", body = ErrorBody),
    ),
)]
async fn transaction(
    State(service): State<Arc<PointService>>,
    PathParam(order_id): PathParam<String>,
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
