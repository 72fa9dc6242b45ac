//! The jobs against real components: a real local vault and repository (made with the
//! libraries, no `coffer` binary), and a real PostgreSQL 15 server (`coffer_testkit::pg`),
//! each job run through `run_job` as the daemon runs it, checked through its record and the
//! repository itself.

use coffer_operations::config::Config;
use coffer_operations::event::{JobKind, Outcome, RunRecord};
use coffer_operations::jobs::{JobContext, JobSpec, jobs, run_job};
use coffer_repository::InitOptions;
use coffer_repository::{Cancel, Event, JobControl, Repository};
use coffer_store::{Clock, LocalVault, Role, VaultOptions};
use coffer_testkit::WAIT;
use coffer_testkit::pg::{PgSandbox, require_postgres};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const PASSWORD: &str = "job test password";

/// A vault with a repository in a temporary directory, and the policy file's first lines
/// naming it `main`.
struct Fixture {
    dir: tempfile::TempDir,
    vault: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let vault = dir.path().join("vault");
        let v = LocalVault::init(&vault, &VaultOptions::default()).unwrap();
        let store = Arc::new(v.login(&v.read_credentials(Role::Writer).unwrap()).unwrap());
        let init = InitOptions {
            kdf: coffer_repository::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
            ..InitOptions::default()
        };
        Repository::init(store, "vault", "", PASSWORD.as_bytes(), &init, Clock::from_env()).unwrap();
        std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
        Self { dir, vault }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The policy file: repository `main` (verify reading all data, prune), then `rest`.
    fn config(&self, rest: &str) -> Config {
        let text = format!(
            "[repositories.main]\nlocation = {:?}\npassword = {{ file = {:?} }}\n\
             [repositories.main.verify]\nschedule = \"daily\"\nread-data = \"all\"\n\
             [repositories.main.prune]\nschedule = \"daily\"\n{rest}",
            self.vault.display().to_string(),
            self.path("password").display().to_string(),
        );
        Config::parse(&text, Path::new("coffer.toml")).unwrap()
    }

    /// Runs job `id` of `config`.
    fn run(&self, config: &Config, id: &str, ctl: &JobControl) -> RunRecord {
        let spec = spec(config, id);
        let ctx = JobContext {
            config: Arc::new(config.clone()),
            state_dir: self.path("state"),
            host: "testhost".into(),
            clock: Clock::from_env(),
            security: None,
        };
        let r = run_job(&ctx, &spec, ctl);
        assert_eq!(r.job, id);
        assert!(r.finished >= r.started, "{r:?}");
        r
    }

    /// The repository, opened directly, as `role`.
    fn repo(&self, role: Role) -> Repository {
        let v = LocalVault::open(&self.vault).unwrap();
        let store = Arc::new(v.login(&v.read_credentials(role).unwrap()).unwrap());
        Repository::open(store, "vault", "", PASSWORD.as_bytes(), Clock::from_env()).unwrap()
    }
}

fn spec(config: &Config, id: &str) -> JobSpec {
    jobs(config).into_iter().find(|j| j.id == id).unwrap_or_else(|| panic!("no job {id}"))
}

fn files_source(paths: &[&Path]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    format!("[files.home]\nrepository = \"main\"\nschedule = \"hourly\"\npaths = [{}]\n", paths.join(", "))
}

/// `len` bytes that do not compress or deduplicate.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

