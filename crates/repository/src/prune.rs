//! `prune`: remove what has expired — run as the `pruner`, from metadata alone.
//!
//! Invariant guarded: nothing a live snapshot needs is ever removed. Prune needs no key and
//! reads no data: every object Coffer writes carries a lock that covers every snapshot
//! referencing it (backups extend locks before writing a snapshot), so a version whose
//! lock has ended is needed by no live snapshot, and the store itself refuses to delete
//! one whose lock is still on. Prune therefore deletes exactly the repository's versions
//! whose retention has ended and that carry no legal hold. A backup racing with prune
//! either extends a lock first (then the store refuses prune's delete) or finds the
//! version gone (then it uploads the data again); it never fails because of prune.
//!
//! Only the repository's own namespaces are touched (`config`, `keys/`, `data/`,
//! `index/`, `snapshots/`, `pg/` — PostgreSQL WAL archives), and only versions that have a retention: anything else in the
//! same store (objects put by hand without a lock) is left alone. Delete markers in those
//! namespaces are removed too: Coffer never writes them, and one hiding a needed object
//! would make it unreadable.
//!
//! Progress: a `"prune"` phase with one `Advance` per version examined (its bytes), and an
//! `Object { action: "removed" }` for each version or delete marker removed. Cancellation is
//! checked before each removal: a cancelled prune has removed only versions that had expired
//! (each removal stands alone), and the next prune removes the rest.

use crate::error::{RepoError, Result};
use crate::observe::{Event, JobControl, Progress};
use coffer_store::{ErrorKind, ObjectStore};
use serde::Serialize;

/// What prune did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PruneReport {
    /// Versions removed (or to remove).
    pub versions_removed: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Snapshot objects among them.
    pub snapshots_removed: u64,
    /// Pack objects among them.
    pub packs_removed: u64,
    /// Delete markers removed.
    pub markers_removed: u64,
    /// Versions still locked (kept).
    pub versions_kept: u64,
    /// Versions that could not be removed (e.g. a lock was extended meanwhile), with why.
    pub skipped: Vec<String>,
}

/// Every namespace of a repository. `ledger/` is pruned like the rest: a ledger record is
/// locked until the retention ceiling past its append (`docs/ledger.md`), so its lock ending
/// is what makes it old enough to go. `dicts/` too: every backup extends a dictionary's lock,
/// so it expires only after the last backup that could need it.
const NAMESPACES: [&str; 8] = ["config", "keys/", "data/", "index/", "snapshots/", "pg/", "ledger/", "dicts/"];

/// Removes expired versions under `prefix`. `store` must act as the pruner.
///
/// # Errors
/// Store errors other than a refusal of one version (those are reported and skipped);
/// [`RepoError::Cancelled`] once `ctl` is cancelled.
pub fn prune(
    store: &dyn ObjectStore,
    prefix: &str,
    now: jiff::Timestamp,
    dry_run: bool,
    ctl: &JobControl,
) -> Result<PruneReport> {
    ctl.emit(&Event::Phase { name: "prune" });
    let mut rep = PruneReport::default();
    for ns in NAMESPACES {
        let p = format!("{prefix}{ns}");
        let mut token: Option<String> = None;
        loop {
            let page = store
                .list_versions(&p, token.as_deref(), 1000)
                .map_err(RepoError::store(format!("cannot list versions under {p}")))?;
            for v in &page.items {
                if ns == "config" && v.key != p {
                    continue;
                }
                ctl.check()?;
                ctl.emit(&Event::Advance(Progress::new(1, v.size)));
                let expired = v.delete_marker || v.retention.is_some_and(|r| !r.active_at(now));
                if !expired || v.legal_hold {
                    if v.retention.is_some() {
                        rep.versions_kept += 1;
                    }
                    continue;
                }
                if !dry_run {
                    match store.delete_version(&v.key, &v.version, false) {
                        Ok(()) => {}
                        Err(e) if matches!(e.kind(), ErrorKind::Locked | ErrorKind::NotFound) => {
                            rep.skipped.push(format!("{} version {}: {e}", v.key, v.version));
                            continue;
                        }
                        Err(e) => {
                            return Err(RepoError::store(format!("cannot remove {} version {}", v.key, v.version))(e));
                        }
                    }
                    ctl.emit(&Event::Object { action: "removed", key: &v.key, bytes: v.size });
                }
                if v.delete_marker {
                    rep.markers_removed += 1;
                    continue;
                }
                rep.versions_removed += 1;
                rep.bytes_freed += v.size;
                if ns == "snapshots/" {
                    rep.snapshots_removed += 1;
                } else if ns == "data/" {
                    rep.packs_removed += 1;
                }
            }
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    Ok(rep)
}
