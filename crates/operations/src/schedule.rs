//! Schedules: when a job is due.
//!
//! Calendar expressions in the spirit of systemd.time(7) (`hourly`, `daily 02:00`,
//! `Mon..Fri 02:00`, `*-*-* 00/4:00`, `*-*-* *:*:00/10`) and fixed intervals (`every 30s`),
//! evaluated in a time zone. The grammar, with what is not supported, is in
//! `docs/schedules.md`.
//!
//! Invariants guarded here:
//! - [`Schedule::next_after`] is strictly after the instant it is given, so a scheduler that
//!   always asks "next after the last slot" never runs a slot twice and never loops;
//! - it terminates quickly for every expression: the search skips by field (year, month,
//!   day, hour, minute, second), never second by second, and gives up after
//!   [`HORIZON_YEARS`] years with [`Timestamp::MAX`] ("never");
//! - around DST changes every civil slot runs exactly once: a slot in a spring-forward gap
//!   runs at the instant the clocks jump (the next valid instant), a slot in a fall-back
//!   fold runs at its first occurrence only.

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How far ahead [`Schedule::next_after`] looks before it answers "never".
pub const HORIZON_YEARS: i32 = 500;

/// The years a calendar expression may name (jiff's civil range ends at 9999).
const YEARS: (i32, i32) = (1970, 9999);

/// A safety net on the search loop; the field-skipping search needs a few iterations per
/// year even for the sparsest expression (`*-02-29 Mon`), so this is never reached.
const MAX_STEPS: u32 = 100_000;

/// What [`Schedule::interval`] says for a schedule with fewer than two slots.
const NO_INTERVAL: Duration = Duration::from_secs(365 * 86_400);

/// A parsed schedule; displays as it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    rule: Rule,
    /// Computed once at parse time: the daemon and the metrics ask for it often.
    interval: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// Every `secs` seconds since the Unix epoch (aligned, so restarts keep the grid).
    Every(u64),
    /// A calendar expression.
    Calendar(Calendar),
}

/// A calendar expression: a set of civil date-times. Small fields are bit sets (bit `v` set
/// when value `v` matches); years are kept as items because they span thousands of values.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Calendar {
    /// Bit 0 is Monday, bit 6 Sunday.
    weekdays: u8,
    years: Vec<Item>,
    months: u64,
    days: u64,
    hours: u64,
    minutes: u64,
    seconds: u64,
}

/// `start..end/step` (a single value is `v..v/1`, `*` is the whole range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Item {
    start: i32,
    end: i32,
    step: i32,
}

impl Item {
    /// The smallest value of the item that is at least `v`.
    fn next_at_or_after(self, v: i32) -> Option<i32> {
        if v > self.end {
            return None;
        }
        if v <= self.start {
            return Some(self.start);
        }
        let k = (v - self.start + self.step - 1) / self.step;
        let n = self.start + k * self.step;
        (n <= self.end).then_some(n)
    }
}

/// A schedule that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid schedule {text:?}: {why}; expected e.g. `hourly`, `daily 02:00`, `Mon..Fri 02:00`, `*-*-* 00/4:00` or `every 30s` (see docs/schedules.md)"
)]
pub struct ScheduleError {
    text: String,
    why: String,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WEEKDAYS_LONG: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const FIELD_SYNTAX: &str = "`*`, a number, a list `a,b`, a range `a..b` or a repetition `start/step`";

impl Schedule {
    /// Parses a schedule.
    ///
    /// # Errors
    /// [`ScheduleError`], one line saying what is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let err = |why: String| ScheduleError { text: text.to_owned(), why };
        let rule = parse_rule(text).map_err(err)?;
        if let Rule::Calendar(cal) = &rule {
            cal.check_can_occur().map_err(err)?;
        }
        let interval = typical_interval(&rule);
        Ok(Self { text: text.trim().to_owned(), rule, interval })
    }

    /// The first instant strictly after `after` that the schedule names, in `tz`;
    /// [`Timestamp::MAX`] when there is none within [`HORIZON_YEARS`] years.
    #[must_use]
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Timestamp {
        match &self.rule {
            Rule::Every(secs) => {
                let secs = i64::try_from(*secs).unwrap_or(i64::MAX);
                let now = after.as_second();
                let next = now.div_euclid(secs).saturating_add(1).saturating_mul(secs);
                Timestamp::from_second(next).unwrap_or(Timestamp::MAX)
            }
            Rule::Calendar(cal) => cal.next_after(after, tz).unwrap_or(Timestamp::MAX),
        }
    }

    /// The slots in `(after, until]`, in order: what the daemon missed while it was down.
    /// Lazy, so a long outage with a second-level schedule costs only what is consumed.
    pub fn slots(&self, after: Timestamp, until: Timestamp, tz: &TimeZone) -> impl Iterator<Item = Timestamp> + use<> {
        let schedule = self.clone();
        let tz = tz.clone();
        let mut last = after;
        std::iter::from_fn(move || {
            let next = schedule.next_after(last, &tz);
            if next == Timestamp::MAX || next > until {
                return None;
            }
            last = next;
            Some(next)
        })
    }

