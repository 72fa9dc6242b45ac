//! The contract suite against `LocalVault`: one test per check (so a failure names it),
//! the whole suite on one shared vault (as an S3 bucket will be run), the access matrix
//! held against the issue's table, `LocalVault`-only details, and mutants that prove the
//! suite can fail.

use coffer_store::{
    Action, AuditEntry, LockConfig, Object, ObjectStore, ObjectVersion, Page, Principal, PutOptions, Retention,
    RetentionMode, Role, StoreError, VersionId, Versioning,
};
use coffer_testkit::contract::{self as suite, CHECKS, LocalVaultHarness, StoreHarness};
use coffer_testkit::model;
use jiff::{SignedDuration, Timestamp};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

macro_rules! on_local_vault {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                suite::$name(&LocalVaultHarness::new());
            }
        )*
        /// The checks wired above.
        const WIRED: &[&str] = &[$(stringify!($name)),*];
    };
}

on_local_vault!(
    put_always_creates_a_new_version,
    overwrite_leaves_older_versions_intact,
    create_only_put_refuses_an_existing_key,
    get_and_head_latest_and_by_version,
    open_ranged_reads_ranges_of_the_version,
    checksum_and_size_are_stored,
    empty_object_round_trips,
    delete_adds_a_marker_and_removes_nothing,
    delete_marker_has_no_data,
    deleting_a_marker_uncovers_the_previous_version,
    missing_keys_and_versions_are_not_found,
    invalid_keys_are_rejected,
    role_is_checked_before_anything_else,
    list_is_sorted_bytewise_by_prefix,
    list_paginates,
    list_hides_deleted_keys,
    list_versions_is_newest_first_with_markers,
    list_versions_paginates_across_keys,
    list_tokens_are_validated,
    list_entries_match_the_full_listings,
    default_retention_applies_when_none_is_given,
    retain_until_in_the_past_is_rejected,
    retain_until_keeps_whole_seconds,
    delete_version_of_an_unprotected_version,
    delete_version_refused_under_compliance,
    delete_version_refused_under_governance,
    delete_version_refused_under_legal_hold,
    put_retention_extends_compliance,
    put_retention_cannot_weaken_compliance,
    put_retention_governance_needs_bypass_and_admin,
    put_retention_on_an_unprotected_version,
    legal_hold_on_and_off,
    lock_config_cannot_be_disabled,
    versioning_cannot_be_suspended,
    audit_log_records_mutations,
    access_matrix,
    attack_matrix,
    retention_ends_at_retain_until,
    legal_hold_outlasts_retention,
    put_retention_after_expiry_is_free,
    default_retention_counts_from_the_put,
);

#[test]
fn every_check_is_wired() {
    let mut listed: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
    let mut wired = WIRED.to_vec();
    listed.sort_unstable();
    wired.sort_unstable();
    assert_eq!(listed, wired, "add new checks to on_local_vault! above");
}

/// The whole suite, one check after another, on one vault: checks stay inside their own
/// prefixes and put back what they change, as they must on a shared S3 bucket. The audit
/// chain of everything they did verifies.
#[test]
fn the_whole_suite_shares_one_vault() {
    let h = LocalVaultHarness::new();
    let ran = suite::run_all(&h);
    assert_eq!(ran.len(), CHECKS.len(), "LocalVault can move its clock, so every check runs");
    let verification = h.vault_handle(Role::Auditor).verify_audit_log().expect("verify the audit log");
    assert!(verification.problems.is_empty(), "audit chain: {:?}", verification.problems);
    assert!(verification.entries > 500, "the suite's requests were audited ({} entries)", verification.entries);
}

/// The access matrix as issue 2 and the brief state it (amended by the least-privilege
/// change: delete markers moved from the writer to the admin), in the audit log's action
/// names.
const MATRIX_FROM_THE_ISSUE: [(&str, &[&str]); 5] = [
    (
        "writer",
        &[
            "put",
            "get",
            "head",
            "list",
            "list-versions",
            "put-retention",
            "legal-hold-on",
            "get-lock-config",
            "get-versioning",
        ],
    ),
    ("reader", &["get", "head", "list", "list-versions", "get-lock-config", "get-versioning"]),
    ("pruner", &["head", "list", "list-versions", "delete-version", "get-lock-config", "get-versioning"]),
    (
        "admin",
        &[
            "head",
            "list",
            "list-versions",
            "delete",
            "put-retention",
            "bypass-governance",
            "legal-hold-on",
            "legal-hold-off",
            "get-lock-config",
            "put-lock-config",
            "get-versioning",
            "put-versioning",
            "read-audit-log",
        ],
    ),
    ("auditor", &["head", "list", "list-versions", "get-lock-config", "get-versioning", "read-audit-log"]),
];

