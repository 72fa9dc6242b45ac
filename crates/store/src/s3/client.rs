//! The store's client and runtime: connecting (timeouts, retries), running requests from
//! blocking code inside or outside an async runtime, bucket creation and checks, and the
//! helpers every request goes through (authorization, key prefixing, error conversion).
//!
//! Invariants guarded here: every request is authorized for the role first; keys never
//! escape the store's prefix; errors name the endpoint without its user info (secrets never
//! reach errors).

use super::*;

/// Attempts per request (the first and up to four retries), standard SDK retry mode.
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// Longest pause between two attempts. With exponential backoff from one second and full
/// jitter, the pauses of one request add up to at most 1 + 2 + 4 + 5 = 12 s: a server that
/// is down (connection refused) is reported within seconds, not minutes.
pub(super) const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest wait for a TCP (and TLS) connection.
pub(super) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest wait, per attempt, from the start of a request to the first byte of its reply
/// (so it includes sending the body: generous enough for a multipart part or a pack on a
/// slow link). A server that accepts connections but never answers fails the attempt.
pub(super) const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Longest time for one operation, all attempts and pauses included.
pub(super) const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

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
        let rt =
            OwnedRuntime::new(2, "coffer-s3").map_err(|e| StoreError::io("cannot start the s3 client runtime", e))?;
        let loc = &opts.location;
        let client = block_on_from_anywhere(rt.get(), async {
            let region = loc.region.clone().or_else(|| loc.endpoint.as_ref().map(|_| "us-east-1".to_owned()));
            let creds = match &opts.credentials {
                S3Credentials::Static(c) => Some(c),
                S3Credentials::Chain => None,
            };
            let shared = runtime::shared_config(region, loc.endpoint.as_deref(), creds).await;
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
                rt,
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
    pub(super) fn run<F>(&self, f: F) -> F::Output
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
    pub(super) fn endpoint_for_errors(&self) -> String {
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

    pub(super) fn authorize(&self, action: Action) -> Result<()> {
        self.inner.principal.authorize(action)
    }

    pub(super) fn bucket(&self) -> &str {
        &self.inner.location.bucket
    }

    pub(super) fn full_key(&self, key: &str) -> Result<String> {
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
    pub(super) fn store_key<'a>(&self, full: &'a str) -> &'a str {
        full.strip_prefix(self.inner.location.prefix.as_str()).unwrap_or(full)
    }

    /// Converts an SDK failure into the contract's error for `action` on `key`/`version`.
    pub(super) fn fail<E>(
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
}

#[cfg(test)]
mod tests {
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
}
