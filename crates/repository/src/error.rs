//! Errors of the repository layer.
//!
//! Rules: one enum for the crate; a store error keeps its source and gains context (which
//! object, doing what) rather than being re-described; messages are one lowercase line
//! naming what and where; no message contains a password or key material.

use coffer_store::{ErrorClass, StoreError};

/// What can go wrong reading or writing a repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// A store request failed (the store's error is the `source()`).
    #[error("{context}")]
    Store {
        /// What was being done.
        context: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// No key of the repository opens with the password given.
    #[error("wrong password: no key in {location} opens with it")]
    WrongPassword {
        /// The repository.
        location: String,
    },
    /// The repository has no key file that can be read (none, or all damaged).
    #[error("no usable key in {location}: {detail}")]
    NoUsableKey {
        /// The repository.
        location: String,
        /// Why.
        detail: String,
    },
    /// The location holds no repository.
    #[error("no coffer repository at {location} (run `coffer init` first)")]
    NoRepository {
        /// The repository.
        location: String,
    },
    /// The location already holds a repository.
    #[error("a coffer repository already exists at {location}")]
    AlreadyExists {
        /// The repository.
        location: String,
    },
    /// The repository was written by a newer format version.
    #[error("{object} has repository format version {found}; this coffer reads up to version {supported}")]
    NewerFormat {
        /// The object that says so.
        object: String,
        /// Version found.
        found: u8,
        /// Newest version this build reads.
        supported: u8,
    },
    /// An object failed authentication or decoding.
    #[error("corrupt object {object}: {detail}")]
    Corrupt {
        /// The object (storage key, or blob id within a pack).
        object: String,
        /// What is wrong.
        detail: String,
    },
    /// A request that can never succeed (bad argument, policy violation).
    #[error("{0}")]
    Invalid(String),
    /// The job was asked to stop ([`crate::observe::Cancel`]) and stopped at a boundary;
    /// nothing it did is acknowledged (a backup commits no snapshot).
    #[error("cancelled")]
    Cancelled,
}

impl RepoError {
    /// Wraps a store error with what was being done.
    pub fn store(context: impl Into<String>) -> impl FnOnce(StoreError) -> Self {
        let context = context.into();
        move |source| Self::Store { context, source }
    }

    /// A corrupt-object error.
    pub fn corrupt(object: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Corrupt { object: object.into(), detail: detail.into() }
    }

    /// Whether this is lost or damaged repository data (a corrupt or missing object or
    /// blob), as opposed to a store that cannot be reached, a refusal or bad input: the
    /// error a restore reports for the affected file and then goes on past.
    #[must_use]
    pub fn is_data_loss(&self) -> bool {
        match self {
            Self::Corrupt { .. } => true,
            Self::Store { source, .. } => {
                matches!(source.kind(), coffer_store::ErrorKind::Corrupt | coffer_store::ErrorKind::NotFound)
            }
            _ => false,
        }
    }

    /// The class of this error; a store error's own class shows through.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Store { source, .. } => source.class(),
            Self::WrongPassword { .. } | Self::NoUsableKey { .. } | Self::NoRepository { .. } => ErrorClass::Invalid,
            Self::NewerFormat { .. } | Self::Invalid(_) => ErrorClass::Invalid,
            Self::AlreadyExists { .. } => ErrorClass::Conflict,
            Self::Corrupt { .. } => ErrorClass::Integrity,
            Self::Cancelled => ErrorClass::Cancelled,
        }
    }

    /// The store error underneath, if any.
    #[must_use]
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            Self::Store { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result of a repository operation.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;
