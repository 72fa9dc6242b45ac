//! The CloudTrail watch end to end on LocalStack (`SERVICES=s3,sqs,events`): the rule
//! pattern that `coffer security aws-template` prints is deployed into LocalStack's
//! EventBridge with the queue as its target; CloudTrail records in AWS's documented format
//! are put as events (EventBridge does the matching, as it would on AWS); `poll` reads the
//! queue and must turn exactly the matching ones into exactly the right security events,
//! once each, redelivery and garbage included.
//!
//! What this cannot show: that AWS's CloudTrail emits these records for these calls (the
//! records here are synthetic, in CloudTrail's format) and that CloudFormation deploys the
//! template (`docs/security.md`, "CloudTrail events").

use crate::Sandbox;
use coffer_operations::config::Config;
use coffer_operations::security::{SecurityEvent, SecurityKind, cloudtrail};
use coffer_operations::state::State;
use coffer_store::Clock;
use coffer_testkit::eventbridge::{self, Queue};
use coffer_testkit::s3::S3Server;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BUCKET: &str = "coffer-watched";
const ADMIN: &str = "arn:aws:iam::000000000000:user/coffer-admin";
const PRUNER_KEY: &str = "AKIACOFFERPRUNER";
const STRANGER: &str = "arn:aws:iam::000000000000:user/mallory";

/// A repository on `BUCKET` whose CloudTrail queue is `queue`, with the pruner's credentials
/// file, the admin known by ARN, and a state directory.
struct Watch {
    /// Holds the files the configuration names.
    _sb: Sandbox,
    config: Config,
    state: State,
}

impl Watch {
    fn new(server: &S3Server, queue_url: &str) -> Self {
        let sb = Sandbox::new();
        let pruner = sb
            .file("pruner.toml", format!("access-key = \"{PRUNER_KEY}\"\nsecret-key = \"pruner-s3cret\"\n").as_bytes());
        let reader = sb.file("queue.toml", b"access-key = \"AKIAQUEUEREADER\"\nsecret-key = \"queue-s3cret\"\n");
        let text = format!(
            r#"[repositories.offsite]
location = "s3://{BUCKET}/repo?endpoint={endpoint}"
credentials = {{ pruner = "{pruner}" }}

[repositories.offsite.security]
known-principals = ["{ADMIN}"]

[repositories.offsite.security.cloudtrail]
queue-url = "{queue_url}"
endpoint = "{endpoint}"
region = "us-east-1"
credentials = "{reader}"
"#,
            endpoint = server.endpoint(),
            pruner = pruner.display(),
            reader = reader.display(),
        );
        let path = sb.file("coffer.toml", text.as_bytes());
        let config = Config::parse(&text, &path).expect("the policy file parses");
        let state = State::open(&sb.path("state")).expect("open the state");
        Self { _sb: sb, config, state }
    }

    fn poll(&self) -> Vec<SecurityEvent> {
        cloudtrail::poll(&self.config, "offsite", &self.state, &Clock::system())
    }

    /// Polls until `n` events came (or fails after 60 s), then returns them.
    fn poll_until(&self, n: usize) -> Vec<SecurityEvent> {
        let deadline = Instant::now() + coffer_testkit::WAIT;
        let mut got = Vec::new();
        while got.len() < n {
            assert!(Instant::now() < deadline, "timed out waiting for {n} events; got {got:#?}");
            got.extend(self.poll());
        }
        got
    }
}

/// A CloudTrail record of an S3 call, as CloudTrail documents them.
fn record(id: &str, name: &str, bucket: &str, identity: Value, params: Value, error: Option<&str>) -> Value {
    let mut params = params;
    params["bucketName"] = json!(bucket);
    let mut r = json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": "2026-12-05T10:00:00Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "[aws-cli/2.15.0]",
        "requestParameters": params,
        "responseElements": null,
        "requestID": "EXAMPLE",
        "eventID": id,
        "readOnly": false,
        "eventType": "AwsApiCall",
        "recipientAccountId": "000000000000",
    });
    if let Some(code) = error {
        r["errorCode"] = json!(code);
        r["errorMessage"] = json!("Access Denied");
    }
    r
}

fn user(arn: &str, key: &str) -> Value {
    json!({"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": arn, "accountId": "000000000000", "accessKeyId": key})
}

/// LocalStack with EventBridge, a queue, and the generated rule deployed with the queue as
/// its target (and the generated queue policy).
fn deployed(visibility_timeout: u32) -> (S3Server, Queue) {
    let server = S3Server::start_with_events();
    let queue = eventbridge::create_queue(&server, cloudtrail::DEFAULT_QUEUE_NAME, visibility_timeout);
    let opts = cloudtrail::TemplateOptions::new(BUCKET, cloudtrail::DEFAULT_QUEUE_NAME).unwrap();
    let docs = cloudtrail::documents(&opts);
    let policy = cloudtrail::queue_policy(&json!(queue.arn), &json!("arn:aws:events:us-east-1:000000000000:rule/x"));
    eventbridge::deploy_rule(&server, "coffer-security", &docs["event-pattern"], &queue, Some(&policy));
    (server, queue)
}

