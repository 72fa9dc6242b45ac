//! `coffer audit`: a clause-by-clause report on the policy (§8 review), each clause met,
//! not met or unknown with its evidence, gathered from the configuration, the store's
//! protection, the ledger (runs, drills, security events) and the repository's snapshots
//! and locks; with the proof of the retention ceiling (§5). Rendered as JSON, Markdown or one
//! self-contained HTML file (`docs/audit.md`); the report's digest is recorded in the ledger
//! (kind `ledger::AUDIT`, body [`AuditRecord`]).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

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
