//! The drift watch against real stores: moto and LocalStack (raw S3 requests change the
//! bucket behind Coffer's back) and a local vault. Each check is `drift::check` as the
//! watch loop calls it; each test counts the events exactly.

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, DefaultRetention, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
    ObjectLockRule, PublicAccessBlockConfiguration, VersioningConfiguration,
};
use coffer_operations::config::Config;
use coffer_operations::security::drift;
use coffer_operations::security::{SecurityEvent, SecurityKind};
use coffer_operations::state::State;
use coffer_store::{Clock, Credentials, LocalVault, LockConfig, ObjectStore, PutOptions, Role, S3Store, VaultOptions};
use coffer_testkit::s3::{S3Server, ServerKind, test_credentials, venv_dir};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"drift","Effect":"Deny","Principal":"*","Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::BUCKET"}]}"#;

struct Fixture {
    dir: tempfile::TempDir,
    state: State,
    config: Config,
}

impl Fixture {
    /// Repository `main` at `location`, with a credentials file per role given.
    fn new(location: &str, creds: &[(Role, Credentials)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!("[repositories.main]\nlocation = {location:?}\n[repositories.main.credentials]\n");
        for (role, c) in creds {
            let file = dir.path().join(format!("{role}.toml"));
            std::fs::write(
                &file,
                format!("access-key = {:?}\nsecret-key = {:?}\n", c.access_key, c.secret_key.expose()),
            )
            .unwrap();
            text.push_str(&format!("{role} = {:?}\n", file.display().to_string()));
        }
        let config = Config::parse(&text, Path::new("coffer.toml")).unwrap();
        let state = State::open(&dir.path().join("state")).unwrap();
        Self { dir, state, config }
    }

    fn check(&self) -> Vec<SecurityEvent> {
        drift::check(&self.config, "main", &self.state, &Clock::system())
    }
}

fn creds(kind: ServerKind, roles: &[Role]) -> Vec<(Role, Credentials)> {
    roles.iter().map(|&r| (r, test_credentials(kind, r))).collect()
}

/// The single drift event of `field` among `events`, with its old and new values.
#[track_caller]
fn drift_of<'a>(events: &'a [SecurityEvent], field: &str) -> &'a SecurityEvent {
    let found: Vec<&SecurityEvent> = events
        .iter()
        .filter(|e| e.kind == SecurityKind::Drift && e.details.get("field").map(String::as_str) == Some(field))
        .collect();
    assert_eq!(found.len(), 1, "exactly one drift event for {field}: {events:#?}");
    found[0]
}

fn fields(events: &[SecurityEvent]) -> Vec<String> {
    let mut f: Vec<String> =
        events.iter().map(|e| format!("{}:{}", e.kind, e.details.get("field").cloned().unwrap_or_default())).collect();
    f.sort();
    f
}

fn admin(server: &S3Server, bucket: &str) -> S3Store {
    server.store(bucket, "", Role::Admin)
}

fn put_policy(s: &S3Store, bucket: &str) {
    let c = s.client();
    s.block_on(c.put_bucket_policy().bucket(bucket).policy(POLICY.replace("BUCKET", bucket)).send()).unwrap();
}

fn put_lifecycle(s: &S3Store, bucket: &str) {
    let rule = LifecycleRule::builder()
        .id("drift")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
        .expiration(LifecycleExpiration::builder().days(3).build())
        .build()
        .unwrap();
    let cfg = BucketLifecycleConfiguration::builder().rules(rule).build().unwrap();
    let c = s.client();
    s.block_on(c.put_bucket_lifecycle_configuration().bucket(bucket).lifecycle_configuration(cfg).send()).unwrap();
}

fn put_public_access_block(s: &S3Store, bucket: &str) {
    let cfg = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(false)
        .restrict_public_buckets(false)
        .build();
    let c = s.client();
    s.block_on(c.put_public_access_block().bucket(bucket).public_access_block_configuration(cfg).send()).unwrap();
}

