//! Checks on listing: bytewise order, pagination and its tokens, hidden deleted keys,
//! version listings newest first with markers, and entry listings matching full ones.

use super::*;

/// Key names (after the check's prefix) in bytewise (UTF-8, memcmp) order, written out by
/// hand: ASCII before Latin-1 before CJK before the BMP's private/fullwidth block before
/// astral characters (UTF-16 order would put `𝄞` before `Ａ`).
pub(super) const SORTED_NAMES: [&str; 16] =
    ["", " sp", "Z", "a", "a/b", "a0", "ab", "b", "e", "z", "~", "é", "éa", "ê", "日本", "Ａ"];
pub(super) const ASTRAL: &str = "𝄞";

pub(super) fn sorted_names() -> Vec<&'static str> {
    let mut v = SORTED_NAMES.to_vec();
    v.push(ASTRAL);
    v
}

/// Puts one object per name in `names` (shuffled order) and returns their versions by name.
pub(super) fn put_names(c: &Ctx<'_>, names: &[&str]) -> Vec<(String, VersionId)> {
    let mut order: Vec<&str> = names.to_vec();
    order.reverse();
    order.swap(0, names.len() / 2);
    let mut out: Vec<(String, VersionId)> = order.iter().map(|n| (c.key(n), c.put(n, n.as_bytes()).version)).collect();
    out.sort();
    out
}

/// `list` returns exactly the keys under a prefix, sorted bytewise, at every prefix edge.
pub fn list_is_sorted_bytewise_by_prefix(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_is_sorted_bytewise_by_prefix");
    let names = sorted_names();
    let mut expected_sorted = names.clone();
    expected_sorted.sort_unstable();
    assert_eq!(names, expected_sorted, "the hand-written order is bytewise order");
    let stored = put_names(&c, &names);
    // Siblings of the prefix, just outside it on either side ('.' < '/' < '0').
    let base = c.prefix.trim_end_matches('/');
    let before = format!("{base}.");
    let after = format!("{base}0");
    ok(c.writer().put(&before, b"outside", &PutOptions::default()), "put sibling");
    ok(c.writer().put(&after, b"outside", &PutOptions::default()), "put sibling");

    let listed = ok(c.reader().list(&c.prefix, None, 100), "list the prefix");
    let want: Vec<String> = names.iter().map(|n| c.key(n)).collect();
    assert_eq!(keys_of(&listed.items), want.iter().map(String::as_str).collect::<Vec<_>>(), "sorted bytewise");
    assert_eq!(listed.next, None);
    for (item, (key, version)) in listed.items.iter().zip(&stored) {
        assert_eq!((&item.key, &item.version), (key, version), "list reports each key's latest version");
        assert!(item.is_latest && !item.delete_marker);
    }
    let around = ok(c.reader().list(base, None, 100), "list without the trailing slash");
    let mut want_around = vec![before.clone()];
    want_around.extend(want.iter().cloned());
    want_around.push(after.clone());
    assert_eq!(keys_of(&around.items), want_around.iter().map(String::as_str).collect::<Vec<_>>());

    let cases: [(&str, &[&str]); 12] = [
        ("a", &["a", "a/b", "a0", "ab"]),
        ("a/", &["a/b"]),
        ("ab", &["ab"]),
        ("abc", &[]),
        ("b", &["b"]),
        ("é", &["é", "éa"]),
        ("ê", &["ê"]),
        ("日", &["日本"]),
        ("Ａ", &["Ａ"]),
        (ASTRAL, &[ASTRAL]),
        ("~", &["~"]),
        ("zz", &[]),
    ];
    for (sub, want) in cases {
        let prefix = c.key(sub);
        let got = ok(c.auditor().list(&prefix, None, 100), &format!("list prefix {prefix:?}"));
        let want: Vec<String> = want.iter().map(|n| c.key(n)).collect();
        assert_eq!(keys_of(&got.items), want.iter().map(String::as_str).collect::<Vec<_>>(), "prefix {prefix:?}");
        assert_eq!(got.next, None);
    }
}

