//! The access matrix: every [`Action`] as every [`Role`], held against both [`Role::allows`]
//! and the hand-written table `crate::model::PERMISSIONS`.
//!
//! Invariant guarded here: a role may do exactly what the permission table says.

use super::*;

/// Performs `action` as `role` on a fresh key set up so that the request succeeds unless
/// the role is refused. `None` when the harness cannot perform it (no audit log).
pub(super) fn attempt(c: &Ctx<'_>, role: Role, action: Action) -> Option<coffer_store::Result<()>> {
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
pub(super) fn audited_as(action: Action) -> Option<&'static str> {
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
