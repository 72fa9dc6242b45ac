//! `restore`: reproduce a snapshot's files exactly under a target directory.
//!
//! Order matters for exactness: a file's content first, then owner (which clears
//! setuid/setgid), then mode, then extended attributes, then times; directories get
//! their metadata last, deepest first, once everything inside them is in place, so
//! creating their children does not move their mtime. As non-root, what cannot be done
//! (owners, device nodes, privileged xattrs) is a warning and the rest is restored. An
//! owner a new file already has is not set again (only when that is certain: [`created_owner`]).
//!
//! The walk creates directories, symlinks and special files and lists regular files; every
//! [`BATCH_FILES`] files listed (and at the end) it stops while workers (two per core from a
//! local store, one from a remote one) create each file listed,
//! write its content and set its metadata through the open descriptor (no path lookups),
//! reading blob ranges from packs kept open (local) or sharing a cache of whole packs
//! fetched ahead in the order the list needs them (remote). A large file is cut into
//! pieces of about 32 MiB that different workers write at once (positioned writes); the
//! worker finishing a file's last piece sets its length and metadata, so metadata still
//! comes after all content. Workers take runs of pieces of one directory's files, so they
//! rarely create files in the same directory at once (its lock). Further names of
//! hard-linked files are linked once the batch holding their first name is written; a link
//! changes no time but ctime. A directory gets its metadata once the walk has left it and
//! the batch holding its last files is written. So a restore holds one batch of files and
//! the directories the walk is in, not the snapshot's list of files (memory: `docs/memory.md`).
//! What is written goes to disk while the restore runs and is on disk when it reports
//! success ([`super::writeback`]).
//!
//! The invariant it guards: **a restore never writes outside its target.** A snapshot is
//! hostile input (a compromised backup host holds the writer's key and the password and can
//! forge trees that authenticate), so each tree's entries are checked first
//! ([`Tree::hostile_entries`](coffer_repository::Tree::hostile_entries)): an entry whose
//! name is empty, `.` or `..`, or holds `/` or NUL, or repeats in its directory is refused — named in
//! [`RestoreReport::refused`], which the caller must report as a failure — and neither it nor
//! anything below it is restored; everything else is. And nothing is created through a path:
//! the walk holds a handle on each directory it is in and creates entries relative to it
//! (`mkdirat`, `symlinkat`, `mknodat`, then `openat` with `O_NOFOLLOW | O_DIRECTORY` to
//! descend); workers and the final passes reopen a directory from the target's handle with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, or component by component with
//! `O_NOFOLLOW` where the kernel lacks it ([`Confined`]). So even an entry the checks missed
//! cannot make the restore follow a symlink, its own or anyone's: a symlink `a` and then a
//! directory `a` fails to open `a` as a directory instead of writing through it. The cost is
//! per directory, not per file: the walk holds one handle per level of depth, and opens each
//! directory once more; a worker opens a directory once per run of its files. Counted with
//! `strace -c` on 10 000 files in 213 directories: 73 185 syscalls against 71 947 before
//! (+211 `openat`, +414 `openat2`, +626 `close`, −628 `statx`), +1.7 %.
//!
//! Progress and cancellation: a `"restore"` phase whose total (regular files and their
//! bytes, from the snapshot's trees) grows while the walk lists the files and is complete
//! once the walk ends (before any content is written when the snapshot fits one batch); `Advance` as pieces are written and files finished. The
//! [`JobControl`]'s token is checked at each entry of the walk, each piece and each blob. **A
//! cancelled restore leaves what it already wrote** under the target (files possibly
//! partial, directories without their final metadata) and returns
//! [`RepoError::Cancelled`](coffer_repository::RepoError::Cancelled): the target is not a
//! restore of the snapshot and should be removed, or restored into again once emptied.

use super::walk::os;
use super::writeback::Writeback;
use super::{FilesError, Result, io_err};
use coffer_repository::{Event, Id, JobControl, Node, NodeKind, Progress, Repository, SharedReader, Snapshot};
use globset::{GlobSet, GlobSetBuilder};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// What to restore and where: the options of a files restore job, the same struct for the
/// command line (clap, feature `clap`) and a policy file (serde: kebab-case keys, unknown
/// keys refused). `read_ahead` follows the store ([`read_ahead_for`]), never configured.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct RestoreOptions {
    /// Directory to restore into (created; must be empty if it exists)
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR"))]
    pub target: PathBuf,
    /// Restore only paths matching this glob (absolute snapshot paths), and all below
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "GLOB"))]
    pub include: Vec<String>,
    /// Restore only these regular files (absolute snapshot paths, compared exactly: no glob,
    /// any name bytes), with the directories that hold them; `include` is then ignored. For
    /// a drill's random sample of files.
    #[serde(skip)]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub exact: Option<std::collections::BTreeSet<PathBuf>>,
    /// Bytes of packs fetched ahead of the workers, on top of the packs they use: worth it
    /// for a remote store, whose latency per request then overlaps with writing
    /// ([`REMOTE_READ_AHEAD`]); 0 for a local one, where it only costs memory and blobs are
    /// read by range instead of packs whole.
    #[serde(skip)]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub read_ahead: u64,
}

/// Packs a restore from a local store keeps open for ranged reads.
const OPEN_PACKS: usize = 16;

/// The read-ahead budget for a remote store (S3): measured on LocalStack, 64 MiB took a
/// 200 MiB restore from 1.03x to 1.89x restic's speed, 32 MiB to 1.69x.
pub const REMOTE_READ_AHEAD: u64 = 64 << 20;

/// The read-ahead budget ([`RestoreOptions::read_ahead`]) for a store with these
/// capabilities: [`REMOTE_READ_AHEAD`] for a remote one, 0 for a local one.
#[must_use]
pub fn read_ahead_for(caps: coffer_store::Capabilities) -> u64 {
    if caps.remote { REMOTE_READ_AHEAD } else { 0 }
}

