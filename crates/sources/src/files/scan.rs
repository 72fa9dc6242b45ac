//! Counting what a backup has to do, beside it, so that its progress has a total and an ETA.
//!
//! [`scan`] walks the same paths with the same rules as the backup (excludes, one file
//! system, a path inside another path counted once) but takes metadata only: no file is
//! opened, nothing is hashed. It runs on its own thread while the backup reads, as restic's
//! scanner does, and reports a growing [`Event::Total`] (regular files, their bytes), then a
//! complete one when it ends. It only informs: the backup never waits for it and does not
//! trust its numbers for anything; an entry it cannot read is skipped silently (the backup
//! itself reports it as a warning).
//!
//! Memory stays bounded by the tree's shape, not its size: the walk is depth first and holds
//! only the directories still to visit (their paths), never the entries of a visited one.

use coffer_repository::{Event, JobControl, Progress};
use globset::GlobSet;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// A `Total` is reported each time this many more files have been counted.
const REPORT_EVERY: u64 = 1000;

/// What the backup walks: the same rules as [`super::backup()`].
pub(super) struct Scope<'a> {
    /// The paths given, absolute, normalized, sorted and deduplicated.
    pub paths: &'a [PathBuf],
    /// Name globs.
    pub excludes: &'a GlobSet,
    /// Absolute-path globs.
    pub path_excludes: &'a GlobSet,
    /// Whether other file systems below a path are left out.
    pub one_fs: bool,
}

/// Counts the regular files and their bytes under `scope`, reporting totals to `ctl` as
/// they grow and a complete one at the end. Returns `None`, having reported no complete
/// total, when `stop` is set or the job is cancelled before the walk ends.
pub(super) fn scan(scope: &Scope<'_>, ctl: &JobControl, stop: &AtomicBool) -> Option<Progress> {
    let stopped = || stop.load(Ordering::Relaxed) || ctl.cancel.is_cancelled();
    let mut total = Progress::default();
    let mut next_report = REPORT_EVERY;
    // (directory, device of the path given above it)
    let mut pending: Vec<(PathBuf, u64)> = Vec::new();
    for (i, p) in scope.paths.iter().enumerate() {
        // A path below another given path is part of that one's walk.
        if scope.paths[..i].iter().any(|q| p.starts_with(q)) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(p) else { continue };
        if md.is_file() {
            total.items += 1;
            total.bytes += md.len();
        } else if md.is_dir() {
            pending.push((p.clone(), md.dev()));
        }
    }
    while let Some((dir, dev)) = pending.pop() {
        if stopped() {
            return None;
        }
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for entry in rd.flatten() {
            let path = entry.path();
            if excluded(scope, &path, entry.file_name().as_bytes()) {
                continue;
            }
            // `DirEntry::metadata` does not follow a symlink, as the backup's `lstat`.
            let Ok(md) = entry.metadata() else { continue };
            if md.is_file() {
                total.items += 1;
                total.bytes += md.len();
            } else if md.is_dir() && !(scope.one_fs && md.dev() != dev) {
                pending.push((path, dev));
            }
        }
        if total.items >= next_report {
            next_report = total.items + REPORT_EVERY;
            ctl.emit(&Event::Total { total, complete: false });
        }
    }
    if stopped() {
        return None;
    }
    ctl.emit(&Event::Total { total, complete: true });
    Some(total)
}

fn excluded(scope: &Scope<'_>, path: &Path, name: &[u8]) -> bool {
    scope.excludes.is_match(Path::new(std::ffi::OsStr::from_bytes(name))) || scope.path_excludes.is_match(path)
}
