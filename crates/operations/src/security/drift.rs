//! The drift watch: the store's protective configuration ([`ObjectStore::protection`])
//! against its baseline (`docs/security.md`, section "drift").
//!
//! Invariants guarded here:
//! - every field that differs from the baseline is one `drift` event naming the field and
//!   `old → new`, once per distinct new value (the value reported is kept in the state, so
//!   a restart neither repeats nor skips it); a further change is a new event, a return to
//!   the baseline is logged;
//! - a field that cannot be read is one `unreadable` event when it becomes unreadable (not
//!   at every poll); a store that cannot be reached at all is one event for the whole
//!   configuration (field `*`), not one per field;
//! - the baseline is kept twice: in the local state (the reference) and as a locked object
//!   under [`BASELINE_PREFIX`] (within `RESERVED_PREFIX`) written by the writer role. What is read back
//!   from the store is hostile input: it is parsed with bounds and compared with the local
//!   copy, and a baseline the daemon did not write (someone with the writer key re-baselined
//!   to hide a change), a changed one or a missing one is a `baseline-change` event — the
//!   comparison goes on against the local copy, so the hidden change still shows as drift;
//! - values in events are bounded (a long policy shows its first characters, its length
//!   and its SHA-256), and reasons are one line; no secret ever reaches an event.

use super::{SecurityEvent, SecurityKind};
use crate::config::Config;
use crate::open::{OpenJobError, open_store};
use crate::state::{State, StateError};
use coffer_store::{Clock, ObjectStore, Protection, PutOptions, Role, StoreError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The layer name in events.
pub const LAYER: &str = "drift";
/// Where the baseline objects live in the store.
pub const BASELINE_PREFIX: &str = "coffer-security/baseline/";
/// The field name of "the whole configuration" (the store cannot be reached at all).
pub const ALL_FIELDS: &str = "*";
/// The field name of the baseline object itself (it cannot be read back).
pub const BASELINE_FIELD: &str = "baseline";
/// The largest baseline object read back; a larger one is not a baseline.
pub const MAX_BASELINE_BYTES: usize = 1024 * 1024;
/// How many baseline keys are looked at, at most, to find the newest.
const MAX_BASELINE_KEYS: usize = 10_000;
/// Values longer than this are shown shortened, with their length and digest.
const MAX_SHOWN: usize = 160;

/// A baseline document (format version [`Baseline::VERSION`], `docs/security.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Baseline {
    /// Always `coffer-drift-baseline`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The repository whose store it describes.
    pub repository: String,
    /// The store as shown in messages.
    pub store: String,
    /// When it was taken.
    pub created: Timestamp,
    /// `first-check` or `accepted`.
    pub reason: String,
    /// Each protective field's value when it was taken.
    pub fields: BTreeMap<String, String>,
    /// The fields that could not be read when it was taken (not part of the baseline).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreadable: BTreeMap<String, String>,
}

impl Baseline {
    /// The format name.
    pub const FORMAT: &'static str = "coffer-drift-baseline";
    /// The format version this build writes and reads.
    pub const VERSION: u32 = 1;

    /// Parses a baseline read back from the store (hostile input: bounded, checked).
    ///
    /// # Errors
    /// One line saying what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_BASELINE_BYTES {
            return Err(format!("{} bytes, more than {MAX_BASELINE_BYTES}", bytes.len()));
        }
        let b: Self = serde_json::from_slice(bytes).map_err(|e| format!("not a baseline: {e}"))?;
        if b.format != Self::FORMAT {
            return Err(format!("not a baseline: format {}", shown(&b.format)));
        }
        if b.version != Self::VERSION {
            return Err(format!("baseline format version {} (this build reads {})", b.version, Self::VERSION));
        }
        if b.fields.len() > 256 || b.fields.keys().any(|k| k.len() > 64) {
            return Err("not a baseline: too many fields or too long a field name".into());
        }
        Ok(b)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a baseline serializes");
        v.push(b'\n');
        v
    }
}

/// The local copy of a repository's baseline (state key `drift-baseline:REPO`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Local {
    /// The baseline object's key, once written (none: to be written at the next check).
    key: Option<String>,
    /// SHA-256 (hex) of the object's bytes.
    digest: String,
    baseline: Baseline,
}

/// Why the drift watch's commands failed.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenJobError),
    /// The local state could not be read or written.
    #[error("the drift watch's state: {0}")]
    State(#[from] StateError),
    /// A store request failed.
    #[error("{what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// Why.
        source: StoreError,
    },
}

