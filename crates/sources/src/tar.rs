//! Unpacking a tar archive that a repository holds as one file — a `pg-base` snapshot's
//! `base.tar`, the tar stream of `pg_basebackup -Ft` — straight into a directory, with
//! several threads writing and syncing files at once.
//!
//! The pipeline: decoder threads read and authenticate the archive's blobs (several at a
//! time, handed on in order, at most [`AHEAD`] ahead); one thread parses the tar headers,
//! creates directories, symbolic links and files, and queues each member's data — slices
//! of the decoded blobs, never copied — for writer threads, which write them at their
//! offsets in the member's file (positional writes: two writers may fill one large file);
//! a file whose last byte is written gets its modification time and goes to sync threads,
//! which fsync it while later members are still being decoded and written. Large files are
//! also written back every [`WRITEBACK_STEP`] bytes on the way (`fdatasync` on a sync
//! thread), because the kernel would otherwise hold the whole restore dirty in memory
//! until the final fsyncs and do all the disk writes at the end. This replaces piping the
//! archive into one `tar -x` that wrote everything from one thread and synced nothing (see
//! `docs/postgres.md`, "Restore").
//!
//! Invariants guarded:
//! - **Byte-exact**: each regular file holds exactly its member's bytes; files and
//!   directories get the member's mode (all of it, like `tar -x -p`, so a cluster created
//!   with group access keeps it), files and symbolic links its modification time
//!   (directories too, once their entries exist), and, when running as root, its owner
//!   (by user and group name, else by number, as GNU tar does).
//! - **Durable**: when [`unpack`] returns `Ok`, every file and directory it created has
//!   been fsynced, each directory after the entries in it (the caller syncs the target's
//!   parent). Nothing is reported done before.
//! - **Confined**: nothing is written outside the target directory, whatever the archive
//!   says (a forged `pg-base` snapshot is hostile input): absolute names, `..`, and paths
//!   through a symbolic link the archive created are refused, as are hard links to any of
//!   these or through anything but a directory the unpacker made or checked; missing parent
//!   directories are made one at a time, and one whose name holds
//!   anything but a directory (a hard link to an archive symlink is a symlink too) fails
//!   the member rather than being followed.
//! - **Bounded**: at most [`AHEAD`] decoded blobs wait for the header parser and at most
//!   [`QUEUE`] writes and [`QUEUE`] syncs are queued, which bounds memory and open files.
//!
//! The first error stops every thread and is returned (the one that happened first, not a
//! follow-on); what was already written stays, as after a failed `tar -x`.
//!
//! Supported: the ustar format `pg_basebackup` writes (regular files, directories,
//! symbolic links; sizes in octal or base-256), plus hard links and GNU long names. Other
//! entry types (devices, fifos, sparse files, pax headers) are refused, naming the member.

use crate::owners::Owners;
use coffer_repository::{Id, RepoError, SharedReader};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the archive from the repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What and where.
        context: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The archive is not one this module unpacks.
    #[error("tar archive, member at byte {offset}: {what}")]
    Format {
        /// Where in the archive the member's header starts.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The producer was told to stop because another thread failed; [`unpack`] returns
    /// that thread's error instead.
    #[error("unpacking stopped after an error")]
    Stopped,
}

impl TarError {
    /// The class of this error; a wrapped repository error's own class shows through.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        use coffer_store::ErrorClass;
        match self {
            Self::Repo(e) => e.class(),
            Self::Io { .. } => ErrorClass::Io,
            Self::Format { .. } => ErrorClass::Invalid,
            Self::Stopped => ErrorClass::Other,
        }
    }
}

/// Result of an unpack.
pub type Result<T, E = TarError> = std::result::Result<T, E>;

fn io_err(context: impl FnOnce() -> String) -> impl FnOnce(std::io::Error) -> TarError {
    move |source| TarError::Io { context: context(), source }
}

/// Decoded blobs that may wait for the header parser.
pub const AHEAD: usize = 32;
/// Queued writes, and queued syncs.
pub const QUEUE: usize = 64;
/// A file is written back (`fdatasync`) each time this many more of its bytes are written.
pub const WRITEBACK_STEP: u64 = 32 << 20;
/// The longest GNU long name or link accepted.
const MAX_LONG_NAME: u64 = 64 * 1024;

/// Threads of each kind.
#[derive(Clone, Copy, Debug)]
pub struct Threads {
    /// Read, authenticate and decompress blobs.
    pub decoders: usize,
    /// Write members' data into their files.
    pub writers: usize,
    /// fsync finished files (waiting on the disk, not the CPU).
    pub syncers: usize,
}

impl Default for Threads {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self { decoders: cpus.clamp(2, 4), writers: 2, syncers: 4 }
    }
}

/// What an unpack wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories (those the archive names).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file data.
    pub bytes: u64,
}

/// Unpacks the tar archive made of the blobs `blobs` (a file's content list) into `dir`,
/// which must exist (and should be empty), then fsyncs everything it wrote.
///
/// # Errors
/// The first failure: a blob that cannot be read or authenticated, a malformed or
/// unsupported member (naming it), a file system error naming the path.
pub fn unpack(reader: &SharedReader<'_>, blobs: &[Id], dir: &Path, threads: Threads) -> Result<Unpacked> {
    unpack_stream(dir, threads, |sink| decode_in_order(reader, blobs, threads.decoders, sink))
}

