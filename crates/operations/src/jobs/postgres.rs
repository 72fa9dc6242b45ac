//! The PostgreSQL jobs: `base-backup` and `stream` (as the `writer`, the library calls
//! `coffer pg backup` and `coffer pg stream` make) and `archive-check` (as the `reader`):
//! whether WAL archiving keeps the recovery window current.
//!
//! The archive check's verdict (`docs/operations.md`, "Jobs"): it reads the server's
//! `pg_stat_archiver` and the repository's archive of the cluster, and fails when the
//! server cannot be asked, when the archiver's last failure is newer than its last success,
//! when the archive lags more than `archive-lag-alert`, when nothing is archived, or when
//! `pg restore --latest` would be refused for a missing segment. Its details always carry
//! the same keys ([`ARCHIVE_KEYS`]), empty when unknown, for `status` and metrics.

use super::{Done, Failure, JobContext, JobSpec, source};
use coffer_repository::{JobControl, Repository};
use coffer_sources::postgres::{self as pg, BaseBackup, ClusterWal, PgError, PlanTarget, RestorePlan, client};
use coffer_store::Role;
use jiff::Timestamp;
use std::collections::BTreeMap;

/// The keys every archive check's record has in `details` (empty when unknown).
pub const ARCHIVE_KEYS: [&str; 8] = [
    "archive_lag_seconds",
    "last_archived_wal",
    "last_archived_time",
    "last_failed_wal",
    "last_failed_time",
    "recovery_window_start",
    "recovery_window_end",
    "wal_gaps",
];

/// The `error_class` of an archive check that ran and found archiving unhealthy (lagging,
/// failing, nothing archived, a gap): a verdict about archiving, not an error of the check.
pub const ARCHIVE_CLASS: &str = "archive";

fn pg_failure(e: &PgError) -> Failure {
    Failure::of(e, e.class())
}

/// The cluster name base backups record: the source's name when PostgreSQL's rules for it
/// allow (non-empty, no spaces), so `pg info --cluster SOURCE` and the archive check find it.
pub(super) fn cluster_name(source: &str) -> Option<String> {
    (!source.is_empty() && !source.contains(char::is_whitespace)).then(|| source.to_owned())
}

/// Takes a base backup. It completes only once the WAL from its start to its end is in
/// the repository (stored by `archive_command = 'coffer pg wal-push %p'` or by the stream
/// job), within the library's WAL timeout (5 minutes); without archiving it fails.
pub(super) fn base_backup(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let name = spec.source.as_deref().unwrap_or_default();
    let s = source(&ctx.config.postgres, spec)?;
    let opts = pg::BaseBackupOptions {
        pg: s.connection.clone(),
        host: Some(ctx.host.clone()),
        cluster: cluster_name(name),
        retention: s.retention,
        ..pg::BaseBackupOptions::default()
    };
    // Started first, as `pg backup` does: the server's checkpoint overlaps opening the
    // repository; if opening fails, dropping the started backup stops pg_basebackup.
    let started = pg::StartedBackup::start(&opts).map_err(|e| pg_failure(&e))?;
    let repo = crate::open::open_repository(&ctx.config, &spec.repository, Role::Writer, ctx.clock.clone())?;
    let report = started.finish(&repo, ctl).map_err(|e| pg_failure(&e))?;
    let b = &report.base;
    let mut done = Done {
        files: Some(1),
        bytes_read: Some(report.bytes),
        bytes_added: Some(report.bytes_added),
        snapshot: Some(b.snapshot.clone()),
        ..Done::default()
    };
    for (k, v) in [
        ("sysid", b.sysid.to_string()),
        ("timeline", b.timeline.to_string()),
        ("start_lsn", b.start_lsn.to_string()),
        ("stop_lsn", b.stop_lsn.to_string()),
        ("stop_time", b.stop_time.to_string()),
    ] {
        done.details.insert(k.to_owned(), v);
    }
    Ok(done)
}

