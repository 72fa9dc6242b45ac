//! `pg info`: per cluster, its base backups, archived WAL, gaps and recovery window.
//!
//! The window ends at the last archived commit's time ([`super::xlog`]): the latest
//! `--time` a restore can reach, not the time a segment was archived, which would promise
//! a window the WAL does not cover. Gaps are [`ClusterWal::gaps`]; whether one stops a
//! restore is what [`RestorePlan`] — the plan `restore` itself makes — says for `--latest`.

use super::catalog::{cluster_by_name, no_cluster_named};
use super::plan::{ClusterWal, PlanTarget, RestorePlan};
use super::{BaseBackup, Lsn, Result, base_backups, xlog};
use coffer_repository::wal::Segment;
use coffer_repository::{JobControl, Repository};
use jiff::Timestamp;

/// Which clusters to describe (`pg info`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct InfoOptions {
    /// Only this cluster
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_SYSID"))]
    #[serde(default)]
    pub sysid: Option<u64>,
    /// Only the cluster of this name (`pg backup --cluster`)
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_CLUSTER", value_name = "NAME", conflicts_with = "sysid"))]
    #[serde(default)]
    pub cluster: Option<String>,
}

/// The clusters a repository holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InfoReport {
    /// One per cluster, by system identifier.
    pub clusters: Vec<ClusterInfo>,
}

/// One cluster's backups and archive.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterInfo {
    /// Its system identifier.
    #[serde(serialize_with = "super::as_string")]
    pub sysid: u64,
    /// Its name, from the newest base backup that carries one.
    pub name: Option<String>,
    /// Its base backups, oldest first.
    pub base_backups: Vec<BaseBackup>,
    /// How many segments are archived (`.partial` ones too).
    pub wal_segments: usize,
    /// The first archived segment.
    pub first_segment: Option<String>,
    /// The last archived segment.
    pub last_segment: Option<String>,
    /// The archived `.history` files.
    pub history_files: Vec<String>,
    /// Segments missing between the first and the last of each timeline.
    pub gaps: Vec<String>,
    /// What a restore can reach, if there is a base backup.
    pub recovery_window: Option<RecoveryWindow>,
    /// What `pg restore --latest` would do, planned as it plans ([`RestorePlan`]).
    pub latest_restore: Option<LatestRestore>,
}

/// `pg restore --latest`'s plan.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LatestRestore {
    /// The base backup it starts from (its snapshot id).
    pub base: String,
    /// The timelines it follows.
    pub timelines: Vec<u32>,
    /// The first WAL segment it needs that the archive lacks: the restore is refused.
    pub missing_segment: Option<String>,
}

/// The span of time a point-in-time restore can reach.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecoveryWindow {
    /// The oldest base backup's end: the earliest consistent point.
    pub from_time: Timestamp,
    /// Its LSN.
    pub from_lsn: Lsn,
    /// The last archived segment.
    pub to_segment: Option<String>,
    /// The last archived commit's time, if one was found in the newest segments.
    pub to_time: Option<Timestamp>,
}

/// How many of the newest segments `info` reads looking for the last commit: an idle
/// server switches segments (archive_timeout) without committing, and reading the whole
/// archive would make `info` as slow as a restore.
const COMMIT_SCAN_SEGMENTS: usize = 16;

/// Describes the clusters of `repo`.
///
/// # Errors
/// `Invalid` for an unknown cluster name; repository errors; cancellation.
pub fn info(repo: &Repository, opts: &InfoOptions, ctl: &JobControl) -> Result<InfoReport> {
    let all = base_backups(repo)?;
    let mut ids: Vec<u64> = all.iter().map(|b| b.sysid).chain(repo.pg_clusters()?).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.retain(|s| opts.sysid.is_none_or(|w| w == *s));
    if let Some(name) = &opts.cluster {
        let id = cluster_by_name(&all, name).ok_or_else(|| no_cluster_named(repo, name))?;
        ids.retain(|s| *s == id);
    }
    let mut clusters = Vec::new();
    for sysid in ids {
        ctl.check()?;
        let bases: Vec<&BaseBackup> = all.iter().filter(|b| b.sysid == sysid).collect();
        let wal = ClusterWal::load(repo, sysid, &bases)?;
        let segs: Vec<&String> = wal.segments().collect();
        let to_time = if bases.is_empty() { None } else { last_commit_time(repo, sysid, &segs, wal.seg_size, ctl)? };
        let recovery_window = bases.first().map(|b| RecoveryWindow {
            from_time: b.stop_time,
            from_lsn: b.stop_lsn,
            to_segment: segs.last().map(|s| (*s).clone()),
            to_time,
        });
        let history = if bases.is_empty() { Default::default() } else { wal.load_history(repo, sysid, ctl)? };
        let latest_restore =
            RestorePlan::choose(sysid, &bases, &history, PlanTarget::Latest, None).ok().map(|p| LatestRestore {
                base: p.base.snapshot.clone(),
                timelines: p.path.iter().map(|t| t.timeline).collect(),
                missing_segment: p.first_missing(&wal).map(|(s, _)| s.name(wal.seg_size)),
            });
        let name =
            bases.iter().filter(|b| b.cluster.is_some()).max_by_key(|b| b.stop_time).and_then(|b| b.cluster.clone());
        clusters.push(ClusterInfo {
            sysid,
            name,
            base_backups: bases.into_iter().cloned().collect(),
            wal_segments: segs.len(),
            first_segment: segs.first().map(|s| (*s).clone()),
            last_segment: segs.last().map(|s| (*s).clone()),
            history_files: wal.history_files().cloned().collect(),
            gaps: wal.gaps().into_iter().map(|g| g.name(wal.seg_size)).collect(),
            recovery_window,
            latest_restore,
        });
    }
    Ok(InfoReport { clusters })
}

/// The time of the newest commit or abort record in the newest archived segments: the
/// latest `--time` a restore can reach (see [`xlog`]).
fn last_commit_time(
    repo: &Repository,
    sysid: u64,
    segs: &[&String],
    seg_size: u64,
    ctl: &JobControl,
) -> Result<Option<Timestamp>> {
    for name in segs.iter().rev().take(COMMIT_SCAN_SEGMENTS) {
        let Some(seg) = Segment::parse(name, seg_size) else { continue };
        ctl.check()?;
        let Some(data) = repo.get_wal(sysid, name)? else { continue };
        if let Some(t) = xlog::last_xact_time(&data, seg.number * seg_size) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}
