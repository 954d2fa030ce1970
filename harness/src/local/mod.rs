//! The local stack as the scripts run it (`scripts/up`, `down`, `service`, `infra`, through the
//! `stack` tool): Kafka and PostgreSQL ([`infra`]) and the services' instances ([`services`]) as
//! background processes that outlive the command that started them. Everything lives in the
//! repository's `.local/`: the broker's jars and data (`kafka/`), the PostgreSQL cluster
//! (`pg/`), every process's log (`logs/NAME.log`) and pid (`run/NAME.pid`), and `run/stack.env`,
//! which remembers the stack's build and size so that later commands start the same binaries and
//! the gateway knows every instance.

pub mod infra;
pub mod partition;
pub mod services;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

use crate::process::Process;

pub struct Local {
    root: PathBuf,
}

/// The build the stack runs and how many instances of each service (`.local/run/stack.env`,
/// which the scripts source too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEnv {
    pub profile: String,
    pub instances: u32,
}

impl StackEnv {
    fn parse(text: &str) -> Option<StackEnv> {
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        };
        Some(StackEnv {
            profile: value("STACK_PROFILE")?.to_string(),
            instances: value("STACK_INSTANCES")?.parse().ok()?,
        })
    }

    fn render(&self) -> String {
        format!(
            "STACK_PROFILE={}\nSTACK_INSTANCES={}\n",
            self.profile, self.instances
        )
    }
}

impl Local {
    /// The `.local/` of the repository at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Local { root: root.into() }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(".local")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir().join("logs").join(format!("{name}.log"))
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.dir().join("run").join(format!("{name}.pid"))
    }

    fn stack_env_file(&self) -> PathBuf {
        self.dir().join("run/stack.env")
    }

    pub fn stack_env(&self) -> anyhow::Result<StackEnv> {
        let path = self.stack_env_file();
        let text = fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (is the stack up?)", path.display()))?;
        StackEnv::parse(&text).with_context(|| format!("cannot parse {}: {text}", path.display()))
    }

    fn remember(&self, env: &StackEnv) -> anyhow::Result<()> {
        fs::create_dir_all(self.dir().join("run"))?;
        fs::write(self.stack_env_file(), env.render())?;
        Ok(())
    }

    /// The pid of a running process of the stack (`order-1`, `gateway`, `kafka`).
    pub fn pid(&self, name: &str) -> anyhow::Result<u32> {
        let path = self.pid_file(name);
        let pid = first_number(&path)?;
        if !runs(pid, program(name)) {
            bail!("{name} is not running (pid {pid} from {})", path.display());
        }
        Ok(pid)
    }

    /// The local PostgreSQL cluster's postmaster, from the first line of its `postmaster.pid`.
    pub fn postmaster_pid(&self) -> anyhow::Result<u32> {
        first_number(&self.dir().join("pg/data/postmaster.pid"))
    }

    /// The process `name`, if its pid file names one that runs.
    fn running(&self, name: &str) -> Option<Process> {
        self.pid(name).ok().map(Process::adopt)
    }

    fn write_pid(&self, name: &str, process: &Process) -> anyhow::Result<()> {
        fs::create_dir_all(self.dir().join("run"))?;
        fs::write(self.pid_file(name), format!("{}\n", process.id()))?;
        Ok(())
    }

    fn forget(&self, name: &str) {
        let _ = fs::remove_file(self.pid_file(name));
    }

    /// The names of the services' processes that have a pid file, running or not (not the
    /// broker's, nor the Docker engine's that `scripts/compose` keeps there).
    fn with_pid_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir().join("run"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry
                    .file_name()
                    .to_str()?
                    .strip_suffix(".pid")?
                    .to_string();
                let ours = name == "gateway"
                    || (name.rsplit_once('-'))
                        .is_some_and(|(service, _)| services::SERVICES.contains(&service));
                ours.then_some(name)
            })
            .collect();
        names.sort();
        names
    }
}

/// What the command line of process `name` contains: a pid file may outlive its process, and
/// the pid be reused by another.
fn program(name: &str) -> String {
    match name {
        "gateway" => "gateway".into(),
        broker if broker == "kafka" || broker.starts_with("kafka-") => "kafka.Kafka".into(),
        instance => {
            let service = instance.rsplit_once('-').map_or(instance, |(s, _)| s);
            format!("{service}-service")
        }
    }
}

fn runs(pid: u32, program: String) -> bool {
    let running = Process::adopt(pid).running();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    running && String::from_utf8_lossy(&cmdline).contains(&program)
}

fn first_number(path: &Path) -> anyhow::Result<u32> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("no pid in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_env_gives_the_build_and_the_instances() {
        let env = StackEnv::parse("STACK_PROFILE=release\nSTACK_INSTANCES=2\n");
        assert_eq!(
            env,
            Some(StackEnv {
                profile: "release".into(),
                instances: 2
            })
        );
        assert_eq!(
            env.map(|env| env.render()).as_deref(),
            Some("STACK_PROFILE=release\nSTACK_INSTANCES=2\n")
        );
        assert_eq!(StackEnv::parse("STACK_PROFILE=debug\n"), None);
    }

    #[test]
    fn only_the_services_pid_files_are_the_services() {
        let dir = std::env::temp_dir().join(format!("local-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(dir.join(".local/run")).expect("a run directory");
        for name in [
            "order-1",
            "gateway",
            "kafka",
            "kafka-2",
            "dockerd",
            "deadline-3",
        ] {
            fs::write(dir.join(format!(".local/run/{name}.pid")), "1\n").expect("a pid file");
        }
        let local = Local::new(&dir);
        assert_eq!(local.with_pid_files(), ["deadline-3", "gateway", "order-1"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pid_file_counts_only_for_the_program_it_was_written_for() {
        assert_eq!(program("order-2"), "order-service");
        assert_eq!(program("gateway"), "gateway");
        assert_eq!(program("kafka"), "kafka.Kafka");
        assert_eq!(program("kafka-3"), "kafka.Kafka");
        let me = std::process::id();
        assert!(!runs(me, program("order-1")));
        assert!(
            runs(me, "harness".into()),
            "this test's own binary is harness-…"
        );
    }
}
