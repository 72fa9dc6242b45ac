//! The compression dictionary end to end, on a real local vault: the first backup with
//! enough small blobs trains one and stores it under `dicts/`, later blobs use it (and are
//! smaller), every blob reads back through a fresh handle, a later backup extends the
//! dictionary's lock with its own, and garbage put over its name by a rogue writer changes
//! nothing (the dictionary is content-addressed). Hostile dictionary contents are covered
//! by the unit tests of `dict.rs`.

use coffer_repository::{BlobKind, InitOptions, KdfParams, NewSnapshot, Repository, Tree};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use jiff::SignedDuration;
use std::sync::Arc;

fn mail(i: u32) -> Vec<u8> {
    coffer_testkit::mail::message(i, 0, coffer_testkit::mail::Ending::OClock)
}

fn backup(repo: &Repository, clock: &Clock, range: std::ops::Range<u32>) -> Vec<coffer_repository::Id> {
    let now = clock.now();
    let mut w = repo.writer(now + SignedDuration::from_hours(24 * 30)).unwrap();
    let ids: Vec<_> = range.map(|i| w.add(BlobKind::Data, &mail(i)).unwrap()).collect();
    let tree = w.add(BlobKind::Tree, &Tree { nodes: vec![] }.to_bytes()).unwrap();
    w.commit(NewSnapshot {
        kind: "files".into(),
        time: now,
        host: "h".into(),
        paths: vec!["/".into()],
        tags: Vec::new(),
        tree,
        parent: None,
        pg: None,
    })
    .unwrap();
    ids
}

/// A writer's repository in a fresh local vault on a manual clock, with the dictionary chosen
/// at `init` or not. The temporary directory must outlive the rest.
fn fixture(dictionary: bool) -> (tempfile::TempDir, Clock, Arc<dyn ObjectStore>, Repository) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
    let vault =
        LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions {
        kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
        dictionary,
        ..Default::default()
    };
    let repo = Repository::init(store.clone(), "t", "", b"pw", &opts, clock.clone()).unwrap();
    (tmp, clock, store, repo)
}

fn dict_versions(store: &dyn ObjectStore) -> Vec<coffer_store::ObjectVersion> {
    store.list_versions("dicts/", None, 100).unwrap().items
}

#[test]
fn size_dictionary_is_trained_stored_used_extended_and_checked() {
    let (_tmp, clock, store, repo) = fixture(true);

    // Too few small blobs: no dictionary.
    backup(&repo, &clock, 0..100);
    assert!(dict_versions(store.as_ref()).is_empty());

    // Enough: one dictionary, locked as long as the backup's packs.
    let ids = backup(&repo, &clock, 100..6100);
    let dicts = dict_versions(store.as_ref());
    assert_eq!(dicts.len(), 1, "{dicts:?}");
    let first_lock = dicts[0].retention.unwrap().until;

    // Every blob reads back through a fresh handle (which loads the dictionary itself), and
    // the blobs sealed after training are smaller than those before it.
    let fresh = Repository::open(store.clone(), "t", "", b"pw", clock.clone()).unwrap();
    let index = fresh.load_index().unwrap();
    let mut reader = fresh.reader(&index);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(reader.read(id).unwrap(), mail(100 + n as u32), "blob {n}");
    }
    let sealed_len = |id| index.get(id).unwrap().entry.length;
    let before: u32 = ids[..500].iter().map(sealed_len).sum();
    let after: u32 = ids[ids.len() - 500..].iter().map(sealed_len).sum();
    assert!(after * 10 < before * 8, "500 blobs sealed {before} bytes before training, {after} after");

    // A later backup (same dictionary, no new one) extends its lock with its own.
    clock.advance(std::time::Duration::from_secs(10 * 86400));
    backup(&fresh, &clock, 7000..7100);
    let dicts = dict_versions(store.as_ref());
    assert_eq!(dicts.len(), 1);
    assert!(dicts[0].retention.unwrap().until > first_lock, "the dictionary's lock was extended");
}

#[test]
fn size_garbage_on_a_dictionary_name_changes_nothing() {
    let (_tmp, clock, store, repo) = fixture(true);
    let ids = backup(&repo, &clock, 0..4500);
    let key = dict_versions(store.as_ref())[0].key.clone();
    // A rogue writer puts garbage on top of the dictionary's name: readers find the
    // authentic version (content-addressed), so nothing changes.
    store.put(&key, b"garbage", &coffer_store::PutOptions::default()).unwrap();
    let fresh = Repository::open(store.clone(), "t", "", b"pw", clock.clone()).unwrap();
    let index = fresh.load_index().unwrap();
    let last = ids.last().unwrap();
    assert!(fresh.reader(&index).read(last).is_ok());
}

/// A repository `init` did not opt in trains no dictionary however many small files it
/// gets, and does not write with one a rogue writer planted under `dicts/`.
#[test]
fn size_no_dictionary_unless_init_chose_it() {
    let (_tmp, clock, store, repo) = fixture(false);
    assert!(!repo.config().dictionary);
    let ids = backup(&repo, &clock, 0..6000);
    assert!(dict_versions(store.as_ref()).is_empty(), "a dictionary was trained without the init option");
    let index = repo.load_index().unwrap();
    // A blob's share of the pack: its sealed length, or its group's split among the
    // group's members (pack version 3: grouped entries state the group's range).
    let mut members = std::collections::HashMap::new();
    for id in &ids {
        let r = index.get(id).unwrap();
        *members.entry((r.pack, r.entry.offset)).or_insert(0u32) += 1;
    }
    let share = |id: &coffer_repository::Id| {
        let r = index.get(id).unwrap();
        r.entry.length / members[&(r.pack, r.entry.offset)]
    };
    let before: u32 = ids[..500].iter().map(share).sum();
    let after: u32 = ids[ids.len() - 500..].iter().map(share).sum();
    assert!(after * 10 >= before * 9, "blobs got much smaller without a dictionary: {before} -> {after}");
}
