use super::*;
use crate::event::JobKind;
use crate::schedule::Schedule;
use std::time::Duration;

fn spec(id: &str, kind: JobKind, source: Option<&str>) -> JobSpec {
    JobSpec {
        id: id.into(),
        kind,
        source: source.map(str::to_owned),
        repository: "main".into(),
        schedule: Some(Schedule::parse("hourly").unwrap()),
        random_delay: None,
        timeout: Duration::from_secs(3600),
        retries: 2,
    }
}

fn run(job: &str, outcome: Outcome, finished: i64) -> RunRecord {
    RunRecord {
        finished: Timestamp::from_second(finished).unwrap(),
        outcome,
        error: Some("s3://secret-bucket refused".into()),
        bytes_added: Some(4096),
        snapshot: Some("deadbeefcafe".into()),
        ..RunRecord::new(
            job,
            JobKind::Backup,
            Some("home"),
            "main",
            "h",
            Timestamp::from_second(finished - 90).unwrap(),
        )
    }
}

/// The value of the one sample whose line starts with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(lines.len(), 1, "{prefix} in\n{text}");
    lines[0].rsplit(' ').next().unwrap().parse().unwrap()
}

const HOME: &str = r#"{coffer_job="home/backup",kind="backup",repository="main",source="home"}"#;

#[test]
fn a_success_then_a_failure_keep_the_last_success_and_count_both() {
    let m = Metrics::new();
    m.observe_run(&run("home/backup", Outcome::Success, 1_000));
    m.observe_run(&run("home/backup", Outcome::Failed, 2_000));
    let t = m.render();
    assert_eq!(value(&t, &format!("coffer_job_last_success_timestamp_seconds{HOME}")), 1000.0);
    assert_eq!(value(&t, &format!("coffer_job_last_run_timestamp_seconds{HOME}")), 2000.0);
    assert_eq!(value(&t, &format!("coffer_job_last_status{HOME}")), 0.0);
    assert_eq!(value(&t, &format!("coffer_job_last_duration_seconds{HOME}")), 90.0);
    assert_eq!(value(&t, &format!("coffer_job_last_bytes_added{HOME}")), 4096.0);
    let runs = |o: &str| {
        value(
            &t,
            &format!(
                r#"coffer_job_runs_total{{coffer_job="home/backup",kind="backup",outcome="{o}",repository="main",source="home"}}"#
            ),
        )
    };
    assert_eq!(runs("success"), 1.0);
    assert_eq!(runs("failed"), 1.0);
    // Created at 0, so increase() sees the first one.
    assert_eq!(runs("timed-out"), 0.0);
    assert_eq!(runs("missed"), 0.0);
}

