//! IAM policy documents for the roles, generated from the access matrix ([`Role::allows`]).
//!
//! Invariant guarded: **the IAM policies S3 enforces never grant a role more than the matrix
//! does.** Each [`Action`] maps to the S3 IAM actions that `S3Store` needs to perform it
//! ([`s3_actions`]); a role's identity policy is the union for the actions it is allowed.
//! A bucket policy adds explicit denies of the weakening actions (changing the lock
//! configuration or versioning, bypassing governance, deleting a version, adding a delete
//! marker) for every
//! principal but the roles whose identity policy needs them, so a too-broad identity policy
//! elsewhere in the account cannot weaken the bucket either. `docs/iam.md` explains the
//! separation of duties; `docs/iam/*.json` are generated examples, kept identical to this
//! code by a test.
//!
//! What IAM cannot express, `S3Store` enforces itself (`Principal::authorize`): S3's
//! `HeadObject` needs `s3:GetObject`, so every role that may read metadata can read data as
//! far as IAM is concerned (Coffer's repository data is encrypted, and those roles have no
//! repository password); the audit log has no S3 counterpart.

use crate::role::{Action, Role};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The IAM policy language version.
pub const POLICY_VERSION: &str = "2012-10-17";

/// The default template of the principal ARNs the bucket policy names (`{role}` is replaced
/// by the role's name); `ACCOUNT_ID` is a placeholder to fill in.
pub const DEFAULT_PRINCIPAL_ARN: &str = "arn:aws:iam::ACCOUNT_ID:role/coffer-{role}";

/// The S3 actions that weaken a bucket's protection; the bucket policy denies each to every
/// principal but the roles that need it. `s3:DeleteObject` (a delete marker) removes
/// nothing but hides a key from plain reads, so it is the admin's alone: a stolen writer
/// key, or an over-broad policy elsewhere in the account, cannot hide a snapshot.
pub const WEAKENING_ACTIONS: [&str; 5] = [
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketVersioning",
    "s3:BypassGovernanceRetention",
    "s3:DeleteObjectVersion",
    "s3:DeleteObject",
];

/// What an S3 IAM action applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The bucket (configuration): `arn:aws:s3:::BUCKET`.
    Bucket,
    /// Listing the bucket, limited to the prefix by an `s3:prefix` condition.
    Listing,
    /// The objects under the prefix: `arn:aws:s3:::BUCKET/PREFIX*`.
    Objects,
    /// The objects, only to place a legal hold (`s3:object-lock-legal-hold` = `ON`).
    ObjectsHoldOn,
}

/// The S3 IAM actions `S3Store` needs to perform `action`, with what each applies to.
#[must_use]
pub fn s3_actions(action: Action) -> &'static [(&'static str, Scope)] {
    use Scope::{Bucket, Listing, Objects, ObjectsHoldOn};
    match action {
        // Every put carries its retention; a put with a legal hold needs PutObjectLegalHold.
        // Above the multipart threshold a put is a multipart upload (s3:PutObject covers
        // Create/UploadPart/Complete), aborted on failure; PutObjectRetention also locks a
        // version whose server ignored the upload's lock headers.
        Action::Put => &[
            ("s3:PutObject", Objects),
            ("s3:AbortMultipartUpload", Objects),
            ("s3:PutObjectRetention", Objects),
            ("s3:PutObjectLegalHold", ObjectsHoldOn),
        ],
        Action::Get => &[("s3:GetObject", Objects), ("s3:GetObjectVersion", Objects)],
        // HeadObject needs s3:GetObject (of a version: s3:GetObjectVersion), and the lock
        // headers in its reply need the retention and legal-hold read permissions.
        Action::Head => &[
            ("s3:GetObject", Objects),
            ("s3:GetObjectVersion", Objects),
            ("s3:GetObjectRetention", Objects),
            ("s3:GetObjectLegalHold", Objects),
        ],
        // S3Store lists with ListObjectVersions (ListObjectsV2 has no version ids).
        Action::List => &[("s3:ListBucket", Listing), ("s3:ListBucketVersions", Listing)],
        Action::ListVersions => &[("s3:ListBucketVersions", Listing)],
        Action::Delete => &[("s3:DeleteObject", Objects)],
        Action::DeleteVersion => &[("s3:DeleteObjectVersion", Objects)],
        Action::PutRetention => &[("s3:PutObjectRetention", Objects)],
        Action::BypassGovernance => &[("s3:BypassGovernanceRetention", Objects)],
        Action::LegalHoldOn => &[("s3:PutObjectLegalHold", ObjectsHoldOn)],
        Action::LegalHoldOff => &[("s3:PutObjectLegalHold", Objects)],
        Action::GetLockConfig => &[("s3:GetBucketObjectLockConfiguration", Bucket)],
        // `coffer vault init s3://…` creates the bucket with Object Lock: the admin's job.
        Action::PutLockConfig => &[("s3:PutBucketObjectLockConfiguration", Bucket), ("s3:CreateBucket", Bucket)],
        Action::GetVersioning => &[("s3:GetBucketVersioning", Bucket)],
        Action::PutVersioning => &[("s3:PutBucketVersioning", Bucket)],
        // The audit log itself is LocalVault's (on S3, CloudTrail's); what the S3 auditor
        // reads instead is the bucket's protective configuration, for the drift watch.
        Action::ReadAuditLog => &[
            ("s3:GetBucketPolicy", Bucket),
            ("s3:GetBucketPublicAccessBlock", Bucket),
            ("s3:GetBucketOwnershipControls", Bucket),
            ("s3:GetLifecycleConfiguration", Bucket),
            ("s3:GetReplicationConfiguration", Bucket),
        ],
    }
}

