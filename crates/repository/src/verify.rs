//! `verify`: prove the repository is whole, its history unbroken, and its locks sufficient.
//!
//! Checks, in order: every snapshot opens and matches its id; every live snapshot's
//! predecessor exists unless it had expired (history removed or rolled back otherwise);
//! every tree of every live snapshot opens; every blob they reference is in the index;
//! every pack, index, config and key object a live snapshot needs is locked at least until
//! that snapshot expires (the lock-coverage invariant); with read-data, every byte of the
//! chosen packs authenticates. A problem names the object and, for data, the snapshots and
//! files affected.
//!
//! Requests: a structural verify with a cache reads no pack's lock and no tree pack that
//! this host already observed: its own earlier runs, and the backups of this host, record
//! each pack's compliance-mode lock end as the store reported it and keep the tree packs
//! they write ([`crate::cache`], `docs/cache.md`, "Lock observations"). So the first verify
//! after many backups makes one listing of `data/` and no request per pack. An observation
//! is used only under `LockCheck`'s rules, whoever recorded it.
//!
//! Progress: a `"check"` phase (names, snapshots, trees and pack locks, one `Advance` item
//! each; no total: they are found as they are walked), then with read-data a `"read"` phase
//! whose total (packs, bytes) is known before the first byte is read. Cancellation is checked
//! at every name, tree and pack; a cancelled verify returns
//! [`RepoError::Cancelled`](crate::RepoError::Cancelled) and no report (a partial report
//! would read as "no problems found").

use crate::error::Result;
use crate::id::Id;
use crate::observe::{Event, JobControl, Progress};
use crate::pack;
use crate::repo::Repository;
use crate::tree::NodeKind;
use crate::versions::{self, Versions};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// How much data to read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    /// Structure and locks only.
    None,
    /// Every pack.
    All,
    /// A random fraction of packs (0.0–1.0).
    Subset(f64),
}

/// One problem found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Problem {
    /// The object (storage key, or blob).
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// Snapshots and files affected (`SNAPSHOT:/path`), when known.
    pub affected: Vec<String>,
}

/// What kind of tampering a [`Finding`] is evidence of. Each is something an honest Coffer
/// never does, so each is reported as a security finding (its own line format, a non-zero
/// exit) rather than as damage: these are what monitoring alerts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A further version of a name Coffer writes once.
    ExtraVersion,
    /// A version whose content does not match its name (or does not open as what its name
    /// says it is).
    ContentMismatch,
    /// A delete marker on a repository key (Coffer never adds one).
    DeleteMarker,
    /// A snapshot whose claimed time does not fit when the store created it.
    Backdated,
    /// A snapshot that names no predecessor although others were stored before it started.
    SecondRoot,
    /// A tree entry a restore must refuse: a name that is empty, `.` or `..`, holds `/` or
    /// NUL, or repeats in its directory; a hard link leading out of the snapshot.
    HostileName,
}

impl FindingKind {
    /// The kebab-case name used in output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExtraVersion => "extra-version",
            Self::ContentMismatch => "content-mismatch",
            Self::DeleteMarker => "delete-marker",
            Self::Backdated => "backdated",
            Self::SecondRoot => "second-root",
            Self::HostileName => "hostile-name",
        }
    }
}

/// One sign of tampering: names the key, the version and when the store created it, and
/// (where the store records it, e.g. the local vault's audit log) who did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    /// What it is evidence of.
    pub kind: FindingKind,
    /// The storage key (or, for a tree entry, `tree ID`).
    pub key: String,
    /// The store's version id, when one version is meant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When the store created that version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    /// The principal that created it, where the store records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
    /// Snapshots and paths affected (`SNAPSHOT:/path`), when known.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<String>,
}

/// The outcome of `verify`.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct VerifyReport {
    /// Live snapshots checked.
    pub snapshots: usize,
    /// Trees checked.
    pub trees: usize,
    /// Distinct data blobs referenced.
    pub blobs: usize,
    /// Packs whose lock was checked.
    pub packs_locked: usize,
    /// Packs read in full.
    pub packs_read: usize,
    /// Problems (empty: the repository verifies).
    pub problems: Vec<Problem>,
    /// Security findings: signs of tampering (empty: none seen).
    pub findings: Vec<Finding>,
}

