//! `coffer audit` end to end on a real local vault: a compliant setup (a files source backed
//! up, verify and prune scheduled, a webhook target that received a test, the canary run,
//! a passing restore drill and rebuild in the period) reports every clause met and exits 0,
//! records the report's BLAKE3 digest in the ledger, and renders in headless Chromium; then
//! setups that each break one clause (no alert target, no drill in the period, governance
//! instead of compliance, an object locked beyond the ceiling by the admin, versioning
//! suspended on moto) report that clause not met with its evidence, exit 10. Hostile names
//! (a snapshot path, tag and host with `<script>`) are escaped.

use crate::Sandbox;
use crate::repo_util::{PASSWORD, Repo};
use coffer_operations::drill::{CheckOutcome, DrillKind, DrillReport};
use coffer_testkit::http::{Answer, Receiver};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a setup leaves out or changes.
#[derive(Clone, Copy)]
struct Opts {
    alerts: bool,
    /// Age of the drills recorded, days (none: no drill at all).
    drill_age_days: Option<i64>,
    governance: bool,
    /// A hostile snapshot host, tag and source path.
    hostile: bool,
}

const COMPLIANT: Opts = Opts { alerts: true, drill_age_days: Some(1), governance: false, hostile: false };

struct Setup {
    repo: Repo,
    config: PathBuf,
    _hook: Receiver,
}

impl Setup {
    fn coffer<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(&self, args: I) -> crate::Cmd {
        self.repo.sb.coffer(["--config"]).arg(&self.config).args(args)
    }

    /// `coffer audit --format json --out FILE`: exit code and the report.
    fn audit(&self) -> (Option<i32>, Value, String) {
        let out = self.repo.sb.path("report.json");
        let run = self.coffer(["audit", "--format", "json", "--out"]).arg(&out).run();
        let doc: Value = serde_json::from_slice(&std::fs::read(&out).expect("report written")).expect("report is JSON");
        (run.code, doc, run.stderr)
    }
}

fn drill(kind: DrillKind, job: &str, age_days: i64) -> DrillReport {
    let started = coffer_store::Clock::system().now() - jiff::SignedDuration::from_hours(24 * age_days);
    let mut r = DrillReport::new(kind, job, "main", "drill-host", started);
    r.check("content", Some("home"), CheckOutcome::Passed, "2 files, every byte matches");
    r.rto_seconds = Some(1.5);
    r.rto_target_seconds = Some(600.0);
    r.finish(started + jiff::SignedDuration::from_secs(2));
    assert!(r.passed);
    r
}

/// A policy file on a local vault, the jobs run by hand as the daemon would run them.
fn setup(o: Opts) -> Setup {
    let repo = if o.governance {
        let r = Repo { sb: Sandbox::new() };
        r.c(["init", "--mode", "governance"]).ok();
        r
    } else {
        Repo::init()
    };
    let sb = &repo.sb;
    let src = if o.hostile { sb.path("<script>alert(1)<") } else { sb.path("src") };
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("b.txt"), b"beta").unwrap();
    let hook = Receiver::start(Answer::Status(200));
    let pw = sb.file("password", PASSWORD.as_bytes());
    let mut text = format!(
        "[daemon]\nstate-dir = {:?}\ntimezone = \"UTC\"\n\n[repositories.main]\nlocation = {:?}\npassword = {{ file = {:?} }}\n\
         [repositories.main.verify]\nschedule = \"daily 01:00\"\n[repositories.main.prune]\nschedule = \"daily 00:30\"\n\n\
         [files.home]\nrepository = \"main\"\npaths = [{:?}]\nschedule = \"hourly\"\ntags = [{:?}]\n[files.home.retention]\nretain = \"30d\"\n",
        sb.path("state").display().to_string(),
        repo.vault().display().to_string(),
        pw.display().to_string(),
        src.display().to_string(),
        if o.hostile { "<script>alert('tag')</script>" } else { "daily" },
    );
    if o.hostile {
        text = text.replace("timezone = \"UTC\"\n", "timezone = \"UTC\"\nhost = \"<script>alert('host')</script>\"\n");
    }
    if o.alerts {
        text.push_str(&format!("\n[alerts.webhook.ops]\nurl = {:?}\n", format!("{}/hook", hook.url())));
    }
    let config = sb.file("coffer.toml", text.as_bytes());
    let s = Setup { repo, config, _hook: hook };
    s.coffer(["run", "home/backup"]).ok();
    s.coffer(["run", "main/canary"]).ok();
    s.coffer(["run", "main/prune"]).ok();
    if o.alerts {
        s.coffer(["alert", "test", "ops"]).ok();
    }
    if let Some(age) = o.drill_age_days {
        // The drill reports reach the ledger as a drill's do: through the local outbox
        // (the audit flushes it as the writer before reading).
        let config = coffer_operations::Config::load(&s.config).unwrap();
        let state = coffer_operations::State::open(config.daemon.state_dir.as_deref().unwrap()).unwrap();
        for r in [drill(DrillKind::Files, "home/drill", age), drill(DrillKind::Rebuild, "main/rebuild", age)] {
            state
                .record_other(
                    "main",
                    coffer_operations::ledger::DRILL,
                    "drill-host",
                    &serde_json::to_value(&r).unwrap(),
                )
                .unwrap();
        }
    }
    s
}