/// Unpacks the archive whose bytes `produce` hands, in order and in pieces of any size, to
/// the sink it is given; see [`unpack`]. `produce` must stop and return the sink's error
/// when the sink fails.
///
/// # Errors
/// As [`unpack`], or `produce`'s own error.
pub fn unpack_stream(
    dir: &Path,
    threads: Threads,
    produce: impl FnOnce(&mut dyn FnMut(Vec<u8>) -> Result<()>) -> Result<()>,
) -> Result<Unpacked> {
    let fail = Failure::default();
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(QUEUE);
    let (sync_tx, sync_rx) = crossbeam_channel::bounded::<SyncReq>(QUEUE);
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..threads.syncers.max(1) {
            let (rx, fail) = (sync_rx.clone(), &fail);
            handles.push(s.spawn(move || syncer(&rx, fail)));
        }
        for _ in 0..threads.writers.max(1) {
            let (rx, tx, fail) = (job_rx.clone(), sync_tx.clone(), &fail);
            handles.push(s.spawn(move || writer(&rx, &tx, fail)));
        }
        drop((job_rx, sync_rx));
        let mut parser = Parser::new(dir, job_tx, sync_tx, &fail);
        let res = produce(&mut |chunk| parser.feed(chunk)).and_then(|()| parser.end());
        if let Err(e) = res {
            fail.set(e);
        }
        // Consumed: its queues close, so the writers and syncers finish.
        let (dirs, counts) = parser.into_results();
        for h in handles {
            if h.join().is_err() {
                fail.set(TarError::Io {
                    context: "an unpack thread panicked".into(),
                    source: std::io::Error::other("panic"),
                });
            }
        }
        if let Some(e) = fail.take() {
            return Err(e);
        }
        finish_dirs(dir, &dirs)?;
        Ok(counts)
    })
}

// ---- decoding ------------------------------------------------------------------------

