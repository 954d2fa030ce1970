//! The order API: `POST /orders`, `GET /orders` (`?holderId=X` for one holder's),
//! `GET /orders/{id}`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::get,
};
use chrono::{DateTime, Utc};
use common_events::{Envelope, Event};
use rust_decimal::Decimal;
use saga_runtime::{
    http::{ApiError, JsonBody, Page, found, path_id},
    input::{self, Body},
    outbox,
};
use serde::{Deserialize, Serialize};

use crate::OrderService;

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    id: i64,
    holder_id: String,
    currency_id: Option<String>,
    amount: Decimal,
    status: String,
    reason: Option<String>,
    deadline: DateTime<Utc>,
    compensation: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The columns of [`OrderView`], as a literal so queries stay static strings.
macro_rules! columns {
    () => {
        "id, holder_id, currency_id, amount, status, reason, deadline, compensation, created_at, updated_at"
    };
}

pub fn routes(service: Arc<OrderService>) -> Router {
    Router::new()
        .route("/orders", get(list).post(create))
        .route("/orders/{id}", get(show))
        .with_state(service)
}

/// Creates the order and its `OrderCreated` in one transaction; the deadline is fixed here.
async fn create(
    State(service): State<Arc<OrderService>>,
    JsonBody(body): JsonBody<Body>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let holder_id = input::required_id(&body, "holderId")?;
    let currency_id = input::optional_id(&body, "currencyId")?;
    let amount = input::positive_amount(&body, "amount")?;
    let deadline = Utc::now() + service.deadline;

    let mut tx = service.pool.begin().await?;
    let order: OrderView = sqlx::query_as(concat!(
        "INSERT INTO orders (holder_id, currency_id, amount, deadline) VALUES ($1, $2, $3, $4)
         RETURNING ",
        columns!()
    ))
    .bind(&holder_id)
    .bind(&currency_id)
    .bind(amount)
    .bind(deadline)
    .fetch_one(&mut *tx)
    .await?;
    let created = Envelope::new(
        order.id,
        deadline,
        Event::OrderCreated {
            holder_id,
            currency_id,
            amount,
        },
    );
    outbox::append(&mut tx, &created).await?;
    tx.commit().await?;
    tracing::info!(order.id = order.id, event.id = %created.event_id, "order created");
    Ok((StatusCode::CREATED, Json(order)))
}

/// `?holderId=X` on `GET /orders`: only that holder's orders.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    holder_id: Option<String>,
}

/// The newest orders, all or one holder's.
async fn list(
    State(service): State<Arc<OrderService>>,
    Query(page): Query<Page>,
    Query(filter): Query<Filter>,
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

async fn show(
    State(service): State<Arc<OrderService>>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let missing = format!("order {id} not found");
    let row = sqlx::query_as(concat!("SELECT ", columns!(), " FROM orders WHERE id = $1"))
        .bind(path_id(&id, &missing)?)
        .fetch_optional(&service.pool)
        .await?;
    found(row, &missing)
}
