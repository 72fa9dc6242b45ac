//! The repository flow over S3 through the `coffer` binary, on LocalStack started here:
//! `init`, `backup`, `restore` (byte-exact), `verify --read-data`, and a
//! second backup that reuses the stored data, with `--repo s3://BUCKET/PREFIX?endpoint=…`
//! and credentials from the standard AWS chain (environment).
//!
//! Fails, naming the command that installs it, when LocalStack is not installed
//! (`coffer_testkit::s3`).

use crate::repo_util::{PASSWORD, random_bytes, restored};
use crate::{Cmd, Sandbox};
use coffer_testkit::s3::{S3Server, ServerKind};
use std::ffi::OsStr;

/// A repository in a bucket of a running S3 server, driven through the `coffer` binary.
pub struct S3Repo<'a> {
    /// Home directory and source trees.
    pub sb: Sandbox,
    /// The server holding the bucket.
    pub server: &'a S3Server,
    /// `s3://BUCKET/PREFIX?endpoint=…&region=…`.
    pub url: String,
}

impl S3Repo<'_> {
    /// `coffer --repo URL ARGS…` (each command's default role) with the password and the
    /// writer's AWS credentials in the environment.
    pub fn c<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, args: I) -> Cmd {
        self.keys(coffer_store::Role::Writer, self.sb.coffer(["--repo", &self.url])).args(args)
    }

    /// As [`S3Repo::c`], with `--role ROLE` and that role's keys (one credential set per role).
    pub fn as_role<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&self, role: coffer_store::Role, args: I) -> Cmd {
        self.keys(role, self.sb.coffer(["--repo", &self.url, "--role", role.as_str()])).args(args)
    }

    fn keys(&self, role: coffer_store::Role, cmd: Cmd) -> Cmd {
        cmd.env("COFFER_PASSWORD", PASSWORD)
            .env("AWS_ACCESS_KEY_ID", format!("coffer-{role}"))
            .env("AWS_SECRET_ACCESS_KEY", format!("secret-of-{role}"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
    }
}

#[test]
fn repository_flow_over_s3_on_localstack() {
    let server = S3Server::start(ServerKind::LocalStack);
    let bucket = server.new_bucket("coffer-repo");
    let r = S3Repo { sb: Sandbox::new(), server: &server, url: server.url(&bucket, "hosts/one") };
    let src = r.sb.path("src");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("big.bin", random_bytes(3 << 20, 7)),
        ("empty", Vec::new()),
        ("dir/small.txt", b"hello s3".to_vec()),
        ("dir/deeper/copy.bin", random_bytes(3 << 20, 7)),
        ("dir/deeper/other.bin", random_bytes(100_000, 8)),
    ];
    for (rel, data) in &files {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    let init = r.c(["init", "--json"]).ok().json();
    assert_eq!(init["repository"], format!("s3://{bucket}/hosts/one/").as_str(), "{init}");
    let doc = r.c(["backup", "--json"]).arg(&src).ok().json();
    let id = doc["snapshot"].as_str().expect("snapshot id").to_owned();

    let target = r.sb.path("restore");
    let out = r.c(["restore", "--json", "latest", "--target"]).arg(&target).ok().json();
    assert_eq!(out["snapshot"], id.as_str());
    for (rel, data) in &files {
        let got = std::fs::read(restored(&target, &src).join(rel)).unwrap();
        assert!(got == *data, "{rel} restored from s3 differs ({} bytes, want {})", got.len(), data.len());
    }

    let verify = r.c(["verify", "--json", "--read-data"]).ok().json();
    assert_eq!(verify["problems"], serde_json::json!([]), "verify: {verify}");

    // A second backup of the same tree stores (almost) nothing new and is listed.
    r.c(["backup", "--json"]).arg(&src).ok();
    let snaps = r.c(["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{snaps}");

    // Every object the repository wrote is locked in the bucket.
    let auditor = r.server.store(&bucket, "hosts/one", coffer_store::Role::Auditor);
    let page = coffer_store::ObjectStore::list_versions(&auditor, "", None, 1000).unwrap();
    assert!(!page.items.is_empty());
    for v in &page.items {
        assert!(v.retention.is_some(), "{} version {} has no retention", v.key, v.version);
    }
}
