//! A CloudTrail emulator for the security tests: what AWS would deliver to Coffer's queue
//! for every S3 request, produced here from the requests themselves.
//!
//! On AWS a denied or weakening S3 request reaches Coffer only as a CloudTrail record,
//! routed by an EventBridge rule to an SQS queue. CloudTrail cannot run here, so:
//!
//! - [`TrailProxy`] is an HTTP/1.1 proxy on 127.0.0.1 in front of an S3 test server (moto or
//!   LocalStack). It forwards every request unchanged — every header, including
//!   `Authorization`, the `x-amz-*` headers and `Host` (the client signed the proxy's
//!   `host:port`, and moto verifies the signature against the `Host` it receives) — streaming
//!   the bodies, and for each request writes the record CloudTrail would write
//!   ([`record`]: eventVersion 1.09, `eventName` from method + path + query, `userIdentity`
//!   from the SigV4 `Credential=` and a map of access keys to IAM user names the test gives,
//!   `requestParameters`, `errorCode`/`errorMessage` from a non-2xx reply's XML, …). It
//!   delivers the record with EventBridge `PutEvents` (source `aws.s3`, detail-type
//!   `AWS API Call via CloudTrail`) **before** it answers the client, so a test that got its
//!   answer knows the event is on the bus.
//! - [`EventBus`] is a LocalStack of its own with only SQS and EventBridge: a queue, and a
//!   rule + target whose event pattern decides what reaches the queue, as on AWS.
//!
//! What this reproduces: the record format (the fields Coffer reads), the envelope
//! EventBridge puts around it (built by LocalStack's EventBridge from the `PutEvents` entry),
//! the rule's pattern matching and the SQS delivery. What it does not: CloudTrail's delivery
//! latency (on AWS, minutes; here, before the answer), batching and duplicates (CloudTrail
//! delivers at least once; here exactly once), the trail's event selectors (every request
//! becomes a record, management or data event alike: a trail without data events would not
//! see object-level requests), requests the proxy never sees (console, other endpoints),
//! and records of requests AWS refuses before authentication (a bad signature is recorded
//! here with the key it names). Account ids, principal ids and ARNs are the test's.
//!
//! Only a test component: it trusts the S3 server's replies for sizes but bounds what it
//! buffers (request bodies of configuration calls, error bodies) to [`MAX_BUFFERED`].

use crate::s3::venv_dir;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The account of the emulated trail (users' ARNs, the bus, the queue).
pub const ACCOUNT: &str = "123456789012";
/// The region of everything here.
pub const REGION: &str = "us-east-1";
/// The most the proxy buffers of one request or error body.
pub const MAX_BUFFERED: usize = 256 * 1024;
/// `detail-type` of CloudTrail's events on EventBridge.
pub const DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// The event names the tests' EventBridge rule routes to the queue: every weakening or
/// destructive S3 call the issue lists. CloudTrail has no `DeleteObjectVersion` event: a
/// version's deletion is a `DeleteObject` with `versionId` in `requestParameters`.
///
/// The matrix test routes with the generated pattern (`cloudtrail::event_pattern`); this
/// list is the emulator's own default (`default_pattern`).
pub const WATCHED_EVENTS: &[&str] = &[
    "PutObjectLockConfiguration",
    "PutBucketVersioning",
    "PutBucketPolicy",
    "DeleteBucketPolicy",
    "PutBucketLifecycle",
    "DeleteBucketLifecycle",
    "PutBucketReplication",
    "DeleteBucketReplication",
    "PutBucketPublicAccessBlock",
    "DeleteBucketPublicAccessBlock",
    "PutBucketOwnershipControls",
    "PutBucketAcl",
    "PutObjectRetention",
    "PutObjectLegalHold",
    "DeleteObject",
    "DeleteObjects",
    "DeleteBucket",
];

/// The EventBridge pattern for [`WATCHED_EVENTS`].
#[must_use]
pub fn default_pattern() -> Value {
    json!({
        "source": ["aws.s3"],
        "detail-type": [DETAIL_TYPE],
        "detail": {"eventSource": ["s3.amazonaws.com"], "eventName": WATCHED_EVENTS},
    })
}

// ---------------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------------

/// What the proxy saw of one request and its answer.
#[derive(Clone, Debug, Default)]
pub struct Exchange {
    /// `PUT`, `GET`, ….
    pub method: String,
    /// Path and query as sent (path-style: `/BUCKET/KEY?QUERY`).
    pub url: String,
    /// Request headers, names lower-cased (the first of repeated names).
    pub headers: BTreeMap<String, String>,
    /// The request body when it was buffered (configuration calls), else empty.
    pub body: Vec<u8>,
    /// The client's address.
    pub source_ip: String,
    /// The answer's status.
    pub status: u16,
    /// The error body of a non-2xx answer (bounded), else empty.
    pub error_body: Vec<u8>,
}

/// The parsed request line: bucket, key and query parameters (percent-decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The bucket (path-style), if any.
    pub bucket: Option<String>,
    /// The object key, if any.
    pub key: Option<String>,
    /// Query parameters in order (a flag such as `?retention` has an empty value).
    pub query: Vec<(String, String)>,
}

