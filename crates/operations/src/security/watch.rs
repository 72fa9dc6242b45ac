//! The continuous security watch of one repository's store: polls the layers until
//! cancelled (`docs/security.md`, "The audit-log watch").
//!
//! Every `poll-interval` it follows a local vault's audit log ([`super::audit_watch`]; an
//! S3 store has none) and receives the CloudTrail queue ([`super::cloudtrail::poll`]); every
//! `drift-interval` it compares the protective configuration with its baseline
//! ([`super::drift::check`]) and checks the whole audit chain again.
//!
//! Invariant guarded here: **the watch never goes quiet silently.** Its own failures (a
//! vault that cannot be opened or read, a state that cannot be written) do not end it: the
//! first failure after a success is one `unreadable` event (remembered in the state under
//! [`failing_key`], so a restart does not repeat it), it keeps polling, and the recovery is
//! logged. Only cancellation ends the loop.

use super::audit_watch::{self, Target};
use super::{SecurityEvent, SecurityKind, SecuritySink};
use crate::config::Config;
use crate::state::State;
use coffer_repository::Cancel;
use coffer_store::{Clock, Role, StoreHandle, StoreLocation, VaultHandle};
use std::time::{Duration, Instant};

/// What the watch of one repository needs.
#[derive(Clone, Debug)]
pub struct WatchContext<'a> {
    /// The policy in force.
    pub config: &'a Config,
    /// The repository whose store is watched.
    pub repository: &'a str,
    /// The local state (cursors, announcements, failure flags).
    pub state: &'a State,
    /// The clock events are dated by.
    pub clock: &'a Clock,
    /// Where events go; none: they are logged.
    pub sink: Option<&'a SecuritySink>,
}

/// The state key that says the watch of `repository`'s layer `layer` is failing (its
/// value: the first error, one line).
#[must_use]
pub fn failing_key(repository: &str, layer: &str) -> String {
    format!("watch-failing:{repository}:{layer}")
}

/// Hands `event` to the sink, or logs it when there is none (`coffer run`).
pub fn deliver(sink: Option<&SecuritySink>, event: SecurityEvent) {
    match sink {
        Some(s) => s.send(event),
        None => tracing::warn!(id = %event.id, security_kind = event.kind.as_str(), layer = %event.layer,
            principal = event.principal.as_deref().unwrap_or("-"), "security event: {}", event.summary),
    }
}

/// The vault handle the watch reads the audit log with, kept between polls.
enum Vault {
    /// Not opened yet (or dropped after a failure).
    Closed,
    /// A local vault, as the auditor, with its directory as shown in messages.
    Open(Box<VaultHandle>, String),
    /// The store keeps no audit log (S3).
    None,
}

/// Whether repository `name` of `config` is on a local vault (the embedded default too).
fn is_local(config: &Config, name: &str) -> bool {
    let location = config.repository(name).and_then(|r| r.location);
    match location.as_deref().map(StoreLocation::parse) {
        None => true,
        Some(Ok(StoreLocation::Local(_))) => true,
        // An unparseable location is the open's error to report.
        Some(Err(_)) => true,
        Some(Ok(_)) => false,
    }
}

struct Watch<'a> {
    w: &'a WatchContext<'a>,
    vault: Vault,
}

