//! The records of a saga as the public API returns them (`GET /orders/{id}`,
//! `/exchanges/{id}`, `/transactions/{id}`), with money as exact decimals.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: i64,
    pub holder_id: String,
    pub amount: Decimal,
    pub status: String,
    /// For a rejected order: `PENDING` until the compensation chain has finished, then `DONE`.
    pub compensation: Option<String>,
    pub created_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
}

/// The exchange of one saga (`EXCHANGED` or `COMPENSATED`), or the point service's record of
/// it (`USED`, `REFUNDED` or `REJECTED`): a status and the points involved.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub status: String,
    pub point: Decimal,
}

/// A point account (`GET /points/{userId}`): its balance, named as in `POST /points`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub user_id: String,
    pub point: Decimal,
}
