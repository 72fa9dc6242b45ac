//! Who may remove what, and when: `rm --version`, `retention`, `legal-hold`, `config`.
//!
//! Looking past an expiry uses `COFFER_TEST_CLOCK_OFFSET`; the pruner tests therefore also
//! prove that the binary built for the tests honours it.

use crate::{Sandbox, keys, ts};

/// Two hours: past a `--retain 1h` lock.
const PAST_ONE_HOUR: &str = "7200";

#[test]
fn rm_version_is_forbidden_for_the_writer_and_leaves_the_version() {
    let sb = Sandbox::with_vault();
    let v = sb.put("k", b"data", &[]);
    let err = sb.v(["rm", "k", "--version", &v]).fails(3);
    assert!(err.contains("writer (role writer) may not delete-version"), "{err}");
    assert!(err.contains("roles that may: pruner"), "the message says how to proceed: {err}");
    assert_eq!(sb.v(["get", "k", "--version", &v]).ok().stdout, b"data");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock (COFFER_TEST_CLOCK_OFFSET): needs a debug build")]
fn the_pruner_removes_a_version_only_after_its_retention_ends() {
    let sb = Sandbox::with_vault();
    let v = sb.put("k", b"data", &["--retain", "1h"]);
    let keep = sb.put("k", b"newer", &["--retain", "1d"]);

    let err = sb.v(["--role", "pruner", "rm", "k", "--version", &v]).fails(4);
    assert!(err.contains(&format!("k version {v} is locked (compliance until")), "{err}");

    // Two hours later (test clock) the lock has ended.
    let listed = sb.v(["versions", "k"]).env("COFFER_TEST_CLOCK_OFFSET", PAST_ONE_HOUR).ok().stdout_text();
    assert!(listed.lines().any(|l| l.contains(&v) && l.ends_with("expired")), "{listed}");
    let doc = sb
        .v(["--role", "pruner", "rm", "k", "--version", &v, "--json"])
        .env("COFFER_TEST_CLOCK_OFFSET", PAST_ONE_HOUR)
        .ok()
        .json();
    assert_eq!(doc, serde_json::json!({"key": "k", "version": v, "delete_marker": false, "removed": true}));
    // Time has passed: later commands run at the moved time too (one run back on the real
    // clock would be behind the vault's newest time, and warned about: security_clock).
    let err = sb.v(["get", "k", "--version", &v]).env("COFFER_TEST_CLOCK_OFFSET", PAST_ONE_HOUR).fails(5);
    assert!(err.contains(&format!("k version {v} not found")), "{err}");

    // The one locked for a day is still protected two hours later.
    sb.v(["--role", "pruner", "rm", "k", "--version", &keep]).env("COFFER_TEST_CLOCK_OFFSET", PAST_ONE_HOUR).fails(4);
    assert_eq!(sb.versions("k").len(), 1);
}

#[test]
fn the_pruner_never_puts() {
    let sb = Sandbox::with_vault();
    let err = sb.v(["--role", "pruner", "put", "k", "-"]).stdin(b"x").fails(3);
    assert!(err.contains("pruner (role pruner) may not put"), "{err}");
}

#[test]
fn a_compliance_retention_can_be_extended_but_never_shortened_or_weakened() {
    let sb = Sandbox::with_vault();
    let v = sb.put("k", b"data", &["--retain", "1d"]);
    let until = ts(&sb.version_meta("k", &v)["retention"]["until"]);

    let later = until.checked_add(jiff::SignedDuration::from_hours(24)).unwrap();
    let doc = sb.v(["retention", "k", "--version", &v, "--until", &later.to_string(), "--json"]).ok().json();
    assert_eq!(keys(&doc), ["key", "retention", "version"]);
    assert_eq!(doc["retention"]["mode"], "compliance", "the mode defaults to the current one");
    assert_eq!(ts(&doc["retention"]["until"]), later);
    assert_eq!(ts(&sb.version_meta("k", &v)["retention"]["until"]), later);

    let err = sb.v(["retention", "k", "--version", &v, "--until", &until.to_string()]).fails(4);
    assert!(err.contains("is locked (compliance until"), "{err}");
    // Not even the admin, with bypass.
    sb.v(["--role", "admin", "retention", "k", "--version", &v, "--until", &until.to_string(), "--bypass-governance"])
        .fails(4);
    let much_later = later.checked_add(jiff::SignedDuration::from_hours(24)).unwrap().to_string();
    sb.v(["retention", "k", "--version", &v, "--until", &much_later, "--mode", "governance"]).fails(4);
    assert_eq!(ts(&sb.version_meta("k", &v)["retention"]["until"]), later, "refusals change nothing");
    assert_eq!(sb.version_meta("k", &v)["retention"]["mode"], "compliance");

    let text = sb.v(["retention", "k", "--version", &v, "--until", &much_later]).ok().stdout_text();
    assert!(text.contains(&format!("k version {v} is retained (compliance) until {much_later}")), "{text}");
}

#[test]
fn a_governance_retention_is_shortened_only_by_the_admin_with_bypass() {
    let sb = Sandbox::with_vault();
    let v = sb.put("k", b"data", &["--retain", "2d", "--mode", "governance"]);
    let until = ts(&sb.version_meta("k", &v)["retention"]["until"]);
    let earlier = until.checked_sub(jiff::SignedDuration::from_hours(24)).unwrap().to_string();

    sb.v(["retention", "k", "--version", &v, "--until", &earlier]).fails(4);
    let err = sb.v(["retention", "k", "--version", &v, "--until", &earlier, "--bypass-governance"]).fails(3);
    assert!(err.contains("may not bypass-governance") && err.contains("roles that may: admin"), "{err}");
    sb.v(["--role", "admin", "retention", "k", "--version", &v, "--until", &earlier, "--bypass-governance"]).ok();
    assert_eq!(sb.version_meta("k", &v)["retention"]["until"], earlier.as_str());
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock (COFFER_TEST_CLOCK_OFFSET): needs a debug build")]
fn a_legal_hold_blocks_removal_until_the_admin_lifts_it() {
    let sb = Sandbox::with_vault();
    let v = sb.put("k", b"data", &["--retain", "1h"]);
    let doc = sb.v(["legal-hold", "k", "--version", &v, "on", "--json"]).ok().json();
    assert_eq!(doc, serde_json::json!({"key": "k", "version": v, "legal_hold": true}));
    assert_eq!(sb.version_meta("k", &v)["legal_hold"], true);

    let past = ("COFFER_TEST_CLOCK_OFFSET", PAST_ONE_HOUR);
    let err = sb.v(["--role", "pruner", "rm", "k", "--version", &v]).env(past.0, past.1).fails(4);
    assert!(err.contains("(legal hold)"), "{err}");

    let err = sb.v(["legal-hold", "k", "--version", &v, "off"]).env(past.0, past.1).fails(3);
    assert!(err.contains("may not legal-hold-off"), "{err}");
    let text =
        sb.v(["--role", "admin", "legal-hold", "k", "--version", &v, "off"]).env(past.0, past.1).ok().stdout_text();
    assert_eq!(text.trim(), format!("k version {v}: legal hold off"));
    sb.v(["--role", "pruner", "rm", "k", "--version", &v]).env(past.0, past.1).ok();
    assert!(sb.versions("k").is_empty());
}

#[test]
fn config_shows_the_lock_and_only_the_admin_sets_the_default_retention() {
    let sb = Sandbox::with_vault();
    let text = sb.v(["config"]).ok().stdout_text();
    assert!(text.contains("object lock: enabled"), "{text}");
    assert!(text.contains("default retention: none"), "{text}");
    assert!(text.contains("versioning: enabled"), "{text}");
    let doc = sb.v(["config", "--json"]).ok().json();
    assert_eq!(keys(&doc), ["object_lock", "vault", "versioning"]);
    assert_eq!(doc["object_lock"], serde_json::json!({"enabled": true, "default_retention": null}));
    assert_eq!(doc["versioning"], "enabled");

    let err = sb.v(["config", "--default-retention", "30d"]).fails(3);
    assert!(err.contains("may not put-lock-config"), "{err}");
    let doc =
        sb.v(["--role", "admin", "config", "--default-retention", "30d", "--mode", "governance", "--json"]).ok().json();
    assert_eq!(
        doc["object_lock"]["default_retention"],
        serde_json::json!({"mode": "governance", "period": "30d", "period_seconds": 2_592_000})
    );

    // A put without a retention now gets the default.
    let v = sb.put("k", b"data", &[]);
    let meta = sb.version_meta("k", &v);
    assert_eq!(meta["retention"]["mode"], "governance");
    let span = ts(&meta["retention"]["until"]).duration_since(ts(&meta["created"])).as_secs();
    assert!((2_592_000..=2_592_002).contains(&span), "{span}");

    sb.v(["--role", "admin", "config", "--no-default-retention"]).ok();
    assert!(sb.v(["config"]).ok().stdout_text().contains("default retention: none"));
    let v = sb.put("k", b"data", &[]);
    assert_eq!(sb.version_meta("k", &v)["retention"], serde_json::Value::Null);
}

#[test]
fn init_with_a_default_retention_locks_every_put() {
    let sb = Sandbox::new();
    sb.coffer(["vault", "init", "--default-retention", "90d"]).arg(sb.vault()).ok();
    let text = sb.v(["config"]).ok().stdout_text();
    assert!(text.contains("default retention: compliance 90d"), "{text}");
    let v = sb.put("k", b"data", &[]);
    let meta = sb.version_meta("k", &v);
    assert_eq!(meta["retention"]["mode"], "compliance");
    let span = ts(&meta["retention"]["until"]).duration_since(ts(&meta["created"])).as_secs();
    assert!((7_776_000..=7_776_002).contains(&span), "{span}");
}
