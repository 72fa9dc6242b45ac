//! Job options as data: what the options structs of every job (`InitOptions`, `KeepRules`,
//! `VerifyOptions`, `PruneOptions`, the files source's backup and restore options) share so
//! that one struct serves the command line (clap, behind the `clap` feature) and a policy
//! file (`coffer.toml`, serde) alike.
//!
//! The conventions, checked by each struct's unit tests: keys are kebab-case, an unknown key
//! is refused with an error naming it (a typo in a policy file must not silently drop a
//! rule), and durations are written as people write them: `90d`, `12h`, `1h 30m`
//! ([`parse_duration`]), never as a bare number of seconds. (The repository's *stored*
//! formats keep their own encodings; these helpers are for options only.)

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The options of a `verify` job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct VerifyOptions {
    /// Also read and authenticate every byte of every pack live snapshots need
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, conflicts_with = "read_data_subset"))]
    pub read_data: bool,
    /// Also read a random share of the packs, e.g. `10%`
    #[serde(default, with = "opt_percent")]
    #[cfg_attr(feature = "clap", arg(long, value_name = "PERCENT", value_parser = parse_percent))]
    pub read_data_subset: Option<f64>,
}

impl VerifyOptions {
    /// How much data to read ([`crate::ReadData`]): all of it wins over a share.
    #[must_use]
    pub fn read(&self) -> crate::ReadData {
        match (self.read_data, self.read_data_subset) {
            (true, _) => crate::ReadData::All,
            (false, Some(f)) => crate::ReadData::Subset(f),
            (false, None) => crate::ReadData::None,
        }
    }
}

/// Parses a share such as `10%` (or `10`) into a fraction between 0 and 1.
///
/// # Errors
/// A message naming the value when it is not a percentage between 0% and 100%.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 =
        s.trim().trim_end_matches('%').parse().map_err(|_| format!("invalid percentage {s:?}; expected e.g. 10%"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("percentage {s:?} is not between 0% and 100%"));
    }
    Ok(v / 100.0)
}

/// A share as `"10%"` in a policy file.
mod opt_percent {
    use serde::{Deserialize as _, Deserializer, Serializer};

    #[allow(clippy::ref_option, reason = "serde's `with` passes a reference to the field")]
    pub fn serialize<S: Serializer>(f: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match f {
            Some(f) => s.serialize_str(&format!("{}%", f * 100.0)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| super::parse_percent(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

/// The options of a `prune` job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct PruneOptions {
    /// Show what would be removed, remove nothing
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, short = 'n'))]
    pub dry_run: bool,
}

/// Parses a positive duration such as `90d`, `12h`, `30s` or `1h 30m` (humantime's syntax).
///
/// # Errors
/// A message naming the value and the expected form; zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); expected e.g. 90d, 12h or 30s"))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} is zero; it must be positive"));
    }
    Ok(d)
}

/// [`parse_duration`], zero allowed (`0s`): for settings where zero means "never" or
/// "every time".
///
/// # Errors
/// A malformed duration, naming it.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); expected e.g. 90d, 12h or 0s"))
}

/// Formats a duration the way it is typed: the largest whole unit of d, h, m or s.
#[must_use]
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `#[serde(with = "coffer_repository::options::duration")]`: a [`Duration`] as a human
/// string (`"30d"`).
pub mod duration {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `d` as `30d`, `12h`, …
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    /// Reads a human duration.
    ///
    /// # Errors
    /// A malformed or zero duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "coffer_repository::options::opt_duration")]`: an optional [`Duration`]
/// as a human string; absent is `None` (use with `#[serde(default)]`).
pub mod opt_duration {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `d` as `30d`, `12h`, … or nothing.
    ///
    /// # Errors
    /// The serializer's.
    #[allow(clippy::ref_option, reason = "serde's `with` passes a reference to the field")]
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads a human duration.
    ///
    /// # Errors
    /// A malformed or zero duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| super::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

/// [`opt_duration`], zero allowed ([`parse_duration_or_zero`]).
pub mod opt_duration_or_zero {
    pub use super::opt_duration::serialize;
    use serde::{Deserialize as _, Deserializer};
    use std::time::Duration;

    /// Reads a human duration, zero included.
    ///
    /// # Errors
    /// A malformed duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| super::parse_duration_or_zero(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_typed_and_print_back_the_same() {
        for (text, secs) in [("90d", 90 * 86_400), ("12h", 43_200), ("1h 30m", 5_400), ("45s", 45)] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d.as_secs(), secs, "{text}");
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(90 * 86_400)), "90d");
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
        assert!(parse_duration("ninety days").is_err());
    }

    #[test]
    fn verify_options_read_from_toml_and_refuse_unknown_keys() {
        let o: VerifyOptions = toml::from_str("read-data-subset = \"10%\"\n").unwrap();
        assert!(matches!(o.read(), crate::ReadData::Subset(f) if (f - 0.1).abs() < 1e-9));
        let all: VerifyOptions = toml::from_str("read-data = true\nread-data-subset = \"5%\"\n").unwrap();
        assert!(matches!(all.read(), crate::ReadData::All));
        let none: VerifyOptions = toml::from_str("").unwrap();
        assert!(matches!(none.read(), crate::ReadData::None));
        let back: VerifyOptions = toml::from_str(&toml::to_string(&o).unwrap()).unwrap();
        assert_eq!(back, o);
        assert!(
            toml::from_str::<VerifyOptions>("read-data-subset = \"150%\"\n").unwrap_err().to_string().contains("150%")
        );
        let err = toml::from_str::<VerifyOptions>("read-everything = true\n").unwrap_err().to_string();
        assert!(err.contains("read-everything"), "{err}");
    }

    #[test]
    fn prune_options_read_from_toml_and_refuse_unknown_keys() {
        let o: PruneOptions = toml::from_str("dry-run = true\n").unwrap();
        assert!(o.dry_run);
        assert!(!toml::from_str::<PruneOptions>("").unwrap().dry_run);
        let err = toml::from_str::<PruneOptions>("dryrun = true\n").unwrap_err().to_string();
        assert!(err.contains("dryrun"), "{err}");
    }
}