impl Watch<'_> {
    fn emit(&self, event: SecurityEvent) {
        deliver(self.w.sink, event);
    }

    /// The auditor's handle on the vault, opened if needed.
    fn vault(&mut self) -> Result<Option<(VaultHandle, String)>, String> {
        if matches!(self.vault, Vault::Closed) {
            if !is_local(self.w.config, self.w.repository) {
                self.vault = Vault::None;
            } else {
                let (handle, shown) = crate::open::open_store_handle(self.w.config, self.w.repository, Role::Auditor)
                    .map_err(|e| e.to_string())?;
                self.vault = match handle {
                    StoreHandle::Local(h) => Vault::Open(Box::new(h), shown),
                    _ => Vault::None,
                };
            }
        }
        Ok(match &self.vault {
            Vault::Open(h, shown) => Some(((**h).clone(), shown.clone())),
            _ => None,
        })
    }

    /// A failure of layer `layer`: one `unreadable` event on the transition from working.
    fn failed(&mut self, layer: &str, store: Option<&str>, error: &str) {
        self.vault = Vault::Closed;
        let key = failing_key(self.w.repository, layer);
        let known = self.w.state.get(&key).ok().flatten().is_some();
        if known {
            tracing::debug!(repository = self.w.repository, layer, error, "the security watch is still failing");
            return;
        }
        tracing::warn!(repository = self.w.repository, layer, error, "the security watch cannot read the store");
        let mut ev = SecurityEvent::new(
            SecurityKind::Unreadable,
            layer,
            self.w.clock.now(),
            format!(
                "the security watch of repository {} cannot read its {layer}: {} (it keeps trying; nothing is watched until it can)",
                self.w.repository,
                audit_watch::clean(error)
            ),
        );
        ev.repository = Some(self.w.repository.to_owned());
        ev.store = store.map(str::to_owned);
        ev.details.insert("error".into(), audit_watch::clean(error));
        self.emit(ev);
        if let Err(e) = self.w.state.set(&key, &audit_watch::clean(error)) {
            tracing::error!(error = %e, "cannot keep the watch's failure in the state");
        }
    }

    /// Layer `layer` works (again): the recovery is logged once.
    fn worked(&self, layer: &str) {
        let key = failing_key(self.w.repository, layer);
        if let Ok(Some(was)) = self.w.state.get(&key) {
            tracing::info!(repository = self.w.repository, layer, was = %was,
                "the security watch reads the store again");
            if let Err(e) = self.w.state.remove(&key) {
                tracing::error!(error = %e, "cannot clear the watch's failure in the state");
            }
        }
    }

    /// One poll: the audit log (local vaults), then the CloudTrail queue.
    fn poll(&mut self, cancel: &Cancel) {
        match self.vault() {
            Err(e) => self.failed(audit_watch::LAYER, None, &e),
            Ok(None) => {}
            Ok(Some((handle, store))) => {
                let t = target(self.w, &store);
                let now = self.w.clock.now();
                let sink = self.w.sink;
                let mut emit = |ev: SecurityEvent| deliver(sink, ev);
                let result = audit_watch::follow(&handle, &t, self.w.state, now, &mut emit, &|| cancel.is_cancelled())
                    .map_err(|e| e.to_string())
                    .and_then(|n| {
                        audit_watch::clock_check(&t, self.w.state, self.w.clock.now(), &mut emit)
                            .map(|()| n)
                            .map_err(|e| e.to_string())
                    });
                match result {
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!(repository = self.w.repository, entries = n, "audit log read");
                        }
                        self.worked(audit_watch::LAYER);
                    }
                    Err(e) => self.failed(audit_watch::LAYER, Some(&store), &e),
                }
            }
        }
        for ev in super::cloudtrail::poll(self.w.config, self.w.repository, self.w.state, self.w.clock) {
            self.emit(ev);
        }
    }

    /// The slower checks: drift against the baseline, and the whole audit chain.
    fn drift(&mut self) {
        for ev in super::drift::check(self.w.config, self.w.repository, self.w.state, self.w.clock) {
            self.emit(ev);
        }
        match self.vault() {
            Err(e) => self.failed(audit_watch::LAYER, None, &e),
            Ok(None) => {}
            Ok(Some((handle, store))) => {
                let t = target(self.w, &store);
                let sink = self.w.sink;
                let mut emit = |ev: SecurityEvent| deliver(sink, ev);
                match audit_watch::full_check(&handle, &t, self.w.state, self.w.clock.now(), &mut emit) {
                    Ok(()) => self.worked(audit_watch::LAYER),
                    Err(e) => self.failed(audit_watch::LAYER, Some(&store), &e.to_string()),
                }
            }
        }
    }
}

/// The follower's view of the vault `store` of `w.repository`.
fn target<'s>(w: &'s WatchContext<'s>, store: &'s str) -> Target<'s> {
    let r = w.config.repository(w.repository).unwrap_or_default();
    Target { repository: w.repository, store, clock_tolerance: r.security.clock_tolerance }
}

