//! The vault's metadata database (SQLite): schema, connection settings, row mapping.
//!
//! Invariant guarded: metadata is the point of visibility. A version exists exactly when
//! its row is committed, and a row is only ever committed after its data file is durable.
//! SQLite runs in WAL mode with `synchronous=FULL`, so a commit is durable when it returns;
//! every write transaction starts `IMMEDIATE` so processes sharing the vault queue for the
//! write lock instead of failing when they upgrade.

use crate::error::{Result, StoreError};
use crate::model::{ObjectVersion, Retention, RetentionMode, VersionId};
use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Schema version stored in `PRAGMA user_version`.
pub(crate) const SCHEMA_VERSION: u32 = 1;

const SCHEMA: &str = r"
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Every version and delete marker. Keys are BLOBs so that ordering and prefix ranges are
-- bytewise (memcmp), as in S3.
CREATE TABLE versions (
    key           BLOB    NOT NULL,
    vid           TEXT    NOT NULL,
    created_us    INTEGER NOT NULL,
    delete_marker INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    checksum      TEXT    NOT NULL,
    file          TEXT,
    mode          TEXT,
    until_s       INTEGER,
    legal_hold    INTEGER NOT NULL,
    PRIMARY KEY (key, vid)
) WITHOUT ROWID;

-- Keys whose latest version is an object (not a delete marker): what `list` walks, so a
-- listing costs what it returns.
CREATE TABLE live (
    key BLOB PRIMARY KEY,
    vid TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE principals (
    access_key  TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    time      TEXT NOT NULL,
    principal TEXT NOT NULL,
    role      TEXT NOT NULL,
    action    TEXT NOT NULL,
    key       TEXT,
    version   TEXT,
    outcome   TEXT NOT NULL,
    reason    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

pub(crate) fn db_err(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let context = context.into();
    move |e| StoreError::io(context, e)
}

/// Opens (or creates, with `create`) the database at `path` with the vault's settings.
pub(crate) fn open(path: &Path, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let ctx = || format!("cannot open vault database {}", path.display());
    let conn = Connection::open_with_flags(path, flags).map_err(db_err(ctx()))?;
    // Several processes may share a vault: wait for the write lock rather than fail.
    conn.busy_timeout(Duration::from_secs(60)).map_err(db_err(ctx()))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err(ctx()))?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(db_err(ctx()))?;
    if create {
        conn.execute_batch(SCHEMA).map_err(db_err(format!("cannot create vault database {}", path.display())))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db_err(ctx()))?;
    }
    Ok(conn)
}

/// Columns selected for a version row, in the order [`row_to_version`] reads them.
pub(crate) const VERSION_COLUMNS: &str = "v.key, v.vid, v.created_us, v.delete_marker, v.size, v.checksum, v.file, v.mode, v.until_s, v.legal_hold, \
     (v.vid = (SELECT max(w.vid) FROM versions w WHERE w.key = v.key))";

/// A version row: the public metadata plus where its data lives.
pub(crate) struct Row {
    pub meta: ObjectVersion,
    pub file: Option<String>,
}

pub(crate) fn row_to_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let key: Vec<u8> = r.get(0)?;
    let mode: Option<String> = r.get(7)?;
    let until: Option<i64> = r.get(8)?;
    let retention = match (mode, until) {
        (Some(m), Some(u)) => Some(Retention {
            mode: if m == "compliance" { RetentionMode::Compliance } else { RetentionMode::Governance },
            until: Timestamp::from_second(u).unwrap_or(Timestamp::MAX),
        }),
        _ => None,
    };
    let created: i64 = r.get(2)?;
    Ok(Row {
        meta: ObjectVersion {
            key: String::from_utf8_lossy(&key).into_owned(),
            version: VersionId(r.get(1)?),
            created: Timestamp::from_microsecond(created).unwrap_or(Timestamp::UNIX_EPOCH),
            delete_marker: r.get(3)?,
            size: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            checksum: r.get(5)?,
            retention,
            legal_hold: r.get(9)?,
            is_latest: r.get(10)?,
        },
        file: r.get(6)?,
    })
}

/// Retain-until dates are kept to the second, rounded up, so rounding never shortens a lock.
pub(crate) fn until_seconds(t: Timestamp) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() > 0 { s + 1 } else { s }
}
