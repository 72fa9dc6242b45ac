//! A WAL segment's name is predictable, so someone with the writer's key can put garbage
//! under the next segment's name before PostgreSQL archives it. The archive must go on: the
//! honest segment is stored after the garbage (readers take the first version that
//! authenticates) and read back exactly; a well-sealed forgery stored first is refused as
//! other content, never silently replaced.

use coffer_repository::pack::{ObjectKind, seal_bytes};
use coffer_repository::{InitOptions, KdfParams, Repository, WalPut};
use coffer_store::{Clock, LocalVault, ObjectStore, PutOptions, Role, VaultOptions};
use std::sync::Arc;

const SEG: &str = "000000010000000000000003";

fn repo() -> (tempfile::TempDir, Repository, Arc<dyn ObjectStore>) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
    let vault =
        LocalVault::init(tmp.path().join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(w.clone(), "t", "", b"pw", &opts, clock).unwrap();
    (tmp, repo, w)
}

#[test]
fn garbage_put_ahead_of_a_segment_does_not_stop_its_archiving() {
    let (_tmp, repo, writer) = repo();
    let key = repo.wal_key(7, SEG);
    writer.put(&key, b"garbage ahead of the archive", &PutOptions::default()).unwrap();
    let segment = vec![0x5a; 64 * 1024];
    assert_eq!(repo.put_wal(7, SEG, &segment).unwrap(), WalPut::Stored);
    assert_eq!(repo.get_wal(7, SEG).unwrap().as_deref(), Some(segment.as_slice()));
    assert_eq!(repo.put_wal(7, SEG, &segment).unwrap(), WalPut::AlreadyStored);
}

#[test]
fn a_sealed_forgery_put_ahead_is_refused_not_replaced() {
    let (_tmp, repo, writer) = repo();
    let key = repo.wal_key(7, SEG);
    let forged = vec![0x11; 64 * 1024];
    writer.put(&key, &seal_bytes(repo.key(), ObjectKind::PgWal, SEG, &forged), &PutOptions::default()).unwrap();
    let err = repo.put_wal(7, SEG, &vec![0x5a; 64 * 1024]).unwrap_err().to_string();
    assert!(err.contains("already archived with different content"), "{err}");
}
