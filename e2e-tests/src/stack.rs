//! Running the suite's binaries as processes, each test a [`Stack`] of its own: the four
//! services (and the gateway when a test starts it) on free ports, wired to the servers the
//! test runs against, with their own topic, consumer groups and databases, so that tests never
//! see each other's data. Tests kill, stop and restart the processes here; the stack's
//! databases are dropped and its processes killed when it is dropped. The binaries are those
//! `cargo build --workspace --bins` made, refused when older than their sources (`binaries`).

use std::{collections::HashMap, path::PathBuf, process::Command, time::Duration};

use anyhow::Context;
pub use harness::local::services::SERVICES;
use harness::{
    ports::free_port,
    process::{Process, START_OR_STOP},
};

use crate::{
    Servers,
    binaries::{binary, target_dir},
    databases::drop_databases,
    kafka,
};

/// One running copy of the suite.
pub struct Stack {
    pub id: String,
    pub topic: String,
    pub servers: Servers,
    /// Variables of every process, on top of [`service_vars`]: the test's own.
    env: Vec<(String, String)>,
    /// By instance name: a service's name, or another name for a second instance of it.
    ports: HashMap<String, u16>,
    processes: HashMap<String, Process>,
    pub(crate) logs: PathBuf,
    pub(crate) http: reqwest::Client,
}

/// The variables a service instance of a test is started with, whether it runs as a process
/// ([`Stack`]) or inside the test ([`TestApp`](crate::in_process::TestApp)): its servers, its
/// topic, its consumer groups' prefix and its database, on loopback, with a small pool (many
/// tests share one PostgreSQL server).
pub(crate) fn service_vars(
    servers: &Servers,
    topic: &str,
    group_prefix: &str,
    database: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("HOST", "127.0.0.1".into()),
        ("KAFKA_BOOTSTRAP", servers.kafka.clone()),
        ("KAFKA_TOPIC", topic.into()),
        ("KAFKA_GROUP_PREFIX", group_prefix.into()),
        ("KAFKA_PARTITIONS", kafka::PARTITIONS.to_string()),
        ("DATABASE_URL", format!("{}/{database}", servers.postgres)),
        ("DATABASE_MAX_CONNECTIONS", "5".into()),
    ]
}

impl Stack {
    /// Starts the four services, against the shared servers, with `env` added to their
    /// environment.
    pub async fn start(test: &str, env: &[(&str, &str)]) -> anyhow::Result<Stack> {
        Stack::start_on(Servers::from_env(), test, env).await
    }

