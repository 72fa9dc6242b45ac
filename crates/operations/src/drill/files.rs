//! The files drill (`coffer drill files`, job `SOURCE/drill`): a snapshot restored into
//! scratch space, every restored byte checked against the snapshot's content ids and every
//! metadata field against the snapshot's tree, the objects read checked to be locked until
//! the snapshot expires; RTO (start to last byte synced) and throughput measured.
//!
//! Checks, in order (each one a [`super::Check`]): `restore` (the restore's own warnings,
//! damaged ranges and refused entries), `content` and `metadata`
//! ([`coffer_sources::files::check_restored`]), `locks`
//! ([`coffer_repository::snapshot_locks`]); `rto` is added by [`DrillReport::finish`] when a
//! target is set. The RTO is measured from the drill's start (before the snapshot is chosen)
//! to the restore's return, which is after its last `syncfs`: the files are on disk. The
//! checks come after and are not part of it.
//!
//! Invariants guarded here: the drill only reads the repository; it restores only into an
//! empty (or new) scratch directory, and removes what it restored there whatever happened
//! (an error, a cancellation, a panic) unless asked to keep it.

use super::{CheckOutcome, DrillError, DrillKind, DrillReport, Restored};
use coffer_repository::{Id, JobControl, RepoError, Repository, Snapshot};
use coffer_sources::files::{self, FilesError, RestoreOptions};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which snapshot a drill restores.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// The newest (of the source's paths).
    #[default]
    Latest,
    /// One at random among the live ones (of the source's paths).
    Random,
    /// This one (an id or unique prefix).
    Id(String),
}

/// What a files drill does.
#[derive(Clone, Debug)]
pub struct FilesDrillOptions {
    /// The job (`SOURCE/drill`, or `manual`).
    pub job: String,
    /// The source's name, if the drill is for one.
    pub source: Option<String>,
    /// The repository's name (or location), for the report.
    pub repository: String,
    /// The host, for the report.
    pub host: String,
    /// Which snapshot.
    pub snapshot: Pick,
    /// Only snapshots of exactly these paths (a files source's); empty: any snapshot.
    pub paths: Vec<String>,
    /// Restore and check only this many files, chosen at random (none: all).
    pub sample: Option<usize>,
    /// The scratch directory (created; must be empty if it exists; removed after).
    pub scratch: PathBuf,
    /// The RTO target.
    pub rto_target: Option<Duration>,
    /// Leave the restored files in place (for inspection).
    pub keep: bool,
}

