//! `coffer drill files` end to end on a real LocalVault (and LocalStack): a passing drill of
//! a tree with every file type, whole and sampled, leaving no scratch space; a damaged pack,
//! an RTO target no restore meets, each failing the drill with exit 10 and the check that
//! saw it; `--snapshot random` among live snapshots only; `--source` from coffer.toml; bad
//! input refused in one line.

use crate::repo_util::{DAY, PASSWORD, Repo, every_type_tree, flip_byte, largest_file, random_bytes};
use serde_json::Value;
use std::fs;

/// The checks of a report, as (name, outcome, detail).
fn checks(doc: &Value) -> Vec<(String, String, String)> {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("outcome"), s("detail"))
        })
        .collect()
}

/// The check called `name`.
#[track_caller]
fn check<'a>(all: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    all.iter().find(|c| c.0 == name).unwrap_or_else(|| panic!("no check {name}: {all:?}"))
}

/// A drill that must exit 10 (ran, did not pass): its JSON report.
#[track_caller]
fn not_proven(run: crate::Run) -> Value {
    assert_eq!(run.code, Some(10), "the drill must fail with exit 10; stderr: {}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("coffer: error: the files drill did not pass: "), "{}", run.stderr);
    let doc: Value = serde_json::from_slice(&run.stdout).expect("the report on stdout");
    assert_eq!(doc["passed"], false, "{doc}");
    doc
}

#[test]
fn drill_files_passes_whole_and_sampled_and_removes_its_scratch_as_root() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    every_type_tree(&src, 15);
    let id = repo.backup(&[&src], &[])["snapshot"].as_str().unwrap().to_owned();

    let scratch = repo.sb.path("scratch");
    let doc = repo.c(["drill", "files", "--json", "--scratch"]).arg(&scratch).ok().json();
    assert!(!scratch.exists(), "the scratch directory the drill made is removed");
    let all = checks(&doc);
    let names: Vec<&str> = all.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["restore", "content", "metadata", "locks"], "{doc}");
    assert!(all.iter().all(|c| c.1 == "passed"), "{all:#?}");
    assert!(check(&all, "content").2.contains("match the snapshot's content ids"), "{all:?}");
    assert!(check(&all, "locks").2.contains("locked at least until the snapshot expires"), "{all:?}");
    assert_eq!(doc["passed"], true);
    assert_eq!(doc["kind"], "files");
    assert_eq!(doc["job"], "manual");
    assert_eq!(doc["version"], 1);
    let r = &doc["restored"][0];
    assert_eq!(r["snapshot"], id.as_str(), "{doc}");
    assert!(r["files"].as_u64().unwrap() > 10 && r["bytes"].as_u64().unwrap() > 2 << 20, "{r}");
    assert!(doc["rto_seconds"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(doc["throughput"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(doc["data_age_seconds"].as_f64().unwrap() >= 0.0, "{doc}");

    // A sample into an existing empty directory: only N files, the directory left empty.
    fs::create_dir(&scratch).unwrap();
    let doc = repo.c(["drill", "files", "--json", "--sample", "3", "--scratch"]).arg(&scratch).ok().json();
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "emptied, kept: it was there before");
    let all = checks(&doc);
    assert!(all.iter().all(|c| c.1 == "passed"), "{all:#?}");
    assert!(check(&all, "content").2.starts_with("3 files, "), "{all:?}");
    assert_eq!(doc["restored"][0]["files"], 3, "{doc}");

    // Human output: one line per check and a summary; the default scratch space is removed.
    let before: Vec<_> = temp_drills();
    let out = repo.c(["drill", "files", "--sample", "2"]).ok().stdout_text();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, name) in lines.iter().zip(["restore", "content", "metadata", "locks"]) {
        assert!(line.starts_with(&format!("passed   {name}: ")), "{out}");
    }
    assert!(
        lines[4].starts_with("files drill ") && lines[4].contains(" RTO ") && lines[4].ends_with(": passed"),
        "{out}"
    );
    assert_eq!(temp_drills(), before, "no scratch directory left in the temporary directory");
}

fn temp_drills() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("coffer-drill-")))
        .collect();
    v.sort();
    v
}

