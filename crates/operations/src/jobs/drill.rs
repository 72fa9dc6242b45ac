//! The drill jobs: `SOURCE/drill` (a files or PostgreSQL source's restore drill) and
//! `REPOSITORY/rebuild` (the full rebuild), through [`crate::drill`] as `coffer drill` runs
//! them. The report is queued for the ledger (kind `drill`) and summarised in the run's
//! record (`rto_seconds`, `data_age_seconds`, `drill_report`); a drill that did not pass
//! fails the job (class `drill`).

use super::{Done, Failure, JobContext, JobSpec};
use coffer_repository::JobControl;

/// The error class of a drill that ran and did not pass.
pub const DRILL_CLASS: &str = "drill";

/// Runs a source's drill.
pub(super) fn drill(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let _ = (ctx, ctl);
    Err(Failure::new(DRILL_CLASS, format!("job {}: drills are not built yet", spec.id)))
}

/// Runs a repository's full rebuild.
pub(super) fn rebuild(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let _ = (ctx, ctl);
    Err(Failure::new(DRILL_CLASS, format!("job {}: drills are not built yet", spec.id)))
}
