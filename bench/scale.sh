#!/usr/bin/env bash
# Coffer against restic at scale (issue 16): many files, and a long history on S3; prints a table.
#
#   bench/scale.sh [--quick] [--only files|history] [--files N,…] [--snapshots N]
#                  [--restic-snapshots N] [--loopfs-from N] [--no-drop] [--keep] [--dir DIR]
#                  [--coffer-bin PATH] [--data DIR] [--coffer-init-args ARGS] [--server moto|localstack]
#
#   --quick              a sanity run: --files 20000 --snapshots 200 --restic-snapshots 50
#   --only PART          run one part (files or history) instead of both
#   --files N,…          the many-files trees, by number of files [default: 500000,5000000]
#   --snapshots N        Coffer's history length [default: 2000]
#   --restic-snapshots N restic's history length [default: 300: restic takes ~1 s per backup
#                        here, 2 000 of them would take most of an hour]
#   --loopfs-from N      trees of N files or more are generated small (--avg-bytes 250) on a
#                        loop-mounted ext4 made for small files [default: 1000000]
#   --no-drop            do not drop the page cache before the steps (it slows whatever else
#                        the machine runs, e.g. another benchmark)
#   --keep               keep the scratch directory at the end
#   --dir DIR            scratch directory [default: target/bench-scale]. It must be new, empty,
#                        or one this script made: everything in it is deleted first.
#   --coffer-bin PATH    benchmark this coffer binary instead of building the working tree
#   --data DIR           use the existing tree DIR (read-only, e.g. /work/scale-data/mail500k)
#                        for the tree of as many files as it holds (without --files: the only
#                        tree) instead of generating it
#   --steps LIST         files part: the steps after init and backup, of ls,restore,verify,
#                        read-data [default: all four] (e.g. --steps verify,read-data to finish
#                        a run that was stopped after its restores)
#   --coffer-init-args ARGS  files part: also run Coffer on a repository made with
#                        `coffer init ARGS` (e.g. --small-file-dictionary), as tool "coffer+init"
#   --server S           history part: the S3 server, moto or localstack [default: moto]. moto
#                        copies the whole bucket on every version listing (its time and memory
#                        grow with the history: ~22 GB at 760 snapshots); LocalStack does not
#
# Files part: per tree, `bench/scale_gen.py DST N` (a deterministic Maildir spool, ~2 100
# bytes a message: 500 000 files = 1.05 GB) on a loop-mounted ext4 image of its own. 5 000 000
# such files would cost 20 GB per copy on this disk (a 4 KiB block each), so trees of
# --loopfs-from files or more are generated with --avg-bytes 250 (short headers) on an image
# made with inline_data, 512-byte inodes and 1 KiB blocks: a message of up to ~380 bytes
# lives in its inode (5 000 000 files ≈ 3 GB per copy). Every restore goes to a new image of
# the same kind, unmounted and deleted after its check (an `rm -rf` of 500 000 files on this
# machine's discard-mounted disk takes many minutes, and ext4 without a journal makes file
# creation after mass deletion slow). Steps per tree, Coffer on a local vault and restic on
# a local repository (both on the root file system): init, backup, `ls` of the whole
# snapshot, restore (checked against the source outside the timing: count and bytes, and
# diff -r up to 1 000 000 files), verify / `check`, verify --read-data / `check --read-data`.
# Each step gets a dropped page cache and the primer (bench/caches.sh) when the kernel allows.
# Printed: seconds, peak RSS (`/usr/bin/time -f %M`), repository size (`du -sb`), ratios
# coffer/restic, peak RSS per file and per blob (blob counts from `coffer stats --json` and
# `restic stats --mode raw-data --json`).
#
# History part: moto on loopback, behind a byte-counting proxy (bench/scale_helper.py). A
# tree of 5 small files, one changed before each backup; --snapshots backups for Coffer
# (Object Lock bucket, writer keys) and --restic-snapshots for restic (its own bucket). Every
# backup's time, requests and bytes go to history.tsv; at #2 and #N (and at #10, #100,
# #1000 on the way), `backup` (that backup itself), `snapshots`, `restore latest` and
# `verify` (structure) / `check` are recorded with requests by kind. Both tools keep their
# local caches (in the scratch directory) across the history, as on a real host.
#
# Results: target/bench-results/scale-<time>/ (meta.txt, results.tsv, facts.tsv,
# history.tsv, requests.txt, logs/, report.txt). How to read them: bench/README.md.
# Needs root (loop mount, page cache drop), restic, the moto venv (.ci/s3-venv.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=scale.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

