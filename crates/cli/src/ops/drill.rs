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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use coffer_operations::drill::{CheckOutcome, DrillKind};
    use coffer_repository::{InitOptions, KdfParams, Repository};
    use coffer_store::{LocalVault, ObjectStore, VaultOptions};
    use std::path::Path;
    use std::sync::Arc;

    /// A vault with a repository (password `pw`), its password file.
    fn vault(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let v = dir.join("vault");
        let vault = LocalVault::init(&v, &VaultOptions::default()).unwrap();
        let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
        let opts =
            InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
        Repository::init(w, &v.display().to_string(), "", b"pw", &opts, Clock::system()).unwrap();
        let pw = dir.join("password");
        std::fs::write(&pw, "pw\n").unwrap();
        (v, pw)
    }

    fn global(args: &[&str]) -> Global {
        let mut all = vec!["coffer"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["drill", "history"]);
        crate::Cli::try_parse_from(all).unwrap().global
    }

    fn report() -> DrillReport {
        let now = Clock::system().now();
        let mut r = DrillReport::new(DrillKind::Files, "manual", "main", "h1", now);
        r.check("content", None, CheckOutcome::Passed, "1 file");
        r.finish(now);
        r
    }

    fn drills(g: &Global, name: Option<&str>) -> Vec<String> {
        let repo = open_reader(g, name).unwrap();
        ledger::read_drills(&repo).unwrap().0.into_iter().map(|(_, r)| r.id).collect()
    }

    #[test]
    fn drill_jobs_a_manual_report_is_appended_as_the_writer_or_not_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let (v, pw) = vault(tmp.path());
        let (v, pw) = (v.to_str().unwrap(), pw.to_str().unwrap());
        let g = global(&["--repo", v, "--password-file", pw]);
        let r = report();
        record_report(&g, None, &r).unwrap();
        assert_eq!(drills(&g, None), [r.id.as_str()]);
        // Only the reader's credentials: refused, nothing recorded, and no error.
        let reader = Path::new(v).join("credentials/reader.toml");
        let g = global(&["--repo", v, "--password-file", pw, "--credentials", reader.to_str().unwrap()]);
        record_report(&g, None, &report()).unwrap();
        assert_eq!(drills(&g, None), [r.id.as_str()]);
    }

    #[test]
    fn drill_jobs_a_manual_report_goes_through_the_outbox_of_the_policy_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (v, pw) = vault(tmp.path());
        let state = tmp.path().join("state");
        let write = |writer: &Path| {
            let text = format!(
                "[daemon]\nstate-dir = {:?}\n\n[repositories.main]\nlocation = {:?}\npassword = {{ file = {:?} }}\n\
                 [repositories.main.credentials]\nwriter = {:?}\n",
                state.display().to_string(),
                v.display().to_string(),
                pw.display().to_string(),
                writer.display().to_string()
            );
            let p = tmp.path().join("coffer.toml");
            std::fs::write(&p, text).unwrap();
            p
        };
        // The writer the policy file names is the reader's key: the report waits in the
        // outbox for the daemon.
        let config = write(&v.join("credentials/reader.toml"));
        let g = global(&["--config", config.to_str().unwrap()]);
        let r = report();
        record_report(&g, Some("main"), &r).unwrap();
        assert!(drills(&g, Some("main")).is_empty());
        let st = State::open(&state).unwrap();
        assert_eq!(st.outbox_entries("main", 10).unwrap().len(), 1);
        // With the writer's key: the queued report and the new one reach the ledger, once.
        let config = write(&v.join("credentials/writer.toml"));
        let g = global(&["--config", config.to_str().unwrap()]);
        let r2 = report();
        record_report(&g, Some("main"), &r2).unwrap();
        assert_eq!(drills(&g, Some("main")), [r.id.as_str(), r2.id.as_str()]);
        assert!(st.outbox_entries("main", 10).unwrap().is_empty());
    }
}
