//! Repository commands: `init`, `backup`, `snapshots`, `ls`, `diff`, `dump`, `stats`,
//! `restore`, `verify`, `prune`.
//!
//! **Where.** `--repo PATH` (`COFFER_REPO`) names a local vault directory holding the
//! repository; without it, the embedded default vault (`~/.local/share/coffer/vault`).
//! `coffer init --repo PATH` creates the vault too when there is none, as `restic init`
//! would; an existing vault is reused. `backup` on the embedded default initialises the
//! repository on first use (one machine, no setup); anywhere else a missing repository is
//! an error, so a typo never starts a second, empty history.
//!
//! **Who.** Each command acts as the least-privileged role that can do it: `init` and
//! `backup` as the writer, reads (`snapshots`, `ls`, `diff`, `dump`, `stats`, `restore`,
//! `verify`) as the reader, `prune` as the pruner (which needs no password: it works from
//! lock metadata alone). `--role`/`--credentials` choose another principal, as for
//! `coffer vault`, but only one whose role may do what the command needs (`Role::allows`):
//! writes need `put` (the writer), reads `get` (reader or writer), `prune` `delete-version`
//! (the pruner). Any other is refused up front, before any request, as a usage error (exit
//! 2) naming the role, the command and the roles that may ([`check_role`]).
//!
//! **Password.** `COFFER_PASSWORD`, else `--password-file FILE` (`COFFER_PASSWORD_FILE`;
//! first line), else a prompt on a terminal. Never echoed, logged or shown in errors.

pub mod backup;
pub mod browse;
pub mod key;
pub mod maintain;

use crate::Global;
use crate::open;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use coffer_repository::{InitOptions, KdfParams, RepoError, Repository, RetentionPolicy};
use coffer_store::{Action, Clock, LocalVault, ObjectStore, Role, StoreError, VaultOptions};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

/// Options of commands that open a repository.
#[derive(Clone, Debug, Default, Args)]
pub struct RepoOpts {
    /// The repository: a local vault directory or s3://BUCKET/PREFIX?endpoint=URL&region=R [default: the embedded default vault]
    #[arg(long, global = true, env = "COFFER_REPO", value_name = "PATH")]
    pub repo: Option<PathBuf>,

    /// Read the password from the first line of this file (else COFFER_PASSWORD, else a prompt)
    #[arg(long, global = true, env = "COFFER_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// See the repository as it was at TIME (RFC 3339), by the store's own version times: anything stored later, forged snapshots included, does not exist. Read-only
    #[arg(long, global = true, value_name = "TIME", value_parser = crate::parse::time)]
    pub as_of: Option<jiff::Timestamp>,
}

/// The vault a repository command acts on.
pub fn vault_dir(r: &RepoOpts) -> Result<(PathBuf, bool)> {
    match &r.repo {
        Some(p) if !p.as_os_str().is_empty() => {
            let s = p.to_string_lossy();
            if s.contains("://") && !crate::s3::is_s3(&s) {
                bail!("repository {s}: only local paths and s3:// URLs are supported");
            }
            Ok((p.clone(), true))
        }
        _ => Ok((open::default_vault_dir()?, false)),
    }
}

/// Reads the password (see the module docs). `confirm` asks twice on a terminal.
pub fn password(r: &RepoOpts, confirm: bool) -> Result<Vec<u8>> {
    if let Ok(p) = std::env::var("COFFER_PASSWORD") {
        if !p.is_empty() {
            return Ok(p.into_bytes());
        }
    }
    if let Some(f) = r.password_file.as_ref().filter(|f| !f.as_os_str().is_empty()) {
        return read_password_file(f);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: set COFFER_PASSWORD, pass --password-file FILE, or run on a terminal");
    }
    let p = rpassword::prompt_password("repository password: ").context("cannot read the password")?;
    if confirm {
        let again = rpassword::prompt_password("repeat the password: ").context("cannot read the password")?;
        if again != p {
            bail!("the passwords do not match");
        }
    }
    if p.is_empty() {
        bail!("empty password");
    }
    Ok(p.into_bytes())
}

