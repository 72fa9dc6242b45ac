#!/usr/bin/env bash
# Coffer against restic through the same local S3 server, in one run; prints a table.
#
#   bench/s3.sh [--size MIB] [--runs N] [--server localstack|moto] [--keep] [--dir DIR] [--coffer-bin PATH]
#
#   --size MIB         size of the benchmark tree [default: 200]
#   --runs N           measure every step N times, alternating which tool goes first, and
#                      report medians [default: 4: each tool first equally often]
#   --server S         the S3 server both tools write to [default: localstack]
#   --keep             keep the scratch directory (tree, restores) at the end
#   --dir DIR          scratch directory [default: target/bench-s3]. It must be new, empty,
#                      or one this script made: everything in it is deleted first.
#   --restore-dir DIR  restore into a new directory under DIR (e.g. /dev/shm), removed at
#                      the end [default: the scratch directory]. See bench/README.md: on a
#                      disk whose file creation depends on other users' deletions, tmpfs
#                      measures the tools instead of the disk.
#   --coffer-bin PATH  benchmark this coffer binary instead of building the working tree
#
# Data: the "tree" data set of bench/files.sh (a deterministic subset of the Rust
# toolchain, capped at --size). The server is started by this script on a free
# 127.0.0.1 port from the virtualenv .ci/s3-venv.sh installs ($COFFER_S3_VENV, default
# ~/.cache/coffer/s3-venv) and stopped at the end (only the process group it started).
# Coffer writes to an Object Lock bucket made by `coffer vault init s3://…` (every put
# locked, checksummed and checked with a HeadObject afterwards, as always); restic to a
# plain bucket its `init` creates (`restic -r s3:http://127.0.0.1:PORT/BUCKET`).
# Steps per tool: init, first backup, no-change backup, restore of the latest snapshot
# (compared with the source by diff -r outside the timing). Each run uses a new repository
# per tool on the same server; odd runs start with Coffer, even runs with restic, so
# neither tool always meets the other's leftovers (server state, disk writeback). Each time
# includes a final `sync`; the page cache is dropped before each step when the kernel lets
# us. The server's requests are counted per step from its log (LocalStack: by operation;
# moto: by method and sub-resource). Output and how to read it: bench/README.md. Results
# also go to target/bench-results/s3-<time>/.
#
# Needs restic (apt-get install restic; bench/files.sh installs it) and the S3 venv.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=200
RUNS=4
SERVER=localstack
KEEP=0
SCRATCH=$ROOT/target/bench-s3
COFFER_BIN=
RESTORE_DIR=

while (($#)); do
    case $1 in
    --size) SIZE_MIB=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --server) SERVER=$2; shift ;;
    --keep) KEEP=1 ;;
    --dir) SCRATCH=$2; shift ;;
    --coffer-bin) COFFER_BIN=$2; shift ;;
    --restore-dir) RESTORE_DIR=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "s3.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

PW=bench-password-not-secret
VENV=${COFFER_S3_VENV:-$HOME/.cache/coffer/s3-venv}
say() { printf '== %s\n' "$*" >&2; }
die() { echo "s3.sh: $*" >&2; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
command -v restic >/dev/null || die "restic is not installed (apt-get install restic)"
case $SERVER in
localstack) [[ -x $VENV/localstack/bin/python ]] || die "LocalStack is not installed in $VENV (run .ci/s3-venv.sh)" ;;
moto) [[ -x $VENV/moto/bin/moto_server ]] || die "moto is not installed in $VENV (run .ci/s3-venv.sh)" ;;
*) die "--server must be localstack or moto" ;;
esac

SCRATCH=$(realpath -m "$SCRATCH")
case $SCRATCH in
/ | "$ROOT" | "$HOME") die "refusing to use $SCRATCH as scratch directory" ;;
esac
if [[ -d $SCRATCH && ! -e $SCRATCH/.coffer-bench && -n $(ls -A "$SCRATCH") ]]; then
    die "$SCRATCH is not empty and not a scratch directory of this script; choose another --dir"
fi
RESULTS=$ROOT/target/bench-results/s3-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS/logs"

RESTORES=$SCRATCH
if [[ -n $RESTORE_DIR ]]; then
    [[ -d $RESTORE_DIR ]] || die "--restore-dir $RESTORE_DIR is not a directory"
    RESTORES=$(mktemp -d "$(realpath "$RESTORE_DIR")/coffer-bench-restore.XXXXXX")
