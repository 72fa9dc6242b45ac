//! `coffer security …`: the security watch's commands (`docs/security.md`). Each
//! subcommand lives in its own file (`security_aws.rs`, `security_baseline.rs`).

use crate::Global;
use anyhow::Result;
use clap::{Args, Subcommand};

/// `coffer security`.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    #[command(subcommand)]
    command: SecurityCommand,
}

#[derive(Debug, Subcommand)]
enum SecurityCommand {
    /// Print what AWS needs to send CloudTrail events on the bucket to Coffer's queue
    /// (a CloudFormation template, or the JSON documents)
    AwsTemplate(super::security_aws::AwsTemplateArgs),
    /// Show or accept the drift watch's baseline of a repository's store
    Baseline(super::security_baseline::BaselineArgs),
}

/// Runs `coffer security …`.
///
/// # Errors
/// Those of the subcommand.
pub fn run(global: &Global, args: &SecurityArgs) -> Result<()> {
    match &args.command {
        SecurityCommand::AwsTemplate(a) => super::security_aws::run(global, a),
        SecurityCommand::Baseline(a) => super::security_baseline::run(global, a),
    }
}
