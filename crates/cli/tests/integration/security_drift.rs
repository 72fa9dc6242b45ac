//! `coffer security baseline show|accept`: the drift watch's baseline through the real
//! binary, on moto (raw S3 requests change the bucket) and on a local vault.

use crate::Sandbox;
use coffer_operations::State;
use coffer_store::{LocalVault, LockConfig, ObjectStore as _, Role};
use coffer_testkit::s3::{S3Server, ServerKind, test_credentials};
use serde_json::Value;
use std::path::PathBuf;

/// A policy file naming repository `main` at `location` (credentials per role given), and
/// its state directory.
fn policy(sb: &Sandbox, location: &str, roles: &[Role], kind: ServerKind) -> (PathBuf, PathBuf) {
    let state = sb.path("state");
    let mut text = format!(
        "[daemon]\nstate-dir = {:?}\n[repositories.main]\nlocation = {location:?}\n[repositories.main.credentials]\n",
        state.display().to_string()
    );
    for &role in roles {
        let c = test_credentials(kind, role);
        let file = sb.file(
            &format!("{role}.toml"),
            format!("access-key = {:?}\nsecret-key = {:?}\n", c.access_key, c.secret_key.expose()).as_bytes(),
        );
        text.push_str(&format!("{role} = {:?}\n", file.display().to_string()));
    }
    (sb.file("coffer.toml", text.as_bytes()), state)
}

fn differing(show: &Value) -> Vec<String> {
    show[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["differs"] == true)
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn security_drift_baseline_show_and_accept_on_moto() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("drift-cli");
    let sb = Sandbox::new();
    let (config, state) = policy(&sb, &server.url(&bucket, ""), &[Role::Writer, Role::Reader], ServerKind::Moto);
    let c = |args: &[&str]| sb.coffer(["--config"]).arg(&config).args(args);

    let e = c(&["security", "baseline", "show", "--repository", "main"]).fails(8);
    assert!(e.contains("differs from its baseline: main"), "{e}");
    let text = c(&["security", "baseline", "show"]).run().stdout_text();
    assert!(text.contains("baseline: none yet"), "{text}");

    let ev = c(&["--json", "security", "baseline", "accept", "--repository", "main"]).ok().json();
    assert_eq!(ev["kind"], "baseline-change");
    assert_eq!(ev["details"]["changed-fields"], "none");
    let show = c(&["--json", "security", "baseline", "show", "--repository", "main"]).ok().json();
    assert_eq!(differing(&show), Vec::<String>::new());
    assert_eq!(show[0]["baseline"]["reason"], "accepted");

    let admin = server.store(&bucket, "", Role::Admin);
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":"*","Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::{bucket}"}}]}}"#
    );
    admin.block_on(admin.client().put_bucket_policy().bucket(&bucket).policy(policy).send()).unwrap();
    let run = c(&["--json", "security", "baseline", "show", "--repository", "main"]).run();
    assert_eq!(run.code, Some(8), "{}", run.stderr);
    let show: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(differing(&show), ["bucket-policy"]);
    let text = c(&["security", "baseline", "show", "--repository", "main"]).run().stdout_text();
    assert!(text.contains("bucket-policy") && text.contains("DIFFERS") && text.contains("none →"), "{text}");

    let ev2 = c(&["--json", "security", "baseline", "accept", "--repository", "main"]).ok().json();
    assert_eq!(ev2["details"]["changed-fields"], "bucket-policy");
    c(&["security", "baseline", "show", "--repository", "main"]).ok();
    let st = State::open(&state).unwrap();
    let recorded = coffer_operations::security::record::list(&st, true, 100).unwrap();
    assert_eq!(recorded.len(), 2, "each accept is recorded: {recorded:?}");
    assert!(recorded.iter().all(|r| r.event.kind == coffer_operations::security::SecurityKind::BaselineChange));
    let keys = server.store(&bucket, "", Role::Reader).list_entries("coffer-security/baseline/", None, 10).unwrap();
    assert_eq!(keys.items.len(), 2, "two baseline objects");
}

#[test]
fn security_drift_baseline_show_on_a_local_vault() {
    let sb = Sandbox::with_vault();
    let (config, _state) = policy(&sb, &sb.vault().display().to_string(), &[], ServerKind::Moto);
    let c = |args: &[&str]| sb.coffer(["--config"]).arg(&config).args(args);
    c(&["security", "baseline", "accept", "--repository", "main"]).ok();
    c(&["security", "baseline", "show", "--repository", "main"]).ok();
    let vault = LocalVault::open(sb.vault()).unwrap();
    let admin = vault.login(&vault.read_credentials(Role::Admin).unwrap()).unwrap();
    let dr = coffer_store::DefaultRetention {
        mode: coffer_store::RetentionMode::Governance,
        period: std::time::Duration::from_secs(5 * 86_400),
    };
    admin.put_lock_config(&LockConfig { enabled: true, default_retention: Some(dr) }).unwrap();
    let run = c(&["--json", "security", "baseline", "show", "--repository", "main"]).run();
    assert_eq!(run.code, Some(8), "{}", run.stderr);
    let show: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(differing(&show), ["default-retention"]);
    let row = show[0]["fields"].as_array().unwrap().iter().find(|f| f["field"] == "default-retention").unwrap();
    assert_eq!(row["current"], "governance 5d");
}
