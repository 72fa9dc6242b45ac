//! Visiting a snapshot's tree in order (for `ls`, `diff`, `dump` and checks).
//!
//! A tree may be forged (see `coffer_repository::tree`): an entry a restore refuses is given
//! to the visitor under its quoted, escaped name (`/".."/".."/x`, `/"a/b"`), so no listing
//! shows a path that climbs out or names another place, and `find` follows plain names only.

use coffer_repository::{BlobReader, Id, Node, NodeKind, Result};
use std::path::{Path, PathBuf};

/// Calls `f(path, node)` for every entry below tree `root`, parents before children,
/// entries in name order. Paths are absolute as backed up (`/home/…`).
///
/// # Errors
/// Repository errors (`Corrupt` names the tree).
pub fn walk(reader: &mut BlobReader<'_>, root: &Id, f: &mut dyn FnMut(&Path, &Node) -> Result<()>) -> Result<()> {
    walk_checked(reader, root, &mut |p, n, _| f(p, n))
}

/// What [`walk_checked`] calls: path, entry, and why a restore refuses it, if it does.
pub type CheckedVisit<'a> = dyn FnMut(&Path, &Node, Option<&str>) -> Result<()> + 'a;

/// As [`walk`], also giving, for an entry a restore refuses, why (one line naming it).
///
/// # Errors
/// Repository errors (`Corrupt` names the tree).
pub fn walk_checked(reader: &mut BlobReader<'_>, root: &Id, f: &mut CheckedVisit<'_>) -> Result<()> {
    walk_at(reader, root, Path::new("/"), f)
}

fn walk_at(reader: &mut BlobReader<'_>, tree: &Id, at: &Path, f: &mut CheckedVisit<'_>) -> Result<()> {
    let t = reader.tree(tree)?;
    let hostile = t.hostile_entries();
    for (i, n) in t.nodes.iter().enumerate() {
        let why = hostile.iter().find(|h| h.index == i).map(|h| h.message.as_str());
        let p = match why {
            Some(_) => at.join(coffer_repository::tree::quoted(n.name_bytes())),
            None => at.join(os(n.name_bytes())),
        };
        f(&p, n, why)?;
        if let (NodeKind::Dir, Some(sub)) = (n.kind, n.subtree) {
            walk_at(reader, &sub, &p, f)?;
        }
    }
    Ok(())
}

/// Finds the node at absolute `path` in the tree `root`. Only plain names are followed: a
/// path with `..` finds nothing, whatever a forged tree names its entries.
///
/// # Errors
/// Repository errors.
pub fn find(reader: &mut BlobReader<'_>, root: &Id, path: &Path) -> Result<Option<Node>> {
    let mut tree = *root;
    let mut found: Option<Node> = None;
    for c in path.components().skip(1) {
        let std::path::Component::Normal(name) = c else { return Ok(None) };
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
