//! `init`, `put`, `get`, `rm` (delete markers) and `versions`, with their `--json` shapes.

use crate::{Sandbox, exists, keys, noise, ts};
use base64::Engine as _;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;

#[test]
fn init_creates_a_vault_and_one_private_credentials_file_per_role() {
    let sb = Sandbox::new();
    let out = sb.v(["init"]).arg(sb.vault()).ok().stdout_text();
    assert!(out.contains(&format!("created vault {}", sb.vault().display())), "{out}");
    assert!(out.contains("default retention: none"), "{out}");
    let creds = sb.vault().join("credentials");
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o700);
    for role in ["writer", "reader", "pruner", "admin", "auditor"] {
        let file = creds.join(format!("{role}.toml"));
        assert!(out.contains(&file.display().to_string()), "init names {}: {out}", file.display());
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "{role}");
    }
    // A second init of the same directory is refused and changes nothing.
    let err = sb.v(["init"]).arg(sb.vault()).fails(1);
    assert!(err.contains("already a coffer vault"), "{err}");
    assert!(err.contains(&sb.vault().display().to_string()), "{err}");
}

#[test]
fn init_json_names_the_vault_its_default_retention_and_the_credentials() {
    let sb = Sandbox::new();
    let doc =
        sb.coffer(["vault", "init", "v", "--default-retention", "90d", "--mode", "governance", "--json"]).ok().json();
    assert_eq!(keys(&doc), ["credentials", "default_retention", "vault"]);
    assert_eq!(doc["vault"], sb.path("v").display().to_string(), "a relative DIR is printed absolute");
    assert_eq!(
        doc["default_retention"],
        serde_json::json!({"mode": "governance", "period": "90d", "period_seconds": 7_776_000})
    );
    assert_eq!(keys(&doc["credentials"]), ["admin", "auditor", "pruner", "reader", "writer"]);
    assert_eq!(doc["credentials"]["pruner"], sb.path("v/credentials/pruner.toml").display().to_string());
}

#[test]
fn put_and_get_round_trip_binary_data_from_a_file_and_from_stdin() {
    let sb = Sandbox::with_vault();
    let mut data: Vec<u8> = (0..=255).collect();
    data.extend(noise(1 << 20, 7));
    data.extend(b"\r\n\0\xff");
    let file = sb.file("data.bin", &data);
    let v1 = sb.v(["put", "bin/data"]).arg(&file).ok().stdout_text();
    let v1 = v1.trim();
    assert_eq!(sb.v(["get", "bin/data"]).ok().stdout, data);

    let other = noise(5000, 9);
    let v2 = sb.put("bin/data", &other, &[]);
    assert_ne!(v1, v2, "every put makes a new version");
    assert_eq!(sb.v(["get", "bin/data"]).ok().stdout, other, "get reads the latest");
    assert_eq!(sb.v(["get", "bin/data", "--version", v1]).ok().stdout, data, "the old version is kept");

    // An empty object is an object.
    sb.put("empty", b"", &[]);
    assert_eq!(sb.v(["get", "empty"]).ok().stdout, b"");

    // -o writes the data to a file and nothing to stdout.
    let run = sb.v(["get", "bin/data", "--version", v1, "-o"]).arg(sb.path("out.bin")).ok();
    assert!(run.stdout.is_empty());
    assert_eq!(std::fs::read(sb.path("out.bin")).unwrap(), data);
}

#[test]
fn put_prints_the_version_id_and_json_gives_key_and_version() {
    let sb = Sandbox::with_vault();
    let file = sb.file("f", b"hello");
    let doc = sb.v(["put", "greeting", "--json"]).arg(&file).ok().json();
    assert_eq!(keys(&doc), ["key", "version"]);
    assert_eq!(doc["key"], "greeting");
    let listed = sb.versions("greeting");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["version"], doc["version"], "the printed id is the stored version");
}

