//! The service binaries a test runs: those `cargo build --workspace --bins` made, beside the
//! test binary, refused when older than their sources.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The binary of a service (`order`: `order-service`) or of the gateway.
pub(crate) fn binary(service: &str) -> anyhow::Result<PathBuf> {
    let binary = target_dir()?.join(if service == "gateway" {
        "gateway".to_string()
    } else {
        format!("{service}-service")
    });
    built_from_current_sources(&binary)?;
    Ok(binary)
}

/// Refuses a service binary that is missing, or older than a source it was built from: a test
/// would run code that is no longer there. Cargo lists those sources in the dep-info file
/// beside the binary (`order-service.d`: `target: source source ...`, spaces escaped as `\ `).
/// `cargo test` cannot build the binaries itself: it holds the build directory's lock while its
/// tests run.
fn built_from_current_sources(binary: &Path) -> anyhow::Result<()> {
    const REBUILD: &str = "run `cargo build --workspace --bins` (scripts/test does)";
    let built = std::fs::metadata(binary)
        .and_then(|meta| meta.modified())
        .with_context(|| format!("{} is missing: {REBUILD}", binary.display()))?;
    let dep_info = binary.with_extension("d");
    let text = std::fs::read_to_string(&dep_info)
        .with_context(|| format!("cannot read {}: {REBUILD}", dep_info.display()))?;
    let (_, sources) = text
        .lines()
        .next()
        .and_then(|line| line.split_once(": "))
        .with_context(|| format!("{} lists no sources", dep_info.display()))?;
    let sources = sources.replace("\\ ", "\0");
    for source in sources.split_whitespace().map(|s| s.replace('\0', " ")) {
        let changed = std::fs::metadata(&source).and_then(|meta| meta.modified());
        if !matches!(changed, Ok(changed) if changed <= built) {
            bail!(
                "{} is older than {source}, or that file is gone: {REBUILD}",
                binary.display()
            );
        }
    }
    Ok(())
}

/// The directory holding the workspace's binaries (this test binary lives in its `deps/`).
pub(crate) fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().context("test binary has no directory")?;
    Ok(deps.parent().context("deps has no parent")?.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::{
        fs::File,
        time::{Duration, SystemTime},
    };

    use super::built_from_current_sources;

    /// A binary, its dep-info file naming `source` (whose name has a space), and the times each
    /// was last written.
    fn build(dir: &std::path::Path, binary_at: SystemTime, source_at: SystemTime) {
        let binary = dir.join("order-service");
        let source = dir.join("my src.rs");
        File::create(&source)
            .unwrap()
            .set_modified(source_at)
            .unwrap();
        std::fs::write(
            dir.join("order-service.d"),
            format!(
                "{}: {}\n",
                binary.display(),
                source.display().to_string().replace(' ', "\\ ")
            ),
        )
        .unwrap();
        File::create(&binary)
            .unwrap()
            .set_modified(binary_at)
            .unwrap();
    }

    #[test]
    fn a_binary_built_after_its_sources_is_accepted_and_one_older_than_a_source_is_refused() {
        let dir = std::env::temp_dir().join(format!("freshness-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = SystemTime::now();
        let earlier = now - Duration::from_secs(60);

        build(&dir, now, earlier);
        built_from_current_sources(&dir.join("order-service")).unwrap();

        build(&dir, earlier, now);
        let refused = built_from_current_sources(&dir.join("order-service")).unwrap_err();
        assert!(refused.to_string().contains("my src.rs"), "{refused}");

        build(&dir, now, earlier);
        std::fs::remove_file(dir.join("my src.rs")).unwrap();
        assert!(built_from_current_sources(&dir.join("order-service")).is_err());
        assert!(built_from_current_sources(&dir.join("missing-service")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
