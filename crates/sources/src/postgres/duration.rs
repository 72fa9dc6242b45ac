//! Durations in options: human strings (`5m`, `1h 30m`, humantime's), on the command line
//! and in configuration files alike.

use std::time::Duration;

/// Parses a positive duration such as `90d`, `12h` or `30s` (clap's value parser).
///
/// # Errors
/// A message naming the value and the expected form.
pub fn parse(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); expected e.g. 90d, 12h or 30s"))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} is zero; it must be positive"));
    }
    Ok(d)
}

/// Serde: a duration as its human string.
///
/// # Errors
/// The serializer's.
pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// Serde: a duration from its human string.
///
/// # Errors
/// A value that [`parse`] refuses.
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}
