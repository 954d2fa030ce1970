//! The local stack's Kafka broker (`.local/kafka`, on 9092 with its controller on 9093) and
//! PostgreSQL cluster (`.local/pg`, on 5432). A server named by `KAFKA_BOOTSTRAP` or `PG_URL`
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
use crate::{env_or, kafka_server::KafkaServer, postgres_server::PostgresServer};

const KAFKA_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
const POSTGRES_PORT: u16 = 5432;

impl Local {
    pub fn kafka(&self) -> KafkaServer {
        KafkaServer {
            dir: self.dir().join("kafka"),
            port: KAFKA_PORT,
            controller_port: CONTROLLER_PORT,
            log: self.log("kafka"),
        }
    }

    pub fn postgres(&self) -> PostgresServer {
        PostgresServer {
            dir: self.dir().join("pg"),
            port: POSTGRES_PORT,
            log: self.log("postgres"),
            settings: Vec::new(),
        }
    }

    /// Makes Kafka and PostgreSQL reachable, starting the local ones that are not. PostgreSQL
    /// is set up while the broker's JVM starts.
    pub async fn infra_up(&self) -> anyhow::Result<()> {
        let kafka = self.kafka();
        let mut starting = None;
        if let Some(bootstrap) = set("KAFKA_BOOTSTRAP") {
            let first = bootstrap.split(',').next().unwrap_or_default();
            if !reachable(first) {
                bail!("kafka: KAFKA_BOOTSTRAP={bootstrap} does not answer");
            }
            println!("kafka: up on {bootstrap}");
        } else if reachable(&kafka.bootstrap()) {
            println!("kafka: up on {}", kafka.bootstrap());
        } else if let Some(broker) = self.running("kafka") {
            println!("kafka: already starting (pid {})", broker.id());
            starting = Some(broker);
        } else {
            port_free(CONTROLLER_PORT, "the local Kafka broker's controller")?;
            if !kafka.formatted() {
                println!("kafka: formatting .local/kafka/data");
            }
            kafka.prepare().await?;
            println!(
                "kafka: starting on {} (log .local/logs/kafka.log)",
                kafka.bootstrap()
            );
            let broker = kafka.spawn(true)?;
            self.write_pid("kafka", &broker)?;
            starting = Some(broker);
        }

        if let Some(url) = set("PG_URL") {
            let server = url.rsplit('@').next().unwrap_or(&url);
            if !reachable(server) {
                bail!("postgres: PG_URL={url} does not answer");
            }
            println!("postgres: up on {server}");
        } else {
            let postgres = self.postgres();
            if !postgres.running() {
                port_free(POSTGRES_PORT, "the local PostgreSQL")?;
                println!(
                    "postgres: starting on 127.0.0.1:{POSTGRES_PORT} (log .local/logs/postgres.log)"
                );
            }
            postgres.start()?;
            println!("postgres: up on 127.0.0.1:{POSTGRES_PORT} (cluster .local/pg/data)");
        }

        if let Some(mut broker) = starting {
            let topic = env_or("KAFKA_TOPIC", "choreography.deadline");
            let partitions = env_or("KAFKA_PARTITIONS", "6")
                .parse()
                .context("KAFKA_PARTITIONS is not a number")?;
            let dead_letters = format!("{topic}.DLT");
            let topics = [(topic.as_str(), partitions), (dead_letters.as_str(), 1)];
            if let Err(error) = kafka.ready(&mut broker, &topics).await {
                bail!(
                    "kafka: {error:#}; the end of its log:\n{}",
                    crate::process::tail(&kafka.log, 40)
                );
            }
            println!(
                "kafka: up on {} (pid {}, topics {topic} and {dead_letters})",
                kafka.bootstrap(),
                broker.id()
            );
        }
        Ok(())
    }

    /// Stops the local broker and cluster (data is kept).
    pub async fn infra_down(&self) -> anyhow::Result<()> {
        if let Some(broker) = self.running("kafka") {
            if let Err(error) = broker.terminate(Duration::from_secs(60)).await {
                eprintln!("kafka: {error:#}");
            }
            println!("kafka: stopped");
        }
        self.forget("kafka");
        let postgres = self.postgres();
        if postgres.running() {
            postgres.stop()?;
            println!("postgres: stopped");
        }
        Ok(())
    }

    /// One line for each server.
    pub fn infra_status(&self) {
        let kafka = env_or("KAFKA_BOOTSTRAP", &self.kafka().bootstrap());
        let local = self
            .running("kafka")
            .map(|broker| format!(" (local, pid {})", broker.id()))
            .unwrap_or_default();
        let first = kafka.split(',').next().unwrap_or_default();
        match reachable(first) {
            true => println!("kafka: up on {kafka}{local}"),
            false => println!("kafka: down ({kafka})"),
        }
        let url = env_or("PG_URL", &self.postgres().url());
        let server = url.rsplit('@').next().unwrap_or(&url);
        let local = match self.postgres().running() {
            true => " (local cluster .local/pg/data)",
            false => "",
        };
        match reachable(server) {
            true => println!("postgres: up on {server}{local}"),
            false => println!("postgres: down ({server})"),
        }
    }

    /// SIGKILL of the local broker, as in a crash; [`infra_up`](Self::infra_up) brings it back
    /// and it recovers its logs.
    pub fn kill_kafka(&self) -> anyhow::Result<()> {
        let broker = self
            .running("kafka")
            .context("kafka: no local broker is running")?;
        broker.kill()?;
        self.forget("kafka");
        println!("kafka: killed");
        Ok(())
    }

    /// SIGSTOP or SIGCONT of the local broker, as a long GC pause or a stalled VM would.
    pub fn signal_kafka(&self, signal: Signal) -> anyhow::Result<()> {
        let mut broker = self
            .running("kafka")
            .context("kafka: no local broker is running")?;
        broker.signal(signal)?;
        println!("kafka: {} (pid {})", done(signal), broker.id());
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
