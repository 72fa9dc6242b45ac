//! The audit-log watch end to end: a real daemon (`coffer daemon`) on a local vault with
//! `poll-interval = "1s"`, a real webhook receiver and a real SMTP server; the attacks are
//! made with the real CLI (`coffer --role R vault …`).

use crate::daemon_util::Daemon;
use crate::repo_util::{DAY, Repo};
use coffer_testkit::http::{Answer, Receiver};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `coffer daemon` on `config`, its log in `daemon-N.log`.
fn start(repo: &Repo, config: &Path, n: usize) -> Daemon {
    start_at(repo, config, n, 0)
}

/// Started with its clock moved `offset` seconds (`COFFER_TEST_CLOCK_OFFSET`, as every
/// command of the test that runs at that time).
fn start_at(repo: &Repo, config: &Path, n: usize, offset: i64) -> Daemon {
    let log = repo.sb.path(&format!("daemon-{n}.log"));
    Daemon::start(repo, config, log, &[("COFFER_TEST_CLOCK_OFFSET", offset.to_string())], "security watch started")
}

/// Polls `cond` for up to `secs`, or [`coffer_testkit::WAIT`] if longer (the deadline only
/// catches a watch that never gets there; a loaded machine stretches every step).
#[track_caller]
fn wait(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs).max(coffer_testkit::WAIT);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The policy: repository `main` on the sandbox's vault, watched every second, alerts to
/// the webhook (and the SMTP server when given), and `body`.
fn policy(repo: &Repo, hook: &Receiver, smtp: Option<u16>, body: &str) -> PathBuf {
    let email = smtp.map_or(String::new(), |port| {
        format!(
            "[alerts.email.oncall]\nserver = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"coffer@example.org\"\nto = [\"oncall@example.org\"]\n\n"
        )
    });
    let text = format!(
        "[daemon]\nstate-dir = {:?}\nshutdown-grace = \"20s\"\n\n[repositories.main]\nlocation = {:?}\n\n\
         [repositories.main.security]\npoll-interval = \"1s\"\n\n[repositories.main.security.canary]\nenabled = false\n\n\
         [alerts.webhook.hook]\nurl = \"{}\"\n\n{email}{body}",
        repo.sb.path("state").display().to_string(),
        repo.vault().display().to_string(),
        hook.url(),
    );
    repo.sb.file("coffer.toml", text.as_bytes())
}

/// The security alerts the webhook received, as (principal, action, security kind).
fn security(hook: &Receiver) -> Vec<(String, String, String, Value)> {
    hook.requests()
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter(|a| a["kind"] == "security" && a["details"]["layer"] == "audit-log")
        .map(|a| {
            let d = &a["details"];
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            (s("principal"), s("action"), s("security-kind"), a.clone())
        })
        .collect()
}

