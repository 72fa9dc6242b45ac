//! `coffer vault …` on an S3 bucket through the binary (LocalStack): `--vault s3://…`, or
//! the repository's `--repo s3://…`, reaches the same objects as the repository commands;
//! put, get, versions, retention, legal-hold, rm and config map to S3 calls, each role is
//! held to its rights locally, and `audit-log`, which S3 has no equivalent of in the bucket,
//! is refused with a pointer to CloudTrail.

use crate::repo_util::PASSWORD;
use crate::{Cmd, Sandbox};
use coffer_store::{ObjectStore as _, Role, VersionId};
use coffer_testkit::s3::{S3Server, ServerKind};
use std::ffi::OsStr;

/// `coffer --vault URL --role ROLE ARGS…` with that role's keys in the environment.
fn v<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(sb: &Sandbox, url: &str, role: Role, args: I) -> Cmd {
    sb.coffer(["--vault", url, "--role", role.as_str()])
        .env("AWS_ACCESS_KEY_ID", format!("coffer-{role}"))
        .env("AWS_SECRET_ACCESS_KEY", format!("secret-of-{role}"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(args)
}

#[test]
fn vault_commands_over_s3_on_localstack() {
    let server = S3Server::start(ServerKind::LocalStack);
    let bucket = server.new_bucket("coffer-vault");
    let sb = Sandbox::new();
    let url = server.url(&bucket, "objs");
    let until =
        (coffer_store::Clock::system().now() + jiff::SignedDuration::from_hours(2)).round(jiff::Unit::Second).unwrap();
    let later = until + jiff::SignedDuration::from_hours(1);

    // put (writer, locked), get, versions: the key is relative to the prefix.
    let file = sb.file("data", b"hello from the vault");
    let put = v(&sb, &url, Role::Writer, ["vault", "put", "--json", "--mode", "governance", "--retain-until"])
        .arg(until.to_string())
        .args(["k/one"])
        .arg(&file)
        .ok()
        .json();
    let version = put["version"].as_str().expect("version").to_owned();
    let got = v(&sb, &url, Role::Reader, ["vault", "get", "k/one"]).ok();
    assert_eq!(got.stdout, b"hello from the vault");
    let raw = server.store(&bucket, "", Role::Auditor).head("objs/k/one", None).expect("stored under the prefix");
    assert_eq!(raw.version.0, version);

    let list = v(&sb, &url, Role::Auditor, ["vault", "versions", "--json"]).ok().json();
    let items = list["versions"].as_array().expect("versions");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["key"], "k/one");
    assert_eq!(items[0]["retention"]["mode"], "governance", "{list}");
    let text = v(&sb, &url, Role::Auditor, ["vault", "versions"]).ok().stdout_text();
    assert!(text.contains("k/one") && text.contains(&version) && text.contains("governance"), "{text}");

    // retention: extended by the writer; read back from the server.
    let doc = v(&sb, &url, Role::Writer, ["vault", "retention", "k/one", "--json", "--version", &version, "--until"])
        .arg(later.to_string())
        .ok()
        .json();
    assert_eq!(doc["retention"]["mode"], "governance", "{doc}");
    let r = server.store(&bucket, "objs", Role::Auditor).head("k/one", Some(&VersionId(version.clone()))).unwrap();
    assert_eq!(r.retention.map(|r| r.until), Some(later));

    // legal hold: on by the writer, off only by the admin.
    v(&sb, &url, Role::Writer, ["vault", "legal-hold", "k/one", "--version", &version, "on"]).ok();
    let held = v(&sb, &url, Role::Auditor, ["vault", "versions", "--json"]).ok().json();
    assert_eq!(held["versions"][0]["legal_hold"], true, "{held}");
    let err = v(&sb, &url, Role::Writer, ["vault", "legal-hold", "k/one", "--version", &version, "off"]).fails(3);
    assert!(err.contains("legal-hold-off"), "{err}");
    v(&sb, &url, Role::Admin, ["vault", "legal-hold", "k/one", "--version", &version, "off"]).ok();

    // rm: a delete marker, the admin's (the writer may not hide anything); removing the
    // locked version is refused (the store's lock).
    let err = v(&sb, &url, Role::Writer, ["vault", "rm", "k/one"]).fails(3);
    assert!(err.contains("may not delete"), "{err}");
    let rm = v(&sb, &url, Role::Admin, ["vault", "rm", "k/one", "--json"]).ok().json();
    assert_eq!(rm["delete_marker"], true, "{rm}");
    v(&sb, &url, Role::Reader, ["vault", "get", "k/one"]).fails(5);
    v(&sb, &url, Role::Pruner, ["vault", "rm", "k/one", "--version", &version]).fails(4);
    let all = v(&sb, &url, Role::Auditor, ["vault", "versions", "--json"]).ok().json();
    assert_eq!(all["versions"].as_array().map(Vec::len), Some(2), "{all}");

    // config: the bucket's lock configuration and versioning; the admin sets a default.
    let cfg = v(&sb, &url, Role::Auditor, ["vault", "config", "--json"]).ok().json();
    assert_eq!(cfg["vault"], format!("s3://{bucket}/objs/").as_str(), "{cfg}");
    assert_eq!(cfg["object_lock"]["enabled"], true, "{cfg}");
    assert_eq!(cfg["versioning"], "enabled", "{cfg}");
    let set = v(&sb, &url, Role::Admin, ["vault", "config", "--json", "--default-retention", "3d"]).ok().json();
    assert_eq!(set["object_lock"]["default_retention"]["period"], "3d", "{set}");
    v(&sb, &url, Role::Writer, ["vault", "config", "--default-retention", "3d"]).fails(3);

    // audit-log: no S3 equivalent in the bucket, refused with a pointer.
    let err = v(&sb, &url, Role::Auditor, ["vault", "audit-log"]).fails(2);
    assert!(err.contains("S3 keeps no audit log") && err.contains("CloudTrail"), "{err}");

    // The repository URL (`--repo`, no `--vault`) inspects the repository's objects.
    let repo_url = server.url(&bucket, "repo");
    let with_keys = |role: Role, cmd: Cmd| {
        cmd.env("COFFER_PASSWORD", PASSWORD)
            .env("AWS_ACCESS_KEY_ID", format!("coffer-{role}"))
            .env("AWS_SECRET_ACCESS_KEY", format!("secret-of-{role}"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
    };
    with_keys(Role::Writer, sb.coffer(["--repo", &repo_url, "init"])).ok();
    let listed =
        with_keys(Role::Auditor, sb.coffer(["--repo", &repo_url, "--role", "auditor", "vault", "versions", "--json"]))
            .ok()
            .json();
    let keys: Vec<&str> =
        listed["versions"].as_array().unwrap().iter().map(|v| v["key"].as_str().unwrap_or_default()).collect();
    assert!(!keys.is_empty() && keys.iter().all(|k| !k.starts_with("repo/") && !k.starts_with("k/")), "{keys:?}");
}
