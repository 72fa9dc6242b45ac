//! Durations and times on the command line.
//!
//! Durations are humantime's (`90d`, `12h`, `30s`, `1h 30m`); times are RFC 3339 with an
//! offset (`2030-01-31T00:00:00Z`). A value that does not parse is a usage error naming the
//! flag (clap adds it) and the expected form.

use jiff::Timestamp;
use std::time::Duration;

/// Parses a positive duration such as `90d`, `12h` or `30s`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); expected e.g. 90d, 12h or 30s"))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} is zero; it must be positive"));
    }
    Ok(d)
}

/// Parses an RFC 3339 time such as `2030-01-31T00:00:00Z`.
pub fn time(s: &str) -> Result<Timestamp, String> {
    s.trim().parse().map_err(|e| format!("invalid time {s:?} ({e}); expected RFC 3339, e.g. 2030-01-31T00:00:00Z"))
}

/// Formats a period the way it is typed: the largest whole unit of d, h, m or s.
pub fn format_period(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