#[test]
fn security_watch_attack_matrix_is_alerted_exactly_once_with_the_principal() {
    let repo = Repo::init();
    let hook = Receiver::start(Answer::Status(200));
    let smtp = coffer_testkit::smtp::SmtpSink::start();
    let config = policy(&repo, &hook, Some(smtp.port()), "");
    // A locked object and a governance one to attack.
    let file = repo.sb.file("k.txt", b"precious\n");
    let v = |out: String| out.trim().rsplit(' ').next().unwrap().to_owned();
    let put = |key: &str, mode: &str| {
        v(repo
            .c(["--role", "writer", "vault", "put", key])
            .arg(&file)
            .args(["--retain", "30d", "--mode", mode])
            .ok()
            .stdout_text())
    };
    let (vk, vg) = (put("attack/k", "compliance"), put("attack/g", "governance"));
    let d = start(&repo, &config, 0);
    // Let it read the history (init, backups' puts: nothing to raise).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(security(&hook).len(), 0, "normal history raises nothing: {:?}", security(&hook));
    let soon = "2026-01-01T00:00:00Z";
    let role = |r: &str| repo.c(["--role", r, "vault"]);
    // (role, args, refused?, expected action, expected kind)
    let attacks: Vec<(&str, Vec<&str>, bool, &str, &str)> = vec![
        ("pruner", vec!["rm", "attack/k", "--version", &vk], true, "delete-version", "destructive-denied"),
        (
            "admin",
            vec!["rm", "attack/g", "--version", &vg, "--bypass-governance"],
            true,
            "delete-version",
            "destructive-denied",
        ),
        ("writer", vec!["rm", "attack/k"], true, "delete", "destructive-denied"),
        ("reader", vec!["rm", "attack/k"], true, "delete", "destructive-denied"),
        (
            "writer",
            vec!["retention", "attack/k", "--version", &vk, "--until", soon],
            true,
            "put-retention",
            "destructive-denied",
        ),
        (
            "admin",
            vec!["retention", "attack/k", "--version", &vk, "--until", soon, "--bypass-governance"],
            true,
            "put-retention",
            "destructive-denied",
        ),
        (
            "reader",
            vec!["legal-hold", "attack/k", "--version", &vk, "off"],
            true,
            "legal-hold-off",
            "destructive-denied",
        ),
        ("writer", vec!["config", "--default-retention", "1d"], true, "put-lock-config", "lock-config-change"),
        ("admin", vec!["config", "--default-retention", "40d"], false, "put-lock-config", "lock-config-change"),
        (
            "admin",
            vec!["legal-hold", "attack/k", "--version", &vk, "off"],
            false,
            "legal-hold-off",
            "weakening-allowed",
        ),
        ("admin", vec!["rm", "attack/g"], false, "delete", "weakening-allowed"),
    ];
    for (i, (r, args, refused, action, kind)) in attacks.iter().enumerate() {
        let out = role(r).args(args).run();
        assert_eq!(out.code != Some(0), *refused, "{r} {args:?}: {}", out.stderr);
        wait(30, &format!("the alert of {r} {args:?}"), || security(&hook).len() > i);
        let got = security(&hook);
        assert_eq!(got.len(), i + 1, "exactly one alert per attempt: {got:#?}");
        let (p, a, k, alert) = &got[i];
        assert_eq!((p.as_str(), a.as_str(), k.as_str()), (*r, *action, *kind), "{alert}");
        assert_eq!(alert["details"]["role"], *r);
        assert_eq!(alert["severity"], "security");
        assert_eq!(alert["details"]["outcome"], if *refused { "denied" } else { "allowed" });
    }
    // Every alert reaches the e-mail too.
    let mails = smtp.wait_for(attacks.len(), coffer_testkit::WAIT);
    assert!(mails.len() >= attacks.len(), "{} e-mails", mails.len());
    assert!(mails.iter().any(|m| m.contains("pruner")), "the principal is in the e-mail");
    d.stop();
    // A restart re-reads nothing.
    let d = start(&repo, &config, 1);
    std::thread::sleep(Duration::from_secs(4));
    let got = security(&hook);
    assert_eq!(got.len(), attacks.len(), "no alert repeated after a restart: {got:#?}");
    // The drift watch (another layer, at the start of each watch run) sees the admin's new
    // default retention once: a second, independent witness of the one allowed change.
    let drift = || {
        hook.requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|a| a["kind"] == "security" && a["details"]["layer"] == "drift")
            .collect::<Vec<_>>()
    };
    wait(30, "the drift alert", || !drift().is_empty());
    d.stop();
    let drift = drift();
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0]["details"]["field"], "default-retention");
    assert_eq!(drift[0]["details"]["new"], "compliance 40d");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock (COFFER_TEST_CLOCK_OFFSET): needs a debug build")]
fn security_watch_a_day_of_normal_work_raises_no_alert() {
    // Two days compressed: backups locked for one day, verified; then, two days later, more
    // backups (reusing packs: their locks extended), the prune of the expired versions and
    // a verify. Every process, the daemon included, runs at the same clock offset, so time
    // only moves forward for the vault, as on a host whose days really pass: the clock check
    // must stay silent, and so must everything else.
    let repo = Repo::init();
    let hook = Receiver::start(Answer::Status(200));
    let src = repo.sb.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"day one\n").unwrap();
    let config = policy(&repo, &hook, None, "");
    let d = start_at(&repo, &config, 0, 0);
    for i in 0..3 {
        std::fs::write(src.join(format!("f{i}")), format!("change {i}\n")).unwrap();
        repo.backup_at(0, &[&src], &["--retain", "1d"]);
    }
    repo.verify_at(0, false);
    // A version locked for one day under a name the prune walks: the expired version the
    // prune removes two days later (the backups' own data stays locked by the later ones).
    let f = repo.sb.file("short.bin", b"short-lived\n");
    repo.c(["--role", "writer", "vault", "put", "data/ff/short-lived"]).arg(&f).args(["--retain", "1d"]).ok();
    std::thread::sleep(Duration::from_secs(3));
    d.stop();
    let later = 2 * DAY;
    let d = start_at(&repo, &config, 1, later);
    std::fs::write(src.join("g"), b"day three\n").unwrap();
    repo.backup_at(later, &[&src], &["--retain", "1d"]);
    let pruned = repo.at(later, ["--role", "pruner", "prune", "--json"]).ok().json();
    assert!(pruned["versions_removed"].as_u64().unwrap() >= 1, "the expired version was pruned: {pruned}");
    repo.verify_at(later, false);
    repo.at(later, ["snapshots"]).ok();
    // The watch has read the log (on a loaded machine, maybe later than the few seconds
    // given to any alert to arrive), and raised nothing.
    std::thread::sleep(Duration::from_secs(4));
    wait(30, "the watch to read the log", || d.log().contains("audit log read"));
    assert_eq!(security(&hook), vec![], "normal work raises no security alert");
    d.stop();
}
