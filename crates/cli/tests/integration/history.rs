//! A long history on S3 (issue 16, part history), on moto (one log line per request):
//! a backup lists only what it must (the config's and key files' versions once, at open),
//! and a structural `verify` lists `data/` once for the packs' locks and, on a second run,
//! reuses the compliance-mode lock observations it kept (no per-pack request) and the tree
//! packs it cached (no GET), while a tampered observation file or tree pack is refused and
//! repaired, and a governance-mode pack is read
//! from the store every time (`docs/cache.md`, "Lock observations").

use crate::s3_repo::S3Repo;
use crate::{Cmd, Sandbox};
use coffer_store::{ObjectStore as _, Role};
use coffer_testkit::s3::{S3Server, ServerKind};
use std::path::PathBuf;

pub(crate) const PREFIX: &str = "hosts/one";

/// The server's log lines of what `cmd` did, and its stdout.
pub(crate) fn logged(server: &S3Server, cmd: Cmd) -> (String, String) {
    let before = server.log().lines().count();
    let out = cmd.ok().stdout_text();
    let log: String = server.log().lines().skip(before).map(|l| format!("{l}\n")).collect();
    (log, out)
}

/// Requests in `log` whose request line contains all of `parts`.
pub(crate) fn count(log: &str, parts: &[&str]) -> usize {
    log.lines().filter(|l| parts.iter().all(|p| l.contains(p))).count()
}

/// The lock-observation file of the only repository in the cache under `home`.
pub(crate) fn locks_file(home: &std::path::Path) -> PathBuf {
    let v1 = home.join(".cache/coffer/v1");
    // `v1/open` holds the key hints, by location (docs/cache.md).
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&v1).unwrap().map(|e| e.unwrap().path()).filter(|p| !p.ends_with("open")).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap().join("locks")
}

pub(crate) fn history<'a>(server: &'a S3Server, bucket: &str, backups: usize) -> S3Repo<'a> {
    let r = S3Repo { sb: Sandbox::new(), server, url: server.url(bucket, PREFIX) };
    let src = r.sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    r.c(["init"]).ok();
    for i in 0..backups {
        std::fs::write(src.join(format!("f{}.txt", i % 2)), format!("backup {i}")).unwrap();
        r.c(["backup", "--json"]).arg(&src).ok();
    }
    r
}

/// Turns the lock of one pack (the first `data/` version listed) into a governance lock
/// ending `secs` from now, as the admin with the governance bypass: real S3 refuses this
/// for a compliance lock, moto allows it, which stands for any lock shorter than it should
/// be. Returns the pack's version and the lock's new end (Unix seconds).
pub(crate) fn shorten_a_pack_lock(server: &S3Server, bucket: &str, secs: i64) -> (coffer_store::ObjectVersion, i64) {
    let admin = server.store(bucket, PREFIX, Role::Admin);
    let page = admin.list_versions("data/", None, 1000).unwrap();
    let pack = page.items.iter().find(|v| !v.delete_marker).expect("a pack").clone();
    let until = coffer_store::Clock::system().now().as_second() + secs;
    let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
        .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Governance)
        .retain_until_date(aws_smithy_types::DateTime::from_secs(until))
        .build();
    let req = admin
        .client()
        .put_object_retention()
        .bucket(bucket)
        .key(admin.location().full_key(&pack.key))
        .version_id(&pack.version.0)
        .retention(retention)
        .bypass_governance_retention(true);
    admin.block_on(req.send()).unwrap();
    (pack, until)
}

#[test]
fn history_a_backup_lists_the_config_and_key_files_once() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-history");
    let r = history(&server, &bucket, 2);
    let src = r.sb.path("src");
    std::fs::write(src.join("f9.txt"), b"one more").unwrap();
    let (log, _) = logged(&server, r.c(["backup", "--json"]).arg(&src));
    let config = format!("prefix={PREFIX}/config ");
    let keys = format!("prefix={PREFIX}/keys/ ");
    let one_key = format!("prefix={PREFIX}/keys/");
    assert_eq!(count(&log, &["?versions", &config]), 1, "the config's versions, listed at open only:\n{log}");
    assert_eq!(count(&log, &["?versions", &keys]), 1, "the key files, listed at open only:\n{log}");
    assert_eq!(count(&log, &["?versions", &one_key]), 1, "no listing of one key file's versions:\n{log}");
    // index/ and snapshots/ are not listed: this host listed them less than a day ago, and
    // its catalog holds that listing and its own objects since (docs/cache.md).
    assert_eq!(count(&log, &["?versions"]), 2, "config and keys/ only:\n{log}");
    // The key file this host opened the repository with last is not read again (the key
    // hint in the cache): its key derivation ran while the listings did.
    assert_eq!(count(&log, &[&format!("/{PREFIX}/keys/"), "GetObject"]), 0, "{log}");
    // Their locks are still read (one HeadObject each) and the backup succeeds.
    assert_eq!(count(&log, &["\"HEAD ", &format!("/{PREFIX}/config?versionId=")]), 1, "{log}");
    assert_eq!(count(&log, &["\"HEAD ", &format!("/{PREFIX}/keys/")]), 1, "{log}");
    // A backup that lists (`--relist-after 0s`) lists index/ and snapshots/ too, once each.
    std::fs::write(src.join("f9.txt"), b"and one more").unwrap();
    let (log, _) = logged(&server, r.c(["backup", "--json", "--relist-after", "0s"]).arg(&src));
    assert_eq!(count(&log, &["?versions"]), 4, "config, keys/, index/, snapshots/:\n{log}");
    assert_eq!(count(&log, &["?versions", &format!("prefix={PREFIX}/index/ ")]), 1, "{log}");
    assert_eq!(count(&log, &["?versions", &format!("prefix={PREFIX}/snapshots/ ")]), 1, "{log}");
}

