//! `coffer drill rebuild`.

use crate::Global;
use anyhow::Result;
use clap::Args;

/// `coffer drill rebuild`.
#[derive(Debug, Args)]
pub struct DrillRebuildArgs {}

/// Runs `coffer drill rebuild`.
///
/// # Errors
/// Not built yet.
pub fn run(global: &Global, args: &DrillRebuildArgs) -> Result<()> {
    let _ = (global, args);
    Err(crate::error::UsageError("the rebuild drill is not built yet".into()).into())
}
