//! Log events of the operations layer, with stable field names (`docs/operations.md`,
//! "Logs"): the one place that names them, so the JSON lines a log shipper parses do not
//! drift. The CLI installs the subscriber (human lines on a terminal, JSON lines otherwise
//! or with `--log-format json`).
//!
//! Invariant guarded here: no field carries a secret; records hold only what
//! [`crate::event::RunRecord`] holds.

use crate::event::RunRecord;

/// A run ended.
pub fn run(r: &RunRecord) {
    let duration_ms = u64::try_from(r.duration().as_millis()).unwrap_or(u64::MAX);
    if r.outcome.is_success() {
        tracing::info!(
            job = %r.job,
            source = r.source.as_deref().unwrap_or(""),
            repository = %r.repository,
            outcome = r.outcome.as_str(),
            duration_ms,
            bytes_added = r.bytes_added.unwrap_or(0),
            snapshot = r.snapshot.as_deref().unwrap_or(""),
            "job {} {}", r.job, r.outcome
        );
    } else {
        tracing::error!(
            job = %r.job,
            source = r.source.as_deref().unwrap_or(""),
            repository = %r.repository,
            outcome = r.outcome.as_str(),
            duration_ms,
            error_class = r.error_class.as_deref().unwrap_or(""),
            error = r.error.as_deref().unwrap_or(""),
            "job {} {}", r.job, r.outcome
        );
    }
}
