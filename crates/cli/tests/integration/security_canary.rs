//! `coffer run REPO/canary` through the real binary: a local vault refuses every probe
//! (exit 0, the probes in the record); moto lets a compliance lock be shortened (exit 8, the
//! security exit code, naming the probe that succeeded).

use crate::Sandbox;
use crate::repo_util::Repo;
use coffer_store::Role;
use coffer_testkit::s3::{S3Server, ServerKind, test_credentials};

#[test]
fn security_canary_run_by_hand_on_a_local_vault_refuses_every_probe() {
    let repo = Repo::init();
    let text = format!(
        "[daemon]\nstate-dir = {:?}\n[repositories.main]\nlocation = {:?}\n",
        repo.sb.path("state").display().to_string(),
        repo.vault().display().to_string()
    );
    let config = repo.sb.file("coffer.toml", text.as_bytes());
    let rec = repo.sb.coffer(["--json", "--config"]).arg(&config).args(["run", "main/canary"]).ok().json();
    assert_eq!(rec["outcome"], "success", "{rec}");
    let d = &rec["details"];
    assert_eq!(d["succeeded"], "0", "{rec}");
    assert!(d["refused"].as_str().unwrap().parse::<u32>().unwrap() >= 9, "{rec}");
    assert!(d["probe_1"].as_str().unwrap().contains("refused"), "{rec}");
}

#[test]
fn security_canary_run_by_hand_on_moto_exits_8_naming_the_weakening() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("canary-cli");
    let sb = Sandbox::new();
    let c = test_credentials(ServerKind::Moto, Role::Writer);
    let writer = sb.file(
        "writer.toml",
        format!("access-key = {:?}\nsecret-key = {:?}\n", c.access_key, c.secret_key.expose()).as_bytes(),
    );
    let text = format!(
        "[daemon]\nstate-dir = {:?}\n[repositories.main]\nlocation = {:?}\n[repositories.main.credentials]\nwriter = {:?}\n",
        sb.path("state").display().to_string(),
        server.url(&bucket, ""),
        writer.display().to_string()
    );
    let config = sb.file("coffer.toml", text.as_bytes());
    // Each accepted probe is a security event (logged and said on stderr), then the error.
    let out = sb.coffer(["--config"]).arg(&config).args(["run", "main/canary"]).run();
    assert_eq!(out.code, Some(8), "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("coffer: error: job main/canary failed"), "{last}");
    assert!(out.stderr.contains("writer could shorten retention coffer-security/canary/"), "{}", out.stderr);
}
