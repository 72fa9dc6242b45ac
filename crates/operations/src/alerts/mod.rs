//! Alerts: typed events ([`crate::event::AlertEvent`]) routed by kind, severity and source
//! to targets (webhook, email, command) and heartbeat pings (`docs/alerts.md`).
//!
//! Invariant guarded here: delivering an alert never blocks or fails a job. [`Alerter`]
//! hands events to one delivery thread per target (a bounded queue each: when it is full the
//! oldest waiting delivery is dropped, counted and logged) and returns at once; a target that
//! is down or hangs holds up only its own thread. A delivery is retried with backoff, every
//! attempt is logged and reported to the [`DeliveryHook`], and a target that keeps failing
//! raises `delivery-failing` through the *other* targets.
//!
//! Problems: [`Alerter::raise`] is keyed by `event.problem`. A problem is delivered when it is
//! new, and again only once `alerts.repeat-interval` has passed (the daemon raises it again on
//! every failure); [`Alerter::resolve`] delivers one resolved notice for an open problem.
//! Open problems are kept in the state database (`problem:KEY`), so a restart neither repeats
//! one early nor forgets one.
//!
//! Security alerts (severity `security`, `docs/security.md`) follow stricter rules: each is
//! its own problem (`security:ID`, never merged), delivered to **every** non-heartbeat
//! target whatever the routes say (routes may add, never subtract), and repeated every
//! `alerts.security-repeat-interval` until acknowledged. The acknowledgement is made in the
//! state by another process (`coffer alert ack`): the timer looks for it, stops the repeats
//! and delivers one "acknowledged" notice.

pub mod deliver;
pub mod fingerprint;

pub use deliver::{DeliveryError, Payload, TargetSpec};

use crate::config::{AlertsConfig, Route};
use crate::event::{AlertEvent, AlertKind, Severity, random_id};
use crate::state::State;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// A heartbeat ping's phase (healthchecks.io: `URL/start`, `URL`, `URL/fail`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// The job started.
    Start,
    /// The job succeeded (or: the daemon is alive).
    Success,
    /// The job failed.
    Fail,
}

/// Called after each delivery attempt with (target name, delivered): for metrics.
pub type DeliveryHook = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// Why the alerter could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A route names a target that does not exist, or a target is unusable.
    #[error("alerts: {0}")]
    Config(String),
}

impl AlertError {
    /// The class of this error: the policy file is wrong.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        coffer_store::ErrorClass::Invalid
    }
}

/// How often the timer looks for acknowledgements while a security alert is open.
const ACK_POLL: Duration = Duration::from_secs(2);

/// Deliveries a target's queue holds; past this the oldest is dropped.
pub const QUEUE_CAPACITY: usize = 64;

/// The state key of an open problem.
fn problem_key(problem: &str) -> String {
    format!("problem:{problem}")
}

