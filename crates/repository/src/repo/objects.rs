//! Content-addressed objects: writing them once with their lock, reading them back checked
//! against their names (searching past a rogue writer's versions), and classifying the
//! errors that mean "gone" or "damaged".
//!
//! Invariant guarded here: what is read back under a content-addressed name is returned only
//! if it hashes to that name; nothing is ever overwritten.

use super::*;

impl Repository {
    /// [`Repository::pack_key`], formatted only when shown: for error contexts on paths
    /// taken once per blob.
    pub(super) fn pack_name<'a>(&'a self, id: &'a Id) -> PackKey<'a> {
        PackKey { prefix: &self.prefix, id }
    }

    pub(super) fn put(&self, key: &str, bytes: &[u8], until: Timestamp) -> Result<VersionId> {
        crate::put::put_once(self.store.as_ref(), key, bytes, Retention { mode: self.config.retention.mode, until })
    }

    /// Reads and checks an object whose name is the hash of its bytes. Content-addressed
    /// objects are written once; if the latest version does not match its name (a later
    /// put under the same key, by mistake or malice) or is a delete marker, a version that
    /// does is found among the others — nothing is overwritten, so it is still there. Any
    /// matching version will do: they are equal. (With a point in time this is still right:
    /// a name is only reached through listings and indexes of that time.)
    pub(crate) fn get_hashed(&self, key: &str, id: &Id) -> Result<Vec<u8>> {
        let pinned = self.pin(key);
        let first_err = match self.store.get(key, pinned.as_ref()) {
            Ok(o) if id.names(&o) => return Ok(o.data),
            Ok(o) => (Some(o.meta.version), RepoError::corrupt(key, "content does not match its name")),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) => {
                (None, RepoError::store(format!("cannot read {key}"))(e))
            }
            Err(e) => return Err(RepoError::store(format!("cannot read {key}"))(e)),
        };
        let versions = versions::versions_of(self.store.as_ref(), key, self.as_of)?;
        if let Some((data, version)) = hashed_version(self.store.as_ref(), &versions, id, first_err.0.as_ref())? {
            self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.to_owned(), version);
            return Ok(data);
        }
        Err(first_err.1)
    }

    /// [`Repository::get_hashed`] for a metadata object the store has just listed: served
    /// from the local cache when a copy there hashes to `id` (see [`crate::cache`]), else
    /// read from the store and kept in the cache. The caller authenticates the bytes either
    /// way; only names a store listing returned may be asked for, so the cache decides no
    /// object's existence.
    pub(super) fn get_meta(&self, kind: CacheKind, key: &str, id: &Id) -> Result<Vec<u8>> {
        if let Some(bytes) = self.cache_for_reads().and_then(|c| c.get(kind, id)) {
            return Ok(bytes);
        }
        let bytes = self.get_hashed(key, id)?;
        self.cache_put(kind, id, &bytes);
        Ok(bytes)
    }

    /// Keeps the bytes of a metadata object this handle read or wrote in the local cache.
    pub(super) fn cache_put(&self, kind: CacheKind, id: &Id, bytes: &[u8]) {
        if let Some(c) = &self.meta_cache {
            c.put(kind, id, bytes);
        }
    }

    /// After a complete listing of `kind` (as the store is now, not as of a past time: then
    /// later names exist too), drops the cache entries of names it did not return.
    pub(super) fn cache_retain(&self, kind: CacheKind, listed: impl Fn(&Id) -> bool) {
        if let (Some(c), None) = (&self.meta_cache, self.as_of) {
            c.retain(kind, listed);
        }
    }

    /// The catalog of `kind` ([`crate::catalog`]) with its MAC key, when this handle reads
    /// through a local cache (not `--no-cache`, not while reads bypass the cache, not during
    /// `verify`: [`Repository::without_catalog`]).
    pub(super) fn catalog_load(&self, kind: CatalogKind) -> Option<(Catalog, blake3::Hasher)> {
        if !self.catalog_on() {
            return None;
        }
        let cache = self.cache_for_reads()?;
        let mac = self.key.keyed_hasher(crate::catalog::PURPOSE);
        Some((Catalog::load(cache, kind, &mac), mac))
    }

    /// Writes what a catalog gained, after a complete listing begun at `started` for which
    /// `listed` tells the ids returned; not for a handle seeing the past (later names exist
    /// too).
    pub(super) fn catalog_keep(
        &self,
        catalog: Option<(Catalog, blake3::Hasher)>,
        started: Timestamp,
        listed: impl Fn(&Id) -> bool,
    ) {
        if let (Some((cat, mac)), Some(cache), None) = (catalog, &self.meta_cache, self.as_of) {
            cat.keep(cache, &mac, listed, Some(started.as_second()));
        }
    }

    /// Both catalogs, when this handle may take them for a complete listing of `index/` and
    /// `snapshots/` (see [`Repository::writer`]): no unfinished backup of this host, a
    /// cache, the present (not `--as-of`),
    /// the catalog on, compliance locks, a `relist_after` window, both catalogs recent by
    /// this host's clock, and at least one snapshot (a first snapshot names no predecessor:
    /// it must be sure there is none, so it lists).
    pub(super) fn recent_listing(&self) -> Option<(Catalog, Catalog)> {
        // An interrupted backup of this host may have written index objects (and its
        // snapshot) without recording them in the catalog: then the history is listed.
        if self.meta_cache.as_ref().is_some_and(|c| !c.unfinished_writes().is_empty()) {
            return None;
        }
        if self.as_of.is_some()
            || self.relist_after.is_zero()
            || self.config.retention.mode != coffer_store::RetentionMode::Compliance
            || self.cache_bypass.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let now = self.clock.now().as_second();
        let window = i64::try_from(self.relist_after.as_secs()).unwrap_or(i64::MAX);
        let (index, _) = self.catalog_load(CatalogKind::Index)?;
        if !index.recent(now, window) {
            return None;
        }
        let (snaps, _) = self.catalog_load(CatalogKind::Snapshot)?;
        (snaps.recent(now, window) && snaps.entries().next().is_some()).then_some((index, snaps))
    }

    /// Adds objects this handle wrote — `(kind, id, plaintext)` — to the catalogs, so a later
    /// writer that takes the catalog for a listing knows them. One that cannot be kept
    /// removes its kind's base: the next writer lists rather than miss them.
    pub(super) fn catalog_add_own(&self, objects: Vec<(CatalogKind, Id, Vec<u8>)>) {
        let Some(cache) = &self.meta_cache else { return };
        if self.as_of.is_some() || objects.is_empty() {
            return;
        }
        let (mut index, mut snaps) = (Vec::new(), Vec::new());
        for (kind, id, plain) in objects {
            match kind {
                CatalogKind::Index => index.push((id, plain)),
                CatalogKind::Snapshot => snaps.push((id, plain)),
            }
        }
        // Not through the verify guard: this is the writer's own record.
        let mac = self.key.keyed_hasher(crate::catalog::PURPOSE);
        for (kind, mine) in [(CatalogKind::Index, index), (CatalogKind::Snapshot, snaps)] {
            if !mine.is_empty() && !Catalog::append(cache, kind, &mac, mine) {
                Catalog::forget(cache, kind);
            }
        }
    }

    /// How many per-object metadata cache entries this handle has read (0 without a cache):
    /// for tests that check a run opens no old object (see [`crate::catalog`]).
    #[must_use]
    pub fn cache_entry_reads(&self) -> u64 {
        self.meta_cache.as_ref().map_or(0, |c| c.entry_reads())
    }

    /// The authentic version of a tampered content-addressed name, once found.
    pub(super) fn pin(&self, key: &str) -> Option<VersionId> {
        self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned()
    }
}

