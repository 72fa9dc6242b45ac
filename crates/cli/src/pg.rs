//! `coffer pg …`: PostgreSQL continuous archiving and point-in-time recovery.
//!
//! The domain lives in `coffer_sources::postgres` (see its docs and `docs/postgres.md`);
//! this module parses the arguments (the library's options structs, plus how to open the
//! repository), opens the repository ([`open_pg`]), runs the job and renders its report
//! as text or `--json`. It also keeps the two things that are about this process:
//! `wal-fetch`'s prefetch worker is this executable run again (`--prefetch-worker`), and
//! `restore_command` is this executable with the arguments that reach the repository.

use crate::Global;
use crate::output::Output;
use crate::repo::{RepoOpts, open_repo};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use coffer_repository::{Event, JobControl, Repository};
use coffer_sources::postgres as pg;
use coffer_store::Role;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `coffer pg`.
#[derive(Debug, Args)]
pub struct PgArgs {
    #[command(subcommand)]
    cmd: PgCmd,
}

#[derive(Debug, Subcommand)]
enum PgCmd {
    /// Archive one WAL file (for archive_command = 'coffer pg wal-push %p')
    WalPush(WithKey<pg::WalPushOptions>),
    /// Fetch one WAL file (for restore_command = 'coffer pg wal-fetch %f %p'); exit 1 if absent
    WalFetch(WalFetchArgs),
    /// Take a base backup of a running cluster with pg_basebackup
    Backup(WithKey<pg::BaseBackupOptions>),
    /// Write a base backup and recovery settings for point-in-time recovery
    Restore(WithKey<pg::RestoreOptions>),
    /// Show clusters, base backups, archived WAL, recovery windows and gaps
    Info(WithKey<pg::InfoOptions>),
    /// Receive WAL continuously (pg_receivewal, replication slot) into the repository
    Stream(WithKey<pg::StreamOptions>),
    /// Write the repository key to a file for wal-push/wal-fetch --key-file
    ExportKey(pg::ExportKeyOptions),
}

/// A job's options and the key file that may open the repository instead of the password.
#[derive(Debug, Args)]
struct WithKey<T: Args> {
    #[command(flatten)]
    opts: T,
    /// Open the repository with the key `pg export-key` (or `pg restore`) wrote to FILE
    /// instead of the password (no key derivation per call)
    #[arg(long, env = "COFFER_PG_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// `pg wal-fetch`.
#[derive(Debug, Args)]
struct WalFetchArgs {
    #[command(flatten)]
    a: WithKey<pg::WalFetchOptions>,
    /// Internal: run as the detached worker that fills the prefetch spool after NAME
    #[arg(long, hide = true)]
    prefetch_worker: bool,
    /// Internal: the cluster's WAL segment size, for the prefetch worker (the call that
    /// starts it reads it from the fetched segment's long page header)
    #[arg(long, hide = true, value_name = "BYTES", requires = "prefetch_worker")]
    wal_segment_size: Option<u64>,
}

/// Runs `coffer pg …`.
pub fn run(g: &Global, r: &RepoOpts, args: PgArgs) -> Result<()> {
    match args.cmd {
        PgCmd::WalPush(a) => wal_push(g, r, &a),
        // PostgreSQL treats an exit status above 125 as fatal and any other as "absent":
        // every failure but "not archived" must abort recovery (crate::error::report).
        PgCmd::WalFetch(a) => wal_fetch(g, r, &a).map_err(|e| crate::error::FatalToRecovery(e).into()),
        PgCmd::Backup(a) => backup(g, r, &a),
        PgCmd::Restore(a) => restore(g, r, &a),
        PgCmd::Info(a) => info(g, r, &a),
        PgCmd::Stream(a) => stream(g, r, &a),
        PgCmd::ExportKey(a) => export_key(g, r, &a),
    }
}

/// The job control of a `pg` command: warnings go to stderr as `coffer: warning: …`,
/// `on_phase` sees the phases, and with `job` (the long commands, [`crate::progress`])
/// events also feed its progress bar and SIGINT/SIGTERM cancel. Without (`wal-push`,
/// `wal-fetch`, run by PostgreSQL) the signals keep their default action: PostgreSQL reads
/// a command killed by a signal as such.
fn control(job: Option<&crate::progress::Job>, on_phase: impl Fn(&'static str) + Send + Sync + 'static) -> JobControl {
    let (bar, cancel) = match job {
        Some(j) => (Some(j.observer.clone()), j.cancel.clone()),
        None => (None, coffer_repository::Cancel::new()),
    };
    let observer = move |e: &Event<'_>| {
        match e {
            Event::Warning { message, .. } => eprintln!("coffer: warning: {message}"),
            Event::Phase { name } => on_phase(name),
            _ => {}
        }
        if let Some(b) = &bar {
            b.event(e);
        }
    };
    JobControl { observer: Arc::new(observer), cancel }
}

/// Opens the repository with `key_file` when given, else with the password. The one place
/// `pg` commands open a repository.
fn open_pg(g: &Global, r: &RepoOpts, role: Role, key_file: Option<&Path>) -> Result<Repository> {
    match key_file {
        Some(k) => open_with_key_file(g, r, role, k),
        None => open_repo(g, r, role),
    }
}

/// Opens the repository with a key file, refused when other users may read or write it:
/// the key opens the repository as its password does, so a file readable by others leaks
/// it. Like ssh with a private key, the mode must be 0600 or stricter (`export-key` and
/// `restore` create it so); the error names the file and its mode, never its contents.
fn open_with_key_file(g: &Global, r: &RepoOpts, role: Role, key_file: &Path) -> Result<Repository> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(key_file).with_context(|| format!("cannot read key file {}", key_file.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} is accessible to other users (mode {mode:04o}); `chmod 600` it (it opens the repository like its password)",
            key_file.display()
        );
    }
    crate::repo::open_repo_with_key(g, r, role, key_file)
}