/// Which bucket and prefix the policies are for, and the ARNs of the roles' principals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyTarget {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix (as in `s3://BUCKET/PREFIX`): empty for the whole bucket.
    pub prefix: String,
    /// Template of each role's principal ARN, `{role}` replaced by the role's name.
    pub principal_arn: String,
}

impl PolicyTarget {
    /// The policies for `bucket` under `prefix`, with the default principal ARN template.
    #[must_use]
    pub fn new(bucket: impl Into<String>, prefix: &str) -> Self {
        let prefix = prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_owned() } else { format!("{prefix}/") };
        Self { bucket: bucket.into(), prefix, principal_arn: DEFAULT_PRINCIPAL_ARN.to_owned() }
    }

    /// The ARN of `role`'s principal.
    #[must_use]
    pub fn principal_arn(&self, role: Role) -> String {
        self.principal_arn.replace("{role}", role.as_str())
    }

    fn bucket_arn(&self) -> String {
        format!("arn:aws:s3:::{}", self.bucket)
    }

    fn objects_arn(&self) -> String {
        format!("arn:aws:s3:::{}/{}*", self.bucket, self.prefix)
    }
}

/// An IAM policy document (identity or resource policy), serialized in AWS's field order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// Always [`POLICY_VERSION`].
    pub version: &'static str,
    /// The statements.
    pub statement: Vec<Statement>,
}

/// One statement of a policy document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// Statement id.
    pub sid: String,
    /// `Allow` or `Deny`.
    pub effect: &'static str,
    /// Resource policies only: `"*"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<&'static str>,
    /// S3 IAM actions, sorted.
    pub action: Vec<String>,
    /// ARNs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource: Vec<String>,
    /// ARNs the statement does *not* apply to (instead of `Resource`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_resource: Vec<String>,
    /// Operator → condition key → values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: BTreeMap<&'static str, BTreeMap<&'static str, Vec<String>>>,
}

/// The S3 IAM actions `role` needs, by scope (an action granted on [`Scope::Objects`] is not
/// repeated under [`Scope::ObjectsHoldOn`]).
#[must_use]
pub fn role_s3_actions(role: Role) -> BTreeMap<Scope, BTreeSet<&'static str>> {
    let mut by_scope: BTreeMap<Scope, BTreeSet<&'static str>> = BTreeMap::new();
    for action in Action::ALL.into_iter().filter(|&a| role.allows(a)) {
        for &(s3, scope) in s3_actions(action) {
            by_scope.entry(scope).or_default().insert(s3);
        }
    }
    if let Some(objects) = by_scope.get(&Scope::Objects).cloned() {
        if let Some(hold) = by_scope.get_mut(&Scope::ObjectsHoldOn) {
            hold.retain(|a| !objects.contains(a));
        }
    }
    by_scope.retain(|_, set| !set.is_empty());
    by_scope
}

fn title(role: Role) -> String {
    let s = role.as_str();
    format!("{}{}", s[..1].to_ascii_uppercase(), &s[1..])
}

