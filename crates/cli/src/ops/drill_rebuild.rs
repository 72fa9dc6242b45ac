//! `coffer drill rebuild`: the full rebuild from nothing but the repository's location, the
//! reader's credentials and the password (`docs/drills.md`, "The full rebuild").
//!
//! Invariant guarded here: this command reads **no host state** — not `coffer.toml` (even
//! when one exists), not the daemon's state directory, no cache, nothing under `$HOME` —
//! only `--repo`/`COFFER_REPO`, `--credentials`, the password (`COFFER_PASSWORD` or
//! `--password-file`) and its own flags. What to restore comes from the policy stored in
//! the repository ([`coffer_operations::drill::policy`]).

use crate::Global;
use crate::output::Output;
use anyhow::{Context as _, Result};
use clap::Args;
use coffer_operations::drill::rebuild::{RebuildOptions, rebuild};
use coffer_operations::drill::{CheckOutcome, DrillKind, DrillReport};
use coffer_repository::KeySource;
use std::path::PathBuf;
use std::time::Duration;

/// `coffer drill rebuild`.
#[derive(Debug, Args)]
pub struct DrillRebuildArgs {
    /// Scratch root to restore into (must not exist or be empty; removed after unless
    /// --keep) [default: a fresh directory under the temporary directory]
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// The RTO target for everything back (e.g. 4h); a rebuild over it fails [default: the
    /// stored policy's [repositories.NAME.rebuild] rto-target]
    #[arg(long, value_name = "DURATION", value_parser = crate::parse::duration)]
    rto_target: Option<Duration>,
    /// The user PostgreSQL servers run as when the drill runs as root [default: the stored
    /// policy's, else postgres]
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// Leave what was restored in the scratch root
    #[arg(long)]
    keep: bool,
    /// Also write the JSON report to this file
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// Runs `coffer drill rebuild`.
///
/// # Errors
/// A one-line error when the rebuild could not run; [`crate::error::NotProven`] (exit 10)
/// when it ran and did not pass.
pub fn run(global: &Global, args: &DrillRebuildArgs) -> Result<()> {
    let job = crate::progress::for_terminal(global.json);
    let location = global
        .repo
        .repo
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| {
            crate::error::UsageError(
                "coffer drill rebuild needs --repo LOCATION (or COFFER_REPO): the repository is all a rebuild starts from"
                    .into(),
            )
        })?
        .display()
        .to_string();
    let password = match crate::repo::key_source(&global.repo, false)? {
        KeySource::Password(p) => p,
        KeySource::PasswordFile(f) => coffer_repository::open::read_password_file(&f)?,
        KeySource::KeyFile(f) => anyhow::bail!("a key file ({}) is not a password", f.display()),
    };
    let scratch = match &args.scratch {
        Some(d) => std::path::absolute(d).with_context(|| format!("scratch root {}", d.display()))?,
        None => std::env::temp_dir().join(format!("coffer-rebuild-{}", coffer_operations::event::random_id())),
    };
    let opts = RebuildOptions {
        job: "manual".into(),
        location,
        credentials: global.credentials.clone(),
        password,
        host: crate::repo::host(),
        scratch,
        rto_target: args.rto_target,
        run_as: args.run_as.clone(),
        keep: args.keep,
    };
    let report = rebuild(&opts, &job)?;
    job.finish();
    if let Some(file) = &args.report {
        let text = serde_json::to_string_pretty(&report).context("cannot render the report")?;
        std::fs::write(file, text + "\n").with_context(|| format!("cannot write the report to {}", file.display()))?;
    }
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(&report)?;
    } else {
        for line in lines(&report) {
            out.line(line)?;
        }
        if args.keep {
            out.line(format_args!("restored data kept in {}", opts.scratch.display()))?;
        }
    }
    out.finish()?;
    if report.passed {
        Ok(())
    } else {
        let why = report.error.clone().or_else(|| report.failures().first().cloned()).unwrap_or_default();
        Err(crate::error::NotProven(format!(
            "rebuild of repository {} did not pass: {why}",
            crate::ops::alert::clean(&report.repository, 100)
        ))
        .into())
    }
}

/// The human lines: one per source restored, one per check not passed, the summary.
fn lines(r: &DrillReport) -> Vec<String> {
    let clean = |s: &str| crate::ops::alert::clean(s, 300);
    let mut out = Vec::new();
    for x in &r.restored {
        let source = clean(x.source.as_deref().unwrap_or("-"));
        let what = match x.kind {
            DrillKind::Postgres => format!(
                "PostgreSQL to {}{}",
                clean(x.target.as_deref().unwrap_or("latest")),
                x.data_time.map(|t| format!(" (data of {t})")).unwrap_or_default()
            ),
            _ => format!(
                "snapshot {} ({} files, {})",
                x.snapshot.as_deref().map_or_else(|| "-".to_owned(), |s| clean(s).chars().take(8).collect()),
                x.files,
                crate::repo::backup::bytes(x.bytes)
            ),
        };
        out.push(format!("{source}: restored {what}, back after {:.1}s", x.rto_seconds));
    }
    for c in r.checks.iter().filter(|c| c.outcome != CheckOutcome::Passed) {
        let verdict = if c.outcome == CheckOutcome::Failed { "failed" } else { "skipped" };
        out.push(format!(
            "{}check {} {verdict}: {}",
            c.source.as_deref().map(|s| format!("{}: ", clean(s))).unwrap_or_default(),
            clean(&c.name),
            clean(&c.detail)
        ));
    }
    if let Some(e) = &r.error {
        out.push(format!("error: {}", clean(e)));
    }
    let sources: std::collections::BTreeSet<&str> = r.restored.iter().filter_map(|x| x.source.as_deref()).collect();
    let checks = r.checks.iter().filter(|c| c.outcome == CheckOutcome::Passed).count();
    out.push(format!(
        "rebuild of repository {} {}: {} sources back, {checks} of {} checks passed, everything back in {}{}",
        clean(&r.repository),
        if r.passed { "passed" } else { "FAILED" },
        sources.len(),
        r.checks.len(),
        r.rto_seconds.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s")),
        r.rto_target_seconds.map(|t| format!(" (target {t:.0}s)")).unwrap_or_default()
    ));
    out
}
