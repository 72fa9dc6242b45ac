//! `S3Store` against real S3 servers started here: the whole contract suite on LocalStack
//! (the Object Lock oracle) and on moto (plumbing), and a probe of every documented quirk
//! of each server, so `docs/s3-compatibility.md` stays true.
//!
//! One server per test (nextest runs each test in its own process), and few tests: a
//! server takes seconds to start. Without an installed server a test fails, naming the
//! command that installs it (see `coffer_testkit::s3`).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode, VersioningConfiguration,
};
use aws_smithy_types::DateTime;
use coffer_store::{
    ErrorKind, ObjectStore as _, PutOptions, Retention, RetentionMode, Role, S3Location, S3Store, StoreError,
};
use coffer_testkit::contract::{self as suite, CHECKS};
use coffer_testkit::s3::{Quirk, S3Harness, S3Server, ServerKind};
use std::collections::BTreeMap;
use std::time::Instant;

/// Runs the suite through `S3Store` on `kind`: every check passes except exactly those a
/// documented quirk breaks, which must fail (or, for a timing-dependent quirk, may).
fn contract_on(kind: ServerKind) {
    let server = S3Server::start(kind);
    let h = S3Harness::new(&server);
    let start = Instant::now();
    let results = suite::run_each(&h);
    let broken: BTreeMap<&str, &Quirk> =
        kind.quirks().iter().flat_map(|q| q.breaks.iter().map(move |c| (*c, q))).collect();
    let maybe: BTreeMap<&str, &Quirk> =
        kind.quirks().iter().flat_map(|q| q.may_break.iter().map(move |c| (*c, q))).collect();
    let mut problems = Vec::new();
    for (name, outcome) in &results {
        if let Some(q) = maybe.get(name) {
            let seen = if outcome.is_ok() { "passed" } else { "failed" };
            eprintln!("{name} {seen} on {} (quirk {} breaks it with some timings)", kind.name(), q.name);
            continue;
        }
        match (outcome, broken.get(name)) {
            (Ok(()), None) => {}
            (Err(msg), None) => problems.push(format!("{name}: {msg}")),
            (Err(msg), Some(q)) => eprintln!("expected failure of {name} on {} (quirk {}): {msg}", kind.name(), q.name),
            (Ok(()), Some(q)) => problems.push(format!(
                "{name} passes on {}, but quirk {} is documented to break it: update the quirk",
                kind.name(),
                q.name
            )),
        }
    }
    let ran: Vec<&str> = results.iter().map(|(n, _)| *n).collect();
    for c in CHECKS.iter().filter(|c| !c.needs_clock) {
        assert!(ran.contains(&c.name), "{} was not run", c.name);
    }
    eprintln!("contract suite on {}: {} checks in {:.1?}", kind.name(), results.len(), start.elapsed());
    assert!(problems.is_empty(), "{} on {}:\n{}", problems.len(), kind.name(), problems.join("\n"));
}

#[test]
fn contract_suite_on_localstack() {
    contract_on(ServerKind::LocalStack);
}

#[test]
fn contract_suite_on_moto() {
    contract_on(ServerKind::Moto);
}

/// Raw S3 calls that bypass `S3Store`'s own checks, for probing a server.
struct Raw<'a> {
    store: &'a S3Store,
    bucket: String,
}

impl Raw<'_> {
    fn put_locked(&self, key: &str, mode: ObjectLockMode, until: i64) -> Result<String, String> {
        let c = self.store.client();
        let body = b"probe".to_vec();
        let md5 = {
            use base64::Engine as _;
            use md5::Digest as _;
            base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body))
        };
        self.store
            .block_on(
                c.put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(body))
                    .content_md5(md5)
                    .object_lock_mode(mode)
                    .object_lock_retain_until_date(DateTime::from_secs(until))
                    .send(),
            )
            .map(|o| o.version_id().unwrap_or_default().to_owned())
            .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
    }

    fn put_retention(&self, key: &str, version: &str, mode: ObjectLockRetentionMode, until: i64) -> Result<(), String> {
        let c = self.store.client();
        let r = ObjectLockRetention::builder().mode(mode).retain_until_date(DateTime::from_secs(until)).build();
        self.store
            .block_on(c.put_object_retention().bucket(&self.bucket).key(key).version_id(version).retention(r).send())
            .map(drop)
            .map_err(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
    }
}

