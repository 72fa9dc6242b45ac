//! Checks on delete markers and refusals before any effect: a delete adds a marker and
//! removes nothing, missing keys and versions are `NotFound`, invalid keys are rejected, and
//! the role is checked before anything else.

use super::*;

/// `delete` adds a delete marker and removes nothing: the key reads as not found, every
/// version stays readable by id, `list` hides the key, `list_versions` shows the marker.
pub fn delete_adds_a_marker_and_removes_nothing(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "delete_adds_a_marker_and_removes_nothing");
    let k = c.key("k");
    let v1 = c.put("k", b"one");
    let v2 = c.put_locked("k", b"two", RetentionMode::Compliance, HOUR);
    let other = c.put("other", b"stays");
    let m = ok(c.admin().delete(&k), "delete");
    assert_eq!(m.key, k);
    assert!(m.delete_marker && m.is_latest, "delete returns the marker, now the latest: {m:?}");
    assert!(m.version != v1.version && m.version != v2.version, "the marker is a new version");
    assert_eq!((m.size, m.retention, m.legal_hold), (0, None, false), "a marker has no data, retention or hold");

    expect_not_found(c.reader().get(&k, None), &k, None, "get latest behind a marker");
    expect_not_found(c.auditor().head(&k, None), &k, None, "head latest behind a marker");
    c.assert_data(&k, &v1.version, b"one");
    c.assert_data(&k, &v2.version, b"two");
    let hm = ok(c.auditor().head(&k, Some(&m.version)), "head the marker by version");
    assert!(hm.delete_marker && hm.is_latest && hm.size == 0, "head of the marker: {hm:?}");
    assert!(!ok(c.auditor().head(&k, Some(&v2.version)), "head v2").is_latest);

    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*c.key("other"), &other.version)], "list hides a deleted key");
    let versions = ok(c.auditor().list_versions(&k, None, 10), "list versions");
    let shape: Vec<(&VersionId, bool, bool)> =
        versions.items.iter().map(|v| (&v.version, v.delete_marker, v.is_latest)).collect();
    assert_eq!(shape, vec![(&m.version, true, true), (&v2.version, false, false), (&v1.version, false, false)]);

    // A second delete adds a second marker; a put makes the key visible again.
    let m2 = ok(c.admin().delete(&k), "delete again");
    assert!(m2.delete_marker && m2.version != m.version);
    let v3 = c.put("k", b"three");
    let versions = ok(c.auditor().list_versions(&k, None, 10), "list versions");
    let markers: Vec<bool> = versions.items.iter().map(|v| v.delete_marker).collect();
    assert_eq!(markers, [false, true, true, false, false]);
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*k, &v3.version), (&*c.key("other"), &other.version)]);
    assert_eq!(ok(c.reader().get(&k, None), "get latest").data, b"three");
}

/// A delete marker has no data, retention or legal hold: asking for them is invalid.
pub fn delete_marker_has_no_data(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "delete_marker_has_no_data");
    let k = c.key("k");
    c.put("k", b"data");
    let m = ok(c.admin().delete(&k), "delete");
    expect_err(c.writer().get(&k, Some(&m.version)), ErrorKind::InvalidRequest, "get a marker by version");
    expect_err(c.reader().get(&k, Some(&m.version)), ErrorKind::InvalidRequest, "get a marker by version");
    expect_err(
        c.writer().put_retention(&k, &m.version, Some(ret(RetentionMode::Governance, c.at(HOUR))), false),
        ErrorKind::InvalidRequest,
        "retention on a marker",
    );
    expect_err(c.writer().put_legal_hold(&k, &m.version, true), ErrorKind::InvalidRequest, "legal hold on a marker");
    expect_err(c.admin().put_legal_hold(&k, &m.version, false), ErrorKind::InvalidRequest, "legal hold off a marker");
}

/// Removing the marker (the pruner may: a marker holds no data and no lock) makes the
/// previous version the latest again.
pub fn deleting_a_marker_uncovers_the_previous_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "deleting_a_marker_uncovers_the_previous_version");
    let k = c.key("k");
    let v = c.put_locked("k", b"kept", RetentionMode::Compliance, HOUR);
    let m = ok(c.admin().delete(&k), "delete");
    ok(c.pruner().delete_version(&k, &m.version, false), "pruner removes the marker");
    let o = ok(c.reader().get(&k, None), "get latest");
    assert_eq!((o.data.as_slice(), &o.meta.version, o.meta.is_latest), (&b"kept"[..], &v.version, true));
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*k, &v.version)]);
    let versions = ok(c.auditor().list_versions(&c.prefix, None, 10), "list versions");
    assert_eq!(ids_of(&versions.items), vec![(&*k, &v.version)]);
}