fn clauses(doc: &Value) -> &Vec<Value> {
    doc["repositories"][0]["clauses"].as_array().expect("clauses")
}

fn clause<'a>(doc: &'a Value, id: &str) -> &'a Value {
    clauses(doc).iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no clause {id} in {doc:#}"))
}

fn lines(c: &Value, field: &str) -> String {
    c[field].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

/// Every clause but those in `not_met` is met; those are not met, with a reason containing
/// the given text.
#[track_caller]
fn assert_only_not_met(doc: &Value, not_met: &[(&str, &str)]) {
    for c in clauses(doc) {
        let id = c["id"].as_str().unwrap();
        match not_met.iter().find(|(n, _)| *n == id) {
            Some((_, why)) => {
                assert_eq!(c["status"], "not-met", "{id}: {c:#}");
                assert!(lines(c, "reasons").contains(why), "{id}: want a reason with {why:?}: {c:#}");
            }
            None => assert_eq!(c["status"], "met", "{id} should be met: {c:#}"),
        }
    }
}

const CLAUSE_IDS: [&str; 13] = [
    "3-database-pitr",
    "3-files-versioned-locked",
    "4.1-object-lock",
    "4.1-compliance-mode",
    "4.2-versioning",
    "4.3-separation-of-duties",
    "5-schedule",
    "5-retention-ceiling",
    "6-recovery-testing",
    "6-full-rebuild",
    "7-monitoring",
    "7-security-alerts",
    "8-review",
];

fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh").args(["-c", &format!("command -v {c}")]).output() {
            let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !p.is_empty() {
                return PathBuf::from(p);
            }
        }
    }
    panic!(
        "chromium is not installed: the HTML report is rendered in headless Chromium; install it with `apt-get install chromium`"
    );
}

/// The DOM Chromium builds from the report file.
fn render_in_chromium(html: &Path, home: &Path) -> String {
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .env("HOME", home)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("DOM is UTF-8")
}

#[test]
fn policy_audit_compliant_setup_is_all_met_recorded_and_renders_in_chromium() {
    let s = setup(COMPLIANT);
    let (code, doc, stderr) = s.audit();
    assert_eq!(code, Some(0), "{stderr}\n{doc:#}");
    assert_eq!(doc["version"], 1);
    assert_eq!(clauses(&doc).iter().map(|c| c["id"].as_str().unwrap()).collect::<Vec<_>>(), CLAUSE_IDS);
    assert_only_not_met(&doc, &[]);
    assert_eq!((doc["met"].as_u64(), doc["not_met"].as_u64(), doc["unknown"].as_u64()), (Some(13), Some(0), Some(0)));
    // The evidence says what was read.
    assert!(lines(clause(&doc, "4.1-compliance-mode"), "evidence").contains("repository lock mode: compliance"));
    assert!(lines(clause(&doc, "6-recovery-testing"), "evidence").contains("1 restore drill(s) in the period"));
    assert!(lines(clause(&doc, "6-full-rebuild"), "evidence").contains("RTO 1.5s (target 600s)"));
    assert!(lines(clause(&doc, "7-monitoring"), "evidence").contains("alert targets: webhook ops"));
    assert!(lines(clause(&doc, "7-monitoring"), "evidence").contains("last test delivery to ops"));
    assert!(
        lines(clause(&doc, "7-security-alerts"), "evidence")
            .contains("canary run(s) in the period; last: main/canary success")
    );
    let proof = &doc["repositories"][0]["ceiling"];
    assert_eq!(proof["holds"], true, "{proof:#}");
    assert_eq!(proof["offenders_total"], 0);
    assert_eq!(proof["snapshots"], 1);
    let gone = crate::ts(&proof["gone_by"]);
    let bound = crate::ts(&proof["bound"]);
    assert!(gone <= bound, "{gone} > {bound}");
    // 30 days' retention: locked to the midnight after expiry + 12 h, pruned at 00:30.
    let now = crate::ts(&doc["generated"]);
    let days = gone.duration_since(now).as_secs_f64() / 86_400.0;
    assert!((30.0..32.1).contains(&days), "gone in {days} days");

    // The HTML report, recorded in the ledger by its digest.
    let html = s.repo.sb.path("report.html");
    let run = s.coffer(["--json", "audit", "--out"]).arg(&html).ok().json();
    assert_eq!(run["format"], "html");
    assert_eq!(run["status"], "met");
    assert_eq!(run["recorded"], serde_json::json!(["main"]));
    let bytes = std::fs::read(&html).unwrap();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    assert_eq!(run["hash"], hash.as_str());
    let view = s.repo.c(["ledger", "--json"]).ok().json();
    let text = view.to_string();
    assert!(text.contains(&hash) || ledger_has_audit(&s, &hash), "the digest is in the ledger: {text}");
    let page = String::from_utf8(bytes).unwrap();
    assert!(
        !page.contains("<script") && !page.contains("http://") && !page.contains("https://"),
        "self-contained, no script"
    );
    assert!(page.contains("@media print"));

    let dom = render_in_chromium(&html, &s.repo.sb.home());
    for id in CLAUSE_IDS {
        let row = dom
            .split("<tr>")
            .find(|r| r.contains(&format!("href=\"#main-{id}\"")))
            .unwrap_or_else(|| panic!("clause {id} not in the rendered summary: {dom}"));
        assert!(row.contains("class=\"status met\">MET<"), "{id}: {row}");
        assert!(dom.contains(&format!("id=\"main-{id}\"")), "clause {id}'s evidence section");
    }
    assert!(dom.contains("Retention ceiling proof"));
    assert!(dom.contains("HOLDS"));
    // Printable: Chromium prints it to PDF.
    let pdf = s.repo.sb.path("report.pdf");
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-pdf-header-footer"])
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .env("HOME", s.repo.sb.home())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF"));
}

