//! `coffer`: the command line of Coffer, kept thin.
//!
//! Each command family has its own module and only parses arguments, calls the libraries
//! and prints; the work and the rules live in the libraries (`coffer-store` today).
//!
//! - [`open`] — which vault a command acts on and as which principal.
//! - [`s3`] — opening an `s3://` repository and as which role.
//! - [`pg`] — `coffer pg …`: PostgreSQL WAL archiving, base backups, PITR.
//! - [`iam`] — `coffer iam policies`: IAM policies for the roles and the bucket.
//! - [`vault`] — `coffer vault …`: init, put, get, rm, versions, retention, legal-hold,
//!   config, audit-log.
//! - [`output`] — text and `--json` output (every command has both).
//! - [`views`] — the `--json` documents, one typed view each (snake_case keys).
//! - [`progress`] — progress bars for library jobs, and SIGINT/SIGTERM as their cancellation.
//! - [`parse`] — durations and times on the command line.
//! - [`error`] — exit codes and the one-line error report.
//!
//! Errors: the CLI alone uses `anyhow`. A failure prints exactly one line,
//! `coffer: error: {:#}`, to stderr and exits with the code [`error::exit_code`] gives; a
//! broken pipe on stdout (e.g. `coffer vault get k | head -c1`) exits 0, as ripgrep does.

// The CLI is the one layer that talks to the terminal (clippy.toml's `disallowed-macros`
// keep every other crate from printing).
#![allow(clippy::disallowed_macros, reason = "the CLI renders results: printing is its job")]

mod alloc;
mod error;
mod iam;
mod logging;
mod open;
mod ops;
mod output;
mod parse;
mod pg;
mod progress;
mod repo;
mod s3;
mod vault;
mod views;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use coffer_store::Role;
use std::path::PathBuf;
use std::process::ExitCode;

/// Coffer: backups that nobody can destroy, with proof that they restore.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// The vault directory, or s3://BUCKET/PREFIX?endpoint=URL&region=R for an S3 bucket
    /// (an s3:// --repo is used when --vault is not given) [default: the embedded default
    /// vault in the user's data directory, e.g. ~/.local/share/coffer/vault]
    #[arg(long, global = true, env = "COFFER_VAULT", value_name = "DIR")]
    vault: Option<PathBuf>,

    /// Act as the principal of this role, with the access key the vault created for it at
    /// init (DIR/credentials/ROLE.toml) [default: writer; auditor for audit-log]
    #[arg(long, global = true, env = "COFFER_ROLE", value_name = "ROLE")]
    role: Option<Role>,

    /// Act as the principal of this credentials file (overrides --role's file)
    #[arg(long, global = true, env = "COFFER_CREDENTIALS", value_name = "FILE")]
    credentials: Option<PathBuf>,

    /// Print machine-readable output: one JSON document on stdout
    #[arg(long, global = true)]
    json: bool,

    /// The policy file (default: ~/.config/coffer/coffer.toml if it exists, else
    /// /etc/coffer/coffer.toml)
    #[arg(long, global = true, env = "COFFER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log lines on stderr: human on a terminal, JSON lines otherwise (auto), or as asked
    #[arg(long, global = true, env = "COFFER_LOG_FORMAT", value_enum, default_value_t, value_name = "FORMAT")]
    log_format: logging::LogFormat,

    /// Log level of Coffer's events (off, error, warn, info, debug, trace), or tracing
    /// filter directives (info,coffer_store=debug)
    #[arg(long, global = true, env = "COFFER_LOG", default_value = "info", value_name = "LEVEL")]
    log_level: String,

    #[command(flatten)]
    repo: repo::RepoOpts,

    /// Keep the local cache of repository metadata here (default: $XDG_CACHE_HOME/coffer,
    /// else ~/.cache/coffer; used for S3 repositories, and for any repository when named)
    #[arg(long, global = true, env = "COFFER_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Read every metadata object from the repository, not from the local cache
    #[arg(long, global = true)]
    no_cache: bool,

    /// Backups may take this host's last listing of the history (kept in the cache) for a
    /// complete one for this long, instead of listing again (0s: list on every backup)
    #[arg(long, global = true, env = "COFFER_RELIST_AFTER", value_name = "DURATION", value_parser = coffer_repository::options::parse_duration_or_zero, default_value = "1d")]
    relist_after: std::time::Duration,

    /// The command being run, as typed (`prune`, `pg restore`), for messages.
    #[arg(skip)]
    command: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a repository (and its local vault, if there is none)
    Init(repo::InitArgs),
    /// Back up files and directories into a new locked snapshot
    Backup(repo::backup::BackupArgs),
    /// List live snapshots
    Snapshots,
    /// List the entries of a snapshot
    Ls(repo::browse::LsArgs),
    /// Show what changed between two snapshots
    Diff(repo::browse::DiffArgs),
    /// Write one file of a snapshot to stdout
    Dump(repo::browse::DumpArgs),
    /// Show repository statistics
    Stats,
    /// Restore a snapshot into a directory, exactly
    Restore(repo::backup::RestoreArgs),
    /// Check structure, history, locks and (optionally) every byte
    Verify(repo::maintain::VerifyArgs),
    /// Remove versions whose retention has ended (as the pruner)
    Prune(repo::maintain::PruneArgs),
    /// List or add the repository's passwords
    Key(repo::key::KeyArgs),
    /// Create and use a vault: versioned, object-locked storage on a local directory or an
    /// S3 bucket (--vault s3://BUCKET/PREFIX?endpoint=URL)
    Vault(vault::VaultArgs),
    /// PostgreSQL: WAL archiving, base backups, point-in-time recovery
    Pg(pg::PgArgs),
    /// IAM policies for each role's keys and the bucket, for S3 repositories
    Iam(iam::IamArgs),
    /// Check or show the policy file (coffer.toml)
    Config(ops::config::ConfigArgs),
    /// Run the policy file's jobs on their schedules until stopped (SIGTERM); SIGHUP reloads
    Daemon(ops::daemon::DaemonArgs),
    /// Test the alert targets of the policy file
    Alert(ops::alert::AlertArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(ops::packaging::CompletionsArgs),
    /// Print the man page coffer(1), or write every page into --out DIR
    Man(ops::packaging::ManArgs),
    /// List the job runs recorded in the repository's ledger, or verify the ledger
    Ledger(ops::ledger::LedgerArgs),
    /// Show each job's last success and failure, next run, and PostgreSQL recovery windows
    /// (exit 9 when anything is failing or overdue)
    Status(ops::status::StatusArgs),
    /// Run one job of the policy file now and print its record (kept for `coffer status`)
    Run(ops::run::RunArgs),
    /// The security watch: the AWS CloudTrail template, the drift baseline
    Security(ops::security::SecurityArgs),
    /// Recovery drills: restore, check and time files, PostgreSQL and a full rebuild
    Drill(ops::drill::DrillArgs),
    /// A clause-by-clause report on the policy, with its evidence (exit 10 when a clause is
    /// not met or unknown)
    Audit(ops::audit::AuditArgs),
}

