//! `coffer status`: the jobs of a policy file as the daemon's state records them (runs put
//! in a real state directory, at real times), with exit 0 when healthy, 9 when a job is
//! failing or overdue, and 1 when status itself cannot run.

use crate::Sandbox;
use coffer_operations::status::slot_key;
use coffer_operations::{RunRecord, State};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::path::PathBuf;

/// A sandbox with a policy file: one files source backed up hourly (10 min timeout), one
/// PostgreSQL source; and its state directory.
fn setup() -> (Sandbox, PathBuf, PathBuf) {
    let sb = Sandbox::new();
    let state = sb.path("state");
    let text = format!(
        r#"[daemon]
state-dir = {:?}
timezone = "UTC"

[repositories.main]
location = {:?}

[files.home]
repository = "main"
paths = ["/srv"]
schedule = "every 1h"
timeout = "10m"

[postgres.db]
repository = "main"

[postgres.db.base-backup]
schedule = "daily 03:00"
"#,
        state.display().to_string(),
        sb.vault().display().to_string(),
    );
    let config = sb.file("coffer.toml", text.as_bytes());
    (sb, config, state)
}

fn now() -> Timestamp {
    coffer_store::Clock::system().now()
}

fn run(job: &str, kind: &str, outcome: &str, started: Timestamp, details: Value) -> RunRecord {
    serde_json::from_value(json!({
        "version": 1, "run_id": coffer_operations::event::random_id(), "job": job, "kind": kind,
        "repository": "main", "host": "h", "started": started, "finished": started + SignedDuration::from_secs(30),
        "outcome": outcome, "attempts": 1, "details": details,
        "error": if outcome == "failed" { Some("cannot reach the repository") } else { None },
    }))
    .unwrap()
}

fn status(sb: &Sandbox, config: &PathBuf) -> crate::Cmd {
    sb.coffer(["--config"]).arg(config).arg("status")
}

fn job<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["jobs"].as_array().unwrap().iter().find(|j| j["job"] == id).unwrap_or_else(|| panic!("{id} in {doc}"))
}

#[test]
fn ops_status_healthy_exits_zero_and_shows_jobs_and_recovery_windows() {
    let (sb, config, dir) = setup();
    let state = State::open(&dir).unwrap();
    let t = now();
    state.record_run(&run("home/backup", "backup", "success", t - SignedDuration::from_mins(1), json!({}))).unwrap();
    state.set(&slot_key("home/backup"), &(t - SignedDuration::from_mins(1)).to_string()).unwrap();
    state
        .record_run(&run(
            "db/archive-check",
            "archive-check",
            "success",
            t - SignedDuration::from_secs(40),
            json!({ "archive_lag_seconds": "12", "recovery_window_start": "2030-01-01T00:00:00Z",
                    "recovery_window_end": "2030-01-02T00:00:00Z" }),
        ))
        .unwrap();
    let doc = status(&sb, &config).arg("--json").ok().json();
    assert_eq!(doc["healthy"], true, "{doc}");
    let home = job(&doc, "home/backup");
    assert_eq!((home["failing"].as_bool(), home["overdue"].as_bool()), (Some(false), Some(false)));
    assert_eq!(home["last_success"]["outcome"], "success");
    let next: Timestamp = home["next_run"].as_str().unwrap().parse().unwrap();
    // The next slot after the one handled a minute ago (an hour boundary may fall between).
    assert!(next > t - SignedDuration::from_mins(1) && next <= t + SignedDuration::from_hours(1), "{next}");
    // Jobs never run are neither failing nor overdue.
    assert_eq!(job(&doc, "db/base-backup")["overdue"], false);
    let pg = &doc["postgres"][0];
    assert_eq!(pg["source"], "db");
    assert_eq!(pg["archive_lag_seconds"], 12);
    assert_eq!(pg["recovery_window_end"], "2030-01-02T00:00:00Z");
    let text = status(&sb, &config).ok().stdout_text();
    assert!(text.contains("home/backup") && text.contains(" ok"), "{text}");
    assert!(
        text.contains("postgres db: recovery window 2030-01-01 00:00 UTC to 2030-01-02 00:00 UTC, archive lag 12s"),
        "{text}"
    );
}

#[test]
fn ops_status_failing_exits_nine_with_the_message() {
    let (sb, config, dir) = setup();
    let state = State::open(&dir).unwrap();
    let t = now();
    state.record_run(&run("home/backup", "backup", "success", t - SignedDuration::from_mins(3), json!({}))).unwrap();
    state.record_run(&run("home/backup", "backup", "failed", t - SignedDuration::from_mins(1), json!({}))).unwrap();
    let r = status(&sb, &config).arg("--json").run();
    assert_eq!(r.code, Some(9), "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["healthy"], false);
    let home = job(&doc, "home/backup");
    assert_eq!((home["failing"].as_bool(), home["overdue"].as_bool()), (Some(true), Some(false)));
    assert_eq!(home["last_failure"]["error"], "cannot reach the repository");
    let e = status(&sb, &config).fails(9);
    assert!(e.contains("home/backup (failing)"), "{e}");
    let text = status(&sb, &config).run().stdout_text();
    assert!(text.contains("FAILING") && text.contains("last failure: failed: cannot reach the repository"), "{text}");
}

#[test]
fn ops_status_overdue_exits_nine() {
    let (sb, config, dir) = setup();
    let state = State::open(&dir).unwrap();
    let t = now();
    // The last success three hours ago; hourly slots (10 min grace) have passed since.
    state.record_run(&run("home/backup", "backup", "success", t - SignedDuration::from_hours(3), json!({}))).unwrap();
    state.set(&slot_key("home/backup"), &(t - SignedDuration::from_hours(3)).to_string()).unwrap();
    let r = status(&sb, &config).arg("--json").run();
    assert_eq!(r.code, Some(9), "{}", r.stderr);
    let doc = r.json();
    let home = job(&doc, "home/backup");
    assert_eq!((home["failing"].as_bool(), home["overdue"].as_bool()), (Some(false), Some(true)));
    // The slots not handled are due: the next run is now, not in the future.
    let next: Timestamp = home["next_run"].as_str().unwrap().parse().unwrap();
    assert!(next <= t, "{next} vs {t}");
    assert!(status(&sb, &config).fails(9).contains("home/backup (overdue)"));
    let text = status(&sb, &config).run().stdout_text();
    assert!(
        text.contains("due now") && text.contains("OVERDUE") && text.contains("overdue: no successful run since"),
        "{text}"
    );
}

#[test]
fn ops_status_without_state_fails_as_status_not_as_unhealthy() {
    let (sb, config, _dir) = setup();
    let e = status(&sb, &config).fails(1);
    assert!(e.contains("no daemon state"), "{e}");
    assert!(!sb.path("state").exists(), "status never creates the daemon's state");
    let e = sb.coffer(["--config"]).arg(sb.path("missing.toml")).arg("status").fails(1);
    assert!(e.contains("missing.toml"), "{e}");
}
