//! Bad input to the repository commands: each gets one line on stderr naming what and
//! where, a non-zero exit code, and loses nothing already acknowledged.

use crate::repo_util::{PASSWORD, Repo, chmod, flip_byte, manifest, random_bytes, require_root, restored};
use crate::{Sandbox, exists};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A small tree to back up.
fn small_tree(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("d")).unwrap();
    fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    fs::write(root.join("d/b.bin"), random_bytes(200_000, seed)).unwrap();
}

/// The keys of every version in the vault, sorted, and how many data files there are.
fn vault_state(repo: &Repo) -> (Vec<String>, usize) {
    let mut keys: Vec<String> = repo
        .versions()
        .iter()
        .map(|v| format!("{} {}", v["key"].as_str().unwrap(), v["version"].as_str().unwrap()))
        .collect();
    keys.sort();
    let mut files = 0;
    for d in fs::read_dir(repo.vault().join("data")).unwrap() {
        files += fs::read_dir(d.unwrap().path()).unwrap().count();
    }
    (keys, files)
}

#[test]
fn a_wrong_password_is_refused_by_every_command() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    small_tree(&src, 1);
    repo.backup(&[&src], &[]);
    let before = vault_state(&repo);
    let vault = repo.vault().display().to_string();
    let t = repo.sb.path("t");
    for args in [
        vec!["snapshots"],
        vec!["backup", src.to_str().unwrap()],
        vec!["restore", "latest", "--target", t.to_str().unwrap()],
        vec!["verify"],
        vec!["ls", "latest"],
        vec!["stats"],
    ] {
        let err = repo.c(&args).env("COFFER_PASSWORD", "not the password").fails(1);
        assert_eq!(err, format!("coffer: error: wrong password: no key in {vault} opens with it"), "{args:?}");
    }
    assert!(!exists(&t), "a refused restore creates nothing");
    assert_eq!(vault_state(&repo), before, "a refused backup stores nothing");

    // The password file: missing, empty, wrong; the secret never appears.
    let missing = repo.sb.path("no-such-password-file");
    let err = repo.c(["snapshots", "--password-file"]).arg(&missing).env("COFFER_PASSWORD", "").fails(1);
    assert!(err.contains(&format!("cannot read password file {}", missing.display())), "{err}");
    let empty = repo.sb.file("empty-pw", b"");
    let err = repo.c(["snapshots", "--password-file"]).arg(&empty).env("COFFER_PASSWORD", "").fails(1);
    assert!(err.contains("is empty"), "{err}");
    let wrong = repo.sb.file("wrong-pw", b"hunter2-wrong\n");
    let err = repo.c(["snapshots", "--password-file"]).arg(&wrong).env("COFFER_PASSWORD", "").fails(1);
    assert!(err.contains("wrong password") && !err.contains("hunter2"), "{err}");
    let right = repo.sb.file("right-pw", format!("{PASSWORD}\nignored second line\n").as_bytes());
    repo.c(["snapshots", "--password-file"]).arg(&right).env("COFFER_PASSWORD", "").ok();
}

#[test]
fn a_missing_repository_is_named_with_the_command_that_creates_it() {
    let sb = Sandbox::new();
    let src = sb.path("src");
    small_tree(&src, 2);
    let nowhere = sb.path("no-such-repo");
    let n = nowhere.display().to_string();
    let t = sb.path("t");
    let c = |args: &[&str]| sb.coffer(["--repo"]).arg(&nowhere).env("COFFER_PASSWORD", PASSWORD).args(args);
    for args in [
        vec!["snapshots"],
        vec!["backup", src.to_str().unwrap()],
        vec!["restore", "latest", "--target", t.to_str().unwrap()],
        vec!["verify"],
        vec!["prune"],
        vec!["stats"],
    ] {
        let err = c(&args).fails(1);
        assert_eq!(
            err,
            format!("coffer: error: no coffer repository at {n} (run `coffer init --repo {n}` first)"),
            "{args:?}"
        );
    }
    assert!(!exists(&nowhere), "nothing creates a repository implicitly where one was named");
    assert!(!exists(&t));

    // A vault without a repository: the same advice, naming the same place.
    sb.coffer(["vault", "init"]).arg(&nowhere).ok();
    let err = c(&["snapshots"]).fails(1);
    assert_eq!(err, format!("coffer: error: no coffer repository at {n} (run `coffer init --repo {n}` first)"));
    let err = c(&["backup", src.to_str().unwrap()]).fails(1);
    assert!(err.contains(&format!("run `coffer init --repo {n}` first")), "{err}");
}

