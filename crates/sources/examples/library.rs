//! Coffer as a library, without the `coffer` command: a local vault and repository, a
//! directory backed up and restored, a PostgreSQL base backup with its WAL, a list of the
//! snapshots, and a point-in-time restore of the cluster.
//!
//! `cargo run -p coffer-sources --example library -- SCRATCH DIR CONNINFO ARCHIVE`: SCRATCH
//! is an empty directory for the vault and the restores, DIR the directory to back up,
//! CONNINFO a running PostgreSQL (libpq connection string), and ARCHIVE the directory its
//! `archive_command` copies WAL into (`cp %p ARCHIVE/%f`): this program stores what
//! appears there with `wal_push`, as `coffer pg wal-push` would from `archive_command`.
//! (`tests/library.rs` runs it against a real server.)

#![allow(clippy::disallowed_macros, reason = "a program of its own: it prints what it did")]

use coffer_repository::repo::InitOptions;
use coffer_repository::{JobControl, Repository};
use coffer_sources::{files, postgres as pg};
use coffer_store::{Clock, LocalVault, Role, VaultOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where [`run`] restored things.
pub struct Restored {
    /// The restored copy of DIR (its absolute path below this directory).
    pub files: PathBuf,
    /// The restored data directory, with recovery settings that replay the archived WAL.
    pub cluster: PathBuf,
    /// The snapshots in the repository: (kind, id).
    pub snapshots: Vec<(String, String)>,
}

/// Backs up `dir` and the cluster `conninfo` into a new repository in `scratch`, and
/// restores both there.
pub fn run(scratch: &Path, dir: &Path, conninfo: &str, archive: &Path) -> Result<Restored, Error> {
    let vault = LocalVault::init(scratch.join("vault"), &VaultOptions::default())?;
    let store = Arc::new(vault.login(&vault.read_credentials(Role::Writer)?)?);
    let repo = Repository::init(store, "vault", "", b"example password", &InitOptions::default(), Clock::from_env())?;
    let ctl = JobControl::none();

    let opts = files::BackupOptions { paths: vec![dir.to_path_buf()], host: "example".into(), ..Default::default() };
    let files_backup = files::backup(&repo, &opts, &ctl)?;

    // The base backup completes once its WAL is in the repository: store what the server
    // archives meanwhile.
    let done = AtomicBool::new(false);
    let base = std::thread::scope(|s| {
        s.spawn(|| push_archived(&repo, archive, &done, &ctl));
        let opts = pg::BaseBackupOptions { pg: Some(conninfo.to_owned()), ..Default::default() };
        let base = pg::base_backup(&repo, &opts, &ctl);
        done.store(true, Ordering::Relaxed);
        base
    })?;

    let snapshots = repo.snapshots()?.iter().map(|(id, s)| (s.kind.clone(), id.to_string())).collect();

    let target = scratch.join("files");
    files::restore(
        &repo,
        &files_backup.info,
        &files::RestoreOptions { target: target.clone(), ..Default::default() },
        &ctl,
    )?;

    // Recovery reads the WAL from a directory this program fills from the repository.
    let wal = scratch.join("wal");
    std::fs::create_dir_all(&wal)?;
    for name in repo.list_wal(base.base.sysid)? {
        let opts = pg::WalFetchOptions {
            name: name.clone(),
            dest: wal.join(&name),
            sysid: Some(base.base.sysid),
            prefetch: 0,
        };
        pg::wal_fetch(&repo, &opts, &|_| Ok(()), &ctl)?;
    }
    let command = pg::RecoveryCommand::Custom(format!("cp {}/%f %p", wal.display()));
    let restored = pg::restore(&repo, &pg::RestoreOptions::latest(scratch.join("pgdata")), &command, &ctl)?;
    Ok(Restored { files: target, cluster: restored.target, snapshots })
}

/// Stores every WAL file the server copies into `archive` (`wal-push`), until `done`. The
/// cluster's system identifier comes from the first segment's header (a `.backup` or
/// `.history` file has none, and this process does not run in the data directory).
fn push_archived(repo: &Repository, archive: &Path, done: &AtomicBool, ctl: &JobControl) {
    let mut sysid = None;
    loop {
        let last_round = done.load(Ordering::Relaxed);
        let mut names: Vec<PathBuf> =
            std::fs::read_dir(archive).into_iter().flatten().flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            // Stored before, or still being copied: the next round has it.
            if let Ok(r) = pg::wal_push(repo, &pg::WalPushOptions { path, sysid }, ctl) {
                sysid = Some(r.sysid);
            }
        }
        if last_round {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[allow(dead_code)]
fn main() -> Result<(), Error> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [scratch, dir, conninfo, archive] = args.as_slice() else {
        return Err("usage: library SCRATCH DIR CONNINFO ARCHIVE".into());
    };
    let r = run(scratch, dir, &conninfo.to_string_lossy(), archive)?;
    for (kind, id) in &r.snapshots {
        println!("snapshot {id} ({kind})");
    }
    println!("restored files into {} and the cluster into {}", r.files.display(), r.cluster.display());
    Ok(())
}
