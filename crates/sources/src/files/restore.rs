//! `restore`: reproduce a snapshot's files exactly under a target directory.
//!
//! Order matters for exactness: a file's content first, then owner (which clears
//! setuid/setgid), then mode, then extended attributes, then times; a directory's
//! metadata is applied after its children are in place, so their creation does not move
//! its mtime. As non-root, what cannot be done (owners, device nodes, privileged xattrs)
//! is a warning and the rest is restored.

use super::walk::{os, under};
use super::{FilesError, Result, io_err};
use coffer_repository::{BlobReader, Id, Node, NodeKind, Repository, Snapshot};
use globset::{GlobSet, GlobSetBuilder};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What to restore and where.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Target directory (created; must be empty if it exists).
    pub target: PathBuf,
    /// Only paths matching one of these globs (against the absolute snapshot path), and
    /// everything below a matching directory.
    pub include: Vec<String>,
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
}

struct Restorer<'a> {
    reader: BlobReader<'a>,
    include: Option<GlobSet>,
    report: RestoreReport,
    links: HashMap<(u64, u64), PathBuf>,
    is_root: bool,
    warned_owner: bool,
}

/// Restores `snap` into `opts.target`.
///
/// # Errors
/// A non-empty target, repository errors (`Corrupt` names the blob and pack), and file
/// system errors creating what is restored.
pub fn restore(repo: &Repository, snap: &Snapshot, opts: &RestoreOptions) -> Result<RestoreReport> {
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
    let mut r = Restorer {
        reader: repo.reader(&index),
        include,
        report: RestoreReport::default(),
        links: HashMap::new(),
        is_root: rustix::process::geteuid().is_root(),
        warned_owner: false,
    };
    r.restore_dir(&snap.tree, Path::new("/"), target, false)?;
    Ok(r.report)
}

