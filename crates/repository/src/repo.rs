//! Opening, creating and writing a repository on any `ObjectStore`.
//!
//! Storage keys (all under the repository's prefix):
//!
//! ```text
//! config                 enveloped Config
//! keys/ID                KeyFile (plaintext JSON; ID = BLAKE3 of the bytes)
//! data/XX/ID             packs (ID = BLAKE3 of the bytes, XX its first two hex digits)
//! index/ID               enveloped IndexFile
//! snapshots/ID           enveloped Snapshot
//! ```
//!
//! Invariants guarded here (see `docs/design.md`, "Read and write ordering"):
//! - Writers only add objects and extend locks; nothing here deletes.
//! - Every object is written with a retention covering the snapshot that needs it; a
//!   reused pack whose lock ends too early is extended *before* the snapshot is written,
//!   and if it has already been pruned its blobs are uploaded again.
//! - The snapshot is written last, after every object it references is durable.

use crate::crypto::{KdfParams, KeyFile, MasterKey};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{Index, IndexFile, IndexPack};
use crate::pack::{self, BlobKind, ObjectKind};
use crate::pipeline::{Pipeline, Target};
use crate::snapshot::{Snapshot, Summary};
use crate::tree::Tree;
use crate::versions;
use coffer_store::{Clock, ErrorKind, ObjectStore, RangeRead, Retention, RetentionMode, StoreError, VersionId};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Content-defined chunking parameters (FastCDC 2020).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Minimum chunk size.
    pub min: u32,
    /// Average chunk size.
    pub avg: u32,
    /// Maximum chunk size.
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB, as restic: a 1 MiB average keeps the index at about a
    /// million entries per TiB (tens of MB of memory) and per-chunk overhead (40 bytes of
    /// AEAD, an index entry, a request's share) under 0.01 %, while an insertion still
    /// costs only the chunk or two around it.
    fn default() -> Self {
        Self { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 }
    }
}

/// Retention policy of a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RetentionPolicy {
    /// Lock mode for every object (compliance unless the repository was made otherwise).
    pub mode: RetentionMode,
    /// Default snapshot lifetime when a backup names none.
    #[serde(with = "secs")]
    pub default_retain: Duration,
    /// Ceiling: no snapshot may be kept longer (the policy's "90 days after deletion").
    #[serde(with = "secs")]
    pub max_retain: Duration,
    /// Locks run at least this much past a snapshot's expiry (then to the next UTC
    /// midnight), so prune never races a reader.
    #[serde(with = "secs")]
    pub margin: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            mode: RetentionMode::Compliance,
            default_retain: Duration::from_secs(30 * 86_400),
            max_retain: Duration::from_secs(88 * 86_400),
            margin: Duration::from_secs(12 * 3600),
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// The repository configuration (the `config` object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Format version.
    pub version: u8,
    /// Random repository id.
    pub id: Id,
    /// Creation time.
    pub created: Timestamp,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Retention policy.
    pub retention: RetentionPolicy,
}

/// Options for `init`.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Retention policy.
    pub retention: RetentionPolicy,
    /// Key derivation cost.
    pub kdf: KdfParams,
    /// Host name recorded with the first key.
    pub host: String,
}

/// An open repository.
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    location: String,
    prefix: String,
    key: MasterKey,
    config: Config,
    clock: Clock,
    /// The point in time the repository is seen as of (`--as-of`): only versions the store
    /// created at or before it exist for this handle's reads. `None`: now.
    as_of: Option<Timestamp>,
    /// Snapshots already read, by id. A snapshot object never changes (its key is the hash
    /// of its bytes, checked on read), so one read per process is enough: a backup looks at
    /// the snapshot list three times (expiry, parent, hash chain), which on S3 was three
    /// `GetObject`s per snapshot in the repository, on every backup. Listings are not
    /// cached: a snapshot removed or added since is seen as such.
    ///
    /// Bounded for long-running processes: every complete listing
    /// ([`Repository::all_snapshots_and_damage`], under every snapshot listing) drops the
    /// entries of ids it did not find (pruned, or absent as of `--as-of`), so the cache holds
    /// at most the snapshots of the latest listing plus those read by id since, and a pruned
    /// snapshot is not served from it once a listing has seen it gone.
    snapshot_cache: std::sync::Mutex<HashMap<Id, Snapshot>>,
    /// Content-addressed names whose latest version is not the authentic one (a rogue
    /// writer's garbage on top), with the version that is: found once, then read directly,
    /// so a tampered pack costs one search, not one per blob read from it. Holds only
    /// tampered names.
    pins: std::sync::Mutex<HashMap<String, VersionId>>,
    /// When the store created each snapshot object (its first version), as of the last
    /// complete listing: the one time of a snapshot a writer cannot claim.
    stored: std::sync::Mutex<HashMap<Id, Timestamp>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The stored config object's bytes, its format version checked (before any key is tried,
/// so a newer repository is refused clearly). The config is not content-addressed and is
/// written once, at `init`: its **first** version (at or before `as_of`) is the one, so a
/// later version put by a rogue writer, garbage or well-sealed, changes nothing.
fn read_config(store: &dyn ObjectStore, location: &str, prefix: &str, as_of: Option<Timestamp>) -> Result<Vec<u8>> {
    let key = format!("{prefix}config");
    let versions = versions::versions_of(store, &key, as_of)?;
    let Some(first) = versions.objects.first() else {
        return Err(RepoError::NoRepository { location: location.into() });
    };
    let bytes = get_listed(store, &key, first)
        .map_err(RepoError::store(format!("cannot read {location}/config (version {})", first.version)))?
        .data;
    pack::envelope_version(&bytes, &format!("{location}/config"))?;
    Ok(bytes)
}

impl Repository {
    /// Creates a repository in `store` under `prefix`, protected by `password`.
    ///
    /// # Errors
    /// `AlreadyExists`, `Invalid` (a policy whose floor exceeds its ceiling), store errors.
    pub fn init(
        store: Arc<dyn ObjectStore>,
        location: &str,
        prefix: &str,
        password: &[u8],
        opts: &InitOptions,
        clock: Clock,
    ) -> Result<Self> {
        let p = opts.retention;
        if p.default_retain > p.max_retain {
            return Err(RepoError::Invalid(format!(
                "default retention ({}) exceeds the maximum retention ({})",
                humanize(p.default_retain),
                humanize(p.max_retain)
            )));
        }
        // A config hidden behind a delete marker is still a repository.
        if !versions::versions_of(store.as_ref(), &format!("{prefix}config"), None)?.objects.is_empty() {
            return Err(RepoError::AlreadyExists { location: location.into() });
        }
        let now = clock.now();
        let config = Config {
            version: pack::FORMAT_VERSION,
            id: Id(rand32()),
            created: now,
            chunker: ChunkerParams::default(),
            pack_size: 16 * 1024 * 1024,
            retention: p,
        };
        let repo = Self::assemble(store, location, prefix, MasterKey::generate(), config, clock, None);
        // Config and keys live as long as the longest snapshot; every backup extends them.
        let until = repo.lock_until(now + to_signed(p.max_retain));
        repo.add_key_until(password, opts.kdf, &opts.host, "initial key", until)?;
        let bytes = pack::seal_object(&repo.key, ObjectKind::Config, &repo.config);
        repo.put(&format!("{prefix}config"), &bytes, until)?;
        Ok(repo)
    }

    /// Opens the repository in `store` under `prefix` with `password`.
    ///
    /// # Errors
    /// `NoRepository`, `NewerFormat`, `WrongPassword`, `NoUsableKey`, `Corrupt`, store errors.
    pub fn open(
        store: Arc<dyn ObjectStore>,
        location: &str,
        prefix: &str,
        password: &[u8],
        clock: Clock,
    ) -> Result<Self> {
        Self::open_as_of(store, location, prefix, password, clock, None)
    }

