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
mod location;

pub use bucket::{BucketInit, check_policy};
pub use location::S3Location;

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

/// The most a get reserves up front for a body of the size the server announces (a larger
/// body grows its buffer as it arrives): a wrong or hostile `Content-Length` cannot make the
/// store allocate gigabytes it never receives.
const MAX_PREALLOC: usize = 256 << 20;
/// How many `HeadObject` requests one listing page has in flight at most.
pub const HEAD_CONCURRENCY: usize = 16;
/// User metadata holding the content's SHA-256 (hex): `x-amz-meta-coffer-sha256`.
const CHECKSUM_META: &str = "coffer-sha256";
/// The most items one listing page holds, whatever `limit` asks (S3's `max-keys` cap).
pub const MAX_PAGE_LIMIT: usize = 1000;
/// Attempts per request (the first and up to four retries), standard SDK retry mode.
const MAX_ATTEMPTS: u32 = 5;
/// Longest pause between two attempts. With exponential backoff from one second and full
/// jitter, the pauses of one request add up to at most 1 + 2 + 4 + 5 = 12 s: a server that
/// is down (connection refused) is reported within seconds, not minutes.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest wait, per attempt, from the start of a request to the first byte of its reply
/// (so it includes sending the body: generous enough for a multipart part or a pack on a
/// slow link). A server that accepts connections but never answers fails the attempt.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Longest time for one operation, all attempts and pauses included.
const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// How an `S3Store` authenticates.
#[derive(Clone, Debug)]
pub enum S3Credentials {
    /// The standard AWS chain: environment, profile files, web identity, ECS, instance role.
    Chain,
    /// An explicit access key (one per role: the writer never holds the pruner's keys).
    Static(Credentials),
}

/// Everything needed to open an [`S3Store`].
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Bucket, prefix, endpoint.
    pub location: S3Location,
    /// Credentials.
    pub credentials: S3Credentials,
    /// Who these credentials are: the role comes from configuration (which key set was
    /// given), because S3 authenticates keys, not Coffer roles. The store also refuses
    /// locally what the role may not do.
    pub principal: Principal,
    /// When and how objects are sent in parts.
    pub multipart: Multipart,
}

/// The smallest part S3 accepts (except the last part of an upload).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The most parts of one upload.
const MAX_PARTS: u64 = 10_000;
/// How many parts of one upload are in flight at most.
const PART_CONCURRENCY: usize = 4;

/// Multipart upload settings: an object larger than `threshold` bytes is sent as a
/// multipart upload in parts of `part_size` (grown if it would take more than 10 000 parts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multipart {
    /// Objects larger than this go in parts; at most 5 GiB (S3's single-PUT limit).
    pub threshold: u64,
    /// Size of every part but the last; at least [`MIN_PART_SIZE`].
    pub part_size: u64,
}

impl Default for Multipart {
    /// Above 64 MiB, in 16 MiB parts: a repository pack (16 MiB plus at most one chunk)
    /// goes in one `PutObject`, the cheapest request; larger objects in parts, so a lost
    /// connection costs one part, not the whole object.
    fn default() -> Self {
        Self { threshold: 64 << 20, part_size: 16 << 20 }
    }
}

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

/// The store's own runtime; see [`S3Store`]'s "Inside an async runtime".
#[derive(Debug)]
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime is there until the store is dropped")
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        // Dropping a runtime waits for its workers, which panics inside an async context.
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            }
        }
    }
}

/// Runs `f` to completion on `rt`. Outside any runtime, directly; inside one (where
/// `Runtime::block_on` panics: "Cannot start a runtime from within a runtime"), on a helper
/// thread, which this thread waits for. A panic in `f` is passed on.
fn block_on_from_anywhere<F>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return rt.block_on(f);
    }
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("coffer-s3-call".into())
            .spawn_scoped(s, || rt.block_on(f))
            .expect("cannot start a thread for an S3 request")
            .join()
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
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

