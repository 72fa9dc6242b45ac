//! The verdicts: one [`Clause`] per policy clause the evidence can judge, each `met`,
//! `not-met` or `unknown` with the evidence lines it rests on and, when not met, why.
//!
//! Invariant guarded here: never met by default. A clause is met only when the evidence it
//! needs was read and shows it; evidence that cannot be read makes it `unknown`, and a
//! reason is always given for anything but `met`.

use super::ceiling::CeilingProof;
use super::evidence::Evidence;
use super::{Clause, Status, clean, days};
use crate::config::Config;
use crate::drill::{DrillKind, DrillReport};
use crate::event::{AlertKind, JobKind, Outcome, RunRecord};
use coffer_store::Role;
use jiff::Timestamp;
use std::time::Duration;

/// At most this many items of one kind (failed runs, events) are listed in one clause.
const MAX_LISTED: usize = 20;

/// A clause being judged: starts met, each reason makes it worse.
struct Judge {
    clause: Clause,
}

impl Judge {
    fn new(id: &str, section: &str, title: &str, policy: &str) -> Self {
        Self {
            clause: Clause {
                id: id.to_owned(),
                section: section.to_owned(),
                title: title.to_owned(),
                policy: policy.to_owned(),
                status: Status::Met,
                evidence: Vec::new(),
                reasons: Vec::new(),
            },
        }
    }
    fn ev(&mut self, line: impl Into<String>) {
        self.clause.evidence.push(line.into());
    }
    fn not_met(&mut self, why: impl Into<String>) {
        self.clause.status = self.clause.status.worst(Status::NotMet);
        self.clause.reasons.push(why.into());
    }
    fn unknown(&mut self, why: impl Into<String>) {
        self.clause.status = self.clause.status.worst(Status::Unknown);
        self.clause.reasons.push(why.into());
    }
    fn done(self) -> Clause {
        self.clause
    }
}

fn t(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn field<'a>(ev: &'a Evidence, name: &str) -> Result<&'a str, String> {
    match &ev.protection {
        Ok(p) => match (p.fields.get(name), p.unreadable.get(name)) {
            (Some(v), _) => Ok(v.as_str()),
            (None, Some(why)) => Err(format!("{name} is unreadable by the auditor: {}", clean(why, 300))),
            (None, None) => Err(format!("the store does not report {name}")),
        },
        Err(e) => Err(format!("the store's protection cannot be read: {e}")),
    }
}

/// The runs of the period for this repository.
fn runs_in_period(ev: &Evidence) -> Option<Vec<&RunRecord>> {
    let l = ev.ledger.as_ref().ok()?;
    Some(l.runs.iter().filter(|r| r.repository == ev.name && r.started >= ev.since).collect())
}

fn run_line(r: &RunRecord) -> String {
    format!(
        "{} {} at {}{}",
        clean(&r.job, 100),
        r.outcome,
        t(r.started),
        r.error.as_deref().map(|e| format!(": {}", clean(e, 200))).unwrap_or_default()
    )
}

/// Judges every clause for repository `name`.
#[must_use]
pub fn judge(config: &Config, name: &str, ev: &Evidence, proof: Option<&CeilingProof>) -> Vec<Clause> {
    vec![
        database_pitr(config, name, ev),
        files_versioned(config, name, ev),
        object_lock(ev),
        compliance_mode(ev),
        versioning(ev),
        separation_of_duties(config, name, ev),
        schedule(config, name, ev),
        retention_ceiling(config, name, ev, proof),
        recovery_testing(ev),
        full_rebuild(ev),
        monitoring(config, ev),
        security_alerts(config, name, ev),
        review(ev),
    ]
}

