//! Opening, creating and writing a repository on any `ObjectStore`.
//!
//! Storage keys (all under the repository's prefix):
//!
//! ```text
//! config                 enveloped Config
//! keys/ID                KeyFile (plaintext JSON; ID = BLAKE3 of the bytes)
//! data/XX/ID             packs (ID = BLAKE3 of the bytes, XX its first two hex digits)
//! index/ID               enveloped IndexFile
//! snapshots/ID           enveloped Snapshot
//! ledger/ID              enveloped LedgerRecord (the job ledger; ID = BLAKE3 of the bytes)
//! dicts/ID               enveloped compression dictionary (ID = BLAKE3 of the bytes)
//! ```
//!
//! Invariants guarded here (see `docs/design.md`, "Read and write ordering"):
//! - Writers only add objects and extend locks; nothing here deletes.
//! - Every object is written with a retention covering the snapshot that needs it; a
//!   reused pack whose lock ends too early is extended *before* the snapshot is written,
//!   and if it has already been pruned its blobs are uploaded again.
//! - The snapshot is written last, after every object it references is durable.

use crate::cache::{CacheChoice, Kind as CacheKind, MetaCache};
use crate::catalog::{Catalog, Kind as CatalogKind};
use crate::crypto::{KdfParams, KeyFile, MasterKey};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{Index, IndexFile, IndexPack};
use crate::pack::{self, BlobKind, ObjectKind};
use crate::pipeline::{Pipeline, Target};
use crate::snapshot::{Snapshot, Summary};
use crate::tree::Tree;
use crate::versions;
use coffer_store::{Clock, ErrorKind, ObjectStore, RangeRead, Retention, RetentionMode, StoreError, VersionId};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
mod catalog_tests;
mod config;
mod dicts;
mod indexes;
mod ledger;
mod locks;
mod objects;
mod open;
mod reader;
mod snapshots;
mod writer;

pub use config::{ChunkerParams, Config, InitOptions, RetentionPolicy};
pub use ledger::{LedgerEntry, LedgerProblem, LedgerProblemKind, LedgerRecord, LedgerView};
use locks::MetaListing;
pub(crate) use objects::get_listed;
pub use objects::is_not_found;
use objects::{hashed_version, is_damage, is_damaged, is_gone};
use reader::PackCache;
pub use reader::{BlobReader, READ_AHEAD_THREADS, SharedReader};
pub use snapshots::{Damaged, Snapshots};
pub use writer::{BlobWriter, REPACK_BELOW_PERCENT};

