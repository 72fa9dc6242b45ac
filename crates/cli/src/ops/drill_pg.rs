//! `coffer drill pg`: a throwaway PostgreSQL server restored to a point in the recovery
//! window (random by default), checked, timed and removed
//! (`coffer_operations::drill::pg`). Without `--source` it opens the repository as
//! `coffer pg restore` does (the global repository flags, as the reader); with
//! `--source NAME` the repository, the cluster and the drill's settings (its SQL checks)
//! come from coffer.toml, and the flags given override them. A drill that did not pass
//! prints its report, then exits 10.

use crate::Global;
use crate::error::{NotProven, UsageError};
use crate::output::Output;
use anyhow::Result;
use clap::Args;
use coffer_operations::config::SqlCheck;
use coffer_operations::drill::pg::{PgDrillOptions, PgPoint, drill};
use coffer_operations::drill::{CheckOutcome, DrillReport};
use coffer_store::Role;
use jiff::Timestamp;
use std::path::PathBuf;
use std::time::Duration;

/// `coffer drill pg` (boxed: the drill subcommands' enum stays small).
#[derive(Debug, Args)]
pub struct DrillPgArgs {
    #[command(flatten)]
    args: Box<PgArgs>,
}

/// `coffer drill pg`'s flags.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("point").args(["time", "lsn", "name", "latest"])))]
#[command(group(clap::ArgGroup::new("which").args(["cluster", "sysid"])))]
struct PgArgs {
    /// Recover to this time (RFC 3339) [default: a random time in the recovery window]
    #[arg(long, value_parser = crate::parse::time, value_name = "TIME")]
    time: Option<Timestamp>,
    /// Recover to this LSN (e.g. 0/3000060)
    #[arg(long, value_name = "LSN")]
    lsn: Option<String>,
    /// Recover to this restore point (pg_create_restore_point)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Recover to the end of the archived WAL
    #[arg(long)]
    latest: bool,
    /// The cluster by the name its base backups were taken with [default: the source's
    /// name with --source; else the repository's only cluster]
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// The cluster by system identifier
    #[arg(long, value_name = "SYSID")]
    sysid: Option<u64>,
    /// Drill the [postgres.NAME] source of coffer.toml: its repository, cluster and
    /// [postgres.NAME.drill] settings (SQL checks, scratch, rto-target, run-as)
    #[arg(long, value_name = "NAME")]
    source: Option<String>,
    /// A SQL check, `NAME[@DATABASE]=QUERY=>EXPECT`: the query's first row, columns joined by
    /// `|`, must equal EXPECT (e.g. 'orders=select count(*) > 0 from orders=>t'); repeatable,
    /// added to the source's
    #[arg(long = "check", value_name = "NAME=QUERY=>EXPECT", value_parser = parse_check)]
    checks: Vec<SqlCheck>,
    /// Scratch directory (must not exist or be empty; removed after) [default: the source's
    /// scratch, else a new directory under the temporary directory]
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// Fail the drill when the server is not ready at the target within this long
    #[arg(long, value_parser = coffer_repository::options::parse_duration, value_name = "DURATION")]
    rto_target: Option<Duration>,
    /// The user the server runs as when coffer runs as root [default: postgres]
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// Leave the restored data directory in place (the server stopped)
    #[arg(long)]
    keep: bool,
    /// How long recovery may take
    #[arg(long, value_parser = coffer_repository::options::parse_duration, value_name = "DURATION")]
    start_timeout: Option<Duration>,
}

/// `NAME[@DATABASE]=QUERY=>EXPECT`: the name up to the first `=`, the expectation after the
/// last `=>`.
fn parse_check(s: &str) -> Result<SqlCheck, String> {
    let bad = || format!("invalid check {s:?}: expected NAME[@DATABASE]=QUERY=>EXPECT");
    let (head, rest) = s.split_once('=').ok_or_else(bad)?;
    let (query, expect) = rest.rsplit_once("=>").ok_or_else(bad)?;
    let (name, database) = match head.split_once('@') {
        Some((n, d)) => (n, Some(d.to_owned())),
        None => (head, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("invalid check name {name:?}: letters, digits, `-`, `_` and `.`"));
    }
    if query.trim().is_empty() || database.as_deref() == Some("") {
        return Err(bad());
    }
    Ok(SqlCheck { name: name.to_owned(), database, query: query.trim().to_owned(), expect: expect.trim().to_owned() })
}