fn database_pitr(config: &Config, name: &str, ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "3-database-pitr",
        "3, 5",
        "Database backups: continuous, point-in-time recovery",
        "Database backups are performed continuously with point-in-time recovery capability.",
    );
    let sources: Vec<&String> = config.postgres.iter().filter(|(_, s)| s.repository == name).map(|(n, _)| n).collect();
    if sources.is_empty() {
        j.ev(format!("no PostgreSQL source of coffer.toml uses repository {name}: no database to cover here"));
        return j.done();
    }
    j.ev(format!("PostgreSQL sources: {}", sources.iter().map(|s| clean(s, 100)).collect::<Vec<_>>().join(", ")));
    match &ev.postgres {
        Some(Ok(clusters)) => {
            if clusters.len() < sources.len() {
                j.not_met(format!(
                    "{} PostgreSQL source(s) but {} cluster(s) archived in the repository",
                    sources.len(),
                    clusters.len()
                ));
            }
            for c in clusters {
                let who = format!(
                    "cluster {}{}",
                    c.sysid,
                    c.name.as_deref().map(|n| format!(" ({})", clean(n, 100))).unwrap_or_default()
                );
                j.ev(format!("{who}: {} base backup(s), {} WAL segment(s)", c.base_backups.len(), c.wal_segments));
                match &c.recovery_window {
                    Some(w) => j.ev(format!(
                        "{who}: recovery window from {} to {}",
                        t(w.from_time),
                        w.to_time.map_or_else(
                            || w.to_segment.as_deref().map_or("-".to_owned(), |s| format!("segment {}", clean(s, 100))),
                            t
                        )
                    )),
                    None => j.not_met(format!("{who}: no recovery window (no base backup)")),
                }
                if !c.gaps.is_empty() {
                    j.not_met(format!(
                        "{who}: {} WAL segment(s) missing inside the archive, first {}",
                        c.gaps.len(),
                        clean(&c.gaps[0], 100)
                    ));
                }
                if let Some(m) = c.latest_restore.as_ref().and_then(|l| l.missing_segment.as_deref()) {
                    j.not_met(format!(
                        "{who}: a restore to the latest point needs segment {}, which is not archived",
                        clean(m, 100)
                    ));
                }
            }
        }
        Some(Err(e)) => j.unknown(format!("the PostgreSQL archive cannot be read: {e}")),
        None => {}
    }
    if let Some(runs) = runs_in_period(ev) {
        let failed: Vec<&&RunRecord> = runs
            .iter()
            .filter(|r| {
                matches!(r.kind, JobKind::ArchiveCheck | JobKind::Stream | JobKind::BaseBackup)
                    && !r.outcome.is_success()
            })
            .collect();
        if !failed.is_empty() {
            j.ev(format!("{} archiving or base-backup run(s) did not succeed in the period", failed.len()));
            for r in failed.iter().take(MAX_LISTED) {
                j.ev(format!("  {}", run_line(r)));
            }
        }
    }
    j.done()
}

fn files_versioned(config: &Config, name: &str, ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "3-files-versioned-locked",
        "3, 5",
        "File backups: versioned and locked",
        "Files & objects: S3 storage with versioning, S3 Object Lock. File backups are maintained with versioning, retaining all versions for the configured retention period.",
    );
    let sources: Vec<&String> = config.files.iter().filter(|(_, s)| s.repository == name).map(|(n, _)| n).collect();
    match field(ev, "versioning") {
        Ok("enabled") => j.ev("store versioning: enabled"),
        Ok(v) => j.not_met(format!("store versioning is {}, not enabled", clean(v, 50))),
        Err(e) => j.unknown(e),
    }
    match field(ev, "object-lock") {
        Ok("enabled") => j.ev("store object lock: enabled"),
        Ok(v) => j.not_met(format!("store object lock is {}", clean(v, 50))),
        Err(e) => j.unknown(e),
    }
    match &ev.snapshots {
        Ok(snaps) => {
            let live: Vec<_> = snaps.iter().filter(|(_, s)| s.expires > ev.now && s.kind == "files").collect();
            j.ev(format!("{} live files snapshot(s) in the repository", live.len()));
            // The newest snapshot of each series (host and paths), as the snapshot says.
            let mut series: std::collections::BTreeMap<
                (&str, &[String]),
                &(coffer_repository::Id, coffer_repository::Snapshot),
            > = std::collections::BTreeMap::new();
            for s in &live {
                let e = series.entry((s.1.host.as_str(), s.1.paths.as_slice())).or_insert(s);
                if s.1.time > e.1.time {
                    *e = s;
                }
            }
            for (id, s) in series.values().take(MAX_LISTED) {
                j.ev(format!(
                    "  latest of {}:{}: snapshot {} at {}, expires {}{}",
                    clean(&s.host, 100),
                    clean(&s.paths.join(","), 300),
                    id.short(),
                    t(s.time),
                    t(s.expires),
                    if s.tags.is_empty() { String::new() } else { format!(", tags {}", clean(&s.tags.join(","), 200)) }
                ));
            }
        }
        Err(e) => j.unknown(format!("the snapshots cannot be read: {e}")),
    }
    if !ev.damaged_snapshots.is_empty() {
        j.not_met(format!("{} snapshot object(s) do not read (damaged or forged)", ev.damaged_snapshots.len()));
    }
    if sources.is_empty() {
        j.ev(format!("no files source of coffer.toml uses repository {name}"));
        return j.done();
    }
    let Some(runs) = runs_in_period(ev) else {
        j.unknown(format!("the ledger cannot be read: {}", ev.ledger.as_ref().err().map_or("", String::as_str)));
        return j.done();
    };
    for s in sources {
        let mine: Vec<&&RunRecord> =
            runs.iter().filter(|r| r.kind == JobKind::Backup && r.source.as_deref() == Some(s.as_str())).collect();
        let ok = mine.iter().filter(|r| r.outcome.is_success()).count();
        let last = mine.iter().filter(|r| r.outcome.is_success()).map(|r| r.finished).max();
        j.ev(format!(
            "source {}: {} backup run(s) in the period, {ok} successful, last success {}",
            clean(s, 100),
            mine.len(),
            last.map_or_else(|| "never".to_owned(), t)
        ));
        for r in mine.iter().filter(|r| !r.outcome.is_success()).take(MAX_LISTED) {
            j.ev(format!("  {}", run_line(r)));
        }
        if ok == 0 {
            j.not_met(format!("source {}: no successful backup in the period", clean(s, 100)));
        }
    }
    j.done()
}

