//! Running the suite's binaries as processes, each test a [`Stack`] of its own: the four
//! services (and the gateway when a test starts it) on free ports, wired to the servers the
//! test runs against, with their own topic, consumer groups and databases, so that tests never
//! see each other's data. Tests kill, stop and restart the processes here; the stack's
//! databases are dropped and its processes killed when it is dropped. The binaries are those
//! `cargo build --workspace --bins` made, refused when older than their sources (`binaries`).

use std::{
    collections::HashMap,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{
    Servers,
    binaries::{binary, target_dir},
    databases::drop_databases,
    kafka, wait_until,
};

/// The services a stack runs, by short name.
pub const SERVICES: [&str; 4] = ["order", "exchange", "point", "deadline"];

/// How long a process may take to start answering, or to stop after SIGTERM.
const START_OR_STOP: Duration = Duration::from_secs(30);

/// One running copy of the suite.
pub struct Stack {
    pub id: String,
    pub topic: String,
    pub servers: Servers,
    /// Variables of every process, on top of [`service_vars`]: the test's own.
    env: Vec<(String, String)>,
    /// By instance name: a service's name, or another name for a second instance of it.
    ports: HashMap<String, u16>,
    processes: HashMap<String, Child>,
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{instance}.log")))?;
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
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if service == "gateway" {
            for upstream in SERVICES {
                command.env(
                    format!("{}_URL", upstream.to_uppercase()),
                    self.url(upstream),
                );
            }
        }
        command.envs(extra.iter().copied());
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.processes.insert(instance.to_string(), child);
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
        let started = std::time::Instant::now();
        loop {
            if let Some(child) = self.processes.get_mut(service)
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{service} exited during start ({status}); see {}",
                    self.logs.display()
                );
            }
            if let Ok(answer) = self.http.get(&url).send().await
                && answer.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > START_OR_STOP {
                bail!(
                    "{service} not ready after {START_OR_STOP:?}; see {}",
                    self.logs.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        if let Some(mut child) = self.processes.remove(service) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the graceful exit; returns whether it exited successfully.
    pub async fn stop(&mut self, service: &str) -> anyhow::Result<bool> {
        let Some(child) = self.processes.remove(service) else {
            return Ok(true);
        };
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)?;
        let status = exited(child, START_OR_STOP)
            .await
            .with_context(|| format!("{service} did not stop after SIGTERM"))?;
        Ok(status.success())
    }

    /// Waits for a service to exit on its own (e.g. at a crash point); an error if it does not.
    pub async fn wait_exit(&mut self, service: &str, timeout: Duration) -> anyhow::Result<()> {
        let child = self
            .processes
            .remove(service)
            .with_context(|| format!("{service} is not running"))?;
        exited(child, timeout)
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
        for (_, mut child) in self.processes.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let databases = SERVICES.iter().map(|s| self.database(s)).collect();
        drop_databases(self.servers.postgres.clone(), databases);
    }
}

/// Waits up to `timeout` for `child` to exit, and returns how it did.
async fn exited(mut child: Child, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
    wait_until(timeout, || {
        let status = child.try_wait();
        async move { status.ok().flatten() }
    })
    .await
}

/// A port that is free now and not among `taken`. A port just released is handed out again,
/// so ports of one stack must be told apart here: a stopped service keeps its port for its
/// restart, and two services given the same port would answer for each other.
pub(crate) fn free_port(taken: &[u16]) -> anyhow::Result<u16> {
    // Listeners whose port was taken stay open, so the next bind gets another port.
    let mut held = Vec::new();
    loop {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
        held.push(listener);
    }
}
