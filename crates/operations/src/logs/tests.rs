use super::*;
use crate::event::{AlertKind, JobKind, Outcome, Severity};
use crate::schedule::Schedule;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt as _;

/// A writer into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON objects `f`'s events write, one per line.
fn capture(f: impl FnOnce()) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let buf = Buf::default();
    let b = buf.clone();
    let subscriber = tracing_subscriber::registry()
        .with(json_layer(move || b.clone()))
        .with(tracing_subscriber::filter::LevelFilter::TRACE);
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn spec() -> JobSpec {
    JobSpec {
        id: "home/backup".into(),
        kind: JobKind::Backup,
        source: Some("home".into()),
        repository: "main".into(),
        schedule: Some(Schedule::parse("hourly").unwrap()),
        random_delay: None,
        timeout: Duration::from_secs(60),
        retries: 1,
    }
}

fn record(outcome: Outcome) -> RunRecord {
    RunRecord {
        run_id: "0123456789abcdef".into(),
        finished: Timestamp::from_second(102).unwrap(),
        outcome,
        error_class: Some("transient".into()),
        error: Some("connection reset".into()),
        files: Some(3),
        bytes_read: Some(10),
        bytes_added: Some(7),
        snapshot: Some("abc".into()),
        ..RunRecord::new(
            "home/backup",
            JobKind::Backup,
            Some("home"),
            "main",
            "h",
            Timestamp::from_second(100).unwrap(),
        )
    }
}

#[test]
fn every_event_writes_only_documented_fields_at_the_top_level() {
    let slot = Timestamp::from_second(3600).unwrap();
    let lines = capture(|| {
        run(&record(Outcome::Success));
        run(&record(Outcome::Failed));
        run(&record(Outcome::Missed));
        started(&spec(), 1, Some(slot), true);
        missed(&spec(), slot);
        retry(&spec(), 1, Duration::from_secs(30), "transient", "timed out");
        daemon_started(Path::new("/etc/coffer/coffer.toml"), 3);
        daemon_stopped();
        config_reloaded(Path::new("/etc/coffer/coffer.toml"), 4);
        config_rejected(Path::new("/etc/coffer/coffer.toml"), "coffer.toml:3:1: unknown key");
        job_defined(&spec());
        delivery("ops-hook", true, None);
        delivery("ops-hook", false, Some("HTTP 500"));
        alert(&AlertEvent {
            version: AlertEvent::VERSION,
            id: "1".into(),
            kind: AlertKind::JobFailed,
            severity: Severity::Error,
            problem: "job-failed:home/backup".into(),
            resolved: false,
            time: slot,
            host: "h".into(),
            job: Some("home/backup".into()),
            source: None,
            repository: None,
            summary: "home/backup failed".into(),
            details: Default::default(),
        });
    });
    assert_eq!(lines.len(), 14, "{lines:#?}");
    for line in &lines {
        for key in FORMATTER_FIELDS {
            assert!(line.contains_key(*key), "{key} missing in {line:?}");
        }
        for key in line.keys() {
            assert!(
                FIELDS.contains(&key.as_str()) || FORMATTER_FIELDS.contains(&key.as_str()),
                "undocumented field {key} in {line:?}"
            );
            assert!(!line[key].is_object(), "nested {key} in {line:?}");
        }
    }
    let ok = &lines[0];
    assert_eq!(ok["level"], "INFO");
    assert_eq!(ok["message"], "job home/backup success");
    assert_eq!(ok["job"], "home/backup");
    assert_eq!(ok["kind"], "backup");
    assert_eq!(ok["source"], "home");
    assert_eq!(ok["repository"], "main");
    assert_eq!(ok["outcome"], "success");
    assert_eq!(ok["duration_ms"], 2000);
    assert_eq!(ok["bytes_added"], 7);
    assert_eq!(ok["snapshot"], "abc");
    assert!(ok["timestamp"].as_str().unwrap().parse::<Timestamp>().is_ok(), "{ok:?}");
    let failed = &lines[1];
    assert_eq!(failed["level"], "ERROR");
    assert_eq!(failed["error_class"], "transient");
    assert_eq!(failed["error"], "connection reset");
    assert_eq!(lines[3]["attempt"], 1);
    assert_eq!(lines[3]["slot"], "1970-01-01T01:00:00Z");
    assert_eq!(lines[3]["late"], true);
    assert_eq!(lines[5]["delay_ms"], 30_000);
    assert_eq!(lines[12]["target"], "ops-hook");
    assert_eq!(lines[12]["outcome"], "failed");
}

#[test]
fn every_documented_field_is_documented_in_the_monitoring_page() {
    let doc = include_str!("../../../../docs/monitoring.md");
    for key in FIELDS.iter().chain(FORMATTER_FIELDS) {
        assert!(doc.contains(&format!("`{key}`")), "docs/monitoring.md does not document the log field `{key}`");
    }
}
