//! Prune with the clock moved: nothing goes before its lock ends; then exactly the objects
//! only expired snapshots needed go, and data a live snapshot shares stays (its backup
//! extended the lock).

use crate::repo_util::{DAY, Repo, assert_same_tree, manifest, random_bytes, restored};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// A number from a JSON report, whichever case convention its field names use.
fn num(doc: &Value, field: &str) -> u64 {
    doc.get(field)
        .or_else(|| doc.get(field.replace('-', "_")))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {field} in {doc}"))
}

/// Seconds from the backup's start (`time`) to `field` of a backup's JSON document (`expires`
/// or `retain-until`), rounded up.
fn secs_until(backup: &Value, field: &str) -> i64 {
    let snap_time = backup_time(backup);
    let t = crate::ts(&backup[field]);
    let d = t.duration_since(snap_time);
    d.as_secs() + i64::from(d.subsec_nanos() > 0)
}

/// The store clock when the backup started (added by [`backup`]).
fn backup_time(backup: &Value) -> jiff::Timestamp {
    crate::ts(&backup["time"])
}

/// Every (key, version) in the vault.
fn versions(repo: &Repo) -> BTreeSet<(String, String)> {
    repo.versions()
        .iter()
        .map(|v| (v["key"].as_str().unwrap().to_owned(), v["version"].as_str().unwrap().to_owned()))
        .collect()
}

fn write_tree(root: &Path, files: &[(&str, usize, u64)]) {
    fs::create_dir_all(root).unwrap();
    for &(name, len, seed) in files {
        fs::write(root.join(name), random_bytes(len, seed)).unwrap();
    }
}

/// Backs up and adds the snapshot's `time` to the document (from `snapshots --json`).
fn backup(repo: &Repo, offset: i64, path: &Path, retain: &str) -> Value {
    let mut doc = repo.backup_at(offset, &[path], &["--retain", retain]);
    let id = doc["snapshot"].as_str().unwrap().to_owned();
    let snaps = repo.snapshots_at(offset);
    let s = snaps.iter().find(|s| s["id"] == id.as_str()).expect("the new snapshot is listed");
    doc["time"] = s["snapshot"]["time"].clone();
    doc
}

