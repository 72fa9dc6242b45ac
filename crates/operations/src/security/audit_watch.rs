//! The local vault's audit log, followed by sequence: which entries are security events
//! (`docs/security.md`, "The audit-log watch").
//!
//! Invariants guarded here:
//! - **every entry is judged exactly once**: the position reached (a [`Cursor`]: sequence
//!   number, hash of that entry, highest time seen) is kept in the state under
//!   [`cursor_key`] and advanced as the entries are handed on, so a restart neither repeats
//!   an alert nor skips an entry;
//! - **the chain is checked as it is read**: each new entry must follow the cursor's
//!   sequence number, link to its hash and hash to what it says ([`AuditEntry::hash_matches`]),
//!   and the entry the cursor names must still be there unchanged; a break is one
//!   `audit-chain-broken` event per entry ([`break_key`]), whether this follower or the full
//!   check ([`full_check`]) finds it first;
//! - **nothing unknown is ignored**: an action this build does not know is reported;
//! - **time goes forward**: an entry dated before the highest time seen by more than the
//!   tolerance is a `clock-anomaly` naming both entries, once per forward jump.
//!
//! Everything read from the vault is hostile input (the backup host may be the attacker):
//! strings are bounded and stripped of control characters before they reach an event.

use super::{SecurityEvent, SecurityKind};
use crate::state::{State, StateError};
use coffer_store::{AuditEntry, ErrorClass, StoreError, VaultHandle};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The entries read per request: bounds the memory one poll holds.
pub const BATCH: usize = 500;
/// The longest string (principal, key, reason, …) an event quotes from an entry.
pub const FIELD_MAX: usize = 300;
/// The hash the first entry links to.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The layer name of this watch's events.
pub const LAYER: &str = "audit-log";

/// Where the follower stands in one vault's log (format version [`Cursor::VERSION`], JSON
/// in the state under [`cursor_key`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version.
    pub version: u32,
    /// The last entry judged (0: none yet).
    pub seq: u64,
    /// Its hash (the genesis hash before the first).
    pub hash: String,
    /// The highest entry time seen so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_time: Option<Timestamp>,
    /// The entry that carries it.
    #[serde(default)]
    pub high_seq: u64,
    /// The high-water entry whose later violation was already reported: one
    /// `clock-anomaly` per forward jump, not one per entry until real time catches up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_seq: Option<u64>,
    /// The high-water entry the local clock was last reported behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_seq: Option<u64>,
}

impl Cursor {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;
}

impl Default for Cursor {
    fn default() -> Self {
        Self {
            version: Self::VERSION,
            seq: 0,
            hash: GENESIS.to_owned(),
            high_time: None,
            high_seq: 0,
            anomaly_seq: None,
            behind_seq: None,
        }
    }
}

/// The state key of the cursor of `store` (the vault directory as shown in messages).
#[must_use]
pub fn cursor_key(store: &str) -> String {
    format!("audit-cursor:{store}")
}

/// The state key that remembers the chain break at entry `seq` of `store` was reported.
#[must_use]
pub fn break_key(store: &str, seq: u64) -> String {
    format!("audit-break:{store}:{seq:020}")
}

/// Why the log could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum AuditWatchError {
    /// The vault refused or failed.
    #[error("cannot read the audit log: {0}")]
    Store(#[from] StoreError),
    /// The local state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl AuditWatchError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Store(e) => e.class(),
            Self::State(e) => e.class(),
        }
    }
}

/// What the follower needs to know about the vault it reads.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    /// The repository whose store it is.
    pub repository: &'a str,
    /// The store as shown in messages (the vault directory): the cursor's and the canary's
    /// announcements' name for it.
    pub store: &'a str,
    /// How far back an entry may be dated before it is a clock anomaly.
    pub clock_tolerance: Duration,
}