/// Runs the watch of `w.repository` until `cancel` is cancelled.
pub fn run(w: &WatchContext<'_>, cancel: &Cancel) {
    let r = w.config.repository(w.repository).unwrap_or_default();
    let poll_every = r.security.poll_interval.max(Duration::from_millis(100));
    let drift_every = r.security.drift_interval.max(Duration::from_millis(100));
    tracing::info!(
        repository = w.repository,
        poll_ms = u64::try_from(poll_every.as_millis()).unwrap_or(u64::MAX),
        "security watch started"
    );
    let mut watch = Watch { w, vault: Vault::Closed };
    let mut next_poll = Instant::now();
    let mut next_drift = Instant::now();
    while !cancel.is_cancelled() {
        if Instant::now() >= next_poll {
            watch.poll(cancel);
            next_poll = Instant::now() + poll_every;
        }
        if cancel.is_cancelled() {
            break;
        }
        if Instant::now() >= next_drift {
            watch.drift();
            next_drift = Instant::now() + drift_every;
        }
        let wake = next_poll.min(next_drift);
        while !cancel.is_cancelled() && Instant::now() < wake {
            std::thread::sleep(Duration::from_millis(50).min(wake.saturating_duration_since(Instant::now())));
        }
    }
    tracing::info!(repository = w.repository, "security watch stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::{LocalVault, ObjectStore, VaultOptions, Versioning};
    use std::sync::{Arc, Mutex};

    fn wait(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + crate::test_util::WAIT;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn an_unreadable_store_is_one_event_and_the_watch_keeps_polling_until_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let vault_dir = dir.path().join("vault");
        let text = format!(
            "[repositories.main]\nlocation = {:?}\n\n[repositories.main.security]\npoll-interval = \"100ms\"\n",
            vault_dir.display().to_string()
        );
        let config = Config::parse(&text, &dir.path().join("coffer.toml")).unwrap();
        let state = State::open(&dir.path().join("state")).unwrap();
        let events = Arc::new(Mutex::new(Vec::<SecurityEvent>::new()));
        let e2 = events.clone();
        let sink = SecuritySink(Arc::new(move |e| e2.lock().unwrap().push(e)));
        let cancel = Cancel::new();
        let (c2, s2) = (cancel.clone(), sink.clone());
        let thread = std::thread::spawn(move || {
            let clock = Clock::system();
            let w = WatchContext { config: &config, repository: "main", state: &state, clock: &clock, sink: Some(&s2) };
            run(&w, &c2);
        });
        wait("the unreadable event", || !events.lock().unwrap().is_empty());
        // Several more polls fail: still one event.
        std::thread::sleep(Duration::from_millis(500));
        // Each layer that cannot read the store says so once (the audit log, the drift watch).
        let of = |layer: &str| -> Vec<SecurityEvent> {
            events.lock().unwrap().iter().filter(|e| e.layer == layer).cloned().collect()
        };
        {
            let ev = of(audit_watch::LAYER);
            assert_eq!(ev.len(), 1, "{ev:#?}");
            assert_eq!(ev[0].kind, SecurityKind::Unreadable);
            assert_eq!(ev[0].repository.as_deref(), Some("main"));
            assert!(ev[0].summary.contains("cannot read"), "{}", ev[0].summary);
            let drift = of("drift");
            assert_eq!(drift.len(), 1, "{drift:#?}");
            assert_eq!(drift[0].kind, SecurityKind::Unreadable);
        }
        // The store comes (back): the watch reads it and sees what happens there.
        let vault = LocalVault::init(&vault_dir, &VaultOptions::default()).unwrap();
        let admin = vault.login(&vault.read_credentials(coffer_store::Role::Admin).unwrap()).unwrap();
        let _ = admin.put_versioning(Versioning::Suspended);
        wait("the versioning event", || of(audit_watch::LAYER).len() == 2);
        assert_eq!(of(audit_watch::LAYER)[1].kind, SecurityKind::VersioningChange);
        assert!(!thread.is_finished(), "the watch runs until cancelled");
        cancel.cancel();
        thread.join().unwrap();
        let state = State::open(&dir.path().join("state")).unwrap();
        assert_eq!(state.get(&failing_key("main", audit_watch::LAYER)).unwrap(), None, "recovered");
    }
}
