//! `backup`: walk paths, store what changed, write a locked snapshot.
//!
//! Invariants guarded:
//! - The snapshot is written last ([`coffer_repository::BlobWriter::commit`], which also
//!   links it into the hash chain), after every pack, index, and lock extension it needs.
//! - A file unchanged since the parent snapshot (same size, mtime, ctime, inode) is not
//!   read again, but its chunks' locks are still extended to cover the new snapshot; a
//!   chunk whose pack has been pruned makes the file be read again.
//! - A file that cannot be read is a warning, never an abort, and the snapshot records the
//!   count so the caller can say the backup was incomplete.
//! - Cancellation is never an acknowledgement: the [`JobControl`]'s token is checked at
//!   every entry and every chunk, and a cancelled backup returns
//!   [`RepoError::Cancelled`](coffer_repository::RepoError::Cancelled) without writing a
//!   snapshot. The packs it already stored are complete and locked; the next backup finds
//!   them (unindexed packs are read back from their headers) and reuses their blobs.
//!
//! Progress: a `"backup"` phase whose totals come from a metadata-only scan on another
//! thread ([`super::scan`]), `Advance` for each chunk's bytes and each file done (files
//! unchanged since the parent count at once), a `Warning` for each entry gone past, and
//! `Snapshot` once committed. The `Advance`s add up to the snapshot's `files` and `bytes`.

use super::meta::{self, Names};
use super::read_ahead;
use super::{FilesError, Result};
use coffer_repository::{
    BlobKind, BlobWriter, Event, Id, JobControl, KeepRules, NewSnapshot, Node, NodeKind, Progress, Repository, Series,
    Snapshot, Tree,
};
use globset::{GlobSet, GlobSetBuilder};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What to back up and how: the options of a files backup job, the same struct for the
/// command line (clap, feature `clap`) and a policy file (serde: kebab-case keys, unknown
/// keys refused). `expires` and `parent` are decided when the job runs, never configured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct BackupOptions {
    /// Files and directories to back up (made absolute)
    #[cfg_attr(feature = "clap", arg(required = true, value_name = "PATH"))]
    pub paths: Vec<PathBuf>,
    /// Exclude entries matching this glob (with a `/`: the absolute path; without: the name,
    /// restic's rules)
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long = "exclude", value_name = "GLOB"))]
    pub excludes: Vec<String>,
    /// Do not cross into other filesystems
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, short = 'x'))]
    pub one_file_system: bool,
    /// Tag the snapshot (repeatable)
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long = "tag", value_name = "TAG"))]
    pub tags: Vec<String>,
    /// Host name to record [default: this machine's]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME", default_value = "", hide_default_value = true))]
    pub host: String,
    /// How long the snapshot is kept (the repository's default without any rule).
    #[serde(default)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub retention: KeepRules,
    /// When the snapshot expires: decided by `retention` when the job runs, unless a caller
    /// sets it.
    #[serde(skip)]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub expires: Option<Timestamp>,
    /// Parent snapshot for change detection (default: the newest with the same host and paths).
    #[serde(skip)]
    #[cfg_attr(feature = "clap", arg(skip))]
    pub parent: Option<Id>,
}

/// The outcome of a backup.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The snapshot written.
    pub snapshot: Id,
    /// The snapshot itself (with its summary).
    pub info: Snapshot,
    /// Warnings (unreadable entries, files changed while read).
    pub warnings: Vec<String>,
}

struct Walker<'a, 'r> {
    w: BlobWriter<'r>,
    read_ahead: super::read_ahead::ReadAhead,
    chunker: coffer_repository::chunker::Chunker,
    excludes: GlobSet,
    path_excludes: GlobSet,
    one_fs: bool,
    names: Names,
    warnings: Vec<String>,
    /// How many of `warnings` were reported to the observer.
    reported: usize,
    ctl: &'a JobControl,
    /// The entry being saved (what a warning is about).
    current: PathBuf,
}

/// A path argument's position in the virtual root: intermediate directories, or the
/// argument itself.
#[derive(Default)]
struct VDir {
    children: BTreeMap<Vec<u8>, VEntry>,
}

enum VEntry {
    Dir(VDir),
    Target,
}