/// `list` pages: every limit yields the same keys, pages are full until the last, tokens
/// continue after the key they name even if it was deleted meanwhile.
pub fn list_paginates(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_paginates");
    let names = sorted_names();
    put_names(&c, &names);
    let want: Vec<String> = names.iter().map(|n| c.key(n)).collect();
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    for limit in (1..=names.len() + 1).chain([1000, usize::MAX]) {
        let got = all_pages(limit, "list", |t| c.reader().list(&c.prefix, t, limit));
        assert_eq!(keys_of(&got), want, "list with limit {limit}");
    }
    let first = ok(c.reader().list(&c.prefix, None, 3), "first page");
    assert_eq!(keys_of(&first.items), want[..3]);
    let token = first.next.expect("more pages");
    ok(c.admin().delete(want[2]), "delete the page's last key");
    let second = ok(c.reader().list(&c.prefix, Some(&token), 3), "second page after a delete");
    assert_eq!(keys_of(&second.items), want[3..6], "the token continues after the deleted key");
    c.put("a00", b"new");
    let third = ok(c.reader().list(&c.prefix, second.next.as_deref(), 100), "rest");
    assert!(keys_of(&third.items).contains(&c.key("a00").as_str()), "a key added after the token is listed");
}

/// `list` shows only keys whose latest version is an object.
pub fn list_hides_deleted_keys(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_hides_deleted_keys");
    let va = c.put("a", b"a");
    let vb = c.put("b", b"b");
    let vc = c.put("c", b"c");
    let (a, b, k_c) = (c.key("a"), c.key("b"), c.key("c"));
    ok(c.admin().delete(&b), "delete b");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*a, &va.version), (&*k_c, &vc.version)]);
    let vb2 = c.put("b", b"b2");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(ids_of(&listed.items), vec![(&*a, &va.version), (&*b, &vb2.version), (&*k_c, &vc.version)]);
    assert_ne!(vb.version, vb2.version);
    // A key whose only version is removed for good is gone from both listings.
    ok(c.pruner().delete_version(&k_c, &vc.version, false), "remove c");
    let listed = ok(c.reader().list(&c.prefix, None, 10), "list");
    assert_eq!(keys_of(&listed.items), vec![&*a, &*b]);
    let versions = ok(c.auditor().list_versions(&k_c, None, 10), "list versions of c");
    assert!(versions.items.is_empty());
}

/// The versions of a fixed set of keys, in the order `list_versions` must return them.
pub(super) fn version_fixture(c: &Ctx<'_>) -> Vec<(String, VersionId, bool, bool)> {
    let k1 = c.key("k1");
    let k2 = c.key("k2");
    let k3 = c.key("k3/é");
    let a1 = c.put("k1", b"1");
    let b1 = c.put("k2", b"1");
    let a2 = c.put("k1", b"2");
    let c1 = c.put("k3/é", b"1");
    let m = ok(c.admin().delete(&k2), "delete k2");
    let a3 = c.put_locked("k1", b"3", RetentionMode::Governance, HOUR);
    let c2 = c.put("k3/é", b"2");
    vec![
        (k1.clone(), a3.version, false, true),
        (k1.clone(), a2.version, false, false),
        (k1, a1.version, false, false),
        (k2.clone(), m.version, true, true),
        (k2, b1.version, false, false),
        (k3.clone(), c2.version, false, true),
        (k3, c1.version, false, false),
    ]
}

pub(super) fn version_shape(items: &[ObjectVersion]) -> Vec<(String, VersionId, bool, bool)> {
    items.iter().map(|v| (v.key.clone(), v.version.clone(), v.delete_marker, v.is_latest)).collect()
}