impl Target {
    /// Parses a path-style `/BUCKET/KEY?QUERY`.
    #[must_use]
    pub fn parse(url: &str) -> Self {
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let path = path.strip_prefix('/').unwrap_or(path);
        let (bucket, key) = match path.split_once('/') {
            Some((b, k)) => (b, Some(k)),
            None => (path, None),
        };
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Self {
            bucket: (!bucket.is_empty()).then(|| percent_decode(bucket)),
            key: key.filter(|k| !k.is_empty()).map(percent_decode),
            query,
        }
    }

    /// Whether the query names `name`.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }

    /// The value of query parameter `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| char::from(*c).to_digit(16));
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bucket subresources whose calls are named `VERB` + `Bucket` + `NAME`
/// (`PUT ?policy` → `PutBucketPolicy`), with their CloudTrail names.
const BUCKET_SUBRESOURCES: &[(&str, &str)] = &[
    ("versioning", "BucketVersioning"),
    ("policy", "BucketPolicy"),
    ("lifecycle", "BucketLifecycle"),
    ("replication", "BucketReplication"),
    ("publicAccessBlock", "BucketPublicAccessBlock"),
    ("ownershipControls", "BucketOwnershipControls"),
    ("acl", "BucketAcl"),
    ("encryption", "BucketEncryption"),
    ("tagging", "BucketTagging"),
    ("cors", "BucketCors"),
    ("website", "BucketWebsite"),
    ("logging", "BucketLogging"),
    ("notification", "BucketNotification"),
];

/// The CloudTrail `eventName` of a request, and whether it is a data (object-level) event.
#[must_use]
pub fn event_name(method: &str, t: &Target, headers: &BTreeMap<String, String>) -> (String, bool) {
    let verb = match method {
        "PUT" => "Put",
        "GET" => "Get",
        "DELETE" => "Delete",
        "HEAD" => "Head",
        "POST" => "Post",
        _ => "Unknown",
    };
    let Some(_) = &t.bucket else {
        return (if method == "GET" { "ListBuckets" } else { "Unknown" }.to_owned(), false);
    };
    if t.key.is_none() {
        if t.has("object-lock") {
            return (format!("{verb}ObjectLockConfiguration"), false);
        }
        for (q, name) in BUCKET_SUBRESOURCES {
            if t.has(q) {
                return (format!("{verb}{name}"), false);
            }
        }
        let name = match method {
            "POST" if t.has("delete") => return ("DeleteObjects".into(), true),
            "GET" if t.has("versions") => "ListObjectVersions",
            "GET" if t.has("location") => "GetBucketLocation",
            "GET" if t.has("uploads") => "ListMultipartUploads",
            "GET" => "ListObjects",
            "PUT" => "CreateBucket",
            "DELETE" => "DeleteBucket",
            "HEAD" => "HeadBucket",
            _ => "Unknown",
        };
        return (name.into(), false);
    }
    let name = if t.has("retention") {
        format!("{verb}ObjectRetention")
    } else if t.has("legal-hold") {
        format!("{verb}ObjectLegalHold")
    } else if t.has("tagging") {
        format!("{verb}ObjectTagging")
    } else if t.has("acl") {
        format!("{verb}ObjectAcl")
    } else {
        match method {
            "POST" if t.has("uploads") => "CreateMultipartUpload".into(),
            "POST" if t.has("uploadId") => "CompleteMultipartUpload".into(),
            "PUT" if t.has("uploadId") => {
                if headers.contains_key("x-amz-copy-source") { "UploadPartCopy" } else { "UploadPart" }.into()
            }
            "DELETE" if t.has("uploadId") => "AbortMultipartUpload".into(),
            "GET" if t.has("uploadId") => "ListParts".into(),
            "PUT" if headers.contains_key("x-amz-copy-source") => "CopyObject".into(),
            "PUT" => "PutObject".into(),
            "GET" => "GetObject".into(),
            "HEAD" => "HeadObject".into(),
            "DELETE" => "DeleteObject".into(),
            _ => "Unknown".into(),
        }
    };
    (name, true)
}

/// The access key of a SigV4 `Authorization` header (`Credential=AKID/DATE/…`).
#[must_use]
pub fn access_key(authorization: &str) -> Option<String> {
    let rest = authorization.split("Credential=").nth(1)?;
    let key = rest.split('/').next()?.trim();
    (!key.is_empty() && key.len() <= 128).then(|| key.to_owned())
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + end])
}