QUICK=0
NO_DROP=0
KEEP=0
SCRATCH=$ROOT/target/bench-scale
COFFER_BIN=
DATA=
PARTS=(files history)
FILES_LIST=
SNAPSHOTS=
RESTIC_SNAPSHOTS=
LOOPFS_FROM=1000000
COFFER_INIT_ARGS=
SERVER=moto
STEPS=ls,restore,verify,read-data

while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --only)
        case ${2:-} in
        files | history) PARTS=("$2") ;;
        *) die "--only takes files or history, not '${2:-}'" ;;
        esac
        shift
        ;;
    --files) FILES_LIST=$2; shift ;;
    --snapshots) SNAPSHOTS=$2; shift ;;
    --restic-snapshots) RESTIC_SNAPSHOTS=$2; shift ;;
    --loopfs-from) LOOPFS_FROM=$2; shift ;;
    --no-drop) NO_DROP=1 ;;
    --keep) KEEP=1 ;;
    --dir) SCRATCH=$2; shift ;;
    --coffer-bin) COFFER_BIN=$2; shift ;;
    --data) DATA=$(realpath "$2"); shift ;;
    --coffer-init-args) COFFER_INIT_ARGS=$2; shift ;;
    --steps) STEPS=$2; shift ;;
    --server)
        case ${2:-} in
        moto | localstack) SERVER=$2 ;;
        *) die "--server takes moto or localstack, not '${2:-}'" ;;
        esac
        shift
        ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

SUFFIX=
((QUICK)) && SUFFIX=-quick
if [[ -z $FILES_LIST ]]; then
    if [[ -n $DATA ]]; then FILES_LIST=data; elif ((QUICK)); then FILES_LIST=20000; else FILES_LIST=500000,5000000; fi
fi
[[ -n $SNAPSHOTS ]] || { ((QUICK)) && SNAPSHOTS=200 || SNAPSHOTS=2000; }
[[ -n $RESTIC_SNAPSHOTS ]] || { ((QUICK)) && RESTIC_SNAPSHOTS=50 || RESTIC_SNAPSHOTS=300; }
for n in "$SNAPSHOTS" "$RESTIC_SNAPSHOTS" "$LOOPFS_FROM"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "snapshot counts and --loopfs-from must be positive numbers, not '$n'"
done
((SNAPSHOTS >= 2 && RESTIC_SNAPSHOTS >= 2)) || die "a history needs at least 2 snapshots"
[[ -z $DATA || -d $DATA ]] || die "--data $DATA is not a directory"
IFS=, read -ra _steps <<<"$STEPS"
for _s in "${_steps[@]}"; do
    [[ $_s =~ ^(ls|restore|verify|read-data)$ ]] || die "--steps takes ls, restore, verify, read-data, not '$_s'"
done
# want_step NAME: whether --steps asked for NAME
want_step() { [[ ,$STEPS, == *",$1,"* ]]; }

PW=bench-password-not-secret
helper() { python3 "$ROOT/bench/scale_helper.py" "$@"; }

command -v restic >/dev/null || die "restic is not installed (apt-get install restic)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is not installed (apt-get install time)"

SCRATCH=$(prepare_scratch "$SCRATCH")
RESULTS=$ROOT/target/bench-results/scale-$(date -u +%Y%m%dT%H%M%SZ)$SUFFIX
mkdir -p "$RESULTS/logs"