fn object_lock(ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "4.1-object-lock",
        "4.1",
        "Backup objects protected by Object Lock",
        "Backup objects stored in AWS S3 are protected using S3 Object Lock, which prevents objects from being deleted or overwritten for a defined retention period.",
    );
    match field(ev, "object-lock") {
        Ok("enabled") => j.ev("object lock: enabled"),
        Ok(v) => j.not_met(format!("object lock is {}", clean(v, 50))),
        Err(e) => j.unknown(e),
    }
    if let Ok(v) = field(ev, "default-retention") {
        j.ev(format!("default retention: {}", clean(v, 100)));
    }
    match &ev.versions {
        Ok(versions) => {
            let data: Vec<_> =
                versions.iter().filter(|v| !v.delete_marker && !super::ceiling::is_metadata(&v.key)).collect();
            let unlocked: Vec<_> = data.iter().filter(|v| v.retention.is_none() && !v.legal_hold).collect();
            let active = data.iter().filter(|v| v.retention.is_some_and(|r| r.active_at(ev.now))).count();
            j.ev(format!(
                "{} data object version(s): {active} under an active lock, {} never locked",
                data.len(),
                unlocked.len()
            ));
            if !unlocked.is_empty() {
                j.not_met(format!(
                    "{} data object version(s) carry no lock, first {}",
                    unlocked.len(),
                    clean(&unlocked[0].key, 200)
                ));
            }
        }
        Err(e) => j.unknown(format!("the object versions cannot be listed: {e}")),
    }
    j.done()
}

fn compliance_mode(ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "4.1-compliance-mode",
        "4.1",
        "Object Lock in compliance mode",
        "Object Lock is configured in compliance mode, ensuring that no user — including administrators — can alter or delete protected objects until the retention period expires.",
    );
    match &ev.retention {
        Ok(r) => {
            j.ev(format!(
                "repository lock mode: {}; default retain {}; max-retain {}",
                r.mode,
                days(r.default_retain),
                days(r.max_retain)
            ));
            if r.mode != coffer_store::RetentionMode::Compliance {
                j.not_met(format!("the repository locks its objects in {} mode, not compliance", r.mode));
            }
        }
        Err(e) => j.unknown(format!("the repository's configuration cannot be read: {e}")),
    }
    match field(ev, "default-retention") {
        Ok("none") => j.ev("store default retention: none (every object gets an explicit lock)"),
        Ok(v) if v.starts_with("compliance") => j.ev(format!("store default retention: {}", clean(v, 100))),
        Ok(v) => j.not_met(format!("the store's default retention is {}, not compliance", clean(v, 100))),
        Err(e) => j.unknown(e),
    }
    if let Ok(versions) = &ev.versions {
        let gov: Vec<_> = versions
            .iter()
            .filter(|v| !v.delete_marker && !super::ceiling::is_metadata(&v.key))
            .filter(|v| {
                v.retention.is_some_and(|r| r.active_at(ev.now) && r.mode == coffer_store::RetentionMode::Governance)
            })
            .collect();
        if gov.is_empty() {
            j.ev("no data object version is under an active governance lock");
        } else {
            j.not_met(format!(
                "{} data object version(s) under an active governance lock (an admin may shorten or remove it), first {}",
                gov.len(),
                clean(&gov[0].key, 200)
            ));
        }
    }
    j.done()
}

