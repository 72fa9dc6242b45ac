//! Retention rules: how long a new snapshot is kept, decided when it is written.
//!
//! Invariant guarded: retention has a floor and a ceiling. The lock must be known when
//! the snapshot is written (objects are locked at once), so rules are evaluated at backup
//! time against the snapshots already there; the result must not exceed the repository's
//! maximum retention (the policy's "gone within 90 days of deletion"), or the backup is
//! refused before anything is written.
//!
//! Rules (calendar units in UTC):
//! - `retain D`: kept at least `D` (the repository's default when no rule is given);
//! - `keep-within D`: kept at least `D`;
//! - `keep-daily N`: the first snapshot of a day is kept `N` days;
//! - `keep-weekly N`: the first of an ISO week is kept `N` weeks;
//! - `keep-monthly N`: the first of a month is kept `N` × 31 days.
//!
//! A snapshot's expiry is the latest any applicable rule gives. When rules are given but
//! none applies and no `retain` is given, the snapshot is kept one day.

use crate::error::{RepoError, Result};
use crate::repo::{RetentionPolicy, humanize};
use crate::snapshot::Snapshot;
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Rules from the command line or policy file: the same struct for both (clap behind the
/// `clap` feature; serde with kebab-case keys, unknown keys refused, durations as `30d`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct KeepRules {
    /// Keep the snapshot at least this long [default: the repository's default]
    #[serde(default, with = "crate::options::opt_duration", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "clap", arg(long, value_parser = crate::options::parse_duration, value_name = "DURATION"))]
    pub retain: Option<Duration>,
    /// Keep every snapshot at least this long
    #[serde(
        rename = "keep-within",
        default,
        with = "crate::options::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "clap", arg(long = "keep-within", value_parser = crate::options::parse_duration, value_name = "DURATION"))]
    pub within: Option<Duration>,
    /// Keep the first snapshot of each day for N days
    #[serde(rename = "keep-daily", default)]
    #[cfg_attr(feature = "clap", arg(long = "keep-daily", value_name = "N", default_value_t = 0))]
    pub daily: u32,
    /// Keep the first snapshot of each week for N weeks
    #[serde(rename = "keep-weekly", default)]
    #[cfg_attr(feature = "clap", arg(long = "keep-weekly", value_name = "N", default_value_t = 0))]
    pub weekly: u32,
    /// Keep the first snapshot of each month for N months
    #[serde(rename = "keep-monthly", default)]
    #[cfg_attr(feature = "clap", arg(long = "keep-monthly", value_name = "N", default_value_t = 0))]
    pub monthly: u32,
}

/// The snapshots a new one continues, for the calendar rules (and the parent of a files
/// backup): the live snapshots of the same kind, host and paths (absolute, normalised and
/// sorted, as the snapshot records them).
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// Snapshot kind (`files`, `pg-base`).
    pub kind: &'a str,
    /// Host.
    pub host: &'a str,
    /// Paths, as recorded.
    pub paths: &'a [String],
}

impl Series<'_> {
    /// Whether `s` belongs to the series and is still live at `now`.
    #[must_use]
    pub fn contains(&self, s: &Snapshot, now: Timestamp) -> bool {
        s.expires > now && s.kind == self.kind && s.host == self.host && s.paths == self.paths
    }
}

const DAY: u64 = 86_400;

impl KeepRules {
    /// Whether a rule depends on the snapshots already there (the calendar rules): only
    /// then does the expiry need the series' history ([`KeepRules::expiry_in_series`]).
    #[must_use]
    pub fn needs_history(&self) -> bool {
        self.daily + self.weekly + self.monthly > 0
    }

    fn any_calendar(&self) -> bool {
        self.daily + self.weekly + self.monthly > 0 || self.within.is_some()
    }

