//! Writing a backup's blobs: [`BlobWriter`] deduplicates against the index, packs new blobs,
//! extends (or repacks) reused packs, checkpoints the index, and commits the snapshot last.
//!
//! Invariant guarded here: the snapshot is written only after every object it references
//! is durable and locked at least until the snapshot's lock date. And the writer, not the
//! source, places the snapshot in the hash chain ([`BlobWriter::commit`]): it names the
//! newest snapshot of the repository as listed by this writer, so history cannot silently
//! lose a link because a source forgot to write it.

use super::*;
use crate::snapshot::{ChainLink, NewSnapshot};

/// A reused pack locked at least this much longer is settled at the end of the backup.
const DEFER_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// A reused pack of which a snapshot needs less than this share (by bytes) is repacked.
pub const REPACK_BELOW_PERCENT: u64 = 25;
/// Packs written between index checkpoints.
const INDEX_CHECKPOINT_PACKS: usize = 8;

impl Repository {
    /// Starts writing blobs for a snapshot that expires at `expires`.
    ///
    /// A writer needs the history: every index object (what it may deduplicate against)
    /// and the snapshots (the parent, the hash chain's link). It lists `index/` and
    /// `snapshots/` — unless this host listed both less than
    /// [`Repository::with_relist_after`] ago: then it takes the catalog
    /// ([`crate::catalog`]: that listing plus every object this host wrote since) instead,
    /// and a backup's cost no longer grows with the length of the history. Only when that
    /// cannot lose anything:
    ///
    /// - **Compliance locks.** Every pack a snapshot references stays until that snapshot
    ///   expires. A pack an index object states is reused without a request only if its
    ///   stated lock covers the new snapshot; else its lock is extended first, and one that
    ///   is gone (pruned) is simply stored again ([`BlobWriter::add`]). A parent is a live
    ///   snapshot, whose trees are locked. So an index or snapshot object removed since
    ///   the listing costs nothing but a re-upload. (Governance locks can be bypassed:
    ///   such repositories always list.)
    /// - **This host's own objects are in it.** Each writer adds the index objects and the
    ///   snapshot it wrote before it removes its "writing" marker; a marker left by a crash
    ///   makes the next writer list, and a catalog that could not record them is removed.
    /// - **Other hosts' backups since the listing are not seen** until this host lists
    ///   again: their data is stored again rather than deduplicated, and this snapshot
    ///   links to the newest one this host knows (a fork in the chain, which `verify`
    ///   accepts; a second root cannot happen, as the catalog holds a listed snapshot).
    /// - **Never a check.** `verify`, `snapshots`, `restore` and `--as-of` list the store
    ///   as before: a forged catalog can mislead only the backups of the host that holds it,
    ///   which holds the repository key anyway.
    ///
    /// # Errors
    /// `Invalid` when `expires` is past the repository's ceiling; store errors.
    pub fn writer(&self, expires: Timestamp) -> Result<BlobWriter<'_>> {
        self.writer_listing(expires, false)
    }

    /// [`Repository::writer`] for a source that asks for [`BlobWriter::history`] at once (a
    /// files backup, for its parent): the two listings a backup needs, `index/` and
    /// `snapshots/`, are independent, so they run at the same time and the server's time
    /// for one overlaps the other's (and the client's decoding). The history is then as
    /// listed now, which is when that source would have listed it anyway.
    ///
    /// # Errors
    /// As [`Repository::writer`], and store errors listing or reading snapshots.
    pub fn writer_with_history(&self, expires: Timestamp) -> Result<BlobWriter<'_>> {
        self.writer_listing(expires, true)
    }

    fn writer_listing(&self, expires: Timestamp, with_history: bool) -> Result<BlobWriter<'_>> {
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
            cache: self.meta_cache.clone(),
            dict: Arc::default(),
            written: Arc::default(),
        };
        // The repository's dictionary, or a trainer that makes one from this backup's small
        // blobs (crate::dict).
        // Only where `init` chose it (Config::dictionary): a dictionary found in `dicts/` of
        // a repository that did not is someone else's object and is not used for writing.
        let trainer = if !self.config.dictionary {
            None
        } else {
            match self.writer_dictionary() {
                Some(d) => {
                    let _ = target.dict.set(d);
                    None
                }
                None => Some(Box::default()),
            }
        };
        let recent = self.recent_listing();
        // The two decodes are independent: side by side on a long history.
        let from_catalog = recent.and_then(|(i, s)| {
            let (index, history) = std::thread::scope(|sc| {
                let history = sc.spawn(|| history_from_catalog(&s));
                let index = index_from_catalog(&i);
                (index, history.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            });
            Some((index?, history?))
        });
        let (index, history) = if let Some((index, history)) = from_catalog {
            tracing::debug!(packs = index.packs().len(), snapshots = history.len(), "history from the catalog");
            (Ok(index), Some(Ok(history)))
        } else if with_history {
            std::thread::scope(|s| {
                let snapshots = s.spawn(|| self.all_snapshots());
                let index = self.load_index();
                let history = snapshots.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                (index, Some(history))
            })
        } else {
            (self.load_index(), None)
        };
        let mut index = index?;
        let history = history.transpose()?;
        // Looking for packs an interrupted backup left unindexed costs a listing of all of
        // `data/`. With a cache it is paid only when this host cannot rule such a backup out:
        // one of its backups started and did not commit (its marker is still there), the
        // start cannot be recorded, or the host had no cache of this repository. Packs of
        // another host's interrupted backup are then left to expire (docs/cache.md).
        let mut markers = Vec::new();
        let recover = match &self.meta_cache {
            None => true,
            Some(c) => {
                markers = c.unfinished_writes();
                let seen = !markers.is_empty();
                match c.begin_write() {
                    Some(own) => markers.push(own),
                    None => markers.clear(),
                }
                seen || markers.is_empty() || c.fresh()
            }
        };
        let recovered = if recover { self.recover_unindexed(&mut index)? } else { Vec::new() };
        Ok(BlobWriter {
            markers,
            repo: self,
            index,
            recovered,
            expires,
            history,
            until: self.lock_until(expires),
            target: target.clone(),
            pipeline: Some(Pipeline::start(target)),
            pending: HashSet::new(),
            extended: HashSet::new(),
            deferred: HashMap::new(),
            summary: Summary::default(),
            cache: PackCache::default(),
            trainer,
        })
    }
}

