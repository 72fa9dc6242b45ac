//! What AWS needs to send the bucket's CloudTrail events to Coffer's queue: a CloudFormation
//! template (`coffer security aws-template`), or its parts as separate JSON documents.
//!
//! Invariant guarded: the EventBridge rule, the trail's event selectors and the consumer
//! ([`super::poll`]) are built from one list, [`WATCHED_EVENTS`]: an event the rule sends is
//! an event the consumer classifies, and an event the consumer expects is one the trail
//! records.
//!
//! Checked against AWS's CloudFormation reference (resource and property names) and tested
//! by deploying the rule pattern and its SQS target into LocalStack's EventBridge; never
//! deployed to AWS from here (`docs/security.md`).

use serde_json::{Value, json};

/// Whether CloudTrail records an event name as a management event (bucket level) or as an S3
/// data event (object level; recorded only by a trail with data events for the bucket,
/// billed per event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A bucket-level request: a management event.
    Bucket,
    /// An object-level request: a data event.
    Object,
}

/// The CloudTrail event names (`eventName`) that Coffer watches on the bucket, allowed or
/// denied: every request that changes or removes what protects the backups. S3's
/// `DeleteObjectVersion` permission is exercised by `DeleteObject` with a `versionId`, and
/// `PutBucketLifecycleConfiguration` is recorded as `PutBucketLifecycle`.
pub const WATCHED_EVENTS: &[(&str, Scope)] = &[
    ("PutObjectLockConfiguration", Scope::Bucket),
    ("PutBucketVersioning", Scope::Bucket),
    ("PutBucketPolicy", Scope::Bucket),
    ("DeleteBucketPolicy", Scope::Bucket),
    ("PutBucketLifecycle", Scope::Bucket),
    ("PutBucketLifecycleConfiguration", Scope::Bucket),
    ("DeleteBucketLifecycle", Scope::Bucket),
    ("PutBucketReplication", Scope::Bucket),
    ("DeleteBucketReplication", Scope::Bucket),
    ("PutBucketPublicAccessBlock", Scope::Bucket),
    ("DeleteBucketPublicAccessBlock", Scope::Bucket),
    ("PutBucketOwnershipControls", Scope::Bucket),
    ("DeleteBucketOwnershipControls", Scope::Bucket),
    ("PutBucketAcl", Scope::Bucket),
    ("DeleteBucket", Scope::Bucket),
    ("PutObjectRetention", Scope::Object),
    ("PutObjectLegalHold", Scope::Object),
    ("PutObjectAcl", Scope::Object),
    ("DeleteObject", Scope::Object),
    ("DeleteObjects", Scope::Object),
];

/// Whether `name` is one of [`WATCHED_EVENTS`].
#[must_use]
pub fn is_watched(name: &str) -> bool {
    WATCHED_EVENTS.iter().any(|(n, _)| *n == name)
}

/// The default queue name.
pub const DEFAULT_QUEUE_NAME: &str = "coffer-security-events";

/// What the template is for.
#[derive(Clone, Debug)]
pub struct TemplateOptions {
    /// The watched bucket.
    pub bucket: String,
    /// The SQS queue's name.
    pub queue_name: String,
}

/// Why no template could be made.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Not an S3 bucket name.
    #[error("{0:?} is not an S3 bucket name (3 to 63 characters of a-z, 0-9, '.' and '-')")]
    Bucket(String),
    /// Not an SQS queue name.
    #[error("{0:?} is not an SQS queue name (1 to 80 characters of A-Z, a-z, 0-9, '-' and '_')")]
    Queue(String),
}

impl TemplateError {
    /// A bad argument.
    #[must_use]
    pub fn class(&self) -> coffer_store::ErrorClass {
        coffer_store::ErrorClass::Invalid
    }
}

impl TemplateOptions {
    /// Checks the names (they are pasted into ARNs, policies and resource names).
    ///
    /// # Errors
    /// [`TemplateError`].
    pub fn new(bucket: &str, queue_name: &str) -> Result<Self, TemplateError> {
        let b = bucket.as_bytes();
        let bucket_ok = (3..=63).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric();
        if !bucket_ok {
            return Err(TemplateError::Bucket(bucket.to_owned()));
        }
        let q = queue_name.as_bytes();
        if q.is_empty() || q.len() > 80 || !q.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_') {
            return Err(TemplateError::Queue(queue_name.to_owned()));
        }
        Ok(Self { bucket: bucket.to_owned(), queue_name: queue_name.to_owned() })
    }

    fn trail_name(&self) -> String {
        // Trail names: letters, digits, '.', '_', '-'; a bucket name qualifies.
        format!("coffer-security-{}", self.bucket)
    }
}

