//! The bucket's protective configuration, field by field, for the drift watch
//! ([`crate::ObjectStore::protection`], `docs/security.md`).
//!
//! Invariant guarded here: a setting that is *not configured* is a value (`none`), never an
//! error, and a setting that *cannot be read* (access denied, a server that does not answer,
//! a reply that cannot be parsed) goes to `unreadable` with one line — never a silent skip,
//! never a secret. Every value is canonical text, so two readings of an unchanged bucket are
//! equal byte for byte: JSON documents are parsed, their keys sorted, and printed compact;
//! lists keep the server's order (a rule's position can matter).

use super::S3Store;
use crate::model::{Protection, Versioning};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use serde_json::{Map, Value, json};

/// The longest `unreadable` reason kept (one line).
const MAX_REASON: usize = 300;
/// The longest bucket policy parsed; a longer one (AWS allows 20 KiB) is kept as a digest.
const MAX_POLICY: usize = 256 * 1024;
/// The longest raw `GetBucketVersioning` reply read when the SDK cannot parse it.
const MAX_VERSIONING_REPLY: usize = 64 * 1024;

/// What reading one field gave.
enum Read {
    Value(String),
    Unreadable(String),
}

impl S3Store {
    /// Reads every protective field of the bucket (see the module docs): the lock
    /// configuration, versioning, bucket policy, public access block, ownership controls,
    /// lifecycle and replication rules. One request per field.
    pub(super) fn read_protection(&self) -> Protection {
        let mut p = Protection::default();
        p.add_lock_config(self.run(self.lock_config_async()));
        let reads = [
            ("versioning", self.run(self.versioning_field())),
            ("bucket-policy", self.run(self.policy_field())),
            ("public-access-block", self.run(self.public_access_block_field())),
            ("ownership-controls", self.run(self.ownership_field())),
            ("lifecycle", self.run(self.lifecycle_field())),
            ("replication", self.run(self.replication_field())),
        ];
        for (name, read) in reads {
            match read {
                Read::Value(v) => p.fields.insert(name.into(), v),
                Read::Unreadable(why) => p.unreadable.insert(name.into(), why),
            };
        }
        p
    }

    async fn versioning_field(&self) -> Read {
        match self.inner.client.get_bucket_versioning().bucket(self.bucket()).send().await {
            Ok(out) => {
                Read::Value(versioning_text(out.status().map(aws_sdk_s3::types::BucketVersioningStatus::as_str)))
            }
            // moto 5.2.5 answers 200 with a `GetBucketVersioningResponse` root the SDK
            // rejects (quirk `get-bucket-versioning-unparseable`): the status is read from
            // the raw reply, bounded, as the only element this field needs.
            Err(e) => match unparsed_200(&e).and_then(|body| versioning_from_xml(&body)) {
                Some(status) => Read::Value(versioning_text(status.as_deref())),
                None => Read::Unreadable(reason(&e)),
            },
        }
    }

    async fn policy_field(&self) -> Read {
        match self.inner.client.get_bucket_policy().bucket(self.bucket()).send().await {
            Ok(out) => Read::Value(out.policy().map_or_else(|| "none".to_owned(), canonical_policy)),
            Err(e) => none_or(&e, &["NoSuchBucketPolicy"]),
        }
    }

    async fn public_access_block_field(&self) -> Read {
        match self.inner.client.get_public_access_block().bucket(self.bucket()).send().await {
            Ok(out) => Read::Value(out.public_access_block_configuration().map_or_else(
                || "none".to_owned(),
                |c| {
                    let f = |b: Option<bool>| b.unwrap_or(false);
                    format!(
                        "block-public-acls={} ignore-public-acls={} block-public-policy={} restrict-public-buckets={}",
                        f(c.block_public_acls()),
                        f(c.ignore_public_acls()),
                        f(c.block_public_policy()),
                        f(c.restrict_public_buckets())
                    )
                },
            )),
            Err(e) => none_or(&e, &["NoSuchPublicAccessBlockConfiguration"]),
        }
    }

    async fn ownership_field(&self) -> Read {
        match self.inner.client.get_bucket_ownership_controls().bucket(self.bucket()).send().await {
            Ok(out) => {
                let rules: Vec<&str> = out
                    .ownership_controls()
                    .map(|c| c.rules().iter().map(|r| r.object_ownership().as_str()).collect())
                    .unwrap_or_default();
                Read::Value(if rules.is_empty() { "none".to_owned() } else { rules.join(",") })
            }
            Err(e) => none_or(&e, &["OwnershipControlsNotFoundError"]),
        }
    }

    async fn lifecycle_field(&self) -> Read {
        match self.inner.client.get_bucket_lifecycle_configuration().bucket(self.bucket()).send().await {
            Ok(out) if out.rules().is_empty() => Read::Value("none".into()),
            Ok(out) => Read::Value(canonical(&Value::Array(out.rules().iter().map(lifecycle_rule).collect()))),
            Err(e) => none_or(&e, &["NoSuchLifecycleConfiguration"]),
        }
    }

