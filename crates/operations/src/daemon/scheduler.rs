//! The scheduler's decisions, pure: given a job's schedule, the last slot handled and the
//! time now, which slot runs (on time or late) and which are recorded as missed.
//!
//! Invariants guarded here: every slot after the last one handled is either run or reported
//! missed, exactly once; of the slots missed while the daemon was down only the latest runs
//! (late, with `daemon.catch-up`, systemd's `Persistent=true`); a job never runs twice at
//! once (a slot due while it is still running or waiting is missed). Nothing here reads a
//! clock or sleeps: the daemon loop passes `now`, so the rules are tested against any time.

use crate::schedule::Schedule;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::collections::VecDeque;

/// Missed slots recorded one by one per job and pass; the rest are only counted (in the
/// last record's `missed_total` detail), so a daemon down for a year with a per-second
/// schedule does not write millions of records.
pub const MISSED_RECORD_CAP: usize = 100;

/// Slots walked one by one before the rest of a long gap is skipped (and estimated).
const WALK_LIMIT: u64 = 100_000;

/// In what situation the slots are looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The daemon just started: due slots were missed while it was down.
    Startup {
        /// `daemon.catch-up`: run the latest of them once, late.
        catch_up: bool,
    },
    /// The daemon is running and the job is idle.
    Running,
    /// The job is still running (or waiting to start): every due slot is missed.
    Busy,
}

/// Why a slot did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissedWhy {
    /// The daemon was not running.
    DaemonDown,
    /// The previous run of the job was still running or waiting.
    StillRunning,
    /// The daemon ran but could not look in time (a suspended host, a clock step).
    HeldUp,
}

impl MissedWhy {
    /// The record's error text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DaemonDown => "the daemon was not running at the scheduled time",
            Self::StillRunning => "the previous run was still running",
            Self::HeldUp => "the daemon was held up (a suspended host or a clock step)",
        }
    }
}

/// What to do about one job now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// The slot to run now, if any.
    pub run: Option<Timestamp>,
    /// Whether that run is late (catching up a slot missed while the daemon was down).
    pub late: bool,
    /// The missed slots to record, oldest first (at most [`MISSED_RECORD_CAP`], the newest).
    pub missed: Vec<Timestamp>,
    /// How many slots were missed in all (at least `missed.len()`).
    pub missed_total: u64,
    /// Why they were missed.
    pub why: Option<MissedWhy>,
    /// The newest slot covered: the job's new "last slot handled" (`None`: nothing due).
    pub newest: Option<Timestamp>,
}

/// The slots of `schedule` in `(after, now]` and what to do about them in `pass`.
#[must_use]
pub fn due(schedule: &Schedule, tz: &TimeZone, after: Timestamp, now: Timestamp, pass: Pass) -> Due {
    let (mut slots, total) = slots_between(schedule, tz, after, now);
    let Some(&newest) = slots.back() else { return Due::default() };
    let mut d = Due { newest: Some(newest), ..Due::default() };
    let run = match pass {
        Pass::Startup { catch_up: true } => {
            d.late = true;
            slots.pop_back()
        }
        Pass::Running => {
            // More than one slot while running means the loop was held up (a suspended
            // host, a clock step): the latest runs, late, the others are missed.
            d.late = total > 1;
            slots.pop_back()
        }
        Pass::Startup { catch_up: false } | Pass::Busy => None,
    };
    d.run = run;
    d.missed_total = total - u64::from(run.is_some());
    if d.missed_total > 0 {
        d.why = Some(match pass {
            Pass::Busy => MissedWhy::StillRunning,
            Pass::Running => MissedWhy::HeldUp,
            Pass::Startup { .. } => MissedWhy::DaemonDown,
        });
    }
    while slots.len() > MISSED_RECORD_CAP {
        slots.pop_front();
    }
    d.missed = slots.into();
    d
}

