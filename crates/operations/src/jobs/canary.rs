//! The canary job (`crate::security::canary`): one round of probes, its evidence in the run
//! record (`probe_N`, `probes`, `refused`, `succeeded`, `skipped_roles`, …), which the
//! daemon flushes to the repository's ledger like every record.
//!
//! Outcome: `success` when every probe was refused and the default lock applied; `failed`
//! with class [`SECURITY_CLASS`] when a probe the contract forbids succeeded (or the default
//! lock was missing): the store does not enforce immutability. A probe that could not be
//! decided (the store unreachable) fails the round with that error's class (a transient
//! one is retried by the daemon).

use super::{Done, Failure, JobContext, JobSpec};
use crate::security::canary::{CanaryOptions, Got, run};
use coffer_repository::JobControl;

/// The error class of a canary that found the store not enforcing immutability (not an
/// `coffer_store::ErrorClass`: a verdict about the store, like the archive check's `archive`).
pub const SECURITY_CLASS: &str = "security";

/// The canary.
pub(super) fn canary(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let state = crate::State::open(&ctx.state_dir).map_err(|e| {
        let class = e.class();
        Failure::of(&e, class)
    })?;
    let window = ctx
        .config
        .repositories
        .get(&spec.repository)
        .map_or(spec.timeout, |r| r.security.canary.timeout)
        .min(spec.timeout);
    let options = CanaryOptions { window, ..CanaryOptions::default() };
    let rep = run(&ctx.config, &spec.repository, &state, &ctx.clock, ctx.security.as_ref(), &options, &ctl.cancel)
        .map_err(|e| {
            let class = e.class();
            Failure::of(&e, class)
        })?;
    let details = rep.details();
    if rep.succeeded() > 0 || !rep.default_check.ok {
        let first = rep.events.first().map_or_else(String::new, |e| e.summary.clone());
        let error = format!(
            "the canary found {} forbidden request(s) accepted{} by {}; first: {first}",
            rep.succeeded(),
            if rep.default_check.ok { "" } else { " and the default retention not applied" },
            rep.store
        );
        return Err(Failure::new(SECURITY_CLASS, error).with(details));
    }
    let undecided = rep.probes.iter().find_map(|p| match &p.got {
        Got::Inconclusive(class, msg) => Some((p, class, msg)),
        _ => None,
    });
    if let Some((p, class, msg)) = undecided {
        let error = format!("canary of {}: {} {} could not be decided: {msg}", rep.store, p.role, p.what);
        return Err(Failure::new(class.as_str(), error).with(details));
    }
    Ok(Done { files: Some(rep.probes.len() as u64), details, ..Done::default() })
}