    /// Opens the repository as it was at `as_of` (see [`Repository::as_of`]): the config,
    /// the key files and everything listed later are those the store held then. `None`
    /// opens it as it is now.
    ///
    /// Key files are tried in order; the master key is the first one a key file opens with
    /// the password **and** that authenticates the config: a key file forged by someone
    /// who knows the password, wrapping another master key, is passed over.
    ///
    /// # Errors
    /// As [`Repository::open`].
    pub fn open_as_of(
        store: Arc<dyn ObjectStore>,
        location: &str,
        prefix: &str,
        password: &[u8],
        clock: Clock,
        as_of: Option<Timestamp>,
    ) -> Result<Self> {
        let config_bytes = read_config(store.as_ref(), location, prefix, as_of)?;
        let config_name = format!("{location}/config");
        let (mut files, mut unreadable, mut opened_other) = (0usize, Vec::new(), None);
        let mut found = None;
        versions::for_each_name(store.as_ref(), &format!("{prefix}keys/"), as_of, |v| {
            if found.is_some() {
                return Ok(());
            }
            files += 1;
            let file = match read_key_file(store.as_ref(), &v) {
                Ok(f) => f,
                Err(e) if is_damage(&e) || is_gone(&e) => {
                    unreadable.push(coffer_store::display_chain(&e));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if let Some(key) = file.unwrap(password, &v.key)? {
                match pack::open_object::<Config>(&key, ObjectKind::Config, &config_bytes, &config_name) {
                    Ok(config) => found = Some((key, config)),
                    Err(_) => opened_other = Some(v.key.clone()),
                }
            }
            Ok(())
        })?;
        if let Some((key, config)) = found {
            return Ok(Self::assemble(store, location, prefix, key, config, clock, as_of));
        }
        if let Some(k) = opened_other {
            return Err(RepoError::corrupt(
                config_name,
                format!(
                    "does not open with the master key of {k}, the only key the password opens (a forged key file, or a damaged config)"
                ),
            ));
        }
        if files > unreadable.len() {
            return Err(RepoError::WrongPassword { location: location.into() });
        }
        Err(RepoError::NoUsableKey {
            location: location.into(),
            detail: match unreadable.first() {
                None => "it has no key files".into(),
                Some(first) => format!("none of its {files} key files can be read; the first: {first}"),
            },
        })
    }

    /// Opens the repository with its already unwrapped master key (as
    /// [`Repository::key`] gives it), skipping the password's key derivation: for
    /// short-lived processes that run once per WAL file (`restore_command`). The key must
    /// authenticate the repository's config, so a key of another repository is refused.
    ///
    /// # Errors
    /// `NoRepository`; `Corrupt` naming the config when the key does not open it; store
    /// errors.
    pub fn open_with_key(
        store: Arc<dyn ObjectStore>,
        location: &str,
        prefix: &str,
        key: MasterKey,
        clock: Clock,
    ) -> Result<Self> {
        Self::open_with_key_as_of(store, location, prefix, key, clock, None)
    }

    /// [`Repository::open_with_key`] as of a point in time (see [`Repository::open_as_of`]).
    ///
    /// # Errors
    /// As [`Repository::open_with_key`].
    pub fn open_with_key_as_of(
        store: Arc<dyn ObjectStore>,
        location: &str,
        prefix: &str,
        key: MasterKey,
        clock: Clock,
        as_of: Option<Timestamp>,
    ) -> Result<Self> {
        let config_bytes = read_config(store.as_ref(), location, prefix, as_of)?;
        let config: Config = pack::open_object(&key, ObjectKind::Config, &config_bytes, &format!("{location}/config"))?;
        Ok(Self::assemble(store, location, prefix, key, config, clock, as_of))
    }

    /// The one place a repository value is built (a new one by `init`, an opened one by
    /// `with_config`).
    fn assemble(
        store: Arc<dyn ObjectStore>,
        location: &str,
        prefix: &str,
        key: MasterKey,
        config: Config,
        clock: Clock,
        as_of: Option<Timestamp>,
    ) -> Self {
        Self {
            store,
            location: location.into(),
            prefix: prefix.into(),
            key,
            config,
            clock,
            as_of,
            snapshot_cache: std::sync::Mutex::default(),
            pins: std::sync::Mutex::default(),
            stored: std::sync::Mutex::default(),
        }
    }

    /// Adds another password.
    ///
    /// # Errors
    /// Store errors.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams, host: &str, label: &str) -> Result<Id> {
        let until = self.lock_until(self.clock.now() + to_signed(self.config.retention.max_retain));
        self.add_key_until(password, kdf, host, label, until)
    }

    fn add_key_until(&self, password: &[u8], kdf: KdfParams, host: &str, label: &str, until: Timestamp) -> Result<Id> {
        let file = KeyFile::wrap(&self.key, password, kdf, self.clock.now(), host, label)?;
        let bytes = serde_json::to_vec_pretty(&file).expect("key file serialises");
        let id = Id::hash(&bytes);
        self.put(&format!("{}keys/{id}", self.prefix), &bytes, until)?;
        Ok(id)
    }

    /// Every key file: (storage key, created, host, label).
    ///
    /// # Errors
    /// Store errors, `Corrupt`.
    pub fn keys(&self) -> Result<Vec<(String, KeyFile)>> {
        let mut out = Vec::new();
        versions::for_each_name(self.store.as_ref(), &format!("{}keys/", self.prefix), self.as_of, |v| {
            out.push((v.key.clone(), read_key_file(self.store.as_ref(), &v)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the repository is, for messages.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The store (as the principal it was opened with).
    #[must_use]
    pub fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    /// The master key.
    #[must_use]
    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// The clock.
    #[must_use]
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The point in time this handle sees the repository as of, if not now. Everything it
    /// lists and reads is what the store held then, by the store's own version creation
    /// times: names, versions and key files created later — a forged snapshot included,
    /// however well sealed — do not exist for it. Such a handle cannot write.
    #[must_use]
    pub fn as_of(&self) -> Option<Timestamp> {
        self.as_of
    }

    /// The store key of a pack.
    #[must_use]
    pub fn pack_key(&self, id: &Id) -> String {
        self.pack_name(id).to_string()
    }

    /// [`Repository::pack_key`], formatted only when shown: for error contexts on paths
    /// taken once per blob.
    fn pack_name<'a>(&'a self, id: &'a Id) -> PackKey<'a> {
        PackKey { prefix: &self.prefix, id }
    }

    /// The store key of a snapshot.
    #[must_use]
    pub fn snapshot_key(&self, id: &Id) -> String {
        format!("{}snapshots/{id}", self.prefix)
    }

    /// The prefix under which the repository lives.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lock date for a snapshot expiring at `expires`: expiry plus the margin, rounded
    /// up to the next UTC midnight. The rounding makes every backup of a day ask for the
    /// same lock date, so a pack reused all day is extended once, not by every backup.
    #[must_use]
    pub fn lock_until(&self, expires: Timestamp) -> Timestamp {
        let t = expires + to_signed(self.config.retention.margin);
        let day = 86_400;
        let secs = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
        Timestamp::from_second((secs + day - 1).div_euclid(day) * day).unwrap_or(t)
    }

    fn put(&self, key: &str, bytes: &[u8], until: Timestamp) -> Result<VersionId> {
        crate::put::put_once(self.store.as_ref(), key, bytes, Retention { mode: self.config.retention.mode, until })
    }

    /// Reads and checks an object whose name is the hash of its bytes. Content-addressed
    /// objects are written once; if the latest version does not match its name (a later
    /// put under the same key, by mistake or malice) or is a delete marker, a version that
    /// does is found among the others — nothing is overwritten, so it is still there. Any
    /// matching version will do: they are equal. (With a point in time this is still right:
    /// a name is only reached through listings and indexes of that time.)
    pub(crate) fn get_hashed(&self, key: &str, id: &Id) -> Result<Vec<u8>> {
        let pinned = self.pin(key);
        let first_err = match self.store.get(key, pinned.as_ref()) {
            Ok(o) if id.names(&o) => return Ok(o.data),
            Ok(o) => (Some(o.meta.version), RepoError::corrupt(key, "content does not match its name")),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) => {
                (None, RepoError::store(format!("cannot read {key}"))(e))
            }
            Err(e) => return Err(RepoError::store(format!("cannot read {key}"))(e)),
        };
        let versions = versions::versions_of(self.store.as_ref(), key, self.as_of)?;
        if let Some((data, version)) = hashed_version(self.store.as_ref(), &versions, id, first_err.0.as_ref())? {
            self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.to_owned(), version);
            return Ok(data);
        }
        Err(first_err.1)
    }

    /// The authentic version of a tampered content-addressed name, once found.
    fn pin(&self, key: &str) -> Option<VersionId> {
        self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned()
    }

    /// Loads every index object into one [`Index`].
    ///
    /// # Errors
    /// Store errors, `Corrupt`.
    pub fn load_index(&self) -> Result<Index> {
        let mut index = Index::default();
        self.for_each_name(&format!("{}index/", self.prefix), |k| {
            let id: Id =
                k.rsplit('/').next().unwrap_or("").parse().map_err(|e: String| RepoError::corrupt(k.clone(), e))?;
            let bytes = match self.get_hashed(&k, &id) {
                Ok(b) => b,
                // Pruned between listing and reading: its lock had ended, so what it stated
                // may be gone too, which writers and readers already allow for.
                Err(e) if is_gone(&e) => return Ok(()),
                // A damaged index object must not stop every backup until its lock ends:
                // it is recorded, backups store its data again, reads of it name it.
                Err(e) if is_damage(&e) => {
                    index.add_damaged(k, coffer_store::display_chain(&e));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            match pack::open_object::<IndexFile>(&self.key, ObjectKind::Index, &bytes, &k) {
                Ok(file) => {
                    for p in &file.packs {
                        index.add_pack(p);
                    }
                }
                Err(e) if is_damage(&e) => index.add_damaged(k, coffer_store::display_chain(&e)),
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        Ok(index)
    }

    /// Every snapshot object (expired ones included), oldest first. Damaged ones are left
    /// out (see [`Repository::all_snapshots_and_damage`]).
    ///
    /// # Errors
    /// Store errors.
    pub fn all_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        Ok(self.all_snapshots_and_damage()?.0)
    }

    /// Every readable snapshot object (expired ones included), oldest first, and the key and
    /// error of each one that cannot be read. One damaged snapshot object must not make the
    /// others unreachable or stop new backups (it is locked, so it stays until it expires);
    /// `verify` reports it. One removed between listing and reading (pruned: it had
    /// expired) is simply gone: prune never fails a backup.
    ///
    /// # Errors
    /// Store errors other than damage.
    pub fn all_snapshots_and_damage(&self) -> Result<(Snapshots, Vec<Damaged>)> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        let mut listed: HashMap<Id, Timestamp> = HashMap::new();
        versions::for_each_name(self.store.as_ref(), &format!("{}snapshots/", self.prefix), self.as_of, |v| {
            let k = v.key;
            let id: Id = match k.rsplit('/').next().unwrap_or("").parse() {
                Ok(id) => id,
                Err(e) => {
                    damaged.push((k.clone(), RepoError::corrupt(k, e)));
                    return Ok(());
                }
            };
            if let Some(first) = v.objects.first() {
                listed.insert(id, first.created);
            }
            match self.read_snapshot(&id) {
                Ok(s) => out.push((id, s)),
                Err(e) if is_gone(&e) => {}
                Err(e) if is_damaged(&e) => damaged.push((k, e)),
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        // The listing is complete: forget snapshots it no longer has (see `snapshot_cache`).
        self.snapshot_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| listed.contains_key(id));
        *self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = listed;
        out.sort_by_key(|(id, s)| (s.time, *id));
        Ok((out, damaged))
    }

    /// When the store created snapshot `id`'s object, as of the last listing of snapshots
    /// ([`Repository::all_snapshots_and_damage`] and what calls it). A snapshot's own `time`
    /// is what its writer claims; this one the writer cannot choose, so it is what to pick
    /// an `--as-of` time by, and what `verify` compares the claim with.
    #[must_use]
    pub fn stored_at(&self, id: &Id) -> Option<Timestamp> {
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).copied()
    }

    /// Snapshots that have not expired, oldest first.
    ///
    /// # Errors
    /// Store errors, `Corrupt`.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let now = self.clock.now();
        Ok(self.all_snapshots()?.into_iter().filter(|(_, s)| s.expires > now).collect())
    }

    /// Reads one snapshot, checking it against its id.
    ///
    /// # Errors
    /// Store errors, `Corrupt`.
    pub fn read_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let cache = || self.snapshot_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = cache().get(id) {
            return Ok(s.clone());
        }
        let key = self.snapshot_key(id);
        let bytes = self.get_hashed(&key, id)?;
        let snap: Snapshot = pack::open_object(&self.key, ObjectKind::Snapshot, &bytes, &key)?;
        cache().insert(*id, snap.clone());
        Ok(snap)
    }

    /// How many snapshots the cache holds (bounded by the latest listing: see
    /// [`Repository::all_snapshots_and_damage`]). For tests and monitoring.
    #[must_use]
    pub fn cached_snapshots(&self) -> usize {
        self.snapshot_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Finds a live snapshot by id prefix (at least 4 hex digits) or `latest` (the newest
    /// readable one).
    ///
    /// # Errors
    /// `Invalid` when none or several match; the damage when the id names a snapshot
    /// object that cannot be read.
    pub fn find_snapshot(&self, name: &str) -> Result<(Id, Snapshot)> {
        let (all, damaged) = self.all_snapshots_and_damage()?;
        let now = self.clock.now();
        let snaps: Vec<_> = all.into_iter().filter(|(_, s)| s.expires > now).collect();
        if name == "latest" {
            return snaps
                .into_iter()
                .next_back()
                .ok_or_else(|| RepoError::Invalid(format!("{} has no snapshots", self.location)));
        }
        if name.len() < 4 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RepoError::Invalid(format!(
                "{name:?} is not a snapshot id (give at least 4 hex digits, or latest)"
            )));
        }
        let mut m = snaps.into_iter().filter(|(id, _)| id.to_string().starts_with(&name.to_ascii_lowercase()));
        match (m.next(), m.next()) {
            (Some(s), None) => Ok(s),
            (None, _) => {
                // Asked for by id, a damaged snapshot is an integrity error naming it.
                let lower = name.to_ascii_lowercase();
                match damaged.into_iter().find(|(k, _)| k.rsplit('/').next().is_some_and(|h| h.starts_with(&lower))) {
                    Some((_, e)) => Err(e),
                    None => Err(RepoError::Invalid(format!("no snapshot {name} in {}", self.location))),
                }
            }
            (Some(_), Some(_)) => Err(RepoError::Invalid(format!("snapshot id {name} is ambiguous; give more digits"))),
        }
    }

    /// Starts writing blobs for a snapshot that expires at `expires`.
    ///
    /// # Errors
    /// `Invalid` when `expires` is past the repository's ceiling; store errors.
    pub fn writer(&self, expires: Timestamp) -> Result<BlobWriter<'_>> {
        self.writable()?;
        let now = self.clock.now();
        let ceiling = now + to_signed(self.config.retention.max_retain);
        if expires > ceiling {
            return Err(RepoError::Invalid(format!(
                "a snapshot kept until {expires} would outlive the repository's maximum retention of {} (until {ceiling})",
                humanize(self.config.retention.max_retain)
            )));
        }
        if expires <= now {
            return Err(RepoError::Invalid(format!("snapshot expiry {expires} is not in the future")));
        }
        let until = self.lock_until(expires);
        let target = Target {
            store: self.store.clone(),
            key: self.key.clone(),
            prefix: self.prefix.clone(),
            mode: self.config.retention.mode,
            until,
            pack_size: self.config.pack_size as usize,
            checkpoint_packs: INDEX_CHECKPOINT_PACKS,
        };
        let mut index = self.load_index()?;
        let recovered = self.recover_unindexed(&mut index)?;
        Ok(BlobWriter {
            repo: self,
            index,
            recovered,
            until: self.lock_until(expires),
            target: target.clone(),
            pipeline: Some(Pipeline::start(target)),
            pending: HashSet::new(),
            extended: HashSet::new(),
            deferred: HashMap::new(),
            summary: Summary::default(),
            cache: PackCache::default(),
        })
    }

    /// Finds packs stored but stated in no index object — left by a backup interrupted
    /// between two index checkpoints, or being written by one running now — reads their
    /// self-describing headers and adds them to `index`, so their blobs are reused instead of
    /// uploaded again. Returns them, to be stated in this backup's index.
    ///
    /// Costs one key listing of `data/` (no lock state); packs are read only when unindexed.
    /// A pack that cannot be read or decoded is left alone (`verify` reports it).
    ///
    /// # Errors
    /// Store errors listing `data/`.
    pub fn recover_unindexed(&self, index: &mut Index) -> Result<Vec<IndexPack>> {
        let mut keys = Vec::new();
        self.for_each_name(&format!("{}data/", self.prefix), |k| {
            keys.push(k);
            Ok(())
        })?;
        let mut recovered = Vec::new();
        for k in keys {
            let Some(id) = k.rsplit('/').next().and_then(|h| h.parse::<Id>().ok()) else { continue };
            if index.pack_by_id(&id).is_some() {
                continue;
            }
            let Ok(data) = self.get_hashed(&k, &id) else { continue };
            let Ok(blobs) = pack::read_pack_header(&self.key, &data, &k) else { continue };
            // The lock it carries, as the store states it: what reuse will extend if short.
            let Ok(Some(retain_until)) = self.locked_until(&k) else { continue };
            let p = IndexPack { id, size: data.len() as u64, retain_until, blobs };
            index.add_pack(&p);
            recovered.push(p);
        }
        Ok(recovered)
    }

    /// Calls `f` with every name under `prefix` this handle sees (see [`versions`]): delete
    /// markers hide nothing, and with a point in time only names created by then exist.
    pub(crate) fn for_each_name(&self, prefix: &str, mut f: impl FnMut(String) -> Result<()>) -> Result<()> {
        versions::for_each_name(self.store.as_ref(), prefix, self.as_of, |v| f(v.key))
    }

    /// Refuses to write through a handle that sees the past.
    pub(crate) fn writable(&self) -> Result<()> {
        match self.as_of {
            Some(t) => Err(RepoError::Invalid(format!(
                "{} is opened as of {t}, which is read-only; drop --as-of to write",
                self.location
            ))),
            None => Ok(()),
        }
    }

    /// The earliest lock end among the object versions of `key`: what a reuse must extend
    /// if short. `None` when it has none (or one has no lock).
    fn locked_until(&self, key: &str) -> Result<Option<Timestamp>> {
        let mut least: Option<Option<Timestamp>> = None;
        for v in self.object_versions(key)? {
            let until = v.retention.map(|r| r.until);
            least = Some(match least {
                None => until,
                Some(l) => l.min(until),
            });
        }
        Ok(least.flatten())
    }

    /// The object versions (with lock state) of exactly `key`.
    pub(crate) fn object_versions(&self, key: &str) -> Result<Vec<coffer_store::ObjectVersion>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .store
                .list_versions(key, token.as_deref(), 1000)
                .map_err(RepoError::store(format!("cannot read the locks of {key}")))?;
            let past = page.items.iter().any(|v| v.key != key);
            out.extend(page.items.into_iter().filter(|v| v.key == key && !v.delete_marker));
            match page.next {
                Some(t) if !past => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Extends the lock of **every** object version of `key` to at least `until`. A reader
    /// may need any of them (the authentic one is not necessarily the latest: a rogue
    /// writer can add versions), and extending a garbage version too costs only its
    /// storage. Returns the earliest lock end before extending and how many versions were
    /// extended, or `None` when the key has no object version (pruned: upload again).
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn extend_versions(&self, key: &str, until: Timestamp) -> Result<Option<(Timestamp, u64)>> {
        self.writable()?;
        let versions = self.object_versions(key)?;
        if versions.is_empty() {
            return Ok(None);
        }
        let mut current = Timestamp::MAX;
        let (mut extended, mut alive) = (0, 0);
        for v in versions {
            let had = v.retention.map_or(Timestamp::MIN, |r| r.until);
            if had >= until {
                alive += 1;
                current = current.min(had);
                continue;
            }
            let want = Retention { mode: self.config.retention.mode, until };
            match self.store.put_retention(key, &v.version, Some(want), false) {
                Ok(()) => {
                    extended += 1;
                    alive += 1;
                    current = current.min(had);
                }
                // Pruned between listing and extension: that version is gone.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(RepoError::store(format!("cannot extend the lock of {key}"))(e)),
            }
        }
        if alive == 0 {
            return Ok(None);
        }
        Ok(Some((current, extended)))
    }

    /// Extends the locks of the config and every key file (all their versions) to at least
    /// `until`, so the repository stays readable as long as what it holds.
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn extend_meta_to(&self, until: Timestamp) -> Result<()> {
        let mut keys = vec![format!("{}config", self.prefix)];
        // Without a point in time (writers have none): key files hidden by markers count too.
        self.for_each_name(&format!("{}keys/", self.prefix), |k| {
            keys.push(k);
            Ok(())
        })?;
        for key in keys {
            self.extend_versions(&key, until)?;
        }
        Ok(())
    }

    /// A reader of blobs with a small cache of whole packs.
    #[must_use]
    pub fn reader<'a>(&'a self, index: &'a Index) -> BlobReader<'a> {
        BlobReader { repo: self, index, cache: PackCache::default() }
    }
}

/// Writes blobs into packs, deduplicating against the index and extending the locks of
/// packs it reuses. Call [`BlobWriter::finish`] and then [`BlobWriter::commit_snapshot`].
pub struct BlobWriter<'r> {
    repo: &'r Repository,
    index: Index,
    /// Unindexed packs found at the start (see [`Repository::recover_unindexed`]), stated
    /// in this backup's index.
    recovered: Vec<IndexPack>,
    until: Timestamp,
    target: Target,
    pipeline: Option<Pipeline>,
    pending: HashSet<Id>,
    extended: HashSet<usize>,
    deferred: HashMap<usize, HashSet<Id>>,
    summary: Summary,
    cache: PackCache,
}

impl BlobWriter<'_> {
    /// The lock date of everything this snapshot needs.
    #[must_use]
    pub fn retain_until(&self) -> Timestamp {
        self.until
    }

    /// The repository's chunker parameters.
    #[must_use]
    pub fn repo_chunker(&self) -> ChunkerParams {
        self.repo.config.chunker
    }

    /// Counts so far.
    pub fn summary_mut(&mut self) -> &mut Summary {
        &mut self.summary
    }

    /// The index as loaded (plus what this writer added).
    #[must_use]
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Makes sure the blob with content `data` is stored and locked long enough; returns its id.
    ///
    /// # Errors
    /// Store errors.
    pub fn add(&mut self, kind: BlobKind, data: &[u8]) -> Result<Id> {
        let id = self.repo.key.blob_id(data);
        if self.pending.contains(&id) || self.ensure_locked(&id)? {
            return Ok(id);
        }
        self.pipeline().submit(kind, id, data.to_vec())?;
        self.pending.insert(id);
        self.summary.blobs_added += 1;
        self.summary.bytes_added += data.len() as u64;
        Ok(id)
    }

    /// Reads a tree stored before this backup (the parent snapshot's).
    ///
    /// # Errors
    /// `Corrupt`, store errors.
    pub fn read_tree(&mut self, id: &Id) -> Result<Tree> {
        let bytes = self.cache.read(self.repo, &self.index, id)?;
        Tree::from_bytes(&bytes, id)
    }

    /// Reuses an existing blob (an unchanged file's chunk, an unchanged tree): `true` if it
    /// is stored and now locked long enough, `false` if the caller must add it again.
    ///
    /// # Errors
    /// Store errors.
    pub fn reuse(&mut self, id: &Id) -> Result<bool> {
        Ok(self.pending.contains(id) || self.ensure_locked(id)?)
    }

    /// Whether `id` is already stored in a pack locked until this snapshot's lock date,
    /// extending the pack's lock if needed. `false` means the blob must be uploaded (it is
    /// new, or its pack has been pruned).
    fn ensure_locked(&mut self, id: &Id) -> Result<bool> {
        let Some(r) = self.index.get(id) else { return Ok(false) };
        let pack = self.index.pack(r.pack);
        if pack.retain_until >= self.until || self.extended.contains(&r.pack) {
            return Ok(true);
        }
        // Still locked for a good while: nothing can remove it before this backup ends, so
        // the choice between extending the whole pack and copying the blobs this snapshot
        // needs waits until `finish`, when it is known how much of the pack that is.
        if pack.retain_until > self.repo.clock.now() + DEFER_WINDOW {
            self.deferred.entry(r.pack).or_default().insert(*id);
            return Ok(true);
        }
        self.extend_pack(r.pack)
    }

    /// Extends a pack's lock to this snapshot's lock date. `false` if it is gone.
    fn extend_pack(&mut self, pos: usize) -> Result<bool> {
        let key = self.repo.pack_key(&self.index.pack(pos).id);
        let Some((current, extended)) = self.repo.extend_versions(&key, self.until)? else { return Ok(false) };
        self.summary.locks_extended += extended;
        self.index.extend(pos, self.until.max(current));
        self.extended.insert(pos);
        Ok(true)
    }

    /// Settles the packs whose decision was deferred: a pack of which this snapshot needs
    /// less than [`REPACK_BELOW_PERCENT`] is not kept alive whole — the blobs it needs are
    /// copied into new packs (locked for this snapshot) and the old pack is left to expire,
    /// so prune can remove its dead data. The rest are extended.
    fn settle_deferred(&mut self) -> Result<()> {
        let deferred = std::mem::take(&mut self.deferred);
        for (pos, ids) in deferred {
            if self.extended.contains(&pos) {
                continue;
            }
            let p = self.index.pack(pos).clone();
            let needed: u64 = p.blobs.iter().filter(|e| ids.contains(&e.id)).map(|e| u64::from(e.length)).sum();
            let extend = needed * 100 >= p.size * REPACK_BELOW_PERCENT || !self.repack(&p, &ids)?;
            if extend && !self.extend_pack(pos)? {
                return Err(RepoError::corrupt(
                    self.repo.pack_key(&p.id),
                    "pack vanished while still locked; the repository was tampered with",
                ));
            }
        }
        Ok(())
    }

    /// Copies `ids` out of pack `p` into new packs. `false` if the pack cannot be read
    /// (then the caller extends it instead).
    fn repack(&mut self, p: &crate::index::PackInfo, ids: &HashSet<Id>) -> Result<bool> {
        let key = self.repo.pack_key(&p.id);
        let Ok(bytes) = self.repo.get_hashed(&key, &p.id) else { return Ok(false) };
        for e in p.blobs.iter().filter(|e| ids.contains(&e.id)) {
            if self.pending.contains(&e.id) {
                continue;
            }
            let sealed = bytes.get(e.offset as usize..(e.offset + e.length) as usize).unwrap_or_default();
            let plain = pack::open_blob(&self.repo.key, e, sealed, &key)?;
            self.pipeline().submit(e.kind, e.id, plain)?;
            self.pending.insert(e.id);
            self.summary.blobs_repacked += 1;
        }
        Ok(true)
    }

    fn pipeline(&self) -> &Pipeline {
        self.pipeline.as_ref().expect("the writer is not finished")
    }

    /// Waits until every blob is stored, writes the index object stating new and extended
    /// packs, and extends the locks of the config and keys — everything the snapshot
    /// needs, before the snapshot.
    ///
    /// # Errors
    /// Store errors.
    pub fn finish(&mut self) -> Result<()> {
        self.settle_deferred()?;
        let Some(pipeline) = self.pipeline.take() else { return Ok(()) };
        let stored = pipeline.finish()?;
        for p in &stored.packs {
            self.index.add_pack(p);
        }
        self.summary.bytes_stored += stored.bytes;
        let mut packs = stored.unindexed;
        self.summary.packs_recovered += self.recovered.len() as u64;
        packs.append(&mut self.recovered);
        for &pos in &self.extended {
            let p = self.index.pack(pos);
            packs.push(IndexPack { id: p.id, size: p.size, retain_until: p.retain_until, blobs: p.blobs.clone() });
        }
        self.extended.clear();
        self.target.write_index(packs)?;
        self.extend_meta()
    }

    fn extend_meta(&mut self) -> Result<()> {
        self.repo.extend_meta_to(self.until)
    }

    /// Writes the snapshot — last, after [`BlobWriter::finish`]. Returns its id.
    ///
    /// # Errors
    /// Store errors.
    pub fn commit_snapshot(mut self, mut snap: Snapshot) -> Result<Id> {
        self.finish()?;
        snap.retain_until = self.until;
        snap.summary = self.summary.clone();
        let bytes = pack::seal_object(&self.repo.key, ObjectKind::Snapshot, &snap);
        let id = Id::hash(&bytes);
        self.repo.put(&self.repo.snapshot_key(&id), &bytes, self.until)?;
        Ok(id)
    }
}

/// Reads blobs, keeping the last few packs in memory (the store reads whole objects).
pub struct BlobReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    cache: PackCache,
}

impl BlobReader<'_> {
    /// Reads and verifies one blob.
    ///
    /// # Errors
    /// `Corrupt` naming the blob and pack; store errors.
    pub fn read(&mut self, id: &Id) -> Result<Vec<u8>> {
        self.cache.read(self.repo, self.index, id)
    }

    /// Reads and parses a tree blob.
    ///
    /// # Errors
    /// As [`BlobReader::read`].
    pub fn tree(&mut self, id: &Id) -> Result<Tree> {
        Tree::from_bytes(&self.read(id)?, id)
    }
}

/// A blob reader many threads can share (restore): packs are cached whole and shared, or,
/// made with [`SharedReader::ranged`], opened and read a blob's range at a time.
///
/// Ranged reads are for a local store: a tree restore held three 16 MiB packs whole (its
/// peak memory was mostly this cache) to read blobs that are on average a few KiB, and
/// copied every pack once more into memory on the way. A range is not checked against the
/// pack's checksum, but every blob is sealed (AEAD, and its plaintext hashed against its
/// id), so what authenticates is exactly what was stored; a range that does not is read
/// again from the whole pack, verified, so damage is found and named as before.
///
/// With [`SharedReader::with_read_ahead`], background threads fetch the packs a plan says
/// will be needed next, several at once, so the store's latency per request (S3) overlaps
/// with the workers' decrypting and writing instead of adding up.
///
/// A pack whose planned reads are all done leaves the cache at once instead of waiting to
/// be the least recently used: two restore workers move through neighbouring packs, and
/// the slot a finished pack held would otherwise sit on 16 MiB nobody reads again.
///
/// Invariants: memory is bounded — at most `capacity` recently used packs, plus packs fetched
/// ahead and not yet asked for (at most the read-ahead budget in bytes, or a single pack
/// when one is larger than the budget), plus the packs callers still hold; and one pack is
/// fetched by one thread at a time (a thread asking for a pack another is fetching waits for
/// it rather than fetching it again).
pub struct SharedReader<'a> {
    repo: &'a Repository,
    index: &'a Index,
    state: std::sync::Mutex<ReaderState>,
    /// Signalled whenever a fetch ends, a pack fetched ahead is taken, or read-ahead stops.
    changed: std::sync::Condvar,
    capacity: usize,
    /// Blobs are read by range from opened packs ([`SharedReader::ranged`]).
    ranged: bool,
}

/// Packs fetched concurrently ahead of the readers.
pub const READ_AHEAD_THREADS: usize = 4;

impl ReaderState {
    /// Notes a read from pack `id`: moves the plan's progress past it and counts one of its
    /// planned reads done. `true` if it was the last (the pack need not stay cached).
    fn reading(&mut self, id: &Id) -> bool {
        if let Some(&pos) = self.plan_pos.get(id) {
            if self.progress <= pos {
                self.progress = pos + 1;
            }
        }
        match self.unread.get_mut(id) {
            Some(n) if *n <= 1 => {
                self.unread.remove(id);
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }
}

#[derive(Default)]
struct ReaderState {
    /// Packs asked for, oldest first.
    used: VecDeque<(Id, Arc<Vec<u8>>)>,
    /// Packs opened for ranged reads, oldest first.
    opened: VecDeque<(Id, Arc<dyn RangeRead>)>,
    /// Packs fetched ahead and not yet asked for.
    ahead: HashMap<Id, Arc<Vec<u8>>>,
    /// Bytes of `ahead` plus those being fetched ahead (reserved before the fetch).
    ahead_bytes: u64,
    /// Packs being fetched, by anyone.
    loading: HashSet<Id>,
    /// The packs the plan needs, each once, in the order of first need, with their sizes.
    plan: Vec<(Id, u64)>,
    /// Position of each pack in `plan`.
    plan_pos: HashMap<Id, usize>,
    /// The next plan entry read-ahead considers.
    cursor: usize,
    /// Plan entries before this one have been asked for (or skipped past) by the readers:
    /// fetching them ahead would be too late.
    progress: usize,
    /// Per pack, the planned blob reads not done yet (a blob read twice counts twice).
    /// Reads of packs absent here (not planned, or planned reads all done) are unaffected.
    unread: HashMap<Id, usize>,
    budget: u64,
    stop: bool,
}

impl<'a> SharedReader<'a> {
    /// A reader keeping up to `capacity` packs in memory.
    #[must_use]
    pub fn new(repo: &'a Repository, index: &'a Index, capacity: usize) -> Self {
        Self {
            repo,
            index,
            state: std::sync::Mutex::new(ReaderState::default()),
            changed: std::sync::Condvar::new(),
            capacity: capacity.max(1),
            ranged: false,
        }
    }

    /// A reader that reads each blob's range out of packs it keeps open (up to `capacity`
    /// of them) instead of caching packs whole: for a local store, where a read is cheap
    /// and a whole pack is memory.
    #[must_use]
    pub fn ranged(repo: &'a Repository, index: &'a Index, capacity: usize) -> Self {
        Self { ranged: true, ..Self::new(repo, index, capacity) }
    }

    /// Runs `f` while [`READ_AHEAD_THREADS`] threads fetch the packs holding `blobs` (the
    /// blobs `f` will read, in about the order it reads them), keeping at most `budget`
    /// bytes fetched ahead of the readers. A failed fetch ahead is dropped: the reader that
    /// needs the pack fetches it and reports the error. Read-ahead stops when `f` returns
    /// (or panics).
    ///
    /// The plan may also grow while `f` runs ([`SharedReader::plan_more`]): a restore that
    /// streams files from its walk to its workers names their blobs as it finds them. With
    /// a `budget` of 0 nothing is read ahead (a local store, where a worker's own read is
    /// about as fast and memory matters more). Packs cached before the plan are dropped.
    pub fn with_read_ahead<R>(&self, blobs: impl IntoIterator<Item = Id>, budget: u64, f: impl FnOnce() -> R) -> R {
        {
            let mut st = self.lock();
            st.plan.clear();
            st.plan_pos.clear();
            st.cursor = 0;
            st.progress = 0;
            st.unread.clear();
            // What was read before a plan (a restore's walk through the tree packs) is not
            // what the plan reads: 16 MiB of trees held through a whole restore otherwise.
            st.used.clear();
            st.opened.clear();
            st.budget = budget;
            st.stop = false;
        }
        self.plan_more(blobs);
        /// Stops read-ahead however `f` ends, so the scope below can join its threads.
        struct Stop<'r, 'a>(&'r SharedReader<'a>);
        impl Drop for Stop<'_, '_> {
            fn drop(&mut self) {
                self.0.lock().stop = true;
                self.0.changed.notify_all();
            }
        }
        // A ranged reader reads no packs whole, so none ahead either.
        let threads = if budget == 0 || self.ranged { 0 } else { READ_AHEAD_THREADS };
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| self.read_ahead());
            }
            let _stop = Stop(self);
            f()
        })
    }

    /// Adds the packs holding `blobs` to the end of the read-ahead plan (each pack once).
    pub fn plan_more(&self, blobs: impl IntoIterator<Item = Id>) {
        let mut st = self.lock();
        let before = st.plan.len();
        for id in blobs {
            let Some(r) = self.index.get(&id) else { continue };
            let p = self.index.pack(r.pack);
            *st.unread.entry(p.id).or_default() += 1;
            if !st.plan_pos.contains_key(&p.id) {
                let pos = st.plan.len();
                st.plan_pos.insert(p.id, pos);
                st.plan.push((p.id, p.size));
            }
        }
        if st.plan.len() > before {
            self.changed.notify_all();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReaderState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One read-ahead thread: takes the next plan entry nobody has, waits for room in the
    /// budget, fetches it.
    fn read_ahead(&self) {
        let mut st = self.lock();
        loop {
            if st.stop {
                return;
            }
            st.cursor = st.cursor.max(st.progress);
            let Some(&(id, size)) = st.plan.get(st.cursor) else {
                // The plan may grow (`plan_more`) until `f` returns and sets `stop`.
                st = self.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            };
            if st.loading.contains(&id) || st.ahead.contains_key(&id) || st.used.iter().any(|(p, _)| *p == id) {
                st.cursor += 1;
                continue;
            }
            // Room for it, or nothing ahead at all (a pack larger than the budget).
            if st.ahead_bytes > 0 && st.ahead_bytes + size > st.budget {
                st = self.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            st.cursor += 1;
            st.loading.insert(id);
            st.ahead_bytes += size;
            drop(st);
            let got = self.repo.get_hashed(&self.repo.pack_key(&id), &id);
            st = self.lock();
            st.loading.remove(&id);
            match got {
                Ok(data) => {
                    st.ahead.insert(id, Arc::new(data));
                }
                Err(_) => st.ahead_bytes -= size,
            }
            self.changed.notify_all();
        }
    }

    /// Reads and verifies one blob.
    ///
    /// # Errors
    /// `Corrupt` naming the blob and pack; store errors.
    pub fn read(&self, id: &Id) -> Result<Vec<u8>> {
        let r = self.index.get(id).ok_or_else(|| self.index.missing(id))?;
        let pack_id = self.index.pack(r.pack).id;
        if self.ranged {
            if let Ok(plain) = self.read_range(&pack_id, &r.entry) {
                return Ok(plain);
            }
            // The opened version may be a rogue writer's: reopened after the search below
            // has pinned the authentic one.
            self.lock().opened.retain(|(p, _)| *p != pack_id);
        }
        // Whole packs, or a range that failed: the whole pack, checked against its name (or
        // an older version of it that is), decides, and an error names what is wrong.
        let bytes = if self.ranged {
            Arc::new(self.repo.get_hashed(&self.repo.pack_key(&pack_id), &pack_id)?)
        } else {
            self.pack(&pack_id)?
        };
        let (start, end) = (r.entry.offset as usize, r.entry.offset as usize + r.entry.length as usize);
        let key = self.repo.pack_name(&pack_id);
        let sealed = bytes.get(start..end).ok_or_else(|| RepoError::corrupt(key.to_string(), "blob out of range"))?;
        pack::open_blob(&self.repo.key, &r.entry, sealed, key)
    }

    /// The plaintext length of a blob, if the index knows it.
    #[must_use]
    pub fn raw_length(&self, id: &Id) -> Option<u64> {
        self.index.get(id).map(|r| u64::from(r.entry.raw_length))
    }

    /// Reads and parses a tree blob.
    ///
    /// # Errors
    /// As [`SharedReader::read`].
    pub fn tree(&self, id: &Id) -> Result<Tree> {
        Tree::from_bytes(&self.read(id)?, id)
    }

    /// One blob read by its range from the pack, opened or kept open.
    fn read_range(&self, pack_id: &Id, entry: &pack::PackEntry) -> Result<Vec<u8>> {
        let key = self.repo.pack_name(pack_id);
        let cannot_read = |source| RepoError::Store { context: format!("cannot read {key}"), source };
        let opened = {
            let mut st = self.lock();
            let last = st.reading(pack_id);
            cached(&mut st.opened, pack_id, last).ok_or(last)
        };
        let pack = match opened {
            Ok(pack) => pack,
            Err(last) => {
                let pack: Arc<dyn RangeRead> = Arc::from(
                    self.repo
                        .store
                        .open_ranged(&key.to_string(), self.repo.pin(&key.to_string()).as_ref())
                        .map_err(cannot_read)?,
                );
                if !last {
                    keep(&mut self.lock().opened, self.capacity, *pack_id, pack.clone());
                }
                pack
            }
        };
        let sealed = pack.read_at(u64::from(entry.offset), entry.length as usize).map_err(cannot_read)?;
        pack::open_blob_owned(&self.repo.key, entry, sealed, key)
    }

    fn pack(&self, id: &Id) -> Result<Arc<Vec<u8>>> {
        let mut st = self.lock();
        let last = st.reading(id);
        loop {
            if let Some(data) = cached(&mut st.used, id, last) {
                return Ok(data);
            }
            if let Some(data) = st.ahead.remove(id) {
                st.ahead_bytes -= self.index.pack_by_id(id).map_or(0, |p| p.size);
                if !last {
                    keep(&mut st.used, self.capacity, *id, data.clone());
                }
                self.changed.notify_all();
                return Ok(data);
            }
            if !st.loading.contains(id) {
                break;
            }
            st = self.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.loading.insert(*id);
        drop(st);
        let got = self.repo.get_hashed(&self.repo.pack_key(id), id).map(Arc::new);
        let mut st = self.lock();
        st.loading.remove(id);
        if let (Ok(data), false) = (&got, last) {
            keep(&mut st.used, self.capacity, *id, data.clone());
        }
        self.changed.notify_all();
        got
    }
}

/// A pack's store key, as [`Repository::pack_name`] gives it.
#[derive(Clone, Copy)]
struct PackKey<'a> {
    prefix: &'a str,
    id: &'a Id,
}

impl std::fmt::Display for PackKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.id.to_string();
        write!(f, "{}data/{}/{hex}", self.prefix, &hex[..2])
    }
}

