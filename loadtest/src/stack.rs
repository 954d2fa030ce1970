//! The local stack as the scripts run it. Faults are injected and healed by calling the
//! project's scripts, exactly as a user would type them (`scripts/service kill order 2`,
//! `scripts/infra kill kafka`, `scripts/infra up`), so a chaos run exercises the scripts too,
//! and every line it prints can be replayed by hand. Its processes are found where the scripts
//! leave their pids (`.local/run/`, and PostgreSQL's own `postmaster.pid`), for measuring them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

use crate::{
    plan::{Fault, FaultKind, SERVICES},
    procfs::Process,
};

/// The repository this binary was built from: its scripts and its `.local/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

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
            (FaultKind::Broker, _) => "infra kill kafka".into(),
            (FaultKind::BrokerPause, _) => "infra pause kafka".into(),
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
            (_, Some(target)) => format!("service start {} {}", target.service, target.number),
            (FaultKind::BrokerPause, None) => "infra resume kafka".into(),
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

/// What the scripts leave in `.local/`: the running stack's build and size, and its pids.
pub struct Local {
    root: PathBuf,
}

/// The build the stack runs and how many instances of each service (`.local/run/stack.env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEnv {
    pub profile: String,
    pub instances: u32,
}

impl Local {
    /// The `.local/` of the repository at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Local { root: root.into() }
    }

    pub fn stack_env(&self) -> anyhow::Result<StackEnv> {
        let path = self.root.join(".local/run/stack.env");
        let text = fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (is the stack up?)", path.display()))?;
        parse_stack_env(&text).with_context(|| format!("cannot parse {}: {text}", path.display()))
    }

    /// The pid of a running instance (`order-1`, `gateway`, `kafka`).
    pub fn pid(&self, instance: &str) -> anyhow::Result<u32> {
        let path = self.root.join(format!(".local/run/{instance}.pid"));
        let pid = first_number(&path)?;
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!(
                "{instance} is not running (pid {pid} from {})",
                path.display()
            );
        }
        Ok(pid)
    }

    /// Every process of the stack: each instance of each service, the gateway, and the local
    /// Kafka broker and PostgreSQL (the postmaster) when the scripts started them here.
    pub fn processes(&self, env: &StackEnv) -> anyhow::Result<Vec<Process>> {
        let mut names: Vec<String> = SERVICES
            .iter()
            .flat_map(|service| (1..=env.instances).map(move |n| format!("{service}-{n}")))
            .collect();
        names.push("gateway".into());
        let mut processes = names
            .into_iter()
            .map(|name| {
                Ok(Process {
                    pid: self.pid(&name)?,
                    name,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Ok(pid) = self.pid("kafka") {
            processes.push(Process {
                name: "kafka".into(),
                pid,
            });
        }
        // The first line of postmaster.pid is the postmaster's pid.
        if let Ok(pid) = first_number(&self.root.join(".local/pg/data/postmaster.pid")) {
            processes.push(Process {
                name: "postgres".into(),
                pid,
            });
        }
        Ok(processes)
    }
}

fn first_number(path: &Path) -> anyhow::Result<u32> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("no pid in {}", path.display()))
}

fn parse_stack_env(text: &str) -> Option<StackEnv> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
    };
    Some(StackEnv {
        profile: value("STACK_PROFILE")?.to_string(),
        instances: value("STACK_INSTANCES")?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_env_gives_the_build_and_the_instances() {
        let env = parse_stack_env("STACK_PROFILE=release\nSTACK_INSTANCES=2\n");
        assert_eq!(
            env,
            Some(StackEnv {
                profile: "release".into(),
                instances: 2
            })
        );
        assert_eq!(parse_stack_env("STACK_PROFILE=debug\n"), None);
    }
}