/// The first line of a password file.
pub fn read_password_file(f: &std::path::Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(f).with_context(|| format!("cannot read password file {}", f.display()))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        bail!("password file {} is empty", f.display());
    }
    Ok(line.as_bytes().to_vec())
}

/// What a command acting as `role` needs to be allowed (the actions that set its role).
fn needed_actions(role: Role) -> &'static [Action] {
    match role {
        Role::Writer => &[Action::Put, Action::Get],
        Role::Reader => &[Action::Get],
        Role::Pruner => &[Action::DeleteVersion],
        Role::Admin | Role::Auditor => &[],
    }
}

/// Refuses, before any request, an explicit `--role`/`COFFER_ROLE` (or a credentials file
/// of a role) that the command cannot run as: one that lacks an action the command's own
/// role is chosen for (`Role::allows`). Without this, `coffer --role writer prune` would run
/// as the writer, whose deletes the store refuses one by one, or do nothing at all.
pub fn check_role(global: &Global, command_role: Role, chosen: Role) -> Result<()> {
    let missing: Vec<Action> = needed_actions(command_role).iter().copied().filter(|a| !chosen.allows(*a)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let may: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|r| needed_actions(command_role).iter().all(|a| r.allows(*a)))
        .map(Role::as_str)
        .collect();
    let missing: Vec<String> = missing.iter().map(ToString::to_string).collect();
    Err(crate::error::UsageError(format!(
        "role {chosen} cannot run `coffer {}`: it needs {}, which role {chosen} may not do (roles that may: {}; choose one with --role)",
        global.command,
        missing.join(" and "),
        may.join(", "),
    ))
    .into())
}

