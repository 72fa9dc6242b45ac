//! The job ledger: a hash chain of locked, authenticated records under `ledger/ID`, one per
//! job run (or any other event a caller names by `kind`), so what ran, when and how it ended
//! is evidence kept with the backups themselves and outlives the host that ran it.
//!
//! Invariants guarded here (format: `docs/ledger.md`):
//! - A record is an enveloped object sealed with the repository key ([`ObjectKind::Ledger`]),
//!   its name the BLAKE3 hash of its stored bytes, written create-only and locked like the
//!   config and key files: until `lock_until(time + max-retain)` — the repository's retention
//!   ceiling, so the ledger is evidence for the whole period any snapshot can cover, and no
//!   longer. It is never overwritten; prune removes it only once that lock has ended.
//! - Each record names its predecessor (`prev`, with the predecessor's `time`) and carries
//!   `seq` = predecessor's + 1: removing or rewriting a record leaves a gap or a second branch
//!   that [`Repository::ledger`] reports. Appends of one process are serialized, so it never
//!   forks its own chain; two hosts appending at once may fork it, which is reported, not
//!   fatal.
//! - Reading trusts nothing: a record that does not authenticate (a rogue writer without the
//!   key) is reported and ignored; versions are searched past a rogue writer's (as for
//!   snapshots), delete markers hide nothing, and `--as-of` hides what was stored later.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

/// The store namespace of the ledger (under the repository's prefix).
pub(crate) const LEDGER: &str = "ledger/";

/// One ledger record as stored (format version [`LedgerRecord::VERSION`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// Format version.
    pub version: u32,
    /// Position in the chain: the predecessor's `seq` + 1; the first record has 0.
    pub seq: u64,
    /// The predecessor's id (none: the first record).
    #[serde(default)]
    pub prev: Option<Id>,
    /// The predecessor's `time`: tells a reader whether a missing predecessor may have
    /// expired legitimately (its lock ended and prune removed it).
    #[serde(default)]
    pub prev_time: Option<Timestamp>,
    /// When it was appended (the appender's clock).
    pub time: Timestamp,
    /// The host that appended it.
    pub host: String,
    /// What the body is (`run`: an `operations` run record).
    pub kind: String,
    /// The payload, as the caller gave it (hostile input to whoever reads it back).
    pub body: serde_json::Value,
}

impl LedgerRecord {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;
}

/// One authentic record, as read back.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerEntry {
    /// Its id (the hash of its stored bytes).
    pub id: Id,
    /// When the store created it (a writer cannot choose this one).
    pub stored: Timestamp,
    /// The record.
    pub record: LedgerRecord,
}

/// What is wrong with the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LedgerProblemKind {
    /// An object under `ledger/` that does not authenticate with the repository key, or
    /// whose content does not match its name: not a record (ignored).
    Unauthentic,
    /// A record written by a newer Coffer (ignored).
    NewerFormat,
    /// A record's predecessor is missing although its lock cannot have ended yet: evidence
    /// was removed.
    Gap,
    /// Several records follow the same predecessor (or several start a chain): two
    /// appenders at once, or a record written past the chain.
    Fork,
    /// A record whose `seq` does not follow its predecessor's, or whose time is before it.
    OutOfOrder,
    /// An authentic record whose body its reader cannot make sense of (reported by the
    /// reader of the bodies, e.g. `coffer ledger`, not by [`Repository::ledger`]).
    BadBody,
}

impl LedgerProblemKind {
    /// The kebab-case name used in output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthentic => "unauthentic",
            Self::NewerFormat => "newer-format",
            Self::Gap => "gap",
            Self::Fork => "fork",
            Self::OutOfOrder => "out-of-order",
            Self::BadBody => "bad-body",
        }
    }
}

/// One problem found reading the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerProblem {
    /// What kind.
    pub kind: LedgerProblemKind,
    /// The storage key concerned.
    pub object: String,
    /// What is wrong, one line.
    pub message: String,
}

