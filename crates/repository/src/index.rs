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
use std::hash::BuildHasher as _;

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
///
/// Memory: each pack's entries are held once, in its [`PackInfo::blobs`]; the lookup by blob
/// id is a table of `(pack, entry)` positions (8 bytes a slot) hashed by the id it points
/// at, instead of a map repeating the 32-byte id and the entry beside the pack's copy (about
/// 200 bytes a blob before, about 60 now: a restore of 500 000 small files held the index of
/// every blob of the repository). The hash is keyed per process (`RandomState`): blob ids
/// read from an index object are hostile input, and ids chosen to collide must not turn the
/// table's lookups into a linear search.
#[derive(Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    by_pack: HashMap<Id, usize>,
    /// `(pack, entry)` of the entry each blob id is looked up in.
    blobs: hashbrown::HashTable<(u32, u32)>,
    hasher: std::hash::RandomState,
    damaged: Vec<(String, String)>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("packs", &self.packs.len())
            .field("blobs", &self.blobs.len())
            .field("damaged", &self.damaged)
            .finish_non_exhaustive()
    }
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
    /// packs is looked up in the one locked longest. A restatement stating entries the pack's
    /// earlier statements did not (no honest one does) adds them, so no statement can hide
    /// another's entries.
    pub fn add_pack(&mut self, p: &IndexPack) {
        match self.by_pack.get(&p.id) {
            Some(&pos) => self.restate(pos, p.retain_until, &p.blobs),
            None => self.add_pack_owned(p.clone()),
        }
    }

    /// As [`Index::add_pack`], taking the pack's entries instead of copying them.
    pub fn add_pack_owned(&mut self, p: IndexPack) {
        if let Some(&pos) = self.by_pack.get(&p.id) {
            return self.restate(pos, p.retain_until, &p.blobs);
        }
        self.packs.push(PackInfo { id: p.id, size: p.size, retain_until: p.retain_until, blobs: p.blobs });
        let pos = self.packs.len() - 1;
        self.by_pack.insert(p.id, pos);
        self.look_up(pos);
    }

    /// A further statement of the known pack `pos`.
    fn restate(&mut self, pos: usize, until: Timestamp, blobs: &[PackEntry]) {
        let known = &mut self.packs[pos];
        known.retain_until = known.retain_until.max(until);
        if known.blobs != blobs {
            let ids: std::collections::HashSet<Id> = known.blobs.iter().map(|e| e.id).collect();
            known.blobs.extend(blobs.iter().filter(|e| !ids.contains(&e.id)));
        }
        // A longer lock may make this pack the better place of blobs known elsewhere.
        self.look_up(pos);
    }

    /// Makes the entries of pack `pos` findable, where this pack is the best
    /// place of their blob (the one locked longest).
    fn look_up(&mut self, pos: usize) {
        // Positions are u32 (half the table): 4 billion packs, or entries in one pack, do
        // not fit in memory anyway; anything past that is left unindexed rather than wrapped.
        let Ok(pos32) = u32::try_from(pos) else { return };
        let Self { packs, blobs, hasher, .. } = self;
        let until = packs[pos].retain_until;
        let at = |&(p, e): &(u32, u32)| &packs[p as usize].blobs[e as usize];
        for (i, e) in packs[pos].blobs.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            let hash = hasher.hash_one(e.id);
            match blobs.find_mut(hash, |slot| at(slot).id == e.id) {
                None => {
                    blobs.insert_unique(hash, (pos32, i), |slot| hasher.hash_one(at(slot).id));
                }
                Some(slot) => {
                    if slot.0 != pos32 && packs[slot.0 as usize].retain_until < until {
                        *slot = (pos32, i);
                    }
                }
            }
        }
    }

    /// Looks a blob up.
    #[must_use]
    pub fn get(&self, id: &Id) -> Option<BlobRef> {
        let (p, e) = self.slot(id)?;
        Some(BlobRef { pack: p, entry: self.packs[p].blobs[e] })
    }

    /// Where the index looks blob `id` up: (position of the pack, position of the entry in
    /// its [`PackInfo::blobs`]). Equal for equal ids, so a caller can keep a bit per entry
    /// instead of a set of ids.
    #[must_use]
    pub fn slot(&self, id: &Id) -> Option<(usize, usize)> {
        let hash = self.hasher.hash_one(id);
        self.blobs
            .find(hash, |&(p, e)| self.packs[p as usize].blobs[e as usize].id == *id)
            .map(|&(p, e)| (p as usize, e as usize))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::BlobKind;

    fn entry(n: u8, offset: u32) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id: Id([n; 32]),
            offset,
            length: 100,
            raw_length: 60,
            group: crate::pack::InGroup::NONE,
        }
    }

    fn pack(n: u8, until: &str, blobs: Vec<PackEntry>) -> IndexPack {
        IndexPack { id: Id([n; 32]), size: 1000, retain_until: until.parse().unwrap(), blobs }
    }

    /// Each blob is found in the pack locked longest, with that pack's entry; restating a
    /// pack with a later lock moves its blobs there; a restatement adds the entries no
    /// earlier statement made (none can hide another's) and duplicates none.
    #[test]
    fn blobs_are_found_once_in_the_pack_locked_longest() {
        let mut index = Index::default();
        index.add_pack(&pack(200, "2030-01-01T00:00:00Z", vec![entry(1, 0), entry(2, 100)]));
        index.add_pack_owned(pack(201, "2030-02-01T00:00:00Z", vec![entry(2, 500), entry(3, 600)]));
        assert_eq!(index.blob_count(), 3);
        let at = |index: &Index, n: u8| index.get(&Id([n; 32])).map(|r| (index.pack(r.pack).id.0[0], r.entry.offset));
        assert_eq!([at(&index, 1), at(&index, 2), at(&index, 3)], [Some((200, 0)), Some((201, 500)), Some((201, 600))]);
        assert_eq!(at(&index, 4), None);
        assert_eq!(index.slot(&Id([2; 32])), Some((1, 0)));

        // Pack 200 restated, locked longer, with one more entry: blob 2 moves back to it.
        index.add_pack(&pack(200, "2030-03-01T00:00:00Z", vec![entry(1, 0), entry(2, 100), entry(4, 200)]));
        assert_eq!([at(&index, 2), at(&index, 4)], [Some((200, 100)), Some((200, 200))]);
        assert_eq!(index.pack(0).blobs.len(), 3, "the new entry added once");
        index.add_pack(&pack(200, "2030-01-01T00:00:00Z", vec![entry(1, 0)]));
        assert_eq!(index.pack(0).blobs.len(), 3, "a shorter statement removes nothing");
        assert_eq!(index.pack(0).retain_until, "2030-03-01T00:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(index.blob_count(), 4);
        assert_eq!(index.packs().len(), 2);
    }

    /// Many blobs: every one is found at its own entry (the table grows and rehashes).
    #[test]
    fn a_large_index_finds_every_blob() {
        let mut index = Index::default();
        for p in 0..50u32 {
            let blobs = (0..1000u32)
                .map(|i| {
                    let mut id = [0u8; 32];
                    id[..4].copy_from_slice(&p.to_le_bytes());
                    id[4..8].copy_from_slice(&i.to_le_bytes());
                    PackEntry {
                        kind: BlobKind::Data,
                        id: Id(id),
                        offset: i,
                        length: 1,
                        raw_length: 1,
                        group: crate::pack::InGroup::NONE,
                    }
                })
                .collect();
            let mut pid = [0xffu8; 32];
            pid[..4].copy_from_slice(&p.to_le_bytes());
            index.add_pack_owned(IndexPack { id: Id(pid), size: 1, retain_until: Timestamp::UNIX_EPOCH, blobs });
        }
        assert_eq!(index.blob_count(), 50_000);
        for p in 0..50u32 {
            for i in (0..1000u32).step_by(7) {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&p.to_le_bytes());
                id[4..8].copy_from_slice(&i.to_le_bytes());
                let r = index.get(&Id(id)).unwrap();
                assert_eq!((r.pack, r.entry.offset), (p as usize, i));
            }
        }
    }
}
