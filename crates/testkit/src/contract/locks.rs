//! Checks on locks: `delete_version` refused under compliance, governance and legal hold;
//! `put_retention` only extends compliance and needs bypass (and the admin) to weaken
//! governance; legal holds; a lock configuration that cannot be disabled; versioning that
//! cannot be suspended.

use super::*;

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