/// Verifies `repo`. Problems go into the report; only failures to run at all are errors.
///
/// # Errors
/// Store errors that prevent checking (e.g. the store is unreachable);
/// [`RepoError::Cancelled`](crate::RepoError::Cancelled) once `ctl` is cancelled.
pub fn verify(repo: &Repository, read: ReadData, ctl: &JobControl) -> Result<VerifyReport> {
    ctl.emit(&Event::Phase { name: "check" });
    // Reading data means checking the store's bytes: metadata objects too, not the local
    // cache's copies (docs/cache.md).
    let _store_bytes = (!matches!(read, ReadData::None)).then(|| repo.bypass_cache_reads());
    // The check rests on the objects (or copies checked against their names), never on the
    // catalog's derived content, which this host could forge with the key.
    let _objects = repo.without_catalog();
    let one = Event::Advance(Progress::new(1, 0));
    let now = repo.clock().now();
    let mut rep = VerifyReport::default();
    let problem = |rep: &mut VerifyReport, object: String, message: String| {
        rep.problems.push(Problem { object, message, affected: Vec::new() });
    };

    // Every name's versions: delete markers and versions an honest writer never makes.
    security_findings(repo, &mut rep, ctl)?;

    // The job ledger: records that do not authenticate, records removed before their time,
    // forks (see `Repository::ledger`).
    for p in repo.ledger()?.problems {
        problem(&mut rep, p.object, format!("ledger {}: {}", p.kind.as_str(), p.message));
    }

    // Snapshots, including expired ones still present (they anchor the chain), each with
    // when the store created it.
    let mut snaps = Vec::new();
    let mut present = HashSet::new();
    let mut created: HashMap<Id, Timestamp> = HashMap::new();
    versions::for_each_name(repo.store(), &format!("{}snapshots/", repo.prefix()), repo.as_of(), |v| {
        let k = v.key.clone();
        let Ok(id) = k.rsplit('/').next().unwrap_or("").parse::<Id>() else {
            problem(&mut rep, k, "snapshot object with a malformed name".into());
            return Ok(());
        };
        present.insert(id);
        if let Some(first) = v.objects.first() {
            created.insert(id, first.created);
        }
        ctl.check()?;
        ctl.emit(&one);
        match repo.read_snapshot(&id) {
            Ok(s) => snaps.push((id, s)),
            Err(e) => problem(&mut rep, k, coffer_store::display_chain(&e)),
        }
        Ok(())
    })?;
    chain_findings(repo, &snaps, &created, &mut rep);
    let live: Vec<_> = snaps.iter().filter(|(_, s)| s.expires > now).cloned().collect();
    rep.snapshots = live.len();
    for (id, s) in &live {
        if let Some(prev) = s.previous {
            if !present.contains(&prev.id) && prev.expires > now {
                problem(
                    &mut rep,
                    repo.snapshot_key(&prev.id),
                    format!(
                        "snapshot {} names predecessor {} (expiring {}) which is missing: history was removed or rolled back",
                        id.short(),
                        prev.id.short(),
                        prev.expires
                    ),
                );
            }
        }
    }

    // Trees and blobs of live snapshots; what each pack must be locked until.
    let index = repo.load_index()?;
    for (key, why) in index.damaged() {
        problem(&mut rep, key.clone(), format!("index object cannot be read: {why}"));
    }
    let mut reader = repo.reader(&index);
    let mut seen_trees: HashSet<Id> = HashSet::new();
    // Distinct blobs referenced, a bit per index entry (a set of ids was 32 bytes and more
    // per blob: 500 000 files held tens of MiB); blobs in no index are in `missing`.
    let mut blobs: Vec<Vec<u64>> = index.packs().iter().map(|p| vec![0; p.blobs.len().div_ceil(64)]).collect();
    let mut need_until: HashMap<usize, (Timestamp, Id)> = HashMap::new();
    let mut missing: HashSet<Id> = HashSet::new();
    let mut needs = |pack: usize, until: Timestamp, snap: Id| {
        let e = need_until.entry(pack).or_insert((until, snap));
        if until > e.0 {
            *e = (until, snap);
        }
    };
    for (sid, s) in &live {
        // Each tree with its path in the snapshot, hostile names quoted (for findings).
        let mut stack = vec![(s.tree, String::new())];
        let mut this_seen: HashSet<Id> = HashSet::new();
        while let Some((t, at)) = stack.pop() {
            if !this_seen.insert(t) {
                continue;
            }
            ctl.check()?;
            ctl.emit(&one);
            match index.get(&t) {
                Some(r) => needs(r.pack, s.expires, *sid),
                None => {
                    problem(&mut rep, format!("tree {t}"), format!("tree of snapshot {} is in no index", sid.short()));
                    continue;
                }
            }
            let tree = match reader.tree(&t) {
                Ok(tree) => tree,
                Err(e) => {
                    problem(&mut rep, format!("tree {t}"), coffer_store::display_chain(&e));
                    continue;
                }
            };
            if seen_trees.insert(t) {
                rep.trees += 1;
            }
            // Entries a restore refuses: no honest backup writes them, so a forged tree.
            let hostile = tree.hostile_entries();
            let shown = |i: usize| {
                let name = tree.nodes[i].name_bytes();
                if hostile.iter().any(|h| h.index == i) {
                    crate::tree::quoted(name)
                } else {
                    String::from_utf8_lossy(name).into_owned()
                }
            };
            for h in &hostile {
                rep.findings.push(Finding {
                    kind: FindingKind::HostileName,
                    key: format!("tree {t}"),
                    version: None,
                    created: None,
                    principal: None,
                    message: format!("{}; a restore refuses it", h.message),
                    affected: vec![format!("{}:{at}/{}", sid.short(), shown(h.index))],
                });
            }
            for (i, n) in tree.nodes.iter().enumerate() {
                if let (NodeKind::Dir, Some(sub)) = (n.kind, n.subtree) {
                    stack.push((sub, format!("{at}/{}", shown(i))));
                }
                for b in &n.content {
                    if let Some((p, i)) = index.slot(b) {
                        blobs[p][i / 64] |= 1 << (i % 64);
                    }
                    match index.get(b) {
                        Some(r) => needs(r.pack, s.expires, *sid),
                        None => {
                            missing.insert(*b);
                        }
                    }
                }
            }
        }
    }
    rep.blobs = blobs.iter().flatten().map(|w| w.count_ones() as usize).sum::<usize>() + missing.len();
    for b in &missing {
        problem(&mut rep, format!("blob {b}"), "data blob is in no index".into());
    }

    // Lock coverage. Every pack's object versions come from one listing of `data/` (a page
    // per 1 000 versions), not a listing per pack: on S3 that was a request per pack (and
    // on moto a scan of the whole bucket each). Each version's lock is then read, or, for
    // a structural verify with a cache, taken from a compliance-mode observation of an
    // earlier verify of this host (see `LockCheck` and docs/cache.md).
    let mut locks = LockCheck::new(repo, now);
    if !need_until.is_empty() {
        locks.list_packs()?;
    }
    for (&pos, &(until, sid)) in &need_until {
        ctl.check()?;
        ctl.emit(&one);
        let p = index.pack(pos);
        let key = repo.pack_key(&p.id);
        rep.packs_locked += 1;
        match locks.pack_lock(&key, &p.id, until) {
            Ok(locked) => {
                let locked = locked.filter(|l| *l > now);
                if locked.is_none_or(|l| l < until) {
                    problem(
                        &mut rep,
                        key,
                        format!(
                            "locked until {} but snapshot {} needs it until {until}",
                            locked.map_or_else(|| "never".to_owned(), |l| l.to_string()),
                            sid.short()
                        ),
                    );
                }
            }
            Err(e) => problem(
                &mut rep,
                key,
                format!("pack needed by snapshot {}: {}", sid.short(), coffer_store::display_chain(&e)),
            ),
        }
    }
    locks.keep();
    let max_live = live.iter().map(|(_, s)| s.expires).max();
    if let Some(until) = max_live {
        let mut meta = vec![(format!("{}config", repo.prefix()), None)];
        versions::for_each_name(repo.store(), &format!("{}keys/", repo.prefix()), repo.as_of(), |v| {
            let id = v.key.rsplit('/').next().and_then(|h| h.parse::<Id>().ok());
            meta.push((v.key, id));
            Ok(())
        })?;
        for (key, id) in meta {
            let lock = match id {
                Some(id) => authentic_lock(repo, &key, &id),
                None => first_lock(repo, &key),
            };
            match lock {
                Ok(Some(l)) if l >= until => {}
                Ok(l) => problem(
                    &mut rep,
                    key,
                    format!(
                        "locked until {} but the newest snapshot needs it until {until}",
                        l.map_or_else(|| "never".to_owned(), |l| l.to_string())
                    ),
                ),
                Err(e) => problem(&mut rep, key, coffer_store::display_chain(&e)),
            }
        }
    }

    // Data.
    let chosen: Vec<usize> = match read {
        ReadData::None => Vec::new(),
        ReadData::All => need_until.keys().copied().collect(),
        ReadData::Subset(f) => need_until.keys().copied().filter(|_| random_unit() < f).collect(),
    };
    let mut bad_blobs: BTreeMap<Id, String> = BTreeMap::new();
    if !chosen.is_empty() {
        ctl.emit(&Event::Phase { name: "read" });
        let bytes = chosen.iter().map(|&pos| index.pack(pos).size).sum();
        ctl.emit(&Event::Total { total: Progress::new(chosen.len() as u64, bytes), complete: true });
    }
    for pos in chosen {
        ctl.check()?;
        let p = index.pack(pos);
        let key = repo.pack_key(&p.id);
        rep.packs_read += 1;
        ctl.emit(&Event::Advance(Progress::new(1, p.size)));
        let bytes = match repo.get_hashed(&key, &p.id) {
            Ok(b) => b,
            Err(e) if matches!(e, crate::RepoError::Corrupt { .. }) => {
                for e in &p.blobs {
                    bad_blobs.insert(e.id, key.clone());
                }
                problem(&mut rep, key, coffer_store::display_chain(&e));
                continue;
            }
            Err(e) => {
                for e in &p.blobs {
                    bad_blobs.insert(e.id, key.clone());
                }
                problem(&mut rep, key, coffer_store::display_chain(&e));
                continue;
            }
        };
        if let Err(e) = pack::read_pack_header(repo.key(), &bytes, &key) {
            problem(&mut rep, key.clone(), coffer_store::display_chain(&e));
        }
        for e in &p.blobs {
            let sealed = bytes.get(e.offset as usize..(e.offset + e.length) as usize).unwrap_or_default();
            if let Err(err) = pack::open_blob_with(repo.key(), repo, e, sealed, &key) {
                bad_blobs.insert(e.id, key.clone());
                problem(&mut rep, format!("blob {} in {key}", e.id), coffer_store::display_chain(&err));
            }
        }
    }
    if !bad_blobs.is_empty() {
        name_affected(repo, &live, &bad_blobs, &mut rep)?;
    }
    // PostgreSQL WAL archives (`pg/`): gaps, and with --read-data every file's bytes.
    ctl.check()?;
    crate::wal::verify_wal(repo, !matches!(read, ReadData::None), &mut rep.problems)?;
    ctl.check()?;
    Ok(rep)
}

