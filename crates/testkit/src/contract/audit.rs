//! The audit-log check: every mutating request leaves an entry (principal, role, action, key,
//! version, outcome), refusals saying why.

use super::*;

/// (principal, role, action, key, version, outcome) of an audit entry.
pub(super) type AuditRow<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a str);

/// Every mutating request leaves an audit entry with principal, role, action, key,
/// version and outcome; refusals say why. Skipped when the store has no audit log.
pub fn audit_log_records_mutations(h: &dyn StoreHarness) {
    let c = Ctx::new(h, "audit_log_records_mutations");
    let Some(start) = c.audit_after(0).map(|e| e.last().map_or(0, |e| e.seq)) else { return };
    let k = c.key("k");
    let v = c.put_locked("k", b"x", RetentionMode::Compliance, HOUR);
    let m = ok(c.admin().delete(&k), "delete");
    let _ = c.reader().put(&k, b"y", &PutOptions::default());
    let _ = c.pruner().delete_version(&k, &v.version, false);
    ok(c.writer().put_legal_hold(&k, &v.version, true), "hold");
    let _ = c.admin().put_versioning(Versioning::Suspended);
    let _ = c.reader().get(&k, Some(&v.version));
    let entries = c.audit_after(start).expect("audit log");
    let got: Vec<AuditRow<'_>> = entries
        .iter()
        .map(|e| {
            (
                e.principal.as_str(),
                e.role.as_str(),
                e.action.as_str(),
                e.key.as_deref(),
                e.version.as_deref(),
                e.outcome.as_str(),
            )
        })
        .collect();
    let name = |r: Role| c.as_role(r).principal().name.clone();
    let (w, r, p, a) = (name(Role::Writer), name(Role::Reader), name(Role::Pruner), name(Role::Admin));
    let (vs, ms) = (v.version.0.as_str(), m.version.0.as_str());
    let want: Vec<AuditRow<'_>> = vec![
        (&w, "writer", "put", Some(&k), Some(vs), "allowed"),
        (&a, "admin", "delete", Some(&k), Some(ms), "allowed"),
        (&r, "reader", "put", Some(&k), None, "denied"),
        (&p, "pruner", "delete-version", Some(&k), Some(vs), "denied"),
        (&w, "writer", "legal-hold-on", Some(&k), Some(vs), "allowed"),
        (&a, "admin", "put-versioning", None, None, "denied"),
    ];
    assert_eq!(got, want, "audit entries for the requests made (reads are not audited)");
    for e in &entries {
        assert_eq!(e.outcome == "denied", !e.reason.is_empty(), "a refusal says why, an allowed entry does not: {e:?}");
    }
    assert!(entries.windows(2).all(|w| w[1].seq == w[0].seq + 1 && w[1].prev_hash == w[0].hash), "chained");
}