/// The newest slots in `(after, now]` (up to [`MISSED_RECORD_CAP`] + 1, oldest first) and
/// how many there are in all.
fn slots_between(schedule: &Schedule, tz: &TimeZone, after: Timestamp, now: Timestamp) -> (VecDeque<Timestamp>, u64) {
    let mut w = Walk { kept: VecDeque::new(), total: 0, t: after };
    if !w.walk(schedule, tz, now, WALK_LIMIT) {
        // A very long gap: skip to shortly before now and estimate what was skipped from the
        // schedule's interval (the count is in a detail, not a decision).
        let interval = schedule.interval().max(std::time::Duration::from_secs(1));
        let back = jiff::SignedDuration::try_from(interval * 2).unwrap_or(jiff::SignedDuration::MAX);
        let resume = now.checked_sub(back).unwrap_or(now);
        if resume > w.t {
            let gap = u64::try_from(resume.duration_since(w.t).as_secs()).unwrap_or(0);
            w.total += gap / interval.as_secs().max(1);
            w.kept.clear();
            w.t = resume;
        }
        // The rest without the limit (at most a few slots).
        w.walk(schedule, tz, now, u64::MAX);
    }
    (w.kept, w.total)
}

/// A walk over slots: the newest kept, all counted.
struct Walk {
    kept: VecDeque<Timestamp>,
    total: u64,
    t: Timestamp,
}

impl Walk {
    /// Walks the slots in (t, now]; `false` when it stopped after `limit` of them.
    fn walk(&mut self, schedule: &Schedule, tz: &TimeZone, now: Timestamp, limit: u64) -> bool {
        for _ in 0..limit {
            let next = schedule.next_after(self.t, tz);
            if next > now || next <= self.t {
                return true;
            }
            self.total += 1;
            self.kept.push_back(next);
            if self.kept.len() > MISSED_RECORD_CAP + 1 {
                self.kept.pop_front();
            }
            self.t = next;
        }
        false
    }
}

