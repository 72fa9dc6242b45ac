//! PostgreSQL continuous archiving and point-in-time recovery, as a library.
//!
//! Why here: DESIGN.md's "sources" layer is everything Coffer backs up and restores, and a
//! PostgreSQL cluster is one: its base backup is `pg_basebackup`'s tar stream stored as one
//! file, and its restore unpacks that stream with this crate's own [`crate::tar`]. The WAL
//! archive's storage format (`pg/SYSID/wal/TLI/NAME`, never overwritten) stays in
//! `coffer_repository::wal`; this module is the PostgreSQL domain above it.
//!
//! One function per `coffer pg` command, each taking an open [`Repository`], an options
//! struct (serde, and clap behind the `clap` feature) and a [`JobControl`], and returning a
//! typed report or a [`PgError`]:
//!
//! - [`wal_push`] (`archive_command`): stores one WAL file, durably; the same content again
//!   succeeds, different content is refused.
//! - [`wal_fetch`] (`restore_command`): fetches, authenticates and writes one WAL file
//!   atomically, with a prefetch spool for the next segments ([`prefetch_worker`]);
//!   [`PgError::NotArchived`] when it is not archived (the caller turns that into the exit
//!   status PostgreSQL expects).
//! - [`base_backup`]: `pg_basebackup` streamed through the content-defined chunker into a
//!   `pg-base` snapshot, complete only once its WAL is archived.
//! - [`restore`]: the newest base backup before a target, unpacked and fsynced, with the
//!   recovery settings; optionally starts the server and waits for promotion.
//! - [`info`]: clusters, base backups, archived WAL, gaps and recovery windows.
//! - [`stream()`]: `pg_receivewal` into a spool whose WAL is stored as `wal_push` stores it.
//! - [`export_key`]: the repository's unwrapped key for the per-WAL-file commands.
//! - [`drill`]: a restore into scratch space, started on a private socket and checked
//!   (`coffer drill pg`).
//!
//! The pure parts — [`Lsn`], segment names (`coffer_repository::wal::Segment`),
//! [`RestorePlan`] and the restore-point scan — have unit tests; the rest is tested through
//! a real PostgreSQL (the CLI's `pg_*` integration tests, `tests/library.rs`).
//!
//! Invariants guarded: nothing is reported done before it is durable (a WAL file stored, a
//! restore fsynced); a cancelled job acknowledges nothing (no snapshot committed); nothing
//! here prints or exits — messages are [`Event`]s or fields of the reports.

mod backup;
mod catalog;
pub mod client;
pub mod drill;
mod info;
mod key;
mod lsn;
mod plan;
mod restore;
mod stream;
pub mod tls;
mod wal_fetch;
mod wal_push;
pub mod xlog;

pub use backup::{BaseBackupOptions, BaseBackupReport, StartedBackup, base_backup};
pub use catalog::{BaseBackup, base_backups, cluster_by_name};
pub use info::{ClusterInfo, InfoOptions, InfoReport, LatestRestore, RecoveryWindow, info};
pub use key::{ExportKeyOptions, ExportKeyReport, export_key, write_key_file};
pub use lsn::Lsn;
pub use plan::{ClusterWal, PlanTarget, RestorePlan, TimelineSpan, restore_point_hits};
pub use restore::{RecoveryCommand, RestoreOptions, RestoreReport, restore};
pub use stream::{SYSID_FILE, StreamOptions, StreamReport, spool_cluster, stream};
pub use wal_fetch::{FetchedFrom, WalFetchOptions, WalFetchReport, prefetch_worker, wal_fetch};
pub use wal_push::{WalPushOptions, WalPushReport, wal_push};

use coffer_repository::{Event, JobControl, RepoError, Repository};
use coffer_store::ErrorClass;
use std::path::{Path, PathBuf};

/// Errors of the PostgreSQL source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// A repository operation failed (or the job was cancelled).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A repository operation on a named WAL file failed.
    #[error("{context}")]
    RepoAt {
        /// What was being done (`cannot archive WAL file NAME`).
        context: String,
        /// Why.
        #[source]
        source: Box<RepoError>,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What and where.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An argument or a request the repository cannot satisfy: a bad LSN or name, no such
    /// cluster, no base backup before the target, a restore target that is not empty.
    #[error("{0}")]
    Invalid(String),
    /// The WAL recovery needs is not in the archive (a gap), or was not archived in time.
    #[error("{0}")]
    MissingWal(String),
    /// `wal-fetch`: the WAL file is not archived. With `gap`, a later segment of its
    /// timeline is, so this is a hole in the archive rather than its end.
    #[error("{}", if *gap { format!("WAL segment {name} is missing from the archive (later segments exist)") } else { format!("WAL file {name} is not archived") })]
    NotArchived {
        /// The file asked for.
        name: String,
        /// Whether later segments of its timeline are archived.
        gap: bool,
    },
    /// The server, a PostgreSQL client program or the client library failed.
    #[error("{0}")]
    Server(String),
    /// TLS to the server failed: its certificate did not pass the check `sslmode` asks
    /// for (not signed by a trusted CA, not for this host name, expired), or the server
    /// does not accept TLS where it is required. Class `Refused` (exit 3): the server's
    /// credentials were not accepted, the same verdict as rejected credentials; retrying
    /// does not help, and a monitor must not take it for a passing network fault.
    #[error("{0}")]
    Tls(String),
    /// A base backup could not be unpacked.
    #[error("cannot unpack base backup {snapshot} into {dir}")]
    Unpack {
        /// The snapshot (short id).
        snapshot: String,
        /// The target directory.
        dir: String,
        /// Why.
        #[source]
        source: Box<crate::tar::TarError>,
    },
}

