//! A stolen writer key must neither stop a restore nor aim it (issue 11), on the local vault
//! and on both S3 servers, through the real `coffer` binary.
//!
//! The attacker holds what the backup host holds: the writer's credentials and the
//! password. After two honest backups it puts garbage versions of `config`, a key file, an
//! index object, a snapshot and a pack; adds delete markers on every non-data key; and forges
//! a perfectly sealed snapshot through the library (a writer key and the password, nothing
//! else) that names no predecessor and claims to be two days old. Then, with the reader's
//! credentials only (no pruner has cleaned anything up):
//!
//! - `snapshots` lists the honest snapshots (and the forged one: it is well sealed);
//! - `restore` of the honest snapshot gives the exact tree;
//! - `verify` names every injected version, marker and the forged snapshot, exit code 8;
//! - with `--as-of` the time before the attack: `snapshots`, `ls`, `diff`, `dump`, `stats`,
//!   `restore latest` and `verify` see the repository as it was, the forged snapshot absent,
//!   and verify is clean.
//!
//! Delete markers are added with raw requests (the S3 API, or the vault's `delete`) by the
//! principal that may add them: the reads must hold whoever adds them.

use crate::repo_util::{PASSWORD, Repo, assert_same_tree, manifest, random_bytes, restored};
use crate::s3_repo::S3Repo;
use crate::{Cmd, Sandbox};
use coffer_repository::{BlobKind, Node, NodeKind, Repository, Snapshot, Tree};
use coffer_store::{Clock, ObjectStore, PutOptions, Role};
use coffer_testkit::s3::{S3Server, ServerKind};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// What the attacker can do to a store, and how the test reads as the reader.
trait Target {
    /// `coffer --repo … ARGS` with the reader's credentials and the password.
    fn reader(&self, args: &[&str]) -> Cmd;
    /// `coffer --repo … ARGS` with the writer's credentials (for the honest backups).
    fn writer(&self, args: &[&str]) -> Cmd;
    /// The sandbox.
    fn sb(&self) -> &Sandbox;
    /// The repository's store as the writer (the attacker's handle).
    fn writer_store(&self) -> Arc<dyn ObjectStore>;
    /// The location string the repository is opened with through the library.
    fn location(&self) -> String;
    /// Every key under the repository (latest versions included or not).
    fn keys(&self) -> BTreeSet<String>;
    /// Adds a delete marker on `key` as whoever may (raw request).
    fn mark_deleted(&self, key: &str);
    /// Whether this is the local vault (whose audit log names principals).
    fn local(&self) -> bool {
        false
    }
    /// Puts `data` as a new version of `key`, as the writer, with raw requests that bypass
    /// every check of Coffer's own store code.
    fn put_raw(&self, key: &str, data: &[u8]);
}

struct Local(Repo);

impl Target for Local {
    fn local(&self) -> bool {
        true
    }
    fn reader(&self, args: &[&str]) -> Cmd {
        self.0.c(["--role", "reader"]).args(args)
    }
    fn writer(&self, args: &[&str]) -> Cmd {
        self.0.c(args)
    }
    fn sb(&self) -> &Sandbox {
        &self.0.sb
    }
    fn writer_store(&self) -> Arc<dyn ObjectStore> {
        let vault = coffer_store::LocalVault::open(self.0.vault()).expect("open the vault");
        let creds = vault.read_credentials(Role::Writer).expect("writer credentials");
        Arc::new(vault.login(&creds).expect("log in as the writer"))
    }
    fn location(&self) -> String {
        self.0.vault().display().to_string()
    }
    fn keys(&self) -> BTreeSet<String> {
        self.0.versions().iter().map(|v| v["key"].as_str().unwrap().to_owned()).collect()
    }
    fn mark_deleted(&self, key: &str) {
        let vault = coffer_store::LocalVault::open(self.0.vault()).expect("open the vault");
        let by = |role| vault.login(&vault.read_credentials(role).unwrap()).unwrap().delete(key);
        // The writer adds delete markers where it may; else the admin (the reads must hold
        // whoever adds them).
        by(Role::Writer).or_else(|_| by(Role::Admin)).unwrap_or_else(|e| panic!("delete marker on {key}: {e}"));
    }
    fn put_raw(&self, key: &str, data: &[u8]) {
        self.writer_store().put(key, data, &PutOptions::default()).unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
}

struct S3<'a> {
    r: S3Repo<'a>,
    bucket: String,
    prefix: String,
}

