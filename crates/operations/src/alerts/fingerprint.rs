//! The alert configuration's fingerprint: what `[alerts]` says about who is told what, in a
//! canonical form without secrets, kept in the state and compared at every daemon start and
//! reload (`docs/alerts.md`, "Changes to the alert configuration").
//!
//! Invariant guarded here: the admin who weakens a lock must not be able to mute the alert
//! about it quietly. Removing a target, redirecting one, changing a route or lengthening
//! `security-repeat-interval` is itself a security event (`alert-config-change`), delivered
//! through the targets of the *previous* configuration as well as the new ones. Adding a
//! target is not (it is logged).
//!
//! No secret and no URL is kept or shown: a destination is its kind, its scheme and host,
//! and a short hash of the whole (a chat webhook's URL path is its token).

use crate::config::AlertsConfig;
use crate::security::{SecurityEvent, SecurityKind};
use crate::state::{State, StateError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2_hmac::Digest as _;
use std::collections::BTreeMap;

/// The state key of the fingerprint in force.
pub const FINGERPRINT_KEY: &str = "alerts-fingerprint";
/// The state key of the `[alerts]` table in force (to deliver through its targets once
/// after a restart with a weaker one). Secrets in it are references (`env`, `file`).
pub const CONFIG_KEY: &str = "alerts-config";

/// The canonical form of `[alerts]` (JSON in the state, format version
/// [`Fingerprint::VERSION`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Format version.
    pub version: u32,
    /// Every target by name: `KIND DESTINATION`.
    pub targets: BTreeMap<String, String>,
    /// Every route, in order, as one line.
    pub routes: Vec<String>,
    /// `repeat-interval`, seconds.
    pub repeat_interval: u64,
    /// `security-repeat-interval`, seconds.
    pub security_repeat_interval: u64,
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = sha2_hmac::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..6])
}

/// `https://host:port`, without user, path or query (which may hold a token).
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("?", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}")
}

impl Fingerprint {
    /// The format version this build writes.
    pub const VERSION: u32 = 1;

    /// The fingerprint of `c`.
    #[must_use]
    pub fn of(c: &AlertsConfig) -> Self {
        let mut targets = BTreeMap::new();
        for (n, t) in &c.webhook {
            targets.insert(n.clone(), format!("webhook {} #{}", origin(&t.url), short_hash(&[&t.url])));
        }
        for (n, t) in &c.email {
            let port = t.port.map_or_else(String::new, |p| format!(":{p}"));
            targets.insert(n.clone(), format!("email smtp://{}{port} to {}", t.server, t.to.join(",")));
        }
        for (n, t) in &c.command {
            let args: Vec<&str> = t.command.iter().map(String::as_str).collect();
            let program = t.command.first().map_or("", String::as_str);
            targets.insert(n.clone(), format!("command {program} #{}", short_hash(&args)));
        }
        for (n, t) in &c.heartbeat {
            let job = t.job.as_deref().unwrap_or("daemon");
            targets.insert(n.clone(), format!("heartbeat {} #{} for {job}", origin(&t.url), short_hash(&[&t.url])));
        }
        let routes = c
            .route
            .iter()
            .map(|r| {
                let kinds: Vec<&str> = r.kinds.iter().map(|k| k.as_str()).collect();
                format!(
                    "kinds [{}] min-severity {} sources [{}] -> [{}]",
                    kinds.join(","),
                    r.min_severity.map_or("any", |s| s.as_str()),
                    r.sources.join(","),
                    r.targets.join(",")
                )
            })
            .collect();
        Self {
            version: Self::VERSION,
            targets,
            routes,
            repeat_interval: c.repeat_interval.as_secs(),
            security_repeat_interval: c.security_repeat_interval.as_secs(),
        }
    }
}

