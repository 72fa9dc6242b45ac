//! Bit-rot and tampering in stored packs are found by `verify --read-data`, which names the
//! pack, the snapshots and the files affected; dumping damaged data fails with one line
//! naming it; a restore goes on past it, naming each damaged range, and what is not damaged
//! restores exactly.

use crate::repo_util::{Repo, assert_same_tree, flip_byte, largest_file, manifest, random_bytes, restored, subset};
use serde_json::Value;
use std::fs;
use std::path::Path;

/// The store key whose latest version lives in data file `file` (from the vault's database).
fn key_of_data_file(repo: &Repo, file: &Path) -> String {
    let db = rusqlite::Connection::open(repo.vault().join("meta.sqlite")).expect("open meta.sqlite");
    let name = file.file_name().unwrap().to_str().unwrap();
    let key: Vec<u8> =
        db.query_row("SELECT key FROM versions WHERE file = ?1", [name], |r| r.get(0)).expect("version of the file");
    String::from_utf8(key).unwrap()
}

/// A tree whose largest pack holds only `big.bin`'s chunks, backed up twice (the second
/// snapshot reuses `big.bin`). Returns the two snapshot ids.
fn two_snapshots(repo: &Repo, src: &Path) -> (String, String) {
    fs::create_dir_all(src).unwrap();
    // 40 MiB: the first packs (16 MiB each) then hold big.bin chunks only, whatever order the
    // parallel sealers finish in; small.txt and the trees land in the last, smaller pack.
    fs::write(src.join("big.bin"), random_bytes(40 << 20, 1)).unwrap();
    fs::write(src.join("small.txt"), b"small and elsewhere\n").unwrap();
    let s1 = repo.backup(&[src], &[])["snapshot"].as_str().unwrap().to_owned();
    fs::write(src.join("new.txt"), b"added later\n").unwrap();
    let s2 = repo.backup(&[src], &[])["snapshot"].as_str().unwrap().to_owned();
    (s1, s2)
}

/// Runs `restore SNAP --target T`, expecting it to go on past damage and exit 6; returns the
/// `coffer: damaged:` lines, each of which must name `key`.
fn restore_past_damage(repo: &Repo, snap: &str, target: &Path, key: &str) -> Vec<String> {
    let run = repo.c(["restore", snap, "--target"]).arg(target).run();
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("coffer: error: restore of snapshot ") && last.contains("incomplete"), "{}", run.stderr);
    let damaged: Vec<String> =
        run.stderr.lines().filter_map(|l| l.strip_prefix("coffer: damaged: ")).map(str::to_owned).collect();
    assert!(!damaged.is_empty() && damaged.iter().all(|l| l.contains(key)), "{}", run.stderr);
    damaged
}

