//! Reading blobs: [`BlobReader`] (a few whole packs cached), [`SharedReader`] (shared by
//! restore workers, with bounded read-ahead or ranged reads), and the pack cache.
//!
//! Invariants guarded here: every blob is authenticated before it is returned; memory stays
//! bounded (cache capacity plus the read-ahead budget); one pack is fetched by one thread at
//! a time.

use super::*;

impl Repository {
    /// A reader of blobs with a small cache of whole packs.
    #[must_use]
    pub fn reader<'a>(&'a self, index: &'a Index) -> BlobReader<'a> {
        BlobReader { repo: self, index, cache: PackCache::default() }
    }
}

/// Reads blobs, keeping the last few packs in memory (the store reads whole objects).
pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    cache: PackCache,
}

impl BlobReader<'_> {
    /// Reads and verifies one blob.
    ///
    /// # Errors
    /// `Corrupt` naming the blob and pack; store errors.
    pub fn read(&mut self, id: &Id) -> Result<Vec<u8>> {
        self.cache.read(self.repo, self.index, id)
    }

    /// Reads and parses a tree blob.
    ///
    /// # Errors
    /// As [`BlobReader::read`].
    pub fn tree(&mut self, id: &Id) -> Result<Tree> {
        Tree::from_bytes(&self.read(id)?, id)
    }
}

/// A blob reader many threads can share (restore): packs are cached whole and shared, or,
/// made with [`SharedReader::ranged`], opened and read a blob's range at a time.
///
/// Ranged reads are for a local store: a tree restore held three 16 MiB packs whole (its
/// peak memory was mostly this cache) to read blobs that are on average a few KiB, and
/// copied every pack once more into memory on the way. A range is not checked against the
/// pack's checksum, but every blob is sealed (AEAD, and its plaintext hashed against its
/// id), so what authenticates is exactly what was stored; a range that does not is read
/// again from the whole pack, verified, so damage is found and named as before.
///
/// With [`SharedReader::with_read_ahead`], background threads fetch the packs a plan says
/// will be needed next, several at once, so the store's latency per request (S3) overlaps
/// with the workers' decrypting and writing instead of adding up.
///
/// A pack whose planned reads are all done leaves the cache at once instead of waiting to
/// be the least recently used: two restore workers move through neighbouring packs, and
/// the slot a finished pack held would otherwise sit on 16 MiB nobody reads again.
///
/// Invariants: memory is bounded — at most `capacity` recently used packs, plus packs fetched
/// ahead and not yet asked for (at most the read-ahead budget in bytes, or a single pack
/// when one is larger than the budget), plus the packs callers still hold; and one pack is
/// fetched by one thread at a time (a thread asking for a pack another is fetching waits for
/// it rather than fetching it again).
pub struct SharedReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    state: std::sync::Mutex<ReaderState>,
    /// Signalled whenever a fetch ends, a pack fetched ahead is taken, or read-ahead stops.
    changed: std::sync::Condvar,
    capacity: usize,
    /// Blobs are read by range from opened packs ([`SharedReader::ranged`]).
    ranged: bool,
}

/// Packs fetched concurrently ahead of the readers.
pub const READ_AHEAD_THREADS: usize = 4;

