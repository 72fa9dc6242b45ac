//! The drill jobs: `SOURCE/drill` (a files or PostgreSQL source's restore drill) and
//! `REPOSITORY/rebuild` (the full rebuild), through [`crate::drill`] as `coffer drill` runs
//! them. The report is queued for the ledger (kind `drill`) and summarised in the run's
//! record (`rto_seconds`, `data_age_seconds`, `drill_report`); a drill that did not pass
//! fails the job (class `drill`).
//!
//! Invariants guarded here:
//! - **A drill reads as the `reader`**: the repository is opened with that role's
//!   credentials; the report reaches the ledger through the local outbox, which the daemon's
//!   flusher appends as the writer.
//! - **A report is queued before the run is recorded**: the evidence of a drill is never
//!   lost because the run's aftermath failed, and a failed drill still leaves its report.
//! - **Scratch space is coffer's own**: the default scratch directory (under the state
//!   directory) is emptied of what an interrupted earlier drill left; a scratch directory the
//!   policy file names is never removed by the job (the drill refuses one that is not empty).

use super::{Done, Failure, JobContext, JobSpec, source};
use crate::drill::{DrillError, DrillReport};
use coffer_repository::JobControl;
use coffer_store::{ErrorClass, Role};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The error class of a drill that ran and did not pass.
pub const DRILL_CLASS: &str = "drill";

/// How many failed checks the run's one-line error quotes (all are in the report).
const FAILURES_QUOTED: usize = 3;

/// Runs a source's drill.
pub(super) fn drill(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let name = spec.source.as_deref().unwrap_or_default();
    if let Some(s) = ctx.config.files.get(name) {
        let d = s.drill.as_ref().ok_or_else(|| no_drill(spec))?;
        let scratch = scratch_dir(ctx, d.scratch.as_deref(), "drill", name)?;
        let opts = crate::drill::files::FilesDrillOptions {
            job: spec.id.clone(),
            source: Some(name.to_owned()),
            repository: spec.repository.clone(),
            host: ctx.host.clone(),
            snapshot: match d.snapshot {
                crate::config::SnapshotPick::Latest => crate::drill::files::Pick::Latest,
                crate::config::SnapshotPick::Random => crate::drill::files::Pick::Random,
            },
            paths: s.paths.iter().map(|p| p.display().to_string()).collect(),
            sample: d.sample,
            scratch,
            rto_target: d.rto_target,
            keep: false,
        };
        let repo = crate::open::open_repository(&ctx.config, &spec.repository, Role::Reader, ctx.clock.clone())?;
        return conclude(ctx, spec, crate::drill::files::drill(&repo, &opts, ctl));
    }
    let s = source(&ctx.config.postgres, spec)?;
    let d = s.drill.as_ref().ok_or_else(|| no_drill(spec))?;
    let scratch = scratch_dir(ctx, d.scratch.as_deref(), "drill", name)?;
    let opts = crate::drill::pg::PgDrillOptions {
        job: spec.id.clone(),
        source: Some(name.to_owned()),
        repository: spec.repository.clone(),
        host: ctx.host.clone(),
        // The name the base backup job records (the source's), so the drill restores this
        // source's cluster when the repository holds several.
        cluster: super::postgres::cluster_name(name),
        sysid: None,
        point: match d.point {
            crate::config::PointPick::Random => crate::drill::pg::PgPoint::Random,
            crate::config::PointPick::Latest => crate::drill::pg::PgPoint::Latest,
        },
        checks: d.check.clone(),
        scratch,
        rto_target: d.rto_target,
        run_as: Some(d.run_as.clone().unwrap_or_else(|| "postgres".to_owned())),
        start_timeout: spec.timeout,
        keep: false,
    };
    let repo = crate::open::open_repository(&ctx.config, &spec.repository, Role::Reader, ctx.clock.clone())?;
    conclude(ctx, spec, crate::drill::pg::drill(&repo, &opts, ctl))
}