/// `list_versions` returns every version and marker, by key, newest first.
pub fn list_versions_is_newest_first_with_markers(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_versions_is_newest_first_with_markers");
    let want = version_fixture(&c);
    for role in Role::ALL {
        let got = ok(c.as_role(role).list_versions(&c.prefix, None, 100), &format!("list versions as {role}"));
        assert_eq!(version_shape(&got.items), want, "list versions as {role}");
        assert_eq!(got.next, None);
    }
    let got = ok(c.auditor().list_versions(&c.key("k1"), None, 100), "versions of k1");
    assert_eq!(version_shape(&got.items), want[..3], "a prefix that is a key lists that key's versions");
    let got = ok(c.auditor().list_versions(&c.key("k3/"), None, 100), "versions under k3/");
    assert_eq!(version_shape(&got.items), want[5..]);
}

/// `list_versions` pages with every limit, splitting inside a key and at key boundaries.
pub fn list_versions_paginates_across_keys(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_versions_paginates_across_keys");
    let want = version_fixture(&c);
    for limit in (1..=want.len() + 1).chain([1000, usize::MAX]) {
        let got = all_pages(limit, "list versions", |t| c.auditor().list_versions(&c.prefix, t, limit));
        assert_eq!(version_shape(&got), want, "list versions with limit {limit}");
    }
    // A token taken inside k1 still continues correctly after a new version of k1 appears.
    let first = ok(c.pruner().list_versions(&c.prefix, None, 2), "first page");
    let token = first.next.expect("more pages");
    c.put("k1", b"4");
    let rest = all_pages(100, "rest", |t| c.pruner().list_versions(&c.prefix, t.or(Some(&token)), 100));
    assert_eq!(version_shape(&rest)[1..], want[3..], "the rest after the token");
    assert_eq!((rest[0].key.as_str(), rest[0].is_latest), (want[2].0.as_str(), false));
    assert_eq!(rest[0].version, want[2].1);
}

/// A token the store did not issue is an invalid request.
pub fn list_tokens_are_validated(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_tokens_are_validated");
    c.put("a", b"a");
    for bad in ["not a token!", "zz"] {
        expect_err(c.reader().list(&c.prefix, Some(bad), 10), ErrorKind::InvalidRequest, "list with a bad token");
        expect_err(
            c.reader().list_versions(&c.prefix, Some(bad), 10),
            ErrorKind::InvalidRequest,
            "list versions with a bad token",
        );
    }
}

/// `list_entries` and `list_version_entries` list exactly what `list` and `list_versions`
/// list — same items, order, pages and tokens, the same role check — only without lock
/// state and checksum.
pub fn list_entries_match_the_full_listings(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "list_entries_match_the_full_listings");
    version_fixture(&c);
    c.put("other", b"12345");
    let lean = |items: Vec<ObjectVersion>| -> Vec<ListEntry> { items.into_iter().map(ListEntry::from).collect() };
    for limit in [1, 2, 3, 1000] {
        let full = all_pages(limit, "list", |t| c.reader().list(&c.prefix, t, limit));
        let entries = all_pages(limit, "list entries", |t| c.reader().list_entries(&c.prefix, t, limit));
        assert_eq!(entries, lean(full), "list entries with limit {limit}");
        let full = all_pages(limit, "list versions", |t| c.auditor().list_versions(&c.prefix, t, limit));
        let entries =
            all_pages(limit, "list version entries", |t| c.auditor().list_version_entries(&c.prefix, t, limit));
        assert_eq!(entries, lean(full), "list version entries with limit {limit}");
    }
    let other = ok(c.reader().list_entries(&c.key("other"), None, 10), "entries of one key");
    assert_eq!(
        other.items.iter().map(|e| (e.key.as_str(), e.size)).collect::<Vec<_>>(),
        [(c.key("other").as_str(), 5)]
    );
    for role in Role::ALL {
        let s = c.as_role(role);
        assert_eq!(s.list_entries(&c.prefix, None, 10).is_ok(), s.list(&c.prefix, None, 10).is_ok(), "{role}");
        let (a, b) = (s.list_version_entries(&c.prefix, None, 10), s.list_versions(&c.prefix, None, 10));
        assert_eq!(a.is_ok(), b.is_ok(), "{role}");
    }
}
