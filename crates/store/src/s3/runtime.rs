//! The AWS SDK from blocking code: a small runtime owned by a client ([`OwnedRuntime`]),
//! requests run on it from inside or outside another runtime ([`block_on_from_anywhere`]),
//! and the SDK's shared configuration from Coffer's settings ([`shared_config`]). Used by
//! [`super::S3Store`] and by the security watch's SQS consumer, so both connect the same way.
//!
//! Invariant guarded here: a secret key reaches the SDK's credentials provider only, never a
//! log or an error.

use crate::Credentials;

/// A client's own runtime; dropped without waiting when dropped inside an async context
/// (where waiting for its workers panics).
#[derive(Debug)]
pub struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl OwnedRuntime {
    /// A multi-threaded runtime of `workers` threads named `name`.
    ///
    /// # Errors
    /// When the threads cannot be started.
    pub fn new(workers: usize, name: &str) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(Self(Some(rt)))
    }

    /// The runtime.
    #[must_use]
    pub fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the runtime is there until its owner is dropped")
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
pub fn block_on_from_anywhere<F>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return rt.block_on(f);
    }
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("coffer-aws-call".into())
            .spawn_scoped(s, || rt.block_on(f))
            .expect("cannot start a thread for an AWS request")
            .join()
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The SDK's shared configuration: `region`, `endpoint` (an S3-compatible server, LocalStack)
/// and static `credentials` when given, else the AWS chain's.
pub async fn shared_config(
    region: Option<String>,
    endpoint: Option<&str>,
    credentials: Option<&Credentials>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r));
    }
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(c) = credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            &c.access_key,
            c.secret_key.expose(),
            None,
            None,
            "coffer",
        ));
    }
    loader.load().await
}
