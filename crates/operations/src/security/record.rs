//! Security events recorded, raised, acknowledged and listed (`docs/security.md`, "Events").
//!
//! Invariants guarded here:
//! - a security event is recorded in the local state — its own table, and the ledger outbox
//!   of the repositories it concerns, in one transaction — before anything else happens to
//!   it, so an alert that cannot be delivered or a ledger that cannot be reached loses
//!   nothing, and the event reaches each ledger once (by its id);
//! - an acknowledgement is evidence too: who and when are kept with the event, and a
//!   `security-ack` record goes to the same ledgers, so silencing an alert leaves a trace
//!   in the repository that outlives the host.

use super::{SecurityEvent, SecurityKind};
use crate::config::Config;
use crate::event::{AlertEvent, AlertKind, Severity, random_id};
use crate::state::{AckOutcome, State, StateError, StoredSecurityEvent};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The state key of the lead's first cut (moved into the `security_events` table when a
/// state file is opened).
#[must_use]
pub fn event_key(id: &str) -> String {
    format!("security-event:{id}")
}

/// The alert problem of a security event: its own, so no two events are ever merged.
#[must_use]
pub fn problem(id: &str) -> String {
    format!("security:{id}")
}

/// The event id of a security problem (`security:ID`).
#[must_use]
pub fn problem_id(problem: &str) -> Option<&str> {
    problem.strip_prefix("security:")
}

/// The acknowledgement of a security event: kept with the event in the state and appended
/// to the ledger as kind `security-ack` (format version [`SecurityAck::VERSION`],
/// `docs/ledger.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityAck {
    /// Format version.
    pub version: u32,
    /// The event acknowledged.
    pub event_id: String,
    /// Its kind.
    pub security_kind: SecurityKind,
    /// Its repository, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// When.
    pub acked_at: Timestamp,
    /// Who (`coffer alert ack --by`, else the login name).
    pub acked_by: String,
}

impl SecurityAck {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;

    /// The acknowledgement of `event` by `by` at `at`.
    #[must_use]
    pub fn new(event: &SecurityEvent, by: &str, at: Timestamp) -> Self {
        Self {
            version: Self::VERSION,
            event_id: event.id.clone(),
            security_kind: event.kind,
            repository: event.repository.clone(),
            acked_at: at,
            acked_by: by.to_owned(),
        }
    }
}

/// The repositories whose ledgers take `event`: its own; an event that concerns no
/// repository (the daemon's alert configuration) goes to every repository of `config`.
#[must_use]
pub fn ledgers(event: &SecurityEvent, config: Option<&Config>) -> Vec<String> {
    if let Some(r) = &event.repository {
        return vec![r.clone()];
    }
    let Some(config) = config else { return Vec::new() };
    let mut all: Vec<String> = config.repositories.keys().cloned().collect();
    for (_, repo) in config.sources() {
        if !all.iter().any(|r| r == repo) {
            all.push(repo.to_owned());
        }
    }
    all.sort();
    all
}

/// This host's name (records made outside the daemon).
#[must_use]
pub fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// Records `event` in the local state and queues it for its repository's ledger (an event
/// of no repository is kept locally only: [`record_in`] names the ledgers).
///
/// # Errors
/// [`StateError`].
pub fn record(state: &State, event: &SecurityEvent) -> Result<(), StateError> {
    record_in(state, event, &host_name(), &ledgers(event, None)).map(|_| ())
}

/// Records `event` (seen on `host`) and queues it for the ledgers of `repositories`, in one
/// transaction; whether it was new (an id recorded before is neither kept nor queued twice).
///
/// # Errors
/// [`StateError`].
pub fn record_in(
    state: &State,
    event: &SecurityEvent,
    host: &str,
    repositories: &[String],
) -> Result<bool, StateError> {
    state.record_security(event, host, repositories)
}

/// Acknowledges the event `id` (or the one event whose id starts with it) as `by`, at `at`;
/// the acknowledgement goes to the ledgers the event went to (`config`'s repositories for an
/// event of none).
///
/// # Errors
/// [`StateError`].
pub fn ack(
    state: &State,
    id: &str,
    by: &str,
    at: Timestamp,
    host: &str,
    config: Option<&Config>,
) -> Result<AckOutcome, StateError> {
    state.ack_security(id, by, at, host, |e| ledgers(e, config))
}

/// The unacknowledged events (every event with `all`), newest first, at most `limit`.
///
/// # Errors
/// [`StateError`].
pub fn list(state: &State, all: bool, limit: usize) -> Result<Vec<StoredSecurityEvent>, StateError> {
    state.security_events(!all, limit)
}

/// The alert of `event` (kind `security`, severity `security`), from `host`.
#[must_use]
pub fn alert(event: &SecurityEvent, host: &str) -> AlertEvent {
    let mut details = event.details.clone();
    details.insert("security-kind".into(), event.kind.as_str().into());
    details.insert("layer".into(), event.layer.clone());
    details.insert("event-id".into(), event.id.clone());
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            details.insert(k.into(), v.clone());
        }
    };
    put("store", &event.store);
    put("principal", &event.principal);
    put("role", &event.role);
    put("action", &event.action);
    put("key", &event.key);
    put("object-version", &event.object_version);
    put("outcome", &event.outcome);
    if let Some(t) = event.time {
        details.insert("event-time".into(), t.to_string());
    }
    AlertEvent {
        version: AlertEvent::VERSION,
        id: event.id.clone(),
        kind: AlertKind::Security,
        severity: Severity::Security,
        problem: problem(&event.id),
        resolved: false,
        time: event.detected,
        host: host.to_owned(),
        job: None,
        source: event.repository.clone(),
        repository: event.repository.clone(),
        summary: event.summary.clone(),
        details,
    }
}

/// The one notice that the security alert `raised` was acknowledged (`resolved`, routed as
/// a security alert: to every target).
#[must_use]
pub fn acknowledged(raised: &AlertEvent, by: &str, at: Timestamp, now: Timestamp) -> AlertEvent {
    let mut e = raised.clone();
    e.id = random_id();
    e.resolved = true;
    e.severity = Severity::Info;
    e.time = now;
    e.details.insert("acked-by".into(), by.to_owned());
    e.details.insert("acked-at".into(), at.to_string());
    e.summary = format!("acknowledged by {by}: {}", raised.summary);
    e
}