impl DriftError {
    /// The class of this error.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        match self {
            Self::Open(e) => e.class(),
            Self::State(e) => e.class(),
            Self::Store { source, .. } => source.class(),
        }
    }
}

/// One field of [`Comparison`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FieldRow {
    /// The field.
    pub field: String,
    /// Its baseline value (none: not in the baseline).
    pub baseline: Option<String>,
    /// Its current value (none: absent or unreadable).
    pub current: Option<String>,
    /// Why it cannot be read now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// Whether it differs from the baseline (an unreadable field differs).
    pub differs: bool,
}

/// The baseline of a repository's store against its current configuration
/// (`coffer security baseline show`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Comparison {
    /// The repository.
    pub repository: String,
    /// The store as shown in messages.
    pub store: String,
    /// The baseline (none: no check has run yet and the store holds none).
    pub baseline: Option<Baseline>,
    /// The baseline object's key in the store, if written.
    pub baseline_key: Option<String>,
    /// Field by field.
    pub fields: Vec<FieldRow>,
    /// The whole configuration could not be read (why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl Comparison {
    /// Whether anything differs (or cannot be read, or there is no baseline).
    #[must_use]
    pub fn differs(&self) -> bool {
        self.baseline.is_none() || self.unreadable.is_some() || self.fields.iter().any(|f| f.differs)
    }
}

fn key_baseline(repo: &str) -> String {
    format!("drift-baseline:{repo}")
}
fn key_reported(repo: &str, field: &str) -> String {
    format!("drift-reported:{repo}:{field}")
}
fn key_unreadable(repo: &str, field: &str) -> String {
    format!("drift-unreadable:{repo}:{field}")
}
fn key_foreign(repo: &str) -> String {
    format!("drift-foreign:{repo}")
}

/// Compares the protective configuration of repository `repository`'s store with its
/// baseline (establishing the baseline on the first run) and returns the events found:
/// one per drifted field, and `unreadable` when it cannot be read. Never fails: a failure
/// is an event.
#[must_use]
pub fn check(config: &Config, repository: &str, state: &State, clock: &Clock) -> Vec<SecurityEvent> {
    let now = clock.now();
    let mut w = Watch { config, repo: repository, state, now, store: String::new(), events: Vec::new() };
    match w.run() {
        Ok(()) => w.events,
        Err(e) => {
            // The state is where "once" is remembered: without it nothing can be promised,
            // so the failure itself is reported (at each check, until the state works).
            tracing::error!(repository, error = %e, "drift watch: the state cannot be used");
            let mut ev = w.event(SecurityKind::Unreadable, format!("drift watch of {repository}: {e}"));
            ev.details.insert("field".into(), "state".into());
            ev.details.insert("reason".into(), one_line(&e.to_string()));
            w.events.push(ev);
            w.events
        }
    }
}

/// Accepts the current configuration of `repository`'s store as its new baseline: writes a
/// new locked baseline object (writer role), keeps it as the local copy, forgets the drifts
/// reported against the old one, and records a `baseline-change` event (returned).
///
/// # Errors
/// [`DriftError`]: the store cannot be opened or written, the state cannot be written.
pub fn accept(config: &Config, repository: &str, state: &State, clock: &Clock) -> Result<SecurityEvent, DriftError> {
    let now = clock.now();
    let (reader, shown) = open_reader(config, repository)?;
    let current = reader
        .protection()
        .map_err(|source| DriftError::Store { what: "cannot read the protective configuration".into(), source })?;
    let old = load_local(state, repository)?;
    let baseline = new_baseline(repository, &shown, now, "accepted", &current);
    let (writer, _) = open_store(config, repository, Role::Writer)?;
    let local = write_baseline(writer.as_ref(), baseline, now)
        .map_err(|source| DriftError::Store { what: "cannot write the baseline object".into(), source })?;
    state.set(&key_baseline(repository), &serde_json::to_string(&local).expect("a baseline serializes"))?;
    for (k, _) in state.scan(&format!("drift-reported:{repository}:"))? {
        state.remove(&k)?;
    }
    state.remove(&key_foreign(repository))?;
    let w = Watch { config, repo: repository, state, now, store: shown, events: Vec::new() };
    let mut ev = w.event(
        SecurityKind::BaselineChange,
        format!("new drift baseline accepted for {}: {}", w.store, local.key.as_deref().unwrap_or("?")),
    );
    ev.action = Some("baseline-accept".into());
    ev.outcome = Some("allowed".into());
    ev.key = local.key.clone();
    let changed: Vec<String> =
        old.as_ref().map(|o| changed_fields(&o.baseline.fields, &local.baseline.fields)).unwrap_or_default();
    if let Some(o) = &old {
        if let Some(k) = &o.key {
            ev.details.insert("previous".into(), k.clone());
        }
    }
    ev.details.insert("changed-fields".into(), if changed.is_empty() { "none".into() } else { changed.join(",") });
    ev.details.insert("digest".into(), local.digest.clone());
    super::record::record(state, &ev)?;
    tracing::warn!(repository, key = ?local.key, "drift baseline accepted");
    Ok(ev)
}