    async fn replication_field(&self) -> Read {
        match self.inner.client.get_bucket_replication().bucket(self.bucket()).send().await {
            Ok(out) => Read::Value(out.replication_configuration().map_or_else(
                || "none".to_owned(),
                |c| {
                    let rules: Vec<Value> = c.rules().iter().map(replication_rule).collect();
                    canonical(&json!({ "role": c.role(), "rules": rules }))
                },
            )),
            Err(e) => none_or(&e, &["ReplicationConfigurationNotFoundError"]),
        }
    }
}

/// `none` when the server says the setting is not configured (one of `codes`), else
/// `unreadable` with the reason.
fn none_or<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    e: &SdkError<E, HttpResponse>,
    codes: &[&str],
) -> Read {
    if e.code().is_some_and(|c| codes.contains(&c)) { Read::Value("none".into()) } else { Read::Unreadable(reason(e)) }
}

/// One line saying why a field could not be read: the server's code and message, or the
/// SDK's chain of messages (which holds no credentials), bounded.
fn reason<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    e: &SdkError<E, HttpResponse>,
) -> String {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let text = match (e.code(), e.message(), status) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c.to_owned(),
        (None, _, Some(s)) => format!("HTTP {s}: {}", crate::error::display_chain(e)),
        (None, _, None) => crate::error::display_chain(e),
    };
    one_line(&text)
}

