//! The log subscriber: `--log-format auto|json|human` and `--log-level`, to stderr.
//!
//! Events come from the libraries as `tracing` events (the daemon's, with the stable field
//! names of `coffer_operations::logs`). On a terminal they are human lines; otherwise (a
//! service's journal, a pipe to a log shipper) JSON lines, one object per event with its
//! fields at the top level (`docs/monitoring.md`, "Logs").
//!
//! Invariant guarded here: the commands people run by hand print nothing new on stderr. At
//! the default level only the operations layer speaks at `info` (and it only speaks for the
//! daemon); the other crates of Coffer log at `debug` and third-party crates are off unless a
//! directive names them.

use crate::error::UsageError;
use clap::ValueEnum;
use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human lines when stderr is a terminal, JSON lines otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human lines.
    Human,
}

/// Coffer's own crates: a bare level (`--log-level debug`) applies to these only.
const OUR_CRATES: [&str; 5] = ["coffer", "coffer_operations", "coffer_repository", "coffer_sources", "coffer_store"];

/// The filter `level` asks for: a bare level (`off`, `error`, `warn`, `info`, `debug`,
/// `trace`) for Coffer's crates, everything else off; or a list of `tracing` filter
/// directives (`info,aws_smithy_runtime=debug`), taken as written.
fn filter(level: &str) -> anyhow::Result<EnvFilter> {
    let bare = ["off", "error", "warn", "info", "debug", "trace"];
    let l = level.trim().to_ascii_lowercase();
    let directives = if bare.contains(&l.as_str()) {
        std::iter::once("off".to_owned())
            .chain(OUR_CRATES.iter().map(|c| format!("{c}={l}")))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        level.to_owned()
    };
    EnvFilter::builder().parse(&directives).map_err(|e| {
        anyhow::Error::new(UsageError(format!(
            "--log-level {level:?}: {e} (a level: off, error, warn, info, debug, trace; or tracing directives such as info,coffer_store=debug)"
        )))
    })
}

/// Installs the subscriber for the process.
///
/// # Errors
/// A `--log-level` that is neither a level nor valid directives (a usage error).
pub fn init(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = filter(level)?;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    // A subscriber already set (never, in this binary) leaves the first one in place.
    let _ = if json {
        registry.with(coffer_operations::logs::json_layer(std::io::stderr)).try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init()
    };
    Ok(())
}
