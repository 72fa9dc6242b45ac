//! The security watch job (`crate::security::watch`): polls the repository's store until
//! cancelled.

use super::{Done, Failure, JobContext, JobSpec};
use coffer_repository::JobControl;

/// The watch. (Issue 14: to be built.)
pub(super) fn watch(_ctx: &JobContext, spec: &JobSpec, _ctl: &JobControl) -> Result<Done, Failure> {
    Err(Failure::new("invalid", format!("job {}: the security watch is not built yet", spec.id)))
}