fn versioning(ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "4.2-versioning",
        "4.2",
        "Versioning enabled; deletions leave delete markers",
        "S3 bucket versioning is enabled, maintaining a complete history of all object versions. Deletion of versioned objects creates a delete marker without permanently removing the data.",
    );
    match field(ev, "versioning") {
        Ok("enabled") => j.ev("versioning: enabled"),
        Ok(v) => j.not_met(format!(
            "versioning is {}, not enabled: a put may replace data and a delete remove it",
            clean(v, 50)
        )),
        Err(e) => j.unknown(e),
    }
    if let Ok(versions) = &ev.versions {
        let markers = versions.iter().filter(|v| v.delete_marker).count();
        let hidden = versions.iter().filter(|v| !v.delete_marker && !v.is_latest).count();
        j.ev(format!(
            "{} version(s) listed: {markers} delete marker(s); {hidden} older version(s) kept under newer versions or markers",
            versions.len()
        ));
    }
    j.done()
}

fn separation_of_duties(config: &Config, name: &str, ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "4.3-separation-of-duties",
        "4.3",
        "Access controls: automated writes only, separation of duties",
        "Write and delete access to backup storage is restricted to automated backup processes only. No individual user has permissions to delete or modify backup objects directly. IAM policies enforce separation of duties between backup creation and backup deletion.",
    );
    let creds = config.repository(name).map(|r| r.credentials).unwrap_or_default();
    for role in Role::ALL {
        match creds.get(role.as_str()) {
            Some(p) => j.ev(format!("{role} credentials: file {}", clean(&p.display().to_string(), 200))),
            None => j.ev(format!("{role} credentials: implicit (the store's own for the role)")),
        }
    }
    if let (Some(w), Some(p)) = (creds.get("writer"), creds.get("pruner")) {
        if w == p {
            j.not_met("the writer and the pruner use the same credentials file: one key both creates and deletes");
        }
    }
    if creds.contains_key("admin") {
        j.not_met(
            "coffer.toml names admin credentials: the automated jobs need none, and a stolen host must not hold them",
        );
    }
    // The matrix the store enforces: no role both creates and deletes.
    let both: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|r| r.allows(coffer_store::Action::Put) && r.allows(coffer_store::Action::DeleteVersion))
        .map(Role::as_str)
        .collect();
    if both.is_empty() {
        j.ev("role matrix: only the writer puts, only the pruner deletes versions (and only expired ones); the admin cannot put or delete a version");
    } else {
        j.not_met(format!("roles that both create and delete: {}", both.join(", ")));
    }
    // What the watch saw in the period: a weakening the store allowed is access control
    // failing; requests by principals that are none of the roles are listed.
    if let Ok(l) = &ev.ledger {
        let in_period = |k: crate::security::SecurityKind| {
            l.security.iter().filter(move |(e, _)| e.kind == k && e.detected >= ev.since).collect::<Vec<_>>()
        };
        let allowed = in_period(crate::security::SecurityKind::WeakeningAllowed);
        if let Some((e, _)) = allowed.first() {
            j.not_met(format!(
                "{} weakening request(s) the store allowed in the period, first {}: {}",
                allowed.len(),
                t(e.detected),
                clean(&e.summary, 300)
            ));
        }
        let unknown = in_period(crate::security::SecurityKind::UnknownPrincipal);
        j.ev(format!("{} request(s) by unknown principals in the period (security events)", unknown.len()));
    }
    match &ev.s3 {
        Some((bucket, prefix)) => {
            let generated =
                coffer_store::iam::bucket_policy(&coffer_store::iam::PolicyTarget::new(bucket.clone(), prefix));
            let want = normalized_policy(&serde_json::to_value(&generated).unwrap_or_default());
            match field(ev, "bucket-policy") {
                Ok("none") => {
                    j.not_met("the bucket has no bucket policy: the generated one (`coffer iam`) is not in force")
                }
                Ok(v) => match serde_json::from_str::<serde_json::Value>(v) {
                    Ok(have) if normalized_policy(&have) == want => {
                        j.ev("bucket policy: the generated one (AWS's spellings unified, principals' ARNs counted)");
                        let mut arns: Vec<String> = Vec::new();
                        collect_arns(&have, &mut arns);
                        arns.sort();
                        arns.dedup();
                        j.ev(format!("principals exempted from its denies: {}", clean(&arns.join(", "), 600)));
                    }
                    Ok(_) => j.not_met("the bucket policy differs from the generated one (`coffer iam` prints it)"),
                    Err(_) => j.not_met(format!("the bucket policy does not parse as JSON ({})", clean(v, 100))),
                },
                Err(e) => j.unknown(e),
            }
        }
        None => match field(ev, "principals") {
            Ok(v) => j.ev(format!("vault principals: {}", clean(v, 600))),
            Err(e) => j.ev(format!("vault principals: not read ({e})")),
        },
    }
    j.done()
}

