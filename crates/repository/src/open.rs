//! One way to open a repository over an opened store ([`coffer_store::open_store`]): with a
//! password or a key ([`KeySource`]), as of a past time or as it is now, and, for the
//! embedded default vault only, created on first use ([`RepoRequest::init_if_missing`]).
//!
//! The secret comes from the caller as bytes, or from a file this module reads (a password
//! file's first line, or a key file as `coffer pg export-key` writes it). Asking a person
//! for a password is the front end's business. Invariant guarded: *secrets never reach an
//! error message* — errors name the file, never its contents.
//!
//! **Read-only past.** A repository seen as of a past time is a view for reading: a job that
//! writes is refused with it ([`check_as_of`]), before any request.

use crate::cache::CacheChoice;
use crate::crypto::MasterKey;
use crate::error::RepoError;
use crate::repo::{InitOptions, Repository};
use coffer_store::{Clock, ErrorClass, ObjectStore};
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Where the secret that opens a repository comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A password the caller has (an environment variable, a prompt, a secret manager).
    Password(Zeroizing<Vec<u8>>),
    /// The first line of this file.
    PasswordFile(PathBuf),
    /// The master key itself, from this key file (no key derivation, so a process per
    /// WAL file stays cheap).
    KeyFile(PathBuf),
}

impl std::fmt::Debug for KeySource {
    /// Names the file or says a password was given; never shows a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password(_) => f.write_str("Password(..redacted..)"),
            Self::PasswordFile(p) => f.debug_tuple("PasswordFile").field(p).finish(),
            Self::KeyFile(p) => f.debug_tuple("KeyFile").field(p).finish(),
        }
    }
}

/// How to open a repository.
#[derive(Clone, Debug)]
pub struct RepoRequest {
    /// The secret.
    pub key: KeySource,
    /// See the repository as it was at this time (read-only).
    pub as_of: Option<Timestamp>,
    /// Whether the job writes to the repository (then `as_of` is refused).
    pub writes: bool,
    /// Create the repository when there is none, with these options: only for the
    /// embedded default vault, never where a user named a location (a typo must not start
    /// a second history).
    pub init_if_missing: Option<InitOptions>,
    /// The clock of lock decisions.
    pub clock: Clock,
    /// The local metadata cache to use ([`crate::cache`]); none by default.
    pub cache: CacheChoice,
    /// How long a writer may take this host's last listing of the history for a complete
    /// one ([`Repository::with_relist_after`]); only with a cache.
    pub relist_after: std::time::Duration,
}

impl RepoRequest {
    /// A request opening the repository as it is now with `key`.
    #[must_use]
    pub fn new(key: KeySource) -> Self {
        Self {
            key,
            as_of: None,
            writes: false,
            init_if_missing: None,
            clock: Clock::from_env(),
            cache: CacheChoice::Off,
            relist_after: crate::repo::DEFAULT_RELIST_AFTER,
        }
    }
}

/// A repository opened by [`open_repository`].
pub struct OpenedRepository {
    /// The repository.
    pub repo: Repository,
    /// Whether this call created it ([`RepoRequest::init_if_missing`]).
    pub created: bool,
}

/// Why a repository could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenRepoError {
    /// A password file that cannot be read.
    #[error("cannot read password file {}", path.display())]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A password file whose first line is empty.
    #[error("password file {} is empty", path.display())]
    EmptyPasswordFile {
        /// The file.
        path: PathBuf,
    },
    /// A key file that cannot be read.
    #[error("cannot read key file {}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file that holds no repository key.
    #[error("key file {} does not hold a coffer repository key", path.display())]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
    /// A key that does not open the repository.
    #[error("the key in {} does not open {location}", path.display())]
    KeyRejected {
        /// The key file.
        path: PathBuf,
        /// The repository.
        location: String,
        /// Why.
        #[source]
        source: Box<RepoError>,
    },
    /// A job that writes, asked to see the repository as of a past time.
    #[error("as of {as_of} the repository is read-only, and this job writes to it")]
    ReadOnlyAsOf {
        /// The time asked for.
        as_of: Timestamp,
    },
    /// The repository refused (no repository, wrong password, …).
    #[error(transparent)]
    Repo(Box<RepoError>),
}

