//! Supervising one process of a stack, whether this program started it (a test's service, a
//! test's own broker) or only knows its pid (what the scripts started earlier, from its pid
//! file): signals, a crash, a graceful stop with a time limit, and waiting until it answers.

use std::{
    fs::File,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::wait::wait_until;

/// How long a process may take to start answering, or to stop after SIGTERM.
pub const START_OR_STOP: Duration = Duration::from_secs(30);

/// A process of a stack.
pub struct Process {
    pid: u32,
    /// Present when this program started it: then its exit status can be read (and it must be,
    /// or it would linger as a zombie).
    child: Option<Child>,
}

impl Process {
    /// Starts `command` with its output appended to `log` and no input. `detached`, it runs in
    /// a process group of its own, so that a Ctrl-C meant for the script that started it does
    /// not reach it: it outlives that script.
    pub fn spawn(mut command: Command, log: &Path, detached: bool) -> anyhow::Result<Process> {
        use std::os::unix::process::CommandExt;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if detached {
            command.process_group(0);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        Ok(Process {
            pid: child.id(),
            child: Some(child),
        })
    }

    /// A process some other program started, known by its pid.
    pub fn adopt(pid: u32) -> Process {
        Process { pid, child: None }
    }

    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            // Until its parent reaps it: the first thread of a process can be a zombie while the
            // others still exit, holding its sockets.
            None => self.signal_raw(None).is_ok(),
        }
    }

    /// Sends `signal`, as SIGSTOP pauses it (a long GC pause, a stalled VM) and SIGCONT resumes.
    /// Never to a child this program has reaped: its pid may be another process's by now.
    pub fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child
            && let Ok(Some(status)) = child.try_wait()
        {
            bail!("pid {} has exited ({status})", self.pid);
        }
        self.signal_raw(Some(signal))
            .with_context(|| format!("cannot send {signal} to pid {}", self.pid))
    }

    /// `kill(2)`; no signal only checks that the process exists.
    fn signal_raw(&self, signal: Option<Signal>) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid).context("pid out of range")?;
        Ok(kill(Pid::from_raw(pid), signal)?)
    }

    /// SIGKILL, as in a crash; returns once it has exited (at once if it had).
    pub fn kill(mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child {
            child.kill()?;
            child.wait()?;
            return Ok(());
        }
        if !self.running() {
            return Ok(());
        }
        self.signal(Signal::SIGKILL)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.running() {
            if Instant::now() > deadline {
                bail!("pid {} still runs 10 s after SIGKILL", self.pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGTERM (and SIGCONT: a paused process acts on SIGTERM only once it runs again), then
    /// waits up to `patience` for it to exit: its exit status when this program started it.
    /// One that is still running then is killed, and that is an error.
    pub async fn terminate(mut self, patience: Duration) -> anyhow::Result<Option<ExitStatus>> {
        if !self.running() {
            return self.exited(Duration::ZERO).await;
        }
        self.signal(Signal::SIGTERM)?;
        let _ = self.signal(Signal::SIGCONT);
        match self.exited(patience).await {
            Ok(status) => Ok(status),
            Err(_) => {
                let pid = self.pid;
                self.kill()?;
                bail!("pid {pid} was still running {patience:?} after SIGTERM; killed it")
            }
        }
    }

    /// Waits up to `timeout` for it to exit on its own: its exit status when this program
    /// started it.
    pub async fn exited(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let pid = self.pid;
        wait_until(timeout, || {
            let exited = match &mut self.child {
                Some(child) => child.try_wait().ok().flatten().map(Some),
                None => (!self.running()).then_some(None),
            };
            async move { exited }
        })
        .await
        .with_context(|| format!("pid {pid} did not exit within {timeout:?}"))
    }

    /// Waits until `url` answers with a success, for [`START_OR_STOP`]; an error as soon as the
    /// process exits, or when the time is up. `what` names it in the error.
    pub async fn answering(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        what: &str,
    ) -> anyhow::Result<()> {
        let mut exited = false;
        // What it answered last, for the error: a readiness probe says what it waits for.
        let last = std::sync::Mutex::new(String::from("nothing"));
        let answered = wait_until(START_OR_STOP, || {
            exited |= !self.running();
            let probe = http.get(url).send();
            let last = &last;
            async move {
                if exited {
                    return Some(false);
                }
                let answer = probe.await.ok()?;
                if answer.status().is_success() {
                    return Some(true);
                }
                let status = answer.status();
                let body = answer.text().await.unwrap_or_default();
                if let Ok(mut last) = last.lock() {
                    *last = format!("{status} {}", body.trim());
                }
                None
            }
        })
        .await;
        let last = last.into_inner().unwrap_or_default();
        match answered {
            Ok(true) => Ok(()),
            Ok(false) => bail!("{what} exited while starting"),
            Err(_) => {
                bail!("{what} did not answer {url} within {START_OR_STOP:?} (last answer: {last})")
            }
        }
    }
}

/// The last `lines` lines of a log, for an error message.
/// Runs a short command to its end and returns what it printed; an error with its output if it
/// failed.
pub fn run(command: &mut std::process::Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            command,
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(stdout)
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bash running `script`, once it has printed `ready`.
    async fn started(script: &str) -> Process {
        let log = std::env::temp_dir().join(format!("process-{}.log", uuid::Uuid::new_v4()));
        let mut command = Command::new("bash");
        command.args([
            "-c",
            &format!("{script}; echo ready; while :; do sleep 0.05; done"),
        ]);
        let process = Process::spawn(command, &log, true).expect("bash starts");
        wait_until(Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move { text.contains("ready").then_some(()) }
        })
        .await
        .expect("bash says it is ready");
        let _ = std::fs::remove_file(&log);
        process
    }

    #[tokio::test]
    async fn a_process_that_exits_on_sigterm_reports_how_it_exited() {
        let process = started("trap 'exit 3' TERM").await;
        let status = process.terminate(START_OR_STOP).await.expect("it stops");
        assert_eq!(status.and_then(|status| status.code()), Some(3));
    }

    #[tokio::test]
    async fn a_process_that_ignores_sigterm_is_killed_and_that_is_an_error() {
        let process = started("trap '' TERM").await;
        let pid = process.id();
        let error = process
            .terminate(Duration::from_millis(300))
            .await
            .expect_err("it ignored SIGTERM");
        assert!(error.to_string().contains("killed it"), "{error:#}");
        assert!(!Process::adopt(pid).running());
    }

    #[tokio::test]
    async fn a_paused_process_still_runs_and_a_killed_one_does_not() {
        let mut process = started("true").await;
        process.signal(Signal::SIGSTOP).expect("it pauses");
        assert!(process.running());
        let mut adopted = Process::adopt(process.id());
        assert!(adopted.running());
        process.kill().expect("it dies");
        assert!(!adopted.running());
        assert!(adopted.exited(Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn a_child_that_has_exited_gets_no_signal_and_its_status_is_kept() {
        let log = std::env::temp_dir().join(format!("process-{}.log", uuid::Uuid::new_v4()));
        let mut command = Command::new("bash");
        command.args(["-c", "exit 5"]);
        let mut process = Process::spawn(command, &log, false).expect("bash starts");
        let status = process
            .exited(Duration::from_secs(10))
            .await
            .expect("it exits");
        assert_eq!(status.and_then(|status| status.code()), Some(5));
        assert!(process.signal(Signal::SIGSTOP).is_err());
        let status = process
            .terminate(START_OR_STOP)
            .await
            .expect("it had ended");
        assert_eq!(status.and_then(|status| status.code()), Some(5));
        let _ = std::fs::remove_file(&log);
    }
}
