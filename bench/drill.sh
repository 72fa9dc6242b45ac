#!/usr/bin/env bash
# What a recovery drill costs beyond the restore it rehearses, and how long `coffer audit`
# takes on a repository with many snapshots (issue 15's performance section). Prints a table.
#
#   bench/drill.sh [--quick] [--scale N] [--snapshots N] [--rounds N] [--only PART] [--keep]
#                  [--dir DIR] [--coffer-bin PATH]
#
#   --quick            small sizes: a 200 MiB tree, pgbench scale 5, 100 snapshots
#   --tree MIB         cap of the tree [default: 1024; 200 with --quick]
#   --scale N          pgbench scale of the PostgreSQL part [default: 50, the issue's]
#   --snapshots N      snapshots in the audit's repository [default: 1000, the issue's]
#   --rounds N         rounds per part, even (plain and drill alternate who goes first)
#                      [default: 2]
#   --only PARTS       these parts only: files, pg, audit, or a list (files,pg)
#   --keep             keep the scratch directory (data, repositories, clusters) at the end
#   --dir DIR          scratch directory [default: target/bench-drill]; it must be new,
#                      empty, or one this script made: everything in it is deleted first
#   --coffer-bin PATH  benchmark this coffer binary instead of building a release one
#   --no-drop          do not drop the page cache (smoke runs on a machine others use:
#                      dropping it slows their builds); the sides then alternate order only
#
# Parts (bench/README.md, "bench/drill.sh"):
#   files  the benchmark tree of bench/files.sh (the Rust toolchain, a deterministic subset
#          capped at 1 GiB; 200 MiB with --quick) backed up once; then, alternating, the plain
#          `coffer restore latest --target DIR` and `coffer drill files --snapshot latest
#          --scratch DIR` (restore, check every byte and metadata field and the locks,
#          remove the scratch directory): wall time of each (+ a final sync), and the
#          drill's own RTO and checks from its --json report.
#   pg     a PostgreSQL 15 cluster (pgbench -i -s N), archived into a vault, one base backup,
#          a pgbench run with a target time in its middle; then, alternating, the plain
#          `coffer pg restore --time T --start --target DIR` (returns when the server is
#          promoted) and `coffer drill pg --time T --scratch DIR` (the same, then pg_amcheck
#          and catalog checks, stop and removal of the server). Both run as `postgres`.
#   audit  N snapshots of a small changing tree made with `coffer backup` (as many processes
#          as cores; the setup time is printed), a coffer.toml with that repository and a
#          files source; then, alternating, `coffer audit --format json` (and html) and the references
#          `coffer snapshots` and `coffer verify` (structure and locks) on the same
#          repository; audit time per snapshot.
# Every timed step starts from the same memory state: sync, page cache dropped, a primer read
# through it and dropped again (bench/caches.sh); a restore into a file system waits until
# inodes deleted by the previous step are out of ext4's 60 s window (bench/files.sh). A drill
# that ran but did not pass (exit 10) is timed all the same; the table says it did not pass.
#
# Needs root: dropping caches, and running PostgreSQL as `postgres`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
SCALE=
NSNAP=
ROUNDS=2
ONLY=
KEEP=0
SCRATCH=$ROOT/target/bench-drill
COFFER_BIN=
TREE_MIB=
NO_DROP=0

while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --scale) SCALE=$2; shift ;;
    --snapshots) NSNAP=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --only)
        for p in ${2//,/ }; do
            case $p in
            files | pg | audit) ;;
            *) echo "drill.sh: --only takes files, pg or audit (or a list: files,pg), not '${2:-}'" >&2; exit 2 ;;
            esac
        done
        ONLY=,$2,
        shift
        ;;
    --keep) KEEP=1 ;;
    --dir) SCRATCH=$2; shift ;;
    --coffer-bin) COFFER_BIN=$2; shift ;;
    --tree) TREE_MIB=$2; shift ;;
    --no-drop) NO_DROP=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "drill.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SUFFIX=
if ((QUICK)); then
    SUFFIX=-quick
    : "${TREE_MIB:=200}" "${SCALE:=5}" "${NSNAP:=100}"
else
    : "${TREE_MIB:=1024}" "${SCALE:=50}" "${NSNAP:=1000}"
