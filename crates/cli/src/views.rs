//! What `--json` prints: one typed view per document, all in this module, so the contract
//! is in one place and pinned by the golden files of `tests/integration/json_contract.rs`.
//!
//! **The contract.** Keys are snake_case everywhere (jq-friendly: `.summary.files_read`,
//! not `.summary["files-read"]`). Values keep their own spelling (a node type `char-dev`, a
//! finding kind `extra-version`, a role `writer`). Times are RFC 3339 strings, sizes are
//! numbers of bytes. A view is built from the library's types but never *is* one: the
//! library's serde derives describe the on-disk format (kebab-case, versioned), and
//! changing how a command prints must never change what a repository stores, nor the
//! other way round. Nothing here ever holds a secret: credentials appear only as the paths
//! of their files.
//!
//! The `pg …` commands render their documents in `pg.rs` (being moved to the libraries).

use coffer_repository::{ChainLink, Finding, Id, Node, PruneReport, Snapshot, Summary, VerifyReport, Xattr};
use coffer_store::{AuditEntry, AuditVerification, DefaultRetention, ObjectVersion, Retention, RetentionMode};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- repository commands

/// `coffer init --json`.
#[derive(Serialize)]
pub struct Init {
    /// Where.
    pub repository: String,
    /// The repository's id.
    pub id: String,
}

/// A backup's counts (`coffer backup --json`, and each snapshot's `summary`).
#[derive(Serialize)]
pub struct SummaryView {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    files_read: u64,
    blobs_added: u64,
    bytes_added: u64,
    bytes_stored: u64,
    locks_extended: u64,
    blobs_repacked: u64,
    packs_recovered: u64,
    errors: u64,
    changed_while_read: u64,
}

impl From<&Summary> for SummaryView {
    fn from(s: &Summary) -> Self {
        Self {
            files: s.files,
            dirs: s.dirs,
            others: s.others,
            bytes: s.bytes,
            files_read: s.files_read,
            blobs_added: s.blobs_added,
            bytes_added: s.bytes_added,
            bytes_stored: s.bytes_stored,
            locks_extended: s.locks_extended,
            blobs_repacked: s.blobs_repacked,
            packs_recovered: s.packs_recovered,
            errors: s.errors,
            changed_while_read: s.changed_while_read,
        }
    }
}

/// `coffer backup --json`.
#[derive(Serialize)]
pub struct Backup<'a> {
    /// The new snapshot's id.
    pub snapshot: String,
    /// When it expires.
    pub expires: Timestamp,
    /// Until when its objects are locked.
    pub retain_until: Timestamp,
    /// Counts.
    pub summary: SummaryView,
    /// Entries that could not be read, and why.
    pub warnings: &'a [String],
}

/// A snapshot's link to its predecessor.
#[derive(Serialize)]
pub struct ChainLinkView {
    id: Id,
    expires: Timestamp,
}

impl From<&ChainLink> for ChainLinkView {
    fn from(c: &ChainLink) -> Self {
        Self { id: c.id, expires: c.expires }
    }
}

/// A snapshot's contents.
#[derive(Serialize)]
pub struct SnapshotView<'a> {
    kind: &'a str,
    time: Timestamp,
    expires: Timestamp,
    retain_until: Timestamp,
    host: &'a str,
    paths: &'a [String],
    tags: &'a [String],
    tree: Id,
    parent: Option<Id>,
    previous: Option<ChainLinkView>,
    summary: SummaryView,
    program: &'a str,
}

impl<'a> From<&'a Snapshot> for SnapshotView<'a> {
    fn from(s: &'a Snapshot) -> Self {
        Self {
            kind: &s.kind,
            time: s.time,
            expires: s.expires,
            retain_until: s.retain_until,
            host: &s.host,
            paths: &s.paths,
            tags: &s.tags,
            tree: s.tree,
            parent: s.parent,
            previous: s.previous.as_ref().map(Into::into),
            summary: (&s.summary).into(),
            program: &s.program,
        }
    }
}