/// The EventBridge rule's event pattern: the watched S3 calls on the bucket, as CloudTrail
/// delivers them to EventBridge.
#[must_use]
pub fn event_pattern(bucket: &str) -> Value {
    let names: Vec<&str> = WATCHED_EVENTS.iter().map(|(n, _)| *n).collect();
    json!({
        "source": ["aws.s3"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {
            "eventSource": ["s3.amazonaws.com"],
            "eventName": names,
            "requestParameters": { "bucketName": [bucket] },
        },
    })
}

/// The trail's advanced event selectors: the data events of the watched object-level calls
/// on the bucket (writes only: a read is never recorded, nor billed), and write management
/// events (where the bucket-level calls are).
#[must_use]
pub fn event_selectors(bucket: &str, partition: &str) -> Value {
    let data: Vec<&str> = WATCHED_EVENTS.iter().filter(|(_, s)| *s == Scope::Object).map(|(n, _)| *n).collect();
    json!([
        {
            "Name": format!("Coffer: data events on {bucket} that weaken or remove objects"),
            "FieldSelectors": [
                { "Field": "eventCategory", "Equals": ["Data"] },
                { "Field": "resources.type", "Equals": ["AWS::S3::Object"] },
                { "Field": "resources.ARN", "StartsWith": [format!("arn:{partition}:s3:::{bucket}/")] },
                { "Field": "readOnly", "Equals": ["false"] },
                { "Field": "eventName", "Equals": data },
            ],
        },
        {
            "Name": "Coffer: write management events (bucket configuration)",
            "FieldSelectors": [
                { "Field": "eventCategory", "Equals": ["Management"] },
                { "Field": "readOnly", "Equals": ["false"] },
            ],
        },
    ])
}

/// The queue policy: EventBridge may send to `queue_arn`, and only from `rule_arn`.
#[must_use]
pub fn queue_policy(queue_arn: &Value, rule_arn: &Value) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "CofferSecurityEventsFromEventBridge",
            "Effect": "Allow",
            "Principal": { "Service": "events.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": rule_arn } },
        }],
    })
}

/// The parts as separate documents (`--format json`), with placeholders for what only AWS
/// knows (`ACCOUNT`, `REGION`): `event-pattern` (for `aws events put-rule
/// --event-pattern`), `queue-policy`, `advanced-event-selectors` (for `aws cloudtrail
/// put-event-selectors --advanced-event-selectors`) and the watched event names.
#[must_use]
pub fn documents(opts: &TemplateOptions) -> Value {
    let queue_arn = json!(format!("arn:aws:sqs:REGION:ACCOUNT:{}", opts.queue_name));
    let rule_arn = json!(format!("arn:aws:events:REGION:ACCOUNT:rule/{}", opts.queue_name));
    json!({
        "bucket": opts.bucket,
        "queue-name": opts.queue_name,
        "watched-events": WATCHED_EVENTS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "event-pattern": event_pattern(&opts.bucket),
        "queue-policy": queue_policy(&queue_arn, &rule_arn),
        "advanced-event-selectors": event_selectors(&opts.bucket, "aws"),
    })
}