#[test]
fn init_creates_the_vault_and_refuses_an_existing_repository() {
    let sb = Sandbox::new();
    let dir = sb.path("new/nested/vault");
    let run = sb.coffer(["init", "--json", "--repo"]).arg(&dir).env("COFFER_PASSWORD", PASSWORD).ok();
    let doc = run.json();
    assert_eq!(doc["id"].as_str().map(str::len), Some(64), "{doc}");
    assert!(run.stderr.contains(&format!("created vault {}", dir.display())), "{}", run.stderr);
    assert!(exists(&dir.join("coffer-vault.toml")));
    let err = sb.coffer(["init", "--repo"]).arg(&dir).env("COFFER_PASSWORD", PASSWORD).fails(1);
    assert_eq!(err, format!("coffer: error: a coffer repository already exists at {}", dir.display()));
    // The repository is untouched and opens with its password.
    let repo_id = doc["id"].as_str().unwrap();
    sb.coffer(["snapshots", "--repo"]).arg(&dir).env("COFFER_PASSWORD", PASSWORD).ok();
    let err = sb.coffer(["init", "--repo"]).arg(&dir).env("COFFER_PASSWORD", "another").fails(1);
    assert!(err.contains("already exists"), "{err}");
    let text = sb.coffer(["--vault"]).arg(&dir).args(["vault", "versions", "keys/"]).ok().stdout_text();
    assert_eq!(text.lines().filter(|l| l.contains("keys/")).count(), 1, "no second key was added: {text}");
    assert!(!repo_id.is_empty());

    // An existing vault without a repository is reused.
    let vault = sb.path("vault2");
    sb.coffer(["vault", "init"]).arg(&vault).ok();
    let creds = fs::read(vault.join("credentials/writer.toml")).unwrap();
    let run = sb.coffer(["init", "--repo"]).arg(&vault).env("COFFER_PASSWORD", PASSWORD).ok();
    assert!(!run.stderr.contains("created vault"), "{}", run.stderr);
    assert_eq!(fs::read(vault.join("credentials/writer.toml")).unwrap(), creds, "the vault was not re-created");

    // A retention policy whose floor exceeds its ceiling is refused, and nothing is written.
    let v3 = sb.path("v3");
    let err = sb
        .coffer(["init", "--repo"])
        .arg(&v3)
        .args(["--default-retain", "100d", "--max-retain", "50d"])
        .env("COFFER_PASSWORD", PASSWORD)
        .fails(1);
    assert!(err.contains("default retention (100d) exceeds the maximum retention (50d)"), "{err}");
}

#[test]
fn a_path_that_does_not_exist_stores_nothing() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    small_tree(&src, 3);
    let before = vault_state(&repo);
    let missing = repo.sb.path("gone");
    let err = repo.c(["backup"]).arg(&src).arg(&missing).fails(1);
    assert_eq!(
        err,
        format!("coffer: error: cannot back up {}: No such file or directory (os error 2)", missing.display())
    );
    assert_eq!(vault_state(&repo), before, "nothing was stored for a refused backup");
    assert!(repo.snapshots_at(0).is_empty());
}

