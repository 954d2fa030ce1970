//! An order as the API shows it, read from the `orders` table.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use saga_runtime::openapi::{DecimalText, string_enum};
use serde::Serialize;
use serde_json::Value;
use utoipa::{
    ToSchema,
    openapi::{Object, schema::SchemaType, schema::Type},
};

use crate::domain::{Compensation, Status};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Order)]
pub struct OrderView {
    pub id: i64,
    pub(crate) holder_id: String,
    pub(crate) currency_id: Option<String>,
    #[schema(value_type = DecimalText)]
    pub(crate) amount: Decimal,
    #[schema(schema_with = status_schema)]
    status: String,
    /// Why the order was rejected.
    reason: Option<String>,
    /// When the saga must have ended; fixed when the order is created.
    deadline: DateTime<Utc>,
    /// A rejected order's compensation: `PENDING` until its points are back, then `DONE`.
    #[schema(schema_with = compensation_schema)]
    compensation: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn status_schema() -> Object {
    string_enum(Status::ALL.map(Status::as_str))
}

fn compensation_schema() -> Object {
    let mut schema = string_enum(Compensation::ALL.map(Compensation::as_str));
    schema.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    schema
        .enum_values
        .get_or_insert_with(Vec::new)
        .push(Value::Null);
    schema
}

/// The columns of [`OrderView`], as a literal so queries stay static strings.
macro_rules! columns {
    () => {
        "id, holder_id, currency_id, amount, status, reason, deadline, compensation, created_at, updated_at"
    };
}
pub(crate) use columns;
