//! `coffer drill pg` against a real PostgreSQL 15: a drill at a random point passes every
//! built-in check and the policy's SQL check, as root with the server run as `postgres`,
//! leaving no scratch space and no server; an invalid index, a wrong SQL expectation, a
//! failing query and an RTO target of 1 ms fail it (exit 10) with the actual value quoted; a WAL segment missing
//! inside the window fails it naming the segment.

use crate::Cmd;
use crate::pg_util::{PASSWORD, PgEnv as _, PgSandbox, require_postgres};
use jiff::Timestamp;
use serde_json::Value;
use std::path::Path;

/// `coffer ARGS…` as root (the sandbox's `c` runs as `postgres`), with the repository and
/// password in the environment.
fn as_root(sb: &PgSandbox) -> Cmd {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.env_clear()
        .env("HOME", sb.sb.home())
        .env("COFFER_REPO", sb.sb.vault())
        .env("COFFER_PASSWORD", PASSWORD)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(sb.path(""));
    Cmd { cmd, stdin: None }
}

/// Processes whose command line mentions `path` (a server left running on it).
fn processes_on(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

fn time(v: &Value) -> Timestamp {
    v.as_str().unwrap_or_else(|| panic!("not a time: {v}")).parse().unwrap()
}

/// A cluster named `db`, a base backup, then rows committed over several WAL segments.
fn archived_cluster(sb: &PgSandbox) -> crate::pg_util::Cluster {
    let pg = sb.cluster("main");
    pg.sql("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 100) g");
    pg.env(sb.c(["pg", "backup", "--cluster", "db"])).ok();
    for i in 0..3 {
        pg.sql(&format!("insert into t select g, 'after' from generate_series({0}01, {0}50) g", i + 1));
        pg.switch_and_archive();
    }
    pg
}

#[test]
fn drill_pg_random_point_passes_and_failures_quote_what_was_found_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let pg = archived_cluster(&sb);
    let rows = pg.sql("select count(*) from t");
    let config = sb.sb.file(
        "coffer.toml",
        format!(
            r#"[repositories.main]
location = {:?}

[postgres.db]
repository = "main"

[postgres.db.base-backup]
schedule = "daily 03:00"

[postgres.db.drill]
schedule = "daily 04:00"
run-as = "postgres"

[[postgres.db.drill.check]]
name = "has-rows"
query = "select count(*) > 0, 'x' from t"
expect = "t|x"
"#,
            sb.sb.vault().display().to_string()
        )
        .as_bytes(),
    );

    // The policy's drill, run by hand as root: the server runs as postgres.
    let scratch = sb.path("scratch-1");
    let run = as_root(&sb)
        .arg("--config")
        .arg(&config)
        .args(["--json", "drill", "pg", "--source", "db", "--scratch"])
        .arg(&scratch)
        .ok();
    let report = run.json();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["kind"], "postgres");
    let names: Vec<&str> = report["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pg-wal", "pg-connect", "pg-target", "pg-amcheck", "pg-catalog", "sql:has-rows"], "{report}");
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["outcome"], "passed", "{c}");
        assert_eq!(c["source"], "db", "{c}");
    }
    assert!(check(&report, "sql:has-rows")["detail"].as_str().unwrap().contains("t|x"), "{report}");
    assert!(check(&report, "pg-connect")["detail"].as_str().unwrap().contains("PostgreSQL 15"), "{report}");
    assert!(report["versions"]["postgres"].as_str().unwrap().starts_with("PostgreSQL 15"), "{report}");
    // The target: a random time inside the recovery window `pg info` shows.
    let info = sb.c(["pg", "info", "--json"]).ok().json();
    let window = &info["clusters"][0]["recovery_window"];
    let restored = &report["restored"][0];
    let target = restored["target"].as_str().unwrap();
    let at: Timestamp = target.strip_prefix("time ").unwrap_or_else(|| panic!("{target}")).parse().unwrap();
    assert!(time(&window["from_time"]) <= at && at <= time(&window["to_time"]), "{target} outside {window}");
    assert_eq!(time(&restored["data_time"]), at);
    assert!(report["data_age_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0, "{report}");
    eprintln!("drill RTO {}s, data age {}s", report["rto_seconds"], report["data_age_seconds"]);
    assert!(!scratch.exists(), "scratch space removed");
    assert_eq!(processes_on(&scratch), Vec::<String>::new(), "no server left running");

    // An index left invalid by a failed CREATE INDEX CONCURRENTLY, archived.
    pg.sql("create table u (a int); insert into u values (1), (1)");
    assert!(pg.try_sql("create unique index concurrently u_a on u (a)").is_err());
    pg.switch_and_archive();

    // Ad hoc (the global repository flags), to the end of the archive, kept: the invalid
    // index, a wrong expectation, a failing query and a 1 ms RTO target fail it; the checks
    // quote what they found, and the kept data directory belongs to postgres.
    let scratch = sb.path("scratch-2");
    let run = as_root(&sb)
        .args(["drill", "pg", "--latest", "--keep", "--rto-target", "1ms", "--run-as", "postgres"])
        .args(["--check", "count=select count(*) from t=>999", "--check", "broken=select nosuch from t=>1"])
        .arg("--scratch")
        .arg(&scratch)
        .run();
    assert_eq!(run.code, Some(10), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("coffer: error: the PostgreSQL drill did not pass: "), "{}", run.stderr);
    let text = run.stdout_text();
    let line = |name: &str| {
        text.lines().find(|l| l.split_whitespace().nth(1) == Some(name)).unwrap_or_else(|| panic!("{name}: {text}"))
    };
    for name in ["pg-wal", "pg-connect", "pg-target", "pg-amcheck"] {
        assert!(line(name).starts_with("passed "), "{text}");
    }
    assert!(line("pg-catalog").starts_with("FAILED ") && line("pg-catalog").contains("index u_a is invalid"), "{text}");
    assert!(
        line("sql:count").starts_with("FAILED ") && line("sql:count").contains(&format!("got \"{rows}\"")),
        "{text}"
    );
    assert!(line("sql:broken").contains("column \"nosuch\" does not exist"), "{text}");
    // (No real restore is back within 1 ms; 1 s is not safely exceeded on a fast host.)
    assert!(line("rto").starts_with("FAILED ") && line("rto").contains("recovered in"), "{text}");
    assert!(text.contains("restored base backup") && text.contains("to latest"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("drill FAILED: RTO "), "{text}");
    // The last commit replayed is the table's last insert.
    assert!(line("pg-target").contains("last commit replayed 20"), "{text}");
    let data = scratch.join("data");
    use std::os::unix::fs::MetadataExt as _;
    // The sandbox was handed to postgres.
    let postgres = std::fs::metadata(sb.path("")).unwrap().uid();
    assert_ne!(postgres, 0);
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), postgres, "the server ran as postgres");
    assert!(!data.join("postmaster.pid").exists(), "the kept server is stopped");
    assert_eq!(processes_on(&scratch), Vec::<String>::new());
    // A scratch directory that is not empty is refused: nothing is restored over it.
    let err = as_root(&sb).args(["drill", "pg", "--scratch"]).arg(&scratch).fails(1);
    assert!(err.contains("is not empty"), "{err}");
}

