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
//!
//! It changes nothing it looks at: directories are listed with `O_NOATIME` (files are only
//! `lstat`ed), since the backup records each entry's access time after the scan has passed.
//! Where that is not allowed (a directory of another user, without `CAP_FOWNER`), the
//! directory is not counted and the total stays incomplete.

use coffer_repository::{Event, JobControl, Progress};
use globset::GlobSet;
use rustix::fs::{AtFlags, FileType};
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
    // Whether a directory could not be read without changing its access time: then the
    // total is left incomplete (the backup reports the final one).
    let mut skipped = false;
    while let Some((dir, dev)) = pending.pop() {
        if stopped() {
            return None;
        }
        let Ok(fd) = open_dir_noatime(&dir) else {
            skipped = true;
            continue;
        };
        // `Dir::new` reads through this very open directory (`read_from` would reopen it
        // without `O_NOATIME`); a duplicate of the descriptor serves the `fstatat`s.
        let Ok(at) = rustix::io::dup(&fd) else { continue };
        let Ok(mut entries) = rustix::fs::Dir::new(fd) else { continue };
        let fd = at;
        while let Some(Ok(entry)) = entries.read() {
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let path = dir.join(std::ffi::OsStr::from_bytes(name));
            if excluded(scope, &path, name) {
                continue;
            }
            // Not following a symlink, as the backup's `lstat`.
            let Ok(st) = rustix::fs::statat(&fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) else { continue };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {
                    total.items += 1;
                    total.bytes += u64::try_from(st.st_size).unwrap_or(0);
                }
                FileType::Directory if !(scope.one_fs && st.st_dev != dev) => pending.push((path, dev)),
                _ => {}
            }
        }
        if total.items >= next_report {
            next_report = total.items + REPORT_EVERY;
            ctl.emit(&Event::Total { total, complete: false });
        }
    }
    if stopped() || skipped {
        return None;
    }
    ctl.emit(&Event::Total { total, complete: true });
    Some(total)
}

/// Opens a directory to list it without updating its access time: the scan runs ahead of
/// the backup, which records each directory's metadata before it reads it, so a plain read
/// here would change the access times the backup records (and, on a `relatime` mount, the
/// tree itself). `O_NOATIME` needs the directory's owner or `CAP_FOWNER`; without it the
/// directory is not listed (an error).
fn open_dir_noatime(dir: &Path) -> rustix::io::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME;
    rustix::fs::openat(rustix::fs::CWD, dir, flags, Mode::empty())
}

fn excluded(scope: &Scope<'_>, path: &Path, name: &[u8]) -> bool {
    scope.excludes.is_match(Path::new(std::ffi::OsStr::from_bytes(name))) || scope.path_excludes.is_match(path)
}
