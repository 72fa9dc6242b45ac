//! The `--json` contract, pinned: every command runs with `--json` on a real local
//! repository and a real vault (the `pg …` commands on a real PostgreSQL server), and its
//! document, with what varies from run to run normalised (times, ids and hashes, sizes,
//! LSNs, the sandbox's path), must equal the golden file `tests/golden/json_contract.json`
//! (`tests/golden/json_contract_pg.json` for `pg …`). A change of a key, a type or a document's shape
//! fails here; a deliberate one is re-recorded with `COFFER_BLESS=1` and shows in review
//! as a diff of the golden file (and deserves a line in the changelog: scripts and the
//! dashboard read these documents).
//!
//! Besides the golden file, every key of every document must be snake_case (the policy
//! documents of `iam policies` excepted: they are AWS's format).

use crate::repo_util::Repo;
use crate::{Sandbox, exists};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/json_contract.json");
const GOLDEN_PG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/json_contract_pg.json");

/// Keys whose numbers depend on the machine or the run (sizes after compression and
/// encryption, inode numbers, owners, permission bits under the umask).
const VARYING_NUMBERS: [&str; 12] = [
    "size",
    "bytes_added",
    "bytes_stored",
    "stored_bytes",
    "raw_bytes",
    "bytes_freed",
    "inode",
    "device",
    "uid",
    "gid",
    "mode",
    "links",
];

/// Keys whose strings depend on the run beyond times and hex (names of the machine's
/// users and of the machine, the program's version).
const VARYING_STRINGS: [&str; 4] = ["user", "group", "program", "host"];

/// For the `pg …` documents: whether a key holds a value that depends on the PostgreSQL
/// server's run (its system identifier, WAL positions, how much WAL and data it wrote).
fn varies_with_the_server(key: &str) -> bool {
    key == "sysid"
        || key.ends_with("lsn")
        || key.ends_with("bytes")
        || key.ends_with("files")
        || key.ends_with("segments")
        || key == "label"
}

/// Replaces each run of 16 or more hex digits (ids, hashes, version ids) with `<hex>`.
fn hex_runs(s: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 16 {
            out.push_str("<hex>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The document with what varies replaced by placeholders.
fn normalise(v: &Value, key: &str, sandbox: &str, pg: bool) -> Value {
    // AWS's policy documents are pinned by the IAM tests; here only where they go.
    let policy = || Value::String("<aws policy document>".into());
    match v {
        Value::Object(m) if key == "identity_policies" => {
            Value::Object(m.keys().map(|k| (k.clone(), policy())).collect::<Map<_, _>>())
        }
        _ if key == "bucket_policy" => policy(),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalise(v, k, sandbox, pg))).collect::<Map<_, _>>())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| normalise(v, key, sandbox, pg)).collect()),
        Value::Number(_) if VARYING_NUMBERS.contains(&key) => Value::String("<n>".into()),
        Value::String(_) | Value::Number(_) if pg && varies_with_the_server(key) => Value::String(format!("<{key}>")),
        Value::String(_) if VARYING_STRINGS.contains(&key) => Value::String(format!("<{key}>")),
        Value::String(s) if s.parse::<jiff::Timestamp>().is_ok() => Value::String("<time>".into()),
        Value::String(s) => Value::String(hex_runs(&s.replace(sandbox, "<sandbox>"))),
        other => other.clone(),
    }
}

/// Every key that is not snake_case, with where it is.
fn non_snake_keys(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let snake = k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !snake {
                    out.push(format!("{at}.{k}"));
                }
                // AWS's policy documents are AWS's format.
                if k != "identity_policies" && k != "bucket_policy" {
                    non_snake_keys(v, &format!("{at}.{k}"), out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| non_snake_keys(v, &format!("{at}[]"), out)),
        _ => {}
    }
}