fn prune(repo: &Repo, offset: i64) -> Value {
    let run = repo.at(offset, ["prune", "--json"]).ok();
    assert!(run.stderr.is_empty(), "prune warned: {}", run.stderr);
    run.json()
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock (COFFER_TEST_CLOCK_OFFSET): needs a debug build")]
fn prune_removes_exactly_what_only_expired_snapshots_needed() {
    let repo = Repo::init();
    let (x, y, z) = (repo.sb.path("x"), repo.sb.path("y"), repo.sb.path("z"));
    // x and z share common.bin; y shares nothing.
    write_tree(&x, &[("common.bin", 1 << 20, 1), ("x.bin", 512 << 10, 2)]);
    write_tree(&y, &[("y.bin", 1 << 20, 3)]);
    write_tree(&z, &[("common.bin", 1 << 20, 1), ("z.bin", 512 << 10, 4)]);

    let k0 = versions(&repo);
    let s1 = backup(&repo, 0, &x, "1d");
    let k1 = versions(&repo);
    let s2 = backup(&repo, 0, &y, "1d");
    let k2 = versions(&repo);
    let want_z = manifest(&z);
    let s3 = backup(&repo, 0, &z, "10d");
    let k3 = versions(&repo);
    // z reuses common.bin from x's pack, locked for 1 day: its backup extended the lock.
    assert!(num(&s3["summary"], "locks_extended") > 0, "{s3}");
    assert!(num(&s3["summary"], "files_read") == 2 && num(&s3["summary"], "bytes_added") < (1 << 20), "{s3}");

    let new = |a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>| -> BTreeSet<(String, String)> {
        b.difference(a).cloned().collect()
    };
    let (by_s1, by_s2, by_s3) = (new(&k0, &k1), new(&k1, &k2), new(&k2, &k3));
    let ns = |set: &BTreeSet<(String, String)>, prefix: &str| set.iter().filter(|(k, _)| k.starts_with(prefix)).count();
    for set in [&by_s1, &by_s2] {
        assert_eq!((ns(set, "snapshots/"), ns(set, "index/")), (1, 1), "{set:?}");
        assert!(ns(set, "data/") >= 1, "{set:?}");
    }

    // Before expiry, and after expiry while the locks hold, prune removes nothing.
    let expired_locked = secs_until(&s1, "expires").max(secs_until(&s2, "expires")) + 3600;
    let lock_end = secs_until(&s1, "retain_until").max(secs_until(&s2, "retain_until"));
    assert!(lock_end > expired_locked, "the margin keeps expired data a while: {s1}");
    for offset in [0, expired_locked] {
        let rep = prune(&repo, offset);
        assert_eq!(num(&rep, "versions_removed"), 0, "at +{offset}s: {rep}");
        assert_eq!(versions(&repo), k3);
    }
    // Expired snapshots are no longer listed, though their objects are still there.
    let listed: Vec<Value> = repo.snapshots_at(expired_locked).iter().map(|s| s["id"].clone()).collect();
    assert_eq!(listed, vec![s3["snapshot"].clone()]);

    // Past the locks of s1 and s2 (but not s3's), prune removes what only they needed.
    let after = lock_end + 3600;
    assert!(after < secs_until(&s3, "expires"), "s3 is still live then");
    let dry = repo.at(after, ["prune", "--dry-run", "--json"]).ok().json();
    assert_eq!(versions(&repo), k3, "a dry run removes nothing");
    let rep = prune(&repo, after);
    assert_eq!(num(&rep, "versions_removed"), num(&dry, "versions_removed"), "{dry} vs {rep}");
    let k4 = versions(&repo);
    let removed: BTreeSet<_> = k3.difference(&k4).cloned().collect();
    assert!(k4.is_subset(&k3));

    // Everything s2 wrote went (nothing of it is shared); of s1's objects its snapshot and
    // index went, while its pack holding common.bin stays; nothing of s3's and no
    // config or key went.
    assert!(by_s2.is_subset(&removed), "s2's objects: {by_s2:?}, removed {removed:?}");
    let s1_snap_index: BTreeSet<_> =
        by_s1.iter().filter(|(k, _)| k.starts_with("snapshots/") || k.starts_with("index/")).cloned().collect();
    assert!(s1_snap_index.is_subset(&removed), "{removed:?}");
    let s1_packs_kept = by_s1.iter().filter(|kv| kv.0.starts_with("data/") && k4.contains(*kv)).count();
    assert!(s1_packs_kept >= 1, "the pack with common.bin stays: {removed:?}");
    assert!(removed.is_disjoint(&by_s3), "nothing s3 wrote goes: {removed:?}");
    assert!(removed.is_disjoint(&k0), "config and keys stay: {removed:?}");
    let removed_in = |p: &str| removed.iter().filter(|(k, _)| k.starts_with(p)).count() as u64;
    assert_eq!(num(&rep, "snapshots_removed"), 2, "{rep}");
    assert_eq!(num(&rep, "snapshots_removed"), removed_in("snapshots/"));
    assert_eq!(num(&rep, "packs_removed"), removed_in("data/"), "{rep}");
    assert_eq!(num(&rep, "versions_removed"), removed.len() as u64, "{rep}");
    assert!(num(&rep, "bytes_freed") >= 1 << 20, "y.bin's pack is gone: {rep}");
    // Every object that stays is still locked past the live snapshot's expiry.
    let s3_expires = crate::ts(&s3["expires"]);
    for v in repo.versions() {
        let until = crate::ts(&v["retention"]["until"]);
        assert!(until >= s3_expires, "{v}");
    }

    // Again: nothing more to do.
    assert_eq!(num(&prune(&repo, after), "versions_removed"), 0);

    // What is left is whole: s3 lists, verifies every byte, and restores exactly.
    let snaps = repo.snapshots_at(after);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], s3["snapshot"]);
    repo.verify_at(after, true);
    let t = repo.sb.path("restore");
    repo.restore_at(after, "latest", &t);
    assert_same_tree(&want_z, &manifest(&restored(&t, &z)), "the live snapshot after prune");

    // Once s3 has expired and its locks ended, everything but config and keys can go.
    let end = secs_until(&s3, "retain_until") + 3600;
    let rep = prune(&repo, end);
    assert_eq!(num(&rep, "snapshots_removed"), 1, "{rep}");
    let left: BTreeSet<String> = versions(&repo).into_iter().map(|(k, _)| k).collect();
    assert!(left.iter().all(|k| k == "config" || k.starts_with("keys/")), "{left:?}");
    assert!(repo.snapshots_at(end).is_empty());
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock (COFFER_TEST_CLOCK_OFFSET): needs a debug build")]
fn a_backup_reusing_data_after_the_clock_moved_extends_its_locks() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    write_tree(&src, &[("a.bin", 1 << 20, 10), ("b.bin", 512 << 10, 11)]);
    let first = backup(&repo, 0, &src, "10d");
    assert_eq!(num(&first["summary"], "locks_extended"), 0, "nothing to extend in a new repository: {first}");

    // Five days later, another 10-day snapshot of the same (unchanged) files: nothing is
    // read, everything is reused, and the reused packs' locks are extended to cover it.
    let later = 5 * DAY;
    fs::write(src.join("c.txt"), b"new").unwrap();
    let want = manifest(&src);
    let second = backup(&repo, later, &src, "10d");
    assert_eq!(num(&second["summary"], "files_read"), 1, "only the new file is read: {second}");
    assert!(num(&second["summary"], "locks_extended") > 0, "{second}");

    // When the first snapshot's lock ends, prune removes it but none of the shared data.
    let after = secs_until(&first, "retain_until") + 3600;
    let rep = prune(&repo, after);
    assert_eq!(num(&rep, "snapshots_removed"), 1, "{rep}");
    let snaps = repo.snapshots_at(after);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], second["snapshot"]);
    repo.verify_at(after, true);
    let t = repo.sb.path("restore");
    repo.restore_at(after, "latest", &t);
    assert_same_tree(&want, &manifest(&restored(&t, &src)), "the second snapshot after the first was pruned");
}
