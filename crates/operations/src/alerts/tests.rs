//! Alerts against real servers: an HTTP receiver (coffer-testkit), aiosmtpd, real commands.

use super::*;
use coffer_testkit::http::{Answer, Receiver, Request, refused_url};

use crate::test_util::WAIT;

fn config(toml_text: &str) -> AlertsConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("config: {e}\n{toml_text}"))
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: Arc<State>,
    clock: coffer_store::Clock,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(State::open(dir.path()).unwrap());
    let clock = coffer_store::Clock::manual("2026-01-01T00:00:00Z".parse().unwrap());
    Fixture { _dir: dir, state, clock }
}

impl Fixture {
    fn start(&self, c: &AlertsConfig) -> Alerter {
        Alerter::start(c, "host1".into(), Arc::clone(&self.state), self.clock.clone(), None).unwrap()
    }
}

fn event(kind: AlertKind, severity: Severity, problem: &str, source: Option<&str>) -> AlertEvent {
    AlertEvent {
        version: AlertEvent::VERSION,
        id: random_id(),
        kind,
        severity,
        problem: problem.into(),
        resolved: false,
        time: "2026-01-01T00:00:00Z".parse().unwrap(),
        host: "host1".into(),
        job: source.map(|s| format!("{s}/backup")),
        source: source.map(str::to_owned),
        repository: Some("main".into()),
        summary: format!("{problem} happened"),
        details: BTreeMap::from([("error".into(), "disk full".into())]),
    }
}