#[test]
fn security_cloudtrail_the_rule_routes_the_watched_calls_and_poll_reports_each_once() {
    let (server, queue) = deployed(2);
    let w = Watch::new(&server, &queue.url);
    let failed = eventbridge::put_cloudtrail_events(
        &server,
        &[
            record(
                "ev-lock",
                "PutObjectLockConfiguration",
                BUCKET,
                user(STRANGER, "AKIAMALLORY"),
                json!({"object-lock": ""}),
                Some("AccessDenied"),
            ),
            record(
                "ev-versioning",
                "PutBucketVersioning",
                BUCKET,
                user(ADMIN, "AKIAADMINKEY"),
                json!({"versioning": "", "VersioningConfiguration": {"Status": "Suspended"}}),
                None,
            ),
            record(
                "ev-delete",
                "DeleteObject",
                BUCKET,
                user("arn:aws:iam::000000000000:user/coffer-pruner", PRUNER_KEY),
                json!({"key": "repo/snapshots/2026-12-05", "versionId": "3HL4kqtJlcpXroDTDmJ"}),
                Some("AccessDenied"),
            ),
            // Must not reach the queue: another bucket, and a read.
            record(
                "ev-other-bucket",
                "DeleteObject",
                "someone-elses",
                user(STRANGER, "AKIAMALLORY"),
                json!({"key": "k"}),
                None,
            ),
            record("ev-read", "GetObject", BUCKET, user(STRANGER, "AKIAMALLORY"), json!({"key": "repo/config"}), None),
        ],
    );
    assert_eq!(failed, 0, "PutEvents accepted every entry");

    // The lock change by a stranger (cloudtrail + unknown-principal), the admin's
    // versioning change, the pruner's refused delete: four events, no more.
    let mut got = w.poll_until(4);
    got.sort_by_key(|e| (e.action.clone(), e.kind));
    type Row<'a> = (Option<&'a str>, SecurityKind, Option<&'a str>, Option<&'a str>);
    let summary: Vec<Row> =
        got.iter().map(|e| (e.action.as_deref(), e.kind, e.outcome.as_deref(), e.principal.as_deref())).collect();
    assert_eq!(
        summary,
        [
            (
                Some("DeleteObject"),
                SecurityKind::CloudTrail,
                Some("denied"),
                Some("arn:aws:iam::000000000000:user/coffer-pruner")
            ),
            (Some("PutBucketVersioning"), SecurityKind::CloudTrail, Some("allowed"), Some(ADMIN)),
            (Some("PutObjectLockConfiguration"), SecurityKind::CloudTrail, Some("denied"), Some(STRANGER)),
            (Some("PutObjectLockConfiguration"), SecurityKind::UnknownPrincipal, Some("denied"), Some(STRANGER)),
        ]
    );
    let delete = &got[0];
    assert_eq!(delete.key.as_deref(), Some("repo/snapshots/2026-12-05"));
    assert_eq!(delete.object_version.as_deref(), Some("3HL4kqtJlcpXroDTDmJ"));
    assert_eq!(delete.details["error-code"], "AccessDenied");
    assert_eq!(delete.details["source-ip"], "198.51.100.7");
    assert_eq!(delete.role.as_deref(), Some("pruner"), "the role of a key Coffer holds");
    let versioning = &got[1];
    assert_eq!(versioning.details["versioning"], "Suspended");
    assert_eq!(versioning.details["access-key"], "AKIAADMINKEY");
    assert_eq!(got[2].details["event-id"], "ev-lock");
    assert_eq!(got[2].store.as_deref(), Some(format!("s3://{BUCKET}/repo/").as_str()));

    // Nothing else arrives: the other bucket and the read never matched the rule.
    std::thread::sleep(Duration::from_secs(1));
    assert!(w.poll().is_empty());
    // The messages were deleted (after the poll that returned their events).
    assert!(w.poll().is_empty());
    assert_eq!(eventbridge::queue_depth(&server, &queue), (0, 0));
}

