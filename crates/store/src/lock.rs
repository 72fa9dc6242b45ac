//! The Object Lock rules, in one place: when a version may be removed, and when a
//! retention change weakens a lock.
//!
//! Invariant guarded: a compliance lock is never shortened, removed or downgraded, and a
//! governance lock only with bypass by a role allowed to bypass. Every implementation
//! (the local vault inside its write transaction, `S3Store` before it asks the server)
//! decides with these functions, so the rules cannot drift apart; the contract suite
//! checks the outcome against an independent model.

use crate::error::{Result, StoreError};
use crate::model::{ObjectVersion, Retention, RetentionMode};
use crate::role::{Action, Principal};
use jiff::Timestamp;

/// Whether replacing the version's retention by `new` at `now` weakens an active lock:
/// removing it, moving its date earlier, or turning compliance into governance.
#[must_use]
pub fn weakens(current: Option<Retention>, new: Option<Retention>, now: Timestamp) -> bool {
    current.filter(|c| c.active_at(now)).is_some_and(|c| match new {
        None => true,
        Some(n) => n.until < c.until || (c.mode == RetentionMode::Compliance && n.mode != RetentionMode::Compliance),
    })
}

fn locked(v: &ObjectVersion, now: Timestamp) -> StoreError {
    let active = v.retention.filter(|r| r.active_at(now));
    StoreError::Locked {
        key: v.key.clone(),
        version: v.version.clone(),
        mode: active.map(|r| r.mode),
        until: active.map(|r| r.until),
        legal_hold: v.legal_hold,
    }
}

/// Checks a request that would weaken `v`'s lock (`weakening`), or remove `v` outright
/// (`removing`). Returns whether the governance bypass is used.
///
/// # Errors
/// `Locked` under a legal hold (removal only), an active compliance lock, or an active
/// governance lock without `bypass`; `Forbidden` when `bypass` is asked by a role that may
/// not bypass governance.
pub fn guard(
    principal: &Principal,
    v: &ObjectVersion,
    removing: bool,
    weakening: bool,
    bypass: bool,
    now: Timestamp,
) -> Result<bool> {
    if removing && v.legal_hold {
        return Err(locked(v, now));
    }
    let Some(r) = v.retention.filter(|r| r.active_at(now)) else { return Ok(false) };
    if !(removing || weakening) {
        return Ok(false);
    }
    match r.mode {
        RetentionMode::Compliance => Err(locked(v, now)),
        RetentionMode::Governance if !bypass => Err(locked(v, now)),
        RetentionMode::Governance => principal.authorize(Action::BypassGovernance).map(|()| true),
    }
}
