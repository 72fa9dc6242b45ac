//! `S3Store`: the `ObjectStore` contract over the S3 API (AWS S3 and S3-compatible
//! services), with the AWS SDK for Rust. Feature `s3`.
//!
//! Invariant guarded: **Coffer never relies on the server to enforce a lock.** S3 Object
//! Lock is the last line of defence, but S3-compatible servers differ from AWS's documented
//! behaviour (`docs/s3-compatibility.md`), so this store checks every request itself before
//! sending it, exactly as `LocalVault` does, and checks the server's work after:
//!
//! - the role is checked first ([`Principal::authorize`]), even though S3 enforces IAM, so a
//!   permissive server or a too-broad IAM policy still behaves like the contract;
//! - a delete of a version, a retention change and a legal-hold change read the version's
//!   current protection first and refuse (`Locked`) what would remove or weaken an active
//!   lock — a compliance retention is never shortened, removed or turned to governance,
//!   whatever the server would allow; the governance-bypass header is sent only when the
//!   role may bypass and the request needs it;
//! - a retain-until date not in the future is refused here (some servers accept it);
//! - every put carries its retention explicitly (the caller's, or the bucket's default
//!   computed here from the put's time), `Content-MD5` and `x-amz-checksum-sha256`, and the
//!   content's SHA-256 as user metadata (`x-amz-meta-coffer-sha256`) — the same SHA-256 is
//!   the SigV4 payload hash, computed once (`PrecomputedPayloadHash`); after the put a
//!   `HeadObject` of the new version must report exactly the retention and legal hold
//!   asked for, the size and the checksum, or the put fails (`Corrupt`: the server did not
//!   store what it acknowledged);
//! - an object larger than the multipart threshold ([`Multipart`]) goes in a multipart
//!   upload whose `CreateMultipartUpload` carries the same lock headers, metadata and a
//!   SHA-256 checksum algorithm; every part carries `Content-MD5` and its SHA-256, the
//!   composite checksum of the completed object is compared with the parts', and the same
//!   `HeadObject` check follows. A server that completes the upload without the lock asked
//!   for (moto ignores lock headers on multipart uploads) gets it set with
//!   `PutObjectRetention`/`PutObjectLegalHold` — only where the version has *no* lock, which
//!   can never weaken one — and the check is repeated: the put succeeds only once the server
//!   reports exactly the lock asked for;
//! - every get verifies size and SHA-256;
//! - suspending versioning and disabling Object Lock are refused here.
//!
//! The one exception is [`ObjectStore::probe`] (module `probe`): the immutability canary's
//! requests are sent as they are, so that the server's own enforcement is what they test;
//! an object probe may only name a key under [`crate::probe::RESERVED_PREFIX`].
//!
//! # Mapping
//!
//! | contract | S3 |
//! | --- | --- |
//! | put | `PutObject` with lock headers, then `HeadObject`; above the threshold `CreateMultipartUpload` (lock headers), `UploadPart`s, `CompleteMultipartUpload` (or `AbortMultipartUpload`), then `HeadObject` |
//! | get / head (latest) | `GetObject` / `HeadObject` |
//! | get / head (version) | the same with `versionId`, plus the key's latest version id (`HeadObject`) or, for head, its version listing (delete markers cannot be `HEAD`ed) |
//! | list | `ListObjectVersions` (`ListObjectsV2` has no version ids), latest non-marker versions only; `HeadObject` per item for retention, hold and checksum |
//! | list_versions | `ListObjectVersions` with key/version-id markers, `HeadObject` per version |
//! | list_entries / list_version_entries | the same listings without any `HeadObject`: the cost of the listing alone, for callers that need only keys and versions (the repository's key scans) |
//! | delete | `DeleteObject` (adds a marker) |
//! | delete_version | `HeadObject` + checks, `DeleteObject` with `versionId` (+ bypass header) |
//! | put_retention | `HeadObject` + checks, `PutObjectRetention`, `HeadObject` to verify |
//! | legal hold | `PutObjectLegalHold` |
//! | lock configuration | `Get`/`PutObjectLockConfiguration` (default periods in whole days) |
//! | versioning | `Get`/`PutBucketVersioning` |
//! | protection | `GetObjectLockConfiguration`, `GetBucketVersioning`, `GetBucketPolicy`, `GetPublicAccessBlock`, `GetBucketOwnershipControls`, `GetBucketLifecycleConfiguration`, `GetBucketReplication` (`protection.rs`) |
//!
//! Listing tokens are the store's own (hex of the last key, `.` and the last version id),
//! so a page continues after the key it ended at even if that key changed meanwhile, and a
//! token the store did not issue is `InvalidRequest`. `ListObjectVersions` returns objects
//! and delete markers in two lists; they are merged by key, then newest first
//! (`LastModified`, then the latest first) — two versions of one key in the same
//! millisecond may therefore be listed in either order.
//!
//! Errors: `NoSuchKey`/`NoSuchVersion`/404 → `NotFound`; `AccessDenied`/403 → `Locked` when
//! a re-read shows the version protected, else `Forbidden`; bad credentials →
//! `Unauthenticated`; other 4xx → `InvalidRequest`; 5xx, throttling, timeouts and
//! connection failures → `Io`, after the SDK's standard retries with exponential backoff
//! (transient errors only; a permanent error is never retried). Retries and waits are
//! bounded (`MAX_ATTEMPTS`, `MAX_BACKOFF`, connect/read/operation timeouts) so that an
//! unreachable server is a clear error within seconds, not a hang; an `Io` error names the
//! object, the repository and the endpoint, never credentials.
//!
//! # Threads
//!
//! The contract is synchronous: each `S3Store` owns a small multi-thread tokio runtime and
//! blocks on it, so it must not be called from inside another tokio runtime. Listings fan
//! out their `HeadObject`s at most [`HEAD_CONCURRENCY`] at a time.
//!
//! # Limits
//!
//! An object is held in memory whole (the contract's `put` takes a slice), so multipart
//! upload bounds what one lost connection costs, not memory. A key with a prefix is limited
//! to 1024 bytes *including* the prefix.

