//! A Kafka broker and a PostgreSQL cluster of one test's own, for the tests that kill and
//! restart them: the shared servers of `scripts/test` serve every other test at the same time
//! and must not go down. Both are the local stack's servers ([`KafkaServer`],
//! [`PostgresServer`]) on free ports, with their data in `target/e2e-infra/`; dropping one stops
//! it and removes its data, keeping its log in `target/debug/e2e-logs/`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use harness::{
    kafka_server::KafkaServer, ports::free_port, postgres_server::PostgresServer, process::Process,
};
use nix::sys::signal::Signal;

use crate::binaries::target_dir;

/// A server of a test's own, which the test crashes mid-flow and brings back.
pub trait Crashable {
    /// Crashes the server: the broker SIGKILLed, PostgreSQL stopped with `-m immediate`.
    fn crash(&mut self) -> anyhow::Result<()>;
    /// Starts it again on its data and waits until it serves.
    fn restart(&mut self) -> impl Future<Output = anyhow::Result<()>>;
}

impl Crashable for PrivateKafka {
    fn crash(&mut self) -> anyhow::Result<()> {
        self.kill()
    }

    fn restart(&mut self) -> impl Future<Output = anyhow::Result<()>> {
        PrivateKafka::restart(self)
    }
}

impl Crashable for PrivatePostgres {
    fn crash(&mut self) -> anyhow::Result<()> {
        self.server.crash()
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        self.server.start()
    }
}

/// A single-node KRaft broker, as `scripts/infra` runs one, on ports of its own.
pub struct PrivateKafka {
    server: KafkaServer,
    process: Option<Process>,
}

impl PrivateKafka {
    /// Formats a fresh data directory and starts the broker; returns once it serves requests.
    pub async fn start(name: &str) -> anyhow::Result<PrivateKafka> {
        let dir = fresh_dir(&format!("kafka-{name}"))?;
        let port = free_port(&[])?;
        let server = KafkaServer {
            log: dir.join("broker.log"),
            dir,
            port,
            controller_port: free_port(&[port])?,
        };
        server.prepare().await?;
        let mut kafka = PrivateKafka {
            server,
            process: None,
        };
        kafka.restart().await?;
        Ok(kafka)
    }

    pub fn bootstrap(&self) -> String {
        self.server.bootstrap()
    }

    /// SIGKILL: the broker dies at once, as in a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        match self.process.take() {
            Some(process) => process.kill(),
            None => Ok(()),
        }
    }

    /// SIGSTOP: the broker stops answering, its connections open, as in a long GC pause or a
    /// stalled VM; [`resume`](Self::resume) ends it.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        self.process
            .as_mut()
            .context("the broker is not running")?
            .signal(signal)
    }

    /// Starts the broker on its data (after [`kill`](Self::kill)) and waits until it serves.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let process = self.process.insert(self.server.spawn(false)?);
        self.server.ready(process, &[("ready", 1)]).await
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        let _ = self.resume();
        let _ = self.kill();
        remove_keeping_log(&self.server.dir, &self.server.log);
    }
}

/// A PostgreSQL cluster without fsync: a scratch server, never anything else.
pub struct PrivatePostgres {
    server: PostgresServer,
}

impl PrivatePostgres {
    pub async fn start(name: &str) -> anyhow::Result<PrivatePostgres> {
        let dir = fresh_dir(&format!("pg-{name}"))?;
        let server = PostgresServer {
            log: dir.join("postgres.log"),
            dir,
            port: free_port(&[])?,
            settings: vec!["fsync=off".into()],
        };
        server.start()?;
        Ok(PrivatePostgres { server })
    }

    /// A server URL as `PG_URL` takes it.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.server.crash();
        remove_keeping_log(&self.server.dir, &self.server.log);
    }
}

/// Removes a server's directory, first copying its log to `e2e-logs/<directory name>.log`.
fn remove_keeping_log(dir: &Path, log: &Path) {
    if let (Ok(logs), Some(name)) = (target_dir(), dir.file_name()) {
        let kept = logs
            .join("e2e-logs")
            .join(format!("{}.log", name.to_string_lossy()));
        let _ = std::fs::copy(log, kept);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn fresh_dir(name: &str) -> anyhow::Result<PathBuf> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = target_dir()?.join("e2e-infra").join(format!("{name}-{id}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