/// A pack's store key, as [`Repository::pack_name`] gives it.
#[derive(Clone, Copy)]
pub(super) struct PackKey<'a> {
    prefix: &'a str,
    id: &'a Id,
}

impl std::fmt::Display for PackKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.id.to_string();
        write!(f, "{}data/{}/{hex}", self.prefix, &hex[..2])
    }
}

/// The first object version of `versions` other than `skip` whose content hashes to `id`,
/// newest first, and its version id; `None` if there is none. Versions that cannot be read
/// are passed over.
///
/// # Errors
/// Store errors other than a missing or damaged version (an unreachable store).
pub(super) fn hashed_version(
    store: &dyn ObjectStore,
    versions: &versions::Versions,
    id: &Id,
    skip: Option<&VersionId>,
) -> Result<Option<(Vec<u8>, VersionId)>> {
    for v in versions.objects.iter().rev().filter(|v| Some(&v.version) != skip) {
        match get_listed(store, &versions.key, v) {
            Ok(o) if id.names(&o) => return Ok(Some((o.data, v.version.clone()))),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) => {}
            Err(e) => return Err(RepoError::store(format!("cannot read {}", versions.key))(e)),
        }
    }
    Ok(None)
}

/// Reads the listed version `v` of `key`. A read by version id costs S3 a second request (to
/// learn whether it is the latest), so the version the listing called the latest is read as
/// the latest — and taken only if it still is that version.
pub(crate) fn get_listed(
    store: &dyn ObjectStore,
    key: &str,
    v: &coffer_store::ListEntry,
) -> coffer_store::Result<coffer_store::Object> {
    if v.is_latest {
        if let Ok(o) = store.get(key, None) {
            if o.meta.version == v.version {
                return Ok(o);
            }
        }
    }
    store.get(key, Some(&v.version))
}

/// Whether the object was not there (any more).
pub(super) fn is_gone(e: &RepoError) -> bool {
    e.store_error().is_some_and(|s| s.kind() == ErrorKind::NotFound)
}

/// Whether the object is there but damaged (failed a checksum, authentication or decoding).
pub(super) fn is_damaged(e: &RepoError) -> bool {
    matches!(e, RepoError::Corrupt { .. }) || e.store_error().is_some_and(|s| s.kind() == ErrorKind::Corrupt)
}

/// Whether an error is damaged data (as opposed to an unreachable store or a refusal).
pub(super) fn is_damage(e: &RepoError) -> bool {
    match e {
        RepoError::Corrupt { .. } => true,
        RepoError::Store { source, .. } => source.kind() == ErrorKind::Corrupt,
        _ => false,
    }
}

/// Whether a store error means "not there".
#[must_use]
pub fn is_not_found(e: &StoreError) -> bool {
    e.kind() == ErrorKind::NotFound
}
