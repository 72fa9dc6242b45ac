//! Helpers shared by the checks: the per-check context (a fresh key prefix, handles per
//! role), assertions on exact error kinds and lock refusals, paging, and the guard that
//! puts a changed bucket configuration back.
//!
//! Invariant guarded here: a check never lists outside its own prefix and restores any
//! bucket-wide setting it changes, even when it fails, so checks can share one store.

use super::*;

/// A page limit up to which every page but the last must be full (S3's largest page).
pub(super) const FULL_PAGE_LIMIT: usize = 1000;

/// One check's view: its key prefix and a handle per role.
pub(super) struct Ctx<'h> {
    pub(super) h: &'h dyn StoreHarness,
    pub(super) prefix: String,
    pub(super) handles: Vec<Box<dyn ObjectStore>>,
}

impl<'h> Ctx<'h> {
    pub(super) fn new(h: &'h dyn StoreHarness, check: &str) -> Self {
        let mut nonce = [0u8; 5];
        getrandom::fill(&mut nonce).expect("random source");
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let handles = Role::ALL.iter().map(|&r| h.handle(r)).collect();
        Self { h, prefix: format!("{check}-{nonce}/"), handles }
    }

    pub(super) fn as_role(&self, role: Role) -> &dyn ObjectStore {
        let i = Role::ALL.iter().position(|&r| r == role).expect("every role has a handle");
        self.handles[i].as_ref()
    }

    pub(super) fn writer(&self) -> &dyn ObjectStore {
        self.as_role(Role::Writer)
    }

    pub(super) fn reader(&self) -> &dyn ObjectStore {
        self.as_role(Role::Reader)
    }

    pub(super) fn pruner(&self) -> &dyn ObjectStore {
        self.as_role(Role::Pruner)
    }

    pub(super) fn admin(&self) -> &dyn ObjectStore {
        self.as_role(Role::Admin)
    }

    pub(super) fn auditor(&self) -> &dyn ObjectStore {
        self.as_role(Role::Auditor)
    }

    /// The full key for `name` under this check's prefix.
    pub(super) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A whole-second date `secs` after now (now rounded up to a whole second first).
    pub(super) fn at(&self, secs: i64) -> Timestamp {
        let now = self.h.now();
        let base = now.as_second() + i64::from(now.subsec_nanosecond() > 0);
        Timestamp::from_second(base + secs).expect("date in range")
    }

    /// Puts `data` under `name` as the writer with `opts`; checks the returned metadata.
    #[track_caller]
    pub(super) fn put_opts(&self, name: &str, data: &[u8], opts: PutOptions) -> ObjectVersion {
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
    pub(super) fn put(&self, name: &str, data: &[u8]) -> ObjectVersion {
        self.put_opts(name, data, PutOptions::default())
    }

    /// Puts `data` under `name` locked in `mode` until `self.at(secs)`.
    #[track_caller]
    pub(super) fn put_locked(&self, name: &str, data: &[u8], mode: RetentionMode, secs: i64) -> ObjectVersion {
        self.put_opts(
            name,
            data,
            PutOptions { retention: Some(ret(mode, self.at(secs))), legal_hold: false, create_only: false },
        )
    }

    /// Reads `version` of `key` as writer and as reader and demands `data`.
    #[track_caller]
    pub(super) fn assert_data(&self, key: &str, version: &VersionId, data: &[u8]) {
        for s in [self.writer(), self.reader()] {
            let o = ok(s.get(key, Some(version)), &format!("get {key} version {version} as {}", s.principal().role));
            assert_eq!(o.data, data, "data of {key} version {version}");
            assert_eq!(o.meta.version, *version);
        }
    }

    /// Moves the clock forward to exactly `t`.
    pub(super) fn advance_to(&self, t: Timestamp) {
        let by = Duration::try_from(t.duration_since(self.h.now())).expect("advance_to moves forward");
        self.h.advance(by);
    }

    /// Audit log entries after `after`, read as the auditor (`None` without a log).
    pub(super) fn audit_after(&self, after: u64) -> Option<Vec<AuditEntry>> {
        self.h.audit_log_as(Role::Auditor, after).map(|r| ok(r, "read the audit log as auditor"))
    }

    /// The newest audit sequence number (0 without a log).
    pub(super) fn audit_mark(&self) -> u64 {
        self.audit_after(0).and_then(|e| e.last().map(|e| e.seq)).unwrap_or(0)
    }
}

pub(super) fn ret(mode: RetentionMode, until: Timestamp) -> Retention {
    Retention { mode, until }
}

#[track_caller]
pub(super) fn ok<T>(r: coffer_store::Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: expected success, got {:?} error: {e}", e.kind()))
}

#[track_caller]
pub(super) fn expect_err<T: Debug>(r: coffer_store::Result<T>, kind: ErrorKind, what: &str) -> StoreError {
    match r {
        Ok(v) => panic!("{what}: expected a {kind:?} error, got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: expected a {kind:?} error, got {:?}: {e}", e.kind());
            e
        }
    }
}

