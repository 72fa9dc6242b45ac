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
}

/// Runs `coffer config …`.
pub fn run(global: &Global, args: &ConfigArgs) -> Result<()> {
    let path = super::config_path(global);
    let config = super::load_config(global)?;
    let mut out = Output::new(global.json);
    match args.command {
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
