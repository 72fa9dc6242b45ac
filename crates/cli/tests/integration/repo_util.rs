//! Helpers of the repository end-to-end tests (`repo_*` modules): a repository in a sandbox,
//! generated trees with every file type, and an exact comparison of two trees.
//!
//! The comparison reads without touching what it compares: files and directories are opened
//! with `O_NOATIME` and every `lstat` happens before any content is read, so access times
//! stay as they were (symlink access times are not compared: `readlink` itself updates them
//! on a `relatime` mount, so the value seen before a backup is not the one the backup saw).

use crate::{Cmd, Sandbox};
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The password every test repository uses.
pub const PASSWORD: &str = "correct horse battery staple";

/// One day in seconds, for `COFFER_TEST_CLOCK_OFFSET`.
pub const DAY: i64 = 86_400;

/// A sandbox holding an initialised repository at [`Sandbox::vault`].
pub struct Repo {
    /// The sandbox (home, vault, source trees).
    pub sb: Sandbox,
}

impl Repo {
    /// A new sandbox with `coffer init --repo VAULT` done.
    pub fn init() -> Self {
        let sb = Sandbox::new();
        let repo = Self { sb };
        repo.c(["init"]).ok();
        repo
    }

    /// The vault directory holding the repository.
    pub fn vault(&self) -> PathBuf {
        self.sb.vault()
    }

    /// `coffer --repo VAULT ARGS…` with the password in the environment.
    pub fn c<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Cmd {
        self.sb.coffer(["--repo"]).arg(self.vault()).env("COFFER_PASSWORD", PASSWORD).args(args)
    }

    /// As [`Repo::c`], with the store clock moved by `offset` seconds.
    pub fn at<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, offset: i64, args: I) -> Cmd {
        self.c(args).env("COFFER_TEST_CLOCK_OFFSET", offset.to_string())
    }

    /// `coffer backup --json PATHS… EXTRA…` (clock moved by `offset`), which must succeed;
    /// returns its JSON document.
    #[track_caller]
    pub fn backup_at(&self, offset: i64, paths: &[&Path], extra: &[&str]) -> Value {
        self.at(offset, ["backup", "--json"]).args(paths).args(extra).ok().json()
    }

    /// `coffer backup --json PATHS… EXTRA…` now.
    #[track_caller]
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> Value {
        self.backup_at(0, paths, extra)
    }

    /// The live snapshots (`snapshots --json`) with the clock moved by `offset`.
    #[track_caller]
    pub fn snapshots_at(&self, offset: i64) -> Vec<Value> {
        self.at(offset, ["snapshots", "--json"]).ok().json().as_array().expect("snapshot list").clone()
    }

    /// `restore SNAP --target TARGET`, which must succeed; returns its JSON document.
    #[track_caller]
    pub fn restore_at(&self, offset: i64, snap: &str, target: &Path) -> Value {
        self.at(offset, ["restore", "--json", snap, "--target"]).arg(target).ok().json()
    }

    /// `verify` (with `--read-data` if asked), which must succeed.
    #[track_caller]
    pub fn verify_at(&self, offset: i64, read_data: bool) -> Value {
        let mut c = self.at(offset, ["verify", "--json"]);
        if read_data {
            c = c.arg("--read-data");
        }
        let doc = c.ok().json();
        assert_eq!(doc["problems"], serde_json::json!([]), "verify reports problems: {doc}");
        doc
    }

    /// Every version in the vault (`vault versions --json`), as the admin sees them.
    pub fn versions(&self) -> Vec<Value> {
        self.sb.versions("")
    }

    /// The data file in `VAULT/data/` that holds `key`'s latest version (from the vault's
    /// metadata database).
    pub fn data_file(&self, key: &str) -> PathBuf {
        let v = self.sb.versions(key).into_iter().find(|v| v["key"] == key && v["is_latest"] == true);
        let vid = v.unwrap_or_else(|| panic!("{key} has no latest version"))["version"].as_str().unwrap().to_owned();
        let db = rusqlite::Connection::open(self.vault().join("meta.sqlite")).expect("open meta.sqlite");
        let file: String = db
            .query_row("SELECT file FROM versions WHERE key = ?1 AND vid = ?2", (key.as_bytes(), &vid), |r| r.get(0))
            .expect("version row");
        self.vault().join("data").join(&file[..2]).join(file)
    }

    /// Rewrites `key`'s data file with `data` and records the new checksum, as a store that
    /// does not checksum (or an attacker with the disk) would return it: only the
    /// repository's own authentication can catch what changed.
    pub fn replace_data_file(&self, key: &str, data: &[u8]) {
        let path = self.data_file(key);
        make_writable(&path);
        fs::write(&path, data).expect("rewrite data file");
        let db = rusqlite::Connection::open(self.vault().join("meta.sqlite")).expect("open meta.sqlite");
        let sum = format!("blake3:{}", blake3::hash(data).to_hex());
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let n =
            db.execute("UPDATE versions SET checksum = ?1 WHERE file = ?2", (&sum, &file)).expect("update checksum");
        assert_eq!(n, 1);
    }
}