#[test]
fn get_json_carries_metadata_and_base64_data() {
    let sb = Sandbox::with_vault();
    let data = noise(3000, 3);
    let v = sb.put("k", &data, &[]);
    let doc = sb.v(["get", "k", "--json"]).ok().json();
    assert_eq!(keys(&doc), ["checksum", "created", "data_base64", "key", "size", "version"]);
    assert_eq!(doc["version"], v.as_str());
    assert_eq!(doc["size"], 3000);
    assert!(doc["checksum"].as_str().unwrap().starts_with("blake3:"));
    let decoded = base64::engine::general_purpose::STANDARD.decode(doc["data_base64"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, data);

    let doc = sb.v(["get", "k", "--json", "--output"]).arg(sb.path("o")).ok().json();
    assert_eq!(keys(&doc), ["checksum", "created", "key", "output", "size", "version"]);
    assert_eq!(std::fs::read(sb.path("o")).unwrap(), data);
}

#[test]
fn rm_adds_a_delete_marker_that_hides_the_key_but_keeps_every_version() {
    let sb = Sandbox::with_vault();
    let v1 = sb.put("doc", b"one", &[]);
    // The writer may not hide anything; `rm` without `--version` acts as the admin.
    let err = sb.v(["--role", "writer", "rm", "doc"]).fails(3);
    assert_eq!(
        err,
        "coffer: error: writer (role writer) may not delete (roles that may: admin; choose one with --role)"
    );
    let run = sb.v(["rm", "doc"]).ok().stdout_text();
    assert!(run.contains("delete marker") && run.contains("nothing removed"), "{run}");

    let err = sb.v(["get", "doc"]).fails(5);
    assert_eq!(err, "coffer: error: doc not found");
    assert_eq!(sb.v(["get", "doc", "--version", &v1]).ok().stdout, b"one", "the data is still there");

    let doc = sb.v(["rm", "doc", "--json"]).ok().json();
    assert_eq!(keys(&doc), ["delete_marker", "key", "removed", "version"]);
    assert_eq!(doc["delete_marker"], true);
    assert_eq!(doc["removed"], false);
    let listed = sb.versions("doc");
    assert_eq!(listed.len(), 3, "two markers and the object: {listed:?}");
    assert_eq!(listed[0]["version"], doc["version"]);
}

#[test]
fn versions_lists_every_version_and_delete_marker_sorted_and_paginated() {
    let sb = Sandbox::with_vault();
    let a1 = sb.put("a/1", b"first", &["--retain", "1d"]);
    let a1b = sb.put("a/1", b"second", &["--legal-hold"]);
    let a2 = sb.put("a/2", b"x", &[]);
    let b1 = sb.put("b/1", b"y", &[]);
    let marker = sb.v(["rm", "a/2", "--json"]).ok().json()["version"].as_str().unwrap().to_owned();

    let all = sb.versions("");
    let ids: Vec<(&str, &str)> =
        all.iter().map(|v| (v["key"].as_str().unwrap(), v["version"].as_str().unwrap())).collect();
    assert_eq!(
        ids,
        [("a/1", a1b.as_str()), ("a/1", a1.as_str()), ("a/2", marker.as_str()), ("a/2", a2.as_str()), ("b/1", &b1)],
        "by key, then newest first"
    );
    let m = &all[2];
    assert_eq!(
        keys(m),
        ["checksum", "created", "delete_marker", "is_latest", "key", "legal_hold", "retention", "size", "version"]
    );
    assert_eq!(
        (m["delete_marker"].clone(), m["is_latest"].clone(), m["size"].clone()),
        (true.into(), true.into(), 0.into())
    );
    assert_eq!(all[3]["is_latest"], false, "the object under a marker is no longer the latest");
    assert_eq!(all[0]["legal_hold"], true);
    assert_eq!(all[1]["retention"]["mode"], "compliance");
    assert_eq!(all[1]["retention"]["active"], true);
    let until = ts(&all[1]["retention"]["until"]);
    let created = ts(&all[1]["created"]);
    let span = until.duration_since(created).as_secs();
    // The date is taken before the put and the creation time at it: a put that takes longer
    // than the rounding up to the second gains makes the span a second short (seen under load).
    assert!((86_399..=86_402).contains(&span), "--retain 1d locks for a day, got {span}s");
    assert_eq!(all[4]["retention"], serde_json::Value::Null);

    // A page of one entry at a time gives the same listing (the store is asked page by page).
    let paged = sb.v(["versions", "--json", "--page-size", "1"]).ok().json();
    assert_eq!(paged["versions"].as_array().unwrap(), &all);
    assert_eq!(paged["prefix"], "");

    let only_a = sb.versions("a/");
    assert_eq!(only_a.len(), 4);
    assert!(only_a.iter().all(|v| v["key"].as_str().unwrap().starts_with("a/")));

    let table = sb.v(["versions", "--page-size", "2"]).ok().stdout_text();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "a header and five rows: {table}");
    assert!(lines[0].starts_with("KEY") && lines[0].contains("RETAIN-UNTIL") && lines[0].ends_with("FLAGS"));
    let marker_row = lines.iter().find(|l| l.contains(&marker)).unwrap();
    assert!(marker_row.ends_with("latest,delete-marker"), "{marker_row}");
    let held_row = lines.iter().find(|l| l.contains(&a1b)).unwrap();
    assert!(held_row.contains(" on "), "{held_row}");
    assert!(lines.iter().find(|l| l.contains(&a1)).unwrap().contains("compliance"));

    let empty = sb.v(["versions", "nothing/"]).ok().stdout_text();
    assert_eq!(empty.lines().count(), 1, "just the header: {empty}");
    let empty = sb.v(["versions", "nothing/", "--json"]).ok().json();
    assert_eq!(empty, serde_json::json!({"prefix": "nothing/", "versions": []}));
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let sb = Sandbox::with_vault();
    sb.put("big", &noise(4 << 20, 1), &[]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .env_clear()
        .env("HOME", sb.home())
        .arg("--vault")
        .arg(sb.vault())
        .args(["vault", "get", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn vault_init_without_dir_uses_coffer_vault() {
    let sb = Sandbox::new();
    let dir = sb.path("from-env");
    sb.coffer(["vault", "init"]).env("COFFER_VAULT", &dir).ok();
    assert!(exists(&dir.join("coffer-vault.toml")));
    let v = sb.coffer(["vault", "put", "k", "-"]).env("COFFER_VAULT", &dir).stdin(b"data").ok().stdout_text();
    let got = sb.coffer(["vault", "get", "k", "--version", v.trim()]).env("COFFER_VAULT", &dir).ok();
    assert_eq!(got.stdout, b"data");
}

#[test]
fn create_only_puts_refuse_an_existing_key_and_a_writer_create_only_vault_enforces_them() {
    // `put --create-only` on an ordinary vault.
    let sb = Sandbox::with_vault();
    sb.put("k", b"one", &[]);
    let err = sb.v(["put", "k", "-", "--create-only"]).stdin(b"two").fails(1);
    assert!(err.starts_with("coffer: error: k already exists (version "), "{err}");
    sb.put("k", b"two", &[]); // without the flag: a new version
    assert_eq!(sb.versions("k").len(), 2);

    // A vault made with --writer-create-only refuses every writer overwrite, flag or not,
    // except a growing .partial WAL segment.
    let sb = Sandbox::new();
    sb.coffer(["vault", "init", "--writer-create-only"]).arg(sb.vault()).ok();
    sb.put("k", b"one", &[]);
    let err = sb.v(["put", "k", "-"]).stdin(b"two").fails(1);
    assert!(err.contains("k already exists"), "{err}");
    assert_eq!(sb.versions("k").len(), 1);
    let partial = "pg/1/wal/00000001/000000010000000000000001.partial";
    sb.put(partial, b"a", &[]);
    sb.put(partial, b"ab", &[]);
    assert_eq!(sb.versions(partial).len(), 2);
}
