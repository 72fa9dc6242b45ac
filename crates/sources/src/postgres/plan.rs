//! Restore planning, pure: which base backup a point-in-time recovery starts from, which
//! timelines it reads, and whether the archived WAL covers the way to the target.
//!
//! `restore` plans before it writes anything, and `info` reads the same [`ClusterWal`]
//! (segment size, gaps), so what `info` calls a gap is what stops a restore. The invariant
//! guarded: a restore is refused — naming the segment — when WAL it must replay is missing,
//! instead of promoting a server short of its target; a gap recovery never reads (another
//! timeline's, or past the target) does not stop it.

use super::{BaseBackup, Lsn, PgError, Result};
use coffer_repository::wal::{DEFAULT_SEGMENT_SIZE, Segment, is_segment_name, segment_gaps, segment_size_from_header};
use coffer_repository::{JobControl, Repository};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// A cluster's archived WAL as planning sees it: the file names and the segment size their
/// numbers are read with.
#[derive(Clone, Debug)]
pub struct ClusterWal {
    /// The archived file names, sorted.
    pub names: Vec<String>,
    /// The cluster's WAL segment size.
    pub seg_size: u64,
}

impl ClusterWal {
    /// Lists cluster `sysid`'s archive. The segment size is the base backups' (`bases`),
    /// else an archived segment's long page header, else PostgreSQL's default.
    ///
    /// # Errors
    /// Repository errors.
    pub fn load(repo: &Repository, sysid: u64, bases: &[&BaseBackup]) -> Result<Self> {
        let names = repo.list_wal(sysid)?;
        let seg_size = match bases.first() {
            Some(b) => b.seg_size,
            None => names
                .iter()
                .find(|n| is_segment_name(n) && !n.ends_with(".partial"))
                .and_then(|n| repo.get_wal(sysid, n).ok().flatten())
                .and_then(|d| segment_size_from_header(&d))
                .unwrap_or(DEFAULT_SEGMENT_SIZE),
        };
        Ok(Self { names, seg_size })
    }

    /// The archived segments (`.partial` ones too), in name order.
    pub fn segments(&self) -> impl Iterator<Item = &String> {
        self.names.iter().filter(|n| Segment::parse(n, self.seg_size).is_some())
    }

    /// The segments missing between the first and the last archived one of each timeline.
    #[must_use]
    pub fn gaps(&self) -> Vec<Segment> {
        segment_gaps(&self.names, self.seg_size)
    }

    /// The archived `.history` files.
    pub fn history_files(&self) -> impl Iterator<Item = &String> {
        self.names.iter().filter(|n| n.ends_with(".history"))
    }

    /// Whether segment `s` is archived, complete or as `.partial`.
    #[must_use]
    pub fn has_segment(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name || n.strip_suffix(".partial") == Some(name))
    }

    /// The `.history` files' contents by timeline.
    ///
    /// # Errors
    /// Repository errors; cancellation.
    pub fn load_history(&self, repo: &Repository, sysid: u64, ctl: &JobControl) -> Result<BTreeMap<u32, String>> {
        let mut history = BTreeMap::new();
        for n in self.history_files() {
            ctl.check()?;
            let Some(tli) = n.get(..8).and_then(|t| u32::from_str_radix(t, 16).ok()) else { continue };
            if let Some(d) = repo.get_wal(sysid, n)? {
                history.insert(tli, String::from_utf8_lossy(&d).into_owned());
            }
        }
        Ok(history)
    }
}

/// What a recovery stops at (a restore point is found as an LSN first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanTarget {
    /// The first commit after this time.
    Time(Timestamp),
    /// This WAL position.
    Lsn(Lsn),
    /// The end of the archived WAL.
    Latest,
}

/// The segments of one timeline that recovery reads: `first..=last` (`None`: to the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineSpan {
    /// The timeline.
    pub timeline: u32,
    /// Its first segment read.
    pub first: u64,
    /// Its last segment read; `None` on the target timeline (to the end).
    pub last: Option<u64>,
}

/// A point-in-time recovery: the base backup it starts from, the timelines it follows, and
/// how far the WAL must be complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePlan {
    /// The newest base backup before the target on the way to the target timeline.
    pub base: BaseBackup,
    /// The timelines read, from the base backup's to the target one.
    pub path: Vec<TimelineSpan>,
    /// The last segment the WAL must be complete to (`None`: to the end). For a time
    /// target the segment holding it is unknown: only the backup's own WAL is required,
    /// and recovery itself stops short of a later gap ("recovery ended before configured
    /// recovery target was reached"), never promoting early.
    pub upto: Option<u64>,
}