impl From<RepoError> for OpenRepoError {
    fn from(e: RepoError) -> Self {
        Self::Repo(Box::new(e))
    }
}

impl OpenRepoError {
    /// The class of this error: unreadable files are `Io`, a request that can never succeed
    /// is `Invalid`, a repository error keeps its class.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::PasswordFile { .. } | Self::KeyFile { .. } => ErrorClass::Io,
            Self::EmptyPasswordFile { .. } | Self::NotAKey { .. } | Self::ReadOnlyAsOf { .. } => ErrorClass::Invalid,
            Self::KeyRejected { source, .. } | Self::Repo(source) => source.class(),
        }
    }

    /// Whether the request itself is contradictory (a past view for a job that writes): a
    /// front end reports it as misuse.
    #[must_use]
    pub fn is_misuse(&self) -> bool {
        matches!(self, Self::ReadOnlyAsOf { .. })
    }

    /// The repository error underneath, if any (e.g. to tell "no repository here").
    #[must_use]
    pub fn repo_error(&self) -> Option<&RepoError> {
        match self {
            Self::KeyRejected { source, .. } | Self::Repo(source) => Some(source),
            _ => None,
        }
    }
}

/// Refuses a past view (`as_of`) for a job that writes.
///
/// # Errors
/// [`OpenRepoError::ReadOnlyAsOf`].
pub fn check_as_of(as_of: Option<Timestamp>, writes: bool) -> Result<(), OpenRepoError> {
    match as_of {
        Some(as_of) if writes => Err(OpenRepoError::ReadOnlyAsOf { as_of }),
        _ => Ok(()),
    }
}

/// The first line of a password file.
///
/// # Errors
/// [`OpenRepoError::PasswordFile`], [`OpenRepoError::EmptyPasswordFile`].
pub fn read_password_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, OpenRepoError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|source| OpenRepoError::PasswordFile { path: path.to_path_buf(), source })?,
    );
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(OpenRepoError::EmptyPasswordFile { path: path.to_path_buf() });
    }
    Ok(Zeroizing::new(line.as_bytes().to_vec()))
}

/// Reads a key file as `coffer pg export-key` writes it.
///
/// # Errors
/// [`OpenRepoError::KeyFile`], [`OpenRepoError::NotAKey`].
pub fn read_key_file(path: &Path) -> Result<MasterKey, OpenRepoError> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|source| OpenRepoError::KeyFile { path: path.to_path_buf(), source })?,
    );
    MasterKey::import_key_file_bytes(&bytes).ok_or_else(|| OpenRepoError::NotAKey { path: path.to_path_buf() })
}

