//! Opening a repository the policy file names, as the role a job needs: the same
//! `coffer_store::open_store` and `coffer_repository::open_repository` the commands call.
//!
//! Invariant guarded here: the secrets the policy file references are read only here, when
//! a job needs them, and never appear in an error (errors name the file or variable).

use crate::config::{Config, RepositoryConfig, SecretRef};
use coffer_repository::{KeySource, OpenRepoError, RepoRequest, Repository, open_repository as open_repo};
use coffer_store::open::OpenError;
use coffer_store::{
    Clock, CreateVault, CredentialsSource, ObjectStore, Role, StoreHandle, StoreLocation, StoreRequest,
    open_store as open_store_request,
};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Why a repository of the policy file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenJobError {
    /// No such repository in the file.
    #[error("repository {0:?} is not declared in coffer.toml ([repositories.{0}])")]
    Unknown(String),
    /// A secret's file cannot be read.
    #[error("repository {repository}: cannot read the secret file {}: {source}", file.display())]
    SecretFile {
        /// The repository.
        repository: String,
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret's variable is not set.
    #[error("repository {repository}: the environment variable {var} is not set")]
    SecretEnv {
        /// The repository.
        repository: String,
        /// The variable.
        var: String,
    },
    /// A secret reference that names neither or both of `file` and `env`.
    #[error("repository {repository}: a secret is `{{ file = \"PATH\" }}` or `{{ env = \"VAR\" }}`, exactly one")]
    SecretShape {
        /// The repository.
        repository: String,
    },
    /// The store refused or cannot be reached.
    #[error("repository {repository}: {source}")]
    Store {
        /// The repository.
        repository: String,
        /// Why.
        source: Box<OpenError>,
    },
    /// The repository refused (no repository there, wrong password, …).
    #[error("repository {repository}: {source}")]
    Repo {
        /// The repository.
        repository: String,
        /// Why.
        source: Box<OpenRepoError>,
    },
}

impl OpenJobError {
    /// The class of this error (a store's or repository's keeps its own).
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        use coffer_store::ErrorClass;
        match self {
            Self::Unknown(_) | Self::SecretShape { .. } | Self::SecretEnv { .. } => ErrorClass::Invalid,
            Self::SecretFile { .. } => ErrorClass::Io,
            Self::Store { source, .. } => source.class(),
            Self::Repo { source, .. } => source.class(),
        }
    }
}

impl SecretRef {
    /// The secret: the first line of the file, or the variable's value.
    ///
    /// # Errors
    /// [`OpenJobError`] naming the file or variable (never the secret), for `owner`.
    pub fn read(&self, owner: &str) -> Result<Zeroizing<Vec<u8>>, OpenJobError> {
        match (&self.file, &self.env) {
            (Some(file), None) => {
                let text = Zeroizing::new(std::fs::read(file).map_err(|source| OpenJobError::SecretFile {
                    repository: owner.to_owned(),
                    file: file.clone(),
                    source,
                })?);
                let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                Ok(Zeroizing::new(line.to_vec()))
            }
            (None, Some(var)) => std::env::var_os(var)
                .map(|v| Zeroizing::new(v.into_encoded_bytes()))
                .ok_or_else(|| OpenJobError::SecretEnv { repository: owner.to_owned(), var: var.clone() }),
            _ => Err(OpenJobError::SecretShape { repository: owner.to_owned() }),
        }
    }
}

/// How the repository's key is found: the key file, else the password reference, else
/// `COFFER_PASSWORD` (as the commands do).
fn key_source(name: &str, r: &RepositoryConfig) -> Result<KeySource, OpenJobError> {
    if let Some(k) = &r.key_file {
        return Ok(KeySource::KeyFile(k.clone()));
    }
    let secret = r.password.clone().unwrap_or(SecretRef { file: None, env: Some("COFFER_PASSWORD".into()) });
    if let (Some(file), None) = (&secret.file, &secret.env) {
        return Ok(KeySource::PasswordFile(file.clone()));
    }
    Ok(KeySource::Password(secret.read(name)?))
}

/// Opens the store of repository `name` of `config` as `role` alone (no key: the pruner may
/// not read one), with that role's credentials file if the file names one; returns it with
/// the location as shown in messages. Nothing is created.
///
/// # Errors
/// [`OpenJobError`].
pub fn open_store(config: &Config, name: &str, role: Role) -> Result<(Arc<dyn ObjectStore>, String), OpenJobError> {
    open_store_handle(config, name, role).map(|(h, shown)| (h.into_shared(), shown))
}

/// As [`open_store`], keeping the kind of store: what needs a local vault's own requests
/// (its audit log, for the security watch) asks for them through [`StoreHandle::Local`].
///
/// # Errors
/// [`OpenJobError`].
pub fn open_store_handle(config: &Config, name: &str, role: Role) -> Result<(StoreHandle, String), OpenJobError> {
    let r = config.repository(name).ok_or_else(|| OpenJobError::Unknown(name.to_owned()))?;
    let store_err = |source| OpenJobError::Store { repository: name.to_owned(), source: Box::new(source) };
    let location = r.location.as_deref().map(StoreLocation::parse).transpose().map_err(store_err)?;
    let credentials =
        r.credentials.get(role.as_str()).map_or(CredentialsSource::Implicit, |f| CredentialsSource::File(f.clone()));
    let shown = match &location {
        Some(l) => l.to_string(),
        None => coffer_store::open::default_vault_dir().map(|d| d.display().to_string()).unwrap_or_default(),
    };
    let req = StoreRequest {
        location,
        credentials,
        role: Some(role),
        default_role: role,
        check_job_role: false,
        create: CreateVault::Never,
    };
    let opened = open_store_request(&req).map_err(store_err)?;
    Ok((opened.handle, shown))
}

/// Opens repository `name` of `config` as `role`, with that role's credentials file if the
/// file names one. Nothing is created: the daemon never starts a second, empty history
/// because a path was mistyped.
///
/// # Errors
/// [`OpenJobError`].
pub fn open_repository(config: &Config, name: &str, role: Role, clock: Clock) -> Result<Repository, OpenJobError> {
    let r = config.repository(name).ok_or_else(|| OpenJobError::Unknown(name.to_owned()))?;
    let (store, shown) = open_store(config, name, role)?;
    let key = key_source(name, &r)?;
    let req = RepoRequest {
        writes: role == Role::Writer,
        clock,
        cache: r.cache_choice(),
        relist_after: r.relist_after(),
        ..RepoRequest::new(key)
    };
    open_repo(store, &shown, &req)
        .map(|o| o.repo)
        .map_err(|source| OpenJobError::Repo { repository: name.to_owned(), source: Box::new(source) })
}
