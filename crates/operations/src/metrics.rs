//! Prometheus metrics: per job last success, status, duration, bytes and overdue; per
//! repository and PostgreSQL source the numbers `status` shows; alert deliveries. Served on
//! the configured listener in the Prometheus text exposition format 0.0.4
//! (`docs/monitoring.md` lists every metric and what it means).
//!
//! The `prometheus` crate writes the exposition: it produces the classic text format that
//! every Prometheus scrapes and that `promtool check metrics` lints (the official
//! `prometheus-client` crate writes only OpenMetrics text, whose `info` type promtool 2.x
//! refuses).
//!
//! How the daemon feeds it: [`Metrics::daemon_started`] and [`Metrics::add_target`] (each
//! alert target) at start; [`Metrics::seed_last_run`] with each job's last run from the local
//! history, so a restart does not blank the "last" gauges; [`Metrics::set_job`] for every job
//! at start and after each run or slot; [`Metrics::observe_run`] for every record (missed
//! slots included); [`Metrics::retain_jobs`] after a reload; the repository, PostgreSQL and
//! verify setters when the jobs that learn those numbers end; [`Metrics::delivery`] from the
//! alerter's delivery hook; [`Metrics::security_event`] from the daemon's security sink and
//! [`Metrics::set_security_unacknowledged`] from it and the housekeeping (acknowledgements
//! are made by another process).
//!
//! Invariant guarded here: no label carries a secret or grows without bound. Labels are the
//! names the policy file gives (job, kind, source, repository, alert target) and fixed sets
//! (outcome, security kind); no snapshot id, run id, error text or URL ever becomes a label. Jobs that leave
//! the policy file on reload leave the exposition too ([`Metrics::retain_jobs`]).

use crate::event::{JobKind, Outcome, RunRecord};
use crate::jobs::JobSpec;
use jiff::Timestamp;
use prometheus::core::Collector;
use prometheus::{Encoder as _, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

/// The labels of every per-job series, in this order. The job's name is `coffer_job`, not
/// `job`: Prometheus gives every scraped series the target's `job` label and would rename
/// ours `exported_job`.
const JOB_LABELS: [&str; 4] = ["coffer_job", "kind", "source", "repository"];

/// Every outcome, for the `outcome` label of `coffer_job_runs_total` (all are created at 0 so
/// that `increase()` sees the first failure).
const OUTCOMES: [Outcome; 6] =
    [Outcome::Success, Outcome::Warning, Outcome::Failed, Outcome::TimedOut, Outcome::Cancelled, Outcome::Missed];

/// The `outcome` label values of `coffer_alert_deliveries_total`.
const DELIVERY_OUTCOMES: [&str; 2] = ["delivered", "failed"];

/// The Content-Type of the exposition (`GET /metrics`).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A job's label values: job, kind, source ("" for repository jobs), repository.
type JobKey = [String; 4];

/// The daemon's metrics. Shared (`Arc`); every method is cheap.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    last_success: GaugeVec,
    last_run: GaugeVec,
    last_status: IntGaugeVec,
    last_duration: GaugeVec,
    last_bytes_added: GaugeVec,
    runs_total: IntCounterVec,
    expected_interval: GaugeVec,
    next_run: GaugeVec,
    overdue: IntGaugeVec,
    repository_size: GaugeVec,
    repository_locked: GaugeVec,
    archive_lag: GaugeVec,
    recovery_end: GaugeVec,
    verify_problems: GaugeVec,
    deliveries: IntCounterVec,
    security_events: IntCounterVec,
    security_unacknowledged: prometheus::IntGauge,
    start_time: prometheus::Gauge,
    drill_last_success: GaugeVec,
    drill_rto: GaugeVec,
    drill_rto_target: GaugeVec,
    drill_data_age: GaugeVec,
    drill_passed: IntGaugeVec,
    /// The label sets of the jobs seen, by job id: what [`Metrics::retain_jobs`] removes.
    jobs: Mutex<BTreeMap<String, JobKey>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds since the epoch, as Prometheus timestamps are.
fn seconds(t: Timestamp) -> f64 {
    // Milliseconds are exact in an f64 for the next 280 000 years.
    #[allow(clippy::cast_precision_loss, reason = "milliseconds since 1970 fit an f64's 53 bits")]
    let ms = t.as_millisecond() as f64;
    ms / 1000.0
}

#[allow(
    clippy::cast_precision_loss,
    reason = "byte counts far below 2^53 are exact; above, a gauge is approximate anyway"
)]
fn float(n: u64) -> f64 {
    n as f64
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let v = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name and labels");
    register(registry, &v);
    v
}

fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name and labels");
    register(registry, &v);
    v
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name and labels");
    register(registry, &v);
    v
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: &C) {
    // Only fails on a duplicate name, which the constant names below rule out.
    registry.register(Box::new(c.clone())).expect("metric names are unique");
}

impl Metrics {
    /// An empty registry (with the build info; the daemon sets its start time with
    /// [`Metrics::daemon_started`]).
    #[must_use]
    pub fn new() -> Self {
        let r = Registry::new();
        let job_outcome = [JOB_LABELS[0], JOB_LABELS[1], JOB_LABELS[2], JOB_LABELS[3], "outcome"];
        let build = prometheus::IntGauge::with_opts(
            Opts::new("coffer_build_info", "The running coffer's version (always 1).")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("a valid metric");
        build.set(1);
        register(&r, &build);
        let start_time = prometheus::Gauge::new(
            "coffer_daemon_start_time_seconds",
            "When the daemon started, in seconds since the epoch.",
        )
        .expect("a valid metric");
        register(&r, &start_time);
        let security_unacknowledged = prometheus::IntGauge::new(
            "coffer_security_unacknowledged",
            "Security events not acknowledged yet (coffer alert ack ID).",
        )
        .expect("a valid metric");
        register(&r, &security_unacknowledged);
        Self {
            last_success: gauge_vec(
                &r,
                "coffer_job_last_success_timestamp_seconds",
                "When the job's last successful run (success or warning) ended.",
                &JOB_LABELS,
            ),
            last_run: gauge_vec(
                &r,
                "coffer_job_last_run_timestamp_seconds",
                "When the job's last run ended, whatever its outcome.",
                &JOB_LABELS,
            ),
            last_status: int_gauge_vec(
                &r,
                "coffer_job_last_status",
                "1 if the job's last run succeeded (success or warning), 0 if it failed or timed out.",
                &JOB_LABELS,
            ),
            last_duration: gauge_vec(
                &r,
                "coffer_job_last_duration_seconds",
                "How long the job's last run took.",
                &JOB_LABELS,
            ),
            last_bytes_added: gauge_vec(
                &r,
                "coffer_job_last_bytes_added",
                "Bytes the job's last successful run added to the repository.",
                &JOB_LABELS,
            ),
            runs_total: counter_vec(
                &r,
                "coffer_job_runs_total",
                "Runs of the job since the daemon started, by outcome (missed slots included).",
                &job_outcome,
            ),
            expected_interval: gauge_vec(
                &r,
                "coffer_job_expected_interval_seconds",
                "The typical time between two scheduled runs of the job.",
                &JOB_LABELS,
            ),
            next_run: gauge_vec(&r, "coffer_job_next_run_timestamp_seconds", "When the job is next due.", &JOB_LABELS),
            overdue: int_gauge_vec(
                &r,
                "coffer_job_overdue",
                "1 if the job has not run successfully within its schedule (as `coffer status` says), else 0.",
                &JOB_LABELS,
            ),
            repository_size: gauge_vec(
                &r,
                "coffer_repository_size_bytes",
                "Bytes the repository stores.",
                &["repository"],
            ),
            repository_locked: gauge_vec(
                &r,
                "coffer_repository_locked_bytes",
                "Bytes of the repository under an Object Lock retention.",
                &["repository"],
            ),
            archive_lag: gauge_vec(
                &r,
                "coffer_postgres_archive_lag_seconds",
                "How far the repository's WAL is behind the PostgreSQL server.",
                &["source"],
            ),
            recovery_end: gauge_vec(
                &r,
                "coffer_postgres_recovery_window_end_timestamp_seconds",
                "The latest instant the source can be restored to from the repository.",
                &["source"],
            ),
            verify_problems: gauge_vec(
                &r,
                "coffer_verify_problems",
                "Problems the repository's last verification found.",
                &["repository"],
            ),
            deliveries: counter_vec(
                &r,
                "coffer_alert_deliveries_total",
                "Alert deliveries to the target, by outcome (delivered, failed).",
                &["target", "outcome"],
            ),
            security_events: counter_vec(
                &r,
                "coffer_security_events_total",
                "Security events recorded by the daemon, by kind (docs/security.md).",
                &["kind"],
            ),
            security_unacknowledged,
            start_time,
            drill_last_success: gauge_vec(
                &r,
                "coffer_drill_last_success_timestamp_seconds",
                "When the drill job's last passing drill ended.",
                &JOB_LABELS,
            ),
            drill_rto: gauge_vec(
                &r,
                "coffer_drill_rto_seconds",
                "The recovery time the drill job's last drill measured (start to everything back).",
                &JOB_LABELS,
            ),
            drill_rto_target: gauge_vec(
                &r,
                "coffer_drill_rto_target_seconds",
                "The recovery time target of the drill job's last drill.",
                &JOB_LABELS,
            ),
            drill_data_age: gauge_vec(
                &r,
                "coffer_drill_data_age_seconds",
                "How old the data the drill job's last drill restored was, at the drill's start.",
                &JOB_LABELS,
            ),
            drill_passed: int_gauge_vec(
                &r,
                "coffer_drill_passed",
                "1 if the drill job's last drill passed, 0 if it did not pass or could not run.",
                &JOB_LABELS,
            ),
            registry: r,
            jobs: Mutex::new(BTreeMap::new()),
        }
    }

    /// The label values of `spec`, remembered for [`Metrics::retain_jobs`].
    fn key(&self, job: &str, kind: &str, source: Option<&str>, repository: &str) -> JobKey {
        let key = [job.to_owned(), kind.to_owned(), source.unwrap_or("").to_owned(), repository.to_owned()];
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if jobs.get(job) != Some(&key) {
            if let Some(old) = jobs.insert(job.to_owned(), key.clone()) {
                // The job moved (another repository): its old series go.
                self.remove_job(&old);
            }
            // Every outcome at 0, so a rule's increase() sees the first failure.
            for outcome in OUTCOMES {
                self.runs_total.with_label_values(&with_outcome(&key, outcome.as_str())).inc_by(0);
            }
        }
        key
    }

    fn remove_job(&self, key: &JobKey) {
        let labels = [key[0].as_str(), key[1].as_str(), key[2].as_str(), key[3].as_str()];
        for v in [
            &self.last_success,
            &self.last_run,
            &self.last_duration,
            &self.last_bytes_added,
            &self.expected_interval,
            &self.next_run,
            &self.drill_last_success,
            &self.drill_rto,
            &self.drill_rto_target,
            &self.drill_data_age,
        ] {
            let _ = v.remove_label_values(&labels);
        }
        let _ = self.last_status.remove_label_values(&labels);
        let _ = self.drill_passed.remove_label_values(&labels);
        let _ = self.overdue.remove_label_values(&labels);
        for outcome in OUTCOMES {
            let _ = self.runs_total.remove_label_values(&with_outcome(key, outcome.as_str()));
        }
    }

    /// The daemon started at `at`.
    pub fn daemon_started(&self, at: Timestamp) {
        self.start_time.set(seconds(at));
    }

    /// A run ended (any outcome, missed slots included).
    ///
    /// Every run counts in `coffer_job_runs_total`. A run that did its work or failed at it
    /// (success, warning, failed, timed-out) also sets the job's last run, status and
    /// duration; a missed slot or a run the daemon's shutdown cancelled does not (the job
    /// did not fail: `coffer_job_overdue` tells whether it is late).
    pub fn observe_run(&self, record: &RunRecord) {
        let key = self.key(&record.job, record.kind.as_str(), record.source.as_deref(), &record.repository);
        self.runs_total.with_label_values(&with_outcome(&key, record.outcome.as_str())).inc();
        self.set_last(record, &key);
    }

    /// Sets the job's "last run" gauges from `record` without counting a run: for the daemon
    /// to show, after a restart, the last run the ledger holds.
    pub fn seed_last_run(&self, record: &RunRecord) {
        let key = self.key(&record.job, record.kind.as_str(), record.source.as_deref(), &record.repository);
        self.set_last(record, &key);
    }

    fn set_last(&self, r: &RunRecord, key: &JobKey) {
        if matches!(r.outcome, Outcome::Missed | Outcome::Cancelled) {
            return;
        }
        let labels = [key[0].as_str(), key[1].as_str(), key[2].as_str(), key[3].as_str()];
        let ok = r.outcome.is_success();
        self.last_run.with_label_values(&labels).set(seconds(r.finished));
        self.last_status.with_label_values(&labels).set(i64::from(ok));
        self.last_duration.with_label_values(&labels).set(r.duration().as_secs_f64());
        if ok {
            self.last_success.with_label_values(&labels).set(seconds(r.finished));
            self.last_bytes_added.with_label_values(&labels).set(float(r.bytes_added.unwrap_or(0)));
        }
        if matches!(r.kind, JobKind::Drill | JobKind::Rebuild) {
            self.set_drill(r, &labels, ok);
        }
    }

    /// A drill job's gauges, from its record's details (`crate::jobs::drill_details`). A
    /// drill that could not run (no report) sets `passed` to 0 and keeps the last measured
    /// numbers; one that ran sets those it measured and removes those it did not (a target
    /// taken out of the policy file leaves the exposition).
    fn set_drill(&self, r: &RunRecord, labels: &[&str; 4], ok: bool) {
        self.drill_passed.with_label_values(labels).set(i64::from(ok));
        if ok {
            self.drill_last_success.with_label_values(labels).set(seconds(r.finished));
        }
        if !r.details.contains_key("drill_report") {
            return;
        }
        for (gauge, key) in [
            (&self.drill_rto, "rto_seconds"),
            (&self.drill_rto_target, "rto_target_seconds"),
            (&self.drill_data_age, "data_age_seconds"),
        ] {
            // Details are strings a job wrote; one that does not parse is unknown.
            match r.details.get(key).and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| v.is_finite()) {
                Some(v) => gauge.with_label_values(labels).set(v),
                None => {
                    let _ = gauge.remove_label_values(labels);
                }
            }
        }
    }

