//! The repository jobs: `verify` (as the `reader`, `coffer_repository::verify` as
//! `coffer verify` calls it) and `prune` (as the `pruner`, on the store alone, as
//! `coffer prune`: no password, no data read).

use super::{Done, Failure, JobContext, JobSpec, quote};
use crate::config::VerifyJob;
use coffer_repository::{JobControl, ReadData};
use coffer_store::{ErrorClass, Role};
use std::collections::BTreeMap;

/// How much pack data a verify job reads: `verify.read-data` is `"all"` or a percentage
/// (`"5%"`); absent, structure and locks only.
///
/// # Errors
/// A message naming the value when it is neither.
pub fn read_data(v: Option<&VerifyJob>) -> Result<ReadData, String> {
    // The policy file's own parse (validated at load; a config built by a library caller
    // is checked here).
    match v.and_then(|v| v.read_data.as_deref()).map(str::trim) {
        None => Ok(ReadData::None),
        Some(s) => crate::config::ReadDataSpec::parse(s)
            .map(crate::config::ReadDataSpec::read_data)
            .map_err(|e| format!("verify.read-data: {e}")),
    }
}

/// Verifies the repository. Problems (damage) and findings (signs of tampering) fail the
/// job with class `integrity`; their numbers and the first few are in the details.
pub(super) fn verify(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let job = ctx.config.repositories.get(&spec.repository).and_then(|r| r.verify.as_ref());
    let read = read_data(job).map_err(|e| Failure::new(ErrorClass::Invalid.as_str(), e))?;
    let repo = crate::open::open_repository(&ctx.config, &spec.repository, Role::Reader, ctx.clock.clone())?;
    let rep = coffer_repository::verify(&repo, read, ctl).map_err(|e| {
        let class = e.class();
        Failure::of(&e, class)
    })?;
    let mut details = BTreeMap::new();
    for (k, v) in [
        ("snapshots", rep.snapshots),
        ("trees", rep.trees),
        ("blobs", rep.blobs),
        ("packs_locked", rep.packs_locked),
        ("packs_read", rep.packs_read),
        ("problems", rep.problems.len()),
        ("findings", rep.findings.len()),
    ] {
        details.insert(k.to_owned(), v.to_string());
    }
    details.insert(
        "read_data".to_owned(),
        match read {
            ReadData::None => "none".to_owned(),
            ReadData::All => "all".to_owned(),
            ReadData::Subset(f) => format!("{}%", f * 100.0),
        },
    );
    foreign_versions(ctx, &spec.repository, &rep.findings);
    if rep.problems.is_empty() && rep.findings.is_empty() {
        return Ok(Done { files: Some(rep.snapshots as u64), details, ..Done::default() });
    }
    let problems: Vec<String> = rep.problems.iter().map(|p| format!("{}: {}", p.object, p.message)).collect();
    let findings: Vec<String> =
        rep.findings.iter().map(|f| format!("{} {}: {}", f.kind.as_str(), f.key, f.message)).collect();
    quote(&mut details, "problem", &problems);
    quote(&mut details, "finding", &findings);
    let first = findings.first().or(problems.first()).cloned().unwrap_or_default();
    let error = format!(
        "verify found {} problem(s) and {} sign(s) of tampering in repository {}; first: {first}",
        rep.problems.len(),
        rep.findings.len(),
        spec.repository
    );
    Err(Failure::new(ErrorClass::Integrity.as_str(), error).with(details))
}

/// The state key that remembers a foreign version (or delete marker) was reported.
#[must_use]
pub fn foreign_key(repository: &str, key: &str, version: &str) -> String {
    format!("foreign-reported:{repository}:{version}:{key}")
}

