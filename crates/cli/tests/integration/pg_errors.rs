//! Errors during `coffer pg` commands exit with the same codes as the repository commands:
//! the class of a library error decides, however deeply it is wrapped (the tar unpacker
//! wraps the repository's errors transparently).

use crate::pg_util::{PgEnv as _, PgSandbox, require_postgres};
use crate::repo_util::make_writable;
use std::path::PathBuf;

/// The data file of the largest pack (`data/…` key) in the sandbox's vault, and its key.
fn largest_pack(sb: &PgSandbox) -> (String, PathBuf) {
    let vault = sb.sb.vault();
    let db = rusqlite::Connection::open(vault.join("meta.sqlite")).expect("open meta.sqlite");
    let mut q = db.prepare("SELECT key, file FROM versions").unwrap();
    let rows = q.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))).unwrap();
    rows.map(Result::unwrap)
        .filter_map(|(k, f)| {
            let key = String::from_utf8(k).unwrap();
            key.starts_with("data/").then(|| (key, vault.join("data").join(&f[..2]).join(f)))
        })
        .max_by_key(|(_, p)| std::fs::metadata(p).unwrap().len())
        .expect("a pack")
}

#[test]
fn corrupt_base_backup_data_fails_pg_restore_with_the_integrity_code_as_root() {
    require_postgres();
    let sb = PgSandbox::new();
    let pg = sb.cluster("main");
    pg.sql("create table t as select g, md5(g::text) as v from generate_series(1, 20000) g");
    pg.env(sb.c(["pg", "backup"])).ok();
    pg.switch_and_archive();

    // One byte of the largest pack flipped, with the store's checksum updated (as a store
    // that does not checksum, or an attacker with the disk, would return it): only the
    // repository's authentication of the blob catches it, inside the tar unpacker.
    let (key, file) = largest_pack(&sb);
    let mut data = std::fs::read(&file).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    make_writable(&file);
    std::fs::write(&file, &data).unwrap();
    let db = rusqlite::Connection::open(sb.sb.vault().join("meta.sqlite")).unwrap();
    let sum = format!("blake3:{}", blake3::hash(&data).to_hex());
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(db.execute("UPDATE versions SET checksum = ?1 WHERE file = ?2", (&sum, &name)).unwrap(), 1);
    drop(db);
    let st = std::process::Command::new("chown").arg("-R").arg("postgres:postgres").arg(sb.sb.vault()).status();
    assert!(st.unwrap().success());

    // `coffer restore` of the same snapshot says integrity (6); so must `pg restore`.
    let run = sb.c(["restore", "latest", "--target"]).arg(sb.path("raw")).run();
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert!(run.stderr.contains("corrupt object data/"), "{}", run.stderr);
    let err = sb.c(["pg", "restore", "--latest", "--target"]).arg(sb.path("restored")).fails(6);
    assert!(err.contains("cannot unpack base backup") && err.contains("corrupt"), "{key}: {err}");
}
