//! Backup and restore through the binary reproduce a tree with every file type exactly;
//! `ls`, `diff`, `dump`, `snapshots`, `stats`, `--include` and `latest` show what is there;
//! unchanged files are not read again.

use crate::repo_util::{Kind, Repo, assert_same_tree, every_type_tree, join, manifest, random_bytes, restored, subset};
use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

#[test]
fn every_file_type_is_restored_exactly_as_root() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    let features = every_type_tree(&src, 7);
    let want = manifest(&src);
    assert!(want.len() >= 40, "the generated tree is complete: {} entries", want.len());

    let doc = repo.backup(&[&src], &["--tag", "every-type", "--host", "test-host"]);
    let s = &doc["summary"];
    let files = want.values().filter(|e| e.kind == Kind::File).count() as u64;
    assert_eq!(s["files"], files, "{doc}");
    assert_eq!(s["files_read"], files, "{doc}");
    assert_eq!(s["errors"], 0, "{doc}");
    assert_eq!(doc["warnings"], serde_json::json!([]));
    let id = doc["snapshot"].as_str().unwrap().to_owned();

    let target = repo.sb.path("restore");
    let out = repo.restore_at(0, "latest", &target);
    assert_eq!(out["snapshot"], id.as_str());
    assert_eq!(out["warnings"], serde_json::json!([]), "{out}");
    let got = manifest(&restored(&target, &src));
    assert_same_tree(&want, &got, "restore latest");

    // Sparse stays sparse; hard links are links.
    let sparse = &got[&b"sparse.img".to_vec()];
    assert_eq!(sparse.size, 10 << 20);
    assert!(sparse.blocks * 512 <= 1 << 20, "sparse.img was restored with {} blocks allocated", sparse.blocks);
    let ino = |rel: &str| fs::symlink_metadata(restored(&target, &src).join(rel)).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(ino("hl1").ino(), ino("sub/deeper/hl3").ino());
    assert_eq!(ino("hl1").nlink(), 3);
    if features.devices {
        assert_eq!(got[&b"chardev".to_vec()].rdev, rustix::fs::makedev(1, 3));
    }
    if features.xattrs {
        assert_eq!(got[&b"small.txt".to_vec()].xattrs[&b"user.binary".to_vec()], [0, 1, 2, 0xff, 0xfe]);
    }

    // The same snapshot by id prefix restores the same.
    let target2 = repo.sb.path("restore-by-id");
    repo.restore_at(0, &id[..8], &target2);
    assert_same_tree(&want, &manifest(&restored(&target2, &src)), "restore by id");

    // A non-empty target is refused, and nothing in it is touched.
    let err = repo.c(["restore", "latest", "--target"]).arg(&target).fails(1);
    assert!(err.contains("is not empty"), "{err}");
    assert_same_tree(&want, &manifest(&restored(&target, &src)), "after a refused restore");

    // snapshots, stats.
    let snaps = repo.snapshots_at(0);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], id.as_str());
    let snap = &snaps[0]["snapshot"];
    assert_eq!(snap["paths"], serde_json::json!([src.to_str().unwrap()]));
    assert_eq!(snap["tags"], serde_json::json!(["every-type"]));
    assert_eq!(snap["host"], "test-host");
    assert_eq!(snap["kind"], "files");
    assert!(crate::ts(&snap["expires"]) > crate::ts(&snap["time"]));
    let stats = repo.c(["stats", "--json"]).ok().json();
    assert_eq!(stats["snapshots"], 1);
    assert!(stats["packs"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["raw_bytes"].as_u64().unwrap() > 5 << 19, "{stats}");
    assert!(stats["stored_bytes"].as_u64().unwrap() > 5 << 19, "random data does not compress: {stats}");
    let text = repo.c(["stats"]).ok().stdout_text();
    assert!(text.contains("snapshots:     1"), "{text}");
    repo.verify_at(0, true);
}

