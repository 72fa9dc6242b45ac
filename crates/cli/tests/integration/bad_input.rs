//! Bad input gets one clear line naming what and where, and the documented exit code;
//! principals are chosen by credentials; secrets never appear in any output.

use crate::Sandbox;

#[test]
fn a_missing_input_file_is_named() {
    let sb = Sandbox::with_vault();
    let missing = sb.path("no-such-file.txt");
    let err = sb.v(["put", "k"]).arg(&missing).fails(1);
    assert_eq!(
        err,
        format!("coffer: error: cannot read {}: No such file or directory (os error 2)", missing.display())
    );
    assert!(sb.versions("").is_empty());
}

#[test]
fn bad_durations_and_times_name_the_flag_and_the_value() {
    let sb = Sandbox::with_vault();
    let f = sb.file("f", b"x");
    let err = sb.v(["put", "k"]).arg(&f).args(["--retain", "9x"]).fails(2);
    assert!(err.contains("'--retain <DURATION>'") && err.contains("invalid duration \"9x\""), "{err}");
    let err = sb.v(["put", "k"]).arg(&f).args(["--retain", "0s"]).fails(2);
    assert!(err.contains("is zero"), "{err}");
    let err = sb.v(["put", "k"]).arg(&f).args(["--retain-until", "tomorrow"]).fails(2);
    assert!(err.contains("'--retain-until <TIME>'") && err.contains("expected RFC 3339"), "{err}");
    let err = sb.v(["retention", "k", "--version", "v", "--until", "2030-13-01T00:00:00Z"]).fails(2);
    assert!(err.contains("'--until <TIME>'"), "{err}");
    let err = sb.coffer(["vault", "init", "x", "--default-retention", "soon"]).fails(2);
    assert!(err.contains("'--default-retention <DURATION>'"), "{err}");
    let err = sb.v(["put", "k"]).arg(&f).args(["--retain", "1d", "--retain-until", "2030-01-01T00:00:00Z"]).fails(2);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = sb.v(["put", "k"]).arg(&f).args(["--mode", "governance"]).fails(2);
    assert!(err.contains("--retain"), "--mode needs a retention: {err}");
    let err = sb.v(["put", "k"]).arg(&f).args(["--retain", "1d", "--mode", "strict"]).fails(2);
    assert!(err.contains("'--mode <MODE>'") && err.contains("compliance or governance"), "{err}");
    assert!(sb.versions("").is_empty(), "nothing was stored");
}

#[test]
fn a_retain_until_in_the_past_is_refused_by_the_store() {
    let sb = Sandbox::with_vault();
    let err = sb.v(["put", "k", "-", "--retain-until", "2020-01-01T00:00:00Z"]).stdin(b"x").fails(1);
    assert!(err.contains("retain-until 2020-01-01T00:00:00Z is not in the future"), "{err}");
    assert!(sb.versions("").is_empty());
}

#[test]
fn an_unknown_role_is_a_usage_error_from_the_flag_or_the_environment() {
    let sb = Sandbox::with_vault();
    let err = sb.v(["--role", "boss", "versions"]).fails(2);
    assert!(err.contains("unknown role \"boss\"") && err.contains("--role"), "{err}");
    let err = sb.v(["versions"]).env("COFFER_ROLE", "root").fails(2);
    assert!(err.contains("unknown role \"root\""), "{err}");
}

#[test]
fn unknown_commands_and_missing_arguments_are_one_line() {
    let sb = Sandbox::with_vault();
    let err = sb.v(["frobnicate"]).fails(2);
    assert!(err.contains("unrecognized subcommand 'frobnicate'"), "{err}");
    let err = sb.v(["put"]).fails(2);
    assert!(err.contains("<KEY>") && err.contains("<FILE>"), "{err}");
    let err = sb.v(["legal-hold", "k", "--version", "v", "maybe"]).fails(2);
    assert!(err.contains("maybe"), "{err}");
    assert!(sb.coffer(["--help"]).ok().stdout_text().contains("vault"));
}

