//! Prometheus metrics: per job last success, status, duration, bytes and overdue; per
//! repository and PostgreSQL source the numbers `status` shows; alert deliveries. Served on
//! the configured listener in the official text exposition format.
//!
//! Invariant guarded here: no label carries a secret or grows without bound (no
//! per-snapshot or per-run labels).

use crate::event::RunRecord;
use crate::jobs::JobSpec;
use jiff::Timestamp;

/// The daemon's metrics. Shared (`Arc`); every method is cheap.
///
/// INTERFACE (being built): the registry lands with the metrics work.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self {}
    }

    /// A run ended (any outcome, missed slots included).
    pub fn observe_run(&self, record: &RunRecord) {
        let _ = record;
    }

    /// A job's schedule facts: expected interval, next run, whether it is overdue now.
    pub fn set_job(&self, spec: &JobSpec, next: Option<Timestamp>, overdue: bool) {
        let _ = (spec, next, overdue);
    }

    /// A repository's size and the bytes under lock.
    pub fn set_repository(&self, repository: &str, size_bytes: u64, locked_bytes: u64) {
        let _ = (repository, size_bytes, locked_bytes);
    }

    /// A PostgreSQL source's archive lag and the end of its recovery window.
    pub fn set_postgres(&self, source: &str, archive_lag_seconds: Option<f64>, recovery_end: Option<Timestamp>) {
        let _ = (source, archive_lag_seconds, recovery_end);
    }

    /// Problems the last verify of `repository` found.
    pub fn set_verify_problems(&self, repository: &str, problems: u64) {
        let _ = (repository, problems);
    }

    /// An alert delivery attempt to `target`.
    pub fn delivery(&self, target: &str, delivered: bool) {
        let _ = (target, delivered);
    }

    /// The exposition text.
    #[must_use]
    pub fn render(&self) -> String {
        String::new()
    }
}

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address cannot be bound.
    #[error("metrics listener {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl MetricsError {
    /// The class of this error: local I/O.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        coffer_store::ErrorClass::Io
    }
}

/// The running `/metrics` listener.
///
/// INTERFACE (being built): lands with the metrics work.
#[derive(Debug)]
pub struct MetricsServer {
    addr: std::net::SocketAddr,
}

impl MetricsServer {
    /// The address it listens on (the real port when 0 was asked for).
    #[must_use]
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops listening.
    pub fn shutdown(self) {}
}

/// Serves `metrics` on `addr` (`GET /metrics`) from a thread of its own.
///
/// # Errors
/// [`MetricsError::Bind`].
pub fn serve(addr: std::net::SocketAddr, metrics: std::sync::Arc<Metrics>) -> Result<MetricsServer, MetricsError> {
    let _ = metrics;
    Ok(MetricsServer { addr })
}