/// A small XML document as JSON (elements as objects, leaves as strings, repeated elements
/// as arrays; attributes, comments and the declaration dropped), as CloudTrail shows the
/// body of a configuration call in `requestParameters`. `None` for what it cannot read.
#[must_use]
pub fn xml_to_json(xml: &str) -> Option<Value> {
    fn element(s: &str, depth: usize) -> Option<(String, Value, &str)> {
        if depth > 16 {
            return None;
        }
        let s = s.trim_start();
        let s = s.strip_prefix('<')?;
        let end = s.find('>')?;
        let tag_full = &s[..end];
        let name = tag_full.split_whitespace().next()?.trim_end_matches('/').to_owned();
        if tag_full.ends_with('/') {
            return Some((name, Value::String(String::new()), &s[end + 1..]));
        }
        let mut rest = &s[end + 1..];
        let close = format!("</{name}>");
        let mut children = Map::new();
        loop {
            let trimmed = rest.trim_start();
            if let Some(after) = trimmed.strip_prefix(close.as_str()) {
                let v = if children.is_empty() { Value::String(String::new()) } else { Value::Object(children) };
                return Some((name, v, after));
            }
            if trimmed.starts_with('<') {
                let (n, v, after) = element(trimmed, depth + 1)?;
                match children.get_mut(&n) {
                    Some(Value::Array(a)) => a.push(v),
                    Some(old) => *old = Value::Array(vec![old.take(), v]),
                    None => {
                        children.insert(n, v);
                    }
                }
                rest = after;
            } else {
                let text_end = trimmed.find('<')?;
                let text = &trimmed[..text_end];
                let after = trimmed[text_end..].strip_prefix(close.as_str())?;
                return Some((name, Value::String(text.to_owned()), after));
            }
        }
    }
    let mut s = xml.trim_start();
    while s.starts_with("<?") || s.starts_with("<!--") {
        let end = if s.starts_with("<?") { s.find("?>")? + 2 } else { s.find("-->")? + 3 };
        s = s[end..].trim_start();
    }
    let (name, v, _) = element(s, 0)?;
    Some(json!({ name: v }))
}

/// A random id in the UUID layout CloudTrail and EventBridge use.
#[must_use]
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("random source");
    let h: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The CloudTrail record AWS would write for `ex` (eventVersion 1.09). `users` maps access
