//! `pg wal-fetch` (`restore_command`): one WAL file out of the repository, authenticated and
//! written atomically (temporary file, fsync, rename), with a spool of the next segments
//! filled in the background ([`Prefetch`]).
//!
//! Not archived is [`PgError::NotArchived`]: the caller tells PostgreSQL "absent" (recovery
//! ends normally), and says more only when it is a gap (later segments of the timeline are
//! archived). Any other error must abort recovery.

use super::{PgError, Result, io_err, repo_at, sysid_from_control, warn};
use coffer_repository::wal::{DEFAULT_SEGMENT_SIZE, Segment, is_segment_name, segment_size_from_header};
use coffer_repository::{Event, JobControl, Repository};
use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which WAL file to fetch, and where (`pg wal-fetch`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct WalFetchOptions {
    /// The WAL file name (%f)
    pub name: String,
    /// Where to write it (%p)
    pub dest: PathBuf,
    /// The cluster's system identifier [default: from global/pg_control in the working directory]
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_SYSID"))]
    #[serde(default)]
    pub sysid: Option<u64>,
    /// Fetch up to this many following segments in the background into a spool beside DEST
    /// (coffer-prefetch/SYSID), for the next calls; 0 turns it off
    #[cfg_attr(feature = "clap", arg(long, env = "COFFER_PG_PREFETCH", default_value_t = 8, value_name = "N"))]
    #[serde(default = "eight")]
    pub prefetch: u64,
}

fn eight() -> u64 {
    8
}

/// Where `wal_fetch` found the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchedFrom {
    /// Read from the repository.
    Repository,
    /// Served from the prefetch spool.
    Prefetch,
}

/// What `wal_fetch` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WalFetchReport {
    /// The file's name.
    pub file: String,
    /// Where it came from.
    pub from: FetchedFrom,
    /// Whether a prefetch worker was started.
    pub prefetching: bool,
}

/// Starts the detached prefetch worker for a cluster whose segments have this size: the
/// caller's process again, in a form that calls [`prefetch_worker`] (the CLI re-runs itself
/// with `--prefetch-worker`). PostgreSQL waits for this call only, not for the worker.
pub type StartWorker<'a> = &'a dyn Fn(u64) -> std::io::Result<()>;

/// Fetches `opts.name` into `opts.dest`, serving it from the prefetch spool when it is
/// there and authenticates, and keeps the spool ahead of recovery.
///
/// # Errors
/// `NotArchived` when the file is not archived; repository, I/O errors.
pub fn wal_fetch(
    repo: &Repository,
    opts: &WalFetchOptions,
    start_worker: StartWorker<'_>,
    ctl: &JobControl,
) -> Result<WalFetchReport> {
    ctl.check()?;
    let sysid = cluster(opts)?;
    let mut prefetch = Prefetch::new(opts, sysid, DEFAULT_SEGMENT_SIZE);
    // Only completed segments are prefetched: they are never replaced, so a spooled copy
    // that authenticates under its exact name (timeline included) is the archived one.
    let is_segment = is_segment_name(&opts.name) && !opts.name.ends_with(".partial");
    let mut from = FetchedFrom::Repository;
    if is_segment && opts.prefetch > 0 && prefetch.take(repo, &opts.name, &opts.dest, ctl) {
        from = FetchedFrom::Prefetch;
    } else {
        let mut data =
            repo.get_wal(sysid, &opts.name).map_err(repo_at(format!("cannot fetch WAL file {}", opts.name)))?;
        if data.is_none() && is_segment {
            data = repo.get_wal(sysid, &format!("{}.partial", opts.name))?;
        }
        let Some(data) = data else {
            // The end of the archive (or a gap): recovery stops asking for segments, so the
            // spool has served its purpose.
            let _ = std::fs::remove_dir_all(&prefetch.dir);
            return Err(PgError::NotArchived {
                name: opts.name.clone(),
                gap: later_archived(repo, sysid, &opts.name)?,
            });
        };
        write_atomically(&opts.dest, &data)?;
        ctl.emit(&Event::Object { action: "fetched", key: &opts.name, bytes: data.len() as u64 });
    }
    let mut started = false;
    // The following segments' names depend on the cluster's segment size, which the
    // segment just served states in its long page header.
    if let Some(size) = segment_size_of_file(&opts.dest) {
        prefetch.seg_size = size;
    }
    if let Some(seg) = Segment::parse(&opts.name, prefetch.seg_size).filter(|_| is_segment && opts.prefetch > 0) {
        // A cache: its failures cost speed, never the fetch itself.
        match prefetch.refill(seg, start_worker) {
            Ok(s) => started = s,
            Err(e) => warn(ctl, &opts.name, &format!("prefetch after {}: {e}", opts.name)),
        }
    }
    Ok(WalFetchReport { file: opts.name.clone(), from, prefetching: started })
}

/// The background half of the prefetch: fills the spool with the segments after
/// `opts.name` (of size `seg_size`). A cache, whose failures cost speed only: returns how
/// many segments it spooled.
///
/// # Errors
/// Cancellation, and an unknown cluster (no `--sysid`, no `global/pg_control`).
pub fn prefetch_worker(repo: &Repository, opts: &WalFetchOptions, seg_size: u64, ctl: &JobControl) -> Result<usize> {
    let sysid = cluster(opts)?;
    let prefetch = Prefetch::new(opts, sysid, seg_size);
    let is_segment = is_segment_name(&opts.name) && !opts.name.ends_with(".partial");
    match Segment::parse(&opts.name, seg_size).filter(|_| is_segment) {
        Some(seg) => Ok(prefetch.fill(repo, seg, ctl).unwrap_or(0)),
        None => Ok(0),
    }
}

