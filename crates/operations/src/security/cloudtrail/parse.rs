//! Reading a queue message: an EventBridge envelope around a CloudTrail record, a bare
//! CloudTrail record, or a CloudTrail log file's `{"Records": […]}`.
//!
//! Invariant guarded: a message body is hostile input (whoever can send to the queue, or
//! forge an event, writes it). It is bounded in size, every field taken from it is bounded
//! in length and stripped of control characters (it ends up in alert subjects, e-mails and
//! chat messages), and nothing in it can make the reader panic: what does not parse is an
//! error the caller reports.

use jiff::Timestamp;
use serde_json::Value;

/// The largest body read (SQS's own maximum message size is 1 MiB).
pub const MAX_BODY: usize = 1 << 20;

/// The most records taken from one `{"Records": […]}` body.
pub const MAX_RECORDS: usize = 1000;

/// The longest field kept (an S3 key is at most 1024 bytes; ARNs are shorter than this).
pub const MAX_FIELD: usize = 2048;

/// Who made a request, as CloudTrail's `userIdentity` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// `type`: `IAMUser`, `AssumedRole`, `Root`, `AWSService`, `AWSAccount`, …
    pub kind: Option<String>,
    /// `arn`.
    pub arn: Option<String>,
    /// `userName`.
    pub user_name: Option<String>,
    /// `accessKeyId`.
    pub access_key_id: Option<String>,
    /// `principalId`.
    pub principal_id: Option<String>,
    /// `accountId`.
    pub account_id: Option<String>,
    /// `sessionContext.sessionIssuer.arn`: the role behind an assumed-role session.
    pub issuer_arn: Option<String>,
    /// `invokedBy`: the AWS service that made the call for the principal.
    pub invoked_by: Option<String>,
}

impl Identity {
    /// Every name the principal goes by (for matching against the known ones).
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        [&self.arn, &self.issuer_arn, &self.access_key_id, &self.user_name, &self.principal_id]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The name shown: the ARN, else the user name, the access key, the principal id.
    #[must_use]
    pub fn display(&self) -> String {
        self.names().first().map_or_else(|| "anonymous".to_owned(), |s| (*s).to_owned())
    }
}

/// One CloudTrail record, the fields Coffer uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrailRecord {
    /// `eventID`: CloudTrail's unique id (the deduplication key).
    pub event_id: Option<String>,
    /// `eventName`: the API call.
    pub event_name: String,
    /// `eventSource`, e.g. `s3.amazonaws.com`.
    pub event_source: Option<String>,
    /// `eventTime`, if it parses.
    pub event_time: Option<Timestamp>,
    /// `eventTime` as given, when it does not parse.
    pub event_time_raw: Option<String>,
    /// `awsRegion`.
    pub region: Option<String>,
    /// `sourceIPAddress`.
    pub source_ip: Option<String>,
    /// `userAgent`.
    pub user_agent: Option<String>,
    /// `errorCode`: present when the request failed (`AccessDenied`, …).
    pub error_code: Option<String>,
    /// `errorMessage`.
    pub error_message: Option<String>,
    /// `userIdentity`.
    pub identity: Identity,
    /// `requestParameters.bucketName`.
    pub bucket: Option<String>,
    /// `requestParameters.key`.
    pub key: Option<String>,
    /// `requestParameters.versionId`.
    pub version_id: Option<String>,
    /// `requestParameters["x-amz-bypass-governance-retention"]` is true.
    pub bypass_governance: bool,
    /// `requestParameters.LegalHold.Status` (`ON`, `OFF`).
    pub legal_hold: Option<String>,
    /// `requestParameters.Retention.{Mode,RetainUntilDate}`.
    pub retention: Option<String>,
    /// `requestParameters.VersioningConfiguration.Status` (and `MfaDelete`).
    pub versioning: Option<String>,
    /// The EventBridge envelope's `id`, if there was one.
    pub envelope_id: Option<String>,
}

/// Why a body was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable(pub String);