/// Runs a files drill as the reader of `repo`.
///
/// # Errors
/// [`DrillError`] when the drill could not run at all (no such snapshot, scratch not
/// empty); a drill that ran and failed a check is `Ok` with `passed: false`.
pub fn drill(repo: &Repository, opts: &FilesDrillOptions, ctl: &JobControl) -> Result<DrillReport, DrillError> {
    let t0 = Instant::now();
    let started = repo.clock().now();
    if opts.sample == Some(0) {
        return Err(DrillError::Invalid("--sample must be at least 1 (files to restore and check)".into()));
    }
    let scratch = Scratch::claim(&opts.scratch, opts.keep)?;
    ctl.check().map_err(cancelled)?;
    let mut report = DrillReport::new(DrillKind::Files, &opts.job, &opts.repository, &opts.host, started);
    report.rto_target_seconds = opts.rto_target.map(|d| d.as_secs_f64());
    let (id, snap) = pick(repo, opts)?;
    tracing::debug!(snapshot = %id.short(), scratch = %opts.scratch.display(), "files drill: restoring");
    let index = repo.load_index().map_err(cancelled)?;
    let sample = match opts.sample {
        Some(n) => Some(sample(repo, &index, &snap, n, ctl)?),
        None => None,
    };
    let restore_opts = RestoreOptions {
        target: opts.scratch.clone(),
        include: Vec::new(),
        exact: sample.clone(),
        read_ahead: files::read_ahead_for(repo.store().capabilities()),
    };
    let restored = files::restore(repo, &snap, &restore_opts, ctl);
    // The restore returns after its last syncfs: the last byte is on disk.
    let rto = t0.elapsed().as_secs_f64();
    let mut entry = Restored {
        source: opts.source.clone(),
        kind: DrillKind::Files,
        snapshot: Some(id.to_string()),
        snapshot_time: Some(snap.time),
        target: None,
        data_time: None,
        files: 0,
        bytes: 0,
        rto_seconds: rto,
        rto_target_seconds: report.rto_target_seconds,
    };
    report.data_age_seconds = Some(started.duration_since(snap.time).as_secs_f64());
    let src = opts.source.as_deref();
    match restored {
        Err(e) if is_cancelled(&e) => return Err(DrillError::Cancelled),
        Err(e) => {
            let line = coffer_store::display_chain(&e);
            report.error = Some(format!("restore of snapshot {} failed: {line}", id.short()));
            report.check("restore", src, CheckOutcome::Failed, line);
            for name in ["content", "metadata", "locks"] {
                report.check(name, src, CheckOutcome::Skipped, "not run: the restore failed");
            }
            report.restored.push(entry);
        }
        Ok(r) => {
            entry.files = r.files;
            entry.bytes = r.bytes;
            report.rto_seconds = Some(rto);
            report.throughput = (rto > 0.0).then(|| r.bytes as f64 / rto);
            report.restored.push(entry);
            restore_check(&mut report, src, &r);
            checks(repo, &index, &id, &snap, opts, sample.as_ref(), &mut report, ctl)?;
        }
    }
    scratch.remove()?;
    report.finish(repo.clock().now());
    tracing::debug!(
        snapshot = %id.short(),
        passed = report.passed,
        rto_seconds = report.rto_seconds,
        "files drill: done"
    );
    Ok(report)
}

/// The `content`, `metadata` and `locks` checks of a finished restore.
#[allow(clippy::too_many_arguments, reason = "one call site; the drill's state, passed on")]
fn checks(
    repo: &Repository,
    index: &coffer_repository::Index,
    id: &Id,
    snap: &Snapshot,
    opts: &FilesDrillOptions,
    sample: Option<&BTreeSet<PathBuf>>,
    report: &mut DrillReport,
    ctl: &JobControl,
) -> Result<(), DrillError> {
    let src = opts.source.as_deref();
    let found = match files::check_restored(repo, index, snap, &opts.scratch, sample, ctl) {
        Ok(f) => f,
        Err(e) if is_cancelled(&e) => return Err(DrillError::Cancelled),
        Err(e) => {
            let line = coffer_store::display_chain(&e);
            for name in ["content", "metadata"] {
                report.check(name, src, CheckOutcome::Failed, format!("could not check: {line}"));
            }
            report.check("locks", src, CheckOutcome::Skipped, "not run: the restore could not be checked");
            return Ok(());
        }
    };
    if found.content_problems == 0 {
        let detail =
            format!("{} files, {} bytes re-read from disk match the snapshot's content ids", found.files, found.bytes);
        report.check("content", src, CheckOutcome::Passed, detail);
    } else {
        report.check("content", src, CheckOutcome::Failed, first_few(found.content_problems, &found.content));
    }
    if found.metadata_problems == 0 {
        let sockets =
            if found.sockets > 0 { format!(" ({} sockets not recreated)", found.sockets) } else { String::new() };
        let detail = format!("{} entries match the snapshot's metadata{sockets}", found.entries);
        report.check("metadata", src, CheckOutcome::Passed, detail);
    } else {
        report.check("metadata", src, CheckOutcome::Failed, first_few(found.metadata_problems, &found.metadata));
    }
    let read: Vec<Id> = found.trees.iter().chain(&found.blobs).copied().collect();
    match coffer_repository::snapshot_locks(repo, index, id, snap, &read, ctl) {
        Ok(l) if l.problems.is_empty() => report.check(
            "locks",
            src,
            CheckOutcome::Passed,
            format!(
                "{} objects ({} packs) locked at least until the snapshot expires ({})",
                l.objects, l.packs, snap.expires
            ),
        ),
        Ok(l) => {
            let lines: Vec<String> = l.problems.iter().map(|p| format!("{}: {}", p.object, p.message)).collect();
            report.check("locks", src, CheckOutcome::Failed, first_few(lines.len() as u64, &lines));
        }
        Err(RepoError::Cancelled) => return Err(DrillError::Cancelled),
        Err(e) => report.check(
            "locks",
            src,
            CheckOutcome::Failed,
            format!("could not check: {}", coffer_store::display_chain(&e)),
        ),
    }
    Ok(())
}