    /// A job's schedule facts: expected interval, next run, whether it is overdue now.
    pub fn set_job(&self, spec: &JobSpec, next: Option<Timestamp>, overdue: bool) {
        let key = self.key(&spec.id, spec.kind.as_str(), spec.source.as_deref(), &spec.repository);
        let labels = [key[0].as_str(), key[1].as_str(), key[2].as_str(), key[3].as_str()];
        match &spec.schedule {
            Some(s) => self.expected_interval.with_label_values(&labels).set(s.interval().as_secs_f64()),
            None => {
                let _ = self.expected_interval.remove_label_values(&labels);
            }
        }
        match next {
            Some(t) => self.next_run.with_label_values(&labels).set(seconds(t)),
            None => {
                let _ = self.next_run.remove_label_values(&labels);
            }
        }
        self.overdue.with_label_values(&labels).set(i64::from(overdue));
    }

    /// Keeps the series of the jobs in `specs` and drops those of every other job (after a
    /// reload removed or renamed some).
    pub fn retain_jobs(&self, specs: &[JobSpec]) {
        let keep: BTreeSet<&str> = specs.iter().map(|s| s.id.as_str()).collect();
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<String> = jobs.keys().filter(|j| !keep.contains(j.as_str())).cloned().collect();
        for job in gone {
            if let Some(key) = jobs.remove(&job) {
                self.remove_job(&key);
            }
        }
    }

