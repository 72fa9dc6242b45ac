//! Exit codes and the one-line error report.
//!
//! Every failure prints exactly one line to stderr, `coffer: error: {:#}` (the anyhow chain,
//! outermost context first, without repeats), and exits non-zero. The code says what kind of failure it was,
//! so scripts can tell a refusal from a fault without parsing text (README, "Exit codes"):
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success (also: stdout closed early, e.g. `| head`) |
//! | 1 | any other error (I/O, invalid request, not a vault, …) |
//! | 2 | bad command line: unknown flag, bad duration, time or role, conflicting options, or a role that cannot run the command |
//! | 3 | forbidden: the role may not do this, or the credentials were not accepted |
//! | 4 | locked: a retention period or legal hold protects the version |
//! | 5 | not found: no such key or version (or its latest version is a delete marker) |
//! | 6 | integrity: stored data failed verification, or the audit log chain is broken |
//! | 7 | backup incomplete: the snapshot was written, but some entries could not be read |
//! | 8 | security: `verify` found signs of tampering (its `security:` lines name them); `ledger verify` found a forged or removed record |
//! | 9 | unhealthy: `status` ran and found a job failing or overdue (any other failure of `status` is 1–6) |
//! | 126 | `pg wal-fetch` only: any failure but "not archived" (exit 1), so PostgreSQL aborts recovery |
//! | 130 | cancelled by SIGINT or SIGTERM: one line `coffer: cancelled: …`, nothing acknowledged |
//!
//! Codes 3 to 6 and 1 come from the [`ErrorClass`] of the first library error in the chain
//! ([`exit_code`]): every library error has one, and a wrapper takes the class of what it
//! wraps, so where in the stack an error arose (`restore`, `pg restore`, `vault get`) does
//! not change its code. Codes 2, 7 and 8 are the CLI's own verdicts, found in the same walk.

use coffer_store::{ErrorClass, Role, StoreError};
use std::io::Write as _;
use std::process::ExitCode;

/// Any error not classified below.
pub const FAILURE: u8 = 1;
/// Bad command line.
pub const USAGE: u8 = 2;
/// Refused by role, or unauthenticated.
pub const FORBIDDEN: u8 = 3;
/// Protected by retention or legal hold.
pub const LOCKED: u8 = 4;
/// No such key or version.
pub const NOT_FOUND: u8 = 5;
/// Corrupt data or a broken audit chain.
pub const INTEGRITY: u8 = 6;
/// A backup that could not read everything.
pub const INCOMPLETE: u8 = 7;

/// Signs of tampering found.
pub const SECURITY: u8 = 8;
/// `coffer status` ran and something is failing or overdue.
pub const UNHEALTHY: u8 = 9;
/// A drill ran and did not pass, or `coffer audit` found a clause of the policy not met: the
/// check worked and its answer is no.
pub const NOT_PROVEN: u8 = 10;
/// Stopped on request (SIGINT/SIGTERM, as a shell reports a process ended by SIGINT):
/// nothing the command did was acknowledged.
pub const CANCELLED: u8 = 130;

/// `pg wal-fetch`: the WAL file is not archived. PostgreSQL's `restore_command` protocol
/// reads any status from 1 to 125 as "absent" (recovery ends normally).
pub const WAL_ABSENT: u8 = 1;
/// `pg wal-fetch`: any other failure. PostgreSQL treats a status above 125 as fatal, so
/// recovery stops instead of ending early and promoting short of its target.
pub const WAL_FATAL: u8 = 126;

/// A `pg wal-fetch` failure: exit [`WAL_ABSENT`] for a file that is not archived (silently,
/// unless it is a gap), [`WAL_FATAL`] for anything else.
#[derive(Debug)]
pub struct FatalToRecovery(pub anyhow::Error);

impl std::fmt::Display for FatalToRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&chain_text(&self.0))
    }
}

impl std::error::Error for FatalToRecovery {}

