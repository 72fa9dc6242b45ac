//! Mapping the SDK's failures to the contract's errors (`NotFound`, `Locked`, `Denied`, …).
//!
//! Invariant guarded here: an `AccessDenied` on a locked version is reported as `Locked`,
//! and no error carries credentials or the endpoint's user info.

use super::*;

/// What the SDK reported, reduced to what the mapping needs.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) status: Option<u16>,
    pub(super) code: Option<String>,
    pub(super) message: Option<String>,
    pub(super) delete_marker: bool,
    pub(super) source: BoxError,
}

impl Failure {
    pub(super) fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> Self
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

    pub(super) fn is_not_found(&self) -> bool {
        matches!(self.code.as_deref(), Some("NoSuchKey" | "NoSuchVersion" | "NotFound")) || self.status == Some(404)
    }

    pub(super) fn into_store(
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
