//! `coffer security baseline show|accept`: the drift watch's baseline of a repository's
//! store against its current protective configuration (`docs/security.md`, "drift").
//!
//! `show` reads only, and exits 8 (`SECURITY`) when a field differs from the baseline,
//! cannot be read, or there is no baseline yet. `accept` writes a new locked baseline
//! object, keeps it as the local copy and records a `baseline-change` security event in the
//! daemon's state (its alerts and ledger pick it up).

use crate::Global;
use crate::error::SecurityError;
use crate::output::Output;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use coffer_operations::State;
use coffer_operations::security::drift::{self, Comparison};
use coffer_store::Clock;

/// `coffer security baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(subcommand)]
    command: BaselineCommand,
}

#[derive(Debug, Subcommand)]
enum BaselineCommand {
    /// Show the baseline against the current configuration, field by field (exit 8 when
    /// they differ)
    Show {
        /// The repository of coffer.toml (default: every repository)
        #[arg(long, value_name = "NAME")]
        repository: Option<String>,
    },
    /// Accept the current configuration as the new baseline (writes a new locked baseline
    /// object and records a `baseline-change` security event)
    Accept {
        /// The repository of coffer.toml
        #[arg(long, value_name = "NAME")]
        repository: String,
    },
}

/// Runs it.
///
/// # Errors
/// The store or the state cannot be used; [`SecurityError`] when `show` finds a difference.
pub fn run(global: &Global, args: &BaselineArgs) -> Result<()> {
    let config = super::load_config(global)?;
    let dir = coffer_operations::state::state_dir(config.daemon.state_dir.as_deref())?;
    let state = State::open(&dir).with_context(|| format!("cannot open the daemon state in {}", dir.display()))?;
    let mut out = Output::new(global.json);
    match &args.command {
        BaselineCommand::Accept { repository } => {
            let ev = drift::accept(&config, repository, &state, &Clock::from_env())?;
            if out.json() {
                out.doc(&ev)?;
            } else {
                out.line(&ev.summary)?;
                out.line(format!(
                    "changed fields: {}",
                    ev.details.get("changed-fields").map_or("none", String::as_str)
                ))?;
                out.line(format!("security event {} recorded", ev.id))?;
            }
            out.finish()
        }
        BaselineCommand::Show { repository } => {
            let names: Vec<String> = match repository {
                Some(r) => vec![r.clone()],
                None => config.repositories.keys().cloned().collect(),
            };
            let mut all = Vec::new();
            for name in &names {
                all.push(drift::show(&config, name, &state)?);
            }
            if out.json() {
                out.doc(&all)?;
            } else {
                for c in &all {
                    render(&mut out, c)?;
                }
            }
            out.finish()?;
            let differing: Vec<&str> = all.iter().filter(|c| c.differs()).map(|c| c.repository.as_str()).collect();
            if differing.is_empty() {
                Ok(())
            } else {
                Err(SecurityError(format!(
                    "the protective configuration differs from its baseline: {}",
                    differing.join(", ")
                ))
                .into())
            }
        }
    }
}

fn render(out: &mut Output, c: &Comparison) -> Result<()> {
    out.line(format!("repository {} ({})", c.repository, c.store))?;
    match &c.baseline {
        Some(b) => out.line(format!(
            "baseline: {} ({}, {})",
            c.baseline_key.as_deref().unwrap_or("not yet written to the store"),
            b.reason,
            b.created
        ))?,
        None => out.line("baseline: none yet (the first drift check establishes it)")?,
    }
    if let Some(why) = &c.unreadable {
        out.line(format!("  cannot read the configuration: {why}"))?;
    }
    for f in &c.fields {
        let mark = if f.differs { "DIFFERS" } else { "ok" };
        let base = f.baseline.as_deref().unwrap_or("(not in baseline)");
        let cur = match (&f.current, &f.unreadable) {
            (_, Some(why)) => format!("(unreadable: {why})"),
            (Some(v), None) => v.clone(),
            (None, None) => "(absent)".into(),
        };
        if f.differs {
            out.line(format!("  {:<20} {mark:<8} {base} → {cur}", f.field))?;
        } else {
            out.line(format!("  {:<20} {mark:<8} {cur}", f.field))?;
        }
    }
    Ok(())
}