/// Reads a message body.
///
/// # Errors
/// [`Unreadable`] saying why (too large, not JSON, not a CloudTrail record).
pub fn parse_body(body: &str) -> Result<Vec<TrailRecord>, Unreadable> {
    if body.len() > MAX_BODY {
        return Err(Unreadable(format!("a body of {} bytes (more than {MAX_BODY})", body.len())));
    }
    // serde_json refuses nesting deeper than 128 levels: no stack exhaustion here.
    let v: Value = serde_json::from_str(body)
        .map_err(|e| Unreadable(format!("not JSON (line {}, column {})", e.line(), e.column())))?;
    if let Some(records) = v.get("Records").and_then(Value::as_array) {
        if records.is_empty() || records.len() > MAX_RECORDS {
            return Err(Unreadable(format!("a Records list of {} entries", records.len())));
        }
        return records.iter().map(|r| record(r, None)).collect();
    }
    if let Some(detail) = v.get("detail").filter(|d| d.is_object()) {
        if let Some(dt) = v.get("detail-type").and_then(Value::as_str) {
            if dt != "AWS API Call via CloudTrail" {
                return Err(Unreadable(format!("an EventBridge event of detail-type {:?}", bounded(dt))));
            }
        }
        let id = v.get("id").and_then(Value::as_str).map(bounded);
        return Ok(vec![record(detail, id)?]);
    }
    Ok(vec![record(&v, None)?])
}

fn record(v: &Value, envelope_id: Option<String>) -> Result<TrailRecord, Unreadable> {
    if !v.is_object() {
        return Err(Unreadable("not a JSON object".into()));
    }
    let event_name =
        text(v, &["eventName"]).ok_or_else(|| Unreadable("not a CloudTrail record (no eventName)".into()))?;
    let raw_time = text(v, &["eventTime"]);
    let event_time = raw_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let id = |path: &[&str]| text(v, &[&["userIdentity"], path].concat());
    let rp = |path: &[&str]| text(v, &[&["requestParameters"], path].concat());
    let retention = match (rp(&["Retention", "Mode"]), rp(&["Retention", "RetainUntilDate"])) {
        (None, None) => None,
        (m, u) => Some(format!("{} until {}", m.as_deref().unwrap_or("-"), u.as_deref().unwrap_or("-"))),
    };
    let versioning =
        rp(&["VersioningConfiguration", "Status"]).map(|s| match rp(&["VersioningConfiguration", "MfaDelete"]) {
            Some(m) => format!("{s} (MfaDelete {m})"),
            None => s,
        });
    Ok(TrailRecord {
        event_id: text(v, &["eventID"]),
        event_source: text(v, &["eventSource"]),
        event_time_raw: if event_time.is_none() { raw_time } else { None },
        event_time,
        region: text(v, &["awsRegion"]),
        source_ip: text(v, &["sourceIPAddress"]),
        user_agent: text(v, &["userAgent"]),
        error_code: text(v, &["errorCode"]).filter(|s| !s.is_empty()),
        error_message: text(v, &["errorMessage"]),
        identity: Identity {
            kind: id(&["type"]),
            arn: id(&["arn"]),
            user_name: id(&["userName"]),
            access_key_id: id(&["accessKeyId"]),
            principal_id: id(&["principalId"]),
            account_id: id(&["accountId"]),
            issuer_arn: id(&["sessionContext", "sessionIssuer", "arn"]),
            invoked_by: id(&["invokedBy"]),
        },
        bucket: rp(&["bucketName"]),
        key: rp(&["key"]),
        version_id: rp(&["versionId"]),
        bypass_governance: rp(&["x-amz-bypass-governance-retention"]).is_some_and(|s| s.eq_ignore_ascii_case("true")),
        legal_hold: rp(&["LegalHold", "Status"]),
        retention,
        versioning,
        envelope_id,
        event_name,
    })
}