/// Backs up `opts.paths` into `repo`.
///
/// # Errors
/// A path that does not exist or cannot be used, repository and store errors. Unreadable
/// entries below the paths are warnings in the report, not errors.
/// [`RepoError::Cancelled`](coffer_repository::RepoError::Cancelled) once `ctl` is
/// cancelled: then no snapshot is written.
pub fn backup(repo: &Repository, opts: &BackupOptions, ctl: &JobControl) -> Result<BackupReport> {
    if opts.paths.is_empty() {
        return Err(FilesError::Invalid("nothing to back up: give at least one path".into()));
    }
    ctl.check()?;
    let mut paths = Vec::new();
    for p in &opts.paths {
        let abs =
            std::path::absolute(p).map_err(|source| FilesError::Path { path: p.display().to_string(), source })?;
        fs::symlink_metadata(&abs).map_err(|source| FilesError::Path { path: p.display().to_string(), source })?;
        paths.push(normalize(&abs));
    }
    paths.sort();
    paths.dedup();
    let (excludes, path_excludes) = build_excludes(&opts.excludes)?;

    let now = repo.clock().now();
    let path_strings: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    // The one computation of a snapshot's expiry (coffer_repository::retention); the series'
    // history is listed only for the calendar rules that need it.
    let series = Series { kind: "files", host: &opts.host, paths: &path_strings };
    let policy = &repo.config().retention;
    let expires = match opts.expires {
        Some(e) => e,
        None if opts.retention.needs_history() => {
            // The series is this host's: the writer's recent listing has all of it, as the
            // writer below will take it (docs/cache.md).
            let all = match repo.recent_history() {
                Some(h) => h,
                None => repo.all_snapshots()?,
            };
            opts.retention.expiry_in_series(now, all.iter().map(|(_, s)| s), &series, policy)?
        }
        None => opts.retention.expiry(now, &[], policy)?,
    };
    let mut w = repo.writer_with_history(expires)?;
    // The writer's one listing serves both: the parent is the newest live snapshot of these
    // paths; the chain link, which the writer writes, the newest of all.
    let (parent, parent_tree) = match opts.parent {
        Some(id) => (Some(id), Some(repo.read_snapshot(&id)?.tree)),
        None => match w.parent_for("files", &opts.host, &path_strings)? {
            Some((id, s)) => (Some(id), Some(s.tree)),
            None => (None, None),
        },
    };

    let mut walker = Walker {
        w,
        read_ahead: super::read_ahead::ReadAhead::start(),
        chunker: coffer_repository::chunker::Chunker::new(repo.config().chunker),
        excludes,
        path_excludes,
        one_fs: opts.one_file_system,
        names: Names::default(),
        warnings: Vec::new(),
        reported: 0,
        ctl,
        current: PathBuf::new(),
    };
    let mut root = VDir::default();
    for p in &paths {
        let mut cur = &mut root;
        let comps: Vec<OsString> = p.components().skip(1).map(|c| c.as_os_str().to_owned()).collect();
        if comps.is_empty() {
            return Err(FilesError::Invalid("backing up / itself is not supported; name the directories".into()));
        }
        for (i, c) in comps.iter().enumerate() {
            let key = c.as_bytes().to_vec();
            if i + 1 == comps.len() {
                cur.children.insert(key, VEntry::Target);
                break;
            }
            let e = cur.children.entry(key).or_insert_with(|| VEntry::Dir(VDir::default()));
            match e {
                VEntry::Dir(d) => cur = d,
                VEntry::Target => break, // an ancestor is itself a target: it covers this path
            }
        }
    }
    for (key, why) in walker.w.index().damaged() {
        walker.warnings.push(format!("index object {key} cannot be read ({why}); the packs it stated are read from their own headers, and data not found intact there is stored again"));
    }
    // A parent that cannot be read only costs reading every file again.
    let parent_root = parent_tree.and_then(|t| walker.w.read_tree(&t).ok());
    ctl.emit(&Event::Phase { name: "backup" });
    let stop_scan = std::sync::atomic::AtomicBool::new(false);
    let scope = super::scan::Scope {
        paths: &paths,
        excludes: &walker.excludes.clone(),
        path_excludes: &walker.path_excludes.clone(),
        one_fs: opts.one_file_system,
    };
    let (tree, scanned) = std::thread::scope(|s| {
        let scanner = std::thread::Builder::new()
            .name("coffer-scan".into())
            .spawn_scoped(s, || super::scan::scan(&scope, ctl, &stop_scan));
        let tree = walker.save_vdir(Path::new("/"), &root, parent_root.as_ref());
        stop_scan.store(true, std::sync::atomic::Ordering::Relaxed);
        // A scanner that could not start (or panicked) only costs the total.
        let scanned = scanner.ok().and_then(|h| h.join().ok()).flatten();
        (tree, scanned)
    });
    walker.report_warnings();
    let tree = tree?;
    ctl.check()?;
    let Walker { mut w, warnings, .. } = walker;
    if scanned.is_none() {
        // The walk ended before the scan: what it saw is the whole.
        let s = w.summary_mut();
        ctl.emit(&Event::Total { total: Progress::new(s.files, s.bytes), complete: true });
    }
    let id = w.commit(NewSnapshot {
        kind: "files".into(),
        time: now,
        host: opts.host.clone(),
        paths: path_strings,
        tags: opts.tags.clone(),
        tree,
        parent,
        pg: None,
    })?;
    ctl.emit(&Event::Snapshot { id });
    let info = repo.read_snapshot(&id)?;
    Ok(BackupReport { snapshot: id, info, warnings })
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn build_excludes(patterns: &[String]) -> Result<(GlobSet, GlobSet)> {
    let mut names = GlobSetBuilder::new();
    let mut paths = GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| FilesError::Invalid(format!("bad exclude pattern {p:?}: {e}")))?;
        if p.contains('/') {
            paths.add(glob)
        } else {
            names.add(glob)
        };
    }
    let done = |b: GlobSetBuilder| b.build().map_err(|e| FilesError::Invalid(format!("bad exclude patterns: {e}")));
    Ok((done(names)?, done(paths)?))
}

