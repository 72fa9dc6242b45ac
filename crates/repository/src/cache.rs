//! The local metadata cache: bytes of content-addressed metadata objects (`snapshots/`,
//! `index/`, `ledger/`) kept on the backup host, so that a backup, `snapshots`, `restore`
//! or `verify` reads each such object from the store once per host, not once per run. On S3
//! every snapshot and index object was a `GetObject` on every backup: two requests per
//! snapshot of history (`docs/cache.md`).
//!
//! Invariants guarded here (the cache sits on a host the attacker may control):
//!
//! - **Bytes only, verified on every use.** An entry is served only if the BLAKE3 of its
//!   bytes is the id in its name — the check a store read makes — and the caller then
//!   authenticates it as it would the store's bytes. A bad entry (garbage, truncated,
//!   another object's bytes, larger than [`MAX_ENTRY`]) is removed and reads go to the
//!   store; a cache can never make a read fail.
//! - **Existence and order come from the store.** Callers ask only for names a store
//!   listing (with `--as-of` and the version rules of [`crate::versions`]) just returned,
//!   so an entry for a name the store does not list is never read: the cache can neither
//!   add nor hide history. Entries of names a complete listing no longer has are removed
//!   (`MetaCache::retain`), so the cache is bounded by the repository.
//! - **Never fatal, always disposable.** Every failure to read or write it is logged at
//!   debug and ignored; deleting it at any time costs only requests. Writes are atomic
//!   (a temporary file, then a rename), so a reader sees a whole entry or none (a torn
//!   entry would fail the hash anyway).
//!
//! Layout (version 1), under the cache root (`--cache-dir`, else
//! `$XDG_CACHE_HOME/coffer`, else `$HOME/.cache/coffer`), every directory mode 0700:
//!
//! ```text
//! CACHEDIR.TAG                     marks the tree as a cache for backup tools
//! v1/REPO-ID/snapshots/ID          bytes of snapshots/ID (REPO-ID: the config's id)
//! v1/REPO-ID/index/ID              bytes of index/ID
//! v1/REPO-ID/ledger/ID             bytes of ledger/ID
//! v1/REPO-ID/trees/ID              bytes of the tree pack data/XX/ID
//! v1/REPO-ID/writing/RANDOM        a backup of this host started and has not committed
//! v1/REPO-ID/locks                 compliance-lock observations of `verify` and backups
//! v1/REPO-ID/catalog/KIND.base     decoded index / snapshot objects ([`crate::catalog`])
//! v1/REPO-ID/catalog/KIND.d-RANDOM a catalog delta: one run's new entries
//! ```
//!
//! The `locks` file and the catalog ([`crate::catalog`]) are the entries that are not
//! content-addressed. The catalog is authenticated as a whole, served only for ids a
//! listing just returned, and never used by `verify`. The `locks` file is authenticated as
//! a whole with a key derived from the repository key, and holds only compliance-mode lock
//! ends (which the store never lets anyone shorten), each used only for a version the
//! store's listing returns (see `docs/cache.md`, "Lock observations"). Structural verifies
//! write it, and so do backups, with the locks the store reported for the packs they stored
//! (`MetaCache::add_lock_observations`); they also keep the tree packs they store.
//!
//! The `writing/` markers decide whether a backup looks for packs an interrupted backup
//! left unindexed (a listing of `data/`, see [`crate::Repository::recover_unindexed`]).

use crate::id::Id;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The layout version: the name of the directory under the cache root. A layout change
/// takes a new name, so binaries of different layouts never read each other's entries.
pub const LAYOUT: &str = "v1";

/// The largest entry served (a snapshot, index or ledger object is kilobytes to a few
/// megabytes). A larger file is someone else's and is removed, never read into memory.
pub const MAX_ENTRY: u64 = 256 << 20;

const TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by coffer (docs/cache.md).\n\
# For information about cache directory tags, see https://bford.info/cachedir/\n";