/// The identity policy to attach to `role`'s principal (user or IAM role).
#[must_use]
pub fn identity_policy(target: &PolicyTarget, role: Role) -> PolicyDocument {
    let mut statement = Vec::new();
    for (scope, actions) in role_s3_actions(role) {
        let mut condition = BTreeMap::new();
        let (suffix, resource) = match scope {
            Scope::Bucket => ("Bucket", target.bucket_arn()),
            Scope::Listing => {
                if !target.prefix.is_empty() {
                    condition
                        .insert("StringLike", BTreeMap::from([("s3:prefix", vec![format!("{}*", target.prefix)])]));
                }
                ("List", target.bucket_arn())
            }
            Scope::Objects => ("Objects", target.objects_arn()),
            Scope::ObjectsHoldOn => {
                condition
                    .insert("StringEquals", BTreeMap::from([("s3:object-lock-legal-hold", vec!["ON".to_owned()])]));
                ("LegalHoldOnOnly", target.objects_arn())
            }
        };
        statement.push(Statement {
            sid: format!("Coffer{}{suffix}", title(role)),
            effect: "Allow",
            principal: None,
            action: actions.into_iter().map(str::to_owned).collect(),
            resource: vec![resource],
            not_resource: Vec::new(),
            condition,
        });
    }
    PolicyDocument { version: POLICY_VERSION, statement }
}

/// The bucket policy: each of [`WEAKENING_ACTIONS`] denied to every principal whose ARN is
/// not one of the roles whose identity policy grants it (denied to all when no role has it).
#[must_use]
pub fn bucket_policy(target: &PolicyTarget) -> PolicyDocument {
    // Group the weakening actions by the set of roles that need them.
    let mut groups: BTreeMap<Vec<Role>, Vec<String>> = BTreeMap::new();
    for s3 in WEAKENING_ACTIONS {
        let roles: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|&r| {
                role_s3_actions(r).iter().any(|(scope, set)| *scope != Scope::ObjectsHoldOn && set.contains(s3))
            })
            .collect();
        groups.entry(roles).or_default().push(s3.to_owned());
    }
    let mut statement = Vec::new();
    for (roles, mut actions) in groups {
        actions.sort();
        let mut condition = BTreeMap::new();
        let who = if roles.is_empty() {
            "Everyone".to_owned()
        } else {
            condition.insert(
                "ArnNotEquals",
                BTreeMap::from([("aws:PrincipalArn", roles.iter().map(|&r| target.principal_arn(r)).collect())]),
            );
            format!("AllBut{}", roles.iter().map(|&r| title(r)).collect::<String>())
        };
        statement.push(Statement {
            sid: format!("CofferDeny{who}"),
            effect: "Deny",
            principal: Some("*"),
            action: actions,
            resource: vec![target.bucket_arn(), format!("arn:aws:s3:::{}/*", target.bucket)],
            not_resource: Vec::new(),
            condition,
        });
    }
    statement.push(create_only_statement(target));
    PolicyDocument { version: POLICY_VERSION, statement }
}

/// The names that may get a second version: PostgreSQL `.partial` WAL segments
/// (`PREFIXpg/SYSID/wal/TLI/NAME.partial`), which grow. As an object ARN pattern.
#[must_use]
pub fn rewritable_objects_arn(target: &PolicyTarget) -> String {
    format!("arn:aws:s3:::{}/{}pg/*/wal/*.partial", target.bucket, target.prefix)
}

/// The bucket policy's create-only rule: `s3:PutObject` that creates an object
/// (`PutObject`, `CompleteMultipartUpload`; `s3:ObjectCreationOperation` exempts the
/// multipart steps, which take no condition) without `If-None-Match` is denied to every
/// principal, on every name but the rewritable ones. So a stolen writer key cannot put a
/// second version over a pack, index, snapshot, key or config: S3 answers 412 to the
/// header, 403 to its absence.
fn create_only_statement(target: &PolicyTarget) -> Statement {
    Statement {
        sid: "CofferDenyOverwrite".to_owned(),
        effect: "Deny",
        principal: Some("*"),
        action: vec!["s3:PutObject".to_owned()],
        resource: Vec::new(),
        not_resource: vec![rewritable_objects_arn(target)],
        condition: BTreeMap::from([
            ("Null", BTreeMap::from([("s3:if-none-match", vec!["true".to_owned()])])),
            ("Bool", BTreeMap::from([("s3:ObjectCreationOperation", vec!["true".to_owned()])])),
        ]),
    }
}

/// Pretty JSON of a document, with a final newline (as the files in `docs/iam/`).
#[must_use]
pub fn to_json(doc: &PolicyDocument) -> String {
    let mut s = serde_json::to_string_pretty(doc).expect("a policy document always serializes");
    s.push('\n');
    s
}