    /// A repository's size and the bytes under lock.
    pub fn set_repository(&self, repository: &str, size_bytes: u64, locked_bytes: u64) {
        self.repository_size.with_label_values(&[repository]).set(float(size_bytes));
        self.repository_locked.with_label_values(&[repository]).set(float(locked_bytes));
    }

    /// A PostgreSQL source's archive lag and the end of its recovery window. `None` removes
    /// the series (unknown: server unreachable, no base backup yet), so a rule never reads a
    /// stale value.
    pub fn set_postgres(&self, source: &str, archive_lag_seconds: Option<f64>, recovery_end: Option<Timestamp>) {
        let labels = [source];
        match archive_lag_seconds {
            Some(lag) => self.archive_lag.with_label_values(&labels).set(lag),
            None => {
                let _ = self.archive_lag.remove_label_values(&labels);
            }
        }
        match recovery_end {
            Some(t) => self.recovery_end.with_label_values(&labels).set(seconds(t)),
            None => {
                let _ = self.recovery_end.remove_label_values(&labels);
            }
        }
    }

    /// Problems the last verify of `repository` found.
    pub fn set_verify_problems(&self, repository: &str, problems: u64) {
        self.verify_problems.with_label_values(&[repository]).set(float(problems));
    }

    /// Creates the delivery counters of `target` at 0 (so the first failure shows in a
    /// rule's `increase()`); the daemon calls it for every configured target.
    pub fn add_target(&self, target: &str) {
        for outcome in DELIVERY_OUTCOMES {
            self.deliveries.with_label_values(&[target, outcome]).inc_by(0);
        }
    }