/// The baseline of `repository`'s store (the local copy, else the newest in the store)
/// against its current configuration, field by field. Reads only.
///
/// # Errors
/// [`DriftError`]: the store cannot be opened, the state cannot be read.
pub fn show(config: &Config, repository: &str, state: &State) -> Result<Comparison, DriftError> {
    let (reader, shown) = open_reader(config, repository)?;
    let (baseline, baseline_key) = match load_local(state, repository)? {
        Some(l) => (Some(l.baseline), l.key),
        None => match newest_in_store(config, repository) {
            Ok(Some((key, b, _))) => (Some(b), Some(key)),
            _ => (None, None),
        },
    };
    let (current, unreadable) = match reader.protection() {
        Ok(p) => (p, None),
        Err(e) => (Protection::default(), Some(one_line(&coffer_store::display_chain(&e)))),
    };
    let empty = BTreeMap::new();
    let base = baseline.as_ref().map_or(&empty, |b| &b.fields);
    let names: BTreeSet<&String> = base.keys().chain(current.fields.keys()).chain(current.unreadable.keys()).collect();
    let fields = names
        .into_iter()
        .map(|f| {
            let b = base.get(f).cloned();
            let c = current.fields.get(f).cloned();
            let u = current.unreadable.get(f).cloned();
            let differs = u.is_some() || b != c;
            FieldRow { field: f.clone(), baseline: b, current: c, unreadable: u, differs }
        })
        .collect();
    Ok(Comparison { repository: repository.to_owned(), store: shown, baseline, baseline_key, fields, unreadable })
}

/// Opens the store to read its configuration: as the auditor when its credentials are
/// available (named in the file, or a local vault's own), else as the reader.
fn open_reader(config: &Config, repository: &str) -> Result<(Arc<dyn ObjectStore>, String), OpenJobError> {
    let r = config.repository(repository).ok_or_else(|| OpenJobError::Unknown(repository.to_owned()))?;
    let local = r.location.as_deref().is_none_or(|l| !l.starts_with("s3://"));
    if r.credentials.contains_key(Role::Auditor.as_str()) || local {
        match open_store(config, repository, Role::Auditor) {
            Ok(s) => return Ok(s),
            Err(e) => tracing::debug!(repository, error = %e, "drift watch: no auditor, reading as the reader"),
        }
    }
    open_store(config, repository, Role::Reader)
}

fn new_baseline(repo: &str, store: &str, now: Timestamp, reason: &str, p: &Protection) -> Baseline {
    Baseline {
        format: Baseline::FORMAT.into(),
        version: Baseline::VERSION,
        repository: repo.to_owned(),
        store: store.to_owned(),
        created: now,
        reason: reason.into(),
        fields: p.fields.clone(),
        unreadable: p.unreadable.clone(),
    }
}

/// Writes `baseline` as a new object `coffer-security/baseline/<time>-<random>.json`, with
/// the store's default lock (see `docs/security.md`), create-only.
fn write_baseline(store: &dyn ObjectStore, baseline: Baseline, now: Timestamp) -> Result<Local, StoreError> {
    let bytes = baseline.to_bytes();
    let key = format!(
        "{BASELINE_PREFIX}{}{:06}Z-{}.json",
        now.strftime("%Y%m%dT%H%M%S."),
        now.subsec_microsecond(),
        crate::event::random_id()
    );
    store.put(&key, &bytes, &PutOptions { create_only: true, ..PutOptions::default() })?;
    Ok(Local { key: Some(key), digest: digest(&bytes), baseline })
}

fn digest(bytes: &[u8]) -> String {
    use sha2_hmac::Digest as _;
    hex::encode(sha2_hmac::Sha256::digest(bytes))
}

