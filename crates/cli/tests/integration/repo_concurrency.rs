//! Several processes on one repository: two backups at once, and backups while prune runs
//! in a loop. Object Lock is the only concurrency control; neither may fail.

use crate::repo_util::{DAY, Repo, assert_same_tree, manifest, random_bytes, restored};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn write_tree(root: &Path, files: &[(&str, usize, u64)]) {
    fs::create_dir_all(root).unwrap();
    for &(name, len, seed) in files {
        fs::write(root.join(name), random_bytes(len, seed)).unwrap();
    }
}

/// Starts `coffer backup --json PATH` (clock moved by `offset`) in the background.
fn spawn_backup(repo: &Repo, offset: i64, path: &Path, extra: &[&str]) -> Child {
    let mut cmd = repo.at(offset, ["backup", "--json"]).arg(path).args(extra).cmd;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("spawn coffer backup")
}

/// Waits for a backup started by [`spawn_backup`], which must succeed; returns its report.
#[track_caller]
fn wait_ok(child: Child, what: &str) -> Value {
    let out = child.wait_with_output().expect("wait for coffer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"))
}

#[test]
fn two_backups_at_once_both_succeed_and_both_restore() {
    let repo = Repo::init();
    let (a, b) = (repo.sb.path("a"), repo.sb.path("b"));
    // Both hold shared.bin, so both try to store the same chunks at the same time.
    write_tree(&a, &[("a.bin", 2 << 20, 1), ("shared.bin", 1 << 20, 100), ("a.txt", 100, 5)]);
    write_tree(&b, &[("b.bin", 2 << 20, 2), ("shared.bin", 1 << 20, 100), ("b.txt", 100, 6)]);
    let mut snaps = Vec::new();
    for round in 0..2u64 {
        if round > 0 {
            write_tree(&a, &[("a.bin", 2 << 20, 10 + round)]);
            write_tree(&b, &[("b.bin", 2 << 20, 20 + round)]);
        }
        let (want_a, want_b) = (manifest(&a), manifest(&b));
        let ca = spawn_backup(&repo, 0, &a, &[]);
        let cb = spawn_backup(&repo, 0, &b, &[]);
        let (ra, rb) = (wait_ok(ca, "backup of a"), wait_ok(cb, "backup of b"));
        snaps.push((ra["snapshot"].as_str().unwrap().to_owned(), a.clone(), want_a));
        snaps.push((rb["snapshot"].as_str().unwrap().to_owned(), b.clone(), want_b));
    }
    let listed = repo.snapshots_at(0);
    assert_eq!(listed.len(), 4);
    repo.verify_at(0, true);
    for (i, (id, src, want)) in snaps.iter().enumerate() {
        let t = repo.sb.path(&format!("restore-{i}"));
        repo.restore_at(0, id, &t);
        assert_same_tree(want, &manifest(&restored(&t, src)), &format!("snapshot {id} of {}", src.display()));
    }
}

/// Copies a directory tree (a stopped vault), keeping permissions.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::metadata(from).unwrap().permissions()).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock (COFFER_TEST_CLOCK_OFFSET): needs a debug build")]
fn backups_while_prune_runs_in_a_loop_never_fail() {
    let repo = Arc::new(Repo::init());
    let src = repo.sb.path("src");
    write_tree(&src, &[("one.bin", 1 << 20, 1), ("two.bin", 512 << 10, 2), ("three.txt", 1000, 3)]);
    // Many short-lived snapshots (and their index objects and packs), so that prune is
    // still removing them while a backup lists and reads what is there.
    let tiny = repo.sb.path("tiny");
    fs::create_dir_all(&tiny).unwrap();
    // Big snapshot objects (many long tags) take a backup longer to read than prune takes
    // to remove one, so prune can overtake a backup that is reading them.
    let mut tags: Vec<String> = Vec::new();
    for t in 0..60u64 {
        tags.push("--tag".into());
        tags.push(random_bytes(400, t).iter().map(|b| format!("{b:02x}")).collect());
    }
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let mut pending = Vec::new();
    for i in 0..20 {
        let dir = tiny.join(i.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("f"), random_bytes(1000, i)).unwrap();
        pending.push(spawn_backup(&repo, 0, &dir, &[&["--retain", "1d"], &tags[..]].concat()));
        if pending.len() == 2 {
            for c in pending.drain(..) {
                wait_ok(c, "a short-lived backup");
            }
        }
    }
    repo.backup(&[&src], &["--retain", "1d"]);
    let template = repo.sb.path("template");
    copy_tree(&repo.vault(), &template);

    // Four days on, everything has expired and its locks have ended. Each round starts
    // from the same repository, starts a backup and, a little later each round, prune in
    // a loop: over the rounds prune removes snapshots, index objects and packs while the
    // backup is listing and reading them.
    let offset = 4 * DAY;
    let want = manifest(&src);
    let mut took = Duration::from_millis(800);
    let rounds = 6u32;
    for round in 0..rounds {
        fs::remove_dir_all(repo.vault()).unwrap();
        copy_tree(&template, &repo.vault());
        let start = Instant::now();
        let child = spawn_backup(&repo, offset, &src, &["--retain", "1d"]);
        // Backups list and read snapshots early (after deriving the key): that is where
        // the rounds concentrate.
        let delay = took * round / (2 * rounds);
        let stop = Arc::new(AtomicBool::new(false));
        let pruner = {
            let (repo, stop) = (repo.clone(), stop.clone());
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let mut removed = 0;
                loop {
                    let run = repo.at(offset, ["prune", "--json"]).run();
                    assert_eq!(run.code, Some(0), "prune failed: {}", run.stderr);
                    let doc = run.json();
                    removed += doc["versions_removed"].as_u64().or(doc["versions_removed"].as_u64()).unwrap_or(0);
                    if stop.load(Ordering::Relaxed) {
                        return removed;
                    }
                }
            })
        };
        let doc = wait_ok(child, &format!("backup during prune (round {round}, prune started after {delay:?})"));
        if round == 0 {
            took = start.elapsed();
        }
        stop.store(true, Ordering::Relaxed);
        let removed = pruner.join().expect("prune loop");
        assert!(removed > 0, "prune removed the expired objects (round {round})");

        // The new snapshot is whole: it verifies and restores exactly.
        let id = doc["snapshot"].as_str().unwrap();
        let listed = repo.snapshots_at(offset);
        assert_eq!(listed.len(), 1, "only the new snapshot is live");
        assert_eq!(listed[0]["id"], id);
        repo.verify_at(offset, round + 1 == rounds);
        if round + 1 == rounds {
            let t = repo.sb.path("restore");
            repo.restore_at(offset, id, &t);
            assert_same_tree(&want, &manifest(&restored(&t, &src)), "the backup made during prune");
        }
    }
}