/// keys to IAM user names in [`ACCOUNT`]; a key not in it is recorded as an unknown identity
/// (no ARN), as CloudTrail shows a caller it cannot resolve.
#[must_use]
pub fn record(ex: &Exchange, users: &BTreeMap<String, String>, now: jiff::Timestamp) -> Value {
    let t = Target::parse(&ex.url);
    let (name, data) = event_name(&ex.method, &t, &ex.headers);
    let key = ex.headers.get("authorization").and_then(|a| access_key(a));
    let identity = match key.as_ref().map(|k| (k, users.get(k))) {
        Some((k, Some(user))) => json!({
            "type": "IAMUser",
            "principalId": format!("AIDA{}", principal_suffix(user)),
            "arn": format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
            "accountId": ACCOUNT,
            "accessKeyId": k,
            "userName": user,
        }),
        Some((k, None)) => json!({"type": "Unknown", "accessKeyId": k, "accountId": ACCOUNT}),
        None => json!({"type": "AWSAccount", "principalId": "", "accountId": "anonymous"}),
    };
    let mut params = Map::new();
    if let Some(b) = &t.bucket {
        params.insert("bucketName".into(), json!(b));
    }
    if let Some(h) = ex.headers.get("host") {
        params.insert("Host".into(), json!(h));
    }
    if let Some(k) = &t.key {
        params.insert("key".into(), json!(k));
    }
    for (k, v) in &t.query {
        // CloudTrail shows a subresource flag (`?retention`) as a key with an empty value.
        params.insert(k.clone(), json!(v));
    }
    if ex.headers.get("x-amz-bypass-governance-retention").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        params.insert("x-amz-bypass-governance-retention".into(), json!("true"));
    }
    if !ex.body.is_empty() {
        if let Some(Value::Object(body)) = std::str::from_utf8(&ex.body).ok().and_then(xml_to_json) {
            params.extend(body);
        } else if name.ends_with("BucketPolicy") {
            params.insert("bucketPolicy".into(), serde_json::from_slice(&ex.body).unwrap_or(Value::Null));
        }
    }
    let mut rec = json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": now.round(jiff::Unit::Second).unwrap_or(now).to_string(),
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": ex.source_ip,
        "userAgent": ex.headers.get("user-agent").cloned().unwrap_or_default(),
        "requestParameters": params,
        "responseElements": Value::Null,
        "additionalEventData": {
            "SignatureVersion": "SigV4",
            "AuthenticationMethod": "AuthHeader",
            "bytesTransferredIn": ex.headers.get("content-length").and_then(|l| l.parse::<u64>().ok()).unwrap_or(0),
        },
        "requestID": random_id().replace('-', "")[..16].to_uppercase(),
        "eventID": random_id(),
        "readOnly": matches!(ex.method.as_str(), "GET" | "HEAD"),
        "resources": resources(&t, data),
        "eventType": "AwsApiCall",
        "managementEvent": !data,
        "recipientAccountId": ACCOUNT,
        "eventCategory": if data { "Data" } else { "Management" },
    });
    if !(200..300).contains(&ex.status) {
        let body = String::from_utf8_lossy(&ex.error_body);
        let code = xml_text(&body, "Code").map_or_else(|| status_code_name(ex.status).to_owned(), str::to_owned);
        let message = xml_text(&body, "Message").unwrap_or("").to_owned();
        rec["errorCode"] = json!(code);
        rec["errorMessage"] = json!(message);
    }
    rec
}

fn principal_suffix(user: &str) -> String {
    let h = blake3::hash(user.as_bytes());
    h.as_bytes()[..8].iter().map(|b| format!("{b:02X}")).collect()
}

fn resources(t: &Target, data: bool) -> Value {
    let mut out = Vec::new();
    if let (true, Some(b), Some(k)) = (data, &t.bucket, &t.key) {
        out.push(json!({"type": "AWS::S3::Object", "ARN": format!("arn:aws:s3:::{b}/{k}")}));
    }
    if let Some(b) = &t.bucket {
        out.push(json!({"type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{b}"), "accountId": ACCOUNT}));
    }
    Value::Array(out)
}

fn status_code_name(status: u16) -> &'static str {
    match status {
        301 => "PermanentRedirect",
        400 => "BadRequest",
        403 => "AccessDenied",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        412 => "PreconditionFailed",
        _ => "InternalError",
    }
}

/// The EventBridge envelope around a record, as EventBridge delivers it to a target.
#[must_use]
pub fn envelope(record: &Value) -> Value {
    let resources: Vec<Value> =
        record["resources"].as_array().into_iter().flatten().filter_map(|r| r.get("ARN").cloned()).collect();
    json!({
        "version": "0",
        "id": random_id(),
        "detail-type": DETAIL_TYPE,
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": record["eventTime"],
        "region": REGION,
        "resources": resources,
        "detail": record,
    })
}

// ---------------------------------------------------------------------------------------
// The bus: LocalStack with SQS and EventBridge
// ---------------------------------------------------------------------------------------

/// A LocalStack process with only SQS and EventBridge, on a free loopback port; stopped on
/// drop. Requests are made in [`ACCOUNT`] (LocalStack takes a 12-digit access key as the
/// account id; it checks no signatures): whoever reads the queue must use
/// [`EventBus::ACCESS_KEY`].
#[derive(Debug)]
pub struct EventBus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl EventBus {
    /// The access key to use with this bus (it selects [`ACCOUNT`] in LocalStack).
    pub const ACCESS_KEY: &'static str = ACCOUNT;

