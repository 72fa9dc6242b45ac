//! The daemon's local state: one SQLite file in the state directory.
//!
//! It holds the run history `coffer status` reads, the last slot handled per job (so a
//! restart catches up and reports missed slots exactly once), small keyed values other parts
//! keep across restarts (open alert problems, audit-log positions), and the **outbox**: run
//! records not yet appended to the repository's ledger.
//!
//! Invariant guarded here: a run is recorded locally (history and outbox, one transaction)
//! before anything else is done with it, so a record the repository did not take (it was
//! unreachable, the daemon stopped) is appended later, never lost. The local history is a
//! convenience for `status`; the evidence is the repository's ledger.

use crate::event::RunRecord;
use crate::security::SecurityEvent;
use crate::security::record::SecurityAck;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the local state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory cannot be created.
    #[error("cannot create the state directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("state database {}: {source}", path.display())]
    Db {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// A stored record does not parse (written by a newer version, or damaged).
    #[error("state database {}: unreadable record: {source}", path.display())]
    Record {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// No directory to keep state in.
    #[error("no state directory: set daemon.state-dir in coffer.toml, STATE_DIRECTORY or HOME")]
    NoDir,
}

impl StateError {
    /// The class of this error: local I/O.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        coffer_store::ErrorClass::Io
    }
}

type Result<T> = std::result::Result<T, StateError>;

/// The open state database.
pub struct State {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The state directory: `daemon.state-dir`, else `$STATE_DIRECTORY` (systemd's
/// `StateDirectory=`), else `dirs::state_dir()/coffer`, else `~/.local/state/coffer`.
///
/// # Errors
/// [`StateError::NoDir`] when none of them is known.
pub fn state_dir(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("STATE_DIRECTORY").filter(|p| !p.is_empty()) {
        // systemd may pass several, colon-separated; the first is ours.
        let first = p.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
        return Ok(PathBuf::from(first));
    }
    std::env::var_os("XDG_STATE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| Path::new(&h).join(".local/state")))
        .map(|d| d.join("coffer"))
        .ok_or(StateError::NoDir)
}

/// The schema this build writes (`PRAGMA user_version`): 0 was issue 13's (an outbox of
/// runs only), 2 adds the outbox's `kind` and `host` and the `security_events` table.
pub const SCHEMA_VERSION: i64 = 2;

/// Outbox kind of a run record.
const OUTBOX_RUN: &str = "run";
/// Outbox kind of a security event.
const OUTBOX_SECURITY: &str = "security";
/// Outbox kind of an acknowledgement.
const OUTBOX_SECURITY_ACK: &str = "security-ack";

/// Brings a state file of an older schema up to date, in one transaction. Idempotent.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let step = (|| {
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('outbox')")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !cols.iter().any(|c| c == "kind") {
            // Every row of an issue-13 outbox is a run record.
            conn.execute_batch(&format!("ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT '{OUTBOX_RUN}'"))?;
        }
        if !cols.iter().any(|c| c == "host") {
            conn.execute_batch("ALTER TABLE outbox ADD COLUMN host TEXT")?;
        }
        // The first cut of issue 14 kept events in the key-value table: moved, unacknowledged.
        let old: Vec<(String, String)> = conn
            .prepare("SELECT key, value FROM kv WHERE substr(key, 1, 15) = 'security-event:'")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (key, json) in old {
            if let Ok(e) = serde_json::from_str::<SecurityEvent>(&json) {
                conn.execute(
                    "INSERT OR IGNORE INTO security_events (id, detected, kind, event) VALUES (?1, ?2, ?3, ?4)",
                    params![e.id, e.detected.as_second(), e.kind.as_str(), json],
                )?;
            }
            conn.execute("DELETE FROM kv WHERE key = ?1", params![key])?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
    })();
    match step {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A record waiting in the outbox for a repository's ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxEntry {
    /// A job's run (ledger kind `run`).
    Run(RunRecord),
    /// A security event (ledger kind `security`).
    Security {
        /// The host that recorded it.
        host: String,
        /// The event.
        event: SecurityEvent,
    },
    /// The acknowledgement of a security event (ledger kind `security-ack`).
    SecurityAck {
        /// The host it was acknowledged on.
        host: String,
        /// The acknowledgement.
        ack: SecurityAck,
    },
    /// Any other ledger record: a drill report (`drill`), the policy file (`policy`), an
    /// audit report's digest (`audit`). Its body carries a unique `id` string, by which a
    /// record already in the ledger is recognised and not appended twice.
    Other {
        /// The ledger kind.
        kind: String,
        /// The host that recorded it.
        host: String,
        /// The body (has a string field `id`).
        body: serde_json::Value,
    },
}

/// A security event as the state keeps it, with its acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoredSecurityEvent {
    /// The event.
    #[serde(flatten)]
    pub event: SecurityEvent,
    /// When it was acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<Timestamp>,
    /// By whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
}

