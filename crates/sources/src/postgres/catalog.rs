//! The base-backup catalog: what each `pg-base` snapshot records about its cluster, read
//! back from the snapshot's typed `pg` record (or, for base backups written before it, from
//! `pg-…=` tags), and which cluster a request means.
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
    /// The base backup a snapshot records; `None` if it is not one, or its record does not
    /// parse or is of a version this build does not know. Migration on read: a snapshot
    /// written before the typed record (format version 1) has the facts in `pg-…=` tags.
    #[must_use]
    pub fn from_snapshot(id: &Id, s: &Snapshot) -> Option<Self> {
        if s.kind != "pg-base" {
            return None;
        }
        let b = match &s.pg {
            Some(pg) if pg.version == coffer_repository::PG_BASE_VERSION => Self {
                snapshot: id.to_string(),
                sysid: pg.sysid,
                timeline: pg.timeline,
                start_lsn: Lsn(pg.start_lsn),
                stop_lsn: Lsn(pg.stop_lsn),
                stop_time: pg.stop_time,
                seg_size: pg.wal_segment_size,
                cluster: pg.cluster.clone(),
                tree: s.tree,
            },
            Some(_) => return None,
            None => Self::from_tags(id, s)?,
        };
        // Hostile input: a segment size PostgreSQL would not use makes no base backup.
        (b.seg_size.is_power_of_two() && (1 << 20..=1 << 30).contains(&b.seg_size)).then_some(b)
    }

    /// A base backup of the format before version 1: its facts in `pg-…=` tags.
    fn from_tags(id: &Id, s: &Snapshot) -> Option<Self> {
        let tag = |k: &str| s.tags.iter().find_map(|t| t.strip_prefix(k)?.strip_prefix('=')).map(str::to_owned);
        Some(Self {
            snapshot: id.to_string(),
            sysid: tag("pg-sysid")?.parse().ok()?,
            timeline: tag("pg-timeline")?.parse().ok()?,
            start_lsn: tag("pg-start-lsn")?.parse().ok()?,
            stop_lsn: tag("pg-stop-lsn")?.parse().ok()?,
            stop_time: tag("pg-stop-time")?.parse().ok()?,
            seg_size: tag("pg-wal-segment-size")?.parse().ok()?,
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

#[cfg(test)]
mod tests {
    use super::BaseBackup;
    use coffer_repository::{Id, PgBase, Snapshot};

    /// A `pg-base` snapshot as stored, in JSON: the golden form of format version 1.
    const GOLDEN_V1: &str = r#"{"kind":"pg-base","time":"2030-01-01T00:00:00Z","expires":"2030-02-01T00:00:00Z","retain-until":"2030-02-02T00:00:00Z","host":"db1","paths":["pg:7300000000000000001"],"tags":["nightly"],"tree":"0000000000000000000000000000000000000000000000000000000000000000","parent":null,"previous":null,"summary":{"files":1,"dirs":0,"others":0,"bytes":100,"files-read":0,"blobs-added":0,"bytes-added":0,"bytes-stored":0,"locks-extended":0,"blobs-repacked":0,"packs-recovered":0,"errors":0,"changed-while-read":0},"program":"coffer 0.1.0","pg":{"version":1,"sysid":7300000000000000001,"timeline":2,"start-lsn":33554472,"stop-lsn":33554720,"stop-time":"2030-01-01T00:00:05Z","wal-segment-size":16777216,"cluster":"main"}}"#;

    fn expected() -> BaseBackup {
        BaseBackup {
            snapshot: Id([0; 32]).to_string(),
            sysid: 7_300_000_000_000_000_001,
            timeline: 2,
            start_lsn: "0/2000028".parse().unwrap(),
            stop_lsn: "0/2000120".parse().unwrap(),
            stop_time: "2030-01-01T00:00:05Z".parse().unwrap(),
            seg_size: 16 << 20,
            cluster: Some("main".into()),
            tree: Id([0; 32]),
        }
    }

    #[test]
    fn the_typed_record_has_its_golden_json_form() {
        let snap: Snapshot = serde_json::from_str(GOLDEN_V1).unwrap();
        assert_eq!(serde_json::to_string(&snap).unwrap(), GOLDEN_V1, "the stored form changed: a format change");
        assert_eq!(
            snap.pg,
            Some(PgBase {
                version: 1,
                sysid: 7_300_000_000_000_000_001,
                timeline: 2,
                start_lsn: 0x200_0028,
                stop_lsn: 0x200_0120,
                stop_time: "2030-01-01T00:00:05Z".parse().unwrap(),
                wal_segment_size: 16 << 20,
                cluster: Some("main".into()),
            })
        );
        assert_eq!(BaseBackup::from_snapshot(&Id([0; 32]), &snap), Some(expected()));
    }

    #[test]
    fn base_backups_before_the_typed_record_are_read_from_their_tags() {
        let mut snap: Snapshot = serde_json::from_str(GOLDEN_V1).unwrap();
        snap.pg = None;
        snap.tags = [
            "nightly",
            "pg-sysid=7300000000000000001",
            "pg-timeline=2",
            "pg-start-lsn=0/2000028",
            "pg-stop-lsn=0/2000120",
            "pg-stop-time=2030-01-01T00:00:05Z",
            "pg-wal-segment-size=16777216",
            "pg-cluster=main",
        ]
        .map(String::from)
        .to_vec();
        // As written by the format before version 1: no `pg` key at all.
        let old = serde_json::to_string(&snap).unwrap();
        assert!(!old.contains("\"pg\""), "{old}");
        let read: Snapshot = serde_json::from_str(&old).unwrap();
        assert_eq!(BaseBackup::from_snapshot(&Id([0; 32]), &read), Some(expected()));
        // A damaged tag: no base backup, no panic.
        snap.tags[5] = "pg-stop-time=yesterday".into();
        assert_eq!(BaseBackup::from_snapshot(&Id([0; 32]), &snap), None);
    }

    #[test]
    fn unknown_versions_and_hostile_sizes_make_no_base_backup() {
        let mut snap: Snapshot = serde_json::from_str(GOLDEN_V1).unwrap();
        snap.pg.as_mut().unwrap().version = 2;
        assert_eq!(BaseBackup::from_snapshot(&Id([0; 32]), &snap), None);
        for size in [0, 3, 1 << 40] {
            snap.pg.as_mut().unwrap().version = 1;
            snap.pg.as_mut().unwrap().wal_segment_size = size;
            assert_eq!(BaseBackup::from_snapshot(&Id([0; 32]), &snap), None, "{size}");
        }
        // A newer writer's extra fields are ignored.
        let newer = GOLDEN_V1.replace("\"cluster\":\"main\"", "\"cluster\":\"main\",\"extra\":1");
        let snap: Snapshot = serde_json::from_str(&newer).unwrap();
        assert_eq!(BaseBackup::from_snapshot(&Id([0; 32]), &snap), Some(expected()));
    }
}