#[test]
fn every_json_document_is_snake_case_and_matches_the_golden_file() {
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();

    // A repository, two backups, and every command that reads or changes it.
    let repo = Repo { sb: Sandbox::new() };
    let sandbox = repo.sb.path("").display().to_string();
    let sandbox = sandbox.trim_end_matches('/').to_owned();
    let mut doc = |name: &str, v: Value| {
        docs.insert(name.to_owned(), v);
    };
    doc("init", repo.c(["init", "--json"]).ok().json());
    let src = repo.sb.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), b"beta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let backup = |tag: &str| {
        repo.c(["backup", "--json", "--host", "golden", "--tag", tag, "--keep-daily", "7"]).arg(&src).ok().json()
    };
    let first = backup("one");
    doc("backup", first.clone());
    std::fs::write(src.join("a.txt"), b"alpha, changed\n").unwrap();
    std::fs::write(src.join("new.txt"), b"new\n").unwrap();
    let second = backup("two");
    let (s1, s2) = (first["snapshot"].as_str().unwrap(), second["snapshot"].as_str().unwrap());
    doc("snapshots", repo.c(["snapshots", "--json"]).ok().json());
    // Below the sources: their ancestors are the machine's temporary directory.
    doc("ls", repo.c(["ls", "--json", s2]).arg(&src).ok().json());
    doc("diff", repo.c(["diff", "--json", s1, s2]).ok().json());
    doc("stats", repo.c(["stats", "--json"]).ok().json());
    let target = repo.sb.path("restored");
    let restored = repo.c(["restore", "--json", s2, "--target"]).arg(&target).ok().json();
    assert_eq!(restored["files"], 3, "{restored}");
    assert!(exists(&target));
    doc("restore", restored);
    doc("verify", repo.c(["verify", "--json", "--read-data"]).ok().json());
    doc("key_list", repo.c(["key", "list", "--json"]).ok().json());
    doc(
        "key_add",
        repo.c(["key", "add", "--json", "--label", "second"]).env("COFFER_NEW_PASSWORD", "another one").ok().json(),
    );
    doc("prune_dry_run", repo.c(["prune", "--json", "--dry-run"]).ok().json());
    doc("prune", repo.c(["prune", "--json"]).ok().json());

    // A vault and its objects.
    let sb = Sandbox::new();
    let vault_sandbox = sb.path("").display().to_string();
    let vault_sandbox = vault_sandbox.trim_end_matches('/').to_owned();
    let mut vdocs: BTreeMap<String, Value> = BTreeMap::new();
    let mut vdoc = |name: &str, v: Value| {
        vdocs.insert(name.to_owned(), v);
    };
    vdoc("vault_init", sb.coffer(["vault", "init", "--json", "--default-retention", "1d"]).arg(sb.vault()).ok().json());
    let put = sb.v(["put", "--json", "k", "-", "--retain", "2d", "--mode", "governance"]).stdin(b"hello").ok().json();
    let version = put["version"].as_str().unwrap().to_owned();
    vdoc("vault_put", put);
    vdoc("vault_get", sb.v(["get", "--json", "k"]).ok().json());
    vdoc("vault_versions", sb.v(["versions", "--json"]).ok().json());
    let until = (coffer_store::Clock::system().now() + jiff::SignedDuration::from_hours(24 * 3)).to_string();
    vdoc("vault_retention", sb.v(["retention", "--json", "k", "--version", &version, "--until", &until]).ok().json());
    vdoc("vault_legal_hold", sb.v(["legal-hold", "--json", "k", "--version", &version, "on"]).ok().json());
    vdoc("vault_config", sb.v(["config", "--json"]).ok().json());
    vdoc("vault_rm", sb.v(["rm", "--json", "k"]).ok().json());
    vdoc("vault_audit_log", sb.v(["audit-log", "--json"]).ok().json());
    vdoc("vault_audit_log_verify", sb.v(["audit-log", "--json", "--verify"]).ok().json());
    vdoc("iam_policies", sb.coffer(["iam", "policies", "--json", "--bucket", "b", "--prefix", "p"]).ok().json());

    let mut bad = Vec::new();
    for (name, v) in docs.iter().chain(&vdocs) {
        non_snake_keys(v, name, &mut bad);
    }
    assert!(bad.is_empty(), "--json keys that are not snake_case: {bad:?}");

    let mut all: BTreeMap<String, Value> =
        docs.iter().map(|(k, v)| (k.clone(), normalise(v, "", &sandbox, false))).collect();
    all.extend(vdocs.iter().map(|(k, v)| (k.clone(), normalise(v, "", &vault_sandbox, false))));
    compare(GOLDEN, &serde_json::to_string_pretty(&all).unwrap());
}

