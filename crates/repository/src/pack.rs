//! Blobs, packs and the object envelope: the byte layouts of repository format 1.
//!
//! Invariant guarded: every blob and object read back is authenticated and checked against
//! its id before use (see `docs/design.md`, "Byte layouts").
//!
//! - **Blob** (a chunk of file data or a tree): plaintext `flag ‖ payload`, flag 0 = stored,
//!   1 = zstd; sealed with associated data `kind ‖ blob id`. Compression is skipped when it
//!   saves less than 1/32 of the size (already-compressed data), judged for large blobs by
//!   a probe of three samples before the whole blob is compressed.
//! - **Pack**: `blob… ‖ header ‖ u32 LE header length ‖ "CFRP" ‖ version`, the header being
//!   the sealed list of [`PackEntry`]s, so a pack describes itself and indexes can be rebuilt
//!   from packs alone. Version 1: JSON (associated data `"coffer pack header"`); version 2
//!   (written since issue 16): a compact binary list ([`encode_header`]), associated data
//!   `"coffer pack header" ‖ 2`; version 3: the same with group records, for packs holding
//!   a group. All are read; a newer version is refused (`NewerFormat`).
//! - **Group** (pack version 3, issue 16): small blobs of one kind compressed together in
//!   one zstd frame and sealed as one unit ([`seal_group`]); each keeps its id and is found
//!   by its group's range and its offset inside the group ([`InGroup`]). Readers bound the
//!   declared size ([`GROUP_MAX`]), refuse bombs and out-of-range offsets, check every
//!   blob against its id, and open each group once per thread while reading a pack's blobs
//!   in order ([`cached_grouped`]). Ceiling-safe: a group lives and expires with its pack.
//! - **Envelope** (config, index, snapshot objects): `"CFR" ‖ version ‖ kind ‖ sealed JSON`,
//!   associated data `"coffer object" ‖ version ‖ kind`. The version byte is readable
//!   without the key, so a newer repository is refused with a clear error before any
//!   password is tried.

use crate::crypto::MasterKey;
use crate::dict::{DICT_BLOB_MAX, Dictionaries, Dictionary, NoDictionaries};
use crate::error::{RepoError, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};
use std::fmt::Display;

/// The repository format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;
/// The pack layout version this build writes and the newest it reads (the trailer's last
/// byte): 1 = JSON header, 2 = compact binary header (issue 16). Both are read.
pub const PACK_VERSION: u8 = 3;
const PACK_MAGIC: &[u8; 4] = b"CFRP";
const ENVELOPE_MAGIC: &[u8; 3] = b"CFR";
const ZSTD_LEVEL: i32 = 3;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// A chunk of file content.
    Data,
    /// A directory tree.
    Tree,
}

impl BlobKind {
    fn byte(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::Tree => 1,
        }
    }
}

/// Where one blob sits in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Kind.
    pub kind: BlobKind,
    /// Blob id (keyed hash of the plaintext).
    pub id: Id,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
    /// For a blob compressed in a group with its neighbours (pack version 3): where it
    /// starts in the group's plaintext; `offset` and `length` are then the group's.
    #[serde(default, rename = "group_offset", skip_serializing_if = "InGroup::is_none")]
    pub group: InGroup,
}

impl PackEntry {
    /// Bytes of the pack this blob costs: its sealed length, or for a grouped blob its
    /// plaintext length at most (its share of the group is not known from one entry).
    #[must_use]
    pub fn stored_len(&self) -> u32 {
        if self.group.is_none() { self.length } else { self.length.min(self.raw_length) }
    }
}

/// Where a grouped blob starts in its group's plaintext, or nothing for a blob sealed
/// alone. Three bytes (0 = alone, else offset + 1), so a [`PackEntry`] stays 48 bytes in
/// memory: the index holds one per blob of the repository. Offsets are below
/// [`GROUP_MAX`]; in JSON (index objects) it is the plain offset, absent when alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InGroup([u8; 3]);

impl InGroup {
    /// A blob sealed alone.
    pub const NONE: Self = Self([0; 3]);

    /// A blob at `offset` of its group's plaintext; `None` past [`GROUP_MAX`].
    #[must_use]
    pub fn at(offset: u32) -> Option<Self> {
        if offset as usize >= GROUP_MAX {
            return None;
        }
        let b = (offset + 1).to_le_bytes();
        Some(Self([b[0], b[1], b[2]]))
    }

    /// The offset in the group, if grouped.
    #[must_use]
    pub fn get(self) -> Option<u32> {
        let v = u32::from_le_bytes([self.0[0], self.0[1], self.0[2], 0]);
        v.checked_sub(1)
    }

    /// Whether the blob is sealed alone.
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.0 == [0; 3]
    }
}

impl Serialize for InGroup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.get() {
            Some(o) => s.serialize_u32(o),
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for InGroup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // Hostile input (an index object): an offset no group can have is refused.
        let o = u32::deserialize(d)?;
        Self::at(o).ok_or_else(|| serde::de::Error::custom(format!("group offset {o} out of range")))
    }
}

fn blob_aad(kind: BlobKind, id: &Id) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = kind.byte();
    aad[1..].copy_from_slice(&id.0);
    aad
}

/// Compresses (when worth it) and seals one blob.
///
/// Built in one buffer, allocated once at its final size: nonce space, the flag, the payload
/// compressed straight into place (or copied, when compression does not pay), then sealed in
/// place. Three copies of every blob were most of a backup's memory traffic.
#[must_use]
pub fn seal_blob(key: &MasterKey, kind: BlobKind, id: &Id, plaintext: &[u8]) -> Vec<u8> {
    seal_blob_with(key, kind, id, plaintext, None)
}

/// [`seal_blob`], compressing a small data blob with the repository's dictionary when one
/// is given (flag 2): `flag ‖ dictionary ref (4) ‖ zstd frame without its magic number` (and
/// without a dictionary id: the ref names it). Kept only when it saves the same 1/32 as
/// flag 1.
#[must_use]
pub fn seal_blob_with(
    key: &MasterKey,
    kind: BlobKind,
    id: &Id,
    plaintext: &[u8],
    dict: Option<&'static Dictionary>,
) -> Vec<u8> {
    use crate::crypto::{NONCE_SPACE, SEAL_OVERHEAD};
    let dict = dict.filter(|_| kind == BlobKind::Data && !plaintext.is_empty() && plaintext.len() <= DICT_BLOB_MAX);
    let head = NONCE_SPACE + 1;
    let mut buf = Vec::with_capacity(SEAL_OVERHEAD + 5 + zstd::zstd_safe::compress_bound(plaintext.len()));
    buf.resize(head, 0);
    // One compression context per thread: creating one per blob costs more than small blobs.
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
        static DICT_COMPRESSOR: std::cell::RefCell<Option<(Id, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let into = |c: &mut zstd::bulk::Compressor<'static>, buf: &mut Vec<u8>| {
        let mut out = std::io::Cursor::new(buf);
        out.set_position(head as u64);
        match c.compress_to_buffer(plaintext, &mut out) {
            Ok(n) => n + plaintext.len() / 32 < plaintext.len(),
            Err(_) => false,
        }
    };
    let compressed = if let Some(d) = dict {
        DICT_COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_none_or(|(cur, _)| *cur != d.id()) {
                *c = dict_compressor(d).map(|comp| (d.id(), comp));
            }
            c.as_mut().is_some_and(|(_, comp)| into(comp, &mut buf))
        })
    } else {
        !looks_incompressible(plaintext)
            && COMPRESSOR.with(|c| {
                let mut c = c.borrow_mut();
                if c.is_none() {
                    *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
                }
                c.as_mut().is_some_and(|c| into(c, &mut buf))
            })
    };
    match dict {
        Some(d) if compressed => {
            // The frame's magic number becomes the dictionary ref: 4 bytes a blob saved.
            buf[NONCE_SPACE] = 2;
            buf[head..head + 4].copy_from_slice(&d.short());
        }
        _ if compressed => buf[NONCE_SPACE] = 1,
        _ => {
            buf.truncate(NONCE_SPACE + 1);
            buf[NONCE_SPACE] = 0;
            buf.extend_from_slice(plaintext);
        }
    }
    key.seal_in_place(&blob_aad(kind, id), &mut buf);
    buf
}

/// The largest data blob a reader accepts (the decompression's capacity is the index's
/// raw length, hostile): 8 times the chunker's largest chunk (8 MiB), so larger chunks stay
/// possible without a format change.
pub const DATA_BLOB_MAX: usize = 64 << 20;
/// The largest tree blob a reader accepts: a tree is one directory's JSON, about 200 bytes
/// an entry, so this is a directory of about five million entries.
pub const TREE_BLOB_MAX: usize = 1 << 30;

