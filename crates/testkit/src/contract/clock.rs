//! Checks that move the clock (`needs_clock`): a retention ends exactly at its retain-until
//! date, a legal hold outlasts it, an expired retention may be changed freely, and a default
//! retention counts from the put.

use super::*;

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
