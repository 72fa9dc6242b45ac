//! Lock dates and lock extension: the lock date for a snapshot's expiry, the lock state of
//! an object's versions, and extending every version of a key (and the config and key files).
//!
//! Invariant guarded here: locks only grow; every version of a key a reader may need is
//! extended, and a key with no object version is reported so its blobs are uploaded again.

use super::*;

impl Repository {
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

    /// The earliest lock end among the object versions of `key`: what a reuse must extend
    /// if short. `None` when it has none (or one has no lock).
    pub(super) fn locked_until(&self, key: &str) -> Result<Option<Timestamp>> {
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
        self.extend_these(key, versions.into_iter().map(|v| (v.version, v.retention)).collect(), until)
    }

    /// [`Repository::extend_versions`] for versions of `key` a listing of this process
    /// already returned ([`MetaListing`]): each one's lock is read
    /// ([`ObjectStore::version_retention`], one `HeadObject` on S3) without listing `key`
    /// again. One gone since (pruned) is skipped.
    fn extend_listed(&self, key: &str, listed: &[VersionId], until: Timestamp) -> Result<Option<(Timestamp, u64)>> {
        self.writable()?;
        let mut versions = Vec::with_capacity(listed.len());
        for v in listed {
            match self.store.version_retention(key, v) {
                Ok(r) => versions.push((v.clone(), r)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(RepoError::store(format!("cannot read the locks of {key}"))(e)),
            }
        }
        self.extend_these(key, versions, until)
    }

    fn extend_these(
        &self,
        key: &str,
        versions: Vec<(VersionId, Option<Retention>)>,
        until: Timestamp,
    ) -> Result<Option<(Timestamp, u64)>> {
        if versions.is_empty() {
            return Ok(None);
        }
        let mut current = Timestamp::MAX;
        let (mut extended, mut alive) = (0, 0);
        for (version, retention) in versions {
            let had = retention.map_or(Timestamp::MIN, |r| r.until);
            if had >= until {
                alive += 1;
                current = current.min(had);
                continue;
            }
            let want = Retention { mode: self.config.retention.mode, until };
            match self.store.put_retention(key, &version, Some(want), false) {
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

    /// Extends the locks of the config, every key file and every compression dictionary
    /// (all their versions) to at least `until`, so the repository stays readable as long as
    /// what it holds: a blob compressed with a dictionary is no older than the dictionary,
    /// and every backup that writes or reuses one comes through here.
    ///
    /// # Errors
    /// Store errors.
    pub(crate) fn extend_meta_to(&self, until: Timestamp) -> Result<()> {
        let mut keys = Vec::new();
        // The config's and key files' versions as `open` listed them, when it did so
        // recently: on S3 that saves three `ListObjectVersions` per backup (the config, the
        // key files, each key file's versions), whose cost grows with the bucket on some
        // servers (moto scans every version of the bucket per listing). A version added
        // since (a key file added while this backup ran) is extended by the next backup; it
        // carries its own lock until then. Otherwise, list them now.
        let fresh = self.meta_listed().filter(|m| m.at.elapsed() < MetaListing::FRESH);
        match fresh {
            Some(m) => {
                self.extend_listed(&format!("{}config", self.prefix), &m.config, until)?;
                for (key, listed) in &m.keys {
                    self.extend_listed(key, listed, until)?;
                }
            }
            None => {
                keys.push(format!("{}config", self.prefix));
                self.for_each_name(&format!("{}keys/", self.prefix), |k| {
                    keys.push(k);
                    Ok(())
                })?;
            }
        }
        // Without a point in time (writers have none): key files hidden by markers count too.
        // Dictionaries only where `init` chose them: in any other repository an object under
        // `dicts/` is nobody's (a rogue writer's), and extending it would keep it forever.
        let dirs: &[&str] = if self.config.dictionary { &["dicts/"] } else { &[] };
        for dir in dirs {
            self.for_each_name(&format!("{}{dir}", self.prefix), |k| {
                keys.push(k);
                Ok(())
            })?;
        }
        for key in keys {
            self.extend_versions(&key, until)?;
        }
        Ok(())
    }
}

/// The versions of the config and of every key file, as `open` listed them (as the store is
/// now: never for a handle opened as of a past time). Only a writer extending their locks
/// uses it ([`Repository::extend_meta_to`]), and only while [`MetaListing::FRESH`]: reads
/// always list.
#[derive(Clone, Debug)]
pub(super) struct MetaListing {
    /// When the listing was made.
    pub(super) at: std::time::Instant,
    /// The config's object versions.
    pub(super) config: Vec<VersionId>,
    /// Every key file (its storage key) with its object versions.
    pub(super) keys: Vec<(String, Vec<VersionId>)>,
}

impl MetaListing {
    /// How long a listing is reused: a backup's index checkpoints within this time extend
    /// what `open` listed; a long backup, or a long-lived handle, lists again.
    pub(super) const FRESH: std::time::Duration = std::time::Duration::from_secs(600);
}
