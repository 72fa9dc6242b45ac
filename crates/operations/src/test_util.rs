//! What the library's unit tests share: a repository on a fresh local vault, and how long
//! a test waits for a background thread.

use coffer_repository::{InitOptions, KdfParams, Repository};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a test waits for a background thread ([`coffer_testkit::WAIT`]): on a loaded
/// 2-core machine with a slow disk, a daemon's start alone (the state database and its
/// fsyncs) has taken longer than 30 s.
pub(crate) const WAIT: Duration = coffer_testkit::WAIT;

/// A repository (password `pw`, a cheap key derivation) on a new local vault in `dir/v` whose
/// clock is `clock`, opened as the writer; and the writer's store.
pub(crate) fn vault_repo(dir: &Path, clock: &Clock) -> (Repository, Arc<dyn ObjectStore>) {
    let vault = LocalVault::init(dir.join("v"), &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    let w: Arc<dyn ObjectStore> = Arc::new(vault.login(&vault.read_credentials(Role::Writer).unwrap()).unwrap());
    let opts = InitOptions { kdf: KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(w.clone(), "t", "", b"pw", &opts, clock.clone()).unwrap();
    (repo, w)
}