#[test]
fn retention_beyond_the_ceiling_is_refused_before_anything_is_written() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    small_tree(&src, 4);
    let before = vault_state(&repo);
    let err = repo.c(["backup", "--retain", "200d"]).arg(&src).fails(1);
    assert!(
        err.contains("retention rules keep this snapshot 200d, longer than the repository's maximum retention of"),
        "{err}"
    );
    let err = repo.c(["backup", "--keep-monthly", "12"]).arg(&src).fails(1);
    assert!(err.contains("longer than the repository's maximum retention"), "{err}");
    let err = repo.c(["backup", "--retain", "soon"]).arg(&src).fails(2);
    assert!(err.contains("--retain"), "{err}");
    assert_eq!(vault_state(&repo), before);
    // Within the ceiling it works.
    repo.backup(&[&src], &["--retain", "80d"]);
}

#[test]
fn a_repository_of_a_newer_format_is_refused_clearly() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    small_tree(&src, 5);
    repo.backup(&[&src], &[]);
    let before = vault_state(&repo);

    // The version byte of the stored config (checksum kept consistent, as a newer coffer
    // would have written it).
    let mut config = fs::read(repo.data_file("config")).unwrap();
    assert_eq!(&config[..4], b"CFR\x01", "envelope magic and version");
    config[3] = 2;
    repo.replace_data_file("config", &config);
    let location = repo.vault().display().to_string();
    let t = repo.sb.path("t");
    for args in [
        vec!["snapshots"],
        vec!["backup", src.to_str().unwrap()],
        vec!["restore", "latest", "--target", t.to_str().unwrap()],
    ] {
        let err = repo.c(&args).fails(1);
        assert_eq!(
            err,
            format!(
                "coffer: error: {location}/config has repository format version 2; this coffer reads up to version 1"
            ),
            "{args:?}"
        );
    }
    // Not mistaken for a wrong password, and nothing was written.
    let err = repo.c(["snapshots"]).env("COFFER_PASSWORD", "wrong").fails(1);
    assert!(err.contains("format version 2"), "{err}");
    assert_eq!(vault_state(&repo), before);

    // Put back, everything is as before.
    config[3] = 1;
    repo.replace_data_file("config", &config);
    assert_eq!(repo.snapshots_at(0).len(), 1);
    repo.verify_at(0, true);
}

#[test]
fn a_corrupted_snapshot_object_is_named_and_the_others_still_restore() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    small_tree(&src, 6);
    let first = repo.backup(&[&src], &[]);
    fs::write(src.join("later.txt"), b"later").unwrap();
    let want = manifest(&src);
    let second = repo.backup(&[&src], &[]);
    let (s1, s2) = (first["snapshot"].as_str().unwrap(), second["snapshot"].as_str().unwrap());
    let key = format!("snapshots/{s1}");
    flip_byte(&repo.data_file(&key), 40);

    let err = repo.c(["verify"]).fails(6);
    assert!(err.contains(&key), "{err}");
    let doc = repo.c(["verify", "--json"]).run();
    assert_eq!(doc.code, Some(6));
    let problems: Value = serde_json::from_slice(&doc.stdout).unwrap();
    assert!(problems["problems"].as_array().unwrap().iter().any(|p| p["object"] == key.as_str()), "{problems}");

    // Listing shows the intact snapshot and fails naming the damaged one.
    let run = repo.c(["snapshots", "--json"]).run();
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("coffer: error: ") && run.stderr.contains(&key), "{}", run.stderr);
    let listed: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], s2);
    // The other snapshot restores, also as `latest`.
    let t = repo.sb.path("t");
    repo.restore_at(0, s2, &t);
    crate::repo_util::assert_same_tree(&want, &manifest(&restored(&t, &src)), "the intact snapshot");
    // Naming the damaged one is an integrity error naming it.
    let err = repo.c(["restore", &s1[..8], "--target"]).arg(repo.sb.path("t2")).fails(6);
    assert!(err.contains(&key), "{err}");
    // New backups still work, and chain to the intact snapshot.
    let want = manifest(&src);
    let third = repo.backup(&[&src], &[]);
    assert_eq!(third["summary"]["files_read"], 0, "the intact snapshot is the parent: {third}");
    let t3 = repo.sb.path("t3");
    repo.restore_at(0, "latest", &t3);
    crate::repo_util::assert_same_tree(&want, &manifest(&restored(&t3, &src)), "a backup made after the damage");
}

