# Sourced by the benchmarks: dropping the page cache before a timed step, and the primer.
#
# The first program to fill the page cache after a pause pays for it: on this VM (free page
# reporting hands idle guest memory back to the host) the first tool of a step spent 1-2 s
# more system time per GiB than the same tool second (large first backup, same binary: Coffer
# first 3.45 s, 2.8 s system; second 2.69 s, 1.7 s; restic first 5.54 s, 1.75 s; second
# 5.04 s, 0.87 s). So every step starts right after a primer file has been read through the
# page cache and dropped again: each tool then finds the same recently used memory. See
# bench/README.md, "The first tool of a step".

# caches_init FILE MIB: sets CAN_DROP (1 when /proc/sys/vm/drop_caches is writable) and, if
# so, writes a primer of MIB MiB to FILE.
caches_init() {
    PRIMER=$1
    CAN_DROP=0
    if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
        CAN_DROP=1
        dd if=/dev/zero of="$PRIMER" bs=1M count="$2" status=none
    fi
}

# drop_caches: sync; then, when allowed, drop the page cache, read the primer, drop again.
drop_caches() {
    sync
    if ((CAN_DROP)); then
        echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
        cat "$PRIMER" >/dev/null
        echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    fi
}
