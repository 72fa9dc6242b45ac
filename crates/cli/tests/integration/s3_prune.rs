//! Retention over S3 through the `coffer` binary on LocalStack: a backup that reuses data
//! extends the reused packs' locks (read back with raw `HeadObject`s), and `coffer prune`
//! after expiry removes exactly the expired versions, after which the repository verifies
//! and the live snapshot restores byte-exact.
//!
//! **Ageing the server.** No S3 server here can move its clock, so expiry is made real on
//! the server instead of pretended: Coffer's clock is moved with `COFFER_TEST_CLOCK_OFFSET`
//! (to a time T), and the test, as the bucket's admin, rewrites (governance bypass) the
//! retain-until of exactly the versions whose lock has ended by T to a moment seconds ahead
//! of the real clock, then waits that moment out. Those versions have then really expired
//! on the server, while every other version is still locked there — so the server itself
//! refuses any wrong delete (checked with a raw delete), and `S3Store`, which reads the real
//! clock for its own lock checks, agrees with it. Shortening a retention needs governance
//! mode, so this repository is initialised with `--mode governance`; the repository's
//! decisions (what expired, what a live snapshot needs) are the same in either mode.

use crate::Sandbox;
use crate::repo_util::{assert_same_tree, manifest, random_bytes, restored};
use crate::s3_repo::S3Repo;
use coffer_store::{Clock, ObjectStore as _, Role};
use coffer_testkit::s3::{S3Server, ServerKind};
use jiff::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const PREFIX: &str = "hosts/one";

/// (key, version id) → retain-until, of every version in the repository.
type Versions = BTreeMap<(String, String), Option<Timestamp>>;

