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

/// Retention policy of a repository. Its serde form is the stored `config`'s (seconds);
/// as init options it is read through [`InitOptions`]' own form (human durations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct RetentionPolicy {
    /// Lock mode for every object (compliance unless the repository was made otherwise).
    #[cfg_attr(
        feature = "clap",
        arg(long, default_value = "compliance", value_name = "MODE", help = "Lock mode of every object")
    )]
    pub mode: RetentionMode,
    /// Default snapshot lifetime when a backup names none.
    #[serde(with = "secs")]
    #[cfg_attr(
        feature = "clap",
        arg(long, value_parser = crate::options::parse_duration, value_name = "DURATION", default_value = "30d", help = "Default snapshot lifetime when a backup names none")
    )]
    pub default_retain: Duration,
    /// Ceiling: no snapshot may be kept longer (the policy's "90 days after deletion").
    #[serde(with = "secs")]
    #[cfg_attr(
        feature = "clap",
        arg(long, value_parser = crate::options::parse_duration, value_name = "DURATION", default_value = "88d", help = "Ceiling: no snapshot is kept longer (the policy's 90 days after deletion, less the lock margin and rounding)")
    )]
    pub max_retain: Duration,
    /// Locks run at least this much past a snapshot's expiry (then to the next UTC
    /// midnight), so prune never races a reader.
    #[serde(with = "secs")]
    #[cfg_attr(feature = "clap", arg(skip = RetentionPolicy::default().margin))]
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
    /// Small data blobs are compressed with a per-repository dictionary (`dicts/`, trained
    /// from the first backup with enough small blobs). Chosen at `init` and never changed
    /// (the config is written once). Off by default: a dictionary holds fragments of the
    /// files it was trained on and is kept locked for as long as backups use it, so those
    /// fragments can outlive the 90-day ceiling after the files are deleted
    /// (docs/design.md, "Dictionary"). Absent in configs written before issue 16: off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dictionary: bool,
}

/// Options for `init`: the same struct for the command line (clap, feature `clap`: the
/// retention flags) and a policy file (serde: `mode`, `default-retain`, `max-retain` as
/// human durations, `host`; unknown keys refused). The key derivation cost and the lock
/// margin are not configurable there: they keep their defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "InitOptionsDoc", into = "InitOptionsDoc")]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct InitOptions {
    /// Retention policy.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub retention: RetentionPolicy,
    /// Key derivation cost.
    #[cfg_attr(feature = "clap", arg(skip))]
    pub kdf: KdfParams,
    /// Host name recorded with the first key.
    #[cfg_attr(feature = "clap", arg(skip))]
    pub host: String,
    /// Compress small files with a per-repository zstd dictionary (much smaller repositories
    /// of many small files; but the dictionary keeps fragments of the files it was trained on
    /// for as long as the repository is used, past the retention ceiling: docs/design.md).
    #[cfg_attr(feature = "clap", arg(long = "small-file-dictionary"))]
    pub dictionary: bool,
}

/// [`InitOptions`] as a policy file writes them.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct InitOptionsDoc {
    #[serde(default = "default_mode")]
    mode: RetentionMode,
    #[serde(default = "default_retain", with = "crate::options::duration")]
    default_retain: Duration,
    #[serde(default = "max_retain", with = "crate::options::duration")]
    max_retain: Duration,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    host: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    small_file_dictionary: bool,
}

fn default_mode() -> RetentionMode {
    RetentionPolicy::default().mode
}

fn default_retain() -> Duration {
    RetentionPolicy::default().default_retain
}

fn max_retain() -> Duration {
    RetentionPolicy::default().max_retain
}

impl TryFrom<InitOptionsDoc> for InitOptions {
    type Error = String;

    /// Refuses a floor above the ceiling as soon as the file is read (`init` checks again).
    fn try_from(d: InitOptionsDoc) -> std::result::Result<Self, String> {
        if d.default_retain > d.max_retain {
            return Err(format!(
                "default-retain ({}) exceeds max-retain ({})",
                humanize(d.default_retain),
                humanize(d.max_retain)
            ));
        }
        Ok(Self {
            retention: RetentionPolicy {
                mode: d.mode,
                default_retain: d.default_retain,
                max_retain: d.max_retain,
                ..RetentionPolicy::default()
            },
            kdf: KdfParams::default(),
            host: d.host,
            dictionary: d.small_file_dictionary,
        })
    }
}

impl From<InitOptions> for InitOptionsDoc {
    fn from(o: InitOptions) -> Self {
        Self {
            mode: o.retention.mode,
            default_retain: o.retention.default_retain,
            max_retain: o.retention.max_retain,
            host: o.host,
            small_file_dictionary: o.dictionary,
        }
    }
}

#[cfg(test)]
mod options_tests {
    use super::*;

    #[test]
    fn init_options_read_from_toml_and_refuse_unknown_keys() {
        let o: InitOptions =
            toml::from_str("mode = \"governance\"\ndefault-retain = \"14d\"\nmax-retain = \"60d\"\nhost = \"h\"\n")
                .unwrap();
        assert_eq!(o.retention.mode, RetentionMode::Governance);
        assert_eq!(o.retention.default_retain, Duration::from_secs(14 * 86_400));
        assert_eq!(o.retention.max_retain, Duration::from_secs(60 * 86_400));
        assert_eq!(o.retention.margin, RetentionPolicy::default().margin);
        assert_eq!(o.host, "h");
        assert_eq!(toml::from_str::<InitOptions>(&toml::to_string(&o).unwrap()).unwrap(), o);
        assert_eq!(toml::from_str::<InitOptions>("").unwrap().retention, RetentionPolicy::default());
        let err = toml::from_str::<InitOptions>("margin = \"1h\"\n").unwrap_err().to_string();
        assert!(err.contains("margin"), "{err}");
        let err = toml::from_str::<InitOptions>("default-retain = \"90d\"\n").unwrap_err().to_string();
        assert!(err.contains("exceeds max-retain"), "{err}");
    }
}