/// A restore warns that a socket is not recreated (sockets belong to running programs): no
/// restore can, so it fails no drill (the `metadata` check counts them).
const SOCKET_WARNING: &str = "not recreated (sockets belong to running programs)";

/// The `restore` check: what the restore itself could not reproduce.
fn restore_check(report: &mut DrillReport, src: Option<&str>, r: &files::RestoreReport) {
    let warnings: Vec<&String> = r.warnings.iter().filter(|w| !w.ends_with(SOCKET_WARNING)).collect();
    let mut lines: Vec<String> = Vec::new();
    lines.extend(r.damaged.iter().map(|d| format!("damaged: {d}")));
    lines.extend(r.refused.iter().map(|d| format!("refused: {d}")));
    lines.extend(warnings.iter().map(|w| format!("warning: {w}")));
    if lines.is_empty() {
        let detail =
            format!("{} files, {} directories, {} other entries, {} bytes", r.files, r.dirs, r.others, r.bytes);
        report.check("restore", src, CheckOutcome::Passed, detail);
    } else {
        report.check("restore", src, CheckOutcome::Failed, first_few(lines.len() as u64, &lines));
    }
}

/// One line: how many problems, and the first three.
fn first_few(count: u64, lines: &[String]) -> String {
    const SHOWN: usize = 3;
    let shown: Vec<&str> = lines.iter().take(SHOWN).map(String::as_str).collect();
    let more = count.saturating_sub(shown.len() as u64);
    let tail = if more > 0 { format!("; and {more} more") } else { String::new() };
    let one = format!("{count} problem{}: {}{tail}", if count == 1 { "" } else { "s" }, shown.join("; "));
    one.replace(['\r', '\n'], " ")
}

/// The snapshot the drill restores: among the live files snapshots (of `opts.paths` when
/// given), the newest, one at random, or the one named.
fn pick(repo: &Repository, opts: &FilesDrillOptions) -> Result<(Id, Snapshot), DrillError> {
    let of_paths = |s: &Snapshot| opts.paths.is_empty() || s.paths == opts.paths;
    let which = if opts.paths.is_empty() { String::new() } else { format!(" of {}", opts.paths.join(", ")) };
    if let Pick::Id(name) = &opts.snapshot {
        if name == "latest" || name == "random" {
            let again = FilesDrillOptions {
                snapshot: if name == "latest" { Pick::Latest } else { Pick::Random },
                ..opts.clone()
            };
            return pick(repo, &again);
        }
        let (id, snap) = repo.find_snapshot(name).map_err(|e| match e {
            RepoError::Invalid(m) => DrillError::Invalid(m),
            e => DrillError::Repo(e),
        })?;
        if !is_files(&snap) {
            return Err(DrillError::Invalid(format!(
                "snapshot {} is a {} snapshot, not a files snapshot: drill it with `coffer drill pg`",
                id.short(),
                snap.kind
            )));
        }
        if !of_paths(&snap) {
            return Err(DrillError::Invalid(format!(
                "snapshot {} is of {}, not of the source's paths{which}",
                id.short(),
                snap.paths.join(", ")
            )));
        }
        return Ok((id, snap));
    }
    let live: Vec<(Id, Snapshot)> = repo.snapshots()?.into_iter().filter(|(_, s)| is_files(s) && of_paths(s)).collect();
    if live.is_empty() {
        return Err(DrillError::Invalid(format!("no live files snapshot{which} in {}", repo.location())));
    }
    let i = match opts.snapshot {
        Pick::Random => random_below(live.len()),
        _ => live.len() - 1,
    };
    Ok(live.into_iter().nth(i).expect("an index below the length"))
}

