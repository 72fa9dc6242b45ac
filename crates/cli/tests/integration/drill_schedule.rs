//! Scheduled drills and their evidence, end to end: a real `coffer daemon` running drill
//! jobs on second-level schedules against a real repository, a real webhook receiver for the
//! alerts, the daemon's real `/metrics` listener checked by `promtool`, `coffer status`, and
//! `coffer drill history` reading the reports back from the repository's ledger — with
//! hostile ledger bodies among them.

use crate::daemon_util::Daemon;
use crate::repo_util::{PASSWORD, Repo};
use coffer_operations::drill::{CheckOutcome, DrillKind, DrillReport, Restored};
use coffer_testkit::http::{Answer, Receiver};
use serde_json::{Value, json};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A policy file naming the sandbox's repository `main` (password in a file), the state
/// directory in the sandbox, `daemon` keys, and `body`. No security watch or canary: this
/// module's daemons are about drills (and `status` would exit 8 for their events).
fn policy(repo: &Repo, daemon: &str, body: &str) -> PathBuf {
    let pw = repo.sb.file("password", PASSWORD.as_bytes());
    let text = format!(
        "[daemon]\nstate-dir = {:?}\ntimezone = \"UTC\"\nretries = 0\nshutdown-grace = \"20s\"\n{daemon}\n\
         [repositories.main]\nlocation = {:?}\npassword = {{ file = {:?} }}\n\n\
         [repositories.main.security]\nwatch = false\ncanary = {{ enabled = false }}\n\n{body}",
        repo.sb.path("state").display().to_string(),
        repo.vault().display().to_string(),
        pw.display().to_string(),
    );
    repo.sb.file("coffer.toml", text.as_bytes())
}

/// `coffer --config CONFIG ARGS…`.
fn with_config<'a>(repo: &Repo, config: &Path, args: impl IntoIterator<Item = &'a str>) -> crate::Cmd {
    repo.sb.coffer(["--config"]).arg(config).env("COFFER_PASSWORD", PASSWORD).args(args)
}

/// A drill report as the drill jobs write them.
fn report(job: &str, passed: bool, started: jiff::Timestamp) -> DrillReport {
    let mut r = DrillReport::new(DrillKind::Files, job, "main", "backup-host", started);
    r.restored.push(Restored {
        source: Some("home".into()),
        kind: DrillKind::Files,
        snapshot: Some("0123456789abcdef".into()),
        snapshot_time: Some(started - jiff::SignedDuration::from_hours(1)),
        target: None,
        data_time: None,
        files: 3,
        bytes: 2048,
        rto_seconds: 2.5,
        rto_target_seconds: Some(60.0),
    });
    r.check("content", Some("home"), CheckOutcome::Passed, "3 files, 2048 bytes match");
    r.check(
        "metadata",
        Some("home"),
        if passed { CheckOutcome::Passed } else { CheckOutcome::Failed },
        "a.txt: mode 0644, snapshot says 0600\u{1b}[31m",
    );
    r.rto_seconds = Some(2.5);
    r.rto_target_seconds = Some(60.0);
    r.data_age_seconds = Some(3600.0);
    r.finish(started + jiff::SignedDuration::from_secs(3));
    r
}

