//! `coffer pg …`: PostgreSQL continuous archiving and point-in-time recovery.
//!
//! - `wal-push %p` (`archive_command`): stores one WAL file as its own locked object
//!   (`pg/SYSID/wal/TLI/NAME`, see `coffer_repository::wal`); exits 0 only once it is
//!   durable; the same content again succeeds, different content is refused.
//! - `wal-fetch %f %p` (`restore_command`): fetches, authenticates and writes the file
//!   atomically (temporary file, fsync, rename); exit 1 without a message when it is not
//!   archived, so recovery ends normally. A segment missing while a later one is archived
//!   is a gap: that is reported on stderr (still exit 1). The next segments are prepared
//!   by a detached worker while PostgreSQL replays (see `Prefetch`).
//! - `backup`: `pg_basebackup -D - -Ft -X none -c fast` streamed through the repository's
//!   content-defined chunker into one file (`base.tar`) of a `pg-base` snapshot. The tar
//!   stream is stored as it comes rather than split into its members: CDC chunks dedup
//!   unchanged relation files against earlier base backups just the same (tar headers
//!   are 512-byte blocks that only touch the chunk around them), and the backup is the
//!   bytes `pg_basebackup` wrote. The restore reads the members back out of that stream
//!   (`coffer_sources::tar`).
//!   The cluster's facts (system identifier, timeline, start/stop LSN, WAL segment size,
//!   stop time) are the snapshot's `pg-…=` tags. It completes only once every WAL segment
//!   from the start to the stop LSN is in the repository.
//! - `restore --target DIR (--time T | --lsn L | --name NAME | --latest)`: writes the
//!   newest base backup preceding the target — `base.tar`'s members straight into DIR,
//!   blobs decoded and files written and fsynced on several threads
//!   (`coffer_sources::tar`, byte-exact with `tar -x -p`) — and the recovery settings,
//!   all fsynced before it reports success (the invariant: a reported restore survives a
//!   power loss); `--start` starts the server and waits for the promotion (see
//!   `docs/postgres.md`).
//! - `info`: per cluster, base backups, archived WAL, recovery window (ending at the last
//!   archived commit's time, see `xlog`) and gaps.
//! - `export-key FILE`: the repository's unwrapped key for `wal-push`/`wal-fetch
//!   --key-file`, which PostgreSQL runs once per WAL file: opening with a password costs
//!   an Argon2id derivation (~0.2 s) each time. `restore` writes such a copy beside the
//!   data directory (never inside it, where a base backup would carry it) for its
//!   `restore_command`.
//! - `stream`: `pg_receivewal` with a replication slot into a spool directory, whose
//!   segments (and the unfinished one, at intervals) are stored as `wal-push` stores them
//!   (see [`stream`]).
//!
//! The system identifier of a WAL segment comes from its long page header (the first page
//! of every segment carries it); for `.history`/`.backup` files and for `wal-fetch` it is
//! read from `global/pg_control` of the data directory (the working directory of
//! `archive_command`/`restore_command`), unless `--sysid` is given.

mod stream;
mod xlog;

use crate::Global;
use crate::output::Output;
use crate::repo::{RepoOpts, open_repo};
use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Subcommand};
use coffer_repository::wal::{XLP_LONG_HEADER, segment_size_from_header};
use coffer_repository::{BlobKind, ChainLink, Node, NodeKind, Repository, Snapshot, Tree, WalPut};
use coffer_store::Role;
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `coffer pg`.
#[derive(Debug, Args)]
pub struct PgArgs {
    #[command(subcommand)]
    cmd: PgCmd,
}

#[derive(Debug, Subcommand)]
enum PgCmd {
    /// Archive one WAL file (for archive_command = 'coffer pg wal-push %p')
    WalPush(WalPushArgs),
    /// Fetch one WAL file (for restore_command = 'coffer pg wal-fetch %f %p'); exit 1 if absent
    WalFetch(WalFetchArgs),
    /// Take a base backup of a running cluster with pg_basebackup
    Backup(BackupArgs),
    /// Write a base backup and recovery settings for point-in-time recovery
    Restore(RestoreArgs),
    /// Show clusters, base backups, archived WAL, recovery windows and gaps
    Info(InfoArgs),
    /// Receive WAL continuously (pg_receivewal, replication slot) into the repository
    Stream(stream::StreamArgs),
    /// Write the repository key to a file for wal-push/wal-fetch --key-file
    ExportKey(ExportKeyArgs),
}