/// A snapshot may finish this long after it started (its claimed `time` is its start; the
/// store dates its object at the end) before `verify` calls it backdated.
pub const BACKDATED_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);
/// Clock skew allowed between the backup host and the store before a snapshot that claims
/// a time after its store creation is reported.
pub const FUTURE_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// The coarsest resolution of a store's version times (S3 lists them to the second).
pub const STORE_TIME_RESOLUTION: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// Walks every name of the repository, with its versions and delete markers, and reports
/// what an honest Coffer never writes: delete markers, further versions of names written
/// once, versions whose content does not match their name. Reads only names that have
/// more than one version (rare), so it costs one version listing.
fn security_findings(repo: &Repository, rep: &mut VerifyReport, ctl: &JobControl) -> Result<()> {
    let store = repo.store();
    let prefix = repo.prefix();
    versions::for_each_name_all(store, prefix, repo.as_of(), |v| {
        ctl.check()?;
        for m in &v.markers {
            rep.findings.push(Finding {
                kind: FindingKind::DeleteMarker,
                key: v.key.clone(),
                version: Some(m.version.to_string()),
                created: Some(m.created),
                principal: None,
                message: "delete marker on a repository key (coffer never adds one; it hides nothing from coffer, prune removes it)".into(),
                affected: Vec::new(),
            });
        }
        if v.objects.len() < 2 {
            return Ok(());
        }
        let name = &v.key[prefix.len()..];
        let hashed =
            ["keys/", "index/", "snapshots/", "data/", "ledger/", "dicts/"].iter().any(|ns| name.starts_with(ns));
        if hashed {
            let Some(id) = name.rsplit('/').next().and_then(|h| h.parse::<Id>().ok()) else { return Ok(()) };
            for o in &v.objects {
                if !version_matches(repo, &v, o, &id)? {
                    rep.findings.push(finding(
                        FindingKind::ContentMismatch,
                        &v,
                        o,
                        "content does not match its name (it is never read)",
                    ));
                }
            }
        } else if let Some(wal) = name.strip_prefix("pg/").and_then(|r| r.rsplit('/').next()) {
            wal_findings(repo, &v, wal, rep)?;
        } else {
            for o in &v.objects[1..] {
                rep.findings.push(finding(
                    FindingKind::ExtraVersion,
                    &v,
                    o,
                    "a further version of a name coffer writes once (readers use the first)",
                ));
            }
        }
        Ok(())
    })
}

