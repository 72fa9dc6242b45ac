//! Security monitoring: the three layers that watch a store's immutability (the local
//! vault's audit log, the protective configuration against its baseline, CloudTrail events
//! from AWS) and the canary that proves the locks still hold (`docs/security.md`).
//!
//! Invariants guarded here:
//! - every attempt to weaken protection that a layer can see becomes one [`SecurityEvent`],
//!   exactly once (positions are kept in the state, so a restart neither repeats nor skips
//!   one), recorded locally and in the repository's ledger, and raised as a `security`
//!   alert that no route can mute and that repeats until acknowledged;
//! - the canary's own probes are the only requests the watch passes over, and only those it
//!   announced beforehand ([`expect_probes`]): one announced probe excuses one matching
//!   refusal, within its window, under [`RESERVED_PREFIX`] or at bucket level. Nothing but
//!   the canary writes under that prefix.
//!
//! The parts: [`audit_watch`] (the vault's audit log), [`drift`] (the protective
//! configuration and its baseline), [`cloudtrail`] (the AWS template and the SQS consumer),
//! [`canary`] (the probes), [`record`] (recording, acknowledging and listing events), and
//! [`watch`] (the continuous job that polls the layers).

pub mod audit_watch;
pub mod canary;
pub mod cloudtrail;
pub mod drift;
pub mod record;
pub mod watch;

use crate::state::{State, StateError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The store prefix reserved for Coffer's own security objects (the canary, the drift
/// baseline). Repositories may not live under it; the watch knows it.
pub const RESERVED_PREFIX: &str = "coffer-security/";

/// What a security event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityKind {
    /// The Object Lock configuration or default retention was changed, or someone tried.
    LockConfigChange,
    /// Versioning was changed, or someone tried.
    VersioningChange,
    /// A destructive or weakening request was refused (delete of a locked version,
    /// retention shortened, governance bypass, legal hold removed, a delete marker by a
    /// role that may not hide, an overwrite).
    DestructiveDenied,
    /// A weakening request was allowed (governance bypassed, a legal hold removed, a key
    /// hidden behind a delete marker).
    WeakeningAllowed,
    /// Principals or credentials changed.
    PrincipalChange,
    /// A request presented an unknown access key or a wrong secret.
    AuthenticationFailed,
    /// The audit log's hash chain no longer verifies.
    AuditChainBroken,
    /// An audit entry dated before an earlier one, or a clock behind the newest entry.
    ClockAnomaly,
    /// Verification found a version or delete marker no Coffer writer made (a rogue writer).
    ForeignVersion,
    /// A protective setting differs from the baseline.
    Drift,
    /// The protective configuration (or the audit log, or the event queue) cannot be read.
    Unreadable,
    /// A CloudTrail event on the watched bucket (allowed or denied).
    CloudTrail,
    /// A request by a principal Coffer does not know.
    UnknownPrincipal,
    /// The canary's probe succeeded: the store does not enforce immutability.
    CanaryFailed,
    /// The alert routing was changed or a target removed (muting security alerts).
    AlertConfigChange,
    /// A new drift baseline was accepted.
    BaselineChange,
}

impl SecurityKind {
    /// The kebab-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LockConfigChange => "lock-config-change",
            Self::VersioningChange => "versioning-change",
            Self::DestructiveDenied => "destructive-denied",
            Self::WeakeningAllowed => "weakening-allowed",
            Self::PrincipalChange => "principal-change",
            Self::AuthenticationFailed => "authentication-failed",
            Self::AuditChainBroken => "audit-chain-broken",
            Self::ClockAnomaly => "clock-anomaly",
            Self::ForeignVersion => "foreign-version",
            Self::Drift => "drift",
            Self::Unreadable => "unreadable",
            Self::CloudTrail => "cloudtrail",
            Self::UnknownPrincipal => "unknown-principal",
            Self::CanaryFailed => "canary-failed",
            Self::AlertConfigChange => "alert-config-change",
            Self::BaselineChange => "baseline-change",
        }
    }
}

impl std::fmt::Display for SecurityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One security event (format version [`SecurityEvent::VERSION`]; stored in the state and
/// in the ledger as kind `security`, `docs/ledger.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct SecurityEvent {
    /// Format version.
    pub version: u32,
    /// Random id (hex): what `coffer alert ack ID` names.
    pub id: String,
    /// What it is.
    pub kind: SecurityKind,
    /// Which layer saw it: `audit-log`, `drift`, `cloudtrail`, `canary`, `verify`, `config`.
    pub layer: String,
    /// The repository whose store it concerns (none: the daemon's configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The store as shown in messages (a vault directory, `s3://bucket/prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// When the watch saw it.
    pub detected: Timestamp,
    /// When it happened, by the source's clock (an audit entry's time, CloudTrail's
    /// `eventTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// Who: the principal's name (or access key, or ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The principal's role, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What was asked (`delete-version`, `PutObjectLockConfiguration`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The object key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The object version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_version: Option<String>,
    /// `allowed`, `denied`, `failed`, or none (drift, clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// One line for a subject or a chat message.
    pub summary: String,
    /// Facts (a drifted field's old and new value, the audit entry's seq, the reason).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl SecurityEvent {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;

    /// An event of `kind` seen by `layer` now, with a fresh id and nothing else filled in.
    #[must_use]
    pub fn new(kind: SecurityKind, layer: &str, detected: Timestamp, summary: impl Into<String>) -> Self {
        Self {
            version: Self::VERSION,
            id: crate::event::random_id(),
            kind,
            layer: layer.to_owned(),
            repository: None,
            store: None,
            detected,
            time: None,
            principal: None,
            role: None,
            action: None,
            key: None,
            object_version: None,
            outcome: None,
            summary: summary.into(),
            details: BTreeMap::new(),
        }
    }
}