#[track_caller]
pub(super) fn expect_forbidden<T: Debug>(r: coffer_store::Result<T>, role: Role, action: Action, what: &str) {
    match expect_err(r, ErrorKind::Forbidden, what) {
        StoreError::Forbidden { role: r, action: a, .. } => {
            assert_eq!((r, a), (role, action), "{what}: Forbidden names the role and the action refused");
        }
        other => panic!("{what}: expected Forbidden naming role and action, got {other:?}"),
    }
}

/// What a `Locked` error must report.
pub(super) struct LockedBy {
    pub(super) mode: Option<RetentionMode>,
    pub(super) until: Option<Timestamp>,
    pub(super) legal_hold: bool,
}

#[track_caller]
pub(super) fn expect_locked<T: Debug>(
    r: coffer_store::Result<T>,
    key: &str,
    version: &VersionId,
    by: &LockedBy,
    what: &str,
) {
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
pub(super) fn expect_not_found<T: Debug>(
    r: coffer_store::Result<T>,
    key: &str,
    version: Option<&VersionId>,
    what: &str,
) {
    match expect_err(r, ErrorKind::NotFound, what) {
        StoreError::NotFound { key: k, version: v } => {
            assert_eq!((k.as_str(), v.as_ref()), (key, version), "{what}: NotFound names the key and version");
        }
        other => panic!("{what}: expected NotFound naming key and version, got {other:?}"),
    }
}

/// Walks every page of a listing with `limit`, checking page shape, and returns the items.
#[track_caller]
pub(super) fn all_pages<T>(
    limit: usize,
    what: &str,
    f: impl Fn(Option<&str>) -> coffer_store::Result<Page<T>>,
) -> Vec<T> {
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

pub(super) fn keys_of(items: &[ObjectVersion]) -> Vec<&str> {
    items.iter().map(|v| v.key.as_str()).collect()
}

pub(super) fn ids_of(items: &[ObjectVersion]) -> Vec<(&str, &VersionId)> {
    items.iter().map(|v| (v.key.as_str(), &v.version)).collect()
}

/// The metadata every read must agree on with what the put returned.
#[track_caller]
pub(super) fn assert_same_version(got: &ObjectVersion, want: &ObjectVersion, what: &str) {
    assert_eq!(
        (&got.key, &got.version, got.delete_marker, got.size, &got.checksum, got.retention, got.legal_hold),
        (&want.key, &want.version, want.delete_marker, want.size, &want.checksum, want.retention, want.legal_hold),
        "{what}: metadata differs from the put's"
    );
}

/// Restores the lock configuration it saved when dropped, so a failing check cannot leave
/// a default retention behind on a shared store.
pub(super) struct ConfigGuard<'a> {
    pub(super) admin: &'a dyn ObjectStore,
    pub(super) saved: LockConfig,
}

impl<'a> ConfigGuard<'a> {
    #[track_caller]
    pub(super) fn save(admin: &'a dyn ObjectStore) -> Self {
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

pub(super) const HOUR: i64 = 3600;
pub(super) const DAY: Duration = Duration::from_secs(86_400);
