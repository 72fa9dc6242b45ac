//! `coffer drill …`: recovery drills (`docs/drills.md`). Each subcommand lives in its own
//! file (`drill_files.rs`, `drill_pg.rs`, `drill_rebuild.rs`, `drill_history.rs`); the work
//! is `coffer_operations::drill`, as the daemon's drill jobs run it.

use crate::Global;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use coffer_operations::State;
use coffer_operations::drill::DrillReport;
use coffer_operations::ledger;
use coffer_store::{Clock, Role};

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

/// The repository a drill command reads: `--repository NAME` of the policy file (as its
/// `[repositories.NAME]` table says, as the `reader` unless `--role` says otherwise), else
/// the global repository options (`--repo`, the password options) as the `reader`; as
/// `coffer ledger` opens it.
///
/// # Errors
/// The repository cannot be opened.
pub fn open_reader(global: &Global, repository: Option<&str>) -> Result<coffer_repository::Repository> {
    let Some(name) = repository else { return crate::repo::open_repo(global, &global.repo, Role::Reader) };
    if global.repo.as_of.is_some() {
        return Err(crate::error::UsageError(
            "--as-of needs --repo (a repository of the policy file is opened as it is now)".into(),
        )
        .into());
    }
    let config = super::load_config(global)?;
    let role = global.role.unwrap_or(Role::Reader);
    Ok(coffer_operations::open::open_repository(&config, name, role, Clock::from_env())?)
}

/// Keeps a drill run by hand (`coffer drill files|pg|rebuild`) as evidence, as the daemon
/// keeps its drills' (`docs/drills.md`, "Reports as evidence"):
///
/// - with a repository of the policy file (`repository_name`): the report is queued in the
///   daemon's state outbox for that repository (as `coffer run` records a run), then the
///   outbox is flushed to the ledger as the `writer` the policy file names; when the
///   repository cannot be written now, the report stays queued and the daemon's flusher
///   appends it (one warning line says so);
/// - without one (`--repo`, no policy file): the report is appended to the ledger with the
///   repository opened as the `writer` (the vault's writer credentials, `--credentials`, or
///   the AWS chain); when that is refused, nothing is recorded and one line
///   `coffer: warning: report not recorded: …` says why.
///
/// A drill reads as the `reader` and never needs more: recording is a separate, optional
/// step, and its failure never changes the drill's verdict or exit code.
///
/// # Errors
/// The policy file cannot be loaded or the state cannot be written (with a repository of the
/// policy file): the report would be lost silently otherwise.
#[allow(dead_code, reason = "coffer drill files|pg|rebuild call it once they are built")]
pub fn record_report(global: &Global, repository_name: Option<&str>, report: &DrillReport) -> Result<()> {
    let body = serde_json::to_value(report).context("cannot serialise the drill report")?;
    let Some(name) = repository_name else {
        let appended = crate::repo::open_repo(global, &global.repo, Role::Writer)
            .and_then(|repo| Ok(repo.append_ledger_as(&report.host, ledger::DRILL, &body)?));
        match appended {
            Ok(id) => {
                tracing::info!(drill_report = %report.id, ledger_record = %id, "drill report recorded in the ledger")
            }
            Err(e) => eprintln!("coffer: warning: report not recorded: {e:#}"),
        }
        return Ok(());
    };
    let config = super::load_config(global)?;
    let dir = coffer_operations::state::state_dir(config.daemon.state_dir.as_deref())?;
    let state = State::open(&dir).with_context(|| format!("cannot open the daemon state in {}", dir.display()))?;
    state.record_other(name, ledger::DRILL, &report.host, &body)?;
    let flushed = coffer_operations::open::open_repository(&config, name, Role::Writer, Clock::from_env())
        .map_err(anyhow::Error::from)
        .and_then(|repo| Ok(ledger::flush_outbox(&state, name, &repo)?));
    match flushed {
        Ok(n) => tracing::info!(drill_report = %report.id, appended = n, "drill report recorded in the ledger"),
        Err(e) => eprintln!(
            "coffer: warning: report queued in {} for the daemon to record (the ledger cannot be written now: {e:#})",
            dir.display()
        ),
    }
    Ok(())
}
