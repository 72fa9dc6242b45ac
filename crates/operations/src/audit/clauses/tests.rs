//! Unit tests of the verdicts: each clause met on compliant evidence, not met on the
//! evidence that breaks it, unknown when its evidence cannot be read (never met by default).

use super::*;
use crate::audit::evidence::LedgerFacts;
use crate::event::RunRecord;
use coffer_repository::RetentionPolicy;
use coffer_store::{ObjectVersion, Protection, Retention, RetentionMode, VersionId};
use std::collections::BTreeMap;
use std::path::Path;

const POLICY: &str = r#"
[daemon]
timezone = "UTC"
[repositories.main]
location = "/v"
[repositories.main.verify]
schedule = "daily 01:00"
[repositories.main.prune]
schedule = "daily 00:30"
[files.home]
repository = "main"
paths = ["/home"]
schedule = "hourly"
[alerts.webhook.ops]
url = "http://127.0.0.1:9/hook"
"#;

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("coffer.toml")).unwrap()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    at("2030-06-01T12:00:00Z")
}

fn run(job: &str, kind: JobKind, outcome: Outcome, ago_hours: i64) -> RunRecord {
    let started = now() - jiff::SignedDuration::from_hours(ago_hours);
    let mut r =
        RunRecord::new(job, kind, job.split('/').next().filter(|_| kind == JobKind::Backup), "main", "h", started);
    r.finished = started;
    r.outcome = outcome;
    r
}

fn drill(kind: DrillKind, job: &str, passed: bool, ago_days: i64) -> DrillReport {
    let started = now() - jiff::SignedDuration::from_hours(24 * ago_days);
    let mut d = DrillReport::new(kind, job, "main", "h", started);
    d.check(
        "content",
        None,
        if passed { crate::drill::CheckOutcome::Passed } else { crate::drill::CheckOutcome::Failed },
        "x",
    );
    d.rto_seconds = Some(2.0);
    d.rto_target_seconds = Some(60.0);
    d.finish(started);
    d
}

fn version(key: &str, mode: RetentionMode, days: i64) -> ObjectVersion {
    ObjectVersion {
        key: key.into(),
        version: VersionId("v1".into()),
        created: now(),
        is_latest: true,
        delete_marker: false,
        size: 10,
        checksum: String::new(),
        retention: Some(Retention { mode, until: now() + jiff::SignedDuration::from_hours(24 * days) }),
        legal_hold: false,
    }
}

/// Evidence of a compliant repository.
fn evidence() -> Evidence {
    let fields: BTreeMap<String, String> =
        [("object-lock", "enabled"), ("default-retention", "none"), ("versioning", "enabled")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    Evidence {
        name: "main".into(),
        location: "/v".into(),
        now: now(),
        since: now() - jiff::SignedDuration::from_hours(24 * 90),
        s3: None,
        protection: Ok(Protection { fields, unreadable: BTreeMap::new() }),
        retention: Ok(RetentionPolicy::default()),
        snapshots: Ok(Vec::new()),
        damaged_snapshots: Vec::new(),
        versions: Ok(vec![
            version("data/00/aa", RetentionMode::Compliance, 30),
            version("config", RetentionMode::Compliance, 88),
        ]),
        ledger: Ok(LedgerFacts {
            records: 5,
            runs: vec![
                run("home/backup", JobKind::Backup, Outcome::Success, 1),
                run("main/canary", JobKind::Canary, Outcome::Success, 2),
                run("main/prune", JobKind::Prune, Outcome::Success, 3),
            ],
            drills: vec![
                drill(DrillKind::Files, "home/drill", true, 3),
                drill(DrillKind::Rebuild, "main/rebuild", true, 10),
            ],
            ..LedgerFacts::default()
        }),
        postgres: None,
        writer: Ok(()),
        outbox_pending: Ok(0),
        alert_tests: BTreeMap::new(),
        problems: Vec::new(),
    }
}

fn verdicts(c: &Config, ev: &Evidence) -> Vec<Clause> {
    let proof = crate::audit::ceiling::prove_from(c, "main", ev);
    judge(c, "main", ev, proof.as_ref())
}

fn get<'a>(cs: &'a [Clause], id: &str) -> &'a Clause {
    cs.iter().find(|c| c.id == id).unwrap()
}

/// Every clause met but `id`, which has `status` and a reason containing `why`.
#[track_caller]
fn only(cs: &[Clause], id: &str, status: Status, why: &str) {
    for c in cs {
        if c.id == id {
            assert_eq!(c.status, status, "{c:#?}");
            assert!(c.reasons.iter().any(|r| r.contains(why)), "{id}: no reason with {why:?}: {c:#?}");
        } else {
            assert_eq!(c.status, Status::Met, "{c:#?}");
        }
    }
}