/// The ledger as read: authentic records in chain order, the chain's heads, and problems.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LedgerView {
    /// Authentic records, ordered by `seq`, then time, then id (a fork's branches interleave).
    pub entries: Vec<LedgerEntry>,
    /// Records no other record follows (one unless the chain forked).
    pub heads: Vec<Id>,
    /// What is wrong (empty: the ledger is intact).
    pub problems: Vec<LedgerProblem>,
}

impl LedgerView {
    /// The head an append follows: the one with the highest `seq` (then the latest time,
    /// then the highest id, so every appender picks the same one).
    #[must_use]
    pub fn head(&self) -> Option<&LedgerEntry> {
        self.entries.iter().filter(|e| self.heads.contains(&e.id)).max_by_key(|e| (e.record.seq, e.record.time, e.id))
    }
}

impl Repository {
    /// The store key of a ledger record.
    #[must_use]
    pub fn ledger_key(&self, id: &Id) -> String {
        format!("{}{LEDGER}{id}", self.prefix)
    }

    /// Appends a record of `kind` holding `body` to the ledger, as this machine's host name.
    ///
    /// # Errors
    /// As [`Repository::append_ledger_as`].
    pub fn append_ledger(&self, kind: &str, body: &serde_json::Value) -> Result<Id> {
        self.append_ledger_as(&this_host(), kind, body)
    }

    /// Appends a record of `kind` holding `body`, naming `host` as its appender, after the
    /// current head; returns its id. Appends of this process are serialized.
    ///
    /// # Errors
    /// `Invalid` through a handle opened as of a point in time; store errors.
    pub fn append_ledger_as(&self, host: &str, kind: &str, body: &serde_json::Value) -> Result<Id> {
        self.writable()?;
        let _one = self.ledger_append.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let view = self.ledger()?;
        let head = view.head();
        let now = self.clock.now();
        let record = LedgerRecord {
            version: LedgerRecord::VERSION,
            seq: head.map_or(0, |h| h.record.seq.saturating_add(1)),
            prev: head.map(|h| h.id),
            prev_time: head.map(|h| h.record.time),
            time: now,
            host: host.to_owned(),
            kind: kind.to_owned(),
            body: body.clone(),
        };
        let bytes = pack::seal_object(&self.key, ObjectKind::Ledger, &record);
        let id = Id::hash(&bytes);
        // Evidence for the audit of the whole period a snapshot can cover: the ceiling.
        let until = self.lock_until(now + to_signed(self.config.retention.max_retain));
        self.put(&self.ledger_key(&id), &bytes, until)?;
        self.cache_put(CacheKind::Ledger, &id, &bytes);
        Ok(id)
    }

