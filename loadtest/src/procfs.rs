//! What Linux says about a process in `/proc`: the CPU time it used, its resident memory, and
//! when it started. Reading these costs the processes measured nothing.
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
//! Times are in clock ticks of `USER_HZ`, which Linux fixes at 100 per second for user space
//! on every architecture this project runs on, so they are exact to 10 ms per process.

use std::{collections::BTreeMap, fs, time::Duration};

use anyhow::Context;

/// `USER_HZ`: the unit of the times in `/proc/<pid>/stat`.
pub const TICKS_PER_SECOND: u64 = 100;

/// The fields of `/proc/<pid>/stat` that matter here; times in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    /// When the process started, in ticks since the machine booted.
    pub starttime: u64,
}

impl Stat {
    /// The process's own time and that of its children that have exited.
    fn ticks(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }

    pub fn started_after_boot(&self) -> Duration {
        ticks(self.starttime)
    }
}

fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 1000 / TICKS_PER_SECOND)
}

/// Parses a line of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// hold spaces and parentheses itself, so the fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (head, tail) = line.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    // After the name: state is field 3, so field n is at index n - 3.
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse().ok();
    Some(Stat {
        pid,
        ppid: field(4)? as u32,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
        starttime: field(22)?,
    })
}

pub fn stat(pid: u32) -> anyhow::Result<Stat> {
    let path = format!("/proc/{pid}/stat");
    let line = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat(&line).with_context(|| format!("cannot parse {path}: {line}"))
}

/// Every process's line, for finding children. A process may exit while the list is read; it
/// is left out.
fn every_stat() -> anyhow::Result<Vec<Stat>> {
    let mut stats = Vec::new();
    for entry in fs::read_dir("/proc").context("cannot list /proc")? {
        let name = entry.context("cannot list /proc")?.file_name();
        if let Some(pid) = name.to_str().and_then(|name| name.parse().ok())
            && let Ok(stat) = stat(pid)
        {
            stats.push(stat);
        }
    }
    Ok(stats)
}

/// The CPU time of `root` and its family (see the module's documentation), in ticks.
pub fn family_ticks(root: &Stat, every: &[Stat]) -> u64 {
    let children: u64 = every
        .iter()
        .filter(|stat| stat.ppid == root.pid)
        .map(Stat::ticks)
        .sum();
    root.ticks() + children
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
            let root = every.iter().find(|stat| stat.pid == process.pid)?;
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

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// The resident memory of a process, in bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_rss(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// How long the machine has been up, on the clock of [`Stat::starttime`].
pub fn uptime() -> anyhow::Result<Duration> {
    let text = fs::read_to_string("/proc/uptime").context("cannot read /proc/uptime")?;
    let seconds: f64 = text
        .split_whitespace()
        .next()
        .and_then(|seconds| seconds.parse().ok())
        .with_context(|| format!("cannot parse /proc/uptime: {text}"))?;
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line of PostgreSQL's postmaster, with its fields 14 to 17 and 22 changed.
    const POSTMASTER: &str = "4242 (postgres) S 1 4242 4242 0 -1 4194560 3357 121306 0 25 \
                              120 80 3000 1000 20 0 1 0 567890 226738176 7031 18446744073709551615 \
                              1 1 0 0 0 0 4194304 19935232 1073745415 0 0 0 17 1 0 0 0 0 0";

    fn stat(pid: u32, ppid: u32, ticks: [u64; 4]) -> Stat {
        let [utime, stime, cutime, cstime] = ticks;
        Stat {
            pid,
            ppid,
            utime,
            stime,
            cutime,
            cstime,
            starttime: 0,
        }
    }

    #[test]
    fn a_stat_line_gives_times_parent_and_start() {
        assert_eq!(
            parse_stat(POSTMASTER),
            Some(Stat {
                pid: 4242,
                ppid: 1,
                utime: 120,
                stime: 80,
                cutime: 3000,
                cstime: 1000,
                starttime: 567890,
            })
        );
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = POSTMASTER.replace("(postgres)", "(tokio (worker) 1)");
        assert_eq!(
            parse_stat(&line).map(|s| (s.pid, s.utime)),
            Some((4242, 120))
        );
    }

    #[test]
    fn a_truncated_line_is_not_a_stat() {
        assert_eq!(parse_stat("4242 (postgres) S 1 4242"), None);
    }

    #[test]
    fn a_family_counts_itself_its_reaped_children_and_its_live_children_only() {
        let postmaster = stat(10, 1, [1, 2, 30, 40]);
        let every = [
            postmaster,
            stat(11, 10, [100, 50, 0, 0]),  // a backend
            stat(12, 10, [5, 5, 0, 0]),     // the checkpointer
            stat(20, 1, [999, 999, 0, 0]),  // someone else
            stat(21, 11, [777, 777, 0, 0]), // a grandchild: in its parent's cutime once reaped
        ];
        assert_eq!(family_ticks(&postmaster, &every), 73 + 150 + 10);
    }

    #[test]
    fn a_backend_that_exits_between_two_samples_is_counted_once_in_its_parents_times() {
        let before = [stat(10, 1, [1, 1, 0, 0]), stat(11, 10, [40, 10, 0, 0])];
        // Backend 11 worked 30 more ticks, exited, and the postmaster reaped it.
        let after = [stat(10, 1, [1, 1, 60, 20])];
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
    fn ticks_are_hundredths_of_a_second() {
        assert_eq!(ticks(250), Duration::from_millis(2500));
    }

    #[test]
    fn the_resident_memory_is_read_in_kilobytes_and_given_in_bytes() {
        let status =
            "Name:\torder-service\nVmPeak:\t  900000 kB\nVmRSS:\t   17012 kB\nThreads:\t5\n";
        assert_eq!(parse_rss(status), Some(17012 * 1024));
        assert_eq!(parse_rss("Name:\tkthreadd\n"), None);
    }
}
