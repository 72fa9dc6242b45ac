//! How the repository writes an object: create-only, and what an existing name means.
//!
//! Invariant guarded: **a backup never adds a second version of a name.** Every object the
//! repository writes has a new name — the hash of its bytes (packs, indexes, snapshots,
//! keys) or a name written once (`config`, a WAL segment) — so every put is create-only
//! (`PutOptions::create_only`; S3's `If-None-Match: *`). The one exception is a
//! PostgreSQL `.partial` WAL segment, which gets a new version as it grows
//! (`Repository::put_wal`, which does not come through here).
//!
//! A create-only put refused with `Exists` is not always a failure: two backups may upload
//! the same content-addressed pack at the same time (the name is the hash of the bytes, so
//! the content is the same), and an S3 `PUT` whose first attempt landed but whose reply was
//! lost is retried by the SDK and then refused. [`put_once`] therefore looks for a version
//! of the name holding exactly these bytes; if there is one, the put succeeded — after the
//! version's lock is extended to cover what this put asked for, since a snapshot will rely
//! on it (the invariant of reuse). Other bytes under the name are an error: the name is
//! taken, and nothing overwrites it.

use crate::error::{RepoError, Result};
use coffer_store::{ErrorKind, ObjectStore, PutOptions, Retention, RetentionMode, VersionId};

/// How many versions of a name are searched for the bytes after an `Exists`.
const VERSIONS_SEARCHED: usize = 100;

/// Stores `bytes` under `key`, create-only, locked by `retention`; the version holding
/// them (the new one, or an existing version with the same bytes, its lock extended).
///
/// # Errors
/// A store error naming `key`; `Exists` in the chain when the name holds other bytes.
pub fn put_once(store: &dyn ObjectStore, key: &str, bytes: &[u8], retention: Retention) -> Result<VersionId> {
    Ok(put_once_reported(store, key, bytes, retention)?.0)
}

/// [`put_once`], with the lock **the store reported** for the version: what the put's
/// reply states ([`ObjectStore::put`] returns the version as read back: on S3 a
/// `HeadObject` it makes anyway), or for an existing version whose lock already covered the
/// put, what its `HeadObject` said. `None` when no report is in hand (the existing
/// version's lock was just extended: the store was asked, not read). Never what the put
/// asked for: callers keep it as an observation of the store (`docs/cache.md`).
///
/// # Errors
/// As [`put_once`].
pub fn put_once_reported(
    store: &dyn ObjectStore,
    key: &str,
    bytes: &[u8],
    retention: Retention,
) -> Result<(VersionId, Option<Retention>)> {
    let opts = PutOptions { retention: Some(retention), legal_hold: false, create_only: true };
    match store.put(key, bytes, &opts) {
        Ok(v) => Ok((v.version, v.retention)),
        Err(e) if e.kind() == ErrorKind::Exists => match same_bytes(store, key, bytes)? {
            Some(version) => {
                let reported = extend_to(store, key, &version, retention)?;
                Ok((version, reported))
            }
            None => Err(RepoError::store(format!("cannot store {key}: the name is taken by other content"))(e)),
        },
        Err(e) => Err(RepoError::store(format!("cannot store {key}"))(e)),
    }
}

/// A version of `key` holding exactly `bytes`, newest first.
fn same_bytes(store: &dyn ObjectStore, key: &str, bytes: &[u8]) -> Result<Option<VersionId>> {
    let page = store
        .list_version_entries(key, None, VERSIONS_SEARCHED)
        .map_err(RepoError::store(format!("cannot list versions of {key}")))?;
    for v in page.items.iter().filter(|v| v.key == key && !v.delete_marker && v.size == bytes.len() as u64) {
        match store.get(key, Some(&v.version)) {
            Ok(o) if o.data == bytes => return Ok(Some(v.version.clone())),
            // Other bytes, or a damaged version: not the one this put would have made.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {}
            Err(e) => return Err(RepoError::store(format!("cannot read {key}"))(e)),
        }
    }
    Ok(None)
}

