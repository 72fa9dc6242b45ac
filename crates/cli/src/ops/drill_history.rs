//! `coffer drill history`.

use crate::Global;
use anyhow::Result;
use clap::Args;

/// `coffer drill history`.
#[derive(Debug, Args)]
pub struct DrillHistoryArgs {}

/// Runs `coffer drill history`.
///
/// # Errors
/// Not built yet.
pub fn run(global: &Global, args: &DrillHistoryArgs) -> Result<()> {
    let _ = (global, args);
    Err(crate::error::UsageError("drill history is not built yet".into()).into())
}
