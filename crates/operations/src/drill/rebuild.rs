//! The full-rebuild drill (`coffer drill rebuild`, job `REPOSITORY/rebuild`): in a clean
//! scratch root, with nothing but the repository's location, the reader's credentials and
//! the password — no local state, no cache, no coffer.toml from the host — the policy the
//! daemon ran is read back from the repository's ledger ([`super::PolicyRecord`]) and every
//! source it declares for that repository is restored and checked: every files source's
//! latest snapshot, every PostgreSQL cluster to its latest point. One RTO for everything
//! back, and one per source.

use super::{DrillError, DrillReport};
use coffer_repository::JobControl;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// What a rebuild starts from: only these.
#[derive(Clone)]
pub struct RebuildOptions {
    /// The job (`REPOSITORY/rebuild`, or `manual`).
    pub job: String,
    /// The repository's location (a vault directory or `s3://…`).
    pub location: String,
    /// The reader's credentials file (none: the vault's own, or the AWS chain).
    pub credentials: Option<PathBuf>,
    /// The repository password.
    pub password: Zeroizing<Vec<u8>>,
    /// The host, for the report.
    pub host: String,
    /// The scratch root (created; must be empty if it exists; removed after).
    pub scratch: PathBuf,
    /// The RTO target for everything back (none: the stored policy's).
    pub rto_target: Option<Duration>,
    /// The user PostgreSQL servers run as when the drill runs as root.
    pub run_as: Option<String>,
    /// Leave what was restored in place.
    pub keep: bool,
}

impl std::fmt::Debug for RebuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a secret: never in a log.
        f.debug_struct("RebuildOptions")
            .field("job", &self.job)
            .field("location", &self.location)
            .field("credentials", &self.credentials)
            .field("scratch", &self.scratch)
            .finish_non_exhaustive()
    }
}

/// Runs the full rebuild.
///
/// # Errors
/// [`DrillError`] when it could not run at all (the repository cannot be opened, no policy
/// is stored in it); a rebuild that ran and failed is `Ok` with `passed: false`.
pub fn rebuild(opts: &RebuildOptions, ctl: &JobControl) -> Result<DrillReport, DrillError> {
    let _ = (opts, ctl);
    Err(DrillError::Invalid("the rebuild drill is not built yet".into()))
}
