//! `verify` reports each tree entry a restore refuses (a snapshot forged by whoever holds the
//! writer's key and the password) as a `hostile-name` security finding naming the tree, the
//! entry and where it sits in the snapshot; an honest snapshot has none.

use coffer_repository::{
    BlobKind, BlobWriter, FindingKind, InitOptions, KdfParams, NewSnapshot, Node, NodeKind, ReadData, Repository, Tree,
    verify,
};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

fn node(name: &[u8], kind: NodeKind) -> Node {
    let mut n = Node {
        name: String::new(),
        name_raw: None,
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime: Timestamp::UNIX_EPOCH,
        atime: Timestamp::UNIX_EPOCH,
        ctime: Timestamp::UNIX_EPOCH,
        inode: 0,
        device: 0,
        links: 1,
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: None,
        target_raw: None,
        rdev: 0,
        xattrs: Vec::new(),
    };
    n.set_name(name);
    n
}

fn dir(w: &mut BlobWriter<'_>, name: &[u8], nodes: Vec<Node>) -> Node {
    let mut n = node(name, NodeKind::Dir);
    n.subtree = Some(w.add(BlobKind::Tree, &Tree { nodes }.to_bytes()).unwrap());
    n
}

fn commit(repo: &Repository, clock: &Clock, build: impl FnOnce(&mut BlobWriter<'_>) -> Vec<Node>) -> String {
    let now = clock.now();
    let expires = now + SignedDuration::from_hours(24);
    let mut w = repo.writer(expires).unwrap();
    let nodes = build(&mut w);
    let tree = w.add(BlobKind::Tree, &Tree { nodes }.to_bytes()).unwrap();
    let id = w
        .commit(NewSnapshot {
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
    id.short().to_string()
}

#[test]
fn verify_reports_each_hostile_entry_of_a_live_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
    let vault =
        LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(w, "t", "", b"pw", &opts, clock.clone()).unwrap();

    // An honest-looking snapshot: no findings.
    commit(&repo, &clock, |w| {
        vec![dir(w, b"etc", vec![node(b"passwd", NodeKind::File)]), node(b"...", NodeKind::File)]
    });
    let rep = verify(&repo, ReadData::None, &coffer_repository::JobControl::none()).unwrap();
    assert!(rep.findings.is_empty(), "{:?}", rep.findings);

    let snap = commit(&repo, &clock, |w| {
        let up2 = dir(w, b"..", vec![node(b"pwned.txt", NodeKind::File)]);
        let up1 = dir(w, b"..", vec![up2]);
        let mut link = node(b"a", NodeKind::Symlink);
        link.set_target(b"/etc");
        vec![
            node(b"", NodeKind::File),
            dir(w, b"ok", vec![up1, node(b"x/y", NodeKind::File)]),
            link,
            dir(w, b"a", vec![node(b"cron", NodeKind::File)]),
            node(b"n\0ul", NodeKind::File),
        ]
    });
    let rep = verify(&repo, ReadData::None, &coffer_repository::JobControl::none()).unwrap();
    let mut got: Vec<(String, String)> = rep
        .findings
        .iter()
        .inspect(|f| {
            assert_eq!(f.kind, FindingKind::HostileName);
            assert!(f.key.starts_with("tree "), "{f:?}");
            assert!(f.message.contains("a restore refuses it"), "{f:?}");
        })
        .map(|f| (f.affected.join(" "), f.message.split(':').next().unwrap().to_owned()))
        .collect();
    got.sort();
    let want: Vec<(String, String)> = [
        (format!("{snap}:/\"\""), "entry \"\""),
        (format!("{snap}:/\"a\""), "entry \"a\""),
        (format!("{snap}:/\"a\""), "entry \"a\""),
        (format!("{snap}:/\"n\\x00ul\""), "entry \"n\\x00ul\""),
        (format!("{snap}:/ok/\"..\""), "entry \"..\""),
        (format!("{snap}:/ok/\"..\"/\"..\""), "entry \"..\""),
        (format!("{snap}:/ok/\"x/y\""), "entry \"x/y\""),
    ]
    .into_iter()
    .map(|(a, m)| (a, m.to_owned()))
    .collect();
    assert_eq!(got, want);
    // Damage is not what this is: the repository itself is whole.
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}
