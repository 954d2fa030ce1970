//! The deadline API: `GET /deadlines`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use chrono::{DateTime, Utc};
use saga_runtime::http::{ApiError, Page, found, path_id};
use serde::Serialize;

use crate::DeadlineService;

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DeadlineView {
    order_id: i64,
    deadline: DateTime<Utc>,
    status: String,
    created_at: DateTime<Utc>,
    fired_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
}

pub fn routes(service: Arc<DeadlineService>) -> Router {
    Router::new()
        .route("/deadlines", get(list))
        .route("/deadlines/{order_id}", get(show))
        .with_state(service)
}

async fn list(
    State(service): State<Arc<DeadlineService>>,
    Query(page): Query<Page>,
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

async fn show(
    State(service): State<Arc<DeadlineService>>,
    Path(order_id): Path<String>,
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
