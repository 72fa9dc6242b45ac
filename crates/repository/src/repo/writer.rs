//! Writing a backup's blobs: [`BlobWriter`] deduplicates against the index, packs new blobs,
//! extends (or repacks) reused packs, checkpoints the index, and commits the snapshot last.
//!
//! Invariant guarded here: the snapshot is written only after every object it references
//! is durable and locked at least until the snapshot's lock date.

use super::*;

/// A reused pack locked at least this much longer is settled at the end of the backup.
const DEFER_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// A reused pack of which a snapshot needs less than this share (by bytes) is repacked.
pub const REPACK_BELOW_PERCENT: u64 = 25;
/// Packs written between index checkpoints.
const INDEX_CHECKPOINT_PACKS: usize = 8;

impl Repository {
    /// Starts writing blobs for a snapshot that expires at `expires`.
    ///
    /// # Errors
    /// `Invalid` when `expires` is past the repository's ceiling; store errors.
    pub fn writer(&self, expires: Timestamp) -> Result<BlobWriter<'_>> {
        self.writable()?;
        let now = self.clock.now();
        let ceiling = now + to_signed(self.config.retention.max_retain);
        if expires > ceiling {
            return Err(RepoError::Invalid(format!(
                "a snapshot kept until {expires} would outlive the repository's maximum retention of {} (until {ceiling})",
                humanize(self.config.retention.max_retain)
            )));
        }
        if expires <= now {
            return Err(RepoError::Invalid(format!("snapshot expiry {expires} is not in the future")));
        }
        let until = self.lock_until(expires);
        let target = Target {
            store: self.store.clone(),
            key: self.key.clone(),
            prefix: self.prefix.clone(),
            mode: self.config.retention.mode,
            until,
            pack_size: self.config.pack_size as usize,
            checkpoint_packs: INDEX_CHECKPOINT_PACKS,
        };
        let mut index = self.load_index()?;
        let recovered = self.recover_unindexed(&mut index)?;
        Ok(BlobWriter {
            repo: self,
            index,
            recovered,
            until: self.lock_until(expires),
            target: target.clone(),
            pipeline: Some(Pipeline::start(target)),
            pending: HashSet::new(),
            extended: HashSet::new(),
            deferred: HashMap::new(),
            summary: Summary::default(),
            cache: PackCache::default(),
        })
    }
}

/// Writes blobs into packs, deduplicating against the index and extending the locks of
/// packs it reuses. Call [`BlobWriter::finish`] and then [`BlobWriter::commit_snapshot`].
pub struct BlobWriter<'r> {
    repo: &'r Repository,
    index: Index,
    /// Unindexed packs found at the start (see [`Repository::recover_unindexed`]), stated
    /// in this backup's index.
    recovered: Vec<IndexPack>,
    until: Timestamp,
    target: Target,
    pipeline: Option<Pipeline>,
    pending: HashSet<Id>,
    extended: HashSet<usize>,
    deferred: HashMap<usize, HashSet<Id>>,
    summary: Summary,
    cache: PackCache,
}

