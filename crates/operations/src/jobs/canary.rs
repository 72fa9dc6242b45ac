//! The canary job (`crate::security::canary`): one round of probes.

use super::{Done, Failure, JobContext, JobSpec};
use coffer_repository::JobControl;

/// The canary. (Issue 14: to be built.)
pub(super) fn canary(_ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl) -> Result<Done, Failure> {
    Err(Failure::new("invalid", format!("job {}: the canary is not built yet", spec.id)))
}
