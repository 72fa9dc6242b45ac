//! Loading the index objects into one [`Index`], and recovering packs that no index states
//! (left by an interrupted backup) so their blobs are reused.
//!
//! Invariant guarded here: a damaged index object is recorded, not fatal; a pack is only
//! added to the index from its own self-describing, authenticated header.

use super::*;

impl Repository {
    /// Loads every index object into one [`Index`].
    ///
    /// # Errors
    /// Store errors, `Corrupt`.
    pub fn load_index(&self) -> Result<Index> {
        let mut index = Index::default();
        let mut listed = HashSet::new();
        let mut catalog = self.catalog_load(CatalogKind::Index);
        let started = self.clock.now();
        self.for_each_name(&format!("{}index/", self.prefix), |k| {
            let id: Id =
                k.rsplit('/').next().unwrap_or("").parse().map_err(|e: String| RepoError::corrupt(k.clone(), e))?;
            listed.insert(id);
            // A listed id the catalog holds: its authenticated plaintext, no object opened.
            if let Some(file) =
                catalog.as_ref().and_then(|(c, _)| c.get(&id)).and_then(|p| pack::parse_object::<IndexFile>(p, &k).ok())
            {
                for p in &file.packs {
                    index.add_pack(p);
                }
                return Ok(());
            }
            let bytes = match self.get_meta(CacheKind::Index, &k, &id) {
                Ok(b) => b,
                // Pruned between listing and reading: its lock had ended, so what it stated
                // may be gone too, which writers and readers already allow for.
                Err(e) if is_gone(&e) => return Ok(()),
                // A damaged index object must not stop every backup until its lock ends:
                // it is recorded, backups store its data again, reads of it name it.
                Err(e) if is_damage(&e) => {
                    index.add_damaged(k, coffer_store::display_chain(&e));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let opened = pack::open_object_plain(&self.key, ObjectKind::Index, &bytes, &k)
                .and_then(|plain| pack::parse_object::<IndexFile>(&plain, &k).map(|f| (f, plain)));
            match opened {
                Ok((file, plain)) => {
                    for p in &file.packs {
                        index.add_pack(p);
                    }
                    if let Some((c, _)) = catalog.as_mut() {
                        c.add(id, plain);
                    }
                }
                Err(e) if is_damage(&e) => index.add_damaged(k, coffer_store::display_chain(&e)),
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        self.cache_retain(CacheKind::Index, |id| listed.contains(id));
        self.catalog_keep(catalog, started, |id| listed.contains(id));
        Ok(index)
    }

    /// Finds packs stored but stated in no index object — left by a backup interrupted
    /// between two index checkpoints, or being written by one running now — reads their
    /// self-describing headers and adds them to `index`, so their blobs are reused instead of
    /// uploaded again. Returns them, to be stated in this backup's index.
    ///
    /// Costs one key listing of `data/` (no lock state); packs are read only when unindexed.
    /// A pack that cannot be read or decoded is left alone (`verify` reports it). A writer
    /// with a local cache calls it only when this host may have left such packs (see
    /// [`Repository::writer`] and `docs/cache.md`).
    ///
    /// # Errors
    /// Store errors listing `data/`.
    pub fn recover_unindexed(&self, index: &mut Index) -> Result<Vec<IndexPack>> {
        let mut keys = Vec::new();
        self.for_each_name(&format!("{}data/", self.prefix), |k| {
            keys.push(k);
            Ok(())
        })?;
        let mut recovered = Vec::new();
        for k in keys {
            let Some(id) = k.rsplit('/').next().and_then(|h| h.parse::<Id>().ok()) else { continue };
            if index.pack_by_id(&id).is_some() {
                continue;
            }
            let Ok(data) = self.get_hashed(&k, &id) else { continue };
            let Ok(blobs) = pack::read_pack_header(&self.key, &data, &k) else { continue };
            // The lock it carries, as the store states it: what reuse will extend if short.
            let Ok(Some(retain_until)) = self.locked_until(&k) else { continue };
            let p = IndexPack { id, size: data.len() as u64, retain_until, blobs };
            index.add_pack(&p);
            recovered.push(p);
        }
        Ok(recovered)
    }
}
