//! The `ObjectStore` contract: versioned objects with S3 Object Lock semantics, each
//! request checked against the caller's role.
//!
//! Invariant guarded: nothing is overwritten and a locked version cannot be removed
//! before its retain-until date by anyone. Every implementation (the local vault, S3, the
//! vault server) must pass the one contract suite in `coffer-testkit`; a behaviour is
//! defined by that suite, not by one implementation.
//!
//! # The contract
//!
//! A handle is bound to one authenticated [`Principal`]; every method first checks the
//! principal's role against [`crate::Role::allows`] and fails with `Forbidden` before
//! looking at anything else (so a refused request reveals nothing about the key).
//!
//! - **put** always creates a new version, newer than every existing version of the key,
//!   and returns its metadata. An explicit retention must end in the future; without
//!   one the store's default retention applies. The store computes and keeps a content
//!   checksum and verifies it on every read.
//! - **get/head** by key read the latest version; a key whose latest version is a delete
//!   marker is `NotFound`. By version they read exactly that version; asking for the data
//!   of a delete marker is `InvalidRequest`.
//! - **open_ranged** opens the version `get` would read for reads of byte ranges, with the
//!   same permission and errors. A range is not checked against the version's checksum
//!   (only a whole object can be): the caller authenticates what it reads, as the
//!   repository does with every sealed blob, and falls back to `get` when that fails.
//! - **list** returns keys whose latest version is an object, sorted by key (bytewise),
//!   a page at a time. **list_versions** returns every version and delete marker, sorted
//!   by key and then newest first. An implementation may return fewer items than the
//!   `limit` asked for (S3 and the vault cap a page at 1000); callers follow `next`.
//!   **list_entries**/**list_version_entries** are the same listings without lock state
//!   and checksum, for callers that need only keys and versions.
//! - **delete** (no version) adds a delete marker and removes nothing.
//! - **delete_version** is the only destructive operation. It fails with `Locked` while
//!   a legal hold is on, while a compliance retention is active (whatever the bypass
//!   flag), or while a governance retention is active and `bypass_governance` is not set;
//!   with the flag set by a role without the bypass permission it fails with `Forbidden`
//!   (S3's AccessDenied).
//! - **put_retention**: a compliance retention can only be extended (same mode, same or
//!   later date); shortening, removing or changing it to governance is `Locked`. An
//!   active governance retention can be shortened, removed or turned to governance with
//!   an earlier date only with bypass. A date in the past is `InvalidRequest`. Once a
//!   retention has ended the version is unprotected and any new retention may be set.
//! - **legal hold** on/off; turning it off needs the `legal-hold-off` permission.
//! - **lock configuration** is enabled at creation and can never be disabled
//!   (`InvalidRequest`); the default retention can be set or removed. **Versioning**
//!   cannot be suspended on a locked store (`InvalidRequest`).
//!
//! Implementations are synchronous and `Send + Sync`: backup pipelines run on threads,
//! and an implementation over an async client (S3) owns its runtime.

use crate::error::{Result, StoreError};
use crate::model::{
    ListEntry, LockConfig, ObjectVersion, Page, Protection, PutOptions, Retention, VersionId, Versioning,
};
use crate::role::Principal;

/// An object's metadata and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Metadata of the version read.
    pub meta: ObjectVersion,
    /// The data, verified against the stored checksum.
    pub data: Vec<u8>,
}

/// An object version opened for reads of byte ranges ([`ObjectStore::open_ranged`]).
pub trait RangeRead: Send + Sync {
    /// The version being read.
    fn meta(&self) -> &ObjectVersion;

    /// Reads `len` bytes at `offset`, not checked against the version's checksum.
    ///
    /// # Errors
    /// `InvalidRequest` for a range past the version's size; `Corrupt` when the stored data
    /// ends before its recorded size; `Io`.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
}

/// A whole object read into memory, for stores without cheaper ranged reads.
struct InMemory(Object);

impl RangeRead for InMemory {
    fn meta(&self) -> &ObjectVersion {
        &self.0.meta
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let range = usize::try_from(offset).ok().and_then(|o| Some(o..o.checked_add(len)?));
        range.and_then(|r| self.0.data.get(r)).map(<[u8]>::to_vec).ok_or_else(|| {
            StoreError::invalid(format!(
                "bytes {offset}..+{len} are past the end of {} ({} bytes)",
                self.0.meta.key, self.0.meta.size
            ))
        })
    }
}