/// Opens the repository at the root of `store` (named `location` in messages), as `req`
/// asks (see the module docs).
///
/// # Errors
/// [`OpenRepoError`]: unreadable secret files, a past view for a job that writes, and the
/// repository's own refusals (no repository, wrong password, corrupt configuration).
pub fn open_repository(
    store: Arc<dyn ObjectStore>,
    location: &str,
    req: &RepoRequest,
) -> Result<OpenedRepository, OpenRepoError> {
    check_as_of(req.as_of, req.writes || req.init_if_missing.is_some())?;
    let clock = req.clock.clone();
    let password = match &req.key {
        KeySource::KeyFile(path) => {
            let key = read_key_file(path)?;
            let repo =
                Repository::open_with_key_as_of(store, location, "", key, clock, req.as_of).map_err(|source| {
                    match source {
                        // Say there is no repository, not that the key is wrong.
                        RepoError::NoRepository { .. } => OpenRepoError::from(source),
                        source => OpenRepoError::KeyRejected {
                            path: path.clone(),
                            location: location.to_owned(),
                            source: Box::new(source),
                        },
                    }
                })?;
            return Ok(OpenedRepository {
                repo: repo.with_cache(&req.cache).with_relist_after(req.relist_after),
                created: false,
            });
        }
        KeySource::Password(p) => p.clone(),
        KeySource::PasswordFile(path) => read_password_file(path)?,
    };
    // The key file this host opened the repository with last, from the cache (never for a
    // past view): tried while the config and key files are listed.
    let hint = req
        .cache
        .root(store.capabilities().remote)
        .filter(|_| req.as_of.is_none())
        .map(|root| crate::cache::key_hint_path(root, location, ""));
    match Repository::open_hinted(store.clone(), location, "", &password, clock.clone(), req.as_of, hint.as_deref()) {
        Err(RepoError::NoRepository { .. }) if req.init_if_missing.is_some() => {
            let opts = req.init_if_missing.clone().unwrap_or_default();
            let repo = Repository::init(store, location, "", &password, &opts, clock)?;
            Ok(OpenedRepository {
                repo: repo.with_cache(&req.cache).with_relist_after(req.relist_after),
                created: true,
            })
        }
        other => Ok(OpenedRepository {
            repo: other?.with_cache(&req.cache).with_relist_after(req.relist_after),
            created: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KdfParams;
    use coffer_store::{LocalVault, Role, VaultOptions};

    fn cheap() -> InitOptions {
        InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..InitOptions::default() }
    }

    fn store(dir: &Path) -> Arc<dyn ObjectStore> {
        let vault = LocalVault::open(dir).unwrap_or_else(|_| LocalVault::init(dir, &VaultOptions::default()).unwrap());
        Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap())
    }

    #[test]
    fn init_on_first_use_only_when_asked_then_every_key_source_opens_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        let pw = || KeySource::Password(Zeroizing::new(b"secret".to_vec()));
        let err = open_repository(store(&dir), "v", &RepoRequest::new(pw())).err().unwrap();
        assert!(matches!(err.repo_error(), Some(RepoError::NoRepository { .. })), "{err}");
        let first = open_repository(
            store(&dir),
            "v",
            &RepoRequest { init_if_missing: Some(cheap()), ..RepoRequest::new(pw()) },
        )
        .unwrap();
        assert!(first.created);
        let again = open_repository(
            store(&dir),
            "v",
            &RepoRequest { init_if_missing: Some(cheap()), ..RepoRequest::new(pw()) },
        )
        .unwrap();
        assert!(!again.created);
        assert_eq!(again.repo.config().id, first.repo.config().id);

        let file = tmp.path().join("pw");
        std::fs::write(&file, "secret\nignored second line\n").unwrap();
        open_repository(store(&dir), "v", &RepoRequest::new(KeySource::PasswordFile(file.clone()))).unwrap();
        std::fs::write(&file, "hunter2-xyz\n").unwrap();
        let err =
            open_repository(store(&dir), "v", &RepoRequest::new(KeySource::PasswordFile(file.clone()))).err().unwrap();
        assert!(!format!("{err:?} {err}").contains("hunter2"), "the password shows: {err:?}");
        std::fs::write(&file, "\n").unwrap();
        let err = open_repository(store(&dir), "v", &RepoRequest::new(KeySource::PasswordFile(file))).err().unwrap();
        assert!(matches!(err, OpenRepoError::EmptyPasswordFile { .. }), "{err}");

        let key = tmp.path().join("key");
        std::fs::write(&key, first.repo.key().export_key_file_bytes().as_slice()).unwrap();
        let by_key = open_repository(store(&dir), "v", &RepoRequest::new(KeySource::KeyFile(key.clone()))).unwrap();
        assert_eq!(by_key.repo.config().id, first.repo.config().id);
        std::fs::write(&key, "not a key").unwrap();
        let err = open_repository(store(&dir), "v", &RepoRequest::new(KeySource::KeyFile(key))).err().unwrap();
        assert!(matches!(err, OpenRepoError::NotAKey { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Invalid);
    }

    #[test]
    fn a_past_view_is_refused_for_a_job_that_writes() {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        check_as_of(Some(t), false).unwrap();
        check_as_of(None, true).unwrap();
        let err = check_as_of(Some(t), true).unwrap_err();
        assert!(err.is_misuse());
        let req = RepoRequest {
            as_of: Some(t),
            init_if_missing: Some(InitOptions::default()),
            ..RepoRequest::new(KeySource::PasswordFile("/nonexistent".into()))
        };
        let tmp = tempfile::tempdir().unwrap();
        // Refused before the password file is read.
        let err = open_repository(store(&tmp.path().join("v")), "v", &req).err().unwrap();
        assert!(matches!(err, OpenRepoError::ReadOnlyAsOf { .. }), "{err}");
    }
}