mod bucket;
mod client;
mod config;
mod error;
mod list;
mod location;
mod lock;
mod object_store;
mod probe;
mod protection;
mod read;
pub mod runtime;
mod write;

pub use bucket::{BucketInit, check_policy};
use config::{MAX_PARTS, PART_CONCURRENCY};
pub use config::{MIN_PART_SIZE, Multipart, S3Credentials, S3Options};
use error::Failure;
pub use list::{HEAD_CONCURRENCY, MAX_PAGE_LIMIT};
pub use location::S3Location;
use lock::{
    check_future, days_of, lock_mode, retention_mode, retention_of, round_up, show_retention, to_datetime, to_timestamp,
};
use read::{head_raw, meta_from_head};
use runtime::{OwnedRuntime, block_on_from_anywhere};

use crate::clock::Clock;
use crate::error::{BoxError, Result, StoreError};
use crate::model::{
    DefaultRetention, ListEntry, LockConfig, ObjectVersion, Page, PutOptions, Retention, RetentionMode, VersionId,
    Versioning, validate_key,
};
use crate::role::{Action, Credentials, Principal};
use crate::store::{Object, ObjectStore};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
    ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
};
use aws_smithy_types::DateTime;
use base64::Engine as _;
use jiff::Timestamp;
use sha2::Digest as _;
use std::sync::Arc;

/// User metadata holding the content's SHA-256 (hex): `x-amz-meta-coffer-sha256`.
const CHECKSUM_META: &str = "coffer-sha256";

/// The `ObjectStore` contract on an S3 bucket, seen through one principal.
///
/// # Inside an async runtime
///
/// `S3Store` is a blocking API: it owns a small tokio runtime (two worker threads) and each
/// call blocks on it. It may be used from inside another tokio runtime (a daemon's, a
/// `#[tokio::test]`), current-thread or multi-threaded: a call made there, where blocking on
/// a runtime would panic, runs on a short-lived helper thread that blocks on the store's
/// runtime instead, and the calling thread waits for it. It still blocks that thread for the
/// whole request, so an async caller should make the call from `spawn_blocking` (or a
/// thread of its own) to keep its executor free; a call that is not inside a runtime (the
/// `coffer` binary) blocks directly, with no helper thread. Dropping the last handle inside a
/// runtime shuts the store's runtime down in the background instead of waiting for it (which
/// would panic there); nothing of the store is then still in flight, as every call waits
/// for its requests.
#[derive(Clone, Debug)]
pub struct S3Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    rt: OwnedRuntime,
    client: Client,
    location: S3Location,
    principal: Principal,
    access_key: String,
    clock: Clock,
    multipart: Multipart,
}
