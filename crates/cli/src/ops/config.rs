//! `coffer config check|show`: the policy file as the daemon will read it.
//!
//! `check` loads it exactly as the daemon does (overrides, types, every rule) and lists the
//! jobs with their next run; `show` prints the effective configuration, redacted
//! (`coffer_operations::config::redacted`: secrets are shown as the references they are,
//! URLs without their credentials).

use crate::Global;
use crate::output::{Align, Output};
use crate::views;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use coffer_store::Clock;

/// `coffer config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check the policy file (syntax, types, references, rules) and list its jobs with their
    /// next run; exit 0 when it is valid
    Check,
    /// Print the effective configuration (after COFFER_* overrides and defaults) with
    /// secrets redacted: TOML, or JSON with --json
    Show,
    /// Store the policy file in the ledger of every repository it uses (or one), now: what
    /// `coffer drill rebuild` reads back (the daemon does this by itself when it changes)
    Store(StoreArgs),
}

/// `coffer config store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Only this repository of the file (default: every repository it uses)
    #[arg(long = "repository", value_name = "NAME")]
    repository: Option<String>,
}

/// Runs `coffer config …`.
pub fn run(global: &Global, args: &ConfigArgs) -> Result<()> {
    let path = super::config_path(global);
    let config = super::load_config(global)?;
    let mut out = Output::new(global.json);
    match &args.command {
        ConfigCommand::Store(a) => return store(&mut out, &config, a).and_then(|()| out.finish()),
        ConfigCommand::Check => {
            config.require_jobs()?;
            check(&mut out, &path, &config)?;
        }
        ConfigCommand::Show => {
            let shown = coffer_operations::config::redacted(&config);
            if out.json() {
                out.doc(&views::config_doc(&shown).context("cannot render the configuration")?)?;
            } else {
                let text = toml::to_string(&shown).context("cannot render the configuration")?;
                out.line(format_args!(
                    "# {} (effective: after COFFER_* overrides and defaults; secrets redacted)",
                    path.display()
                ))?;
                out.line(text.trim_end())?;
            }
        }
    }
    out.finish()
}

fn check(out: &mut Output, path: &std::path::Path, config: &coffer_operations::Config) -> Result<()> {
    let tz = coffer_operations::status::timezone(config);
    // `--log-level debug` lists the jobs, one event each.
    coffer_operations::jobs(config).iter().for_each(coffer_operations::logs::job_defined);
    let zone_name = tz.iana_name().unwrap_or("system").to_owned();
    let now = Clock::from_env().now();
    let jobs: Vec<views::ConfigJob> = coffer_operations::jobs(config)
        .into_iter()
        .map(|j| views::ConfigJob {
            kind: j.kind.as_str(),
            source: j.source.clone(),
            repository: j.repository.clone(),
            schedule: j.schedule.as_ref().map(ToString::to_string),
            next_run: j.schedule.as_ref().map(|s| format!("{:.0}", s.next_after(now, &tz).to_zoned(tz.clone()))),
            id: j.id,
        })
        .collect();
    if out.json() {
        return out.doc(&views::ConfigCheck {
            path: path.display().to_string(),
            valid: true,
            timezone: zone_name,
            jobs,
        });
    }
    let n = jobs.len();
    let plural = if n == 1 { "" } else { "s" };
    out.line(format_args!("{}: valid ({n} job{plural}, schedules in {zone_name})", path.display()))?;
    let rows: Vec<Vec<String>> = jobs
        .into_iter()
        .map(|j| {
            vec![j.id, j.schedule.unwrap_or_else(|| "continuous".into()), j.next_run.unwrap_or_else(|| "-".into())]
        })
        .collect();
    out.table(&[("JOB", Align::Left, 0), ("SCHEDULE", Align::Left, 0), ("NEXT RUN", Align::Left, 0)], &rows, true)
}

/// One repository's stored policy, as `coffer config store --json` lists it.
#[derive(serde::Serialize)]
struct Stored {
    repository: String,
    id: String,
    hash: String,
    recorded: jiff::Timestamp,
    /// Ledger records appended by this flush (the policy and whatever else waited).
    appended: usize,
}

/// `coffer config store`: queues the policy for each repository and flushes the outbox to
/// its ledger as the writer, as the daemon's flusher does.
fn store(out: &mut Output, config: &coffer_operations::Config, args: &StoreArgs) -> Result<()> {
    let used = coffer_operations::jobs::used_repositories(config);
    let names: Vec<String> = match &args.repository {
        Some(r) if used.contains(r) => vec![r.clone()],
        Some(r) => {
            return Err(crate::error::UsageError(format!(
                "repository {r:?} is not used by {}; its repositories: {}",
                config.path.as_deref().unwrap_or(std::path::Path::new("coffer.toml")).display(),
                used.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
        None => used.into_iter().collect(),
    };
    let state_dir = coffer_operations::state::state_dir(config.daemon.state_dir.as_deref())?;
    let state = coffer_operations::State::open(&state_dir)?;
    let host = config.daemon.host.clone().unwrap_or_else(crate::repo::host);
    let clock = Clock::from_env();
    let records = coffer_operations::drill::policy::record_policy_now(&state, config, &host, clock.now(), &names)?;
    let mut stored = Vec::new();
    for record in records {
        let repo = coffer_operations::open::open_repository(
            config,
            &record.repository,
            coffer_store::Role::Writer,
            clock.clone(),
        )
        .with_context(|| format!("the policy stays queued for repository {}", record.repository))?;
        let appended = coffer_operations::ledger::flush_outbox(&state, &record.repository, &repo)
            .with_context(|| format!("the policy stays queued for repository {}", record.repository))?;
        stored.push(Stored {
            repository: record.repository,
            id: record.id,
            hash: record.hash,
            recorded: record.recorded,
            appended,
        });
    }
    if out.json() {
        return out.doc(&stored);
    }
    for s in &stored {
        out.line(format_args!(
            "policy stored in the ledger of repository {}: hash {}, record {} ({} ledger records appended)",
            s.repository,
            &s.hash[..16],
            s.id,
            s.appended
        ))?;
    }
    Ok(())
}
