//! Checking a restore: every restored byte and every metadata field compared with the
//! snapshot it came from (the files drill, `coffer drill files`).
//!
//! A source knows how to restore and how to check a restore. [`check_restored`] walks the
//! snapshot's trees and, for each entry in scope (all of them, or a sample of regular files
//! and the directories holding them), compares what is on disk under the target:
//!
//! - **content**: each regular file is re-read from disk blob by blob (the blobs' plaintext
//!   lengths from the index) and each piece's keyed hash compared with the snapshot's content
//!   id; a short or long file, a missing file or a differing piece is named with its path
//!   and byte range. Nothing is taken from the repository but the ids and lengths, so this
//!   proves the bytes on disk are the bytes that were backed up.
//! - **metadata**: type, permission bits (with setuid/setgid/sticky), owner (by name where
//!   this machine knows it, else the number: as restore applies it), size, modification and
//!   access times to the nanosecond, symlink target, device numbers, extended attributes,
//!   hard links (names of one inode in the snapshot are one inode on disk), and no entry on
//!   disk the snapshot does not have.
//!
//! What no restore can reproduce is not compared: ctime, inode and device numbers (hard
//! links aside), a socket (never recreated: a restore warns), a symlink's permission bits
//! (Linux has none to set).
//!
//! The invariant it guards: **a check reads without changing what it checks.** Each entry is
//! `lstat`ed before anything reads it, files are opened with `O_NOATIME | O_NOFOLLOW` and
//! directories listed only after their own metadata was compared, so the access times it
//! compares are the restore's. The snapshot is hostile input: entries a restore refuses
//! (`Tree::hostile_entries`) are neither checked nor expected on disk, nothing is followed
//! through a symlink, lengths from the index are read in bounded pieces, and the walk keeps
//! its own stack (a forged deep tree cannot overflow the thread's).
//!
//! Cost: one walk of the trees (metadata, one `lstat` per entry), then the files' content
//! re-read on every core (up to 8 threads), each file blob by blob in pieces of 1 MiB.

use super::walk::os;
use super::{Result, io_err};
use coffer_repository::{BlobReader, Id, Index, JobControl, Node, NodeKind, Repository, Snapshot, Xattr};
use rustix::fs::{Mode, OFlags};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// At most this many problems of each kind are kept (the count goes on).
pub const MAX_PROBLEMS: usize = 1000;

/// Bytes read from a restored file at a time (per worker).
const READ_PIECE: usize = 1 << 20;

/// What [`check_restored`] found.
#[derive(Clone, Debug, Default)]
pub struct RestoreCheck {
    /// Entries whose metadata was compared.
    pub entries: u64,
    /// Regular files whose content was re-read and compared.
    pub files: u64,
    /// Bytes re-read from disk.
    pub bytes: u64,
    /// Content problems: one line each, naming the path (the first [`MAX_PROBLEMS`]).
    pub content: Vec<String>,
    /// How many content problems there were.
    pub content_problems: u64,
    /// Metadata problems: one line each, naming the path and the field.
    pub metadata: Vec<String>,
    /// How many metadata problems there were.
    pub metadata_problems: u64,
    /// Sockets in scope (recorded in the snapshot, never recreated: not checked).
    pub sockets: u64,
    /// Every tree of the snapshot that was read (the restore reads them all).
    pub trees: Vec<Id>,
    /// The content blobs of the files checked.
    pub blobs: Vec<Id>,
}

impl RestoreCheck {
    fn content(&mut self, msg: String) {
        self.content_problems += 1;
        if self.content.len() < MAX_PROBLEMS {
            self.content.push(msg);
        }
    }

    fn metadata(&mut self, msg: String) {
        self.metadata_problems += 1;
        if self.metadata.len() < MAX_PROBLEMS {
            self.metadata.push(msg);
        }
    }
}

