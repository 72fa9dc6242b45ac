//! Visiting a snapshot's tree in order (for `ls`, `diff`, `dump` and checks).

use coffer_repository::{BlobReader, Id, Node, NodeKind, Result};
use std::path::{Path, PathBuf};

/// Calls `f(path, node)` for every entry below tree `root`, parents before children,
/// entries in name order. Paths are absolute as backed up (`/home/…`).
///
/// # Errors
/// Repository errors (`Corrupt` names the tree).
pub fn walk(reader: &mut BlobReader<'_>, root: &Id, f: &mut dyn FnMut(&Path, &Node) -> Result<()>) -> Result<()> {
    walk_at(reader, root, Path::new("/"), f)
}

fn walk_at(
    reader: &mut BlobReader<'_>,
    tree: &Id,
    at: &Path,
    f: &mut dyn FnMut(&Path, &Node) -> Result<()>,
) -> Result<()> {
    let t = reader.tree(tree)?;
    for n in &t.nodes {
        let p = at.join(os(n.name_bytes()));
        f(&p, n)?;
        if let (NodeKind::Dir, Some(sub)) = (n.kind, n.subtree) {
            walk_at(reader, &sub, &p, f)?;
        }
    }
    Ok(())
}

/// Finds the node at absolute `path` in the tree `root`.
///
/// # Errors
/// Repository errors.
pub fn find(reader: &mut BlobReader<'_>, root: &Id, path: &Path) -> Result<Option<Node>> {
    let mut tree = *root;
    let mut found: Option<Node> = None;
    for c in path.components().skip(1) {
        let name = c.as_os_str();
        if let Some(n) = &found {
            match n.subtree {
                Some(s) => tree = s,
                None => return Ok(None),
            }
        }
        let t = reader.tree(&tree)?;
        match t.find(std::os::unix::ffi::OsStrExt::as_bytes(name)) {
            Some(n) => found = Some(n.clone()),
            None => return Ok(None),
        }
    }
    Ok(found)
}

/// An `OsStr` from name bytes.
#[must_use]
pub fn os(bytes: &[u8]) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(bytes)
}

/// Joins an absolute snapshot path under `target`.
#[must_use]
pub fn under(target: &Path, snapshot_path: &Path) -> PathBuf {
    target.join(snapshot_path.strip_prefix("/").unwrap_or(snapshot_path))
}