/// The most plaintext a group may hold: a reader's bound (allocation, decompression bomb),
/// above what writers make ([`GROUP_TARGET`] plus one blob of [`GROUP_BLOB_MAX`]).
pub const GROUP_MAX: usize = 1 << 20;
/// Blobs up to this size are compressed in groups (pack version 3).
pub const GROUP_BLOB_MAX: usize = 32 << 10;
/// A writer closes a group once it holds this much plaintext. Measured on the mail spool of
/// the scale benchmark: see `docs/design.md`, "Groups".
pub const GROUP_TARGET: usize = 128 << 10;
/// The bytes a group's plaintext starts with: flag (1) and declared size (u32 LE).
const GROUP_HEAD: usize = 5;

fn group_aad(kind: BlobKind) -> [u8; 18] {
    let mut aad = [0u8; 18];
    aad[..17].copy_from_slice(b"coffer blob group");
    aad[17] = kind.byte();
    aad
}

/// Compresses `blobs` (of one kind) together and seals them as one group: plaintext
/// `flag (1 = zstd) ‖ declared size (u32 LE) ‖ zstd frame of the blobs back to back`, sealed
/// with associated data `"coffer blob group" ‖ kind`. `None` when that does not save 1/32
/// of the plaintext (then the blobs are sealed alone, as before groups), or when the blobs
/// are more than a group may hold.
#[must_use]
pub fn seal_group(key: &MasterKey, kind: BlobKind, blobs: &[&[u8]]) -> Option<Vec<u8>> {
    use crate::crypto::{NONCE_SPACE, SEAL_OVERHEAD};
    let total: usize = blobs.iter().map(|b| b.len()).sum();
    if total > GROUP_MAX || blobs.is_empty() {
        return None;
    }
    thread_local! {
        static GROUP_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let head = NONCE_SPACE + GROUP_HEAD;
    let mut buf = Vec::with_capacity(SEAL_OVERHEAD + GROUP_HEAD + zstd::zstd_safe::compress_bound(total));
    buf.resize(head, 0);
    buf[NONCE_SPACE] = 1;
    buf[NONCE_SPACE + 1..head].copy_from_slice(&u32::try_from(total).ok()?.to_le_bytes());
    // The blobs side by side (a copy of at most a group), compressed straight into place.
    let joined = blobs.concat();
    let ok = GROUP_COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        let mut out = std::io::Cursor::new(&mut buf);
        out.set_position(head as u64);
        c.as_mut().is_some_and(|c| c.compress_to_buffer(&joined, &mut out).is_ok())
    });
    if !ok || (buf.len() - head) + total / 32 >= total {
        return None;
    }
    key.seal_in_place(&group_aad(kind), &mut buf);
    Some(buf)
}

/// Opens a sealed group (see [`seal_group`]): its plaintext, the blobs back to back.
/// Hostile input: the declared size is bounded by [`GROUP_MAX`] before anything is
/// allocated, and a frame that decompresses to more or less than declared is refused.
fn open_group(key: &MasterKey, kind: BlobKind, mut sealed: Vec<u8>, what: &dyn Fn() -> String) -> Result<Vec<u8>> {
    let framed = key
        .open_in_place(&group_aad(kind), &mut sealed)
        .ok_or_else(|| RepoError::corrupt(what(), "its group does not authenticate"))?;
    let plain = &sealed[framed];
    let (&flag, rest) = plain.split_first().ok_or_else(|| RepoError::corrupt(what(), "empty group"))?;
    if flag != 1 {
        // Authenticated: a newer Coffer's group layout.
        return Err(RepoError::NewerFormat { object: what(), found: flag, supported: 1 });
    }
    let declared: [u8; 4] =
        rest.get(..4).and_then(|s| s.try_into().ok()).ok_or_else(|| RepoError::corrupt(what(), "truncated group"))?;
    let declared = u32::from_le_bytes(declared) as usize;
    if declared > GROUP_MAX {
        return Err(RepoError::corrupt(what(), format!("its group declares {declared} bytes, more than {GROUP_MAX}")));
    }
    thread_local! {
        static GROUP_DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let out = GROUP_DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = zstd::bulk::Decompressor::new().ok();
            }
            // Capacity: the declared size; a frame producing more fails here (a bomb).
            match d.as_mut() {
                Some(d) => d.decompress(&rest[4..], declared),
                None => zstd::bulk::decompress(&rest[4..], declared),
            }
        })
        .map_err(|e| RepoError::corrupt(what(), format!("bad compression of its group: {e}")))?;
    if out.len() != declared {
        return Err(RepoError::corrupt(
            what(),
            format!("its group holds {} bytes, not the {declared} declared", out.len()),
        ));
    }
    Ok(out)
}

/// The group this thread opened last, kept so that the next blob of the same group (a
/// restore reads a pack's blobs in order) is cut out of it instead of decrypting and
/// decompressing the group again: each group is opened once, not once per blob.
struct LastGroup {
    /// The pack's name (the reader's context), the group's range in it and its kind.
    pack: String,
    offset: u32,
    length: u32,
    kind: BlobKind,
    plain: Vec<u8>,
}

#[cfg(test)]
thread_local! {
    /// Groups this thread decrypted and decompressed (tests: once per group, not per blob).
    static GROUPS_OPENED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

thread_local! {
    static LAST_GROUP: std::cell::RefCell<Option<LastGroup>> = const { std::cell::RefCell::new(None) };
}

/// A grouped blob cut out of the group this thread opened last, if that is `entry`'s group
/// (in the pack named `context`); `None` for a blob sealed alone or another group. Lets a
/// reader skip reading the group's bytes again.
///
/// Safe against a forged or reused name: the blob's plaintext is checked against its id.
#[must_use]
pub fn cached_grouped(key: &MasterKey, entry: &PackEntry, context: impl Display) -> Option<Result<Vec<u8>>> {
    entry.group.get()?;
    let pack = context.to_string();
    LAST_GROUP.with(|g| {
        let g = g.borrow();
        let g = g.as_ref()?;
        (g.pack == pack && g.offset == entry.offset && g.length == entry.length && g.kind == entry.kind)
            .then(|| blob_in_group(key, entry, &g.plain, &pack))
    })
}

/// A grouped blob: its group opened (or taken from this thread's last), the blob cut out
/// and checked against its id.
fn open_grouped(key: &MasterKey, entry: &PackEntry, sealed: Vec<u8>, context: impl Display) -> Result<Vec<u8>> {
    if let Some(r) = cached_grouped(key, entry, &context) {
        return r;
    }
    let pack = context.to_string();
    let what = || format!("{:?} blob {} in {pack}", entry.kind, entry.id).to_lowercase();
    let plain = open_group(key, entry.kind, sealed, &what)?;
    #[cfg(test)]
    GROUPS_OPENED.with(|n| n.set(n.get() + 1));
    let out = blob_in_group(key, entry, &plain, &pack);
    LAST_GROUP.with(|g| {
        *g.borrow_mut() = Some(LastGroup { pack, offset: entry.offset, length: entry.length, kind: entry.kind, plain });
    });
    out
}

/// Cuts `entry`'s blob out of its group's plaintext. Hostile input: the offset and length
/// (from an index or a header) must lie inside the group; the bytes must hash to the id.
fn blob_in_group(key: &MasterKey, entry: &PackEntry, group: &[u8], pack: &str) -> Result<Vec<u8>> {
    let what = || format!("{:?} blob {} in {pack}", entry.kind, entry.id).to_lowercase();
    let start = entry.group.get().unwrap_or_default() as usize;
    let plain = group
        .get(start..start.saturating_add(entry.raw_length as usize))
        .ok_or_else(|| RepoError::corrupt(what(), "out of range of its group"))?;
    if key.blob_id(plain) != entry.id {
        return Err(RepoError::corrupt(what(), "content does not match its id"));
    }
    Ok(plain.to_vec())
}

/// A compressor with `d` that leaves the dictionary id out of the frame (the blob's ref
/// names the dictionary).
fn dict_compressor(d: &'static Dictionary) -> Option<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::with_prepared_dictionary(d.encoder()).ok()?;
    c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false)).ok()?;
    Some(c)
}

/// zstd's frame magic number, which a dictionary blob does not store: its 4 bytes hold the
/// dictionary ref instead (put back in place before decompressing).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Blobs at least this large are probed before being compressed whole.
const PROBE_MIN: usize = 256 << 10;
/// The size of each of the three samples a probe compresses.
const PROBE_SAMPLE: usize = 16 << 10;

/// Whether `data` is very likely not worth compressing (already compressed or random),
/// judged by compressing three samples (start, middle, end) at zstd's fastest level: if
/// they save less than 1/32 — the rule [`seal_blob`] applies to the whole blob — the blob is
/// stored uncompressed without spending a full level-3 pass on it. That pass is most of a
/// backup's CPU time, and data such as media, archives and encrypted files would pay it for
/// nothing. Samples of 16 KiB see any redundancy an LZ window of that size finds; data
/// whose only redundancy is at longer distances is stored uncompressed (rare, and only a
/// size cost: the blob id is of the plaintext, so dedup is unaffected).
fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < PROBE_MIN {
        return false;
    }
    thread_local! {
        static PROBE: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    PROBE.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_none() {
            *p = zstd::bulk::Compressor::new(1).ok();
        }
        let Some(p) = p.as_mut() else { return false };
        let mid = data.len() / 2 - PROBE_SAMPLE / 2;
        let mut saved = 0usize;
        for start in [0, mid, data.len() - PROBE_SAMPLE] {
            let sample = &data[start..start + PROBE_SAMPLE];
            match p.compress(sample) {
                Ok(c) => saved += PROBE_SAMPLE.saturating_sub(c.len()),
                Err(_) => return false,
            }
        }
        saved * 32 < 3 * PROBE_SAMPLE
    })
}

