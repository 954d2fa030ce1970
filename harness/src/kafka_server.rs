//! A KRaft cluster of one or three nodes from the jars Maven resolved into `.local/kafka/libs`
//! (the scripts do that: `kafka_jars` in `scripts/lib/infra.sh`), configured by
//! `kafka/server.properties` and, for each node, its id, ports, data directory and the
//! cluster's replication: the local stack's brokers (`scripts/infra`) and those a test crashes
//! (`e2e_tests::infra`) are both this.
//!
//! Every node is both a broker and a controller, as the distribution's single-node quickstart
//! runs one: three nodes make a quorum of three voters, which survives one node lost, in three
//! JVMs rather than six on a machine of two cores. Production runs its controllers apart, so
//! that a busy broker cannot delay the quorum; the rules of replication are the same.
//! On three nodes, topics are replicated three times and a write is acknowledged once two
//! replicas have it (`min.insync.replicas=2`, the producers' `acks=all`); an out-of-sync
//! replica is never elected leader (`unclean.leader.election.enable=false`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{network, process::Process, repository, topic, wait::wait_until};

/// How long a broker may take to serve requests after it was started.
const START: Duration = Duration::from_secs(90);

/// One node of a cluster.
pub struct KafkaServer {
    /// Its `node.id`, from 1.
    pub id: u32,
    /// Its `server.properties` and its `data/`.
    pub dir: PathBuf,
    /// The address it listens on.
    pub host: String,
    pub port: u16,
    pub controller_port: u16,
    pub log: PathBuf,
    /// The network namespace it runs in ([`crate::network`]), if not this machine's.
    pub namespace: Option<String>,
    /// The id and controller address of every node of its cluster, itself among them.
    pub voters: Vec<(u32, String)>,
}

/// Where node `id` of a cluster lives: its directory, its log, its port and its controller's.
pub struct Place {
    pub dir: PathBuf,
    pub log: PathBuf,
    pub host: String,
    pub port: u16,
    pub controller_port: u16,
    pub namespace: Option<String>,
}

impl Place {
    /// A place on this machine's loopback.
    pub fn local(dir: PathBuf, log: PathBuf, port: u16, controller_port: u16) -> Place {
        Place {
            dir,
            log,
            host: "127.0.0.1".into(),
            port,
            controller_port,
            namespace: None,
        }
    }
}

impl KafkaServer {
    /// The nodes of a cluster of `size`, node N (from 1) where `place(N)` says.
    pub fn cluster(
        size: u32,
        mut place: impl FnMut(u32) -> anyhow::Result<Place>,
    ) -> anyhow::Result<Vec<KafkaServer>> {
        let places: Vec<(u32, Place)> = (1..=size)
            .map(|id| Ok((id, place(id)?)))
            .collect::<anyhow::Result<_>>()?;
        let voters: Vec<(u32, String)> = places
            .iter()
            .map(|(id, place)| (*id, format!("{}:{}", place.host, place.controller_port)))
            .collect();
        Ok(places
            .into_iter()
            .map(|(id, place)| KafkaServer {
                id,
                dir: place.dir,
                host: place.host,
                port: place.port,
                controller_port: place.controller_port,
                log: place.log,
                namespace: place.namespace,
                voters: voters.clone(),
            })
            .collect())
    }

    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The bootstrap list of a cluster, as `KAFKA_BOOTSTRAP` takes it.
    pub fn bootstrap_list(nodes: &[KafkaServer]) -> String {
        let all: Vec<String> = nodes.iter().map(KafkaServer::bootstrap).collect();
        all.join(",")
    }

    /// The cluster id its nodes were formatted with, or a new one if none was.
    pub fn cluster_id(nodes: &[KafkaServer]) -> String {
        nodes
            .iter()
            .find_map(|node| {
                let meta = std::fs::read_to_string(node.data().join("meta.properties")).ok()?;
                let id = meta
                    .lines()
                    .find_map(|line| line.strip_prefix("cluster.id="))?;
                Some(id.trim().to_string())
            })
            .unwrap_or_else(new_cluster_id)
    }

