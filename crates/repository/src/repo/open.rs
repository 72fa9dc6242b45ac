//! Creating and opening a repository: `init`, `open` (now or as of a point in time, with a
//! password or an unwrapped key), and the key files.
//!
//! Invariants guarded here: the config's **first** version is the one (a later version by a
//! rogue writer changes nothing); a master key is accepted only if it authenticates the
//! config, so a forged key file wrapping another key is passed over.

use super::*;

/// The stored config object's bytes, its format version checked (before any key is tried,
/// so a newer repository is refused clearly). The config is not content-addressed and is
/// written once, at `init`: its **first** version (at or before `as_of`) is the one, so a
/// later version put by a rogue writer, garbage or well-sealed, changes nothing.
fn read_config(store: &dyn ObjectStore, location: &str, prefix: &str, as_of: Option<Timestamp>) -> Result<Vec<u8>> {
    Ok(read_config_listed(store, location, prefix, as_of)?.0)
}

/// As [`read_config`], also returning the config's object versions the listing found.
fn read_config_listed(
    store: &dyn ObjectStore,
    location: &str,
    prefix: &str,
    as_of: Option<Timestamp>,
) -> Result<(Vec<u8>, Vec<VersionId>)> {
    let key = format!("{prefix}config");
    let versions = versions::versions_of(store, &key, as_of)?;
    let Some(first) = versions.objects.first() else {
        return Err(RepoError::NoRepository { location: location.into() });
    };
    let bytes = get_listed(store, &key, first)
        .map_err(RepoError::store(format!("cannot read {location}/config (version {})", first.version)))?
        .data;
    pack::envelope_version(&bytes, &format!("{location}/config"))?;
    Ok((bytes, versions.objects.iter().map(|o| o.version.clone()).collect()))
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
            id: Id(crate::crypto::random()),
            created: now,
            chunker: ChunkerParams::default(),
            pack_size: 16 * 1024 * 1024,
            retention: p,
            dictionary: opts.dictionary,
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
        Self::open_hinted(store, location, prefix, password, clock, as_of, None)
    }

    /// [`Repository::open_as_of`], first trying the key file this host last opened the
    /// repository with, kept at `hint` ([`crate::cache::key_hint_path`]): its key derivation
    /// then runs while the config and `keys/` are listed, so on S3 opening costs the key
    /// derivation and no listing's time. The hinted file is content-addressed (checked
    /// against its name) and its key must still open the config, like any listed one; a
    /// hint that does not open is passed over for the listing. Not used with `as_of` (a key
    /// file must have existed then).
    pub(crate) fn open_hinted(
        store: Arc<dyn ObjectStore>,
        location: &str,
        prefix: &str,
        password: &[u8],
        clock: Clock,
        as_of: Option<Timestamp>,
        hint: Option<&std::path::Path>,
    ) -> Result<Self> {
        let config_name = format!("{location}/config");
        let hinted = hint.filter(|_| as_of.is_none()).and_then(|p| crate::cache::read_key_hint(p, prefix));
        let (mut files, mut unreadable, mut opened_other) = (0usize, Vec::new(), None);
        let mut found: Option<(MasterKey, Config)> = None;
        // The key file that opened, to hint next time (when it was not the hint).
        let mut opened_with: Option<(String, Vec<u8>)> = None;
        let mut listed_keys = Vec::new();
        // The config (a listing of its versions and a read) is fetched beside the key files'
        // listing, read and key derivation, which do not need it until a key unwraps: on S3
        // its requests then cost no time (a listing's time grows with the bucket on some
        // servers).
        let (config, walked) = std::thread::scope(|s| {
            type Fetched = Option<Result<(Vec<u8>, Vec<VersionId>)>>;
            let pending =
                std::cell::RefCell::new(Some(s.spawn(|| read_config_listed(store.as_ref(), location, prefix, as_of))));
            let config: std::cell::RefCell<Fetched> = std::cell::RefCell::new(None);
            let join = || {
                if let Some(h) = pending.borrow_mut().take() {
                    *config.borrow_mut() = Some(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                }
            };
            // With a hint, `keys/` is listed beside its key derivation.
            let keys_listing = hinted.as_ref().map(|_| {
                s.spawn(|| {
                    let mut all = Vec::new();
                    versions::for_each_name(store.as_ref(), &format!("{prefix}keys/"), as_of, |v| {
                        all.push(v);
                        Ok(())
                    })
                    .map(|()| all)
                })
            });
            // A key that unwrapped with the password, checked against the config: the config
            // it opens, if it does.
            let check = |key: &MasterKey| -> Result<Option<Config>> {
                join();
                // Without a config there is nothing to check the key against: stop (its
                // error is the one reported, below).
                let fetched = config.borrow();
                let Some(Ok((config_bytes, _))) = &*fetched else {
                    return Err(RepoError::Invalid("the config could not be read".into()));
                };
                Ok(pack::open_object::<Config>(key, ObjectKind::Config, config_bytes, &config_name).ok())
            };
            if let Some((name, bytes)) = &hinted {
                let unwrapped =
                    serde_json::from_slice::<KeyFile>(bytes).ok().and_then(|f| f.unwrap(password, name).ok());
                if let Some(Some(key)) = unwrapped {
                    // A hint that does not open the config is no finding: the listing decides.
                    if let Ok(Some(c)) = check(&key) {
                        found = Some((key, c));
                    }
                }
            }
            let mut visit = |v: versions::Versions| -> Result<()> {
                listed_keys.push((v.key.clone(), v.objects.iter().map(|o| o.version.clone()).collect()));
                if found.is_some() {
                    return Ok(());
                }
                files += 1;
                let (file, bytes) = match read_key_file(store.as_ref(), &v) {
                    Ok(f) => f,
                    Err(e) if is_damage(&e) || is_gone(&e) => {
                        unreadable.push(coffer_store::display_chain(&e));
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                if let Some(key) = file.unwrap(password, &v.key)? {
                    match check(&key)? {
                        Some(c) => {
                            found = Some((key, c));
                            opened_with = Some((v.key.clone(), bytes));
                        }
                        None => opened_other = Some(v.key.clone()),
                    }
                }
                Ok(())
            };
            let walked = match keys_listing {
                Some(h) => h
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
                    .and_then(|all| all.into_iter().try_for_each(&mut visit)),
                None => versions::for_each_name(store.as_ref(), &format!("{prefix}keys/"), as_of, &mut visit),
            };
            join();
            let config = config.into_inner();
            (config.unwrap_or_else(|| Err(RepoError::Invalid("the config was not read".into()))), walked)
        });
        // No repository (or an unreadable config) first, as before the two ran side by side.
        let (_, config_versions) = config?;
        walked?;
        if let Some((key, config)) = found {
            if let (Some(path), Some((name, bytes))) = (hint, &opened_with) {
                crate::cache::write_key_hint(path, name, bytes);
            }
            let repo = Self::assemble(store, location, prefix, key, config, clock, as_of);
            if as_of.is_none() {
                let listing = MetaListing { at: std::time::Instant::now(), config: config_versions, keys: listed_keys };
                *repo.meta_listed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(listing);
            }
            return Ok(repo);
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
            ledger_cache: std::sync::Mutex::default(),
            ledger_append: std::sync::Mutex::default(),
            meta_cache: None,
            cache_bypass: std::sync::atomic::AtomicBool::new(false),
            catalog_off: std::sync::atomic::AtomicBool::new(false),
            relist_after: DEFAULT_RELIST_AFTER,
            dicts: std::sync::Mutex::default(),
            meta_listed: std::sync::Mutex::default(),
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
            out.push((v.key.clone(), read_key_file(self.store.as_ref(), &v)?.0));
            Ok(())
        })?;
        Ok(out)
    }
}

/// Reads the key file `v` names: the version whose bytes hash to its name.
fn read_key_file(store: &dyn ObjectStore, v: &versions::Versions) -> Result<(KeyFile, Vec<u8>)> {
    let k = &v.key;
    let id: Id = k.rsplit('/').next().unwrap_or("").parse().map_err(|e: String| RepoError::corrupt(k.clone(), e))?;
    let (bytes, _) = hashed_version(store, v, &id, None)?.ok_or_else(|| {
        RepoError::corrupt(k.clone(), format!("none of its {} versions matches its name", v.objects.len()))
    })?;
    let file =
        serde_json::from_slice(&bytes).map_err(|e| RepoError::corrupt(k.clone(), format!("bad key file: {e}")))?;
    Ok((file, bytes))
}