impl FatalToRecovery {
    /// `Some(gap)` when the failure is "not archived".
    fn not_archived(&self) -> Option<bool> {
        self.0.chain().find_map(|c| match c.downcast_ref::<coffer_sources::postgres::PgError>() {
            Some(coffer_sources::postgres::PgError::NotArchived { gap, .. }) => Some(*gap),
            _ => None,
        })
    }
}

/// Signs of tampering found by `verify` (exit code [`SECURITY`]).
#[derive(Debug)]
pub struct SecurityError(pub String);

impl std::fmt::Display for SecurityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SecurityError {}

/// `coffer status` found a job failing or overdue (exit code [`UNHEALTHY`]): a verdict,
/// distinct from `status` itself failing, so monitoring can tell the two apart.
#[derive(Debug)]
pub struct Unhealthy(pub String);

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unhealthy {}

/// A drill that did not pass or an audit with a clause not met (exit code [`NOT_PROVEN`]):
/// a verdict, distinct from the drill or audit itself failing to run.
#[derive(Debug)]
pub struct NotProven(pub String);

impl std::fmt::Display for NotProven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotProven {}

/// A command line that parses but asks for something inconsistent (exit code [`USAGE`]).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A failed integrity check (exit code [`INTEGRITY`]).
#[derive(Debug)]
pub struct IntegrityError(pub String);

impl std::fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IntegrityError {}

/// What a cause in an error chain says about the failure: one of the CLI's own verdicts,
/// or a library error's [`ErrorClass`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Usage,
    Incomplete,
    Security,
    Unhealthy,
    NotProven,
    Class(ErrorClass),
}

/// The verdict of one cause, if it is an error that has one. Every library error type is
/// listed here once; each one's `class()` looks through the errors it wraps, so a
/// transparent wrapper (whose inner error never appears in the chain) cannot hide it.
fn verdict(cause: &(dyn std::error::Error + 'static)) -> Option<Verdict> {
    if cause.is::<UsageError>() {
        return Some(Verdict::Usage);
    }
    if cause.is::<SecurityError>() {
        return Some(Verdict::Security);
    }
    if cause.is::<crate::repo::backup::Incomplete>() {
        return Some(Verdict::Incomplete);
    }
    if cause.is::<Unhealthy>() {
        return Some(Verdict::Unhealthy);
    }
    if cause.is::<NotProven>() {
        return Some(Verdict::NotProven);
    }
    let class = if cause.is::<IntegrityError>() {
        ErrorClass::Integrity
    } else if let Some(e) = cause.downcast_ref::<crate::ops::run::JobFailed>() {
        e.class
    } else if let Some(e) = cause.downcast_ref::<StoreError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_repository::RepoError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_store::OpenError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_repository::OpenRepoError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_sources::files::FilesError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_sources::tar::TarError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_sources::postgres::PgError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_operations::daemon::DaemonError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_operations::ledger::LedgerError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_operations::state::StateError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_operations::open::OpenJobError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_operations::security::drift::DriftError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_operations::drill::DrillError>() {
        e.class()
    } else if let Some(e) = cause.downcast_ref::<coffer_operations::audit::AuditError>() {
        e.class()
    } else {
        return None;
    };
    Some(Verdict::Class(class))
}

/// The exit code of each verdict: the one place classes become exit codes.
fn code(v: Verdict) -> u8 {
    match v {
        Verdict::Usage => USAGE,
        Verdict::Incomplete => INCOMPLETE,
        Verdict::Security => SECURITY,
        Verdict::Unhealthy => UNHEALTHY,
        Verdict::NotProven => NOT_PROVEN,
        Verdict::Class(c) => match c {
            ErrorClass::Integrity => INTEGRITY,
            ErrorClass::Refused => FORBIDDEN,
            ErrorClass::Locked => LOCKED,
            ErrorClass::NotFound => NOT_FOUND,
            ErrorClass::Cancelled => CANCELLED,
            ErrorClass::Conflict | ErrorClass::Transient | ErrorClass::Invalid | ErrorClass::Io | ErrorClass::Other => {
                FAILURE
            }
            // A class added later is a failure until mapped.
            _ => FAILURE,
        },
    }
}

/// The exit code for `err`: the chain is walked once, outermost first, and the first error
/// that has a verdict decides (a wrapper's class already accounts for what it wraps).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain().find_map(verdict).map_or(FAILURE, code)
}

