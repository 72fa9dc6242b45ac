//! The immutability canary: one round of requests that a store keeping Coffer's promises
//! must refuse, sent with every role's credentials the daemon holds, and a check that a put
//! asking for no retention gets the store's default lock (`docs/security.md`, "Canary").
//!
//! Invariants guarded here:
//! - **only the store decides.** Each probe goes through [`ObjectStore::probe`], which
//!   `S3Store` sends as it is (its own client-side checks would refuse it and prove nothing
//!   about the server); a refusal is the expected outcome, and **any success of a request
//!   the contract forbids** becomes one `canary-failed` [`SecurityEvent`];
//! - **the canary touches nothing but its own objects**, under
//!   `coffer-security/canary/` (inside the store's prefix, so within the grants of the
//!   repository's IAM policies); a bucket-level probe the store accepted is undone at once
//!   with the same credentials (and said so), an object probe's effect is left as evidence;
//! - **no alert from its own probes**: every probe is announced beforehand
//!   ([`super::expect_probes`]), and the canary never makes a request the contract *allows*
//!   and the watch reports (an admin's removal of a legal hold), so the watch has nothing to
//!   pass over but the announced refusals;
//! - **it costs almost nothing**: the canary object is locked for a day
//!   ([`CanaryOptions::retention`]), one held object is reused for ever, and the pruner
//!   removes the canary versions whose lock has ended in the next round.

use super::{Probe, SecurityEvent, SecurityKind, SecuritySink};
use crate::config::Config;
use crate::open::{OpenJobError, open_store};
use crate::state::{State, StateError};
use coffer_store::probe::{ProbeRequest, RESERVED_PREFIX};
use coffer_store::{
    Clock, DefaultRetention, ErrorClass, ErrorKind, LockConfig, ObjectStore, ObjectVersion, PutOptions, Retention,
    RetentionMode, Role, StoreError, Versioning,
};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where the canary's objects live, under the store's root (and prefix).
pub const CANARY_PREFIX: &str = "coffer-security/canary/";

/// The object that carries the legal hold the probes try to remove: created once, reused
/// by every round (a hold can only be lifted by an admin, which the watch reports, so the
/// canary never lifts it and never makes a second one).
pub const HELD_KEY: &str = "coffer-security/canary/held";

/// How long a put's default lock may fall short of the configured period (rounding of
/// times by the store) before the default is reported as not applied.
pub const DEFAULT_TOLERANCE: SignedDuration = SignedDuration::from_secs(60);

/// How long after its lock ended a canary version is removed (so the pruner's delete is
/// never refused by a store clock a little behind ours, which the watch would report).
pub const EXPIRY_MARGIN: SignedDuration = SignedDuration::from_mins(5);

/// One round's settings.
#[derive(Clone, Debug)]
pub struct CanaryOptions {
    /// The compliance retention of the round's canary object (default one day: long enough
    /// to outlast the round, short enough that a canary per day costs a handful of tiny
    /// objects).
    pub retention: Duration,
    /// How long the announcements of the probes stay valid (default ten minutes: the
    /// canary's default timeout).
    pub window: Duration,
}

impl Default for CanaryOptions {
    fn default() -> Self {
        Self { retention: Duration::from_secs(86_400), window: Duration::from_secs(600) }
    }
}

/// What a probe got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    /// Refused, as expected, with the class of the store's error (`locked`, `refused`,
    /// `invalid`).
    Refused(ErrorClass),
    /// The store did it: a failure of the store's immutability.
    Succeeded,
    /// Neither: the store could not be asked (unreachable, the canary version gone after an
    /// earlier probe removed it). Class and one line.
    Inconclusive(ErrorClass, String),
}

/// One probe's result.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    /// The role whose credentials sent it.
    pub role: Role,
    /// The principal as the store records it (announced to the watch).
    pub principal: String,
    /// What was tried: `delete-version`, `delete-version-bypass`, `legal-hold-off`,
    /// `suspend-versioning`, `disable-object-lock`, `change-lock-config`,
    /// `shorten-retention`, `compliance-to-governance`, `remove-retention`.
    pub what: &'static str,
    /// The request.
    pub request: ProbeRequest,
    /// When it was sent.
    pub time: Timestamp,
    /// What it got.
    pub got: Got,
    /// What the canary did about a success (undone, left as evidence).
    pub note: Option<String>,
}