impl RestorePlan {
    /// Chooses the newest of `bases` (one cluster's, oldest first) that precedes `target`
    /// and lies on the way to `timeline` (default: the newest reachable through consecutive
    /// history files, as `recovery_target_timeline = 'latest'` probes them).
    ///
    /// # Errors
    /// `Invalid` when no base backup qualifies.
    pub fn choose(
        sysid: u64,
        bases: &[&BaseBackup],
        history: &BTreeMap<u32, String>,
        target: PlanTarget,
        timeline: Option<u32>,
    ) -> Result<Self> {
        let target_tli = |b: &BaseBackup| {
            timeline.unwrap_or_else(|| {
                let mut t = b.timeline;
                while history.contains_key(&(t + 1)) {
                    t += 1;
                }
                t
            })
        };
        let (base, path) = bases
            .iter()
            .rev()
            .filter(|b| match target {
                PlanTarget::Time(t) => b.stop_time <= t,
                PlanTarget::Lsn(l) => b.stop_lsn <= l,
                PlanTarget::Latest => true,
            })
            .find_map(|b| Some((*b, timeline_path(history, b, target_tli(b))?)))
            .ok_or_else(|| {
                PgError::Invalid(match timeline {
                    Some(t) => format!(
                        "no base backup of cluster {sysid} precedes the recovery target on the way to timeline {t}"
                    ),
                    None => format!("no base backup of cluster {sysid} precedes the recovery target"),
                })
            })?;
        let upto = match target {
            PlanTarget::Time(_) => Some(base.stop_lsn.0.saturating_sub(1) / base.seg_size),
            PlanTarget::Lsn(l) => Some(l.segment(base.seg_size)),
            PlanTarget::Latest => None,
        };
        Ok(Self { base: base.clone(), path, upto })
    }

    /// The first segment this recovery reads that the archive lacks: a gap on its
    /// timeline path up to [`Self::upto`] (`true`: the base backup's own WAL).
    #[must_use]
    pub fn first_missing(&self, wal: &ClusterWal) -> Option<(Segment, bool)> {
        let gap = segment_gaps(&wal.names, self.base.seg_size).into_iter().find(|missing| {
            let read = self.path.iter().any(|p| {
                p.timeline == missing.timeline
                    && missing.number >= p.first
                    && p.last.is_none_or(|e| missing.number <= e)
            });
            read && self.upto.is_none_or(|u| missing.number <= u)
        });
        if let Some(g) = gap {
            return Some((g, false));
        }
        self.base
            .needed_segments()
            .into_iter()
            .find(|s| !wal.has_segment(&s.name(self.base.seg_size)))
            .map(|s| (s, true))
    }

    /// Checks that the archive holds the WAL this recovery reads: the base backup's own,
    /// and every segment on its timeline path up to [`Self::upto`].
    ///
    /// # Errors
    /// `MissingWal` naming the first missing segment.
    pub fn check_wal(&self, wal: &ClusterWal) -> Result<()> {
        let Some((missing, own)) = self.first_missing(wal) else { return Ok(()) };
        let name = missing.name(self.base.seg_size);
        Err(PgError::MissingWal(if own {
            format!("WAL segment {name} needed by base backup {} is missing from the archive", self.base.short())
        } else {
            format!(
                "WAL segment {name} is missing from the archive: cluster {} cannot be recovered past it from base backup {}",
                self.base.sysid,
                self.base.short()
            )
        }))
    }
}

/// The timelines recovery reads, from base backup `base` to timeline `target`: for each,
/// its first and last segment. Each timeline's segments end before the one holding its
/// switch point: that segment is read from the next timeline, whose copy holds the old
/// timeline's records up to the switch. `None` if `base` is not on the way to `target`
/// (its timeline is not an ancestor, or it started after the switch).
fn timeline_path(history: &BTreeMap<u32, String>, base: &BaseBackup, target: u32) -> Option<Vec<TimelineSpan>> {
    let seg = base.seg_size;
    let start = base.start_lsn.segment(seg);
    if target == base.timeline {
        return Some(vec![TimelineSpan { timeline: target, first: start, last: None }]);
    }
    let text = history.get(&target)?;
    let mut path = Vec::new();
    let mut from = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut f = line.split_whitespace();
        let (Some(tli), Some(end)) = (f.next().and_then(|t| t.parse::<u32>().ok()), f.next()) else { continue };
        let end: Lsn = end.parse().ok()?;
        if tli == base.timeline {
            if base.start_lsn >= end {
                return None;
            }
            from = Some(start);
        }
        if let Some(first) = from {
            path.push(TimelineSpan { timeline: tli, first, last: Some(end.segment(seg).saturating_sub(1)) });
            from = Some(end.segment(seg));
        }
    }
    path.push(TimelineSpan { timeline: target, first: from?, last: None });
    Some(path)
}

