//! The catalog ([`crate::catalog`]) through a repository on a real local vault: a run opens
//! no old object, a bad catalog changes nothing, an unlisted entry is never used, `--as-of`
//! still decides by the store's listing.

use super::*;
use crate::catalog::{Catalog, Kind as CatKind, PURPOSE};

struct Fx {
    tmp: tempfile::TempDir,
    clock: Clock,
    store: Arc<dyn ObjectStore>,
}

impl Fx {
    fn new() -> Self {
        let (tmp, clock, repo) = super::writer::tests::fixture();
        Self { tmp, clock, store: repo.store.clone() }
    }

    fn cache_root(&self) -> std::path::PathBuf {
        self.tmp.path().join("cache")
    }

    /// A new handle (a new run), through the cache or not.
    fn open(&self, cache: bool) -> Repository {
        let r = Repository::open(self.store.clone(), "t", "", b"pw", self.clock.clone()).unwrap();
        if cache { r.with_cache(&CacheChoice::Always(self.cache_root())) } else { r }
    }

    /// One backup: a new data blob (so a new pack and index object) and a snapshot.
    fn backup(&self, tag: &str) -> Id {
        self.clock.advance(std::time::Duration::from_secs(60));
        let repo = self.open(true);
        let expires = self.clock.now() + SignedDuration::from_hours(24);
        let mut w = repo.writer_with_history(expires).unwrap();
        w.add(BlobKind::Data, tag.as_bytes()).unwrap();
        let tree = w.add(BlobKind::Tree, &Tree { nodes: vec![] }.to_bytes()).unwrap();
        w.commit(super::writer::tests::test_snapshot(&repo, tree, tag)).unwrap()
    }

    fn catalog_dir(&self, repo: &Repository) -> std::path::PathBuf {
        self.cache_root().join(crate::cache::LAYOUT).join(repo.config().id.to_string()).join("catalog")
    }
}

/// What a run sees: snapshot ids and tags, the index's packs, its damaged objects.
type View = (Vec<(Id, Vec<String>)>, Vec<Id>, usize);

/// What a run sees ([`View`]).
fn view(repo: &Repository) -> View {
    let snaps = repo.all_snapshots().unwrap().into_iter().map(|(id, s)| (id, s.tags)).collect();
    let index = repo.load_index().unwrap();
    let mut packs: Vec<Id> = index.packs().iter().map(|p| p.id).collect();
    packs.sort();
    (snaps, packs, index.damaged().len())
}

#[test]
fn catalog_a_run_after_many_opens_no_old_object_and_sees_the_same() {
    let fx = Fx::new();
    for i in 0..12 {
        fx.backup(&format!("b{i}"));
    }
    let truth = view(&fx.open(false));
    assert_eq!(truth.0.len(), 12);
    assert!(truth.1.len() >= 12, "a pack per backup: {}", truth.1.len());

    // The backups kept the catalog, their own new objects included: a new run opens none.
    let repo = fx.open(true);
    assert_eq!(view(&repo), truth);
    assert_eq!(repo.cache_entry_reads(), 0, "no object opened");

    // One more backup, by another host (not in this host's catalog): the next run opens
    // only what that backup wrote (its snapshot and index object), never the history.
    fx.clock.advance(std::time::Duration::from_secs(60));
    let other = fx.open(false);
    let mut w = other.writer_with_history(fx.clock.now() + SignedDuration::from_hours(24)).unwrap();
    w.add(BlobKind::Data, b"b12").unwrap();
    let tree = w.add(BlobKind::Tree, &Tree { nodes: vec![] }.to_bytes()).unwrap();
    w.commit(super::writer::tests::test_snapshot(&other, tree, "b12")).unwrap();
    let repo = fx.open(true);
    let after = view(&repo);
    assert_eq!(after.0.len(), 13);
    assert_eq!(repo.cache_entry_reads(), 2, "opened only the new backup's snapshot and index object");
    assert_eq!(after, view(&fx.open(false)));
    let repo = fx.open(true);
    view(&repo);
    assert_eq!(repo.cache_entry_reads(), 0);
}

