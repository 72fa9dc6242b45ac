//! `check_restored` (the files drill's `content` and `metadata` checks) on a real restore
//! from a real LocalVault: a faithful restore has no problem; each change made to it
//! afterwards (a byte, a length, a mode, an owner, a time, an extended attribute, a hard
//! link, an extra or a missing entry) is reported, naming the path. Runs as root (owners).

use coffer_repository::{InitOptions, JobControl, KdfParams, Repository, Snapshot};
use coffer_sources::files::{BackupOptions, RestoreCheck, RestoreOptions, backup, check_restored, restore, walk};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Fixture {
    _tmp: tempfile::TempDir,
    repo: Repository,
    snap: Snapshot,
    src: PathBuf,
    root: PathBuf,
}

/// Deterministic bytes that do not compress, so a file spans several blobs.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let vault = LocalVault::init(tmp.path().join("v"), &VaultOptions::default()).unwrap();
    let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(w, "t", "", b"pw", &opts, Clock::system()).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::write(src.join("big"), noise(6 << 20, 7)).unwrap();
    for name in ["flip", "short", "long", "mode", "owner", "time", "xattr", "gone", "hl-a", "dir/sub/leaf"] {
        fs::write(src.join(name), format!("the file {name}\n")).unwrap();
    }
    fs::hard_link(src.join("hl-a"), src.join("hl-b")).unwrap();
    std::os::unix::fs::symlink("big", src.join("link")).unwrap();
    let xattrs =
        rustix::fs::setxattr(src.join("xattr").as_path(), "user.drill", b"v", rustix::fs::XattrFlags::empty()).is_ok();
    assert!(xattrs, "the temporary file system must take user.* extended attributes for this test");
    let snap = backup(
        &repo,
        &BackupOptions { paths: vec![src.clone()], host: "h".into(), ..Default::default() },
        &JobControl::none(),
    )
    .unwrap()
    .info;
    let root = tmp.path().join("restored");
    Fixture { _tmp: tmp, repo, snap, src, root }
}

impl Fixture {
    fn restore(&self, exact: Option<&BTreeSet<PathBuf>>) {
        let opts = RestoreOptions { target: self.root.clone(), exact: exact.cloned(), ..Default::default() };
        let r = restore(&self.repo, &self.snap, &opts, &JobControl::none()).unwrap();
        assert!(r.warnings.is_empty() && r.damaged.is_empty() && r.refused.is_empty(), "{r:?}");
    }

    fn check(&self, only: Option<&BTreeSet<PathBuf>>) -> RestoreCheck {
        let index = self.repo.load_index().unwrap();
        check_restored(&self.repo, &index, &self.snap, &self.root, only, &JobControl::none()).unwrap()
    }

    /// Where `rel` (under the backed-up directory) was restored.
    fn at(&self, rel: &str) -> PathBuf {
        walk::under(&self.root, &self.src).join(rel)
    }
}

fn require_root() {
    assert!(rustix::process::geteuid().is_root(), "this test changes owners: run it as root");
}

/// The one problem line naming `rel` that contains `what`.
#[track_caller]
fn reported(lines: &[String], src: &Path, rel: &str, what: &str) {
    let path = src.join(rel).display().to_string();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{path}:")) && l.contains(what)),
        "expected a problem for {path} containing {what:?}; got {lines:#?}"
    );
}

