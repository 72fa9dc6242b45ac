//! Classification, deduplication and the failing-queue transition, on a real state
//! database, without a queue (the queue itself: `crates/cli/tests/integration/security_cloudtrail.rs`).

use super::*;
use crate::security::{Probe, expect_probes};
use serde_json::json;

const ADMIN_KEY: &str = "AKIAADMIN";
const PRUNER_KEY: &str = "AKIAPRUNER";
const WRITER_KEY: &str = "AKIAWRITER";
const MALLORY: &str = "arn:aws:iam::111122223333:user/mallory";

fn ctx() -> Context {
    Context {
        repository: "offsite".into(),
        location: Some(S3Location::parse("s3://my-backups/repo").unwrap()),
        store: "s3://my-backups/repo/".into(),
        keys: [(ADMIN_KEY, Role::Admin), (PRUNER_KEY, Role::Pruner), (WRITER_KEY, Role::Writer)]
            .into_iter()
            .map(|(k, r)| (k.to_owned(), r))
            .collect(),
        known: ["arn:aws:iam::111122223333:role/backup-ops".to_owned()].into_iter().collect(),
    }
}

fn t0() -> Timestamp {
    "2026-12-05T10:00:00Z".parse().unwrap()
}

/// An EventBridge envelope around a CloudTrail record, as AWS documents them.
fn envelope(
    id: &str,
    name: &str,
    identity: serde_json::Value,
    params: serde_json::Value,
    error: Option<&str>,
) -> String {
    let mut detail = json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": "2026-12-05T09:59:30Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "aws-cli/2.15",
        "requestParameters": params,
        "eventID": id,
        "readOnly": false,
        "eventType": "AwsApiCall",
    });
    if let Some(code) = error {
        detail["errorCode"] = json!(code);
        detail["errorMessage"] = json!("Access Denied");
    }
    json!({
        "version": "0", "id": format!("env-{id}"), "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.s3", "account": "111122223333", "time": "2026-12-05T09:59:31Z",
        "region": "eu-west-1", "resources": [], "detail": detail,
    })
    .to_string()
}

fn user(arn: &str, key: &str) -> serde_json::Value {
    json!({"type": "IAMUser", "arn": arn, "accessKeyId": key, "principalId": "AIDAEXAMPLE", "accountId": "111122223333"})
}

fn run(state: &State, msg: &str, body: &str) -> Vec<SecurityEvent> {
    handle(state, &ctx(), msg, body, t0(), &mut HashSet::new())
}

fn new_state() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    (dir, state)
}

#[test]
fn a_denied_lock_change_by_a_stranger_is_two_events_naming_who_and_what() {
    let (_d, state) = new_state();
    let body = envelope(
        "ev-1",
        "PutObjectLockConfiguration",
        user(MALLORY, "AKIAMALLORY"),
        json!({"bucketName": "my-backups", "object-lock": ""}),
        Some("AccessDenied"),
    );
    let ev = run(&state, "m-1", &body);
    assert_eq!(
        ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [SecurityKind::CloudTrail, SecurityKind::UnknownPrincipal]
    );
    for e in &ev {
        assert_eq!(e.layer, "cloudtrail");
        assert_eq!(e.principal.as_deref(), Some(MALLORY));
        assert_eq!(e.role, None);
        assert_eq!(e.action.as_deref(), Some("PutObjectLockConfiguration"));
        assert_eq!(e.outcome.as_deref(), Some("denied"));
        assert_eq!(e.time, Some("2026-12-05T09:59:30Z".parse().unwrap()));
        assert_eq!(e.details["error-code"], "AccessDenied");
        assert_eq!(e.details["access-key"], "AKIAMALLORY");
        assert_eq!(e.details["source-ip"], "203.0.113.9");
        assert_eq!(e.details["event-id"], "ev-1");
        assert_eq!(e.details["message-id"], "m-1");
        assert_eq!(e.repository.as_deref(), Some("offsite"));
        assert_eq!(e.store.as_deref(), Some("s3://my-backups/repo/"));
    }
    assert!(
        ev[0].summary.contains("PutObjectLockConfiguration") && ev[0].summary.contains("denied"),
        "{}",
        ev[0].summary
    );
}

