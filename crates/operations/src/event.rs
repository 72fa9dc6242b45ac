//! The typed records every part of operations shares: a job's run ([`RunRecord`], what the
//! ledger stores, `status` shows and metrics count) and an alert ([`AlertEvent`], what the
//! router delivers).
//!
//! Invariant guarded here: these are documented, versioned formats (`docs/ledger.md`,
//! `docs/alerts.md`): field names are stable snake_case; a field is only ever added. No
//! field ever holds a secret: error messages come from the libraries' errors, which never
//! show one.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// A files source's backup.
    Backup,
    /// A PostgreSQL source's base backup.
    BaseBackup,
    /// A PostgreSQL source's WAL streaming (continuous, supervised).
    Stream,
    /// A PostgreSQL source's archiving health check (`pg_stat_archiver`, WAL in the
    /// repository).
    ArchiveCheck,
    /// A repository's verification.
    Verify,
    /// A repository's prune.
    Prune,
    /// A repository's security watch (continuous, supervised): its store's audit log, its
    /// protective configuration against the baseline, CloudTrail events (`docs/security.md`).
    Watch,
    /// A repository's immutability canary: tries what must be refused, with every role's
    /// credentials the daemon holds.
    Canary,
    /// A source's restore drill (`docs/drills.md`).
    Drill,
    /// A repository's full-rebuild drill, from the repository alone.
    Rebuild,
}

impl JobKind {
    /// The kebab-case name (`base-backup`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::BaseBackup => "base-backup",
            Self::Stream => "stream",
            Self::ArchiveCheck => "archive-check",
            Self::Verify => "verify",
            Self::Prune => "prune",
            Self::Watch => "watch",
            Self::Canary => "canary",
            Self::Drill => "drill",
            Self::Rebuild => "rebuild",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's name: `SOURCE/KIND` (`home/backup`, `db/base-backup`) or `REPOSITORY/KIND`
/// (`main/verify`).
#[must_use]
pub fn job_id(owner: &str, kind: JobKind) -> String {
    format!("{owner}/{kind}")
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Done.
    Success,
    /// Done, with warnings (unreadable files, files changed while read).
    Warning,
    /// Failed (after its retries).
    Failed,
    /// Stopped by its timeout.
    TimedOut,
    /// Stopped by the daemon's shutdown (resumes next time).
    Cancelled,
    /// A scheduled slot that did not run (the daemon was down, or the previous run of the
    /// job was still going).
    Missed,
}

impl Outcome {
    /// The kebab-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
            Self::Cancelled => "cancelled",
            Self::Missed => "missed",
        }
    }

    /// Whether the job did its work (success, with or without warnings).
    #[must_use]
    pub fn is_success(self) -> bool {
        matches!(self, Self::Success | Self::Warning)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run of a job: the job ledger's record (format version [`RunRecord::VERSION`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Format version.
    pub version: u32,
    /// Random id of the run (hex).
    pub run_id: String,
    /// `SOURCE/KIND` or `REPOSITORY/KIND`.
    pub job: String,
    /// What the job does.
    pub kind: JobKind,
    /// The source, for source jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The repository's name in `coffer.toml`.
    pub repository: String,
    /// The host that ran it.
    pub host: String,
    /// The scheduled instant this run is for (none: started by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<Timestamp>,
    /// Run late, catching up a slot missed while the daemon was down.
    #[serde(default)]
    pub late: bool,
    /// Started (for a missed slot: the slot).
    pub started: Timestamp,
    /// Ended.
    pub finished: Timestamp,
    /// How it ended.
    pub outcome: Outcome,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// The error's class (`transient`, `integrity`, …) when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// The error, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files (or WAL segments, objects) the job looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Bytes read from the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// Bytes added to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    /// The snapshot written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Warnings (count; the first few are in `details`).
    #[serde(default)]
    pub warnings: u64,
    /// Job-specific facts (verify problems, WAL lag, …), string values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl RunRecord {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;

    /// A run of `job` started at `started` on `host`, with a fresh run id: a success of one
    /// attempt with no numbers yet, which the runner fills in.
    #[must_use]
    pub fn new(
        job: &str,
        kind: JobKind,
        source: Option<&str>,
        repository: &str,
        host: &str,
        started: Timestamp,
    ) -> Self {
        Self {
            version: Self::VERSION,
            run_id: random_id(),
            job: job.to_owned(),
            kind,
            source: source.map(str::to_owned),
            repository: repository.to_owned(),
            host: host.to_owned(),
            scheduled: None,
            late: false,
            started,
            finished: started,
            outcome: Outcome::Success,
            attempts: 1,
            error_class: None,
            error: None,
            files: None,
            bytes_read: None,
            bytes_added: None,
            snapshot: None,
            warnings: 0,
            details: BTreeMap::new(),
        }
    }

    /// How long it ran.
    #[must_use]
    pub fn duration(&self) -> std::time::Duration {
        self.finished.duration_since(self.started).try_into().unwrap_or_default()
    }
}