/// Opens one blob and checks its plaintext against its id.
///
/// # Errors
/// `Corrupt` naming the blob (and `context`, e.g. its pack) on any mismatch.
pub fn open_blob(key: &MasterKey, entry: &PackEntry, sealed: &[u8], context: impl Display) -> Result<Vec<u8>> {
    open_blob_owned_with(key, &NoDictionaries, entry, sealed.to_vec(), context)
}

/// [`open_blob`] of a blob that may be compressed with one of `dicts`.
///
/// # Errors
/// As [`open_blob`]; a dictionary that cannot be read.
pub fn open_blob_with(
    key: &MasterKey,
    dicts: &dyn Dictionaries,
    entry: &PackEntry,
    sealed: &[u8],
    context: impl Display,
) -> Result<Vec<u8>> {
    if let Some(r) = cached_grouped(key, entry, &context) {
        return r;
    }
    open_blob_owned_with(key, dicts, entry, sealed.to_vec(), context)
}

/// [`open_blob`] of a blob read into a buffer of its own: decrypted where it lies, so the
/// ciphertext is not copied first (a restore reading blob ranges did that for every byte).
/// `context` is formatted only for an error.
///
/// # Errors
/// As [`open_blob`].
pub fn open_blob_owned(key: &MasterKey, entry: &PackEntry, sealed: Vec<u8>, context: impl Display) -> Result<Vec<u8>> {
    open_blob_owned_with(key, &NoDictionaries, entry, sealed, context)
}

/// [`open_blob_owned`] of a blob that may be compressed with one of `dicts`.
///
/// # Errors
/// As [`open_blob`]; a dictionary that cannot be read.
pub fn open_blob_owned_with(
    key: &MasterKey,
    dicts: &dyn Dictionaries,
    entry: &PackEntry,
    mut sealed: Vec<u8>,
    context: impl Display,
) -> Result<Vec<u8>> {
    if !entry.group.is_none() {
        return open_grouped(key, entry, sealed, context);
    }
    let what = || format!("{:?} blob {} in {context}", entry.kind, entry.id).to_lowercase();
    let framed = key
        .open_in_place(&blob_aad(entry.kind, &entry.id), &mut sealed)
        .ok_or_else(|| RepoError::corrupt(what(), "authentication failed"))?;
    let flag =
        *sealed.get(framed.clone()).and_then(<[u8]>::first).ok_or_else(|| RepoError::corrupt(what(), "empty blob"))?;
    let payload = framed.start + 1..framed.end;
    // One decompression context per thread: creating one per blob was 5 % of a restore.
    // (A decryption buffer per thread, too, was tried: no CPU time measurably saved, and a
    // tree restore's peak RSS grew from 133 to 143 MiB, past restic's 137.)
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
        static DICT_DECOMPRESSOR: std::cell::RefCell<Option<(Id, zstd::bulk::Decompressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let plain = match flag {
        0 => {
            let len = payload.len();
            sealed.copy_within(payload, 0);
            sealed.truncate(len);
            sealed
        }
        1 => {
            // Bounded before anything is allocated: the raw length comes from the index
            // (hostile), and is the decompression's capacity; a frame declaring another
            // size than the entry's is refused (every frame Coffer writes declares it).
            let max = match entry.kind {
                BlobKind::Data => DATA_BLOB_MAX,
                BlobKind::Tree => TREE_BLOB_MAX,
            };
            if entry.raw_length as usize > max {
                return Err(RepoError::corrupt(
                    what(),
                    format!("claims {} bytes, more than any blob of its kind ({max})", entry.raw_length),
                ));
            }
            if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(&sealed[payload.clone()]) {
                if n != u64::from(entry.raw_length) {
                    return Err(RepoError::corrupt(
                        what(),
                        format!("its frame holds {n} bytes, its entry says {}", entry.raw_length),
                    ));
                }
            }
            DECOMPRESSOR
                .with(|d| {
                    let payload = &sealed[payload];
                    let mut d = d.borrow_mut();
                    if d.is_none() {
                        *d = zstd::bulk::Decompressor::new().ok();
                    }
                    match d.as_mut() {
                        Some(d) => d.decompress(payload, entry.raw_length as usize),
                        None => zstd::bulk::decompress(payload, entry.raw_length as usize),
                    }
                })
                .map_err(|e| RepoError::corrupt(what(), format!("bad compression: {e}")))?
        }
        2 => {
            // Bounded before anything is allocated: the index's raw length is hostile too.
            if entry.raw_length as usize > DICT_BLOB_MAX {
                return Err(RepoError::corrupt(what(), "a dictionary blob claims to be larger than any is"));
            }
            let frame = &mut sealed[payload];
            let short: [u8; 4] = frame
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| RepoError::corrupt(what(), "truncated dictionary reference"))?;
            frame[..4].copy_from_slice(&ZSTD_MAGIC);
            let frame = &*frame;
            let candidates = dicts.with_short(short).map_err(|e| RepoError::corrupt(what(), e.to_string()))?;
            // Normally one; with a forged collision the blob's id picks the right one.
            let mut last = None;
            for d in candidates {
                let out = DICT_DECOMPRESSOR.with(|c| {
                    let mut c = c.borrow_mut();
                    if c.as_ref().is_none_or(|(cur, _)| *cur != d.id()) {
                        *c = zstd::bulk::Decompressor::with_prepared_dictionary(d.decoder())
                            .ok()
                            .map(|dec| (d.id(), dec));
                    }
                    match c.as_mut() {
                        Some((_, dec)) => dec.decompress(frame, entry.raw_length as usize).map_err(|e| e.to_string()),
                        None => Err("cannot prepare the dictionary".to_owned()),
                    }
                });
                match out {
                    Ok(p) if p.len() == entry.raw_length as usize && key.blob_id(&p) == entry.id => return Ok(p),
                    Ok(_) => last = Some("content does not match its id".to_owned()),
                    Err(e) => last = Some(format!("bad compression with dictionary {}: {e}", d.id())),
                }
            }
            return Err(RepoError::corrupt(what(), last.unwrap_or_else(|| "no such dictionary".to_owned())));
        }
        // The flag is authenticated: an unknown one was written by a newer Coffer.
        f => return Err(RepoError::NewerFormat { object: what(), found: f, supported: 2 }),
    };
    if plain.len() != entry.raw_length as usize || key.blob_id(&plain) != entry.id {
        return Err(RepoError::corrupt(what(), "content does not match its id"));
    }
    Ok(plain)
}

/// Accumulates sealed blobs into one pack.
#[derive(Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// Appends a sealed blob.
    ///
    /// # Panics
    /// If the pack grows past 4 GiB (packs are cut long before).
    pub fn add(&mut self, kind: BlobKind, id: Id, sealed: &[u8], raw_length: usize) {
        let offset = u32::try_from(self.buf.len()).expect("pack under 4 GiB");
        self.buf.extend_from_slice(sealed);
        self.entries.push(PackEntry {
            kind,
            id,
            offset,
            length: u32::try_from(sealed.len()).expect("blob under 4 GiB"),
            raw_length: u32::try_from(raw_length).expect("blob under 4 GiB"),
            group: InGroup::NONE,
        });
    }

    /// Appends a sealed group ([`seal_group`]) holding `members` (id and plaintext length,
    /// in the order they were compressed).
    ///
    /// # Panics
    /// If the pack grows past 4 GiB, or the members hold more than [`GROUP_MAX`].
    pub fn add_group(&mut self, kind: BlobKind, sealed: &[u8], members: &[(Id, u32)]) {
        let offset = u32::try_from(self.buf.len()).expect("pack under 4 GiB");
        let length = u32::try_from(sealed.len()).expect("group under 4 GiB");
        self.buf.extend_from_slice(sealed);
        let mut inner = 0u32;
        for &(id, raw_length) in members {
            let group = InGroup::at(inner).expect("a group holds at most GROUP_MAX");
            self.entries.push(PackEntry { kind, id, offset, length, raw_length, group });
            inner += raw_length;
        }
    }

    /// Bytes of sealed blobs so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finishes the pack: its bytes, its id and its entries. The header is written in the
    /// compact binary layout of pack version 2 ([`encode_header`]).
    #[must_use]
    pub fn finish(mut self, key: &MasterKey) -> (Vec<u8>, Id, Vec<PackEntry>) {
        let header = encode_header(&self.entries);
        // Version 3 only when it holds a group: a pack without one is laid out exactly as
        // version 2, which Coffer before groups reads whole.
        let version = if self.entries.iter().any(|e| !e.group.is_none()) { PACK_VERSION } else { 2 };
        let sealed = key.seal(&header_aad(version), &header);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&u32::try_from(sealed.len()).expect("header under 4 GiB").to_le_bytes());
        self.buf.extend_from_slice(PACK_MAGIC);
        self.buf.push(version);
        let id = Id::hash(&self.buf);
        (self.buf, id, self.entries)
    }
}

