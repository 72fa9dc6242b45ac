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

// ---------------------------------------------------------------------------------------
// LocalVault harness
// ---------------------------------------------------------------------------------------

/// The contract harness for `LocalVault`: a fresh vault in a temporary directory with a
/// manual clock, and one logged-in handle per role (credentials read from the vault's
/// `credentials/` directory, as the CLI does).
#[derive(Debug)]
pub struct LocalVaultHarness {
    clock: Clock,
    vault: LocalVault,
    handles: Vec<VaultHandle>,
    // Dropped last: removes the vault.
    _dir: tempfile::TempDir,
}

impl LocalVaultHarness {
    /// Where the clock of [`Self::new`] starts: deliberately a quarter second past a whole
    /// second, so that whole-second retain-until dates are never exactly "now".
    pub const START: &str = "2030-01-01T00:00:00.25Z";

    /// A fresh vault whose clock starts at [`Self::START`].
    ///
    /// # Panics
    /// If the vault cannot be created.
    #[must_use]
    pub fn new() -> Self {
        Self::starting_at(Self::START.parse().expect("valid start time"))
    }

    /// A fresh vault whose clock starts at `start`.
    ///
    /// # Panics
    /// If the vault cannot be created.
    #[must_use]
    pub fn starting_at(start: Timestamp) -> Self {
        Self::create(tempfile::tempdir().expect("create a temporary directory"), start)
    }

    /// A fresh vault whose clock starts at `start`, on `/dev/shm` (tmpfs) when the machine
    /// has it. The same code runs, but fsync costs nothing: for property tests that make
    /// thousands of requests. Durability is tested on a real disk by the crash trials.
    ///
    /// # Panics
    /// If the vault cannot be created.
    #[must_use]
    pub fn in_memory(start: Timestamp) -> Self {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        Self::create(dir.expect("create a temporary directory"), start)
    }

    fn create(dir: tempfile::TempDir, start: Timestamp) -> Self {
        let clock = Clock::manual(start);
        let opts = VaultOptions { clock: clock.clone(), ..VaultOptions::default() };
        let vault = LocalVault::init(dir.path().join("vault"), &opts).expect("init a vault");
        let handles = Role::ALL
            .iter()
            .map(|&role| {
                let creds = vault.read_credentials(role).expect("read credentials");
                vault.login(&creds).expect("log in")
            })
            .collect();
        Self { clock, vault, handles, _dir: dir }
    }

    /// The vault under test.
    #[must_use]
    pub fn vault(&self) -> &LocalVault {
        &self.vault
    }

    /// The logged-in vault handle for `role`.
    #[must_use]
    pub fn vault_handle(&self, role: Role) -> &VaultHandle {
        let i = Role::ALL.iter().position(|&r| r == role).expect("every role has a handle");
        &self.handles[i]
    }
}

impl Default for LocalVaultHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl StoreHarness for LocalVaultHarness {
    fn handle(&self, role: Role) -> Box<dyn ObjectStore> {
        Box::new(self.vault_handle(role).clone())
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn can_move_clock(&self) -> bool {
        true
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn audit_log_as(&self, role: Role, after: u64) -> Option<coffer_store::Result<Vec<AuditEntry>>> {
        let handle = self.vault_handle(role);
        let mut out: Vec<AuditEntry> = Vec::new();
        loop {
            let from = out.last().map_or(after, |e| e.seq);
            match handle.audit_log(from, 1000) {
                Ok(page) if page.is_empty() => return Some(Ok(out)),
                Ok(page) => out.extend(page),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A page limit up to which every page but the last must be full (S3's largest page).
const FULL_PAGE_LIMIT: usize = 1000;

/// One check's view: its key prefix and a handle per role.
struct Ctx<'h> {
    h: &'h dyn StoreHarness,
    prefix: String,
    handles: Vec<Box<dyn ObjectStore>>,
}

impl<'h> Ctx<'h> {
    fn new(h: &'h dyn StoreHarness, check: &str) -> Self {
        let mut nonce = [0u8; 5];
        getrandom::fill(&mut nonce).expect("random source");
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let handles = Role::ALL.iter().map(|&r| h.handle(r)).collect();
        Self { h, prefix: format!("{check}-{nonce}/"), handles }
    }

    fn as_role(&self, role: Role) -> &dyn ObjectStore {
        let i = Role::ALL.iter().position(|&r| r == role).expect("every role has a handle");
        self.handles[i].as_ref()
    }

    fn writer(&self) -> &dyn ObjectStore {
        self.as_role(Role::Writer)
    }

    fn reader(&self) -> &dyn ObjectStore {
        self.as_role(Role::Reader)
    }

    fn pruner(&self) -> &dyn ObjectStore {
        self.as_role(Role::Pruner)
    }

    fn admin(&self) -> &dyn ObjectStore {
        self.as_role(Role::Admin)
    }

    fn auditor(&self) -> &dyn ObjectStore {
        self.as_role(Role::Auditor)
    }

    /// The full key for `name` under this check's prefix.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A whole-second date `secs` after now (now rounded up to a whole second first).
    fn at(&self, secs: i64) -> Timestamp {
        let now = self.h.now();
        let base = now.as_second() + i64::from(now.subsec_nanosecond() > 0);
        Timestamp::from_second(base + secs).expect("date in range")
    }

    /// Puts `data` under `name` as the writer with `opts`; checks the returned metadata.
    #[track_caller]
    fn put_opts(&self, name: &str, data: &[u8], opts: PutOptions) -> ObjectVersion {
        let key = self.key(name);
        let v = ok(self.writer().put(&key, data, &opts), &format!("put {key}"));
        assert_eq!(v.key, key, "put returns the key");
        assert!(!v.delete_marker && v.is_latest, "a put's version is the latest and not a marker: {v:?}");
        assert_eq!(v.size, data.len() as u64, "put returns the size");
        assert_eq!(v.legal_hold, opts.legal_hold, "put returns the legal hold");
        if let Some(r) = opts.retention {
            assert_eq!(v.retention, Some(r), "put returns the explicit retention");
        }
        v
    }

    /// Puts `data` under `name` as the writer with no retention.
    #[track_caller]
    fn put(&self, name: &str, data: &[u8]) -> ObjectVersion {
        self.put_opts(name, data, PutOptions::default())
    }

    /// Puts `data` under `name` locked in `mode` until `self.at(secs)`.
    #[track_caller]
    fn put_locked(&self, name: &str, data: &[u8], mode: RetentionMode, secs: i64) -> ObjectVersion {
        self.put_opts(
            name,
            data,
            PutOptions { retention: Some(ret(mode, self.at(secs))), legal_hold: false, create_only: false },
        )
    }

    /// Reads `version` of `key` as writer and as reader and demands `data`.
    #[track_caller]
    fn assert_data(&self, key: &str, version: &VersionId, data: &[u8]) {
        for s in [self.writer(), self.reader()] {
            let o = ok(s.get(key, Some(version)), &format!("get {key} version {version} as {}", s.principal().role));
            assert_eq!(o.data, data, "data of {key} version {version}");
            assert_eq!(o.meta.version, *version);
        }
    }

    /// Moves the clock forward to exactly `t`.
    fn advance_to(&self, t: Timestamp) {
        let by = Duration::try_from(t.duration_since(self.h.now())).expect("advance_to moves forward");
        self.h.advance(by);
    }

    /// Audit log entries after `after`, read as the auditor (`None` without a log).
    fn audit_after(&self, after: u64) -> Option<Vec<AuditEntry>> {
        self.h.audit_log_as(Role::Auditor, after).map(|r| ok(r, "read the audit log as auditor"))
    }

    /// The newest audit sequence number (0 without a log).
    fn audit_mark(&self) -> u64 {
        self.audit_after(0).and_then(|e| e.last().map(|e| e.seq)).unwrap_or(0)
    }
}

fn ret(mode: RetentionMode, until: Timestamp) -> Retention {
    Retention { mode, until }
}

#[track_caller]
fn ok<T>(r: coffer_store::Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: expected success, got {:?} error: {e}", e.kind()))
}

#[track_caller]
fn expect_err<T: Debug>(r: coffer_store::Result<T>, kind: ErrorKind, what: &str) -> StoreError {
    match r {
        Ok(v) => panic!("{what}: expected a {kind:?} error, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: expected a {kind:?} error, got {:?}: {e}", e.kind());
            e
        }
    }
}

#[track_caller]
fn expect_forbidden<T: Debug>(r: coffer_store::Result<T>, role: Role, action: Action, what: &str) {
    match expect_err(r, ErrorKind::Forbidden, what) {
        StoreError::Forbidden { role: r, action: a, .. } => {
            assert_eq!((r, a), (role, action), "{what}: Forbidden names the role and the action refused");
        }
        other => panic!("{what}: expected Forbidden naming role and action, got {other:?}"),
    }
}

/// What a `Locked` error must report.
struct LockedBy {
    mode: Option<RetentionMode>,
    until: Option<Timestamp>,
    legal_hold: bool,
}

#[track_caller]
fn expect_locked<T: Debug>(r: coffer_store::Result<T>, key: &str, version: &VersionId, by: &LockedBy, what: &str) {
    match expect_err(r, ErrorKind::Locked, what) {
        StoreError::Locked { key: k, version: v, mode, until, legal_hold } => {
            assert_eq!((k.as_str(), &v), (key, version), "{what}: Locked names the key and version");
            assert_eq!(legal_hold, by.legal_hold, "{what}: Locked reports the legal hold");
            if by.until.is_some() {
                assert_eq!((mode, until), (by.mode, by.until), "{what}: Locked reports the retention");
            }
        }
        other => panic!("{what}: expected Locked with details, got {other:?}"),
    }
}

#[track_caller]
fn expect_not_found<T: Debug>(r: coffer_store::Result<T>, key: &str, version: Option<&VersionId>, what: &str) {
    match expect_err(r, ErrorKind::NotFound, what) {
        StoreError::NotFound { key: k, version: v } => {
            assert_eq!((k.as_str(), v.as_ref()), (key, version), "{what}: NotFound names the key and version");
        }
        other => panic!("{what}: expected NotFound naming key and version, got {other:?}"),
    }
}

/// Walks every page of a listing with `limit`, checking page shape, and returns the items.
#[track_caller]
fn all_pages<T>(limit: usize, what: &str, f: impl Fn(Option<&str>) -> coffer_store::Result<Page<T>>) -> Vec<T> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10_000 {
        let page = ok(f(token.as_deref()), &format!("{what} (limit {limit}, token {token:?})"));
        assert!(page.items.len() <= limit, "{what}: page of {} items exceeds limit {limit}", page.items.len());
        let last_page = page.next.is_none();
        if !last_page {
            assert!(!page.items.is_empty(), "{what}: empty page with a next token");
            if limit <= FULL_PAGE_LIMIT {
                assert_eq!(page.items.len(), limit, "{what}: a page before the last is full (limit {limit})");
            }
        }
        items.extend(page.items);
        if last_page {
            return items;
        }
        token = page.next;
    }
    panic!("{what}: listing with limit {limit} never ended");
}

fn keys_of(items: &[ObjectVersion]) -> Vec<&str> {
    items.iter().map(|v| v.key.as_str()).collect()
}

fn ids_of(items: &[ObjectVersion]) -> Vec<(&str, &VersionId)> {
    items.iter().map(|v| (v.key.as_str(), &v.version)).collect()
}

/// The metadata every read must agree on with what the put returned.
#[track_caller]
fn assert_same_version(got: &ObjectVersion, want: &ObjectVersion, what: &str) {
    assert_eq!(
        (&got.key, &got.version, got.delete_marker, got.size, &got.checksum, got.retention, got.legal_hold),
        (&want.key, &want.version, want.delete_marker, want.size, &want.checksum, want.retention, want.legal_hold),
        "{what}: metadata differs from the put's"
    );
}

/// Restores the lock configuration it saved when dropped, so a failing check cannot leave
/// a default retention behind on a shared store.
struct ConfigGuard<'a> {
    admin: &'a dyn ObjectStore,
    saved: LockConfig,
}

impl<'a> ConfigGuard<'a> {
    #[track_caller]
    fn save(admin: &'a dyn ObjectStore) -> Self {
        let saved = ok(admin.lock_config(), "read the lock configuration as admin");
        assert!(saved.enabled, "object lock is enabled");
        Self { admin, saved }
    }
}

impl Drop for ConfigGuard<'_> {
    fn drop(&mut self) {
        let restored = self.admin.put_lock_config(&self.saved);
        if !std::thread::panicking() {
            ok(restored, "restore the lock configuration");
        }
    }
}

const HOUR: i64 = 3600;
const DAY: Duration = Duration::from_secs(86_400);

// ---------------------------------------------------------------------------------------
// Versions, get and head
// ---------------------------------------------------------------------------------------

/// Every put makes a new version, newer than the others, even with identical bytes.
pub fn put_always_creates_a_new_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "put_always_creates_a_new_version");
    let k = c.key("obj");
    let v1 = c.put("obj", b"same bytes");
    let v2 = c.put("obj", b"same bytes");
    let v3 = c.put("obj", b"other bytes");
    assert!(v1.version != v2.version && v2.version != v3.version && v1.version != v3.version, "distinct ids");
    let versions = ok(c.writer().list_versions(&k, None, 100), "list versions");
    assert_eq!(ids_of(&versions.items), vec![(&*k, &v3.version), (&*k, &v2.version), (&*k, &v1.version)]);
    let latest: Vec<bool> = versions.items.iter().map(|v| v.is_latest).collect();
    assert_eq!(latest, [true, false, false], "only the newest version is the latest");
    assert!(versions.items.iter().all(|v| !v.delete_marker));
    assert!(v1.created <= v2.created && v2.created <= v3.created, "creation times do not go back");
    let latest = ok(c.reader().get(&k, None), "get latest");
    assert_eq!((latest.data.as_slice(), &latest.meta.version), (&b"other bytes"[..], &v3.version));
}

