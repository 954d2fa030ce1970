//! Checks of files no test here can run: the docker-compose suite (there is no Docker engine on
//! this machine) and the gateway's OpenAPI document.

use std::{collections::BTreeSet, path::PathBuf};

use serde_json::Value as Json;
use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose() -> Value {
    let text =
        std::fs::read_to_string(root().join("kafka/docker-compose.yml")).expect("compose file");
    let mut value: Value = serde_norway::from_str(&text).expect("compose file is YAML");
    value.apply_merge().expect("merge keys resolve");
    value
}

/// Every environment variable the services read, found in their sources.
fn variables_read() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("readable directory")
            .flatten()
        {
            let path = entry.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | ".local" | ".git" | "e2e-tests") {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                let source = std::fs::read_to_string(&path).expect("source");
                if source.contains("EnvFilter::try_from_default_env") {
                    names.insert("RUST_LOG".to_string());
                }
                for call in [
                    ".parse(\"",
                    ".millis(\"",
                    ".switch(\"",
                    ".get(\"",
                    "env::var(\"",
                ] {
                    for piece in source.split(call).skip(1) {
                        if let Some(end) = piece.find('"') {
                            names.insert(piece[..end].to_string());
                        }
                    }
                }
            }
        }
    }
    names
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_compose_file_runs_kafka_postgres_the_four_services_and_the_gateway_on_their_ports() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services.keys().map(text).collect();
    let expected: BTreeSet<String> = [
        "kafka", "postgres", "order", "exchange", "point", "deadline", "gateway",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
    assert!(
        text(&compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"])
            .contains("controller"),
        "KRaft"
    );

    let read = variables_read();
    for (name, binary, port) in [
        ("order", "order-service", 8081),
        ("exchange", "exchange-service", 8082),
        ("point", "point-service", 8083),
        ("deadline", "deadline-service", 8084),
        ("gateway", "gateway", 8088),
    ] {
        let service = &compose["services"][name];
        let build = &service["build"];
        let dockerfile = root()
            .join("kafka")
            .join(text(&build["context"]))
            .join(text(&build["dockerfile"]));
        assert!(
            dockerfile.is_file(),
            "{name}: {} exists",
            dockerfile.display()
        );
        assert_eq!(
            text(&build["args"]["SERVICE"]),
            binary,
            "{name} builds its binary"
        );
        assert!(
            root().join(binary).join("Cargo.toml").is_file(),
            "{name}: the workspace has a crate {binary}"
        );
        let ports: Vec<String> = service["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .map(text)
            .collect();
        assert_eq!(
            ports,
            [format!("{port}:{port}")],
            "{name} publishes its port"
        );
        let environment = service["environment"].as_mapping().expect("environment");
        assert_eq!(
            text(&service["environment"]["PORT"]),
            port.to_string(),
            "{name} listens where published"
        );
        for variable in environment.keys().map(text) {
            assert!(
                read.contains(&variable),
                "{name} sets {variable}, which no service reads"
            );
        }
    }
    for name in ["order", "exchange", "point", "deadline"] {
        let environment = &compose["services"][name]["environment"];
        assert_eq!(text(&environment["KAFKA_BOOTSTRAP"]), "kafka:9092");
        assert_eq!(
            text(&environment["PG_URL"]),
            "postgres://saga:saga@postgres:5432"
        );
        let depends = compose["services"][name]["depends_on"]
            .as_mapping()
            .expect("depends_on");
        for dependency in ["kafka", "postgres"] {
            assert!(
                depends.contains_key(dependency),
                "{name} waits for {dependency}"
            );
        }
    }
    let gateway = &compose["services"]["gateway"]["environment"];
    for (variable, url) in [
        ("ORDER_URL", "http://order:8081"),
        ("EXCHANGE_URL", "http://exchange:8082"),
        ("POINT_URL", "http://point:8083"),
        ("DEADLINE_URL", "http://deadline:8084"),
    ] {
        assert_eq!(text(&gateway[variable]), url);
    }
    let postgres = &compose["services"]["postgres"]["environment"];
    assert_eq!(
        (
            text(&postgres["POSTGRES_USER"]),
            text(&postgres["POSTGRES_PASSWORD"])
        ),
        ("saga".into(), "saga".into())
    );
    assert_eq!(
        text(&compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]),
        "PLAINTEXT://kafka:9092"
    );
}

#[test]
fn the_dockerfile_builds_the_binary_named_by_its_argument() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("ARG SERVICE"));
    assert!(dockerfile.contains("cargo build --release --workspace --bins"));
    assert!(dockerfile.contains("target/release/${SERVICE}"));
}

#[test]
fn the_openapi_document_describes_every_route_of_the_gateway() {
    let text = std::fs::read_to_string(root().join("gateway/openapi.json")).expect("openapi.json");
    let document: Json = serde_json::from_str(&text).expect("valid JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let paths = document["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/orders", &["get", "post"][..]),
        ("/orders/{id}", &["get"]),
        ("/exchanges", &["get"]),
        ("/exchanges/{orderId}", &["get"]),
        ("/points", &["get", "post"]),
        ("/points/{userId}", &["get"]),
        ("/transactions", &["get"]),
        ("/transactions/{orderId}", &["get"]),
        ("/deadlines", &["get"]),
        ("/deadlines/{orderId}", &["get"]),
        ("/sagas", &["get"]),
        ("/sagas/{orderId}", &["get"]),
        ("/openapi.json", &["get"]),
        ("/healthz", &["get"]),
    ] {
        for method in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} is described"
            );
        }
    }
    // Every $ref points at a schema that exists.
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for reference in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap_or(0)];
        assert!(schemas.contains_key(name), "schema {name} exists");
    }
}