    /// Reads the whole ledger (as of the handle's point in time), checks every record and
    /// the chain, and reports what is wrong; one bad record never hides the others.
    ///
    /// # Errors
    /// Store errors other than damage (an unreachable store).
    pub fn ledger(&self) -> Result<LedgerView> {
        let prefix = format!("{}{LEDGER}", self.prefix);
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        let mut listed = HashSet::new();
        let cache = || self.ledger_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        versions::for_each_name(self.store.as_ref(), &prefix, self.as_of, |v| {
            let k = v.key.clone();
            let Ok(id) = k[prefix.len()..].parse::<Id>() else {
                problems.push(problem(
                    LedgerProblemKind::Unauthentic,
                    &k,
                    "an object under ledger/ with a malformed name",
                ));
                return Ok(());
            };
            listed.insert(id);
            if let Some((record, stored)) = cache().get(&id).cloned() {
                entries.push(LedgerEntry { id, stored, record });
                return Ok(());
            }
            // The local cache serves the bytes of a record with one version (every honest
            // one): its store time is then that version's, as a store read would find.
            let cached = match (v.objects.as_slice(), self.cache_for_reads()) {
                ([only], Some(c)) => c.get(CacheKind::Ledger, &id).map(|b| (b, only.version.clone())),
                _ => None,
            };
            let found = match cached {
                Some(found) => Some(found),
                None => hashed_version(self.store.as_ref(), &v, &id, None)?.inspect(|(b, _)| {
                    self.cache_put(CacheKind::Ledger, &id, b);
                }),
            };
            let Some((bytes, version)) = found else {
                problems.push(problem(
                    LedgerProblemKind::Unauthentic,
                    &k,
                    &format!("none of its {} versions matches its name (not a record; ignored)", v.objects.len()),
                ));
                return Ok(());
            };
            let stored = v.objects.iter().find(|o| o.version == version).map_or(Timestamp::MIN, |o| o.created);
            match pack::open_object::<LedgerRecord>(&self.key, ObjectKind::Ledger, &bytes, &k) {
                Ok(r) if r.version > LedgerRecord::VERSION => problems.push(problem(
                    LedgerProblemKind::NewerFormat,
                    &k,
                    &format!(
                        "record format {} is newer than this coffer reads ({}); ignored",
                        r.version,
                        LedgerRecord::VERSION
                    ),
                )),
                Ok(record) => {
                    cache().insert(id, (record.clone(), stored));
                    entries.push(LedgerEntry { id, stored, record });
                }
                Err(e) => problems.push(problem(
                    LedgerProblemKind::Unauthentic,
                    &k,
                    &format!(
                        "does not authenticate with the repository key (written without it; ignored): {}",
                        coffer_store::display_chain(&e)
                    ),
                )),
            }
            Ok(())
        })?;
        // The listing is complete: forget records it no longer has (pruned, or later than
        // `as_of`), so the cache stays bounded by the ledger.
        cache().retain(|id, _| listed.contains(id));
        self.cache_retain(CacheKind::Ledger, |id| listed.contains(id));
        let now = self.as_of.unwrap_or_else(|| self.clock.now());
        let ceiling = to_signed(self.config.retention.max_retain);
        let expired = |t: Timestamp| self.lock_until(t + ceiling) <= now;
        Ok(check_chain(entries, problems, |id| self.ledger_key(id), expired))
    }
}

/// Orders `entries` and adds the chain's problems to `problems`. `key` names a record;
/// `expired(t)` says whether a record appended at `t` may have been pruned by now.
fn check_chain(
    mut entries: Vec<LedgerEntry>,
    mut problems: Vec<LedgerProblem>,
    key: impl Fn(&Id) -> String,
    expired: impl Fn(Timestamp) -> bool,
) -> LedgerView {
    entries.sort_by_key(|e| (e.record.seq, e.record.time, e.id));
    let by_id: HashMap<Id, &LedgerEntry> = entries.iter().map(|e| (e.id, e)).collect();
    let mut children: BTreeMap<Option<Id>, Vec<Id>> = BTreeMap::new();
    for e in &entries {
        children.entry(e.record.prev).or_default().push(e.id);
        let Some(prev) = e.record.prev else { continue };
        match by_id.get(&prev) {
            Some(p) => {
                if e.record.seq != p.record.seq.saturating_add(1) {
                    problems.push(problem(
                        LedgerProblemKind::OutOfOrder,
                        &key(&e.id),
                        &format!("seq {} does not follow its predecessor {}'s seq {}", e.record.seq, prev.short(), p.record.seq),
                    ));
                }
                if e.record.time < p.record.time {
                    problems.push(problem(
                        LedgerProblemKind::OutOfOrder,
                        &key(&e.id),
                        &format!(
                            "time {} is before its predecessor {}'s time {} (a clock went backwards)",
                            e.record.time,
                            prev.short(),
                            p.record.time
                        ),
                    ));
                }
            }
            // A predecessor whose lock may have ended was pruned, as it should be; one whose
            // lock cannot have ended was removed: evidence destroyed.
            None if e.record.prev_time.is_some_and(&expired) => {}
            None => problems.push(problem(
                LedgerProblemKind::Gap,
                &key(&prev),
                &format!(
                    "missing: record {} (seq {}) follows it, and its lock cannot have ended yet (appended {}): a ledger record was removed",
                    e.id.short(),
                    e.record.seq,
                    e.record.prev_time.map_or_else(|| "at an unknown time".to_owned(), |t| t.to_string())
                ),
            )),
        }
    }
    for (prev, kids) in &children {
        if kids.len() < 2 {
            continue;
        }
        let names: Vec<String> = kids.iter().map(|k| k.short().to_string()).collect();
        let (object, what) = match prev {
            Some(p) => (key(p), format!("records {} all follow {}", names.join(", "), p.short())),
            None => (key(&kids[1]), format!("records {} all start a chain", names.join(", "))),
        };
        problems.push(problem(
            LedgerProblemKind::Fork,
            &object,
            &format!("the ledger forks: {what} (two appenders at once, or a record written past the chain)"),
        ));
    }
    let followed: BTreeSet<Id> = entries.iter().filter_map(|e| e.record.prev).collect();
    let heads = entries.iter().map(|e| e.id).filter(|id| !followed.contains(id)).collect();
    LedgerView { entries, heads, problems }
}