/// Streams WAL until cancelled (the daemon's shutdown or reload: the record is then
/// `cancelled`, with the WAL files stored meanwhile) or until it fails (the daemon restarts
/// it with backoff). The spool is `postgres.NAME.spool`, else `STATE_DIR/spool/NAME`.
pub(super) fn stream(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let name = spec.source.as_deref().unwrap_or_default();
    let s = source(&ctx.config.postgres, spec)?;
    let opts = pg::StreamOptions {
        spool: s.spool.clone().unwrap_or_else(|| ctx.state_dir.join("spool").join(name)),
        pg: s.connection.clone(),
        slot: s.slot.clone().unwrap_or_else(|| "coffer".to_owned()),
        synchronous: false,
        application_name: "coffer".to_owned(),
        partial_interval: std::time::Duration::from_secs(10),
        drain: false,
        sysid: None,
    };
    let repo = crate::open::open_repository(&ctx.config, &spec.repository, Role::Writer, ctx.clock.clone())?;
    let report = pg::stream(&repo, &opts, ctl).map_err(|e| pg_failure(&e))?;
    let mut done = Done { files: Some(report.stored), ..Done::default() };
    done.details.insert("sysid".to_owned(), report.sysid.to_string());
    Ok(done)
}

/// What the server says about archiving.
struct ServerView {
    sysid: u64,
    status: client::ArchiverStatus,
}

fn ask_server(conninfo: Option<&str>) -> Result<ServerView, PgError> {
    let mut c = client::connect(conninfo)?;
    let sysid = client::server_facts(&mut c)?.sysid;
    let status = client::archiver_status(&mut c)?;
    Ok(ServerView { sysid, status })
}

/// What the repository holds of the cluster's archive.
#[derive(Default)]
struct RepoView {
    sysid: Option<u64>,
    /// The oldest base backup's end: the earliest consistent point.
    window_start: Option<Timestamp>,
    /// The newest base backup's end: a restore reaches at least this far.
    newest_base: Option<Timestamp>,
    /// The newest archived segment (`.partial` ones too).
    newest: Option<String>,
    /// When the store stored (the newest version of) it.
    newest_stored: Option<Timestamp>,
    /// The newest archived complete segment (not `.partial`).
    newest_complete: Option<String>,
    gaps: Vec<String>,
    /// How many segments are archived (`.partial` ones too).
    segments: u64,
    /// The segment `pg restore --latest` lacks.
    missing_for_latest: Option<String>,
}

/// The repository's view of cluster `sysid`, else of the cluster named `name` by its base
/// backups, else of its only cluster (the server could not be asked).
fn ask_repository(repo: &Repository, sysid: Option<u64>, name: &str, ctl: &JobControl) -> Result<RepoView, PgError> {
    let all = pg::base_backups(repo)?;
    let sysid = match sysid {
        Some(s) => Some(s),
        None => match pg::cluster_by_name(&all, name) {
            Some(s) => Some(s),
            None => match repo.pg_clusters()?.as_slice() {
                [only] => Some(*only),
                _ => None,
            },
        },
    };
    let Some(sysid) = sysid else { return Ok(RepoView::default()) };
    ctl.check()?;
    let bases: Vec<&BaseBackup> = all.iter().filter(|b| b.sysid == sysid).collect();
    let wal = ClusterWal::load(repo, sysid, &bases)?;
    let newest = wal.segments().last().cloned();
    let newest_complete = wal.segments().filter(|n| !n.ends_with(".partial")).last().cloned();
    let newest_stored = match &newest {
        Some(n) => Some(
            repo.store()
                .head(&repo.wal_key(sysid, n), None)
                .map_err(|e| PgError::Repo(coffer_repository::RepoError::store(format!("cannot read {n}"))(e)))?
                .created,
        ),
        None => None,
    };
    let history = if bases.is_empty() { BTreeMap::new() } else { wal.load_history(repo, sysid, ctl)? };
    let missing_for_latest = RestorePlan::choose(sysid, &bases, &history, PlanTarget::Latest, None)
        .ok()
        .and_then(|p| p.first_missing(&wal))
        .map(|(s, _)| s.name(wal.seg_size));
    Ok(RepoView {
        sysid: Some(sysid),
        window_start: bases.iter().map(|b| b.stop_time).min(),
        newest_base: bases.iter().map(|b| b.stop_time).max(),
        newest,
        newest_stored,
        newest_complete,
        segments: wal.segments().count() as u64,
        gaps: wal.gaps().into_iter().map(|g| g.name(wal.seg_size)).collect(),
        missing_for_latest,
    })
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_default()
}