fn one_line(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > MAX_REASON {
        let cut: String = flat.chars().take(MAX_REASON).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// The body of a 200 reply the SDK could not parse, if it is small enough to look at.
fn unparsed_200<E>(e: &SdkError<E, HttpResponse>) -> Option<String> {
    let raw = e.raw_response()?;
    if raw.status().as_u16() != 200 {
        return None;
    }
    let bytes = raw.body().bytes()?;
    if bytes.len() > MAX_VERSIONING_REPLY {
        return None;
    }
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// The `<Status>` of a versioning reply: `Some(None)` when the reply has no status (a
/// bucket that never had versioning), `None` when it is not a versioning reply at all.
fn versioning_from_xml(body: &str) -> Option<Option<String>> {
    if !body.contains("Versioning") {
        return None;
    }
    let Some(start) = body.find("<Status>") else { return Some(None) };
    let rest = &body[start + "<Status>".len()..];
    let end = rest.find("</Status>")?;
    let status = rest[..end].trim();
    matches!(status, "Enabled" | "Suspended").then(|| Some(status.to_owned()))
}

/// The field's text: as [`Versioning`] shows it; no status at all (never enabled) is
/// `suspended`, as `versioning()` reports it.
fn versioning_text(status: Option<&str>) -> String {
    match status {
        Some("Enabled") => Versioning::Enabled.to_string(),
        Some("Suspended") | None => Versioning::Suspended.to_string(),
        Some(other) => format!("unknown:{}", one_line(other)),
    }
}

/// A bucket policy as canonical JSON; one that does not parse (or is too long) is kept as
/// its SHA-256, so a change still shows.
fn canonical_policy(policy: &str) -> String {
    use sha2::Digest as _;
    if policy.len() <= MAX_POLICY {
        if let Ok(v) = serde_json::from_str::<Value>(policy) {
            return canonical(&v);
        }
    }
    format!("unparsed:sha256:{}", hex::encode(sha2::Sha256::digest(policy.as_bytes())))
}

/// `v` printed compact with every object's keys sorted (arrays keep their order).
#[must_use]
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json's map is ordered by key unless `preserve_order` is on; sorting here keeps
    // the text canonical either way.
    sorted(v).to_string()
}

/// Inserts `k: v` when `v` is not null.
fn put(m: &mut Map<String, Value>, k: &str, v: Value) {
    if !v.is_null() {
        m.insert(k.to_owned(), v);
    }
}

fn date(d: Option<&aws_smithy_types::DateTime>) -> Value {
    d.and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()).map_or(Value::Null, Value::String)
}

fn tag(t: &aws_sdk_s3::types::Tag) -> Value {
    json!({ "key": t.key(), "value": t.value() })
}

// `prefix` is deprecated in favour of `filter`, but a bucket may still carry it: a change
// there must show.
#[allow(deprecated)]
fn lifecycle_rule(r: &aws_sdk_s3::types::LifecycleRule) -> Value {
    let mut m = Map::new();
    put(&mut m, "id", json!(r.id()));
    put(&mut m, "status", json!(r.status().as_str()));
    put(&mut m, "prefix", json!(r.prefix()));
    if let Some(f) = r.filter() {
        let mut fm = Map::new();
        put(&mut fm, "prefix", json!(f.prefix()));
        put(&mut fm, "tag", f.tag().map_or(Value::Null, tag));
        put(&mut fm, "object-size-greater-than", json!(f.object_size_greater_than()));
        put(&mut fm, "object-size-less-than", json!(f.object_size_less_than()));
        if let Some(a) = f.and() {
            let mut am = Map::new();
            put(&mut am, "prefix", json!(a.prefix()));
            put(&mut am, "tags", Value::Array(a.tags().iter().map(tag).collect()));
            put(&mut am, "object-size-greater-than", json!(a.object_size_greater_than()));
            put(&mut am, "object-size-less-than", json!(a.object_size_less_than()));
            fm.insert("and".into(), Value::Object(am));
        }
        m.insert("filter".into(), Value::Object(fm));
    }
    if let Some(e) = r.expiration() {
        let mut em = Map::new();
        put(&mut em, "days", json!(e.days()));
        put(&mut em, "date", date(e.date()));
        put(&mut em, "expired-object-delete-marker", json!(e.expired_object_delete_marker()));
        m.insert("expiration".into(), Value::Object(em));
    }
    let transitions: Vec<Value> = r
        .transitions()
        .iter()
        .map(|t| json!({ "days": t.days(), "date": date(t.date()), "storage-class": t.storage_class().map(|s| s.as_str()) }))
        .collect();
    if !transitions.is_empty() {
        m.insert("transitions".into(), Value::Array(transitions));
    }
    let nc: Vec<Value> = r
        .noncurrent_version_transitions()
        .iter()
        .map(|t| {
            json!({
                "noncurrent-days": t.noncurrent_days(),
                "newer-noncurrent-versions": t.newer_noncurrent_versions(),
                "storage-class": t.storage_class().map(|s| s.as_str()),
            })
        })
        .collect();
    if !nc.is_empty() {
        m.insert("noncurrent-version-transitions".into(), Value::Array(nc));
    }
    if let Some(e) = r.noncurrent_version_expiration() {
        m.insert(
            "noncurrent-version-expiration".into(),
            json!({ "noncurrent-days": e.noncurrent_days(), "newer-noncurrent-versions": e.newer_noncurrent_versions() }),
        );
    }
    if let Some(a) = r.abort_incomplete_multipart_upload() {
        m.insert("abort-incomplete-multipart-upload-days".into(), json!(a.days_after_initiation()));
    }
    Value::Object(m)
}

#[allow(deprecated)]
fn replication_rule(r: &aws_sdk_s3::types::ReplicationRule) -> Value {
    let mut m = Map::new();
    put(&mut m, "id", json!(r.id()));
    put(&mut m, "priority", json!(r.priority()));
    put(&mut m, "status", json!(r.status().as_str()));
    put(&mut m, "prefix", json!(r.prefix()));
    if let Some(f) = r.filter() {
        let mut fm = Map::new();
        put(&mut fm, "prefix", json!(f.prefix()));
        put(&mut fm, "tag", f.tag().map_or(Value::Null, tag));
        if let Some(a) = f.and() {
            fm.insert(
                "and".into(),
                json!({ "prefix": a.prefix(), "tags": a.tags().iter().map(tag).collect::<Vec<_>>() }),
            );
        }
        m.insert("filter".into(), Value::Object(fm));
    }
    if let Some(d) = r.destination() {
        m.insert(
            "destination".into(),
            json!({
                "bucket": d.bucket(),
                "account": d.account(),
                "storage-class": d.storage_class().map(|s| s.as_str()),
            }),
        );
    }
    if let Some(d) = r.delete_marker_replication() {
        put(&mut m, "delete-marker-replication", json!(d.status().map(|s| s.as_str())));
    }
    if let Some(e) = r.existing_object_replication() {
        put(&mut m, "existing-object-replication", json!(e.status().as_str()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_is_compact() {
        let a = canonical(&serde_json::from_str(r#"{ "b": 1, "a": {"d": [2, 1], "c": null} }"#).unwrap());
        assert_eq!(a, r#"{"a":{"c":null,"d":[2,1]},"b":1}"#);
        assert_eq!(
            canonical_policy(r#"{"Version":"2012-10-17","Statement":[]}"#),
            r#"{"Statement":[],"Version":"2012-10-17"}"#
        );
        assert!(canonical_policy("{not json").starts_with("unparsed:sha256:"));
    }

    #[test]
    fn motos_versioning_reply_is_read_from_its_raw_xml() {
        let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<GetBucketVersioningResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Suspended</Status></GetBucketVersioningResponse>"#;
        assert_eq!(versioning_from_xml(moto), Some(Some("Suspended".into())));
        assert_eq!(versioning_from_xml("<VersioningConfiguration/>"), Some(None));
        assert_eq!(versioning_from_xml("<Error>nope</Error>"), None);
        assert_eq!(versioning_from_xml("<VersioningConfiguration><Status>Evil</Status>"), None);
        assert_eq!(versioning_text(None), "suspended");
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        let long = "x\n".repeat(400);
        let r = one_line(&long);
        assert!(!r.contains('\n'));
        assert!(r.chars().count() <= MAX_REASON + 1);
    }
}
