//! Which store a command acts on, and as which principal: the command line mapped to a
//! [`coffer_store::StoreRequest`]. The rules themselves (the default vault, when a vault is
//! created, which role may run which job) live in `coffer_store::open`; this module only
//! picks the flags and turns the library's errors into the CLI's messages and exit codes.
//!
//! **Vault.** `coffer vault …` acts on `--vault DIR|s3://…`, else `COFFER_VAULT`, else the
//! repository (`--repo`, `COFFER_REPO`: a local repository is a vault, so `coffer --repo DIR
//! vault versions` inspects it, as an `s3://` repository's bucket is), else the embedded
//! default vault at `dirs::data_dir()/coffer/vault` (`~/.local/share/coffer/vault` on
//! Linux). Repository commands act on `--repo`/`COFFER_REPO`, else the default vault. A
//! command that stores data (`vault put`, `backup`) creates the default vault on first use,
//! so one machine needs no setup, and says so on stderr. Every other command on a default
//! vault that does not exist fails with a hint to create it. A vault named explicitly is
//! never created implicitly: a typo must not silently start a second, empty vault.
//!
//! **Principal.** Every request carries a principal, authenticated by an access key; the
//! CLI never claims a role, it presents credentials. `vault init` writes one access key per
//! role to `DIR/credentials/ROLE.toml` (mode 0600 in a 0700 directory). `--credentials FILE`
//! (`COFFER_CREDENTIALS`) presents that file; otherwise `--role ROLE` (`COFFER_ROLE`) picks
//! `DIR/credentials/ROLE.toml` (on S3: the AWS chain's keys, as that role); otherwise the
//! command's default role (the writer for everyday commands). Separation of duties therefore
//! rests on file permissions: give each user or job only the credentials file of its role,
//! and keep the others elsewhere. When both a credentials file and a role are given and the
//! file belongs to another role, the command refuses rather than guess which was meant.

use crate::Global;
use crate::error::UsageError;
use anyhow::{Result, anyhow};
use coffer_store::open::OpenError;
use coffer_store::{CreateVault, CredentialsSource, OpenedStore, Role, StoreLocation, StoreRequest, open_store};
use std::path::{Path, PathBuf};

/// Which family of commands asks: it decides the location's flags and the hints in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `coffer vault …`: `--vault`, else `--repo`, else the default vault.
    Vault,
    /// Repository commands: `--repo`, else the default vault.
    Repo,
}

/// A path option that was given and is not empty (an empty `COFFER_REPO=` means unset).
fn named(p: Option<&PathBuf>) -> Option<&Path> {
    p.map(PathBuf::as_path).filter(|p| !p.as_os_str().is_empty())
}

/// The location the command names, `None` for the embedded default vault.
pub fn location(global: &Global, family: Family) -> Result<Option<StoreLocation>> {
    let repo = named(global.repo.repo.as_ref());
    let chosen = match family {
        Family::Vault => named(global.vault.as_ref()).or(repo),
        Family::Repo => repo,
    };
    Ok(chosen.map(StoreLocation::from_path).transpose()?)
}

/// The credentials the options present.
pub fn credentials(global: &Global) -> CredentialsSource {
    named(global.credentials.as_ref()).map_or(CredentialsSource::Implicit, |f| CredentialsSource::File(f.to_path_buf()))
}

/// Opens the store the command acts on as `default_role` (or the role the user chose).
/// `check_job_role` refuses up front a chosen role that cannot run the command; `create`
/// says whether a missing vault may be created (and the creation is announced on stderr).
pub fn store(
    global: &Global,
    family: Family,
    default_role: Role,
    check_job_role: bool,
    create: CreateVault,
) -> Result<OpenedStore> {
    let location = location(global, family)?;
    let req = StoreRequest {
        location,
        credentials: credentials(global),
        role: global.role,
        default_role,
        check_job_role,
        create,
    };
    let opened = open_store(&req).map_err(|e| open_error(global, family, e))?;
    if let Some(dir) = &opened.created {
        let credentials = dir.join("credentials");
        if family == Family::Vault {
            eprintln!(
                "coffer: created the default vault at {} (credentials in {})",
                dir.display(),
                credentials.display()
            );
        } else {
            eprintln!("coffer: created vault {} (credentials in {})", dir.display(), credentials.display());
        }
    }
    Ok(opened)
}

/// The library's refusal, in the CLI's words: misuse is a usage error (exit 2) naming the
/// flags; a missing vault says which command creates it.
pub fn open_error(global: &Global, family: Family, e: OpenError) -> anyhow::Error {
    match e {
        OpenError::RoleCannot { chosen, missing, may, .. } => {
            let missing: Vec<String> = missing.iter().map(ToString::to_string).collect();
            let may: Vec<&str> = may.iter().map(|r| r.as_str()).collect();
            UsageError(format!(
                "role {chosen} cannot run `coffer {}`: it needs {}, which role {chosen} may not do (roles that may: {}; choose one with --role)",
                global.command,
                missing.join(" and "),
                may.join(", "),
            ))
            .into()
        }
        OpenError::CredentialsRole { file, actual, asked } => UsageError(format!(
            "credentials {} belong to role {actual}, not {asked} as --role/COFFER_ROLE asks",
            file.display()
        ))
        .into(),
        OpenError::NoVault { path, default } => {
            let p = path.display();
            match (family, default) {
                (Family::Vault, true) => anyhow!(
                    "no vault at the default location {p}; create one with `coffer vault init` (or name one with --vault DIR)"
                ),
                (Family::Vault, false) => anyhow!("{p} is not a coffer vault; create one with `coffer vault init {p}`"),
                (Family::Repo, true) => {
                    anyhow!("no coffer repository at the default location {p} (run `coffer init` first)")
                }
                (Family::Repo, false) => anyhow!("no coffer repository at {p} (run `coffer init --repo {p}` first)"),
            }
        }
        OpenError::NoDataDir => anyhow!(
            "cannot find the user's data directory for the default vault (set HOME or XDG_DATA_HOME, or use --vault DIR)"
        ),
        e => e.into(),
    }
}

/// The credentials files `vault init` writes, one per role.
pub fn credentials_files(vault_dir: &Path) -> Vec<(Role, PathBuf)> {
    Role::ALL.into_iter().map(|r| (r, vault_dir.join("credentials").join(format!("{r}.toml")))).collect()
}