#[test]
fn catalog_bad_or_foreign_files_are_ignored_removed_and_change_nothing() {
    let fx = Fx::new();
    for i in 0..5 {
        fx.backup(&format!("b{i}"));
    }
    let truth = view(&fx.open(false));
    let repo = fx.open(true);
    assert_eq!(view(&repo), truth);
    let dir = fx.catalog_dir(&repo);
    let base = dir.join("snapshots.base");
    let good = std::fs::read(&base).unwrap();
    let mut edited = good.clone();
    let mid = edited.len() / 2;
    edited[mid] ^= 1;
    // Another repository's catalog, under this repository's name.
    let other = Fx::new();
    for i in 0..2 {
        other.backup(&format!("o{i}"));
    }
    let orepo = other.open(true);
    view(&orepo);
    let foreign = std::fs::read(other.catalog_dir(&orepo).join("snapshots.base")).unwrap();
    for bad in [edited, good[..good.len() - 7].to_vec(), b"garbage".to_vec(), foreign] {
        std::fs::write(&base, &bad).unwrap();
        let repo = fx.open(true);
        assert_eq!(view(&repo), truth, "results identical");
        assert_eq!(repo.cache_entry_reads(), 5, "the snapshots were opened one by one again");
        let now = std::fs::read(&base).unwrap();
        assert_ne!(now, bad, "the bad file was replaced");
        let repo = fx.open(true);
        assert_eq!(view(&repo), truth);
        assert_eq!(repo.cache_entry_reads(), 0, "and the rewritten one serves again");
    }
}

#[test]
fn catalog_an_unlisted_entry_is_never_used_and_is_dropped() {
    let fx = Fx::new();
    for i in 0..3 {
        fx.backup(&format!("b{i}"));
    }
    let repo = fx.open(true);
    let truth = view(&repo);
    let cache = repo.meta_cache_handle().unwrap();
    let mac = repo.key().keyed_hasher(PURPOSE);
    // An authenticated entry for an index object the store does not list (as if pruned),
    // stating a pack no listed index states.
    let ghost_pack = Id([0xab; 32]);
    let file = crate::index::IndexFile {
        packs: vec![crate::index::IndexPack {
            id: ghost_pack,
            size: 100,
            retain_until: fx.clock.now(),
            blobs: Vec::new(),
        }],
    };
    let ghost = Id([0xcd; 32]);
    let mut cat = Catalog::load(cache, CatKind::Index, &mac);
    cat.add(ghost, serde_json::to_vec(&file).unwrap());
    cat.keep(cache, &mac, |_| true, None);
    assert!(Catalog::load(cache, CatKind::Index, &mac).get(&ghost).is_some(), "planted");

    let repo = fx.open(true);
    let index = repo.load_index().unwrap();
    assert!(index.pack_by_id(&ghost_pack).is_none(), "never used: its blobs are not deduplicated against");
    assert_eq!(view(&repo), truth);
    assert!(Catalog::load(cache, CatKind::Index, &mac).get(&ghost).is_none(), "dropped at the write");
}

#[test]
fn catalog_as_of_decides_by_the_listing_and_no_cache_bypasses() {
    let fx = Fx::new();
    fx.backup("b0");
    fx.backup("b1");
    let then = fx.clock.now();
    fx.backup("b2");
    let repo = fx.open(true);
    view(&repo);
    let dir = fx.catalog_dir(&repo);
    let before: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    // The catalog holds b2; a handle as of `then` does not see it.
    let past = Repository::open_as_of(fx.store.clone(), "t", "", b"pw", fx.clock.clone(), Some(then))
        .unwrap()
        .with_cache(&CacheChoice::Always(fx.cache_root()));
    let tags: Vec<String> = past.all_snapshots().unwrap().into_iter().flat_map(|(_, s)| s.tags).collect();
    assert_eq!(tags, vec!["b0", "b1"]);
    assert_eq!(past.cache_entry_reads(), 0, "served from the catalog");
    let after: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "a handle seeing the past writes no catalog");

    // Without a cache (`--no-cache`) the catalog is not read: a garbage base changes nothing.
    std::fs::write(dir.join("snapshots.base"), b"garbage").unwrap();
    let plain = fx.open(false);
    assert_eq!(plain.all_snapshots().unwrap().len(), 3);
    assert_eq!(std::fs::read(dir.join("snapshots.base")).unwrap(), b"garbage", "not even looked at");
    // Reads bypassing the cache (`verify --read-data`) do not use it either.
    let repo = fx.open(true);
    let _bypass = repo.bypass_cache_reads();
    assert_eq!(repo.all_snapshots().unwrap().len(), 3);
    assert_eq!(std::fs::read(dir.join("snapshots.base")).unwrap(), b"garbage");
}