/// Every cell of `Role::allows` (and of the model's table) against the issue's matrix.
#[test]
fn role_allows_matches_the_issue_matrix() {
    let mut diffs = Vec::new();
    for role in Role::ALL {
        let (_, allowed) = MATRIX_FROM_THE_ISSUE.iter().find(|(r, _)| *r == role.as_str()).expect("every role");
        for action in Action::ALL {
            let want = allowed.contains(&action.as_str());
            if role.allows(action) != want {
                diffs.push(format!("Role::allows({role}, {action}) = {}, issue says {want}", !want));
            }
            if model::permits(role, action) != want {
                diffs.push(format!("model::permits({role}, {action}) = {}, issue says {want}", !want));
            }
        }
    }
    let named: usize = MATRIX_FROM_THE_ISSUE.iter().map(|(_, a)| a.len()).sum();
    let cells = Role::ALL.iter().flat_map(|r| Action::ALL.map(|a| r.allows(a))).filter(|&x| x).count();
    assert_eq!(named, cells, "every action named in the matrix exists");
    assert!(diffs.is_empty(), "access matrix drift:\n{}", diffs.join("\n"));
}

/// `LocalVault` keeps retain-until dates to the second and rounds up, so rounding never
/// shortens a lock (the contract suite only uses whole seconds; S3 truncates).
#[test]
fn local_vault_rounds_retain_until_up_to_a_whole_second() {
    let h = LocalVaultHarness::new();
    let w = h.handle(Role::Writer);
    let whole: Timestamp = "2030-01-01T01:00:00Z".parse().unwrap();
    let requested = whole + SignedDuration::from_millis(400);
    let r = Retention { mode: RetentionMode::Governance, until: requested };
    let v = w.put("k", b"x", &PutOptions { retention: Some(r), legal_hold: false, create_only: false }).unwrap();
    let up = whole + SignedDuration::from_secs(1);
    assert_eq!(v.retention.unwrap().until, up, "put rounds up");
    assert_eq!(w.head("k", None).unwrap().retention.unwrap().until, up);
    let later = Retention { mode: RetentionMode::Governance, until: up + SignedDuration::from_millis(1) };
    w.put_retention("k", &v.version, Some(later), false).unwrap();
    assert_eq!(w.head("k", None).unwrap().retention.unwrap().until, up + SignedDuration::from_secs(1));
    // Less than a second ahead of a clock between seconds: accepted, rounded up.
    let soon = h.now() + SignedDuration::from_millis(100);
    let v = w
        .put(
            "soon",
            b"x",
            &PutOptions { retention: Some(Retention { until: soon, ..r }), legal_hold: false, create_only: false },
        )
        .unwrap();
    assert_eq!(v.retention.unwrap().until.subsec_nanosecond(), 0);
    assert!(v.retention.unwrap().until > soon);
}

// ---------------------------------------------------------------------------------------
// Mutants: a store that breaks one rule must fail the check for that rule.
// ---------------------------------------------------------------------------------------

/// One deliberate defect, injected by wrapping the real vault (kopia's `faulty` store).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defect {
    /// `list` returns its page in reverse order.
    ReversedList,
    /// `list` drops the first key of every page after the first.
    SkippedKeyAfterToken,
    /// `get` of a delete marker's version says not found instead of invalid request.
    MarkerIsNotFound,
    /// `get` by version returns the latest version.
    GetIgnoresVersion,
    /// Suspending versioning "succeeds" (and does nothing).
    SuspendAccepted,
    /// The auditor's `get` is served with the reader's rights.
    AuditorReadsData,
    /// A refused `delete_version` is reported as success.
    SilentLockedDelete,
    /// The audit log leaves out refusals.
    UnauditedRefusals,
    /// A create-only put overwrites like any other.
    CreateOnlyIgnored,
    /// The writer's delete marker is served with the admin's rights.
    WriterHides,
}

struct Mutant {
    inner: Box<dyn ObjectStore>,
    reader: Box<dyn ObjectStore>,
    admin: Box<dyn ObjectStore>,
    defect: Defect,
}

