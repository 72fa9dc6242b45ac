//! The S3 attack matrix (issue 14): every weakening or destructive action × every role, on
//! moto (IAM users with the generated policies, auth on) and on LocalStack, through the
//! CloudTrail emulator (`coffer_testkit::cloudtrail`): an HTTP proxy in front of the S3
//! server that writes, for every request, the CloudTrail record AWS would write and puts it
//! on a LocalStack EventBridge, whose rule routes the weakening calls to an SQS queue — the
//! queue Coffer's daemon reads on AWS.
//!
//! Each cell is tried twice: with the real CLI where a command exists (`coffer --role R
//! vault rm/retention/legal-hold/config --vault s3://…?endpoint=PROXY`), and as a raw signed
//! request with the role's keys (the SDK, bypassing `S3Store`'s own checks: what an attacker
//! holding the keys sends). For every attempt the test asserts the outcome (refused with
//! the expected code, or — where the server does not enforce the rule, a measured gap listed
//! in `docs/testing-security.md` — allowed), and that **exactly one** message reaches the
//! queue for each request that reached S3, naming the right principal (ARN and access key),
//! eventName, key, versionId and errorCode (none when allowed); a CLI attempt that Coffer
//! refuses before sending anything must put nothing on the queue.
//!
//! Not yet here: the daemon end to end (`[repositories.NAME.security.cloudtrail]` reading
//! this queue, one security alert per attempt on a webhook), which needs the SQS consumer
//! and the watch loop (branches trail14 and watch14).

use crate::Sandbox;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, DefaultRetention, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockRetention,
    ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
};
use aws_smithy_types::DateTime;
use coffer_store::iam::{self, PolicyTarget};
use coffer_store::{
    Credentials, ObjectStore as _, Principal, PutOptions, Retention, RetentionMode, Role, S3Credentials, S3Location,
    S3Options, S3Store, Secret,
};
use coffer_testkit::cloudtrail::{self, BusDelivery, EventBus, TrailProxy};
use coffer_testkit::s3::{S3Server, ServerKind, test_credentials, venv_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The EventBridge rule's event pattern: the one `coffer security aws-template` deploys,
/// so the matrix proves the pattern users get routes every attack.
fn rule_pattern(bucket: &str) -> Value {
    coffer_operations::security::cloudtrail::event_pattern(bucket)
}

/// The weakening or destructive actions of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Attack {
    /// DeleteObject of the compliance-locked version.
    DeleteLocked,
    /// The same with `x-amz-bypass-governance-retention: true`.
    DeleteLockedBypass,
    /// DeleteObjects naming the locked version.
    DeleteObjects,
    /// PutObjectRetention: compliance until an earlier time.
    ShortenRetention,
    /// PutObjectRetention: compliance → governance, same time.
    ToGovernance,
    /// PutObjectLegalHold OFF on the held version.
    LegalHoldOff,
    /// PutBucketVersioning Suspended.
    SuspendVersioning,
    /// PutObjectLockConfiguration without a default retention.
    ChangeLockConfig,
    /// PutBucketPolicy granting everyone everything.
    PutBucketPolicy,
    /// PutBucketLifecycle expiring noncurrent versions.
    PutLifecycle,
    /// DeleteBucket.
    DeleteBucket,
}

const ATTACKS: [Attack; 11] = [
    Attack::DeleteLocked,
    Attack::DeleteLockedBypass,
    Attack::DeleteObjects,
    Attack::ShortenRetention,
    Attack::ToGovernance,
    Attack::LegalHoldOff,
    Attack::SuspendVersioning,
    Attack::ChangeLockConfig,
    Attack::PutBucketPolicy,
    Attack::PutLifecycle,
    Attack::DeleteBucket,
];

impl Attack {
    /// The CloudTrail eventName the attempt must produce.
    fn event_name(self) -> &'static str {
        match self {
            Self::DeleteLocked | Self::DeleteLockedBypass => "DeleteObject",
            Self::DeleteObjects => "DeleteObjects",
            Self::ShortenRetention | Self::ToGovernance => "PutObjectRetention",
            Self::LegalHoldOff => "PutObjectLegalHold",
            Self::SuspendVersioning => "PutBucketVersioning",
            Self::ChangeLockConfig => "PutObjectLockConfiguration",
            Self::PutBucketPolicy => "PutBucketPolicy",
            Self::PutLifecycle => "PutBucketLifecycle",
            Self::DeleteBucket => "DeleteBucket",
        }
    }
}

