//! `coffer daemon` end to end: the real binary on real repositories (made with `coffer
//! init`), second-level schedules, real signals, a command alert target that files every
//! event it receives, a real TCP listener that never answers as a broken webhook.
//!
//! Every daemon started here is held by a [`Daemon`] guard that SIGKILLs it on drop, so a
//! failing assertion never leaves one running.

use crate::daemon_util::Daemon;
use crate::repo_util::{PASSWORD, Repo};
use serde_json::Value;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `coffer daemon` on the world's policy, its log in a new `daemon-N.log`.
fn start(t: &T) -> Daemon {
    let n = std::fs::read_dir(t.dir()).map(|d| d.count()).unwrap_or(0);
    Daemon::start(&t.repo, &t.config(), t.dir().join(format!("daemon-{n}.log")), &[], "coffer daemon starting")
}

/// A test's world: a repository, a source tree, a policy file, a state directory and an
/// alert inbox.
struct T {
    repo: Repo,
}

impl T {
    fn new() -> Self {
        let t = Self { repo: Repo::init() };
        std::fs::create_dir_all(t.dir()).unwrap();
        std::fs::create_dir_all(t.inbox()).unwrap();
        std::fs::create_dir_all(t.src()).unwrap();
        std::fs::write(t.src().join("a.txt"), b"hello daemon\n").unwrap();
        t
    }

    fn dir(&self) -> PathBuf {
        self.repo.sb.path("daemon")
    }

    fn src(&self) -> PathBuf {
        self.repo.sb.path("src")
    }

    fn state(&self) -> PathBuf {
        self.repo.sb.path("state")
    }

    fn inbox(&self) -> PathBuf {
        self.repo.sb.path("inbox")
    }

    fn config(&self) -> PathBuf {
        self.repo.sb.path("coffer.toml")
    }

    /// Writes the policy file: `[daemon]`, repository `main`, the alert inbox, and `body`.
    fn write_config(&self, body: &str) {
        let text = format!(
            r#"[daemon]
state-dir = "{state}"
retry-backoff = "1s"
retries = 0
shutdown-grace = "20s"

[repositories.main]
location = "{vault}"
password = {{ env = "COFFER_PASSWORD" }}

[alerts.command.inbox]
command = ["/bin/sh", "-c", "cat > \"$0/$(date +%s%N)-$$.json\"", "{inbox}"]

{body}
"#,
            state = self.state().display(),
            vault = self.repo.vault().display(),
            inbox = self.inbox().display(),
        );
        std::fs::write(self.config(), text).unwrap();
    }

    /// The files source `home` on `paths`, every 2 s.
    fn home_source(&self, paths: &[&Path]) -> String {
        let paths: Vec<String> = paths.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
        format!("[files.home]\nrepository = \"main\"\npaths = [{}]\nschedule = \"every 2s\"\n", paths.join(", "))
    }

    /// Every run recorded in the daemon's state, oldest first.
    fn runs(&self) -> Vec<Value> {
        let db = self.state().join("state.db");
        if !db.exists() {
            return vec![];
        }
        let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let mut stmt = match conn.prepare("SELECT record FROM runs ORDER BY id") {
            Ok(s) => s,
            Err(_) => return vec![],
        };
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
            .collect()
    }

    fn runs_of(&self, outcome: &str) -> Vec<Value> {
        self.runs().into_iter().filter(|r| r["outcome"] == outcome).collect()
    }

    /// Every alert the inbox received, in order of delivery.
    fn alerts(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(self.inbox()).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
        files.sort();
        files
            .iter()
            .filter_map(|f| {
                let text = std::fs::read_to_string(f).ok()?;
                serde_json::from_str(&text).ok()
            })
            .collect()
    }

    fn snapshots(&self) -> Vec<Value> {
        self.repo.snapshots_at(0)
    }
}

