//! S3 repositories: `--repo s3://BUCKET/PREFIX?endpoint=URL&region=R` (opened by
//! `coffer_store::open_store`, see [`crate::open`]); and setting up its bucket
//! (`coffer vault init s3://…`, [`init_bucket`]).
//!
//! **Who.** S3 authenticates access keys, not Coffer roles, so the role comes from the
//! command line: `--role ROLE` (`COFFER_ROLE`), else the command's default role. The
//! credentials are `--credentials FILE` (`COFFER_CREDENTIALS`: a TOML file with
//! `access-key` and `secret-key`, as `vault init` writes) when given, else the standard AWS
//! chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, web identity, instance
//! role). Give each job only the keys of its role: the IAM policy of those keys is what S3
//! enforces, and `S3Store` refuses locally whatever the role may not do.

use crate::Global;
use anyhow::{Context as _, Result};
use coffer_store::{Role, S3Location, StoreHandle, StoreLocation, StoreRequest, open_store};

/// `coffer vault init s3://BUCKET…`: creates the bucket with Object Lock, versioning and the
/// default retention (as the admin unless `--role` says otherwise), or checks that an
/// existing bucket has versioning and Object Lock enabled and the default retention asked
/// for, and refuses one that does not.
pub fn init_bucket(
    global: &Global,
    location: S3Location,
    default_retention: Option<coffer_store::DefaultRetention>,
    out: &mut crate::output::Output,
) -> Result<()> {
    use crate::output;
    use coffer_store::s3::BucketInit;
    let req = StoreRequest {
        credentials: crate::open::credentials(global),
        role: global.role,
        check_job_role: false,
        ..StoreRequest::new(Some(StoreLocation::S3(location)), Role::Admin)
    };
    let opened = open_store(&req).map_err(|e| crate::open::open_error(global, crate::open::Family::Vault, e))?;
    let StoreHandle::S3(store) = opened.handle else { anyhow::bail!("an s3:// location opened another kind of store") };
    let location = store.location().to_string();
    let (what, cfg) = store.init_bucket(default_retention).with_context(|| format!("cannot set up {location}"))?;
    let created = what == BucketInit::Created;
    if out.json() {
        return out.doc(&crate::views::BucketInit {
            repository: &location,
            bucket: &store.location().bucket,
            created,
            object_lock: cfg.enabled,
            versioning: coffer_store::Versioning::Enabled,
            default_retention: cfg.default_retention.map(Into::into),
        });
    }
    let bucket = &store.location().bucket;
    if created {
        out.line(format_args!("created bucket {bucket} with object lock and versioning enabled"))?;
    } else {
        out.line(format_args!("bucket {bucket} exists and meets the policy: object lock and versioning enabled"))?;
    }
    out.line(format_args!("default retention: {}", output::default_retention_text(cfg.default_retention)))?;
    out.line(format_args!("repository location: {location}"))
}