#[test]
fn ls_and_dump_show_the_snapshot_as_root() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    every_type_tree(&src, 11);
    let want = manifest(&src);
    repo.backup(&[&src], &[]);
    let base = src.to_str().unwrap();

    // ls --json: every entry of the tree, with its node.
    let doc = repo.c(["ls", "--json", "latest"]).ok().json();
    let entries = doc["entries"].as_array().expect("entries");
    let mut seen = BTreeSet::new();
    for e in entries {
        let path = e["path"].as_str().expect("path");
        if let Some(rel) = path.strip_prefix(base) {
            seen.insert(rel.trim_start_matches('/').as_bytes().to_vec());
        }
    }
    let utf8: BTreeSet<Vec<u8>> = want.keys().filter(|k| std::str::from_utf8(k).is_ok()).cloned().collect();
    assert!(utf8.is_subset(&seen), "ls --json misses {:?}", utf8.difference(&seen).collect::<Vec<_>>());
    // A name that is not UTF-8 is given exactly, hex-encoded, beside a readable form.
    let raw = |p: &[u8]| p.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let latin1 = [base.as_bytes(), b"/caf\xe9.txt"].concat();
    let e = entries.iter().find(|e| e["path_raw"] == raw(&latin1)).expect("the non-UTF-8 name is listed exactly");
    assert_eq!(e["path"], format!("{base}/caf\u{fffd}.txt"));
    assert_eq!(e["node"]["name_raw"], raw(b"caf\xe9.txt"));
    let setuid = entries.iter().find(|e| e["path"] == format!("{base}/setuid")).expect("setuid listed");
    assert_eq!(setuid["node"]["mode"], 0o4755);
    assert_eq!(setuid["node"]["uid"], 1234);

    // ls text: type, mode, owner and link targets; a path limits the listing.
    let text = repo.c(["ls", "latest"]).ok().stdout_text();
    let line = |suffix: &str| {
        text.lines().find(|l| l.ends_with(suffix)).unwrap_or_else(|| panic!("no line ending {suffix:?} in\n{text}"))
    };
    assert!(line(&format!("{base}/setuid")).starts_with("-4755     1234     5678"), "{}", line("/setuid"));
    assert!(line(&format!("{base}/sticky")).starts_with("d1777"), "{}", line("/sticky"));
    assert!(line(&format!("{base}/fifo")).starts_with("p0640"));
    assert!(line(&format!("{base}/link-rel -> small.txt")).starts_with('l'));
    assert!(line(&format!("{base}/dangling -> no/such/target")).starts_with('l'));
    assert!(text.contains(&format!("{base}/sub/deeper/a/b/c/leaf.txt")));
    let sub = repo.c(["ls", "latest"]).arg(src.join("sub")).ok().stdout_text();
    assert!(sub.lines().all(|l| l.contains(&format!("{base}/sub"))), "{sub}");
    assert_eq!(sub.lines().count(), want.keys().filter(|k| k.starts_with(b"sub")).count(), "{sub}");

    // dump: byte-exact, also for empty, sparse and non-UTF-8 names.
    for rel in [&b"big.bin"[..], b"empty.txt", b"sparse.img", b"caf\xe9.txt", b"dir-\xff\xfe/\xc0\xc1", b"mode000"] {
        let path = join(&src, rel);
        let run = repo.c(["dump", "latest"]).arg(&path).ok();
        assert!(run.stdout == fs::read(&path).unwrap(), "dump of {path:?} differs");
    }
    let err = repo.c(["dump", "latest"]).arg(src.join("sub")).fails(1);
    assert!(err.contains(&format!("{base}/sub in snapshot")) && err.contains("is not a regular file"), "{err}");
    let err = repo.c(["dump", "latest"]).arg(src.join("nope")).fails(1);
    assert!(err.contains(&format!("{base}/nope is not in snapshot")), "{err}");
    let err = repo.c(["dump", "ffffffff"]).arg(src.join("small.txt")).fails(1);
    assert!(err.contains("no snapshot ffffffff in"), "{err}");

    // diff --json names a removed non-UTF-8 file exactly too.
    let first = repo.snapshots_at(0)[0]["id"].as_str().unwrap().to_owned();
    fs::remove_file(join(&src, b"caf\xe9.txt")).unwrap();
    repo.backup(&[&src], &[]);
    let diff = repo.c(["diff", "--json", &first, "latest"]).ok().json();
    let gone: Vec<&Value> = diff.as_array().unwrap().iter().filter(|c| c["change"] == "-").collect();
    assert_eq!(gone.len(), 1, "{diff}");
    assert_eq!(gone[0]["path_raw"], raw(&latin1), "{diff}");
}

