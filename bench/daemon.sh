#!/usr/bin/env bash
# What `coffer daemon` costs: idle CPU and memory with 100 jobs, how late a job starts after
# its scheduled instant, how long a scrape of /metrics takes with 100 jobs, and the overhead
# the daemon adds to a backup compared with the same `coffer backup` run by hand. Prints a
# table.
#
#   bench/daemon.sh [--jobs N] [--idle SECS] [--size MIB] [--rounds N] [--keep] [--dir DIR]
#                   [--coffer-bin PATH] [--only PART]
#
#   --jobs N           jobs in the idle and scrape parts [default: 100]
#   --idle SECS        how long the idle daemon is watched [default: 60]
#   --size MIB         data backed up in the overhead part [default: 200]
#   --rounds N         rounds of the overhead part (by hand, then by the daemon) [default: 3]
#   --keep             keep the scratch directory at the end
#   --dir DIR          scratch directory [default: target/bench-daemon]; deleted first
#   --coffer-bin PATH  benchmark this coffer binary instead of building a release one
#   --only PART        one part: idle, latency, scrape, overhead
#
# Parts (bench/README.md, "bench/daemon.sh"):
#   idle      N files jobs scheduled weekly, the daemon watched for SECS after 10 s of
#             settling: CPU (utime + stime of the process, /proc/PID/stat) as % of one core,
#             and RSS (VmRSS, the largest seen). Goals: < 1 % of a core, < 40 MiB.
#   latency   one job `every 5s`, the daemon's JSON log for 60 s: for each `job … started`
#             event (attempt 1, not late) its `timestamp` minus its `slot`.
#   scrape    `curl` of /metrics 200 times with N jobs: median and p90 wall time, and the
#             size. Against the daemon's own listener; without a daemon in the binary, against
#             the `metrics_serve` example (the same registry and listener, filled as a
#             daemon with that many jobs fills it).
#   overhead  SIZE MiB of files backed up into a fresh repository, alternately by hand
#             (`coffer backup`, wall time of the command) and by the daemon (a job
#             `every 10s`, which starts at its first slot — a new job waits for its first
#             slot, it does not run at once: wall time from its `started` event to its run
#             event): ratio daemon / hand of the medians. Each timed backup starts from the
#             same memory state (bench/caches.sh). Goal: none measurable (~1.00).
#
# The daemon is `coffer daemon --config FILE` (state in `daemon.state-dir`, JSON logs on
# stderr with `--log-format json`, metrics on `[metrics] listen`); this script reads its
# documented log events (docs/monitoring.md, "Logs").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
JOBS=100
IDLE=60
SIZE=200
ROUNDS=3
KEEP=0
ONLY=
SCRATCH=$ROOT/target/bench-daemon
COFFER_BIN=

while (($#)); do
    case $1 in
    --jobs) JOBS=$2; shift ;;
    --idle) IDLE=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --keep) KEEP=1 ;;
    --dir) SCRATCH=$2; shift ;;
    --coffer-bin) COFFER_BIN=$2; shift ;;
    --only) ONLY=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "daemon.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# Cargo (rustup) needs the real home; the commands measured get one in the scratch directory.
REAL_HOME=$HOME
build() { (cd "$ROOT" && HOME=$REAL_HOME cargo build --release -q "$@"); }
say() { printf '== %s\n' "$*" >&2; }
want() { [[ -z $ONLY || $ONLY == "$1" ]]; }
for tool in curl python3; do
    command -v $tool >/dev/null || { echo "daemon.sh: $tool is missing (apt-get install $tool)" >&2; exit 2; }
done

SCRATCH=$(realpath -m "$SCRATCH")
case $SCRATCH in
/ | "$ROOT" | "$HOME") echo "daemon.sh: refusing to use $SCRATCH as scratch directory" >&2; exit 2 ;;
esac
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH/home"

if [[ -z $COFFER_BIN ]]; then
    say "building coffer (release)"
    build -p coffer-cli
    COFFER_BIN=$ROOT/target/release/coffer
fi
# A copy: a rebuild during the run does not change what is measured.
cp "$COFFER_BIN" "$SCRATCH/coffer"
COFFER=$SCRATCH/coffer
export HOME=$SCRATCH/home COFFER_PASSWORD=bench-password-not-secret

HAVE_DAEMON=0
if "$COFFER" daemon --help >/dev/null 2>&1; then
    HAVE_DAEMON=1
else
    say "this coffer has no \`daemon\` command: only the scrape part runs (on the metrics_serve example)"
fi

declare -A R
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ((KEEP)) || rm -rf "$SCRATCH"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# write_config FILE STATE_DIR PORT VAULT: the [daemon] and [metrics] tables and a repository
# `main` in VAULT; the caller appends the sources.
write_config() {
    printf '[daemon]\nstate-dir = "%s"\nmax-concurrent-jobs = 2\ncatch-up = false\n\n' "$2" >"$1"
    printf '[metrics]\nlisten = "127.0.0.1:%s"\n\n' "$3" >>"$1"
    printf '[repositories.main]\nlocation = "%s"\n' "$4" >>"$1"
}