/// One element of `coffer snapshots --json`.
#[derive(Serialize)]
pub struct SnapshotItem<'a> {
    /// Its id.
    pub id: String,
    /// When the store created it (which a writer cannot choose).
    pub stored: Option<Timestamp>,
    /// What it holds.
    pub snapshot: SnapshotView<'a>,
}

/// An extended attribute.
#[derive(Serialize)]
pub struct XattrView<'a> {
    name: &'a str,
    /// Hex.
    value: String,
}

impl<'a> From<&'a Xattr> for XattrView<'a> {
    fn from(x: &'a Xattr) -> Self {
        Self { name: &x.name, value: hex(&x.value) }
    }
}

/// A directory entry.
#[derive(Serialize)]
pub struct NodeView<'a> {
    name: &'a str,
    /// The exact name bytes (hex) when the name is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    name_raw: Option<String>,
    #[serde(rename = "type")]
    kind: coffer_repository::NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    mtime: Timestamp,
    atime: Timestamp,
    ctime: Timestamp,
    inode: u64,
    device: u64,
    links: u64,
    size: u64,
    #[serde(skip_serializing_if = "<[Id]>::is_empty")]
    content: &'a [Id],
    #[serde(skip_serializing_if = "Option::is_none")]
    subtree: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    /// The exact target bytes (hex) when the target is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    target_raw: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    rdev: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<XattrView<'a>>,
}

#[allow(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl<'a> From<&'a Node> for NodeView<'a> {
    fn from(n: &'a Node) -> Self {
        Self {
            name: &n.name,
            name_raw: n.name_raw.as_deref().map(hex),
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            user: n.user.as_deref(),
            group: n.group.as_deref(),
            mtime: n.mtime,
            atime: n.atime,
            ctime: n.ctime,
            inode: n.inode,
            device: n.device,
            links: n.links,
            size: n.size,
            content: &n.content,
            subtree: n.subtree,
            target: n.target.as_deref(),
            target_raw: n.target_raw.as_deref().map(hex),
            rdev: n.rdev,
            xattrs: n.xattrs.iter().map(Into::into).collect(),
        }
    }
}

/// A path in a snapshot: shown lossily when it is not UTF-8, and then also exactly, as
/// hex, in `path_raw` (as trees keep such names in `name_raw`).
#[derive(Serialize)]
pub struct PathView {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_raw: Option<String>,
}

impl PathView {
    /// The view of `p`.
    pub fn new(p: &Path) -> Self {
        let raw = p.to_str().is_none().then(|| hex(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())));
        Self { path: p.to_string_lossy().into_owned(), path_raw: raw }
    }
}

/// One element of `coffer ls --json`'s `entries`.
#[derive(Serialize)]
pub struct LsEntry<'a> {
    /// Where.
    #[serde(flatten)]
    pub path: PathView,
    /// What.
    pub node: NodeView<'a>,
    /// Why a restore would refuse it (a forged tree), if it would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostile: Option<&'a str>,
}

/// One element of `coffer diff --json`.
#[derive(Serialize)]
pub struct DiffEntry {
    /// Where.
    #[serde(flatten)]
    pub path: PathView,
    /// `+` added, `-` removed, `M` content changed, `U` metadata only.
    pub change: &'static str,
}

/// `coffer stats --json`.
#[derive(Serialize)]
pub struct Stats {
    /// Live snapshots.
    pub snapshots: usize,
    /// Packs.
    pub packs: usize,
    /// Blobs.
    pub blobs: usize,
    /// Bytes stored (packs).
    pub stored_bytes: u64,
    /// Bytes before compression and encryption.
    pub raw_bytes: u64,
    /// Packs whose retention has ended (awaiting prune).
    pub packs_expired: usize,
}

/// `coffer restore --json`.
#[derive(Serialize)]
pub struct Restore<'a> {
    /// The snapshot restored.
    pub snapshot: String,
    /// Into where.
    pub target: String,
    /// Files written.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries.
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// What could not be restored exactly.
    pub warnings: &'a [String],
    /// Damaged or missing repository data.
    pub damaged: &'a [String],
    /// Hostile entries refused.
    pub refused: &'a [String],
}

/// One problem `verify` found.
#[derive(Serialize)]
pub struct ProblemView<'a> {
    object: &'a str,
    message: &'a str,
    affected: &'a [String],
}