/// The bucket under attack and what is in it.
struct Target {
    bucket: String,
    /// The compliance-locked version of `data/locked`.
    locked: String,
    /// Its retain-until.
    until: jiff::Timestamp,
    /// The legal-held version of `data/held`.
    held: String,
}

/// Everything one server's matrix needs.
struct World {
    kind: ServerKind,
    server: S3Server,
    bus: EventBus,
    queue: String,
    proxy: TrailProxy,
    keys: BTreeMap<Role, Credentials>,
    t: Target,
    sb: Sandbox,
}

/// Creates one IAM user `coffer-ROLE` per role on moto with the generated identity policy
/// and an access key, then turns auth on (as `testkit`'s `iam.rs`).
fn moto_users(server: &S3Server, target: &PolicyTarget) -> BTreeMap<Role, Credentials> {
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
    let docs: serde_json::Map<String, Value> = Role::ALL
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
    child.stdin.take().unwrap().write_all(Value::Object(docs).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "creating the IAM users failed: {}", String::from_utf8_lossy(&out.stderr));
    let keys: BTreeMap<String, (String, String)> = serde_json::from_slice(&out.stdout).expect("keys as JSON");
    keys.into_iter()
        .map(|(role, (ak, sk))| (role.parse().unwrap(), Credentials { access_key: ak, secret_key: Secret::new(sk) }))
        .collect()
}

/// An `S3Store` acting as `role` with `creds`, at `endpoint` (the proxy, or the server).
fn store_at(endpoint: &str, bucket: &str, role: Role, creds: &Credentials) -> S3Store {
    let mut location = S3Location::new(bucket, "");
    location.endpoint = Some(endpoint.to_owned());
    location.region = Some("us-east-1".into());
    location.path_style = true;
    S3Store::connect(&S3Options {
        location,
        credentials: S3Credentials::Static(creds.clone()),
        principal: Principal { name: format!("matrix-{role}"), role },
        multipart: coffer_store::s3::Multipart::default(),
    })
    .expect("open an S3 store")
}

fn dt(t: jiff::Timestamp) -> DateTime {
    DateTime::from_secs(t.as_second())
}

impl World {
    fn new(kind: ServerKind) -> Self {
        let server = S3Server::start(kind);
        let bucket = server.new_bucket("coffer-matrix");
        // Compliance default retention, then a locked version and a held one (as the admin
        // and the writer, before moto's auth is on).
        let admin = server.store(&bucket, "", Role::Admin);
        let rule = ObjectLockRule::builder()
            .default_retention(DefaultRetention::builder().mode(ObjectLockRetentionMode::Compliance).days(1).build())
            .build();
        let lock =
            ObjectLockConfiguration::builder().object_lock_enabled(ObjectLockEnabled::Enabled).rule(rule).build();
        admin
            .block_on(
                admin.client().put_object_lock_configuration().bucket(&bucket).object_lock_configuration(lock).send(),
            )
            .expect("a compliance default retention");
        let now = coffer_store::Clock::system().now();
        let until = (now + jiff::SignedDuration::from_hours(24)).round(jiff::Unit::Second).unwrap();
        let writer = server.store(&bucket, "", Role::Writer);
        let retention = Some(Retention { mode: RetentionMode::Compliance, until });
        let locked = writer
            .put("data/locked", b"locked", &PutOptions { retention, legal_hold: false, create_only: false })
            .expect("put the locked version")
            .version
            .0;
        let held = writer
            .put("data/held", b"held", &PutOptions { retention, legal_hold: true, create_only: false })
            .expect("put the held version")
            .version
            .0;
        let keys: BTreeMap<Role, Credentials> = match kind {
            ServerKind::Moto => {
                let mut target = PolicyTarget::new(&bucket, "");
                target.principal_arn = "arn:aws:iam::123456789012:user/coffer-{role}".into();
                moto_users(&server, &target)
            }
            ServerKind::LocalStack => Role::ALL.iter().map(|&r| (r, test_credentials(kind, r))).collect(),
        };
        let users = keys.iter().map(|(r, c)| (c.access_key.clone(), format!("coffer-{r}"))).collect();
        let bus = EventBus::start();
        let queue = bus.create_queue("coffer-security");
        let sb = Sandbox::new();
        bus.route("coffer-s3-weakening", &rule_pattern(&bucket), &queue);
        let proxy = TrailProxy::start(&server.endpoint(), users, Arc::new(BusDelivery::to(&bus)));
        Self { kind, server, bus, queue, proxy, keys, t: Target { bucket, locked, until, held }, sb }
    }