/// A create-only put (`PutOptions::create_only`, S3's `If-None-Match: *`) creates a key
/// that does not exist and refuses one whose latest version is an object with `Exists`,
/// adding no version and changing nothing (the refusal is audited as denied); over a delete
/// marker it creates the key again (AWS's semantics: the condition is on the current
/// version). The role is still checked first, and the lock of the new version is applied.
pub fn create_only_put_refuses_an_existing_key(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "create_only_put_refuses_an_existing_key");
    let k = c.key("once");
    let once = |retention| PutOptions { retention, legal_hold: false, create_only: true };
    let r = ret(RetentionMode::Governance, c.at(HOUR));
    let v1 = c.put_opts("once", b"first", once(Some(r)));
    assert_eq!(v1.retention, Some(r), "a create-only put is locked as asked");
    let mark = c.audit_mark();
    for data in [&b"first"[..], b"second"] {
        match expect_err(c.writer().put(&k, data, &once(None)), ErrorKind::Exists, "create-only put of an existing key")
        {
            StoreError::Exists { key, version } => {
                assert_eq!(key, k, "Exists names the key");
                if let Some(v) = version {
                    assert_eq!(v, v1.version, "Exists names the latest version, if any");
                }
            }
            other => panic!("expected Exists, got {other:?}"),
        }
    }
    let versions = ok(c.reader().list_versions(&k, None, 100), "list versions");
    assert_eq!(ids_of(&versions.items), vec![(&*k, &v1.version)], "a refused create-only put adds no version");
    c.assert_data(&k, &v1.version, b"first");
    // The role comes first: a role that may not put is Forbidden, whether or not the key exists.
    expect_forbidden(c.reader().put(&k, b"x", &once(None)), Role::Reader, Action::Put, "reader, existing key");
    expect_forbidden(c.auditor().put(&c.key("new"), b"x", &once(None)), Role::Auditor, Action::Put, "auditor, new key");
    if let Some(entries) = c.audit_after(mark) {
        let denied = entries
            .iter()
            .filter(|e| e.action == "put" && e.key.as_deref() == Some(k.as_str()) && e.role == "writer")
            .filter(|e| e.outcome == "denied" && !e.reason.is_empty())
            .count();
        assert_eq!(denied, 2, "each refused create-only put is audited as denied: {entries:?}");
    }
    // Over a delete marker (the admin's), the key is created again.
    let m = ok(c.admin().delete(&k), "hide the key");
    let v2 = c.put_opts("once", b"again", once(None));
    // (Order-independent: S3 servers list a marker and versions of one second out of order.)
    let versions = ok(c.reader().list_versions(&k, None, 100), "list versions");
    let mut got: Vec<&VersionId> = versions.items.iter().map(|v| &v.version).collect();
    let mut want = vec![&v1.version, &m.version, &v2.version];
    got.sort();
    want.sort();
    assert_eq!(got, want, "created over the marker; nothing removed");
    let latest = ok(c.reader().get(&k, None), "get the key created again");
    assert_eq!(
        (latest.meta.version, latest.data),
        (v2.version.clone(), b"again".to_vec()),
        "the new version is the latest"
    );
    // A create-only put of a new key beside an existing one is unaffected by it.
    c.put_opts("once-other", b"x", once(None));
}

/// A put to an existing key leaves every older version readable, byte for byte.
pub fn overwrite_leaves_older_versions_intact(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "overwrite_leaves_older_versions_intact");
    let k = c.key("doc");
    let bodies: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    let versions: Vec<ObjectVersion> = bodies.iter().map(|b| c.put("doc", b)).collect();
    for (v, b) in versions.iter().zip(&bodies) {
        c.assert_data(&k, &v.version, b);
        assert_same_version(&ok(c.auditor().head(&k, Some(&v.version)), "head"), v, "head by version");
    }
    assert_eq!(ok(c.reader().get(&k, None), "get latest").data, bodies[4]);
}

/// `get`/`head` without a version read the latest; with one, exactly that version.
pub fn get_and_head_latest_and_by_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "get_and_head_latest_and_by_version");
    let k = c.key("k");
    let v1 = c.put("k", b"first");
    let v2 = c.put_opts(
        "k",
        b"second",
        PutOptions {
            retention: Some(ret(RetentionMode::Governance, c.at(2 * HOUR))),
            legal_hold: true,
            create_only: false,
        },
    );
    for s in [c.writer(), c.reader()] {
        let o = ok(s.get(&k, None), "get latest");
        assert_eq!(o.data, b"second");
        assert_same_version(&o.meta, &v2, "get latest");
        assert!(o.meta.is_latest);
        let o = ok(s.get(&k, Some(&v1.version)), "get v1");
        assert_eq!(o.data, b"first");
        assert_same_version(&o.meta, &v1, "get v1");
        assert!(!o.meta.is_latest, "an older version is not the latest");
    }
    for role in Role::ALL {
        let s = c.as_role(role);
        let m = ok(s.head(&k, None), &format!("head latest as {role}"));
        assert_same_version(&m, &v2, "head latest");
        assert!(m.is_latest);
        let m = ok(s.head(&k, Some(&v1.version)), &format!("head v1 as {role}"));
        assert_same_version(&m, &v1, "head v1");
        assert!(!m.is_latest);
    }
}

/// `open_ranged` opens the version `get` would read (latest or by id) with `get`'s
/// permission and errors, and reads any range inside it; a range past its end is
/// `InvalidRequest`.
pub fn open_ranged_reads_ranges_of_the_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "open_ranged_reads_ranges_of_the_version");
    let k = c.key("k");
    let v1 = c.put("k", b"the first version");
    let v2 = c.put("k", b"second");
    let empty = c.put("empty", b"");
    for s in [c.writer(), c.reader()] {
        let r = ok(s.open_ranged(&k, None), "open latest");
        assert_same_version(r.meta(), &v2, "open latest");
        assert_eq!(ok(r.read_at(0, 6), "whole"), b"second");
        assert_eq!(ok(r.read_at(2, 3), "middle"), b"con");
        assert_eq!(ok(r.read_at(6, 0), "empty range at the end"), b"");
        expect_err(r.read_at(4, 3), ErrorKind::InvalidRequest, "range past the end");
        expect_err(r.read_at(u64::MAX, 2), ErrorKind::InvalidRequest, "range past any end");
        let r = ok(s.open_ranged(&k, Some(&v1.version)), "open v1");
        assert_same_version(r.meta(), &v1, "open v1");
        assert_eq!(ok(r.read_at(4, 5), "v1 range"), b"first");
        let r = ok(s.open_ranged(&empty.key, None), "open an empty object");
        assert_eq!(ok(r.read_at(0, 0), "nothing of nothing"), b"");
    }
    let missing = c.key("missing");
    expect_not_found(c.reader().open_ranged(&missing, None).map(|r| r.meta().clone()), &missing, None, "absent key");
    let m = ok(c.admin().delete(&k), "delete");
    expect_not_found(c.reader().open_ranged(&k, None).map(|r| r.meta().clone()), &k, None, "deleted key");
    expect_err(
        c.reader().open_ranged(&k, Some(&m.version)).map(|r| r.meta().clone()),
        ErrorKind::InvalidRequest,
        "a delete marker's data",
    );
    for role in Role::ALL {
        let r = c.as_role(role).open_ranged(&k, Some(&v2.version)).map(|r| r.meta().clone());
        if role.allows(Action::Get) {
            assert_same_version(&ok(r, &format!("open as {role}")), &v2, "open by version");
        } else {
            expect_forbidden(r, role, Action::Get, &format!("open as {role}"));
        }
    }
}

/// A put records size and an `algorithm:hex` content checksum, the same on every read.
pub fn checksum_and_size_are_stored(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "checksum_and_size_are_stored");
    let a = c.put("a", b"hello world");
    let b = c.put("b", b"hello world");
    let d = c.put("d", b"hello World");
    for v in [&a, &b, &d] {
        let (alg, hex) =
            v.checksum.split_once(':').unwrap_or_else(|| panic!("checksum {:?} is algorithm:hex", v.checksum));
        assert!(!alg.is_empty(), "checksum names its algorithm: {:?}", v.checksum);
        assert!(hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "checksum hex: {:?}", v.checksum);
        assert_eq!(v.size, 11);
        let got = ok(c.reader().get(&v.key, Some(&v.version)), "get");
        assert_eq!(got.meta.checksum, v.checksum, "get reports the stored checksum");
        assert_eq!(ok(c.auditor().head(&v.key, None), "head").checksum, v.checksum, "head reports it too");
    }
    assert_eq!(a.checksum, b.checksum, "same bytes, same checksum");
    assert_ne!(a.checksum, d.checksum, "different bytes, different checksum");
}