/// Where a job hands the security events it finds: the daemon records each one
/// (`record`), raises its alert and counts it; `coffer run` records it.
#[derive(Clone)]
pub struct SecuritySink(pub Arc<dyn Fn(SecurityEvent) + Send + Sync>);

impl SecuritySink {
    /// Hands `event` on.
    pub fn send(&self, event: SecurityEvent) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for SecuritySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecuritySink")
    }
}

/// A request the canary is about to make and expects to be refused: the watch passes over
/// one matching refusal per announced probe ([`take_expected`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The principal's name as the store records it (a vault's role name, an access key).
    pub principal: String,
    /// The audit log's action name (`delete-version`, `put-retention`, …).
    pub action: String,
    /// The key probed (under [`RESERVED_PREFIX`]); none for bucket-level requests.
    pub key: Option<String>,
}

fn probe_key(store: &str, n: u64) -> String {
    format!("canary-expect:{store}:{n:020}")
}

#[derive(Serialize, Deserialize)]
struct Expected {
    probe: Probe,
    from: Timestamp,
    until: Timestamp,
}

/// Announces the canary's `probes` of `store` (as shown in messages), made between `from`
/// and `until`: the watch will pass over one matching refusal per probe in that window.
///
/// # Errors
/// [`StateError`].
pub fn expect_probes(
    state: &State,
    store: &str,
    probes: &[Probe],
    from: Timestamp,
    until: Timestamp,
) -> Result<(), StateError> {
    let base = state.scan(&format!("canary-expect:{store}:"))?.len() as u64;
    let nonce = u64::from_str_radix(&crate::event::random_id()[..8], 16).unwrap_or(0) << 20;
    for (i, probe) in probes.iter().enumerate() {
        let e = Expected { probe: probe.clone(), from, until };
        let json = serde_json::to_string(&e).expect("a probe serializes");
        state.set(&probe_key(store, nonce + base + i as u64), &json)?;
    }
    Ok(())
}

/// Whether a refused request of `store` is an announced canary probe; if so the
/// announcement is used up. Announcements whose window ended before `now` are forgotten.
/// A request outside [`RESERVED_PREFIX`] (other than a bucket-level one) is never a probe.
///
/// # Errors
/// [`StateError`].
pub fn take_expected(
    state: &State,
    store: &str,
    principal: &str,
    action: &str,
    key: Option<&str>,
    time: Timestamp,
    now: Timestamp,
) -> Result<bool, StateError> {
    if key.is_some_and(|k| !k.contains(RESERVED_PREFIX)) {
        return Ok(false);
    }
    let mut found = false;
    for (k, v) in state.scan(&format!("canary-expect:{store}:"))? {
        let Ok(e) = serde_json::from_str::<Expected>(&v) else {
            state.remove(&k)?;
            continue;
        };
        if e.until < now - jiff::SignedDuration::from_hours(1) {
            state.remove(&k)?;
            continue;
        }
        if !found
            && e.probe.principal == principal
            && e.probe.action == action
            && e.probe.key.as_deref() == key
            && time >= e.from - jiff::SignedDuration::from_secs(5)
            && time <= e.until + jiff::SignedDuration::from_secs(5)
        {
            state.remove(&k)?;
            found = true;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_probe_excuses_one_matching_refusal_in_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let t: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
        let key = format!("repo/{RESERVED_PREFIX}canary/1");
        let probe = Probe { principal: "pruner".into(), action: "delete-version".into(), key: Some(key.clone()) };
        expect_probes(&state, "vault", &[probe], t, t + jiff::SignedDuration::from_secs(10)).unwrap();
        let take =
            |p: &str, a: &str, k: Option<&str>, at: Timestamp| take_expected(&state, "vault", p, a, k, at, at).unwrap();
        assert!(!take("writer", "delete-version", Some(&key), t), "another principal");
        assert!(!take("pruner", "delete-version", Some("repo/snapshots/x"), t), "outside the prefix");
        assert!(!take("pruner", "delete-version", Some(&key), t + jiff::SignedDuration::from_mins(5)), "too late");
        assert!(take("pruner", "delete-version", Some(&key), t + jiff::SignedDuration::from_secs(1)));
        assert!(!take("pruner", "delete-version", Some(&key), t + jiff::SignedDuration::from_secs(2)), "used up");
    }
}
