//! `audit-log` and `audit-log --verify`, including tamper detection.

use crate::{Sandbox, keys};
use serde_json::Value;

/// A vault with a history: allowed and denied requests.
fn busy_vault() -> (Sandbox, String) {
    let sb = Sandbox::with_vault();
    let v = sb.put("k", b"data", &["--retain", "1d"]);
    sb.v(["rm", "k", "--version", &v]).fails(3);
    sb.v(["--role", "pruner", "rm", "k", "--version", &v]).fails(4);
    sb.v(["rm", "k"]).ok();
    sb.put("other", b"x", &[]);
    (sb, v)
}

fn entries(sb: &Sandbox, extra: &[&str]) -> Vec<Value> {
    let doc = sb.v(["audit-log", "--json"]).args(extra).ok().json();
    assert_eq!(keys(&doc), ["entries"]);
    doc["entries"].as_array().unwrap().clone()
}

#[test]
fn the_audit_log_records_allowed_and_denied_requests_for_the_auditor() {
    let (sb, v) = busy_vault();
    let log = entries(&sb, &[]);
    let summary: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e["principal"].as_str().unwrap(), e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("init", "init", "allowed"),
            ("writer", "put", "allowed"),
            ("writer", "delete-version", "denied"),
            ("pruner", "delete-version", "denied"),
            ("admin", "delete", "allowed"),
            ("writer", "put", "allowed"),
        ]
    );
    assert_eq!(
        keys(&log[2]),
        ["action", "hash", "key", "outcome", "prev_hash", "principal", "reason", "role", "seq", "time", "version"]
    );
    assert_eq!(log[2]["version"], v.as_str());
    assert!(log[3]["reason"].as_str().unwrap().contains("is locked"), "{}", log[3]);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["seq"], i + 1);
    }

    // Page by page gives the same log.
    assert_eq!(entries(&sb, &["--page-size", "2"]), log);
    assert_eq!(entries(&sb, &["--role", "admin"]), log, "the admin may read it too");

    let table = sb.v(["audit-log", "--page-size", "4"]).ok().stdout_text();
    assert_eq!(table.lines().count(), 7, "a header and six rows: {table}");
    assert!(table.lines().next().unwrap().trim_start().starts_with("SEQ"));
    assert!(table.contains("may not delete-version"), "{table}");
}

#[test]
fn writers_readers_and_pruners_may_not_read_the_audit_log() {
    let (sb, _) = busy_vault();
    for role in ["writer", "reader", "pruner"] {
        let err = sb.v(["--role", role, "audit-log"]).fails(3);
        assert!(err.contains("may not read-audit-log") && err.contains("roles that may: admin, auditor"), "{err}");
    }
}

#[test]
fn verify_passes_on_an_intact_log_and_names_a_modified_entry() {
    let (sb, _) = busy_vault();
    let text = sb.v(["audit-log", "--verify"]).ok().stdout_text();
    assert!(text.starts_with("audit log intact: 6 entries, head "), "{text}");
    let doc = sb.v(["audit-log", "--verify", "--json"]).ok().json();
    assert_eq!(keys(&doc), ["entries", "head", "intact", "problems", "time_findings"]);
    assert_eq!(doc["intact"], true);
    assert_eq!(doc["problems"], serde_json::json!([]));

    // Tamper as someone with write access to the file would: drop the append-only trigger
    // and rewrite a middle entry to hide the denied delete.
    let conn = rusqlite::Connection::open(sb.vault().join("meta.sqlite")).unwrap();
    conn.execute_batch("DROP TRIGGER audit_append_only_update").unwrap();
    let changed = conn.execute("UPDATE audit SET outcome = 'allowed', reason = '' WHERE seq = 3", []).unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let err = sb.v(["audit-log", "--verify"]).fails(6);
    assert!(err.contains("audit log of") && err.contains("is broken"), "{err}");
    assert!(err.contains("entry 3 was modified"), "names the entry: {err}");
    let run = sb.v(["audit-log", "--verify", "--json"]).run();
    assert_eq!(run.code, Some(6));
    let doc = run.json();
    assert_eq!(doc["intact"], false);
    assert!(doc["problems"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().contains("entry 3")), "{doc}");
}

#[test]
fn verify_detects_a_removed_entry() {
    let (sb, _) = busy_vault();
    let conn = rusqlite::Connection::open(sb.vault().join("meta.sqlite")).unwrap();
    conn.execute_batch("DROP TRIGGER audit_append_only_delete; DELETE FROM audit WHERE seq = 4;").unwrap();
    drop(conn);
    let err = sb.v(["--role", "admin", "audit-log", "--verify"]).fails(6);
    assert!(err.contains("entry 5 follows entry 3"), "{err}");
}