#[test]
fn security_cloudtrail_a_redelivered_message_never_alerts_twice() {
    let (server, queue) = deployed(1);
    let w = Watch::new(&server, &queue.url);
    let denied = record(
        "ev-retention",
        "PutObjectRetention",
        BUCKET,
        user(STRANGER, "AKIAMALLORY"),
        json!({"key": "repo/index/1", "retention": "", "Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": "2026-12-06T00:00:00Z"}, "x-amz-bypass-governance-retention": "true"}),
        Some("AccessDenied"),
    );
    assert_eq!(eventbridge::put_cloudtrail_events(&server, &[denied]), 0);
    let got = w.poll_until(2);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0].details["bypass-governance"], "true");
    // The poller goes away before it deleted the message (a crash, a restart): after the
    // visibility timeout the queue delivers it again, and it is passed over as seen.
    // In flight, or visible again if its 1 s visibility timeout passed (a loaded machine):
    // either way still in the queue.
    let (visible, in_flight) = eventbridge::queue_depth(&server, &queue);
    assert_eq!(visible + in_flight, 1, "not deleted before the events were returned");
    cloudtrail::forget_poller(&w.state, "offsite");
    std::thread::sleep(Duration::from_secs(2));
    let deadline = Instant::now() + coffer_testkit::WAIT;
    loop {
        assert!(w.poll().is_empty(), "a redelivered message alerted again");
        let depth = eventbridge::queue_depth(&server, &queue);
        if depth == (0, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the redelivered message was never deleted: {depth:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The same CloudTrail event put again (EventBridge delivers at least once too).
    let again = record(
        "ev-retention",
        "PutObjectRetention",
        BUCKET,
        user(STRANGER, "AKIAMALLORY"),
        json!({"key": "repo/index/1"}),
        Some("AccessDenied"),
    );
    assert_eq!(eventbridge::put_cloudtrail_events(&server, &[again]), 0);
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..3 {
        assert!(w.poll().is_empty(), "a second delivery of one eventID alerted again");
    }
}

#[test]
fn security_cloudtrail_garbage_bodies_are_reported_once_each_and_deleted() {
    let (server, queue) = deployed(1);
    let w = Watch::new(&server, &queue.url);
    // Nested deeper than the JSON reader goes (no stack exhaustion), and large.
    let deep = format!("{}{}{}", "[".repeat(200), " ".repeat(200_000), "]".repeat(200));
    for body in ["not json at all", "{\"Records\": 5}", "{\"detail-type\": \"Scheduled Event\", \"detail\": {}}", &deep]
    {
        eventbridge::send_message(&server, &queue, body);
    }
    let got = w.poll_until(4);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got.iter().all(|e| e.kind == SecurityKind::Unreadable && e.details.contains_key("message-id")), "{got:#?}");
    let ids: std::collections::BTreeSet<&String> = got.iter().map(|e| &e.details["message-id"]).collect();
    assert_eq!(ids.len(), 4, "one event per message");
    cloudtrail::forget_poller(&w.state, "offsite");
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        assert!(w.poll().is_empty(), "garbage is reported once");
    }
    assert_eq!(eventbridge::queue_depth(&server, &queue), (0, 0));
}

#[test]
fn security_cloudtrail_a_queue_that_cannot_be_read_is_one_event_until_it_recovers() {
    let server = S3Server::start_with_events();
    let missing = format!("{}/000000000000/no-such-queue", server.endpoint());
    let w = Watch::new(&server, &missing);
    let first = w.poll();
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0].kind, SecurityKind::Unreadable);
    assert!(first[0].summary.contains("cannot read the CloudTrail queue"), "{}", first[0].summary);
    assert!(!first[0].summary.contains("queue-s3cret"), "no secret in events");
    for _ in 0..3 {
        assert!(w.poll().is_empty(), "one event per failing period, not one per poll");
    }
    let _ = eventbridge::create_queue(&server, "no-such-queue", 30);
    assert!(w.poll().is_empty());
    assert_eq!(w.state.get("cloudtrail-failing:offsite").unwrap(), None, "recovered");
}

#[test]
fn security_cloudtrail_aws_template_prints_the_documents() {
    let sb = Sandbox::new();
    let doc = |args: &[&str]| -> Value {
        let out = sb.coffer(["security", "aws-template"]).args(args).ok().stdout;
        serde_json::from_slice(&out).expect("the output is one JSON document")
    };
    let t = doc(&["--bucket", BUCKET]);
    assert_eq!(t["AWSTemplateFormatVersion"], "2010-09-09");
    let rule = &t["Resources"]["SecurityEventsRule"]["Properties"];
    assert_eq!(rule["EventPattern"]["detail"]["requestParameters"]["bucketName"], json!([BUCKET]));
    assert_eq!(rule["Name"], "coffer-security-events");
    assert_eq!(t["Resources"]["SecurityEventsQueue"]["Properties"]["QueueName"], "coffer-security-events");
    let d = doc(&["--bucket", BUCKET, "--queue-name", "q2", "--format", "json"]);
    assert_eq!(d["event-pattern"], cloudtrail::event_pattern(BUCKET));
    assert_eq!(d["queue-policy"]["Statement"][0]["Principal"]["Service"], "events.amazonaws.com");
    assert!(d["watched-events"].as_array().unwrap().contains(&json!("PutObjectLockConfiguration")));
    let e = sb.coffer(["security", "aws-template", "--bucket", "Not_A_Bucket"]).fails(1);
    assert!(e.contains("not an S3 bucket name"), "{e}");
}