/// What a store is, for callers choosing an I/O strategy: declared by the store instead of
/// guessed from how its location is spelled (an `s3://` URL may name a vault server on the
/// same host; a wrapper around a local vault may add latency).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Every request costs a network round trip: read ahead and run requests in parallel
    /// to hide the latency (S3). A local store's requests are cheap enough that read-ahead
    /// only costs memory.
    pub remote: bool,
    /// [`ObjectStore::open_ranged`] reads only the bytes asked for (the local vault reads
    /// a range of the version's file). Without it a ranged read fetches the whole object,
    /// so a reader is better off caching whole packs.
    pub cheap_ranged_reads: bool,
}

impl Capabilities {
    /// A store on a local disk: cheap requests, cheap ranged reads.
    pub const LOCAL: Self = Self { remote: false, cheap_ranged_reads: true };
    /// A store across a network whose ranged reads fetch whole objects.
    pub const REMOTE: Self = Self { remote: true, cheap_ranged_reads: false };
}

/// Versioned, object-locked storage, seen through one principal. See the module docs.
pub trait ObjectStore: Send + Sync {
    /// The principal this handle acts as.
    fn principal(&self) -> &Principal;

    /// What kind of store this is ([`Capabilities`]). No default: every implementation
    /// says. A store that wraps another (a test double, a proxy) forwards its inner store's
    /// answer unless it changes the cost of requests.
    fn capabilities(&self) -> Capabilities;

    /// Stores `data` as a new version of `key`. The version returned is as the store
    /// reports it once stored (S3: read back with a `HeadObject`), its lock included — never
    /// just what `opts` asked for: callers keep that lock as an observation of the store.
    ///
    /// # Errors
    /// `Forbidden`, `InvalidRequest` (bad key, retention in the past), `Io`.
    fn put(&self, key: &str, data: &[u8], opts: &PutOptions) -> Result<ObjectVersion>;

    /// Reads the latest version of `key`, or the given version, verifying its checksum.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `InvalidRequest` (a delete marker's version), `Corrupt`, `Io`.
    fn get(&self, key: &str, version: Option<&VersionId>) -> Result<Object>;

    /// Opens the latest version of `key`, or the given version, for reads of byte ranges
    /// that are **not** checked against its checksum (see the module docs). The default
    /// reads the whole object once, verified, and serves ranges from memory; the local
    /// vault reads ranges from the version's file.
    ///
    /// # Errors
    /// As [`ObjectStore::get`].
    fn open_ranged(&self, key: &str, version: Option<&VersionId>) -> Result<Box<dyn RangeRead>> {
        Ok(Box::new(InMemory(self.get(key, version)?)))
    }

    /// Reads the metadata of the latest version of `key`, or of the given version.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Io`.
    fn head(&self, key: &str, version: Option<&VersionId>) -> Result<ObjectVersion>;

