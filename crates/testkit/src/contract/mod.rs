//! The `ObjectStore` contract suite: written once, run against every implementation.
//!
//! A behaviour of the store is defined by these checks, not by one implementation
//! (restic's `internal/backend/test/suite.go`, garage's `src/db/test.rs`). Each check is a
//! public function taking a [`StoreHarness`], so a failure names the check; [`CHECKS`]
//! lists them all and [`run_all`] runs every one that the harness can run.
//!
//! # Writing a harness
//!
//! A [`StoreHarness`] hands out a store handle per [`Role`], tells the time the store's
//! lock decisions read, and, where it can, moves that time and reads the audit log.
//! [`LocalVaultHarness`] is the one for `LocalVault`; an S3 harness and a vault-server
//! harness will follow. A harness's store must start with Object Lock and versioning
//! enabled and **no default retention** (checks that need one set it and put the old
//! configuration back).
//!
//! # Sharing one store
//!
//! Every check works under its own fresh key prefix (`<check>-<random>/`) and never lists
//! outside it, so all checks can run one after another against one store, as they must
//! against an S3 bucket, where locked objects cannot be cleaned up. The two checks that
//! change the bucket's default retention restore it, even when they fail. Checks are not
//! meant to run concurrently on one store.
//!
//! # Time
//!
//! Only the checks marked `needs_clock` in [`CHECKS`] wait for a retention to end; they
//! call [`StoreHarness::advance`] and are skipped by [`run_all`] when
//! [`StoreHarness::can_move_clock`] is false (an S3 server keeps its own time). Every other
//! check uses retain-until dates at least a minute away, most an hour or more. All dates are whole
//! seconds: S3 keeps retain-until dates to the second and `LocalVault` rounds up to one.
//!
//! # The matrices
//!
//! [`access_matrix`] performs every [`Action`] as every [`Role`] in a state where only the
//! role could stop it, and holds the result against both [`Role::allows`] and the
//! hand-written table [`crate::model::PERMISSIONS`]. [`attack_matrix`] tries every
//! destructive or weakening request as every role and demands the exact refusal, an intact
//! protected version afterwards, and a `denied` entry in the audit log.

use crate::model::permits;
use coffer_store::{
    Action, AuditEntry, Clock, DefaultRetention, ErrorKind, ListEntry, LocalVault, LockConfig, ObjectStore,
    ObjectVersion, Page, PutOptions, Retention, RetentionMode, Role, StoreError, VaultHandle, VaultOptions, VersionId,
    Versioning,
};
use jiff::{SignedDuration, Timestamp};
use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

mod access;
mod attacks;
mod audit;
mod clock;
mod helpers;
mod listing;
mod local_vault;
mod locks;
mod markers;
mod retention;
mod versions;

pub use access::*;
pub use attacks::*;
pub use audit::*;
pub use clock::*;
use helpers::*;
pub use listing::*;
pub use local_vault::LocalVaultHarness;
pub use locks::*;
pub use markers::*;
pub use retention::*;
pub use versions::*;

/// What the contract suite needs from a store under test.
pub trait StoreHarness {
    /// A handle on the store acting as a principal with `role`. Handles for one role may
    /// be the same principal; different roles are different principals.
    fn handle(&self, role: Role) -> Box<dyn ObjectStore>;

    /// The time the store's lock decisions read, as best the harness knows it.
    fn now(&self) -> Timestamp;

    /// Whether [`Self::advance`] moves the store's clock (without real waiting).
    fn can_move_clock(&self) -> bool;

    /// Moves the store's clock forward by `by`. Called only by checks marked
    /// `needs_clock`, and by [`run_all`] only when [`Self::can_move_clock`] is true.
    fn advance(&self, by: Duration);

    /// Reads the audit log entries after `after` (0 for all), oldest first, as `role`, or
    /// `None` when the store keeps no audit log the harness can read.
    fn audit_log_as(&self, role: Role, after: u64) -> Option<coffer_store::Result<Vec<AuditEntry>>>;
}

/// One named check of the suite.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// The check's name (its function's name).
    pub name: &'static str,
    /// Whether it needs [`StoreHarness::advance`] to move the store's clock.
    pub needs_clock: bool,
    /// Runs it; panics on failure.
    pub run: fn(&dyn StoreHarness),
}

macro_rules! checks {
    ($($name:ident),* $(,)?; clock: $($clocked:ident),* $(,)?) => {
        /// Every check of the suite, in the order [`run_all`] runs them.
        pub const CHECKS: &[Check] = &[
            $(Check { name: stringify!($name), needs_clock: false, run: $name },)*
            $(Check { name: stringify!($clocked), needs_clock: true, run: $clocked },)*
        ];
    };
}

checks!(
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
    attack_matrix;
    clock:
    retention_ends_at_retain_until,
    legal_hold_outlasts_retention,
    put_retention_after_expiry_is_free,
    default_retention_counts_from_the_put,
);

/// Runs every check the harness can run (those needing the clock only when it can move),
/// each to the end even when others fail, and returns the names of the checks run.
///
/// # Panics
/// When any check fails, naming every failed check and its message.
pub fn run_all(h: &dyn StoreHarness) -> Vec<&'static str> {
    let results = run_each(h);
    let failed: Vec<String> =
        results.iter().filter_map(|(name, r)| r.as_ref().err().map(|msg| format!("{name}: {msg}"))).collect();
    assert!(failed.is_empty(), "{} contract check(s) failed:\n{}", failed.len(), failed.join("\n"));
    results.into_iter().map(|(name, _)| name).collect()
}

/// Runs every check the harness can run, each to the end, and returns each one's name and
/// outcome (`Err` with the failure message). For harnesses whose server has documented
/// quirks that break named checks (`crate::s3::Quirk`): the caller decides which failures
/// are expected, and must still demand that every other check passes.
pub fn run_each(h: &dyn StoreHarness) -> Vec<(&'static str, Result<(), String>)> {
    let mut results = Vec::new();
    for check in CHECKS {
        if check.needs_clock && !h.can_move_clock() {
            continue;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| (check.run)(h))).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
                .to_owned()
        });
        results.push((check.name, outcome));
    }
    results
}