#[test]
fn drill_files_check_finds_every_change_to_a_restore_as_root() {
    require_root();
    let f = fixture();
    f.restore(None);
    let clean = f.check(None);
    assert_eq!((clean.content_problems, clean.metadata_problems), (0, 0), "{clean:?}");
    assert_eq!(clean.files, 12, "every regular file name re-read (hard links too)");
    assert!(clean.bytes > 6 << 20, "{}", clean.bytes);
    assert!(clean.blobs.len() > 2, "the big file spans several blobs: {}", clean.blobs.len());
    assert!(!clean.trees.is_empty());

    // Changes a restore could never make; times set back where the change moved them, so
    // each is seen for what it is.
    let keep_times = |p: &Path, f: &dyn Fn()| {
        let md = fs::metadata(p).unwrap();
        f();
        let times = fs::FileTimes::new().set_accessed(md.accessed().unwrap()).set_modified(md.modified().unwrap());
        fs::File::options().write(true).open(p).unwrap().set_times(times).unwrap();
    };
    let flip = f.at("flip");
    keep_times(&flip, &|| {
        let mut b = fs::read(&flip).unwrap();
        b[3] ^= 1;
        fs::write(&flip, b).unwrap();
    });
    let big = f.at("big");
    keep_times(&big, &|| {
        let mut b = fs::read(&big).unwrap();
        let at = b.len() - 10;
        b[at] ^= 0x80;
        fs::write(&big, b).unwrap();
    });
    let short = f.at("short");
    keep_times(&short, &|| fs::File::options().write(true).open(&short).unwrap().set_len(4).unwrap());
    let long = f.at("long");
    keep_times(&long, &|| {
        use std::io::Write as _;
        fs::File::options().append(true).open(&long).unwrap().write_all(b"more").unwrap();
    });
    fs::set_permissions(f.at("mode"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(f.at("owner"), Some(4242), None).unwrap();
    let t = fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(1_000, 5));
    fs::File::options().write(true).open(f.at("time")).unwrap().set_times(t).unwrap();
    rustix::fs::removexattr(f.at("xattr").as_path(), "user.drill").unwrap();
    fs::remove_file(f.at("gone")).unwrap();
    fs::write(f.at("dir/sub/extra"), b"not in the snapshot").unwrap();
    let hl_b = f.at("hl-b");
    fs::remove_file(&hl_b).unwrap();
    fs::copy(f.at("hl-a"), &hl_b).unwrap();

    let found = f.check(None);
    let (c, m) = (&found.content, &found.metadata);
    reported(c, &f.src, "flip", "bytes 0..");
    reported(c, &f.src, "big", "differ from the snapshot (blob");
    reported(c, &f.src, "short", "ends at byte 4");
    reported(c, &f.src, "long", "longer than the snapshot");
    reported(c, &f.src, "gone", "not restored");
    reported(m, &f.src, "mode", "mode 0600, the snapshot has 0644");
    reported(m, &f.src, "owner", "owner 4242");
    reported(m, &f.src, "time", "mtime 1970-01-01T00:16:40.000000005Z");
    reported(m, &f.src, "xattr", "extended attributes differ (user.drill)");
    reported(m, &f.src, "dir/sub/extra", "on disk but not in the snapshot");
    reported(m, &f.src, "hl-b", "hard link");
    assert_eq!(found.content_problems, 5, "{c:#?}");
    // hl-b: the hard link, and its copy's ctime-free fields are equal; `dir/sub`: its mtime
    // moved when `extra` was added; the root of the restore: `gone` was removed from it.
    assert!(found.metadata_problems >= 6, "{m:#?}");
}

#[test]
fn drill_files_check_of_a_sample_covers_the_sample_and_its_directories_as_root() {
    require_root();
    let f = fixture();
    let sample: BTreeSet<PathBuf> = [f.src.join("dir/sub/leaf"), f.src.join("big")].into_iter().collect();
    f.restore(Some(&sample));
    let found = f.check(Some(&sample));
    assert_eq!((found.content_problems, found.metadata_problems), (0, 0), "{found:?}");
    assert_eq!(found.files, 2);
    // The two files and the directories holding them, from the snapshot's root down.
    let dirs = f.src.ancestors().count() - 1 + 2;
    assert_eq!(found.entries, 2 + dirs as u64, "{found:?}");
    // Nothing else was restored; a file the sample left out is an extra if it appears.
    assert!(!f.at("flip").exists());
    fs::write(f.at("flip"), b"x").unwrap();
    let found = f.check(Some(&sample));
    reported(&found.metadata, &f.src, "flip", "on disk but not in the snapshot");
}
