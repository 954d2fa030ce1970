//! The API description comes from the code: each service builds its routes and their OpenAPI
//! operations together (`utoipa_axum::OpenApiRouter`, one `#[utoipa::path]` per handler), so a
//! route cannot exist undescribed, and the gateway merges the services' documents into the one
//! it serves at `/openapi.json`.
//!
//! This module holds what the shared pieces add: the answers every operation can give whatever
//! its handler does (the layers' 503, an internal error's 500), written once as components and
//! referenced from every operation, and the schema of decimals as the API writes them.

use crate::{http::ErrorBody, service::Service};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        ComponentsBuilder, ContentBuilder, Object, ObjectBuilder, OpenApi, RefOr, Response,
        ResponseBuilder, Schema,
        header::HeaderBuilder,
        path::{Operation, PathItem},
        schema::{Ref, Type},
    },
};

/// A service's part of the API document: its operations, tagged with the service's name, each
/// also answering 500 (an internal error) and 503 ([`behind_layers`]).
pub fn service_document<S: Service>() -> OpenApi {
    let mut api = S::api().into_openapi();
    for operation in operations(&mut api) {
        operation.tags = Some(vec![S::NAME.to_string()]);
    }
    let internal = error("An internal error; the cause is in the service's log");
    add_shared_response(&mut api, "500", "Internal", internal);
    behind_layers(&mut api);
    api
}

/// Adds to every operation of `api` the 503 of the shared layers ([`crate::http::layers`]): too
/// many requests at once, or one that ran out of time.
pub fn behind_layers(api: &mut OpenApi) {
    let mut unavailable = error(
        "Too many requests at once (`overloaded`) or the request took too long (`timeout`); \
         try again after `Retry-After` seconds",
    );
    unavailable.headers.insert(
        "Retry-After".to_string(),
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
            .description(Some("Seconds to wait before trying again"))
            .build()
            .into(),
    );
    add_shared_response(api, "503", "Unavailable", unavailable);
}

/// Every operation of `api`, whatever its method.
pub fn operations(api: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    api.paths
        .paths
        .values_mut()
        .flat_map(|item: &mut PathItem| {
            [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
        })
}

/// Registers `response` as the component `name`, answered under `status` by every operation.
pub fn add_shared_response(api: &mut OpenApi, status: &str, name: &str, response: Response) {
    let components = api
        .components
        .get_or_insert_with(|| ComponentsBuilder::new().build());
    components
        .responses
        .insert(name.to_string(), response.into());
    for operation in operations(api) {
        operation.responses.responses.insert(
            status.to_string(),
            RefOr::Ref(Ref::from_response_name(name)),
        );
    }
}

/// An answer with the API's error body.
pub fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
}

/// A string that is one of `values`, as a status column holds.
pub fn string_enum(values: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

/// How the API writes an exact decimal (money, points): as a string, so no digit is lost to a
/// float. Fields of type `Decimal` name it with
/// `#[schema(value_type = DecimalText)]`.
pub struct DecimalText;

impl PartialSchema for DecimalText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[0-9]+(?:\.[0-9]{1,4})?$"))
            .description(Some("An exact decimal, written as a string"))
            .examples(["9500", "12.75"])
            .into()
    }
}

impl ToSchema for DecimalText {
    fn name() -> std::borrow::Cow<'static, str> {
        "Decimal".into()
    }
}