/// Reads the cursor of `store`; a missing one is the start of the log. A cursor this build
/// cannot read starts from the beginning again: alerting twice is better than skipping.
///
/// # Errors
/// [`StateError`].
pub fn load_cursor(state: &State, store: &str) -> Result<Cursor, StateError> {
    Ok(match state.get(&cursor_key(store))? {
        None => Cursor::default(),
        Some(text) => match serde_json::from_str::<Cursor>(&text) {
            Ok(c) if c.version <= Cursor::VERSION => c,
            _ => {
                tracing::warn!(store, "the audit cursor in the state is unreadable; reading the log from the start");
                Cursor::default()
            }
        },
    })
}

fn save_cursor(state: &State, store: &str, c: &Cursor) -> Result<(), StateError> {
    state.set(&cursor_key(store), &serde_json::to_string(c).expect("a cursor serializes"))
}

/// `s` bounded to [`FIELD_MAX`] characters, control characters replaced (a key with a
/// line break must not forge a line of an e-mail).
#[must_use]
pub fn clean(s: &str) -> String {
    let mut out: String = s.chars().take(FIELD_MAX).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if s.chars().nth(FIELD_MAX).is_some() {
        out.push('…');
    }
    out
}

/// Every action name this build knows, as the audit log writes it. Anything else is
/// reported (`unknown action`), never passed over.
const READS: [&str; 7] =
    ["get", "head", "list", "list-versions", "get-lock-config", "get-versioning", "read-audit-log"];
const PRINCIPAL_ACTIONS: [&str; 5] =
    ["rotate-credentials", "add-principal", "remove-principal", "put-principal", "delete-principal"];

/// The verdict on one entry: what kind of event it is and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The event's kind.
    pub kind: SecurityKind,
    /// Why, in a few words (the table in `docs/security.md`).
    pub why: &'static str,
}

const fn v(kind: SecurityKind, why: &'static str) -> Option<Verdict> {
    Some(Verdict { kind, why })
}

/// Classifies one entry (the table in `docs/security.md`, "The audit-log watch"); `None`
/// for normal work. Time order and canary probes are judged by the follower, not here.
#[must_use]
pub fn classify(e: &AuditEntry) -> Option<Verdict> {
    use SecurityKind as K;
    let denied = e.outcome == "denied";
    let allowed = e.outcome == "allowed";
    match e.action.as_str() {
        "init" => None,
        // The vault writes it when a request runs on a clock behind the newest time it has
        // recorded (by more than its 5 s tolerance): that entry is itself dated before the
        // newest one, so the time-order check reports it, naming both entries; a second
        // event here would only repeat it.
        "clock-behind" => None,
        // Every attempt, whatever came of it.
        "put-lock-config" => v(K::LockConfigChange, "attempt to change the lock configuration"),
        "put-versioning" => v(K::VersioningChange, "attempt to change versioning"),
        "authenticate" if allowed => None,
        "authenticate" => v(K::AuthenticationFailed, "unknown access key or wrong secret"),
        a if PRINCIPAL_ACTIONS.contains(&a) => v(K::PrincipalChange, "principals or credentials changed"),
        // A failure (I/O, corruption) is the store's trouble, not a request's intent.
        _ if e.outcome == "failed" => None,
        a if READS.contains(&a) => None,
        "put" if allowed => None,
        "put" if denied && e.reason.contains("already exists") => {
            v(K::DestructiveDenied, "overwrite refused (writer create-only)")
        }
        "put" if denied => v(K::DestructiveDenied, "put refused"),
        "legal-hold-on" if allowed => None,
        "legal-hold-on" if denied => v(K::DestructiveDenied, "legal hold refused"),
        // The prune of expired versions; a pruner on a clock moved forward is caught by the
        // time order, not here.
        "delete-version" if allowed && e.role == "pruner" => None,
        "delete-version" if allowed => v(K::WeakeningAllowed, "a version was removed by a role other than the pruner"),
        // The writer extends locks (a backup reusing a pack); only an active lock's
        // weakening is refused, so an allowed change by another role may have bypassed
        // governance: the log does not record the retention it replaced.
        "put-retention" if allowed && e.role == "writer" => None,
        "put-retention" if allowed => v(K::WeakeningAllowed, "retention changed by a role that may bypass governance"),
        "delete" if allowed => v(K::WeakeningAllowed, "a key was hidden behind a delete marker"),
        "legal-hold-off" if allowed => v(K::WeakeningAllowed, "a legal hold was removed"),
        "bypass-governance" if allowed => v(K::WeakeningAllowed, "governance retention bypassed"),
        "delete-version" | "put-retention" | "delete" | "legal-hold-off" | "bypass-governance" if denied => {
            if e.reason.contains("may not bypass-governance") {
                v(K::DestructiveDenied, "governance bypass refused")
            } else {
                v(K::DestructiveDenied, "destructive or weakening request refused")
            }
        }
        _ if allowed => v(K::WeakeningAllowed, "an action this watch does not know (reported, not ignored)"),
        _ => v(K::DestructiveDenied, "an action this watch does not know was refused (reported, not ignored)"),
    }
}