/// An empty object is an object: stored, listed, read back empty.
pub fn empty_object_round_trips(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "empty_object_round_trips");
    let v = c.put("empty", b"");
    assert_eq!(v.size, 0);
    assert!(!v.checksum.is_empty(), "an empty object still has a checksum");
    c.assert_data(&c.key("empty"), &v.version, b"");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*c.key("empty"), &v.version)]);
}

// ---------------------------------------------------------------------------------------
// Delete markers
// ---------------------------------------------------------------------------------------

/// `delete` adds a delete marker and removes nothing: the key reads as not found, every
/// version stays readable by id, `list` hides the key, `list_versions` shows the marker.
pub fn delete_adds_a_marker_and_removes_nothing(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "delete_adds_a_marker_and_removes_nothing");
    let k = c.key("k");
    let v1 = c.put("k", b"one");
    let v2 = c.put_locked("k", b"two", RetentionMode::Compliance, HOUR);
    let other = c.put("other", b"stays");
    let m = ok(c.admin().delete(&k), "delete");
    assert_eq!(m.key, k);
    assert!(m.delete_marker && m.is_latest, "delete returns the marker, now the latest: {m:?}");
    assert!(m.version != v1.version && m.version != v2.version, "the marker is a new version");
    assert_eq!((m.size, m.retention, m.legal_hold), (0, None, false), "a marker has no data, retention or hold");

    expect_not_found(c.reader().get(&k, None), &k, None, "get latest behind a marker");
    expect_not_found(c.auditor().head(&k, None), &k, None, "head latest behind a marker");
    c.assert_data(&k, &v1.version, b"one");
    c.assert_data(&k, &v2.version, b"two");
    let hm = ok(c.auditor().head(&k, Some(&m.version)), "head the marker by version");
    assert!(hm.delete_marker && hm.is_latest && hm.size == 0, "head of the marker: {hm:?}");
    assert!(!ok(c.auditor().head(&k, Some(&v2.version)), "head v2").is_latest);

    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*c.key("other"), &other.version)], "list hides a deleted key");
    let versions = ok(c.auditor().list_versions(&k, None, 10), "list versions");
    let shape: Vec<(&VersionId, bool, bool)> =
        versions.items.iter().map(|v| (&v.version, v.delete_marker, v.is_latest)).collect();
    assert_eq!(shape, vec![(&m.version, true, true), (&v2.version, false, false), (&v1.version, false, false)]);

    // A second delete adds a second marker; a put makes the key visible again.
    let m2 = ok(c.admin().delete(&k), "delete again");
    assert!(m2.delete_marker && m2.version != m.version);
    let v3 = c.put("k", b"three");
    let versions = ok(c.auditor().list_versions(&k, None, 10), "list versions");
    let markers: Vec<bool> = versions.items.iter().map(|v| v.delete_marker).collect();
    assert_eq!(markers, [false, true, true, false, false]);
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*k, &v3.version), (&*c.key("other"), &other.version)]);
    assert_eq!(ok(c.reader().get(&k, None), "get latest").data, b"three");
}

/// A delete marker has no data, retention or legal hold: asking for them is invalid.
pub fn delete_marker_has_no_data(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "delete_marker_has_no_data");
    let k = c.key("k");
    c.put("k", b"data");
    let m = ok(c.admin().delete(&k), "delete");
    expect_err(c.writer().get(&k, Some(&m.version)), ErrorKind::InvalidRequest, "get a marker by version");
    expect_err(c.reader().get(&k, Some(&m.version)), ErrorKind::InvalidRequest, "get a marker by version");
    expect_err(
        c.writer().put_retention(&k, &m.version, Some(ret(RetentionMode::Governance, c.at(HOUR))), false),
        ErrorKind::InvalidRequest,
        "retention on a marker",
    );
    expect_err(c.writer().put_legal_hold(&k, &m.version, true), ErrorKind::InvalidRequest, "legal hold on a marker");
    expect_err(c.admin().put_legal_hold(&k, &m.version, false), ErrorKind::InvalidRequest, "legal hold off a marker");
}

/// Removing the marker (the pruner may: a marker holds no data and no lock) makes the
/// previous version the latest again.
pub fn deleting_a_marker_uncovers_the_previous_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "deleting_a_marker_uncovers_the_previous_version");
    let k = c.key("k");
    let v = c.put_locked("k", b"kept", RetentionMode::Compliance, HOUR);
    let m = ok(c.admin().delete(&k), "delete");
    ok(c.pruner().delete_version(&k, &m.version, false), "pruner removes the marker");
    let o = ok(c.reader().get(&k, None), "get latest");
    assert_eq!((o.data.as_slice(), &o.meta.version, o.meta.is_latest), (&b"kept"[..], &v.version, true));
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*k, &v.version)]);
    let versions = ok(c.auditor().list_versions(&c.prefix, None, 10), "list versions");
    assert_eq!(ids_of(&versions.items), vec![(&*k, &v.version)]);
}

/// Absent keys, versions of another key and removed versions are `NotFound`, naming both.
pub fn missing_keys_and_versions_are_not_found(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "missing_keys_and_versions_are_not_found");
    let missing = c.key("missing");
    let a = c.key("a");
    let b = c.key("b");
    let va = c.put("a", b"a");
    c.put("b", b"b");
    expect_not_found(c.reader().get(&missing, None), &missing, None, "get an absent key");
    expect_not_found(c.auditor().head(&missing, None), &missing, None, "head an absent key");
    let foreign = Some(&va.version);
    expect_not_found(c.reader().get(&b, foreign), &b, foreign, "get another key's version");
    expect_not_found(c.auditor().head(&b, foreign), &b, foreign, "head another key's version");
    expect_not_found(c.pruner().delete_version(&b, &va.version, false), &b, foreign, "delete another key's version");
    expect_not_found(
        c.writer().put_retention(&b, &va.version, Some(ret(RetentionMode::Governance, c.at(HOUR))), false),
        &b,
        foreign,
        "retention of another key's version",
    );
    expect_not_found(c.writer().put_legal_hold(&b, &va.version, true), &b, foreign, "hold another key's version");
    expect_not_found(c.pruner().delete_version(&missing, &va.version, false), &missing, foreign, "delete, no key");

    ok(c.pruner().delete_version(&a, &va.version, false), "remove a's only version");
    expect_not_found(c.reader().get(&a, None), &a, None, "get a key with no versions left");
    expect_not_found(c.reader().get(&a, foreign), &a, foreign, "get a removed version");
    expect_not_found(c.auditor().head(&a, foreign), &a, foreign, "head a removed version");
    expect_not_found(c.pruner().delete_version(&a, &va.version, false), &a, foreign, "remove a removed version");
    let versions = ok(c.auditor().list_versions(&a, None, 10), "list versions");
    assert!(versions.items.is_empty(), "a removed version is not listed: {:?}", versions.items);
}

/// Keys must be non-empty, at most 1024 bytes and free of NUL; writes of others are invalid.
pub fn invalid_keys_are_rejected(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "invalid_keys_are_rejected");
    let w = c.writer();
    let opts = PutOptions::default();
    expect_err(w.put("", b"x", &opts), ErrorKind::InvalidRequest, "put an empty key");
    expect_err(w.put(&c.key("nul\0byte"), b"x", &opts), ErrorKind::InvalidRequest, "put a key with NUL");
    let long = format!("{}{}", c.prefix, "x".repeat(1025 - c.prefix.len()));
    assert_eq!(long.len(), 1025);
    expect_err(w.put(&long, b"x", &opts), ErrorKind::InvalidRequest, "put a 1025-byte key");
    expect_err(c.admin().delete(""), ErrorKind::InvalidRequest, "delete an empty key");
    expect_err(c.admin().delete(&long), ErrorKind::InvalidRequest, "delete a 1025-byte key");
    let longest = &long[..1024];
    let v = ok(w.put(longest, b"x", &opts), "put a 1024-byte key");
    c.assert_data(longest, &v.version, b"x");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(keys_of(&listed.items), vec![longest], "no invalid key was stored");
}

/// A role is refused before the request is looked at: a missing key, an invalid key or a
/// locked version reveal nothing to a role that may not make the request at all.
pub fn role_is_checked_before_anything_else(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "role_is_checked_before_anything_else");
    let missing = c.key("missing");
    let k = c.key("k");
    let v = c.put_locked("k", b"x", RetentionMode::Compliance, HOUR);
    let m = ok(c.admin().delete(&k), "delete");
    let bogus = v.version.clone();
    let gov = Some(ret(RetentionMode::Governance, c.at(-HOUR)));
    use Action as A;
    use Role as R;
    let opts = PutOptions::default();
    expect_forbidden(c.reader().put("", b"x", &opts), R::Reader, A::Put, "reader puts an empty key");
    expect_forbidden(c.auditor().put(&k, b"x", &opts), R::Auditor, A::Put, "auditor puts");
    expect_forbidden(c.reader().delete(""), R::Reader, A::Delete, "reader deletes an empty key");
    expect_forbidden(c.pruner().delete(&missing), R::Pruner, A::Delete, "pruner deletes an absent key");
    expect_forbidden(c.writer().delete(&missing), R::Writer, A::Delete, "writer hides an absent key");
    expect_forbidden(c.writer().delete(&k), R::Writer, A::Delete, "writer hides a hidden key");
    expect_forbidden(c.auditor().get(&missing, None), R::Auditor, A::Get, "auditor gets an absent key");
    expect_forbidden(c.pruner().get(&k, Some(&m.version)), R::Pruner, A::Get, "pruner gets a marker");
    expect_forbidden(c.admin().get(&k, Some(&v.version)), R::Admin, A::Get, "admin gets data");
    expect_forbidden(c.writer().delete_version(&missing, &bogus, false), R::Writer, A::DeleteVersion, "absent key");
    expect_forbidden(c.admin().delete_version(&k, &v.version, true), R::Admin, A::DeleteVersion, "locked version");
    expect_forbidden(c.reader().put_retention(&missing, &bogus, gov, true), R::Reader, A::PutRetention, "absent");
    expect_forbidden(c.pruner().put_retention(&k, &m.version, None, true), R::Pruner, A::PutRetention, "marker");
    expect_forbidden(c.reader().put_legal_hold(&missing, &bogus, true), R::Reader, A::LegalHoldOn, "absent key");
    expect_forbidden(c.writer().put_legal_hold(&k, &m.version, false), R::Writer, A::LegalHoldOff, "marker");
    let disabled = LockConfig { enabled: false, default_retention: None };
    expect_forbidden(c.pruner().put_lock_config(&disabled), R::Pruner, A::PutLockConfig, "pruner disables lock");
    expect_forbidden(c.writer().put_versioning(Versioning::Suspended), R::Writer, A::PutVersioning, "suspend");
    expect_forbidden(c.auditor().put_versioning(Versioning::Enabled), R::Auditor, A::PutVersioning, "enable");
    c.assert_data(&k, &v.version, b"x");
}

