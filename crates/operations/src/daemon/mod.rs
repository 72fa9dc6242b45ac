//! `coffer daemon`: runs every job of the policy file on its schedule.
//!
//! Invariants guarded here: one job at a time per source; every scheduled slot is either run
//! (on time or, once, late) or recorded as missed; a job that is stopped (timeout, shutdown)
//! leaves nothing acknowledged behind that a restart cannot continue.
//!
//! The parts:
//! - [`scheduler`] — pure decisions: which slots are due, run, late or missed.
//! - [`runner`] — one run's attempts (retries on transient errors) and its aftermath
//!   (recorded first, then logs, metrics, alerts, pings, ledger).
//! - [`supervise`] — continuous jobs (WAL streaming, the security watch), restarted with backoff.
//! - [`flusher`] — the ledger flushers, one per repository, off the jobs' path.
//! - [`lock`] — one daemon per configuration.
//!
//! The policy file is queued for every repository's ledger at start, on reload and at
//! housekeeping when it changed or its last record is old ([`crate::drill::policy`]).
//!
//! This module is the loop: it sleeps until the earliest next slot, a job's end, a timeout
//! or a control message ([`Control`]: the CLI turns SIGHUP and SIGTERM into them; nothing
//! here handles signals). The last slot handled per job is kept in the state under
//! [`crate::status::slot_key`] and advanced only once the slot's run is recorded, so a run
//! interrupted by a crash or a shutdown runs again (late) at the next start.

pub mod flusher;
pub mod lock;
#[cfg(test)]
mod policy_tests;
pub mod runner;
pub mod scheduler;
pub mod supervise;
#[cfg(test)]
mod tests;

use crate::alerts::{AlertError, Alerter, Ping};
use crate::config::Config;
use crate::event::{AlertKind, JobKind, Outcome, Severity};
use crate::jobs::{JobContext, JobSpec};
use crate::metrics::{Metrics, MetricsError, MetricsServer};
use crate::state::{State, StateError};
use crate::status::slot_key;
use coffer_repository::{Cancel, JobControl};
use coffer_store::{Clock, ErrorClass};
use crossbeam_channel::{Receiver, Sender, select};
use flusher::{Flushers, SharedConfig};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use runner::{Dispatch, RunFn, Shared};
use scheduler::Pass;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use supervise::Supervisor;

/// What the daemon is told while it runs (the CLI sends these on SIGHUP and SIGTERM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Read the policy file again; a bad file keeps the old configuration running.
    Reload,
    /// Cancel running jobs, record them, flush, and return.
    Shutdown,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds this configuration's lock.
    #[error(
        "another coffer daemon{} is running with this state directory: it holds the lock {}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), lock.display()
    )]
    AlreadyRunning {
        /// The lock file.
        lock: PathBuf,
        /// The pid written in it.
        pid: Option<u32>,
    },
    /// The lock file cannot be used.
    #[error("cannot take the daemon lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The policy file declares no job.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The local state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The alert targets are unusable.
    #[error(transparent)]
    Alerts(#[from] AlertError),
    /// The metrics listener cannot start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// `daemon.timezone` names no known time zone.
    #[error("daemon.timezone {name:?}: {why}")]
    TimeZone {
        /// The name.
        name: String,
        /// Why.
        why: String,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

impl DaemonError {
    /// The class of this error (for exit codes).
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::AlreadyRunning { .. } => ErrorClass::Conflict,
            Self::Lock { .. } => ErrorClass::Io,
            Self::Config(e) => e.class(),
            Self::State(e) => e.class(),
            Self::Alerts(_) | Self::TimeZone { .. } => ErrorClass::Invalid,
            Self::Metrics(e) => e.class(),
            Self::Thread(_) => ErrorClass::Other,
        }
    }
}

/// How often job status (next run, overdue) is pushed to the metrics besides right after
/// each run or slot: often enough for the overdue flag (whose grace is far longer), rarely
/// enough that an idle daemon with many jobs and a long history costs nothing measurable.
const STATUS_EVERY: Duration = Duration::from_secs(30);
/// The loop wakes at least this often (a wall-clock step or a suspended host is noticed).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// How the daemon runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Run every job that is due now (catching up as at a start) and return once they are
    /// done; continuous jobs are not started.
    pub once: bool,
}

