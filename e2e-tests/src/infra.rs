//! A Kafka broker and a PostgreSQL cluster of one test's own, for the tests that kill and
//! restart them: the shared servers of `scripts/test` serve every other test at the same time
//! and must not go down. Both are the local stack's servers ([`KafkaServer`],
//! [`PostgresServer`]) on free ports, with their data in `target/e2e-infra/`; dropping one stops
//! it and removes its data, keeping its log in `target/debug/e2e-logs/`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use harness::{
    kafka_server::{KafkaServer, Place},
    network::Network,
    ports::free_port,
    postgres_server::PostgresServer,
    process::Process,
    topic::Topic,
    wait::{SETTLE, wait_until},
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

/// A KRaft cluster of one node or three, as `scripts/infra` runs one, on ports of its own. The
/// calls without a node number act on node 1, the only one of a single broker.
pub struct PrivateKafka {
    nodes: Vec<(KafkaServer, Option<Process>)>,
    /// The network its nodes have their hosts on, if not this machine's loopback.
    network: Option<Network>,
}

impl PrivateKafka {
    /// A single broker, formatted afresh; returns once it serves requests.
    pub async fn start(name: &str) -> anyhow::Result<PrivateKafka> {
        PrivateKafka::cluster(name, 1).await
    }

    /// A cluster of `size` nodes, formatted afresh; returns once every node serves requests.
    pub async fn cluster(name: &str, size: u32) -> anyhow::Result<PrivateKafka> {
        PrivateKafka::start_cluster(name, size, None).await
    }

    /// A cluster of `size` nodes, each on a host of its own (`kafka-N`) of `network`, whose
    /// links [`cut`](Self::cut) can break; the network is removed with the cluster.
    pub async fn cluster_on(
        name: &str,
        size: u32,
        network: Network,
    ) -> anyhow::Result<PrivateKafka> {
        PrivateKafka::start_cluster(name, size, Some(network)).await
    }

    async fn start_cluster(
        name: &str,
        size: u32,
        network: Option<Network>,
    ) -> anyhow::Result<PrivateKafka> {
        let dir = fresh_dir(&format!("kafka-{name}"))?;
        let mut taken = Vec::new();
        let servers = KafkaServer::cluster(size, |id| {
            let port = free_port(&taken)?;
            taken.push(port);
            let controller_port = free_port(&taken)?;
            taken.push(controller_port);
            let mut place = Place::local(
                dir.join(format!("node-{id}")),
                dir.join(format!("node-{id}.log")),
                port,
                controller_port,
            );
            if let Some(network) = &network {
                let host = format!("kafka-{id}");
                network.add(&host)?;
                place.host = network.address(&host)?.to_string();
                place.namespace = Some(network.namespace(&host));
            }
            Ok(place)
        })?;
        let cluster_id = KafkaServer::cluster_id(&servers);
        let mut kafka = PrivateKafka {
            nodes: Vec::new(),
            network,
        };
        for server in servers {
            server.prepare(&cluster_id).await?;
            let process = server.spawn(false)?;
            kafka.nodes.push((server, Some(process)));
        }
        for (server, process) in &mut kafka.nodes {
            if let Some(process) = process {
                server.ready(process, &[("ready", 1)]).await?;
            }
        }
        Ok(kafka)
    }

    /// The bootstrap list of every node.
    pub fn bootstrap(&self) -> String {
        let all: Vec<String> = self
            .nodes
            .iter()
            .map(|(server, _)| server.bootstrap())
            .collect();
        all.join(",")
    }

