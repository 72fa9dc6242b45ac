//! A small in-memory model of the `ObjectStore` contract, for property tests.
//!
//! This is the contract's semantics written a second time, as plainly as possible and
//! independently of any implementation: a map from key to its versions, oldest first, a
//! clock in whole seconds and a hand-written access matrix ([`PERMISSIONS`]). A property
//! test applies the same random operations to a real store and to the model and demands
//! the same answers: the same success or [`ErrorKind`], and for reads the same data and
//! version sets.
//!
//! Versions are named by [`ModelId`]s, small numbers handed out in creation order; mapping
//! them to a store's opaque [`coffer_store::VersionId`]s is the property test's job.
//!
//! Where a request could fail for several reasons, the model answers with the first of:
//! forbidden by role → invalid key → not found → invalid request (a delete marker, a date
//! in the past) → locked → forbidden because the role may not bypass governance.

use coffer_store::{Action, ErrorKind, RetentionMode, Role, Versioning};
use std::collections::BTreeMap;

/// The access matrix as the issue states it (delete markers: the admin's, not the
/// writer's, since the least-privilege change), written out by hand (not derived from
/// [`Role::allows`]), so that a change to the store's matrix is caught by the tests.
pub const PERMISSIONS: [(Role, &[Action]); 5] = [
    (
        Role::Writer,
        &[
            Action::Put,
            Action::Get,
            Action::Head,
            Action::List,
            Action::ListVersions,
            Action::PutRetention,
            Action::LegalHoldOn,
            Action::GetLockConfig,
            Action::GetVersioning,
        ],
    ),
    (
        Role::Reader,
        &[Action::Get, Action::Head, Action::List, Action::ListVersions, Action::GetLockConfig, Action::GetVersioning],
    ),
    (
        Role::Pruner,
        &[
            Action::Head,
            Action::List,
            Action::ListVersions,
            Action::DeleteVersion,
            Action::GetLockConfig,
            Action::GetVersioning,
        ],
    ),
    (
        Role::Admin,
        &[
            Action::Head,
            Action::List,
            Action::ListVersions,
            Action::Delete,
            Action::PutRetention,
            Action::BypassGovernance,
            Action::LegalHoldOn,
            Action::LegalHoldOff,
            Action::GetLockConfig,
            Action::PutLockConfig,
            Action::GetVersioning,
            Action::PutVersioning,
            Action::ReadAuditLog,
        ],
    ),
    (
        Role::Auditor,
        &[
            Action::Head,
            Action::List,
            Action::ListVersions,
            Action::GetLockConfig,
            Action::GetVersioning,
            Action::ReadAuditLog,
        ],
    ),
];

/// Whether [`PERMISSIONS`] lets `role` perform `action`.
#[must_use]
pub fn permits(role: Role, action: Action) -> bool {
    PERMISSIONS.iter().any(|(r, actions)| *r == role && actions.contains(&action))
}

/// A model version's name: creation order, from 1.
pub type ModelId = u64;

/// A model answer: a value, or the kind of error the contract demands.
pub type Answer<T> = Result<T, ErrorKind>;

/// A retention in whole seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelRetention {
    /// Mode.
    pub mode: RetentionMode,
    /// Retain-until, seconds since the epoch (exclusive).
    pub until: i64,
}

/// What a read reports about one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelMeta {
    /// Key.
    pub key: String,
    /// Version.
    pub id: ModelId,
    /// Whether it is a delete marker.
    pub delete_marker: bool,
    /// Whether it is the newest version of its key.
    pub is_latest: bool,
    /// Size of the data (0 for a marker).
    pub size: u64,
    /// Retention, if any was set (it may have ended).
    pub retention: Option<ModelRetention>,
    /// Legal hold.
    pub legal_hold: bool,
}

#[derive(Clone, Debug)]
struct Version {
    id: ModelId,
    /// `None` for a delete marker.
    data: Option<Vec<u8>>,
    retention: Option<ModelRetention>,
    legal_hold: bool,
}

/// The model store.
#[derive(Clone, Debug)]
pub struct Model {
    now: i64,
    default_retention: Option<(RetentionMode, i64)>,
    /// Versions of each key, oldest first. A key with no versions has no entry.
    keys: BTreeMap<String, Vec<Version>>,
    last_id: ModelId,
}

fn allow(role: Role, action: Action) -> Answer<()> {
    if permits(role, action) { Ok(()) } else { Err(ErrorKind::Forbidden) }
}

