//! Setting up a bucket for Coffer (`coffer vault init s3://…`): create it with Object Lock,
//! versioning and a default retention, or check that an existing one meets the policy.

use super::S3Store;
use crate::error::{Result, StoreError};
use crate::model::{DefaultRetention, LockConfig};
use crate::role::Action;

/// What [`S3Store::init_bucket`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketInit {
    /// The bucket was created.
    Created,
    /// The bucket existed and meets the policy.
    Checked,
}

impl S3Store {
    /// Whether the bucket exists. Asks with `GetBucketVersioning`, which every role's IAM
    /// policy grants unconditionally (`HeadBucket` needs `s3:ListBucket`, which a policy for
    /// a prefix grants only with an `s3:prefix` condition that `HeadBucket` cannot meet).
    ///
    /// # Errors
    /// `Forbidden` (not allowed to see it, or bad credentials), `Io`.
    pub fn bucket_exists(&self) -> Result<bool> {
        use aws_sdk_s3::error::ProvideErrorMetadata as _;
        let bucket = self.bucket().to_owned();
        match self.run(self.inner.client.get_bucket_versioning().bucket(&bucket).send()) {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchBucket") => Ok(false),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => Ok(false),
                // A reply the SDK cannot parse (moto's `get-bucket-versioning-unparseable`)
                // still says the bucket is there.
                Some(200) => Ok(true),
                _ => Err(self.fail(e, Action::GetVersioning, None, None, &format!("cannot read bucket {bucket}"))),
            },
        }
    }

    /// Creates the bucket with Object Lock, versioning and `default_retention` when it does
    /// not exist (admin); otherwise checks that it meets the policy ([`check_policy`]).
    /// Either way the bucket's state is read back and checked at the end.
    ///
    /// # Errors
    /// `InvalidRequest` naming what an existing bucket lacks; `Forbidden`; `Io`.
    pub fn init_bucket(&self, default_retention: Option<DefaultRetention>) -> Result<(BucketInit, LockConfig)> {
        let what = if self.bucket_exists()? {
            BucketInit::Checked
        } else {
            self.create_bucket(default_retention)?;
            BucketInit::Created
        };
        let cfg = self.check_bucket()?;
        check_policy(self.bucket(), &cfg, default_retention)?;
        Ok((what, cfg))
    }
}

/// Checks an Object Lock bucket's default retention against the one asked for: when one is
/// asked, the bucket must have one of the same mode and at least as long a period. Without
/// one asked, any default (or none) is accepted: every Coffer put carries its own retention.
///
/// # Errors
/// `InvalidRequest`: one line naming the bucket, what it has and what is wanted.
pub fn check_policy(bucket: &str, cfg: &LockConfig, want: Option<DefaultRetention>) -> Result<()> {
    let Some(want) = want else { return Ok(()) };
    let show = |d: &DefaultRetention| format!("{} {}d", d.mode, d.period.as_secs() / 86_400);
    let refuse = |have: &str| {
        Err(StoreError::invalid(format!(
            "bucket {bucket} does not meet the policy: its default retention is {have}, wanted {}",
            show(&want)
        )))
    };
    match cfg.default_retention {
        None => refuse("none"),
        Some(have) if have.mode != want.mode || have.period < want.period => refuse(&show(&have)),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RetentionMode::{Compliance, Governance};
    use std::time::Duration;

    fn d(mode: crate::model::RetentionMode, days: u64) -> DefaultRetention {
        DefaultRetention { mode, period: Duration::from_secs(days * 86_400) }
    }

    #[test]
    fn policy_needs_the_same_mode_and_at_least_the_period() {
        let cfg = |dr| LockConfig { enabled: true, default_retention: dr };
        assert!(check_policy("b", &cfg(None), None).is_ok());
        assert!(check_policy("b", &cfg(Some(d(Governance, 1))), None).is_ok());
        assert!(check_policy("b", &cfg(Some(d(Compliance, 30))), Some(d(Compliance, 30))).is_ok());
        assert!(check_policy("b", &cfg(Some(d(Compliance, 31))), Some(d(Compliance, 30))).is_ok());
        let e = check_policy("b", &cfg(Some(d(Compliance, 29))), Some(d(Compliance, 30))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid request: bucket b does not meet the policy: its default retention is compliance 29d, wanted compliance 30d"
        );
        assert!(check_policy("b", &cfg(Some(d(Governance, 30))), Some(d(Compliance, 30))).is_err());
        assert!(check_policy("b", &cfg(None), Some(d(Compliance, 30))).is_err());
    }
}