/// `coffer drill history` lists the reports of the ledger (oldest first), filters them, and
/// reads hostile bodies as problems (one warning line each), never crashing; text from the
/// repository reaches the terminal without its control characters.
#[test]
fn drill_schedule_history_lists_filters_and_survives_hostile_bodies() {
    let repo = Repo::init();
    let config = policy(&repo, "", "");
    let t0 = coffer_store::Clock::system().now() - jiff::SignedDuration::from_hours(3);
    let h = jiff::SignedDuration::from_hours(1);
    let passing = report("home/drill", true, t0);
    let failing = report("home/drill", false, t0 + h);
    let manual = report("manual", true, t0 + h + h);
    let cfg = coffer_operations::Config::load(&config).unwrap();
    let w = coffer_operations::open::open_repository(
        &cfg,
        "main",
        coffer_store::Role::Writer,
        coffer_store::Clock::system(),
    )
    .unwrap();
    for r in [&passing, &failing] {
        w.append_ledger_as("backup-host", "drill", &serde_json::to_value(r).unwrap()).unwrap();
    }
    // A rogue writer's junk, and a report of a newer format.
    w.append_ledger_as("backup-host", "drill", &json!({ "id": 7, "kind": "files", "checks": "x" })).unwrap();
    let mut newer = serde_json::to_value(&manual).unwrap();
    newer["version"] = json!(2);
    w.append_ledger_as("backup-host", "drill", &newer).unwrap();
    w.append_ledger_as("backup-host", "drill", &serde_json::to_value(&manual).unwrap()).unwrap();

    // From the repository alone (--repo, as the reader).
    let doc = repo.c(["drill", "history", "--json"]).ok().json();
    let ids: Vec<&str> = doc["drills"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [passing.id.as_str(), failing.id.as_str(), manual.id.as_str()], "{doc}");
    let first = &doc["drills"][0];
    assert_eq!(first["passed"], true);
    assert_eq!(first["rto_seconds"], 2.5);
    assert_eq!(first["rto_target_seconds"], 60.0);
    assert_eq!(first["data_age_seconds"], 3600.0);
    assert_eq!(first["checks"].as_array().unwrap().len(), 3, "content, metadata, rto: {first}");
    assert_eq!(first["checks"][0]["name"], "content");
    assert_eq!(first["checks"][0]["outcome"], "passed");
    assert_eq!(first["restored"][0]["snapshot"], "0123456789abcdef");
    assert!(first["record"].as_str().unwrap().len() >= 8, "the ledger record's id: {first}");
    let kinds: Vec<&str> = doc["problems"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["bad-body", "newer-format"], "{doc}");

    // Text: one line per drill and per fact; the hostile escape is gone; problems on stderr.
    let run = repo.c(["drill", "history"]).ok();
    let text = run.stdout_text();
    assert!(!text.contains('\u{1b}'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("home/drill files passed RTO 2.5s (target 1m 0s) data age 1h 0m"), "{text}");
    assert!(lines[1].starts_with("  restored: home files snapshot 01234567"), "{text}");
    assert!(text.contains("FAILED") && text.contains("  failed home: metadata: a.txt: mode 0644"), "{text}");
    assert!(lines.last().unwrap().contains("3 drills, 1 did not pass"), "{text}");
    assert_eq!(run.stderr.lines().filter(|l| l.starts_with("coffer: warning: ledger ")).count(), 2, "{}", run.stderr);

    // Filters, through the policy file's repository.
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["drill", "history", "--json", "--repository", "main"];
        all.extend_from_slice(args);
        let doc = with_config(&repo, &config, all).ok().json();
        doc["drills"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&["--failed"]), [failing.id.as_str()]);
    assert_eq!(ids(&["--job", "manual"]), [manual.id.as_str()]);
    assert_eq!(ids(&["--since", &(t0 + h).to_string()]), [failing.id.as_str(), manual.id.as_str()]);
    assert_eq!(ids(&["--limit", "1"]), [manual.id.as_str()]);
    assert!(ids(&["--job", "nope/drill"]).is_empty());
    // No such repository in the policy file: one line, as `coffer ledger` says it.
    let e = with_config(&repo, &config, ["drill", "history", "--repository", "nope"]).fails(1);
    assert!(e.contains("\"nope\""), "{e}");
}

