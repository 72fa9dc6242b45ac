//! The generated IAM policies (`coffer_store::iam`) enforced by moto with its auth mode on:
//! users for writer, reader and pruner get exactly the generated identity policies (through
//! moto's IAM API, with boto3 from moto's virtualenv), auth is switched on
//! (`POST /moto-api/reset-auth`), and then raw S3 requests with each user's keys — bypassing
//! `S3Store`'s own role check, so that IAM alone decides — show the writer cannot delete a
//! version (with or without the governance bypass), change the lock configuration or suspend
//! versioning; the pruner cannot put; the reader cannot write. `S3Store` itself works with
//! the same keys for what each role may do, so the policies are not simply too narrow.
//!
//! moto's IAM is not AWS's (`docs/iam.md`): it evaluates conditions without the request's
//! context (a conditional Allow acts as a Deny, so the policies are generated for the whole
//! bucket, where the listing statement has no `s3:prefix` condition), authorizes
//! `PutObjectLockConfiguration` as `s3:CreateBucket` and retention/legal-hold changes as
//! `s3:PutObject`, never checks `s3:BypassGovernanceRetention`, and ignores bucket policies.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRule, VersioningConfiguration,
};
use coffer_store::iam::{self, PolicyTarget};
use coffer_store::{
    Credentials, ObjectStore, Principal, PutOptions, Retention, RetentionMode, Role, S3Credentials, S3Options, S3Store,
    Secret,
};
use coffer_testkit::s3::{S3Server, ServerKind, venv_dir};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// Creates one IAM user per role with the generated policy and an access key, then turns
/// auth on. Returns each role's key.
fn create_users(server: &S3Server, target: &PolicyTarget, roles: &[Role]) -> BTreeMap<Role, Credentials> {
    const SCRIPT: &str = r#"
import json, sys, urllib.request, boto3
endpoint, docs = sys.argv[1], json.load(sys.stdin)
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
keys = {}
for role, policy in docs.items():
    user = "coffer-" + role
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="coffer-" + role, PolicyDocument=json.dumps(policy))
    k = iam.create_access_key(UserName=user)["AccessKey"]
    keys[role] = [k["AccessKeyId"], k["SecretAccessKey"]]
urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})).read()
print(json.dumps(keys))
"#;
    let docs: serde_json::Map<String, serde_json::Value> = roles
        .iter()
        .map(|&r| (r.as_str().to_owned(), serde_json::to_value(iam::identity_policy(target, r)).unwrap()))
        .collect();
    let mut child = Command::new(venv_dir().join("moto/bin/python"))
        .args(["-c", SCRIPT, &server.endpoint()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moto's python");
    child.stdin.take().unwrap().write_all(serde_json::Value::Object(docs).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "creating the IAM users failed: {}", String::from_utf8_lossy(&out.stderr));
    let keys: BTreeMap<String, (String, String)> = serde_json::from_slice(&out.stdout).expect("keys as JSON");
    keys.into_iter()
        .map(|(role, (ak, sk))| (role.parse().unwrap(), Credentials { access_key: ak, secret_key: Secret::new(sk) }))
        .collect()
}

fn store(server: &S3Server, bucket: &str, role: Role, creds: &Credentials) -> S3Store {
    S3Store::connect(&S3Options {
        location: server.location(bucket, ""),
        credentials: S3Credentials::Static(creds.clone()),
        principal: Principal { name: format!("iam-{role}"), role },
        multipart: coffer_store::s3::Multipart::default(),
    })
    .unwrap()
}

/// The S3 error code of a raw request that must fail.
#[track_caller]
fn refused<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>, what: &str) -> String {
    match r {
        Ok(v) => panic!("{what}: IAM allowed it ({v:?})"),
        Err(e) => e.code().unwrap_or("(no code)").to_owned(),
    }
}