/// The ledger's audit records, read with the library (any reader with the password).
fn ledger_has_audit(s: &Setup, hash: &str) -> bool {
    let config = coffer_operations::Config::load(&s.config).unwrap();
    let repo = coffer_operations::open::open_repository(
        &config,
        "main",
        coffer_store::Role::Reader,
        coffer_store::Clock::system(),
    )
    .unwrap();
    repo.ledger().unwrap().entries.iter().any(|e| {
        e.record.kind == coffer_operations::ledger::AUDIT
            && e.record.body["hash"] == hash
            && e.record.body["format"] == "html"
    })
}

#[test]
fn policy_audit_no_alert_target_is_not_met() {
    let s = setup(Opts { alerts: false, ..COMPLIANT });
    let (code, doc, stderr) = s.audit();
    assert_eq!(code, Some(10), "{stderr}");
    assert!(stderr.contains("coffer: error: audit: 2 clause(s) not met"), "{stderr}");
    assert_only_not_met(
        &doc,
        &[("7-monitoring", "no alert target is configured"), ("7-security-alerts", "no alert target")],
    );
}

#[test]
fn policy_audit_no_drill_in_the_period_is_not_met() {
    // Drills 120 days old: outside the default 90-day period.
    let s = setup(Opts { drill_age_days: Some(120), ..COMPLIANT });
    let (code, doc, _) = s.audit();
    assert_eq!(code, Some(10));
    assert_only_not_met(
        &doc,
        &[
            ("6-recovery-testing", "no passing restore drill in the period"),
            ("6-full-rebuild", "no passing rebuild drill"),
        ],
    );
    assert!(lines(clause(&doc, "6-recovery-testing"), "evidence").contains("0 restore drill(s) in the period"));
    // A longer period takes them in.
    let run = s.coffer(["audit", "--format", "json", "--since", "150d"]).run();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn policy_audit_governance_instead_of_compliance_is_not_met() {
    let s = setup(Opts { governance: true, ..COMPLIANT });
    let (code, doc, _) = s.audit();
    assert_eq!(code, Some(10));
    assert_only_not_met(&doc, &[("4.1-compliance-mode", "locks its objects in governance mode, not compliance")]);
    let c = clause(&doc, "4.1-compliance-mode");
    assert!(lines(c, "evidence").contains("repository lock mode: governance"), "{c:#}");
    assert!(lines(c, "reasons").contains("under an active governance lock"), "{c:#}");
}

#[test]
fn policy_audit_an_object_locked_beyond_the_ceiling_breaks_the_proof() {
    let s = setup(COMPLIANT);
    let packs: Vec<Value> = s.repo.sb.versions("data/");
    let pack = &packs[0];
    let (key, version) = (pack["key"].as_str().unwrap(), pack["version"].as_str().unwrap());
    let until = (coffer_store::Clock::system().now() + jiff::SignedDuration::from_hours(24 * 200)).as_second();
    let until = jiff::Timestamp::from_second(until).unwrap().to_string();
    // The admin extends a compliance lock (extending is allowed; shortening never is).
    s.repo.sb.v(["--role", "admin", "retention", key, "--version", version, "--until", &until]).ok();
    let (code, doc, _) = s.audit();
    assert_eq!(code, Some(10));
    assert_only_not_met(
        &doc,
        &[("5-retention-ceiling", "the ceiling is not proven: 1 snapshot(s) or object(s) outlive the bound")],
    );
    let proof = &doc["repositories"][0]["ceiling"];
    assert_eq!(proof["holds"], false);
    assert_eq!(proof["offenders_total"], 1);
    let o = &proof["offenders"][0];
    assert_eq!(o["kind"], "object");
    assert!(o["name"].as_str().unwrap().starts_with(key), "{o}");
    assert_eq!(crate::ts(&o["until"]), until.parse::<jiff::Timestamp>().unwrap());
    assert!(crate::ts(&proof["gone_by"]) > crate::ts(&proof["bound"]));
}

#[test]
fn policy_audit_hostile_names_are_escaped_in_html_and_markdown() {
    let s = setup(Opts { hostile: true, ..COMPLIANT });
    let html = s.repo.sb.path("report.html");
    s.coffer(["audit", "--out"]).arg(&html).ok();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "a raw <script> in the report");
    for escaped in
        ["&lt;script&gt;alert(&#39;host&#39;)&lt;", "&lt;script&gt;alert(&#39;tag&#39;)", "&lt;script&gt;alert(1)&lt;"]
    {
        assert!(page.contains(escaped), "{escaped} not in the report");
    }
    let dom = render_in_chromium(&html, &s.repo.sb.home());
    assert!(!dom.contains("<script"), "Chromium built a script element");
    assert!(dom.contains("&lt;script&gt;alert('host')"), "the host shows as text");
    let md = s.coffer(["audit", "--format", "md"]).ok().stdout_text();
    assert!(!md.contains("<script"), "a raw <script> in the Markdown");
    assert!(md.contains("&lt;script&gt;alert('tag')&lt;/script&gt;"));
}