fi

SERVER_PID=
cleanup() {
    if [[ $RESTORES != "$SCRATCH" ]]; then rm -rf "$RESTORES"; fi
    if [[ -n $SERVER_PID ]]; then
        # The server runs in its own process group (setsid): stop exactly that group.
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    fi
    if ((KEEP)); then say "kept scratch data in $SCRATCH"; else rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BUILT="built from the working tree at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z $COFFER_BIN ]] || BUILT="--coffer-bin $COFFER_BIN; working tree at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -z $COFFER_BIN ]]; then
    say "building coffer (release)"
    (cd "$ROOT" && cargo build --release -p coffer-cli --quiet) ||
        die "cargo build --release -p coffer-cli failed; fix the build or pass --coffer-bin PATH"
    COFFER_BIN=$ROOT/target/release/coffer
fi
rm -rf "$SCRATCH"
# This machine's ext4 has no journal, and without one it skips inodes freed in the last 60 s
# (6 min while their inode table is unwritten) when it allocates new ones, reading each
# skipped inode: a restore that creates 12 000 files right after 12 000 were deleted spent
# seconds in those scans (`recently_deleted` in a profile). Restores are timed only once the
# files this script deleted are out of that window (see restore_settle).
sync
CLEANED_AT=$(date +%s)
mkdir -p "$SCRATCH/bin" "$SCRATCH/server"
touch "$SCRATCH/.coffer-bench"
cp "$COFFER_BIN" "$SCRATCH/bin/coffer"
COFFER=$SCRATCH/bin/coffer

# ------------------------------------------------------------------ server
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ENDPOINT=http://127.0.0.1:$PORT
say "starting $SERVER on $ENDPOINT"
case $SERVER in
localstack)
    (cd "$SCRATCH/server" && GATEWAY_LISTEN=127.0.0.1:$PORT LOCALSTACK_HOST=127.0.0.1:$PORT SERVICES=s3 \
        EAGER_SERVICE_LOADING=1 GATEWAY_SERVER=hypercorn DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
        DNS_ADDRESS=0 LOCALSTACK_VOLUME_DIR=$SCRATCH/server/volume TMPDIR=$SCRATCH/server \
        exec setsid "$VENV/localstack/bin/python" -m localstack.runtime.main) >"$RESULTS/logs/server.log" 2>&1 &
    SERVER_PID=$!
    READY_PATH=/_localstack/health
    ;;
moto)
    (cd "$SCRATCH/server" && exec setsid "$VENV/moto/bin/moto_server" -H 127.0.0.1 -p "$PORT") \
        >"$RESULTS/logs/server.log" 2>&1 &
    SERVER_PID=$!
    READY_PATH=/moto-api/
    ;;
esac
for i in $(seq 900); do
    body=$(curl -fsS "$ENDPOINT$READY_PATH" 2>/dev/null || true)
    if [[ $SERVER == moto && -n $body ]] || [[ $body == *'"s3": "running"'* || $body == *'"s3":"running"'* ]]; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || die "$SERVER exited; see $RESULTS/logs/server.log"
    ((i < 900)) || die "$SERVER not ready after 90 s; see $RESULTS/logs/server.log"
    sleep 0.1
done

# ------------------------------------------------------------------ data
say "copying the Rust toolchain into $SCRATCH/tree (cap $SIZE_MIB MiB)"
python3 "$ROOT/bench/files_helper.py" copy-tree "$(rustc --print sysroot)" "$SCRATCH/tree" $((SIZE_MIB << 20)) >&2
read -r FILES BYTES < <(python3 "$ROOT/bench/files_helper.py" size "$SCRATCH/tree")
sync

# Every step starts after a 1 GiB primer (bench/caches.sh); the alternating order of the runs
# spreads what is left of the first tool's disadvantage.
# shellcheck source=bench/caches.sh
source "$ROOT/bench/caches.sh"
caches_init "$SCRATCH/primer" 1024

