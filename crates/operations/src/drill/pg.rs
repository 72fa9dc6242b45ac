//! The PostgreSQL drill (`coffer drill pg`, job `SOURCE/drill`): a throwaway server restored
//! to a point in the recovery window (random by default), started on a private socket,
//! recovered to the target, checked (connections, `pg_amcheck` over every relation, catalog
//! sanity, the user's SQL checks), then stopped and removed; RTO (start to ready at the
//! target) and the data age at the target measured.
//!
//! The server work (restore into scratch, WAL fetched beforehand, the server started as a
//! non-root user on a private socket, the checks' queries) is
//! `coffer_sources::postgres::drill`'s; this module chooses the target, runs the checks in
//! order, times the drill and writes the report. A restore the plan refuses (a missing WAL
//! segment) or a recovery that fails is a drill that ran and failed (`Ok`, `error` set):
//! finding that is what the drill is for. Invariant guarded: the scratch directory is
//! removed and the server stopped whatever happened (guards with `Drop`).

use super::{CheckOutcome, DrillError, DrillKind, DrillReport, Restored};
use crate::config::{PointPick, PostgresSource, SqlCheck};
use coffer_repository::{JobControl, RepoError, Repository};
use coffer_sources::postgres::drill::{RunAs, ScratchRestore, one_line, restore_to_scratch};
use coffer_sources::postgres::{self as pg, PgError};
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The point a PostgreSQL drill recovers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgPoint {
    /// A random time in the recovery window.
    Random,
    /// The end of the archived WAL.
    Latest,
    /// This time.
    Time(Timestamp),
    /// This LSN (`0/3000060`).
    Lsn(String),
    /// This restore point.
    Name(String),
}

/// What a PostgreSQL drill does.
#[derive(Clone, Debug)]
pub struct PgDrillOptions {
    /// The job (`SOURCE/drill`, or `manual`).
    pub job: String,
    /// The source's name, if the drill is for one.
    pub source: Option<String>,
    /// The repository's name (or location), for the report.
    pub repository: String,
    /// The host, for the report.
    pub host: String,
    /// The cluster by name (`pg backup --cluster`), if the repository holds several.
    pub cluster: Option<String>,
    /// The cluster by system identifier.
    pub sysid: Option<u64>,
    /// Where to recover to.
    pub point: PgPoint,
    /// The user's SQL checks.
    pub checks: Vec<SqlCheck>,
    /// The scratch directory (created; must be empty if it exists; removed after).
    pub scratch: PathBuf,
    /// The RTO target.
    pub rto_target: Option<Duration>,
    /// The user the server runs as when the drill runs as root (PostgreSQL refuses root).
    pub run_as: Option<String>,
    /// How long recovery may take.
    pub start_timeout: Duration,
    /// Leave the restored server's directory in place (stopped).
    pub keep: bool,
}

impl PgDrillOptions {
    /// The drill of source `name` as coffer.toml declares it (`[postgres.NAME.drill]`, or
    /// the defaults without one): cluster by the source's name (as its base backups record
    /// it), scratch under `default_scratch` unless the policy names one.
    #[must_use]
    pub fn for_source(name: &str, source: &PostgresSource, host: &str, default_scratch: &Path) -> Self {
        let d = source.drill.as_ref();
        Self {
            job: format!("{name}/drill"),
            source: Some(name.to_owned()),
            repository: source.repository.clone(),
            host: host.to_owned(),
            // The name base backups record for the source (the rule of the base-backup job).
            cluster: (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_owned()),
            sysid: None,
            point: match d.map(|d| d.point) {
                Some(PointPick::Latest) => PgPoint::Latest,
                _ => PgPoint::Random,
            },
            checks: d.map(|d| d.check.clone()).unwrap_or_default(),
            scratch: d.and_then(|d| d.scratch.clone()).unwrap_or_else(|| default_scratch.to_path_buf()),
            rto_target: d.and_then(|d| d.rto_target),
            run_as: d.and_then(|d| d.run_as.clone()),
            start_timeout: d.and_then(|d| d.timeout).unwrap_or(Duration::from_secs(3600)),
            keep: false,
        }
    }
}

/// The scratch directory of one drill: created (refused when it holds anything), removed on
/// drop unless kept.
struct Scratch {
    path: PathBuf,
    keep: bool,
    removed: bool,
}