/// The `setpriv` program, if installed.
fn setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

#[test]
fn an_unreadable_file_is_a_warning_and_the_backup_says_it_is_incomplete_as_root() {
    require_root("to run the backup as another user");
    let setpriv = setpriv().expect("setpriv is not installed: `apt-get install util-linux` installs it");
    let repo = Repo::init();
    let src = repo.sb.path("src");
    small_tree(&src, 7);
    fs::write(src.join("secret"), b"root only").unwrap();
    chmod(&src.join("secret"), 0o000);
    fs::create_dir(src.join("private")).unwrap();
    fs::write(src.join("private/inner"), b"x").unwrap();
    chmod(&src.join("private"), 0o700);
    // The unprivileged user can reach the sandbox and use the vault.
    chmod(repo.sb.path("").as_path(), 0o755);
    chown_tree(&repo.vault(), 65534, 65534);

    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_coffer"))
        .args(["backup", "--json", "--repo"])
        .arg(repo.vault())
        .arg(&src)
        .env_clear()
        .env("HOME", repo.sb.home())
        .env("COFFER_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "exit 7 (incomplete): {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let secret = src.join("secret");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("coffer: warning: ")
                && l.contains(&format!("{}: Permission denied", secret.display()))),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.contains(&format!("{}: Permission denied", src.join("private").display()))),
        "{stderr}"
    );
    let last = lines.last().unwrap();
    assert!(last.starts_with("coffer: error: backup incomplete: 2 entries could not be read (snapshot "), "{stderr}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("coffer: error:")).count(), 1, "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["summary"]["errors"], 2, "{doc}");

    // The snapshot holds everything readable; the unreadable file is simply not in it.
    let t = repo.sb.path("t");
    repo.restore_at(0, "latest", &t);
    let r = restored(&t, &src);
    assert_eq!(fs::read(r.join("a.txt")).unwrap(), b"alpha\n");
    assert!(fs::read(r.join("d/b.bin")).unwrap() == random_bytes(200_000, 7));
    assert!(!exists(&r.join("secret")));
    assert!(r.join("private").is_dir() && !exists(&r.join("private/inner")));
    repo.verify_at(0, false);
}

fn chown_tree(root: &Path, uid: u32, gid: u32) {
    crate::repo_util::lchown(root, uid, gid);
    if fs::symlink_metadata(root).unwrap().is_dir() {
        for e in fs::read_dir(root).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

/// A restore whose data the disk does not keep fails, naming the target: nothing it reports
/// as restored is lost after it exits. The target is an ext4 that believes it has 256 MiB,
/// on a loop device whose backing file lies on a 16 MiB tmpfs, so a 48 MiB restore fits in
/// the page cache but its write-back fails with an I/O error — which only the restore's own
/// `syncfs` can see (before the restore synced, it exited 0 and the file was lost later).
#[test]
fn a_restore_the_disk_does_not_keep_fails_naming_the_target_as_root() {
    require_root("to mount a file system");
    let repo = Repo::init();
    let src = repo.sb.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big.bin"), random_bytes(48 << 20, 9)).unwrap();
    repo.backup(&[&src], &[]);
    let disk = LossyDisk::mount(&repo.sb.path("disk"));
    let target = disk.mnt.join("restore");
    let err = repo.c(["restore", "latest", "--target"]).arg(&target).fails(1);
    assert!(err.contains(&format!("cannot write the restored files to disk under {}: ", target.display())), "{err}");
}

/// An ext4 file system of 256 MiB whose device keeps only its first 16 MiB (a loop device
/// over a file on a tmpfs that size): writes past that fail when they are written back.
/// Unmounted when dropped.
struct LossyDisk {
    tmpfs: PathBuf,
    mnt: PathBuf,
}

impl LossyDisk {
    /// # Panics
    /// When a step fails (the message names it): root that cannot mount a tmpfs or a loop
    /// device here, or no `mkfs.ext4` (`apt-get install e2fsprogs` installs it).
    #[track_caller]
    fn mount(dir: &Path) -> Self {
        let disk = Self { tmpfs: dir.join("tmpfs"), mnt: dir.join("mnt") };
        fs::create_dir_all(&disk.tmpfs).unwrap();
        fs::create_dir_all(&disk.mnt).unwrap();
        let image = disk.tmpfs.join("image");
        must(Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(&disk.tmpfs), "mount a tmpfs");
        fs::File::create(&image).and_then(|f| f.set_len(256 << 20)).expect("create the disk image");
        let mkfs = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].into_iter().find(|p| Path::new(p).exists());
        let mkfs = mkfs.expect("mkfs.ext4 is not installed: `apt-get install e2fsprogs` installs it");
        // No journal and inode tables zeroed by mkfs: nothing but the restore writes to it.
        must(
            Command::new(mkfs)
                .args(["-q", "-F", "-O", "^has_journal", "-N", "256", "-E", "lazy_itable_init=0,nodiscard"])
                .arg(&image),
            "make an ext4 file system",
        );
        must(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&disk.mnt), "mount it on a loop device");
        disk
    }
}