/// The event of entry `e` of kind `kind`.
fn entry_event(kind: SecurityKind, why: &str, e: &AuditEntry, t: &Target<'_>, now: Timestamp) -> SecurityEvent {
    let (principal, role, action) = (clean(&e.principal), clean(&e.role), clean(&e.action));
    let on = e.key.as_deref().map(|k| format!(" of {}", clean(k))).unwrap_or_default();
    let summary = format!(
        "{why}: {} {action}{on} by {principal} (role {role}) on {} (audit entry {})",
        clean(&e.outcome),
        t.store,
        e.seq
    );
    let mut ev = SecurityEvent::new(kind, LAYER, now, summary);
    ev.repository = Some(t.repository.to_owned());
    ev.store = Some(t.store.to_owned());
    ev.time = Some(e.time);
    ev.principal = Some(principal);
    ev.role = Some(role);
    ev.action = Some(action);
    ev.key = e.key.as_deref().map(clean);
    ev.object_version = e.version.as_deref().map(clean);
    ev.outcome = Some(clean(&e.outcome));
    ev.details.insert("seq".into(), e.seq.to_string());
    ev.details.insert("why".into(), why.to_owned());
    if !e.reason.is_empty() {
        ev.details.insert("reason".into(), clean(&e.reason));
    }
    ev
}

/// A chain break at entry `seq`, reported once ([`break_key`]).
fn chain_break(
    state: &State,
    t: &Target<'_>,
    seq: u64,
    what: &str,
    now: Timestamp,
    emit: &mut dyn FnMut(SecurityEvent),
) -> Result<(), StateError> {
    let key = break_key(t.store, seq);
    if state.get(&key)?.is_some() {
        tracing::debug!(store = t.store, seq, "audit chain break already reported: {what}");
        return Ok(());
    }
    let mut ev = SecurityEvent::new(
        SecurityKind::AuditChainBroken,
        LAYER,
        now,
        format!("the audit log of {} no longer verifies: {}", t.store, clean(what)),
    );
    ev.repository = Some(t.repository.to_owned());
    ev.store = Some(t.store.to_owned());
    ev.details.insert("seq".into(), seq.to_string());
    ev.details.insert("problem".into(), clean(what));
    emit(ev);
    state.set(&key, now.to_string().as_str())
}

