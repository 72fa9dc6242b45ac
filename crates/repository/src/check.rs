//! `verify`: prove the repository is whole, its history unbroken, and its locks sufficient.
//!
//! Checks, in order: every snapshot opens and matches its id; every live snapshot's
//! predecessor exists unless it had expired (history removed or rolled back otherwise);
//! every tree of every live snapshot opens; every blob they reference is in the index;
//! every pack, index, config and key object a live snapshot needs is locked at least until
//! that snapshot expires (the lock-coverage invariant); with read-data, every byte of the
//! chosen packs authenticates. A problem names the object and, for data, the snapshots and
//! files affected.

use crate::error::Result;
use crate::id::Id;
use crate::pack;
use crate::repo::{Repository, for_each_key};
use crate::tree::NodeKind;
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
/// Store errors that prevent checking (e.g. the store is unreachable).
pub fn verify(repo: &Repository, read: ReadData) -> Result<VerifyReport> {
    let now = repo.clock().now();
    let mut rep = VerifyReport::default();
    let problem = |rep: &mut VerifyReport, object: String, message: String| {
        rep.problems.push(Problem { object, message, affected: Vec::new() });
    };

    // Snapshots, including expired ones still present (they anchor the chain).
    let mut snaps = Vec::new();
    let mut present = HashSet::new();
    for_each_key(repo.store(), &format!("{}snapshots/", repo.prefix()), |k| {
        let Ok(id) = k.rsplit('/').next().unwrap_or("").parse::<Id>() else {
            problem(&mut rep, k, "snapshot object with a malformed name".into());
            return Ok(());
        };
        present.insert(id);
        match repo.read_snapshot(&id) {
            Ok(s) => snaps.push((id, s)),
            Err(e) => problem(&mut rep, k, coffer_store::display_chain(&e)),
        }
        Ok(())
    })?;
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
    let mut blobs: HashSet<Id> = HashSet::new();
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
                    blobs.insert(*b);
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
    rep.blobs = blobs.len();
    for b in &missing {
        problem(&mut rep, format!("blob {b}"), "data blob is in no index".into());
    }

    // Lock coverage.
    for (&pos, &(until, sid)) in &need_until {
        let p = index.pack(pos);
        let key = repo.pack_key(&p.id);
        rep.packs_locked += 1;
        match repo.store().head(&key, None) {
            Ok(h) => {
                let locked = h.retention.filter(|r| r.active_at(now)).map(|r| r.until);
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
    let max_live = live.iter().map(|(_, s)| s.expires).max();
    if let Some(until) = max_live {
        let mut meta = vec![format!("{}config", repo.prefix())];
        for_each_key(repo.store(), &format!("{}keys/", repo.prefix()), |k| {
            meta.push(k);
            Ok(())
        })?;
        for key in meta {
            match repo.store().head(&key, None) {
                Ok(h) if h.retention.is_some_and(|r| r.until >= until) => {}
                Ok(h) => problem(
                    &mut rep,
                    key,
                    format!(
                        "locked until {} but the newest snapshot needs it until {until}",
                        h.retention.map_or_else(|| "never".to_owned(), |r| r.until.to_string())
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
    for pos in chosen {
        let p = index.pack(pos);
        let key = repo.pack_key(&p.id);
        rep.packs_read += 1;
        let bytes = match repo.store().get(&key, None) {
            Ok(o) if p.id.names(&o) => o.data,
            Ok(_) => {
                for e in &p.blobs {
                    bad_blobs.insert(e.id, key.clone());
                }
                problem(&mut rep, key, "pack content does not match its name".into());
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
            if let Err(err) = pack::open_blob(repo.key(), e, sealed, &key) {
                bad_blobs.insert(e.id, key.clone());
                problem(&mut rep, format!("blob {} in {key}", e.id), coffer_store::display_chain(&err));
            }
        }
    }
    if !bad_blobs.is_empty() {
        name_affected(repo, &live, &bad_blobs, &mut rep)?;
    }
    // PostgreSQL WAL archives (`pg/`): gaps, and with --read-data every file's bytes.
    crate::wal::verify_wal(repo, !matches!(read, ReadData::None), &mut rep.problems)?;
    Ok(rep)
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
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    #[allow(clippy::cast_precision_loss, reason = "a uniform fraction needs only 53 bits")]
    let x = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    x
}