/// The cached entry for pack `id`, taken out of `list` when this is its last planned read.
fn cached<T: Clone>(list: &mut VecDeque<(Id, T)>, id: &Id, last: bool) -> Option<T> {
    let pos = list.iter().position(|(p, _)| p == id)?;
    Some(if last { list.remove(pos).expect("position is valid").1 } else { list[pos].1.clone() })
}

/// Adds pack `id` as the most recently used entry (unless there already), dropping the least
/// recently used past `capacity`.
fn keep<T>(list: &mut VecDeque<(Id, T)>, capacity: usize, id: Id, value: T) {
    if list.iter().any(|(p, _)| *p == id) {
        return;
    }
    if list.len() >= capacity {
        list.pop_front();
    }
    list.push_back((id, value));
}

/// The last few packs read, whole.
#[derive(Default)]
struct PackCache {
    packs: VecDeque<(Id, Arc<Vec<u8>>)>,
}

const PACK_CACHE: usize = 4;
/// A reused pack locked at least this much longer is settled at the end of the backup.
const DEFER_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// A reused pack of which a snapshot needs less than this share (by bytes) is repacked.
pub const REPACK_BELOW_PERCENT: u64 = 25;
/// Packs written between index checkpoints.
const INDEX_CHECKPOINT_PACKS: usize = 8;

