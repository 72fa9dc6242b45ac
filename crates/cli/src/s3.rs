//! Opening an S3 store: `--repo s3://BUCKET/PREFIX?endpoint=URL&region=R`.
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
    })
    .with_context(|| format!("cannot open {location}"))?;
    Ok(store)
}