fn problem(kind: LedgerProblemKind, object: &str, message: &str) -> LedgerProblem {
    LedgerProblem { kind, object: object.to_owned(), message: message.to_owned() }
}

/// This machine's host name (Linux: the kernel's; else `$HOSTNAME`; else `unknown`).
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, seq: u64, prev: Option<u8>, time: i64) -> LedgerEntry {
        let t = |s: i64| Timestamp::from_second(1_900_000_000 + s).unwrap();
        LedgerEntry {
            id: Id([n; 32]),
            stored: t(time),
            record: LedgerRecord {
                version: 1,
                seq,
                prev: prev.map(|p| Id([p; 32])),
                prev_time: prev.map(|_| t(time - 1)),
                time: t(time),
                host: "h".into(),
                kind: "run".into(),
                body: serde_json::Value::Null,
            },
        }
    }

    fn kinds(v: &LedgerView) -> Vec<LedgerProblemKind> {
        v.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn an_intact_chain_has_one_head_and_no_problems() {
        let v = check_chain(
            vec![entry(3, 2, Some(2), 30), entry(1, 0, None, 10), entry(2, 1, Some(1), 20)],
            Vec::new(),
            Id::to_string,
            |_| false,
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.entries.iter().map(|e| e.record.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(v.heads, [Id([3; 32])]);
        assert_eq!(v.head().unwrap().id, Id([3; 32]));
    }

    #[test]
    fn gaps_forks_and_disorder_are_reported() {
        let v =
            check_chain(vec![entry(1, 0, None, 10), entry(3, 2, Some(2), 30)], Vec::new(), Id::to_string, |_| false);
        assert_eq!(kinds(&v), [LedgerProblemKind::Gap]);
        // The same gap, once the predecessor's lock may have ended: pruned, not reported.
        let v = check_chain(vec![entry(3, 2, Some(2), 30)], Vec::new(), Id::to_string, |_| true);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let v = check_chain(
            vec![entry(1, 0, None, 10), entry(2, 1, Some(1), 20), entry(3, 1, Some(1), 21)],
            Vec::new(),
            Id::to_string,
            |_| false,
        );
        assert_eq!(kinds(&v), [LedgerProblemKind::Fork]);
        assert_eq!(v.heads.len(), 2);
        assert_eq!(v.head().unwrap().id, Id([3; 32]), "the latest of equal seq");
        let v = check_chain(vec![entry(1, 0, None, 10), entry(2, 0, None, 11)], Vec::new(), Id::to_string, |_| false);
        assert_eq!(kinds(&v), [LedgerProblemKind::Fork]);
        let v = check_chain(vec![entry(1, 0, None, 10), entry(2, 5, Some(1), 5)], Vec::new(), Id::to_string, |_| false);
        assert_eq!(kinds(&v), [LedgerProblemKind::OutOfOrder, LedgerProblemKind::OutOfOrder]);
    }
}
