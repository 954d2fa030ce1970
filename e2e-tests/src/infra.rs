//! A Kafka broker and a PostgreSQL cluster of one test's own, for the tests that kill and
//! restart them: the shared servers of `scripts/test` serve every other test at the same time
//! and must not go down. Both run from the same software as the shared ones (the broker jars
//! that `scripts/infra` resolved into `.local/kafka/libs`, Debian's PostgreSQL), on free ports,
//! with their data in `target/e2e-infra/`; dropping one stops it and removes its data, keeping
//! its log in `target/debug/e2e-logs/`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

use crate::{binaries::target_dir, stack::free_port, wait_until};

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
        PrivatePostgres::crash(self)
    }

    fn restart(&mut self) -> impl Future<Output = anyhow::Result<()>> {
        PrivatePostgres::restart(self)
    }
}

/// A single-node KRaft broker, as `scripts/infra` runs one, on ports of its own.
pub struct PrivateKafka {
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl PrivateKafka {
    /// Formats a fresh data directory and starts the broker; returns once it serves requests.
    pub async fn start(name: &str) -> anyhow::Result<PrivateKafka> {
        let dir = fresh_dir(&format!("kafka-{name}"))?;
        let port = free_port(&[])?;
        let controller = free_port(&[port])?;
        let properties = std::fs::read_to_string(repository().join("kafka/server.properties"))?
            .replace(":9092", &format!(":{port}"))
            .replace(":9093", &format!(":{controller}"));
        let properties = format!("{properties}\nlog.dirs={}\n", dir.join("data").display());
        std::fs::write(dir.join("server.properties"), properties)?;
        let log = std::fs::File::create(dir.join("broker.log"))?;
        let formatted = java(&dir, "kafka.tools.StorageTool")
            .args(["format", "--config"])
            .arg(dir.join("server.properties"))
            .args(["--cluster-id", &cluster_id()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("cannot run Kafka's StorageTool (is java installed?)")?;
        if !formatted.success() {
            bail!("formatting {} failed; see its broker.log", dir.display());
        }
        let mut kafka = PrivateKafka {
            dir,
            port,
            process: None,
        };
        kafka.restart().await?;
        Ok(kafka)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the broker dies at once, as in a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
            process.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP: the broker stops answering, its connections open, as in a long GC pause or a
    /// stalled VM; [`resume`](Self::resume) ends it.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let process = self.process.as_ref().context("the broker is not running")?;
        kill(Pid::from_raw(process.id() as i32), signal)?;
        Ok(())
    }

    /// Starts the broker on its data (after [`kill`](Self::kill)) and waits until it serves.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))?;
        let process = java(&self.dir, "kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start the Kafka broker")?;
        self.process = Some(process);
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()?;
        let probe = [NewTopic::new("ready", 1, TopicReplication::Fixed(1))];
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        wait_until(Duration::from_secs(90), || async {
            match admin.create_topics(&probe, &options).await.ok()?.pop()? {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => Some(()),
                Err(_) => None,
            }
        })
        .await
        .with_context(|| format!("the broker in {} did not come up", self.dir.display()))
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        let _ = self.resume();
        let _ = self.kill();
        remove_keeping_log(&self.dir, "broker.log");
    }
}

/// A PostgreSQL cluster of Debian's newest installed version, with trust authentication on
/// 127.0.0.1 and no fsync: a scratch server, never anything else.
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    pub async fn start(name: &str) -> anyhow::Result<PrivatePostgres> {
        let dir = fresh_dir(&format!("pg-{name}"))?;
        let bin = postgres_bin()?;
        let postgres = PrivatePostgres {
            port: free_port(&[])?,
            dir,
            bin,
        };
        postgres.as_owner(&[&postgres.dir])?;
        postgres.pg(
            "initdb",
            &["-D", &postgres.data(), "-U", "postgres", "-E", "UTF8"],
        )?;
        postgres.restart().await?;
        Ok(postgres)
    }

    /// A server URL as `PG_URL` takes it.
    pub fn url(&self) -> String {
        format!("postgres://postgres:postgres@127.0.0.1:{}", self.port)
    }

    /// `pg_ctl stop -m immediate`: the server dies without a checkpoint, as in a crash.
    pub fn crash(&self) -> anyhow::Result<()> {
        self.pg("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"])
    }

    /// Starts the server (recovering from a crash if there was one) and waits for it.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log");
        let log = log.to_string_lossy();
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        )?;
        let url = format!("{}/postgres", self.url());
        wait_until(Duration::from_secs(30), || async {
            sqlx::PgPool::connect(&url).await.ok().map(|_| ())
        })
        .await
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// Runs one of PostgreSQL's programs, as the `postgres` user when running as root (the
    /// server refuses to run as root).
    fn pg(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir("/")
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{} failed: {}",
                program.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn as_owner(&self, paths: &[&Path]) -> anyhow::Result<()> {
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:")
                .args(paths)
                .status()?;
            if !status.success() {
                bail!("cannot give {paths:?} to the postgres user");
            }
        }
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.crash();
        remove_keeping_log(&self.dir, "postgres.log");
    }
}

/// Removes a server's directory, first copying its log to `e2e-logs/<directory name>.log`.
fn remove_keeping_log(dir: &Path, log: &str) {
    if let (Ok(logs), Some(name)) = (target_dir(), dir.file_name()) {
        let kept = logs
            .join("e2e-logs")
            .join(format!("{}.log", name.to_string_lossy()));
        let _ = std::fs::copy(dir.join(log), kept);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fresh_dir(name: &str) -> anyhow::Result<PathBuf> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = target_dir()?.join("e2e-infra").join(format!("{name}-{id}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A JVM running `class` from the broker's jars, logging as `scripts/infra`'s broker does.
fn java(dir: &Path, class: &str) -> Command {
    let libs = std::env::var("KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repository().join(".local/kafka/libs"));
    let mut command = Command::new("java");
    command
        .args(["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC"])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            repository().join("kafka/log4j2.yaml").display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg(class)
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

/// A cluster id as Kafka makes one: 16 random bytes in URL-safe base64, unpadded, and never
/// starting with `-`, which the storage tool's command line would take for an option.
fn cluster_id() -> String {
    loop {
        let id = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().into_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (run scripts/test, which installs it)")?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
    });
    versions
        .pop()
        .context("no PostgreSQL server binaries found")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::cluster_id;

    #[test]
    fn cluster_ids_are_22_url_safe_characters_never_starting_with_a_dash() {
        for _ in 0..1000 {
            let id = cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
            assert!(!id.starts_with('-'), "{id}");
        }
    }
}