PROXY_PID=
MOUNTS=()
cleanup() {
    stop_group "$PROXY_PID"
    stop_group "$MOTO_PID"
    local m
    for m in "${MOUNTS[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    if ((KEEP)); then say "kept scratch data in $SCRATCH"; else rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

COFFER_SRC=$(build_coffer "$COFFER_BIN")
if [[ $COFFER_SRC == "$ROOT/target/release/coffer" ]]; then BUILT="working tree at $(coffer_rev)"; else BUILT="$COFFER_SRC"; fi
# A private copy: a rebuild of the working tree during the run does not change what is measured.
cp "$COFFER_SRC" "$SCRATCH/bin/coffer"
COFFER=$SCRATCH/bin/coffer

# Every tool's client-side cache goes to the scratch directory (not counted as repository).
export RESTIC_PASSWORD=$PW RESTIC_CACHE_DIR=$SCRATCH/cache/restic COFFER_PASSWORD=$PW
export XDG_CACHE_HOME=$SCRATCH/cache/xdg COFFER_CACHE_DIR=$SCRATCH/cache/coffer AWS_EC2_METADATA_DISABLED=true
unset RESTIC_REPOSITORY COFFER_REPO COFFER_PASSWORD_FILE COFFER_ROLE COFFER_CREDENTIALS RESTIC_COMPRESSION

# shellcheck source=bench/caches.sh
source "$ROOT/bench/caches.sh"
# (the history part does not drop caches: no primer for it alone)
if ((NO_DROP)) || [[ ${PARTS[*]} == history ]]; then CAN_DROP=0; else caches_init "$SCRATCH/primer" 1024; fi
if ((NO_DROP)); then
    CACHE_NOTE="page cache NOT dropped (--no-drop): source read warm"
elif ((CAN_DROP)); then
    CACHE_NOTE="files part: page cache dropped and a 1 GiB primer read before every step; history part: warm (tiny tree)"
else
    CACHE_NOTE="page cache NOT dropped (not writable here): source read warm"
fi

{
    echo "Coffer vs restic at scale — bench/scale.sh${SUFFIX/-/ --}"
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine:   $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -r), scratch on $(df -P "$SCRATCH" | awk 'NR==2{print $1}')"
    echo "coffer:    $("$COFFER" --version 2>/dev/null || echo coffer) ($BUILT), defaults"
    echo "restic:    $(restic version | head -1); repository v2, --compression auto"
    [[ -z $COFFER_INIT_ARGS ]] || echo "coffer+init: the same coffer on a repository made with \`coffer init $COFFER_INIT_ARGS\`"
    echo "caches:    $CACHE_NOTE"
    echo "load avg:  at start $(cut -d' ' -f1-3 /proc/loadavg) (others' builds share the 2 cores: times are noisy; RSS, bytes and requests are not)"
} >"$RESULTS/meta.txt"
cat "$RESULTS/meta.txt" >&2

printf 'part\tset\tstep\ttool\tseconds\tuser_s\tsys_s\trss_kib\trequests\tdown_bytes\tup_bytes\trepo_bytes\tload1\tothers_cpu_pct\tstatus\n' >"$RESULTS/results.tsv"
: >"$RESULTS/facts.tsv"
fact() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS/facts.tsv"; } # PART SET TOOL KEY VALUE

# run_step PART SET STEP TOOL REPO_DIR CMD...: runs CMD under /usr/bin/time and records a row
# (REPO_DIR "-": no size). With a server running (SERVER_LOG set), the requests and bytes of
# the step are counted. Sets STEP_RC and STEP_SECS.
SERVER_LOG=
run_step() {
    local part=$1 set=$2 step=$3 tool=$4 repo=$5
    shift 5
    local log="$RESULTS/logs/$part.$set.${step//[ #]/-}.$tool.log" tf="$RESULTS/time.out"
    local load1 j0 j1 t0 t1 rc=0 rss user sys repo_bytes=- from=0 pfrom=0 reqs=- detail down=- up=-
    [[ $part == files ]] && drop_caches
    if [[ -n $SERVER_LOG ]]; then
        from=$(($(log_lines "$SERVER_LOG") + 1))
        pfrom=$(($(log_lines "$PROXY_LOG") + 1))
    fi
    load1=$(cut -d' ' -f1 /proc/loadavg)
    j0=$(busy_jiffies)
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    [[ $part == files ]] && sync
    t1=$(date +%s%N)
    j1=$(busy_jiffies)
    read -r rss user sys <<<"$(tail -n1 "$tf")"
    if [[ -n $SERVER_LOG ]]; then
        sleep 0.2 # the proxy logs a connection when it has closed it
        read -r reqs detail <<<"$(count_requests "$SERVER_LOG" "$from" "$(log_lines "$SERVER_LOG")")"
        read -r up down <<<"$(helper bytes "$PROXY_LOG" "$pfrom")"
        printf '%s/%s/%s: %s\n' "$part" "$tool" "$step" "$detail" >>"$RESULTS/requests.txt"
    fi
    [[ $repo != - && -e $repo ]] && repo_bytes=$(du -sb "$repo" | cut -f1)
    local status=ok
    STEP_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    ((rc == 0)) || status="FAILED (exit $rc, see logs/$(basename "$log"))"
    STEP_RC=$rc
    STEP_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u + s}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$part" "$set" "$step" "$tool" "$STEP_SECS" \
        "$user" "$sys" "$rss" "$reqs" "$down" "$up" "$repo_bytes" "$load1" \
        "$(others_cpu_pct "$j0" "$j1" "$user" "$sys" "$STEP_SECS")" "$status" >>"$RESULTS/results.tsv"
    printf '   %-8s %-10s %-17s %-7s %8ss  rss %7s KiB  %s%s\n' "$part" "$set" "$step" "$tool" "$STEP_SECS" "$rss" \
        "$([[ $reqs != - ]] && echo "$reqs requests, $down bytes read  ")" "$status" >&2
    return 0
}

