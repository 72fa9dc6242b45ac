//! The vault's audit log: append-only and hash-chained.
//!
//! Invariant guarded: every mutating request, allowed or denied, leaves an entry, and an
//! entry edited or removed anywhere before the newest is detected by [`verify`]. Entry `n`
//! stores `hash_n = BLAKE3(hash_{n-1} || canonical JSON of entry n)` with `hash_0` all
//! zeros. An allowed request's entry is written in the same SQLite transaction as its
//! effect, so one exists exactly when the other does. SQLite triggers refuse `UPDATE` and
//! `DELETE` on the table, so only deliberate tampering with the file can change it, and
//! that breaks the chain.

use crate::error::{Result, StoreError};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When the request was made (store clock).
    pub time: Timestamp,
    /// Principal name (or the access key presented, for failed authentication).
    pub principal: String,
    /// Role of the principal (`-` if not authenticated).
    pub role: String,
    /// Action asked for (see `Action`; `authenticate` for logins).
    pub action: String,
    /// Key, if the request named one.
    pub key: Option<String>,
    /// Version, if the request named or created one.
    pub version: Option<String>,
    /// `allowed`, `denied` (refused by role, lock or validation) or `failed` (I/O, corruption).
    pub outcome: String,
    /// Why it was denied or failed (the error message); empty when allowed.
    pub reason: String,
    /// Hash of the previous entry (hex).
    pub prev_hash: String,
    /// Hash of this entry (hex).
    pub hash: String,
}

impl AuditEntry {
    /// Whether this entry's hash is that of its fields and `prev_hash`: with the link to the
    /// entry before it (`prev_hash` equal to that entry's `hash`), what lets a follower of
    /// the log check new entries without walking the whole chain again.
    #[must_use]
    pub fn hash_matches(&self) -> bool {
        entry_hash(&self.prev_hash, self) == self.hash
    }
}

/// What is hashed: every field but the hashes, in a fixed order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    time: &'a Timestamp,
    principal: &'a str,
    role: &'a str,
    action: &'a str,
    key: Option<&'a str>,
    version: Option<&'a str>,
    outcome: &'a str,
    reason: &'a str,
}

pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn entry_hash(prev: &str, e: &AuditEntry) -> String {
    let body = serde_json::to_vec(&Hashed {
        seq: e.seq,
        time: &e.time,
        principal: &e.principal,
        role: &e.role,
        action: &e.action,
        key: e.key.as_deref(),
        version: e.version.as_deref(),
        outcome: &e.outcome,
        reason: &e.reason,
    })
    .expect("serializing an audit entry cannot fail");
    let mut h = blake3::Hasher::new();
    h.update(prev.as_bytes());
    h.update(&body);
    h.finalize().to_hex().to_string()
}

/// The fields a request contributes; seq and hashes are filled in by [`append`].
pub(crate) struct NewEntry<'a> {
    pub time: Timestamp,
    pub principal: &'a str,
    pub role: &'a str,
    pub action: &'a str,
    pub key: Option<&'a str>,
    pub version: Option<&'a str>,
    pub outcome: &'a str,
    pub reason: String,
}