#[test]
fn a_missed_slot_counts_but_leaves_the_last_status() {
    let m = Metrics::new();
    m.observe_run(&run("home/backup", Outcome::Success, 1_000));
    m.observe_run(&run("home/backup", Outcome::Missed, 2_000));
    let t = m.render();
    assert_eq!(value(&t, &format!("coffer_job_last_status{HOME}")), 1.0);
    assert_eq!(value(&t, &format!("coffer_job_last_run_timestamp_seconds{HOME}")), 1000.0);
    assert!(t.contains(r#"outcome="missed",repository="main",source="home"} 1"#), "{t}");
}

#[test]
fn no_label_carries_a_run_id_snapshot_or_error() {
    let m = Metrics::new();
    let r = run("home/backup", Outcome::Failed, 1_000);
    m.observe_run(&r);
    let t = m.render();
    assert!(!t.contains(&r.run_id), "{t}");
    assert!(!t.contains("deadbeefcafe"), "{t}");
    assert!(!t.contains("secret"), "{t}");
}

#[test]
fn schedule_facts_and_reload_forgets_removed_jobs() {
    let m = Metrics::new();
    let home = spec("home/backup", JobKind::Backup, Some("home"));
    let verify = spec("main/verify", JobKind::Verify, None);
    m.set_job(&home, Some(Timestamp::from_second(5_000).unwrap()), true);
    m.set_job(&verify, None, false);
    let t = m.render();
    assert_eq!(value(&t, &format!("coffer_job_expected_interval_seconds{HOME}")), 3600.0);
    assert_eq!(value(&t, &format!("coffer_job_next_run_timestamp_seconds{HOME}")), 5000.0);
    assert_eq!(value(&t, &format!("coffer_job_overdue{HOME}")), 1.0);
    assert_eq!(
        value(&t, r#"coffer_job_overdue{coffer_job="main/verify",kind="verify",repository="main",source=""}"#),
        0.0
    );
    m.retain_jobs(std::slice::from_ref(&verify));
    let t = m.render();
    assert!(!t.contains("home/backup"), "{t}");
    assert!(t.contains("main/verify"), "{t}");
}

#[test]
fn repository_postgres_verify_delivery_and_daemon() {
    let m = Metrics::new();
    m.daemon_started(Timestamp::from_second(1_700_000_000).unwrap());
    m.set_repository("main", 10, 7);
    m.set_postgres("db", Some(12.5), Some(Timestamp::from_second(3_000).unwrap()));
    m.set_verify_problems("main", 2);
    m.add_target("ops");
    m.delivery("hook", false);
    let t = m.render();
    assert_eq!(value(&t, "coffer_daemon_start_time_seconds"), 1_700_000_000.0);
    assert_eq!(value(&t, r#"coffer_repository_size_bytes{repository="main"}"#), 10.0);
    assert_eq!(value(&t, r#"coffer_repository_locked_bytes{repository="main"}"#), 7.0);
    assert_eq!(value(&t, r#"coffer_postgres_archive_lag_seconds{source="db"}"#), 12.5);
    assert_eq!(value(&t, r#"coffer_postgres_recovery_window_end_timestamp_seconds{source="db"}"#), 3000.0);
    assert_eq!(value(&t, r#"coffer_verify_problems{repository="main"}"#), 2.0);
    assert_eq!(value(&t, r#"coffer_alert_deliveries_total{outcome="failed",target="hook"}"#), 1.0);
    assert_eq!(value(&t, r#"coffer_alert_deliveries_total{outcome="delivered",target="ops"}"#), 0.0);
    assert!(t.contains(&format!(r#"coffer_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"))), "{t}");
    // Unknown again: the series goes rather than lying.
    m.set_postgres("db", None, None);
    assert!(!m.render().contains("source=\"db\""));
}

#[test]
fn the_listener_serves_metrics_and_refuses_the_rest() {
    use std::io::{Read as _, Write as _};
    let m = Arc::new(Metrics::new());
    m.set_repository("main", 1, 1);
    let server = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&m)).unwrap();
    let get = |method: &str, path: &str| {
        let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let ok = get("GET", "/metrics");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.to_ascii_lowercase().contains(&format!("content-type: {CONTENT_TYPE}")), "{ok}");
    assert!(ok.contains(r#"coffer_repository_size_bytes{repository="main"} 1"#), "{ok}");
    assert!(get("GET", "/").starts_with("HTTP/1.1 404"));
    assert!(get("POST", "/metrics").starts_with("HTTP/1.1 405"));
    let addr = server.addr();
    server.shutdown();
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::net::TcpStream::connect(addr).is_err()
    });
    assert!(gone, "still listening 2 s after shutdown");
}

const DRILL: &str = r#"{coffer_job="home/drill",kind="drill",repository="main",source="home"}"#;

fn drill_run(outcome: Outcome, finished: i64, details: &[(&str, &str)]) -> RunRecord {
    RunRecord {
        finished: Timestamp::from_second(finished).unwrap(),
        outcome,
        details: details.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..RunRecord::new(
            "home/drill",
            JobKind::Drill,
            Some("home"),
            "main",
            "h",
            Timestamp::from_second(finished - 5).unwrap(),
        )
    }
}

#[test]
fn drill_jobs_metrics_follow_the_last_drill() {
    let m = Metrics::new();
    let passing = [
        ("drill_report", "r1"),
        ("rto_seconds", "2.500"),
        ("rto_target_seconds", "60.000"),
        ("data_age_seconds", "3600.000"),
    ];
    m.observe_run(&drill_run(Outcome::Success, 1_000, &passing));
    let t = m.render();
    assert_eq!(value(&t, &format!("coffer_drill_passed{DRILL}")), 1.0);
    assert_eq!(value(&t, &format!("coffer_drill_last_success_timestamp_seconds{DRILL}")), 1000.0);
    assert_eq!(value(&t, &format!("coffer_drill_rto_seconds{DRILL}")), 2.5);
    assert_eq!(value(&t, &format!("coffer_drill_rto_target_seconds{DRILL}")), 60.0);
    assert_eq!(value(&t, &format!("coffer_drill_data_age_seconds{DRILL}")), 3600.0);
    // Over its target, no data age measured, and a hostile value: failed, the new RTO, the
    // unknown ones removed, the last success kept.
    let failing = [
        ("drill_report", "r2"),
        ("rto_seconds", "90.000"),
        ("rto_target_seconds", "1.000"),
        ("data_age_seconds", "NaN"),
    ];
    m.observe_run(&drill_run(Outcome::Failed, 2_000, &failing));
    let t = m.render();
    assert_eq!(value(&t, &format!("coffer_drill_passed{DRILL}")), 0.0);
    assert_eq!(value(&t, &format!("coffer_drill_last_success_timestamp_seconds{DRILL}")), 1000.0);
    assert_eq!(value(&t, &format!("coffer_drill_rto_seconds{DRILL}")), 90.0);
    assert_eq!(value(&t, &format!("coffer_drill_rto_target_seconds{DRILL}")), 1.0);
    assert!(!t.contains("coffer_drill_data_age_seconds{"), "{t}");
    // A drill that could not run: not passed, the last measured RTO kept.
    m.observe_run(&drill_run(Outcome::Failed, 3_000, &[]));
    let t = m.render();
    assert_eq!(value(&t, &format!("coffer_drill_passed{DRILL}")), 0.0);
    assert_eq!(value(&t, &format!("coffer_drill_rto_seconds{DRILL}")), 90.0);
    // A backup job has no drill series; a job leaving the policy takes its series along.
    m.observe_run(&run("home/backup", Outcome::Success, 1_000));
    assert!(!m.render().contains(r#"coffer_drill_passed{coffer_job="home/backup""#));
    m.retain_jobs(&[spec("home/backup", JobKind::Backup, Some("home"))]);
    assert!(!m.render().contains("coffer_drill_"), "{}", m.render());
}
