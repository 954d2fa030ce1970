//! What a run's figures depend on besides the code: the commit, the build, the machine, and
//! how busy it was when the run began. Recorded in the JSON with every figure.

use std::{fs, path::Path, process::Command};

use loadtest::stack::StackEnv;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Machine {
    /// When the run began, RFC 3339 UTC.
    pub date: String,
    pub commit: String,
    /// Whether the work tree had changes the commit does not have.
    pub dirty: bool,
    /// The build of the binaries: `release` or `debug`.
    pub profile: String,
    pub instances: u32,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gb: f64,
    pub kernel: String,
    /// The load averages (1, 5, 15 minutes) before the run.
    pub load_before: [f64; 3],
}

impl Machine {
    pub fn read(root: &Path, env: &StackEnv) -> anyhow::Result<Machine> {
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(root)
                .args(args)
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        };
        let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.trim_start().strip_prefix(':'))
                .map(|value| value.trim().to_string())
        };
        let memory_kb: f64 = field(&meminfo, "MemTotal")
            .and_then(|value| value.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let loads: Vec<f64> = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .filter_map(|load| load.parse().ok())
            .collect();
        Ok(Machine {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            commit: git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty()),
            profile: env.profile.clone(),
            instances: env.instances,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            memory_gb: memory_kb / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            load_before: [0, 1, 2].map(|i| loads.get(i).copied().unwrap_or(0.0)),
        })
    }

    /// One line: what ran where.
    pub fn describe(&self) -> String {
        format!(
            "bench: commit {}{}, {} build, {} instance(s) of each service; {} CPUs ({}), {:.0} GB, \
             Linux {}; load average {:.2} {:.2} {:.2}; {}",
            self.commit,
            if self.dirty {
                " (with local changes)"
            } else {
                ""
            },
            self.profile,
            self.instances,
            self.cpus,
            self.cpu_model,
            self.memory_gb,
            self.kernel,
            self.load_before[0],
            self.load_before[1],
            self.load_before[2],
            self.date,
        )
    }

    /// A warning when the machine was already busy: the figures will be noisy.
    pub fn load_warning(&self) -> Option<String> {
        let busy = self.load_before[0] > self.cpus as f64 / 2.0;
        busy.then(|| {
            format!(
                "the load average is {:.2} on {} CPUs before the run: something else is busy \
                 (a build?), and the figures will be noisy",
                self.load_before[0], self.cpus
            )
        })
    }
}
