//! The catalog: a verified *derived* cache of the decoded content of index and snapshot
//! objects, so that a backup (or `snapshots`, `restore`, `verify`) opens a handful of local
//! files instead of one cache entry per object of the history.
//!
//! Without it, every run opens each index and snapshot object of the history one by one:
//! a cache-file read, BLAKE3 of its bytes, AEAD open and zstd for each, ~2 objects per
//! snapshot. The catalog keeps, per object id, the object's **plaintext** (the decrypted,
//! decompressed JSON the object holds), so a listed id found in it skips all of that.
//! Keeping the plaintext rather than a re-encoding keeps the catalog independent of the
//! objects' own formats: it says "object ID decodes to these bytes", nothing more.
//!
//! Invariants guarded here (the cache sits on a host the attacker may control):
//!
//! - **Authenticated as a whole.** Each file ends with a keyed BLAKE3 (key derived from the
//!   repository key, purpose `PURPOSE` ("catalog v1"), the kind inside the hashed bytes). A file that
//!   does not authenticate (garbage, truncated, edited, another repository's, another
//!   kind's, a newer layout) is removed and ignored: never an error, never a panic. Sizes
//!   are checked before allocating ([`MAX_FILE`], and every length inside the file against
//!   the bytes left).
//! - **Existence comes from the store.** Callers look up only ids a store listing just
//!   returned (`Catalog::get`); an entry for an id the listing did not return is never
//!   used, and is dropped at the next write (`Catalog::keep` then rewrites the base).
//!   `--as-of` still decides by the store listing; a handle seeing the past never writes.
//! - **Never the check.** The MAC key derives from the repository key, which the backup
//!   host holds: a host the attacker controls can forge what a listed id decodes to in its
//!   own catalog. So `verify` never uses it ([`crate::Repository::without_catalog`]): it
//!   opens the objects (from the store, or per-object entries checked against their
//!   content-addressed names), and a forged catalog neither fails nor fools it.
//! - **Only what opened.** An entry is added only after its object was read (hash checked
//!   against its name) and opened (authenticated, decoded): a damaged object stays damaged.
//! - **Bounded, amortized.** Files are one *base* plus up to [`MAX_DELTAS`] *delta* files,
//!   one per run that added entries (an atomic write of only that run's new entries). When
//!   the deltas would exceed [`MAX_DELTAS`] files or a quarter of the base's bytes, or an
//!   entry is no longer listed, base and deltas are merged into a new base. So a run opens at
//!   most `1 + MAX_DELTAS` files whatever the history's length, writes only its own entries,
//!   and the base's rewrite costs O(1) amortized per entry. A catalog that would exceed
//!   [`MAX_FILE`] (e.g. the index of a many-million-file repository, which then costs no
//!   more than opening the index objects) is simply not kept.
//!
//! - **A recent listing, for writers only.** Each file records when the complete listing it
//!   came from started (`listed`, or 0 for a file of a writer's own new objects). A base
//!   plus deltas is then "every object listed at `listed`, plus what this host wrote since":
//!   a writer may use that instead of listing again while it is younger than the
//!   repository handle's `relist_after` ([`crate::Repository::with_relist_after`]); see
//!   [`crate::Repository::writer`] for when, and why that is safe. No base, a bad file, a
//!   `listed` in the future: the writer lists.
//!
//! File format (binary, version 2), `v1/REPO-ID/catalog/KIND.base` and
//! `v1/REPO-ID/catalog/KIND.d-RANDOM` (KIND `index` or `snapshots`):
//!
//! ```text
//! magic "coffer-catalog-2"  16 bytes
//! kind                      1 byte (1 index, 2 snapshots)
//! listed                    i64 LE: Unix seconds the listing began, 0 for none
//! count                     u32 LE
//! count × (id 32 bytes ‖ length u32 LE ‖ plaintext)
//! mac                       32 bytes: keyed BLAKE3 of every byte before it
//! ```
//!
//! Version 1 (no `listed`) files do not authenticate as version 2: they are removed and the
//! next listing writes the catalog again.

use crate::cache::MetaCache;
use crate::id::Id;
use std::collections::HashMap;
use std::path::PathBuf;

/// The purpose of the catalog's MAC key ([`crate::crypto::MasterKey::keyed_hasher`]).
pub(crate) const PURPOSE: &str = "catalog v2";

