//! Durations and times on the command line.
//!
//! Durations are humantime's (`90d`, `12h`, `30s`, `1h 30m`); times are RFC 3339 with an
//! offset (`2030-01-31T00:00:00Z`). A value that does not parse is a usage error naming the
//! flag (clap adds it) and the expected form.

use jiff::Timestamp;
use std::time::Duration;

/// Parses a positive duration such as `90d`, `12h` or `30s` (the options' own parser,
/// `coffer_repository::options::parse_duration`).
pub fn duration(s: &str) -> Result<Duration, String> {
    coffer_repository::options::parse_duration(s)
}

/// Parses an RFC 3339 time such as `2030-01-31T00:00:00Z`.
pub fn time(s: &str) -> Result<Timestamp, String> {
    s.trim().parse().map_err(|e| format!("invalid time {s:?} ({e}); expected RFC 3339, e.g. 2030-01-31T00:00:00Z"))
}

/// Formats a period the way it is typed: the largest whole unit of d, h, m or s.
pub fn format_period(d: Duration) -> String {
    coffer_repository::options::format_duration(d)
}
