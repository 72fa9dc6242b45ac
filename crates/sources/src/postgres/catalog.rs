//! The base-backup catalog: what each `pg-base` snapshot records about its cluster, read
//! back from the snapshot's `pg-…=` tags, and which cluster a request means.
//!
//! Snapshots are read from the repository, so everything here is hostile input: a tag that
//! does not parse, or a segment size PostgreSQL would not use, makes the snapshot no base
//! backup rather than a panic or a nonsensical restore.

use super::{Lsn, PgError, Result};
use coffer_repository::wal::Segment;
use coffer_repository::{Id, Repository, Snapshot};
use jiff::Timestamp;

/// A base backup: a `pg-base` snapshot and the cluster facts it records.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BaseBackup {
    /// The snapshot's id (hex).
    pub snapshot: String,
    /// The cluster's system identifier (a string in JSON: it exceeds 2^53).
    #[serde(serialize_with = "super::as_string")]
    pub sysid: u64,
    /// The timeline the backup started on.
    pub timeline: u32,
    /// Where its WAL starts.
    pub start_lsn: Lsn,
    /// Where its WAL ends: recovery is consistent from here.
    pub stop_lsn: Lsn,
    /// When the backup ended.
    pub stop_time: Timestamp,
    /// The cluster's WAL segment size.
    pub seg_size: u64,
    /// The cluster's name (`pg backup --cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The snapshot's tree.
    #[serde(skip)]
    pub tree: Id,
}

impl BaseBackup {
    /// The base backup a snapshot records; `None` if it is not one, or its tags do not parse.
    #[must_use]
    pub fn from_snapshot(id: &Id, s: &Snapshot) -> Option<Self> {
        if s.kind != "pg-base" {
            return None;
        }
        let tag = |k: &str| s.tags.iter().find_map(|t| t.strip_prefix(k)?.strip_prefix('=')).map(str::to_owned);
        let seg_size: u64 = tag("pg-wal-segment-size")?.parse().ok()?;
        if !seg_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&seg_size) {
            return None;
        }
        Some(Self {
            snapshot: id.to_string(),
            sysid: tag("pg-sysid")?.parse().ok()?,
            timeline: tag("pg-timeline")?.parse().ok()?,
            start_lsn: tag("pg-start-lsn")?.parse().ok()?,
            stop_lsn: tag("pg-stop-lsn")?.parse().ok()?,
            stop_time: tag("pg-stop-time")?.parse().ok()?,
            seg_size,
            cluster: tag("pg-cluster"),
            tree: s.tree,
        })
    }

    /// The snapshot's short id, for messages.
    #[must_use]
    pub fn short(&self) -> &str {
        self.snapshot.get(..8).unwrap_or(&self.snapshot)
    }

    /// The segments from the start to the stop LSN: the WAL without which the backup is
    /// not consistent.
    #[must_use]
    pub fn needed_segments(&self) -> Vec<Segment> {
        let start = self.start_lsn.segment(self.seg_size);
        let stop = self.stop_lsn.0.max(1).saturating_sub(1) / self.seg_size;
        (start..=stop.max(start)).map(|number| Segment { timeline: self.timeline, number }).collect()
    }
}

/// Every base backup in the repository, oldest first.
///
/// # Errors
/// Repository errors.
pub fn base_backups(repo: &Repository) -> Result<Vec<BaseBackup>> {
    Ok(repo.snapshots()?.iter().filter_map(|(id, s)| BaseBackup::from_snapshot(id, s)).collect())
}

/// The system identifier named `name` by the newest base backup that carries the name (a
/// cluster created anew, e.g. by an upgrade, gets a new system identifier and keeps its
/// name: the name then means the newest one, and `--sysid` reaches the older).
#[must_use]
pub fn cluster_by_name(bases: &[BaseBackup], name: &str) -> Option<u64> {
    bases.iter().filter(|b| b.cluster.as_deref() == Some(name)).max_by_key(|b| b.stop_time).map(|b| b.sysid)
}

/// The cluster a request means: `sysid`, else the one named `name`, else the only one.
pub(crate) fn pick_cluster(
    repo: &Repository,
    bases: &[BaseBackup],
    sysid: Option<u64>,
    name: Option<&str>,
) -> Result<u64> {
    if let Some(s) = sysid {
        return Ok(s);
    }
    if let Some(name) = name {
        return cluster_by_name(bases, name).ok_or_else(|| no_cluster_named(repo, name));
    }
    let mut ids: Vec<u64> = bases.iter().map(|b| b.sysid).chain(repo.pg_clusters()?).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [one] => Ok(*one),
        [] => Err(PgError::Invalid(format!("{} holds no PostgreSQL backups", repo.location()))),
        _ => Err(PgError::Invalid(format!(
            "{} holds several PostgreSQL clusters; choose one with --sysid or --cluster",
            repo.location()
        ))),
    }
}

pub(crate) fn no_cluster_named(repo: &Repository, name: &str) -> PgError {
    PgError::Invalid(format!("{} holds no base backup of a cluster named {name:?}", repo.location()))
}
