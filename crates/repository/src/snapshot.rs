//! Snapshots: the root of one backup, and the hash chain that makes history tamper-evident.
//!
//! Invariant guarded: removal or rollback of history is detected. Each snapshot names its
//! predecessor (the newest snapshot of the repository when it started) by id — the BLAKE3
//! of the predecessor's stored bytes — together with the predecessor's expiry. A missing
//! predecessor that had not yet expired means someone removed history; `verify` reports it.
//!
//! The link is the repository's to write, never a source's: a source describes its snapshot
//! as a [`NewSnapshot`] (what it backed up, and what it claims) and commits it through
//! [`BlobWriter::commit`](crate::BlobWriter::commit), which fills in the predecessor, the
//! lock date, the counts and the program. So a new source cannot forget the link, and no
//! call of the library writes a second root of the chain.

use crate::id::Id;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A link to the snapshot before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    /// The predecessor's id (hash of its stored object).
    pub id: Id,
    /// When the predecessor expires: before this it must exist.
    pub expires: Timestamp,
}

/// Counts of one backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// Files seen.
    pub files: u64,
    /// Directories seen.
    pub dirs: u64,
    /// Other entries (symlinks, devices, fifos, sockets).
    pub others: u64,
    /// Bytes of file content seen.
    pub bytes: u64,
    /// Files read (not unchanged since the parent).
    pub files_read: u64,
    /// Blobs added.
    pub blobs_added: u64,
    /// Bytes added before compression and encryption.
    pub bytes_added: u64,
    /// Bytes stored (packs, after compression and encryption).
    pub bytes_stored: u64,
    /// Packs whose lock was extended for this snapshot.
    pub locks_extended: u64,
    /// Blobs copied out of mostly-dead packs instead of extending those packs.
    #[serde(default)]
    pub blobs_repacked: u64,
    /// Packs of an interrupted (or concurrent) backup that no index stated, found and reused.
    #[serde(default)]
    pub packs_recovered: u64,
    /// Entries that could not be read (the snapshot is incomplete).
    pub errors: u64,
    /// Files that changed while being read.
    pub changed_while_read: u64,
}

/// One backup.
///
/// Unknown fields are ignored (a newer writer's additions); fields added later default
/// when absent, so snapshots of every earlier version read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snapshot {
    /// Snapshot kind (`files`; later `pg-base`…).
    pub kind: String,
    /// When the backup started.
    pub time: Timestamp,
    /// When the snapshot expires; it stays locked until `retain_until`.
    pub expires: Timestamp,
    /// Lock date of every object it needs (expiry plus margin).
    pub retain_until: Timestamp,
    /// Host.
    pub host: String,
    /// Paths backed up (absolute).
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree blob.
    pub tree: Id,
    /// The snapshot used to skip unchanged files, if any.
    pub parent: Option<Id>,
    /// The newest snapshot when this one started (the hash chain).
    pub previous: Option<ChainLink>,
    /// Counts.
    pub summary: Summary,
    /// Coffer version that wrote it.
    pub program: String,
    /// A `pg-base` snapshot's cluster facts (absent from other kinds, and from base backups
    /// written before format version 1 of this field, which kept them in `pg-…=` tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg: Option<PgBase>,
}

/// The version of [`PgBase`] this build writes.
pub const PG_BASE_VERSION: u32 = 1;

/// What a PostgreSQL base backup records about its cluster (`pg` in a `pg-base` snapshot).
///
/// Versioned: a reader that meets a `version` it does not know treats the snapshot as no
/// base backup it can restore (rather than misreading it); new fields come with a new
/// version. Unknown fields are ignored, so an older reader of a newer version still parses
/// the snapshot itself. Read back from the repository, so hostile: consumers check the
/// values (the segment size among them) before using them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PgBase {
    /// The format version of this record ([`PG_BASE_VERSION`]).
    pub version: u32,
    /// The cluster's system identifier.
    pub sysid: u64,
    /// The timeline the backup started on.
    pub timeline: u32,
    /// Where the backup's WAL starts (an LSN, as a byte position).
    pub start_lsn: u64,
    /// Where it ends: recovery is consistent from here.
    pub stop_lsn: u64,
    /// When the backup ended (an upper bound of its consistency point).
    pub stop_time: Timestamp,
    /// The cluster's WAL segment size, in bytes.
    pub wal_segment_size: u64,
    /// The cluster's name (`pg backup --cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// What a source says about the snapshot it commits: its content and its own claims. The
/// rest of a [`Snapshot`] — its place in the hash chain (`previous`), its expiry and lock
/// date (the writer's), its counts (the writer's summary) and the program — is filled in by
/// [`BlobWriter::commit`](crate::BlobWriter::commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSnapshot {
    /// Snapshot kind (`files`, `pg-base`…).
    pub kind: String,
    /// When the backup started.
    pub time: Timestamp,
    /// Host.
    pub host: String,
    /// What was backed up (absolute paths, `pg:SYSID`…).
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree blob.
    pub tree: Id,
    /// The snapshot the source compared against to skip unchanged content, if any (see
    /// [`BlobWriter::parent_for`](crate::BlobWriter::parent_for)).
    pub parent: Option<Id>,
    /// A PostgreSQL base backup's cluster facts (`pg-base` snapshots only).
    pub pg: Option<PgBase>,
}
