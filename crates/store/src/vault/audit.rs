//! The vault's audit log: append-only and hash-chained.
//!
//! Invariant guarded: every mutating request, allowed or denied, leaves an entry, and an
//! entry edited or removed anywhere before the newest is detected by [`verify`]. Entry `n`
//! stores `hash_n = BLAKE3(hash_{n-1} || canonical JSON of entry n)` with `hash_0` all
//! zeros. An allowed request's entry is written in the same SQLite transaction as its
//! effect, so one exists exactly when the other does. SQLite triggers refuse `UPDATE` and
//! `DELETE` on the table, so only deliberate tampering with the file can change it, and
//! that breaks the chain.
//!
//! Time (`docs/local-vault.md`, "Time"): [`append`] also keeps the vault's **high-water
//! mark** — the newest time any entry was written at, a `meta` row raised (never lowered) in
//! the same transaction as the entry — and, when an entry is written on a clock behind that
//! mark by more than [`CLOCK_TOLERANCE`], writes one `clock-behind` entry first, once per
//! change of state. [`verify`] reports entries dated before an earlier one as
//! [`TimeFinding`]s: a moved clock cannot be prevented on one host, but it cannot go unseen.

use crate::error::{Result, StoreError};
use jiff::{SignedDuration, Timestamp};
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
    /// `allowed`, `denied` (refused by role, lock or validation), `failed` (I/O,
    /// corruption), or `detected` (a finding the vault records itself: action
    /// `clock-behind`, naming the principal whose request ran on that clock).
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

/// How far a time may lie before the newest recorded one without counting as a moved
/// clock: 5 seconds. Every entry's time is read while the vault's write lock is held, so on
/// one host the log's times only go back when the clock itself steps back; NTP steps a
/// clock by far less (it slews offsets under 128 ms), so 5 s separates a moved clock from
/// ordinary corrections with room to spare.
pub const CLOCK_TOLERANCE: SignedDuration = SignedDuration::from_secs(5);

/// `meta` row: the highest time an audit entry was written at (RFC 3339).
pub(crate) const HIGH_WATER_ROW: &str = "clock-high-water";
/// `meta` row, present while requests run on a clock behind the high-water mark: the mark
/// they were behind (RFC 3339). It makes the `clock-behind` entry once per change of state.
pub(crate) const BEHIND_ROW: &str = "clock-behind";

/// Whether `t` lies before `mark` by more than [`CLOCK_TOLERANCE`] (false on overflow:
/// only a time near the end of the calendar could overflow, and it is behind nothing).
pub(crate) fn is_behind(t: Timestamp, mark: Timestamp) -> bool {
    t.checked_add(CLOCK_TOLERANCE).is_ok_and(|t| t < mark)
}

fn meta_time(conn: &Connection, row: &str) -> Result<Option<Timestamp>> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [row], |r| r.get(0))
        .optional()
        .map_err(|e| StoreError::io("cannot read the vault's clock record", e))?;
    // Hostile input: a value that does not parse is no record at all (whoever can write the
    // database could as well delete the row); the audit log's own times still tell.
    Ok(v.and_then(|v| v.parse().ok()))
}

fn set_meta(conn: &Connection, row: &str, value: Option<Timestamp>) -> Result<()> {
    match value {
        Some(t) => conn.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![row, t.to_string()],
        ),
        None => conn.execute("DELETE FROM meta WHERE name = ?1", [row]),
    }
    .map_err(|e| StoreError::io("cannot write the vault's clock record", e))?;
    Ok(())
}