/// Polls `cond` until it holds, or fails with `what` after `secs`, or [`coffer_testkit::WAIT`]
/// if longer: a loaded machine stretches every step, and the deadline only catches a daemon
/// that never gets there.
#[track_caller]
fn wait_for(secs: u64, what: &str, d: Option<&Daemon>, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs).max(coffer_testkit::WAIT);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}; daemon log:\n{}",
            d.map(Daemon::log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No secret in anything the daemon wrote or sent.
#[track_caller]
fn assert_no_secret(t: &T, logs: &[&str], secrets: &[&str]) {
    let mut places: Vec<(String, Vec<u8>)> =
        logs.iter().enumerate().map(|(i, l)| (format!("daemon log {i}"), l.as_bytes().to_vec())).collect();
    for f in ["state.db", "state.db-wal"] {
        if let Ok(b) = std::fs::read(t.state().join(f)) {
            places.push((f.into(), b));
        }
    }
    for e in std::fs::read_dir(t.inbox()).unwrap() {
        let p = e.unwrap().path();
        places.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    for (what, bytes) in &places {
        for s in secrets {
            assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "the secret {s:?} appears in {what}");
        }
    }
}

#[test]
fn ops_daemon_runs_jobs_on_schedule_and_records_them() {
    let t = T::new();
    let src = t.src();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    t.write_config(&format!("[metrics]\nlisten = \"{metrics}\"\n\n{}", t.home_source(&[&src])));
    let d = start(&t);
    wait_for(90, "two successful runs", Some(&d), || t.runs_of("success").len() >= 2);
    // The metrics endpoint counts them.
    let text = scrape(metrics);
    assert!(text.contains("coffer_job_runs_total") && text.contains("home/backup"), "{text}");
    assert!(text.contains("coffer_job_last_success_timestamp_seconds"), "{text}");
    // `coffer status` shows the job's last success.
    let st = t
        .repo
        .sb
        .coffer(["--config"])
        .arg(t.config())
        .env("COFFER_PASSWORD", PASSWORD)
        .args(["status", "--json"])
        .run();
    let doc = st.json();
    let job =
        doc["jobs"].as_array().unwrap().iter().find(|j| j["job"] == "home/backup").unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(job["last_success"]["outcome"], "success", "{doc}");
    assert!(job["next_run"].is_string(), "{doc}");
    let log = d.stop();
    // Every recorded run reached the repository's ledger (the shutdown flushes what is left).
    let ledger = t.repo.c(["ledger", "--json"]).ok().json();
    let in_ledger = ledger["runs"].as_array().unwrap().iter().filter(|r| r["job"] == "home/backup").count();
    // (The repository's security watch, stopped by the shutdown, has its own record.)
    let backups = t.runs().iter().filter(|r| r["job"] == "home/backup").count();
    assert_eq!(in_ledger, backups, "{ledger}");
    let ok = t.runs_of("success");
    for r in &ok {
        assert_eq!(r["job"], "home/backup");
        assert_eq!(r["repository"], "main");
        assert!(r["snapshot"].is_string(), "{r}");
        assert!(r["scheduled"].is_string(), "a scheduled run names its slot: {r}");
        assert_eq!(r["late"], false);
    }
    // Every recorded snapshot is in the repository.
    let snaps: Vec<String> = t.snapshots().iter().map(|s| s["id"].as_str().unwrap_or_default().to_owned()).collect();
    for r in &ok {
        let id = r["snapshot"].as_str().unwrap();
        assert!(snaps.iter().any(|s| s.starts_with(id) || id.starts_with(s.as_str())), "{id} not in {snaps:?}");
    }
    assert!(log.contains("home/backup"), "{log}");
    assert_no_secret(&t, &[&log], &[PASSWORD]);
}

#[test]
fn ops_daemon_second_daemon_on_the_same_configuration_is_refused() {
    let t = T::new();
    let src = t.src();
    t.write_config(&t.home_source(&[&src]));
    let d = start(&t);
    let lock = t.state().join("daemon.lock");
    wait_for(60, "the lock file", Some(&d), || std::fs::read_to_string(&lock).is_ok_and(|s| !s.trim().is_empty()));
    let line = t.repo.sb.coffer(["--config"]).arg(t.config()).env("COFFER_PASSWORD", PASSWORD).arg("daemon").fails(1);
    let pid = d.pid().as_raw_nonzero().to_string();
    assert!(line.contains(&pid), "{line}");
    assert!(line.contains(&lock.display().to_string()), "{line}");
    d.stop();
}

#[test]
fn ops_daemon_failing_source_alerts_once_then_resolves() {
    let t = T::new();
    let missing = t.repo.sb.path("not-yet");
    // A real webhook receiver (signed with a secret) and a heartbeat check for the job.
    let hook = coffer_testkit::http::Receiver::start(coffer_testkit::http::Answer::Status(200));
    let pings = coffer_testkit::http::Receiver::start(coffer_testkit::http::Answer::Status(200));
    let secret_file = t.repo.sb.file("hook-secret", b"webhook-secret-5a4b3c2d1e\n");
    // And a real SMTP server (aiosmtpd) with a login: the email the on-call person reads.
    let smtp = coffer_testkit::smtp::SmtpSink::start();
    let smtp_pw = t.repo.sb.file("smtp-pw", b"smtp-pa55word-9f8e\n");
    t.write_config(&format!(
        "{}\n[alerts.webhook.hook]\nurl = \"{}\"\nsecret = {{ file = {:?} }}\n\n\
         [alerts.heartbeat.check]\nurl = \"{}\"\njob = \"home/backup\"\n\n\
         [alerts.email.oncall]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"coffer\"\n\
         password = {{ file = {:?} }}\nfrom = \"coffer@example.org\"\nto = [\"oncall@example.org\"]\n",
        t.home_source(&[&missing]),
        hook.url(),
        secret_file.display().to_string(),
        pings.url(),
        smtp.port(),
        smtp_pw.display().to_string(),
    ));
    let d = start(&t);
    wait_for(90, "three failed runs", Some(&d), || t.runs_of("failed").len() >= 3);
    let failed_alerts =
        |t: &T| t.alerts().into_iter().filter(|a| a["kind"] == "job-failed" && a["resolved"] == false).count();
    wait_for(30, "a job-failed alert", Some(&d), || failed_alerts(&t) >= 1);
    assert_eq!(failed_alerts(&t), 1, "one alert for an ongoing problem: {:?}", t.alerts());
    let a = t.alerts().into_iter().find(|a| a["kind"] == "job-failed").unwrap();
    assert_eq!(a["problem"], "job-failed:home/backup");
    assert_eq!(a["job"], "home/backup");
    assert_eq!(a["severity"], "error");
    // The path appears: the next run succeeds and a resolved notice follows.
    std::fs::create_dir_all(&missing).unwrap();
    std::fs::write(missing.join("f"), b"now here").unwrap();
    wait_for(90, "a resolved notice", Some(&d), || {
        t.alerts().iter().any(|a| a["problem"] == "job-failed:home/backup" && a["resolved"] == true)
    });
    assert_eq!(failed_alerts(&t), 1, "{:?}", t.alerts());
    let log = d.stop();
    assert!(!t.runs_of("success").is_empty());
    // The webhook got the same two notices, signed; the heartbeat saw start, fail and success.
    let posts = hook.requests();
    let bodies: Vec<Value> = posts.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    let of_job: Vec<&Value> = bodies.iter().filter(|b| b["problem"] == "job-failed:home/backup").collect();
    assert_eq!(of_job.len(), 2, "raised once, resolved once: {bodies:#?}");
    assert_eq!((of_job[0]["resolved"].as_bool(), of_job[1]["resolved"].as_bool()), (Some(false), Some(true)));
    assert!(posts.iter().all(|r| r.headers.contains_key("x-coffer-signature")), "{posts:?}");
    let paths: Vec<String> = pings.requests().iter().map(|r| r.path.clone()).collect();
    for p in ["/start", "/fail"] {
        assert!(paths.iter().any(|x| x.ends_with(p)), "{p} in {paths:?}");
    }
    assert!(paths.iter().any(|x| !x.ends_with("/start") && !x.ends_with("/fail")), "a success ping: {paths:?}");
    let mut received: Vec<String> = vec![log.clone()];
    for r in posts.iter().chain(pings.requests().iter()) {
        received.push(format!("{} {:?} {}", r.path, r.headers, String::from_utf8_lossy(&r.body)));
    }
    // The email: one when the problem appeared, one when it cleared.
    let mail = smtp.wait_for(2, coffer_testkit::WAIT);
    let of_job: Vec<&String> = mail.iter().filter(|m| m.contains("job-failed:home/backup")).collect();
    assert_eq!(of_job.len(), 2, "raised once, resolved once: {mail:#?}");
    assert!(of_job[0].contains("Subject: [coffer] ERROR job-failed"), "{}", of_job[0]);
    assert!(of_job[1].contains("RESOLVED"), "{}", of_job[1]);
    assert_eq!(smtp.logins().first().map(String::as_str), Some("coffer"));
    received.extend(mail);
    let received: Vec<&str> = received.iter().map(String::as_str).collect();
    assert_no_secret(&t, &received, &[PASSWORD, "webhook-secret-5a4b3c2d1e", "smtp-pa55word-9f8e"]);
}

#[test]
fn ops_daemon_stopped_across_slots_reports_them_missed_and_catches_up_once() {
    let t = T::new();
    let src = t.src();
    t.write_config(&t.home_source(&[&src]));
    let d = start(&t);
    wait_for(90, "a successful run", Some(&d), || !t.runs_of("success").is_empty());
    d.stop();
    let before = t.runs().len();
    // Down across at least two slots of `every 2s`.
    std::thread::sleep(Duration::from_secs(7));
    let d = start(&t);
    wait_for(90, "the late run", Some(&d), || t.runs().iter().skip(before).any(|r| r["late"] == true));
    let log = d.stop();
    let after: Vec<Value> = t.runs().into_iter().skip(before).collect();
    let late: Vec<&Value> = after.iter().filter(|r| r["late"] == true).collect();
    assert_eq!(late.len(), 1, "caught up once: {after:#?}");
    assert_eq!(late[0]["outcome"], "success", "{:#?}", late[0]);
    let missed: Vec<&Value> = after
        .iter()
        .filter(|r| r["outcome"] == "missed" && r["error"].as_str().unwrap_or("").contains("not running"))
        .collect();
    assert!(missed.len() >= 2, "at least two slots missed while down: {after:#?}");
    // The missed slots are before the late one, and each is a distinct slot.
    let late_slot = late[0]["scheduled"].as_str().unwrap().to_owned();
    let mut slots: Vec<&str> = missed.iter().map(|r| r["scheduled"].as_str().unwrap()).collect();
    assert!(slots.iter().all(|s| s.parse::<jiff::Timestamp>().unwrap() < late_slot.parse().unwrap()));
    slots.dedup();
    assert_eq!(slots.len(), missed.len());
    wait_for(30, "a job-missed alert", None, || {
        t.alerts().iter().any(|a| a["kind"] == "job-missed" && a["job"] == "home/backup")
    });
    assert!(log.contains("missed"), "{log}");
}

#[test]
fn ops_daemon_sigterm_mid_backup_then_restart_loses_nothing() {
    let t = T::new();
    let big = t.repo.sb.path("big");
    std::fs::create_dir_all(&big).unwrap();
    // Enough data that the backup runs for a while.
    for i in 0..32 {
        std::fs::write(big.join(format!("f{i:02}")), crate::noise(8 << 20, i)).unwrap();
    }
    t.write_config(&format!(
        "[files.home]\nrepository = \"main\"\npaths = [{:?}]\nschedule = \"every 2s\"\n",
        big.display().to_string()
    ));
    let d = start(&t);
    let deadline = Instant::now() + coffer_testkit::WAIT;
    while !d.log().contains("job home/backup started") {
        assert!(Instant::now() < deadline, "the backup did not start: {}", d.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    let log = d.stop();
    let cancelled: Vec<Value> = t.runs_of("cancelled").into_iter().filter(|r| r["job"] == "home/backup").collect();
    let done_before = t.runs_of("success").len();
    if done_before == 0 {
        assert_eq!(cancelled.len(), 1, "the interrupted run is recorded as cancelled: {:#?}", t.runs());
        assert!(t.snapshots().is_empty(), "no partial snapshot");
        assert!(log.contains("cancel"), "{log}");
    } else {
        eprintln!("note: the backup finished before SIGTERM reached it; log:\n{log}");
    }
    // Restart: the interrupted slot runs again and succeeds.
    let d = start(&t);
    wait_for(240, "a successful run after the restart", Some(&d), || t.runs_of("success").len() > done_before);
    if done_before == 0 {
        // The slot the shutdown interrupted is the one that ran again (late).
        let again = &t.runs_of("success")[0];
        assert_eq!(again["scheduled"], cancelled[0]["scheduled"], "{again}");
        assert_eq!(again["late"], true);
    }
    d.stop();
    let snaps = t.snapshots();
    assert!(!snaps.is_empty());
    // Clean, every byte read: nothing half-written was acknowledged.
    t.repo.verify_at(0, true);
}

#[test]
fn ops_daemon_broken_config_on_sighup_keeps_the_old_jobs_and_alerts() {
    let t = T::new();
    let src = t.src();
    t.write_config(&t.home_source(&[&src]));
    let d = start(&t);
    wait_for(90, "a successful run", Some(&d), || !t.runs_of("success").is_empty());
    let good = std::fs::read_to_string(t.config()).unwrap();
    std::fs::write(t.config(), format!("{good}\n[files.broken]\nschedule = 17\n")).unwrap();
    d.signal(rustix::process::Signal::HUP);
    wait_for(30, "a config-rejected alert", Some(&d), || {
        t.alerts().iter().any(|a| a["kind"] == "config-rejected" && a["resolved"] == false)
    });
    let a = t.alerts().into_iter().find(|a| a["kind"] == "config-rejected").unwrap();
    assert_eq!(a["problem"], "config-rejected");
    assert!(a["summary"].as_str().unwrap().contains("coffer.toml"), "{a}");
    // The old jobs keep running.
    let n = t.runs_of("success").len();
    wait_for(60, "runs after the refused reload", Some(&d), || t.runs_of("success").len() >= n + 2);
    assert!(d.log().contains("refused"), "{}", d.log());
    // A good file again: accepted, and the problem resolved.
    std::fs::write(t.config(), &good).unwrap();
    d.signal(rustix::process::Signal::HUP);
    wait_for(30, "config-rejected resolved", Some(&d), || {
        t.alerts().iter().any(|a| a["kind"] == "config-rejected" && a["resolved"] == true)
    });
    d.stop();
}

#[test]
fn ops_daemon_a_delivery_target_that_never_answers_does_not_delay_backups() {
    let t = T::new();
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let secret_file = t.repo.sb.file("hook-secret", b"webhook-secret-9f8e7d6c\n");
    let src = t.src();
    let missing = t.repo.sb.path("missing");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    t.write_config(&format!(
        "[metrics]\nlisten = \"{metrics}\"\n\n{}\n[files.broken]\nrepository = \"main\"\npaths = [{:?}]\nschedule = \"every 2s\"\n\n\
         [alerts.webhook.blackhole]\nurl = \"http://{addr}/hook\"\nsecret = {{ file = {:?} }}\ntimeout = \"900s\"\n",
        t.home_source(&[&src]),
        missing.display().to_string(),
        secret_file.display().to_string(),
    ));
    let d = start(&t);
    wait_for(60, "the first failure", Some(&d), || !t.runs_of("failed").is_empty());
    let first = Instant::now();
    let n = t.runs_of("success").len();
    // Three backups while the delivery hangs: well under its 900 s timeout even on a loaded
    // machine, so backups that waited for it could not get there.
    wait_for(60, "backups going on while the webhook hangs", Some(&d), || t.runs_of("success").len() >= n + 3);
    assert!(first.elapsed() < Duration::from_secs(600), "backups were held up: {:?}", first.elapsed());
    let scraped = scrape(metrics);
    let log = d.stop();
    assert_no_secret(&t, &[&log, &scraped], &[PASSWORD, "webhook-secret-9f8e7d6c"]);
}

/// `GET /metrics` from `addr`.
fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn ops_daemon_once_runs_what_is_due_and_exits() {
    let t = T::new();
    let src = t.src();
    t.write_config(&t.home_source(&[&src]));
    let once = || {
        t.repo.sb.coffer(["--config"]).arg(t.config()).env("COFFER_PASSWORD", PASSWORD).args(["daemon", "--once"]).ok()
    };
    // A job never seen before has nothing due.
    once();
    assert!(t.runs().is_empty(), "{:#?}", t.runs());
    std::thread::sleep(Duration::from_millis(4500));
    once();
    let runs = t.runs();
    let ok: Vec<&Value> = runs.iter().filter(|r| r["outcome"] == "success").collect();
    assert_eq!(ok.len(), 1, "the latest slot, once: {runs:#?}");
    assert_eq!(ok[0]["late"], true);
    assert!(runs.iter().any(|r| r["outcome"] == "missed"), "the slot before it is missed: {runs:#?}");
    assert_eq!(t.snapshots().len(), 1);
}

#[test]
fn ops_daemon_postgres_down_alerts_archiving_and_streaming() {
    let t = T::new();
    // Nothing listens on port 1: the server is down for the archive check and the stream.
    let body = "[postgres.db]\nrepository = \"main\"\nconnection = \"host=127.0.0.1 port=1 user=coffer dbname=postgres connect_timeout=2\"\n\
                archiving = \"both\"\ncheck-interval = \"2s\"\n\n[postgres.db.base-backup]\nschedule = \"daily 03:00\"\n";
    t.write_config(body);
    let text =
        std::fs::read_to_string(t.config()).unwrap().replace("[daemon]\n", "[daemon]\nstream-down-alert = \"3s\"\n");
    std::fs::write(t.config(), text).unwrap();
    let d = start(&t);
    wait_for(60, "an archive-lagging alert for the check", Some(&d), || {
        t.alerts().iter().any(|a| a["kind"] == "archive-lagging" && a["problem"] == "archive:db")
    });
    wait_for(60, "an archive-lagging alert for the stream", Some(&d), || {
        t.alerts().iter().any(|a| a["kind"] == "archive-lagging" && a["problem"] == "stream:db")
    });
    let log = d.stop();
    let check = t.alerts().into_iter().find(|a| a["problem"] == "archive:db").unwrap();
    assert_eq!(check["severity"], "error", "{check}");
    assert_eq!(check["source"], "db");
    // The stream was restarted with backoff, each end recorded, never in a tight loop.
    let ends: Vec<Value> = t.runs().into_iter().filter(|r| r["job"] == "db/stream").collect();
    assert!(ends.len() >= 2, "{ends:#?}\n{log}");
    assert!(ends.len() < 15, "restarted in a loop: {} runs", ends.len());
    // No job-failed alert per restart of the stream.
    assert!(!t.alerts().iter().any(|a| a["problem"] == "job-failed:db/stream"), "{:?}", t.alerts());
}