/// Absent keys, versions of another key and removed versions are `NotFound`, naming both.
pub fn missing_keys_and_versions_are_not_found(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "missing_keys_and_versions_are_not_found");
    let missing = c.key("missing");
    let a = c.key("a");
    let b = c.key("b");
    let va = c.put("a", b"a");
    c.put("b", b"b");
    expect_not_found(c.reader().get(&missing, None), &missing, None, "get an absent key");
    expect_not_found(c.auditor().head(&missing, None), &missing, None, "head an absent key");
    let foreign = Some(&va.version);
    expect_not_found(c.reader().get(&b, foreign), &b, foreign, "get another key's version");
    expect_not_found(c.auditor().head(&b, foreign), &b, foreign, "head another key's version");
    expect_not_found(c.pruner().delete_version(&b, &va.version, false), &b, foreign, "delete another key's version");
    expect_not_found(
        c.writer().put_retention(&b, &va.version, Some(ret(RetentionMode::Governance, c.at(HOUR))), false),
        &b,
        foreign,
        "retention of another key's version",
    );
    expect_not_found(c.writer().put_legal_hold(&b, &va.version, true), &b, foreign, "hold another key's version");
    expect_not_found(c.pruner().delete_version(&missing, &va.version, false), &missing, foreign, "delete, no key");

    ok(c.pruner().delete_version(&a, &va.version, false), "remove a's only version");
    expect_not_found(c.reader().get(&a, None), &a, None, "get a key with no versions left");
    expect_not_found(c.reader().get(&a, foreign), &a, foreign, "get a removed version");
    expect_not_found(c.auditor().head(&a, foreign), &a, foreign, "head a removed version");
    expect_not_found(c.pruner().delete_version(&a, &va.version, false), &a, foreign, "remove a removed version");
    let versions = ok(c.auditor().list_versions(&a, None, 10), "list versions");
    assert!(versions.items.is_empty(), "a removed version is not listed: {:?}", versions.items);
}

/// Keys must be non-empty, at most 1024 bytes and free of NUL; writes of others are invalid.
pub fn invalid_keys_are_rejected(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "invalid_keys_are_rejected");
    let w = c.writer();
    let opts = PutOptions::default();
    expect_err(w.put("", b"x", &opts), ErrorKind::InvalidRequest, "put an empty key");
    expect_err(w.put(&c.key("nul\0byte"), b"x", &opts), ErrorKind::InvalidRequest, "put a key with NUL");
    let long = format!("{}{}", c.prefix, "x".repeat(1025 - c.prefix.len()));
    assert_eq!(long.len(), 1025);
    expect_err(w.put(&long, b"x", &opts), ErrorKind::InvalidRequest, "put a 1025-byte key");
    expect_err(c.admin().delete(""), ErrorKind::InvalidRequest, "delete an empty key");
    expect_err(c.admin().delete(&long), ErrorKind::InvalidRequest, "delete a 1025-byte key");
    let longest = &long[..1024];
    let v = ok(w.put(longest, b"x", &opts), "put a 1024-byte key");
    c.assert_data(longest, &v.version, b"x");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(keys_of(&listed.items), vec![longest], "no invalid key was stored");
}

/// A role is refused before the request is looked at: a missing key, an invalid key or a
/// locked version reveal nothing to a role that may not make the request at all.
pub fn role_is_checked_before_anything_else(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "role_is_checked_before_anything_else");
    let missing = c.key("missing");
    let k = c.key("k");
    let v = c.put_locked("k", b"x", RetentionMode::Compliance, HOUR);
    let m = ok(c.admin().delete(&k), "delete");
    let bogus = v.version.clone();
    let gov = Some(ret(RetentionMode::Governance, c.at(-HOUR)));
    use Action as A;
    use Role as R;
    let opts = PutOptions::default();
    expect_forbidden(c.reader().put("", b"x", &opts), R::Reader, A::Put, "reader puts an empty key");
    expect_forbidden(c.auditor().put(&k, b"x", &opts), R::Auditor, A::Put, "auditor puts");
    expect_forbidden(c.reader().delete(""), R::Reader, A::Delete, "reader deletes an empty key");
    expect_forbidden(c.pruner().delete(&missing), R::Pruner, A::Delete, "pruner deletes an absent key");
    expect_forbidden(c.writer().delete(&missing), R::Writer, A::Delete, "writer hides an absent key");
    expect_forbidden(c.writer().delete(&k), R::Writer, A::Delete, "writer hides a hidden key");
    expect_forbidden(c.auditor().get(&missing, None), R::Auditor, A::Get, "auditor gets an absent key");
    expect_forbidden(c.pruner().get(&k, Some(&m.version)), R::Pruner, A::Get, "pruner gets a marker");
    expect_forbidden(c.admin().get(&k, Some(&v.version)), R::Admin, A::Get, "admin gets data");
    expect_forbidden(c.writer().delete_version(&missing, &bogus, false), R::Writer, A::DeleteVersion, "absent key");
    expect_forbidden(c.admin().delete_version(&k, &v.version, true), R::Admin, A::DeleteVersion, "locked version");
    expect_forbidden(c.reader().put_retention(&missing, &bogus, gov, true), R::Reader, A::PutRetention, "absent");
    expect_forbidden(c.pruner().put_retention(&k, &m.version, None, true), R::Pruner, A::PutRetention, "marker");
    expect_forbidden(c.reader().put_legal_hold(&missing, &bogus, true), R::Reader, A::LegalHoldOn, "absent key");
    expect_forbidden(c.writer().put_legal_hold(&k, &m.version, false), R::Writer, A::LegalHoldOff, "marker");
    let disabled = LockConfig { enabled: false, default_retention: None };
    expect_forbidden(c.pruner().put_lock_config(&disabled), R::Pruner, A::PutLockConfig, "pruner disables lock");
    expect_forbidden(c.writer().put_versioning(Versioning::Suspended), R::Writer, A::PutVersioning, "suspend");
    expect_forbidden(c.auditor().put_versioning(Versioning::Enabled), R::Auditor, A::PutVersioning, "enable");
    c.assert_data(&k, &v.version, b"x");
}