/// A policy document in a form two equivalent spellings share: the roles' principal ARNs
/// (a deployment's own, `coffer iam --principal-arn`) replaced by their count, one-element arrays as their
/// element, `{"AWS": "*"}` as `"*"` (AWS may return either).
fn normalized_policy(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            if m.len() == 1 && m.get("AWS") == Some(&Value::String("*".into())) {
                return Value::String("*".into());
            }
            Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        // The ARNs' count stays: an extra principal exempted from a deny
                        // is a difference (the ARNs themselves are listed as evidence).
                        let v = if k == "aws:PrincipalArn" {
                            Value::from(v.as_array().map_or(1, Vec::len))
                        } else {
                            normalized_policy(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            )
        }
        Value::Array(a) if a.len() == 1 => normalized_policy(&a[0]),
        Value::Array(a) => Value::Array(a.iter().map(normalized_policy).collect()),
        other => other.clone(),
    }
}

/// Every `aws:PrincipalArn` value of a policy document.
fn collect_arns(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if k == "aws:PrincipalArn" {
                    match v {
                        serde_json::Value::String(s) => out.push(s.clone()),
                        serde_json::Value::Array(a) => {
                            out.extend(a.iter().filter_map(|x| x.as_str().map(str::to_owned)))
                        }
                        _ => {}
                    }
                } else {
                    collect_arns(v, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_arns(x, out)),
        _ => {}
    }
}

/// The longest a source's keep rules keep a snapshot (none: the repository's default).
fn longest_keep(r: &coffer_repository::KeepRules) -> Option<Duration> {
    let day = 86_400u64;
    let calendar = [
        r.within,
        (r.daily > 0).then(|| Duration::from_secs(u64::from(r.daily) * day)),
        (r.weekly > 0).then(|| Duration::from_secs(u64::from(r.weekly) * 7 * day)),
        (r.monthly > 0).then(|| Duration::from_secs(u64::from(r.monthly) * 31 * day)),
    ];
    let c = calendar.into_iter().flatten().max();
    match (r.retain, c) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn schedule(config: &Config, name: &str, ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "5-schedule",
        "5",
        "Backup schedule kept",
        "Database backups are performed continuously; file backups are maintained on schedule (Backup Schedule and Retention).",
    );
    let runs = runs_in_period(ev);
    if runs.is_none() {
        j.unknown(format!("the ledger cannot be read: {}", ev.ledger.as_ref().err().map_or("", String::as_str)));
    }
    let check = |j: &mut Judge, job: String, sched: &crate::schedule::Schedule, kind: JobKind| {
        let last = runs.as_ref().and_then(|rs| {
            rs.iter().filter(|r| r.job == job && r.kind == kind && r.outcome.is_success()).map(|r| r.finished).max()
        });
        j.ev(format!(
            "{}: `{}`, last success {}",
            clean(&job, 100),
            sched,
            last.map_or_else(|| "none in the period".to_owned(), t)
        ));
        if runs.is_some() {
            let allowed = sched.interval().saturating_mul(2) + Duration::from_secs(3600);
            match last {
                None => j.not_met(format!("{}: no successful run in the period", clean(&job, 100))),
                Some(l) if ev.now.duration_since(l).unsigned_abs() > allowed && l < ev.now => j.not_met(format!(
                    "{}: last success {} is more than two intervals ago (overdue)",
                    clean(&job, 100),
                    t(l)
                )),
                Some(_) => {}
            }
        }
    };
    for (n, s) in config.files.iter().filter(|(_, s)| s.repository == name) {
        check(&mut j, crate::event::job_id(n, JobKind::Backup), &s.schedule, JobKind::Backup);
    }
    for (n, s) in config.postgres.iter().filter(|(_, s)| s.repository == name) {
        check(&mut j, crate::event::job_id(n, JobKind::BaseBackup), &s.base_backup.schedule, JobKind::BaseBackup);
        j.ev(format!("{}: WAL archived continuously ({:?})", clean(n, 100), s.archiving));
    }
    let r = config.repository(name).unwrap_or_default();
    match &r.verify {
        Some(v) => j.ev(format!("{name}/verify: `{}`", v.schedule)),
        None => j.not_met(format!("repository {name}: no verify job is scheduled ([repositories.{name}.verify])")),
    }
    match &r.prune {
        Some(p) => j.ev(format!("{name}/prune: `{}`", p.schedule)),
        None => j.not_met(format!(
            "repository {name}: no prune job is scheduled: expired data is never removed ([repositories.{name}.prune])"
        )),
    }
    j.done()
}

