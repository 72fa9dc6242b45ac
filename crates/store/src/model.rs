//! The values the store contract speaks in: versions, retention, lock configuration, pages.
//!
//! They mirror S3 versioning and Object Lock so that the same caller code works on a local
//! vault and on AWS S3.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Object Lock retention mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    /// Protected, but a principal with the governance-bypass permission may shorten or remove it.
    Governance,
    /// Protected from everyone until it ends; can only be extended.
    Compliance,
}

impl RetentionMode {
    /// The lowercase name (`governance`, `compliance`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "governance",
            Self::Compliance => "compliance",
        }
    }
}

impl fmt::Display for RetentionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RetentionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "governance" => Ok(Self::Governance),
            "compliance" => Ok(Self::Compliance),
            _ => Err(format!("unknown retention mode {s:?} (expected compliance or governance)")),
        }
    }
}

/// The retention of one version: protected in `mode` until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Mode.
    pub mode: RetentionMode,
    /// Retain-until date (exclusive: from this instant on the version is no longer protected).
    pub until: Timestamp,
}

impl Retention {
    /// Whether this retention still protects at `now`.
    #[must_use]
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.until > now
    }
}

/// Whether `key` is a name that legitimately gets new versions: a PostgreSQL `.partial` WAL
/// segment (`…pg/SYSID/wal/TLI/NAME.partial`, under any repository prefix), which is stored
/// again each time it grows. Every other name Coffer writes is written once. The pattern is
/// the IAM wildcard `*pg/*/wal/*.partial` (`*` matches any characters, `/` included), the
/// carve-out of the bucket policy's create-only rule (`crate::iam`).
#[must_use]
pub fn may_get_new_versions(key: &str) -> bool {
    let Some(stem) = key.strip_suffix(".partial") else { return false };
    stem.find("pg/").is_some_and(|i| stem[i + 3..].contains("/wal/"))
}

/// Options of a put.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Explicit retention; `None` applies the store's default retention, if any.
    pub retention: Option<Retention>,
    /// Place a legal hold on the new version.
    pub legal_hold: bool,
    /// Create-only: refuse (`Exists`) when the key's latest version is an object, instead
    /// of adding a second version (S3's `If-None-Match: *`). A key that does not exist, or
    /// whose latest version is a delete marker, is created as usual.
    pub create_only: bool,
}

/// Identifies one version of a key. Opaque to callers; assigned by the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionId(pub String);

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for VersionId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Metadata of one version of a key (an object or a delete marker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// Key.
    pub key: String,
    /// Version id.
    pub version: VersionId,
    /// When the version was created.
    pub created: Timestamp,
    /// Whether it is the newest version of its key.
    pub is_latest: bool,
    /// Whether it is a delete marker (no data).
    pub delete_marker: bool,
    /// Size of the data in bytes (0 for a delete marker).
    pub size: u64,
    /// Content checksum as `algorithm:hex` (empty for a delete marker).
    pub checksum: String,
    /// Retention, if any was ever set (it may have ended; see [`Retention::active_at`]).
    pub retention: Option<Retention>,
    /// Whether a legal hold is on.
    pub legal_hold: bool,
}

/// One entry of a listing without lock state or checksum ([`crate::ObjectStore::list_entries`]):
/// what a store can answer from its listing alone, for callers that only need to find keys
/// and versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// Key.
    pub key: String,
    /// Version id.
    pub version: VersionId,
    /// When the version was created.
    pub created: Timestamp,
    /// Whether it is the newest version of its key.
    pub is_latest: bool,
    /// Whether it is a delete marker (no data).
    pub delete_marker: bool,
    /// Size of the data in bytes (0 for a delete marker).
    pub size: u64,
}

impl From<ObjectVersion> for ListEntry {
    fn from(v: ObjectVersion) -> Self {
        Self {
            key: v.key,
            version: v.version,
            created: v.created,
            is_latest: v.is_latest,
            delete_marker: v.delete_marker,
            size: v.size,
        }
    }
}

