//! Running one scheduled job: its attempts (bounded retries with exponential backoff, for
//! transient errors only), and what follows every run — recorded first, then logged,
//! counted, alerted, pinged and sent on to the repository's ledger.
//!
//! Invariants guarded here:
//! - **Nothing recorded is lost.** [`Shared::finish`] writes the run to the local state
//!   (history and ledger outbox, one transaction) before anything else looks at it.
//! - **Only transient failures are retried**, a bounded number of times; a refusal, a
//!   wrong password or damaged data fails at once and alerts.
//! - **A stopped run is reported as what stopped it**: its timeout (`timed-out`) or the
//!   daemon's shutdown (`cancelled`, run again next time), never as a plain failure.

use crate::alerts::{Alerter, Ping};
use crate::event::{AlertEvent, AlertKind, JobKind, Outcome, RunRecord, Severity, random_id};
use crate::jobs::{JobContext, JobSpec};
use crate::metrics::Metrics;
use crate::state::State;
use coffer_repository::JobControl;
use coffer_store::Clock;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::flusher::Flushers;
use super::scheduler::MissedWhy;

/// Runs one attempt of a job: [`crate::jobs::run_job`] in the daemon; replaceable so the
/// daemon's own rules can be tested on jobs that fail or hang on demand.
pub type RunFn = Arc<dyn Fn(&JobContext, &JobSpec, &JobControl) -> RunRecord + Send + Sync>;

/// What every run's aftermath uses.
pub struct Shared {
    /// The local state.
    pub state: Arc<State>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The alert router.
    pub alerter: Arc<Alerter>,
    /// The ledger flushers.
    pub flushers: Flushers,
    /// The clock of records and alerts.
    pub clock: Clock,
    /// The host name of records and alerts.
    pub host: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("host", &self.host).finish_non_exhaustive()
    }
}

/// One run to make, with how it can be stopped.
pub struct Dispatch {
    /// The job, as it was specified when the slot came due.
    pub spec: JobSpec,
    /// The context of that configuration.
    pub ctx: JobContext,
    /// The slot it is for.
    pub slot: Option<Timestamp>,
    /// Catching up a slot missed while the daemon was down.
    pub late: bool,
    /// Cancelled by the timeout or the shutdown.
    pub ctl: JobControl,
    /// Set (before cancelling) when the timeout stopped it.
    pub timed_out: Arc<AtomicBool>,
    /// The first retry's delay (doubling).
    pub backoff: Duration,
}

/// Runs `d`'s attempts and returns the run's record (not yet recorded).
pub fn attempts(shared: &Shared, run: &RunFn, d: &Dispatch) -> RunRecord {
    let started = shared.clock.now();
    shared.alerter.ping(Some(&d.spec.id), Ping::Start);
    let mut attempt = 0u32;
    let mut rec = loop {
        attempt += 1;
        crate::logs::started(&d.spec, attempt, d.slot, d.late);
        let rec = run(&d.ctx, &d.spec, &d.ctl);
        let transient = rec.error_class.as_deref() == Some("transient");
        if rec.outcome == Outcome::Failed && transient && attempt <= d.spec.retries && !d.ctl.cancel.is_cancelled() {
            let wait = d.backoff.saturating_mul(1u32 << (attempt - 1).min(16));
            crate::logs::retry(&d.spec, attempt, wait, "transient", rec.error.as_deref().unwrap_or(""));
            if sleep_unless_cancelled(&d.ctl, wait) {
                continue;
            }
        }
        break rec;
    };
    rec.attempts = attempt;
    rec.scheduled = d.slot;
    rec.late = d.late;
    rec.started = started;
    if d.ctl.cancel.is_cancelled() && !rec.outcome.is_success() {
        if d.timed_out.load(Ordering::SeqCst) {
            rec.outcome = Outcome::TimedOut;
            rec.error_class = Some("cancelled".into());
            rec.error = Some(format!(
                "stopped after its timeout of {}",
                coffer_repository::options::format_duration(d.spec.timeout)
            ));
        } else {
            rec.outcome = Outcome::Cancelled;
            rec.error_class = Some("cancelled".into());
            rec.error = Some("stopped by the daemon's shutdown; runs again at the next start".into());
        }
    }
    rec
}

/// The record of a run whose job panicked (a bug; the daemon goes on).
pub fn panicked(shared: &Shared, d: &Dispatch) -> RunRecord {
    let now = shared.clock.now();
    RunRecord {
        scheduled: d.slot,
        late: d.late,
        outcome: Outcome::Failed,
        error_class: Some("other".into()),
        error: Some("internal error: the job panicked (see the daemon's log)".into()),
        ..RunRecord::new(&d.spec.id, d.spec.kind, d.spec.source.as_deref(), &d.spec.repository, &shared.host, now)
    }
}

