//! The job ledger: every run and every security event (with its acknowledgement), appended
//! to the repository as a locked, hash-chained record, so the history of what ran and what
//! was seen is tamper-evident and outlives the host.
//!
//! Invariant guarded here: a record reaches the repository only through the local outbox
//! ([`crate::state::State::record_run`], [`crate::state::State::record_security`]), and leaves the outbox only once the repository
//! holds it; so nothing recorded is lost when the repository is unreachable. And a record
//! is appended once: a crash between the append and the outbox's removal leaves the record
//! in both, and the next flush finds its id in the ledger and only removes it.
//!
//! Records are stored with kind [`RUN`] and the [`RunRecord`] as body, [`SECURITY`] and the
//! [`SecurityEvent`], [`SECURITY_ACK`] and the [`SecurityAck`] (`docs/ledger.md`). Reading
//! them back ([`read_runs`], [`read_security`]) treats every body as hostile: one that does not parse
//! is a problem to report, never a crash.

use crate::event::RunRecord;
use crate::security::SecurityEvent;
use crate::security::record::SecurityAck;
use crate::state::{OutboxEntry, State, StateError};
use coffer_repository::{Id, LedgerProblem, LedgerProblemKind, Repository};
use std::collections::HashSet;

/// The ledger record kind of a job run.
pub const RUN: &str = "run";
/// The ledger record kind of a security event (body: [`SecurityEvent`]).
pub const SECURITY: &str = "security";
/// The ledger record kind of a security event's acknowledgement (body: [`SecurityAck`]).
pub const SECURITY_ACK: &str = "security-ack";

/// The ledger record kind of a drill report (body: [`crate::drill::DrillReport`]).
pub const DRILL: &str = "drill";
/// The ledger record kind of the policy file as the daemon ran it (body:
/// [`crate::drill::PolicyRecord`]): what a rebuild drill reads from the repository alone.
pub const POLICY: &str = "policy";
/// The ledger record kind of an audit report's digest (body: [`crate::audit::AuditRecord`]).
pub const AUDIT: &str = "audit";

/// The `&'static` name of an outbox kind other than run and security ones (an unknown kind
/// is stored as `other`: the outbox only ever holds what this build wrote).
fn other_kind(kind: &str) -> &'static str {
    match kind {
        DRILL => DRILL,
        POLICY => POLICY,
        AUDIT => AUDIT,
        _ => "other",
    }
}

/// Why the ledger could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The local state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] coffer_repository::RepoError),
}

impl LedgerError {
    /// The class of this error: that of what failed.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        match self {
            Self::State(e) => e.class(),
            Self::Repo(e) => e.class(),
        }
    }
}

/// Appends to `repo`'s ledger every record waiting in `state`'s outbox for repository
/// `name` (runs, security events, acknowledgements), oldest first; returns how many were
/// stored.
///
/// A record the ledger already holds (appended, then the process stopped before the outbox
/// forgot it) is not appended again, only removed from the outbox: a run by its `run_id`, a
/// security event by its `id`, an acknowledgement by its `event_id`.
///
/// # Errors
/// [`LedgerError`]; what was not stored stays in the outbox.
pub fn flush_outbox(state: &State, name: &str, repo: &Repository) -> Result<usize, LedgerError> {
    let pending = state.outbox_entries(name, usize::MAX)?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut present = present_ids(repo)?;
    let mut stored = 0;
    for (outbox_id, entry) in pending {
        let (kind, key, host, body) = match &entry {
            OutboxEntry::Run(r) => (RUN, r.run_id.clone(), &r.host, serde_json::to_value(r)),
            OutboxEntry::Security { host, event } => (SECURITY, event.id.clone(), host, serde_json::to_value(event)),
            OutboxEntry::SecurityAck { host, ack } => {
                (SECURITY_ACK, ack.event_id.clone(), host, serde_json::to_value(ack))
            }
            OutboxEntry::Other { kind, host, body } => {
                let key = body.get("id").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
                (other_kind(kind), key, host, Ok(body.clone()))
            }
        };
        if present.contains(&(kind, key.clone())) {
            tracing::debug!(kind, id = %key, repository = name, "already in the ledger");
        } else {
            let body = body.expect("a ledger record serialises");
            let id = repo.append_ledger_as(host, kind, &body)?;
            tracing::debug!(kind, id = %key, repository = name, ledger_record = %id, "appended to the ledger");
            present.insert((kind, key));
            stored += 1;
        }
        state.outbox_done(outbox_id)?;
    }
    Ok(stored)
}

