//! The policy file through the real binary (`coffer config check|show`, `COFFER_*`
//! overrides, redaction), the shipped example, and the packaging: the systemd unit checked
//! by `systemd-analyze`, shell completions and man pages generated from the CLI.

use crate::Sandbox;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/coffer.toml");
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/systemd/coffer.service");

/// A small valid file, with secrets referenced in every way the schema allows.
fn policy(sb: &Sandbox) -> PathBuf {
    let vault = sb.path("vault");
    let text = format!(
        r#"[daemon]
timezone = "Europe/Paris"

[repositories.main]
location = "{vault}"
password = {{ file = "{secret}" }}

[files.home]
repository = "main"
paths = ["/home"]
schedule = "daily 02:00"

[alerts.webhook.ops]
url = "https://hookuser:hookpass@hooks.example.com/coffer?token=webhooktoken"
secret = {{ env = "HOOK_KEY" }}

[alerts.heartbeat.hc]
url = "https://hc-ping.com/heartbeat-uuid-0001"

[[alerts.route]]
targets = ["ops"]
"#,
        vault = vault.display(),
        secret = sb.file("pw", b"repository-password-value\n").display(),
    );
    sb.file("coffer.toml", text.as_bytes())
}

fn keys_snake_case(v: &Value, names_here: bool, path: &str) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if !names_here {
                    assert!(!k.contains('-'), "key {path}.{k} is not snake_case");
                }
                let p = format!("{path}.{k}");
                let names = matches!(
                    p.as_str(),
                    ".repositories"
                        | ".files"
                        | ".postgres"
                        | ".alerts.webhook"
                        | ".alerts.email"
                        | ".alerts.command"
                        | ".alerts.heartbeat"
                ) || p.ends_with(".credentials");
                keys_snake_case(v, names, &p);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys_snake_case(v, false, path)),
        _ => {}
    }
}

#[test]
fn ops_config_check_lists_the_example_jobs_with_their_next_run() {
    let sb = Sandbox::new();
    let out = sb.coffer(["--config", EXAMPLE, "config", "check"]).ok().stdout_text();
    assert!(out.starts_with(&format!("{EXAMPLE}: valid (10 jobs, schedules in UTC)")), "{out}");
    for job in [
        "app-data/backup",
        "app-data/drill",
        "db/base-backup",
        "db/archive-check",
        "db/drill",
        "main/verify",
        "main/prune",
        "main/rebuild",
        "main/canary",
    ] {
        let line = out.lines().find(|l| l.starts_with(job)).unwrap_or_else(|| panic!("{job} not listed:\n{out}"));
        assert!(line.contains("+00:00[UTC]"), "next run in the configured zone: {line}");
    }
    // The security watch of the repository the sources use: continuous, on by default.
    let watch = out.lines().find(|l| l.starts_with("main/watch")).unwrap_or_else(|| panic!("no watch:\n{out}"));
    assert!(watch.contains("continuous"), "{watch}");
    let doc = sb.coffer(["--config", EXAMPLE, "--json", "config", "check"]).ok().json();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["timezone"], "UTC");
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 10);
    let backup = jobs.iter().find(|j| j["id"] == "app-data/backup").unwrap();
    assert_eq!(backup["schedule"], "daily 02:00");
    assert_eq!(backup["kind"], "backup");
    assert!(backup["next_run"].as_str().unwrap().contains("T02:00:00+00:00"), "{backup}");
    keys_snake_case(&doc, false, "");
}

#[test]
fn ops_config_check_reads_schedules_in_the_configured_zone() {
    let sb = Sandbox::new();
    let file = policy(&sb);
    let out =
        sb.coffer(["--config".as_ref(), file.as_os_str(), "config".as_ref(), "check".as_ref()]).ok().stdout_text();
    let line = out.lines().find(|l| l.starts_with("home/backup")).unwrap();
    assert!(line.contains("T02:00:00+01:00[Europe/Paris]") || line.contains("T02:00:00+02:00[Europe/Paris]"), "{line}");
}

#[test]
fn ops_config_check_refuses_a_bad_file_with_its_place() {
    let sb = Sandbox::new();
    let file = policy(&sb);
    let text = std::fs::read_to_string(&file).unwrap().replace("targets = [\"ops\"]", "targets = [\"opz\"]");
    std::fs::write(&file, text).unwrap();
    let err = sb.coffer(["--config".as_ref(), file.as_os_str(), "config".as_ref(), "check".as_ref()]).fails(1);
    assert!(err.starts_with(&format!("coffer: error: {}:21:12: no alert target \"opz\"", file.display())), "{err}");

    // A password in a PostgreSQL connection string is refused, and not repeated.
    let text = format!(
        "{}\n[postgres.db]\nconnection = \"host=db password=pg-secret-value\"\nbase-backup = {{ schedule = \"daily\" }}\n",
        std::fs::read_to_string(&file).unwrap().replace("opz", "ops")
    );
    std::fs::write(&file, text).unwrap();
    let err = sb.coffer(["--config".as_ref(), file.as_os_str(), "config".as_ref(), "check".as_ref()]).fails(1);
    assert!(err.contains(":24:14: ") && err.contains("PGPASSFILE") && !err.contains("pg-secret-value"), "{err}");

    // A missing file is an I/O error, named.
    let err = sb.coffer(["--config", "/nonexistent/coffer.toml", "config", "check"]).fails(1);
    assert!(err.contains("cannot read /nonexistent/coffer.toml"), "{err}");
}

