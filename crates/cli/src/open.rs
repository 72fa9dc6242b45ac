//! Which vault a command acts on, and as which principal.
//!
//! **Vault.** `--vault DIR`, else `COFFER_VAULT`, else a local repository's directory
//! (`--repo DIR`, `COFFER_REPO`: a local repository is a vault, so `coffer --repo DIR vault
//! versions` inspects it, as an `s3://` repository's bucket is), else the embedded default vault at
//! `dirs::data_dir()/coffer/vault` (`$XDG_DATA_HOME/coffer/vault`, i.e.
//! `~/.local/share/coffer/vault` on Linux). A command that stores data (`put`) creates the
//! default vault on first use, so one machine needs no setup, and says so on stderr. Every
//! other command on a default vault that does not exist fails with a hint to run
//! `coffer vault init`. A vault named explicitly is never created implicitly: a typo must
//! not silently start a second, empty vault.
//!
//! **Principal.** Every request carries a principal, authenticated by an access key; the
//! CLI never claims a role, it presents credentials. `vault init` writes one access key per
//! role to `DIR/credentials/ROLE.toml` (mode 0600 in a 0700 directory). `--credentials FILE`
//! (`COFFER_CREDENTIALS`) presents that file; otherwise `--role ROLE` (`COFFER_ROLE`) picks
//! `DIR/credentials/ROLE.toml`; otherwise the command's default role (the writer for
//! everyday commands). Separation of duties therefore rests on file permissions: give each
//! user or job only the credentials file of its role, and keep the others elsewhere. When
//! both a credentials file and a role are given and the file belongs to another role, the
//! command refuses rather than guess which was meant.

use crate::Global;
use crate::error::UsageError;
use anyhow::{Context as _, Result, anyhow};
use coffer_store::vault::read_credentials_file;
use coffer_store::{LocalVault, ObjectStore as _, Role, StoreError, VaultHandle, VaultOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the vault is, and whether the user named it.
#[derive(Clone, Debug)]
pub enum Location {
    /// Named by `--vault` or `COFFER_VAULT`, or a local `--repo`/`COFFER_REPO`.
    Explicit(PathBuf),
    /// The embedded default in the user's data directory.
    Default(PathBuf),
}

impl Location {
    /// Resolves `--vault`, `COFFER_VAULT`, then a local `--repo`/`COFFER_REPO` (an `s3://`
    /// one is the caller's business), then the default.
    pub fn resolve(global: &Global) -> Result<Self> {
        let named = |p: &Option<PathBuf>| p.as_ref().filter(|p| !p.as_os_str().is_empty()).cloned();
        if let Some(dir) = named(&global.vault) {
            return Ok(Self::Explicit(dir));
        }
        match named(&global.repo.repo).filter(|r| !r.to_str().is_some_and(crate::s3::is_s3)) {
            Some(repo) => Ok(Self::Explicit(repo)),
            None => Ok(Self::Default(default_vault_dir()?)),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            Self::Explicit(p) | Self::Default(p) => p,
        }
    }
}

/// The embedded default vault's directory.
pub fn default_vault_dir() -> Result<PathBuf> {
    dirs::data_dir().map(|d| d.join("coffer").join("vault")).ok_or_else(|| {
        anyhow!("cannot find the user's data directory for the default vault (set HOME or XDG_DATA_HOME, or use --vault DIR)")
    })
}

/// What a command will do, which decides whether a missing default vault is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Reads or changes what is there: a missing vault is an error.
    Use,
    /// Stores data: a missing *default* vault is created first.
    Store,
}

/// Opens the vault the command acts on.
pub fn open_vault(global: &Global, intent: Intent) -> Result<LocalVault> {
    let location = Location::resolve(global)?;
    let path = location.path();
    match LocalVault::open(path) {
        Ok(vault) => Ok(vault),
        Err(StoreError::NotAVault { .. }) => match location {
            // Credentials from elsewhere cannot belong to a vault that does not exist yet.
            Location::Default(_) if intent == Intent::Store && !has_credentials_file(global) => create_default(path),
            Location::Default(_) => Err(anyhow!(
                "no vault at the default location {}; create one with `coffer vault init` (or name one with --vault DIR)",
                path.display()
            )),
            Location::Explicit(_) => Err(anyhow!(
                "{} is not a coffer vault; create one with `coffer vault init {}`",
                path.display(),
                path.display()
            )),
        },
        Err(e) => Err(e).with_context(|| format!("cannot open vault {}", path.display())),
    }
}

fn has_credentials_file(global: &Global) -> bool {
    global.credentials.as_ref().is_some_and(|f| !f.as_os_str().is_empty())
}

/// Creates the default vault on first use, tolerating another process doing the same.
fn create_default(path: &Path) -> Result<LocalVault> {
    match LocalVault::init(path, &VaultOptions::default()) {
        Ok(vault) => {
            eprintln!(
                "coffer: created the default vault at {} (credentials in {})",
                path.display(),
                path.join("credentials").display()
            );
            Ok(vault)
        }
        Err(init_err) => {
            // Another process may be creating it at this moment; its marker comes last.
            for _ in 0..50 {
                if let Ok(vault) = LocalVault::open(path) {
                    return Ok(vault);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(init_err).with_context(|| format!("cannot create the default vault at {}", path.display()))
        }
    }
}

/// Logs in to `vault` as the principal the options choose (see the module docs).
pub fn login(global: &Global, vault: &LocalVault, default_role: Role) -> Result<VaultHandle> {
    let file = global.credentials.as_ref().filter(|f| !f.as_os_str().is_empty());
    let creds = match file {
        Some(file) => read_credentials_file(file)?,
        None => vault.read_credentials(global.role.unwrap_or(default_role))?,
    };
    let handle = vault.login(&creds).with_context(|| format!("cannot log in to vault {}", vault.root().display()))?;
    if let (Some(file), Some(role)) = (file, global.role) {
        let actual = handle.principal().role;
        if actual != role {
            return Err(UsageError(format!(
                "credentials {} belong to role {actual}, not {role} as --role/COFFER_ROLE asks",
                file.display()
            ))
            .into());
        }
    }
    Ok(handle)
}

/// The credentials files `vault init` writes, one per role.
pub fn credentials_files(vault_dir: &Path) -> Vec<(Role, PathBuf)> {
    Role::ALL.into_iter().map(|r| (r, vault_dir.join("credentials").join(format!("{r}.toml")))).collect()
}
