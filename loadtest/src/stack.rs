//! The local stack as the scripts run it. Faults are injected and healed by calling the
//! project's scripts, exactly as a user would type them (`scripts/service kill order 2`,
//! `scripts/infra kill kafka`, `scripts/infra up`), so a chaos run exercises the scripts too,
//! and every line it prints can be replayed by hand. Its processes are found where the scripts
//! leave their pids (`.local/run/`, and PostgreSQL's own `postmaster.pid`), for measuring them.

use std::path::PathBuf;

use anyhow::{Context, bail};
pub use harness::{
    local::{Local, StackEnv},
    repository as repo_root,
};

use crate::{
    plan::{Broker, Fault, FaultKind, SERVICES},
    procfs::Process,
};

pub struct Scripts {
    dir: PathBuf,
}

impl Scripts {
    /// The scripts of the repository at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Scripts {
            dir: root.into().join("scripts"),
        }
    }

    /// Runs the command that injects `fault` and returns it, as typed.
    pub async fn inject(&self, fault: &Fault) -> anyhow::Result<String> {
        let command = match (fault.kind, fault.target) {
            (FaultKind::Kill | FaultKind::KillForGood, Some(target)) => {
                format!("service kill {} {}", target.service, target.number)
            }
            (FaultKind::Term, Some(target)) => {
                format!("service stop {} {}", target.service, target.number)
            }
            (FaultKind::Pause, Some(target)) => {
                format!("service pause {} {}", target.service, target.number)
            }
            (FaultKind::Skew, Some(target)) => format!(
                "service restart {} {} --clock-skew-ms {}",
                target.service,
                target.number,
                fault.skew_ms.unwrap_or_default()
            ),
            (FaultKind::CutKafka | FaultKind::CutPostgres | FaultKind::CutOneWay, Some(_))
            | (FaultKind::CutBroker, _) => format!("partition {}", cut(fault)?),
            (FaultKind::Broker, _) => broker(fault, "kill", "infra kill kafka"),
            (FaultKind::BrokerPause, _) => broker(fault, "pause", "infra pause kafka"),
            (FaultKind::Postgres, _) => "infra kill postgres".into(),
            (kind, None) => bail!("a {} fault needs a target", kind.name()),
        };
        self.run(&command).await
    }

    /// Runs the command that restarts or resumes what `fault` stopped and returns it, as typed.
    pub async fn heal(&self, fault: &Fault) -> anyhow::Result<String> {
        let command = match (fault.kind, fault.target) {
            (FaultKind::Pause, Some(target)) => {
                format!("service resume {} {}", target.service, target.number)
            }
            (FaultKind::Skew, Some(target)) => {
                format!("service restart {} {}", target.service, target.number)
            }
            (FaultKind::CutKafka | FaultKind::CutPostgres | FaultKind::CutOneWay, Some(_))
            | (FaultKind::CutBroker, _) => format!("partition {} --heal", cut(fault)?),
            (_, Some(target)) => format!("service start {} {}", target.service, target.number),
            (FaultKind::BrokerPause, None) => broker(fault, "resume", "infra resume kafka"),
            (FaultKind::Broker, None) => broker(fault, "start", "infra up"),
            (_, None) => "infra up".into(),
        };
        self.run(&command).await
    }

    /// Runs `scripts/<command>` to its end; an error with the end of its output if it failed.
    pub async fn run(&self, command: &str) -> anyhow::Result<String> {
        let mut words = command.split(' ');
        let script = self.dir.join(words.next().unwrap_or_default());
        let output = tokio::process::Command::new(&script)
            .args(words)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {}", script.display()))?;
        let typed = format!("scripts/{command}");
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{typed} failed ({}): {}", output.status, tail.join(" | "));
        }
        Ok(typed)
    }
}

/// The command that does `action` to the broker `fault` hits: broker N of a cluster, or
/// `single`, the command for a single broker.
fn broker(fault: &Fault, action: &str, single: &str) -> String {
    match fault.broker {
        Some(Broker::Number(number)) => format!("service {action} kafka {number}"),
        _ => single.into(),
    }
}

/// The sides of the cut `fault` makes, as `scripts/partition` takes them.
fn cut(fault: &Fault) -> anyhow::Result<String> {
    Ok(match (fault.kind, fault.target, fault.broker) {
        (FaultKind::CutBroker, _, Some(Broker::Number(number))) => format!("kafka-{number} kafka"),
        (FaultKind::CutKafka, Some(target), _) => format!("{target} kafka"),
        (FaultKind::CutPostgres, Some(target), _) => format!("{target} postgres"),
        (FaultKind::CutOneWay, Some(target), _) if fault.outbound == Some(true) => {
            format!("{target} kafka --one-way")
        }
        (FaultKind::CutOneWay, Some(target), _) => format!("kafka {target} --one-way"),
        _ => bail!("no cut for {fault}: which broker or instance is not known"),
    })
}

/// Every process of the stack: each instance of each service, the gateway, and the local
/// Kafka broker and PostgreSQL (the postmaster) when the scripts started them here.
pub fn processes(local: &Local, env: &StackEnv) -> anyhow::Result<Vec<Process>> {
    let mut names: Vec<String> = SERVICES
        .iter()
        .flat_map(|service| (1..=env.instances).map(move |n| format!("{service}-{n}")))
        .collect();
    names.push("gateway".into());
    let mut processes = names
        .into_iter()
        .map(|name| {
            Ok(Process {
                pid: local.pid(&name)?,
                name,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // One broker, or each of a cluster's.
    for broker in ["kafka", "kafka-1", "kafka-2", "kafka-3"] {
        if let Ok(pid) = local.pid(broker) {
            processes.push(Process {
                name: broker.into(),
                pid,
            });
        }
    }
    if let Ok(pid) = local.postmaster_pid() {
        processes.push(Process {
            name: "postgres".into(),
            pid,
        });
    }
    Ok(processes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::Instance;

    fn fault(kind: FaultKind, broker: Option<Broker>, outbound: Option<bool>) -> Fault {
        Fault {
            kind,
            target: (kind != FaultKind::CutBroker).then_some(Instance {
                service: "order",
                number: 2,
            }),
            broker,
            skew_ms: None,
            outbound,
            at: Duration::ZERO,
            downtime: Duration::ZERO,
        }
    }

    #[test]
    fn each_cut_names_its_sides_as_scripts_partition_takes_them() {
        let cuts = [
            (
                fault(FaultKind::CutBroker, Some(Broker::Number(3)), None),
                "kafka-3 kafka",
            ),
            (fault(FaultKind::CutKafka, None, None), "order-2 kafka"),
            (
                fault(FaultKind::CutPostgres, None, None),
                "order-2 postgres",
            ),
            (
                fault(FaultKind::CutOneWay, None, Some(true)),
                "order-2 kafka --one-way",
            ),
            (
                fault(FaultKind::CutOneWay, None, Some(false)),
                "kafka order-2 --one-way",
            ),
        ];
        for (fault, sides) in cuts {
            assert_eq!(cut(&fault).unwrap(), sides, "{fault}");
        }
        // The active controller must be found by number first.
        assert!(cut(&fault(FaultKind::CutBroker, Some(Broker::Controller), None)).is_err());
    }
}