#[test]
fn drill_files_fails_on_a_damaged_pack_and_names_the_file() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(&src).unwrap();
    // 40 MiB: the largest packs hold big.bin's chunks only.
    fs::write(src.join("big.bin"), random_bytes(40 << 20, 3)).unwrap();
    fs::write(src.join("small.txt"), b"small\n").unwrap();
    repo.backup(&[&src], &[]);
    let pack = largest_file(&repo.vault().join("data"));
    let len = fs::metadata(&pack).unwrap().len() as usize;
    flip_byte(&pack, len / 2);

    let scratch = repo.sb.path("scratch");
    let doc = not_proven(repo.c(["drill", "files", "--json", "--scratch"]).arg(&scratch).run());
    assert!(!scratch.exists(), "removed after a failed drill too");
    let all = checks(&doc);
    let (_, outcome, detail) = check(&all, "restore");
    assert_eq!(outcome, "failed", "{all:#?}");
    assert!(detail.contains("damaged: ") && detail.contains("big.bin") && detail.contains("not restored"), "{detail}");
    let (_, outcome, detail) = check(&all, "content");
    assert_eq!(outcome, "failed", "{all:#?}");
    assert!(detail.contains("big.bin: bytes ") && detail.contains("differ from the snapshot"), "{detail}");
    assert_eq!(check(&all, "metadata").1, "passed", "{all:#?}");
}

#[test]
fn drill_files_over_its_rto_target_fails() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.bin"), random_bytes(1 << 20, 9)).unwrap();
    repo.backup(&[&src], &[]);
    let doc = not_proven(repo.c(["drill", "files", "--json", "--rto-target", "1ns"]).run());
    let all = checks(&doc);
    let names: Vec<&str> = all.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["restore", "content", "metadata", "locks", "rto"], "{doc}");
    assert!(all[..4].iter().all(|c| c.1 == "passed"), "{all:#?}");
    assert_eq!(all[4].1, "failed");
    assert!(all[4].2.starts_with("recovered in "), "{all:?}");
    assert_eq!(doc["rto_target_seconds"], 1e-9, "{doc}");
    // Human: the failed check's line, and the verdict on stderr.
    let run = repo.c(["drill", "files", "--rto-target", "1ns"]).run();
    assert_eq!(run.code, Some(10), "{}", run.stderr);
    assert!(run.stdout_text().contains("\nFAILED   rto: recovered in "), "{}", run.stdout_text());
    assert!(run.stderr.contains("coffer: error: the files drill did not pass: rto: recovered in "), "{}", run.stderr);
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "moves the clock with COFFER_TEST_CLOCK_OFFSET")]
fn drill_files_random_picks_only_live_snapshots_of_the_source() {
    let repo = Repo::init();
    let (a, b) = (repo.sb.path("a"), repo.sb.path("b"));
    for (d, text) in [(&a, "a"), (&b, "b")] {
        fs::create_dir_all(d).unwrap();
        fs::write(d.join("f"), text).unwrap();
    }
    // Expired by now: made 40 days ago, kept the default 30.
    let old = repo.backup_at(-40 * DAY, &[&a], &[])["snapshot"].as_str().unwrap().to_owned();
    let mut live_a = Vec::new();
    for i in 0..2 {
        fs::write(a.join("f"), format!("a{i}")).unwrap();
        live_a.push(repo.backup(&[&a], &[])["snapshot"].as_str().unwrap().to_owned());
    }
    let of_b = repo.backup(&[&b], &[])["snapshot"].as_str().unwrap().to_owned();
    let live: Vec<String> = repo.snapshots_at(0).iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert!(!live.contains(&old), "{live:?}");

    let config = repo.sb.file(
        "coffer.toml",
        format!(
            "[repositories.main]\nlocation = {:?}\n\n[files.a]\nrepository = \"main\"\npaths = [{:?}]\nschedule = \"weekly\"\n\n[files.a.drill]\nschedule = \"weekly\"\nsnapshot = \"random\"\nrto-target = \"1h\"\n",
            repo.vault().display().to_string(),
            a.display().to_string()
        )
        .as_bytes(),
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let doc = repo.c(["--config"]).arg(&config).args(["drill", "files", "--json", "--source", "a"]).ok().json();
        let picked = doc["restored"][0]["snapshot"].as_str().unwrap().to_owned();
        assert!(live_a.contains(&picked), "{picked} is not a live snapshot of a: {live_a:?} (old {old}, b {of_b})");
        assert_eq!(doc["restored"][0]["source"], "a");
        assert_eq!(doc["rto_target_seconds"], 3600.0, "from [files.a.drill]");
        assert_eq!(check(&checks(&doc), "rto").1, "passed");
        seen.insert(picked);
    }
    for _ in 0..6 {
        let doc = repo.c(["drill", "files", "--json", "--snapshot", "random"]).ok().json();
        let picked = doc["restored"][0]["snapshot"].as_str().unwrap().to_owned();
        assert!(picked != old && live.contains(&picked), "{picked}: not live ({live:?})");
    }
    // By id: the expired one is no longer there to drill.
    let e = repo.c(["drill", "files", "--snapshot", &old[..12]]).fails(1);
    assert!(e.contains(&format!("no snapshot {}", &old[..12])), "{e}");
}

