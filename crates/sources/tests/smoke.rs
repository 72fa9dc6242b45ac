//! Quick round trip (temporary; the full suite lives in the CLI's integration tests).
use coffer_repository::{InitOptions, JobControl, KdfParams, Repository};
use coffer_sources::files::{BackupOptions, RestoreOptions, backup, restore};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use std::sync::Arc;

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = LocalVault::init(tmp.path().join("v"), &VaultOptions::default()).unwrap();
    let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(w, "t", "", b"pw", &opts, Clock::system()).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/f"), vec![5u8; 3_000_000]).unwrap();
    std::fs::write(src.join("g"), b"hello").unwrap();
    std::os::unix::fs::symlink("g", src.join("l")).unwrap();
    let r = backup(
        &repo,
        &BackupOptions { paths: vec![src.clone()], host: "h".into(), ..Default::default() },
        &JobControl::none(),
    )
    .unwrap();
    let t = tmp.path().join("out");
    let rep = restore(
        &repo,
        &r.info,
        &RestoreOptions { target: t.clone(), include: vec![], read_ahead: 0, exact: None },
        &JobControl::none(),
    )
    .unwrap();
    assert!(rep.warnings.iter().all(|w| w.contains("owner")), "{:?}", rep.warnings);
    let out = coffer_sources::files::walk::under(&t, &src);
    assert_eq!(std::fs::read(out.join("a/b/f")).unwrap(), vec![5u8; 3_000_000]);
    assert_eq!(std::fs::read(out.join("g")).unwrap(), b"hello");
    assert_eq!(std::fs::read_link(out.join("l")).unwrap().to_str().unwrap(), "g");
    let r2 = backup(
        &repo,
        &BackupOptions { paths: vec![src.clone()], host: "h".into(), ..Default::default() },
        &JobControl::none(),
    )
    .unwrap();
    assert_eq!(r2.info.summary.files_read, 0, "unchanged files are not read again");
    assert_eq!(r2.info.parent, Some(r.snapshot));
    assert_eq!(r2.info.previous.unwrap().id, r.snapshot);
}
