//! A writer that takes the catalog for its listing of the history
//! (`Repository::with_relist_after`, `Repository::writer`): inside the window it lists
//! nothing (another host's backup since is not seen), it still deduplicates against what it
//! knows, a pack pruned since its listing is stored again (never referenced while gone),
//! and wherever that would not be safe it lists.

use coffer_repository::{
    BlobKind, CacheChoice, Id, InitOptions, JobControl, KdfParams, NewSnapshot, ReadData, Repository, Tree,
};
use coffer_store::{Clock, LocalVault, ObjectStore, RetentionMode, Role, VaultOptions};
use jiff::SignedDuration;
use std::sync::Arc;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

struct Fx {
    tmp: tempfile::TempDir,
    clock: Clock,
    vault: LocalVault,
    writer: Arc<dyn ObjectStore>,
}

impl Fx {
    fn new(mode: RetentionMode) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let vault =
            LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() })
                .unwrap();
        let writer: Arc<dyn ObjectStore> =
            Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
        let mut opts =
            InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
        opts.retention.mode = mode;
        Repository::init(writer.clone(), "t", "", b"pw", &opts, clock.clone()).unwrap();
        Self { tmp, clock, vault, writer }
    }

    /// A run on host `host` (its own cache directory), taking its last listing for a
    /// complete one for `relist` at most.
    fn host(&self, host: &str, relist: Duration) -> Repository {
        Repository::open(self.writer.clone(), "t", "", b"pw", self.clock.clone())
            .unwrap()
            .with_cache(&CacheChoice::Always(self.tmp.path().join(format!("cache-{host}"))))
            .with_relist_after(relist)
    }

    /// A run with no cache: lists everything (what `verify` and other hosts see).
    fn plain(&self) -> Repository {
        Repository::open(self.writer.clone(), "t", "", b"pw", self.clock.clone()).unwrap()
    }

    fn catalog_dir(&self, host: &str, repo: &Repository) -> std::path::PathBuf {
        self.tmp
            .path()
            .join(format!("cache-{host}"))
            .join(coffer_repository::cache::LAYOUT)
            .join(repo.config().id.to_string())
            .join("catalog")
    }
}

/// What the writer of `repo` knows of the history, and the snapshot it commits holding
/// `data`, expiring in `hours`, tagged `tag`.
fn backup(fx: &Fx, repo: &Repository, tag: &str, data: &[u8], hours: i64) -> (Vec<Id>, Id) {
    fx.clock.advance(Duration::from_secs(60));
    let mut w = repo.writer_with_history(fx.clock.now() + SignedDuration::from_hours(hours)).unwrap();
    let known: Vec<Id> = w.history().unwrap().iter().map(|(id, _)| *id).collect();
    w.add(BlobKind::Data, data).unwrap();
    let tree = w.add(BlobKind::Tree, &Tree { nodes: vec![] }.to_bytes()).unwrap();
    let id = w
        .commit(NewSnapshot {
            kind: "test".into(),
            time: fx.clock.now(),
            host: "h".into(),
            paths: vec!["/p".into()],
            tags: vec![tag.into()],
            tree,
            parent: None,
            pg: None,
        })
        .unwrap();
    (known, id)
}

fn clean(fx: &Fx) {
    let rep = coffer_repository::verify(&fx.plain(), ReadData::All, &JobControl::none()).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}

#[test]
fn relist_inside_the_window_a_backup_lists_nothing_and_still_deduplicates() {
    let fx = Fx::new(RetentionMode::Compliance);
    let (known, a1) = backup(&fx, &fx.host("a", HOUR), "a1", b"shared data", 24);
    assert!(known.is_empty());
    // Another host backs up (it lists: it sees a1 and links to it).
    let (known, b1) = backup(&fx, &fx.plain(), "b1", b"b's data", 24);
    assert_eq!(known, [a1]);

    // Inside the hour: host a takes its catalog for the listing. It does not see b1 (so it
    // listed nothing), links to its own newest, and deduplicates against what it wrote.
    let a = fx.host("a", HOUR);
    let (known, a2) = backup(&fx, &a, "a2", b"shared data", 24);
    assert_eq!(known, [a1], "b1 is written after a's listing: not seen without one");
    let s = a.read_snapshot(&a2).unwrap();
    assert_eq!(s.previous.map(|l| l.id), Some(a1), "a fork, not a second root");
    assert_eq!((s.summary.blobs_added, s.summary.bytes_added), (0, 0), "data and tree deduplicated: {:?}", s.summary);

    // What a source that needs the history before its writer (calendar retention) sees:
    // the same, from the same catalog; nothing when it would list.
    let ids = |h: Vec<(Id, coffer_repository::Snapshot)>| h.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(fx.host("a", HOUR).recent_history().map(ids), Some(vec![a1, a2]));
    assert!(fx.host("a", Duration::ZERO).recent_history().is_none());
    assert!(fx.plain().recent_history().is_none(), "no cache: lists");

    // Its next backup knows a2 (its own), still not b1.
    let (known, a3) = backup(&fx, &fx.host("a", HOUR), "a3", b"more", 24);
    assert_eq!(known, [a1, a2]);

    // Past the hour it lists again, and sees everyone's.
    fx.clock.advance(HOUR);
    let (known, _) = backup(&fx, &fx.host("a", HOUR), "a4", b"b's data", 24);
    assert_eq!(known, [a1, b1, a2, a3]);
    // Forks are no finding; every snapshot restores.
    clean(&fx);
}