/// A files snapshot (not a PostgreSQL base backup, nor a later kind).
fn is_files(s: &Snapshot) -> bool {
    s.kind == "files" && s.pg.is_none()
}

/// `n` distinct regular files of the snapshot chosen at random (all of them if it has
/// fewer), as absolute snapshot paths. Entries a restore refuses are never chosen.
///
/// Distinct by `(device, inode)`: the names of one hard-linked file are one file (one
/// content, one inode on disk), so a sample of N files restores and checks N files, as its
/// report says, and each file is as likely to be drawn as any other however many names it
/// has. Its first name in the walk stands for it. The test is the restore's own (`links >
/// 1` and the same `(device, inode)`): names a restore would link are one file here, names
/// it would restore apart (a forged `links` of 1) are apart here too.
fn sample(
    repo: &Repository,
    index: &coffer_repository::Index,
    snap: &Snapshot,
    n: usize,
    ctl: &JobControl,
) -> Result<BTreeSet<PathBuf>, DrillError> {
    let mut reader = repo.reader(index);
    let mut all: Vec<PathBuf> = Vec::new();
    // Hard-linked files already listed (by their first name); at most one entry per listed path.
    let mut linked: HashSet<(u64, u64)> = HashSet::new();
    let walked = files::walk::walk_checked(&mut reader, &snap.tree, &mut |p, node, refused| {
        if refused.is_none() && node.kind == coffer_repository::NodeKind::File {
            ctl.check()?;
            if node.links > 1 && !linked.insert((node.device, node.inode)) {
                return Ok(());
            }
            all.push(p.to_path_buf());
        }
        Ok(())
    });
    match walked {
        Ok(()) => {}
        Err(RepoError::Cancelled) => return Err(DrillError::Cancelled),
        // A damaged tree: the sample comes from what can be listed; the restore reports it.
        Err(e) if e.is_data_loss() => {
            tracing::warn!(error = %coffer_store::display_chain(&e), "files drill: listing the sample")
        }
        Err(e) => return Err(e.into()),
    }
    // A partial Fisher–Yates shuffle: the first `n` are a uniform sample.
    let n = n.min(all.len());
    for i in 0..n {
        let j = i + random_below(all.len() - i);
        all.swap(i, j);
    }
    all.truncate(n);
    Ok(all.into_iter().collect())
}

/// A uniform random number below `n` (> 0).
fn random_below(n: usize) -> usize {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source");
    // The modulo bias over 2^64 is negligible for any count of snapshots or files.
    usize::try_from(u64::from_le_bytes(b) % n as u64).unwrap_or(0)
}

fn is_cancelled(e: &FilesError) -> bool {
    matches!(e, FilesError::Repo(RepoError::Cancelled))
}

fn cancelled(e: RepoError) -> DrillError {
    match e {
        RepoError::Cancelled => DrillError::Cancelled,
        e => DrillError::Repo(e),
    }
}

/// The scratch directory: claimed empty (or created), and removed at the end, or on any
/// early return, unless kept. A directory that existed is emptied and left; one the drill
/// created is removed.
struct Scratch {
    path: PathBuf,
    existed: bool,
    keep: bool,
    done: bool,
}

