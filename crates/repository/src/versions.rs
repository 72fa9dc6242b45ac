//! Which version of a name a reader believes.
//!
//! Invariant guarded: **a rogue writer can neither stop a restore nor aim it.** The backup
//! host holds the writer's credentials and the password, so it can add versions under any
//! name and delete markers on any key; it cannot remove a locked version. Readers therefore
//! never take "the latest version" on trust:
//!
//! - listings come from the store's *version* listing, so a delete marker hides nothing;
//! - a content-addressed name (`keys/`, `index/`, `snapshots/`, `data/`, `ledger/`) is read from a
//!   version whose content hashes to the name — any such version, since they are equal;
//! - a name Coffer writes once but that is not its content's hash (`config`, finished WAL
//!   files) is read from its **first** version that authenticates: version order and
//!   creation time are assigned by the store, not by the writer, and an honest writer never
//!   writes such a name twice;
//! - a `.partial` WAL segment grows by new versions, each extending the one before: the
//!   newest version that extends the first authentic one is read, one that does not is
//!   skipped (and reported by `verify`);
//! - with a point in time (`--as-of`), only versions the store created at or before it
//!   exist: later names, later versions and later keys are invisible, whatever they claim.
//!
//! The rules per object kind are written down in `docs/design.md` ("Which version a reader
//! reads"). Everything here is a property of the repository layer: every source (files,
//! PostgreSQL, later ones) reads through it.

use crate::error::{RepoError, Result};
use coffer_store::{ListEntry, ObjectStore};
use jiff::Timestamp;

/// The versions of one name that a reader may consider.
#[derive(Clone, Debug, Default)]
pub struct Versions {
    /// The storage key.
    pub key: String,
    /// Object versions (not delete markers) created at or before the point in time, oldest
    /// first.
    pub objects: Vec<ListEntry>,
    /// Delete markers created at or before the point in time, oldest first.
    pub markers: Vec<ListEntry>,
    /// Versions and markers created after the point in time (ignored by reads).
    pub later: Vec<ListEntry>,
}

impl Versions {
    fn push(&mut self, e: ListEntry, as_of: Option<Timestamp>) {
        if as_of.is_some_and(|t| e.created > t) {
            self.later.push(e);
        } else if e.delete_marker {
            self.markers.push(e);
        } else {
            self.objects.push(e);
        }
    }

    /// Sorts oldest first (listings give newest first). The store's order is by creation;
    /// version ids only break ties.
    fn finish(mut self) -> Self {
        for v in [&mut self.objects, &mut self.markers, &mut self.later] {
            v.reverse();
            v.sort_by_key(|a| a.created);
        }
        self
    }
}

/// Calls `f` with the versions of every name under `prefix` that has an object version at
/// or before `as_of` (all of them without `as_of`), in key order, whatever its latest
/// version is: a delete marker hides nothing from a reader. Pages through the store's
/// version listing, one page in memory at a time.
///
/// # Errors
/// Store errors listing; `f`'s errors.
pub fn for_each_name(
    store: &dyn ObjectStore,
    prefix: &str,
    as_of: Option<Timestamp>,
    f: impl FnMut(Versions) -> Result<()>,
) -> Result<()> {
    walk(store, prefix, as_of, false, f)
}

/// As [`for_each_name`], but also names with no object version at or before `as_of` (only
/// delete markers, or only later versions): for `verify`, which reports them.
///
/// # Errors
/// As [`for_each_name`].
pub fn for_each_name_all(
    store: &dyn ObjectStore,
    prefix: &str,
    as_of: Option<Timestamp>,
    f: impl FnMut(Versions) -> Result<()>,
) -> Result<()> {
    walk(store, prefix, as_of, true, f)
}

fn walk(
    store: &dyn ObjectStore,
    prefix: &str,
    as_of: Option<Timestamp>,
    all: bool,
    mut f: impl FnMut(Versions) -> Result<()>,
) -> Result<()> {
    let mut token: Option<String> = None;
    let mut cur = Versions::default();
    let emit = |v: Versions, f: &mut dyn FnMut(Versions) -> Result<()>| -> Result<()> {
        let v = v.finish();
        if v.objects.is_empty() && !all { Ok(()) } else { f(v) }
    };
    loop {
        let page = store
            .list_version_entries(prefix, token.as_deref(), 1000)
            .map_err(RepoError::store(format!("cannot list {prefix}")))?;
        for e in page.items {
            if e.key != cur.key {
                let done = std::mem::replace(&mut cur, Versions { key: e.key.clone(), ..Versions::default() });
                if !done.key.is_empty() {
                    emit(done, &mut f)?;
                }
            }
            cur.push(e, as_of);
        }
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    if !cur.key.is_empty() {
        emit(cur, &mut f)?;
    }
    Ok(())
}

/// Every name under `prefix` with an object version at or before `as_of`, and each name's
/// versions and delete markers (see [`for_each_name`]). Names with only delete markers, or
/// only versions after `as_of`, are left out.
///
/// # Errors
/// Store errors listing.
pub fn names(store: &dyn ObjectStore, prefix: &str, as_of: Option<Timestamp>) -> Result<Vec<Versions>> {
    let mut out = Vec::new();
    for_each_name(store, prefix, as_of, |v| {
        out.push(v);
        Ok(())
    })?;
    Ok(out)
}

/// The versions of exactly `key` (not of longer keys it is a prefix of).
///
/// # Errors
/// Store errors listing.
pub fn versions_of(store: &dyn ObjectStore, key: &str, as_of: Option<Timestamp>) -> Result<Versions> {
    let mut out = Versions { key: key.to_owned(), ..Versions::default() };
    let mut token: Option<String> = None;
    loop {
        let page = store
            .list_version_entries(key, token.as_deref(), 1000)
            .map_err(RepoError::store(format!("cannot list the versions of {key}")))?;
        let mut past = false;
        for e in page.items {
            // Keys are listed in order and `key` sorts before every longer key it prefixes.
            if e.key != key {
                past = true;
                break;
            }
            out.push(e, as_of);
        }
        match page.next {
            Some(t) if !past => token = Some(t),
            _ => break,
        }
    }
    Ok(out.finish())
}
