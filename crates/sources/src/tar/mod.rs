//! Unpacking a tar archive that a repository holds as one file — a `pg-base` snapshot's
//! `base.tar`, the tar stream of `pg_basebackup -Ft` — straight into a directory, with
//! several threads writing and syncing files at once.
//!
//! The pipeline: decoder threads read and authenticate the archive's blobs (several at a
//! time, handed on in order, at most [`AHEAD`] ahead); one thread parses the tar headers,
//! creates directories, symbolic links and files, and queues each member's data — slices
//! of the decoded blobs, never copied — for writer threads, which write them at their
//! offsets in the member's file (positional writes: two writers may fill one large file);
//! a file whose last byte is written gets its modification time and goes to sync threads,
//! which fsync it while later members are still being decoded and written. Large files are
//! also written back every [`WRITEBACK_STEP`] bytes on the way (`fdatasync` on a sync
//! thread), because the kernel would otherwise hold the whole restore dirty in memory
//! until the final fsyncs and do all the disk writes at the end. This replaces piping the
//! archive into one `tar -x` that wrote everything from one thread and synced nothing (see
//! `docs/postgres.md`, "Restore").
//!
//! Invariants guarded:
//! - **Byte-exact**: each regular file holds exactly its member's bytes; files and
//!   directories get the member's mode (all of it, like `tar -x -p`, so a cluster created
//!   with group access keeps it), files and symbolic links its modification time
//!   (directories too, once their entries exist), and, when running as root, its owner
//!   (by user and group name, else by number, as GNU tar does).
//! - **Durable**: when [`unpack`] returns `Ok`, every file and directory it created has
//!   been fsynced, each directory after the entries in it (the caller syncs the target's
//!   parent). Nothing is reported done before.
//! - **Confined**: nothing is written outside the target directory, whatever the archive
//!   says (a forged `pg-base` snapshot is hostile input): absolute names, `..`, and paths
//!   through a symbolic link the archive created are refused, as are hard links to any of
//!   these or through anything but a directory the unpacker made or checked; missing parent
//!   directories are made one at a time, and one whose name holds
//!   anything but a directory (a hard link to an archive symlink is a symlink too) fails
//!   the member rather than being followed.
//! - **Bounded**: at most [`AHEAD`] decoded blobs wait for the header parser and at most
//!   [`QUEUE`] writes and [`QUEUE`] syncs are queued, which bounds memory and open files.
//!
//! The first error stops every thread and is returned (the one that happened first, not a
//! follow-on); what was already written stays, as after a failed `tar -x`.
//!
//! Supported: the ustar format `pg_basebackup` writes (regular files, directories,
//! symbolic links; sizes in octal or base-256), plus hard links and GNU long names. Other
//! entry types (devices, fifos, sparse files, pax headers) are refused, naming the member.

use crate::owners::Owners;
use coffer_repository::{Id, RepoError, SharedReader};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod confine;
mod decode;
mod error;
mod format;
mod parser;
mod write;

use confine::is_target_itself;
use decode::decode_in_order;
use error::io_err;
pub use error::{Result, TarError};
use format::{Header, parse_header, text};
use parser::Parser;
use write::{Failure, Job, Out, SyncReq, finish_dirs, syncer, times, writer};

/// Decoded blobs that may wait for the header parser.
pub const AHEAD: usize = 32;
/// Queued writes, and queued syncs.
pub const QUEUE: usize = 64;
/// A file is written back (`fdatasync`) each time this many more of its bytes are written.
pub const WRITEBACK_STEP: u64 = 32 << 20;
/// The longest GNU long name or link accepted.
const MAX_LONG_NAME: u64 = 64 * 1024;

/// Threads of each kind.
#[derive(Clone, Copy, Debug)]
pub struct Threads {
    /// Read, authenticate and decompress blobs.
    pub decoders: usize,
    /// Write members' data into their files.
    pub writers: usize,
    /// fsync finished files (waiting on the disk, not the CPU).
    pub syncers: usize,
}

impl Default for Threads {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self { decoders: cpus.clamp(2, 4), writers: 2, syncers: 4 }
    }
}

/// What an unpack wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files (hard links included).
    pub files: u64,
    /// Directories (those the archive names).
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file data.
    pub bytes: u64,
}

/// Unpacks the tar archive made of the blobs `blobs` (a file's content list) into `dir`,
/// which must exist (and should be empty), then fsyncs everything it wrote.
///
/// # Errors
/// The first failure: a blob that cannot be read or authenticated, a malformed or
/// unsupported member (naming it), a file system error naming the path.
pub fn unpack(reader: &SharedReader<'_>, blobs: &[Id], dir: &Path, threads: Threads) -> Result<Unpacked> {
    unpack_stream(dir, threads, |sink| decode_in_order(reader, blobs, threads.decoders, sink))
}

