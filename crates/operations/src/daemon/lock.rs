//! One daemon per configuration: an exclusive `flock` on `STATE_DIR/daemon.lock`, which
//! holds the pid of the daemon that has it.
//!
//! Invariant guarded here: two daemons never schedule the same jobs from the same state
//! (they would run every job twice and fight over the slot keys). The kernel drops the lock
//! when the process dies, however it dies, so a crashed daemon never blocks the next one.

use super::DaemonError;
use rustix::fs::{FlockOperation, flock};
use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    path: PathBuf,
}

impl DaemonLock {
    /// The lock file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the lock in `state_dir`, or fails at once naming the daemon that holds it.
///
/// # Errors
/// [`DaemonError::AlreadyRunning`] when another daemon holds it; [`DaemonError::Lock`] when
/// the file cannot be opened or written.
pub fn acquire(state_dir: &Path) -> Result<DaemonLock, DaemonError> {
    let path = state_dir.join("daemon.lock");
    let io = |source| DaemonError::Lock { path: path.clone(), source };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(DaemonError::AlreadyRunning { lock: path, pid: text.trim().parse().ok() });
        }
        return Err(io(e.into()));
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(DaemonLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_is_refused_with_the_pid_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path()).unwrap();
        // flock locks are per open file description: a second open in this process
        // conflicts just as another process would.
        let e = acquire(dir.path()).unwrap_err();
        match &e {
            DaemonError::AlreadyRunning { lock, pid } => {
                assert_eq!(lock, held.path());
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(text.contains(&std::process::id().to_string()) && text.contains("daemon.lock"), "{text}");
        drop(held);
        acquire(dir.path()).unwrap();
    }
}