fn cluster(opts: &WalFetchOptions) -> Result<u64> {
    match opts.sysid {
        Some(s) => Ok(s),
        None => sysid_from_control(Path::new(".")),
    }
}

/// Whether a segment of `name`'s timeline after it is archived: then `name` missing is a
/// gap, not the end of the archive. (Names of one timeline sort in WAL order whatever the
/// segment size.)
fn later_archived(repo: &Repository, sysid: u64, name: &str) -> Result<bool> {
    if !is_segment_name(name) {
        return Ok(false);
    }
    let base = name.strip_suffix(".partial").unwrap_or(name);
    Ok(repo.list_wal(sysid)?.iter().any(|n| {
        let nb = n.strip_suffix(".partial").unwrap_or(n);
        is_segment_name(n) && nb[..8] == base[..8] && nb > base
    }))
}

/// The WAL segment size in the long page header of the segment file at `path`.
fn segment_size_of_file(path: &Path) -> Option<u64> {
    let mut head = [0u8; 40];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).ok()?;
    segment_size_from_header(&head)
}

/// Writes `data` to `dest` atomically and durably: a temporary file beside it, fsynced,
/// renamed over it.
fn write_atomically(dest: &Path, data: &[u8]) -> Result<()> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.coffer-tmp", dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal")));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(format!("cannot create {}", tmp.display())))?;
    f.write_all(data).map_err(io_err(format!("cannot write {}", tmp.display())))?;
    f.sync_all().map_err(io_err(format!("cannot sync {}", tmp.display())))?;
    drop(f);
    std::fs::rename(&tmp, dest).map_err(io_err(format!("cannot write {}", dest.display())))
}

/// `wal-fetch`'s spool of the segments that follow the one asked for. Recovery asks for
/// segments one `restore_command` call at a time and replays nothing while a call runs, so
/// whatever a call does is recovery time. Fetching, authenticating, decompressing, writing
/// and syncing a segment took 60–120 ms of each call (bench/README.md); now a background
/// worker does all of it for the next `depth` segments while PostgreSQL replays, and a call
/// whose segment is spooled only moves the file into place and checks it.
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
    fn new(opts: &WalFetchOptions, sysid: u64, seg_size: u64) -> Self {
        let dest_dir = opts.dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Self { dir: dest_dir.join("coffer-prefetch"), sysid, depth: opts.prefetch, seg_size }
    }

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
    fn take(&self, repo: &Repository, name: &str, dest: &Path, ctl: &JobControl) -> bool {
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
                warn(
                    ctl,
                    &path.display().to_string(),
                    &format!("discarding a prefetched file: {} does not authenticate as {name}", path.display()),
                );
                return false;
            }
            let claimed = dir.join(format!(".{name}.tmp")).exists();
            if !claimed || !self.worker_running() || std::time::Instant::now() >= deadline || ctl.check().is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Drops spooled segments recovery has passed (or of another timeline), and when
    /// fewer than half of the next `depth` segments of `seg`'s timeline are spooled or
    /// being written and no worker runs, starts one. Returns whether it did.
    fn refill(&self, seg: Segment, start_worker: StartWorker<'_>) -> Result<bool> {
        let dir = self.cluster_dir();
        let running = self.worker_running();
        let mut ahead = 0;
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file_name = e.file_name().to_string_lossy().into_owned();
            if file_name == ".lock" {
                continue;
            }
            let entry = Self::entry(&file_name);
            match entry.and_then(|(n, _)| Segment::parse(n, self.seg_size)) {
                // Spooled, or claimed by the running worker. (A claim without a worker is
                // left by one that was killed: removed, the next worker claims it again.)
                Some(s)
                    if s.timeline == seg.timeline
                        && s.number > seg.number
                        && s.number <= seg.number + self.depth
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
        start_worker(self.seg_size).map_err(io_err("cannot start the prefetch worker"))?;
        Ok(true)
    }

    /// The worker: takes the spool's lock (or leaves, if another worker has it), claims the
    /// segments after `seg` that are not spooled, then fetches, authenticates, decompresses,
    /// writes and fsyncs them, two at a time, each under its final name once complete.
    /// Stops at the first segment not archived, when the spool is removed, or when
    /// cancelled; skips one whose claim a call removed (recovery fetched it itself and
    /// passed it). Returns how many it spooled.
    fn fill(&self, repo: &Repository, seg: Segment, ctl: &JobControl) -> Result<usize> {
        let dir = self.cluster_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .map_err(io_err(format!("cannot create {}/.lock", dir.display())))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(0);
        }
        let spooled: BTreeSet<String> = std::fs::read_dir(&dir)
            .map_err(io_err(format!("cannot list {}", dir.display())))?
            .flatten()
            .filter_map(|e| {
                let f = e.file_name().into_string().ok()?;
                let (n, tag) = Self::entry(&f)?;
                tag.map(|_| n.to_owned())
            })
            .collect();
        let want: Vec<String> = (seg.number + 1..=seg.number + self.depth)
            .map(|number| Segment { timeline: seg.timeline, number }.name(self.seg_size))
            .filter(|n| !spooled.contains(n))
            .collect();
        // Claimed: a call that needs one of these waits for it rather than fetching it too.
        for n in &want {
            let claim = dir.join(format!(".{n}.tmp"));
            std::fs::File::create(&claim).map_err(io_err(format!("cannot create {}", claim.display())))?;
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
                            if end.load(Relaxed) || ctl.check().is_err() {
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
                                Err(e) => return Err(io_err("cannot write to the spool")(e)),
                            };
                            f.write_all(&data)
                                .and_then(|()| f.sync_all())
                                .and_then(|()| std::fs::rename(&tmp, dir.join(format!("{name}.{tag}"))))
                                .map_err(io_err("cannot write to the spool"))?;
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
