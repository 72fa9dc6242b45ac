//! Durable file writes for the vault: temp file, fsync, rename, fsync the directory; and
//! ranged reads of a version's file.
//!
//! Invariant guarded: a file is visible under its final name only once its bytes are
//! durable, so a crash at any point leaves either no file or the whole file.

use crate::error::{Result, StoreError};
use crate::model::ObjectVersion;
use crate::store::RangeRead;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A version's data file opened for ranged reads ([`crate::ObjectStore::open_ranged`]). The
/// open descriptor keeps reading the version even if a pruner removes its file meanwhile.
pub(crate) struct RangeFile {
    pub meta: ObjectVersion,
    pub file: File,
    pub path: PathBuf,
}

impl RangeRead for RangeFile {
    fn meta(&self) -> &ObjectVersion {
        &self.meta
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt as _;
        if offset.checked_add(len as u64).is_none_or(|end| end > self.meta.size) {
            return Err(StoreError::invalid(format!(
                "bytes {offset}..+{len} are past the end of {} ({} bytes)",
                self.meta.key, self.meta.size
            )));
        }
        let mut buf = vec![0; len];
        match self.file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(StoreError::Corrupt {
                key: self.meta.key.clone(),
                version: self.meta.version.clone(),
                detail: format!("{} ends before its recorded size {}", self.path.display(), self.meta.size),
            }),
            Err(e) => Err(StoreError::io(format!("cannot read {}", self.path.display()), e)),
        }
    }
}

/// Writes `bytes` to `dir/name` durably, staging the temp file in `tmp_dir` (same filesystem).
pub(crate) fn write_durable(tmp_dir: &Path, dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = tmp_dir.join(format!("{name}.{}.tmp", random_hex(8)));
    let result = (|| {
        let mut f = create_file(&tmp, mode)?;
        f.write_all(bytes).map_err(|e| StoreError::io(format!("cannot write {}", tmp.display()), e))?;
        f.sync_all().map_err(|e| StoreError::io(format!("cannot fsync {}", tmp.display()), e))?;
        drop(f);
        let dst = dir.join(name);
        fs::rename(&tmp, &dst)
            .map_err(|e| StoreError::io(format!("cannot rename {} to {}", tmp.display(), dst.display()), e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// How long a temp file may go unwritten before [`remove_stale_temps`] takes it for a crashed
/// put's: far longer than any put stays between two writes.
pub(crate) const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes temp files in `tmp_dir` not modified for [`STALE_TEMP_AGE`] before `now`: what a
/// put killed before its rename left behind (each up to an object's size; a backup that is
/// interrupted again and again would otherwise grow the vault without bound). Always safe:
/// a put whose temp file is removed fails at its rename and acknowledges nothing. Best
/// effort: a file that cannot be read or removed stays. Returns how many were removed.
///
/// Ages are measured on the wall clock, not the vault's [`crate::Clock`]: file times are the
/// kernel's, and a test clock moved days ahead would take every temp file of a put in
/// progress for a crashed one.
pub(crate) fn remove_stale_temps(tmp_dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(tmp_dir) else { return 0 };
    #[allow(
        clippy::disallowed_methods,
        reason = "file times are the kernel's wall-clock times; no lock depends on this"
    )]
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= STALE_TEMP_AGE));
        if stale && e.file_name().to_string_lossy().ends_with(".tmp") && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn create_file(path: &Path, mode: u32) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| StoreError::io(format!("cannot create {}", path.display()), e))
}

/// Makes a directory entry change (create, rename, unlink) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("cannot fsync directory {}", dir.display()), e))
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex(&buf)
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Bytes from lowercase or uppercase hex; `None` if malformed.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}