impl Target for S3<'_> {
    fn reader(&self, args: &[&str]) -> Cmd {
        self.r.as_role(Role::Reader, args)
    }
    fn writer(&self, args: &[&str]) -> Cmd {
        self.r.c(args)
    }
    fn sb(&self) -> &Sandbox {
        &self.r.sb
    }
    fn writer_store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(self.r.server.store(&self.bucket, &self.prefix, Role::Writer))
    }
    fn location(&self) -> String {
        self.r.url.clone()
    }
    fn keys(&self) -> BTreeSet<String> {
        let s = self.r.server.store(&self.bucket, &self.prefix, Role::Auditor);
        let page = s.list_version_entries("", None, 1000).unwrap();
        page.items.into_iter().map(|v| v.key).collect()
    }
    fn mark_deleted(&self, key: &str) {
        let s = self.r.server.store(&self.bucket, &self.prefix, Role::Writer);
        let full = s.location().full_key(key);
        s.block_on(s.client().delete_object().bucket(&self.bucket).key(&full).send())
            .unwrap_or_else(|e| panic!("DeleteObject {full}: {e:?}"));
    }
    fn put_raw(&self, key: &str, data: &[u8]) {
        let s = self.r.server.store(&self.bucket, &self.prefix, Role::Writer);
        let full = s.location().full_key(key);
        let body = aws_sdk_s3::primitives::ByteStream::from(data.to_vec());
        s.block_on(s.client().put_object().bucket(&self.bucket).key(&full).body(body).send())
            .unwrap_or_else(|e| panic!("PutObject {full}: {e:?}"));
    }
}

/// The store's version times have a resolution of a second on S3: the attack and the
/// point in time before it are kept apart by more than that.
fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(1500));
}

fn write_tree(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::write(root.join("a.txt"), format!("first file, seed {seed}")).unwrap();
    std::fs::write(root.join("dir/big.bin"), random_bytes(300_000, seed)).unwrap();
}

/// Forges a well-sealed snapshot, as the backup host can (the library's data path, its own
/// seal and put for the snapshot): a tree with one file, naming no predecessor, claiming to
/// be two days old.
fn forge_snapshot(t: &dyn Target) -> String {
    let repo = Repository::open(t.writer_store(), &t.location(), "", PASSWORD.as_bytes(), Clock::system())
        .expect("the attacker opens the repository with the password");
    let now = Clock::system().now();
    let mut w = repo.writer(now + SignedDuration::from_hours(24)).expect("writer");
    let content = w.add(BlobKind::Data, b"planted by the attacker").unwrap();
    let t0 = Timestamp::UNIX_EPOCH;
    let node = Node {
        name: "planted.txt".into(),
        name_raw: None,
        kind: NodeKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime: t0,
        atime: t0,
        ctime: t0,
        inode: 1,
        device: 1,
        links: 1,
        size: 23,
        content: vec![content],
        subtree: None,
        target: None,
        target_raw: None,
        rdev: 0,
        xattrs: Vec::new(),
    };
    let tree = Tree { nodes: vec![node] };
    let root = w.add(BlobKind::Tree, &tree.to_bytes()).unwrap();
    let snap = Snapshot {
        kind: "files".into(),
        time: now - SignedDuration::from_hours(48),
        expires: now + SignedDuration::from_hours(24),
        retain_until: now,
        host: "victim".into(),
        paths: vec!["/".into()],
        tags: Vec::new(),
        tree: root,
        parent: None,
        previous: None,
        summary: coffer_repository::Summary::default(),
        program: "coffer".into(),
        pg: None,
    };
    // The library links every snapshot it commits into the hash chain, so the attacker
    // seals and puts this one itself, with the key and the writer's store: the data first,
    // then the snapshot, locked as the library would.
    let until = w.retain_until();
    w.finish().expect("store the forged tree");
    let bytes = coffer_repository::pack::seal_object(repo.key(), coffer_repository::pack::ObjectKind::Snapshot, &snap);
    let id = coffer_repository::Id::hash(&bytes);
    let retention = coffer_store::Retention { mode: repo.config().retention.mode, until };
    coffer_repository::put::put_once(t.writer_store().as_ref(), &repo.snapshot_key(&id), &bytes, retention)
        .expect("put the forged snapshot");
    id.to_string()
}

