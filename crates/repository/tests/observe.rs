//! What `verify` and `prune` tell their observer, and how they stop when cancelled.

use coffer_repository::{
    BlobKind, Cancel, Event, InitOptions, JobControl, KdfParams, NewSnapshot, Progress, ReadData, RepoError,
    Repository, Tree,
};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use jiff::SignedDuration;
use std::sync::{Arc, Mutex};

/// Events as owned values: (phase, total, advances, removed objects).
#[derive(Debug, Default)]
struct Seen {
    phases: Vec<&'static str>,
    /// Per phase: the last total and the advances' sum.
    totals: Vec<Option<Progress>>,
    done: Vec<Progress>,
    removed: Vec<(String, u64)>,
}

fn recorder(cancel_after: Option<u64>) -> (JobControl, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = Arc::clone(&seen);
    let cancel = Cancel::new();
    let trigger = cancel.clone();
    let observer = move |e: &Event<'_>| {
        let mut s = sink.lock().unwrap();
        match e {
            Event::Phase { name } => {
                s.phases.push(name);
                s.totals.push(None);
                s.done.push(Progress::default());
            }
            Event::Total { total, .. } => *s.totals.last_mut().unwrap() = Some(*total),
            Event::Advance(p) => {
                let d = s.done.last_mut().unwrap();
                d.items += p.items;
                d.bytes += p.bytes;
                if cancel_after.is_some_and(|n| d.items >= n) {
                    trigger.cancel();
                }
            }
            Event::Object { action, key, bytes } => {
                assert_eq!(*action, "removed");
                s.removed.push(((*key).to_owned(), *bytes));
            }
            _ => {}
        }
    };
    (JobControl { observer: Arc::new(observer), cancel }, seen)
}

fn blob(i: u32) -> Vec<u8> {
    (0..50_000u32).flat_map(|j| (j.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)).to_le_bytes()).collect()
}

#[test]
fn verify_and_prune_report_progress_and_stop_when_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
    let vault =
        LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    let writer: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let pruner = vault.login(&vault.read_credentials(Role::Pruner).unwrap()).unwrap();
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(writer, "t", "", b"pw", &opts, clock.clone()).unwrap();
    for (i, hours) in [(0, 24), (1, 24 * 40)] {
        let expires = clock.now() + SignedDuration::from_hours(hours);
        let mut w = repo.writer(expires).unwrap();
        let content = (0..8).map(|j| w.add(BlobKind::Data, &blob(i * 100 + j)).unwrap()).collect();
        let mut n = Tree::default();
        n.nodes.push(coffer_repository::Node { content, ..file_node() });
        let tree = w.add(BlobKind::Tree, &n.to_bytes()).unwrap();
        let new = NewSnapshot {
            kind: "test".into(),
            time: clock.now(),
            host: "h".into(),
            paths: vec![format!("/{i}")],
            tags: vec![],
            tree,
            parent: None,
            pg: None,
        };
        w.commit(new).unwrap();
    }

    let (ctl, seen) = recorder(None);
    let rep = coffer_repository::verify(&repo, ReadData::All, &ctl).unwrap();
    assert!(rep.problems.is_empty() && rep.findings.is_empty(), "{rep:?}");
    let s = seen.lock().unwrap();
    assert_eq!(s.phases, ["check", "read"]);
    assert!(s.done[0].items >= 4, "names, snapshots, trees and pack locks are counted: {s:?}");
    let index = repo.load_index().unwrap();
    let data: u64 = index.packs().iter().map(|p| p.size).sum();
    assert_eq!(s.totals[1], Some(Progress::new(rep.packs_read as u64, data)), "read's total is known up front");
    assert_eq!(s.done[1], s.totals[1].unwrap(), "and reached");
    drop(s);

    let (ctl, _) = recorder(Some(2));
    let err = coffer_repository::verify(&repo, ReadData::All, &ctl).unwrap_err();
    assert!(matches!(err, RepoError::Cancelled), "{err:?}");

    // 30 days on: the first snapshot's objects have expired.
    clock.advance(std::time::Duration::from_secs(30 * 86_400));
    let (ctl, _) = recorder(Some(1));
    let err = coffer_repository::prune(&pruner, "", clock.now(), false, &ctl).unwrap_err();
    assert!(matches!(err, RepoError::Cancelled), "{err:?}");
    let (ctl, seen) = recorder(None);
    let rep = coffer_repository::prune(&pruner, "", clock.now(), false, &ctl).unwrap();
    let s = seen.lock().unwrap();
    assert!(rep.versions_removed > 0, "{rep:?}");
    assert_eq!(s.phases, ["prune"]);
    assert_eq!(s.removed.len() as u64, rep.versions_removed + rep.markers_removed);
    assert_eq!(s.removed.iter().map(|(_, b)| b).sum::<u64>(), rep.bytes_freed);
    assert!(s.removed.iter().any(|(k, _)| k.starts_with("snapshots/")), "{:?}", s.removed);
    assert_eq!(s.done[0].items, rep.versions_removed + rep.versions_kept, "every version examined is counted");
}

fn file_node() -> coffer_repository::Node {
    let t = jiff::Timestamp::UNIX_EPOCH;
    coffer_repository::Node {
        name: "f".into(),
        name_raw: None,
        kind: coffer_repository::NodeKind::File,
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
        size: 0,
        content: vec![],
        subtree: None,
        target: None,
        target_raw: None,
        rdev: 0,
        xattrs: Vec::new(),
    }
}
