//! Coffer's repository: the backup format over any `ObjectStore`.
//!
//! Data is cut into content-defined chunks (FastCDC), each identified by a BLAKE3 hash
//! keyed with a repository secret, compressed with zstd when that helps, sealed with
//! XChaCha20-Poly1305 and gathered into packs. Indexes say which pack holds each blob;
//! trees describe directories; a snapshot names a root tree and the snapshot before it.
//! Every object is written with an Object Lock retention that covers every snapshot that
//! needs it (`docs/design.md` is the full format and its invariants).
//!
//! - [`Repository`] — init/open, keys, snapshots, the index.
//! - [`BlobWriter`] — dedup, packing and reference-aware lock extension during a backup.
//! - [`BlobReader`] — authenticated reads.

pub mod cache;
pub mod catalog;
pub mod chunker;
pub mod crypto;
pub mod dict;
pub mod error;
pub mod id;
pub mod index;
pub mod observe;
pub mod open;
pub mod options;
pub mod pack;
mod pipeline;
pub mod prune;
pub mod put;
pub mod repo;
pub mod retention;
pub mod snapshot;
pub mod tree;
pub mod verify;
pub mod versions;
pub mod wal;

pub use cache::CacheChoice;
pub use crypto::{KdfParams, MasterKey};
pub use error::{RepoError, Result};
pub use id::Id;
pub use index::Index;
pub use observe::{Cancel, Event, JobControl, Observer, Progress};
pub use open::{KeySource, OpenRepoError, OpenedRepository, RepoRequest, open_repository};
pub use options::{PruneOptions, VerifyOptions};
pub use pack::BlobKind;
pub use prune::{PruneReport, prune};
pub use repo::{
    BlobReader, BlobWriter, ChunkerParams, Config, InitOptions, LedgerEntry, LedgerProblem, LedgerProblemKind,
    LedgerRecord, LedgerView, Repository, RetentionPolicy, SharedReader, humanize,
};
pub use retention::{KeepRules, Series};
pub use snapshot::{ChainLink, NewSnapshot, PG_BASE_VERSION, PgBase, Snapshot, Summary};
pub use tree::{Node, NodeKind, Tree, Xattr};
pub use verify::{Finding, FindingKind, ReadData, SnapshotLocks, VerifyReport, snapshot_locks, verify};
pub use wal::WalPut;

/// The former names of [`verify`](mod@verify) and [`retention`], kept while code written
/// against them (`wal.rs`, branches in flight) moves over; new code uses the new names.
#[doc(hidden)]
pub use retention as policy;
#[doc(hidden)]
pub use verify as check;
