//! What a files backup and restore tell their observer, and how they stop when cancelled:
//! the progress adds up to what the job reports, the total is the tree's, and a cancelled
//! backup writes no snapshot but leaves data the next backup reuses.

use coffer_repository::{Cancel, Event, InitOptions, JobControl, KdfParams, Progress, RepoError, Repository};
use coffer_sources::files::{BackupOptions, FilesError, RestoreOptions, backup, restore};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn repo(dir: &Path) -> Repository {
    let vault = LocalVault::init(dir.join("v"), &VaultOptions::default()).unwrap();
    let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    Repository::init(w, "t", "", b"pw", &opts, Clock::system()).unwrap()
}

/// Incompressible bytes, different for each seed (no dedup between files).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An observed event, owned.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Phase(&'static str),
    Total(Progress, bool),
    Advance(Progress),
    Warning(String),
    Snapshot(coffer_repository::Id),
}

/// An observer recording every event, and the control holding it.
fn recorder() -> (JobControl, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let ctl = JobControl::observed(Arc::new(move |e: &Event<'_>| {
        let s = match e {
            Event::Phase { name } => Seen::Phase(name),
            Event::Total { total, complete } => Seen::Total(*total, *complete),
            Event::Advance(p) => Seen::Advance(*p),
            Event::Warning { message, .. } => Seen::Warning((*message).to_owned()),
            Event::Snapshot { id } => Seen::Snapshot(*id),
            _ => return,
        };
        sink.lock().unwrap().push(s);
    }));
    (ctl, seen)
}

fn advanced(seen: &[Seen]) -> Progress {
    seen.iter().fold(Progress::default(), |acc, s| match s {
        Seen::Advance(p) => Progress::new(acc.items + p.items, acc.bytes + p.bytes),
        _ => acc,
    })
}

fn last_total(seen: &[Seen]) -> Option<(Progress, bool)> {
    seen.iter().rev().find_map(|s| match s {
        Seen::Total(p, c) => Some((*p, *c)),
        _ => None,
    })
}

#[test]
fn backup_and_restore_progress_adds_up_to_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path());
    let src = tmp.path().join("src");
    let mut tree = Progress::default();
    for d in 0..5u64 {
        let dir = src.join(format!("d{d}/sub"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..7u64 {
            // From empty to several chunks (the chunker's average is about 1 MiB).
            let len = usize::try_from((d * 7 + f) * (d * 7 + f) * 9_000).unwrap();
            std::fs::write(dir.join(format!("f{f}")), noise(d * 100 + f, len)).unwrap();
            tree = Progress::new(tree.items + 1, tree.bytes + len as u64);
        }
        std::os::unix::fs::symlink("sub/f0", src.join(format!("d{d}/link"))).unwrap();
    }
    // Excluded: neither read nor counted in the total.
    std::fs::write(src.join("skip.tmp"), noise(7, 50_000)).unwrap();
    let opts = BackupOptions {
        paths: vec![src.clone()],
        excludes: vec!["*.tmp".into()],
        host: "h".into(),
        ..Default::default()
    };

    for round in ["first, every file read", "second, every file unchanged"] {
        let (ctl, seen) = recorder();
        let r = backup(&repo, &opts, &ctl).unwrap();
        let seen = seen.lock().unwrap().clone();
        let s = &r.info.summary;
        assert_eq!((s.files, s.bytes), (tree.items, tree.bytes), "{round}");
        assert_eq!(seen.first(), Some(&Seen::Phase("backup")), "{round}");
        assert_eq!(advanced(&seen), Progress::new(s.files, s.bytes), "{round}: advances add up to the summary");
        assert_eq!(last_total(&seen), Some((tree, true)), "{round}: the final total is the tree");
        // Totals only grow.
        let totals: Vec<u64> =
            seen.iter().filter_map(|e| if let Seen::Total(p, _) = e { Some(p.items) } else { None }).collect();
        assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{round}: {totals:?}");
        assert_eq!(seen.last(), Some(&Seen::Snapshot(r.snapshot)), "{round}: the snapshot is the last event");
        assert!(!seen.iter().any(|e| matches!(e, Seen::Warning(_))), "{round}: {seen:?}");
    }

    let (ctl, seen) = recorder();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let target = tmp.path().join("out");
    let rep = restore(&repo, &snap, &RestoreOptions { target, ..Default::default() }, &ctl).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&Seen::Phase("restore")));
    assert_eq!(last_total(&seen), Some((tree, true)), "the restore's total is the snapshot's files");
    // The total is complete before any content is written.
    let first_advance = seen.iter().position(|e| matches!(e, Seen::Advance(_))).unwrap();
    let complete = seen.iter().position(|e| matches!(e, Seen::Total(_, true))).unwrap();
    assert!(complete < first_advance);
    assert_eq!(advanced(&seen), Progress::new(rep.files, rep.bytes));
    assert_eq!(advanced(&seen), tree);
}