/// How bad an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// For the record (a recovery, a test).
    Info,
    /// Needs attention soon (a job late, archiving lagging).
    Warning,
    /// A job failed; backups are not being made.
    Error,
    /// Backups are at risk (integrity, immutability).
    Critical,
    /// An attempt to weaken protection, or a store that does not enforce it: delivered to
    /// every target whatever the routes say, repeated until acknowledged
    /// (`coffer alert ack ID`).
    Security,
}

impl Severity {
    /// The kebab-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Security => "security",
        }
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A job failed (after its retries) or timed out.
    JobFailed,
    /// A scheduled run did not happen.
    JobMissed,
    /// A job that was failing or missed succeeded (the problem is resolved).
    JobRecovered,
    /// WAL archiving is behind its threshold, failing, or streaming is down.
    ArchiveLagging,
    /// Verification found problems.
    VerifyProblem,
    /// A new `coffer.toml` was refused on reload (the old one keeps running).
    ConfigRejected,
    /// An alert target keeps failing.
    DeliveryFailing,
    /// `coffer alert test`.
    Test,
    /// A security event (`details.security-kind` says which: `docs/security.md`).
    Security,
    /// A recovery drill ran and did not pass: a check failed or the recovery took longer
    /// than its target (`details.failed_check_N` name them). A drill that could not run at
    /// all is a `job-failed`.
    DrillFailed,
}

impl AlertKind {
    /// The kebab-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobFailed => "job-failed",
            Self::JobMissed => "job-missed",
            Self::JobRecovered => "job-recovered",
            Self::ArchiveLagging => "archive-lagging",
            Self::VerifyProblem => "verify-problem",
            Self::ConfigRejected => "config-rejected",
            Self::DeliveryFailing => "delivery-failing",
            Self::Test => "test",
            Self::Security => "security",
            Self::DrillFailed => "drill-failed",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert (format version [`AlertEvent::VERSION`], the webhook's JSON body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Format version.
    pub version: u32,
    /// Random id (hex).
    pub id: String,
    /// What it is about.
    pub kind: AlertKind,
    /// How bad.
    pub severity: Severity,
    /// The problem this notice is about (`job-failed:home/backup`): repeats and the resolved
    /// notice carry the same key.
    pub problem: String,
    /// `true` on the notice that the problem is over.
    #[serde(default)]
    pub resolved: bool,
    /// When it was raised.
    pub time: Timestamp,
    /// The host of the daemon.
    pub host: String,
    /// The job, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The source (or repository, for its jobs), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The repository, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// One line for a subject or a chat message.
    pub summary: String,
    /// Facts (error class and message, lag, scheduled time, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl AlertEvent {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;
}

/// A random id: 16 hex digits.
#[must_use]
pub fn random_id() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source");
    hex::encode(b)
}
