//! One way to open a store: where it is ([`StoreLocation`]), who asks ([`CredentialsSource`]
//! and a role), and whether a missing embedded default vault may be created ([`CreateVault`]).
//! The CLI, the daemon, drills and the audit report all open stores through [`open_store`],
//! so the rules below hold for every caller, not for one front end.
//!
//! **Where.** A local vault directory, or (feature `s3`)
//! `s3://BUCKET/PREFIX?endpoint=URL&region=R`; no location at all means the embedded default
//! vault at `dirs::data_dir()/coffer/vault` ([`default_vault_dir`]). Any other `scheme://` is
//! refused rather than taken for a directory name.
//!
//! **Creation.** Invariant guarded: *a vault named explicitly is never created implicitly*
//! (a typo must not silently start a second, empty history). Only the default vault is
//! created on first use, and only for a job that stores data and presents no credentials file
//! (credentials from elsewhere cannot belong to a vault that does not exist yet);
//! [`CreateVault::Always`] is for an explicit "create it" (`coffer init --repo DIR`). An S3
//! bucket is never created here (that is the admin's `vault init s3://…`).
//!
//! **Who.** A local vault authenticates access keys: the credentials are an explicit file, or
//! the role's file in the vault's `credentials/` directory. S3 authenticates keys, not Coffer
//! roles: the role is the one asked for, the keys an explicit file or the AWS chain (the
//! environment). When a job names the role it runs as ([`StoreRequest::default_role`]), a role that
//! lacks an action that job needs is refused before any request ([`check_job_role`]), so
//! `--role writer prune` fails up front instead of failing delete by delete.
//!
//! ```
//! use coffer_store::{CreateVault, ObjectStore as _, Role, StoreLocation, StoreRequest, open_store};
//! let dir = tempfile::tempdir().unwrap();
//! let location = StoreLocation::parse(dir.path().join("vault").to_str().unwrap()).unwrap();
//! // A named vault is created only when asked for explicitly.
//! let req = StoreRequest { create: CreateVault::Always, ..StoreRequest::new(Some(location.clone()), Role::Writer) };
//! let opened = open_store(&req).unwrap();
//! assert!(opened.created.is_some() && !opened.handle.capabilities().remote);
//! // Later jobs open it as their role, with the role's credentials file of the vault.
//! let reader = open_store(&StoreRequest::new(Some(location), Role::Reader)).unwrap();
//! assert_eq!(reader.handle.principal().role, Role::Reader);
//! ```

use crate::error::{ErrorClass, StoreError};
use crate::role::{Action, Role};
use crate::store::ObjectStore;
use crate::vault::{LocalVault, VaultHandle, VaultOptions, read_credentials_file};
use jiff::Timestamp;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a store is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local vault directory.
    Local(PathBuf),
    /// An S3 bucket and prefix.
    #[cfg(feature = "s3")]
    S3(crate::s3::S3Location),
}

impl StoreLocation {
    /// Parses a location as a user writes it: `s3://…` is an S3 location, any other
    /// `scheme://` is refused, everything else is a local directory.
    ///
    /// # Errors
    /// [`OpenError::Unsupported`] for another scheme (or `s3://` in a build without S3);
    /// [`OpenError::Location`] for a malformed `s3://` URL.
    pub fn parse(text: &str) -> Result<Self, OpenError> {
        if text.starts_with("s3://") {
            #[cfg(feature = "s3")]
            return crate::s3::S3Location::parse(text).map(Self::S3).map_err(OpenError::Location);
            #[cfg(not(feature = "s3"))]
            return Err(OpenError::Unsupported(text.to_owned()));
        }
        if text.contains("://") {
            return Err(OpenError::Unsupported(text.to_owned()));
        }
        Ok(Self::Local(PathBuf::from(text)))
    }

    /// Parses a location given as a path (a command-line argument): a path that is not
    /// UTF-8 can only be a local directory.
    ///
    /// # Errors
    /// As [`StoreLocation::parse`].
    pub fn from_path(path: &Path) -> Result<Self, OpenError> {
        match path.to_str() {
            Some(text) => Self::parse(text),
            None => Ok(Self::Local(path.to_path_buf())),
        }
    }

