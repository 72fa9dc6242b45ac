//! Observation and cancellation: how a long-running job tells the world what it is doing,
//! and how the world tells it to stop.
//!
//! Every job of the library (backup, restore, verify, prune, each `pg` command) takes a
//! [`JobControl`]. Through its [`Observer`] the job reports typed [`Event`]s: phases, totals
//! as they become known, progress, warnings and what it produced. The CLI renders them as a
//! progress bar on a terminal; the daemon will turn the same events into log lines and
//! metrics. An observer only watches: it cannot change what the job does, and it must be
//! cheap (events come at chunk and file granularity, from several threads).
//!
//! Through its [`Cancel`] token the job is asked to stop. Jobs check it at chunk, pack,
//! file and WAL-segment boundaries and leave with [`RepoError::Cancelled`] (class
//! [`coffer_store::ErrorClass::Cancelled`]). The invariant this module guards: **cancellation is never
//! an acknowledgement.** A cancelled backup commits no snapshot, so nothing half-done is
//! ever reported as a backup; what it already stored is locked, complete data that the
//! next run reuses (an interrupted backup resumes, as restic's does).

use crate::error::{RepoError, Result};
use crate::id::Id;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Amounts of work: items (files, objects, segments) and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Items (files, objects, WAL segments, snapshots).
    pub items: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Progress {
    /// `items` items of `bytes` bytes in all.
    #[must_use]
    pub fn new(items: u64, bytes: u64) -> Self {
        Self { items, bytes }
    }
}

/// What a job reports while it runs.
///
/// `Phase` starts a stage and resets the progress of the previous one; `Total` and
/// `Advance` are about the current phase. `Total` may come several times, growing, while
/// a scan runs beside the work (the total is then known only at the end of the scan,
/// `final_: true`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A stage of the job begins (e.g. `"scan"`, `"backup"`, `"restore"`, `"check"`,
    /// `"prune"`, `"wal"`).
    Phase {
        /// The stage's name, lowercase, stable (log lines and metrics use it).
        name: &'static str,
    },
    /// The work the current phase has to do, as far as known so far.
    Total {
        /// Everything known so far.
        total: Progress,
        /// Whether this is the whole of it (the scan has ended).
        complete: bool,
    },
    /// Work done in the current phase since the last `Advance` (a delta, so that threads
    /// can report without sharing a counter).
    Advance(Progress),
    /// An item the job goes on past (a file that vanished, a damaged blob): the job's
    /// outcome says whether it is complete.
    Warning {
        /// What the warning is about (a path, an object key).
        item: &'a str,
        /// What happened, one line.
        message: &'a str,
    },
    /// A snapshot was committed.
    Snapshot {
        /// Its id.
        id: Id,
    },
    /// Something the job stored or removed that is worth a log line: a WAL segment, a
    /// pruned object.
    Object {
        /// What was done (`"stored"`, `"removed"`, `"fetched"`).
        action: &'static str,
        /// The object's key or name.
        key: &'a str,
        /// Its size in bytes.
        bytes: u64,
    },
}

/// Receives a job's events. Implementations must be cheap and must not block for long.
pub trait Observer: Send + Sync {
    /// Called for each event, from any of the job's threads.
    fn event(&self, event: &Event<'_>);
}

/// The observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ignore;

impl Observer for Ignore {
    fn event(&self, _: &Event<'_>) {}
}

impl<F: Fn(&Event<'_>) + Send + Sync> Observer for F {
    fn event(&self, event: &Event<'_>) {
        self(event);
    }
}

/// A request to stop, shared between the job and whoever may cancel it (a signal handler,
/// the daemon's timeout). Cloning shares the same flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token nobody has cancelled yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every job holding a clone of this token to stop at its next boundary.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether stopping was asked.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(RepoError::Cancelled)` once stopping was asked: call at every boundary.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() { Err(RepoError::Cancelled) } else { Ok(()) }
    }
}

/// What every job takes besides its options: who watches it and how to stop it.
#[derive(Clone)]
pub struct JobControl {
    /// Receives the job's events.
    pub observer: Arc<dyn Observer>,
    /// Asks the job to stop.
    pub cancel: Cancel,
}

impl JobControl {
    /// No observer, never cancelled: for callers that only want the result.
    #[must_use]
    pub fn none() -> Self {
        Self { observer: Arc::new(Ignore), cancel: Cancel::new() }
    }

    /// This observer, and a fresh cancellation token.
    #[must_use]
    pub fn observed(observer: Arc<dyn Observer>) -> Self {
        Self { observer, cancel: Cancel::new() }
    }

    /// Reports an event.
    pub fn emit(&self, event: &Event<'_>) {
        self.observer.event(event);
    }

    /// `Err(RepoError::Cancelled)` once stopping was asked.
    pub fn check(&self) -> Result<()> {
        self.cancel.check()
    }
}

impl Default for JobControl {
    fn default() -> Self {
        Self::none()
    }
}

impl std::fmt::Debug for JobControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobControl").field("cancelled", &self.cancel.is_cancelled()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_cancelled_token_stops_every_clone() {
        let a = Cancel::new();
        let b = a.clone();
        assert!(b.check().is_ok());
        a.cancel();
        let err = b.check().unwrap_err();
        assert!(matches!(err, RepoError::Cancelled));
        assert_eq!(err.class(), coffer_store::ErrorClass::Cancelled);
    }

    #[test]
    fn a_closure_observes_events() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let ctl = JobControl::observed(Arc::new(move |e: &Event<'_>| {
            if let Event::Advance(p) = e {
                sink.lock().unwrap().push(p.bytes);
            }
        }));
        ctl.emit(&Event::Phase { name: "backup" });
        ctl.emit(&Event::Advance(Progress::new(1, 10)));
        ctl.emit(&Event::Advance(Progress::new(1, 5)));
        assert_eq!(*seen.lock().unwrap(), vec![10, 5]);
    }
}
