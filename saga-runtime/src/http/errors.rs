//! The API's errors: one JSON body ([`ErrorBody`]) for every answer that is not a success,
//! whoever gives it, and the [`ApiError`] handlers return, whose variants mean HTTP outcomes.
//! Server errors are logged with their cause and answered with an opaque message.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// What a request can end in besides success. Client errors name the problem; server errors
/// are logged with their cause and answered with an opaque message.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::Unprocessable(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidInput)
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error.message = format!("{cause:#}"), "request failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        error_response(status, code, message)
    }
}

/// The kind of failure an error answer reports, for a client to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidInput,
    NotFound,
    MethodNotAllowed,
    Conflict,
    TooLarge,
    Overloaded,
    Timeout,
    Internal,
    /// From the gateway: the service is not answering.
    ServiceUnavailable,
    /// From the gateway: the service did not answer in time.
    UpstreamTimeout,
    /// From the gateway: the service failed while answering.
    UpstreamFailed,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// What is wrong, naming the field or parameter; opaque for internal errors.
    pub message: String,
}

/// An error answer: `status` with an [`ErrorBody`].
pub fn error_response(
    status: StatusCode,
    error: ErrorCode,
    message: impl Into<String>,
) -> Response {
    let body = ErrorBody {
        error,
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

/// An id from a request path. One that is not a number names nothing, so it is a 404 like an
/// id that is not there; `missing` says what was not found.
pub fn path_id(raw: &str, missing: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(missing.to_string()))
}

/// The row a lookup found, or a 404 saying what is `missing`.
pub fn found<T>(row: Option<T>, missing: &str) -> Result<Json<T>, ApiError> {
    row.map(Json)
        .ok_or_else(|| ApiError::NotFound(missing.to_string()))
}

/// A JSON 405 for a known path asked with a method it does not serve; axum adds the `Allow`
/// header listing the methods it does serve.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    )
}