impl ProbeResult {
    /// `writer delete-version → refused (locked)`, as the run record quotes it.
    #[must_use]
    pub fn line(&self) -> String {
        let got = match &self.got {
            Got::Refused(c) => format!("refused ({c})", c = c.as_str()),
            Got::Succeeded => "SUCCEEDED".to_owned(),
            Got::Inconclusive(c, m) => format!("inconclusive ({}: {m})", c.as_str()),
        };
        format!("{} {} → {got}", self.role, self.what)
    }
}

/// The check of the store's default retention.
#[derive(Clone, Debug)]
pub struct DefaultCheck {
    /// The default the store's configuration names.
    pub configured: Option<DefaultRetention>,
    /// The version put without a retention.
    pub version: ObjectVersion,
    /// Whether its lock is the configured default (a longer or stricter lock passes).
    pub ok: bool,
    /// One line: what was expected and found.
    pub detail: String,
}

/// One round's report.
#[derive(Clone, Debug)]
pub struct CanaryReport {
    /// The store, as shown in messages.
    pub store: String,
    /// When the round started and ended.
    pub started: Timestamp,
    /// When the round ended.
    pub finished: Timestamp,
    /// The round's canary object.
    pub canary: ObjectVersion,
    /// The held object the legal-hold probes aim at.
    pub held: ObjectVersion,
    /// Every probe, in the order sent.
    pub probes: Vec<ProbeResult>,
    /// Roles not probed, with why (no credentials; the admin's hold removal, which the
    /// contract allows).
    pub skipped_roles: Vec<(Role, String)>,
    /// Probes not sent because the contract allows them, with why.
    pub not_probed: Vec<String>,
    /// The default-retention check.
    pub default_check: DefaultCheck,
    /// Canary versions (and markers) of earlier rounds removed by the pruner.
    pub expired_removed: u64,
    /// What this round found and did besides the probes (the held object's hold found off,
    /// no pruner to remove expired canaries).
    pub notes: Vec<String>,
    /// The `canary-failed` events sent.
    pub events: Vec<SecurityEvent>,
}

impl CanaryReport {
    /// How many probes got `got`'s kind.
    fn count(&self, f: impl Fn(&Got) -> bool) -> usize {
        self.probes.iter().filter(|p| f(&p.got)).count()
    }

    /// Probes refused (the expected outcome).
    #[must_use]
    pub fn refused(&self) -> usize {
        self.count(|g| matches!(g, Got::Refused(_)))
    }

    /// Probes that succeeded (each a failure of the store).
    #[must_use]
    pub fn succeeded(&self) -> usize {
        self.count(|g| *g == Got::Succeeded)
    }

    /// Probes that could not be decided.
    #[must_use]
    pub fn inconclusive(&self) -> usize {
        self.count(|g| matches!(g, Got::Inconclusive(..)))
    }

    /// Whether the store kept every promise probed: every probe refused and the default
    /// lock applied.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.succeeded() == 0 && self.inconclusive() == 0 && self.default_check.ok
    }

    /// The facts for the run record (`docs/security.md`, "Canary").
    #[must_use]
    pub fn details(&self) -> BTreeMap<String, String> {
        let mut d = BTreeMap::new();
        for (i, p) in self.probes.iter().enumerate() {
            let mut line = p.line();
            if let Some(n) = &p.note {
                line.push_str(&format!("; {n}"));
            }
            d.insert(format!("probe_{}", i + 1), line);
        }
        d.insert("probes".into(), self.probes.len().to_string());
        d.insert("refused".into(), self.refused().to_string());
        d.insert("succeeded".into(), self.succeeded().to_string());
        d.insert("inconclusive".into(), self.inconclusive().to_string());
        let skipped: Vec<String> = self.skipped_roles.iter().map(|(r, why)| format!("{r} ({why})")).collect();
        d.insert("skipped_roles".into(), if skipped.is_empty() { "none".into() } else { skipped.join("; ") });
        if !self.not_probed.is_empty() {
            d.insert("not_probed".into(), self.not_probed.join("; "));
        }
        d.insert("default_retention".into(), self.default_check.detail.clone());
        d.insert("default_retention_ok".into(), self.default_check.ok.to_string());
        d.insert("canary".into(), format!("{} version {}", self.canary.key, self.canary.version));
        d.insert("held".into(), format!("{} version {}", self.held.key, self.held.version));
        d.insert("expired_removed".into(), self.expired_removed.to_string());
        for (i, n) in self.notes.iter().enumerate() {
            d.insert(format!("note_{}", i + 1), n.clone());
        }
        d.insert("store".into(), self.store.clone());
        d.insert("duration_ms".into(), self.finished.duration_since(self.started).as_millis().to_string());
        d
    }
}