/// Compares `text` with the golden file, or records it with `COFFER_BLESS=1`.
fn compare(golden_path: &str, text: &str) {
    let text = text.to_owned() + "\n";
    if std::env::var_os("COFFER_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(Path::new(golden_path).parent().unwrap()).unwrap();
        std::fs::write(golden_path, &text).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(golden_path).unwrap_or_default();
    if golden != text {
        let first = golden.lines().zip(text.lines()).position(|(a, b)| a != b).unwrap_or(0);
        let show = |t: &str| t.lines().skip(first.saturating_sub(3)).take(12).collect::<Vec<_>>().join("\n");
        panic!(
            "--json output differs from {golden_path} (re-record a deliberate change with COFFER_BLESS=1) at line {}:\n--- golden\n{}\n--- now\n{}",
            first + 1,
            show(&golden),
            show(&text)
        );
    }
}

/// The `pg …` documents, on a real PostgreSQL 15 server archiving into the repository.
#[test]
fn every_pg_json_document_is_snake_case_and_matches_the_golden_file_as_root() {
    use crate::pg_util::{PgEnv as _, PgSandbox, require_postgres};
    require_postgres();
    let sb = PgSandbox::new();
    let sandbox = sb.path("").display().to_string();
    let sandbox = sandbox.trim_end_matches('/').to_owned();
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();
    let pg = sb.cluster("main");
    pg.sql("create table t (id int primary key, v text)");
    pg.sql("insert into t select g, md5(g::text) from generate_series(1, 3) g");
    docs.insert("pg_backup".into(), pg.env(sb.c(["pg", "backup", "--json", "--cluster", "main"])).ok().json());
    pg.sql("insert into t values (4, 'four')");
    pg.switch_and_archive();
    docs.insert("pg_info".into(), sb.c(["pg", "info", "--json"]).ok().json());
    docs.insert(
        "pg_restore".into(),
        sb.c(["pg", "restore", "--json", "--latest", "--target"]).arg(sb.path("restored")).ok().json(),
    );
    docs.insert("pg_export_key".into(), sb.c(["pg", "export-key", "--json"]).arg(sb.path("repo.key")).ok().json());
    // wal-fetch of a segment the server archived, by its name in `info`.
    let info = &docs["pg_info"]["clusters"][0];
    let sysid = info["sysid"].as_str().unwrap().to_owned();
    let seg = info["first_segment"].as_str().unwrap_or_else(|| panic!("no first_segment in {info}")).to_owned();
    let fetched = sb.c(["pg", "wal-fetch", "--json", "--sysid", &sysid, &seg]).arg(sb.path("fetched")).ok().json();
    assert_eq!(
        std::fs::metadata(sb.path("fetched")).map(|m| m.len()).ok(),
        info["seg_size"].as_u64().or(Some(16 << 20))
    );
    docs.insert("pg_wal_fetch".into(), fetched);

    let mut bad = Vec::new();
    for (name, v) in &docs {
        non_snake_keys(v, name, &mut bad);
    }
    assert!(bad.is_empty(), "--json keys that are not snake_case: {bad:?}");
    let all: BTreeMap<String, Value> =
        docs.iter().map(|(k, v)| (k.clone(), normalise(v, "", &sandbox, true))).collect();
    compare(GOLDEN_PG, &serde_json::to_string_pretty(&all).unwrap());
}
