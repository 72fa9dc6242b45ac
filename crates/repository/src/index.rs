//! The index: which pack holds each blob, and until when each pack is locked.
//!
//! Invariant guarded: a pack's latest statement (its entries and retain-until) is in an
//! index object locked at least as long as the pack itself, so every snapshot can find its
//! blobs for as long as it lives. A backup that extends a pack's lock restates the pack in
//! its own index object, locked as long as the new lock.

use crate::id::Id;
use crate::pack::PackEntry;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One pack as stated in an index object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack id.
    pub id: Id,
    /// Pack size in bytes.
    pub size: u64,
    /// The pack's retain-until as of this statement.
    pub retain_until: Timestamp,
    /// Its blobs.
    pub blobs: Vec<PackEntry>,
}

/// The content of an index object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Packs stated.
    pub packs: Vec<IndexPack>,
}

/// A pack known to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackInfo {
    /// Pack id.
    pub id: Id,
    /// Size in bytes.
    pub size: u64,
    /// Latest known retain-until.
    pub retain_until: Timestamp,
    /// Its blobs.
    pub blobs: Vec<PackEntry>,
}

/// Where a blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRef {
    /// Position of the pack in [`Index::packs`].
    pub pack: usize,
    /// The blob's entry in that pack.
    pub entry: PackEntry,
}

/// The merged view of all index objects.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    by_pack: HashMap<Id, usize>,
    blobs: HashMap<Id, BlobRef>,
    damaged: Vec<(String, String)>,
}

impl Index {
    /// Records an index object that could not be read (storage key, why).
    pub fn add_damaged(&mut self, key: String, why: String) {
        self.damaged.push((key, why));
    }

    /// Index objects that could not be read: their packs are unknown to this index, so
    /// backups store that data again and reads of it fail naming them.
    #[must_use]
    pub fn damaged(&self) -> &[(String, String)] {
        &self.damaged
    }

    /// The error for a blob this index does not know.
    #[must_use]
    pub fn missing(&self, id: &Id) -> crate::RepoError {
        let detail = if self.damaged.is_empty() {
            "not in any index".to_owned()
        } else {
            let keys: Vec<&str> = self.damaged.iter().map(|(k, _)| k.as_str()).collect();
            format!("not in any readable index (damaged: {})", keys.join(", "))
        };
        crate::RepoError::corrupt(format!("blob {id}"), detail)
    }

    /// Adds (or restates) a pack. The latest retain-until wins; a blob stored in several
    /// packs is looked up in the one locked longest.
    pub fn add_pack(&mut self, p: &IndexPack) {
        let pos = match self.by_pack.get(&p.id) {
            Some(&pos) => {
                let known = &mut self.packs[pos];
                known.retain_until = known.retain_until.max(p.retain_until);
                pos
            }
            None => {
                self.packs.push(PackInfo {
                    id: p.id,
                    size: p.size,
                    retain_until: p.retain_until,
                    blobs: p.blobs.clone(),
                });
                self.by_pack.insert(p.id, self.packs.len() - 1);
                self.packs.len() - 1
            }
        };
        let until = self.packs[pos].retain_until;
        for e in &p.blobs {
            let better = match self.blobs.get(&e.id) {
                None => true,
                Some(cur) => cur.pack != pos && self.packs[cur.pack].retain_until < until,
            };
            if better {
                self.blobs.insert(e.id, BlobRef { pack: pos, entry: *e });
            }
        }
    }

    /// Looks a blob up.
    #[must_use]
    pub fn get(&self, id: &Id) -> Option<BlobRef> {
        self.blobs.get(id).copied()
    }

    /// A pack by position.
    #[must_use]
    pub fn pack(&self, pos: usize) -> &PackInfo {
        &self.packs[pos]
    }

    /// A pack by id.
    #[must_use]
    pub fn pack_by_id(&self, id: &Id) -> Option<&PackInfo> {
        self.by_pack.get(id).map(|&p| &self.packs[p])
    }

    /// Records a longer lock on a pack.
    pub fn extend(&mut self, pos: usize, until: Timestamp) {
        let p = &mut self.packs[pos];
        p.retain_until = p.retain_until.max(until);
    }

    /// All packs.
    #[must_use]
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// Number of distinct blobs.
    #[must_use]
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }
}
