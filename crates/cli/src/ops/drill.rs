//! `coffer drill …`: recovery drills (`docs/drills.md`). Each subcommand lives in its own
//! file (`drill_files.rs`, `drill_pg.rs`, `drill_rebuild.rs`, `drill_history.rs`); the work
//! is `coffer_operations::drill`, as the daemon's drill jobs run it.

use crate::Global;
use anyhow::Result;
use clap::{Args, Subcommand};

/// `coffer drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(subcommand)]
    command: DrillCommand,
}

#[derive(Debug, Subcommand)]
enum DrillCommand {
    /// Restore a snapshot (or a sample of its files) into scratch space, check every byte,
    /// every metadata field and the locks, time it, clean up
    Files(super::drill_files::DrillFilesArgs),
    /// Restore a throwaway PostgreSQL server to a point in the recovery window, check it
    /// (pg_amcheck, catalog, your SQL checks), time it, remove it
    Pg(super::drill_pg::DrillPgArgs),
    /// Rebuild everything the stored policy declares from nothing but the repository's
    /// location, the reader's credentials and the password
    Rebuild(super::drill_rebuild::DrillRebuildArgs),
    /// List the drill reports recorded in the repository's ledger
    History(super::drill_history::DrillHistoryArgs),
}

/// Runs `coffer drill …`.
///
/// # Errors
/// Those of the subcommand.
pub fn run(global: &Global, args: &DrillArgs) -> Result<()> {
    match &args.command {
        DrillCommand::Files(a) => super::drill_files::run(global, a),
        DrillCommand::Pg(a) => super::drill_pg::run(global, a),
        DrillCommand::Rebuild(a) => super::drill_rebuild::run(global, a),
        DrillCommand::History(a) => super::drill_history::run(global, a),
    }
}