#[test]
fn security_drift_moto_each_changed_field_is_one_drift_event() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("drift");
    let f = Fixture::new(&server.url(&bucket, "repo/"), &creds(ServerKind::Moto, &[Role::Writer, Role::Reader]));
    assert_eq!(f.check(), vec![], "the first check establishes the baseline");
    let reader = server.store(&bucket, "repo/", Role::Reader);
    let keys = reader.list_entries(drift::BASELINE_PREFIX, None, 100).unwrap().items;
    assert_eq!(keys.len(), 1, "one baseline object: {keys:?}");
    let b = drift::Baseline::parse(&reader.get(&keys[0].key, None).unwrap().data).unwrap();
    assert_eq!(b.fields["bucket-policy"], "none");
    assert_eq!(b.fields["versioning"], "enabled", "moto's reply is read from its raw XML");
    assert_eq!(b.fields["public-access-block"], "none");
    assert_eq!(b.fields["ownership-controls"], "none");
    assert_eq!(b.fields["lifecycle"], "none");
    assert_eq!(b.fields["replication"], "none");
    assert_eq!(b.fields["object-lock"], "enabled");
    assert!(b.unreadable.is_empty(), "{:?}", b.unreadable);
    assert_eq!(f.check(), vec![], "an unchanged store");

    let a = admin(&server, &bucket);
    put_policy(&a, &bucket);
    put_lifecycle(&a, &bucket);
    put_public_access_block(&a, &bucket);
    let suspended = VersioningConfiguration::builder().status(BucketVersioningStatus::Suspended).build();
    a.block_on(a.client().put_bucket_versioning().bucket(&bucket).versioning_configuration(suspended).send()).unwrap();

    let events = f.check();
    assert_eq!(
        fields(&events),
        ["drift:bucket-policy", "drift:lifecycle", "drift:public-access-block", "drift:versioning"],
        "{events:#?}"
    );
    let p = drift_of(&events, "bucket-policy");
    assert_eq!(p.details["old"], "none");
    assert!(p.details["new"].contains("\"Sid\":\"drift\""), "{:?}", p.details);
    let v = drift_of(&events, "versioning");
    assert_eq!((v.details["old"].as_str(), v.details["new"].as_str()), ("enabled", "suspended"));
    let pab = drift_of(&events, "public-access-block");
    assert_eq!(pab.details["old"], "none");
    assert_eq!(
        pab.details["new"],
        "block-public-acls=true ignore-public-acls=true block-public-policy=false restrict-public-buckets=false"
    );
    let l = drift_of(&events, "lifecycle");
    assert!(l.details["new"].contains("\"expiration\":{\"days\":3}"), "{:?}", l.details);
    assert!(events.iter().all(|e| e.repository.as_deref() == Some("main") && e.layer == "drift"));
    assert_eq!(f.check(), vec![], "a drift is reported once");

    // A further change of a drifted field is a new event; a return to the baseline is not.
    a.block_on(a.client().delete_bucket_policy().bucket(&bucket).send()).unwrap();
    let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    a.block_on(a.client().put_bucket_versioning().bucket(&bucket).versioning_configuration(enabled).send()).unwrap();
    let cfg = PublicAccessBlockConfiguration::builder()
        .block_public_acls(false)
        .ignore_public_acls(false)
        .block_public_policy(false)
        .restrict_public_buckets(false)
        .build();
    a.block_on(a.client().put_public_access_block().bucket(&bucket).public_access_block_configuration(cfg).send())
        .unwrap();
    let events = f.check();
    assert_eq!(fields(&events), ["drift:public-access-block"], "{events:#?}");
    // The policy is back: a new policy is reported again.
    put_policy(&a, &bucket);
    assert_eq!(fields(&f.check()), ["drift:bucket-policy"]);
}

#[test]
fn security_drift_localstack_each_changed_field_is_one_drift_event() {
    let server = S3Server::start(ServerKind::LocalStack);
    let bucket = server.new_bucket("drift");
    let f = Fixture::new(&server.url(&bucket, ""), &creds(ServerKind::LocalStack, &[Role::Writer, Role::Reader]));
    assert_eq!(f.check(), vec![]);
    let reader = server.store(&bucket, "", Role::Reader);
    let keys = reader.list_entries(drift::BASELINE_PREFIX, None, 100).unwrap().items;
    let b = drift::Baseline::parse(&reader.get(&keys[0].key, None).unwrap().data).unwrap();
    // LocalStack gives a new bucket AWS's defaults since 2023.
    assert_eq!(
        b.fields["public-access-block"],
        "block-public-acls=true ignore-public-acls=true block-public-policy=true restrict-public-buckets=true"
    );
    assert_eq!(b.fields["ownership-controls"], "BucketOwnerEnforced");
    assert_eq!(b.fields["default-retention"], "none");
    assert_eq!(b.fields["versioning"], "enabled");
    assert_eq!(f.check(), vec![]);

    let a = admin(&server, &bucket);
    put_policy(&a, &bucket);
    put_lifecycle(&a, &bucket);
    put_public_access_block(&a, &bucket);
    let dr = DefaultRetention::builder().mode(ObjectLockRetentionMode::Governance).days(2).build();
    let lock = ObjectLockConfiguration::builder()
        .object_lock_enabled(ObjectLockEnabled::Enabled)
        .rule(ObjectLockRule::builder().default_retention(dr).build())
        .build();
    a.block_on(a.client().put_object_lock_configuration().bucket(&bucket).object_lock_configuration(lock).send())
        .unwrap();
    let events = f.check();
    assert_eq!(
        fields(&events),
        ["drift:bucket-policy", "drift:default-retention", "drift:lifecycle", "drift:public-access-block"],
        "{events:#?}"
    );
    let r = drift_of(&events, "default-retention");
    assert_eq!((r.details["old"].as_str(), r.details["new"].as_str()), ("none", "governance 2d"));
    let pab = drift_of(&events, "public-access-block");
    assert!(pab.details["old"].ends_with("restrict-public-buckets=true"));
    assert!(pab.details["new"].ends_with("restrict-public-buckets=false"));
    assert_eq!(f.check(), vec![]);
}

