//! `coffer pg`: WAL archiving, base backups and point-in-time recovery, against a real
//! PostgreSQL 15 server (see `pg_util`).

use crate::Sandbox;
use crate::pg_util::{Cluster, PgEnv as _, PgSandbox, require_postgres};
use crate::repo_util::PASSWORD;
use std::path::Path;

/// A WAL segment's first page: a long page header naming `sysid`, then `fill`.
fn fake_segment(sysid: u64, fill: u8) -> Vec<u8> {
    fake_segment_sized(sysid, fill, 16 << 20)
}

/// [`fake_segment`] of a cluster whose WAL segments are `seg_size` bytes.
fn fake_segment_sized(sysid: u64, fill: u8, seg_size: u32) -> Vec<u8> {
    let mut d = vec![fill; 8192];
    d[..4].copy_from_slice(&[0x10, 0xd1, 0x06, 0x00]); // magic (PG 15), XLP_LONG_HEADER
    d[4..24].fill(0);
    d[24..32].copy_from_slice(&sysid.to_le_bytes());
    d[32..36].copy_from_slice(&seg_size.to_le_bytes());
    d[36..40].copy_from_slice(&8192u32.to_le_bytes());
    d
}

/// A repository with the default vault's roles, driven as root (no server needed).
fn repo() -> Sandbox {
    let sb = Sandbox::new();
    sb.coffer(["--repo"]).arg(sb.vault()).env("COFFER_PASSWORD", PASSWORD).arg("init").ok();
    sb
}

fn c(sb: &Sandbox, args: &[&str]) -> crate::Cmd {
    sb.coffer(["--repo"]).arg(sb.vault()).env("COFFER_PASSWORD", PASSWORD).args(args)
}

#[test]
fn wal_push_is_idempotent_never_overwrites_and_fetch_round_trips() {
    let sb = repo();
    std::fs::create_dir(sb.path("pg_wal")).unwrap();
    let seg = sb.path("pg_wal/000000010000000000000001");
    let data = fake_segment(7_000_001, 0xab);
    std::fs::write(&seg, &data).unwrap();
    let doc = c(&sb, &["pg", "wal-push", "--json"]).arg(&seg).ok().json();
    assert_eq!(doc["sysid"], "7000001", "the system id comes from the page header: {doc}");
    assert_eq!(doc["stored"], true);
    // Same content again: success, nothing written.
    let doc = c(&sb, &["pg", "wal-push", "--json"]).arg(&seg).ok().json();
    assert_eq!(doc["stored"], false);
    // Different content under the same name: refused, naming the segment.
    std::fs::write(&seg, fake_segment(7_000_001, 0xcd)).unwrap();
    let err = c(&sb, &["pg", "wal-push"]).arg(&seg).fails(1);
    assert!(err.contains("000000010000000000000001") && err.contains("different content"), "{err}");
    // One version only: nothing was overwritten.
    let key = "pg/7000001/wal/00000001/000000010000000000000001";
    let versions = sb.versions(key);
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0]["retention"]["mode"], "compliance", "locked: {:?}", versions[0]);

    // Fetch: the original bytes, written atomically.
    let out = sb.path("restored");
    c(&sb, &["pg", "wal-fetch", "--sysid", "7000001", "000000010000000000000001"]).arg(&out).ok();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // Absent: exit 1 without a message, so recovery ends normally.
    let run = c(&sb, &["pg", "wal-fetch", "--sysid", "7000001", "000000010000000000000002"]).arg(&out).run();
    assert_eq!((run.code, run.stderr.as_str()), (Some(1), ""));
    // A .history file (no page header): the system id comes from --sysid.
    let hist = sb.path("pg_wal/00000002.history");
    std::fs::write(&hist, b"1\t0/3000000\tno recovery target specified\n").unwrap();
    c(&sb, &["pg", "wal-push", "--sysid", "7000001"]).arg(&hist).ok();
    c(&sb, &["pg", "wal-fetch", "--sysid", "7000001", "00000002.history"]).arg(sb.path("h")).ok();
    assert_eq!(std::fs::read(sb.path("h")).unwrap(), std::fs::read(&hist).unwrap());

    // A gap: segment 3 archived, 2 missing. info reports it; fetching 2 says so.
    let seg3 = sb.path("pg_wal/000000010000000000000003");
    std::fs::write(&seg3, fake_segment(7_000_001, 3)).unwrap();
    c(&sb, &["pg", "wal-push"]).arg(&seg3).ok();
    let info = c(&sb, &["pg", "info", "--json"]).ok().json();
    let cl = &info["clusters"][0];
    assert_eq!(cl["sysid"], "7000001");
    assert_eq!(cl["gaps"], serde_json::json!(["000000010000000000000002"]), "{info}");
    let run = c(&sb, &["pg", "wal-fetch", "--sysid", "7000001", "000000010000000000000002"]).arg(&out).run();
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("000000010000000000000002 is missing"), "{}", run.stderr);

    // Locked: the writer cannot remove a version, nor can the pruner before it expires.
    let v = versions[0]["version"].as_str().unwrap().to_owned();
    let err = sb.v(["rm", key, "--version", &v]).fails(3);
    assert!(err.contains("may not delete-version"), "{err}");
    let err = sb.v(["--role", "pruner", "rm", key, "--version", &v]).fails(4);
    assert!(err.contains("is locked"), "{err}");
    // Prune (now) keeps it: prune knows the pg/ namespace and its locks.
    c(&sb, &["prune"]).ok();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(sb.versions(key).len(), 1);
}

