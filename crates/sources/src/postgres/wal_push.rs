//! `pg wal-push` (`archive_command`): one WAL file into the repository, durably.
//!
//! The system identifier of a WAL segment comes from its long page header (the first page
//! of every segment carries it); for `.history`/`.backup` files it is read from
//! `global/pg_control` of the working directory (the data directory, where PostgreSQL runs
//! `archive_command`), unless given. Invariant guarded (`Repository::put_wal`): success is
//! reported only once the file is durable, and an archived file is never overwritten.

use super::{PgError, Result, io_err, repo_at, sysid_from_control};
use coffer_repository::wal::sysid_from_header;
use coffer_repository::{Event, JobControl, Repository, WalPut};
use std::path::{Path, PathBuf};

/// Which WAL file to archive (`pg wal-push`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct WalPushOptions {
    /// The WAL file (%p)
    pub path: PathBuf,
    /// The cluster's system identifier [default: from the segment header or global/pg_control]
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_SYSID"))]
    #[serde(default)]
    pub sysid: Option<u64>,
}

/// What `wal_push` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WalPushReport {
    /// The file's name.
    pub file: String,
    /// The cluster's system identifier.
    #[serde(serialize_with = "super::as_string")]
    pub sysid: u64,
    /// Whether it was stored now (`false`: it already was, with the same content).
    pub stored: bool,
}

/// Archives the WAL file `opts.path`.
///
/// # Errors
/// `Invalid` for a path without a file name; I/O errors reading it; repository errors
/// (`Invalid` naming the file when it is archived with other content).
pub fn wal_push(repo: &Repository, opts: &WalPushOptions, ctl: &JobControl) -> Result<WalPushReport> {
    ctl.check()?;
    let name = opts
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| PgError::Invalid(format!("{} is not a WAL file path", opts.path.display())))?
        .to_owned();
    let data = std::fs::read(&opts.path).map_err(io_err(format!("cannot read WAL file {}", opts.path.display())))?;
    let sysid = match opts.sysid.or_else(|| sysid_from_header(&data)) {
        Some(s) => s,
        None => sysid_from_control(Path::new("."))?,
    };
    let put = repo.put_wal(sysid, &name, &data).map_err(repo_at(format!("cannot archive WAL file {name}")))?;
    let stored = put == WalPut::Stored;
    if stored {
        ctl.emit(&Event::Object { action: "stored", key: &name, bytes: data.len() as u64 });
    }
    Ok(WalPushReport { file: name, sysid, stored })
}
