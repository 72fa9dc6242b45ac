#!/usr/bin/env bash
# Coffer against restic and Borg on the same data, in one run; prints a table.
#
#   bench/files.sh [--quick] [--only tree|large] [--keep] [--dir DIR] [--coffer-bin PATH]
#
#   --quick            ~200 MiB data sets instead of ~1 GiB (a sanity run of a few minutes)
#   --only SET         run one data set (tree or large) instead of both
#   --keep             keep the scratch directory (data sets, repositories) at the end
#   --dir DIR          scratch directory [default: target/bench-data]; put it on the disk
#                      you care about. It must be new, empty, or one this script made:
#                      everything in it is deleted first.
#   --coffer-bin PATH  benchmark this coffer binary instead of building the working tree
#
# Data sets: "tree" = a copy of the Rust toolchain ($(rustc --print sysroot)), a
# deterministic subset of its files capped at 1 GiB (200 MiB with --quick); "large" =
# 4 files of 256 MiB (50 MiB): two random, a web-server log and a CSV of records.
# References per data set: tar | zstd -1 of it, and a plain cp -a of it (+ sync).
# Steps per data set and tool: init, first backup, no-change backup, backup after 2 % of
# the files changed, list snapshots, full restore of the latest snapshot (checked against
# the source with diff -r, outside the timing), verify with read-data. Before each step
# the page cache is dropped (when the kernel lets us); each step's time includes a final
# `sync`, so data a tool left in the page cache counts. Settings, output and how to read
# it: bench/README.md. The table and raw numbers are also written to
# target/bench-results/files-<time>/.
#
# Needs root for apt-get (restic, borgbackup, zstd, time are installed when missing) and
# for dropping caches.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
KEEP=0
SCRATCH=$ROOT/target/bench-data
COFFER_BIN=
SETS=(tree large)

while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --only)
        case ${2:-} in
        tree | large) SETS=("$2") ;;
        *) echo "files.sh: --only takes tree or large, not '${2:-}'" >&2; exit 2 ;;
        esac
        shift
        ;;
    --keep) KEEP=1 ;;
    --dir) SCRATCH=$2; shift ;;
    --coffer-bin) COFFER_BIN=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "files.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SUFFIX=
if ((QUICK)); then
    SUFFIX=-quick
    TREE_BUDGET=$((200 << 20))
    LARGE_EACH=$((50 << 20))
else
    TREE_BUDGET=$((1 << 30))
    LARGE_EACH=$((256 << 20))
fi
CHANGE_PERCENT=2
TOOLS=(coffer restic borg)
PW=bench-password-not-secret

helper() { python3 "$ROOT/bench/files_helper.py" "$@"; }
say() { printf '== %s\n' "$*" >&2; }

