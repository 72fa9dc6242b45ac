//! `coffer status`: per job the last success and failure, the next run and whether it is
//! overdue; per PostgreSQL source the recovery window and archive lag. Exit code non-zero
//! when anything is failing or overdue.
//!
//! Invariant guarded here: status only reads the local state (SQLite in WAL mode, so it
//! works while the daemon writes) and judges by rules written down in `docs/ledger.md`
//! ("Status"): a job is **failing** when its last run that was not missed or cancelled
//! failed; it is **overdue** when the latest scheduled instant older than its grace has no
//! successful run that started at or after it.

use crate::config::Config;
use crate::event::{JobKind, Outcome, RunRecord, job_id};
use crate::jobs::JobSpec;
use crate::schedule::Schedule;
use crate::state::{State, StateError};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use std::time::Duration;

/// The state key under which the daemon keeps the last slot it handled for a job (RFC 3339).
#[must_use]
pub fn slot_key(job: &str) -> String {
    format!("slot:{job}")
}

/// One job's state.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    /// `OWNER/KIND`.
    pub job: String,
    /// The last successful run.
    pub last_success: Option<RunRecord>,
    /// The last failed run (failed, timed out, missed).
    pub last_failure: Option<RunRecord>,
    /// The next scheduled instant.
    pub next_run: Option<Timestamp>,
    /// A scheduled run should have succeeded by now and has not.
    pub overdue: bool,
    /// The last run failed (and no success since).
    pub failing: bool,
    /// The scheduled instant the job is overdue for (set when `overdue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_since: Option<Timestamp>,
    /// A drill or rebuild job's last drill (none for other jobs, and before the first drill
    /// that ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillStatus>,
}

/// How many of a drill job's newest runs `status` looks through for its last drill.
const DRILL_LOOKBACK: usize = 50;

/// A drill job's last drill, from its run record's details (`docs/drills.md`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrillStatus {
    /// The drill report's id (`coffer drill history` lists it).
    pub report: String,
    /// When the drill ended.
    pub finished: Timestamp,
    /// Whether it passed.
    pub passed: bool,
    /// Its recovery time, seconds.
    pub rto_seconds: Option<f64>,
    /// The recovery time target, seconds.
    pub rto_target_seconds: Option<f64>,
    /// How old the restored data was at the drill's start, seconds.
    pub data_age_seconds: Option<f64>,
    /// Checks that did not pass.
    pub checks_failed: Option<u64>,
}

impl DrillStatus {
    /// The drill `record` reports, if it ran one (its details name a report).
    #[must_use]
    pub fn of(record: &RunRecord) -> Option<Self> {
        // Details are strings a job wrote; one that does not parse is unknown.
        let num = |k: &str| record.details.get(k).and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| v.is_finite());
        Some(Self {
            report: record.details.get("drill_report")?.clone(),
            finished: record.finished,
            passed: record.details.get("drill_passed").is_some_and(|v| v == "true"),
            rto_seconds: num("rto_seconds"),
            rto_target_seconds: num("rto_target_seconds"),
            data_age_seconds: num("data_age_seconds"),
            checks_failed: record.details.get("checks_failed").and_then(|v| v.trim().parse().ok()),
        })
    }
}

/// How long after a scheduled instant its run may still be going: the random delay plus
/// the timeout, capped at one interval (a job never has more than one slot to be late for).
#[must_use]
pub fn grace(spec: &JobSpec, schedule: &Schedule) -> Duration {
    spec.random_delay.unwrap_or_default().saturating_add(spec.timeout).min(schedule.interval())
}

/// The latest instant `schedule` names at or before `t`.
#[must_use]
pub fn slot_at_or_before(schedule: &Schedule, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    // Two intervals back, and up to one more (at most a day) for a gap lengthened by a DST
    // change, hold at least one slot; and the walk forward stays a few steps, even for a
    // schedule of seconds.
    let interval = schedule.interval();
    let back = interval.saturating_mul(2).saturating_add(interval.min(Duration::from_secs(25 * 3600)));
    let start = t.checked_sub(SignedDuration::try_from(back).unwrap_or(SignedDuration::MAX)).ok()?;
    let mut cur = schedule.next_after(start, tz);
    if cur > t {
        return None;
    }
    loop {
        let next = schedule.next_after(cur, tz);
        if next > t || next <= cur {
            return Some(cur);
        }
        cur = next;
    }
}