/// Checks archiving's health (see the module's docs for the verdict and `docs/operations.md`
/// for the lag's definition).
pub(super) fn archive_check(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let name = spec.source.as_deref().unwrap_or_default();
    let s = source(&ctx.config.postgres, spec)?;
    let mut d: BTreeMap<String, String> = ARCHIVE_KEYS.iter().map(|k| ((*k).to_owned(), String::new())).collect();
    let mut set = |k: &str, v: String| {
        d.insert(k.to_owned(), v);
    };

    let server = ask_server(s.connection.as_deref());
    let st = server.as_ref().ok().map(|v| &v.status);
    if let Some(st) = st {
        set("last_archived_wal", st.last_archived.clone().unwrap_or_default());
        set("last_archived_time", time(st.last_archived_time));
        set("last_failed_wal", st.last_failed.clone().unwrap_or_default());
        set("last_failed_time", time(st.last_failed_time));
        set("failed_count", st.failed_count.to_string());
        set("current_wal", st.current_wal.clone().unwrap_or_default());
    }

    let view = crate::open::open_repository(&ctx.config, &spec.repository, Role::Reader, ctx.clock.clone())
        .map_err(Failure::from)
        .and_then(|repo| {
            ask_repository(&repo, server.as_ref().ok().map(|v| v.sysid), name, ctl).map_err(|e| pg_failure(&e))
        });
    let mut lag = None;
    if let Ok(v) = &view {
        set("recovery_window_start", time(v.window_start));
        // What `restore --latest` reaches: the newest WAL stored (the end of its segment),
        // and at least the newest base backup's end (recorded once its WAL was stored).
        set("recovery_window_end", time(v.newest_base.and(v.newest_stored.max(v.newest_base))));
        set("wal_gaps", v.gaps.len().to_string());
        set("newest_wal", v.newest.clone().unwrap_or_default());
        set("newest_wal_time", time(v.newest_stored));
        if let Some(sysid) = v.sysid {
            set("sysid", sysid.to_string());
        }
        if let Some(g) = v.gaps.first() {
            set("wal_gap_first", g.clone());
        }
        if let Some(m) = &v.missing_for_latest {
            set("latest_restore_missing", m.clone());
        }
        lag = archive_lag(st, v, ctx.clock.now());
        if let Some(l) = lag {
            set("archive_lag_seconds", l.to_string());
        }
    }

    let verdict = |problem: &str, error: String, mut d: BTreeMap<String, String>| {
        d.insert("archive_problem".to_owned(), problem.to_owned());
        Err(Failure::new(ARCHIVE_CLASS, error).with(d))
    };
    let st = match &server {
        Ok(v) => &v.status,
        Err(e) => return Err(pg_failure(e).with(d)),
    };
    let view = match view {
        Ok(v) => v,
        Err(f) => return Err(f.with(d)),
    };
    if let Some(failed) = &st.last_failed {
        if st.last_archived_time.is_none_or(|ok| st.last_failed_time.is_some_and(|bad| bad > ok)) {
            let since = st
                .last_archived
                .as_deref()
                .map_or_else(|| "never archived".to_owned(), |a| format!("last archived {a}"));
            return verdict(
                "failing",
                format!(
                    "WAL archiving of {name} is failing: the server could not archive {failed} at {} ({} failures; {since})",
                    time(st.last_failed_time),
                    st.failed_count,
                ),
                d,
            );
        }
    }
    let threshold = s.archive_lag_alert.as_secs();
    // WAL the server archived elsewhere restores nothing from this repository.
    let (Some(lag), Some(_)) = (lag, &view.newest) else {
        return verdict("none-archived", format!("no WAL of {name} is archived in repository {}", spec.repository), d);
    };
    if lag > threshold {
        let newest = view.newest.as_deref().or(st.last_archived.as_deref()).unwrap_or("-");
        return verdict(
            "lagging",
            format!(
                "WAL archiving of {name} lags {lag}s behind (alert above {threshold}s); the newest archived WAL is {newest}"
            ),
            d,
        );
    }
    if let Some(m) = &view.missing_for_latest {
        return verdict(
            "gap",
            format!(
                "WAL segment {m} of {name} is missing from repository {}: a restore to the latest point is refused",
                spec.repository
            ),
            d,
        );
    }
    Ok(Done { files: Some(view.segments), details: d, ..Done::default() })
}