/// Logs in to the repository's vault as `role` (or the role/credentials the user chose).
pub fn store_as(
    global: &Global,
    r: &RepoOpts,
    role: Role,
    create_vault: bool,
) -> Result<(Arc<dyn ObjectStore>, String)> {
    if let Some(chosen) = global.role {
        check_role(global, role, chosen)?;
    }
    let (dir, explicit) = vault_dir(r)?;
    if let Some(url) = dir.to_str().filter(|d| crate::s3::is_s3(d)) {
        // An S3 bucket is created by `coffer vault init s3://…` (by the admin), never here.
        let store = crate::s3::open(global, url, role)?;
        let location = store.location().to_string();
        return Ok((Arc::new(store), location));
    }
    let vault = match LocalVault::open(&dir) {
        Ok(v) => v,
        Err(StoreError::NotAVault { .. }) if create_vault => {
            let v = LocalVault::init(&dir, &VaultOptions::default())
                .with_context(|| format!("cannot create vault {}", dir.display()))?;
            eprintln!("coffer: created vault {} (credentials in {})", dir.display(), dir.join("credentials").display());
            v
        }
        Err(StoreError::NotAVault { .. }) if explicit => {
            bail!("no coffer repository at {} (run `coffer init --repo {}` first)", dir.display(), dir.display())
        }
        Err(StoreError::NotAVault { .. }) => {
            bail!("no coffer repository at the default location {} (run `coffer init` first)", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", dir.display())),
    };
    let handle = open::login(global, &vault, role)?;
    // A credentials file chosen without --role: its role must be able to run the command too.
    check_role(global, role, handle.principal().role)?;
    Ok((Arc::new(handle), dir.display().to_string()))
}

/// Opens the repository for reading (as the reader unless told otherwise), as of `--as-of`
/// when given.
pub fn open_repo(global: &Global, r: &RepoOpts, role: Role) -> Result<Repository> {
    read_only_as_of(r, role)?;
    let (store, location) = store_as(global, r, role, false)?;
    let pw = password(r, false)?;
    opened(r, Repository::open_as_of(store, &location, "", &pw, Clock::from_env(), r.as_of))
}

/// `--as-of` shows the past: a command that writes (as the writer) is refused with it.
pub fn read_only_as_of(r: &RepoOpts, role: Role) -> Result<()> {
    if let (Some(t), Role::Writer) = (r.as_of, role) {
        return Err(crate::error::UsageError(format!(
            "--as-of {t} opens the repository read-only, and this command writes to it; drop --as-of"
        ))
        .into());
    }
    Ok(())
}

/// Opens the repository with the master key saved in `key_file` (as `pg restore` writes
/// it for restore_command) instead of a password: no key derivation, so a process per WAL
/// file stays cheap. The file holds a secret; its contents never reach an error message.
pub fn open_repo_with_key(global: &Global, r: &RepoOpts, role: Role, key_file: &std::path::Path) -> Result<Repository> {
    read_only_as_of(r, role)?;
    let (store, location) = store_as(global, r, role, false)?;
    let text = zeroize::Zeroizing::new(
        std::fs::read(key_file).with_context(|| format!("cannot read key file {}", key_file.display()))?,
    );
    let key = coffer_repository::MasterKey::import_key_file_bytes(&text)
        .ok_or_else(|| anyhow::anyhow!("key file {} does not hold a coffer repository key", key_file.display()))?;
    opened(r, Repository::open_with_key_as_of(store, &location, "", key, Clock::from_env(), r.as_of))
        .with_context(|| format!("the key in {} does not open {location}", key_file.display()))
}

/// A repository named with `--repo` that is not there: say how to create it *there* (plain
/// `coffer init` would create one in the default vault).
fn opened(r: &RepoOpts, res: std::result::Result<Repository, RepoError>) -> Result<Repository> {
    match res {
        Err(RepoError::NoRepository { location }) if vault_dir(r).is_ok_and(|(_, explicit)| explicit) => {
            bail!("no coffer repository at {location} (run `coffer init --repo {location}` first)")
        }
        other => Ok(other?),
    }
}

/// `coffer init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Default snapshot lifetime when a backup names none
    #[arg(long, value_parser = crate::parse::duration, value_name = "DURATION", default_value = "30d")]
    pub default_retain: std::time::Duration,
    /// Ceiling: no snapshot is kept longer (the policy's 90 days after deletion, less the lock margin and rounding)
    #[arg(long, value_parser = crate::parse::duration, value_name = "DURATION", default_value = "88d")]
    pub max_retain: std::time::Duration,
    /// Lock mode of every object
    #[arg(long, default_value = "compliance", value_name = "MODE")]
    pub mode: coffer_store::RetentionMode,
}

/// Runs `coffer init`.
pub fn init(global: &Global, r: &RepoOpts, args: &InitArgs) -> Result<()> {
    read_only_as_of(r, Role::Writer)?;
    // Refused before a vault is created for it (the library checks again).
    if args.default_retain > args.max_retain {
        bail!(
            "default retention ({}) exceeds the maximum retention ({})",
            coffer_repository::humanize(args.default_retain),
            coffer_repository::humanize(args.max_retain)
        );
    }
    let (store, location) = store_as(global, r, Role::Writer, true)?;
    let pw = password(r, true)?;
    let opts = InitOptions {
        retention: RetentionPolicy {
            mode: args.mode,
            default_retain: args.default_retain,
            max_retain: args.max_retain,
            ..RetentionPolicy::default()
        },
        kdf: KdfParams::default(),
        host: host(),
    };
    let repo = Repository::init(store, &location, "", &pw, &opts, Clock::from_env())?;
    let mut out = crate::output::Output::new(global.json);
    if out.json() {
        out.doc(&serde_json::json!({"repository": location, "id": repo.config().id.to_string()}))?;
    } else {
        out.line(format!("created coffer repository {} at {location}", repo.config().id.short()))?;
    }
    out.finish()
}

/// Initialises the repository in the embedded default vault when `backup` finds none.
pub fn open_or_init_default(global: &Global, r: &RepoOpts) -> Result<Repository> {
    read_only_as_of(r, Role::Writer)?;
    let (_, explicit) = vault_dir(r)?;
    let (store, location) = store_as(global, r, Role::Writer, !explicit)?;
    let pw = password(r, false)?;
    match Repository::open(store.clone(), &location, "", &pw, Clock::from_env()) {
        Err(RepoError::NoRepository { .. }) if !explicit => {
            let opts = InitOptions { host: host(), ..InitOptions::default() };
            let repo = Repository::init(store, &location, "", &pw, &opts, Clock::from_env())?;
            eprintln!("coffer: created repository {} in the default vault {location}", repo.config().id.short());
            Ok(repo)
        }
        other => opened(r, other),
    }
}

/// This machine's host name.
pub fn host() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}
