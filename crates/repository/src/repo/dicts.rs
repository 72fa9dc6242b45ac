//! The repository's compression dictionaries (`dicts/ID`, see [`crate::dict`]): listed and
//! read once per handle, on first need, checked against their names; stored by the backup
//! that trains one.
//!
//! Invariant guarded here: a dictionary is read only from a version whose bytes hash to its
//! name, and is written with the lock of the backup that needs it (later backups extend it,
//! `Repository::extend_meta_to`).

use super::*;
use crate::dict::{self, Dictionaries, Dictionary};

/// The dictionaries a handle has loaded (`None`: not yet listed).
pub(super) type Loaded = std::sync::Mutex<Option<Vec<&'static Dictionary>>>;

impl Repository {
    /// Every dictionary of the repository, listed and read on first use. A dictionary object
    /// that cannot be read is an error naming it (a blob that needs it cannot be read).
    fn dictionaries(&self, reload: bool) -> Result<Vec<&'static Dictionary>> {
        let mut loaded = self.dicts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = loaded.as_ref().filter(|_| !reload) {
            return Ok(d.clone());
        }
        let mut out = Vec::new();
        let prefix = format!("{}dicts/", self.prefix);
        let mut names = Vec::new();
        self.for_each_name(&prefix, |k| {
            names.push(k);
            Ok(())
        })?;
        for key in names {
            let Some(id) = key.strip_prefix(&prefix).and_then(|h| h.parse::<Id>().ok()) else { continue };
            let bytes = self.get_hashed(&key, &id)?;
            out.push(dict::open(&self.key, id, &bytes, &key)?);
        }
        *loaded = Some(out.clone());
        Ok(out)
    }

    /// The dictionary a backup compresses small blobs with: the repository's first (by id),
    /// if it has one. A dictionary that cannot be read is passed over: the backup then
    /// stores without it, as before dictionaries, rather than failing (`verify` reports the
    /// damaged object, and reads of blobs that need it fail naming it).
    pub(super) fn writer_dictionary(&self) -> Option<&'static Dictionary> {
        self.dictionaries(false).ok().and_then(|d| d.first().copied())
    }

    /// Stores a dictionary trained by a backup, locked until `until`, and makes it known to
    /// this handle.
    pub(crate) fn store_dictionary(&self, bytes: &[u8], until: Timestamp) -> Result<&'static Dictionary> {
        let (sealed, id) = dict::seal(&self.key, bytes);
        self.put(&format!("{}dicts/{id}", self.prefix), &sealed, until)?;
        let d = dict::intern(id, bytes);
        let mut loaded = self.dicts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = loaded.get_or_insert_with(Vec::new);
        if !list.iter().any(|x| x.id() == id) {
            list.push(d);
        }
        Ok(d)
    }
}

impl Dictionaries for Repository {
    fn with_short(&self, short: [u8; 4]) -> Result<Vec<&'static Dictionary>> {
        let pick = |all: Vec<&'static Dictionary>| -> Vec<&'static Dictionary> {
            all.into_iter().filter(|d| d.short() == short).collect()
        };
        let found = pick(self.dictionaries(false)?);
        if !found.is_empty() {
            return Ok(found);
        }
        // Stored since this handle listed them (another process's backup): list once more.
        let found = pick(self.dictionaries(true)?);
        if found.is_empty() {
            return Err(RepoError::Invalid(format!("no dictionary {}… in {}dicts/", hex::encode(short), self.prefix)));
        }
        Ok(found)
    }
}
