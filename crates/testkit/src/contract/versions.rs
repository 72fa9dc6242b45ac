//! Checks on versions, get and head: every put makes a new version, older versions stay
//! intact and readable by id, ranges, checksums and sizes are what was stored.

use super::*;

/// Every put makes a new version, newer than the others, even with identical bytes.
pub fn put_always_creates_a_new_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "put_always_creates_a_new_version");
    let k = c.key("obj");
    let v1 = c.put("obj", b"same bytes");
    let v2 = c.put("obj", b"same bytes");
    let v3 = c.put("obj", b"other bytes");
    assert!(v1.version != v2.version && v2.version != v3.version && v1.version != v3.version, "distinct ids");
    let versions = ok(c.writer().list_versions(&k, None, 100), "list versions");
    assert_eq!(ids_of(&versions.items), vec![(&*k, &v3.version), (&*k, &v2.version), (&*k, &v1.version)]);
    let latest: Vec<bool> = versions.items.iter().map(|v| v.is_latest).collect();
    assert_eq!(latest, [true, false, false], "only the newest version is the latest");
    assert!(versions.items.iter().all(|v| !v.delete_marker));
    assert!(v1.created <= v2.created && v2.created <= v3.created, "creation times do not go back");
    let latest = ok(c.reader().get(&k, None), "get latest");
    assert_eq!((latest.data.as_slice(), &latest.meta.version), (&b"other bytes"[..], &v3.version));
}

/// A create-only put (`PutOptions::create_only`, S3's `If-None-Match: *`) creates a key
/// that does not exist and refuses one whose latest version is an object with `Exists`,
/// adding no version and changing nothing (the refusal is audited as denied); over a delete
/// marker it creates the key again (AWS's semantics: the condition is on the current
/// version). The role is still checked first, and the lock of the new version is applied.
pub fn create_only_put_refuses_an_existing_key(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "create_only_put_refuses_an_existing_key");
    let k = c.key("once");
    let once = |retention| PutOptions { retention, legal_hold: false, create_only: true };
    let r = ret(RetentionMode::Governance, c.at(HOUR));
    let v1 = c.put_opts("once", b"first", once(Some(r)));
    assert_eq!(v1.retention, Some(r), "a create-only put is locked as asked");
    let mark = c.audit_mark();
    for data in [&b"first"[..], b"second"] {
        match expect_err(c.writer().put(&k, data, &once(None)), ErrorKind::Exists, "create-only put of an existing key")
        {
            StoreError::Exists { key, version } => {
                assert_eq!(key, k, "Exists names the key");
                if let Some(v) = version {
                    assert_eq!(v, v1.version, "Exists names the latest version, if any");
                }
            }
            other => panic!("expected Exists, got {other:?}"),
        }
    }
    let versions = ok(c.reader().list_versions(&k, None, 100), "list versions");
    assert_eq!(ids_of(&versions.items), vec![(&*k, &v1.version)], "a refused create-only put adds no version");
    c.assert_data(&k, &v1.version, b"first");
    // The role comes first: a role that may not put is Forbidden, whether or not the key exists.
    expect_forbidden(c.reader().put(&k, b"x", &once(None)), Role::Reader, Action::Put, "reader, existing key");
    expect_forbidden(c.auditor().put(&c.key("new"), b"x", &once(None)), Role::Auditor, Action::Put, "auditor, new key");
    if let Some(entries) = c.audit_after(mark) {
        let denied = entries
            .iter()
            .filter(|e| e.action == "put" && e.key.as_deref() == Some(k.as_str()) && e.role == "writer")
            .filter(|e| e.outcome == "denied" && !e.reason.is_empty())
            .count();
        assert_eq!(denied, 2, "each refused create-only put is audited as denied: {entries:?}");
    }
    // Over a delete marker (the admin's), the key is created again.
    let m = ok(c.admin().delete(&k), "hide the key");
    let v2 = c.put_opts("once", b"again", once(None));
    // (Order-independent: S3 servers list a marker and versions of one second out of order.)
    let versions = ok(c.reader().list_versions(&k, None, 100), "list versions");
    let mut got: Vec<&VersionId> = versions.items.iter().map(|v| &v.version).collect();
    let mut want = vec![&v1.version, &m.version, &v2.version];
    got.sort();
    want.sort();
    assert_eq!(got, want, "created over the marker; nothing removed");
    let latest = ok(c.reader().get(&k, None), "get the key created again");
    assert_eq!(
        (latest.meta.version, latest.data),
        (v2.version.clone(), b"again".to_vec()),
        "the new version is the latest"
    );
    // A create-only put of a new key beside an existing one is unaffected by it.
    c.put_opts("once-other", b"x", once(None));
}

/// A put to an existing key leaves every older version readable, byte for byte.
pub fn overwrite_leaves_older_versions_intact(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "overwrite_leaves_older_versions_intact");
    let k = c.key("doc");
    let bodies: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    let versions: Vec<ObjectVersion> = bodies.iter().map(|b| c.put("doc", b)).collect();
    for (v, b) in versions.iter().zip(&bodies) {
        c.assert_data(&k, &v.version, b);
        assert_same_version(&ok(c.auditor().head(&k, Some(&v.version)), "head"), v, "head by version");
    }
    assert_eq!(ok(c.reader().get(&k, None), "get latest").data, bodies[4]);
}

