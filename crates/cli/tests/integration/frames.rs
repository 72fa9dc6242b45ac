//! Small blobs compressed in groups inside their pack (pack version 3, issue 16), end to
//! end on the local vault and by default: many small similar files back up into packs of
//! version 3 much smaller than the same files compressed one by one would be, restore byte
//! for byte, and `verify --read-data` checks every grouped blob against its id.

use crate::Sandbox;
use crate::repo_util::PASSWORD;
use coffer_testkit::mail::spool;
use std::path::Path;

/// Every file under `p`: (bytes, whether it is a pack with groups: trailer "CFRP" ‖ 3).
fn files(p: &Path, out: &mut Vec<(u64, bool)>) {
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.metadata().unwrap().is_dir() {
            files(&e.path(), out);
        } else {
            let b = std::fs::read(e.path()).unwrap();
            out.push((b.len() as u64, b.ends_with(b"CFRP\x03")));
        }
    }
}

#[test]
fn frames_small_files_are_grouped_smaller_and_restore_exactly() {
    let sb = Sandbox::new();
    let src = sb.path("spool");
    let bodies = spool(&src, 3000);
    let vault = sb.path("vault");
    let c = |args: &[&str]| sb.coffer(["--repo"]).arg(&vault).env("COFFER_PASSWORD", PASSWORD).args(args);
    c(&["init"]).ok();
    c(&["backup", "--json"]).arg(&src).ok();
    let target = sb.path("restored");
    c(&["restore", "latest", "--target"]).arg(&target).ok();
    let restored = target.join(src.strip_prefix("/").unwrap());
    for (i, body) in bodies.iter().enumerate() {
        let got = std::fs::read(restored.join(format!("m{i:05}"))).unwrap();
        assert!(got == *body, "m{i:05} restored differently");
    }
    let doc = c(&["verify", "--read-data", "--json"]).ok().json();
    assert_eq!(doc["problems"], serde_json::json!([]), "{doc}");
    let mut stored = Vec::new();
    files(&vault.join("data"), &mut stored);
    assert!(stored.iter().any(|&(_, grouped)| grouped), "no pack of version 3 written");
    let total: u64 = stored.iter().map(|&(n, _)| n).sum();
    // The format's cost of the same files sealed one by one (as before groups): each
    // compressed alone (zstd level 3, what a blob alone gets) plus its flag, 40 bytes of
    // AEAD and ~37 of pack header.
    let alone: u64 = bodies.iter().map(|b| zstd::bulk::compress(b, 3).unwrap().len() as u64 + 1 + 40 + 37).sum();
    // Everything the repository holds (trees, index, snapshot, config, keys included)
    // stays under 45 % of the blobs alone (measured: 0.2x).
    assert!(total * 100 < alone * 45, "repository {total} bytes against {alone} for the blobs alone");
}