/// One page of a listing. `next` is an opaque token for the following page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// Items, in listing order.
    pub items: Vec<T>,
    /// Token to pass for the next page; `None` when this is the last.
    pub next: Option<String>,
}

/// A store's default retention, applied to puts that name none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    /// Mode.
    pub mode: RetentionMode,
    /// Period from the put.
    #[serde(with = "duration_secs")]
    pub period: Duration,
}

impl fmt::Display for DefaultRetention {
    /// `MODE Nd` (or `MODE Ns` for a period that is not whole days): the drift watch's text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        if secs % 86_400 == 0 {
            write!(f, "{} {}d", self.mode, secs / 86_400)
        } else {
            write!(f, "{} {secs}s", self.mode)
        }
    }
}

/// Object Lock configuration of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockConfig {
    /// Object Lock is enabled. Set at creation; can never be turned off.
    pub enabled: bool,
    /// Default retention for puts without an explicit one.
    pub default_retention: Option<DefaultRetention>,
}

/// Versioning status of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Versioning {
    /// Every put creates a new version.
    Enabled,
    /// Puts replace the `null` version (never allowed on a locked store).
    Suspended,
}

impl fmt::Display for Versioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Enabled => "enabled",
            Self::Suspended => "suspended",
        })
    }
}

mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// The longest key the contract accepts (S3's limit, in bytes of UTF-8).
pub const MAX_KEY_LEN: usize = 1024;

/// Checks a key against the contract: non-empty, at most [`MAX_KEY_LEN`] bytes, no NUL.
///
/// # Errors
/// [`crate::StoreError::InvalidRequest`] naming the problem.
pub fn validate_key(key: &str) -> crate::Result<()> {
    if key.is_empty() {
        return Err(crate::StoreError::invalid("empty key"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(crate::StoreError::invalid(format!("key of {} bytes is longer than {MAX_KEY_LEN}", key.len())));
    }
    if key.contains('\0') {
        return Err(crate::StoreError::invalid(format!("key {key:?} contains a NUL byte")));
    }
    Ok(())
}

/// A store's protective configuration, field by field, as the drift watch compares it with
/// its baseline (`docs/security.md`). Values are canonical text (JSON documents sorted and
/// compact), so two readings of an unchanged store are equal.
///
/// Field names: `object-lock` (`enabled`/`disabled`), `default-retention` (`none` or
/// `MODE DAYSd`), `versioning`, and on S3 `bucket-policy`, `public-access-block`,
/// `ownership-controls`, `lifecycle`, `replication` (`none` when the bucket has none); on a
/// local vault `principals` (names, roles, access keys and a digest of the secrets' hashes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    /// Each field read, by name.
    pub fields: std::collections::BTreeMap<String, String>,
    /// Each field that could not be read, with why (one line): an alert, never a skip.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub unreadable: std::collections::BTreeMap<String, String>,
}

impl Protection {
    /// Records `field` as read, or as unreadable with the error's one-line chain.
    pub fn add(&mut self, field: &str, read: crate::Result<String>) {
        match read {
            Ok(v) => {
                self.fields.insert(field.to_owned(), v);
            }
            Err(e) => {
                let why = crate::error::display_chain(&e).split(['\n', '\r']).collect::<Vec<_>>().join(" ");
                self.unreadable.insert(field.to_owned(), why);
            }
        }
    }

    /// Records the lock configuration's two fields, `object-lock` and `default-retention`
    /// (both unreadable when it cannot be read).
    pub fn add_lock_config(&mut self, read: crate::Result<LockConfig>) {
        match read {
            Ok(c) => {
                self.add("object-lock", Ok(if c.enabled { "enabled" } else { "disabled" }.to_owned()));
                self.add(
                    "default-retention",
                    Ok(c.default_retention.map_or_else(|| "none".to_owned(), |d| d.to_string())),
                );
            }
            Err(e) => {
                let why = crate::error::display_chain(&e).split(['\n', '\r']).collect::<Vec<_>>().join(" ");
                self.unreadable.insert("object-lock".into(), why.clone());
                self.unreadable.insert("default-retention".into(), why);
            }
        }
    }
}
