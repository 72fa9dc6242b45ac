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
//! 2) naming the role, the command and the roles that may (the rule is
//! `coffer_store::open::check_job_role`; the opening itself is `coffer_store::open_store` and
//! `coffer_repository::open_repository`, this module only maps the flags to them).
//!
//! **Password.** `COFFER_PASSWORD`, else `--password-file FILE` (`COFFER_PASSWORD_FILE`;
//! first line), else a prompt on a terminal. Never echoed, logged or shown in errors.

pub mod backup;
pub mod browse;
pub mod key;
pub mod maintain;

use crate::Global;
use crate::open::{self, Family};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use coffer_repository::{
    CacheChoice, InitOptions, KeySource, OpenRepoError, OpenedRepository, RepoError, RepoRequest, Repository,
    open_repository,
};
use coffer_store::{Clock, CreateVault, ObjectStore, Role, StoreLocation};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

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

/// The vault a repository command acts on, and whether the user named it (`--repo`): the
/// directory, or the `s3://` URL as typed.
pub fn vault_dir(r: &RepoOpts) -> Result<(PathBuf, bool)> {
    match r.repo.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => {
            // Refuses an unknown scheme here too.
            StoreLocation::from_path(p)?;
            Ok((p.clone(), true))
        }
        None => Ok((coffer_store::open::default_vault_dir()?, false)),
    }
}

/// Where the password comes from (see the module docs): `COFFER_PASSWORD`, else
/// `--password-file`, else a prompt on a terminal (`confirm` asks twice).
pub fn key_source(r: &RepoOpts, confirm: bool) -> Result<KeySource> {
    if let Ok(p) = std::env::var("COFFER_PASSWORD") {
        if !p.is_empty() {
            return Ok(KeySource::Password(Zeroizing::new(p.into_bytes())));
        }
    }
    if let Some(f) = r.password_file.as_ref().filter(|f| !f.as_os_str().is_empty()) {
        return Ok(KeySource::PasswordFile(f.clone()));
    }
    Ok(KeySource::Password(prompt("repository password: ", "repeat the password: ", confirm)?))
}

/// Reads a password on the terminal, twice when `confirm`.
pub fn prompt(ask: &str, again: &str, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    if !std::io::stdin().is_terminal() {
        bail!("no password: set COFFER_PASSWORD, pass --password-file FILE, or run on a terminal");
    }
    let p = Zeroizing::new(rpassword::prompt_password(ask).context("cannot read the password")?);
    if confirm {
        let repeated = Zeroizing::new(rpassword::prompt_password(again).context("cannot read the password")?);
        if *repeated != *p {
            bail!("the passwords do not match");
        }
    }
    if p.is_empty() {
        bail!("empty password");
    }
    Ok(Zeroizing::new(p.as_bytes().to_vec()))
}

/// The password bytes of a key source (for `init`, which creates with a password).
fn password_bytes(key: KeySource) -> Result<Zeroizing<Vec<u8>>> {
    match key {
        KeySource::Password(p) => Ok(p),
        KeySource::PasswordFile(f) => Ok(coffer_repository::open::read_password_file(&f)?),
        KeySource::KeyFile(f) => bail!("a key file ({}) cannot create a repository", f.display()),
    }
}

/// Logs in to the repository's store as `role` (or the role/credentials the user chose,
/// refused up front if it cannot run the command: `coffer_store::open::check_job_role`).
pub fn store_as(global: &Global, role: Role, create: CreateVault) -> Result<(Arc<dyn ObjectStore>, String, bool)> {
    let opened = open::store(global, Family::Repo, role, true, create)?;
    let location = opened.handle.location();
    Ok((opened.handle.into_shared(), location, opened.is_default))
}

/// Opens the repository as `role` (the reader for reads), as of `--as-of` when given.
pub fn open_repo(global: &Global, r: &RepoOpts, role: Role) -> Result<Repository> {
    open_with(global, r, role, None)
}

/// `--as-of` shows the past: a command that writes (as the writer) is refused with it.
pub fn read_only_as_of(r: &RepoOpts, role: Role) -> Result<()> {
    coffer_repository::open::check_as_of(r.as_of, role == Role::Writer).map_err(as_of_error)
}

fn as_of_error(e: OpenRepoError) -> anyhow::Error {
    match e {
        OpenRepoError::ReadOnlyAsOf { as_of } => crate::error::UsageError(format!(
            "--as-of {as_of} opens the repository read-only, and this command writes to it; drop --as-of"
        ))
        .into(),
        e => e.into(),
    }
}