/// Runs the daemon for `config` until [`Control::Shutdown`] (or the sender is dropped).
///
/// # Errors
/// [`DaemonError`] when it cannot start; once running, failures are records, logs and
/// alerts, not errors.
pub fn run(config: Config, control: &Receiver<Control>, clock: Clock) -> Result<(), DaemonError> {
    run_with(config, control, clock, Options::default(), Arc::new(crate::jobs::run_job))
}

/// [`run`] with [`Options`].
///
/// # Errors
/// As [`run`].
pub fn run_with_options(
    config: Config,
    control: &Receiver<Control>,
    clock: Clock,
    options: Options,
) -> Result<(), DaemonError> {
    run_with(config, control, clock, options, Arc::new(crate::jobs::run_job))
}

/// [`run`], with the function that runs one attempt of a job.
///
/// # Errors
/// As [`run`].
pub fn run_with(
    config: Config,
    control: &Receiver<Control>,
    clock: Clock,
    options: Options,
    job: RunFn,
) -> Result<(), DaemonError> {
    config.require_jobs()?;
    let dir = crate::state::state_dir(config.daemon.state_dir.as_deref())?;
    let lock = lock::acquire(&dir)?;
    let state = Arc::new(State::open(&dir)?);
    let tz = time_zone(&config)?;
    let host = config.daemon.host.clone().unwrap_or_else(host_name);
    let metrics = Arc::new(Metrics::new());
    let hook_metrics = metrics.clone();
    let hook: crate::alerts::DeliveryHook = Arc::new(move |target: &str, ok: bool| hook_metrics.delivery(target, ok));
    let alerter = Arc::new(Alerter::start(&config.alerts, host.clone(), state.clone(), clock.clone(), Some(hook))?);
    let server = match &config.metrics {
        Some(m) => match crate::metrics::serve(m.listen, metrics.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                alerter.shutdown(Duration::from_secs(1));
                return Err(e.into());
            }
        },
        None => None,
    };
    let config = Arc::new(config);
    let shared_config: SharedConfig = Arc::new(Mutex::new(config.clone()));
    let shared = Arc::new(Shared {
        state: state.clone(),
        metrics: metrics.clone(),
        alerter,
        flushers: Flushers::new(state, metrics, shared_config.clone(), clock.clone()),
        clock: clock.clone(),
        host: host.clone(),
    });
    let sink = security_sink(&shared, &shared_config);
    match shared.state.security_unacknowledged() {
        Ok(n) => shared.metrics.set_security_unacknowledged(n),
        Err(e) => tracing::warn!(error = %e, "cannot count the unacknowledged security events"),
    }
    check_alert_config(&shared, &config, None);
    store_policy(&shared, &config);
    let ctx = JobContext { config: config.clone(), state_dir: dir.clone(), host, clock, security: Some(sink) };
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let mut d = Daemon {
        config,
        shared_config,
        shared,
        run: job,
        tz,
        ctx,
        jobs: BTreeMap::new(),
        supervisors: BTreeMap::new(),
        pending: VecDeque::new(),
        running: BTreeMap::new(),
        done_tx,
        done_rx,
        server,
        last_status: None,
        once: options.once,
        unacknowledged: None,
    };
    tracing::info!(state_dir = %dir.display(), lock = %lock.path().display(), pid = std::process::id(),
        "coffer daemon starting");
    d.shared.metrics.daemon_started(d.shared.clock.now());
    d.install_jobs()?;
    crate::logs::daemon_started(d.config.path.as_deref().unwrap_or(std::path::Path::new("")), d.job_count());
    d.run_loop(control);
    d.shutdown();
    drop(lock);
    Ok(())
}

/// Where the jobs' security events go ([`security_event`]).
fn security_sink(shared: &Arc<Shared>, config: &SharedConfig) -> crate::security::SecuritySink {
    let (shared, config) = (Arc::clone(shared), Arc::clone(config));
    crate::security::SecuritySink(Arc::new(move |event: crate::security::SecurityEvent| {
        let config = config.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        security_event(&shared, &config, &event, None);
    }))
}