# add_files_jobs FILE N SCHEDULE PATH: N files sources (s001…) backing up PATH.
add_files_jobs() {
    local i
    for i in $(seq 1 "$2"); do
        printf '\n[files.s%03d]\nrepository = "main"\npaths = ["%s"]\nschedule = "%s"\n' "$i" "$4" "$3" >>"$1"
    done
}

# start_daemon CONFIG LOG: starts `coffer daemon` in the background (JSON logs to LOG) and
# waits until its /metrics answers; sets DPID.
start_daemon() {
    "$COFFER" --log-format json daemon --config "$1" 2>"$2" &
    DPID=$!
    PIDS+=("$DPID")
    local port
    port=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$1")
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && return 0
        kill -0 "$DPID" 2>/dev/null || { echo "daemon.sh: the daemon exited:" >&2; cat "$2" >&2; exit 1; }
        sleep 0.1
    done
    echo "daemon.sh: the daemon's /metrics did not answer in 10 s" >&2
    exit 1
}

stop_daemon() {
    kill -TERM "$DPID" 2>/dev/null || true
    wait "$DPID" 2>/dev/null || true
}

init_repo() { "$COFFER" --repo "$1" init >/dev/null; }

small_source() {
    mkdir -p "$SCRATCH/src-small"
    echo small >"$SCRATCH/src-small/file"
}

# --- idle ----------------------------------------------------------------------------------
if want idle && ((HAVE_DAEMON)); then
    say "idle: $JOBS jobs, watched for $IDLE s"
    init_repo "$SCRATCH/vault-idle"
    small_source
    CONF=$SCRATCH/idle.toml
    write_config "$CONF" "$SCRATCH/state-idle" "$(free_port)" "$SCRATCH/vault-idle"
    add_files_jobs "$CONF" "$JOBS" weekly "$SCRATCH/src-small"
    start_daemon "$CONF" "$SCRATCH/idle.log"
    sleep 10
    TCK=$(getconf CLK_TCK)
    ticks() { awk '{print $14 + $15}' "/proc/$DPID/stat"; }
    t0=$(ticks)
    rss=0
    for _ in $(seq "$IDLE"); do
        sleep 1
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$DPID/status")
        ((r > rss)) && rss=$r
    done
    t1=$(ticks)
    R[idle_cpu]=$(python3 -c "print(f'{($t1 - $t0) / $TCK / $IDLE * 100:.2f}')")
    R[idle_rss]=$(python3 -c "print(f'{$rss / 1024:.1f}')")
    stop_daemon
fi

# --- latency -------------------------------------------------------------------------------
if want latency && ((HAVE_DAEMON)); then
    say "latency: one job every 5 s, for 60 s"
    init_repo "$SCRATCH/vault-lat"
    small_source
    CONF=$SCRATCH/latency.toml
    write_config "$CONF" "$SCRATCH/state-lat" "$(free_port)" "$SCRATCH/vault-lat"
    add_files_jobs "$CONF" 1 "every 5s" "$SCRATCH/src-small"
    start_daemon "$CONF" "$SCRATCH/latency.log"
    sleep 60
    stop_daemon
    read -r R[lat_n] R[lat_median] R[lat_max] < <(python3 "$ROOT/bench/daemon_helper.py" latency "$SCRATCH/latency.log")
fi

