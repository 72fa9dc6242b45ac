//! `pg restore`: the newest base backup before a target, written into a new data directory
//! with the recovery settings that replay the archived WAL to the target.
//!
//! The base backup's `base.tar` is unpacked by [`crate::tar`] straight into the directory,
//! on several threads, every file and directory fsynced; the settings, `recovery.signal`,
//! the key copy and the directory entries are synced after. Invariant guarded: **a reported
//! restore survives a power loss**, and a restore whose WAL has a gap on the way to its
//! target is refused before anything is written ([`RestorePlan::check_wal`]).
//!
//! `restore_command` runs `coffer … pg wal-fetch` once per WAL file: the caller says how to
//! reach the repository ([`RecoveryCommand`]); this writes the unwrapped key beside the data
//! directory (never inside, where a later base backup would carry it) for it.

use super::catalog::pick_cluster;
use super::plan::{ClusterWal, PlanTarget, RestorePlan, restore_point_hits};
use super::{BaseBackup, Lsn, PgError, Result, base_backups, create_0600, io_err, pg_program, warn};
use coffer_repository::wal::Segment;
use coffer_repository::{Event, JobControl, Repository};
use jiff::Timestamp;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What to restore, to which point, and where (`pg restore`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(feature = "clap", command(group(clap::ArgGroup::new("goal").required(true).args(["time", "lsn", "name", "latest"]))))]
pub struct RestoreOptions {
    /// The new data directory (must not exist or be empty)
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR"))]
    pub target: PathBuf,
    /// Recover up to this time (RFC 3339)
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub time: Option<Timestamp>,
    /// Recover up to this LSN (e.g. 0/3000060)
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub lsn: Option<Lsn>,
    /// Recover up to this restore point (pg_create_restore_point)
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub name: Option<String>,
    /// Recover to the end of the archived WAL
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub latest: bool,
    /// The cluster (needed when the repository holds several)
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_SYSID"))]
    #[serde(default)]
    pub sysid: Option<u64>,
    /// The cluster by the name its base backups were taken with (`pg backup --cluster`)
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_CLUSTER", value_name = "NAME", conflicts_with = "sysid"))]
    #[serde(default)]
    pub cluster: Option<String>,
    /// Where to write the copy of the repository key that restore_command reads (and,
    /// as FILE.credentials, the credentials it logs in with)
    /// [default: DIR.coffer-key, beside the data directory, never inside it]
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    #[serde(default)]
    pub key_copy: Option<PathBuf>,
    /// Recover along this timeline [default: the latest, following .history files]
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub timeline: Option<u32>,
    /// Start the restored server (pg_ctl, unix socket in DIR only, no TCP) and wait until
    /// recovery has reached the target and the server is promoted; run as DIR's owner
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(default)]
    pub start: bool,
    /// How long --start waits for recovery
    #[cfg_attr(feature = "clap", arg(long, value_parser = coffer_repository::options::parse_duration, default_value = "1h", value_name = "DURATION", requires = "start"))]
    #[serde(default = "one_hour", with = "coffer_repository::options::duration")]
    pub start_timeout: Duration,
}

fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

impl RestoreOptions {
    /// Restore into `target` up to `latest` WAL (the other fields at their defaults).
    #[must_use]
    pub fn latest(target: impl Into<PathBuf>) -> Self {
        Self {
            target: target.into(),
            time: None,
            lsn: None,
            name: None,
            latest: true,
            sysid: None,
            cluster: None,
            key_copy: None,
            timeline: None,
            start: false,
            start_timeout: one_hour(),
        }
    }
}

/// The `restore_command` the restored server runs for each WAL file it needs.
#[derive(Clone)]
pub enum RecoveryCommand {
    /// `PROGRAM REPO_ARGS… pg wal-fetch --key-file KEY --sysid SYSID %f %p`: the `coffer`
    /// executable fetching from this repository, with the repository's key copied beside
    /// the data directory (`--key-copy`).
    Coffer {
        /// The `coffer` executable.
        program: PathBuf,
        /// The arguments before `pg wal-fetch` that name the repository and the point in
        /// time (`--repo DIR`, `--as-of T`); no secret may be among them.
        repo_args: Vec<String>,
        /// The credentials `restore_command` logs in with, copied (mode 0600) to
        /// `KEY.credentials` beside the key copy and passed with `--credentials`; `None`:
        /// the environment's (e.g. the AWS chain).
        credentials: Option<zeroize::Zeroizing<Vec<u8>>>,
    },
    /// This command, as is (PostgreSQL's `%f` and `%p`): a program embedding the library
    /// brings the WAL its own way (e.g. [`super::wal_fetch`] into a directory beforehand).
    /// No key copy is written.
    Custom(String),
}

