//! The local stack's services: `instances` instances of each service and one gateway, each a
//! background process of the build the `stack` tool itself belongs to (its directory holds the
//! services' binaries too). Instance N of a service listens on the service's port + 10 × (N − 1)
//! ([`crate::ports`]), logs to `.local/logs/NAME-N.log` and keeps its pid in
//! `.local/run/NAME-N.pid`; the gateway's are `gateway.log` and `gateway.pid`.

use std::{path::PathBuf, process::Command, time::SystemTime};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

use super::{
    Local, StackEnv,
    infra::{done, port_free},
};
use crate::{
    network,
    ports::port,
    process::{Process, START_OR_STOP, tail},
};

/// The services, by short name.
pub const SERVICES: [&str; 4] = ["order", "exchange", "point", "deadline"];

/// What `up` does with services already running. `Reshape` and `Restart` also replace a Kafka
/// cluster of another size than `BROKERS` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    /// Keeps them; refuses a stack of another build or size (the gateway would be blind to
    /// some instances).
    Keep,
    /// Keeps them if the stack has this build and size, or stops them all first.
    Reshape,
    /// Stops them all first.
    Restart,
}

impl Local {
    /// Starts Kafka and PostgreSQL if needed, then `instances` instances of each service and
    /// the gateway, each once it answers. An instance already running is kept, unless its
    /// binary was built after it started: then it is restarted on the new one.
    pub async fn up(&self, instances: u32, running: Running) -> anyhow::Result<()> {
        let wanted = StackEnv {
            profile: profile()?,
            instances,
        };
        let current = self.stack_env().ok();
        let any_running = self
            .with_pid_files()
            .iter()
            .any(|name| self.running(name).is_some());
        let reshaped = current.as_ref() != Some(&wanted);
        if running == Running::Keep && self.infra_change()? {
            bail!(
                "the local Kafka or network runs otherwise than BROKERS or HOSTS asks: \
                 scripts/down first"
            );
        }
        if running != Running::Keep && self.infra_change()? {
            // Another cluster than the one running: services and brokers start afresh.
            self.stop_services().await?;
            self.infra_down().await?;
        }
        match running {
            Running::Restart => self.stop_services().await?,
            Running::Reshape if reshaped => self.stop_services().await?,
            Running::Keep if reshaped && any_running => {
                let current = current.unwrap_or(StackEnv {
                    profile: "unknown".into(),
                    instances: 0,
                });
                bail!(
                    "the stack is running with {} binaries and {} instance(s) of each service; \
                     scripts/down first",
                    current.profile,
                    current.instances
                );
            }
            _ => {}
        }
        for (name, n) in instances_of(instances) {
            if self.running(&instance(name, n)).is_none() {
                port_free(instance_port(name, n)?, &instance(name, n))?;
            }
        }
        self.remember(&wanted)?;
        self.infra_up().await?;
        for (name, n) in instances_of(instances) {
            self.start(name, n, None).await?;
        }
        println!(
            "stack is up ({} build, {instances} instance(s) of each service): gateway on {}",
            wanted.profile,
            self.url("gateway", 1)?
        );
        Ok(())
    }

    /// Stops the services, then Kafka and PostgreSQL.
    pub async fn down(&self) -> anyhow::Result<()> {
        self.stop_services().await?;
        self.infra_down().await
    }