/// Makes a vault data file (stored 0444) writable, to damage it.
pub fn make_writable(path: &Path) {
    let mut p = fs::metadata(path).expect("stat data file").permissions();
    p.set_mode(p.mode() | 0o200);
    fs::set_permissions(path, p).expect("chmod u+w");
}

/// Flips every bit of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: usize) {
    make_writable(path);
    let mut data = fs::read(path).expect("read data file");
    data[offset] ^= 0xff;
    fs::write(path, data).expect("write data file");
}

/// The largest file under `dir` (recursively).
pub fn largest_file(dir: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read dir") {
            let e = e.expect("dir entry");
            let md = e.metadata().expect("stat");
            if md.is_dir() {
                stack.push(e.path());
            } else if best.as_ref().is_none_or(|(s, _)| md.len() > *s) {
                best = Some((md.len(), e.path()));
            }
        }
    }
    best.expect("a file").1
}

/// Fast deterministic incompressible bytes (xorshift64*), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small random generator for test choices (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Seeded; the seed should be printed so a failure can be reproduced.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A seed from `var` if set, else a random one.
    pub fn seed_from_env(var: &str) -> u64 {
        match std::env::var(var) {
            Ok(s) => s.parse().unwrap_or_else(|_| panic!("{var}={s:?} is not a number")),
            Err(_) => {
                use std::hash::{BuildHasher as _, Hasher as _};
                std::collections::hash_map::RandomState::new().build_hasher().finish()
            }
        }
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `base` joined with a relative path given as bytes (may not be UTF-8).
pub fn join(base: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() { base.to_path_buf() } else { base.join(OsStr::from_bytes(rel)) }
}

/// Where `restore --target TARGET` puts the snapshot path `src` (absolute).
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").expect("absolute source path"))
}