/// Findings among the versions of one WAL file: versions that do not authenticate, and
/// authentic ones a reader passes over (a second version of a finished file; a `.partial`
/// version that does not extend the ones before it).
fn wal_findings(repo: &Repository, v: &Versions, name: &str, rep: &mut VerifyReport) -> Result<()> {
    let partial = name.ends_with(".partial");
    let mut best: Option<Vec<u8>> = None;
    for o in &v.objects {
        let plain = match crate::repo::get_listed(repo.store(), &v.key, o) {
            Ok(obj) => repo.open_wal(name, &obj.data, &v.key).ok(),
            Err(e) if crate::repo::is_not_found(&e) => continue,
            Err(_) => None,
        };
        let Some(plain) = plain else {
            rep.findings.push(finding(FindingKind::ContentMismatch, v, o, "does not authenticate as this WAL file"));
            continue;
        };
        match &best {
            None => best = Some(plain),
            Some(b) if partial && crate::wal::partial_order(b, &plain).is_some() => {
                if crate::wal::partial_order(b, &plain) == Some(std::cmp::Ordering::Less) {
                    best = Some(plain);
                }
            }
            Some(_) if partial => rep.findings.push(finding(
                FindingKind::ContentMismatch,
                v,
                o,
                "a version of a growing WAL segment that contradicts the one before it (never read)",
            )),
            Some(_) => rep.findings.push(finding(
                FindingKind::ExtraVersion,
                v,
                o,
                "a further version of a finished WAL file (readers use the first)",
            )),
        }
    }
    Ok(())
}