/// Files larger than a restore piece (32 MiB) are written by several workers at once, each
/// at its own offsets; the result must be the same bytes, holes where the source has them
/// (including at a piece's edge and at the end), metadata set once all pieces are in.
#[test]
fn large_files_restore_exactly_from_pieces_as_root() {
    use std::io::{Seek as _, SeekFrom, Write as _};
    use std::os::unix::fs::PermissionsExt as _;
    // Without a warning: as another user the restore warns that it cannot give the
    // sandbox's ancestors (/tmp) their owner, root.
    crate::repo_util::require_root("to restore the owner of the sandbox's ancestors");
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(&src).unwrap();
    // Data across the first piece boundary, then a hole to the end.
    {
        let mut f = fs::File::create(src.join("sparse-large.img")).unwrap();
        f.write_all(&random_bytes(1 << 20, 1)).unwrap();
        f.seek(SeekFrom::Start(30 << 20)).unwrap();
        f.write_all(&random_bytes(5 << 20, 2)).unwrap();
        f.seek(SeekFrom::Start(70 << 20)).unwrap();
        f.write_all(&random_bytes(100_000, 3)).unwrap();
        f.set_len(100 << 20).unwrap();
    }
    fs::write(src.join("dense.bin"), random_bytes(70 << 20, 4)).unwrap();
    fs::set_permissions(src.join("dense.bin"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(src.join("small.txt"), b"restored beside the pieces\n").unwrap();
    let want = manifest(&src);
    repo.backup(&[&src], &[]);
    let target = repo.sb.path("restore");
    let out = repo.restore_at(0, "latest", &target);
    assert_eq!(out["warnings"], serde_json::json!([]), "{out}");
    let got = manifest(&restored(&target, &src));
    assert_same_tree(&want, &got, "large files");
    let sparse = &got[&b"sparse-large.img".to_vec()];
    assert_eq!(sparse.size, 100 << 20);
    assert!(sparse.blocks * 512 <= 8 << 20, "sparse-large.img was restored with {} blocks allocated", sparse.blocks);
    for rel in ["sparse-large.img", "dense.bin"] {
        assert!(
            fs::read(restored(&target, &src).join(rel)).unwrap() == fs::read(src.join(rel)).unwrap(),
            "{rel}: restored bytes differ"
        );
    }
}

/// The paths (relative to `root`) of every entry under `root`.
fn paths_under(root: &Path) -> BTreeSet<Vec<u8>> {
    manifest(root).keys().cloned().collect()
}

#[test]
fn include_restores_only_what_matches_as_root() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    every_type_tree(&src, 13);
    let want = manifest(&src);
    repo.backup(&[&src], &[]);

    // A directory: it and everything below, exactly; nothing else but its ancestors.
    let t = repo.sb.path("only-sub");
    let run = repo.c(["restore", "latest", "--target"]).arg(&t).arg("--include").arg(src.join("sub")).ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    let got = manifest(&restored(&t, &src));
    let only = subset(&want, &[b"sub"]);
    let below: crate::repo_util::Manifest =
        got.iter().filter(|(k, _)| !k.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_same_tree(&only, &below, "--include SRC/sub");

    // A glob on names: just the matching files (in their directories).
    let t = repo.sb.path("only-txt");
    repo.c(["restore", "latest", "--target"]).arg(&t).args(["--include", "**/*.txt"]).ok();
    let got = paths_under(&restored(&t, &src));
    let files: BTreeSet<Vec<u8>> =
        got.iter().filter(|k| fs::symlink_metadata(join(&restored(&t, &src), k)).unwrap().is_file()).cloned().collect();
    let expected: BTreeSet<Vec<u8>> =
        want.iter().filter(|(k, e)| e.kind == Kind::File && k.ends_with(b".txt")).map(|(k, _)| k.clone()).collect();
    assert_eq!(files, expected);
    for f in &files {
        let a = fs::read(join(&src, f)).unwrap();
        let b = fs::read(join(&restored(&t, &src), f)).unwrap();
        assert!(a == b, "{:?}", OsStr::from_bytes(f));
    }
    assert!(!got.contains(b"big.bin".as_slice()) && !got.contains(b"sub/empty-dir".as_slice()), "{got:?}");

    // A glob matching nothing restores nothing (and says so without failing).
    let t = repo.sb.path("none");
    repo.c(["restore", "latest", "--target"]).arg(&t).args(["--include", "/no/such/**"]).ok();
    assert_eq!(fs::read_dir(&t).unwrap().count(), 0);
}

fn summary(doc: &Value, field: &str) -> u64 {
    doc["summary"][field].as_u64().unwrap_or_else(|| panic!("no summary.{field} in {doc}"))
}

#[test]
fn unchanged_files_are_not_read_again_and_diff_shows_changes() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for (i, name) in ["a", "b", "c", "d/e"].iter().enumerate() {
        fs::write(src.join(name), random_bytes(300_000 + i * 1000, i as u64)).unwrap();
    }
    fs::write(src.join("big"), random_bytes(2 << 20, 99)).unwrap();
    let first = repo.backup(&[&src], &[]);
    assert_eq!(summary(&first, "files_read"), 5, "{first}");
    let s1 = first["snapshot"].as_str().unwrap().to_owned();

    // Nothing changed: nothing read, nothing but trees added.
    let second = repo.backup(&[&src], &[]);
    assert_eq!(summary(&second, "files"), 5);
    assert_eq!(summary(&second, "files_read"), 0, "{second}");
    assert!(summary(&second, "bytes_added") < 10_000, "{second}");
    let s2 = second["snapshot"].as_str().unwrap().to_owned();
    assert_eq!(repo.snapshots_at(0)[1]["snapshot"]["parent"], s1.as_str(), "the first is the parent");

    // One file's content changes (same size): only it is read.
    fs::write(src.join("b"), random_bytes(301_000, 1000)).unwrap();
    let third = repo.backup(&[&src], &[]);
    assert_eq!(summary(&third, "files_read"), 1, "{third}");
    assert!(summary(&third, "bytes_added") >= 301_000, "{third}");
    let s3 = third["snapshot"].as_str().unwrap().to_owned();

    // Add, remove, change mode; touch the big file's mtime only (read again, nothing new stored).
    fs::write(src.join("new"), b"new file").unwrap();
    fs::remove_file(src.join("c")).unwrap();
    crate::repo_util::chmod(&src.join("a"), 0o600);
    crate::repo_util::set_times(&src.join("big"), (1_700_000_000, 5), (1_700_000_000, 5));
    let fourth = repo.backup(&[&src], &[]);
    // new (new), a (ctime changed by chmod), big (mtime changed).
    assert_eq!(summary(&fourth, "files_read"), 3, "{fourth}");
    assert!(summary(&fourth, "bytes_added") < 100_000, "the big file deduplicates: {fourth}");
    let s4 = fourth["snapshot"].as_str().unwrap().to_owned();

    let base = src.to_str().unwrap();
    let diff = |a: &str, b: &str| repo.c(["diff", a, b]).ok().stdout_text();
    assert_eq!(diff(&s1, &s2), "");
    assert_eq!(diff(&s2, &s3), format!("M {base}/b\n"));
    assert_eq!(diff(&s3, &s4), format!("U {base}/a\nU {base}/big\n- {base}/c\n+ {base}/new\n"));
    assert_eq!(diff(&s4, &s3), format!("U {base}/a\nU {base}/big\n+ {base}/c\n- {base}/new\n"));
    let json = repo.c(["diff", "--json", &s1[..6], "latest"]).ok().json();
    assert_eq!(
        json,
        serde_json::json!([
            {"change": "U", "path": format!("{base}/a")},
            {"change": "M", "path": format!("{base}/b")},
            {"change": "U", "path": format!("{base}/big")},
            {"change": "-", "path": format!("{base}/c")},
            {"change": "+", "path": format!("{base}/new")},
        ])
    );

    // `latest` is the fourth; each snapshot still restores its own content.
    assert_eq!(repo.c(["dump", "latest"]).arg(src.join("new")).ok().stdout, b"new file");
    let t = repo.sb.path("third");
    repo.restore_at(0, &s3, &t);
    assert!(fs::read(restored(&t, &src).join("c")).unwrap() == random_bytes(302_000, 2));
    assert!(fs::read(restored(&t, &src).join("b")).unwrap() == random_bytes(301_000, 1000));
    let t = repo.sb.path("first");
    repo.restore_at(0, &s1, &t);
    assert!(fs::read(restored(&t, &src).join("b")).unwrap() == random_bytes(301_000, 1));
    let snaps = repo.snapshots_at(0);
    assert_eq!(snaps.len(), 4);
    assert_eq!(snaps.last().unwrap()["id"], s4.as_str());
    let text = repo.c(["snapshots"]).ok().stdout_text();
    assert!(text.lines().last() == Some("4 snapshots"), "{text}");
    repo.verify_at(0, true);
}

/// A restore does not set an owner that a new file already has; new files get the
/// restoring user's group only when the target's group is that group too. Under a
/// set-group-ID target of another group they get the target's group, and every owner must
/// still be set (the shortcut taken blindly would leave root's files in group 4321).
#[test]
fn owners_are_exact_in_a_set_group_id_target_of_another_group_as_root() {
    use crate::repo_util::{chmod, lchown};
    crate::repo_util::require_root("to give files other owners");
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    for (name, uid, gid) in [("root", 0, 0), ("other", 4321, 4321), ("mixed", 0, 4321), ("dir/root", 0, 0)] {
        fs::write(src.join(name), name).unwrap();
        lchown(&src.join(name), uid, gid);
    }
    let want = manifest(&src);
    repo.backup(&[&src], &[]);
    for setgid in [false, true] {
        let target = repo.sb.path(if setgid { "setgid-target" } else { "target" });
        fs::create_dir(&target).unwrap();
        if setgid {
            lchown(&target, 0, 4321);
            chmod(&target, 0o2755);
        }
        repo.restore_at(0, "latest", &target);
        let what = if setgid { "restored into a set-group-ID target" } else { "restored" };
        assert_same_tree(&want, &manifest(&restored(&target, &src)), what);
    }
}
