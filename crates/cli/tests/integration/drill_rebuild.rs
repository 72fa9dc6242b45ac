//! `coffer drill rebuild` (issue 15): the full rebuild from nothing but the repository's
//! location, the reader's credentials and the password. Sources are backed up by
//! `coffer run` from a coffer.toml, the policy stored with `coffer config store`; then the
//! host's coffer.toml, state directory and password file are deleted and the rebuild runs in
//! a fresh directory with a fresh, empty HOME and no other variable than those three.

use crate::repo_util::{PASSWORD, Repo, flip_byte, largest_file, random_bytes};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// Two files sources (`alpha`: small files; `beta`: one large incompressible file, so its
/// pack is the vault's largest file), backed up by `coffer run`, the policy stored. Returns
/// the policy file.
fn two_sources(repo: &Repo) -> PathBuf {
    let a = repo.sb.path("alpha");
    fs::create_dir_all(a.join("sub")).unwrap();
    fs::write(a.join("a1.txt"), b"alpha one\n").unwrap();
    fs::write(a.join("sub/a2.txt"), b"alpha two\n").unwrap();
    let b = repo.sb.path("beta");
    fs::create_dir_all(&b).unwrap();
    fs::write(b.join("big.bin"), random_bytes(3 << 20, 15)).unwrap();
    let pw = repo.sb.file("password", PASSWORD.as_bytes());
    let text = format!(
        "[daemon]\nstate-dir = {state:?}\ntimezone = \"UTC\"\n\n\
         [repositories.main]\nlocation = {vault:?}\npassword = {{ file = {pw:?} }}\n\n\
         [repositories.main.rebuild]\nschedule = \"monthly\"\nrto-target = \"1h\"\n\n\
         [repositories.main.security]\nwatch = false\n\n[repositories.main.security.canary]\nenabled = false\n\n\
         [files.alpha]\nrepository = \"main\"\npaths = [{a:?}]\nschedule = \"daily\"\n\n\
         [files.beta]\nrepository = \"main\"\npaths = [{b:?}]\nschedule = \"daily\"\n",
        state = repo.sb.path("state").display().to_string(),
        vault = repo.vault().display().to_string(),
        pw = pw.display().to_string(),
        a = a.display().to_string(),
        b = b.display().to_string(),
    );
    let config = repo.sb.file("coffer.toml", text.as_bytes());
    for job in ["alpha/backup", "beta/backup"] {
        repo.sb.coffer(["--config"]).arg(&config).args(["run", job]).ok();
    }
    let doc = repo.sb.coffer(["--config"]).arg(&config).args(["config", "store", "--json"]).ok().json();
    assert_eq!(doc.as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc[0]["repository"], "main");
    assert_eq!(doc[0]["hash"].as_str().unwrap().len(), 64, "{doc}");
    config
}

/// Removes everything of the host but the vault (and the sources, to compare with).
fn forget_the_host(repo: &Repo, config: &Path) {
    fs::remove_file(config).unwrap();
    fs::remove_file(repo.sb.path("password")).unwrap();
    fs::remove_dir_all(repo.sb.path("state")).unwrap();
}

/// `coffer drill rebuild ARGS…` in `fresh` (cwd) with `fresh/home` as an empty HOME, and
/// only the repository's location, the reader's credentials and the password.
fn rebuild(repo: &Repo, fresh: &Path) -> crate::Cmd {
    let home = fresh.join("home");
    fs::create_dir_all(&home).unwrap();
    repo.sb
        .coffer(["drill", "rebuild"])
        .env("HOME", &home)
        .current_dir(fresh)
        .env("COFFER_REPO", repo.vault())
        .env("COFFER_CREDENTIALS", repo.vault().join("credentials/reader.toml"))
        .env("COFFER_PASSWORD", PASSWORD)
}

fn checks<'a>(report: &'a Value, source: &str) -> Vec<&'a Value> {
    report["checks"].as_array().unwrap().iter().filter(|c| c["source"] == source).collect()
}

