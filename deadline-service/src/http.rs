//! The deadline API: `GET /deadlines`, `GET /deadlines/{orderId}`. [`router`] builds the routes
//! and their OpenAPI description together.

use std::sync::Arc;

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use saga_runtime::{
    http::{ApiError, ErrorBody, Page, PathParam, found, path_id},
    openapi::string_enum,
};
use serde::Serialize;
use utoipa::{ToSchema, openapi::Object};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{DeadlineService, domain::Status};

/// One saga's deadline.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Deadline)]
pub struct DeadlineView {
    order_id: i64,
    deadline: DateTime<Utc>,
    /// `PENDING` until it fires or the saga ends first (`CANCELLED`).
    #[schema(schema_with = status_schema)]
    status: String,
    created_at: DateTime<Utc>,
    fired_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
}

fn status_schema() -> Object {
    string_enum(Status::ALL.map(Status::as_str))
}

/// The routes with their OpenAPI operations, built together so neither can change alone.
pub fn router() -> OpenApiRouter<Arc<DeadlineService>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
}

/// The newest sagas' deadlines.
#[utoipa::path(
    get,
    path = "/deadlines",
    operation_id = "listDeadlines",
    params(Page),
    responses(
        (status = OK, description = "The newest deadlines first", body = [DeadlineView]),
        Page,
    ),
)]
async fn list(
    State(service): State<Arc<DeadlineService>>,
    page: Page,
) -> Result<Json<Vec<DeadlineView>>, ApiError> {
    let deadlines = sqlx::query_as(
        "SELECT order_id, deadline, status, created_at, fired_at, cancelled_at
         FROM deadlines ORDER BY order_id DESC LIMIT $1",
    )
    .bind(page.limit())
    .fetch_all(&service.pool)
    .await?;
    Ok(Json(deadlines))
}

/// The deadline of one saga.
#[utoipa::path(
    get,
    path = "/deadlines/{orderId}",
    operation_id = "getDeadline",
    params(("orderId" = i64, Path, description = "The order's id")),
    responses(
        (status = OK, description = "The saga's deadline", body = DeadlineView),
        (status = NOT_FOUND, description = "No deadline for that order", body = ErrorBody),
    ),
)]
async fn show(
    State(service): State<Arc<DeadlineService>>,
    PathParam(order_id): PathParam<String>,
) -> Result<Json<DeadlineView>, ApiError> {
    let missing = format!("no deadline for order {order_id}");
    let row = sqlx::query_as(
        "SELECT order_id, deadline, status, created_at, fired_at, cancelled_at
         FROM deadlines WHERE order_id = $1",
    )
    .bind(path_id(&order_id, &missing)?)
    .fetch_optional(&service.pool)
    .await?;
    found(row, &missing)
}