    /// A store acting as `role` through the proxy.
    fn via_proxy(&self, role: Role) -> S3Store {
        store_at(&self.proxy.endpoint(), &self.t.bucket, role, &self.keys[&role])
    }

    /// One raw request of `attack` as `role`, through the proxy: `Ok` or the error code.
    fn raw(&self, role: Role, attack: Attack) -> Result<(), String> {
        let s = self.via_proxy(role);
        let (c, b) = (s.client(), self.t.bucket.as_str());
        let code = |e: &dyn ProvideErrorMetadata| e.code().unwrap_or("(no code)").to_owned();
        let retention = |mode: ObjectLockRetentionMode, until: jiff::Timestamp| {
            ObjectLockRetention::builder().mode(mode).retain_until_date(dt(until)).build()
        };
        macro_rules! send {
            ($req:expr) => {
                s.block_on($req.send()).map(|_| ()).map_err(|e| code(&e))
            };
        }
        match attack {
            Attack::DeleteLocked => send!(c.delete_object().bucket(b).key("data/locked").version_id(&self.t.locked)),
            Attack::DeleteLockedBypass => send!(
                c.delete_object()
                    .bucket(b)
                    .key("data/locked")
                    .version_id(&self.t.locked)
                    .bypass_governance_retention(true)
            ),
            Attack::DeleteObjects => {
                let id = ObjectIdentifier::builder().key("data/locked").version_id(&self.t.locked).build().unwrap();
                let delete = Delete::builder().objects(id).build().unwrap();
                // DeleteObjects answers 200 with per-key errors: a refusal is in the body.
                match s.block_on(c.delete_objects().bucket(b).delete(delete).send()) {
                    Ok(out) if out.errors().is_empty() => Ok(()),
                    Ok(out) => Err(out.errors()[0].code().unwrap_or("(no code)").to_owned()),
                    Err(e) => Err(code(&e)),
                }
            }
            Attack::ShortenRetention => {
                send!(c.put_object_retention().bucket(b).key("data/locked").version_id(&self.t.locked).retention(
                    retention(ObjectLockRetentionMode::Compliance, self.t.until - jiff::SignedDuration::from_hours(12))
                ))
            }
            Attack::ToGovernance => send!(
                c.put_object_retention()
                    .bucket(b)
                    .key("data/locked")
                    .version_id(&self.t.locked)
                    .retention(retention(ObjectLockRetentionMode::Governance, self.t.until))
            ),
            Attack::LegalHoldOff => send!(
                c.put_object_legal_hold()
                    .bucket(b)
                    .key("data/held")
                    .version_id(&self.t.held)
                    .legal_hold(ObjectLockLegalHold::builder().status(ObjectLockLegalHoldStatus::Off).build())
            ),
            Attack::SuspendVersioning => send!(c.put_bucket_versioning().bucket(b).versioning_configuration(
                VersioningConfiguration::builder().status(BucketVersioningStatus::Suspended).build()
            )),
            Attack::ChangeLockConfig => send!(c.put_object_lock_configuration().bucket(b).object_lock_configuration(
                ObjectLockConfiguration::builder().object_lock_enabled(ObjectLockEnabled::Enabled).build()
            )),
            Attack::PutBucketPolicy => {
                let policy = serde_json::json!({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*",
                                   "Resource": [format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")]}],
                });
                send!(c.put_bucket_policy().bucket(b).policy(policy.to_string()))
            }
            Attack::PutLifecycle => {
                let rule = LifecycleRule::builder()
                    .id("expire-everything")
                    .status(ExpirationStatus::Enabled)
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .expiration(LifecycleExpiration::builder().days(1).build())
                    .noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(1).build())
                    .build()
                    .unwrap();
                let cfg = BucketLifecycleConfiguration::builder().rules(rule).build().unwrap();
                send!(c.put_bucket_lifecycle_configuration().bucket(b).lifecycle_configuration(cfg))
            }
            Attack::DeleteBucket => send!(c.delete_bucket().bucket(b)),
        }
    }