#[test]
fn audit_compliant_evidence_meets_every_clause() {
    let cs = verdicts(&config(POLICY), &evidence());
    assert_eq!(cs.len(), 13);
    for c in &cs {
        assert_eq!(c.status, Status::Met, "{c:#?}");
        assert!(c.reasons.is_empty());
        assert!(!c.evidence.is_empty(), "{}: a verdict without evidence", c.id);
    }
}

#[test]
fn audit_unreadable_versioning_is_unknown_never_met() {
    let mut ev = evidence();
    if let Ok(p) = &mut ev.protection {
        p.fields.remove("versioning");
        p.unreadable.insert("versioning".into(), "AccessDenied".into());
    }
    let cs = verdicts(&config(POLICY), &ev);
    assert_eq!(get(&cs, "4.2-versioning").status, Status::Unknown);
    assert!(get(&cs, "4.2-versioning").reasons[0].contains("unreadable by the auditor: AccessDenied"));
    assert_eq!(get(&cs, "3-files-versioned-locked").status, Status::Unknown);
}

#[test]
fn audit_an_unreadable_ledger_makes_the_history_clauses_unknown() {
    let mut ev = evidence();
    ev.ledger = Err("cannot read ledger/…: connection refused".into());
    let cs = verdicts(&config(POLICY), &ev);
    for id in [
        "3-files-versioned-locked",
        "5-schedule",
        "6-recovery-testing",
        "6-full-rebuild",
        "7-monitoring",
        "7-security-alerts",
    ] {
        assert_eq!(get(&cs, id).status, Status::Unknown, "{id}");
    }
}

#[test]
fn audit_suspended_versioning_is_not_met() {
    let mut ev = evidence();
    if let Ok(p) = &mut ev.protection {
        p.fields.insert("versioning".into(), "suspended".into());
    }
    let cs = verdicts(&config(POLICY), &ev);
    assert_eq!(get(&cs, "4.2-versioning").status, Status::NotMet);
    assert_eq!(get(&cs, "3-files-versioned-locked").status, Status::NotMet);
}

#[test]
fn audit_governance_is_not_met() {
    let mut ev = evidence();
    ev.retention = Ok(RetentionPolicy { mode: RetentionMode::Governance, ..RetentionPolicy::default() });
    let cs = verdicts(&config(POLICY), &ev);
    only(&cs, "4.1-compliance-mode", Status::NotMet, "governance mode, not compliance");
    let mut ev = evidence();
    ev.versions = Ok(vec![version("data/00/aa", RetentionMode::Governance, 30)]);
    only(&verdicts(&config(POLICY), &ev), "4.1-compliance-mode", Status::NotMet, "active governance lock");
}

#[test]
fn audit_an_unlocked_data_object_is_not_met() {
    let mut ev = evidence();
    let mut v = version("data/00/bb", RetentionMode::Compliance, 1);
    v.retention = None;
    ev.versions = Ok(vec![v]);
    only(&verdicts(&config(POLICY), &ev), "4.1-object-lock", Status::NotMet, "carry no lock");
}

#[test]
fn audit_no_alert_target_and_no_route_for_failures_are_not_met() {
    let text = POLICY.replace("[alerts.webhook.ops]\nurl = \"http://127.0.0.1:9/hook\"\n", "");
    let cs = verdicts(&config(&text), &evidence());
    assert_eq!(get(&cs, "7-monitoring").status, Status::NotMet);
    assert!(get(&cs, "7-monitoring").reasons[0].contains("no alert target is configured"));
    assert_eq!(get(&cs, "7-security-alerts").status, Status::NotMet);
    let text = format!("{POLICY}[[alerts.route]]\nkinds = [\"verify-problem\"]\ntargets = [\"ops\"]\n");
    only(&verdicts(&config(&text), &evidence()), "7-monitoring", Status::NotMet, "no route sends job-failed");
}

#[test]
fn audit_drills_outside_the_period_or_failing_last_are_not_met() {
    let mut ev = evidence();
    if let Ok(l) = &mut ev.ledger {
        l.drills =
            vec![drill(DrillKind::Files, "home/drill", true, 100), drill(DrillKind::Rebuild, "main/rebuild", true, 10)];
    }
    only(&verdicts(&config(POLICY), &ev), "6-recovery-testing", Status::NotMet, "no passing restore drill");
    let mut ev = evidence();
    if let Ok(l) = &mut ev.ledger {
        l.drills.push(drill(DrillKind::Files, "home/drill", false, 1));
    }
    only(
        &verdicts(&config(POLICY), &ev),
        "6-recovery-testing",
        Status::NotMet,
        "the latest restore drill of home/drill failed",
    );
    let mut ev = evidence();
    if let Ok(l) = &mut ev.ledger {
        l.drills.retain(|d| d.kind != DrillKind::Rebuild);
    }
    only(&verdicts(&config(POLICY), &ev), "6-full-rebuild", Status::NotMet, "no passing rebuild drill");
}

