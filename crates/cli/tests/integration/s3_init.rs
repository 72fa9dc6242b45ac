//! `coffer vault init s3://…` on LocalStack through the binary: creates an Object Lock bucket
//! with versioning and the default retention asked for, accepts an existing bucket that meets
//! the policy, and refuses, with one line, one that does not. And `coffer iam policies`
//! prints exactly what `coffer_store::iam` generates.

use crate::{Cmd, Sandbox};
use coffer_store::iam::{self, PolicyTarget};
use coffer_store::{ObjectStore as _, Role};
use coffer_testkit::s3::{S3Server, ServerKind};
use std::ffi::OsStr;

fn c<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(sb: &Sandbox, args: I) -> Cmd {
    sb.coffer(["vault", "init"])
        .env("AWS_ACCESS_KEY_ID", "coffer-admin")
        .env("AWS_SECRET_ACCESS_KEY", "secret-of-admin")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(args)
}

#[test]
fn vault_init_creates_and_checks_an_s3_bucket_on_localstack() {
    let server = S3Server::start(ServerKind::LocalStack);
    let sb = Sandbox::new();
    let url = server.url("coffer-init-new", "");

    let doc = c(&sb, [url.as_str(), "--default-retention", "30d", "--mode", "governance", "--json"]).ok().json();
    assert_eq!(doc["created"], true, "{doc}");
    assert_eq!(doc["bucket"], "coffer-init-new");
    assert_eq!(doc["object_lock"], true);
    assert_eq!(doc["versioning"], "enabled");
    assert_eq!(doc["default_retention"]["mode"], "governance", "{doc}");
    assert_eq!(doc["default_retention"]["period"], "30d", "{doc}");
    // What the server really holds.
    let auditor = server.store("coffer-init-new", "", Role::Auditor);
    let cfg = auditor.lock_config().unwrap();
    assert!(cfg.enabled);
    assert_eq!(cfg.default_retention.map(|d| d.period.as_secs()), Some(30 * 86_400));
    assert_eq!(auditor.versioning().unwrap(), coffer_store::Versioning::Enabled);

    // Again, with the same policy, or a weaker one, or none: accepted, nothing created.
    for extra in [
        &["--default-retention", "30d", "--mode", "governance"][..],
        &["--default-retention", "7d", "--mode", "governance"],
        &[],
    ] {
        let doc = c(&sb, [url.as_str(), "--json"]).args(extra).ok().json();
        assert_eq!(doc["created"], false, "{extra:?}: {doc}");
    }
    let text = c(&sb, [url.as_str()]).ok().stdout_text();
    assert!(text.contains("meets the policy") && text.contains("governance 30d"), "{text}");

    // A longer period or another mode than the bucket has: refused, one line, exit 1.
    let err = c(&sb, [url.as_str(), "--default-retention", "60d", "--mode", "governance"]).fails(1);
    assert!(
        err.contains("bucket coffer-init-new does not meet the policy: its default retention is governance 30d, wanted governance 60d"),
        "{err}"
    );
    let err = c(&sb, [url.as_str(), "--default-retention", "30d"]).fails(1);
    assert!(err.contains("wanted compliance 30d"), "{err}");

    // A bucket without Object Lock or versioning: refused.
    let admin = server.store("coffer-init-plain", "", Role::Admin);
    admin.block_on(admin.client().create_bucket().bucket("coffer-init-plain").send()).expect("create a plain bucket");
    let err = c(&sb, [server.url("coffer-init-plain", "").as_str()]).fails(1);
    assert!(err.contains("bucket coffer-init-plain does not have versioning enabled"), "{err}");

    // Other roles cannot create a bucket.
    let err = c(&sb, [server.url("coffer-init-writer", "").as_str(), "--role", "writer"]).fails(3);
    assert!(err.contains("put-lock-config"), "{err}");

    // A bucket created by init serves a repository.
    let repo = format!("s3://coffer-init-new/host?endpoint={}&region=us-east-1", server.endpoint());
    sb.coffer(["--repo", &repo, "init", "--json"])
        .env("COFFER_PASSWORD", "pw")
        .env("AWS_ACCESS_KEY_ID", "coffer-writer")
        .env("AWS_SECRET_ACCESS_KEY", "secret-of-writer")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .ok();
}

#[test]
fn iam_policies_prints_the_generated_documents() {
    let sb = Sandbox::new();
    let doc = sb
        .coffer(["iam", "policies", "--bucket", "my-backups", "--prefix", "hosts", "--json"])
        .args(["--principal-arn", "arn:aws:iam::123456789012:user/coffer-{role}"])
        .ok()
        .json();
    let mut target = PolicyTarget::new("my-backups", "hosts");
    target.principal_arn = "arn:aws:iam::123456789012:user/coffer-{role}".into();
    assert_eq!(doc["prefix"], "hosts/");
    for role in Role::ALL {
        let want = serde_json::to_value(iam::identity_policy(&target, role)).unwrap();
        assert_eq!(doc["identity_policies"][role.as_str()], want, "{role}");
    }
    assert_eq!(doc["bucket_policy"], serde_json::to_value(iam::bucket_policy(&target)).unwrap());
    assert_eq!(doc["principal_arns"]["pruner"], "arn:aws:iam::123456789012:user/coffer-pruner");
    let text = sb.coffer(["iam", "policies"]).ok().stdout_text();
    assert!(text.contains("# identity policy of writer") && text.contains("# bucket policy of BUCKET"), "{text}");
    assert!(text.contains("\"s3:DeleteObjectVersion\""), "{text}");
}