    /// The typical time between two slots (for "overdue" and the metrics' expected
    /// interval): for a calendar, the largest gap among its first slots after a fixed
    /// reference instant, so that `Mon..Fri 02:00` says three days (a job is not overdue
    /// on a Sunday); one year for a schedule with fewer than two slots.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// A uniformly random delay in `[0, max]` (nanosecond resolution), from the operating
/// system's generator; zero if the generator fails (a missing delay only loses the
/// spreading, never a run).
#[must_use]
pub fn random_delay(max: Duration) -> Duration {
    let Ok(nanos) = u64::try_from(max.as_nanos()) else {
        // Longer than 584 years: spread at second resolution instead.
        let secs = (u128::from(getrandom::u64().unwrap_or(0)) * (u128::from(max.as_secs()) + 1)) >> 64;
        return Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    };
    let r = getrandom::u64().unwrap_or(0);
    // Multiply-shift maps 64 random bits onto [0, nanos]; the bias is below 2^-64 * nanos.
    let n = (u128::from(r) * (u128::from(nanos) + 1)) >> 64;
    Duration::from_nanos(u64::try_from(n).unwrap_or(nanos))
}

// ---- parsing ----

fn parse_rule(text: &str) -> Result<Rule, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Err("it is empty".to_owned());
    };
    let rest = &words[1..];
    let shorthand = first.to_ascii_lowercase();
    let cal = match shorthand.as_str() {
        "every" => {
            let [d] = rest else {
                return Err("write `every DURATION`, e.g. `every 30s` or `every 6h`".to_owned());
            };
            let d = coffer_repository::options::parse_duration(d)?;
            if d.subsec_nanos() != 0 {
                return Err(format!("`every {d:?}` is not a whole number of seconds"));
            }
            return Ok(Rule::Every(d.as_secs()));
        }
        "minutely" => {
            no_more(&shorthand, rest, "nothing")?;
            Calendar::at(ALL, ALL, ALL, ALL, bit(0))
        }
        "hourly" => {
            let (minutes, seconds) = match rest {
                [] => (bit(0), bit(0)),
                [t] if t.starts_with(':') => {
                    let parts: Vec<&str> = t[1..].split(':').collect();
                    match parts.as_slice() {
                        [m] => (mask(m, "minute", 0, 59)?, bit(0)),
                        [m, s] => (mask(m, "minute", 0, 59)?, mask(s, "second", 0, 59)?),
                        _ => return Err("`hourly` takes `:MM` or `:MM:SS`, e.g. `hourly :15`".to_owned()),
                    }
                }
                _ => return Err("`hourly` takes at most `:MM` or `:MM:SS`, e.g. `hourly :15`".to_owned()),
            };
            Calendar::at(ALL, ALL, ALL, minutes, seconds)
        }
        "daily" | "monthly" | "yearly" => {
            let mut cal = match rest {
                [] => Calendar::at(ALL, ALL, bit(0), bit(0), bit(0)),
                [t] if t.contains(':') => time_of(Calendar::at(ALL, ALL, ALL, ALL, ALL), t)?,
                _ => return Err(format!("`{shorthand}` takes at most a time of day, e.g. `{shorthand} 02:00`")),
            };
            if shorthand != "daily" {
                cal.days = bit(1);
            }
            if shorthand == "yearly" {
                cal.months = bit(1);
            }
            cal
        }
        "weekly" => {
            let mut rest = rest;
            let weekdays = match rest.first() {
                Some(w) if w.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                    rest = &rest[1..];
                    weekday_set(w)?
                }
                _ => 1,
            };
            let mut cal = match rest {
                [] => Calendar::at(ALL, ALL, bit(0), bit(0), bit(0)),
                [t] if t.contains(':') => time_of(Calendar::at(ALL, ALL, ALL, ALL, ALL), t)?,
                _ => return Err("`weekly` takes an optional weekday and time, e.g. `weekly Sun 03:00`".to_owned()),
            };
            cal.weekdays = weekdays;
            cal
        }
        _ => full_form(&words)?,
    };
    Ok(Rule::Calendar(cal))
}

fn no_more(word: &str, rest: &[&str], what: &str) -> Result<(), String> {
    match rest.first() {
        None => Ok(()),
        Some(w) => Err(format!("unexpected `{w}`: `{word}` takes {what}")),
    }
}

/// `[WEEKDAYS] [[YYYY-]MM-DD] [HH:MM[:SS]]`.
fn full_form(words: &[&str]) -> Result<Calendar, String> {
    let mut cal = Calendar::at(ALL, ALL, ALL, ALL, ALL);
    let mut rest = words;
    if let Some(w) = rest.first().filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic())) {
        cal.weekdays = weekday_set(w).map_err(|e| {
            if w.contains(',') || w.contains("..") {
                e
            } else {
                format!(
                    "unknown word `{w}`: a schedule is a shorthand (minutely, hourly, daily, weekly, monthly, yearly), `every DURATION` or [WEEKDAYS] [YYYY-MM-DD] [HH:MM[:SS]] with weekdays Mon..Sun"
                )
            }
        })?;
        rest = &rest[1..];
    }
    let (mut has_date, mut has_time) = (false, false);
    if let Some(d) = rest.first().filter(|w| w.contains('-')) {
        let parts: Vec<&str> = d.split('-').collect();
        let (y, m, day) = match parts.as_slice() {
            [y, m, day] => (Some(*y), *m, *day),
            [m, day] => (None, *m, *day),
            _ => return Err(format!("`{d}` is not a date: write YYYY-MM-DD or MM-DD, each part {FIELD_SYNTAX}")),
        };
        if let Some(y) = y {
            cal.years = items(y, "year", YEARS.0, YEARS.1)?;
        }
        cal.months = mask(m, "month", 1, 12)?;
        cal.days = mask(day, "day", 1, 31)?;
        has_date = true;
        rest = &rest[1..];
    }
    match rest.first() {
        None => {
            // systemd: a time left out is midnight.
            cal.hours = bit(0);
            cal.minutes = bit(0);
            cal.seconds = bit(0);
        }
        Some(t) if t.contains(':') => {
            cal = time_of(cal, t)?;
            rest = &rest[1..];
            has_time = true;
        }
        Some(_) => {}
    }
    if let Some(w) = rest.first() {
        let expected = match (has_date, has_time) {
            (_, true) => "nothing after the time",
            (true, false) => "a time HH:MM[:SS]",
            (false, false) => "a date YYYY-MM-DD or a time HH:MM[:SS]",
        };
        return Err(format!(
            "unexpected `{w}`: expected {expected}; the full form is [WEEKDAYS] [YYYY-MM-DD] [HH:MM[:SS]]"
        ));
    }
    Ok(cal)
}