impl PackCache {
    fn read(&mut self, repo: &Repository, index: &Index, id: &Id) -> Result<Vec<u8>> {
        let r = index.get(id).ok_or_else(|| index.missing(id))?;
        let pack_id = index.pack(r.pack).id;
        let bytes = self.pack(repo, &pack_id)?;
        let (start, end) = (r.entry.offset as usize, r.entry.offset as usize + r.entry.length as usize);
        let key = repo.pack_key(&pack_id);
        let sealed = bytes.get(start..end).ok_or_else(|| RepoError::corrupt(key.clone(), "blob out of range"))?;
        pack::open_blob(&repo.key, &r.entry, sealed, &key)
    }

    fn pack(&mut self, repo: &Repository, id: &Id) -> Result<Arc<Vec<u8>>> {
        if let Some(pos) = self.packs.iter().position(|(p, _)| p == id) {
            let hit = self.packs.remove(pos).expect("position is valid");
            let data = hit.1.clone();
            self.packs.push_back(hit);
            return Ok(data);
        }
        let data = Arc::new(repo.get_hashed(&repo.pack_key(id), id)?);
        if self.packs.len() >= PACK_CACHE {
            self.packs.pop_front();
        }
        self.packs.push_back((*id, data.clone()));
        Ok(data)
    }
}