/// `get`/`head` without a version read the latest; with one, exactly that version.
pub fn get_and_head_latest_and_by_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "get_and_head_latest_and_by_version");
    let k = c.key("k");
    let v1 = c.put("k", b"first");
    let v2 = c.put_opts(
        "k",
        b"second",
        PutOptions {
            retention: Some(ret(RetentionMode::Governance, c.at(2 * HOUR))),
            legal_hold: true,
            create_only: false,
        },
    );
    for s in [c.writer(), c.reader()] {
        let o = ok(s.get(&k, None), "get latest");
        assert_eq!(o.data, b"second");
        assert_same_version(&o.meta, &v2, "get latest");
        assert!(o.meta.is_latest);
        let o = ok(s.get(&k, Some(&v1.version)), "get v1");
        assert_eq!(o.data, b"first");
        assert_same_version(&o.meta, &v1, "get v1");
        assert!(!o.meta.is_latest, "an older version is not the latest");
    }
    for role in Role::ALL {
        let s = c.as_role(role);
        let m = ok(s.head(&k, None), &format!("head latest as {role}"));
        assert_same_version(&m, &v2, "head latest");
        assert!(m.is_latest);
        let m = ok(s.head(&k, Some(&v1.version)), &format!("head v1 as {role}"));
        assert_same_version(&m, &v1, "head v1");
        assert!(!m.is_latest);
    }
}

/// `open_ranged` opens the version `get` would read (latest or by id) with `get`'s
/// permission and errors, and reads any range inside it; a range past its end is
/// `InvalidRequest`.
pub fn open_ranged_reads_ranges_of_the_version(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "open_ranged_reads_ranges_of_the_version");
    let k = c.key("k");
    let v1 = c.put("k", b"the first version");
    let v2 = c.put("k", b"second");
    let empty = c.put("empty", b"");
    for s in [c.writer(), c.reader()] {
        let r = ok(s.open_ranged(&k, None), "open latest");
        assert_same_version(r.meta(), &v2, "open latest");
        assert_eq!(ok(r.read_at(0, 6), "whole"), b"second");
        assert_eq!(ok(r.read_at(2, 3), "middle"), b"con");
        assert_eq!(ok(r.read_at(6, 0), "empty range at the end"), b"");
        expect_err(r.read_at(4, 3), ErrorKind::InvalidRequest, "range past the end");
        expect_err(r.read_at(u64::MAX, 2), ErrorKind::InvalidRequest, "range past any end");
        let r = ok(s.open_ranged(&k, Some(&v1.version)), "open v1");
        assert_same_version(r.meta(), &v1, "open v1");
        assert_eq!(ok(r.read_at(4, 5), "v1 range"), b"first");
        let r = ok(s.open_ranged(&empty.key, None), "open an empty object");
        assert_eq!(ok(r.read_at(0, 0), "nothing of nothing"), b"");
    }
    let missing = c.key("missing");
    expect_not_found(c.reader().open_ranged(&missing, None).map(|r| r.meta().clone()), &missing, None, "absent key");
    let m = ok(c.admin().delete(&k), "delete");
    expect_not_found(c.reader().open_ranged(&k, None).map(|r| r.meta().clone()), &k, None, "deleted key");
    expect_err(
        c.reader().open_ranged(&k, Some(&m.version)).map(|r| r.meta().clone()),
        ErrorKind::InvalidRequest,
        "a delete marker's data",
    );
    for role in Role::ALL {
        let r = c.as_role(role).open_ranged(&k, Some(&v2.version)).map(|r| r.meta().clone());
        if role.allows(Action::Get) {
            assert_same_version(&ok(r, &format!("open as {role}")), &v2, "open by version");
        } else {
            expect_forbidden(r, role, Action::Get, &format!("open as {role}"));
        }
    }
}

/// A put records size and an `algorithm:hex` content checksum, the same on every read.
pub fn checksum_and_size_are_stored(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "checksum_and_size_are_stored");
    let a = c.put("a", b"hello world");
    let b = c.put("b", b"hello world");
    let d = c.put("d", b"hello World");
    for v in [&a, &b, &d] {
        let (alg, hex) =
            v.checksum.split_once(':').unwrap_or_else(|| panic!("checksum {:?} is algorithm:hex", v.checksum));
        assert!(!alg.is_empty(), "checksum names its algorithm: {:?}", v.checksum);
        assert!(hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "checksum hex: {:?}", v.checksum);
        assert_eq!(v.size, 11);
        let got = ok(c.reader().get(&v.key, Some(&v.version)), "get");
        assert_eq!(got.meta.checksum, v.checksum, "get reports the stored checksum");
        assert_eq!(ok(c.auditor().head(&v.key, None), "head").checksum, v.checksum, "head reports it too");
    }
    assert_eq!(a.checksum, b.checksum, "same bytes, same checksum");
    assert_ne!(a.checksum, d.checksum, "different bytes, different checksum");
}

/// An empty object is an object: stored, listed, read back empty.
pub fn empty_object_round_trips(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "empty_object_round_trips");
    let v = c.put("empty", b"");
    assert_eq!(v.size, 0);
    assert!(!v.checksum.is_empty(), "an empty object still has a checksum");
    c.assert_data(&c.key("empty"), &v.version, b"");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*c.key("empty"), &v.version)]);
}
