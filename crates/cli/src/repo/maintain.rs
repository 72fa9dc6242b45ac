//! `coffer verify` and `coffer prune`.

use super::{RepoOpts, open_repo, store_as};
use crate::Global;
use crate::error::{IntegrityError, SecurityError};
use crate::output::Output;
use anyhow::Result;
use clap::Args;
use coffer_repository::{ReadData, prune, verify};
use coffer_store::{Clock, Role};

/// `coffer verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also read and authenticate every byte of every pack live snapshots need
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Also read a random share of the packs, e.g. `10%`
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    pub read_data_subset: Option<f64>,
}

fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim_end_matches('%').parse().map_err(|_| format!("invalid percentage {s:?}; expected e.g. 10%"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("percentage {s:?} is not between 0% and 100%"));
    }
    Ok(v / 100.0)
}

/// Runs `coffer verify`; exit code 8 when a sign of tampering is found, else 6 when a problem is.
pub fn run_verify(global: &Global, r: &RepoOpts, args: &VerifyArgs) -> Result<()> {
    let job = crate::progress::for_terminal(global.json);
    let repo = open_repo(global, r, Role::Reader)?;
    let read = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(f)) => ReadData::Subset(f),
        (false, None) => ReadData::None,
    };
    let mut rep = crate::error::on_cancel(verify(&repo, read, &job), || {
        "verify stopped on request; nothing was verified (no report)".into()
    })?;
    job.finish();
    attribute(r, &mut rep.findings);
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(&rep)?;
    } else {
        out.line(format!(
            "{} snapshots, {} trees, {} data blobs, locks of {} packs checked, {} packs read",
            rep.snapshots, rep.trees, rep.blobs, rep.packs_locked, rep.packs_read
        ))?;
        for p in &rep.problems {
            out.line(format!("problem: {}: {}", p.object, p.message))?;
            for a in &p.affected {
                out.line(format!("  affects {a}"))?;
            }
        }
        for f in &rep.findings {
            out.line(finding_line(f))?;
            for a in &f.affected {
                out.line(format!("  affects {a}"))?;
            }
        }
        if rep.problems.is_empty() && rep.findings.is_empty() {
            out.line("no problems found")?;
        }
    }
    out.finish()?;
    if let Some(first) = rep.findings.first() {
        return Err(SecurityError(format!(
            "verify found {} sign(s) of tampering in {}{}; first: {}",
            rep.findings.len(),
            repo.location(),
            if rep.problems.is_empty() { String::new() } else { format!(" and {} problem(s)", rep.problems.len()) },
            finding_line(first)
        ))
        .into());
    }
    if let Some(first) = rep.problems.first() {
        return Err(IntegrityError(format!(
            "verify found {} problem(s) in {}; first: {}: {}",
            rep.problems.len(),
            repo.location(),
            first.object,
            first.message
        ))
        .into());
    }
    Ok(())
}

/// Names who wrote each finding's version, where the store records it: a local vault's
/// audit log, read as the auditor when this user can read the auditor's credentials (the
/// reader may not read the log). Anything else leaves the principal unknown, silently: the
/// finding itself is the alarm.
fn attribute(r: &RepoOpts, findings: &mut [coffer_repository::Finding]) {
    if findings.is_empty() {
        return;
    }
    let Ok((dir, _)) = super::vault_dir(r) else { return };
    if dir.to_str().is_some_and(crate::s3::is_s3) {
        return;
    }
    let Ok(vault) = coffer_store::LocalVault::open(&dir) else { return };
    let Some(auditor) = vault.read_credentials(Role::Auditor).ok().and_then(|c| vault.login(&c).ok()) else {
        return;
    };
    for f in findings {
        let Some(v) = &f.version else { continue };
        if let Some(e) = auditor.audit_entries_for(&f.key, &v.as_str().into()).ok().and_then(|es| es.into_iter().next())
        {
            f.principal = Some(format!("{} ({})", e.principal, e.role));
        }
    }
}

/// One security finding as a line: `security: KIND KEY [version V] [created T] [by P]: message`,
/// so monitoring can match it without parsing the message.
fn finding_line(f: &coffer_repository::Finding) -> String {
    let mut line = format!("security: {} {}", f.kind.as_str(), f.key);
    if let Some(v) = &f.version {
        line += &format!(" version {v}");
    }
    if let Some(c) = f.created {
        line += &format!(" created {c}");
    }
    if let Some(p) = &f.principal {
        line += &format!(" by {p}");
    }
    line + ": " + &f.message
}

/// `coffer prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be removed, remove nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

/// Runs `coffer prune` as the pruner: no password needed, no data read.
pub fn run_prune(global: &Global, r: &RepoOpts, args: &PruneArgs) -> Result<()> {
    let job = crate::progress::for_terminal(global.json);
    let (store, location) = store_as(global, r, Role::Pruner, false)?;
    let now = Clock::from_env().now();
    let rep = crate::error::on_cancel(prune(store.as_ref(), "", now, args.dry_run, &job), || {
        "prune stopped on request; it removed only versions whose retention had ended, and the next prune removes the rest".into()
    })?;
    job.finish();
    for s in &rep.skipped {
        eprintln!("coffer: warning: kept {s}");
    }
    let mut out = Output::new(global.json);
    if out.json() {
        out.doc(&rep)?;
    } else {
        out.line(format!(
            "{}{} versions ({} snapshots, {} packs, {}) whose retention ended from {location}; {} delete markers; {} versions still locked",
            if args.dry_run { "would remove " } else { "removed " },
            rep.versions_removed,
            rep.snapshots_removed,
            rep.packs_removed,
            super::backup::bytes(rep.bytes_freed),
            rep.markers_removed,
            rep.versions_kept
        ))?;
    }
    out.finish()
}
