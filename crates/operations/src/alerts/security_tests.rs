//! Security alerts against real webhook receivers: routing cannot mute them, they repeat
//! until acknowledged (in the state, by another handle), and a weaker alert configuration
//! is itself a security event delivered through the previous targets.

use super::fingerprint::{self, ConfigCheck};
use super::*;
use crate::security::record;
use crate::security::{SecurityEvent, SecurityKind};
use coffer_testkit::http::{Answer, Receiver};

use crate::test_util::WAIT;

fn config(toml_text: &str) -> AlertsConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("config: {e}\n{toml_text}"))
}

struct Fixture {
    dir: tempfile::TempDir,
    state: Arc<State>,
    clock: coffer_store::Clock,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(State::open(dir.path()).unwrap());
    let clock = coffer_store::Clock::manual("2026-12-05T10:00:00Z".parse().unwrap());
    Fixture { dir, state, clock }
}

impl Fixture {
    fn start(&self, c: &AlertsConfig) -> Alerter {
        Alerter::start(c, "host1".into(), Arc::clone(&self.state), self.clock.clone(), None).unwrap()
    }

    /// A recorded security event (as the daemon's sink records it) and its alert.
    fn event(&self, principal: &str) -> (SecurityEvent, AlertEvent) {
        let mut e = SecurityEvent::new(
            SecurityKind::DestructiveDenied,
            "audit-log",
            self.clock.now(),
            format!("{principal} tried to delete a locked version"),
        );
        e.repository = Some("main".into());
        e.principal = Some(principal.into());
        e.action = Some("delete-version".into());
        e.key = Some("data/ab/cd".into());
        assert!(record::record_in(&self.state, &e, "host1", &["main".into()]).unwrap());
        let a = record::alert(&e, "host1");
        (e, a)
    }
}

fn bodies(r: &Receiver) -> Vec<AlertEvent> {
    r.requests().iter().map(|q| serde_json::from_slice(&q.body).unwrap()).collect()
}

fn two_targets(a: &Receiver, b: &Receiver, extra: &str) -> AlertsConfig {
    config(&format!(
        "security-repeat-interval = \"1h\"\nrepeat-interval = \"4h\"\n[webhook.a]\nurl = \"{}/hook-a\"\n[webhook.b]\nurl = \"{}/hook-b\"\n{extra}",
        a.url(),
        b.url()
    ))
}

/// Every route excludes `b` (and `a` for security kinds): a security alert reaches both, each
/// event on its own (two events: two deliveries each, never merged).
#[test]
fn security_alert_reaches_a_target_excluded_by_every_route() {
    let (a, b) = (Receiver::start(Answer::Status(200)), Receiver::start(Answer::Status(200)));
    let cfg = two_targets(
        &a,
        &b,
        "[[route]]\nkinds = [\"job-failed\"]\ntargets = [\"a\"]\n[[route]]\nsources = [\"nothing\"]\nmin-severity = \"info\"\ntargets = [\"a\"]\n",
    );
    let f = fixture();
    let al = f.start(&cfg);
    let (e1, a1) = f.event("pruner");
    let (e2, a2) = f.event("writer");
    al.raise(a1);
    al.raise(a2);
    assert!(al.wait_idle(WAIT));
    for r in [&a, &b] {
        let got = bodies(r);
        let problems: Vec<&str> = got.iter().map(|e| e.problem.as_str()).collect();
        assert_eq!(problems, [record::problem(&e1.id), record::problem(&e2.id)], "each event on its own, once");
        assert!(got.iter().all(|e| e.severity == Severity::Security && e.kind == AlertKind::Security));
        assert_eq!(got[0].details.get("principal").map(String::as_str), Some("pruner"));
        assert_eq!(got[0].details.get("key").map(String::as_str), Some("data/ab/cd"));
    }
    assert_eq!(route(&cfg, &record::alert(&e1, "h")).unwrap(), ["a", "b"]);
}

/// Repeats every security-repeat-interval (not the ordinary one) until acknowledged; the
/// acknowledgement, made through a second handle on the same state directory (as `coffer
/// alert ack` does), is noticed by the running alerter's own timer: one notice to every
/// target, then silence.
#[test]
fn security_alert_repeats_until_acked_from_another_handle() {
    let (a, b) = (Receiver::start(Answer::Status(200)), Receiver::start(Answer::Status(200)));
    let cfg = two_targets(&a, &b, "[[route]]\nkinds = [\"job-failed\"]\ntargets = [\"a\"]\n");
    let f = fixture();
    let al = f.start(&cfg);
    let (e, alert) = f.event("pruner");
    al.raise(alert);
    assert!(al.wait_idle(WAIT));
    f.clock.advance(Duration::from_secs(30 * 60));
    al.tick();
    assert!(al.wait_idle(WAIT));
    assert_eq!(bodies(&b).len(), 1, "not repeated before the security repeat interval");
    f.clock.advance(Duration::from_secs(31 * 60));
    al.tick();
    assert!(al.wait_idle(WAIT));
    let got = bodies(&b);
    assert_eq!(got.len(), 2, "repeated once after the security repeat interval");
    assert_eq!(got[1].problem, record::problem(&e.id));
    assert!(!got[1].resolved);
    assert!(got[1].details.contains_key("first-raised"));

    // `coffer alert ack`: another process, another handle.
    let other = State::open(f.dir.path()).unwrap();
    let at = f.clock.now();
    match record::ack(&other, &e.id[..8], "alice", at, "host2", None).unwrap() {
        crate::state::AckOutcome::Acked(s) => assert_eq!(s.event.id, e.id),
        o => panic!("{o:?}"),
    }
    // No tick called here: the alerter's timer finds the acknowledgement by itself.
    for r in [&a, &b] {
        let reqs = r.wait_for(3, WAIT);
        assert_eq!(reqs.len(), 3, "the acknowledged notice arrives");
    }
    assert!(al.wait_idle(WAIT));
    for r in [&a, &b] {
        let got = bodies(r);
        let notice = &got[2];
        assert!(notice.resolved);
        assert_eq!(notice.problem, record::problem(&e.id));
        assert_eq!(notice.details.get("acked-by").map(String::as_str), Some("alice"));
    }
    assert!(al.open_problems().is_empty());
    // Silence afterwards, however long.
    f.clock.advance(Duration::from_secs(5 * 3600));
    al.tick();
    assert!(al.wait_idle(WAIT));
    assert_eq!(bodies(&a).len(), 3);
    assert_eq!(bodies(&b).len(), 3);
    // Acknowledged: recorded (who, when), not listed as open.
    let s = f.state.security_event(&e.id).unwrap().unwrap();
    assert_eq!((s.acked_by.as_deref(), s.acked_at), (Some("alice"), Some(at)));
    assert_eq!(f.state.security_unacknowledged().unwrap(), 0);
    assert!(matches!(
        record::ack(&other, &e.id, "bob", at, "h", None).unwrap(),
        crate::state::AckOutcome::AlreadyAcked(_)
    ));
    assert_eq!(
        record::ack(&other, "ffffffffffffffffff", "bob", at, "h", None).unwrap(),
        crate::state::AckOutcome::Unknown
    );
}