/// `pg wal-push`.
#[derive(Debug, Args)]
struct WalPushArgs {
    /// The WAL file (%p)
    path: PathBuf,
    /// The cluster's system identifier [default: from the segment header or global/pg_control]
    #[arg(long, env = "COFFER_PG_SYSID")]
    sysid: Option<u64>,
    /// Open the repository with the key `pg export-key` wrote to FILE instead of the
    /// password (no key derivation per call)
    #[arg(long, env = "COFFER_PG_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// `pg export-key`.
#[derive(Debug, Args)]
struct ExportKeyArgs {
    /// Where to write the repository key (created, mode 0600; must not exist)
    file: PathBuf,
}

/// `pg wal-fetch`.
#[derive(Debug, Args)]
struct WalFetchArgs {
    /// The WAL file name (%f)
    name: String,
    /// Where to write it (%p)
    dest: PathBuf,
    /// The cluster's system identifier [default: from global/pg_control in the working directory]
    #[arg(long, env = "COFFER_PG_SYSID")]
    sysid: Option<u64>,
    /// Fetch up to this many following segments in the background into a spool beside DEST
    /// (coffer-prefetch/SYSID), for the next calls; 0 turns it off
    #[arg(long, env = "COFFER_PG_PREFETCH", default_value_t = 8, value_name = "N")]
    prefetch: u64,
    /// Open the repository with the key `pg restore` saved in FILE instead of the password
    /// (no key derivation per call)
    #[arg(long, env = "COFFER_PG_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Internal: run as the detached worker that fills the prefetch spool after NAME
    #[arg(long, hide = true)]
    prefetch_worker: bool,
    /// Internal: the cluster's WAL segment size, for the prefetch worker (the call that
    /// starts it reads it from the fetched segment's long page header)
    #[arg(long, hide = true, value_name = "BYTES", requires = "prefetch_worker")]
    wal_segment_size: Option<u64>,
}

/// `pg backup`.
#[derive(Debug, Args)]
struct BackupArgs {
    /// libpq connection string (else PGHOST, PGPORT, PGUSER… as usual)
    #[arg(long, value_name = "CONNINFO")]
    pg: Option<String>,
    /// How long to wait for the WAL the backup needs to be archived
    #[arg(long, value_parser = crate::parse::duration, default_value = "5m", value_name = "DURATION")]
    wal_timeout: Duration,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// A name for the cluster, stored with the base backup (restore and info accept it)
    #[arg(long, env = "COFFER_PG_CLUSTER", value_name = "NAME")]
    cluster: Option<String>,
    /// Open the repository with the key `pg export-key` wrote to FILE instead of the
    /// password (no key derivation)
    #[arg(long, env = "COFFER_PG_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// `pg restore`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("goal").required(true).args(["time", "lsn", "name", "latest"])))]
struct RestoreArgs {
    /// The new data directory (must not exist or be empty)
    #[arg(long, value_name = "DIR")]
    target: PathBuf,
    /// Recover up to this time (RFC 3339)
    #[arg(long)]
    time: Option<Timestamp>,
    /// Recover up to this LSN (e.g. 0/3000060)
    #[arg(long)]
    lsn: Option<String>,
    /// Recover up to this restore point (pg_create_restore_point)
    #[arg(long)]
    name: Option<String>,
    /// Recover to the end of the archived WAL
    #[arg(long)]
    latest: bool,
    /// The cluster (needed when the repository holds several)
    #[arg(long, env = "COFFER_PG_SYSID")]
    sysid: Option<u64>,
    /// The cluster by the name its base backups were taken with (`pg backup --cluster`)
    #[arg(long, env = "COFFER_PG_CLUSTER", value_name = "NAME", conflicts_with = "sysid")]
    cluster: Option<String>,
    /// Where to write the copy of the repository key that restore_command reads (and,
    /// as FILE.credentials, the credentials it logs in with)
    /// [default: DIR.coffer-key, beside the data directory, never inside it]
    #[arg(long, value_name = "FILE")]
    key_copy: Option<PathBuf>,
    /// Recover along this timeline [default: the latest, following .history files]
    #[arg(long)]
    timeline: Option<u32>,
    /// Start the restored server (pg_ctl, unix socket in DIR only, no TCP) and wait until
    /// recovery has reached the target and the server is promoted; run as DIR's owner
    #[arg(long)]
    start: bool,
    /// How long --start waits for recovery
    #[arg(long, value_parser = crate::parse::duration, default_value = "1h", value_name = "DURATION", requires = "start")]
    start_timeout: Duration,
    /// Open the repository with the key `pg export-key` wrote to FILE instead of the
    /// password (no key derivation)
    #[arg(long, env = "COFFER_PG_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// `pg info`.
#[derive(Debug, Args)]
struct InfoArgs {
    /// Only this cluster
    #[arg(long, env = "COFFER_PG_SYSID")]
    sysid: Option<u64>,
    /// Only the cluster of this name (`pg backup --cluster`)
    #[arg(long, env = "COFFER_PG_CLUSTER", value_name = "NAME", conflicts_with = "sysid")]
    cluster: Option<String>,
    /// Open the repository with the key `pg export-key` wrote to FILE instead of the
    /// password (no key derivation)
    #[arg(long, env = "COFFER_PG_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// Runs `coffer pg …`.
pub fn run(g: &Global, r: &RepoOpts, args: PgArgs) -> Result<()> {
    match args.cmd {
        PgCmd::WalPush(a) => wal_push(g, r, &a),
        // Any failure other than "not archived" must abort recovery, not end it early:
        // PostgreSQL treats an exit status above 125 as fatal and any other as "absent".
        PgCmd::WalFetch(a) => wal_fetch(g, r, &a).map_err(|e| {
            eprintln!("coffer: error: {e:#}");
            std::process::exit(126)
        }),
        PgCmd::Backup(a) => backup(g, r, &a),
        PgCmd::Restore(a) => restore(g, r, &a),
        PgCmd::Info(a) => info(g, r, &a),
        PgCmd::Stream(a) => stream::stream(g, r, &a),
        PgCmd::ExportKey(a) => export_key(g, r, &a),
    }
}

// ---- WAL names, LSNs, headers ---------------------------------------------------------

/// The system identifier in a segment's long page header, if the file starts with one.
fn sysid_from_segment(data: &[u8]) -> Option<u64> {
    if data.len() < 40 {
        return None;
    }
    let info = u16::from_le_bytes([data[2], data[3]]);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let sysid = u64::from_le_bytes(data[24..32].try_into().ok()?);
    let seg_size = u32::from_le_bytes(data[32..36].try_into().ok()?);
    (seg_size.is_power_of_two() && sysid != 0).then_some(sysid)
}

/// The WAL segment size in the long page header of the segment file at `path`.
fn segment_size_of_file(path: &Path) -> Option<u64> {
    let mut head = [0u8; 40];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).ok()?;
    segment_size_from_header(&head)
}

/// The system identifier in `DIR/global/pg_control` (its first field).
fn sysid_from_control(dir: &Path) -> Result<u64> {
    let p = dir.join("global/pg_control");
    let mut f = std::fs::File::open(&p).with_context(|| {
        format!("cannot read {} to learn the cluster's system identifier (or pass --sysid)", p.display())
    })?;
    let mut b = [0u8; 8];
    f.read_exact(&mut b).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(u64::from_le_bytes(b))
}

fn parse_lsn(s: &str) -> Result<u64> {
    let (hi, lo) = s.trim().split_once('/').ok_or_else(|| anyhow!("{s:?} is not an LSN (like 0/3000060)"))?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| anyhow!("{s:?} is not an LSN"))?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| anyhow!("{s:?} is not an LSN"))?;
    Ok((hi << 32) | lo)
}

fn fmt_lsn(l: u64) -> String {
    format!("{:X}/{:X}", l >> 32, l & 0xffff_ffff)
}

fn segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let per = 0x1_0000_0000 / seg_size;
    format!("{tli:08X}{:08X}{:08X}", segno / per, segno % per)
}

/// Whether `name` is a plain segment name (24 hex digits, maybe `.partial`); unlike its
/// number, this does not depend on the segment size.
fn is_segment_name(name: &str) -> bool {
    let base = name.strip_suffix(".partial").unwrap_or(name);
    base.len() == 24 && base.bytes().all(|b| b.is_ascii_hexdigit())
}

/// (timeline, segment number) of a plain segment name (24 hex digits, maybe `.partial`).
fn parse_segment(name: &str, seg_size: u64) -> Option<(u32, u64)> {
    let base = name.strip_suffix(".partial").unwrap_or(name);
    if base.len() != 24 || !base.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&base[..8], 16).ok()?;
    let hi = u64::from_str_radix(&base[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&base[16..], 16).ok()?;
    Some((tli, hi * (0x1_0000_0000 / seg_size) + lo))
}

/// PostgreSQL's default WAL segment size: only a fallback where the cluster's own is
/// unknown (no base backup, no long page header).
const DEFAULT_SEG_SIZE: u64 = 16 * 1024 * 1024;

/// Segments missing between the first and the last archived one of each timeline.
fn gaps(names: &[String], seg_size: u64) -> Vec<String> {
    let mut by_tli: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for n in names {
        if let Some((t, s)) = parse_segment(n, seg_size) {
            by_tli.entry(t).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for (tli, mut segs) in by_tli {
        segs.sort_unstable();
        segs.dedup();
        for w in segs.windows(2) {
            for s in w[0] + 1..w[1] {
                out.push(segment_name(tli, s, seg_size));
            }
        }
    }
    out
}

// ---- wal-push / wal-fetch --------------------------------------------------------------

fn wal_push(g: &Global, r: &RepoOpts, a: &WalPushArgs) -> Result<()> {
    let name = a
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{} is not a WAL file path", a.path.display()))?
        .to_owned();
    let data = std::fs::read(&a.path).with_context(|| format!("cannot read WAL file {}", a.path.display()))?;
    let sysid = match a.sysid.or_else(|| sysid_from_segment(&data)) {
        Some(s) => s,
        None => sysid_from_control(Path::new("."))?,
    };
    let repo = open_pg(g, r, Role::Writer, a.key_file.as_deref())?;
    let put = repo.put_wal(sysid, &name, &data).with_context(|| format!("cannot archive WAL file {name}"))?;
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&serde_json::json!({"file": name, "sysid": sysid.to_string(), "stored": put == WalPut::Stored}))?;
    }
    out.finish()
}

/// Opens the repository with `key_file` when given, else with the password.
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