#[test]
fn ops_config_overrides_apply_and_their_errors_name_the_variable() {
    let sb = Sandbox::new();
    let file = policy(&sb);
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = sb.coffer(["--config".as_ref(), file.as_os_str()]);
        for (k, v) in env {
            c = c.env(k, v);
        }
        c.args(args)
    };
    let doc = run(
        &[
            ("COFFER_DAEMON__MAX_CONCURRENT_JOBS", "4"),
            ("COFFER_METRICS__LISTEN", "127.0.0.1:9477"),
            ("COFFER_FILES__HOME__SCHEDULE", "hourly"),
            // Not an override (no `__`), and not read by `config`.
            ("COFFER_PASSWORD", "x"),
        ],
        &["--json", "config", "show"],
    )
    .ok()
    .json();
    assert_eq!(doc["daemon"]["max_concurrent_jobs"], 4);
    assert_eq!(doc["metrics"]["listen"], "127.0.0.1:9477");
    assert_eq!(doc["files"]["home"]["schedule"], "hourly");

    let err = run(&[("COFFER_DAEMON__MAX_CONCURRENT_JOBS", "0")], &["config", "check"]).fails(1);
    assert!(err.contains(": COFFER_DAEMON__MAX_CONCURRENT_JOBS: max-concurrent-jobs must be at least 1"), "{err}");
    let err = run(&[("COFFER_DAEMON__TIMEZONE", "Mars/Olympus")], &["config", "check"]).fails(1);
    assert!(err.contains(": COFFER_DAEMON__TIMEZONE: unknown time zone"), "{err}");
    let err = run(&[("COFFER_FILES__HOME__SCHEDULE", "sometimes")], &["config", "check"]).fails(1);
    assert!(err.contains(": COFFER_FILES__HOME__SCHEDULE: "), "{err}");
}

#[test]
fn ops_config_show_redacts_secrets_and_never_reads_them() {
    let sb = Sandbox::new();
    let file = policy(&sb);
    let show = |json: bool| {
        let mut c = sb.coffer(["--config".as_ref(), file.as_os_str()]).env("HOOK_KEY", "hook-key-value");
        if json {
            c = c.arg("--json");
        }
        c.args(["config", "show"]).ok().stdout_text()
    };
    let text = show(false);
    let json = show(true);
    for out in [&text, &json] {
        for secret in [
            "repository-password-value",
            "hook-key-value",
            "hookuser",
            "hookpass",
            "webhooktoken",
            "heartbeat-uuid-0001",
        ] {
            assert!(!out.contains(secret), "{secret} shown:\n{out}");
        }
        // References are shown as references.
        assert!(out.contains(&sb.path("pw").display().to_string()) && out.contains("HOOK_KEY"), "{out}");
        assert!(out.contains("https://hooks.example.com/coffer") && out.contains("https://hc-ping.com/"), "{out}");
    }
    // The TOML is the effective file: defaults spelled out, and it checks.
    assert!(text.contains("max-concurrent-jobs = 2") && text.contains("repeat-interval = \"4h\""), "{text}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    keys_snake_case(&doc, false, "");
    assert_eq!(doc["alerts"]["repeat_interval"], "4h");
    assert!(doc["files"]["home"].is_object(), "names keep their spelling: {doc}");
}

#[test]
fn ops_config_example_passes_check_with_overrides_of_its_repository() {
    let sb = Sandbox::new();
    let out = sb
        .coffer(["--config", EXAMPLE, "config", "show"])
        .env("COFFER_REPOSITORIES__MAIN__LOCATION", "s3://other-bucket/coffer?region=us-east-1")
        .ok()
        .stdout_text();
    assert!(out.contains("location = \"s3://other-bucket/coffer?region=us-east-1\""), "{out}");
}

/// `systemd-analyze`, or a failure naming how to install it.
fn systemd_analyze() -> &'static str {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "systemd-analyze is missing: install it with `apt-get install systemd` (.ci/test does); \
         it verifies unit files offline, no running systemd needed"
    );
    "systemd-analyze"
}

