//! Fault over S3, through the binary on LocalStack: the server goes away in the middle of a
//! backup. The backup must fail within bounded time (S3Store's retries are bounded) with one
//! clear line that names the endpoint and the object and no secret; nothing acknowledged
//! before is lost; and once the server is back the next backup completes and verifies.
//!
//! The server is "stopped" by a TCP proxy between `coffer` and LocalStack
//! ([`coffer_testkit::proxy::CutProxy`]): LocalStack would lose its buckets if the process
//! were restarted, while a cut proxy looks the same to the client — every open connection
//! drops mid-request and new ones are refused — and can be reopened on the same port.

use crate::Sandbox;
use crate::repo_util::{PASSWORD, random_bytes, restored};
use crate::s3_repo::S3Repo;
use coffer_testkit::proxy::CutProxy;
use coffer_testkit::s3::{S3Server, ServerKind};
use std::path::Path;
use std::time::{Duration, Instant};

fn write_tree(root: &Path, files: &[(&str, usize, u64)]) -> Vec<(String, Vec<u8>)> {
    std::fs::create_dir_all(root).unwrap();
    files
        .iter()
        .map(|&(name, len, seed)| {
            let data = random_bytes(len, seed);
            std::fs::write(root.join(name), &data).unwrap();
            (name.to_owned(), data)
        })
        .collect()
}

fn assert_restores(r: &S3Repo<'_>, snap: &str, src: &Path, files: &[(String, Vec<u8>)], target: &str) {
    let target = r.sb.path(target);
    r.c(["restore", "--json", snap, "--target"]).arg(&target).ok();
    for (name, data) in files {
        let got = std::fs::read(restored(&target, src).join(name)).unwrap();
        assert!(got == *data, "{name} of {snap} differs after restore");
    }
}

#[test]
fn server_gone_mid_backup_fails_clearly_and_the_next_backup_completes_on_localstack() {
    let server = S3Server::start(ServerKind::LocalStack);
    let bucket = server.new_bucket("coffer-fault");
    let proxy = CutProxy::start(server.port());
    let url = format!("s3://{bucket}/host?endpoint={}&region=us-east-1", proxy.endpoint());
    let r = S3Repo { sb: Sandbox::new(), server: &server, url };

    let (a, b) = (r.sb.path("a"), r.sb.path("b"));
    let a_files = write_tree(&a, &[("one.bin", 1 << 20, 1), ("two.txt", 1000, 2)]);
    let b_files = write_tree(&b, &[("big1.bin", 6 << 20, 3), ("big2.bin", 6 << 20, 4), ("small.txt", 10, 5)]);
    r.c(["init"]).ok();
    let first = r.c(["backup", "--json"]).arg(&a).ok().json();
    let first = first["snapshot"].as_str().unwrap().to_owned();

    // The server goes away once a few MiB of the second backup are on the wire.
    proxy.cut_after(3 << 20);
    let start = Instant::now();
    let run = r.c(["backup"]).arg(&b).run();
    let took = start.elapsed();
    assert_eq!(proxy.cuts(), 1, "the backup finished before the cut: {}", run.stderr);
    assert!(run.code.is_some_and(|c| c != 0), "a backup to a stopped server succeeded: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {:?}", run.stderr);
    let err = run.stderr.trim_end();
    assert!(err.starts_with("coffer: error: "), "{err}");
    assert!(err.contains(&proxy.endpoint()), "the error names the endpoint: {err}");
    assert!(err.contains(&format!("s3://{bucket}/host/")), "the error names the repository: {err}");
    assert!(err.contains("cannot "), "the error says what failed: {err}");
    for secret in ["secret-of-writer", PASSWORD] {
        assert!(!err.contains(secret), "the error leaks a secret: {err}");
    }
    assert!(took < Duration::from_secs(90), "bounded retries: the error took {took:?}");
    println!("after {took:?}: {err}");

    // Back up again: nothing acknowledged was lost, the failed backup left no snapshot, and
    // the next one completes (reusing what was uploaded) and verifies.
    proxy.reopen();
    let snaps = r.c(["snapshots", "--json"]).ok().json();
    let ids: Vec<&str> = snaps.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![first.as_str()], "{snaps}");
    let second = r.c(["backup", "--json"]).arg(&b).ok().json();
    let second = second["snapshot"].as_str().unwrap().to_owned();
    let verify = r.c(["verify", "--json", "--read-data"]).ok().json();
    assert_eq!(verify["problems"], serde_json::json!([]), "verify: {verify}");
    assert_restores(&r, &first, &a, &a_files, "restore-a");
    assert_restores(&r, &second, &b, &b_files, "restore-b");
}