/// Creates IAM users on moto (`name` → policy document), then turns auth on.
fn moto_users(server: &S3Server, users: &[(&str, serde_json::Value)]) -> Vec<Credentials> {
    const SCRIPT: &str = r#"
import json, sys, urllib.request, boto3
endpoint, docs = sys.argv[1], json.load(sys.stdin)
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
keys = []
for user, policy in docs:
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(policy))
    k = iam.create_access_key(UserName=user)["AccessKey"]
    keys.append([k["AccessKeyId"], k["SecretAccessKey"]])
urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})).read()
print(json.dumps(keys))
"#;
    let mut child = Command::new(venv_dir().join("moto/bin/python"))
        .args(["-c", SCRIPT, &server.endpoint()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moto's python (bash .ci/s3-venv.sh installs it)");
    let docs: Vec<(String, serde_json::Value)> = users.iter().map(|(n, p)| ((*n).to_owned(), p.clone())).collect();
    child.stdin.take().unwrap().write_all(serde_json::to_string(&docs).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "creating the IAM users failed: {}", String::from_utf8_lossy(&out.stderr));
    let keys: Vec<(String, String)> = serde_json::from_slice(&out.stdout).unwrap();
    keys.into_iter().map(|(a, s)| Credentials { access_key: a, secret_key: coffer_store::Secret::new(s) }).collect()
}

#[test]
fn security_drift_unreadable_is_reported_once() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("drift");
    let all = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
    let no_policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:GetBucketPolicy", "Resource": "*"}]});
    let keys = moto_users(&server, &[("drift-full", all), ("drift-auditor", no_policy)]);
    let f = Fixture::new(
        &server.url(&bucket, ""),
        &[(Role::Writer, keys[0].clone()), (Role::Reader, keys[0].clone()), (Role::Auditor, keys[1].clone())],
    );
    let events = f.check();
    assert_eq!(fields(&events), ["unreadable:bucket-policy"], "{events:#?}");
    let reason = &events[0].details["reason"];
    assert!(reason.contains("AccessDenied"), "{reason}");
    assert!(!format!("{events:?}").contains(keys[1].secret_key.expose()), "no secret in an event");
    assert_eq!(f.check(), vec![], "unreadable is reported on the transition only");

    // The server stops: one event for the whole configuration, once.
    drop(server);
    let events = f.check();
    assert_eq!(fields(&events), ["unreadable:*"], "{events:#?}");
    assert_eq!(f.check(), vec![]);
}