/// The largest catalog, all files of a kind together: past it none is kept.
pub const MAX_FILE: u64 = 128 << 20;

/// The most delta files before they are merged into the base.
pub const MAX_DELTAS: usize = 16;

const MAGIC: &[u8; 16] = b"coffer-catalog-2";
const HEAD: usize = 16 + 1 + 8 + 4;
const MAC: usize = 32;
/// The directory under the repository's cache directory.
const DIR: &str = "catalog";

/// What a catalog holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Index,
    Snapshot,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Self::Index => 1,
            Self::Snapshot => 2,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::Snapshot => "snapshots",
        }
    }
}

/// One kind's catalog as loaded, plus what this run adds.
#[derive(Debug)]
pub(crate) struct Catalog {
    kind: Kind,
    /// The files' authenticated bytes, kept whole: entries point into them (no copy, so
    /// the catalog costs its files' size in memory and no more).
    files: Vec<Vec<u8>>,
    /// Entries from the files: id → (file, start, end) of its plaintext.
    entries: HashMap<Id, (usize, usize, usize)>,
    /// Entries this run added (not in the files yet).
    added: Vec<(Id, Vec<u8>)>,
    /// Bytes `added` takes in a file (36 + plaintext each).
    added_bytes: u64,
    /// Adding went past [`MAX_FILE`]: nothing more is held, and no catalog is kept. (So a
    /// repository whose index would not fit — millions of files — costs no memory for it:
    /// the objects are decoded and dropped one by one, as without a catalog.)
    over: bool,
    /// The delta files read (merged away at the next base rewrite).
    deltas: Vec<PathBuf>,
    base_bytes: u64,
    delta_bytes: u64,
    /// Files were present that did not authenticate (removed): the base is rewritten.
    bad: bool,
    /// A base file was read.
    has_base: bool,
    /// When the newest complete listing any file read came from began (Unix seconds).
    listed_at: Option<i64>,
}

impl Catalog {
    /// An empty catalog (no cache, or nothing kept).
    pub(crate) fn empty(kind: Kind) -> Self {
        Self {
            kind,
            files: Vec::new(),
            entries: HashMap::new(),
            added: Vec::new(),
            added_bytes: 0,
            over: false,
            deltas: Vec::new(),
            base_bytes: 0,
            delta_bytes: 0,
            bad: false,
            has_base: false,
            listed_at: None,
        }
    }

    /// Loads `kind`'s catalog from `cache`, authenticating each file with `mac`; a bad file
    /// is removed and its entries are not served. Never an error.
    pub(crate) fn load(cache: &MetaCache, kind: Kind, mac: &blake3::Hasher) -> Self {
        let mut cat = Self::empty(kind);
        let dir = cache.dir().join(DIR);
        let base = dir.join(format!("{}.base", kind.name()));
        let mut budget = MAX_FILE;
        match read_file(cache, &base, kind, mac, budget) {
            Some(Ok((bytes, listed, entries))) => {
                let len = bytes.len() as u64;
                budget -= len;
                cat.base_bytes = len;
                cat.has_base = true;
                cat.note_listed(listed);
                cat.add_file(bytes, entries);
            }
            Some(Err(())) => cat.bad = true,
            None => {}
        }
        let prefix = format!("{}.d-", kind.name());
        let mut deltas: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        deltas.sort();
        if deltas.len() > MAX_DELTAS * 2 {
            // Far more than a writer leaves: someone else's; start over.
            for d in &deltas {
                cache.remove(d);
            }
            cat.bad = true;
            return cat;
        }
        for d in deltas {
            match read_file(cache, &d, kind, mac, budget) {
                Some(Ok((bytes, listed, entries))) => {
                    let len = bytes.len() as u64;
                    budget -= len;
                    cat.delta_bytes += len;
                    cat.note_listed(listed);
                    cat.add_file(bytes, entries);
                    cat.deltas.push(d);
                }
                Some(Err(())) => cat.bad = true,
                None => {}
            }
        }
        tracing::debug!(kind = kind.name(), entries = cat.entries.len(), deltas = cat.deltas.len(), "catalog loaded");
        cat
    }

    fn note_listed(&mut self, listed: i64) {
        if listed != 0 {
            self.listed_at = Some(self.listed_at.map_or(listed, |l| l.max(listed)));
        }
    }