/// What a restore did.
#[derive(Clone, Debug, Default)]
pub struct RestoreReport {
    /// Files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Other entries (symlinks, fifos, devices, hard links).
    pub others: u64,
    /// Bytes of content written.
    pub bytes: u64,
    /// What could not be reproduced.
    pub warnings: Vec<String>,
    /// Content lost to damaged or missing repository data: each names the restored path,
    /// the byte range not restored (left as a hole) and the blob and pack. The restore goes
    /// on past such damage; a caller must report it as a failure. Sorted by path and offset.
    pub damaged: Vec<String>,
    /// Entries refused because restoring them could write outside the target or through
    /// another entry (a forged snapshot): each names the directory and the entry, quoted.
    /// Nothing of them, nor below them, is restored; a caller must report it as a failure.
    pub refused: Vec<String>,
}

/// How a directory is opened to create entries in it or to set its metadata: never through
/// a symlink (an entry the restore may not trust), and readable for `fchmod` and `futimens`.
const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// The restore's target, open: every directory below it is reached from this handle
/// without following a symlink, so nothing is created anywhere else.
struct Confined {
    target: PathBuf,
    root: OwnedFd,
    /// Whether `openat2` works here (Linux 5.6 and later, unless a seccomp filter hides it).
    openat2: AtomicBool,
}

impl Confined {
    fn new(target: &Path) -> Result<Self> {
        // The target itself is the caller's choice, so it may be reached through a symlink.
        let root = rustix::fs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| FilesError::Io { context: format!("cannot open {}", target.display()), source: e.into() })?;
        Ok(Self { target: target.to_owned(), root, openat2: AtomicBool::new(true) })
    }

    /// The directory `dir` (a path under the target this restore created), opened with no
    /// symlink followed on the way: one `openat2` where the kernel has it, else one `openat`
    /// per component.
    fn dir(&self, dir: &Path) -> Result<OwnedFd> {
        let rel = dir.strip_prefix(&self.target).unwrap_or(dir);
        let opened = || -> rustix::io::Result<OwnedFd> {
            if self.openat2.load(Ordering::Relaxed) {
                let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
                let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
                match rustix::fs::openat2(&self.root, rel, DIR_FLAGS, Mode::empty(), how) {
                    Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                        self.openat2.store(false, Ordering::Relaxed)
                    }
                    other => return other,
                }
            }
            let mut fd = rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty())?;
            for c in rel.components() {
                let Component::Normal(name) = c else { return Err(rustix::io::Errno::INVAL) };
                fd = rustix::fs::openat(&fd, name, DIR_FLAGS, Mode::empty())?;
            }
            Ok(fd)
        };
        opened().map_err(|e| FilesError::Io {
            context: format!("cannot open directory {}", dir.display()),
            source: e.into(),
        })
    }
}

/// `dst`'s last component: every restored entry's path ends in its (checked) name.
fn name_of(dst: &Path) -> &OsStr {
    dst.file_name().unwrap_or(dst.as_os_str())
}

/// Metadata application shared by the walk and the workers.
struct Meta {
    is_root: bool,
    /// The owner everything this restore creates gets, when it is known: setting it again
    /// is skipped (a `fchown` per file was 2 % of a tree restore's CPU time).
    created_owner: Option<(u32, u32)>,
    /// (path, offset, message): sorted by path and offset at the end, since pieces of a
    /// file are written in any order.
    damaged: Mutex<Vec<(PathBuf, u64, String)>>,
    ids: crate::owners::Owners,
    warned_owner: AtomicBool,
    warnings: Mutex<Vec<String>>,
}

impl Meta {
    fn damage(&self, path: &Path, at: u64, msg: String) {
        self.damaged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((path.to_owned(), at, msg));
    }

    fn warn(&self, msg: String) {
        let mut w = self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.len() < 1000 {
            w.push(msg);
        }
    }

    /// Applies `n`'s metadata to the entry `name` of directory `dir` (`dst` in messages),
    /// not following a symlink.
    fn apply_at(&self, dir: BorrowedFd<'_>, name: &OsStr, dst: &Path, n: &Node, symlink: bool) -> Result<()> {
        self.apply_to(On::At(dir, name, symlink), dst, n)
    }

    /// Applies `n`'s metadata through an open file: no path lookups, and the file written
    /// is the one changed.
    fn apply_fd(&self, f: &fs::File, dst: &Path, n: &Node) -> Result<()> {
        self.apply_to(On::Fd(f), dst, n)
    }

