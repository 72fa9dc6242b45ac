//! `coffer drill files`: restores a files snapshot (or a random sample of its files) into
//! scratch space, checks every byte, every metadata field and the locks, times it, removes
//! it (`coffer_operations::drill::files`, `docs/drills.md`).
//!
//! Without `--source` the repository is the one `coffer restore` opens (`--repo`, the
//! password, as the reader) and any files snapshot may be drilled; with `--source NAME` the
//! repository, the source's paths and its `[files.NAME.drill]` settings come from the
//! policy file, the flags overriding them. Exit 0 when the drill passed, 10 when it ran and
//! did not pass (after printing its report), and the usual codes when it could not run.

use crate::Global;
use crate::error::{NotProven, UsageError};
use crate::output::Output;
use anyhow::Result;
use clap::Args;
use coffer_operations::config::SnapshotPick;
use coffer_operations::drill::files::{FilesDrillOptions, Pick};
use coffer_operations::drill::{CheckOutcome, DrillReport};
use coffer_store::{Clock, Role};
use std::path::PathBuf;
use std::time::Duration;

/// `coffer drill files`.
#[derive(Debug, Args)]
pub struct DrillFilesArgs {
    /// Which snapshot: `latest`, `random` (one of the live files snapshots), or an id
    /// (a unique prefix) [default: the source's setting, else latest]
    #[arg(long, value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// Restore and check only N regular files, chosen at random [default: all]
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// Restore into DIR (absolute; created if missing, must be empty; removed after unless
    /// --keep) [default: a fresh directory under the system's temporary directory]
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// A drill whose recovery (start to the last byte on disk) takes longer fails
    #[arg(long, value_name = "DURATION", value_parser = crate::parse::duration)]
    rto_target: Option<Duration>,
    /// Leave the restored files in the scratch directory, for inspection
    #[arg(long)]
    keep: bool,
    /// Drill this files source of the policy file: its repository, paths and drill settings
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
}

