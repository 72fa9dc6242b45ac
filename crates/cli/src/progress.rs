//! Progress on a terminal, and SIGINT/SIGTERM as cancellation: how the CLI runs a library job.
//!
//! Every long command (backup, restore, verify, prune, the `pg` jobs) gets its
//! [`JobControl`] from [`for_terminal`]. Its observer is the one renderer of the library's
//! [`Event`]s: a bar with the total and an ETA once the total is known (a spinner with the
//! counts before), drawn on stderr only when stderr is a terminal and `--json` is not
//! given, so scripts and the integration tests see exactly the output they always did.
//!
//! Its cancellation token is the process's: the first SIGINT or SIGTERM cancels the job,
//! which stops at its next boundary and acknowledges nothing, and the command exits 130
//! with one line (`coffer: cancelled: …`, [`crate::error::report`]); a second signal exits
//! at once. The handlers are installed by the first [`for_terminal`], so a command that runs
//! no job keeps the default behaviour of the signals (die at once).

use coffer_repository::{Cancel, Event, JobControl, Observer, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A job's control, with its progress bar cleared when the job's command is done with it
/// (dropped, or [`Job::finish`]). Dereferences to the [`JobControl`] to pass to the library.
pub struct Job {
    ctl: JobControl,
    bar: Option<Arc<Bar>>,
}

impl std::ops::Deref for Job {
    type Target = JobControl;

    fn deref(&self) -> &JobControl {
        &self.ctl
    }
}

impl Job {
    /// Clears the progress bar, before the command prints its result.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.pb.finish_and_clear();
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A job control for a command: progress on stderr when it is a terminal and `json` is
/// false, and cancellation by SIGINT/SIGTERM.
pub fn for_terminal(json: bool) -> Job {
    let cancel = signal_cancel();
    if json || !std::io::stderr().is_terminal() {
        return Job { ctl: JobControl { observer: Arc::new(coffer_repository::observe::Ignore), cancel }, bar: None };
    }
    // Drawn from the job's first phase on: the command may create its job before it opens
    // the repository (so that a signal during the password's derivation cancels too).
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    pb.set_style(spinner());
    let bar = Arc::new(Bar { pb, state: Mutex::new(State::default()) });
    Job { ctl: JobControl { observer: bar.clone(), cancel }, bar: Some(bar) }
}

/// The process's cancellation token, with SIGINT and SIGTERM handlers installed the first
/// time: the first signal cancels, the second exits at once (130).
fn signal_cancel() -> Cancel {
    static TOKEN: OnceLock<Cancel> = OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let cancel = Cancel::new();
            let on_signal = cancel.clone();
            // Without handlers (cannot happen on Linux) the signals keep their default
            // action: the process dies at once, which is what a second signal does anyway.
            if let Ok(mut signals) =
                signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
            {
                let spawned = std::thread::Builder::new().name("coffer-signals".into()).spawn(move || {
                    for _ in signals.forever() {
                        if on_signal.is_cancelled() {
                            let _ =
                                writeln!(std::io::stderr(), "coffer: cancelled: interrupted again; exiting at once");
                            std::process::exit(i32::from(crate::error::CANCELLED));
                        }
                        on_signal.cancel();
                    }
                });
                drop(spawned);
            }
            cancel
        })
        .clone()
}

/// The renderer: an indicatif bar fed by a job's events.
struct Bar {
    pb: ProgressBar,
    state: Mutex<State>,
}

/// What the current phase has shown so far.
#[derive(Default)]
struct State {
    /// Empty until the first phase (nothing drawn before).
    phase: &'static str,
    done: Progress,
    /// The total as far as known, and whether it is complete.
    total: Option<(Progress, bool)>,
    /// Warnings of the whole job.
    warnings: u64,
}

impl State {
    /// Whether the bar counts bytes (else items): bytes when the phase's total has any.
    fn in_bytes(&self) -> bool {
        self.total.is_some_and(|(t, _)| t.bytes > 0) || (self.total.is_none() && self.done.bytes > 0)
    }

    /// What the phase's items are, for the message.
    fn unit(&self) -> &'static str {
        match self.phase {
            "backup" | "restore" | "scan" => "files",
            "prune" => "versions",
            "check" | "verify" | "read" => "objects",
            "wal" => "segments",
            _ => "items",
        }
    }

    fn message(&self) -> String {
        let unit = self.unit();
        let mut m = match self.total {
            Some((t, complete)) if t.items > 0 => {
                format!("{}/{}{} {unit}", self.done.items, t.items, if complete { "" } else { "+" })
            }
            _ => format!("{} {unit}", self.done.items),
        };
        if self.warnings > 0 {
            m += &format!(", {} warnings", self.warnings);
        }
        m
    }
}

fn spinner() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style(bytes: bool, eta: bool) -> ProgressStyle {
    let amount = if bytes { "{bytes}/{total_bytes}" } else { "{pos}/{len}" };
    let eta = if eta { " ETA {eta}" } else { " (counting)" };
    let template = format!("{{prefix}} [{{wide_bar}}] {amount} {{msg}}{eta} [{{elapsed}}]");
    ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Observer for Bar {
    fn event(&self, event: &Event<'_>) {
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Phase { name } => {
                if s.phase.is_empty() {
                    self.pb.set_draw_target(ProgressDrawTarget::stderr());
                    self.pb.enable_steady_tick(Duration::from_millis(200));
                }
                *s = State { phase: name, warnings: s.warnings, ..State::default() };
                self.pb.set_style(spinner());
                self.pb.set_prefix(*name);
                self.pb.unset_length();
                self.pb.set_position(0);
                self.pb.reset_eta();
            }
            Event::Total { total, complete } => {
                let was = s.total;
                s.total = Some((*total, *complete));
                let bytes = s.in_bytes();
                if was.is_none_or(|(_, c)| c != *complete) {
                    self.pb.set_style(bar_style(bytes, *complete));
                }
                self.pb.set_length(if bytes { total.bytes } else { total.items });
                self.pb.set_position(if bytes { s.done.bytes } else { s.done.items });
            }
            Event::Advance(p) => {
                s.done.items += p.items;
                s.done.bytes += p.bytes;
                let pos = if s.in_bytes() { s.done.bytes } else { s.done.items };
                self.pb.set_position(pos);
            }
            Event::Warning { .. } => s.warnings += 1,
            Event::Object { .. } | Event::Snapshot { .. } => {}
            // An event added later is not shown until a renderer is written for it.
            _ => {}
        }
        self.pb.set_message(s.message());
    }
}