fn finding(kind: FindingKind, v: &Versions, o: &coffer_store::ListEntry, message: &str) -> Finding {
    Finding {
        kind,
        key: v.key.clone(),
        version: Some(o.version.to_string()),
        created: Some(o.created),
        principal: None,
        message: message.into(),
        affected: Vec::new(),
    }
}

/// Whether version `o` of a content-addressed name holds the content the name says.
fn version_matches(repo: &Repository, v: &Versions, o: &coffer_store::ListEntry, id: &Id) -> Result<bool> {
    match crate::repo::get_listed(repo.store(), &v.key, o) {
        Ok(obj) => Ok(id.names(&obj)),
        Err(e) if matches!(e.kind(), coffer_store::ErrorKind::Corrupt | coffer_store::ErrorKind::NotFound) => Ok(false),
        Err(e) => Err(crate::RepoError::store(format!("cannot read {}", v.key))(e)),
    }
}

/// Findings in the hash chain and the snapshots' times: a snapshot that claims a time
/// its store creation contradicts (forged to look older or newer than it is), and a
/// second root — a snapshot naming no predecessor although another was stored before it
/// started (a forged snapshot made outside the chain).
fn chain_findings(
    repo: &Repository,
    snaps: &[(Id, crate::Snapshot)],
    created: &HashMap<Id, Timestamp>,
    rep: &mut VerifyReport,
) {
    let at = |id: &Id, kind, message: String, when: Option<Timestamp>| Finding {
        kind,
        key: repo.snapshot_key(id),
        version: None,
        created: when,
        principal: None,
        message,
        affected: Vec::new(),
    };
    for (id, s) in snaps {
        let Some(&c) = created.get(id) else { continue };
        if c > s.time + BACKDATED_AFTER {
            rep.findings.push(at(
                id,
                FindingKind::Backdated,
                format!(
                    "snapshot {} claims it started at {} but the store created it at {c}, more than {} later",
                    id.short(),
                    s.time,
                    crate::repo::humanize(BACKDATED_AFTER.unsigned_abs())
                ),
                Some(c),
            ));
        } else if s.time > c + FUTURE_SKEW {
            rep.findings.push(at(
                id,
                FindingKind::Backdated,
                format!("snapshot {} claims it started at {}, after the store created it at {c}", id.short(), s.time),
                Some(c),
            ));
        }
        if s.previous.is_none() {
            // When it started: its claimed start, unless that is a backdating (then only its
            // store creation is known).
            let started = if c > s.time + BACKDATED_AFTER { c } else { s.time };
            let before = snaps.iter().filter(|(o, _)| o != id).filter_map(|(o, _)| Some((o, *created.get(o)?)));
            // S3 dates versions to the second: a version dated one second early is not "before".
            let stored_before = |oc: Timestamp| oc + STORE_TIME_RESOLUTION < started;
            if let Some((o, oc)) = before.filter(|(_, oc)| stored_before(*oc)).min_by_key(|(_, oc)| *oc) {
                rep.findings.push(at(
                    id,
                    FindingKind::SecondRoot,
                    format!(
                        "snapshot {} names no predecessor, but snapshot {} was stored at {oc}, before it started at {started}: a second root of the hash chain",
                        id.short(),
                        o.short(),
                    ),
                    Some(c),
                ));
            }
        }
    }
}