/// Sets owner (without following symlinks).
pub fn lchown(p: &Path, uid: u32, gid: u32) {
    rustix::fs::chownat(CWD, p, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// The suffix of the name of every test that needs root: `.ci/test`, run by another user,
/// leaves those tests out (`-E 'not test(/_as_root$/)'`) and lists them as skipped.
pub const AS_ROOT: &str = "_as_root";

/// Fails the calling test unless it runs as root (the message says `why` it needs root): a
/// test that cannot do what it tests must not pass. The test's name must end in
/// [`AS_ROOT`], so that a run by another user can leave it out visibly.
#[track_caller]
pub fn require_root(why: &str) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("");
    assert!(
        name.ends_with(AS_ROOT),
        "{name}: a test that needs root must have a name ending in `{AS_ROOT}` (so that runs by other users leave it out)"
    );
    assert!(
        rustix::process::geteuid().is_root(),
        "{name} needs root {why}: run it as root (`.ci/test`, run by another user, leaves out the tests whose names \
         end in `{AS_ROOT}` and lists them as skipped)"
    );
}

/// Sets permissions (not on symlinks).
pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// Sets access and modification times in nanoseconds (without following symlinks).
pub fn set_times(p: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let t = |(s, n): (i64, i64)| Timespec { tv_sec: s, tv_nsec: n };
    let times = Timestamps { last_access: t(atime), last_modification: t(mtime) };
    rustix::fs::utimensat(CWD, p, &times, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

/// What a generated tree could include on this machine.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// `user.*` extended attributes are supported by the temp filesystem.
    pub xattrs: bool,
    /// Device nodes can be created (root with `CAP_MKNOD`).
    pub devices: bool,
}

/// Builds under `root` (created) a tree with every file type Coffer backs up: regular files
/// (empty, small, multi-chunk, sparse), nested and empty directories, symlinks (relative,
/// absolute, dangling, non-UTF-8), hard links, setuid/setgid/sticky bits, foreign owners,
/// nanosecond times (also before 1970 and after 2038), extended attributes, a fifo, device
/// nodes and non-UTF-8 names. Extended attributes are left out (with a note) when the temporary
/// file system refuses `user.*` ones.
///
/// Needs root (foreign owners, device nodes): the calling test's name must end in
/// [`AS_ROOT`].
#[track_caller]
pub fn every_type_tree(root: &Path, seed: u64) -> Features {
    require_root("to give files other owners and make device nodes");
    let p = |rel: &str| root.join(rel);
    let pb = |rel: &[u8]| join(root, rel);
    for d in ["sub/deeper/a/b/c", "sub/empty-dir", "sticky", "setgid-dir", "ro-dir", "xattr-dir"] {
        fs::create_dir_all(p(d)).expect("mkdir");
    }
    fs::create_dir(pb(b"dir-\xff\xfe")).expect("mkdir non-UTF-8");
    let w = |rel: &str, data: &[u8]| fs::write(p(rel), data).expect("write");
    w("empty.txt", b"");
    w("small.txt", b"hello, coffer\n");
    w("big.bin", &random_bytes(5 << 19, seed));
    w("sub/deeper/a/b/c/leaf.txt", b"deep leaf\n");
    w("ro-dir/inside.txt", b"in a read-only directory\n");
    w("setuid", b"#!/bin/sh\necho setuid\n");
    w("setgid", b"setgid file\n");
    w("mode000", b"nobody may read me\n");
    w("nobody-owned", b"owned by a user that has a name\n");
    w("old", b"older than 1970\n");
    w("future", b"after 2038\n");
    w("hl1", b"one inode, three names\n");
    w("pair-a", b"one inode, two names\n");
    fs::write(pb(b"caf\xe9.txt"), b"latin-1 name\n").expect("write non-UTF-8 name");
    fs::write(pb(b"dir-\xff\xfe/\xc0\xc1"), b"inside a non-UTF-8 directory\n").expect("write");
    // A sparse file: data, a hole, data, and a hole at the end.
    {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let mut f = fs::File::create(p("sparse.img")).expect("create sparse");
        f.write_all(&random_bytes(64 << 10, seed ^ 1)).expect("write");
        f.seek(SeekFrom::Start(6 << 20)).expect("seek");
        f.write_all(&random_bytes(64 << 10, seed ^ 2)).expect("write");
        f.set_len(10 << 20).expect("extend with a hole");
    }
    // Hard links, across directories.
    fs::hard_link(p("hl1"), p("sub/hl2")).expect("link");
    fs::hard_link(p("hl1"), p("sub/deeper/hl3")).expect("link");
    fs::hard_link(p("pair-a"), p("pair-b")).expect("link");
    // Symlinks.
    let ln =
        |target: &[u8], rel: &[u8]| std::os::unix::fs::symlink(OsStr::from_bytes(target), pb(rel)).expect("symlink");
    ln(b"small.txt", b"link-rel");
    ln(b"/etc/hostname", b"link-abs");
    ln(b"no/such/target", b"dangling");
    ln(b"\xe9t\xe9/\xff", b"link-\xff");
    ln(b"sub", b"link-to-dir");
    ln(b"small.txt", b"link-owned");
    lchown(&p("link-owned"), 1234, 5678);
    // A fifo.
    rustix::fs::mknodat(CWD, p("fifo"), FileType::Fifo, Mode::from_raw_mode(0o640), 0).expect("mkfifo");
    lchown(&p("fifo"), 1234, 5678);
    // Device nodes (root only).
    let devices = match rustix::fs::mknodat(
        CWD,
        p("chardev"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o620),
        rustix::fs::makedev(1, 3),
    ) {
        Ok(()) => {
            rustix::fs::mknodat(
                CWD,
                p("blockdev"),
                FileType::BlockDevice,
                Mode::from_raw_mode(0o660),
                rustix::fs::makedev(7, 200),
            )
            .expect("mknod block device");
            lchown(&p("chardev"), 0, 5);
            true
        }
        Err(e) => panic!("root cannot make a device node here ({e}): the test needs CAP_MKNOD"),
    };
    // Owners, then modes (chown clears setuid/setgid).
    for rel in ["setuid", "setgid", "sub", "sub/deeper/hl3", "sticky"] {
        lchown(&p(rel), 1234, 5678);
    }
    lchown(&p("nobody-owned"), 65534, 65534);
    lchown(&pb(b"dir-\xff\xfe"), 4321, 8765);
    chmod(&p("setuid"), 0o4755);
    chmod(&p("setgid"), 0o2750);
    chmod(&p("mode000"), 0o000);
    chmod(&p("sticky"), 0o1777);
    chmod(&p("setgid-dir"), 0o2775);
    chmod(&p("sub"), 0o750);
    chmod(&p("sub/empty-dir"), 0o700);
    chmod(&p("big.bin"), 0o640);
    // Extended attributes (user namespace: regular files and directories only).
    let probe = rustix::fs::lsetxattr(p("small.txt"), "user.coffer", b"probe", rustix::fs::XattrFlags::empty());
    let xattrs = match probe {
        Ok(()) => {
            let set = |rel: &str, name: &str, value: &[u8]| {
                rustix::fs::lsetxattr(p(rel), name, value, rustix::fs::XattrFlags::empty()).expect("setxattr");
            };
            set("small.txt", "user.binary", &[0, 1, 2, 0xff, 0xfe]);
            set("small.txt", "user.empty", b"");
            set("big.bin", "user.big", &random_bytes(3000, seed ^ 3));
            set("xattr-dir", "user.dir", b"on a directory");
            set("hl1", "user.linked", b"shared by all names");
            true
        }
        Err(e) => {
            println!("note: extended attributes not tested: the temp filesystem refuses user.* ({e})");
            false
        }
    };
    chmod(&p("ro-dir"), 0o555);
    // Times last, children before parents, each with its own nanoseconds.
    let mut all = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        all.push(d.clone());
        for e in fs::read_dir(&d).expect("read dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else {
                all.push(e.path());
            }
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in all.iter().enumerate() {
        let i = i as i64;
        let mtime = (1_600_000_000 + i * 3_607, (i * 7_919 + 1) % 1_000_000_000);
        let atime = (1_650_000_000 + i * 61, (i * 104_729 + 3) % 1_000_000_000);
        set_times(path, atime, mtime);
    }
    set_times(&p("old"), (-86_400 * 365, 250_000_000), (-1, 500_000_000));
    set_times(&p("future"), (4_102_444_800, 1), (4_102_444_800 + 86_400 * 400, 999_999_999));
    set_times(&p("sub/deeper/a/b/c"), (1_700_000_000, 42), (1_700_000_001, 0));
    Features { xattrs, devices }
}

/// The type of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Unix socket.
    Socket,
}

/// Everything compared about one entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Type.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size (regular files).
    pub size: u64,
    /// 512-byte blocks allocated (not compared; for sparse checks).
    pub blocks: u64,
    /// Modification time (s, ns).
    pub mtime: (i64, i64),
    /// Access time (s, ns).
    pub atime: (i64, i64),
    /// Device number (device nodes).
    pub rdev: u64,
    /// BLAKE3 of the content (regular files).
    pub content: Option<blake3::Hash>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// All relative paths of this inode in the tree (regular files etc.; sorted).
    pub links: Vec<Vec<u8>>,
    ino: (u64, u64),
}

