//! Extractors whose rejections use the API's error format: a JSON body, query parameters,
//! path parameters, and a page of a list (`?limit=N`).

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{FromRequest, FromRequestParts, Path, Query, Request},
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use utoipa::{
    IntoParams, IntoResponses,
    openapi::{
        ObjectBuilder, RefOr, Required,
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{KnownFormat, SchemaFormat, Type},
    },
};

use super::ApiError;
use crate::openapi;

/// `Json<T>` whose rejections are API errors: 400 for a body that is not JSON (or not declared
/// as JSON), 413 for one over the size limit, 422 naming the field for JSON of the wrong shape.
///
/// The body is parsed as JSON first and then read into `T`, so a shape error names its field
/// (`amount: must be greater than zero`) without serde_json's line and column.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) =
            Json::<Value>::from_request(request, state)
                .await
                .map_err(|rejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::TooLarge(rejection.body_text())
                    } else {
                        ApiError::BadRequest(rejection.body_text())
                    }
                })?;
        serde_path_to_error::deserialize(value)
            .map(JsonBody)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))
    }
}

/// The answers [`JsonBody`] gives for a body it refuses.
impl<T> IntoResponses for JsonBody<T> {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        BTreeMap::from([
            (
                "400".to_string(),
                openapi::error("The body is not JSON, or not sent as `application/json`").into(),
            ),
            (
                "413".to_string(),
                openapi::error("The body is over the size limit").into(),
            ),
            (
                "422".to_string(),
                openapi::error("A field is missing or invalid; the message names it").into(),
            ),
        ])
    }
}

/// `Query<T>` whose rejections are 400 API errors naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// `Path<T>` whose rejections (a segment that is not UTF-8, say) are API errors.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(rejection) if rejection.status().is_server_error() => {
                Err(ApiError::Internal(anyhow::anyhow!(rejection.body_text())))
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `?limit=N` on list endpoints: the newest N rows, 100 unless asked. A limit outside
/// 1..=1000 is refused with a 400 naming it, not quietly changed: a client asking for 5000
/// rows should learn that it got at most 1000.
#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<i64>,
}

impl Page {
    pub const DEFAULT_LIMIT: i64 = 100;
    pub const MAX_LIMIT: i64 = 1000;

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(Self::DEFAULT_LIMIT)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let QueryParams(page) = QueryParams::<Page>::from_request_parts(parts, state).await?;
        if !(1..=Self::MAX_LIMIT).contains(&page.limit()) {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {}",
                Self::MAX_LIMIT
            )));
        }
        Ok(page)
    }
}

impl IntoParams for Page {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(Self::MAX_LIMIT))
            .default(Some(json!(Self::DEFAULT_LIMIT)));
        vec![
            ParameterBuilder::new()
                .name("limit")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("How many rows, newest first"))
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// The answer [`Page`] gives for a `limit` it refuses.
impl IntoResponses for Page {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        BTreeMap::from([(
            "400".to_string(),
            openapi::error("A query parameter is not valid; the message names it").into(),
        )])
    }
}

#[cfg(test)]
mod tests {
    use axum::{
        Router,
        body::Body,
        http::header,
        routing::{get, post},
    };
    use tower::ServiceExt;

    use super::*;
    use crate::http::{
        layers, method_not_allowed,
        test_support::{config, json, request},
    };

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_413_json_error() {
        let echo = |JsonBody(body): JsonBody<serde_json::Value>| async move { Json(body) };
        let app = layers(Router::new().route("/echo", post(echo)), &config(8));
        let request = |text: String| {
            Request::post("/echo")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(text))
                .unwrap()
        };
        let small = app.clone().oneshot(request("[1]".into())).await.unwrap();
        assert_eq!(small.status(), StatusCode::OK);
        let large = app
            .oneshot(request(format!("[{}1]", "1,".repeat(64))))
            .await
            .unwrap();
        assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json(large).await["error"], "too_large");
    }

    #[tokio::test]
    async fn refused_queries_and_methods_get_json_errors() {
        let list = |page: Page| async move { Json(page.limit()) };
        let app = Router::new()
            .route("/list", get(list))
            .method_not_allowed_fallback(method_not_allowed);
        for (query, status) in [
            ("", StatusCode::OK),
            ("?limit=1000", StatusCode::OK),
            ("?limit=1001", StatusCode::BAD_REQUEST),
            ("?limit=0", StatusCode::BAD_REQUEST),
            ("?limit=false", StatusCode::BAD_REQUEST),
        ] {
            let path = format!("/list{query}");
            let answer = app.clone().oneshot(request(&path)).await.unwrap();
            assert_eq!(answer.status(), status, "{query}");
            if status != StatusCode::OK {
                let error = json(answer).await;
                assert_eq!(error["error"], "bad_request", "{query}: {error}");
                assert!(
                    error["message"].as_str().unwrap().contains("limit"),
                    "{error}"
                );
            }
        }
        let post = Request::post("/list").body(Body::empty()).unwrap();
        let refused = app.oneshot(post).await.unwrap();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()[header::ALLOW], "GET,HEAD");
        assert_eq!(json(refused).await["error"], "method_not_allowed");
    }
}