#[test]
fn audit_separation_of_duties_refuses_shared_or_admin_credentials() {
    let text = format!(
        "{POLICY}[repositories.main.credentials]\nwriter = \"/etc/coffer/k.toml\"\npruner = \"/etc/coffer/k.toml\"\n"
    );
    only(&verdicts(&config(&text), &evidence()), "4.3-separation-of-duties", Status::NotMet, "same credentials file");
    // Admin credentials are refused by the policy file itself (checked again by the clause).
    let text = format!("{POLICY}[repositories.main.credentials]\nadmin = \"/etc/coffer/admin.toml\"\n");
    assert!(Config::parse(&text, Path::new("coffer.toml")).is_err());
}

#[test]
fn audit_s3_bucket_policy_is_compared_with_the_generated_one() {
    let generated = coffer_store::iam::bucket_policy(&coffer_store::iam::PolicyTarget::new("b", "p/"));
    let mut ev = evidence();
    ev.s3 = Some(("b".into(), "p/".into()));
    let set = |ev: &mut Evidence, v: &str| {
        if let Ok(p) = &mut ev.protection {
            p.fields.insert("bucket-policy".into(), v.into());
        }
    };
    set(&mut ev, &serde_json::to_string(&generated).unwrap());
    assert_eq!(get(&verdicts(&config(POLICY), &ev), "4.3-separation-of-duties").status, Status::Met);
    // Another deployment's principal ARNs and AWS's spellings are the same policy.
    let mut other = serde_json::to_value(&generated).unwrap();
    for st in other["Statement"].as_array_mut().unwrap() {
        if let Some(c) = st.pointer_mut("/Condition/ArnNotEquals/aws:PrincipalArn") {
            *c = serde_json::json!(["arn:aws:iam::123456789012:role/backup-writer"]);
        }
        st["Principal"] = serde_json::json!({"AWS": "*"});
    }
    set(&mut ev, &other.to_string());
    assert_eq!(get(&verdicts(&config(POLICY), &ev), "4.3-separation-of-duties").status, Status::Met);
    // One more principal exempted from a deny is not the generated policy.
    let mut extra = serde_json::to_value(&generated).unwrap();
    if let Some(c) = extra["Statement"][0].pointer_mut("/Condition/ArnNotEquals/aws:PrincipalArn") {
        c.as_array_mut().unwrap().push(serde_json::json!("arn:aws:iam::666:user/mallory"));
    }
    set(&mut ev, &extra.to_string());
    only(&verdicts(&config(POLICY), &ev), "4.3-separation-of-duties", Status::NotMet, "differs from the generated");
    set(&mut ev, "none");
    only(&verdicts(&config(POLICY), &ev), "4.3-separation-of-duties", Status::NotMet, "no bucket policy");
    set(&mut ev, "{\"Version\":\"2012-10-17\",\"Statement\":[]}");
    only(&verdicts(&config(POLICY), &ev), "4.3-separation-of-duties", Status::NotMet, "differs from the generated");
}

#[test]
fn audit_schedule_overdue_and_missing_prune_are_not_met() {
    let mut ev = evidence();
    if let Ok(l) = &mut ev.ledger {
        l.runs[0] = run("home/backup", JobKind::Backup, Outcome::Success, 5);
    }
    only(&verdicts(&config(POLICY), &ev), "5-schedule", Status::NotMet, "overdue");
    let text = POLICY.replace("[repositories.main.prune]\nschedule = \"daily 00:30\"\n", "");
    let cs = verdicts(&config(&text), &evidence());
    assert_eq!(get(&cs, "5-schedule").status, Status::NotMet);
    assert!(get(&cs, "5-retention-ceiling").reasons.iter().any(|r| r.contains("no prune is scheduled")));
}

#[test]
fn audit_retention_rules_beyond_the_ceiling_are_not_met() {
    let text =
        POLICY.replace("schedule = \"hourly\"\n", "schedule = \"hourly\"\n[files.home.retention]\nkeep-monthly = 4\n");
    only(&verdicts(&config(&text), &evidence()), "5-retention-ceiling", Status::NotMet, "beyond the policy's 90 days");
}