/// Finds a file named `name` under `dir`.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.is_dir() {
            if let Some(f) = find(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

#[test]
fn drill_rebuild_from_the_repository_alone_passes_then_a_damaged_pack_fails() {
    let repo = Repo::init();
    let config = two_sources(&repo);
    forget_the_host(&repo, &config);
    let fresh = tempfile::tempdir().unwrap();
    let scratch = fresh.path().join("scratch");

    let run = rebuild(&repo, fresh.path()).arg("--json").arg("--keep").arg("--scratch").arg(&scratch).run();
    let report: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stderr));
    assert_eq!(run.code, Some(0), "{}\n{report:#}", run.stderr);
    assert_eq!(report["kind"], "rebuild");
    assert_eq!(report["repository"], "main", "the name in the stored policy");
    assert_eq!(report["passed"], true);
    let restored = report["restored"].as_array().unwrap();
    let mut sources: Vec<&str> = restored.iter().map(|r| r["source"].as_str().unwrap()).collect();
    sources.sort_unstable();
    assert_eq!(sources, ["alpha", "beta"]);
    let total = report["rto_seconds"].as_f64().unwrap();
    assert!(total > 0.0);
    for r in restored {
        assert_eq!(r["kind"], "files");
        let back = r["rto_seconds"].as_f64().unwrap();
        assert!(back > 0.0 && back <= total, "{back} within {total}");
    }
    assert_eq!(report["rto_target_seconds"].as_f64(), Some(3600.0), "the stored policy's target");
    assert!(report["checks"].as_array().unwrap().iter().all(|c| c["outcome"] == "passed"), "{report:#}");
    for s in ["alpha", "beta"] {
        let c = checks(&report, s);
        assert!(c.iter().any(|c| c["name"] == "content"), "{s}: {c:?}");
    }
    assert!(report["checks"].as_array().unwrap().iter().any(|c| c["name"] == "rto" && c["outcome"] == "passed"));
    // What came back is what was backed up.
    let a1 = find(&scratch.join("files/alpha"), "a1.txt").expect("alpha restored");
    assert_eq!(fs::read(a1).unwrap(), b"alpha one\n");
    let big = find(&scratch.join("files/beta"), "big.bin").expect("beta restored");
    assert_eq!(fs::read(big).unwrap(), random_bytes(3 << 20, 15));
    // Nothing was read from, or written to, the fresh HOME.
    assert_eq!(fs::read_dir(fresh.path().join("home")).unwrap().count(), 0, "HOME stays empty");

    // Human output: a line per source, the summary with the total RTO.
    let out = rebuild(&repo, fresh.path()).arg("--scratch").arg(fresh.path().join("s2")).ok().stdout_text();
    assert!(out.lines().any(|l| l.starts_with("alpha: restored snapshot ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("beta: restored snapshot ")), "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("rebuild of repository main passed: 2 sources back"), "{last}");
    assert!(last.contains("everything back in ") && last.ends_with("(target 3600s)"), "{last}");
    assert!(!fresh.path().join("s2").exists(), "scratch removed");

    // beta's pack damaged: the rebuild runs on (alpha still comes back), fails naming beta.
    let pack = largest_file(&repo.vault().join("data"));
    flip_byte(&pack, (fs::metadata(&pack).unwrap().len() / 2) as usize);
    let s3 = fresh.path().join("s3");
    let file = fresh.path().join("report.json");
    let run = rebuild(&repo, fresh.path()).arg("--scratch").arg(&s3).arg("--report").arg(&file).run();
    assert_eq!(run.code, Some(10), "{}", run.stderr);
    // The per-source drills may log their progress (info events) before the one error line.
    let err = run.stderr.lines().last().unwrap();
    assert!(err.starts_with("coffer: error: rebuild of repository main did not pass: beta: "), "{err}");
    let report: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert!(checks(&report, "alpha").iter().all(|c| c["outcome"] == "passed"), "{report:#}");
    assert!(checks(&report, "beta").iter().any(|c| c["outcome"] == "failed"), "{report:#}");
    assert!(!s3.exists(), "scratch removed after a failed rebuild too");
}

#[test]
fn drill_rebuild_without_a_stored_policy_is_a_one_line_error() {
    let repo = Repo::init();
    let fresh = tempfile::tempdir().unwrap();
    let err = rebuild(&repo, fresh.path()).arg("--scratch").arg(fresh.path().join("s")).fails(1);
    assert!(err.contains("no policy is stored in the ledger of"), "{err}");
    assert!(err.contains("coffer config store"), "{err}");
    assert!(!fresh.path().join("s").exists());
    // Without a location: a usage error, not the default vault under HOME.
    let err = repo.sb.coffer(["drill", "rebuild"]).env("COFFER_PASSWORD", PASSWORD).fails(2);
    assert!(err.contains("needs --repo LOCATION"), "{err}");
    // A scratch root that is not empty is refused before anything is restored.
    let busy = fresh.path().join("busy");
    fs::create_dir_all(&busy).unwrap();
    fs::write(busy.join("x"), b"mine").unwrap();
    let err = rebuild(&repo, fresh.path()).arg("--scratch").arg(&busy).fails(1);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(fs::read(busy.join("x")).unwrap(), b"mine");
}

/// A stored policy that declares no source for the repository: the rebuild ran and proved
/// nothing (exit 10), which is not a pass.
#[test]
fn drill_rebuild_a_policy_with_no_source_proves_nothing() {
    let repo = Repo::init();
    let pw = repo.sb.file("password", PASSWORD.as_bytes());
    let text = format!(
        "[daemon]\nstate-dir = {:?}\n\n[repositories.main]\nlocation = {:?}\npassword = {{ file = {:?} }}\n\n\
         [repositories.main.verify]\nschedule = \"daily\"\n",
        repo.sb.path("state").display().to_string(),
        repo.vault().display().to_string(),
        pw.display().to_string(),
    );
    let config = repo.sb.file("coffer.toml", text.as_bytes());
    let out = repo.sb.coffer(["--config"]).arg(&config).args(["config", "store"]).ok().stdout_text();
    assert!(out.starts_with("policy stored in the ledger of repository main: hash "), "{out}");
    forget_the_host(&repo, &config);
    let fresh = tempfile::tempdir().unwrap();
    let run = rebuild(&repo, fresh.path()).arg("--json").arg("--scratch").arg(fresh.path().join("s")).run();
    assert_eq!(run.code, Some(10), "{}", run.stderr);
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["passed"], false);
    assert!(report["error"].as_str().unwrap().contains("declares no source for repository main"), "{report:#}");
    assert!(run.stderr.contains("proves nothing"), "{}", run.stderr);
}