/// Whether the error is stdout having been closed by the reader (exit 0, like ripgrep).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// For a refusal by role, which roles may do it, so the message says how to proceed.
fn forbidden_hint(err: &anyhow::Error) -> Option<String> {
    err.chain().filter_map(|c| c.downcast_ref::<StoreError>()).find_map(|e| match e {
        StoreError::Forbidden { action, .. } => {
            let may: Vec<&str> = Role::ALL.into_iter().filter(|r| r.allows(*action)).map(Role::as_str).collect();
            (!may.is_empty()).then(|| format!(" (roles that may: {}; choose one with --role)", may.join(", ")))
        }
        _ => None,
    })
}

/// Adds `what` (what stopped and what it leaves, one line) to an error when it is a
/// cancellation, and leaves every other error as it is, so that `coffer: cancelled: …` says
/// what the command leaves behind.
pub fn on_cancel<T, E: Into<anyhow::Error>>(r: Result<T, E>, what: impl FnOnce() -> String) -> anyhow::Result<T> {
    r.map_err(|e| {
        let e = e.into();
        if exit_code(&e) == CANCELLED { e.context(what()) } else { e }
    })
}

/// Prints the one-line report for `err` and returns the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    if let Some(f) = err.downcast_ref::<FatalToRecovery>() {
        return match f.not_archived() {
            Some(gap) => {
                // The end of the archive is no error; a gap is worth a line in the server log.
                if gap {
                    print_line(&chain_text(&f.0));
                }
                ExitCode::from(WAL_ABSENT)
            }
            None => {
                print_line(&chain_text(&f.0));
                ExitCode::from(WAL_FATAL)
            }
        };
    }
    let code = exit_code(err);
    if code == CANCELLED {
        // Asked for: not an error. The library's own `cancelled` adds nothing to the line.
        let text: Vec<String> = err.chain().map(ToString::to_string).filter(|t| t != "cancelled").collect();
        let what = if text.is_empty() { "stopped on request".to_owned() } else { text.join(": ") };
        let _ = writeln!(std::io::stderr().lock(), "coffer: cancelled: {}", what.replace(['\r', '\n'], " ").trim());
        return ExitCode::from(code);
    }
    let mut line = chain_text(err);
    if let Some(hint) = forbidden_hint(err) {
        line.push_str(&hint);
    }
    print_line(&line);
    ExitCode::from(code)
}

/// The chain, outermost first, joined by `: ` (anyhow's `{:#}`), except that a cause whose
/// text the message before it already ends with is not repeated: some errors print their
/// source in their own message and also return it from `source()`.
fn chain_text(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Handles a command line clap refused: help and version print as usual; an error becomes
/// one line (clap's message without its usage block) and exit code [`USAGE`].
pub fn report_usage(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(err.kind(), K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand) {
        // Printing help can only fail on a closed stdout, which is not worth reporting.
        let _ = err.print();
        return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(USAGE));
    }
    let rendered = err.render().to_string();
    let message = rendered
        .trim_start()
        .strip_prefix("error:")
        .unwrap_or(&rendered)
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    print_line(&format!("{message} (see --help)"));
    ExitCode::from(USAGE)
}

/// Writes `coffer: error: …` as exactly one line.
fn print_line(message: &str) {
    let one_line = message.replace(['\r', '\n'], " ");
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(std::io::stderr().lock(), "coffer: error: {}", one_line.trim());
}
