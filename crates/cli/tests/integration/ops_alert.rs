//! `coffer alert test TARGET`: a test alert delivered now to one target of the policy file,
//! against a real HTTP receiver and a real command.

use crate::Sandbox;
use coffer_testkit::http::{Answer, Receiver, refused_url};

/// A policy file: one files source (a file needs a job) and `alerts`.
fn policy(sb: &Sandbox, alerts: &str) -> std::path::PathBuf {
    let text = format!("[files.home]\npaths = [\"/srv\"]\nschedule = \"daily 02:00\"\n\n{alerts}");
    sb.file("coffer.toml", text.as_bytes())
}

#[test]
fn ops_alert_test_delivers_to_a_webhook_signed() {
    let sb = Sandbox::new();
    let r = Receiver::start(Answer::Status(200));
    let key = sb.file("hook.key", b"hook-s3cret\n");
    let cfg = policy(
        &sb,
        &format!("[alerts.webhook.hook]\nurl = \"{}/in\"\nsecret = {{ file = \"{}\" }}\n", r.url(), key.display()),
    );
    let out = sb.coffer(["--config"]).arg(&cfg).args(["alert", "test", "hook"]).ok().stdout_text();
    assert_eq!(out, "alert target hook (webhook): delivered a test alert\n");
    let got = r.wait_for(1, coffer_testkit::WAIT);
    assert_eq!(got.len(), 1);
    let e: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(e["kind"], "test");
    assert_eq!(e["severity"], "info");
    assert_eq!(e["version"], 1);
    assert_eq!(got[0].headers["x-coffer-event"], "test");
    assert!(got[0].headers["x-coffer-signature"].starts_with("sha256="));

    let doc = sb.coffer(["--config"]).arg(&cfg).args(["alert", "test", "hook", "--json"]).ok().json();
    assert_eq!(doc["delivered"], true);
    assert_eq!(doc["kind"], "webhook");
    assert_eq!(doc["target"], "hook");
    assert_eq!(r.wait_for(2, coffer_testkit::WAIT).len(), 2);
    assert_eq!(doc["id"], serde_json::from_slice::<serde_json::Value>(&r.requests()[1].body).unwrap()["id"]);
}

#[test]
fn ops_alert_test_fails_with_the_reason_and_no_secret() {
    let sb = Sandbox::new();
    let r = Receiver::start(Answer::Status(503));
    let cfg = policy(
        &sb,
        &format!(
            "[alerts.webhook.down]\nurl = \"{}/tok3n\"\n[alerts.webhook.err]\nurl = \"{}/tok3n\"\n[alerts.command.no]\ncommand = [\"/bin/false\"]\n",
            refused_url(),
            r.url()
        ),
    );
    let c = |t: &str| sb.coffer(["--config"]).arg(&cfg).args(["alert", "test", t]);
    let e = c("down").fails(1);
    assert!(e.contains("alert target down: not delivered") && e.contains("HTTP"), "{e}");
    assert!(!e.contains("tok3n") && !e.contains("127.0.0.1"), "the URL is not shown: {e}");
    let e = c("err").fails(1);
    assert!(e.contains("status 503"), "{e}");
    assert!(!e.contains("tok3n"), "{e}");
    let e = c("no").fails(1);
    assert!(e.contains("exited"), "{e}");
    let e = c("nope").fails(2);
    assert!(e.contains("no alert target named \"nope\""), "{e}");
}

#[test]
fn ops_alert_test_runs_a_command_and_pings_a_heartbeat() {
    let sb = Sandbox::new();
    let r = Receiver::start(Answer::Status(200));
    let out = sb.path("got.json");
    let cfg = policy(
        &sb,
        &format!(
            "[alerts.command.log]\ncommand = [\"/bin/sh\", \"-c\", \"cat > {}\"]\n[alerts.heartbeat.hc]\nurl = \"{}/ping/abc\"\n",
            out.display(),
            r.url()
        ),
    );
    sb.coffer(["--config"]).arg(&cfg).args(["alert", "test", "log"]).ok();
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(e["kind"], "test");
    let text = sb.coffer(["--config"]).arg(&cfg).args(["alert", "test", "hc"]).ok().stdout_text();
    assert!(text.contains("heartbeat") && text.contains("success ping"), "{text}");
    assert_eq!(r.wait_for(1, coffer_testkit::WAIT)[0].path, "/ping/abc");
}