fn wal_fetch(g: &Global, r: &RepoOpts, a: &WalFetchArgs) -> Result<()> {
    let sysid = match a.sysid {
        Some(s) => s,
        None => sysid_from_control(Path::new("."))?,
    };
    let repo = open_pg(g, r, Role::Reader, a.key_file.as_deref())?;
    let dest_dir = a.dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut prefetch =
        Prefetch { dir: dest_dir.join("coffer-prefetch"), sysid, depth: a.prefetch, seg_size: DEFAULT_SEG_SIZE };
    // Only completed segments are prefetched: they are never replaced, so a spooled copy
    // that authenticates under its exact name (timeline included) is the archived one.
    let is_segment = is_segment_name(&a.name) && !a.name.ends_with(".partial");
    if a.prefetch_worker {
        // The background half of the prefetch: a cache, whose failures cost speed only
        // (nobody reads this process's output).
        prefetch.seg_size = a.wal_segment_size.unwrap_or(DEFAULT_SEG_SIZE);
        if let Some((tli, seg)) = parse_segment(&a.name, prefetch.seg_size).filter(|_| is_segment) {
            let _ = prefetch.fill(&repo, tli, seg);
        }
        return Ok(());
    }
    let mut from = "repository";
    if is_segment && a.prefetch > 0 && prefetch.take(&repo, &a.name, &a.dest) {
        from = "prefetch";
    } else {
        let mut data = repo.get_wal(sysid, &a.name).with_context(|| format!("cannot fetch WAL file {}", a.name))?;
        if data.is_none() && is_segment {
            data = repo.get_wal(sysid, &format!("{}.partial", a.name))?;
        }
        let Some(data) = data else {
            // The end of the archive (or a gap): recovery stops asking for segments, so the
            // spool has served its purpose.
            let _ = std::fs::remove_dir_all(&prefetch.dir);
            // A missing segment with later ones archived is a gap, not the end of the archive.
            // (Names of one timeline sort in WAL order whatever the segment size.)
            if is_segment_name(&a.name) {
                let base = a.name.strip_suffix(".partial").unwrap_or(&a.name);
                let later = repo.list_wal(sysid)?.iter().any(|n| {
                    let nb = n.strip_suffix(".partial").unwrap_or(n);
                    is_segment_name(n) && nb[..8] == base[..8] && nb > base
                });
                if later {
                    eprintln!(
                        "coffer: error: WAL segment {} is missing from the archive (later segments exist)",
                        a.name
                    );
                }
            }
            std::process::exit(1);
        };
        write_atomically(&a.dest, &data)?;
    }
    let mut started = false;
    // The following segments' names depend on the cluster's segment size, which the
    // segment just served states in its long page header.
    if let Some(size) = segment_size_of_file(&a.dest) {
        prefetch.seg_size = size;
    }
    if let Some((tli, seg)) = parse_segment(&a.name, prefetch.seg_size).filter(|_| is_segment && a.prefetch > 0) {
        // A cache: its failures cost speed, never the fetch itself.
        match prefetch.refill(tli, seg) {
            Ok(s) => started = s,
            Err(e) => eprintln!("coffer: warning: prefetch after {}: {e:#}", a.name),
        }
    }
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&serde_json::json!({"file": a.name, "from": from, "prefetching": started}))?;
    }
    out.finish()
}

/// `wal-fetch`'s spool of the segments that follow the one asked for. Recovery asks for
/// segments one `restore_command` call at a time and replays nothing while a call runs, so
/// whatever a call does is recovery time. Fetching, authenticating, decompressing, writing
/// and syncing a segment took 60–120 ms of each call (bench/README.md); now a background
/// worker — this command again, with `--prefetch-worker`, detached — does all of it for the
/// next `depth` segments while PostgreSQL replays, and a call whose segment is spooled only
/// moves the file into place and checks it.
///
/// Invariants guarded:
/// - a spooled file is served only if it authenticates: its name carries a keyed hash
///   (BLAKE3, key derived from the repository key, see `MasterKey::keyed_hasher`) of the
///   segment's name and content, checked on the file at `%p` after it was moved there —
///   the bytes checked are the bytes PostgreSQL reads. A torn or changed file, one from
///   another repository or filed under another segment's or timeline's name is discarded
///   (with a warning) and the segment fetched from the repository;
/// - a spooled file appears under its final name only once it is complete and fsynced (so
///   PostgreSQL's own fsync when it keeps the segment finds it clean);
/// - at most one worker per spool (`flock` on `.lock`); it fetches at most `depth`
///   segments past the one it was started for, and exits; the spool holds at most those
///   (passed ones are removed by the next call) and is removed at the end of the archive;
/// - it lives beside `%p`, in `pg_wal`, whose contents base backups leave out.
///
/// The spool holds WAL in the clear, as `pg_wal` itself does a moment later: PostgreSQL
/// keeps every segment restored by `restore_command` there.
struct Prefetch {
    dir: PathBuf,
    sysid: u64,
    depth: u64,
    /// The cluster's WAL segment size (segment names and numbers depend on it).
    seg_size: u64,
}

/// The purpose of the spool's keyed hash (see `MasterKey::keyed_hasher`).
const SPOOL_TAG: &str = "pg wal-fetch prefetch spool";

impl Prefetch {
    fn cluster_dir(&self) -> PathBuf {
        self.dir.join(self.sysid.to_string())
    }

    /// The segment name of a spool entry (`NAME.TAG`, or `.NAME.tmp` while a worker writes
    /// it) and its tag.
    fn entry(file_name: &str) -> Option<(&str, Option<&str>)> {
        if let Some(tmp) = file_name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
            return Some((tmp, None));
        }
        let (name, tag) = file_name.split_once('.')?;
        (tag.len() == 64 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some((name, Some(tag)))
    }

    /// The keyed hasher for segment `name`'s content.
    fn hasher(repo: &Repository, name: &str) -> blake3::Hasher {
        let mut h = repo.key().keyed_hasher(SPOOL_TAG);
        h.update(name.as_bytes());
        h.update(&[0]);
        h
    }

    /// The keyed hash of segment `name` with content `data`, in hex.
    fn tag(repo: &Repository, name: &str, data: &[u8]) -> String {
        Self::hasher(repo, name).update(data).finalize().to_hex().to_string()
    }