/// Which cache a repository handle uses ([`crate::RepoRequest::cache`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CacheChoice {
    /// No cache: every object is read from the store (the library's default, and what
    /// `--no-cache` asks for).
    #[default]
    Off,
    /// The cache under this root, for a remote store only ([`coffer_store::Capabilities`]):
    /// a local vault is already a local disk. The front ends' default.
    Remote(PathBuf),
    /// The cache under this root, whatever the store (a cache directory the user named).
    Always(PathBuf),
}

impl CacheChoice {
    /// The cache root a choice names for a store that is `remote` or not, if any.
    #[must_use]
    pub fn root(&self, remote: bool) -> Option<&Path> {
        match self {
            Self::Off => None,
            Self::Remote(p) if remote => Some(p),
            Self::Remote(_) => None,
            Self::Always(p) => Some(p),
        }
    }
}

/// The default cache root: `$XDG_CACHE_HOME/coffer`, else `$HOME/.cache/coffer`; `None`
/// when neither is set (then there is no cache).
#[must_use]
pub fn default_root() -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .map(|p| p.join("coffer"))
        .or_else(|| set("HOME").map(|h| h.join(".cache").join("coffer")))
}

/// What kind of object an entry holds: its subdirectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Snapshot,
    Index,
    Ledger,
    /// A pack of tree blobs (`data/`): trees never share a pack with file data, and every
    /// `verify`, `ls` and backup (its parent's trees) reads them.
    TreePack,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshots",
            Self::Index => "index",
            Self::Ledger => "ledger",
            Self::TreePack => "trees",
        }
    }
}

/// One repository's directory in the cache (see the module docs).
#[derive(Debug)]
pub(crate) struct MetaCache {
    dir: PathBuf,
    /// Whether this handle created the repository's directory: a host that had no cache
    /// of it cannot tell whether an earlier backup of it was interrupted. Cleared when a
    /// backup through this handle commits.
    fresh: std::sync::atomic::AtomicBool,
    /// Per-object entry reads ([`MetaCache::entry_reads`]).
    entry_reads: std::sync::atomic::AtomicU64,
}

