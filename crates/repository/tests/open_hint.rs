//! Opening with a cache tries the key file this host opened the repository with last (the
//! key hint, `cache::key_hint_path`) while the config and key files are listed. The hint is
//! hostile input like the rest of the cache: garbage, a file not matching its name, or a key
//! file that unwraps with the password but wraps another master key changes nothing — the
//! listing decides — and is replaced by the key file that did open.

use coffer_repository::cache::key_hint_path;
use coffer_repository::{CacheChoice, InitOptions, KdfParams, KeySource, RepoRequest, Repository, open_repository};
use coffer_store::{Clock, LocalVault, ObjectStore, Role, VaultOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CHEAP: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

fn vault(dir: &Path, clock: &Clock) -> Arc<dyn ObjectStore> {
    let v = LocalVault::init(dir, &VaultOptions { clock: clock.clone(), ..Default::default() }).unwrap();
    Arc::new(v.login(&v.read_credentials(Role::Writer).unwrap()).unwrap())
}

fn open(store: &Arc<dyn ObjectStore>, cache: &Path, password: &str, clock: &Clock) -> Repository {
    let req = RepoRequest {
        cache: CacheChoice::Always(cache.to_path_buf()),
        clock: clock.clone(),
        ..RepoRequest::new(KeySource::Password(password.as_bytes().to_vec().into()))
    };
    open_repository(store.clone(), "t", &req).unwrap().repo
}

/// The hint's key file name (its second line).
fn hinted(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).lines().nth(1).unwrap().to_owned()
}

fn key_names(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    store.list_version_entries("keys/", None, 100).unwrap().items.into_iter().map(|e| e.key).collect()
}

#[test]
fn open_hint_is_tried_first_and_anything_wrong_with_it_is_passed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Clock::manual("2030-01-01T00:00:00Z".parse().unwrap());
    let store = vault(&tmp.path().join("v"), &clock);
    let opts = InitOptions { kdf: CHEAP, ..Default::default() };
    let id = Repository::init(store.clone(), "t", "", b"one", &opts, clock.clone()).unwrap().config().id;
    let cache: PathBuf = tmp.path().join("cache");
    let hint = key_hint_path(&cache, "t", "");

    // The first open lists, and records the key file that opened.
    assert_eq!(open(&store, &cache, "one", &clock).config().id, id);
    let first = key_names(&store);
    assert_eq!(first.len(), 1);
    assert_eq!(hinted(&hint), first[0]);
    let good = std::fs::read(&hint).unwrap();

    // A second password: the hint (the first key) does not unwrap with it; the listing
    // finds the second key, which becomes the hint.
    open(&store, &cache, "one", &clock).add_key(b"two", CHEAP, "h", "second").unwrap();
    assert_eq!(open(&store, &cache, "two", &clock).config().id, id);
    let second = key_names(&store).into_iter().find(|k| *k != first[0]).unwrap();
    assert_eq!(hinted(&hint), second);
    // And back: each open leaves the key it opened with.
    assert_eq!(open(&store, &cache, "one", &clock).config().id, id);
    assert_eq!(std::fs::read(&hint).unwrap(), good);

    // Garbage, a truncated file, a file whose bytes do not match its name, a name outside
    // keys/: ignored, the repository opens, the hint is rewritten.
    let mut mismatched = good.clone();
    let last = mismatched.len() - 2;
    mismatched[last] ^= 1;
    let outside = String::from_utf8(good.clone()).unwrap().replacen("keys/", "data/", 1).into_bytes();
    for bad in [b"garbage".to_vec(), good[..good.len() / 2].to_vec(), mismatched, outside, Vec::new()] {
        std::fs::write(&hint, &bad).unwrap();
        assert_eq!(open(&store, &cache, "one", &clock).config().id, id);
        assert_eq!(std::fs::read(&hint).unwrap(), good, "rewritten after {:?}", String::from_utf8_lossy(&bad));
    }

    // A forged hint: a well-formed key file of another repository, under the same password
    // (it unwraps, to another master key). Its key does not open this config: passed over.
    let other_store = vault(&tmp.path().join("other"), &clock);
    Repository::init(other_store.clone(), "o", "", b"one", &opts, clock.clone()).unwrap();
    let other_cache = tmp.path().join("other-cache");
    open(&other_store, &other_cache, "one", &clock);
    std::fs::copy(key_hint_path(&other_cache, "t", ""), &hint).unwrap();
    assert_ne!(hinted(&hint), first[0]);
    let repo = open(&store, &cache, "one", &clock);
    assert_eq!(repo.config().id, id, "the listing's key opened it, not the forged one");
    assert_eq!(std::fs::read(&hint).unwrap(), good);

    // A wrong password is still a wrong password, whatever the hint.
    let req = RepoRequest {
        cache: CacheChoice::Always(cache.clone()),
        clock: clock.clone(),
        ..RepoRequest::new(KeySource::Password(b"three".to_vec().into()))
    };
    let Err(err) = open_repository(store.clone(), "t", &req) else { panic!("opened with a wrong password") };
    assert!(err.to_string().contains("password"), "{err}");
}