/// Runs `coffer drill pg`.
///
/// # Errors
/// Bad arguments, a repository that cannot be opened, a drill that could not run; and
/// [`NotProven`] (exit 10) after printing the report of a drill that did not pass.
pub fn run(global: &Global, args: &DrillPgArgs) -> Result<()> {
    let args = &*args.args;
    // First: a signal from here on cancels the drill (its guards stop the server and
    // remove the scratch directory).
    let job = crate::progress::for_terminal(global.json);
    let host = crate::repo::host();
    let temp_scratch =
        || std::env::temp_dir().join(format!("coffer-drill-pg-{}", coffer_operations::event::random_id()));
    let (repo, mut opts) = match &args.source {
        Some(name) => {
            let config = super::load_config(global)?;
            let Some(source) = config.postgres.get(name) else {
                let names: Vec<&str> = config.postgres.keys().map(String::as_str).collect();
                return Err(UsageError(format!(
                    "no source [postgres.{name}] in {}; its PostgreSQL sources: {}",
                    super::config_path(global).display(),
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                ))
                .into());
            };
            let host = config.daemon.host.clone().unwrap_or(host);
            let opts = PgDrillOptions::for_source(name, source, &host, &temp_scratch());
            let repo = coffer_operations::open::open_repository(
                &config,
                &source.repository,
                Role::Reader,
                coffer_store::Clock::from_env(),
            )?;
            (repo, opts)
        }
        None => {
            let repo = crate::repo::open_repo(global, &global.repo, Role::Reader)?;
            let opts = PgDrillOptions {
                job: "manual".into(),
                source: None,
                repository: repo.location().to_string(),
                host,
                cluster: None,
                sysid: None,
                point: PgPoint::Random,
                checks: Vec::new(),
                scratch: temp_scratch(),
                rto_target: None,
                run_as: None,
                start_timeout: Duration::from_secs(3600),
                keep: false,
            };
            (repo, opts)
        }
    };
    if args.source.is_some() {
        opts.job = "manual".into();
    }
    if args.cluster.is_some() || args.sysid.is_some() {
        opts.cluster = args.cluster.clone();
        opts.sysid = args.sysid;
    }
    if let Some(t) = args.time {
        opts.point = PgPoint::Time(t);
    } else if let Some(l) = &args.lsn {
        opts.point = PgPoint::Lsn(l.clone());
    } else if let Some(n) = &args.name {
        opts.point = PgPoint::Name(n.clone());
    } else if args.latest {
        opts.point = PgPoint::Latest;
    }
    for c in &args.checks {
        if opts.checks.iter().any(|o| o.name == c.name) {
            return Err(UsageError(format!("check {:?} is given twice", c.name)).into());
        }
        opts.checks.push(c.clone());
    }
    if let Some(s) = &args.scratch {
        opts.scratch = std::path::absolute(s)?;
    }
    opts.rto_target = args.rto_target.or(opts.rto_target);
    opts.run_as = args.run_as.clone().or(opts.run_as);
    opts.start_timeout = args.start_timeout.unwrap_or(opts.start_timeout);
    opts.keep = args.keep;

    let report = crate::error::on_cancel(drill(&repo, &opts, &job), || {
        format!("the PostgreSQL drill was cancelled; its scratch directory {} is removed", opts.scratch.display())
    })?;
    job.finish();
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(&report)?;
    } else {
        render(&mut out, &report, &opts)?;
    }
    out.finish()?;
    super::drill::record_report(global, args.source.is_some().then_some(opts.repository.as_str()), &report)?;
    if report.passed {
        return Ok(());
    }
    let why = match &report.error {
        Some(e) => e.clone(),
        None => report.failures().join("; "),
    };
    Err(NotProven(format!("the PostgreSQL drill did not pass: {why}")).into())
}

fn render(out: &mut Output, r: &DrillReport, opts: &PgDrillOptions) -> Result<()> {
    if let Some(e) = &r.error {
        out.line(format!("error: {e}"))?;
    }
    for c in &r.checks {
        let o = match c.outcome {
            CheckOutcome::Passed => "passed",
            CheckOutcome::Failed => "FAILED",
            CheckOutcome::Skipped => "skipped",
        };
        out.line(format!("{o:<8} {:<14} {}", c.name, c.detail))?;
    }
    for x in &r.restored {
        out.line(format!(
            "restored base backup {} to {}; data from {}",
            x.snapshot.as_deref().map_or("-", |s| s.get(..8).unwrap_or(s)),
            x.target.as_deref().unwrap_or("-"),
            x.data_time.map_or_else(|| "-".to_owned(), |t| t.to_string())
        ))?;
    }
    let secs = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"));
    out.line(format!(
        "drill {}: RTO {}{}, data age {}{}",
        if r.passed { "passed" } else { "FAILED" },
        secs(r.rto_seconds),
        r.rto_target_seconds.map_or_else(String::new, |t| format!(" (target {t:.0}s)")),
        secs(r.data_age_seconds),
        if opts.keep { format!("; kept {}", opts.scratch.join("data").display()) } else { String::new() }
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_check;

    #[test]
    fn drill_pg_checks_parse_name_database_query_and_expectation() {
        let c = parse_check("rows@app=select count(*) from t where a = 1=>42").unwrap();
        assert_eq!((c.name.as_str(), c.database.as_deref()), ("rows", Some("app")));
        assert_eq!((c.query.as_str(), c.expect.as_str()), ("select count(*) from t where a = 1", "42"));
        let c = parse_check("ok=select f(a => 1), 'x'=>1|x").unwrap();
        assert_eq!((c.query.as_str(), c.expect.as_str(), c.database), ("select f(a => 1), 'x'", "1|x", None));
        assert_eq!(parse_check("e=select ''=>").unwrap().expect, "");
        for bad in ["noquery", "n=select 1", "=select 1=>1", "a b=select 1=>1", "n= =>1", "n@=select 1=>1"] {
            assert!(parse_check(bad).is_err(), "{bad}");
        }
    }
}
