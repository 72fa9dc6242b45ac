//! The library example (`examples/library.rs`) run against a real PostgreSQL 15: Coffer's
//! libraries alone — no `coffer` binary, no clap — back up and restore a directory and a
//! cluster, and the restored cluster, replaying the WAL the example archived and fetched
//! back, holds the rows committed before the backup.

#[path = "../examples/library.rs"]
mod example;

use coffer_testkit::pg::{PgSandbox, require_postgres};

#[test]
fn the_library_example_backs_up_and_restores_files_and_a_cluster_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let archive = sb.path("archive");
    std::fs::create_dir(&archive).unwrap();
    let sb = sb.with_archive_command(format!("cp %p {}/%f", archive.display()));
    // The server (user postgres) writes into the archive.
    assert!(std::process::Command::new("chown").arg("postgres").arg(&archive).status().unwrap().success());
    let pg = sb.cluster("main");
    pg.sql("create table t (n int); insert into t select generate_series(1, 1000)");

    let data = sb.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.txt"), b"alpha").unwrap();
    std::fs::write(data.join("sub/b.bin"), (0..=255u8).cycle().take(100_000).collect::<Vec<u8>>()).unwrap();
    let scratch = sb.path("scratch");
    std::fs::create_dir(&scratch).unwrap();

    let r = example::run(&scratch, &data, &pg.conninfo(), &archive).unwrap();

    let kinds: Vec<&str> = r.snapshots.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.len(), 2, "{:?}", r.snapshots);
    assert!(kinds.contains(&"pg-base"), "{kinds:?}");
    let restored = r.files.join(data.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(restored.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(restored.join("sub/b.bin")).unwrap(), std::fs::read(data.join("sub/b.bin")).unwrap());

    // A restore cancelled while it unpacks stops there, with the class the CLI turns into
    // exit 130, and writes no recovery settings: the directory cannot be started by mistake.
    {
        use coffer_repository::{Cancel, Event, JobControl, Repository};
        use coffer_sources::postgres as lib;
        let vault = coffer_store::LocalVault::open(scratch.join("vault")).unwrap();
        let store =
            std::sync::Arc::new(vault.login(&vault.read_credentials(coffer_store::Role::Reader).unwrap()).unwrap());
        let repo = Repository::open(store, "vault", "", b"example password", coffer_store::Clock::from_env()).unwrap();
        let cancel = Cancel::new();
        let on_phase = cancel.clone();
        let observer = move |e: &Event<'_>| {
            if matches!(e, Event::Advance(_)) {
                on_phase.cancel();
            }
        };
        let ctl = JobControl { observer: std::sync::Arc::new(observer), cancel };
        let target = scratch.join("cancelled");
        let command = lib::RecoveryCommand::Custom("false".into());
        let err = lib::restore(&repo, &lib::RestoreOptions::latest(&target), &command, &ctl).unwrap_err();
        assert_eq!(err.class(), coffer_store::ErrorClass::Cancelled, "{err}");
        assert!(!target.join("recovery.signal").exists());
    }

    // The original keeps running; the restored cluster recovers beside it on its own socket.
    drop(pg);
    let mut restored = sb.start(r.cluster);
    restored.wait_promoted();
    assert_eq!(restored.sql("select count(*), sum(n) from t"), "1000|500500");
}

/// A cancelled base backup acknowledges nothing: no snapshot, and `pg_basebackup` stopped
/// (the server's backup aborted, so a new one can start at once).
#[test]
fn a_cancelled_base_backup_commits_no_snapshot_as_root() {
    use coffer_repository::{Cancel, JobControl, RepoError, Repository, repo::InitOptions};
    use coffer_sources::postgres::{self as pg, PgError};
    use coffer_store::{Clock, LocalVault, Role, VaultOptions};
    require_postgres();
    let sb = PgSandbox::new();
    let pg_server = sb.cluster("main");
    let vault = LocalVault::init(sb.path("vault"), &VaultOptions::default()).unwrap();
    let store = std::sync::Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let repo = Repository::init(store, "vault", "", b"pw", &InitOptions::default(), Clock::from_env()).unwrap();
    let cancel = Cancel::new();
    cancel.cancel();
    let ctl = JobControl { observer: std::sync::Arc::new(coffer_repository::observe::Ignore), cancel };
    let opts = pg::BaseBackupOptions { pg: Some(pg_server.conninfo()), ..Default::default() };
    let err = pg::base_backup(&repo, &opts, &ctl).unwrap_err();
    assert!(matches!(err, PgError::Repo(RepoError::Cancelled)), "{err}");
    assert_eq!(err.class(), coffer_store::ErrorClass::Cancelled);
    assert!(repo.snapshots().unwrap().is_empty());
    // pg_basebackup was stopped: the server has no backup in progress.
    let deadline = std::time::Instant::now() + coffer_testkit::WAIT;
    while pg_server.sql("select count(*) from pg_stat_activity where backend_type = 'walsender'") != "0" {
        assert!(std::time::Instant::now() < deadline, "pg_basebackup still connected");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
