//! Writing and syncing: writer threads that fill members' files at their offsets, sync
//! threads that fsync finished files (and write large ones back on the way), and the
//! first-error latch every thread checks.
//!
//! Invariants guarded here: **durable** — a file is reported done only once fsynced, each
//! directory after its entries; **bounded** — at most [`QUEUE`] writes and [`QUEUE`] syncs are
//! queued; the first error (not a follow-on) is the one returned.

use super::*;

/// The first error of any thread; once set, everyone stops.
#[derive(Default)]
pub(super) struct Failure {
    pub(super) stop: AtomicBool,
    pub(super) first: Mutex<Option<TarError>>,
}

impl Failure {
    pub(super) fn set(&self, e: TarError) {
        let mut first = self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // `Stopped` is a consequence, never the cause.
        if first.is_none() && !matches!(e, TarError::Stopped) {
            *first = Some(e);
        }
        self.stop.store(true, Ordering::Release);
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(super) fn take(&self) -> Option<TarError> {
        let first = self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match first {
            Some(e) => Some(e),
            None if self.stopped() => Some(TarError::Stopped),
            None => None,
        }
    }
}

/// A regular file being written.
pub(super) struct Out {
    pub(super) file: std::fs::File,
    pub(super) path: PathBuf,
    pub(super) size: u64,
    /// Bytes not yet written; whoever writes the last ones finishes the file.
    pub(super) left: AtomicU64,
    pub(super) mtime: i64,
}

impl Out {
    pub(super) fn set_mtime(&self) -> Result<()> {
        rustix::fs::futimens(&self.file, &times(self.mtime)).map_err(|e| TarError::Io {
            context: format!("cannot set times of {}", self.path.display()),
            source: e.into(),
        })
    }
}

/// `mtime` as modification time; the access time is left as it is.
pub(super) fn times(mtime: i64) -> rustix::fs::Timestamps {
    use rustix::fs::{Timespec, Timestamps, UTIME_OMIT};
    Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: mtime, tv_nsec: 0 },
    }
}

/// `data[range]` goes to `out` at `offset`.
pub(super) struct Job {
    pub(super) out: Arc<Out>,
    pub(super) offset: u64,
    pub(super) data: Arc<Vec<u8>>,
    pub(super) range: std::ops::Range<usize>,
}

pub(super) enum SyncReq {
    /// The file is complete: fsync it (data and metadata).
    Done(Arc<Out>),
    /// Part of the file is written: start its write-back now (`fdatasync`).
    Partial(Arc<Out>),
}

pub(super) fn writer(rx: &crossbeam_channel::Receiver<Job>, sync: &crossbeam_channel::Sender<SyncReq>, fail: &Failure) {
    for job in rx {
        if fail.stopped() {
            continue; // drain, so the parser never blocks on a full queue
        }
        let data = &job.data[job.range.clone()];
        if let Err(e) = job.out.file.write_all_at(data, job.offset) {
            fail.set(TarError::Io { context: format!("cannot write {}", job.out.path.display()), source: e });
            continue;
        }
        let n = data.len() as u64;
        let left = job.out.left.fetch_sub(n, Ordering::AcqRel) - n;
        let req = if left == 0 {
            if let Err(e) = job.out.set_mtime() {
                fail.set(e);
                continue;
            }
            SyncReq::Done(job.out)
        } else {
            let written = job.out.size - left;
            if written / WRITEBACK_STEP == (written - n) / WRITEBACK_STEP {
                continue;
            }
            SyncReq::Partial(job.out)
        };
        if sync.send(req).is_err() {
            return;
        }
    }
}

pub(super) fn syncer(rx: &crossbeam_channel::Receiver<SyncReq>, fail: &Failure) {
    for req in rx {
        if fail.stopped() {
            continue;
        }
        let res = match &req {
            SyncReq::Done(out) => out.file.sync_all(),
            SyncReq::Partial(out) => out.file.sync_data(),
        };
        if let Err(e) = res {
            let (SyncReq::Done(out) | SyncReq::Partial(out)) = &req;
            fail.set(TarError::Io { context: format!("cannot sync {}", out.path.display()), source: e });
        }
    }
}

/// Sets the directories' modification times (now that their entries exist) and fsyncs
/// them, deepest first, then `dir` itself.
pub(super) fn finish_dirs(dir: &Path, dirs: &[(PathBuf, Option<i64>)]) -> Result<()> {
    for (p, mtime) in dirs {
        if let Some(m) = mtime {
            rustix::fs::utimensat(rustix::fs::CWD, p, &times(*m), rustix::fs::AtFlags::empty()).map_err(|e| {
                TarError::Io { context: format!("cannot set times of {}", p.display()), source: e.into() }
            })?;
        }
    }
    let mut order: Vec<&Path> = dirs.iter().map(|(p, _)| p.as_path()).collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    order.dedup();
    for p in order.into_iter().chain([dir]) {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(io_err(|| format!("cannot sync directory {}", p.display())))?;
    }
    Ok(())
}