/// Why a round could not be run at all (a probe's refusal is never an error).
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// The writer's store could not be opened (the canary needs the writer).
    #[error("the canary needs the writer's credentials: {0}")]
    Open(#[from] OpenJobError),
    /// The writer could not put or read the canary.
    #[error("canary of {store}: {what}: {source}")]
    Store {
        /// The store.
        store: String,
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: Box<StoreError>,
    },
    /// The announcements could not be kept.
    #[error("canary: cannot announce the probes in the local state: {0}")]
    State(#[from] StateError),
    /// The round was cancelled.
    #[error("canary cancelled")]
    Cancelled,
}

impl CanaryError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Open(e) => e.class(),
            Self::Store { source, .. } => source.class(),
            Self::State(e) => e.class(),
            Self::Cancelled => ErrorClass::Cancelled,
        }
    }
}

/// A role's store as the canary uses it.
struct Handle {
    role: Role,
    store: Arc<dyn ObjectStore>,
    principal: String,
}

/// Opens `role`'s store: `Err(why)` when its credentials are not available. On S3 a role
/// needs its own credentials file in `coffer.toml` (the AWS chain's principal is not that
/// role's), except the writer, whose jobs run on the chain too.
fn open_role(config: &Config, repo: &str, role: Role) -> Result<(Handle, String), OpenJobError> {
    let (store, shown) = open_store(config, repo, role)?;
    let r = config.repository(repo);
    let file = r.as_ref().and_then(|r| r.credentials.get(role.as_str()).cloned());
    // The principal the store records: the vault's principal name; on S3 the access key
    // (what CloudTrail names), when a credentials file gives it.
    let principal = match (shown.starts_with("s3://"), &file) {
        (true, Some(f)) => coffer_store::vault::read_credentials_file(f)
            .map(|c| c.access_key)
            .unwrap_or_else(|_| store.principal().name.clone()),
        _ => store.principal().name.clone(),
    };
    Ok((Handle { role, store, principal }, shown))
}

/// `YYYYMMDDTHHMMSSZ`: the canary key's time, sortable.
fn stamp(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%SZ").to_string()
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)).unwrap_or(Timestamp::MAX)
}

