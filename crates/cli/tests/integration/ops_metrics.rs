//! Monitoring: the daemon's metrics exposition checked by Prometheus' own `promtool` (built
//! from a real `Metrics`, and scraped over HTTP from the real listener), the alerting rules
//! shipped in `packaging/prometheus/` run through `promtool test rules`, and the `coffer`
//! binary's JSON log lines.

use crate::Sandbox;
use coffer_operations::event::{JobKind, Outcome, RunRecord};
use coffer_operations::metrics::{CONTENT_TYPE, Metrics, serve};
use coffer_operations::{JobSpec, Schedule};
use jiff::Timestamp;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Prometheus' `promtool`; a missing one fails the test with the command that installs it.
fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("promtool is missing: install it with `apt-get install prometheus` (or run .ci/test, which does)")
    })
}

/// `promtool ARGS…` with `stdin`; its exit code and output.
fn run_promtool(args: &[&str], dir: &Path, stdin: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// `promtool check metrics` on `exposition`: valid and no lint problem.
fn check_metrics(exposition: &str) {
    let (code, out) = run_promtool(&["check", "metrics"], Path::new("."), exposition.as_bytes());
    assert_eq!(code, Some(0), "promtool check metrics:\n{out}\non:\n{exposition}");
    assert!(out.trim().is_empty(), "promtool check metrics found problems:\n{out}\non:\n{exposition}");
}

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/prometheus")
}

fn spec(owner: &str, kind: JobKind, source: bool, schedule: Option<&str>) -> JobSpec {
    JobSpec {
        id: coffer_operations::event::job_id(owner, kind),
        kind,
        source: source.then(|| owner.to_owned()),
        repository: "main".into(),
        schedule: schedule.map(|s| Schedule::parse(s).unwrap()),
        random_delay: None,
        timeout: Duration::from_secs(3600),
        retries: 2,
    }
}

fn record(spec: &JobSpec, outcome: Outcome, finished: i64) -> RunRecord {
    RunRecord {
        version: RunRecord::VERSION,
        run_id: coffer_operations::event::random_id(),
        job: spec.id.clone(),
        kind: spec.kind,
        source: spec.source.clone(),
        repository: spec.repository.clone(),
        host: "backup-host".into(),
        scheduled: None,
        late: false,
        started: Timestamp::from_second(finished - 42).unwrap(),
        finished: Timestamp::from_second(finished).unwrap(),
        outcome,
        attempts: 1,
        error_class: (!outcome.is_success()).then(|| "transient".into()),
        error: (!outcome.is_success()).then(|| "connection reset \"quoted\"\nsecond line".into()),
        files: Some(10),
        bytes_read: Some(1000),
        bytes_added: Some(123_456),
        snapshot: Some("0123abcd".into()),
        warnings: 0,
        details: Default::default(),
    }
}

/// A registry as a daemon with files, PostgreSQL and repository jobs fills it.
fn sample() -> Metrics {
    let m = Metrics::new();
    m.daemon_started(Timestamp::from_second(1_780_000_000).unwrap());
    let home = spec("home", JobKind::Backup, true, Some("hourly"));
    let base = spec("db", JobKind::BaseBackup, true, Some("daily 02:00"));
    let stream = spec("db", JobKind::Stream, true, None);
    let check = spec("db", JobKind::ArchiveCheck, true, Some("every 1m"));
    let verify = spec("main", JobKind::Verify, false, Some("weekly"));
    let next = Some(Timestamp::from_second(1_780_003_600).unwrap());
    for s in [&home, &base, &stream, &check, &verify] {
        m.set_job(s, if s.schedule.is_some() { next } else { None }, false);
    }
    m.set_job(&verify, next, true);
    m.observe_run(&record(&home, Outcome::Success, 1_780_000_100));
    m.observe_run(&record(&home, Outcome::Warning, 1_780_003_700));
    m.observe_run(&record(&base, Outcome::Failed, 1_780_000_200));
    m.observe_run(&record(&check, Outcome::Missed, 1_780_000_300));
    m.observe_run(&record(&verify, Outcome::TimedOut, 1_780_000_400));
    m.set_repository("main", 10 << 30, 9 << 30);
    m.set_postgres("db", Some(3.25), Some(Timestamp::from_second(1_780_000_500).unwrap()));
    m.set_verify_problems("main", 0);
    m.add_target("ops-webhook");
    m.delivery("ops-webhook", true);
    m.delivery("mail", false);
    m
}

#[test]
fn ops_metrics_exposition_passes_promtool() {
    let text = sample().render();
    // Every documented family is there.
    for family in [
        "coffer_job_last_success_timestamp_seconds",
        "coffer_job_last_run_timestamp_seconds",
        "coffer_job_last_status",
        "coffer_job_last_duration_seconds",
        "coffer_job_last_bytes_added",
        "coffer_job_runs_total",
        "coffer_job_expected_interval_seconds",
        "coffer_job_next_run_timestamp_seconds",
        "coffer_job_overdue",
        "coffer_repository_size_bytes",
        "coffer_repository_locked_bytes",
        "coffer_postgres_archive_lag_seconds",
        "coffer_postgres_recovery_window_end_timestamp_seconds",
        "coffer_verify_problems",
        "coffer_alert_deliveries_total",
        "coffer_daemon_start_time_seconds",
        "coffer_build_info",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing:\n{text}");
    }
    // No error text, run id or snapshot id in a label.
    assert!(!text.contains("connection reset") && !text.contains("0123abcd"), "{text}");
    check_metrics(&text);
}

