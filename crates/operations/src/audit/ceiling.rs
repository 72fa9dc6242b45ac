//! The §5 proof: "data deleted at the source today is gone from every backup by DATE", and
//! DATE compared with today + the policy's ceiling (90 days).
//!
//! Reasoning (`docs/audit.md`): data deleted at the source now is in no snapshot taken
//! from now on, so it survives only in what the repository holds now. Prune is the only
//! thing that removes, and it removes a version once (a) its lock has ended and (b) no live
//! snapshot needs it. So every byte held now is gone by the first prune run after
//! `max(now, latest expiry of a live snapshot, latest lock end of a data object version)`.
//! The bound is taken over **every** data object version the store holds (packs, indexes,
//! snapshots, WAL; not only those live snapshots reference: an unreferenced pack that still
//! holds the data is also removed only by prune after its lock), read in one listing pass.
//! Metadata that holds no source data (`config`, `keys/`, `ledger/`, the canary's
//! `coffer-security/`) is left out and counted. A legal hold has no end: it breaks the bound.
//!
//! Invariant guarded here: the proof is never "holds" by default: without a prune schedule,
//! or with any object that would outlive the bound, it does not hold, and every such object
//! or snapshot is listed.

use crate::schedule::Schedule;
use coffer_repository::{Id, Snapshot};
use coffer_store::ObjectVersion;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// At most this many offenders are listed (the total is always given).
pub const MAX_OFFENDERS: usize = 1000;

/// When prune runs.
#[derive(Clone, Debug)]
pub struct PruneTiming {
    /// Its schedule.
    pub schedule: Schedule,
    /// Its random delay, at most.
    pub random_delay: Duration,
    /// The daemon's time zone.
    pub tz: TimeZone,
}

impl PruneTiming {
    /// The latest a prune run starts after `t`: the next slot plus the random delay.
    #[must_use]
    pub fn after(&self, t: Timestamp) -> Timestamp {
        let next = self.schedule.next_after(t, &self.tz);
        next.checked_add(signed(self.random_delay)).unwrap_or(Timestamp::MAX)
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// What the proof is computed from.
#[derive(Clone, Debug)]
pub struct CeilingInput<'a> {
    /// Today.
    pub now: Timestamp,
    /// The policy's ceiling (90 days).
    pub ceiling: Duration,
    /// The repository's own ceiling (`max-retain`), if read.
    pub max_retain: Option<Duration>,
    /// The prune schedule (none: prune is not scheduled).
    pub prune: Option<PruneTiming>,
    /// The repository's snapshots (expired ones are passed over).
    pub snapshots: &'a [(Id, Snapshot)],
    /// Every object version under the repository's prefix (keys relative to it).
    pub versions: &'a [ObjectVersion],
}

/// A snapshot or object that would outlive the bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offender {
    /// `snapshot`, `object` or `legal-hold`.
    pub kind: String,
    /// The snapshot's id, or the object's key and version.
    pub name: String,
    /// Its expiry or lock end (none: a legal hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// When prune would remove it (none: never, or prune not scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_by: Option<Timestamp>,
    /// Why it breaks the bound, one line.
    pub why: String,
}

/// The proof's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeilingProof {
    /// Today (the deletion).
    pub now: Timestamp,
    /// The policy's ceiling, days.
    pub ceiling_days: u64,
    /// `now` + the policy's ceiling.
    pub bound: Timestamp,
    /// The repository's `max-retain`, seconds (none: not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retain_seconds: Option<u64>,
    /// The prune schedule (none: not scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<String>,
    /// Live snapshots considered.
    pub snapshots: usize,
    /// Data object versions considered.
    pub objects: usize,
    /// Metadata versions left out (config, keys, ledger, canary): they hold no source data.
    pub metadata_objects: usize,
    /// The latest expiry of a live snapshot, and which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_expiry: Option<Timestamp>,
    /// The snapshot with the latest expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_expiry_snapshot: Option<String>,
    /// The latest lock end of a data object version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_lock: Option<Timestamp>,
    /// The object with the latest lock end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_lock_object: Option<String>,
    /// The latest date by which data deleted at the source now is gone from every backup
    /// (none: not bounded — no prune schedule, or a legal hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_by: Option<Timestamp>,
    /// Whether `gone_by` is on or before `bound`.
    pub holds: bool,
    /// Snapshots and objects that break the bound (at most [`MAX_OFFENDERS`]).
    pub offenders: Vec<Offender>,
    /// How many break it in all.
    pub offenders_total: usize,
    /// The proof's steps, one line each.
    pub reasoning: Vec<String>,
}

