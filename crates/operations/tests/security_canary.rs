//! The immutability canary against real stores: a local vault (every probe refused, the
//! record listing them, each refusal in the vault's audit log announced beforehand, verify
//! untroubled by the canary objects), LocalStack and moto (S3 servers that accept some of
//! what AWS refuses: the canary must say exactly which).

use coffer_operations::config::Config;
use coffer_operations::event::{JobKind, Outcome, RunRecord};
use coffer_operations::jobs::{JobContext, JobSpec, SECURITY_CLASS, run_job};
use coffer_operations::security::{SecurityEvent, SecurityKind, SecuritySink, take_expected};
use coffer_operations::state::State;
use coffer_repository::{InitOptions, JobControl, Repository};
use coffer_store::probe::RESERVED_PREFIX;
use coffer_store::{
    Clock, DefaultRetention, LocalVault, LockConfig, ObjectStore, PutOptions, Retention, RetentionMode, Role,
    VaultOptions,
};
use coffer_testkit::s3::{S3Server, ServerKind, test_credentials};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASSWORD: &str = "canary test password";
const DAY: Duration = Duration::from_secs(86_400);

struct Fixture {
    dir: tempfile::TempDir,
    events: Arc<Mutex<Vec<SecurityEvent>>>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
        Self { dir, events: Arc::default() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, location: &str, credentials: &str) -> Config {
        let text = format!(
            "[repositories.main]\nlocation = {location:?}\npassword = {{ file = {:?} }}\n{credentials}\
             [repositories.main.verify]\nschedule = \"daily\"\n",
            self.path("password").display().to_string(),
        );
        Config::parse(&text, Path::new("coffer.toml")).unwrap()
    }

    fn ctx(&self, config: &Config) -> JobContext {
        let events = Arc::clone(&self.events);
        JobContext {
            config: Arc::new(config.clone()),
            state_dir: self.path("state"),
            host: "testhost".into(),
            clock: Clock::from_env(),
            security: Some(SecuritySink(Arc::new(move |e| events.lock().unwrap().push(e)))),
        }
    }

    fn canary(&self, config: &Config) -> RunRecord {
        let spec = JobSpec {
            id: "main/canary".into(),
            kind: JobKind::Canary,
            source: None,
            repository: "main".into(),
            schedule: None,
            random_delay: None,
            timeout: Duration::from_secs(600),
            retries: 0,
        };
        let r = run_job(&self.ctx(config), &spec, &JobControl::none());
        assert_eq!((r.job.as_str(), r.kind), ("main/canary", JobKind::Canary));
        r
    }

    fn events(&self) -> Vec<SecurityEvent> {
        self.events.lock().unwrap().clone()
    }
}

/// The probe lines of a record, in order.
fn probe_lines(r: &RunRecord) -> Vec<String> {
    let n: usize = r.details["probes"].parse().unwrap();
    (1..=n).map(|i| r.details[&format!("probe_{i}")].clone()).collect()
}

/// `(role, what)` of every probe line that says `SUCCEEDED`.
fn succeeded(r: &RunRecord) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = probe_lines(r)
        .iter()
        .filter(|l| l.contains("→ SUCCEEDED"))
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_owned(), w.next().unwrap().to_owned())
        })
        .collect();
    out.sort();
    out
}

/// A vault with a default retention (compliance, one day) and a repository.
fn vault(f: &Fixture) -> PathBuf {
    let dir = f.path("vault");
    let opts = VaultOptions {
        default_retention: Some(DefaultRetention { mode: RetentionMode::Compliance, period: DAY }),
        ..VaultOptions::default()
    };
    let v = LocalVault::init(&dir, &opts).unwrap();
    let store = Arc::new(v.login(&v.read_credentials(Role::Writer).unwrap()).unwrap());
    let init = InitOptions {
        kdf: coffer_repository::KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
        ..InitOptions::default()
    };
    Repository::init(store, "vault", "", PASSWORD.as_bytes(), &init, Clock::from_env()).unwrap();
    dir
}

