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
//!   the sealed JSON list of [`PackEntry`]s (associated data `"coffer pack header"`), so a
//!   pack describes itself and indexes can be rebuilt from packs alone.
//! - **Envelope** (config, index, snapshot objects): `"CFR" ‖ version ‖ kind ‖ sealed JSON`,
//!   associated data `"coffer object" ‖ version ‖ kind`. The version byte is readable
//!   without the key, so a newer repository is refused with a clear error before any
//!   password is tried.

use crate::crypto::MasterKey;
use crate::error::{RepoError, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};
use std::fmt::Display;

/// The repository format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;
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
    use crate::crypto::{NONCE_SPACE, SEAL_OVERHEAD};
    let head = NONCE_SPACE + 1;
    let mut buf = Vec::with_capacity(SEAL_OVERHEAD + 1 + zstd::zstd_safe::compress_bound(plaintext.len()));
    buf.resize(head, 0);
    // One compression context per thread: creating one per blob costs more than small blobs.
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let compressed = !looks_incompressible(plaintext)
        && COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
            }
            let Some(c) = c.as_mut() else { return false };
            let mut out = std::io::Cursor::new(&mut buf);
            out.set_position(head as u64);
            match c.compress_to_buffer(plaintext, &mut out) {
                Ok(n) => n + plaintext.len() / 32 < plaintext.len(),
                Err(_) => false,
            }
        });
    if compressed {
        buf[NONCE_SPACE] = 1;
    } else {
        buf.truncate(head);
        buf[NONCE_SPACE] = 0;
        buf.extend_from_slice(plaintext);
    }
    key.seal_in_place(&blob_aad(kind, id), &mut buf);
    buf
}

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
    open_blob_owned(key, entry, sealed.to_vec(), context)
}

/// [`open_blob`] of a blob read into a buffer of its own: decrypted where it lies, so the
/// ciphertext is not copied first (a restore reading blob ranges did that for every byte).
/// `context` is formatted only for an error.
///
/// # Errors
/// As [`open_blob`].
pub fn open_blob_owned(
    key: &MasterKey,
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
        f => return Err(RepoError::corrupt(what(), format!("unknown blob flag {f}"))),
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

    /// Finishes the pack: its bytes, its id and its entries.
    #[must_use]
    pub fn finish(mut self, key: &MasterKey) -> (Vec<u8>, Id, Vec<PackEntry>) {
        let header = serde_json::to_vec(&self.entries).expect("pack header serialises");
        let sealed = key.seal(b"coffer pack header", &header);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&u32::try_from(sealed.len()).expect("header under 4 GiB").to_le_bytes());
        self.buf.extend_from_slice(PACK_MAGIC);
        self.buf.push(FORMAT_VERSION);
        let id = Id::hash(&self.buf);
        (self.buf, id, self.entries)
    }
}

/// Reads a pack's own header.
///
/// # Errors
/// `Corrupt` naming `name` if the trailer or header is damaged; `NewerFormat`.
pub fn read_pack_header(key: &MasterKey, pack: &[u8], name: &str) -> Result<Vec<PackEntry>> {
    let bad = |d: &str| RepoError::corrupt(name, d.to_owned());
    let n = pack.len();
    if n < 9 || &pack[n - 5..n - 1] != PACK_MAGIC {
        return Err(bad("not a pack (trailer missing)"));
    }
    if pack[n - 1] > FORMAT_VERSION {
        return Err(RepoError::NewerFormat { object: name.into(), found: pack[n - 1], supported: FORMAT_VERSION });
    }
    let hlen = u32::from_le_bytes(pack[n - 9..n - 5].try_into().expect("4 bytes")) as usize;
    let start = (n - 9).checked_sub(hlen).ok_or_else(|| bad("header length out of range"))?;
    let header = key.open(b"coffer pack header", &pack[start..n - 9], name)?;
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
///
/// # Errors
/// `Corrupt`/`NewerFormat` naming `context`.
pub fn open_bytes(key: &MasterKey, kind: ObjectKind, name: &str, bytes: &[u8], context: &str) -> Result<Vec<u8>> {
    envelope_version(bytes, context)?;
    if bytes[4] != kind as u8 {
        return Err(RepoError::corrupt(context, format!("object kind {} where {:?} was expected", bytes[4], kind)));
    }
    let mut aad = envelope_aad(kind);
    aad.extend_from_slice(name.as_bytes());
    let compressed = key.open(&aad, &bytes[5..], context)?;
    zstd::stream::decode_all(&compressed[..]).map_err(|e| RepoError::corrupt(context, format!("bad compression: {e}")))
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

/// Opens an enveloped object of `kind`.
///
/// # Errors
/// `Corrupt`/`NewerFormat` naming `name`.
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
    let json = zstd::stream::decode_all(&compressed[..])
        .map_err(|e| RepoError::corrupt(name, format!("bad compression: {e}")))?;
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
