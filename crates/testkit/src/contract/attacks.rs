//! The attack matrix: every destructive or weakening request as every role, demanding the
//! exact refusal, an intact protected version afterwards, and a `denied` audit entry.
//!
//! Invariant guarded here: no role can remove or weaken an active lock.

use super::*;

/// What protects the target of an attack.
#[derive(Clone, Copy, Debug)]
pub(super) enum Guard {
    Compliance,
    Governance,
    LegalHold,
}

/// What an attack must end in for one role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
    /// Refused with this kind.
    Refused(ErrorKind),
    /// Allowed but harmless (overwrite and delete markers add versions, remove nothing).
    Harmless,
    /// Not an attack for this role: it holds the permission (e.g. the admin's bypass).
    Legitimate,
}

pub(super) struct Target {
    pub(super) key: String,
    pub(super) version: VersionId,
    pub(super) data: Vec<u8>,
    pub(super) retention: Option<Retention>,
    pub(super) legal_hold: bool,
}

pub(super) type AttackFn = fn(&dyn ObjectStore, &Target) -> coffer_store::Result<()>;

pub(super) struct Attack {
    pub(super) name: &'static str,
    pub(super) guard: Guard,
    /// The action the audit log records.
    pub(super) audit_action: &'static str,
    /// Whether the audit entry names the key (config requests name none).
    pub(super) names_key: bool,
    pub(super) expect: fn(Role) -> Expect,
    pub(super) run: AttackFn,
}

pub(super) fn until_of(t: &Target) -> Timestamp {
    t.retention.expect("the target has a retention").until
}

pub(super) fn shift(t: Timestamp, secs: i64) -> Timestamp {
    t + SignedDuration::from_secs(secs)
}

use Expect::{Harmless, Legitimate, Refused};
pub(super) const FORBIDDEN: Expect = Refused(ErrorKind::Forbidden);
pub(super) const LOCKED: Expect = Refused(ErrorKind::Locked);
pub(super) const INVALID: Expect = Refused(ErrorKind::InvalidRequest);

/// Every destructive or weakening request, and what each role must get. Written out per
/// role by hand, not derived from [`Role::allows`].
pub(super) const ATTACKS: &[Attack] = &[
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