fn retention_ceiling(config: &Config, name: &str, ev: &Evidence, proof: Option<&CeilingProof>) -> Clause {
    let mut j = Judge::new(
        "5-retention-ceiling",
        "5",
        "Retention ceiling: gone within 90 days of deletion",
        "Backup retention follows the Data Deletion and Retention Policy, with a maximum backup retention of 90 days after data deletion.",
    );
    let ceiling = super::POLICY_CEILING;
    match &ev.retention {
        Ok(r) => {
            j.ev(format!(
                "repository max-retain {} (policy ceiling {} days)",
                days(r.max_retain),
                ceiling.as_secs() / 86_400
            ));
            if r.max_retain > ceiling {
                j.not_met(format!(
                    "the repository's max-retain {} exceeds the policy's {} days",
                    days(r.max_retain),
                    ceiling.as_secs() / 86_400
                ));
            }
            let sources = config
                .files
                .iter()
                .filter(|(_, s)| s.repository == name)
                .map(|(n, s)| (n, s.retention))
                .chain(config.postgres.iter().filter(|(_, s)| s.repository == name).map(|(n, s)| (n, s.retention)));
            for (n, rules) in sources {
                let keep = longest_keep(&rules).unwrap_or(r.default_retain);
                j.ev(format!("source {}: kept at most {}", clean(n, 100), days(keep)));
                if keep > r.max_retain {
                    j.not_met(format!(
                        "source {}: its retention keeps snapshots {}, beyond the repository's max-retain {} (its backups are refused)",
                        clean(n, 100),
                        days(keep),
                        days(r.max_retain)
                    ));
                }
                if keep > ceiling {
                    j.not_met(format!(
                        "source {}: its retention keeps snapshots {}, beyond the policy's {} days",
                        clean(n, 100),
                        days(keep),
                        ceiling.as_secs() / 86_400
                    ));
                }
            }
        }
        Err(e) => j.unknown(format!("the repository's configuration cannot be read: {e}")),
    }
    match proof {
        Some(p) => {
            match p.gone_by {
                Some(g) => j.ev(format!(
                    "proof: data deleted today is gone from every backup by {}; bound {}",
                    t(g),
                    t(p.bound)
                )),
                None => j.ev(format!("proof: no date bounds data deleted today; bound {}", t(p.bound))),
            }
            if !p.holds {
                let first = p
                    .offenders
                    .first()
                    .map(|o| format!("; first: {} {}: {}", o.kind, o.name, o.why))
                    .unwrap_or_default();
                j.not_met(format!(
                    "the ceiling is not proven: {} snapshot(s) or object(s) outlive the bound{}{first}",
                    p.offenders_total,
                    if p.prune.is_none() { " and no prune is scheduled" } else { "" }
                ));
            }
        }
        None => j.unknown("the snapshots or object locks cannot be read: the ceiling cannot be proven"),
    }
    if let Some(runs) = runs_in_period(ev) {
        let prunes: Vec<&&RunRecord> = runs.iter().filter(|r| r.kind == JobKind::Prune).collect();
        match prunes.iter().max_by_key(|r| r.started) {
            Some(last) => {
                j.ev(format!("last prune run: {}", run_line(last)));
                if !last.outcome.is_success() {
                    j.not_met(format!("the last prune run did not succeed: {}", run_line(last)));
                }
            }
            None => j.ev("no prune run recorded in the period"),
        }
    }
    j.done()
}

fn drills_in_period<'a>(ev: &'a Evidence, kinds: &[DrillKind]) -> Option<Vec<&'a DrillReport>> {
    let l = ev.ledger.as_ref().ok()?;
    Some(l.drills.iter().filter(|d| kinds.contains(&d.kind) && d.started >= ev.since && d.started <= ev.now).collect())
}

fn drill_line(d: &DrillReport) -> String {
    let rto = match (d.rto_seconds, d.rto_target_seconds) {
        (Some(r), Some(tg)) => format!(", RTO {r:.1}s (target {tg:.0}s{})", if r <= tg { "" } else { ": over" }),
        (Some(r), None) => format!(", RTO {r:.1}s (no target)"),
        _ => String::new(),
    };
    format!(
        "{} drill {} ({}) at {}: {}{rto}",
        d.kind.as_str(),
        clean(&d.id, 40),
        clean(&d.job, 100),
        t(d.started),
        if d.passed { "passed" } else { "failed" }
    )
}