# ------------------------------------------------------------------ tools
need_install=()
command -v restic >/dev/null || need_install+=(restic)
command -v borg >/dev/null || need_install+=(borgbackup)
command -v zstd >/dev/null || need_install+=(zstd)
[[ -x /usr/bin/time ]] || need_install+=(time)
command -v python3 >/dev/null || need_install+=(python3)
if ((${#need_install[@]})); then
    say "installing ${need_install[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_install[@]}" >/dev/null
fi

SCRATCH=$(realpath -m "$SCRATCH")
case $SCRATCH in
/ | "$ROOT" | "$HOME") echo "files.sh: refusing to use $SCRATCH as scratch directory" >&2; exit 2 ;;
esac
# Only a directory this script made (it holds .coffer-bench) or an empty one is wiped.
if [[ -d $SCRATCH && ! -e $SCRATCH/.coffer-bench && -n $(ls -A "$SCRATCH") ]]; then
    echo "files.sh: $SCRATCH is not empty and not a scratch directory of this script; choose another --dir" >&2
    exit 2
fi
RESULTS=$ROOT/target/bench-results/files-$(date -u +%Y%m%dT%H%M%SZ)$SUFFIX
mkdir -p "$RESULTS/logs"

cleanup() {
    if ((KEEP)); then
        say "kept scratch data in $SCRATCH"
    else
        rm -rf "$SCRATCH"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z $COFFER_BIN ]]; then
    say "building coffer (release)"
    if ! (cd "$ROOT" && cargo build --release -p coffer-cli --quiet); then
        echo "files.sh: cargo build --release -p coffer-cli failed; fix the build or pass --coffer-bin PATH" >&2
        exit 1
    fi
    COFFER_BIN=$ROOT/target/release/coffer
fi
rm -rf "$SCRATCH"
# Without a journal (this machine's ext4 has none), ext4 skips inodes freed in the last 60 s
# when it allocates new ones, reading each one it skips: a restore of 50 000 files right
# after 50 000 were deleted spends seconds in those scans (`recently_deleted` in a profile),
# and whichever tool restores just after another's restore was deleted pays for it. So
# nothing restored or copied is deleted before the end of its data set, and `cp -a` and the
# restores wait until the last large deletion is out of that window.
sync
DELETED_AT=$(date +%s)
settle() {
    local wait=$((DELETED_AT + 65 - $(date +%s)))
    if ((wait > 0)); then
        say "waiting ${wait}s: inodes deleted at $(date -d "@$DELETED_AT" +%T) are still 'recent' to ext4"
        sleep "$wait"
    fi
}
mkdir -p "$SCRATCH/bin"
touch "$SCRATCH/.coffer-bench"
# A private copy: a rebuild of the working tree during the run does not change what is measured.
cp "$COFFER_BIN" "$SCRATCH/bin/coffer"
COFFER=$SCRATCH/bin/coffer

# Each tool's client-side cache goes to the scratch directory too (not counted as repository).
export RESTIC_PASSWORD=$PW RESTIC_CACHE_DIR=$SCRATCH/cache/restic
export BORG_PASSPHRASE=$PW BORG_BASE_DIR=$SCRATCH/cache/borg BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export COFFER_PASSWORD=$PW
unset RESTIC_REPOSITORY BORG_REPO COFFER_REPO COFFER_PASSWORD_FILE COFFER_ROLE COFFER_CREDENTIALS RESTIC_COMPRESSION

# shellcheck source=bench/caches.sh
source "$ROOT/bench/caches.sh"
caches_init "$SCRATCH/primer" 2048
if ((CAN_DROP)); then
    DROP_NOTE="page cache dropped before every step (sync; echo 3 > /proc/sys/vm/drop_caches)"
    PRIMER_NOTE="2 GiB primer read through the page cache (and dropped) right before every step"
else
    DROP_NOTE="page cache NOT dropped: /proc/sys/vm/drop_caches is not writable here (container?); source data is read warm from the page cache"
    PRIMER_NOTE="no primer (page cache cannot be dropped)"
    say "cannot drop caches: $DROP_NOTE"
fi

# busy jiffies of the whole machine (for "others CPU%")
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
HZ=$(getconf CLK_TCK)

coffer_rev() {
    local rev dirty=""
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
    [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=" + uncommitted changes"
    echo "$rev$dirty"
}

{
    echo "Coffer vs restic vs Borg — bench/files.sh${SUFFIX/-/ --}"
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine:   $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -r), scratch on $(df -P "$SCRATCH" | awk 'NR==2{print $1}')"
    echo "coffer:    $("$COFFER" --version 2>/dev/null || echo coffer) ($( [[ $COFFER_BIN == "$ROOT/target/release/coffer" ]] && echo "working tree at $(coffer_rev)" || echo "$COFFER_BIN")), defaults"
    echo "restic:    $(restic version | head -1); repository v2, --compression auto"
    echo "borg:      $(borg --version); init -e repokey-blake2 (AES-256-CTR + BLAKE2b, i.e. encrypted and authenticated like the others), create --compression zstd,3"
    echo "reference: tar -cf - DIR | zstd -1 >/dev/null ($(zstd --version | grep -o 'v[0-9.]*'))"
    echo "caches:    $DROP_NOTE"
    echo "primer:    $PRIMER_NOTE"
    echo "load avg:  at start $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/meta.txt"
cat "$RESULTS/meta.txt" >&2

printf 'dataset\tstep\ttool\tseconds\tcmd_seconds\tuser_s\tsys_s\trss_kib\tdata_bytes\trepo_bytes\tothers_cpu_pct\tload1\tstatus\n' >"$RESULTS/results.tsv"

# run_step DATASET STEP TOOL DATA_BYTES REPO_DIR CMD...   (REPO_DIR "-" for none)
run_step() {
    local ds=$1 step=$2 tool=$3 bytes=$4 repo=$5
    shift 5
    local log="$RESULTS/logs/$ds.${step// /-}.$tool.log" tf="$RESULTS/time.out"
    drop_caches
    local load1 j0 j1 t0 t1 t2 rc=0 rss user sys repo_bytes=-
    load1=$(cut -d' ' -f1 /proc/loadavg)
    j0=$(busy_jiffies)
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    t1=$(date +%s%N)
    sync
    t2=$(date +%s%N)
    j1=$(busy_jiffies)
    read -r rss user sys < <(tail -n1 "$tf")
    [[ $repo != - ]] && repo_bytes=$(du -sb "$repo" | cut -f1)
    local secs cmd_secs others status=ok
    secs=$(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    cmd_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    others=$(awk -v j="$((j1 - j0))" -v hz="$HZ" -v u="$user" -v s="$sys" -v w="$secs" \
        'BEGIN{o=(j/hz-u-s)/w*100; if(o<0)o=0; printf "%.0f", o}')
    ((rc == 0)) || status="FAILED (exit $rc, see logs/$(basename "$log"))"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$step" "$tool" "$secs" "$cmd_secs" \
        "$user" "$sys" "$rss" "$bytes" "$repo_bytes" "$others" "$load1" "$status" >>"$RESULTS/results.tsv"
    printf '   %-7s %-17s %-9s %8ss  rss %6s KiB  %s\n' "$ds" "$step" "$tool" "$secs" "$rss" "$status" >&2
    return 0
}

# mark_status DATASET STEP TOOL TEXT: replace the status of a recorded row
mark_status() {
    python3 - "$RESULTS/results.tsv" "$@" <<'EOF'
import sys
path, ds, step, tool, text = sys.argv[1:]
lines = open(path).read().splitlines()
out = []
for l in lines:
    f = l.split("\t")
    if f[:3] == [ds, step, tool]:
        f[-1] = text if f[-1] == "ok" else f[-1] + "; " + text
    out.append("\t".join(f))
open(path, "w").write("\n".join(out) + "\n")
EOF
}

backup_step() { # DATASET STEP TOOL DATA_BYTES REPO SRC ARCHIVE_NAME
    local ds=$1 step=$2 tool=$3 bytes=$4 repo=$5 src=$6 name=$7
    case $tool in
    coffer) run_step "$ds" "$step" "$tool" "$bytes" "$repo" "$COFFER" backup --repo "$repo" "$src" ;;
    restic) run_step "$ds" "$step" "$tool" "$bytes" "$repo" restic -r "$repo" --compression auto backup "$src" ;;
    borg) run_step "$ds" "$step" "$tool" "$bytes" "$repo" borg create --compression zstd,3 "$repo::$name" "$src" ;;
    esac
}