/// Extends the lock of an existing version so that it covers `want`: never shortens it,
/// and keeps compliance (which cannot become governance). The lock the store reported when
/// it already covered `want`; `None` when it was extended now.
fn extend_to(store: &dyn ObjectStore, key: &str, version: &VersionId, want: Retention) -> Result<Option<Retention>> {
    let head = store.head(key, Some(version)).map_err(RepoError::store(format!("cannot read the lock of {key}")))?;
    let current = head.retention;
    let covered = current.is_some_and(|r| {
        r.until >= want.until && (r.mode == RetentionMode::Compliance || want.mode == RetentionMode::Governance)
    });
    if covered {
        return Ok(current);
    }
    let mode = match current {
        Some(r) if r.mode == RetentionMode::Compliance => RetentionMode::Compliance,
        _ => want.mode,
    };
    let until = current.map_or(want.until, |r| r.until.max(want.until));
    store
        .put_retention(key, version, Some(Retention { mode, until }), false)
        .map_err(RepoError::store(format!("cannot extend the lock of {key}")))?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_store::vault::{LocalVault, VaultOptions};
    use coffer_store::{
        Clock, ListEntry, LockConfig, Object, ObjectVersion, Page, Principal, Role, StoreError, Versioning,
    };
    use coffer_testkit::s3::{S3Server, ServerKind};
    use jiff::{SignedDuration, Timestamp};
    use std::sync::atomic::{AtomicBool, Ordering};

    fn vault() -> (tempfile::TempDir, Clock, coffer_store::vault::VaultHandle) {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
        let vault =
            LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() })
                .unwrap();
        let writer = vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap();
        (tmp, clock, writer)
    }

    fn gov(now: Timestamp, hours: i64) -> Retention {
        Retention { mode: RetentionMode::Governance, until: now + SignedDuration::from_hours(hours) }
    }

    fn versions(store: &dyn ObjectStore, key: &str) -> Vec<VersionId> {
        store.list_version_entries(key, None, 100).unwrap().items.into_iter().map(|v| v.version).collect()
    }

    /// The whole behaviour on one store whose clock is `now`: create, the same bytes again
    /// (success, the lock extended, no second version), other bytes (refused, nothing added).
    fn put_once_behaves(store: &dyn ObjectStore, now: Timestamp) {
        let v1 = put_once(store, "data/ab/pack", b"pack bytes", gov(now, 24)).unwrap();
        // A concurrent backup (or a retried request) stores the same bytes, locked longer.
        let v2 = put_once(store, "data/ab/pack", b"pack bytes", gov(now, 48)).unwrap();
        assert_eq!(v2, v1, "the same bytes: the existing version is the put's");
        assert_eq!(versions(store, "data/ab/pack"), std::slice::from_ref(&v1), "no second version");
        let lock = store.head("data/ab/pack", Some(&v1)).unwrap().retention.unwrap();
        assert!(lock.until >= gov(now, 48).until, "the lock covers the later put: {lock:?}");
        // A shorter lock asked for later never shortens it.
        put_once(store, "data/ab/pack", b"pack bytes", gov(now, 1)).unwrap();
        assert_eq!(store.head("data/ab/pack", Some(&v1)).unwrap().retention, Some(lock), "never shortened");
        // Other bytes under a taken name: refused, the original untouched.
        let err = put_once(store, "data/ab/pack", b"other bytes", gov(now, 24)).unwrap_err();
        assert_eq!(err.store_error().map(StoreError::kind), Some(ErrorKind::Exists), "{err}");
        assert!(err.to_string().contains("taken by other content"), "{err}");
        assert_eq!(versions(store, "data/ab/pack"), std::slice::from_ref(&v1), "nothing added");
        assert_eq!(store.get("data/ab/pack", None).unwrap().data, b"pack bytes");

        // The lock reported is the store's: the new version's as read back, an existing
        // version's when it already covered the put, none when the put just extended it.
        let (v, reported) = put_once_reported(store, "data/cd/pack", b"other pack", gov(now, 24)).unwrap();
        let stored = store.head("data/cd/pack", Some(&v)).unwrap().retention;
        assert!(stored.is_some_and(|r| r.until >= gov(now, 24).until), "{stored:?}");
        assert_eq!(reported, stored);
        let again = put_once_reported(store, "data/cd/pack", b"other pack", gov(now, 2)).unwrap();
        assert_eq!(again, (v.clone(), stored), "covered: the existing version's lock, as read");
        let longer = put_once_reported(store, "data/cd/pack", b"other pack", gov(now, 96)).unwrap();
        assert_eq!(longer, (v, None), "extended now: asked for, not read");
    }

    #[test]
    fn put_once_on_the_local_vault() {
        let (_tmp, clock, writer) = vault();
        put_once_behaves(&writer, clock.now());
    }

    #[test]
    fn put_once_keeps_compliance_when_extending() {
        let (_tmp, clock, writer) = vault();
        let now = clock.now();
        let comp = Retention { mode: RetentionMode::Compliance, until: now + SignedDuration::from_hours(2) };
        let v = put_once(&writer, "k", b"x", comp).unwrap();
        put_once(&writer, "k", b"x", gov(now, 5)).unwrap();
        let lock = writer.head("k", Some(&v)).unwrap().retention.unwrap();
        assert_eq!((lock.mode, lock.until), (RetentionMode::Compliance, gov(now, 5).until));
    }

    /// A store whose first put lands but reports a transient failure, as an S3 `PUT` whose
    /// reply was lost; the retry (here: the caller's, on S3: the SDK's) is then refused.
    struct LostReply<S> {
        inner: S,
        lost: AtomicBool,
    }

    impl<S: ObjectStore> ObjectStore for LostReply<S> {
        fn principal(&self) -> &Principal {
            self.inner.principal()
        }
        fn capabilities(&self) -> coffer_store::Capabilities {
            self.inner.capabilities()
        }
        fn put(&self, key: &str, data: &[u8], opts: &PutOptions) -> coffer_store::Result<ObjectVersion> {
            let landed = self.inner.put(key, data, opts)?;
            if !self.lost.swap(true, Ordering::SeqCst) {
                // The request landed; its reply did not. Retried as the SDK retries:
                drop(landed);
                return self.inner.put(key, data, opts);
            }
            Ok(landed)
        }
        fn get(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<Object> {
            self.inner.get(key, version)
        }
        fn head(&self, key: &str, version: Option<&VersionId>) -> coffer_store::Result<ObjectVersion> {
            self.inner.head(key, version)
        }
        fn list(&self, prefix: &str, token: Option<&str>, limit: usize) -> coffer_store::Result<Page<ObjectVersion>> {
            self.inner.list(prefix, token, limit)
        }
        fn list_versions(
            &self,
            prefix: &str,
            token: Option<&str>,
            limit: usize,
        ) -> coffer_store::Result<Page<ObjectVersion>> {
            self.inner.list_versions(prefix, token, limit)
        }
        fn list_version_entries(
            &self,
            prefix: &str,
            token: Option<&str>,
            limit: usize,
        ) -> coffer_store::Result<Page<ListEntry>> {
            self.inner.list_version_entries(prefix, token, limit)
        }
        fn delete(&self, key: &str) -> coffer_store::Result<ObjectVersion> {
            self.inner.delete(key)
        }
        fn delete_version(&self, key: &str, version: &VersionId, bypass: bool) -> coffer_store::Result<()> {
            self.inner.delete_version(key, version, bypass)
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
            self.inner.put_versioning(status)
        }
    }

    /// A retried put whose first attempt landed succeeds, with the version that landed.
    #[test]
    fn a_retried_put_whose_first_attempt_landed_succeeds() {
        let (_tmp, clock, writer) = vault();
        let store = LostReply { inner: writer, lost: AtomicBool::new(false) };
        let v = put_once(&store, "snapshots/s", b"snapshot", gov(clock.now(), 24)).unwrap();
        assert_eq!(versions(&store, "snapshots/s"), [v], "one version, the one that landed");
    }

    fn on_s3(kind: ServerKind) {
        let server = S3Server::start(kind);
        let bucket = server.new_bucket("put-once");
        let writer = server.store(&bucket, "repo/", Role::Writer);
        put_once_behaves(&writer, Clock::system().now());
        let store = LostReply { inner: writer, lost: AtomicBool::new(false) };
        let v = put_once(&store, "snapshots/s", b"snapshot", gov(Clock::system().now(), 24)).unwrap();
        assert_eq!(versions(&store, "snapshots/s"), [v], "one version, the one that landed");
    }

    #[test]
    fn put_once_on_localstack() {
        on_s3(ServerKind::LocalStack);
    }

    #[test]
    fn put_once_on_moto() {
        on_s3(ServerKind::Moto);
    }
}