    /// SIGKILL: the broker dies at once, as in a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.kill_node(1)
    }

    pub fn kill_node(&mut self, node: u32) -> anyhow::Result<()> {
        match self.node(node)?.1.take() {
            Some(process) => process.kill(),
            None => Ok(()),
        }
    }

    /// SIGSTOP: the broker stops answering, its connections open, as in a long GC pause or a
    /// stalled VM; [`resume`](Self::resume) ends it.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(1, Signal::SIGSTOP)
    }

    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(1, Signal::SIGCONT)
    }

    fn signal(&mut self, node: u32, signal: Signal) -> anyhow::Result<()> {
        self.node(node)?
            .1
            .as_mut()
            .context("the broker is not running")?
            .signal(signal)
    }

    /// Starts the broker on its data (after [`kill`](Self::kill)) and waits until it serves.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.restart_node(1).await
    }

    pub async fn restart_node(&mut self, node: u32) -> anyhow::Result<()> {
        let (server, process) = self.node(node)?;
        let process = process.insert(server.spawn(false)?);
        server.ready(process, &[("ready", 1)]).await
    }

    /// Drops every packet between node `node` and the other nodes, both ways; clients still
    /// reach it. Only for a cluster on a network of its own.
    pub fn cut(&self, node: u32) -> anyhow::Result<()> {
        let (network, alone, others) = self.sides(node)?;
        network.cut(&alone, &others, false)
    }

    /// Lets through again what [`cut`](Self::cut) of `node` dropped.
    pub fn heal(&self, node: u32) -> anyhow::Result<()> {
        let (network, alone, others) = self.sides(node)?;
        network.heal(&alone, &others, false)
    }

    /// Waits until every replica of every partition of `topic` is in sync again (after a node
    /// came back or a cut healed), as every node sees it: a node back from a cut answers with
    /// what it knew before until it has caught up, and a reader asking it would stop short.
    pub async fn in_sync(&self, topic: &str) -> anyhow::Result<()> {
        let topics: Vec<Topic> = (self.nodes.iter())
            .map(|(server, _)| Topic {
                bootstrap: server.bootstrap(),
                name: topic.to_string(),
            })
            .collect();
        wait_until(SETTLE, || {
            let topics = topics.clone();
            async move {
                let layouts = tokio::task::spawn_blocking(move || {
                    (topics.iter())
                        .map(Topic::layout)
                        .collect::<anyhow::Result<Vec<_>>>()
                });
                let layouts = layouts.await.ok()?.ok()?;
                let replicated =
                    (layouts[0].iter()).all(|&(_, leader, isr, all)| leader >= 0 && isr == all);
                (replicated && layouts.iter().all(|layout| *layout == layouts[0])).then_some(())
            }
        })
        .await
        .with_context(|| format!("{topic} is still out of sync after {SETTLE:?}"))
    }

    fn sides(&self, node: u32) -> anyhow::Result<(&Network, Vec<String>, Vec<String>)> {
        let network = (self.network.as_ref()).context("the cluster runs on loopback")?;
        let others = (1..=self.nodes.len() as u32)
            .filter(|id| *id != node)
            .map(|id| format!("kafka-{id}"))
            .collect();
        Ok((network, vec![format!("kafka-{node}")], others))
    }

    fn node(&mut self, node: u32) -> anyhow::Result<&mut (KafkaServer, Option<Process>)> {
        let index = usize::try_from(node)?.checked_sub(1);
        index
            .and_then(|index| self.nodes.get_mut(index))
            .with_context(|| format!("there is no node {node}"))
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        for (server, process) in &mut self.nodes {
            if let Some(mut process) = process.take() {
                let _ = process.signal(Signal::SIGCONT);
                let _ = process.kill();
            }
            remove_keeping_log(&server.dir, &server.log);
        }
        if let Some(network) = &self.network
            && let Err(error) = network.remove()
        {
            eprintln!("cannot remove the cluster's network: {error:#}");
        }
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
            host: "127.0.0.1".into(),
            port: free_port(&[])?,
            namespace: None,
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

/// Removes a server's directory, first copying its log to `e2e-logs/<log's directory and
/// name>.log`; then its parent too, if that is left empty.
fn remove_keeping_log(dir: &Path, log: &Path) {
    let parent = log.parent().and_then(Path::file_name);
    if let (Ok(logs), Some(parent), Some(name)) = (target_dir(), parent, log.file_name()) {
        let kept = logs.join("e2e-logs").join(format!(
            "{}-{}",
            parent.to_string_lossy(),
            name.to_string_lossy()
        ));
        let _ = std::fs::copy(log, kept);
    }
    let _ = std::fs::remove_dir_all(dir);
    if let Some(parent) = log.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

fn fresh_dir(name: &str) -> anyhow::Result<PathBuf> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dir = target_dir()?.join("e2e-infra").join(format!("{name}-{id}"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