/// The first object version of `versions` other than `skip` whose content hashes to `id`,
/// newest first, and its version id; `None` if there is none. Versions that cannot be read
/// are passed over.
///
/// # Errors
/// Store errors other than a missing or damaged version (an unreachable store).
fn hashed_version(
    store: &dyn ObjectStore,
    versions: &versions::Versions,
    id: &Id,
    skip: Option<&VersionId>,
) -> Result<Option<(Vec<u8>, VersionId)>> {
    for v in versions.objects.iter().rev().filter(|v| Some(&v.version) != skip) {
        match get_listed(store, &versions.key, v) {
            Ok(o) if id.names(&o) => return Ok(Some((o.data, v.version.clone()))),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) => {}
            Err(e) => return Err(RepoError::store(format!("cannot read {}", versions.key))(e)),
        }
    }
    Ok(None)
}

/// Reads the listed version `v` of `key`. A read by version id costs S3 a second request (to
/// learn whether it is the latest), so the version the listing called the latest is read as
/// the latest — and taken only if it still is that version.
pub(crate) fn get_listed(
    store: &dyn ObjectStore,
    key: &str,
    v: &coffer_store::ListEntry,
) -> coffer_store::Result<coffer_store::Object> {
    if v.is_latest {
        if let Ok(o) = store.get(key, None) {
            if o.meta.version == v.version {
                return Ok(o);
            }
        }
    }
    store.get(key, Some(&v.version))
}

