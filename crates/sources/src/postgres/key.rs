//! `pg export-key`: the repository's unwrapped key in a file, for the commands PostgreSQL
//! runs once per WAL file. Opening with a password derives the key with Argon2id (about
//! 0.2 s), which would cap `archive_command` at a few segments a second.
//!
//! Invariant guarded: the file is as sensitive as a password file for this repository (and
//! opens no other), so it is created new (never written through an existing file or link),
//! mode 0600, synced, and its contents never reach a message.

use super::{Result, create_0600, io_err};
use coffer_repository::{Event, JobControl, Repository};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where to write the key (`pg export-key`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ExportKeyOptions {
    /// Where to write the repository key (created, mode 0600; must not exist)
    pub file: PathBuf,
}

/// What `export_key` wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportKeyReport {
    /// The key file.
    pub key_file: PathBuf,
    /// The repository whose key it holds.
    pub location: String,
}

/// Writes `repo`'s key to `opts.file`, which must not exist.
///
/// # Errors
/// I/O errors (an existing file among them).
pub fn export_key(repo: &Repository, opts: &ExportKeyOptions, ctl: &JobControl) -> Result<ExportKeyReport> {
    ctl.check()?;
    write_key_file(repo, &opts.file)?;
    ctl.emit(&Event::Object { action: "stored", key: &opts.file.display().to_string(), bytes: 0 });
    Ok(ExportKeyReport { key_file: opts.file.clone(), location: repo.location().to_owned() })
}

/// Writes the repository key to `path`, which must not exist (mode 0600, synced).
///
/// # Errors
/// I/O errors.
pub fn write_key_file(repo: &Repository, path: &Path) -> Result<()> {
    let mut f = create_0600(path)?;
    let text = repo.key().export_key_file_bytes();
    f.write_all(&text).and_then(|()| f.sync_all()).map_err(io_err(format!("cannot write {}", path.display())))
}