/// The kinds of the entries of a raw `ListObjectVersions` reply, in the reply's order.
trait RawList {
    fn store_list_versions_raw(&self, bucket: &str) -> Result<Vec<&'static str>, String>;
}

impl RawList for S3Store {
    fn store_list_versions_raw(&self, bucket: &str) -> Result<Vec<&'static str>, String> {
        let port = self.location().endpoint.clone().unwrap_or_default();
        let url = format!("{port}/{bucket}?versions");
        // Unsigned: both servers accept it without auth. The reply's order is what matters.
        let body = http_get_url(&url)?;
        let mut kinds = Vec::new();
        let mut rest = body.as_str();
        loop {
            let v = rest.find("<Version>");
            let m = rest.find("<DeleteMarker>");
            let (at, kind) = match (v, m) {
                (Some(a), Some(b)) if a < b => (a, "version"),
                (Some(a), None) => (a, "version"),
                (_, Some(b)) => (b, "marker"),
                (None, None) => break,
            };
            kinds.push(kind);
            rest = &rest[at + 5..];
        }
        Ok(kinds)
    }
}

fn http_get_url(url: &str) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").ok_or("not http")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let once = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(host)?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    // The Python servers now and then drop a fresh connection under load (seen in CI as a
    // broken pipe): a read-only probe may simply ask again.
    let mut last = String::new();
    for attempt in 0..3 {
        match once() {
            Ok(out) => return Ok(out),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(200 * (attempt + 1)));
    }
    Err(last)
}

fn now_secs() -> i64 {
    coffer_store::Clock::system().now().as_second()
}