    /// Starts the four services against `servers`.
    pub async fn start_on(
        servers: Servers,
        test: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Stack> {
        let mut stack = Stack::prepare_on(servers, test, env).await?;
        for service in SERVICES {
            stack.spawn(service, &[])?;
        }
        for service in SERVICES {
            stack.wait_ready(service).await?;
        }
        Ok(stack)
    }

    /// Sets a stack up on the shared servers without starting anything: topic created, ports
    /// chosen.
    pub async fn prepare(test: &str, env: &[(&str, &str)]) -> anyhow::Result<Stack> {
        Stack::prepare_on(Servers::from_env(), test, env).await
    }

    async fn prepare_on(
        servers: Servers,
        test: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Stack> {
        let id = format!(
            "{}_{}",
            test,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let topic = format!("e2e.{id}");
        kafka::create_topic(&servers.kafka, &topic).await?;
        let logs = target_dir()?.join("e2e-logs").join(&id);
        std::fs::create_dir_all(&logs)?;
        let mut stack = Stack {
            id,
            topic,
            servers,
            env: env
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            ports: HashMap::new(),
            processes: HashMap::new(),
            logs,
            http: reqwest::Client::new(),
        };
        for service in SERVICES.iter().chain(&["gateway"]) {
            stack.port_for(service)?;
        }
        Ok(stack)
    }

    pub(crate) fn database(&self, service: &str) -> String {
        format!("e2e_{}_{}", service, self.id)
    }

    /// The port of `instance`, chosen now if it has none yet.
    fn port_for(&mut self, instance: &str) -> anyhow::Result<u16> {
        if let Some(&port) = self.ports.get(instance) {
            return Ok(port);
        }
        let taken: Vec<u16> = self.ports.values().copied().collect();
        let port = free_port(&taken)?;
        self.ports.insert(instance.to_string(), port);
        Ok(port)
    }

    /// Starts one service (or `gateway`) with extra variables; does not wait for it.
    pub fn spawn(&mut self, service: &str, extra: &[(&str, &str)]) -> anyhow::Result<()> {
        self.spawn_instance(service, service, extra)
    }

    /// Starts an instance of `service` under the name `instance`: a second instance shares the
    /// service's database and consumer group, with a port and group member id of its own.
    pub fn spawn_instance(
        &mut self,
        service: &str,
        instance: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let port = self.port_for(instance)?;
        let binary = binary(service)?;
        let mut command = Command::new(&binary);
        let group_prefix = format!("{}-", self.id);
        command
            .envs(service_vars(
                &self.servers,
                &self.topic,
                &group_prefix,
                &self.database(service),
            ))
            .env("PG_URL", &self.servers.postgres)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .env("PORT", port.to_string());
        if service == "gateway" {
            for upstream in SERVICES {
                command.env(
                    format!("{}_URL", upstream.to_uppercase()),
                    self.url(upstream),
                );
            }
        }
        command.envs(extra.iter().copied());
        let log = self.logs.join(format!("{instance}.log"));
        let process = Process::spawn(command, &log, false)?;
        self.processes.insert(instance.to_string(), process);
        Ok(())
    }

    /// Waits until the service answers `/readyz` (`/healthz` for the gateway).
    pub async fn wait_ready(&mut self, service: &str) -> anyhow::Result<()> {
        let path = if service == "gateway" {
            "/healthz"
        } else {
            "/readyz"
        };
        let url = format!("{}{path}", self.url(service));
        let process = self
            .processes
            .get_mut(service)
            .with_context(|| format!("{service} was not started"))?;
        process
            .answering(&self.http, &url, service)
            .await
            .with_context(|| format!("see {}", self.logs.display()))
    }

    /// Starts a service that was stopped or killed, and waits until it is ready.
    pub async fn restart(
        &mut self,
        service: &'static str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        self.spawn(service, extra)?;
        self.wait_ready(service).await
    }

    /// SIGKILL: the process dies at once, finishing nothing.
    pub fn kill(&mut self, service: &str) -> anyhow::Result<()> {
        match self.processes.remove(service) {
            Some(process) => process.kill(),
            None => Ok(()),
        }
    }

    /// SIGTERM, then waits for the graceful exit; returns whether it exited successfully.
    pub async fn stop(&mut self, service: &str) -> anyhow::Result<bool> {
        let Some(process) = self.processes.remove(service) else {
            return Ok(true);
        };
        let status = process
            .terminate(START_OR_STOP)
            .await
            .with_context(|| format!("{service} did not stop after SIGTERM"))?;
        Ok(status.is_some_and(|status| status.success()))
    }

    /// Waits for a service to exit on its own (e.g. at a crash point); an error if it does not.
    pub async fn wait_exit(&mut self, service: &str, timeout: Duration) -> anyhow::Result<()> {
        let mut process = self
            .processes
            .remove(service)
            .with_context(|| format!("{service} is not running"))?;
        process
            .exited(timeout)
            .await
            .with_context(|| format!("{service} did not exit"))?;
        Ok(())
    }

    /// What an instance has logged so far.
    pub fn log(&self, instance: &str) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(
            self.logs.join(format!("{instance}.log")),
        )?)
    }

    /// Sends the requests meant for `service` to `instance` from now on (after the first
    /// instance was killed, say).
    pub fn answer_from(&mut self, service: &str, instance: &str) {
        if let Some(port) = self.ports.get(instance).copied() {
            self.ports.insert(service.to_string(), port);
        }
    }

    pub fn url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[service])
    }

    /// A direct connection to a service's database, for checks the API does not show.
    pub async fn db(&self, service: &str) -> anyhow::Result<sqlx::PgPool> {
        let url = format!("{}/{}", self.servers.postgres, self.database(service));
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await?)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, process) in self.processes.drain() {
            let _ = process.kill();
        }
        let databases = SERVICES.iter().map(|s| self.database(s)).collect();
        drop_databases(self.servers.postgres.clone(), databases);
    }
}
