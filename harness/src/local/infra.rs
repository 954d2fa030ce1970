//! The local stack's Kafka cluster (one broker or three, [`Local::kafka_nodes`]) and PostgreSQL
//! cluster (`.local/pg`, on 5432). A server named by `KAFKA_BOOTSTRAP` or `PG_URL`
//! is used as it is, and never started or stopped here. Installing what they run from (Debian's
//! packages, the broker's jars) is the scripts' job (`scripts/lib/infra.sh`).

use std::{
    net::{TcpStream, ToSocketAddrs},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

use super::Local;
use crate::{
    env_or,
    kafka_server::{KafkaServer, Place},
    network::Network,
    postgres_server::PostgresServer,
    process::{Process, tail},
    topic::Topic,
    wait::wait_until,
};

/// The first broker's port; broker N listens 2 × (N − 1) above it, its controller one above.
const KAFKA_PORT: u16 = 9092;
const POSTGRES_PORT: u16 = 5432;
/// How long a broker restarted in a cluster may take to catch up with the others.
const CATCH_UP: Duration = Duration::from_secs(90);

impl Local {
    /// The nodes of the local Kafka cluster of `size`: one broker named `kafka` (on 9092, its
    /// controller on 9093, its data in `.local/kafka/`), or three named `kafka-1` to `kafka-3`
    /// (on 9092, 9094 and 9096, their controllers one port above, data in `.local/kafka-N/`).
    pub fn kafka_nodes(&self, size: u32) -> Vec<(String, KafkaServer)> {
        let name = |id: u32| broker_name(size, id);
        let nodes = KafkaServer::cluster(size, |id| {
            let port = KAFKA_PORT + 2 * (id as u16 - 1);
            Ok(Place {
                dir: self.dir().join(name(id)),
                log: self.log(&name(id)),
                host: self.address(&name(id))?,
                port,
                controller_port: port + 1,
                namespace: self.namespace(&name(id)),
            })
        });
        (nodes.unwrap_or_default().into_iter())
            .map(|node| (name(node.id), node))
            .collect()
    }

    /// How many brokers the local cluster has: those started last, or `BROKERS` (1 or 3; 1
    /// unless set) when none runs.
    pub fn brokers(&self) -> anyhow::Result<u32> {
        let wanted = wanted_brokers()?;
        let Some(started) = self.started_brokers() else {
            return Ok(wanted.unwrap_or(1));
        };
        if let Some(wanted) = wanted
            && wanted != started
            && self.any_broker_runs(started)
        {
            bail!("the local Kafka runs {started} broker(s), not {wanted}: scripts/down first");
        }
        Ok(wanted.unwrap_or(started))
    }

    /// Whether `BROKERS` or `HOSTS` asks for another cluster or network than the one that
    /// runs.
    pub fn infra_change(&self) -> anyhow::Result<bool> {
        let brokers = match (self.started_brokers(), wanted_brokers()?) {
            (Some(started), Some(wanted)) => started != wanted && self.any_broker_runs(started),
            _ => false,
        };
        let hosts = match (self.started_hosts(), wanted_hosts()) {
            (started, Some(wanted)) => started.unwrap_or(false) != wanted && self.infra_runs(),
            _ => false,
        };
        Ok(brokers || hosts)
    }

    /// How many brokers the local cluster was started with (`.local/run/brokers`).
    fn started_brokers(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.brokers_file()).ok()?;
        text.trim().parse().ok()
    }

    fn any_broker_runs(&self, size: u32) -> bool {
        (1..=size).any(|id| self.running(&broker_name(size, id)).is_some())
    }

    fn brokers_file(&self) -> std::path::PathBuf {
        self.dir().join("run/brokers")
    }

    /// Kafka's bootstrap list: `KAFKA_BOOTSTRAP`, or every node of the local cluster.
    pub fn bootstrap(&self) -> anyhow::Result<String> {
        if let Some(bootstrap) = set("KAFKA_BOOTSTRAP") {
            return Ok(bootstrap);
        }
        let nodes: Vec<KafkaServer> = (self.kafka_nodes(self.brokers()?).into_iter())
            .map(|(_, node)| node)
            .collect();
        Ok(KafkaServer::bootstrap_list(&nodes))
    }

    pub fn postgres(&self) -> PostgresServer {
        PostgresServer {
            dir: self.dir().join("pg"),
            host: self
                .address("postgres")
                .unwrap_or_else(|_| "127.0.0.1".into()),
            port: POSTGRES_PORT,
            log: self.log("postgres"),
            namespace: self.namespace("postgres"),
            settings: Vec::new(),
        }
    }

    /// Whether the stack's parts run on hosts of their own ([`Network::local`]): as the stack
    /// was started, or as `HOSTS` (1 or 0; 0 unless set) asks when nothing runs.
    pub fn hosts(&self) -> bool {
        match (self.started_hosts(), wanted_hosts()) {
            (Some(started), Some(wanted)) if started != wanted && self.infra_runs() => started,
            (_, Some(wanted)) => wanted,
            (started, None) => started.unwrap_or(false),
        }
    }

    /// The network of the stack's hosts, if it runs on hosts of its own.
    pub fn network(&self) -> Option<Network> {
        self.hosts().then(Network::local)
    }

    /// The address of a part of the stack (`order-1`, `kafka-2`, `postgres`, `gateway`): its
    /// host's on a network of its own, or 127.0.0.1.
    pub fn address(&self, part: &str) -> anyhow::Result<String> {
        match self.network() {
            Some(network) => Ok(network.address(part)?.to_string()),
            None => Ok("127.0.0.1".into()),
        }
    }

    /// The network namespace a part runs in, if the stack runs on hosts of its own.
    pub(super) fn namespace(&self, part: &str) -> Option<String> {
        self.network().map(|network| network.namespace(part))
    }

    /// Gives `part` its host on the stack's network, if it runs on one.
    pub(super) fn place(&self, part: &str) -> anyhow::Result<()> {
        match self.network() {
            Some(network) => network.add(part),
            None => Ok(()),
        }
    }

    fn started_hosts(&self) -> Option<bool> {
        let text = std::fs::read_to_string(self.hosts_file()).ok()?;
        Some(text.trim() == "1")
    }

    fn hosts_file(&self) -> std::path::PathBuf {
        self.dir().join("run/hosts")
    }

    fn infra_runs(&self) -> bool {
        let size = self.started_brokers().unwrap_or(1);
        let postmaster = self.postmaster_pid().map(Process::adopt);
        self.any_broker_runs(size) || postmaster.is_ok_and(|mut process| process.running())
    }

    /// Makes Kafka and PostgreSQL reachable, starting the local ones that are not. PostgreSQL
    /// is set up while the brokers' JVMs start.
    pub async fn infra_up(&self) -> anyhow::Result<()> {
        let mut starting = Vec::new();
        let hosts = self.hosts();
        std::fs::create_dir_all(self.dir().join("run"))?;
        std::fs::write(self.hosts_file(), format!("{}\n", u8::from(hosts)))?;
        if let Some(network) = self.network() {
            network.create()?;
            println!(
                "network: each part on a host of its own, this machine on {} (scripts/partition \
                 cuts it)",
                network.gateway_address()
            );
        }
        if let Some(bootstrap) = set("KAFKA_BOOTSTRAP") {
            if !bootstrap.split(',').any(reachable) {
                bail!("kafka: KAFKA_BOOTSTRAP={bootstrap} does not answer");
            }
            println!("kafka: up on {bootstrap}");
        } else {
            let size = self.brokers()?;
            std::fs::write(self.brokers_file(), format!("{size}\n"))?;
            for (name, node) in self.kafka_nodes(size) {
                if let Some(broker) = self.spawn_broker(&name, &node).await? {
                    starting.push((name, node, broker));
                }
            }
        }

        if let Some(url) = set("PG_URL") {
            let server = url.rsplit('@').next().unwrap_or(&url);
            if !reachable(server) {
                bail!("postgres: PG_URL={url} does not answer");
            }
            println!("postgres: up on {server}");
        } else {
            let postgres = self.postgres();
            let address = format!("{}:{POSTGRES_PORT}", postgres.host);
            if !postgres.running() {
                port_free(POSTGRES_PORT, "the local PostgreSQL")?;
                self.place("postgres")?;
                println!("postgres: starting on {address} (log .local/logs/postgres.log)");
            }
            postgres.start()?;
            println!("postgres: up on {address} (cluster .local/pg/data)");
        }

        for (name, node, mut broker) in starting {
            broker_ready(&name, &node, &mut broker).await?;
        }
        Ok(())
    }

    /// Starts a broker of the local cluster unless it runs; the process if it is starting (it
    /// may have been started by an earlier command), none if it serves already.
    async fn spawn_broker(
        &self,
        name: &str,
        node: &KafkaServer,
    ) -> anyhow::Result<Option<Process>> {
        if let Some(broker) = self.running(name) {
            if reachable(&node.bootstrap()) {
                println!("{name}: up on {} (pid {})", node.bootstrap(), broker.id());
                return Ok(None);
            }
            println!("{name}: already starting (pid {})", broker.id());
            return Ok(Some(broker));
        }
        if name == "kafka" && reachable(&node.bootstrap()) {
            println!("kafka: up on {} (not started here)", node.bootstrap());
            return Ok(None);
        }
        port_free(node.port, name)?;
        port_free(node.controller_port, &format!("{name}'s controller"))?;
        let cluster: Vec<KafkaServer> = (self.kafka_nodes(node.voters.len() as u32).into_iter())
            .map(|(_, node)| node)
            .collect();
        if !node.formatted() {
            println!("{name}: formatting .local/{name}/data");
        }
        node.prepare(&KafkaServer::cluster_id(&cluster)).await?;
        self.place(name)?;
        println!(
            "{name}: starting on {} (log .local/logs/{name}.log)",
            node.bootstrap()
        );
        let broker = node.spawn(true)?;
        self.write_pid(name, &broker)?;
        Ok(Some(broker))
    }

    /// Broker `number` (from 1) of the local cluster, by name and node.
    fn broker(&self, number: u32) -> anyhow::Result<(String, KafkaServer)> {
        let size = self.brokers()?;
        let mut nodes = self.kafka_nodes(size);
        if !(1..=size).contains(&number) {
            bail!("there is no kafka {number}: the local Kafka runs {size} broker(s) (BROKERS=3)");
        }
        Ok(nodes.swap_remove(number as usize - 1))
    }

    /// Starts broker `number` on its data and waits until it serves and, in a cluster, until
    /// it has caught up with every partition of the saga topic: until then, the cluster would
    /// not survive losing another broker.
    pub async fn start_broker(&self, number: u32) -> anyhow::Result<()> {
        let (name, node) = self.broker(number)?;
        if let Some(mut broker) = self.spawn_broker(&name, &node).await? {
            broker_ready(&name, &node, &mut broker).await?;
        }
        if self.brokers()? == 1 {
            return Ok(());
        }
        let topic = Topic {
            bootstrap: self.bootstrap()?,
            name: env_or("KAFKA_TOPIC", "choreography.deadline"),
        };
        let since = std::time::Instant::now();
        let caught_up = wait_until(CATCH_UP, || {
            let topic = topic.clone();
            async move {
                let replicated = tokio::task::spawn_blocking(move || topic.fully_replicated());
                replicated.await.ok()?.ok()?.then_some(())
            }
        })
        .await;
        if caught_up.is_err() {
            bail!(
                "{name}: some replica of {} is still out of sync after {CATCH_UP:?}",
                topic.name
            );
        }
        println!(
            "{name}: every replica of {} in sync ({:.1} s)",
            topic.name,
            since.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// SIGTERM of broker `number`: it hands its partitions over and exits.
    pub async fn stop_broker(&self, number: u32) -> anyhow::Result<()> {
        let (name, _) = self.broker(number)?;
        self.stop_node(&name).await;
        Ok(())
    }

    async fn stop_node(&self, name: &str) {
        if let Some(broker) = self.running(name) {
            stopped(name, broker).await;
        }
        self.forget(name);
    }

    /// SIGKILL of broker `number`, as in a crash; starting it again recovers its logs.
    pub fn kill_broker(&self, number: u32) -> anyhow::Result<()> {
        let (name, _) = self.broker(number)?;
        let broker = (self.running(&name)).with_context(|| format!("{name}: not running"))?;
        broker.kill()?;
        self.forget(&name);
        println!("{name}: killed");
        Ok(())
    }

    /// SIGSTOP or SIGCONT of broker `number`, as a long GC pause or a stalled VM would.
    pub fn signal_broker(&self, number: u32, signal: Signal) -> anyhow::Result<()> {
        let (name, _) = self.broker(number)?;
        let mut broker = (self.running(&name)).with_context(|| format!("{name}: not running"))?;
        broker.signal(signal)?;
        println!("{name}: {} (pid {})", done(signal), broker.id());
        Ok(())
    }

    /// Stops the local brokers and cluster (data is kept).
    pub async fn infra_down(&self) -> anyhow::Result<()> {
        // All at once: one by one, the last would wait for a quorum that is gone already.
        let mut running = Vec::new();
        for (name, _) in self.kafka_nodes(self.started_brokers().unwrap_or(1)) {
            if let Some(mut broker) = self.running(&name) {
                let _ = broker.signal(Signal::SIGTERM);
                running.push((name, broker));
            }
        }
        for (name, broker) in running {
            stopped(&name, broker).await;
            self.forget(&name);
        }
        let _ = std::fs::remove_file(self.brokers_file());
        let postgres = self.postgres();
        if postgres.running() {
            postgres.stop()?;
            println!("postgres: stopped");
        }
        let network = Network::local();
        if network.exists() {
            network.remove()?;
            println!("network: removed");
        }
        let _ = std::fs::remove_file(self.hosts_file());
        Ok(())
    }

    /// One line for each server.
    pub fn infra_status(&self) -> anyhow::Result<()> {
        if let Some(bootstrap) = set("KAFKA_BOOTSTRAP") {
            let state = match bootstrap.split(',').any(reachable) {
                true => "up",
                false => "down",
            };
            println!("kafka: {state} ({bootstrap})");
        } else {
            for (name, node) in self.kafka_nodes(self.brokers()?) {
                let pid = (self.running(&name))
                    .map(|broker| format!(", pid {}", broker.id()))
                    .unwrap_or_default();
                let state = if reachable(&node.bootstrap()) {
                    "up"
                } else {
                    "down"
                };
                println!("{name}: {state} ({}{pid})", node.bootstrap());
            }
        }
        let url = env_or("PG_URL", &self.postgres().url());
        let server = url.rsplit('@').next().unwrap_or(&url);
        let local = match self.postgres().running() {
            true => ", local cluster .local/pg/data",
            false => "",
        };
        let state = if reachable(server) { "up" } else { "down" };
        println!("postgres: {state} ({server}{local})");
        Ok(())
    }

    /// PostgreSQL stopped with `-m immediate`, as in a crash.
    pub fn crash_postgres(&self) -> anyhow::Result<()> {
        let postgres = self.postgres();
        if !postgres.running() {
            bail!("postgres: no local cluster is running");
        }
        postgres.crash()?;
        println!("postgres: stopped with -m immediate");
        Ok(())
    }
}

/// Waits until a broker just started serves, creating the saga's topics if they are missing
/// (`KAFKA_TOPIC` and its dead-letter topic, as the services would).
async fn broker_ready(name: &str, node: &KafkaServer, broker: &mut Process) -> anyhow::Result<()> {
    let topic = env_or("KAFKA_TOPIC", "choreography.deadline");
    let partitions = env_or("KAFKA_PARTITIONS", "6")
        .parse()
        .context("KAFKA_PARTITIONS is not a number")?;
    let dead_letters = format!("{topic}.DLT");
    let topics = [(topic.as_str(), partitions), (dead_letters.as_str(), 1)];
    if let Err(error) = node.ready(broker, &topics).await {
        bail!(
            "{name}: {error:#}; the end of its log:\n{}",
            tail(&node.log, 40)
        );
    }
    println!(
        "{name}: up on {} (pid {}, topics {topic} and {dead_letters})",
        node.bootstrap(),
        broker.id()
    );
    Ok(())
}

/// SIGTERM of a broker, which hands its partitions over and exits; killed after 60 s.
async fn stopped(name: &str, broker: Process) {
    if let Err(error) = broker.terminate(Duration::from_secs(60)).await {
        eprintln!("{name}: {error:#}");
    }
    println!("{name}: stopped");
}

/// The name of node `id` of a local cluster of `size`: `kafka` alone, or `kafka-N`.
fn broker_name(size: u32, id: u32) -> String {
    match size {
        1 => "kafka".to_string(),
        _ => format!("kafka-{id}"),
    }
}

/// Whether `HOSTS` asks for hosts of their own (1) or none (0), if it is set.
fn wanted_hosts() -> Option<bool> {
    set("HOSTS").map(|hosts| hosts != "0")
}

/// The brokers `BROKERS` asks for, if it is set: 1 or 3.
fn wanted_brokers() -> anyhow::Result<Option<u32>> {
    match set("BROKERS").as_deref() {
        None => Ok(None),
        Some("1") => Ok(Some(1)),
        Some("3") => Ok(Some(3)),
        Some(other) => bail!("BROKERS must be 1 or 3, not {other}"),
    }
}

/// What a pause or resume did, in words.
pub(super) fn done(signal: Signal) -> &'static str {
    match signal {
        Signal::SIGSTOP => "paused",
        Signal::SIGCONT => "resumed",
        _ => "signalled",
    }
}

/// An environment variable that is set and not empty.
fn set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Whether `address` (HOST:PORT) accepts a TCP connection within 3 s.
pub(super) fn reachable(address: &str) -> bool {
    let Some(address) = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut all| all.next())
    else {
        return false;
    };
    TcpStream::connect_timeout(&address, Duration::from_secs(3)).is_ok()
}

/// An error naming who holds local port `port`, which `what` needs, if anyone does.
pub(super) fn port_free(port: u16, what: &str) -> anyhow::Result<()> {
    if !reachable(&format!("127.0.0.1:{port}")) {
        return Ok(());
    }
    bail!(
        "port {port}, which {what} needs, is taken by {}; stop it, or scripts/down if it is a \
         stack started from another checkout",
        port_owner(port)
    )
}

/// Who listens on local TCP port `port`: "NAME (pid N)", or "an unknown process" where `ss`
/// cannot tell (another user's process, or no iproute2).
fn port_owner(port: u16) -> String {
    let output = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output();
    let text = output
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    // users:(("java",pid=1234,fd=5))
    let owner = text.split("users:((\"").nth(1).and_then(|rest| {
        let (name, rest) = rest.split_once('"')?;
        let pid = rest.strip_prefix(",pid=")?.split(',').next()?;
        Some(format!("{name} (pid {pid})"))
    });
    owner.unwrap_or_else(|| "an unknown process".into())
}
