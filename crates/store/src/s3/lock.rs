//! Object Lock: reading a version's protection, deleting versions, changing retention and
//! legal holds, the bucket's lock configuration, and the conversions between the contract's
//! retention and S3's.
//!
//! Invariant guarded here: **Coffer never relies on the server to enforce a lock** — what
//! would remove or weaken an active lock is refused here before any request is sent.

use super::*;

pub(super) fn retention_of(mode: Option<&ObjectLockMode>, until: Option<&DateTime>) -> Option<Retention> {
    let mode = match mode? {
        ObjectLockMode::Compliance => RetentionMode::Compliance,
        ObjectLockMode::Governance => RetentionMode::Governance,
        _ => return None,
    };
    Some(Retention { mode, until: to_timestamp(until?) })
}

pub(super) fn lock_mode(m: RetentionMode) -> ObjectLockMode {
    match m {
        RetentionMode::Compliance => ObjectLockMode::Compliance,
        RetentionMode::Governance => ObjectLockMode::Governance,
    }
}

pub(super) fn retention_mode(m: RetentionMode) -> ObjectLockRetentionMode {
    match m {
        RetentionMode::Compliance => ObjectLockRetentionMode::Compliance,
        RetentionMode::Governance => ObjectLockRetentionMode::Governance,
    }
}

pub(super) fn to_timestamp(d: &DateTime) -> Timestamp {
    Timestamp::new(d.secs(), i32::try_from(d.subsec_nanos()).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(super) fn to_datetime(t: Timestamp) -> DateTime {
    DateTime::from_secs(t.as_second())
}

/// Retain-until dates are kept to the second, rounded up: rounding never shortens a lock.
pub(super) fn round_up(t: Timestamp) -> Timestamp {
    let s = t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    Timestamp::from_second(s).unwrap_or(Timestamp::MAX)
}

pub(super) fn check_future(until: Timestamp, now: Timestamp) -> Result<()> {
    if until <= now {
        return Err(StoreError::invalid(format!("retain-until {until} is not in the future (now {now})")));
    }
    Ok(())
}

pub(super) fn days_of(d: &DefaultRetention) -> Result<i32> {
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

pub(super) fn show_retention(r: Option<Retention>) -> String {
    r.map_or_else(|| "none".to_owned(), |r| format!("{} until {}", r.mode, r.until))
}

impl S3Store {
    /// The current metadata of a version for a lock decision: `NotFound`, or the version
    /// with its retention and hold (a delete marker has neither).
    pub(super) async fn protection(&self, key: &str, version: &VersionId) -> Result<ObjectVersion> {
        let listed = self.find_listed(key, version).await?;
        match listed {
            None => Err(StoreError::NotFound { key: key.to_owned(), version: Some(version.clone()) }),
            Some(e) if e.delete_marker => Ok(e.marker_meta(key.to_owned())),
            Some(e) => self.head_meta(key, Some(version), e.is_latest).await,
        }
    }

    /// Today's default retention of the bucket, if any.
    pub(super) async fn default_retention(&self) -> Result<Option<DefaultRetention>> {
        Ok(self.lock_config_async().await?.default_retention)
    }

    pub(super) async fn lock_config_async(&self) -> Result<LockConfig> {
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
    pub(super) fn check_weakening(
        &self,
        cur: &ObjectVersion,
        removing: bool,
        weakens: bool,
        bypass: bool,
    ) -> Result<bool> {
        crate::lock::guard(self.principal(), cur, removing, weakens, bypass, self.inner.clock.now())
    }

    /// After a refusal by the server: `Locked` if the version is protected now, else `err`.
    pub(super) async fn locked_or(&self, key: &str, version: &VersionId, err: StoreError) -> StoreError {
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

    pub(super) async fn delete_version_async(&self, key: &str, version: &VersionId, bypass: bool) -> Result<()> {
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

    pub(super) async fn put_retention_async(
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

    pub(super) async fn put_legal_hold_async(&self, key: &str, version: &VersionId, on: bool) -> Result<()> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn retain_until_rounds_up_to_whole_seconds() {
        let t: jiff::Timestamp = "2030-01-01T00:00:00.25Z".parse().unwrap();
        assert_eq!(super::round_up(t).to_string(), "2030-01-01T00:00:01Z");
        let t: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(super::round_up(t), t);
    }
}