/// The string (or number, or boolean) at `path`, bounded and without control characters.
fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) => Some(bounded(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `s` without control characters, at most [`MAX_FIELD`] characters (an ellipsis marks a cut).
#[must_use]
pub fn bounded(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(MAX_FIELD).collect();
    if s.chars().filter(|c| !c.is_control()).nth(MAX_FIELD).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CloudTrail's documented shape of an S3 call delivered by EventBridge.
    const ENVELOPE: &str = r#"{
      "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
      "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3",
      "account": "111122223333", "time": "2026-12-05T10:00:00Z", "region": "eu-west-1",
      "resources": [],
      "detail": {
        "eventVersion": "1.09",
        "userIdentity": {
          "type": "AssumedRole", "principalId": "AROAEXAMPLE:mallory",
          "arn": "arn:aws:sts::111122223333:assumed-role/ops/mallory",
          "accountId": "111122223333", "accessKeyId": "ASIAEXAMPLE",
          "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/ops"}}
        },
        "eventTime": "2026-12-05T09:59:58Z", "eventSource": "s3.amazonaws.com",
        "eventName": "PutObjectLockConfiguration", "awsRegion": "eu-west-1",
        "sourceIPAddress": "203.0.113.9", "userAgent": "aws-cli/2",
        "errorCode": "AccessDenied", "errorMessage": "Access Denied",
        "requestParameters": {"bucketName": "my-backups", "object-lock": ""},
        "responseElements": null,
        "eventID": "f0a6d8c2-1111-4e2b-9a3c-000000000001",
        "readOnly": false, "eventType": "AwsApiCall", "managementEvent": true
      }
    }"#;

    #[test]
    fn an_eventbridge_envelope_yields_its_cloudtrail_record() {
        let r = parse_body(ENVELOPE).unwrap();
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!(r.event_name, "PutObjectLockConfiguration");
        assert_eq!(r.event_id.as_deref(), Some("f0a6d8c2-1111-4e2b-9a3c-000000000001"));
        assert_eq!(r.error_code.as_deref(), Some("AccessDenied"));
        assert_eq!(r.identity.arn.as_deref(), Some("arn:aws:sts::111122223333:assumed-role/ops/mallory"));
        assert_eq!(r.identity.issuer_arn.as_deref(), Some("arn:aws:iam::111122223333:role/ops"));
        assert_eq!(r.identity.access_key_id.as_deref(), Some("ASIAEXAMPLE"));
        assert_eq!(r.bucket.as_deref(), Some("my-backups"));
        assert_eq!(r.event_time, Some("2026-12-05T09:59:58Z".parse().unwrap()));
        assert_eq!(r.source_ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(r.envelope_id.as_deref(), Some("6a7e8feb-b491-4cf7-a9f1-bf3703467718"));
    }

    #[test]
    fn a_bare_record_and_a_log_file_are_read_too() {
        let v: Value = serde_json::from_str(ENVELOPE).unwrap();
        let bare = v["detail"].to_string();
        assert_eq!(parse_body(&bare).unwrap()[0].event_name, "PutObjectLockConfiguration");
        let file = serde_json::json!({ "Records": [v["detail"], v["detail"]] }).to_string();
        assert_eq!(parse_body(&file).unwrap().len(), 2);
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        let deep = "[".repeat(100_000);
        let huge = format!("{{\"eventName\":\"{}\"}}", "a".repeat(MAX_BODY));
        let many =
            serde_json::json!({ "Records": vec![serde_json::json!({"eventName": "x"}); MAX_RECORDS + 1] }).to_string();
        for body in [
            "",
            "not json",
            "null",
            "[]",
            "42",
            "{}",
            r#"{"detail": {}}"#,
            r#"{"detail-type": "Scheduled Event", "detail": {"eventName": "x"}}"#,
            r#"{"Records": []}"#,
            r#"{"eventName": {"nested": true}}"#,
            &deep,
            &huge,
            &many,
        ] {
            assert!(parse_body(body).is_err(), "{:.60}", body);
        }
    }

    #[test]
    fn fields_are_bounded_and_stripped_of_control_characters() {
        let body = serde_json::json!({
            "eventName": "DeleteObject",
            "userIdentity": {"arn": "arn:x\r\nBcc: victim@example.com", "userName": 42},
            "requestParameters": {"bucketName": "b", "key": "k".repeat(5000), "versionId": "v1",
                                  "x-amz-bypass-governance-retention": "true"},
            "eventTime": "yesterday"
        })
        .to_string();
        let r = &parse_body(&body).unwrap()[0];
        assert_eq!(r.identity.arn.as_deref(), Some("arn:xBcc: victim@example.com"));
        assert_eq!(r.identity.user_name.as_deref(), Some("42"));
        assert_eq!(r.key.as_ref().unwrap().chars().count(), MAX_FIELD + 1);
        assert!(r.bypass_governance);
        assert_eq!(r.event_time, None);
        assert_eq!(r.event_time_raw.as_deref(), Some("yesterday"));
    }
}