    /// An alert delivery attempt to `target`.
    pub fn delivery(&self, target: &str, delivered: bool) {
        self.add_target(target);
        let outcome = if delivered { DELIVERY_OUTCOMES[0] } else { DELIVERY_OUTCOMES[1] };
        self.deliveries.with_label_values(&[target, outcome]).inc();
    }

    /// A security event of `kind` was recorded.
    pub fn security_event(&self, kind: &str) {
        self.security_events.with_label_values(&[kind]).inc();
    }

    /// How many security events are not acknowledged (from the state).
    pub fn set_security_unacknowledged(&self, n: u64) {
        self.security_unacknowledged.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The exposition text (Prometheus text format 0.0.4, [`CONTENT_TYPE`]).
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on invalid families, which registration rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn with_outcome<'a>(key: &'a JobKey, outcome: &'a str) -> [&'a str; 5] {
    [key[0].as_str(), key[1].as_str(), key[2].as_str(), key[3].as_str(), outcome]
}

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address cannot be bound.
    #[error("metrics listener {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl MetricsError {
    /// The class of this error: local I/O.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        coffer_store::ErrorClass::Io
    }
}

/// The running `/metrics` listener: one thread answering one request at a time (a scrape
/// every few seconds needs no more).
pub struct MetricsServer {
    addr: std::net::SocketAddr,
    /// Dropping the last handle closes the socket (tiny_http's accept thread ends).
    server: Option<Arc<tiny_http::Server>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (the real port when 0 was asked for).
    #[must_use]
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops listening: waits for the listener's thread to end; the socket closes within
    /// moments (tiny_http's accept thread lets it go).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.unblock();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            // The thread's handle went with it: this is the last, and dropping it closes the
            // listening socket.
            drop(server);
        }
    }
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `metrics` on `addr` (`GET /metrics`) from a thread of its own. Any other path is
/// 404, any other method on `/metrics` 405.
///
/// # Errors
/// [`MetricsError::Bind`].
pub fn serve(addr: std::net::SocketAddr, metrics: std::sync::Arc<Metrics>) -> Result<MetricsServer, MetricsError> {
    let bind = |source| MetricsError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    let real = listener.local_addr().map_err(bind)?;
    let server =
        tiny_http::Server::from_listener(listener, None).map_err(|e| bind(std::io::Error::other(e.to_string())))?;
    let server = Arc::new(server);
    let s = Arc::clone(&server);
    let thread = std::thread::Builder::new()
        .name("coffer-metrics".into())
        .spawn(move || {
            for request in s.incoming_requests() {
                answer(request, &metrics);
            }
        })
        .map_err(bind)?;
    Ok(MetricsServer { addr: real, server: Some(server), thread: Some(thread) })
}

fn answer(request: tiny_http::Request, metrics: &Metrics) {
    let path = request.url().split('?').next().unwrap_or("");
    let response = if path != "/metrics" {
        tiny_http::Response::from_string("not found: the metrics are at /metrics\n").with_status_code(404)
    } else if !matches!(request.method(), tiny_http::Method::Get | tiny_http::Method::Head) {
        tiny_http::Response::from_string("method not allowed\n").with_status_code(405)
    } else {
        let header =
            tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes()).expect("a valid header");
        tiny_http::Response::from_string(metrics.render()).with_header(header)
    };
    // The scraper hung up: nothing to do, it will scrape again.
    let _ = request.respond(response);
}

#[cfg(test)]
mod tests;