    /// The directory of a local vault.
    #[must_use]
    pub fn local_dir(&self) -> Option<&Path> {
        match self {
            Self::Local(dir) => Some(dir),
            #[cfg(feature = "s3")]
            Self::S3(_) => None,
        }
    }
}

impl fmt::Display for StoreLocation {
    /// The directory, or `s3://BUCKET/PREFIX` (the endpoint is not part of the name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "{}", dir.display()),
            #[cfg(feature = "s3")]
            Self::S3(loc) => write!(f, "{loc}"),
        }
    }
}

/// The embedded default vault's directory: `dirs::data_dir()/coffer/vault`
/// (`~/.local/share/coffer/vault` on Linux).
///
/// # Errors
/// [`OpenError::NoDataDir`] when the user's data directory is unknown (no `HOME`).
pub fn default_vault_dir() -> Result<PathBuf, OpenError> {
    dirs::data_dir().map(|d| d.join("coffer").join("vault")).ok_or(OpenError::NoDataDir)
}

/// The access key a request presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CredentialsSource {
    /// A local vault: the role's file in its `credentials/` directory (`ROLE.toml`, as
    /// `vault init` writes it). S3: the AWS chain (environment variables, profile, web
    /// identity, instance role).
    #[default]
    Implicit,
    /// This credentials file (`access-key`, `secret-key`), whatever the store.
    File(PathBuf),
}

/// Whether a missing vault may be created (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CreateVault {
    /// A missing vault is an error.
    #[default]
    Never,
    /// The embedded default vault is created on first use, when no credentials file is
    /// given: for jobs that store data. A named vault is never created.
    Default,
    /// A missing local vault is created wherever it is named (`coffer init --repo DIR`).
    Always,
}

/// What to open, and as whom.
#[derive(Clone, Debug)]
pub struct StoreRequest {
    /// Where; `None` is the embedded default vault.
    pub location: Option<StoreLocation>,
    /// The access key to present.
    pub credentials: CredentialsSource,
    /// The role asked for explicitly, if any.
    pub role: Option<Role>,
    /// The role the job runs as when none is asked for.
    pub default_role: Role,
    /// Refuse, before any request, a role (asked for, or of the credentials file) that lacks
    /// an action the job's role is chosen for ([`check_job_role`]). Off for commands that
    /// act on single objects, where the store's own checks are the rule.
    pub check_job_role: bool,
    /// Whether a missing vault may be created.
    pub create: CreateVault,
}

impl StoreRequest {
    /// A request for `location` as the job's `default_role`, with implicit credentials,
    /// the job-role check on, and nothing created.
    #[must_use]
    pub fn new(location: Option<StoreLocation>, default_role: Role) -> Self {
        Self {
            location,
            credentials: CredentialsSource::Implicit,
            role: None,
            default_role,
            check_job_role: true,
            create: CreateVault::Never,
        }
    }
}

/// An open store, of the kind it is: some commands need what only one kind has (a local
/// vault's audit log and clock).
pub enum StoreHandle {
    /// A local vault, logged in.
    Local(VaultHandle),
    /// An S3 bucket.
    #[cfg(feature = "s3")]
    S3(crate::s3::S3Store),
}

impl StoreHandle {
    /// The store.
    #[must_use]
    pub fn store(&self) -> &(dyn ObjectStore + 'static) {
        match self {
            Self::Local(h) => h,
            #[cfg(feature = "s3")]
            Self::S3(s) => s,
        }
    }

    /// The store, to share between threads and jobs.
    #[must_use]
    pub fn into_shared(self) -> Arc<dyn ObjectStore> {
        match self {
            Self::Local(h) => Arc::new(h),
            #[cfg(feature = "s3")]
            Self::S3(s) => Arc::new(s),
        }
    }

    /// The vault directory or the `s3://BUCKET/PREFIX` location, for messages and as a
    /// repository's location.
    #[must_use]
    pub fn location(&self) -> String {
        match self {
            Self::Local(h) => h.vault().root().display().to_string(),
            #[cfg(feature = "s3")]
            Self::S3(s) => s.location().to_string(),
        }
    }