/// The CloudFormation template (JSON, which CloudFormation reads as it reads YAML): the SQS
/// queue and its policy, the EventBridge rule targeting it, and a trail (single-region, with
/// log file validation) with its own log bucket and bucket policy, recording the data events
/// of the watched bucket. Outputs: the queue's URL (Coffer's `queue-url`) and ARN.
#[must_use]
pub fn cloudformation(opts: &TemplateOptions) -> Value {
    let b = &opts.bucket;
    let trail_name = opts.trail_name();
    let trail_arn = json!({ "Fn::Sub": format!("arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:trail/{trail_name}") });
    let queue_arn = json!({ "Fn::GetAtt": ["SecurityEventsQueue", "Arn"] });
    let rule_arn = json!({ "Fn::GetAtt": ["SecurityEventsRule", "Arn"] });
    let mut selectors = event_selectors(b, "${AWS::Partition}");
    // The data selector's ARN prefix names the partition: substituted by CloudFormation.
    if let Some(fs) = selectors[0]["FieldSelectors"].as_array_mut() {
        for f in fs {
            if f["Field"] == "resources.ARN" {
                f["StartsWith"] = json!([{ "Fn::Sub": format!("arn:${{AWS::Partition}}:s3:::{b}/") }]);
            }
        }
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("Coffer security events for bucket {b}: CloudTrail (management and S3 data events) -> EventBridge rule -> SQS queue. Generated by `coffer security aws-template`."),
        "Resources": {
            "SecurityEventsQueue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "QueueName": opts.queue_name,
                    // The longest retention SQS allows: a daemon that is down for days loses nothing.
                    "MessageRetentionPeriod": 1_209_600,
                    "VisibilityTimeout": 60,
                    "SqsManagedSseEnabled": true,
                },
            },
            "SecurityEventsQueuePolicy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {
                    "Queues": [{ "Ref": "SecurityEventsQueue" }],
                    "PolicyDocument": queue_policy(&queue_arn, &rule_arn),
                },
            },
            "SecurityEventsRule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Name": opts.queue_name,
                    "Description": format!("Coffer: calls that weaken the protection of bucket {b}"),
                    "State": "ENABLED",
                    "EventPattern": event_pattern(b),
                    "Targets": [{ "Id": "coffer-queue", "Arn": queue_arn }],
                },
            },
            "TrailLogBucket": {
                "Type": "AWS::S3::Bucket",
                "DeletionPolicy": "Retain",
                "Properties": {
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": true,
                        "BlockPublicPolicy": true,
                        "IgnorePublicAcls": true,
                        "RestrictPublicBuckets": true,
                    },
                },
            },
            "TrailLogBucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": { "Ref": "TrailLogBucket" },
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "AWSCloudTrailAclCheck",
                                "Effect": "Allow",
                                "Principal": { "Service": "cloudtrail.amazonaws.com" },
                                "Action": "s3:GetBucketAcl",
                                "Resource": { "Fn::GetAtt": ["TrailLogBucket", "Arn"] },
                                "Condition": { "StringEquals": { "aws:SourceArn": trail_arn } },
                            },
                            {
                                "Sid": "AWSCloudTrailWrite",
                                "Effect": "Allow",
                                "Principal": { "Service": "cloudtrail.amazonaws.com" },
                                "Action": "s3:PutObject",
                                "Resource": { "Fn::Sub": "${TrailLogBucket.Arn}/AWSLogs/${AWS::AccountId}/*" },
                                "Condition": { "StringEquals": {
                                    "s3:x-amz-acl": "bucket-owner-full-control",
                                    "aws:SourceArn": trail_arn,
                                } },
                            },
                        ],
                    },
                },
            },
            "SecurityTrail": {
                "Type": "AWS::CloudTrail::Trail",
                "DependsOn": ["TrailLogBucketPolicy"],
                "Properties": {
                    "TrailName": trail_name,
                    "IsLogging": true,
                    "S3BucketName": { "Ref": "TrailLogBucket" },
                    "IsMultiRegionTrail": false,
                    "IncludeGlobalServiceEvents": true,
                    "EnableLogFileValidation": true,
                    "AdvancedEventSelectors": selectors,
                },
            },
        },
        "Outputs": {
            "QueueUrl": {
                "Description": "[repositories.NAME.security.cloudtrail] queue-url",
                "Value": { "Ref": "SecurityEventsQueue" },
            },
            "QueueArn": {
                "Description": "Grant the watch's credentials sqs:ReceiveMessage and sqs:DeleteMessage on this",
                "Value": queue_arn,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_policies() {
        assert!(TemplateOptions::new("my-backups", DEFAULT_QUEUE_NAME).is_ok());
        for bad in ["", "ab", "Upper", "a/b", "x\"y", "-lead", "trail-", &"a".repeat(64)] {
            assert!(matches!(TemplateOptions::new(bad, "q"), Err(TemplateError::Bucket(_))), "{bad:?}");
        }
        for bad in ["", "a b", "q\"", &"q".repeat(81)] {
            assert!(matches!(TemplateOptions::new("bucket", bad), Err(TemplateError::Queue(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_template_wires_rule_queue_and_trail_from_one_list() {
        let t = cloudformation(&TemplateOptions::new("my-backups", "q1").unwrap());
        let r = &t["Resources"];
        assert_eq!(r["SecurityEventsQueue"]["Type"], "AWS::SQS::Queue");
        assert_eq!(r["SecurityEventsQueuePolicy"]["Type"], "AWS::SQS::QueuePolicy");
        assert_eq!(r["SecurityEventsRule"]["Type"], "AWS::Events::Rule");
        assert_eq!(r["SecurityTrail"]["Type"], "AWS::CloudTrail::Trail");
        assert_eq!(r["TrailLogBucket"]["Type"], "AWS::S3::Bucket");
        assert_eq!(r["TrailLogBucketPolicy"]["Type"], "AWS::S3::BucketPolicy");
        let pattern = &r["SecurityEventsRule"]["Properties"]["EventPattern"];
        assert_eq!(pattern["detail"]["requestParameters"]["bucketName"], json!(["my-backups"]));
        assert_eq!(pattern["detail-type"], json!(["AWS API Call via CloudTrail"]));
        let names = pattern["detail"]["eventName"].as_array().unwrap();
        assert_eq!(names.len(), WATCHED_EVENTS.len());
        for n in ["PutObjectLockConfiguration", "PutBucketVersioning", "DeleteObject", "PutObjectRetention"] {
            assert!(names.contains(&json!(n)), "{n}");
        }
        assert_eq!(r["SecurityEventsRule"]["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0], "SecurityEventsQueue");
        let stmt = &r["SecurityEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
        assert_eq!(stmt["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(stmt["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0], "SecurityEventsRule");
        let sel = &r["SecurityTrail"]["Properties"]["AdvancedEventSelectors"][0]["FieldSelectors"];
        let data: Vec<&Value> = sel.as_array().unwrap().iter().filter(|f| f["Field"] == "eventName").collect();
        assert_eq!(
            data[0]["Equals"],
            json!(["PutObjectRetention", "PutObjectLegalHold", "PutObjectAcl", "DeleteObject", "DeleteObjects"])
        );
        assert_eq!(r["SecurityTrail"]["Properties"]["S3BucketName"]["Ref"], "TrailLogBucket");
    }
}
