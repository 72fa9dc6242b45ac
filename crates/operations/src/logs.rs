//! Log events of the operations layer, with stable field names (`docs/monitoring.md`,
//! "Logs"): the one place that names them, so the JSON lines a log shipper parses do not
//! drift. The CLI installs the subscriber (human lines on a terminal, JSON lines otherwise
//! or with `--log-format json`); [`json_layer`] is that JSON format, here so that the tests
//! of these events and the `coffer` binary write the same lines.
//!
//! Every event is a `tracing` event of target `coffer_operations::logs`; the daemon's events
//! are at `info` (a job started or ended well, a reload), `warn` (a retry, a missed slot, a
//! failed delivery) or `error` (a job failed, a policy file refused).
//!
//! Invariant guarded here: no field carries a secret; records hold only what
//! [`crate::event::RunRecord`] and [`crate::event::AlertEvent`] hold (error messages come
//! from the libraries' errors, which never show one), target names and the policy file's
//! path. Field names are only ever added ([`FIELDS`]).

use crate::event::{AlertEvent, RunRecord};
use crate::jobs::JobSpec;
use jiff::Timestamp;
use std::path::Path;
use std::time::Duration;

/// Every field an event of this module may carry besides the formatter's `timestamp`,
/// `level` and `message`: the documented, stable names (a JSON line has them at its top
/// level).
pub const FIELDS: &[&str] = &[
    "job",
    "kind",
    "source",
    "repository",
    "outcome",
    "duration_ms",
    "bytes_added",
    "snapshot",
    "attempt",
    "slot",
    "late",
    "delay_ms",
    "error_class",
    "error",
    "target",
    "severity",
    "problem",
    "path",
    "jobs",
];

/// The keys the JSON formatter itself writes on every line.
pub const FORMATTER_FIELDS: &[&str] = &["timestamp", "level", "message"];

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A run ended: `info` when it did its work (success, warning), `warn` for a missed slot or a
/// run the shutdown cancelled, `error` when it failed or timed out.
pub fn run(r: &RunRecord) {
    let duration_ms = millis(r.duration());
    let source = r.source.as_deref().unwrap_or("");
    if r.outcome.is_success() {
        tracing::info!(
            job = %r.job,
            kind = r.kind.as_str(),
            source,
            repository = %r.repository,
            outcome = r.outcome.as_str(),
            duration_ms,
            bytes_added = r.bytes_added.unwrap_or(0),
            snapshot = r.snapshot.as_deref().unwrap_or(""),
            "job {} {}", r.job, r.outcome
        );
    } else if matches!(r.outcome, crate::event::Outcome::Missed | crate::event::Outcome::Cancelled) {
        tracing::warn!(
            job = %r.job,
            kind = r.kind.as_str(),
            source,
            repository = %r.repository,
            outcome = r.outcome.as_str(),
            duration_ms,
            "job {} {}", r.job, r.outcome
        );
    } else {
        tracing::error!(
            job = %r.job,
            kind = r.kind.as_str(),
            source,
            repository = %r.repository,
            outcome = r.outcome.as_str(),
            duration_ms,
            error_class = r.error_class.as_deref().unwrap_or(""),
            error = r.error.as_deref().unwrap_or(""),
            "job {} {}", r.job, r.outcome
        );
    }
}

/// An attempt of `job` starts (`attempt` counts from 1); `slot` is the scheduled instant it
/// is for (`None`: started by hand), `late` when it catches up a slot missed while the daemon
/// was down.
pub fn started(job: &JobSpec, attempt: u32, slot: Option<Timestamp>, late: bool) {
    tracing::info!(
        job = %job.id,
        kind = job.kind.as_str(),
        source = job.source.as_deref().unwrap_or(""),
        repository = %job.repository,
        attempt,
        slot = %slot.map(|t| t.to_string()).unwrap_or_default(),
        late,
        "job {} started", job.id
    );
}

/// A scheduled slot of `job` did not run (the daemon was down past it, or the previous run
/// was still going).
pub fn missed(job: &JobSpec, slot: Timestamp) {
    tracing::warn!(
        job = %job.id,
        kind = job.kind.as_str(),
        source = job.source.as_deref().unwrap_or(""),
        repository = %job.repository,
        outcome = "missed",
        slot = %slot,
        "job {} missed its slot {slot}", job.id
    );
}

/// Attempt `attempt` of `job` failed with a transient error; the next one starts after
/// `delay`.
pub fn retry(job: &JobSpec, attempt: u32, delay: Duration, error_class: &str, error: &str) {
    tracing::warn!(
        job = %job.id,
        kind = job.kind.as_str(),
        source = job.source.as_deref().unwrap_or(""),
        repository = %job.repository,
        attempt,
        delay_ms = millis(delay),
        error_class,
        error,
        "job {} attempt {attempt} failed, retrying in {}s", job.id, delay.as_secs()
    );
}

/// The daemon started with the policy file `path` and its `jobs`.
pub fn daemon_started(path: &Path, jobs: usize) {
    tracing::info!(path = %path.display(), jobs, "daemon started: {} jobs from {}", jobs, path.display());
}

/// The daemon stops (its running jobs were cancelled; they resume next time).
pub fn daemon_stopped() {
    tracing::info!("daemon stopped");
}

/// The policy file `path` was reloaded: `jobs` jobs from now on.
pub fn config_reloaded(path: &Path, jobs: usize) {
    tracing::info!(path = %path.display(), jobs, "reloaded {}: {} jobs", path.display(), jobs);
}

/// A new policy file was refused on reload (the previous one keeps running).
pub fn config_rejected(path: &Path, error: &str) {
    tracing::error!(
        path = %path.display(),
        error_class = "config",
        error,
        "refused the new {}; the previous policy keeps running", path.display()
    );
}

/// A job the policy file declares (`debug`: `coffer config check --log-level debug` lists
/// them).
pub fn job_defined(job: &JobSpec) {
    tracing::debug!(
        job = %job.id,
        kind = job.kind.as_str(),
        source = job.source.as_deref().unwrap_or(""),
        repository = %job.repository,
        "job {} ({})",
        job.id,
        job.schedule.as_ref().map_or_else(|| "continuous".to_owned(), ToString::to_string)
    );
}

/// An alert was raised (or resolved) and goes to its routes.
pub fn alert(event: &AlertEvent) {
    let severity = event.severity.as_str();
    if event.resolved {
        tracing::info!(
            kind = event.kind.as_str(),
            severity,
            problem = %event.problem,
            job = event.job.as_deref().unwrap_or(""),
            "resolved: {}", event.summary
        );
    } else {
        tracing::warn!(
            kind = event.kind.as_str(),
            severity,
            problem = %event.problem,
            job = event.job.as_deref().unwrap_or(""),
            "{}", event.summary
        );
    }
}

/// A delivery to the alert target `target` ended: `debug` when delivered, `warn` when not.
pub fn delivery(target: &str, delivered: bool, error: Option<&str>) {
    if delivered {
        tracing::debug!(target, outcome = "delivered", "alert delivered to {target}");
    } else {
        tracing::warn!(target, outcome = "failed", error = error.unwrap_or(""), "alert delivery to {target} failed");
    }
}

/// The JSON lines format: one object per event, the event's fields flattened at its top
/// level next to `timestamp` (RFC 3339, UTC), `level` (`INFO`, …) and `message`; no span
/// lists, no target. Log shippers read the fields without nesting.
pub fn json_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(writer)
}

#[cfg(test)]
mod tests;