/// Reading a file fails on the file (a warning) or on the repository (an error).
enum ReadError {
    Io(std::io::Error),
    Repo(coffer_repository::RepoError),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Whether a parent node shows the file unchanged.
fn unchanged(old: &Node, new: &Node) -> bool {
    old.kind == NodeKind::File
        && old.size == new.size
        && old.mtime == new.mtime
        && old.ctime == new.ctime
        && old.inode == new.inode
        && old.device == new.device
}

impl Walker<'_, '_> {
    fn warn(&mut self, msg: String) {
        self.w.summary_mut().errors += 1;
        self.warnings.push(msg);
    }

    fn save_tree(&mut self, tree: &Tree) -> Result<Id> {
        let bytes = tree.to_bytes();
        Ok(self.w.add(BlobKind::Tree, &bytes)?)
    }

    fn save_vdir(&mut self, dir: &Path, v: &VDir, parent: Option<&Tree>) -> Result<Id> {
        let mut tree = Tree::default();
        for (name, entry) in &v.children {
            let path = dir.join(std::ffi::OsStr::from_bytes(name));
            let md = fs::symlink_metadata(&path)
                .map_err(|source| FilesError::Path { path: path.display().to_string(), source })?;
            let parent_node = parent.and_then(|t| t.find(name));
            let mut node = meta::node(&path, name, &md, parent_node, &mut self.names, &mut self.warnings);
            match entry {
                VEntry::Target => {
                    if let Some(n) = self.save_entry(&path, node, parent_node, md.dev())? {
                        tree.nodes.push(n);
                    }
                }
                VEntry::Dir(sub) => {
                    let parent_sub = self.parent_subtree(parent_node)?;
                    node.subtree = Some(self.save_vdir(&path, sub, parent_sub.as_ref())?);
                    self.w.summary_mut().dirs += 1;
                    tree.nodes.push(node);
                }
            }
        }
        self.save_tree(&tree)
    }

    fn parent_subtree(&mut self, parent_node: Option<&Node>) -> Result<Option<Tree>> {
        match parent_node.and_then(|n| n.subtree) {
            // A parent tree that cannot be read only costs re-reading files.
            Some(id) => Ok(self.w.read_tree(&id).ok()),
            None => Ok(None),
        }
    }

