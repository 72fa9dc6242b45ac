//! `coffer status`: the policy file's jobs as the daemon's local state records them (read
//! while the daemon runs: the state is SQLite in WAL mode), and the security events not
//! acknowledged yet. Exit code 8 (`SECURITY`) when a security event waits for its
//! acknowledgement (`coffer alert ack ID`); else 9 (`UNHEALTHY`) when a job is failing or
//! overdue, so monitoring can tell "attacked", "unhealthy" and "status failed" apart.

use crate::Global;
use crate::error::{SecurityError, Unhealthy};
use crate::output::Output;
use anyhow::{Context as _, Result};
use clap::Args;
use coffer_operations::State;
use coffer_operations::state::StoredSecurityEvent;
use coffer_operations::status::{StatusReport, report, timezone};
use coffer_store::Clock;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

/// `coffer status`.
#[derive(Debug, Args)]
pub struct StatusArgs {}

/// How many security events `status` shows (the newest; `coffer alert list` has them all).
const SECURITY_SHOWN: usize = 5;

/// The security events not acknowledged.
#[derive(Serialize)]
struct SecurityView<'a> {
    unacknowledged: u64,
    /// The newest few.
    events: &'a [StoredSecurityEvent],
}

#[derive(Serialize)]
struct StatusView<'a> {
    healthy: bool,
    now: Timestamp,
    security: SecurityView<'a>,
    #[serde(flatten)]
    report: &'a StatusReport,
}

/// Runs `coffer status`.
pub fn run(global: &Global, _args: &StatusArgs) -> Result<()> {
    let config = super::load_config(global)?;
    let dir = coffer_operations::state::state_dir(config.daemon.state_dir.as_deref())?;
    // Never create an empty state where the daemon keeps its own: say it is missing.
    if !dir.join("state.db").exists() {
        anyhow::bail!("no daemon state in {} (has `coffer daemon` run with this policy file?)", dir.display());
    }
    let state = State::open(&dir).with_context(|| format!("cannot read the daemon state in {}", dir.display()))?;
    let tz = timezone(&config);
    let now = Clock::from_env().now();
    let rep = report(&config, &state, now, &tz)?;
    let unacknowledged = state.security_unacknowledged()?;
    let events = state.security_events(true, SECURITY_SHOWN)?;
    let mut out = Output::new(global.json);
    if out.json() {
        let security = SecurityView { unacknowledged, events: &events };
        out.doc(&StatusView { healthy: rep.healthy() && unacknowledged == 0, now, security, report: &rep })?;
    } else {
        render(&mut out, &rep, &tz, now)?;
        if unacknowledged > 0 {
            out.line(format!(
                "security: {unacknowledged} event(s) not acknowledged (coffer alert list; coffer alert ack ID):"
            ))?;
            for e in &events {
                out.line(format!("  {}", super::alert::event_line(e)))?;
            }
        }
    }
    out.finish()?;
    // A security event wins over unhealthy jobs: exit 8.
    if unacknowledged > 0 {
        let newest = events.first().map_or_else(String::new, |e| {
            format!("; newest: {} {}", e.event.id, super::alert::clean(&e.event.summary, 200))
        });
        let jobs = if rep.healthy() { String::new() } else { " (and job(s) unhealthy)".to_owned() };
        return Err(SecurityError(format!("{unacknowledged} security event(s) not acknowledged{jobs}{newest}")).into());
    }
    if rep.healthy() {
        return Ok(());
    }
    let bad: Vec<String> = rep
        .jobs
        .iter()
        .filter(|j| j.failing || j.overdue)
        .map(|j| {
            let what: Vec<&str> = [(j.failing, "failing"), (j.overdue, "overdue")]
                .into_iter()
                .filter_map(|(on, w)| on.then_some(w))
                .collect();
            format!("{} ({})", j.job, what.join(", "))
        })
        .collect();
    Err(Unhealthy(format!("{} job(s) unhealthy: {}", bad.len(), bad.join("; "))).into())
}

/// `last drill 2030-01-05 02:00 UTC: passed, RTO 2.5s (target 60s), data age 1h 0m` (the
/// numbers the job's record holds).
fn drill_line(d: &coffer_operations::status::DrillStatus, at: &dyn Fn(Option<Timestamp>) -> String) -> String {
    let secs = |s: f64| format!("{s:.1}s");
    let mut facts = vec![if d.passed { "passed".to_owned() } else { "DID NOT PASS".to_owned() }];
    if let Some(r) = d.rto_seconds {
        let target = d.rto_target_seconds.map_or_else(String::new, |t| format!(" (target {})", secs(t)));
        facts.push(format!("RTO {}{target}", secs(r)));
    }
    if let Some(a) = d.data_age_seconds {
        facts.push(format!("data age {}", secs(a)));
    }
    if let Some(n) = d.checks_failed.filter(|n| *n > 0) {
        facts.push(format!("{n} check(s) failed"));
    }
    format!(
        "last drill {}: {} (report {})",
        at(Some(d.finished)),
        facts.join(", "),
        d.report.get(..12).unwrap_or(&d.report)
    )
}

fn render(out: &mut Output, rep: &StatusReport, tz: &TimeZone, now: Timestamp) -> Result<()> {
    let at = |t: Option<Timestamp>| {
        t.map_or_else(|| "-".to_owned(), |t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string())
    };
    out.line(format!("{:<24} {:<22} {:<22} {:<22} {}", "job", "last success", "last failure", "next run", "state"))?;
    for j in &rep.jobs {
        let state = match (j.failing, j.overdue) {
            (true, true) => "FAILING, OVERDUE".to_owned(),
            (true, false) => "FAILING".to_owned(),
            (false, true) => "OVERDUE".to_owned(),
            (false, false) if j.last_success.is_none() && j.last_failure.is_none() => "never run".to_owned(),
            (false, false) => "ok".to_owned(),
        };
        out.line(format!(
            "{:<24} {:<22} {:<22} {:<22} {}",
            j.job,
            at(j.last_success.as_ref().map(|r| r.finished)),
            at(j.last_failure.as_ref().map(|r| r.finished)),
            match j.next_run {
                None => "continuous".to_owned(),
                // A slot not handled yet: it runs as soon as the daemon gets to it.
                Some(t) if t <= now => "due now".to_owned(),
                Some(t) => at(Some(t)),
            },
            state
        ))?;
        if let Some(d) = &j.drill {
            out.line(format!("  {}", drill_line(d, &at)))?;
        }
        if let Some(since) = j.overdue_since {
            out.line(format!("  overdue: no successful run since the slot of {}", at(Some(since))))?;
        }
        if let Some(f) = &j.last_failure {
            let msg = f.error.as_deref().unwrap_or(f.outcome.as_str());
            out.line(format!("  last failure: {}: {}", f.outcome, msg.replace(|c: char| c.is_control(), " ")))?;
        }
    }
    for p in &rep.postgres {
        let window = match (p.recovery_window_start, p.recovery_window_end) {
            (Some(s), Some(e)) => format!("{} to {}", at(Some(s)), at(Some(e))),
            _ => "unknown".to_owned(),
        };
        let lag = p.archive_lag_seconds.map_or_else(|| "unknown".to_owned(), |s| format!("{s}s"));
        out.line(format!(
            "postgres {}: recovery window {window}, archive lag {lag}, last check {}{}",
            p.source,
            at(p.last_check),
            p.last_check_outcome.map_or_else(String::new, |o| format!(" ({o})"))
        ))?;
    }
    Ok(())
}
