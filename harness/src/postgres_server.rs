//! A PostgreSQL cluster of Debian's newest installed version, run by its own programs
//! (`initdb`, `pg_ctl`) as the `postgres` OS user: the local stack's (`scripts/infra`) and the
//! one a test crashes (`e2e_tests::infra`) are both this. It listens on one address (127.0.0.1,
//! or its own in a network namespace), with its socket in a directory of its own (not to clash
//! with a Debian cluster's), and lets in the role `saga` (password `saga`) from that address's
//! subnet, which creates the services' databases.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::{
    network,
    process::{run, tail},
};

/// The line of `pg_hba.conf` that lets clients of the server's own subnet in with a password.
const SAMENET: &str = "host all all samenet scram-sha-256";

pub struct PostgresServer {
    /// Its `data/` and the `run/` that holds its socket.
    pub dir: PathBuf,
    /// The address it listens on.
    pub host: String,
    pub port: u16,
    pub log: PathBuf,
    /// The network namespace it runs in ([`crate::network`]), if not this machine's.
    pub namespace: Option<String>,
    /// Settings beyond the common ones, as `-c name=value` takes them.
    pub settings: Vec<String>,
}

/// What the role `saga` may do: log in and create the services' databases.
const ROLE: &str = "DO $$ BEGIN \
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'saga') THEN CREATE ROLE saga; END IF; \
    END $$; \
    ALTER ROLE saga LOGIN CREATEDB PASSWORD 'saga';";

impl PostgresServer {
    /// A server URL as `PG_URL` takes it.
    pub fn url(&self) -> String {
        format!("postgres://saga:saga@{}:{}", self.host, self.port)
    }

    pub fn running(&self) -> bool {
        self.pg_ctl(&["status"]).is_ok()
    }

    /// Creates the cluster the first time, starts it unless it runs (recovering from a crash
    /// if there was one), waits until it accepts connections and makes sure the role `saga` can
    /// log in.
    pub fn start(&self) -> anyhow::Result<()> {
        let sockets = self.dir.join("run");
        if !self.running() {
            self.boot(&sockets)?;
        }
        run(as_postgres(bin()?.join("psql"))
            .arg("-h")
            .arg(&sockets)
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-qAt"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", ROLE]))
        .context("cannot let the role saga in")
        .map(drop)
    }

    fn boot(&self, sockets: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.data())?;
        std::fs::create_dir_all(sockets)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .args([&self.dir, &self.log]))?;
        }
        // Only the server's OS user reaches the socket, which lets it in without a password.
        run(as_postgres("chmod")
            .arg("700")
            .arg(self.data())
            .arg(sockets))
        .context("the postgres OS user cannot reach its directories (is a parent closed?)")?;
        if !self.data().join("PG_VERSION").exists() {
            run(as_postgres(bin()?.join("initdb"))
                .arg("-D")
                .arg(self.data())
                .args(["-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"]))?;
        }
        // initdb lets in loopback only; on a network of its own, clients come from its subnet.
        let hba = self.data().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba)
            .with_context(|| format!("cannot read {}", hba.display()))?;
        if !rules.contains(SAMENET) {
            std::fs::write(&hba, format!("{rules}\n{SAMENET}\n"))
                .with_context(|| format!("cannot write {}", hba.display()))?;
        }
        let mut options = format!(
            "-c listen_addresses={} -p {} -k '{}' -c max_connections=300 \
             -c shared_buffers=128MB",
            self.host,
            self.port,
            sockets.display()
        );
        for setting in &self.settings {
            options += &format!(" -c {setting}");
        }
        let log = self.log.to_string_lossy();
        let start = ["-l", &log, "-w", "-t", "60", "-o", &options, "start"];
        let mut command = network::enter(self.namespace.as_deref(), self.pg_ctl_command(&start)?);
        if let Err(error) = run(&mut command) {
            bail!(
                "{error:#}\nthe end of {}:\n{}",
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    /// A fast shutdown: sessions end, a checkpoint is written.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-m", "fast", "-w", "stop"])
    }

    /// An immediate shutdown: every backend is dropped without a checkpoint, as in a crash, and
    /// the next start runs crash recovery.
    pub fn crash(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"])
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        run(&mut self.pg_ctl_command(args)?).map(drop)
    }

    fn pg_ctl_command(&self, args: &[&str]) -> anyhow::Result<Command> {
        let mut command = as_postgres(bin()?.join("pg_ctl"));
        command.arg("-D").arg(self.data()).args(args);
        Ok(command)
    }
}

/// The `bin` directory of the newest PostgreSQL server installed.
fn bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (scripts/infra up installs it)")?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    let (_, bin) = versions
        .pop()
        .context("no PostgreSQL server binaries found")?;
    Ok(bin)
}

/// A command run as the `postgres` OS user when running as root (the server refuses to run as
/// root), from `/` (the caller's directory may be closed to that user).
fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir("/");
    command
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