/// A files source and a PostgreSQL source (with a SQL check) in one stored policy: the
/// rebuild as root, from the repository alone, brings both back and runs the SQL check on
/// the restored server (run as `postgres`).
#[test]
fn drill_rebuild_files_and_postgres_from_the_repository_alone_as_root() {
    use crate::pg_util::{PASSWORD as PG_PASSWORD, PgEnv as _, PgSandbox, require_postgres};
    use std::os::unix::fs::PermissionsExt as _;
    crate::repo_util::require_root("the PostgreSQL rebuild runs its throwaway server as postgres");
    require_postgres();
    let sb = PgSandbox::new();
    let pg = sb.cluster("main");
    pg.sql("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 500) g");
    pg.env(sb.c(["pg", "backup", "--cluster", "db"])).ok();
    pg.sql("insert into t select g, 'after' from generate_series(501, 520) g");
    pg.switch_and_archive();
    let docs = sb.path("docs");
    fs::create_dir_all(&docs).unwrap();
    fs::write(docs.join("d.txt"), b"documents\n").unwrap();
    let pw = sb.sb.file("password", PG_PASSWORD.as_bytes());
    let text = format!(
        "[daemon]\nstate-dir = {state:?}\n\n\
         [repositories.main]\nlocation = {vault:?}\npassword = {{ file = {pw:?} }}\n\n\
         [repositories.main.security]\nwatch = false\n\n[repositories.main.security.canary]\nenabled = false\n\n\
         [files.docs]\nrepository = \"main\"\npaths = [{docs:?}]\nschedule = \"daily\"\n\n\
         [postgres.db]\nrepository = \"main\"\nbase-backup = {{ schedule = \"daily\" }}\n\n\
         [postgres.db.drill]\nschedule = \"monthly\"\npoint = \"latest\"\n\n\
         [[postgres.db.drill.check]]\nname = \"rows\"\nquery = \"select count(*), max(id) from t\"\nexpect = \"520|520\"\n",
        state = sb.path("state").display().to_string(),
        vault = sb.sb.vault().display().to_string(),
        pw = pw.display().to_string(),
        docs = docs.display().to_string(),
    );
    let config = sb.sb.file("coffer.toml", text.as_bytes());
    sb.c(["--config"]).arg(&config).args(["run", "docs/backup"]).ok();
    sb.c(["--config"]).arg(&config).args(["config", "store"]).ok();
    fs::remove_file(&config).unwrap();
    fs::remove_file(&pw).unwrap();
    fs::remove_dir_all(sb.path("state")).unwrap();

    let fresh = tempfile::tempdir().unwrap();
    // The throwaway server (run as postgres) must reach its scratch directory.
    fs::set_permissions(fresh.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = fresh.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let run = sb
        .sb
        .coffer(["drill", "rebuild", "--json", "--scratch"])
        .arg(fresh.path().join("scratch"))
        .env("HOME", &home)
        .current_dir(fresh.path())
        .env("COFFER_REPO", sb.sb.vault())
        .env("COFFER_CREDENTIALS", sb.sb.vault().join("credentials/reader.toml"))
        .env("COFFER_PASSWORD", PG_PASSWORD)
        .run();
    let report: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stderr));
    assert_eq!(run.code, Some(0), "{}\n{report:#}", run.stderr);
    let mut kinds: Vec<(&str, &str)> = report["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["source"].as_str().unwrap(), r["kind"].as_str().unwrap()))
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, [("db", "postgres"), ("docs", "files")]);
    let sql = checks(&report, "db").into_iter().find(|c| c["name"] == "sql:rows").expect("the SQL check ran");
    assert_eq!(sql["outcome"], "passed", "{sql}");
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(fs::read_dir(&home).unwrap().count(), 0, "HOME stays empty");
    assert!(!fresh.path().join("scratch").exists());
}

