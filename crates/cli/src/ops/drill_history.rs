//! `coffer drill history`: the drill reports recorded in the repository's ledger (kind
//! `drill`), oldest first: when, which job, what kind, passed or FAILED, the RTO against its
//! target, the data age, what was restored and the checks that did not pass. Like `coffer
//! ledger` it needs only the repository and its password (opened as the `reader`), or
//! `--repository NAME` of the policy file.
//!
//! Everything shown comes from the repository and is hostile input: text is stripped of
//! control characters and bounded before it reaches a terminal.

use crate::Global;
use crate::output::Output;
use anyhow::Result;
use clap::Args;
use coffer_operations::drill::{CheckOutcome, DrillReport};
use coffer_operations::ledger::read_drills;
use coffer_repository::LedgerProblem;
use jiff::Timestamp;
use serde::Serialize;

/// `coffer drill history`.
#[derive(Debug, Args)]
pub struct DrillHistoryArgs {
    /// Only the drills of this job (`home/drill`, `db/drill`, `main/rebuild`, `manual`)
    #[arg(long, value_name = "JOB")]
    job: Option<String>,

    /// Only the drills that started at or after TIME (RFC 3339)
    #[arg(long, value_name = "TIME", value_parser = crate::parse::time)]
    since: Option<Timestamp>,

    /// Only the drills that did not pass
    #[arg(long)]
    failed: bool,

    /// Only the newest N drills (after the other filters)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// The repository of the policy file (coffer.toml) to open, as its [repositories.NAME]
    /// table says, instead of --repo
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
}

/// One report as `--json` lists it: the ledger record's id and the report's fields.
#[derive(Serialize)]
struct DrillView<'a> {
    record: String,
    #[serde(flatten)]
    report: &'a DrillReport,
}

#[derive(Serialize)]
struct HistoryView<'a> {
    drills: Vec<DrillView<'a>>,
    problems: &'a [LedgerProblem],
}

/// How much of a text from the repository one line shows.
const SHOWN: usize = 300;

fn clean(s: &str) -> String {
    super::alert::clean(s, SHOWN)
}

/// Runs `coffer drill history`.
///
/// # Errors
/// The repository cannot be opened or its ledger read.
pub fn run(global: &Global, args: &DrillHistoryArgs) -> Result<()> {
    let repo = super::drill::open_reader(global, args.repository.as_deref())?;
    let (drills, problems) = read_drills(&repo)?;
    let mut drills: Vec<_> = drills
        .iter()
        .filter(|(_, r)| args.job.as_ref().is_none_or(|j| &r.job == j))
        .filter(|(_, r)| args.since.is_none_or(|t| r.started >= t))
        .filter(|(_, r)| !args.failed || !r.passed)
        .collect();
    if let Some(n) = args.limit {
        drills.drain(..drills.len().saturating_sub(n));
    }
    let mut out = Output::new(global.json);
    if out.json() {
        let drills = drills.iter().map(|(id, report)| DrillView { record: id.to_string(), report }).collect();
        out.doc(&HistoryView { drills, problems: &problems })?;
    } else {
        for (id, r) in &drills {
            out.line(summary(r, &id.short()))?;
            for x in &r.restored {
                out.line(format!("  restored: {}", restored_line(x)))?;
            }
            if let Some(e) = &r.error {
                out.line(format!("  error: {}", clean(e)))?;
            }
            for c in r.checks.iter().filter(|c| c.outcome != CheckOutcome::Passed) {
                out.line(format!(
                    "  {} {}{}: {}",
                    if c.outcome == CheckOutcome::Failed { "failed" } else { "skipped" },
                    c.source.as_deref().map(|s| format!("{}: ", clean(s))).unwrap_or_default(),
                    clean(&c.name),
                    clean(&c.detail)
                ))?;
            }
        }
        let failed = drills.iter().filter(|(_, r)| !r.passed).count();
        out.line(format!("{} drills, {failed} did not pass (times UTC)", drills.len()))?;
    }
    out.finish()?;
    for p in &problems {
        eprintln!("coffer: warning: {}", super::ledger::problem_line(p));
    }
    Ok(())
}

/// Seconds as a person reads them: `2.5s`, `1h 2m`, `3d 4h`.
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return format!("{s}s");
    }
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative finite number of seconds"
    )]
    let whole = s.min(1e15) as u64;
    let (d, h, m) = (whole / 86_400, whole % 86_400 / 3600, whole % 3600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m {}s", whole % 60),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `2030-01-05 02:00:03 home/drill files passed RTO 2.5s (target 1m 0s) data age 1h 0m host h1 record 1a2b3c4d`.
fn summary(r: &DrillReport, record: &str) -> String {
    let mut line = format!(
        "{} {} {} {}",
        r.started.strftime("%Y-%m-%d %H:%M:%S"),
        clean(&r.job),
        r.kind.as_str(),
        if r.passed { "passed" } else { "FAILED" }
    );
    if let Some(rto) = r.rto_seconds {
        line.push_str(&format!(" RTO {}", seconds(rto)));
    }
    if let Some(t) = r.rto_target_seconds {
        line.push_str(&format!(" (target {})", seconds(t)));
    }
    if let Some(a) = r.data_age_seconds {
        line.push_str(&format!(" data age {}", seconds(a)));
    }
    line.push_str(&format!(" repository {} host {} record {record}", clean(&r.repository), clean(&r.host)));
    line
}

/// `home files snapshot ab12cd34 (2030-01-05 01:00:00), 12 files, 3.3 KiB, back in 2.5s`.
fn restored_line(x: &coffer_operations::drill::Restored) -> String {
    let mut line = format!("{} {}", x.source.as_deref().map_or_else(|| "-".to_owned(), clean), x.kind.as_str());
    if let Some(s) = &x.snapshot {
        line.push_str(&format!(" snapshot {}", clean(s.get(..8).unwrap_or(s))));
    }
    if let Some(t) = x.snapshot_time {
        line.push_str(&format!(" ({})", t.strftime("%Y-%m-%d %H:%M:%S")));
    }
    if let Some(t) = &x.target {
        line.push_str(&format!(" target {}", clean(t)));
    }
    line.push_str(&format!(
        ", {} files, {}, back in {}",
        x.files,
        crate::repo::backup::bytes(x.bytes),
        seconds(x.rto_seconds)
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn drill_jobs_seconds_read_as_a_person_reads_them() {
        assert_eq!(seconds(2.54), "2.5s");
        assert_eq!(seconds(61.0), "1m 1s");
        assert_eq!(seconds(3660.0), "1h 1m");
        assert_eq!(seconds(90_000.0), "1d 1h");
        assert_eq!(seconds(-1.0), "-1s");
        assert_eq!(seconds(1e308), "11574074074d 1h", "hostile: bounded, no panic");
    }
}