    /// Starts the bus.
    ///
    /// # Panics
    /// When LocalStack is not installed (the message names the command that installs it) or
    /// does not become ready.
    #[must_use]
    pub fn start() -> Self {
        // Its own virtualenv: LocalStack's EventBridge needs moto-ext, which the S3 set lacks.
        let python = venv_dir().join("localstack-events/bin/python");
        assert!(
            python.exists(),
            "LocalStack with EventBridge is not installed ({} is missing): `bash .ci/s3-venv.sh` installs it \
             (`.ci/test` installs every test dependency and runs the suite)",
            python.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("create the bus log");
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(&volume).expect("create the localstack volume");
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "localstack.runtime.main"])
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("LOCALSTACK_HOST", format!("127.0.0.1:{port}"))
            .env("SERVICES", "sqs,events")
            .env("EAGER_SERVICE_LOADING", "1")
            .env("GATEWAY_SERVER", "hypercorn")
            .env("DISABLE_EVENTS", "1")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1")
            .env("DNS_ADDRESS", "0")
            .env("SQS_ENDPOINT_STRATEGY", "path")
            .env("LOCALSTACK_VOLUME_DIR", &volume)
            .env("TMPDIR", dir.path());
        {
            use std::os::unix::process::CommandExt as _;
            // Its own process group, so that drop stops every process it started.
            cmd.process_group(0);
        }
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut bus = Self { child, port, dir, agent };
        bus.wait_ready(Duration::from_secs(90));
        bus
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the bus's LocalStack exited with {status} before it was ready; its log:\n{}", self.log());
            }
            let health = self.agent.get(format!("{}/_localstack/health", self.endpoint())).call();
            if let Ok(mut r) = health {
                let body = r.body_mut().read_to_string().unwrap_or_default();
                let running = |s: &str| {
                    body.contains(&format!("\"{s}\": \"running\"")) || body.contains(&format!("\"{s}\":\"running\""))
                };
                if r.status() == 200 && running("sqs") && running("events") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the bus's LocalStack not ready after {timeout:?}; its log:\n{}", self.log());
    }

    /// `http://127.0.0.1:PORT` (SQS and EventBridge).
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process's output so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// One JSON-protocol call (`target` e.g. `AmazonSQS.CreateQueue`).
    ///
    /// # Panics
    /// When the call fails.
    pub fn call(&self, service: &str, target: &str, body: &Value) -> Value {
        let version = if service == "sqs" { "1.0" } else { "1.1" };
        let date = "20260101";
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{date}/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=00",
            Self::ACCESS_KEY
        );
        let mut r = self
            .agent
            .post(format!("{}/", self.endpoint()))
            .header("Content-Type", format!("application/x-amz-json-{version}"))
            .header("X-Amz-Target", target)
            .header("Authorization", auth)
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        let status = r.status();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        assert!(status.is_success(), "{target} answered {status}: {text}");
        if text.trim().is_empty() { json!({}) } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    /// Creates a queue; returns its URL.
    #[must_use]
    pub fn create_queue(&self, name: &str) -> String {
        let r = self.call("sqs", "AmazonSQS.CreateQueue", &json!({"QueueName": name}));
        r["QueueUrl"].as_str().expect("QueueUrl").to_owned()
    }

    /// The ARN of a queue.
    #[must_use]
    pub fn queue_arn(&self, queue_url: &str) -> String {
        let r = self.call(
            "sqs",
            "AmazonSQS.GetQueueAttributes",
            &json!({"QueueUrl": queue_url, "AttributeNames": ["QueueArn"]}),
        );
        r["Attributes"]["QueueArn"].as_str().expect("QueueArn").to_owned()
    }

    /// Routes the events matching `pattern` on the default bus to the queue (a rule and its
    /// target), as the CloudFormation template does on AWS.
    pub fn route(&self, rule: &str, pattern: &Value, queue_url: &str) {
        self.call(
            "events",
            "AWSEvents.PutRule",
            &json!({"Name": rule, "EventPattern": pattern.to_string(), "State": "ENABLED"}),
        );
        let arn = self.queue_arn(queue_url);
        let r = self.call(
            "events",
            "AWSEvents.PutTargets",
            &json!({"Rule": rule, "Targets": [{"Id": "coffer", "Arn": arn}]}),
        );
        assert_eq!(r["FailedEntryCount"].as_u64().unwrap_or(0), 0, "PutTargets: {r}");
    }

    /// Puts one CloudTrail record on the default bus, as CloudTrail does.
    ///
    /// # Errors
    /// What the bus answered, when it did not take the entry.
    pub fn put_record(&self, record: &Value) -> Result<(), String> {
        BusDelivery::to(self).deliver(record)
    }

    /// Receives (and deletes) the messages on the queue until `want(messages)` is true or
    /// `deadline` passes, then for `settle` more to catch any extra; returns every message
    /// body as JSON (a body that is not JSON as a string).
    #[must_use]
    pub fn receive_until(
        &self,
        queue_url: &str,
        deadline: Duration,
        settle: Duration,
        want: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let start = Instant::now();
        let mut satisfied_at: Option<Instant> = None;
        loop {
            let r = self.call(
                "sqs",
                "AmazonSQS.ReceiveMessage",
                &json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0}),
            );
            let msgs = r["Messages"].as_array().cloned().unwrap_or_default();
            for m in &msgs {
                let body = m["Body"].as_str().unwrap_or_default();
                out.push(serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())));
                let handle = m["ReceiptHandle"].as_str().unwrap_or_default();
                self.call("sqs", "AmazonSQS.DeleteMessage", &json!({"QueueUrl": queue_url, "ReceiptHandle": handle}));
            }
            if satisfied_at.is_none() && want(&out) {
                satisfied_at = Some(Instant::now());
            }
            match satisfied_at {
                Some(at) if at.elapsed() >= settle => return out,
                None if start.elapsed() >= deadline => return out,
                _ => {}
            }
            if msgs.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for EventBus {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

fn stop_group(child: &mut Child) {
    let pid = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------

/// Where the proxy delivers its records.
pub trait Delivery: Send + Sync {
    /// Delivers one record.
    ///
    /// # Errors
    /// Why it was not taken.
    fn deliver(&self, record: &Value) -> Result<(), String>;
}

/// Delivery to an [`EventBus`] at `endpoint` (its own client, so the proxy's threads do not
/// borrow the bus).
#[derive(Debug, Clone)]
pub struct BusDelivery {
    endpoint: String,
}

impl BusDelivery {
    /// Delivers to `bus`.
    #[must_use]
    pub fn to(bus: &EventBus) -> Self {
        Self { endpoint: bus.endpoint() }
    }
}

impl Delivery for BusDelivery {
    fn deliver(&self, record: &Value) -> Result<(), String> {
        let entry = json!({
            "Source": "aws.s3",
            "DetailType": DETAIL_TYPE,
            "Detail": record.to_string(),
            "Resources": envelope(record)["resources"],
            // The JSON protocol's timestamps are epoch seconds.
            "Time": record["eventTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| t.as_second()),
            "EventBusName": "default",
        });
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/{REGION}/events/aws4_request, SignedHeaders=host, Signature=00",
            EventBus::ACCESS_KEY
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut r = agent
            .post(format!("{}/", self.endpoint))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header("X-Amz-Target", "AWSEvents.PutEvents")
            .header("Authorization", auth)
            .send(json!({"Entries": [entry]}).to_string())
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() && doc["FailedEntryCount"].as_u64() == Some(0) {
            Ok(())
        } else {
            Err(format!("PutEvents answered {status}: {text}"))
        }
    }
}

#[derive(Default)]
struct Log {
    records: Vec<Value>,
    errors: Vec<String>,
}

/// The HTTP proxy that writes a CloudTrail record for every S3 request it forwards (see the
/// module docs). Stops serving when dropped.
pub struct TrailProxy {
    addr: std::net::SocketAddr,
    server: Arc<tiny_http::Server>,
    log: Arc<Mutex<Log>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TrailProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailProxy").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: &[&str] =
    &["connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "expect"];

impl TrailProxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`), naming the callers
    /// by `users` (access key → IAM user name) and delivering each record to `delivery`.
    ///
    /// # Panics
    /// When no port can be bound.
    #[must_use]
    pub fn start(upstream: &str, users: BTreeMap<String, String>, delivery: Arc<dyn Delivery>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1"));
        let addr = server.server_addr().to_ip().expect("an IP listener");
        let log = Arc::new(Mutex::new(Log::default()));
        let users = Arc::new(users);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(ureq::config::AutoHeaderValue::None)
            .accept(ureq::config::AutoHeaderValue::None)
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let workers = (0..4)
            .map(|_| {
                let (server, log, users, delivery, agent) =
                    (Arc::clone(&server), Arc::clone(&log), Arc::clone(&users), Arc::clone(&delivery), agent.clone());
                let upstream = upstream.trim_end_matches('/').to_owned();
                std::thread::spawn(move || {
                    while let Ok(req) = server.recv() {
                        serve(req, &upstream, &agent, &users, delivery.as_ref(), &log);
                    }
                })
            })
            .collect();
        Self { addr, server, log, workers }
    }

    /// `http://127.0.0.1:PORT`: the endpoint clients use instead of the S3 server's.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `s3://` URL of `bucket`/`prefix` through the proxy.
    #[must_use]
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!("s3://{bucket}/{prefix}?endpoint={}&region={REGION}", self.endpoint())
    }

    /// Every record written so far (delivered or not), in order.
    #[must_use]
    pub fn records(&self) -> Vec<Value> {
        self.log.lock().expect("proxy log").records.clone()
    }

    /// Deliveries that failed (a test asserts there are none).
    #[must_use]
    pub fn delivery_errors(&self) -> Vec<String> {
        self.log.lock().expect("proxy log").errors.clone()
    }
}

impl Drop for TrailProxy {
    fn drop(&mut self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Whether the request's body is a small configuration document worth recording.
fn buffers_body(method: &str, t: &Target) -> bool {
    method != "GET"
        && method != "HEAD"
        && (t.key.is_none() || t.has("retention") || t.has("legal-hold") || t.has("tagging"))
        && !t.has("uploadId")
}

fn serve(
    mut req: tiny_http::Request,
    upstream: &str,
    agent: &ureq::Agent,
    users: &BTreeMap<String, String>,
    delivery: &dyn Delivery,
    log: &Mutex<Log>,
) {
    let method = req.method().as_str().to_owned();
    let url = req.url().to_owned();
    let t = Target::parse(&url);
    let mut headers = BTreeMap::new();
    let mut builder = ureq::http::Request::builder().method(method.as_str()).uri(format!("{upstream}{url}"));
    for h in req.headers() {
        let name = h.field.as_str().as_str().to_ascii_lowercase();
        headers.entry(name.clone()).or_insert_with(|| h.value.as_str().to_owned());
        if !HOP_BY_HOP.contains(&name.as_str()) {
            builder = builder.header(h.field.as_str().as_str(), h.value.as_str());
        }
    }
    let source_ip = req.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let length = req.body_length();
    let has_body = length.is_some_and(|l| l > 0) || headers.contains_key("transfer-encoding");
    let mut body = Vec::new();
    let result = if buffers_body(&method, &t) && has_body {
        // A configuration document: read it whole (bounded), record it, forward the bytes.
        let _ = req.as_reader().take(MAX_BUFFERED as u64).read_to_end(&mut body);
        let request = builder.body(body.clone()).expect("a request");
        agent.run(request)
    } else if has_body {
        let reader = req.as_reader();
        let request = builder.body(ureq::SendBody::from_reader(reader)).expect("a request");
        agent.run(request)
    } else {
        agent.run(builder.body(()).expect("a request"))
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            log.lock().expect("proxy log").errors.push(format!("{method} {url}: forwarding failed: {e}"));
            let _ = req.respond(tiny_http::Response::from_string("proxy: upstream failed").with_status_code(502));
            return;
        }
    };
    let status = response.status().as_u16();
    let mut out_headers = Vec::new();
    let mut content_length = None;
    for (name, value) in response.headers() {
        let n = name.as_str();
        if n == "content-length" {
            content_length = value.to_str().ok().and_then(|v| v.parse::<usize>().ok());
            continue;
        }
        if HOP_BY_HOP.contains(&n) {
            continue;
        }
        if let Ok(h) = tiny_http::Header::from_bytes(n.as_bytes(), value.as_bytes()) {
            out_headers.push(h);
        }
    }
    let mut reader = response.into_body().into_reader();
    let mut error_body = Vec::new();
    let ok = (200..300).contains(&status);
    if !ok && method != "HEAD" {
        let _ = (&mut reader).take(MAX_BUFFERED as u64).read_to_end(&mut error_body);
    }
    let ex = Exchange {
        method: method.clone(),
        url: url.clone(),
        headers,
        body,
        source_ip,
        status,
        error_body: error_body.clone(),
    };
    let rec = record(&ex, users, coffer_store::Clock::system().now());
    let delivered = delivery.deliver(&rec);
    {
        let mut l = log.lock().expect("proxy log");
        if let Err(e) = delivered {
            l.errors.push(format!("{method} {url}: {e}"));
        }
        l.records.push(rec);
    }
    let status_code = tiny_http::StatusCode(status);
    let _ = if ok || method == "HEAD" {
        req.respond(tiny_http::Response::new(status_code, out_headers, reader, content_length, None))
    } else {
        let len = error_body.len();
        req.respond(tiny_http::Response::new(
            status_code,
            out_headers,
            std::io::Cursor::new(error_body),
            Some(len),
            None,
        ))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn event_names_follow_cloudtrail() {
        let none = h(&[]);
        let n = |m: &str, u: &str| event_name(m, &Target::parse(u), &none).0;
        assert_eq!(n("PUT", "/b?object-lock"), "PutObjectLockConfiguration");
        assert_eq!(n("GET", "/b?object-lock"), "GetObjectLockConfiguration");
        assert_eq!(n("PUT", "/b?versioning"), "PutBucketVersioning");
        assert_eq!(n("PUT", "/b?policy"), "PutBucketPolicy");
        assert_eq!(n("DELETE", "/b?policy"), "DeleteBucketPolicy");
        assert_eq!(n("PUT", "/b?lifecycle"), "PutBucketLifecycle");
        assert_eq!(n("PUT", "/b?replication"), "PutBucketReplication");
        assert_eq!(n("PUT", "/b?publicAccessBlock"), "PutBucketPublicAccessBlock");
        assert_eq!(n("PUT", "/b/k?retention&versionId=v"), "PutObjectRetention");
        assert_eq!(n("PUT", "/b/k?legal-hold"), "PutObjectLegalHold");
        assert_eq!(n("DELETE", "/b/k?versionId=v"), "DeleteObject");
        assert_eq!(n("POST", "/b?delete"), "DeleteObjects");
        assert_eq!(n("DELETE", "/b"), "DeleteBucket");
        assert_eq!(n("DELETE", "/b/"), "DeleteBucket");
        assert_eq!(n("PUT", "/b/a%2Fb"), "PutObject");
        assert_eq!(n("GET", "/b/k"), "GetObject");
        assert_eq!(n("GET", "/b?versions&prefix=x"), "ListObjectVersions");
        assert_eq!(n("GET", "/"), "ListBuckets");
        assert_eq!(event_name("PUT", &Target::parse("/b/k"), &h(&[("x-amz-copy-source", "/b/j")])).0, "CopyObject");
    }

    #[test]
    fn a_denied_delete_becomes_a_record_with_its_principal_and_error() {
        let ex = Exchange {
            method: "DELETE".into(),
            url: "/bkt/data/one?versionId=V%2B1".into(),
            headers: h(&[
                ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAPRUNER/20261205/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab"),
                ("host", "127.0.0.1:9"),
                ("x-amz-bypass-governance-retention", "true"),
            ]),
            status: 403,
            error_body: b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied because object protected by object lock.</Message></Error>".to_vec(),
            source_ip: "127.0.0.1".into(),
            ..Exchange::default()
        };
        let users = h(&[("AKIAPRUNER", "coffer-pruner")]);
        let r = record(&ex, &users, coffer_store::Clock::system().now());
        assert_eq!(r["eventName"], "DeleteObject");
        assert_eq!(r["eventCategory"], "Data");
        assert_eq!(r["userIdentity"]["arn"], "arn:aws:iam::123456789012:user/coffer-pruner");
        assert_eq!(r["userIdentity"]["accessKeyId"], "AKIAPRUNER");
        assert_eq!(r["requestParameters"]["bucketName"], "bkt");
        assert_eq!(r["requestParameters"]["key"], "data/one");
        assert_eq!(r["requestParameters"]["versionId"], "V+1");
        assert_eq!(r["requestParameters"]["x-amz-bypass-governance-retention"], "true");
        assert_eq!(r["errorCode"], "AccessDenied");
        assert!(r["errorMessage"].as_str().unwrap().contains("object lock"));
        assert_eq!(r["readOnly"], false);
        let env = envelope(&r);
        assert_eq!(env["detail-type"], DETAIL_TYPE);
        assert_eq!(env["source"], "aws.s3");
        assert_eq!(env["detail"]["eventID"], r["eventID"]);
        // An unknown key: no ARN.
        let r = record(&ex, &BTreeMap::new(), coffer_store::Clock::system().now());
        assert_eq!(r["userIdentity"]["type"], "Unknown");
        assert!(r["userIdentity"].get("arn").is_none());
    }

    #[test]
    fn configuration_bodies_are_shown_and_hostile_ones_are_not_a_panic() {
        let v = xml_to_json(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>GOVERNANCE</Mode><RetainUntilDate>2026-12-06T00:00:00Z</RetainUntilDate></Retention>",
        )
        .unwrap();
        assert_eq!(v["Retention"]["Mode"], "GOVERNANCE");
        let v = xml_to_json("<A><B>1</B><B>2</B><C/></A>").unwrap();
        assert_eq!(v["A"]["B"], json!(["1", "2"]));
        for bad in ["", "<", "<A>", "<A><B></A>", "</A>", "<A>x", &"<A>".repeat(10_000)] {
            let _ = xml_to_json(bad);
        }
        assert_eq!(access_key("AWS4-HMAC-SHA256 Credential=/x"), None);
        assert_eq!(access_key("garbage"), None);
        assert_eq!(Target::parse("/b/k%zz%").key.as_deref(), Some("k%zz%"));
    }
}