/// A security event: recorded first (the state's table and the ledger outbox, one
/// transaction), then logged, counted, raised (to every target; with `previous`, through
/// that alert configuration's targets too) and sent on to the ledgers. An event recorded
/// before (same id) is not raised again.
fn security_event(
    shared: &Shared,
    config: &Config,
    event: &crate::security::SecurityEvent,
    previous: Option<&crate::config::AlertsConfig>,
) {
    let ledgers = crate::security::record::ledgers(event, Some(config));
    match crate::security::record::record_in(&shared.state, event, &shared.host, &ledgers) {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(id = %event.id, "security event already recorded");
            return;
        }
        // Not recorded: still logged and alerted (the alert is what must not be lost now).
        Err(e) => tracing::error!(id = %event.id, error = %e, "cannot record the security event in the local state"),
    }
    tracing::warn!(id = %event.id, security_kind = event.kind.as_str(), layer = %event.layer,
        repository = event.repository.as_deref().unwrap_or("-"),
        principal = event.principal.as_deref().unwrap_or("-"), action = event.action.as_deref().unwrap_or("-"),
        key = event.key.as_deref().unwrap_or("-"), "security event: {}", event.summary);
    shared.metrics.security_event(event.kind.as_str());
    if let Ok(n) = shared.state.security_unacknowledged() {
        shared.metrics.set_security_unacknowledged(n);
    }
    let alert = crate::security::record::alert(event, &shared.host);
    match previous {
        Some(old) => shared.alerter.raise_also_via(alert, old),
        None => shared.alerter.raise(alert),
    }
    for repo in &ledgers {
        shared.flushers.nudge(repo);
    }
}

/// Compares the alert configuration in force with the one kept in the state (at start) or
/// with `previous` (on reload): a weaker one is an `alert-config-change` security event,
/// delivered through the previous targets too. Then the new one is kept.
fn check_alert_config(shared: &Shared, config: &Config, previous: Option<&crate::config::AlertsConfig>) {
    use crate::alerts::fingerprint;
    let check = match fingerprint::check(&shared.state, &config.alerts, previous, shared.clock.now()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot compare the alert configuration with the one kept in the state");
            return;
        }
    };
    if let Some(event) = &check.event {
        security_event(shared, config, event, check.previous.as_ref());
    }
    if let Err(e) = fingerprint::keep(&shared.state, &check) {
        tracing::error!(error = %e, "cannot keep the alert configuration's fingerprint");
    }
}