    /// Whether this catalog is every object of its kind as listed less than `window` seconds
    /// before `now` (plus what this host wrote since): a base was read, no file was bad, and
    /// its listing time is not in the future (a clock set back, or a forged file, lists).
    pub(crate) fn recent(&self, now: i64, window: i64) -> bool {
        self.has_base && !self.bad && !self.over && self.listed_at.is_some_and(|l| l <= now && now - l < window)
    }

    /// Every entry: id and plaintext, in no particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Id, &[u8])> {
        self.entries.iter().filter_map(|(id, &(f, a, b))| Some((id, self.files.get(f)?.get(a..b)?)))
    }

    /// Adds a writer's own new objects (`listed` 0) as one delta file, without reading the
    /// catalog — unless the deltas are due for a merge or the files would pass their bound:
    /// then loads it and [`Catalog::keep`]s (which merges, or keeps none). Returns whether
    /// the entries are kept.
    pub(crate) fn append(cache: &MetaCache, kind: Kind, mac: &blake3::Hasher, entries: Vec<(Id, Vec<u8>)>) -> bool {
        let dir = cache.dir().join(DIR);
        let prefix = format!("{}.", kind.name());
        let (mut deltas, mut bytes, mut base) = (0usize, 0u64, false);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
            bytes += e.metadata().map_or(u64::MAX / 4, |m| m.len());
            if name == "base" {
                base = true;
            } else if name.starts_with("d-") {
                deltas += 1;
            }
        }
        let new: u64 = entries.iter().map(|(_, p)| 36 + p.len() as u64).sum();
        if !base || deltas + 1 >= MAX_DELTAS || bytes + new > MAX_FILE {
            let mut cat = Self::load(cache, kind, mac);
            for (id, p) in entries {
                cat.add(id, p);
            }
            return cat.keep(cache, mac, |_| true, None);
        }
        let refs: Vec<(Id, &[u8])> = entries.iter().map(|(id, p)| (*id, p.as_slice())).collect();
        let path = dir.join(format!("{}.d-{}", kind.name(), hex::encode(crate::crypto::random::<8>())));
        match crate::cache::write_atomic(&dir, &path, &encode(kind, mac, 0, &refs)) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "cannot write a catalog delta");
                false
            }
        }
    }

    /// Removes `kind`'s base, so no writer takes the catalog for a complete listing until the
    /// next listing writes one (used when a writer could not record its own new objects).
    pub(crate) fn forget(cache: &MetaCache, kind: Kind) {
        cache.remove(&cache.dir().join(DIR).join(format!("{}.base", kind.name())));
    }

    fn add_file(&mut self, bytes: Vec<u8>, entries: Vec<(Id, usize, usize)>) {
        let f = self.files.len();
        self.entries.extend(entries.into_iter().map(|(id, a, b)| (id, (f, a, b))));
        self.files.push(bytes);
    }

    /// The plaintext of object `id`, which a store listing has just returned.
    pub(crate) fn get(&self, id: &Id) -> Option<&[u8]> {
        self.entries.get(id).and_then(|&(f, a, b)| self.files.get(f)?.get(a..b))
    }

    /// Adds object `id`, read from the store or the per-object cache (hash checked) and
    /// opened (authenticated, decoded): `plaintext` is what it decodes to.
    pub(crate) fn add(&mut self, id: Id, plaintext: Vec<u8>) {
        if self.over || self.entries.contains_key(&id) {
            return;
        }
        let n = 36 + plaintext.len() as u64;
        if self.base_bytes + self.delta_bytes + self.added_bytes + n > MAX_FILE {
            self.over = true;
            self.added = Vec::new();
            self.added_bytes = 0;
            return;
        }
        self.added_bytes += n;
        self.added.push((id, plaintext));
    }

    /// Writes what this run added: a delta file with the new entries, or a new base of
    /// every listed entry when the deltas would grow past their bound, an entry is no longer
    /// listed, or a file was bad. `listed` says whether a complete listing (as the store is
    /// now) returned an id, and `listed_at` when that listing began; a writer adding its own
    /// new objects without listing passes `|_| true` and `None`. Returns whether what was
    /// added is kept (failures are logged, never an error).
    pub(crate) fn keep(
        self,
        cache: &MetaCache,
        mac: &blake3::Hasher,
        listed: impl Fn(&Id) -> bool,
        listed_at: Option<i64>,
    ) -> bool {
        let dir = cache.dir().join(DIR);
        let base = dir.join(format!("{}.base", self.kind.name()));
        let stale = self.entries.keys().any(|id| !listed(id));
        let added_bytes = self.added_bytes;
        // A listing with nothing new still renews the catalog's listing time, unless it was
        // renewed in the last minute (runs in a row would each write a file).
        let renew = listed_at.is_some_and(|l| self.listed_at.is_none_or(|old| l > old + 60));
        if !stale && !self.bad && !self.over && self.added.is_empty() && !renew {
            return true;
        }
        if let Err(e) = crate::cache::mkdir_0700(&dir) {
            tracing::debug!(error = %e, "cannot create the catalog directory");
            return false;
        }
        let total = self.base_bytes + self.delta_bytes + added_bytes;
        let merge = stale
            || self.bad
            || self.base_bytes == 0
            || self.deltas.len() >= MAX_DELTAS
            || (self.delta_bytes + added_bytes) * 4 > self.base_bytes;
        if self.over || total > MAX_FILE {
            // Over its bound: keep none (reads go to the per-object cache).
            cache.remove(&base);
            for d in &self.deltas {
                cache.remove(d);
            }
            tracing::debug!(kind = self.kind.name(), bytes = total, "catalog over its bound; none kept");
            return false;
        }
        if merge {
            let mut all: Vec<(Id, &[u8])> = self
                .entries
                .keys()
                .filter_map(|id| Some((*id, self.get(id)?)))
                .chain(self.added.iter().map(|(id, p)| (*id, p.as_slice())))
                .filter(|(id, _)| listed(id))
                .collect();
            all.sort_by_key(|(id, _)| *id);
            all.dedup_by_key(|(id, _)| *id);
            // A merge after a listing is that listing; one of a writer's own objects stays
            // as recent as the listing its files came from.
            let bytes = encode(self.kind, mac, listed_at.or(self.listed_at).unwrap_or(0), &all);
            if let Err(e) = crate::cache::write_atomic(&dir, &base, &bytes) {
                tracing::debug!(error = %e, "cannot write the catalog");
                // The base may be gone or old: none at all is safe (writers list).
                cache.remove(&base);
                return false;
            }
            // Only the deltas this run read: one another run wrote meanwhile stays.
            for d in &self.deltas {
                cache.remove(d);
            }
            tracing::debug!(kind = self.kind.name(), entries = all.len(), "catalog base rewritten");
            true
        } else {
            let path = dir.join(format!("{}.d-{}", self.kind.name(), hex::encode(crate::crypto::random::<8>())));
            let added: Vec<(Id, &[u8])> = self.added.iter().map(|(id, p)| (*id, p.as_slice())).collect();
            let bytes = encode(self.kind, mac, listed_at.unwrap_or(0), &added);
            if let Err(e) = crate::cache::write_atomic(&dir, &path, &bytes) {
                tracing::debug!(error = %e, "cannot write a catalog delta");
                return false;
            }
            true
        }
    }
}