/// Reads the entries after the cursor of `t.store`, judges each and hands every event to
/// `emit`, keeping the cursor after each event and at the end of each batch; stops early
/// when `cancelled()` says so. Returns how many entries were read.
///
/// # Errors
/// [`AuditWatchError`]: the vault or the state failed (the cursor stays where the last
/// event left it; nothing was skipped).
pub fn follow(
    handle: &VaultHandle,
    t: &Target<'_>,
    state: &State,
    now: Timestamp,
    emit: &mut dyn FnMut(SecurityEvent),
    cancelled: &dyn Fn() -> bool,
) -> Result<u64, AuditWatchError> {
    let mut c = load_cursor(state, t.store)?;
    let tolerance = SignedDuration::try_from(t.clock_tolerance).unwrap_or(SignedDuration::MAX);
    // The entry the cursor names must still be there, unchanged: a log cut back or
    // rewritten at its tail shows here even before anything new is appended.
    if c.seq > 0 {
        let at = handle.audit_log(c.seq - 1, 1)?;
        match at.first() {
            Some(e) if e.seq == c.seq && e.hash == c.hash && e.hash_matches() => {}
            Some(e) if e.seq == c.seq => {
                chain_break(state, t, c.seq, &format!("entry {} was changed after it was read", c.seq), now, emit)?;
            }
            _ => chain_break(state, t, c.seq, &format!("entry {} was removed after it was read", c.seq), now, emit)?,
        }
    }
    let mut read = 0u64;
    loop {
        let batch = handle.audit_log(c.seq, BATCH)?;
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            read += 1;
            let mut sent = false;
            let mut send = |ev: SecurityEvent| {
                sent = true;
                emit(ev);
            };
            if e.seq != c.seq + 1 {
                let what = format!("entry {} follows entry {}: entries were removed", e.seq, c.seq);
                chain_break(state, t, e.seq, &what, now, &mut send)?;
            } else if e.prev_hash != c.hash {
                chain_break(
                    state,
                    t,
                    e.seq,
                    &format!("entry {} does not link to the entry before it", e.seq),
                    now,
                    &mut send,
                )?;
            } else if !e.hash_matches() {
                chain_break(state, t, e.seq, &format!("entry {} was modified (hash mismatch)", e.seq), now, &mut send)?;
            }
            // Time order, incrementally: one anomaly per forward jump (the high-water entry).
            if let Some(high) = c.high_time {
                if e.time + tolerance < high && c.anomaly_seq != Some(c.high_seq) {
                    let mut ev = entry_event(
                        SecurityKind::ClockAnomaly,
                        "entry dated before an earlier entry (a clock was moved)",
                        e,
                        t,
                        now,
                    );
                    ev.summary = format!(
                        "audit entry {} of {} is dated {} but entry {} before it is dated {}: a clock was moved (forward for entry {}, or back for entry {}), and locks were judged on a time that was not real",
                        e.seq, t.store, e.time, c.high_seq, high, c.high_seq, e.seq
                    );
                    ev.details.insert("newest_before".into(), high.to_string());
                    ev.details.insert("newest_seq".into(), c.high_seq.to_string());
                    send(ev);
                    c.anomaly_seq = Some(c.high_seq);
                }
            }
            if c.high_time.is_none_or(|h| e.time > h) {
                c.high_time = Some(e.time);
                c.high_seq = e.seq;
            }
            match classify(e) {
                None => {}
                Some(verdict) => {
                    if e.outcome == "denied" && is_probe(state, t, e, now)? {
                        tracing::debug!(store = t.store, seq = e.seq, action = %clean(&e.action),
                            "an announced canary probe was refused, as expected");
                    } else {
                        send(entry_event(verdict.kind, verdict.why, e, t, now));
                    }
                }
            }
            c.seq = e.seq;
            c.hash.clone_from(&e.hash);
            if sent {
                save_cursor(state, t.store, &c)?;
            }
        }
        save_cursor(state, t.store, &c)?;
        if batch.len() < BATCH || cancelled() {
            break;
        }
    }
    Ok(read)
}

/// Whether a refused entry is one of the canary's announced probes (under the reserved
/// prefix or at bucket level); the announcement is used up.
fn is_probe(state: &State, t: &Target<'_>, e: &AuditEntry, now: Timestamp) -> Result<bool, StateError> {
    super::take_expected(state, t.store, &e.principal, &e.action, e.key.as_deref(), e.time, now)
}