#[test]
fn an_allowed_versioning_change_by_the_admin_is_one_event_with_the_role() {
    let (_d, state) = new_state();
    let body = envelope(
        "ev-2",
        "PutBucketVersioning",
        user("arn:aws:iam::111122223333:user/coffer-admin", ADMIN_KEY),
        json!({"bucketName": "my-backups", "VersioningConfiguration": {"Status": "Suspended"}}),
        None,
    );
    let ev = run(&state, "m-2", &body);
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0].kind, SecurityKind::CloudTrail);
    assert_eq!(ev[0].role.as_deref(), Some("admin"));
    assert_eq!(ev[0].outcome.as_deref(), Some("allowed"));
    assert_eq!(ev[0].details["versioning"], "Suspended");
}

#[test]
fn routine_work_of_a_role_is_silent_and_anything_else_is_not() {
    let (_d, state) = new_state();
    let del = |id: &str, key: &str, version: Option<&str>, error: Option<&str>| {
        let mut p = json!({"bucketName": "my-backups", "key": "repo/data/ab/cd"});
        if let Some(v) = version {
            p["versionId"] = json!(v);
        }
        envelope(id, "DeleteObject", user("arn:aws:iam::1:user/x", key), p, error)
    };
    // The pruner removes an expired version: normal work.
    assert!(run(&state, "a", &del("d-1", PRUNER_KEY, Some("v1"), None)).is_empty());
    // ...but the pruner refused (a locked version), the writer hiding a key, the pruner
    // bypassing governance are events.
    assert_eq!(run(&state, "b", &del("d-2", PRUNER_KEY, Some("v2"), Some("AccessDenied"))).len(), 1);
    let hide = run(&state, "c", &del("d-3", WRITER_KEY, None, None));
    assert_eq!((hide.len(), hide[0].role.as_deref()), (1, Some("writer")));
    let mut bypass: serde_json::Value = serde_json::from_str(&del("d-4", PRUNER_KEY, Some("v4"), None)).unwrap();
    bypass["detail"]["requestParameters"]["x-amz-bypass-governance-retention"] = json!("true");
    let ev = run(&state, "d", &bypass.to_string());
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].details["bypass-governance"], "true");
    assert_eq!(ev[0].object_version.as_deref(), Some("v4"));
    // The writer extending a retention and placing a hold: silent; removing one: an event.
    let writer = user("arn:aws:iam::1:user/w", WRITER_KEY);
    let ret = json!({"bucketName": "my-backups", "key": "k", "Retention": {"Mode": "COMPLIANCE", "RetainUntilDate": "2027-01-01T00:00:00Z"}});
    assert!(run(&state, "e", &envelope("r-1", "PutObjectRetention", writer.clone(), ret, None)).is_empty());
    let on = json!({"bucketName": "my-backups", "key": "k", "LegalHold": {"Status": "ON"}});
    assert!(run(&state, "f", &envelope("h-1", "PutObjectLegalHold", writer.clone(), on, None)).is_empty());
    let off = json!({"bucketName": "my-backups", "key": "k", "LegalHold": {"Status": "OFF"}});
    let ev = run(&state, "g", &envelope("h-2", "PutObjectLegalHold", writer, off, None));
    assert_eq!((ev.len(), ev[0].details["legal-hold"].as_str()), (1, "OFF"));
    // A call not on the list (a read) is passed over.
    let get = envelope("g-1", "GetObject", user(MALLORY, "AKIAMALLORY"), json!({"bucketName": "my-backups"}), None);
    assert!(run(&state, "h", &get).is_empty());
}

#[test]
fn known_principals_match_by_arn_or_session_issuer() {
    let (_d, state) = new_state();
    let assumed = json!({
        "type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/backup-ops/alice",
        "accessKeyId": "ASIATEMP", "principalId": "AROA:alice",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/backup-ops"}},
    });
    let ev = run(&state, "m", &envelope("k-1", "PutBucketPolicy", assumed, json!({"bucketName": "my-backups"}), None));
    assert_eq!(ev.len(), 1, "a known principal's call is one event, no unknown-principal");
    assert_eq!(ev[0].details["session-issuer"], "arn:aws:iam::111122223333:role/backup-ops");
    let anon = json!({"type": "AWSAccount", "principalId": ""});
    let ev = run(&state, "n", &envelope("k-2", "DeleteBucketPolicy", anon, json!({"bucketName": "my-backups"}), None));
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].principal.as_deref(), Some("anonymous"));
}