impl ReaderState {
    /// Notes a read from pack `id`: moves the plan's progress past it and counts one of its
    /// planned reads done. `true` if it was the last (the pack need not stay cached).
    fn reading(&mut self, id: &Id) -> bool {
        if let Some(&pos) = self.plan_pos.get(id) {
            if self.progress <= pos {
                self.progress = pos + 1;
            }
        }
        match self.unread.get_mut(id) {
            Some(n) if *n <= 1 => {
                self.unread.remove(id);
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }
}

#[derive(Default)]
struct ReaderState {
    /// Packs asked for, oldest first.
    used: VecDeque<(Id, Arc<Vec<u8>>)>,
    /// Packs opened for ranged reads, oldest first.
    opened: VecDeque<(Id, Arc<dyn RangeRead>)>,
    /// Packs fetched ahead and not yet asked for.
    ahead: HashMap<Id, Arc<Vec<u8>>>,
    /// Bytes of `ahead` plus those being fetched ahead (reserved before the fetch).
    ahead_bytes: u64,
    /// Packs being fetched, by anyone.
    loading: HashSet<Id>,
    /// The packs the plan needs, each once, in the order of first need, with their sizes.
    plan: Vec<(Id, u64)>,
    /// Position of each pack in `plan`.
    plan_pos: HashMap<Id, usize>,
    /// The next plan entry read-ahead considers.
    cursor: usize,
    /// Plan entries before this one have been asked for (or skipped past) by the readers:
    /// fetching them ahead would be too late.
    progress: usize,
    /// Per pack, the planned blob reads not done yet (a blob read twice counts twice).
    /// Reads of packs absent here (not planned, or planned reads all done) are unaffected.
    unread: HashMap<Id, usize>,
    budget: u64,
    stop: bool,
}

impl<'a> SharedReader<'a> {
    /// A reader keeping up to `capacity` packs in memory.
    #[must_use]
    pub fn new(repo: &'a Repository, index: &'a Index, capacity: usize) -> Self {
        Self {
            repo,
            index,
            state: std::sync::Mutex::new(ReaderState::default()),
            changed: std::sync::Condvar::new(),
            capacity: capacity.max(1),
            ranged: false,
        }
    }

    /// A reader that reads each blob's range out of packs it keeps open (up to `capacity`
    /// of them) instead of caching packs whole: for a local store, where a read is cheap
    /// and a whole pack is memory.
    #[must_use]
    pub fn ranged(repo: &'a Repository, index: &'a Index, capacity: usize) -> Self {
        Self { ranged: true, ..Self::new(repo, index, capacity) }
    }

    /// Runs `f` while [`READ_AHEAD_THREADS`] threads fetch the packs holding `blobs` (the
    /// blobs `f` will read, in about the order it reads them), keeping at most `budget`
    /// bytes fetched ahead of the readers. A failed fetch ahead is dropped: the reader that
    /// needs the pack fetches it and reports the error. Read-ahead stops when `f` returns
    /// (or panics).
    ///
    /// The plan may also grow while `f` runs ([`SharedReader::plan_more`]): a restore that
    /// streams files from its walk to its workers names their blobs as it finds them. With
    /// a `budget` of 0 nothing is read ahead (a local store, where a worker's own read is
    /// about as fast and memory matters more). Packs cached before the plan are dropped.
    pub fn with_read_ahead<R>(&self, blobs: impl IntoIterator<Item = Id>, budget: u64, f: impl FnOnce() -> R) -> R {
        {
            let mut st = self.lock();
            st.plan.clear();
            st.plan_pos.clear();
            st.cursor = 0;
            st.progress = 0;
            st.unread.clear();
            // What was read before a plan (a restore's walk through the tree packs) is not
            // what the plan reads: 16 MiB of trees held through a whole restore otherwise.
            st.used.clear();
            st.opened.clear();
            st.budget = budget;
            st.stop = false;
        }
        self.plan_more(blobs);
        /// Stops read-ahead however `f` ends, so the scope below can join its threads.
        struct Stop<'r, 'a>(&'r SharedReader<'a>);
        impl Drop for Stop<'_, '_> {
            fn drop(&mut self) {
                self.0.lock().stop = true;
                self.0.changed.notify_all();
            }
        }
        // A ranged reader reads no packs whole, so none ahead either.
        let threads = if budget == 0 || self.ranged { 0 } else { READ_AHEAD_THREADS };
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| self.read_ahead());
            }
            let _stop = Stop(self);
            f()
        })
    }

    /// Adds the packs holding `blobs` to the end of the read-ahead plan (each pack once).
    pub fn plan_more(&self, blobs: impl IntoIterator<Item = Id>) {
        let mut st = self.lock();
        let before = st.plan.len();
        for id in blobs {
            let Some(r) = self.index.get(&id) else { continue };
            let p = self.index.pack(r.pack);
            *st.unread.entry(p.id).or_default() += 1;
            if !st.plan_pos.contains_key(&p.id) {
                let pos = st.plan.len();
                st.plan_pos.insert(p.id, pos);
                st.plan.push((p.id, p.size));
            }
        }
        if st.plan.len() > before {
            self.changed.notify_all();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReaderState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One read-ahead thread: takes the next plan entry nobody has, waits for room in the
    /// budget, fetches it.
    fn read_ahead(&self) {
        let mut st = self.lock();
        loop {
            if st.stop {
                return;
            }
            st.cursor = st.cursor.max(st.progress);
            let Some(&(id, size)) = st.plan.get(st.cursor) else {
                // The plan may grow (`plan_more`) until `f` returns and sets `stop`.
                st = self.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            };
            if st.loading.contains(&id) || st.ahead.contains_key(&id) || st.used.iter().any(|(p, _)| *p == id) {
                st.cursor += 1;
                continue;
            }
            // Room for it, or nothing ahead at all (a pack larger than the budget).
            if st.ahead_bytes > 0 && st.ahead_bytes + size > st.budget {
                st = self.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            st.cursor += 1;
            st.loading.insert(id);
            st.ahead_bytes += size;
            drop(st);
            let got = self.repo.get_hashed(&self.repo.pack_key(&id), &id);
            st = self.lock();
            st.loading.remove(&id);
            match got {
                Ok(data) => {
                    st.ahead.insert(id, Arc::new(data));
                }
                Err(_) => st.ahead_bytes -= size,
            }
            self.changed.notify_all();
        }
    }

    /// Reads and verifies one blob.
    ///
    /// # Errors
    /// `Corrupt` naming the blob and pack; store errors.
    pub fn read(&self, id: &Id) -> Result<Vec<u8>> {
        let r = self.index.get(id).ok_or_else(|| self.index.missing(id))?;
        let pack_id = self.index.pack(r.pack).id;
        if self.ranged {
            if let Ok(plain) = self.read_range(&pack_id, &r.entry) {
                return Ok(plain);
            }
            // The opened version may be a rogue writer's: reopened after the search below
            // has pinned the authentic one.
            self.lock().opened.retain(|(p, _)| *p != pack_id);
        }
        // Whole packs, or a range that failed: the whole pack, checked against its name (or
        // an older version of it that is), decides, and an error names what is wrong.
        let bytes = if self.ranged {
            Arc::new(self.repo.get_hashed(&self.repo.pack_key(&pack_id), &pack_id)?)
        } else {
            self.pack(&pack_id)?
        };
        let (start, end) = (r.entry.offset as usize, r.entry.offset as usize + r.entry.length as usize);
        let key = self.repo.pack_name(&pack_id);
        let sealed = bytes.get(start..end).ok_or_else(|| RepoError::corrupt(key.to_string(), "blob out of range"))?;
        pack::open_blob_with(&self.repo.key, self.repo, &r.entry, sealed, key)
    }

    /// The plaintext length of a blob, if the index knows it.
    #[must_use]
    pub fn raw_length(&self, id: &Id) -> Option<u64> {
        self.index.get(id).map(|r| u64::from(r.entry.raw_length))
    }

    /// Reads and parses a tree blob.
    ///
    /// # Errors
    /// As [`SharedReader::read`].
    pub fn tree(&self, id: &Id) -> Result<Tree> {
        Tree::from_bytes(&self.read(id)?, id)
    }

    /// One blob read by its range from the pack, opened or kept open.
    fn read_range(&self, pack_id: &Id, entry: &pack::PackEntry) -> Result<Vec<u8>> {
        let key = self.repo.pack_name(pack_id);
        let cannot_read = |source| RepoError::Store { context: format!("cannot read {key}"), source };
        let opened = {
            let mut st = self.lock();
            let last = st.reading(pack_id);
            cached(&mut st.opened, pack_id, last).ok_or(last)
        };
        let pack = match opened {
            Ok(pack) => pack,
            Err(last) => {
                let pack: Arc<dyn RangeRead> = Arc::from(
                    self.repo
                        .store
                        .open_ranged(&key.to_string(), self.repo.pin(&key.to_string()).as_ref())
                        .map_err(cannot_read)?,
                );
                if !last {
                    keep(&mut self.lock().opened, self.capacity, *pack_id, pack.clone());
                }
                pack
            }
        };
        // The next blob of the group this thread opened last: not read again.
        if let Some(r) = pack::cached_grouped(&self.repo.key, entry, key) {
            return r;
        }
        let sealed = pack.read_at(u64::from(entry.offset), entry.length as usize).map_err(cannot_read)?;
        pack::open_blob_owned_with(&self.repo.key, self.repo, entry, sealed, key)
    }

    fn pack(&self, id: &Id) -> Result<Arc<Vec<u8>>> {
        let mut st = self.lock();
        let last = st.reading(id);
        loop {
            if let Some(data) = cached(&mut st.used, id, last) {
                return Ok(data);
            }
            if let Some(data) = st.ahead.remove(id) {
                st.ahead_bytes -= self.index.pack_by_id(id).map_or(0, |p| p.size);
                if !last {
                    keep(&mut st.used, self.capacity, *id, data.clone());
                }
                self.changed.notify_all();
                return Ok(data);
            }
            if !st.loading.contains(id) {
                break;
            }
            st = self.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.loading.insert(*id);
        drop(st);
        let got = self.repo.get_hashed(&self.repo.pack_key(id), id).map(Arc::new);
        let mut st = self.lock();
        st.loading.remove(id);
        if let (Ok(data), false) = (&got, last) {
            keep(&mut st.used, self.capacity, *id, data.clone());
        }
        self.changed.notify_all();
        got
    }
}

/// The cached entry for pack `id`, taken out of `list` when this is its last planned read.
fn cached<T: Clone>(list: &mut VecDeque<(Id, T)>, id: &Id, last: bool) -> Option<T> {
    let pos = list.iter().position(|(p, _)| p == id)?;
    Some(if last { list.remove(pos).expect("position is valid").1 } else { list[pos].1.clone() })
}

/// Adds pack `id` as the most recently used entry (unless there already), dropping the least
/// recently used past `capacity`.
fn keep<T>(list: &mut VecDeque<(Id, T)>, capacity: usize, id: Id, value: T) {
    if list.iter().any(|(p, _)| *p == id) {
        return;
    }
    if list.len() >= capacity {
        list.pop_front();
    }
    list.push_back((id, value));
}

/// The last few packs read, whole; or, from a store with cheap ranged reads (a local
/// vault), the last few packs opened, read a blob's range at a time.
///
/// Memory: `ls`, `diff`, `verify` and a backup's reading of its parent's trees held four
/// whole 16 MiB packs (64 MiB, a third of `ls`'s peak on 500 000 files) to read tree blobs
/// of a few KiB; from a local vault they now hold open files. A range that does not
/// authenticate is read again from the whole pack, verified against its name, as
/// [`SharedReader`] does, so damage is still found and named per pack.
#[derive(Default)]
pub(super) struct PackCache {
    packs: VecDeque<(Id, Arc<Vec<u8>>)>,
    opened: VecDeque<(Id, Arc<dyn RangeRead>)>,
}

const PACK_CACHE: usize = 4;

impl PackCache {
    pub(super) fn read(&mut self, repo: &Repository, index: &Index, id: &Id) -> Result<Vec<u8>> {
        let r = index.get(id).ok_or_else(|| index.missing(id))?;
        let pack_id = index.pack(r.pack).id;
        if repo.store.capabilities().cheap_ranged_reads {
            if let Ok(plain) = self.read_range(repo, &pack_id, &r.entry) {
                return Ok(plain);
            }
            // The opened version may be a rogue writer's: the whole pack decides.
            self.opened.retain(|(p, _)| *p != pack_id);
        }
        let bytes = self.pack(repo, &pack_id, r.entry.kind)?;
        let (start, end) = (r.entry.offset as usize, r.entry.offset as usize + r.entry.length as usize);
        let key = repo.pack_key(&pack_id);
        let sealed = bytes.get(start..end).ok_or_else(|| RepoError::corrupt(key.clone(), "blob out of range"))?;
        pack::open_blob_with(&repo.key, repo, &r.entry, sealed, &key)
    }

    /// One blob read by its range from pack `pack_id`, opened or kept open.
    fn read_range(&mut self, repo: &Repository, pack_id: &Id, entry: &pack::PackEntry) -> Result<Vec<u8>> {
        let key = repo.pack_name(pack_id);
        let cannot_read = |source| RepoError::Store { context: format!("cannot read {key}"), source };
        let pack = match self.opened.iter().position(|(p, _)| p == pack_id) {
            Some(pos) => {
                let hit = self.opened.remove(pos).expect("position is valid");
                let pack = hit.1.clone();
                self.opened.push_back(hit);
                pack
            }
            None => {
                let k = key.to_string();
                let pack: Arc<dyn RangeRead> =
                    Arc::from(repo.store.open_ranged(&k, repo.pin(&k).as_ref()).map_err(cannot_read)?);
                keep(&mut self.opened, PACK_CACHE, *pack_id, pack.clone());
                pack
            }
        };
        if let Some(r) = pack::cached_grouped(&repo.key, entry, key) {
            return r;
        }
        let sealed = pack.read_at(u64::from(entry.offset), entry.length as usize).map_err(cannot_read)?;
        pack::open_blob_owned(&repo.key, entry, sealed, key)
    }

    fn pack(&mut self, repo: &Repository, id: &Id, kind: BlobKind) -> Result<Arc<Vec<u8>>> {
        if let Some(pos) = self.packs.iter().position(|(p, _)| p == id) {
            let hit = self.packs.remove(pos).expect("position is valid");
            let data = hit.1.clone();
            self.packs.push_back(hit);
            return Ok(data);
        }
        // A pack of trees (never shared with file data) goes through the local cache: like
        // the metadata objects, it is served only if it hashes to its name, then every blob
        // in it is authenticated as the store's bytes would be (docs/cache.md).
        let key = repo.pack_key(id);
        let data = Arc::new(match kind {
            BlobKind::Tree => repo.get_meta(CacheKind::TreePack, &key, id)?,
            BlobKind::Data => repo.get_hashed(&key, id)?,
        });
        if self.packs.len() >= PACK_CACHE {
            self.packs.pop_front();
        }
        self.packs.push_back((*id, data.clone()));
        Ok(data)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use coffer_store::{
        LocalVault, LockConfig, Object, ObjectVersion, Page, Principal, PutOptions, Role, VaultOptions, Versioning,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose pack reads take a while, counting how many run at once and in all.
    struct Slow {
        inner: Box<dyn ObjectStore>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        started: AtomicUsize,
    }

    impl ObjectStore for Slow {
        fn principal(&self) -> &Principal {
            self.inner.principal()
        }
        // Slow, whole-object reads: what a remote store is.
        fn capabilities(&self) -> coffer_store::Capabilities {
            coffer_store::Capabilities::REMOTE
        }
        fn put(&self, key: &str, data: &[u8], opts: &PutOptions) -> coffer_store::Result<ObjectVersion> {
            self.inner.put(key, data, opts)
        }
        fn get(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<Object> {
            if !key.contains("data/") {
                return self.inner.get(key, version);
            }
            self.started.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(40));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.inner.get(key, version)
        }
        fn open_ranged(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<Box<dyn RangeRead>> {
            self.inner.open_ranged(key, version)
        }
        fn head(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<ObjectVersion> {
            self.inner.head(key, version)
        }
        fn list(&self, prefix: &str, token: Option<&str>, limit: usize) -> coffer_store::Result<Page<ObjectVersion>> {
            self.inner.list(prefix, token, limit)
        }
        fn list_versions(
            &self,
            prefix: &str,
            token: Option<&str>,
            limit: usize,
        ) -> coffer_store::Result<Page<ObjectVersion>> {
            self.inner.list_versions(prefix, token, limit)
        }
        fn delete(&self, key: &str) -> coffer_store::Result<ObjectVersion> {
            self.inner.delete(key)
        }
        fn delete_version(&self, key: &str, version: &VersionId, bypass: bool) -> coffer_store::Result<()> {
            self.inner.delete_version(key, version, bypass)
        }
        fn put_retention(
            &self,
            key: &str,
            version: &VersionId,
            retention: Option<Retention>,
            bypass: bool,
        ) -> coffer_store::Result<()> {
            self.inner.put_retention(key, version, retention, bypass)
        }
        fn put_legal_hold(&self, key: &str, version: &VersionId, on: bool) -> coffer_store::Result<()> {
            self.inner.put_legal_hold(key, version, on)
        }
        fn lock_config(&self) -> coffer_store::Result<LockConfig> {
            self.inner.lock_config()
        }
        fn put_lock_config(&self, config: &LockConfig) -> coffer_store::Result<()> {
            self.inner.put_lock_config(config)
        }
        fn versioning(&self) -> coffer_store::Result<Versioning> {
            self.inner.versioning()
        }
        fn put_versioning(&self, status: Versioning) -> coffer_store::Result<()> {
            self.inner.put_versioning(status)
        }
    }

    /// A repository in a fresh local vault, seen through [`Slow`] (which counts pack reads),
    /// holding `blob(0..n)` in packs of about `pack_size` bytes.
    struct Fixture {
        /// Holds the vault: bind it (`_tmp`, not `..`) for as long as the repository is used.
        _tmp: tempfile::TempDir,
        clock: Clock,
        slow: Arc<Slow>,
        repo: Repository,
        /// The blobs' ids, `blob(0)` first.
        ids: Vec<Id>,
    }

    fn fixture(pack_size: u32, n: u32) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let vault =
            LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() })
                .unwrap();
        let slow = Arc::new(Slow {
            inner: Box::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        });
        let opts =
            InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..InitOptions::default() };
        let mut repo = Repository::init(slow.clone(), "t", "", b"pw", &opts, clock.clone()).unwrap();
        repo.config.pack_size = pack_size;
        let ids = {
            let mut w = repo.writer(clock.now() + SignedDuration::from_hours(24)).unwrap();
            let ids = (0..n).map(|i| w.add(BlobKind::Data, &blob(i)).unwrap()).collect();
            w.finish().unwrap();
            ids
        };
        Fixture { _tmp: tmp, clock, slow, repo, ids }
    }

    pub(in crate::repo) fn blob(i: u32) -> Vec<u8> {
        (0..10_000u32).flat_map(|j| (j.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)).to_le_bytes()).collect()
    }

    /// Reading blobs in plan order with read-ahead keeps several pack reads in flight, never
    /// holds more than the budget fetched ahead, and returns the right data.
    #[test]
    fn read_ahead_overlaps_pack_reads_within_its_budget() {
        // Small packs: about one 40 KB blob each.
        let Fixture { _tmp, slow, repo, ids, .. } = fixture(32 << 10, 24);
        let index = repo.load_index().unwrap();
        let largest = ids.iter().map(|id| index.pack(index.get(id).unwrap().pack).size).max().unwrap();
        let packs: HashSet<Id> = ids.iter().map(|id| index.pack(index.get(id).unwrap().pack).id).collect();
        assert!(packs.len() >= 12, "{} packs", packs.len());
        let started_before = slow.started.load(Ordering::SeqCst);

        let reader = SharedReader::new(&repo, &index, 2);
        let mut seen = HashSet::new();
        let mut worst_ahead = 0;
        reader.with_read_ahead(ids.iter().copied(), 2 * largest, || {
            for (i, id) in ids.iter().enumerate() {
                seen.insert(index.pack(index.get(id).unwrap().pack).id);
                let fetched = slow.started.load(Ordering::SeqCst) - started_before;
                worst_ahead = worst_ahead.max(fetched.saturating_sub(seen.len()));
                assert_eq!(reader.read(id).unwrap(), blob(u32::try_from(i).unwrap()), "blob {i}");
                // The consumer is slower than one read, faster than the reads in sequence.
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        let fetched = slow.started.load(Ordering::SeqCst) - started_before;
        assert_eq!(fetched, packs.len(), "every pack read exactly once");
        assert!(slow.max_in_flight.load(Ordering::SeqCst) >= 2, "pack reads never overlapped");
        assert!(worst_ahead <= 2, "{worst_ahead} packs fetched ahead, the budget holds 2");
    }

    /// A rogue writer's garbage version on top of a pack costs a ranged restore one search
    /// for the authentic version, not a whole-pack read per blob: the version found is
    /// pinned and opened for the remaining ranges.
    #[test]
    fn a_garbage_version_on_a_pack_is_searched_past_once() {
        let Fixture { _tmp, slow, repo, ids, .. } = fixture(1 << 20, 12);
        let index = repo.load_index().unwrap();
        let pack = index.pack(index.get(&ids[0]).unwrap().pack).id;
        let in_pack: Vec<usize> =
            (0..ids.len()).filter(|&i| index.pack(index.get(&ids[i]).unwrap().pack).id == pack).collect();
        assert!(in_pack.len() >= 8, "{} blobs in the first pack", in_pack.len());
        slow.put(&repo.pack_key(&pack), b"garbage on top", &PutOptions::default()).unwrap();
        let before = slow.started.load(Ordering::SeqCst);
        let reader = SharedReader::ranged(&repo, &index, 2);
        for &i in &in_pack {
            assert_eq!(reader.read(&ids[i]).unwrap(), blob(u32::try_from(i).unwrap()), "blob {i}");
        }
        let whole_reads = slow.started.load(Ordering::SeqCst) - before;
        assert!(whole_reads <= 2, "{whole_reads} whole-pack reads for {} blobs", in_pack.len());
    }

    /// A pack leaves the reader's cache with its last planned read, and not before: the
    /// planned reads fetch each pack once, a read after the last planned one fetches again.
    #[test]
    fn a_pack_leaves_the_cache_with_its_last_planned_read() {
        let Fixture { _tmp, slow, repo, ids, .. } = fixture(96 << 10, 12); // about three blobs a pack
        let index = repo.load_index().unwrap();
        let mut by_pack: Vec<(Id, Vec<Id>)> = Vec::new();
        for id in &ids {
            let p = index.pack(index.get(id).unwrap().pack).id;
            match by_pack.iter_mut().find(|(q, _)| *q == p) {
                Some((_, v)) => v.push(*id),
                None => by_pack.push((p, vec![*id])),
            }
        }
        by_pack.retain(|(_, v)| v.len() >= 2);
        assert!(by_pack.len() >= 2, "two packs of two blobs or more: {by_pack:?}");
        let (a, b) = (&by_pack[0].1, &by_pack[1].1);
        let fetches = || slow.started.load(Ordering::SeqCst);

        // Room for both packs: only the plan decides what leaves.
        let reader = SharedReader::new(&repo, &index, 2);
        let plan = [a[0], b[0], a[1]];
        reader.with_read_ahead(plan, 0, || {
            let before = fetches();
            for id in plan {
                reader.read(&id).unwrap();
            }
            assert_eq!(fetches() - before, 2, "the planned reads fetch each pack once");
            // Both packs' planned reads are done: reading them again fetches them again.
            reader.read(&a[0]).unwrap();
            reader.read(&b[1]).unwrap();
            assert_eq!(fetches() - before, 4, "a pack stayed cached after its last planned read");
            // Unplanned reads keep the usual least-recently-used cache.
            reader.read(&a[1]).unwrap();
            assert_eq!(fetches() - before, 4, "an unplanned read of a cached pack fetched it");
        });
    }

    /// A ranged reader reads every blob right, and a range that does not authenticate (the
    /// pack's latest version was replaced by damaged bytes) is read from the version of the
    /// pack that matches its name instead.
    #[test]
    fn ranged_reads_fall_back_to_the_verified_pack() {
        let Fixture { _tmp, clock, slow: store, repo, ids } = fixture(96 << 10, 8);
        let index = repo.load_index().unwrap();
        let reader = SharedReader::ranged(&repo, &index, 2);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(reader.read(id).unwrap(), blob(u32::try_from(i).unwrap()), "blob {i}");
        }

        // Damage the first blob's bytes in a new latest version of its pack.
        let r = index.get(&ids[0]).unwrap();
        let (pack_id, entry) = (index.pack(r.pack).id, r.entry);
        let key = repo.pack_key(&pack_id);
        let mut bytes = store.get(&key, None).unwrap().data;
        bytes[entry.offset as usize + 30] ^= 0x40;
        let until = clock.now() + SignedDuration::from_hours(24);
        store
            .put(
                &key,
                &bytes,
                &PutOptions {
                    retention: Some(Retention { mode: RetentionMode::Compliance, until }),
                    legal_hold: false,
                    create_only: false,
                },
            )
            .unwrap();
        let sealed =
            store.open_ranged(&key, None).unwrap().read_at(u64::from(entry.offset), entry.length as usize).unwrap();
        assert!(pack::open_blob(&repo.key, &entry, &sealed, &key).is_err(), "the range read directly fails");

        let reader = SharedReader::ranged(&repo, &index, 2);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(reader.read(id).unwrap(), blob(u32::try_from(i).unwrap()), "blob {i} after the damage");
        }
    }
}
