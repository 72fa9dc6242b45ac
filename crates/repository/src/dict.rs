//! The repository's compression dictionary: a zstd dictionary for small data blobs.
//!
//! A small file is one blob, compressed alone: a 2 KiB mail message leaves most of its
//! redundancy (headers, common words, the structure every message shares) in place, because
//! a frame of 2 KiB has nothing earlier to refer to. A dictionary trained on samples of the
//! repository's own small blobs gives every such frame that context. It is trained once, by
//! the first backup that sees enough small blobs ([`Trainer`]), and stored as the object
//! `dicts/ID`:
//!
//! ```text
//! "CFR" ‖ version (1) ‖ 6 ‖ sealed(zstd(dictionary bytes))
//! ```
//!
//! associated data `"coffer object" ‖ 1 ‖ 6 ‖ "dictionary"`, content-addressed (ID = BLAKE3 of
//! the object's bytes) like packs. A blob compressed with it is `flag 2 ‖ dictionary ref (4) ‖
//! zstd frame` ([`crate::pack`]); the ref is the first 4 bytes of the dictionary's id.
//!
//! Invariants guarded here:
//! - **A dictionary lives as long as any blob needs it.** It is written with the lock of the
//!   backup that trained it, and every backup (and WAL push) extends the locks of every
//!   `dicts/` object with those of `config` and `keys/` (`Repository::extend_meta_to`), so no
//!   pack outlives the dictionary its blobs need.
//! - **A dictionary is hostile input** (the writer's key can seal anything): its object is
//!   read only up to [`MAX_DICT_OBJECT`] bytes, decompressed to at most [`MAX_DICT`] bytes,
//!   checked against its name, and a blob decompressed with it is still checked against its
//!   id — a wrong or forged dictionary yields an error naming the blob, never wrong data.

use crate::crypto::MasterKey;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::pack::{self, ObjectKind};
use std::collections::HashMap;
use std::sync::Mutex;

/// The largest dictionary read or written (the trainer makes [`DICT_SIZE`]).
pub const MAX_DICT: usize = 1 << 20;
/// The largest stored dictionary object accepted (sealed and compressed [`MAX_DICT`]).
pub const MAX_DICT_OBJECT: usize = MAX_DICT + 4096;
/// The size of a trained dictionary: zstd's default (`zstd --train`). Measured on the mail
/// spool of issue 16, larger dictionaries gained under 1 %.
pub const DICT_SIZE: usize = 110 << 10;
/// Data blobs up to this size are compressed with the dictionary (larger ones have their
/// own context; below the probe threshold, so no blob is both probed and dictionary-coded).
pub const DICT_BLOB_MAX: usize = 128 << 10;
/// The trainer samples this many bytes of small blobs before training (zstd recommends
/// about 100 times the dictionary size)…
pub const TRAIN_BYTES: usize = 8 << 20;
/// …but trains once it has this many samples, whichever comes first…
pub const TRAIN_SAMPLES: usize = 4000;
/// …and never on fewer: a backup with fewer small blobs trains nothing (a later one may).
pub const TRAIN_MIN_SAMPLES: usize = 500;
/// The associated-data name of a dictionary object.
const DICT_NAME: &str = "dictionary";
/// The zstd level blobs are compressed at (with or without a dictionary).
pub(crate) const LEVEL: i32 = 3;

/// A dictionary, prepared for compressing and decompressing (prepared once: no CPU per blob).
/// Made by [`intern`] (or [`open`]), which keeps it for the process's life.
pub struct Dictionary {
    id: Id,
    enc: zstd::dict::EncoderDictionary<'static>,
    dec: zstd::dict::DecoderDictionary<'static>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dictionary({})", self.id)
    }
}

impl Dictionary {
    /// Prepares `bytes` (a zstd dictionary) stored under `id`.
    fn new(id: Id, bytes: &[u8]) -> Self {
        Self {
            id,
            enc: zstd::dict::EncoderDictionary::copy(bytes, LEVEL),
            dec: zstd::dict::DecoderDictionary::copy(bytes),
        }
    }

    /// The id of its object (`dicts/ID`).
    #[must_use]
    pub fn id(&self) -> Id {
        self.id
    }

    /// The 4-byte reference a blob carries.
    #[must_use]
    pub fn short(&self) -> [u8; 4] {
        short(&self.id)
    }

    pub(crate) fn encoder(&self) -> &zstd::dict::EncoderDictionary<'static> {
        &self.enc
    }

    pub(crate) fn decoder(&self) -> &zstd::dict::DecoderDictionary<'static> {
        &self.dec
    }
}

/// The reference to dictionary `id` that blobs carry.
#[must_use]
pub fn short(id: &Id) -> [u8; 4] {
    [id.0[0], id.0[1], id.0[2], id.0[3]]
}

