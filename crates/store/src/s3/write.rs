//! Writing objects: single puts and multipart uploads, each carrying its retention, legal
//! hold, `Content-MD5` and SHA-256, then checked by a `HeadObject`.
//!
//! Invariant guarded here: a put succeeds only once the server reports exactly the lock,
//! size and checksum asked for (a server that dropped the lock of a multipart upload gets
//! it set where the version has none, which can never weaken one).

use super::*;

/// Hands the SigV4 signer the body's SHA-256 (lowercase hex), which S3Store computes anyway
/// for `x-amz-checksum-sha256` and its metadata, instead of letting the signer hash the body
/// a second time: that second pass was 1.5 % of a backup's CPU time. The payload stays
/// signed (`x-amz-content-sha256` is this hash, and S3 checks the body against it), unlike
/// the SDK's `disable_payload_signing`.
#[derive(Debug)]
pub(super) struct PrecomputedPayloadHash(String);

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

impl S3Store {
    pub(super) async fn put_async(&self, key: &str, data: &[u8], opts: &PutOptions) -> Result<ObjectVersion> {
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
    pub(super) async fn put_single(
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
    pub(super) async fn put_multipart(
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

    pub(super) async fn upload_parts(
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
}