    /// The keyed hash of segment `name` with the content of `file`, in hex.
    fn tag_file(repo: &Repository, name: &str, file: &mut std::fs::File) -> std::io::Result<String> {
        let mut h = Self::hasher(repo, name);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(h.finalize().to_hex().to_string());
            }
            h.update(&buf[..n]);
        }
    }

    /// Whether a worker holds the spool's lock.
    fn worker_running(&self) -> bool {
        let Ok(f) = std::fs::File::open(self.cluster_dir().join(".lock")) else { return false };
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
    }

    /// Serves `name` from the spool at `dest`: moves the spooled file there and checks it.
    /// When a worker is still writing it, waits for it (a second fetch of the same segment
    /// would only compete with the worker). `false`: not spooled, or it did not
    /// authenticate (then `dest` is left for the caller to overwrite).
    fn take(&self, repo: &Repository, name: &str, dest: &Path) -> bool {
        let dir = self.cluster_dir();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = std::fs::read_dir(&dir).into_iter().flatten().flatten().find_map(|e| {
                let f = e.file_name().into_string().ok()?;
                let (n, tag) = Self::entry(&f)?;
                (n == name).then(|| tag.map(|t| (e.path(), t.to_owned())))?
            });
            if let Some((path, tag)) = found {
                if std::fs::rename(&path, dest).is_err() {
                    return false;
                }
                let got = std::fs::File::open(dest).and_then(|mut f| Self::tag_file(repo, name, &mut f));
                if got.as_deref().is_ok_and(|t| t.eq_ignore_ascii_case(&tag)) {
                    return true;
                }
                let _ = std::fs::remove_file(dest);
                eprintln!(
                    "coffer: warning: discarding a prefetched file: {} does not authenticate as {name}",
                    path.display()
                );
                return false;
            }
            let claimed = dir.join(format!(".{name}.tmp")).exists();
            if !claimed || !self.worker_running() || std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Drops spooled segments recovery has passed (or of another timeline), and when
    /// fewer than half of the next `depth` segments of timeline `tli` are spooled or being
    /// written and no worker runs, starts one. Returns whether it did.
    fn refill(&self, tli: u32, seg: u64) -> Result<bool> {
        let dir = self.cluster_dir();
        let running = self.worker_running();
        let mut ahead = 0;
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file_name = e.file_name().to_string_lossy().into_owned();
            if file_name == ".lock" {
                continue;
            }
            let entry = Self::entry(&file_name);
            match entry.and_then(|(n, _)| parse_segment(n, self.seg_size)) {
                // Spooled, or claimed by the running worker. (A claim without a worker is
                // left by one that was killed: removed, the next worker claims it again.)
                Some((t, s))
                    if t == tli
                        && s > seg
                        && s <= seg + self.depth
                        && (running || entry.is_some_and(|(_, tag)| tag.is_some())) =>
                {
                    ahead += 1;
                }
                // Passed, another timeline's, a dead worker's claim, or not the spool's.
                _ => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if ahead * 2 > self.depth || running {
            return Ok(false);
        }
        // This very command again, detached: PostgreSQL waits for this call only.
        use std::os::unix::process::CommandExt as _;
        Command::new(std::env::current_exe().context("cannot find the coffer executable")?)
            .args(std::env::args_os().skip(1))
            .arg("--prefetch-worker")
            .arg(format!("--wal-segment-size={}", self.seg_size))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start the prefetch worker")?;
        Ok(true)
    }

    /// The worker: takes the spool's lock (or leaves, if another worker has it), claims the
    /// segments after `seg` that are not spooled, then fetches, authenticates, decompresses,
    /// writes and fsyncs them, two at a time, each under its final name once complete.
    /// Stops at the first segment not archived, or when the spool is removed; skips one
    /// whose claim a call removed (recovery fetched it itself and passed it). Returns how
    /// many it spooled.
    fn fill(&self, repo: &Repository, tli: u32, seg: u64) -> Result<usize> {
        let dir = self.cluster_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock"))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(0);
        }
        let spooled: BTreeSet<String> = std::fs::read_dir(&dir)?
            .flatten()
            .filter_map(|e| {
                let f = e.file_name().into_string().ok()?;
                let (n, tag) = Self::entry(&f)?;
                tag.map(|_| n.to_owned())
            })
            .collect();
        let want: Vec<String> = (seg + 1..=seg + self.depth)
            .map(|s| segment_name(tli, s, self.seg_size))
            .filter(|n| !spooled.contains(n))
            .collect();
        // Claimed: a call that needs one of these waits for it rather than fetching it too.
        for n in &want {
            std::fs::File::create(dir.join(format!(".{n}.tmp")))?;
        }
        let stored = std::sync::atomic::AtomicUsize::new(0);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let end = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    use std::sync::atomic::Ordering::Relaxed;
                    loop {
                        let i = next.fetch_add(1, Relaxed);
                        let Some(name) = want.get(i) else { break };
                        let tmp = dir.join(format!(".{name}.tmp"));
                        // Some(true): spooled; Some(false): skipped, its claim is gone (the
                        // next call removed it: recovery has passed it); None: not archived.
                        let res = (|| -> Result<Option<bool>> {
                            if end.load(Relaxed) {
                                let _ = std::fs::remove_file(&tmp);
                                return Ok(Some(false));
                            }
                            if !tmp.exists() {
                                return Ok(Some(false));
                            }
                            let Some(data) = repo.get_wal(self.sysid, name)? else { return Ok(None) };
                            let tag = Self::tag(repo, name, &data);
                            let mut f = match std::fs::OpenOptions::new().write(true).truncate(true).open(&tmp) {
                                Ok(f) => f,
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(false)),
                                Err(e) => return Err(e.into()),
                            };
                            f.write_all(&data)?;
                            f.sync_all()?;
                            std::fs::rename(&tmp, dir.join(format!("{name}.{tag}")))?;
                            Ok(Some(true))
                        })();
                        match res {
                            Ok(Some(true)) => {
                                stored.fetch_add(1, Relaxed);
                            }
                            Ok(Some(false)) => {}
                            // The end of the archive (or a gap): nothing after it either.
                            Ok(None) => {
                                end.store(true, Relaxed);
                                let _ = std::fs::remove_file(&tmp);
                            }
                            // This one failed: the call that needs it fetches it itself.
                            // The spool removed (the end of recovery): stop.
                            Err(_) => {
                                let _ = std::fs::remove_file(&tmp);
                                if !dir.is_dir() {
                                    end.store(true, Relaxed);
                                }
                            }
                        }
                    }
                });
            }
        });
        drop(lock);
        Ok(stored.into_inner())
    }
}

/// `pg export-key FILE`: the repository's unwrapped key, for the commands PostgreSQL runs
/// once per WAL file. Opening with a password derives the key with Argon2id (about 0.2 s),
/// which would cap `archive_command` at a few segments a second. The file is as sensitive
/// as a password file for this repository (and opens no other), so it is created new,
/// mode 0600, and its contents are never printed.
fn export_key(g: &Global, r: &RepoOpts, a: &ExportKeyArgs) -> Result<()> {
    let repo = open_repo(g, r, Role::Reader)?;
    write_key_file(&repo, &a.file)?;
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&serde_json::json!({"key-file": a.file}))?;
    } else {
        out.line(format!("wrote the key of {} to {} (mode 0600)", repo.location(), a.file.display()))?;
    }
    out.finish()
}

/// Writes the repository key to `path`, which must not exist (mode 0600, synced).
fn write_key_file(repo: &Repository, path: &Path) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let text = repo.key().export_key_file_bytes();
    f.write_all(&text)?;
    f.sync_all()?;
    Ok(())
}

fn write_atomically(dest: &Path, data: &[u8]) -> Result<()> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.coffer-tmp", dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal")));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(data).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, dest).with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(())
}

// ---- base backup -----------------------------------------------------------------------

/// A PostgreSQL program: `COFFER_PG_BIN/NAME`, else on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin/NAME` (Debian keeps them off `PATH`).
fn pg_program(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("COFFER_PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(name);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join(name).is_file() {
                return d.join(name);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin").join(name);
            p.is_file().then_some((v, p))
        })
        .collect();
    found.sort();
    found.pop().map_or_else(|| PathBuf::from(name), |(_, p)| p)
}