// ---------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------

/// Key names (after the check's prefix) in bytewise (UTF-8, memcmp) order, written out by
/// hand: ASCII before Latin-1 before CJK before the BMP's private/fullwidth block before
/// astral characters (UTF-16 order would put `𝄞` before `Ａ`).
const SORTED_NAMES: [&str; 16] =
    ["", " sp", "Z", "a", "a/b", "a0", "ab", "b", "e", "z", "~", "é", "éa", "ê", "日本", "Ａ"];
const ASTRAL: &str = "𝄞";

fn sorted_names() -> Vec<&'static str> {
    let mut v = SORTED_NAMES.to_vec();
    v.push(ASTRAL);
    v
}

/// Puts one object per name in `names` (shuffled order) and returns their versions by name.
fn put_names(c: &Ctx<'_>, names: &[&str]) -> Vec<(String, VersionId)> {
    let mut order: Vec<&str> = names.to_vec();
    order.reverse();
    order.swap(0, names.len() / 2);
    let mut out: Vec<(String, VersionId)> = order.iter().map(|n| (c.key(n), c.put(n, n.as_bytes()).version)).collect();
    out.sort();
    out
}

/// `list` returns exactly the keys under a prefix, sorted bytewise, at every prefix edge.
pub fn list_is_sorted_bytewise_by_prefix(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_is_sorted_bytewise_by_prefix");
    let names = sorted_names();
    let mut expected_sorted = names.clone();
    expected_sorted.sort_unstable();
    assert_eq!(names, expected_sorted, "the hand-written order is bytewise order");
    let stored = put_names(&c, &names);
    // Siblings of the prefix, just outside it on either side ('.' < '/' < '0').
    let base = c.prefix.trim_end_matches('/');
    let before = format!("{base}.");
    let after = format!("{base}0");
    ok(c.writer().put(&before, b"outside", &PutOptions::default()), "put sibling");
    ok(c.writer().put(&after, b"outside", &PutOptions::default()), "put sibling");

    let listed = ok(c.reader().list(&c.prefix, None, 100), "list the prefix");
    let want: Vec<String> = names.iter().map(|n| c.key(n)).collect();
    assert_eq!(keys_of(&listed.items), want.iter().map(String::as_str).collect::<Vec<_>>(), "sorted bytewise");
    assert_eq!(listed.next, None);
    for (item, (key, version)) in listed.items.iter().zip(&stored) {
        assert_eq!((&item.key, &item.version), (key, version), "list reports each key's latest version");
        assert!(item.is_latest && !item.delete_marker);
    }
    let around = ok(c.reader().list(base, None, 100), "list without the trailing slash");
    let mut want_around = vec![before.clone()];
    want_around.extend(want.iter().cloned());
    want_around.push(after.clone());
    assert_eq!(keys_of(&around.items), want_around.iter().map(String::as_str).collect::<Vec<_>>());

    let cases: [(&str, &[&str]); 12] = [
        ("a", &["a", "a/b", "a0", "ab"]),
        ("a/", &["a/b"]),
        ("ab", &["ab"]),
        ("abc", &[]),
        ("b", &["b"]),
        ("é", &["é", "éa"]),
        ("ê", &["ê"]),
        ("日", &["日本"]),
        ("Ａ", &["Ａ"]),
        (ASTRAL, &[ASTRAL]),
        ("~", &["~"]),
        ("zz", &[]),
    ];
    for (sub, want) in cases {
        let prefix = c.key(sub);
        let got = ok(c.auditor().list(&prefix, None, 100), &format!("list prefix {prefix:?}"));
        let want: Vec<String> = want.iter().map(|n| c.key(n)).collect();
        assert_eq!(keys_of(&got.items), want.iter().map(String::as_str).collect::<Vec<_>>(), "prefix {prefix:?}");
        assert_eq!(got.next, None);
    }
}

/// `list` pages: every limit yields the same keys, pages are full until the last, tokens
/// continue after the key they name even if it was deleted meanwhile.
pub fn list_paginates(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_paginates");
    let names = sorted_names();
    put_names(&c, &names);
    let want: Vec<String> = names.iter().map(|n| c.key(n)).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    for limit in (1..=names.len() + 1).chain([1000, usize::MAX]) {
        let got = all_pages(limit, "list", |t| c.reader().list(&c.prefix, t, limit));
        assert_eq!(keys_of(&got), want, "list with limit {limit}");
    }
    let first = ok(c.reader().list(&c.prefix, None, 3), "first page");
    assert_eq!(keys_of(&first.items), want[..3]);
    let token = first.next.expect("more pages");
    ok(c.admin().delete(want[2]), "delete the page's last key");
    let second = ok(c.reader().list(&c.prefix, Some(&token), 3), "second page after a delete");
    assert_eq!(keys_of(&second.items), want[3..6], "the token continues after the deleted key");
    c.put("a00", b"new");
    let third = ok(c.reader().list(&c.prefix, second.next.as_deref(), 100), "rest");
    assert!(keys_of(&third.items).contains(&c.key("a00").as_str()), "a key added after the token is listed");
}

/// `list` shows only keys whose latest version is an object.
pub fn list_hides_deleted_keys(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_hides_deleted_keys");
    let va = c.put("a", b"a");
    let vb = c.put("b", b"b");
    let vc = c.put("c", b"c");
    let (a, b, k_c) = (c.key("a"), c.key("b"), c.key("c"));
    ok(c.admin().delete(&b), "delete b");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*a, &va.version), (&*k_c, &vc.version)]);
    let vb2 = c.put("b", b"b2");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*a, &va.version), (&*b, &vb2.version), (&*k_c, &vc.version)]);
    assert_ne!(vb.version, vb2.version);
    // A key whose only version is removed for good is gone from both listings.
    ok(c.pruner().delete_version(&k_c, &vc.version, false), "remove c");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(keys_of(&listed.items), vec![&*a, &*b]);
    let versions = ok(c.auditor().list_versions(&k_c, None, 10), "list versions of c");
    assert!(versions.items.is_empty());
}

/// The versions of a fixed set of keys, in the order `list_versions` must return them.
fn version_fixture(c: &Ctx<'_>) -> Vec<(String, VersionId, bool, bool)> {
    let k1 = c.key("k1");
    let k2 = c.key("k2");
    let k3 = c.key("k3/é");
    let a1 = c.put("k1", b"1");
    let b1 = c.put("k2", b"1");
    let a2 = c.put("k1", b"2");
    let c1 = c.put("k3/é", b"1");
    let m = ok(c.admin().delete(&k2), "delete k2");
    let a3 = c.put_locked("k1", b"3", RetentionMode::Governance, HOUR);
    let c2 = c.put("k3/é", b"2");
    vec![
        (k1.clone(), a3.version, false, true),
        (k1.clone(), a2.version, false, false),
        (k1, a1.version, false, false),
        (k2.clone(), m.version, true, true),
        (k2, b1.version, false, false),
        (k3.clone(), c2.version, false, true),
        (k3, c1.version, false, false),
    ]
}

fn version_shape(items: &[ObjectVersion]) -> Vec<(String, VersionId, bool, bool)> {
    items.iter().map(|v| (v.key.clone(), v.version.clone(), v.delete_marker, v.is_latest)).collect()
}

/// `list_versions` returns every version and marker, by key, newest first.
pub fn list_versions_is_newest_first_with_markers(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_versions_is_newest_first_with_markers");
    let want = version_fixture(&c);
    for role in Role::ALL {
        let got = ok(c.as_role(role).list_versions(&c.prefix, None, 100), &format!("list versions as {role}"));
        assert_eq!(version_shape(&got.items), want, "list versions as {role}");
        assert_eq!(got.next, None);
    }
    let got = ok(c.auditor().list_versions(&c.key("k1"), None, 100), "versions of k1");
    assert_eq!(version_shape(&got.items), want[..3], "a prefix that is a key lists that key's versions");
    let got = ok(c.auditor().list_versions(&c.key("k3/"), None, 100), "versions under k3/");
    assert_eq!(version_shape(&got.items), want[5..]);
}

/// `list_versions` pages with every limit, splitting inside a key and at key boundaries.
pub fn list_versions_paginates_across_keys(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_versions_paginates_across_keys");
    let want = version_fixture(&c);
    for limit in (1..=want.len() + 1).chain([1000, usize::MAX]) {
        let got = all_pages(limit, "list versions", |t| c.auditor().list_versions(&c.prefix, t, limit));
        assert_eq!(version_shape(&got), want, "list versions with limit {limit}");
    }
    // A token taken inside k1 still continues correctly after a new version of k1 appears.
    let first = ok(c.pruner().list_versions(&c.prefix, None, 2), "first page");
    let token = first.next.expect("more pages");
    c.put("k1", b"4");
    let rest = all_pages(100, "rest", |t| c.pruner().list_versions(&c.prefix, t.or(Some(&token)), 100));
    assert_eq!(version_shape(&rest)[1..], want[3..], "the rest after the token");
    assert_eq!((rest[0].key.as_str(), rest[0].is_latest), (want[2].0.as_str(), false));
    assert_eq!(rest[0].version, want[2].1);
}

/// A token the store did not issue is an invalid request.
pub fn list_tokens_are_validated(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_tokens_are_validated");
    c.put("a", b"a");
    for bad in ["not a token!", "zz"] {
        expect_err(c.reader().list(&c.prefix, Some(bad), 10), ErrorKind::InvalidRequest, "list with a bad token");
        expect_err(
            c.reader().list_versions(&c.prefix, Some(bad), 10),
            ErrorKind::InvalidRequest,
            "list versions with a bad token",
        );
    }
}

/// `list_entries` and `list_version_entries` list exactly what `list` and `list_versions`
/// list — same items, order, pages and tokens, the same role check — only without lock
/// state and checksum.
pub fn list_entries_match_the_full_listings(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_entries_match_the_full_listings");
    version_fixture(&c);
    c.put("other", b"12345");
    let lean = |items: Vec<ObjectVersion>| -> Vec<ListEntry> { items.into_iter().map(ListEntry::from).collect() };
    for limit in [1, 2, 3, 1000] {
        let full = all_pages(limit, "list", |t| c.reader().list(&c.prefix, t, limit));
        let entries = all_pages(limit, "list entries", |t| c.reader().list_entries(&c.prefix, t, limit));
        assert_eq!(entries, lean(full), "list entries with limit {limit}");
        let full = all_pages(limit, "list versions", |t| c.auditor().list_versions(&c.prefix, t, limit));
        let entries =
            all_pages(limit, "list version entries", |t| c.auditor().list_version_entries(&c.prefix, t, limit));
        assert_eq!(entries, lean(full), "list version entries with limit {limit}");
    }
    let other = ok(c.reader().list_entries(&c.key("other"), None, 10), "entries of one key");
    assert_eq!(
        other.items.iter().map(|e| (e.key.as_str(), e.size)).collect::<Vec<_>>(),
        [(c.key("other").as_str(), 5)]
    );
    for role in Role::ALL {
        let s = c.as_role(role);
        assert_eq!(s.list_entries(&c.prefix, None, 10).is_ok(), s.list(&c.prefix, None, 10).is_ok(), "{role}");
        let (a, b) = (s.list_version_entries(&c.prefix, None, 10), s.list_versions(&c.prefix, None, 10));
        assert_eq!(a.is_ok(), b.is_ok(), "{role}");
    }
}