fn main() -> ExitCode {
    let (mut cli, matches) = match Cli::command().try_get_matches().and_then(|m| Ok((Cli::from_arg_matches(&m)?, m))) {
        Ok(parsed) => parsed,
        Err(err) => return error::report_usage(&err),
    };
    cli.global.command = command_path(&matches);
    // Still the only thread: parsing the arguments starts none.
    alloc::tune();
    let g = &cli.global;
    let r = &g.repo;
    if let Err(e) = logging::init(g.log_format, &g.log_level) {
        return error::report(&e);
    }
    // A point in time is a view for reading a repository; where nothing reads one through
    // it, the flag would be silently ignored.
    if let (
        Some(_),
        Command::Prune(_)
        | Command::Vault(_)
        | Command::Iam(_)
        | Command::Status(_)
        | Command::Config(_)
        | Command::Completions(_)
        | Command::Man(_),
    ) = (r.as_of, &cli.command)
    {
        let e = anyhow::Error::new(error::UsageError(
            "--as-of is for the commands that read a repository (snapshots, ls, diff, dump, stats, restore, verify, key list, ledger, pg info/restore/wal-fetch)".into(),
        ));
        return error::report(&e);
    }
    let result = match cli.command {
        Command::Init(args) => repo::init(g, r, &args),
        Command::Backup(args) => repo::backup::backup(g, r, &args),
        Command::Snapshots => repo::browse::snapshots(g, r),
        Command::Ls(args) => repo::browse::ls(g, r, &args),
        Command::Diff(args) => repo::browse::diff(g, r, &args),
        Command::Dump(args) => repo::browse::dump(g, r, &args),
        Command::Stats => repo::browse::stats(g, r),
        Command::Restore(args) => repo::backup::restore(g, r, &args),
        Command::Verify(args) => repo::maintain::run_verify(g, r, &args),
        Command::Prune(args) => repo::maintain::run_prune(g, r, &args),
        Command::Key(args) => repo::key::run(g, r, &args),
        Command::Vault(args) => vault::run(g, args),
        Command::Pg(args) => pg::run(g, r, args),
        Command::Iam(args) => iam::run(g, args),
        Command::Config(args) => ops::config::run(g, &args),
        Command::Daemon(args) => ops::daemon::run(g, &args),
        Command::Alert(args) => ops::alert::run(g, &args),
        Command::Completions(args) => ops::packaging::completions(Cli::command(), &args),
        Command::Man(args) => ops::packaging::man(Cli::command(), &args),
        Command::Ledger(args) => ops::ledger::run(g, r, &args),
        Command::Status(args) => ops::status::run(g, &args),
        Command::Run(args) => ops::run::run(g, &args),
        Command::Security(args) => ops::security::run(g, &args),
        Command::Drill(args) => ops::drill::run(g, &args),
        Command::Audit(args) => ops::audit::run(g, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => error::report(&err),
    }
}

/// The subcommand path of a parsed command line, e.g. `pg restore`.
fn command_path(matches: &clap::ArgMatches) -> String {
    let mut names = Vec::new();
    let mut cur = matches;
    while let Some((name, sub)) = cur.subcommand() {
        names.push(name);
        cur = sub;
    }
    names.join(" ")
}
