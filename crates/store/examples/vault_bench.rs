//! LocalVault throughput against the plain file system, on the same disk, in the same run.
//!
//! ```text
//! cargo run --release -p coffer-store --example vault_bench -- [--dir DIR] [--quick]
//! ```
//!
//! Four cases, each next to a reference doing the same I/O without the vault:
//!
//! | case | coffer | reference |
//! | --- | --- | --- |
//! | put 4 MiB | `ObjectStore::put` | write + fsync a temp file, rename it, fsync the directory |
//! | get 4 MiB | `ObjectStore::get` (checksum verified) | `std::fs::read` of the same bytes |
//! | put 4 KiB | as above | as above |
//! | get 4 KiB | as above | as above |
//!
//! The reference put is what durability needs at the least; the vault adds a BLAKE3 hash
//! of the data and a SQLite commit (WAL, `synchronous=FULL`: one more fsync) that makes the
//! version visible. Rounds alternate coffer and reference (and which goes first) so that
//! other load on the machine hits both alike; the table reports total work over total time
//! (the ratio column) and the median and spread of the per-round ratios. Gets read files
//! just written, so they come from the page cache: they measure the vault's overhead
//! (lookup, hash), not the disk.
//!
//! After the table, a breakdown of one 4 MiB put: hashing, the reference write, and a
//! metadata-only commit (a delete marker: the same transaction shape as a put's).
//!
//! `DIR` defaults to a fresh directory under `std::env::temp_dir()`; the program says which
//! directory it used and whether it is on the same file system as the current directory.
#![allow(clippy::disallowed_macros, reason = "a program of its own: it prints")]

use coffer_store::{LocalVault, ObjectStore, PutOptions, Role, VaultHandle, VaultOptions, VersionId};
use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// One case's accumulated measurements for one side.
#[derive(Default)]
struct Side {
    ops: u64,
    bytes: u64,
    time: Duration,
}

impl Side {
    fn add(&mut self, ops: u64, bytes: u64, time: Duration) {
        self.ops += ops;
        self.bytes += bytes;
        self.time += time;
    }

    /// MiB/s when `per_byte`, else operations per second.
    fn rate(&self, per_byte: bool) -> f64 {
        let secs = self.time.as_secs_f64().max(1e-9);
        if per_byte { self.bytes as f64 / MIB as f64 / secs } else { self.ops as f64 / secs }
    }
}

struct Case {
    name: &'static str,
    per_byte: bool,
    coffer: Side,
    reference: Side,
    round_ratios: Vec<f64>,
}

impl Case {
    fn new(name: &'static str, per_byte: bool) -> Self {
        Self { name, per_byte, coffer: Side::default(), reference: Side::default(), round_ratios: Vec::new() }
    }

    /// Runs `rounds` rounds of `coffer` and `reference` (each doing one batch and returning
    /// its ops, bytes and elapsed time), alternating which goes first.
    fn run(
        &mut self,
        rounds: usize,
        b: &mut Bench,
        mut coffer: impl FnMut(&mut Bench) -> (u64, u64, Duration),
        mut reference: impl FnMut(&mut Bench) -> (u64, u64, Duration),
    ) {
        for round in 0..rounds {
            let (c, r) = if round % 2 == 0 {
                let c = coffer(b);
                (c, reference(b))
            } else {
                let r = reference(b);
                (coffer(b), r)
            };
            self.coffer.add(c.0, c.1, c.2);
            self.reference.add(r.0, r.1, r.2);
            // Both sides do the same work per round, so the ratio of times is the ratio of rates.
            self.round_ratios.push(r.2.as_secs_f64() / c.2.as_secs_f64().max(1e-9));
        }
    }