#[test]
fn drill_files_refuses_bad_input_in_one_line() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    repo.backup(&[&src], &[]);
    let e = repo.c(["drill", "files", "--sample", "0"]).fails(2);
    assert!(e.contains("--sample must be at least 1"), "{e}");
    let e = repo.c(["drill", "files", "--scratch", "relative/dir"]).fails(2);
    assert!(e.contains("--scratch must be an absolute path"), "{e}");
    let busy = repo.sb.path("busy");
    fs::create_dir_all(&busy).unwrap();
    fs::write(busy.join("keep-me"), b"precious").unwrap();
    let e = repo.c(["drill", "files", "--scratch"]).arg(&busy).fails(1);
    assert!(e.contains(&format!("scratch directory {} is not empty", busy.display())), "{e}");
    assert_eq!(fs::read(busy.join("keep-me")).unwrap(), b"precious", "left alone");
    let e = repo.c(["drill", "files", "--snapshot", "deadbeef"]).fails(1);
    assert!(e.contains("no snapshot deadbeef"), "{e}");
    let e = repo.c(["drill", "files", "--source", "nope"]).env("COFFER_CONFIG", repo.sb.file("c.toml", b"")).fails(2);
    assert!(e.contains("no files source \"nope\""), "{e}");
    // A repository with no files snapshot at all.
    let empty = Repo::init();
    let e = empty.c(["drill", "files"]).fails(1);
    assert!(e.contains("no live files snapshot"), "{e}");
    // A wrong password: the drill cannot run (and the password appears nowhere).
    let run = repo.c(["drill", "files"]).env("COFFER_PASSWORD", "not the password").run();
    assert!(run.code != Some(0) && run.code != Some(10), "{:?} {}", run.code, run.stderr);
    assert!(!run.stderr.contains("not the password") && !run.stderr.contains(PASSWORD), "{}", run.stderr);
}

#[test]
fn drill_files_over_s3_on_localstack() {
    use crate::s3_repo::S3Repo;
    use coffer_testkit::s3::{S3Server, ServerKind};
    let server = S3Server::start(ServerKind::LocalStack);
    let bucket = server.new_bucket("coffer-drill");
    let r = S3Repo { sb: crate::Sandbox::new(), server: &server, url: server.url(&bucket, "drill") };
    let src = r.sb.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("big.bin"), random_bytes(3 << 20, 5)).unwrap();
    fs::write(src.join("d/small.txt"), b"over s3\n").unwrap();
    r.c(["init"]).ok();
    let id = r.c(["backup", "--json"]).arg(&src).ok().json()["snapshot"].as_str().unwrap().to_owned();
    let scratch = r.sb.path("scratch");
    let doc =
        r.as_role(coffer_store::Role::Reader, ["drill", "files", "--json", "--scratch"]).arg(&scratch).ok().json();
    assert!(!scratch.exists());
    let all = checks(&doc);
    assert!(all.iter().all(|c| c.1 == "passed"), "{all:#?}");
    assert_eq!(doc["restored"][0]["snapshot"], id.as_str());
    assert!(check(&all, "content").2.starts_with("2 files, "), "{all:?}");
    assert!(check(&all, "locks").2.contains("packs) locked"), "{all:?}");
}
