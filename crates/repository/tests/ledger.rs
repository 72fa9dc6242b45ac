//! The job ledger on a real local vault: appends chain, a rogue writer's forged record is
//! reported and ignored, a record removed before its time is a gap, two appenders fork the
//! chain, `--as-of` hides later records, and prune removes only expired records without the
//! survivor's missing predecessor being reported.

use coffer_repository::pack::{self, ObjectKind};
use coffer_repository::{
    Id, InitOptions, JobControl, KdfParams, LedgerProblemKind, LedgerRecord, MasterKey, ReadData, Repository,
    RetentionPolicy, verify,
};
use coffer_store::{Clock, LocalVault, ObjectStore, PutOptions, Retention, RetentionMode, Role, VaultOptions};
use jiff::SignedDuration;
use serde_json::json;
use std::sync::Arc;

struct Fixture {
    _tmp: tempfile::TempDir,
    clock: Clock,
    vault: LocalVault,
    writer: Arc<dyn ObjectStore>,
    repo: Repository,
}

fn fixture(mode: RetentionMode) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
    let vault =
        LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    let writer: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions {
        kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 },
        retention: RetentionPolicy { mode, ..RetentionPolicy::default() },
        ..Default::default()
    };
    let repo = Repository::init(writer.clone(), "t", "", b"pw", &opts, clock.clone()).unwrap();
    Fixture { _tmp: tmp, clock, vault, writer, repo }
}

fn login(f: &Fixture, role: Role) -> coffer_store::VaultHandle {
    f.vault.login(&f.vault.read_credentials(role).unwrap()).unwrap()
}

fn advance(f: &Fixture, minutes: i64) {
    f.clock.advance(std::time::Duration::from_secs(minutes.unsigned_abs() * 60));
}

fn kinds(repo: &Repository) -> Vec<LedgerProblemKind> {
    repo.ledger().unwrap().problems.iter().map(|p| p.kind).collect()
}

/// Stores a sealed record as another appender would (or a rogue writer with `key`).
fn put_record(f: &Fixture, key: &MasterKey, record: &LedgerRecord) -> Id {
    let bytes = pack::seal_object(key, ObjectKind::Ledger, record);
    let id = Id::hash(&bytes);
    let until = f.clock.now() + SignedDuration::from_hours(24 * 100);
    let opts = PutOptions {
        retention: Some(Retention { mode: RetentionMode::Compliance, until }),
        legal_hold: false,
        create_only: true,
    };
    f.writer.put(&format!("ledger/{id}"), &bytes, &opts).unwrap();
    id
}

