//! `coffer audit`: the clause-by-clause report on the policy (`docs/audit.md`), built by
//! `coffer_operations::audit`: written to `--out` (or stdout) as HTML, Markdown or JSON, its
//! BLAKE3 digest recorded in each audited repository's ledger (through the local outbox, as
//! the writer). Exit 0 when every clause is met, 10 (not proven) when one is not met or
//! unknown — after the report is written.

use crate::Global;
use anyhow::{Context as _, Result};
use clap::Args;
use coffer_operations::audit::render::{Format, render};
use coffer_operations::audit::{AuditOptions, DEFAULT_PERIOD, Status, audit};
use jiff::{SignedDuration, Timestamp};
use std::io::Write as _;
use std::path::PathBuf;

/// `coffer audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Audit this repository of coffer.toml (repeatable) [default: every repository a source
    /// uses]
    #[arg(long, value_name = "NAME")]
    repository: Vec<String>,
    /// The report's format: html, md or json [default: from --out's extension, else json
    /// with --json, else md]
    #[arg(long, value_name = "FORMAT")]
    format: Option<Format>,
    /// Write the report to FILE [default: stdout]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The period the report covers: a duration back from now (`90d`) or a time (RFC 3339)
    /// [default: 90d]
    #[arg(long, value_name = "DURATION|TIME")]
    since: Option<String>,
}

/// `--since`: a duration back from `now`, or an RFC 3339 time.
fn since(text: Option<&str>, now: Timestamp) -> Result<Timestamp> {
    let back = |d: std::time::Duration| now - SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    let Some(text) = text else { return Ok(back(DEFAULT_PERIOD)) };
    if let Ok(d) = crate::parse::duration(text) {
        return Ok(back(d));
    }
    if let Ok(t) = crate::parse::time(text) {
        return Ok(t);
    }
    if let Ok(d) = text.trim().parse::<jiff::civil::Date>() {
        if let Ok(t) = d.to_zoned(jiff::tz::TimeZone::UTC) {
            return Ok(t.timestamp());
        }
    }
    Err(crate::error::UsageError(format!(
        "--since {text:?}: expected a duration (90d) or a time (2026-01-31 or 2026-01-31T00:00:00Z)"
    ))
    .into())
}

fn format_for(args: &AuditArgs, json: bool) -> Format {
    if let Some(f) = args.format {
        return f;
    }
    let ext = args.out.as_ref().and_then(|p| p.extension()).and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => Format::Html,
        Some("md" | "markdown") => Format::Markdown,
        Some("json") => Format::Json,
        _ if json => Format::Json,
        _ => Format::Markdown,
    }
}

/// The one-line summary with --out (`--json`: a document).
#[derive(serde::Serialize)]
struct Summary<'a> {
    id: &'a str,
    out: String,
    format: &'a str,
    hash: &'a str,
    status: Status,
    met: u32,
    not_met: u32,
    unknown: u32,
    recorded: Vec<&'a str>,
}

/// Runs `coffer audit`.
///
/// # Errors
/// A policy file that does not load, an undeclared repository, a report that cannot be
/// written; [`crate::error::NotProven`] when a clause is not met or unknown (after the
/// report is written and recorded).
pub fn run(global: &Global, args: &AuditArgs) -> Result<()> {
    let job = crate::progress::for_terminal(true);
    let config = super::load_config(global)?;
    let clock = coffer_store::Clock::from_env();
    let now = clock.now();
    let since = since(args.since.as_deref(), now)?;
    if since > now {
        return Err(crate::error::UsageError(format!("--since {since} is in the future")).into());
    }
    let host = config.daemon.host.clone().unwrap_or_else(crate::repo::host);
    let opts = AuditOptions {
        repositories: args.repository.clone(),
        since,
        host: host.clone(),
        config_path: Some(super::config_path(global).display().to_string()),
    };
    let state = coffer_operations::state::state_dir(config.daemon.state_dir.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|dir| Ok(coffer_operations::State::open(&dir)?));
    // The ledger first catches up with what this host recorded and has not flushed yet
    // (runs by hand, drills), so the evidence is current.
    if let Ok(state) = &state {
        let names = if opts.repositories.is_empty() {
            coffer_operations::audit::default_repositories(&config)
        } else {
            opts.repositories.clone()
        };
        for name in names.iter().filter(|n| config.repository(n).is_some()) {
            if let Err(why) = coffer_operations::audit::flush_pending(&config, state, name, &clock) {
                tracing::warn!(repository = %name, error = %why, "records waiting in the outbox could not reach the ledger before the audit");
            }
        }
    }
    let report = audit(&config, &opts, &clock, &job).map_err(|e| match e {
        coffer_operations::audit::AuditError::Unknown(_) => crate::error::UsageError(e.to_string()).into(),
        e => anyhow::Error::from(e),
    })?;
    job.finish();
    let format = format_for(args, global.json);
    let bytes = render(&report, format);
    match &args.out {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("cannot write the report to {}", path.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
    }
    let record = report.record(format, &bytes);
    let names: Vec<String> = report.repositories.iter().map(|r| r.name.clone()).collect();
    let mut recorded: Vec<&str> = names.iter().map(String::as_str).collect();
    match state {
        Ok(state) => {
            let failed = coffer_operations::audit::record(&config, &state, &host, &names, &record, &clock)?;
            for (name, why) in &failed {
                recorded.retain(|n| n != name);
                eprintln!(
                    "coffer: warning: the report's digest could not be stored in repository {name}'s ledger now (it waits in the local outbox): {}",
                    why.replace(['\r', '\n'], " ")
                );
            }
        }
        Err(e) => {
            recorded.clear();
            eprintln!(
                "coffer: warning: the report's digest is not recorded: the local state cannot be opened: {}",
                format!("{e:#}").replace(['\r', '\n'], " ")
            );
        }
    }
    if let Some(path) = &args.out {
        let mut out = crate::output::Output::new(global.json);
        if out.json() {
            out.doc(&Summary {
                id: &report.id,
                out: path.display().to_string(),
                format: format.as_str(),
                hash: &record.hash,
                status: report.status(),
                met: report.met,
                not_met: report.not_met,
                unknown: report.unknown,
                recorded,
            })?;
        } else {
            out.line(format_args!("report {} written to {} ({})", report.id, path.display(), format.as_str()))?;
            out.line(format_args!("BLAKE3 {}", record.hash))?;
            for r in &report.repositories {
                for c in &r.clauses {
                    out.line(format_args!("{} §{} {}: {}", r.name, c.section, c.id, c.status))?;
                }
            }
        }
        out.finish()?;
    }
    match report.status() {
        Status::Met => Ok(()),
        _ => {
            let first = report
                .repositories
                .iter()
                .flat_map(|r| r.clauses.iter().map(move |c| (r, c)))
                .find(|(_, c)| c.status != Status::Met)
                .map(|(r, c)| {
                    format!(
                        "; first: {} {} {}{}",
                        r.name,
                        c.id,
                        c.status,
                        c.reasons.first().map(|w| format!(" ({w})")).unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            Err(crate::error::NotProven(format!(
                "audit: {} clause(s) not met, {} unknown{}",
                report.not_met,
                report.unknown,
                first.replace(['\r', '\n'], " ")
            ))
            .into())
        }
    }
}