fn versions(server: &S3Server, bucket: &str) -> Versions {
    let auditor = server.store(bucket, PREFIX, Role::Auditor);
    let mut out = Versions::new();
    let mut token = None;
    loop {
        let page = auditor.list_versions("", token.as_deref(), 1000).expect("list versions");
        for v in page.items {
            out.insert((v.key, v.version.0), v.retention.map(|r| r.until));
        }
        match page.next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

fn new_since(before: &Versions, after: &Versions) -> BTreeSet<(String, String)> {
    after.keys().filter(|k| !before.contains_key(*k)).cloned().collect()
}

/// A number from a JSON report, whichever case convention its field names use.
fn num(doc: &Value, field: &str) -> u64 {
    doc.get(field)
        .or_else(|| doc.get(field.replace('-', "_")))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {field} in {doc}"))
}

fn write_tree(root: &Path, files: &[(&str, usize, u64)]) {
    std::fs::create_dir_all(root).unwrap();
    for &(name, len, seed) in files {
        std::fs::write(root.join(name), random_bytes(len, seed)).unwrap();
    }
}

fn now() -> Timestamp {
    Clock::system().now()
}

/// Mode and retain-until of one version, read with a raw `HeadObject` (not through `S3Store`).
fn raw_lock(server: &S3Server, bucket: &str, key: &str, version: &str) -> (String, Timestamp) {
    let s = server.store(bucket, PREFIX, Role::Auditor);
    let full = s.location().full_key(key);
    let out = s
        .block_on(s.client().head_object().bucket(bucket).key(&full).version_id(version).send())
        .unwrap_or_else(|e| panic!("HeadObject {full} {version}: {e:?}"));
    let mode = out.object_lock_mode().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let until = out.object_lock_retain_until_date().expect("a retain-until date");
    (mode, Timestamp::from_second(until.secs()).unwrap())
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock (COFFER_TEST_CLOCK_OFFSET): needs a debug build")]
fn reuse_extends_locks_and_prune_removes_exactly_the_expired_versions_on_localstack() {
    let server = S3Server::start(ServerKind::LocalStack);
    let bucket = server.new_bucket("coffer-prune");
    let r = S3Repo { sb: Sandbox::new(), server: &server, url: server.url(&bucket, PREFIX) };
    let (x, y, z) = (r.sb.path("x"), r.sb.path("y"), r.sb.path("z"));
    // x and z share common.bin; y shares nothing.
    write_tree(&x, &[("common.bin", 1 << 20, 1), ("x.bin", 512 << 10, 2)]);
    write_tree(&y, &[("y.bin", 1 << 20, 3)]);
    write_tree(&z, &[("common.bin", 1 << 20, 1), ("z.bin", 512 << 10, 4)]);

    r.c(["init", "--mode", "governance"]).ok();
    let k0 = versions(&server, &bucket);
    let backup = |src: &Path, retain: &str| r.c(["backup", "--json", "--retain", retain]).arg(src).ok().json();
    let s1 = backup(&x, "1d");
    let k1 = versions(&server, &bucket);
    let s2 = backup(&y, "1d");
    let k2 = versions(&server, &bucket);
    let want_z = manifest(&z);
    let s3 = backup(&z, "10d");
    let k3 = versions(&server, &bucket);
    let (by_s1, by_s2, by_s3) = (new_since(&k0, &k1), new_since(&k1, &k2), new_since(&k2, &k3));

    // Lock extension on reuse: z reuses common.bin from s1's pack, locked for 1 day; its
    // backup extended exactly the reused packs to its own lock date, as the server reports.
    let s3_until = crate::ts(&s3["retain_until"]);
    let extended: Vec<_> = by_s1
        .iter()
        .filter(|(k, _)| k.starts_with("data/"))
        .filter(|(k, v)| {
            let (mode, until) = raw_lock(&server, &bucket, k, v);
            assert_eq!(mode, "GOVERNANCE", "{k} {v}");
            let before = k1[&(k.clone(), v.clone())].expect("locked");
            assert!(until == before || until == s3_until, "{k} {v}: {before} -> {until}, s3 locks to {s3_until}");
            until != before
        })
        .collect();
    assert!(!extended.is_empty(), "no pack of s1 was extended: {s3}");
    assert_eq!(num(&s3["summary"], "locks_extended"), extended.len() as u64, "{s3}");
    assert!(num(&s3["summary"], "bytes_added") < (1 << 20), "common.bin was not stored again: {s3}");

    // Before expiry prune (as the pruner, with its own keys) removes nothing.
    let prune = |offset: i64| {
        let run = r.as_role(Role::Pruner, ["prune", "--json"]).env("COFFER_TEST_CLOCK_OFFSET", offset.to_string()).ok();
        assert!(run.stderr.is_empty(), "prune warned: {}", run.stderr);
        run.json()
    };
    assert_eq!(num(&prune(0), "versions_removed"), 0);
    assert_eq!(versions(&server, &bucket), k3);

    // Move Coffer's clock past the locks of s1 and s2 (not s3's) and age the server to match.
    let lock_end = [&s1, &s2].iter().map(|s| crate::ts(&s["retain_until"])).max().unwrap();
    let offset = lock_end.duration_since(now()).as_secs() + 3600;
    let moved = now() + jiff::SignedDuration::from_secs(offset);
    assert!(moved < crate::ts(&s3["expires"]), "s3 is still live then");
    let aged: BTreeSet<_> = k3.iter().filter(|(_, u)| u.is_some_and(|u| u <= moved)).map(|(k, _)| k.clone()).collect();
    assert!(!aged.is_empty());
    let admin = server.store(&bucket, PREFIX, Role::Admin);
    let soon = Timestamp::from_second(now().as_second() + 3).unwrap();
    for (key, version) in &aged {
        let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
            .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Governance)
            .retain_until_date(aws_smithy_types::DateTime::from_secs(soon.as_second()))
            .build();
        let req = admin
            .client()
            .put_object_retention()
            .bucket(&bucket)
            .key(admin.location().full_key(key))
            .version_id(version)
            .retention(retention)
            .bypass_governance_retention(true);
        admin.block_on(req.send()).unwrap_or_else(|e| panic!("age {key} {version}: {e:?}"));
    }
    while now() <= soon + jiff::SignedDuration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The server itself refuses to delete a version still locked (here: one of s3's).
    let pruner = server.store(&bucket, PREFIX, Role::Pruner);
    let (locked_key, locked_version) = by_s3.iter().find(|(k, _)| k.starts_with("data/")).expect("s3 wrote a pack");
    let refused = pruner.block_on(
        pruner
            .client()
            .delete_object()
            .bucket(&bucket)
            .key(pruner.location().full_key(locked_key))
            .version_id(locked_version)
            .send(),
    );
    assert!(refused.is_err(), "the server deleted a locked version of {locked_key}");

    // Prune at the moved time removes exactly the aged versions.
    let dry = r
        .as_role(Role::Pruner, ["prune", "--dry-run", "--json"])
        .env("COFFER_TEST_CLOCK_OFFSET", offset.to_string())
        .ok()
        .json();
    assert!(versions(&server, &bucket).keys().eq(k3.keys()), "a dry run removes nothing");
    let rep = prune(offset);
    assert_eq!(num(&rep, "versions_removed"), num(&dry, "versions_removed"), "{dry} vs {rep}");
    let k4 = versions(&server, &bucket);
    let removed: BTreeSet<_> = k3.keys().filter(|k| !k4.contains_key(*k)).cloned().collect();
    assert_eq!(removed, aged, "prune removes exactly the expired versions");
    assert!(k4.keys().all(|k| k3.contains_key(k)), "prune adds nothing");
    assert!(by_s2.is_subset(&removed), "s2's objects: {by_s2:?}, removed {removed:?}");
    for ns in ["snapshots/", "index/"] {
        assert!(by_s1.iter().filter(|(k, _)| k.starts_with(ns)).all(|kv| removed.contains(kv)), "{removed:?}");
    }
    assert!(extended.iter().all(|kv| k4.contains_key(*kv)), "the extended packs stay: {removed:?}");
    assert!(removed.is_disjoint(&by_s3), "nothing s3 wrote goes: {removed:?}");
    assert!(k0.keys().all(|kv| !removed.contains(kv)), "config and keys stay: {removed:?}");
    assert_eq!(num(&rep, "snapshots_removed"), 2, "{rep}");
    assert_eq!(num(&rep, "versions_removed"), removed.len() as u64, "{rep}");
    assert_eq!(num(&prune(offset), "versions_removed"), 0, "nothing more to do");

    // What is left is whole: only s3 is listed, every byte verifies, and it restores exactly.
    let at = |args: &[&str]| r.c(args).env("COFFER_TEST_CLOCK_OFFSET", offset.to_string());
    let snaps = at(&["snapshots", "--json"]).ok().json();
    let ids: Vec<&Value> = snaps.as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(ids, vec![&s3["snapshot"]], "{snaps}");
    let verify = at(&["verify", "--json", "--read-data"]).ok().json();
    assert_eq!(verify["problems"], serde_json::json!([]), "verify: {verify}");
    let target = r.sb.path("restore");
    at(&["restore", "--json", "latest", "--target"]).arg(&target).ok();
    assert_same_tree(&want_z, &manifest(&restored(&target, &z)), "the live snapshot after prune");
}
