//! A stolen writer key must neither stop a PostgreSQL restore nor aim it (issue 11), on the
//! local vault, with a real PostgreSQL 15 cluster and the real `coffer` binary.
//!
//! A cluster archives into the repository (`archive_command = coffer pg wal-push`), one base
//! backup is taken, rows are committed in two phases (A, then B) with the point in time T0
//! between them, their WAL is archived, and T1 is taken after. Then the attacker, holding
//! what the backup host holds (the writer's credentials and the password):
//!
//! - puts garbage versions of `config`, of the pg-base snapshot object and of the WAL
//!   segment the base backup starts in (a segment every restore needs);
//! - puts a **well-sealed** second version of the finished segment holding the commits of
//!   phases A and B, sealed through the library with the repository key, whose content is a
//!   valid-looking copy of that segment cut after its first page: replayed, it would end
//!   recovery before those commits — the rows would silently be missing (`--latest`) or the
//!   recovery would fail (a time target);
//! - adds delete markers on every key but the packs (`data/`), every `pg/` WAL key included.
//!
//! The honest server then goes on committing (phase C) and archiving: the attack stops
//! neither `wal-push` nor the restores. With the reader's credentials only (no pruner has
//! cleaned anything up):
//!
//! - `pg info` shows the cluster, its base backup and its archived WAL without a gap; as of
//!   T1 its last segment is the forged one's name;
//! - `pg wal-fetch` (what `restore_command` runs) serves the first, authentic version of the
//!   forged segment, byte for byte;
//! - `pg restore --start` recovers exactly the rows committed up to the target: `--time T1`
//!   the base backup's rows, A and B; `--latest` those and C (the first, authentic version
//!   of each WAL file is replayed, the forged one never — taking the latest version instead
//!   fails the first with "recovery ended before configured recovery target was reached"
//!   and silently restores the base backup's rows alone for the second);
//! - as of T1, `pg restore --time T0` recovers exactly the base backup's rows and A, and
//!   `pg restore --latest` those and B (its `restore_command` carries `--as-of T1`, where
//!   phase C does not exist). `--time T1` as of T1 fails, saying why: no commit after T1
//!   exists as of T1, so PostgreSQL cannot tell it reached the target, and it refuses to
//!   promote short of it;
//! - `verify` names the forged WAL version (`extra-version`), the garbage versions
//!   (`extra-version` for `config`, `content-mismatch` for the snapshot and the WAL
//!   segment) and every delete marker, exit code 8; `--as-of T1 verify` is clean.
//!
//! The attack goes through the library as root (the test's user); the vault's files are
//! then handed back to `postgres`, who runs every `coffer` command (see `pg_util`).

use crate::pg_util::{PASSWORD, PgEnv as _, PgSandbox, require_postgres};
use coffer_repository::Repository;
use coffer_repository::pack::{ObjectKind, seal_bytes};
use coffer_store::{Clock, LocalVault, ObjectStore, PutOptions, Role};
use jiff::Timestamp;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// Keeps the store's version times and the points in time apart.
fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(1500));
}

/// The vault logged in as `role`.
fn login(vault: &Path, role: Role) -> Arc<dyn ObjectStore> {
    let v = LocalVault::open(vault).expect("open the vault");
    let creds = v.read_credentials(role).unwrap_or_else(|e| panic!("{role} credentials: {e}"));
    Arc::new(v.login(&creds).unwrap_or_else(|e| panic!("log in as {role}: {e}")))
}