fn judge_drills(j: &mut Judge, ev: &Evidence, kinds: &[DrillKind], what: &str) {
    let Some(drills) = drills_in_period(ev, kinds) else {
        j.unknown(format!("the ledger cannot be read: {}", ev.ledger.as_ref().err().map_or("", String::as_str)));
        return;
    };
    let passed = drills.iter().filter(|d| d.passed).count();
    j.ev(format!("{} {what}(s) in the period since {}, {passed} passed", drills.len(), t(ev.since)));
    for d in drills.iter().rev().take(MAX_LISTED) {
        j.ev(format!("  {}", drill_line(d)));
        for f in d.failures().iter().take(5) {
            j.ev(format!("    failed check: {}", clean(f, 300)));
        }
        if let Some(e) = &d.error {
            j.ev(format!("    error: {}", clean(e, 300)));
        }
    }
    if passed == 0 {
        j.not_met(format!("no passing {what} in the period since {}", t(ev.since)));
    }
    // The latest drill of each job must have passed: a later failure is not covered by an
    // earlier success.
    let mut jobs: Vec<&str> = drills.iter().map(|d| d.job.as_str()).collect();
    jobs.sort_unstable();
    jobs.dedup();
    for job in jobs {
        if let Some(last) = drills.iter().filter(|d| d.job == job).max_by_key(|d| d.started) {
            if !last.passed {
                j.not_met(format!("the latest {what} of {} failed: {}", clean(job, 100), drill_line(last)));
            }
        }
    }
}

fn recovery_testing(ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "6-recovery-testing",
        "6",
        "Restoration tested; recovery time within target",
        "Backup restoration is tested as part of annual disaster recovery exercises per the Disaster Recovery Plan.",
    );
    judge_drills(&mut j, ev, &[DrillKind::Files, DrillKind::Postgres], "restore drill");
    j.done()
}

fn full_rebuild(ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "6-full-rebuild",
        "6",
        "Full rebuild from immutable backups",
        "Full rebuild testing validates end-to-end recoverability from immutable backups.",
    );
    judge_drills(&mut j, ev, &[DrillKind::Rebuild], "rebuild drill");
    j.done()
}

fn monitoring(config: &Config, ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "7-monitoring",
        "7",
        "Jobs monitored; failed jobs alert",
        "Backup job completion and integrity are monitored through centralized logging. Failed backup jobs trigger alerts for immediate investigation.",
    );
    let a = &config.alerts;
    let targets: Vec<String> = a
        .webhook
        .keys()
        .map(|n| format!("webhook {n}"))
        .chain(a.email.keys().map(|n| format!("email {n}")))
        .chain(a.command.keys().map(|n| format!("command {n}")))
        .map(|s| clean(&s, 100))
        .collect();
    if targets.is_empty() {
        j.not_met("no alert target is configured ([alerts.webhook.NAME], [alerts.email.NAME] or [alerts.command.NAME]): a failed job alerts no one");
    } else {
        j.ev(format!("alert targets: {}", targets.join(", ")));
        let routed =
            a.route.is_empty() || a.route.iter().any(|r| r.kinds.is_empty() || r.kinds.contains(&AlertKind::JobFailed));
        if routed {
            j.ev(if a.route.is_empty() {
                "routes: none, so every event goes to every target"
            } else {
                "a route sends job-failed alerts"
            });
        } else {
            j.not_met("no route sends job-failed alerts to a target");
        }
    }
    for n in a.heartbeat.keys() {
        j.ev(format!("heartbeat target {}", clean(n, 100)));
    }
    if ev.alert_tests.is_empty() {
        j.ev("no `coffer alert test` delivery is recorded in the local state");
    }
    for (target, at) in &ev.alert_tests {
        j.ev(format!("last test delivery to {}: {at}", clean(target, 100)));
    }
    match runs_in_period(ev) {
        Some(runs) => {
            let failed: Vec<&&RunRecord> = runs
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Failed | Outcome::TimedOut | Outcome::Missed))
                .collect();
            j.ev(format!(
                "{} run(s) recorded in the ledger in the period, {} failed, timed out or missed",
                runs.len(),
                failed.len()
            ));
            for r in failed.iter().take(MAX_LISTED) {
                j.ev(format!("  {}", run_line(r)));
            }
        }
        None => {
            j.unknown(format!("the ledger cannot be read: {}", ev.ledger.as_ref().err().map_or("", String::as_str)))
        }
    }
    match &ev.outbox_pending {
        Ok(0) => {}
        Ok(n) => j.ev(format!("{n} record(s) wait in the local outbox for the ledger")),
        Err(e) => j.ev(format!("local state not read: {e}")),
    }
    if let Ok(l) = &ev.ledger {
        j.ev(format!("ledger: {} authentic record(s)", l.records));
        let chain: Vec<&String> =
            l.problems.iter().filter(|p| !p.starts_with("bad-body") && !p.starts_with("newer-format")).collect();
        if !chain.is_empty() {
            j.not_met(format!(
                "the ledger shows {} problem(s) (gaps, forks, unauthentic records), first: {}",
                chain.len(),
                chain[0]
            ));
        }
        let bodies = l.problems.len() - chain.len();
        if bodies > 0 {
            j.ev(format!("{bodies} ledger record(s) whose body this coffer cannot read (listed under problems)"));
        }
    }
    j.done()
}