/// What [`State::ack_security`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Acknowledged now (the acknowledgement is queued for the ledgers).
    Acked(Box<StoredSecurityEvent>),
    /// It already was: nothing changed.
    AlreadyAcked(Box<StoredSecurityEvent>),
    /// No event has that id.
    Unknown,
    /// More than one event's id starts with what was given.
    Ambiguous(Vec<String>),
}

impl State {
    /// Opens (creating) `DIR/state.db`, bringing an older schema up to date (issue 13's
    /// state files: the outbox gains its `kind` and `host` columns, every row it held being
    /// a run).
    ///
    /// # Errors
    /// [`StateError`] when the directory or database cannot be made.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join("state.db");
        let db = |source| StateError::Db { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY, job TEXT NOT NULL, finished INTEGER NOT NULL,
                 outcome TEXT NOT NULL, record TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
             CREATE TABLE IF NOT EXISTS outbox (
                 id INTEGER PRIMARY KEY, repository TEXT NOT NULL, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS security_events (
                 id TEXT PRIMARY KEY, detected INTEGER NOT NULL, kind TEXT NOT NULL,
                 event TEXT NOT NULL, acked_at INTEGER, acked_by TEXT);
             CREATE INDEX IF NOT EXISTS security_events_open ON security_events (acked_at, detected);",
        )
        .map_err(db)?;
        migrate(&conn).map_err(db)?;
        Ok(Self { path, conn: Mutex::new(conn) })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        |source| StateError::Db { path: self.path.clone(), source }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a run: in the history and in the outbox for the repository's ledger, at once.
    ///
    /// # Errors
    /// [`StateError::Db`].
    pub fn record_run(&self, r: &RunRecord) -> Result<()> {
        let json = serde_json::to_string(r).map_err(|source| StateError::Record { path: self.path.clone(), source })?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.db())?;
        tx.execute(
            "INSERT INTO runs (job, finished, outcome, record) VALUES (?1, ?2, ?3, ?4)",
            params![r.job, r.finished.as_second(), r.outcome.as_str(), json],
        )
        .map_err(self.db())?;
        tx.execute(
            "INSERT INTO outbox (repository, record, kind, host) VALUES (?1, ?2, 'run', ?3)",
            params![r.repository, json, r.host],
        )
        .map_err(self.db())?;
        tx.commit().map_err(self.db())
    }

    fn parse(&self, json: &str) -> Result<RunRecord> {
        serde_json::from_str(json).map_err(|source| StateError::Record { path: self.path.clone(), source })
    }