    /// The expiry of a snapshot taken at `now`, given `earlier` snapshots of the same
    /// series (same host and paths).
    ///
    /// # Errors
    /// `Invalid` when the result would exceed the policy's maximum retention.
    pub fn expiry(&self, now: Timestamp, earlier: &[&Snapshot], policy: &RetentionPolicy) -> Result<Timestamp> {
        let utc = |t: Timestamp| t.to_zoned(TimeZone::UTC);
        let day = |t: Timestamp| utc(t).date();
        let week = |t: Timestamp| {
            let w = utc(t).date().iso_week_date();
            (w.year(), w.week())
        };
        let month = |t: Timestamp| {
            let d = utc(t).date();
            (d.year(), d.month())
        };
        let mut keep = match self.retain {
            Some(d) => d,
            None if self.any_calendar() => Duration::from_secs(DAY),
            None => policy.default_retain,
        };
        if let Some(w) = self.within {
            keep = keep.max(w);
        }
        if self.daily > 0 && !earlier.iter().any(|s| day(s.time) == day(now)) {
            keep = keep.max(Duration::from_secs(u64::from(self.daily) * DAY));
        }
        if self.weekly > 0 && !earlier.iter().any(|s| week(s.time) == week(now)) {
            keep = keep.max(Duration::from_secs(u64::from(self.weekly) * 7 * DAY));
        }
        if self.monthly > 0 && !earlier.iter().any(|s| month(s.time) == month(now)) {
            keep = keep.max(Duration::from_secs(u64::from(self.monthly) * 31 * DAY));
        }
        if keep > policy.max_retain {
            return Err(RepoError::Invalid(format!(
                "retention rules keep this snapshot {}, longer than the repository's maximum retention of {}",
                humanize(keep),
                humanize(policy.max_retain)
            )));
        }
        if keep.is_zero() {
            return Err(RepoError::Invalid("retention must be longer than zero".into()));
        }
        Ok(now + SignedDuration::try_from(keep).unwrap_or(SignedDuration::MAX))
    }