fn security_alerts(config: &Config, name: &str, ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "7-security-alerts",
        "7",
        "Attempts to change Object Lock alert",
        "Any attempt to modify Object Lock configuration triggers a security alert.",
    );
    let r = config.repository(name).unwrap_or_default();
    if r.security.watch {
        j.ev(format!("security watch: on (audit log and drift every {})", days(r.security.drift_interval)));
    } else {
        j.not_met(format!("the security watch is off ([repositories.{name}.security] watch = false)"));
    }
    let targets = config.alerts.webhook.len() + config.alerts.email.len() + config.alerts.command.len();
    if targets == 0 {
        j.not_met("no alert target: a security event alerts no one");
    }
    if r.security.canary.enabled {
        j.ev(format!("canary: on, `{}`", r.security.canary.schedule));
    } else {
        j.not_met(format!("the immutability canary is off ([repositories.{name}.security.canary] enabled = false)"));
    }
    match runs_in_period(ev) {
        Some(runs) => {
            let canaries: Vec<&&RunRecord> = runs.iter().filter(|r| r.kind == JobKind::Canary).collect();
            match canaries.iter().max_by_key(|r| r.started) {
                Some(last) => {
                    j.ev(format!("{} canary run(s) in the period; last: {}", canaries.len(), run_line(last)));
                    if !last.outcome.is_success() {
                        j.not_met(format!("the last canary run did not pass: {}", run_line(last)));
                    }
                }
                None if r.security.canary.enabled => j.not_met("no canary run recorded in the period"),
                None => {}
            }
        }
        None => {
            j.unknown(format!("the ledger cannot be read: {}", ev.ledger.as_ref().err().map_or("", String::as_str)))
        }
    }
    if let Ok(l) = &ev.ledger {
        let events: Vec<_> = l.security.iter().filter(|(e, _)| e.detected >= ev.since).collect();
        let open = events.iter().filter(|(_, a)| a.is_none()).count();
        j.ev(format!("{} security event(s) in the period, {open} not acknowledged", events.len()));
        for (e, a) in events.iter().rev().take(MAX_LISTED) {
            j.ev(format!(
                "  {} {} {}: {}{}",
                clean(&e.id, 40),
                t(e.detected),
                e.kind.as_str(),
                clean(&e.summary, 300),
                a.as_ref()
                    .map(|a| format!(" (acknowledged by {} at {})", clean(&a.acked_by, 100), t(a.acked_at)))
                    .unwrap_or_default()
            ));
        }
    }
    j.done()
}

fn review(ev: &Evidence) -> Clause {
    let mut j = Judge::new(
        "8-review",
        "8",
        "Review recorded",
        "This policy is reviewed annually or when changes to backup infrastructure occur.",
    );
    if let Ok(l) = &ev.ledger {
        let earlier: Vec<_> = l.audits.iter().filter(|a| a.generated >= ev.since).collect();
        j.ev(format!("{} earlier audit report(s) recorded in the period", earlier.len()));
        for a in earlier.iter().rev().take(MAX_LISTED) {
            j.ev(format!(
                "  {} {} ({}): {} met, {} not met, {} unknown, BLAKE3 {}",
                clean(&a.id, 40),
                t(a.generated),
                clean(&a.format, 10),
                a.met,
                a.not_met,
                a.unknown,
                clean(&a.hash, 64)
            ));
        }
    }
    match &ev.writer {
        Ok(()) => j.ev("this report's BLAKE3 digest is recorded in the repository's ledger (kind audit) as the writer"),
        Err(e) => {
            j.unknown(format!("the writer's credentials do not open the store, so this report cannot be recorded: {e}"))
        }
    }
    j.done()
}

#[cfg(test)]
mod tests;