/// Whether `key` (relative to the repository's prefix) holds no source data.
#[must_use]
pub fn is_metadata(key: &str) -> bool {
    key == "config"
        || key.starts_with("keys/")
        || key.starts_with("ledger/")
        || key.starts_with(coffer_store::probe::RESERVED_PREFIX)
}

fn day(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Computes the proof.
#[must_use]
pub fn prove(input: &CeilingInput<'_>) -> CeilingProof {
    let now = input.now;
    let bound = now.checked_add(signed(input.ceiling)).unwrap_or(Timestamp::MAX);
    let gone = |t: Timestamp| input.prune.as_ref().map(|p| p.after(t.max(now)));
    // Anything at or before this is gone well before the bound: no schedule arithmetic.
    let slack = input
        .prune
        .as_ref()
        .map_or(Duration::ZERO, |p| p.schedule.interval() + p.random_delay + Duration::from_secs(86_400));
    let safe_before = bound.checked_sub(signed(slack)).unwrap_or(Timestamp::MIN);
    let mut offenders = Vec::new();
    let mut latest_expiry: Option<(Timestamp, String)> = None;
    let mut live = 0;
    for (id, s) in input.snapshots.iter().filter(|(_, s)| s.expires > now) {
        live += 1;
        if latest_expiry.as_ref().is_none_or(|(t, _)| s.expires > *t) {
            latest_expiry = Some((s.expires, id.to_string()));
        }
        if s.expires > safe_before {
            let g = gone(s.expires);
            if g.is_none_or(|g| g > bound) {
                offenders.push(Offender {
                    kind: "snapshot".into(),
                    name: id.to_string(),
                    until: Some(s.expires),
                    gone_by: g,
                    why: format!("expires {}, kept past the bound {}", day(s.expires), day(bound)),
                });
            }
        }
    }
    let mut latest_lock: Option<(Timestamp, String)> = None;
    let (mut objects, mut metadata) = (0, 0);
    let mut held = 0;
    for v in input.versions.iter().filter(|v| !v.delete_marker) {
        if is_metadata(&v.key) {
            metadata += 1;
            continue;
        }
        objects += 1;
        let name = || format!("{} (version {})", super::clean(&v.key, 300), super::clean(&v.version.0, 100));
        if v.legal_hold {
            held += 1;
            offenders.push(Offender {
                kind: "legal-hold".into(),
                name: name(),
                until: v.retention.map(|r| r.until),
                gone_by: None,
                why: "a legal hold keeps it until someone removes the hold: no date bounds it".into(),
            });
        }
        let Some(r) = v.retention else { continue };
        if latest_lock.as_ref().is_none_or(|(t, _)| r.until > *t) {
            latest_lock = Some((r.until, name()));
        }
        if r.until > safe_before {
            let g = gone(r.until);
            if g.is_none_or(|g| g > bound) {
                offenders.push(Offender {
                    kind: "object".into(),
                    name: name(),
                    until: Some(r.until),
                    gone_by: g,
                    why: format!("locked ({}) until {}, past the bound {}", r.mode, day(r.until), day(bound)),
                });
            }
        }
    }
    let latest = [Some(now), latest_expiry.as_ref().map(|(t, _)| *t), latest_lock.as_ref().map(|(t, _)| *t)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(now);
    let gone_by = if held > 0 { None } else { gone(latest) };
    let holds = gone_by.is_some_and(|g| g <= bound);
    let mut reasoning = vec![
        format!(
            "data deleted at the source at {} is in no later snapshot: it survives only in the {live} live snapshot(s) and {objects} data object version(s) held now",
            day(now)
        ),
        match &latest_expiry {
            Some((t, id)) => {
                format!("the latest expiry of a live snapshot is {} (snapshot {})", day(*t), &id[..id.len().min(16)])
            }
            None => "no live snapshot".to_owned(),
        },
        match &latest_lock {
            Some((t, k)) => format!("the latest lock end of a data object is {} ({k})", day(*t)),
            None => "no data object is locked".to_owned(),
        },
    ];
    match &input.prune {
        Some(p) => reasoning.push(format!(
            "prune (`{}`, random delay up to {}) removes a version at its first run after its lock ends and no live snapshot needs it: the first run after {} starts by {}",
            p.schedule,
            super::days(p.random_delay),
            day(latest),
            day(p.after(latest))
        )),
        None => reasoning.push("no prune job is scheduled: nothing removes expired data, so no date bounds it".into()),
    }
    if held > 0 {
        reasoning.push(format!("{held} data object version(s) under a legal hold: kept with no end date"));
    }
    reasoning.push(match gone_by {
        Some(g) if holds => format!(
            "so data deleted today is gone from every backup by {}, on or before {} (today + {} days)",
            day(g),
            day(bound),
            input.ceiling.as_secs() / 86_400
        ),
        Some(g) => format!(
            "so data deleted today is gone only by {}, after {} (today + {} days)",
            day(g),
            day(bound),
            input.ceiling.as_secs() / 86_400
        ),
        None => format!(
            "so no date can be proven; the bound is {} (today + {} days)",
            day(bound),
            input.ceiling.as_secs() / 86_400
        ),
    });
    if let Some(m) = input.max_retain {
        reasoning.push(format!(
            "the repository refuses any snapshot kept longer than its max-retain of {} (a new snapshot expires by {})",
            super::days(m),
            day(now.checked_add(signed(m)).unwrap_or(Timestamp::MAX))
        ));
    }
    let offenders_total = offenders.len();
    offenders.sort_by(|a, b| b.until.cmp(&a.until).then_with(|| a.name.cmp(&b.name)));
    offenders.truncate(MAX_OFFENDERS);
    CeilingProof {
        now,
        ceiling_days: input.ceiling.as_secs() / 86_400,
        bound,
        max_retain_seconds: input.max_retain.map(|d| d.as_secs()),
        prune: input.prune.as_ref().map(|p| p.schedule.to_string()),
        snapshots: live,
        objects,
        metadata_objects: metadata,
        latest_expiry: latest_expiry.as_ref().map(|(t, _)| *t),
        latest_expiry_snapshot: latest_expiry.map(|(_, id)| id),
        latest_lock: latest_lock.as_ref().map(|(t, _)| *t),
        latest_lock_object: latest_lock.map(|(_, k)| k),
        gone_by,
        holds: holds && offenders_total == 0,
        offenders,
        offenders_total,
        reasoning,
    }
}

/// The prune timing of repository `name` of `config` (none: prune not scheduled).
#[must_use]
pub fn prune_timing(config: &crate::config::Config, name: &str) -> Option<PruneTiming> {
    let p = config.repository(name)?.prune?;
    let tz = config.daemon.timezone.as_deref().and_then(|n| TimeZone::get(n).ok()).unwrap_or_else(TimeZone::system);
    Some(PruneTiming { schedule: p.schedule.clone(), random_delay: p.random_delay.unwrap_or_default(), tz })
}

/// The proof for the evidence of repository `name`; none when its snapshots or object
/// versions could not be read.
#[must_use]
pub fn prove_from(config: &crate::config::Config, name: &str, ev: &super::evidence::Evidence) -> Option<CeilingProof> {
    let (Ok(snapshots), Ok(versions)) = (&ev.snapshots, &ev.versions) else { return None };
    Some(prove(&CeilingInput {
        now: ev.now,
        ceiling: super::POLICY_CEILING,
        max_retain: ev.retention.as_ref().ok().map(|r| r.max_retain),
        prune: prune_timing(config, name),
        snapshots,
        versions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::{Retention, RetentionMode, VersionId};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn now() -> Timestamp {
        at("2030-06-01T12:00:00Z")
    }

    fn snap(expires: &str) -> (Id, Snapshot) {
        let id = Id(*blake3::hash(expires.as_bytes()).as_bytes());
        (
            id,
            Snapshot {
                kind: "files".into(),
                time: now(),
                expires: at(expires),
                retain_until: at(expires),
                host: "h".into(),
                paths: vec!["/home".into()],
                tags: vec![],
                tree: Id([0; 32]),
                parent: None,
                previous: None,
                summary: coffer_repository::Summary::default(),
                program: String::new(),
                pg: None,
            },
        )
    }

    fn obj(key: &str, until: Option<&str>, hold: bool) -> ObjectVersion {
        ObjectVersion {
            key: key.into(),
            version: VersionId("v".into()),
            created: now(),
            is_latest: true,
            delete_marker: false,
            size: 1,
            checksum: String::new(),
            retention: until.map(|u| Retention { mode: RetentionMode::Compliance, until: at(u) }),
            legal_hold: hold,
        }
    }

    fn daily_0030() -> Option<PruneTiming> {
        Some(PruneTiming {
            schedule: Schedule::parse("daily 00:30").unwrap(),
            random_delay: Duration::ZERO,
            tz: TimeZone::UTC,
        })
    }

    fn prove_with(snaps: &[(Id, Snapshot)], versions: &[ObjectVersion], prune: Option<PruneTiming>) -> CeilingProof {
        prove(&CeilingInput {
            now: now(),
            ceiling: super::super::POLICY_CEILING,
            max_retain: Some(Duration::from_secs(88 * 86_400)),
            prune,
            snapshots: snaps,
            versions,
        })
    }

    /// The arithmetic: gone by the first prune after the latest of the expiries and locks.
    #[test]
    fn audit_ceiling_is_the_first_prune_after_the_latest_lock_or_expiry() {
        let snaps = [snap("2030-07-01T12:00:00Z"), snap("2030-05-01T00:00:00Z")];
        let versions = [
            obj("data/00/a", Some("2030-07-02T00:00:00Z"), false),
            obj("index/b", Some("2030-06-20T00:00:00Z"), false),
            // Metadata is not source data: its lock does not count.
            obj("ledger/c", Some("2030-08-28T00:00:00Z"), false),
            obj("config", Some("2030-08-28T00:00:00Z"), false),
        ];
        let p = prove_with(&snaps, &versions, daily_0030());
        assert_eq!(p.snapshots, 1, "the expired snapshot is passed over");
        assert_eq!((p.objects, p.metadata_objects), (2, 2));
        assert_eq!(p.latest_expiry, Some(at("2030-07-01T12:00:00Z")));
        assert_eq!(p.latest_lock, Some(at("2030-07-02T00:00:00Z")));
        assert_eq!(p.gone_by, Some(at("2030-07-02T00:30:00Z")));
        assert_eq!(p.bound, at("2030-08-30T12:00:00Z"));
        assert!(p.holds);
        assert_eq!(p.offenders_total, 0);
    }

    /// At the repository's ceiling (88 days, the lock to the midnight after expiry + 12 h),
    /// a prune at 00:30 still makes it by 90 days; a lock two days later does not.
    #[test]
    fn audit_ceiling_at_88_days_holds_and_a_longer_lock_breaks_it() {
        let snaps = [snap("2030-08-28T12:00:00Z")];
        let ok = [obj("data/00/a", Some("2030-08-30T00:00:00Z"), false)];
        let p = prove_with(&snaps, &ok, daily_0030());
        assert_eq!(p.gone_by, Some(at("2030-08-30T00:30:00Z")));
        assert!(p.holds, "{p:#?}");
        let late = [
            obj("data/00/a", Some("2030-08-30T00:00:00Z"), false),
            obj("data/01/b", Some("2030-09-01T00:00:00Z"), false),
        ];
        let p = prove_with(&snaps, &late, daily_0030());
        assert!(!p.holds);
        assert_eq!(p.gone_by, Some(at("2030-09-01T00:30:00Z")));
        assert_eq!(p.offenders_total, 1);
        assert_eq!(p.offenders[0].kind, "object");
        assert!(p.offenders[0].name.starts_with("data/01/b"));
        assert_eq!(p.offenders[0].until, Some(at("2030-09-01T00:00:00Z")));
    }

    #[test]
    fn audit_ceiling_snapshot_expiring_too_late_and_legal_holds_are_offenders() {
        let snaps = [snap("2030-09-15T00:00:00Z")];
        let p = prove_with(&snaps, &[obj("data/00/a", None, true)], daily_0030());
        assert!(!p.holds);
        assert_eq!(p.gone_by, None, "a legal hold has no end");
        let kinds: Vec<&str> = p.offenders.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds.len(), 2);
        assert!(kinds.contains(&"snapshot") && kinds.contains(&"legal-hold"), "{kinds:?}");
    }

    #[test]
    fn audit_ceiling_without_prune_is_not_proven() {
        let p =
            prove_with(&[snap("2030-06-10T00:00:00Z")], &[obj("data/00/a", Some("2030-06-11T00:00:00Z"), false)], None);
        assert!(!p.holds);
        assert_eq!(p.gone_by, None);
        assert!(p.reasoning.iter().any(|l| l.contains("no prune job is scheduled")));
    }

    #[test]
    fn audit_ceiling_random_delay_counts() {
        let mut prune = daily_0030();
        if let Some(p) = &mut prune {
            p.random_delay = Duration::from_secs(3600);
        }
        let p = prove_with(&[], &[obj("data/00/a", Some("2030-06-11T00:00:00Z"), false)], prune);
        assert_eq!(p.gone_by, Some(at("2030-06-11T01:30:00Z")));
    }
}
