//! Bit-rot: damage done to a stored data file behind the vault's back is detected on read.
//!
//! For objects of 1 B, 4 KiB and 1 MiB, one byte of the data file is flipped (first byte,
//! last byte, a random byte), the file is truncated, extended by a byte, or deleted; every
//! read of the damaged version is then `ErrorKind::Corrupt` with a message naming the key
//! and the version, while undamaged objects keep reading back. The data file of a version
//! is found as the one file that appeared under `DIR/data/` during its put. Data files are
//! created read-only (0444), so the test makes each writable before damaging it.
//! `COFFER_BITROT_SEED` replays the random offsets.

use coffer_store::{ErrorKind, LocalVault, ObjectStore, ObjectVersion, PutOptions, Role, VaultHandle, VaultOptions};
use coffer_testkit::crash::Rng;
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const SIZES: [usize; 3] = [1, 4 << 10, 1 << 20];

/// Damage done to one data file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    FlipFirst,
    FlipLast,
    FlipRandom,
    Truncate,
    Extend,
    Delete,
}

const DAMAGES: [Damage; 6] =
    [Damage::FlipFirst, Damage::FlipLast, Damage::FlipRandom, Damage::Truncate, Damage::Extend, Damage::Delete];

fn data_files(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for dir in fs::read_dir(root.join("data")).expect("read data dir") {
        for f in fs::read_dir(dir.expect("entry").path()).expect("read data subdir") {
            out.insert(f.expect("entry").path());
        }
    }
    out
}

/// Puts `data` under `key` and returns its version and the one data file the put created.
fn put_and_locate(writer: &VaultHandle, root: &Path, key: &str, data: &[u8]) -> (ObjectVersion, PathBuf) {
    let before = data_files(root);
    let v = writer.put(key, data, &PutOptions::default()).expect("put");
    let new: Vec<PathBuf> = data_files(root).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "the put of {key} should create exactly one data file, created {new:?}");
    let path = new.into_iter().next().expect("one file");
    assert_eq!(fs::read(&path).expect("read data file"), data, "{} does not hold {key}'s data", path.display());
    (v, path)
}

fn content(key: &str, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    blake3::Hasher::new_derive_key("coffer-testkit bit-rot v1").update(key.as_bytes()).finalize_xof().fill(&mut out);
    out
}

/// Damages `path` (of `size` bytes); returns a description for failure messages.
fn damage(path: &Path, size: usize, how: Damage, rng: &mut Rng) -> String {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("make the data file writable");
    let mask = u8::try_from(rng.range(1, 255)).expect("a byte");
    let flip = |offset: usize| {
        let mut f = OpenOptions::new().read(true).write(true).open(path).expect("open data file");
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(offset as u64)).expect("seek");
        f.read_exact(&mut b).expect("read byte");
        f.seek(SeekFrom::Start(offset as u64)).expect("seek");
        f.write_all(&[b[0] ^ mask]).expect("write byte");
        format!("byte {offset} xor {mask:#04x}")
    };
    match how {
        Damage::FlipFirst => flip(0),
        Damage::FlipLast => flip(size - 1),
        Damage::FlipRandom => flip(rng.range_usize(0, size - 1)),
        Damage::Truncate => {
            let len = rng.range_usize(0, size - 1);
            OpenOptions::new().write(true).open(path).expect("open").set_len(len as u64).expect("truncate");
            format!("truncated to {len} bytes")
        }
        Damage::Extend => {
            OpenOptions::new().append(true).open(path).expect("open").write_all(b"\0").expect("append");
            "one byte appended".to_owned()
        }
        Damage::Delete => {
            fs::remove_file(path).expect("remove data file");
            "data file deleted".to_owned()
        }
    }
}

fn assert_corrupt(writer: &VaultHandle, v: &ObjectVersion, latest: bool, what: &str) {
    let mut reads = vec![writer.get(&v.key, Some(&v.version))];
    if latest {
        reads.push(writer.get(&v.key, None));
    }
    for r in reads {
        match r {
            Ok(obj) => {
                panic!("{} version {} ({what}) read back {} bytes without error", v.key, v.version, obj.data.len())
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Corrupt, "{} version {} ({what}): {e}", v.key, v.version);
                let msg = e.to_string();
                assert!(
                    msg.contains(&v.key) && msg.contains(&v.version.0),
                    "the error for {what} must name key {} and version {}: {msg}",
                    v.key,
                    v.version
                );
            }
        }
    }
}

fn assert_intact(writer: &VaultHandle, v: &ObjectVersion, size: usize) {
    let obj = writer.get(&v.key, Some(&v.version)).unwrap_or_else(|e| panic!("intact {} does not read: {e}", v.key));
    assert_eq!(obj.data, content(&v.key, size), "intact {} reads back different bytes", v.key);
}

#[test]
fn damaged_data_files_are_detected_on_read() {
    let seed = match std::env::var("COFFER_BITROT_SEED") {
        Ok(s) => s.parse().expect("COFFER_BITROT_SEED is a number"),
        Err(_) => Rng::os_seed(),
    };
    eprintln!("bit-rot: seed {seed} (reproduce with COFFER_BITROT_SEED={seed})");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("vault");
    let vault = LocalVault::init(&root, &VaultOptions::default()).expect("init vault");
    let writer = vault.login(&vault.read_credentials(Role::Writer).expect("credentials")).expect("login");

    let mut intact = Vec::new();
    let mut damaged = Vec::new();
    for size in SIZES {
        // An older version under the same key as a damaged one, and a separate key, both left alone.
        for how in DAMAGES {
            let key = format!("rot/{size}/{how:?}");
            let (old, _) = put_and_locate(&writer, &root, &key, &content(&key, size));
            intact.push((old, size));
            let (v, path) = put_and_locate(&writer, &root, &key, &content(&key, size));
            damaged.push((v, path, size, how));
        }
        let key = format!("ok/{size}");
        let (v, _) = put_and_locate(&writer, &root, &key, &content(&key, size));
        intact.push((v, size));
    }
    // An empty object has no byte to flip, but losing its file is still detected.
    let (empty, empty_path) = put_and_locate(&writer, &root, "rot/0/Delete", &[]);

    for (v, path, size, how) in &damaged {
        let what = format!("{how:?} of a {size}-byte object: {}", damage(path, *size, *how, &mut rng));
        assert_corrupt(&writer, v, true, &what);
        // Detection does not depend on the page cache or on a first read: read again.
        assert_corrupt(&writer, v, true, &what);
        // Metadata is untouched: head still answers.
        assert_eq!(writer.head(&v.key, Some(&v.version)).expect("head").size, *size as u64);
    }
    fs::remove_file(&empty_path).expect("remove data file");
    assert_corrupt(&writer, &empty, true, "deleted data file of an empty object");

    for (v, size) in &intact {
        assert_intact(&writer, v, *size);
    }
    // A fresh open sees the same: nothing was cached in the handle.
    let reopened = LocalVault::open(&root).expect("reopen");
    let writer = reopened.login(&reopened.read_credentials(Role::Writer).expect("credentials")).expect("login");
    for (v, _, size, how) in &damaged {
        assert_corrupt(&writer, v, true, &format!("{how:?} of a {size}-byte object, after reopening"));
    }
    for (v, size) in &intact {
        assert_intact(&writer, v, *size);
    }
}
