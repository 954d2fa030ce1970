//! Checks of what running the files does not show: that the docker-compose suite sets no variable
//! the services ignore, publishes each port of the local stack's table (`scripts/lib/ports`)
//! where its service listens and on loopback only, and runs the local broker's Kafka version. `scripts/compose-test` runs the compose file and the
//! `Dockerfile` for real.

use std::{collections::BTreeSet, path::PathBuf};

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
fn the_compose_file_sets_only_variables_the_services_read_and_publishes_each_port_on_loopback() {
    let compose = compose();
    let read = variables_read();
    for (name, port) in harness::ports::base_ports() {
        let service = &compose["services"][name];
        let ports: Vec<String> = service["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .map(text)
            .collect();
        assert_eq!(
            ports,
            [format!("127.0.0.1:{port}:{port}")],
            "{name} publishes its port on loopback only"
        );
        assert_eq!(
            text(&service["environment"]["PORT"]),
            port.to_string(),
            "{name} listens where published"
        );
        let environment = service["environment"].as_mapping().expect("environment");
        for variable in environment.keys().map(text) {
            assert!(
                read.contains(&variable),
                "{name} sets {variable}, which no service reads"
            );
        }
    }
}

#[test]
fn the_compose_file_runs_the_kafka_version_of_the_local_broker() {
    let pom = std::fs::read_to_string(root().join("kafka/pom.xml")).expect("kafka/pom.xml");
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .expect("kafka/pom.xml sets kafka.version");
    assert_eq!(
        text(&compose()["services"]["kafka"]["image"]),
        format!("apache/kafka:{version}")
    );
}
