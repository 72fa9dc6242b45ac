//! Reading objects: `GetObject`/`HeadObject`, latest or by version, and the metadata a head
//! reports.
//!
//! Invariant guarded here: every get verifies the body's size and SHA-256 against what the
//! object was stored with; a hostile `Content-Length` cannot make the store preallocate more
//! than `MAX_PREALLOC`.

use super::*;

/// The most a get reserves up front for a body of the size the server announces (a larger
/// body grows its buffer as it arrives): a wrong or hostile `Content-Length` cannot make the
/// store allocate gigabytes it never receives.
pub(super) const MAX_PREALLOC: usize = 256 << 20;

pub(super) async fn head_raw(
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

pub(super) fn meta_from_head(
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
pub(super) fn checksum_of(meta: Option<&std::collections::HashMap<String, String>>, etag: Option<&str>) -> String {
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

impl S3Store {
    /// The metadata of one version (or the latest), with `is_latest` as given.
    pub(super) async fn head_meta(
        &self,
        key: &str,
        version: Option<&VersionId>,
        is_latest: bool,
    ) -> Result<ObjectVersion> {
        let full = self.full_key(key)?;
        let out =
            head_raw(&self.inner.client, self.bucket(), &full, version.map(|v| v.0.as_str())).await.map_err(|f| {
                f.into_store(self, Action::Head, Some(key), version, &format!("cannot read metadata of {key}"))
            })?;
        meta_from_head(key, version, &out, is_latest)
    }

    /// The version id of the key's latest version if it is an object; `None` when the key
    /// has none or its latest is a delete marker.
    pub(super) async fn latest_object_version(&self, key: &str) -> Result<Option<String>> {
        let full = self.full_key(key)?;
        match head_raw(&self.inner.client, self.bucket(), &full, None).await {
            Ok(out) => Ok(out.version_id().map(str::to_owned)),
            Err(f) if f.is_not_found() => Ok(None),
            Err(f) => Err(f.into_store(self, Action::Head, Some(key), None, &format!("cannot read metadata of {key}"))),
        }
    }

    pub(super) async fn get_async(&self, key: &str, version: Option<&VersionId>) -> Result<Object> {
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

    pub(super) async fn head_async(&self, key: &str, version: Option<&VersionId>) -> Result<ObjectVersion> {
        match version {
            None => self.head_meta(key, None, true).await,
            // A delete marker cannot be HEADed by version on S3 (405); the listing knows
            // it, and knows whether the version is the latest.
            Some(v) => self.protection(key, v).await,
        }
    }
}
