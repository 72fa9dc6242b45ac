//! `coffer audit`: a clause-by-clause report on the policy (§8 review), each clause met,
//! not met or unknown with its evidence, gathered from the configuration, the store's
//! protection, the ledger (runs, drills, security events) and the repository's snapshots
//! and locks; with the proof of the retention ceiling (§5). Rendered as JSON, Markdown or one
//! self-contained HTML file (`docs/audit.md`); the report's digest is recorded in the ledger
//! (kind `ledger::AUDIT`, body [`AuditRecord`]).
//!
//! - [`evidence`]: what is read, read-only, per repository (never fails: what cannot be read
//!   is evidence too, and makes the clauses that need it `unknown`).
//! - [`clauses`]: the verdicts, one per policy clause the evidence can judge.
//! - [`ceiling`]: the §5 proof, "data deleted at the source today is gone from every backup
//!   by DATE", from the snapshots' expiries, the objects' lock ends and the prune schedule.
//! - [`render`]: JSON (format [`REPORT_VERSION`]), Markdown, HTML.
//!
//! Invariants guarded here:
//! - **Never met by default**: a clause whose evidence cannot be read is `unknown`, and an
//!   unknown clause fails the audit as a clause not met does (not proven).
//! - **Everything read from the repository is hostile**: a record that does not parse is a
//!   finding in the report, never a crash; every text from it is escaped by the renderers.
//! - **Secrets never reach the report**: credentials are named by their file, never read.

pub mod ceiling;
pub mod clauses;
pub mod evidence;
pub mod render;

use crate::config::Config;
use coffer_store::Clock;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The ledger record of an audit report: its digest, so a report handed to an auditor can
/// be matched against the repository's tamper-evident history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Format version (1).
    pub version: u32,
    /// Random id (hex).
    pub id: String,
    /// When the report was generated.
    pub generated: Timestamp,
    /// The format hashed (`json`, `md`, `html`).
    pub format: String,
    /// BLAKE3 of the report's bytes, hex.
    pub hash: String,
    /// Clauses met, not met and unknown.
    pub met: u32,
    /// Clauses not met.
    pub not_met: u32,
    /// Clauses unknown.
    pub unknown: u32,
}

impl AuditRecord {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;
}

/// The JSON report's format version.
pub const REPORT_VERSION: u32 = 1;

/// The policy's retention ceiling (§5): "a maximum backup retention of 90 days after data
/// deletion".
pub const POLICY_CEILING: Duration = Duration::from_secs(90 * 86_400);

/// The default period the report covers (`--since`): the last 90 days.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(90 * 86_400);

/// A clause's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The evidence shows the clause holds.
    Met,
    /// The evidence shows it does not.
    NotMet,
    /// The evidence could not be read: not proven either way.
    Unknown,
}

impl Status {
    /// `met`, `not-met`, `unknown`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::NotMet => "not-met",
            Self::Unknown => "unknown",
        }
    }

    /// The worse of two verdicts (not met over unknown over met).
    #[must_use]
    pub fn worst(self, other: Self) -> Self {
        let rank = |s: Self| match s {
            Self::Met => 0,
            Self::Unknown => 1,
            Self::NotMet => 2,
        };
        if rank(other) > rank(self) { other } else { self }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One clause of the policy, judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clause {
    /// Stable id (`4.1-compliance-lock`).
    pub id: String,
    /// The policy section (`4.1`).
    pub section: String,
    /// A short title.
    pub title: String,
    /// What the policy says, quoted.
    pub policy: String,
    /// The verdict.
    pub status: Status,
    /// What was read and found, one line each.
    pub evidence: Vec<String>,
    /// Why it is not met (or unknown), one line each; empty when met.
    pub reasons: Vec<String>,
}

/// One repository's part of the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepositoryReport {
    /// Its name in coffer.toml.
    pub name: String,
    /// Its location as shown (no credentials).
    pub location: String,
    /// Every clause judged for it.
    pub clauses: Vec<Clause>,
    /// The §5 proof (none when the snapshots or locks could not be read).
    pub ceiling: Option<ceiling::CeilingProof>,
    /// Evidence that could not be read or records that did not parse, one line each.
    pub problems: Vec<String>,
}

/// The whole report (JSON format [`REPORT_VERSION`], `docs/audit.md`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// Format version.
    pub version: u32,
    /// The id of the ledger record this report's digest is recorded under.
    pub id: String,
    /// When it was generated.
    pub generated: Timestamp,
    /// The start of the period it covers.
    pub since: Timestamp,
    /// The host that generated it.
    pub host: String,
    /// The Coffer version.
    pub coffer_version: String,
    /// The policy file read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The policy's ceiling, days.
    pub policy_ceiling_days: u64,
    /// One part per repository.
    pub repositories: Vec<RepositoryReport>,
    /// Clauses met, over every repository.
    pub met: u32,
    /// Clauses not met.
    pub not_met: u32,
    /// Clauses unknown.
    pub unknown: u32,
}

impl Report {
    /// The overall verdict: met only when every clause of every repository is met.
    #[must_use]
    pub fn status(&self) -> Status {
        self.repositories.iter().flat_map(|r| &r.clauses).fold(Status::Met, |s, c| s.worst(c.status))
    }

    /// The ledger record of this report rendered as `format` into `bytes`.
    #[must_use]
    pub fn record(&self, format: render::Format, bytes: &[u8]) -> AuditRecord {
        AuditRecord {
            version: 1,
            id: self.id.clone(),
            generated: self.generated,
            format: format.as_str().to_owned(),
            hash: blake3::hash(bytes).to_hex().to_string(),
            met: self.met,
            not_met: self.not_met,
            unknown: self.unknown,
        }
    }
}