bench_dataset() { # NAME SRC
    local ds=$1 src=$2 files bytes tool
    read -r files bytes < <(helper size "$src")
    echo "data set: $ds = $src: $files files, $bytes bytes ($((bytes >> 20)) MiB)" >>"$RESULTS/meta.txt"
    say "data set $ds: $files files, $((bytes >> 20)) MiB"
    local repos=$SCRATCH/repo/$ds restore
    rm -rf "$repos"
    mkdir -p "$repos"

    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    run_step "$ds" "tar|zstd -1" reference "$bytes" - \
        bash -c 'tar -C "$(dirname "$1")" -cf - "$(basename "$1")" | zstd -1 -q -c >/dev/null' _ "$src"

    # a plain copy of the data set (+ sync): roughly the ceiling for a restore
    settle
    run_step "$ds" "cp -a" reference "$bytes" - cp -a "$src" "$SCRATCH/copy-test"

    run_step "$ds" init coffer "$bytes" "$repos/coffer" "$COFFER" init --repo "$repos/coffer"
    run_step "$ds" init restic "$bytes" "$repos/restic" restic -r "$repos/restic" init --repository-version 2
    run_step "$ds" init borg "$bytes" "$repos/borg" borg init -e repokey-blake2 "$repos/borg"

    local step name
    for step in "first backup" "no-change backup"; do
        name=${step%% *}
        for tool in "${TOOLS[@]}"; do
            backup_step "$ds" "$step" "$tool" "$bytes" "$repos/$tool" "$src" "$name"
        done
    done

    say "changing $CHANGE_PERCENT % of the files of $ds"
    helper modify "$src" "$CHANGE_PERCENT" | tee -a "$RESULTS/meta.txt" >&2
    read -r files bytes < <(helper size "$src")
    for tool in "${TOOLS[@]}"; do
        backup_step "$ds" "changed backup" "$tool" "$bytes" "$repos/$tool" "$src" changed
    done

    run_step "$ds" "list snapshots" coffer "$bytes" "$repos/coffer" "$COFFER" snapshots --repo "$repos/coffer"
    run_step "$ds" "list snapshots" restic "$bytes" "$repos/restic" restic -r "$repos/restic" snapshots
    run_step "$ds" "list snapshots" borg "$bytes" "$repos/borg" borg list "$repos/borg"

    for tool in "${TOOLS[@]}"; do
        restore=$SCRATCH/restore-$tool
        mkdir -p "$restore"
        settle
        case $tool in
        coffer) run_step "$ds" restore coffer "$bytes" "$repos/coffer" "$COFFER" restore --repo "$repos/coffer" latest --target "$restore" ;;
        restic) run_step "$ds" restore restic "$bytes" "$repos/restic" restic -r "$repos/restic" restore latest --target "$restore" ;;
        borg) run_step "$ds" restore borg "$bytes" "$repos/borg" env -C "$restore" borg extract "$repos/borg::changed" ;;
        esac
        # all three restore absolute paths below the target
        if ! diff -rq --no-dereference "$src" "$restore$src" >"$RESULTS/logs/$ds.restore-diff.$tool.log" 2>&1; then
            mark_status "$ds" restore "$tool" "RESTORED DATA DIFFERS (logs/$ds.restore-diff.$tool.log)"
            say "$tool: restored $ds differs from the source"
        fi
    done
    rm -rf "$SCRATCH/copy-test" "$SCRATCH"/restore-*
    sync
    DELETED_AT=$(date +%s)

    run_step "$ds" "verify read-data" coffer "$bytes" "$repos/coffer" "$COFFER" verify --repo "$repos/coffer" --read-data
    run_step "$ds" "verify read-data" restic "$bytes" "$repos/restic" restic -r "$repos/restic" check --read-data
    run_step "$ds" "verify read-data" borg "$bytes" "$repos/borg" borg check --verify-data "$repos/borg"

    echo "caches:    $ds: restic $(du -sh "$RESTIC_CACHE_DIR" 2>/dev/null | cut -f1), borg $(du -sh "$BORG_BASE_DIR" 2>/dev/null | cut -f1) (client-side, not counted in repo size)" >>"$RESULTS/meta.txt"
    if ((!KEEP)); then rm -rf "$repos" "$RESTIC_CACHE_DIR" "$BORG_BASE_DIR"; fi
}

# ------------------------------------------------------------------ data sets
SYSROOT=$(rustc --print sysroot)
mkdir -p "$SCRATCH/data"
for set in "${SETS[@]}"; do
    case $set in
    tree)
        say "copying the Rust toolchain ($SYSROOT) into $SCRATCH/data/tree (cap $((TREE_BUDGET >> 20)) MiB)"
        helper copy-tree "$SYSROOT" "$SCRATCH/data/tree" "$TREE_BUDGET" >&2
        ;;
    large)
        say "generating 4 x $((LARGE_EACH >> 20)) MiB in $SCRATCH/data/large"
        helper gen-large "$SCRATCH/data/large" "$LARGE_EACH" >&2
        ;;
    esac
done
sync

for set in "${SETS[@]}"; do
    bench_dataset "$set" "$SCRATCH/data/$set"
done

echo "load avg:  at end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/meta.txt"
rm -f "$RESULTS/time.out"
echo >&2
helper report "$RESULTS" | tee "$RESULTS/report.txt"
echo
echo "raw numbers, logs and this report: $RESULTS"