impl std::fmt::Debug for RecoveryCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The credentials are a secret: never in a log.
            Self::Coffer { program, repo_args, credentials } => f
                .debug_struct("Coffer")
                .field("program", program)
                .field("repo_args", repo_args)
                .field("credentials", &credentials.as_ref().map(|_| "…"))
                .finish(),
            Self::Custom(c) => f.debug_tuple("Custom").field(c).finish(),
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreReport {
    /// The data directory (absolute).
    pub target: PathBuf,
    /// The base backup restored.
    pub base: BaseBackup,
    /// The key copy `restore_command` reads ([`RecoveryCommand::Coffer`]).
    pub key_file: Option<PathBuf>,
    /// The credentials copy `restore_command` presents, if any.
    pub credentials_file: Option<PathBuf>,
    /// Whether the server was started and has been promoted.
    pub started: bool,
}

/// Restores a base backup of `repo` and the recovery settings into `opts.target`.
///
/// # Errors
/// `Invalid` for a bad request (no such cluster or base backup, a non-empty target);
/// `MissingWal` for a gap on the way to the target; `Unpack`, I/O, repository errors;
/// `Server` when `--start`'s recovery fails; cancellation.
pub fn restore(
    repo: &Repository,
    opts: &RestoreOptions,
    cmd: &RecoveryCommand,
    ctl: &JobControl,
) -> Result<RestoreReport> {
    // The command line's argument group says the same; options from a file are checked here.
    let goals = [opts.time.is_some(), opts.lsn.is_some(), opts.name.is_some(), opts.latest];
    if goals.iter().filter(|g| **g).count() != 1 {
        return Err(PgError::Invalid("a restore needs exactly one target: time, lsn, name or latest".into()));
    }
    ctl.emit(&Event::Phase { name: "plan" });
    let all = base_backups(repo)?;
    let sysid = pick_cluster(repo, &all, opts.sysid, opts.cluster.as_deref())?;
    let bases: Vec<&BaseBackup> = all.iter().filter(|b| b.sysid == sysid).collect();
    let wal = ClusterWal::load(repo, sysid, &bases)?;
    // A restore point is found in the archived WAL, so the base backup chosen precedes it.
    let point_lsn = match &opts.name {
        Some(n) => Some(find_restore_point(repo, sysid, &wal, n, ctl)?),
        None => None,
    };
    let history = wal.load_history(repo, sysid, ctl)?;
    let target = match (opts.time, opts.lsn.or(point_lsn)) {
        (Some(t), _) => PlanTarget::Time(t),
        (None, Some(l)) => PlanTarget::Lsn(l),
        (None, None) => PlanTarget::Latest,
    };
    let plan = RestorePlan::choose(sysid, &bases, &history, target, opts.timeline)?;
    plan.check_wal(&wal)?;
    let base = &plan.base;
    // recovery_target_name stops at the first restore point of that name recovery meets;
    // the newest is meant: with an older one on the way, recover to the newest's LSN.
    let mut point_as_lsn = None;
    if let (Some(n), Some(l)) = (&opts.name, point_lsn) {
        let from = base.start_lsn.segment(base.seg_size);
        let earlier = earlier_restore_points(repo, sysid, &wal, n, base.seg_size, from, l, ctl)?;
        if !earlier.is_empty() {
            warn(
                ctl,
                n,
                &format!(
                    "restore point {n:?} was created {} times since base backup {}; recovering to the newest (near LSN {l}), not the first",
                    earlier.len() + 1,
                    base.short(),
                ),
            );
            point_as_lsn = Some(l);
        }
    }

    let dir = &opts.target;
    let not_empty = std::fs::read_dir(dir).map(|mut d| d.next().is_some());
    if dir.exists() && not_empty.map_err(io_err(format!("cannot read {}", dir.display())))? {
        return Err(PgError::Invalid(format!("restore target {} is not empty", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("cannot set the mode of {}", dir.display())))?;
    }
    let dir = std::path::absolute(dir).map_err(io_err(format!("cannot resolve {}", dir.display())))?;

    // base.tar, written by parallel writers straight into DIR and fsynced (see
    // crate::tar and docs/postgres.md, "Restore").
    ctl.check()?;
    ctl.emit(&Event::Phase { name: "restore" });
    let index = repo.load_index()?;
    // From a local vault, blobs are read by range (no packs cached whole: memory, and
    // one copy less); from S3, whole packs, a few cached.
    let reader = if super::is_remote(repo) {
        coffer_repository::SharedReader::new(repo, &index, 6)
    } else {
        coffer_repository::SharedReader::ranged(repo, &index, 16)
    };
    let tree = reader.tree(&base.tree)?;
    let node = tree
        .find(b"base.tar")
        .ok_or_else(|| PgError::Invalid(format!("base backup {} has no base.tar", base.snapshot)))?;
    ctl.emit(&Event::Total { total: coffer_repository::Progress::new(0, node.size), complete: true });
    crate::tar::unpack_job(&reader, &node.content, &dir, crate::tar::Threads::default(), ctl).map_err(|source| {
        PgError::Unpack { snapshot: base.short().to_owned(), dir: dir.display().to_string(), source: Box::new(source) }
    })?;
    ctl.check()?;

    let (command, key_file, credentials_copy) = match cmd {
        RecoveryCommand::Coffer { program, repo_args, credentials } => {
            let (command, key, creds) = coffer_command(
                repo,
                opts,
                &dir,
                sysid,
                program,
                repo_args,
                credentials.as_ref().map(|c| c.as_slice()),
            )?;
            (command, Some(key), creds)
        }
        RecoveryCommand::Custom(c) => (c.clone(), None, None),
    };
    let mut conf = String::from("\n# Added by coffer pg restore: recovery from the coffer repository.\n");
    conf += &format!("restore_command = {}\n", conf_quote(&command));
    if let Some(t) = opts.time {
        conf += &format!("recovery_target_time = {}\n", conf_quote(&pg_time(t)));
    } else if let Some(l) = opts.lsn {
        conf += &format!("recovery_target_lsn = {}\n", conf_quote(&l.to_string()));
    } else if let Some(l) = point_as_lsn {
        // The scan's LSN lies inside the restore point's record: stopping before the
        // first record starting at or after it applies that record and nothing later.
        conf += &format!("recovery_target_lsn = {}\nrecovery_target_inclusive = off\n", conf_quote(&l.to_string()));
    } else if let Some(n) = &opts.name {
        conf += &format!("recovery_target_name = {}\n", conf_quote(n));
    }
    match opts.timeline {
        Some(t) => conf += &format!("recovery_target_timeline = '{t}'\n"),
        None => conf += "recovery_target_timeline = 'latest'\n",
    }
    if !opts.latest {
        conf += "recovery_target_action = 'promote'\n";
    }
    // What would stop the restored server from starting or make it act as the source.
    conf += "archive_mode = 'off'\narchive_command = ''\nsynchronous_standby_names = ''\n";
    conf += "primary_conninfo = ''\nprimary_slot_name = ''\n";
    let auto = dir.join("postgresql.auto.conf");
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&auto)
        .and_then(|mut f| f.write_all(conf.as_bytes()))
        .map_err(io_err(format!("cannot write {}", auto.display())))?;
    let _ = std::fs::remove_file(dir.join("standby.signal"));
    std::fs::write(dir.join("recovery.signal"), b"")
        .map_err(io_err(format!("cannot write {}/recovery.signal", dir.display())))?;
    // Durable before success is reported (a reported restore survives a power loss): the
    // unpack fsynced every file and directory of the base backup; what was written since —
    // the settings, recovery.signal, DIR's entries, the key file beside DIR — is synced here,
    // DIR's parent last. PostgreSQL fsyncs the data directory again at its first start
    // (recovery_init_sync_method) and then finds it clean.
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let mut synced = vec![auto, dir.join("recovery.signal"), dir.clone(), parent.to_path_buf()];
    synced.extend(credentials_copy.iter().cloned());
    synced.extend(key_file.as_deref().and_then(Path::parent).filter(|k| *k != parent).map(Path::to_path_buf));
    for p in &synced {
        std::fs::File::open(p).and_then(|f| f.sync_all()).map_err(io_err(format!("cannot sync {}", p.display())))?;
    }

    if opts.start {
        ctl.emit(&Event::Phase { name: "recover" });
        start_and_wait(&dir, opts.start_timeout, ctl)?;
    }
    Ok(RestoreReport {
        target: dir,
        base: base.clone(),
        key_file,
        credentials_file: credentials_copy,
        started: opts.start,
    })
}