    fn apply_to(&self, on: On<'_>, dst: &Path, n: &Node) -> Result<()> {
        use rustix::fs::{AtFlags, Gid, Timespec, Timestamps, Uid};
        let uid = n.user.as_deref().and_then(|u| self.ids.user(u.as_bytes())).unwrap_or(n.uid);
        let gid = n.group.as_deref().and_then(|g| self.ids.group(g.as_bytes())).unwrap_or(n.gid);
        let owned = if self.created_owner == Some((uid, gid)) {
            Ok(())
        } else {
            let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
            match on {
                On::At(d, name, _) => rustix::fs::chownat(d, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
                On::Fd(f) => rustix::fs::fchown(f, uid, gid),
            }
        };
        if let Err(e) = owned {
            if self.is_root {
                self.warn(format!("cannot set owner of {}: {e}", dst.display()));
            } else if !self.warned_owner.swap(true, Ordering::Relaxed) {
                self.warn(format!("not running as root: owners are not restored (first: {})", dst.display()));
            }
        }
        let perm = fs::Permissions::from_mode(n.mode);
        match on {
            On::At(_, _, true) => {}
            // Follows a symlink at `name`, but the entry there is the fifo or device node this
            // restore just made in a directory only it writes to (Linux has no `lchmod`).
            On::At(d, name, false) => {
                rustix::fs::chmodat(d, name, Mode::from_raw_mode(n.mode), AtFlags::empty()).map_err(|e| {
                    FilesError::Io { context: format!("cannot set permissions of {}", dst.display()), source: e.into() }
                })?
            }
            On::Fd(f) => {
                f.set_permissions(perm).map_err(io_err(format!("cannot set permissions of {}", dst.display())))?;
            }
        }
        for x in &n.xattrs {
            let set = match on {
                // No `lsetxattrat`: the directory's handle as a path, the entry not followed.
                On::At(d, name, _) => rustix::fs::lsetxattr(
                    Path::new(&format!("/proc/self/fd/{}", d.as_raw_fd())).join(name),
                    x.name.as_str(),
                    &x.value,
                    rustix::fs::XattrFlags::empty(),
                ),
                On::Fd(f) => rustix::fs::fsetxattr(f, x.name.as_str(), &x.value, rustix::fs::XattrFlags::empty()),
            };
            if let Err(e) = set {
                self.warn(format!("cannot set extended attribute {} of {}: {e}", x.name, dst.display()));
            }
        }
        // Before 1970 jiff's sub-second part is negative; a timespec's must be 0..1e9.
        let t = |ts: jiff::Timestamp| {
            let (sec, nsec) = (ts.as_second(), i64::from(ts.subsec_nanosecond()));
            if nsec < 0 {
                Timespec { tv_sec: sec - 1, tv_nsec: nsec + 1_000_000_000 }
            } else {
                Timespec { tv_sec: sec, tv_nsec: nsec }
            }
        };
        let times = Timestamps { last_access: t(n.atime), last_modification: t(n.mtime) };
        match on {
            On::At(d, name, _) => rustix::fs::utimensat(d, name, &times, AtFlags::SYMLINK_NOFOLLOW),
            On::Fd(f) => rustix::fs::futimens(f, &times),
        }
        .map_err(|e| FilesError::Io { context: format!("cannot set times of {}", dst.display()), source: e.into() })
    }
}

/// What metadata is applied to: an entry of an open directory (`true`: a symlink) or an
/// open file.
#[derive(Clone, Copy)]
enum On<'a> {
    At(BorrowedFd<'a>, &'a OsStr, bool),
    Fd(&'a fs::File),
}

/// A directory the walk is in: its path, and its handle once it exists (with an include
/// filter, a directory is created only when something in it is restored).
struct Level {
    path: PathBuf,
    fd: Option<Rc<OwnedFd>>,
}

struct Walk<'a> {
    reader: &'a SharedReader<'a>,
    /// The directories from the target down to the one being restored.
    levels: Vec<Level>,
    include: Option<GlobSet>,
    exact: Option<&'a std::collections::BTreeSet<PathBuf>>,
    meta: &'a Meta,
    report: RestoreReport,
    links: HashMap<(u64, u64), PathBuf>,
    /// Regular files to create and fill, in walk order, to the workers.
    files: Vec<(PathBuf, Node)>,
    /// Further names of hard-linked files: (existing name, new name).
    hard_links: Vec<(PathBuf, PathBuf)>,
    /// Directories to finish, in creation order.
    dirs: Vec<(PathBuf, Node)>,
    ctl: &'a JobControl,
    /// Regular files listed so far and their bytes (the phase's total).
    total: Progress,
    /// Content blobs of the files in `files`.
    batch_blobs: usize,
    /// What [`Walk::flush`] needs to fill a batch of files.
    confined: &'a Confined,
    writeback: &'a Writeback,
    workers: usize,
    read_ahead: u64,
    /// Files and bytes written by the batches filled so far.
    written: Progress,
}

/// A batch of regular files is filled once the walk has listed this many ([`Walk::flush`]):
/// about 16 MiB of file list (a file's path and entry are about 1 KiB), and several runs of
/// [`GROUP_FILES`] for the workers to share. (Tiny in the unit tests, so that their trees
/// span many batches.)
const BATCH_FILES: usize = if cfg!(test) { 7 } else { 16_384 };
/// …or their content is this many blobs (8 MiB of ids).
const BATCH_BLOBS: usize = if cfg!(test) { 8 } else { 1 << 18 };

/// While the walk lists files, a growing total is reported each time this many more are listed.
const TOTAL_EVERY: u64 = 1000;