impl MetaCache {
    /// Opens (creating it if needed) the cache of repository `repo` under `root`. `None`
    /// when the directories cannot be created: then there is no cache (logged at debug).
    pub(crate) fn open(root: &Path, repo: &Id) -> Option<Self> {
        let dir = root.join(LAYOUT).join(repo.to_string());
        let fresh = !dir.is_dir();
        let made = (|| -> std::io::Result<()> {
            mkdir_0700(root)?;
            let tag = root.join("CACHEDIR.TAG");
            if !tag.exists() {
                write_atomic(root, &tag, TAG)?;
            }
            mkdir_0700(&dir)?;
            for sub in ["snapshots", "index", "ledger", "trees", "writing"] {
                mkdir_0700(&dir.join(sub))?;
            }
            Ok(())
        })();
        match made {
            Ok(()) => Some(Self { dir, fresh: fresh.into(), entry_reads: 0.into() }),
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "metadata cache unavailable; reading from the store");
                None
            }
        }
    }

    /// The repository's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this handle created the repository's cache directory.
    pub(crate) fn fresh(&self) -> bool {
        self.fresh.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn path(&self, kind: Kind, id: &Id) -> PathBuf {
        self.dir.join(kind.dir()).join(id.to_string())
    }

    /// The bytes of object `id` of `kind`, if cached and they hash to `id`. A bad entry is
    /// removed.
    pub(crate) fn get(&self, kind: Kind, id: &Id) -> Option<Vec<u8>> {
        use std::io::Read as _;
        self.entry_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.path(kind, id);
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(path = %path.display(), error = %e, "cannot read a metadata cache entry");
                }
                return None;
            }
        };
        let len = f.metadata().map(|m| if m.is_file() { m.len() } else { u64::MAX }).unwrap_or(u64::MAX);
        let mut bytes = Vec::new();
        let read = if len > MAX_ENTRY {
            Err(std::io::Error::other(format!("{len} bytes, more than an entry may hold")))
        } else {
            // `take` bounds the read even if the file grows after the length was taken.
            f.take(MAX_ENTRY + 1).read_to_end(&mut bytes).map(|_| ())
        };
        match read {
            Ok(()) if bytes.len() as u64 <= MAX_ENTRY && Id::hash(&bytes) == *id => Some(bytes),
            Ok(()) => {
                tracing::debug!(path = %path.display(), "metadata cache entry does not match its name; removed");
                self.remove(&path);
                None
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "bad metadata cache entry; removed");
                self.remove(&path);
                None
            }
        }
    }

    /// Keeps `bytes` as object `id` of `kind` (bytes read from or written to the store,
    /// whose hash is `id`). Failures are logged and ignored.
    pub(crate) fn put(&self, kind: Kind, id: &Id, bytes: &[u8]) {
        let path = self.path(kind, id);
        if let Err(e) = write_atomic(&self.dir.join(kind.dir()), &path, bytes) {
            tracing::debug!(path = %path.display(), error = %e, "cannot write a metadata cache entry");
        }
    }

    /// Removes the entries of `kind` that `keep` refuses (names a complete store listing no
    /// longer has), and anything else in its directory that is not an entry.
    pub(crate) fn retain(&self, kind: Kind, keep: impl Fn(&Id) -> bool) {
        let dir = self.dir.join(kind.dir());
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let wanted = name.to_str().and_then(|n| n.parse::<Id>().ok()).is_some_and(|id| keep(&id));
            if !wanted {
                self.remove(&e.path());
            }
        }
    }

    /// How many per-object entries this handle has read (served or not): for tests that
    /// check a run opens no old object.
    pub(crate) fn entry_reads(&self) -> u64 {
        self.entry_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes a file (or a directory in its place) of this cache; failures are logged.
    pub(crate) fn remove(&self, path: &Path) {
        let gone = std::fs::remove_file(path).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            // A directory where an entry belongs.
            _ if path.is_dir() => std::fs::remove_dir_all(path),
            _ => Err(e),
        });
        if let Err(e) = gone {
            tracing::debug!(path = %path.display(), error = %e, "cannot remove a metadata cache entry");
        }
    }

    /// The markers of backups of this host that started and did not commit (interrupted,
    /// or running now).
    pub(crate) fn unfinished_writes(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.dir.join("writing")) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Records that a backup starts: the marker to remove when it commits. `None` if it
    /// cannot be recorded (then nobody may rely on the markers).
    pub(crate) fn begin_write(&self) -> Option<PathBuf> {
        let dir = self.dir.join("writing");
        let path = dir.join(hex::encode(crate::crypto::random::<16>()));
        match write_atomic(&dir, &path, std::process::id().to_string().as_bytes()) {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot record a backup start in the cache");
                None
            }
        }
    }

    /// Removes markers (of a backup that committed, and of those whose packs it recovered).
    pub(crate) fn end_writes(&self, markers: &[PathBuf]) {
        for m in markers {
            self.remove(m);
        }
        self.fresh.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The name of the lock-observation file in a repository's cache directory.
const LOCKS: &str = "locks";

/// The most observations the lock file holds (a pack each: ~120 bytes a line, so ≤ 64 MiB).
pub(crate) const MAX_LOCK_OBSERVATIONS: usize = 500_000;

/// What a structural `verify` or a backup observed of packs' locks (as the store reported
/// them): `(key, version) → until` (Unix seconds), **compliance-mode locks only**. See [`MetaCache::lock_observations`].
pub(crate) type LockObservations = std::collections::HashMap<(String, String), i64>;

impl MetaCache {
    /// The lock observations kept by structural verifies and backups of this host, if the file
    /// is whole and its MAC (`mac`: a hasher keyed from the repository key,
    /// [`crate::crypto::MasterKey::keyed_hasher`]) matches. A bad file — garbage, truncated,
    /// another repository's, edited — is removed and nothing is served: every lock is then
    /// read from the store. Never an error.
    ///
    /// Format (text, version 1): a first line `coffer lock observations v1`, then one line
    /// per observation `KEY VERSION UNTIL` (UNTIL in Unix seconds), then `mac HEX`: the
    /// keyed BLAKE3 of every byte before that line.
    pub(crate) fn lock_observations(&self, mac: blake3::Hasher) -> LockObservations {
        use std::io::Read as _;
        let path = self.dir.join(LOCKS);
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&path).and_then(|f| {
            let len = f.metadata()?.len();
            if len > MAX_ENTRY {
                return Err(std::io::Error::other(format!("{len} bytes, more than an entry may hold")));
            }
            f.take(MAX_ENTRY + 1).read_to_end(&mut bytes).map(|_| ())
        });
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LockObservations::new(),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "bad lock observations; removed");
                self.remove(&path);
                return LockObservations::new();
            }
        }
        match parse_locks(&bytes, mac) {
            Some(obs) => obs,
            None => {
                tracing::debug!(path = %path.display(), "lock observations do not authenticate; removed");
                self.remove(&path);
                LockObservations::new()
            }
        }
    }

    /// Replaces the lock observations with `obs` (at most [`MAX_LOCK_OBSERVATIONS`]; names
    /// or versions holding whitespace are left out). Failures are logged and ignored.
    pub(crate) fn keep_lock_observations(&self, mut mac: blake3::Hasher, obs: &LockObservations) {
        let mut text = String::from(LOCKS_HEADER);
        let clean = |s: &str| !s.is_empty() && !s.chars().any(char::is_whitespace);
        for ((key, version), until) in obs.iter().take(MAX_LOCK_OBSERVATIONS) {
            if clean(key) && clean(version) {
                text.push_str(&format!("{key} {version} {until}\n"));
            }
        }
        mac.update(text.as_bytes());
        text.push_str(&format!("mac {}\n", mac.finalize().to_hex()));
        let path = self.dir.join(LOCKS);
        if let Err(e) = write_atomic(&self.dir, &path, text.as_bytes()) {
            tracing::debug!(path = %path.display(), error = %e, "cannot write lock observations");
        }
    }
}

