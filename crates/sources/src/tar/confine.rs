//! The confinement rules: what member names and parent directories the unpacker accepts.
//!
//! Invariant guarded here (**confined**): nothing is written outside the target directory,
//! whatever the archive says — absolute names, `..` and paths through a symbolic link the
//! archive created are refused, and missing parents are made one at a time, never through
//! anything but a directory.

use super::*;

impl Parser<'_> {
    /// The member's path relative to the target: no absolute names, no `..`, not through a
    /// symbolic link the archive made.
    pub(super) fn relative(&self, name: &[u8]) -> Result<PathBuf> {
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
    pub(super) fn parents(&mut self, rel: &Path) -> Result<()> {
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
}

/// Whether a name means the archive's root ("." or "./").
pub(super) fn is_target_itself(name: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    Path::new(std::ffi::OsStr::from_bytes(name)).components().all(|c| c == Component::CurDir)
}
