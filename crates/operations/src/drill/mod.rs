//! Recovery drills: restores rehearsed, checked and timed, with the report kept as evidence
//! (policy §6). A drill restores into scratch space, checks what came back, measures the
//! recovery time (RTO), cleans up and returns one [`DrillReport`].
//!
//! - [`files`]: a snapshot (latest, random, or a sample of its files) restored and every
//!   byte and metadata field checked against the snapshot, and the objects read checked to
//!   be locked until the snapshot expires.
//! - [`pg`]: a throwaway PostgreSQL server restored to a point in the recovery window,
//!   started on a private socket, checked (`pg_amcheck`, catalog, the user's SQL checks).
//! - [`rebuild`]: the full rebuild, from nothing but the repository's location, the
//!   reader's credentials and the password: the policy the daemon ran is read back from the
//!   repository ([`PolicyRecord`]) and every source it declares is restored and checked.
//!
//! Invariants guarded here:
//! - **A drill reads as the `reader`** and never writes to the repository: its report
//!   reaches the ledger through the local outbox, appended by the daemon as the writer
//!   (`ledger::DRILL`), so a drill needs no more rights than a restore.
//! - **A drill that could not check something did not pass**: every check is recorded with
//!   its outcome; one failed check, or a recovery time over its target, fails the drill.
//! - **Scratch space is removed** whatever the outcome (unless asked to keep it), and a
//!   drill never restores into a directory that is not empty.
//!
//! The report's format is documented in `docs/drills.md` (version [`DrillReport::VERSION`]).

pub mod files;
pub mod pg;
pub mod policy;
pub mod rebuild;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a drill restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillKind {
    /// A files snapshot.
    Files,
    /// A PostgreSQL cluster to a point in time.
    Postgres,
    /// Everything the stored policy declares, from the repository alone.
    Rebuild,
}

impl DrillKind {
    /// The kebab-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Files => "files",
            Self::Postgres => "postgres",
            Self::Rebuild => "rebuild",
        }
    }
}

/// How one check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckOutcome {
    /// It held.
    Passed,
    /// It did not: the drill fails.
    Failed,
    /// Not run (an earlier step failed, or there was nothing to check); never a pass.
    Skipped,
}

/// One check of a drill: a built-in one (`content`, `metadata`, `locks`, `rto`,
/// `pg-connect`, `pg-amcheck`, `pg-catalog`, …) or a user's SQL check (`sql:NAME`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The check's name.
    pub name: String,
    /// The source it checked (a rebuild checks several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How it ended.
    pub outcome: CheckOutcome,
    /// What was checked and found, one line (counts, the first mismatch, the query's
    /// result).
    pub detail: String,
}

/// One source a drill restored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restored {
    /// The source's name (none: a drill on a repository without coffer.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Files or PostgreSQL.
    pub kind: DrillKind,
    /// The snapshot restored (files), or the base backup's snapshot (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The snapshot's (or the base backup's) time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<Timestamp>,
    /// PostgreSQL: the recovery target (`time 2026-…`, `lsn 0/…`, `name …`, `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// PostgreSQL: the time the recovered data is from (the target time, or the last commit
    /// replayed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_time: Option<Timestamp>,
    /// Files (or relations) restored.
    #[serde(default)]
    pub files: u64,
    /// Bytes restored.
    #[serde(default)]
    pub bytes: u64,
    /// Seconds from the drill's start to this source being back (last byte synced; for
    /// PostgreSQL, the server ready at the target).
    pub rto_seconds: f64,
    /// The source's RTO target, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_target_seconds: Option<f64>,
}

/// A drill's report (format version [`DrillReport::VERSION`]): the ledger record of kind
/// `drill`, what `coffer drill … --json` prints and `coffer drill history` lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// Format version.
    pub version: u32,
    /// Random id (hex).
    pub id: String,
    /// What was drilled.
    pub kind: DrillKind,
    /// The job (`SOURCE/drill`, `REPOSITORY/rebuild`), or `manual` for a drill run by hand
    /// outside the policy's jobs.
    pub job: String,
    /// The repository's name in coffer.toml (or its location for an ad-hoc drill).
    pub repository: String,
    /// The host that ran it.
    pub host: String,
    /// Started.
    pub started: Timestamp,
    /// Ended (scratch space removed).
    pub finished: Timestamp,
    /// Whether every check passed and the RTO met its target.
    pub passed: bool,
    /// Why the drill failed before its checks could run (restore failed, …), one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was restored.
    #[serde(default)]
    pub restored: Vec<Restored>,
    /// Every check, in the order run.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Seconds from start to everything back (the drill's RTO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    /// The RTO target, seconds (a rebuild's: the whole; else the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_target_seconds: Option<f64>,
    /// Seconds between the restored data's time and the drill's start (the data age).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_age_seconds: Option<f64>,
    /// Restored bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// Versions of what took part: `coffer`, `postgres`, …
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
}

