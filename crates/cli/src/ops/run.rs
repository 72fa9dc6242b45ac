//! `coffer run JOB`: runs one job of the policy file now, by hand — the very
//! `coffer_operations::jobs::run_job` the daemon runs — prints its record and keeps it in
//! the daemon's state (so `coffer status` and the ledger see it). No alerts: a person is
//! watching.
//!
//! Security events the job finds (a watch or canary run by hand) are recorded as the
//! daemon records them — in the state's security table and the ledger outbox — and printed,
//! but not alerted: the person who ran the job sees them now, and they stay unacknowledged
//! (`coffer status` exits 8, `coffer alert list`) until someone runs `coffer alert ack`.
//! The running daemon does not raise them either (it alerts on what its own jobs find).

use crate::Global;
use crate::output::Output;
use anyhow::Result;
use clap::Args;
use coffer_operations::event::{Outcome, RunRecord};
use coffer_operations::jobs::{JobContext, jobs, run_job};
use coffer_operations::security::{SecurityEvent, SecuritySink, record};
use coffer_store::ErrorClass;
use std::sync::{Arc, Mutex};

/// `coffer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job: SOURCE/KIND or REPOSITORY/KIND (`home/backup`, `db/base-backup`,
    /// `main/verify`; `coffer config check` counts them)
    #[arg(value_name = "JOB")]
    job: String,
}

/// A job run by hand that did not succeed: its record's class decides the exit code.
#[derive(Debug)]
pub struct JobFailed {
    /// The class (`archive`, the archive check's verdict, is a failure: exit 1).
    pub class: ErrorClass,
    /// The record's one line.
    pub message: String,
}

impl std::fmt::Display for JobFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobFailed {}

/// The class a record names (its `error_class`), for the exit code.
fn class_named(name: &str) -> ErrorClass {
    [
        ErrorClass::Integrity,
        ErrorClass::Refused,
        ErrorClass::Locked,
        ErrorClass::NotFound,
        ErrorClass::Conflict,
        ErrorClass::Transient,
        ErrorClass::Invalid,
        ErrorClass::Io,
        ErrorClass::Cancelled,
    ]
    .into_iter()
    .find(|c| c.as_str() == name)
    .unwrap_or(ErrorClass::Other)
}

/// Runs `coffer run JOB`.
pub fn run(global: &Global, args: &RunArgs) -> Result<()> {
    // First: a signal from here on cancels the job.
    let job = crate::progress::for_terminal(global.json);
    let config = super::load_config(global)?;
    let all = jobs(&config);
    let Some(spec) = all.iter().find(|j| j.id == args.job) else {
        let names: Vec<&str> = all.iter().map(|j| j.id.as_str()).collect();
        return Err(crate::error::UsageError(format!(
            "no job {:?} in {}; its jobs: {}",
            args.job,
            super::config_path(global).display(),
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        ))
        .into());
    };
    let state_dir = coffer_operations::state::state_dir(config.daemon.state_dir.as_deref())?;
    let state = Arc::new(coffer_operations::State::open(&state_dir)?);
    let host = config.daemon.host.clone().unwrap_or_else(crate::repo::host);
    let config = Arc::new(config);
    let found: Arc<Mutex<Vec<SecurityEvent>>> = Arc::default();
    let sink = {
        let (state, config, host, found) = (state.clone(), config.clone(), host.clone(), found.clone());
        SecuritySink(Arc::new(move |event: SecurityEvent| {
            let ledgers = record::ledgers(&event, Some(&config));
            if let Err(e) = record::record_in(&state, &event, &host, &ledgers) {
                tracing::error!(id = %event.id, error = %e, "cannot record the security event in the local state");
            }
            tracing::warn!(id = %event.id, security_kind = event.kind.as_str(), "security event: {}", event.summary);
            found.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event);
        }))
    };
    let ctx = JobContext { host, config, state_dir, clock: coffer_store::Clock::from_env(), security: Some(sink) };
    let record = run_job(&ctx, spec, &job);
    job.finish();
    state.record_run(&record)?;
    for e in found.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
        eprintln!(
            "coffer: security event {} ({}): {} (recorded; coffer alert ack {} when handled)",
            e.id,
            e.kind,
            super::alert::clean(&e.summary, 300),
            e.id
        );
    }
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(&record)?;
    } else {
        out.line(summary(&record))?;
        for (k, v) in &record.details {
            out.line(format!("  {k}: {v}"))?;
        }
    }
    out.finish()?;
    match record.outcome {
        Outcome::Success => Ok(()),
        Outcome::Warning if record.kind == coffer_operations::JobKind::Backup => Err(crate::repo::backup::Incomplete(
            format!("backup incomplete: {} warnings (snapshot {} holds the rest)", record.warnings, short(&record)),
        )
        .into()),
        Outcome::Warning => Ok(()),
        // The canary found a store that does not enforce immutability: a security finding.
        _ if record.error_class.as_deref() == Some(coffer_operations::jobs::SECURITY_CLASS) => {
            Err(crate::error::SecurityError(format!(
                "job {} {}: {}",
                record.job,
                record.outcome,
                record.error.as_deref().unwrap_or("")
            ))
            .into())
        }
        // A drill that ran and did not pass: a verdict (exit 10), not a failure to run.
        _ if record.error_class.as_deref() == Some(coffer_operations::jobs::DRILL_CLASS) => {
            Err(crate::error::NotProven(format!(
                "job {} {}: {}",
                record.job,
                record.outcome,
                record.error.as_deref().unwrap_or("")
            ))
            .into())
        }
        _ => Err(JobFailed {
            class: record.error_class.as_deref().map_or(ErrorClass::Other, class_named),
            message: format!("job {} {}: {}", record.job, record.outcome, record.error.as_deref().unwrap_or("")),
        }
        .into()),
    }
}

fn short(r: &RunRecord) -> &str {
    r.snapshot.as_deref().map_or("-", |s| s.get(..8).unwrap_or(s))
}

/// `home/backup success in 1.2s: snapshot 1a2b3c4d, 120 files, 5.0 MiB read, 1.0 MiB added`.
fn summary(r: &RunRecord) -> String {
    let mut line = format!("{} {} in {:.1}s", r.job, r.outcome, r.duration().as_secs_f64());
    let mut facts = Vec::new();
    if r.snapshot.is_some() {
        facts.push(format!("snapshot {}", short(r)));
    }
    if let Some(n) = r.files {
        facts.push(format!("{n} files"));
    }
    if let Some(b) = r.bytes_read {
        facts.push(format!("{} read", crate::repo::backup::bytes(b)));
    }
    if let Some(b) = r.bytes_added {
        facts.push(format!("{} added", crate::repo::backup::bytes(b)));
    }
    if r.warnings > 0 {
        facts.push(format!("{} warnings", r.warnings));
    }
    if !facts.is_empty() {
        line.push_str(": ");
        line.push_str(&facts.join(", "));
    }
    line
}
