//! `coffer security baseline`. (Issue 14: to be built.)

use crate::Global;
use anyhow::{Result, bail};
use clap::Args;

/// `coffer security baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {}

/// Runs it.
///
/// # Errors
/// Not built yet.
pub fn run(_global: &Global, _args: &BaselineArgs) -> Result<()> {
    bail!("coffer security baseline is not built yet")
}