fn load_local(state: &State, repo: &str) -> Result<Option<Local>, StateError> {
    Ok(state.get(&key_baseline(repo))?.and_then(|s| match serde_json::from_str::<Local>(&s) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(repository = repo, error = %e, "drift watch: the local baseline does not parse");
            None
        }
    }))
}

/// Whether `key` is a baseline object's name (`<digits>T<digits>.<digits>Z-<hex>.json`).
fn is_baseline_key(key: &str) -> bool {
    key.strip_prefix(BASELINE_PREFIX).is_some_and(|name| {
        name.len() <= 80
            && name.ends_with(".json")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    })
}

/// The baseline object keys in the store (bounded), newest last.
fn baseline_keys(store: &dyn ObjectStore) -> Result<Vec<String>, StoreError> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = store.list_entries(BASELINE_PREFIX, token.as_deref(), 1000)?;
        keys.extend(page.items.into_iter().filter(|e| !e.delete_marker).map(|e| e.key).filter(|k| is_baseline_key(k)));
        token = page.next;
        if token.is_none() || keys.len() >= MAX_BASELINE_KEYS {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The newest baseline in the store: key, document and digest (none when there is none).
fn newest_in_store(config: &Config, repo: &str) -> Result<Option<(String, Baseline, String)>, String> {
    let (store, _) = open_store(config, repo, Role::Reader).map_err(|e| e.to_string())?;
    let keys = baseline_keys(store.as_ref()).map_err(|e| coffer_store::display_chain(&e))?;
    let Some(key) = keys.last() else { return Ok(None) };
    let obj = store.get(key, None).map_err(|e| coffer_store::display_chain(&e))?;
    let b = Baseline::parse(&obj.data).map_err(|e| format!("{key}: {e}"))?;
    Ok(Some((key.clone(), b, digest(&obj.data))))
}

fn changed_fields(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names.into_iter().filter(|f| a.get(*f) != b.get(*f)).cloned().collect()
}

/// One check of one repository.
struct Watch<'a> {
    config: &'a Config,
    repo: &'a str,
    state: &'a State,
    now: Timestamp,
    store: String,
    events: Vec<SecurityEvent>,
}