    /// Saves one entry (and, for a directory, everything below). `None` when it had to be
    /// skipped (a warning says why).
    fn save_entry(
        &mut self,
        path: &Path,
        mut node: Node,
        parent: Option<&Node>,
        root_dev: u64,
    ) -> Result<Option<Node>> {
        self.ctl.check()?;
        self.report_warnings();
        path.clone_into(&mut self.current);
        match node.kind {
            NodeKind::File => {
                self.w.summary_mut().files += 1;
                self.w.summary_mut().bytes += node.size;
                if let Some(old) = parent.filter(|o| unchanged(o, &node)) {
                    let mut all = true;
                    for id in &old.content {
                        if !self.w.reuse(id)? {
                            all = false;
                            break;
                        }
                    }
                    if all {
                        node.content.clone_from(&old.content);
                        self.ctl.emit(&Event::Advance(Progress::new(1, node.size)));
                        return Ok(Some(node));
                    }
                }
                let size = node.size;
                let mut read = 0;
                let saved = match self.read_file(path, &mut node, &mut read) {
                    Ok(()) => {
                        self.w.summary_mut().files_read += 1;
                        Ok(Some(node))
                    }
                    Err(FilesError::Io { context, source }) => {
                        self.warn(format!("{context}: {source}"));
                        Ok(None)
                    }
                    Err(e) => return Err(e),
                };
                // The file is done (or gone past): the rest of the bytes it was counted
                // with, so that the advances add up to the summary.
                self.ctl.emit(&Event::Advance(Progress::new(1, size.saturating_sub(read))));
                saved
            }
            NodeKind::Dir => {
                self.w.summary_mut().dirs += 1;
                let parent_sub = self.parent_subtree(parent)?;
                let mut tree = Tree::default();
                if self.one_fs && node.device != root_dev {
                    // A mount point: recorded, not entered.
                    node.subtree = Some(self.save_tree(&tree)?);
                    return Ok(Some(node));
                }
                let entries = match fs::read_dir(path) {
                    Ok(rd) => rd.collect::<std::io::Result<Vec<_>>>(),
                    Err(e) => Err(e),
                };
                let mut entries = match entries {
                    Ok(e) => e,
                    Err(e) => {
                        self.warn(format!("cannot read directory {}: {e}", path.display()));
                        node.subtree = Some(self.save_tree(&tree)?);
                        return Ok(Some(node));
                    }
                };
                entries.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
                // First every entry's metadata, then the entries in order, with the next
                // few small files that must be read already being read (see `read_ahead`).
                let mut items = Vec::with_capacity(entries.len());
                for e in entries {
                    let child = e.path();
                    let name = e.file_name();
                    if self.excluded(&child, name.as_bytes()) {
                        continue;
                    }
                    let md = match fs::symlink_metadata(&child) {
                        Ok(m) => m,
                        Err(err) => {
                            self.warn(format!("cannot stat {}: {err}", child.display()));
                            continue;
                        }
                    };
                    let pn = parent_sub.as_ref().and_then(|t| t.find(name.as_bytes())).cloned();
                    let cn = meta::node(&child, name.as_bytes(), &md, pn.as_ref(), &mut self.names, &mut self.warnings);
                    items.push((child, cn, pn));
                }
                let mut items = std::collections::VecDeque::from(items);
                // Entries at the front of `items` already considered for reading ahead.
                let mut ahead = 0;
                loop {
                    while ahead < items.len() && ahead < read_ahead::WINDOW {
                        let (child, cn, pn) = &items[ahead];
                        if cn.kind == NodeKind::File
                            && cn.size <= read_ahead::MAX_SIZE
                            && !pn.as_ref().is_some_and(|o| unchanged(o, cn))
                        {
                            if !self.read_ahead.has_room(cn.size) {
                                break;
                            }
                            self.read_ahead.submit(child, cn.size);
                        }
                        ahead += 1;
                    }
                    let Some((child, cn, pn)) = items.pop_front() else { break };
                    ahead -= 1;
                    if let Some(n) = self.save_entry(&child, cn, pn.as_ref(), root_dev)? {
                        tree.nodes.push(n);
                    }
                }
                node.subtree = Some(self.save_tree(&tree)?);
                Ok(Some(node))
            }
            _ => {
                self.w.summary_mut().others += 1;
                Ok(Some(node))
            }
        }
    }

    fn excluded(&self, path: &Path, name: &[u8]) -> bool {
        let name = std::ffi::OsStr::from_bytes(name);
        self.excludes.is_match(Path::new(name)) || self.path_excludes.is_match(path)
    }

    /// Reports the warnings not yet reported, as being about the entry being saved.
    fn report_warnings(&mut self) {
        if self.reported < self.warnings.len() {
            let item = self.current.to_string_lossy();
            for w in &self.warnings[self.reported..] {
                self.ctl.emit(&Event::Warning { item: &item, message: w });
            }
            self.reported = self.warnings.len();
        }
    }