impl Scratch {
    fn claim(path: &Path, keep: bool) -> Result<Self, DrillError> {
        if !path.is_absolute() {
            return Err(DrillError::Invalid(format!(
                "the scratch directory must be an absolute path, not {:?}",
                path.display().to_string()
            )));
        }
        let existed = match std::fs::symlink_metadata(path) {
            Ok(md) if md.is_dir() => {
                let mut rd = std::fs::read_dir(path)
                    .map_err(|source| DrillError::Io { what: format!("cannot read {}", path.display()), source })?;
                if rd.next().is_some() {
                    return Err(DrillError::Invalid(format!(
                        "scratch directory {} is not empty: a drill restores only into a new or empty directory",
                        path.display()
                    )));
                }
                true
            }
            Ok(_) => {
                return Err(DrillError::Invalid(format!(
                    "scratch directory {} exists and is not a directory",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(source) => return Err(DrillError::Io { what: format!("cannot read {}", path.display()), source }),
        };
        Ok(Self { path: path.to_path_buf(), existed, keep, done: false })
    }

    /// Removes what the drill put there.
    fn remove(mut self) -> Result<(), DrillError> {
        self.done = true;
        self.clean().map_err(|source| DrillError::Io {
            what: format!("cannot remove the scratch space {}", self.path.display()),
            source,
        })
    }

    fn clean(&self) -> std::io::Result<()> {
        if self.keep {
            return Ok(());
        }
        // The restore leaves read-only directories (their snapshot mode) that root can
        // still empty; removal does not follow symlinks.
        if !self.existed {
            return match std::fs::remove_dir_all(&self.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
        }
        for e in std::fs::read_dir(&self.path)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                std::fs::remove_dir_all(e.path())?;
            } else {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.clean() {
                tracing::warn!(scratch = %self.path.display(), error = %e, "files drill: cannot remove the scratch space");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_repository::{Cancel, Event, NewSnapshot, Observer};
    use coffer_store::Clock;
    use std::sync::Arc;

    fn repo(tmp: &Path) -> Repository {
        crate::test_util::vault_repo(tmp, &Clock::system()).0
    }

    fn options(scratch: PathBuf) -> FilesDrillOptions {
        FilesDrillOptions {
            job: "manual".into(),
            source: None,
            repository: "t".into(),
            host: "h".into(),
            snapshot: Pick::Latest,
            paths: Vec::new(),
            sample: None,
            scratch,
            rto_target: None,
            keep: false,
        }
    }

    /// Cancels its job at the first piece of content written.
    struct CancelOnWrite(Cancel);

    impl Observer for CancelOnWrite {
        fn event(&self, e: &Event<'_>) {
            if matches!(e, Event::Advance(_)) {
                self.0.cancel();
            }
        }
    }

    /// A sample is of distinct files: the names of one hard-linked file count once, so a
    /// sample of N restores and checks N files. Deterministic whatever the draws: one file
    /// under three names samples to one path; three files under 3, 2 and 1 names sample to
    /// one name of each (a sample of names would take two names of one file in 70% of draws).
    #[test]
    fn drill_files_sample_takes_each_hard_linked_file_once() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let ctl = JobControl::none();
        let backup = |src: &Path| {
            let opts = files::BackupOptions { paths: vec![src.to_path_buf()], host: "h".into(), ..Default::default() };
            let id = files::backup(&repo, &opts, &ctl).unwrap().snapshot;
            repo.find_snapshot(&id.to_string()).unwrap().1
        };
        let inode = |p: &PathBuf| std::fs::metadata(p).unwrap().ino();

        let one = tmp.path().join("one");
        std::fs::create_dir_all(one.join("d")).unwrap();
        std::fs::write(one.join("a"), b"the only file").unwrap();
        std::fs::hard_link(one.join("a"), one.join("b")).unwrap();
        std::fs::hard_link(one.join("a"), one.join("d/c")).unwrap();
        let snap = backup(&one);
        let index = repo.load_index().unwrap();
        for n in [1, 2, 3] {
            let s = sample(&repo, &index, &snap, n, &ctl).unwrap();
            assert_eq!(s.len(), 1, "a sample of {n}: {s:?}");
        }

        let three = tmp.path().join("three");
        std::fs::create_dir_all(three.join("d/e")).unwrap();
        std::fs::write(three.join("a1"), b"a").unwrap();
        std::fs::hard_link(three.join("a1"), three.join("d/a2")).unwrap();
        std::fs::hard_link(three.join("a1"), three.join("d/e/a3")).unwrap();
        std::fs::write(three.join("d/b1"), b"b").unwrap();
        std::fs::hard_link(three.join("d/b1"), three.join("d/e/b2")).unwrap();
        std::fs::write(three.join("d/e/c"), b"c").unwrap();
        let snap = backup(&three);
        let index = repo.load_index().unwrap();
        let files: BTreeSet<u64> = ["a1", "d/b1", "d/e/c"].iter().map(|p| inode(&three.join(p))).collect();
        for _ in 0..20 {
            for n in [2, 3, 4] {
                let s = sample(&repo, &index, &snap, n, &ctl).unwrap();
                let drawn: BTreeSet<u64> = s.iter().map(inode).collect();
                assert_eq!((s.len(), drawn.len()), (n.min(3), n.min(3)), "a sample of {n}: {s:?}");
                assert!(drawn.is_subset(&files), "{s:?}");
            }
        }

        // The drill's report counts the files it sampled.
        let scratch = tmp.path().join("scratch");
        let opts =
            FilesDrillOptions { sample: Some(3), paths: vec![three.display().to_string()], ..options(scratch.clone()) };
        let report = drill(&repo, &opts, &ctl).unwrap();
        assert!(report.passed, "{:?}", report.failures());
        assert_eq!(report.restored[0].files, 3);
        assert!(!scratch.exists());
    }

    /// A PostgreSQL base backup is never drilled as files, a cancelled drill is an error
    /// (no report) and leaves nothing in its scratch space, and a drill of the source's
    /// paths only picks their snapshots.
    #[test]
    fn drill_files_picks_files_snapshots_and_cleans_up_when_cancelled() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let scratch = tmp.path().join("scratch");
        // Only a base-backup-like snapshot: nothing to drill.
        let mut w = repo.writer(repo.clock().now() + jiff::SignedDuration::from_hours(48)).unwrap();
        let tree =
            w.add(coffer_repository::BlobKind::Tree, &coffer_repository::Tree { nodes: vec![] }.to_bytes()).unwrap();
        let pg = w
            .commit(NewSnapshot {
                kind: "pg-base".into(),
                time: repo.clock().now(),
                host: "h".into(),
                paths: vec!["pg:1".into()],
                tags: vec![],
                tree,
                parent: None,
                pg: None,
            })
            .unwrap();
        let e = drill(&repo, &options(scratch.clone()), &JobControl::none()).unwrap_err().to_string();
        assert!(e.starts_with("no live files snapshot in "), "{e}");
        let by_id = FilesDrillOptions { snapshot: Pick::Id(pg.to_string()), ..options(scratch.clone()) };
        let e = drill(&repo, &by_id, &JobControl::none()).unwrap_err().to_string();
        assert!(e.contains("is a pg-base snapshot, not a files snapshot"), "{e}");

        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        for i in 0..50 {
            std::fs::write(src.join(format!("d/f{i}")), vec![i as u8 + 1; 100_000]).unwrap();
        }
        let backed = files::backup(
            &repo,
            &files::BackupOptions { paths: vec![src.clone()], host: "h".into(), ..Default::default() },
            &JobControl::none(),
        )
        .unwrap();
        let other = FilesDrillOptions { paths: vec!["/elsewhere".into()], ..options(scratch.clone()) };
        let e = drill(&repo, &other, &JobControl::none()).unwrap_err().to_string();
        assert!(e.starts_with("no live files snapshot of /elsewhere in "), "{e}");

        let mine = FilesDrillOptions { paths: vec![src.display().to_string()], ..options(scratch.clone()) };
        let report = drill(&repo, &mine, &JobControl::none()).unwrap();
        assert!(report.passed, "{:?}", report.failures());
        assert_eq!(report.restored[0].snapshot.as_deref(), Some(backed.snapshot.to_string().as_str()));
        assert_eq!(report.restored[0].files, 50);
        assert!(!scratch.exists());

        let cancel = Cancel::new();
        let ctl = JobControl { observer: Arc::new(CancelOnWrite(cancel.clone())), cancel };
        let e = drill(&repo, &mine, &ctl).unwrap_err();
        assert!(matches!(e, DrillError::Cancelled), "{e}");
        assert!(!scratch.exists(), "a cancelled drill removes its partial restore");
    }
}