fn wal_push(g: &Global, r: &RepoOpts, a: &WithKey<pg::WalPushOptions>) -> Result<()> {
    let repo = open_pg(g, r, Role::Writer, a.key_file.as_deref())?;
    let report = pg::wal_push(&repo, &a.opts, &control(None, |_| {}))?;
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&report)?;
    }
    out.finish()
}

fn wal_fetch(g: &Global, r: &RepoOpts, a: &WalFetchArgs) -> Result<()> {
    let repo = open_pg(g, r, Role::Reader, a.a.key_file.as_deref())?;
    if a.prefetch_worker {
        // The background half of the prefetch: a cache, whose failures cost speed only
        // (nobody reads this process's output).
        let size = a.wal_segment_size.unwrap_or(coffer_repository::wal::DEFAULT_SEGMENT_SIZE);
        let _ = pg::prefetch_worker(&repo, &a.a.opts, size, &JobControl::none());
        return Ok(());
    }
    // This very command again, detached, as the worker: PostgreSQL waits for this call only.
    let start_worker = |seg_size: u64| -> std::io::Result<()> {
        use std::os::unix::process::CommandExt as _;
        use std::process::Stdio;
        std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .arg("--prefetch-worker")
            .arg(format!("--wal-segment-size={seg_size}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map(drop)
    };
    let report = pg::wal_fetch(&repo, &a.a.opts, &start_worker, &control(None, |_| {}))?;
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&report)?;
    }
    out.finish()
}

fn export_key(g: &Global, r: &RepoOpts, a: &pg::ExportKeyOptions) -> Result<()> {
    let repo = open_repo(g, r, Role::Reader)?;
    let report = pg::export_key(&repo, a, &control(None, |_| {}))?;
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&report)?;
    } else {
        out.line(format!("wrote the key of {} to {} (mode 0600)", report.location, report.key_file.display()))?;
    }
    out.finish()
}

fn backup(g: &Global, r: &RepoOpts, a: &WithKey<pg::BaseBackupOptions>) -> Result<()> {
    let mut opts = a.opts.clone();
    opts.host = Some(crate::repo::host());
    // pg_basebackup starts with a checkpoint (`-c fast` still writes every dirty buffer)
    // while the repository is opened (the password's Argon2id derivation, ~0.2 s): started
    // first, the two overlap. If opening fails, dropping the backup stops it.
    let job = crate::progress::for_terminal(g.json);
    let started = pg::StartedBackup::start(&opts)?;
    let repo = open_pg(g, r, Role::Writer, a.key_file.as_deref())?;
    let report = crate::error::on_cancel(started.finish(&repo, &control(Some(&job), |_| {})), || {
        "no base backup was saved (what was stored is reused by the next one)".to_owned()
    })?;
    job.finish();
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&report)?;
    } else {
        let b = &report.base;
        out.line(format!(
            "snapshot {} saved: base backup of cluster {}, timeline {}, WAL {}..{}, {} bytes ({} new)",
            b.short(),
            b.sysid,
            b.timeline,
            b.start_lsn,
            b.stop_lsn,
            report.bytes,
            report.bytes_added
        ))?;
    }
    out.finish()
}

fn restore(g: &Global, r: &RepoOpts, a: &WithKey<pg::RestoreOptions>) -> Result<()> {
    let job = crate::progress::for_terminal(g.json);
    let repo = open_pg(g, r, Role::Reader, a.key_file.as_deref())?;
    // restore_command: this executable, the same repository, at the same point in time (a
    // segment forged after --as-of must not be replayed), logging in as this command did.
    let mut repo_args = vec!["--repo".to_owned()];
    repo_args.push(match &r.repo {
        Some(p) if !p.to_string_lossy().contains("://") => std::path::absolute(p)?.display().to_string(),
        Some(p) => p.display().to_string(),
        None => crate::repo::vault_dir(r)?.0.display().to_string(),
    });
    if let Some(t) = r.as_of {
        repo_args.extend(["--as-of".to_owned(), t.to_string()]);
    }
    let cmd = pg::RecoveryCommand::Coffer {
        program: std::env::current_exe().context("cannot find the coffer executable")?,
        repo_args,
        credentials: credentials_for_recovery(g, r)?,
    };
    let report = crate::error::on_cancel(pg::restore(&repo, &a.opts, &cmd, &control(Some(&job), |_| {})), || {
        format!("the restore into {} is incomplete: remove it", a.opts.target.display())
    })?;
    job.finish();
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&report)?;
    } else {
        let b = &report.base;
        out.line(format!(
            "restored base backup {} (cluster {}, WAL {}..{}) into {}; start the server to recover",
            b.short(),
            b.sysid,
            b.start_lsn,
            b.stop_lsn,
            report.target.display()
        ))?;
    }
    out.finish()
}

