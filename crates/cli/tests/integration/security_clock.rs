//! Clock manipulation on a local vault (issue 14), as a user would try it: `faketime` moves
//! the clock of one `coffer` run (libfaketime, `LD_PRELOAD`), the real vault judges its
//! locks on that clock, and the next ordinary run must notice: a warning on stderr, one
//! `clock-behind` audit entry, and `vault audit-log --verify` exiting 8 with a finding that
//! names both entries.

use crate::{Cmd, Sandbox};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The `faketime` wrapper; a test that cannot find it fails, naming the install.
fn faketime() -> PathBuf {
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/bin", "/usr/local/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("faketime"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("faketime is missing: install it with `apt-get install faketime` (.ci/test does)"))
}

/// `faketime OFFSET coffer --vault VAULT vault ARGS…`, with only `HOME` set (as [`Sandbox::v`]).
fn v_at(sb: &Sandbox, offset: &str, args: &[&str]) -> Cmd {
    let mut cmd = Command::new(faketime());
    cmd.env_clear()
        .env("HOME", sb.home())
        .current_dir(sb.path(""))
        .arg(offset)
        .arg(env!("CARGO_BIN_EXE_coffer"))
        .arg("--vault")
        .arg(sb.vault())
        .arg("vault")
        .args(args);
    Cmd { cmd, stdin: None }
}

fn init_with_retention(sb: &Sandbox) {
    sb.coffer(["vault", "init", "--default-retention", "30d"]).arg(sb.vault()).ok();
}

fn put_file(sb: &Sandbox, key: &str, data: &[u8]) -> (String, String) {
    let f = sb.file(&format!("{key}.in"), data);
    let run = sb.v(["put", key]).arg(&f).ok();
    (run.stdout_text().trim().to_owned(), run.stderr)
}

fn audit_entries(sb: &Sandbox) -> Vec<Value> {
    sb.v(["audit-log", "--json"]).run().json()["entries"].as_array().expect("entries").clone()
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("coffer: warning: the clock")).collect()
}

fn day(t: &str) -> &str {
    &t[..10]
}

#[test]
fn security_clock_a_pruner_run_under_a_clock_moved_forward_is_flagged() {
    let sb = Sandbox::new();
    init_with_retention(&sb);
    let (v, _) = put_file(&sb, "k", b"locked for 30 days");
    // The real clock: the compliance lock holds.
    let err = sb.v(["--role", "pruner", "rm", "k", "--version", &v]).fails(4);
    assert!(err.contains("locked"), "{err}");

    // The attack: the same request with the clock 40 days ahead succeeds (one host cannot
    // prevent it) …
    v_at(&sb, "+40 days", &["--role", "pruner", "rm", "k", "--version", &v]).ok();
    let entries = audit_entries(&sb);
    let rm = entries.iter().find(|e| e["action"] == "delete-version" && e["outcome"] == "allowed").expect("rm audited");
    let rm_time = rm["time"].as_str().unwrap().to_owned();
    let rm_seq = rm["seq"].as_u64().unwrap();
    let today = entries[0]["time"].as_str().unwrap().to_owned();
    let expected_day =
        (today.parse::<jiff::Timestamp>().unwrap() + jiff::SignedDuration::from_hours(40 * 24)).to_string();
    assert_eq!(day(&rm_time), day(&expected_day), "faketime moved the clock 40 days: {rm}");

    // … but the next ordinary run says so, once per command, and records it once.
    let (_, stderr) = put_file(&sb, "k2", b"normal work");
    let w = warnings(&stderr);
    assert_eq!(w.len(), 1, "one warning line: {stderr:?}");
    assert!(
        w[0].contains("is behind the newest time this vault has recorded")
            && (w[0].contains(" by 40d:") || w[0].contains(" by 39d 23h:"))
            && w[0].contains(day(&rm_time)),
        "{stderr}"
    );
    put_file(&sb, "k3", b"more normal work");
    let entries = audit_entries(&sb);
    let behind: Vec<&Value> = entries.iter().filter(|e| e["action"] == "clock-behind").collect();
    assert_eq!(behind.len(), 1, "exactly one clock-behind entry for one change of state: {entries:?}");
    assert_eq!(behind[0]["seq"].as_u64(), Some(rm_seq + 1));
    assert_eq!((behind[0]["principal"].as_str(), behind[0]["outcome"].as_str()), (Some("writer"), Some("detected")));

    // verify: the chain is intact, the times are not: exit 8 naming both entries.
    let run = sb.v(["audit-log", "--verify"]).run();
    assert_eq!(run.code, Some(8), "{}", run.stderr);
    let out = run.stdout_text();
    assert!(out.starts_with("audit log intact: "), "{out}");
    let finding = format!("entry {} ({}", rm_seq + 1, day(&today));
    let newest = format!("is dated before entry {rm_seq} ({}", day(&rm_time));
    let sec: Vec<&str> = out.lines().filter(|l| l.starts_with("security: clock ")).collect();
    assert_eq!(sec.len(), 1, "{out}");
    assert!(sec[0].contains(&finding) && sec[0].contains(&newest), "{out}");
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("coffer: error: ")).collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(errors[0].contains(&finding) && errors[0].contains(&newest), "{}", run.stderr);
    assert_eq!(warnings(&run.stderr).len(), 1, "{}", run.stderr);

    let run = sb.v(["audit-log", "--verify", "--json"]).run();
    assert_eq!(run.code, Some(8));
    let doc = run.json();
    assert_eq!(doc["intact"], true);
    let found = doc["time_findings"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{doc}");
    assert_eq!((found[0]["seq"].as_u64(), found[0]["newest_seq"].as_u64()), (Some(rm_seq + 1), Some(rm_seq)));
    assert_eq!(found[0]["newest_time"].as_str(), Some(rm_time.as_str()));
}