/// What to probe, by role, against the round's canary `v` (compliance until `until`), the
/// held object `h` and the store's lock configuration `lock`: `(what, request)`, in the
/// order sent. Deletes first, retention changes last: a store that accepts a weakening
/// leaves the canary weaker, and each later probe must still test what it names.
fn plan(role: Role, v: &ObjectVersion, h: &ObjectVersion, until: Timestamp, lock: LockConfig) -> Vec<ProbeSpec> {
    let key = v.key.clone();
    let version = v.version.clone();
    let mut out = vec![
        ProbeSpec::new(
            "delete-version",
            ProbeRequest::DeleteVersion { key: key.clone(), version: version.clone(), bypass_governance: false },
        ),
        ProbeSpec::new(
            "delete-version-bypass",
            ProbeRequest::DeleteVersion { key: key.clone(), version: version.clone(), bypass_governance: true },
        ),
    ];
    // The admin may lift a legal hold by design: not probed (a removal would be real, and
    // the watch reports it as a weakening allowed).
    if role != Role::Admin {
        out.push(ProbeSpec::new(
            "legal-hold-off",
            ProbeRequest::LegalHoldOff { key: h.key.clone(), version: h.version.clone() },
        ));
    }
    out.push(ProbeSpec::new("suspend-versioning", ProbeRequest::PutVersioning(Versioning::Suspended)));
    out.push(ProbeSpec::new(
        "disable-object-lock",
        ProbeRequest::PutLockConfig(LockConfig { enabled: false, default_retention: lock.default_retention }),
    ));
    // The admin may change the default retention by design: not probed. Everyone else is
    // asked to "change" it to what it is: a success proves the permission without changing
    // anything.
    if role != Role::Admin {
        out.push(ProbeSpec::new("change-lock-config", ProbeRequest::PutLockConfig(lock)));
    }
    let earlier = until - SignedDuration::from_hours(1);
    out.extend([
        ProbeSpec::new(
            "shorten-retention",
            ProbeRequest::PutRetention {
                key: key.clone(),
                version: version.clone(),
                retention: Some(Retention { mode: RetentionMode::Compliance, until: earlier }),
                bypass_governance: false,
            },
        ),
        ProbeSpec::new(
            "compliance-to-governance",
            ProbeRequest::PutRetention {
                key: key.clone(),
                version: version.clone(),
                retention: Some(Retention { mode: RetentionMode::Governance, until }),
                bypass_governance: true,
            },
        ),
        ProbeSpec::new(
            "remove-retention",
            ProbeRequest::PutRetention { key, version, retention: None, bypass_governance: true },
        ),
    ]);
    out
}

struct ProbeSpec {
    what: &'static str,
    request: ProbeRequest,
}

impl ProbeSpec {
    fn new(what: &'static str, request: ProbeRequest) -> Self {
        Self { what, request }
    }
}

/// The context of one round, for events.
struct Round<'a> {
    repo: &'a str,
    store: &'a str,
    clock: &'a Clock,
    sink: Option<&'a SecuritySink>,
    events: Vec<SecurityEvent>,
}

impl Round<'_> {
    fn failed(&mut self, p: &ProbeResult) {
        let target = match p.request.key() {
            Some(k) => {
                let v = match &p.request {
                    ProbeRequest::DeleteVersion { version, .. }
                    | ProbeRequest::PutRetention { version, .. }
                    | ProbeRequest::LegalHoldOff { version, .. } => version.to_string(),
                    _ => String::new(),
                };
                format!("{k} version {v}")
            }
            None => format!("store {}", self.store),
        };
        let summary =
            format!("this store does not enforce immutability: {} could {} {target}", p.role, p.what.replace('-', " "));
        let mut e = SecurityEvent::new(SecurityKind::CanaryFailed, "canary", self.clock.now(), summary);
        e.repository = Some(self.repo.to_owned());
        e.store = Some(self.store.to_owned());
        e.time = Some(p.time);
        e.principal = Some(p.principal.clone());
        e.role = Some(p.role.as_str().to_owned());
        e.action = Some(p.request.action().as_str().to_owned());
        e.key = p.request.key().map(str::to_owned);
        if let ProbeRequest::DeleteVersion { version, .. }
        | ProbeRequest::PutRetention { version, .. }
        | ProbeRequest::LegalHoldOff { version, .. } = &p.request
        {
            e.object_version = Some(version.to_string());
        }
        e.outcome = Some("allowed".into());
        e.details.insert("probe".into(), p.what.into());
        e.details.insert("expected".into(), "refused".into());
        if let Some(n) = &p.note {
            e.details.insert("evidence".into(), n.clone());
        }
        self.send(e);
    }

    fn send(&mut self, e: SecurityEvent) {
        tracing::error!(id = %e.id, store = %self.store, "canary: {}", e.summary);
        if let Some(s) = self.sink {
            s.send(e.clone());
        }
        self.events.push(e);
    }
}