/// Every key of the repository (whatever its latest version is).
fn keys(vault: &Path) -> BTreeSet<String> {
    let store = login(vault, Role::Auditor);
    let (mut out, mut token) = (BTreeSet::new(), None::<String>);
    loop {
        let page = store.list_version_entries("", token.as_deref(), 1000).expect("list versions");
        out.extend(page.items.into_iter().map(|e| e.key));
        match page.next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

/// `select count(*), md5 of the rows` — what a restore must hold.
const STATE: &str = "select count(*) || ' ' || md5(string_agg(id || ':' || v, ',' order by id)) from t";

#[test]
fn a_rogue_writer_cannot_stop_or_aim_a_postgres_restore_on_the_local_vault_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let pg = sb.cluster("main");
    let sysid: u64 = pg.sql("select system_identifier from pg_control_system()").parse().unwrap();
    pg.sql("create table t (id int primary key, v text); insert into t select g, 'base ' || g from generate_series(1, 100) g");
    let base = pg.env(sb.c(["pg", "backup", "--json"])).ok().json();
    let snapshot = base["snapshot"].as_str().unwrap_or_else(|| panic!("pg backup --json: {base}")).to_owned();

    // Phase A, T0, phase B: all in one segment (the base backup ended the one before).
    pg.sql("insert into t select g, 'phase A ' || g from generate_series(101, 200) g");
    let after_a = pg.sql(STATE);
    // Phase A's commit lies past the first page of its segment (the forgery cuts it out).
    let seg_a = pg.sql(
        "select pg_walfile_name(pg_current_wal_lsn()) || ' ' || ((pg_current_wal_lsn() - '0/0') % 16777216 > 8192)",
    );
    pause();
    let t0 = Clock::system().now();
    pause();
    pg.sql("insert into t select g, 'phase B ' || g from generate_series(201, 300) g");
    let after_b = pg.sql(STATE);
    let victim = pg.sql("select pg_walfile_name(pg_current_wal_lsn())");
    assert_eq!(seg_a, format!("{victim} true"), "phases A and B in one segment, A past its first page");
    pg.switch_and_archive();
    pause();
    let t1 = Clock::system().now();
    pause();

    // The attack, as the writer.
    let vault = sb.sb.vault();
    let before = keys(&vault);
    let writer = login(&vault, Role::Writer);
    let put = |key: &str, data: &[u8]| {
        writer.put(key, data, &PutOptions::default()).unwrap_or_else(|e| panic!("put {key}: {e}"));
    };
    let repo = Repository::open(writer.clone(), &vault.display().to_string(), "", PASSWORD.as_bytes(), Clock::system())
        .expect("the attacker opens the repository with the password");
    let wal_key = |name: &str| repo.wal_key(sysid, name);
    let forged_key = wal_key(&victim);
    assert!(before.contains(&forged_key), "{forged_key} not archived: {before:?}");
    // The segment the base backup starts in: named by its `.backup` history file.
    let backup_file = before
        .iter()
        .find(|k| k.ends_with(".backup"))
        .unwrap_or_else(|| panic!("no .backup file archived: {before:?}"));
    let start_seg = backup_file.rsplit('/').next().unwrap()[..24].to_owned();
    let garbled_wal = wal_key(&start_seg);
    assert_ne!(garbled_wal, forged_key);
    let snapshot_key = format!("snapshots/{snapshot}");
    assert!(before.contains(&snapshot_key), "{snapshot_key} not stored: {before:?}");
    let garbage = b"not what this name says".to_vec();
    for k in ["config", snapshot_key.as_str(), garbled_wal.as_str()] {
        put(k, &garbage);
    }
    // The dangerous one: a valid-looking copy of the segment, cut after its first page (the
    // commits of phases A and B gone), sealed with the repository key for exactly its name.
    let original = repo.get_wal(sysid, &victim).unwrap().expect("the victim segment is archived");
    let mut cut = original.clone();
    cut[8192..].fill(0);
    put(&forged_key, &seal_bytes(repo.key(), ObjectKind::PgWal, &victim, &cut));
    assert!(before.iter().any(|k| k.starts_with("pg/")));
    let marked: Vec<&String> = before.iter().filter(|k| !k.starts_with("data/")).collect();
    // Delete markers are the admin's since the writer lost `delete` (least privilege); the
    // reads must hold whoever adds them.
    let admin = login(&vault, Role::Admin);
    for k in &marked {
        admin.delete(k).unwrap_or_else(|e| panic!("delete marker on {k}: {e}"));
    }
    drop(repo);
    // The attack ran as root: the vault goes back to `postgres`, who runs every command.
    let st = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&vault).status().expect("chown");
    assert!(st.success());

    // The honest server goes on: phase C, after T1, archived after the attack.
    pg.sql("insert into t select g, 'phase C ' || g from generate_series(301, 400) g");
    let after_c = pg.sql(STATE);
    pg.switch_and_archive();

    // With the reader's credentials only.
    let reader = |args: &[&str]| sb.c(["--role", "reader"]).args(args);
    let info = reader(&["pg", "info", "--json"]).ok().json();
    let clusters = info["clusters"].as_array().expect("clusters");
    assert_eq!(clusters.len(), 1, "{info}");
    let c = &clusters[0];
    assert_eq!(c["sysid"], sysid.to_string(), "{info}");
    assert_eq!(c["base_backups"].as_array().map(Vec::len), Some(1), "{info}");
    assert_eq!(c["base_backups"][0]["snapshot"], snapshot.as_str(), "{info}");
    assert_eq!(c["gaps"], serde_json::json!([]), "{info}");
    let past = reader(&["--as-of", &t1.to_string(), "pg", "info", "--json"]).ok().json();
    assert_eq!(past["clusters"][0]["last_segment"], victim.as_str(), "{past}");

    // restore_command's own read: the first, authentic version of the segment.
    let fetched = sb.path("fetched");
    reader(&["pg", "wal-fetch", "--prefetch", "0", "--sysid", &sysid.to_string(), &victim]).arg(&fetched).ok();
    assert!(std::fs::read(&fetched).unwrap() == original, "wal-fetch served another version of {victim}");

    let restore = |name: &str, as_of: Option<Timestamp>, goal: &[&str]| -> String {
        let dir = sb.path(name);
        let mut args = vec!["--role".to_owned(), "reader".to_owned()];
        if let Some(t) = as_of {
            args.extend(["--as-of".to_owned(), t.to_string()]);
        }
        args.extend(["pg", "restore", "--start", "--start-timeout", "3m"].map(str::to_owned));
        args.extend(goal.iter().map(|s| (*s).to_owned()));
        sb.c(&args).arg("--target").arg(&dir).ok();
        let got = sb.psql_at(&dir, STATE);
        sb.stop_immediate(&dir);
        got
    };
    let (t0s, t1s) = (t0.to_string(), t1.to_string());
    // Aimed: the forged segment would end recovery early and promote without A, B and C.
    assert_eq!(restore("r-latest", None, &["--latest"]), after_c, "restore --latest after the attack");
    assert_eq!(restore("r-t1", None, &["--time", &t1s]), after_b, "restore --time T1 after the attack");
    assert_eq!(restore("r-asof-t0", Some(t1), &["--time", &t0s]), after_a, "restore --as-of T1 --time T0");
    assert_eq!(restore("r-asof-latest", Some(t1), &["--latest"]), after_b, "restore --as-of T1 --latest");
    // As of T1 nothing after T1 exists: recovery to T1 cannot know it got there, and the
    // restore says so rather than promote short of it.
    let short = sb
        .c(["--role", "reader", "--as-of", &t1s, "pg", "restore", "--start", "--start-timeout", "3m", "--time", &t1s])
        .arg("--target")
        .arg(sb.path("r-asof-t1"))
        .run();
    assert_ne!(short.code, Some(0), "restore --as-of T1 --time T1 promoted");
    assert!(short.stderr.contains("recovery ended before configured recovery target was reached"), "{}", short.stderr);

    // verify names the forged version, the garbage versions and every delete marker.
    let run = reader(&["verify", "--json"]).run();
    assert_eq!(run.code, Some(8), "verify after the attack: {}", run.stderr);
    let doc = run.json();
    let findings = doc["findings"].as_array().expect("findings").clone();
    let has = |kind: &str, key: &str| findings.iter().any(|f| f["kind"] == kind && f["key"] == key);
    assert!(has("extra-version", &forged_key), "forged WAL version of {forged_key} not reported: {doc}");
    assert!(has("extra-version", "config"), "garbage config version not reported: {doc}");
    assert!(has("content-mismatch", &snapshot_key), "garbage snapshot version not reported: {doc}");
    assert!(has("content-mismatch", &garbled_wal), "garbage WAL version not reported: {doc}");
    for k in &marked {
        assert!(has("delete-marker", k), "delete marker on {k} not reported: {doc}");
    }
    let text = reader(&["verify"]).run();
    assert_eq!(text.code, Some(8));
    assert!(text.stdout_text().contains(&format!("security: extra-version {forged_key}")), "{}", text.stdout_text());
    // The forged version is the only authentic one passed over.
    let extra: Vec<_> = findings.iter().filter(|f| f["kind"] == "extra-version").collect();
    assert_eq!(extra.len(), 2, "{doc}");

    // As of T1 the repository is as it was: clean.
    let past = reader(&["--as-of", &t1s, "verify", "--json"]).ok().json();
    assert_eq!(past["problems"], serde_json::json!([]), "{past}");
    assert_eq!(past["findings"], serde_json::json!([]), "{past}");
}