/// The local clock against the highest entry time seen: a clock behind it by more than the
/// tolerance was moved back (or the entry was made on one moved forward). Reported once per
/// high-water entry.
///
/// # Errors
/// [`StateError`].
pub fn clock_check(
    t: &Target<'_>,
    state: &State,
    now: Timestamp,
    emit: &mut dyn FnMut(SecurityEvent),
) -> Result<(), StateError> {
    let mut c = load_cursor(state, t.store)?;
    let tolerance = SignedDuration::try_from(t.clock_tolerance).unwrap_or(SignedDuration::MAX);
    let Some(high) = c.high_time else { return Ok(()) };
    if now + tolerance >= high || c.behind_seq == Some(c.high_seq) {
        return Ok(());
    }
    let mut ev = SecurityEvent::new(
        SecurityKind::ClockAnomaly,
        LAYER,
        now,
        format!(
            "the clock of this host ({now}) is behind audit entry {} of {} ({high}): it was moved back, or that entry was made on a clock moved forward",
            c.high_seq, t.store
        ),
    );
    ev.repository = Some(t.repository.to_owned());
    ev.store = Some(t.store.to_owned());
    ev.time = Some(high);
    ev.details.insert("newest_seq".into(), c.high_seq.to_string());
    ev.details.insert("newest_time".into(), high.to_string());
    ev.details.insert("clock".into(), now.to_string());
    emit(ev);
    c.behind_seq = Some(c.high_seq);
    save_cursor(state, t.store, &c)
}

