//! A restore never writes outside its target (issue 11): snapshots forged through the library
//! — as a compromised backup host holding the writer's key and the password can — with
//! entries named `..`, `.`, ``, `a/b` or with NUL, repeated names (a symlink and then a
//! directory of the same name), and a hard link whose first name leaves the tree. The real
//! `coffer restore` must refuse each of them by name, exit non-zero, write nothing outside
//! the target and restore everything else exactly; `coffer ls` must show them quoted.

use crate::repo_util::{PASSWORD, Repo};
use coffer_repository::repo::BlobWriter;
use coffer_repository::{BlobKind, Id, NewSnapshot, Node, NodeKind, Repository, Tree};
use coffer_store::{Clock, LocalVault, ObjectStore, Role};
use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

fn node(name: &[u8], kind: NodeKind) -> Node {
    let t = jiff::Timestamp::from_second(1_700_000_000).unwrap();
    let mut n = Node {
        name: String::new(),
        name_raw: None,
        kind,
        mode: if kind == NodeKind::Dir { 0o755 } else { 0o640 },
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        user: None,
        group: None,
        mtime: t,
        atime: t,
        ctime: t,
        inode: 0,
        device: 0,
        links: 1,
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: None,
        target_raw: None,
        rdev: 0,
        xattrs: Vec::new(),
    };
    n.set_name(name);
    n
}

fn file(w: &mut BlobWriter<'_>, name: &[u8], data: &[u8]) -> Node {
    let mut n = node(name, NodeKind::File);
    n.size = data.len() as u64;
    n.content = vec![w.add(BlobKind::Data, data).unwrap()];
    n
}

fn dir(name: &[u8], nodes: Vec<Node>, w: &mut BlobWriter<'_>) -> Node {
    let mut n = node(name, NodeKind::Dir);
    n.subtree = Some(w.add(BlobKind::Tree, &Tree { nodes }.to_bytes()).unwrap());
    n
}

fn symlink(name: &[u8], target: &[u8]) -> Node {
    let mut n = node(name, NodeKind::Symlink);
    n.set_target(target);
    n
}

fn hard_linked(mut n: Node, inode: u64) -> Node {
    (n.inode, n.device, n.links) = (inode, 1, 2);
    n
}