# mark_status PART SET STEP TOOL TEXT: append TEXT to the status of a recorded row
mark_status() {
    python3 - "$RESULTS/results.tsv" "$@" <<'EOF'
import sys
path, part, dset, step, tool, text = sys.argv[1:]
out = []
for l in open(path).read().splitlines():
    f = l.split("\t")
    if f[:4] == [part, dset, step, tool]:
        f[-1] = text if f[-1] == "ok" else f[-1] + "; " + text
    out.append("\t".join(f))
open(path, "w").write("\n".join(out) + "\n")
EOF
}

# ------------------------------------------------------------------ files part
# make_loopfs KIND FILES BYTES DIR: a new sparse ext4 image (SCRATCH/DIR's name.img) for a
# tree of FILES files and BYTES bytes, mounted on DIR. KIND "small": inline_data, 512-byte
# inodes, 1 KiB blocks (a file of up to ~380 bytes lives in its inode); "plain": the usual
# 4 KiB blocks. No journal (as this machine's root file system), no discard.
make_loopfs() {
    local kind=$1 files=$2 bytes=$3 dir=$4 img inodes
    img=$SCRATCH/$(basename "$dir").img
    inodes=$((files + files / 500 + 10000))
    case $kind in
    small)
        truncate -s $((inodes * 512 + files * 1024 + (1 << 30))) "$img"
        mkfs.ext4 -q -F -O inline_data,^has_journal -I 512 -b 1024 -N "$inodes" -m 0 "$img" ||
            die "mkfs.ext4 of $img failed"
        ;;
    plain)
        truncate -s $((bytes + files * 4096 + inodes * 256 + (1 << 30))) "$img"
        mkfs.ext4 -q -F -O ^has_journal -N "$inodes" -m 0 "$img" || die "mkfs.ext4 of $img failed"
        ;;
    esac
    mkdir -p "$dir"
    # noinit_itable: the kernel would otherwise zero the whole inode table in the background
    # (GBs written into the sparse image); the inodes in use are written anyway.
    mount -o loop,noatime,noinit_itable "$img" "$dir" || die "cannot loop-mount $img (needs root and loop devices)"
    MOUNTS+=("$dir")
}
# drop_loopfs DIR: unmount DIR and delete its image: 500 000 files gone in a second, where an
# `rm -rf` on this machine's root file system (mounted with discard) takes many minutes.
drop_loopfs() {
    umount "$1" || die "cannot unmount $1"
    rm -f "$SCRATCH/$(basename "$1").img"
    rmdir "$1"
}