#[test]
fn ops_metrics_scrape_over_http_passes_promtool() {
    let m = Arc::new(sample());
    let server = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&m)).unwrap();
    assert_ne!(server.addr().port(), 0, "the real port");
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        (head.to_owned(), body.to_owned())
    };
    let (head, body) = get("/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.trim()))
        .expect("a Content-Type");
    assert_eq!(content_type, CONTENT_TYPE);
    // What was scraped is what the registry renders (nothing is chunked away), and valid.
    assert_eq!(body, m.render());
    check_metrics(&body);
    // Updates show in the next scrape.
    m.set_verify_problems("main", 4);
    assert!(get("/metrics").1.contains("coffer_verify_problems{repository=\"main\"} 4"));
    let (head, _) = get("/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    server.shutdown();
}

#[test]
fn ops_metrics_rules_fire_as_documented() {
    let dir = packaging();
    let (code, out) = run_promtool(&["check", "rules", "coffer-rules.yml"], &dir, b"");
    assert_eq!(code, Some(0), "promtool check rules:\n{out}");
    let (code, out) = run_promtool(&["test", "rules", "coffer-rules.test.yml"], &dir, b"");
    assert_eq!(code, Some(0), "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    // Every rule has a test.
    let rules = std::fs::read_to_string(dir.join("coffer-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("coffer-rules.test.yml")).unwrap();
    for name in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {name}\n")), "no test for {name}");
    }
}

const CONFIG: &str = r#"
[repositories.main]
location = "/nonexistent/vault"
[repositories.main.verify]
schedule = "weekly"
[files.home]
repository = "main"
paths = ["/srv"]
schedule = "hourly"
"#;

#[test]
fn ops_metrics_log_lines_are_flat_json_with_the_documented_fields() {
    let sb = Sandbox::new();
    let config = sb.file("coffer.toml", CONFIG.as_bytes());
    let run = sb
        .coffer(["config", "check", "--log-format", "json", "--log-level", "debug"])
        .arg("--config")
        .arg(&config)
        .ok();
    let lines: Vec<serde_json::Map<String, serde_json::Value>> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}")))
        .collect();
    // home/backup, main/verify, and the repository's security watch and canary.
    assert_eq!(lines.len(), 4, "one event per job:\n{}", run.stderr);
    let documented = |k: &str| {
        coffer_operations::logs::FIELDS.contains(&k) || coffer_operations::logs::FORMATTER_FIELDS.contains(&k)
    };
    for line in &lines {
        for key in line.keys() {
            assert!(documented(key), "undocumented field {key}: {line:?}");
        }
        assert!(line["timestamp"].as_str().unwrap().parse::<Timestamp>().is_ok(), "{line:?}");
        assert_eq!(line["level"], "DEBUG");
    }
    assert_eq!(lines[0]["job"], "home/backup");
    assert_eq!(lines[0]["kind"], "backup");
    assert_eq!(lines[0]["source"], "home");
    assert_eq!(lines[0]["repository"], "main");
    assert_eq!(lines[1]["job"], "main/verify");
    assert_eq!(lines[2]["job"], "main/watch");
    assert_eq!(lines[3]["job"], "main/canary");

    // The environment sets them too; the default level keeps a command quiet.
    let quiet = sb.coffer(["config", "check"]).arg("--config").arg(&config).env("COFFER_LOG_FORMAT", "json").ok();
    assert_eq!(quiet.stderr, "", "nothing logged at the default level");
    let env = sb
        .coffer(["config", "check"])
        .arg("--config")
        .arg(&config)
        .env("COFFER_LOG_FORMAT", "human")
        .env("COFFER_LOG", "debug")
        .ok();
    assert_eq!(env.stderr.lines().count(), 4, "one line per job (backup, verify, watch, canary): {}", env.stderr);
    assert!(env.stderr.contains("DEBUG") && env.stderr.contains("job=home/backup"), "{}", env.stderr);
    // A level that is not one is a usage error.
    sb.coffer(["config", "check", "--log-level", "loud=="]).arg("--config").arg(&config).fails(2);
}

#[test]
fn ops_metrics_no_secret_reaches_the_log_lines_at_any_level() {
    let sb = Sandbox::new();
    let secret = "s3cr3t-Password-4c6f";
    let key = sb.file("password", format!("{secret}\n").as_bytes());
    let config = sb.file(
        "coffer.toml",
        format!(
            "{CONFIG}\n[repositories.other]\nlocation = \"s3://bucket/p?endpoint=http://127.0.0.1:9\"\npassword = {{ file = \"{}\" }}\n",
            key.display()
        )
        .as_bytes(),
    );
    for format in ["json", "human"] {
        let run = sb
            .coffer(["config", "check", "--log-format", format, "--log-level", "trace"])
            .arg("--config")
            .arg(&config)
            .env("COFFER_PASSWORD", secret)
            .ok();
        assert!(!run.stderr.is_empty(), "trace logs something");
        assert!(!run.stderr.contains(secret) && !run.stdout_text().contains(secret), "{}", run.stderr);
    }
}