    /// The CLI's command for `attack`, if it has one.
    fn cli_args(&self, attack: Attack) -> Option<Vec<String>> {
        let (locked, held) = (self.t.locked.as_str(), self.t.held.as_str());
        let shorter = (self.t.until - jiff::SignedDuration::from_hours(12)).to_string();
        let until = self.t.until.to_string();
        let args: Vec<&str> = match attack {
            Attack::DeleteLocked => vec!["rm", "data/locked", "--version", locked],
            Attack::DeleteLockedBypass => vec!["rm", "data/locked", "--version", locked, "--bypass-governance"],
            Attack::ShortenRetention => {
                vec!["retention", "data/locked", "--version", locked, "--until", shorter.as_str()]
            }
            Attack::ToGovernance => {
                vec!["retention", "data/locked", "--version", locked, "--mode", "governance", "--until", until.as_str()]
            }
            Attack::LegalHoldOff => vec!["legal-hold", "data/held", "--version", held, "off"],
            Attack::ChangeLockConfig => vec!["config", "--no-default-retention"],
            _ => return None,
        };
        Some(args.into_iter().map(str::to_owned).collect())
    }

    /// `coffer --vault s3://…?endpoint=PROXY --role ROLE vault ARGS…` with the role's keys.
    fn cli(&self, role: Role, args: &[String]) -> crate::Run {
        let creds = &self.keys[&role];
        self.sb
            .coffer(["--vault", &self.proxy.url(&self.t.bucket, ""), "--role", role.as_str(), "vault"])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &creds.access_key)
            .env("AWS_SECRET_ACCESS_KEY", creds.secret_key.expose())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .run()
    }

    /// Puts back what an allowed attack changed (straight at the server: no event).
    fn repair(&self, attack: Attack) {
        if let Err(first) = self.repair_as(Role::Admin, attack) {
            if let Err(second) = self.repair_as(Role::Writer, attack) {
                panic!("{}: repairing after {attack:?} failed: as admin {first}; as writer {second}", self.kind.name());
            }
        }
    }

    fn repair_as(&self, role: Role, attack: Attack) -> Result<(), String> {
        let s = store_at(&self.server.endpoint(), &self.t.bucket, role, &self.keys[&role]);
        let (c, b) = (s.client(), self.t.bucket.as_str());
        let r: Result<(), String> = match attack {
            Attack::ShortenRetention | Attack::ToGovernance => s
                .block_on(
                    c.put_object_retention()
                        .bucket(b)
                        .key("data/locked")
                        .version_id(&self.t.locked)
                        .retention(
                            ObjectLockRetention::builder()
                                .mode(ObjectLockRetentionMode::Compliance)
                                .retain_until_date(dt(self.t.until))
                                .build(),
                        )
                        .send(),
                )
                .map(|_| ())
                .map_err(|e| format!("{e:?}")),
            Attack::LegalHoldOff => s
                .block_on(
                    c.put_object_legal_hold()
                        .bucket(b)
                        .key("data/held")
                        .version_id(&self.t.held)
                        .legal_hold(ObjectLockLegalHold::builder().status(ObjectLockLegalHoldStatus::On).build())
                        .send(),
                )
                .map(|_| ())
                .map_err(|e| format!("{e:?}")),
            Attack::SuspendVersioning => s
                .block_on(
                    c.put_bucket_versioning()
                        .bucket(b)
                        .versioning_configuration(
                            VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build(),
                        )
                        .send(),
                )
                .map(|_| ())
                .map_err(|e| format!("{e:?}")),
            Attack::ChangeLockConfig => {
                let rule = ObjectLockRule::builder()
                    .default_retention(
                        DefaultRetention::builder().mode(ObjectLockRetentionMode::Compliance).days(1).build(),
                    )
                    .build();
                let lock = ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(rule)
                    .build();
                s.block_on(c.put_object_lock_configuration().bucket(b).object_lock_configuration(lock).send())
                    .map(|_| ())
                    .map_err(|e| format!("{e:?}"))
            }
            Attack::PutBucketPolicy => {
                s.block_on(c.delete_bucket_policy().bucket(b).send()).map(|_| ()).map_err(|e| format!("{e:?}"))
            }
            Attack::PutLifecycle => {
                s.block_on(c.delete_bucket_lifecycle().bucket(b).send()).map(|_| ()).map_err(|e| format!("{e:?}"))
            }
            _ => Ok(()),
        };
        r
    }

    /// Receives the queue's messages until `n` arrived (or a deadline), then a little more,
    /// to catch any duplicate.
    fn messages(&self, n: usize) -> Vec<Value> {
        self.bus.receive_until(&self.queue, Duration::from_secs(15), Duration::from_millis(700), |m| m.len() >= n)
    }

    /// Asserts `msg` is the event of `attack` by `role` with `error` (None: allowed).
    #[track_caller]
    fn assert_event(&self, msg: &Value, role: Role, attack: Attack, error: Option<&str>, what: &str) {
        assert_eq!(msg["source"], "aws.s3", "{what}: {msg}");
        assert_eq!(msg["detail-type"], cloudtrail::DETAIL_TYPE, "{what}: {msg}");
        let d = &msg["detail"];
        assert_eq!(d["eventSource"], "s3.amazonaws.com", "{what}: {msg}");
        assert_eq!(d["eventName"], attack.event_name(), "{what}: {msg}");
        let id = &d["userIdentity"];
        assert_eq!(id["accessKeyId"], self.keys[&role].access_key.as_str(), "{what}: {msg}");
        assert_eq!(id["arn"], format!("arn:aws:iam::123456789012:user/coffer-{role}").as_str(), "{what}: {msg}");
        let p = &d["requestParameters"];
        assert_eq!(p["bucketName"], self.t.bucket.as_str(), "{what}: {msg}");
        let (key, version) = match attack {
            Attack::DeleteLocked | Attack::DeleteLockedBypass | Attack::ShortenRetention | Attack::ToGovernance => {
                (Some("data/locked"), Some(self.t.locked.as_str()))
            }
            Attack::LegalHoldOff => (Some("data/held"), Some(self.t.held.as_str())),
            _ => (None, None),
        };
        assert_eq!(p["key"].as_str(), key, "{what}: {msg}");
        assert_eq!(p["versionId"].as_str(), version, "{what}: {msg}");
        if attack == Attack::DeleteLockedBypass {
            assert_eq!(p["x-amz-bypass-governance-retention"], "true", "{what}: {msg}");
        }
        assert_eq!(d["errorCode"].as_str(), error, "{what}: {msg}");
    }
}