/// Appends an entry. Must run inside a write transaction so that reading the chain's head
/// and appending are one step for every process sharing the vault.
pub(crate) fn append(conn: &Connection, n: NewEntry<'_>) -> Result<()> {
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(|e| StoreError::io("cannot read the audit log head", e))?;
    let (seq, prev_hash) = match head {
        Some((seq, hash)) => (u64::try_from(seq).unwrap_or(0) + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let mut e = AuditEntry {
        seq,
        time: n.time,
        principal: n.principal.to_owned(),
        role: n.role.to_owned(),
        action: n.action.to_owned(),
        key: n.key.map(str::to_owned),
        version: n.version.map(str::to_owned),
        outcome: n.outcome.to_owned(),
        reason: n.reason,
        prev_hash,
        hash: String::new(),
    };
    e.hash = entry_hash(&e.prev_hash, &e);
    conn.execute(
        "INSERT INTO audit (seq, time, principal, role, action, key, version, outcome, reason, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            i64::try_from(e.seq).unwrap_or(i64::MAX),
            e.time.to_string(),
            e.principal,
            e.role,
            e.action,
            e.key,
            e.version,
            e.outcome,
            e.reason,
            e.prev_hash,
            e.hash
        ],
    )
    .map_err(|e| StoreError::io("cannot append to the audit log", e))?;
    Ok(())
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AuditEntry, String)> {
    let time: String = r.get(1)?;
    let seq: i64 = r.get(0)?;
    Ok((
        AuditEntry {
            seq: u64::try_from(seq).unwrap_or(0),
            time: time.parse().unwrap_or(Timestamp::UNIX_EPOCH),
            principal: r.get(2)?,
            role: r.get(3)?,
            action: r.get(4)?,
            key: r.get(5)?,
            version: r.get(6)?,
            outcome: r.get(7)?,
            reason: r.get(8)?,
            prev_hash: r.get(9)?,
            hash: r.get(10)?,
        },
        time,
    ))
}

const SELECT: &str =
    "SELECT seq, time, principal, role, action, key, version, outcome, reason, prev_hash, hash FROM audit";

/// Entries with `seq > after`, oldest first, at most `limit`.
pub(crate) fn read(conn: &Connection, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn
        .prepare_cached(&format!("{SELECT} WHERE seq > ?1 ORDER BY seq LIMIT ?2"))
        .map_err(|e| StoreError::io("cannot read the audit log", e))?;
    let rows = stmt
        .query_map(params![i64::try_from(after).unwrap_or(i64::MAX), i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            row_to_entry(r).map(|(e, _)| e)
        })
        .map_err(|e| StoreError::io("cannot read the audit log", e))?;
    rows.collect::<rusqlite::Result<_>>().map_err(|e| StoreError::io("cannot read the audit log", e))
}

/// The allowed requests that named or created `version` of `key`, oldest first: who put a
/// version, who added a delete marker.
pub(crate) fn for_version(conn: &Connection, key: &str, version: &str) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn
        .prepare_cached(&format!("{SELECT} WHERE key = ?1 AND version = ?2 AND outcome = 'allowed' ORDER BY seq"))
        .map_err(|e| StoreError::io("cannot read the audit log", e))?;
    let rows = stmt
        .query_map(params![key, version], |r| row_to_entry(r).map(|(e, _)| e))
        .map_err(|e| StoreError::io("cannot read the audit log", e))?;
    rows.collect::<rusqlite::Result<_>>().map_err(|e| StoreError::io("cannot read the audit log", e))
}

/// The result of checking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the newest entry (record it elsewhere to detect truncation of the tail).
    pub head: String,
    /// Problems found, oldest first (at most 100); empty when the chain is intact.
    pub problems: Vec<String>,
    /// Entries out of time order (dated before an earlier entry by more than the
    /// tolerance): a clock that was moved, oldest first (at most 100). A security finding,
    /// not damage: the chain can be intact and the times still lie.
    #[serde(default)]
    pub time_findings: Vec<TimeFinding>,
}

/// An audit entry dated before an entry earlier in the log: the clock was moved (forward
/// for the earlier entry, or back for this one). Either way some lock was judged on a
/// time that was not real time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeFinding {
    /// The entry dated too early.
    pub seq: u64,
    /// Its time.
    pub time: Timestamp,
    /// The latest time of the entries before it, and which entry carries it.
    pub newest_before: Timestamp,
    /// The entry that carries `newest_before`.
    pub newest_seq: u64,
}

/// Walks the whole log in order (streaming; memory does not grow with its length) and
/// checks sequence numbers, links and hashes.
pub(crate) fn verify(conn: &Connection) -> Result<AuditVerification> {
    let mut stmt =
        conn.prepare(&format!("{SELECT} ORDER BY seq")).map_err(|e| StoreError::io("cannot read the audit log", e))?;
    let mut rows = stmt.query([]).map_err(|e| StoreError::io("cannot read the audit log", e))?;
    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_owned();
    let mut out =
        AuditVerification { entries: 0, head: GENESIS.to_owned(), problems: Vec::new(), time_findings: Vec::new() };
    let problem = |out: &mut AuditVerification, p: String| {
        if out.problems.len() < 100 {
            out.problems.push(p);
        }
    };
    while let Some(r) = rows.next().map_err(|e| StoreError::io("cannot read the audit log", e))? {
        let (e, raw_time) = row_to_entry(r).map_err(|e| StoreError::io("cannot read the audit log", e))?;
        out.entries += 1;
        if e.seq != expected_seq {
            problem(&mut out, format!("entry {} follows entry {}: entries were removed", e.seq, expected_seq - 1));
        }
        if e.prev_hash != prev {
            problem(&mut out, format!("entry {} does not link to the entry before it", e.seq));
        }
        if e.time.to_string() != raw_time || entry_hash(&e.prev_hash, &e) != e.hash {
            problem(&mut out, format!("entry {} was modified (hash mismatch)", e.seq));
        }
        expected_seq = e.seq + 1;
        prev.clone_from(&e.hash);
    }
    out.head = prev;
    Ok(out)
}
