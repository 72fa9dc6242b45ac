//! `coffer backup` and `coffer restore`.

use super::{RepoOpts, host, open_or_init_default, open_repo};
use crate::Global;
use crate::output::Output;
use anyhow::{Context as _, Result};
use clap::Args;
use coffer_repository::{KeepRules, Repository};
use coffer_sources::files::{self, BackupOptions, RestoreOptions};
use coffer_store::Role;
use std::path::PathBuf;
use std::time::Duration;

/// `coffer backup PATH…`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Exclude entries matching this glob (with a `/`: the absolute path; without: the name)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read exclude globs from this file, one per line (`#` starts a comment)
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Do not cross into other filesystems
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Tag the snapshot (repeatable)
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Host name to record [default: this machine's]
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Keep the snapshot at least this long [default: the repository's default]
    #[arg(long, value_parser = crate::parse::duration, value_name = "DURATION")]
    pub retain: Option<Duration>,
    /// Keep every snapshot at least this long
    #[arg(long, value_parser = crate::parse::duration, value_name = "DURATION")]
    pub keep_within: Option<Duration>,
    /// Keep the first snapshot of each day for N days
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u32,
    /// Keep the first snapshot of each week for N weeks
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u32,
    /// Keep the first snapshot of each month for N months
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u32,
}

/// A backup that wrote its snapshot but could not read everything (exit code 7).
#[derive(Debug)]
pub struct Incomplete(pub String);

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Incomplete {}

/// Runs `coffer backup`.
pub fn backup(global: &Global, r: &RepoOpts, args: &BackupArgs) -> Result<()> {
    // First: a signal from here on cancels the backup (it checks before its first entry).
    let job = crate::progress::for_terminal(global.json);
    let mut excludes = args.exclude.clone();
    for f in &args.exclude_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read exclude file {}", f.display()))?;
        excludes
            .extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned));
    }
    let repo = open_or_init_default(global, r)?;
    let host = args.host.clone().unwrap_or_else(host);
    let rules = KeepRules {
        retain: args.retain,
        within: args.keep_within,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
    };
    let expires = expiry(&repo, &rules, &host, &args.paths)?;
    let opts = BackupOptions {
        paths: args.paths.clone(),
        excludes,
        one_file_system: args.one_file_system,
        tags: args.tag.clone(),
        host,
        expires: Some(expires),
        parent: None,
    };
    let report = crate::error::on_cancel(files::backup(&repo, &opts, &job), || {
        "backup stopped on request; no snapshot was written (the next backup reuses the data it stored)".into()
    })?;
    job.finish();
    for w in &report.warnings {
        eprintln!("coffer: warning: {w}");
    }
    let s = &report.info.summary;
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(&serde_json::json!({
            "snapshot": report.snapshot.to_string(),
            "expires": report.info.expires,
            "retain-until": report.info.retain_until,
            "summary": s,
            "warnings": report.warnings,
        }))?;
    } else {
        if s.packs_recovered > 0 {
            out.line(format!(
                "reused {} packs an earlier backup stored but did not finish indexing",
                s.packs_recovered
            ))?;
        }
        out.line(format!(
            "snapshot {} saved: {} files, {} dirs, {} read, {} added ({} stored), {} locks extended; kept until {}",
            report.snapshot.short(),
            s.files,
            s.dirs,
            bytes(s.bytes),
            bytes(s.bytes_added),
            bytes(s.bytes_stored),
            s.locks_extended,
            report.info.expires
        ))?;
    }
    out.finish()?;
    if s.errors > 0 {
        return Err(Incomplete(format!(
            "backup incomplete: {} entries could not be read (snapshot {} holds the rest)",
            s.errors,
            report.snapshot.short()
        ))
        .into());
    }
    Ok(())
}

fn expiry(repo: &Repository, rules: &KeepRules, host: &str, paths: &[PathBuf]) -> Result<jiff::Timestamp> {
    let abs: Vec<String> =
        paths.iter().filter_map(|p| std::path::absolute(p).ok()).map(|p| p.display().to_string()).collect();
    let snaps = repo.snapshots()?;
    let series: Vec<_> = snaps.iter().map(|(_, s)| s).filter(|s| s.host == host && s.paths == abs).collect();
    Ok(rules.expiry(repo.clock().now(), &series, &repo.config().retention)?)
}

/// `1.5 GiB` style.
pub fn bytes(n: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let f = n as f64;
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", f / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", f / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", f / 1024.0),
        n => format!("{n} B"),
    }
}

/// `coffer restore SNAP --target DIR`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id (a unique prefix) or `latest`
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// Directory to restore into (created; must be empty)
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only paths matching this glob (absolute snapshot paths), and all below
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
}

/// Runs `coffer restore`.
pub fn restore(global: &Global, r: &RepoOpts, args: &RestoreArgs) -> Result<()> {
    let job = crate::progress::for_terminal(global.json);
    let repo = open_repo(global, r, Role::Reader)?;
    let (id, snap) = repo.find_snapshot(&args.snapshot)?;
    let opts = RestoreOptions {
        target: args.target.clone(),
        include: args.include.clone(),
        // A remote store's latency is hidden by fetching packs ahead; a local vault's
        // reads are fast enough that the memory is better saved.
        read_ahead: if crate::s3::is_s3(repo.location()) { files::REMOTE_READ_AHEAD } else { 0 },
    };
    let report = crate::error::on_cancel(files::restore(&repo, &snap, &opts, &job), || {
        format!("restore stopped on request; {} holds a partial restore: remove it", args.target.display())
    })?;
    job.finish();
    for w in &report.warnings {
        eprintln!("coffer: warning: {w}");
    }
    for d in &report.damaged {
        eprintln!("coffer: damaged: {d}");
    }
    for r in &report.refused {
        eprintln!("coffer: refused: {r}");
    }
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(&serde_json::json!({
            "snapshot": id.to_string(),
            "target": args.target.to_string_lossy(),
            "files": report.files,
            "dirs": report.dirs,
            "others": report.others,
            "bytes": report.bytes,
            "warnings": report.warnings,
            "damaged": report.damaged,
            "refused": report.refused,
        }))?;
    } else {
        out.line(format!(
            "restored snapshot {} to {}: {} files, {} dirs, {} other entries, {}",
            id.short(),
            args.target.display(),
            report.files,
            report.dirs,
            report.others,
            bytes(report.bytes)
        ))?;
    }
    out.finish()?;
    if !report.refused.is_empty() {
        // A forged snapshot: what it tried is named above; the rest is restored.
        return Err(crate::error::IntegrityError(format!(
            "restore of snapshot {} refused {} hostile entries (listed above) that could write outside {}; \
             everything else is restored{}",
            id.short(),
            report.refused.len(),
            args.target.display(),
            if report.damaged.is_empty() {
                String::new()
            } else {
                format!(" but {} pieces of damaged data", report.damaged.len())
            }
        ))
        .into());
    }
    if !report.damaged.is_empty() {
        // Everything readable was restored; the exit code says that not everything was.
        return Err(crate::error::IntegrityError(format!(
            "restore of snapshot {} is incomplete: {} damaged or missing pieces of repository data (listed above); \
             run `coffer verify --read-data` for the whole picture",
            id.short(),
            report.damaged.len()
        ))
        .into());
    }
    Ok(())
}