/// The state of `spec` at `now` from `state`.
///
/// - `next_run`: a slot at or before `now` that the daemon has not handled yet is due now
///   (it is the next run); otherwise the first slot after both `now` and the last slot
///   handled.
/// - `overdue`: see the module docs; a job with neither a run nor a handled slot has never
///   been scheduled (a new job, or the daemon never ran it) and is not overdue.
/// - `failing`: the last run that was not missed or cancelled failed or timed out.
///
/// # Errors
/// [`crate::state::StateError`].
pub fn job_status(
    spec: &JobSpec,
    state: &crate::state::State,
    now: Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<JobStatus, crate::state::StateError> {
    let last_success = state.last_run(&spec.id, &[Outcome::Success, Outcome::Warning])?;
    let last_failure = state.last_run(&spec.id, &[Outcome::Failed, Outcome::TimedOut, Outcome::Missed])?;
    let last_real =
        state.last_run(&spec.id, &[Outcome::Success, Outcome::Warning, Outcome::Failed, Outcome::TimedOut])?;
    let failing = last_real.as_ref().is_some_and(|r| !r.outcome.is_success());
    // A value the daemon wrote; unreadable means unknown, not an error.
    let handled: Option<Timestamp> = state.get(&slot_key(&spec.id))?.and_then(|v| v.trim().parse().ok());
    let (mut next_run, mut overdue, mut overdue_since) = (None, false, None);
    if let Some(schedule) = &spec.schedule {
        let due = slot_at_or_before(schedule, now, tz);
        next_run = Some(match (due, handled) {
            (Some(d), Some(h)) if d > h => d,
            (_, h) => schedule.next_after(h.map_or(now, |h| h.max(now)), tz),
        });
        let known = handled.is_some() || last_real.is_some() || last_failure.is_some();
        let grace = SignedDuration::try_from(grace(spec, schedule)).unwrap_or(SignedDuration::MAX);
        if let (true, Some(s)) = (known, now.checked_sub(grace).ok().and_then(|t| slot_at_or_before(schedule, t, tz))) {
            // A slot at or before the handled pointer with nothing recorded since it was
            // never this job's: the daemon first scheduled the job after it (its pointer
            // starts at "now"), so it was neither run nor missed.
            let recorded_since = [&last_real, &last_failure].iter().any(|r| r.as_ref().is_some_and(|r| r.started >= s));
            let predates_job = handled.is_some_and(|h| h >= s) && !recorded_since;
            overdue = !predates_job && last_success.as_ref().is_none_or(|r| r.started < s);
            overdue_since = overdue.then_some(s);
        }
    }
    // The last drill that ran, among the newest runs: a later run that could not drill at
    // all (or a missed slot) has no report.
    let drill = if matches!(spec.kind, JobKind::Drill | JobKind::Rebuild) {
        state.runs(Some(&spec.id), DRILL_LOOKBACK)?.iter().find_map(DrillStatus::of)
    } else {
        None
    };
    Ok(JobStatus { job: spec.id.clone(), last_success, last_failure, next_run, overdue, failing, overdue_since, drill })
}

/// One PostgreSQL source's archiving, from its newest archive check.
#[derive(Clone, Debug, Serialize)]
pub struct PgStatus {
    /// The source's name.
    pub source: String,
    /// The earliest instant it can be restored to.
    pub recovery_window_start: Option<Timestamp>,
    /// The latest instant it can be restored to.
    pub recovery_window_end: Option<Timestamp>,
    /// How far WAL archiving is behind, in seconds.
    pub archive_lag_seconds: Option<u64>,
    /// When the newest archive check finished (none: never checked).
    pub last_check: Option<Timestamp>,
    /// How the newest check ended.
    pub last_check_outcome: Option<Outcome>,
}

/// Everything `coffer status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// Every job of the policy file, in its order.
    pub jobs: Vec<JobStatus>,
    /// Every PostgreSQL source.
    pub postgres: Vec<PgStatus>,
}

impl StatusReport {
    /// Nothing failing, nothing overdue.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.jobs.iter().all(|j| !j.failing && !j.overdue)
    }
}

/// The time zone schedules are read in: `daemon.timezone`, else the system's.
#[must_use]
pub fn timezone(config: &Config) -> TimeZone {
    config.daemon.timezone.as_deref().and_then(|n| TimeZone::get(n).ok()).unwrap_or_else(TimeZone::system)
}

