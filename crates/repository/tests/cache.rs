//! A `Repository` handle kept open for a long time (the daemon's) sees the repository as it
//! is now: a snapshot pruned since it was cached is gone, and the snapshot cache holds no
//! more than the snapshots the latest listing found.

use coffer_repository::{BlobKind, InitOptions, KdfParams, NewSnapshot, Repository, Tree};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use jiff::SignedDuration;
use std::sync::Arc;
use std::time::Duration;

fn backup(repo: &Repository, hours: i64) -> coffer_repository::Id {
    let expires = repo.clock().now() + SignedDuration::from_hours(hours);
    let mut w = repo.writer(expires).unwrap();
    let tree = w.add(BlobKind::Tree, &Tree { nodes: vec![] }.to_bytes()).unwrap();
    w.commit(NewSnapshot {
        kind: "test".into(),
        time: repo.clock().now(),
        host: String::new(),
        paths: vec![],
        tags: vec![format!("{hours}h")],
        tree,
        parent: None,
        pg: None,
    })
    .unwrap()
}

#[test]
fn a_long_lived_handle_forgets_pruned_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
    let vault =
        LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    let writer: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let pruner = vault.login(&vault.read_credentials(Role::Pruner).unwrap()).unwrap();
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(writer, "t", "", b"pw", &opts, clock.clone()).unwrap();

    let short = backup(&repo, 24);
    clock.advance(Duration::from_secs(60));
    let long = backup(&repo, 80 * 24);
    let ids = |r: &Repository| r.all_snapshots().unwrap().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(ids(&repo), [short, long]);
    assert_eq!(repo.cached_snapshots(), 2);

    clock.advance(Duration::from_secs(30 * 86_400));
    let report =
        coffer_repository::prune(&pruner, "", clock.now(), false, &coffer_repository::JobControl::none()).unwrap();
    assert_eq!(report.snapshots_removed, 1, "{report:?}");

    assert_eq!(ids(&repo), [long], "the listing no longer has the pruned snapshot");
    assert_eq!(repo.cached_snapshots(), 1, "the cache holds what the listing found, no more");
    assert!(repo.read_snapshot(&short).is_err(), "a pruned snapshot is not served from the cache");
    assert_eq!(repo.read_snapshot(&long).unwrap().tags, ["1920h"]);
}