/// The associated data of a pack header: version 1's is `"coffer pack header"` (as written
/// since the first release); later versions append their version byte, so a header sealed
/// for one layout never opens as another (the trailer's version byte is not sealed).
fn header_aad(version: u8) -> Vec<u8> {
    let mut aad = b"coffer pack header".to_vec();
    if version > 1 {
        aad.push(version);
    }
    aad
}

/// The bytes a version-2 header entry takes at least: kind, id, two one-byte varints.
const HEADER_ENTRY_MIN: usize = 1 + 32 + 1 + 1;

/// Pack header versions 2 and 3: `count (varint) ‖ record…`; varints are LEB128 (7 bits a
/// byte, low first) of at most 5 bytes (u32). A record is a blob sealed alone, `kind (1: 0
/// data, 1 tree) ‖ id (32) ‖ length (varint) ‖ raw length (varint)`, or (version 3 only) a
/// group, `2 ‖ kind (1) ‖ length (varint) ‖ member count (varint) ‖ (id (32) ‖ raw length
/// (varint))…`, its members back to back in its plaintext in that order. `count` is the
/// number of records. Offsets are not stored: records lie back to back from the start of
/// the pack, in header order. A blob alone takes about 37 bytes (version 1: ~140 of JSON
/// with hex ids, 6 % of a repository of small files); a grouped one about 34.
///
/// # Panics
/// If a group's members are not consecutive entries (as [`PackBuilder::add_group`] makes
/// them).
#[must_use]
pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut records = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let e = &entries[i];
        let n = if e.group.is_none() {
            1
        } else {
            entries[i..]
                .iter()
                .take_while(|m| !m.group.is_none() && m.offset == e.offset && m.length == e.length)
                .count()
        };
        records.push(&entries[i..i + n]);
        i += n;
    }
    let mut out = Vec::with_capacity(5 + entries.len() * (HEADER_ENTRY_MIN + 6));
    put_varint(&mut out, u32::try_from(records.len()).expect("under 4 Gi blobs in a pack"));
    for r in records {
        let e = &r[0];
        if e.group.is_none() {
            out.push(e.kind.byte());
            out.extend_from_slice(&e.id.0);
            put_varint(&mut out, e.length);
            put_varint(&mut out, e.raw_length);
            continue;
        }
        out.push(2);
        out.push(e.kind.byte());
        put_varint(&mut out, e.length);
        put_varint(&mut out, u32::try_from(r.len()).expect("under 4 Gi blobs in a pack"));
        let mut inner = 0;
        for m in r {
            assert_eq!(m.group.get(), Some(inner), "group members in order");
            out.extend_from_slice(&m.id.0);
            put_varint(&mut out, m.raw_length);
            inner += m.raw_length;
        }
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 u32 at `*pos`; `None` if truncated, longer than 5 bytes or over `u32`.
fn get_varint(b: &[u8], pos: &mut usize) -> Option<u32> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(v).ok();
        }
    }
    None
}

/// Decodes a version-2 or -3 header (see [`encode_header`]); groups only in version 3.
/// Hostile input: the count is checked against the bytes present before anything is
/// allocated, offsets are summed without overflow, and a trailing byte, an unknown kind, a
/// blob or group reaching past `limit` (where the header starts), an empty group, a group
/// holding more than [`GROUP_MAX`] and (version 3) an id stated twice are refused.
///
/// # Errors
/// A one-line reason.
pub fn decode_header(b: &[u8], limit: usize) -> std::result::Result<Vec<PackEntry>, String> {
    decode_header_version(b, limit, 2)
}

fn decode_header_version(b: &[u8], limit: usize, version: u8) -> std::result::Result<Vec<PackEntry>, String> {
    let mut pos = 0;
    let count = get_varint(b, &mut pos).ok_or("bad blob count")? as usize;
    if count > (b.len() - pos) / HEADER_ENTRY_MIN {
        return Err(format!("{count} blobs claimed in a header of {} bytes", b.len()));
    }
    let mut entries = Vec::with_capacity(count);
    let mut seen = std::collections::HashSet::new();
    let mut offset: u64 = 0;
    let kind_of = |k: Option<&u8>, i: usize| match k {
        Some(0) => Ok(BlobKind::Data),
        Some(1) => Ok(BlobKind::Tree),
        Some(k) => Err(format!("entry {i}: unknown blob kind {k}")),
        None => Err(format!("entry {i}: truncated")),
    };
    let id_at = |pos: usize, i: usize| -> std::result::Result<Id, String> {
        b.get(pos..pos + 32).and_then(|s| s.try_into().ok()).map(Id).ok_or_else(|| format!("entry {i}: truncated"))
    };
    for i in 0..count {
        let grouped = version >= 3 && b.get(pos) == Some(&2);
        let first = entries.len();
        let length;
        if grouped {
            let kind = kind_of(b.get(pos + 1), i)?;
            pos += 2;
            length = get_varint(b, &mut pos).ok_or_else(|| format!("entry {i}: bad length"))?;
            let members = get_varint(b, &mut pos).ok_or_else(|| format!("entry {i}: bad member count"))? as usize;
            if members == 0 || members > (b.len() - pos) / 33 {
                return Err(format!("entry {i}: {members} members claimed in a group"));
            }
            let mut inner: u64 = 0;
            for _ in 0..members {
                let id = id_at(pos, i)?;
                pos += 32;
                let raw_length = get_varint(b, &mut pos).ok_or_else(|| format!("entry {i}: bad raw length"))?;
                let group = u32::try_from(inner).ok().and_then(InGroup::at);
                inner += u64::from(raw_length);
                let group = group
                    .filter(|_| inner <= GROUP_MAX as u64)
                    .ok_or_else(|| format!("entry {i}: a group holding more than {GROUP_MAX} bytes"))?;
                entries.push(PackEntry { kind, id, offset: 0, length, raw_length, group });
            }
        } else {
            let kind = kind_of(b.get(pos), i)?;
            let id = id_at(pos + 1, i)?;
            pos += 33;
            length = get_varint(b, &mut pos).ok_or_else(|| format!("entry {i}: bad length"))?;
            let raw_length = get_varint(b, &mut pos).ok_or_else(|| format!("entry {i}: bad raw length"))?;
            entries.push(PackEntry { kind, id, offset: 0, length, raw_length, group: InGroup::NONE });
        }
        let end = offset + u64::from(length);
        // Within the pack, and within u32 (readers add offset and length as u32).
        if end > limit as u64 || end > u64::from(u32::MAX) {
            return Err(format!("entry {i}: blob out of range"));
        }
        let at = u32::try_from(offset).map_err(|_| format!("entry {i}: blob out of range"))?;
        for e in &mut entries[first..] {
            e.offset = at;
            if version >= 3 && !seen.insert(e.id) {
                return Err(format!("entry {i}: blob {} stated twice", e.id));
            }
        }
        offset = end;
    }
    if pos != b.len() {
        return Err(format!("{} bytes after the last entry", b.len() - pos));
    }
    Ok(entries)
}

/// Reads a pack's own header, of either version: 1 (sealed JSON) or 2 (sealed binary,
/// [`encode_header`]).
///
/// # Errors
/// `Corrupt` naming `name` if the trailer or header is damaged; `NewerFormat` for a pack
/// version this build does not know.
pub fn read_pack_header(key: &MasterKey, pack: &[u8], name: &str) -> Result<Vec<PackEntry>> {
    let bad = |d: &str| RepoError::corrupt(name, d.to_owned());
    let n = pack.len();
    if n < 9 || &pack[n - 5..n - 1] != PACK_MAGIC {
        return Err(bad("not a pack (trailer missing)"));
    }
    let version = pack[n - 1];
    if version > PACK_VERSION {
        return Err(RepoError::NewerFormat { object: name.into(), found: version, supported: PACK_VERSION });
    }
    let hlen = u32::from_le_bytes(pack[n - 9..n - 5].try_into().expect("4 bytes")) as usize;
    let start = (n - 9).checked_sub(hlen).ok_or_else(|| bad("header length out of range"))?;
    let header = key.open(&header_aad(version), &pack[start..n - 9], name)?;
    if version >= 2 {
        return decode_header_version(&header, start, version).map_err(|e| bad(&format!("bad header: {e}")));
    }
    let entries: Vec<PackEntry> = serde_json::from_slice(&header).map_err(|e| bad(&format!("bad header: {e}")))?;
    for e in &entries {
        if (e.offset as usize).saturating_add(e.length as usize) > start {
            return Err(bad("header entry out of range"));
        }
    }
    Ok(entries)
}

