//! The repository's configuration: what `init` fixes once for the repository's life
//! (chunker parameters, pack size, the retention policy) and the options `init` takes.
//!
//! Invariant guarded here: a retention policy's floor never exceeds its ceiling (checked by
//! `init`); the config is written once and read back by its first version only.

use super::*;

/// Content-defined chunking parameters (FastCDC 2020).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Minimum chunk size.
    pub min: u32,
    /// Average chunk size.
    pub avg: u32,
    /// Maximum chunk size.
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB, as restic: a 1 MiB average keeps the index at about a
    /// million entries per TiB (tens of MB of memory) and per-chunk overhead (40 bytes of
    /// AEAD, an index entry, a request's share) under 0.01 %, while an insertion still
    /// costs only the chunk or two around it.
    fn default() -> Self {
        Self { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 }
    }
}

/// Retention policy of a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RetentionPolicy {
    /// Lock mode for every object (compliance unless the repository was made otherwise).
    pub mode: RetentionMode,
    /// Default snapshot lifetime when a backup names none.
    #[serde(with = "secs")]
    pub default_retain: Duration,
    /// Ceiling: no snapshot may be kept longer (the policy's "90 days after deletion").
    #[serde(with = "secs")]
    pub max_retain: Duration,
    /// Locks run at least this much past a snapshot's expiry (then to the next UTC
    /// midnight), so prune never races a reader.
    #[serde(with = "secs")]
    pub margin: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            mode: RetentionMode::Compliance,
            default_retain: Duration::from_secs(30 * 86_400),
            max_retain: Duration::from_secs(88 * 86_400),
            margin: Duration::from_secs(12 * 3600),
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// The repository configuration (the `config` object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Format version.
    pub version: u8,
    /// Random repository id.
    pub id: Id,
    /// Creation time.
    pub created: Timestamp,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Retention policy.
    pub retention: RetentionPolicy,
}

/// Options for `init`.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Retention policy.
    pub retention: RetentionPolicy,
    /// Key derivation cost.
    pub kdf: KdfParams,
    /// Host name recorded with the first key.
    pub host: String,
}