/// Checks the whole chain (what the follower checks incrementally, once more from the
/// start: an entry rewritten behind the cursor shows only here); each break is reported
/// once, whoever finds it first.
///
/// # Errors
/// [`AuditWatchError`].
pub fn full_check(
    handle: &VaultHandle,
    t: &Target<'_>,
    state: &State,
    now: Timestamp,
    emit: &mut dyn FnMut(SecurityEvent),
) -> Result<(), AuditWatchError> {
    let v = handle.verify_audit_log()?;
    for p in &v.problems {
        // The store's messages name the entry first ("entry N …").
        let seq = p
            .strip_prefix("entry ")
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        chain_break(state, t, seq, p, now, emit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::{
        Clock, DefaultRetention, LocalVault, LockConfig, ObjectStore, PutOptions, Retention, RetentionMode, Role,
        VaultOptions, Versioning,
    };

    const DAY: Duration = Duration::from_secs(86_400);

    struct World {
        _dir: tempfile::TempDir,
        vault: LocalVault,
        clock: Clock,
        state_dir: std::path::PathBuf,
        state: State,
    }

    impl World {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let clock = Clock::manual("2026-12-05T10:00:00Z".parse().unwrap());
            let opts = VaultOptions {
                default_retention: Some(DefaultRetention { mode: RetentionMode::Compliance, period: 30 * DAY }),
                clock: clock.clone(),
                writer_create_only: true,
            };
            let vault = LocalVault::init(dir.path().join("vault"), &opts).unwrap();
            let state_dir = dir.path().join("state");
            let state = State::open(&state_dir).unwrap();
            Self { _dir: dir, vault, clock, state_dir, state }
        }

        fn as_role(&self, role: Role) -> VaultHandle {
            self.vault.login(&self.vault.read_credentials(role).unwrap()).unwrap()
        }

        fn target(&self) -> Target<'static> {
            Target { repository: "main", store: "/vault", clock_tolerance: Duration::from_secs(5) }
        }

        /// What the follower hands on now (a fresh auditor, as after a restart).
        fn follow(&self) -> Vec<SecurityEvent> {
            let mut out = Vec::new();
            follow(
                &self.as_role(Role::Auditor),
                &self.target(),
                &self.state,
                self.clock.now(),
                &mut |e| {
                    out.push(e);
                },
                &|| false,
            )
            .unwrap();
            out
        }
    }

    fn kinds(events: &[SecurityEvent]) -> Vec<(SecurityKind, String, String)> {
        events
            .iter()
            .map(|e| (e.kind, e.principal.clone().unwrap_or_default(), e.action.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn each_weakening_or_destructive_request_is_one_event_naming_who_did_what() {
        let w = World::new();
        let (writer, pruner, admin, reader) =
            (w.as_role(Role::Writer), w.as_role(Role::Pruner), w.as_role(Role::Admin), w.as_role(Role::Reader));
        // Normal work: a backup's put, its lock extended, a hold placed.
        let v = writer.put("data/p1", b"pack", &PutOptions::default()).unwrap().version;
        let later = w.clock.now() + jiff::SignedDuration::from_hours(24 * 40);
        writer
            .put_retention("data/p1", &v, Some(Retention { mode: RetentionMode::Compliance, until: later }), false)
            .unwrap();
        writer.put_legal_hold("data/p1", &v, true).unwrap();
        assert_eq!(w.follow(), [], "normal work is no event");
        // The attacks.
        let _ = writer.put("data/p1", b"other", &PutOptions::default()).unwrap_err();
        let _ = pruner.delete_version("data/p1", &v, false).unwrap_err();
        let _ = writer.delete("data/p1").unwrap_err();
        let _ = reader.put_legal_hold("data/p1", &v, false).unwrap_err();
        admin.put_legal_hold("data/p1", &v, false).unwrap();
        let soon = w.clock.now() + jiff::SignedDuration::from_hours(1);
        let _ = admin
            .put_retention("data/p1", &v, Some(Retention { mode: RetentionMode::Governance, until: soon }), true)
            .unwrap_err();
        admin.delete("data/p1").unwrap();
        let _ = admin.put_lock_config(&LockConfig { enabled: true, default_retention: None });
        let _ = admin.put_versioning(Versioning::Suspended).unwrap_err();
        let _ = w.vault.login(&coffer_store::Credentials {
            access_key: "CKWRONG".into(),
            secret_key: coffer_store::Secret::new("x".into()),
        });
        let events = w.follow();
        use SecurityKind as K;
        let s = |x: &str| x.to_owned();
        assert_eq!(
            kinds(&events),
            [
                (K::DestructiveDenied, s("writer"), s("put")),
                (K::DestructiveDenied, s("pruner"), s("delete-version")),
                (K::DestructiveDenied, s("writer"), s("delete")),
                (K::DestructiveDenied, s("reader"), s("legal-hold-off")),
                (K::WeakeningAllowed, s("admin"), s("legal-hold-off")),
                (K::DestructiveDenied, s("admin"), s("put-retention")),
                (K::WeakeningAllowed, s("admin"), s("delete")),
                (K::LockConfigChange, s("admin"), s("put-lock-config")),
                (K::VersioningChange, s("admin"), s("put-versioning")),
                (K::AuthenticationFailed, s("CKWRONG"), s("authenticate")),
            ]
        );
        let put = &events[0];
        assert_eq!(put.role.as_deref(), Some("writer"));
        assert_eq!(put.key.as_deref(), Some("data/p1"));
        assert_eq!(put.outcome.as_deref(), Some("denied"));
        assert_eq!(put.details["why"], "overwrite refused (writer create-only)");
        assert!(put.details["reason"].contains("already exists"), "{:?}", put.details);
        assert_eq!(put.repository.as_deref(), Some("main"));
        assert_eq!(put.time, Some(w.clock.now()));
        assert_eq!(events[1].object_version.as_deref(), Some(v.0.as_str()));
        assert!(events[1].summary.contains("pruner") && events[1].summary.contains("data/p1"), "{}", events[1].summary);
        // Sequence numbers are the entries', in order.
        let seqs: Vec<u64> = events.iter().map(|e| e.details["seq"].parse().unwrap()).collect();
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{seqs:?}");
    }

    #[test]
    fn the_cursor_survives_a_restart_and_never_repeats_an_entry() {
        let w = World::new();
        let admin = w.as_role(Role::Admin);
        let _ = admin.put_versioning(Versioning::Suspended);
        assert_eq!(w.follow().len(), 1);
        assert_eq!(w.follow(), []);
        // A restart: the state opened again.
        let again = State::open(&w.state_dir).unwrap();
        let mut out = Vec::new();
        follow(&w.as_role(Role::Auditor), &w.target(), &again, w.clock.now(), &mut |e| out.push(e), &|| false).unwrap();
        assert_eq!(out, []);
        let _ = admin.put_versioning(Versioning::Suspended);
        let events = w.follow();
        assert_eq!(events.len(), 1);
        let c = load_cursor(&w.state, "/vault").unwrap();
        assert_eq!(c.seq, events[0].details["seq"].parse::<u64>().unwrap());
        // More than a batch of normal entries: read through, nothing raised.
        let writer = w.as_role(Role::Writer);
        for i in 0..(BATCH + 20) {
            writer.put(&format!("data/{i}"), b"x", &PutOptions::default()).unwrap();
        }
        assert_eq!(w.follow(), []);
        assert_eq!(load_cursor(&w.state, "/vault").unwrap().seq, c.seq + BATCH as u64 + 20);
    }

    #[test]
    fn a_pruner_on_a_clock_moved_forward_is_one_clock_anomaly_naming_both_entries() {
        let w = World::new();
        let writer = w.as_role(Role::Writer);
        let v = writer.put("data/p1", b"pack", &PutOptions::default()).unwrap().version;
        let start = w.clock.now();
        // The clock moved 40 days forward: the 30-day compliance lock "expired".
        w.clock.advance(40 * DAY);
        w.as_role(Role::Pruner).delete_version("data/p1", &v, false).unwrap();
        let forward = w.clock.now();
        assert_eq!(w.follow(), [], "an allowed prune is normal work on its own");
        w.clock.set(start + jiff::SignedDuration::from_secs(60));
        writer.put("data/p2", b"pack", &PutOptions::default()).unwrap();
        writer.put("data/p3", b"pack", &PutOptions::default()).unwrap();
        let events = w.follow();
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.kind, SecurityKind::ClockAnomaly);
        assert_eq!(e.details["newest_before"], forward.to_string());
        let prune_seq: u64 = e.details["newest_seq"].parse().unwrap();
        assert_eq!(prune_seq + 1, e.details["seq"].parse::<u64>().unwrap());
        assert!(e.summary.contains(&format!("entry {prune_seq}")), "{}", e.summary);
        // The host's clock is behind the newest entry: reported once.
        let mut out = Vec::new();
        clock_check(&w.target(), &w.state, w.clock.now(), &mut |e| out.push(e)).unwrap();
        clock_check(&w.target(), &w.state, w.clock.now(), &mut |e| out.push(e)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, SecurityKind::ClockAnomaly);
        assert_eq!(out[0].details["newest_seq"], prune_seq.to_string());
        // Within the tolerance, no anomaly.
        let w = World::new();
        let writer = w.as_role(Role::Writer);
        writer.put("a", b"x", &PutOptions::default()).unwrap();
        w.clock.set(w.clock.now() - jiff::SignedDuration::from_secs(3));
        writer.put("b", b"x", &PutOptions::default()).unwrap();
        assert_eq!(w.follow(), []);
    }

    #[test]
    fn a_broken_chain_is_reported_once_by_whoever_sees_it_first() {
        let w = World::new();
        let writer = w.as_role(Role::Writer);
        writer.put("data/a", b"x", &PutOptions::default()).unwrap();
        assert_eq!(w.follow(), []);
        writer.put("data/b", b"x", &PutOptions::default()).unwrap();
        writer.put("data/c", b"x", &PutOptions::default()).unwrap();
        // An attacker with the disk rewrites entry 3 (data/b: who made it) before it is read.
        let db = rusqlite::Connection::open(w.vault.root().join("meta.sqlite")).unwrap();
        db.execute_batch("DROP TRIGGER audit_append_only_update").unwrap();
        db.execute("UPDATE audit SET principal = 'nobody' WHERE seq = 3", []).unwrap();
        let events = w.follow();
        assert_eq!(kinds(&events), [(SecurityKind::AuditChainBroken, String::new(), String::new())]);
        assert_eq!(events[0].details["seq"], "3");
        // The full check sees the same break: not reported again.
        let mut out = Vec::new();
        full_check(&w.as_role(Role::Auditor), &w.target(), &w.state, w.clock.now(), &mut |e| out.push(e)).unwrap();
        assert_eq!(out, []);
        // A rewrite behind the cursor shows only in the full check, once.
        db.execute("UPDATE audit SET principal = 'nobody' WHERE seq = 2", []).unwrap();
        assert_eq!(w.follow(), []);
        full_check(&w.as_role(Role::Auditor), &w.target(), &w.state, w.clock.now(), &mut |e| out.push(e)).unwrap();
        full_check(&w.as_role(Role::Auditor), &w.target(), &w.state, w.clock.now(), &mut |e| out.push(e)).unwrap();
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].details["seq"], "2");
        // The entry the cursor stands on, changed: seen at the next poll.
        db.execute("UPDATE audit SET reason = 'x' WHERE seq = 4", []).unwrap();
        let events = w.follow();
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0].details["seq"], "4");
    }

    #[test]
    fn an_announced_canary_probe_is_passed_over_once_and_nothing_else_is() {
        let w = World::new();
        let key = format!("{}canary/1", super::super::RESERVED_PREFIX);
        let v = w.as_role(Role::Writer).put(&key, b"canary", &PutOptions::default()).unwrap().version;
        let now = w.clock.now();
        let probe =
            super::super::Probe { principal: "pruner".into(), action: "delete-version".into(), key: Some(key.clone()) };
        super::super::expect_probes(&w.state, "/vault", &[probe], now, now + jiff::SignedDuration::from_secs(30))
            .unwrap();
        let pruner = w.as_role(Role::Pruner);
        let _ = pruner.delete_version(&key, &v, false).unwrap_err();
        assert_eq!(w.follow(), [], "the announced probe");
        // The same refusal again: not announced, reported.
        let _ = pruner.delete_version(&key, &v, false).unwrap_err();
        let events = w.follow();
        assert_eq!(kinds(&events), [(SecurityKind::DestructiveDenied, "pruner".into(), "delete-version".into())]);
    }

    fn entry(action: &str, outcome: &str, role: &str) -> AuditEntry {
        AuditEntry {
            seq: 1,
            time: "2026-12-05T10:00:00Z".parse().unwrap(),
            principal: role.into(),
            role: role.into(),
            action: action.into(),
            key: None,
            version: None,
            outcome: outcome.into(),
            reason: String::new(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn unknown_actions_are_reported_and_reads_are_not() {
        use SecurityKind as K;
        let k = |a: &str, o: &str, r: &str| classify(&entry(a, o, r)).map(|v| v.kind);
        assert_eq!(k("rotate-credentials", "allowed", "admin"), Some(K::PrincipalChange));
        assert_eq!(k("rotate-credentials", "denied", "writer"), Some(K::PrincipalChange));
        assert_eq!(k("frobnicate", "allowed", "admin"), Some(K::WeakeningAllowed));
        assert_eq!(k("frobnicate", "denied", "admin"), Some(K::DestructiveDenied));
        assert_eq!(k("bypass-governance", "allowed", "admin"), Some(K::WeakeningAllowed));
        assert_eq!(k("put-lock-config", "failed", "admin"), Some(K::LockConfigChange));
        assert_eq!(k("delete-version", "allowed", "pruner"), None);
        assert_eq!(k("delete-version", "allowed", "admin"), Some(K::WeakeningAllowed));
        assert_eq!(k("delete-version", "failed", "pruner"), None);
        assert_eq!(k("get", "denied", "pruner"), None);
        assert_eq!(k("init", "allowed", "-"), None);
    }

    #[test]
    fn hostile_strings_are_bounded_and_cannot_forge_lines() {
        let mut e = entry("delete", "denied", "writer");
        e.key = Some(format!("a\nSubject: fake\r\n{}", "k".repeat(10_000)));
        e.reason = "r".repeat(100_000);
        let t = Target { repository: "main", store: "/v", clock_tolerance: Duration::ZERO };
        let ev = entry_event(SecurityKind::DestructiveDenied, "x", &e, &t, e.time);
        let key = ev.key.unwrap();
        assert!(!key.contains('\n') && !key.contains('\r'));
        assert!(key.chars().count() <= FIELD_MAX + 1);
        assert!(ev.details["reason"].chars().count() <= FIELD_MAX + 1);
        assert!(!ev.summary.contains('\n'));
    }
}