    /// The store's notion of now: the vault's clock (which tests may move), or the
    /// environment's clock for S3, whose server decides with its own.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        match self {
            Self::Local(h) => h.vault().clock().now(),
            #[cfg(feature = "s3")]
            Self::S3(_) => crate::Clock::from_env().now(),
        }
    }
}

impl std::ops::Deref for StoreHandle {
    type Target = dyn ObjectStore;

    fn deref(&self) -> &Self::Target {
        self.store()
    }
}

/// A store opened by [`open_store`].
pub struct OpenedStore {
    /// The store, logged in.
    pub handle: StoreHandle,
    /// The vault directory when this call created the vault (the caller says so).
    pub created: Option<PathBuf>,
    /// Whether the location was the embedded default vault.
    pub is_default: bool,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A location of a kind this build cannot open.
    #[error("repository {0}: only local paths and s3:// URLs are supported")]
    Unsupported(String),
    /// A malformed `s3://` location.
    #[error(transparent)]
    Location(StoreError),
    /// The user's data directory, home of the default vault, is unknown.
    #[error("cannot find the user's data directory for the default vault (set HOME or XDG_DATA_HOME)")]
    NoDataDir,
    /// No vault where one was expected (and none may be created there).
    #[error("no vault at {}", path.display())]
    NoVault {
        /// The directory.
        path: PathBuf,
        /// Whether it is the embedded default vault's directory.
        default: bool,
    },
    /// The role cannot run the job ([`check_job_role`]).
    #[error("role {chosen} cannot act as the {job}: it needs {}, which role {chosen} may not do", join(missing))]
    RoleCannot {
        /// The role asked for (or of the credentials file).
        chosen: Role,
        /// The role the job runs as.
        job: Role,
        /// What the job needs that `chosen` may not do.
        missing: Vec<Action>,
        /// The roles that may run the job.
        may: Vec<Role>,
    },
    /// A credentials file of another role than the one asked for.
    #[error("credentials {} belong to role {actual}, not {asked}", file.display())]
    CredentialsRole {
        /// The file.
        file: PathBuf,
        /// Its principal's role.
        actual: Role,
        /// The role asked for.
        asked: Role,
    },
    /// A credentials file that cannot be read.
    #[error(transparent)]
    Credentials(StoreError),
    /// The vault could not be created.
    #[error("cannot create vault {}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The credentials were not accepted.
    #[error("cannot log in to vault {}", path.display())]
    Login {
        /// The vault.
        path: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The store could not be opened.
    #[error("cannot open {location}")]
    Open {
        /// The location.
        location: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

fn join(actions: &[Action]) -> String {
    actions.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and ")
}

impl OpenError {
    /// The class of this error: a request that can never succeed as asked is `Invalid`;
    /// a failure of the store takes its class.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Unsupported(_)
            | Self::NoDataDir
            | Self::NoVault { .. }
            | Self::RoleCannot { .. }
            | Self::CredentialsRole { .. } => ErrorClass::Invalid,
            Self::Location(e) | Self::Credentials(e) => e.class(),
            Self::Create { source, .. } | Self::Login { source, .. } | Self::Open { source, .. } => source.class(),
        }
    }

    /// Whether the request itself names an impossible combination (a role the job cannot
    /// run as, a credentials file of another role): a front end reports it as misuse.
    #[must_use]
    pub fn is_misuse(&self) -> bool {
        matches!(self, Self::RoleCannot { .. } | Self::CredentialsRole { .. })
    }
}

/// What a job running as `job_role` needs to be allowed: the actions its role is chosen for.
#[must_use]
pub fn actions_needed_by(job_role: Role) -> &'static [Action] {
    match job_role {
        Role::Writer => &[Action::Put, Action::Get],
        Role::Reader => &[Action::Get],
        Role::Pruner => &[Action::DeleteVersion],
        Role::Admin | Role::Auditor => &[],
    }
}

