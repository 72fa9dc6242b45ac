//! `coffer ledger`: the job ledger kept in the repository: runs, security events and their
//! acknowledgements (`--kind`). It needs only the repository and
//! its password, so it works on any host, after the backup host is lost. With
//! `--repository NAME` the repository is opened as the policy file says.
//!
//! Everything shown comes from the repository and is hostile input: text is stripped of
//! control characters before it reaches a terminal.

use crate::Global;
use crate::error::{IntegrityError, SecurityError, UsageError};
use crate::output::Output;
use crate::repo::{RepoOpts, open_repo};
use anyhow::Result;
use clap::{Args, Subcommand};
use coffer_operations::RunRecord;
use coffer_operations::ledger::{read_runs, read_security};
use coffer_operations::security::SecurityEvent;
use coffer_operations::security::record::SecurityAck;
use coffer_repository::{LedgerProblem, LedgerProblemKind, Repository};
use coffer_store::{Clock, Role};
use jiff::Timestamp;
use serde::Serialize;

/// `coffer ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    command: Option<LedgerCommand>,

    /// Only the runs of this job (`home/backup`, `db/base-backup`, `main/verify`)
    #[arg(long, value_name = "JOB")]
    job: Option<String>,

    /// Only the runs that started at or after TIME (RFC 3339)
    #[arg(long, value_name = "TIME", value_parser = crate::parse::time)]
    since: Option<Timestamp>,

    /// Only the newest N runs (after the other filters)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// The repository of the policy file (coffer.toml) to open, as its [repositories.NAME]
    /// table says, instead of --repo
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,

    /// Only records of this kind: `run` (job runs) or `security` (security events and
    /// their acknowledgements); default: both
    #[arg(long, value_enum, value_name = "KIND")]
    kind: Option<RecordKind>,
}

/// What `coffer ledger --kind` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RecordKind {
    /// Job runs.
    Run,
    /// Security events and acknowledgements.
    Security,
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Check every record and the chain (exit 8 for a forged or removed record, 6 for any
    /// other problem)
    Verify,
}

/// One run as `--json` lists it: the ledger record's id and the run record's fields.
#[derive(Serialize)]
struct RunView<'a> {
    id: String,
    #[serde(flatten)]
    run: &'a RunRecord,
}

/// One security event as `--json` lists it.
#[derive(Serialize)]
struct SecurityView<'a> {
    /// The ledger record's id (the event's own is `id`).
    record: String,
    #[serde(flatten)]
    event: &'a SecurityEvent,
}

/// One acknowledgement as `--json` lists it.
#[derive(Serialize)]
struct AckView<'a> {
    /// The ledger record's id.
    record: String,
    #[serde(flatten)]
    ack: &'a SecurityAck,
}

#[derive(Serialize)]
struct ListView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<Vec<RunView<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<Vec<SecurityView<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_acks: Option<Vec<AckView<'a>>>,
    problems: &'a [LedgerProblem],
}

#[derive(Serialize)]
struct VerifyView<'a> {
    records: usize,
    heads: Vec<String>,
    problems: &'a [LedgerProblem],
}

/// Runs `coffer ledger …`.
pub fn run(global: &Global, r: &RepoOpts, args: &LedgerArgs) -> Result<()> {
    let repo = open(global, r, args)?;
    match args.command {
        None => list(global, &repo, args),
        Some(LedgerCommand::Verify) => verify(global, &repo),
    }
}

/// The repository: `--repository NAME` from the policy file, else the repository options.
fn open(global: &Global, r: &RepoOpts, args: &LedgerArgs) -> Result<Repository> {
    let Some(name) = &args.repository else { return open_repo(global, r, Role::Reader) };
    if r.as_of.is_some() {
        return Err(
            UsageError("--as-of needs --repo (a repository of the policy file is opened as it is now)".into()).into()
        );
    }
    let config = super::load_config(global)?;
    let role = global.role.unwrap_or(Role::Reader);
    Ok(coffer_operations::open::open_repository(&config, name, role, Clock::from_env())?)
}