fn valid_key(key: &str) -> Answer<()> {
    if key.is_empty() || key.len() > 1024 || key.contains('\0') { Err(ErrorKind::InvalidRequest) } else { Ok(()) }
}

impl Model {
    /// An empty store with lock and versioning enabled, no default retention, at `now`
    /// (seconds since the epoch).
    #[must_use]
    pub fn new(now: i64) -> Self {
        Self { now, default_retention: None, keys: BTreeMap::new(), last_id: 0 }
    }

    /// The model's clock, in seconds since the epoch.
    #[must_use]
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, secs: i64) {
        self.now += secs;
    }

    fn protected(&self, r: Option<ModelRetention>) -> Option<ModelRetention> {
        r.filter(|r| r.until > self.now)
    }

    fn version(&self, key: &str, id: ModelId) -> Answer<&Version> {
        self.keys.get(key).and_then(|vs| vs.iter().find(|v| v.id == id)).ok_or(ErrorKind::NotFound)
    }

    fn version_mut(&mut self, key: &str, id: ModelId) -> Answer<&mut Version> {
        self.keys.get_mut(key).and_then(|vs| vs.iter_mut().find(|v| v.id == id)).ok_or(ErrorKind::NotFound)
    }

    /// The version a read names: the given one, or the latest unless it is a marker.
    fn target(&self, key: &str, id: Option<ModelId>) -> Answer<&Version> {
        match id {
            Some(id) => self.version(key, id),
            None => match self.keys.get(key).and_then(|vs| vs.last()) {
                Some(v) if v.data.is_some() => Ok(v),
                _ => Err(ErrorKind::NotFound),
            },
        }
    }

    fn meta(&self, key: &str, v: &Version) -> ModelMeta {
        let latest = self.keys.get(key).and_then(|vs| vs.last()).map(|l| l.id);
        ModelMeta {
            key: key.to_owned(),
            id: v.id,
            delete_marker: v.data.is_none(),
            is_latest: latest == Some(v.id),
            size: v.data.as_ref().map_or(0, |d| d.len() as u64),
            retention: v.retention,
            legal_hold: v.legal_hold,
        }
    }

    fn add(
        &mut self,
        key: &str,
        data: Option<Vec<u8>>,
        retention: Option<ModelRetention>,
        legal_hold: bool,
    ) -> ModelId {
        self.last_id += 1;
        let id = self.last_id;
        self.keys.entry(key.to_owned()).or_default().push(Version { id, data, retention, legal_hold });
        id
    }

    /// Stores a new version. `retention` is `(mode, until)`; `None` applies the default.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn put(
        &mut self,
        role: Role,
        key: &str,
        data: &[u8],
        retention: Option<(RetentionMode, i64)>,
        legal_hold: bool,
    ) -> Answer<ModelId> {
        allow(role, Action::Put)?;
        if legal_hold {
            allow(role, Action::LegalHoldOn)?;
        }
        valid_key(key)?;
        let retention = match retention {
            Some((_, until)) if until <= self.now => return Err(ErrorKind::InvalidRequest),
            Some((mode, until)) => Some(ModelRetention { mode, until }),
            None => self.default_retention.map(|(mode, period)| ModelRetention { mode, until: self.now + period }),
        };
        Ok(self.add(key, Some(data.to_vec()), retention, legal_hold))
    }

    /// Adds a delete marker.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn delete(&mut self, role: Role, key: &str) -> Answer<ModelId> {
        allow(role, Action::Delete)?;
        valid_key(key)?;
        Ok(self.add(key, None, None, false))
    }

    /// Reads data: the latest version, or the given one.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn get(&self, role: Role, key: &str, id: Option<ModelId>) -> Answer<(ModelId, Vec<u8>)> {
        allow(role, Action::Get)?;
        let v = self.target(key, id)?;
        let data = v.data.clone().ok_or(ErrorKind::InvalidRequest)?;
        Ok((v.id, data))
    }

    /// Reads metadata: the latest version, or the given one (markers included).
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn head(&self, role: Role, key: &str, id: Option<ModelId>) -> Answer<ModelMeta> {
        allow(role, Action::Head)?;
        let v = self.target(key, id)?;
        Ok(self.meta(key, v))
    }

    /// Keys under `prefix` whose latest version is an object, with that version, sorted.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn list(&self, role: Role, prefix: &str) -> Answer<Vec<(String, ModelId)>> {
        allow(role, Action::List)?;
        let mut out = Vec::new();
        for (key, versions) in &self.keys {
            if let Some(latest) = versions.last() {
                if key.starts_with(prefix) && latest.data.is_some() {
                    out.push((key.clone(), latest.id));
                }
            }
        }
        Ok(out)
    }

    /// Every version and marker under `prefix`, by key, newest first.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn list_versions(&self, role: Role, prefix: &str) -> Answer<Vec<ModelMeta>> {
        allow(role, Action::ListVersions)?;
        let mut out = Vec::new();
        for (key, versions) in &self.keys {
            if key.starts_with(prefix) {
                for v in versions.iter().rev() {
                    out.push(self.meta(key, v));
                }
            }
        }
        Ok(out)
    }

    /// Removes one version for good.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn delete_version(&mut self, role: Role, key: &str, id: ModelId, bypass: bool) -> Answer<()> {
        allow(role, Action::DeleteVersion)?;
        let v = self.version(key, id)?;
        if v.legal_hold {
            return Err(ErrorKind::Locked);
        }
        if let Some(r) = self.protected(v.retention) {
            if r.mode == RetentionMode::Compliance || !bypass {
                return Err(ErrorKind::Locked);
            }
            allow(role, Action::BypassGovernance)?;
        }
        let versions = self.keys.get_mut(key).expect("found above");
        versions.retain(|v| v.id != id);
        if versions.is_empty() {
            self.keys.remove(key);
        }
        Ok(())
    }

    /// Sets, extends, shortens or removes a retention.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn put_retention(
        &mut self,
        role: Role,
        key: &str,
        id: ModelId,
        retention: Option<(RetentionMode, i64)>,
        bypass: bool,
    ) -> Answer<()> {
        allow(role, Action::PutRetention)?;
        let v = self.version(key, id)?;
        if v.data.is_none() {
            return Err(ErrorKind::InvalidRequest);
        }
        let new = retention.map(|(mode, until)| ModelRetention { mode, until });
        if new.is_some_and(|n| n.until <= self.now) {
            return Err(ErrorKind::InvalidRequest);
        }
        if let Some(cur) = self.protected(v.retention) {
            let weaker = match new {
                None => true,
                Some(n) => {
                    n.until < cur.until
                        || (cur.mode == RetentionMode::Compliance && n.mode == RetentionMode::Governance)
                }
            };
            if weaker {
                if cur.mode == RetentionMode::Compliance || !bypass {
                    return Err(ErrorKind::Locked);
                }
                allow(role, Action::BypassGovernance)?;
            }
        }
        self.version_mut(key, id)?.retention = new;
        Ok(())
    }

    /// Turns a legal hold on or off.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn put_legal_hold(&mut self, role: Role, key: &str, id: ModelId, on: bool) -> Answer<()> {
        allow(role, if on { Action::LegalHoldOn } else { Action::LegalHoldOff })?;
        let v = self.version_mut(key, id)?;
        if v.data.is_none() {
            return Err(ErrorKind::InvalidRequest);
        }
        v.legal_hold = on;
        Ok(())
    }

    /// The lock configuration: always enabled, and the default retention `(mode, seconds)`.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn lock_config(&self, role: Role) -> Answer<(bool, Option<(RetentionMode, i64)>)> {
        allow(role, Action::GetLockConfig)?;
        Ok((true, self.default_retention))
    }

    /// Replaces the lock configuration.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn put_lock_config(&mut self, role: Role, enabled: bool, default: Option<(RetentionMode, i64)>) -> Answer<()> {
        allow(role, Action::PutLockConfig)?;
        if !enabled || default.is_some_and(|(_, secs)| secs < 1) {
            return Err(ErrorKind::InvalidRequest);
        }
        self.default_retention = default;
        Ok(())
    }

    /// The versioning status: always enabled.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn versioning(&self, role: Role) -> Answer<Versioning> {
        allow(role, Action::GetVersioning)?;
        Ok(Versioning::Enabled)
    }

    /// Sets the versioning status; suspending is never allowed.
    ///
    /// # Errors
    /// The contract's error kinds.
    pub fn put_versioning(&mut self, role: Role, status: Versioning) -> Answer<()> {
        allow(role, Action::PutVersioning)?;
        match status {
            Versioning::Enabled => Ok(()),
            Versioning::Suspended => Err(ErrorKind::InvalidRequest),
        }
    }
}
