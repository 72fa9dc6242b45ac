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
//! every thread's arena handed the pages of its freed buffers (~1 MiB chunks and blobs) back
//! to the kernel and faulted fresh zeroed pages in for the next one: every byte backed up or
//! restored cost a page fault. A trim threshold of 8 MiB keeps a few buffers' worth per
//! arena. Backup of 1 GiB of large files: system time 3.9 → 1.6 s, peak RSS 105 → 116 MiB
//! (16 MiB and more bought no less system time and up to 150 MiB). Restore from a local
//! vault (blob ranges, not whole packs): 1 GiB of large files 265 000 → 22 000 page faults,
//! CPU 2.2–2.4 → 1.4–1.5 s; the 1 GiB tree 2.1–2.3 → 1.5 s of system time; peak RSS 75 → 75
//! and 75 → 80 MiB. `verify --read-data` of the same: system time halved, RSS unchanged. An
//! earlier measurement, when restores cached whole packs, saw a restore's peak grow by
//! 10 MiB for little saved; reading ranges, the buffers are blobs and the growth is gone.
//!
//! This is the only `unsafe` in Coffer (every other crate forbids it).

/// Sets glibc's mmap and trim thresholds (no effect on other C libraries).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called once, at the start of
    // `main`, before any other thread exists, with a valid parameter and value.
    #[allow(unsafe_code, reason = "the one FFI call that tunes glibc's allocator")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}
