//! `coffer config check|show`.

use crate::Global;
use anyhow::Result;
use clap::{Args, Subcommand};

/// `coffer config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check the policy file: syntax, types, references (exit 0 when it is valid)
    Check,
}

/// Runs `coffer config …`.
pub fn run(global: &Global, args: &ConfigArgs) -> Result<()> {
    match args.command {
        ConfigCommand::Check => {
            let path = super::config_path(global);
            let config = super::load_config(global)?;
            let jobs = coffer_operations::jobs(&config);
            // `--log-level debug` lists them, one event each.
            jobs.iter().for_each(coffer_operations::logs::job_defined);
            println!("{}: valid ({} jobs)", path.display(), jobs.len());
            Ok(())
        }
    }
}