impl Watch<'_> {
    fn event(&self, kind: SecurityKind, summary: String) -> SecurityEvent {
        let mut ev = SecurityEvent::new(kind, LAYER, self.now, summary);
        ev.repository = Some(self.repo.to_owned());
        if !self.store.is_empty() {
            ev.store = Some(self.store.clone());
        }
        ev
    }

    fn run(&mut self) -> Result<(), StateError> {
        let current = match open_reader(self.config, self.repo) {
            Ok((store, shown)) => {
                self.store = shown;
                store.protection().map_err(|e| one_line(&coffer_store::display_chain(&e)))
            }
            Err(e) => Err(one_line(&e.to_string())),
        };
        let current = match current {
            Ok(p) if !p.fields.is_empty() => p,
            Ok(p) => {
                let why = p.unreadable.values().next().cloned().unwrap_or_else(|| "no field could be read".into());
                return self.unreadable(ALL_FIELDS, &why);
            }
            Err(why) => return self.unreadable(ALL_FIELDS, &why),
        };
        self.readable(ALL_FIELDS)?;

        let local = match load_local(self.state, self.repo)? {
            Some(l) => l,
            None => self.establish(&current)?,
        };
        let local = self.store_pending(local)?;
        self.verify_store_copy(&local)?;

        for (field, why) in &current.unreadable {
            self.unreadable(field, why)?;
        }
        let names: BTreeSet<&String> = local.baseline.fields.keys().chain(current.fields.keys()).collect();
        for field in names {
            if current.unreadable.contains_key(field) {
                continue;
            }
            self.readable(field)?;
            self.compare(field, local.baseline.fields.get(field), current.fields.get(field))?;
        }
        Ok(())
    }

    /// The first check: adopts the newest baseline in the store (a new host, a lost state),
    /// else takes the current configuration as the baseline and writes it.
    fn establish(&mut self, current: &Protection) -> Result<Local, StateError> {
        match newest_in_store(self.config, self.repo) {
            Ok(Some((key, baseline, digest))) if baseline.repository == self.repo => {
                tracing::warn!(
                    repository = self.repo,
                    key,
                    "drift watch: no local baseline; adopted the newest in the store"
                );
                let local = Local { key: Some(key), digest, baseline };
                self.save(&local)?;
                return Ok(local);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(repository = self.repo, error = %e, "drift watch: cannot read the store's baselines")
            }
        }
        let baseline = new_baseline(self.repo, &self.store, self.now, "first-check", current);
        let bytes = baseline.to_bytes();
        let local = Local { key: None, digest: digest(&bytes), baseline };
        self.save(&local)?;
        tracing::info!(repository = self.repo, fields = local.baseline.fields.len(), "drift baseline established");
        Ok(local)
    }

    /// Writes the baseline object if it is not written yet (the writer may have been
    /// unavailable at the first check); the local copy stays the reference either way.
    fn store_pending(&mut self, local: Local) -> Result<Local, StateError> {
        if local.key.is_some() {
            return Ok(local);
        }
        let written = open_store(self.config, self.repo, Role::Writer)
            .map_err(|e| e.to_string())
            .and_then(|(w, _)| write_baseline(w.as_ref(), local.baseline.clone(), self.now).map_err(|e| e.to_string()));
        match written {
            Ok(l) => {
                tracing::info!(repository = self.repo, key = ?l.key, "drift baseline written to the store");
                self.save(&l)?;
                Ok(l)
            }
            Err(e) => {
                tracing::warn!(repository = self.repo, error = %e, "drift watch: cannot write the baseline object yet");
                Ok(local)
            }
        }
    }

    fn save(&self, local: &Local) -> Result<(), StateError> {
        self.state.set(&key_baseline(self.repo), &serde_json::to_string(local).expect("a baseline serializes"))
    }

    /// Compares the store's baselines with the local copy: ours must be there, unchanged,
    /// and the newest. Each distinct finding is one `baseline-change` event.
    fn verify_store_copy(&mut self, local: &Local) -> Result<(), StateError> {
        let Some(ours) = &local.key else { return Ok(()) };
        let store = match open_store(self.config, self.repo, Role::Reader) {
            Ok((s, _)) => s,
            Err(e) => return self.unreadable(BASELINE_FIELD, &one_line(&e.to_string())),
        };
        let keys = match baseline_keys(store.as_ref()) {
            Ok(k) => k,
            Err(e) => return self.unreadable(BASELINE_FIELD, &one_line(&coffer_store::display_chain(&e))),
        };
        let mut finding: Option<(String, String, BTreeMap<String, String>)> = None;
        if keys.binary_search(ours).is_err() {
            finding = Some((
                format!("missing:{ours}"),
                format!("the drift baseline object {ours} is gone from {} (deleted or hidden)", self.store),
                BTreeMap::new(),
            ));
        } else {
            match store.get(ours, None) {
                Ok(obj) if digest(&obj.data) != local.digest => {
                    let d = digest(&obj.data);
                    finding = Some((
                        format!("changed:{ours}:{d}"),
                        format!("the drift baseline object {ours} in {} no longer matches the local copy", self.store),
                        BTreeMap::from([("digest".into(), d)]),
                    ));
                }
                Ok(_) => {}
                Err(e) => return self.unreadable(BASELINE_FIELD, &one_line(&coffer_store::display_chain(&e))),
            }
        }
        if finding.is_none() {
            if let Some(newest) = keys.last().filter(|k| *k > ours) {
                let mut details = BTreeMap::from([("foreign-key".to_owned(), newest.clone())]);
                match store.get(newest, None) {
                    Ok(obj) => match Baseline::parse(&obj.data) {
                        Ok(b) => {
                            let changed = changed_fields(&local.baseline.fields, &b.fields);
                            details.insert(
                                "changed-fields".into(),
                                if changed.is_empty() { "none".into() } else { changed.join(",") },
                            );
                        }
                        Err(e) => {
                            details.insert("parse-error".into(), one_line(&e));
                        }
                    },
                    Err(e) => {
                        details.insert("read-error".into(), one_line(&coffer_store::display_chain(&e)));
                    }
                }
                finding = Some((
                    format!("foreign:{newest}"),
                    format!("a drift baseline the watch did not write appeared in {}: {newest}", self.store),
                    details,
                ));
            }
        }
        self.readable(BASELINE_FIELD)?;
        let key = key_foreign(self.repo);
        let seen = self.state.get(&key)?;
        match finding {
            Some((id, summary, details)) => {
                if seen.as_deref() != Some(id.as_str()) {
                    let mut ev = self.event(SecurityKind::BaselineChange, summary);
                    ev.key = Some(ours.clone());
                    ev.details = details;
                    ev.details.insert("baseline".into(), ours.clone());
                    self.events.push(ev);
                    self.state.set(&key, &id)?;
                }
            }
            None => {
                if seen.is_some() {
                    tracing::info!(
                        repository = self.repo,
                        "drift watch: the store's baselines match the local copy again"
                    );
                    self.state.remove(&key)?;
                }
            }
        }
        Ok(())
    }

    fn compare(&mut self, field: &str, old: Option<&String>, new: Option<&String>) -> Result<(), StateError> {
        let key = key_reported(self.repo, field);
        let reported = self.state.get(&key)?;
        if old == new {
            if reported.is_some() {
                tracing::warn!(repository = self.repo, field, "drift watch: back to its baseline value");
                self.state.remove(&key)?;
            }
            return Ok(());
        }
        let new_text = new.map_or("(absent)", String::as_str);
        if reported.as_deref() == Some(new_text) {
            return Ok(());
        }
        let old_text = old.map_or("(not in baseline)", String::as_str);
        let mut ev = self
            .event(SecurityKind::Drift, format!("{} {field}: {} → {}", self.store, shown(old_text), shown(new_text)));
        ev.details.insert("field".into(), field.to_owned());
        ev.details.insert("old".into(), shown(old_text));
        ev.details.insert("new".into(), shown(new_text));
        ev.details.insert("old-sha256".into(), digest(old_text.as_bytes()));
        ev.details.insert("new-sha256".into(), digest(new_text.as_bytes()));
        self.events.push(ev);
        self.state.set(&key, new_text)
    }

    fn unreadable(&mut self, field: &str, why: &str) -> Result<(), StateError> {
        let key = key_unreadable(self.repo, field);
        if self.state.get(&key)?.is_some() {
            return Ok(());
        }
        let what = if field == ALL_FIELDS {
            "the protective configuration".to_owned()
        } else if field == BASELINE_FIELD {
            "the drift baseline object".to_owned()
        } else {
            format!("field {field}")
        };
        let store = if self.store.is_empty() { self.repo.to_owned() } else { self.store.clone() };
        let mut ev = self.event(SecurityKind::Unreadable, format!("{store}: cannot read {what}: {}", one_line(why)));
        ev.details.insert("field".into(), field.to_owned());
        ev.details.insert("reason".into(), one_line(why));
        self.events.push(ev);
        self.state.set(&key, &one_line(why))
    }

    fn readable(&mut self, field: &str) -> Result<(), StateError> {
        let key = key_unreadable(self.repo, field);
        if self.state.get(&key)?.is_some() {
            tracing::info!(repository = self.repo, field, "drift watch: readable again");
            self.state.remove(&key)?;
        }
        Ok(())
    }
}