/// Sets the hour, minute and second fields from `HH:MM[:SS]` (seconds left out are 0).
fn time_of(mut cal: Calendar, t: &str) -> Result<Calendar, String> {
    let parts: Vec<&str> = t.split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] => (*h, *m, *s),
        _ => return Err(format!("`{t}` is not a time of day: write HH:MM or HH:MM:SS, each part {FIELD_SYNTAX}")),
    };
    cal.hours = mask(h, "hour", 0, 23)?;
    cal.minutes = mask(m, "minute", 0, 59)?;
    cal.seconds = mask(s, "second", 0, 59)?;
    Ok(cal)
}

/// A field: `*`, `v`, `a..b`, `start/step`, `a..b/step`, `*/step`, comma-separated.
fn items(text: &str, name: &str, lo: i32, hi: i32) -> Result<Vec<Item>, String> {
    let num = |s: &str| -> Result<i32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 5 {
            return Err(format!("{name} `{s}` is not a number; a {name} is {FIELD_SYNTAX}"));
        }
        let v: i32 = s.parse().map_err(|_| format!("{name} `{s}` is not a number"))?;
        if !(lo..=hi).contains(&v) {
            return Err(format!("{name} {v} is out of range {lo}..{hi}"));
        }
        Ok(v)
    };
    text.split(',')
        .map(|part| {
            let (base, step) = match part.split_once('/') {
                Some((base, step)) => {
                    let n: i32 = step
                        .parse()
                        .ok()
                        .filter(|n| *n > 0 && step.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| format!("{name} repetition `{part}` needs a positive step, e.g. `0/15`"))?;
                    (base, Some(n))
                }
                None => (part, None),
            };
            let (start, end) = if base == "*" {
                (lo, hi)
            } else if let Some((a, b)) = base.split_once("..") {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("{name} range {a}..{b} goes backwards"));
                }
                (a, b)
            } else {
                let a = num(base)?;
                // `start/step` repeats to the end of the field; a lone value is itself.
                (a, if step.is_some() { hi } else { a })
            };
            Ok(Item { start, end, step: step.unwrap_or(1) })
        })
        .collect()
}

/// A small field (values below 64) as a bit set.
fn mask(text: &str, name: &str, lo: i32, hi: i32) -> Result<u64, String> {
    let mut m = 0u64;
    for item in items(text, name, lo, hi)? {
        let mut v = item.start;
        while v <= item.end {
            m |= 1 << v;
            v += item.step;
        }
    }
    Ok(m)
}

/// `Mon`, `Mon,Wed`, `Mon..Fri`, `Sat,Sun`; full names too, any case.
fn weekday_set(text: &str) -> Result<u8, String> {
    let day = |s: &str| -> Result<u8, String> {
        let l = s.to_ascii_lowercase();
        WEEKDAYS
            .iter()
            .zip(WEEKDAYS_LONG)
            .position(|(short, long)| l == *short || l == long)
            .map(|i| u8::try_from(i).unwrap_or(0))
            .ok_or_else(|| {
                format!(
                    "unknown weekday `{s}`: use Mon, Tue, Wed, Thu, Fri, Sat, Sun, lists `Sat,Sun` or ranges `Mon..Fri`"
                )
            })
    };
    let mut set = 0u8;
    for part in text.split(',') {
        if let Some((a, b)) = part.split_once("..") {
            let (a, b) = (day(a)?, day(b)?);
            if a > b {
                return Err(format!(
                    "weekday range `{part}` goes backwards; ranges run Mon..Sun, e.g. `Mon..Fri` or `Sat,Sun`"
                ));
            }
            for d in a..=b {
                set |= 1 << d;
            }
        } else {
            set |= 1 << day(part)?;
        }
    }
    Ok(set)
}

const ALL: u64 = u64::MAX;

const fn bit(v: u32) -> u64 {
    1 << v
}

// ---- evaluation ----

/// The lowest value in `mask` that is at least `v`.
fn next_in(mask: u64, v: i32) -> Option<i32> {
    let v = u32::try_from(v).ok().filter(|v| *v < 64)?;
    let m = mask & (u64::MAX << v);
    (m != 0).then(|| i32::try_from(m.trailing_zeros()).unwrap_or(64))
}

impl Calendar {
    /// Every field matches anything except the given time-of-day masks (`ALL` for any);
    /// callers narrow the date fields.
    fn at(months: u64, days: u64, hours: u64, minutes: u64, seconds: u64) -> Self {
        Self {
            weekdays: 0x7f,
            years: vec![Item { start: YEARS.0, end: YEARS.1, step: 1 }],
            months: months & 0x1ffe,
            days: days & 0xffff_fffe,
            hours: hours & 0x00ff_ffff,
            minutes: minutes & ((1 << 60) - 1),
            seconds: seconds & ((1 << 60) - 1),
        }
    }

    /// Rejects day/month combinations that never exist (`*-02-30`), so that a typo is an
    /// error at load time instead of a job that silently never runs.
    fn check_can_occur(&self) -> Result<(), String> {
        let longest = (1..=12)
            .filter(|m| self.months & (1 << m) != 0)
            .map(|m| match m {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            })
            .max()
            .unwrap_or(0);
        match next_in(self.days, 1) {
            Some(first) if first <= longest => Ok(()),
            _ => {
                Err(format!("that day of the month never occurs in the chosen months (the longest has {longest} days)"))
            }
        }
    }

    fn next_year(&self, y: i32) -> Option<i32> {
        self.years.iter().filter_map(|i| i.next_at_or_after(y)).min()
    }

    fn day_matches(&self, date: Date) -> bool {
        let wd = date.weekday().to_monday_zero_offset();
        self.weekdays & (1 << wd) != 0
    }

