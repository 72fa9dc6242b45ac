//! Security alerts end to end: the real daemon raises `alert-config-change` when a target is
//! removed from `coffer.toml` between two starts (delivered through the removed target too),
//! repeats it until `coffer alert ack` (another process) acknowledges it, then sends one
//! notice; `coffer alert list`, `coffer status` (exit 8, then 0) and `coffer ledger --kind
//! security` (the event and the acknowledgement, flushed by the daemon) show it.

use crate::daemon_util::Daemon;
use crate::repo_util::{PASSWORD, Repo};
use coffer_testkit::http::{Answer, Receiver};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `coffer daemon` on `config`, its log in `daemon-N.log`.
fn start(repo: &Repo, config: &Path, n: u32) -> Daemon {
    Daemon::start(repo, config, repo.sb.path(&format!("daemon-{n}.log")), &[], "coffer daemon starting")
}

fn events(r: &Receiver) -> Vec<Value> {
    r.requests().iter().map(|q| serde_json::from_slice(&q.body).unwrap()).collect()
}

fn write_config(repo: &Repo, targets: &[&Receiver]) -> PathBuf {
    let mut text = format!(
        "[daemon]\nstate-dir = {:?}\ntimezone = \"UTC\"\n\n[repositories.main]\nlocation = {:?}\npassword = {{ env = \"COFFER_PASSWORD\" }}\n\n[files.home]\nrepository = \"main\"\npaths = [{:?}]\nschedule = \"every 1h\"\n\n[alerts]\nsecurity-repeat-interval = \"1s\"\n",
        repo.sb.path("state").display().to_string(),
        repo.vault().display().to_string(),
        repo.sb.home().display().to_string(),
    );
    for (i, r) in targets.iter().enumerate() {
        text.push_str(&format!("[alerts.webhook.t{i}]\nurl = \"{}/hook{i}\"\n", r.url()));
    }
    repo.sb.file("coffer.toml", text.as_bytes())
}

#[test]
fn security_alerts_config_change_is_alerted_listed_acknowledged_and_in_the_ledger() {
    let repo = Repo::init();
    let (a, b) = (Receiver::start(Answer::Status(200)), Receiver::start(Answer::Status(200)));
    let cfg = write_config(&repo, &[&a, &b]);
    let c = |args: &[&str]| repo.sb.coffer(["--config"]).arg(&cfg).args(args).env("COFFER_PASSWORD", PASSWORD);

    // First start: the fingerprint is kept, nothing raised.
    let d = start(&repo, &cfg, 1);
    d.stop();
    assert!(events(&a).is_empty() && events(&b).is_empty());
    c(&["status"]).ok();

    // Target t1 removed: an alert-config-change, through the removed target too.
    write_config(&repo, &[&a]);
    let d = start(&repo, &cfg, 2);
    d.wait_for(30, "the removed target to hear of its removal", || !events(&b).is_empty());
    let got = events(&b);
    assert_eq!(got.len(), 1, "the removed target is told once: {got:?}");
    assert_eq!(got[0]["severity"], "security");
    assert_eq!(got[0]["details"]["security-kind"], "alert-config-change");
    assert!(got[0]["summary"].as_str().unwrap().contains("target t1 removed"), "{}", got[0]);
    let id = got[0]["details"]["event-id"].as_str().unwrap().to_owned();

    // Listed; status exits 8.
    let list = c(&["alert", "list", "--json"]).ok().json();
    assert_eq!(list["unacknowledged"], 1);
    assert_eq!(list["events"][0]["id"], id.as_str());
    assert_eq!(list["events"][0]["kind"], "alert-config-change");
    let e = c(&["status"]).fails(8);
    assert!(e.contains("1 security event(s) not acknowledged") && e.contains(&id), "{e}");

    // Repeated (every second) while not acknowledged.
    d.wait_for(30, "a repeat", || events(&a).iter().filter(|e| e["resolved"] == false).count() >= 2);

    // Acknowledged by another process, by a prefix of its id.
    let out = c(&["alert", "ack", &id[..8], "--by", "alice"]).ok().stdout_text();
    assert!(out.starts_with("acknowledged: ") && out.contains(&id), "{out}");
    d.wait_for(30, "the acknowledged notice", || events(&a).iter().any(|e| e["resolved"] == true));
    let notices: Vec<Value> = events(&a).into_iter().filter(|e| e["resolved"] == true).collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0]["details"]["acked-by"], "alice");
    assert_eq!(notices[0]["problem"], format!("security:{id}"));
    let after = events(&a).len();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(events(&a).len(), after, "no repeat after the acknowledgement");
    c(&["status"]).ok();
    assert_eq!(c(&["alert", "list", "--json"]).ok().json()["unacknowledged"], 0);
    assert_eq!(c(&["alert", "list", "--all", "--json"]).ok().json()["events"][0]["acked_by"], "alice");
    c(&["alert", "ack", "ffffffffffff"]).fails(2);

    // The ledger holds the event and its acknowledgement (flushed by the daemon).
    let ledger = || c(&["ledger", "--repository", "main", "--kind", "security", "--json"]).ok().json();
    d.wait_for(90, "the event and its acknowledgement in the ledger", || {
        let l = ledger();
        l["security"].as_array().is_some_and(|v| v.len() == 1)
            && l["security_acks"].as_array().is_some_and(|v| v.len() == 1)
    });
    let l = ledger();
    assert_eq!(l["security"][0]["id"], id.as_str(), "{l}");
    assert!(l["security"][0]["record"].as_str().is_some_and(|r| !r.is_empty()), "{l}");
    assert_eq!(l["security"][0]["kind"], "alert-config-change");
    assert_eq!(l["security_acks"][0]["event_id"], id.as_str());
    assert_eq!(l["security_acks"][0]["acked_by"], "alice");
    assert!(l.get("runs").is_none(), "--kind security lists no runs: {l}");
    d.stop();

    // A restart with the same configuration: nothing new.
    let before = (events(&a).len(), events(&b).len());
    let d = start(&repo, &cfg, 3);
    std::thread::sleep(Duration::from_secs(2));
    d.stop();
    assert_eq!((events(&a).len(), events(&b).len()), before);
    c(&["status"]).ok();
}