/// Where the dictionaries a blob may name come from: the repository (loaded on first use).
pub trait Dictionaries {
    /// Every dictionary whose id starts with `short` (normally one; a forged collision may
    /// add more, and the blob's id decides which is right).
    ///
    /// # Errors
    /// A dictionary object that cannot be read, or none with that reference.
    fn with_short(&self, short: [u8; 4]) -> Result<Vec<&'static Dictionary>>;
}

/// No dictionaries: for callers that hold none (a blob that needs one fails naming it).
pub struct NoDictionaries;

impl Dictionaries for NoDictionaries {
    fn with_short(&self, short: [u8; 4]) -> Result<Vec<&'static Dictionary>> {
        Err(RepoError::Invalid(format!("no dictionary {} is known here", hex::encode(short))))
    }
}

/// Seals dictionary `bytes` as a `dicts/` object: its bytes and its id.
#[must_use]
pub fn seal(key: &MasterKey, bytes: &[u8]) -> (Vec<u8>, Id) {
    let sealed = pack::seal_bytes(key, ObjectKind::Dictionary, DICT_NAME, bytes);
    let id = Id::hash(&sealed);
    (sealed, id)
}

/// Prepared dictionaries of this process, by id: each is prepared once and kept for the
/// process's life (the per-thread zstd contexts borrow it for `'static`). Bounded by the
/// distinct dictionaries the process meets — normally one per repository, ~1 MiB prepared.
static PREPARED: Mutex<Option<HashMap<Id, &'static Dictionary>>> = Mutex::new(None);

/// The prepared dictionary `bytes` under `id`, prepared once per process.
#[must_use]
pub fn intern(id: Id, bytes: &[u8]) -> &'static Dictionary {
    let mut m = PREPARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    m.get_or_insert_with(HashMap::new).entry(id).or_insert_with(|| Box::leak(Box::new(Dictionary::new(id, bytes))))
}

/// Opens a `dicts/` object read under `name`, whose bytes hash to `id` (checked by the
/// caller's read): bounded before and after decompression.
///
/// # Errors
/// `Corrupt`/`NewerFormat` naming `name`.
pub fn open(key: &MasterKey, id: Id, bytes: &[u8], name: &str) -> Result<&'static Dictionary> {
    if bytes.len() > MAX_DICT_OBJECT {
        return Err(RepoError::corrupt(name, format!("dictionary object of {} bytes is too large", bytes.len())));
    }
    let raw = pack::open_bytes_bounded(key, ObjectKind::Dictionary, DICT_NAME, bytes, name, MAX_DICT)?;
    if raw.is_empty() {
        return Err(RepoError::corrupt(name, "empty dictionary"));
    }
    Ok(intern(id, &raw))
}

/// Collects samples of small data blobs during a backup and trains a dictionary once it
/// has enough ([`TRAIN_BYTES`] or [`TRAIN_SAMPLES`]).
#[derive(Default)]
pub struct Trainer {
    data: Vec<u8>,
    sizes: Vec<usize>,
    done: bool,
}

impl Trainer {
    /// Offers a blob; `true` once enough samples are in (then call [`Trainer::train`]).
    pub fn offer(&mut self, plaintext: &[u8]) -> bool {
        if self.done || plaintext.is_empty() || plaintext.len() > DICT_BLOB_MAX {
            return false;
        }
        // Samples of at most 16 KiB: the dictionary is for what small blobs share, and one
        // large sample would crowd out many small ones.
        let sample = &plaintext[..plaintext.len().min(16 << 10)];
        self.data.extend_from_slice(sample);
        self.sizes.push(sample.len());
        self.data.len() >= TRAIN_BYTES || self.sizes.len() >= TRAIN_SAMPLES
    }

    /// Whether enough samples were seen to train at all.
    #[must_use]
    pub fn enough(&self) -> bool {
        !self.done && self.sizes.len() >= TRAIN_MIN_SAMPLES
    }