    /// Lists keys under `prefix` whose latest version is an object, sorted, at most
    /// `limit` per page, continuing after the page that returned `token`.
    ///
    /// # Errors
    /// `Forbidden`, `InvalidRequest` (bad token), `Io`.
    fn list(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ObjectVersion>>;

    /// Lists all versions and delete markers under `prefix`, by key then newest first.
    ///
    /// # Errors
    /// `Forbidden`, `InvalidRequest` (bad token), `Io`.
    fn list_versions(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ObjectVersion>>;

    /// As [`ObjectStore::list`] (same order, pages and tokens, same permission), without
    /// retention, legal hold and checksum: for callers that only need keys, at the cost of
    /// the store's listing alone (on S3 one request per page instead of one more per
    /// object).
    ///
    /// # Errors
    /// As `list`.
    fn list_entries(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ListEntry>> {
        let page = self.list(prefix, token, limit)?;
        Ok(Page { items: page.items.into_iter().map(ListEntry::from).collect(), next: page.next })
    }

    /// As [`ObjectStore::list_versions`], without retention, legal hold and checksum (see
    /// [`ObjectStore::list_entries`]).
    ///
    /// # Errors
    /// As `list_versions`.
    fn list_version_entries(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ListEntry>> {
        let page = self.list_versions(prefix, token, limit)?;
        Ok(Page { items: page.items.into_iter().map(ListEntry::from).collect(), next: page.next })
    }

    /// The lock of object version `version` of `key`, which a version listing just returned
    /// as an object (not a delete marker): for callers that already listed the key. On S3
    /// one `HeadObject`, where [`ObjectStore::head`] with a version first lists the key to
    /// tell a delete marker (which cannot be HEADed there).
    ///
    /// # Errors
    /// As `head` (`NotFound` when the version is gone).
    fn version_retention(&self, key: &str, version: &VersionId) -> Result<Option<Retention>> {
        Ok(self.head(key, Some(version))?.retention)
    }

    /// Adds a delete marker to `key`; removes nothing. Returns the marker.
    ///
    /// # Errors
    /// `Forbidden`, `InvalidRequest`, `Io`.
    fn delete(&self, key: &str) -> Result<ObjectVersion>;

    /// Permanently removes one version (or delete marker).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Locked`, `Io`.
    fn delete_version(&self, key: &str, version: &VersionId, bypass_governance: bool) -> Result<()>;

    /// Sets, extends, or (governance with bypass only) shortens or removes a retention.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Locked`, `InvalidRequest`, `Io`.
    fn put_retention(
        &self,
        key: &str,
        version: &VersionId,
        retention: Option<Retention>,
        bypass_governance: bool,
    ) -> Result<()>;

    /// Turns the legal hold of a version on or off.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `InvalidRequest` (a delete marker), `Io`.
    fn put_legal_hold(&self, key: &str, version: &VersionId, on: bool) -> Result<()>;

    /// Reads the Object Lock configuration.
    ///
    /// # Errors
    /// `Forbidden`, `Io`.
    fn lock_config(&self) -> Result<LockConfig>;

    /// Replaces the Object Lock configuration; `enabled` must stay true.
    ///
    /// # Errors
    /// `Forbidden`, `InvalidRequest`, `Io`.
    fn put_lock_config(&self, config: &LockConfig) -> Result<()>;

    /// Reads the versioning status.
    ///
    /// # Errors
    /// `Forbidden`, `Io`.
    fn versioning(&self) -> Result<Versioning>;

    /// Sets the versioning status; suspending is refused on a locked store.
    ///
    /// # Errors
    /// `Forbidden`, `InvalidRequest`, `Io`.
    fn put_versioning(&self, status: Versioning) -> Result<()>;

    /// Sends one of the immutability canary's probes ([`crate::probe`]) so that the store
    /// itself decides: a store that checks requests on the client side before sending them
    /// (S3) sends this one as it is. The default is the contract method itself, right for a
    /// store whose methods are its enforcement (the local vault). An object probe outside
    /// [`crate::probe::RESERVED_PREFIX`] is refused before anything is sent.
    ///
    /// # Errors
    /// What the store answers (a refusal is the expected outcome); `InvalidRequest` for a
    /// key outside the reserved prefix.
    fn probe(&self, request: &crate::probe::ProbeRequest) -> Result<()> {
        crate::probe::through_contract(self, request)
    }

    /// Puts `data` under `key` (under [`crate::probe::RESERVED_PREFIX`]) create-only and
    /// asking for no retention at all, so that the store's own default retention is what
    /// locks it (the canary's check of the default). The default is [`ObjectStore::put`]
    /// with no retention; S3, which computes the default itself on normal puts, sends no
    /// lock headers here.
    ///
    /// # Errors
    /// As [`ObjectStore::put`]; `InvalidRequest` for a key outside the reserved prefix.
    fn probe_put_unlocked(&self, key: &str, data: &[u8]) -> Result<ObjectVersion> {
        crate::probe::check_reserved_key(Some(key))?;
        self.put(key, data, &PutOptions { create_only: true, ..PutOptions::default() })
    }

    /// Reads the store's protective configuration (the drift watch's input). The default
    /// reads the lock configuration and versioning; S3 adds the bucket policy, public
    /// access block, ownership controls, lifecycle and replication rules, a local vault
    /// its principals. A field that cannot be read goes to `unreadable`, with why.
    ///
    /// # Errors
    /// Only when nothing at all can be read (`Forbidden`, `Io`).
    fn protection(&self) -> Result<Protection> {
        let mut p = Protection::default();
        p.add_lock_config(self.lock_config());
        p.add("versioning", self.versioning().map(|v| v.to_string()));
        Ok(p)
    }
}