#[test]
fn a_backup_job_records_its_snapshot_and_numbers_and_verify_and_prune_follow() {
    let f = Fixture::new();
    let src = f.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("sub/b.bin"), noise(1 << 20, 1)).unwrap();
    let config = f.config(&files_source(&[&src]));

    let r = f.run(&config, "home/backup", &JobControl::none());
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    assert_eq!((r.kind, r.source.as_deref(), r.repository.as_str()), (JobKind::Backup, Some("home"), "main"));
    assert_eq!((r.error_class.as_deref(), r.error.as_deref(), r.warnings), (None, None, 0));
    assert_eq!(r.files, Some(2));
    assert_eq!(r.bytes_read, Some((1 << 20) + 5));
    assert!(r.bytes_added.unwrap() >= 1 << 20, "{r:?}");
    let snaps = f.repo(Role::Reader).snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(r.snapshot.as_deref(), Some(snaps[0].0.to_string().as_str()));
    assert_eq!(snaps[0].1.host, "testhost");
    assert_eq!((r.details["files_read"].as_str(), r.details["unreadable"].as_str()), ("2", "0"), "{r:?}");

    // Verify reads every pack: clean.
    let v = f.run(&config, "main/verify", &JobControl::none());
    assert_eq!(v.outcome, Outcome::Success, "{v:?}");
    assert_eq!((v.details["problems"].as_str(), v.details["read_data"].as_str()), ("0", "all"));
    assert_ne!(v.details["packs_read"], "0", "{v:?}");

    // Prune as the pruner: nothing has expired, everything is kept.
    let p = f.run(&config, "main/prune", &JobControl::none());
    assert_eq!(p.outcome, Outcome::Success, "{p:?}");
    assert_eq!(p.details["versions_removed"], "0");
    assert_ne!(p.details["versions_kept"], "0", "{p:?}");

    // A byte flipped in the largest stored file (the pack of b.bin): verify fails, with
    // class integrity, counting and quoting the problems.
    let data = f.vault.join("data");
    let largest = walk(&data).into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&largest, bytes).unwrap();
    let v = f.run(&config, "main/verify", &JobControl::none());
    assert_eq!(v.outcome, Outcome::Failed, "{v:?}");
    assert_eq!(v.error_class.as_deref(), Some("integrity"), "{v:?}");
    assert_ne!(v.details["problems"], "0", "{v:?}");
    assert!(v.details.contains_key("problem_1"), "{v:?}");
    let e = v.error.unwrap();
    assert!(e.starts_with("verify found ") && !e.contains('\n'), "{e}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn a_backup_of_a_missing_path_fails_with_class_io_naming_the_path() {
    let f = Fixture::new();
    let missing = f.path("no/such/dir");
    let config = f.config(&files_source(&[&missing]));
    let r = f.run(&config, "home/backup", &JobControl::none());
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert_eq!(r.error_class.as_deref(), Some("io"));
    let e = r.error.unwrap();
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("No such file"), "the cause is in the one line: {e}");
    assert_eq!(r.snapshot, None);
    assert!(f.repo(Role::Reader).snapshots().unwrap().is_empty());
}

#[test]
fn a_wrong_password_fails_the_job_without_showing_it() {
    let f = Fixture::new();
    let src = f.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let config = f.config(&files_source(&[&src]));
    std::fs::write(f.path("password"), "not the password\n").unwrap();
    let r = f.run(&config, "home/backup", &JobControl::none());
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let e = r.error.unwrap();
    assert!(e.contains("main") && !e.contains("not the password"), "{e}");
}

#[test]
fn a_cancelled_backup_is_cancelled_and_commits_no_snapshot() {
    let f = Fixture::new();
    let src = f.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i}")), noise(64 << 10, i)).unwrap();
    }
    let config = f.config(&files_source(&[&src]));
    // Cancelled once the backup has started reading.
    let cancel = Cancel::new();
    let on_progress = cancel.clone();
    let observer = move |e: &Event<'_>| {
        if matches!(e, Event::Advance(_)) {
            on_progress.cancel();
        }
    };
    let ctl = JobControl { observer: Arc::new(observer), cancel: cancel.clone() };
    let r = f.run(&config, "home/backup", &ctl);
    assert!(cancel.is_cancelled());
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert_eq!(r.error_class.as_deref(), Some("cancelled"));
    assert_eq!(r.snapshot, None);
    assert!(f.repo(Role::Reader).snapshots().unwrap().is_empty(), "a cancelled backup commits nothing");
}

#[test]
fn the_prune_job_presents_the_pruner_credentials_and_is_refused_others() {
    let f = Fixture::new();
    // The pruner's credentials file replaced by the reader's: the store refuses the login
    // as the pruner (separation of duties: the job never falls back to another role).
    let reader = f.vault.join("credentials/reader.toml");
    let config = f.config(&format!("[repositories.main.credentials]\npruner = {:?}\n", reader.display().to_string()));
    let r = f.run(&config, "main/prune", &JobControl::none());
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.error.as_deref().unwrap().contains("not pruner"), "{r:?}");
}

