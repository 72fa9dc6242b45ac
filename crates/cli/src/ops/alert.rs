//! `coffer alert test TARGET`: delivers a test alert to one target of the policy file, now,
//! and says whether it arrived (exit 0) or why not (non-zero, no secret, no URL).
//!
//! `coffer alert list` and `coffer alert ack ID`: the security events recorded in the
//! daemon's state, and their acknowledgement. The acknowledgement is written to the state
//! the daemon shares (SQLite in WAL mode, another process): the running daemon notices it
//! within seconds, stops repeating the alert and sends one "acknowledged" notice; who and
//! when go to the repository's ledger as a `security-ack` record.

use crate::Global;
use crate::error::UsageError;
use crate::output::Output;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use coffer_operations::State;
use coffer_operations::alerts::{self, DeliveryError};
use coffer_operations::security::record;
use coffer_operations::state::{AckOutcome, StoredSecurityEvent};

/// `coffer alert test --json`: what was delivered (snake_case keys; a failure is an error,
/// exit code non-zero, not a document).
#[derive(serde::Serialize)]
struct AlertTestView<'a> {
    target: &'a str,
    kind: &'a str,
    sent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    delivered: bool,
}

/// `coffer alert`.
#[derive(Debug, Args)]
pub struct AlertArgs {
    #[command(subcommand)]
    command: AlertCommand,
}

#[derive(Debug, Subcommand)]
enum AlertCommand {
    /// List the security events not acknowledged yet (newest first)
    List {
        /// Every recorded security event, acknowledged or not
        #[arg(long)]
        all: bool,
        /// At most N events
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
    },
    /// Acknowledge the security event ID (or a unique prefix of it): its alert stops
    /// repeating and one "acknowledged" notice is sent; who and when are recorded
    Ack {
        /// The event's id (`coffer alert list`)
        id: String,
        /// Who acknowledges (default: the login name)
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Deliver a test alert to TARGET (a heartbeat target gets its success ping); exit 0 when
    /// it was delivered
    Test {
        /// The target's name ([alerts.webhook.NAME], [alerts.email.NAME], …)
        target: String,
    },
}

/// One security event as `alert list` shows it.
#[derive(serde::Serialize)]
struct EventView<'a> {
    #[serde(flatten)]
    stored: &'a StoredSecurityEvent,
}

#[derive(serde::Serialize)]
struct ListView<'a> {
    unacknowledged: u64,
    events: Vec<EventView<'a>>,
}

#[derive(serde::Serialize)]
struct AckView<'a> {
    id: &'a str,
    acked: bool,
    already: bool,
    acked_by: Option<&'a str>,
    acked_at: Option<jiff::Timestamp>,
}

/// The daemon's state, which must exist (never create an empty one beside the daemon's).
fn open_state(config: &coffer_operations::Config) -> Result<State> {
    let dir = coffer_operations::state::state_dir(config.daemon.state_dir.as_deref())?;
    if !dir.join("state.db").exists() {
        anyhow::bail!("no daemon state in {} (has `coffer daemon` run with this policy file?)", dir.display());
    }
    State::open(&dir).with_context(|| format!("cannot read the daemon state in {}", dir.display()))
}