/// `coffer … pg wal-fetch` as `restore_command`, with the key (and credentials) it needs
/// copied beside `dir`. restore_command runs once per WAL file: it gets the unwrapped
/// repository key, so it skips the password's key derivation (Argon2id, ~0.2 s a call). The
/// key opens this repository only (the password may open others) and goes beside the data
/// directory, never inside it, where a later base backup would carry it.
fn coffer_command(
    repo: &Repository,
    opts: &RestoreOptions,
    dir: &Path,
    sysid: u64,
    program: &Path,
    repo_args: &[String],
    credentials: Option<&[u8]>,
) -> Result<(String, PathBuf, Option<PathBuf>)> {
    let key_file = match &opts.key_copy {
        Some(p) => std::path::absolute(p).map_err(io_err(format!("cannot resolve {}", p.display())))?,
        None => {
            let mut name = dir.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
            name.push(".coffer-key");
            dir.with_file_name(name)
        }
    };
    // Left by an earlier restore to this directory: replaced, never written through (a
    // symbolic link there is removed, not followed).
    let _ = std::fs::remove_file(&key_file);
    super::write_key_file(repo, &key_file)?;
    let credentials_copy = match credentials {
        Some(text) => {
            let mut name = key_file.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
            name.push(".credentials");
            let copy = key_file.with_file_name(name);
            // As for the key copy: an earlier restore's file is replaced, never written through.
            let _ = std::fs::remove_file(&copy);
            let mut f = create_0600(&copy)?;
            f.write_all(text)
                .and_then(|()| f.sync_all())
                .map_err(io_err(format!("cannot write {}", copy.display())))?;
            Some(copy)
        }
        None => None,
    };
    let mut args: Vec<String> = repo_args.iter().map(|a| sh_quote(a)).collect();
    if let Some(c) = &credentials_copy {
        args.push("--credentials".into());
        args.push(sh_quote(&c.display().to_string()));
    }
    let command = format!(
        "{} {} pg wal-fetch --key-file {} --sysid {sysid} %f %p",
        sh_quote(&program.display().to_string()),
        args.join(" "),
        sh_quote(&key_file.display().to_string())
    );
    Ok((command, key_file, credentials_copy))
}