/// One sign of tampering `verify` found.
#[derive(Serialize)]
pub struct FindingView<'a> {
    kind: coffer_repository::FindingKind,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    affected: &'a [String],
}

impl<'a> From<&'a Finding> for FindingView<'a> {
    fn from(f: &'a Finding) -> Self {
        Self {
            kind: f.kind,
            key: &f.key,
            version: f.version.as_deref(),
            created: f.created,
            principal: f.principal.as_deref(),
            message: &f.message,
            affected: &f.affected,
        }
    }
}

/// `coffer verify --json`.
#[derive(Serialize)]
pub struct Verify<'a> {
    snapshots: usize,
    trees: usize,
    blobs: usize,
    packs_locked: usize,
    packs_read: usize,
    problems: Vec<ProblemView<'a>>,
    findings: Vec<FindingView<'a>>,
}

impl<'a> From<&'a VerifyReport> for Verify<'a> {
    fn from(r: &'a VerifyReport) -> Self {
        Self {
            snapshots: r.snapshots,
            trees: r.trees,
            blobs: r.blobs,
            packs_locked: r.packs_locked,
            packs_read: r.packs_read,
            problems: r
                .problems
                .iter()
                .map(|p| ProblemView { object: &p.object, message: &p.message, affected: &p.affected })
                .collect(),
            findings: r.findings.iter().map(Into::into).collect(),
        }
    }
}

/// `coffer prune --json`.
#[derive(Serialize)]
pub struct Prune<'a> {
    versions_removed: u64,
    bytes_freed: u64,
    snapshots_removed: u64,
    packs_removed: u64,
    markers_removed: u64,
    versions_kept: u64,
    skipped: &'a [String],
}

impl<'a> From<&'a PruneReport> for Prune<'a> {
    fn from(r: &'a PruneReport) -> Self {
        Self {
            versions_removed: r.versions_removed,
            bytes_freed: r.bytes_freed,
            snapshots_removed: r.snapshots_removed,
            packs_removed: r.packs_removed,
            markers_removed: r.markers_removed,
            versions_kept: r.versions_kept,
            skipped: &r.skipped,
        }
    }
}

/// One element of `coffer key list --json`.
#[derive(Serialize)]
pub struct KeyItem<'a> {
    /// The key object (`keys/ID`).
    pub key: &'a str,
    /// When it was added.
    pub created: Timestamp,
    /// On which host.
    pub host: &'a str,
    /// Whose it is.
    pub label: &'a str,
}

/// `coffer key add --json`.
#[derive(Serialize)]
pub struct KeyAdded {
    /// The new key object (`keys/ID`).
    pub key: String,
}

// ---------------------------------------------------------------- vault commands

/// A version's metadata (`vault versions`).
#[derive(Serialize)]
pub struct VersionView<'a> {
    key: &'a str,
    version: &'a str,
    created: Timestamp,
    size: u64,
    checksum: &'a str,
    is_latest: bool,
    delete_marker: bool,
    retention: Option<RetentionView>,
    legal_hold: bool,
}

impl<'a> VersionView<'a> {
    /// The view of `v`; `now` decides whether its retention is still active.
    pub fn new(v: &'a ObjectVersion, now: Timestamp) -> Self {
        Self {
            key: &v.key,
            version: &v.version.0,
            created: v.created,
            size: v.size,
            checksum: &v.checksum,
            is_latest: v.is_latest,
            delete_marker: v.delete_marker,
            retention: v.retention.map(|r| RetentionView::new(r, now)),
            legal_hold: v.legal_hold,
        }
    }
}

/// A retention.
#[derive(Serialize)]
pub struct RetentionView {
    mode: RetentionMode,
    until: Timestamp,
    /// Whether it still protects the version.
    active: bool,
}

impl RetentionView {
    /// The view of `r` at `now`.
    pub fn new(r: Retention, now: Timestamp) -> Self {
        Self { mode: r.mode, until: r.until, active: r.active_at(now) }
    }
}

/// A default retention.
#[derive(Serialize)]
pub struct DefaultRetentionView {
    mode: RetentionMode,
    /// As typed, e.g. `90d`.
    period: String,
    period_seconds: u64,
}

