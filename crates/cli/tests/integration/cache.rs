//! The local metadata cache (`docs/cache.md`): on S3 (moto, which logs one line per
//! request) a warm cache means no `GetObject` of a snapshot or index object and no listing
//! of `data/` per backup; on a local vault with `--cache-dir`, a tampered, planted or
//! unwritable cache never changes what a command shows, and `--as-of` still comes from the
//! store.

use crate::repo_util::{PASSWORD, Repo, flip_byte};
use crate::s3_repo::S3Repo;
use crate::{Cmd, Sandbox};
use coffer_testkit::s3::{S3Server, ServerKind};
use std::path::{Path, PathBuf};

/// Requests in `log` (moto's, one line per request) that get an object under `ns/` of the
/// repository at `bucket/prefix`.
fn gets(log: &str, bucket: &str, prefix: &str, ns: &str) -> usize {
    let path = format!("\"GET /{bucket}/{prefix}/{ns}/");
    log.lines().filter(|l| l.contains(&path)).count()
}

/// Listings of `ns/` in `log` (`GET /BUCKET/?versions&…&prefix=PREFIX/NS/`).
fn listings(log: &str, prefix: &str, ns: &str) -> usize {
    let q = format!("prefix={prefix}/{ns}/ ");
    log.lines().filter(|l| l.contains("\"GET /") && l.contains(&q)).count()
}

/// The repository's directory in cache root `root` (`v1/REPO-ID`): the only one.
fn repo_dir(root: &Path) -> PathBuf {
    // `v1/open` holds the key hints, by location (docs/cache.md).
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("open"))
        .collect();
    assert_eq!(dirs.len(), 1, "one repository in the cache: {dirs:?}");
    dirs.pop().unwrap()
}

/// The entries of `ns` in the cache, sorted.
fn entries(root: &Path, ns: &str) -> Vec<PathBuf> {
    let mut e: Vec<PathBuf> = std::fs::read_dir(repo_dir(root).join(ns)).unwrap().map(|e| e.unwrap().path()).collect();
    e.sort();
    e
}

#[test]
fn cache_a_warm_cache_reads_no_snapshot_or_index_object_on_moto() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-cache");
    let r = S3Repo { sb: Sandbox::new(), server: &server, url: server.url(&bucket, "hosts/one") };
    let src = r.sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello cache").unwrap();
    r.c(["init"]).ok();
    for i in 0..3 {
        std::fs::write(src.join("n.txt"), format!("backup {i}")).unwrap();
        r.c(["backup", "--json"]).arg(&src).ok();
    }
    // The default cache, for an S3 repository: under the sandbox's HOME.
    let root = r.sb.home().join(".cache/coffer");
    assert_eq!(entries(&root, "snapshots").len(), 3, "each backup kept its snapshot");
    assert!(!entries(&root, "index").is_empty());
    assert!(entries(&root, "writing").is_empty(), "every backup committed");

    let count = |cmd: Cmd, what: &str| {
        let before = server.log().lines().count();
        let out = cmd.ok().stdout_text();
        let log: String = server.log().lines().skip(before).map(|l| format!("{l}\n")).collect();
        let (s, i, d) = (
            gets(&log, &bucket, "hosts/one", "snapshots"),
            gets(&log, &bucket, "hosts/one", "index"),
            listings(&log, "hosts/one", "data"),
        );
        assert!(log.lines().count() > 0, "{what}: the log shows requests");
        (s, i, d, out, log)
    };
    std::fs::write(src.join("n.txt"), b"backup 4").unwrap();
    let (s, i, d, _, log) = count(r.c(["backup", "--json"]).arg(&src), "backup");
    assert_eq!((s, i, d), (0, 0, 0), "a backup with a warm cache: no snapshot or index GET, no data/ listing:\n{log}");
    let (s, i, _, out, log) = count(r.c(["snapshots", "--json"]), "snapshots");
    assert_eq!((s, i), (0, 0), "snapshots:\n{log}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown.as_array().unwrap().len(), 4);
    let target = r.sb.path("restore");
    let (s, i, _, _, log) = count(r.c(["restore", "--json", "latest", "--target"]).arg(&target), "restore");
    assert_eq!((s, i), (0, 0), "restore:\n{log}");
    let (s, i, _, _, log) = count(r.c(["verify", "--json"]), "verify");
    assert_eq!((s, i), (0, 0), "verify:\n{log}");
    // Reading data checks the store's bytes, metadata objects included.
    let (s, i, _, _, _) = count(r.c(["verify", "--json", "--read-data"]), "verify --read-data");
    assert_eq!(s, 4, "verify --read-data reads every snapshot object from the store");
    assert!(i > 0, "and every index object");

    // --no-cache reads every snapshot from the store.
    let (s, i, _, out, _) = count(r.c(["--no-cache", "snapshots", "--json"]), "snapshots --no-cache");
    assert_eq!(s, 4, "one GET per snapshot without the cache");
    assert_eq!(i, 0, "snapshots reads no index");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), shown);

    // A cache deleted is rebuilt from the store; the first backup after looks for packs an
    // interrupted backup may have left (a data/ listing), the next does not.
    std::fs::remove_dir_all(&root).unwrap();
    let (s, _, d, _, _) = count(r.c(["backup", "--json"]).arg(&src), "backup after clearing the cache");
    assert_eq!((s, d), (4, 1), "a cold cache: every snapshot read once, data/ listed once");
    let (s, i, d, _, log) = count(r.c(["backup", "--json"]).arg(&src), "backup, warm again");
    assert_eq!((s, i, d), (0, 0, 0), "warm again:\n{log}");
}