/// The problem raised when target `name` keeps failing.
#[must_use]
pub fn delivery_failing_problem(name: &str) -> String {
    format!("delivery-failing:{name}")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The checked configuration: targets by name and routes.
#[derive(Debug)]
struct Plan {
    repeat: Duration,
    security_repeat: Duration,
    backoff: Duration,
    failing_after: u32,
    targets: BTreeMap<String, TargetSpec>,
    routes: Vec<Route>,
}

impl Plan {
    fn new(c: &AlertsConfig) -> Result<Self, AlertError> {
        let mut targets = BTreeMap::new();
        let all = c
            .webhook
            .iter()
            .map(|(n, t)| (n, TargetSpec::Webhook(t.clone())))
            .chain(c.email.iter().map(|(n, t)| (n, TargetSpec::Email(t.clone()))))
            .chain(c.command.iter().map(|(n, t)| (n, TargetSpec::Command(t.clone()))))
            .chain(c.heartbeat.iter().map(|(n, t)| (n, TargetSpec::Heartbeat(t.clone()))));
        for (name, spec) in all {
            let url = match &spec {
                TargetSpec::Webhook(t) => Some(&t.url),
                TargetSpec::Heartbeat(t) => Some(&t.url),
                TargetSpec::Email(t) if t.to.is_empty() => {
                    return Err(AlertError::Config(format!("email target {name:?} has no recipient (to = [...])")));
                }
                TargetSpec::Command(t) if t.command.is_empty() => {
                    return Err(AlertError::Config(format!("command target {name:?}: command is empty")));
                }
                _ => None,
            };
            // The URL itself is not shown: it may carry a token.
            if url.is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                return Err(AlertError::Config(format!(
                    "{} target {name:?}: url must start with http:// or https://",
                    spec.kind()
                )));
            }
            if let Some(other) = targets.insert(name.clone(), spec) {
                return Err(AlertError::Config(format!(
                    "two targets are named {name:?} ({} and another); target names must be unique",
                    other.kind()
                )));
            }
        }
        for (i, r) in c.route.iter().enumerate() {
            if r.targets.is_empty() {
                return Err(AlertError::Config(format!("route {} names no target", i + 1)));
            }
            for t in &r.targets {
                match targets.get(t) {
                    None => {
                        return Err(AlertError::Config(format!(
                            "route {} names the target {t:?}, which is not declared ([alerts.webhook.{t}], [alerts.email.{t}] or [alerts.command.{t}])",
                            i + 1
                        )));
                    }
                    Some(TargetSpec::Heartbeat(_)) => {
                        return Err(AlertError::Config(format!(
                            "route {} names the heartbeat target {t:?}; heartbeat targets receive pings only",
                            i + 1
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(Self {
            repeat: c.repeat_interval,
            security_repeat: c.security_repeat_interval,
            backoff: c.retry_backoff,
            failing_after: c.failing_after.max(1),
            targets,
            routes: c.route.clone(),
        })
    }

    /// The targets `e` goes to, matching routes with `severity` (a resolved notice is routed
    /// as the problem was, so it reaches whoever was told of it).
    ///
    /// A security alert goes to every target but heartbeats, whatever the routes say: a
    /// route can add a target to an event, never take one away from a security alert.
    fn route(&self, e: &AlertEvent, severity: Severity, exclude: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = if self.routes.is_empty() || severity == Severity::Security {
            self.targets
                .iter()
                .filter(|(_, s)| !matches!(s, TargetSpec::Heartbeat(_)))
                .map(|(n, _)| n.clone())
                .collect()
        } else {
            let mut v = Vec::new();
            for r in self.routes.iter().filter(|r| route_matches(r, e, severity)) {
                for t in &r.targets {
                    if !v.contains(t) {
                        v.push(t.clone());
                    }
                }
            }
            v
        };
        out.retain(|n| Some(n.as_str()) != exclude);
        out
    }
}

fn route_matches(r: &Route, e: &AlertEvent, severity: Severity) -> bool {
    (r.kinds.is_empty() || r.kinds.contains(&e.kind))
        && r.min_severity.is_none_or(|m| severity >= m)
        && (r.sources.is_empty() || e.source.as_ref().is_some_and(|s| r.sources.contains(s)))
}

/// The targets `event` is routed to under `config` (for `coffer alert` and tests).
///
/// # Errors
/// [`AlertError::Config`].
pub fn route(config: &AlertsConfig, event: &AlertEvent) -> Result<Vec<String>, AlertError> {
    Ok(Plan::new(config)?.route(event, event.severity, None))
}

/// An open problem, as kept in the state database (`problem:KEY`, JSON, version 1).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct OpenProblem {
    version: u32,
    /// The latest event raised for it.
    event: AlertEvent,
    /// When it was first raised.
    first: Timestamp,
    /// When it was last delivered.
    last_sent: Timestamp,
}

/// One delivery waiting in a target's queue.
struct Job {
    spec: TargetSpec,
    payload: Payload,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    busy: bool,
    closed: bool,
    /// Deliveries in a row that failed (after their retries).
    failures: u32,
}

/// A target's delivery thread and its queue.
struct Worker {
    name: String,
    queue: Mutex<Queue>,
    cv: Condvar,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Worker {
    fn idle(&self) -> bool {
        let q = lock(&self.queue);
        q.jobs.is_empty() && !q.busy
    }
}

struct Inner {
    host: String,
    state: Arc<State>,
    clock: coffer_store::Clock,
    hook: Option<DeliveryHook>,
    plan: RwLock<Arc<Plan>>,
    problems: Mutex<BTreeMap<String, OpenProblem>>,
    workers: Mutex<BTreeMap<String, Arc<Worker>>>,
    dropped: AtomicU64,
    /// Deliveries queued or running, including what each delivery's outcome raises: zero
    /// only when nothing is left to do (a running delivery that raises `delivery-failing`
    /// queues it before it stops counting itself).
    pending: AtomicUsize,
    stopped: Mutex<bool>,
    wake: Condvar,
    drain_until: Mutex<Option<Instant>>,
}

/// The running alert router. Cheap to share (`Arc`); every method returns at once.
pub struct Alerter {
    inner: Arc<Inner>,
    timer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter").field("host", &self.inner.host).finish_non_exhaustive()
    }
}

impl Alerter {
    /// Starts the delivery thread for `config`'s targets. Open problems are kept in `state`
    /// (so a restart neither repeats nor forgets them).
    ///
    /// # Errors
    /// [`AlertError::Config`].
    pub fn start(
        config: &AlertsConfig,
        host: String,
        state: Arc<crate::state::State>,
        clock: coffer_store::Clock,
        hook: Option<DeliveryHook>,
    ) -> Result<Self, AlertError> {
        let plan = Plan::new(config)?;
        let mut problems = BTreeMap::new();
        match state.scan("problem:") {
            Ok(rows) => {
                for (key, value) in rows {
                    match serde_json::from_str::<OpenProblem>(&value) {
                        Ok(p) => {
                            problems.insert(p.event.problem.clone(), p);
                        }
                        Err(err) => {
                            tracing::warn!(key = %key, error = %err, "alerts: unreadable open problem, forgotten")
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "alerts: cannot read the open problems"),
        }
        let inner = Arc::new(Inner {
            host,
            state,
            clock,
            hook,
            plan: RwLock::new(Arc::new(plan)),
            problems: Mutex::new(problems),
            workers: Mutex::new(BTreeMap::new()),
            dropped: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            drain_until: Mutex::new(None),
        });
        let timer_inner = Arc::clone(&inner);
        let timer = std::thread::Builder::new()
            .name("coffer-alerts-timer".into())
            .spawn(move || timer_inner.timer())
            .map_err(|e| AlertError::Config(format!("cannot start the alert timer: {e}")))?;
        Ok(Self { inner, timer: Mutex::new(Some(timer)) })
    }

    /// Raises `event` (a problem, keyed by `event.problem`): delivered now if the problem is
    /// new, again every repeat interval while it stays raised.
    pub fn raise(&self, event: AlertEvent) {
        self.inner.raise(event);
    }

    /// The problem `problem` is over: if it was raised, a resolved notice is delivered.
    pub fn resolve(&self, problem: &str, summary: &str) {
        self.inner.resolve(problem, summary);
    }

    /// A heartbeat ping for `job` (`None`: the daemon's own liveness ping).
    pub fn ping(&self, job: Option<&str>, ping: Ping) {
        let plan = self.inner.plan();
        for (name, spec) in &plan.targets {
            if matches!(spec, TargetSpec::Heartbeat(h) if h.job.as_deref() == job) {
                self.inner.enqueue(name, spec.clone(), Payload::Ping(ping));
            }
        }
    }

    /// Raises `event` and, the first time, delivers it through the targets of `previous`
    /// too (an `alert-config-change`: the targets a reload or a restart just removed hear of
    /// their removal). Repeats go through the targets in force only.
    pub fn raise_also_via(&self, event: AlertEvent, previous: &AlertsConfig) {
        match Plan::new(previous) {
            Ok(old) => self.inner.raise_with(event, Some(&old)),
            Err(e) => {
                tracing::warn!(error = %e, "alerts: the previous alert configuration is unusable; its targets are not told");
                self.inner.raise(event);
            }
        }
    }

    /// Delivers again every open problem whose repeat interval has passed, and ends the
    /// security problems acknowledged in the state (one notice each). The timer calls this
    /// every minute, and every few seconds while a security problem is open; tests call it
    /// after moving a manual clock.
    pub fn tick(&self) {
        self.inner.tick();
    }

    /// The open problems' keys.
    #[must_use]
    pub fn open_problems(&self) -> Vec<String> {
        lock(&self.inner.problems).keys().cloned().collect()
    }

    /// Deliveries dropped because a target's queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every queue is empty and no delivery is running, at most `timeout`;
    /// whether they are.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.inner.wait_idle(timeout)
    }

    /// Uses `config` from now on (open problems are kept).
    ///
    /// # Errors
    /// [`AlertError::Config`]; the old configuration stays.
    pub fn reload(&self, config: &AlertsConfig) -> Result<(), AlertError> {
        let plan = Plan::new(config)?;
        let gone: Vec<Arc<Worker>> = {
            let mut workers = lock(&self.inner.workers);
            let names: Vec<String> = workers.keys().filter(|n| !plan.targets.contains_key(*n)).cloned().collect();
            names.iter().filter_map(|n| workers.remove(n)).collect()
        };
        for w in gone {
            lock(&w.queue).closed = true;
            w.cv.notify_all();
        }
        *self.inner.plan.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(plan);
        self.inner.wake.notify_all();
        Ok(())
    }

    /// Stops the delivery thread after at most `grace` for what is queued.
    pub fn shutdown(&self, grace: std::time::Duration) {
        let deadline = Instant::now() + grace;
        *lock(&self.inner.drain_until) = Some(deadline);
        let workers: Vec<Arc<Worker>> = lock(&self.inner.workers).values().cloned().collect();
        for w in &workers {
            lock(&w.queue).closed = true;
            w.cv.notify_all();
        }
        let _ = self.inner.wait_idle(deadline.saturating_duration_since(Instant::now()));
        // Past the grace, retries' waits end and what is left is abandoned.
        *lock(&self.inner.stopped) = true;
        self.inner.wake.notify_all();
        if let Some(t) = lock(&self.timer).take() {
            let _ = t.join();
        }
        for w in &workers {
            let thread = if w.idle() { lock(&w.thread).take() } else { None };
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Alerter {
    fn drop(&mut self) {
        *lock(&self.inner.stopped) = true;
        self.inner.wake.notify_all();
        for w in lock(&self.inner.workers).values() {
            lock(&w.queue).closed = true;
            w.cv.notify_all();
        }
    }
}

impl Inner {
    fn plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Sleeps `d`, or less if the alerter stops (or is woken by a reload).
    fn sleep(&self, d: Duration) {
        let g = lock(&self.stopped);
        if !*g {
            let _ = self.wake.wait_timeout(g, d);
        }
    }

    fn persist(&self, p: &OpenProblem) {
        let json = serde_json::to_string(p).expect("an open problem serializes");
        if let Err(err) = self.state.set(&problem_key(&p.event.problem), &json) {
            tracing::warn!(problem = %p.event.problem, error = %err, "alerts: cannot keep the open problem");
        }
    }

    fn raise(self: &Arc<Self>, event: AlertEvent) {
        self.raise_with(event, None);
    }

    fn raise_with(self: &Arc<Self>, event: AlertEvent, previous: Option<&Plan>) {
        let now = self.clock.now();
        let plan = self.plan();
        let repeat = if event.severity == Severity::Security { plan.security_repeat } else { plan.repeat };
        let problem = event.problem.clone();
        let mut problems = lock(&self.problems);
        let send = match problems.get_mut(&event.problem) {
            None => {
                let p = OpenProblem { version: 1, event: event.clone(), first: now, last_sent: now };
                self.persist(&p);
                problems.insert(event.problem.clone(), p);
                Some(event)
            }
            Some(p) => {
                p.event = event.clone();
                if elapsed(p.last_sent, now) >= repeat {
                    p.last_sent = now;
                    self.persist(p);
                    Some(repeated(event, p.first))
                } else {
                    None
                }
            }
        };
        drop(problems);
        match send {
            Some(e) => {
                tracing::warn!(kind = %e.kind, severity = e.severity.as_str(), problem = %e.problem, "alert: {}", e.summary);
                let sev = e.severity;
                let sent = self.dispatch(&e, sev);
                if sev == Severity::Security {
                    // The timer now looks for its acknowledgement often.
                    self.wake.notify_all();
                }
                if let Some(old) = previous {
                    // The previous configuration's targets, with their previous settings.
                    for name in old.route(&e, sev, None) {
                        if sent.contains(&name) {
                            continue;
                        }
                        if let Some(spec) = old.targets.get(&name) {
                            self.enqueue(&name, spec.clone(), Payload::Event(Box::new(e.clone())));
                        }
                    }
                }
            }
            None => tracing::debug!(problem = %problem, "alert: still open, not repeated yet"),
        }
    }

    fn resolve(self: &Arc<Self>, problem: &str, summary: &str) {
        let Some(p) = lock(&self.problems).remove(problem) else { return };
        if let Err(err) = self.state.remove(&problem_key(problem)) {
            tracing::warn!(problem = %problem, error = %err, "alerts: cannot forget the resolved problem");
        }
        let mut e = p.event.clone();
        e.id = random_id();
        e.resolved = true;
        e.severity = Severity::Info;
        e.summary = summary.to_owned();
        e.time = self.clock.now();
        e.details.insert("first-raised".into(), p.first.to_string());
        tracing::info!(kind = %e.kind, problem = %problem, "alert resolved: {summary}");
        self.dispatch(&e, p.event.severity);
    }

    fn tick(self: &Arc<Self>) {
        self.end_acknowledged();
        let now = self.clock.now();
        let plan = self.plan();
        let due: Vec<AlertEvent> = {
            let mut problems = lock(&self.problems);
            let mut due = Vec::new();
            for p in problems.values_mut() {
                let repeat = if p.event.severity == Severity::Security { plan.security_repeat } else { plan.repeat };
                if elapsed(p.last_sent, now) >= repeat {
                    p.last_sent = now;
                    self.persist(p);
                    let mut e = repeated(p.event.clone(), p.first);
                    e.time = now;
                    due.push(e);
                }
            }
            due
        };
        for e in due {
            let sev = e.severity;
            self.dispatch(&e, sev);
        }
    }

    /// Whether a security problem is open (the timer then looks for acknowledgements often).
    fn security_open(&self) -> bool {
        lock(&self.problems).values().any(|p| p.event.severity == Severity::Security)
    }

    /// Ends every open security problem whose event is acknowledged in the state (by this
    /// process or another): one "acknowledged" notice each, no more repeats.
    fn end_acknowledged(self: &Arc<Self>) {
        let open: Vec<(String, AlertEvent)> = lock(&self.problems)
            .iter()
            .filter(|(_, p)| p.event.severity == Severity::Security)
            .map(|(k, p)| (k.clone(), p.event.clone()))
            .collect();
        for (problem, event) in open {
            let Some(id) = crate::security::record::problem_id(&problem) else { continue };
            let stored = match self.state.security_event(id) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(problem = %problem, error = %err, "alerts: cannot read the security event's acknowledgement");
                    continue;
                }
            };
            let (Some(at), Some(by)) = (stored.acked_at, stored.acked_by) else { continue };
            if lock(&self.problems).remove(&problem).is_none() {
                continue;
            }
            if let Err(err) = self.state.remove(&problem_key(&problem)) {
                tracing::warn!(problem = %problem, error = %err, "alerts: cannot forget the acknowledged problem");
            }
            let notice = crate::security::record::acknowledged(&event, &by, at, self.clock.now());
            tracing::info!(problem = %problem, acked_by = %by, "security alert acknowledged; repeats stop");
            self.dispatch(&notice, Severity::Security);
        }
    }

    /// Queues `e` for every target it is routed to. A `delivery-failing` notice never goes
    /// to the failing target itself (no loop).
    fn dispatch(self: &Arc<Self>, e: &AlertEvent, match_severity: Severity) -> Vec<String> {
        let plan = self.plan();
        let exclude =
            if e.kind == AlertKind::DeliveryFailing { e.problem.strip_prefix("delivery-failing:") } else { None };
        let names = plan.route(e, match_severity, exclude);
        for name in &names {
            if let Some(spec) = plan.targets.get(name) {
                self.enqueue(name, spec.clone(), Payload::Event(Box::new(e.clone())));
            }
        }
        names
    }

    fn worker(self: &Arc<Self>, name: &str) -> Option<Arc<Worker>> {
        if self.stopped() {
            return None;
        }
        let mut workers = lock(&self.workers);
        if let Some(w) = workers.get(name) {
            return Some(Arc::clone(w));
        }
        let w = Arc::new(Worker {
            name: name.to_owned(),
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            thread: Mutex::new(None),
        });
        let (me, worker) = (Arc::clone(self), Arc::clone(&w));
        match std::thread::Builder::new().name(format!("coffer-alert-{name}")).spawn(move || me.run_worker(&worker)) {
            Ok(t) => *lock(&w.thread) = Some(t),
            Err(err) => {
                tracing::error!(target_name = %name, error = %err, "alerts: cannot start the delivery thread");
                return None;
            }
        }
        workers.insert(name.to_owned(), Arc::clone(&w));
        Some(w)
    }

    fn enqueue(self: &Arc<Self>, name: &str, spec: TargetSpec, payload: Payload) {
        let Some(w) = self.worker(name) else { return };
        let mut q = lock(&w.queue);
        if q.closed {
            return;
        }
        let full = q.jobs.len() >= QUEUE_CAPACITY;
        if let Some(old) = if full { q.jobs.pop_front() } else { None } {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(target_name = %name, what = %describe(&old.payload), dropped_total = total, "alerts: queue full, oldest delivery dropped");
        } else {
            self.pending.fetch_add(1, Ordering::SeqCst);
        }
        q.jobs.push_back(Job { spec, payload });
        drop(q);
        w.cv.notify_all();
    }

    fn run_worker(self: &Arc<Self>, w: &Worker) {
        loop {
            let job = {
                let mut q = lock(&w.queue);
                loop {
                    if q.closed && lock(&self.drain_until).is_some_and(|d| Instant::now() >= d) {
                        self.pending.fetch_sub(q.jobs.len(), Ordering::SeqCst);
                        q.jobs.clear();
                    }
                    if let Some(job) = q.jobs.pop_front() {
                        q.busy = true;
                        break job;
                    }
                    if q.closed {
                        return;
                    }
                    q = w.cv.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            let ok = self.deliver(&w.name, &job);
            let failures = {
                let mut q = lock(&w.queue);
                q.failures = if ok { 0 } else { q.failures.saturating_add(1) };
                q.failures
            };
            let problem = delivery_failing_problem(&w.name);
            if ok {
                if lock(&self.problems).contains_key(&problem) {
                    self.resolve(&problem, &format!("alert target {} delivers again", w.name));
                }
            } else if failures >= self.plan().failing_after {
                self.raise(self.delivery_failing(&w.name, &job, failures));
            }
            lock(&w.queue).busy = false;
            self.pending.fetch_sub(1, Ordering::SeqCst);
            w.cv.notify_all();
        }
    }

    fn delivery_failing(&self, name: &str, job: &Job, failures: u32) -> AlertEvent {
        let mut details = BTreeMap::new();
        details.insert("target".into(), name.to_owned());
        details.insert("target-kind".into(), job.spec.kind().to_owned());
        details.insert("failures".into(), failures.to_string());
        AlertEvent {
            version: AlertEvent::VERSION,
            id: random_id(),
            kind: AlertKind::DeliveryFailing,
            severity: Severity::Warning,
            problem: delivery_failing_problem(name),
            resolved: false,
            time: self.clock.now(),
            host: self.host.clone(),
            job: None,
            source: None,
            repository: None,
            summary: format!("alert target {name} failed {failures} deliveries in a row"),
            details,
        }
    }

    /// Delivers one job with its retries; whether it was delivered.
    fn deliver(&self, name: &str, job: &Job) -> bool {
        let plan = self.plan();
        let attempts = job.spec.retries().saturating_add(1);
        let mut backoff = plan.backoff;
        for attempt in 1..=attempts {
            let result = deliver::deliver_once(name, &job.spec, &job.payload);
            if let Some(hook) = &self.hook {
                hook(name, result.is_ok());
            }
            match result {
                Ok(()) => {
                    tracing::info!(target_name = %name, target_kind = job.spec.kind(), what = %describe(&job.payload), attempt, "alert delivered");
                    return true;
                }
                Err(err) => {
                    tracing::warn!(target_name = %name, target_kind = job.spec.kind(), what = %describe(&job.payload), attempt, attempts, error = %err, "alert delivery failed");
                }
            }
            if attempt < attempts {
                if self.stopped() {
                    break;
                }
                self.sleep(backoff);
                backoff = backoff.saturating_mul(2).min(Duration::from_secs(300));
            }
        }
        false
    }

    fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The timer: the daemon's liveness pings every `interval`, and repeats of open problems.
    fn timer(self: &Arc<Self>) {
        let mut last: BTreeMap<String, Instant> = BTreeMap::new();
        let mut last_tick = Instant::now();
        while !self.stopped() {
            let plan = self.plan();
            let now = Instant::now();
            let mut wait = Duration::from_secs(30);
            for (name, spec) in &plan.targets {
                let TargetSpec::Heartbeat(h) = spec else { continue };
                if h.job.is_none() {
                    let due = last.get(name).is_none_or(|t| now.duration_since(*t) >= h.interval);
                    if due {
                        self.enqueue(name, spec.clone(), Payload::Ping(Ping::Success));
                        last.insert(name.clone(), now);
                        wait = wait.min(h.interval);
                    } else if let Some(t) = last.get(name) {
                        wait = wait.min(h.interval.saturating_sub(now.duration_since(*t)));
                    }
                }
            }
            // While a security alert is open, its acknowledgement (made by another process)
            // is looked for every few seconds, and its repeats are kept on time.
            let tick_every = if self.security_open() {
                ACK_POLL.min(plan.security_repeat).max(Duration::from_millis(100))
            } else {
                Duration::from_secs(60)
            };
            if now.duration_since(last_tick) >= tick_every {
                last_tick = now;
                self.tick();
            }
            wait = wait.min(tick_every);
            self.sleep(wait.max(Duration::from_millis(10)));
        }
    }
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    now.duration_since(since).try_into().unwrap_or_default()
}

/// A repeat of an open problem: a new id, and when it was first raised.
fn repeated(mut e: AlertEvent, first: Timestamp) -> AlertEvent {
    e.id = random_id();
    e.details.insert("first-raised".into(), first.to_string());
    e
}

fn describe(p: &Payload) -> String {
    match p {
        Payload::Event(e) => format!("{}{} {}", e.kind, if e.resolved { " (resolved)" } else { "" }, e.problem),
        Payload::Ping(p) => format!("ping {p:?}"),
    }
}

/// The event `coffer alert test` delivers.
#[must_use]
pub fn test_event(host: &str, target: &str, now: Timestamp) -> AlertEvent {
    AlertEvent {
        version: AlertEvent::VERSION,
        id: random_id(),
        kind: AlertKind::Test,
        severity: Severity::Info,
        problem: format!("test:{target}"),
        resolved: false,
        time: now,
        host: host.to_owned(),
        job: None,
        source: None,
        repository: None,
        summary: format!("coffer alert test for target {target}"),
        details: BTreeMap::new(),
    }
}

/// What [`deliver_test`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestDelivery {
    /// The target.
    pub target: String,
    /// Its kind (`webhook`, `email`, `command`, `heartbeat`).
    pub kind: &'static str,
    /// What was sent: `event` (a test alert) or `ping` (a heartbeat's success ping).
    pub sent: &'static str,
    /// The event's id (none for a ping).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Delivers a test event to the target `target` now, once, in this thread (`coffer alert
/// test`); a heartbeat target gets its success ping.
///
/// # Errors
/// [`DeliveryError`] (never showing a secret or a URL).
pub fn deliver_test(
    config: &AlertsConfig,
    target: &str,
    host: &str,
    now: Timestamp,
) -> Result<TestDelivery, DeliveryError> {
    let plan = Plan::new(config).map_err(|e| DeliveryError::Config(e.to_string()))?;
    let spec = plan.targets.get(target).ok_or_else(|| DeliveryError::UnknownTarget(target.to_owned()))?;
    let (payload, sent, id) = match spec {
        TargetSpec::Heartbeat(_) => (Payload::Ping(Ping::Success), "ping", None),
        _ => {
            let e = test_event(host, target, now);
            let id = e.id.clone();
            (Payload::Event(Box::new(e)), "event", Some(id))
        }
    };
    deliver::deliver_once(target, spec, &payload)?;
    Ok(TestDelivery { target: target.to_owned(), kind: spec.kind(), sent, id })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod security_tests;