#[test]
fn an_unknown_key_or_version_is_not_found() {
    let sb = Sandbox::with_vault();
    let err = sb.v(["get", "nope"]).fails(5);
    assert_eq!(err, "coffer: error: nope not found");
    sb.put("k", b"x", &[]);
    let err = sb.v(["get", "k", "--version", "0000000000000000deadbeef"]).fails(5);
    assert_eq!(err, "coffer: error: k version 0000000000000000deadbeef not found");
    sb.v(["retention", "k", "--version", "0000000000000000deadbeef", "--until", "2099-01-01T00:00:00Z"]).fails(5);
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock (COFFER_TEST_CLOCK_OFFSET): needs a debug build")]
fn the_principal_comes_from_the_credentials_file_when_one_is_given() {
    let sb = Sandbox::with_vault();
    let v = sb.put("k", b"x", &["--retain", "1h"]);
    let pruner = sb.vault().join("credentials/pruner.toml");
    // No --role: the file alone decides; the pruner is refused by the lock, not by role.
    let err = sb.v(["rm", "k", "--version", &v, "--credentials"]).arg(&pruner).fails(4);
    assert!(err.contains("is locked"), "{err}");
    let err = sb.v(["rm", "k", "--version", &v]).env("COFFER_CREDENTIALS", &pruner).fails(4);
    assert!(err.contains("is locked"), "{err}");
    sb.v(["rm", "k", "--version", &v]).env("COFFER_CREDENTIALS", &pruner).env("COFFER_TEST_CLOCK_OFFSET", "7200").ok();

    // A file and a role that disagree are refused rather than guessed between.
    let err = sb.v(["--role", "writer", "--credentials"]).arg(&pruner).arg("versions").fails(2);
    assert!(err.contains("belong to role pruner, not writer"), "{err}");
}

#[test]
fn missing_malformed_or_foreign_credentials_are_refused_without_showing_secrets() {
    let sb = Sandbox::with_vault();
    let missing = sb.path("nowhere.toml");
    let err = sb.v(["versions", "--credentials"]).arg(&missing).fails(1);
    assert_eq!(
        err,
        format!("coffer: error: cannot read credentials {}: No such file or directory (os error 2)", missing.display()),
        "the cause is said once"
    );

    let secret = "s3cr3t-that-must-not-leak";
    let bad = sb.file("bad.toml", format!("secret-key = \"{secret}\"\nnot toml at all").as_bytes());
    let err = sb.v(["versions", "--credentials"]).arg(&bad).fails(1);
    assert!(err.contains("is malformed") && err.contains(&bad.display().to_string()), "{err}");
    assert!(!err.contains(secret), "{err}");

    // A writer key of another vault: authentication fails, naming only the access key.
    sb.coffer(["vault", "init", "other"]).ok();
    let foreign = sb.path("other/credentials/writer.toml");
    let text = std::fs::read_to_string(&foreign).unwrap();
    let secret = secret_of(&text);
    let err = sb.v(["versions", "--credentials"]).arg(&foreign).fails(3);
    assert!(err.contains("authentication failed for access key CKWR"), "{err}");
    assert!(!err.contains(&secret), "{err}");
    // A wrong secret for a known access key.
    let own = std::fs::read_to_string(sb.vault().join("credentials/writer.toml")).unwrap();
    let wrong = sb.file("wrong.toml", own.replace(&secret_of(&own), "0".repeat(48).as_str()).as_bytes());
    sb.v(["versions", "--credentials"]).arg(&wrong).fails(3);
    // Both attempts are in the audit log as denied logins.
    let log = sb.v(["audit-log", "--json"]).ok().json();
    let denied = log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "authenticate").count();
    assert_eq!(denied, 2);
}

#[test]
fn no_output_ever_contains_a_secret() {
    let sb = Sandbox::new();
    let mut outputs = Vec::new();
    let mut record = |run: crate::Run| {
        outputs.push(String::from_utf8_lossy(&run.stdout).into_owned());
        outputs.push(run.stderr);
    };
    record(sb.coffer(["vault", "init"]).arg(sb.vault()).run());
    record(sb.coffer(["vault", "init", "--json", "v2"]).run());
    record(sb.coffer(["vault", "put", "k", "-", "--retain", "1d"]).stdin(b"x").run()); // default vault
    let v = sb.put("k", b"x", &["--retain", "1d"]);
    for args in [
        vec!["config", "--json"],
        vec!["versions"],
        vec!["versions", "--json"],
        vec!["get", "k", "--json"],
        vec!["rm", "k", "--version", &v],
        vec!["--role", "admin", "audit-log"],
        vec!["audit-log", "--json"],
        vec!["audit-log", "--verify", "--json"],
    ] {
        record(sb.v(args).run());
    }
    let mut secrets = Vec::new();
    for dir in [sb.vault(), sb.path("v2"), sb.home().join(".local/share/coffer/vault")] {
        for role in ["writer", "reader", "pruner", "admin", "auditor"] {
            let text = std::fs::read_to_string(dir.join(format!("credentials/{role}.toml"))).unwrap();
            secrets.push(secret_of(&text));
        }
    }
    assert_eq!(secrets.len(), 15);
    for out in &outputs {
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "a secret was printed: {out}");
        }
    }
}

/// The `secret-key` value of a credentials file.
fn secret_of(toml_text: &str) -> String {
    let line = toml_text.lines().find(|l| l.starts_with("secret-key")).expect("secret-key line");
    let secret = line.split('"').nth(1).expect("quoted secret").to_owned();
    assert!(secret.len() >= 32, "{secret}");
    secret
}