/// Reads the key file `v` names: the version whose bytes hash to its name.
fn read_key_file(store: &dyn ObjectStore, v: &versions::Versions) -> Result<KeyFile> {
    let k = &v.key;
    let id: Id = k.rsplit('/').next().unwrap_or("").parse().map_err(|e: String| RepoError::corrupt(k.clone(), e))?;
    let (bytes, _) = hashed_version(store, v, &id, None)?.ok_or_else(|| {
        RepoError::corrupt(k.clone(), format!("none of its {} versions matches its name", v.objects.len()))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RepoError::corrupt(k.clone(), format!("bad key file: {e}")))
}

/// A stored object that cannot be read: its key and why.
pub type Damaged = (String, RepoError);

/// Snapshots with their ids, oldest first.
pub type Snapshots = Vec<(Id, Snapshot)>;

/// Whether the object was not there (any more).
fn is_gone(e: &RepoError) -> bool {
    e.store_error().is_some_and(|s| s.kind() == ErrorKind::NotFound)
}

/// Whether the object is there but damaged (failed a checksum, authentication or decoding).
fn is_damaged(e: &RepoError) -> bool {
    matches!(e, RepoError::Corrupt { .. }) || e.store_error().is_some_and(|s| s.kind() == ErrorKind::Corrupt)
}

/// Whether an error is damaged data (as opposed to an unreachable store or a refusal).
fn is_damage(e: &RepoError) -> bool {
    match e {
        RepoError::Corrupt { .. } => true,
        RepoError::Store { source, .. } => source.kind() == ErrorKind::Corrupt,
        _ => false,
    }
}

/// Whether a store error means "not there".
#[must_use]
pub fn is_not_found(e: &StoreError) -> bool {
    e.kind() == ErrorKind::NotFound
}

fn to_signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn rand32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}