files_set() { # N
    local n=$1 set src desc files bytes kind=plain tool t0
    if [[ $n == data ]]; then
        src=$DATA
        read -r files bytes <<<"$(helper size "$src")"
        n=$files
        desc="--data $DATA"
    elif [[ -n $DATA ]] && read -r files bytes <<<"$(helper size "$DATA")" && ((files == n)); then
        src=$DATA
        desc="--data $DATA"
    elif ((n >= LOOPFS_FROM)); then
        kind=small
        make_loopfs small "$n" 0 "$SCRATCH/tree-$n"
        src=$SCRATCH/tree-$n/mail$n
        say "generating $n small files in $src (loop-mounted ext4, inline_data)"
        t0=$(date +%s)
        python3 "$ROOT/bench/scale_gen.py" "$src" "$n" --avg-bytes 250 >"$RESULTS/logs/gen-$n.log"
        desc="scale_gen.py $n --avg-bytes 250 (short headers), generated in $(($(date +%s) - t0)) s on a loop-mounted ext4 made for small files (inline_data, 512-byte inodes, 1 KiB blocks); each restore on a new one"
    else
        make_loopfs plain "$n" $((n * 2100 * 2)) "$SCRATCH/tree-$n"
        src=$SCRATCH/tree-$n/mail$n
        say "generating $n files in $src"
        t0=$(date +%s)
        python3 "$ROOT/bench/scale_gen.py" "$src" "$n" >"$RESULTS/logs/gen-$n.log"
        desc="scale_gen.py $n (default sizes), generated in $(($(date +%s) - t0)) s on a loop-mounted ext4"
    fi
    # (an existing tree is counted above already)
    [[ $src == "$DATA" ]] || read -r files bytes <<<"$(helper size "$src")"
    [[ $files =~ ^[0-9]+$ && $bytes =~ ^[0-9]+$ ]] || die "cannot count the files of $src"
    # an existing tree of small files (e.g. one generated earlier with --avg-bytes 250) is
    # restored onto file systems made for small files, as a generated one
    if [[ $src == "$DATA" ]] && ((bytes < files * 600)); then
        kind=small
        desc="$desc (small files: restores on loop-mounted ext4 made for small files)"
    fi
    set=${n}files
    desc="$files files, $bytes bytes; $desc"
    fact files "$set" - files "$files"
    fact files "$set" - bytes "$bytes"
    fact files "$set" - desc "$desc"
    echo "files:     $set: $desc" >>"$RESULTS/meta.txt"
    say "files part: $set: $desc"

    local repos=$SCRATCH/repo-$set tools=(coffer restic) log dst rfiles rbytes
    local init_args=()
    [[ -z $COFFER_INIT_ARGS ]] || tools=(coffer coffer+init restic)
    read -r -a init_args <<<"$COFFER_INIT_ARGS"
    mkdir -p "$repos"
    for tool in "${tools[@]}"; do
        case $tool in
        coffer) run_step files "$set" init coffer "$repos/$tool" "$COFFER" init --repo "$repos/$tool" ;;
        coffer+init) run_step files "$set" init "$tool" "$repos/$tool" "$COFFER" init "${init_args[@]}" --repo "$repos/$tool" ;;
        restic) run_step files "$set" init restic "$repos/$tool" restic -r "$repos/$tool" init --repository-version 2 ;;
        esac
    done
    for tool in "${tools[@]}"; do
        case $tool in
        coffer*) run_step files "$set" backup "$tool" "$repos/$tool" "$COFFER" backup --repo "$repos/$tool" "$src" ;;
        restic) run_step files "$set" backup restic "$repos/$tool" restic -r "$repos/$tool" --compression auto backup "$src" ;;
        esac
        fact files "$set" "$tool" repo_bytes "$(du -sb "$repos/$tool" | cut -f1)"
        case $tool in
        coffer*)
            "$COFFER" stats --repo "$repos/$tool" --json >"$RESULTS/logs/files.$set.stats.$tool.json" 2>&1 || true
            fact files "$set" "$tool" blobs "$(helper json "$RESULTS/logs/files.$set.stats.$tool.json" blobs)"
            fact files "$set" "$tool" packs "$(helper json "$RESULTS/logs/files.$set.stats.$tool.json" packs)"
            ;;
        restic)
            restic -r "$repos/$tool" stats --mode raw-data --json >"$RESULTS/logs/files.$set.stats.restic.json" 2>&1 || true
            fact files "$set" restic blobs "$(helper json "$RESULTS/logs/files.$set.stats.restic.json" total_blob_count)"
            ;;
        esac
    done

    # ls: the listing goes to the log; only its line count is kept (it is as long as the tree)
    want_step ls && for tool in "${tools[@]}"; do
        case $tool in
        coffer*) run_step files "$set" ls "$tool" - "$COFFER" ls --repo "$repos/$tool" latest ;;
        restic) run_step files "$set" ls restic - restic -r "$repos/$tool" ls latest ;;
        esac
        log=$RESULTS/logs/files.$set.ls.$tool.log
        fact files "$set" "$tool" ls_lines "$(wc -l <"$log")"
        ((STEP_RC == 0)) && : >"$log"
    done

    # Each restore goes to a new loop-mounted ext4 (of the tree's kind), unmounted and
    # deleted after the check: no restore meets another's deleted inodes (ext4 without a
    # journal scans recently freed inodes when it allocates, see bench/files.sh), and no
    # 500 000-file `rm -rf` on the discard-mounted root file system.
    want_step restore && for tool in "${tools[@]}"; do
        dst=$SCRATCH/restore-$tool
        make_loopfs "$kind" "$files" "$bytes" "$dst"
        mkdir "$dst/r" # not its root: lost+found is there
        case $tool in
        coffer*) run_step files "$set" restore "$tool" - "$COFFER" restore --repo "$repos/$tool" latest --target "$dst/r" ;;
        restic) run_step files "$set" restore restic - restic -r "$repos/$tool" restore latest --target "$dst/r" ;;
        esac
        # both restore absolute paths below the target
        read -r rfiles rbytes <<<"$(helper size "$dst/r$src" 2>/dev/null || echo "0 0")"
        if ((rfiles != files || rbytes != bytes)); then
            mark_status files "$set" restore "$tool" "RESTORED $rfiles files, $rbytes bytes"
            say "$tool: restored $rfiles files, $rbytes bytes; the source has $files, $bytes"
        elif ((files <= 1000000)) && ! diff -rq --no-dereference "$src" "$dst/r$src" >"$RESULTS/logs/files.$set.restore-diff.$tool.log" 2>&1; then
            mark_status files "$set" restore "$tool" "RESTORED DATA DIFFERS (logs/files.$set.restore-diff.$tool.log)"
            say "$tool: restored data differs from the source"
        fi
        drop_loopfs "$dst"
    done

    want_step verify && for tool in "${tools[@]}"; do
        case $tool in
        coffer*) run_step files "$set" verify "$tool" "$repos/$tool" "$COFFER" verify --repo "$repos/$tool" ;;
        restic) run_step files "$set" verify restic "$repos/$tool" restic -r "$repos/$tool" check ;;
        esac
    done
    want_step read-data && for tool in "${tools[@]}"; do
        case $tool in
        coffer*) run_step files "$set" "verify read-data" "$tool" "$repos/$tool" "$COFFER" verify --repo "$repos/$tool" --read-data ;;
        restic) run_step files "$set" "verify read-data" restic "$repos/$tool" restic -r "$repos/$tool" check --read-data ;;
        esac
    done

    fact files "$set" coffer cache_bytes "$(du -sb "$XDG_CACHE_HOME" "$COFFER_CACHE_DIR" 2>/dev/null | awk '{s+=$1} END{print s+0}')"
    fact files "$set" restic cache_bytes "$(du -sb "$RESTIC_CACHE_DIR" 2>/dev/null | cut -f1)"
    rm -rf "$repos" "$RESTIC_CACHE_DIR" "$XDG_CACHE_HOME" "$COFFER_CACHE_DIR"
    [[ $src == "$DATA" ]] || drop_loopfs "$SCRATCH/tree-$n"
}