    /// The civil date-time fields in order, searched from the largest: on a field with no
    /// match left, carry into the next larger field and reset the smaller ones.
    fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after).with().subsec_nanosecond(0).build().ok()?.checked_add(1.second()).ok()?;
        let mut f = Fields::of(start);
        let horizon = (f.y + HORIZON_YEARS).min(YEARS.1);
        for _ in 0..MAX_STEPS {
            let y = self.next_year(f.y).filter(|y| *y <= horizon)?;
            if y != f.y {
                f = Fields { y, mo: 1, d: 1, h: 0, mi: 0, s: 0 };
            }
            match next_in(self.months, f.mo) {
                None => {
                    f = Fields { y: f.y + 1, mo: 1, d: 1, h: 0, mi: 0, s: 0 };
                    continue;
                }
                Some(mo) if mo != f.mo => f = Fields { mo, d: 1, h: 0, mi: 0, s: 0, ..f },
                Some(_) => {}
            }
            let days_in_month =
                i32::from(Date::new(i16::try_from(f.y).ok()?, i8::try_from(f.mo).ok()?, 1).ok()?.days_in_month());
            let mut day = next_in(self.days, f.d);
            while let Some(d) = day.filter(|d| *d <= days_in_month) {
                let date = Date::new(i16::try_from(f.y).ok()?, i8::try_from(f.mo).ok()?, i8::try_from(d).ok()?).ok()?;
                if self.day_matches(date) {
                    break;
                }
                day = next_in(self.days, d + 1);
            }
            match day.filter(|d| *d <= days_in_month) {
                None => {
                    f = Fields { mo: f.mo + 1, d: 1, h: 0, mi: 0, s: 0, ..f };
                    continue;
                }
                Some(d) if d != f.d => f = Fields { d, h: 0, mi: 0, s: 0, ..f },
                Some(_) => {}
            }
            match next_in(self.hours, f.h) {
                None => {
                    f = Fields { d: f.d + 1, h: 0, mi: 0, s: 0, ..f };
                    continue;
                }
                Some(h) if h != f.h => f = Fields { h, mi: 0, s: 0, ..f },
                Some(_) => {}
            }
            match next_in(self.minutes, f.mi) {
                None => {
                    f = Fields { h: f.h + 1, mi: 0, s: 0, ..f };
                    continue;
                }
                Some(mi) if mi != f.mi => f = Fields { mi, s: 0, ..f },
                Some(_) => {}
            }
            match next_in(self.seconds, f.s) {
                None => {
                    f = Fields { mi: f.mi + 1, s: 0, ..f };
                    continue;
                }
                Some(s) => f.s = s,
            }
            let dt = f.to_datetime()?;
            match resolve(dt, tz, after) {
                Ok(ts) => return Some(ts),
                Err(resume) => f = Fields::of(resume),
            }
        }
        None
    }
}

/// A civil date-time being searched; fields may run one past their range (a carry the
/// next loop iteration resolves).
#[derive(Clone, Copy)]
struct Fields {
    y: i32,
    mo: i32,
    d: i32,
    h: i32,
    mi: i32,
    s: i32,
}

impl Fields {
    fn of(dt: DateTime) -> Self {
        Self {
            y: i32::from(dt.year()),
            mo: i32::from(dt.month()),
            d: i32::from(dt.day()),
            h: i32::from(dt.hour()),
            mi: i32::from(dt.minute()),
            s: i32::from(dt.second()),
        }
    }

    fn to_datetime(self) -> Option<DateTime> {
        let n = |v: i32| i8::try_from(v).ok();
        DateTime::new(i16::try_from(self.y).ok()?, n(self.mo)?, n(self.d)?, n(self.h)?, n(self.mi)?, n(self.s)?, 0).ok()
    }
}

/// The instant of civil slot `dt` in `tz` if it is after `after`; otherwise the civil
/// date-time to resume the search from.
///
/// - In a spring-forward gap the slot runs at the transition (the first valid instant
///   after the missing hour), so it runs once that day, as late as it must.
/// - In a fall-back fold the slot runs at its first occurrence; if that is already past
///   (`after` lies in the repeated hour), the whole repeated hour is skipped: the slot ran.
fn resolve(dt: DateTime, tz: &TimeZone, after: Timestamp) -> Result<Timestamp, DateTime> {
    let next_second = || dt.checked_add(1.second()).unwrap_or(DateTime::MAX);
    let ts = match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).map_err(|_| DateTime::MAX)?,
        AmbiguousOffset::Gap { before, after: later } => {
            // dt - later is before the transition, dt - before at or after it.
            let probe = later.to_timestamp(dt).map_err(|_| DateTime::MAX)?;
            match tz.following(probe).next() {
                Some(t) => t.timestamp(),
                None => before.to_timestamp(dt).map_err(|_| DateTime::MAX)?,
            }
        }
        AmbiguousOffset::Fold { before, after: later } => {
            let first = before.to_timestamp(dt).map_err(|_| DateTime::MAX)?;
            if first > after {
                first
            } else {
                // Resume at the end of the fold: the transition read in the later offset.
                let resume = tz.following(first).next().map(|t| later.to_datetime(t.timestamp()));
                return Err(resume.filter(|r| *r > dt).unwrap_or_else(next_second));
            }
        }
    };
    if ts > after { Ok(ts) } else { Err(next_second()) }
}