impl BlobWriter<'_> {
    /// The lock date of everything this snapshot needs.
    #[must_use]
    pub fn retain_until(&self) -> Timestamp {
        self.until
    }

    /// The repository's chunker parameters.
    #[must_use]
    pub fn repo_chunker(&self) -> ChunkerParams {
        self.repo.config.chunker
    }

    /// Counts so far.
    pub fn summary_mut(&mut self) -> &mut Summary {
        &mut self.summary
    }

    /// The index as loaded (plus what this writer added).
    #[must_use]
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Makes sure the blob with content `data` is stored and locked long enough; returns its id.
    ///
    /// # Errors
    /// Store errors.
    pub fn add(&mut self, kind: BlobKind, data: &[u8]) -> Result<Id> {
        let id = self.repo.key.blob_id(data);
        if self.pending.contains(&id) || self.ensure_locked(&id)? {
            return Ok(id);
        }
        self.pipeline().submit(kind, id, data.to_vec())?;
        self.pending.insert(id);
        self.summary.blobs_added += 1;
        self.summary.bytes_added += data.len() as u64;
        Ok(id)
    }

    /// Reads a tree stored before this backup (the parent snapshot's).
    ///
    /// # Errors
    /// `Corrupt`, store errors.
    pub fn read_tree(&mut self, id: &Id) -> Result<Tree> {
        let bytes = self.cache.read(self.repo, &self.index, id)?;
        Tree::from_bytes(&bytes, id)
    }

    /// Reuses an existing blob (an unchanged file's chunk, an unchanged tree): `true` if it
    /// is stored and now locked long enough, `false` if the caller must add it again.
    ///
    /// # Errors
    /// Store errors.
    pub fn reuse(&mut self, id: &Id) -> Result<bool> {
        Ok(self.pending.contains(id) || self.ensure_locked(id)?)
    }

    /// Whether `id` is already stored in a pack locked until this snapshot's lock date,
    /// extending the pack's lock if needed. `false` means the blob must be uploaded (it is
    /// new, or its pack has been pruned).
    fn ensure_locked(&mut self, id: &Id) -> Result<bool> {
        let Some(r) = self.index.get(id) else { return Ok(false) };
        let pack = self.index.pack(r.pack);
        if pack.retain_until >= self.until || self.extended.contains(&r.pack) {
            return Ok(true);
        }
        // Still locked for a good while: nothing can remove it before this backup ends, so
        // the choice between extending the whole pack and copying the blobs this snapshot
        // needs waits until `finish`, when it is known how much of the pack that is.
        if pack.retain_until > self.repo.clock.now() + DEFER_WINDOW {
            self.deferred.entry(r.pack).or_default().insert(*id);
            return Ok(true);
        }
        self.extend_pack(r.pack)
    }

    /// Extends a pack's lock to this snapshot's lock date. `false` if it is gone.
    fn extend_pack(&mut self, pos: usize) -> Result<bool> {
        let key = self.repo.pack_key(&self.index.pack(pos).id);
        let Some((current, extended)) = self.repo.extend_versions(&key, self.until)? else { return Ok(false) };
        self.summary.locks_extended += extended;
        self.index.extend(pos, self.until.max(current));
        self.extended.insert(pos);
        Ok(true)
    }

    /// Settles the packs whose decision was deferred: a pack of which this snapshot needs
    /// less than [`REPACK_BELOW_PERCENT`] is not kept alive whole — the blobs it needs are
    /// copied into new packs (locked for this snapshot) and the old pack is left to expire,
    /// so prune can remove its dead data. The rest are extended.
    fn settle_deferred(&mut self) -> Result<()> {
        let deferred = std::mem::take(&mut self.deferred);
        for (pos, ids) in deferred {
            if self.extended.contains(&pos) {
                continue;
            }
            let p = self.index.pack(pos).clone();
            let needed: u64 = p.blobs.iter().filter(|e| ids.contains(&e.id)).map(|e| u64::from(e.length)).sum();
            let extend = needed * 100 >= p.size * REPACK_BELOW_PERCENT || !self.repack(&p, &ids)?;
            if extend && !self.extend_pack(pos)? {
                return Err(RepoError::corrupt(
                    self.repo.pack_key(&p.id),
                    "pack vanished while still locked; the repository was tampered with",
                ));
            }
        }
        Ok(())
    }

    /// Copies `ids` out of pack `p` into new packs. `false` if the pack cannot be read
    /// (then the caller extends it instead).
    fn repack(&mut self, p: &crate::index::PackInfo, ids: &HashSet<Id>) -> Result<bool> {
        let key = self.repo.pack_key(&p.id);
        let Ok(bytes) = self.repo.get_hashed(&key, &p.id) else { return Ok(false) };
        for e in p.blobs.iter().filter(|e| ids.contains(&e.id)) {
            if self.pending.contains(&e.id) {
                continue;
            }
            let sealed = bytes.get(e.offset as usize..(e.offset + e.length) as usize).unwrap_or_default();
            let plain = pack::open_blob(&self.repo.key, e, sealed, &key)?;
            self.pipeline().submit(e.kind, e.id, plain)?;
            self.pending.insert(e.id);
            self.summary.blobs_repacked += 1;
        }
        Ok(true)
    }

    fn pipeline(&self) -> &Pipeline {
        self.pipeline.as_ref().expect("the writer is not finished")
    }

    /// Waits until every blob is stored, writes the index object stating new and extended
    /// packs, and extends the locks of the config and keys — everything the snapshot
    /// needs, before the snapshot.
    ///
    /// # Errors
    /// Store errors.
    pub fn finish(&mut self) -> Result<()> {
        self.settle_deferred()?;
        let Some(pipeline) = self.pipeline.take() else { return Ok(()) };
        let stored = pipeline.finish()?;
        for p in &stored.packs {
            self.index.add_pack(p);
        }
        self.summary.bytes_stored += stored.bytes;
        let mut packs = stored.unindexed;
        self.summary.packs_recovered += self.recovered.len() as u64;
        packs.append(&mut self.recovered);
        for &pos in &self.extended {
            let p = self.index.pack(pos);
            packs.push(IndexPack { id: p.id, size: p.size, retain_until: p.retain_until, blobs: p.blobs.clone() });
        }
        self.extended.clear();
        self.target.write_index(packs)?;
        self.extend_meta()
    }

    fn extend_meta(&mut self) -> Result<()> {
        self.repo.extend_meta_to(self.until)
    }

    /// Writes the snapshot — last, after [`BlobWriter::finish`]. Returns its id.
    ///
    /// # Errors
    /// Store errors.
    pub fn commit_snapshot(mut self, mut snap: Snapshot) -> Result<Id> {
        self.finish()?;
        snap.retain_until = self.until;
        snap.summary = self.summary.clone();
        let bytes = pack::seal_object(&self.repo.key, ObjectKind::Snapshot, &snap);
        let id = Id::hash(&bytes);
        self.repo.put(&self.repo.snapshot_key(&id), &bytes, self.until)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::reader::tests::blob;
    use super::*;
    use coffer_store::{LocalVault, Role, VaultOptions};

    /// A backup writes tree blobs and data blobs into separate packs.
    #[test]
    fn trees_and_data_never_share_a_pack() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let vault =
            LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() })
                .unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
        let opts =
            InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..InitOptions::default() };
        let mut repo = Repository::init(store, "t", "", b"pw", &opts, clock.clone()).unwrap();
        repo.config.pack_size = 64 << 10;
        {
            let mut w = repo.writer(clock.now() + SignedDuration::from_hours(24)).unwrap();
            // Interleaved as a backup submits them: a directory's files, then its tree.
            for i in 0..12 {
                w.add(BlobKind::Data, &blob(i)).unwrap();
                w.add(BlobKind::Tree, format!("{{\"tree\":{i}}}").as_bytes()).unwrap();
            }
            w.finish().unwrap();
        }
        let index = repo.load_index().unwrap();
        let (mut tree_packs, mut data_packs) = (0, 0);
        for p in index.packs() {
            let kinds: HashSet<BlobKind> = p.blobs.iter().map(|b| b.kind).collect();
            assert_eq!(kinds.len(), 1, "pack {} mixes {kinds:?}", p.id);
            if kinds.contains(&BlobKind::Tree) { tree_packs += 1 } else { data_packs += 1 }
        }
        assert_eq!(tree_packs, 1, "the small trees share one pack");
        assert!(data_packs >= 6, "{data_packs} data packs");
    }
}