#[test]
fn a_backup_cancelled_by_its_observer_commits_nothing_and_its_data_is_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path());
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // 48 MiB: three packs' worth, so that some are stored before the cancellation.
    let (files, size) = (24u64, 2usize << 20);
    for f in 0..files {
        std::fs::write(src.join(format!("f{f:02}")), noise(f, size)).unwrap();
    }
    let tree_bytes = files * size as u64;
    let opts = BackupOptions { paths: vec![src.clone()], host: "h".into(), ..Default::default() };

    // The observer cancels once 40 MiB have been read: a signal handler does the same.
    let cancel = Cancel::new();
    let (trigger, done) = (cancel.clone(), Arc::new(Mutex::new(0u64)));
    let counter = Arc::clone(&done);
    let ctl = JobControl {
        observer: Arc::new(move |e: &Event<'_>| {
            if let Event::Advance(p) = e {
                let mut n = counter.lock().unwrap();
                *n += p.bytes;
                if *n >= 40 << 20 {
                    trigger.cancel();
                }
            }
            assert!(!matches!(e, Event::Snapshot { .. }), "a cancelled backup reported a snapshot");
        }),
        cancel,
    };
    let err = backup(&repo, &opts, &ctl).unwrap_err();
    assert!(matches!(err, FilesError::Repo(RepoError::Cancelled)), "{err:?}");
    assert_eq!(err.class(), coffer_store::ErrorClass::Cancelled);
    assert!(*done.lock().unwrap() < tree_bytes, "it stopped before the end");
    assert!(repo.snapshots().unwrap().is_empty(), "no snapshot is committed");

    // The next backup succeeds and stores only what the cancelled one had not.
    let r = backup(&repo, &opts, &JobControl::none()).unwrap();
    let s = &r.info.summary;
    assert_eq!(s.bytes, tree_bytes);
    assert!(s.bytes_added < tree_bytes, "what the cancelled backup stored is reused: {s:?}");
    assert_eq!(repo.snapshots().unwrap().len(), 1);

    // A restore cancelled from its observer stops too, and says so.
    let cancel = Cancel::new();
    let trigger = cancel.clone();
    let ctl = JobControl {
        observer: Arc::new(move |e: &Event<'_>| {
            if matches!(e, Event::Advance(_)) {
                trigger.cancel();
            }
        }),
        cancel,
    };
    let target = tmp.path().join("out");
    let err =
        restore(&repo, &r.info, &RestoreOptions { target: target.clone(), ..Default::default() }, &ctl).unwrap_err();
    assert!(matches!(err, FilesError::Repo(RepoError::Cancelled)), "{err:?}");
    let restored = walk_files(&target);
    assert!(restored < files, "the restore stopped early: {restored} of {files} files");
}

fn walk_files(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            n += walk_files(&e.path());
        } else if t.is_file() {
            n += 1;
        }
    }
    n
}
