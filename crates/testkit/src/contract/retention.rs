//! Checks on retention at put time: the bucket's default applies when none is given, a
//! retain-until date in the past is refused, dates keep whole seconds.

use super::*;

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