/// A drill job whose slots passed while the daemon was down (catch-up off) is reported
/// missed (a `job-missed` alert naming the drill job) and `coffer status` calls it overdue
/// (exit 9) — as for every scheduled job.
#[test]
fn drill_schedule_missed_drill_is_alerted_and_overdue() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
    let hook = Receiver::start(Answer::Status(200));
    // catch-up off: every slot that passed while down is missed.
    let config = policy(
        &repo,
        "catch-up = false\n",
        &format!(
            "[files.home]\nrepository = \"main\"\npaths = [{:?}]\nschedule = \"daily 02:00\"\n\n\
             [files.home.drill]\nschedule = \"every 2s\"\nrto-target = \"1h\"\n\n\
             [alerts.webhook.hook]\nurl = \"{}/in\"\n",
            src.display().to_string(),
            hook.url()
        ),
    );
    let d = Daemon::start(&repo, &config, repo.sb.path("daemon.log"), &[], "coffer daemon starting");
    // Let it take the drill's pointer, then go down across several slots.
    d.wait_for(60, "a run of the drill", || d.log().contains("job home/drill started"));
    d.stop();
    std::thread::sleep(Duration::from_secs(7));
    let d = Daemon::start(&repo, &config, repo.sb.path("daemon-2.log"), &[], "coffer daemon starting");
    let alerts = || -> Vec<Value> {
        hook.requests().iter().filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()).collect()
    };
    d.wait_for(60, "a job-missed alert for home/drill", || {
        alerts().iter().any(|a| a["kind"] == "job-missed" && a["job"] == "home/drill")
    });
    d.stop();
    let missed = alerts().into_iter().find(|a| a["kind"] == "job-missed").unwrap();
    assert!(missed["details"]["missed"].as_str().unwrap().parse::<u64>().unwrap() >= 2, "{missed}");
    // Stopped: the slots that pass now are overdue (no success since the first missed one).
    std::thread::sleep(Duration::from_secs(3));
    let st = with_config(&repo, &config, ["status", "--json"]).run();
    assert_eq!(st.code, Some(9), "{}", st.stderr);
    let doc = st.json();
    let job = doc["jobs"].as_array().unwrap().iter().find(|j| j["job"] == "home/drill").unwrap();
    assert_eq!(job["overdue"], true, "{doc}");
    assert!(st.stderr.contains("home/drill (") && st.stderr.contains("overdue"), "{}", st.stderr);
}

/// Prometheus' `promtool`; a missing one fails the test with the command that installs it.
fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("promtool")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!("promtool is missing: install it with `apt-get install prometheus` (or run .ci/test, which does)")
    })
}

