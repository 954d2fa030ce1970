//! The local stack's processes, started, stopped, crashed and paused: what `scripts/up`,
//! `down`, `service` and `infra` run once they have installed and built what is needed. The
//! binaries it starts are those of its own build (`target/debug` or `target/release`).

use clap::{Parser, Subcommand, ValueEnum};
use harness::{
    local::{
        Local,
        services::{Running, SERVICES, instance},
    },
    repository,
};
use nix::sys::signal::Signal;

#[derive(Parser)]
#[command(
    name = "stack",
    about = "The local stack: Kafka, PostgreSQL, the services, the gateway"
)]
enum Stack {
    /// Starts Kafka and PostgreSQL if needed, the services and the gateway.
    Up {
        /// Instances of each service: order on :8081, :8091, ..., exchange on :8082, ...
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
        instances: u32,
        /// Stops the services that run first, whatever they are.
        #[arg(long, conflicts_with = "reshape")]
        restart: bool,
        /// Stops the services that run first if they are of another build or size.
        #[arg(long)]
        reshape: bool,
    },
    /// Stops the gateway and the services (SIGTERM), then Kafka and PostgreSQL; data is kept.
    Down,
    /// One instance of a service, the gateway, or a Kafka broker.
    Service {
        action: Action,
        /// order, exchange, point, deadline, gateway or kafka.
        name: String,
        /// The instance, from 1.
        #[arg(default_value_t = 1)]
        number: u32,
        /// With start or restart: the clock the instance decides by runs this many
        /// milliseconds ahead of the machine's (behind if negative), as on a host whose clock
        /// is off.
        #[arg(long, allow_hyphen_values = true)]
        clock_skew_ms: Option<i64>,
    },
    /// Cuts the network between two parts of a stack started with HOSTS=1, or heals it; with
    /// neither, lists the cuts in place.
    Partition {
        /// One side: parts named as their logs are (order-1, kafka-2, postgres, gateway),
        /// separated by commas; `kafka` is every broker, a service's name every instance of it.
        a: Option<String>,
        /// The other side.
        #[arg(requires = "a")]
        b: Option<String>,
        /// Drops only what goes from A to B.
        #[arg(long, requires = "b")]
        one_way: bool,
        /// Lets through again what the cut between A and B dropped, or every cut without A
        /// and B.
        #[arg(long)]
        heal: bool,
    },
    /// Kafka and PostgreSQL alone.
    Infra {
        #[command(subcommand)]
        command: Infra,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Action {
    /// Starts it, and Kafka and PostgreSQL if needed.
    Start,
    /// SIGTERM: it finishes what it started and exits.
    Stop,
    /// SIGKILL, as in a crash.
    Kill,
    Restart,
    /// SIGSTOP, as a long GC pause or a stalled VM.
    Pause,
    /// SIGCONT.
    Resume,
}

#[derive(Subcommand)]
enum Infra {
    /// Starts them (`BROKERS=3`: a cluster of three brokers).
    Up,
    Down,
    Status,
    /// Prints Kafka's bootstrap list, as the services and tools take it.
    Bootstrap,
    /// Prints PostgreSQL's server URL, as `PG_URL` takes it.
    PostgresUrl,
    /// A crash: SIGKILL of the broker, or PostgreSQL stopped with `pg_ctl stop -m immediate`.
    Kill {
        server: Server,
    },
    /// SIGSTOP of the broker.
    Pause {
        server: Broker,
    },
    /// SIGCONT of the broker.
    Resume {
        server: Broker,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Server {
    Kafka,
    Postgres,
}

#[derive(Clone, Copy, ValueEnum)]
enum Broker {
    Kafka,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Stack::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Stack) -> anyhow::Result<()> {
    let local = Local::new(repository());
    match command {
        Stack::Up {
            instances,
            restart,
            reshape,
        } => {
            let running = match (restart, reshape) {
                (true, _) => Running::Restart,
                (_, true) => Running::Reshape,
                _ => Running::Keep,
            };
            local.up(instances, running).await
        }
        Stack::Down => local.down().await,
        Stack::Service {
            action,
            name,
            number,
            ..
        } if name == "kafka" => match action {
            Action::Start => local.start_broker(number).await,
            Action::Stop => local.stop_broker(number).await,
            Action::Kill => local.kill_broker(number),
            Action::Restart => {
                local.stop_broker(number).await?;
                local.start_broker(number).await
            }
            Action::Pause => local.signal_broker(number, Signal::SIGSTOP),
            Action::Resume => local.signal_broker(number, Signal::SIGCONT),
        },
        Stack::Service {
            action,
            name,
            number,
            clock_skew_ms,
        } => {
            let instances = local.stack_env().map_or(1, |env| env.instances);
            let limit = if name == "gateway" { 1 } else { instances };
            if name != "gateway" && !SERVICES.contains(&name.as_str()) {
                anyhow::bail!(
                    "unknown service '{name}' (order, exchange, point, deadline or gateway)"
                );
            }
            if !(1..=limit).contains(&number) {
                anyhow::bail!(
                    "there is no {name} {number}: the stack runs {limit} instance(s) of it \
                     (INSTANCES=N scripts/up)"
                );
            }
            let instance = instance(&name, number);
            match action {
                Action::Start => {
                    local.infra_up().await?;
                    local.start(&name, number, clock_skew_ms).await
                }
                Action::Stop => local.stop(&instance).await,
                Action::Kill => local.kill(&instance),
                Action::Restart => {
                    local.stop(&instance).await?;
                    local.infra_up().await?;
                    local.start(&name, number, clock_skew_ms).await
                }
                Action::Pause => local.signal(&instance, Signal::SIGSTOP),
                Action::Resume => local.signal(&instance, Signal::SIGCONT),
            }
        }
        Stack::Partition {
            a,
            b,
            one_way,
            heal,
        } => match (a, b) {
            (Some(a), Some(b)) => local.partition(&a, &b, one_way, heal),
            (None, None) if heal => local.heal_partitions(),
            (None, None) => local.list_partitions(),
            _ => anyhow::bail!("a partition is between two sides: scripts/partition A B"),
        },
        Stack::Infra { command } => match command {
            Infra::Up => local.infra_up().await,
            Infra::Down => local.infra_down().await,
            Infra::Status => local.infra_status(),
            Infra::Bootstrap => {
                println!("{}", local.bootstrap()?);
                Ok(())
            }
            Infra::PostgresUrl => {
                println!("{}", harness::env_or("PG_URL", &local.postgres().url()));
                Ok(())
            }
            Infra::Kill {
                server: Server::Kafka,
            } => local.kill_broker(the_broker(&local)?),
            Infra::Kill {
                server: Server::Postgres,
            } => local.crash_postgres(),
            Infra::Pause { .. } => local.signal_broker(the_broker(&local)?, Signal::SIGSTOP),
            Infra::Resume { .. } => local.signal_broker(the_broker(&local)?, Signal::SIGCONT),
        },
    }
}

/// The broker of a single-broker Kafka: on three, which one is to be said.
fn the_broker(local: &Local) -> anyhow::Result<u32> {
    match local.brokers()? {
        1 => Ok(1),
        size => {
            anyhow::bail!("the local Kafka runs {size} brokers: scripts/service ACTION kafka N")
        }
    }
}