/// What [`snapshot_locks`] checked and found.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotLocks {
    /// Objects whose lock was checked (the snapshot, packs, config, keys).
    pub objects: usize,
    /// Packs among them.
    pub packs: usize,
    /// Objects not locked long enough, or whose lock could not be read.
    pub problems: Vec<Problem>,
}

/// Checks that every object a reader of snapshot `id` needs is locked (the version a reader
/// uses, as `verify` decides it) at least until the snapshot expires: the snapshot object,
/// the packs holding `blobs` (its trees and the content a restore read), and the config and
/// key objects. A drill calls it for what it restored: the data it proved restorable must
/// stay so for as long as the snapshot promises.
///
/// # Errors
/// Store errors listing the keys; [`RepoError::Cancelled`](crate::RepoError::Cancelled) once
/// `ctl` is cancelled. Each object's own failure is a problem, not an error.
pub fn snapshot_locks(
    repo: &Repository,
    index: &crate::Index,
    id: &Id,
    snap: &crate::Snapshot,
    blobs: &[Id],
    ctl: &JobControl,
) -> Result<SnapshotLocks> {
    let now = repo.clock().now();
    let until = snap.expires;
    let mut out = SnapshotLocks::default();
    let check = |out: &mut SnapshotLocks, key: String, lock: Result<Option<Timestamp>>| {
        out.objects += 1;
        match lock {
            Ok(l) if l.filter(|l| *l > now).is_some_and(|l| l >= until) => {}
            Ok(l) => out.problems.push(Problem {
                object: key,
                message: format!(
                    "locked until {} but snapshot {} needs it until {until}",
                    l.map_or_else(|| "never".to_owned(), |l| l.to_string()),
                    id.short()
                ),
                affected: Vec::new(),
            }),
            Err(e) => out.problems.push(Problem {
                object: key,
                message: coffer_store::display_chain(&e),
                affected: Vec::new(),
            }),
        }
    };
    let key = repo.snapshot_key(id);
    check(&mut out, key.clone(), authentic_lock(repo, &key, id));
    let mut packs: Vec<usize> = Vec::new();
    let mut seen = HashSet::new();
    for b in blobs {
        match index.get(b) {
            Some(r) => {
                if seen.insert(r.pack) {
                    packs.push(r.pack);
                }
            }
            None => out.problems.push(Problem {
                object: format!("blob {b}"),
                message: "blob is in no index: its lock cannot be known".into(),
                affected: Vec::new(),
            }),
        }
    }
    packs.sort_unstable();
    for pos in packs {
        ctl.check()?;
        let p = index.pack(pos);
        let key = repo.pack_key(&p.id);
        out.packs += 1;
        check(&mut out, key.clone(), authentic_lock(repo, &key, &p.id));
    }
    let config = format!("{}config", repo.prefix());
    check(&mut out, config.clone(), first_lock(repo, &config));
    let mut keys = Vec::new();
    versions::for_each_name(repo.store(), &format!("{}keys/", repo.prefix()), repo.as_of(), |v| {
        keys.push(v.key);
        Ok(())
    })?;
    for key in keys {
        ctl.check()?;
        let lock = match key.rsplit('/').next().and_then(|h| h.parse::<Id>().ok()) {
            Some(kid) => authentic_lock(repo, &key, &kid),
            None => first_lock(repo, &key),
        };
        check(&mut out, key, lock);
    }
    Ok(out)
}

