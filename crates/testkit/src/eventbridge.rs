//! SQS and EventBridge on a LocalStack started with [`S3Server::start_with_events`], driven
//! through the boto3 of that LocalStack's own environment (no Rust EventBridge client is built
//! for the tests): queues, rules with targets, `PutEvents`, raw messages, queue depth.

use crate::s3::{S3Server, venv_dir};
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::{Command, Stdio};

/// A queue: its URL and ARN.
#[derive(Clone, Debug)]
pub struct Queue {
    /// The queue URL (what `queue-url` names).
    pub url: String,
    /// The queue ARN (an EventBridge target).
    pub arn: String,
}

const PRELUDE: &str = r#"
import json, sys, boto3
a = json.load(sys.stdin)
kw = dict(endpoint_url=a["endpoint"], region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
sqs = boto3.client("sqs", **kw)
ev = boto3.client("events", **kw)
"#;

/// Runs `script` (after a prelude that reads the JSON `args` into `a` and makes the `sqs`
/// and `ev` clients) and returns what it prints as JSON.
///
/// # Panics
/// When the script fails (its stderr in the message).
#[must_use]
pub fn boto(server: &S3Server, script: &str, mut args: Value) -> Value {
    args["endpoint"] = json!(server.endpoint());
    let python = venv_dir().join("localstack-events/bin/python");
    let mut child = Command::new(&python)
        .args(["-c", &format!("{PRELUDE}\n{script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child.stdin.take().expect("stdin").write_all(args.to_string().as_bytes()).expect("write the arguments");
    let out = child.wait_with_output().expect("wait for python");
    assert!(out.status.success(), "boto3 script failed: {}\n{script}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or(Value::Null)
}

/// Creates a queue with `visibility_timeout` seconds.
#[must_use]
pub fn create_queue(server: &S3Server, name: &str, visibility_timeout: u32) -> Queue {
    let v = boto(
        server,
        r#"
url = sqs.create_queue(QueueName=a["name"], Attributes={"VisibilityTimeout": str(a["vt"])})["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
print(json.dumps({"url": url, "arn": arn}))
"#,
        json!({"name": name, "vt": visibility_timeout}),
    );
    Queue { url: v["url"].as_str().expect("url").to_owned(), arn: v["arn"].as_str().expect("arn").to_owned() }
}

/// Deploys an EventBridge rule with `pattern` whose target is `queue` (and, if given, the
/// queue policy: LocalStack stores it without enforcing it).
pub fn deploy_rule(server: &S3Server, rule: &str, pattern: &Value, queue: &Queue, policy: Option<&Value>) {
    let _ = boto(
        server,
        r#"
ev.put_rule(Name=a["rule"], EventPattern=json.dumps(a["pattern"]), State="ENABLED")
ev.put_targets(Rule=a["rule"], Targets=[{"Id": "coffer-queue", "Arn": a["arn"]}])
if a["policy"] is not None:
    sqs.set_queue_attributes(QueueUrl=a["url"], Attributes={"Policy": json.dumps(a["policy"])})
print("null")
"#,
        json!({"rule": rule, "pattern": pattern, "arn": queue.arn, "url": queue.url, "policy": policy}),
    );
}

/// `PutEvents` of CloudTrail records as EventBridge receives them from CloudTrail (source
/// `aws.s3`, detail-type `AWS API Call via CloudTrail`); returns the failed entry count.
#[must_use]
pub fn put_cloudtrail_events(server: &S3Server, details: &[Value]) -> u64 {
    let v = boto(
        server,
        r#"
entries = [{"Source": "aws.s3", "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(d)} for d in a["details"]]
failed = 0
for i in range(0, len(entries), 10):
    failed += ev.put_events(Entries=entries[i:i+10])["FailedEntryCount"]
print(json.dumps(failed))
"#,
        json!({"details": details}),
    );
    v.as_u64().expect("a count")
}

/// Sends a raw message body (garbage, a forged event).
pub fn send_message(server: &S3Server, queue: &Queue, body: &str) {
    let _ = boto(
        server,
        r#"sqs.send_message(QueueUrl=a["url"], MessageBody=a["body"]); print("null")"#,
        json!({"url": queue.url, "body": body}),
    );
}

/// The queue's approximate message counts: (visible, in flight).
#[must_use]
pub fn queue_depth(server: &S3Server, queue: &Queue) -> (u64, u64) {
    let v = boto(
        server,
        r#"
at = sqs.get_queue_attributes(QueueUrl=a["url"], AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
print(json.dumps([int(at["ApproximateNumberOfMessages"]), int(at["ApproximateNumberOfMessagesNotVisible"])]))
"#,
        json!({"url": queue.url}),
    );
    (v[0].as_u64().expect("visible"), v[1].as_u64().expect("in flight"))
}