# ------------------------------------------------------------------ history part
# hist_change DIR K: the history tree is 5 files; backup K rewrites file K % 5 with text
# naming K, so each backup stores one new small blob, new trees and a snapshot.
hist_change() {
    local dir=$1 k=$2 i
    mkdir -p "$dir"
    for i in 0 1 2 3 4; do
        [[ -e $dir/note$i.txt ]] || lines "note $i: history benchmark line" $((40 * (i + 1))) >"$dir/note$i.txt"
    done
    lines "note $((k % 5)): changed before backup $k" $((40 * (k % 5 + 1))) >"$dir/note$((k % 5)).txt"
}
lines() { # TEXT N: TEXT on N lines (not `yes | head`: its SIGPIPE fails the pipeline)
    local out="" j
    for ((j = 0; j < $2; j++)); do out+=$1$'\n'; done
    printf '%s' "$out"
}

history_part() {
    SERVER_LOG=$RESULTS/logs/server.log
    PROXY_LOG=$RESULTS/logs/proxy.log
    case $SERVER in
    moto) moto_start "$SCRATCH/server" "$SERVER_LOG" ;;
    localstack) localstack_start "$SCRATCH/server" "$SERVER_LOG" ;;
    esac
    PROXY_PORT=$(free_port)
    : >"$PROXY_LOG"
    setsid python3 "$ROOT/bench/scale_helper.py" proxy "$PROXY_PORT" "$MOTO_PORT" "$PROXY_LOG" >"$RESULTS/logs/proxy.err" 2>&1 &
    PROXY_PID=$!
    local endpoint=http://127.0.0.1:$PROXY_PORT i
    for i in $(seq 100); do
        curl -sS -o /dev/null "$endpoint/" 2>/dev/null && break
        ((i < 100)) || die "the proxy does not answer; see $RESULTS/logs/proxy.err"
        sleep 0.1
    done
    local version
    case $SERVER in
    moto) version="moto $("$MOTO_VENV/moto/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null)" ;;
    localstack) version="LocalStack $("$MOTO_VENV/localstack/bin/python" -c 'import importlib.metadata as m; print(m.version("localstack-core"))' 2>/dev/null)" ;;
    esac
    echo "history:   $version on 127.0.0.1:$MOTO_PORT behind a byte-counting proxy on :$PROXY_PORT; coffer $SNAPSHOTS snapshots (Object Lock bucket, writer/reader keys), restic $RESTIC_SNAPSHOTS (plain bucket; fewer: restic takes ~1 s per backup)" >>"$RESULTS/meta.txt"
    moto_lock_bucket "$endpoint" coffer-bench "$RESULTS/logs/bucket.log"

    local c_repo="s3://coffer-bench/hist?endpoint=$endpoint&region=us-east-1"
    local writer=(env AWS_ACCESS_KEY_ID=coffer-writer AWS_SECRET_ACCESS_KEY=secret-of-writer "$COFFER")
    local reader=(env AWS_ACCESS_KEY_ID=coffer-reader AWS_SECRET_ACCESS_KEY=secret-of-reader "$COFFER")
    local restic=(env AWS_ACCESS_KEY_ID=restic AWS_SECRET_ACCESS_KEY=restic-secret restic -r "s3:$endpoint/restic-hist")
    local tree=$SCRATCH/hist/tree
    printf 'tool\tbackup\tseconds\trequests\tup_bytes\tdown_bytes\tcpu_s\n' >"$RESULTS/history.tsv"

    local tool n
    for tool in coffer restic; do
        if [[ $tool == coffer ]]; then n=$SNAPSHOTS; else n=$RESTIC_SNAPSHOTS; fi
        rm -rf "$SCRATCH/hist"
        case $tool in
        coffer) run_step history - "init #0" coffer - "${writer[@]}" init --repo "$c_repo" ;;
        restic) run_step history - "init #0" restic - "${restic[@]}" init --repository-version 2 ;;
        esac
        ((STEP_RC == 0)) || die "$tool init failed; see $RESULTS/logs"
        fact history - "$tool" snapshots "$n"
        say "history: $n backups with $tool"
        local k t0 t1 cpu from pfrom up down checkpoint failures=0
        for ((k = 1; k <= n; k++)); do
            hist_change "$tree" "$k"
            checkpoint=0
            case $k in 2 | 10 | 100 | 1000 | "$n") checkpoint=1 ;; esac
            from=$(($(log_lines "$SERVER_LOG") + 1))
            pfrom=$(($(log_lines "$PROXY_LOG") + 1))
            if ((checkpoint)); then
                case $tool in
                coffer) run_step history - "backup #$k" coffer - "${writer[@]}" backup --repo "$c_repo" "$tree" ;;
                restic) run_step history - "backup #$k" restic - "${restic[@]}" backup "$tree" ;;
                esac
                t1=$STEP_SECS
                cpu=$STEP_CPU
            else
                STEP_RC=0
                t0=$(date +%s%N)
                case $tool in
                coffer) /usr/bin/time -f '%U %S' -o "$SCRATCH/hist.time" "${writer[@]}" backup --repo "$c_repo" "$tree" >"$RESULTS/logs/history.backup.$tool.last.log" 2>&1 || STEP_RC=$? ;;
                restic) /usr/bin/time -f '%U %S' -o "$SCRATCH/hist.time" "${restic[@]}" backup "$tree" >"$RESULTS/logs/history.backup.$tool.last.log" 2>&1 || STEP_RC=$? ;;
                esac
                t1=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN{printf "%.3f", (b-a)/1e9}')
                # The process's own CPU (user + sys): what the machine's load moves least.
                cpu=$(tail -n1 "$SCRATCH/hist.time" | awk '{printf "%.2f", $1 + $2}')
            fi
            if ((STEP_RC != 0)); then
                failures=$((failures + 1))
                cp "$RESULTS/logs/history.backup.$tool.last.log" "$RESULTS/logs/history.backup.$tool.failed-$k.log" 2>/dev/null || true
                ((failures < 5)) || die "$tool: 5 backups of the history failed; see $RESULTS/logs"
            fi
            STEP_RC=0
            # Without the 0.2 s wait of run_step a connection closed late counts for the next
            # backup: each number is off by at most that, their sum is exact.
            read -r up down <<<"$(awk -v s="$pfrom" 'NR >= s {u += $1; d += $2} END {print u + 0, d + 0}' "$PROXY_LOG")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$k" "$t1" "$(($(log_lines "$SERVER_LOG") - from + 1))" "$up" "$down" "$cpu" >>"$RESULTS/history.tsv"
            if ((k % 100 == 0)); then say "$tool: backup #$k took ${t1}s, $(($(log_lines "$SERVER_LOG") - from + 1)) requests"; fi
            if ((checkpoint)); then
                local dst=$SCRATCH/hist/restore-$k
                case $tool in
                coffer)
                    # The backup a host makes once its last listing is older than
                    # --relist-after (a day by default): it lists index/ and snapshots/.
                    run_step history - "relist #$k" coffer - "${writer[@]}" backup --relist-after 0s --repo "$c_repo" "$tree"
                    run_step history - "snapshots #$k" coffer - "${reader[@]}" snapshots --repo "$c_repo"
                    run_step history - "restore #$k" coffer - "${reader[@]}" restore --repo "$c_repo" latest --target "$dst"
                    run_step history - "verify #$k" coffer - "${reader[@]}" verify --repo "$c_repo"
                    ;;
                restic)
                    run_step history - "snapshots #$k" restic - "${restic[@]}" snapshots
                    run_step history - "restore #$k" restic - "${restic[@]}" restore latest --target "$dst"
                    run_step history - "verify #$k" restic - "${restic[@]}" check
                    ;;
                esac
                diff -rq "$tree" "$dst$tree" >/dev/null 2>&1 || mark_status history - "restore #$k" "$tool" "RESTORED DATA DIFFERS"
                rm -rf "$dst"
            fi
        done
        fact history - "$tool" failures "$failures"
    done
    fact history - coffer cache_bytes "$(du -sb "$XDG_CACHE_HOME" "$COFFER_CACHE_DIR" 2>/dev/null | awk '{s+=$1} END{print s+0}')"
    fact history - restic cache_bytes "$(du -sb "$RESTIC_CACHE_DIR" 2>/dev/null | cut -f1)"
    echo "history:   client caches at the end: coffer $(du -scb "$XDG_CACHE_HOME" "$COFFER_CACHE_DIR" 2>/dev/null | tail -1 | cut -f1) bytes, restic $(du -sb "$RESTIC_CACHE_DIR" 2>/dev/null | cut -f1) bytes" >>"$RESULTS/meta.txt"
    stop_group "$PROXY_PID"
    PROXY_PID=
    stop_group "$MOTO_PID"
    MOTO_PID=
    SERVER_LOG=
    rm -rf "$RESTIC_CACHE_DIR" "$XDG_CACHE_HOME" "$COFFER_CACHE_DIR"
}

for part in "${PARTS[@]}"; do
    case $part in
    files)
        IFS=, read -r -a sets <<<"$FILES_LIST"
        for n in "${sets[@]}"; do
            [[ $n == data || $n =~ ^[1-9][0-9]*$ ]] || die "--files takes numbers, not '$n'"
            files_set "$n"
        done
        ;;
    history) history_part ;;
    esac
done

echo "load avg:  at end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/meta.txt"
rm -f "$RESULTS/time.out"
echo >&2
helper report "$RESULTS" | tee "$RESULTS/report.txt"
echo
echo "raw numbers, logs and this report: $RESULTS"
