//! The API keeps its contract: schemathesis, as a new user would run it, against the document
//! the gateway serves at `/openapi.json`, through the gateway, with every check. It sends what the
//! document allows and expects it accepted, sends what it forbids and expects it refused,
//! validates every answer (status, content type, headers, body) against the document, and tries
//! methods the document does not list.
//!
//! schemathesis comes from PyPI, pinned, into a virtualenv of its own under Cargo's target
//! directory, made on first use: nothing is installed into the system's Python. The run is
//! seeded, and the example database is off, so it generates the same requests every time.

use std::{path::PathBuf, process::Stdio, time::Instant};

use anyhow::{Context, bail};
use e2e_tests::Stack;
use tokio::process::Command;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const SEED: &str = "20260923";
const EXAMPLES_PER_OPERATION: &str = "100";

#[tokio::test]
async fn the_api_keeps_its_openapi_contract_under_every_schemathesis_check() -> anyhow::Result<()> {
    let schemathesis = install_schemathesis().await?;
    let mut stack = Stack::start("contract", &[]).await?;
    stack.restart("gateway", &[]).await?;

    let started = Instant::now();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml");
    let run = Command::new(&schemathesis)
        .args([
            "--config-file",
            config,
            "run",
            &format!("{}/openapi.json", stack.url("gateway")),
            "--checks=all",
            &format!("--max-examples={EXAMPLES_PER_OPERATION}"),
            &format!("--seed={SEED}"),
            "--generation-database=none",
            "--no-color",
        ])
        // Hypothesis keeps a directory in the working directory; not in the repository.
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run schemathesis")?;
    let report = String::from_utf8_lossy(&run.stdout);
    println!("{report}{}", String::from_utf8_lossy(&run.stderr));
    println!("schemathesis ran for {:.0?}", started.elapsed());
    assert!(
        run.status.success(),
        "schemathesis found failures; see its report above"
    );
    Ok(())
}

/// The pinned schemathesis in its own virtualenv, installed unless it is there already.
async fn install_schemathesis() -> anyhow::Result<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(SCHEMATHESIS.replace("==", "-"));
    let schemathesis = venv.join("bin/schemathesis");
    if succeeds(Command::new(&schemathesis).arg("--version")).await {
        return Ok(schemathesis);
    }
    // `--clear` starts again from an install that broke halfway.
    let venv_made = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .await
        .context("cannot run python3")?;
    if !venv_made.success() {
        bail!("python3 -m venv failed: Python 3 with venv is needed (Debian: python3-venv)");
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SCHEMATHESIS,
        ])
        .status()
        .await
        .context("cannot run pip")?;
    if !pip.success() {
        bail!("pip could not install {SCHEMATHESIS}");
    }
    Ok(schemathesis)
}

async fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}