impl Drop for LossyDisk {
    fn drop(&mut self) {
        for dir in [&self.mnt, &self.tmpfs] {
            succeeds(Command::new("umount").arg(dir));
        }
    }
}

/// Runs `cmd`, which must succeed (`what` it does names it in the failure).
#[track_caller]
fn must(cmd: &mut Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot {what}: {cmd:?}: {e}"));
    assert!(out.status.success(), "cannot {what}: {cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `cmd` quietly; whether it ran and exited 0.
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[test]
fn an_explicit_role_a_command_cannot_run_as_is_a_usage_error_before_any_request() {
    let repo = Repo::init();
    let src = repo.sb.path("src");
    small_tree(&src, 3);
    repo.backup(&[&src], &[]);
    let before = vault_state(&repo);

    // prune is the pruner's: the writer (or anyone else) named explicitly is refused, naming
    // the role, the command and the role it needs; nothing is asked of the store.
    for (role, via_env) in [("writer", false), ("reader", false), ("admin", true)] {
        let cmd = if via_env { repo.c(["prune"]).env("COFFER_ROLE", role) } else { repo.c(["--role", role, "prune"]) };
        let err = cmd.fails(2);
        assert!(
            err.contains(&format!("role {role} cannot run `coffer prune`"))
                && err.contains("delete-version")
                && err.contains("roles that may: pruner"),
            "{err}"
        );
    }
    // A credentials file of another role, without --role, is refused the same way.
    let writer = repo.vault().join("credentials/writer.toml");
    let err = repo.c(["prune", "--dry-run", "--credentials"]).arg(&writer).fails(2);
    assert!(err.contains("role writer cannot run `coffer prune`"), "{err}");

    // Writes need the writer; reads need a role that may read data (writer or reader).
    let err = repo.c(["--role", "reader", "backup"]).arg(&src).fails(2);
    assert!(err.contains("role reader cannot run `coffer backup`") && err.contains("roles that may: writer"), "{err}");
    let err = repo.c(["--role", "auditor", "snapshots"]).fails(2);
    assert!(err.contains("role auditor cannot run `coffer snapshots`"), "{err}");
    assert!(err.contains("roles that may: writer, reader"), "{err}");
    let err = repo.c(["--role", "pruner", "key", "list"]).fails(2);
    assert!(err.contains("role pruner cannot run `coffer key list`"), "{err}");
    assert_eq!(vault_state(&repo), before, "refusals change nothing");

    // The roles that can still do it.
    repo.c(["--role", "pruner", "prune", "--dry-run"]).ok();
    repo.c(["--role", "writer", "snapshots"]).ok();
    repo.c(["--role", "reader", "snapshots"]).ok();
}