/// Whether every server must refuse `attack` whoever asks: the locked version is never
/// removed, a bucket with objects is never deleted. The other cells differ by server and
/// role (moto's IAM, LocalStack without IAM, each server's Object Lock gaps): the test
/// prints the measured table and checks each event against the outcome observed.
fn must_refuse(attack: Attack) -> bool {
    matches!(attack, Attack::DeleteLocked | Attack::DeleteLockedBypass | Attack::DeleteObjects | Attack::DeleteBucket)
}

/// The records the proxy wrote since `from` that the rule routes (the weakening calls).
fn watched_since(w: &World, from: usize) -> Vec<Value> {
    w.proxy.records()[from..]
        .iter()
        .filter(|r| r["eventName"].as_str().is_some_and(|n| cloudtrail::WATCHED_EVENTS.contains(&n)))
        .cloned()
        .collect()
}

fn run_matrix(kind: ServerKind) {
    let w = World::new(kind);
    let mut table = Vec::new();
    let mut mismatches = Vec::new();
    for role in Role::ALL {
        for attack in ATTACKS {
            // The raw request: it always reaches S3, so exactly one event.
            let what = format!("{} raw {attack:?} as {role}", kind.name());
            let got = w.raw(role, attack);
            let code = got.as_ref().err().map(String::as_str);
            table.push(format!("{what}: {}", code.unwrap_or("ALLOWED")));
            let msgs = w.messages(1);
            assert!(w.proxy.delivery_errors().is_empty(), "{what}: {:?}", w.proxy.delivery_errors());
            assert_eq!(msgs.len(), 1, "{what}: exactly one event on the queue, got {msgs:#?}");
            // DeleteObjects reports a per-key refusal in a 200 answer: CloudTrail has no errorCode.
            let event_error = if attack == Attack::DeleteObjects { None } else { code };
            w.assert_event(&msgs[0], role, attack, event_error, &what);
            if must_refuse(attack) && code.is_none() {
                mismatches.push(format!("{what}: allowed"));
            }
            if got.is_ok() {
                w.repair(attack);
            }

            // The CLI, where a command exists: Coffer refuses it (its role check, or the
            // store's lock judged before sending); whatever reached S3 is on the queue once.
            let Some(args) = w.cli_args(attack) else { continue };
            let what = format!("{} cli {attack:?} as {role}", kind.name());
            let from = w.proxy.records().len();
            let run = w.cli(role, &args);
            let sent = watched_since(&w, from);
            let msgs = w.messages(sent.len());
            assert!(sent.len() <= 1, "{what}: one weakening request at most, sent {sent:#?}");
            assert_eq!(msgs.len(), sent.len(), "{what}: one event per weakening request that reached S3: {msgs:#?}");
            for m in &msgs {
                w.assert_event(m, role, attack, sent[0]["errorCode"].as_str(), &what);
            }
            table.push(format!(
                "{what}: exit {:?}, {} request(s) to S3{}",
                run.code,
                sent.len(),
                sent.first()
                    .map(|r| format!(" ({})", r["errorCode"].as_str().unwrap_or("ALLOWED")))
                    .unwrap_or_default()
            ));
            let allowed = sent.first().is_some_and(|r| r.get("errorCode").is_none());
            if allowed {
                w.repair(attack);
            }
            assert_eq!(run.code == Some(0), allowed, "{what}: {}", run.stderr);
            if !role_may(role, attack) {
                // Refused by Coffer before anything weakening is sent: the role check (exit
                // 3), or the lock judged first (exit 4).
                assert!(sent.is_empty(), "{what}: Coffer refuses before sending: {sent:#?}");
                assert!(matches!(run.code, Some(3 | 4)), "{what}: {}", run.stderr);
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(w.proxy.delivery_errors().is_empty(), "{:?}", w.proxy.delivery_errors());
    assert!(
        mismatches.is_empty(),
        "outcomes other than measured (docs/testing-security.md):\n{}",
        mismatches.join("\n")
    );
}

/// Whether Coffer's role model lets `role` try `attack` (`Role::allows`).
fn role_may(role: Role, attack: Attack) -> bool {
    use coffer_store::Action as A;
    let action = match attack {
        Attack::DeleteLocked | Attack::DeleteObjects => A::DeleteVersion,
        Attack::DeleteLockedBypass => A::BypassGovernance,
        Attack::ShortenRetention | Attack::ToGovernance => A::PutRetention,
        Attack::LegalHoldOff => A::LegalHoldOff,
        Attack::SuspendVersioning => A::PutVersioning,
        Attack::ChangeLockConfig | Attack::PutBucketPolicy | Attack::PutLifecycle | Attack::DeleteBucket => {
            A::PutLockConfig
        }
    };
    role.allows(action)
}

#[test]
fn security_s3matrix_moto() {
    run_matrix(ServerKind::Moto);
}

#[test]
fn security_s3matrix_localstack() {
    run_matrix(ServerKind::LocalStack);
}