/// The archive lag in seconds: `now` minus the newest of the server's last archived time
/// and the time the repository stored its newest WAL file — or 0 when the server has
/// written no WAL since the newest complete segment archived (an idle server is not
/// behind). `None`: nothing is archived.
fn archive_lag(st: Option<&client::ArchiverStatus>, v: &RepoView, now: Timestamp) -> Option<u64> {
    let newest_complete = st.and_then(|s| s.last_archived.clone()).max(v.newest_complete.clone());
    let current = st.and_then(|s| s.current_wal.as_deref());
    if let (Some(cur), Some(done)) = (current, newest_complete.as_deref()) {
        if done >= cur {
            return Some(0);
        }
    }
    let newest = st.and_then(|s| s.last_archived_time).max(v.newest_stored)?;
    Some(u64::try_from(now.duration_since(newest).as_secs()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn status(archived: Option<(&str, &str)>, current: Option<&str>) -> client::ArchiverStatus {
        client::ArchiverStatus {
            last_archived: archived.map(|a| a.0.to_owned()),
            last_archived_time: archived.map(|a| ts(a.1)),
            last_failed: None,
            last_failed_time: None,
            failed_count: 0,
            current_wal: current.map(str::to_owned),
        }
    }

    const SEG1: &str = "000000010000000000000001";
    const SEG2: &str = "000000010000000000000002";
    const SEG3: &str = "000000010000000000000003";

    #[test]
    fn the_lag_counts_from_the_newest_archived_by_either_way() {
        let now = ts("2026-12-05T12:10:00Z");
        let repo = RepoView {
            newest: Some(SEG1.into()),
            newest_complete: Some(SEG1.into()),
            newest_stored: Some(ts("2026-12-05T12:00:00Z")),
            ..RepoView::default()
        };
        // The server archived later than the repository's newest (the same file, pushed).
        let st = status(Some((SEG2, "2026-12-05T12:05:00Z")), Some(SEG3));
        assert_eq!(archive_lag(Some(&st), &repo, now), Some(300));
        // The server unreachable: the repository's view alone.
        assert_eq!(archive_lag(None, &repo, now), Some(600));
        // Nothing archived anywhere.
        assert_eq!(archive_lag(Some(&status(None, Some(SEG1))), &RepoView::default(), now), None);
    }

    #[test]
    fn an_idle_server_does_not_lag() {
        let now = ts("2026-12-05T18:00:00Z");
        let repo = RepoView::default();
        // The server's write position is still at the end of the last archived segment.
        let st = status(Some((SEG2, "2026-12-05T12:00:00Z")), Some(SEG2));
        assert_eq!(archive_lag(Some(&st), &repo, now), Some(0));
        // It wrote into the next one: the wait counts.
        let st = status(Some((SEG2, "2026-12-05T12:00:00Z")), Some(SEG3));
        assert_eq!(archive_lag(Some(&st), &repo, now), Some(6 * 3600));
        // A .partial (streaming) is not a complete segment: its time counts.
        let repo = RepoView {
            newest: Some(format!("{SEG3}.partial")),
            newest_complete: Some(SEG2.into()),
            newest_stored: Some(ts("2026-12-05T17:59:50Z")),
            ..RepoView::default()
        };
        assert_eq!(archive_lag(Some(&status(None, Some(SEG3))), &repo, now), Some(10));
    }
}