/// Refuses `chosen` for a job that runs as `job_role` when it lacks an action the job needs
/// (see the module docs).
///
/// # Errors
/// [`OpenError::RoleCannot`], naming what is missing and which roles may.
pub fn check_job_role(job_role: Role, chosen: Role) -> Result<(), OpenError> {
    let needed = actions_needed_by(job_role);
    let missing: Vec<Action> = needed.iter().copied().filter(|a| !chosen.allows(*a)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let may = Role::ALL.into_iter().filter(|r| needed.iter().all(|a| r.allows(*a))).collect();
    Err(OpenError::RoleCannot { chosen, job: job_role, missing, may })
}

/// Opens the store `req` names, as the principal it asks for (see the module docs).
///
/// # Errors
/// [`OpenError`]: a misused request, no vault, credentials refused, the store unreachable.
pub fn open_store(req: &StoreRequest) -> Result<OpenedStore, OpenError> {
    if let (Some(chosen), true) = (req.role, req.check_job_role) {
        check_job_role(req.default_role, chosen)?;
    }
    let (dir, is_default) = match &req.location {
        None => (default_vault_dir()?, true),
        Some(StoreLocation::Local(dir)) => (dir.clone(), false),
        #[cfg(feature = "s3")]
        Some(StoreLocation::S3(location)) => {
            let handle = StoreHandle::S3(open_s3(location, req)?);
            return Ok(OpenedStore { handle, created: None, is_default: false });
        }
    };
    let (vault, created) = open_vault(&dir, is_default, req)?;
    let file = match &req.credentials {
        CredentialsSource::File(file) => Some(file),
        CredentialsSource::Implicit => None,
    };
    let creds = match file {
        Some(file) => read_credentials_file(file),
        None => vault.read_credentials(req.role.unwrap_or(req.default_role)),
    }
    .map_err(OpenError::Credentials)?;
    let handle = vault.login(&creds).map_err(|source| OpenError::Login { path: vault.root().to_path_buf(), source })?;
    let actual = handle.principal().role;
    if let (Some(file), Some(asked)) = (file, req.role) {
        if actual != asked {
            return Err(OpenError::CredentialsRole { file: file.clone(), actual, asked });
        }
    }
    // A credentials file chosen without a role: its role must be able to run the job too.
    if req.check_job_role {
        check_job_role(req.default_role, actual)?;
    }
    Ok(OpenedStore { handle: StoreHandle::Local(handle), created, is_default })
}

/// Opens (or, as the request allows, creates) the local vault in `dir`.
fn open_vault(dir: &Path, is_default: bool, req: &StoreRequest) -> Result<(LocalVault, Option<PathBuf>), OpenError> {
    match LocalVault::open(dir) {
        Ok(vault) => Ok((vault, None)),
        Err(StoreError::NotAVault { .. }) => {
            let create = match req.create {
                CreateVault::Never => false,
                CreateVault::Default => is_default && req.credentials == CredentialsSource::Implicit,
                CreateVault::Always => true,
            };
            if !create {
                return Err(OpenError::NoVault { path: dir.to_path_buf(), default: is_default });
            }
            create_vault(dir).map(|v| (v, Some(dir.to_path_buf())))
        }
        Err(source) => Err(OpenError::Open { location: dir.display().to_string(), source }),
    }
}

/// Creates a vault, tolerating another process creating the same one at the same moment
/// (two first backups on a new machine): its marker is written last, so once it opens it
/// is complete.
fn create_vault(dir: &Path) -> Result<LocalVault, OpenError> {
    match LocalVault::init(dir, &VaultOptions::default()) {
        Ok(vault) => Ok(vault),
        Err(source) => {
            for _ in 0..50 {
                if let Ok(vault) = LocalVault::open(dir) {
                    return Ok(vault);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(OpenError::Create { path: dir.to_path_buf(), source })
        }
    }
}

#[cfg(feature = "s3")]
fn open_s3(location: &crate::s3::S3Location, req: &StoreRequest) -> Result<crate::s3::S3Store, OpenError> {
    use crate::role::Principal;
    use crate::s3::{Multipart, S3Credentials, S3Options, S3Store};
    let role = req.role.unwrap_or(req.default_role);
    let credentials = match &req.credentials {
        CredentialsSource::File(file) => {
            S3Credentials::Static(read_credentials_file(file).map_err(OpenError::Credentials)?)
        }
        CredentialsSource::Implicit => S3Credentials::Chain,
    };
    S3Store::connect(&S3Options {
        location: location.clone(),
        credentials,
        principal: Principal { name: format!("s3-{role}"), role },
        multipart: Multipart::default(),
    })
    .map_err(|source| OpenError::Open { location: location.to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Capabilities;

    fn request(dir: &Path, role: Role) -> StoreRequest {
        StoreRequest::new(Some(StoreLocation::Local(dir.to_path_buf())), role)
    }

    #[test]
    fn locations_parse_by_scheme() {
        assert_eq!(StoreLocation::parse("/tmp/v").unwrap(), StoreLocation::Local("/tmp/v".into()));
        assert_eq!(StoreLocation::parse("rel/dir").unwrap().local_dir(), Some(Path::new("rel/dir")));
        assert!(matches!(StoreLocation::parse("ftp://host/x"), Err(OpenError::Unsupported(_))));
        #[cfg(feature = "s3")]
        {
            let s3 = StoreLocation::parse("s3://bucket-1/pre?endpoint=http://127.0.0.1:9000").unwrap();
            assert_eq!(s3.to_string(), "s3://bucket-1/pre/");
            assert!(s3.local_dir().is_none());
            assert!(matches!(StoreLocation::parse("s3://B"), Err(OpenError::Location(_))));
        }
    }

    #[test]
    fn a_named_vault_is_never_created_implicitly() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        for create in [CreateVault::Never, CreateVault::Default] {
            let err = open_store(&StoreRequest { create, ..request(&dir, Role::Writer) }).err().unwrap();
            assert!(matches!(&err, OpenError::NoVault { default: false, .. }), "{err}");
            assert_eq!(err.class(), ErrorClass::Invalid);
        }
        assert!(!dir.exists());
        let opened = open_store(&StoreRequest { create: CreateVault::Always, ..request(&dir, Role::Writer) }).unwrap();
        assert_eq!(opened.created.as_deref(), Some(dir.as_path()));
        assert_eq!(opened.handle.principal().role, Role::Writer);
        assert_eq!(opened.handle.capabilities(), Capabilities::LOCAL);
        // Opened again: there, not created.
        let again = open_store(&request(&dir, Role::Reader)).unwrap();
        assert!(again.created.is_none());
        assert_eq!(again.handle.principal().role, Role::Reader);
    }

    #[test]
    fn a_role_the_job_cannot_run_as_is_refused_before_any_request() {
        let tmp = tempfile::tempdir().unwrap();
        // No vault at all: the refusal comes first.
        let req = StoreRequest { role: Some(Role::Writer), ..request(&tmp.path().join("none"), Role::Pruner) };
        let err = open_store(&req).err().unwrap();
        match &err {
            OpenError::RoleCannot { chosen, job, missing, may } => {
                assert_eq!((*chosen, *job), (Role::Writer, Role::Pruner));
                assert_eq!(missing, &[Action::DeleteVersion]);
                assert_eq!(may, &[Role::Pruner]);
            }
            other => panic!("{other}"),
        }
        assert!(err.is_misuse());
        check_job_role(Role::Reader, Role::Writer).unwrap();
    }

    #[test]
    fn a_credentials_file_must_match_the_role_asked_for_and_the_job() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        LocalVault::init(&dir, &VaultOptions::default()).unwrap();
        let pruner_file = dir.join("credentials").join("pruner.toml");
        let with_file = |role, default_role| StoreRequest {
            credentials: CredentialsSource::File(pruner_file.clone()),
            role,
            ..request(&dir, default_role)
        };
        let err = open_store(&with_file(Some(Role::Admin), Role::Admin)).err().unwrap();
        assert!(matches!(err, OpenError::CredentialsRole { actual: Role::Pruner, asked: Role::Admin, .. }), "{err}");
        // Without a role: the file's role must still be able to run the job.
        let err = open_store(&with_file(None, Role::Writer)).err().unwrap();
        assert!(matches!(err, OpenError::RoleCannot { chosen: Role::Pruner, .. }), "{err}");
        let opened = open_store(&with_file(None, Role::Pruner)).unwrap();
        assert_eq!(opened.handle.principal().role, Role::Pruner);
    }
}