/// The status of every job of `config` and of its PostgreSQL sources at `now`.
///
/// # Errors
/// [`StateError`].
pub fn report(config: &Config, state: &State, now: Timestamp, tz: &TimeZone) -> Result<StatusReport, StateError> {
    let jobs = crate::jobs::jobs(config).iter().map(|j| job_status(j, state, now, tz)).collect::<Result<_, _>>()?;
    let mut postgres = Vec::new();
    for name in config.postgres.keys() {
        let last = state.last_run(
            &job_id(name, JobKind::ArchiveCheck),
            &[Outcome::Success, Outcome::Warning, Outcome::Failed, Outcome::TimedOut],
        )?;
        // Details are strings a job wrote; one that does not parse is unknown.
        let detail = |k: &str| last.as_ref().and_then(|r| r.details.get(k)).map(|v| v.trim().to_owned());
        postgres.push(PgStatus {
            source: name.clone(),
            recovery_window_start: detail("recovery_window_start").and_then(|v| v.parse().ok()),
            recovery_window_end: detail("recovery_window_end").and_then(|v| v.parse().ok()),
            archive_lag_seconds: detail("archive_lag_seconds").and_then(|v| v.parse().ok()),
            last_check: last.as_ref().map(|r| r.finished),
            last_check_outcome: last.as_ref().map(|r| r.outcome),
        });
    }
    Ok(StatusReport { jobs, postgres })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(schedule: &str) -> JobSpec {
        JobSpec {
            id: "home/backup".into(),
            kind: JobKind::Backup,
            source: Some("home".into()),
            repository: "main".into(),
            schedule: Some(Schedule::parse(schedule).unwrap()),
            random_delay: Some(Duration::from_secs(600)),
            timeout: Duration::from_secs(3600),
            retries: 0,
        }
    }

    fn run(outcome: Outcome, started: &str) -> RunRecord {
        RunRecord {
            finished: t(started) + SignedDuration::from_mins(5),
            outcome,
            error: (!outcome.is_success()).then(|| "disk full".into()),
            ..RunRecord::new("home/backup", JobKind::Backup, Some("home"), "main", "h", t(started))
        }
    }

    fn state() -> (tempfile::TempDir, State) {
        let tmp = tempfile::tempdir().unwrap();
        let s = State::open(tmp.path()).unwrap();
        (tmp, s)
    }

    #[test]
    fn slots_at_or_before() {
        let s = Schedule::parse("daily 02:00").unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(slot_at_or_before(&s, t("2030-01-05T01:59:00Z"), &utc), Some(t("2030-01-04T02:00:00Z")));
        assert_eq!(slot_at_or_before(&s, t("2030-01-05T02:00:00Z"), &utc), Some(t("2030-01-05T02:00:00Z")));
        let e = Schedule::parse("every 15m").unwrap();
        assert_eq!(slot_at_or_before(&e, t("2030-01-05T10:20:00Z"), &utc), Some(t("2030-01-05T10:15:00Z")));
        let s = Schedule::parse("every 1s").unwrap();
        assert_eq!(slot_at_or_before(&s, t("2030-01-05T10:20:00.5Z"), &utc), Some(t("2030-01-05T10:20:00Z")));
    }

    #[test]
    fn a_slot_before_the_job_was_first_scheduled_is_not_overdue() {
        let (_d, state) = state();
        let spec = spec("every 1h");
        let now = t("2026-12-05T18:10:00Z");
        // The daemon's first start at 18:10 keeps 18:10 as handled: 17:00 and 18:00 were
        // never this job's slots.
        state.set(&slot_key(&spec.id), &now.to_string()).unwrap();
        let utc = jiff::tz::TimeZone::UTC;
        let j = job_status(&spec, &state, now + SignedDuration::from_mins(5), &utc).unwrap();
        assert!(!j.overdue, "{j:?}");
        // Once the first real slot (19:00) is past its grace with no run, it is overdue.
        let j = job_status(&spec, &state, now + SignedDuration::from_hours(3), &utc).unwrap();
        assert!(j.overdue, "{j:?}");
        assert_eq!(j.overdue_since, Some(t("2026-12-05T20:00:00Z")));
    }

    #[test]
    fn a_job_never_scheduled_is_neither_overdue_nor_failing() {
        let (_tmp, st) = state();
        let j = job_status(&spec("daily 02:00"), &st, t("2030-01-05T12:00:00Z"), &TimeZone::UTC).unwrap();
        assert!(!j.overdue && !j.failing, "{j:?}");
        assert_eq!(j.next_run, Some(t("2030-01-06T02:00:00Z")));
    }

    #[test]
    fn healthy_failing_and_overdue() {
        let (_tmp, st) = state();
        let sp = spec("daily 02:00");
        let utc = TimeZone::UTC;
        st.record_run(&run(Outcome::Success, "2030-01-05T02:03:00Z")).unwrap();
        st.set(&slot_key(&sp.id), "2030-01-05T02:00:00Z").unwrap();
        let j = job_status(&sp, &st, t("2030-01-05T12:00:00Z"), &utc).unwrap();
        assert!(!j.overdue && !j.failing, "{j:?}");
        assert_eq!(j.next_run, Some(t("2030-01-06T02:00:00Z")));
        // The next slot is due and not handled yet: it is the next run (now), not overdue
        // within its grace (10 min delay + 1 h timeout).
        let j = job_status(&sp, &st, t("2030-01-06T02:30:00Z"), &utc).unwrap();
        assert_eq!(j.next_run, Some(t("2030-01-06T02:00:00Z")));
        assert!(!j.overdue, "{j:?}");
        // Past its grace without a success: overdue.
        let j = job_status(&sp, &st, t("2030-01-06T03:11:00Z"), &utc).unwrap();
        assert!(j.overdue && !j.failing, "{j:?}");
        assert_eq!(j.overdue_since, Some(t("2030-01-06T02:00:00Z")));
        // It ran and failed: failing (and still overdue); a missed slot does not hide it.
        st.set(&slot_key(&sp.id), "2030-01-06T02:00:00Z").unwrap();
        st.record_run(&run(Outcome::Failed, "2030-01-06T02:04:00Z")).unwrap();
        st.record_run(&run(Outcome::Missed, "2030-01-07T02:00:00Z")).unwrap();
        let j = job_status(&sp, &st, t("2030-01-06T04:00:00Z"), &utc).unwrap();
        assert!(j.failing && j.overdue, "{j:?}");
        assert_eq!(j.last_failure.as_ref().unwrap().outcome, Outcome::Missed);
        assert_eq!(j.next_run, Some(t("2030-01-07T02:00:00Z")));
        // A success after it (by hand): healthy again.
        st.record_run(&run(Outcome::Warning, "2030-01-06T05:00:00Z")).unwrap();
        let j = job_status(&sp, &st, t("2030-01-06T06:00:00Z"), &utc).unwrap();
        assert!(!j.failing && !j.overdue, "{j:?}");
    }

    #[test]
    fn drill_jobs_status_shows_the_last_drill_and_a_failed_one_is_failing() {
        let (_tmp, st) = state();
        let sp = JobSpec { id: "home/drill".into(), kind: JobKind::Drill, ..spec("weekly") };
        let utc = TimeZone::UTC;
        let drill = |outcome: Outcome, started: &str, details: &[(&str, &str)]| RunRecord {
            outcome,
            details: details.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..RunRecord::new("home/drill", JobKind::Drill, Some("home"), "main", "h", t(started))
        };
        st.record_run(&drill(
            Outcome::Success,
            "2030-01-05T02:00:00Z",
            &[("drill_report", "r1"), ("drill_passed", "true"), ("rto_seconds", "2.5"), ("data_age_seconds", "60")],
        ))
        .unwrap();
        let j = job_status(&sp, &st, t("2030-01-05T03:00:00Z"), &utc).unwrap();
        let d = j.drill.as_ref().expect("a drill");
        assert_eq!(
            (d.report.as_str(), d.passed, d.rto_seconds, d.data_age_seconds),
            ("r1", true, Some(2.5), Some(60.0))
        );
        assert!(!j.failing);
        st.record_run(&drill(
            Outcome::Failed,
            "2030-01-05T04:00:00Z",
            &[("drill_report", "r2"), ("drill_passed", "false"), ("rto_seconds", "9"), ("rto_target_seconds", "1")],
        ))
        .unwrap();
        let j = job_status(&sp, &st, t("2030-01-05T05:00:00Z"), &utc).unwrap();
        assert!(j.failing);
        let d = j.drill.as_ref().unwrap();
        assert_eq!(
            (d.report.as_str(), d.passed, d.rto_seconds, d.rto_target_seconds),
            ("r2", false, Some(9.0), Some(1.0))
        );
        // A run that could not drill at all: the last drill shown is still r2.
        st.record_run(&drill(Outcome::Failed, "2030-01-05T06:00:00Z", &[])).unwrap();
        let j = job_status(&sp, &st, t("2030-01-05T07:00:00Z"), &utc).unwrap();
        assert_eq!(j.drill.as_ref().map(|d| d.report.as_str()), Some("r2"), "the last drill that ran");
        // A backup job has no drill.
        assert!(job_status(&spec("daily 02:00"), &st, t("2030-01-05T07:00:00Z"), &utc).unwrap().drill.is_none());
    }
}
