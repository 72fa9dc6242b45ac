//! `coffer daemon`: runs the policy file's jobs until stopped.
//!
//! The CLI's part is the process: it reads the policy file, turns SIGTERM/SIGINT into a
//! clean shutdown and SIGHUP into a reload (messages to the library's loop, which handles no
//! signal itself), and exits 0 after a clean shutdown. A second
//! SIGTERM/SIGINT during the shutdown exits at once (130): the runs it cuts short were not
//! recorded as handled and run again at the next start.

use crate::Global;
use anyhow::Result;
use clap::Args;
use coffer_operations::daemon::Control;
use std::io::Write as _;

/// `coffer daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Run every job that is due now (the latest slot missed since the last run, once) and
    /// exit when they are done, instead of running until stopped
    #[arg(long)]
    once: bool,
}

/// Runs `coffer daemon`.
pub fn run(global: &Global, args: &DaemonArgs) -> Result<()> {
    let config = super::load_config(global)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    signals(tx)?;
    let options = coffer_operations::daemon::Options { once: args.once };
    coffer_operations::daemon::run_with_options(config, &rx, coffer_store::Clock::from_env(), options)?;
    Ok(())
}

/// SIGTERM and SIGINT: shutdown (a second one: exit at once); SIGHUP: reload.
fn signals(tx: crossbeam_channel::Sender<Control>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("coffer-signals".into()).spawn(move || {
        let mut stopping = false;
        for sig in signals.forever() {
            if sig == SIGHUP {
                let _ = tx.send(Control::Reload);
                continue;
            }
            if stopping {
                let _ = writeln!(std::io::stderr(), "coffer: cancelled: interrupted again; exiting at once");
                #[allow(
                    clippy::disallowed_methods,
                    reason = "the CLI ends the process: a second signal stops at once"
                )]
                std::process::exit(i32::from(crate::error::CANCELLED));
            }
            stopping = true;
            let _ = tx.send(Control::Shutdown);
        }
    })?;
    Ok(())
}