/// The LSN of the newest restore point named `name` in the archived WAL (an upper bound:
/// the segment offset where its record's data is found, see [`restore_point_hits`]).
fn find_restore_point(repo: &Repository, sysid: u64, wal: &ClusterWal, name: &str, ctl: &JobControl) -> Result<Lsn> {
    if name.is_empty() || name.len() >= 64 {
        return Err(PgError::Invalid(format!("restore point name {name:?} must have 1 to 63 bytes")));
    }
    for n in wal.names.iter().rev() {
        let Some(seg) = Segment::parse(n, wal.seg_size) else { continue };
        ctl.check()?;
        let Some(data) = repo.get_wal(sysid, n)? else { continue };
        if let Some(&off) = restore_point_hits(&data, name).last() {
            return Ok(Lsn(seg.number * wal.seg_size + off as u64));
        }
    }
    Err(PgError::Invalid(format!("restore point {name:?} is not in the archived WAL of cluster {sysid}")))
}

/// The LSNs of other restore points named `name` that recovery from segment `from_seg`
/// would pass before the one at `newest` (PostgreSQL stops at the first it replays).
#[allow(clippy::too_many_arguments)]
fn earlier_restore_points(
    repo: &Repository,
    sysid: u64,
    wal: &ClusterWal,
    name: &str,
    seg_size: u64,
    from_seg: u64,
    newest: Lsn,
    ctl: &JobControl,
) -> Result<Vec<Lsn>> {
    let mut found = BTreeSet::new();
    for n in &wal.names {
        let Some(seg) = Segment::parse(n, seg_size) else { continue };
        if seg.number < from_seg || seg.number > newest.segment(seg_size) {
            continue;
        }
        ctl.check()?;
        let Some(data) = repo.get_wal(sysid, n)? else { continue };
        // A timeline's first segment repeats its parent's records: the same LSN twice is
        // one restore point.
        found.extend(restore_point_hits(&data, name).into_iter().map(|o| seg.number * seg_size + o as u64));
    }
    found.remove(&newest.0);
    Ok(found.into_iter().filter(|l| *l < newest.0).map(Lsn).collect())
}

/// A time as PostgreSQL's `timestamptz` input reads it in any `DateStyle` (UTC, µs).
fn pg_time(t: Timestamp) -> String {
    format!("{}.{:06}+00", t.strftime("%Y-%m-%d %H:%M:%S"), t.subsec_microsecond())
}

