//! SIGTERM (as systemd sends, or SIGINT from Ctrl-C) cancels a running `coffer backup` or
//! `coffer restore`: it exits 130 with one line `coffer: cancelled: …`, a backup commits no
//! snapshot, and the next backup reuses what the cancelled one had stored.

use crate::repo_util::{Repo, random_bytes};
use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// 2,000 files of 100 KiB of incompressible data (about 200 MiB, a dozen packs): enough that
/// a backup and a restore still run when the signal comes.
fn tree(src: &Path) -> u64 {
    let mut total = 0;
    for d in 0..20u64 {
        let dir = src.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100u64 {
            let data = random_bytes(100 << 10, d * 1000 + f + 1);
            total += data.len() as u64;
            fs::write(dir.join(format!("f{f:03}")), data).unwrap();
        }
    }
    total
}

/// Names in the vault's staging directory, where each object is written before it is
/// renamed into place.
fn staging(vault: &Path) -> HashSet<std::ffi::OsString> {
    match fs::read_dir(vault.join("tmp")) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
        Err(_) => HashSet::new(),
    }
}

/// Polls until `ready()` (or the child ended, or [`coffer_testkit::WAIT`] passed: a loaded
/// machine can take minutes to store a few packs), then sends SIGTERM. Returns whether the
/// signal was sent to a running child.
fn sigterm_when(child: &mut Child, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < coffer_testkit::WAIT {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if ready() {
            let pid = rustix::process::Pid::from_child(child);
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    false
}

/// Waits for the child; returns its exit code and stderr.
fn finish(child: Child) -> (Option<i32>, String, Vec<u8>) {
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap(), out.stdout)
}

fn assert_cancelled(code: Option<i32>, stderr: &str, stdout: &[u8], what: &str) {
    assert_eq!(code, Some(130), "{what}: expected exit 130; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr:?}");
    assert!(stderr.starts_with(&format!("coffer: cancelled: {what} stopped on request")), "{stderr:?}");
    assert!(stdout.is_empty(), "{what}: nothing acknowledged on stdout: {:?}", String::from_utf8_lossy(stdout));
}

#[test]
fn sigterm_cancels_a_backup_that_commits_nothing_and_a_restore_that_says_so() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    let total = tree(&src);
    let vault = repo.vault();

    // SIGTERM once a few objects (packs) are stored.
    let spawn = |args: &[&std::ffi::OsStr]| -> Child {
        let mut cmd = repo.c(args).cmd;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn coffer")
    };
    let mut child = spawn(&["backup".as_ref(), "--json".as_ref(), src.as_os_str()]);
    let before = staging(&vault);
    let mut seen = HashSet::new();
    let sent = sigterm_when(&mut child, || {
        let now = staging(&vault);
        seen.extend(now.difference(&before).cloned());
        seen.iter().filter(|n| !now.contains(*n)).count() >= 3
    });
    let (code, stderr, stdout) = finish(child);
    assert!(sent, "the backup ended before the signal: exit {code:?}, {stderr}");
    assert_cancelled(code, &stderr, &stdout, "backup");
    assert!(stderr.contains("no snapshot was written"), "{stderr}");
    assert!(repo.snapshots_at(0).is_empty(), "a cancelled backup commits no snapshot");
    let keys: Vec<String> = repo.versions().iter().map(|v| v["key"].as_str().unwrap().to_owned()).collect();
    assert!(keys.iter().any(|k| k.starts_with("data/")), "packs were stored before the signal: {keys:?}");

    // The next backup completes and stores only what the cancelled one had not.
    let doc = repo.backup(&[&src], &[]);
    let added = doc["summary"]["bytes_added"].as_u64().unwrap();
    assert!(added < total, "the cancelled backup's data is reused: {added} of {total} bytes added");
    assert_eq!(repo.snapshots_at(0).len(), 1);
    repo.verify_at(0, false);

    // A restore: SIGTERM once it has started writing into the target.
    let target = repo.sb.path("out");
    let mut child = spawn(&["restore".as_ref(), "latest".as_ref(), "--target".as_ref(), target.as_os_str()]);
    let sent = sigterm_when(&mut child, || fs::read_dir(&target).is_ok_and(|mut rd| rd.next().is_some()));
    let (code, stderr, stdout) = finish(child);
    assert!(sent, "the restore ended before the signal: exit {code:?}, {stderr}");
    assert_cancelled(code, &stderr, &stdout, "restore");
    assert!(stderr.contains("partial restore"), "{stderr}");
}