const LOCKS_HEADER: &str = "coffer lock observations v1\n";

/// The purpose the `locks` file's MAC key is derived under
/// ([`crate::crypto::MasterKey::keyed_hasher`]): the same for a `verify` and a backup, which
/// both write the file.
pub(crate) const LOCK_MAC_PURPOSE: &str = "verify lock observations v1";

impl MetaCache {
    /// Adds what a backup observed of the packs it stored (`new`: compliance-mode lock ends
    /// the store reported) to the observations kept, dropping those ended by `now` (Unix
    /// seconds). Read, merged and written whole: between two processes writing at once the
    /// last one wins, and the other's observations are lost, which costs only requests (the
    /// next `verify` reads those locks from the store). A kept file that does not
    /// authenticate is dropped and replaced. Failures are logged and ignored.
    pub(crate) fn add_lock_observations(&self, mac: &blake3::Hasher, new: LockObservations, now: i64) {
        if new.is_empty() {
            return;
        }
        let mut obs = self.lock_observations(mac.clone());
        obs.retain(|_, until| *until > now);
        for (k, until) in new {
            if until > now && (obs.len() < MAX_LOCK_OBSERVATIONS || obs.contains_key(&k)) {
                let slot = obs.entry(k).or_insert(until);
                // A compliance lock only grows: the later of two true observations holds.
                *slot = (*slot).max(until);
            }
        }
        self.keep_lock_observations(mac.clone(), &obs);
    }
}