/// Sleeps `wait` unless the run is cancelled first; `true` when the full time passed.
fn sleep_unless_cancelled(ctl: &JobControl, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        if ctl.cancel.is_cancelled() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

impl Shared {
    /// An alert about `spec` (or the daemon, without one).
    pub fn event(
        &self,
        kind: AlertKind,
        severity: Severity,
        problem: String,
        spec: Option<&JobSpec>,
        summary: String,
        details: BTreeMap<String, String>,
    ) -> AlertEvent {
        AlertEvent {
            version: AlertEvent::VERSION,
            id: random_id(),
            kind,
            severity,
            problem,
            resolved: false,
            time: self.clock.now(),
            host: self.host.clone(),
            job: spec.map(|s| s.id.clone()),
            source: spec.map(|s| s.owner().to_owned()),
            repository: spec.map(|s| s.repository.clone()),
            summary,
            details,
        }
    }

    /// Everything that follows a run: recorded first (so nothing is lost), then logged,
    /// counted, alerted, pinged and nudged towards the ledger.
    pub fn finish(&self, spec: &JobSpec, rec: &RunRecord) {
        if let Err(e) = self.state.record_run(rec) {
            tracing::error!(job = %rec.job, error = %e, "cannot record the run in the local state");
        }
        crate::logs::run(rec);
        self.observe(rec);
        self.alert(spec, rec);
        if rec.outcome != Outcome::Missed && rec.outcome != Outcome::Cancelled {
            self.alerter.ping(Some(&spec.id), if rec.outcome.is_success() { Ping::Success } else { Ping::Fail });
        }
        self.flushers.nudge(&rec.repository);
    }

    /// The metrics of one run, with the facts some jobs report in their details.
    fn observe(&self, rec: &RunRecord) {
        self.metrics.observe_run(rec);
        match rec.kind {
            JobKind::ArchiveCheck => {
                let lag = rec.details.get("archive_lag_seconds").and_then(|v| v.parse::<f64>().ok());
                let end = rec.details.get("recovery_window_end").and_then(|v| v.parse::<Timestamp>().ok());
                if let (Some(source), true) = (&rec.source, lag.is_some() || end.is_some()) {
                    self.metrics.set_postgres(source, lag, end);
                }
            }
            JobKind::Verify => {
                if let Some(n) = rec.details.get("problems").and_then(|v| v.parse::<u64>().ok()) {
                    self.metrics.set_verify_problems(&rec.repository, n);
                } else if rec.outcome.is_success() {
                    self.metrics.set_verify_problems(&rec.repository, 0);
                }
            }
            _ => {}
        }
    }

    /// Raises or resolves the run's problems.
    fn alert(&self, spec: &JobSpec, rec: &RunRecord) {
        let id = &spec.id;
        if rec.outcome.is_success() {
            self.alerter.resolve(&failed_problem(id), &format!("job {id} succeeded"));
            self.alerter.resolve(&missed_problem(id), &format!("job {id} ran"));
            match spec.kind {
                JobKind::Verify => {
                    self.alerter.resolve(&verify_problem(&spec.repository), &format!("{id}: no problems found"));
                }
                JobKind::ArchiveCheck => {
                    self.alerter.resolve(&archive_problem(spec.owner()), &format!("{id}: archiving is healthy"));
                }
                JobKind::Drill | JobKind::Rebuild => {
                    self.alerter.resolve(&drill_problem(id), &format!("{id}: the drill passed"));
                }
                _ => {}
            }
            return;
        }
        let mut details = BTreeMap::new();
        if let Some(c) = &rec.error_class {
            details.insert("error_class".into(), c.clone());
        }
        if let Some(e) = &rec.error {
            details.insert("error".into(), e.clone());
        }
        if let Some(s) = rec.scheduled {
            details.insert("scheduled".into(), s.to_string());
        }
        details.insert("outcome".into(), rec.outcome.as_str().into());
        details.insert("run_id".into(), rec.run_id.clone());
        let error = rec.error.as_deref().unwrap_or("no message");
        match rec.outcome {
            // The shutdown stopped it: it runs again at the next start, nothing to tell.
            Outcome::Cancelled | Outcome::Success | Outcome::Warning => {}
            // Raised once per pass by the loop (`missed`), not per record.
            Outcome::Missed => {}
            // A continuous job's supervisor alerts when it stays down, not at every restart.
            Outcome::Failed | Outcome::TimedOut if matches!(spec.kind, JobKind::Stream | JobKind::Watch) => {}
            Outcome::Failed if spec.kind == JobKind::Verify && rec.error_class.as_deref() == Some("integrity") => {
                for (k, v) in &rec.details {
                    details.entry(k.clone()).or_insert_with(|| v.clone());
                }
                self.alerter.raise(self.event(
                    AlertKind::VerifyProblem,
                    Severity::Critical,
                    verify_problem(&spec.repository),
                    Some(spec),
                    format!("verify of repository {} found problems: {error}", spec.repository),
                    details,
                ));
            }
            Outcome::Failed | Outcome::TimedOut if spec.kind == JobKind::ArchiveCheck => {
                // Lagging WAL is a warning; archiving that fails (or never happened) is an error.
                let lagging = rec.details.get("archive_problem").is_some_and(|p| p == "lagging");
                for (k, v) in &rec.details {
                    details.entry(k.clone()).or_insert_with(|| v.clone());
                }
                self.alerter.raise(self.event(
                    AlertKind::ArchiveLagging,
                    if lagging { Severity::Warning } else { Severity::Error },
                    archive_problem(spec.owner()),
                    Some(spec),
                    format!("WAL archiving of {}: {error}", spec.owner()),
                    details,
                ));
            }
            // A drill that ran and did not pass: its own kind, so routes can send the
            // evidence that a restore does not work where it belongs; the failed checks are
            // in the details (`failed_check_N`).
            Outcome::Failed if rec.error_class.as_deref() == Some(crate::jobs::DRILL_CLASS) => {
                // It ran: a failure to run it earlier is over.
                self.alerter.resolve(&failed_problem(id), &format!("job {id} ran"));
                for (k, v) in &rec.details {
                    details.entry(k.clone()).or_insert_with(|| v.clone());
                }
                self.alerter.raise(self.event(
                    AlertKind::DrillFailed,
                    Severity::Error,
                    drill_problem(id),
                    Some(spec),
                    format!("{} {id}: {error}", if spec.kind == JobKind::Rebuild { "rebuild" } else { "drill" }),
                    details,
                ));
            }
            Outcome::Failed | Outcome::TimedOut => {
                if matches!(spec.kind, JobKind::Drill | JobKind::Rebuild) {
                    for (k, v) in &rec.details {
                        details.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                self.alerter.raise(self.event(
                    AlertKind::JobFailed,
                    Severity::Error,
                    failed_problem(id),
                    Some(spec),
                    format!("job {id} {}: {error}", rec.outcome),
                    details,
                ));
            }
        }
    }

    /// Records the missed slots of one pass and raises one `job-missed` alert for them.
    pub fn missed(&self, spec: &JobSpec, slots: &[Timestamp], total: u64, why: MissedWhy) {
        if slots.is_empty() {
            return;
        }
        for (i, slot) in slots.iter().enumerate() {
            crate::logs::missed(spec, *slot);
            let mut details = BTreeMap::new();
            if i + 1 == slots.len() && total > slots.len() as u64 {
                details.insert("missed_total".into(), total.to_string());
            }
            let rec = RunRecord {
                scheduled: Some(*slot),
                outcome: Outcome::Missed,
                attempts: 0,
                error: Some(why.as_str().into()),
                details,
                ..RunRecord::new(&spec.id, spec.kind, spec.source.as_deref(), &spec.repository, &self.host, *slot)
            };
            self.finish(spec, &rec);
        }
        let mut details = BTreeMap::new();
        details.insert("missed".into(), total.to_string());
        details.insert("first".into(), slots[0].to_string());
        details.insert("last".into(), slots[slots.len() - 1].to_string());
        details.insert("reason".into(), why.as_str().into());
        self.alerter.raise(self.event(
            AlertKind::JobMissed,
            Severity::Warning,
            missed_problem(&spec.id),
            Some(spec),
            format!("job {} missed {total} scheduled run(s): {}", spec.id, why.as_str()),
            details,
        ));
    }
}

/// The problem key of a job's failures.
#[must_use]
pub fn failed_problem(job: &str) -> String {
    format!("job-failed:{job}")
}

/// The problem key of a job's missed slots.
#[must_use]
pub fn missed_problem(job: &str) -> String {
    format!("job-missed:{job}")
}

/// The problem key of a drill that did not pass.
#[must_use]
pub fn drill_problem(job: &str) -> String {
    format!("drill-failed:{job}")
}

/// The problem key of a repository's verify findings.
#[must_use]
pub fn verify_problem(repository: &str) -> String {
    format!("verify:{repository}")
}

/// The problem key of a PostgreSQL source's archiving.
#[must_use]
pub fn archive_problem(source: &str) -> String {
    format!("archive:{source}")
}

/// The problem key of a PostgreSQL source's streaming being down.
#[must_use]
pub fn stream_problem(source: &str) -> String {
    format!("stream:{source}")
}