/// Restores `snap` into `opts.target`.
///
/// # Errors
/// A non-empty target, repository errors (`Corrupt` names the blob and pack), and file
/// system errors creating what is restored;
/// [`RepoError::Cancelled`](coffer_repository::RepoError::Cancelled) once `ctl` is cancelled
/// (what was written stays).
pub fn restore(repo: &Repository, snap: &Snapshot, opts: &RestoreOptions, ctl: &JobControl) -> Result<RestoreReport> {
    ctl.check()?;
    let target = &opts.target;
    if let Ok(mut rd) = fs::read_dir(target) {
        if rd.next().is_some() {
            return Err(FilesError::Invalid(format!(
                "restore target {} is not empty; restore into a new or empty directory",
                target.display()
            )));
        }
    }
    fs::create_dir_all(target).map_err(io_err(format!("cannot create {}", target.display())))?;
    let confined = Confined::new(target)?;
    let include = if opts.include.is_empty() {
        None
    } else {
        let mut b = GlobSetBuilder::new();
        for g in &opts.include {
            b.add(
                globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| FilesError::Invalid(format!("bad include pattern {g:?}: {e}")))?,
            );
        }
        Some(b.build().map_err(|e| FilesError::Invalid(format!("bad include patterns: {e}")))?)
    };
    let index = repo.load_index()?;
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).clamp(1, 8);
    // A local store: blobs read by range from packs kept open (memory: a tree restore
    // peaked at 133 MiB with three packs cached whole), two workers per core: a worker
    // waits for its reads from disk (a third of its time restoring large files) and for
    // file creation, and the second keeps the core busy meanwhile (four workers on two
    // cores: large files 1.25 → 1.08–1.11 s, the tree 2.34–2.62 → 2.09–2.11 s; peak RSS
    // 75 → 77 and 76 → 86 MiB). A remote one: whole packs, fetched ahead, a worker per
    // core and a pack per worker plus one, since workers writing neighbouring files share
    // packs (measured on a 1.4 GB tree: one pack less costs re-reads, one more only memory).
    let (reader, workers) = if opts.read_ahead == 0 {
        (SharedReader::ranged(repo, &index, OPEN_PACKS), 2 * cores)
    } else {
        (SharedReader::new(repo, &index, cores + 1), cores)
    };
    let meta = Meta {
        is_root: rustix::process::geteuid().is_root(),
        created_owner: created_owner(target),
        ids: crate::owners::Owners::default(),
        damaged: Mutex::new(Vec::new()),
        warned_owner: AtomicBool::new(false),
        warnings: Mutex::new(Vec::new()),
    };
    // The walk (directories, symlinks, special files; regular files listed), and every
    // [`BATCH_FILES`] files the content of the files listed on every core. Streaming files
    // from the walk to the workers was measured slower (1.4 GB tree: 6.9 s against
    // 3.4–4.7 s): the walk's directory operations and the workers' file creations contend
    // for the same directory locks. Batches keep them apart and what a restore holds
    // bounded: a list of every file of 500 000 was most of a 607 MiB peak.
    let writeback = Writeback::new(target)?;
    let mut w = Walk {
        reader: &reader,
        levels: vec![Level { path: target.clone(), fd: Some(Rc::new(confined.dir(target)?)) }],
        include,
        exact: opts.exact.as_ref(),
        meta: &meta,
        report: RestoreReport::default(),
        links: HashMap::new(),
        files: Vec::new(),
        hard_links: Vec::new(),
        dirs: Vec::new(),
        ctl,
        total: Progress::default(),
        batch_blobs: 0,
        confined: &confined,
        writeback: &writeback,
        workers,
        read_ahead: opts.read_ahead,
        written: Progress::default(),
    };
    ctl.emit(&Event::Phase { name: "restore" });
    /// Stops the write-back thread however the walk ends, so the scope can join it.
    struct Stop<'w>(&'w Writeback);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.stop();
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| writeback.run());
        let _stop = Stop(&writeback);
        w.restore_dir(&snap.tree, Path::new("/"), false)?;
        ctl.emit(&Event::Total { total: w.total, complete: true });
        w.flush()
    })?;
    let Walk { mut report, written, .. } = w;
    writeback.finish()?;
    report.files = written.items;
    report.bytes = written.bytes;
    report.warnings = meta.warnings.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut damaged = meta.damaged.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    damaged.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    report.damaged = damaged.into_iter().map(|(_, _, msg)| msg).collect();
    Ok(report)
}

/// The regular files' content, written by the workers: what they share.
struct Fill<'a> {
    reader: &'a SharedReader<'a>,
    meta: &'a Meta,
    jobs: &'a [FileJob],
    pieces: &'a [Piece],
    /// Runs of pieces a worker takes at once ([`directory_groups`]).
    groups: &'a [std::ops::Range<usize>],
    writeback: &'a Writeback,
    confined: &'a Confined,
    ctl: &'a JobControl,
    /// The next group to take (past the end once a worker failed).
    next: AtomicUsize,
    bytes: AtomicU64,
    files: AtomicU64,
    first_err: Mutex<Option<FilesError>>,
}