/// A value as events show it: whole when short, else its first characters, its length and
/// its SHA-256 (the full value is in the baseline and the store).
fn shown(v: &str) -> String {
    let flat: String = v.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= MAX_SHOWN {
        return flat;
    }
    let head: String = flat.chars().take(60).collect();
    format!("{head}… ({} bytes, sha256:{})", v.len(), &digest(v.as_bytes())[..16])
}

fn one_line(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > 300 { format!("{}…", flat.chars().take(300).collect::<String>()) } else { flat }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::RESERVED_PREFIX;

    #[test]
    fn long_values_are_shown_short_with_a_digest() {
        let long = format!("{{\"Statement\":[{}]}}", "\"x\",".repeat(200));
        let s = shown(&long);
        assert!(s.len() < 140, "{s}");
        assert!(s.contains(&format!("({} bytes, sha256:", long.len())));
        assert_eq!(shown("none"), "none");
        assert_eq!(shown("a\nb"), "a b");
    }

    #[test]
    fn hostile_baselines_are_refused() {
        assert!(Baseline::parse(&vec![b' '; MAX_BASELINE_BYTES + 1]).is_err());
        assert!(Baseline::parse(b"{\"format\":\"x\"}").is_err());
        let mut b =
            new_baseline("r", "s", "2026-12-05T10:00:00Z".parse().unwrap(), "first-check", &Protection::default());
        b.version = 2;
        assert!(Baseline::parse(&b.to_bytes()).unwrap_err().contains("version 2"));
        b.version = 1;
        assert_eq!(Baseline::parse(&b.to_bytes()).unwrap(), b);
        assert!(is_baseline_key("coffer-security/baseline/20261205T100000.000001Z-0123abcd.json"));
        assert!(!is_baseline_key("coffer-security/baseline/../x.json"));
        assert!(!is_baseline_key("coffer-security/canary/x.json"));
        assert!(BASELINE_PREFIX.starts_with(RESERVED_PREFIX));
    }
}