/// A local vault repository driven with `--cache-dir CACHE`.
struct Cached {
    r: Repo,
    root: PathBuf,
}

impl Cached {
    fn new() -> Self {
        let r = Repo::init();
        let root = r.sb.path("cache");
        Self { r, root }
    }

    fn c<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> Cmd {
        self.r.c(["--cache-dir"]).arg(&self.root).args(args)
    }

    fn backup(&self, src: &Path) -> String {
        self.c(["backup", "--json"]).arg(src).ok().json()["snapshot"].as_str().unwrap().to_owned()
    }

    fn snapshots(&self, extra: &[&str]) -> serde_json::Value {
        self.c(["snapshots", "--json"]).args(extra).ok().json()
    }
}

fn tree(sb: &Sandbox, text: &str) -> PathBuf {
    let src = sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f.txt"), text).unwrap();
    src
}

#[test]
fn cache_tampered_entries_are_not_used_and_are_repaired() {
    let c = Cached::new();
    let src = tree(&c.r.sb, "one");
    c.backup(&src);
    std::fs::write(src.join("f.txt"), "two").unwrap();
    c.backup(&src);
    let want = c.snapshots(&[]);
    assert_eq!(c.r.c(["snapshots", "--json"]).ok().json(), want, "the same without the cache");
    let snaps = entries(&c.root, "snapshots");
    assert_eq!(snaps.len(), 2);
    let good: Vec<Vec<u8>> = snaps.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let index = entries(&c.root, "index");

    // A flipped byte; another valid object (the other snapshot) under this name; a truncated
    // index entry.
    flip_byte(&snaps[0], 40);
    std::fs::write(&snaps[1], &good[0]).unwrap();
    let len = std::fs::metadata(&index[0]).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&index[0]).unwrap().set_len(len / 2).unwrap();
    // Without the catalog (the decoded objects: `cache_a_tampered_catalog_…` below and
    // the repository crate's `catalog_*` tests),
    // the objects are opened through these per-object entries.
    let catalog = snaps[0].parent().unwrap().parent().unwrap().join("catalog");
    assert!(catalog.is_dir(), "the runs kept a catalog");
    std::fs::remove_dir_all(&catalog).unwrap();

    let run = c.c(["snapshots", "--json"]).ok();
    assert_eq!(run.json(), want);
    assert_eq!(run.stderr, "", "a bad cache entry is no error and prints nothing");
    for (p, bytes) in snaps.iter().zip(&good) {
        assert_eq!(&std::fs::read(p).unwrap(), bytes, "{} is read again from the store", p.display());
    }
    // The index entry is repaired by the next command that loads the index; the restore
    // is exact.
    let target = c.r.sb.path("restore");
    c.c(["restore", "--json", "latest", "--target"]).arg(&target).ok();
    let restored = crate::repo_util::restored(&target, &src).join("f.txt");
    assert_eq!(std::fs::read(restored).unwrap(), b"two");
    assert_eq!(std::fs::metadata(&index[0]).unwrap().len(), len);
}