    /// The per-round ratios' median, 10th and 90th percentile.
    fn round_spread(&self) -> (f64, f64, f64) {
        let mut r = self.round_ratios.clone();
        r.sort_by(f64::total_cmp);
        let at = |q: f64| r.get(((r.len() - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN);
        (at(0.5), at(0.1), at(0.9))
    }

    fn row(&self) -> String {
        let unit = if self.per_byte { "MiB/s" } else { "ops/s" };
        let (c, r) = (self.coffer.rate(self.per_byte), self.reference.rate(self.per_byte));
        let (median, p10, p90) = self.round_spread();
        format!(
            "| {:<9} | {:>9.1} {unit} | {:>9.1} {unit} | {:>5.2} | {median:>4.2} ({p10:.2}–{p90:.2}) |",
            self.name,
            c,
            r,
            c / r.max(1e-9)
        )
    }
}

/// Writes `data` to `dir/name` the plain durable way: temp file, write, fsync, rename,
/// fsync the directory.
fn reference_put(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Random-looking data; each object gets a distinct first 8 bytes.
fn payload(size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    blake3::Hasher::new_derive_key("coffer vault_bench payload").finalize_xof().fill(&mut out);
    out
}

fn stamp(data: &mut [u8], n: u64) {
    if data.len() >= 8 {
        data[..8].copy_from_slice(&n.to_le_bytes());
    }
}

struct Bench {
    writer: VaultHandle,
    ref_dir: PathBuf,
    counter: u64,
}

impl Bench {
    /// `batch` coffer puts of `data` (stamped); returns (ops, bytes, time) and the versions.
    fn coffer_puts(
        &mut self,
        tag: &str,
        data: &mut [u8],
        batch: usize,
        out: &mut Vec<(String, VersionId)>,
    ) -> (u64, u64, Duration) {
        let mut time = Duration::ZERO;
        for _ in 0..batch {
            self.counter += 1;
            stamp(data, self.counter);
            let key = format!("{tag}/{:08}", self.counter);
            let t = Instant::now();
            let v = self.writer.put(&key, data, &PutOptions::default()).expect("coffer put");
            time += t.elapsed();
            out.push((key, v.version));
        }
        (batch as u64, (batch * data.len()) as u64, time)
    }

    fn reference_puts(
        &mut self,
        tag: &str,
        data: &mut [u8],
        batch: usize,
        out: &mut Vec<PathBuf>,
    ) -> (u64, u64, Duration) {
        let mut time = Duration::ZERO;
        for _ in 0..batch {
            self.counter += 1;
            stamp(data, self.counter);
            let name = format!("{tag}-{:08}", self.counter);
            let t = Instant::now();
            reference_put(&self.ref_dir, &name, data).expect("reference put");
            time += t.elapsed();
            out.push(self.ref_dir.join(name));
        }
        (batch as u64, (batch * data.len()) as u64, time)
    }
}

fn same_filesystem(a: &Path, b: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    Some(fs::metadata(a).ok()?.dev() == fs::metadata(b).ok()?.dev())
}

#[allow(clippy::disallowed_methods, reason = "a program of its own: --help and a bad argument end it")]
fn parse_args() -> (Option<PathBuf>, bool) {
    let mut dir = None;
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(args.next().expect("--dir needs a value"))),
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("usage: vault_bench [--dir DIR] [--quick]");
                std::process::exit(0);
            }
            other => {
                eprintln!("vault_bench: unknown argument {other:?} (usage: vault_bench [--dir DIR] [--quick])");
                std::process::exit(2);
            }
        }
    }
    (dir, quick)
}