/// Opens the repository with the master key saved in `key_file` (as `pg restore` writes
/// it for restore_command) instead of a password: no key derivation, so a process per WAL
/// file stays cheap. The file holds a secret; its contents never reach an error message.
pub fn open_repo_with_key(global: &Global, r: &RepoOpts, role: Role, key_file: &std::path::Path) -> Result<Repository> {
    open_with(global, r, role, Some(KeySource::KeyFile(key_file.to_path_buf())))
}

/// Opens the repository: the store as `role`, then the key (`key`, else the password of the
/// options, asked for only once the store is open).
fn open_with(global: &Global, r: &RepoOpts, role: Role, key: Option<KeySource>) -> Result<Repository> {
    read_only_as_of(r, role)?;
    let (store, location, is_default) = store_as(global, role, CreateVault::Never)?;
    let key = match key {
        Some(k) => k,
        None => key_source(r, false)?,
    };
    let req = RepoRequest {
        as_of: r.as_of,
        writes: role == Role::Writer,
        cache: cache_choice(global),
        relist_after: global.relist_after,
        ..RepoRequest::new(key)
    };
    opened(is_default, open_repository(store, &location, &req)).map(|o| o.repo)
}

/// The metadata cache of `--cache-dir`/`--no-cache` (`docs/cache.md`): none with
/// `--no-cache`; a directory named with `--cache-dir` (or `COFFER_CACHE_DIR`) for any
/// repository; else the default directory, for remote repositories only.
pub fn cache_choice(global: &Global) -> CacheChoice {
    if global.no_cache {
        return CacheChoice::Off;
    }
    match global.cache_dir.as_ref().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => CacheChoice::Always(d.clone()),
        None => coffer_repository::cache::default_root().map_or(CacheChoice::Off, CacheChoice::Remote),
    }
}

/// A repository named with `--repo` that is not there: say how to create it *there* (plain
/// `coffer init` would create one in the default vault).
fn opened(is_default: bool, res: std::result::Result<OpenedRepository, OpenRepoError>) -> Result<OpenedRepository> {
    match res {
        Err(e) => match e.repo_error() {
            Some(RepoError::NoRepository { location }) if !is_default => {
                bail!("no coffer repository at {location} (run `coffer init --repo {location}` first)")
            }
            _ => Err(as_of_error(e)),
        },
        Ok(o) => Ok(o),
    }
}

/// `coffer init`: the library's options (the retention flags), flattened.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub opts: InitOptions,
}

/// Runs `coffer init`.
pub fn init(global: &Global, r: &RepoOpts, args: &InitArgs) -> Result<()> {
    read_only_as_of(r, Role::Writer)?;
    // Refused before a vault is created for it (the library checks again).
    let retention = &args.opts.retention;
    if retention.default_retain > retention.max_retain {
        bail!(
            "default retention ({}) exceeds the maximum retention ({})",
            coffer_repository::humanize(retention.default_retain),
            coffer_repository::humanize(retention.max_retain)
        );
    }
    let (store, location, _) = store_as(global, Role::Writer, CreateVault::Always)?;
    let pw = password_bytes(key_source(r, true)?)?;
    let opts = InitOptions { host: host(), ..args.opts.clone() };
    let repo = Repository::init(store, &location, "", &pw, &opts, Clock::from_env())?;
    let mut out = crate::output::Output::new(global.json);
    if out.json() {
        out.doc(&crate::views::Init { repository: location, id: repo.config().id.to_string() })?;
    } else {
        out.line(format!("created coffer repository {} at {location}", repo.config().id.short()))?;
    }
    out.finish()
}

/// Opens the repository for a backup; in the embedded default vault, creates the vault and
/// the repository on first use (one machine, no setup).
pub fn open_or_init_default(global: &Global, r: &RepoOpts) -> Result<Repository> {
    read_only_as_of(r, Role::Writer)?;
    let (store, location, is_default) = store_as(global, Role::Writer, CreateVault::Default)?;
    let req = RepoRequest {
        writes: true,
        cache: cache_choice(global),
        relist_after: global.relist_after,
        init_if_missing: is_default.then(|| InitOptions { host: host(), ..InitOptions::default() }),
        ..RepoRequest::new(key_source(r, false)?)
    };
    let o = opened(is_default, open_repository(store, &location, &req))?;
    if o.created {
        eprintln!("coffer: created repository {} in the default vault {location}", o.repo.config().id.short());
    }
    Ok(o.repo)
}

/// This machine's host name.
pub fn host() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}