/// The ids of the records the ledger holds, by kind (every branch: after a fork, a record
/// may sit on either): runs' `run_id`, security events' `id`, acknowledgements' `event_id`.
fn present_ids(repo: &Repository) -> Result<HashSet<(&'static str, String)>, LedgerError> {
    let view = repo.ledger()?;
    Ok(view
        .entries
        .iter()
        .filter_map(|e| {
            let (kind, field) = match e.record.kind.as_str() {
                RUN => (RUN, "run_id"),
                SECURITY => (SECURITY, "id"),
                SECURITY_ACK => (SECURITY_ACK, "event_id"),
                DRILL | POLICY | AUDIT => (other_kind(&e.record.kind), "id"),
                _ => return None,
            };
            e.record.body.get(field).and_then(serde_json::Value::as_str).map(|id| (kind, id.to_owned()))
        })
        .collect())
}

/// Run records with their ledger ids, in chain order.
pub type Runs = Vec<(Id, RunRecord)>;

/// Every run record of `repo`'s ledger, in chain order, with its ledger id, and every
/// problem: those of the chain ([`Repository::ledger`]) and bodies that do not parse as a
/// run record ([`LedgerProblemKind::BadBody`]). Records of other kinds are passed over.
///
/// # Errors
/// Store errors other than damage.
pub fn read_runs(repo: &Repository) -> Result<(Runs, Vec<LedgerProblem>), LedgerError> {
    let view = repo.ledger()?;
    let mut problems = view.problems;
    let mut runs = Vec::new();
    for e in view.entries.iter().filter(|e| e.record.kind == RUN) {
        match parse_body(repo, e) {
            Ok(Body::Run(r)) => runs.push((e.id, r)),
            Ok(_) => {}
            Err(p) => problems.push(p),
        }
    }
    Ok((runs, problems))
}

/// An authentic ledger record's body, parsed by its kind.
#[derive(Clone, Debug)]
pub enum Body {
    /// Kind [`RUN`].
    Run(RunRecord),
    /// Kind [`SECURITY`].
    Security(SecurityEvent),
    /// Kind [`SECURITY_ACK`].
    SecurityAck(SecurityAck),
    /// Kind [`DRILL`].
    Drill(Box<crate::drill::DrillReport>),
    /// Kind [`POLICY`].
    Policy(Box<crate::drill::PolicyRecord>),
    /// Kind [`AUDIT`].
    Audit(crate::audit::AuditRecord),
    /// A kind this build does not know: passed over.
    Other,
}