/// Parses and authenticates a lock-observation file; `None` when anything is wrong.
fn parse_locks(bytes: &[u8], mut mac: blake3::Hasher) -> Option<LockObservations> {
    let text = std::str::from_utf8(bytes).ok()?;
    let body_end = text.strip_suffix('\n')?.rfind('\n')? + 1;
    let (body, last) = text.split_at(body_end);
    let tag = last.strip_prefix("mac ")?.strip_suffix('\n')?;
    mac.update(body.as_bytes());
    let want = blake3::Hash::from_hex(tag).ok()?;
    // `blake3::Hash` compares in constant time.
    if mac.finalize() != want {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != LOCKS_HEADER.trim_end() {
        return None;
    }
    let mut out = LockObservations::new();
    for line in lines {
        let mut f = line.split(' ');
        let (key, version, until) = (f.next()?, f.next()?, f.next()?);
        if f.next().is_some() || out.len() >= MAX_LOCK_OBSERVATIONS {
            return None;
        }
        out.insert((key.to_owned(), version.to_owned()), until.parse().ok()?);
    }
    Some(out)
}

/// Where this host keeps the key file it last opened the repository at `location` (under
/// `prefix`) with: `ROOT/v1/open/HASH`, HASH the BLAKE3 of location and prefix. Read before
/// the repository (and so its id) is known, so it is keyed by location.
#[must_use]
pub fn key_hint_path(root: &Path, location: &str, prefix: &str) -> PathBuf {
    let mut h = blake3::Hasher::new();
    h.update(location.as_bytes());
    h.update(&[0]);
    h.update(prefix.as_bytes());
    root.join(LAYOUT).join("open").join(h.finalize().to_hex().as_str())
}

const KEY_HINT_HEADER: &str = "coffer key hint v1";

/// The key file named in a key hint: its store key and its bytes, only if the bytes hash to
/// the id the name ends in (key files are content-addressed) and the name is under `keys/`.
/// Anything else — absent, garbage, another name — is `None`, never an error. Nothing in it
/// is trusted beyond that: the key it holds must still unwrap with the password and open
/// the repository's config (`Repository::open`).
pub(crate) fn read_key_hint(path: &Path, prefix: &str) -> Option<(String, Vec<u8>)> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(MAX_KEY_HINT + 1).read_to_end(&mut bytes).ok()?;
    let text = bytes.get(..bytes.len().min(4096))?;
    let first = text.iter().position(|&b| b == b'\n')?;
    let second = first + 1 + text[first + 1..].iter().position(|&b| b == b'\n')?;
    if &text[..first] != KEY_HINT_HEADER.as_bytes() || bytes.len() as u64 > MAX_KEY_HINT {
        return None;
    }
    let name = std::str::from_utf8(&text[first + 1..second]).ok()?;
    let id: Id = name.strip_prefix(prefix)?.strip_prefix("keys/")?.parse().ok()?;
    let file = bytes[second + 1..].to_vec();
    (Id::hash(&file) == id).then(|| (name.to_owned(), file))
}

/// Records the key file a repository was opened with ([`read_key_hint`]). Failures are
/// logged and ignored.
pub(crate) fn write_key_hint(path: &Path, name: &str, file: &[u8]) {
    let Some(dir) = path.parent() else { return };
    let mut bytes = format!("{KEY_HINT_HEADER}\n{name}\n").into_bytes();
    bytes.extend_from_slice(file);
    if let Err(e) = mkdir_0700(dir).and_then(|()| write_atomic(dir, path, &bytes)) {
        tracing::debug!(path = %path.display(), error = %e, "cannot record the key file opened with");
    }
}

