//! The audit's evidence, gathered read-only for one repository of the policy file: the
//! store's protection (as the auditor), the repository's retention policy, snapshots, every
//! object version with its lock, and the ledger (as the reader), PostgreSQL coverage, and
//! the local state's pending records and alert test deliveries.
//!
//! Invariant guarded here: gathering never fails and never writes. What cannot be read is
//! kept as the one-line reason (`Err(String)`), so the clause that needs it says `unknown`;
//! a ledger body that does not parse is a problem listed in the report, not a crash.

use crate::config::Config;
use crate::drill::DrillReport;
use crate::event::RunRecord;
use crate::security::SecurityEvent;
use crate::security::record::SecurityAck;
use coffer_repository::{Id, JobControl, RetentionPolicy, Snapshot};
use coffer_sources::postgres::{ClusterInfo, InfoOptions};
use coffer_store::{ObjectVersion, Protection, Role};
use jiff::Timestamp;
use std::collections::BTreeMap;

/// Something read, or why it could not be.
pub type Read<T> = Result<T, String>;

/// At most this many ledger problems are listed (the count is always given).
const MAX_PROBLEMS: usize = 50;

/// What the ledger holds, parsed defensively.
#[derive(Clone, Debug, Default)]
pub struct LedgerFacts {
    /// Authentic records read.
    pub records: usize,
    /// Job runs.
    pub runs: Vec<RunRecord>,
    /// Drill reports.
    pub drills: Vec<DrillReport>,
    /// Security events, each with its acknowledgement if one is recorded.
    pub security: Vec<(SecurityEvent, Option<SecurityAck>)>,
    /// Earlier audit reports' records.
    pub audits: Vec<super::AuditRecord>,
    /// The chain's problems and bodies that do not parse, one line each.
    pub problems: Vec<String>,
}

/// Everything read for one repository.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The repository's name.
    pub name: String,
    /// Its location as shown.
    pub location: String,
    /// When the evidence was read.
    pub now: Timestamp,
    /// The start of the period.
    pub since: Timestamp,
    /// On S3: the bucket and prefix (for the generated bucket policy).
    pub s3: Option<(String, String)>,
    /// The store's protective configuration, read as the auditor.
    pub protection: Read<Protection>,
    /// The repository's retention policy (its stored config), read as the reader.
    pub retention: Read<RetentionPolicy>,
    /// Live and expired snapshots.
    pub snapshots: Read<Vec<(Id, Snapshot)>>,
    /// Snapshot objects that could not be read (key: why).
    pub damaged_snapshots: Vec<String>,
    /// Every object version (and delete marker) under the repository's prefix, keys
    /// relative to the prefix.
    pub versions: Read<Vec<ObjectVersion>>,
    /// The ledger.
    pub ledger: Read<LedgerFacts>,
    /// PostgreSQL clusters (none: no PostgreSQL source uses this repository).
    pub postgres: Option<Read<Vec<ClusterInfo>>>,
    /// Whether the writer's credentials open the store (what records this report).
    pub writer: Read<()>,
    /// The local state: records waiting in the outbox for this repository.
    pub outbox_pending: Read<usize>,
    /// The local state: the last delivery of `coffer alert test` per target (time).
    pub alert_tests: BTreeMap<String, String>,
    /// What could not be read, one line each (also in the fields above).
    pub problems: Vec<String>,
}

/// The state key prefix under which `coffer alert test` records a delivery (`alert-test/NAME`
/// = the RFC 3339 time of the delivery).
pub const ALERT_TEST_KEY: &str = "alert-test/";

fn one_line(e: &impl std::fmt::Display) -> String {
    super::clean(&e.to_string(), 400)
}