/// Runs a repository's full rebuild: from the repository's location, the reader's
/// credentials and the password alone (the rebuild opens the repository itself).
pub(super) fn rebuild(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let name = &spec.repository;
    let r =
        ctx.config.repository(name).ok_or_else(|| Failure::from(crate::open::OpenJobError::Unknown(name.clone())))?;
    let b = r.rebuild.as_ref().ok_or_else(|| no_drill(spec))?;
    let location = match &r.location {
        Some(l) => l.clone(),
        None => coffer_store::open::default_vault_dir()
            .map(|d| d.display().to_string())
            .map_err(|e| Failure::new(ErrorClass::Invalid.as_str(), format!("job {}: {e}", spec.id)))?,
    };
    if r.key_file.is_some() && r.password.is_none() {
        // A rebuild starts from nothing but the password: a key file is host state.
        return Err(Failure::new(
            ErrorClass::Invalid.as_str(),
            format!("job {}: a rebuild needs the repository's password ([repositories.{name}] password)", spec.id),
        ));
    }
    let secret =
        r.password.clone().unwrap_or(crate::config::SecretRef { file: None, env: Some("COFFER_PASSWORD".into()) });
    let password: Zeroizing<Vec<u8>> = secret.read(name)?;
    let scratch = scratch_dir(ctx, b.scratch.as_deref(), "rebuild", name)?;
    let opts = crate::drill::rebuild::RebuildOptions {
        job: spec.id.clone(),
        location,
        credentials: r.credentials.get(Role::Reader.as_str()).cloned(),
        password,
        host: ctx.host.clone(),
        scratch,
        rto_target: b.rto_target,
        // None: the stored policy's `[…rebuild] run-as`, then each source's, then `postgres` (as
        // root), as `coffer drill rebuild` decides.
        run_as: b.run_as.clone(),
        keep: false,
    };
    conclude(ctx, spec, crate::drill::rebuild::rebuild(&opts, ctl))
}

fn no_drill(spec: &JobSpec) -> Failure {
    Failure::new(ErrorClass::Invalid.as_str(), format!("job {}: coffer.toml declares no drill for it", spec.id))
}

/// The drill's scratch directory: the policy file's `scratch` as it is (as `coffer drill`
/// uses it), else `STATE_DIR/DEFAULT/OWNER`. In the default place, what an interrupted drill
/// left is removed first (coffer made it); a directory the policy file names is left to the
/// drill, which refuses one that is not empty rather than removing what it did not make.
fn scratch_dir(ctx: &JobContext, configured: Option<&Path>, default: &str, owner: &str) -> Result<PathBuf, Failure> {
    let io = |what: String, e: std::io::Error| Failure::new(ErrorClass::Io.as_str(), format!("{what}: {e}"));
    match configured {
        Some(dir) => Ok(dir.to_path_buf()),
        None => {
            let root = ctx.state_dir.join(default);
            let dir = root.join(owner);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(dir = %dir.display(), "removed what an interrupted drill left"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("cannot empty the scratch directory {}", dir.display()), e)),
            }
            std::fs::create_dir_all(&root)
                .map_err(|e| io(format!("cannot create the scratch root {}", root.display()), e))?;
            Ok(dir)
        }
    }
}

/// The drill's result as the job's: the report queued for the ledger and summarised in the
/// record; a report that did not pass fails the job with class [`DRILL_CLASS`]; a drill that
/// could not run fails with its error's class.
fn conclude(ctx: &JobContext, spec: &JobSpec, result: Result<DrillReport, DrillError>) -> Result<Done, Failure> {
    let report = result.map_err(|e| {
        let class = e.class();
        Failure::of(&e, class)
    })?;
    queue(ctx, spec, &report)?;
    let details = report_details(&report);
    if !report.passed {
        return Err(Failure::new(DRILL_CLASS, failure_line(&report)).with(details));
    }
    Ok(Done {
        files: Some(report.restored.iter().map(|r| r.files).sum()),
        bytes_read: Some(report.restored.iter().map(|r| r.bytes).sum()),
        snapshot: report.restored.iter().find_map(|r| r.snapshot.clone()),
        details,
        ..Done::default()
    })
}

/// Queues the report for the repository's ledger (kind `drill`), in the local state's
/// outbox: the daemon's flusher appends it as the writer.
fn queue(ctx: &JobContext, spec: &JobSpec, report: &DrillReport) -> Result<(), Failure> {
    let state_failure = |e: crate::state::StateError| {
        let class = e.class();
        Failure::of(&e, class)
    };
    let state = crate::State::open(&ctx.state_dir).map_err(state_failure)?;
    let body = serde_json::to_value(report).expect("a drill report serialises");
    state.record_other(&spec.repository, crate::ledger::DRILL, &ctx.host, &body).map_err(state_failure)?;
    tracing::debug!(job = %spec.id, drill_report = %report.id, "drill report queued for the ledger");
    Ok(())
}

/// `drill did not pass: CHECK: DETAIL; …`: the first failures, one line.
#[must_use]
pub fn failure_line(report: &DrillReport) -> String {
    let failures = report.failures();
    let mut shown: Vec<String> = report.error.iter().cloned().collect();
    shown.extend(failures.iter().take(FAILURES_QUOTED).cloned());
    let more = failures.len().saturating_sub(FAILURES_QUOTED);
    let mut line =
        format!("drill did not pass: {}", if shown.is_empty() { "no check ran".to_owned() } else { shown.join("; ") });
    if more > 0 {
        line.push_str(&format!(" (and {more} more)"));
    }
    line
}

/// Seconds, as details carry them (milliseconds).
fn secs(v: f64) -> String {
    format!("{v:.3}")
}