impl Fill<'_> {
    /// Runs `workers` workers until every piece is written or a worker failed. A worker's panic is the restore's, after the others stopped.
    fn run(&self, workers: usize) {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..workers.min(self.groups.len().max(1))).map(|_| s.spawn(|| self.work())).collect();
            let panicked = workers.into_iter().map(std::thread::ScopedJoinHandle::join).find_map(Result::err);
            if let Some(panic) = panicked {
                std::panic::resume_unwind(panic);
            }
        });
    }

    /// One worker: takes groups of pieces until none are left; the first error stops all.
    fn work(&self) {
        // The directory this worker last created a file in: groups hold one directory's files.
        let mut dir = None;
        while let Some(range) = self.groups.get(self.next.fetch_add(1, Ordering::Relaxed)) {
            for piece in &self.pieces[range.clone()] {
                let job = &self.jobs[piece.file];
                let created = Create { confined: self.confined, dir: &mut dir };
                let mut written = 0;
                let finished = self
                    .ctl
                    .check()
                    .map_err(FilesError::from)
                    .and_then(|()| write_piece(self.reader, self.meta, job, piece, created, self.ctl))
                    .and_then(|w| {
                        written = w;
                        self.writeback.wrote(w);
                        finish_piece(self.meta, job, &self.bytes)
                    });
                match finished {
                    Ok(true) => {
                        self.files.fetch_add(1, Ordering::Relaxed);
                        self.ctl.emit(&Event::Advance(Progress::new(1, written)));
                    }
                    Ok(false) => self.ctl.emit(&Event::Advance(Progress::new(0, written))),
                    Err(e) => {
                        self.first_err.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
                        self.next.store(usize::MAX / 2, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
}

/// The owner of what a restore creates under `target`, when it can be known beforehand: the
/// effective user, and the effective group if `target` has it too. Otherwise (a set-group-ID
/// target, or a file system mounted to give new files their directory's group, with another
/// group) `None`, and every owner is set.
fn created_owner(target: &Path) -> Option<(u32, u32)> {
    let (uid, gid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    let st = rustix::fs::stat(target).ok()?;
    (st.st_gid == gid).then_some((uid, gid))
}

impl Walk<'_> {
    /// The handle of the directory being restored, creating it (and any of its parents not
    /// yet created) first. Each is made with `mkdirat` in its parent's handle and opened
    /// with `O_NOFOLLOW`: if something else is at its name, that fails, and nothing is
    /// created through it.
    fn here(&mut self) -> Result<Rc<OwnedFd>> {
        let first = self.levels.iter().position(|l| l.fd.is_none()).unwrap_or(self.levels.len());
        for i in first..self.levels.len() {
            let parent = self.levels[i - 1].fd.clone().expect("a parent level is open before its child");
            let path = &self.levels[i].path;
            let name = name_of(path);
            let made = match rustix::fs::mkdirat(&*parent, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => rustix::fs::openat(&*parent, name, DIR_FLAGS, Mode::empty()),
                Err(e) => Err(e),
            };
            let fd = made.map_err(|e| FilesError::Io {
                context: format!("cannot create {}", path.display()),
                source: e.into(),
            })?;
            self.levels[i].fd = Some(Rc::new(fd));
        }
        Ok(self.levels.last().and_then(|l| l.fd.clone()).expect("the target is open"))
    }

    /// Restores the entries of tree `id` (at snapshot path `at`) into the innermost level.
    /// Returns whether anything was restored (for include filters).
    fn restore_dir(&mut self, id: &Id, at: &Path, inside_match: bool) -> Result<bool> {
        self.ctl.check()?;
        let here = self.levels.last().expect("a level").path.clone();
        let tree = match self.reader.tree(id) {
            Ok(t) => t,
            Err(e) if e.is_data_loss() => {
                // The directory is restored empty; everything else goes on.
                self.meta.damage(
                    &here,
                    0,
                    format!("{}: the directory's entries are not restored: {e}", here.display()),
                );
                return Ok(inside_match);
            }
            Err(e) => return Err(e.into()),
        };
        let mut refused = HashSet::new();
        for h in tree.hostile_entries() {
            let below = if tree.nodes[h.index].kind == NodeKind::Dir { ", nor anything in it" } else { "" };
            self.report.refused.push(format!("{}: {}; not restored{below}", at.display(), h.message));
            refused.insert(h.index);
        }
        let mut any = false;
        for (i, n) in tree.nodes.iter().enumerate() {
            if refused.contains(&i) {
                continue;
            }
            let name = os(n.name_bytes());
            let sp = at.join(name);
            let matched = match self.exact {
                // Exact files only: a directory is created when something in it is restored.
                Some(files) => n.kind != NodeKind::Dir && files.contains(&sp),
                None => inside_match || self.include.as_ref().is_none_or(|g| g.is_match(&sp)),
            };
            let dst = here.join(name);
            if n.kind == NodeKind::Dir {
                let pos = self.dirs.len();
                self.levels.push(Level { path: dst.clone(), fd: None });
                if matched {
                    self.here()?;
                }
                // Reserve the directory's place before its children (for deepest-first order).
                self.dirs.push((dst, n.clone()));
                let inner = match n.subtree {
                    Some(sub) => self.restore_dir(&sub, &sp, matched)?,
                    None => false,
                };
                // Its ancestors exist only if something in them was restored.
                if matched || inner {
                    self.report.dirs += 1;
                    any = true;
                } else {
                    // Nothing below was restored (include filter): drop it again.
                    self.dirs.truncate(pos);
                }
                self.levels.pop();
            } else if matched {
                let dir = self.here()?;
                self.restore_leaf(dir.as_fd(), &dst, n)?;
                any = true;
            }
        }
        Ok(any)
    }

    /// Fills the files listed so far (their content, then their metadata, on every core),
    /// links the further names of hard-linked files listed so far (their first names exist
    /// now), and sets the metadata of the directories the walk has left, deepest first:
    /// nothing more is created in them. What the walk holds is then the directories it is
    /// in, whatever the number of files.
    fn flush(&mut self) -> Result<()> {
        let list = std::mem::take(&mut self.files);
        self.batch_blobs = 0;
        if !list.is_empty() {
            let (jobs, pieces) = plan_pieces(self.reader, list);
            let groups = directory_groups(&jobs, &pieces);
            let fill = Fill {
                reader: self.reader,
                meta: self.meta,
                jobs: &jobs,
                pieces: &pieces,
                groups: &groups,
                writeback: self.writeback,
                confined: self.confined,
                ctl: self.ctl,
                next: AtomicUsize::new(0),
                bytes: AtomicU64::new(0),
                files: AtomicU64::new(0),
                first_err: Mutex::new(None),
            };
            // The pieces in order name the packs the workers will need: for a remote store
            // they are fetched ahead, a few at once, so its latency overlaps with writing.
            let plan = pieces.iter().flat_map(|p| jobs[p.file].node.content[p.blobs.clone()].iter().copied());
            self.reader.with_read_ahead(plan, self.read_ahead, || fill.run(self.workers));
            let Fill { bytes, files, first_err, .. } = fill;
            if let Some(e) = first_err.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
                return Err(e);
            }
            self.written.items += files.into_inner();
            self.written.bytes += bytes.into_inner();
        }
        self.ctl.check()?;
        let target = &self.confined.target;
        for (first, dst) in std::mem::take(&mut self.hard_links) {
            let from = self.confined.dir(first.parent().unwrap_or(target))?;
            let to = self.confined.dir(dst.parent().unwrap_or(target))?;
            rustix::fs::linkat(&from, name_of(&first), &to, name_of(&dst), rustix::fs::AtFlags::empty()).map_err(
                |e| FilesError::Io { context: format!("cannot restore {}", dst.display()), source: e.into() },
            )?;
            self.report.others += 1;
        }
        // `dirs` is in creation order (parents first); the walk is in those still open.
        let (open, left): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.dirs).into_iter().partition(|(dst, _)| self.levels.iter().any(|l| l.path == *dst));
        for (dst, n) in left.iter().rev() {
            self.meta.apply_fd(&fs::File::from(self.confined.dir(dst)?), dst, n)?;
        }
        self.dirs = open;
        Ok(())
    }

    /// Restores the non-directory `n` as `dst`, an entry of directory `dir`.
    fn restore_leaf(&mut self, dir: BorrowedFd<'_>, dst: &Path, n: &Node) -> Result<()> {
        let name = name_of(dst);
        let ctx = |e: rustix::io::Errno| FilesError::Io {
            context: format!("cannot restore {}", dst.display()),
            source: e.into(),
        };
        if n.kind == NodeKind::File && n.links > 1 {
            if let Some(first) = self.links.get(&(n.device, n.inode)) {
                self.hard_links.push((first.clone(), dst.to_path_buf()));
                return Ok(());
            }
            self.links.insert((n.device, n.inode), dst.to_path_buf());
        }
        match n.kind {
            NodeKind::File => {
                self.files.push((dst.to_path_buf(), n.clone()));
                self.batch_blobs += n.content.len();
                self.total.items += 1;
                self.total.bytes += n.size;
                if self.total.items % TOTAL_EVERY == 0 {
                    self.ctl.check()?;
                    self.ctl.emit(&Event::Total { total: self.total, complete: false });
                }
                if self.files.len() >= BATCH_FILES || self.batch_blobs >= BATCH_BLOBS {
                    self.flush()?;
                }
                return Ok(());
            }
            NodeKind::Symlink => {
                let t = n.target_bytes().unwrap_or_default();
                rustix::fs::symlinkat(os(t), dir, name).map_err(ctx)?;
                self.report.others += 1;
            }
            NodeKind::Fifo | NodeKind::CharDev | NodeKind::BlockDev => {
                let ft = match n.kind {
                    NodeKind::Fifo => rustix::fs::FileType::Fifo,
                    NodeKind::CharDev => rustix::fs::FileType::CharacterDevice,
                    _ => rustix::fs::FileType::BlockDevice,
                };
                let mode = Mode::from_raw_mode(n.mode & 0o777);
                if let Err(e) = rustix::fs::mknodat(dir, name, ft, mode, n.rdev) {
                    self.meta.warn(format!("cannot create {:?} {}: {e}", n.kind, dst.display()).to_lowercase());
                    return Ok(());
                }
                self.report.others += 1;
            }
            NodeKind::Socket => {
                self.meta.warn(format!("socket {} not recreated (sockets belong to running programs)", dst.display()));
                return Ok(());
            }
            NodeKind::Dir => unreachable!("directories are restored by restore_dir"),
        }
        self.meta.apply_at(dir, name, dst, n, n.kind == NodeKind::Symlink)
    }
}

/// After a piece is written: the worker that wrote a file's last piece sets its length
/// (a hole at the end) and its metadata, so metadata still follows all content. Returns
/// whether this piece finished its file.
fn finish_piece(meta: &Meta, job: &FileJob, bytes: &AtomicU64) -> Result<bool> {
    if job.left.fetch_sub(1, Ordering::AcqRel) > 1 {
        return Ok(false); // another piece of the file is still being written
    }
    let f = job.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let f = f.ok_or_else(|| FilesError::Invalid(format!("{} was not created", job.dst.display())))?;
    let end = job.end.load(Ordering::Acquire);
    if job.hole_at_end.load(Ordering::Acquire) {
        f.set_len(end).map_err(io_err(format!("cannot write {}", job.dst.display())))?;
    }
    bytes.fetch_add(end, Ordering::Relaxed);
    meta.apply_fd(&f, &job.dst, &job.node)?;
    Ok(true)
}

/// Most pieces, and most content bytes, in one group of [`directory_groups`].
const GROUP_FILES: usize = 4096;
const GROUP_BYTES: u64 = 16 << 20;

/// Splits the pieces (in walk order) into runs of pieces of files of one directory, each at
/// most [`GROUP_FILES`] pieces and about [`GROUP_BYTES`] of content. Workers take whole
/// runs, so two of them rarely create files in the same directory at once: a create takes
/// the directory's lock, and workers interleaving the files of one directory spent their
/// time contending for it (seen as `rwsem_spin_on_owner` under `openat` in a restore's
/// profile, growing with the machine's load). The caps keep the runs small enough that the
/// workers stay balanced and close together in the read-ahead plan; a piece of a large file
/// (32 MiB) is a run of its own, so the pieces of one file are still written at once.
fn directory_groups(jobs: &[FileJob], pieces: &[Piece]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    let dir = |p: &Piece| jobs[p.file].dst.parent();
    for (i, p) in pieces.iter().enumerate() {
        let same_dir = i > start && dir(&pieces[i - 1]) == dir(p);
        if i > start && (!same_dir || i - start >= GROUP_FILES || bytes >= GROUP_BYTES) {
            groups.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += piece_bytes(jobs, p);
    }
    if start < pieces.len() {
        groups.push(start..pieces.len());
    }
    groups
}

/// About how many bytes of content a piece holds (its file's size when it is the whole file).
fn piece_bytes(jobs: &[FileJob], p: &Piece) -> u64 {
    let n = &jobs[p.file].node;
    if p.blobs.start == 0 && p.blobs.end == n.content.len() { n.size } else { PIECE_BYTES }
}

/// A regular file being restored, shared by the workers writing its pieces.
struct FileJob {
    dst: PathBuf,
    node: Node,
    /// Created by whichever piece is written first; taken by the last to finish.
    file: Mutex<Option<std::sync::Arc<fs::File>>>,
    /// Pieces not yet written.
    left: AtomicUsize,
    /// Where the content ends, and whether it ends in a hole (set by the last piece).
    end: AtomicU64,
    hole_at_end: AtomicBool,
}

/// Blobs `blobs` of file `file`, whose first byte is at `offset`.
struct Piece {
    file: usize,
    blobs: std::ops::Range<usize>,
    offset: u64,
}

/// Large files are cut into pieces of about this size, written by different workers at
/// once: without it, a few large files are restored one per core, and a core that drew
/// cheap content (incompressible data: no decompression) idles while another still
/// decompresses (4 files of 256 MiB: 1.8 s, one core busy at the end).
const PIECE_BYTES: u64 = 32 << 20;

/// Cuts the files into pieces, in file order. A file one of whose blobs the index does not
/// know is one piece: later offsets cannot be known, and the piece reports the damage.
fn plan_pieces(reader: &SharedReader<'_>, list: Vec<(PathBuf, Node)>) -> (Vec<FileJob>, Vec<Piece>) {
    let mut pieces = Vec::with_capacity(list.len());
    let mut jobs = Vec::with_capacity(list.len());
    for (file, (dst, node)) in list.into_iter().enumerate() {
        let lens: Option<Vec<u64>> = node.content.iter().map(|id| reader.raw_length(id)).collect();
        let before = pieces.len();
        match lens {
            Some(lens) if node.size > PIECE_BYTES => {
                let (mut first, mut offset, mut size) = (0, 0u64, 0u64);
                for (i, len) in lens.iter().enumerate() {
                    size += len;
                    if size >= PIECE_BYTES || i + 1 == lens.len() {
                        pieces.push(Piece { file, blobs: first..i + 1, offset });
                        (first, offset, size) = (i + 1, offset + size, 0);
                    }
                }
            }
            _ => {}
        }
        if pieces.len() == before {
            pieces.push(Piece { file, blobs: 0..node.content.len(), offset: 0 });
        }
        jobs.push(FileJob {
            dst,
            node,
            file: Mutex::new(None),
            left: AtomicUsize::new(pieces.len() - before),
            end: AtomicU64::new(0),
            hole_at_end: AtomicBool::new(false),
        });
    }
    (jobs, pieces)
}

/// How a worker creates a file: in the handle of its directory, reopened from the target's
/// only when the file is in another directory than the worker's last one.
struct Create<'a, 'c> {
    confined: &'c Confined,
    dir: &'a mut Option<(PathBuf, OwnedFd)>,
}

impl Create<'_, '_> {
    fn file(self, dst: &Path) -> Result<fs::File> {
        let parent = dst.parent().unwrap_or(&self.confined.target);
        let dir = match self.dir {
            Some((p, fd)) if p == parent => fd,
            slot => &slot.insert((parent.to_owned(), self.confined.dir(parent)?)).1,
        };
        let how = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(dir, name_of(dst), how, Mode::from_raw_mode(0o600))
            .map(fs::File::from)
            .map_err(|e| FilesError::Io { context: format!("cannot restore {}", dst.display()), source: e.into() })
    }
}

/// Writes one piece of a file (creating the file if no piece has yet). Runs of zero blocks
/// are not written, so sparse files stay sparse; positioned writes let pieces go in any
/// order. Returns how many bytes of the file the piece spans.
fn write_piece(
    reader: &SharedReader<'_>,
    meta: &Meta,
    job: &FileJob,
    piece: &Piece,
    create: Create<'_, '_>,
    ctl: &JobControl,
) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let dst = &job.dst;
    let n = &job.node;
    let f = {
        let mut slot = job.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*slot {
            Some(f) => f.clone(),
            None => slot.insert(std::sync::Arc::new(create.file(dst)?)).clone(),
        }
    };
    let ctx = || format!("cannot write {}", dst.display());
    let mut pos = piece.offset;
    let mut hole_at_end = false;
    for id in &n.content[piece.blobs.clone()] {
        ctl.check()?;
        let data = match reader.read(id) {
            Ok(d) => d,
            Err(e) if e.is_data_loss() => {
                if let Some(len) = reader.raw_length(id) {
                    meta.damage(dst, pos, format!("{}: bytes {pos}..{} not restored: {e}", dst.display(), pos + len));
                    pos += len;
                    hole_at_end = true;
                    continue;
                }
                meta.damage(dst, pos, format!("{}: bytes {pos}..{} not restored: {e}", dst.display(), n.size.max(pos)));
                pos = n.size.max(pos);
                hole_at_end = true;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let mut i = 0;
        while i < data.len() {
            let zero = |at: usize| data[at..(at + 4096).min(data.len())].iter().all(|&b| b == 0);
            if zero(i) {
                let len = (data.len() - i).min(4096);
                pos += len as u64;
                i += len;
                hole_at_end = true;
                continue;
            }
            // One write for a run of non-zero blocks.
            let mut j = (i + 4096).min(data.len());
            while j < data.len() && !zero(j) {
                j = (j + 4096).min(data.len());
            }
            f.write_all_at(&data[i..j], pos).map_err(io_err(ctx()))?;
            pos += (j - i) as u64;
            i = j;
            hole_at_end = false;
        }
    }
    if piece.blobs.end == n.content.len() {
        job.end.store(pos, Ordering::Release);
        job.hole_at_end.store(hole_at_end, Ordering::Release);
    }
    Ok(pos - piece.offset)
}

#[cfg(test)]
mod options_tests {
    use super::*;

    #[test]
    fn restore_options_read_from_toml_and_refuse_unknown_keys() {
        let o: RestoreOptions = toml::from_str("target = \"/srv/restore\"\ninclude = [\"/etc/**\"]\n").unwrap();
        assert_eq!(o.target, PathBuf::from("/srv/restore"));
        assert_eq!(o.include, ["/etc/**"]);
        assert_eq!(o.read_ahead, 0, "decided by the store, not configured");
        let err = toml::from_str::<RestoreOptions>("target = \"/x\"\nread-ahead = 5\n").unwrap_err().to_string();
        assert!(err.contains("read-ahead"), "{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_repository::{Cancel, InitOptions, KdfParams};
    use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
    use std::os::unix::fs::MetadataExt as _;

    fn repo(dir: &Path) -> Repository {
        let vault = LocalVault::init(dir.join("v"), &VaultOptions::default()).unwrap();
        let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
        let opts =
            InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
        Repository::init(w, "t", "", b"pw", &opts, Clock::system()).unwrap()
    }
    use std::sync::Arc;

    /// A tree of many batches ([`BATCH_FILES`] is 7 here): nested directories, hard links
    /// whose names are in other directories and other batches than their first, a file of
    /// more blobs than a batch holds, directory times set after their last batch.
    fn tree(src: &Path) -> usize {
        let mut files = 0;
        for d in 0..5 {
            let dir = src.join(format!("d{d}/inner{d}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..(3 + 4 * d) {
                fs::write(dir.join(format!("f{f}")), format!("dir {d} file {f}").repeat(f + 1)).unwrap();
                files += 1;
            }
            fs::write(src.join(format!("d{d}/top")), format!("top {d}")).unwrap();
            files += 1;
        }
        // Hard links across directories: first name in d0, others in d3 and d4.
        fs::hard_link(src.join("d0/inner0/f1"), src.join("d3/link-a")).unwrap();
        fs::hard_link(src.join("d0/inner0/f1"), src.join("d4/inner4/link-b")).unwrap();
        files += 2;
        // More blobs than a batch holds (chunks of 512 KiB to 8 MiB, about 1 MiB).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let big: Vec<u8> = (0..12 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[3]
            })
            .collect();
        fs::write(src.join("d2/big"), &big).unwrap();
        files += 1;
        for d in 0..5 {
            for dir in [src.join(format!("d{d}")), src.join(format!("d{d}/inner{d}"))] {
                let t = fs::FileTimes::new()
                    .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + d));
                fs::File::open(&dir).unwrap().set_times(t).unwrap();
            }
        }
        files
    }

    #[test]
    fn a_restore_of_many_batches_is_exact_across_directories_and_hard_links() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let src = tmp.path().join("src");
        let files = tree(&src);
        let opts = super::super::BackupOptions { paths: vec![src.clone()], host: "h".into(), ..Default::default() };
        let snap = super::super::backup(&repo, &opts, &JobControl::none()).unwrap().info;
        let out = tmp.path().join("out");
        let rep =
            restore(&repo, &snap, &RestoreOptions { target: out.clone(), ..Default::default() }, &JobControl::none())
                .unwrap();
        assert!(rep.damaged.is_empty() && rep.refused.is_empty(), "{rep:?}");
        assert_eq!(rep.files as usize, files - 2, "every file once, the further names linked");
        let root = super::super::walk::under(&out, &src);
        let mut compared = 0;
        for e in walk_all(&src) {
            let rel = e.strip_prefix(&src).unwrap();
            let (a, b) = (fs::symlink_metadata(&e).unwrap(), fs::symlink_metadata(root.join(rel)).unwrap());
            if a.is_file() {
                assert_eq!(fs::read(&e).unwrap(), fs::read(root.join(rel)).unwrap(), "{}", rel.display());
                assert_eq!(a.nlink(), b.nlink(), "{}", rel.display());
            }
            assert_eq!((a.mtime(), a.mode()), (b.mtime(), b.mode()), "{}", rel.display());
            compared += 1;
        }
        assert!(compared > files, "{compared}");
        let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
        assert_eq!(ino("d0/inner0/f1"), ino("d3/link-a"));
        assert_eq!(ino("d0/inner0/f1"), ino("d4/inner4/link-b"));
    }

    /// Cancelled after its first batch, a restore stops: the files of later batches are not
    /// written, and it says it was cancelled.
    #[test]
    fn a_restore_cancelled_after_a_batch_stops_there() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let src = tmp.path().join("src");
        let files = tree(&src);
        let opts = super::super::BackupOptions { paths: vec![src.clone()], host: "h".into(), ..Default::default() };
        let snap = super::super::backup(&repo, &opts, &JobControl::none()).unwrap().info;
        let cancel = Cancel::new();
        let trigger = cancel.clone();
        let ctl = JobControl {
            observer: Arc::new(move |e: &Event<'_>| {
                if matches!(e, Event::Advance(p) if p.items > 0) {
                    trigger.cancel();
                }
            }),
            cancel,
        };
        let out = tmp.path().join("out");
        let err =
            restore(&repo, &snap, &RestoreOptions { target: out.clone(), ..Default::default() }, &ctl).unwrap_err();
        assert!(matches!(err, FilesError::Repo(coffer_repository::RepoError::Cancelled)), "{err:?}");
        let written = walk_all(&out).iter().filter(|p| p.is_file()).count();
        assert!(written <= BATCH_FILES, "{written} of {files} files written: one batch at most");
    }

    fn walk_all(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap().flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk_all(&e.path()));
            }
        }
        out
    }

    /// Both ways of reopening a directory (`openat2`, and the component-wise fallback for
    /// kernels without it) reach directories below the target and refuse any path through a
    /// symlink or out of the target.
    #[test]
    fn confined_directories_are_reached_below_the_target_and_never_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        fs::create_dir_all(t.join("a/b")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), t.join("l")).unwrap();
        std::os::unix::fs::symlink("..", t.join("a/b/up")).unwrap();
        for openat2 in [true, false] {
            let c = Confined::new(&t).unwrap();
            c.openat2.store(openat2, Ordering::Relaxed);
            for good in ["", "a", "a/b"] {
                assert!(c.dir(&t.join(good)).is_ok(), "openat2 {openat2}: {good}");
            }
            for bad in ["l", "l/t", "a/b/up", "a/b/up/b", "a/../..", "a/b/../../.."] {
                let e = c.dir(&t.join(bad)).expect_err(bad).to_string();
                assert!(e.starts_with("cannot open directory ") && e.contains(bad), "openat2 {openat2}: {e}");
            }
        }
    }
}