fn list(global: &Global, repo: &Repository, args: &LedgerArgs) -> Result<()> {
    let want_runs = args.kind != Some(RecordKind::Security);
    let want_security = args.kind != Some(RecordKind::Run);
    let (runs, mut problems) = read_runs(repo)?;
    // The chain's problems are in both answers: once is enough.
    let (sec, sec_problems) = if want_security { read_security(repo)? } else { Default::default() };
    for p in sec_problems {
        if !problems.iter().any(|q| q.object == p.object && q.message == p.message) {
            problems.push(p);
        }
    }
    let runs = if want_runs { runs } else { Vec::new() };
    let events: Vec<_> = sec.events.iter().filter(|(_, e)| args.since.is_none_or(|t| e.detected >= t)).collect();
    let acks: Vec<_> = sec.acks.iter().filter(|(_, a)| args.since.is_none_or(|t| a.acked_at >= t)).collect();
    let mut runs: Vec<_> = runs
        .iter()
        .filter(|(_, run)| args.job.as_ref().is_none_or(|j| &run.job == j))
        .filter(|(_, run)| args.since.is_none_or(|t| run.started >= t))
        .collect();
    if let Some(n) = args.limit {
        runs.drain(..runs.len().saturating_sub(n));
    }
    let mut out = Output::new(global.json);
    if out.json() {
        let runs = want_runs.then(|| runs.iter().map(|(id, run)| RunView { id: id.to_string(), run }).collect());
        let security = want_security
            .then(|| events.iter().map(|(id, event)| SecurityView { record: id.to_string(), event }).collect());
        let security_acks =
            want_security.then(|| acks.iter().map(|(id, ack)| AckView { record: id.to_string(), ack }).collect());
        out.doc(&ListView { runs, security, security_acks, problems: &problems })?;
    } else {
        out.line(format!(
            "{:<20} {:<24} {:<10} {:>9} {:<16} {}",
            "started", "job", "outcome", "duration", "host", "record"
        ))?;
        for (id, run) in &runs {
            out.line(format!(
                "{:<20} {:<24} {:<10} {:>9} {:<16} {}",
                run.started.strftime("%Y-%m-%d %H:%M:%S"),
                clean(&run.job),
                run.outcome.as_str(),
                crate::parse::format_period(run.duration()),
                clean(&run.host),
                id.short()
            ))?;
            if let Some(e) = &run.error {
                out.line(format!("  {}: {}", run.error_class.as_deref().map_or("error".into(), clean), clean(e)))?;
            }
        }
        if want_runs {
            out.line(format!("{} runs (times UTC)", runs.len()))?;
        }
        if want_security {
            for (id, e) in &events {
                let mut line = format!(
                    "{:<20} security {:<20} {}",
                    e.detected.strftime("%Y-%m-%d %H:%M:%S"),
                    e.kind.as_str(),
                    clean(&e.id)
                );
                for (k, v) in
                    [("repository", &e.repository), ("principal", &e.principal), ("action", &e.action), ("key", &e.key)]
                {
                    if let Some(v) = v {
                        line.push_str(&format!(" {k}={}", clean(v)));
                    }
                }
                line.push_str(&format!(" record {}", id.short()));
                out.line(line)?;
                out.line(format!("  {}", clean(&e.summary)))?;
            }
            for (id, a) in &acks {
                out.line(format!(
                    "{:<20} security-ack {} by {} record {}",
                    a.acked_at.strftime("%Y-%m-%d %H:%M:%S"),
                    clean(&a.event_id),
                    clean(&a.acked_by),
                    id.short()
                ))?;
            }
            out.line(format!("{} security events, {} acknowledgements (times UTC)", events.len(), acks.len()))?;
        }
    }
    out.finish()?;
    // The runs that could be read are listed; what is wrong is said, and `ledger verify`
    // fails on it.
    for p in &problems {
        eprintln!("coffer: warning: {}", problem_line(p));
    }
    Ok(())
}

fn verify(global: &Global, repo: &Repository) -> Result<()> {
    let view = repo.ledger()?;
    // Bodies too: an authentic record of kind run (or security) that is not one is a problem.
    let (_, mut problems) = read_runs(repo)?;
    let (_, sec_problems) = read_security(repo)?;
    for p in sec_problems {
        if !problems.iter().any(|q| q.object == p.object && q.message == p.message) {
            problems.push(p);
        }
    }
    let mut out = Output::new(global.json);
    if out.json() {
        let heads = view.heads.iter().map(ToString::to_string).collect();
        out.doc(&VerifyView { records: view.entries.len(), heads, problems: &problems })?;
    } else {
        out.line(format!("{} records, {} head(s)", view.entries.len(), view.heads.len()))?;
        for p in &problems {
            out.line(format!("problem: {}", problem_line(p)))?;
        }
        if problems.is_empty() {
            out.line("the ledger is intact")?;
        }
    }
    out.finish()?;
    let tampered = |p: &&LedgerProblem| matches!(p.kind, LedgerProblemKind::Unauthentic | LedgerProblemKind::Gap);
    if let Some(first) = problems.iter().find(tampered) {
        return Err(SecurityError(format!(
            "the ledger of {} shows {} sign(s) of tampering; first: {}",
            repo.location(),
            problems.iter().filter(tampered).count(),
            problem_line(first)
        ))
        .into());
    }
    if let Some(first) = problems.first() {
        return Err(IntegrityError(format!(
            "the ledger of {} has {} problem(s); first: {}",
            repo.location(),
            problems.len(),
            problem_line(first)
        ))
        .into());
    }
    Ok(())
}

/// `ledger KIND OBJECT: message`, one line.
pub(crate) fn problem_line(p: &LedgerProblem) -> String {
    format!("ledger {} {}: {}", p.kind.as_str(), clean(&p.object), clean(&p.message))
}

/// Text from the repository, safe for a terminal: control characters become `?`.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}
