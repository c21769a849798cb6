//! Logging: to the journal when systemd started us (structured fields survive), to stderr
//! otherwise (the dev node and tests). The level comes from `RUST_LOG`, defaulting to `info`.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

/// Installs the global subscriber for `service`. Calling it twice is harmless (the second call
/// keeps the first subscriber), which lets tests start several services in one process.
pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal.
    let journal = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| layer.with_syslog_identifier(service.to_owned()));
    let result = match journal {
        Some(layer) => registry.with(layer).try_init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false),
            )
            .try_init(),
    };
    drop(result);
}
