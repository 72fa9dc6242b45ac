//! `coffer security aws-template`. (Issue 14: to be built.)

use crate::Global;
use anyhow::{Result, bail};
use clap::Args;

/// `coffer security aws-template`.
#[derive(Debug, Args)]
pub struct AwsTemplateArgs {}

/// Runs it.
///
/// # Errors
/// Not built yet.
pub fn run(_global: &Global, _args: &AwsTemplateArgs) -> Result<()> {
    bail!("coffer security aws-template is not built yet")
}