/// The index a catalog's entries state, in id order (the order a listing returns them);
/// `None` if one does not decode (then the writer lists).
fn index_from_catalog(cat: &Catalog) -> Option<Index> {
    let mut entries: Vec<_> = cat.entries().collect();
    entries.sort_unstable_by_key(|(id, _)| **id);
    let mut index = Index::default();
    for (id, plain) in entries {
        let file: IndexFile = pack::parse_object(plain, &format!("catalog entry {id}")).ok()?;
        for p in &file.packs {
            index.add_pack(p);
        }
    }
    Some(index)
}

impl Repository {
    /// Every snapshot, oldest first, as a writer of this host would take it from the
    /// catalog instead of listing (see [`Repository::writer`]), or `None` when it would list.
    /// For a source that needs the history before it starts its writer (a files backup
    /// with calendar retention rules, whose expiry depends on its own series).
    #[must_use]
    pub fn recent_history(&self) -> Option<Vec<(Id, Snapshot)>> {
        history_from_catalog(&self.recent_listing()?.1)
    }
}

/// The snapshots a catalog's entries hold, oldest first (as [`Repository::all_snapshots`]);
/// `None` if one does not decode (then the writer lists).
fn history_from_catalog(cat: &Catalog) -> Option<Vec<(Id, Snapshot)>> {
    let mut out = Vec::new();
    for (id, plain) in cat.entries() {
        out.push((*id, pack::parse_object::<Snapshot>(plain, &format!("catalog entry {id}")).ok()?));
    }
    out.sort_by_key(|(id, s)| (s.time, *id));
    Some(out)
}