/// The next slot after `after` (when the loop must wake for this job).
#[must_use]
pub fn next_slot(schedule: &Schedule, tz: &TimeZone, after: Timestamp) -> Timestamp {
    schedule.next_after(after, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::Clock;
    use std::time::Duration;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn every(s: &str) -> Schedule {
        Schedule::parse(s).unwrap()
    }

    #[test]
    fn nothing_is_due_before_the_next_slot_and_one_slot_runs_on_time() {
        let clock = Clock::manual(at("2026-12-05T10:00:00Z"));
        let s = every("every 10s");
        let last = clock.now();
        clock.advance(Duration::from_secs(9));
        assert_eq!(due(&s, &TimeZone::UTC, last, clock.now(), Pass::Running), Due::default());
        clock.advance(Duration::from_secs(1));
        let d = due(&s, &TimeZone::UTC, last, clock.now(), Pass::Running);
        assert_eq!(d.run, Some(at("2026-12-05T10:00:10Z")));
        assert!(!d.late && d.missed.is_empty() && d.missed_total == 0 && d.why.is_none());
        assert_eq!(d.newest, d.run);
        // Asked again from the slot just handled, the same instant has nothing due: the
        // schedule's "strictly after" keeps a slot from running twice.
        assert_eq!(due(&s, &TimeZone::UTC, d.newest.unwrap(), clock.now(), Pass::Running), Due::default());
    }

    #[test]
    fn after_downtime_the_latest_slot_runs_late_once_and_the_others_are_missed() {
        let clock = Clock::manual(at("2026-12-05T02:00:00Z"));
        let daily = every("daily 02:00");
        let last = clock.now();
        // Down for three days and a bit.
        clock.advance(Duration::from_secs(3 * 86_400 + 3600));
        let d = due(&daily, &TimeZone::UTC, last, clock.now(), Pass::Startup { catch_up: true });
        assert_eq!(d.run, Some(at("2026-12-08T02:00:00Z")));
        assert!(d.late);
        assert_eq!(d.missed, vec![at("2026-12-06T02:00:00Z"), at("2026-12-07T02:00:00Z")]);
        assert_eq!(d.missed_total, 2);
        assert_eq!(d.why, Some(MissedWhy::DaemonDown));
        assert_eq!(d.newest, d.run);
    }

    #[test]
    fn without_catch_up_every_slot_missed_while_down_is_reported_and_none_runs() {
        let clock = Clock::manual(at("2026-12-05T00:00:00Z"));
        let s = every("hourly");
        let last = clock.now();
        clock.advance(Duration::from_secs(2 * 3600 + 5));
        let d = due(&s, &TimeZone::UTC, last, clock.now(), Pass::Startup { catch_up: false });
        assert_eq!(d.run, None);
        assert_eq!(d.missed_total, 2);
        assert_eq!(d.missed.len(), 2);
        assert_eq!(d.newest, Some(at("2026-12-05T02:00:00Z")));
    }

    #[test]
    fn a_slot_due_while_the_job_runs_is_missed() {
        let clock = Clock::manual(at("2026-12-05T00:00:00Z"));
        let s = every("every 2s");
        let last = clock.now();
        clock.advance(Duration::from_secs(5));
        let d = due(&s, &TimeZone::UTC, last, clock.now(), Pass::Busy);
        assert_eq!(d.run, None);
        assert_eq!(d.missed_total, 2);
        assert_eq!(d.why, Some(MissedWhy::StillRunning));
        assert_eq!(d.newest, Some(at("2026-12-05T00:00:04Z")));
    }

    #[test]
    fn a_held_up_loop_runs_the_latest_slot_late() {
        let clock = Clock::manual(at("2026-12-05T00:00:00Z"));
        let s = every("every 10s");
        let last = clock.now();
        clock.advance(Duration::from_secs(35));
        let d = due(&s, &TimeZone::UTC, last, clock.now(), Pass::Running);
        assert_eq!(d.run, Some(at("2026-12-05T00:00:30Z")));
        assert!(d.late);
        assert_eq!(d.missed_total, 2);
        assert_eq!(d.why, Some(MissedWhy::HeldUp));
    }

    #[test]
    fn missed_records_are_capped_but_counted() {
        let clock = Clock::manual(at("2026-12-05T00:00:00Z"));
        let s = every("every 1s");
        let last = clock.now();
        clock.advance(Duration::from_secs(1000));
        let d = due(&s, &TimeZone::UTC, last, clock.now(), Pass::Startup { catch_up: true });
        assert_eq!(d.missed.len(), MISSED_RECORD_CAP);
        assert_eq!(d.missed_total, 999);
        assert_eq!(d.run, Some(clock.now()));
        // The newest are kept, oldest first.
        assert_eq!(d.missed.last().copied(), Some(at("2026-12-05T00:16:39Z")));
        assert!(d.missed.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_very_long_gap_is_walked_in_bounded_time() {
        let clock = Clock::manual(at("2020-01-01T00:00:00Z"));
        let s = every("every 1s");
        let last = clock.now();
        clock.advance(Duration::from_secs(5 * 365 * 86_400));
        let started = std::time::Instant::now();
        let d = due(&s, &TimeZone::UTC, last, clock.now(), Pass::Startup { catch_up: true });
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(d.run, Some(clock.now()));
        let expect = 5 * 365 * 86_400 - 1;
        assert!(d.missed_total.abs_diff(expect) <= 3, "{} vs {expect}", d.missed_total);
        assert!(!d.missed.is_empty() && d.missed.len() <= 3, "{:?}", d.missed);
    }
}

#[cfg(test)]
mod long_gap {
    use super::*;

    #[test]
    fn a_gap_past_the_walk_limit_is_counted_and_keeps_the_newest_slot() {
        let every = Schedule::parse("every 1s").unwrap();
        let after: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let now = after + jiff::SignedDuration::from_secs(200_000);
        let (kept, total) = slots_between(&every, &TimeZone::UTC, after, now);
        // 100 000 walked, the rest estimated from the interval: every slot counted once.
        assert_eq!(total, 200_000);
        // Only the slots walked after the skip are kept (records of the newest few).
        assert!(!kept.is_empty() && kept.len() <= MISSED_RECORD_CAP + 1, "{kept:?}");
        assert_eq!(kept.back(), Some(&now), "the newest slot is kept");
        assert!(kept.iter().zip(kept.iter().skip(1)).all(|(a, b)| a < b), "oldest first");
    }
}