/// Kinds of enveloped objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// `config`.
    Config = 1,
    /// `index/…`.
    Index = 2,
    /// `snapshots/…`.
    Snapshot = 3,
    /// `pg/SYSID/wal/TLI/NAME`: one PostgreSQL WAL file (raw bytes, see [`seal_bytes`]).
    PgWal = 4,
    /// `ledger/…`: one record of the job ledger.
    Ledger = 5,
    /// `dicts/…`: the repository's compression dictionary ([`crate::dict`]).
    Dictionary = 6,
}

impl ObjectKind {
    /// The most an object of this kind may decompress to. Envelope contents are hostile
    /// (a rogue writer holds the key), and an index or snapshot object is read by every
    /// backup: one that inflated without bound would stop every backup until its lock
    /// ended, where a damaged object is meant to be recorded and passed by. Each bound is
    /// far above what Coffer writes: index objects are split at [`MAX_INDEX_OBJECT_BLOBS`]
    /// blobs (about 15 MiB of JSON); a WAL file is at most PostgreSQL's largest segment.
    #[must_use]
    pub const fn max_content(self) -> usize {
        match self {
            Self::Config => 1 << 20,
            Self::Index => 256 << 20,
            Self::Snapshot | Self::Ledger => 64 << 20,
            Self::PgWal => 1 << 30,
            Self::Dictionary => crate::dict::MAX_DICT,
        }
    }
}

/// An index object states at most this many blobs (whole packs: a pack with more is
/// stated alone), so it stays far below [`ObjectKind::Index`]'s bound and one backup that
/// extends thousands of packs does not write one object of hundreds of megabytes.
pub const MAX_INDEX_OBJECT_BLOBS: usize = 100_000;

/// Decompresses an envelope's payload into at most `max` bytes, refusing more without
/// allocating past `max`. The frame declares its size (every frame Coffer writes does):
/// one allocation of exactly that and a decompression context reused per thread, which a
/// backup reading thousands of small index and snapshot objects would otherwise build
/// for each. A frame without a declared size is read by a bounded stream.
fn decompress_bounded(compressed: &[u8], max: usize, context: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let bad = |e: &dyn Display| RepoError::corrupt(context, format!("bad compression: {e}"));
    let too_large = || RepoError::corrupt(context, format!("content larger than {max} bytes"));
    match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(n)) if n > max as u64 => Err(too_large()),
        Ok(Some(n)) => {
            thread_local! {
                static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            // `n` bounds the output: the frame may not grow past what it declares, and
            // frames appended after it must fit in the same capacity.
            let capacity = usize::try_from(n).map_err(|_| too_large())?;
            DECOMPRESSOR
                .with(|d| {
                    let mut d = d.borrow_mut();
                    if d.is_none() {
                        *d = zstd::bulk::Decompressor::new().ok();
                    }
                    match d.as_mut() {
                        Some(d) => d.decompress(compressed, capacity),
                        None => zstd::bulk::decompress(compressed, capacity),
                    }
                })
                .map_err(|e| bad(&e))
        }
        Ok(None) => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(compressed)
                .map_err(|e| bad(&e))?
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| bad(&e))?;
            if out.len() > max {
                return Err(too_large());
            }
            Ok(out)
        }
        Err(e) => Err(bad(&format!("{e:?}"))),
    }
}

/// Seals `value` as an enveloped object.
#[must_use]
pub fn seal_object<T: Serialize>(key: &MasterKey, kind: ObjectKind, value: &T) -> Vec<u8> {
    seal_object_with_plain(key, kind, value).0
}

/// [`seal_object`], and the plaintext sealed (what [`open_object_plain`] gives back).
pub(crate) fn seal_object_with_plain<T: Serialize>(key: &MasterKey, kind: ObjectKind, value: &T) -> (Vec<u8>, Vec<u8>) {
    let json = serde_json::to_vec(value).expect("object serialises");
    let compressed = zstd::bulk::compress(&json, ZSTD_LEVEL).expect("zstd of a buffer cannot fail");
    let mut out = Vec::with_capacity(compressed.len() + 64);
    out.extend_from_slice(ENVELOPE_MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&key.seal(&envelope_aad(kind), &compressed));
    (out, json)
}

fn envelope_aad(kind: ObjectKind) -> Vec<u8> {
    let mut aad = b"coffer object".to_vec();
    aad.push(FORMAT_VERSION);
    aad.push(kind as u8);
    aad
}

/// Seals raw bytes (not JSON) as an enveloped object of `kind`, bound to `name` (the
/// associated data is the envelope's followed by `name`, so an object moved to another
/// key fails to open). The payload is zstd-compressed.
#[must_use]
pub fn seal_bytes(key: &MasterKey, kind: ObjectKind, name: &str, data: &[u8]) -> Vec<u8> {
    let compressed = zstd::bulk::compress(data, 1).expect("zstd of a buffer cannot fail");
    let mut aad = envelope_aad(kind);
    aad.extend_from_slice(name.as_bytes());
    let mut out = Vec::with_capacity(compressed.len() + 64);
    out.extend_from_slice(ENVELOPE_MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&key.seal(&aad, &compressed));
    out
}

/// Opens an object written by [`seal_bytes`] under `name`; `context` names it in errors.
/// Its content may not exceed [`ObjectKind::max_content`].
///
/// # Errors
/// `Corrupt`/`NewerFormat` naming `context`; `Corrupt` when the content is larger than
/// the kind's bound.
pub fn open_bytes(key: &MasterKey, kind: ObjectKind, name: &str, bytes: &[u8], context: &str) -> Result<Vec<u8>> {
    open_bytes_bounded(key, kind, name, bytes, context, kind.max_content())
}

/// [`open_bytes`] of an object that may not decompress to more than `max` bytes (a
/// decompression bomb is refused without allocating past `max`).
///
/// # Errors
/// As [`open_bytes`]; `Corrupt` when the content exceeds `max`.
pub fn open_bytes_bounded(
    key: &MasterKey,
    kind: ObjectKind,
    name: &str,
    bytes: &[u8],
    context: &str,
    max: usize,
) -> Result<Vec<u8>> {
    let compressed = open_sealed_bytes(key, kind, name, bytes, context)?;
    decompress_bounded(&compressed, max.min(kind.max_content()), context)
}

fn open_sealed_bytes(key: &MasterKey, kind: ObjectKind, name: &str, bytes: &[u8], context: &str) -> Result<Vec<u8>> {
    envelope_version(bytes, context)?;
    if bytes[4] != kind as u8 {
        return Err(RepoError::corrupt(context, format!("object kind {} where {:?} was expected", bytes[4], kind)));
    }
    let mut aad = envelope_aad(kind);
    aad.extend_from_slice(name.as_bytes());
    key.open(&aad, &bytes[5..], context)
}

/// Checks the envelope's version without a key.
///
/// # Errors
/// `Corrupt` if it is not an envelope, `NewerFormat` if too new.
pub fn envelope_version(bytes: &[u8], name: &str) -> Result<u8> {
    if bytes.len() < 5 || &bytes[..3] != ENVELOPE_MAGIC {
        return Err(RepoError::corrupt(name, "not a coffer object"));
    }
    if bytes[3] > FORMAT_VERSION {
        return Err(RepoError::NewerFormat { object: name.into(), found: bytes[3], supported: FORMAT_VERSION });
    }
    Ok(bytes[3])
}

/// Seals an already-compressed payload as an object of `kind`: how a rogue writer holding
/// the key makes an envelope Coffer would never write (tests of the decoder's bounds).
#[cfg(test)]
pub(crate) fn seal_compressed(key: &MasterKey, kind: ObjectKind, compressed: &[u8]) -> Vec<u8> {
    let mut out = ENVELOPE_MAGIC.to_vec();
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&key.seal(&envelope_aad(kind), compressed));
    out
}

/// A zstd frame of `len` zero bytes, written in pieces so it never sits in memory whole;
/// it declares its size when `declared`.
#[cfg(test)]
pub(crate) fn zeros_frame(len: u64, declared: bool) -> Vec<u8> {
    use std::io::Write;
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    e.include_contentsize(declared).unwrap();
    if declared {
        e.set_pledged_src_size(Some(len)).unwrap();
    }
    let piece = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(piece.len() as u64);
        e.write_all(&piece[..usize::try_from(n).unwrap()]).unwrap();
        left -= n;
    }
    e.finish().unwrap()
}

/// Opens an enveloped object of `kind`, whose content may not exceed
/// [`ObjectKind::max_content`].
///
/// # Errors
/// `Corrupt`/`NewerFormat` naming `name`; `Corrupt` when the content is larger than the
/// kind's bound.
pub fn open_object<T: for<'de> Deserialize<'de>>(
    key: &MasterKey,
    kind: ObjectKind,
    bytes: &[u8],
    name: &str,
) -> Result<T> {
    let json = open_object_plain(key, kind, bytes, name)?;
    parse_object(&json, name)
}