/// Compares the restore of `snap` under `target` with the snapshot: every entry, or with
/// `only`, just those regular files (absolute snapshot paths, as restore's `exact`) and the
/// directories holding them. `index` gives the blobs' lengths.
///
/// # Errors
/// Repository errors other than damage (a tree that cannot be read is a content problem
/// naming the directory), [`RepoError::Cancelled`](coffer_repository::RepoError::Cancelled)
/// once `ctl` is cancelled. Differences are never errors: they are in the result.
pub fn check_restored(
    repo: &Repository,
    index: &Index,
    snap: &Snapshot,
    target: &Path,
    only: Option<&BTreeSet<PathBuf>>,
    ctl: &JobControl,
) -> Result<RestoreCheck> {
    let mut c = Checker {
        reader: repo.reader(index),
        out: RestoreCheck::default(),
        ids: crate::owners::Owners::default(),
        links: HashMap::new(),
        blobs: HashSet::new(),
        trees: HashSet::new(),
        files: Vec::new(),
        holders: only.map(|o| o.iter().flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf)).collect()),
        only,
        ctl,
    };
    // (tree, its path in the snapshot, its path on disk, whether it is in scope).
    let mut stack = vec![(snap.tree, PathBuf::from("/"), target.to_path_buf(), true)];
    while let Some((tree, at, disk, in_scope)) = stack.pop() {
        c.ctl.check()?;
        c.dir(&tree, &at, &disk, in_scope, &mut stack)?;
    }
    for names in std::mem::take(&mut c.links).into_values() {
        let (path, ino) = &names[0];
        for (p, i) in &names[1..] {
            if i != ino {
                c.out.metadata(format!(
                    "{}: hard link: the snapshot has it as the same file as {}, the restore has another inode",
                    p.display(),
                    path.display()
                ));
            }
        }
    }
    let files = std::mem::take(&mut c.files);
    for (bytes, problems) in check_files(repo, index, &files, ctl)? {
        c.out.bytes += bytes;
        for p in problems {
            c.out.content(p);
        }
    }
    c.out.trees = c.trees.into_iter().collect();
    c.out.blobs = c.blobs.into_iter().collect();
    Ok(c.out)
}

struct Checker<'a> {
    reader: BlobReader<'a>,
    out: RestoreCheck,
    ids: crate::owners::Owners,
    /// Hard-link groups of the snapshot ((device, inode) there): each name's path and inode
    /// on disk.
    links: HashMap<DevIno, Vec<(PathBuf, DevIno)>>,
    blobs: HashSet<Id>,
    trees: HashSet<Id>,
    /// Regular files to re-read once the walk (and every `lstat`) is done.
    files: Vec<FileJob>,
    only: Option<&'a BTreeSet<PathBuf>>,
    /// With `only`: the directories holding the sampled files.
    holders: Option<HashSet<PathBuf>>,
    ctl: &'a JobControl,
}

type Pending = Vec<(Id, PathBuf, PathBuf, bool)>;

/// A file's (device, inode).
type DevIno = (u64, u64);