#[test]
fn ops_config_systemd_unit_verifies_and_is_hardened() {
    let analyze = systemd_analyze();
    let sb = Sandbox::new();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "ExecStart=/usr/bin/coffer daemon --config /etc/coffer/coffer.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=coffer",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/coffer",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing from {UNIT}");
    }
    // `verify` checks that ExecStart's program exists and that the Documentation= man page
    // can be found: point it at the binary under test and at the man pages it generates.
    let bin = env!("CARGO_BIN_EXE_coffer");
    let dir = sb.path("unit");
    std::fs::create_dir_all(dir.join("man/man1")).unwrap();
    sb.coffer(["man", "--out"]).arg(dir.join("man/man1")).ok();
    let tested = dir.join("coffer.service");
    std::fs::write(&tested, unit.replace("ExecStart=/usr/bin/coffer ", &format!("ExecStart={bin} "))).unwrap();
    let out = Command::new(analyze)
        .args(["verify".as_ref(), tested.as_os_str()])
        .env("MANPATH", dir.join("man"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `verify` exits 0 on an unknown key or a bad value ("…, ignoring"): any message fails.
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");

    // And a deliberately broken copy is caught, so the check above can fail.
    let broken = dir.join("coffer-broken.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&tested).unwrap().replace("LockPersonality=yes", "LockPersonality=maybe"),
    )
    .unwrap();
    let out = Command::new(analyze)
        .args(["verify".as_ref(), broken.as_os_str()])
        .env("MANPATH", dir.join("man"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty(), "a bad value must be reported");

    // The exposure score of the hardening, offline (systemd >= 250): "OK" or better.
    let out = Command::new(analyze)
        .args(["security".as_ref(), "--offline=yes".as_ref(), "--threshold=30".as_ref(), tested.as_os_str()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 3.0:\n{text}{}", String::from_utf8_lossy(&out.stderr));
}

/// The subcommands `coffer --help` lists.
fn subcommands(sb: &Sandbox) -> Vec<String> {
    let help = sb.coffer(["--help"]).ok().stdout_text();
    let section = help.split("Commands:").nth(1).expect("a Commands section");
    section
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn ops_config_completions_cover_every_command() {
    let sb = Sandbox::new();
    let commands = subcommands(&sb);
    assert!(commands.iter().any(|c| c == "config") && commands.iter().any(|c| c == "man"), "{commands:?}");
    let bash = sb.coffer(["completions", "bash"]).ok().stdout_text();
    assert!(bash.contains("complete -F _coffer") || bash.contains("complete -o"), "{bash:.300}");
    for c in &commands {
        // (`daemon` among them once the daemon's command is in: the test follows `--help`.)
        assert!(bash.contains(&format!("coffer__subcmd__{}", c.replace('-', "__"))), "{c} not completed");
    }
    // The script is valid bash.
    let script = sb.file("coffer.bash", bash.as_bytes());
    let st = Command::new("bash").arg("-n").arg(&script).status().unwrap();
    assert!(st.success(), "bash -n rejects the completion script");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = sb.coffer(["completions", shell]).ok().stdout_text();
        assert!(out.contains("config"), "{shell}");
    }
    let err = sb.coffer(["completions", "tcsh"]).fails(2);
    assert!(err.contains("tcsh"), "{err}");
}

/// `groff`, or a failure naming how to install it.
fn groff() -> &'static str {
    let found = Command::new("groff").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "groff is missing: install it with `apt-get install groff-base` (.ci/test does)");
    "groff"
}

fn check_roff(page: &Path) {
    let text = std::fs::read_to_string(page).unwrap();
    assert!(text.lines().any(|l| l.starts_with(".TH ")), "{}: no .TH header", page.display());
    let out = Command::new(groff()).args(["-man", "-Tutf8", "-z", "-ww"]).arg(page).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{}: groff: {stderr}", page.display());
}

#[test]
fn ops_config_man_pages_are_valid_roff() {
    let sb = Sandbox::new();
    let page = sb.coffer(["man"]).ok().stdout;
    let single = sb.file("coffer.1", &page);
    check_roff(&single);
    let text = String::from_utf8(page).unwrap();
    assert!(text.contains(".TH coffer 1") && text.contains("config"), "{text:.400}");

    let dir = sb.path("man");
    sb.coffer(["man", "--out"]).arg(&dir).ok();
    for name in ["coffer.1", "coffer-config.1", "coffer-config-check.1", "coffer-completions.1"] {
        check_roff(&dir.join(name));
    }
    // man(1) renders it (`man -l`), where man-db is installed.
    if let Ok(out) = Command::new("man")
        .args(["-l".as_ref(), dir.join("coffer-config-show.1").as_os_str()])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
    {
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && shown.contains("secrets redacted"), "man -l: {shown}");
    }
}