#[test]
fn policy_audit_versioning_suspended_on_moto_is_not_met() {
    use coffer_testkit::s3::{S3Server, ServerKind, test_credentials};
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("audit-versioning");
    let sb = Sandbox::new();
    let url = server.url(&bucket, "");
    let creds = |role: coffer_store::Role| {
        let c = test_credentials(ServerKind::Moto, role);
        sb.file(
            &format!("{role}.toml"),
            format!("access-key = {:?}\nsecret-key = {:?}\n", c.access_key, c.secret_key.expose()).as_bytes(),
        )
    };
    let writer = creds(coffer_store::Role::Writer);
    sb.coffer(["--repo", &url, "--credentials"]).arg(&writer).env("COFFER_PASSWORD", PASSWORD).args(["init"]).ok();
    let pw = sb.file("password", PASSWORD.as_bytes());
    let text = format!(
        "[daemon]\nstate-dir = {:?}\n[repositories.main]\nlocation = {:?}\npassword = {{ file = {:?} }}\n[repositories.main.credentials]\nwriter = {:?}\nreader = {:?}\nauditor = {:?}\n",
        sb.path("state").display().to_string(),
        url,
        pw.display().to_string(),
        writer.display().to_string(),
        writer.display().to_string(),
        writer.display().to_string(),
    );
    let config = sb.file("coffer.toml", text.as_bytes());
    let audit = |sb: &Sandbox| {
        let out = sb.path("r.json");
        let run = sb
            .coffer(["--config"])
            .arg(&config)
            .args(["audit", "--repository", "main", "--format", "json", "--out"])
            .arg(&out)
            .run();
        (run, serde_json::from_slice::<Value>(&std::fs::read(&out).unwrap()).unwrap())
    };
    let (_, before) = audit(&sb);
    let c = clause(&before, "4.2-versioning");
    assert_eq!(c["status"], "met", "{c:#}");
    // moto lets versioning be suspended on a lock bucket (AWS refuses): straight at the
    // server, as the admin.
    let admin = server.store(&bucket, "", coffer_store::Role::Admin);
    let suspended = aws_sdk_s3::types::VersioningConfiguration::builder()
        .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
        .build();
    admin
        .block_on(admin.client().put_bucket_versioning().bucket(&bucket).versioning_configuration(suspended).send())
        .expect("moto suspends versioning");
    let (run, after) = audit(&sb);
    assert_eq!(run.code, Some(10), "{}", run.stderr);
    let c = clause(&after, "4.2-versioning");
    assert_eq!(c["status"], "not-met", "{c:#}");
    assert!(lines(c, "reasons").contains("versioning is suspended, not enabled"), "{c:#}");
    assert_eq!(clause(&after, "3-files-versioned-locked")["status"], "not-met");
}
