//! `pg backup`: a base backup of a running cluster.
//!
//! `pg_basebackup -D - -Ft -X none -c fast` (PostgreSQL's reference client of the base
//! backup protocol) is streamed through the repository's content-defined chunker into one
//! file, `base.tar`, of a `pg-base` snapshot. The tar stream is stored as it comes rather
//! than split into its members: CDC chunks dedup unchanged relation files against earlier
//! base backups just the same (tar headers are 512-byte blocks that only touch the chunk
//! around them), and the backup is the bytes `pg_basebackup` wrote. The restore reads the
//! members back out of that stream ([`crate::tar`]).
//!
//! The cluster's facts (system identifier, timeline, start/stop LSN, WAL segment size,
//! stop time) are the snapshot's typed `pg` record (`coffer_repository::PgBase`, read back
//! as [`super::BaseBackup`]). Invariant guarded:
//! the snapshot is committed only once every WAL segment from the start to the stop LSN is
//! in the repository — a base backup without its WAL is no backup — and never when the job
//! is cancelled.

use super::{BaseBackup, Lsn, PgError, Result, client, pg_program};
use coffer_repository::wal::Segment;
use coffer_repository::{BlobKind, Event, JobControl, NewSnapshot, Node, NodeKind, Progress, Repository, Tree};
use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How to take a base backup (`pg backup`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct BaseBackupOptions {
    /// libpq connection string (else PGHOST, PGPORT, PGUSER… as usual)
    #[cfg_attr(feature = "clap", arg(long, value_name = "CONNINFO"))]
    #[serde(default)]
    pub pg: Option<String>,
    /// How long to wait for the WAL the backup needs to be archived
    #[cfg_attr(feature = "clap", arg(long, value_parser = coffer_repository::options::parse_duration, default_value = "5m", value_name = "DURATION"))]
    #[serde(default = "five_minutes", with = "coffer_repository::options::duration")]
    pub wal_timeout: Duration,
    /// Tag the snapshot (repeatable)
    #[cfg_attr(feature = "clap", arg(long = "tag", value_name = "TAG"))]
    #[serde(default)]
    pub tags: Vec<String>,
    /// A name for the cluster, stored with the base backup (restore and info accept it)
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_CLUSTER", value_name = "NAME"))]
    #[serde(default)]
    pub cluster: Option<String>,
    /// The host name recorded in the snapshot [default: this machine's]
    #[cfg_attr(feature = "clap", arg(skip))]
    #[serde(default)]
    pub host: Option<String>,
    /// How long the base backup is kept (the repository's default without any rule); the
    /// calendar rules count the cluster's earlier base backups from this host.
    #[cfg_attr(feature = "clap", command(flatten))]
    #[serde(default)]
    pub retention: coffer_repository::KeepRules,
}

fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

impl Default for BaseBackupOptions {
    fn default() -> Self {
        Self {
            pg: None,
            wal_timeout: five_minutes(),
            tags: Vec::new(),
            cluster: None,
            host: None,
            retention: coffer_repository::KeepRules::default(),
        }
    }
}

/// What `base_backup` stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BaseBackupReport {
    /// The base backup's snapshot and facts.
    #[serde(flatten)]
    pub base: BaseBackup,
    /// Bytes of `base.tar`.
    pub bytes: u64,
    /// Bytes the repository did not hold before.
    pub bytes_added: u64,
}

