//! `crash-writer`: the child process of the crash trials (`tests/integration/crash.rs`).
//!
//! ```text
//! crash-writer --vault DIR --prefix P --seed N [--count N] [--max-size BYTES]
//!              [--shared KEY --shared-every K] [--wait]
//! ```
//!
//! Opens the vault, logs in as the writer and performs operations chosen by the seed: puts
//! of objects whose content follows from their key ([`coffer_testkit::crash`]), of sizes
//! from 0 B to `--max-size` (default 4 MiB), some with a retention or legal hold; delete
//! markers on its own earlier keys; retention set or extended on its own earlier versions;
//! and, with `--shared`, a put of the shared key every K operations. After each call
//! *returns* it prints one acknowledgement line (see the protocol in
//! [`coffer_testkit::crash`]) and flushes. Without `--count` it runs until killed.
//! With `--wait` it prints `READY` once logged in and starts only when a line arrives on
//! stdin, so that several writers can be started together. Any store error is printed to
//! stderr and exits with status 1.
#![allow(clippy::disallowed_macros, reason = "a program of its own: it prints")]

use coffer_store::{LocalVault, ObjectStore, PutOptions, Retention, RetentionMode, Role, VersionId};
use coffer_testkit::crash::{Ack, Rng, content_for_key, object_key};
use std::io::Write;
use std::process::ExitCode;

struct Args {
    vault: String,
    prefix: String,
    seed: u64,
    count: Option<u64>,
    max_size: usize,
    shared: Option<(String, u64)>,
    wait: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut vault, mut prefix, mut seed, mut count, mut max_size, mut shared, mut every) =
        (None, None, None, None, 4 << 20, None, 3u64);
    let mut wait = false;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{flag} {s:?}: {e}"));
        match flag.as_str() {
            "--vault" => vault = Some(value()?),
            "--prefix" => prefix = Some(value()?),
            "--seed" => seed = Some(num(value()?)?),
            "--count" => count = Some(num(value()?)?),
            "--max-size" => max_size = usize::try_from(num(value()?)?).map_err(|e| e.to_string())?,
            "--shared" => shared = Some(value()?),
            "--shared-every" => every = num(value()?)?.max(1),
            "--wait" => wait = true,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Args {
        vault: vault.ok_or("--vault is required")?,
        prefix: prefix.ok_or("--prefix is required")?,
        seed: seed.ok_or("--seed is required")?,
        count,
        max_size,
        shared: shared.map(|k| (k, every)),
        wait,
    })
}

/// A size from 0 B to `max`, weighted so that every class occurs often: empty and tiny
/// objects, small ones, medium ones and large ones (which take the longest to write, so
/// many kills land inside them).
fn pick_size(rng: &mut Rng, max: usize) -> usize {
    let bucket = rng.range(0, 99);
    let size = match bucket {
        0..=9 => 0,
        10..=34 => rng.range_usize(1, 4096),
        35..=59 => rng.range_usize(4097, 256 << 10),
        60..=79 => rng.range_usize(256 << 10, 1 << 20),
        _ => rng.range_usize(1 << 20, 4 << 20),
    };
    size.min(max)
}

struct Written {
    key: String,
    version: VersionId,
    retention: Option<Retention>,
    deleted: bool,
}

fn run(args: &Args) -> coffer_store::Result<()> {
    let vault = LocalVault::open(&args.vault)?;
    let writer = vault.login(&vault.read_credentials(Role::Writer)?)?;
    // Delete markers are the admin's (the writer may not add one).
    let admin = vault.login(&vault.read_credentials(Role::Admin)?)?;
    let mut rng = Rng::new(args.seed);
    let mut written: Vec<Written> = Vec::new();
    let stdout = std::io::stdout();
    let ack = |a: Ack| {
        // One write per line: a pipe write of this size is atomic, so a kill never leaves
        // half a line that parses.
        let mut out = stdout.lock();
        out.write_all(a.to_line().as_bytes()).and_then(|()| out.flush()).expect("cannot write to stdout");
    };
    if args.wait {
        ack(Ack::Ready);
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).expect("cannot read stdin");
    }
    let mut seq = 0u64;
    while args.count.is_none_or(|c| seq < c) {
        seq += 1;
        let now = vault.clock().now();
        if let Some((shared, every)) = &args.shared {
            if seq % every == 0 {
                let data = content_for_key(shared).expect("the shared key encodes a size");
                let v = writer.put(shared, &data, &PutOptions::default())?;
                ack(Ack::Put { key: shared.clone(), version: v.version });
                continue;
            }
        }
        let op = rng.range(0, 99);
        let live: Vec<usize> = (0..written.len()).filter(|&i| !written[i].deleted).collect();
        if op < 8 && !live.is_empty() {
            let i = live[rng.range_usize(0, live.len() - 1)];
            let m = admin.delete(&written[i].key)?;
            written[i].deleted = true;
            ack(Ack::Delete { key: m.key, version: m.version });
        } else if op < 18 && !written.is_empty() {
            let i = rng.range_usize(0, written.len() - 1);
            let w = &mut written[i];
            // Extend: the same mode as now (compliance can only stay compliance), later date.
            let mode = w
                .retention
                .map_or(if rng.chance(50) { RetentionMode::Compliance } else { RetentionMode::Governance }, |r| r.mode);
            let base = w.retention.map_or(now, |r| r.until.max(now));
            let until = base + jiff::SignedDuration::from_secs(i64::try_from(rng.range(3600, 86_400)).expect("small"));
            let r = Retention { mode, until };
            writer.put_retention(&w.key, &w.version, Some(r), false)?;
            w.retention = Some(r);
            ack(Ack::Retention {
                key: w.key.clone(),
                version: w.version.clone(),
                mode,
                until: until.as_second() + i64::from(until.subsec_nanosecond() > 0),
            });
        } else {
            let size = pick_size(&mut rng, args.max_size);
            let key = object_key(&args.prefix, seq, size);
            let retention = if rng.chance(30) {
                let mode = if rng.chance(50) { RetentionMode::Compliance } else { RetentionMode::Governance };
                Some(Retention { mode, until: now + jiff::SignedDuration::from_hours(24) })
            } else {
                None
            };
            let opts = PutOptions { retention, legal_hold: rng.chance(10), create_only: false };
            let v = writer.put(&key, &content_for_key(&key).expect("object_key encodes a size"), &opts)?;
            written.push(Written { key: key.clone(), version: v.version.clone(), retention, deleted: false });
            ack(Ack::Put { key, version: v.version });
        }
    }
    ack(Ack::Done);
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("crash-writer: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}