{
    echo "Coffer vs restic through S3 — bench/s3.sh"
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine:   $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -r)"
    echo "server:    $SERVER on $ENDPOINT (same machine, same server for both tools)"
    echo "coffer:    $("$COFFER" --version 2>/dev/null || echo coffer) ($BUILT); Object Lock bucket, compliance, defaults"
    echo "restic:    $(restic version | head -1); repository v2, --compression auto, plain bucket"
    echo "data:      $FILES files, $BYTES bytes ($((BYTES >> 20)) MiB), a subset of the Rust toolchain"
    echo "restores:  into $RESTORES ($(stat -f -c %T "$RESTORES"))"
    echo "caches:    $( ((CAN_DROP)) && echo "page cache dropped before every step" || echo "page cache NOT dropped (not writable here): source read warm")"
    echo "runs:      $RUNS (odd runs Coffer first, even runs restic first; a new repository per tool and run)"
    echo "load avg:  at start $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/meta.txt"
cat "$RESULTS/meta.txt" >&2

printf 'run\tstep\ttool\tseconds\tuser_s\tsys_s\tload1\trequests\tstatus\tsync_s\n' >"$RESULTS/results.tsv"
RUN=1
# The server's requests in log lines FROM..TO, counted by kind: "N OpA, M OpB" (most first).
count_requests() { # FROM TO
    sed -n "$1,$2p" "$RESULTS/logs/server.log" | python3 -c '
import collections, re, sys
c = collections.Counter()
for line in sys.stdin:
    m = re.search(r"AWS s3\.(\w+) =>", line)  # LocalStack
    if not m:  # moto (werkzeug): "METHOD /bucket/key?sub=... HTTP/1.1" STATUS
        m = re.search(r"\"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/[0-9.]+\" \d+", line)
        if m:
            q = m.group(2).partition("?")[2]
            sub = q.split("&")[0].split("=")[0] if q else ""
            c[m.group(1) + ("?" + sub if sub and sub not in ("x-id",) else "")] += 1
        continue
    c[m.group(1)] += 1
print(sum(c.values()), ", ".join(f"{n} {k}" for k, n in c.most_common()), sep="\t")'
}
run_step() { # STEP TOOL CMD...
    local step=$1 tool=$2
    shift 2
    local log="$RESULTS/logs/run$RUN.${step// /-}.$tool.log" tf="$RESULTS/time.out" rc=0 t0 ts t1 load1 user sys from to reqs
    drop_caches
    load1=$(cut -d' ' -f1 /proc/loadavg)
    from=$(($(wc -l <"$RESULTS/logs/server.log") + 1))
    t0=$(date +%s%N)
    /usr/bin/time -f '%U %S' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    ts=$(date +%s%N)
    sync
    t1=$(date +%s%N)
    sleep 0.2 # let the server finish logging the last request
    to=$(wc -l <"$RESULTS/logs/server.log")
    read -r reqs detail < <(count_requests "$from" "$to")
    printf 'run %s, %s, %s: %s requests: %s\n' "$RUN" "$step" "$tool" "$reqs" "$detail" >>"$RESULTS/requests.txt"
    read -r user sys < <(tail -n1 "$tf")
    local secs sync_s status=ok
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    sync_s=$(awk -v a="$ts" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    ((rc == 0)) || status="FAILED (exit $rc, see logs/$(basename "$log"))"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$RUN" "$step" "$tool" "$secs" "$user" "$sys" "$load1" "$reqs" "$status" "$sync_s" >>"$RESULTS/results.tsv"
    printf '   run %s %-17s %-7s %8ss %5s requests  %s\n' "$RUN" "$step" "$tool" "$secs" "$reqs" "$status" >&2
}

unset RESTIC_REPOSITORY COFFER_REPO COFFER_PASSWORD_FILE COFFER_ROLE COFFER_CREDENTIALS RESTIC_COMPRESSION
export RESTIC_PASSWORD=$PW RESTIC_CACHE_DIR=$SCRATCH/cache/restic COFFER_PASSWORD=$PW COFFER_CACHE_DIR=$SCRATCH/cache/coffer AWS_EC2_METADATA_DISABLED=true
# Commands (not functions: /usr/bin/time runs them), each role with its own keys.
COFFER_ADMIN=(env AWS_ACCESS_KEY_ID=coffer-admin AWS_SECRET_ACCESS_KEY=secret-of-admin "$COFFER")
COFFER_WRITER=(env AWS_ACCESS_KEY_ID=coffer-writer AWS_SECRET_ACCESS_KEY=secret-of-writer "$COFFER")
COFFER_READER=(env AWS_ACCESS_KEY_ID=coffer-reader AWS_SECRET_ACCESS_KEY=secret-of-reader "$COFFER")

if [[ $SERVER == moto ]]; then
    # moto's GetBucketVersioning reply is unreadable by the AWS SDK for Rust (quirk
    # get-bucket-versioning-unparseable in docs/s3-compatibility.md), so `coffer vault init`
    # cannot check the bucket there: create the same Object Lock bucket with moto's boto3.
    "$VENV/moto/bin/python" - "$ENDPOINT" >"$RESULTS/logs/bucket.log" 2>&1 <<'PY' || die "cannot create the bucket; see $RESULTS/logs/bucket.log"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="coffer-admin", aws_secret_access_key="secret-of-admin")
