//! `impl ObjectStore for S3Store`: the contract's blocking calls, each running its async
//! request on the store's runtime.
//!
//! Invariant guarded here: suspending versioning and disabling Object Lock are refused.

use super::*;

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

    /// One `HeadObject` by version: the caller's listing said it is an object.
    fn version_retention(&self, key: &str, version: &VersionId) -> Result<Option<Retention>> {
        self.authorize(Action::Head)?;
        Ok(self.run(self.head_meta(key, Some(version), false))?.retention)
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

    /// Every protective field of the bucket, one request each (`protection.rs`): a setting
    /// not configured is `none`, one that cannot be read is `unreadable`.
    fn protection(&self) -> Result<crate::model::Protection> {
        self.authorize(Action::GetLockConfig)?;
        Ok(self.read_protection())
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

    fn probe(&self, request: &crate::probe::ProbeRequest) -> Result<()> {
        // No role or lock check here: the server decides (see the module `probe`).
        request.check_reserved()?;
        self.run(self.probe_async(request))
    }

    fn probe_put_unlocked(&self, key: &str, data: &[u8]) -> Result<ObjectVersion> {
        crate::probe::check_reserved_key(Some(key))?;
        self.run(self.probe_put_unlocked_async(key, data))
    }
}
