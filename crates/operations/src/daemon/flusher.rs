//! The ledger flushers: one thread per repository that appends the outbox's records to the
//! repository's ledger ([`crate::ledger::flush_outbox`]), after each run and periodically
//! while the repository is unreachable.
//!
//! Invariant guarded here: writing the ledger never blocks or fails a job. A job only
//! nudges its repository's flusher (a non-blocking send); the record is already safe in the
//! local outbox, and stays there until the repository holds it.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::State;
use coffer_repository::Repository;
use coffer_store::{Clock, Role};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an unreachable repository waits before the next attempt (first, then doubling).
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// How long a flusher with an empty outbox waits before looking again (nudges come first).
const FLUSH_IDLE: Duration = Duration::from_secs(600);

/// The policy in force, shared with the flushers so a reload's new credentials are used.
pub type SharedConfig = Arc<Mutex<Arc<Config>>>;

struct Flusher {
    nudge: Sender<()>,
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// Every repository's flusher.
pub struct Flushers {
    state: Arc<State>,
    metrics: Arc<Metrics>,
    config: SharedConfig,
    clock: Clock,
    by_repo: Mutex<BTreeMap<String, Flusher>>,
}

impl std::fmt::Debug for Flushers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flushers").finish_non_exhaustive()
    }
}

impl Flushers {
    /// No flusher yet; one starts at the first nudge for a repository.
    pub fn new(state: Arc<State>, metrics: Arc<Metrics>, config: SharedConfig, clock: Clock) -> Self {
        Self { state, metrics, config, clock, by_repo: Mutex::new(BTreeMap::new()) }
    }

    /// A record for `repository` waits in the outbox: flush soon. Never blocks.
    pub fn nudge(&self, repository: &str) {
        let mut map = self.by_repo.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !map.contains_key(repository) {
            match self.spawn(repository) {
                Ok(f) => {
                    map.insert(repository.to_owned(), f);
                }
                Err(e) => {
                    tracing::error!(repository, error = %e, "cannot start the ledger flusher");
                    return;
                }
            }
        }
        if let Some(f) = map.get(repository) {
            // Full: a flush is already asked for, which will take this record too.
            let _ = f.nudge.try_send(());
        }
    }

    fn spawn(&self, repository: &str) -> std::io::Result<Flusher> {
        let (nudge, nudged) = bounded(1);
        let (stop, stopped) = bounded(1);
        let ctx = Ctx {
            state: self.state.clone(),
            metrics: self.metrics.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            name: repository.to_owned(),
            repo: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("coffer-ledger-{repository}"))
            .spawn(move || ctx.run(&nudged, &stopped))?;
        Ok(Flusher { nudge, stop, thread })
    }

    /// Stops every flusher after a last flush, waiting at most `grace` in all.
    pub fn shutdown(&self, grace: Duration) {
        let map = std::mem::take(&mut *self.by_repo.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let deadline = Instant::now() + grace;
        for f in map.values() {
            let _ = f.stop.try_send(());
        }
        for (name, f) in map {
            while !f.thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if f.thread.is_finished() {
                let _ = f.thread.join();
            } else {
                tracing::warn!(repository = %name, "ledger flush still running at shutdown; its records stay in the outbox");
            }
        }
    }
}

struct Ctx {
    state: Arc<State>,
    metrics: Arc<Metrics>,
    config: SharedConfig,
    clock: Clock,
    name: String,
    /// The repository, opened once and kept while it works.
    repo: Option<Repository>,
}

impl Ctx {
    fn run(mut self, nudged: &Receiver<()>, stopped: &Receiver<()>) {
        let mut retry = RETRY_FIRST;
        let mut wait = Duration::ZERO;
        loop {
            select! {
                recv(nudged) -> _ => {}
                recv(stopped) -> _ => {
                    self.flush();
                    return;
                }
                default(wait) => {}
            }
            if self.flush() {
                retry = RETRY_FIRST;
                wait = FLUSH_IDLE;
            } else {
                wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }

    /// The repository's size and the bytes still under lock, for the metrics: read from its
    /// index, which the flusher has open anyway after a run.
    fn sizes(&self, repo: &Repository) {
        match repo.load_index() {
            Ok(index) => {
                let now = self.clock.now();
                let packs = index.packs();
                let size: u64 = packs.iter().map(|p| p.size).sum();
                let locked: u64 = packs.iter().filter(|p| p.retain_until > now).map(|p| p.size).sum();
                self.metrics.set_repository(&self.name, size, locked);
            }
            Err(e) => {
                tracing::debug!(repository = %self.name, error = %e, "cannot read the index for the size metrics")
            }
        }
    }

    /// One flush; `false` when records are left because the repository failed.
    fn flush(&mut self) -> bool {
        match self.state.outbox_entries(&self.name, 1) {
            Ok(o) if o.is_empty() => return true,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(repository = %self.name, error = %e, "cannot read the ledger outbox");
                return false;
            }
        }
        if self.repo.is_none() {
            let config = self.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            match crate::open::open_repository(&config, &self.name, Role::Writer, self.clock.clone()) {
                Ok(r) => self.repo = Some(r),
                Err(e) => {
                    tracing::warn!(repository = %self.name, error = %e, error_class = ?e.class(),
                        "ledger: repository unreachable; records stay in the outbox and are retried");
                    return false;
                }
            }
        }
        let Some(repo) = &self.repo else { return false };
        match crate::ledger::flush_outbox(&self.state, &self.name, repo) {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(repository = %self.name, records = n, "ledger records stored");
                    self.sizes(repo);
                }
                true
            }
            Err(e) => {
                tracing::warn!(repository = %self.name, error = %e,
                    "ledger: cannot append; records stay in the outbox and are retried");
                // Reopen next time: the failure may have been the connection or the key.
                self.repo = None;
                false
            }
        }
    }
}
