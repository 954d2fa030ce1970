//! The API document the gateway serves at `/openapi.json`, made from the code: the gateway's own
//! routes and each service's part ([`service_document`]), which every service builds
//! from its handlers and types. Nothing in it is written by hand, so it cannot drift from what
//! the services do.
//!
//! A path the gateway forwards answers what its service answers, and also 502 (the service is
//! not answering or failed) and 504 (it did not answer in time).

use deadline_service::DeadlineService;
use exchange_service::ExchangeService;
use order_service::OrderService;
use point_service::PointService;
use saga_runtime::openapi::{
    add_shared_response, behind_layers, error, operations, service_document,
};
use utoipa::openapi::{InfoBuilder, OpenApi};

/// The whole document, from the gateway's own part `own`.
pub fn document(own: OpenApi) -> OpenApi {
    let mut api = own;
    for operation in operations(&mut api) {
        operation.tags = Some(vec!["gateway".to_string()]);
    }
    behind_layers(&mut api);
    for mut service in [
        service_document::<OrderService>(),
        service_document::<ExchangeService>(),
        service_document::<PointService>(),
        service_document::<DeadlineService>(),
    ] {
        let down = error(
            "The service is not answering (`service_unavailable`) or failed while answering (`upstream_failed`)",
        );
        add_shared_response(&mut service, "502", "ServiceDown", down);
        let late = error("The service did not answer in time (`upstream_timeout`)");
        add_shared_response(&mut service, "504", "ServiceTimedOut", late);
        api.merge(service);
    }
    api.info = InfoBuilder::new()
        .title("Saga suite")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "A choreographed saga with deadlines: an order converts an amount of currency into \
             points and pays with the holder's points. Every error answer is an `Error` body.",
        ))
        .build();
    api
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn document_json() -> Value {
        let mut own = crate::router().into_openapi();
        own.merge(crate::probe().into_openapi());
        serde_json::to_value(document(own)).unwrap()
    }

    #[test]
    fn the_document_describes_every_route_the_gateway_serves_and_nothing_else() {
        let document = document_json();
        let paths: BTreeSet<&str> = document["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for own in ["/healthz", "/openapi.json", "/sagas", "/sagas/{orderId}"] {
            assert!(paths.contains(own), "{own} is described");
        }
        for (segment, service) in crate::OWNERS {
            assert!(
                paths.contains(format!("/{segment}").as_str()),
                "/{segment} ({service}) is described"
            );
        }
        for path in paths {
            let segment = path.trim_start_matches('/').split('/').next().unwrap();
            let own = ["healthz", "openapi.json", "sagas"].contains(&segment);
            assert!(
                own || crate::owner(segment).is_some(),
                "{path} is described but the gateway does not route it"
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_and_every_reference_resolves() {
        let document = document_json();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let text = document.to_string();
        for reference in text.split(r##""$ref":"#/components/"##).skip(1) {
            let (kind, rest) = reference.split_once('/').unwrap();
            let name = &rest[..rest.find('"').unwrap()];
            assert!(
                document["components"][kind][name].is_object(),
                "{kind}/{name} is defined"
            );
        }
    }
}