/// [`unpack`] for a job: reports the archive's bytes as `Advance` events as they are
/// handed to the parser, and stops with `RepoError::Cancelled` at the next piece once `ctl`
/// is cancelled (what was written so far stays: the caller's restore is incomplete).
///
/// # Errors
/// As [`unpack`]; `Repo(Cancelled)` when cancelled.
pub fn unpack_job(
    reader: &SharedReader<'_>,
    blobs: &[Id],
    dir: &Path,
    threads: Threads,
    ctl: &coffer_repository::JobControl,
) -> Result<Unpacked> {
    unpack_stream(dir, threads, |sink| {
        decode_in_order(reader, blobs, threads.decoders, &mut |piece| {
            ctl.check()?;
            ctl.emit(&coffer_repository::Event::Advance(coffer_repository::Progress::new(0, piece.len() as u64)));
            sink(piece)
        })
    })
}

/// Unpacks the archive whose bytes `produce` hands, in order and in pieces of any size, to
/// the sink it is given; see [`unpack`]. `produce` must stop and return the sink's error
/// when the sink fails.
///
/// # Errors
/// As [`unpack`], or `produce`'s own error.
pub fn unpack_stream(
    dir: &Path,
    threads: Threads,
    produce: impl FnOnce(&mut dyn FnMut(Vec<u8>) -> Result<()>) -> Result<()>,
) -> Result<Unpacked> {
    let fail = Failure::default();
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(QUEUE);
    let (sync_tx, sync_rx) = crossbeam_channel::bounded::<SyncReq>(QUEUE);
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..threads.syncers.max(1) {
            let (rx, fail) = (sync_rx.clone(), &fail);
            handles.push(s.spawn(move || syncer(&rx, fail)));
        }
        for _ in 0..threads.writers.max(1) {
            let (rx, tx, fail) = (job_rx.clone(), sync_tx.clone(), &fail);
            handles.push(s.spawn(move || writer(&rx, &tx, fail)));
        }
        drop((job_rx, sync_rx));
        let mut parser = Parser::new(dir, job_tx, sync_tx, &fail);
        let res = produce(&mut |chunk| parser.feed(chunk)).and_then(|()| parser.end());
        if let Err(e) = res {
            fail.set(e);
        }
        // Consumed: its queues close, so the writers and syncers finish.
        let (dirs, counts) = parser.into_results();
        for h in handles {
            if h.join().is_err() {
                fail.set(TarError::Io {
                    context: "an unpack thread panicked".into(),
                    source: std::io::Error::other("panic"),
                });
            }
        }
        if let Some(e) = fail.take() {
            return Err(e);
        }
        finish_dirs(dir, &dirs)?;
        Ok(counts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;
    use std::process::Command;

    /// Pseudo-random bytes (SplitMix64).
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    fn run(c: &mut Command) {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A source tree like a data directory: nested directories with modes, files of many
    /// sizes (empty, under a block, exactly a block, across chunk boundaries, larger than
    /// the write-back step), odd modes, symbolic links, a long name.
    fn source(root: &Path) {
        let set_mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        for d in ["base/1", "base/5", "global", "pg_wal/archive_status", "pg_tblspc", "empty"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let sizes = [0, 1, 511, 512, 513, 8192, 100_000, 1 << 20, (WRITEBACK_STEP + 12_345) as usize];
        for (i, n) in sizes.iter().enumerate() {
            let p = root.join(format!("base/1/{}", 1000 + i));
            std::fs::write(&p, bytes(i as u64, *n)).unwrap();
            set_mode(&p, if i % 3 == 0 { 0o640 } else { 0o600 });
        }
        std::fs::write(root.join("global/pg_control"), bytes(99, 8192)).unwrap();
        std::fs::write(root.join("PG_VERSION"), b"15\n").unwrap();
        let long = format!("base/5/{}", "x".repeat(150));
        std::fs::write(root.join(&long), bytes(7, 3000)).unwrap();
        std::fs::write(root.join("ro"), b"read only").unwrap();
        set_mode(&root.join("ro"), 0o400);
        std::os::unix::fs::symlink("/nonexistent/tablespace", root.join("pg_tblspc/16400")).unwrap();
        std::os::unix::fs::symlink("PG_VERSION", root.join("link-to-version")).unwrap();
        set_mode(&root.join("base"), 0o750);
        set_mode(&root.join("empty"), 0o700);
        // Distinct times, set last (writing into a directory changes its time).
        let mut t = 1_600_000_000;
        for e in walk(root) {
            t += 1000;
            rustix::fs::utimensat(rustix::fs::CWD, &e, &times(t), rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
    }

    fn walk(root: &Path) -> Vec<PathBuf> {
        let mut all = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p.clone());
                }
                all.push(p);
            }
        }
        // Files first, then directories deepest first.
        all.sort_by_key(|p| {
            (std::fs::symlink_metadata(p).unwrap().is_dir(), std::cmp::Reverse(p.components().count()))
        });
        all
    }

    /// Feeds `archive` in pieces of the given sizes (cycled).
    fn unpack_in_pieces(archive: &[u8], pieces: &[usize], dir: &Path, threads: Threads) -> Result<Unpacked> {
        unpack_stream(dir, threads, |sink| {
            let mut pos = 0;
            let mut i = 0;
            while pos < archive.len() {
                let n = pieces[i % pieces.len()].min(archive.len() - pos);
                sink(archive[pos..pos + n].to_vec())?;
                pos += n;
                i += 1;
            }
            Ok(())
        })
    }

    #[test]
    fn unpacks_gnu_ustar_and_v7_archives_exactly_as_tar_does_in_any_piece_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        source(&src);
        let mut n = 0;
        for format in ["gnu", "ustar", "v7"] {
            // The small archive leaves out the file larger than the write-back step, so it
            // can be fed byte by byte.
            for (small, pieces_list) in [
                (false, vec![vec![1 << 20], vec![511, 1024, 7, 65_536, 513], vec![usize::MAX]]),
                (true, vec![vec![1], vec![512], vec![100_000]]),
            ] {
                let archive = tmp.path().join(format!("{format}-{small}.tar"));
                let mut c = Command::new("tar");
                c.args(["-c", "-f"]).arg(&archive).arg(format!("--format={format}"));
                if format != "gnu" {
                    // ustar and v7 cannot hold the 150-byte name.
                    c.arg("--exclude=xxxxx*");
                }
                if small {
                    c.arg("--exclude=1008");
                }
                run(c.arg("-C").arg(&src).arg("."));
                let reference = tmp.path().join(format!("{format}-{small}-tar"));
                std::fs::create_dir(&reference).unwrap();
                run(Command::new("tar").args(["-x", "-p", "-f"]).arg(&archive).arg("-C").arg(&reference));
                let want = coffer_testkit::tree::describe(&reference, true);
                assert!(want.len() >= 15, "{want:?}");
                let data = std::fs::read(&archive).unwrap();
                for pieces in pieces_list {
                    n += 1;
                    let dir = tmp.path().join(format!("out{n}"));
                    std::fs::create_dir(&dir).unwrap();
                    let threads = Threads { decoders: 1, writers: 1 + n % 3, syncers: 1 + n % 4 };
                    let got = unpack_in_pieces(&data, &pieces, &dir, threads).unwrap();
                    assert!(got.files >= 11 && got.symlinks == 2 && got.dirs >= 6, "{got:?}");
                    assert_eq!(
                        coffer_testkit::tree::describe(&dir, true),
                        want,
                        "{format}, small {small}, pieces {pieces:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_members_outside_the_target_and_unsupported_types_naming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |name: &str, kind: u8, link: &str| {
            let mut b = [0u8; 512];
            b[..name.len()].copy_from_slice(name.as_bytes());
            b[100..107].copy_from_slice(b"0000644");
            b[108..115].copy_from_slice(b"0000000");
            b[116..123].copy_from_slice(b"0000000");
            b[124..135].copy_from_slice(b"00000000000");
            b[136..147].copy_from_slice(b"00000000000");
            b[156] = kind;
            b[157..157 + link.len()].copy_from_slice(link.as_bytes());
            b[257..263].copy_from_slice(b"ustar\0");
            b[263..265].copy_from_slice(b"00");
            b[148..156].copy_from_slice(b"        ");
            let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
            b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            b.to_vec()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (mk("../escape", b'0', ""), "outside the target"),
            (mk("/abs", b'0', ""), "outside the target"),
            ([mk("l", b'2', "/tmp"), mk("l/x", b'0', "")].concat(), "under a symbolic link"),
            (mk("fifo", b'6', ""), "a fifo"),
            (
                {
                    let mut b = mk("bad", b'0', "");
                    b[0] = b'c';
                    b
                },
                "checksum mismatch",
            ),
        ];
        for (i, (archive, want)) in cases.into_iter().enumerate() {
            let dir = tmp.path().join(format!("t{i}"));
            std::fs::create_dir(&dir).unwrap();
            let e = unpack_in_pieces(&archive, &[300], &dir, Threads::default()).unwrap_err();
            assert!(matches!(e, TarError::Format { .. }) && e.to_string().contains(want), "{e}");
        }
        // A directory member where the archive made a symbolic link: refused, and nothing
        // is changed through the link.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = tmp.path().join("through-link");
        std::fs::create_dir(&dir).unwrap();
        let archive = [mk("d", b'2', outside.to_str().unwrap()), mk("d/", b'5', "")].concat();
        let e = unpack_in_pieces(&archive, &[512], &dir, Threads::default()).unwrap_err();
        assert!(e.to_string().contains("cannot create directory"), "{e}");
        assert_eq!(std::fs::metadata(&outside).unwrap().mode() & 0o777, 0o700);
        // Truncated inside a member's data.
        let mut archive = mk("f", b'0', "");
        archive[124..135].copy_from_slice(b"00000001000");
        archive[148..156].copy_from_slice(b"        ");
        let sum: u32 = archive.iter().map(|&c| u32::from(c)).sum();
        archive[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        archive.extend_from_slice(&[7; 100]);
        let dir = tmp.path().join("trunc");
        std::fs::create_dir(&dir).unwrap();
        let e = unpack_in_pieces(&archive, &[4096], &dir, Threads::default()).unwrap_err();
        assert!(e.to_string().contains("ends inside"), "{e}");
    }

    /// A header block for member `name` of type `kind` linking to `link`, with `size` bytes.
    fn member(name: &str, kind: u8, link: &str, size: usize) -> Vec<u8> {
        let mut b = [0u8; 512];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0000000");
        b[116..123].copy_from_slice(b"0000000");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"00000000000");
        b[156] = kind;
        b[157..157 + link.len()].copy_from_slice(link.as_bytes());
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b.to_vec()
    }

    /// A regular file member holding `data`.
    fn file_member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut m = member(name, b'0', "", data.len());
        m.extend_from_slice(data);
        m.resize(m.len().next_multiple_of(512), 0);
        m
    }

    /// Issue 11: an archive from a forged `pg-base` snapshot cannot write outside the target
    /// through hard links (to `..`, an absolute name, or beneath a symlink of the archive),
    /// nested `..`, or a symlink followed by members beneath it (also under another name: a
    /// hard link to it, which wrote outside before parents were created one at a time); each
    /// is refused naming the member, and the directories around the target stay as they were.
    #[test]
    fn forged_archives_write_nothing_outside_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        let out = outside.to_str().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            ([file_member("f", b"x"), member("h", b'1', "../outside/secret", 0)].concat(), "outside the target"),
            (member("h", b'1', &format!("{out}/secret"), 0), "outside the target"),
            ([member("l", b'2', out, 0), member("h", b'1', "l/secret", 0)].concat(), "under a symbolic link"),
            (file_member("d/../../outside/new", b"pwned"), "outside the target"),
            (file_member("./../outside/new", b"pwned"), "outside the target"),
            ([member("l", b'2', out, 0), file_member("l/new", b"pwned")].concat(), "under a symbolic link"),
            ([member("l", b'2', out, 0), member("l/sub/", b'5', "", 0)].concat(), "under a symbolic link"),
            ([member("d/l", b'2', out, 0), file_member("d/./l/new", b"pwned")].concat(), "under a symbolic link"),
            // A hard link to the archive's symlink is that symlink under another name.
            (
                [member("l", b'2', out, 0), member("h", b'1', "l", 0), file_member("h/new", b"pwned")].concat(),
                "lies under \"h\", which is not a directory",
            ),
            (
                [member("l", b'2', out, 0), member("h", b'1', "l", 0), member("h2", b'1', "h/secret", 0)].concat(),
                "which is not in a directory of the archive",
            ),
        ];
        for (i, (mut archive, want)) in cases.into_iter().enumerate() {
            archive.extend_from_slice(&[0; 1024]);
            let dir = tmp.path().join(format!("t{i}"));
            std::fs::create_dir(&dir).unwrap();
            let e = unpack_in_pieces(&archive, &[512], &dir, Threads::default()).unwrap_err();
            assert!(matches!(e, TarError::Format { .. }) && e.to_string().contains(want), "case {i}: {e}");
            let mut names: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            assert_eq!(names, ["secret"], "case {i} wrote outside the target");
            assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
            assert_eq!(std::fs::metadata(outside.join("secret")).unwrap().nlink(), 1, "case {i} linked to it");
        }
    }
}
