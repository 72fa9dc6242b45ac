//! `coffer audit`: the clause-by-clause report on the policy (`docs/audit.md`), built by
//! `coffer_operations::audit`.

use crate::Global;
use anyhow::Result;
use clap::Args;

/// `coffer audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {}

/// Runs `coffer audit`.
///
/// # Errors
/// Not built yet.
pub fn run(global: &Global, args: &AuditArgs) -> Result<()> {
    let _ = (global, args);
    Err(crate::error::UsageError("coffer audit is not built yet".into()).into())
}
