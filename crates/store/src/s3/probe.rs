//! The immutability canary's probes over S3 ([`crate::probe`]): each request sent as it is,
//! without this store's own role and lock checks, so that only the server's answer counts.
//!
//! Invariant guarded here: the one path of `S3Store` that skips its own checks is limited to
//! the reserved prefix for objects (checked by the caller, [`ObjectStore::probe`]) and to the
//! two bucket-level requests the canary must see refused; a refusal maps to the contract's
//! errors like every other request (`Forbidden` for `AccessDenied`, `InvalidRequest` for
//! another 4xx).

use super::*;
use crate::probe::ProbeRequest;

impl S3Store {
    pub(super) async fn probe_async(&self, request: &ProbeRequest) -> Result<()> {
        let c = &self.inner.client;
        let action = request.action();
        match request {
            ProbeRequest::DeleteVersion { key, version, bypass_governance } => {
                let full = self.full_key(key)?;
                let mut req = c.delete_object().bucket(self.bucket()).key(&full).version_id(&version.0);
                if *bypass_governance {
                    req = req.bypass_governance_retention(true);
                }
                req.send()
                    .await
                    .map(drop)
                    .map_err(|e| self.fail(e, action, Some(key), Some(version), &format!("cannot delete {key}")))
            }
            ProbeRequest::PutRetention { key, version, retention, bypass_governance } => {
                let full = self.full_key(key)?;
                let body = match retention {
                    Some(r) => ObjectLockRetention::builder()
                        .mode(retention_mode(r.mode))
                        .retain_until_date(to_datetime(round_up(r.until)))
                        .build(),
                    None => ObjectLockRetention::builder().build(),
                };
                let mut req =
                    c.put_object_retention().bucket(self.bucket()).key(&full).version_id(&version.0).retention(body);
                if *bypass_governance {
                    req = req.bypass_governance_retention(true);
                }
                req.send().await.map(drop).map_err(|e| {
                    self.fail(e, action, Some(key), Some(version), &format!("cannot set the retention of {key}"))
                })
            }
            ProbeRequest::LegalHoldOff { key, version } => {
                let full = self.full_key(key)?;
                let off = ObjectLockLegalHold::builder().status(ObjectLockLegalHoldStatus::Off).build();
                c.put_object_legal_hold()
                    .bucket(self.bucket())
                    .key(&full)
                    .version_id(&version.0)
                    .legal_hold(off)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| {
                        self.fail(e, action, Some(key), Some(version), &format!("cannot set the legal hold of {key}"))
                    })
            }
            ProbeRequest::PutVersioning(status) => {
                let status = match status {
                    Versioning::Enabled => BucketVersioningStatus::Enabled,
                    Versioning::Suspended => BucketVersioningStatus::Suspended,
                };
                let conf = VersioningConfiguration::builder().status(status).build();
                c.put_bucket_versioning()
                    .bucket(self.bucket())
                    .versioning_configuration(conf)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| self.fail(e, action, None, None, "cannot set the versioning status"))
            }
            ProbeRequest::PutLockConfig(config) => {
                // S3 has no "disabled": the value is sent as it is, for the server to refuse.
                let enabled =
                    if config.enabled { ObjectLockEnabled::Enabled } else { ObjectLockEnabled::from("Disabled") };
                let mut cfg = aws_sdk_s3::types::ObjectLockConfiguration::builder().object_lock_enabled(enabled);
                if let Some(d) = &config.default_retention {
                    let dr = aws_sdk_s3::types::DefaultRetention::builder()
                        .mode(retention_mode(d.mode))
                        .days(days_of(d)?)
                        .build();
                    cfg = cfg.rule(ObjectLockRule::builder().default_retention(dr).build());
                }
                c.put_object_lock_configuration()
                    .bucket(self.bucket())
                    .object_lock_configuration(cfg.build())
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| self.fail(e, action, None, None, "cannot set the object lock configuration"))
            }
        }
    }

    /// A create-only `PutObject` without lock headers, then the version as `HeadObject`
    /// reports it: the server's own default retention, or none.
    pub(super) async fn probe_put_unlocked_async(&self, key: &str, data: &[u8]) -> Result<ObjectVersion> {
        let full = self.full_key(key)?;
        let sha = sha2::Sha256::digest(data);
        let sha_hex = hex::encode(sha);
        let opts = PutOptions { create_only: true, ..PutOptions::default() };
        let version = self.put_single(key, &full, data, None, &opts, (&sha_hex, &sha)).await?;
        let version = VersionId(version.ok_or_else(|| {
            StoreError::invalid(format!(
                "the server stored {key} without a version id: bucket {} does not have versioning enabled",
                self.bucket()
            ))
        })?);
        self.head_meta(key, Some(&version), true).await
    }
}