fi
for n in "$TREE_MIB" "$SCALE" "$NSNAP" "$ROUNDS"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "drill.sh: --tree, --scale, --snapshots and --rounds take a positive integer, not '$n'" >&2; exit 2; }
done
TREE_BUDGET=$((TREE_MIB << 20))
((ROUNDS % 2 == 0)) || { echo "drill.sh: --rounds must be even (each side goes first equally often), not $ROUNDS" >&2; exit 2; }

PGBIN=/usr/lib/postgresql/15/bin
PW=bench-password-not-secret
REAL_HOME=$HOME
say() { printf '== %s\n' "$*" >&2; }
want() { [[ -z $ONLY || $ONLY == *",$1,"* ]]; }

((EUID == 0)) || { echo "drill.sh: run it as root (it drops caches and runs PostgreSQL as postgres)" >&2; exit 2; }
need_install=()
[[ -x /usr/bin/time ]] || need_install+=(time)
command -v python3 >/dev/null || need_install+=(python3)
if ((${#need_install[@]})); then
    say "installing ${need_install[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_install[@]}" >/dev/null
fi
if want pg && [[ ! -x $PGBIN/postgres || ! -x $PGBIN/pg_amcheck ]]; then
    echo "drill.sh: PostgreSQL 15 is not installed ($PGBIN; apt-get install postgresql-15)" >&2
    exit 2
fi

SCRATCH=$(realpath -m "$SCRATCH")
case $SCRATCH in
/ | "$ROOT" | "$HOME") echo "drill.sh: refusing to use $SCRATCH as scratch directory" >&2; exit 2 ;;
esac
# Only a directory this script made (it holds .coffer-bench) or an empty one is wiped.
if [[ -d $SCRATCH && ! -e $SCRATCH/.coffer-bench && -n $(ls -A "$SCRATCH") ]]; then
    echo "drill.sh: $SCRATCH is not empty and not a scratch directory of this script; choose another --dir" >&2
    exit 2
fi
RESULTS=$ROOT/target/bench-results/drill-$(date -u +%Y%m%dT%H%M%SZ)$SUFFIX
mkdir -p "$RESULTS/logs" "$RESULTS/reports"

if [[ -z $COFFER_BIN ]]; then
    say "building coffer (release)"
    if ! (cd "$ROOT" && cargo build --release -q -p coffer-cli); then
        echo "drill.sh: cargo build --release -p coffer-cli failed; fix the build or pass --coffer-bin PATH" >&2
        exit 1
    fi
    COFFER_BIN=$ROOT/target/release/coffer
fi

# Servers this script started (data directories), stopped on exit.
PG_DIRS=()
# Everything PostgreSQL-side runs as postgres (an array, so that `timed` can run it too).
ASPG=(setpriv --reuid=postgres --regid=postgres --init-groups
    env HOME="$SCRATCH/home" PATH="$PGBIN:$PATH" PGHOST="$SCRATCH/sock" PGUSER=postgres PGDATABASE=postgres
    COFFER_REPO="$SCRATCH/pg-vault" COFFER_PASSWORD="$PW")
aspg() { "${ASPG[@]}" "$@"; }
cleanup() {
    local d
    for d in "${PG_DIRS[@]}"; do
        if [[ -f $d/postmaster.pid ]]; then aspg "$PGBIN/pg_ctl" stop -m immediate -D "$d" >/dev/null 2>&1 || true; fi
    done
    if ((KEEP)); then say "kept scratch data in $SCRATCH"; else rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ext4 without a journal (this machine's) skips, and reads, every inode freed in the last
# 60 s when it allocates one: a restore right after a drill removed its 50 000 files would
# pay seconds of scans that have nothing to do with it (bench/files.sh). Timed restores wait.
DELETED_AT=0
if [[ -e $SCRATCH ]]; then
    rm -rf "$SCRATCH"
    sync
    DELETED_AT=$(date +%s)
fi
mkdir -p "$SCRATCH/bin" "$SCRATCH/home"
touch "$SCRATCH/.coffer-bench"
# A private copy: a rebuild of the working tree during the run does not change what is measured.
cp "$COFFER_BIN" "$SCRATCH/bin/coffer"
chmod 755 "$SCRATCH" "$SCRATCH/bin" "$SCRATCH/bin/coffer"
COFFER=$SCRATCH/bin/coffer
export HOME=$SCRATCH/home COFFER_PASSWORD=$PW
unset COFFER_REPO COFFER_VAULT COFFER_PASSWORD_FILE COFFER_ROLE COFFER_CREDENTIALS COFFER_CONFIG

settle() {
    local wait=$((DELETED_AT + 65 - $(date +%s)))
    if ((wait > 0)); then
        say "waiting ${wait}s: inodes deleted at $(date -d "@$DELETED_AT" +%T) are still 'recent' to ext4"
        sleep "$wait"
    fi
}

# shellcheck source=bench/caches.sh
source "$ROOT/bench/caches.sh"
if ((NO_DROP)); then
    CAN_DROP=0
else
    caches_init "$SCRATCH/primer" 2048
fi
if ((CAN_DROP)); then
    CACHE_NOTE="page cache dropped and a 2 GiB primer read through it before every timed step"
else
    CACHE_NOTE="page cache NOT dropped ($( ((NO_DROP)) && echo "--no-drop" || echo "/proc/sys/vm/drop_caches not writable")): the sides alternate order only"
    say "cannot drop caches: $CACHE_NOTE"
fi

busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
HZ=$(getconf CLK_TCK)
coffer_rev() {
    local rev dirty=""
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
    [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=" + uncommitted changes"
    echo "$rev$dirty"
}

{
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine:   $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, scratch on $(df -P "$SCRATCH" | awk 'NR==2{print $1}')"
    echo "coffer:    $("$COFFER" --version 2>/dev/null || echo coffer) ($([[ $COFFER_BIN == "$ROOT/target/release/coffer" ]] && echo "working tree at $(coffer_rev)" || echo "$COFFER_BIN"))"
    echo "commit:    $(coffer_rev) (the checkout when the run started)"
    echo "rounds:    $ROUNDS per part, alternating which side goes first"
    echo "caches:    $CACHE_NOTE"
    echo "load avg:  at start $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/meta.txt"
cat "$RESULTS/meta.txt" >&2

printf 'part\tstep\tround\tseconds\tcmd_seconds\tuser_s\tsys_s\trc\tothers_cpu_pct\tload1\treport\n' >"$RESULTS/results.tsv"

# timed PART STEP ROUND REPORT CMD...: from the same memory state, runs CMD (stdout to REPORT,
# or to the log when REPORT is -), then sync; appends a row to results.tsv. Never fails: the
# exit code is recorded (a drill that did not pass exits 10, an unmet audit clause too) and
# left in LAST_RC.
LAST_RC=0
timed() {
    local part=$1 step=$2 round=$3 report=$4
    shift 4
    local log="$RESULTS/logs/$part.${step// /-}.$round.log" tf="$RESULTS/time.out" out
    out=$report
    [[ $out == - ]] && out=$log
    drop_caches
    local load1 j0 j1 t0 t1 t2 rc=0 user=0 sys=0
    load1=$(cut -d' ' -f1 /proc/loadavg)
    j0=$(busy_jiffies)
    t0=$(date +%s%N)
    /usr/bin/time -f '%U %S' -o "$tf" "$@" >"$out" 2>>"$log" || rc=$?
    t1=$(date +%s%N)
    sync
    t2=$(date +%s%N)
    j1=$(busy_jiffies)
    read -r user sys < <(tail -n1 "$tf") || true
    [[ $user =~ ^[0-9.]+$ ]] || user=0
    [[ $sys =~ ^[0-9.]+$ ]] || sys=0
    local secs cmd_secs others
    secs=$(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    cmd_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    others=$(awk -v j="$((j1 - j0))" -v hz="$HZ" -v u="$user" -v s="$sys" -v w="$secs" \
        'BEGIN{o=(j/hz-u-s)/w*100; if(o<0)o=0; printf "%.0f", o}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$part" "$step" "$round" "$secs" "$cmd_secs" \
        "$user" "$sys" "$rc" "$others" "$load1" "$report" >>"$RESULTS/results.tsv"
    printf '   %-6s %-22s round %s  %8ss  exit %s  (others %s%%)\n' "$part" "$step" "$round" "$secs" "$rc" "$others" >&2
    LAST_RC=$rc
    if ((rc != 0 && rc != 10)); then
        say "$part $step failed (exit $rc): $(tail -n3 "$log" | tr '\n' ' ')"
    fi
    return 0
}

# order ROUND A B: prints "A B" in odd rounds, "B A" in even ones.
order() { if (($1 % 2)); then echo "$2 $3"; else echo "$3 $2"; fi; }

# ------------------------------------------------------------------ files
files_part() {
    local src=$SCRATCH/data/tree vault=$SCRATCH/files-vault r side
    say "files: copying the Rust toolchain into $src (cap $((TREE_BUDGET >> 20)) MiB)"
    python3 "$ROOT/bench/files_helper.py" copy-tree "$(HOME=$REAL_HOME rustc --print sysroot)" "$src" "$TREE_BUDGET" >&2
    read -r files bytes < <(python3 "$ROOT/bench/files_helper.py" size "$src")
    echo "files:     tree $files files, $bytes bytes ($((bytes >> 20)) MiB)" >>"$RESULTS/meta.txt"
    "$COFFER" --repo "$vault" init >"$RESULTS/logs/files.init.log" 2>&1
    say "files: backing up the tree"
    "$COFFER" --repo "$vault" backup "$src" >"$RESULTS/logs/files.backup.log" 2>&1
    for r in $(seq "$ROUNDS"); do
        for side in $(order "$r" plain drill); do
            settle
            case $side in
            plain)
                timed files "restore" "$r" - "$COFFER" --repo "$vault" restore latest --target "$SCRATCH/restore-$r"
                # Correct data (outside the timing, once): the drill's own checks say the rest.
                if ((r == 1)) && ! diff -rq --no-dereference "$src" "$SCRATCH/restore-$r$src" >"$RESULTS/logs/files.restore-diff.log" 2>&1; then
                    say "files: the plain restore differs from the source (logs/files.restore-diff.log)"
                fi
                ;;
            drill)
                timed files "drill" "$r" "$RESULTS/reports/files-drill-$r.json" \
                    "$COFFER" --repo "$vault" --json drill files --snapshot latest --scratch "$SCRATCH/drill-$r"
                # The drill removed what it restored: the next restore waits for ext4.
                if ((LAST_RC == 0 || LAST_RC == 10)); then
                    sync
                    DELETED_AT=$(date +%s)
                fi
                ;;
            esac
        done
    done
    ((KEEP)) || rm -rf "$SCRATCH"/restore-* "$SCRATCH"/drill-* "$vault" "$SCRATCH/data"
}

# ------------------------------------------------------------------ pg
pg_part() {
    local data=$SCRATCH/pg-data sock=$SCRATCH/sock key=$SCRATCH/pg.key r side
    mkdir -p "$sock"
    chown postgres:postgres "$SCRATCH" "$SCRATCH/home" "$sock"
    PG_DIRS+=("$data")
    psql_() { aspg psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"; }
    say "pg: initdb, pgbench -i -s $SCALE"
    aspg initdb -A trust -U postgres -D "$data" >/dev/null
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$sock'
max_wal_size = 4GB
archive_mode = on
archive_command = '$COFFER pg wal-push --key-file $key %p'
EOF
    aspg "$COFFER" init >/dev/null 2>&1
    aspg "$COFFER" pg export-key "$key" >/dev/null
    aspg pg_ctl start -w -D "$data" -l "$SCRATCH/pg-data.log" >/dev/null
    aspg pgbench -q -i -s "$SCALE" >/dev/null 2>&1
    psql_ "checkpoint"
    local dbsize
    dbsize=$(psql_ "select pg_database_size('postgres')")
    say "pg: database $((dbsize >> 20)) MiB; base backup"
    aspg "$COFFER" pg backup --key-file "$key" --cluster bench >"$RESULTS/logs/pg.backup.log" 2>&1
    # Some WAL to replay on either side of the target.
    aspg pgbench -n -c 2 -T 10 >/dev/null 2>&1
    sleep 1
    local target expect
    target=$(psql_ "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
    sleep 1
    expect=$(psql_ "select sum(abalance) from pgbench_accounts")
    aspg pgbench -n -c 2 -T 5 >/dev/null 2>&1
    local last
    last=$(psql_ "select pg_walfile_name(pg_switch_wal())")
    until [[ $(psql_ "select coalesce(last_archived_wal, '') >= '$last' from pg_stat_archiver") == t ]]; do sleep 0.5; done
    # Nothing else runs during the timed steps: the restores read only the vault.
    aspg pg_ctl stop -m fast -D "$data" >/dev/null
    echo "pg:        pgbench scale $SCALE, database $((dbsize >> 20)) MiB; target $target (sum(abalance) $expect)" >>"$RESULTS/meta.txt"
    for r in $(seq "$ROUNDS"); do
        for side in $(order "$r" plain drill); do
            case $side in
            plain)
                PG_DIRS+=("$SCRATCH/pg-restore-$r")
                timed pg "restore --start" "$r" - \
                    "${ASPG[@]}" "$COFFER" pg restore --time "$target" --start --target "$SCRATCH/pg-restore-$r"
                local got=
                got=$(aspg psql -X -A -t -h "$SCRATCH/pg-restore-$r" -c "select sum(abalance) from pgbench_accounts" 2>/dev/null) || true
                [[ $got == "$expect" ]] || say "pg: plain restore: sum(abalance) $got, expected $expect"
                aspg pg_ctl stop -m immediate -D "$SCRATCH/pg-restore-$r" >/dev/null 2>&1 || true
                ;;
            drill)
                timed pg "drill" "$r" "$RESULTS/reports/pg-drill-$r.json" \
                    "${ASPG[@]}" "$COFFER" --json drill pg --time "$target" --scratch "$SCRATCH/pg-drill-$r"
                ;;
            esac
        done
    done
    ((KEEP)) || rm -rf "$SCRATCH"/pg-restore-* "$SCRATCH"/pg-drill-* "$data" "$SCRATCH/pg-vault"
}

# ------------------------------------------------------------------ audit
audit_part() {
    local vault=$SCRATCH/audit-vault src=$SCRATCH/audit-src conf=$SCRATCH/coffer.toml r side
    local workers
    workers=$(nproc)
    mkdir -p "$src"
    for i in $(seq 20); do head -c $((i * 1000)) /dev/urandom >"$src/file-$i"; done
    "$COFFER" --repo "$vault" init >"$RESULTS/logs/audit.init.log" 2>&1
    say "audit: making $NSNAP snapshots of a small changing tree ($workers processes)"
    local t0 t1 w
    t0=$(date +%s.%N)
    for w in $(seq "$workers"); do
        (
            for i in $(seq "$w" "$workers" "$NSNAP"); do
                echo "$i" >"$src/changing-$w"
                "$COFFER" --repo "$vault" backup "$src" >/dev/null 2>>"$RESULTS/logs/audit.backups.log" ||
                    echo "backup $i failed" >>"$RESULTS/logs/audit.backups.log"
            done
        ) &
    done
    wait
    t1=$(date +%s.%N)
    local made
    made=$("$COFFER" --repo "$vault" --json snapshots | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d if isinstance(d, list) else d.get("snapshots", [])))')
    printf 'audit:     %s snapshots made in %.0f s (%s processes of coffer backup)\n' "$made" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$workers" >>"$RESULTS/meta.txt"
    printf 'audit\tsetup\t%s\t%s\n' "$made" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')" >"$RESULTS/audit-setup.tsv"
    say "audit: $made snapshots in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}') s"
    cat >"$conf" <<EOF
[daemon]
state-dir = "$SCRATCH/state"

[repositories.main]
location = "$vault"

[files.bench]
repository = "main"
paths = ["$src"]
schedule = "daily"
EOF
    "$COFFER" --config "$conf" config check >"$RESULTS/logs/audit.config-check.log" 2>&1 ||
        say "audit: coffer config check refused $conf (logs/audit.config-check.log)"
    for r in $(seq "$ROUNDS"); do
        for side in $(order "$r" reference audit); do
            case $side in
            reference)
                timed audit "snapshots" "$r" - "$COFFER" --repo "$vault" --json snapshots
                timed audit "verify" "$r" - "$COFFER" --repo "$vault" verify
                ;;
            audit)
                timed audit "audit" "$r" - "$COFFER" --config "$conf" audit --format json --out "$RESULTS/reports/audit-$r.json"
                timed audit "audit html" "$r" - "$COFFER" --config "$conf" audit --format html --out "$RESULTS/reports/audit-$r.html"
                ;;
            esac
        done
    done
    ((KEEP)) || rm -rf "$vault" "$src"
}

want files && files_part
want pg && pg_part
want audit && audit_part

echo "load avg:  at end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/meta.txt"
rm -f "$RESULTS/time.out"
echo >&2
python3 "$ROOT/bench/drill_helper.py" report "$RESULTS" | tee "$RESULTS/report.txt"
echo
echo "raw numbers, logs, drill reports and this table: $RESULTS"
