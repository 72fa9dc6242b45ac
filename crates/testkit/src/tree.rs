//! A directory tree described for comparison: what two extractions of the same data must
//! agree on, path by path.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Every entry below `root` (relative path → kind, mode, mtime, and a file's length and
/// BLAKE3 hash or a symlink's target). Directory mtimes only with `dir_mtimes`: a program
/// that writes into directories after extracting them (PostgreSQL at recovery) moves them.
///
/// # Panics
/// On any error reading the tree (a test helper).
#[must_use]
pub fn describe(root: &Path, dir_mtimes: bool) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {:?} mtime {}", std::fs::read_link(&p).unwrap(), m.mtime())
            } else if m.is_dir() {
                stack.push(p.clone());
                if dir_mtimes {
                    format!("dir {:o} mtime {}", m.mode(), m.mtime())
                } else {
                    format!("dir {:o}", m.mode())
                }
            } else {
                let data = std::fs::read(&p).unwrap();
                format!("file {:o} mtime {} len {} hash {}", m.mode(), m.mtime(), data.len(), blake3::hash(&data))
            };
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), what);
        }
    }
    out
}