// ---------------------------------------------------------------------------------------
// Retention on put
// ---------------------------------------------------------------------------------------

/// Without an explicit retention a put gets the store's default (mode, put time + period);
/// an explicit one wins; without a default there is none. Only the admin sets the default.
pub fn default_retention_applies_when_none_is_given(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "default_retention_applies_when_none_is_given");
    let guard = ConfigGuard::save(c.admin());
    assert_eq!(guard.saved.default_retention, None, "a harness's store starts without a default retention");
    let none = c.put("none", b"x");
    assert_eq!(none.retention, None, "no default, no retention");

    for mode in [RetentionMode::Governance, RetentionMode::Compliance] {
        let default = DefaultRetention { mode, period: DAY };
        let cfg = LockConfig { enabled: true, default_retention: Some(default) };
        for role in [Role::Writer, Role::Reader, Role::Pruner, Role::Auditor] {
            expect_forbidden(c.as_role(role).put_lock_config(&cfg), role, Action::PutLockConfig, "set default");
        }
        ok(c.admin().put_lock_config(&cfg), "admin sets a default retention");
        for role in Role::ALL {
            assert_eq!(ok(c.as_role(role).lock_config(), "read lock config"), cfg, "{role} reads the new default");
        }
        let before = h.now();
        let v = c.put(&format!("default-{mode}"), b"x");
        let after = h.now();
        let r = v.retention.unwrap_or_else(|| panic!("the default retention applies: {v:?}"));
        assert_eq!(r.mode, mode);
        let lo = (before + SignedDuration::try_from(DAY).expect("day")).as_second();
        let hi = (after + SignedDuration::try_from(DAY).expect("day")).as_second() + 1;
        assert!(
            (lo..=hi).contains(&r.until.as_second()) && r.until.subsec_nanosecond() == 0,
            "default retention ends a period after the put, in whole seconds: {} not in [{lo}, {hi}]",
            r.until
        );
        assert_eq!(ok(c.auditor().head(&v.key, None), "head").retention, Some(r), "stored as returned");
        let explicit = ret(RetentionMode::Governance, c.at(HOUR));
        let e = c.put_opts(
            &format!("explicit-{mode}"),
            b"x",
            PutOptions { retention: Some(explicit), legal_hold: false, create_only: false },
        );
        assert_eq!(e.retention, Some(explicit), "an explicit retention wins over the default");
    }
    let cleared = LockConfig { enabled: true, default_retention: None };
    ok(c.admin().put_lock_config(&cleared), "admin removes the default");
    assert_eq!(ok(c.auditor().lock_config(), "lock config"), cleared);
    assert_eq!(c.put("after", b"x").retention, None, "no default any more");
    // Changing the default never touches existing versions.
    let gov = c.key(&format!("default-{}", RetentionMode::Governance));
    let r = ok(c.auditor().head(&gov, None), "head").retention.expect("kept");
    assert_eq!(r.mode, RetentionMode::Governance);
    drop(guard);
}

/// A retain-until that is not in the future is invalid, on put and on put_retention, and
/// changes nothing.
pub fn retain_until_in_the_past_is_rejected(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "retain_until_in_the_past_is_rejected");
    let k = c.key("k");
    for (mode, until) in [
        (RetentionMode::Compliance, c.at(-HOUR)),
        (RetentionMode::Governance, c.at(-HOUR)),
        (RetentionMode::Compliance, h.now()),
    ] {
        let opts = PutOptions { retention: Some(ret(mode, until)), legal_hold: false, create_only: false };
        expect_err(c.writer().put(&k, b"x", &opts), ErrorKind::InvalidRequest, "put with a past retain-until");
    }
    let versions = ok(c.auditor().list_versions(&k, None, 10), "list versions");
    assert!(versions.items.is_empty(), "a refused put stores nothing: {:?}", versions.items);

    let v = c.put_locked("k", b"x", RetentionMode::Governance, HOUR);
    for s in [c.writer(), c.admin()] {
        let past = Some(ret(RetentionMode::Governance, c.at(-HOUR)));
        expect_err(s.put_retention(&k, &v.version, past, true), ErrorKind::InvalidRequest, "past retain-until");
    }
    let u = c.put("u", b"x");
    let past = Some(ret(RetentionMode::Compliance, c.at(-HOUR)));
    expect_err(c.writer().put_retention(&u.key, &u.version, past, false), ErrorKind::InvalidRequest, "past");
    assert_eq!(ok(c.auditor().head(&k, None), "head").retention, v.retention, "retention unchanged");
    assert_eq!(ok(c.auditor().head(&u.key, None), "head").retention, None, "retention unchanged");
}

/// Whole-second retain-until dates are stored and reported exactly, even less than a
/// second ahead.
pub fn retain_until_keeps_whole_seconds(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "retain_until_keeps_whole_seconds");
    let soon = if h.can_move_clock() { c.at(0) } else { c.at(HOUR) };
    for (i, until) in [soon, c.at(HOUR), c.at(400 * 86_400)].into_iter().enumerate() {
        if until <= h.now() {
            continue;
        }
        let r = ret(RetentionMode::Governance, until);
        let v = c.put_opts(
            &format!("v{i}"),
            b"x",
            PutOptions { retention: Some(r), legal_hold: false, create_only: false },
        );
        assert_eq!(ok(c.auditor().head(&v.key, None), "head").retention, Some(r), "stored exactly");
        let later = ret(RetentionMode::Governance, until + SignedDuration::from_secs(1));
        ok(c.writer().put_retention(&v.key, &v.version, Some(later), false), "extend by a second");
        assert_eq!(ok(c.auditor().head(&v.key, None), "head").retention, Some(later), "extended exactly");
    }
}

// ---------------------------------------------------------------------------------------
// delete_version
// ---------------------------------------------------------------------------------------

/// The pruner removes an unprotected version for good; the others stay.
pub fn delete_version_of_an_unprotected_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "delete_version_of_an_unprotected_version");
    let k = c.key("k");
    let v1 = c.put("k", b"one");
    let v2 = c.put("k", b"two");
    ok(c.pruner().delete_version(&k, &v1.version, false), "remove v1");
    expect_not_found(c.auditor().head(&k, Some(&v1.version)), &k, Some(&v1.version), "v1 is gone");
    let versions = ok(c.auditor().list_versions(&k, None, 10), "list versions");
    assert_eq!(ids_of(&versions.items), vec![(&*k, &v2.version)]);
    c.assert_data(&k, &v2.version, b"two");
    // bypass on a version with no retention changes nothing.
    ok(c.pruner().delete_version(&k, &v2.version, true), "remove v2 with a (needless) bypass");
    expect_not_found(c.reader().get(&k, None), &k, None, "no versions left");
    assert!(ok(c.reader().list(&c.prefix, None, 10), "list").items.is_empty());
}

/// A compliance retention stops every delete, bypass or not.
pub fn delete_version_refused_under_compliance(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "delete_version_refused_under_compliance");
    let k = c.key("k");
    let v = c.put_locked("k", b"locked", RetentionMode::Compliance, HOUR);
    let by = LockedBy { mode: Some(RetentionMode::Compliance), until: v.retention.map(|r| r.until), legal_hold: false };
    expect_locked(c.pruner().delete_version(&k, &v.version, false), &k, &v.version, &by, "delete");
    expect_locked(c.pruner().delete_version(&k, &v.version, true), &k, &v.version, &by, "delete with bypass");
    expect_forbidden(c.admin().delete_version(&k, &v.version, true), Role::Admin, Action::DeleteVersion, "admin");
    c.assert_data(&k, &v.version, b"locked");
}

/// A governance retention stops a delete without bypass (`Locked`), and a delete with
/// bypass by a role without the bypass permission (`Forbidden`); once the admin removes it
/// with bypass, the pruner may delete.
pub fn delete_version_refused_under_governance(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "delete_version_refused_under_governance");
    let k = c.key("k");
    let v = c.put_locked("k", b"locked", RetentionMode::Governance, HOUR);
    let by = LockedBy { mode: Some(RetentionMode::Governance), until: v.retention.map(|r| r.until), legal_hold: false };
    expect_locked(c.pruner().delete_version(&k, &v.version, false), &k, &v.version, &by, "delete");
    expect_forbidden(
        c.pruner().delete_version(&k, &v.version, true),
        Role::Pruner,
        Action::BypassGovernance,
        "pruner deletes with bypass",
    );
    expect_forbidden(c.admin().delete_version(&k, &v.version, true), Role::Admin, Action::DeleteVersion, "admin");
    c.assert_data(&k, &v.version, b"locked");
    ok(c.admin().put_retention(&k, &v.version, None, true), "admin removes the governance retention with bypass");
    assert_eq!(ok(c.auditor().head(&k, None), "head").retention, None);
    ok(c.pruner().delete_version(&k, &v.version, false), "now the pruner may delete");
    expect_not_found(c.auditor().head(&k, Some(&v.version)), &k, Some(&v.version), "gone");
}

/// A legal hold stops every delete, with or without bypass and with or without retention,
/// until the admin lifts it.
pub fn delete_version_refused_under_legal_hold(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "delete_version_refused_under_legal_hold");
    let k = c.key("k");
    let held = PutOptions { retention: None, legal_hold: true, create_only: false };
    let v = c.put_opts("k", b"held", held);
    assert!(ok(c.auditor().head(&k, None), "head").legal_hold);
    let by = LockedBy { mode: None, until: None, legal_hold: true };
    for bypass in [false, true] {
        expect_locked(c.pruner().delete_version(&k, &v.version, bypass), &k, &v.version, &by, "delete held");
    }
    c.assert_data(&k, &v.version, b"held");
    ok(c.admin().put_legal_hold(&k, &v.version, false), "admin lifts the hold");
    ok(c.pruner().delete_version(&k, &v.version, false), "then the pruner may delete");
    expect_not_found(c.auditor().head(&k, Some(&v.version)), &k, Some(&v.version), "gone");
}

// ---------------------------------------------------------------------------------------
// put_retention
// ---------------------------------------------------------------------------------------

