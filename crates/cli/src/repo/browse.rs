//! `coffer snapshots`, `ls`, `diff`, `dump`, `stats`: looking into a repository.

use super::backup::bytes;
use super::{RepoOpts, open_repo};
use crate::Global;
use crate::output::Output;
use crate::views;
use anyhow::{Result, bail};
use clap::Args;
use coffer_repository::{Node, NodeKind};
use coffer_sources::files::walk;
use coffer_store::Role;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs `coffer snapshots`.
pub fn snapshots(global: &Global, r: &RepoOpts) -> Result<()> {
    let repo = open_repo(global, r, Role::Reader)?;
    let (all, damaged) = repo.all_snapshots_and_damage()?;
    let now = repo.clock().now();
    let snaps: Vec<_> = all.into_iter().filter(|(_, s)| s.expires > now).collect();
    let mut out = Output::new(global.json);
    if out.json() {
        let list: Vec<_> = snaps
            .iter()
            .map(|(id, s)| views::SnapshotItem { id: id.to_string(), stored: repo.stored_at(id), snapshot: s.into() })
            .collect();
        out.doc(&list)?;
    } else {
        // `time` is what the backup claims; `stored` is when the store created it, which a
        // writer cannot choose (what to pick an --as-of time by).
        let day = |t: jiff::Timestamp| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
        out.line(format!("{:<10} {:<26} {:<26} {:<26} {:<12} {}", "id", "time", "stored", "expires", "host", "paths"))?;
        for (id, s) in &snaps {
            out.line(format!(
                "{:<10} {:<26} {:<26} {:<26} {:<12} {}{}",
                id.short(),
                day(s.time),
                repo.stored_at(id).map_or_else(|| "-".to_owned(), day),
                day(s.expires),
                s.host,
                s.paths.join(" "),
                if s.tags.is_empty() { String::new() } else { format!(" [{}]", s.tags.join(",")) }
            ))?;
        }
        out.line(format!("{} snapshots", snaps.len()))?;
    }
    out.finish()?;
    // The intact ones are listed; a damaged one is an integrity error naming it.
    let mut damaged = damaged.into_iter().map(|(_, e)| e);
    if let Some(first) = damaged.next() {
        for e in damaged {
            eprintln!("coffer: warning: {}", coffer_store::display_chain(&e));
        }
        return Err(crate::error::IntegrityError(format!(
            "snapshot object cannot be read ({} listed are intact): {}",
            snaps.len(),
            coffer_store::display_chain(&first)
        ))
        .into());
    }
    Ok(())
}

/// `coffer ls SNAP [PATH]`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id prefix or `latest`
    pub snapshot: String,
    /// Only entries at or below this absolute path
    pub path: Option<PathBuf>,
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDev => 'c',
        NodeKind::BlockDev => 'b',
        NodeKind::Socket => 's',
    }
}