/// Writes a snapshot whose root tree `build` makes, through the library, as the writer.
fn forge(repo: &Repo, build: impl FnOnce(&mut BlobWriter<'_>) -> Vec<Node>) -> Id {
    let vault = LocalVault::open(repo.vault()).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let clock = Clock::system();
    let r = Repository::open(store, "forged", "", PASSWORD.as_bytes(), clock.clone()).unwrap();
    let now = clock.now();
    let expires = now + jiff::SignedDuration::from_hours(24 * 7);
    let mut w = r.writer(expires).unwrap();
    let nodes = build(&mut w);
    let tree = w.add(BlobKind::Tree, &Tree { nodes }.to_bytes()).unwrap();
    w.commit(NewSnapshot {
        kind: "files".into(),
        time: now,
        host: "attacker".into(),
        paths: vec!["/".into()],
        tags: Vec::new(),
        tree,
        parent: None,
        pg: None,
    })
    .unwrap()
}

/// The names in `dir`.
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn restore_refuses_hostile_entries_writes_nothing_outside_and_restores_the_rest() {
    let repo = Repo::init();
    // W/a/b/c/t: three `..` up from the target is W/a, four is W.
    let w = repo.sb.path("W");
    let target = w.join("a/b/c/t");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let outside = w.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"untouched").unwrap();
    let out = outside.to_str().unwrap().as_bytes().to_vec();
    forge(&repo, |bw| {
        let pwned = hard_linked(file(bw, b"pwned.txt", b"pwned by ..\n"), 77);
        let up3 = dir(b"..", vec![pwned], bw);
        let up2 = dir(b"..", vec![up3], bw);
        let up1 = dir(b"..", vec![up2], bw);
        let dot = dir(b".", vec![file(bw, b"dot.txt", b"via .\n")], bw);
        let under_link = dir(b"a", vec![file(bw, b"pwned.txt", b"through the symlink\n")], bw);
        let sub = dir(b"sub", vec![file(bw, b"f2", &[7u8; 100_000])], bw);
        let ok = dir(
            b"ok",
            vec![
                file(bw, b"f1", b"first file\n"),
                hard_linked(file(bw, b"h1", b"linked\n"), 5),
                hard_linked(file(bw, b"h2", b"linked\n"), 5),
                symlink(b"link", b"f1"),
                sub,
            ],
            bw,
        );
        // Tree order: by name bytes; the duplicates' order as an attacker chooses.
        vec![
            file(bw, b"", b"empty name\n"),
            dot,
            up1,
            file(bw, b"../../../../slash.txt", b"slash\n"),
            symlink(b"a", &out),
            under_link,
            file(bw, b"dup", b"one\n"),
            file(bw, b"dup", b"two\n"),
            // The second name of the `..` chain's hard-linked file: restored on its own.
            hard_linked(file(bw, b"hl", b"pwned by ..\n"), 77),
            file(bw, b"nul\0.txt", b"nul\n"),
            ok,
            symlink(b"s", &out),
            file(bw, b"s/pwned.txt", b"beneath a symlink\n"),
        ]
    });

    let run = repo.c(["restore", "latest", "--target"]).arg(&target).run();
    assert_ne!(run.code, Some(0), "a restore refusing entries must fail: {}", run.stderr);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    for name in [
        r#""""#,
        r#"".""#,
        r#""..""#,
        r#""../../../../slash.txt""#,
        r#""a""#,
        r#""dup""#,
        r#""nul\x00.txt""#,
        r#""s/pwned.txt""#,
    ] {
        assert!(
            run.stderr.lines().any(|l| l.starts_with("coffer: refused: ") && l.contains(name)),
            "entry {name} is not named as refused: {}",
            run.stderr
        );
    }

    // Nothing outside the target.
    assert_eq!(names(&w), set(&["a", "outside"]));
    assert_eq!(names(&w.join("a")), set(&["b"]));
    assert_eq!(names(&w.join("a/b")), set(&["c"]));
    assert_eq!(names(&w.join("a/b/c")), set(&["t"]));
    assert_eq!(names(&outside), set(&["sentinel"]));
    assert_eq!(std::fs::read(outside.join("sentinel")).unwrap(), b"untouched");

    // Everything else, exactly.
    assert_eq!(names(&target), set(&["hl", "ok", "s"]));
    assert_eq!(std::fs::read(target.join("hl")).unwrap(), b"pwned by ..\n");
    assert_eq!(std::fs::read_link(target.join("s")).unwrap(), outside);
    let ok = target.join("ok");
    assert_eq!(names(&ok), set(&["f1", "h1", "h2", "link", "sub"]));
    assert_eq!(std::fs::read(ok.join("f1")).unwrap(), b"first file\n");
    assert_eq!(std::fs::read(ok.join("sub/f2")).unwrap(), vec![7u8; 100_000]);
    assert_eq!(std::fs::read_link(ok.join("link")).unwrap(), Path::new("f1"));
    let (h1, h2) = (std::fs::metadata(ok.join("h1")).unwrap(), std::fs::metadata(ok.join("h2")).unwrap());
    assert_eq!((h1.ino(), h1.nlink()), (h2.ino(), 2), "h1 and h2 are one file");
    assert_eq!(std::fs::read(ok.join("h2")).unwrap(), b"linked\n");
    assert_eq!(h1.permissions().mode() & 0o7777, 0o640);
    assert_eq!(std::fs::metadata(ok.join("sub")).unwrap().permissions().mode() & 0o7777, 0o755);
    assert_eq!(std::fs::metadata(&ok).unwrap().mtime(), 1_700_000_000);

    // `ls` shows the hostile names quoted, never as a path that climbs out.
    let ls = repo.c(["ls", "latest"]).ok().stdout_text();
    assert!(!ls.lines().any(|l| l.ends_with(" /../../../pwned.txt")), "{ls}");
    assert!(ls.lines().any(|l| l.contains(r#" /".."/".."/".."/pwned.txt"#)), "{ls}");
    assert!(ls.lines().any(|l| l.contains(r#" /"../../../../slash.txt""#) && l.contains("hostile")), "{ls}");
}

/// One hostile case alone, so each shows its own failure on a restore without the checks: a
/// snapshot of `build`'s entries and a file `keep`, restored to `W/a/b/c/t`. The restore must
/// fail with code 6 naming each of `refused` (quoted) on a `coffer: refused:` line, leave
/// everything outside the target as it was, and restore `keep` and the entries `restored`.
fn case(build: impl FnOnce(&mut BlobWriter<'_>, &[u8]) -> Vec<Node>, refused: &[&str], restored: &[&str]) {
    let repo = Repo::init();
    let w = repo.sb.path("W");
    let target = w.join("a/b/c/t");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let outside = w.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"untouched").unwrap();
    forge(&repo, |bw| {
        let mut nodes = build(bw, outside.to_str().unwrap().as_bytes());
        nodes.push(file(bw, b"keep", b"kept\n"));
        nodes
    });
    let run = repo.c(["restore", "latest", "--target"]).arg(&target).run();
    assert_eq!(names(&w), set(&["a", "outside"]), "written outside the target; stderr: {}", run.stderr);
    assert_eq!(names(&w.join("a")), set(&["b"]), "written outside the target; stderr: {}", run.stderr);
    assert_eq!(names(&w.join("a/b")), set(&["c"]));
    assert_eq!(names(&w.join("a/b/c")), set(&["t"]));
    assert_eq!(names(&outside), set(&["sentinel"]), "written through a symlink; stderr: {}", run.stderr);
    assert_eq!(std::fs::read(outside.join("sentinel")).unwrap(), b"untouched");
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    for name in refused {
        assert!(
            run.stderr.lines().any(|l| l.starts_with("coffer: refused: ") && l.contains(name)),
            "entry {name} is not named as refused: {}",
            run.stderr
        );
    }
    let mut want = set(restored);
    want.insert("keep".into());
    assert_eq!(names(&target), want);
    assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"kept\n");
}

#[test]
fn a_chain_of_dot_dot_directories_is_refused() {
    case(
        |bw, _| {
            let pwned = file(bw, b"pwned.txt", b"pwned\n");
            let up3 = dir(b"..", vec![pwned], bw);
            let up2 = dir(b"..", vec![up3], bw);
            vec![dir(b"..", vec![up2], bw)]
        },
        &[r#""..""#],
        &[],
    );
}

#[test]
fn a_dot_directory_is_refused() {
    case(|bw, _| vec![dir(b".", vec![file(bw, b"dot.txt", b"via .\n")], bw)], &[r#"".""#], &[]);
}

#[test]
fn an_empty_name_is_refused() {
    case(|bw, _| vec![file(bw, b"", b"empty\n")], &[r#""""#], &[]);
}

#[test]
fn a_name_with_a_slash_is_refused() {
    case(|bw, _| vec![file(bw, b"../../../../slash.txt", b"slash\n")], &[r#""../../../../slash.txt""#], &[]);
}

#[test]
fn a_name_with_nul_is_refused() {
    case(|bw, _| vec![file(bw, b"nul\0.txt", b"nul\n")], &[r#""nul\x00.txt""#], &[]);
}

#[test]
fn repeated_names_are_all_refused() {
    case(|bw, _| vec![file(bw, b"dup", b"one\n"), file(bw, b"dup", b"two\n")], &[r#""dup""#], &[]);
}

#[test]
fn a_symlink_then_a_directory_of_its_name_is_refused() {
    case(|bw, out| vec![symlink(b"a", out), dir(b"a", vec![file(bw, b"pwned.txt", b"pwned\n")], bw)], &[r#""a""#], &[]);
}

#[test]
fn a_file_beneath_a_symlink_is_refused_and_the_symlink_restored() {
    case(|bw, out| vec![symlink(b"s", out), file(bw, b"s/pwned.txt", b"pwned\n")], &[r#""s/pwned.txt""#], &["s"]);
}

#[test]
fn a_hard_link_whose_first_name_leaves_the_tree_is_restored_on_its_own() {
    case(
        |bw, _| {
            let pwned = hard_linked(file(bw, b"pwned.txt", b"linked\n"), 77);
            let up3 = dir(b"..", vec![pwned], bw);
            let up2 = dir(b"..", vec![up3], bw);
            vec![dir(b"..", vec![up2], bw), hard_linked(file(bw, b"hl", b"linked\n"), 77)]
        },
        &[r#""..""#],
        &["hl"],
    );
}