impl Checker<'_> {
    /// Whether the entry at snapshot path `sp` was restored (and so is checked).
    fn wanted(&self, sp: &Path, n: &Node) -> bool {
        match (self.only, &self.holders) {
            (Some(files), Some(holders)) => {
                if n.kind == NodeKind::Dir {
                    holders.contains(sp)
                } else {
                    files.contains(sp)
                }
            }
            _ => true,
        }
    }

    /// Checks the entries of tree `id` (at snapshot path `at`, restored as `disk`) and queues
    /// its subdirectories. `in_scope`: the directory was restored (its listing is compared).
    fn dir(&mut self, id: &Id, at: &Path, disk: &Path, in_scope: bool, stack: &mut Pending) -> Result<()> {
        self.trees.insert(*id);
        let tree = match self.reader.tree(id) {
            Ok(t) => t,
            Err(e) if e.is_data_loss() => {
                if in_scope {
                    self.out.content(format!("{}: the directory's entries cannot be read: {e}", at.display()));
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let hostile: HashSet<usize> = tree.hostile_entries().into_iter().map(|h| h.index).collect();
        let mut expected: HashSet<OsString> = HashSet::new();
        for (i, n) in tree.nodes.iter().enumerate() {
            if hostile.contains(&i) {
                // Refused by the restore (and named in its report): not on disk.
                continue;
            }
            let name = os(n.name_bytes());
            let sp = at.join(name);
            let dp = disk.join(name);
            let wanted = in_scope && self.wanted(&sp, n);
            if wanted && n.kind != NodeKind::Socket {
                expected.insert(name.to_owned());
                self.ctl.check()?;
                self.entry(&sp, &dp, n)?;
            } else if wanted {
                self.out.sockets += 1;
            }
            if let (NodeKind::Dir, Some(sub)) = (n.kind, n.subtree) {
                // Trees out of scope are still walked: the restore read them (for the locks).
                stack.push((sub, sp, dp, wanted));
            }
        }
        if in_scope {
            self.extras(at, disk, &expected);
        }
        Ok(())
    }

    /// Entries on disk in `disk` the snapshot does not have there.
    fn extras(&mut self, at: &Path, disk: &Path, expected: &HashSet<OsString>) {
        let rd = match fs::read_dir(disk) {
            Ok(rd) => rd,
            // Already reported: the directory is missing or is not one.
            Err(_) => return,
        };
        let mut extra: Vec<OsString> =
            rd.filter_map(|e| e.ok().map(|e| e.file_name())).filter(|n| !expected.contains(n)).collect();
        extra.sort();
        for n in extra {
            self.out.metadata(format!("{}: on disk but not in the snapshot", at.join(n).display()));
        }
    }

    /// Compares one restored entry with its node: metadata first (before anything reads
    /// it), then a regular file's content.
    fn entry(&mut self, sp: &Path, dp: &Path, n: &Node) -> Result<()> {
        self.out.entries += 1;
        let md = match fs::symlink_metadata(dp) {
            Ok(md) => md,
            Err(e) => {
                let msg = format!("{}: not restored: {e}", sp.display());
                if n.kind == NodeKind::File {
                    self.out.content(msg);
                } else {
                    self.out.metadata(msg);
                }
                return Ok(());
            }
        };
        let kind = super::meta::kind_of(&md);
        if kind != n.kind {
            let msg = format!("{}: restored as a {}, the snapshot has a {}", sp.display(), name(kind), name(n.kind));
            if n.kind == NodeKind::File {
                self.out.content(msg);
            } else {
                self.out.metadata(msg);
            }
            return Ok(());
        }
        self.metadata(sp, dp, n, &md);
        if n.kind == NodeKind::File {
            if n.links > 1 {
                self.links.entry((n.device, n.inode)).or_default().push((sp.to_path_buf(), (md.dev(), md.ino())));
            }
            self.out.files += 1;
            self.blobs.extend(n.content.iter().copied());
            self.files.push(FileJob { sp: sp.to_path_buf(), dp: dp.to_path_buf(), content: n.content.clone() });
        }
        Ok(())
    }

    fn metadata(&mut self, sp: &Path, dp: &Path, n: &Node, md: &fs::Metadata) {
        let mut wrong = Vec::new();
        if n.kind != NodeKind::Symlink && md.mode() & 0o7777 != n.mode & 0o7777 {
            wrong.push(format!("mode {:04o}, the snapshot has {:04o}", md.mode() & 0o7777, n.mode & 0o7777));
        }
        // As restore applies owners: by name where this machine knows it, else the number.
        let uid = n.user.as_deref().and_then(|u| self.ids.user(u.as_bytes())).unwrap_or(n.uid);
        let gid = n.group.as_deref().and_then(|g| self.ids.group(g.as_bytes())).unwrap_or(n.gid);
        if md.uid() != uid {
            wrong.push(format!("owner {}, the snapshot has {uid}{}", md.uid(), shown_name(n.user.as_deref())));
        }
        if md.gid() != gid {
            wrong.push(format!("group {}, the snapshot has {gid}{}", md.gid(), shown_name(n.group.as_deref())));
        }
        if n.kind == NodeKind::File && md.len() != n.size {
            wrong.push(format!("size {}, the snapshot has {}", md.len(), n.size));
        }
        let mtime = (md.mtime(), md.mtime_nsec());
        if mtime != split(n.mtime) {
            wrong.push(format!("mtime {}, the snapshot has {}", show_time(mtime), n.mtime));
        }
        let atime = (md.atime(), md.atime_nsec());
        if atime != split(n.atime) {
            wrong.push(format!("atime {}, the snapshot has {}", show_time(atime), n.atime));
        }
        if matches!(n.kind, NodeKind::CharDev | NodeKind::BlockDev) && md.rdev() != n.rdev {
            wrong.push(format!("device number {:#x}, the snapshot has {:#x}", md.rdev(), n.rdev));
        }
        if n.kind == NodeKind::Symlink {
            match fs::read_link(dp) {
                Ok(t) if Some(t.as_os_str().as_bytes()) == n.target_bytes() => {}
                Ok(t) => wrong.push(format!(
                    "symlink target {:?}, the snapshot has {:?}",
                    t.display().to_string(),
                    String::from_utf8_lossy(n.target_bytes().unwrap_or_default())
                )),
                Err(e) => wrong.push(format!("symlink target cannot be read: {e}")),
            }
        }
        let mut warnings = Vec::new();
        let on_disk = super::meta::read_xattrs(dp, &mut warnings);
        let mut want: Vec<Xattr> = n.xattrs.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        if on_disk != want {
            let names = |x: &[Xattr]| x.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(",");
            let differ: Vec<&str> = want
                .iter()
                .filter(|w| !on_disk.contains(w))
                .chain(on_disk.iter().filter(|d| !want.contains(d)))
                .map(|x| x.name.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            wrong.push(format!(
                "extended attributes differ ({}): on disk [{}], the snapshot has [{}]",
                differ.join(","),
                names(&on_disk),
                names(&want)
            ));
        }
        for w in warnings {
            wrong.push(w);
        }
        for w in wrong {
            self.out.metadata(format!("{}: {w}", sp.display()));
        }
    }
}

/// A regular file whose content is to be compared: snapshot path, path on disk, content ids.
struct FileJob {
    sp: PathBuf,
    dp: PathBuf,
    content: Vec<Id>,
}

/// What one file's content check found: bytes read, problems.
type FileFound = (u64, Vec<String>);

/// Compares the files' content on up to `workers` threads (the walk is done: only reads
/// remain); problems in the files' order.
fn check_files(repo: &Repository, index: &Index, jobs: &[FileJob], ctl: &JobControl) -> Result<Vec<FileFound>> {
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).clamp(1, 8);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<FileFound>>> = Mutex::new(vec![None; jobs.len()]);
    let first_err: Mutex<Option<super::FilesError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.min(jobs.len()) {
            s.spawn(|| {
                let mut buf = vec![0u8; READ_PIECE];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    match check_file(repo, index, job, &mut buf, ctl) {
                        Ok(found) => results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(found),
                        Err(e) => {
                            first_err.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(e);
                            next.store(usize::MAX / 2, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// Re-reads one restored regular file blob by blob and compares each piece's id.
fn check_file(repo: &Repository, index: &Index, job: &FileJob, buf: &mut [u8], ctl: &JobControl) -> Result<FileFound> {
    let (sp, dp) = (&job.sp, &job.dp);
    let mut problems = Vec::new();
    let mut bytes = 0u64;
    let how = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME;
    let opened = rustix::fs::open(dp, how, Mode::empty())
        .or_else(|_| rustix::fs::open(dp, how - OFlags::NOATIME, Mode::empty()));
    let mut f = match opened {
        Ok(fd) => fs::File::from(fd),
        Err(e) => return Ok((0, vec![format!("{}: cannot be read: {e}", sp.display())])),
    };
    let mut pos = 0u64;
    for id in &job.content {
        ctl.check()?;
        let Some(len) = index.get(id).map(|r| u64::from(r.entry.raw_length)) else {
            // Later offsets are unknown: the rest of the file cannot be placed.
            problems.push(format!(
                "{}: bytes from {pos} cannot be checked: blob {} is in no index",
                sp.display(),
                id.short()
            ));
            return Ok((bytes, problems));
        };
        let mut h = repo.key().blob_hasher();
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left.min(READ_PIECE as u64)).unwrap_or(READ_PIECE);
            let got = read_full(&mut f, &mut buf[..want]).map_err(io_err(format!("cannot read {}", dp.display())))?;
            bytes += got as u64;
            h.update(&buf[..got]);
            left -= got as u64;
            if got < want {
                break;
            }
        }
        if left > 0 {
            let length: u64 =
                job.content.iter().filter_map(|id| index.get(id)).map(|r| u64::from(r.entry.raw_length)).sum();
            problems.push(format!(
                "{}: ends at byte {}, the snapshot has {length} bytes",
                sp.display(),
                pos + len - left
            ));
            return Ok((bytes, problems));
        }
        if coffer_repository::Id(*h.finalize().as_bytes()) != *id {
            problems.push(format!(
                "{}: bytes {pos}..{} differ from the snapshot (blob {})",
                sp.display(),
                pos + len,
                id.short()
            ));
        }
        pos += len;
    }
    let mut one = [0u8; 1];
    match f.read(&mut one) {
        Ok(0) => {}
        Ok(_) => problems.push(format!("{}: longer than the snapshot's {pos} bytes", sp.display())),
        Err(e) => problems.push(format!("{}: cannot be read: {e}", sp.display())),
    }
    Ok((bytes, problems))
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn name(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "regular file",
        NodeKind::Dir => "directory",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDev => "character device",
        NodeKind::BlockDev => "block device",
        NodeKind::Socket => "socket",
    }
}

fn shown_name(n: Option<&str>) -> String {
    n.map(|n| format!(" ({n:?})")).unwrap_or_default()
}

/// A timestamp as `stat` gives it: seconds and nanoseconds in 0..1e9 (before 1970 jiff's
/// sub-second part is negative).
fn split(ts: jiff::Timestamp) -> (i64, i64) {
    let (sec, nsec) = (ts.as_second(), i64::from(ts.subsec_nanosecond()));
    if nsec < 0 { (sec - 1, nsec + 1_000_000_000) } else { (sec, nsec) }
}

fn show_time((sec, nsec): (i64, i64)) -> String {
    jiff::Timestamp::new(sec, i32::try_from(nsec).unwrap_or(0))
        .map_or_else(|_| format!("{sec}.{nsec:09}"), |t| t.to_string())
}