/// A compliance retention can be kept or extended by the writer and the admin.
pub fn put_retention_extends_compliance(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "put_retention_extends_compliance");
    let k = c.key("k");
    let v = c.put_locked("k", b"x", RetentionMode::Compliance, HOUR);
    let until = v.retention.expect("retention").until;
    let steps = [(c.writer(), until), (c.writer(), c.at(2 * HOUR)), (c.admin(), c.at(3 * HOUR))];
    for (s, u) in steps {
        let r = ret(RetentionMode::Compliance, u);
        ok(s.put_retention(&k, &v.version, Some(r), false), &format!("{} keeps or extends", s.principal().role));
        assert_eq!(ok(c.auditor().head(&k, None), "head").retention, Some(r));
    }
}

/// A compliance retention cannot be shortened, turned to governance or removed by anyone,
/// with or without bypass.
pub fn put_retention_cannot_weaken_compliance(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "put_retention_cannot_weaken_compliance");
    let k = c.key("k");
    let v = c.put_locked("k", b"x", RetentionMode::Compliance, 2 * HOUR);
    let cur = v.retention.expect("retention");
    let by = LockedBy { mode: Some(cur.mode), until: Some(cur.until), legal_hold: false };
    let weaker = [
        ("shorten", Some(ret(RetentionMode::Compliance, c.at(HOUR)))),
        ("turn to governance", Some(ret(RetentionMode::Governance, cur.until))),
        ("turn to governance, later", Some(ret(RetentionMode::Governance, c.at(3 * HOUR)))),
        ("remove", None),
    ];
    for (what, new) in weaker {
        for s in [c.writer(), c.admin()] {
            for bypass in [false, true] {
                let what = format!("{} {what} compliance (bypass {bypass})", s.principal().role);
                expect_locked(s.put_retention(&k, &v.version, new, bypass), &k, &v.version, &by, &what);
            }
        }
    }
    assert_eq!(ok(c.auditor().head(&k, None), "head").retention, Some(cur), "retention unchanged");
}

/// A governance retention: anyone allowed may extend it; shortening or removing it needs
/// bypass (`Locked` without), and bypass needs the permission (`Forbidden` for the writer).
pub fn put_retention_governance_needs_bypass_and_admin(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "put_retention_governance_needs_bypass_and_admin");
    let k = c.key("k");
    let v = c.put_locked("k", b"x", RetentionMode::Governance, 2 * HOUR);
    let cur = v.retention.expect("retention");
    let by = LockedBy { mode: Some(cur.mode), until: Some(cur.until), legal_hold: false };
    let shorter = Some(ret(RetentionMode::Governance, c.at(HOUR)));
    for s in [c.writer(), c.admin()] {
        let what = format!("{} shortens governance without bypass", s.principal().role);
        expect_locked(s.put_retention(&k, &v.version, shorter, false), &k, &v.version, &by, &what);
        let what = format!("{} removes governance without bypass", s.principal().role);
        expect_locked(s.put_retention(&k, &v.version, None, false), &k, &v.version, &by, &what);
    }
    let w = c.writer();
    expect_forbidden(w.put_retention(&k, &v.version, shorter, true), Role::Writer, Action::BypassGovernance, "shorten");
    expect_forbidden(w.put_retention(&k, &v.version, None, true), Role::Writer, Action::BypassGovernance, "remove");
    assert_eq!(ok(c.auditor().head(&k, None), "head").retention, Some(cur), "retention unchanged");

    let longer = ret(RetentionMode::Governance, c.at(3 * HOUR));
    ok(w.put_retention(&k, &v.version, Some(longer), false), "the writer extends governance");
    assert_eq!(ok(c.auditor().head(&k, None), "head").retention, Some(longer));
    ok(c.admin().put_retention(&k, &v.version, shorter, true), "the admin shortens governance with bypass");
    assert_eq!(ok(c.auditor().head(&k, None), "head").retention, shorter);
    ok(c.admin().put_retention(&k, &v.version, None, true), "the admin removes governance with bypass");
    assert_eq!(ok(c.auditor().head(&k, None), "head").retention, None);
    c.assert_data(&k, &v.version, b"x");
}

/// A version without retention takes any retention from the writer or the admin.
pub fn put_retention_on_an_unprotected_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "put_retention_on_an_unprotected_version");
    for (i, (s, mode)) in [
        (c.writer(), RetentionMode::Governance),
        (c.writer(), RetentionMode::Compliance),
        (c.admin(), RetentionMode::Compliance),
    ]
    .into_iter()
    .enumerate()
    {
        let v = c.put(&format!("v{i}"), b"x");
        ok(s.put_retention(&v.key, &v.version, None, false), "removing nothing is fine");
        let r = ret(mode, c.at(HOUR));
        ok(s.put_retention(&v.key, &v.version, Some(r), false), &format!("{} sets {mode}", s.principal().role));
        assert_eq!(ok(c.auditor().head(&v.key, None), "head").retention, Some(r));
        let by = LockedBy { mode: Some(mode), until: Some(r.until), legal_hold: false };
        expect_locked(c.pruner().delete_version(&v.key, &v.version, false), &v.key, &v.version, &by, "now locked");
    }
}

// ---------------------------------------------------------------------------------------
// Legal hold, lock configuration, versioning
// ---------------------------------------------------------------------------------------

/// Legal hold: the writer and admin place it, only the admin lifts it; it is independent
/// of retention.
pub fn legal_hold_on_and_off(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "legal_hold_on_and_off");
    let k = c.key("k");
    let v = c.put("k", b"x");
    let hold = |want: bool, what: &str| {
        assert_eq!(ok(c.auditor().head(&k, Some(&v.version)), "head").legal_hold, want, "{what}");
    };
    hold(false, "no hold after a plain put");
    ok(c.writer().put_legal_hold(&k, &v.version, true), "writer places a hold");
    hold(true, "held");
    ok(c.writer().put_legal_hold(&k, &v.version, true), "placing it again is fine");
    expect_forbidden(c.writer().put_legal_hold(&k, &v.version, false), Role::Writer, Action::LegalHoldOff, "lift");
    hold(true, "still held");
    ok(c.admin().put_legal_hold(&k, &v.version, false), "admin lifts it");
    hold(false, "lifted");
    ok(c.admin().put_legal_hold(&k, &v.version, true), "admin places it");
    hold(true, "held by the admin");

    let both = c.put_opts(
        "both",
        b"y",
        PutOptions {
            retention: Some(ret(RetentionMode::Compliance, c.at(HOUR))),
            legal_hold: true,
            create_only: false,
        },
    );
    assert!(both.legal_hold);
    ok(c.admin().put_legal_hold(&both.key, &both.version, false), "lift the hold on a compliance version");
    let m = ok(c.auditor().head(&both.key, None), "head");
    assert_eq!((m.legal_hold, m.retention), (false, both.retention), "the retention is untouched");
    let by =
        LockedBy { mode: Some(RetentionMode::Compliance), until: both.retention.map(|r| r.until), legal_hold: false };
    expect_locked(c.pruner().delete_version(&both.key, &both.version, false), &both.key, &both.version, &by, "delete");
}

/// Object Lock stays enabled: disabling it is invalid for the admin and forbidden for the rest.
pub fn lock_config_cannot_be_disabled(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "lock_config_cannot_be_disabled");
    let guard = ConfigGuard::save(c.admin());
    let before = guard.saved;
    for role in Role::ALL {
        assert_eq!(ok(c.as_role(role).lock_config(), "lock config"), before, "{role} reads the lock config");
    }
    let disabled = LockConfig { enabled: false, ..before };
    expect_err(c.admin().put_lock_config(&disabled), ErrorKind::InvalidRequest, "admin disables lock");
    let bad = LockConfig {
        enabled: true,
        default_retention: Some(DefaultRetention { mode: RetentionMode::Governance, period: Duration::ZERO }),
    };
    expect_err(c.admin().put_lock_config(&bad), ErrorKind::InvalidRequest, "a zero default period");
    assert_eq!(ok(c.auditor().lock_config(), "lock config"), before, "configuration unchanged");
    ok(c.admin().put_lock_config(&before), "writing the same configuration is fine");
    drop(guard);
}

/// Versioning stays enabled: suspending it is invalid for the admin, and puts still make versions.
pub fn versioning_cannot_be_suspended(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "versioning_cannot_be_suspended");
    for role in Role::ALL {
        assert_eq!(ok(c.as_role(role).versioning(), "versioning"), Versioning::Enabled, "{role} reads versioning");
    }
    let v1 = c.put("k", b"one");
    expect_err(c.admin().put_versioning(Versioning::Suspended), ErrorKind::InvalidRequest, "admin suspends");
    ok(c.admin().put_versioning(Versioning::Enabled), "enabling again is fine");
    assert_eq!(ok(c.auditor().versioning(), "versioning"), Versioning::Enabled);
    let v2 = c.put("k", b"two");
    assert_ne!(v1.version, v2.version);
    c.assert_data(&c.key("k"), &v1.version, b"one");
}

/// (principal, role, action, key, version, outcome) of an audit entry.
type AuditRow<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a str);

/// Every mutating request leaves an audit entry with principal, role, action, key,
/// version and outcome; refusals say why. Skipped when the store has no audit log.
pub fn audit_log_records_mutations(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "audit_log_records_mutations");
    let Some(start) = c.audit_after(0).map(|e| e.last().map_or(0, |e| e.seq)) else { return };
    let k = c.key("k");
    let v = c.put_locked("k", b"x", RetentionMode::Compliance, HOUR);
    let m = ok(c.admin().delete(&k), "delete");
    let _ = c.reader().put(&k, b"y", &PutOptions::default());
    let _ = c.pruner().delete_version(&k, &v.version, false);
    ok(c.writer().put_legal_hold(&k, &v.version, true), "hold");
    let _ = c.admin().put_versioning(Versioning::Suspended);
    let _ = c.reader().get(&k, Some(&v.version));
    let entries = c.audit_after(start).expect("audit log");
    let got: Vec<AuditRow<'_>> = entries
        .iter()
        .map(|e| {
            (
                e.principal.as_str(),
                e.role.as_str(),
                e.action.as_str(),
                e.key.as_deref(),
                e.version.as_deref(),
                e.outcome.as_str(),
            )
        })
        .collect();
    let name = |r: Role| c.as_role(r).principal().name.clone();
    let (w, r, p, a) = (name(Role::Writer), name(Role::Reader), name(Role::Pruner), name(Role::Admin));
    let (vs, ms) = (v.version.0.as_str(), m.version.0.as_str());
    let want: Vec<AuditRow<'_>> = vec![
        (&w, "writer", "put", Some(&k), Some(vs), "allowed"),
        (&a, "admin", "delete", Some(&k), Some(ms), "allowed"),
        (&r, "reader", "put", Some(&k), None, "denied"),
        (&p, "pruner", "delete-version", Some(&k), Some(vs), "denied"),
        (&w, "writer", "legal-hold-on", Some(&k), Some(vs), "allowed"),
        (&a, "admin", "put-versioning", None, None, "denied"),
    ];
    assert_eq!(got, want, "audit entries for the requests made (reads are not audited)");
    for e in &entries {
        assert_eq!(e.outcome == "denied", !e.reason.is_empty(), "a refusal says why, an allowed entry does not: {e:?}");
    }
    assert!(entries.windows(2).all(|w| w[1].seq == w[0].seq + 1 && w[1].prev_hash == w[0].hash), "chained");
}