/// Whether the server shows `quirk` (probed with raw requests, bypassing S3Store).
fn probe(server: &S3Server, quirk: &str) -> bool {
    let bucket = server.new_bucket("coffer-probe");
    let admin = server.store(&bucket, "", Role::Admin);
    let raw = Raw { store: &admin, bucket: bucket.clone() };
    let now = now_secs();
    let c = admin.client();
    match quirk {
        "compliance-can-be-shortened" => {
            let v = raw.put_locked("k", ObjectLockMode::Compliance, now + 7200).expect("locked put");
            raw.put_retention("k", &v, ObjectLockRetentionMode::Compliance, now + 3600).is_ok()
        }
        "compliance-can-become-governance" => {
            let v = raw.put_locked("k", ObjectLockMode::Compliance, now + 7200).expect("locked put");
            raw.put_retention("k", &v, ObjectLockRetentionMode::Governance, now + 7200).is_ok()
        }
        "no-get-object-retention" => {
            let v = raw.put_locked("k", ObjectLockMode::Compliance, now + 7200).expect("locked put");
            let got = admin.block_on(c.get_object_retention().bucket(&bucket).key("k").version_id(&v).send());
            !got.is_ok_and(|o| o.retention().and_then(|r| r.mode()) == Some(&ObjectLockRetentionMode::Compliance))
        }
        "versioning-can-be-suspended-on-a-lock-bucket" => {
            let suspended = VersioningConfiguration::builder().status(BucketVersioningStatus::Suspended).build();
            admin.block_on(c.put_bucket_versioning().bucket(&bucket).versioning_configuration(suspended).send()).is_ok()
        }
        "get-bucket-versioning-unparseable" => {
            admin.block_on(c.get_bucket_versioning().bucket(&bucket).send()).is_err()
        }
        "past-retain-until-accepted" => raw.put_locked("k", ObjectLockMode::Governance, now - 3600).is_ok(),
        "lock-headers-on-a-plain-bucket" => {
            let plain = format!("{bucket}-plain");
            admin.block_on(c.create_bucket().bucket(&plain).send()).expect("create a plain bucket");
            let raw = Raw { store: &admin, bucket: plain };
            raw.put_locked("k", ObjectLockMode::Compliance, now + 3600).is_ok()
        }
        "no-auth" => {
            // A key nobody created may write.
            let s = S3Store::connect(&coffer_store::S3Options {
                location: S3Location { ..server.location(&bucket, "") },
                credentials: coffer_store::S3Credentials::Static(coffer_store::Credentials {
                    access_key: "AKIDNOBODY".into(),
                    secret_key: coffer_store::Secret::new("wrong".into()),
                }),
                principal: coffer_store::Principal { name: "nobody".into(), role: Role::Writer },
                multipart: coffer_store::s3::Multipart::default(),
            })
            .expect("open");
            s.put("k", b"x", &PutOptions::default()).is_ok()
        }
        "marker-version-get-is-not-found" => {
            raw.put_locked("k", ObjectLockMode::Governance, now + 3600).expect("put");
            let m = admin.block_on(c.delete_object().bucket(&bucket).key("k").send()).expect("delete");
            let got =
                admin.block_on(c.get_object().bucket(&bucket).key("k").version_id(m.version_id().unwrap()).send());
            got.is_err_and(|e| e.raw_response().is_some_and(|r| r.status().as_u16() == 404))
        }
        "lock-config-needs-an-empty-bucket" => {
            raw.put_locked("k", ObjectLockMode::Governance, now + 3600).expect("put");
            let cfg = aws_sdk_s3::types::ObjectLockConfiguration::builder()
                .object_lock_enabled(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
                .build();
            admin
                .block_on(c.put_object_lock_configuration().bucket(&bucket).object_lock_configuration(cfg).send())
                .is_err()
        }
        "versions-and-markers-not-interleaved" => {
            // put, delete, put: AWS lists the newest version, then the marker, then the first.
            raw.put_locked("k", ObjectLockMode::Governance, now + 3600).expect("put");
            admin.block_on(c.delete_object().bucket(&bucket).key("k").send()).expect("delete");
            raw.put_locked("k", ObjectLockMode::Governance, now + 3600).expect("put");
            let page = admin.store_list_versions_raw(&bucket).expect("list versions");
            page != ["version", "marker", "version"]
        }
        "multipart-lock-headers-ignored" => {
            // A one-part upload with compliance lock headers: AWS stores the lock.
            let key = "mp";
            let created = admin
                .block_on(
                    c.create_multipart_upload()
                        .bucket(&bucket)
                        .key(key)
                        .object_lock_mode(ObjectLockMode::Governance)
                        .object_lock_retain_until_date(DateTime::from_secs(now + 3600))
                        .send(),
                )
                .expect("create multipart upload");
            let upload = created.upload_id().expect("upload id");
            let body = b"one part".to_vec();
            let md5 = {
                use base64::Engine as _;
                use md5::Digest as _;
                base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body))
            };
            let part = admin
                .block_on(
                    c.upload_part()
                        .bucket(&bucket)
                        .key(key)
                        .upload_id(upload)
                        .part_number(1)
                        .content_md5(md5)
                        .body(ByteStream::from(body))
                        .send(),
                )
                .expect("upload part");
            let done = aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                )
                .build();
            let out = admin
                .block_on(
                    c.complete_multipart_upload()
                        .bucket(&bucket)
                        .key(key)
                        .upload_id(upload)
                        .multipart_upload(done)
                        .send(),
                )
                .expect("complete multipart upload");
            let head = admin
                .block_on(
                    c.head_object().bucket(&bucket).key(key).version_id(out.version_id().unwrap_or_default()).send(),
                )
                .expect("head");
            head.object_lock_mode().is_none()
        }
        other => panic!("no probe for quirk {other}"),
    }
}

fn quirks_of(kind: ServerKind) {
    let server = S3Server::start(kind);
    let mut wrong = Vec::new();
    for q in kind.quirks() {
        if !probe(&server, q.name) {
            wrong.push(format!("{}: no longer observed ({}); update docs/s3-compatibility.md", q.name, q.what));
        }
    }
    assert!(wrong.is_empty(), "{} quirks:\n{}", kind.name(), wrong.join("\n"));
}

#[test]
fn localstack_quirks_are_as_documented() {
    quirks_of(ServerKind::LocalStack);
}