/// Parses the body of `e` by its kind: the one place every reader of the ledger turns a
/// body into a record. Bodies are hostile input (a host holding the key can write any): one
/// that does not parse is a [`LedgerProblemKind::BadBody`] problem, one of a newer format a
/// [`LedgerProblemKind::NewerFormat`] problem, never a crash.
///
/// # Errors
/// The problem, naming the record's storage key.
pub fn parse_body(repo: &Repository, e: &coffer_repository::LedgerEntry) -> Result<Body, LedgerProblem> {
    fn typed<T: serde::de::DeserializeOwned>(
        repo: &Repository,
        e: &coffer_repository::LedgerEntry,
        what: &str,
        current: u32,
        version: impl Fn(&T) -> u32,
    ) -> Result<T, LedgerProblem> {
        match serde_json::from_value::<T>(e.record.body.clone()) {
            Ok(r) if version(&r) > current => Err(LedgerProblem {
                kind: LedgerProblemKind::NewerFormat,
                object: repo.ledger_key(&e.id),
                message: format!("{what} format {} is newer than this coffer reads; ignored", version(&r)),
            }),
            Ok(r) => Ok(r),
            Err(err) => Err(LedgerProblem {
                kind: LedgerProblemKind::BadBody,
                object: repo.ledger_key(&e.id),
                message: format!("an authentic record of kind {} whose body is not a {what}: {err}", e.record.kind),
            }),
        }
    }
    use crate::drill::{DrillReport, PolicyRecord};
    Ok(match e.record.kind.as_str() {
        RUN => Body::Run(typed(repo, e, "run record", RunRecord::VERSION, |r: &RunRecord| r.version)?),
        SECURITY => {
            Body::Security(typed(repo, e, "security event", SecurityEvent::VERSION, |r: &SecurityEvent| r.version)?)
        }
        SECURITY_ACK => {
            Body::SecurityAck(typed(repo, e, "security acknowledgement", SecurityAck::VERSION, |r: &SecurityAck| {
                r.version
            })?)
        }
        DRILL => {
            Body::Drill(Box::new(typed(repo, e, "drill report", DrillReport::VERSION, |r: &DrillReport| r.version)?))
        }
        POLICY => {
            Body::Policy(Box::new(typed(repo, e, "policy record", PolicyRecord::VERSION, |r: &PolicyRecord| {
                r.version
            })?))
        }
        AUDIT => Body::Audit(typed(
            repo,
            e,
            "audit record",
            crate::audit::AuditRecord::VERSION,
            |r: &crate::audit::AuditRecord| r.version,
        )?),
        _ => Body::Other,
    })
}

/// The security records of a ledger: events and acknowledgements, in chain order.
#[derive(Clone, Debug, Default)]
pub struct SecurityRecords {
    /// Security events (kind `security`).
    pub events: Vec<(Id, SecurityEvent)>,
    /// Acknowledgements (kind `security-ack`).
    pub acks: Vec<(Id, SecurityAck)>,
}

/// Every security event and acknowledgement of `repo`'s ledger, in chain order, with their
/// ledger ids, and every problem (the chain's, and bodies that do not parse or are of a
/// newer format). Records of other kinds are passed over.
///
/// # Errors
/// Store errors other than damage.
pub fn read_security(repo: &Repository) -> Result<(SecurityRecords, Vec<LedgerProblem>), LedgerError> {
    let view = repo.ledger()?;
    let mut problems = view.problems;
    let mut out = SecurityRecords::default();
    for e in view.entries.iter().filter(|e| [SECURITY, SECURITY_ACK].contains(&e.record.kind.as_str())) {
        match parse_body(repo, e) {
            Ok(Body::Security(r)) => out.events.push((e.id, r)),
            Ok(Body::SecurityAck(r)) => out.acks.push((e.id, r)),
            Ok(_) => {}
            Err(p) => problems.push(p),
        }
    }
    Ok((out, problems))
}

/// Drill reports with their ledger ids, in chain order.
pub type Drills = Vec<(Id, crate::drill::DrillReport)>;

