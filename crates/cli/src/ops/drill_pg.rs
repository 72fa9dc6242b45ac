//! `coffer drill pg`.

use crate::Global;
use anyhow::Result;
use clap::Args;

/// `coffer drill pg`.
#[derive(Debug, Args)]
pub struct DrillPgArgs {}

/// Runs `coffer drill pg`.
///
/// # Errors
/// Not built yet.
pub fn run(global: &Global, args: &DrillPgArgs) -> Result<()> {
    let _ = (global, args);
    Err(crate::error::UsageError("the PostgreSQL drill is not built yet".into()).into())
}