#[test]
fn moto_quirks_are_as_documented() {
    quirks_of(ServerKind::Moto);
}

/// What S3Store adds on top of the server: on moto, which lets anyone weaken a compliance
/// lock, S3Store still refuses; after every locked put it checks what the server stored.
#[test]
fn s3store_refuses_what_moto_would_allow() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-enforce");
    let writer = server.store(&bucket, "", Role::Writer);
    let admin = server.store(&bucket, "", Role::Admin);
    let now = now_secs();
    let until = jiff::Timestamp::from_second(now + 7200).unwrap();
    let r = Retention { mode: RetentionMode::Compliance, until };
    let v = writer
        .put("k", b"x", &PutOptions { retention: Some(r), legal_hold: false, create_only: false })
        .expect("locked put");
    for new in [
        Some(Retention { mode: RetentionMode::Compliance, until: jiff::Timestamp::from_second(now + 3600).unwrap() }),
        Some(Retention { mode: RetentionMode::Governance, until }),
        None,
    ] {
        let e = admin.put_retention("k", &v.version, new, true).expect_err("weakening compliance");
        assert!(matches!(e, StoreError::Locked { .. }), "{e:?}");
    }
    assert_eq!(writer.head("k", None).unwrap().retention, Some(r), "unchanged on the server");
    let e = admin.put_versioning(coffer_store::Versioning::Suspended).expect_err("suspend");
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
}

/// Objects above the multipart threshold go in parts, locked as asked by the upload's own
/// headers on LocalStack; on moto, which drops them, S3Store notices after completion and
/// locks the version itself, so both end with exactly the lock asked for. Below the threshold
/// one `PutObject`.
fn multipart_on(kind: ServerKind) {
    use coffer_store::s3::{MIN_PART_SIZE, Multipart};
    let server = S3Server::start(kind);
    let bucket = server.new_bucket("coffer-multipart");
    let mp = Multipart { threshold: MIN_PART_SIZE, part_size: MIN_PART_SIZE };
    let writer = server.store_with(&bucket, "pre", Role::Writer, mp);
    let len = usize::try_from(2 * MIN_PART_SIZE).unwrap() + 12_345;
    let data: Vec<u8> = (0..len).map(|i| u8::try_from((i * 7 + i / 4093) % 251).unwrap()).collect();
    let until = jiff::Timestamp::from_second(now_secs() + 7200).unwrap();
    let r = Retention { mode: RetentionMode::Compliance, until };
    for (key, body, parts, hold) in
        [("big", &data[..], Some(3), false), ("held", &data[..], Some(3), true), ("small", &data[..1000], None, false)]
    {
        let meta = writer
            .put(key, body, &PutOptions { retention: Some(r), legal_hold: hold, create_only: false })
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!((meta.retention, meta.legal_hold, meta.size), (Some(r), hold, body.len() as u64), "{key}");
        // What the server holds, read raw: the ETag of a multipart upload ends in "-PARTS".
        let c = writer.client();
        let head = writer
            .block_on(c.head_object().bucket(&bucket).key(format!("pre/{key}")).version_id(&meta.version.0).send())
            .expect("head");
        let etag_parts =
            head.e_tag().and_then(|e| e.trim_matches('"').split_once('-')).map(|(_, n)| n.parse::<u64>().unwrap());
        assert_eq!(etag_parts, parts, "{key} on {}: ETag {:?}", kind.name(), head.e_tag());
        assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance), "{key}");
        assert_eq!(head.object_lock_retain_until_date().map(DateTime::secs), Some(until.as_second()), "{key}");
        assert_eq!(writer.get(key, Some(&meta.version)).expect("get").data, body, "{key} reads back");
    }
    // Create-only: If-None-Match on CompleteMultipartUpload refuses an existing key (the
    // upload is aborted, nothing added) and creates a new one.
    let once = PutOptions { retention: Some(r), legal_hold: false, create_only: true };
    let err = writer.put("big", &data, &once).expect_err("a create-only multipart put over an existing key");
    assert_eq!(err.kind(), coffer_store::ErrorKind::Exists, "{} : {err}", kind.name());
    let big = writer.list_version_entries("big", None, 10).expect("list");
    assert_eq!(big.items.iter().filter(|v| v.key == "big").count(), 1, "nothing added to big");
    let v = writer.put("big-once", &data, &once).expect("a create-only multipart put of a new key");
    assert_eq!(writer.get("big-once", Some(&v.version)).expect("get").data, data, "big-once reads back");
    // No incomplete upload is left behind.
    let c = writer.client();
    let uploads = writer.block_on(c.list_multipart_uploads().bucket(&bucket).send()).expect("list uploads");
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

