//! `coffer drill files`.

use crate::Global;
use anyhow::Result;
use clap::Args;

/// `coffer drill files`.
#[derive(Debug, Args)]
pub struct DrillFilesArgs {}

/// Runs `coffer drill files`.
///
/// # Errors
/// Not built yet.
pub fn run(global: &Global, args: &DrillFilesArgs) -> Result<()> {
    let _ = (global, args);
    Err(crate::error::UsageError("the files drill is not built yet".into()).into())
}
