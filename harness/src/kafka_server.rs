//! A single-node KRaft broker from the jars Maven resolved into `.local/kafka/libs` (the scripts
//! do that: `kafka_jars` in `scripts/lib/infra.sh`), configured by `kafka/server.properties`
//! with ports and a data directory of its own: the local stack's broker (`scripts/infra`) and
//! the broker a test crashes (`e2e_tests::infra`) are both this.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{process::Process, repository, topic, wait::wait_until};

/// How long a broker may take to serve requests after it was started.
const START: Duration = Duration::from_secs(90);

pub struct KafkaServer {
    /// Its `server.properties` and its `data/`.
    pub dir: PathBuf,
    pub port: u16,
    pub controller_port: u16,
    pub log: PathBuf,
}

impl KafkaServer {
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether its data directory was formatted (it has run before, or is about to).
    pub fn formatted(&self) -> bool {
        self.data().join("meta.properties").exists()
    }

    /// Writes its configuration and, the first time, formats its data directory. Then
    /// [`spawn`](Self::spawn) starts it.
    pub async fn prepare(&self) -> anyhow::Result<()> {
        let template = repository().join("kafka/server.properties");
        let properties = std::fs::read_to_string(&template)
            .with_context(|| format!("cannot read {}", template.display()))?
            .replace(":9092", &format!(":{}", self.port))
            .replace(":9093", &format!(":{}", self.controller_port));
        std::fs::create_dir_all(self.data())?;
        let properties = format!("{properties}\nlog.dirs={}\n", self.data().display());
        std::fs::write(self.properties(), properties)?;
        if self.formatted() {
            return Ok(());
        }
        let mut format = java(
            &["-Xmx256m", "-XX:TieredStopAtLevel=1"],
            "kafka.tools.StorageTool",
        );
        format
            .args(["format", "--config"])
            .arg(self.properties())
            .args(["--cluster-id", &cluster_id()]);
        let status = Process::spawn(format, &self.log, false)?
            .exited(Duration::from_secs(120))
            .await?;
        if !status.is_some_and(|status| status.success()) {
            bail!(
                "formatting {} failed; see {}",
                self.data().display(),
                self.log.display()
            );
        }
        Ok(())
    }

    /// Starts the broker on its data, logging to its log; [`ready`](Self::ready) waits for it.
    /// The JVM options are those of the distribution's `kafka-server-start.sh`, with a smaller
    /// heap.
    pub fn spawn(&self, detached: bool) -> anyhow::Result<Process> {
        let mut broker = java(
            &[
                "-Xms256m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
            ],
            "kafka.Kafka",
        );
        broker.arg(self.properties()).current_dir(&self.dir);
        Process::spawn(broker, &self.log, detached)
    }

    /// Waits until the broker serves requests, creating `topics` (name and partitions) if they
    /// are missing: the port opens before the broker serves, and a topic created is the proof
    /// that it does. An error at once if `broker` exits.
    pub async fn ready(&self, broker: &mut Process, topics: &[(&str, i32)]) -> anyhow::Result<()> {
        let bootstrap = self.bootstrap();
        let mut exited = false;
        let created = wait_until(START, || {
            exited |= !broker.running();
            let bootstrap = bootstrap.clone();
            async move {
                if exited {
                    return Some(false);
                }
                for &(name, partitions) in topics {
                    topic::create(&bootstrap, name, partitions).await.ok()?;
                }
                Some(true)
            }
        })
        .await;
        match created {
            Ok(true) => Ok(()),
            Ok(false) => bail!("the broker exited; see {}", self.log.display()),
            Err(_) => bail!(
                "the broker did not serve within {START:?}; see {}",
                self.log.display()
            ),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }
}

/// A JVM running `class` from the broker's jars (`KAFKA_LIBS`, or `.local/kafka/libs`), logging
/// as `kafka/log4j2.yaml` says.
fn java(options: &[&str], class: &str) -> Command {
    let libs = std::env::var_os("KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository().join(".local/kafka/libs"));
    let mut command = Command::new("java");
    command
        .args(options)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            repository().join("kafka/log4j2.yaml").display()
        ))
        .arg("-cp")
        .arg(Path::new(&libs).join("*"))
        .arg(class);
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