/// Quotes for a PostgreSQL configuration value.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Quotes for `sh -c`.
pub(super) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `restore --start`: starts the server on `dir` listening only on a socket in `dir`, and
/// waits until it has left recovery (reached the target and been promoted). A server that
/// stops instead (e.g. "recovery ended before configured recovery target was reached"
/// after a missing segment) is an error quoting the end of its log.
fn start_and_wait(dir: &Path, timeout: Duration, ctl: &JobControl) -> Result<()> {
    start_server(dir, &StartSettings { timeout, ..StartSettings::default() }, ctl).map(|_| ())
}

/// How [`start_server`] starts and reaches a restored server.
#[derive(Clone, Debug, Default)]
pub(crate) struct StartSettings<'a> {
    /// How long recovery may take.
    pub timeout: Duration,
    /// Run `pg_ctl` (and so the server) as this user (`setpriv`); `None`: as this process.
    pub run_as: Option<&'a super::drill::RunAs>,
    /// The roles to try, in order, when asking the server whether it is still in recovery;
    /// empty: the environment's (`PGUSER`, else the operating-system user).
    pub users: &'a [String],
    /// More server settings (`-c NAME=VALUE`, shell-quoted), after the socket ones.
    pub extra: Vec<String>,
}

/// Starts the server on `dir` (socket in `dir`, no TCP) as `s` says and waits until it has
/// left recovery; returns the role that reached it (none: the environment's).
pub(crate) fn start_server(dir: &Path, s: &StartSettings<'_>, ctl: &JobControl) -> Result<Option<String>> {
    let log = dir.join("coffer-restore.log");
    let mut opts =
        format!("-c listen_addresses='' -c unix_socket_directories={}", sh_quote(&dir.display().to_string()));
    for e in &s.extra {
        opts += &format!(" -c {e}");
    }
    let pg_ctl = |args: &[&std::ffi::OsStr]| -> Command {
        let mut c = super::drill::command_as(s.run_as, &pg_program("pg_ctl"));
        c.args(args).stdin(Stdio::null());
        c
    };
    let out = pg_ctl(&["start".as_ref(), "-w".as_ref(), "-t".as_ref(), "600".as_ref(), "-D".as_ref(), dir.as_os_str()])
        .arg("-l")
        .arg(&log)
        .args(["-o", &opts])
        .output()
        .map_err(io_err("cannot run pg_ctl"))?;
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("FATAL") || l.contains("coffer: error")).collect();
        lines.iter().rev().take(3).rev().copied().collect::<Vec<_>>().join(" | ")
    };
    if !out.status.success() {
        return Err(PgError::Server(format!(
            "the restored server did not start: {} {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            tail()
        )));
    }
    // Promotion is watched in postmaster.pid, whose status line turns "ready" when the
    // server accepts connections after recovery (it reads "standby" while a hot standby
    // replays): a file read every 20 ms; a query then confirms.
    let deadline = std::time::Instant::now() + s.timeout;
    let mut last_check = std::time::Instant::now();
    loop {
        ctl.check()?;
        if postmaster_status(dir).is_some_and(|s| s == "ready") {
            if s.users.is_empty() {
                if super::client::in_recovery_at_socket(dir).is_ok_and(|in_recovery| !in_recovery) {
                    return Ok(None);
                }
            } else if let Ok((mut client, user)) = super::client::connect_socket(dir, s.users, "postgres") {
                if client.query_one("select pg_is_in_recovery()", &[]).is_ok_and(|r| !r.get::<_, bool>(0)) {
                    return Ok(Some(user));
                }
            }
        }
        // Whether the server still runs: once a second, or at once when its lock file is
        // gone (a server that stops after a failed recovery removes it).
        if last_check.elapsed() >= Duration::from_secs(1) || postmaster_status(dir).is_none() {
            last_check = std::time::Instant::now();
            let alive = pg_ctl(&["status".as_ref(), "-D".as_ref(), dir.as_os_str()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return Err(PgError::Server(format!("recovery failed and the restored server stopped: {}", tail())));
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(PgError::Server(format!(
                "recovery did not finish within {} (server log: {})",
                coffer_repository::options::format_duration(s.timeout),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The postmaster's status in `DIR/postmaster.pid` (its 8th line: "starting", "standby",
/// "ready" or "stopping"); `None` without the file.
pub(super) fn postmaster_status(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    Some(text.lines().nth(7).unwrap_or_default().trim().to_owned())
}
