//! Opening an S3 store: `--repo s3://BUCKET/PREFIX?endpoint=URL&region=R`; and setting up
//! its bucket (`coffer vault init s3://…`, [`init_bucket`]).
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
use coffer_store::vault::read_credentials_file;
use coffer_store::{Principal, Role, S3Credentials, S3Location, S3Options, S3Store};

/// Whether `repo` names an S3 store.
pub fn is_s3(repo: &str) -> bool {
    repo.starts_with("s3://")
}

/// Opens the S3 store at `url` as the role the options choose (`default_role` otherwise).
pub fn open(global: &Global, url: &str, default_role: Role) -> Result<S3Store> {
    let location = S3Location::parse(url)?;
    let role = global.role.unwrap_or(default_role);
    let credentials = match global.credentials.as_ref().filter(|f| !f.as_os_str().is_empty()) {
        Some(file) => S3Credentials::Static(read_credentials_file(file)?),
        None => S3Credentials::Chain,
    };
    let store = S3Store::connect(&S3Options {
        location: location.clone(),
        credentials,
        principal: Principal { name: format!("s3-{role}"), role },
        multipart: coffer_store::s3::Multipart::default(),
    })
    .with_context(|| format!("cannot open {location}"))?;
    Ok(store)
}

/// `coffer vault init s3://BUCKET…`: creates the bucket with Object Lock, versioning and the
/// default retention (as the admin unless `--role` says otherwise), or checks that an
/// existing bucket has versioning and Object Lock enabled and the default retention asked
/// for, and refuses one that does not.
pub fn init_bucket(
    global: &Global,
    url: &str,
    default_retention: Option<coffer_store::DefaultRetention>,
    out: &mut crate::output::Output,
) -> Result<()> {
    use crate::output::{self, DefaultRetentionView};
    use coffer_store::s3::BucketInit;
    let store = open(global, url, Role::Admin)?;
    let location = store.location().to_string();
    let (what, cfg) = store.init_bucket(default_retention).with_context(|| format!("cannot set up {location}"))?;
    let created = what == BucketInit::Created;
    if out.json() {
        #[derive(serde::Serialize)]
        struct Init<'a> {
            repository: &'a str,
            bucket: &'a str,
            created: bool,
            object_lock: bool,
            versioning: coffer_store::Versioning,
            default_retention: Option<DefaultRetentionView>,
        }
        return out.doc(&Init {
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
