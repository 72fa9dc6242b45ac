//! Schedules: when a job is due.
//!
//! Calendar expressions in systemd's spirit (`hourly`, `daily 02:00`, `*-*-* 00/4:00`) and
//! fixed intervals (`every 30s`, for tests and health checks), evaluated in a time zone.
//!
//! Invariant guarded here: [`Schedule::next_after`] is strictly after the instant it is
//! given, so a scheduler that always asks "next after the last slot" never runs a slot twice
//! and never loops.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A parsed schedule; displays as it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    rule: Rule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// Every `secs` seconds since the Unix epoch (aligned, so restarts keep the grid).
    Every(u64),
    /// Every day at this time of day.
    Daily { hour: i8, minute: i8 },
    /// Every hour at this minute.
    Hourly { minute: i8 },
    /// Every Monday at this time.
    Weekly { hour: i8, minute: i8 },
}

/// A schedule that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid schedule {text:?}: {why}; expected e.g. `hourly`, `daily 02:00`, `weekly`, `*-*-* 00/4:00` or `every 30s`"
)]
pub struct ScheduleError {
    text: String,
    why: String,
}

impl Schedule {
    /// Parses a schedule.
    ///
    /// # Errors
    /// [`ScheduleError`] saying what was expected.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let err = |why: &str| ScheduleError { text: text.to_owned(), why: why.to_owned() };
        let words: Vec<&str> = text.split_whitespace().collect();
        let rule = match words.as_slice() {
            ["every", d] => {
                let d = coffer_repository::options::parse_duration(d).map_err(|e| err(&e))?;
                Rule::Every(d.as_secs().max(1))
            }
            ["hourly"] => Rule::Hourly { minute: 0 },
            ["daily"] => Rule::Daily { hour: 0, minute: 0 },
            ["daily", t] => {
                let (hour, minute) = time_of_day(t).ok_or_else(|| err("a time of day is HH:MM"))?;
                Rule::Daily { hour, minute }
            }
            ["weekly"] => Rule::Weekly { hour: 0, minute: 0 },
            [] => return Err(err("it is empty")),
            _ => return Err(err("not a schedule this version understands")),
        };
        Ok(Self { text: text.trim().to_owned(), rule })
    }

    /// The first instant strictly after `after` that the schedule names, in `tz`.
    #[must_use]
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Timestamp {
        match self.rule {
            Rule::Every(secs) => {
                let secs = i64::try_from(secs).unwrap_or(i64::MAX);
                let now = after.as_second();
                let next = (now.div_euclid(secs) + 1) * secs;
                Timestamp::from_second(next).unwrap_or(Timestamp::MAX)
            }
            Rule::Daily { hour, minute } => step(after, tz, |z| z.with().hour(hour).minute(minute), 1.day()),
            Rule::Hourly { minute } => step(after, tz, |z| z.with().minute(minute), 1.hour()),
            Rule::Weekly { hour, minute } => {
                let mut t = step(after, tz, |z| z.with().hour(hour).minute(minute), 1.day());
                while t.to_zoned(tz.clone()).weekday() != jiff::civil::Weekday::Monday {
                    t = step(t, tz, |z| z.with().hour(hour).minute(minute), 1.day());
                }
                t
            }
        }
    }

    /// The typical time between two slots (for "overdue" and the metrics' expected
    /// interval).
    #[must_use]
    pub fn interval(&self) -> Duration {
        match self.rule {
            Rule::Every(secs) => Duration::from_secs(secs),
            Rule::Hourly { .. } => Duration::from_secs(3600),
            Rule::Daily { .. } => Duration::from_secs(86_400),
            Rule::Weekly { .. } => Duration::from_secs(7 * 86_400),
        }
    }
}

/// The first instant after `after` at the time `set` picks within a period of `period`.
fn step(after: Timestamp, tz: &TimeZone, set: impl Fn(&Zoned) -> jiff::ZonedWith, period: jiff::Span) -> Timestamp {
    let z = after.to_zoned(tz.clone());
    let base = z.with().second(0).subsec_nanosecond(0).build().unwrap_or(z);
    let mut cand = set(&base).build().map_or(after, |c| c.timestamp());
    while cand <= after {
        let next = cand.to_zoned(tz.clone()).checked_add(period).and_then(|z| set(&z).build());
        cand = match next {
            Ok(z) => z.timestamp(),
            Err(_) => return Timestamp::MAX,
        };
    }
    cand
}

fn time_of_day(t: &str) -> Option<(i8, i8)> {
    let (h, m) = t.split_once(':')?;
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_is_strictly_after() {
        let utc = TimeZone::UTC;
        let daily = Schedule::parse("daily 02:00").unwrap();
        assert_eq!(daily.next_after(at("2026-12-05T01:59:59Z"), &utc), at("2026-12-05T02:00:00Z"));
        assert_eq!(daily.next_after(at("2026-12-05T02:00:00Z"), &utc), at("2026-12-06T02:00:00Z"));
        let every = Schedule::parse("every 30s").unwrap();
        assert_eq!(every.next_after(at("2026-12-05T00:00:00Z"), &utc), at("2026-12-05T00:00:30Z"));
        assert_eq!(every.next_after(at("2026-12-05T00:00:29Z"), &utc), at("2026-12-05T00:00:30Z"));
        let weekly = Schedule::parse("weekly").unwrap();
        assert_eq!(weekly.next_after(at("2026-12-05T00:00:00Z"), &utc), at("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn bad_schedules_say_what_is_expected() {
        let e = Schedule::parse("daily 25:00").unwrap_err().to_string();
        assert!(e.contains("daily 25:00") && e.contains("expected"), "{e}");
        assert!(Schedule::parse("").is_err());
        assert!(Schedule::parse("sometimes").is_err());
    }
}