impl From<DefaultRetention> for DefaultRetentionView {
    fn from(d: DefaultRetention) -> Self {
        Self { mode: d.mode, period: crate::parse::format_period(d.period), period_seconds: d.period.as_secs() }
    }
}

/// `coffer vault init DIR --json`.
#[derive(Serialize)]
pub struct VaultInit<'a> {
    /// The vault's directory.
    pub vault: &'a Path,
    /// Applied to puts that name no retention.
    pub default_retention: Option<DefaultRetentionView>,
    /// Role → its credentials file.
    pub credentials: BTreeMap<&'static str, &'a Path>,
}

/// `coffer vault init s3://… --json`.
#[derive(Serialize)]
pub struct BucketInit<'a> {
    /// The repository location.
    pub repository: &'a str,
    /// The bucket.
    pub bucket: &'a str,
    /// Whether this run created it.
    pub created: bool,
    /// Object Lock enabled.
    pub object_lock: bool,
    /// Versioning.
    pub versioning: coffer_store::Versioning,
    /// The bucket's default retention.
    pub default_retention: Option<DefaultRetentionView>,
}

/// `coffer vault put --json`.
#[derive(Serialize)]
pub struct Put<'a> {
    /// The key.
    pub key: &'a str,
    /// The new version.
    pub version: &'a str,
}

/// `coffer vault get --json`.
#[derive(Serialize)]
pub struct Get<'a> {
    /// The key.
    pub key: &'a str,
    /// The version read.
    pub version: &'a str,
    /// When it was stored.
    pub created: Timestamp,
    /// Bytes.
    pub size: u64,
    /// The store's checksum.
    pub checksum: &'a str,
    /// Where the data was written, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a Path>,
    /// The data, when it was not written to a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

/// `coffer vault rm --json`.
#[derive(Serialize)]
pub struct Rm<'a> {
    /// The key.
    pub key: &'a str,
    /// The delete marker added, or the version removed.
    pub version: &'a str,
    /// A delete marker was added (nothing removed).
    pub delete_marker: bool,
    /// The version was removed permanently.
    pub removed: bool,
}

/// `coffer vault retention --json`.
#[derive(Serialize)]
pub struct RetentionSet<'a> {
    /// The key.
    pub key: &'a str,
    /// The version.
    pub version: &'a str,
    /// Its retention, as stored.
    pub retention: RetentionView,
}

/// `coffer vault legal-hold --json`.
#[derive(Serialize)]
pub struct LegalHold<'a> {
    /// The key.
    pub key: &'a str,
    /// The version.
    pub version: &'a str,
    /// The new state.
    pub legal_hold: bool,
}

/// The lock configuration in `coffer vault config --json`.
#[derive(Serialize)]
pub struct ObjectLock {
    /// Always true once created.
    pub enabled: bool,
    /// Applied to puts that name no retention.
    pub default_retention: Option<DefaultRetentionView>,
}

/// `coffer vault config --json`.
#[derive(Serialize)]
pub struct VaultConfig<'a> {
    /// The vault directory or `s3://` location.
    pub vault: &'a str,
    /// Object Lock.
    pub object_lock: ObjectLock,
    /// Versioning.
    pub versioning: coffer_store::Versioning,
}

/// One element of `coffer vault audit-log --json`'s `entries`.
#[derive(Serialize)]
pub struct AuditEntryView<'a> {
    seq: u64,
    time: Timestamp,
    principal: &'a str,
    role: &'a str,
    action: &'a str,
    key: Option<&'a str>,
    version: Option<&'a str>,
    outcome: &'a str,
    reason: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> From<&'a AuditEntry> for AuditEntryView<'a> {
    fn from(e: &'a AuditEntry) -> Self {
        Self {
            seq: e.seq,
            time: e.time,
            principal: &e.principal,
            role: &e.role,
            action: &e.action,
            key: e.key.as_deref(),
            version: e.version.as_deref(),
            outcome: &e.outcome,
            reason: &e.reason,
            prev_hash: &e.prev_hash,
            hash: &e.hash,
        }
    }
}