#[test]
fn history_a_second_verify_makes_no_per_pack_lock_request() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-history");
    let r = history(&server, &bucket, 4);
    let data_heads = |log: &str| count(log, &["\"HEAD ", &format!("/{PREFIX}/data/")]);
    let data_key_listings = |log: &str| count(log, &["?versions", &format!("prefix={PREFIX}/data/"), "/data/"]);
    let data_gets = |log: &str| count(log, &["\"GET ", &format!("/{PREFIX}/data/")]);
    let pack_lists = |log: &str| count(log, &["?versions", &format!("prefix={PREFIX}/data/ ")]);
    // The backups recorded their packs' locks (tests `observe_*`): without that file, a
    // verify reads each lock from the store.
    let file = locks_file(&r.sb.home());
    std::fs::remove_file(&file).unwrap();

    let (log, out) = logged(&server, r.c(["verify", "--json"]));
    let first: serde_json::Value = serde_json::from_str(&out).unwrap();
    let packs = first["packs_locked"].as_u64().unwrap() as usize;
    assert!(packs >= 4, "{first}");
    assert_eq!(data_heads(&log), packs, "a cold verify reads each pack's lock once:\n{log}");
    assert_eq!(pack_lists(&log), 1, "data/ listed once for the locks:\n{log}");
    assert_eq!(data_key_listings(&log), 1, "no listing of one pack's versions:\n{log}");
    assert!(std::fs::read_to_string(&file).unwrap().lines().count() >= packs + 2);

    let (log, out) = logged(&server, r.c(["verify", "--json"]));
    let second: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(data_heads(&log), 0, "the second verify reuses the compliance observations:\n{log}");
    assert_eq!(data_gets(&log), 0, "and reads no tree pack (cached):\n{log}");
    let trees = locks_file(&r.sb.home()).with_file_name("trees");
    let mut cached: Vec<PathBuf> = std::fs::read_dir(&trees).unwrap().map(|e| e.unwrap().path()).collect();
    cached.sort();
    assert!(cached.len() >= 4, "a tree pack per snapshot: {cached:?}");
    // A tampered tree pack is not used: read from the store again, and repaired.
    let mut bytes = std::fs::read(&cached[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&cached[0], &bytes).unwrap();
    let (log, out) = logged(&server, r.c(["verify", "--json"]));
    assert_eq!(data_gets(&log), 1, "the tampered tree pack, from the store:\n{log}");
    let third: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(third["problems"], serde_json::json!([]), "{third}");
    assert_ne!(std::fs::read(&cached[0]).unwrap(), bytes, "repaired");
    assert_eq!(second["packs_locked"], first["packs_locked"]);
    assert_eq!(second["problems"], serde_json::json!([]), "{second}");

    // A tampered observation (a lock end moved) is refused, every lock is read again, and
    // the file is rewritten: the next verify reuses it again.
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().nth(1).unwrap().to_owned();
    let (head, until) = line.rsplit_once(' ').unwrap();
    let moved = format!("{head} {}", until.parse::<i64>().unwrap() + 86_400 * 365);
    std::fs::write(&file, text.replace(&line, &moved)).unwrap();
    let (log, _) = logged(&server, r.c(["verify", "--json"]));
    assert_eq!(data_heads(&log), packs, "a tampered file is not used:\n{log}");
    let (log, _) = logged(&server, r.c(["verify", "--json"]));
    assert_eq!(data_heads(&log), 0, "and it was repaired:\n{log}");

    // --no-cache and --read-data read every lock from the store.
    let (log, _) = logged(&server, r.c(["--no-cache", "verify", "--json"]));
    assert_eq!(data_heads(&log), packs, "--no-cache:\n{log}");
    let (log, _) = logged(&server, r.c(["verify", "--json", "--read-data"]));
    assert_eq!(data_heads(&log), packs, "--read-data:\n{log}");
}

#[test]
fn history_a_governance_pack_is_checked_every_time() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-history");
    let r = history(&server, &bucket, 2);
    // One pack's lock turned into a short governance lock (moto lets the admin do it).
    let (pack, soon) = shorten_a_pack_lock(&server, &bucket, 2);
    while coffer_store::Clock::system().now().as_second() <= soon + 1 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The backups observed this pack under its compliance lock, which real S3 never lets
    // anyone shorten; moto let the admin do it. Without their observations (a verify from
    // another host), verify reads the lock from the store: this test is about that read.
    std::fs::remove_file(locks_file(&r.sb.home())).unwrap();
    let heads_of =
        |log: &str| count(log, &["\"HEAD ", &format!("/{}?versionId=", pack.key.rsplit('/').next().unwrap())]);
    for run in ["first", "second"] {
        let run_out = r.c(["verify", "--json"]).run();
        let log = server.log();
        let report: serde_json::Value = serde_json::from_str(&run_out.stdout_text()).unwrap();
        let problems = report["problems"].to_string();
        assert!(problems.contains(&pack.key), "{run} verify finds the unlocked pack: {report}");
        assert!(heads_of(&log) >= if run == "first" { 1 } else { 2 }, "{run}: its lock is read from the store");
    }
    let kept = std::fs::read_to_string(locks_file(&r.sb.home())).unwrap();
    assert!(!kept.contains(&pack.key), "no observation of a pack not under a compliance lock:\n{kept}");
}