impl S3Store {
    /// Opens the store (no request is made until the first call).
    ///
    /// # Errors
    /// `Io` if the runtime cannot be started.
    pub fn connect(opts: &S3Options) -> Result<Self> {
        let mp = opts.multipart;
        if mp.part_size < MIN_PART_SIZE || mp.threshold > 5 << 30 {
            return Err(StoreError::invalid(format!(
                "multipart parts must be at least {MIN_PART_SIZE} bytes and the threshold at most 5 GiB (got parts of {} above {})",
                mp.part_size, mp.threshold
            )));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::io("cannot start the s3 client runtime", e))?;
        let loc = &opts.location;
        let client = block_on_from_anywhere(&rt, async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(r) = loc.region.clone().or_else(|| loc.endpoint.as_ref().map(|_| "us-east-1".to_owned())) {
                loader = loader.region(aws_config::Region::new(r));
            }
            if let Some(e) = &loc.endpoint {
                loader = loader.endpoint_url(e);
            }
            if let S3Credentials::Static(c) = &opts.credentials {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    &c.access_key,
                    c.secret_key.expose(),
                    None,
                    None,
                    "coffer",
                ));
            }
            let shared = loader.load().await;
            let conf = aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(loc.path_style)
                .retry_config(
                    aws_smithy_types::retry::RetryConfig::standard()
                        .with_max_attempts(MAX_ATTEMPTS)
                        .with_max_backoff(MAX_BACKOFF),
                )
                .timeout_config(
                    aws_smithy_types::timeout::TimeoutConfig::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .read_timeout(READ_TIMEOUT)
                        .operation_timeout(OPERATION_TIMEOUT)
                        .build(),
                )
                // Checksums are computed here and sent as plain headers: no aws-chunked
                // trailers, which S3-compatible servers handle unevenly.
                .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
                .build();
            Client::from_conf(conf)
        });
        let access_key = match &opts.credentials {
            S3Credentials::Static(c) => c.access_key.clone(),
            S3Credentials::Chain => "(aws credential chain)".to_owned(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                rt: OwnedRuntime(Some(rt)),
                client,
                location: opts.location.clone(),
                principal: opts.principal.clone(),
                access_key,
                clock: Clock::system(),
                multipart: mp,
            }),
        })
    }

    /// Where the store is.
    #[must_use]
    pub fn location(&self) -> &S3Location {
        &self.inner.location
    }

    /// The SDK client, for tests that talk S3 directly (age a version, plant a rogue
    /// object, probe what a principal's policy refuses). Requests made through it bypass
    /// every check of this store, so it exists only with the `raw-client` feature, which
    /// only test builds enable (through `coffer-testkit`); `cargo build --release -p
    /// coffer-cli` has no such method.
    #[cfg(feature = "raw-client")]
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Runs a future on the store's runtime (for callers of [`Self::client`]; feature
    /// `raw-client`).
    #[cfg(feature = "raw-client")]
    pub fn block_on<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        self.run(f)
    }

    /// Runs one request of this store on its runtime, from inside another runtime too (see
    /// "Inside an async runtime" above).
    fn run<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        block_on_from_anywhere(self.inner.rt.get(), f)
    }

    /// Creates the bucket with Object Lock and versioning enabled and, if given, a default
    /// retention. Needs the admin role (and `s3:CreateBucket`).
    ///
    /// # Errors
    /// `Forbidden`, `InvalidRequest` (the bucket exists, a bad default), `Io`.
    pub fn create_bucket(&self, default_retention: Option<DefaultRetention>) -> Result<()> {
        self.authorize(Action::PutLockConfig)?;
        if let Some(d) = &default_retention {
            days_of(d)?;
        }
        let bucket = &self.inner.location.bucket;
        let c = &self.inner.client;
        self.run(c.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send())
            .map_err(|e| self.fail(e, Action::PutLockConfig, None, None, &format!("cannot create bucket {bucket}")))?;
        let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        self.run(c.put_bucket_versioning().bucket(bucket).versioning_configuration(enabled).send())
            .map_err(|e| self.fail(e, Action::PutVersioning, None, None, "cannot enable versioning"))?;
        if default_retention.is_some() {
            self.put_lock_config(&LockConfig { enabled: true, default_retention })?;
        }
        Ok(())
    }

    /// Checks that the bucket keeps Coffer's promises: versioning enabled and Object Lock
    /// enabled. Returns its lock configuration.
    ///
    /// # Errors
    /// `InvalidRequest` naming what the bucket lacks; `NotFound`-ish errors as `InvalidRequest`; `Io`.
    pub fn check_bucket(&self) -> Result<LockConfig> {
        let loc = &self.inner.location;
        let v = self.versioning()?;
        if v != Versioning::Enabled {
            return Err(StoreError::invalid(format!("bucket {} does not have versioning enabled", loc.bucket)));
        }
        let cfg = self.lock_config()?;
        if !cfg.enabled {
            return Err(StoreError::invalid(format!("bucket {} does not have object lock enabled", loc.bucket)));
        }
        Ok(cfg)
    }

    /// The endpoint as errors show it: without any `user:password@` part (secrets never
    /// appear in errors); AWS's own endpoint when none is configured.
    fn endpoint_for_errors(&self) -> String {
        match &self.inner.location.endpoint {
            None => {
                format!("the AWS endpoint of region {}", self.inner.location.region.as_deref().unwrap_or("(default)"))
            }
            Some(e) => match e.split_once("://") {
                Some((scheme, rest)) => {
                    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                    format!("{scheme}://{host}")
                }
                None => e.clone(),
            },
        }
    }

    fn authorize(&self, action: Action) -> Result<()> {
        self.inner.principal.authorize(action)
    }

    fn bucket(&self) -> &str {
        &self.inner.location.bucket
    }

    fn full_key(&self, key: &str) -> Result<String> {
        let full = self.inner.location.full_key(key);
        if full.len() > crate::model::MAX_KEY_LEN {
            return Err(StoreError::invalid(format!(
                "key of {} bytes is longer than {} with the store's prefix {:?}",
                key.len(),
                crate::model::MAX_KEY_LEN - self.inner.location.prefix.len(),
                self.inner.location.prefix
            )));
        }
        Ok(full)
    }

    /// The store key of a full S3 key (listings only return keys under the prefix).
    fn store_key<'a>(&self, full: &'a str) -> &'a str {
        full.strip_prefix(self.inner.location.prefix.as_str()).unwrap_or(full)
    }

    /// Converts an SDK failure into the contract's error for `action` on `key`/`version`.
    fn fail<E>(
        &self,
        err: SdkError<E, HttpResponse>,
        action: Action,
        key: Option<&str>,
        version: Option<&VersionId>,
        what: &str,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        Failure::from_sdk(err).into_store(self, action, key, version, what)
    }

    /// The metadata of one version (or the latest), with `is_latest` as given.
    async fn head_meta(&self, key: &str, version: Option<&VersionId>, is_latest: bool) -> Result<ObjectVersion> {
        let full = self.full_key(key)?;
        let out =
            head_raw(&self.inner.client, self.bucket(), &full, version.map(|v| v.0.as_str())).await.map_err(|f| {
                f.into_store(self, Action::Head, Some(key), version, &format!("cannot read metadata of {key}"))
            })?;
        meta_from_head(key, version, &out, is_latest)
    }

    /// The version id of the key's latest version if it is an object; `None` when the key
    /// has none or its latest is a delete marker.
    async fn latest_object_version(&self, key: &str) -> Result<Option<String>> {
        let full = self.full_key(key)?;
        match head_raw(&self.inner.client, self.bucket(), &full, None).await {
            Ok(out) => Ok(out.version_id().map(str::to_owned)),
            Err(f) if f.is_not_found() => Ok(None),
            Err(f) => Err(f.into_store(self, Action::Head, Some(key), None, &format!("cannot read metadata of {key}"))),
        }
    }

    /// The listing entry of one version of `key` (object or marker), or `None`.
    async fn find_listed(&self, key: &str, version: &VersionId) -> Result<Option<Listed>> {
        let full = self.full_key(key)?;
        let mut marker: Option<(String, String)> = None;
        loop {
            let (entries, next) = self.list_raw(&full, marker.as_ref(), MAX_PAGE_LIMIT).await?;
            let mut past_key = false;
            for e in entries {
                if e.full_key != full {
                    past_key = true;
                    break;
                }
                if e.version == version.0 {
                    return Ok(Some(e));
                }
            }
            match next {
                Some(m) if !past_key => marker = Some(m),
                _ => return Ok(None),
            }
        }
    }

    /// One `ListObjectVersions` page under the full-key `prefix`, merged into listing order,
    /// and the markers to continue from (when truncated).
    async fn list_raw(
        &self,
        prefix: &str,
        after: Option<&(String, String)>,
        max: usize,
    ) -> Result<(Vec<Listed>, Option<(String, String)>)> {
        let mut req = self
            .inner
            .client
            .list_object_versions()
            .bucket(self.bucket())
            .prefix(prefix)
            .max_keys(i32::try_from(max.clamp(1, MAX_PAGE_LIMIT)).unwrap_or(1000));
        if let Some((k, v)) = after {
            req = req.key_marker(k);
            if !v.is_empty() {
                req = req.version_id_marker(v);
            }
        }
        let tap = BodyTap::default();
        let out = req.customize().interceptor(tap.clone()).send().await.map_err(|e| {
            self.fail(e, Action::ListVersions, None, None, &format!("cannot list versions under {prefix:?}"))
        })?;
        let mut entries: Vec<Listed> = Vec::new();
        for v in out.versions() {
            entries.push(Listed {
                full_key: v.key().unwrap_or_default().to_owned(),
                version: v.version_id().unwrap_or("null").to_owned(),
                is_latest: v.is_latest().unwrap_or(false),
                delete_marker: false,
                created: v.last_modified().map_or(Timestamp::UNIX_EPOCH, to_timestamp),
                size: v.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            });
        }
        for m in out.delete_markers() {
            entries.push(Listed {
                full_key: m.key().unwrap_or_default().to_owned(),
                version: m.version_id().unwrap_or("null").to_owned(),
                is_latest: m.is_latest().unwrap_or(false),
                delete_marker: true,
                created: m.last_modified().map_or(Timestamp::UNIX_EPOCH, to_timestamp),
                size: 0,
            });
        }
        // The SDK splits objects and delete markers into two lists. Merge them by key, the
        // latest first, then newest first by `LastModified`, and on a tie (servers that
        // keep whole seconds) in the order of the reply, which on AWS is one newest-first
        // sequence.
        let order = tap.take().map(|body| xml_order(&body)).unwrap_or_default();
        let pos = |e: &Listed| order.get(&(e.full_key.clone(), e.version.clone())).copied().unwrap_or(usize::MAX);
        entries.sort_by(|a, b| {
            a.full_key
                .as_bytes()
                .cmp(b.full_key.as_bytes())
                .then(b.is_latest.cmp(&a.is_latest))
                .then(b.created.cmp(&a.created))
                .then(pos(a).cmp(&pos(b)))
        });
        let next = if out.is_truncated().unwrap_or(false) {
            match (out.next_key_marker(), entries.last()) {
                (Some(k), _) => Some((k.to_owned(), out.next_version_id_marker().unwrap_or_default().to_owned())),
                (None, Some(last)) => Some((last.full_key.clone(), last.version.clone())),
                (None, None) => None,
            }
        } else {
            None
        };
        Ok((entries, next))
    }

    /// Fills retention, legal hold and checksum of listed objects with `HeadObject`s, at
    /// most [`HEAD_CONCURRENCY`] at a time.
    async fn enrich(&self, listed: Vec<Listed>) -> Result<Vec<ObjectVersion>> {
        let sem = Arc::new(tokio::sync::Semaphore::new(HEAD_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, e) in listed.iter().enumerate() {
            if e.delete_marker {
                continue;
            }
            let (client, bucket, full, version) =
                (self.inner.client.clone(), self.bucket().to_owned(), e.full_key.clone(), e.version.clone());
            let sem = sem.clone();
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, head_raw(&client, &bucket, &full, Some(&version)).await)
            });
        }
        let mut heads: Vec<Option<HeadObjectOutput>> = vec![None; listed.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, res) = joined.map_err(|e| StoreError::io("a listing task failed", e))?;
            match res {
                Ok(out) => heads[i] = Some(out),
                // Removed between the listing and the head: leave it out.
                Err(f) if f.is_not_found() => {}
                Err(f) => {
                    let e = &listed[i];
                    let key = self.store_key(&e.full_key).to_owned();
                    let v = VersionId(e.version.clone());
                    return Err(f.into_store(self, Action::Head, Some(&key), Some(&v), "cannot read metadata"));
                }
            }
        }
        let mut out = Vec::with_capacity(listed.len());
        for (e, head) in listed.into_iter().zip(heads) {
            let key = self.store_key(&e.full_key).to_owned();
            if e.delete_marker {
                out.push(e.marker_meta(key));
                continue;
            }
            let Some(head) = head else { continue };
            let mut meta = meta_from_head(&key, Some(&VersionId(e.version.clone())), &head, e.is_latest)?;
            meta.version = VersionId(e.version);
            // The listing's time (milliseconds on S3; HeadObject's Last-Modified has whole
            // seconds), so the full and the lean listings agree.
            meta.created = e.created;
            out.push(meta);
        }
        Ok(out)
    }

    /// The current metadata of a version for a lock decision: `NotFound`, or the version
    /// with its retention and hold (a delete marker has neither).
    async fn protection(&self, key: &str, version: &VersionId) -> Result<ObjectVersion> {
        let listed = self.find_listed(key, version).await?;
        match listed {
            None => Err(StoreError::NotFound { key: key.to_owned(), version: Some(version.clone()) }),
            Some(e) if e.delete_marker => Ok(e.marker_meta(key.to_owned())),
            Some(e) => self.head_meta(key, Some(version), e.is_latest).await,
        }
    }

    /// Today's default retention of the bucket, if any.
    async fn default_retention(&self) -> Result<Option<DefaultRetention>> {
        Ok(self.lock_config_async().await?.default_retention)
    }

    async fn lock_config_async(&self) -> Result<LockConfig> {
        let out =
            self.inner.client.get_object_lock_configuration().bucket(self.bucket()).send().await.map_err(|e| {
                self.fail(e, Action::GetLockConfig, None, None, "cannot read the object lock configuration")
            });
        let out = match out {
            Ok(o) => o,
            // No lock configuration at all: a bucket without Object Lock.
            Err(StoreError::NotFound { .. }) => return Ok(LockConfig { enabled: false, default_retention: None }),
            Err(e) => return Err(e),
        };
        let Some(cfg) = out.object_lock_configuration() else {
            return Ok(LockConfig { enabled: false, default_retention: None });
        };
        let enabled = cfg.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled);
        let default_retention = cfg.rule().and_then(|r| r.default_retention()).and_then(|d| {
            let mode = match d.mode()? {
                ObjectLockRetentionMode::Compliance => RetentionMode::Compliance,
                ObjectLockRetentionMode::Governance => RetentionMode::Governance,
                _ => return None,
            };
            let days = match (d.days(), d.years()) {
                (Some(days), _) => u64::try_from(days).ok()?,
                (None, Some(years)) => u64::try_from(years).ok()? * 365,
                (None, None) => return None,
            };
            Some(DefaultRetention { mode, period: std::time::Duration::from_secs(days * 86_400) })
        });
        Ok(LockConfig { enabled, default_retention })
    }

    /// Refuses (see [`crate::lock::guard`]) what would remove `cur` (`removing`) or weaken
    /// its lock; returns whether to send the governance-bypass header.
    fn check_weakening(&self, cur: &ObjectVersion, removing: bool, weakens: bool, bypass: bool) -> Result<bool> {
        crate::lock::guard(self.principal(), cur, removing, weakens, bypass, self.inner.clock.now())
    }

    /// After a refusal by the server: `Locked` if the version is protected now, else `err`.
    async fn locked_or(&self, key: &str, version: &VersionId, err: StoreError) -> StoreError {
        match self.protection(key, version).await {
            Ok(cur) => {
                let now = self.inner.clock.now();
                let active = cur.retention.filter(|r| r.active_at(now));
                if cur.legal_hold || active.is_some() {
                    StoreError::Locked {
                        key: key.to_owned(),
                        version: version.clone(),
                        mode: active.map(|r| r.mode),
                        until: active.map(|r| r.until),
                        legal_hold: cur.legal_hold,
                    }
                } else {
                    err
                }
            }
            Err(_) => err,
        }
    }

    async fn put_async(&self, key: &str, data: &[u8], opts: &PutOptions) -> Result<ObjectVersion> {
        let full = self.full_key(key)?;
        let now = self.inner.clock.now();
        let retention = match opts.retention {
            Some(r) => {
                check_future(r.until, now)?;
                Some(Retention { mode: r.mode, until: round_up(r.until) })
            }
            // Every put carries its retention: the default is applied here, from the put's
            // time, rather than trusting the server to apply it.
            None => self.default_retention().await?.map(|d| Retention {
                mode: d.mode,
                until: round_up(now + jiff::SignedDuration::try_from(d.period).unwrap_or(jiff::SignedDuration::MAX)),
            }),
        };
        let sha = sha2::Sha256::digest(data);
        let sha_hex = hex::encode(sha);
        let multipart = data.len() as u64 > self.inner.multipart.threshold;
        let version = if multipart {
            self.put_multipart(key, &full, data, retention, opts, &sha_hex).await?
        } else {
            self.put_single(key, &full, data, retention, opts, (&sha_hex, &sha)).await?
        };
        let version = VersionId(version.ok_or_else(|| {
            StoreError::invalid(format!(
                "the server stored {key} without a version id: bucket {} does not have versioning enabled",
                self.bucket()
            ))
        })?);
        // Check what the server stored, not what it acknowledged.
        let mut meta = self.head_meta(key, Some(&version), true).await?;
        if multipart && ((retention.is_some() && meta.retention.is_none()) || (opts.legal_hold && !meta.legal_hold)) {
            // The server ignored lock headers of the upload: lock the version now. Only an
            // absent lock is set, which never weakens anything; the check below still
            // demands exactly what was asked for.
            if let Some(r) = retention.filter(|_| meta.retention.is_none()) {
                let body = ObjectLockRetention::builder()
                    .mode(retention_mode(r.mode))
                    .retain_until_date(to_datetime(r.until))
                    .build();
                let req = self.inner.client.put_object_retention().bucket(self.bucket()).key(&full);
                req.version_id(&version.0).retention(body).send().await.map_err(|e| {
                    self.fail(e, Action::Put, Some(key), Some(&version), &format!("cannot lock {key} after its upload"))
                })?;
            }
            if opts.legal_hold && !meta.legal_hold {
                let hold = ObjectLockLegalHold::builder().status(ObjectLockLegalHoldStatus::On).build();
                let req = self.inner.client.put_object_legal_hold().bucket(self.bucket()).key(&full);
                req.version_id(&version.0).legal_hold(hold).send().await.map_err(|e| {
                    self.fail(
                        e,
                        Action::LegalHoldOn,
                        Some(key),
                        Some(&version),
                        &format!("cannot hold {key} after its upload"),
                    )
                })?;
            }
            meta = self.head_meta(key, Some(&version), true).await?;
        }
        let mismatch = |detail: String| StoreError::Corrupt { key: key.to_owned(), version: version.clone(), detail };
        if opts.retention.is_some() && meta.retention != retention {
            return Err(mismatch(format!(
                "the server stored retention {} instead of the {} asked for",
                show_retention(meta.retention),
                show_retention(retention)
            )));
        }
        if retention.is_some() && meta.retention.is_none_or(|r| Some(r.mode) != retention.map(|r| r.mode)) {
            return Err(mismatch(format!(
                "the server stored retention {} instead of the {} asked for",
                show_retention(meta.retention),
                show_retention(retention)
            )));
        }
        if meta.legal_hold != opts.legal_hold {
            return Err(mismatch(format!(
                "the server stored legal hold {} instead of {}",
                meta.legal_hold, opts.legal_hold
            )));
        }
        if meta.size != data.len() as u64 || meta.checksum != format!("sha256:{sha_hex}") {
            return Err(mismatch(format!(
                "the server reports size {} and checksum {} for {} bytes with sha256:{sha_hex}",
                meta.size,
                meta.checksum,
                data.len()
            )));
        }
        Ok(meta)
    }

    /// One `PutObject` with the lock headers and checksums (and `If-None-Match: *` for a
    /// create-only put); the new version id.
    async fn put_single(
        &self,
        key: &str,
        full: &str,
        data: &[u8],
        retention: Option<Retention>,
        opts: &PutOptions,
        (sha_hex, sha): (&str, &[u8]),
    ) -> Result<Option<String>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut req = self
            .inner
            .client
            .put_object()
            .bucket(self.bucket())
            .key(full)
            .body(ByteStream::from(data.to_vec()))
            .content_length(i64::try_from(data.len()).unwrap_or(i64::MAX))
            .content_md5(b64.encode(md5::Md5::digest(data)))
            .checksum_sha256(b64.encode(sha))
            .metadata(CHECKSUM_META, sha_hex)
            .set_if_none_match(opts.create_only.then(|| "*".to_owned()));
        if let Some(r) = retention {
            req = req.object_lock_mode(lock_mode(r.mode)).object_lock_retain_until_date(to_datetime(r.until));
        }
        if opts.legal_hold {
            req = req.object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On);
        }
        let out = req
            .customize()
            .interceptor(PrecomputedPayloadHash(sha_hex.to_owned()))
            .send()
            .await
            .map_err(|e| self.fail(e, Action::Put, Some(key), None, &format!("cannot put {key}")))?;
        Ok(out.version_id().map(str::to_owned))
    }

    /// A multipart upload with the lock headers on `CreateMultipartUpload`, aborted on any
    /// failure (an incomplete upload is no object, but it would cost storage); the new
    /// version id.
    async fn put_multipart(
        &self,
        key: &str,
        full: &str,
        data: &[u8],
        retention: Option<Retention>,
        opts: &PutOptions,
        sha_hex: &str,
    ) -> Result<Option<String>> {
        let c = &self.inner.client;
        let mut req = c
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(full)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata(CHECKSUM_META, sha_hex);
        if let Some(r) = retention {
            req = req.object_lock_mode(lock_mode(r.mode)).object_lock_retain_until_date(to_datetime(r.until));
        }
        if opts.legal_hold {
            req = req.object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On);
        }
        let created = req.send().await.map_err(|e| {
            self.fail(e, Action::Put, Some(key), None, &format!("cannot start the multipart upload of {key}"))
        })?;
        let upload = created.upload_id().map(str::to_owned).ok_or_else(|| {
            StoreError::invalid(format!("the server started a multipart upload of {key} without an upload id"))
        })?;
        // CreateMultipartUpload takes no condition; CompleteMultipartUpload does.
        let res = self.upload_parts(key, full, data, &upload, opts.create_only).await;
        if res.is_err() {
            // Best effort: the error that matters is the upload's.
            let abort = c.abort_multipart_upload().bucket(self.bucket()).key(full).upload_id(&upload);
            let _ = abort.send().await;
        }
        res
    }

    async fn upload_parts(
        &self,
        key: &str,
        full: &str,
        data: &[u8],
        upload: &str,
        create_only: bool,
    ) -> Result<Option<String>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let len = data.len() as u64;
        let part_size = usize::try_from(self.inner.multipart.part_size.max(len.div_ceil(MAX_PARTS)))
            .map_err(|_| StoreError::invalid(format!("{key} is too large")))?;
        let sem = Arc::new(tokio::sync::Semaphore::new(PART_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        let mut part_shas: Vec<Vec<u8>> = Vec::new();
        for (i, chunk) in data.chunks(part_size).enumerate() {
            let number = i32::try_from(i + 1).map_err(|_| StoreError::invalid(format!("{key} has too many parts")))?;
            let sha = sha2::Sha256::digest(chunk).to_vec();
            let req = self
                .inner
                .client
                .upload_part()
                .bucket(self.bucket())
                .key(full)
                .upload_id(upload)
                .part_number(number)
                .content_length(i64::try_from(chunk.len()).unwrap_or(i64::MAX))
                .content_md5(b64.encode(md5::Md5::digest(chunk)))
                .checksum_sha256(b64.encode(&sha))
                .body(ByteStream::from(chunk.to_vec()))
                .customize()
                .interceptor(PrecomputedPayloadHash(hex::encode(&sha)));
            part_shas.push(sha);
            let sem = sem.clone();
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (number, req.send().await.map_err(Failure::from_sdk))
            });
        }
        let mut parts = Vec::with_capacity(part_shas.len());
        while let Some(joined) = tasks.join_next().await {
            let (number, res) = joined.map_err(|e| StoreError::io("an upload task failed", e))?;
            let out = res.map_err(|f| {
                f.into_store(self, Action::Put, Some(key), None, &format!("cannot upload part {number} of {key}"))
            })?;
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .set_checksum_sha256(out.checksum_sha256().map(str::to_owned))
                    .build(),
            );
        }
        parts.sort_by_key(|p| p.part_number());
        let done = aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let out = self
            .inner
            .client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(full)
            .upload_id(upload)
            .multipart_upload(done)
            .set_if_none_match(create_only.then(|| "*".to_owned()))
            .send()
            .await
            .map_err(|e| self.fail(e, Action::Put, Some(key), None, &format!("cannot complete the upload of {key}")))?;
        // The server's checksum of the whole upload, if it gives one, is the SHA-256 of the
        // parts' SHA-256s ("composite", with a "-PARTS" suffix) — or of the whole object.
        if let Some(got) = out.checksum_sha256() {
            let composite = b64.encode(sha2::Sha256::digest(part_shas.concat()));
            let whole = b64.encode(sha2::Sha256::digest(data));
            let got = got.split_once('-').map_or(got, |(c, _)| c);
            if got != composite && got != whole {
                let version = VersionId(out.version_id().unwrap_or("null").to_owned());
                return Err(StoreError::Corrupt {
                    key: key.to_owned(),
                    version,
                    detail: format!(
                        "the completed upload's checksum {got} is neither the parts' {composite} nor the object's {whole}"
                    ),
                });
            }
        }
        Ok(out.version_id().map(str::to_owned))
    }

    async fn get_async(&self, key: &str, version: Option<&VersionId>) -> Result<Object> {
        let full = self.full_key(key)?;
        let client = &self.inner.client;
        let mut req = client.get_object().bucket(self.bucket()).key(&full);
        if let Some(v) = version {
            req = req.version_id(&v.0);
        }
        // For a read by version, whether it is the latest comes from a second request made
        // at the same time.
        let latest = version.map(|_| {
            let this = self.clone();
            let key = key.to_owned();
            self.inner.rt.get().spawn(async move { this.latest_object_version(&key).await })
        });
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                let f = Failure::from_sdk(e);
                let marker = || {
                    StoreError::invalid(format!(
                        "{key} version {} is a delete marker and has no data",
                        version.map(ToString::to_string).unwrap_or_default()
                    ))
                };
                if let Some(v) = version {
                    if f.delete_marker || f.status == Some(405) {
                        return Err(marker());
                    }
                    // Some servers answer a marker's version with 404: ask the listing.
                    if f.is_not_found() && self.find_listed(key, v).await?.is_some_and(|e| e.delete_marker) {
                        return Err(marker());
                    }
                }
                return Err(f.into_store(self, Action::Get, Some(key), version, &format!("cannot read {key}")));
            }
        };
        let vid = VersionId(out.version_id().unwrap_or("null").to_owned());
        let mut meta = ObjectVersion {
            key: key.to_owned(),
            version: vid.clone(),
            created: out.last_modified().map_or(Timestamp::UNIX_EPOCH, to_timestamp),
            is_latest: true,
            delete_marker: false,
            size: u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
            checksum: checksum_of(out.metadata(), out.e_tag()),
            retention: retention_of(out.object_lock_mode(), out.object_lock_retain_until_date()),
            legal_hold: out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
        };
        // One copy, into a buffer of the announced size: collecting the body and then making
        // it one contiguous `Vec` copied a pack twice (and faulted in two fresh buffers).
        let mut data = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0).min(MAX_PREALLOC));
        let mut body = out.body;
        while let Some(bytes) =
            body.try_next().await.map_err(|e| StoreError::io(format!("cannot read the data of {key}"), e))?
        {
            data.extend_from_slice(&bytes);
        }
        if let Some(latest) = latest {
            let latest = latest.await.map_err(|e| StoreError::io("a read task failed", e))??;
            meta.is_latest = latest.as_deref() == Some(vid.0.as_str());
        }
        let corrupt = |detail: String| StoreError::Corrupt { key: key.to_owned(), version: vid.clone(), detail };
        if data.len() as u64 != meta.size {
            return Err(corrupt(format!("read {} bytes, the server reports {}", data.len(), meta.size)));
        }
        let actual = match meta.checksum.split_once(':') {
            Some(("sha256", _)) => format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data))),
            Some(("md5", _)) => format!("md5:{}", hex::encode(md5::Md5::digest(&data))),
            _ => return Err(corrupt(format!("no checksum to verify against ({:?})", meta.checksum))),
        };
        if actual != meta.checksum {
            return Err(corrupt(format!("checksum mismatch: stored {}, read {actual}", meta.checksum)));
        }
        Ok(Object { meta, data })
    }

    async fn head_async(&self, key: &str, version: Option<&VersionId>) -> Result<ObjectVersion> {
        match version {
            None => self.head_meta(key, None, true).await,
            // A delete marker cannot be HEADed by version on S3 (405); the listing knows
            // it, and knows whether the version is the latest.
            Some(v) => self.protection(key, v).await,
        }
    }

    async fn list_async(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ObjectVersion>> {
        let (found, next) = self.list_listed(prefix, token, limit).await?;
        let items = self.enrich(found).await?;
        Ok(Page { items, next })
    }

    /// The latest object versions of one `list` page, as listed (no `HeadObject`).
    async fn list_listed(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let mut after = match token {
            Some(t) => Some((decode_list_token(t)?, String::new())),
            None => None,
        }
        .map(|(k, v)| (self.inner.location.full_key(&k), v));
        let full_prefix = self.inner.location.full_key(prefix);
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let mut found: Vec<Listed> = Vec::new();
        let mut more = true;
        while found.len() <= limit && more {
            let (entries, next) = self.list_raw(&full_prefix, after.as_ref(), MAX_PAGE_LIMIT).await?;
            found.extend(entries.into_iter().filter(|e| e.is_latest && !e.delete_marker));
            more = next.is_some();
            after = next;
        }
        let has_more = found.len() > limit;
        found.truncate(limit);
        let next = if has_more { found.last().map(|e| hex::encode(self.store_key(&e.full_key))) } else { None };
        Ok((found, next))
    }

    /// Listing entries as the SDK listed them, keys relative to the store.
    fn entries(&self, listed: Vec<Listed>) -> Vec<ListEntry> {
        listed
            .into_iter()
            .map(|e| ListEntry {
                key: self.store_key(&e.full_key).to_owned(),
                version: VersionId(e.version),
                created: e.created,
                is_latest: e.is_latest,
                delete_marker: e.delete_marker,
                size: e.size,
            })
            .collect()
    }

    async fn list_versions_async(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<Page<ObjectVersion>> {
        let (found, next) = self.list_versions_listed(prefix, token, limit).await?;
        let items = self.enrich(found).await?;
        Ok(Page { items, next })
    }

    /// The versions and markers of one `list_versions` page, as listed (no `HeadObject`).
    async fn list_versions_listed(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let mut after = match token {
            Some(t) => {
                let (k, v) = decode_versions_token(t)?;
                Some((self.inner.location.full_key(&k), v))
            }
            None => None,
        };
        let full_prefix = self.inner.location.full_key(prefix);
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        // Pages end where the server's pages end (its markers become the token): the two
        // lists of a reply are merged here, and cutting a page anywhere else could skip
        // an entry the merge moved past the cut.
        let mut found: Vec<Listed> = Vec::new();
        loop {
            let want = limit - found.len();
            let (entries, next) = self.list_raw(&full_prefix, after.as_ref(), want).await?;
            found.extend(entries);
            after = next;
            if after.is_none() || found.len() >= limit {
                break;
            }
        }
        let next = after.map(|(k, v)| format!("{}.{v}", hex::encode(self.store_key(&k))));
        Ok((found, next))
    }

    async fn delete_version_async(&self, key: &str, version: &VersionId, bypass: bool) -> Result<()> {
        let full = self.full_key(key)?;
        let cur = self.protection(key, version).await?;
        let send_bypass = self.check_weakening(&cur, true, false, bypass)?;
        let mut req = self.inner.client.delete_object().bucket(self.bucket()).key(&full).version_id(&version.0);
        if send_bypass {
            req = req.bypass_governance_retention(true);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let err =
                    self.fail(e, Action::DeleteVersion, Some(key), Some(version), &format!("cannot delete {key}"));
                if err.kind() == crate::ErrorKind::Forbidden {
                    Err(self.locked_or(key, version, err).await)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn put_retention_async(
        &self,
        key: &str,
        version: &VersionId,
        retention: Option<Retention>,
        bypass: bool,
    ) -> Result<()> {
        let full = self.full_key(key)?;
        let cur = self.protection(key, version).await?;
        if cur.delete_marker {
            return Err(StoreError::invalid(format!(
                "{key} version {version} is a delete marker; it has no retention"
            )));
        }
        let now = self.inner.clock.now();
        let new = match retention {
            Some(r) => {
                check_future(r.until, now)?;
                Some(Retention { mode: r.mode, until: round_up(r.until) })
            }
            None => None,
        };
        let weakens = crate::lock::weakens(cur.retention, new, now);
        let send_bypass = self.check_weakening(&cur, false, weakens, bypass)?;
        if new.is_none() && cur.retention.is_none() {
            return Ok(());
        }
        let body = match new {
            Some(r) => ObjectLockRetention::builder()
                .mode(retention_mode(r.mode))
                .retain_until_date(to_datetime(r.until))
                .build(),
            None => ObjectLockRetention::builder().build(),
        };
        let mut req = self
            .inner
            .client
            .put_object_retention()
            .bucket(self.bucket())
            .key(&full)
            .version_id(&version.0)
            .retention(body);
        if send_bypass {
            req = req.bypass_governance_retention(true);
        }
        if let Err(e) = req.send().await {
            let err = self.fail(
                e,
                Action::PutRetention,
                Some(key),
                Some(version),
                &format!("cannot set the retention of {key}"),
            );
            return Err(if err.kind() == crate::ErrorKind::Forbidden {
                self.locked_or(key, version, err).await
            } else {
                err
            });
        }
        let stored = self.head_meta(key, Some(version), cur.is_latest).await?;
        if stored.retention != new {
            return Err(StoreError::Corrupt {
                key: key.to_owned(),
                version: version.clone(),
                detail: format!(
                    "the server stored retention {} instead of the {} asked for",
                    show_retention(stored.retention),
                    show_retention(new)
                ),
            });
        }
        Ok(())
    }

    async fn put_legal_hold_async(&self, key: &str, version: &VersionId, on: bool) -> Result<()> {
        let full = self.full_key(key)?;
        let cur = self.protection(key, version).await?;
        if cur.delete_marker {
            return Err(StoreError::invalid(format!(
                "{key} version {version} is a delete marker; it has no legal hold"
            )));
        }
        let status = if on { ObjectLockLegalHoldStatus::On } else { ObjectLockLegalHoldStatus::Off };
        let action = if on { Action::LegalHoldOn } else { Action::LegalHoldOff };
        self.inner
            .client
            .put_object_legal_hold()
            .bucket(self.bucket())
            .key(&full)
            .version_id(&version.0)
            .legal_hold(ObjectLockLegalHold::builder().status(status).build())
            .send()
            .await
            .map_err(|e| {
                self.fail(e, action, Some(key), Some(version), &format!("cannot set the legal hold of {key}"))
            })?;
        Ok(())
    }
}

impl ObjectStore for S3Store {
    fn principal(&self) -> &Principal {
        &self.inner.principal
    }

    fn capabilities(&self) -> crate::store::Capabilities {
        crate::store::Capabilities::REMOTE
    }

    fn put(&self, key: &str, data: &[u8], opts: &PutOptions) -> Result<ObjectVersion> {
        self.authorize(Action::Put)?;
        if opts.legal_hold {
            self.authorize(Action::LegalHoldOn)?;
        }
        validate_key(key)?;
        self.run(self.put_async(key, data, opts))
    }

    fn get(&self, key: &str, version: Option<&VersionId>) -> Result<Object> {
        self.authorize(Action::Get)?;
        self.run(self.get_async(key, version))
    }

    fn head(&self, key: &str, version: Option<&VersionId>) -> Result<ObjectVersion> {
        self.authorize(Action::Head)?;
        self.run(self.head_async(key, version))
    }

    fn list(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ObjectVersion>> {
        self.authorize(Action::List)?;
        self.run(self.list_async(prefix, token, limit))
    }

    fn list_versions(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ObjectVersion>> {
        self.authorize(Action::ListVersions)?;
        self.run(self.list_versions_async(prefix, token, limit))
    }

    /// One `ListObjectVersions` per page (several when most listed versions are not the
    /// latest), no `HeadObject`.
    fn list_entries(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ListEntry>> {
        self.authorize(Action::List)?;
        let (found, next) = self.run(self.list_listed(prefix, token, limit))?;
        Ok(Page { items: self.entries(found), next })
    }

    /// One `ListObjectVersions` per page, no `HeadObject`.
    fn list_version_entries(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<Page<ListEntry>> {
        self.authorize(Action::ListVersions)?;
        let (found, next) = self.run(self.list_versions_listed(prefix, token, limit))?;
        Ok(Page { items: self.entries(found), next })
    }

    fn delete(&self, key: &str) -> Result<ObjectVersion> {
        self.authorize(Action::Delete)?;
        validate_key(key)?;
        let full = self.full_key(key)?;
        let out = self
            .run(self.inner.client.delete_object().bucket(self.bucket()).key(&full).send())
            .map_err(|e| self.fail(e, Action::Delete, Some(key), None, &format!("cannot delete {key}")))?;
        let version = out.version_id().map(str::to_owned).ok_or_else(|| {
            StoreError::invalid(format!("the server made no delete marker for {key}: is versioning enabled?"))
        })?;
        Ok(ObjectVersion {
            key: key.to_owned(),
            version: VersionId(version),
            // S3 does not return the marker's time; this is the local time of the request.
            created: self.inner.clock.now(),
            is_latest: true,
            delete_marker: true,
            size: 0,
            checksum: String::new(),
            retention: None,
            legal_hold: false,
        })
    }

    fn delete_version(&self, key: &str, version: &VersionId, bypass_governance: bool) -> Result<()> {
        self.authorize(Action::DeleteVersion)?;
        self.run(self.delete_version_async(key, version, bypass_governance))
    }

    fn put_retention(
        &self,
        key: &str,
        version: &VersionId,
        retention: Option<Retention>,
        bypass_governance: bool,
    ) -> Result<()> {
        self.authorize(Action::PutRetention)?;
        self.run(self.put_retention_async(key, version, retention, bypass_governance))
    }

    fn put_legal_hold(&self, key: &str, version: &VersionId, on: bool) -> Result<()> {
        self.authorize(if on { Action::LegalHoldOn } else { Action::LegalHoldOff })?;
        self.run(self.put_legal_hold_async(key, version, on))
    }

    fn lock_config(&self) -> Result<LockConfig> {
        self.authorize(Action::GetLockConfig)?;
        self.run(self.lock_config_async())
    }

    fn put_lock_config(&self, config: &LockConfig) -> Result<()> {
        self.authorize(Action::PutLockConfig)?;
        if !config.enabled {
            return Err(StoreError::invalid("object lock cannot be disabled once enabled"));
        }
        let mut cfg =
            aws_sdk_s3::types::ObjectLockConfiguration::builder().object_lock_enabled(ObjectLockEnabled::Enabled);
        if let Some(d) = &config.default_retention {
            let days = days_of(d)?;
            let dr = aws_sdk_s3::types::DefaultRetention::builder().mode(retention_mode(d.mode)).days(days).build();
            cfg = cfg.rule(ObjectLockRule::builder().default_retention(dr).build());
        }
        self.run(
            self.inner
                .client
                .put_object_lock_configuration()
                .bucket(self.bucket())
                .object_lock_configuration(cfg.build())
                .send(),
        )
        .map_err(|e| self.fail(e, Action::PutLockConfig, None, None, "cannot set the object lock configuration"))?;
        Ok(())
    }

    fn versioning(&self) -> Result<Versioning> {
        self.authorize(Action::GetVersioning)?;
        let out = self
            .run(self.inner.client.get_bucket_versioning().bucket(self.bucket()).send())
            .map_err(|e| self.fail(e, Action::GetVersioning, None, None, "cannot read the versioning status"))?;
        Ok(match out.status() {
            Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
            _ => Versioning::Suspended,
        })
    }

    fn put_versioning(&self, status: Versioning) -> Result<()> {
        self.authorize(Action::PutVersioning)?;
        if status == Versioning::Suspended {
            return Err(StoreError::invalid("versioning cannot be suspended on a store with object lock"));
        }
        let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        self.run(
            self.inner.client.put_bucket_versioning().bucket(self.bucket()).versioning_configuration(enabled).send(),
        )
        .map_err(|e| self.fail(e, Action::PutVersioning, None, None, "cannot set the versioning status"))?;
        Ok(())
    }
}

/// One entry of a version listing.
#[derive(Clone, Debug)]
struct Listed {
    full_key: String,
    version: String,
    is_latest: bool,
    delete_marker: bool,
    created: Timestamp,
    size: u64,
}

impl Listed {
    fn marker_meta(&self, key: String) -> ObjectVersion {
        ObjectVersion {
            key,
            version: VersionId(self.version.clone()),
            created: self.created,
            is_latest: self.is_latest,
            delete_marker: true,
            size: 0,
            checksum: String::new(),
            retention: None,
            legal_hold: false,
        }
    }
}

/// What the SDK reported, reduced to what the mapping needs.
#[derive(Debug)]
struct Failure {
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    delete_marker: bool,
    source: BoxError,
}

impl Failure {
    fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let raw = err.raw_response();
        let status = raw.map(|r| r.status().as_u16());
        let delete_marker = raw.and_then(|r| r.headers().get("x-amz-delete-marker")) == Some("true");
        let code = err.code().map(str::to_owned);
        let message = err.message().map(str::to_owned);
        Self {
            status,
            code,
            message,
            delete_marker,
            // The chain of messages, without the SDK's debug dump of the error (one line for
            // the operator; it holds no credentials either way).
            source: crate::error::display_chain(&err).into(),
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self.code.as_deref(), Some("NoSuchKey" | "NoSuchVersion" | "NotFound")) || self.status == Some(404)
    }

    fn into_store(
        self,
        store: &S3Store,
        action: Action,
        key: Option<&str>,
        version: Option<&VersionId>,
        what: &str,
    ) -> StoreError {
        let p = &store.inner.principal;
        let detail = || {
            let code = self.code.as_deref().or(self.message.as_deref()).unwrap_or("error");
            match (&self.code, &self.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                _ => code.to_owned(),
            }
        };
        match (self.code.as_deref(), self.status) {
            (Some("NoSuchBucket"), _) => {
                StoreError::invalid(format!("bucket {} does not exist ({what})", store.bucket()))
            }
            (Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken"), _) => {
                StoreError::Unauthenticated { access_key: store.inner.access_key.clone() }
            }
            _ if key.is_some() && self.is_not_found() => {
                StoreError::NotFound { key: key.unwrap_or_default().to_owned(), version: version.cloned() }
            }
            // A create-only put (`If-None-Match: *`) whose key exists.
            (Some("PreconditionFailed"), _) | (_, Some(412)) if action == Action::Put && key.is_some() => {
                StoreError::Exists { key: key.unwrap_or_default().to_owned(), version: None }
            }
            // AWS: a concurrent conditional write to the same key is in flight; retry later.
            (Some("ConditionalRequestConflict"), _) if action == Action::Put => StoreError::Io {
                context: format!("{what}: a concurrent create-only put of the same key ({})", detail()),
                source: self.source,
            },
            (Some("AccessDenied"), _) | (_, Some(403)) => {
                StoreError::Forbidden { principal: p.name.clone(), role: p.role, action }
            }
            (Some("InvalidArgument") | Some("InvalidRequest"), _)
                if version.is_some()
                    && key.is_some()
                    && self.status == Some(400)
                    && self.message.as_deref().is_some_and(|m| m.contains("ersion")) =>
            {
                // S3 answers a version id it never issued with 400 InvalidArgument.
                StoreError::NotFound { key: key.unwrap_or_default().to_owned(), version: version.cloned() }
            }
            (_, Some(s)) if (400..500).contains(&s) && s != 408 && s != 429 => {
                StoreError::invalid(format!("{what}: the server refused the request ({})", detail()))
            }
            // Transient (already retried) or unknown: name what, where and which server, so
            // an operator can tell an unreachable endpoint from a failing bucket.
            _ => StoreError::Io {
                context: format!("{what} ({} at {})", store.inner.location, store.endpoint_for_errors()),
                source: self.source,
            },
        }
    }
}

async fn head_raw(
    client: &Client,
    bucket: &str,
    full_key: &str,
    version: Option<&str>,
) -> std::result::Result<HeadObjectOutput, Failure> {
    let mut req = client.head_object().bucket(bucket).key(full_key);
    if let Some(v) = version {
        req = req.version_id(v);
    }
    req.send().await.map_err(Failure::from_sdk)
}

fn meta_from_head(
    key: &str,
    version: Option<&VersionId>,
    out: &HeadObjectOutput,
    is_latest: bool,
) -> Result<ObjectVersion> {
    let vid =
        out.version_id().map(|v| VersionId(v.to_owned())).or_else(|| version.cloned()).unwrap_or_else(|| "null".into());
    Ok(ObjectVersion {
        key: key.to_owned(),
        version: vid,
        created: out.last_modified().map_or(Timestamp::UNIX_EPOCH, to_timestamp),
        is_latest,
        delete_marker: false,
        size: u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
        checksum: checksum_of(out.metadata(), out.e_tag()),
        retention: retention_of(out.object_lock_mode(), out.object_lock_retain_until_date()),
        legal_hold: out.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
    })
}

/// `sha256:HEX` from Coffer's metadata; for objects written by other tools, `md5:ETAG` when
/// the ETag is a plain MD5 (single-part upload); else empty.
fn checksum_of(meta: Option<&std::collections::HashMap<String, String>>, etag: Option<&str>) -> String {
    if let Some(h) = meta.and_then(|m| m.get(CHECKSUM_META)) {
        return format!("sha256:{h}");
    }
    match etag.map(|e| e.trim_matches('"')) {
        Some(e) if e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("md5:{}", e.to_ascii_lowercase())
        }
        _ => String::new(),
    }
}

fn retention_of(mode: Option<&ObjectLockMode>, until: Option<&DateTime>) -> Option<Retention> {
    let mode = match mode? {
        ObjectLockMode::Compliance => RetentionMode::Compliance,
        ObjectLockMode::Governance => RetentionMode::Governance,
        _ => return None,
    };
    Some(Retention { mode, until: to_timestamp(until?) })
}

fn lock_mode(m: RetentionMode) -> ObjectLockMode {
    match m {
        RetentionMode::Compliance => ObjectLockMode::Compliance,
        RetentionMode::Governance => ObjectLockMode::Governance,
    }
}

fn retention_mode(m: RetentionMode) -> ObjectLockRetentionMode {
    match m {
        RetentionMode::Compliance => ObjectLockRetentionMode::Compliance,
        RetentionMode::Governance => ObjectLockRetentionMode::Governance,
    }
}

fn to_timestamp(d: &DateTime) -> Timestamp {
    Timestamp::new(d.secs(), i32::try_from(d.subsec_nanos()).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn to_datetime(t: Timestamp) -> DateTime {
    DateTime::from_secs(t.as_second())
}

/// Retain-until dates are kept to the second, rounded up: rounding never shortens a lock.
fn round_up(t: Timestamp) -> Timestamp {
    let s = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    Timestamp::from_second(s).unwrap_or(Timestamp::MAX)
}

fn check_future(until: Timestamp, now: Timestamp) -> Result<()> {
    if until <= now {
        return Err(StoreError::invalid(format!("retain-until {until} is not in the future (now {now})")));
    }
    Ok(())
}

fn days_of(d: &DefaultRetention) -> Result<i32> {
    let secs = d.period.as_secs();
    if secs == 0 {
        return Err(StoreError::invalid("default retention period must be at least one day"));
    }
    if secs > 100 * 366 * 86_400 {
        return Err(StoreError::invalid("default retention period is longer than 100 years"));
    }
    if secs % 86_400 != 0 || d.period.subsec_nanos() != 0 {
        return Err(StoreError::invalid("an S3 bucket's default retention period is a whole number of days"));
    }
    i32::try_from(secs / 86_400).map_err(|_| StoreError::invalid("default retention period is too long"))
}

fn show_retention(r: Option<Retention>) -> String {
    r.map_or_else(|| "none".to_owned(), |r| format!("{} until {}", r.mode, r.until))
}

fn decode_list_token(t: &str) -> Result<String> {
    hex::decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| StoreError::invalid(format!("malformed list token {t:?}")))
}

fn decode_versions_token(t: &str) -> Result<(String, String)> {
    let bad = || StoreError::invalid(format!("malformed version list token {t:?}"));
    let (k, v) = t.split_once('.').ok_or_else(bad)?;
    Ok((decode_list_token(k).map_err(|_| bad())?, v.to_owned()))
}

/// Hands the SigV4 signer the body's SHA-256 (lowercase hex), which S3Store computes anyway
/// for `x-amz-checksum-sha256` and its metadata, instead of letting the signer hash the body
/// a second time: that second pass was 1.5 % of a backup's CPU time. The payload stays
/// signed (`x-amz-content-sha256` is this hash, and S3 checks the body against it), unlike
/// the SDK's `disable_payload_signing`.
#[derive(Debug)]
struct PrecomputedPayloadHash(String);

impl aws_sdk_s3::config::Intercept for PrecomputedPayloadHash {
    fn name(&self) -> &'static str {
        "coffer-precomputed-payload-hash"
    }

    fn modify_before_signing(
        &self,
        _context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_sdk_s3::error::BoxError> {
        cfg.interceptor_state().store_put(aws_runtime::auth::PayloadSigningOverride::Precomputed(self.0.clone()));
        Ok(())
    }
}

/// Keeps the raw body of a (buffered) reply, to read what the SDK's model loses.
#[derive(Clone, Debug, Default)]
struct BodyTap(Arc<std::sync::Mutex<Option<Vec<u8>>>>);

impl BodyTap {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

impl aws_sdk_s3::config::Intercept for BodyTap {
    fn name(&self) -> &'static str {
        "coffer-body-tap"
    }

    fn read_after_deserialization(
        &self,
        context: &aws_sdk_s3::config::interceptors::AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_sdk_s3::error::BoxError> {
        if let Some(b) = context.response().body().bytes() {
            *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b.to_vec());
        }
        Ok(())
    }
}

/// The position of each `(key, version id)` among the `<Version>` and `<DeleteMarker>`
/// elements of a `ListObjectVersions` reply.
fn xml_order(body: &[u8]) -> std::collections::HashMap<(String, String), usize> {
    let text = String::from_utf8_lossy(body);
    let mut out = std::collections::HashMap::new();
    let mut rest: &str = &text;
    let mut n = 0;
    loop {
        let v = rest.find("<Version>");
        let m = rest.find("<DeleteMarker>");
        let (start, close) = match (v, m) {
            (Some(a), Some(b)) if a < b => (a, "</Version>"),
            (Some(a), None) => (a, "</Version>"),
            (_, Some(b)) => (b, "</DeleteMarker>"),
            (None, None) => break,
        };
        let Some(len) = rest[start..].find(close) else { break };
        let elem = &rest[start..start + len];
        if let (Some(k), Some(id)) = (xml_text(elem, "Key"), xml_text(elem, "VersionId")) {
            out.insert((k, id), n);
            n += 1;
        }
        rest = &rest[start + len + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>…</tag>` in `elem`.
fn xml_text(elem: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = elem.find(&open)? + open.len();
    let end = start + elem[start..].find(&format!("</{tag}>"))?;
    let raw = &elem[start..end];
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let semi = rest[i..].find(';')?;
        let entity = &rest[i + 1..i + semi];
        match entity {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            e if e.starts_with("#x") => out.push(char::from_u32(u32::from_str_radix(&e[2..], 16).ok()?)?),
            e if e.starts_with('#') => out.push(char::from_u32(e[1..].parse().ok()?)?),
            _ => return None,
        }
        rest = &rest[i + semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_order_interleaves_versions_and_markers() {
        let body = br#"<ListVersionsResult><Version><Key>a&amp;b</Key><VersionId>3</VersionId></Version>
            <DeleteMarker><Key>a&amp;b</Key><VersionId>2</VersionId></DeleteMarker>
            <Version><Key>a&amp;b</Key><VersionId>1</VersionId></Version>
            <DeleteMarker><Key>&#233;</Key><VersionId>9</VersionId></DeleteMarker></ListVersionsResult>"#;
        let o = super::xml_order(body);
        let at = |k: &str, v: &str| o[&(k.to_owned(), v.to_owned())];
        assert_eq!((at("a&b", "3"), at("a&b", "2"), at("a&b", "1"), at("é", "9")), (0, 1, 2, 3));
    }

    #[test]
    fn errors_name_the_endpoint_without_its_user_info() {
        let mut location = super::S3Location::new("b", "p");
        location.endpoint = Some("https://user:hunter2@s3.example:9000".into());
        let store = super::S3Store::connect(&super::S3Options {
            location,
            credentials: super::S3Credentials::Chain,
            principal: crate::Principal { name: "t".into(), role: crate::Role::Reader },
            multipart: super::Multipart::default(),
        })
        .unwrap();
        assert_eq!(store.endpoint_for_errors(), "https://s3.example:9000");
    }

    #[test]
    fn retain_until_rounds_up_to_whole_seconds() {
        let t: jiff::Timestamp = "2030-01-01T00:00:00.25Z".parse().unwrap();
        assert_eq!(super::round_up(t).to_string(), "2030-01-01T00:00:01Z");
        let t: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(super::round_up(t), t);
    }
}