/// Every drill report of `repo`'s ledger (kind [`DRILL`]), in chain order, with its ledger
/// id, and every problem: the chain's, bodies that do not parse as a report
/// ([`LedgerProblemKind::BadBody`]) and reports of a newer format
/// ([`LedgerProblemKind::NewerFormat`]). Records of other kinds are passed over. The bodies
/// are hostile input: a report is only as true as the host that wrote it, which the ledger's
/// authentication vouches for (the repository key), not its content. A report whose `id`
/// an earlier one has (appended twice by two flushes racing) is listed once, the first.
///
/// # Errors
/// Store errors other than damage.
pub fn read_drills(repo: &Repository) -> Result<(Drills, Vec<LedgerProblem>), LedgerError> {
    let view = repo.ledger()?;
    let mut problems = view.problems;
    let mut drills = Vec::new();
    let mut seen = HashSet::new();
    for e in view.entries.iter().filter(|e| e.record.kind == DRILL) {
        match parse_body(repo, e) {
            Ok(Body::Drill(r)) => {
                if seen.insert(r.id.clone()) {
                    drills.push((e.id, *r));
                }
            }
            Ok(_) => {}
            Err(p) => problems.push(p),
        }
    }
    Ok((drills, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{JobKind, Outcome};
    use coffer_store::{Clock, ObjectStore};
    use std::sync::Arc;

    fn run(n: u32, clock: &Clock) -> RunRecord {
        RunRecord {
            version: RunRecord::VERSION,
            run_id: format!("run{n}"),
            job: "home/backup".into(),
            kind: JobKind::Backup,
            source: Some("home".into()),
            repository: "main".into(),
            host: "h1".into(),
            scheduled: None,
            late: false,
            started: clock.now(),
            finished: clock.now(),
            outcome: if n % 2 == 0 { Outcome::Success } else { Outcome::Failed },
            attempts: 1,
            error_class: None,
            error: None,
            files: Some(u64::from(n)),
            bytes_read: None,
            bytes_added: None,
            snapshot: None,
            warnings: 0,
            details: std::collections::BTreeMap::new(),
        }
    }

    fn setup_with_store() -> (tempfile::TempDir, Clock, Repository, State, Arc<dyn ObjectStore>) {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let (repo, w) = crate::test_util::vault_repo(tmp.path(), &clock);
        let state = State::open(&tmp.path().join("state")).unwrap();
        (tmp, clock, repo, state, w)
    }

    fn setup() -> (tempfile::TempDir, Clock, Repository, State) {
        let (tmp, clock, repo, state, _) = setup_with_store();
        (tmp, clock, repo, state)
    }

    #[test]
    fn flush_appends_in_order_and_empties_the_outbox() {
        let (_tmp, clock, repo, state) = setup();
        for n in 0..3 {
            state.record_run(&run(n, &clock)).unwrap();
        }
        assert_eq!(flush_outbox(&state, "other", &repo).unwrap(), 0, "another repository's outbox");
        assert_eq!(flush_outbox(&state, "main", &repo).unwrap(), 3);
        assert!(state.outbox("main", 10).unwrap().is_empty());
        assert_eq!(flush_outbox(&state, "main", &repo).unwrap(), 0);
        let (runs, problems) = read_runs(&repo).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(runs.iter().map(|(_, r)| r.run_id.as_str()).collect::<Vec<_>>(), ["run0", "run1", "run2"]);
        assert_eq!(runs[1].1, run(1, &clock));
    }

    /// A crash between the append and `outbox_done`: the record is in the ledger and still
    /// in the outbox; the next flush removes it without appending it twice.
    #[test]
    fn flush_is_idempotent_across_a_crash_between_append_and_outbox_done() {
        let (_tmp, clock, repo, state) = setup();
        state.record_run(&run(0, &clock)).unwrap();
        state.record_run(&run(1, &clock)).unwrap();
        // What the crashed flush did: appended the first record, then stopped.
        let (_, first) = state.outbox("main", 1).unwrap().remove(0);
        repo.append_ledger_as("h1", RUN, &serde_json::to_value(&first).unwrap()).unwrap();
        assert_eq!(flush_outbox(&state, "main", &repo).unwrap(), 1, "only the second is appended");
        assert!(state.outbox("main", 10).unwrap().is_empty());
        let (runs, problems) = read_runs(&repo).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(runs.iter().map(|(_, r)| r.run_id.as_str()).collect::<Vec<_>>(), ["run0", "run1"]);
    }

    #[test]
    fn a_body_that_is_not_a_run_record_is_a_problem_not_a_crash() {
        let (_tmp, clock, repo, _state) = setup();
        repo.append_ledger_as("h1", RUN, &serde_json::json!({ "run_id": 7, "junk": [1, 2] })).unwrap();
        repo.append_ledger_as("h1", "note", &serde_json::json!("other kinds are passed over")).unwrap();
        repo.append_ledger_as("h1", RUN, &serde_json::to_value(run(2, &clock)).unwrap()).unwrap();
        let (runs, problems) = read_runs(&repo).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(problems.iter().map(|p| p.kind).collect::<Vec<_>>(), [LedgerProblemKind::BadBody]);
    }

    #[test]
    fn what_the_repository_refuses_stays_in_the_outbox() {
        let (_tmp, clock, repo, state, store) = setup_with_store();
        state.record_run(&run(0, &clock)).unwrap();
        // A handle that cannot write (a view of the past): the append fails.
        let past = Repository::open_as_of(store, "t", "", b"pw", clock.clone(), Some(clock.now())).unwrap();
        assert!(flush_outbox(&state, "main", &past).is_err());
        assert_eq!(state.outbox("main", 10).unwrap().len(), 1, "kept for the next flush");
        assert_eq!(flush_outbox(&state, "main", &repo).unwrap(), 1);
    }

    fn security_event(clock: &Clock) -> SecurityEvent {
        let mut e = SecurityEvent::new(
            crate::security::SecurityKind::LockConfigChange,
            "audit-log",
            clock.now(),
            "admin tried to change the lock configuration",
        );
        e.repository = Some("main".into());
        e.principal = Some("admin".into());
        e
    }

    /// Security events and their acknowledgements reach the ledger once each (even after a
    /// crash between the append and the outbox's removal); `read_runs` passes over them.
    #[test]
    fn security_alert_events_and_acks_reach_the_ledger_once() {
        let (_tmp, clock, repo, state) = setup();
        let e = security_event(&clock);
        state.record_run(&run(0, &clock)).unwrap();
        assert!(state.record_security(&e, "h1", &["main".into()]).unwrap());
        // The crashed flush: the event appended, still in the outbox.
        repo.append_ledger_as("h1", SECURITY, &serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(flush_outbox(&state, "main", &repo).unwrap(), 1, "only the run");
        let ack = crate::security::record::ack(&state, &e.id, "alice", clock.now(), "h2", None).unwrap();
        assert!(matches!(ack, crate::state::AckOutcome::Acked(_)));
        assert_eq!(flush_outbox(&state, "main", &repo).unwrap(), 1, "the acknowledgement");
        assert_eq!(flush_outbox(&state, "main", &repo).unwrap(), 0);
        let (runs, problems) = read_runs(&repo).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(runs.len(), 1);
        let (sec, problems) = read_security(&repo).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(sec.events.len(), 1);
        assert_eq!(sec.events[0].1, e);
        assert_eq!(sec.acks.len(), 1);
        assert_eq!((sec.acks[0].1.event_id.as_str(), sec.acks[0].1.acked_by.as_str()), (e.id.as_str(), "alice"));
    }

    /// A forged or newer body of kind security is a problem, not a crash.
    #[test]
    fn security_alert_hostile_security_bodies_are_problems() {
        let (_tmp, clock, repo, _state) = setup();
        repo.append_ledger_as("h1", SECURITY, &serde_json::json!({ "id": 7, "kind": [] })).unwrap();
        let mut newer = serde_json::to_value(security_event(&clock)).unwrap();
        newer["version"] = serde_json::json!(99);
        repo.append_ledger_as("h1", SECURITY, &newer).unwrap();
        repo.append_ledger_as("h1", SECURITY_ACK, &serde_json::json!("x".repeat(10_000))).unwrap();
        let (sec, problems) = read_security(&repo).unwrap();
        assert!(sec.events.is_empty() && sec.acks.is_empty());
        assert_eq!(
            problems.iter().map(|p| p.kind).collect::<Vec<_>>(),
            [LedgerProblemKind::BadBody, LedgerProblemKind::NewerFormat, LedgerProblemKind::BadBody]
        );
    }

    fn drill_report(clock: &Clock, passed: bool) -> crate::drill::DrillReport {
        use crate::drill::{CheckOutcome, DrillKind, DrillReport};
        let mut r = DrillReport::new(DrillKind::Files, "home/drill", "main", "h1", clock.now());
        let outcome = if passed { CheckOutcome::Passed } else { CheckOutcome::Failed };
        r.check("content", Some("home"), outcome, "12 files");
        r.rto_seconds = Some(1.5);
        r.finish(clock.now());
        r
    }

    /// Drill reports queued in the outbox reach the ledger once; `read_drills` reads them
    /// back, and hostile or newer bodies are problems, never a crash; other kinds pass over.
    #[test]
    fn drill_jobs_read_drills_reads_reports_and_hostile_bodies_are_problems() {
        let (_tmp, clock, repo, state) = setup();
        let good = drill_report(&clock, true);
        let bad = drill_report(&clock, false);
        for r in [&good, &bad] {
            state.record_other("main", DRILL, "h1", &serde_json::to_value(r).unwrap()).unwrap();
        }
        state.record_run(&run(0, &clock)).unwrap();
        // The crashed flush: the first report appended, still in the outbox.
        repo.append_ledger_as("h1", DRILL, &serde_json::to_value(&good).unwrap()).unwrap();
        assert_eq!(flush_outbox(&state, "main", &repo).unwrap(), 2, "the second report and the run");
        // Two flushes racing (a manual drill's and the daemon's): listed once.
        repo.append_ledger_as("h1", DRILL, &serde_json::to_value(&bad).unwrap()).unwrap();
        // Hostile bodies: wrong types, a huge string, a newer format, a NaN-free but absurd
        // number, and nested junk.
        repo.append_ledger_as("h1", DRILL, &serde_json::json!({ "id": 7, "kind": [] })).unwrap();
        repo.append_ledger_as("h1", DRILL, &serde_json::json!("x".repeat(10_000))).unwrap();
        let mut newer = serde_json::to_value(&good).unwrap();
        newer["version"] = serde_json::json!(99);
        newer["id"] = serde_json::json!("newer");
        repo.append_ledger_as("h1", DRILL, &newer).unwrap();
        let mut absurd = serde_json::to_value(&good).unwrap();
        absurd["id"] = serde_json::json!("absurd");
        absurd["rto_seconds"] = serde_json::json!(-1e308);
        absurd["checks"] = serde_json::json!([{ "name": "x", "outcome": "maybe", "detail": "" }]);
        repo.append_ledger_as("h1", DRILL, &absurd).unwrap();
        let (drills, problems) = read_drills(&repo).unwrap();
        assert_eq!(drills.iter().map(|(_, r)| r.id.as_str()).collect::<Vec<_>>(), [good.id.as_str(), bad.id.as_str()]);
        assert_eq!(drills[0].1, good);
        assert!(!drills[1].1.passed);
        assert_eq!(
            problems.iter().map(|p| p.kind).collect::<Vec<_>>(),
            [
                LedgerProblemKind::BadBody,
                LedgerProblemKind::BadBody,
                LedgerProblemKind::NewerFormat,
                LedgerProblemKind::BadBody
            ]
        );
        assert!(problems[0].message.contains("kind drill"), "{}", problems[0].message);
        let (runs, problems) = read_runs(&repo).unwrap();
        assert_eq!(runs.len(), 1);
        assert!(problems.is_empty(), "{problems:?}");
    }
}