fn bodies(reqs: &[Request]) -> Vec<AlertEvent> {
    reqs.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

#[test]
fn routes_send_events_only_to_matching_targets() {
    let (a, b, c, hb) = (
        Receiver::start(Answer::Status(200)),
        Receiver::start(Answer::Status(200)),
        Receiver::start(Answer::Status(204)),
        Receiver::start(Answer::Status(200)),
    );
    let cfg = config(&format!(
        r#"
        [webhook.a]
        url = "{}"
        [webhook.b]
        url = "{}"
        [webhook.c]
        url = "{}"
        [heartbeat.hb]
        url = "{}/job"
        job = "home/backup"
        [[route]]
        kinds = ["job-failed"]
        targets = ["a"]
        [[route]]
        min-severity = "critical"
        targets = ["b"]
        [[route]]
        sources = ["db"]
        targets = ["c", "a"]
        "#,
        a.url(),
        b.url(),
        c.url(),
        hb.url()
    ));
    let f = fixture();
    let al = f.start(&cfg);
    al.raise(event(AlertKind::JobFailed, Severity::Error, "job-failed:home/backup", Some("home")));
    al.raise(event(AlertKind::VerifyProblem, Severity::Critical, "verify-problem:main", Some("main")));
    al.raise(event(AlertKind::ArchiveLagging, Severity::Warning, "archive-lagging:db", Some("db")));
    al.raise(event(AlertKind::JobMissed, Severity::Warning, "job-missed:home/backup", Some("home")));
    assert!(al.wait_idle(WAIT));
    let problems = |r: &Receiver| bodies(&r.requests()).into_iter().map(|e| e.problem).collect::<Vec<_>>();
    assert_eq!(problems(&a), ["job-failed:home/backup", "archive-lagging:db"]);
    assert_eq!(problems(&b), ["verify-problem:main"]);
    assert_eq!(problems(&c), ["archive-lagging:db"]);
    assert!(hb.requests().is_empty(), "heartbeat targets get pings only");

    // No routes: every webhook/email/command target, never a heartbeat target.
    let cfg = config(&format!(
        "[webhook.a]\nurl = \"{}\"\n[heartbeat.hb]\nurl = \"{}/x\"\njob = \"home/backup\"\n",
        a.url(),
        hb.url()
    ));
    assert_eq!(route(&cfg, &event(AlertKind::Test, Severity::Info, "t", None)).unwrap(), ["a"]);
}

#[test]
fn bad_routes_and_targets_are_refused() {
    let refused = |t: &str| match Plan::new(&config(t)) {
        Err(AlertError::Config(m)) => m,
        Ok(_) => panic!("accepted: {t}"),
    };
    assert!(refused("[[route]]\ntargets = [\"nope\"]\n").contains("\"nope\""));
    let m = refused("[heartbeat.h]\nurl = \"http://x/\"\n[[route]]\ntargets = [\"h\"]\n");
    assert!(m.contains("pings only"), "{m}");
    let m = refused("[webhook.x]\nurl = \"http://a\"\n[command.x]\ncommand = [\"true\"]\n");
    assert!(m.contains("unique"), "{m}");
    let m = refused("[webhook.x]\nurl = \"ftp://token@a\"\n");
    assert!(!m.contains("token"), "{m}");
}

#[test]
fn webhook_is_signed_with_hmac_sha256() {
    let r = Receiver::start(Answer::Status(202));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "s3cr3t-key\n").unwrap();
    let cfg = config(&format!(
        "[webhook.w]\nurl = \"{}/hook\"\nsecret = {{ file = \"{}\" }}\n",
        r.url(),
        dir.path().join("key").display()
    ));
    let f = fixture();
    let al = f.start(&cfg);
    let e = event(AlertKind::JobFailed, Severity::Error, "job-failed:home/backup", Some("home"));
    al.raise(e.clone());
    let reqs = r.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hook"));
    assert_eq!(req.headers["content-type"], "application/json");
    assert_eq!(req.headers["x-coffer-event"], "job-failed");
    assert_eq!(req.headers["x-coffer-signature"], deliver::signature(b"s3cr3t-key", &req.body));
    // Known-answer: the header is HMAC-SHA256 itself (RFC 4231 test case 2).
    assert_eq!(
        deliver::signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let got: AlertEvent = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(got, e);
    assert!(!String::from_utf8_lossy(&req.body).contains("s3cr3t"));
}

#[test]
fn a_problem_repeats_only_after_the_interval_and_resolves_once() {
    let r = Receiver::start(Answer::Status(200));
    let cfg = config(&format!("repeat-interval = \"1h\"\n[webhook.w]\nurl = \"{}\"\n", r.url()));
    let f = fixture();
    let al = f.start(&cfg);
    let e = event(AlertKind::JobFailed, Severity::Error, "job-failed:home/backup", Some("home"));
    let count = |al: &Alerter| {
        assert!(al.wait_idle(WAIT));
        r.requests().len()
    };
    al.raise(e.clone());
    assert_eq!(count(&al), 1);
    al.raise(e.clone());
    f.clock.advance(Duration::from_secs(59 * 60));
    al.raise(e.clone());
    al.tick();
    assert_eq!(count(&al), 1, "raised again within the interval: not delivered");
    f.clock.advance(Duration::from_secs(60));
    al.raise(e.clone());
    assert_eq!(count(&al), 2, "the interval passed: repeated");
    let repeat = &bodies(&r.requests())[1];
    assert_eq!(repeat.problem, e.problem);
    assert_ne!(repeat.id, e.id);
    // The timer's tick repeats an open problem the daemon does not raise again.
    al.tick();
    assert_eq!(count(&al), 2);
    f.clock.advance(Duration::from_secs(3600));
    al.tick();
    assert_eq!(count(&al), 3);

    // A restart neither repeats early nor forgets: the problem is still open.
    al.shutdown(Duration::from_secs(5));
    drop(al);
    let al = f.start(&cfg);
    assert_eq!(al.open_problems(), ["job-failed:home/backup"]);
    al.raise(e.clone());
    assert_eq!(count(&al), 3);

    al.resolve("job-failed:home/backup", "home/backup succeeded");
    al.resolve("job-failed:home/backup", "home/backup succeeded");
    al.resolve("never-raised", "nothing");
    assert_eq!(count(&al), 4, "one resolved notice");
    let done = &bodies(&r.requests())[3];
    assert!(done.resolved);
    assert_eq!(done.severity, Severity::Info);
    assert_eq!(done.summary, "home/backup succeeded");
    assert_eq!(done.problem, "job-failed:home/backup");
    assert!(al.open_problems().is_empty());
    assert!(f.state.scan("problem:").unwrap().is_empty());
}

#[test]
fn resolved_notice_follows_the_problems_route() {
    let r = Receiver::start(Answer::Status(200));
    let cfg = config(&format!(
        "[webhook.w]\nurl = \"{}\"\n[[route]]\nmin-severity = \"error\"\ntargets = [\"w\"]\n",
        r.url()
    ));
    let f = fixture();
    let al = f.start(&cfg);
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p", Some("home")));
    al.resolve("p", "over");
    assert!(al.wait_idle(WAIT));
    let got = bodies(&r.requests());
    assert_eq!(got.len(), 2);
    assert!(got[1].resolved && got[1].severity == Severity::Info);
}

#[test]
fn a_down_or_hanging_target_does_not_delay_the_others() {
    let good = Receiver::start(Answer::Status(200));
    let hang = Receiver::start(Answer::Hang);
    let cfg = config(&format!(
        r#"
        retry-backoff = "30s"
        [webhook.refused]
        url = "{}"
        retries = 2
        [webhook.hang]
        url = "{}"
        timeout = "60s"
        retries = 0
        [webhook.good]
        url = "{}"
        "#,
        refused_url(),
        hang.url(),
        good.url()
    ));
    let f = fixture();
    let attempts = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    let seen = Arc::clone(&attempts);
    let hook: DeliveryHook = Arc::new(move |t: &str, ok: bool| seen.lock().unwrap().push((t.to_owned(), ok)));
    let al = Alerter::start(&cfg, "host1".into(), Arc::clone(&f.state), f.clock.clone(), Some(hook)).unwrap();
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p1", Some("home")));
    // raise returned while the hanging target's delivery (60s timeout) and the refused
    // target's retries (30s backoff) are still pending: it did not wait for them.
    assert!(!al.wait_idle(Duration::ZERO));
    // The good target is delivered while the others still hang or wait.
    assert_eq!(good.wait_for(1, WAIT).len(), 1);
    assert_eq!(hang.wait_for(1, WAIT).len(), 1, "the hanging target got the request and never answers");
    let deadline = Instant::now() + WAIT;
    let seen = |t: &str, ok: bool| attempts.lock().unwrap().contains(&(t.to_owned(), ok));
    while !(seen("refused", false) && seen("good", true)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let a = attempts.lock().unwrap().clone();
    assert!(a.contains(&("good".to_owned(), true)), "{a:?}");
    assert!(a.contains(&("refused".to_owned(), false)), "{a:?}");
    assert!(!a.iter().any(|(t, _)| t == "hang"), "the hanging delivery has not ended: {a:?}");
    // A second event still reaches the good target at once.
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p2", Some("home")));
    assert_eq!(good.wait_for(2, WAIT).len(), 2);
    assert!(!al.wait_idle(Duration::ZERO));
    al.shutdown(Duration::ZERO);
}

#[test]
fn a_failing_target_raises_delivery_failing_through_the_others() {
    let good = Receiver::start(Answer::Status(200));
    let bad = Receiver::start(Answer::Status(500));
    let cfg = config(&format!(
        "retry-backoff = \"10ms\"\nfailing-after = 2\n[webhook.good]\nurl = \"{}\"\n[webhook.bad]\nurl = \"{}\"\nretries = 1\n",
        good.url(),
        bad.url()
    ));
    let f = fixture();
    let al = f.start(&cfg);
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p1", Some("home")));
    assert!(al.wait_idle(WAIT));
    assert!(!al.open_problems().contains(&"delivery-failing:bad".to_owned()));
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p2", Some("home")));
    assert!(al.wait_idle(WAIT));
    assert!(al.open_problems().contains(&"delivery-failing:bad".to_owned()));
    let g = bodies(&good.requests());
    let kinds: Vec<_> = g.iter().map(|e| e.problem.as_str()).collect();
    assert_eq!(kinds, ["p1", "p2", "delivery-failing:bad"]);
    assert_eq!(g[2].kind, AlertKind::DeliveryFailing);
    assert_eq!(g[2].details["target"], "bad");
    // The failing target is never told about itself (2 events x 2 attempts).
    assert_eq!(bad.requests().len(), 4);
    assert!(bodies(&bad.requests()).iter().all(|e| e.kind != AlertKind::DeliveryFailing));

    bad.set_answer(Answer::Status(200));
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p3", Some("home")));
    assert!(al.wait_idle(WAIT));
    assert!(al.wait_idle(WAIT));
    let g = bodies(&good.requests());
    assert_eq!(g.len(), 5, "{g:?}");
    assert!(g.iter().any(|e| e.problem == "delivery-failing:bad" && e.resolved));
    assert!(!al.open_problems().contains(&"delivery-failing:bad".to_owned()));
    assert!(bodies(&bad.requests()).iter().all(|e| e.kind != AlertKind::DeliveryFailing));
}

#[test]
fn email_arrives_through_smtp_with_subject_and_no_secret() {
    let sink = coffer_testkit::smtp::SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "smtp-pa55word\n").unwrap();
    let cfg = config(&format!(
        r#"
        [email.ops]
        server = "127.0.0.1"
        port = {}
        tls = "none"
        username = "coffer"
        password = {{ file = "{}" }}
        from = "Coffer <coffer@example.org>"
        to = ["ops@example.org", "oncall@example.org"]
        "#,
        sink.port(),
        dir.path().join("pw").display()
    ));
    let f = fixture();
    let al = f.start(&cfg);
    al.raise(event(AlertKind::JobFailed, Severity::Error, "job-failed:home/backup", Some("home")));
    let mail = sink.wait_for(1, WAIT);
    assert_eq!(mail.len(), 1);
    let m = &mail[0];
    let first = m.lines().next().unwrap();
    assert_eq!(first, "coffer@example.org ops@example.org,oncall@example.org");
    assert!(m.contains("Subject: [coffer] ERROR job-failed: job-failed:home/backup happened"), "{m}");
    for field in
        ["problem:    job-failed:home/backup", "host:       host1", "job:        home/backup", "error: disk full"]
    {
        assert!(m.contains(field), "{field:?} not in {m}");
    }
    assert!(!m.contains("pa55word"));
    assert_eq!(sink.logins(), ["coffer"]);
}

#[test]
fn command_gets_the_event_on_stdin_and_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let cfg = config(&format!(
        "[command.c]\ncommand = [\"/bin/sh\", \"-c\", \"cat > {0}/stdin.json; env | grep ^COFFER_ALERT_ | sort > {0}/env\"]\n",
        out.display()
    ));
    let f = fixture();
    let al = f.start(&cfg);
    let e = event(AlertKind::JobFailed, Severity::Error, "job-failed:home/backup", Some("home"));
    al.raise(e.clone());
    assert!(al.wait_idle(WAIT));
    let got: AlertEvent = serde_json::from_slice(&std::fs::read(out.join("stdin.json")).unwrap()).unwrap();
    assert_eq!(got, e);
    let env = std::fs::read_to_string(out.join("env")).unwrap();
    for line in [
        "COFFER_ALERT_KIND=job-failed",
        "COFFER_ALERT_SEVERITY=error",
        "COFFER_ALERT_PROBLEM=job-failed:home/backup",
        "COFFER_ALERT_RESOLVED=false",
        "COFFER_ALERT_SUMMARY=job-failed:home/backup happened",
        "COFFER_ALERT_JOB=home/backup",
        "COFFER_ALERT_SOURCE=home",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in {env}");
    }
}

