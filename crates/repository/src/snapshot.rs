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
}