/// Rows of `t`, as "count:ids".
fn rows(c: &Cluster) -> String {
    c.sql("select count(*) || ':' || coalesce(string_agg(id::text, ',' order by id), '') from t")
}

#[test]
fn archive_base_backup_and_restore_to_a_time_and_to_the_latest_as_root() {
    require_postgres();
    let started = std::time::Instant::now();
    let sb = PgSandbox::new();
    let pg = sb.cluster("main");
    pg.sql("create table t (id int primary key, v text)");
    pg.sql("insert into t select g, md5(g::text) from generate_series(1, 3) g");
    let doc = pg.env(sb.c(["pg", "backup", "--json", "--cluster", "main"])).ok().json();
    assert!(doc["start_lsn"].is_string() && doc["stop_lsn"].is_string(), "{doc}");

    // Batch A, then the target time, then batch B at least a second later.
    for i in 4..=10 {
        pg.sql(&format!("insert into t values ({i}, 'a')"));
    }
    let target = pg.sql(r#"select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#);
    let expect_a = rows(&pg);
    let lsn_a = pg.sql("select pg_current_wal_lsn()");
    pg.sql("select pg_create_restore_point('after_a')");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for i in 11..=15 {
        pg.sql(&format!("insert into t values ({i}, 'b')"));
    }
    let expect_b = rows(&pg);
    pg.switch_and_archive();
    // A second base backup stores little: unchanged files dedup against the first.
    let second = pg.env(sb.c(["pg", "backup", "--json"])).ok().json();
    let (total, added) = (second["bytes"].as_u64().unwrap(), second["bytes_added"].as_u64().unwrap());
    assert!(added * 2 < total, "second base backup added {added} of {total} bytes");
    let info = sb.c(["pg", "info", "--json"]).ok().json();
    assert_eq!(info["clusters"][0]["gaps"], serde_json::json!([]), "{info}");
    assert_eq!(info["clusters"][0]["base_backups"].as_array().map(Vec::len), Some(2), "{info}");
    assert_eq!(info["clusters"][0]["name"], "main", "{info}");
    // The window ends at the last commit found in the archived WAL (the inserts above; the
    // base backup's own segments hold none): not earlier than the first base backup's end.
    let w = &info["clusters"][0]["recovery_window"];
    let (from, to) = (w["from_time"].as_str().unwrap_or_default(), w["to_time"].as_str().unwrap_or_default());
    assert!(to.len() >= 20 && to.ends_with('Z') && to > from, "{info}");
    let text = sb.c(["pg", "info", "--cluster", "main"]).ok().stdout_text();
    assert!(text.contains("(main)"), "{text}");
    assert!(text.contains(&format!("to {to} (the last commit, in ")), "{text}");
    let err = sb.c(["pg", "info", "--cluster", "other"]).fails(1);
    assert!(err.contains("no base backup of a cluster named \"other\""), "{err}");
    let verify = sb.c(["verify", "--read-data"]).ok().stdout_text();
    assert!(verify.contains("no problems found"), "{verify}");

    // To the time: exactly batch A.
    let out = sb.c(["pg", "restore", "--time", &target, "--target"]).arg(sb.path("r1")).ok().stdout_text();
    assert!(!out.contains(crate::pg_util::PASSWORD), "the password is not printed: {out}");
    let conf = std::fs::read_to_string(sb.path("r1/postgresql.auto.conf")).unwrap();
    assert!(!conf.contains(crate::pg_util::PASSWORD), "the password is not in the settings: {conf}");
    // restore_command opens the repository with a copy of its key (no key derivation per
    // WAL file), which lies beside the data directory, not in it (a base backup of the
    // restored server would carry it), and holds neither the password nor anything else.
    assert!(!sb.path("r1/coffer.password").exists() && !sb.path("r1/coffer.key").exists());
    let copy = std::fs::metadata(sb.path("r1.coffer-key")).expect("key copy beside r1");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&copy.permissions()) & 0o777, 0o600);
    let key = std::fs::read_to_string(sb.path("r1.coffer-key")).unwrap();
    assert!(!key.contains(crate::pg_util::PASSWORD));
    assert!(conf.contains("--key-file") && conf.contains("r1.coffer-key"), "{conf}");
    assert!(!conf.contains("--password-file"), "{conf}");
    assert!(Path::new(&sb.path("r1/recovery.signal")).exists());
    // restore_command logs in with a copy of the credentials `pg restore` used (here the
    // vault's reader.toml), beside the key copy, mode 0600 …
    let creds = sb.path("r1.coffer-key.credentials");
    let meta = std::fs::metadata(&creds).expect("credentials copy beside the key copy");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
    assert!(conf.contains("--credentials") && conf.contains("r1.coffer-key.credentials"), "{conf}");
    // … so recovery works once the vault's reader.toml is gone, as the README's
    // separation-of-duties advice has it.
    let reader = sb.sb.vault().join("credentials/reader.toml");
    let moved = sb.path("reader.toml.away");
    std::fs::rename(&reader, &moved).unwrap();
    {
        let mut r1 = sb.start(sb.path("r1"));
        r1.wait_promoted();
        assert_eq!(rows(&r1), expect_a, "restored to {target}: {}", r1.log());
    }
    std::fs::rename(&moved, &reader).unwrap();
    // To the LSN and to the restore point: batch A too.
    for (dir, goal) in [
        ("r-lsn", ["--lsn", lsn_a.as_str(), "--cluster", "main"]),
        ("r-name", ["--name", "after_a", "--cluster", "main"]),
    ] {
        sb.c(["pg", "restore", "--target"]).arg(sb.path(dir)).args(goal).ok();
        let mut r = sb.start(sb.path(dir));
        r.wait_promoted();
        assert_eq!(rows(&r), expect_a, "restored to {goal:?}: {}", r.log());
    }
    // Latest: everything archived. The restored server then archives on timeline 2 …
    sb.c(["pg", "restore", "--latest", "--target"]).arg(sb.path("r2")).ok();
    sb.enable_archiving(&sb.path("r2"));
    let (target2, expect_c) = {
        let mut r2 = sb.start(sb.path("r2"));
        r2.wait_promoted();
        assert_eq!(rows(&r2), expect_b, "{}", r2.log());
        assert_eq!(r2.sql("select timeline_id from pg_control_checkpoint()"), "2");
        r2.sql("insert into t values (100, 'tl2')");
        let target2 =
            r2.sql(r#"select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#);
        let expect_c = rows(&r2);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        r2.sql("insert into t values (101, 'tl2 later')");
        r2.switch_and_archive();
        (target2, expect_c)
    };
    // … and a restore to a time on timeline 2 follows the history file there.
    sb.c(["pg", "restore", "--time", &target2, "--target"]).arg(sb.path("r-tl2")).ok();
    {
        let mut r = sb.start(sb.path("r-tl2"));
        r.wait_promoted();
        assert_eq!(rows(&r), expect_c, "restored to {target2} on timeline 2: {}", r.log());
        assert_eq!(r.sql("select timeline_id from pg_control_checkpoint()"), "3");
    }
    let info = sb.c(["pg", "info", "--json"]).ok().json();
    assert!(
        info["clusters"][0]["history_files"].as_array().is_some_and(|h| h.iter().any(|f| f == "00000002.history")),
        "{info}"
    );
    // A segment lost on the way (archive_command "succeeded" without storing it): info
    // reports the gap, and a restore past it fails naming the segment.
    // (After a switch the current LSN is a segment boundary, which pg_walfile_name names
    // as the previous segment: write first.)
    pg.sql("insert into t values (16, 'lost')");
    let lost = pg.sql("select pg_walfile_name(pg_current_wal_lsn())");
    std::fs::write(sb.path(&format!("lose-{lost}")), b"").unwrap();
    pg.switch_and_archive();
    pg.sql("insert into t values (17, 'after')");
    pg.switch_and_archive();
    let info = sb.c(["pg", "info", "--json"]).ok().json();
    assert_eq!(info["clusters"][0]["gaps"], serde_json::json!([lost]), "{info}");
    // `info` plans `--latest` as `restore` does: along timeline 2, which does not read it.
    let latest = &info["clusters"][0]["latest_restore"];
    assert_eq!(latest["timelines"].as_array().and_then(|t| t.last()), Some(&serde_json::json!(2)), "{info}");
    assert!(latest["missing_segment"].is_null(), "{info}");
    let text = sb.c(["pg", "info"]).ok().stdout_text();
    assert!(text.contains(&format!("GAP: WAL segment {lost} is missing")), "{text}");
    let verify = sb.c(["verify", "--read-data"]).run();
    assert_eq!(verify.code, Some(6), "verify fails on a gap: {}", verify.stderr);
    assert!(verify.stdout_text().contains(&format!("WAL segment {lost} of cluster")), "{}", verify.stdout_text());
    // The gap is on timeline 1 after timeline 2 branched off: --latest follows timeline 2
    // and does not read it …
    sb.c(["pg", "restore", "--latest", "--target"]).arg(sb.path("r3")).ok();
    {
        let mut r = sb.start(sb.path("r3"));
        r.wait_promoted();
        assert!(rows(&r).ends_with(",100,101"), "the end of timeline 2: {}", rows(&r));
    }
    // … but the latest state of timeline 1 lies past it.
    let err = sb.c(["pg", "restore", "--latest", "--timeline", "1", "--target"]).arg(sb.path("r3-tl1")).fails(1);
    assert!(err.contains(&lost) && err.contains("missing"), "{err}");

    // --start: starts the server on the restore and returns once it has been promoted.
    let dir = sb.path("r-start");
    sb.c(["pg", "restore", "--start", "--time", &target, "--target"]).arg(&dir).ok();
    let psql = |sql: &str| sb.psql_at(&dir, sql);
    assert_eq!(psql("select pg_is_in_recovery()"), "f");
    assert_eq!(psql("select count(*) || ':' || string_agg(id::text, ',' order by id) from t"), expect_a);
    sb.stop_immediate(&dir);
    // To a time past the gap on timeline 1 (the latest timeline is 2, which has no gap):
    // recovery stops short of the target, and --start says why, naming the segment.
    let now = pg.sql(r#"select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#);
    let err = sb
        .c(["pg", "restore", "--start", "--timeline", "1", "--time", &now, "--target"])
        .arg(sb.path("r-past"))
        .fails(1);
    assert!(err.contains(&lost) && err.contains("recovery ended before configured recovery target"), "{err}");
    eprintln!("pg PITR scenario took {:.1?}", started.elapsed());
}

#[test]
fn wal_fetch_prefetches_the_next_segments_and_verifies_them_like_fetched_ones() {
    let sb = repo();
    std::fs::create_dir(sb.path("pg_wal")).unwrap();
    let name = |s: u64| format!("0000000100000000{s:08X}");
    // archive_command may use an exported key instead of the password (no key
    // derivation per segment): no password in its environment at all.
    let key = sb.path("repo.key");
    c(&sb, &["pg", "export-key"]).arg(&key).ok();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let err = c(&sb, &["pg", "export-key"]).arg(&key).fails(1);
    assert!(err.contains("cannot create"), "never overwritten: {err}");
    // A key file other users can read is refused before it is used.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let seg0 = sb.path("pg_wal/x");
    std::fs::write(&seg0, fake_segment(7_000_002, 1)).unwrap();
    let err =
        sb.coffer(["--repo"]).arg(sb.vault()).args(["pg", "wal-push", "--key-file"]).arg(&key).arg(&seg0).fails(1);
    assert!(err.contains("accessible to other users (mode 0644)"), "{err}");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut data = Vec::new();
    for s in 1..=6 {
        let seg = sb.path(&format!("pg_wal/{}", name(s)));
        data.push(fake_segment(7_000_002, s as u8));
        std::fs::write(&seg, &data[s as usize - 1]).unwrap();
        sb.coffer(["--repo"]).arg(sb.vault()).args(["pg", "wal-push", "--key-file"]).arg(&key).arg(&seg).ok();
    }
    // backup, restore and info take the key file too (no password anywhere here).
    let info = sb.coffer(["--repo"]).arg(sb.vault()).args(["pg", "info", "--json", "--key-file"]).arg(&key).ok();
    let info = info.stdout_text();
    assert!(info.contains("7000002") && info.contains(&name(6)), "{info}");
    std::fs::create_dir(sb.path("restore")).unwrap();
    let dest = sb.path("restore/RECOVERYXLOG");
    let spool = sb.path("restore/coffer-prefetch/7000002");
    let fetch = |s: u64| {
        let doc = c(&sb, &["pg", "wal-fetch", "--json", "--sysid", "7000002", "--prefetch", "3", &name(s)])
            .arg(&dest)
            .ok()
            .json();
        assert_eq!(std::fs::read(&dest).unwrap(), data[s as usize - 1], "segment {s}");
        doc
    };
    // The spool's finished files (`NAME.TAG`) by segment name, with their paths.
    let entries = || {
        let mut v: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&spool)
            .map(|d| {
                d.filter_map(|e| {
                    let e = e.unwrap();
                    let f = e.file_name().into_string().unwrap();
                    let (n, tag) = f.split_once('.')?;
                    (!n.is_empty() && tag.len() == 64).then(|| (n.to_owned(), e.path()))
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let spooled = || entries().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    let path_of = |s: u64| entries().into_iter().find(|(n, _)| *n == name(s)).unwrap().1;
    // The worker runs detached: wait (without timing anything) until the spool holds what
    // it should and nothing is being written.
    let wait_spooled = |want: &[u64]| {
        let want: Vec<String> = want.iter().map(|s| name(*s)).collect();
        let deadline = std::time::Instant::now() + coffer_testkit::WAIT;
        loop {
            // (Not there yet: the worker has not started.)
            let writing = std::fs::read_dir(&spool)
                .map_or(true, |mut d| d.any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
            if spooled() == want && !writing {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "spool {:?}, wanted {want:?}", spooled());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // The first fetch reads the repository and starts a worker that spools the next three
    // segments, decompressed (as pg_wal will hold them) under a keyed hash of name and bytes.
    let doc = fetch(1);
    assert_eq!((doc["from"].as_str(), doc["prefetching"].as_bool()), (Some("repository"), Some(true)), "{doc}");
    wait_spooled(&[2, 3, 4]);
    assert_eq!(std::fs::read(path_of(2)).unwrap(), data[1]);
    // The next one is served from the spool; two remain ahead (no new worker).
    let doc = fetch(2);
    assert_eq!((doc["from"].as_str(), doc["prefetching"].as_bool()), (Some("prefetch"), Some(false)), "{doc}");
    assert_eq!(spooled(), [name(3), name(4)]);
    // A spooled file that does not authenticate is discarded and fetched again: one
    // tampered with, and one filed under another segment's name.
    let p3 = path_of(3);
    let mut bad = std::fs::read(&p3).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&p3, &bad).unwrap();
    let run = c(&sb, &["pg", "wal-fetch", "--json", "--sysid", "7000002", "--prefetch", "3", &name(3)]).arg(&dest).ok();
    assert_eq!(run.json()["from"], "repository");
    assert!(run.stderr.contains("discarding a prefetched file"), "{}", run.stderr);
    assert_eq!(std::fs::read(&dest).unwrap(), data[2]);
    // Refilled (one ahead was fewer than half of three): 4 stays, 5 and 6 are fetched.
    wait_spooled(&[4, 5, 6]);
    let p5 = path_of(5);
    std::fs::remove_file(path_of(4)).unwrap();
    let tag5 = p5.file_name().unwrap().to_string_lossy().split_once('.').unwrap().1.to_owned();
    std::fs::copy(&p5, spool.join(format!("{}.{tag5}", name(4)))).unwrap();
    let run = c(&sb, &["pg", "wal-fetch", "--json", "--sysid", "7000002", "--prefetch", "3", &name(4)]).arg(&dest).ok();
    assert_eq!(run.json()["from"], "repository", "a file under another name is not served");
    assert!(run.stderr.contains("discarding a prefetched file"), "{}", run.stderr);
    assert_eq!(std::fs::read(&dest).unwrap(), data[3]);
    // Another timeline's name: never served from this timeline's copy.
    let tl2 = format!("00000002{}", &name(5)[8..]);
    std::fs::copy(&p5, spool.join(format!("{tl2}.{tag5}"))).unwrap();
    let run =
        c(&sb, &["pg", "wal-fetch", "--sysid", "7000002", "--prefetch", "3", &tl2]).arg(sb.path("restore/TL2")).run();
    assert_eq!(run.code, Some(1), "not archived on timeline 2: {}", run.stderr);
    assert!(!sb.path("restore/TL2").exists());
    // A key file that holds no key (or another repository's) is an error, not "absent".
    std::fs::write(sb.path("bad.key"), "{\"secret\": 1}").unwrap();
    std::fs::set_permissions(sb.path("bad.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let run = c(&sb, &["pg", "wal-fetch", "--sysid", "7000002", "--key-file"])
        .arg(sb.path("bad.key"))
        .args([&name(6)])
        .arg(sb.path("restore/X"))
        .run();
    assert_eq!(run.code, Some(126), "{}", run.stderr);
    assert!(
        run.stderr.contains("does not hold a coffer repository key") && !run.stderr.contains("secret"),
        "{}",
        run.stderr
    );
    // The end of the archive: the spool is removed.
    assert!(!sb.path("restore/coffer-prefetch").exists(), "{:?}", spooled());
}

#[test]
fn pg_stream_drain_opens_the_repository_with_a_key_file_and_no_password() {
    let sb = repo();
    let key = sb.path("repo.key");
    c(&sb, &["pg", "export-key"]).arg(&key).ok();
    let spool = sb.path("spool");
    std::fs::create_dir(&spool).unwrap();
    let data = fake_segment(7_000_005, 5);
    std::fs::write(spool.join("000000010000000000000001"), &data).unwrap();
    // No password anywhere: only the key file opens the repository.
    let doc = sb
        .coffer(["--repo"])
        .arg(sb.vault())
        .args(["pg", "stream", "--drain", "--json", "--sysid", "7000005", "--key-file"])
        .arg(&key)
        .arg("--spool")
        .arg(&spool)
        .ok()
        .json();
    assert_eq!(doc["stored"], 1, "{doc}");
    let out = sb.path("fetched");
    c(&sb, &["pg", "wal-fetch", "--sysid", "7000005", "000000010000000000000001"]).arg(&out).ok();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // The key file must be private, as for the other pg commands.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let err = sb
        .coffer(["--repo"])
        .arg(sb.vault())
        .args(["pg", "stream", "--drain", "--sysid", "7000005", "--key-file"])
        .arg(&key)
        .arg("--spool")
        .arg(&spool)
        .fails(1);
    assert!(err.contains("accessible to other users (mode 0644)"), "{err}");
}

/// wal-fetch's prefetch names the following segments by the cluster's segment size (from
/// the fetched segment's long page header), not by PostgreSQL's default 16 MiB: with
/// 1 MiB segments a logical WAL file holds 4096 of them (names up to …00000FFF), with
/// 64 MiB 64 (…0000003F, then …0000000100000000).
#[test]
fn pg_wal_fetch_prefetches_segments_of_the_clusters_own_size() {
    for (seg_size, names) in [
        (1u32 << 20, ["0000000100000000000000FF", "000000010000000000000100", "000000010000000000000101"]),
        (64 << 20, ["00000001000000000000003F", "000000010000000100000000", "000000010000000100000001"]),
    ] {
        let sb = repo();
        std::fs::create_dir(sb.path("pg_wal")).unwrap();
        let data: Vec<Vec<u8>> = (0..3).map(|i| fake_segment_sized(7_000_003, i as u8 + 1, seg_size)).collect();
        for (n, d) in names.iter().zip(&data) {
            let seg = sb.path(&format!("pg_wal/{n}"));
            std::fs::write(&seg, d).unwrap();
            c(&sb, &["pg", "wal-push"]).arg(&seg).ok();
        }
        std::fs::create_dir(sb.path("restore")).unwrap();
        let dest = sb.path("restore/RECOVERYXLOG");
        let fetch = |n: &str| {
            c(&sb, &["pg", "wal-fetch", "--json", "--sysid", "7000003", "--prefetch", "2", n]).arg(&dest).ok().json()
        };
        let doc = fetch(names[0]);
        assert_eq!((doc["from"].as_str(), doc["prefetching"].as_bool()), (Some("repository"), Some(true)), "{doc}");
        // The detached worker spools the next two segments by their real names.
        let spool = sb.path("restore/coffer-prefetch/7000003");
        let deadline = std::time::Instant::now() + coffer_testkit::WAIT;
        loop {
            let mut have: Vec<String> = std::fs::read_dir(&spool)
                .map(|d| {
                    d.filter_map(|e| {
                        let f = e.unwrap().file_name().into_string().unwrap();
                        let (n, tag) = f.split_once('.')?;
                        (!n.is_empty() && tag.len() == 64).then(|| n.to_owned())
                    })
                    .collect()
                })
                .unwrap_or_default();
            have.sort();
            if have == names[1..] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} MiB segments: spool {have:?}, wanted {:?}",
                seg_size >> 20,
                &names[1..]
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for (n, d) in names[1..].iter().zip(&data[1..]) {
            let doc = fetch(n);
            assert_eq!(doc["from"], "prefetch", "{} MiB segments, {n}: {doc}", seg_size >> 20);
            assert_eq!(&std::fs::read(&dest).unwrap(), d);
        }
    }
}

/// A cluster with 1 MiB WAL segments (`initdb --wal-segsize=1`), its WAL starting just
/// before the end of the first 4 GiB logical WAL file (…00000FFD; the next names are
/// …0000000100000000…): archiving, a base backup, wal-fetch's prefetch across that
/// boundary and a point-in-time restore all work with the cluster's own segment size.
#[test]
fn pg_one_mib_wal_segments_archive_back_up_prefetch_and_recover_to_a_time_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let pg = sb.cluster_with("small", &["--wal-segsize=1"], Some("000000010000000000000FFD"));
    assert_eq!(pg.sql("show wal_segment_size"), "1MB");
    pg.sql("create table t (id int primary key); create table u (i int)");
    pg.env(sb.c(["pg", "backup"])).ok();
    pg.sql("insert into t select generate_series(1, 100)");
    // (A segment switch needs WAL written since the last one.)
    for i in 0..4 {
        pg.sql(&format!("insert into u values ({i})"));
        pg.switch_and_archive();
    }
    let target = pg.sql(r#"select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#);
    std::thread::sleep(std::time::Duration::from_millis(20));
    pg.sql("insert into t select generate_series(101, 200)");
    pg.switch_and_archive();
    let info = sb.c(["pg", "info", "--json"]).ok().json();
    let cl = &info["clusters"][0];
    assert_eq!(cl["gaps"], serde_json::json!([]), "{info}");
    assert!(cl["last_segment"].as_str().is_some_and(|s| s > "000000010000000100000001"), "{info}");
    let sysid = cl["sysid"].as_str().unwrap().to_owned();

    // wal-fetch prefetches the segments after …00000FFF by their 1 MiB names.
    let fetch_dir = sb.path("fetch");
    std::fs::create_dir(&fetch_dir).unwrap();
    let st = std::process::Command::new("chown").arg("postgres:postgres").arg(&fetch_dir).status().unwrap();
    assert!(st.success());
    let dest = fetch_dir.join("RECOVERYXLOG");
    let fetch =
        |n: &str| sb.c(["pg", "wal-fetch", "--json", "--sysid", &sysid, "--prefetch", "2", n]).arg(&dest).ok().json();
    let doc = fetch("000000010000000000000FFF");
    assert_eq!(doc["prefetching"], true, "{doc}");
    let next = ["000000010000000100000000", "000000010000000100000001"];
    let spool = fetch_dir.join(format!("coffer-prefetch/{sysid}"));
    let deadline = std::time::Instant::now() + coffer_testkit::WAIT;
    loop {
        let mut have: Vec<String> = std::fs::read_dir(&spool)
            .map(|d| {
                d.filter_map(|e| {
                    let f = e.unwrap().file_name().into_string().unwrap();
                    let (n, tag) = f.split_once('.')?;
                    (!n.is_empty() && tag.len() == 64).then(|| n.to_owned())
                })
                .collect()
            })
            .unwrap_or_default();
        have.sort();
        if have == next {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "spool {have:?}, wanted {next:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(fetch(next[0])["from"], "prefetch");

    // Point-in-time recovery across the boundary: exactly the first 100 rows.
    let dir = sb.path("r-small");
    sb.c(["pg", "restore", "--time", &target, "--start", "--target"]).arg(&dir).ok();
    assert_eq!(sb.psql_at(&dir, "select count(*) || ':' || max(id) from t"), "100:100");
    sb.stop_immediate(&dir);
}