#[test]
fn command_is_killed_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("pid");
    let cfg = config(&format!(
        "[command.slow]\ncommand = [\"/bin/sh\", \"-c\", \"sleep 300 & echo $! > {}.child; echo $$ > {}; wait\"]\ntimeout = \"300ms\"\n",
        pid.display(),
        pid.display()
    ));
    let err = deliver_test(&cfg, "slow", "host1", "2026-01-01T00:00:00Z".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("killed after its timeout"), "{err}");
    let pid = std::fs::read_to_string(&pid).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    // Killed and waited for: no such process any more.
    assert!(stat.is_empty(), "the command still runs: {stat}");
    // What it started was killed too (its process group); reaped by init, so only its
    // state is looked at.
    let child = std::fs::read_to_string(dir.path().join("pid.child")).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.trim())).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
        if stat.is_empty() || state == Some('Z') {
            break;
        }
        assert!(Instant::now() < deadline, "the command's child still runs: {stat}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let cfg = config("[command.f]\ncommand = [\"/bin/false\"]\n");
    let err = deliver_test(&cfg, "f", "h", "2026-01-01T00:00:00Z".parse().unwrap()).unwrap_err();
    assert!(err.to_string().contains("exited"), "{err}");
}

#[test]
fn heartbeat_pings_follow_the_healthchecks_convention() {
    let r = Receiver::start(Answer::Status(200));
    let live = Receiver::start(Answer::Status(200));
    let cfg = config(&format!(
        "[heartbeat.job]\nurl = \"{}/hc/abc/\"\njob = \"home/backup\"\n[heartbeat.daemon]\nurl = \"{}/alive\"\ninterval = \"50ms\"\n",
        r.url(),
        live.url()
    ));
    let f = fixture();
    let al = f.start(&cfg);
    al.ping(Some("home/backup"), Ping::Start);
    al.ping(Some("home/backup"), Ping::Success);
    al.ping(Some("home/backup"), Ping::Fail);
    al.ping(Some("db/base-backup"), Ping::Fail);
    let reqs = r.wait_for(3, WAIT);
    let paths: Vec<_> = reqs.iter().map(|q| (q.method.as_str(), q.path.as_str())).collect();
    assert_eq!(paths, [("GET", "/hc/abc/start"), ("GET", "/hc/abc"), ("GET", "/hc/abc/fail")]);
    // The daemon's own pings, every interval, from the alerter's timer.
    let l = live.wait_for(3, WAIT);
    assert!(l.len() >= 3 && l.iter().all(|q| q.path == "/alive"), "{l:?}");
    al.shutdown(Duration::from_secs(5));
    assert!(al.wait_idle(WAIT));
    assert_eq!(r.requests().len(), 3);
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts() {
    let hang = Receiver::start(Answer::Hang);
    let cfg = config(&format!("[webhook.h]\nurl = \"{}\"\ntimeout = \"60s\"\nretries = 0\n", hang.url()));
    let f = fixture();
    let al = f.start(&cfg);
    for i in 0..(QUEUE_CAPACITY + 10) {
        al.raise(event(AlertKind::JobFailed, Severity::Error, &format!("p{i}"), None));
    }
    // The first is being delivered (hanging); the queue holds at most its capacity.
    let _ = hang.wait_for(1, WAIT);
    assert!(al.dropped() >= 9, "dropped {}", al.dropped());
    al.shutdown(Duration::ZERO);
}

#[test]
fn reload_switches_targets_and_a_bad_config_keeps_the_old() {
    let (a, b) = (Receiver::start(Answer::Status(200)), Receiver::start(Answer::Status(200)));
    let f = fixture();
    let al = f.start(&config(&format!("[webhook.a]\nurl = \"{}\"\n", a.url())));
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p1", None));
    assert!(al.wait_idle(WAIT));
    let bad = config("[[route]]\ntargets = [\"missing\"]\n");
    assert!(al.reload(&bad).is_err());
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p2", None));
    assert!(al.wait_idle(WAIT));
    assert_eq!(a.requests().len(), 2, "the old configuration stays");
    al.reload(&config(&format!("[webhook.b]\nurl = \"{}\"\n", b.url()))).unwrap();
    al.raise(event(AlertKind::JobFailed, Severity::Error, "p3", None));
    al.resolve("p1", "over");
    assert!(al.wait_idle(WAIT));
    assert_eq!(a.requests().len(), 2);
    let got = bodies(&b.requests());
    assert_eq!(got.iter().map(|e| (e.problem.as_str(), e.resolved)).collect::<Vec<_>>(), [("p3", false), ("p1", true)]);
}

#[test]
fn the_documented_alerts_section_parses() {
    let text = r#"
[files.db]
paths = ["/srv/db"]
schedule = "daily 02:00"
[alerts]
repeat-interval = "4h"
retry-backoff = "5s"
failing-after = 3
[alerts.webhook.chat]
url = "https://hooks.example.org/T0/B0/xyz"
secret = { file = "/etc/coffer/webhook.key" }
[alerts.email.ops]
server = "smtp.example.org"
tls = "starttls"
username = "coffer"
password = { env = "COFFER_SMTP_PASSWORD" }
from = "Coffer <coffer@example.org>"
to = ["ops@example.org"]
[alerts.command.pager]
command = ["/usr/local/bin/page-oncall", "--team", "storage"]
retries = 1
[alerts.heartbeat.alive]
url = "https://hc-ping.com/UUID2"
interval = "1m"
[[alerts.route]]
kinds = ["job-failed", "verify-problem"]
min-severity = "error"
sources = ["db"]
targets = ["pager", "ops"]
"#;
    let c = crate::Config::parse(text, std::path::Path::new("coffer.toml")).unwrap();
    assert_eq!(c.alerts.retry_backoff, Duration::from_secs(5));
    assert_eq!(c.alerts.failing_after, 3);
    assert_eq!(c.alerts.command["pager"].retries, 1);
    Plan::new(&c.alerts).unwrap();
    let e = event(AlertKind::JobFailed, Severity::Critical, "p", Some("db"));
    assert_eq!(route(&c.alerts, &e).unwrap(), ["pager", "ops"]);
    let err = crate::Config::parse("[alerts]\nfailing-afterr = 3\n", std::path::Path::new("coffer.toml")).unwrap_err();
    assert!(err.to_string().contains("coffer.toml:2"), "{err}");
}
