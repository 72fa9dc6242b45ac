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
//!   `"coffer pack header" ‖ 2`. Both are read; a newer version is refused (`NewerFormat`).
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
pub const PACK_VERSION: u8 = 2;
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
        1 => DECOMPRESSOR
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
            .map_err(|e| RepoError::corrupt(what(), format!("bad compression: {e}")))?,
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
        });
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
        let sealed = key.seal(&header_aad(PACK_VERSION), &header);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&u32::try_from(sealed.len()).expect("header under 4 GiB").to_le_bytes());
        self.buf.extend_from_slice(PACK_MAGIC);
        self.buf.push(PACK_VERSION);
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

/// Pack header version 2: `count (varint) ‖ entry…`, each entry `kind (1: 0 data, 1 tree) ‖
/// id (32) ‖ length (varint) ‖ raw length (varint)`; varints are LEB128 (7 bits a byte, low
/// first) of at most 5 bytes (u32). Offsets are not stored: blobs lie back to back from the
/// start of the pack, in header order, so each offset is the sum of the lengths before it.
/// About 37 bytes a blob against version 1's ~140 of JSON with hex ids, which on many small
/// files (one blob each) was 6 % of the repository.
#[must_use]
pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + entries.len() * (HEADER_ENTRY_MIN + 6));
    put_varint(&mut out, u32::try_from(entries.len()).expect("under 4 Gi blobs in a pack"));
    for e in entries {
        out.push(e.kind.byte());
        out.extend_from_slice(&e.id.0);
        put_varint(&mut out, e.length);
        put_varint(&mut out, e.raw_length);
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

/// Decodes a version-2 header (see [`encode_header`]). Hostile input: the count is checked
/// against the bytes present before anything is allocated, offsets are summed without
/// overflow, and a trailing byte, an unknown kind or a blob reaching past `limit` (where the
/// header starts) is refused.
///
/// # Errors
/// A one-line reason.
pub fn decode_header(b: &[u8], limit: usize) -> std::result::Result<Vec<PackEntry>, String> {
    let mut pos = 0;
    let count = get_varint(b, &mut pos).ok_or("bad blob count")? as usize;
    if count > (b.len() - pos) / HEADER_ENTRY_MIN {
        return Err(format!("{count} blobs claimed in a header of {} bytes", b.len()));
    }
    let mut entries = Vec::with_capacity(count);
    let mut offset: u64 = 0;
    for i in 0..count {
        let kind = match b.get(pos) {
            Some(0) => BlobKind::Data,
            Some(1) => BlobKind::Tree,
            Some(k) => return Err(format!("entry {i}: unknown blob kind {k}")),
            None => return Err(format!("entry {i}: truncated")),
        };
        let id: [u8; 32] =
            b.get(pos + 1..pos + 33).and_then(|s| s.try_into().ok()).ok_or_else(|| format!("entry {i}: truncated"))?;
        pos += 33;
        let length = get_varint(b, &mut pos).ok_or_else(|| format!("entry {i}: bad length"))?;
        let raw_length = get_varint(b, &mut pos).ok_or_else(|| format!("entry {i}: bad raw length"))?;
        let end = offset + u64::from(length);
        // Within the pack, and within u32 (readers add offset and length as u32).
        if end > limit as u64 || end > u64::from(u32::MAX) {
            return Err(format!("entry {i}: blob out of range"));
        }
        entries.push(PackEntry {
            kind,
            id: Id(id),
            offset: u32::try_from(offset).map_err(|_| format!("entry {i}: blob out of range"))?,
            length,
            raw_length,
        });
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
        return decode_header(&header, start).map_err(|e| bad(&format!("bad header: {e}")));
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
    let json = serde_json::to_vec(value).expect("object serialises");
    let compressed = zstd::bulk::compress(&json, ZSTD_LEVEL).expect("zstd of a buffer cannot fail");
    let mut out = Vec::with_capacity(compressed.len() + 64);
    out.extend_from_slice(ENVELOPE_MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&key.seal(&envelope_aad(kind), &compressed));
    out
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
    envelope_version(bytes, name)?;
    if bytes[4] != kind as u8 {
        return Err(RepoError::corrupt(name, format!("object kind {} where {:?} was expected", bytes[4], kind)));
    }
    let compressed = key.open(&envelope_aad(kind), &bytes[5..], name)?;
    let json = decompress_bounded(&compressed, kind.max_content(), name)?;
    serde_json::from_slice(&json).map_err(|e| RepoError::corrupt(name, format!("bad content: {e}")))
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
        *newer.last_mut().unwrap() = 3;
        let err = read_pack_header(&k, &newer, "data/ab/p").unwrap_err();
        assert!(matches!(err, RepoError::NewerFormat { found: 3, supported: 2, .. }), "{err}");
        assert!(err.to_string().contains("data/ab/p"), "{err}");
    }

    const SEAL_OVERHEAD_FOR_TESTS: usize = crate::crypto::SEAL_OVERHEAD;

    /// The version-2 header's bytes, pinned (golden): changing them is a format change.
    #[test]
    fn size_pack_header_v2_bytes_are_pinned() {
        let entries = [
            PackEntry { kind: BlobKind::Data, id: Id([0xab; 32]), offset: 0, length: 300, raw_length: 5 },
            PackEntry { kind: BlobKind::Tree, id: Id([0x01; 32]), offset: 300, length: 0x7f, raw_length: 0x1_0000 },
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
        let e = |kind, length| PackEntry { kind, id: Id([3; 32]), offset: 0, length, raw_length: 1 };
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
        let e = PackEntry { kind: BlobKind::Data, id, offset: 0, length: sealed.len() as u32, raw_length: 3 };
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