#[test]
fn multipart_upload_on_localstack() {
    multipart_on(ServerKind::LocalStack);
}

#[test]
fn multipart_upload_on_moto() {
    multipart_on(ServerKind::Moto);
}

/// The lean listings cost the listing alone: no `HeadObject` per object (counted on the wire
/// by a proxy between the store and LocalStack), while the full listings need one per
/// object for its lock state.
#[test]
fn lean_listings_send_no_head_object_on_localstack() {
    let server = S3Server::start(ServerKind::LocalStack);
    let bucket = server.new_bucket("coffer-list");
    let writer = server.store(&bucket, "p", Role::Writer);
    for i in 0..25 {
        writer.put(&format!("k{i:02}"), b"x", &PutOptions::default()).expect("put");
    }
    let proxy = coffer_testkit::proxy::CutProxy::start(server.port());
    let mut location = server.location(&bucket, "p");
    location.endpoint = Some(proxy.endpoint());
    let reader = S3Store::connect(&coffer_store::S3Options {
        location,
        credentials: coffer_store::S3Credentials::Static(coffer_testkit::s3::test_credentials(
            server.kind(),
            Role::Reader,
        )),
        principal: coffer_store::Principal { name: "reader".into(), role: Role::Reader },
        multipart: coffer_store::s3::Multipart::default(),
    })
    .expect("open");
    let page = reader.list_entries("", None, 10).expect("list entries");
    assert_eq!(page.items.len(), 10);
    let rest = reader.list_entries("", page.next.as_deref(), 100).expect("list entries");
    assert_eq!(rest.items.len(), 15);
    let versions = reader.list_version_entries("", None, 100).expect("list version entries");
    assert_eq!(versions.items.len(), 25);
    assert_eq!(proxy.head_requests(), 0, "lean listings sent HeadObject requests");
    // The full listing, for comparison (and to show the count works): one per object.
    assert_eq!(reader.list("", None, 100).expect("list").items.len(), 25);
    assert_eq!(proxy.head_requests(), 25);
}

/// `S3Store` is a blocking API that owns its runtime; a long-running async program (the
/// daemon) calls it from inside its own runtime. Connecting, every kind of request and
/// dropping the last handle must work there — on a current-thread runtime (`#[tokio::test]`'s
/// default), a multi-threaded one, and in a spawned task — instead of panicking with "Cannot
/// start a runtime from within a runtime" or "Cannot drop a runtime in a context where
/// blocking is not allowed".
#[test]
fn s3store_works_inside_another_tokio_runtime() {
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-nested");
    let exercise = |name: &str| {
        let store = server.store(&bucket, "", Role::Writer);
        let opts = PutOptions { retention: None, legal_hold: false, create_only: false };
        let v = store.put(name, b"inside", &opts).expect("put inside a runtime");
        assert_eq!(store.get(name, Some(&v.version)).expect("get inside a runtime").data, b"inside");
        assert!(store.list("", None, 1000).expect("list inside a runtime").items.iter().any(|o| o.key == name));
        assert_eq!(store.head(name, None).expect("head inside a runtime").version, v.version);
        drop(store);
    };
    let current = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    current.block_on(async { exercise("current-thread") });
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    multi.block_on(async { exercise("multi-thread") });
    let server = &server;
    let bucket = bucket.clone();
    multi
        .block_on(async move {
            let store = server.store(&bucket, "", Role::Reader);
            tokio::spawn(async move {
                let listed = store.list("", None, 1000).expect("list in a spawned task");
                assert!(listed.items.len() >= 2, "{} listed", listed.items.len());
            })
            .await
        })
        .expect("the spawned task");
}
