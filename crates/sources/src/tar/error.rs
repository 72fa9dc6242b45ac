//! Why an archive could not be unpacked: [`TarError`] and its class.
//!
//! Invariant guarded here: a repository error wrapped by the unpacker keeps its class (a
//! corrupt blob stays an integrity failure), and file system errors name the path.

use super::*;

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the archive from the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What and where.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The archive is not one this module unpacks.
    #[error("tar archive, member at byte {offset}: {what}")]
    Format {
        /// Where in the archive the member's header starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The producer was told to stop because another thread failed; [`unpack`] returns
    /// that thread's error instead.
    #[error("unpacking stopped after an error")]
    Stopped,
}

impl TarError {
    /// The class of this error; a wrapped repository error's own class shows through.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        use coffer_store::ErrorClass;
        match self {
            Self::Repo(e) => e.class(),
            Self::Io { .. } => ErrorClass::Io,
            Self::Format { .. } => ErrorClass::Invalid,
            Self::Stopped => ErrorClass::Other,
        }
    }
}

/// Result of an unpack.
pub type Result<T, E = TarError> = std::result::Result<T, E>;

pub(super) fn io_err(context: impl FnOnce() -> String) -> impl FnOnce(std::io::Error) -> TarError {
    move |source| TarError::Io { context: context(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tar unpacker wraps repository errors transparently (the repository error is not
    /// in the `source()` chain): its class must still be the repository error's.
    #[test]
    fn a_wrapped_repository_error_keeps_its_class() {
        use coffer_store::{ErrorClass, StoreError};
        let corrupt = TarError::Repo(RepoError::corrupt("blob 12 in pack ab", "authentication failed"));
        assert_eq!(corrupt.class(), ErrorClass::Integrity);
        let missing = StoreError::NotFound { key: "data/ab/ab".into(), version: None };
        assert_eq!(TarError::Repo(RepoError::store("reading pack ab")(missing)).class(), ErrorClass::NotFound);
        assert_eq!(TarError::Format { offset: 0, what: "fifo".into() }.class(), ErrorClass::Invalid);
        let files = crate::files::FilesError::Repo(RepoError::corrupt("x", "y"));
        assert_eq!(files.class(), ErrorClass::Integrity);
    }
}
