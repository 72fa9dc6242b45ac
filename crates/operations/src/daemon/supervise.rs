//! Continuous jobs (PostgreSQL WAL streaming, the security watch): kept running by a supervisor thread that
//! restarts the job when it ends, with backoff, and alerts when it stays down.
//!
//! Invariants guarded here: a continuous job is restarted until the daemon stops, never in
//! a tight loop (1 s doubling to 5 min, back to 1 s once it ran healthy for a while); while
//! it is down past the threshold a problem is raised (`archive-lagging` "streaming is
//! down"; `job-failed` "the security watch is down"), and resolved once it is back. Every end of a run is recorded like any run.

use super::runner::{RunFn, Shared, stream_problem};
use crate::event::{AlertKind, JobKind, Outcome, Severity};
use crate::jobs::{JobContext, JobSpec};
use coffer_repository::{Cancel, JobControl};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first restart delay.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A run that lasted this long was healthy: the next restart starts from the first delay,
/// and a raised "down" problem is resolved.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// The problem a security watch that stays down raises (resolved once it is back).
#[must_use]
pub fn watch_problem(repository: &str) -> String {
    format!("watch:{repository}")
}

/// The delay before the next restart: doubled, capped, reset after a healthy run.
#[must_use]
pub fn next_backoff(current: Duration, ran: Duration) -> Duration {
    if ran >= HEALTHY_AFTER { BACKOFF_FIRST } else { (current * 2).min(BACKOFF_MAX) }
}

/// A running supervisor.
pub struct Supervisor {
    /// The job as it runs.
    pub spec: JobSpec,
    stop: Cancel,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("job", &self.spec.id).finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts supervising `spec`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(
        shared: Arc<Shared>,
        run: RunFn,
        ctx: JobContext,
        spec: JobSpec,
        down_alert: Duration,
    ) -> std::io::Result<Self> {
        let stop = Cancel::new();
        let s = Sup { shared, run, ctx, spec: spec.clone(), stop: stop.clone(), down_alert };
        let thread = std::thread::Builder::new().name(format!("coffer-{}", spec.id)).spawn(move || s.run())?;
        Ok(Self { spec, stop, thread })
    }

    /// Asks it to stop (the running job is cancelled).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits until `deadline` for it to end; `false` if it did not.
    pub fn join(self, deadline: Instant) -> bool {
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
            true
        } else {
            false
        }
    }
}

struct Sup {
    shared: Arc<Shared>,
    run: RunFn,
    ctx: JobContext,
    spec: JobSpec,
    stop: Cancel,
    down_alert: Duration,
}

struct Down {
    since: Option<Instant>,
    alerted: bool,
}

impl Sup {
    fn run(self) {
        let mut backoff = BACKOFF_FIRST;
        let mut down = Down { since: None, alerted: false };
        while !self.stop.is_cancelled() {
            let ctl = JobControl { cancel: self.stop.clone(), ..JobControl::none() };
            let (tx, rx) = crossbeam_channel::bounded(1);
            let (run, ctx, spec, thread_ctl) = (self.run.clone(), self.ctx.clone(), self.spec.clone(), ctl.clone());
            let started_at = self.shared.clock.now();
            let started = Instant::now();
            tracing::info!(job = %self.spec.id, "continuous job {} started", self.spec.id);
            let spawned = std::thread::Builder::new().name(format!("coffer-run-{}", self.spec.id)).spawn(move || {
                let _ = tx.send(run(&ctx, &spec, &thread_ctl));
            });
            let rec = match spawned {
                Ok(_) => loop {
                    match rx.recv_timeout(Duration::from_millis(500)) {
                        Ok(r) => break Some(r),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            if started.elapsed() >= HEALTHY_AFTER {
                                self.healthy(&mut down);
                            } else {
                                self.check_down(&mut down);
                            }
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break None,
                    }
                },
                Err(e) => {
                    tracing::error!(job = %self.spec.id, error = %e, "cannot start a thread for the job");
                    None
                }
            };
            let ran = started.elapsed();
            if let Some(mut rec) = rec {
                rec.started = started_at;
                if self.stop.is_cancelled() && !rec.outcome.is_success() {
                    rec.outcome = Outcome::Cancelled;
                    rec.error_class = Some("cancelled".into());
                    rec.error = Some("stopped by the daemon's shutdown".into());
                }
                self.shared.finish(&self.spec, &rec);
            }
            if self.stop.is_cancelled() {
                break;
            }
            if ran >= HEALTHY_AFTER {
                self.healthy(&mut down);
            }
            let wait = if ran >= HEALTHY_AFTER { BACKOFF_FIRST } else { backoff };
            backoff = next_backoff(wait, ran.min(HEALTHY_AFTER / 2));
            down.since.get_or_insert_with(|| started + ran);
            tracing::warn!(job = %self.spec.id, restart_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "continuous job {} ended; restarting", self.spec.id);
            let until = Instant::now() + wait;
            while !self.stop.is_cancelled() && Instant::now() < until {
                self.check_down(&mut down);
                std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
            }
        }
    }

    fn check_down(&self, down: &mut Down) {
        let Some(since) = down.since else { return };
        if down.alerted || since.elapsed() < self.down_alert {
            return;
        }
        down.alerted = true;
        let mut details = BTreeMap::new();
        details.insert("down_seconds".into(), since.elapsed().as_secs().to_string());
        let (kind, what) = self.what();
        self.shared.alerter.raise(self.shared.event(
            kind,
            Severity::Error,
            self.problem(),
            Some(&self.spec),
            format!("{what} is down (restarting with backoff)"),
            details,
        ));
    }

    /// The alert kind and the words of this job's "down" problem: WAL streaming lags the
    /// archive; a security watch that stays down is a failed job (nothing watches the store).
    fn what(&self) -> (AlertKind, String) {
        match self.spec.kind {
            JobKind::Watch => {
                (AlertKind::JobFailed, format!("the security watch of repository {}", self.spec.repository))
            }
            _ => (AlertKind::ArchiveLagging, format!("WAL streaming of {}", self.spec.owner())),
        }
    }

    fn problem(&self) -> String {
        match self.spec.kind {
            JobKind::Watch => watch_problem(&self.spec.repository),
            _ => stream_problem(self.spec.owner()),
        }
    }

    fn healthy(&self, down: &mut Down) {
        if down.alerted {
            self.shared.alerter.resolve(&self.problem(), &format!("{} is back", self.what().1));
        }
        *down = Down { since: None, alerted: false };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_doubling_to_a_cap_and_reset_after_a_healthy_run() {
        let mut b = BACKOFF_FIRST;
        let mut seen = vec![];
        for _ in 0..12 {
            b = next_backoff(b, Duration::from_millis(10));
            seen.push(b.as_secs());
        }
        assert_eq!(&seen[..5], &[2, 4, 8, 16, 32]);
        assert_eq!(*seen.last().unwrap(), 300);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(next_backoff(BACKOFF_MAX, HEALTHY_AFTER), BACKOFF_FIRST);
    }
}
