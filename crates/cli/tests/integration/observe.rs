//! Backups record what the first `verify` after them would otherwise fetch (issue 16, part
//! observe), on moto (one log line per request): the bytes of each tree pack they write go
//! into the host's `trees/` cache, and each pack's lock as the store reported it (the put
//! reads every version back anyway: no request of its own) into the authenticated `locks`
//! file when it is compliance mode. So
//! the first structural `verify` after many backups of this host makes no request per pack,
//! and reports what `--no-cache` reports. A governance-mode repository, a forged `locks`
//! file and backups with `--no-cache` leave verify reading every lock from the store
//! (`docs/cache.md`, "Lock observations").

use crate::history::{PREFIX, count, history, locks_file, logged, shorten_a_pack_lock};
use crate::s3_repo::S3Repo;
use crate::{Cmd, Sandbox};
use coffer_testkit::s3::{S3Server, ServerKind};

/// `HeadObject`s of packs in `log`.
fn data_heads(log: &str) -> usize {
    count(log, &["\"HEAD ", &format!("/{PREFIX}/data/")])
}

/// `GetObject`s of packs in `log`.
fn data_gets(log: &str) -> usize {
    count(log, &["\"GET ", &format!("/{PREFIX}/data/")])
}

/// Packs stored in `log` (`PutObject`, not a lock extension).
fn data_puts(log: &str) -> usize {
    let data = format!("/{PREFIX}/data/");
    log.lines().filter(|l| l.contains("\"PUT ") && l.contains(&data) && !l.contains("retention")).count()
}

/// `verify --json` with `args` before it, its report and the requests it made.
fn verify(server: &S3Server, r: &S3Repo<'_>, global: &[&str]) -> (serde_json::Value, String) {
    let (log, out) = logged(server, r.c(global.iter().copied().chain(["verify", "--json"])));
    (serde_json::from_str(&out).unwrap(), log)
}

/// A repository made with `init INIT…`, then `n` backups, each with `global` flags.
fn backups<'a>(server: &'a S3Server, bucket: &str, init: &[&str], global: &[&str], n: usize) -> S3Repo<'a> {
    let r = S3Repo { sb: Sandbox::new(), server, url: server.url(bucket, PREFIX) };
    let src = r.sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    r.c(["init"].iter().chain(init)).ok();
    for i in 0..n {
        std::fs::write(src.join(format!("f{}.txt", i % 2)), format!("backup {i}")).unwrap();
        let cmd: Cmd = r.c(global.iter().copied().chain(["backup", "--json"])).arg(&src);
        cmd.ok();
    }
    r
}

#[test]
fn observe_a_first_verify_after_backups_makes_no_per_pack_request() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-observe");
    let r = history(&server, &bucket, 4);
    let src = r.sb.path("src");

    // Recording costs a backup no request: the one HeadObject per pack is the put's own
    // read-back (size, checksum, lock), as before.
    std::fs::write(src.join("f0.txt"), b"one more").unwrap();
    let (log, _) = logged(&server, r.c(["backup", "--json"]).arg(&src));
    assert_eq!(data_puts(&log), 2, "a data pack and a tree pack:\n{log}");
    assert_eq!(data_heads(&log), 2, "the puts' own read-backs, nothing more:\n{log}");
    assert_eq!(data_gets(&log), 0, "{log}");

    // The first verify after the backups: no request per pack.
    let (first, log) = verify(&server, &r, &[]);
    let packs = first["packs_locked"].as_u64().unwrap() as usize;
    assert!(packs >= 10, "a data and a tree pack per backup: {first}");
    assert_eq!(data_heads(&log), 0, "the backups' observations stand in for every lock read:\n{log}");
    assert_eq!(data_gets(&log), 0, "and their cached tree packs for every tree pack read:\n{log}");
    assert_eq!(first["problems"], serde_json::json!([]), "{first}");

    // The same report as a verify that reads everything from the store.
    let (cold, log) = verify(&server, &r, &["--no-cache"]);
    assert_eq!(data_heads(&log), packs, "--no-cache reads every lock:\n{log}");
    assert!(data_gets(&log) >= 5, "and every tree pack:\n{log}");
    assert_eq!(cold, first);
}

#[test]
fn observe_a_governance_repository_records_no_lock() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-observe");
    let r = backups(&server, &bucket, &["--mode", "governance"], &[], 3);
    // Governance locks can be shortened (with the bypass permission): never recorded.
    let file = locks_file(&r.sb.home());
    let kept = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(!kept.contains("/data/"), "no observation of a governance-mode pack:\n{kept}");
    let (report, log) = verify(&server, &r, &[]);
    let packs = report["packs_locked"].as_u64().unwrap() as usize;
    assert!(packs >= 6, "{report}");
    assert_eq!(data_heads(&log), packs, "every lock read from the store:\n{log}");
    assert_eq!(data_gets(&log), 0, "tree packs are cached whatever the lock mode:\n{log}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
}

#[test]
fn observe_a_backup_with_no_cache_records_nothing() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-observe");
    let r = backups(&server, &bucket, &[], &["--no-cache"], 3);
    assert!(!r.sb.home().join(".cache/coffer").exists(), "no cache written");
    let src = r.sb.path("src");
    std::fs::write(src.join("f0.txt"), b"one more").unwrap();
    let (log, _) = logged(&server, r.c(["--no-cache", "backup", "--json"]).arg(&src));
    assert_eq!(data_puts(&log), 2, "{log}");
    assert_eq!(data_heads(&log), 2, "the puts' own read-backs, as with a cache:\n{log}");
    // The first verify with a cache reads every lock and every tree pack from the store.
    let (report, log) = verify(&server, &r, &[]);
    let packs = report["packs_locked"].as_u64().unwrap() as usize;
    assert_eq!(data_heads(&log), packs, "{log}");
    assert!(data_gets(&log) >= 4, "a tree pack per backup:\n{log}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
}

/// Whoever controls the host but not the repository key rewrites the `locks` file to cover
/// a pack whose lock is too short: the file does not authenticate, verify reads every lock
/// from the store and reports the pack.
#[test]
fn observe_a_forged_locks_file_does_not_hide_a_short_lock() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-observe");
    let r = history(&server, &bucket, 2);
    // One pack's lock made short (a day).
    let (pack, _) = shorten_a_pack_lock(&server, &bucket, 86_400);

    // The backups' file, every line pushed out a year, its MAC made with another key.
    let file = locks_file(&r.sb.home());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&pack.key), "the backup observed the pack:\n{text}");
    let mut body = String::new();
    for line in text.lines().filter(|l| !l.starts_with("mac ")) {
        match line.rsplit_once(' ').and_then(|(h, u)| Some((h, u.parse::<i64>().ok()?))) {
            Some((head, until)) => body.push_str(&format!("{head} {}\n", until + 86_400 * 365)),
            None => body.push_str(&format!("{line}\n")),
        }
    }
    let mac = blake3::keyed_hash(&[7; 32], body.as_bytes());
    std::fs::write(&file, format!("{body}mac {}\n", mac.to_hex())).unwrap();

    let run = r.c(["verify", "--json"]).run();
    let report: serde_json::Value = serde_json::from_str(&run.stdout_text()).unwrap();
    let packs = report["packs_locked"].as_u64().unwrap() as usize;
    assert!(report["problems"].to_string().contains(&pack.key), "the short lock is found: {report}");
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(!kept.contains(&pack.key), "and not kept:\n{kept}");
    assert!(packs >= 4, "{report}");
}