    /// The newest `limit` runs of `job` (all jobs: `None`), newest first.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn
            .prepare("SELECT record FROM runs WHERE (?1 IS NULL OR job = ?1) ORDER BY id DESC LIMIT ?2")
            .map_err(self.db())?;
        let rows: Vec<String> = stmt
            .query_map(params![job, limit], |r| r.get(0))
            .map_err(self.db())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.db())?;
        rows.iter().map(|j| self.parse(j)).collect()
    }

    /// The newest run of `job` whose outcome is one of `outcomes`.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn last_run(&self, job: &str, outcomes: &[crate::event::Outcome]) -> Result<Option<RunRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT record, outcome FROM runs WHERE job = ?1 ORDER BY id DESC").map_err(self.db())?;
        let mut rows = stmt.query(params![job]).map_err(self.db())?;
        while let Some(row) = rows.next().map_err(self.db())? {
            let outcome: String = row.get(1).map_err(self.db())?;
            if outcomes.iter().any(|o| o.as_str() == outcome) {
                let json: String = row.get(0).map_err(self.db())?;
                return self.parse(&json).map(Some);
            }
        }
        Ok(None)
    }

    /// Up to `limit` run records waiting for `repository`'s ledger, oldest first, with their
    /// outbox ids (every kind: [`State::outbox_entries`]).
    ///
    /// # Errors
    /// [`StateError`].
    pub fn outbox(&self, repository: &str, limit: usize) -> Result<Vec<(i64, RunRecord)>> {
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = conn
            .prepare("SELECT id, record FROM outbox WHERE repository = ?1 AND kind = 'run' ORDER BY id LIMIT ?2")
            .map_err(self.db())?;
        let rows: Vec<(i64, String)> = stmt
            .query_map(params![repository, limit], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.db())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.db())?;
        rows.into_iter().map(|(id, j)| Ok((id, self.parse(&j)?))).collect()
    }

    /// Up to `limit` records of every kind waiting for `repository`'s ledger, oldest first,
    /// with their outbox ids.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn outbox_entries(&self, repository: &str, limit: usize) -> Result<Vec<(i64, OutboxEntry)>> {
        let rows: Vec<(i64, String, Option<String>, String)> = {
            let conn = self.conn();
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut stmt = conn
                .prepare("SELECT id, kind, host, record FROM outbox WHERE repository = ?1 ORDER BY id LIMIT ?2")
                .map_err(self.db())?;
            stmt.query_map(params![repository, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(self.db())?
                .collect::<std::result::Result<_, _>>()
                .map_err(self.db())?
        };
        let rec = |source| StateError::Record { path: self.path.clone(), source };
        rows.into_iter()
            .map(|(id, kind, host, json)| {
                let host = host.unwrap_or_default();
                let entry = match kind.as_str() {
                    OUTBOX_SECURITY => OutboxEntry::Security { host, event: serde_json::from_str(&json).map_err(rec)? },
                    OUTBOX_SECURITY_ACK => {
                        OutboxEntry::SecurityAck { host, ack: serde_json::from_str(&json).map_err(rec)? }
                    }
                    OUTBOX_RUN => OutboxEntry::Run(self.parse(&json)?),
                    _ => OutboxEntry::Other { kind, host, body: serde_json::from_str(&json).map_err(rec)? },
                };
                Ok((id, entry))
            })
            .collect()
    }

    /// Queues a ledger record of another kind (`drill`, `policy`, `audit`: see
    /// [`OutboxEntry::Other`]) for `repository`'s ledger; `body` must carry a string `id`.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn record_other(&self, repository: &str, kind: &str, host: &str, body: &serde_json::Value) -> Result<()> {
        debug_assert!(body.get("id").and_then(serde_json::Value::as_str).is_some(), "a ledger body needs an id");
        debug_assert!(![OUTBOX_RUN, OUTBOX_SECURITY, OUTBOX_SECURITY_ACK].contains(&kind));
        self.conn()
            .execute(
                "INSERT INTO outbox (repository, record, kind, host) VALUES (?1, ?2, ?3, ?4)",
                params![repository, body.to_string(), kind, host],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Removes an outbox entry once the repository holds it.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn outbox_done(&self, id: i64) -> Result<()> {
        self.conn().execute("DELETE FROM outbox WHERE id = ?1", params![id]).map_err(self.db())?;
        Ok(())
    }

    /// Records a security event and queues it for the ledgers of `ledgers` (repository
    /// names), in one transaction; `host` is the recording host. Whether it was new (an event
    /// recorded twice, by id, is kept and queued once).
    ///
    /// # Errors
    /// [`StateError`].
    pub fn record_security(&self, event: &SecurityEvent, host: &str, ledgers: &[String]) -> Result<bool> {
        let json =
            serde_json::to_string(event).map_err(|source| StateError::Record { path: self.path.clone(), source })?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.db())?;
        let new = tx
            .execute(
                "INSERT OR IGNORE INTO security_events (id, detected, kind, event) VALUES (?1, ?2, ?3, ?4)",
                params![event.id, event.detected.as_second(), event.kind.as_str(), json],
            )
            .map_err(self.db())?
            == 1;
        if new {
            for repo in ledgers {
                tx.execute(
                    "INSERT INTO outbox (repository, record, kind, host) VALUES (?1, ?2, ?3, ?4)",
                    params![repo, json, OUTBOX_SECURITY, host],
                )
                .map_err(self.db())?;
            }
        }
        tx.commit().map_err(self.db())?;
        Ok(new)
    }

    fn stored(&self, json: &str, acked_at: Option<i64>, acked_by: Option<String>) -> Result<StoredSecurityEvent> {
        let event =
            serde_json::from_str(json).map_err(|source| StateError::Record { path: self.path.clone(), source })?;
        Ok(StoredSecurityEvent { event, acked_at: acked_at.and_then(|s| Timestamp::from_second(s).ok()), acked_by })
    }

    /// The security events, newest first: every one, or only those not acknowledged; at
    /// most `limit`.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn security_events(&self, unacknowledged_only: bool, limit: usize) -> Result<Vec<StoredSecurityEvent>> {
        let rows: Vec<(String, Option<i64>, Option<String>)> = {
            let conn = self.conn();
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut stmt = conn
                .prepare(
                    "SELECT event, acked_at, acked_by FROM security_events
                     WHERE (?1 = 0 OR acked_at IS NULL) ORDER BY detected DESC, rowid DESC LIMIT ?2",
                )
                .map_err(self.db())?;
            stmt.query_map(params![i64::from(unacknowledged_only), limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(self.db())?
                .collect::<std::result::Result<_, _>>()
                .map_err(self.db())?
        };
        rows.into_iter().map(|(j, at, by)| self.stored(&j, at, by)).collect()
    }

    /// How many security events are not acknowledged.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn security_unacknowledged(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM security_events WHERE acked_at IS NULL", [], |r| r.get(0))
            .map_err(self.db())?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The security event `id`, if recorded.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn security_event(&self, id: &str) -> Result<Option<StoredSecurityEvent>> {
        let row: Option<(String, Option<i64>, Option<String>)> = self
            .conn()
            .query_row("SELECT event, acked_at, acked_by FROM security_events WHERE id = ?1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(self.db())?;
        row.map(|(j, at, by)| self.stored(&j, at, by)).transpose()
    }

    /// Acknowledges the security event whose id is `id` (or starts with it, when only one
    /// does): who and when are kept, and the acknowledgement is queued for the ledgers
    /// `ledgers(event)` names, in one transaction.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn ack_security(
        &self,
        id: &str,
        by: &str,
        at: Timestamp,
        host: &str,
        ledgers: impl Fn(&SecurityEvent) -> Vec<String>,
    ) -> Result<AckOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(self.db())?;
        let rows: Vec<(String, String, Option<i64>, Option<String>)> = {
            // Ids are hex: a prefix has no LIKE wildcard in it (anything else matches nothing).
            let pattern = if id.chars().all(|c| c.is_ascii_hexdigit()) && !id.is_empty() {
                format!("{id}%")
            } else {
                String::new()
            };
            let mut stmt = tx
                .prepare(
                    "SELECT id, event, acked_at, acked_by FROM security_events
                     WHERE id = ?1 OR id LIKE ?2 ORDER BY (id = ?1) DESC LIMIT 10",
                )
                .map_err(self.db())?;
            stmt.query_map(params![id, pattern], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(self.db())?
                .collect::<std::result::Result<_, _>>()
                .map_err(self.db())?
        };
        let row = match rows.as_slice() {
            [] => return Ok(AckOutcome::Unknown),
            [one, ..] if one.0 == id => one.clone(),
            [one] => one.clone(),
            many => return Ok(AckOutcome::Ambiguous(many.iter().map(|r| r.0.clone()).collect())),
        };
        let (event_id, json, acked_at, acked_by) = row;
        if acked_at.is_some() {
            return Ok(AckOutcome::AlreadyAcked(Box::new(self.stored(&json, acked_at, acked_by)?)));
        }
        tx.execute(
            "UPDATE security_events SET acked_at = ?2, acked_by = ?3 WHERE id = ?1 AND acked_at IS NULL",
            params![event_id, at.as_second(), by],
        )
        .map_err(self.db())?;
        let stored = self.stored(&json, Some(at.as_second()), Some(by.to_owned()))?;
        let ack = SecurityAck::new(&stored.event, by, at);
        let ack_json =
            serde_json::to_string(&ack).map_err(|source| StateError::Record { path: self.path.clone(), source })?;
        for repo in ledgers(&stored.event) {
            tx.execute(
                "INSERT INTO outbox (repository, record, kind, host) VALUES (?1, ?2, ?3, ?4)",
                params![repo, ack_json, OUTBOX_SECURITY_ACK, host],
            )
            .map_err(self.db())?;
        }
        tx.commit().map_err(self.db())?;
        Ok(AckOutcome::Acked(Box::new(stored)))
    }

    /// A kept value.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(self.db())
    }

    /// Keeps a value.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Forgets a value.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn remove(&self, key: &str) -> Result<()> {
        self.conn().execute("DELETE FROM kv WHERE key = ?1", params![key]).map_err(self.db())?;
        Ok(())
    }

    /// Every kept value whose key starts with `prefix`.
    ///
    /// # Errors
    /// [`StateError`].
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT key, value FROM kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")
            .map_err(self.db())?;
        let rows = stmt
            .query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.db())?
            .collect::<std::result::Result<_, _>>()
            .map_err(self.db())?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{JobKind, Outcome};

    fn run(job: &str, outcome: Outcome, t: i64) -> RunRecord {
        let at = jiff::Timestamp::from_second(t).unwrap();
        RunRecord { outcome, ..RunRecord::new(job, JobKind::Backup, Some("home"), "main", "h", at) }
    }

    #[test]
    fn runs_survive_reopening_and_wait_in_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = State::open(dir.path()).unwrap();
            s.record_run(&run("home/backup", Outcome::Success, 100)).unwrap();
            s.record_run(&run("home/backup", Outcome::Failed, 200)).unwrap();
            s.record_run(&run("db/base-backup", Outcome::Success, 300)).unwrap();
            s.set("slot:home/backup", "200").unwrap();
        }
        let s = State::open(dir.path()).unwrap();
        let last_ok = s.last_run("home/backup", &[Outcome::Success, Outcome::Warning]).unwrap().unwrap();
        assert_eq!(last_ok.finished.as_second(), 100);
        let last_fail = s.last_run("home/backup", &[Outcome::Failed]).unwrap().unwrap();
        assert_eq!(last_fail.finished.as_second(), 200);
        assert_eq!(s.runs(None, 10).unwrap().len(), 3);
        assert_eq!(s.get("slot:home/backup").unwrap().as_deref(), Some("200"));
        let out = s.outbox("main", 10).unwrap();
        assert_eq!(out.len(), 3);
        s.outbox_done(out[0].0).unwrap();
        assert_eq!(s.outbox("main", 10).unwrap().len(), 2);
        assert_eq!(s.scan("slot:").unwrap().len(), 1);
    }

    /// An issue-13 state file (schema 0: an outbox of runs, no kind column, no security
    /// table) opens, keeps its waiting runs, and takes security events afterwards.
    #[test]
    fn security_alert_state_migrates_from_an_issue_13_file() {
        let dir = tempfile::tempdir().unwrap();
        let waiting = run("home/backup", Outcome::Success, 100);
        let json = serde_json::to_string(&waiting).unwrap();
        {
            // The schema exactly as issue 13 wrote it.
            let c = Connection::open(dir.path().join("state.db")).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE runs (id INTEGER PRIMARY KEY, job TEXT NOT NULL, finished INTEGER NOT NULL,
                     outcome TEXT NOT NULL, record TEXT NOT NULL);
                 CREATE INDEX runs_job ON runs (job, id);
                 CREATE TABLE outbox (id INTEGER PRIMARY KEY, repository TEXT NOT NULL, record TEXT NOT NULL);
                 CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )
            .unwrap();
            c.execute("INSERT INTO outbox (repository, record) VALUES ('main', ?1)", params![json]).unwrap();
            c.execute("INSERT INTO kv (key, value) VALUES ('slot:home/backup', '200')", []).unwrap();
        }
        let s = State::open(dir.path()).unwrap();
        let v: i64 = s.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(s.get("slot:home/backup").unwrap().as_deref(), Some("200"));
        let out = s.outbox("main", 10).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, waiting);
        let entries = s.outbox_entries("main", 10).unwrap();
        assert_eq!(entries, vec![(out[0].0, OutboxEntry::Run(waiting))]);
        // Security events work on the migrated file, and a second open changes nothing.
        let at = Timestamp::from_second(1000).unwrap();
        let e = SecurityEvent::new(crate::security::SecurityKind::Drift, "drift", at, "versioning suspended");
        assert!(s.record_security(&e, "h", &["main".into()]).unwrap());
        assert!(!s.record_security(&e, "h", &["main".into()]).unwrap(), "recorded once");
        drop(s);
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.security_unacknowledged().unwrap(), 1);
        let entries = s.outbox_entries("main", 10).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(matches!(&entries[1].1, OutboxEntry::Security { host, event } if host == "h" && event == &e));
        assert_eq!(s.outbox("main", 10).unwrap().len(), 1, "outbox() lists runs only");
    }
}
