//! The files source: directory trees with full Unix metadata.
//!
//! - [`backup()`] walks paths, skips files unchanged since the parent snapshot (size, mtime,
//!   ctime, inode), chunks the rest with FastCDC and writes a snapshot.
//! - [`restore()`] reproduces regular files, directories, symlinks, hard links, fifos,
//!   device nodes, permissions, owners (by name, then id), nanosecond times, extended
//!   attributes, sparse regions and non-UTF-8 names.
//! - [`check_restored()`] compares a restore with its snapshot, byte by byte and field by
//!   field (the files drill).
//! - [`walk`] visits a snapshot's tree (for `ls`, `diff`, `dump`, verification).

mod backup;
mod check;
mod meta;
mod read_ahead;
mod restore;
mod scan;
pub mod walk;
mod writeback;

pub use backup::{BackupOptions, BackupReport, backup};
pub use check::{MAX_PROBLEMS, RestoreCheck, check_restored};
pub use restore::{REMOTE_READ_AHEAD, RestoreOptions, RestoreReport, read_ahead_for, restore};

/// Errors of the files source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// A repository operation failed.
    #[error(transparent)]
    Repo(#[from] coffer_repository::RepoError),
    /// A path given to back up cannot be used.
    #[error("cannot back up {path}: {source}")]
    Path {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file system operation failed during restore.
    #[error("{context}: {source}")]
    Io {
        /// What and where.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An argument is unusable.
    #[error("{0}")]
    Invalid(String),
}

impl FilesError {
    /// The class of this error; a wrapped repository error's own class shows through.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        use coffer_store::ErrorClass;
        match self {
            Self::Repo(e) => e.class(),
            Self::Path { .. } | Self::Io { .. } => ErrorClass::Io,
            Self::Invalid(_) => ErrorClass::Invalid,
        }
    }
}

/// Result of a files-source operation.
pub type Result<T, E = FilesError> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FilesError {
    let context = context.into();
    move |source| FilesError::Io { context, source }
}