// ---------------------------------------------------------------------------------------
// The access matrix
// ---------------------------------------------------------------------------------------

/// Performs `action` as `role` on a fresh key set up so that the request succeeds unless
/// the role is refused. `None` when the harness cannot perform it (no audit log).
fn attempt(c: &Ctx<'_>, role: Role, action: Action) -> Option<coffer_store::Result<()>> {
    let s = c.as_role(role);
    let name = format!("{role}-{action}");
    let key = c.key(&name);
    let gov = |secs| Some(ret(RetentionMode::Governance, c.at(secs)));
    let r = match action {
        Action::Put => s.put(&key, b"cell", &PutOptions::default()).map(drop),
        Action::Get => {
            c.put(&name, b"cell");
            s.get(&key, None).map(drop)
        }
        Action::Head => {
            c.put(&name, b"cell");
            s.head(&key, None).map(drop)
        }
        Action::List => {
            c.put(&name, b"cell");
            s.list(&key, None, 10).map(drop)
        }
        Action::ListVersions => {
            c.put(&name, b"cell");
            s.list_versions(&key, None, 10).map(drop)
        }
        Action::Delete => {
            c.put(&name, b"cell");
            s.delete(&key).map(drop)
        }
        Action::DeleteVersion => {
            let v = c.put(&name, b"cell");
            s.delete_version(&key, &v.version, false)
        }
        Action::PutRetention => {
            let v = c.put(&name, b"cell");
            s.put_retention(&key, &v.version, gov(HOUR), false)
        }
        Action::BypassGovernance => {
            let v = c.put_locked(&name, b"cell", RetentionMode::Governance, 2 * HOUR);
            s.put_retention(&key, &v.version, gov(HOUR), true)
        }
        Action::LegalHoldOn => {
            let v = c.put(&name, b"cell");
            s.put_legal_hold(&key, &v.version, true)
        }
        Action::LegalHoldOff => {
            let v = c.put_opts(&name, b"cell", PutOptions { retention: None, legal_hold: true, create_only: false });
            s.put_legal_hold(&key, &v.version, false)
        }
        Action::GetLockConfig => s.lock_config().map(drop),
        Action::PutLockConfig => {
            let current = ok(c.admin().lock_config(), "read the lock config");
            s.put_lock_config(&current)
        }
        Action::GetVersioning => s.versioning().map(drop),
        Action::PutVersioning => s.put_versioning(Versioning::Enabled),
        Action::ReadAuditLog => return c.h.audit_log_as(role, 0).map(|r| r.map(drop)),
    };
    Some(r)
}

/// The audit log's name for the request `attempt` makes for `action`, if it is audited.
fn audited_as(action: Action) -> Option<&'static str> {
    match action {
        Action::Get
        | Action::Head
        | Action::List
        | Action::ListVersions
        | Action::GetLockConfig
        | Action::GetVersioning
        | Action::ReadAuditLog => None,
        Action::BypassGovernance => Some("put-retention"),
        other => Some(other.as_str()),
    }
}

/// Every role × every action, each in a state where only the role could stop it: the
/// request is refused with `Forbidden` (naming the role) exactly when the hand-written
/// table [`crate::model::PERMISSIONS`] says so, the store's own [`Role::allows`] agrees
/// with that table, and (with an audit log) each mutating request is audited as allowed
/// or denied.
pub fn access_matrix(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "access_matrix");
    let mark = c.audit_mark();
    let mut problems = Vec::new();
    let mut cells = Vec::new();
    for role in Role::ALL {
        for action in Action::ALL {
            let expected = permits(role, action);
            if role.allows(action) != expected {
                problems.push(format!("Role::allows({role}, {action}) is {}, the table says {expected}", !expected));
            }
            let Some(result) = attempt(&c, role, action) else { continue };
            match (&result, expected) {
                (Ok(()), true) => {}
                (Err(StoreError::Forbidden { role: r, action: a, .. }), false) if *r == role && !permits(role, *a) => {}
                (Ok(()), false) => problems.push(format!("{role} may {action}, but the table forbids it")),
                (Err(e), _) => problems.push(format!(
                    "{role} {action}: expected {}, got {e:?}",
                    if expected { "success" } else { "Forbidden naming the role and a refused action" }
                )),
            }
            cells.push((role, action, expected));
        }
    }
    if let Some(entries) = c.audit_after(mark) {
        for (role, action, allowed) in cells {
            let Some(audit_action) = audited_as(action) else { continue };
            let principal = &c.as_role(role).principal().name;
            let key = c.key(&format!("{role}-{action}"));
            let outcome = if allowed { "allowed" } else { "denied" };
            let found = entries.iter().any(|e| {
                e.principal == *principal
                    && e.action == audit_action
                    && e.outcome == outcome
                    && (e.key.is_none() || e.key.as_deref() == Some(key.as_str()))
            });
            if !found {
                problems.push(format!("no audit entry {outcome} for {role} {action} ({audit_action} {key})"));
            }
        }
    }
    assert!(problems.is_empty(), "access matrix:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// The attack matrix
// ---------------------------------------------------------------------------------------

/// What protects the target of an attack.
#[derive(Clone, Copy, Debug)]
enum Guard {
    Compliance,
    Governance,
    LegalHold,
}

/// What an attack must end in for one role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Refused with this kind.
    Refused(ErrorKind),
    /// Allowed but harmless (overwrite and delete markers add versions, remove nothing).
    Harmless,
    /// Not an attack for this role: it holds the permission (e.g. the admin's bypass).
    Legitimate,
}

struct Target {
    key: String,
    version: VersionId,
    data: Vec<u8>,
    retention: Option<Retention>,
    legal_hold: bool,
}

type AttackFn = fn(&dyn ObjectStore, &Target) -> coffer_store::Result<()>;

struct Attack {
    name: &'static str,
    guard: Guard,
    /// The action the audit log records.
    audit_action: &'static str,
    /// Whether the audit entry names the key (config requests name none).
    names_key: bool,
    expect: fn(Role) -> Expect,
    run: AttackFn,
}

fn until_of(t: &Target) -> Timestamp {
    t.retention.expect("the target has a retention").until
}

fn shift(t: Timestamp, secs: i64) -> Timestamp {
    t + SignedDuration::from_secs(secs)
}

use Expect::{Harmless, Legitimate, Refused};
const FORBIDDEN: Expect = Refused(ErrorKind::Forbidden);
const LOCKED: Expect = Refused(ErrorKind::Locked);
const INVALID: Expect = Refused(ErrorKind::InvalidRequest);

/// Every destructive or weakening request, and what each role must get. Written out per
/// role by hand, not derived from [`Role::allows`].
const ATTACKS: &[Attack] = &[
    Attack {
        name: "delete a compliance-locked version",
        guard: Guard::Compliance,
        audit_action: "delete-version",
        names_key: true,
        expect: |r| if r == Role::Pruner { LOCKED } else { FORBIDDEN },
        run: |s, t| s.delete_version(&t.key, &t.version, false),
    },
    Attack {
        name: "delete a compliance-locked version with bypass",
        guard: Guard::Compliance,
        audit_action: "delete-version",
        names_key: true,
        expect: |r| if r == Role::Pruner { LOCKED } else { FORBIDDEN },
        run: |s, t| s.delete_version(&t.key, &t.version, true),
    },
    Attack {
        name: "shorten compliance",
        guard: Guard::Compliance,
        audit_action: "put-retention",
        names_key: true,
        expect: |r| if matches!(r, Role::Writer | Role::Admin) { LOCKED } else { FORBIDDEN },
        run: |s, t| {
            s.put_retention(&t.key, &t.version, Some(ret(RetentionMode::Compliance, shift(until_of(t), -HOUR))), false)
        },
    },
    Attack {
        name: "shorten compliance with bypass",
        guard: Guard::Compliance,
        audit_action: "put-retention",
        names_key: true,
        expect: |r| if matches!(r, Role::Writer | Role::Admin) { LOCKED } else { FORBIDDEN },
        run: |s, t| {
            s.put_retention(&t.key, &t.version, Some(ret(RetentionMode::Compliance, shift(until_of(t), -HOUR))), true)
        },
    },
    Attack {
        name: "turn compliance into governance",
        guard: Guard::Compliance,
        audit_action: "put-retention",
        names_key: true,
        expect: |r| if matches!(r, Role::Writer | Role::Admin) { LOCKED } else { FORBIDDEN },
        run: |s, t| {
            s.put_retention(&t.key, &t.version, Some(ret(RetentionMode::Governance, shift(until_of(t), HOUR))), true)
        },
    },
    Attack {
        name: "remove compliance",
        guard: Guard::Compliance,
        audit_action: "put-retention",
        names_key: true,
        expect: |r| if matches!(r, Role::Writer | Role::Admin) { LOCKED } else { FORBIDDEN },
        run: |s, t| s.put_retention(&t.key, &t.version, None, true),
    },
    Attack {
        name: "delete a governance-locked version",
        guard: Guard::Governance,
        audit_action: "delete-version",
        names_key: true,
        expect: |r| if r == Role::Pruner { LOCKED } else { FORBIDDEN },
        run: |s, t| s.delete_version(&t.key, &t.version, false),
    },
    Attack {
        name: "delete a governance-locked version with bypass, without the permission",
        guard: Guard::Governance,
        audit_action: "delete-version",
        names_key: true,
        // The pruner may delete but not bypass; the admin may bypass but not delete.
        expect: |_| FORBIDDEN,
        run: |s, t| s.delete_version(&t.key, &t.version, true),
    },
    Attack {
        name: "shorten governance without bypass",
        guard: Guard::Governance,
        audit_action: "put-retention",
        names_key: true,
        expect: |r| if matches!(r, Role::Writer | Role::Admin) { LOCKED } else { FORBIDDEN },
        run: |s, t| {
            s.put_retention(&t.key, &t.version, Some(ret(RetentionMode::Governance, shift(until_of(t), -HOUR))), false)
        },
    },
    Attack {
        name: "shorten governance with bypass, without the permission",
        guard: Guard::Governance,
        audit_action: "put-retention",
        names_key: true,
        expect: |r| if r == Role::Admin { Legitimate } else { FORBIDDEN },
        run: |s, t| {
            s.put_retention(&t.key, &t.version, Some(ret(RetentionMode::Governance, shift(until_of(t), -HOUR))), true)
        },
    },
    Attack {
        name: "remove governance without bypass",
        guard: Guard::Governance,
        audit_action: "put-retention",
        names_key: true,
        expect: |r| if matches!(r, Role::Writer | Role::Admin) { LOCKED } else { FORBIDDEN },
        run: |s, t| s.put_retention(&t.key, &t.version, None, false),
    },
    Attack {
        name: "remove governance with bypass, without the permission",
        guard: Guard::Governance,
        audit_action: "put-retention",
        names_key: true,
        expect: |r| if r == Role::Admin { Legitimate } else { FORBIDDEN },
        run: |s, t| s.put_retention(&t.key, &t.version, None, true),
    },
    Attack {
        name: "delete a version under legal hold",
        guard: Guard::LegalHold,
        audit_action: "delete-version",
        names_key: true,
        expect: |r| if r == Role::Pruner { LOCKED } else { FORBIDDEN },
        run: |s, t| s.delete_version(&t.key, &t.version, true),
    },
    Attack {
        name: "remove a legal hold without the permission",
        guard: Guard::LegalHold,
        audit_action: "legal-hold-off",
        names_key: true,
        expect: |r| if r == Role::Admin { Legitimate } else { FORBIDDEN },
        run: |s, t| s.put_legal_hold(&t.key, &t.version, false),
    },
    Attack {
        name: "disable object lock",
        guard: Guard::Compliance,
        audit_action: "put-lock-config",
        names_key: false,
        expect: |r| if r == Role::Admin { INVALID } else { FORBIDDEN },
        run: |s, _| s.put_lock_config(&LockConfig { enabled: false, default_retention: None }),
    },
    Attack {
        name: "suspend versioning",
        guard: Guard::Compliance,
        audit_action: "put-versioning",
        names_key: false,
        expect: |r| if r == Role::Admin { INVALID } else { FORBIDDEN },
        run: |s, _| s.put_versioning(Versioning::Suspended),
    },
    Attack {
        name: "overwrite",
        guard: Guard::Compliance,
        audit_action: "put",
        names_key: true,
        expect: |r| if r == Role::Writer { Harmless } else { FORBIDDEN },
        run: |s, t| {
            let v = s.put(&t.key, b"overwritten", &PutOptions::default())?;
            assert_ne!(v.version, t.version, "an overwrite makes a new version");
            Ok(())
        },
    },
    Attack {
        name: "hide behind a delete marker",
        guard: Guard::Governance,
        audit_action: "delete",
        names_key: true,
        expect: |r| if r == Role::Admin { Harmless } else { FORBIDDEN },
        run: |s, t| s.delete(&t.key).map(drop),
    },
];