fn psql(conninfo: Option<&str>, sql: &str) -> Result<String> {
    let mut c = Command::new(pg_program("psql"));
    c.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    if let Some(ci) = conninfo {
        c.args(["-d", ci]);
    }
    let out = c.stderr(Stdio::piped()).output().context("cannot run psql")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What a `pg-base` snapshot records (its `pg-…=` tags).
#[derive(Clone, Debug, serde::Serialize)]
struct BaseInfo {
    snapshot: String,
    #[serde(serialize_with = "as_string")]
    sysid: u64,
    timeline: u32,
    start_lsn: String,
    stop_lsn: String,
    stop_time: Timestamp,
    seg_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
    #[serde(skip)]
    tree: coffer_repository::Id,
}

/// System identifiers exceed JSON's exact integers (2^53): they are strings in `--json`.
fn as_string<S: serde::Serializer>(v: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl BaseInfo {
    fn from_snapshot(id: &coffer_repository::Id, s: &Snapshot) -> Option<Self> {
        if s.kind != "pg-base" {
            return None;
        }
        let tag = |k: &str| s.tags.iter().find_map(|t| t.strip_prefix(k)?.strip_prefix('=')).map(str::to_owned);
        Some(Self {
            snapshot: id.to_string(),
            sysid: tag("pg-sysid")?.parse().ok()?,
            timeline: tag("pg-timeline")?.parse().ok()?,
            start_lsn: tag("pg-start-lsn")?,
            stop_lsn: tag("pg-stop-lsn")?,
            stop_time: tag("pg-stop-time")?.parse().ok()?,
            seg_size: tag("pg-wal-segment-size")?.parse().ok()?,
            cluster: tag("pg-cluster"),
            tree: s.tree,
        })
    }

    /// The segments from the start to the stop LSN.
    fn needed_segments(&self) -> Vec<String> {
        let start = parse_lsn(&self.start_lsn).unwrap_or(0) / self.seg_size;
        let stop = parse_lsn(&self.stop_lsn).unwrap_or(1).saturating_sub(1) / self.seg_size;
        (start..=stop.max(start)).map(|s| segment_name(self.timeline, s, self.seg_size)).collect()
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

fn base_backups(repo: &Repository) -> Result<Vec<BaseInfo>> {
    Ok(repo.snapshots()?.iter().filter_map(|(id, s)| BaseInfo::from_snapshot(id, s)).collect())
}

/// Stops pg_basebackup when the backup fails: it must not outlive it (the server aborts its
/// side of the base backup when the connection closes).
fn stop(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn backup(g: &Global, r: &RepoOpts, a: &BackupArgs) -> Result<()> {
    let ci = a.pg.as_deref();
    let facts = psql(
        ci,
        "select system_identifier, (select setting from pg_settings where name = 'wal_segment_size') from pg_control_system()",
    )?;
    let (sysid, seg_size) = facts.split_once('|').ok_or_else(|| anyhow!("unexpected answer from psql: {facts}"))?;
    let sysid: u64 = sysid.parse().context("bad system identifier from the server")?;
    let seg_size: u64 = seg_size.parse().context("bad wal_segment_size from the server")?;

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
        .context("cannot run pg_basebackup")?;
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    // pg_basebackup starts with a checkpoint (`-c fast` still writes every dirty buffer)
    // while the repository is opened (the password's Argon2id derivation, ~0.2 s, and the
    // snapshot list): started first, the two overlap. If opening fails, the backup is
    // stopped (the server aborts it when the connection closes).
    let opened = (|| {
        let repo = open_pg(g, r, Role::Writer, a.key_file.as_deref())?;
        let now = repo.clock().now();
        let expires = now
            + jiff::SignedDuration::try_from(repo.config().retention.default_retain)
                .unwrap_or(jiff::SignedDuration::ZERO);
        let previous = repo.all_snapshots()?.last().map(|(id, s)| ChainLink { id: *id, expires: s.expires });
        anyhow::Ok((repo, now, expires, previous))
    })();
    let (repo, now, expires, previous) = match opened {
        Ok(o) => o,
        Err(e) => {
            stop(&mut child);
            return Err(e);
        }
    };
    let mut w = match repo.writer(expires) {
        Ok(w) => w,
        Err(e) => {
            stop(&mut child);
            return Err(e.into());
        }
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    // A pipe holds 64 KiB by default: pg_basebackup and the chunker then take turns a
    // thousand times per 64 MiB. 1 MiB (the unprivileged maximum) lets each run longer.
    // Best effort: a smaller pipe only costs switches.
    let _ = rustix::pipe::fcntl_setpipe_size(&stdout, 1 << 20);
    let mut content = Vec::new();
    let mut add_err = None;
    let read = coffer_repository::chunker::Chunker::new(w.repo_chunker()).chunks(stdout, u64::MAX, |chunk| {
        match w.add(BlobKind::Data, chunk) {
            Ok(id) => {
                content.push(id);
                Ok(())
            }
            Err(e) => {
                add_err = Some(e);
                Err(std::io::Error::other("the repository refused a chunk"))
            }
        }
    });
    if let Some(e) = add_err {
        stop(&mut child);
        let _ = err_thread.join();
        return Err(e.into());
    }
    let (size, chunk_err) = match read {
        Ok(n) => (n, None),
        Err(e) => (0, Some(e.to_string())),
    };
    let status = child.wait().context("cannot wait for pg_basebackup")?;
    let log = err_thread.join().unwrap_or_default();
    if !status.success() || chunk_err.is_some() {
        let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_owned();
        bail!("pg_basebackup failed ({status}): {}", chunk_err.unwrap_or(last));
    }
    let stop_time = repo.clock().now();
    // The backup history file (`….backup`), archived when the backup stopped, says where
    // the backup's WAL starts and ends; with `-X none` pg_basebackup has waited for it.
    let deadline = std::time::Instant::now() + a.wal_timeout;
    let history = loop {
        if let Some(h) = find_backup_history(&repo, sysid, &label)? {
            break h;
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the backup history file of this base backup was not archived within {} (is archive_command = 'coffer pg wal-push %p' set?)",
                humantime::format_duration(a.wal_timeout)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let field = |k: &str| {
        history
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .map(|v| v.trim().split(' ').next().unwrap_or_default().to_owned())
            .ok_or_else(|| anyhow!("backup history file lacks {k}"))
    };
    let start_lsn = fmt_lsn(parse_lsn(&field("START WAL LOCATION")?)?);
    let stop_lsn = fmt_lsn(parse_lsn(&field("STOP WAL LOCATION")?)?);
    let timeline: u32 = field("START TIMELINE")?.parse().context("bad timeline in the backup history file")?;

    let mut tags = a.tags.clone();
    tags.extend([
        format!("pg-sysid={sysid}"),
        format!("pg-timeline={timeline}"),
        format!("pg-start-lsn={start_lsn}"),
        format!("pg-stop-lsn={stop_lsn}"),
        format!("pg-stop-time={stop_time}"),
        format!("pg-wal-segment-size={seg_size}"),
    ]);
    if let Some(name) = &a.cluster {
        if name.is_empty() || name.contains(char::is_whitespace) {
            bail!("cluster name {name:?} must be non-empty and without spaces");
        }
        tags.push(format!("pg-cluster={name}"));
    }
    let info = BaseInfo {
        snapshot: String::new(),
        sysid,
        timeline,
        start_lsn,
        stop_lsn,
        stop_time,
        seg_size,
        cluster: a.cluster.clone(),
        tree: coffer_repository::Id([0; 32]),
    };

    // The backup is only usable with its WAL: wait until all of it is archived.
    let deadline = std::time::Instant::now() + a.wal_timeout;
    loop {
        let have = repo.list_wal(sysid)?;
        let missing: Vec<String> = info
            .needed_segments()
            .into_iter()
            .filter(|s| !have.iter().any(|h| h == s || h.strip_suffix(".partial") == Some(s)))
            .collect();
        if missing.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the base backup needs WAL segment {} which was not archived within {} (is archive_command = 'coffer pg wal-push %p' set?)",
                missing[0],
                humantime::format_duration(a.wal_timeout)
            );
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
    let snap = Snapshot {
        kind: "pg-base".into(),
        time: now,
        expires,
        retain_until: w.retain_until(),
        host: crate::repo::host(),
        paths: vec![format!("pg:{sysid}")],
        tags,
        tree,
        parent: None,
        previous,
        summary: w.summary_mut().clone(),
        program: format!("coffer {}", env!("CARGO_PKG_VERSION")),
    };
    let added = w.summary_mut().bytes_added;
    let id = w.commit_snapshot(snap)?;
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&serde_json::json!({
            "snapshot": id.to_string(), "sysid": sysid.to_string(), "timeline": timeline,
            "start-lsn": info.start_lsn, "stop-lsn": info.stop_lsn, "stop-time": stop_time, "bytes": size, "bytes-added": added,
        }))?;
    } else {
        out.line(format!(
            "snapshot {} saved: base backup of cluster {sysid}, timeline {timeline}, WAL {}..{}, {size} bytes ({added} new)",
            id.short(),
            info.start_lsn,
            info.stop_lsn
        ))?;
    }
    out.finish()
}

// ---- restore ---------------------------------------------------------------------------

fn pick_cluster(repo: &Repository, bases: &[BaseInfo], want: Option<u64>, name: Option<&str>) -> Result<u64> {
    if let Some(s) = want {
        return Ok(s);
    }
    if let Some(name) = name {
        return cluster_by_name(bases, name)
            .ok_or_else(|| anyhow!("{} holds no base backup of a cluster named {name:?}", repo.location()));
    }
    let mut ids: Vec<u64> = bases.iter().map(|b| b.sysid).chain(repo.pg_clusters()?).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [one] => Ok(*one),
        [] => bail!("{} holds no PostgreSQL backups", repo.location()),
        _ => bail!("{} holds several PostgreSQL clusters; choose one with --sysid or --cluster", repo.location()),
    }
}

/// The system identifier named `name` by the newest base backup that carries the name (a
/// cluster created anew, e.g. by an upgrade, gets a new system identifier and keeps its
/// name: the name then means the newest one, and `--sysid` reaches the older).
fn cluster_by_name(bases: &[BaseInfo], name: &str) -> Option<u64> {
    bases.iter().filter(|b| b.cluster.as_deref() == Some(name)).max_by_key(|b| b.stop_time).map(|b| b.sysid)
}

/// The timelines recovery reads, from base backup `base` to timeline `target`: for each,
/// its first and last segment (`None`: to the end). Each timeline's segments end before
/// the one holding its switch point: that segment is read from the next timeline, whose
/// copy holds the old timeline's records up to the switch. `None` if `base` is not on the
/// way to `target` (its timeline is not an ancestor, or it started after the switch).
fn timeline_path(
    history: &BTreeMap<u32, String>,
    base: &BaseInfo,
    target: u32,
) -> Option<Vec<(u32, u64, Option<u64>)>> {
    let seg = base.seg_size;
    let start = parse_lsn(&base.start_lsn).ok()? / seg;
    if target == base.timeline {
        return Some(vec![(target, start, None)]);
    }
    let text = history.get(&target)?;
    let mut path = Vec::new();
    let mut from = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut f = line.split_whitespace();
        let (Some(tli), Some(end)) = (f.next().and_then(|t| t.parse::<u32>().ok()), f.next()) else { continue };
        let end = parse_lsn(end).ok()?;
        if tli == base.timeline {
            if parse_lsn(&base.start_lsn).ok()? >= end {
                return None;
            }
            from = Some(start);
        }
        if let Some(f) = from {
            path.push((tli, f, Some((end / seg).saturating_sub(1))));
            from = Some(end / seg);
        }
    }
    path.push((target, from?, None));
    Some(path)
}

/// Offsets in `data` of restore point records named by `field` (the name and its NUL).
fn restore_point_hits(data: &[u8], field: &[u8]) -> Vec<usize> {
    data.windows(2 + 8 + 64)
        .enumerate()
        .filter(|(_, w)| w[0] == 0xFF && w[1] == 72 && w[10..10 + field.len()] == *field)
        .map(|(i, _)| i)
        .collect()
}

/// The LSN of the newest restore point named `name` in the archived WAL (an upper bound:
/// the segment offset where its record's data is found). The record's main data is
/// `0xFF, 72` (short data block, 72 bytes) then `rp_time` (8 bytes) and `rp_name` (64
/// bytes, NUL-terminated); a record torn by a page boundary is not found by this scan.
fn find_restore_point(repo: &Repository, sysid: u64, name: &str, seg_size: u64) -> Result<u64> {
    if name.is_empty() || name.len() >= 64 {
        bail!("restore point name {name:?} must have 1 to 63 bytes");
    }
    // PostgreSQL copies the name with strlcpy: bytes after its NUL are not zeroed.
    let mut field = name.as_bytes().to_vec();
    field.push(0);
    let names = repo.list_wal(sysid)?;
    for n in names.iter().rev() {
        let Some((_, segno)) = parse_segment(n, seg_size) else { continue };
        let Some(data) = repo.get_wal(sysid, n)? else { continue };
        if let Some(&off) = restore_point_hits(&data, &field).last() {
            return Ok(segno * seg_size + off as u64);
        }
    }
    bail!("restore point {name:?} is not in the archived WAL of cluster {sysid}")
}

/// The LSNs of other restore points named `name` that recovery from segment `from_seg`
/// would pass before the one at `newest` (PostgreSQL stops at the first it replays).
fn earlier_restore_points(
    repo: &Repository,
    sysid: u64,
    name: &str,
    seg_size: u64,
    from_seg: u64,
    newest: u64,
) -> Result<Vec<u64>> {
    let mut field = name.as_bytes().to_vec();
    field.push(0);
    let mut found = BTreeSet::new();
    for n in repo.list_wal(sysid)? {
        let Some((_, segno)) = parse_segment(&n, seg_size) else { continue };
        if segno < from_seg || segno > newest / seg_size {
            continue;
        }
        let Some(data) = repo.get_wal(sysid, &n)? else { continue };
        // A timeline's first segment repeats its parent's records: the same LSN twice is
        // one restore point.
        found.extend(restore_point_hits(&data, &field).into_iter().map(|o| segno * seg_size + o as u64));
    }
    found.remove(&newest);
    Ok(found.into_iter().filter(|l| *l < newest).collect())
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
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn restore(g: &Global, r: &RepoOpts, a: &RestoreArgs) -> Result<()> {
    let repo = open_pg(g, r, Role::Reader, a.key_file.as_deref())?;
    let all = base_backups(&repo)?;
    let sysid = pick_cluster(&repo, &all, a.sysid, a.cluster.as_deref())?;
    let bases: Vec<&BaseInfo> = all.iter().filter(|b| b.sysid == sysid).collect();
    let target_lsn = a.lsn.as_deref().map(parse_lsn).transpose()?;
    let seg_size = bases.first().map_or(DEFAULT_SEG_SIZE, |b| b.seg_size);
    // A restore point is found in the archived WAL, so the base backup chosen precedes it.
    let point_lsn = match &a.name {
        Some(n) => Some(find_restore_point(&repo, sysid, n, seg_size)?),
        None => None,
    };
    let names = repo.list_wal(sysid)?;
    // The timeline recovery ends on: --timeline, else (recovery_target_timeline =
    // 'latest') the newest one reachable by consecutive history files, as PostgreSQL
    // probes them.
    let mut history = BTreeMap::new();
    for n in names.iter().filter(|n| n.ends_with(".history")) {
        let Ok(tli) = u32::from_str_radix(&n[..8], 16) else { continue };
        if let Some(d) = repo.get_wal(sysid, n)? {
            history.insert(tli, String::from_utf8_lossy(&d).into_owned());
        }
    }
    let target_tli = |b: &BaseInfo| {
        a.timeline.unwrap_or_else(|| {
            let mut t = b.timeline;
            while history.contains_key(&(t + 1)) {
                t += 1;
            }
            t
        })
    };
    let (base, path) = bases
        .iter()
        .rev()
        .filter(|b| match (a.time, target_lsn.or(point_lsn)) {
            (Some(t), _) => b.stop_time <= t,
            (_, Some(l)) => parse_lsn(&b.stop_lsn).is_ok_and(|s| s <= l),
            _ => true,
        })
        .find_map(|b| Some((*b, timeline_path(&history, b, target_tli(b))?)))
        .ok_or_else(|| match a.timeline {
            Some(t) => {
                anyhow!("no base backup of cluster {sysid} precedes the recovery target on the way to timeline {t}")
            }
            None => anyhow!("no base backup of cluster {sysid} precedes the recovery target"),
        })?;

    // The WAL recovery reads — from the backup's start along the timelines it follows — must
    // be complete up to the target (or the end); a gap elsewhere does not matter.
    // For a time target the segment holding it is unknown: a gap after the base backup's
    // own WAL is left to recovery, which stops with "recovery ended before configured
    // recovery target was reached" (never promotes short of it), and wal-fetch logs the
    // missing segment's name (`--start` reports both).
    let upto = match (a.time, target_lsn.or(point_lsn)) {
        (Some(_), _) => Some(parse_lsn(&base.stop_lsn)?.saturating_sub(1) / base.seg_size),
        (None, l) => l.map(|l| l / base.seg_size),
    };
    for missing in gaps(&names, base.seg_size) {
        if let Some((t, s)) = parse_segment(&missing, base.seg_size) {
            let read = path.iter().any(|(pt, from, to)| *pt == t && s >= *from && to.is_none_or(|e| s <= e));
            if read && upto.is_none_or(|u| s <= u) {
                bail!(
                    "WAL segment {missing} is missing from the archive: cluster {sysid} cannot be recovered past it from base backup {}",
                    &base.snapshot[..8]
                );
            }
        }
    }
    for s in base.needed_segments() {
        if !names.iter().any(|n| *n == s || n.strip_suffix(".partial") == Some(s.as_str())) {
            bail!("WAL segment {s} needed by base backup {} is missing from the archive", &base.snapshot[..8]);
        }
    }
    // recovery_target_name stops at the first restore point of that name recovery meets;
    // the newest is meant: with an older one on the way, recover to the newest's LSN.
    let mut point_as_lsn = None;
    if let (Some(n), Some(l)) = (&a.name, point_lsn) {
        let start_seg = parse_lsn(&base.start_lsn)? / base.seg_size;
        let earlier = earlier_restore_points(&repo, sysid, n, base.seg_size, start_seg, l)?;
        if !earlier.is_empty() {
            eprintln!(
                "coffer: warning: restore point {n:?} was created {} times since base backup {}; recovering to the newest (near LSN {}), not the first",
                earlier.len() + 1,
                &base.snapshot[..8],
                fmt_lsn(l)
            );
            point_as_lsn = Some(l);
        }
    }

    let dir = &a.target;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("restore target {} is not empty", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let dir = std::path::absolute(dir)?;

    // base.tar, written by parallel writers straight into DIR and fsynced (see
    // coffer_sources::tar and docs/postgres.md, "Restore").
    let index = repo.load_index()?;
    // From a local vault, blobs are read by range (no packs cached whole: memory, and
    // one copy less); from S3, whole packs, a few cached.
    let reader = if crate::s3::is_s3(repo.location()) {
        coffer_repository::SharedReader::new(&repo, &index, 6)
    } else {
        coffer_repository::SharedReader::ranged(&repo, &index, 16)
    };
    let tree = reader.tree(&base.tree)?;
    let node = tree.find(b"base.tar").ok_or_else(|| anyhow!("base backup {} has no base.tar", base.snapshot))?;
    coffer_sources::tar::unpack(&reader, &node.content, &dir, coffer_sources::tar::Threads::default())
        .with_context(|| format!("cannot unpack base backup {} into {}", &base.snapshot[..8], dir.display()))?;

    // Recovery settings.
    let exe = std::env::current_exe().context("cannot find the coffer executable")?;
    // restore_command runs once per WAL file: it gets the unwrapped repository key, so it
    // skips the password's key derivation (Argon2id, ~0.2 s a call). The key opens this
    // repository only (the password may open others) and goes beside the data directory,
    // never inside it, where a later base backup of the restored server would carry it.
    let key_file = match &a.key_copy {
        Some(p) => std::path::absolute(p)?,
        None => {
            let mut name = dir.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
            name.push(".coffer-key");
            dir.with_file_name(name)
        }
    };
    {
        // Left by an earlier restore to this directory: replaced, never written through
        // (a symbolic link there is removed, not followed).
        let _ = std::fs::remove_file(&key_file);
        write_key_file(&repo, &key_file)?;
    }
    let credentials_copy = copy_credentials(g, r, &key_file)?;
    let repo_arg = match &r.repo {
        Some(p) if !p.to_string_lossy().contains("://") => std::path::absolute(p)?.display().to_string(),
        Some(p) => p.display().to_string(),
        None => crate::repo::vault_dir(r)?.0.display().to_string(),
    };
    // Recovery must read the WAL of the same point in time as the base backup it starts
    // from: a segment forged after --as-of must not be replayed.
    let as_of = r.as_of.map(|t| format!(" --as-of {}", sh_quote(&t.to_string()))).unwrap_or_default();
    let credentials_arg = credentials_copy
        .as_ref()
        .map(|c| format!(" --credentials {}", sh_quote(&c.display().to_string())))
        .unwrap_or_default();
    let cmd = format!(
        "{} --repo {}{credentials_arg}{as_of} pg wal-fetch --key-file {} --sysid {sysid} %f %p",
        sh_quote(&exe.display().to_string()),
        sh_quote(&repo_arg),
        sh_quote(&key_file.display().to_string())
    );
    let mut conf = String::from("\n# Added by coffer pg restore: recovery from the coffer repository.\n");
    conf += &format!("restore_command = {}\n", conf_quote(&cmd));
    if let Some(t) = a.time {
        conf += &format!("recovery_target_time = {}\n", conf_quote(&pg_time(t)));
    } else if let Some(l) = target_lsn {
        conf += &format!("recovery_target_lsn = {}\n", conf_quote(&fmt_lsn(l)));
    } else if let Some(l) = point_as_lsn {
        // The scan's LSN lies inside the restore point's record: stopping before the
        // first record starting at or after it applies that record and nothing later.
        conf += &format!("recovery_target_lsn = {}\nrecovery_target_inclusive = off\n", conf_quote(&fmt_lsn(l)));
    } else if let Some(n) = &a.name {
        conf += &format!("recovery_target_name = {}\n", conf_quote(n));
    }
    match a.timeline {
        Some(t) => conf += &format!("recovery_target_timeline = '{t}'\n"),
        None => conf += "recovery_target_timeline = 'latest'\n",
    }
    if !a.latest {
        conf += "recovery_target_action = 'promote'\n";
    }
    // What would stop the restored server from starting or make it act as the source.
    conf += "archive_mode = 'off'\narchive_command = ''\nsynchronous_standby_names = ''\n";
    conf += "primary_conninfo = ''\nprimary_slot_name = ''\n";
    let auto = dir.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&auto)?;
    f.write_all(conf.as_bytes())?;
    drop(f);
    let _ = std::fs::remove_file(dir.join("standby.signal"));
    std::fs::write(dir.join("recovery.signal"), b"")?;
    // Durable before success is reported (a reported restore survives a power loss): the
    // unpack fsynced every file and directory of the base backup; what was written since —
    // the settings, recovery.signal, DIR's entries, the key file beside DIR — is synced here,
    // DIR's parent last. PostgreSQL fsyncs the data directory again at its first start
    // (recovery_init_sync_method) and then finds it clean.
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let mut synced = vec![auto, dir.join("recovery.signal"), dir.clone(), parent.to_path_buf()];
    synced.extend(credentials_copy.iter().cloned());
    synced.extend(key_file.parent().filter(|k| *k != parent).map(Path::to_path_buf));
    for p in &synced {
        std::fs::File::open(p).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", p.display()))?;
    }

    if a.start {
        start_and_wait(&dir, a.start_timeout)?;
    }
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&serde_json::json!({
            "target": dir,
            "base": base,
            "key-file": key_file,
            "credentials-file": credentials_copy,
            "started": a.start
        }))?;
    } else {
        out.line(format!(
            "restored base backup {} (cluster {sysid}, WAL {}..{}) into {}; start the server to recover",
            &base.snapshot[..8],
            base.start_lsn,
            base.stop_lsn,
            dir.display()
        ))?;
    }
    out.finish()
}

/// Copies the credentials `pg restore` itself logged in with — `--credentials FILE`, else
/// the vault's `credentials/ROLE.toml` of `--role` (default: the reader) — to
/// `KEY_COPY.credentials` beside the key copy (created new, mode 0600, synced by the
/// caller), for `restore_command` to present with `--credentials`. Recovery then does not
/// depend on the vault's `credentials/` directory, whose copies the separation-of-duties
/// advice says to delete, nor on where `--credentials FILE` lived. `None` for an S3
/// repository without `--credentials` (the AWS chain of restore_command's environment
/// applies, as it did for this command).
fn copy_credentials(g: &Global, r: &RepoOpts, key_file: &Path) -> Result<Option<PathBuf>> {
    let source = match g.credentials.as_ref().filter(|f| !f.as_os_str().is_empty()) {
        Some(f) => f.clone(),
        None => {
            let (dir, _) = crate::repo::vault_dir(r)?;
            if dir.to_str().is_some_and(crate::s3::is_s3) {
                return Ok(None);
            }
            let role = g.role.unwrap_or(Role::Reader);
            dir.join("credentials").join(format!("{role}.toml"))
        }
    };
    let text = std::fs::read(&source).with_context(|| format!("cannot read credentials {}", source.display()))?;
    let mut name = key_file.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".credentials");
    let copy = key_file.with_file_name(name);
    // As for the key copy: an earlier restore's file is replaced, never written through.
    let _ = std::fs::remove_file(&copy);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0600()
        .open(&copy)
        .with_context(|| format!("cannot create {}", copy.display()))?;
    f.write_all(&text)?;
    f.sync_all()?;
    Ok(Some(copy))
}

/// `restore --start`: starts the server on `dir` listening only on a socket in `dir`, and
/// waits until it has left recovery (reached the target and been promoted). A server that
/// stops instead (e.g. "recovery ended before configured recovery target was reached"
/// after a missing segment) is an error quoting the end of its log.
fn start_and_wait(dir: &Path, timeout: Duration) -> Result<()> {
    let log = dir.join("coffer-restore.log");
    let opts = format!("-c listen_addresses='' -c unix_socket_directories='{}'", dir.display());
    let out = Command::new(pg_program("pg_ctl"))
        .args(["start", "-w", "-t", "600", "-D"])
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .args(["-o", &opts])
        .stdin(Stdio::null())
        .output()
        .context("cannot run pg_ctl")?;
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("FATAL") || l.contains("coffer: error")).collect();
        lines.iter().rev().take(3).rev().copied().collect::<Vec<_>>().join(" | ")
    };
    if !out.status.success() {
        bail!("the restored server did not start: {} {}", String::from_utf8_lossy(&out.stderr).trim(), tail());
    }
    // Promotion is watched in postmaster.pid, whose status line turns "ready" when the
    // server accepts connections after recovery (it reads "standby" while a hot standby
    // replays): a file read every 20 ms, where starting psql and pg_ctl every 300 ms added
    // up to a third of a second to each restore and kept a core busy; psql then confirms.
    let deadline = std::time::Instant::now() + timeout;
    let mut last_check = std::time::Instant::now();
    loop {
        let ready = postmaster_status(dir).is_some_and(|s| s == "ready");
        if ready {
            let q = Command::new(pg_program("psql"))
                .args(["-X", "-A", "-t", "-d", "postgres", "-h"])
                .arg(dir)
                .args(["-c", "select pg_is_in_recovery()"])
                .stderr(Stdio::null())
                .output();
            if q.as_ref().is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "f") {
                return Ok(());
            }
        }
        // Whether the server still runs: once a second, or at once when its lock file is
        // gone (a server that stops after a failed recovery removes it).
        if last_check.elapsed() >= Duration::from_secs(1) || postmaster_status(dir).is_none() {
            last_check = std::time::Instant::now();
            let alive = Command::new(pg_program("pg_ctl"))
                .args(["status", "-D"])
                .arg(dir)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                bail!("recovery failed and the restored server stopped: {}", tail());
            }
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "recovery did not finish within {} (server log: {})",
                humantime::format_duration(timeout),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The postmaster's status in `DIR/postmaster.pid` (its 8th line: "starting", "standby",
/// "ready" or "stopping"); `None` without the file.
fn postmaster_status(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    Some(text.lines().nth(7).unwrap_or_default().trim().to_owned())
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        self.mode(0o600)
    }
}