/// The lock end of the version of content-addressed `key` a reader uses: its only version,
/// or, when there are several, the latest lock among those whose content matches.
fn authentic_lock(repo: &Repository, key: &str, id: &Id) -> Result<Option<Timestamp>> {
    let versions = repo.object_versions(key)?;
    if versions.is_empty() {
        return Err(crate::RepoError::store(format!("cannot read {key}"))(coffer_store::StoreError::NotFound {
            key: key.to_owned(),
            version: None,
        }));
    }
    if let [only] = versions.as_slice() {
        return Ok(only.retention.map(|r| r.until));
    }
    let mut best = None;
    for v in &versions {
        if let Ok(o) = repo.store().get(key, Some(&v.version)) {
            if id.names(&o) {
                best = best.max(Some(v.retention.map(|r| r.until)));
            }
        }
    }
    Ok(best.flatten())
}

/// The lock checks of a `verify`: every pack's versions from one listing, and the
/// compliance-mode lock observations of earlier structural verifies of this host.
///
/// Why an observation may stand in for a `HeadObject`: a compliance-mode lock cannot be
/// shortened or removed by anyone, root account included, and a locked version cannot be
/// deleted, so "version V of P is locked in compliance mode until T" stays true until T.
/// It is used only for a version the store's listing returns now (the listing decides what
/// exists), only while T is in the future and covers what the snapshot needs, and only
/// when the file authenticates with a key derived from the repository key (so neither
/// another repository's file nor a user of this host without the key can forge one).
/// Governance-mode locks (shortened with a bypass) are never kept: they are read every
/// time. Whoever holds the repository key on this host could forge an observation, but
/// could equally run another binary: the independent check is a verify from another host,
/// or `--no-cache` / `--read-data`, which read every lock from the store.
struct LockCheck<'a> {
    repo: &'a Repository,
    now: Timestamp,
    /// Each pack key's object versions, as listed (no point in time: every version).
    listed: HashMap<String, Vec<coffer_store::VersionId>>,
    /// Observations read from the cache (none when reads bypass it).
    cached: crate::cache::LockObservations,
    /// Observations to keep: compliance locks seen or reused by this verify.
    seen: crate::cache::LockObservations,
}

impl<'a> LockCheck<'a> {
    const PURPOSE: &'static str = crate::cache::LOCK_MAC_PURPOSE;

    fn new(repo: &'a Repository, now: Timestamp) -> Self {
        let cached = repo
            .cache_for_reads()
            .map(|c| c.lock_observations(repo.key().keyed_hasher(Self::PURPOSE)))
            .unwrap_or_default();
        Self { repo, now, listed: HashMap::new(), cached, seen: crate::cache::LockObservations::new() }
    }