    /// Reads and stores the file's content; `chunked` counts the bytes chunked (each chunk's
    /// are reported as it is stored). Stops at a chunk boundary once the job is cancelled.
    fn read_file(&mut self, path: &Path, node: &mut Node, chunked: &mut u64) -> Result<()> {
        let ctx = || format!("cannot read {}", path.display());
        let (reader, before): (Box<dyn std::io::Read>, fs::Metadata) = match self.read_ahead.take(path) {
            Some(read) => {
                let (bytes, md) = read.map_err(super::io_err(ctx()))?;
                (Box::new(std::io::Cursor::new(bytes)), md)
            }
            None => {
                let f = open_noatime(path).map_err(super::io_err(ctx()))?;
                let md = f.metadata().map_err(super::io_err(ctx()))?;
                (Box::new(f), md)
            }
        };
        let mut content = Vec::new();
        let (w, ctl) = (&mut self.w, self.ctl);
        let size = self
            .chunker
            .chunks(reader, before.len(), |chunk| {
                ctl.check().map_err(ReadError::Repo)?;
                content.push(w.add(BlobKind::Data, chunk).map_err(ReadError::Repo)?);
                *chunked += chunk.len() as u64;
                ctl.emit(&Event::Advance(Progress::new(0, chunk.len() as u64)));
                Ok::<(), ReadError>(())
            })
            .map_err(|e| match e {
                ReadError::Repo(e) => FilesError::Repo(e),
                ReadError::Io(e) => FilesError::Io { context: ctx(), source: e },
            })?;
        let after = fs::symlink_metadata(path).map_err(super::io_err(ctx()))?;
        if size != before.len()
            || after.len() != size
            || after.mtime() != before.mtime()
            || after.mtime_nsec() != before.mtime_nsec()
            || after.ctime_nsec() != before.ctime_nsec()
        {
            self.w.summary_mut().changed_while_read += 1;
            self.warnings
                .push(format!("{} changed while it was read; the snapshot holds what was read", path.display()));
        }
        node.size = size;
        node.content = content;
        Ok(())
    }
}

/// Opens a file for reading without updating its access time, as tar and restic do: a
/// backup must not change what it backs up, and every name of a hard-linked file must show
/// the atime the first one was saved with. `O_NOATIME` needs the file's owner (or
/// `CAP_FOWNER`); otherwise the file is opened plainly.
pub(super) fn open_noatime(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    #[allow(clippy::cast_possible_wrap, reason = "open(2) flags are a C int")]
    let noatime = rustix::fs::OFlags::NOATIME.bits() as i32;
    match fs::OpenOptions::new().read(true).custom_flags(noatime).open(path) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => File::open(path),
        other => other,
    }
}

#[cfg(test)]
mod options_tests {
    use super::*;

    #[test]
    fn backup_options_read_from_toml_and_refuse_unknown_keys() {
        let doc = "paths = [\"/etc\", \"/home\"]\nexcludes = [\"*.tmp\"]\none-file-system = true\ntags = [\"nightly\"]\nhost = \"db1\"\n[retention]\nretain = \"14d\"\nkeep-daily = 7\n";
        let o: BackupOptions = toml::from_str(doc).unwrap();
        assert_eq!(o.paths, [PathBuf::from("/etc"), PathBuf::from("/home")]);
        assert_eq!(
            (o.excludes.as_slice(), o.one_file_system, o.tags.as_slice()),
            (&["*.tmp".to_owned()][..], true, &["nightly".to_owned()][..])
        );
        assert_eq!(o.host, "db1");
        assert_eq!((o.retention.retain, o.retention.daily), (Some(std::time::Duration::from_secs(14 * 86_400)), 7));
        assert!(o.expires.is_none() && o.parent.is_none(), "decided when the job runs");
        let minimal: BackupOptions = toml::from_str("paths = [\"/srv\"]\n").unwrap();
        assert!(minimal.excludes.is_empty() && !minimal.one_file_system && minimal.host.is_empty());
        for bad in ["paths = [\"/a\"]\nexclude = [\"x\"]\n", "paths = [\"/a\"]\nexpires = \"2030-01-01T00:00:00Z\"\n"] {
            let err = toml::from_str::<BackupOptions>(bad).unwrap_err().to_string();
            let key = bad.lines().nth(1).unwrap().split(' ').next().unwrap();
            assert!(err.contains(key), "{err}");
        }
    }
}