#[test]
fn appends_chain_and_read_back_in_order() {
    let f = fixture(RetentionMode::Compliance);
    assert!(f.repo.ledger().unwrap().entries.is_empty());
    let mut ids = Vec::new();
    for n in 0..3 {
        advance(&f, 10);
        ids.push(f.repo.append_ledger_as("h1", "run", &json!({ "n": n })).unwrap());
    }
    let v = f.repo.ledger().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.entries.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(v.entries.iter().map(|e| e.record.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(v.entries[1].record.prev, Some(ids[0]));
    assert_eq!(v.entries[2].record.body, json!({ "n": 2 }));
    assert_eq!(v.entries[2].record.host, "h1");
    assert_eq!(v.heads, [ids[2]]);
    // Locked until the ceiling past the append.
    let lock = f.writer.head(&f.repo.ledger_key(&ids[0]), None).unwrap().retention.unwrap();
    assert_eq!(lock.mode, RetentionMode::Compliance);
    assert!(lock.until >= f.clock.now() + SignedDuration::from_hours(88 * 24 - 1), "{lock:?}");
    // Another handle (another process) reads the same; verify is clean.
    let other = Repository::open(f.writer.clone(), "t", "", b"pw", f.clock.clone()).unwrap();
    assert_eq!(other.ledger().unwrap().entries.len(), 3);
    let rep = verify(&other, ReadData::None, &JobControl::none()).unwrap();
    assert!(rep.problems.is_empty() && rep.findings.is_empty(), "{:?} {:?}", rep.problems, rep.findings);
}

#[test]
fn a_rogue_writers_forged_record_is_reported_and_ignored() {
    let f = fixture(RetentionMode::Compliance);
    let first = f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    advance(&f, 1);
    // The writer's credentials, but not the repository key: a record that claims to follow.
    let forged = LedgerRecord {
        version: 1,
        seq: 1,
        prev: Some(first),
        prev_time: None,
        time: f.clock.now(),
        host: "rogue".into(),
        kind: "run".into(),
        body: json!({ "outcome": "success" }),
    };
    let bad = put_record(&f, &MasterKey::generate(), &forged);
    // Garbage under an honest record's name too: the authentic version is still read.
    f.writer.put(&f.repo.ledger_key(&first), b"garbage", &PutOptions::default()).unwrap();
    let v = f.repo.ledger().unwrap();
    assert_eq!(v.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [first], "the forged record is ignored");
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert_eq!(v.problems[0].kind, LedgerProblemKind::Unauthentic);
    assert_eq!(v.problems[0].object, f.repo.ledger_key(&bad));
    // The next append follows the authentic head, not the forgery: no fork.
    advance(&f, 1);
    let next = f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    let v = f.repo.ledger().unwrap();
    assert_eq!(v.heads, [next]);
    assert_eq!(v.entries[1].record.prev, Some(first));
    let rep = verify(&f.repo, ReadData::None, &JobControl::none()).unwrap();
    assert!(
        rep.problems.iter().any(|p| p.object.ends_with(&bad.to_string()) && p.message.contains("unauthentic")),
        "{:?}",
        rep.problems
    );
    assert!(
        rep.findings.iter().any(|x| x.key == f.repo.ledger_key(&first)),
        "the garbage version is a security finding: {:?}",
        rep.findings
    );
}

#[test]
fn a_delete_marker_hides_nothing_and_a_removed_record_is_a_gap() {
    let f = fixture(RetentionMode::Governance);
    let ids: Vec<Id> = (0..3)
        .map(|_| {
            advance(&f, 5);
            f.repo.append_ledger_as("h1", "run", &json!({})).unwrap()
        })
        .collect();
    // A delete marker (the admin's; the writer may not add one) hides nothing.
    let admin = login(&f, Role::Admin);
    admin.delete(&f.repo.ledger_key(&ids[0])).unwrap();
    assert!(kinds(&f.repo).is_empty());
    assert_eq!(f.repo.ledger().unwrap().entries.len(), 3);
    // The middle record's version removed before its time (governance bypassed, then
    // removed by the pruner): evidence destroyed, reported as a gap naming it.
    let key = f.repo.ledger_key(&ids[1]);
    let version = f.writer.head(&key, None).unwrap().version;
    admin.put_retention(&key, &version, None, true).unwrap();
    login(&f, Role::Pruner).delete_version(&key, &version, false).unwrap();
    let v = f.repo.ledger().unwrap();
    assert_eq!(v.entries.len(), 2);
    assert_eq!(
        v.problems.iter().map(|p| (p.kind, p.object.clone())).collect::<Vec<_>>(),
        [(LedgerProblemKind::Gap, key.clone())]
    );
    let rep = verify(&f.repo, ReadData::None, &JobControl::none()).unwrap();
    assert!(rep.problems.iter().any(|p| p.object == key && p.message.contains("gap")), "{:?}", rep.problems);
}

#[test]
fn two_appenders_fork_the_chain_which_is_reported_not_fatal() {
    let f = fixture(RetentionMode::Compliance);
    let first = f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    advance(&f, 1);
    let a = f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    // Another host read the ledger before `a` was stored, and appended after `first` too.
    let b = put_record(
        &f,
        f.repo.key(),
        &LedgerRecord {
            version: 1,
            seq: 1,
            prev: Some(first),
            prev_time: Some(f.repo.ledger().unwrap().entries[0].record.time),
            time: f.clock.now(),
            host: "h2".into(),
            kind: "run".into(),
            body: json!({}),
        },
    );
    let v = f.repo.ledger().unwrap();
    assert_eq!(v.entries.len(), 3, "both branches are read");
    assert_eq!(v.heads.len(), 2);
    assert!(v.heads.contains(&a) && v.heads.contains(&b));
    assert_eq!(kinds(&f.repo), [LedgerProblemKind::Fork]);
    // Appending goes on, after one of the heads.
    advance(&f, 1);
    let c = f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    let v = f.repo.ledger().unwrap();
    assert_eq!(v.head().unwrap().id, c);
    assert_eq!(v.head().unwrap().record.seq, 2);
}

#[test]
fn as_of_sees_only_earlier_records_and_cannot_append() {
    let f = fixture(RetentionMode::Compliance);
    let first = f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    advance(&f, 60);
    let t = f.clock.now();
    advance(&f, 60);
    f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    let past = Repository::open_as_of(f.writer.clone(), "t", "", b"pw", f.clock.clone(), Some(t)).unwrap();
    let v = past.ledger().unwrap();
    assert_eq!(v.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [first]);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert!(past.append_ledger("run", &json!({})).is_err(), "a view of the past is read-only");
    assert_eq!(f.repo.ledger().unwrap().entries.len(), 2);
}

#[test]
fn prune_removes_expired_records_and_the_survivors_gap_is_not_reported() {
    let f = fixture(RetentionMode::Compliance);
    let old = f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    advance(&f, 50 * 24 * 60);
    let young = f.repo.append_ledger_as("h1", "run", &json!({})).unwrap();
    let pruner = login(&f, Role::Pruner);
    // Not yet: the lock holds.
    coffer_repository::prune(&pruner, "", f.clock.now(), false, &JobControl::none()).unwrap();
    assert_eq!(f.repo.ledger().unwrap().entries.len(), 2);
    advance(&f, 50 * 24 * 60);
    coffer_repository::prune(&pruner, "", f.clock.now(), false, &JobControl::none()).unwrap();
    let v = f.repo.ledger().unwrap();
    assert_eq!(v.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [young]);
    assert_eq!(v.entries[0].record.prev, Some(old));
    assert!(v.problems.is_empty(), "an expired predecessor is no gap: {:?}", v.problems);
}

/// The same on S3 (moto): create-only puts with Object Lock, versions listed by the store.
#[test]
fn the_ledger_on_s3() {
    use coffer_testkit::s3::{S3Server, ServerKind};
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("ledger");
    let writer: Arc<dyn ObjectStore> = Arc::new(server.store(&bucket, "repo/", Role::Writer));
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(writer.clone(), "s3", "", b"pw", &opts, Clock::system()).unwrap();
    let a = repo.append_ledger_as("h1", "run", &json!({ "n": 1 })).unwrap();
    let b = repo.append_ledger_as("h1", "run", &json!({ "n": 2 })).unwrap();
    let forged = b"not a record".to_vec();
    writer.put(&format!("ledger/{}", Id::hash(&forged)), &forged, &PutOptions::default()).unwrap();
    let reader: Arc<dyn ObjectStore> = Arc::new(server.store(&bucket, "repo/", Role::Reader));
    let other = Repository::open(reader, "s3", "", b"pw", Clock::system()).unwrap();
    let v = other.ledger().unwrap();
    assert_eq!(v.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(v.heads, [b]);
    assert_eq!(v.problems.iter().map(|p| p.kind).collect::<Vec<_>>(), [LedgerProblemKind::Unauthentic]);
    let lock = writer.head(&repo.ledger_key(&a), None).unwrap().retention.unwrap();
    assert_eq!(lock.mode, RetentionMode::Compliance);
}