/// A tree: relative path bytes (`""` = the root) to entry.
pub type Manifest = BTreeMap<Vec<u8>, Entry>;

fn kind_of(ft: fs::FileType) -> Kind {
    use std::os::unix::fs::FileTypeExt as _;
    if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else {
        Kind::Socket
    }
}

/// Names in directory `p`, read without updating its access time.
fn list_dir_noatime(p: &Path) -> Vec<Vec<u8>> {
    let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOATIME | OFlags::CLOEXEC, Mode::empty())
        .unwrap_or_else(|e| panic!("open dir {}: {e}", p.display()));
    let mut dir = rustix::fs::Dir::new(fd).expect("Dir");
    let mut out = Vec::new();
    while let Some(e) = dir.read() {
        let name = e.expect("dir entry").file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(name);
        }
    }
    out
}

fn hash_noatime(p: &Path) -> blake3::Hash {
    let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::NOATIME | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut f = fs::File::from(fd);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return h.finalize();
        }
        h.update(&buf[..n]);
    }
}

fn xattrs_of(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut list = vec![0u8; 64 << 10];
    let n = match rustix::fs::llistxattr(p, &mut list[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return out,
        Err(e) => panic!("listxattr {}: {e}", p.display()),
    };
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 << 10];
        let len = rustix::fs::lgetxattr(p, OsStr::from_bytes(name), &mut value[..])
            .unwrap_or_else(|e| panic!("getxattr {}: {e}", p.display()));
        value.truncate(len);
        out.insert(name.to_vec(), value);
    }
    out
}