/// Reads, authenticates and decompresses `ids` on `workers` threads and hands them to
/// `sink` in order, at most [`AHEAD`] past the one `sink` waits for; the first error
/// (the sink's or a read's) stops the workers and is returned.
fn decode_in_order(
    reader: &SharedReader<'_>,
    ids: &[Id],
    workers: usize,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<()>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let delivered = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Workers wait here for the sink to catch up (no spinning).
    let gate = (Mutex::new(()), std::sync::Condvar::new());
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::unbounded::<(usize, coffer_repository::Result<Vec<u8>>)>();
        for _ in 0..workers.max(1) {
            let (tx, next, delivered, stop, gate) = (tx.clone(), &next, &delivered, &stop, &gate);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { break };
                    {
                        let mut g = gate.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        while i >= delivered.load(Ordering::Acquire) + AHEAD && !stop.load(Ordering::Acquire) {
                            g = gate.1.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                    }
                    if stop.load(Ordering::Acquire) || tx.send((i, reader.read(id))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        let res = (|| {
            for (i, data) in &rx {
                pending.insert(i, data);
                while let Some(data) = pending.remove(&want) {
                    sink(data?)?;
                    want += 1;
                    let _g = gate.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    delivered.store(want, Ordering::Release);
                    gate.1.notify_all();
                }
            }
            if want == ids.len() {
                Ok(())
            } else {
                Err(TarError::Io {
                    context: format!("a decoder thread stopped at blob {want} of {}", ids.len()),
                    source: std::io::Error::other("decoder ended early"),
                })
            }
        })();
        if res.is_err() {
            let _g = gate.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            stop.store(true, Ordering::Release);
            gate.1.notify_all();
        }
        drop(rx);
        res
    })
}

// ---- writing and syncing -------------------------------------------------------------

/// The first error of any thread; once set, everyone stops.
#[derive(Default)]
struct Failure {
    stop: AtomicBool,
    first: Mutex<Option<TarError>>,
}

impl Failure {
    fn set(&self, e: TarError) {
        let mut first = self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // `Stopped` is a consequence, never the cause.
        if first.is_none() && !matches!(e, TarError::Stopped) {
            *first = Some(e);
        }
        self.stop.store(true, Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn take(&self) -> Option<TarError> {
        let first = self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match first {
            Some(e) => Some(e),
            None if self.stopped() => Some(TarError::Stopped),
            None => None,
        }
    }
}

/// A regular file being written.
struct Out {
    file: std::fs::File,
    path: PathBuf,
    size: u64,
    /// Bytes not yet written; whoever writes the last ones finishes the file.
    left: AtomicU64,
    mtime: i64,
}

impl Out {
    fn set_mtime(&self) -> Result<()> {
        rustix::fs::futimens(&self.file, &times(self.mtime)).map_err(|e| TarError::Io {
            context: format!("cannot set times of {}", self.path.display()),
            source: e.into(),
        })
    }
}

/// `mtime` as modification time; the access time is left as it is.
fn times(mtime: i64) -> rustix::fs::Timestamps {
    use rustix::fs::{Timespec, Timestamps, UTIME_OMIT};
    Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: mtime, tv_nsec: 0 },
    }
}

/// `data[range]` goes to `out` at `offset`.
struct Job {
    out: Arc<Out>,
    offset: u64,
    data: Arc<Vec<u8>>,
    range: std::ops::Range<usize>,
}

enum SyncReq {
    /// The file is complete: fsync it (data and metadata).
    Done(Arc<Out>),
    /// Part of the file is written: start its write-back now (`fdatasync`).
    Partial(Arc<Out>),
}

fn writer(rx: &crossbeam_channel::Receiver<Job>, sync: &crossbeam_channel::Sender<SyncReq>, fail: &Failure) {
    for job in rx {
        if fail.stopped() {
            continue; // drain, so the parser never blocks on a full queue
        }
        let data = &job.data[job.range.clone()];
        if let Err(e) = job.out.file.write_all_at(data, job.offset) {
            fail.set(TarError::Io { context: format!("cannot write {}", job.out.path.display()), source: e });
            continue;
        }
        let n = data.len() as u64;
        let left = job.out.left.fetch_sub(n, Ordering::AcqRel) - n;
        let req = if left == 0 {
            if let Err(e) = job.out.set_mtime() {
                fail.set(e);
                continue;
            }
            SyncReq::Done(job.out)
        } else {
            let written = job.out.size - left;
            if written / WRITEBACK_STEP == (written - n) / WRITEBACK_STEP {
                continue;
            }
            SyncReq::Partial(job.out)
        };
        if sync.send(req).is_err() {
            return;
        }
    }
}

fn syncer(rx: &crossbeam_channel::Receiver<SyncReq>, fail: &Failure) {
    for req in rx {
        if fail.stopped() {
            continue;
        }
        let res = match &req {
            SyncReq::Done(out) => out.file.sync_all(),
            SyncReq::Partial(out) => out.file.sync_data(),
        };
        if let Err(e) = res {
            let (SyncReq::Done(out) | SyncReq::Partial(out)) = &req;
            fail.set(TarError::Io { context: format!("cannot sync {}", out.path.display()), source: e });
        }
    }
}

/// Sets the directories' modification times (now that their entries exist) and fsyncs
/// them, deepest first, then `dir` itself.
fn finish_dirs(dir: &Path, dirs: &[(PathBuf, Option<i64>)]) -> Result<()> {
    for (p, mtime) in dirs {
        if let Some(m) = mtime {
            rustix::fs::utimensat(rustix::fs::CWD, p, &times(*m), rustix::fs::AtFlags::empty()).map_err(|e| {
                TarError::Io { context: format!("cannot set times of {}", p.display()), source: e.into() }
            })?;
        }
    }
    let mut order: Vec<&Path> = dirs.iter().map(|(p, _)| p.as_path()).collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    order.dedup();
    for p in order.into_iter().chain([dir]) {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(io_err(|| format!("cannot sync directory {}", p.display())))?;
    }
    Ok(())
}

// ---- the tar format ------------------------------------------------------------------

/// A member's header, with a GNU long name or link already applied.
struct Header {
    name: Vec<u8>,
    link: Vec<u8>,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    uname: Vec<u8>,
    gname: Vec<u8>,
    size: u64,
    mtime: i64,
}

/// The bytes of a NUL-terminated (or full) field.
fn text(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

/// A numeric field: octal digits (surrounded by spaces or NULs), or base-256 when the
/// first byte's high bit is set (GNU tar and PostgreSQL use it for sizes of 8 GiB and
/// more). `None` if neither.
fn number(b: &[u8]) -> Option<u64> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        if b[0] == 0xff {
            return None; // negative
        }
        let mut v = u64::from(b[0] & 0x7f);
        for &c in &b[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(c))?;
        }
        return Some(v);
    }
    // An all-blank field is 0 (some writers leave unused fields empty).
    let mut v: u64 = 0;
    for &c in text(b).iter().skip_while(|&&c| c == b' ') {
        match c {
            b'0'..=b'7' => v = v.checked_mul(8)?.checked_add(u64::from(c - b'0'))?,
            b' ' => break,
            _ => return None,
        }
    }
    Some(v)
}

/// Parses one header block; `None` for the all-zero block that ends an archive.
fn parse_header(b: &[u8; 512]) -> std::result::Result<Option<Header>, String> {
    if b.iter().all(|&c| c == 0) {
        return Ok(None);
    }
    let stored = number(&b[148..156]).ok_or("unreadable header checksum")?;
    let unsigned: u64 =
        b.iter().enumerate().map(|(i, &c)| if (148..156).contains(&i) { 32 } else { u64::from(c) }).sum();
    // Some old writers summed signed bytes.
    let signed: i64 = b
        .iter()
        .enumerate()
        .map(|(i, &c)| if (148..156).contains(&i) { 32 } else { i64::from(i8::from_ne_bytes([c])) })
        .sum();
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err("header checksum mismatch (not a tar archive, or damaged)".into());
    }
    let field = |r: std::ops::Range<usize>, what: &str| number(&b[r]).ok_or_else(|| format!("unreadable {what}"));
    let ustar = &b[257..263] == b"ustar\0";
    let mut name = text(&b[0..100]).to_vec();
    if ustar {
        let prefix = text(&b[345..500]);
        if !prefix.is_empty() {
            let mut full = prefix.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
    }
    let mtime = field(136..148, "modification time")?;
    Ok(Some(Header {
        name,
        link: text(&b[157..257]).to_vec(),
        kind: b[156],
        mode: u32::try_from(field(100..108, "mode")? & 0o7777).unwrap_or(0),
        uid: u32::try_from(field(108..116, "user id")?).map_err(|_| "user id out of range")?,
        gid: u32::try_from(field(116..124, "group id")?).map_err(|_| "group id out of range")?,
        uname: if ustar || &b[257..263] == b"ustar " { text(&b[265..297]).to_vec() } else { Vec::new() },
        gname: if ustar || &b[257..263] == b"ustar " { text(&b[297..329]).to_vec() } else { Vec::new() },
        size: field(124..136, "size")?,
        mtime: i64::try_from(mtime).map_err(|_| "modification time out of range")?,
    }))
}