/// Runs the daemon's comparison: check, raise through old and new targets, keep.
fn config_change(
    f: &Fixture,
    al: &Alerter,
    cfg: &AlertsConfig,
    previous: Option<&AlertsConfig>,
) -> Option<SecurityEvent> {
    al.reload(cfg).unwrap();
    let c: ConfigCheck = fingerprint::check(&f.state, cfg, previous, f.clock.now()).unwrap();
    if let Some(e) = &c.event {
        record::record_in(&f.state, e, "host1", &["main".into()]).unwrap();
        match &c.previous {
            Some(old) => al.raise_also_via(record::alert(e, "host1"), old),
            None => al.raise(record::alert(e, "host1")),
        }
    }
    fingerprint::keep(&f.state, &c).unwrap();
    assert!(al.wait_idle(WAIT));
    c.event
}

#[test]
fn security_alert_config_changes_are_events_delivered_through_the_old_targets() {
    let (a, b) = (Receiver::start(Answer::Status(200)), Receiver::start(Answer::Status(200)));
    let both = two_targets(&a, &b, "");
    let f = fixture();
    let al = f.start(&both);
    // First start: the fingerprint is kept, nothing raised.
    assert!(config_change(&f, &al, &both, None).is_none());
    // A restart with the same configuration: nothing.
    assert!(config_change(&f, &al, &both, None).is_none());
    // Target b removed (at a restart: the previous table comes from the state).
    let only_a = config(&format!(
        "security-repeat-interval = \"1h\"\nrepeat-interval = \"4h\"\n[webhook.a]\nurl = \"{}/hook-a\"\n",
        a.url()
    ));
    let e = config_change(&f, &al, &only_a, None).expect("a removed target is a security event");
    assert_eq!(e.kind, SecurityKind::AlertConfigChange);
    assert!(e.summary.contains("target b removed"), "{}", e.summary);
    assert!(!e.summary.contains("hook-b"), "no URL path in the event: {}", e.summary);
    for r in [&a, &b] {
        let got = bodies(r);
        assert_eq!(got.len(), 1, "exactly once, through the removed target too");
        assert_eq!(got[0].details.get("security-kind").map(String::as_str), Some("alert-config-change"));
    }
    // Target b added back: no event (logged only).
    assert!(config_change(&f, &al, &both, Some(&only_a)).is_none());
    // A route changed (on reload: the previous table is the one in memory).
    let routed = two_targets(&a, &b, "[[route]]\nkinds = [\"job-failed\"]\ntargets = [\"a\"]\n");
    let e = config_change(&f, &al, &routed, Some(&both)).expect("a changed route is a security event");
    assert!(e.summary.contains("routes changed"), "{}", e.summary);
    // security-repeat-interval lengthened.
    let slower = config(&format!(
        "security-repeat-interval = \"1d\"\nrepeat-interval = \"4h\"\n[webhook.a]\nurl = \"{}/hook-a\"\n[webhook.b]\nurl = \"{}/hook-b\"\n[[route]]\nkinds = [\"job-failed\"]\ntargets = [\"a\"]\n",
        a.url(),
        b.url()
    ));
    let e = config_change(&f, &al, &slower, Some(&routed)).expect("a longer repeat interval is a security event");
    assert!(e.summary.contains("security-repeat-interval lengthened: 3600s -> 86400s"), "{}", e.summary);
    // Restart with the same (slower) configuration: nothing.
    assert!(config_change(&f, &al, &slower, None).is_none());
    assert_eq!(bodies(&a).len(), 3);
    assert_eq!(bodies(&b).len(), 3);
    assert_eq!(f.state.security_unacknowledged().unwrap(), 3);
}

#[test]
fn security_alert_fingerprint_hides_urls_and_commands() {
    let cfg = config(
        "[webhook.chat]\nurl = \"https://user:pw@hooks.example.com/services/T0/B0/SECRETTOKEN?x=1\"\n[command.page]\ncommand = [\"/bin/page\", \"--token\", \"TOPSECRET\"]\n",
    );
    let json = serde_json::to_string(&fingerprint::Fingerprint::of(&cfg)).unwrap();
    assert!(json.contains("https://hooks.example.com"), "{json}");
    for secret in ["SECRETTOKEN", "TOPSECRET", "pw@", "services"] {
        assert!(!json.contains(secret), "{secret} in {json}");
    }
}