    /// Whether its data directory was formatted (it has run before, or is about to).
    pub fn formatted(&self) -> bool {
        self.data().join("meta.properties").exists()
    }

    /// Writes its configuration and, the first time, formats its data directory for the
    /// cluster `cluster_id` ([`cluster_id`](Self::cluster_id)). Then [`spawn`](Self::spawn)
    /// starts it.
    pub async fn prepare(&self, cluster_id: &str) -> anyhow::Result<()> {
        let template = repository().join("kafka/server.properties");
        let shared = std::fs::read_to_string(&template)
            .with_context(|| format!("cannot read {}", template.display()))?;
        std::fs::create_dir_all(self.data())?;
        std::fs::write(
            self.properties(),
            format!("{shared}\n{}", self.own_properties()),
        )?;
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
            .args(["--cluster-id", cluster_id]);
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
        let broker = network::enter(self.namespace.as_deref(), broker);
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

    /// What is this node's own: its id and addresses, its data, and the replication its
    /// cluster's size allows.
    fn own_properties(&self) -> String {
        let voters: Vec<String> = (self.voters.iter())
            .map(|(id, address)| format!("{id}@{address}"))
            .collect();
        let replicas = self.voters.len();
        let in_sync = replicas.min(2);
        format!(
            "node.id={id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
log.dirs={data}
default.replication.factor={replicas}
min.insync.replicas={in_sync}
offsets.topic.replication.factor={replicas}
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={in_sync}
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={in_sync}
unclean.leader.election.enable=false
",
            id = self.id,
            host = self.host,
            voters = voters.join(","),
            port = self.port,
            controller = self.controller_port,
            data = self.data().display(),
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }
}

/// The node id of the quorum's active controller, as Kafka's own tool tells it (clients are
/// not told which controller is active in KRaft).
pub async fn active_controller(bootstrap: &str) -> anyhow::Result<u32> {
    let mut command = java(
        &["-Xmx256m", "-XX:TieredStopAtLevel=1"],
        "org.apache.kafka.tools.MetadataQuorumCommand",
    );
    command.args(["--bootstrap-server", bootstrap, "describe", "--status"]);
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .context("cannot run Kafka's MetadataQuorumCommand")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("LeaderId:")?.trim().parse().ok())
        .with_context(|| {
            format!(
                "the quorum has no leader: {}{}",
                text.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
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
fn new_cluster_id() -> String {
    loop {
        let id = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().into_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_characters_never_starting_with_a_dash() {
        for _ in 0..1000 {
            let id = new_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
            assert!(!id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn each_node_of_three_knows_every_voter_and_replicates_three_times_two_in_sync() {
        let nodes = KafkaServer::cluster(3, |id| {
            Ok(Place::local(
                PathBuf::from(format!("/k{id}")),
                PathBuf::from(format!("/k{id}.log")),
                9090 + 2 * id as u16,
                9091 + 2 * id as u16,
            ))
        })
        .expect("three places");
        assert_eq!(
            KafkaServer::bootstrap_list(&nodes),
            "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
        );
        let second = nodes[1].own_properties();
        for line in [
            "node.id=2",
            "controller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097",
            "listeners=PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095",
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "unclean.leader.election.enable=false",
        ] {
            assert!(
                second.lines().any(|l| l == line),
                "{line} missing from\n{second}"
            );
        }
        let alone = KafkaServer::cluster(1, |_| {
            Ok(Place::local(
                PathBuf::from("/k"),
                PathBuf::from("/k.log"),
                9092,
                9093,
            ))
        })
        .expect("one place");
        let alone = alone[0].own_properties();
        assert!(alone.contains("min.insync.replicas=1\n"), "{alone}");
        assert!(
            alone.contains("offsets.topic.replication.factor=1\n"),
            "{alone}"
        );
    }
}