/// Text recorded by a watch from a store or a queue: hostile, shown without control
/// characters and bounded.
pub fn clean(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// One line for a security event: `ID TIME KIND principal=… action=… key=… summary`.
pub fn event_line(s: &StoredSecurityEvent) -> String {
    let e = &s.event;
    let mut line = format!("{} {} {:<20}", e.id, e.detected.strftime("%Y-%m-%d %H:%M:%S"), e.kind.as_str());
    for (k, v) in [("repository", &e.repository), ("principal", &e.principal), ("action", &e.action), ("key", &e.key)] {
        if let Some(v) = v {
            line.push_str(&format!(" {k}={}", clean(v, 200)));
        }
    }
    line.push_str(&format!(" {}", clean(&e.summary, 300)));
    if let (Some(by), Some(at)) = (&s.acked_by, s.acked_at) {
        line.push_str(&format!(" (acknowledged by {} at {})", clean(by, 100), at.strftime("%Y-%m-%d %H:%M:%S")));
    }
    line
}

/// Who acknowledges: `--by`, else the login name.
fn who(by: Option<&str>) -> String {
    by.map(str::to_owned)
        .or_else(|| std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

/// Runs `coffer alert …`.
pub fn run(global: &Global, args: &AlertArgs) -> Result<()> {
    match &args.command {
        AlertCommand::List { all, limit } => {
            let config = super::load_config(global)?;
            let state = open_state(&config)?;
            let events = record::list(&state, *all, *limit)?;
            let unacknowledged = state.security_unacknowledged()?;
            let mut out = Output::new(global.json);
            if out.json() {
                out.doc(&ListView {
                    unacknowledged,
                    events: events.iter().map(|stored| EventView { stored }).collect(),
                })?;
            } else {
                for e in &events {
                    out.line(event_line(e))?;
                }
                out.line(format!("{unacknowledged} security event(s) not acknowledged (times UTC)"))?;
            }
            out.finish()
        }
        AlertCommand::Ack { id, by } => {
            let by = who(by.as_deref());
            if by.trim().is_empty() || by.len() > 200 || by.chars().any(char::is_control) {
                return Err(UsageError("--by: a name of at most 200 printable characters".into()).into());
            }
            let config = super::load_config(global)?;
            let state = open_state(&config)?;
            let now = coffer_store::Clock::from_env().now();
            let host = config.daemon.host.clone().unwrap_or_else(crate::repo::host);
            let stored = match record::ack(&state, id, &by, now, &host, Some(&config))? {
                AckOutcome::Acked(s) => (s, false),
                AckOutcome::AlreadyAcked(s) => (s, true),
                AckOutcome::Unknown => {
                    return Err(UsageError(format!("no security event {id:?} (coffer alert list --all)")).into());
                }
                AckOutcome::Ambiguous(ids) => {
                    return Err(UsageError(format!("{id:?} names several events: {}", ids.join(", "))).into());
                }
            };
            let (s, already) = stored;
            let mut out = Output::new(global.json);
            if out.json() {
                out.doc(&AckView {
                    id: &s.event.id,
                    acked: true,
                    already,
                    acked_by: s.acked_by.as_deref(),
                    acked_at: s.acked_at,
                })?;
            } else if already {
                out.line(format!("already acknowledged: {}", event_line(&s)))?;
            } else {
                out.line(format!("acknowledged: {}", event_line(&s)))?;
                out.line(
                    "the daemon stops repeating its alert and sends one notice; the acknowledgement goes to the ledger",
                )?;
            }
            out.finish()
        }
        AlertCommand::Test { target } => {
            let config = super::load_config(global)?;
            let now = coffer_store::Clock::from_env().now();
            let host = crate::repo::host();
            let done = match alerts::deliver_test(&config.alerts, target, &host, now) {
                Ok(done) => done,
                Err(e @ (DeliveryError::UnknownTarget(_) | DeliveryError::Config(_))) => {
                    return Err(UsageError(e.to_string()).into());
                }
                Err(e) => return Err(e).with_context(|| format!("alert target {target}: not delivered")),
            };
            // Evidence for `coffer audit` (§7): when each target last received a test. Best
            // effort: the delivery happened whether or not the state can say so.
            let recorded = coffer_operations::state::state_dir(config.daemon.state_dir.as_deref())
                .map_err(anyhow::Error::from)
                .and_then(|dir| Ok(State::open(&dir)?))
                .and_then(|s| {
                    let key = format!("{}{}", coffer_operations::audit::evidence::ALERT_TEST_KEY, done.target);
                    Ok(s.set(&key, &now.to_string())?)
                });
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "the test delivery could not be recorded in the local state");
            }
            let mut out = Output::new(global.json);
            if out.json() {
                out.doc(&AlertTestView {
                    target: &done.target,
                    kind: done.kind,
                    sent: done.sent,
                    id: done.id.as_deref(),
                    delivered: true,
                })
            } else {
                let what = if done.sent == "ping" { "the success ping" } else { "a test alert" };
                out.line(format_args!("alert target {} ({}): delivered {what}", done.target, done.kind))
            }
        }
    }
}