impl DrillReport {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;

    /// An empty report of `kind` for `job`, started now, with a fresh id; `passed` false
    /// until [`DrillReport::finish`] decides.
    #[must_use]
    pub fn new(kind: DrillKind, job: &str, repository: &str, host: &str, started: Timestamp) -> Self {
        let mut versions = BTreeMap::new();
        versions.insert("coffer".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
        Self {
            version: Self::VERSION,
            id: crate::event::random_id(),
            kind,
            job: job.to_owned(),
            repository: repository.to_owned(),
            host: host.to_owned(),
            started,
            finished: started,
            passed: false,
            error: None,
            restored: Vec::new(),
            checks: Vec::new(),
            rto_seconds: None,
            rto_target_seconds: None,
            data_age_seconds: None,
            throughput: None,
            versions,
        }
    }

    /// Adds a check.
    pub fn check(&mut self, name: &str, source: Option<&str>, outcome: CheckOutcome, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            source: source.map(str::to_owned),
            outcome,
            detail: detail.into(),
        });
    }

    /// Ends the report at `finished`: adds the `rto` check when a target is set, and
    /// decides `passed` (no error, at least one check, none failed or skipped).
    pub fn finish(&mut self, finished: Timestamp) {
        self.finished = finished;
        if let (Some(rto), Some(target)) = (self.rto_seconds, self.rto_target_seconds) {
            let outcome = if rto <= target { CheckOutcome::Passed } else { CheckOutcome::Failed };
            self.check("rto", None, outcome, format!("recovered in {rto:.1}s, target {target:.0}s"));
        }
        self.passed = self.error.is_none()
            && !self.checks.is_empty()
            && self.checks.iter().all(|c| c.outcome == CheckOutcome::Passed);
    }

    /// The checks that failed, one line each (`NAME: DETAIL`).
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.outcome != CheckOutcome::Passed)
            .map(|c| {
                format!("{}{}: {}", c.source.as_deref().map(|s| format!("{s}: ")).unwrap_or_default(), c.name, c.detail)
            })
            .collect()
    }
}

/// The policy file as the daemon ran it, stored in the repository's ledger (kind
/// `ledger::POLICY`) so a rebuild needs nothing from the host: the TOML text (secrets are
/// only references in it), its digest, and when it was recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Format version (1).
    pub version: u32,
    /// Unique per record (hex): the digest and the time.
    pub id: String,
    /// BLAKE3 of `toml`, hex.
    pub hash: String,
    /// The repository's name in the policy (the rebuild restores its sources).
    pub repository: String,
    /// When recorded.
    pub recorded: Timestamp,
    /// The policy file's text.
    pub toml: String,
}

/// Why a drill could not run at all (a drill that ran and found problems is a report with
/// `passed: false`, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A bad request: no such snapshot, source or cluster; a scratch directory not empty.
    #[error("{0}")]
    Invalid(String),
    /// The repository could not be opened or read.
    #[error(transparent)]
    Repo(#[from] coffer_repository::RepoError),
    /// Opening the repository from the policy failed.
    #[error(transparent)]
    Open(#[from] crate::open::OpenJobError),
    /// Scratch space could not be made or removed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Stopped on request.
    #[error("drill cancelled")]
    Cancelled,
}

impl DrillError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        use coffer_store::ErrorClass;
        match self {
            Self::Invalid(_) => ErrorClass::Invalid,
            Self::Repo(e) => e.class(),
            Self::Open(e) => e.class(),
            Self::Io { .. } => ErrorClass::Io,
            Self::Cancelled => ErrorClass::Cancelled,
        }
    }
}