    /// Trains the dictionary (once: afterwards the trainer takes no more samples). `None`
    /// when zstd finds nothing to learn (too few or too uniform samples).
    pub fn train(&mut self) -> Option<Vec<u8>> {
        self.done = true;
        let data = std::mem::take(&mut self.data);
        let sizes = std::mem::take(&mut self.sizes);
        if sizes.len() < TRAIN_MIN_SAMPLES {
            return None;
        }
        let dict = zstd::dict::from_continuous(&data, &sizes, DICT_SIZE).ok()?;
        (!dict.is_empty() && dict.len() <= MAX_DICT).then_some(dict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{BlobKind, PackEntry, open_blob, open_blob_with, seal_blob, seal_blob_with};
    use coffer_testkit::mail;

    /// Mail-like small blobs: shared headers, varied words (series `seed`).
    fn mails(n: usize, seed: u32) -> Vec<Vec<u8>> {
        (0..n as u32).map(|i| mail::message(i, seed, mail::Ending::Bare)).collect()
    }

    fn trained(key: &MasterKey) -> &'static Dictionary {
        let mut t = Trainer::default();
        let mut full = false;
        for m in mails(TRAIN_SAMPLES, 1) {
            full = t.offer(&m);
        }
        assert!(full && t.enough());
        let bytes = t.train().expect("a dictionary");
        let (sealed, id) = seal(key, &bytes);
        open(key, id, &sealed, "dicts/x").unwrap()
    }

    struct One(&'static Dictionary);
    impl Dictionaries for One {
        fn with_short(&self, short: [u8; 4]) -> Result<Vec<&'static Dictionary>> {
            Ok(if self.0.short() == short { vec![self.0] } else { vec![] })
        }
    }

    fn entry(key: &MasterKey, d: &[u8], sealed: &[u8]) -> PackEntry {
        PackEntry {
            kind: BlobKind::Data,
            id: key.blob_id(d),
            offset: 0,
            length: u32::try_from(sealed.len()).unwrap(),
            raw_length: u32::try_from(d.len()).unwrap(),
            group: crate::pack::InGroup::NONE,
        }
    }

    #[test]
    fn size_dictionary_blobs_round_trip_and_are_smaller() {
        let k = MasterKey::generate();
        let d = trained(&k);
        let (mut plain, mut with) = (0, 0);
        for m in mails(300, 99) {
            let id = k.blob_id(&m);
            let a = seal_blob(&k, BlobKind::Data, &id, &m);
            let b = seal_blob_with(&k, BlobKind::Data, &id, &m, Some(d));
            let e = entry(&k, &m, &b);
            assert_eq!(open_blob_with(&k, &One(d), &e, &b, "p").unwrap(), m);
            // Without the dictionary the blob cannot be read, and the error names it.
            let err = open_blob(&k, &e, &b, "p").unwrap_err();
            assert!(err.to_string().contains(&id.to_string()), "{err}");
            plain += a.len();
            with += b.len();
        }
        assert!(with * 10 < plain * 7, "with a dictionary {with} bytes, without {plain}");
        // Trees and large blobs never use it.
        let tree = br#"{"nodes":[]}"#.repeat(10);
        let id = k.blob_id(&tree);
        let s = seal_blob_with(&k, BlobKind::Tree, &id, &tree, Some(d));
        let e = PackEntry { kind: BlobKind::Tree, ..entry(&k, &tree, &s) };
        assert_eq!(open_blob(&k, &e, &s, "p").unwrap(), tree);
        let big = vec![b'a'; DICT_BLOB_MAX + 1];
        let id = k.blob_id(&big);
        let s = seal_blob_with(&k, BlobKind::Data, &id, &big, Some(d));
        assert!(open_blob(&k, &entry(&k, &big, &s), &s, "p").is_ok());
    }

    /// A dictionary is attacker-controlled input: a forged one with a colliding ref, a
    /// claimed length past any dictionary blob, a decompression bomb, an oversized object.
    #[test]
    fn size_hostile_dictionaries_are_refused() {
        let k = MasterKey::generate();
        let d = trained(&k);
        let m = mails(1, 5).remove(0);
        let id = k.blob_id(&m);
        let b = seal_blob_with(&k, BlobKind::Data, &id, &m, Some(d));
        let e = entry(&k, &m, &b);
        // A different dictionary under the same ref: the blob's id check refuses the result.
        let other = intern(Id([0xee; 32]), b"not the dictionary at all, just some bytes");
        struct Both(&'static Dictionary, &'static Dictionary);
        impl Dictionaries for Both {
            fn with_short(&self, _: [u8; 4]) -> Result<Vec<&'static Dictionary>> {
                Ok(vec![self.0, self.1])
            }
        }
        let err = open_blob_with(&k, &One(other), &e, &b, "p");
        assert!(matches!(err, Err(RepoError::Corrupt { .. })), "{err:?}");
        // Forged first, genuine second: the genuine one still wins.
        assert_eq!(open_blob_with(&k, &Both(other, d), &e, &b, "p").unwrap(), m);
        // A raw length past any dictionary blob is refused before allocating.
        let mut huge = e;
        huge.raw_length = u32::MAX;
        let err = open_blob_with(&k, &One(d), &huge, &b, "p").unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        // A dictionary object that decompresses past the bound (a bomb), or is too large
        // stored, or is sealed for another name, is refused naming it.
        let (bomb, bid) = seal(&k, &vec![0u8; MAX_DICT + 1]);
        assert!(bomb.len() < 4096, "a bomb is small stored");
        let err = open(&k, bid, &bomb, "dicts/bomb").unwrap_err();
        assert!(err.to_string().contains("dicts/bomb") && err.to_string().contains("larger than"), "{err}");
        let err = open(&k, bid, &vec![0u8; MAX_DICT_OBJECT + 1], "dicts/big").unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        let other_kind = pack::seal_bytes(&k, ObjectKind::PgWal, DICT_NAME, b"x");
        assert!(open(&k, bid, &other_kind, "dicts/w").is_err());
    }
}