/// The vault's high-water mark: the later of the `meta` row and the newest entry's time (a
/// vault written before the row was kept, or by an older binary that does not keep it,
/// still has one). `None` only for an empty log.
pub(crate) fn high_water(conn: &Connection) -> Result<Option<Timestamp>> {
    let row = meta_time(conn, HIGH_WATER_ROW)?;
    let head: Option<String> = conn
        .query_row("SELECT time FROM audit ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(|e| StoreError::io("cannot read the audit log head", e))?;
    let head = head.and_then(|t| t.parse::<Timestamp>().ok());
    Ok(row.max(head))
}

/// Appends an entry. Must run inside a write transaction so that reading the chain's head
/// and appending are one step for every process sharing the vault. Keeps the high-water
/// mark in the same transaction, and writes a `clock-behind` entry first when this entry is
/// the first of a run on a clock behind it.
pub(crate) fn append(conn: &Connection, n: NewEntry<'_>) -> Result<()> {
    let mark = high_water(conn)?;
    match mark {
        Some(mark) if is_behind(n.time, mark) => {
            if meta_time(conn, BEHIND_ROW)?.is_none() {
                let by = mark.duration_since(n.time);
                insert(
                    conn,
                    NewEntry {
                        time: n.time,
                        principal: n.principal,
                        role: n.role,
                        action: "clock-behind",
                        key: None,
                        version: None,
                        outcome: "detected",
                        reason: format!(
                            "the clock ({}) is behind the newest time this vault has recorded ({}) by {}: a clock was moved",
                            n.time,
                            mark,
                            approx_duration(by)
                        ),
                    },
                )?;
                set_meta(conn, BEHIND_ROW, Some(mark))?;
            }
        }
        _ => {
            // Caught up (or never behind): the next run behind the mark is a new state.
            if meta_time(conn, BEHIND_ROW)?.is_some() {
                set_meta(conn, BEHIND_ROW, None)?;
            }
            if mark.is_none_or(|m| n.time > m) {
                set_meta(conn, HIGH_WATER_ROW, Some(n.time))?;
            }
        }
    }
    insert(conn, n)
}

/// A duration for people, to the nearest second, in its two largest units: `40d`,
/// `39d 23h`, `2h 5m`, `12s`.
#[must_use]
pub fn approx_duration(d: SignedDuration) -> String {
    const UNITS: [(u64, char); 4] = [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')];
    let secs = u64::try_from(d.as_millis().unsigned_abs().saturating_add(500) / 1000).unwrap_or(u64::MAX);
    let sign = if d.is_negative() { "-" } else { "" };
    let Some(i) = UNITS.iter().position(|(size, _)| secs >= *size) else { return "0s".to_owned() };
    let (big, b) = UNITS[i];
    let mut out = format!("{sign}{}{b}", secs / big);
    if let Some(&(small, s)) = UNITS.get(i + 1) {
        let n = (secs % big) / small;
        if n > 0 {
            out += &format!(" {n}{s}");
        }
    }
    out
}

/// Writes one entry after the chain's head.
fn insert(conn: &Connection, n: NewEntry<'_>) -> Result<()> {
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

/// The most time findings one verification reports (the rest are counted in the entries
/// walked, not kept: one moved clock is enough to act on).
pub const MAX_TIME_FINDINGS: usize = 100;

/// Walks the whole log in order (streaming; memory does not grow with its length) and
/// checks sequence numbers, links and hashes, and that time does not go back: an entry
/// dated before the newest earlier one by more than [`CLOCK_TOLERANCE`] is a
/// [`TimeFinding`]. A run of entries behind the same newest one is one finding (its first
/// entry), unless one of them steps back again from the entry before it.
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
    // The newest time so far and its entry; the newest entry the current run behind it was
    // reported against; the previous entry's time.
    let mut newest: Option<(Timestamp, u64)> = None;
    let mut reported_against: Option<u64> = None;
    let mut previous: Option<Timestamp> = None;
    while let Some(r) = rows.next().map_err(|e| StoreError::io("cannot read the audit log", e))? {
        let (e, raw_time) = row_to_entry(r).map_err(|e| StoreError::io("cannot read the audit log", e))?;
        out.entries += 1;
        // A time that does not parse is reported as a modified entry below; it says
        // nothing about the clock.
        if e.time.to_string() == raw_time {
            if let Some((max, max_seq)) = newest {
                let stepped_back = previous.is_some_and(|p| is_behind(e.time, p));
                if is_behind(e.time, max) && (reported_against != Some(max_seq) || stepped_back) {
                    if out.time_findings.len() < MAX_TIME_FINDINGS {
                        out.time_findings.push(TimeFinding {
                            seq: e.seq,
                            time: e.time,
                            newest_before: max,
                            newest_seq: max_seq,
                        });
                    }
                    reported_against = Some(max_seq);
                }
            }
            if newest.is_none_or(|(max, _)| e.time > max) {
                newest = Some((e.time, e.seq));
            }
            previous = Some(e.time);
        }
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