/// Runs one canary round on repository `repo`'s store (see the module docs): puts the
/// round's canary and the default-retention probe as `writer`, announces the probes in
/// `state`, sends them with every role's credentials it can get, hands each success to
/// `sink` as a `canary-failed` event, and lets the pruner remove the canaries of earlier
/// rounds whose lock has ended.
///
/// # Errors
/// [`CanaryError`] when the round cannot run (no writer, the canary cannot be put, the
/// state cannot be written, cancelled). A probe's outcome is never an error.
pub fn run(
    config: &Config,
    repo: &str,
    state: &State,
    clock: &Clock,
    sink: Option<&SecuritySink>,
    options: &CanaryOptions,
    cancel: &coffer_repository::Cancel,
) -> Result<CanaryReport, CanaryError> {
    let started = clock.now();
    let (writer, shown) = open_role(config, repo, Role::Writer)?;
    let is_s3 = shown.starts_with("s3://");
    let fail = |what: &str| {
        let store = shown.clone();
        let what = what.to_owned();
        move |source| CanaryError::Store { store: store.clone(), what: what.clone(), source: Box::new(source) }
    };
    let mut notes = Vec::new();

    // The round's canary, the default probe and the held object, as the writer.
    let mut nonce = [0u8; 4];
    getrandom::fill(&mut nonce).expect("the OS random source");
    let key = format!("{CANARY_PREFIX}{}-{}", stamp(started), hex::encode(nonce));
    debug_assert!(key.starts_with(RESERVED_PREFIX));
    let until = plus(started, options.retention);
    let body = format!("coffer immutability canary, {started}\n");
    let locked = PutOptions {
        retention: Some(Retention { mode: RetentionMode::Compliance, until }),
        legal_hold: false,
        create_only: true,
    };
    let canary = writer.store.put(&key, body.as_bytes(), &locked).map_err(fail("cannot put the canary"))?;
    let until = canary.retention.map_or(until, |r| r.until);
    let lock = writer.store.lock_config().map_err(fail("cannot read the lock configuration"))?;
    let default_check = check_default(writer.store.as_ref(), &format!("{key}-default"), lock, &body)
        .map_err(fail("cannot put the default-retention probe"))?;
    let held = held(writer.store.as_ref(), &body, until, &mut notes).map_err(fail("cannot prepare the held canary"))?;

    // Every role the daemon can act as.
    let mut handles = vec![writer];
    let mut skipped_roles = Vec::new();
    for role in [Role::Reader, Role::Pruner, Role::Admin, Role::Auditor] {
        let named = config.repository(repo).is_some_and(|r| r.credentials.contains_key(role.as_str()));
        if is_s3 && !named {
            skipped_roles.push((role, "no credentials file in coffer.toml".to_owned()));
            continue;
        }
        match open_role(config, repo, role) {
            Ok((h, _)) => handles.push(h),
            Err(e) => skipped_roles.push((role, format!("credentials not available: {e}"))),
        }
    }

    // Announce, then probe.
    let plans: Vec<(usize, Vec<ProbeSpec>)> =
        handles.iter().enumerate().map(|(i, h)| (i, plan(h.role, &canary, &held, until, lock))).collect();
    let mut not_probed = Vec::new();
    if handles.iter().any(|h| h.role == Role::Admin) {
        not_probed.push("admin legal-hold-off and change-lock-config (the contract allows them)".to_owned());
    }
    let announced: Vec<Probe> = plans
        .iter()
        .flat_map(|(i, specs)| {
            let h = &handles[*i];
            specs.iter().map(move |s| Probe {
                principal: h.principal.clone(),
                action: s.request.action().as_str().to_owned(),
                key: s.request.key().map(str::to_owned),
            })
        })
        .collect();
    let from = clock.now();
    super::expect_probes(state, &shown, &announced, from, plus(from, options.window))?;

    let mut round = Round { repo, store: &shown, clock, sink, events: Vec::new() };
    let mut probes = Vec::new();
    // By kind, then by role: a role's success does not keep the others from being tried.
    let mut ordered: Vec<(usize, usize)> = Vec::new();
    for what in all_whats() {
        for (i, specs) in &plans {
            if let Some(j) = specs.iter().position(|s| s.what == what) {
                ordered.push((*i, j));
            }
        }
    }
    let mut canary_gone = false;
    for (i, j) in ordered {
        if cancel.is_cancelled() {
            return Err(CanaryError::Cancelled);
        }
        let h = &handles[i];
        let spec = &plans[i].1[j];
        let time = clock.now();
        let got = match h.store.probe(&spec.request) {
            Ok(()) => Got::Succeeded,
            Err(e) if e.kind() == ErrorKind::NotFound && canary_gone => {
                Got::Inconclusive(e.class(), "the canary version is gone (an earlier probe removed it)".into())
            }
            Err(e) => match e.kind() {
                ErrorKind::Locked | ErrorKind::Forbidden | ErrorKind::InvalidRequest => Got::Refused(e.class()),
                _ => Got::Inconclusive(e.class(), coffer_store::display_chain(&e)),
            },
        };
        let mut p = ProbeResult {
            role: h.role,
            principal: h.principal.clone(),
            what: spec.what,
            request: spec.request.clone(),
            time,
            got,
            note: None,
        };
        if p.got == Got::Succeeded {
            p.note = Some(undo(h, &spec.request, lock));
            if matches!(spec.request, ProbeRequest::DeleteVersion { .. }) {
                canary_gone = true;
            }
            round.failed(&p);
        }
        tracing::debug!(store = %shown, "canary probe: {}", p.line());
        probes.push(p);
    }

    // The default lock.
    if !default_check.ok {
        let mut e = SecurityEvent::new(
            SecurityKind::CanaryFailed,
            "canary",
            clock.now(),
            format!("this store does not apply its default retention: {}", default_check.detail),
        );
        e.repository = Some(repo.to_owned());
        e.store = Some(shown.clone());
        e.role = Some("writer".into());
        e.action = Some("put".into());
        e.key = Some(default_check.version.key.clone());
        e.object_version = Some(default_check.version.version.to_string());
        e.outcome = Some("allowed".into());
        e.details.insert("probe".into(), "default-retention".into());
        round.send(e);
    }

    // The canaries of earlier rounds whose lock has ended, by the pruner.
    let current = [canary.key.as_str(), default_check.version.key.as_str(), HELD_KEY];
    let expired_removed = match handles.iter().find(|h| h.role == Role::Pruner) {
        Some(p) => remove_expired(p.store.as_ref(), &current, clock.now(), &mut notes),
        None => {
            notes.push("expired canaries kept: no pruner credentials".into());
            0
        }
    };

    let events = round.events;
    Ok(CanaryReport {
        store: shown,
        started,
        finished: clock.now(),
        canary,
        held,
        probes,
        skipped_roles,
        not_probed,
        default_check,
        expired_removed,
        notes,
        events,
    })
}