/// The credentials `pg restore` itself logged in with — `--credentials FILE`, else the
/// vault's `credentials/ROLE.toml` of `--role` (default: the reader) — for the restore to
/// copy beside the key copy, so recovery does not depend on the vault's `credentials/`
/// directory (whose copies the separation-of-duties advice says to delete) nor on where
/// `--credentials FILE` lived. `None` for an S3 repository without `--credentials` (the
/// AWS chain of restore_command's environment applies, as it did for this command).
fn credentials_for_recovery(g: &Global, r: &RepoOpts) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
    let source = match g.credentials.as_ref().filter(|f| !f.as_os_str().is_empty()) {
        Some(f) => f.clone(),
        None => {
            let (dir, _) = crate::repo::vault_dir(r)?;
            if !matches!(coffer_store::StoreLocation::from_path(&dir)?, coffer_store::StoreLocation::Local(_)) {
                return Ok(None);
            }
            let role = g.role.unwrap_or(Role::Reader);
            dir.join("credentials").join(format!("{role}.toml"))
        }
    };
    let text = std::fs::read(&source).with_context(|| format!("cannot read credentials {}", source.display()))?;
    Ok(Some(zeroize::Zeroizing::new(text)))
}

fn info(g: &Global, r: &RepoOpts, a: &WithKey<pg::InfoOptions>) -> Result<()> {
    let job = crate::progress::for_terminal(g.json);
    let repo = open_pg(g, r, Role::Reader, a.key_file.as_deref())?;
    let report = pg::info(&repo, &a.opts, &control(Some(&job), |_| {}))?;
    job.finish();
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&report)?;
        return out.finish();
    }
    for c in &report.clusters {
        match &c.name {
            Some(n) => out.line(format!("cluster {} ({n})", c.sysid))?,
            None => out.line(format!("cluster {}", c.sysid))?,
        }
        for b in &c.base_backups {
            out.line(format!(
                "  base backup {}  timeline {}  WAL {}..{}  consistent at {}",
                b.short(),
                b.timeline,
                b.start_lsn,
                b.stop_lsn,
                b.stop_time
            ))?;
        }
        out.line(format!(
            "  WAL: {} segments, {} .. {}",
            c.wal_segments,
            c.first_segment.as_deref().unwrap_or("-"),
            c.last_segment.as_deref().unwrap_or("-")
        ))?;
        for gap in &c.gaps {
            out.line(format!("  GAP: WAL segment {gap} is missing"))?;
        }
        if let Some(w) = &c.recovery_window {
            let segment = w.to_segment.as_deref().unwrap_or("-");
            let to = match w.to_time {
                Some(t) => format!("{t} (the last commit, in {segment})"),
                None => format!("the end of {segment}"),
            };
            out.line(format!("  recovery window: from {} ({}) to {to}", w.from_time, w.from_lsn))?;
        }
        if let Some(l) = &c.latest_restore {
            if let Some(seg) = &l.missing_segment {
                let base = l.base.get(..8).unwrap_or(&l.base);
                out.line(format!(
                    "  restore --latest is refused: WAL segment {seg} is missing on the way from base backup {base}"
                ))?;
            }
        }
    }
    out.finish()
}

fn stream(g: &Global, r: &RepoOpts, a: &WithKey<pg::StreamOptions>) -> Result<()> {
    let job = crate::progress::for_terminal(g.json);
    let repo = open_pg(g, r, Role::Writer, a.key_file.as_deref())?;
    let (json, spool, slot) = (g.json, a.opts.spool.clone(), a.opts.slot.clone());
    let ctl = control(Some(&job), move |phase| {
        if phase == "stream" && !json {
            // The spool names its cluster by now (the library wrote it before streaming).
            let sysid = pg::spool_cluster(&spool).map(|s| s.to_string()).unwrap_or_default();
            eprintln!("coffer: streaming WAL of cluster {sysid} (slot {slot}) into {}", spool.display());
        }
    });
    let report = crate::error::on_cancel(pg::stream(&repo, &a.opts, &ctl), || {
        format!("what the spool {} holds is stored by the next start (or --drain)", a.opts.spool.display())
    })?;
    job.finish();
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&report)?;
    } else {
        out.line(format!(
            "stored {} WAL files from {} (cluster {})",
            report.stored,
            a.opts.spool.display(),
            report.sysid
        ))?;
    }
    out.finish()
}