/// Where the parser is in the archive.
enum State {
    /// Collecting a 512-byte header block.
    Header { buf: Box<[u8; 512]>, have: usize },
    /// A member's data: `left` bytes, then `pad` bytes to the next block.
    Data { to: Dest, left: u64, file_off: u64, pad: u64 },
    /// Skipping padding.
    Pad { left: u64 },
    /// After the end-of-archive block: the rest is ignored, as by tar.
    End,
}

/// Where a member's data goes.
enum Dest {
    File(Arc<Out>),
    LongName(Vec<u8>),
    LongLink(Vec<u8>),
    Nowhere,
}

/// A member's owner on this machine: by name when the name is known here, else its numbers.
fn owner_of(owners: &Owners, h: &Header) -> (u32, u32) {
    let uid = (!h.uname.is_empty()).then(|| owners.user(&h.uname)).flatten();
    let gid = (!h.gname.is_empty()).then(|| owners.group(&h.gname)).flatten();
    (uid.unwrap_or(h.uid), gid.unwrap_or(h.gid))
}

/// The header parser: creates what headers describe and queues file data.
struct Parser<'f> {
    dir: PathBuf,
    jobs: crossbeam_channel::Sender<Job>,
    syncs: crossbeam_channel::Sender<SyncReq>,
    fail: &'f Failure,
    state: State,
    /// Archive offset of the next byte fed.
    offset: u64,
    /// Archive offset of the current member's header.
    member_at: u64,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    /// Directories known to exist (relative; "" is the target).
    known: HashSet<PathBuf>,
    /// Symbolic links the archive created (relative): never written through.
    symlinks: HashSet<PathBuf>,
    /// Directories created, with the archive's modification time if it named them.
    dirs: Vec<(PathBuf, Option<i64>)>,
    dir_index: HashMap<PathBuf, usize>,
    root: bool,
    owners: Owners,
    counts: Unpacked,
}