impl PgError {
    /// The class of this error; a wrapped repository or tar error's own class shows
    /// through. A request the repository cannot satisfy is `Invalid` (exit 1), as a
    /// missing archived WAL file is for `wal-fetch`'s caller to interpret.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Repo(e) => e.class(),
            Self::RepoAt { source, .. } => source.class(),
            Self::Unpack { source, .. } => source.class(),
            Self::Io { .. } => ErrorClass::Io,
            Self::Invalid(_) | Self::MissingWal(_) | Self::NotArchived { .. } => ErrorClass::Invalid,
            Self::Server(_) => ErrorClass::Other,
            Self::Tls(_) => ErrorClass::Refused,
        }
    }
}

/// Result of a PostgreSQL-source operation.
pub type Result<T, E = PgError> = std::result::Result<T, E>;

pub(crate) fn repo_at(context: impl Into<String>) -> impl FnOnce(RepoError) -> PgError {
    let context = context.into();
    move |source| PgError::RepoAt { context, source: Box::new(source) }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
    let context = context.into();
    move |source| PgError::Io { context, source }
}

/// Emits a warning (the CLI prints it as `coffer: warning: MESSAGE`).
pub(crate) fn warn(ctl: &JobControl, item: &str, message: &str) {
    ctl.emit(&Event::Warning { item, message });
}

/// System identifiers exceed JSON's exact integers (2^53): they are strings in `--json`.
pub(crate) fn as_string<S: serde::Serializer>(v: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The system identifier in `DIR/global/pg_control` (its first field).
pub(crate) fn sysid_from_control(dir: &Path) -> Result<u64> {
    use std::io::Read as _;
    let p = dir.join("global/pg_control");
    let mut f = std::fs::File::open(&p).map_err(io_err(format!(
        "cannot read {} to learn the cluster's system identifier (or pass --sysid)",
        p.display()
    )))?;
    let mut b = [0u8; 8];
    f.read_exact(&mut b).map_err(io_err(format!("cannot read {}", p.display())))?;
    Ok(u64::from_le_bytes(b))
}

/// A PostgreSQL program: `COFFER_PG_BIN/NAME`, else on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin/NAME` (Debian keeps them off `PATH`).
#[must_use]
pub fn pg_program(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("COFFER_PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(name);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join(name).is_file() {
                return d.join(name);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin").join(name);
            p.is_file().then_some((v, p))
        })
        .collect();
    found.sort();
    found.pop().map_or_else(|| PathBuf::from(name), |(_, p)| p)
}

/// Opens `path` new (it must not exist), mode 0600: for key and credentials copies.
pub(crate) fn create_0600(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("cannot create {}", path.display())))
}

/// Whether the repository's store reads ranges only at the cost of whole objects (S3): as
/// its store declares ([`coffer_store::Capabilities`]), not as its location is spelled.
/// Restores then fetch and cache whole packs.
pub(crate) fn is_remote(repo: &Repository) -> bool {
    !repo.store().capabilities().cheap_ranged_reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn options_read_from_a_file_use_kebab_case_human_durations_and_refuse_unknown_keys() {
        let r: RestoreOptions = serde_json::from_str(
            r#"{"target": "/srv/r", "lsn": "0/3000060", "start-timeout": "2m", "key-copy": "/k"}"#,
        )
        .unwrap();
        assert_eq!((r.lsn, r.start_timeout, r.latest), (Some(Lsn(0x300_0060)), Duration::from_secs(120), false));
        assert_eq!(
            serde_json::from_str::<RestoreOptions>(r#"{"target": "/srv/r"}"#).unwrap().start_timeout.as_secs(),
            3600
        );
        let err = serde_json::from_str::<RestoreOptions>(r#"{"target": "/srv/r", "start_timeout": "2m"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(serde_json::from_str::<RestoreOptions>(r#"{"target": "/r", "lsn": "3000060"}"#).is_err());
        assert!(serde_json::from_str::<BaseBackupOptions>(r#"{"wal-timeout": "0s"}"#).is_err());
        let b: BaseBackupOptions = serde_json::from_str(r#"{"tags": ["nightly"]}"#).unwrap();
        assert_eq!((b.wal_timeout, b.tags.as_slice()), (Duration::from_secs(300), ["nightly".to_owned()].as_slice()));
        let s: StreamOptions = serde_json::from_str(r#"{"spool": "/s", "partial-interval": "1m 30s"}"#).unwrap();
        assert_eq!((s.slot.as_str(), s.partial_interval), ("coffer", Duration::from_secs(90)));
        // And back: durations as they are typed, by the one printer (`90s`, `5m`, `12h`, `30d`).
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""partial-interval":"90s""#), "{text}");
        assert_eq!(serde_json::from_str::<WalFetchOptions>(r#"{"name": "n", "dest": "/d"}"#).unwrap().prefetch, 8);
    }

    #[test]
    fn errors_have_classes_and_wrapped_ones_keep_theirs() {
        use coffer_store::ErrorClass;
        assert_eq!(PgError::Invalid("x".into()).class(), ErrorClass::Invalid);
        assert_eq!(PgError::Tls("x".into()).class(), ErrorClass::Refused);
        assert_eq!(PgError::Repo(RepoError::Cancelled).class(), ErrorClass::Cancelled);
        assert_eq!(repo_at("cannot archive WAL file n")(RepoError::Cancelled).class(), ErrorClass::Cancelled);
        let e = PgError::NotArchived { name: "n".into(), gap: true };
        assert!(e.to_string().contains("later segments exist"), "{e}");
    }
}
