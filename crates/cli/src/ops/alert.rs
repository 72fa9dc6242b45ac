//! `coffer alert test TARGET`: delivers a test alert to one target of the policy file, now,
//! and says whether it arrived (exit 0) or why not (non-zero, no secret, no URL).

use crate::Global;
use crate::error::UsageError;
use crate::output::Output;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use coffer_operations::alerts::{self, DeliveryError};

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
    /// Deliver a test alert to TARGET (a heartbeat target gets its success ping); exit 0 when
    /// it was delivered
    Test {
        /// The target's name ([alerts.webhook.NAME], [alerts.email.NAME], …)
        target: String,
    },
}

/// Runs `coffer alert …`.
pub fn run(global: &Global, args: &AlertArgs) -> Result<()> {
    match &args.command {
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