/// Gathers the evidence of repository `name` for the period from `since`.
#[must_use]
pub fn gather(config: &Config, name: &str, since: Timestamp, clock: &coffer_store::Clock) -> Evidence {
    let now = clock.now();
    let mut problems = Vec::new();
    let rcfg = config.repository(name).unwrap_or_default();
    let s3 = rcfg.location.as_deref().and_then(|l| match coffer_store::StoreLocation::parse(l) {
        Ok(coffer_store::StoreLocation::S3(s)) => Some((s.bucket.clone(), s.prefix.clone())),
        _ => None,
    });
    let mut location = String::new();
    let protection = match crate::open::open_store(config, name, Role::Auditor) {
        Ok((store, shown)) => {
            location = shown;
            store.protection().map_err(|e| one_line(&e))
        }
        Err(e) => Err(one_line(&e)),
    };
    if let Err(e) = &protection {
        problems.push(format!("protection (as the auditor): {e}"));
    }
    let writer = crate::open::open_store(config, name, Role::Writer).map(|_| ()).map_err(|e| one_line(&e));
    let mut damaged_snapshots = Vec::new();
    let (retention, snapshots, versions, ledger, postgres) =
        match crate::open::open_repository(config, name, Role::Reader, clock.clone()) {
            Ok(repo) => {
                if location.is_empty() {
                    location = repo.location().to_owned();
                }
                let snapshots = match repo.all_snapshots_and_damage() {
                    Ok((s, damaged)) => {
                        damaged_snapshots = damaged.iter().map(|(k, e)| one_line(&format!("{k}: {e}"))).collect();
                        Ok(s)
                    }
                    Err(e) => Err(one_line(&e)),
                };
                let versions = all_versions(&repo);
                let ledger = read_ledger(&repo).map_err(|e| one_line(&e));
                let has_pg = config.postgres.values().any(|p| p.repository == name);
                let postgres = has_pg.then(|| {
                    coffer_sources::postgres::info(&repo, &InfoOptions::default(), &JobControl::none())
                        .map(|r| r.clusters)
                        .map_err(|e| one_line(&e))
                });
                (Ok(repo.config().retention), snapshots, versions, ledger, postgres)
            }
            Err(e) => {
                let why = one_line(&e);
                let has_pg = config.postgres.values().any(|p| p.repository == name);
                (
                    Err(why.clone()),
                    Err(why.clone()),
                    Err(why.clone()),
                    Err(why.clone()),
                    has_pg.then(|| Err(why.clone())),
                )
            }
        };
    for (what, r) in [
        ("repository (as the reader)", retention.as_ref().err()),
        ("snapshots", snapshots.as_ref().err()),
        ("object versions", versions.as_ref().err()),
        ("ledger", ledger.as_ref().err()),
    ] {
        if let Some(e) = r {
            problems.push(format!("{what}: {e}"));
        }
    }
    if let Some(Err(e)) = &postgres {
        problems.push(format!("PostgreSQL coverage: {e}"));
    }
    for d in &damaged_snapshots {
        problems.push(format!("snapshot that does not read: {d}"));
    }
    if let Ok(l) = &ledger {
        let n = l.problems.len();
        problems.extend(l.problems.iter().take(MAX_PROBLEMS).map(|p| format!("ledger: {p}")));
        if n > MAX_PROBLEMS {
            problems.push(format!("ledger: {} more problems", n - MAX_PROBLEMS));
        }
    }
    let (outbox_pending, alert_tests) = local_state(config, name);
    Evidence {
        name: name.to_owned(),
        location: super::clean(&location, 300),
        now,
        since,
        s3,
        protection,
        retention,
        snapshots,
        damaged_snapshots,
        versions,
        ledger,
        postgres,
        writer,
        outbox_pending,
        alert_tests,
        problems,
    }
}

/// The daemon's local state, if there is one: records waiting for this repository, and the
/// alert test deliveries. Never created here.
fn local_state(config: &Config, name: &str) -> (Read<usize>, BTreeMap<String, String>) {
    let dir = match crate::state::state_dir(config.daemon.state_dir.as_deref()) {
        Ok(d) => d,
        Err(e) => return (Err(one_line(&e)), BTreeMap::new()),
    };
    if !dir.join("state.db").exists() {
        return (Ok(0), BTreeMap::new());
    }
    match crate::State::open(&dir) {
        Ok(state) => {
            let pending = state.outbox_entries(name, usize::MAX).map(|v| v.len()).map_err(|e| one_line(&e));
            let tests = state
                .scan(ALERT_TEST_KEY)
                .map(|v| {
                    v.into_iter()
                        .filter_map(|(k, t)| Some((k.strip_prefix(ALERT_TEST_KEY)?.to_owned(), super::clean(&t, 100))))
                        .collect()
                })
                .unwrap_or_default();
            (pending, tests)
        }
        Err(e) => (Err(one_line(&e)), BTreeMap::new()),
    }
}