#[allow(clippy::too_many_lines, reason = "one linear script: set up, four cases, breakdown")]
fn main() {
    let (dir_arg, quick) = parse_args();
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with --release for meaningful numbers");
    }
    let (_guard, base) = match dir_arg {
        Some(d) => {
            fs::create_dir_all(&d).expect("create --dir");
            let t = tempfile::Builder::new().prefix("coffer-bench-").tempdir_in(&d).expect("temp dir in --dir");
            let p = t.path().to_path_buf();
            (t, p)
        }
        None => {
            let t = tempfile::Builder::new().prefix("coffer-bench-").tempdir().expect("temp dir");
            let p = t.path().to_path_buf();
            (t, p)
        }
    };
    let cwd = std::env::current_dir().expect("current dir");
    println!("directory: {} (removed at exit)", base.display());
    match same_filesystem(&base, &cwd) {
        Some(true) => println!("same file system as the current directory {}: yes", cwd.display()),
        Some(false) => println!("same file system as the current directory {}: NO", cwd.display()),
        None => {}
    }

    let vault = LocalVault::init(base.join("vault"), &VaultOptions::default()).expect("init vault");
    let writer = vault.login(&vault.read_credentials(Role::Writer).expect("credentials")).expect("login");
    let ref_dir = base.join("reference");
    fs::create_dir_all(&ref_dir).expect("create reference dir");
    let mut b = Bench { writer: writer.clone(), ref_dir, counter: 0 };

    // Rounds are short (one 4 MiB put, ten 4 KiB puts per side) so that the two sides see
    // the same background load; many rounds give a stable total.
    let (big_rounds, big_batch, small_rounds, small_batch, get_passes) =
        if quick { (20, 1, 30, 10, 2) } else { (300, 1, 300, 10, 4) };
    let started = Instant::now();

    // Warm up both paths (file creation, SQLite pages, statement cache).
    let mut warm = payload(64 << 10);
    b.coffer_puts("warm", &mut warm, 20, &mut Vec::new());
    b.reference_puts("warm", &mut warm, 20, &mut Vec::new());

    let (mut big_c, mut big_r) = (payload(4 * MIB), payload(4 * MIB));
    let (mut big_versions, mut big_files) = (Vec::new(), Vec::new());
    let mut put_big = Case::new("put 4 MiB", true);
    put_big.run(
        big_rounds,
        &mut b,
        |b| b.coffer_puts("big", &mut big_c, big_batch, &mut big_versions),
        |b| b.reference_puts("big", &mut big_r, big_batch, &mut big_files),
    );
    drop((big_c, big_r));
    let mut get_big = Case::new("get 4 MiB", true);
    get_big.run(get_passes, &mut b, |_| coffer_gets(&writer, &big_versions), |_| reference_gets(&big_files));

    let (mut small_c, mut small_r) = (payload(4 << 10), payload(4 << 10));
    let (mut small_versions, mut small_files) = (Vec::new(), Vec::new());
    let mut put_small = Case::new("put 4 KiB", false);
    put_small.run(
        small_rounds,
        &mut b,
        |b| b.coffer_puts("small", &mut small_c, small_batch, &mut small_versions),
        |b| b.reference_puts("small", &mut small_r, small_batch, &mut small_files),
    );
    let mut get_small = Case::new("get 4 KiB", false);
    get_small.run(get_passes, &mut b, |_| coffer_gets(&writer, &small_versions), |_| reference_gets(&small_files));

    println!();
    println!("| case      | coffer          | reference       | ratio | round ratio: median (p10–p90) |");
    println!("| --------- | --------------- | --------------- | ----- | ----------------------------- |");
    for c in [&put_big, &get_big, &put_small, &get_small] {
        println!("{}", c.row());
    }
    let ratio = put_big.coffer.rate(true) / put_big.reference.rate(true);
    println!("\ntarget: put 4 MiB ratio >= 0.80: {} ({ratio:.2})", if ratio >= 0.8 { "met" } else { "NOT MET" });

    // Where a 4 MiB put's time goes.
    let data = payload(4 * MIB);
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        black_box(blake3::hash(black_box(&data)));
    }
    let hash = t.elapsed() / n;
    let t = Instant::now();
    for (key, _) in big_versions.iter().take(n as usize) {
        writer.delete(key).expect("delete marker");
    }
    let commit = t.elapsed() / n;
    let per_put = |s: &Side| s.time / u32::try_from(s.ops.max(1)).unwrap_or(u32::MAX);
    println!("\nper 4 MiB put (mean):");
    println!("  coffer put                           {:>8.2?}", per_put(&put_big.coffer));
    println!("  reference write+fsync+rename+fsync   {:>8.2?}", per_put(&put_big.reference));
    println!("  BLAKE3 of 4 MiB (one thread)         {hash:>8.2?}");
    println!("  metadata-only commit (delete marker) {commit:>8.2?}");
    println!("\ntotal run time {:.1?}", started.elapsed());
}

fn coffer_gets(writer: &VaultHandle, versions: &[(String, VersionId)]) -> (u64, u64, Duration) {
    let mut bytes = 0u64;
    let t = Instant::now();
    for (key, v) in versions {
        let obj = writer.get(key, Some(v)).expect("coffer get");
        bytes += black_box(obj.data).len() as u64;
    }
    (versions.len() as u64, bytes, t.elapsed())
}

fn reference_gets(files: &[PathBuf]) -> (u64, u64, Duration) {
    let mut bytes = 0u64;
    let t = Instant::now();
    for f in files {
        bytes += black_box(fs::read(f).expect("reference read")).len() as u64;
    }
    (files.len() as u64, bytes, t.elapsed())
}