/// Encodes entries as a catalog file of `kind`.
fn encode(kind: Kind, mac: &blake3::Hasher, listed: i64, entries: &[(Id, &[u8])]) -> Vec<u8> {
    let len: usize = entries.iter().map(|(_, p)| 36 + p.len()).sum();
    let mut out = Vec::with_capacity(HEAD + len + MAC);
    out.extend_from_slice(MAGIC);
    out.push(kind.byte());
    out.extend_from_slice(&listed.to_le_bytes());
    out.extend_from_slice(&u32::try_from(entries.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (id, p) in entries {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(p);
    }
    let mut h = mac.clone();
    h.update(&out);
    out.extend_from_slice(h.finalize().as_bytes());
    out
}

/// A file's entries: id, start and end of its plaintext in the file's bytes.
type Entries = Vec<(Id, usize, usize)>;

/// A file as read: its bytes, listing time and entries.
type File = (Vec<u8>, i64, Entries);

/// Reads and authenticates one file: `None` if absent, `Some(Err)` if bad (then removed);
/// else its bytes, listing time and entries.
fn read_file(
    cache: &MetaCache,
    path: &std::path::Path,
    kind: Kind,
    mac: &blake3::Hasher,
    budget: u64,
) -> Option<Result<File, ()>> {
    use std::io::Read as _;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot read a catalog file; removed");
            cache.remove(path);
            return Some(Err(()));
        }
    };
    let len = f.metadata().map(|m| if m.is_file() { m.len() } else { u64::MAX }).unwrap_or(u64::MAX);
    let mut bytes = Vec::new();
    // Refuse before allocating; `take` bounds the read even if the file grows meanwhile.
    let ok = len <= budget && f.take(budget + 1).read_to_end(&mut bytes).is_ok() && bytes.len() as u64 <= budget;
    match ok.then(|| decode(kind, mac, &bytes)).flatten() {
        Some((listed, entries)) => Some(Ok((bytes, listed, entries))),
        None => {
            tracing::debug!(path = %path.display(), "catalog file does not authenticate or is too large; removed");
            cache.remove(path);
            Some(Err(()))
        }
    }
}