    /// Starts instance `n` of `name` (a service or the gateway) and waits until it answers;
    /// with `skew_ms`, the clock it decides by runs that many milliseconds ahead (behind if
    /// negative), as on a host whose clock is off (`FAULT_CLOCK_SKEW_MS`).
    pub async fn start(&self, name: &str, n: u32, skew_ms: Option<i64>) -> anyhow::Result<()> {
        let instance = instance(name, n);
        let listen = instance_port(name, n)?;
        let binary = binary(name)?;
        if let Some(process) = self.running(&instance) {
            if !newer(&binary, &self.pid_file(&instance)) {
                println!("{instance} already running (pid {})", process.id());
                return Ok(());
            }
            println!(
                "{instance} runs an older build than {}: restarting it",
                binary.display()
            );
            self.stop(&instance).await?;
        }
        port_free(listen, &instance)?;
        let mut command = Command::new(&binary);
        // Each process runs one worker thread unless told otherwise: here several processes
        // share the machine's cores, and a second worker per process mostly hands tasks across
        // threads, costing CPU per saga (the README's performance section has the figures).
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            command.env("TOKIO_WORKER_THREADS", "1");
        }
        command
            .env("PORT", listen.to_string())
            .env("KAFKA_BOOTSTRAP", self.bootstrap()?);
        if std::env::var_os("PG_URL").is_none() {
            command.env("PG_URL", self.postgres().url());
        }
        let probe = if name == "gateway" {
            // The gateway spreads requests over every instance of each service.
            let instances = self.stack_env().map_or(1, |env| env.instances);
            for service in SERVICES {
                let urls = (1..=instances)
                    .map(|n| self.url(service, n))
                    .collect::<anyhow::Result<Vec<String>>>()?;
                command.env(format!("{}_URL", service.to_uppercase()), urls.join(","));
            }
            "/healthz"
        } else {
            "/readyz"
        };
        let skew = match skew_ms {
            Some(skew) => {
                command.env("FAULT_CLOCK_SKEW_MS", skew.to_string());
                format!(", its clock {skew:+} ms off")
            }
            None => String::new(),
        };
        let log = self.log(&instance);
        self.place(&instance)?;
        let command = network::enter(self.namespace(&instance).as_deref(), command);
        let mut process = Process::spawn(command, &log, true)?;
        self.write_pid(&instance, &process)?;
        let url = format!("{}{probe}", self.url(name, n)?);
        if let Err(error) = process
            .answering(&reqwest::Client::new(), &url, &instance)
            .await
        {
            bail!(
                "{error:#}; the last lines of .local/logs/{instance}.log:\n{}",
                tail(&log, 20)
            );
        }
        println!(
            "{instance} started on {}:{listen} (pid {}, log .local/logs/{instance}.log{skew})",
            self.address(&instance)?,
            process.id()
        );
        Ok(())
    }

    /// The base URL of instance `n` of a service or the gateway.
    pub fn url(&self, name: &str, n: u32) -> anyhow::Result<String> {
        let port = instance_port(name, n)?;
        Ok(format!(
            "http://{}:{port}",
            self.address(&instance(name, n))?
        ))
    }

    /// SIGTERM: the instance finishes what it started, commits, and exits; it is killed if it
    /// has not within 30 s.
    pub async fn stop(&self, instance: &str) -> anyhow::Result<()> {
        match self.running(instance) {
            None => println!("{instance} is not running"),
            Some(process) => {
                if let Err(error) = process.terminate(START_OR_STOP).await {
                    eprintln!("{instance}: {error:#}");
                }
                println!("{instance} stopped");
            }
        }
        self.forget(instance);
        Ok(())
    }

    /// SIGKILL: the instance dies at once, as in a crash.
    pub fn kill(&self, instance: &str) -> anyhow::Result<()> {
        match self.running(instance) {
            None => println!("{instance} is not running"),
            Some(process) => {
                process.kill()?;
                println!("{instance} killed");
            }
        }
        self.forget(instance);
        Ok(())
    }

    /// SIGSTOP or SIGCONT of an instance.
    pub fn signal(&self, instance: &str, signal: Signal) -> anyhow::Result<()> {
        let mut process = self
            .running(instance)
            .with_context(|| format!("{instance} is not running"))?;
        process.signal(signal)?;
        println!("{instance} {} (pid {})", done(signal), process.id());
        Ok(())
    }

    /// Stops the gateway (first, so that no request reaches a service that is stopping), then
    /// every instance, and forgets the stack's build and size.
    async fn stop_services(&self) -> anyhow::Result<()> {
        self.stop("gateway").await?;
        for instance in self.with_pid_files() {
            self.stop(&instance).await?;
        }
        let _ = std::fs::remove_file(self.stack_env_file());
        Ok(())
    }
}

/// The name of an instance's pid and log files: `gateway`, or `NAME-N`.
pub fn instance(name: &str, n: u32) -> String {
    if name == "gateway" {
        name.to_string()
    } else {
        format!("{name}-{n}")
    }
}

/// Every instance of a stack of `instances`, services first and the gateway last.
fn instances_of(instances: u32) -> impl Iterator<Item = (&'static str, u32)> {
    SERVICES
        .into_iter()
        .flat_map(move |service| (1..=instances).map(move |n| (service, n)))
        .chain([("gateway", 1)])
}

fn instance_port(name: &str, n: u32) -> anyhow::Result<u16> {
    port(name, n).with_context(|| {
        format!("unknown service '{name}' (order, exchange, point, deadline or gateway)")
    })
}

/// The binary of a service or the gateway, beside this tool's.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let file = match name {
        "gateway" => "gateway".to_string(),
        service => format!("{service}-service"),
    };
    let binary = bin_dir()?.join(file);
    if !binary.exists() {
        bail!(
            "{} is missing: run cargo build --workspace --bins",
            binary.display()
        );
    }
    Ok(binary)
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .context("this tool has no directory")?
        .to_path_buf())
}

/// The build this tool belongs to: `debug` or `release`, its directory's name.
fn profile() -> anyhow::Result<String> {
    let dir = bin_dir()?;
    let name = dir
        .file_name()
        .context("this tool's directory has no name")?;
    Ok(name.to_string_lossy().into_owned())
}

/// Whether `binary` was built after `since` was written.
fn newer(binary: &PathBuf, since: &PathBuf) -> bool {
    let modified = |path: &PathBuf| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    modified(binary) > modified(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_is_every_instance_of_every_service_then_the_gateway() {
        let all: Vec<String> = instances_of(2).map(|(name, n)| instance(name, n)).collect();
        assert_eq!(
            all,
            [
                "order-1",
                "order-2",
                "exchange-1",
                "exchange-2",
                "point-1",
                "point-2",
                "deadline-1",
                "deadline-2",
                "gateway"
            ]
        );
        assert!(instance_port("billing", 1).is_err());
    }
}