/// Every kind of probe, in the order sent.
fn all_whats() -> [&'static str; 9] {
    [
        "delete-version",
        "delete-version-bypass",
        "legal-hold-off",
        "suspend-versioning",
        "disable-object-lock",
        "change-lock-config",
        "shorten-retention",
        "compliance-to-governance",
        "remove-retention",
    ]
}

/// After a probe the store accepted: undoes a bucket-level change with the same
/// credentials (they could make it, so they can undo it); leaves an object's as evidence.
/// Returns what was done, one line.
fn undo(h: &Handle, request: &ProbeRequest, lock: LockConfig) -> String {
    let restore = match request {
        ProbeRequest::PutVersioning(_) => ProbeRequest::PutVersioning(Versioning::Enabled),
        ProbeRequest::PutLockConfig(c) if *c == lock => {
            return "nothing changed (the probe re-sent the current configuration)".into();
        }
        ProbeRequest::PutLockConfig(_) => ProbeRequest::PutLockConfig(lock),
        _ => {
            return format!(
                "left as evidence: {} version {}",
                request.key().unwrap_or_default(),
                match request {
                    ProbeRequest::DeleteVersion { version, .. }
                    | ProbeRequest::PutRetention { version, .. }
                    | ProbeRequest::LegalHoldOff { version, .. } => version.to_string(),
                    _ => String::new(),
                }
            );
        }
    };
    match h.store.probe(&restore) {
        Ok(()) => format!("undone by {} at once", h.role),
        Err(e) => format!("COULD NOT BE UNDONE by {}: {}", h.role, coffer_store::display_chain(&e)),
    }
}