/// The run record's summary of a drill report (`details`): `drill_report` (the report's
/// id, by which `coffer drill history` and the ledger find it), `drill_kind`,
/// `drill_passed`, `rto_seconds`, `rto_target_seconds`, `data_age_seconds`, `checks`,
/// `checks_failed`, `snapshot`, `target`, and `failed_check_N` (the first failures). Keys
/// whose value the report does not have are absent.
#[must_use]
pub fn report_details(report: &DrillReport) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    d.insert("drill_report".to_owned(), report.id.clone());
    d.insert("drill_kind".to_owned(), report.kind.as_str().to_owned());
    d.insert("drill_passed".to_owned(), report.passed.to_string());
    for (k, v) in [
        ("rto_seconds", report.rto_seconds),
        ("rto_target_seconds", report.rto_target_seconds),
        ("data_age_seconds", report.data_age_seconds),
        ("throughput", report.throughput),
    ] {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            d.insert(k.to_owned(), secs(v));
        }
    }
    let failures = report.failures();
    d.insert("checks".to_owned(), report.checks.len().to_string());
    d.insert("checks_failed".to_owned(), failures.len().to_string());
    if let Some(s) = report.restored.iter().find_map(|r| r.snapshot.as_deref()) {
        d.insert("snapshot".to_owned(), s.to_owned());
    }
    if let Some(t) = report.restored.iter().find_map(|r| r.target.as_deref()) {
        d.insert("target".to_owned(), t.to_owned());
    }
    super::quote(&mut d, "failed_check", &failures);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::{CheckOutcome, DrillKind, Restored};

    fn report(passed_rto: bool) -> DrillReport {
        let t0: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let mut r = DrillReport::new(DrillKind::Files, "home/drill", "main", "h1", t0);
        r.restored.push(Restored {
            source: Some("home".into()),
            kind: DrillKind::Files,
            snapshot: Some("ab12cd34".into()),
            snapshot_time: Some(t0),
            target: None,
            data_time: None,
            files: 12,
            bytes: 3400,
            rto_seconds: 2.5,
            rto_target_seconds: Some(60.0),
        });
        r.check("content", Some("home"), CheckOutcome::Passed, "12 files, 3400 bytes match");
        r.check("metadata", Some("home"), CheckOutcome::Passed, "12 entries match");
        r.rto_seconds = Some(2.5);
        r.rto_target_seconds = Some(if passed_rto { 60.0 } else { 1.0 });
        r.data_age_seconds = Some(3600.0);
        r.finish(t0 + jiff::SignedDuration::from_secs(3));
        r
    }

    #[test]
    fn drill_jobs_a_passing_report_becomes_its_details() {
        let r = report(true);
        assert!(r.passed);
        let d = report_details(&r);
        assert_eq!(d["drill_report"], r.id);
        assert_eq!(d["drill_passed"], "true");
        assert_eq!(d["drill_kind"], "files");
        assert_eq!(d["rto_seconds"], "2.500");
        assert_eq!(d["rto_target_seconds"], "60.000");
        assert_eq!(d["data_age_seconds"], "3600.000");
        assert_eq!(d["checks"], "3", "content, metadata, rto");
        assert_eq!(d["checks_failed"], "0");
        assert_eq!(d["snapshot"], "ab12cd34");
        assert!(!d.contains_key("target") && !d.contains_key("failed_check_1"), "{d:?}");
    }

    #[test]
    fn drill_jobs_a_drill_over_its_target_names_the_failed_check() {
        let r = report(false);
        assert!(!r.passed);
        let d = report_details(&r);
        assert_eq!(d["drill_passed"], "false");
        assert_eq!(d["checks_failed"], "1");
        assert_eq!(d["failed_check_1"], "rto: recovered in 2.5s, target 1s");
        assert_eq!(failure_line(&r), "drill did not pass: rto: recovered in 2.5s, target 1s");
    }

    #[test]
    fn drill_jobs_the_error_line_quotes_the_first_failures_and_counts_the_rest() {
        let t0: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let mut r = DrillReport::new(DrillKind::Postgres, "db/drill", "main", "h1", t0);
        for n in 0..5 {
            r.check(&format!("sql:q{n}"), Some("db"), CheckOutcome::Failed, format!("got {n}\nexpected x"));
        }
        r.finish(t0);
        let line = failure_line(&r);
        assert!(line.starts_with("drill did not pass: db: sql:q0: got 0"), "{line}");
        assert!(line.ends_with("(and 2 more)"), "{line}");
        let mut empty = DrillReport::new(DrillKind::Rebuild, "main/rebuild", "main", "h1", t0);
        empty.error = Some("no policy stored in the repository".into());
        empty.finish(t0);
        assert_eq!(failure_line(&empty), "drill did not pass: no policy stored in the repository");
        let d = report_details(&empty);
        assert_eq!(d["checks"], "0");
        assert!(!d.contains_key("rto_seconds"));
    }
}