/// What to audit.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The repositories (empty: every repository a source uses, else every declared one).
    pub repositories: Vec<String>,
    /// The start of the period.
    pub since: Timestamp,
    /// This host's name.
    pub host: String,
    /// The policy file's path, as shown.
    pub config_path: Option<String>,
}

/// Why the audit could not run at all (evidence that cannot be read is not an error).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A repository named that coffer.toml does not declare.
    #[error("repository {0:?} is not declared in coffer.toml ([repositories.{0}])")]
    Unknown(String),
    /// Stopped on request.
    #[error("audit cancelled")]
    Cancelled,
}

impl AuditError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        match self {
            Self::Unknown(_) => coffer_store::ErrorClass::Invalid,
            Self::Cancelled => coffer_store::ErrorClass::Cancelled,
        }
    }
}

/// The repositories audited by default: those a source uses, in name order; when no source
/// is declared, every declared repository (else `default`).
#[must_use]
pub fn default_repositories(config: &Config) -> Vec<String> {
    let mut used: Vec<String> = config.sources().map(|(_, r)| r.to_owned()).collect();
    if used.is_empty() {
        used = config.repositories.keys().cloned().collect();
    }
    if used.is_empty() {
        used.push(crate::config::DEFAULT_REPOSITORY.to_owned());
    }
    used.sort();
    used.dedup();
    used
}

/// Audits `config`: gathers the evidence of each repository ([`evidence::gather`]), judges
/// every clause ([`clauses::judge`]) and proves the ceiling ([`ceiling::prove`]).
///
/// # Errors
/// [`AuditError`] for an undeclared repository or a cancellation; nothing else (what cannot
/// be read is in the report).
pub fn audit(
    config: &Config,
    opts: &AuditOptions,
    clock: &Clock,
    ctl: &coffer_repository::JobControl,
) -> Result<Report, AuditError> {
    let names = if opts.repositories.is_empty() { default_repositories(config) } else { opts.repositories.clone() };
    for n in &names {
        if config.repository(n).is_none() {
            return Err(AuditError::Unknown(n.clone()));
        }
    }
    let now = clock.now();
    let mut repositories = Vec::new();
    for name in &names {
        if ctl.cancel.is_cancelled() {
            return Err(AuditError::Cancelled);
        }
        let ev = evidence::gather(config, name, opts.since, clock);
        let proof = ceiling::prove_from(config, name, &ev);
        let clauses = clauses::judge(config, name, &ev, proof.as_ref());
        repositories.push(RepositoryReport {
            name: name.clone(),
            location: ev.location.clone(),
            clauses,
            ceiling: proof,
            problems: ev.problems.clone(),
        });
    }
    let count = |s: Status| {
        u32::try_from(repositories.iter().flat_map(|r| &r.clauses).filter(|c| c.status == s).count())
            .unwrap_or(u32::MAX)
    };
    Ok(Report {
        version: REPORT_VERSION,
        id: crate::event::random_id(),
        generated: now,
        since: opts.since,
        host: opts.host.clone(),
        coffer_version: env!("CARGO_PKG_VERSION").to_owned(),
        config: opts.config_path.clone(),
        policy_ceiling_days: POLICY_CEILING.as_secs() / 86_400,
        met: count(Status::Met),
        not_met: count(Status::NotMet),
        unknown: count(Status::Unknown),
        repositories,
    })
}

/// Records `record` (the digest of a rendered report) for each of `repositories`: queued in
/// `state`'s outbox, then flushed to each repository's ledger as the writer. Returns, per
/// repository, the one-line reason it could not be stored now (the record stays in the
/// outbox for the daemon's next flush).
///
/// # Errors
/// Only the local state failing (the record could not even be queued).
pub fn record(
    config: &Config,
    state: &crate::State,
    host: &str,
    repositories: &[String],
    record: &AuditRecord,
    clock: &Clock,
) -> Result<Vec<(String, String)>, crate::state::StateError> {
    let body = serde_json::to_value(record).expect("an audit record serialises");
    let mut failed = Vec::new();
    for name in repositories {
        state.record_other(name, crate::ledger::AUDIT, host, &body)?;
        let flushed = crate::open::open_repository(config, name, coffer_store::Role::Writer, clock.clone())
            .map_err(|e| e.to_string())
            .and_then(|repo| crate::ledger::flush_outbox(state, name, &repo).map_err(|e| e.to_string()));
        if let Err(why) = flushed {
            failed.push((name.clone(), why));
        }
    }
    Ok(failed)
}

/// Brings repository `name`'s ledger up to date before the evidence is read: the records
/// waiting in `state`'s outbox (runs by hand, drills, security events the daemon has not
/// flushed yet) are appended as the writer, as the daemon's flusher does. Returns how many
/// were stored, or the one-line reason they could not be (they stay in the outbox, and the
/// report says how many wait).
///
/// # Errors
/// The reason, one line.
pub fn flush_pending(config: &Config, state: &crate::State, name: &str, clock: &Clock) -> Result<usize, String> {
    if state.outbox_entries(name, 1).map_err(|e| e.to_string())?.is_empty() {
        return Ok(0);
    }
    let repo = crate::open::open_repository(config, name, coffer_store::Role::Writer, clock.clone())
        .map_err(|e| e.to_string())?;
    crate::ledger::flush_outbox(state, name, &repo).map_err(|e| e.to_string())
}

/// One line of hostile text for the report: control characters replaced, bounded to `max`
/// characters (the renderers escape it for their format).
#[must_use]
pub fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// `N days` (or hours) of a duration, for evidence lines.
#[must_use]
pub fn days(d: Duration) -> String {
    coffer_repository::humanize(d)
}