/// Queues the policy file for the ledger of every repository it uses when it changed (or
/// the last record is getting old: [`crate::drill::policy::REFRESH`]), and nudges their
/// flushers: what a rebuild reads back from the repository alone.
fn store_policy(shared: &Shared, config: &Config) {
    match crate::drill::policy::record_policy(&shared.state, config, &shared.host, shared.clock.now()) {
        Ok(queued) => {
            for repository in &queued {
                shared.flushers.nudge(repository);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot queue the policy file for the repositories' ledgers"),
    }
}

fn time_zone(config: &Config) -> Result<TimeZone, DaemonError> {
    match &config.daemon.timezone {
        Some(name) => TimeZone::get(name).map_err(|e| DaemonError::TimeZone { name: name.clone(), why: e.to_string() }),
        None => Ok(TimeZone::system()),
    }
}

fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// A scheduled job and the last slot handled in memory (persisted once recorded).
struct Job {
    spec: JobSpec,
    pointer: Timestamp,
}

/// A run waiting to start (its random delay, a free slot, its source).
struct Pending {
    spec: JobSpec,
    ctx: JobContext,
    slot: Timestamp,
    late: bool,
    not_before: Instant,
}

/// A run in progress.
struct Running {
    slot: Timestamp,
    lane: Option<String>,
    counted: bool,
    cancel: Cancel,
    timed_out: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

/// A run ended (already recorded by its thread).
struct Done {
    job: String,
    outcome: Outcome,
}

struct Daemon {
    config: Arc<Config>,
    shared_config: SharedConfig,
    shared: Arc<Shared>,
    run: RunFn,
    tz: TimeZone,
    ctx: JobContext,
    jobs: BTreeMap<String, Job>,
    supervisors: BTreeMap<String, Supervisor>,
    pending: VecDeque<Pending>,
    running: BTreeMap<String, Running>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    server: Option<MetricsServer>,
    last_status: Option<Instant>,
    once: bool,
    /// Security events not acknowledged at the last housekeeping.
    unacknowledged: Option<u64>,
}

/// Jobs of one source (or one repository's maintenance) run one at a time; archive checks
/// are read-only queries and run beside anything.
fn lane(spec: &JobSpec) -> Option<String> {
    match (spec.kind, &spec.source) {
        (JobKind::ArchiveCheck | JobKind::Stream, _) => None,
        (_, Some(s)) => Some(format!("source:{s}")),
        (_, None) => Some(format!("repository:{}", spec.repository)),
    }
}

/// `to - from` as a sleep (zero when `to` is past).
fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

impl Daemon {
    fn persist(&self, job: &str, slot: Timestamp) {
        if let Err(e) = self.shared.state.set(&slot_key(job), &slot.to_string()) {
            tracing::error!(job, error = %e, "cannot keep the last slot handled");
        }
    }

    /// The jobs of the current configuration: schedules resumed from the state, continuous
    /// jobs started (or kept, when unchanged).
    fn install_jobs(&mut self) -> Result<(), DaemonError> {
        let now = self.shared.clock.now();
        let specs = crate::jobs::jobs(&self.config);
        let mut jobs = BTreeMap::new();
        let mut streams = BTreeMap::new();
        for spec in specs {
            if spec.schedule.is_none() {
                streams.insert(spec.id.clone(), spec);
                continue;
            }
            let pointer = match self.jobs.remove(&spec.id) {
                Some(j) => j.pointer,
                None => {
                    let kept = self.shared.state.get(&slot_key(&spec.id))?.and_then(|v| v.parse::<Timestamp>().ok());
                    match kept {
                        Some(t) => t.min(now),
                        None => {
                            // Never scheduled before: from now on (nothing before it was due).
                            self.persist(&spec.id, now);
                            now
                        }
                    }
                }
            };
            jobs.insert(spec.id.clone(), Job { spec, pointer });
        }
        self.jobs = jobs;
        // Waiting runs of jobs that are gone do not start.
        self.pending.retain(|p| self.jobs.contains_key(&p.spec.id));
        let old = std::mem::take(&mut self.supervisors);
        let mut stopping = Vec::new();
        for (id, sup) in old {
            if streams.get(&id) == Some(&sup.spec) {
                self.supervisors.insert(id, sup);
            } else {
                sup.stop();
                stopping.push(sup);
            }
        }
        let deadline = Instant::now() + self.config.daemon.shutdown_grace;
        for sup in stopping {
            if !sup.join(deadline) {
                tracing::warn!("a continuous job did not stop in time on reload");
            }
        }
        for (id, spec) in streams {
            if self.once || self.supervisors.contains_key(&id) {
                continue;
            }
            let sup = Supervisor::start(
                self.shared.clone(),
                self.run.clone(),
                self.ctx.clone(),
                spec,
                self.config.daemon.stream_down_alert,
            )
            .map_err(DaemonError::Thread)?;
            self.supervisors.insert(id, sup);
        }
        tracing::info!(jobs = self.jobs.len(), continuous = self.supervisors.len(), "jobs scheduled");
        self.metrics_for_jobs();
        Ok(())
    }

    fn job_count(&self) -> usize {
        self.jobs.len() + self.supervisors.len()
    }

    /// The metrics of the configuration now in force: its alert targets, its jobs (with
    /// their last run from the local history, so a restart does not blank the "last"
    /// gauges), and no series of jobs that left it.
    fn metrics_for_jobs(&mut self) {
        let m = &self.shared.metrics;
        let a = &self.config.alerts;
        for name in a.webhook.keys().chain(a.email.keys()).chain(a.command.keys()).chain(a.heartbeat.keys()) {
            m.add_target(name);
        }
        let specs: Vec<JobSpec> = self
            .jobs
            .values()
            .map(|j| j.spec.clone())
            .chain(self.supervisors.values().map(|s| s.spec.clone()))
            .collect();
        m.retain_jobs(&specs);
        let done = [Outcome::Success, Outcome::Warning, Outcome::Failed, Outcome::TimedOut];
        for spec in &specs {
            match self.shared.state.last_run(&spec.id, &done) {
                Ok(Some(r)) => m.seed_last_run(&r),
                Ok(None) => {}
                Err(e) => tracing::warn!(job = %spec.id, error = %e, "cannot read the job's last run"),
            }
        }
        self.last_status = None;
    }

    fn run_loop(&mut self, control: &Receiver<Control>) {
        let mut first = true;
        self.shared.alerter.ping(None, Ping::Start);
        loop {
            let now = self.shared.clock.now();
            if first || !self.once {
                self.plan(now, first);
            }
            first = false;
            self.start_ready();
            if self.once && self.pending.is_empty() && self.running.is_empty() {
                return;
            }
            self.check_timeouts();
            self.housekeeping(now);
            let wait = self.next_wake(now);
            let done_rx = self.done_rx.clone();
            select! {
                recv(control) -> msg => match msg {
                    Ok(Control::Reload) => self.reload(),
                    Ok(Control::Shutdown) | Err(_) => return,
                },
                recv(done_rx) -> d => {
                    if let Ok(d) = d {
                        self.done(&d);
                    }
                }
                default(wait) => {}
            }
        }
    }

    /// Decides, for every scheduled job, what is due at `now`.
    fn plan(&mut self, now: Timestamp, startup: bool) {
        let catch_up = self.config.daemon.catch_up;
        let mut refresh = false;
        let mut to_persist = Vec::new();
        let mut new_pending = Vec::new();
        for job in self.jobs.values_mut() {
            let Some(schedule) = &job.spec.schedule else { continue };
            let id = &job.spec.id;
            let busy = self.running.contains_key(id) || self.pending.iter().any(|p| &p.spec.id == id);
            let pass = if busy {
                Pass::Busy
            } else if startup {
                Pass::Startup { catch_up }
            } else {
                Pass::Running
            };
            let due = scheduler::due(schedule, &self.tz, job.pointer, now, pass);
            let Some(newest) = due.newest else { continue };
            job.pointer = newest;
            refresh = true;
            if let Some(why) = due.why {
                self.shared.missed(&job.spec, &due.missed, due.missed_total, why);
            }
            match due.run {
                Some(slot) => new_pending.push(Pending {
                    spec: job.spec.clone(),
                    ctx: self.ctx.clone(),
                    slot,
                    late: due.late,
                    not_before: Instant::now()
                        + job.spec.random_delay.map_or(Duration::ZERO, crate::schedule::random_delay),
                }),
                // Nothing runs for these slots: they are handled once recorded.
                None if !busy => to_persist.push((id.clone(), newest)),
                None => {}
            }
        }
        for (id, slot) in to_persist {
            self.persist(&id, slot);
        }
        self.pending.extend(new_pending);
        if refresh {
            self.last_status = None;
        }
    }

    /// Starts the waiting runs whose delay is over, within the overall limit and one per
    /// source.
    fn start_ready(&mut self) {
        let max = self.config.daemon.max_concurrent_jobs.max(1);
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let lane = lane(&p.spec);
            let counted = lane.is_some();
            let in_use = self.running.values().filter(|r| r.counted).count();
            let lane_busy = lane.is_some() && self.running.values().any(|r| r.lane == lane);
            if p.not_before > Instant::now() || (counted && (in_use >= max || lane_busy)) {
                i += 1;
                continue;
            }
            let Some(p) = self.pending.remove(i) else { break };
            self.start(p, lane, counted);
        }
    }

    fn start(&mut self, p: Pending, lane: Option<String>, counted: bool) {
        let ctl = JobControl::none();
        let timed_out = Arc::new(AtomicBool::new(false));
        let running = Running {
            slot: p.slot,
            lane,
            counted,
            cancel: ctl.cancel.clone(),
            timed_out: timed_out.clone(),
            deadline: Instant::now().checked_add(p.spec.timeout),
        };
        let id = p.spec.id.clone();
        let dispatch = Dispatch {
            spec: p.spec,
            ctx: p.ctx,
            slot: Some(p.slot),
            late: p.late,
            ctl,
            timed_out,
            backoff: self.config.daemon.retry_backoff,
        };
        let (shared, run, done) = (self.shared.clone(), self.run.clone(), self.done_tx.clone());
        let spawned = std::thread::Builder::new().name(format!("coffer-{id}")).spawn(move || {
            // A job that panics is a failed run, recorded like any other: its lane and slot
            // must be freed, or the job would never run again.
            let rec =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner::attempts(&shared, &run, &dispatch)))
                    .unwrap_or_else(|_| runner::panicked(&shared, &dispatch));
            shared.finish(&dispatch.spec, &rec);
            let _ = done.send(Done { job: dispatch.spec.id.clone(), outcome: rec.outcome });
        });
        match spawned {
            Ok(_) => {
                self.running.insert(id, running);
            }
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot start a thread for the job; it runs at its next slot")
            }
        }
    }

    fn check_timeouts(&self) {
        let now = Instant::now();
        for (id, r) in &self.running {
            if r.deadline.is_some_and(|d| d <= now) && !r.cancel.is_cancelled() {
                tracing::warn!(job = %id, "job {id} reached its timeout; cancelling it");
                r.timed_out.store(true, Ordering::SeqCst);
                r.cancel.cancel();
            }
        }
    }

    /// A run ended and was recorded: its slot (and the slots missed while it ran) are
    /// handled, unless the shutdown stopped it (then it runs again at the next start).
    fn done(&mut self, d: &Done) {
        let Some(r) = self.running.remove(&d.job) else { return };
        if d.outcome == Outcome::Cancelled {
            return;
        }
        let slot = self.jobs.get(&d.job).map_or(r.slot, |j| j.pointer.max(r.slot));
        self.persist(&d.job, slot);
        // The job's next run and overdue flag change with its run: refresh them now.
        self.last_status = None;
    }

    /// Job status to the metrics (the alerter's own timer sends the daemon's liveness pings).
    fn housekeeping(&mut self, now: Timestamp) {
        if self.last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            self.last_status = Some(Instant::now());
            for job in self.jobs.values() {
                let next = job.spec.schedule.as_ref().map(|s| scheduler::next_slot(s, &self.tz, job.pointer));
                match crate::status::job_status(&job.spec, &self.shared.state, now, &self.tz) {
                    Ok(st) => self.shared.metrics.set_job(&job.spec, st.next_run.or(next), st.overdue),
                    Err(e) => tracing::warn!(job = %job.spec.id, error = %e, "cannot read the job's status"),
                }
            }
            for sup in self.supervisors.values() {
                self.shared.metrics.set_job(&sup.spec, None, false);
            }
            // The stored policy is renewed before its record can expire (a kv read per
            // repository when nothing is due).
            store_policy(&self.shared, &self.config);
            // Acknowledgements are made by another process (`coffer alert ack`): counted, and
            // their ledger records (waiting in the outbox) sent on.
            match self.shared.state.security_unacknowledged() {
                Ok(n) => {
                    self.shared.metrics.set_security_unacknowledged(n);
                    if self.unacknowledged.is_some_and(|before| n < before) {
                        let all = self.config.repositories.keys().map(String::as_str);
                        let mut repos: std::collections::BTreeSet<&str> = all.collect();
                        repos.extend(self.config.sources().map(|(_, r)| r));
                        for r in repos {
                            self.shared.flushers.nudge(r);
                        }
                    }
                    self.unacknowledged = Some(n);
                }
                Err(e) => tracing::warn!(error = %e, "cannot count the unacknowledged security events"),
            }
        }
    }

    /// How long the loop may sleep: until the earliest next slot, waiting run, timeout or
    /// housekeeping, and never more than [`MAX_SLEEP`].
    fn next_wake(&self, now: Timestamp) -> Duration {
        let mut wait = MAX_SLEEP.min(STATUS_EVERY);
        for job in self.jobs.values() {
            if let Some(s) = &job.spec.schedule {
                // A millisecond past the slot, so that the slot is due when the loop wakes.
                let next = scheduler::next_slot(s, &self.tz, job.pointer);
                wait = wait.min(until(now, next) + Duration::from_millis(1));
            }
        }
        let mono = Instant::now();
        for p in &self.pending {
            if p.not_before > mono {
                wait = wait.min(p.not_before - mono);
            }
        }
        for r in self.running.values() {
            if let Some(d) = r.deadline.filter(|_| !r.cancel.is_cancelled()) {
                wait = wait.min(d.saturating_duration_since(mono));
            }
        }
        wait
    }

    /// SIGHUP: the policy file again; a bad one keeps this configuration running.
    fn reload(&mut self) {
        let Some(path) = self.config.path.clone() else {
            tracing::warn!("reload asked, but the configuration was not read from a file");
            return;
        };
        tracing::info!(config = %path.display(), "reloading the configuration");
        let new = crate::config::Config::load(&path).and_then(|c| c.require_jobs().map(|()| c)).and_then(|c| {
            // The alert targets are checked by the alerter; a refusal there refuses the file.
            self.shared
                .alerter
                .reload(&c.alerts)
                .map(|()| c)
                .map_err(|e| crate::config::ConfigError::File { path: path.clone(), message: e.to_string() })
        });
        match new {
            Err(e) => {
                crate::logs::config_rejected(&path, &e.to_string());
                let mut details = BTreeMap::new();
                details.insert("error".into(), e.to_string());
                details.insert("config".into(), path.display().to_string());
                self.shared.alerter.raise(self.shared.event(
                    AlertKind::ConfigRejected,
                    Severity::Error,
                    "config-rejected".into(),
                    None,
                    format!("coffer.toml refused on reload (the previous configuration keeps running): {e}"),
                    details,
                ));
            }
            Ok(mut c) => {
                // The command line's cache flags hold for the daemon's whole run.
                c.cache_override.clone_from(&self.config.cache_override);
                match time_zone(&c) {
                    Ok(tz) => self.tz = tz,
                    Err(e) => tracing::error!(error = %e, "keeping the previous time zone"),
                }
                check_alert_config(&self.shared, &c, Some(&self.config.alerts));
                store_policy(&self.shared, &c);
                let c = Arc::new(c);
                *self.shared_config.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = c.clone();
                self.ctx.config = c.clone();
                self.config = c;
                if let Err(e) = self.install_jobs() {
                    tracing::error!(error = %e, "reloading the jobs failed");
                }
                self.shared.alerter.resolve("config-rejected", "coffer.toml accepted on reload");
                crate::logs::config_reloaded(&path, self.job_count());
            }
        }
    }

    /// SIGTERM: cancel every run, wait (a grace period) for their records, flush, stop.
    fn shutdown(mut self) {
        let grace = self.config.daemon.shutdown_grace;
        let deadline = Instant::now() + grace;
        tracing::info!(running = self.running.len(), "coffer daemon stopping; cancelling running jobs");
        self.pending.clear();
        for r in self.running.values() {
            r.cancel.cancel();
        }
        for sup in self.supervisors.values() {
            sup.stop();
        }
        while !self.running.is_empty() {
            match self.done_rx.recv_deadline(deadline) {
                Ok(d) => self.done(&d),
                Err(_) => break,
            }
        }
        if !self.running.is_empty() {
            let left: Vec<&str> = self.running.keys().map(String::as_str).collect();
            tracing::warn!(jobs = %left.join(","), "jobs still running after the grace period; they run again at the next start");
        }
        for (_, sup) in std::mem::take(&mut self.supervisors) {
            let id = sup.spec.id.clone();
            if !sup.join(deadline) {
                tracing::warn!(job = %id, "continuous job still running after the grace period");
            }
        }
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(2));
        self.shared.flushers.shutdown(left);
        self.shared.alerter.shutdown(deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(2)));
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        crate::logs::daemon_stopped();
    }
}