/// The same on an S3 server (moto, with its IAM keys per role): the rebuild presents only
/// the reader's credentials file — no AWS variable, no `~/.aws`.
#[test]
fn drill_rebuild_on_moto_with_the_readers_credentials_only() {
    use crate::s3_repo::S3Repo;
    use coffer_store::Role;
    use coffer_testkit::s3::{S3Server, ServerKind, test_credentials};
    let server = S3Server::start(ServerKind::Moto);
    let bucket = server.new_bucket("coffer-rebuild");
    let r = S3Repo { sb: crate::Sandbox::new(), server: &server, url: server.url(&bucket, "host") };
    r.c(["init"]).ok();
    let creds = |role: Role| {
        let c = test_credentials(ServerKind::Moto, role);
        let text = format!("access-key = {:?}\nsecret-key = {:?}\n", c.access_key, c.secret_key.expose());
        r.sb.file(&format!("{role}.toml"), text.as_bytes())
    };
    let (writer, reader) = (creds(Role::Writer), creds(Role::Reader));
    let src = r.sb.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("s.bin"), random_bytes(200_000, 3)).unwrap();
    let pw = r.sb.file("password", PASSWORD.as_bytes());
    let text = format!(
        "[daemon]\nstate-dir = {state:?}\n\n\
         [repositories.main]\nlocation = {url:?}\npassword = {{ file = {pw:?} }}\n\n\
         [repositories.main.credentials]\nwriter = {writer:?}\nreader = {reader:?}\n\n\
         [repositories.main.security]\nwatch = false\n\n[repositories.main.security.canary]\nenabled = false\n\n\
         [files.src]\nrepository = \"main\"\npaths = [{src:?}]\nschedule = \"daily\"\n",
        state = r.sb.path("state").display().to_string(),
        url = r.url,
        pw = pw.display().to_string(),
        writer = writer.display().to_string(),
        reader = reader.display().to_string(),
        src = src.display().to_string(),
    );
    let config = r.sb.file("coffer.toml", text.as_bytes());
    r.sb.coffer(["--config"]).arg(&config).args(["run", "src/backup"]).ok();
    r.sb.coffer(["--config"]).arg(&config).args(["config", "store"]).ok();
    fs::remove_file(&config).unwrap();
    fs::remove_file(&pw).unwrap();
    fs::remove_dir_all(r.sb.path("state")).unwrap();

    let fresh = tempfile::tempdir().unwrap();
    let home = fresh.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let run =
        r.sb.coffer(["drill", "rebuild", "--json", "--scratch"])
            .arg(fresh.path().join("scratch"))
            .env("HOME", &home)
            .current_dir(fresh.path())
            .env("COFFER_REPO", &r.url)
            .env("COFFER_CREDENTIALS", &reader)
            .env("COFFER_PASSWORD", PASSWORD)
            .run();
    let report: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stderr));
    assert_eq!(run.code, Some(0), "{}\n{report:#}", run.stderr);
    assert_eq!(report["restored"].as_array().unwrap().len(), 1);
    assert_eq!(report["restored"][0]["source"], "src");
    assert!(checks(&report, "src").iter().any(|c| c["name"] == "content" && c["outcome"] == "passed"), "{report:#}");
    assert_eq!(fs::read_dir(&home).unwrap().count(), 0, "HOME stays empty");
}