/// How long a writer takes this host's last listing of the history for a complete one by
/// default ([`Repository::with_relist_after`]): a day. Backups of other hosts written since
/// are then seen by a day later at most (their data is deduplicated against, and the hash
/// chain links past them, once this host lists again).
pub const DEFAULT_RELIST_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// An open repository.
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    location: String,
    prefix: String,
    key: MasterKey,
    config: Config,
    clock: Clock,
    /// The point in time the repository is seen as of (`--as-of`): only versions the store
    /// created at or before it exist for this handle's reads. `None`: now.
    as_of: Option<Timestamp>,
    /// Snapshots already read, by id. A snapshot object never changes (its key is the hash
    /// of its bytes, checked on read), so one read per process is enough: a backup looks at
    /// the snapshot list three times (expiry, parent, hash chain), which on S3 was three
    /// `GetObject`s per snapshot in the repository, on every backup. Listings are not
    /// cached: a snapshot removed or added since is seen as such.
    ///
    /// Bounded for long-running processes: every complete listing
    /// ([`Repository::all_snapshots_and_damage`], under every snapshot listing) drops the
    /// entries of ids it did not find (pruned, or absent as of `--as-of`), so the cache holds
    /// at most the snapshots of the latest listing plus those read by id since, and a pruned
    /// snapshot is not served from it once a listing has seen it gone.
    snapshot_cache: std::sync::Mutex<HashMap<Id, Snapshot>>,
    /// Content-addressed names whose latest version is not the authentic one (a rogue
    /// writer's garbage on top), with the version that is: found once, then read directly,
    /// so a tampered pack costs one search, not one per blob read from it. Holds only
    /// tampered names.
    pins: std::sync::Mutex<HashMap<String, VersionId>>,
    /// When the store created each snapshot object (its first version), as of the last
    /// complete listing: the one time of a snapshot a writer cannot claim.
    stored: std::sync::Mutex<HashMap<Id, Timestamp>>,
    /// Ledger records already read and authenticated, by id, with when the store created
    /// them (immutable, like snapshots: bounded by the latest ledger listing).
    ledger_cache: std::sync::Mutex<HashMap<Id, (LedgerRecord, Timestamp)>>,
    /// Serializes this process's ledger appends, so one process never forks its own chain.
    ledger_append: std::sync::Mutex<()>,
    /// The local cache of metadata objects' bytes, if any ([`Repository::with_cache`]).
    meta_cache: Option<Arc<MetaCache>>,
    /// Reads skip the cache while set (`verify` reading data checks the store's own bytes
    /// of every metadata object: [`Repository::bypass_cache_reads`]).
    cache_bypass: std::sync::atomic::AtomicBool,
    /// The catalog is not used while set (`verify` checks the objects themselves, never a
    /// derived copy of their content: [`Repository::without_catalog`]).
    catalog_off: std::sync::atomic::AtomicBool,
    /// How long a writer may take the catalog for a listing of `index/` and `snapshots/`
    /// ([`Repository::with_relist_after`]); zero: always list.
    relist_after: std::time::Duration,
    /// The compression dictionaries (`dicts/`), listed on first need.
    dicts: dicts::Loaded,
    /// The config's and key files' versions as `open` listed them (see [`MetaListing`]).
    meta_listed: std::sync::Mutex<Option<MetaListing>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the repository is, for messages.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The store (as the principal it was opened with).
    #[must_use]
    pub fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    /// The master key.
    #[must_use]
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The clock.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The point in time this handle sees the repository as of, if not now. Everything it
    /// lists and reads is what the store held then, by the store's own version creation
    /// times: names, versions and key files created later — a forged snapshot included,
    /// however well sealed — do not exist for it. Such a handle cannot write.
    #[must_use]
    pub fn as_of(&self) -> Option<Timestamp> {
        self.as_of
    }

    /// The store key of a pack.
    #[must_use]
    pub fn pack_key(&self, id: &Id) -> String {
        self.pack_name(id).to_string()
    }

    /// The store key of a snapshot.
    #[must_use]
    pub fn snapshot_key(&self, id: &Id) -> String {
        format!("{}snapshots/{id}", self.prefix)
    }

    /// The prefix under which the repository lives.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Calls `f` with every name under `prefix` this handle sees (see [`versions`]): delete
    /// markers hide nothing, and with a point in time only names created by then exist.
    /// The config's and key files' versions `open` listed, if it did (see [`MetaListing`]).
    fn meta_listed(&self) -> Option<MetaListing> {
        self.meta_listed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn for_each_name(&self, prefix: &str, mut f: impl FnMut(String) -> Result<()>) -> Result<()> {
        versions::for_each_name(self.store.as_ref(), prefix, self.as_of, |v| f(v.key))
    }

    /// Uses the local metadata cache `choice` names for this store (see [`crate::cache`]):
    /// snapshot, index and ledger objects listed by the store are then read from the cache
    /// when a verified copy is there, and what this handle reads or writes is kept there.
    /// A cache that cannot be created means no cache, never an error.
    #[must_use]
    pub fn with_cache(mut self, choice: &CacheChoice) -> Self {
        self.meta_cache = choice
            .root(self.store.capabilities().remote)
            .and_then(|root| MetaCache::open(root, &self.config.id))
            .map(Arc::new);
        self
    }

    /// How long after this host's last complete listing of `index/` and `snapshots/` a
    /// writer may still take the catalog for that listing (plus the objects this host wrote
    /// since) instead of listing again: [`DEFAULT_RELIST_AFTER`] unless set; zero lists on
    /// every backup. Only with a cache, and only where it is safe: see
    /// [`Repository::writer`].
    #[must_use]
    pub fn with_relist_after(mut self, after: std::time::Duration) -> Self {
        self.relist_after = after;
        self
    }

    /// Until the guard is dropped, metadata objects are read from the store, not from the
    /// local cache (what is read still refreshes the cache): for `verify --read-data`,
    /// whose point is to read the store's bytes — a snapshot object rotten in the store
    /// must not pass because a good copy sits on this host.
    #[must_use]
    pub fn bypass_cache_reads(&self) -> CacheBypass<'_> {
        self.cache_bypass.store(true, std::sync::atomic::Ordering::Relaxed);
        CacheBypass(self)
    }

    /// Until the guard is dropped, index and snapshot objects are opened one by one
    /// (through the per-object cache, whose entries are checked against their names), not
    /// served from the catalog ([`crate::catalog`]): for `verify`, the check that must not
    /// rest on anything this host could have written with the key — the catalog is
    /// authenticated with a key the backup host holds, the per-object entries by their
    /// content address. It costs local reads, no store request.
    #[must_use]
    pub fn without_catalog(&self) -> CatalogOff<'_> {
        self.catalog_off.store(true, std::sync::atomic::Ordering::Relaxed);
        CatalogOff(self)
    }

    /// Whether the catalog may be used now.
    pub(crate) fn catalog_on(&self) -> bool {
        !self.catalog_off.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cache to read from, unless bypassed.
    pub(crate) fn cache_for_reads(&self) -> Option<&MetaCache> {
        if self.cache_bypass.load(std::sync::atomic::Ordering::Relaxed) { None } else { self.meta_cache.as_deref() }
    }

    /// After a complete listing of `data/` (as the store is now), drops the cached tree
    /// packs whose names it did not return (pruned).
    pub(crate) fn retain_tree_packs(&self, listed: impl Fn(&Id) -> bool) {
        self.cache_retain(CacheKind::TreePack, listed);
    }

    /// The local metadata cache, even while reads bypass it (to keep what was read).
    pub(crate) fn meta_cache_handle(&self) -> Option<&MetaCache> {
        self.meta_cache.as_deref()
    }

    /// Whether this handle uses a local metadata cache.
    #[must_use]
    pub fn has_cache(&self) -> bool {
        self.meta_cache.is_some()
    }

    /// Refuses to write through a handle that sees the past.
    pub(crate) fn writable(&self) -> Result<()> {
        match self.as_of {
            Some(t) => Err(RepoError::Invalid(format!(
                "{} is opened as of {t}, which is read-only; drop --as-of to write",
                self.location
            ))),
            None => Ok(()),
        }
    }
}

/// Reads skip the local cache while this lives ([`Repository::bypass_cache_reads`]).
pub struct CacheBypass<'a>(&'a Repository);

impl Drop for CacheBypass<'_> {
    fn drop(&mut self) {
        self.0.cache_bypass.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The catalog is not used while this lives ([`Repository::without_catalog`]).
pub struct CatalogOff<'a>(&'a Repository);

impl Drop for CatalogOff<'_> {
    fn drop(&mut self) {
        self.0.catalog_off.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

fn to_signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// A duration as it is typed (`90d`, `12h`): [`crate::options::format_duration`], the one
/// printer, under the name the repository's messages have always used.
pub use crate::options::format_duration as humanize;