#[test]
fn cache_a_tampered_catalog_is_no_error_changes_nothing_and_is_rewritten() {
    let c = Cached::new();
    let src = tree(&c.r.sb, "one");
    c.backup(&src);
    std::fs::write(src.join("f.txt"), "two").unwrap();
    c.backup(&src);
    let want = c.r.c(["snapshots", "--json"]).ok().json();
    assert_eq!(c.snapshots(&[]), want);
    let base = repo_dir(&c.root).join("catalog/snapshots.base");
    assert!(std::fs::read(&base).unwrap().starts_with(b"coffer-catalog-2"), "the documented magic");
    // The same entries, whatever second the listing began (bytes 17..25, docs/cache.md).
    let entries = |b: Vec<u8>| [&b[..17], &b[25..b.len() - 32]].concat();
    // A bad file makes the next run write one base of every listed entry (no delta files):
    // from then on, each repair writes exactly these bytes again.
    flip_byte(&base, 20);
    assert_eq!(c.snapshots(&[]), want);
    let good = std::fs::read(&base).unwrap();
    let files = std::fs::read_dir(base.parent().unwrap())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("snapshots."))
        .count();
    assert_eq!(files, 1, "one base, no delta");
    for at in [0, 17, 30, good.len() / 2, good.len() - 1] {
        flip_byte(&base, at);
        let run = c.c(["snapshots", "--json"]).ok();
        assert_eq!(run.json(), want, "byte {at} flipped");
        assert_eq!(run.stderr, "", "a bad catalog is no error and prints nothing");
        assert_eq!(
            entries(std::fs::read(&base).unwrap()),
            entries(good.clone()),
            "rewritten from the objects (byte {at})"
        );
    }
}

#[test]
fn cache_an_entry_the_store_does_not_list_is_not_shown_and_is_removed() {
    let c = Cached::new();
    let src = tree(&c.r.sb, "one");
    let first = c.backup(&src);
    // A copy of the vault is the same repository (same id, same key): a snapshot written
    // there is well sealed and lands in the shared cache, but this store does not have it.
    let copy = c.r.sb.path("copy");
    let status = std::process::Command::new("cp").arg("-a").arg(c.r.vault()).arg(&copy).status().unwrap();
    assert!(status.success());
    std::fs::write(src.join("f.txt"), "elsewhere").unwrap();
    let planted =
        c.r.sb
            .coffer(["--repo"])
            .arg(&copy)
            .args(["--cache-dir"])
            .arg(&c.root)
            .env("COFFER_PASSWORD", PASSWORD)
            .args(["backup", "--json"])
            .arg(&src)
            .ok()
            .json()["snapshot"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(entries(&c.root, "snapshots").len(), 2, "the planted snapshot is in the cache");

    let shown = c.snapshots(&[]);
    let ids: Vec<&str> = shown.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str()], "only what the store lists (not {planted})");
    let left = entries(&c.root, "snapshots");
    assert_eq!(left.len(), 1, "the unlisted entry is removed: {left:?}");
    assert!(left[0].ends_with(&first));
    // The next backup links to the store's newest snapshot, not the planted one.
    std::fs::write(src.join("f.txt"), "three").unwrap();
    c.backup(&src);
    let all = c.snapshots(&[]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    c.r.verify_at(0, false);
}