/// Offsets in `data` (a WAL segment) of restore point records named `name`. The record's
/// main data is `0xFF, 72` (a short data block of 72 bytes) then `rp_time` (8 bytes) and
/// `rp_name` (64 bytes, NUL-terminated; PostgreSQL copies it with strlcpy, so bytes after
/// the NUL are not zeroed). A record torn by a page boundary is not found by this scan.
#[must_use]
pub fn restore_point_hits(data: &[u8], name: &str) -> Vec<usize> {
    let mut field = name.as_bytes().to_vec();
    field.push(0);
    if field.len() > 64 {
        return Vec::new();
    }
    data.windows(2 + 8 + 64)
        .enumerate()
        .filter(|(_, w)| w[0] == 0xFF && w[1] == 72 && w[10..10 + field.len()] == *field)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn base(snapshot: &str, timeline: u32, start: &str, stop: &str, stop_time: &str) -> BaseBackup {
        BaseBackup {
            snapshot: snapshot.repeat(8),
            sysid: 7,
            timeline,
            start_lsn: start.parse().unwrap(),
            stop_lsn: stop.parse().unwrap(),
            stop_time: stop_time.parse().unwrap(),
            seg_size: SEG,
            cluster: None,
            tree: coffer_repository::Id([0; 32]),
        }
    }

    fn wal(names: &[&str]) -> ClusterWal {
        ClusterWal { names: names.iter().map(|n| (*n).to_owned()).collect(), seg_size: SEG }
    }

    fn seg(tli: u32, n: u64) -> String {
        Segment { timeline: tli, number: n }.name(SEG)
    }

    #[test]
    fn the_newest_base_backup_before_the_target_is_chosen() {
        let a = base("a", 1, "0/2000028", "0/2000100", "2030-01-01T00:00:00Z");
        let b = base("b", 1, "0/5000028", "0/5000100", "2030-01-02T00:00:00Z");
        let bases = [&a, &b];
        let none = BTreeMap::new();
        let at = |t: PlanTarget| RestorePlan::choose(7, &bases, &none, t, None).map(|p| p.base.snapshot);
        assert_eq!(at(PlanTarget::Latest).unwrap(), b.snapshot);
        assert_eq!(at(PlanTarget::Time("2030-01-01T12:00:00Z".parse().unwrap())).unwrap(), a.snapshot);
        assert_eq!(at(PlanTarget::Lsn("0/5000100".parse().unwrap())).unwrap(), b.snapshot);
        assert_eq!(at(PlanTarget::Lsn("0/50000FF".parse().unwrap())).unwrap(), a.snapshot);
        let err = at(PlanTarget::Time("2029-01-01T00:00:00Z".parse().unwrap())).unwrap_err();
        assert_eq!(err.to_string(), "no base backup of cluster 7 precedes the recovery target");
    }

    #[test]
    fn a_gap_on_the_way_stops_the_restore_and_one_elsewhere_does_not() {
        let a = base("a", 1, "0/2000028", "0/2000100", "2030-01-01T00:00:00Z");
        let none = BTreeMap::new();
        let plan = RestorePlan::choose(7, &[&a], &none, PlanTarget::Latest, None).unwrap();
        assert_eq!(plan.path, [TimelineSpan { timeline: 1, first: 2, last: None }]);
        assert!(plan.check_wal(&wal(&[&seg(1, 2), &seg(1, 3), &seg(1, 4)])).is_ok());
        let err = plan.check_wal(&wal(&[&seg(1, 2), &seg(1, 4)])).unwrap_err();
        assert!(matches!(err, PgError::MissingWal(_)));
        assert!(
            err.to_string().starts_with(&format!("WAL segment {} is missing from the archive", seg(1, 3))),
            "{err}"
        );
        // Before the base backup, or past an LSN target: not read.
        assert!(plan.check_wal(&wal(&[&seg(1, 0), &seg(1, 2), &seg(1, 3)])).is_ok());
        let to_3 = RestorePlan::choose(7, &[&a], &none, PlanTarget::Lsn("0/3000010".parse().unwrap()), None).unwrap();
        assert!(to_3.check_wal(&wal(&[&seg(1, 2), &seg(1, 3), &seg(1, 5)])).is_ok());
        assert!(to_3.check_wal(&wal(&[&seg(1, 2), &seg(1, 4)])).is_err());
        // The backup's own WAL is needed whatever the target (a .partial copy will do).
        let err = plan.check_wal(&wal(&[&seg(1, 3)])).unwrap_err();
        assert!(err.to_string().contains(&format!("{} needed by base backup aaaaaaaa", seg(1, 2))), "{err}");
        assert!(plan.check_wal(&wal(&[&format!("{}.partial", seg(1, 2))])).is_ok());
    }

    #[test]
    fn timeline_switches_follow_the_history_files() {
        // Timeline 2 branched from 1 at 0/5000100 (in segment 5); 3 from 2 at 0/8000000.
        let history: BTreeMap<u32, String> = [
            (2, "1\t0/5000100\tno recovery target specified\n".to_owned()),
            (3, "1\t0/5000100\tno recovery target specified\n\n2\t0/8000000\tat restore point \"x\"\n".to_owned()),
        ]
        .into();
        let a = base("a", 1, "0/2000028", "0/2000100", "2030-01-01T00:00:00Z");
        let plan = RestorePlan::choose(7, &[&a], &history, PlanTarget::Latest, None).unwrap();
        assert_eq!(
            plan.path,
            [
                TimelineSpan { timeline: 1, first: 2, last: Some(4) },
                TimelineSpan { timeline: 2, first: 5, last: Some(7) },
                TimelineSpan { timeline: 3, first: 8, last: None },
            ]
        );
        // Timeline 1's own segment 5 (after the switch) and timeline 2's 9 are not read.
        let archive =
            [seg(1, 2), seg(1, 3), seg(1, 4), seg(1, 6), seg(2, 5), seg(2, 6), seg(2, 7), seg(2, 10), seg(3, 8)];
        let archive: Vec<&str> = archive.iter().map(String::as_str).collect();
        assert!(plan.check_wal(&wal(&archive)).is_ok());
        // Timeline 2's segment 6 is.
        let without: Vec<&str> = archive.iter().copied().filter(|n| *n != seg(2, 6)).collect();
        let err = plan.check_wal(&wal(&without)).unwrap_err();
        assert!(err.to_string().contains(&seg(2, 6)), "{err}");
        // Recovering along timeline 1 only, and a base backup taken after the switch is not
        // on the way to timeline 2.
        let on_1 = RestorePlan::choose(7, &[&a], &history, PlanTarget::Latest, Some(1)).unwrap();
        assert_eq!(on_1.path, [TimelineSpan { timeline: 1, first: 2, last: None }]);
        let late = base("c", 1, "0/6000028", "0/6000100", "2030-01-03T00:00:00Z");
        let err = RestorePlan::choose(7, &[&late], &history, PlanTarget::Latest, Some(2)).unwrap_err();
        assert!(err.to_string().contains("on the way to timeline 2"), "{err}");
        // With both, the newest that is on the way is chosen.
        let plan = RestorePlan::choose(7, &[&a, &late], &history, PlanTarget::Latest, Some(2)).unwrap();
        assert_eq!(plan.base.snapshot, a.snapshot);
    }

    #[test]
    fn restore_points_are_found_by_exact_name() {
        let record = |name: &str| {
            let mut r = vec![0xFF, 72];
            r.extend_from_slice(&123u64.to_le_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(64, b'x'); // strlcpy leaves what followed the NUL
            n[name.len()] = 0;
            r.extend_from_slice(&n);
            r
        };
        let mut data = vec![0u8; 100];
        data.extend(record("dup"));
        data.extend([1, 2, 3]);
        data.extend(record("dup2"));
        data.extend(record("dup"));
        assert_eq!(restore_point_hits(&data, "dup"), [100, 100 + 74 + 3 + 74]);
        assert_eq!(restore_point_hits(&data, "dup2"), [100 + 74 + 3]);
        assert!(restore_point_hits(&data, "du").is_empty());
        assert!(restore_point_hits(&data, &"n".repeat(64)).is_empty());
        // A record cut off by the end of the data is not found.
        assert!(restore_point_hits(&data[..data.len() - 1], "dup").len() == 1);
    }
}