/// Writes blobs into packs, deduplicating against the index and extending the locks of
/// packs it reuses, and commits the snapshot that needs them ([`BlobWriter::commit`]).
pub struct BlobWriter<'r> {
    repo: &'r Repository,
    index: Index,
    /// Unindexed packs found at the start (see [`Repository::recover_unindexed`]), stated
    /// in this backup's index.
    recovered: Vec<IndexPack>,
    /// When the snapshot expires.
    expires: Timestamp,
    /// Every snapshot the repository holds, oldest first, listed once (at the first
    /// [`BlobWriter::history`], or at commit): the chain link is its newest.
    history: Option<Vec<(Id, Snapshot)>>,
    until: Timestamp,
    target: Target,
    pipeline: Option<Pipeline>,
    pending: HashSet<Id>,
    extended: HashSet<usize>,
    deferred: HashMap<usize, HashSet<Id>>,
    summary: Summary,
    cache: PackCache,
    /// Markers in the local cache to remove at commit: this backup's own, and those of
    /// interrupted backups whose packs it recovered (see [`Repository::writer`]).
    markers: Vec<std::path::PathBuf>,
    /// Samples small data blobs until the repository has a dictionary (`None`: it has one,
    /// or this writer trained it).
    trainer: Option<Box<crate::dict::Trainer>>,
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
        if kind == BlobKind::Data {
            self.sample(data)?;
        }
        self.pipeline().submit(kind, id, data.to_vec())?;
        self.pending.insert(id);
        self.summary.blobs_added += 1;
        self.summary.bytes_added += data.len() as u64;
        Ok(id)
    }

    /// Offers a data blob to the dictionary trainer; once it has enough samples, trains the
    /// dictionary, stores it (locked like this backup's packs) and hands it to the sealers:
    /// every later small blob is compressed with it. Blobs sealed before stay as they are.
    fn sample(&mut self, data: &[u8]) -> Result<()> {
        let Some(t) = self.trainer.as_mut() else { return Ok(()) };
        if t.offer(data) {
            self.train()?;
        }
        Ok(())
    }

    fn train(&mut self) -> Result<()> {
        let Some(mut t) = self.trainer.take() else { return Ok(()) };
        if let Some(bytes) = t.train() {
            let d = self.repo.store_dictionary(&bytes, self.until)?;
            let _ = self.target.dict.set(d);
        }
        Ok(())
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
            let needed: u64 = p.blobs.iter().filter(|e| ids.contains(&e.id)).map(|e| u64::from(e.stored_len())).sum();
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
            let plain = pack::open_blob_with(&self.repo.key, self.repo, e, sealed, &key)?;
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
        // A backup with fewer small blobs than the trainer waits for, but enough to learn
        // from, trains at its end: the next backup starts with the dictionary.
        if self.trainer.as_ref().is_some_and(|t| t.enough()) {
            self.train()?;
        }
        let Some(pipeline) = self.pipeline.take() else { return Ok(()) };
        let stored = pipeline.finish()?;
        // Every pending blob is in `stored` now: the set (one id per new blob) goes before
        // the index grows by the same blobs, not beside it at the backup's peak.
        self.pending = HashSet::new();
        for p in stored.packs {
            self.index.add_pack_owned(p);
        }
        self.summary.bytes_stored += stored.bytes;
        if let Some(c) = &self.repo.meta_cache {
            let mac = self.repo.key.keyed_hasher(crate::cache::LOCK_MAC_PURPOSE);
            c.add_lock_observations(&mac, stored.locks, self.repo.clock.now().as_second());
        }
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

    /// When the snapshot this writer commits expires.
    #[must_use]
    pub fn expires(&self) -> Timestamp {
        self.expires
    }

    /// Every snapshot of the repository (live, and expired but still stored), oldest first,
    /// as listed the first time this is called: a source chooses its parent from it (see
    /// [`BlobWriter::parent_for`]), and the snapshot this writer commits links to its newest.
    /// Listing once serves both (on S3 a listing is a request per 1000 snapshots).
    ///
    /// # Errors
    /// Store errors listing or reading snapshots.
    pub fn history(&mut self) -> Result<&[(Id, Snapshot)]> {
        if self.history.is_none() {
            self.history = Some(self.repo.all_snapshots()?);
        }
        Ok(self.history.as_deref().unwrap_or_default())
    }

    /// The snapshot a new one of `kind` for `host` and `paths` compares against: the newest
    /// live one of the same kind, host and paths in [`BlobWriter::history`].
    ///
    /// # Errors
    /// As [`BlobWriter::history`].
    pub fn parent_for(&mut self, kind: &str, host: &str, paths: &[String]) -> Result<Option<(Id, Snapshot)>> {
        let now = self.repo.clock.now();
        Ok(self
            .history()?
            .iter()
            .rev()
            .filter(|(_, s)| s.expires > now)
            .find(|(_, s)| s.kind == kind && s.host == host && s.paths == paths)
            .cloned())
    }

    /// Commits the snapshot `new` describes — last: waits until every blob is stored,
    /// writes the index and extends the locks it needs ([`BlobWriter::finish`]), then
    /// writes the snapshot, linked to the newest snapshot of [`BlobWriter::history`] (listed
    /// now if it was not yet), with this writer's expiry, lock date and counts. Returns its
    /// id.
    ///
    /// # Errors
    /// Store errors.
    pub fn commit(self, new: NewSnapshot) -> Result<Id> {
        let NewSnapshot { kind, time, host, paths, tags, tree, parent, pg } = new;
        let snap = Snapshot {
            kind,
            time,
            expires: self.expires,
            retain_until: self.until,
            host,
            paths,
            tags,
            tree,
            parent,
            previous: None,
            summary: Summary::default(),
            program: format!("coffer {}", env!("CARGO_PKG_VERSION")),
            pg,
        };
        self.write_snapshot(snap)
    }

    /// Adds the snapshot just written and every index object this writer wrote to the
    /// catalogs ([`Repository::catalog_add_own`]), so the next writer of this host that
    /// takes them for a listing knows them. The index objects' plaintexts come back from
    /// the metadata cache (checked against their names), not from memory held through the
    /// backup; one that is not there removes the index catalog's base.
    fn record_own(&self, snapshot: Id, plain: Vec<u8>) {
        let Some(cache) = &self.repo.meta_cache else { return };
        let mut objects = vec![(CatalogKind::Snapshot, snapshot, plain)];
        let ids = std::mem::take(&mut *self.target.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for id in ids {
            let key = format!("{}index/{id}", self.repo.prefix);
            match cache
                .get(CacheKind::Index, &id)
                .and_then(|b| pack::open_object_plain(&self.repo.key, ObjectKind::Index, &b, &key).ok())
            {
                Some(p) => objects.push((CatalogKind::Index, id, p)),
                None => Catalog::forget(cache, CatalogKind::Index),
            }
        }
        self.repo.catalog_add_own(objects);
    }

    /// Finishes, fills in what the repository owns (the chain link, the lock date, the
    /// counts) and writes the snapshot.
    fn write_snapshot(mut self, mut snap: Snapshot) -> Result<Id> {
        self.finish()?;
        self.history()?;
        snap.previous =
            self.history.as_deref().and_then(<[_]>::last).map(|(id, s)| ChainLink { id: *id, expires: s.expires });
        snap.retain_until = self.until;
        snap.summary = self.summary.clone();
        let (bytes, plain) = pack::seal_object_with_plain(&self.repo.key, ObjectKind::Snapshot, &snap);
        let id = Id::hash(&bytes);
        self.repo.put(&self.repo.snapshot_key(&id), &bytes, self.until)?;
        self.repo.cache_put(CacheKind::Snapshot, &id, &bytes);
        // Before the markers go: a crash in between leaves a marker, and the next writer
        // lists instead of taking a catalog that lacks this backup's objects.
        self.record_own(id, plain);
        if let Some(c) = &self.repo.meta_cache {
            c.end_writes(&self.markers);
        }
        Ok(id)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::reader::tests::blob;
    use super::*;
    use coffer_store::{LocalVault, Role, VaultOptions};

    /// A repository in a fresh local vault, as the writer, on a manual clock.
    pub(in crate::repo) fn fixture() -> (tempfile::TempDir, Clock, Repository) {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let vault =
            LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() })
                .unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
        let opts =
            InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..InitOptions::default() };
        let repo = Repository::init(store, "t", "", b"pw", &opts, clock.clone()).unwrap();
        (tmp, clock, repo)
    }

    /// A snapshot of `tree` tagged `tag`, taken now by host `h` of path `/p`.
    pub(in crate::repo) fn test_snapshot(repo: &Repository, tree: Id, tag: &str) -> NewSnapshot {
        NewSnapshot {
            kind: "test".into(),
            time: repo.clock.now(),
            host: "h".into(),
            paths: vec!["/p".into()],
            tags: vec![tag.into()],
            tree,
            parent: None,
            pg: None,
        }
    }

    /// Commits `tag` through the builder, the only way a source has.
    fn commit(repo: &Repository, expires: Timestamp, tag: &str) -> Id {
        let mut w = repo.writer(expires).unwrap();
        let tree = w.add(BlobKind::Tree, &Tree { nodes: vec![] }.to_bytes()).unwrap();
        w.commit(test_snapshot(repo, tree, tag)).unwrap()
    }

    /// The builder links each snapshot to the newest one before it, and no call of the
    /// library writes a second root: a `NewSnapshot` has no link for a source to set, and a
    /// writer listing history before another commits links to what it listed.
    #[test]
    fn a_committed_snapshot_links_to_its_predecessor_and_no_call_writes_a_second_root() {
        let (_tmp, clock, repo) = fixture();
        let expires = clock.now() + SignedDuration::from_hours(24);

        let first = commit(&repo, expires, "first");
        let s1 = repo.read_snapshot(&first).unwrap();
        assert_eq!(s1.previous, None, "the first snapshot is the root");
        assert_eq!((s1.expires, s1.retain_until), (expires, repo.lock_until(expires)));
        assert_eq!(s1.program, format!("coffer {}", env!("CARGO_PKG_VERSION")));

        clock.advance(std::time::Duration::from_secs(60));
        let second = commit(&repo, expires, "second");
        let s2 = repo.read_snapshot(&second).unwrap();
        assert_eq!(s2.previous, Some(ChainLink { id: first, expires }), "linked to its predecessor");

        // A source's parent is the newest live snapshot of its kind, host and paths.
        let mut w = repo.writer(expires).unwrap();
        let paths = vec!["/p".to_owned()];
        assert_eq!(w.parent_for("test", "h", &paths).unwrap().map(|(id, _)| id), Some(second));
        assert_eq!(w.parent_for("test", "other", &paths).unwrap(), None);
        drop(w);

        // Two writers at once: history is listed when first asked for (here, at the start),
        // and each links to the newest it saw; neither is a root.
        clock.advance(std::time::Duration::from_secs(60));
        let mut a = repo.writer(expires).unwrap();
        a.history().unwrap();
        let fourth = commit(&repo, expires, "fourth");
        let tree = a.add(BlobKind::Tree, &Tree { nodes: vec![] }.to_bytes()).unwrap();
        let fifth = a
            .commit(NewSnapshot {
                kind: "test".into(),
                time: clock.now(),
                host: "h".into(),
                paths: vec![],
                tags: vec![],
                tree,
                parent: None,
                pg: None,
            })
            .unwrap();
        assert_eq!(repo.read_snapshot(&fourth).unwrap().previous.map(|l| l.id), Some(second));
        assert_eq!(repo.read_snapshot(&fifth).unwrap().previous.map(|l| l.id), Some(second));
        let roots = repo.all_snapshots().unwrap().into_iter().filter(|(_, s)| s.previous.is_none()).count();
        assert_eq!(roots, 1, "one root");
    }

    /// A backup writes tree blobs and data blobs into separate packs.
    #[test]
    fn trees_and_data_never_share_a_pack() {
        let (_tmp, clock, mut repo) = fixture();
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

    /// A rogue writer's index object that inflates past the index bound (300 MiB of zeros
    /// in a few kilobytes) is recorded as damaged, read no further, and backups go on.
    #[test]
    fn an_index_bomb_is_recorded_and_backups_go_on() {
        let (_tmp, clock, repo) = fixture();
        let expires = clock.now() + SignedDuration::from_hours(24);
        commit(&repo, expires, "before");
        let frame = pack::zeros_frame(300 << 20, true);
        assert!(frame.len() < 64 << 10, "{}", frame.len());
        let bomb = pack::seal_compressed(repo.key(), ObjectKind::Index, &frame);
        let name = format!("index/{}", Id::hash(&bomb));
        repo.store().put(&name, &bomb, &coffer_store::PutOptions::default()).unwrap();
        let index = repo.load_index().unwrap();
        let damaged = index.damaged();
        assert_eq!(damaged.len(), 1, "{damaged:?}");
        assert_eq!(damaged[0].0, name);
        assert!(damaged[0].1.contains("larger than 268435456"), "{}", damaged[0].1);
        // The blobs stated before are still found, and a backup commits.
        assert!(!index.packs().is_empty());
        commit(&repo, expires, "after");
        assert_eq!(repo.all_snapshots().unwrap().len(), 2);
    }
}
