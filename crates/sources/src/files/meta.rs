//! Reading a file's metadata into a tree node, and names of owners.

use coffer_repository::{Node, NodeKind, Xattr};
use jiff::Timestamp;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn ts(secs: i64, nanos: i64) -> Timestamp {
    Timestamp::new(secs, i32::try_from(nanos).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Caches uid/gid → name lookups for one backup.
#[derive(Default)]
pub(crate) struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| uzers::get_user_by_uid(uid).map(|u| u.name().to_string_lossy().into_owned()))
            .clone()
    }

    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| uzers::get_group_by_gid(gid).map(|g| g.name().to_string_lossy().into_owned()))
            .clone()
    }
}

/// The node for `path` (lstat'ed as `md`), without content or subtree.
pub(crate) fn node(
    path: &Path,
    name: &[u8],
    md: &Metadata,
    same_as: Option<&Node>,
    names: &mut Names,
    warnings: &mut Vec<String>,
) -> Node {
    let kind = kind_of(md);
    let mut n = Node {
        name: String::new(),
        name_raw: None,
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        user: names.user(md.uid()),
        group: names.group(md.gid()),
        mtime: ts(md.mtime(), md.mtime_nsec()),
        atime: ts(md.atime(), md.atime_nsec()),
        ctime: ts(md.ctime(), md.ctime_nsec()),
        inode: md.ino(),
        device: md.dev(),
        links: md.nlink(),
        size: if kind == NodeKind::File { md.size() } else { 0 },
        content: Vec::new(),
        subtree: None,
        target: None,
        target_raw: None,
        rdev: if matches!(kind, NodeKind::CharDev | NodeKind::BlockDev) { md.rdev() } else { 0 },
        xattrs: Vec::new(),
    };
    n.set_name(name);
    if kind == NodeKind::Symlink {
        match std::fs::read_link(path) {
            Ok(t) => n.set_target(t.as_os_str().as_bytes()),
            Err(e) => warnings.push(format!("cannot read link {}: {e}", path.display())),
        }
    }
    n.xattrs = match same_as {
        // Changing an extended attribute changes ctime: an entry whose ctime and inode are
        // those of the parent snapshot's has the same attributes; skip the two syscalls.
        Some(old) if old.kind == kind && old.ctime == n.ctime && old.inode == n.inode && old.device == n.device => {
            old.xattrs.clone()
        }
        _ => read_xattrs(path, warnings),
    };
    n
}

pub(crate) fn read_xattrs(path: &Path, warnings: &mut Vec<String>) -> Vec<Xattr> {
    let mut list = vec![0u8; 4096];
    let len = loop {
        match rustix::fs::llistxattr(path, &mut list[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if list.len() < 1 << 20 => list.resize(list.len() * 4, 0),
            // Filesystems without xattr support, and special files, have none.
            Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM | rustix::io::Errno::ACCESS) => return Vec::new(),
            Err(e) => {
                warnings.push(format!("cannot list extended attributes of {}: {e}", path.display()));
                return Vec::new();
            }
        }
    };
    let mut out = Vec::new();
    for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name_str) = std::str::from_utf8(name) else { continue };
        let mut value = vec![0u8; 4096];
        loop {
            match rustix::fs::lgetxattr(path, name_str, &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    out.push(Xattr { name: name_str.to_owned(), value });
                    break;
                }
                Err(rustix::io::Errno::RANGE) if value.len() < 1 << 20 => value.resize(value.len() * 4, 0),
                Err(e) => {
                    warnings.push(format!("cannot read extended attribute {name_str} of {}: {e}", path.display()));
                    break;
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The tree's kind of an entry with metadata `md` (from `lstat`: a symlink is a symlink).
pub(crate) fn kind_of(md: &std::fs::Metadata) -> NodeKind {
    let ft = md.file_type();
    if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDev
    } else if ft.is_block_device() {
        NodeKind::BlockDev
    } else {
        NodeKind::Socket
    }
}