#[test]
fn security_canary_vault_refuses_every_probe_and_the_record_lists_them() {
    let f = Fixture::new();
    let dir = vault(&f);
    let config = f.config(dir.to_str().unwrap(), "");
    let r = f.canary(&config);
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    // Four roles × 9 probes, the admin × 7 (it may lift a hold and change the default).
    let lines = probe_lines(&r);
    assert_eq!(lines.len(), 43, "{lines:#?}");
    assert_eq!((r.details["refused"].as_str(), r.details["succeeded"].as_str()), ("43", "0"));
    assert_eq!(r.details["skipped_roles"], "none");
    assert_eq!(r.details["default_retention_ok"], "true", "{}", r.details["default_retention"]);
    assert!(r.details["default_retention"].starts_with("default compliance 1d: compliance until"), "{r:#?}");
    // By kind then role: the writer may not delete at all, the pruner may but the lock holds.
    assert_eq!(lines[0], "writer delete-version → refused (refused)");
    assert_eq!(lines[2], "pruner delete-version → refused (locked)");
    assert!(lines.contains(&"pruner delete-version-bypass → refused (locked)".to_owned()), "{lines:#?}");
    assert!(lines.contains(&"admin delete-version-bypass → refused (refused)".to_owned()), "{lines:#?}");
    assert!(lines.contains(&"writer legal-hold-off → refused (refused)".to_owned()), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.starts_with("admin legal-hold-off")), "{lines:#?}");
    assert!(lines.contains(&"admin suspend-versioning → refused (invalid)".to_owned()), "{lines:#?}");
    assert!(lines.contains(&"admin disable-object-lock → refused (invalid)".to_owned()), "{lines:#?}");
    assert!(lines.contains(&"writer shorten-retention → refused (locked)".to_owned()), "{lines:#?}");
    assert!(lines.contains(&"admin compliance-to-governance → refused (locked)".to_owned()), "{lines:#?}");
    assert!(lines.contains(&"auditor remove-retention → refused (refused)".to_owned()), "{lines:#?}");
    assert!(f.events().is_empty(), "{:#?}", f.events());

    // Every refusal in the audit log was announced, and each announcement excuses one.
    let v = LocalVault::open(&dir).unwrap();
    let auditor = v.login(&v.read_credentials(Role::Auditor).unwrap()).unwrap();
    let log = auditor.audit_log(0, 10_000).unwrap();
    let denied: Vec<_> = log.iter().filter(|e| e.outcome == "denied").collect();
    assert_eq!(denied.len(), 43, "{denied:#?}");
    let state = State::open(&f.path("state")).unwrap();
    let now = Clock::from_env().now();
    for e in &denied {
        assert!(e.key.as_deref().is_none_or(|k| k.starts_with(RESERVED_PREFIX)), "{e:?}");
        assert!(
            take_expected(&state, dir.to_str().unwrap(), &e.principal, &e.action, e.key.as_deref(), e.time, now)
                .unwrap(),
            "not announced: {e:?}"
        );
    }
    assert!(state.scan("canary-expect:").unwrap().is_empty(), "announcements left over");
    // The canary's lock is intact; the held object keeps its hold.
    let canary_key = r.details["canary"].split(' ').next().unwrap();
    let meta = auditor.head(canary_key, None).unwrap();
    assert_eq!(meta.retention.map(|r| r.mode), Some(RetentionMode::Compliance));
    assert!(auditor.head("coffer-security/canary/held", None).unwrap().legal_hold);

    // A second round reuses the held object; verify sees nothing wrong with the canaries.
    let r2 = f.canary(&config);
    assert_eq!(r2.outcome, Outcome::Success, "{r2:#?}");
    assert_eq!(r2.details["held"], r.details["held"]);
    assert_eq!(r2.details["expired_removed"], "0");
    let verify = coffer_operations::jobs::jobs(&config).into_iter().find(|j| j.id == "main/verify").unwrap();
    let v = run_job(&f.ctx(&config), &verify, &JobControl::none());
    assert_eq!(v.outcome, Outcome::Success, "{v:#?}");
    assert_eq!((v.details["problems"].as_str(), v.details["findings"].as_str()), ("0", "0"));
}