s3.create_bucket(Bucket="coffer-bench", ObjectLockEnabledForBucket=True)
s3.put_bucket_versioning(Bucket="coffer-bench", VersioningConfiguration={"Status": "Enabled"})
PY
else
    "${COFFER_ADMIN[@]}" vault init "s3://coffer-bench?endpoint=$ENDPOINT&region=us-east-1" >"$RESULTS/logs/bucket.log" 2>&1 ||
        die "coffer vault init failed; see $RESULTS/logs/bucket.log"
fi

# Waits until the scratch data deleted at the start is out of ext4's 60 s window (above).
restore_settle() {
    local wait=$((CLEANED_AT + 65 - $(date +%s)))
    if ((wait > 0)); then
        say "waiting ${wait}s before restoring: inodes deleted at the start are still 'recent' to ext4"
        sleep "$wait"
    fi
}

# One step for one tool in run $RUN (its own repository: repo-RUN, restic-bench-RUN).
tool_step() { # STEP TOOL
    local step=$1 tool=$2
    local c_repo="s3://coffer-bench/repo-$RUN?endpoint=$ENDPOINT&region=us-east-1"
    local restic=(env AWS_ACCESS_KEY_ID=restic AWS_SECRET_ACCESS_KEY=restic-secret restic -r "s3:$ENDPOINT/restic-bench-$RUN")
    case $step/$tool in
    init/coffer) run_step init coffer "${COFFER_WRITER[@]}" init --repo "$c_repo" ;;
    init/restic) run_step init restic "${restic[@]}" init --repository-version 2 ;;
    *backup/coffer) run_step "$step" coffer "${COFFER_WRITER[@]}" backup --repo "$c_repo" "$SCRATCH/tree" ;;
    *backup/restic) run_step "$step" restic "${restic[@]}" --compression auto backup "$SCRATCH/tree" ;;
    restore/*)
        restore_settle
        # Every restore gets a new directory, removed only with the scratch directory at the
        # end: on this machine's ext4, creating files right after deleting thousands costs
        # seconds of inode-allocation scans (`recently_deleted`), which would time the
        # script's own cleanup of the previous restore, not the tool.
        local dst=$RESTORES/restore-$RUN-$tool
        mkdir -p "$dst"
        case $tool in
        coffer) run_step restore coffer "${COFFER_READER[@]}" restore --repo "$c_repo" latest --target "$dst" ;;
        restic) run_step restore restic "${restic[@]}" restore latest --target "$dst" ;;
        esac
        if ! diff -rq --no-dereference "$SCRATCH/tree" "$dst$SCRATCH/tree" >"$RESULTS/logs/restore-diff.run$RUN.$tool.log" 2>&1; then
            sed -i "\$s/\tok\t\([0-9.]*\)\$/\tRESTORED DATA DIFFERS (logs\/restore-diff.run$RUN.$tool.log)\t\1/" "$RESULTS/results.tsv"
            say "$tool: restored data differs from the source"
        fi
        ;;
    esac
}

# Warm-up, not timed: a freshly started server answers each kind of request slowly the first
# time (Python imports and initialises the handlers lazily), which would fall on whichever
# tool goes first in run 1. Both tools back up and restore a few files first.
say "warm-up (not timed): both tools back up and restore 20 files"
mkdir -p "$SCRATCH/warm-up/tree"
for i in $(seq 20); do head -c $((i << 12)) "$SCRATCH/bin/coffer" >"$SCRATCH/warm-up/tree/f$i"; done
(
    c_repo="s3://coffer-bench/warm-up?endpoint=$ENDPOINT&region=us-east-1"
    restic=(env AWS_ACCESS_KEY_ID=restic AWS_SECRET_ACCESS_KEY=restic-secret restic -r "s3:$ENDPOINT/restic-warm-up")
    "${COFFER_WRITER[@]}" init --repo "$c_repo" &&
        "${COFFER_WRITER[@]}" backup --repo "$c_repo" "$SCRATCH/warm-up/tree" &&
        "${COFFER_READER[@]}" restore --repo "$c_repo" latest --target "$SCRATCH/warm-up/coffer" &&
        "${restic[@]}" init --repository-version 2 &&
        "${restic[@]}" --compression auto backup "$SCRATCH/warm-up/tree" &&
        "${restic[@]}" restore latest --target "$SCRATCH/warm-up/restic"
) >"$RESULTS/logs/warm-up.log" 2>&1 || die "the warm-up failed; see $RESULTS/logs/warm-up.log"

for ((RUN = 1; RUN <= RUNS; RUN++)); do
    if ((RUN % 2)); then order=(coffer restic); else order=(restic coffer); fi
    for step in init "first backup" "no-change backup" restore; do
        for tool in "${order[@]}"; do tool_step "$step" "$tool"; done
    done
done
echo "load avg:  at end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/meta.txt"
rm -f "$RESULTS/time.out"

# ------------------------------------------------------------------ report
python3 - "$RESULTS" "$BYTES" <<'EOF' | tee "$RESULTS/report.txt"
import statistics, sys
res, size = sys.argv[1], int(sys.argv[2])
print(open(f"{res}/meta.txt").read().rstrip())
rows = [l.split("\t") for l in open(f"{res}/results.tsv").read().splitlines()[1:]]
runs = sorted({int(r[0]) for r in rows})
t = {(int(r[0]), r[1], r[2]): r for r in rows}
med = statistics.median
print()
print(f"{len(runs)} run(s); times are medians, restic/coffer is the median of the runs' ratios (lowest-highest)")
print(f"{'step':<17} {'coffer s':>9} {'restic s':>9} {'coffer MB/s':>12} {'restic MB/s':>12} {'restic/coffer':>14} {'range':>12} {'requests c/r':>13} {'sync s c/r':>11} {'CPU s c/r':>11}  status")
ratios = {}
for step in ["init", "first backup", "no-change backup", "restore"]:
    pairs = [(t[(n, step, "coffer")], t[(n, step, "restic")]) for n in runs
             if (n, step, "coffer") in t and (n, step, "restic") in t]
    if not pairs:
        continue
    cs = med(float(c[3]) for c, _ in pairs)
    rs = med(float(r[3]) for _, r in pairs)
    rr = [float(r[3]) / float(c[3]) for c, r in pairs]
    ratios[step] = rr
    creq = med(int(c[7]) for c, _ in pairs)
    rreq = med(int(r[7]) for _, r in pairs)
    csync = med(float(c[9]) for c, _ in pairs)
    rsync = med(float(r[9]) for _, r in pairs)
    ccpu = med(float(c[4]) + float(c[5]) for c, _ in pairs)
    rcpu = med(float(r[4]) + float(r[5]) for _, r in pairs)
    rate = lambda s: f"{size / 1e6 / s:.1f}" if s > 0 and step != "init" else "-"
    bad = [f"run {c[0]} coffer: {c[8]}" for c, _ in pairs if c[8] != "ok"] + \
          [f"run {r[0]} restic: {r[8]}" for _, r in pairs if r[8] != "ok"]
    status = "ok" if not bad else "; ".join(bad)
    span = f"{min(rr):.2f}-{max(rr):.2f}"
    print(f"{step:<17} {cs:>9.2f} {rs:>9.2f} {rate(cs):>12} {rate(rs):>12} {med(rr):>13.2f}x {span:>12} {f'{creq:g}/{rreq:g}':>13} {f'{csync:.2f}/{rsync:.2f}':>11} {f'{ccpu:.2f}/{rcpu:.2f}':>11}  {status}")
print()
print("restic/coffer = restic's time / Coffer's: above 1 Coffer is faster. Times include the final")
print("`sync` (its median share in 'sync s'; it also flushes whatever else the machine wrote). 'CPU s' is")
print("each tool's user+sys time (not the server's). Requests per step by")
print(f"operation: {res}/requests.txt. Target (issue 4), on the median ratio (lowest run in brackets):")
for step in ["first backup", "restore"]:
    if step in ratios:
        m, lo = med(ratios[step]), min(ratios[step])
        print(f"  {step}: Coffer >= 2x restic: {m:.2f}x ({lo:.2f}x) {'met' if m >= 2 else 'NOT MET'}")
EOF
echo
echo "raw numbers, logs and this report: $RESULTS"
