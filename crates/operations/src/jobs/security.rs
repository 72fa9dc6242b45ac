//! The security jobs: the continuous watch and the canary (`crate::security`).

use super::{Done, Failure, JobContext, JobSpec};
use coffer_repository::JobControl;

/// The watch: polls the repository's store until cancelled. (Issue 14: to be built.)
pub(super) fn watch(_ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl) -> Result<Done, Failure> {
    Err(Failure::new("invalid", format!("job {}: the security watch is not built yet", spec.id)))
}

/// The canary: one round of probes. (Issue 14: to be built.)
pub(super) fn canary(_ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl) -> Result<Done, Failure> {
    Err(Failure::new("invalid", format!("job {}: the canary is not built yet", spec.id)))
}
