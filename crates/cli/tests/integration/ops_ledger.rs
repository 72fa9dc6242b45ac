//! `coffer ledger`: runs recorded as the daemon records them (local state, outbox, flushed to
//! the repository's ledger) are listed from the repository alone — another host with only
//! the repository and its password — filtered, seen as of a point in time, and verified; a
//! rogue writer's forged record is reported and fails `ledger verify` and `verify`.

use crate::repo_util::{PASSWORD, Repo};
use coffer_operations::{Config, RunRecord, State};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A policy file naming the sandbox's repository as `main`, its password in a file.
fn policy(repo: &Repo) -> PathBuf {
    let pw = repo.sb.file("password", PASSWORD.as_bytes());
    let text = format!(
        "[daemon]\nstate-dir = {:?}\ntimezone = \"UTC\"\n\n[repositories.main]\nlocation = {:?}\npassword = {{ file = {:?} }}\n",
        repo.sb.path("state").display().to_string(),
        repo.vault().display().to_string(),
        pw.display().to_string(),
    );
    repo.sb.file("coffer.toml", text.as_bytes())
}

fn run(n: usize, job: &str, outcome: &str, started: jiff::Timestamp) -> RunRecord {
    serde_json::from_value(json!({
        "version": 1, "run_id": format!("run{n}-{}", coffer_operations::event::random_id()), "job": job,
        "kind": "backup", "repository": "main", "host": "backup-host",
        "started": started, "finished": started, "outcome": outcome, "attempts": 1,
        "error": if outcome == "failed" { Some("disk full\u{1b}[31m") } else { None },
    }))
    .unwrap()
}

/// Records runs in the state and flushes them to the ledger, as the daemon does.
fn record(config: &Path, runs: &[RunRecord]) {
    let config = Config::load(config).unwrap();
    let state = State::open(&config.daemon.state_dir.clone().unwrap()).unwrap();
    for r in runs {
        state.record_run(r).unwrap();
    }
    let repo = coffer_operations::open::open_repository(
        &config,
        "main",
        coffer_store::Role::Writer,
        coffer_store::Clock::system(),
    )
    .unwrap();
    assert_eq!(coffer_operations::ledger::flush_outbox(&state, "main", &repo).unwrap(), runs.len());
    assert!(state.outbox("main", 10).unwrap().is_empty());
}

fn jobs(doc: &Value) -> Vec<String> {
    doc["runs"].as_array().unwrap().iter().map(|r| r["job"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn ops_ledger_lists_filters_and_verifies_from_the_repository_alone() {
    let repo = Repo::init();
    let config = policy(&repo);
    let t0 = coffer_store::Clock::system().now() - jiff::SignedDuration::from_hours(3);
    let h = jiff::SignedDuration::from_hours(1);
    record(
        &config,
        &[
            run(0, "home/backup", "success", t0),
            run(1, "db/base-backup", "failed", t0 + h),
            run(2, "home/backup", "success", t0 + h * 2),
        ],
    );
    // Any host: only the repository and its password (a fresh HOME, no state, no policy).
    let doc = repo.c(["ledger", "--json"]).ok().json();
    assert_eq!(jobs(&doc), ["home/backup", "db/base-backup", "home/backup"]);
    assert_eq!(doc["problems"], json!([]));
    let first = &doc["runs"][0];
    assert_eq!(first["outcome"], "success");
    assert_eq!(first["host"], "backup-host");
    assert_eq!(first["id"].as_str().unwrap().len(), 64, "the ledger record's id");
    let doc = repo.c(["ledger", "--json", "--job", "home/backup"]).ok().json();
    assert_eq!(jobs(&doc), ["home/backup", "home/backup"]);
    let since = (t0 + h).to_string();
    assert_eq!(jobs(&repo.c(["ledger", "--json", "--since", &since]).ok().json()), ["db/base-backup", "home/backup"]);
    assert_eq!(jobs(&repo.c(["ledger", "--json", "--limit", "1"]).ok().json()), ["home/backup"]);
    // Text: one line per run, the error shown without its control characters.
    let text = repo.c(["--role", "reader", "ledger"]).ok().stdout_text();
    assert!(text.contains("db/base-backup") && text.contains("disk full?[31m") && text.contains("3 runs"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    // Verify: intact.
    let v = repo.c(["ledger", "verify", "--json"]).ok().json();
    assert_eq!((v["records"].as_u64(), v["heads"].as_array().unwrap().len()), (Some(3), 1));
    assert!(repo.c(["ledger", "verify"]).ok().stdout_text().contains("the ledger is intact"));
    // The policy file's repository, by name.
    let doc = repo.sb.coffer(["--config"]).arg(&config).args(["ledger", "--json", "--repository", "main"]).ok().json();
    assert_eq!(doc["runs"].as_array().unwrap().len(), 3);
    let e = repo.sb.coffer(["--config"]).arg(&config).args(["ledger", "--repository", "nope"]).fails(1);
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn ops_ledger_as_of_shows_the_ledger_as_it_was() {
    let repo = Repo::init();
    let config = policy(&repo);
    let now = coffer_store::Clock::system().now();
    record(&config, &[run(0, "home/backup", "success", now)]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t = coffer_store::Clock::system().now().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    record(&config, &[run(1, "home/backup", "failed", now)]);
    assert_eq!(repo.c(["ledger", "--json"]).ok().json()["runs"].as_array().unwrap().len(), 2);
    let past = repo.c(["ledger", "--json", "--as-of", &t]).ok().json();
    assert_eq!(past["runs"].as_array().unwrap().len(), 1);
    assert_eq!(past["runs"][0]["outcome"], "success");
    let e = repo.sb.coffer(["--config"]).arg(&config).args(["ledger", "--repository", "main", "--as-of", &t]).fails(2);
    assert!(e.contains("--as-of"), "{e}");
}

#[test]
fn ops_ledger_verify_reports_a_forged_record() {
    let repo = Repo::init();
    let config = policy(&repo);
    record(&config, &[run(0, "home/backup", "success", coffer_store::Clock::system().now())]);
    // A rogue writer (the writer's credentials, not the key) adds a "record" under a valid
    // content-addressed name.
    let forged = b"COFF not a sealed record".to_vec();
    let key = format!("ledger/{}", blake3::hash(&forged).to_hex());
    repo.sb.put(&key, &forged, &[]);
    // Listing still works and says what is wrong.
    let r = repo.c(["ledger", "--json"]).run();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["runs"].as_array().unwrap().len(), 1, "the forged record is ignored");
    assert_eq!(doc["problems"][0]["kind"], "unauthentic");
    assert!(r.stderr.contains("coffer: warning: ledger unauthentic"), "{}", r.stderr);
    // `ledger verify` fails as tampering (8); `verify` reports it as a problem (6).
    let e = repo.c(["ledger", "verify"]).fails(8);
    assert!(e.contains(&key), "{e}");
    let e = repo.c(["verify"]).fails(6);
    assert!(e.contains("ledger"), "{e}");
}