impl Scratch {
    fn create(path: &Path, keep: bool) -> Result<Self, DrillError> {
        let io = |what: String| move |source| DrillError::Io { what, source };
        if !path.is_absolute() {
            return Err(DrillError::Invalid(format!("scratch directory {} must be an absolute path", path.display())));
        }
        match std::fs::read_dir(path) {
            Ok(mut d) => {
                if d.next().is_some() {
                    return Err(DrillError::Invalid(format!(
                        "scratch directory {} is not empty: a drill restores only into an empty one",
                        path.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).map_err(io(format!("cannot create {}", path.display())))?;
            }
            Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
        }
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(io(format!("cannot set the mode of {}", path.display())))?;
        }
        Ok(Self { path: path.to_path_buf(), keep, removed: false })
    }

    /// Removes the directory (unless kept); the error names it.
    fn remove(&mut self) -> Result<(), String> {
        if self.keep || self.removed {
            return Ok(());
        }
        self.removed = true;
        std::fs::remove_dir_all(&self.path).map_err(|e| format!("cannot remove {}: {e}", self.path.display()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(error = %e, "drill scratch space not removed");
        }
    }
}

/// Runs a PostgreSQL drill as the reader of `repo`.
///
/// # Errors
/// [`DrillError`] when the drill could not run at all (no such cluster, no base backup, a
/// scratch directory not empty or unreachable by the server's user, an unknown run-as user,
/// cancellation); a drill that ran and failed is `Ok` with `passed: false`.
pub fn drill(repo: &Repository, opts: &PgDrillOptions, ctl: &JobControl) -> Result<DrillReport, DrillError> {
    let started = repo.clock().now();
    let t0 = Instant::now();
    let mut report = DrillReport::new(DrillKind::Postgres, &opts.job, &opts.repository, &opts.host, started);
    report.rto_target_seconds = opts.rto_target.map(|d| d.as_secs_f64());
    let src = opts.source.as_deref();
    let run_as = RunAs::when_root(opts.run_as.as_deref()).map_err(pg_error)?;
    let mut scratch = Scratch::create(&opts.scratch, opts.keep)?;

    // The cluster and its recovery window.
    let info =
        pg::info(repo, &pg::InfoOptions { sysid: opts.sysid, cluster: opts.cluster.clone() }, ctl).map_err(pg_error)?;
    let cluster = match info.clusters.as_slice() {
        [one] => one,
        [] => {
            return Err(DrillError::Invalid(match (&opts.cluster, opts.sysid) {
                (_, Some(s)) => format!("{} holds no PostgreSQL cluster {s}", repo.location()),
                _ => format!("{} holds no PostgreSQL backups", repo.location()),
            }));
        }
        _ => {
            return Err(DrillError::Invalid(format!(
                "{} holds several PostgreSQL clusters; choose one with --sysid or --cluster",
                repo.location()
            )));
        }
    };
    let Some(window) = cluster.recovery_window.clone() else {
        return Err(DrillError::Invalid(format!("cluster {} has no base backup to drill", cluster.sysid)));
    };

    // The archive over the whole window: a gap makes part of it unrecoverable, whichever
    // point this drill picks.
    let (outcome, detail) = wal_complete(repo, cluster, ctl)?;
    report.check("pg-wal", src, outcome, detail);

    let (target, label) = choose_target(&opts.point, &window)?;
    let req = ScratchRestore {
        scratch: scratch.path.clone(),
        time: match target {
            Goal::Time(t) => Some(t),
            _ => None,
        },
        lsn: match &target {
            Goal::Lsn(l) => Some(*l),
            _ => None,
        },
        name: match &target {
            Goal::Name(n) => Some(n.clone()),
            _ => None,
        },
        latest: matches!(target, Goal::Latest),
        sysid: Some(cluster.sysid),
        cluster: None,
        run_as,
        start_timeout: opts.start_timeout,
    };
    tracing::debug!(target = %label, scratch = %scratch.path.display(), "PostgreSQL drill: restoring");
    let mut restored = match restore_to_scratch(repo, &req, ctl) {
        Ok(r) => r,
        Err(e) if is_cancel(&e) => return Err(DrillError::Cancelled),
        Err(PgError::Invalid(m)) => return Err(DrillError::Invalid(m)),
        Err(e) => {
            // It ran and failed: the finding this drill exists for.
            report.error = Some(one_line(&format!("restore to {label} failed: {e}")));
            for name in ["pg-connect", "pg-target", "pg-amcheck", "pg-catalog"] {
                report.check(name, src, CheckOutcome::Skipped, "not run: the restore failed");
            }
            for c in &opts.checks {
                report.check(&format!("sql:{}", c.name), src, CheckOutcome::Skipped, "not run: the restore failed");
            }
            if let Err(e) = scratch.remove() {
                report.check("cleanup", src, CheckOutcome::Failed, e);
            }
            report.finish(repo.clock().now());
            return Ok(report);
        }
    };
    let rto = t0.elapsed().as_secs_f64();
    let server = &restored.server;

    // pg-connect.
    match server.version() {
        Ok(v) => {
            report.check(
                "pg-connect",
                src,
                CheckOutcome::Passed,
                one_line(&format!("connected as {}: {v}", server.user())),
            );
            report.versions.insert("postgres".into(), one_line(&v));
        }
        Err(e) => report.check("pg-connect", src, CheckOutcome::Failed, one_line(&e.to_string())),
    }
    // pg-target, and the time the data is from.
    let mut data_time = match target {
        Goal::Time(t) => Some(t),
        Goal::Latest => window.to_time,
        _ => None,
    };
    match server.recovery_state() {
        Ok((true, _)) => report.check("pg-target", src, CheckOutcome::Failed, "the server is still in recovery"),
        Ok((false, last)) => {
            let last_text = last.map_or_else(|| "none".to_owned(), |t| t.to_string());
            match (&target, last) {
                (Goal::Time(t), Some(l)) if l > *t => report.check(
                    "pg-target",
                    src,
                    CheckOutcome::Failed,
                    format!("recovered past the target {t}: last commit replayed {l}"),
                ),
                _ => report.check(
                    "pg-target",
                    src,
                    CheckOutcome::Passed,
                    format!("promoted at {label}; last commit replayed {last_text}"),
                ),
            }
            if !matches!(target, Goal::Time(_)) {
                data_time = last.or(data_time);
            }
        }
        Err(e) => report.check("pg-target", src, CheckOutcome::Failed, one_line(&e.to_string())),
    }
    // pg-amcheck.
    match server.amcheck(ctl) {
        Ok(f) => report.check("pg-amcheck", src, outcome_of(&f.problems), f.detail()),
        Err(e) if is_cancel(&e) => return Err(DrillError::Cancelled),
        Err(e) => report.check("pg-amcheck", src, CheckOutcome::Failed, one_line(&e.to_string())),
    }
    // pg-catalog.
    match server.catalog() {
        Ok(f) => report.check("pg-catalog", src, outcome_of(&f.problems), f.detail()),
        Err(e) => report.check("pg-catalog", src, CheckOutcome::Failed, one_line(&e.to_string())),
    }
    // The user's SQL checks.
    for c in &opts.checks {
        ctl.check().map_err(|_| DrillError::Cancelled)?;
        let (outcome, detail) = sql_outcome(server, c);
        report.check(&format!("sql:{}", c.name), src, outcome, detail);
    }

    if let Err(e) = restored.server.stop() {
        report.check("pg-stop", src, CheckOutcome::Failed, one_line(&e.to_string()));
    }
    let bytes = restored.bytes + restored.wal.bytes;
    report.restored.push(Restored {
        source: opts.source.clone(),
        kind: DrillKind::Postgres,
        snapshot: Some(restored.report.base.snapshot.clone()),
        snapshot_time: Some(restored.report.base.stop_time),
        target: Some(label),
        data_time,
        files: restored.files + restored.wal.files,
        bytes,
        rto_seconds: rto,
        rto_target_seconds: report.rto_target_seconds,
    });
    report.rto_seconds = Some(rto);
    report.throughput = (rto > 0.0).then(|| bytes as f64 / rto);
    // duration_since never fails (times from the WAL are untrusted: no arithmetic that panics).
    report.data_age_seconds = data_time.map(|t| started.duration_since(t).as_secs_f64().max(0.0));
    drop(restored);
    if let Err(e) = scratch.remove() {
        report.check("cleanup", src, CheckOutcome::Failed, e);
    }
    report.finish(repo.clock().now());
    Ok(report)
}

/// The point a drill recovers to, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Goal {
    Time(Timestamp),
    Lsn(pg::Lsn),
    Name(String),
    Latest,
}

/// The goal for `point` and its label for the report (`time T`, `lsn L`, `name N`,
/// `latest`). A random point is uniform over the window, from the oldest base backup's end
/// to the last archived commit (a time recovery can reach: a commit at or after it exists);
/// a window without a commit after its start is drilled at `latest`.
fn choose_target(point: &PgPoint, window: &pg::RecoveryWindow) -> Result<(Goal, String), DrillError> {
    let goal = match point {
        PgPoint::Random => match window.to_time.filter(|to| *to >= window.from_time) {
            Some(to) => {
                let span = (to.as_microsecond() - window.from_time.as_microsecond()).max(0);
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|e| DrillError::Invalid(format!("no random source: {e}")))?;
                // The modulo bias is below 2^-40 for any window under a century.
                let offset = i64::try_from(u64::from_le_bytes(b) % (span as u64 + 1)).unwrap_or(0);
                Goal::Time(Timestamp::from_microsecond(window.from_time.as_microsecond() + offset).unwrap_or(to))
            }
            None => Goal::Latest,
        },
        PgPoint::Latest => Goal::Latest,
        PgPoint::Time(t) => Goal::Time(*t),
        PgPoint::Lsn(l) => {
            Goal::Lsn(l.parse().map_err(|_| DrillError::Invalid(format!("bad LSN {l:?}: expected e.g. 0/3000060")))?)
        }
        PgPoint::Name(n) => Goal::Name(n.clone()),
    };
    let label = match &goal {
        Goal::Time(t) => format!("time {t}"),
        Goal::Lsn(l) => format!("lsn {l}"),
        Goal::Name(n) => format!("name {}", one_line(n)),
        Goal::Latest => "latest".to_owned(),
    };
    Ok((goal, label))
}

/// `pg-wal`: the archive holds every segment recovery reads from the oldest base backup to
/// the end of the archive, along the timelines recovery follows.
fn wal_complete(
    repo: &Repository,
    cluster: &pg::ClusterInfo,
    ctl: &JobControl,
) -> Result<(CheckOutcome, String), DrillError> {
    let Some(oldest) = cluster.base_backups.first() else {
        return Ok((CheckOutcome::Skipped, "no base backup".into()));
    };
    let bases = [oldest];
    let wal = pg::ClusterWal::load(repo, cluster.sysid, &bases).map_err(pg_error)?;
    let history = wal.load_history(repo, cluster.sysid, ctl).map_err(pg_error)?;
    let plan = match pg::RestorePlan::choose(cluster.sysid, &bases, &history, pg::PlanTarget::Latest, None) {
        Ok(p) => p,
        Err(e) => return Ok((CheckOutcome::Failed, one_line(&e.to_string()))),
    };
    Ok(match plan.first_missing(&wal) {
        Some((seg, own)) => (
            CheckOutcome::Failed,
            format!(
                "WAL segment {} is missing from the archive{}: the recovery window is broken there",
                seg.name(wal.seg_size),
                if own { format!(" (base backup {} needs it)", oldest.short()) } else { String::new() }
            ),
        ),
        None => (
            CheckOutcome::Passed,
            format!(
                "{} segments, complete from base backup {} to {}",
                cluster.wal_segments,
                oldest.short(),
                cluster.last_segment.as_deref().unwrap_or("-")
            ),
        ),
    })
}

/// A user's SQL check: the first row's columns joined by `|` against `expect`.
fn sql_outcome(server: &pg::drill::ScratchServer, c: &SqlCheck) -> (CheckOutcome, String) {
    let db = c.database.as_deref().unwrap_or("postgres");
    match server.first_row(db, &c.query) {
        Ok(Some(got)) if got == c.expect => (CheckOutcome::Passed, one_line(&format!("{db}: {got:?} as expected"))),
        Ok(Some(got)) => (CheckOutcome::Failed, one_line(&format!("{db}: got {got:?}, expected {:?}", c.expect))),
        Ok(None) => (CheckOutcome::Failed, one_line(&format!("{db}: no rows, expected {:?}", c.expect))),
        Err(e) => (CheckOutcome::Failed, one_line(&format!("{db}: query failed: {e}"))),
    }
}

fn outcome_of(problems: &[String]) -> CheckOutcome {
    if problems.is_empty() { CheckOutcome::Passed } else { CheckOutcome::Failed }
}

fn is_cancel(e: &PgError) -> bool {
    matches!(e, PgError::Repo(RepoError::Cancelled))
}

/// A library error before the drill could run: cancellation, a bad request, or else the
/// error as is (a repository that cannot be read).
fn pg_error(e: PgError) -> DrillError {
    match e {
        PgError::Repo(RepoError::Cancelled) => DrillError::Cancelled,
        PgError::Repo(r) => DrillError::Repo(r),
        other => DrillError::Invalid(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(from: &str, to: Option<&str>) -> pg::RecoveryWindow {
        pg::RecoveryWindow {
            from_time: from.parse().unwrap(),
            from_lsn: pg::Lsn(0x300_0060),
            to_segment: None,
            to_time: to.map(|t| t.parse().unwrap()),
        }
    }

    #[test]
    fn drill_pg_random_targets_lie_inside_the_window() {
        let w = window("2026-01-01T00:00:00Z", Some("2026-01-01T01:00:00Z"));
        for _ in 0..200 {
            let (g, label) = choose_target(&PgPoint::Random, &w).unwrap();
            let Goal::Time(t) = g else { panic!("{g:?}") };
            assert!(t >= w.from_time && Some(t) <= w.to_time, "{t}");
            assert_eq!(label, format!("time {t}"));
        }
        // No commit after the window's start: the end of the archive.
        let (g, label) = choose_target(&PgPoint::Random, &window("2026-01-01T00:00:00Z", None)).unwrap();
        assert_eq!((g, label.as_str()), (Goal::Latest, "latest"));
        let early = window("2026-01-01T00:00:00Z", Some("2025-12-31T00:00:00Z"));
        assert_eq!(choose_target(&PgPoint::Random, &early).unwrap().0, Goal::Latest);
        // A hostile window (times read back from the repository): the widest one draws a
        // point inside without overflowing.
        let wide = pg::RecoveryWindow {
            from_time: Timestamp::MIN,
            from_lsn: pg::Lsn(0),
            to_segment: None,
            to_time: Some(Timestamp::MAX),
        };
        for _ in 0..50 {
            let Goal::Time(t) = choose_target(&PgPoint::Random, &wide).unwrap().0 else { panic!() };
            assert!((Timestamp::MIN..=Timestamp::MAX).contains(&t));
        }
        // A point equal to both ends.
        let one = window("2026-01-01T00:00:00Z", Some("2026-01-01T00:00:00Z"));
        assert_eq!(choose_target(&PgPoint::Random, &one).unwrap().0, Goal::Time(one.from_time));
    }

    #[test]
    fn drill_pg_explicit_targets_are_labelled_and_bad_lsns_refused() {
        let w = window("2026-01-01T00:00:00Z", None);
        assert_eq!(choose_target(&PgPoint::Lsn("0/3000060".into()), &w).unwrap().1, "lsn 0/3000060");
        assert_eq!(choose_target(&PgPoint::Name("before\nupgrade".into()), &w).unwrap().1, "name before upgrade");
        let e = choose_target(&PgPoint::Lsn("3000060".into()), &w).unwrap_err();
        assert!(matches!(e, DrillError::Invalid(ref m) if m.contains("bad LSN")), "{e}");
    }

    #[test]
    fn drill_pg_scratch_must_be_absolute_and_empty_and_is_removed_unless_kept() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(Scratch::create(Path::new("rel/dir"), false), Err(DrillError::Invalid(_))));
        std::fs::write(tmp.path().join("x"), b"").unwrap();
        let e = Scratch::create(tmp.path(), false).err().unwrap();
        assert!(e.to_string().contains("not empty"), "{e}");
        let dir = tmp.path().join("s");
        drop(Scratch::create(&dir, false).unwrap());
        assert!(!dir.exists());
        drop(Scratch::create(&dir, true).unwrap());
        assert!(dir.is_dir());
    }
}
