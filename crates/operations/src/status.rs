//! `coffer status`: per job the last success and failure, the next run and whether it is
//! overdue; per PostgreSQL source the recovery window and archive lag. Exit code non-zero
//! when anything is failing or overdue.

use crate::event::RunRecord;
use crate::jobs::JobSpec;
use jiff::Timestamp;
use serde::Serialize;

/// The state key under which the daemon keeps the last slot it handled for a job (RFC 3339).
#[must_use]
pub fn slot_key(job: &str) -> String {
    format!("slot:{job}")
}

/// One job's state.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    /// `OWNER/KIND`.
    pub job: String,
    /// The last successful run.
    pub last_success: Option<RunRecord>,
    /// The last failed run (failed, timed out, missed).
    pub last_failure: Option<RunRecord>,
    /// The next scheduled instant.
    pub next_run: Option<Timestamp>,
    /// A scheduled run should have succeeded by now and has not.
    pub overdue: bool,
    /// The last run failed (and no success since).
    pub failing: bool,
}

/// The state of `spec` at `now` from `state`.
///
/// INTERFACE (being built): lands with the status work.
///
/// # Errors
/// [`crate::state::StateError`].
pub fn job_status(
    spec: &JobSpec,
    state: &crate::state::State,
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<JobStatus, crate::state::StateError> {
    let _ = (state, now, tz);
    Ok(JobStatus {
        job: spec.id.clone(),
        last_success: None,
        last_failure: None,
        next_run: None,
        overdue: false,
        failing: false,
    })
}