/// Every role × every destructive or weakening request (delete a locked version, shorten
/// compliance, compliance → governance, remove compliance, bypass governance without the
/// permission, remove a legal hold without the permission, disable Object Lock, suspend
/// versioning, overwrite, hide behind a delete marker): refused with `Forbidden` when the
/// role lacks the action, `Locked` or `InvalidRequest` when it has it — or, for the
/// writer's overwrite and the admin's delete marker, allowed but adding a version (the
/// writer may not add a delete marker) — and afterwards the
/// protected version still reads back byte for byte with its retention and hold, the lock
/// configuration and versioning are unchanged, and the audit log records each refusal as
/// `denied` with principal, action, key and version.
pub fn attack_matrix(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "attack_matrix");
    let config = ok(c.admin().lock_config(), "read the lock config");
    let mark = c.audit_mark();
    let mut audited = Vec::new();
    for (i, attack) in ATTACKS.iter().enumerate() {
        for role in Role::ALL {
            let expect = (attack.expect)(role);
            if expect == Legitimate {
                continue;
            }
            let name = format!("a{i:02}-{role}");
            let data = format!("{} / {role}", attack.name).into_bytes();
            let opts = match attack.guard {
                Guard::Compliance => PutOptions {
                    retention: Some(ret(RetentionMode::Compliance, c.at(2 * HOUR))),
                    legal_hold: false,
                    create_only: false,
                },
                Guard::Governance => PutOptions {
                    retention: Some(ret(RetentionMode::Governance, c.at(2 * HOUR))),
                    legal_hold: false,
                    create_only: false,
                },
                Guard::LegalHold => PutOptions { retention: None, legal_hold: true, create_only: false },
            };
            let v = c.put_opts(&name, &data, opts);
            let t = Target { key: v.key, version: v.version, data, retention: v.retention, legal_hold: v.legal_hold };
            let s = c.as_role(role);
            let what = format!("attack {:?} as {role}", attack.name);
            let result = (attack.run)(s, &t);
            match expect {
                Refused(kind) => match expect_err(result, kind, &what) {
                    StoreError::Forbidden { role: r, action, .. } => {
                        assert_eq!(r, role, "{what}: Forbidden names the role");
                        assert!(!permits(role, action), "{what}: Forbidden names {action}, which {role} may do");
                    }
                    StoreError::Locked { key, version, .. } => {
                        assert_eq!((&key, &version), (&t.key, &t.version), "{what}: Locked names the version");
                    }
                    _ => {}
                },
                Harmless => ok(result, &what),
                Legitimate => unreachable!(),
            }
            // The protected version is intact.
            c.assert_data(&t.key, &t.version, &t.data);
            let m = ok(c.auditor().head(&t.key, Some(&t.version)), &format!("{what}: head"));
            assert_eq!((m.retention, m.legal_hold), (t.retention, t.legal_hold), "{what}: protection unchanged");
            assert_eq!(ok(c.auditor().lock_config(), "lock config"), config, "{what}: lock config unchanged");
            assert_eq!(ok(c.auditor().versioning(), "versioning"), Versioning::Enabled, "{what}: versioning");
            audited.push((what, attack, role, t, expect));
        }
    }
    let Some(entries) = c.audit_after(mark) else { return };
    let mut missing = Vec::new();
    for (what, attack, role, t, expect) in audited {
        let principal = &c.as_role(role).principal().name;
        let outcome = if expect == Harmless { "allowed" } else { "denied" };
        let found = entries.iter().any(|e| {
            e.principal == *principal
                && e.role == role.as_str()
                && e.action == attack.audit_action
                && e.outcome == outcome
                && (outcome == "allowed" || !e.reason.is_empty())
                && if attack.names_key {
                    let names_target = e.version.as_deref() == Some(t.version.0.as_str());
                    // A put or delete names the version it made (if any), never the target;
                    // the target's own put is not this request's entry.
                    let new_version = matches!(attack.audit_action, "put" | "delete");
                    e.key.as_deref() == Some(t.key.as_str()) && names_target != new_version
                } else {
                    e.key.is_none()
                }
        });
        if !found {
            missing.push(format!("{what}: no {outcome} audit entry ({} on {})", attack.audit_action, t.key));
        }
    }
    assert!(missing.is_empty(), "attack matrix audit:\n{}", missing.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Checks that move the clock
// ---------------------------------------------------------------------------------------

/// A retention protects until its retain-until date and not a moment longer: a second
/// before, every delete and weakening is refused; at the date the pruner may delete.
pub fn retention_ends_at_retain_until(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "retention_ends_at_retain_until");
    let until = c.at(10);
    let opts = |mode| PutOptions { retention: Some(ret(mode, until)), legal_hold: false, create_only: false };
    let comp = c.put_opts("compliance", b"c", opts(RetentionMode::Compliance));
    let gov = c.put_opts("governance", b"g", opts(RetentionMode::Governance));
    c.advance_to(shift(until, -1));
    for (v, mode) in [(&comp, RetentionMode::Compliance), (&gov, RetentionMode::Governance)] {
        let by = LockedBy { mode: Some(mode), until: Some(until), legal_hold: false };
        expect_locked(c.pruner().delete_version(&v.key, &v.version, false), &v.key, &v.version, &by, "a second early");
        expect_locked(c.writer().put_retention(&v.key, &v.version, None, false), &v.key, &v.version, &by, "remove");
    }
    c.advance_to(until);
    ok(c.pruner().delete_version(&comp.key, &comp.version, false), "compliance ended: the pruner deletes");
    ok(c.pruner().delete_version(&gov.key, &gov.version, false), "governance ended: the pruner deletes");
    assert!(ok(c.auditor().list_versions(&c.prefix, None, 10), "list").items.is_empty());
}

/// A legal hold keeps protecting after the retention has ended.
pub fn legal_hold_outlasts_retention(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "legal_hold_outlasts_retention");
    let until = c.at(5);
    let v = c.put_opts(
        "k",
        b"x",
        PutOptions { retention: Some(ret(RetentionMode::Compliance, until)), legal_hold: true, create_only: false },
    );
    c.advance_to(shift(until, 30));
    let by = LockedBy { mode: None, until: None, legal_hold: true };
    expect_locked(c.pruner().delete_version(&v.key, &v.version, false), &v.key, &v.version, &by, "held");
    c.assert_data(&v.key, &v.version, b"x");
    ok(c.admin().put_legal_hold(&v.key, &v.version, false), "lift the hold");
    ok(c.pruner().delete_version(&v.key, &v.version, false), "now deletable");
}

/// Once a retention has ended, the version is unprotected: any new retention, in either
/// mode, may be set or removed without bypass; dates must still lie in the future.
pub fn put_retention_after_expiry_is_free(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "put_retention_after_expiry_is_free");
    let until = c.at(5);
    let v = c.put_opts(
        "k",
        b"x",
        PutOptions { retention: Some(ret(RetentionMode::Compliance, until)), legal_hold: false, create_only: false },
    );
    c.advance_to(shift(until, 1));
    let w = c.writer();
    let past = Some(ret(RetentionMode::Compliance, until));
    expect_err(w.put_retention(&v.key, &v.version, past, false), ErrorKind::InvalidRequest, "still no past dates");
    let gov = ret(RetentionMode::Governance, c.at(5));
    ok(w.put_retention(&v.key, &v.version, Some(gov), false), "expired compliance → governance, no bypass");
    assert_eq!(ok(c.auditor().head(&v.key, None), "head").retention, Some(gov));
    c.advance_to(shift(gov.until, 1));
    ok(w.put_retention(&v.key, &v.version, None, false), "expired governance removed, no bypass");
    assert_eq!(ok(c.auditor().head(&v.key, None), "head").retention, None);
    let comp = ret(RetentionMode::Compliance, c.at(5));
    ok(w.put_retention(&v.key, &v.version, Some(comp), false), "a new compliance retention");
    let by = LockedBy { mode: Some(RetentionMode::Compliance), until: Some(comp.until), legal_hold: false };
    expect_locked(w.put_retention(&v.key, &v.version, None, false), &v.key, &v.version, &by, "locked again");
}

/// The default retention runs from each put's own time.
pub fn default_retention_counts_from_the_put(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "default_retention_counts_from_the_put");
    let guard = ConfigGuard::save(c.admin());
    let default = DefaultRetention { mode: RetentionMode::Compliance, period: Duration::from_secs(30) };
    ok(c.admin().put_lock_config(&LockConfig { enabled: true, default_retention: Some(default) }), "set default");
    let v1 = c.put("k", b"one");
    c.h.advance(Duration::from_secs(10));
    let v2 = c.put("k", b"two");
    let u1 = v1.retention.expect("default applied").until;
    let u2 = v2.retention.expect("default applied").until;
    assert_eq!(u2.as_second() - u1.as_second(), 10, "each put's retention runs from its own time");
    c.advance_to(u1);
    drop(guard);
    ok(c.pruner().delete_version(&v1.key, &v1.version, false), "v1's retention ended");
    let by = LockedBy { mode: Some(RetentionMode::Compliance), until: Some(u2), legal_hold: false };
    expect_locked(c.pruner().delete_version(&v2.key, &v2.version, false), &v2.key, &v2.version, &by, "v2 locked");
}
