//! Snapshots: the root of one backup, and the hash chain that makes history tamper-evident.
//!
//! Invariant guarded: removal or rollback of history is detected. Each snapshot names its
//! predecessor (the newest snapshot of the repository when it started) by id — the BLAKE3
//! of the predecessor's stored bytes — together with the predecessor's expiry. A missing
//! predecessor that had not yet expired means someone removed history; `verify` reports it.

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