#[test]
fn a_redelivered_event_is_reported_once_across_restarts() {
    let (_d, state) = new_state();
    let body = envelope(
        "dup-1",
        "DeleteBucket",
        user(MALLORY, "AKIAMALLORY"),
        json!({"bucketName": "my-backups"}),
        Some("AccessDenied"),
    );
    assert_eq!(run(&state, "m-1", &body).len(), 2);
    // The same message again (a visibility timeout), and the same event in another message.
    assert!(run(&state, "m-1", &body).is_empty());
    assert!(run(&state, "m-2", &body).is_empty());
    // Within one poll too.
    let (_d2, state2) = new_state();
    let mut seen = HashSet::new();
    assert_eq!(handle(&state2, &ctx(), "x", &body, t0(), &mut seen).len(), 2);
    assert!(handle(&state2, &ctx(), "y", &body, t0(), &mut seen).is_empty());
}

#[test]
fn a_garbage_body_is_one_unreadable_event_with_its_message_id() {
    let (_d, state) = new_state();
    for (i, body) in ["not json", "{}", "[1,2]", r#"{"detail-type":"Scheduled Event","detail":{}}"#].iter().enumerate()
    {
        let id = format!("garbage-{i}");
        let ev = run(&state, &id, body);
        assert_eq!(ev.len(), 1, "{body}");
        assert_eq!(ev[0].kind, SecurityKind::Unreadable);
        assert_eq!(ev[0].details["message-id"], id);
        assert!(run(&state, &id, body).is_empty(), "redelivered garbage is reported once");
    }
}

#[test]
fn an_announced_canary_probe_is_passed_over_once() {
    let (_d, state) = new_state();
    let key = format!("repo/{RESERVED_PREFIX}canary/object");
    let probe = Probe { principal: PRUNER_KEY.into(), action: "delete-version".into(), key: Some(key.clone()) };
    expect_probes(&state, "s3://my-backups/repo/", &[probe], t0() - SignedDuration::from_mins(1), t0()).unwrap();
    let body = |id: &str| {
        envelope(
            id,
            "DeleteObject",
            user("arn:aws:iam::1:user/pruner", PRUNER_KEY),
            json!({"bucketName": "my-backups", "key": key, "versionId": "v1"}),
            Some("AccessDenied"),
        )
    };
    assert!(run(&state, "p-1", &body("probe-1")).is_empty(), "the announced probe");
    assert_eq!(run(&state, "p-2", &body("probe-2")).len(), 1, "a second refusal was not announced");
}

#[test]
fn a_failing_queue_is_one_event_until_it_recovers() {
    let (_d, state) = new_state();
    let c = ctx();
    let first = failing(&state, &c, "AccessDenied: no", t0()).expect("the first failure is reported");
    assert_eq!(first.kind, SecurityKind::Unreadable);
    assert_eq!(first.details["reason"], "AccessDenied: no");
    assert!(failing(&state, &c, "AccessDenied: no", t0()).is_none());
    assert!(failing(&state, &c, "timed out", t0()).is_none());
    recovered(&state, &c);
    assert!(failing(&state, &c, "timed out", t0()).is_some());
}

#[test]
fn remembered_ids_are_bounded_and_expire() {
    let (_d, state) = new_state();
    let c = ctx();
    let mut seen = HashSet::new();
    let old = t0() - SEEN_TTL - SignedDuration::from_hours(1);
    assert!(first_sight(&state, &c, "old", old, &mut seen));
    assert!(first_sight(&state, &c, "new", t0(), &mut seen));
    prune_seen(&state, "offsite", t0());
    let left: Vec<String> = state.scan(&seen_prefix("offsite")).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(left, [format!("{}new", seen_prefix("offsite"))]);
    // A hostile id becomes a bounded key.
    let long = "x".repeat(10_000);
    assert!(first_sight(&state, &c, &dedupe_id(&long), t0(), &mut seen));
    assert!(state.scan(&seen_prefix("offsite")).unwrap().iter().all(|(k, _)| k.len() < 200));
}

#[test]
fn the_region_comes_from_the_queue_url() {
    assert_eq!(region_of_url("https://sqs.eu-west-1.amazonaws.com/111122223333/q").as_deref(), Some("eu-west-1"));
    assert_eq!(region_of_url("http://sqs.us-east-1.127.0.0.1:4566/000000000000/q").as_deref(), Some("us-east-1"));
    assert_eq!(region_of_url("http://127.0.0.1:4566/000000000000/q"), None);
}