/// Runs `coffer drill files`.
///
/// # Errors
/// A drill that could not run (its error's class decides the exit code), or one that did
/// not pass ([`NotProven`], exit 10, after its report is printed).
pub fn run(global: &Global, args: &DrillFilesArgs) -> Result<()> {
    // First: a signal from here on cancels the drill.
    let job = crate::progress::for_terminal(global.json);
    if args.sample == Some(0) {
        return Err(UsageError("--sample must be at least 1 (files to restore and check)".into()).into());
    }
    if let Some(s) = args.scratch.as_ref().filter(|s| !s.is_absolute()) {
        return Err(UsageError(format!("--scratch must be an absolute path, not {:?}", s.display().to_string())).into());
    }
    if args.rto_target == Some(Duration::ZERO) {
        return Err(UsageError("--rto-target must be longer than zero".into()).into());
    }
    let host = coffer_operations::security::record::host_name();
    let (repo, mut opts) = match &args.source {
        None => {
            let repo = crate::repo::open_repo(global, &global.repo, Role::Reader)?;
            let opts = FilesDrillOptions {
                job: "manual".into(),
                source: None,
                repository: repo.location().to_owned(),
                host,
                snapshot: Pick::Latest,
                paths: Vec::new(),
                sample: None,
                scratch: PathBuf::new(),
                rto_target: None,
                keep: false,
            };
            (repo, opts)
        }
        Some(name) => {
            if global.repo.as_of.is_some() {
                return Err(UsageError(
                    "--as-of needs --repo (a source's repository is opened as it is now); drop --source or --as-of"
                        .into(),
                )
                .into());
            }
            let config = super::load_config(global)?;
            let Some(src) = config.files.get(name) else {
                let names: Vec<&str> = config.files.keys().map(String::as_str).collect();
                return Err(UsageError(format!(
                    "no files source {name:?} in {}; its files sources: {}",
                    super::config_path(global).display(),
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                ))
                .into());
            };
            let repo =
                coffer_operations::open::open_repository(&config, &src.repository, Role::Reader, Clock::from_env())?;
            let drill = src.drill.clone();
            let opts = FilesDrillOptions {
                job: "manual".into(),
                source: Some(name.clone()),
                repository: src.repository.clone(),
                host: config.daemon.host.clone().unwrap_or(host),
                snapshot: match drill.as_ref().map(|d| d.snapshot) {
                    Some(SnapshotPick::Random) => Pick::Random,
                    _ => Pick::Latest,
                },
                paths: src.paths.iter().map(|p| p.display().to_string()).collect(),
                sample: drill.as_ref().and_then(|d| d.sample),
                scratch: drill.as_ref().and_then(|d| d.scratch.clone()).unwrap_or_default(),
                rto_target: drill.as_ref().and_then(|d| d.rto_target),
                keep: false,
            };
            (repo, opts)
        }
    };
    if let Some(s) = &args.snapshot {
        opts.snapshot = match s.as_str() {
            "latest" => Pick::Latest,
            "random" => Pick::Random,
            id => Pick::Id(id.to_owned()),
        };
    }
    if args.sample.is_some() {
        opts.sample = args.sample;
    }
    if args.rto_target.is_some() {
        opts.rto_target = args.rto_target;
    }
    opts.keep = args.keep;
    if let Some(s) = &args.scratch {
        opts.scratch.clone_from(s);
    }
    if opts.scratch.as_os_str().is_empty() {
        // A fresh name the drill creates and removes.
        opts.scratch = std::env::temp_dir().join(format!("coffer-drill-{}", coffer_operations::event::random_id()));
    }
    let report = crate::error::on_cancel(coffer_operations::drill::files::drill(&repo, &opts, &job), || {
        if opts.keep {
            format!("drill stopped on request; {} holds a partial restore: remove it", opts.scratch.display())
        } else {
            "drill stopped on request; its scratch space was removed".to_owned()
        }
    })?;
    job.finish();
    print(global, &report, &opts)?;
    super::drill::record_report(global, args.source.is_some().then_some(opts.repository.as_str()), &report)?;
    if !report.passed {
        let first = report.failures().into_iter().next().or_else(|| report.error.clone()).unwrap_or_default();
        return Err(NotProven(format!("the files drill did not pass: {first}")).into());
    }
    Ok(())
}

/// The report: the JSON document, or one line per check and a summary.
fn print(global: &Global, report: &DrillReport, opts: &FilesDrillOptions) -> Result<()> {
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(report)?;
        return out.finish();
    }
    for c in &report.checks {
        let outcome = match c.outcome {
            CheckOutcome::Passed => "passed",
            CheckOutcome::Failed => "FAILED",
            CheckOutcome::Skipped => "skipped",
        };
        out.line(format!("{outcome:<7}  {}: {}", c.name, c.detail))?;
    }
    let restored = report.restored.first();
    let snapshot = restored.and_then(|r| r.snapshot.as_deref()).map_or("?", |s| s.get(..8).unwrap_or(s));
    let (files, bytes) = restored.map_or((0, 0), |r| (r.files, r.bytes));
    let rto = report.rto_seconds.map_or_else(|| "none (not restored)".to_owned(), |s| format!("{s:.2}s"));
    let target = report.rto_target_seconds.map(|t| format!(" (target {t}s)")).unwrap_or_default();
    let speed = report.throughput.map(|t| format!(", {}/s", crate::repo::backup::bytes(t as u64))).unwrap_or_default();
    let kept = if opts.keep { format!("; kept in {}", opts.scratch.display()) } else { String::new() };
    out.line(format!(
        "files drill {}: snapshot {snapshot}, {files} files, {}, RTO {rto}{target}{speed}: {}{kept}",
        report.id,
        crate::repo::backup::bytes(bytes),
        if report.passed { "passed" } else { "FAILED" }
    ))?;
    out.finish()
}