#[test]
fn security_drift_a_baseline_the_watch_did_not_write_is_a_baseline_change() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("drift");
    let f = Fixture::new(&server.url(&bucket, ""), &creds(ServerKind::Moto, &[Role::Writer, Role::Reader]));
    assert_eq!(f.check(), vec![]);
    let writer = server.store(&bucket, "", Role::Writer);
    let ours = writer.list_entries(drift::BASELINE_PREFIX, None, 10).unwrap().items[0].key.clone();
    let mut forged = drift::Baseline::parse(&writer.get(&ours, None).unwrap().data).unwrap();

    // Someone with the writer key changes the policy and re-baselines to hide it.
    let a = admin(&server, &bucket);
    put_policy(&a, &bucket);
    let policy = a.protection().unwrap().fields["bucket-policy"].clone();
    forged.fields.insert("bucket-policy".into(), policy);
    let key = format!("{}99991231T000000.000000Z-ffffffffffffffff.json", drift::BASELINE_PREFIX);
    writer.put(&key, &serde_json::to_vec(&forged).unwrap(), &PutOptions::default()).unwrap();
    let events = f.check();
    assert_eq!(fields(&events), ["baseline-change:", "drift:bucket-policy"], "{events:#?}");
    let bc = events.iter().find(|e| e.kind == SecurityKind::BaselineChange).unwrap();
    assert_eq!(bc.details["foreign-key"], key);
    assert_eq!(bc.details["changed-fields"], "bucket-policy");
    assert_eq!(f.check(), vec![], "each finding once");

    // Hostile content: an oversized, unparseable "baseline" is still a finding, no panic.
    let key2 = format!("{}99991231T000001.000000Z-0000000000000000.json", drift::BASELINE_PREFIX);
    writer.put(&key2, &vec![b'{'; drift::MAX_BASELINE_BYTES + 10], &PutOptions::default()).unwrap();
    let events = f.check();
    assert_eq!(fields(&events), ["baseline-change:"], "{events:#?}");
    assert!(events[0].details["parse-error"].contains("bytes"), "{:?}", events[0].details);

    // Our own baseline hidden behind a delete marker: the local copy still holds.
    a.delete(&ours).unwrap();
    let events = f.check();
    assert_eq!(fields(&events), ["baseline-change:"], "{events:#?}");
    assert!(events[0].summary.contains("is gone"), "{}", events[0].summary);
    assert_eq!(f.check(), vec![]);
}

#[test]
fn security_drift_accept_writes_a_new_baseline_and_records_the_change() {
    let server = S3Server::start(ServerKind::LocalStack);
    let bucket = server.new_bucket("drift");
    let f = Fixture::new(&server.url(&bucket, ""), &creds(ServerKind::LocalStack, &[Role::Writer, Role::Reader]));
    assert_eq!(f.check(), vec![]);
    put_policy(&admin(&server, &bucket), &bucket);
    assert_eq!(fields(&f.check()), ["drift:bucket-policy"]);
    let cmp = drift::show(&f.config, "main", &f.state).unwrap();
    assert!(cmp.differs());
    assert_eq!(
        cmp.fields.iter().filter(|r| r.differs).map(|r| r.field.as_str()).collect::<Vec<_>>(),
        ["bucket-policy"]
    );

    let ev = drift::accept(&f.config, "main", &f.state, &Clock::system()).unwrap();
    assert_eq!(ev.kind, SecurityKind::BaselineChange);
    assert_eq!(ev.details["changed-fields"], "bucket-policy");
    let recorded = coffer_operations::security::record::list(&f.state, true, 100).unwrap();
    assert!(recorded.iter().any(|r| r.event.id == ev.id), "the change is recorded in the state");
    assert_eq!(f.check(), vec![], "the accepted baseline is ours: no baseline-change, no drift");
    assert!(!drift::show(&f.config, "main", &f.state).unwrap().differs());
    let keys = server.store(&bucket, "", Role::Reader).list_entries(drift::BASELINE_PREFIX, None, 10).unwrap().items;
    assert_eq!(keys.len(), 2);
}

#[test]
fn security_drift_local_vault_default_fields() {
    let dir = tempfile::tempdir().unwrap();
    let vault_dir = dir.path().join("vault");
    let vault = LocalVault::init(&vault_dir, &VaultOptions::default()).unwrap();
    let f = Fixture::new(&vault_dir.display().to_string(), &[]);
    assert_eq!(f.check(), vec![]);
    assert_eq!(f.check(), vec![]);
    let admin = vault.login(&vault.read_credentials(Role::Admin).unwrap()).unwrap();
    let before = admin.lock_config().unwrap();
    let dr = coffer_store::DefaultRetention {
        mode: coffer_store::RetentionMode::Governance,
        period: std::time::Duration::from_secs(3 * 86_400),
    };
    admin.put_lock_config(&LockConfig { enabled: true, default_retention: Some(dr) }).unwrap();
    let events = f.check();
    let d = drift_of(&events, "default-retention");
    assert_eq!(d.details["new"], "governance 3d");
    assert_eq!(d.details["old"], before.default_retention.map_or("none".into(), |d| d.to_string()));
    assert_eq!(events.iter().filter(|e| e.kind == SecurityKind::Drift).count(), 1, "{events:#?}");
    assert_eq!(f.check(), vec![]);
    drop(f.dir);
}
