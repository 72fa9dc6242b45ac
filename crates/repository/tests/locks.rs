//! Reference-aware lock extension and repacking, against a real LocalVault with a moved clock.

use coffer_repository::{BlobKind, InitOptions, KdfParams, NewSnapshot, Repository};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

fn setup() -> (tempfile::TempDir, Repository, Clock, Arc<dyn ObjectStore>) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
    let vault =
        LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(w.clone(), "t", "", b"pw", &opts, clock.clone()).unwrap();
    (tmp, repo, clock, w)
}

fn blob(i: u32) -> Vec<u8> {
    // Incompressible enough that sizes are predictable.
    (0..25_000u32).flat_map(|j| (j.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)).to_le_bytes()).collect()
}

/// A tree with one file made of `content`, stored through the writer.
fn tree(w: &mut coffer_repository::BlobWriter<'_>, content: Vec<coffer_repository::Id>) -> coffer_repository::Id {
    let t = coffer_repository::Tree {
        nodes: vec![coffer_repository::Node {
            name: "f".into(),
            name_raw: None,
            kind: coffer_repository::NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timestamp::UNIX_EPOCH,
            atime: Timestamp::UNIX_EPOCH,
            ctime: Timestamp::UNIX_EPOCH,
            inode: 1,
            device: 1,
            links: 1,
            size: 0,
            content,
            subtree: None,
            target: None,
            target_raw: None,
            rdev: 0,
            xattrs: vec![],
        }],
    };
    w.add(BlobKind::Tree, &t.to_bytes()).unwrap()
}

fn snap(repo: &Repository, tree: coffer_repository::Id) -> NewSnapshot {
    NewSnapshot {
        kind: "test".into(),
        time: repo.clock().now(),
        host: String::new(),
        paths: vec![],
        tags: vec![],
        tree,
        parent: None,
        pg: None,
    }
}

/// First snapshot: 20 blobs in one pack (and its tree in another), kept 2 days. Returns the
/// data pack's key.
fn first(repo: &Repository) -> String {
    let expires = repo.clock().now() + SignedDuration::from_hours(48);
    let mut w = repo.writer(expires).unwrap();
    let ids: Vec<_> = (0..20).map(|i| w.add(BlobKind::Data, &blob(i)).unwrap()).collect();
    let t = tree(&mut w, ids);
    w.commit(snap(repo, t)).unwrap();
    let index = repo.load_index().unwrap();
    assert_eq!(index.packs().len(), 2, "one data pack, one tree pack");
    let data = index.packs().iter().find(|p| p.blobs.iter().all(|b| b.kind == BlobKind::Data)).unwrap();
    assert_eq!(data.blobs.len(), 20);
    repo.pack_key(&data.id)
}

/// Second snapshot a day later, kept 10 days, reusing `reuse` of the first's blobs.
fn second(repo: &Repository, clock: &Clock, reuse: u32) -> coffer_repository::Summary {
    clock.advance(DAY);
    let expires = repo.clock().now() + SignedDuration::from_hours(240);
    let mut w = repo.writer(expires).unwrap();
    let mut ids = Vec::new();
    for i in 0..reuse {
        let id = repo.key().blob_id(&blob(i));
        assert!(w.reuse(&id).unwrap(), "blob {i} is available");
        ids.push(id);
    }
    let t = tree(&mut w, ids);
    let sid = w.commit(snap(repo, t)).unwrap();
    repo.read_snapshot(&sid).unwrap().summary
}

#[test]
fn a_mostly_needed_pack_is_extended() {
    let (_t, repo, clock, w) = setup();
    let key = first(&repo);
    let before = w.head(&key, None).unwrap().retention.unwrap().until;
    let s = second(&repo, &clock, 10);
    assert_eq!((s.locks_extended, s.blobs_repacked), (1, 0));
    let after = w.head(&key, None).unwrap().retention.unwrap().until;
    assert!(after > before, "lock extended from {before} to {after}");
    assert!(after >= repo.clock().now() + SignedDuration::from_hours(240));
    assert!(
        coffer_repository::verify(&repo, coffer_repository::ReadData::All, &coffer_repository::JobControl::none())
            .unwrap()
            .problems
            .is_empty()
    );
}

#[test]
fn a_mostly_dead_pack_is_repacked_not_extended() {
    let (_t, repo, clock, w) = setup();
    let key = first(&repo);
    let before = w.head(&key, None).unwrap().retention.unwrap().until;
    let s = second(&repo, &clock, 2);
    assert_eq!((s.locks_extended, s.blobs_repacked), (0, 2));
    assert_eq!(w.head(&key, None).unwrap().retention.unwrap().until, before, "the old pack keeps its lock and expires");
    // After the first snapshot expires the old pack can go; the second still verifies.
    clock.advance(DAY * 3);
    let rep =
        coffer_repository::verify(&repo, coffer_repository::ReadData::All, &coffer_repository::JobControl::none())
            .unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    let idx = repo.load_index().unwrap();
    let b0 = idx.get(&repo.key().blob_id(&blob(0))).unwrap();
    assert_ne!(repo.pack_key(&idx.pack(b0.pack).id), key, "blob 0 now lives in the new pack");
}

/// `snapshot_locks` (the files drill's `locks` check): a snapshot whose data sits in a pack
/// locked for less than the snapshot's life — here one committed by a writer that referenced
/// the first snapshot's blobs without `reuse` (which would have extended the pack) — names
/// that pack; the objects of a snapshot written as the library writes it all hold.
#[test]
fn drill_files_snapshot_locks_name_a_pack_locked_shorter_than_the_snapshot() {
    let (_t, repo, clock, _w) = setup();
    let data_key = first(&repo);
    let ctl = coffer_repository::JobControl::none();
    let index = repo.load_index().unwrap();
    let (first_id, first_snap) = repo.snapshots().unwrap().pop().unwrap();
    let all_blobs = |snap: &coffer_repository::Snapshot| {
        let mut out = vec![snap.tree];
        let t = repo.reader(&index).tree(&snap.tree).unwrap();
        out.extend(t.nodes.iter().flat_map(|n| n.content.iter().copied()));
        out
    };
    let held = coffer_repository::snapshot_locks(&repo, &index, &first_id, &first_snap, &all_blobs(&first_snap), &ctl)
        .unwrap();
    assert!(held.problems.is_empty(), "{:?}", held.problems);
    // The snapshot, two packs (data, tree), the config and one key.
    assert_eq!((held.objects, held.packs), (5, 2), "{held:?}");

    clock.advance(DAY);
    let expires = repo.clock().now() + SignedDuration::from_hours(240);
    let mut w = repo.writer(expires).unwrap();
    let ids: Vec<_> = (0..3).map(|i| repo.key().blob_id(&blob(i))).collect();
    let t = tree(&mut w, ids);
    let sid = w.commit(snap(&repo, t)).unwrap();
    let short = repo.read_snapshot(&sid).unwrap();
    let index = repo.load_index().unwrap();
    let mut read = vec![short.tree];
    read.extend(repo.reader(&index).tree(&short.tree).unwrap().nodes[0].content.iter().copied());
    let found = coffer_repository::snapshot_locks(&repo, &index, &sid, &short, &read, &ctl).unwrap();
    assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
    let p = &found.problems[0];
    assert_eq!(p.object, data_key);
    assert!(
        p.message.starts_with("locked until ") && p.message.contains(&format!("needs it until {}", short.expires)),
        "{}",
        p.message
    );
}
