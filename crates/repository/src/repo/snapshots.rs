//! Listing and reading snapshots: the per-process snapshot cache, when the store created each
//! snapshot, and finding one by id prefix or `latest`.
//!
//! Invariants guarded here: a snapshot is checked against its id on read; one damaged
//! snapshot never hides the others; the cache is bounded by the latest complete listing.

use super::*;

impl Repository {
    /// Every snapshot object (expired ones included), oldest first. Damaged ones are left
    /// out (see [`Repository::all_snapshots_and_damage`]).
    ///
    /// # Errors
    /// Store errors.
    pub fn all_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        Ok(self.all_snapshots_and_damage()?.0)
    }

    /// Every readable snapshot object (expired ones included), oldest first, and the key and
    /// error of each one that cannot be read. One damaged snapshot object must not make the
    /// others unreachable or stop new backups (it is locked, so it stays until it expires);
    /// `verify` reports it. One removed between listing and reading (pruned: it had
    /// expired) is simply gone: prune never fails a backup.
    ///
    /// # Errors
    /// Store errors other than damage.
    pub fn all_snapshots_and_damage(&self) -> Result<(Snapshots, Vec<Damaged>)> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        let mut listed: HashMap<Id, Timestamp> = HashMap::new();
        let mut catalog = self.catalog_load(CatalogKind::Snapshot);
        let started = self.clock.now();
        versions::for_each_name(self.store.as_ref(), &format!("{}snapshots/", self.prefix), self.as_of, |v| {
            let k = v.key;
            let id: Id = match k.rsplit('/').next().unwrap_or("").parse() {
                Ok(id) => id,
                Err(e) => {
                    damaged.push((k.clone(), RepoError::corrupt(k, e)));
                    return Ok(());
                }
            };
            if let Some(first) = v.objects.first() {
                listed.insert(id, first.created);
            }
            match self.read_snapshot_cataloged(&id, catalog.as_mut().map(|(c, _)| c)) {
                Ok(s) => out.push((id, s)),
                Err(e) if is_gone(&e) => {}
                Err(e) if is_damaged(&e) => damaged.push((k, e)),
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        // The listing is complete: forget snapshots it no longer has (see `snapshot_cache`).
        self.snapshot_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| listed.contains_key(id));
        self.cache_retain(CacheKind::Snapshot, |id| listed.contains_key(id));
        self.catalog_keep(catalog, started, |id| listed.contains_key(id));
        *self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = listed;
        out.sort_by_key(|(id, s)| (s.time, *id));
        Ok((out, damaged))
    }

    /// When the store created snapshot `id`'s object, as of the last listing of snapshots
    /// ([`Repository::all_snapshots_and_damage`] and what calls it). A snapshot's own `time`
    /// is what its writer claims; this one the writer cannot choose, so it is what to pick
    /// an `--as-of` time by, and what `verify` compares the claim with.
    #[must_use]
    pub fn stored_at(&self, id: &Id) -> Option<Timestamp> {
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).copied()
    }

    /// Snapshots that have not expired, oldest first.
    ///
    /// # Errors
    /// Store errors, `Corrupt`.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let now = self.clock.now();
        Ok(self.all_snapshots()?.into_iter().filter(|(_, s)| s.expires > now).collect())
    }

    /// Reads one snapshot, checking it against its id.
    ///
    /// # Errors
    /// Store errors, `Corrupt`.
    pub fn read_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let cache = || self.snapshot_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = cache().get(id) {
            return Ok(s.clone());
        }
        let key = self.snapshot_key(id);
        let bytes = self.get_meta(CacheKind::Snapshot, &key, id)?;
        let snap: Snapshot = pack::open_object(&self.key, ObjectKind::Snapshot, &bytes, &key)?;
        cache().insert(*id, snap.clone());
        Ok(snap)
    }

    /// [`Repository::read_snapshot`] for an id a listing just returned, through the catalog:
    /// served from it when it holds the id, else read as usual and added to it.
    fn read_snapshot_cataloged(&self, id: &Id, catalog: Option<&mut Catalog>) -> Result<Snapshot> {
        let Some(catalog) = catalog else { return self.read_snapshot(id) };
        let cache = || self.snapshot_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = cache().get(id) {
            return Ok(s.clone());
        }
        let key = self.snapshot_key(id);
        if let Some(snap) = catalog.get(id).and_then(|p| pack::parse_object::<Snapshot>(p, &key).ok()) {
            cache().insert(*id, snap.clone());
            return Ok(snap);
        }
        let bytes = self.get_meta(CacheKind::Snapshot, &key, id)?;
        let plain = pack::open_object_plain(&self.key, ObjectKind::Snapshot, &bytes, &key)?;
        let snap: Snapshot = pack::parse_object(&plain, &key)?;
        catalog.add(*id, plain);
        cache().insert(*id, snap.clone());
        Ok(snap)
    }

    /// How many snapshots the cache holds (bounded by the latest listing: see
    /// [`Repository::all_snapshots_and_damage`]). For tests and monitoring.
    #[must_use]
    pub fn cached_snapshots(&self) -> usize {
        self.snapshot_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Finds a live snapshot by id prefix (at least 4 hex digits) or `latest` (the newest
    /// readable one).
    ///
    /// # Errors
    /// `Invalid` when none or several match; the damage when the id names a snapshot
    /// object that cannot be read.
    pub fn find_snapshot(&self, name: &str) -> Result<(Id, Snapshot)> {
        let (all, damaged) = self.all_snapshots_and_damage()?;
        let now = self.clock.now();
        let snaps: Vec<_> = all.into_iter().filter(|(_, s)| s.expires > now).collect();
        if name == "latest" {
            return snaps
                .into_iter()
                .next_back()
                .ok_or_else(|| RepoError::Invalid(format!("{} has no snapshots", self.location)));
        }
        if name.len() < 4 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::Invalid(format!(
                "{name:?} is not a snapshot id (give at least 4 hex digits, or latest)"
            )));
        }
        let mut m = snaps.into_iter().filter(|(id, _)| id.to_string().starts_with(&name.to_ascii_lowercase()));
        match (m.next(), m.next()) {
            (Some(s), None) => Ok(s),
            (None, _) => {
                // Asked for by id, a damaged snapshot is an integrity error naming it.
                let lower = name.to_ascii_lowercase();
                match damaged.into_iter().find(|(k, _)| k.rsplit('/').next().is_some_and(|h| h.starts_with(&lower))) {
                    Some((_, e)) => Err(e),
                    None => Err(RepoError::Invalid(format!("no snapshot {name} in {}", self.location))),
                }
            }
            (Some(_), Some(_)) => Err(RepoError::Invalid(format!("snapshot id {name} is ambiguous; give more digits"))),
        }
    }
}

/// A stored object that cannot be read: its key and why.
pub type Damaged = (String, RepoError);

/// Snapshots with their ids, oldest first.
pub type Snapshots = Vec<(Id, Snapshot)>;