    /// Lists `data/` once: every pack key's object versions.
    fn list_packs(&mut self) -> Result<()> {
        let repo = self.repo;
        let mut ids = HashSet::new();
        versions::for_each_name(repo.store(), &format!("{}data/", repo.prefix()), None, |v| {
            if let Some(id) = v.key.rsplit('/').next().and_then(|h| h.parse::<Id>().ok()) {
                ids.insert(id);
            }
            self.listed.insert(v.key, v.objects.into_iter().map(|o| o.version).collect());
            Ok(())
        })?;
        // The listing is complete: cached tree packs it no longer has were pruned.
        repo.retain_tree_packs(|id| ids.contains(id));
        Ok(())
    }

    /// As [`authentic_lock`], from the listing (and, for a single version, an observation
    /// covering `need`).
    fn pack_lock(&mut self, key: &str, id: &Id, need: Timestamp) -> Result<Option<Timestamp>> {
        let versions = self.listed.get(key).map(Vec::as_slice).unwrap_or_default();
        match versions {
            [] => Err(crate::RepoError::store(format!("cannot read {key}"))(coffer_store::StoreError::NotFound {
                key: key.to_owned(),
                version: None,
            })),
            [only] => {
                let k = (key.to_owned(), only.0.clone());
                if let Some(t) = self.cached.get(&k).and_then(|s| Timestamp::from_second(*s).ok()) {
                    if t > self.now && t >= need {
                        self.seen.insert(k, t.as_second());
                        return Ok(Some(t));
                    }
                }
                let r = self
                    .repo
                    .store()
                    .version_retention(key, only)
                    .map_err(crate::RepoError::store(format!("cannot read the locks of {key}")))?;
                if let Some(r) = r.filter(|r| r.mode == coffer_store::RetentionMode::Compliance && r.until > self.now) {
                    self.seen.insert(k, r.until.as_second());
                }
                Ok(r.map(|r| r.until))
            }
            // Several versions (a rogue writer's on top): the authentic one decides.
            _ => authentic_lock(self.repo, key, id),
        }
    }

    /// Keeps this verify's observations for the next one (when there is a cache).
    fn keep(&self) {
        if let Some(c) = self.repo.meta_cache_handle() {
            c.keep_lock_observations(self.repo.key().keyed_hasher(Self::PURPOSE), &self.seen);
        }
    }
}

/// The lock end of the first version of `key` (a name written once, not content-addressed).
fn first_lock(repo: &Repository, key: &str) -> Result<Option<Timestamp>> {
    let versions = repo.object_versions(key)?;
    Ok(versions.iter().min_by_key(|v| v.created).and_then(|v| v.retention.map(|r| r.until)))
}

/// Walks live snapshots again to name the files that use damaged blobs.
fn name_affected(
    repo: &Repository,
    live: &[(Id, crate::Snapshot)],
    bad: &BTreeMap<Id, String>,
    rep: &mut VerifyReport,
) -> Result<()> {
    let index = repo.load_index()?;
    let mut reader = repo.reader(&index);
    let mut affected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (sid, s) in live {
        let mut stack = vec![(s.tree, String::new())];
        while let Some((t, at)) = stack.pop() {
            // A damaged tree affects its whole directory, which then cannot be listed.
            if let Some(pack) = bad.get(&t) {
                affected.entry(pack.clone()).or_default().push(format!("{}:{at}/", sid.short()));
            }
            let Ok(tree) = reader.tree(&t) else { continue };
            for n in &tree.nodes {
                let path = format!("{at}/{}", n.name);
                if let Some(sub) = n.subtree {
                    stack.push((sub, path.clone()));
                }
                for b in &n.content {
                    if let Some(pack) = bad.get(b) {
                        affected.entry(pack.clone()).or_default().push(format!("{}:{path}", sid.short()));
                    }
                }
            }
        }
    }
    for p in &mut rep.problems {
        for (pack, files) in &affected {
            if p.object.contains(pack.as_str()) {
                p.affected.clone_from(files);
                p.affected.sort();
                p.affected.dedup();
            }
        }
    }
    Ok(())
}

fn random_unit() -> f64 {
    let b: [u8; 8] = crate::crypto::random();
    #[allow(clippy::cast_precision_loss, reason = "a uniform fraction needs only 53 bits")]
    let x = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    x
}