/// `90d`, `12h`, `30s` style.
#[must_use]
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::{
        LocalVault, LockConfig, Object, ObjectVersion, Page, Principal, PutOptions, Role, VaultOptions, Versioning,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose pack reads take a while, counting how many run at once and in all.
    struct Slow {
        inner: Box<dyn ObjectStore>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        started: AtomicUsize,
    }

    impl ObjectStore for Slow {
        fn principal(&self) -> &Principal {
            self.inner.principal()
        }
        fn put(&self, key: &str, data: &[u8], opts: &PutOptions) -> coffer_store::Result<ObjectVersion> {
            self.inner.put(key, data, opts)
        }
        fn get(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<Object> {
            if !key.contains("data/") {
                return self.inner.get(key, version);
            }
            self.started.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(40));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.inner.get(key, version)
        }
        fn open_ranged(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<Box<dyn RangeRead>> {
            self.inner.open_ranged(key, version)
        }
        fn head(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<ObjectVersion> {
            self.inner.head(key, version)
        }
        fn list(&self, prefix: &str, token: Option<&str>, limit: usize) -> coffer_store::Result<Page<ObjectVersion>> {
            self.inner.list(prefix, token, limit)
        }
        fn list_versions(
            &self,
            prefix: &str,
            token: Option<&str>,
            limit: usize,
        ) -> coffer_store::Result<Page<ObjectVersion>> {
            self.inner.list_versions(prefix, token, limit)
        }
        fn delete(&self, key: &str) -> coffer_store::Result<ObjectVersion> {
            self.inner.delete(key)
        }
        fn delete_version(&self, key: &str, version: &VersionId, bypass: bool) -> coffer_store::Result<()> {
            self.inner.delete_version(key, version, bypass)
        }
        fn put_retention(
            &self,
            key: &str,
            version: &VersionId,
            retention: Option<Retention>,
            bypass: bool,
        ) -> coffer_store::Result<()> {
            self.inner.put_retention(key, version, retention, bypass)
        }
        fn put_legal_hold(&self, key: &str, version: &VersionId, on: bool) -> coffer_store::Result<()> {
            self.inner.put_legal_hold(key, version, on)
        }
        fn lock_config(&self) -> coffer_store::Result<LockConfig> {
            self.inner.lock_config()
        }
        fn put_lock_config(&self, config: &LockConfig) -> coffer_store::Result<()> {
            self.inner.put_lock_config(config)
        }
        fn versioning(&self) -> coffer_store::Result<Versioning> {
            self.inner.versioning()
        }
        fn put_versioning(&self, status: Versioning) -> coffer_store::Result<()> {
            self.inner.put_versioning(status)
        }
    }

    /// A repository in a fresh local vault, seen through [`Slow`] (which counts pack reads),
    /// holding `blob(0..n)` in packs of about `pack_size` bytes.
    struct Fixture {
        /// Holds the vault: bind it (`_tmp`, not `..`) for as long as the repository is used.
        _tmp: tempfile::TempDir,
        clock: Clock,
        slow: Arc<Slow>,
        repo: Repository,
        /// The blobs' ids, `blob(0)` first.
        ids: Vec<Id>,
    }

    fn fixture(pack_size: u32, n: u32) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let vault =
            LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() })
                .unwrap();
        let slow = Arc::new(Slow {
            inner: Box::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        });
        let opts =
            InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..InitOptions::default() };
        let mut repo = Repository::init(slow.clone(), "t", "", b"pw", &opts, clock.clone()).unwrap();
        repo.config.pack_size = pack_size;
        let ids = {
            let mut w = repo.writer(clock.now() + SignedDuration::from_hours(24)).unwrap();
            let ids = (0..n).map(|i| w.add(BlobKind::Data, &blob(i)).unwrap()).collect();
            w.finish().unwrap();
            ids
        };
        Fixture { _tmp: tmp, clock, slow, repo, ids }
    }

    fn blob(i: u32) -> Vec<u8> {
        (0..10_000u32).flat_map(|j| (j.wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)).to_le_bytes()).collect()
    }

    /// Reading blobs in plan order with read-ahead keeps several pack reads in flight, never
    /// holds more than the budget fetched ahead, and returns the right data.
    #[test]
    fn read_ahead_overlaps_pack_reads_within_its_budget() {
        // Small packs: about one 40 KB blob each.
        let Fixture { _tmp, slow, repo, ids, .. } = fixture(32 << 10, 24);
        let index = repo.load_index().unwrap();
        let largest = ids.iter().map(|id| index.pack(index.get(id).unwrap().pack).size).max().unwrap();
        let packs: HashSet<Id> = ids.iter().map(|id| index.pack(index.get(id).unwrap().pack).id).collect();
        assert!(packs.len() >= 12, "{} packs", packs.len());
        let started_before = slow.started.load(Ordering::SeqCst);

        let reader = SharedReader::new(&repo, &index, 2);
        let mut seen = HashSet::new();
        let mut worst_ahead = 0;
        reader.with_read_ahead(ids.iter().copied(), 2 * largest, || {
            for (i, id) in ids.iter().enumerate() {
                seen.insert(index.pack(index.get(id).unwrap().pack).id);
                let fetched = slow.started.load(Ordering::SeqCst) - started_before;
                worst_ahead = worst_ahead.max(fetched.saturating_sub(seen.len()));
                assert_eq!(reader.read(id).unwrap(), blob(u32::try_from(i).unwrap()), "blob {i}");
                // The consumer is slower than one read, faster than the reads in sequence.
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        let fetched = slow.started.load(Ordering::SeqCst) - started_before;
        assert_eq!(fetched, packs.len(), "every pack read exactly once");
        assert!(slow.max_in_flight.load(Ordering::SeqCst) >= 2, "pack reads never overlapped");
        assert!(worst_ahead <= 2, "{worst_ahead} packs fetched ahead, the budget holds 2");
    }

    /// A rogue writer's garbage version on top of a pack costs a ranged restore one search
    /// for the authentic version, not a whole-pack read per blob: the version found is
    /// pinned and opened for the remaining ranges.
    #[test]
    fn a_garbage_version_on_a_pack_is_searched_past_once() {
        let Fixture { _tmp, slow, repo, ids, .. } = fixture(1 << 20, 12);
        let index = repo.load_index().unwrap();
        let pack = index.pack(index.get(&ids[0]).unwrap().pack).id;
        let in_pack: Vec<usize> =
            (0..ids.len()).filter(|&i| index.pack(index.get(&ids[i]).unwrap().pack).id == pack).collect();
        assert!(in_pack.len() >= 8, "{} blobs in the first pack", in_pack.len());
        slow.put(&repo.pack_key(&pack), b"garbage on top", &PutOptions::default()).unwrap();
        let before = slow.started.load(Ordering::SeqCst);
        let reader = SharedReader::ranged(&repo, &index, 2);
        for &i in &in_pack {
            assert_eq!(reader.read(&ids[i]).unwrap(), blob(u32::try_from(i).unwrap()), "blob {i}");
        }
        let whole_reads = slow.started.load(Ordering::SeqCst) - before;
        assert!(whole_reads <= 2, "{whole_reads} whole-pack reads for {} blobs", in_pack.len());
    }

    /// A pack leaves the reader's cache with its last planned read, and not before: the
    /// planned reads fetch each pack once, a read after the last planned one fetches again.
    #[test]
    fn a_pack_leaves_the_cache_with_its_last_planned_read() {
        let Fixture { _tmp, slow, repo, ids, .. } = fixture(96 << 10, 12); // about three blobs a pack
        let index = repo.load_index().unwrap();
        let mut by_pack: Vec<(Id, Vec<Id>)> = Vec::new();
        for id in &ids {
            let p = index.pack(index.get(id).unwrap().pack).id;
            match by_pack.iter_mut().find(|(q, _)| *q == p) {
                Some((_, v)) => v.push(*id),
                None => by_pack.push((p, vec![*id])),
            }
        }
        by_pack.retain(|(_, v)| v.len() >= 2);
        assert!(by_pack.len() >= 2, "two packs of two blobs or more: {by_pack:?}");
        let (a, b) = (&by_pack[0].1, &by_pack[1].1);
        let fetches = || slow.started.load(Ordering::SeqCst);

        // Room for both packs: only the plan decides what leaves.
        let reader = SharedReader::new(&repo, &index, 2);
        let plan = [a[0], b[0], a[1]];
        reader.with_read_ahead(plan, 0, || {
            let before = fetches();
            for id in plan {
                reader.read(&id).unwrap();
            }
            assert_eq!(fetches() - before, 2, "the planned reads fetch each pack once");
            // Both packs' planned reads are done: reading them again fetches them again.
            reader.read(&a[0]).unwrap();
            reader.read(&b[1]).unwrap();
            assert_eq!(fetches() - before, 4, "a pack stayed cached after its last planned read");
            // Unplanned reads keep the usual least-recently-used cache.
            reader.read(&a[1]).unwrap();
            assert_eq!(fetches() - before, 4, "an unplanned read of a cached pack fetched it");
        });
    }

    /// A ranged reader reads every blob right, and a range that does not authenticate (the
    /// pack's latest version was replaced by damaged bytes) is read from the version of the
    /// pack that matches its name instead.
    #[test]
    fn ranged_reads_fall_back_to_the_verified_pack() {
        let Fixture { _tmp, clock, slow: store, repo, ids } = fixture(96 << 10, 8);
        let index = repo.load_index().unwrap();
        let reader = SharedReader::ranged(&repo, &index, 2);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(reader.read(id).unwrap(), blob(u32::try_from(i).unwrap()), "blob {i}");
        }

        // Damage the first blob's bytes in a new latest version of its pack.
        let r = index.get(&ids[0]).unwrap();
        let (pack_id, entry) = (index.pack(r.pack).id, r.entry);
        let key = repo.pack_key(&pack_id);
        let mut bytes = store.get(&key, None).unwrap().data;
        bytes[entry.offset as usize + 30] ^= 0x40;
        let until = clock.now() + SignedDuration::from_hours(24);
        store
            .put(
                &key,
                &bytes,
                &PutOptions {
                    retention: Some(Retention { mode: RetentionMode::Compliance, until }),
                    legal_hold: false,
                    create_only: false,
                },
            )
            .unwrap();
        let sealed =
            store.open_ranged(&key, None).unwrap().read_at(u64::from(entry.offset), entry.length as usize).unwrap();
        assert!(pack::open_blob(&repo.key, &entry, &sealed, &key).is_err(), "the range read directly fails");

        let reader = SharedReader::ranged(&repo, &index, 2);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(reader.read(id).unwrap(), blob(u32::try_from(i).unwrap()), "blob {i} after the damage");
        }
    }

    /// A backup writes tree blobs and data blobs into separate packs.
    #[test]
    fn trees_and_data_never_share_a_pack() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let vault =
            LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() })
                .unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
        let opts =
            InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..InitOptions::default() };
        let mut repo = Repository::init(store, "t", "", b"pw", &opts, clock.clone()).unwrap();
        repo.config.pack_size = 64 << 10;
        {
            let mut w = repo.writer(clock.now() + SignedDuration::from_hours(24)).unwrap();
            // Interleaved as a backup submits them: a directory's files, then its tree.
            for i in 0..12 {
                w.add(BlobKind::Data, &blob(i)).unwrap();
                w.add(BlobKind::Tree, format!("{{\"tree\":{i}}}").as_bytes()).unwrap();
            }
            w.finish().unwrap();
        }
        let index = repo.load_index().unwrap();
        let (mut tree_packs, mut data_packs) = (0, 0);
        for p in index.packs() {
            let kinds: HashSet<BlobKind> = p.blobs.iter().map(|b| b.kind).collect();
            assert_eq!(kinds.len(), 1, "pack {} mixes {kinds:?}", p.id);
            if kinds.contains(&BlobKind::Tree) { tree_packs += 1 } else { data_packs += 1 }
        }
        assert_eq!(tree_packs, 1, "the small trees share one pack");
        assert!(data_packs >= 6, "{data_packs} data packs");
    }
}