#[test]
fn drill_pg_missing_wal_segment_inside_the_window_fails_naming_it_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let pg = sb.cluster("main");
    pg.sql("create table t (id int primary key); insert into t values (1)");
    pg.env(sb.c(["pg", "backup"])).ok();
    pg.switch_and_archive();
    // A segment "archived" without being stored (see pg_util): a hole in the window.
    pg.sql("insert into t values (2)");
    let lost = pg.sql("select pg_walfile_name(pg_current_wal_lsn())");
    std::fs::write(sb.path(&format!("lose-{lost}")), b"").unwrap();
    pg.switch_and_archive();
    pg.sql("insert into t values (3)");
    pg.switch_and_archive();

    // As postgres (not root): the server runs as the drill's own user. To the end: the
    // restore is refused before anything starts.
    let scratch = sb.path("scratch-gap");
    let run = sb.c(["--json", "drill", "pg", "--latest", "--scratch"]).arg(&scratch).run();
    assert_eq!(run.code, Some(10), "{}", run.stderr);
    assert!(run.stderr.contains(&lost), "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["passed"], false);
    assert!(report["error"].as_str().unwrap().contains(&lost), "{report}");
    assert_eq!(check(&report, "pg-wal")["outcome"], "failed", "{report}");
    assert!(check(&report, "pg-wal")["detail"].as_str().unwrap().contains(&lost), "{report}");
    assert_eq!(check(&report, "pg-amcheck")["outcome"], "skipped", "{report}");
    assert!(!scratch.exists());

    // At a random point (before or after the hole): the drill fails, naming it.
    let scratch = sb.path("scratch-gap-2");
    let run = sb.c(["drill", "pg", "--scratch"]).arg(&scratch).run();
    assert_eq!(run.code, Some(10), "{}", run.stderr);
    let text = run.stdout_text();
    let wal = text.lines().find(|l| l.contains("pg-wal")).unwrap_or_else(|| panic!("{text}"));
    assert!(wal.starts_with("FAILED ") && wal.contains(&lost), "{text}");
    assert!(!scratch.exists());
    assert_eq!(processes_on(&scratch), Vec::<String>::new());
}