/// `GET /metrics` from `addr`: the body.
fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// The value of the sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The daemon runs two files drills on their schedules: one passes (its report in the
/// ledger with its checks, its RTO in `/metrics`, `coffer status` shows it), one over an
/// impossible RTO target fails (a `drill-failed` alert naming the `rto` check; `coffer
/// status` exits 9 showing the drill's RTO).
#[test]
fn drill_schedule_daemon_drills_leave_evidence_alerts_metrics_and_status() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for (n, body) in [("a.txt", "alpha\n"), ("b.txt", "bravo\n")] {
        std::fs::write(src.join(n), body).unwrap();
    }
    let hook = Receiver::start(Answer::Status(200));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let paths = format!("[{:?}]", src.display().to_string());
    let config = policy(
        &repo,
        "",
        &format!(
            "[metrics]\nlisten = \"{metrics}\"\n\n\
             [files.home]\nrepository = \"main\"\npaths = {paths}\nschedule = \"daily 02:00\"\n\n\
             [files.home.drill]\nschedule = \"every 2s\"\nrto-target = \"1h\"\n\n\
             [files.slow]\nrepository = \"main\"\npaths = {paths}\nschedule = \"daily 02:00\"\n\n\
             [files.slow.drill]\nschedule = \"every 2s\"\nrto-target = \"1ns\"\n\n\
             [alerts.webhook.hook]\nurl = \"{}/in\"\n",
            hook.url()
        ),
    );
    // A snapshot of the sources' paths for the drills to restore.
    with_config(&repo, &config, ["run", "home/backup"]).ok();
    let d = Daemon::start(&repo, &config, repo.sb.path("daemon.log"), &[], "coffer daemon starting");
    let alerts = || -> Vec<Value> {
        hook.requests().iter().filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()).collect()
    };
    d.wait_for(120, "a drill-failed alert for slow/drill", || {
        alerts().iter().any(|a| a["kind"] == "drill-failed" && a["job"] == "slow/drill")
    });
    let home = r#"coffer_drill_passed{coffer_job="home/drill",kind="drill",repository="main",source="home"}"#;
    d.wait_for(120, "a passing home/drill in /metrics", || sample(&scrape(metrics), home) == Some(1.0));
    let scraped = scrape(metrics);
    let status = with_config(&repo, &config, ["status"]).run();
    let status_json = with_config(&repo, &config, ["status", "--json"]).run();
    d.stop();

    // The alert names the failed check.
    let alert = alerts().into_iter().find(|a| a["kind"] == "drill-failed").unwrap();
    assert_eq!(alert["severity"], "error", "{alert}");
    assert!(alert["summary"].as_str().unwrap().contains("rto:"), "{alert}");
    assert!(alert["details"]["failed_check_1"].as_str().unwrap().starts_with("rto: recovered in"), "{alert}");
    assert_eq!(alert["details"]["error_class"], "drill", "{alert}");
    assert!(!alerts().iter().any(|a| a["job"] == "home/drill" && a["resolved"] != true), "home/drill passes");

    // Metrics: the passing drill's RTO under its target, the failing one not passed; the
    // exposition is valid.
    let label =
        |job: &str, src: &str| format!(r#"{{coffer_job="{job}",kind="drill",repository="main",source="{src}"}}"#);
    let rto = sample(&scraped, &format!("coffer_drill_rto_seconds{}", label("home/drill", "home"))).expect("an RTO");
    assert!(rto > 0.0 && rto < 3600.0, "{scraped}");
    assert_eq!(
        sample(&scraped, &format!("coffer_drill_rto_target_seconds{}", label("home/drill", "home"))),
        Some(3600.0)
    );
    assert!(
        sample(&scraped, &format!("coffer_drill_last_success_timestamp_seconds{}", label("home/drill", "home")))
            .is_some()
    );
    assert_eq!(
        sample(&scraped, &format!("coffer_drill_passed{}", label("slow/drill", "slow"))),
        Some(0.0),
        "{scraped}"
    );
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(scraped.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool check metrics: {}", String::from_utf8_lossy(&out.stderr));

    // Status: exit 9 for the failing drill; both drills' RTO shown.
    assert_eq!(status.code, Some(9), "{}", status.stderr);
    assert!(status.stderr.contains("slow/drill (failing"), "{}", status.stderr);
    let text = status.stdout_text();
    assert!(text.contains("last drill") && text.contains("passed, RTO"), "{text}");
    assert!(text.contains("DID NOT PASS, RTO") && text.contains("(target 0.0s)"), "{text}");
    let doc = status_json.json();
    let job = |id: &str| doc["jobs"].as_array().unwrap().iter().find(|j| j["job"] == id).unwrap().clone();
    assert_eq!(job("home/drill")["drill"]["passed"], true, "{doc}");
    assert_eq!(job("slow/drill")["drill"]["passed"], false, "{doc}");
    assert_eq!(job("slow/drill")["failing"], true, "{doc}");

    // The ledger: the passing drill's report with its checks, flushed by the daemon.
    let history = with_config(&repo, &config, ["drill", "history", "--json", "--repository", "main"]).ok().json();
    let drills = history["drills"].as_array().unwrap();
    let passed = drills.iter().find(|d| d["job"] == "home/drill" && d["passed"] == true).expect("a passing drill");
    let names: Vec<&str> = passed["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"content") && names.contains(&"rto"), "{passed}");
    assert!(passed["checks"].as_array().unwrap().iter().all(|c| c["outcome"] == "passed"), "{passed}");
    assert_eq!(passed["kind"], "files");
    assert_eq!(passed["repository"], "main");
    let failed = drills.iter().find(|d| d["job"] == "slow/drill").expect("the failed drill's report");
    assert_eq!(failed["passed"], false);
    assert!(
        failed["checks"].as_array().unwrap().iter().any(|c| c["name"] == "rto" && c["outcome"] == "failed"),
        "{failed}"
    );
    // Each report is named by its run's record.
    let ledger =
        with_config(&repo, &config, ["ledger", "--json", "--repository", "main", "--job", "home/drill"]).ok().json();
    let run = ledger["runs"].as_array().unwrap().iter().find(|r| r["outcome"] == "success").expect("a run");
    assert!(drills.iter().any(|d| d["id"] == run["details"]["drill_report"]), "{run}");
    assert!(history["problems"].as_array().unwrap().is_empty(), "{history}");

    // By hand: `coffer run` of the failing drill is a verdict, exit 10 (not proven), its
    // record naming the failed check.
    let run = with_config(&repo, &config, ["--json", "run", "slow/drill"]).run();
    assert_eq!(run.code, Some(10), "{}", run.stderr);
    let rec = run.json();
    assert_eq!(rec["error_class"], "drill", "{rec}");
    assert!(rec["details"]["failed_check_1"].as_str().unwrap().starts_with("rto:"), "{rec}");
}
