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
use std::time::Duration;

/// Rules from the command line or policy file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepRules {
    /// `--retain`.
    pub retain: Option<Duration>,
    /// `--keep-within`.
    pub within: Option<Duration>,
    /// `--keep-daily`.
    pub daily: u32,
    /// `--keep-weekly`.
    pub weekly: u32,
    /// `--keep-monthly`.
    pub monthly: u32,
}

const DAY: u64 = 86_400;

impl KeepRules {
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
}