/// Runs `verify --read-data --json`, expecting exit 6; returns the report.
fn verify_fails(repo: &Repo) -> Value {
    let run = repo.c(["verify", "--read-data", "--json"]).run();
    assert_eq!(run.code, Some(6), "verify --read-data must fail: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("coffer: error: verify found "), "{}", run.stderr);
    serde_json::from_slice(&run.stdout).expect("the report on stdout")
}

#[test]
fn bit_rot_in_a_pack_is_found_and_the_files_are_named() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    let (s1, s2) = two_snapshots(&repo, &src);
    let big = format!("{}/big.bin", src.display());

    let file = largest_file(&repo.vault().join("data"));
    let key = key_of_data_file(&repo, &file);
    assert!(key.starts_with("data/"), "the largest object is a pack: {key}");
    let len = fs::metadata(&file).unwrap().len() as usize;
    flip_byte(&file, len / 2);

    // Text: the pack, then every snapshot:file it affects. Blobs are sealed on several
    // threads, so which small blobs (small.txt, trees) share big.bin's pack varies from run
    // to run; big.bin is always there, new.txt (second backup, own pack) never.
    let run = repo.c(["verify", "--read-data"]).run();
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let text = String::from_utf8(run.stdout).unwrap();
    assert!(text.contains(&format!("problem: {key}: ")), "{text}");
    // Each snapshot names big.bin, or — when a directory tree it needs shares the damaged
    // pack, so nothing below can be listed — that directory.
    let names_big = |lines: &[&str], snap: &str| {
        lines.iter().any(|a| {
            a.strip_prefix(&format!("{}:", &snap[..8]))
                .is_some_and(|p| p == big || (p.ends_with('/') && big.starts_with(p)))
        })
    };
    let affects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("  affects ")).collect();
    for s in [&s1, &s2] {
        assert!(names_big(&affects, s), "{text}");
    }
    assert!(!text.contains("new.txt"), "new.txt is in another pack: {text}");
    let err = run.stderr.trim_end();
    assert!(err.starts_with("coffer: error: verify found ") && err.contains(&key), "{err}");

    // JSON: the same, machine-readable.
    let doc = verify_fails(&repo);
    let problems = doc["problems"].as_array().unwrap();
    let pack = problems.iter().find(|p| p["object"] == key.as_str()).unwrap_or_else(|| panic!("{doc}"));
    let affected: Vec<&str> = pack["affected"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for s in [&s1, &s2] {
        assert!(names_big(&affected, s), "{affected:?}");
    }
    let small = format!("{}/small.txt", src.display());
    for a in &affected {
        let path = a.split_once(':').map_or("", |(_, p)| p);
        assert!(path == big || path == small || path.ends_with('/'), "unexpected {a} in {affected:?}");
    }

    // Without reading data, the structure still verifies.
    repo.verify_at(0, false);

    // A restore goes on past the damage: it names every damaged byte range (file, range,
    // pack), leaves those ranges as holes, restores everything else exactly, and exits 6.
    let t = repo.sb.path("t");
    let damaged = restore_past_damage(&repo, "latest", &t, &key);
    let out = restored(&t, &src);
    // big.bin: unless the directory holding it was itself in the damaged pack, it is there,
    // full size, equal to the source outside the named ranges and zero inside them.
    let big_prefix = format!("{}: bytes ", out.join("big.bin").display());
    let ranges: Vec<(usize, usize)> = damaged
        .iter()
        .filter_map(|l| l.strip_prefix(&big_prefix))
        .map(|r| {
            let (a, rest) = r.split_once("..").unwrap();
            let b = rest.split_once(' ').unwrap().0;
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    let dir_lost = damaged.iter().any(|l| l.contains("the directory's entries are not restored"));
    assert!(!ranges.is_empty() || dir_lost, "big.bin's damage is named: {damaged:?}");
    if !ranges.is_empty() {
        let want = fs::read(src.join("big.bin")).unwrap();
        let got = fs::read(out.join("big.bin")).unwrap();
        assert_eq!(got.len(), want.len());
        let mut at = 0;
        for &(a, b) in &ranges {
            assert!(a >= at && b > a && b <= want.len(), "{ranges:?}");
            assert!(got[at..a] == want[at..a], "bytes {at}..{a} restored exactly");
            assert!(got[a..b].iter().all(|&x| x == 0), "bytes {a}..{b} are a hole");
            at = b;
        }
        assert!(got[at..] == want[at..], "the rest restored exactly");
        // Not everything was lost: the pack held only part of big.bin.
        assert!(ranges.iter().map(|(a, b)| b - a).sum::<usize>() < want.len());
    }
    // new.txt came with the second backup, in another pack: always restored.
    assert_eq!(fs::read(out.join("new.txt")).unwrap(), b"added later\n");
    let err = repo.c(["dump", "latest", &big]).fails(6);
    assert!(err.contains(&key), "{err}");

    // What is not damaged restores.
    let t3 = repo.sb.path("t3");
    repo.c(["restore", "latest", "--target"]).arg(&t3).arg("--include").arg(src.join("*.txt")).ok();
    assert_eq!(fs::read(restored(&t3, &src).join("small.txt")).unwrap(), b"small and elsewhere\n");
    assert_eq!(fs::read(restored(&t3, &src).join("new.txt")).unwrap(), b"added later\n");
}

#[test]
fn tampering_the_store_does_not_notice_is_caught_and_every_snapshot_affected_is_named() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.bin"), random_bytes(1 << 20, 5)).unwrap();
    fs::write(src.join("small.txt"), b"small\n").unwrap();
    let s1 = repo.backup(&[&src], &[])["snapshot"].as_str().unwrap().to_owned();
    // The first snapshot's two packs: its files, and (apart from data) its directory trees.
    let mut packs: Vec<(u64, String)> = repo
        .versions()
        .iter()
        .filter(|v| v["key"].as_str().unwrap().starts_with("data/"))
        .map(|v| (v["size"].as_u64().unwrap(), v["key"].as_str().unwrap().to_owned()))
        .collect();
    packs.sort();
    assert_eq!(packs.len(), 2, "{packs:?}");
    let (tree_key, key) = (packs[0].1.clone(), packs[1].1.clone());
    fs::write(src.join("new.txt"), b"added later\n").unwrap();
    let want = manifest(&src);
    let s2 = repo.backup(&[&src], &[])["snapshot"].as_str().unwrap().to_owned();

    // One byte changed, with the store's own checksum made to match, as a store without
    // checksums (or someone with the disk) would serve it: the pack's name is its hash.
    let mut bytes = fs::read(repo.data_file(&key)).unwrap();
    bytes[1000] ^= 0x01;
    repo.replace_data_file(&key, &bytes);

    let doc = verify_fails(&repo);
    let problems = doc["problems"].as_array().unwrap();
    let p = problems.iter().find(|p| p["object"] == key.as_str()).unwrap_or_else(|| panic!("{key} is named: {doc}"));
    assert!(p["message"].as_str().unwrap().contains("does not match its name"), "{p}");
    let affected: Vec<&str> = p["affected"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let base = src.display().to_string();
    // Both snapshots' files in that pack.
    for s in [&s1, &s2] {
        for f in ["a.bin", "small.txt"] {
            let want = format!("{}:{base}/{f}", &s[..8]);
            assert!(affected.contains(&want.as_str()), "{want} missing from {affected:?}");
        }
    }
    assert!(!affected.iter().any(|a| a.ends_with("new.txt")), "{affected:?}");

    // Reading fails naming the pack (a restore goes on past it); what is intact restores.
    let damaged = restore_past_damage(&repo, &s1[..8], &repo.sb.path("t1"), &key);
    assert!(damaged.iter().all(|d| d.contains("does not match its name")), "{damaged:?}");
    let err = repo.c(["dump", &s2[..8]]).arg(src.join("a.bin")).fails(6);
    assert!(err.contains(&key), "{err}");
    let t = repo.sb.path("t2");
    repo.c(["restore", &s2[..8], "--target"]).arg(&t).arg("--include").arg(src.join("new.txt")).ok();
    let only = subset(&want, &[b"new.txt"]);
    assert_same_tree(&only, &subset(&manifest(&restored(&t, &src)), &[b"new.txt"]), "the intact file");
    bytes[1000] ^= 0x01;
    repo.replace_data_file(&key, &bytes);

    // The first snapshot's tree pack damaged the same way: the first snapshot as a whole
    // is affected (none of its files can be listed), and the structure check alone sees it.
    let mut trees = fs::read(repo.data_file(&tree_key)).unwrap();
    trees[10] ^= 0x01;
    repo.replace_data_file(&tree_key, &trees);
    let doc = verify_fails(&repo);
    let p = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["object"] == tree_key.as_str())
        .unwrap_or_else(|| panic!("{tree_key} is named: {doc}"));
    let affected: Vec<&str> = p["affected"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let whole = format!("{}:/", &s1[..8]);
    assert!(affected.contains(&whole.as_str()), "{whole} missing from {affected:?}");
    let err = repo.c(["verify"]).fails(6);
    assert!(err.contains(&tree_key), "{err}");

    // The original bytes back: whole again.
    trees[10] ^= 0x01;
    repo.replace_data_file(&tree_key, &trees);
    repo.verify_at(0, true);
}

#[test]
fn a_damaged_index_or_tree_is_named() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"content").unwrap();
    repo.backup(&[&src], &[]);
    let index = repo.versions().into_iter().find(|v| v["key"].as_str().unwrap().starts_with("index/")).unwrap();
    let key = index["key"].as_str().unwrap().to_owned();
    flip_byte(&repo.data_file(&key), 10);
    for args in [vec!["verify"], vec!["ls", "latest"], vec!["stats"]] {
        let err = repo.c(&args).fails(6);
        assert!(err.contains(&key), "{args:?}: {err}");
    }
    restore_past_damage(&repo, "latest", &repo.sb.path("t"), &key);

    // Backups are not blocked for as long as the damaged object stays locked: the next one
    // warns, finds the (intact) pack the damaged index stated from the pack's own header,
    // states it in its own index, and its snapshot restores — and with it the old snapshot
    // too: the repository healed. The damaged object itself is still reported by verify.
    let old = repo.c(["snapshots", "--json"]).ok().json()[0]["id"].as_str().unwrap().to_owned();
    let run = repo.c(["backup", "--json"]).arg(&src).ok();
    assert!(run.stderr.contains(&key) && run.stderr.contains("read from their own headers"), "{}", run.stderr);
    assert_eq!(run.json()["summary"]["packs_recovered"], 2, "the data and the tree pack, from their headers");
    for (snap, t) in [("latest", "t2"), (&old[..8], "t3")] {
        let t = repo.sb.path(t);
        repo.restore_at(0, snap, &t);
        assert_eq!(fs::read(crate::repo_util::restored(&t, &src).join("d/f")).unwrap(), b"content");
    }
    let err = repo.c(["verify"]).fails(6);
    assert!(err.contains(&key), "{err}");
}

/// A damaged pack is not recovered from: a backup stores its data again (the intact pack
/// beside it, data or trees, is recovered).
#[test]
fn a_damaged_unindexed_pack_is_not_trusted() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"content").unwrap();
    repo.backup(&[&src], &[]);
    let versions = repo.versions();
    let key_of = |p: &str| {
        versions.iter().find(|v| v["key"].as_str().unwrap().starts_with(p)).unwrap()["key"].as_str().unwrap().to_owned()
    };
    let (index, pack) = (key_of("index/"), key_of("data/"));
    flip_byte(&repo.data_file(&index), 10);
    flip_byte(&repo.data_file(&pack), 10);
    let run = repo.c(["backup", "--json"]).arg(&src).ok();
    let s = &run.json()["summary"];
    assert_eq!((s["packs_recovered"].as_u64(), s["files_read"].as_u64()), (Some(1), Some(1)), "{s}");
    let t = repo.sb.path("t");
    repo.restore_at(0, "latest", &t);
    assert_eq!(fs::read(crate::repo_util::restored(&t, &src).join("d/f")).unwrap(), b"content");
}