#[test]
fn audit_failed_canary_and_writer_unusable() {
    let mut ev = evidence();
    if let Ok(l) = &mut ev.ledger {
        l.runs[1] = run("main/canary", JobKind::Canary, Outcome::Failed, 1);
    }
    only(&verdicts(&config(POLICY), &ev), "7-security-alerts", Status::NotMet, "last canary run did not pass");
    let mut ev = evidence();
    ev.writer = Err("no credentials".into());
    only(&verdicts(&config(POLICY), &ev), "8-review", Status::Unknown, "cannot be recorded");
}

#[test]
fn audit_status_worst_and_html_escaping() {
    assert_eq!(Status::Met.worst(Status::Unknown), Status::Unknown);
    assert_eq!(Status::Unknown.worst(Status::NotMet), Status::NotMet);
    assert_eq!(Status::NotMet.worst(Status::Met), Status::NotMet);
    let e = crate::audit::render::escape_html("<script>alert('x')</script>&\"");
    assert_eq!(e, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
    let m = crate::audit::render::escape_md("a|b <i>*x*</i> [l](u)");
    assert_eq!(m, "a\\|b &lt;i&gt;\\*x\\*&lt;/i&gt; \\[l\\](u)");
}

#[test]
fn audit_a_weakening_the_store_allowed_breaks_separation_of_duties_and_is_listed() {
    let mut ev = evidence();
    let e = crate::security::SecurityEvent::new(
        crate::security::SecurityKind::WeakeningAllowed,
        "canary",
        now() - jiff::SignedDuration::from_hours(2),
        "writer could shorten retention <b>coffer-security/canary/x</b>",
    );
    if let Ok(l) = &mut ev.ledger {
        l.security.push((e, None));
    }
    let cs = verdicts(&config(POLICY), &ev);
    only(&cs, "4.3-separation-of-duties", Status::NotMet, "1 weakening request(s) the store allowed");
    let sec = get(&cs, "7-security-alerts");
    assert!(
        sec.evidence.iter().any(|l| l.contains("1 security event(s) in the period, 1 not acknowledged")),
        "{sec:#?}"
    );
    assert!(sec.evidence.iter().any(|l| l.contains("weakening-allowed: writer could shorten retention")), "{sec:#?}");
}

fn cluster(window: bool, gaps: &[&str]) -> coffer_sources::postgres::ClusterInfo {
    coffer_sources::postgres::ClusterInfo {
        sysid: 7,
        name: Some("db".into()),
        base_backups: Vec::new(),
        wal_segments: 12,
        first_segment: Some("000000010000000000000001".into()),
        last_segment: Some("00000001000000000000000C".into()),
        history_files: Vec::new(),
        gaps: gaps.iter().map(|g| (*g).to_owned()).collect(),
        recovery_window: window.then(|| coffer_sources::postgres::RecoveryWindow {
            from_time: now() - jiff::SignedDuration::from_hours(48),
            from_lsn: coffer_sources::postgres::Lsn(0x100_0000),
            to_segment: Some("00000001000000000000000C".into()),
            to_time: Some(now() - jiff::SignedDuration::from_mins(5)),
        }),
        latest_restore: None,
    }
}

#[test]
fn audit_postgres_coverage_needs_a_window_and_no_gap() {
    let text = format!(
        "{POLICY}[postgres.db]\nrepository = \"main\"\n[postgres.db.base-backup]\nschedule = \"daily 02:00\"\n"
    );
    let c = config(&text);
    let mut ev = evidence();
    if let Ok(l) = &mut ev.ledger {
        l.runs.push(run("db/base-backup", JobKind::BaseBackup, Outcome::Success, 3));
    }
    ev.postgres = Some(Ok(vec![cluster(true, &[])]));
    let cs = verdicts(&c, &ev);
    assert_eq!(get(&cs, "3-database-pitr").status, Status::Met, "{:#?}", get(&cs, "3-database-pitr"));
    assert!(get(&cs, "3-database-pitr").evidence.iter().any(|l| l.contains("cluster 7 (db): recovery window from")));
    ev.postgres = Some(Ok(vec![cluster(true, &["000000010000000000000005"])]));
    only(
        &verdicts(&c, &ev),
        "3-database-pitr",
        Status::NotMet,
        "1 WAL segment(s) missing inside the archive, first 000000010000000000000005",
    );
    ev.postgres = Some(Ok(vec![cluster(false, &[])]));
    only(&verdicts(&c, &ev), "3-database-pitr", Status::NotMet, "no recovery window");
    ev.postgres = Some(Ok(Vec::new()));
    only(&verdicts(&c, &ev), "3-database-pitr", Status::NotMet, "1 PostgreSQL source(s) but 0 cluster(s)");
    ev.postgres = Some(Err("permission denied".into()));
    only(&verdicts(&c, &ev), "3-database-pitr", Status::Unknown, "cannot be read: permission denied");
}
