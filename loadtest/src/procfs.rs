//! What Linux says about a process in `/proc`, read with the `procfs` crate: the CPU time it
//! used, its resident memory, and when it started. Reading these costs the processes measured
//! nothing.
//!
//! The CPU time of a process counts its whole family, so that a server that forks workers is
//! measured with them: its own user and system time, that of its children that have exited and
//! been waited for (`cutime`, `cstime`), and that of every child still alive. PostgreSQL forks
//! a backend per connection and reaps each when it exits, so every backend's work is counted,
//! whether it ran through the whole window or came and went inside it. Grandchildren count
//! once they have exited (in their parent's `cutime`); PostgreSQL has none. A backend that
//! exits between the reading of its own line and its parent's is counted twice or not at all:
//! the services keep their connections in pools, so backends hardly come and go meanwhile.
//!
//! Times are in clock ticks (`USER_HZ`, 100 per second on every architecture this project runs
//! on), so they are exact to 10 ms per process.

use std::{collections::BTreeMap, time::Duration};

use ::procfs::{Current, Uptime, process};
use anyhow::Context;

/// What matters here of a process's `/proc/<pid>/stat`; times in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub ppid: i32,
    /// Its own user and system time.
    pub own: u64,
    /// The user and system time of its children that have exited and been waited for.
    pub reaped: u64,
    /// When the process started, in ticks since the machine booted.
    pub starttime: u64,
}

impl From<process::Stat> for Stat {
    fn from(stat: process::Stat) -> Stat {
        Stat {
            pid: stat.pid,
            ppid: stat.ppid,
            own: stat.utime + stat.stime,
            // Signed in the kernel's format, never negative in fact.
            reaped: u64::try_from(stat.cutime + stat.cstime).unwrap_or(0),
            starttime: stat.starttime,
        }
    }
}

impl Stat {
    /// The CPU time the process itself used, its children left out.
    pub fn own_time(&self) -> Duration {
        ticks(self.own)
    }

    pub fn started_after_boot(&self) -> Duration {
        ticks(self.starttime)
    }
}

fn ticks(count: u64) -> Duration {
    Duration::from_nanos(count * 1_000_000_000 / ::procfs::ticks_per_second())
}

pub fn stat(pid: u32) -> anyhow::Result<Stat> {
    let read = || process::Process::new(pid as i32)?.stat();
    Ok(read()
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?
        .into())
}

/// Every process's line, for finding children. A process may exit while the list is read; it
/// is left out.
fn every_stat() -> anyhow::Result<Vec<Stat>> {
    Ok(process::all_processes()
        .context("cannot list /proc")?
        .filter_map(|process| Some(process.ok()?.stat().ok()?.into()))
        .collect())
}

/// The CPU time of `root` and its family (see the module's documentation), in ticks.
pub fn family_ticks(root: &Stat, every: &[Stat]) -> u64 {
    let children: u64 = every
        .iter()
        .filter(|stat| stat.ppid == root.pid)
        .map(|child| child.own + child.reaped)
        .sum();
    root.own + root.reaped + children
}

/// A process measured by name (`order-1`, `kafka`, `postgres`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub name: String,
    pub pid: u32,
}

/// The CPU time each process had used at one moment, with the pid it was read from.
pub type CpuSample = BTreeMap<String, (u32, Duration)>;

/// Reads the CPU time of every process of the list at once. A process that is gone is left
/// out, and so counts as not measured.
pub fn sample_cpu(processes: &[Process]) -> anyhow::Result<CpuSample> {
    let every = every_stat()?;
    Ok(processes
        .iter()
        .filter_map(|process| {
            let root = every.iter().find(|stat| stat.pid == process.pid as i32)?;
            let time = ticks(family_ticks(root, &every));
            Some((process.name.clone(), (process.pid, time)))
        })
        .collect())
}

/// The CPU time each process used between two samples; none for a process missing from one
/// of them or restarted in between (another pid), whose time cannot be known.
pub fn cpu_used(before: &CpuSample, after: &CpuSample) -> BTreeMap<String, Option<Duration>> {
    before
        .keys()
        .chain(after.keys())
        .map(|name| {
            let used = match (before.get(name), after.get(name)) {
                (Some((pid, start)), Some((same, end))) if pid == same => {
                    Some(end.saturating_sub(*start))
                }
                _ => None,
            };
            (name.clone(), used)
        })
        .collect()
}

/// The resident memory of a process (`VmRSS`), in bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let read = || process::Process::new(pid as i32)?.status();
    let status = read().with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kilobytes = status
        .vmrss
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kilobytes * 1024)
}

/// How long the machine has been up, on the clock of [`Stat::started_after_boot`].
pub fn uptime() -> anyhow::Result<Duration> {
    Ok(Uptime::current()
        .context("cannot read /proc/uptime")?
        .uptime_duration())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, ppid: i32, own: u64, reaped: u64) -> Stat {
        Stat {
            pid,
            ppid,
            own,
            reaped,
            starttime: 0,
        }
    }

    #[test]
    fn a_family_counts_itself_its_reaped_children_and_its_live_children_only() {
        let postmaster = stat(10, 1, 3, 70);
        let every = [
            postmaster,
            stat(11, 10, 150, 0),  // a backend
            stat(12, 10, 10, 0),   // the checkpointer
            stat(20, 1, 1998, 0),  // someone else
            stat(21, 11, 1554, 0), // a grandchild: in its parent's reaped time once reaped
        ];
        assert_eq!(family_ticks(&postmaster, &every), 73 + 150 + 10);
    }

    #[test]
    fn a_backend_that_exits_between_two_samples_is_counted_once_in_its_parents_times() {
        let before = [stat(10, 1, 2, 0), stat(11, 10, 50, 0)];
        // Backend 11 worked 30 more ticks, exited, and the postmaster reaped it.
        let after = [stat(10, 1, 2, 80)];
        let used = family_ticks(&after[0], &after) - family_ticks(&before[0], &before);
        assert_eq!(used, 30);
    }

    #[test]
    fn cpu_used_is_the_difference_for_the_same_pid_and_unknown_for_a_restarted_process() {
        let sample = |entries: &[(&str, u32, u64)]| -> CpuSample {
            entries
                .iter()
                .map(|(name, pid, ms)| (name.to_string(), (*pid, Duration::from_millis(*ms))))
                .collect()
        };
        let before = sample(&[("order-1", 7, 1000), ("kafka", 8, 5000), ("gone", 9, 10)]);
        let after = sample(&[("order-1", 7, 1250), ("kafka", 18, 100)]);
        let used = cpu_used(&before, &after);
        assert_eq!(used["order-1"], Some(Duration::from_millis(250)));
        assert_eq!(used["kafka"], None);
        assert_eq!(used["gone"], None);
    }

    #[test]
    fn the_test_process_is_found_in_proc_started_before_now_with_memory_and_its_cpu_sampled() {
        let pid = std::process::id();
        let own = super::stat(pid).unwrap();
        assert_eq!(own.pid as u32, pid);
        assert!(own.started_after_boot() <= uptime().unwrap());
        assert!(rss(pid).unwrap() > 0);
        let me = Process {
            name: "test".into(),
            pid,
        };
        let sample = sample_cpu(&[me]).unwrap();
        assert_eq!(sample["test"].0, pid);
    }

    #[test]
    fn a_process_that_does_not_exist_is_an_error_naming_its_file() {
        // Above the kernel's highest pid (2^22).
        let error = super::stat(5_000_000).unwrap_err();
        assert!(format!("{error:#}").contains("/proc/5000000/stat"));
    }
}
