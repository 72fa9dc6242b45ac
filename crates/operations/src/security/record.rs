//! Security events recorded, raised, acknowledged and listed.
//!
//! Invariant guarded here: a security event is recorded in the local state before anything
//! else happens to it, so an alert that cannot be delivered or a ledger that cannot be
//! reached loses nothing. (Issue 14: the lead's first cut keeps each event under
//! `security-event:ID` in the state's key-value table and raises its alert; the outbox,
//! acknowledgement and listing are built on it.)

use super::SecurityEvent;
use crate::event::{AlertEvent, AlertKind, Severity};
use crate::state::{State, StateError};

/// The state key of a recorded event.
#[must_use]
pub fn event_key(id: &str) -> String {
    format!("security-event:{id}")
}

/// The alert problem of a security event: its own, so no two events are ever merged.
#[must_use]
pub fn problem(id: &str) -> String {
    format!("security:{id}")
}

/// Records `event` in the local state.
///
/// # Errors
/// [`StateError`].
pub fn record(state: &State, event: &SecurityEvent) -> Result<(), StateError> {
    let json = serde_json::to_string(event).expect("a security event serializes");
    state.set(&event_key(&event.id), &json)
}

/// The alert of `event` (kind `security`, severity `security`), from `host`.
#[must_use]
pub fn alert(event: &SecurityEvent, host: &str) -> AlertEvent {
    let mut details = event.details.clone();
    details.insert("security-kind".into(), event.kind.as_str().into());
    details.insert("layer".into(), event.layer.clone());
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