/// `coffer vault audit-log --verify --json`.
#[derive(Serialize)]
pub struct AuditVerify<'a> {
    /// No problems found.
    pub intact: bool,
    /// Entries checked.
    pub entries: u64,
    /// Hash of the newest entry.
    pub head: &'a str,
    /// Problems, oldest first.
    pub problems: &'a [String],
    /// Entries dated before an earlier entry (a moved clock), oldest first, at most 100:
    /// security findings, even when `intact`.
    pub time_findings: Vec<TimeFindingView>,
}

/// One audit entry dated before an earlier one.
#[derive(Serialize)]
pub struct TimeFindingView {
    /// The entry dated too early.
    pub seq: u64,
    /// Its time.
    pub time: Timestamp,
    /// The entry before it with the newest time.
    pub newest_seq: u64,
    /// That entry's time.
    pub newest_time: Timestamp,
}

impl<'a> From<&'a AuditVerification> for AuditVerify<'a> {
    fn from(v: &'a AuditVerification) -> Self {
        Self {
            intact: v.problems.is_empty(),
            entries: v.entries,
            head: &v.head,
            problems: &v.problems,
            time_findings: v
                .time_findings
                .iter()
                .map(|f| TimeFindingView {
                    seq: f.seq,
                    time: f.time,
                    newest_seq: f.newest_seq,
                    newest_time: f.newest_before,
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------- iam

/// `coffer iam policies --json`. The policy documents themselves are AWS's format
/// (PascalCase), as AWS reads them.
#[derive(Serialize)]
pub struct IamPolicies<'a> {
    /// The bucket.
    pub bucket: &'a str,
    /// The repository's prefix in it.
    pub prefix: &'a str,
    /// Role → its identity policy.
    pub identity_policies: BTreeMap<&'static str, &'a coffer_store::iam::PolicyDocument>,
    /// Role → the ARN its policy is for.
    pub principal_arns: BTreeMap<&'static str, String>,
    /// The bucket policy.
    pub bucket_policy: &'a coffer_store::iam::PolicyDocument,
}

// ---------------------------------------------------------------- config

/// `coffer config check --json`.
#[derive(Serialize)]
pub struct ConfigCheck {
    /// The file checked.
    pub path: String,
    /// Always true (an invalid file is an error, not a document).
    pub valid: bool,
    /// The zone calendar schedules are read in (IANA name, or the system's).
    pub timezone: String,
    /// Every job, in the order `coffer_operations::jobs` gives.
    pub jobs: Vec<ConfigJob>,
}

/// One job of `coffer config check --json`.
#[derive(Serialize)]
pub struct ConfigJob {
    /// `OWNER/KIND`.
    pub id: String,
    /// `backup`, `base-backup`, `stream`, `archive-check`, `verify`, `prune`.
    pub kind: &'static str,
    /// The source (none for a repository's jobs).
    pub source: Option<String>,
    /// The repository.
    pub repository: String,
    /// The schedule as written; none for a continuous job.
    pub schedule: Option<String>,
    /// The next scheduled instant after now (RFC 3339); none for a continuous job.
    pub next_run: Option<String>,
}

/// `coffer config show --json`: the effective configuration with its keys in snake_case.
/// The names the user chose (repositories, sources, alert targets, roles) are map keys and
/// keep their spelling, like any other value.
pub fn config_doc(config: &coffer_operations::Config) -> serde_json::Result<serde_json::Value> {
    /// Whether the keys of the object at `path` are the user's names rather than fields.
    fn names_at(path: &[String]) -> bool {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        matches!(
            p.as_slice(),
            ["repositories" | "files" | "postgres"]
                | ["alerts", "webhook" | "email" | "command" | "heartbeat"]
                | ["repositories", _, "credentials"]
        )
    }
    fn snake(v: serde_json::Value, path: &mut Vec<String>) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let names = names_at(path);
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    path.push(k.clone());
                    let v = snake(v, path);
                    path.pop();
                    out.insert(if names { k } else { k.replace('-', "_") }, v);
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(|v| snake(v, path)).collect()),
            other => other,
        }
    }
    Ok(snake(serde_json::to_value(config)?, &mut Vec::new()))
}