/// Runs `coffer ls`. An entry a restore would refuse (a forged tree) is shown under its
/// quoted, escaped name, marked `[hostile: …]` (in JSON: a `hostile` field), so `..` or a
/// name with `/` never reads as an ordinary path.
pub fn ls(global: &Global, r: &RepoOpts, args: &LsArgs) -> Result<()> {
    let repo = open_repo(global, r, Role::Reader)?;
    let (_, snap) = repo.find_snapshot(&args.snapshot)?;
    let index = repo.load_index()?;
    let mut reader = repo.reader(&index);
    let mut out = Output::new(global.json);
    let under = args.path.clone().unwrap_or_else(|| PathBuf::from("/"));
    if out.json() {
        out.begin_list(&[], "entries")?;
    }
    let mut err: Option<anyhow::Error> = None;
    walk::walk_checked(&mut reader, &snap.tree, &mut |p: &Path, n: &Node, hostile: Option<&str>| {
        if !p.starts_with(&under) || err.is_some() {
            return Ok(());
        }
        let res = if out.json() {
            out.list_item(&views::LsEntry { path: views::PathView::new(p), node: n.into(), hostile })
        } else {
            out.line(format!(
                "{}{:04o} {:>8} {:>8} {:>12} {} {}{}{}",
                kind_char(n.kind),
                n.mode,
                n.user.clone().unwrap_or_else(|| n.uid.to_string()),
                n.group.clone().unwrap_or_else(|| n.gid.to_string()),
                n.size,
                n.mtime.strftime("%Y-%m-%d %H:%M:%S"),
                p.display(),
                n.target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default(),
                hostile.map(|why| format!("  [hostile: {why}; restore refuses it]")).unwrap_or_default()
            ))
        };
        if let Err(e) = res {
            err = Some(e);
        }
        Ok(())
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    if out.json() {
        out.end_list()?;
    }
    out.finish()
}

/// `coffer diff SNAP SNAP`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot
    pub from: String,
    /// The newer snapshot
    pub to: String,
}

/// Runs `coffer diff`: `+` added, `-` removed, `M` content changed, `U` metadata only.
pub fn diff(global: &Global, r: &RepoOpts, args: &DiffArgs) -> Result<()> {
    let repo = open_repo(global, r, Role::Reader)?;
    let (_, a) = repo.find_snapshot(&args.from)?;
    let (_, b) = repo.find_snapshot(&args.to)?;
    let index = repo.load_index()?;
    let mut reader = repo.reader(&index);
    let collect = |reader: &mut coffer_repository::BlobReader<'_>, t| -> Result<BTreeMap<PathBuf, Node>> {
        let mut m = BTreeMap::new();
        walk::walk(reader, t, &mut |p: &Path, n: &Node| {
            m.insert(p.to_path_buf(), n.clone());
            Ok(())
        })?;
        Ok(m)
    };
    let left = collect(&mut reader, &a.tree)?;
    let right = collect(&mut reader, &b.tree)?;
    let mut changes = Vec::new();
    for (p, n) in &left {
        match right.get(p) {
            None => changes.push(("-", p.clone())),
            Some(m) if m.content != n.content || m.kind != n.kind || m.target_bytes() != n.target_bytes() => {
                changes.push(("M", p.clone()));
            }
            Some(m)
                if m.kind != NodeKind::Dir
                    && (m.mode != n.mode
                        || m.uid != n.uid
                        || m.gid != n.gid
                        || m.mtime != n.mtime
                        || m.xattrs != n.xattrs) =>
            {
                changes.push(("U", p.clone()));
            }
            Some(_) => {}
        }
    }
    for p in right.keys().filter(|p| !left.contains_key(*p)) {
        changes.push(("+", p.clone()));
    }
    changes.sort_by(|x, y| x.1.cmp(&y.1));
    let mut out = Output::new(global.json);
    if out.json() {
        let list: Vec<_> =
            changes.iter().map(|(c, p)| views::DiffEntry { path: views::PathView::new(p), change: c }).collect();
        out.doc(&list)?;
    } else {
        for (c, p) in &changes {
            out.line(format!("{c} {}", p.display()))?;
        }
    }
    out.finish()
}

/// `coffer dump SNAP PATH`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id prefix or `latest`
    pub snapshot: String,
    /// Absolute path of a file in the snapshot
    pub path: PathBuf,
}

/// Runs `coffer dump`: a file's content to stdout.
pub fn dump(global: &Global, r: &RepoOpts, args: &DumpArgs) -> Result<()> {
    let repo = open_repo(global, r, Role::Reader)?;
    let (id, snap) = repo.find_snapshot(&args.snapshot)?;
    let index = repo.load_index()?;
    let mut reader = repo.reader(&index);
    let path = std::path::absolute(&args.path)?;
    let Some(node) = walk::find(&mut reader, &snap.tree, &path)? else {
        bail!("{} is not in snapshot {}", path.display(), id.short());
    };
    if node.kind != NodeKind::File {
        bail!("{} in snapshot {} is not a regular file", path.display(), id.short());
    }
    let mut out = Output::new(false);
    for b in &node.content {
        out.bytes(&reader.read(b)?)?;
    }
    out.finish()
}

/// Runs `coffer stats`.
pub fn stats(global: &Global, r: &RepoOpts) -> Result<()> {
    let repo = open_repo(global, r, Role::Reader)?;
    let snaps = repo.snapshots()?;
    let index = repo.load_index()?;
    let now = repo.clock().now();
    let packs = index.packs();
    let stored: u64 = packs.iter().map(|p| p.size).sum();
    let raw: u64 = packs.iter().flat_map(|p| &p.blobs).map(|b| u64::from(b.raw_length)).sum();
    let expiring = packs.iter().filter(|p| p.retain_until <= now).count();
    if let Some((key, why)) = index.damaged().first() {
        return Err(crate::error::IntegrityError(format!(
            "{} index object(s) in {} cannot be read; first: {key}: {why} (run `coffer verify`)",
            index.damaged().len(),
            repo.location()
        ))
        .into());
    }
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(&views::Stats {
            snapshots: snaps.len(),
            packs: packs.len(),
            blobs: index.blob_count(),
            stored_bytes: stored,
            raw_bytes: raw,
            packs_expired: expiring,
        })?;
    } else {
        out.line(format!("snapshots:     {}", snaps.len()))?;
        out.line(format!("packs:         {} ({} expired, awaiting prune)", packs.len(), expiring))?;
        out.line(format!("blobs:         {}", index.blob_count()))?;
        out.line(format!("stored:        {}", bytes(stored)))?;
        out.line(format!("uncompressed:  {}", bytes(raw)))?;
    }
    out.finish()
}
