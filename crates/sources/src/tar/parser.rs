//! The header parser: walks the archive's blocks, creates the directories, symbolic links,
//! hard links and files its headers describe (with mode, times and, as root, owner), and
//! queues each member's data for the writer threads.
//!
//! Invariant guarded here (**byte-exact**): each member becomes exactly what its header
//! says, or the member fails naming it; paths go through the confinement rules
//! (`confine.rs`) first.

use super::*;

/// Where the parser is in the archive.
pub(super) enum State {
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
pub(super) enum Dest {
    File(Arc<Out>),
    LongName(Vec<u8>),
    LongLink(Vec<u8>),
    Nowhere,
}

/// A member's owner on this machine: by name when the name is known here, else its numbers.
pub(super) fn owner_of(owners: &Owners, h: &Header) -> (u32, u32) {
    let uid = (!h.uname.is_empty()).then(|| owners.user(&h.uname)).flatten();
    let gid = (!h.gname.is_empty()).then(|| owners.group(&h.gname)).flatten();
    (uid.unwrap_or(h.uid), gid.unwrap_or(h.gid))
}

/// The header parser: creates what headers describe and queues file data.
pub(super) struct Parser<'f> {
    pub(super) dir: PathBuf,
    pub(super) jobs: crossbeam_channel::Sender<Job>,
    pub(super) syncs: crossbeam_channel::Sender<SyncReq>,
    pub(super) fail: &'f Failure,
    pub(super) state: State,
    /// Archive offset of the next byte fed.
    pub(super) offset: u64,
    /// Archive offset of the current member's header.
    pub(super) member_at: u64,
    pub(super) long_name: Option<Vec<u8>>,
    pub(super) long_link: Option<Vec<u8>>,
    /// Directories known to exist (relative; "" is the target).
    pub(super) known: HashSet<PathBuf>,
    /// Symbolic links the archive created (relative): never written through.
    pub(super) symlinks: HashSet<PathBuf>,
    /// Directories created, with the archive's modification time if it named them.
    pub(super) dirs: Vec<(PathBuf, Option<i64>)>,
    pub(super) dir_index: HashMap<PathBuf, usize>,
    pub(super) root: bool,
    pub(super) owners: Owners,
    pub(super) counts: Unpacked,
}

impl<'f> Parser<'f> {
    pub(super) fn new(
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

    pub(super) fn into_results(self) -> (Vec<(PathBuf, Option<i64>)>, Unpacked) {
        (self.dirs, self.counts)
    }

    pub(super) fn format(&self, what: impl Into<String>) -> TarError {
        TarError::Format { offset: self.member_at, what: what.into() }
    }

    pub(super) fn feed(&mut self, chunk: Vec<u8>) -> Result<()> {
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
    pub(super) fn after_pad(&mut self) {
        if matches!(self.state, State::Pad { left: 0 }) {
            self.state = State::Header { buf: Box::new([0; 512]), have: 0 };
        }
    }

    /// The archive ended: it must not end inside a member.
    pub(super) fn end(&mut self) -> Result<()> {
        match &self.state {
            State::End | State::Header { have: 0, .. } => Ok(()),
            State::Pad { .. } => Ok(()),
            State::Header { .. } => Err(self.format("the archive ends inside a header")),
            State::Data { .. } => Err(self.format("the archive ends inside this member's data")),
        }
    }

    pub(super) fn chown(&mut self, h: &Header, on: Chown<'_>) -> Result<()> {
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

    pub(super) fn header(&mut self, block: &[u8; 512]) -> Result<()> {
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
    pub(super) fn data(&mut self, to: Dest, size: u64, pad: u64) {
        self.state = if size == 0 {
            if pad == 0 { State::Header { buf: Box::new([0; 512]), have: 0 } } else { State::Pad { left: pad } }
        } else {
            State::Data { to, left: size, file_off: 0, pad }
        };
    }
}

pub(super) enum Chown<'a> {
    Fd(&'a std::fs::File, &'a Path),
    Path(&'a Path),
}

/// Creates a new file at `p` for writing, replacing a file of the same name (a member
/// repeated in the archive: the later one wins, as with tar; writes still queued for the
/// earlier one go to its unlinked inode).
pub(super) fn create_file(p: &Path) -> Result<std::fs::File> {
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
pub(super) fn replace_with(p: &Path, mut make: impl FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
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
