//! Errors of the store contract.
//!
//! Rules (after rustic_core's `error.rs`):
//! - Every failure is one of a few *kinds* that callers act on differently ([`ErrorKind`]):
//!   not found, exists (a create-only put), locked, forbidden, invalid request, corrupt
//!   data, I/O. The kind, not the
//!   message, is what the contract suite checks and what the S3 server will map to codes.
//! - Messages are lowercase, one line, and say what and where (key, version, path).
//! - Lower-level errors keep their source; callers add context instead of re-wrapping.
//! - No message ever contains a secret: credentials are [`crate::Secret`]s, which do not print.

use crate::model::{RetentionMode, VersionId};
use crate::role::{Action, Role};
use jiff::Timestamp;
use std::path::PathBuf;

/// A boxed lower-level error (I/O, SQLite, later HTTP).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong with a store request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key, or the given version of it, does not exist (or its latest version is a delete marker).
    #[error("{key}{} not found", version.as_ref().map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound {
        /// The key asked for.
        key: String,
        /// The version asked for, if one was.
        version: Option<VersionId>,
    },

    /// A create-only put found the key's latest version to be an object.
    #[error("{key} already exists{}; a create-only put adds no second version", version.as_ref().map(|v| format!(" (version {v})")).unwrap_or_default())]
    Exists {
        /// The key.
        key: String,
        /// Its latest version, when the store names it (S3's refusal does not).
        version: Option<VersionId>,
    },

    /// The version is protected by a retention period or a legal hold.
    #[error("{key} version {version} is locked{}{}", until.map(|u| format!(" ({} until {u})", mode.map_or("retained", RetentionMode::as_str))).unwrap_or_default(), if *legal_hold { " (legal hold)" } else { "" })]
    Locked {
        /// The key.
        key: String,
        /// The protected version.
        version: VersionId,
        /// Retention mode, when a retention period protects it.
        mode: Option<RetentionMode>,
        /// End of the retention period protecting it, if any.
        until: Option<Timestamp>,
        /// Whether a legal hold protects it.
        legal_hold: bool,
    },

    /// The caller's role may not perform the action.
    #[error("{principal} (role {role}) may not {action}")]
    Forbidden {
        /// Name of the principal that asked.
        principal: String,
        /// Its role.
        role: Role,
        /// What it asked to do.
        action: Action,
    },

    /// The request is malformed or asks for something the contract never allows.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// Stored data does not match its checksum, or metadata is inconsistent.
    #[error("corrupt data in {key} version {version}: {detail}")]
    Corrupt {
        /// The key.
        key: String,
        /// The version whose data is corrupt.
        version: VersionId,
        /// What was found.
        detail: String,
    },

    /// The credentials are unknown or do not match.
    #[error("authentication failed for access key {access_key}")]
    Unauthenticated {
        /// The access key id presented (never the secret).
        access_key: String,
    },

    /// The directory is not a vault.
    #[error("{} is not a coffer vault (no {} found)", path.display(), crate::vault::MARKER_FILE)]
    NotAVault {
        /// The directory.
        path: PathBuf,
    },

    /// The vault was written by a newer (or unknown) format version.
    #[error("{} has vault format version {found}; this coffer reads up to version {supported}", path.display())]
    UnsupportedFormat {
        /// The directory.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// An I/O or storage-engine failure, with what was being done. The cause is the
    /// error's `source()`, not part of its message (print the chain with [`display_chain`]).
    #[error("{context}")]
    Io {
        /// What was being done, and where.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// The class of a failure, shared by every library error in Coffer (store, repository,
/// sources): what a caller, a scheduler or an operator does about it. Each error type has
/// a `class()` that looks through the errors it wraps, so a wrapper never hides the class of
/// what it wraps. The CLI maps classes to exit codes in one place (`cli/src/error.rs`); a
/// daemon retries only [`ErrorClass::Transient`] and maps the others to alert severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Stored data failed verification (checksum, authentication, decoding) or an audit
    /// chain is broken: the data is damaged or was tampered with. Retrying does not help;
    /// an operator must look (restore from another copy, investigate). Exit code 6.
    Integrity,
    /// The role may not do this, or the credentials were not accepted. Retrying does not
    /// help; use another role or other credentials. Exit code 3.
    Refused,
    /// A retention period or a legal hold protects the version. Retrying helps only after
    /// the retention ends or the hold is lifted. Exit code 4.
    Locked,
    /// The key or version (object, blob, snapshot) does not exist. Retrying does not help.
    /// Exit code 5.
    NotFound,
    /// What a create-only request would create already exists (another writer got there
    /// first). Retrying the same request does not help; re-read and decide. Exit code 1.
    Conflict,
    /// A storage request failed in a way that may pass: I/O of the store, network,
    /// timeouts, throttling. The only class worth retrying (with backoff). Exit code 1.
    Transient,
    /// The request can never succeed as asked: a bad argument, a wrong password, no
    /// repository or vault there, a format this build does not read, an archive member
    /// that cannot be unpacked. Retrying does not help; fix the request. Exit code 1.
    Invalid,
    /// A local file system operation failed (reading files to back up, writing a
    /// restore): disk full, permissions, a vanished path. Retrying rarely helps without an
    /// operator's action. Exit code 1.
    Io,
    /// Anything else (an internal failure, an operation stopped because another failed).
    /// Exit code 1.
    Other,
    /// The job was asked to stop (a signal, the daemon's timeout) and stopped cleanly at a
    /// boundary; nothing it did was acknowledged. Running it again resumes. Exit code 130.
    Cancelled,
}

impl ErrorClass {
    /// Whether retrying the same request may succeed (only [`ErrorClass::Transient`]).
    #[must_use]
    pub fn is_retryable(self) -> bool {
        self == Self::Transient
    }

    /// The class's stable kebab-case name (`integrity`, `not-found`, `cancelled`): what
    /// records, logs and metrics carry.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Integrity => "integrity",
            Self::Refused => "refused",
            Self::Locked => "locked",
            Self::NotFound => "not-found",
            Self::Conflict => "conflict",
            Self::Transient => "transient",
            Self::Invalid => "invalid",
            Self::Io => "io",
            Self::Other => "other",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The kinds of failure a caller acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Key or version absent.
    NotFound,
    /// A create-only put found the key existing (S3's 412 Precondition Failed).
    Exists,
    /// Protected by retention or legal hold.
    Locked,
    /// Refused by role, or bad credentials.
    Forbidden,
    /// Malformed or never-allowed request.
    InvalidRequest,
    /// Data failed verification.
    Corrupt,
    /// Storage failure; may be transient.
    Io,
}

impl ErrorKind {
    /// The class of an error of this kind.
    #[must_use]
    pub fn class(self) -> ErrorClass {
        match self {
            Self::NotFound => ErrorClass::NotFound,
            Self::Exists => ErrorClass::Conflict,
            Self::Locked => ErrorClass::Locked,
            Self::Forbidden => ErrorClass::Refused,
            Self::InvalidRequest => ErrorClass::Invalid,
            Self::Corrupt => ErrorClass::Integrity,
            Self::Io => ErrorClass::Transient,
        }
    }
}

impl StoreError {
    /// The class of this error (from its [`ErrorKind`]).
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        self.kind().class()
    }

    /// The kind of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Exists { .. } => ErrorKind::Exists,
            Self::Locked { .. } => ErrorKind::Locked,
            Self::Forbidden { .. } | Self::Unauthenticated { .. } => ErrorKind::Forbidden,
            Self::InvalidRequest(_) | Self::NotAVault { .. } | Self::UnsupportedFormat { .. } => {
                ErrorKind::InvalidRequest
            }
            Self::Corrupt { .. } => ErrorKind::Corrupt,
            Self::Io { .. } => ErrorKind::Io,
        }
    }

    /// Whether retrying the same request can never succeed (restic's `IsPermanentError`).
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        !self.class().is_retryable()
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Io { context: context.into(), source: source.into() }
    }

    /// An invalid-request error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidRequest(msg.into())
    }
}

/// An error and its causes on one line, outermost first, joined by `: ` — for logs and
/// reports that keep a string (the audit log, verify problems).
#[must_use]
pub fn display_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// Result of a store request.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_class_and_only_transient_errors_are_retried() {
        let err = StoreError::io("reading k", std::io::Error::other("timeout"));
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(!err.is_permanent() && err.class().is_retryable());
        let cases = [
            (StoreError::NotFound { key: "k".into(), version: None }, ErrorClass::NotFound),
            (StoreError::Exists { key: "k".into(), version: None }, ErrorClass::Conflict),
            (StoreError::Unauthenticated { access_key: "a".into() }, ErrorClass::Refused),
            (StoreError::invalid("bad"), ErrorClass::Invalid),
            (StoreError::NotAVault { path: "/x".into() }, ErrorClass::Invalid),
            (
                StoreError::Corrupt { key: "k".into(), version: VersionId::from("v"), detail: "sum".into() },
                ErrorClass::Integrity,
            ),
        ];
        for (err, class) in cases {
            assert_eq!(err.class(), class, "{err}");
            assert!(err.is_permanent() && !class.is_retryable(), "{err}");
        }
    }
}