/// The largest key hint read (a key file is a few hundred bytes).
const MAX_KEY_HINT: u64 = 64 << 10;

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is left as is.
pub(crate) fn mkdir_0700(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Writes `bytes` to `path` through a temporary file in `dir` and a rename: readers see the
/// whole file or none. Not synced: a torn entry after a crash fails its hash and is dropped.
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tmp-{}", hex::encode(crate::crypto::random::<8>())));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(root: &Path) -> MetaCache {
        MetaCache::open(root, &Id([7; 32])).unwrap()
    }

    #[test]
    fn an_entry_is_served_only_if_it_hashes_to_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path());
        assert!(c.fresh());
        assert!(!cache(tmp.path()).fresh(), "the second open finds the directory");
        let bytes = b"a snapshot object".to_vec();
        let id = Id::hash(&bytes);
        assert_eq!(c.get(Kind::Snapshot, &id), None);
        c.put(Kind::Snapshot, &id, &bytes);
        assert_eq!(c.get(Kind::Snapshot, &id), Some(bytes.clone()));
        assert_eq!(c.get(Kind::Index, &id), None, "kinds are apart");

        let path = c.path(Kind::Snapshot, &id);
        // A flipped byte, a truncation, another object's bytes: not served, and removed.
        for bad in [b"A snapshot object".to_vec(), bytes[..5].to_vec(), b"another object".to_vec(), Vec::new()] {
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(c.get(Kind::Snapshot, &id), None);
            assert!(!path.exists(), "a bad entry is removed");
        }
        // A directory in an entry's place.
        std::fs::create_dir(&path).unwrap();
        assert_eq!(c.get(Kind::Snapshot, &id), None);
        assert!(!path.exists());
        c.put(Kind::Snapshot, &id, &bytes);
        assert_eq!(c.get(Kind::Snapshot, &id), Some(bytes));
    }

    fn mac(k: u8) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&[k; 32])
    }

    #[test]
    fn history_lock_observations_are_served_only_when_they_authenticate() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path());
        assert!(c.lock_observations(mac(1)).is_empty(), "no file: nothing");
        let mut obs = LockObservations::new();
        obs.insert(("r/data/ab/abcd".into(), "v-1".into()), 2_000_000_000);
        obs.insert(("r/data/cd/cdef".into(), "v 2".into()), 2_000_000_000); // whitespace: left out
        c.keep_lock_observations(mac(1), &obs);
        let back = c.lock_observations(mac(1));
        assert_eq!(back.len(), 1);
        assert_eq!(back.get(&("r/data/ab/abcd".to_owned(), "v-1".to_owned())), Some(&2_000_000_000));

        let path = c.dir.join(LOCKS);
        let good = std::fs::read_to_string(&path).unwrap();
        // Another key's file (another repository, or a forger without the key).
        assert!(c.lock_observations(mac(2)).is_empty());
        assert!(!path.exists(), "a file that does not authenticate is removed");
        // An edited lock end, a truncation, garbage, an empty file, an extra line: refused.
        let edited = good.replace("2000000000", "2000000001");
        let extra = good.replacen("v1\n", "v1\nr/data/ef/ef01 v-3 2000000000\n", 1);
        for bad in [edited, good[..good.len() - 10].to_owned(), "garbage".to_owned(), String::new(), extra] {
            std::fs::write(&path, &bad).unwrap();
            assert!(c.lock_observations(mac(1)).is_empty(), "served: {bad:?}");
            assert!(!path.exists());
        }
        // A well-authenticated file with a malformed line is refused too (never a panic).
        for body in ["r/data/ab/abcd v-1\n", "r/data/ab/abcd v-1 soon\n", "a b 1 2\n", "coffer lock observations v2\n"]
        {
            let mut text = if body.starts_with("coffer") { body.to_owned() } else { format!("{LOCKS_HEADER}{body}") };
            let mut h = mac(1);
            h.update(text.as_bytes());
            text.push_str(&format!("mac {}\n", h.finalize().to_hex()));
            std::fs::write(&path, &text).unwrap();
            assert!(c.lock_observations(mac(1)).is_empty(), "served: {text:?}");
        }
        // A directory in the file's place.
        std::fs::create_dir(&path).unwrap();
        assert!(c.lock_observations(mac(1)).is_empty());
        c.keep_lock_observations(mac(1), &obs);
        assert_eq!(c.lock_observations(mac(1)).len(), 1, "repaired by the next write");
    }

    /// What a backup adds is merged with what is kept: ended observations are dropped, the
    /// later end of two stands, a file that does not authenticate is replaced, and the file
    /// never grows past its bound.
    #[test]
    fn observe_a_backup_merges_its_observations_into_the_kept_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path());
        let k = |n: &str| (format!("r/data/ab/{n}"), "v".to_owned());
        let obs = |items: &[(&str, i64)]| items.iter().map(|(n, u)| (k(n), *u)).collect::<LockObservations>();
        c.keep_lock_observations(mac(1), &obs(&[("kept", 500), ("ended", 90), ("grows", 300)]));
        c.add_lock_observations(&mac(1), obs(&[("new", 400), ("grows", 600), ("past", 50)]), 100);
        assert_eq!(c.lock_observations(mac(1)), obs(&[("kept", 500), ("grows", 600), ("new", 400)]));
        // Nothing new: the file is not touched (not even rewritten).
        c.add_lock_observations(&mac(1), LockObservations::new(), 1_000);
        assert_eq!(c.lock_observations(mac(1)).len(), 3);
        // Another key's file (forged, or another repository's) is dropped, not merged.
        c.add_lock_observations(&mac(2), obs(&[("other", 400)]), 100);
        assert_eq!(c.lock_observations(mac(2)), obs(&[("other", 400)]));
        assert!(c.lock_observations(mac(1)).is_empty());
        // Bounded: a full file takes no new name (it still takes a later end of a kept one).
        let full: LockObservations =
            (0..MAX_LOCK_OBSERVATIONS).map(|i| ((format!("r/data/{i}"), "v".to_owned()), 500)).collect();
        c.keep_lock_observations(mac(1), &full);
        let mut more = obs(&[("one-too-many", 500)]);
        more.insert(("r/data/0".to_owned(), "v".to_owned()), 900);
        c.add_lock_observations(&mac(1), more, 100);
        let back = c.lock_observations(mac(1));
        assert_eq!(back.len(), MAX_LOCK_OBSERVATIONS);
        assert_eq!(back.get(&("r/data/0".to_owned(), "v".to_owned())), Some(&900));
        assert!(!back.contains_key(&k("one-too-many")));
    }

    #[test]
    fn an_oversized_entry_is_removed_unread() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path());
        let id = Id([1; 32]);
        let path = c.path(Kind::Index, &id);
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_ENTRY + 1).unwrap();
        assert_eq!(c.get(Kind::Index, &id), None);
        assert!(!path.exists());
    }

    #[test]
    fn retain_removes_unlisted_entries_and_strays() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path());
        let ids: Vec<Id> = (0..3u8).map(|i| Id::hash(&[i])).collect();
        for (i, id) in ids.iter().enumerate() {
            c.put(Kind::Index, id, &[u8::try_from(i).unwrap()]);
        }
        std::fs::write(c.dir().join("index").join("not-an-id"), b"x").unwrap();
        c.retain(Kind::Index, |id| *id != ids[1]);
        let mut left: Vec<String> = std::fs::read_dir(c.dir().join("index"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![ids[0].to_string(), ids[2].to_string()];
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn directories_are_private_and_tagged() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cache");
        let c = cache(&root);
        assert!(root.join("CACHEDIR.TAG").is_file());
        #[cfg(unix)]
        for d in [root.clone(), root.join(LAYOUT), c.dir().to_path_buf(), c.dir().join("snapshots")] {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn an_unusable_root_means_no_cache_and_markers_track_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(MetaCache::open(&file, &Id([0; 32])).is_none(), "a file where the root belongs");
        let c = cache(tmp.path());
        assert!(c.unfinished_writes().is_empty());
        let m = c.begin_write().unwrap();
        assert_eq!(c.unfinished_writes(), vec![m.clone()]);
        c.end_writes(&[m]);
        assert!(c.unfinished_writes().is_empty());
    }

    #[test]
    fn choices_and_the_default_root() {
        let p = PathBuf::from("/c");
        assert_eq!(CacheChoice::Off.root(true), None);
        assert_eq!(CacheChoice::Remote(p.clone()).root(false), None);
        assert_eq!(CacheChoice::Remote(p.clone()).root(true), Some(p.as_path()));
        assert_eq!(CacheChoice::Always(p.clone()).root(false), Some(p.as_path()));
    }
}