/// Puts `key` with no retention and checks its lock against the configured default.
fn check_default(
    store: &dyn ObjectStore,
    key: &str,
    lock: LockConfig,
    body: &str,
) -> coffer_store::Result<DefaultCheck> {
    let version = store.probe_put_unlocked(key, body.as_bytes())?;
    let configured = lock.default_retention;
    let (ok, detail) = match (configured, version.retention) {
        (None, None) => (true, "no default retention configured; none applied".to_owned()),
        (None, Some(r)) => {
            (true, format!("no default retention configured; the store applied {} until {}", r.mode, r.until))
        }
        (Some(d), None) => (false, format!("default {d} configured, but a put without retention got no lock")),
        (Some(d), Some(r)) => {
            let expected = plus(version.created, d.period);
            let mode_ok = r.mode == d.mode || r.mode == RetentionMode::Compliance;
            let long_enough = r.until >= expected - DEFAULT_TOLERANCE;
            let text = format!("default {d}: {} until {} (expected from {expected})", r.mode, r.until);
            (mode_ok && long_enough, text)
        }
    };
    Ok(DefaultCheck { configured, version, ok, detail })
}

/// The held object: found (its hold placed again if someone lifted it) or created.
fn held(
    store: &dyn ObjectStore,
    body: &str,
    until: Timestamp,
    notes: &mut Vec<String>,
) -> coffer_store::Result<ObjectVersion> {
    match store.head(HELD_KEY, None) {
        Ok(v) if v.legal_hold => Ok(v),
        Ok(v) => {
            store.put_legal_hold(HELD_KEY, &v.version, true)?;
            notes.push(format!("{HELD_KEY} version {} was found without its legal hold: placed again", v.version));
            store.head(HELD_KEY, Some(&v.version))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let opts = PutOptions {
                retention: Some(Retention { mode: RetentionMode::Compliance, until }),
                legal_hold: true,
                create_only: true,
            };
            store.put(HELD_KEY, body.as_bytes(), &opts)
        }
        Err(e) => Err(e),
    }
}

/// Removes, as the pruner, canary versions whose lock ended more than [`EXPIRY_MARGIN`]
/// ago (and delete markers), except the current round's and the held object. Returns how
/// many; a failure is a note, not the round's failure.
pub fn remove_expired(pruner: &dyn ObjectStore, current: &[&str], now: Timestamp, notes: &mut Vec<String>) -> u64 {
    let mut removed = 0;
    let mut token: Option<String> = None;
    let mut doomed = Vec::new();
    loop {
        let page = match pruner.list_versions(CANARY_PREFIX, token.as_deref(), 1000) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("cannot list earlier canaries: {}", coffer_store::display_chain(&e)));
                return 0;
            }
        };
        for v in page.items {
            if current.contains(&v.key.as_str()) || v.legal_hold || !v.key.starts_with(CANARY_PREFIX) {
                continue;
            }
            let expired = v.delete_marker || v.retention.is_none_or(|r| r.until + EXPIRY_MARGIN < now);
            if expired {
                doomed.push(v);
            }
        }
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    for v in doomed {
        match pruner.delete_version(&v.key, &v.version, false) {
            Ok(()) => removed += 1,
            Err(e) => {
                notes.push(format!("cannot remove expired canary {} version {}: {e}", v.key, v.version));
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::VersionId;

    #[test]
    fn the_reserved_prefixes_agree() {
        assert_eq!(super::super::RESERVED_PREFIX, RESERVED_PREFIX);
        assert!(CANARY_PREFIX.starts_with(RESERVED_PREFIX) && HELD_KEY.starts_with(CANARY_PREFIX));
    }

    #[test]
    fn every_role_gets_every_forbidden_probe_but_what_the_admin_may_do() {
        let v = ObjectVersion {
            key: format!("{CANARY_PREFIX}x"),
            version: VersionId::from("1"),
            created: Timestamp::UNIX_EPOCH,
            is_latest: true,
            delete_marker: false,
            size: 1,
            checksum: String::new(),
            retention: None,
            legal_hold: false,
        };
        let until: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let lock = LockConfig { enabled: true, default_retention: None };
        for role in Role::ALL {
            let whats: Vec<&str> = plan(role, &v, &v, until, lock).iter().map(|s| s.what).collect();
            let expected: Vec<&str> = all_whats()
                .into_iter()
                .filter(|w| role != Role::Admin || !["legal-hold-off", "change-lock-config"].contains(w))
                .collect();
            assert_eq!(whats, expected, "{role}");
        }
    }
}
