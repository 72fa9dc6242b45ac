//! What a plain `cargo build -p coffer-cli` links: none of the test-only features of
//! `coffer-store` (`raw-client`, the SDK client that bypasses every check of an `S3Store`;
//! `test-clock`, a movable clock). Test builds get them through the dev-dependency on
//! `coffer-testkit`; resolver 2 keeps dev-dependency features out of normal builds.

use std::process::Command;

/// The features of `coffer-store` that `coffer-cli` resolves with the given edge kinds.
fn store_features(edges: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--offline", "-p", "coffer-cli", "--prefix", "none", "-f", "{p} {f}", "-e", edges])
        .output()
        .expect("cargo tree runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("coffer-store v"))
        .map(|l| l.split(") ").nth(1).unwrap_or("").trim_end_matches(" (*)").to_owned())
        .collect();
    assert!(!lines.is_empty(), "coffer-cli depends on coffer-store:\n{text}");
    lines
}

#[test]
fn a_release_build_of_coffer_has_no_raw_s3_client_or_test_clock() {
    for features in store_features("normal,features") {
        let set: Vec<&str> = features.split(',').collect();
        assert!(set.contains(&"s3"), "coffer talks S3: {features}");
        assert!(!set.contains(&"raw-client"), "the coffer binary links S3Store::client(): {features}");
        assert!(!set.contains(&"test-clock"), "the coffer binary links the movable clock: {features}");
    }
    // The check sees the features at all: the test build (dev edges) has both.
    let dev = store_features("normal,dev,features").join(",");
    assert!(dev.contains("raw-client") && dev.contains("test-clock"), "{dev}");
}