#[test]
fn security_canary_without_the_writer_cannot_run_and_a_missing_role_is_skipped() {
    let f = Fixture::new();
    let dir = vault(&f);
    std::fs::remove_file(dir.join("credentials/reader.toml")).unwrap();
    let config = f.config(dir.to_str().unwrap(), "");
    let r = f.canary(&config);
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    assert!(r.details["skipped_roles"].starts_with("reader (credentials not available"), "{r:#?}");
    assert_eq!(r.details["probes"], "34");
    std::fs::remove_file(dir.join("credentials/writer.toml")).unwrap();
    let r = f.canary(&config);
    assert_eq!(r.outcome, Outcome::Failed, "{r:#?}");
    assert!(r.error.as_deref().unwrap().starts_with("the canary needs the writer's credentials"), "{r:#?}");
}

#[test]
fn security_canary_pruner_removes_expired_canaries_only() {
    let f = Fixture::new();
    let dir = vault(&f);
    let clock = Clock::manual(Clock::system().now());
    let v = LocalVault::open_with_clock(&dir, clock.clone()).unwrap();
    let writer = v.login(&v.read_credentials(Role::Writer).unwrap()).unwrap();
    let pruner = v.login(&v.read_credentials(Role::Pruner).unwrap()).unwrap();
    let until = clock.now() + jiff::SignedDuration::from_hours(24);
    let locked = |hold| PutOptions {
        retention: Some(Retention { mode: RetentionMode::Compliance, until }),
        legal_hold: hold,
        create_only: true,
    };
    writer.put("coffer-security/canary/old", b"c", &locked(false)).unwrap();
    writer.put("coffer-security/canary/held", b"c", &locked(true)).unwrap();
    writer.put("coffer-security/canary/new", b"c", &locked(false)).unwrap();
    writer.put("snapshots/not-a-canary", b"c", &locked(false)).unwrap();
    let mut notes = Vec::new();
    let current = ["coffer-security/canary/new"];
    let rm = |notes: &mut Vec<String>| {
        coffer_operations::security::canary::remove_expired(&pruner, &current, clock.now(), notes)
    };
    assert_eq!(rm(&mut notes), 0, "all locked");
    clock.advance(Duration::from_secs(86_400 + 600));
    assert_eq!(rm(&mut notes), 1, "{notes:?}");
    assert!(notes.is_empty(), "{notes:?}");
    let keys: Vec<String> = pruner.list_versions("", None, 100).unwrap().items.into_iter().map(|v| v.key).collect();
    let keys: Vec<&String> =
        keys.iter().filter(|k| k.starts_with(RESERVED_PREFIX) || k.starts_with("snapshots/")).collect();
    assert_eq!(keys, ["coffer-security/canary/held", "coffer-security/canary/new", "snapshots/not-a-canary"]);
}

/// A bucket on `server` with a default retention (compliance, one day) set while empty (moto
/// refuses it later), and each role's credentials file.
fn s3_config(f: &Fixture, server: &S3Server, roles: &[Role]) -> (Config, String) {
    let bucket = server.new_bucket("coffer-canary");
    let admin = server.store(&bucket, "", Role::Admin);
    admin
        .put_lock_config(&LockConfig {
            enabled: true,
            default_retention: Some(DefaultRetention { mode: RetentionMode::Compliance, period: DAY }),
        })
        .unwrap();
    let mut creds = String::from("[repositories.main.credentials]\n");
    for &role in roles {
        let c = test_credentials(server.kind(), role);
        let file = f.path(&format!("{role}.toml"));
        std::fs::write(&file, format!("access-key = {:?}\nsecret-key = {:?}\n", c.access_key, c.secret_key.expose()))
            .unwrap();
        creds.push_str(&format!("{role} = {:?}\n", file.display().to_string()));
    }
    (f.config(&server.url(&bucket, "host1/"), &creds), bucket)
}