/// The plaintext (JSON) of an enveloped object: [`open_object`] without the decoding, for
/// the catalog ([`crate::catalog`]), which keeps what an object decodes to.
///
/// # Errors
/// As [`open_object`].
pub(crate) fn open_object_plain(key: &MasterKey, kind: ObjectKind, bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    envelope_version(bytes, name)?;
    if bytes[4] != kind as u8 {
        return Err(RepoError::corrupt(name, format!("object kind {} where {:?} was expected", bytes[4], kind)));
    }
    let compressed = key.open(&envelope_aad(kind), &bytes[5..], name)?;
    decompress_bounded(&compressed, kind.max_content(), name)
}

/// Decodes an object's plaintext ([`open_object_plain`]).
///
/// # Errors
/// `Corrupt` naming `name`.
pub(crate) fn parse_object<T: for<'de> Deserialize<'de>>(json: &[u8], name: &str) -> Result<T> {
    serde_json::from_slice(json).map_err(|e| RepoError::corrupt(name, format!("bad content: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_tamper() {
        let k = MasterKey::generate();
        let mut b = PackBuilder::default();
        let blobs: Vec<Vec<u8>> = vec![vec![7u8; 100_000], (0..5000u32).flat_map(u32::to_le_bytes).collect(), vec![]];
        for d in &blobs {
            let id = k.blob_id(d);
            b.add(BlobKind::Data, id, &seal_blob(&k, BlobKind::Data, &id, d), d.len());
        }
        let (bytes, id, entries) = b.finish(&k);
        assert_eq!(id, Id::hash(&bytes));
        assert_eq!(read_pack_header(&k, &bytes, "p").unwrap(), entries);
        assert!(entries[0].length < 1000, "a run of one byte compresses");
        for (e, d) in entries.iter().zip(&blobs) {
            let s = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(&open_blob(&k, e, s, "p").unwrap(), d);
        }
        let mut bad = bytes.clone();
        bad[entries[1].offset as usize + 30] ^= 0x40;
        let e = &entries[1];
        let err = open_blob(&k, e, &bad[e.offset as usize..(e.offset + e.length) as usize], "p").unwrap_err();
        assert!(err.to_string().contains(&e.id.to_string()), "{err}");
    }

    /// A version-1 pack as builds before issue 16 wrote it (JSON header).
    fn v1_pack(k: &MasterKey, blobs: &[Vec<u8>]) -> (Vec<u8>, Vec<PackEntry>) {
        let mut b = PackBuilder::default();
        for d in blobs {
            let id = k.blob_id(d);
            b.add(BlobKind::Data, id, &seal_blob(k, BlobKind::Data, &id, d), d.len());
        }
        let header = serde_json::to_vec(&b.entries).unwrap();
        let sealed = k.seal(b"coffer pack header", &header);
        let mut out = b.buf;
        out.extend_from_slice(&sealed);
        out.extend_from_slice(&u32::try_from(sealed.len()).unwrap().to_le_bytes());
        out.extend_from_slice(b"CFRP");
        out.push(1);
        (out, b.entries)
    }

    #[test]
    fn size_pack_v1_headers_still_read_and_v2_is_smaller() {
        let k = MasterKey::generate();
        let blobs: Vec<Vec<u8>> = (0..500u32).map(|i| format!("small file {i}").into_bytes()).collect();
        let (v1, entries) = v1_pack(&k, &blobs);
        assert_eq!(read_pack_header(&k, &v1, "p").unwrap(), entries);
        let mut b = PackBuilder::default();
        for d in &blobs {
            let id = k.blob_id(d);
            b.add(BlobKind::Data, id, &seal_blob(&k, BlobKind::Data, &id, d), d.len());
        }
        let (v2, _, entries2) = b.finish(&k);
        assert_eq!(*v2.last().unwrap(), 2);
        assert_eq!(read_pack_header(&k, &v2, "p").unwrap(), entries2);
        let header = |p: &[u8]| u32::from_le_bytes(p[p.len() - 9..p.len() - 5].try_into().unwrap()) as usize;
        // 500 blobs: 32-byte id, kind, two one-byte varints, plus the count and the seal.
        assert_eq!(header(&v2), 2 + 500 * 35 + SEAL_OVERHEAD_FOR_TESTS);
        assert!(header(&v1) > 3 * header(&v2), "v1 {} v2 {}", header(&v1), header(&v2));
        // A v1 header relabelled as v2 (or back) does not open: the layouts have distinct
        // associated data.
        let mut relabelled = v1.clone();
        *relabelled.last_mut().unwrap() = 2;
        assert!(matches!(read_pack_header(&k, &relabelled, "p"), Err(RepoError::Corrupt { .. })));
        let mut newer = v2.clone();
        *newer.last_mut().unwrap() = 4;
        let err = read_pack_header(&k, &newer, "data/ab/p").unwrap_err();
        assert!(matches!(err, RepoError::NewerFormat { found: 4, supported: 3, .. }), "{err}");
        assert!(err.to_string().contains("data/ab/p"), "{err}");
    }

    /// A pack of a blob alone and two groups (data), as the pipeline makes them.
    fn frames_pack(k: &MasterKey, blobs: &[Vec<u8>]) -> (Vec<u8>, Vec<PackEntry>) {
        let mut b = PackBuilder::default();
        let big = vec![9u8; GROUP_BLOB_MAX + 1];
        let id = k.blob_id(&big);
        b.add(BlobKind::Data, id, &seal_blob(k, BlobKind::Data, &id, &big), big.len());
        for half in blobs.chunks(blobs.len().div_ceil(2)) {
            let refs: Vec<&[u8]> = half.iter().map(Vec::as_slice).collect();
            let sealed = seal_group(k, BlobKind::Data, &refs).expect("mail-like text compresses");
            let members: Vec<(Id, u32)> = half.iter().map(|d| (k.blob_id(d), d.len() as u32)).collect();
            b.add_group(BlobKind::Data, &sealed, &members);
        }
        let (bytes, _, entries) = b.finish(k);
        (bytes, entries)
    }

    fn mails(n: u32) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!("From: user{i}@example.org\nTo: list@example.org\nSubject: report {i}\n\nHello, the numbers for day {i} are in.\n")
                    .into_bytes()
            })
            .collect()
    }

    fn slice<'p>(pack: &'p [u8], e: &PackEntry) -> &'p [u8] {
        &pack[e.offset as usize..(e.offset + e.length) as usize]
    }

    #[test]
    fn frames_groups_round_trip_smaller_and_open_once() {
        let k = MasterKey::generate();
        let blobs = mails(200);
        let (pack, entries) = frames_pack(&k, &blobs);
        assert_eq!(*pack.last().unwrap(), 3, "a pack with groups is version 3");
        assert_eq!(read_pack_header(&k, &pack, "data/ab/p").unwrap(), entries);
        assert_eq!(entries.len(), 201);
        assert!(entries[0].group.is_none());
        assert_eq!(entries[1].group.get(), Some(0));
        assert_eq!(entries[2].group.get(), Some(blobs[0].len() as u32));
        GROUPS_OPENED.with(|n| n.set(0));
        for (e, d) in entries[1..].iter().zip(&blobs) {
            assert_eq!(&open_blob(&k, e, slice(&pack, e), "data/ab/p").unwrap(), d);
        }
        assert_eq!(GROUPS_OPENED.with(std::cell::Cell::get), 2, "each group opened once, not once per blob");
        // Smaller than the same blobs sealed alone (plus their header entries).
        let alone: usize = blobs.iter().map(|d| seal_blob(&k, BlobKind::Data, &k.blob_id(d), d).len() + 37).sum();
        let grouped = pack.len() - entries[0].length as usize;
        assert!(grouped * 4 < alone, "grouped {grouped} alone {alone}");
        // A pack without groups stays version 2 (read by Coffer before groups).
        let mut b = PackBuilder::default();
        let id = k.blob_id(&blobs[0]);
        b.add(BlobKind::Data, id, &seal_blob(&k, BlobKind::Data, &id, &blobs[0]), blobs[0].len());
        assert_eq!(*b.finish(&k).0.last().unwrap(), 2);
        // Incompressible blobs make no group.
        let mut random = vec![0u8; 4096];
        blake3::Hasher::new().update(b"r").finalize_xof().fill(&mut random);
        assert!(seal_group(&k, BlobKind::Data, &[&random[..2048], &random[2048..]]).is_none());
    }

    /// Seals `plain` as a group of `kind`: what a hostile writer with the key can make.
    fn forged_group(k: &MasterKey, kind: BlobKind, plain: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; crate::crypto::NONCE_SPACE];
        buf.extend_from_slice(plain);
        k.seal_in_place(&group_aad(kind), &mut buf);
        buf
    }

    fn grouped_entry(id: Id, sealed: &[u8], inner: u32, raw_length: u32) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id,
            offset: 0,
            length: sealed.len() as u32,
            raw_length,
            group: InGroup::at(inner).unwrap(),
        }
    }

    fn corrupt_naming(r: Result<Vec<u8>>, id: &Id, what: &str) {
        let err = r.unwrap_err();
        assert!(matches!(err, RepoError::Corrupt { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&id.to_string()) && text.contains("data/cd/pack"), "{text}");
        assert!(text.contains(what), "{text} lacks {what}");
    }

    #[test]
    fn frames_hostile_groups_are_refused_naming_pack_and_blob() {
        let k = MasterKey::generate();
        let blobs = mails(4);
        let id = k.blob_id(&blobs[1]);
        let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let good = seal_group(&k, BlobKind::Data, &refs).unwrap();
        let at1 = blobs[0].len() as u32;
        let len1 = blobs[1].len() as u32;
        // Each case's bytes are other bytes under the same name: the group last opened
        // (kept per thread by name and range) is forgotten first.
        let open = |e: &PackEntry, sealed: &[u8]| {
            LAST_GROUP.with(|g| g.borrow_mut().take());
            open_blob(&k, e, sealed, "data/cd/pack")
        };
        assert_eq!(open(&grouped_entry(id, &good, at1, len1), &good).unwrap(), blobs[1]);
        // Offsets and lengths inside the group: out of range, or the wrong bytes.
        let total: u32 = blobs.iter().map(|b| b.len() as u32).sum();
        corrupt_naming(open(&grouped_entry(id, &good, total - 2, len1), &good), &id, "out of range");
        corrupt_naming(open(&grouped_entry(id, &good, at1, u32::MAX), &good), &id, "out of range");
        corrupt_naming(open(&grouped_entry(id, &good, at1 + 1, len1), &good), &id, "does not match its id");
        // An entry pointing at something that is not a group (a blob sealed alone).
        let single = seal_blob(&k, BlobKind::Data, &id, &blobs[1]);
        corrupt_naming(open(&grouped_entry(id, &single, 0, len1), &single), &id, "does not authenticate");
        // A group of the other kind does not open as this one.
        let tree = seal_group(&k, BlobKind::Tree, &refs).unwrap();
        corrupt_naming(open(&grouped_entry(id, &tree, at1, len1), &tree), &id, "does not authenticate");
        // A declared size beyond any group: refused before anything is allocated.
        let mut huge = vec![1u8];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&zstd::bulk::compress(&blobs.concat(), 3).unwrap());
        let huge = forged_group(&k, BlobKind::Data, &huge);
        corrupt_naming(open(&grouped_entry(id, &huge, at1, len1), &huge), &id, "more than");
        // A bomb: a frame decompressing to more than declared.
        let mut bomb = vec![1u8];
        bomb.extend_from_slice(&1000u32.to_le_bytes());
        bomb.extend_from_slice(&zstd::bulk::compress(&vec![0u8; GROUP_MAX * 4], 3).unwrap());
        let bomb = forged_group(&k, BlobKind::Data, &bomb);
        corrupt_naming(open(&grouped_entry(id, &bomb, at1, len1), &bomb), &id, "bad compression");
        // Less than declared.
        let mut short = vec![1u8];
        short.extend_from_slice(&(total + 10).to_le_bytes());
        short.extend_from_slice(&zstd::bulk::compress(&blobs.concat(), 3).unwrap());
        let short = forged_group(&k, BlobKind::Data, &short);
        corrupt_naming(open(&grouped_entry(id, &short, at1, len1), &short), &id, "");
        // Empty and truncated groups.
        for plain in [&[][..], &[1u8, 0, 0][..]] {
            let g = forged_group(&k, BlobKind::Data, plain);
            corrupt_naming(open(&grouped_entry(id, &g, 0, 1), &g), &id, "group");
        }
        // An unknown group flag authenticates: a newer Coffer's, said so.
        let newer = forged_group(&k, BlobKind::Data, &[2, 0, 0, 0, 0]);
        let err = open(&grouped_entry(id, &newer, 0, 1), &newer).unwrap_err();
        assert!(matches!(err, RepoError::NewerFormat { found: 2, .. }), "{err}");
        // Index objects: a group offset no group can have is refused when parsed.
        let json = format!(
            r#"{{"kind":"data","id":"{id}","offset":0,"length":9,"raw_length":1,"group_offset":{}}}"#,
            GROUP_MAX
        );
        assert!(serde_json::from_str::<PackEntry>(&json).unwrap_err().to_string().contains("out of range"));
        let ok = json.replace(&format!(":{GROUP_MAX}}}"), ":7}");
        assert_eq!(serde_json::from_str::<PackEntry>(&ok).unwrap().group.get(), Some(7));
    }

    /// A blob sealed alone whose index entry claims an enormous raw length is refused
    /// before the decompression allocates it; one claiming another size than its frame too.
    #[test]
    fn frames_blob_raw_length_is_bounded() {
        let k = MasterKey::generate();
        let d = mails(1).remove(0);
        let id = k.blob_id(&d);
        let sealed = seal_blob(&k, BlobKind::Data, &id, &d);
        let e = |raw_length, kind| PackEntry {
            kind,
            id,
            offset: 0,
            length: sealed.len() as u32,
            raw_length,
            group: InGroup::NONE,
        };
        assert_eq!(open_blob(&k, &e(d.len() as u32, BlobKind::Data), &sealed, "p").unwrap(), d);
        let err = open_blob(&k, &e(u32::MAX, BlobKind::Data), &sealed, "data/ef/p").unwrap_err();
        assert!(err.to_string().contains("more than any blob") && err.to_string().contains("data/ef/p"), "{err}");
        let err = open_blob(&k, &e(d.len() as u32 + 1, BlobKind::Data), &sealed, "p").unwrap_err();
        assert!(err.to_string().contains("its frame holds"), "{err}");
        assert_eq!(std::mem::size_of::<PackEntry>(), 48, "the index holds one per blob");
    }

    #[test]
    fn frames_hostile_group_headers_are_refused() {
        let g = |id: u8, raw: u32, inner: u32| PackEntry {
            kind: BlobKind::Tree,
            id: Id([id; 32]),
            offset: 0,
            length: 50,
            raw_length: raw,
            group: InGroup::at(inner).unwrap(),
        };
        let good = encode_header(&[g(1, 10, 0), g(2, 5, 10)]);
        assert_eq!(decode_header_version(&good, 50, 3).unwrap(), [g(1, 10, 0), g(2, 5, 10)]);
        // Groups exist only in version 3.
        assert!(decode_header_version(&good, 50, 2).unwrap_err().contains("kind 2"));
        // Past the header's start.
        assert!(decode_header_version(&good, 49, 3).unwrap_err().contains("out of range"));
        // Duplicate ids.
        let dup = encode_header(&[g(1, 10, 0), g(1, 5, 10)]);
        assert!(decode_header_version(&dup, 50, 3).unwrap_err().contains("stated twice"));
        // Zero members, more members than bytes, a group past GROUP_MAX.
        let mut zero = good.clone();
        zero[4] = 0;
        assert!(decode_header_version(&zero, 50, 3).unwrap_err().contains("members"));
        let mut many = good.clone();
        many[4] = 3;
        assert!(decode_header_version(&many, 50, 3).is_err());
        let mut over = vec![1u8, 2, 1, 50, 2];
        over.extend([1; 32]);
        put_varint(&mut over, GROUP_MAX as u32);
        over.extend([2; 32]);
        put_varint(&mut over, 1);
        assert!(decode_header_version(&over, 50, 3).unwrap_err().contains("more than"));
        // Unknown member kind, truncation anywhere, trailing bytes.
        let mut kind = good.clone();
        kind[2] = 7;
        assert!(decode_header_version(&kind, 50, 3).unwrap_err().contains("kind"));
        for cut in 0..good.len() {
            assert!(decode_header_version(&good[..cut], 50, 3).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_header_version(&trailing, 50, 3).is_err());
    }

    const SEAL_OVERHEAD_FOR_TESTS: usize = crate::crypto::SEAL_OVERHEAD;

    /// The version-2 header's bytes, pinned (golden): changing them is a format change.
    #[test]
    fn size_pack_header_v2_bytes_are_pinned() {
        let entries = [
            PackEntry {
                kind: BlobKind::Data,
                id: Id([0xab; 32]),
                offset: 0,
                length: 300,
                raw_length: 5,
                group: InGroup::NONE,
            },
            PackEntry {
                kind: BlobKind::Tree,
                id: Id([0x01; 32]),
                offset: 300,
                length: 0x7f,
                raw_length: 0x1_0000,
                group: InGroup::NONE,
            },
        ];
        let b = encode_header(&entries);
        let mut want = vec![2u8, 0];
        want.extend([0xab; 32]);
        want.extend([0xac, 0x02, 0x05, 1]);
        want.extend([0x01; 32]);
        want.extend([0x7f, 0x80, 0x80, 0x04]);
        assert_eq!(b, want);
        assert_eq!(decode_header(&b, 427).unwrap(), entries);
    }

    /// Hostile headers (the writer's key can seal anything): refused with a reason, never a
    /// panic or an allocation the bytes do not pay for.
    #[test]
    fn size_hostile_pack_headers_are_refused() {
        let e =
            |kind, length| PackEntry { kind, id: Id([3; 32]), offset: 0, length, raw_length: 1, group: InGroup::NONE };
        let good = encode_header(&[e(BlobKind::Data, 10)]);
        assert!(decode_header(&good, 10).is_ok());
        // Out of range: past where the header starts.
        assert!(decode_header(&good, 9).unwrap_err().contains("out of range"));
        // A huge count in a tiny header: refused before allocating.
        let mut huge = Vec::new();
        put_varint(&mut huge, u32::MAX);
        assert!(decode_header(&huge, usize::MAX).unwrap_err().contains("claimed"));
        // Lengths summing past u32 offsets.
        let big = encode_header(&[e(BlobKind::Data, u32::MAX), e(BlobKind::Data, u32::MAX)]);
        assert!(decode_header(&big, usize::MAX).unwrap_err().contains("out of range"));
        // Unknown kind, truncation, trailing bytes, over-long varints.
        let mut bad_kind = good.clone();
        bad_kind[1] = 9;
        assert!(decode_header(&bad_kind, 10).unwrap_err().contains("kind"));
        for cut in 0..good.len() {
            assert!(decode_header(&good[..cut], 10).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_header(&trailing, 10).unwrap_err().contains("after the last"));
        let mut long = vec![1u8, 0];
        long.extend([3; 32]);
        long.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01]);
        assert!(decode_header(&long, usize::MAX).unwrap_err().contains("bad length"));
        let mut over = vec![1u8, 0];
        over.extend([3; 32]);
        over.extend([0xff, 0xff, 0xff, 0xff, 0x7f, 0x01]);
        assert!(decode_header(&over, usize::MAX).unwrap_err().contains("bad length"));
    }

    /// An unknown blob flag authenticates, so a newer Coffer wrote it: `NewerFormat` naming
    /// the blob, not damage.
    #[test]
    fn size_unknown_blob_flag_is_a_newer_format() {
        let k = MasterKey::generate();
        let id = Id([5; 32]);
        let mut sealed = vec![0u8; crate::crypto::NONCE_SPACE];
        sealed.extend([3u8, 1, 2, 3]);
        k.seal_in_place(&blob_aad(BlobKind::Data, &id), &mut sealed);
        let e = PackEntry {
            kind: BlobKind::Data,
            id,
            offset: 0,
            length: sealed.len() as u32,
            raw_length: 3,
            group: InGroup::NONE,
        };
        let err = open_blob(&k, &e, &sealed, "data/05/p").unwrap_err();
        assert!(matches!(err, RepoError::NewerFormat { found: 3, supported: 2, .. }), "{err}");
        assert!(err.to_string().contains(&id.to_string()), "{err}");
    }

    /// The flag byte (0 stored, 1 zstd) of a sealed blob.
    fn flag_of(k: &MasterKey, d: &[u8]) -> u8 {
        let id = k.blob_id(d);
        let sealed = seal_blob(k, BlobKind::Data, &id, d);
        k.open(&blob_aad(BlobKind::Data, &id), &sealed, "b").unwrap()[0]
    }

    #[test]
    fn incompressible_blobs_are_stored_and_compressible_ones_compressed() {
        let k = MasterKey::generate();
        // Random bytes (a keyed hash stream): nothing to gain, stored as is.
        let mut random = vec![0u8; 1 << 20];
        blake3::Hasher::new().update(b"seed").finalize_xof().fill(&mut random);
        assert_eq!(flag_of(&k, &random), 0);
        // Text-like data compresses, whole or sampled.
        let text: Vec<u8> = (0..200_000u32).flat_map(|i| format!("line {i} ok\n").into_bytes()).collect();
        assert_eq!(flag_of(&k, &text), 1);
        // Random but for one compressible sample: the probe sees the whole blob would save
        // too little; small blobs are not probed and follow the whole-blob rule.
        let mut mostly = random.clone();
        mostly[..PROBE_SAMPLE].fill(b'a');
        assert_eq!(flag_of(&k, &mostly), 0);
        assert_eq!(flag_of(&k, &random[..PROBE_MIN - 1]), 0);
        assert_eq!(flag_of(&k, &text[..PROBE_MIN - 1]), 1);
        // Compressible in the samples' places only if at all: a blob whose samples are
        // text is compressed even though the rest is random (the whole-blob rule then
        // still decides).
        let mut mixed = text[..1 << 20].to_vec();
        mixed[PROBE_SAMPLE..(1 << 19) - PROBE_SAMPLE].copy_from_slice(&random[PROBE_SAMPLE..(1 << 19) - PROBE_SAMPLE]);
        assert_eq!(flag_of(&k, &mixed), 1);
        // The other way round the probe decides alone: random at the three sample places,
        // text elsewhere, is stored uncompressed (the documented cost of not compressing
        // incompressible data twice).
        let mut fooled = text[..1 << 20].to_vec();
        let n = fooled.len();
        for start in [0, n / 2 - PROBE_SAMPLE / 2, n - PROBE_SAMPLE] {
            fooled[start..start + PROBE_SAMPLE].copy_from_slice(&random[start..start + PROBE_SAMPLE]);
        }
        assert_eq!(flag_of(&k, &fooled), 0);
    }

    /// An envelope's content is bounded by its kind, whether its frame declares its size or
    /// not, and a frame followed by more frames cannot grow past what the first declared.
    #[test]
    fn envelope_bombs_are_refused_by_kind() {
        let k = MasterKey::generate();
        let max = ObjectKind::Config.max_content() as u64;
        for declared in [true, false] {
            let bomb = seal_compressed(&k, ObjectKind::Config, &zeros_frame(max + 1, declared));
            let err = open_object::<serde_json::Value>(&k, ObjectKind::Config, &bomb, "config").unwrap_err();
            assert!(err.to_string().contains("config") && err.to_string().contains("larger than 1048576"), "{err}");
            assert!(matches!(err, RepoError::Corrupt { .. }), "{err:?}");
            let err = open_bytes(&k, ObjectKind::Config, "", &bomb, "cfg").unwrap_err();
            assert!(err.to_string().contains("larger than"), "{err}");
        }
        // Exactly at the bound it opens (a JSON string of `max` bytes, declared or not).
        let mut json = vec![b'a'; usize::try_from(max).unwrap()];
        json[0] = b'"';
        *json.last_mut().unwrap() = b'"';
        for level in [1, 3] {
            let sealed = seal_compressed(&k, ObjectKind::Config, &zstd::bulk::compress(&json, level).unwrap());
            let v: serde_json::Value = open_object(&k, ObjectKind::Config, &sealed, "config").unwrap();
            assert_eq!(v.as_str().unwrap().len(), json.len() - 2);
        }
        let mut stream = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        stream.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut stream, &json).unwrap();
        let sealed = seal_compressed(&k, ObjectKind::Config, &stream.finish().unwrap());
        assert!(open_object::<serde_json::Value>(&k, ObjectKind::Config, &sealed, "config").is_ok());
        // A small declared frame with a second frame appended: refused, not grown.
        let mut two = zstd::bulk::compress(b"{}", 1).unwrap();
        two.extend_from_slice(&zeros_frame(1000, true));
        let sealed = seal_compressed(&k, ObjectKind::Config, &two);
        let err = open_object::<serde_json::Value>(&k, ObjectKind::Config, &sealed, "config").unwrap_err();
        assert!(err.to_string().contains("bad compression"), "{err}");
        // Garbage that is no frame at all.
        let sealed = seal_compressed(&k, ObjectKind::Config, b"not zstd");
        let err = open_object::<serde_json::Value>(&k, ObjectKind::Config, &sealed, "config").unwrap_err();
        assert!(err.to_string().contains("bad compression"), "{err}");
    }

    #[test]
    fn raw_envelope_round_trips_and_is_bound_to_its_name() {
        let k = MasterKey::generate();
        let data: Vec<u8> = (0..100_000u32).flat_map(u32::to_le_bytes).collect();
        let o = seal_bytes(&k, ObjectKind::PgWal, "000000010000000000000001", &data);
        assert!(o.len() < data.len(), "compressed");
        assert_eq!(open_bytes(&k, ObjectKind::PgWal, "000000010000000000000001", &o, "w").unwrap(), data);
        let moved = open_bytes(&k, ObjectKind::PgWal, "000000010000000000000002", &o, "w2").unwrap_err();
        assert!(matches!(moved, RepoError::Corrupt { .. }) && moved.to_string().contains("w2"), "{moved}");
        assert!(open_bytes(&k, ObjectKind::Snapshot, "000000010000000000000001", &o, "w").is_err());
    }

    #[test]
    fn envelope_refuses_newer_version_before_decrypting() {
        let k = MasterKey::generate();
        let mut o = seal_object(&k, ObjectKind::Config, &"x");
        assert_eq!(open_object::<String>(&k, ObjectKind::Config, &o, "config").unwrap(), "x");
        o[3] = FORMAT_VERSION + 1;
        assert!(matches!(envelope_version(&o, "config"), Err(RepoError::NewerFormat { .. })));
    }
}
