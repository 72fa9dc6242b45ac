//! Shared by the `crash-writer` binary and the crash trials that kill it: how an object's
//! content follows from its key, the writer's line protocol, and a small seeded generator.
//!
//! The writer and the test never exchange data, only keys: the content of key `K` is
//! [`content_for_key`]`(K)`, so after a crash the test can recompute what every acknowledged
//! (or merely visible) version must contain.
//!
//! # Line protocol (writer stdout)
//!
//! Each line is written with one `write` and flushed *after* the store call returned, so a
//! line means "acknowledged":
//!
//! ```text
//! ACK <key> <version>                       a put returned
//! DEL <key> <version>                       a delete marker was added (version of the marker)
//! RET <key> <version> <mode> <until-secs>   a retention was set or extended
//! DONE                                      the requested number of operations finished
//! READY                                     (with --wait) logged in; waiting for a line on stdin
//! ```

use coffer_store::{RetentionMode, VersionId};

/// Domain separation for [`content_for_key`].
const CONTENT_CONTEXT: &str = "coffer-testkit crash-writer content v1";

/// The key of the `seq`-th object of a writer with `prefix`, holding `size` bytes.
#[must_use]
pub fn object_key(prefix: &str, seq: u64, size: usize) -> String {
    format!("{prefix}{seq:06}-{size}")
}

/// The size encoded in a key made by [`object_key`] (the number after the last `-`).
#[must_use]
pub fn size_of_key(key: &str) -> Option<usize> {
    key.rsplit_once('-')?.1.parse().ok()
}

/// The content every version of `key` holds: [`size_of_key`] bytes of BLAKE3 output keyed
/// by the key. `None` if the key encodes no size.
#[must_use]
pub fn content_for_key(key: &str) -> Option<Vec<u8>> {
    let size = size_of_key(key)?;
    let mut h = blake3::Hasher::new_derive_key(CONTENT_CONTEXT);
    h.update(key.as_bytes());
    let mut out = vec![0u8; size];
    h.finalize_xof().fill(&mut out);
    Some(out)
}

/// One line of the writer's output, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// A put returned this version.
    Put {
        /// Key.
        key: String,
        /// Version returned.
        version: VersionId,
    },
    /// A delete marker was added.
    Delete {
        /// Key.
        key: String,
        /// Version of the marker.
        version: VersionId,
    },
    /// A retention was set or extended.
    Retention {
        /// Key.
        key: String,
        /// Version whose retention changed.
        version: VersionId,
        /// Mode set.
        mode: RetentionMode,
        /// Retain-until, in seconds since the epoch.
        until: i64,
    },
    /// The writer finished its operations.
    Done,
    /// The writer has opened the vault and logged in, and waits for a line on stdin.
    Ready,
}

impl Ack {
    /// The line for this acknowledgement, with its newline.
    #[must_use]
    pub fn to_line(&self) -> String {
        match self {
            Self::Put { key, version } => format!("ACK {key} {version}\n"),
            Self::Delete { key, version } => format!("DEL {key} {version}\n"),
            Self::Retention { key, version, mode, until } => format!("RET {key} {version} {mode} {until}\n"),
            Self::Done => "DONE\n".to_owned(),
            Self::Ready => "READY\n".to_owned(),
        }
    }

    /// Parses one complete line (without its newline).
    ///
    /// # Errors
    /// A description of the malformed line.
    pub fn parse(line: &str) -> Result<Self, String> {
        let f: Vec<&str> = line.split(' ').collect();
        let bad = || format!("malformed crash-writer line {line:?}");
        match f.as_slice() {
            ["ACK", k, v] => Ok(Self::Put { key: (*k).to_owned(), version: VersionId::from(*v) }),
            ["DEL", k, v] => Ok(Self::Delete { key: (*k).to_owned(), version: VersionId::from(*v) }),
            ["RET", k, v, m, u] => Ok(Self::Retention {
                key: (*k).to_owned(),
                version: VersionId::from(*v),
                mode: m.parse().map_err(|_| bad())?,
                until: u.parse().map_err(|_| bad())?,
            }),
            ["DONE"] => Ok(Self::Done),
            ["READY"] => Ok(Self::Ready),
            _ => Err(bad()),
        }
    }
}

/// SplitMix64: a tiny seeded generator, so a run can be replayed from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from the operating system's random source.
    ///
    /// # Panics
    /// If the operating system has no random source.
    #[must_use]
    pub fn os_seed() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the operating system's random source failed");
        u64::from_le_bytes(b)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// A `usize` in `lo..=hi`.
    pub fn range_usize(&mut self, lo: usize, hi: usize) -> usize {
        usize::try_from(self.range(lo as u64, hi as u64)).expect("in range of usize")
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_follows_key() {
        let k = object_key("p/", 7, 5000);
        assert_eq!(size_of_key(&k), Some(5000));
        let a = content_for_key(&k).unwrap();
        assert_eq!(a.len(), 5000);
        assert_eq!(a, content_for_key(&k).unwrap());
        assert_ne!(a, content_for_key(&object_key("q/", 7, 5000)).unwrap());
        assert_eq!(content_for_key(&object_key("p/", 0, 0)).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn lines_round_trip() {
        for a in [
            Ack::Put { key: "a/1-2".into(), version: "v1".into() },
            Ack::Delete { key: "a/1-2".into(), version: "v2".into() },
            Ack::Retention { key: "a".into(), version: "v".into(), mode: RetentionMode::Compliance, until: 99 },
            Ack::Done,
            Ack::Ready,
        ] {
            assert_eq!(Ack::parse(a.to_line().trim_end()).unwrap(), a);
        }
        assert!(Ack::parse("ACK a").is_err());
    }
}