#[test]
fn cache_as_of_with_a_warm_cache_hides_later_snapshots() {
    let c = Cached::new();
    let src = tree(&c.r.sb, "one");
    let first = c.backup(&src);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t = coffer_store::Clock::system().now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(src.join("f.txt"), "two").unwrap();
    c.backup(&src);
    assert_eq!(entries(&c.root, "snapshots").len(), 2);
    let past = c.snapshots(&["--as-of", &t.to_string()]);
    let ids: Vec<&str> = past.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str()]);
    assert_eq!(entries(&c.root, "snapshots").len(), 2, "a past view removes no entry of a later name");
    assert_eq!(c.snapshots(&[]).as_array().unwrap().len(), 2);
}

#[test]
fn cache_unusable_cache_dir_or_no_cache_still_works() {
    let c = Cached::new();
    let src = tree(&c.r.sb, "one");
    // A file where the cache directory belongs: no cache, no error, nothing on stderr.
    let file = c.r.sb.file("not-a-dir", b"x");
    let run = c.r.c(["--cache-dir"]).arg(&file).args(["backup", "--json"]).arg(&src).ok();
    assert_eq!(run.stderr, "");
    let run = c.r.c(["--cache-dir"]).arg(&file).args(["snapshots", "--json"]).ok();
    assert_eq!(run.json().as_array().unwrap().len(), 1);
    assert_eq!(run.stderr, "");
    // COFFER_CACHE_DIR names it too; --no-cache wins over both.
    c.r.c(["snapshots", "--json"]).env("COFFER_CACHE_DIR", &c.root).ok();
    assert_eq!(entries(&c.root, "snapshots").len(), 1);
    let other = c.r.sb.path("other-cache");
    c.r.c(["--no-cache", "--cache-dir"]).arg(&other).args(["snapshots", "--json"]).ok();
    assert!(!other.exists(), "--no-cache creates no cache");
    // A local vault without --cache-dir: no cache under HOME.
    c.r.c(["snapshots", "--json"]).ok();
    assert!(!c.r.sb.home().join(".cache/coffer").exists(), "no default cache for a local vault");
}

/// `--cache-dir` and `--no-cache` reach jobs of the policy file too (`coffer run`), over
/// the repository's own `cache-dir` key.
#[test]
fn cache_flags_override_the_policy_file_keys() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    let key_dir = repo.sb.path("key-cache");
    let text = format!(
        "[daemon]\nstate-dir = {:?}\n[repositories.main]\nlocation = {:?}\ncache-dir = {:?}\n\
         [files.home]\nrepository = \"main\"\nschedule = \"hourly\"\npaths = [{:?}]\n",
        repo.sb.path("state").display().to_string(),
        repo.vault().display().to_string(),
        key_dir.display().to_string(),
        src.display().to_string(),
    );
    let config = repo.sb.file("coffer.toml", text.as_bytes());
    let run = |flags: &[&str]| {
        repo.sb
            .coffer(flags)
            .args(["run", "home/backup", "--config"])
            .arg(&config)
            .env("COFFER_PASSWORD", PASSWORD)
            .ok()
    };
    // The key alone: its directory caches the snapshot (a local vault is cached when named).
    run(&[]);
    assert_eq!(entries(&key_dir, "snapshots").len(), 1);
    // --cache-dir wins over the key.
    let flag_dir = repo.sb.path("flag-cache");
    run(&["--cache-dir", flag_dir.to_str().unwrap()]);
    assert_eq!(entries(&flag_dir, "snapshots").len(), 2, "both snapshots, read through the flag's cache");
    assert_eq!(entries(&key_dir, "snapshots").len(), 1, "the key's cache untouched");
    // --no-cache: neither directory learns of the third snapshot.
    run(&["--no-cache"]);
    assert_eq!(entries(&key_dir, "snapshots").len(), 1);
    assert_eq!(entries(&flag_dir, "snapshots").len(), 2);
    assert_eq!(repo.c(["snapshots", "--json"]).ok().json().as_array().unwrap().len(), 3);
}