/// The example files of `docs/iam/`: `ROLE.json` per role and `bucket-policy.json`, for the
/// bucket `BUCKET` and prefix `PREFIX/` with the default principal ARNs.
#[must_use]
pub fn example_files() -> Vec<(String, String)> {
    let target = PolicyTarget::new("BUCKET", "PREFIX/");
    let mut files: Vec<(String, String)> =
        Role::ALL.iter().map(|&r| (format!("{r}.json"), to_json(&identity_policy(&target, r)))).collect();
    files.push(("bucket-policy.json".to_owned(), to_json(&bucket_policy(&target))));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/iam/*.json` are generated by [`example_files`]; this fails when they drift.
    /// `COFFER_BLESS=1` rewrites them.
    #[test]
    fn docs_examples_match_code() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/iam");
        let bless = std::env::var("COFFER_BLESS").is_ok_and(|v| v == "1");
        for (name, text) in example_files() {
            let path = dir.join(&name);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let doc = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                doc, text,
                "docs/iam/{name} differs from the generated policy; run COFFER_BLESS=1 cargo test -p coffer-store iam"
            );
        }
    }

    #[test]
    fn no_role_gets_more_than_its_matrix_row() {
        let target = PolicyTarget::new("b", "");
        for role in Role::ALL {
            let granted: BTreeSet<String> =
                identity_policy(&target, role).statement.into_iter().flat_map(|s| s.action).collect();
            for action in Action::ALL {
                for &(s3, _) in s3_actions(action) {
                    // An S3 action is granted only if some allowed contract action needs it.
                    if granted.contains(s3) {
                        assert!(
                            Action::ALL.iter().any(|&a| role.allows(a) && s3_actions(a).iter().any(|(x, _)| *x == s3)),
                            "{role} is granted {s3}"
                        );
                    }
                }
            }
        }
        let writer: BTreeSet<String> =
            identity_policy(&target, Role::Writer).statement.into_iter().flat_map(|s| s.action).collect();
        for weak in WEAKENING_ACTIONS {
            assert!(!writer.contains(weak), "writer must not get {weak}");
        }
        let pruner: BTreeSet<String> =
            identity_policy(&target, Role::Pruner).statement.into_iter().flat_map(|s| s.action).collect();
        assert!(!pruner.contains("s3:PutObject") && pruner.contains("s3:DeleteObjectVersion"));
    }

    /// Every object-creating put without `If-None-Match` is denied to everyone, except on
    /// `.partial` WAL names; the multipart steps (which cannot carry the header) are not.
    #[test]
    fn bucket_policy_requires_create_only_puts_except_partial_wal() {
        let target = PolicyTarget::new("b", "p");
        let doc = bucket_policy(&target);
        let st = doc.statement.iter().find(|s| s.action == ["s3:PutObject"]).expect("a put statement");
        assert_eq!((st.effect, st.principal), ("Deny", Some("*")));
        assert!(st.resource.is_empty(), "the statement covers every name but the carve-out");
        assert_eq!(st.not_resource, ["arn:aws:s3:::b/p/pg/*/wal/*.partial"]);
        assert_eq!(st.condition["Null"]["s3:if-none-match"], ["true"]);
        assert_eq!(st.condition["Bool"]["s3:ObjectCreationOperation"], ["true"]);
        let json = to_json(&doc);
        assert!(json.contains("\"NotResource\"") && json.contains("\"s3:if-none-match\""), "{json}");
        // The pattern matches the repository's WAL keys (`Repository::wal_key`).
        let arn_glob = st.not_resource[0].trim_start_matches("arn:aws:s3:::b/");
        assert!(glob(arn_glob, "p/pg/7000000000000000001/wal/00000001/000000010000000000000003.partial"));
        assert!(!glob(arn_glob, "p/pg/7000000000000000001/wal/00000001/000000010000000000000003"));
        assert!(!glob(arn_glob, "p/data/ab/abcdef"));
    }

    /// IAM's ARN wildcard match, for `*` (any characters, including `/`).
    fn glob(pattern: &str, s: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == s,
            Some((head, rest)) => {
                s.starts_with(head) && (0..=s.len() - head.len()).any(|i| glob(rest, &s[head.len() + i..]))
            }
        }
    }

    #[test]
    fn bucket_policy_denies_each_weakening_action_to_all_but_its_roles() {
        let target = PolicyTarget::new("b", "p");
        assert_eq!(target.prefix, "p/");
        let doc = bucket_policy(&target);
        for weak in WEAKENING_ACTIONS {
            let st = doc.statement.iter().find(|s| s.action.iter().any(|a| a == weak)).expect("denied");
            assert_eq!(st.effect, "Deny");
            let allowed = &st.condition["ArnNotEquals"]["aws:PrincipalArn"];
            let want = if weak == "s3:DeleteObjectVersion" { Role::Pruner } else { Role::Admin };
            assert_eq!(allowed, &vec![target.principal_arn(want)], "{weak}");
        }
    }
}
