//! `coffer pg restore` writes the base backup's members itself, from several threads
//! (`coffer_sources::tar`): the data directory it writes must be exactly what `tar -x -p`
//! makes of the same stored `base.tar` — every file's bytes, mode and modification time,
//! every directory and its mode — and must recover.

use crate::pg_util::{PgEnv as _, PgSandbox, as_postgres, require_postgres};
use coffer_testkit::tree::describe;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

#[test]
fn pg_restore_writes_exactly_what_tar_extracts_from_the_base_backup_and_recovers_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let pg = sb.cluster("main");
    // Relation files of many sizes, some MiB of them incompressible: many chunks, members
    // crossing chunk boundaries, files larger than a chunk.
    pg.sql(
        "create table t (id int primary key, v text);
         insert into t select g, md5(random()::text) || md5(random()::text) from generate_series(1, 150000) g;
         create index on t (v); create table empty (x int)",
    );
    // Files a base backup copies as they are: odd modes, empty, nested, old times.
    let extra = pg.data.join("coffer-extra");
    std::fs::create_dir_all(extra.join("deeper/still")).unwrap();
    for (name, len, mode) in
        [("a", 0usize, 0o600), ("b", 513, 0o640), ("deeper/c", 70_000, 0o400), ("deeper/still/d", 1, 0o644)]
    {
        let p = extra.join(name);
        std::fs::write(&p, (0..len).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(extra.join("deeper"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let st = std::process::Command::new("chown").arg("-R").arg("postgres:postgres").arg(&extra).status().unwrap();
    assert!(st.success());
    let st =
        std::process::Command::new("touch").args(["-h", "-d", "2001-02-03 04:05:06"]).arg(extra.join("b")).status();
    assert!(st.unwrap().success());
    pg.env(sb.c(["pg", "backup"])).ok();
    pg.sql("insert into t values (0, 'after the base backup')");
    pg.switch_and_archive();
    let expect = pg.sql("select count(*) || ' ' || md5(string_agg(v, ',' order by id)) from t");

    // The stored base.tar, and what tar makes of it (as the same user as the restore).
    sb.c(["restore", "latest", "--target"]).arg(sb.path("raw")).ok();
    let reference = sb.path("by-tar");
    std::fs::create_dir(&reference).unwrap();
    let st = std::process::Command::new("chown").arg("postgres:postgres").arg(&reference).status().unwrap();
    assert!(st.success());
    let out = as_postgres("tar", &sb.sb.home())
        .args(["-x", "-p", "-f"])
        .arg(sb.path("raw/base.tar"))
        .arg("-C")
        .arg(&reference)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));

    let dir = sb.path("restored");
    sb.c(["pg", "restore", "--latest", "--target"]).arg(&dir).ok();
    // Directory times are left out: `tar` sets a directory's time when it leaves it, and a
    // later member in it, such as `global/pg_control`, which `pg_basebackup` sends last,
    // changes it again; Coffer sets them once at the end.
    let (want, got) = (describe(&reference, false), describe(&dir, false));
    assert!(want.len() > 500 && want.contains_key(Path::new("coffer-extra/deeper/still/d")), "{want:?}");
    for path in want.keys().chain(got.keys()) {
        // The two files restore writes on purpose: its settings, appended, and the signal.
        if path == Path::new("postgresql.auto.conf") || path == Path::new("recovery.signal") {
            continue;
        }
        assert_eq!(got.get(path), want.get(path), "{}", path.display());
    }
    let conf = std::fs::read(dir.join("postgresql.auto.conf")).unwrap();
    assert!(conf.starts_with(&std::fs::read(reference.join("postgresql.auto.conf")).unwrap()));
    assert!(dir.join("recovery.signal").is_file());

    // And the cluster it wrote recovers to the same rows.
    let started = sb.path("started");
    sb.c(["pg", "restore", "--start", "--latest", "--target"]).arg(&started).ok();
    let got = sb.psql_at(&started, "select count(*) || ' ' || md5(string_agg(v, ',' order by id)) from t");
    sb.stop_immediate(&started);
    assert_eq!(got, expect);
}