/// Reads the tree at `root` (which is not modified, access times included).
pub fn manifest(root: &Path) -> Manifest {
    let mut m = Manifest::new();
    // Pass 1: metadata only.
    let mut stack = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let p = join(root, &rel);
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let kind = kind_of(md.file_type());
        if kind == Kind::Dir {
            for name in list_dir_noatime(&p) {
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(&name);
                stack.push(child);
            }
        }
        m.insert(
            rel,
            Entry {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: if kind == Kind::File { md.size() } else { 0 },
                blocks: md.blocks(),
                mtime: (md.mtime(), md.mtime_nsec()),
                atime: (md.atime(), md.atime_nsec()),
                rdev: if matches!(kind, Kind::Char | Kind::Block) { md.rdev() } else { 0 },
                content: None,
                target: None,
                xattrs: BTreeMap::new(),
                links: Vec::new(),
                ino: (md.dev(), md.ino()),
            },
        );
    }
    // Pass 2: content, targets, attributes, hard-link groups.
    let mut groups: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for (rel, e) in &mut m {
        let p = join(root, rel);
        match e.kind {
            Kind::File => e.content = Some(hash_noatime(&p)),
            Kind::Symlink => e.target = Some(fs::read_link(&p).expect("readlink").as_os_str().as_bytes().to_vec()),
            _ => {}
        }
        e.xattrs = xattrs_of(&p);
        if e.kind != Kind::Dir {
            groups.entry(e.ino).or_default().push(rel.clone());
        }
    }
    for e in m.values_mut() {
        if e.kind != Kind::Dir {
            e.links.clone_from(&groups[&e.ino]);
            e.links.sort();
        }
    }
    m
}

/// A relative path for messages.
pub fn show(rel: &[u8]) -> String {
    if rel.is_empty() { "(root)".into() } else { format!("{:?}", OsStr::from_bytes(rel)) }
}

/// Asserts that `got` reproduces `want` exactly: the same paths with the same type, mode,
/// owner, size, content, mtime (ns), atime (ns; not for symlinks), symlink target, device
/// number, extended attributes and hard-link grouping.
#[track_caller]
pub fn assert_same_tree(want: &Manifest, got: &Manifest, what: &str) {
    let mut diffs = Vec::new();
    for (rel, w) in want {
        let Some(g) = got.get(rel) else {
            diffs.push(format!("{}: missing", show(rel)));
            continue;
        };
        let mut d = |field: &str, a: String, b: String| {
            if a != b {
                diffs.push(format!("{}: {field} {a} != {b}", show(rel)));
            }
        };
        d("type", format!("{:?}", w.kind), format!("{:?}", g.kind));
        d("mode", format!("{:o}", w.mode), format!("{:o}", g.mode));
        d("owner", format!("{}:{}", w.uid, w.gid), format!("{}:{}", g.uid, g.gid));
        d("mtime", format!("{:?}", w.mtime), format!("{:?}", g.mtime));
        if w.kind != Kind::Symlink {
            d("atime", format!("{:?}", w.atime), format!("{:?}", g.atime));
        }
        d("size", w.size.to_string(), g.size.to_string());
        d("content", format!("{:?}", w.content), format!("{:?}", g.content));
        d(
            "target",
            format!("{:?}", w.target.as_deref().map(OsStr::from_bytes)),
            format!("{:?}", g.target.as_deref().map(OsStr::from_bytes)),
        );
        d("rdev", w.rdev.to_string(), g.rdev.to_string());
        d("xattrs", format!("{:?}", w.xattrs), format!("{:?}", g.xattrs));
        let names = |l: &[Vec<u8>]| l.iter().map(|r| show(r)).collect::<Vec<_>>().join(", ");
        d("hard links", names(&w.links), names(&g.links));
    }
    for rel in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("{}: not in the original", show(rel)));
    }
    assert!(diffs.is_empty(), "{what}: {} differences:\n{}", diffs.len(), diffs.join("\n"));
}

/// The entries of `m` at or below the relative paths `keep`, with hard-link groups cut to
/// what is kept: what `restore --include` of those paths must reproduce.
pub fn subset(m: &Manifest, keep: &[&[u8]]) -> Manifest {
    let inside = |rel: &[u8]| keep.iter().any(|k| rel == *k || (rel.starts_with(k) && rel.get(k.len()) == Some(&b'/')));
    m.iter()
        .filter(|(rel, _)| inside(rel))
        .map(|(k, v)| {
            let mut v = v.clone();
            v.links.retain(|l| inside(l));
            (k.clone(), v)
        })
        .collect()
}