impl<'f> Parser<'f> {
    fn new(
        dir: &Path,
        jobs: crossbeam_channel::Sender<Job>,
        syncs: crossbeam_channel::Sender<SyncReq>,
        fail: &'f Failure,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            jobs,
            syncs,
            fail,
            state: State::Header { buf: Box::new([0; 512]), have: 0 },
            offset: 0,
            member_at: 0,
            long_name: None,
            long_link: None,
            known: HashSet::from([PathBuf::new()]),
            symlinks: HashSet::new(),
            dirs: Vec::new(),
            dir_index: HashMap::new(),
            root: rustix::process::geteuid().is_root(),
            owners: Owners::default(),
            counts: Unpacked::default(),
        }
    }

    fn into_results(self) -> (Vec<(PathBuf, Option<i64>)>, Unpacked) {
        (self.dirs, self.counts)
    }

    fn format(&self, what: impl Into<String>) -> TarError {
        TarError::Format { offset: self.member_at, what: what.into() }
    }

    fn feed(&mut self, chunk: Vec<u8>) -> Result<()> {
        if self.fail.stopped() {
            return Err(TarError::Stopped);
        }
        let chunk = Arc::new(chunk);
        let mut pos = 0;
        while pos < chunk.len() {
            let avail = chunk.len() - pos;
            match &mut self.state {
                State::Header { buf, have } => {
                    let n = (512 - *have).min(avail);
                    buf[*have..*have + n].copy_from_slice(&chunk[pos..pos + n]);
                    *have += n;
                    pos += n;
                    if *have == 512 {
                        let block = std::mem::replace(buf, Box::new([0; 512]));
                        *have = 0;
                        self.member_at = self.offset + pos as u64 - 512;
                        self.header(&block)?;
                    }
                }
                State::Data { to, left, file_off, pad } => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(avail);
                    match to {
                        Dest::File(out) => {
                            let job =
                                Job { out: out.clone(), offset: *file_off, data: chunk.clone(), range: pos..pos + n };
                            if self.jobs.send(job).is_err() {
                                return Err(TarError::Stopped);
                            }
                        }
                        Dest::LongName(v) | Dest::LongLink(v) => v.extend_from_slice(&chunk[pos..pos + n]),
                        Dest::Nowhere => {}
                    }
                    pos += n;
                    *left -= n as u64;
                    *file_off += n as u64;
                    if *left == 0 {
                        let pad = *pad;
                        match std::mem::replace(&mut self.state, State::Pad { left: pad }) {
                            State::Data { to: Dest::LongName(v), .. } => self.long_name = Some(text(&v).to_vec()),
                            State::Data { to: Dest::LongLink(v), .. } => self.long_link = Some(text(&v).to_vec()),
                            _ => {}
                        }
                        self.after_pad();
                    }
                }
                State::Pad { left } => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(avail);
                    pos += n;
                    *left -= n as u64;
                    self.after_pad();
                }
                State::End => pos = chunk.len(),
            }
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// From padding with nothing left to the next header.
    fn after_pad(&mut self) {
        if matches!(self.state, State::Pad { left: 0 }) {
            self.state = State::Header { buf: Box::new([0; 512]), have: 0 };
        }
    }

    /// The archive ended: it must not end inside a member.
    fn end(&mut self) -> Result<()> {
        match &self.state {
            State::End | State::Header { have: 0, .. } => Ok(()),
            State::Pad { .. } => Ok(()),
            State::Header { .. } => Err(self.format("the archive ends inside a header")),
            State::Data { .. } => Err(self.format("the archive ends inside this member's data")),
        }
    }

    /// The member's path relative to the target: no absolute names, no `..`, not through a
    /// symbolic link the archive made.
    fn relative(&self, name: &[u8]) -> Result<PathBuf> {
        use std::os::unix::ffi::OsStrExt as _;
        let shown = String::from_utf8_lossy(name);
        let mut rel = PathBuf::new();
        for c in Path::new(std::ffi::OsStr::from_bytes(name)).components() {
            match c {
                Component::Normal(p) => rel.push(p),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                    return Err(self.format(format!("member {shown:?} would be written outside the target")));
                }
            }
        }
        if rel.as_os_str().is_empty() {
            return Err(self.format(format!("member {shown:?} has no name")));
        }
        if rel.ancestors().skip(1).any(|a| self.symlinks.contains(a)) {
            return Err(self.format(format!("member {shown:?} lies under a symbolic link of the archive")));
        }
        Ok(rel)
    }

    /// Makes sure the parent directories of `rel` exist (tar creates missing ones too), one
    /// at a time and never through a symbolic link: something at a parent's name that is not
    /// a directory (a symlink, however it came there: a hard link to one of the archive's is
    /// one too) fails the member instead of being followed out of the target.
    fn parents(&mut self, rel: &Path) -> Result<()> {
        let Some(parent) = rel.parent() else { return Ok(()) };
        if self.known.contains(parent) {
            return Ok(());
        }
        let mut at = PathBuf::new();
        for c in parent.components() {
            at.push(c);
            if self.known.contains(&at) {
                continue;
            }
            let full = self.dir.join(&at);
            match std::fs::create_dir(&full) {
                Ok(()) => {}
                // Its parents are known directories, so this looks at the entry itself.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir()) {
                        return Err(self.format(format!(
                            "member {:?} lies under {:?}, which is not a directory",
                            rel.display(),
                            at.display()
                        )));
                    }
                }
                Err(e) => return Err(io_err(|| format!("cannot create directory {}", full.display()))(e)),
            }
            self.known.insert(at.clone());
            self.dir_index.insert(at.clone(), self.dirs.len());
            self.dirs.push((full, None));
        }
        Ok(())
    }

    fn chown(&mut self, h: &Header, on: Chown<'_>) -> Result<()> {
        if !self.root {
            return Ok(());
        }
        use rustix::fs::{AtFlags, CWD, Gid, Uid};
        let (uid, gid) = owner_of(&self.owners, h);
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        let (res, path) = match on {
            Chown::Fd(f, p) => (rustix::fs::fchown(f, uid, gid), p),
            Chown::Path(p) => (rustix::fs::chownat(CWD, p, uid, gid, AtFlags::SYMLINK_NOFOLLOW), p),
        };
        res.map_err(|e| TarError::Io { context: format!("cannot set owner of {}", path.display()), source: e.into() })
    }

    fn header(&mut self, block: &[u8; 512]) -> Result<()> {
        let Some(mut h) = parse_header(block).map_err(|e| self.format(e))? else {
            self.state = State::End;
            return Ok(());
        };
        let pad = h.size.next_multiple_of(512) - h.size;
        match h.kind {
            b'L' | b'K' => {
                if h.size > MAX_LONG_NAME {
                    return Err(self.format(format!("a GNU long name of {} bytes", h.size)));
                }
                let v = Vec::with_capacity(usize::try_from(h.size).unwrap_or(0));
                let to = if h.kind == b'L' { Dest::LongName(v) } else { Dest::LongLink(v) };
                self.data(to, h.size, pad);
                return Ok(());
            }
            _ => {}
        }
        if let Some(n) = self.long_name.take() {
            h.name = n;
        }
        if let Some(l) = self.long_link.take() {
            h.link = l;
        }
        let shown = String::from_utf8_lossy(&h.name).into_owned();
        if h.kind == b'5' && is_target_itself(&h.name) {
            // "./" (GNU tar archives carry it; pg_basebackup's do not): the target
            // directory's own mode is the caller's (a data directory must be 0700 or 0750).
            self.data(Dest::Nowhere, h.size, pad);
            return Ok(());
        }
        let rel = self.relative(&h.name)?;
        let full = self.dir.join(&rel);
        match h.kind {
            b'0' | 0 | b'7' => {
                self.parents(&rel)?;
                let file = create_file(&full)?;
                file.set_permissions(std::fs::Permissions::from_mode(h.mode))
                    .map_err(io_err(|| format!("cannot set permissions of {}", full.display())))?;
                self.chown(&h, Chown::Fd(&file, &full))?;
                self.counts.files += 1;
                self.counts.bytes += h.size;
                let out =
                    Arc::new(Out { file, path: full, size: h.size, left: AtomicU64::new(h.size), mtime: h.mtime });
                if h.size == 0 {
                    out.set_mtime()?;
                    if self.syncs.send(SyncReq::Done(out)).is_err() {
                        return Err(TarError::Stopped);
                    }
                    self.state = State::Header { buf: Box::new([0; 512]), have: 0 };
                } else {
                    self.data(Dest::File(out), h.size, pad);
                }
                return Ok(());
            }
            b'5' => {
                self.parents(&rel)?;
                match std::fs::create_dir(&full) {
                    Ok(()) => {}
                    // Not through a symbolic link of the same name (`symlink_metadata`): its
                    // target's mode would be changed, outside the target directory.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AlreadyExists
                            && std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir()) => {}
                    Err(e) => return Err(io_err(|| format!("cannot create directory {}", full.display()))(e)),
                }
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(h.mode))
                    .map_err(io_err(|| format!("cannot set permissions of {}", full.display())))?;
                self.chown(&h, Chown::Path(&full))?;
                self.counts.dirs += 1;
                match self.dir_index.get(&rel) {
                    Some(&i) => self.dirs[i].1 = Some(h.mtime),
                    None => {
                        self.dir_index.insert(rel.clone(), self.dirs.len());
                        self.dirs.push((full, Some(h.mtime)));
                    }
                }
                self.known.insert(rel);
            }
            b'2' => {
                use std::os::unix::ffi::OsStrExt as _;
                self.parents(&rel)?;
                let target = std::ffi::OsStr::from_bytes(&h.link);
                replace_with(&full, || std::os::unix::fs::symlink(target, &full))
                    .map_err(io_err(|| format!("cannot create symbolic link {}", full.display())))?;
                self.chown(&h, Chown::Path(&full))?;
                rustix::fs::utimensat(rustix::fs::CWD, &full, &times(h.mtime), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| TarError::Io {
                    context: format!("cannot set times of {}", full.display()),
                    source: e.into(),
                })?;
                self.symlinks.insert(rel);
                self.counts.symlinks += 1;
            }
            b'1' => {
                self.parents(&rel)?;
                let to = self.relative(&h.link)?;
                // Linked through a known directory only: a parent that is a hard link to an
                // archive symlink would reach a file outside (linkat follows parents).
                if !to.parent().is_none_or(|p| self.known.contains(p)) {
                    return Err(self.format(format!(
                        "member {shown:?} links to {:?}, which is not in a directory of the archive",
                        to.display()
                    )));
                }
                let target = self.dir.join(to);
                replace_with(&full, || std::fs::hard_link(&target, &full))
                    .map_err(io_err(|| format!("cannot link {} to {}", full.display(), target.display())))?;
                self.counts.files += 1;
            }
            k => {
                let what = match k {
                    b'3' => "a character device",
                    b'4' => "a block device",
                    b'6' => "a fifo",
                    b'S' => "a GNU sparse file",
                    b'x' | b'g' => "a pax extended header",
                    _ => "an entry",
                };
                return Err(self.format(format!(
                    "member {shown:?} is {what} (type {:?}), which this restore does not unpack",
                    char::from(k)
                )));
            }
        }
        // Directories, links: any data they carry is skipped.
        self.data(Dest::Nowhere, h.size, pad);
        Ok(())
    }

    /// The next `size` bytes (then `pad`) go to `to`.
    fn data(&mut self, to: Dest, size: u64, pad: u64) {
        self.state = if size == 0 {
            if pad == 0 { State::Header { buf: Box::new([0; 512]), have: 0 } } else { State::Pad { left: pad } }
        } else {
            State::Data { to, left: size, file_off: 0, pad }
        };
    }
}

