//! The immutability canary's requests: what a store must refuse, sent so that *the store
//! itself* decides ([`crate::ObjectStore::probe`]).
//!
//! Why a separate path: `S3Store` checks every request itself before sending it (the role,
//! the lock rules), so a probe made through its contract methods is refused by Coffer's own
//! client and proves nothing about the server — while an attacker with a stolen key uses
//! any S3 client. A probe therefore reaches the server as it is, and only the server's
//! answer counts. The local vault's contract methods *are* its enforcement, so for it a
//! probe is the contract call itself (the default).
//!
//! Invariants guarded here: a probe of an object only ever names a key under
//! [`RESERVED_PREFIX`] (the canary's own objects), checked before anything is sent, so no
//! misuse of this path can touch a repository object; the bucket-level probes (suspend
//! versioning, disable Object Lock) are sent as they are, and the caller (the canary)
//! restores the setting at once if a store accepted one.

use crate::error::{Result, StoreError};
use crate::model::{LockConfig, Retention, VersionId, Versioning};
use crate::role::Action;
use crate::store::ObjectStore;

/// The key prefix reserved for Coffer's own security objects (the canary, the drift
/// baseline): the only keys an object probe may name. Repositories never write under it.
pub const RESERVED_PREFIX: &str = "coffer-security/";

/// One request the canary sends to see whether the store refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeRequest {
    /// Remove one version (with or without the governance-bypass header).
    DeleteVersion {
        /// The key (under [`RESERVED_PREFIX`]).
        key: String,
        /// The version.
        version: VersionId,
        /// Ask for the governance bypass.
        bypass_governance: bool,
    },
    /// Replace a version's retention (`None`: remove it).
    PutRetention {
        /// The key (under [`RESERVED_PREFIX`]).
        key: String,
        /// The version.
        version: VersionId,
        /// The new retention.
        retention: Option<Retention>,
        /// Ask for the governance bypass.
        bypass_governance: bool,
    },
    /// Turn a version's legal hold off.
    LegalHoldOff {
        /// The key (under [`RESERVED_PREFIX`]).
        key: String,
        /// The version.
        version: VersionId,
    },
    /// Set the versioning status.
    PutVersioning(Versioning),
    /// Replace the Object Lock configuration (`enabled: false` asks to disable it).
    PutLockConfig(LockConfig),
}

impl ProbeRequest {
    /// The action as the access matrix and the vault's audit log name it.
    #[must_use]
    pub fn action(&self) -> Action {
        match self {
            Self::DeleteVersion { .. } => Action::DeleteVersion,
            Self::PutRetention { .. } => Action::PutRetention,
            Self::LegalHoldOff { .. } => Action::LegalHoldOff,
            Self::PutVersioning(_) => Action::PutVersioning,
            Self::PutLockConfig(_) => Action::PutLockConfig,
        }
    }

    /// The key an object probe names; none for a bucket-level probe.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::DeleteVersion { key, .. } | Self::PutRetention { key, .. } | Self::LegalHoldOff { key, .. } => {
                Some(key)
            }
            Self::PutVersioning(_) | Self::PutLockConfig(_) => None,
        }
    }

    /// Refuses an object probe outside [`RESERVED_PREFIX`].
    ///
    /// # Errors
    /// `InvalidRequest`.
    pub fn check_reserved(&self) -> Result<()> {
        check_reserved_key(self.key())
    }
}

/// Refuses a key outside [`RESERVED_PREFIX`] (none: a bucket-level probe, accepted).
///
/// # Errors
/// `InvalidRequest`.
pub fn check_reserved_key(key: Option<&str>) -> Result<()> {
    match key {
        Some(k) if !k.starts_with(RESERVED_PREFIX) => {
            Err(StoreError::invalid(format!("a canary probe may only name keys under {RESERVED_PREFIX}, not {k:?}")))
        }
        _ => Ok(()),
    }
}

/// A probe through the contract's own methods: the default of [`ObjectStore::probe`], for
/// stores whose methods are their enforcement (the local vault).
///
/// # Errors
/// What the store answers.
pub fn through_contract<S: ObjectStore + ?Sized>(store: &S, request: &ProbeRequest) -> Result<()> {
    request.check_reserved()?;
    match request {
        ProbeRequest::DeleteVersion { key, version, bypass_governance } => {
            store.delete_version(key, version, *bypass_governance)
        }
        ProbeRequest::PutRetention { key, version, retention, bypass_governance } => {
            store.put_retention(key, version, *retention, *bypass_governance)
        }
        ProbeRequest::LegalHoldOff { key, version } => store.put_legal_hold(key, version, false),
        ProbeRequest::PutVersioning(status) => store.put_versioning(*status),
        ProbeRequest::PutLockConfig(config) => store.put_lock_config(config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_probes_only_name_reserved_keys() {
        let p = |key: &str| ProbeRequest::LegalHoldOff { key: key.into(), version: "v".into() };
        assert!(p("coffer-security/canary/x").check_reserved().is_ok());
        for bad in ["snapshots/x", "x/coffer-security/canary", "coffer-securityx", ""] {
            assert_eq!(p(bad).check_reserved().unwrap_err().kind(), crate::ErrorKind::InvalidRequest, "{bad}");
        }
        assert!(ProbeRequest::PutVersioning(Versioning::Suspended).check_reserved().is_ok());
        assert_eq!(ProbeRequest::PutVersioning(Versioning::Suspended).action(), Action::PutVersioning);
    }
}