fn ids(doc: &Value) -> BTreeSet<String> {
    doc.as_array().expect("snapshot list").iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

/// The whole scenario on one target.
fn attack_and_recover(t: &dyn Target) {
    let sb = t.sb();
    let src = sb.path("src");
    write_tree(&src, 1);
    let first = t.writer(&["backup", "--json"]).arg(&src).ok().json();
    std::fs::write(src.join("a.txt"), "changed before the second backup").unwrap();
    std::fs::write(src.join("dir/new.bin"), random_bytes(50_000, 9)).unwrap();
    // Read before the backup reads it (which moves the directories' access times).
    let want = manifest(&src);
    let second = t.writer(&["backup", "--json"]).arg(&src).ok().json();
    let (a, b) = (first["snapshot"].as_str().unwrap().to_owned(), second["snapshot"].as_str().unwrap().to_owned());
    pause();
    let before: Timestamp = Clock::system().now();
    pause();

    // The attack, as the writer.
    let keys = t.keys();
    let first_of = |ns: &str| keys.iter().find(|k| k.starts_with(ns)).unwrap_or_else(|| panic!("no {ns} key")).clone();
    let garbage = b"not what this name says".to_vec();
    let victims =
        ["config".to_owned(), first_of("keys/"), first_of("index/"), first_of("snapshots/"), first_of("data/")];
    for k in &victims {
        t.put_raw(k, &garbage);
    }
    let forged = forge_snapshot(t);
    for k in t.keys().iter().filter(|k| !k.starts_with("data/")) {
        t.mark_deleted(k);
    }

    // Listing and restoring with the reader's credentials alone.
    let listed = t.reader(&["snapshots", "--json"]).ok().json();
    let all = ids(&listed);
    // The forged snapshot claims to be two days old; the store's creation time says when it
    // really appeared, after the point in time chosen below.
    let forged_entry = listed.as_array().unwrap().iter().find(|s| s["id"] == forged.as_str()).expect("forged listed");
    assert!(crate::ts(&forged_entry["stored"]) > before, "{forged_entry}");
    assert!(crate::ts(&forged_entry["snapshot"]["time"]) < before, "{forged_entry}");
    assert!(all.contains(&a) && all.contains(&b), "honest snapshots hidden after the attack: {all:?}");
    let target = sb.path("restored");
    t.reader(&["restore", "--json", &b, "--target"]).arg(&target).ok();
    assert_same_tree(&want, &manifest(&restored(&target, &src)), "restore after the attack");

    // verify names every injected version and marker, and the forged snapshot.
    let run = t.reader(&["verify", "--json"]).run();
    assert_eq!(run.code, Some(8), "verify after the attack: {}", run.stderr);
    let doc = run.json();
    let findings = doc["findings"].as_array().expect("findings").clone();
    let has = |kind: &str, key: &str| findings.iter().any(|f| f["kind"] == kind && f["key"] == key);
    assert!(has("extra-version", "config"), "garbage config version not reported: {doc}");
    for k in &victims[1..] {
        assert!(has("content-mismatch", k), "garbage version of {k} not reported: {doc}");
    }
    for k in keys.iter().filter(|k| !k.starts_with("data/")) {
        assert!(has("delete-marker", k), "delete marker on {k} not reported: {doc}");
    }
    let forged_key = format!("snapshots/{forged}");
    assert!(has("second-root", &forged_key), "forged root snapshot not reported: {doc}");
    assert!(has("backdated", &forged_key), "forged snapshot's claimed time not reported: {doc}");
    for f in findings.iter().filter(|f| f["kind"] != "backdated" && f["kind"] != "second-root") {
        assert!(f["version"].is_string() && f["created"].is_string(), "finding without a version: {f}");
        // The local vault's audit log names who wrote it.
        if t.local() {
            assert!(f["principal"].as_str().is_some_and(|p| p.contains('(')), "finding without its principal: {f}");
        }
    }
    let text = t.reader(&["verify"]).run();
    assert_eq!(text.code, Some(8));
    assert!(text.stdout_text().contains(&format!("security: second-root {forged_key}")), "{}", text.stdout_text());

    // The repository as it was before the attack.
    let as_of = before.to_string();
    let at = |args: &[&str]| {
        let mut v = vec!["--as-of", as_of.as_str()];
        v.extend_from_slice(args);
        t.reader(&v)
    };
    let past = ids(&at(&["snapshots", "--json"]).ok().json());
    assert_eq!(past, BTreeSet::from([a.clone(), b.clone()]), "as of {as_of}");
    let verify = at(&["verify", "--json", "--read-data"]).ok().json();
    assert_eq!(verify["problems"], serde_json::json!([]), "{verify}");
    assert_eq!(verify["findings"], serde_json::json!([]), "{verify}");
    let target2 = sb.path("restored-as-of");
    let out = at(&["restore", "--json", "latest", "--target"]).arg(&target2).ok().json();
    assert_eq!(out["snapshot"], b.as_str(), "latest as of {as_of}");
    assert_same_tree(&want, &manifest(&restored(&target2, &src)), "restore --as-of");
    let listing = at(&["ls", "latest"]).ok().stdout_text();
    assert!(listing.contains("new.bin") && !listing.contains("planted"), "{listing}");
    let diff = at(&["diff", &a, &b]).ok().stdout_text();
    assert!(diff.contains("new.bin"), "{diff}");
    let file = format!("{}/a.txt", src.display());
    let dumped = at(&["dump", "latest", &file]).ok().stdout_text();
    assert_eq!(dumped, "changed before the second backup");
    at(&["stats"]).ok();
    // The forged snapshot does not exist as of then, even asked for by id.
    at(&["ls", &forged[..12]]).fails(1);
    // A point in time is read-only.
    let refused = t.writer(&["--as-of", &as_of, "backup"]).arg(&src).fails(2);
    assert!(refused.contains("read-only"), "{refused}");
}

#[test]
fn a_rogue_writer_cannot_stop_or_aim_a_restore_on_the_local_vault() {
    attack_and_recover(&Local(Repo::init()));
}

fn on_s3(kind: ServerKind) {
    let server = S3Server::start(kind);
    let bucket = server.new_bucket("coffer-rogue");
    let prefix = "host".to_owned();
    let r = S3Repo { sb: Sandbox::new(), server: &server, url: server.url(&bucket, &prefix) };
    r.c(["init"]).ok();
    attack_and_recover(&S3 { r, bucket, prefix });
}

#[test]
fn a_rogue_writer_cannot_stop_or_aim_a_restore_on_moto() {
    on_s3(ServerKind::Moto);
}

#[test]
fn a_rogue_writer_cannot_stop_or_aim_a_restore_on_localstack() {
    on_s3(ServerKind::LocalStack);
}

/// Messages that do not mislead: "wrong password" only when a key exists and none opens.
#[test]
fn a_hidden_or_garbage_key_is_not_a_wrong_password() {
    let r = Local(Repo::init());
    let keys: Vec<_> = r.keys().into_iter().filter(|k| k.starts_with("keys/")).collect();
    // Markers hide nothing: the password still opens the repository.
    for k in &keys {
        r.mark_deleted(k);
    }
    r.reader(&["snapshots"]).ok();
    // A wrong password is still called one.
    let wrong =
        r.0.sb.coffer(["--repo"]).arg(r.0.vault()).env("COFFER_PASSWORD", "not it").args(["snapshots"]).fails(1);
    assert!(wrong.contains("wrong password"), "{wrong}");
}
