//! Structured logs through `tracing`: text for people (colours only on a terminal, so log files
//! stay plain), or one JSON object a line for deployment (`LOG_FORMAT=json`); `RUST_LOG`
//! filters as usual (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // A second init (in tests) keeps the first subscriber, which is what we want.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .compact()
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
}