// ---- info ------------------------------------------------------------------------------

/// How many of the newest segments `pg info` reads looking for the last commit: an idle
/// server switches segments (archive_timeout) without committing, and reading the whole
/// archive would make `info` as slow as a restore.
const COMMIT_SCAN_SEGMENTS: usize = 16;

/// The time of the newest commit or abort record in the newest archived segments of the
/// newest timeline: the latest `--time` a restore can reach (see `xlog`).
fn last_commit_time(repo: &Repository, sysid: u64, segs: &[&String], seg_size: u64) -> Result<Option<Timestamp>> {
    for name in segs.iter().rev().take(COMMIT_SCAN_SEGMENTS) {
        let Some((_, segno)) = parse_segment(name, seg_size) else { continue };
        let Some(data) = repo.get_wal(sysid, name)? else { continue };
        if let Some(t) = xlog::last_xact_time(&data, segno * seg_size) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

fn info(g: &Global, r: &RepoOpts, a: &InfoArgs) -> Result<()> {
    let repo = open_pg(g, r, Role::Reader, a.key_file.as_deref())?;
    let all = base_backups(&repo)?;
    let mut ids: Vec<u64> = all.iter().map(|b| b.sysid).chain(repo.pg_clusters()?).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.retain(|s| a.sysid.is_none_or(|w| w == *s));
    if let Some(name) = &a.cluster {
        let id = cluster_by_name(&all, name)
            .ok_or_else(|| anyhow!("{} holds no base backup of a cluster named {name:?}", repo.location()))?;
        ids.retain(|s| *s == id);
    }
    let mut clusters = Vec::new();
    for sysid in ids {
        let bases: Vec<&BaseInfo> = all.iter().filter(|b| b.sysid == sysid).collect();
        let names = repo.list_wal(sysid)?;
        // From the base backup, else from an archived segment's long page header.
        let seg_size = match bases.first() {
            Some(b) => b.seg_size,
            None => names
                .iter()
                .find(|n| is_segment_name(n) && !n.ends_with(".partial"))
                .and_then(|n| repo.get_wal(sysid, n).ok().flatten())
                .and_then(|d| segment_size_from_header(&d))
                .unwrap_or(DEFAULT_SEG_SIZE),
        };
        let segs: Vec<&String> = names.iter().filter(|n| parse_segment(n, seg_size).is_some()).collect();
        let gaps = gaps(&names, seg_size);
        let history: Vec<&String> = names.iter().filter(|n| n.ends_with(".history")).collect();
        let to_time = if bases.is_empty() { None } else { last_commit_time(&repo, sysid, &segs, seg_size)? };
        let window = bases.first().map(|b| {
            serde_json::json!({"from-time": b.stop_time, "from-lsn": b.stop_lsn,
                "to-segment": segs.last().map(|s| s.as_str()), "to-time": to_time})
        });
        let name =
            bases.iter().filter(|b| b.cluster.is_some()).max_by_key(|b| b.stop_time).and_then(|b| b.cluster.clone());
        clusters.push(serde_json::json!({
            "sysid": sysid.to_string(),
            "name": name,
            "base-backups": bases,
            "wal-segments": segs.len(),
            "first-segment": segs.first(),
            "last-segment": segs.last(),
            "history-files": history,
            "gaps": gaps,
            "recovery-window": window,
        }));
    }
    let mut out = Output::new(g.json);
    if out.json() {
        out.doc(&serde_json::json!({ "clusters": clusters }))?;
        return out.finish();
    }
    for c in &clusters {
        match c["name"].as_str() {
            Some(n) => out.line(format!("cluster {} ({n})", c["sysid"].as_str().unwrap_or_default()))?,
            None => out.line(format!("cluster {}", c["sysid"].as_str().unwrap_or_default()))?,
        }
        for b in c["base-backups"].as_array().into_iter().flatten() {
            out.line(format!(
                "  base backup {}  timeline {}  WAL {}..{}  consistent at {}",
                &b["snapshot"].as_str().unwrap_or_default()[..8],
                b["timeline"],
                b["start_lsn"].as_str().unwrap_or_default(),
                b["stop_lsn"].as_str().unwrap_or_default(),
                b["stop_time"].as_str().unwrap_or_default()
            ))?;
        }
        out.line(format!(
            "  WAL: {} segments, {} .. {}",
            c["wal-segments"],
            c["first-segment"].as_str().unwrap_or("-"),
            c["last-segment"].as_str().unwrap_or("-")
        ))?;
        for gap in c["gaps"].as_array().into_iter().flatten() {
            out.line(format!("  GAP: WAL segment {} is missing", gap.as_str().unwrap_or_default()))?;
        }
        if let Some(w) = c["recovery-window"].as_object() {
            let to = match w["to-time"].as_str() {
                Some(t) => format!("{t} (the last commit, in {})", w["to-segment"].as_str().unwrap_or("-")),
                None => format!("the end of {}", w["to-segment"].as_str().unwrap_or("-")),
            };
            out.line(format!(
                "  recovery window: from {} ({}) to {to}",
                w["from-time"].as_str().unwrap_or_default(),
                w["from-lsn"].as_str().unwrap_or_default(),
            ))?;
        }
    }
    out.finish()
}