#[test]
fn security_canary_localstack_holds_its_locks_but_checks_no_permissions() {
    let server = S3Server::start(ServerKind::LocalStack);
    let f = Fixture::new();
    // coffer.toml names no admin credentials: the daemon never holds them.
    let (config, bucket) = s3_config(&f, &server, &[Role::Writer, Role::Reader, Role::Pruner, Role::Auditor]);
    let r = f.canary(&config);
    assert_eq!(r.details["skipped_roles"], "admin (no credentials file in coffer.toml)", "{r:#?}");
    assert_eq!(r.details["probes"], "36", "{r:#?}");
    assert_eq!(r.details["default_retention_ok"], "true", "{}", r.details["default_retention"]);
    // Every lock held, for every role. LocalStack checks no IAM ("no-auth"), so what only
    // permissions forbid — lifting a legal hold, changing the lock configuration — went
    // through for every role that asked: exactly those, and the canary says so.
    let mut expected: Vec<(String, String)> = Vec::new();
    for role in ["auditor", "pruner", "reader", "writer"] {
        expected.push((role.into(), "change-lock-config".into()));
        expected.push((role.into(), "legal-hold-off".into()));
    }
    expected.sort();
    assert_eq!(succeeded(&r), expected, "{r:#?}");
    assert_eq!((r.outcome, r.error_class.as_deref()), (Outcome::Failed, Some(SECURITY_CLASS)));
    let events = f.events();
    assert_eq!(events.len(), 8, "{events:#?}");
    assert!(events.iter().all(|e| e.kind == SecurityKind::CanaryFailed && e.layer == "canary"));
    let hold = events.iter().find(|e| e.role.as_deref() == Some("reader") && e.details["probe"] == "legal-hold-off");
    let hold = hold.expect("the reader's hold removal");
    assert_eq!(hold.key.as_deref(), Some("coffer-security/canary/held"));
    assert!(hold.summary.starts_with("this store does not enforce immutability: reader could legal hold off"));
    // The canaries live under the repository's prefix, locked.
    let reader = server.store(&bucket, "host1/", Role::Reader);
    let canary_key = r.details["canary"].split(' ').next().unwrap();
    let meta = reader.head(canary_key, None).unwrap();
    assert_eq!(meta.retention.map(|r| r.mode), Some(RetentionMode::Compliance));
    assert!(server.store(&bucket, "", Role::Reader).head(&format!("host1/{canary_key}"), None).is_ok());
}

#[test]
fn security_canary_moto_lets_a_compliance_lock_be_shortened_and_the_canary_says_so() {
    let server = S3Server::start(ServerKind::Moto);
    let f = Fixture::new();
    let (config, bucket) = s3_config(&f, &server, &[Role::Writer]);
    let r = f.canary(&config);
    assert_eq!((r.outcome, r.error_class.as_deref()), (Outcome::Failed, Some(SECURITY_CLASS)), "{r:#?}");
    assert!(r.details["skipped_roles"].starts_with("reader (no credentials file"), "{r:#?}");
    // moto 5.2.5 keeps a compliance lock against deletes but lets it be shortened,
    // downgraded and removed, lets versioning be suspended, and (auth off) lets the writer
    // lift a legal hold: exactly those.
    let got: Vec<(String, String)> = succeeded(&r);
    let expected: Vec<(String, String)> =
        ["compliance-to-governance", "legal-hold-off", "remove-retention", "shorten-retention", "suspend-versioning"]
            .iter()
            .map(|w| ("writer".to_owned(), (*w).to_owned()))
            .collect();
    assert_eq!(got, expected, "{r:#?}");
    assert_eq!(r.details["probe_4"], "writer suspend-versioning → SUCCEEDED; undone by writer at once");
    assert_eq!(r.details["probe_1"], "writer delete-version → refused (refused)");
    let events = f.events();
    assert_eq!(events.len(), 5, "{events:#?}");
    let shorten = events.iter().find(|e| e.details["probe"] == "shorten-retention").expect("a shorten event");
    assert_eq!(shorten.kind, SecurityKind::CanaryFailed);
    assert_eq!(shorten.role.as_deref(), Some("writer"));
    assert_eq!(
        shorten.principal.as_deref(),
        Some(test_credentials(ServerKind::Moto, Role::Writer).access_key.as_str())
    );
    assert_eq!(shorten.action.as_deref(), Some("put-retention"));
    let canary_key = r.details["canary"].split(' ').next().unwrap();
    assert_eq!(shorten.key.as_deref(), Some(canary_key));
    assert!(shorten.details["evidence"].starts_with("left as evidence"), "{shorten:#?}");
    // The evidence: the canary's lock is no longer the day it was put with.
    let writer = server.store(&bucket, "host1/", Role::Writer);
    let meta = writer.head(canary_key, None).unwrap();
    assert_eq!(meta.retention, None, "the probes' effect is left as it is: {meta:?}");
}