/// Authenticates and parses a catalog file (its listing time and entries); `None` when
/// anything is wrong.
fn decode(kind: Kind, mac: &blake3::Hasher, bytes: &[u8]) -> Option<(i64, Entries)> {
    if bytes.len() < HEAD + MAC {
        return None;
    }
    let (body, tag) = bytes.split_at(bytes.len() - MAC);
    let mut h = mac.clone();
    h.update(body);
    // `blake3::Hash` compares in constant time.
    if h.finalize() != blake3::Hash::from_bytes(tag.try_into().ok()?) {
        return None;
    }
    if &body[..16] != MAGIC || body[16] != kind.byte() {
        return None;
    }
    let listed = i64::from_le_bytes(body[17..25].try_into().ok()?);
    let count = u32::from_le_bytes(body[25..29].try_into().ok()?) as usize;
    let mut at = HEAD;
    // Each entry takes at least 36 bytes: a count claiming more is refused before any
    // allocation sized by it.
    if count > (body.len() - HEAD) / 36 {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut seen = std::collections::HashSet::with_capacity(count);
    for _ in 0..count {
        let head = body.get(at..at.checked_add(36)?)?;
        let id = Id(head[..32].try_into().ok()?);
        let n = u32::from_le_bytes(head[32..36].try_into().ok()?) as usize;
        let (start, end) = (at + 36, at.checked_add(36)?.checked_add(n)?);
        if end > body.len() || !seen.insert(id) {
            return None;
        }
        out.push((id, start, end));
        at = end;
    }
    (at == body.len()).then_some((listed, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(k: u8) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&[k; 32])
    }

    fn setup() -> (tempfile::TempDir, MetaCache) {
        let tmp = tempfile::tempdir().unwrap();
        let c = MetaCache::open(tmp.path(), &Id([7; 32])).unwrap();
        (tmp, c)
    }

    fn files(c: &MetaCache) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(c.dir().join(DIR))
            .map(|rd| rd.flatten().map(|e| e.file_name().into_string().unwrap()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn catalog_round_trip_deltas_and_merge() {
        let (_t, c) = setup();
        let m = mac(1);
        let ids: Vec<Id> = (0..40u8).map(|i| Id::hash(&[i])).collect();
        let plain = |i: usize| format!("{{\"n\":{i}}}").into_bytes();
        // First run: everything into the base.
        let mut cat = Catalog::load(&c, Kind::Snapshot, &m);
        for (i, id) in ids.iter().enumerate().take(30) {
            cat.add(*id, plain(i));
        }
        cat.keep(&c, &m, |_| true, None);
        assert_eq!(files(&c), vec!["snapshots.base"]);
        // Next runs: one small delta each.
        for i in 30..32 {
            let mut cat = Catalog::load(&c, Kind::Snapshot, &m);
            assert_eq!(cat.get(&ids[i - 1]).map(<[u8]>::to_vec), Some(plain(i - 1)));
            assert!(cat.get(&ids[i]).is_none());
            cat.add(ids[i], plain(i));
            cat.keep(&c, &m, |_| true, None);
        }
        assert_eq!(files(&c).len(), 3, "{:?}", files(&c));
        let cat = Catalog::load(&c, Kind::Snapshot, &m);
        assert_eq!(cat.entries.len(), 32);
        assert_eq!(cat.get(&ids[31]), Some(plain(31).as_slice()));
        assert_eq!(Catalog::load(&c, Kind::Index, &m).entries.len(), 0, "kinds are apart");
        // An id no longer listed: never served by callers, and dropped at the next write.
        let gone = ids[3];
        cat.keep(&c, &m, |id| *id != gone, None);
        assert_eq!(files(&c), vec!["snapshots.base"], "merged");
        let cat = Catalog::load(&c, Kind::Snapshot, &m);
        assert_eq!(cat.entries.len(), 31);
        assert!(cat.get(&gone).is_none());
    }

    #[test]
    fn catalog_bad_files_are_removed_and_ignored() {
        let (_t, c) = setup();
        let m = mac(1);
        let mut cat = Catalog::load(&c, Kind::Index, &m);
        cat.add(Id::hash(b"a"), b"plain a".to_vec());
        cat.add(Id::hash(b"b"), b"plain b".to_vec());
        cat.keep(&c, &m, |_| true, None);
        let path = c.dir().join(DIR).join("index.base");
        let good = std::fs::read(&path).unwrap();
        assert_eq!(Catalog::load(&c, Kind::Index, &m).entries.len(), 2);
        // Another repository's key.
        assert!(Catalog::load(&c, Kind::Index, &mac(2)).entries.is_empty());
        assert!(!path.exists(), "removed");
        // Edited, truncated, garbage, empty, extended, another kind's name.
        let mut edited = good.clone();
        edited[HEAD + 40] ^= 1;
        let mut extended = good.clone();
        extended.push(0);
        for bad in
            [edited, good[..good.len() - 1].to_vec(), good[..10].to_vec(), b"garbage".to_vec(), Vec::new(), extended]
        {
            std::fs::write(&path, &bad).unwrap();
            let cat = Catalog::load(&c, Kind::Index, &m);
            assert!(cat.entries.is_empty());
            assert!(!path.exists());
        }
        std::fs::write(c.dir().join(DIR).join("snapshots.base"), &good).unwrap();
        assert!(Catalog::load(&c, Kind::Snapshot, &m).entries.is_empty(), "an index file as snapshots");
        // Well authenticated but malformed inside (a writer with the key, or a bug): refused.
        for body in [
            {
                let mut b = MAGIC.to_vec();
                b.push(1);
                b.extend_from_slice(&0i64.to_le_bytes());
                b.extend_from_slice(&u32::MAX.to_le_bytes());
                b
            },
            {
                let mut b = MAGIC.to_vec();
                b.push(1);
                b.extend_from_slice(&0i64.to_le_bytes());
                b.extend_from_slice(&1u32.to_le_bytes());
                b.extend_from_slice(&[0; 32]);
                b.extend_from_slice(&u32::MAX.to_le_bytes());
                b
            },
        ] {
            let mut h = m.clone();
            h.update(&body);
            let mut f = body.clone();
            f.extend_from_slice(h.finalize().as_bytes());
            std::fs::write(&path, &f).unwrap();
            assert!(Catalog::load(&c, Kind::Index, &m).entries.is_empty());
        }
        // A directory in the base's place.
        std::fs::create_dir(&path).unwrap();
        let mut cat = Catalog::load(&c, Kind::Index, &m);
        assert!(cat.entries.is_empty() && cat.bad);
        cat.add(Id::hash(b"a"), b"plain a".to_vec());
        cat.keep(&c, &m, |_| true, None);
        assert_eq!(Catalog::load(&c, Kind::Index, &m).entries.len(), 1, "repaired by the next write");
        // An oversized file is removed unread.
        let f = std::fs::File::create(c.dir().join(DIR).join("index.d-big")).unwrap();
        f.set_len(MAX_FILE + 1).unwrap();
        let cat = Catalog::load(&c, Kind::Index, &m);
        assert_eq!(cat.entries.len(), 1);
        assert!(!c.dir().join(DIR).join("index.d-big").exists());
    }

    #[test]
    fn catalog_over_its_bound_is_not_kept() {
        let (_t, c) = setup();
        let m = mac(1);
        let mut cat = Catalog::load(&c, Kind::Index, &m);
        cat.add(Id::hash(b"a"), b"small".to_vec());
        cat.keep(&c, &m, |_| true, None);
        assert_eq!(files(&c), vec!["index.base"]);
        let mut cat = Catalog::load(&c, Kind::Index, &m);
        cat.add(Id::hash(b"next"), b"fits".to_vec());
        assert_eq!(cat.added.len(), 1);
        cat.add(Id::hash(b"big"), vec![0; usize::try_from(MAX_FILE).unwrap()]);
        assert!(cat.over && cat.added.is_empty(), "past the bound nothing is held in memory");
        cat.add(Id::hash(b"after"), b"small again".to_vec());
        assert!(cat.added.is_empty(), "nor after it");
        cat.keep(&c, &m, |_| true, None);
        assert!(files(&c).is_empty(), "none kept: {:?}", files(&c));
    }

    #[test]
    fn catalog_is_recent_only_with_a_base_from_a_listing_inside_the_window() {
        let (_t, c) = setup();
        let m = mac(1);
        let (a, b) = (Id::hash(b"a"), Id::hash(b"b"));
        // A writer's own objects alone, no listing: not a listing.
        let mut cat = Catalog::load(&c, Kind::Index, &m);
        cat.add(a, b"own".to_vec());
        assert!(cat.keep(&c, &m, |_| true, None));
        assert!(!Catalog::load(&c, Kind::Index, &m).recent(1_000, 100));
        // A listing at 1 000: recent inside the window only, never from the future.
        let cat = Catalog::load(&c, Kind::Index, &m);
        assert!(cat.keep(&c, &m, |_| true, Some(1_000)));
        let cat = Catalog::load(&c, Kind::Index, &m);
        assert!(cat.recent(1_000, 100) && cat.recent(1_099, 100));
        assert!(!cat.recent(1_100, 100), "window ended");
        assert!(!cat.recent(999, 100), "listed in the future");
        assert_eq!(cat.entries().count(), 1);
        // A writer adds its own object (a delta without a listing time): still the listing's.
        let mut cat = Catalog::load(&c, Kind::Index, &m);
        cat.add(b, b"own b".to_vec());
        assert!(cat.keep(&c, &m, |_| true, None));
        let cat = Catalog::load(&c, Kind::Index, &m);
        assert!(cat.recent(1_050, 100));
        let mut got: Vec<Id> = cat.entries().map(|(id, _)| *id).collect();
        got.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(got, want);
        // A later listing with nothing new renews the time; one within a minute does not
        // write a file.
        let n = files(&c).len();
        assert!(Catalog::load(&c, Kind::Index, &m).keep(&c, &m, |_| true, Some(1_030)));
        assert_eq!(files(&c).len(), n, "renewed a minute ago: nothing written");
        assert!(Catalog::load(&c, Kind::Index, &m).keep(&c, &m, |_| true, Some(2_000)));
        assert!(Catalog::load(&c, Kind::Index, &m).recent(2_050, 100));
        // Without its base (the cache is safe to delete, file by file): not recent.
        Catalog::forget(&c, Kind::Index);
        assert!(!Catalog::load(&c, Kind::Index, &m).recent(2_050, 100));
        // A bad delta beside a good base: not recent (the next listing repairs it).
        assert!(Catalog::load(&c, Kind::Index, &m).keep(&c, &m, |_| true, Some(3_000)));
        std::fs::write(c.dir().join(DIR).join("index.d-bad"), b"garbage").unwrap();
        assert!(!Catalog::load(&c, Kind::Index, &m).recent(3_010, 100));
    }

    #[test]
    fn catalog_append_writes_a_delta_unread_and_merges_when_due() {
        let (_t, c) = setup();
        let m = mac(1);
        let id = |i: u32| Id::hash(&i.to_le_bytes());
        // No base: loaded and kept (a base of only these, not a listing).
        assert!(Catalog::append(&c, Kind::Snapshot, &m, vec![(id(0), b"p0".to_vec())]));
        assert_eq!(files(&c), vec!["snapshots.base"]);
        assert!(!Catalog::load(&c, Kind::Snapshot, &m).recent(0, i64::MAX));
        // With a base: one delta per append, until the deltas are due for a merge.
        for i in 1..40 {
            assert!(Catalog::append(&c, Kind::Snapshot, &m, vec![(id(i), format!("p{i}").into_bytes())]));
            assert!(files(&c).len() <= MAX_DELTAS + 1, "{i}: {:?}", files(&c));
        }
        let cat = Catalog::load(&c, Kind::Snapshot, &m);
        assert!(!cat.bad);
        assert_eq!(cat.entries().count(), 40);
        assert_eq!(cat.get(&id(39)), Some(b"p39".as_slice()));
        // Past the bound: none kept, and the caller is told.
        assert!(!Catalog::append(&c, Kind::Snapshot, &m, vec![(id(99), vec![0; usize::try_from(MAX_FILE).unwrap()])]));
        assert!(files(&c).is_empty(), "{:?}", files(&c));
    }
}