/// Stores every WAL file the server copies into `archive`, as `archive_command = 'coffer pg
/// wal-push %p'` would, until `done` (as `examples/library.rs` of coffer-sources does).
fn push_archived(repo: &Repository, archive: &Path, done: &AtomicBool) {
    use coffer_sources::postgres as pg;
    let mut sysid = None;
    loop {
        let last_round = done.load(Ordering::Relaxed);
        let mut names: Vec<PathBuf> =
            std::fs::read_dir(archive).into_iter().flatten().flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            if let Ok(r) = pg::wal_push(repo, &pg::WalPushOptions { path, sysid }, &JobControl::none()) {
                sysid = Some(r.sysid);
            }
        }
        if last_round {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn pg_source(conninfo: &str, lag: &str) -> String {
    format!(
        "[postgres.db]\nrepository = \"main\"\nconnection = {conninfo:?}\narchive-lag-alert = {lag:?}\n\
         [postgres.db.base-backup]\nschedule = \"daily\"\n"
    )
}

#[test]
fn a_base_backup_job_and_the_archive_check_on_a_real_server_as_root() {
    require_postgres();
    let f = Fixture::new();
    let sb = PgSandbox::new();
    let archive = sb.path("archive");
    std::fs::create_dir(&archive).unwrap();
    assert!(std::process::Command::new("chown").arg("postgres").arg(&archive).status().unwrap().success());
    let sb = sb.with_archive_command(format!("cp %p {}/%f", archive.display()));
    let server = sb.cluster("main");
    server.sql("create table t (n int); insert into t select generate_series(1, 1000)");
    // The source's retention applies to its base backups (the repository's default is 30
    // days in these tests' repositories, or longer).
    let config =
        f.config(&format!("{}[postgres.db.retention]\nretain = \"2d\"\n", pg_source(&server.conninfo(), "15m")));

    let writer = f.repo(Role::Writer);
    let done = AtomicBool::new(false);
    let r = std::thread::scope(|s| {
        s.spawn(|| push_archived(&writer, &archive, &done));
        let r = f.run(&config, "db/base-backup", &JobControl::none());
        // One more segment, so the archive reaches past the backup's end.
        server.switch_and_archive();
        done.store(true, Ordering::Relaxed);
        r
    });
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    let snap = r.snapshot.clone().unwrap();
    assert!(r.bytes_read.unwrap() > 0 && r.bytes_added.unwrap() > 0, "{r:?}");
    let bases = coffer_sources::postgres::base_backups(&f.repo(Role::Reader)).unwrap();
    assert_eq!(bases.len(), 1);
    assert_eq!((bases[0].snapshot.as_str(), bases[0].cluster.as_deref()), (snap.as_str(), Some("db")));
    let snaps = f.repo(Role::Reader).snapshots().unwrap();
    let (_, s) = snaps.iter().find(|(id, _)| id.to_string() == snap).unwrap();
    let kept = s.expires.duration_since(s.time).as_secs();
    assert_eq!(kept, 2 * 86_400, "retain = 2d: {s:?}");

    let c = f.run(&config, "db/archive-check", &JobControl::none());
    assert_eq!(c.outcome, Outcome::Success, "{c:?}");
    for k in coffer_operations::jobs::ARCHIVE_KEYS {
        assert!(c.details.contains_key(k), "{k} missing: {c:?}");
    }
    let d = &c.details;
    assert!(!d["last_archived_wal"].is_empty() && d["last_failed_wal"].is_empty(), "{d:?}");
    assert!(d["last_archived_time"].parse::<jiff::Timestamp>().is_ok(), "{d:?}");
    assert_eq!(d["recovery_window_start"], bases[0].stop_time.to_string(), "{d:?}");
    let end: jiff::Timestamp = d["recovery_window_end"].parse().unwrap();
    assert!(end >= bases[0].stop_time, "{d:?}");
    assert_eq!(d["wal_gaps"], "0");
    assert!(d["archive_lag_seconds"].parse::<u64>().unwrap() < 60, "{d:?}");

    // The same archive judged against a threshold of 1 second, once the server has
    // written WAL the archive does not hold yet: lagging.
    server.sql("insert into t values (1)");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let strict = f.config(&pg_source(&server.conninfo(), "1s"));
    let c = f.run(&strict, "db/archive-check", &JobControl::none());
    assert_eq!(c.outcome, Outcome::Failed, "{c:?}");
    assert_eq!((c.error_class.as_deref(), c.details["archive_problem"].as_str()), (Some("archive"), "lagging"));
    assert!(c.error.as_deref().unwrap().contains("lags"), "{c:?}");

    // The same server checked against another repository, which holds none of its WAL:
    // archiving elsewhere restores nothing from there.
    let other = Fixture::new();
    let c = other.run(&other.config(&pg_source(&server.conninfo(), "15m")), "db/archive-check", &JobControl::none());
    assert_eq!(c.outcome, Outcome::Failed, "{c:?}");
    assert_eq!(c.details["archive_problem"], "none-archived", "{c:?}");
    assert!(!c.details["last_archived_wal"].is_empty() && c.details["recovery_window_start"].is_empty(), "{c:?}");
}

#[test]
fn the_archive_check_fails_when_archiving_fails_and_when_the_server_is_down_as_root() {
    require_postgres();
    let f = Fixture::new();
    let sb = PgSandbox::new().with_archive_command("false");
    let mut server = sb.cluster("main");
    server.sql("create table t (n int); select pg_switch_wal()");
    let deadline = std::time::Instant::now() + WAIT;
    while server.sql("select coalesce(last_failed_wal, '') from pg_stat_archiver").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the archiver never failed: {}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let config = f.config(&pg_source(&server.conninfo(), "15m"));
    let c = f.run(&config, "db/archive-check", &JobControl::none());
    assert_eq!(c.outcome, Outcome::Failed, "{c:?}");
    assert_eq!((c.error_class.as_deref(), c.details["archive_problem"].as_str()), (Some("archive"), "failing"));
    assert!(!c.details["last_failed_wal"].is_empty() && c.details["last_archived_wal"].is_empty(), "{c:?}");
    assert!(c.details["last_failed_time"].parse::<jiff::Timestamp>().is_ok(), "{c:?}");
    assert!(c.error.as_deref().unwrap().contains(&c.details["last_failed_wal"]), "{c:?}");

    // The server stopped: the check fails, saying it cannot connect; the keys are there.
    server.stop();
    let c = f.run(&config, "db/archive-check", &JobControl::none());
    assert_eq!(c.outcome, Outcome::Failed, "{c:?}");
    assert!(c.error.as_deref().unwrap().contains("cannot connect"), "{c:?}");
    assert_ne!(c.error_class.as_deref(), Some("archive"));
    assert!(c.details["last_failed_wal"].is_empty(), "{c:?}");
    for k in coffer_operations::jobs::ARCHIVE_KEYS {
        assert!(c.details.contains_key(k), "{k} missing: {c:?}");
    }
}

#[test]
fn the_stream_job_stores_wal_until_cancelled_as_root() {
    require_postgres();
    let f = Fixture::new();
    let sb = PgSandbox::new();
    let server = sb.cluster("main");
    let config = f.config(&format!(
        "[postgres.db]\nrepository = \"main\"\nconnection = {:?}\narchiving = \"streaming\"\n\
         [postgres.db.base-backup]\nschedule = \"daily\"\n",
        server.conninfo()
    ));
    let cancel = Cancel::new();
    let streaming = Arc::new(AtomicBool::new(false));
    let stored = Arc::new(AtomicBool::new(false));
    let (s1, s2) = (Arc::clone(&streaming), Arc::clone(&stored));
    let observer = move |e: &Event<'_>| match e {
        Event::Phase { name: "stream" } => s1.store(true, Ordering::Relaxed),
        Event::Object { action: "stored", key, .. } if !key.ends_with(".partial") => s2.store(true, Ordering::Relaxed),
        _ => {}
    };
    let ctl = JobControl { observer: Arc::new(observer), cancel: cancel.clone() };
    let r = std::thread::scope(|s| {
        let job = s.spawn(|| f.run(&config, "db/stream", &ctl));
        let deadline = std::time::Instant::now() + WAIT;
        while !streaming.load(Ordering::Relaxed) {
            assert!(std::time::Instant::now() < deadline && !job.is_finished(), "the stream never started");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // A finished segment is stored, then the job is stopped.
        while !stored.load(Ordering::Relaxed) {
            server.sql("create table if not exists t (n int); insert into t values (1); select pg_switch_wal()");
            assert!(std::time::Instant::now() < deadline && !job.is_finished(), "no WAL stored");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        cancel.cancel();
        job.join().unwrap()
    });
    assert_eq!(r.outcome, Outcome::Cancelled, "stopping is a streaming job's normal end: {r:?}");
    assert!(r.files.unwrap() >= 1 && r.bytes_added.unwrap() > 0, "{r:?}");
    let repo = f.repo(Role::Reader);
    let clusters = repo.pg_clusters().unwrap();
    assert_eq!(clusters.len(), 1);
    assert!(!repo.list_wal(clusters[0]).unwrap().is_empty());
    assert!(f.path("state/spool/db").is_dir(), "the default spool is under the state directory");
}