# --- scrape --------------------------------------------------------------------------------
if want scrape; then
    if ((HAVE_DAEMON)); then
        say "scrape: the daemon with $JOBS jobs"
        init_repo "$SCRATCH/vault-scrape"
        small_source
        PORT=$(free_port)
        CONF=$SCRATCH/scrape.toml
        write_config "$CONF" "$SCRATCH/state-scrape" "$PORT" "$SCRATCH/vault-scrape"
        add_files_jobs "$CONF" "$JOBS" weekly "$SCRATCH/src-small"
        start_daemon "$CONF" "$SCRATCH/scrape.log"
        URL=http://127.0.0.1:$PORT/metrics
        # The listener is up before the first scheduling pass has published the jobs' series.
        for _ in $(seq 100); do
            [[ $(curl -sf "$URL" | grep -c '^coffer_job_expected_interval_seconds') -ge $JOBS ]] && break
            sleep 0.1
        done
        R[scrape_what]="coffer daemon"
    else
        say "scrape: the metrics_serve example with $JOBS jobs"
        build -p coffer-operations --example metrics_serve
        cp "$ROOT/target/release/examples/metrics_serve" "$SCRATCH/metrics_serve"
        mkfifo "$SCRATCH/hold"
        # It serves until its stdin (the fifo, held open on fd 9) closes.
        "$SCRATCH/metrics_serve" "$JOBS" 127.0.0.1:0 <"$SCRATCH/hold" >"$SCRATCH/serve.out" &
        PIDS+=($!)
        exec 9>"$SCRATCH/hold"
        for _ in $(seq 100); do
            grep -q listening "$SCRATCH/serve.out" 2>/dev/null && break
            sleep 0.1
        done
        URL=$(sed -n 's/^listening on //p' "$SCRATCH/serve.out")
        R[scrape_what]="metrics_serve example"
    fi
    curl -sf -o "$SCRATCH/scrape.txt" "$URL"
    R[scrape_bytes]=$(wc -c <"$SCRATCH/scrape.txt")
    R[scrape_series]=$(grep -vc '^#' "$SCRATCH/scrape.txt")
    for _ in $(seq 200); do curl -sf -o /dev/null -w '%{time_total}\n' "$URL"; done >"$SCRATCH/scrape.times"
    read -r R[scrape_median] R[scrape_p90] < <(python3 "$ROOT/bench/daemon_helper.py" scrape "$SCRATCH/scrape.times")
    if ((HAVE_DAEMON)); then stop_daemon; else exec 9>&-; fi
fi

# --- overhead ------------------------------------------------------------------------------
if want overhead && ((HAVE_DAEMON)); then
    say "overhead: $SIZE MiB, $ROUNDS rounds"
    DATA=$SCRATCH/data
    python3 "$ROOT/bench/daemon_helper.py" data "$DATA" "$SIZE"
    # shellcheck source=bench/caches.sh
    source "$ROOT/bench/caches.sh"
    caches_init "$SCRATCH/primer" 1024
    hand=()
    daemon=()
    for r in $(seq "$ROUNDS"); do
        init_repo "$SCRATCH/vault-hand-$r"
        drop_caches
        t0=$(date +%s.%N)
        "$COFFER" --repo "$SCRATCH/vault-hand-$r" backup "$DATA" >/dev/null
        t1=$(date +%s.%N)
        hand+=("$(python3 -c "print($t1 - $t0)")")

        init_repo "$SCRATCH/vault-daemon-$r"
        CONF=$SCRATCH/overhead-$r.toml
        write_config "$CONF" "$SCRATCH/state-overhead-$r" "$(free_port)" "$SCRATCH/vault-daemon-$r"
        add_files_jobs "$CONF" 1 "every 10s" "$DATA"
        LOG=$SCRATCH/overhead-$r.log
        drop_caches
        start_daemon "$CONF" "$LOG"
        for _ in $(seq 1200); do
            grep -q '"outcome":"\(success\|warning\|failed\|timed-out\)"' "$LOG" && break
            sleep 0.5
        done
        stop_daemon
        daemon+=("$(python3 "$ROOT/bench/daemon_helper.py" run-time "$LOG" s001/backup)")
        say "round $r: by hand ${hand[-1]} s, by the daemon ${daemon[-1]} s"
    done
    read -r R[hand] R[daemon] R[ratio] < <(python3 "$ROOT/bench/daemon_helper.py" ratio "${hand[*]}" "${daemon[*]}")
fi

# --- table ---------------------------------------------------------------------------------
# v KEY [UNIT]: a result with its unit, or "not run".
v() { if [[ -n ${R[$1]:-} ]]; then echo "${R[$1]}${2:-}"; else echo "not run"; fi; }
echo
echo "## bench/daemon.sh ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(cd "$ROOT" && git rev-parse --short HEAD), load $(cut -d' ' -f1 /proc/loadavg))"
echo
echo "| measure | value | goal |"
echo "| --- | --- | --- |"
echo "| idle CPU, $JOBS jobs, ${IDLE} s | $(v idle_cpu ' % of a core') | < 1 % |"
echo "| idle RSS, $JOBS jobs | $(v idle_rss ' MiB') | < 40 MiB |"
echo "| scheduled instant → job start, median / max ($(v lat_n ' runs')) | $(v lat_median ' ms') / $(v lat_max ' ms') | — |"
echo "| /metrics scrape, $JOBS jobs ($(v scrape_what); $(v scrape_series ' samples'), $(v scrape_bytes ' bytes')), median / p90 | $(v scrape_median ' ms') / $(v scrape_p90 ' ms') | — |"
echo "| backup of $SIZE MiB, by hand / by the daemon (medians of $ROUNDS) | $(v hand ' s') / $(v daemon ' s') | — |"
echo "| daemon overhead on a backup: ratio daemon / hand | **$(v ratio)** | ~1.00 (none measurable) |"
if ((!HAVE_DAEMON)); then
    echo
    echo "(This coffer has no \`daemon\` command: idle, latency and overhead did not run.)"
fi