/// Whether a name means the archive's root ("." or "./").
fn is_target_itself(name: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    Path::new(std::ffi::OsStr::from_bytes(name)).components().all(|c| c == Component::CurDir)
}

enum Chown<'a> {
    Fd(&'a std::fs::File, &'a Path),
    Path(&'a Path),
}

/// Creates a new file at `p` for writing, replacing a file of the same name (a member
/// repeated in the archive: the later one wins, as with tar; writes still queued for the
/// earlier one go to its unlinked inode).
fn create_file(p: &Path) -> Result<std::fs::File> {
    let open = || std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(p);
    let mut f = None;
    replace_with(p, || {
        f = Some(open()?);
        Ok(())
    })
    .map_err(io_err(|| format!("cannot create {}", p.display())))?;
    Ok(f.expect("created"))
}

/// Runs `make`; if `p` already exists (and is not a directory), removes it and runs it again.
fn replace_with(p: &Path, mut make: impl FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
    match make() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                return Err(e);
            }
            std::fs::remove_file(p)?;
            make()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;
    use std::process::Command;

    /// The tar unpacker wraps repository errors transparently (the repository error is not
    /// in the `source()` chain): its class must still be the repository error's.
    #[test]
    fn a_wrapped_repository_error_keeps_its_class() {
        use coffer_store::{ErrorClass, StoreError};
        let corrupt = TarError::Repo(RepoError::corrupt("blob 12 in pack ab", "authentication failed"));
        assert_eq!(corrupt.class(), ErrorClass::Integrity);
        let missing = StoreError::NotFound { key: "data/ab/ab".into(), version: None };
        assert_eq!(TarError::Repo(RepoError::store("reading pack ab")(missing)).class(), ErrorClass::NotFound);
        assert_eq!(TarError::Format { offset: 0, what: "fifo".into() }.class(), ErrorClass::Invalid);
        let files = crate::files::FilesError::Repo(RepoError::corrupt("x", "y"));
        assert_eq!(files.class(), ErrorClass::Integrity);
    }

    /// Pseudo-random bytes (SplitMix64).
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    fn run(c: &mut Command) {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A source tree like a data directory: nested directories with modes, files of many
    /// sizes (empty, under a block, exactly a block, across chunk boundaries, larger than
    /// the write-back step), odd modes, symbolic links, a long name.
    fn source(root: &Path) {
        let set_mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        for d in ["base/1", "base/5", "global", "pg_wal/archive_status", "pg_tblspc", "empty"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let sizes = [0, 1, 511, 512, 513, 8192, 100_000, 1 << 20, (WRITEBACK_STEP + 12_345) as usize];
        for (i, n) in sizes.iter().enumerate() {
            let p = root.join(format!("base/1/{}", 1000 + i));
            std::fs::write(&p, bytes(i as u64, *n)).unwrap();
            set_mode(&p, if i % 3 == 0 { 0o640 } else { 0o600 });
        }
        std::fs::write(root.join("global/pg_control"), bytes(99, 8192)).unwrap();
        std::fs::write(root.join("PG_VERSION"), b"15\n").unwrap();
        let long = format!("base/5/{}", "x".repeat(150));
        std::fs::write(root.join(&long), bytes(7, 3000)).unwrap();
        std::fs::write(root.join("ro"), b"read only").unwrap();
        set_mode(&root.join("ro"), 0o400);
        std::os::unix::fs::symlink("/nonexistent/tablespace", root.join("pg_tblspc/16400")).unwrap();
        std::os::unix::fs::symlink("PG_VERSION", root.join("link-to-version")).unwrap();
        set_mode(&root.join("base"), 0o750);
        set_mode(&root.join("empty"), 0o700);
        // Distinct times, set last (writing into a directory changes its time).
        let mut t = 1_600_000_000;
        for e in walk(root) {
            t += 1000;
            rustix::fs::utimensat(rustix::fs::CWD, &e, &times(t), rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
    }

    fn walk(root: &Path) -> Vec<PathBuf> {
        let mut all = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p.clone());
                }
                all.push(p);
            }
        }
        // Files first, then directories deepest first.
        all.sort_by_key(|p| {
            (std::fs::symlink_metadata(p).unwrap().is_dir(), std::cmp::Reverse(p.components().count()))
        });
        all
    }

    /// Feeds `archive` in pieces of the given sizes (cycled).
    fn unpack_in_pieces(archive: &[u8], pieces: &[usize], dir: &Path, threads: Threads) -> Result<Unpacked> {
        unpack_stream(dir, threads, |sink| {
            let mut pos = 0;
            let mut i = 0;
            while pos < archive.len() {
                let n = pieces[i % pieces.len()].min(archive.len() - pos);
                sink(archive[pos..pos + n].to_vec())?;
                pos += n;
                i += 1;
            }
            Ok(())
        })
    }

    #[test]
    fn unpacks_gnu_ustar_and_v7_archives_exactly_as_tar_does_in_any_piece_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        source(&src);
        let mut n = 0;
        for format in ["gnu", "ustar", "v7"] {
            // The small archive leaves out the file larger than the write-back step, so it
            // can be fed byte by byte.
            for (small, pieces_list) in [
                (false, vec![vec![1 << 20], vec![511, 1024, 7, 65_536, 513], vec![usize::MAX]]),
                (true, vec![vec![1], vec![512], vec![100_000]]),
            ] {
                let archive = tmp.path().join(format!("{format}-{small}.tar"));
                let mut c = Command::new("tar");
                c.args(["-c", "-f"]).arg(&archive).arg(format!("--format={format}"));
                if format != "gnu" {
                    // ustar and v7 cannot hold the 150-byte name.
                    c.arg("--exclude=xxxxx*");
                }
                if small {
                    c.arg("--exclude=1008");
                }
                run(c.arg("-C").arg(&src).arg("."));
                let reference = tmp.path().join(format!("{format}-{small}-tar"));
                std::fs::create_dir(&reference).unwrap();
                run(Command::new("tar").args(["-x", "-p", "-f"]).arg(&archive).arg("-C").arg(&reference));
                let want = coffer_testkit::tree::describe(&reference, true);
                assert!(want.len() >= 15, "{want:?}");
                let data = std::fs::read(&archive).unwrap();
                for pieces in pieces_list {
                    n += 1;
                    let dir = tmp.path().join(format!("out{n}"));
                    std::fs::create_dir(&dir).unwrap();
                    let threads = Threads { decoders: 1, writers: 1 + n % 3, syncers: 1 + n % 4 };
                    let got = unpack_in_pieces(&data, &pieces, &dir, threads).unwrap();
                    assert!(got.files >= 11 && got.symlinks == 2 && got.dirs >= 6, "{got:?}");
                    assert_eq!(
                        coffer_testkit::tree::describe(&dir, true),
                        want,
                        "{format}, small {small}, pieces {pieces:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_members_outside_the_target_and_unsupported_types_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |name: &str, kind: u8, link: &str| {
            let mut b = [0u8; 512];
            b[..name.len()].copy_from_slice(name.as_bytes());
            b[100..107].copy_from_slice(b"0000644");
            b[108..115].copy_from_slice(b"0000000");
            b[116..123].copy_from_slice(b"0000000");
            b[124..135].copy_from_slice(b"00000000000");
            b[136..147].copy_from_slice(b"00000000000");
            b[156] = kind;
            b[157..157 + link.len()].copy_from_slice(link.as_bytes());
            b[257..263].copy_from_slice(b"ustar\0");
            b[263..265].copy_from_slice(b"00");
            b[148..156].copy_from_slice(b"        ");
            let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
            b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            b.to_vec()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (mk("../escape", b'0', ""), "outside the target"),
            (mk("/abs", b'0', ""), "outside the target"),
            ([mk("l", b'2', "/tmp"), mk("l/x", b'0', "")].concat(), "under a symbolic link"),
            (mk("fifo", b'6', ""), "a fifo"),
            (
                {
                    let mut b = mk("bad", b'0', "");
                    b[0] = b'c';
                    b
                },
                "checksum mismatch",
            ),
        ];
        for (i, (archive, want)) in cases.into_iter().enumerate() {
            let dir = tmp.path().join(format!("t{i}"));
            std::fs::create_dir(&dir).unwrap();
            let e = unpack_in_pieces(&archive, &[300], &dir, Threads::default()).unwrap_err();
            assert!(matches!(e, TarError::Format { .. }) && e.to_string().contains(want), "{e}");
        }
        // A directory member where the archive made a symbolic link: refused, and nothing
        // is changed through the link.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = tmp.path().join("through-link");
        std::fs::create_dir(&dir).unwrap();
        let archive = [mk("d", b'2', outside.to_str().unwrap()), mk("d/", b'5', "")].concat();
        let e = unpack_in_pieces(&archive, &[512], &dir, Threads::default()).unwrap_err();
        assert!(e.to_string().contains("cannot create directory"), "{e}");
        assert_eq!(std::fs::metadata(&outside).unwrap().mode() & 0o777, 0o700);
        // Truncated inside a member's data.
        let mut archive = mk("f", b'0', "");
        archive[124..135].copy_from_slice(b"00000001000");
        archive[148..156].copy_from_slice(b"        ");
        let sum: u32 = archive.iter().map(|&c| u32::from(c)).sum();
        archive[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        archive.extend_from_slice(&[7; 100]);
        let dir = tmp.path().join("trunc");
        std::fs::create_dir(&dir).unwrap();
        let e = unpack_in_pieces(&archive, &[4096], &dir, Threads::default()).unwrap_err();
        assert!(e.to_string().contains("ends inside"), "{e}");
    }

    /// A header block for member `name` of type `kind` linking to `link`, with `size` bytes.
    fn member(name: &str, kind: u8, link: &str, size: usize) -> Vec<u8> {
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0000000");
        b[116..123].copy_from_slice(b"0000000");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"00000000000");
        b[156] = kind;
        b[157..157 + link.len()].copy_from_slice(link.as_bytes());
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b.to_vec()
    }

    /// A regular file member holding `data`.
    fn file_member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut m = member(name, b'0', "", data.len());
        m.extend_from_slice(data);
        m.resize(m.len().next_multiple_of(512), 0);
        m
    }

    /// Issue 11: an archive from a forged `pg-base` snapshot cannot write outside the target
    /// through hard links (to `..`, an absolute name, or beneath a symlink of the archive),
    /// nested `..`, or a symlink followed by members beneath it (also under another name: a
    /// hard link to it, which wrote outside before parents were created one at a time); each
    /// is refused naming the member, and the directories around the target stay as they were.
    #[test]
    fn forged_archives_write_nothing_outside_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        let out = outside.to_str().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            ([file_member("f", b"x"), member("h", b'1', "../outside/secret", 0)].concat(), "outside the target"),
            (member("h", b'1', &format!("{out}/secret"), 0), "outside the target"),
            ([member("l", b'2', out, 0), member("h", b'1', "l/secret", 0)].concat(), "under a symbolic link"),
            (file_member("d/../../outside/new", b"pwned"), "outside the target"),
            (file_member("./../outside/new", b"pwned"), "outside the target"),
            ([member("l", b'2', out, 0), file_member("l/new", b"pwned")].concat(), "under a symbolic link"),
            ([member("l", b'2', out, 0), member("l/sub/", b'5', "", 0)].concat(), "under a symbolic link"),
            ([member("d/l", b'2', out, 0), file_member("d/./l/new", b"pwned")].concat(), "under a symbolic link"),
            // A hard link to the archive's symlink is that symlink under another name.
            (
                [member("l", b'2', out, 0), member("h", b'1', "l", 0), file_member("h/new", b"pwned")].concat(),
                "lies under \"h\", which is not a directory",
            ),
            (
                [member("l", b'2', out, 0), member("h", b'1', "l", 0), member("h2", b'1', "h/secret", 0)].concat(),
                "which is not in a directory of the archive",
            ),
        ];
        for (i, (mut archive, want)) in cases.into_iter().enumerate() {
            archive.extend_from_slice(&[0; 1024]);
            let dir = tmp.path().join(format!("t{i}"));
            std::fs::create_dir(&dir).unwrap();
            let e = unpack_in_pieces(&archive, &[512], &dir, Threads::default()).unwrap_err();
            assert!(matches!(e, TarError::Format { .. }) && e.to_string().contains(want), "case {i}: {e}");
            let mut names: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            assert_eq!(names, ["secret"], "case {i} wrote outside the target");
            assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
            assert_eq!(std::fs::metadata(outside.join("secret")).unwrap().nlink(), 1, "case {i} linked to it");
        }
    }

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(number(b"00000001000\0"), Some(512));
        assert_eq!(number(b"  777 \0"), Some(0o777));
        assert_eq!(number(b"\0\0\0\0"), Some(0));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]), Some(2 << 32));
        assert_eq!(number(b"12x"), None);
    }
}
