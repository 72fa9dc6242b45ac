//! Tuning of the C allocator, for memory that stays bounded.
//!
//! Backup and restore allocate and free buffers of 1–16 MiB (chunks, sealed blobs, packs) on
//! several threads. glibc serves a freed large buffer's successors from its arenas instead of
//! fresh mappings once it has seen one freed (its mmap threshold grows up to 32 MiB), and the
//! arenas then keep that memory: a 1.4 GB restore peaked at 330 MiB resident, a backup at
//! 185 MiB. A fixed threshold of 4 MiB keeps packs and the largest chunks in their own
//! mappings, returned to the system when freed (measured: restore 158 MiB, backup 89 MiB, for
//! about 1 s more system time per 1.4 GB in page faults). mimalloc was tried instead and
//! kept even more (backup 580 MiB).
//!
//! Fixing the mmap threshold also freezes glibc's trim threshold at its 128 KiB default, so
//! every thread's arena handed the pages of its freed chunks (~1 MiB each) back to the
//! kernel and faulted fresh zeroed pages in for the next one: half of a backup's CPU time
//! was system time (1 GiB of large files: 4.1 s user, 3.9 s system). A trim threshold of
//! 8 MiB keeps a few chunks' worth per arena: system time 1.6 s, peak RSS 105 → 116 MiB
//! (large files) and 91 → 123 MiB (the 1 GiB tree); 16 MiB and more bought no less system
//! time and up to 150 MiB. Only backups get it: a restore's peak RSS, already close to
//! restic's, grew by 10 MiB with it (tree: 131–146 → 141–157 MiB), for less system time
//! saved (a restore frees fewer, larger buffers).
//!
//! This is the only `unsafe` in Coffer (every other crate forbids it).

/// Sets glibc's mmap threshold, and for a backup (`backup`: files or PostgreSQL) its trim
/// threshold (no effect on other C libraries).
pub fn tune(backup: bool) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called once, at the start of
    // `main`, before any other thread exists, with a valid parameter and value.
    #[allow(unsafe_code, reason = "the one FFI call that tunes glibc's allocator")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        if backup {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = backup;
}