/// Each version or delete marker no Coffer writer made (a rogue writer: `docs/security.md`)
/// becomes one `foreign-version` security event, once per object version (remembered in
/// the state once a sink took it; `coffer run`, which has none, only logs it). The
/// principal is named from a local vault's audit log, read as the auditor, when it can be.
fn foreign_versions(ctx: &JobContext, repository: &str, findings: &[coffer_repository::Finding]) {
    use crate::security::audit_watch::clean;
    use coffer_repository::FindingKind as F;
    let foreign: Vec<_> = findings
        .iter()
        .filter(|f| matches!(f.kind, F::ExtraVersion | F::ContentMismatch | F::DeleteMarker) && f.version.is_some())
        .collect();
    if foreign.is_empty() {
        return;
    }
    let state = match crate::state::State::open(&ctx.state_dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the state to report foreign versions");
            return;
        }
    };
    let (auditor, store) = match crate::open::open_store_handle(&ctx.config, repository, Role::Auditor) {
        Ok((coffer_store::StoreHandle::Local(h), shown)) => (Some(h), Some(shown)),
        Ok((_, shown)) => (None, Some(shown)),
        Err(e) => {
            tracing::debug!(error = %e, "no audit log to name who wrote the foreign versions");
            (None, None)
        }
    };
    for f in foreign {
        let version = f.version.clone().unwrap_or_default();
        let seen = foreign_key(repository, &f.key, &version);
        if ctx.security.is_some() && state.get(&seen).ok().flatten().is_some() {
            continue;
        }
        let by = auditor
            .as_ref()
            .and_then(|a| a.audit_entries_for(&f.key, &version.as_str().into()).ok())
            .and_then(|es| es.into_iter().next());
        let what = if f.kind == F::DeleteMarker { "a delete marker" } else { "a version" };
        let who =
            by.as_ref().map(|e| format!(" by {} (role {})", clean(&e.principal), clean(&e.role))).unwrap_or_default();
        let mut ev = crate::security::SecurityEvent::new(
            crate::security::SecurityKind::ForeignVersion,
            "verify",
            ctx.clock.now(),
            format!(
                "verify of repository {repository} found {what} no Coffer writer made: {} version {}{who}: {}",
                clean(&f.key),
                clean(&version),
                clean(&f.message)
            ),
        );
        ev.repository = Some(repository.to_owned());
        ev.store.clone_from(&store);
        ev.time = by.as_ref().map(|e| e.time).or(f.created);
        ev.principal = by.as_ref().map(|e| clean(&e.principal));
        ev.role = by.as_ref().map(|e| clean(&e.role));
        ev.action = by.as_ref().map(|e| clean(&e.action));
        ev.key = Some(clean(&f.key));
        ev.object_version = Some(clean(&version));
        ev.outcome = by.as_ref().map(|e| clean(&e.outcome));
        ev.details.insert("finding".into(), f.kind.as_str().into());
        ev.details.insert("message".into(), clean(&f.message));
        if let Some(e) = &by {
            ev.details.insert("seq".into(), e.seq.to_string());
        }
        crate::security::watch::deliver(ctx.security.as_ref(), ev);
        if ctx.security.is_some() {
            if let Err(e) = state.set(&seen, &ctx.clock.now().to_string()) {
                tracing::error!(error = %e, "cannot remember a reported foreign version");
            }
        }
    }
}

/// Removes the versions whose retention ended, as the pruner. What was removed is in the
/// details; versions that could not be removed are warnings.
pub(super) fn prune(ctx: &JobContext, spec: &JobSpec, ctl: &JobControl) -> Result<Done, Failure> {
    let (store, _) = crate::open::open_store(&ctx.config, &spec.repository, Role::Pruner)?;
    let rep = coffer_repository::prune(store.as_ref(), "", ctx.clock.now(), false, ctl).map_err(|e| {
        let class = e.class();
        Failure::of(&e, class)
    })?;
    let mut done = Done { files: Some(rep.versions_removed), warnings: rep.skipped.clone(), ..Done::default() };
    for (k, v) in [
        ("versions_removed", rep.versions_removed),
        ("snapshots_removed", rep.snapshots_removed),
        ("packs_removed", rep.packs_removed),
        ("markers_removed", rep.markers_removed),
        ("versions_kept", rep.versions_kept),
        ("bytes_freed", rep.bytes_freed),
    ] {
        done.details.insert(k.to_owned(), v.to_string());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn job(read: Option<&str>) -> VerifyJob {
        VerifyJob {
            schedule: Schedule::parse("daily").unwrap(),
            random_delay: None,
            timeout: None,
            retries: None,
            read_data: read.map(str::to_owned),
        }
    }

    #[test]
    fn read_data_is_all_a_percentage_or_nothing() {
        assert_eq!(read_data(None), Ok(ReadData::None));
        assert_eq!(read_data(Some(&job(None))), Ok(ReadData::None));
        assert_eq!(read_data(Some(&job(Some("all")))), Ok(ReadData::All));
        assert_eq!(read_data(Some(&job(Some("5%")))), Ok(ReadData::Subset(0.05)));
        let e = read_data(Some(&job(Some("most")))).unwrap_err();
        assert!(e.contains("verify.read-data") && e.contains("most"), "{e}");
        assert!(read_data(Some(&job(Some("150%")))).is_err());
    }
}