#[test]
fn catalog_verify_checks_the_objects_not_a_forged_catalog() {
    let fx = Fx::new();
    fx.backup("b0");
    fx.backup("b1");
    let repo = fx.open(false);
    let ctl = crate::JobControl::none();
    let truth = crate::verify(&repo, crate::ReadData::None, &ctl).unwrap();
    assert!(truth.problems.is_empty(), "{:?}", truth.problems);
    // The backup host holds the key: it can write an authenticated catalog that says each
    // listed index object states its packs without their blobs (so every snapshot's data
    // would look missing), and a pack that exists nowhere.
    let cache_repo = fx.open(true);
    let cache = cache_repo.meta_cache_handle().unwrap();
    let mac = cache_repo.key().keyed_hasher(PURPOSE);
    let ghost =
        crate::index::IndexPack { id: Id([0xab; 32]), size: 100, retain_until: fx.clock.now(), blobs: Vec::new() };
    std::fs::remove_dir_all(fx.catalog_dir(&cache_repo)).unwrap();
    let mut cat = Catalog::load(cache, CatKind::Index, &mac);
    let mut forged = 0;
    repo.for_each_name("index/", |k| {
        let id: Id = k.rsplit('/').next().unwrap().parse().unwrap();
        let bytes = repo.get_meta(CacheKind::Index, &k, &id)?;
        let mut file: IndexFile = pack::open_object(repo.key(), ObjectKind::Index, &bytes, &k)?;
        for p in &mut file.packs {
            p.blobs.clear();
        }
        file.packs.push(ghost.clone());
        cat.add(id, serde_json::to_vec(&file).unwrap());
        forged += 1;
        Ok(())
    })
    .unwrap();
    assert!(forged >= 2);
    cat.keep(cache, &mac, |_| true, None);
    let fooled = fx.open(true);
    let seen = fooled.load_index().unwrap();
    assert!(seen.pack_by_id(&ghost.id).is_some() && seen.blob_count() == 0, "this host's own view uses the catalog");

    // `verify` opens the objects themselves: the forgery neither fails nor fools it.
    let repo = fx.open(true);
    let report = crate::verify(&repo, crate::ReadData::None, &ctl).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.snapshots, report.trees, report.blobs), (truth.snapshots, truth.trees, truth.blobs));
    assert!(repo.cache_entry_reads() >= 2, "the index objects were opened (from their checked entries)");
}

/// The backup host is the attacker: it holds the key, so it can forge its own catalog — an
/// index entry stating a pack that does not exist, locked for a year, holding a blob. Its
/// backups, which take the catalog for their listing (`Repository::writer`), then
/// reference that blob without storing it. That host could write such a snapshot directly
/// anyway; what matters is that `verify` (which lists and opens the objects) reports it.
#[test]
fn catalog_a_forged_catalog_misleads_only_its_hosts_backups_and_verify_reports_it() {
    let fx = Fx::new();
    fx.backup("a");
    let repo = fx.open(true);
    let cache = repo.meta_cache_handle().unwrap();
    let mac = repo.key().keyed_hasher(PURPOSE);
    let ghost = Id([0xab; 32]);
    let victim = repo.key().blob_id(b"victim");
    let file = crate::index::IndexFile {
        packs: vec![crate::index::IndexPack {
            id: ghost,
            size: 1000,
            retain_until: fx.clock.now() + SignedDuration::from_hours(24 * 365),
            blobs: vec![crate::pack::PackEntry {
                kind: BlobKind::Data,
                id: victim,
                offset: 0,
                length: 100,
                raw_length: 6,
                group: Default::default(),
            }],
        }],
    };
    let mut cat = Catalog::load(cache, CatKind::Index, &mac);
    cat.add(Id([0xcd; 32]), serde_json::to_vec(&file).unwrap());
    assert!(cat.keep(cache, &mac, |_| true, None));

    // The host's next backup takes the forged catalog and deduplicates against the ghost.
    fx.clock.advance(std::time::Duration::from_secs(60));
    let fooled = fx.open(true);
    let mut w = fooled.writer_with_history(fx.clock.now() + SignedDuration::from_hours(24)).unwrap();
    assert!(w.index().pack_by_id(&ghost).is_some(), "the writer took the (forged) catalog");
    w.add(BlobKind::Data, b"victim").unwrap();
    let t = fx.clock.now();
    let file = crate::Node {
        name: "f".into(),
        name_raw: None,
        kind: crate::NodeKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime: t,
        atime: t,
        ctime: t,
        inode: 1,
        device: 1,
        links: 1,
        size: 6,
        content: vec![victim],
        subtree: None,
        target: None,
        target_raw: None,
        rdev: 0,
        xattrs: Vec::new(),
    };
    let tree = w.add(BlobKind::Tree, &Tree { nodes: vec![file] }.to_bytes()).unwrap();
    let id = w.commit(super::writer::tests::test_snapshot(&fooled, tree, "fooled")).unwrap();
    assert_eq!(fooled.read_snapshot(&id).unwrap().summary.blobs_added, 1, "only the tree stored: it was fooled");

    // A verify lists the store and opens the objects: the blob is in no stored index.
    let report = crate::verify(&fx.open(false), crate::ReadData::None, &crate::JobControl::none()).unwrap();
    assert!(
        report.problems.iter().any(|p| p.message.contains(&victim.short()) || p.object.contains(&victim.short())),
        "{:?}",
        report.problems
    );
}