/// See [`Schedule::interval`].
fn typical_interval(rule: &Rule) -> Duration {
    let cal = match rule {
        Rule::Every(secs) => return Duration::from_secs(*secs),
        Rule::Calendar(cal) => cal,
    };
    // A fixed reference in UTC keeps the answer stable across calls and restarts.
    let reference = Timestamp::from_second(978_307_200).unwrap_or(Timestamp::UNIX_EPOCH); // 2001-01-01
    let mut largest: Option<Duration> = None;
    let mut prev = cal.next_after(reference, &TimeZone::UTC);
    for _ in 0..32 {
        let Some(t) = prev else { break };
        let Some(next) = cal.next_after(t, &TimeZone::UTC) else { break };
        let gap = Duration::from_secs(u64::try_from(next.as_second() - t.as_second()).unwrap_or(0));
        largest = Some(largest.map_or(gap, |l| l.max(gap)));
        prev = Some(next);
    }
    largest.unwrap_or(NO_INTERVAL)
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
    use proptest::prelude::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap_or_else(|e| panic!("time zone {name}: {e}; install tzdata (apt-get install tzdata)"))
    }

    fn sched(s: &str) -> Schedule {
        Schedule::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next `n` slots after `from`, as RFC 3339 in UTC.
    fn next_n(s: &str, from: &str, tz: &TimeZone, n: usize) -> Vec<String> {
        let s = sched(s);
        let mut t = at(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t, tz);
                t.to_string()
            })
            .collect()
    }

    #[test]
    fn next_is_strictly_after() {
        let utc = TimeZone::UTC;
        let daily = sched("daily 02:00");
        assert_eq!(daily.next_after(at("2026-12-05T01:59:59Z"), &utc), at("2026-12-05T02:00:00Z"));
        assert_eq!(daily.next_after(at("2026-12-05T01:59:59.999Z"), &utc), at("2026-12-05T02:00:00Z"));
        assert_eq!(daily.next_after(at("2026-12-05T02:00:00Z"), &utc), at("2026-12-06T02:00:00Z"));
        assert_eq!(daily.next_after(at("2026-12-05T02:00:00.5Z"), &utc), at("2026-12-06T02:00:00Z"));
        let every = sched("every 30s");
        assert_eq!(every.next_after(at("2026-12-05T00:00:00Z"), &utc), at("2026-12-05T00:00:30Z"));
        assert_eq!(every.next_after(at("2026-12-05T00:00:29Z"), &utc), at("2026-12-05T00:00:30Z"));
        let weekly = sched("weekly");
        assert_eq!(weekly.next_after(at("2026-12-05T00:00:00Z"), &utc), at("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn shorthands() {
        let utc = TimeZone::UTC;
        let from = "2026-12-05T10:20:30Z"; // a Saturday
        let one = |s: &str| next_n(s, from, &utc, 1).remove(0);
        assert_eq!(one("minutely"), "2026-12-05T10:21:00Z");
        assert_eq!(one("hourly"), "2026-12-05T11:00:00Z");
        assert_eq!(one("hourly :15"), "2026-12-05T11:15:00Z");
        assert_eq!(one("hourly :25"), "2026-12-05T10:25:00Z");
        assert_eq!(one("hourly :20:45"), "2026-12-05T10:20:45Z");
        assert_eq!(one("daily"), "2026-12-06T00:00:00Z");
        assert_eq!(one("daily 02:00"), "2026-12-06T02:00:00Z");
        assert_eq!(one("daily 10:20:31"), "2026-12-05T10:20:31Z");
        assert_eq!(one("weekly"), "2026-12-07T00:00:00Z");
        assert_eq!(one("weekly Sun 03:00"), "2026-12-06T03:00:00Z");
        assert_eq!(one("weekly Sat"), "2026-12-12T00:00:00Z");
        assert_eq!(one("monthly"), "2027-01-01T00:00:00Z");
        assert_eq!(one("monthly 06:00"), "2027-01-01T06:00:00Z");
        assert_eq!(one("yearly"), "2027-01-01T00:00:00Z");
        assert_eq!(one("DAILY 02:00"), "2026-12-06T02:00:00Z");
    }

    #[test]
    fn weekdays() {
        let utc = TimeZone::UTC;
        let from = "2026-12-04T12:00:00Z"; // a Friday
        assert_eq!(
            next_n("Mon..Fri 02:00", from, &utc, 3),
            ["2026-12-07T02:00:00Z", "2026-12-08T02:00:00Z", "2026-12-09T02:00:00Z"]
        );
        assert_eq!(
            next_n("Sat,Sun 04:00", from, &utc, 3),
            ["2026-12-05T04:00:00Z", "2026-12-06T04:00:00Z", "2026-12-12T04:00:00Z"]
        );
        assert_eq!(
            next_n("Mon,Wed..Thu", from, &utc, 3),
            ["2026-12-07T00:00:00Z", "2026-12-09T00:00:00Z", "2026-12-10T00:00:00Z"]
        );
        assert_eq!(next_n("friday *-*-* 13:00", from, &utc, 2), ["2026-12-04T13:00:00Z", "2026-12-11T13:00:00Z"]);
        // A weekday and a date together: the first Friday the 13th after the start.
        assert_eq!(next_n("Fri *-*-13 00:00", from, &utc, 2), ["2027-08-13T00:00:00Z", "2028-10-13T00:00:00Z"]);
    }

    #[test]
    fn full_form_fields() {
        let utc = TimeZone::UTC;
        let from = "2026-12-05T10:20:30Z";
        assert_eq!(
            next_n("*-*-* 00/4:00", from, &utc, 4),
            ["2026-12-05T12:00:00Z", "2026-12-05T16:00:00Z", "2026-12-05T20:00:00Z", "2026-12-06T00:00:00Z"]
        );
        assert_eq!(
            next_n("*-*-* *:*:00/10", from, &utc, 3),
            ["2026-12-05T10:20:40Z", "2026-12-05T10:20:50Z", "2026-12-05T10:21:00Z"]
        );
        assert_eq!(next_n("*:0/15", from, &utc, 2), ["2026-12-05T10:30:00Z", "2026-12-05T10:45:00Z"]);
        assert_eq!(next_n("*-*-* 08,20:30", from, &utc, 2), ["2026-12-05T20:30:00Z", "2026-12-06T08:30:00Z"]);
        assert_eq!(
            next_n("*-*-* 09..11:00", from, &utc, 3),
            ["2026-12-05T11:00:00Z", "2026-12-06T09:00:00Z", "2026-12-06T10:00:00Z"]
        );
        assert_eq!(
            next_n("*-*-* 1..12/5:00", from, &utc, 3),
            ["2026-12-05T11:00:00Z", "2026-12-06T01:00:00Z", "2026-12-06T06:00:00Z"]
        );
        assert_eq!(next_n("*-*-01,15 03:00", from, &utc, 2), ["2026-12-15T03:00:00Z", "2027-01-01T03:00:00Z"]);
        assert_eq!(next_n("12-25", from, &utc, 2), ["2026-12-25T00:00:00Z", "2027-12-25T00:00:00Z"]);
        assert_eq!(next_n("2027-*-* 00:00", from, &utc, 1), ["2027-01-01T00:00:00Z"]);
        assert_eq!(next_n("2026/2-01-01", from, &utc, 2), ["2028-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]);
        assert_eq!(next_n("*-02-29 12:00", from, &utc, 2), ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]);
        assert_eq!(next_n("*-*-31", "2027-01-31T00:00:00Z", &utc, 2), ["2027-03-31T00:00:00Z", "2027-05-31T00:00:00Z"]);
        assert_eq!(next_n("02:30", from, &utc, 1), ["2026-12-06T02:30:00Z"]);
        // Wraps across the end of the year.
        assert_eq!(next_n("*-*-* 23:59:59", "2026-12-31T23:59:59Z", &utc, 1), ["2027-01-01T23:59:59Z"]);
    }

    #[test]
    fn the_documented_examples_parse_and_unsupported_forms_do_not() {
        let utc = TimeZone::UTC;
        let from = "2026-12-05T10:20:30Z";
        assert_eq!(next_n("*-*/3-01", from, &utc, 2), ["2027-01-01T00:00:00Z", "2027-04-01T00:00:00Z"]);
        assert_eq!(
            next_n("*-*-* 8..20/4:00", from, &utc, 4),
            ["2026-12-05T12:00:00Z", "2026-12-05T16:00:00Z", "2026-12-05T20:00:00Z", "2026-12-06T08:00:00Z"]
        );
        let doc = include_str!("../../../docs/schedules.md");
        // Table rows: the shorthand and example tables (two columns) hold schedules in both
        // columns; the field-syntax table (three columns) in its last.
        let mut checked = 0;
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split('|').collect();
            let with_schedules = if cells.len() == 5 { &cells[3..4] } else { &cells[1..3] };
            for example in with_schedules.iter().flat_map(|c| c.split('`').skip(1).step_by(2)) {
                assert!(Schedule::parse(example).is_ok(), "docs/schedules.md: {example:?}");
                checked += 1;
            }
        }
        assert!(checked > 30, "{checked}");
        for text in [
            "02:00 Europe/Berlin",
            "UTC",
            "*-*~01",
            "00:00:00.5",
            "quarterly",
            "annually",
            "2027-01-01 Mon",
            "today",
            "+5m",
            "*-*-* 00:00; hourly",
        ] {
            assert!(Schedule::parse(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn a_schedule_that_never_fires_says_max_quickly() {
        let utc = TimeZone::UTC;
        for s in ["2020-01-01 00:00", "2025-02-29", "Mon 2026-12-01", "Mon 2028-02-29 00:00 ", "2027-02-29"] {
            let s = sched(s);
            assert_eq!(s.next_after(at("2026-12-05T00:00:00Z"), &utc), Timestamp::MAX, "{s}");
            assert_eq!(s.slots(at("2026-12-05T00:00:00Z"), Timestamp::MAX, &utc).count(), 0);
        }
        // Far, but within the horizon: Monday 29 February.
        let s = sched("Mon *-02-29 00:00");
        assert_eq!(s.next_after(at("2026-12-05T00:00:00Z"), &utc), at("2044-02-29T00:00:00Z"));
        // Near the end of the civil range there is simply nothing left.
        assert_eq!(sched("daily").next_after(at("9999-12-30T12:00:00Z"), &utc), Timestamp::MAX);
        assert_eq!(sched("every 1s").next_after(Timestamp::MAX, &utc), Timestamp::MAX);
    }

    #[test]
    fn next_after_over_many_instants() {
        let tz = zone("Europe/Berlin");
        let exprs: Vec<Schedule> =
            ["daily 02:00", "*-*-* *:*:00/10", "Mon..Fri 02:00", "*-*-01 00:00", "Fri *-*-13 00:00"]
                .into_iter()
                .map(sched)
                .collect();
        let mut t = at("2026-12-05T00:00:00Z");
        for i in 0..10_000 {
            assert!(exprs[i % exprs.len()].next_after(t, &tz) > t);
            t += 1.hour();
        }
        // (No time bound here: speed is the benchmark's business. A search that stepped
        // second by second would still show, as this test running for minutes.)
    }

    #[test]
    fn spring_forward_gap_runs_once_at_the_jump() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let tz = zone("Europe/Berlin");
        assert_eq!(
            next_n("daily 02:30", "2026-03-27T12:00:00Z", &tz, 3),
            ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
        );
        // Several slots in the missing hour collapse into one run at the jump.
        assert_eq!(
            next_n("*-*-* 02,03:00,30", "2026-03-29T00:00:00Z", &tz, 3),
            ["2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:00:00Z"]
        );
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        let ny = zone("America/New_York");
        assert_eq!(
            next_n("daily 02:30", "2026-03-07T12:00:00Z", &ny, 3),
            ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"]
        );
        // Hourly across the gap: no 02:00, one run at 03:00.
        assert_eq!(next_n("hourly", "2026-03-08T06:00:00Z", &ny, 2), ["2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"]);
    }

    #[test]
    fn fall_back_fold_runs_once_at_the_first_occurrence() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice,
        // first at 00:30 UTC.
        let tz = zone("Europe/Berlin");
        assert_eq!(
            next_n("daily 02:30", "2026-10-24T12:00:00Z", &tz, 3),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z"]
        );
        // Asked from inside the repeated hour (02:10 CET, second pass): the slot already ran.
        assert_eq!(sched("daily 02:30").next_after(at("2026-10-25T01:10:00Z"), &tz), at("2026-10-26T01:30:00Z"));
        // ... but a slot after the fold on the same day still runs.
        assert_eq!(sched("*-*-* 02,03:30").next_after(at("2026-10-25T01:10:00Z"), &tz), at("2026-10-25T02:30:00Z"));
        // Asked from the first pass (02:10 CEST): the first occurrence is still ahead.
        assert_eq!(sched("daily 02:30").next_after(at("2026-10-25T00:10:00Z"), &tz), at("2026-10-25T00:30:00Z"));
        // New York, 2026-11-01: 01:30 happens at 05:30 and 06:30 UTC; runs at 05:30 only.
        let ny = zone("America/New_York");
        assert_eq!(
            next_n("daily 01:30", "2026-10-31T12:00:00Z", &ny, 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        // Hourly: the repeated hour runs once.
        assert_eq!(
            next_n("hourly", "2026-11-01T04:30:00Z", &ny, 3),
            ["2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"]
        );
    }

    #[test]
    fn every_is_aligned_to_the_epoch() {
        let s = sched("every 6h");
        let tz = zone("America/New_York");
        assert_eq!(s.next_after(at("2026-12-05T10:20:30Z"), &tz), at("2026-12-05T12:00:00Z"));
        assert_eq!(s.interval(), Duration::from_secs(6 * 3600));
        assert!(Schedule::parse("every").is_err());
        assert!(Schedule::parse("every 0s").is_err());
        assert!(Schedule::parse("every 1500ms").is_err());
        assert!(Schedule::parse("every 1h 2h").is_err());
    }

    #[test]
    fn intervals() {
        let i = |s: &str| sched(s).interval().as_secs();
        assert_eq!(i("minutely"), 60);
        assert_eq!(i("hourly"), 3600);
        assert_eq!(i("daily 02:00"), 86_400);
        assert_eq!(i("weekly Sun 03:00"), 7 * 86_400);
        assert_eq!(i("*-*-* 00/4:00"), 4 * 3600);
        assert_eq!(i("*-*-* *:*:00/10"), 10);
        assert_eq!(i("Mon..Fri 02:00"), 3 * 86_400);
        assert_eq!(i("*-*-01,15 03:00"), 17 * 86_400);
        assert_eq!(i("monthly"), 31 * 86_400);
        assert_eq!(i("yearly"), 366 * 86_400);
        assert_eq!(i("2020-01-01 00:00"), NO_INTERVAL.as_secs());
    }

    #[test]
    fn slots_in_a_window() {
        let tz = zone("Europe/Berlin");
        let s = sched("*-*-* 00/4:00");
        let got: Vec<String> =
            s.slots(at("2026-12-05T00:00:00Z"), at("2026-12-05T11:00:00Z"), &tz).map(|t| t.to_string()).collect();
        // Berlin is UTC+1 in December: 04:00, 08:00, 12:00 local.
        assert_eq!(got, ["2026-12-05T03:00:00Z", "2026-12-05T07:00:00Z", "2026-12-05T11:00:00Z"]);
        assert_eq!(s.slots(at("2026-12-05T11:00:00Z"), at("2026-12-05T11:00:00Z"), &tz).count(), 0);
        assert_eq!(s.slots(at("2026-12-05T11:00:00Z"), at("2026-12-05T10:00:00Z"), &tz).count(), 0);
    }

    #[test]
    fn display_and_serde_keep_the_text() {
        let s = sched("  Mon..Fri   02:00 ");
        assert_eq!(s.to_string(), "Mon..Fri   02:00");
        assert_eq!("daily 02:00".parse::<Schedule>().unwrap(), sched("daily 02:00"));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"Mon..Fri   02:00\"");
        let back: Schedule = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let e = serde_json::from_str::<Schedule>("\"daily 25:00\"").unwrap_err().to_string();
        assert!(e.contains("hour 25 is out of range 0..23"), "{e}");
    }

    #[test]
    fn random_delay_is_within_bounds_and_spread() {
        assert_eq!(random_delay(Duration::ZERO), Duration::ZERO);
        let max = Duration::from_secs(60);
        let draws: Vec<Duration> = (0..200).map(|_| random_delay(max)).collect();
        assert!(draws.iter().all(|d| *d <= max));
        // 200 uniform draws over a minute all landing in one half has odds 2^-199.
        assert!(draws.iter().any(|d| *d < max / 2) && draws.iter().any(|d| *d > max / 2));
        assert!(random_delay(Duration::from_secs(u64::MAX)) <= Duration::from_secs(u64::MAX));
    }

    #[test]
    fn errors_say_what_is_wrong_and_what_is_allowed() {
        let cases = [
            ("", "it is empty"),
            ("sometimes", "unknown word `sometimes`"),
            ("daily 25:00", "hour 25 is out of range 0..23"),
            ("daily 02:60", "minute 60 is out of range 0..59"),
            ("daily 2:00:61", "second 61 is out of range 0..59"),
            ("daily 02", "`daily` takes at most a time of day"),
            ("daily 02:00 03:00", "`daily` takes at most a time of day"),
            ("hourly 15", "`hourly` takes at most `:MM`"),
            ("minutely 5", "unexpected `5`"),
            ("weekly Sun Mon", "`weekly` takes an optional weekday and time"),
            ("Mon..Fry 02:00", "unknown weekday `Fry`"),
            ("Fri..Mon 02:00", "goes backwards"),
            ("*-13-01", "month 13 is out of range 1..12"),
            ("*-00-01", "month 0 is out of range 1..12"),
            ("*-*-32", "day 32 is out of range 1..31"),
            ("*-02-30", "never occurs"),
            ("*-04,06-31", "never occurs"),
            ("1969-01-01", "year 1969 is out of range 1970..9999"),
            ("*-*-* 5..3:00", "hour range 5..3 goes backwards"),
            ("*-*-* 0/0:00", "needs a positive step"),
            ("*-*-* x:00", "hour `x` is not a number"),
            ("*-*-* 00:00 extra", "unexpected `extra`"),
            ("*-*-*-* 00:00", "is not a date"),
            ("1:2:3:4", "is not a time of day"),
            ("02:00 Mon", "unexpected `Mon`"),
            ("every soon", "invalid duration"),
        ];
        for (text, want) in cases {
            let e = Schedule::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("expected e.g."), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: {e}");
        }
    }

    // ---- properties ----

    /// Does the civil date-time match the calendar? (The reference the search must agree
    /// with; written independently of the search.)
    fn matches(cal: &Calendar, dt: DateTime) -> bool {
        let b = |m: u64, v: i8| m & (1 << v) != 0;
        cal.years.iter().any(|i| {
            let y = i32::from(dt.year());
            y >= i.start && y <= i.end && (y - i.start) % i.step == 0
        }) && b(cal.months, dt.month())
            && b(cal.days, dt.day())
            && cal.weekdays & (1 << dt.weekday().to_monday_zero_offset()) != 0
            && b(cal.hours, dt.hour())
            && b(cal.minutes, dt.minute())
            && b(cal.seconds, dt.second())
    }

    fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            (lo..=hi).prop_map(|v| format!("{v:02}")),
            prop::collection::vec(lo..=hi, 1..4).prop_map(|v| v
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")),
            (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}..{}", a.min(b), a.max(b))),
            (lo..=hi, 1..=hi.max(2)).prop_map(|(a, s)| format!("{a}/{s}")),
            (1..=hi.max(2)).prop_map(|s| format!("*/{s}")),
        ]
    }

    fn expression() -> impl Strategy<Value = String> {
        let weekdays = prop_oneof![
            3 => Just(String::new()),
            1 => Just("Mon..Fri ".to_owned()),
            1 => Just("Sat,Sun ".to_owned()),
            1 => Just("Wed ".to_owned()),
        ];
        let date = prop_oneof![
            Just("*-*-*".to_owned()),
            (field(1, 12), field(1, 28)).prop_map(|(m, d)| format!("*-{m}-{d}")),
            field(1, 31).prop_map(|d| format!("*-*-{d}")),
        ];
        let seconds = prop_oneof![3 => Just("00".to_owned()), 1 => field(0, 59)];
        (weekdays, date, field(0, 23), field(0, 59), seconds).prop_map(|(w, d, h, m, s)| format!("{w}{d} {h}:{m}:{s}"))
    }

    fn zones() -> impl Strategy<Value = TimeZone> {
        prop_oneof![
            Just(TimeZone::UTC),
            Just(zone("Europe/Berlin")),
            Just(zone("America/New_York")),
            Just(zone("Australia/Lord_Howe")), // 30-minute DST shift
            Just(zone("Asia/Kolkata")),
        ]
    }

    /// A zone and an instant from 1990 to 2060; three times in four within two hours of one
    /// of the zone's DST transitions, where the interesting cases are.
    fn zone_and_instant() -> impl Strategy<Value = (TimeZone, Timestamp)> {
        (zones(), 631_152_000i64..2_840_140_800, prop::bool::weighted(0.75), -7_200i64..7_200).prop_map(
            |(tz, s, near, off)| {
                let t = Timestamp::from_second(s).unwrap();
                let t = match tz.following(t).next() {
                    Some(tr) if near => tr.timestamp() + off.seconds(),
                    _ => t,
                };
                (tz, t)
            },
        )
    }

    /// Is `t` the instant a gap starts, with a matching civil time inside the gap?
    fn is_gap_slot(cal: &Calendar, t: Timestamp, tz: &TimeZone) -> bool {
        let before = tz.to_offset(t - 1.second());
        let after = tz.to_offset(t);
        if after <= before {
            return false;
        }
        let gap_start = before.to_datetime(t);
        let gap_end = after.to_datetime(t);
        let mut dt = gap_start;
        while dt < gap_end {
            if matches(cal, dt) {
                return true;
            }
            dt = dt.checked_add(1.second()).unwrap();
        }
        false
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn every_slot_matches_and_is_strictly_increasing(expr in expression(), (tz, start) in zone_and_instant()) {
            let s = Schedule::parse(&expr);
            prop_assume!(s.is_ok()); // e.g. `*-02-31` is rejected: never occurs
            let s = s.unwrap();
            let Rule::Calendar(cal) = &s.rule else { unreachable!() };
            let mut t = start;
            for _ in 0..20 {
                let next = s.next_after(t, &tz);
                if next == Timestamp::MAX { break; }
                prop_assert!(next > t, "{expr}: {next} not after {t}");
                let civil = tz.to_datetime(next);
                prop_assert!(matches(cal, civil) || is_gap_slot(cal, next, &tz), "{expr} in {tz:?}: {next} ({civil}) does not match");
                t = next;
            }
        }

        #[test]
        fn no_slot_is_skipped(expr in expression(), (tz, start) in zone_and_instant()) {
            let s = Schedule::parse(&expr);
            prop_assume!(s.is_ok());
            let s = s.unwrap();
            let Rule::Calendar(cal) = &s.rule else { unreachable!() };
            let next = s.next_after(start, &tz);
            // Walk every second in (start, next) within a bounded window: none may match
            // (except a repeated civil time in a fold, which has run already).
            let end = next.min(start + 3.hours());
            let mut t = start.checked_add(1.second()).unwrap();
            // Slots are whole seconds.
            t = Timestamp::from_second(t.as_second()).unwrap();
            while t < end {
                let civil = tz.to_datetime(t);
                if matches(cal, civil) {
                    let first = tz.to_ambiguous_timestamp(civil).earlier().unwrap();
                    prop_assert!(first < t && first <= start, "{expr} in {tz:?}: {t} ({civil}) matches but next_after({start}) = {next}");
                }
                t = t.checked_add(1.second()).unwrap();
            }
        }

        #[test]
        fn slots_agree_with_next_after(expr in expression(), (tz, start) in zone_and_instant(), hours in 1i64..72) {
            let s = Schedule::parse(&expr);
            prop_assume!(s.is_ok());
            let s = s.unwrap();
            let until = start + hours.hours();
            let got: Vec<Timestamp> = s.slots(start, until, &tz).take(500).collect();
            let mut want = Vec::new();
            let mut t = start;
            while want.len() < 500 {
                t = s.next_after(t, &tz);
                if t > until { break; }
                want.push(t);
            }
            prop_assert_eq!(got, want);
        }
    }
}