    /// The expiry of a new snapshot of `series` taken at `now`: the rules applied to the
    /// series' live snapshots among `snapshots` (all of the repository's, any order). The
    /// one computation of a snapshot's expiry, with its fallbacks ([`KeepRules::expiry`]):
    /// no rule keeps the repository's default; rules of which none applies keep one day;
    /// a result past the maximum retention is refused.
    ///
    /// # Errors
    /// `Invalid` when the result would exceed the policy's maximum retention or is zero.
    pub fn expiry_in_series<'a>(
        &self,
        now: Timestamp,
        snapshots: impl IntoIterator<Item = &'a Snapshot>,
        series: &Series<'_>,
        policy: &RetentionPolicy,
    ) -> Result<Timestamp> {
        let earlier: Vec<&Snapshot> = snapshots.into_iter().filter(|s| series.contains(s, now)).collect();
        self.expiry(now, &earlier, policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;

    fn snap(t: &str) -> Snapshot {
        Snapshot {
            kind: "files".into(),
            time: t.parse().unwrap(),
            expires: t.parse().unwrap(),
            retain_until: t.parse().unwrap(),
            host: String::new(),
            paths: vec![],
            tags: vec![],
            tree: Id([0; 32]),
            parent: None,
            previous: None,
            summary: crate::Summary::default(),
            program: String::new(),
            pg: None,
        }
    }

    #[test]
    fn calendar_rules_apply_to_the_first_of_each_period() {
        let p = RetentionPolicy::default();
        let rules = KeepRules { daily: 7, weekly: 4, ..Default::default() };
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let days = |t: Timestamp| t.duration_since(now).as_secs() / 86_400;
        // First ever: the weekly rule (28 days) wins.
        assert_eq!(days(rules.expiry(now, &[], &p).unwrap()), 28);
        // Same week, new day: daily.
        let monday = snap("2026-11-23T09:00:00Z");
        assert_eq!(days(rules.expiry(now, &[&monday], &p).unwrap()), 7);
        // Same day: neither; one day.
        let earlier = snap("2026-11-27T01:00:00Z");
        assert_eq!(days(rules.expiry(now, &[&earlier], &p).unwrap()), 1);
    }

    #[test]
    fn ceiling_is_enforced() {
        let p = RetentionPolicy::default();
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let err = KeepRules { monthly: 12, ..Default::default() }.expiry(now, &[], &p).unwrap_err();
        assert!(err.to_string().contains("maximum retention of 88d"), "{err}");
        let ok = KeepRules { retain: Some(Duration::from_secs(88 * DAY)), ..Default::default() };
        assert!(ok.expiry(now, &[], &p).is_ok());
    }
    fn in_series(t: &str, expires: &str, host: &str, paths: &[&str]) -> Snapshot {
        Snapshot {
            expires: expires.parse().unwrap(),
            host: host.into(),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            ..snap(t)
        }
    }

    const NOW: &str = "2026-11-27T10:00:00Z";
    const LATER: &str = "2026-12-30T00:00:00Z";

    fn days_from_now(t: Timestamp) -> i64 {
        t.duration_since(NOW.parse().unwrap()).as_secs() / 86_400
    }

    /// Fallback 1: no rule at all keeps the repository's default retention.
    #[test]
    fn without_rules_the_repository_default_applies() {
        let p = RetentionPolicy { default_retain: Duration::from_secs(30 * DAY), ..RetentionPolicy::default() };
        let paths = ["/srv".to_owned()];
        let series = Series { kind: "files", host: "h", paths: &paths };
        let today = in_series("2026-11-27T01:00:00Z", LATER, "h", &["/srv"]);
        let t = KeepRules::default().expiry_in_series(NOW.parse().unwrap(), [&today], &series, &p).unwrap();
        assert_eq!(days_from_now(t), 30);
    }

    /// Fallback 2: calendar rules of which none applies (and no `retain`) keep one day.
    #[test]
    fn rules_of_which_none_applies_keep_one_day() {
        let p = RetentionPolicy::default();
        let paths = ["/srv".to_owned()];
        let series = Series { kind: "files", host: "h", paths: &paths };
        let today = in_series("2026-11-27T01:00:00Z", LATER, "h", &["/srv"]);
        let rules = KeepRules { daily: 7, ..KeepRules::default() };
        let t = rules.expiry_in_series(NOW.parse().unwrap(), [&today], &series, &p).unwrap();
        assert_eq!(days_from_now(t), 1);
        // With `retain`, that instead.
        let rules = KeepRules { retain: Some(Duration::from_secs(3 * DAY)), ..rules };
        assert_eq!(days_from_now(rules.expiry_in_series(NOW.parse().unwrap(), [&today], &series, &p).unwrap()), 3);
    }

    /// Fallback 3: only live snapshots of the same kind, host and paths count as earlier
    /// ones; anything else leaves the calendar rule applying.
    #[test]
    fn only_the_live_snapshots_of_the_series_count() {
        let p = RetentionPolicy::default();
        let paths = ["/srv".to_owned()];
        let series = Series { kind: "files", host: "h", paths: &paths };
        let rules = KeepRules { daily: 7, ..KeepRules::default() };
        let others = [
            in_series("2026-11-27T01:00:00Z", LATER, "other-host", &["/srv"]),
            in_series("2026-11-27T01:00:00Z", LATER, "h", &["/srv", "/etc"]),
            in_series("2026-11-27T01:00:00Z", "2026-11-27T09:00:00Z", "h", &["/srv"]),
            Snapshot { kind: "pg-base".into(), ..in_series("2026-11-27T01:00:00Z", LATER, "h", &["/srv"]) },
        ];
        let t = rules.expiry_in_series(NOW.parse().unwrap(), &others, &series, &p).unwrap();
        assert_eq!(days_from_now(t), 7, "none of these is today's first of the series");
    }

    /// Fallback 4: a default retention past the ceiling (a hostile or broken config) is
    /// refused, never cut to zero or stretched to forever.
    #[test]
    fn a_default_past_the_ceiling_is_refused() {
        let p = RetentionPolicy { default_retain: Duration::from_secs(400 * DAY), ..RetentionPolicy::default() };
        let err = KeepRules::default().expiry(NOW.parse().unwrap(), &[], &p).unwrap_err();
        assert!(err.to_string().contains("maximum retention"), "{err}");
        let zero = RetentionPolicy { default_retain: Duration::ZERO, ..RetentionPolicy::default() };
        assert!(KeepRules::default().expiry(NOW.parse().unwrap(), &[], &zero).is_err());
    }

    #[test]
    fn keep_rules_read_from_toml_and_refuse_unknown_keys() {
        let doc = "retain = \"14d\"\nkeep-within = \"2d\"\nkeep-daily = 7\nkeep-weekly = 4\nkeep-monthly = 6\n";
        let r: KeepRules = toml::from_str(doc).unwrap();
        assert_eq!(
            r,
            KeepRules {
                retain: Some(Duration::from_secs(14 * DAY)),
                within: Some(Duration::from_secs(2 * DAY)),
                daily: 7,
                weekly: 4,
                monthly: 6
            }
        );
        assert_eq!(toml::from_str::<KeepRules>(&toml::to_string(&r).unwrap()).unwrap(), r);
        assert_eq!(toml::from_str::<KeepRules>("").unwrap(), KeepRules::default());
        let err = toml::from_str::<KeepRules>("keep-yearly = 2\n").unwrap_err().to_string();
        assert!(err.contains("keep-yearly"), "{err}");
        let err = toml::from_str::<KeepRules>("retain = 86400\n").unwrap_err().to_string();
        assert!(err.contains("string"), "durations are written as people write them: {err}");
    }
}