impl ObjectStore for Mutant {
    fn principal(&self) -> &Principal {
        self.inner.principal()
    }
    fn capabilities(&self) -> coffer_store::Capabilities {
        self.inner.capabilities()
    }
    fn put(&self, key: &str, data: &[u8], opts: &PutOptions) -> coffer_store::Result<ObjectVersion> {
        match self.defect {
            Defect::CreateOnlyIgnored => self.inner.put(key, data, &PutOptions { create_only: false, ..*opts }),
            _ => self.inner.put(key, data, opts),
        }
    }
    fn get(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<Object> {
        match self.defect {
            Defect::AuditorReadsData if self.inner.principal().role == Role::Auditor => self.reader.get(key, version),
            Defect::GetIgnoresVersion => self.inner.get(key, None).or_else(|_| self.inner.get(key, version)),
            Defect::MarkerIsNotFound => match self.inner.get(key, version) {
                Err(StoreError::InvalidRequest(_)) => {
                    Err(StoreError::NotFound { key: key.to_owned(), version: version.cloned() })
                }
                other => other,
            },
            _ => self.inner.get(key, version),
        }
    }
    fn head(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<ObjectVersion> {
        self.inner.head(key, version)
    }
    fn list(&self, prefix: &str, token: Option<&str>, limit: usize) -> coffer_store::Result<Page<ObjectVersion>> {
        let mut page = self.inner.list(prefix, token, limit)?;
        match self.defect {
            Defect::ReversedList => page.items.reverse(),
            Defect::SkippedKeyAfterToken if token.is_some() && !page.items.is_empty() => {
                page.items.remove(0);
            }
            _ => {}
        }
        Ok(page)
    }
    fn list_versions(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> coffer_store::Result<Page<ObjectVersion>> {
        self.inner.list_versions(prefix, token, limit)
    }
    fn delete(&self, key: &str) -> coffer_store::Result<ObjectVersion> {
        match self.defect {
            Defect::WriterHides if self.inner.principal().role == Role::Writer => self.admin.delete(key),
            _ => self.inner.delete(key),
        }
    }
    fn delete_version(&self, key: &str, version: &VersionId, bypass: bool) -> coffer_store::Result<()> {
        match self.inner.delete_version(key, version, bypass) {
            Err(StoreError::Locked { .. }) if self.defect == Defect::SilentLockedDelete => Ok(()),
            other => other,
        }
    }
    fn put_retention(
        &self,
        key: &str,
        version: &VersionId,
        retention: Option<Retention>,
        bypass: bool,
    ) -> coffer_store::Result<()> {
        self.inner.put_retention(key, version, retention, bypass)
    }
    fn put_legal_hold(&self, key: &str, version: &VersionId, on: bool) -> coffer_store::Result<()> {
        self.inner.put_legal_hold(key, version, on)
    }
    fn lock_config(&self) -> coffer_store::Result<LockConfig> {
        self.inner.lock_config()
    }
    fn put_lock_config(&self, config: &LockConfig) -> coffer_store::Result<()> {
        self.inner.put_lock_config(config)
    }
    fn versioning(&self) -> coffer_store::Result<Versioning> {
        self.inner.versioning()
    }
    fn put_versioning(&self, status: Versioning) -> coffer_store::Result<()> {
        if self.defect == Defect::SuspendAccepted && status == Versioning::Suspended {
            return Ok(());
        }
        self.inner.put_versioning(status)
    }
}

struct MutantHarness {
    real: LocalVaultHarness,
    defect: Defect,
}

impl StoreHarness for MutantHarness {
    fn handle(&self, role: Role) -> Box<dyn ObjectStore> {
        Box::new(Mutant {
            inner: self.real.handle(role),
            reader: self.real.handle(Role::Reader),
            admin: self.real.handle(Role::Admin),
            defect: self.defect,
        })
    }
    fn now(&self) -> Timestamp {
        self.real.now()
    }
    fn can_move_clock(&self) -> bool {
        self.real.can_move_clock()
    }
    fn advance(&self, by: Duration) {
        self.real.advance(by);
    }
    fn audit_log_as(&self, role: Role, after: u64) -> Option<coffer_store::Result<Vec<AuditEntry>>> {
        let log = self.real.audit_log_as(role, after);
        if self.defect != Defect::UnauditedRefusals {
            return log;
        }
        log.map(|r| r.map(|entries| entries.into_iter().filter(|e| e.outcome != "denied").collect()))
    }
}

/// Runs `check` against a vault with `defect` and demands that it fails.
fn must_catch(defect: Defect, check: fn(&dyn StoreHarness)) {
    let h = MutantHarness { real: LocalVaultHarness::new(), defect };
    let caught = catch_unwind(AssertUnwindSafe(|| check(&h))).is_err();
    assert!(caught, "the suite did not notice {defect:?}");
}

#[test]
fn suite_catches_an_unsorted_listing() {
    must_catch(Defect::ReversedList, suite::list_is_sorted_bytewise_by_prefix);
}

#[test]
fn suite_catches_a_key_skipped_between_pages() {
    must_catch(Defect::SkippedKeyAfterToken, suite::list_paginates);
}

#[test]
fn suite_catches_a_wrong_error_kind() {
    must_catch(Defect::MarkerIsNotFound, suite::delete_marker_has_no_data);
}

#[test]
fn suite_catches_a_lost_old_version() {
    must_catch(Defect::GetIgnoresVersion, suite::overwrite_leaves_older_versions_intact);
}

#[test]
fn suite_catches_suspended_versioning() {
    must_catch(Defect::SuspendAccepted, suite::versioning_cannot_be_suspended);
    must_catch(Defect::SuspendAccepted, suite::attack_matrix);
}

#[test]
fn access_matrix_catches_a_role_with_too_much_access() {
    must_catch(Defect::AuditorReadsData, suite::access_matrix);
}

#[test]
fn attack_matrix_catches_a_silently_refused_delete() {
    must_catch(Defect::SilentLockedDelete, suite::attack_matrix);
}

#[test]
fn audit_checks_catch_unaudited_refusals() {
    must_catch(Defect::UnauditedRefusals, suite::attack_matrix);
    must_catch(Defect::UnauditedRefusals, suite::access_matrix);
    must_catch(Defect::UnauditedRefusals, suite::audit_log_records_mutations);
}

#[test]
fn suite_catches_an_ignored_create_only_put() {
    must_catch(Defect::CreateOnlyIgnored, suite::create_only_put_refuses_an_existing_key);
}

#[test]
fn suite_catches_a_writer_that_may_hide_keys() {
    must_catch(Defect::WriterHides, suite::role_is_checked_before_anything_else);
    must_catch(Defect::WriterHides, suite::access_matrix);
    must_catch(Defect::WriterHides, suite::attack_matrix);
}

/// A vault made with `writer_create_only` (the local counterpart of the S3 bucket policy
/// that requires `If-None-Match`) refuses every writer put over an existing object with
/// `Exists` — even one that does not ask to be create-only — adds nothing, audits the
/// refusal, keeps the setting across a reopen, and still lets a growing `.partial` WAL
/// segment get new versions. A vault without the setting accepts the same overwrite.
#[test]
fn a_writer_create_only_vault_refuses_overwrites_except_partial_wal() {
    use coffer_store::{ErrorKind, LocalVault, VaultOptions, may_get_new_versions};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    LocalVault::init(&dir, &VaultOptions { writer_create_only: true, ..VaultOptions::default() }).unwrap();
    let vault = LocalVault::open(&dir).unwrap(); // the setting lives in the vault
    let as_role = |r| vault.login(&vault.read_credentials(r).unwrap()).unwrap();
    let (w, admin, auditor) = (as_role(Role::Writer), as_role(Role::Admin), as_role(Role::Auditor));
    let plain = PutOptions::default();
    let count = |key: &str| w.list_versions(key, None, 100).unwrap().items.iter().filter(|v| v.key == key).count();

    let v1 = w.put("repo/data/ab/pack", b"one", &plain).unwrap();
    let err = w.put("repo/data/ab/pack", b"two", &plain).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exists, "{err}");
    assert!(matches!(&err, StoreError::Exists { version: Some(v), .. } if *v == v1.version), "{err:?}");
    assert_eq!(count("repo/data/ab/pack"), 1, "nothing added");
    assert_eq!(w.get("repo/data/ab/pack", None).unwrap().data, b"one");
    let log = auditor.audit_log(0, 1000).unwrap();
    assert!(
        log.iter().any(|e| e.action == "put" && e.outcome == "denied" && e.key.as_deref() == Some("repo/data/ab/pack")),
        "the refusal is audited"
    );

    // The carve-out: a .partial WAL segment grows as new versions; its final name does not.
    let partial = "repo/pg/7000000000000000001/wal/00000001/000000010000000000000003.partial";
    assert!(may_get_new_versions(partial) && !may_get_new_versions(partial.trim_end_matches(".partial")));
    w.put(partial, b"a", &plain).unwrap();
    w.put(partial, b"ab", &plain).unwrap();
    assert_eq!(count(partial), 2, "a .partial segment gets new versions");
    let done = partial.trim_end_matches(".partial");
    w.put(done, b"abc", &plain).unwrap();
    assert_eq!(w.put(done, b"abd", &plain).unwrap_err().kind(), ErrorKind::Exists);
    assert!(!may_get_new_versions("repo/data/ab/x.partial") && !may_get_new_versions("wal/x.partial"));

    // Over the admin's delete marker the name is free again (as with If-None-Match on S3).
    admin.delete("repo/data/ab/pack").unwrap();
    w.put("repo/data/ab/pack", b"three", &plain).unwrap();

    // Without the setting, the same overwrite is an ordinary new version.
    let open = LocalVaultHarness::new();
    let ow = open.handle(Role::Writer);
    ow.put("k", b"one", &plain).unwrap();
    ow.put("k", b"two", &plain).unwrap();
}