#[test]
fn security_clock_a_clock_moved_back_is_flagged_by_the_run_that_uses_it() {
    let sb = Sandbox::new();
    init_with_retention(&sb);
    put_file(&sb, "k", b"today");
    let run = v_at(&sb, "-2 days", &["put", "k2", "-"]).stdin(b"two days ago").ok();
    let w = warnings(&run.stderr);
    assert_eq!(w.len(), 1, "{:?}", run.stderr);
    assert!(w[0].contains(" by 2d:") || w[0].contains(" by 1d 23h:"), "{}", w[0]);
    let entries = audit_entries(&sb);
    let behind: Vec<&Value> = entries.iter().filter(|e| e["action"] == "clock-behind").collect();
    assert_eq!(behind.len(), 1, "{entries:?}");
    // The run back on the real clock has caught up: no warning, and verify names the entry.
    let (_, stderr) = put_file(&sb, "k3", b"today again");
    assert!(warnings(&stderr).is_empty(), "{stderr}");
    let run = sb.v(["audit-log", "--verify"]).run();
    assert_eq!(run.code, Some(8), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("entry {} (", behind[0]["seq"])), "{}", run.stderr);
    assert!(run.stderr.contains("is dated before entry 2 ("), "{}", run.stderr);
}

#[test]
fn security_clock_ordinary_work_raises_nothing() {
    let sb = Sandbox::new();
    init_with_retention(&sb);
    for key in ["a", "b", "c"] {
        let (_, stderr) = put_file(&sb, key, key.as_bytes());
        assert!(stderr.is_empty(), "{stderr}");
    }
    // A run a few seconds off (as NTP might leave a clock) is within the tolerance.
    let run = v_at(&sb, "-2 seconds", &["put", "d", "-"]).stdin(b"d").ok();
    assert!(warnings(&run.stderr).is_empty(), "{}", run.stderr);
    let run = sb.v(["audit-log", "--verify"]).ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let doc = sb.v(["audit-log", "--verify", "--json"]).ok().json();
    assert_eq!(doc["time_findings"], serde_json::json!([]));
    assert!(audit_entries(&sb).iter().all(|e| e["action"] != "clock-behind"));
}