impl Restorer<'_> {
    fn warn(&mut self, msg: String) {
        if self.report.warnings.len() < 1000 {
            self.report.warnings.push(msg);
        }
    }

    /// Restores the entries of tree `id` (at snapshot path `at`) into `dir`. Returns whether
    /// anything was restored (for include filters).
    fn restore_dir(&mut self, id: &Id, at: &Path, target: &Path, inside_match: bool) -> Result<bool> {
        let tree = self.reader.tree(id)?;
        let mut any = false;
        for n in &tree.nodes {
            let sp = at.join(os(n.name_bytes()));
            let matched = inside_match || self.include.as_ref().is_none_or(|g| g.is_match(&sp));
            let dst = under(target, &sp);
            if n.kind == NodeKind::Dir {
                let existed = dst.exists();
                if matched && !existed {
                    fs::create_dir(&dst).map_err(io_err(format!("cannot create {}", dst.display())))?;
                }
                let inner = match n.subtree {
                    Some(sub) => {
                        if !matched {
                            // Create lazily: only if something below matches.
                            let before = dst.exists();
                            let got = self.restore_dir_lazy(&sub, &sp, target, &dst)?;
                            if !before && !got {
                                continue;
                            }
                            got
                        } else {
                            self.restore_dir(&sub, &sp, target, true)?
                        }
                    }
                    None => false,
                };
                if matched || inner {
                    self.report.dirs += 1;
                    self.apply_meta(&dst, n, false)?;
                    any = true;
                }
            } else if matched {
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).map_err(io_err(format!("cannot create {}", parent.display())))?;
                }
                self.restore_leaf(&dst, n)?;
                any = true;
            }
        }
        Ok(any)
    }

    fn restore_dir_lazy(&mut self, sub: &Id, sp: &Path, target: &Path, dst: &Path) -> Result<bool> {
        let got = self.restore_dir(sub, sp, target, false)?;
        if got && !dst.exists() {
            fs::create_dir_all(dst).map_err(io_err(format!("cannot create {}", dst.display())))?;
        }
        Ok(got)
    }

    fn restore_leaf(&mut self, dst: &Path, n: &Node) -> Result<()> {
        let ctx = || format!("cannot restore {}", dst.display());
        if n.kind == NodeKind::File && n.links > 1 {
            if let Some(first) = self.links.get(&(n.device, n.inode)) {
                fs::hard_link(first, dst).map_err(io_err(ctx()))?;
                self.report.others += 1;
                return Ok(());
            }
            self.links.insert((n.device, n.inode), dst.to_path_buf());
        }
        match n.kind {
            NodeKind::File => {
                self.write_file(dst, n)?;
                self.report.files += 1;
            }
            NodeKind::Symlink => {
                let t = n.target_bytes().unwrap_or_default();
                std::os::unix::fs::symlink(os(t), dst).map_err(io_err(ctx()))?;
                self.report.others += 1;
            }
            NodeKind::Fifo | NodeKind::CharDev | NodeKind::BlockDev => {
                let ft = match n.kind {
                    NodeKind::Fifo => rustix::fs::FileType::Fifo,
                    NodeKind::CharDev => rustix::fs::FileType::CharacterDevice,
                    _ => rustix::fs::FileType::BlockDevice,
                };
                let mode = rustix::fs::Mode::from_raw_mode(n.mode & 0o777);
                if let Err(e) = rustix::fs::mknodat(rustix::fs::CWD, dst, ft, mode, n.rdev) {
                    self.warn(format!("cannot create {:?} {}: {e}", n.kind, dst.display()).to_lowercase());
                    return Ok(());
                }
                self.report.others += 1;
            }
            NodeKind::Socket => {
                self.warn(format!("socket {} not recreated (sockets belong to running programs)", dst.display()));
                return Ok(());
            }
            NodeKind::Dir => unreachable!("directories are restored by restore_dir"),
        }
        self.apply_meta(dst, n, n.kind == NodeKind::Symlink)
    }

    fn write_file(&mut self, dst: &Path, n: &Node) -> Result<()> {
        let ctx = || format!("cannot write {}", dst.display());
        let mut f: File =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(dst).map_err(io_err(ctx()))?;
        let mut pos = 0u64;
        let mut hole_at_end = false;
        for id in &n.content {
            let data = self.reader.read(id)?;
            // Zero blocks become holes: sparse files stay sparse, content is identical.
            for block in data.chunks(4096) {
                if block.iter().all(|&b| b == 0) {
                    pos += block.len() as u64;
                    hole_at_end = true;
                } else {
                    f.seek(SeekFrom::Start(pos)).map_err(io_err(ctx()))?;
                    f.write_all(block).map_err(io_err(ctx()))?;
                    pos += block.len() as u64;
                    hole_at_end = false;
                }
            }
        }
        if hole_at_end || pos == 0 {
            f.set_len(pos).map_err(io_err(ctx()))?;
        }
        self.report.bytes += pos;
        Ok(())
    }

    fn apply_meta(&mut self, dst: &Path, n: &Node, symlink: bool) -> Result<()> {
        use rustix::fs::{AtFlags, CWD, Gid, Timespec, Timestamps, Uid};
        let uid = n.user.as_deref().and_then(uzers::get_user_by_name).map_or(n.uid, |u| u.uid());
        let gid = n.group.as_deref().and_then(uzers::get_group_by_name).map_or(n.gid, |g| g.gid());
        let flags = if symlink { AtFlags::SYMLINK_NOFOLLOW } else { AtFlags::empty() };
        if let Err(e) = rustix::fs::chownat(CWD, dst, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), flags) {
            if self.is_root {
                self.warn(format!("cannot set owner of {}: {e}", dst.display()));
            } else if !self.warned_owner {
                self.warned_owner = true;
                self.warn(format!("not running as root: owners are not restored (first: {})", dst.display()));
            }
        }
        if !symlink {
            fs::set_permissions(dst, fs::Permissions::from_mode(n.mode))
                .map_err(io_err(format!("cannot set permissions of {}", dst.display())))?;
        }
        for x in &n.xattrs {
            if let Err(e) = rustix::fs::lsetxattr(dst, x.name.as_str(), &x.value, rustix::fs::XattrFlags::empty()) {
                self.warn(format!("cannot set extended attribute {} of {}: {e}", x.name, dst.display()));
            }
        }
        let t = |ts: jiff::Timestamp| Timespec { tv_sec: ts.as_second(), tv_nsec: i64::from(ts.subsec_nanosecond()) };
        let times = Timestamps { last_access: t(n.atime), last_modification: t(n.mtime) };
        rustix::fs::utimensat(CWD, dst, &times, flags).map_err(|e| FilesError::Io {
            context: format!("cannot set times of {}", dst.display()),
            source: e.into(),
        })?;
        Ok(())
    }
}