/// A base backup whose `pg_basebackup` runs: [`StartedBackup::finish`] stores it. Started
/// before the repository is opened, the server's checkpoint overlaps the key derivation
/// (~0.2 s); dropped unfinished, it stops `pg_basebackup` (the server aborts its side of
/// the backup when the connection closes).
pub struct StartedBackup {
    opts: BaseBackupOptions,
    facts: client::ServerFacts,
    label: String,
    child: Child,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Drop for StartedBackup {
    fn drop(&mut self) {
        // A no-op once finish has waited for it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Takes a base backup of the server `opts.pg` into `repo`: [`StartedBackup::start`] then
/// [`StartedBackup::finish`].
///
/// # Errors
/// See those.
pub fn base_backup(repo: &Repository, opts: &BaseBackupOptions, ctl: &JobControl) -> Result<BaseBackupReport> {
    StartedBackup::start(opts)?.finish(repo, ctl)
}

impl StartedBackup {
    /// Asks the server for its system identifier and segment size, and starts
    /// `pg_basebackup`.
    ///
    /// # Errors
    /// `Invalid` for a bad cluster name or connection string, `Server` when the server
    /// cannot be reached, I/O errors starting `pg_basebackup`.
    pub fn start(opts: &BaseBackupOptions) -> Result<Self> {
        if let Some(name) = &opts.cluster {
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(PgError::Invalid(format!("cluster name {name:?} must be non-empty and without spaces")));
            }
        }
        let ci = opts.pg.as_deref();
        let facts = client::server_facts(&mut client::connect(ci)?)?;
        let mut c = Command::new(pg_program("pg_basebackup"));
        // The label only has to be unique; the repository's clock is the one read everywhere.
        let label = format!("coffer {}", coffer_store::Clock::from_env().now().as_nanosecond());
        c.args(["-D", "-", "-F", "t", "-X", "none", "-c", "fast", "-l", &label]);
        if let Some(ci) = ci {
            c.args(["-d", ci]);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(super::io_err("cannot run pg_basebackup"))?;
        let log = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = err.read_to_string(&mut s);
                s
            })
        });
        Ok(Self { opts: opts.clone(), facts, label, child, log })
    }

    /// Stores the stream into `repo`, waits for the backup's WAL to be archived, and
    /// commits the snapshot.
    ///
    /// # Errors
    /// `Server` when `pg_basebackup` fails, `MissingWal` when the backup's WAL is not
    /// archived within `wal_timeout`, repository errors, cancellation.
    pub fn finish(mut self, repo: &Repository, ctl: &JobControl) -> Result<BaseBackupReport> {
        let sysid = self.facts.sysid;
        let seg_size = self.facts.seg_size;
        let now = repo.clock().now();
        let host =
            self.opts.host.clone().unwrap_or_else(|| rustix::system::uname().nodename().to_string_lossy().into_owned());
        let paths = vec![format!("pg:{sysid}")];
        // The one expiry computation (coffer_repository::retention), in the series of this
        // cluster's base backups from this host (what the calendar rules count).
        let rules = &self.opts.retention;
        let policy = &repo.config().retention;
        let expires = if rules.needs_history() {
            let all = repo.snapshots()?;
            let series = coffer_repository::Series { kind: "pg-base", host: &host, paths: &paths };
            rules.expiry_in_series(now, all.iter().map(|(_, s)| s), &series, policy)?
        } else {
            rules.expiry(now, &[], policy)?
        };
        let mut w = repo.writer(expires)?;
        let stdout = self.child.stdout.take().ok_or_else(|| PgError::Server("pg_basebackup has no output".into()))?;
        // A pipe holds 64 KiB by default: pg_basebackup and the chunker then take turns a
        // thousand times per 64 MiB. 1 MiB (the unprivileged maximum) lets each run longer.
        // Best effort: a smaller pipe only costs switches.
        let _ = rustix::pipe::fcntl_setpipe_size(&stdout, 1 << 20);
        ctl.emit(&Event::Phase { name: "backup" });
        let mut content = Vec::new();
        let mut add_err = None;
        let read = coffer_repository::chunker::Chunker::new(w.repo_chunker()).chunks(stdout, u64::MAX, |chunk| {
            let added = ctl.check().and_then(|()| w.add(BlobKind::Data, chunk));
            match added {
                Ok(id) => {
                    content.push(id);
                    ctl.emit(&Event::Advance(Progress::new(0, chunk.len() as u64)));
                    Ok(())
                }
                Err(e) => {
                    add_err = Some(e);
                    Err(std::io::Error::other("the repository refused a chunk"))
                }
            }
        });
        if let Some(e) = add_err {
            // Drop stops pg_basebackup.
            return Err(e.into());
        }
        let (size, chunk_err) = match read {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e.to_string())),
        };
        let status = self.child.wait().map_err(super::io_err("cannot wait for pg_basebackup"))?;
        let log = self.log.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.success() || chunk_err.is_some() {
            let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_owned();
            return Err(PgError::Server(format!("pg_basebackup failed ({status}): {}", chunk_err.unwrap_or(last))));
        }
        let stop_time = repo.clock().now();

        // The backup history file (`….backup`), archived when the backup stopped, says where
        // the backup's WAL starts and ends; with `-X none` pg_basebackup has waited for it.
        ctl.emit(&Event::Phase { name: "wal" });
        let wal_timeout = self.opts.wal_timeout;
        let deadline = std::time::Instant::now() + wal_timeout;
        let history = loop {
            ctl.check()?;
            if let Some(h) = find_backup_history(repo, sysid, &self.label)? {
                break h;
            }
            if std::time::Instant::now() >= deadline {
                return Err(PgError::MissingWal(format!(
                    "the backup history file of this base backup was not archived within {} (is archive_command = 'coffer pg wal-push %p' set?)",
                    coffer_repository::options::format_duration(wal_timeout)
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let field = |k: &str| {
            history
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(|v| v.trim().split(' ').next().unwrap_or_default().to_owned())
                .ok_or_else(|| PgError::Server(format!("backup history file lacks {k}")))
        };
        let lsn = |k: &str| -> Result<Lsn> { field(k)?.parse().map_err(|e| PgError::Server(format!("{k}: {e}"))) };
        let start_lsn = lsn("START WAL LOCATION")?;
        let stop_lsn = lsn("STOP WAL LOCATION")?;
        let timeline: u32 = field("START TIMELINE")?
            .parse()
            .map_err(|_| PgError::Server("bad timeline in the backup history file".into()))?;

        // The facts are the snapshot's typed `pg` record (format version 1; base backups
        // of earlier versions kept them in `pg-…=` tags, still read: catalog.rs).
        let meta = coffer_repository::PgBase {
            version: coffer_repository::PG_BASE_VERSION,
            sysid,
            timeline,
            start_lsn: start_lsn.0,
            stop_lsn: stop_lsn.0,
            stop_time,
            wal_segment_size: seg_size,
            cluster: self.opts.cluster.clone(),
        };
        let mut base = BaseBackup {
            snapshot: String::new(),
            sysid,
            timeline,
            start_lsn,
            stop_lsn,
            stop_time,
            seg_size,
            cluster: self.opts.cluster.clone(),
            tree: coffer_repository::Id([0; 32]),
        };

        // The backup is only usable with its WAL: wait until all of it is archived.
        let deadline = std::time::Instant::now() + wal_timeout;
        loop {
            ctl.check()?;
            let have = repo.list_wal(sysid)?;
            let missing: Vec<String> = base
                .needed_segments()
                .into_iter()
                .map(|s: Segment| s.name(seg_size))
                .filter(|s| !have.iter().any(|h| h == s || h.strip_suffix(".partial") == Some(s)))
                .collect();
            if missing.is_empty() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(PgError::MissingWal(format!(
                    "the base backup needs WAL segment {} which was not archived within {} (is archive_command = 'coffer pg wal-push %p' set?)",
                    missing[0],
                    coffer_repository::options::format_duration(wal_timeout)
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }

        let node = Node {
            name: "base.tar".into(),
            name_raw: None,
            kind: NodeKind::File,
            mode: 0o600,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: stop_time,
            atime: stop_time,
            ctime: stop_time,
            inode: 0,
            device: 0,
            links: 1,
            size,
            content,
            subtree: None,
            target: None,
            target_raw: None,
            rdev: 0,
            xattrs: Vec::new(),
        };
        let tree = w.add(BlobKind::Tree, &Tree { nodes: vec![node] }.to_bytes())?;
        w.summary_mut().files = 1;
        w.summary_mut().bytes = size;
        let added = w.summary_mut().bytes_added;
        // The last boundary: past it, the snapshot is acknowledged. The repository links it
        // into the hash chain and fills in its expiry, lock date and counts.
        ctl.check()?;
        let id = w.commit(NewSnapshot {
            kind: "pg-base".into(),
            time: now,
            host,
            paths,
            tags: self.opts.tags.clone(),
            tree,
            parent: None,
            pg: Some(meta),
        })?;
        ctl.emit(&Event::Snapshot { id });
        base.snapshot = id.to_string();
        base.tree = tree;
        Ok(BaseBackupReport { base, bytes: size, bytes_added: added })
    }
}

/// The text of the archived backup history file whose `LABEL:` is `label`.
fn find_backup_history(repo: &Repository, sysid: u64, label: &str) -> Result<Option<String>> {
    let names = repo.list_wal(sysid)?;
    for n in names.iter().rev().filter(|n| n.ends_with(".backup")) {
        let Some(data) = repo.get_wal(sysid, n)? else { continue };
        let text = String::from_utf8_lossy(&data).into_owned();
        if text.lines().any(|l| l.strip_prefix("LABEL: ") == Some(label)) {
            return Ok(Some(text));
        }
    }
    Ok(None)
}