/// What changed from `old` to `new`: (what weakens alerting, what does not).
#[must_use]
pub fn changes(old: &Fingerprint, new: &Fingerprint) -> (Vec<String>, Vec<String>) {
    let (mut weaker, mut other) = (Vec::new(), Vec::new());
    for (name, was) in &old.targets {
        match new.targets.get(name) {
            None => weaker.push(format!("target {name} removed (was {was})")),
            Some(now) if now != was => weaker.push(format!("target {name} changed: {was} -> {now}")),
            Some(_) => {}
        }
    }
    for (name, now) in &new.targets {
        if !old.targets.contains_key(name) {
            other.push(format!("target {name} added ({now})"));
        }
    }
    if old.routes != new.routes {
        weaker.push(format!("routes changed: [{}] -> [{}]", old.routes.join("; "), new.routes.join("; ")));
    }
    if new.security_repeat_interval > old.security_repeat_interval {
        weaker.push(format!(
            "security-repeat-interval lengthened: {}s -> {}s",
            old.security_repeat_interval, new.security_repeat_interval
        ));
    } else if new.security_repeat_interval < old.security_repeat_interval {
        other.push(format!(
            "security-repeat-interval shortened: {}s -> {}s",
            old.security_repeat_interval, new.security_repeat_interval
        ));
    }
    if new.repeat_interval != old.repeat_interval {
        other.push(format!("repeat-interval: {}s -> {}s", old.repeat_interval, new.repeat_interval));
    }
    (weaker, other)
}

/// The comparison of the configuration in force with the one the state kept.
#[derive(Debug)]
pub struct ConfigCheck {
    /// The `alert-config-change` event, when alerting was weakened.
    pub event: Option<SecurityEvent>,
    /// The previous `[alerts]` table, when the state kept it (its targets are told too).
    pub previous: Option<AlertsConfig>,
    fingerprint: String,
    config: String,
}

/// Compares `config` with the fingerprint kept in `state` (none: the first start, nothing to
/// compare). Nothing is kept yet: call [`keep`] once the event is recorded, so a crash in
/// between raises it again rather than losing it. `previous` is the `[alerts]` table the
/// daemon ran with (on reload); none: the one kept in the state.
///
/// # Errors
/// [`StateError`].
pub fn check(
    state: &State,
    config: &AlertsConfig,
    previous: Option<&AlertsConfig>,
    now: Timestamp,
) -> Result<ConfigCheck, StateError> {
    let new = Fingerprint::of(config);
    let fingerprint = serde_json::to_string(&new).expect("a fingerprint serializes");
    let config_json = serde_json::to_string(config).expect("an alerts table serializes");
    let kept = state.get(FINGERPRINT_KEY)?;
    let old = kept.as_deref().and_then(|j| serde_json::from_str::<Fingerprint>(j).ok());
    let previous = match previous {
        Some(p) => Some(p.clone()),
        None => state.get(CONFIG_KEY)?.and_then(|j| serde_json::from_str::<AlertsConfig>(&j).ok()),
    };
    let mut out = ConfigCheck { event: None, previous, fingerprint, config: config_json };
    let Some(old) = old else {
        if kept.is_some() {
            tracing::warn!("alerts: the kept fingerprint of the alert configuration is unreadable; replaced");
        } else {
            tracing::info!(
                targets = new.targets.len(),
                "alerts: first start, the alert configuration's fingerprint is kept"
            );
        }
        return Ok(out);
    };
    let (weaker, other) = changes(&old, &new);
    for change in &other {
        tracing::info!(change = %change, "alerts: alert configuration changed");
    }
    if weaker.is_empty() {
        return Ok(out);
    }
    let mut e = SecurityEvent::new(
        SecurityKind::AlertConfigChange,
        "config",
        now,
        format!("alert configuration weakened: {}", weaker.join("; ")),
    );
    e.action = Some("alerts-config-change".into());
    for (i, c) in weaker.iter().enumerate() {
        e.details.insert(format!("change-{}", i + 1), c.clone());
    }
    out.event = Some(e);
    Ok(out)
}

/// Keeps the configuration `check` compared as the one in force.
///
/// # Errors
/// [`StateError`].
pub fn keep(state: &State, check: &ConfigCheck) -> Result<(), StateError> {
    state.set(FINGERPRINT_KEY, &check.fingerprint)?;
    state.set(CONFIG_KEY, &check.config)
}