/// Every version under the repository's prefix, in one listing pass (on S3 the listing is
/// enriched with each version's lock, heads run concurrently), keys relative to the prefix.
fn all_versions(repo: &coffer_repository::Repository) -> Read<Vec<ObjectVersion>> {
    let prefix = repo.prefix().to_owned();
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = repo.store().list_versions(&prefix, token.as_deref(), 1000).map_err(|e| one_line(&e))?;
        for mut v in page.items {
            if let Some(k) = v.key.strip_prefix(&prefix) {
                v.key = k.to_owned();
            }
            out.push(v);
        }
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(out)
}

/// Reads the ledger once and parses every body it knows, defensively.
fn read_ledger(repo: &coffer_repository::Repository) -> Result<LedgerFacts, coffer_repository::RepoError> {
    use crate::ledger::Body;
    let view = repo.ledger()?;
    let mut facts = LedgerFacts { records: view.entries.len(), ..LedgerFacts::default() };
    for p in &view.problems {
        facts.problems.push(format!(
            "{} {}: {}",
            p.kind.as_str(),
            super::clean(&p.object, 200),
            super::clean(&p.message, 300)
        ));
    }
    let mut acks: BTreeMap<String, SecurityAck> = BTreeMap::new();
    let mut events = Vec::new();
    for e in &view.entries {
        match crate::ledger::parse_body(repo, e) {
            Ok(Body::Run(r)) => facts.runs.push(r),
            Ok(Body::Drill(r)) => facts.drills.push(*r),
            Ok(Body::Security(r)) => events.push(r),
            Ok(Body::SecurityAck(r)) => {
                acks.insert(r.event_id.clone(), r);
            }
            Ok(Body::Audit(r)) => facts.audits.push(r),
            Ok(Body::Policy(_) | Body::Other) => {}
            Err(p) => facts.problems.push(format!(
                "{} {}: {}",
                p.kind.as_str(),
                super::clean(&p.object, 200),
                super::clean(&p.message, 300)
            )),
        }
    }
    facts.security = events
        .into_iter()
        .map(|ev| {
            let ack = acks.get(&ev.id).cloned();
            (ev, ack)
        })
        .collect();
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::Clock;

    /// Forged or broken bodies of every kind the audit reads are problems in the report,
    /// never a crash; the records that parse are kept.
    #[test]
    fn audit_hostile_ledger_bodies_are_problems_not_crashes() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let (repo, _) = crate::test_util::vault_repo(tmp.path(), &clock);
        let ok = DrillReport::new(crate::drill::DrillKind::Files, "<script>x</script>", "main", "h", clock.now());
        repo.append_ledger_as("h", crate::ledger::DRILL, &serde_json::to_value(&ok).unwrap()).unwrap();
        repo.append_ledger_as("h", crate::ledger::DRILL, &serde_json::json!({"id": 7, "kind": "teleport"})).unwrap();
        let mut newer = serde_json::to_value(&ok).unwrap();
        newer["version"] = serde_json::json!(99);
        repo.append_ledger_as("h", crate::ledger::DRILL, &newer).unwrap();
        repo.append_ledger_as("h", crate::ledger::AUDIT, &serde_json::json!("x".repeat(100_000))).unwrap();
        repo.append_ledger_as("h", crate::ledger::RUN, &serde_json::json!([1, 2, 3])).unwrap();
        repo.append_ledger_as("h", crate::ledger::SECURITY, &serde_json::json!({"summary": null})).unwrap();
        let facts = read_ledger(&repo).unwrap();
        assert_eq!(facts.records, 6);
        assert_eq!(facts.drills.len(), 1);
        assert_eq!(facts.drills[0].job, "<script>x</script>", "kept as text; the renderers escape it");
        assert_eq!(facts.problems.len(), 5, "{:#?}", facts.problems);
        assert_eq!(facts.problems.iter().filter(|p| p.starts_with("bad-body")).count(), 4);
        assert_eq!(facts.problems.iter().filter(|p| p.starts_with("newer-format")).count(), 1);
        assert!(facts.problems.iter().all(|p| p.chars().count() < 700), "bounded");
    }
}