#[test]
fn relist_a_pack_pruned_since_the_listing_is_stored_again() {
    let fx = Fx::new(RetentionMode::Compliance);
    let month = Duration::from_secs(30 * 86_400);
    let (_, x) = backup(&fx, &fx.host("a", month), "x", b"short-lived data", 1);
    // A later snapshot keeps the repository's history non-empty after x is pruned.
    let (_, keep) = backup(&fx, &fx.host("a", month), "keep", b"other data", 24 * 20);
    fx.clock.advance(Duration::from_secs(3 * 86_400));
    let pruner = fx.vault.login(&fx.vault.read_credentials(Role::Pruner).unwrap()).unwrap();
    let report = coffer_repository::prune(&pruner, "", fx.clock.now(), false, &JobControl::none()).unwrap();
    assert_eq!(report.snapshots_removed, 1, "{report:?}");
    assert!(report.packs_removed >= 1, "x's data pack is gone: {report:?}");

    // Inside the month, host a takes its catalog: it still holds x and x's pack, which
    // the store no longer has. The data is stored again, not referenced while gone.
    let a = fx.host("a", month);
    let (known, y) = backup(&fx, &a, "y", b"short-lived data", 24);
    assert_eq!(known, [x, keep], "taken from the catalog: x was pruned since the listing");
    let s = a.read_snapshot(&y).unwrap();
    assert_eq!(
        (s.summary.blobs_added, s.summary.bytes_added),
        (1, 16),
        "the data blob stored again (the tree is keep's): {:?}",
        s.summary
    );
    // Every blob y needs is there: verify reads them all.
    clean(&fx);
    let plain = fx.plain();
    let index = plain.load_index().unwrap();
    let mut reader = plain.reader(&index);
    assert_eq!(reader.read(&plain.key().blob_id(b"short-lived data")).unwrap(), b"short-lived data");
}

#[test]
fn relist_where_it_would_not_be_safe_the_writer_lists() {
    // Each case: host a lists at its first backup, host b writes one after it, and the next
    // backup of host a sees b's exactly when it listed.
    let sees_b = |fx: &Fx, before: &dyn Fn(&Fx), relist: Duration| -> bool {
        let (_, _) = backup(fx, &fx.host("a", relist), "a", b"a", 24);
        let (_, b) = backup(fx, &fx.plain(), "b", b"b", 24);
        before(fx);
        let (known, _) = backup(fx, &fx.host("a", relist), "a again", b"a", 24);
        known.contains(&b)
    };
    let nothing = |_: &Fx| {};
    assert!(!sees_b(&Fx::new(RetentionMode::Compliance), &nothing, HOUR), "the probe: inside the window, not listed");
    assert!(sees_b(&Fx::new(RetentionMode::Compliance), &nothing, Duration::ZERO), "relist_after 0: always list");
    assert!(sees_b(&Fx::new(RetentionMode::Governance), &nothing, HOUR), "governance locks can be bypassed");
    // The cache is safe to delete, file by file: without a base there is no listing.
    let no_base = |fx: &Fx| {
        let r = fx.host("a", HOUR);
        std::fs::remove_file(fx.catalog_dir("a", &r).join("snapshots.base")).unwrap();
    };
    assert!(sees_b(&Fx::new(RetentionMode::Compliance), &no_base, HOUR), "no base: lists");
    // A garbled catalog file: lists (and is no error).
    let garbled = |fx: &Fx| {
        let r = fx.host("a", HOUR);
        std::fs::write(fx.catalog_dir("a", &r).join("index.base"), b"garbage").unwrap();
    };
    assert!(sees_b(&Fx::new(RetentionMode::Compliance), &garbled, HOUR), "a bad catalog: lists");
    // A backup of this host interrupted (its marker is left): lists.
    let interrupted = |fx: &Fx| {
        let r = fx.host("a", HOUR);
        let mut w = r.writer(fx.clock.now() + SignedDuration::from_hours(24)).unwrap();
        w.add(BlobKind::Data, b"never committed").unwrap();
        drop(w);
    };
    assert!(sees_b(&Fx::new(RetentionMode::Compliance), &interrupted, HOUR), "an unfinished backup: lists");
    // The host's clock set back before the listing (or a listing time forged in the future).
    let set_back = |fx: &Fx| fx.clock.set(fx.clock.now() - SignedDuration::from_mins(10));
    assert!(sees_b(&Fx::new(RetentionMode::Compliance), &set_back, HOUR), "a listing in the future: lists");
}