#[test]
fn generated_iam_policies_are_enforced_by_moto() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-iam");
    let mut target = PolicyTarget::new(&bucket, "");
    target.principal_arn = "arn:aws:iam::123456789012:user/coffer-{role}".into();
    let keys = create_users(&server, &target, &[Role::Writer, Role::Reader, Role::Pruner]);
    // Auth is on: an unknown key is refused.
    let stranger = Credentials { access_key: "AKIANOBODY".into(), secret_key: Secret::new("x".into()) };
    let s = store(&server, &bucket, Role::Auditor, &stranger);
    assert_eq!(
        refused(s.block_on(s.client().list_objects_v2().bucket(&bucket).send()), "stranger"),
        "InvalidAccessKeyId"
    );

    // What each role may do works with its generated policy (through S3Store).
    let writer = store(&server, &bucket, Role::Writer, &keys[&Role::Writer]);
    let until = coffer_store::Clock::system().now().checked_add(jiff::SignedDuration::from_hours(24)).unwrap();
    let retention = Some(Retention { mode: RetentionMode::Governance, until });
    let v = writer
        .put("data/one", b"locked", &PutOptions { retention, legal_hold: false, create_only: false })
        .expect("writer puts");
    let reader = store(&server, &bucket, Role::Reader, &keys[&Role::Reader]);
    assert_eq!(reader.get("data/one", Some(&v.version)).expect("reader gets").data, b"locked");
    let pruner = store(&server, &bucket, Role::Pruner, &keys[&Role::Pruner]);
    assert_eq!(pruner.list_versions("", None, 100).expect("pruner lists").items.len(), 1);

    // What they may not, refused by IAM itself (raw requests, no S3Store check). The
    // version the writer tries to delete is unlocked, so only IAM can refuse.
    let free = writer.put("data/free", b"free", &PutOptions::default()).expect("writer puts");
    assert_eq!(free.retention, None);
    let (c, b, vid) = (writer.client(), bucket.as_str(), free.version.0.as_str());
    let del = c.delete_object().bucket(b).key("data/free").version_id(vid);
    assert_eq!(refused(writer.block_on(del.clone().send()), "writer deletes a version"), "AccessDenied");
    let bypass = del.bypass_governance_retention(true);
    assert_eq!(refused(writer.block_on(bypass.send()), "writer deletes with bypass"), "AccessDenied");
    let lock = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(ObjectLockRule::builder().build())
        .build();
    let put_lock = c.put_object_lock_configuration().bucket(b).object_lock_configuration(lock);
    assert_eq!(refused(writer.block_on(put_lock.send()), "writer changes the lock configuration"), "AccessDenied");
    let suspended = VersioningConfiguration::builder().status(BucketVersioningStatus::Suspended).build();
    let suspend = c.put_bucket_versioning().bucket(b).versioning_configuration(suspended);
    assert_eq!(refused(writer.block_on(suspend.send()), "writer suspends versioning"), "AccessDenied");

    let put = |s: &S3Store| {
        s.block_on(s.client().put_object().bucket(b).key("data/two").body(ByteStream::from_static(b"x")).send())
            .map_err(|e| e.code().unwrap_or("(no code)").to_owned())
    };
    assert_eq!(put(&pruner).expect_err("pruner puts"), "AccessDenied");
    assert_eq!(put(&reader).expect_err("reader puts"), "AccessDenied");
    let rc = reader.client();
    assert_eq!(
        refused(reader.block_on(rc.delete_object().bucket(b).key("data/one").send()), "reader deletes"),
        "AccessDenied"
    );
    assert_eq!(
        refused(
            reader.block_on(rc.delete_object().bucket(b).key("data/free").version_id(vid).send()),
            "reader deletes a version"
        ),
        "AccessDenied"
    );

    // Nothing was lost; and the unlocked version the writer could not delete, the pruner can.
    assert_eq!(reader.get("data/one", None).unwrap().data, b"locked");
    assert_eq!(reader.get("data/free", None).unwrap().data, b"free");
    pruner.delete_version("data/free", &free.version, false).expect("the pruner deletes an unlocked version");
    assert_eq!(pruner.list_versions("", None, 100).unwrap().items.len(), 1);
}
