#!/bin/bash
# A/B of Coffer binaries on one step, restic alongside as the load reference.
#
#   bench/ab.sh DATA RUNS STEPS BIN...     e.g. bench/ab.sh /data/tree 3 restore,first OLD NEW
#
# STEPS: comma-separated of first (init + backup into a new repository), nochange (backup
# into the repository prepared at the start), restore (latest, into a new directory),
# verify (--read-data). Each binary (and restic) gets its own repository holding one backup
# of DATA; then, for every step, RUNS rounds of every tool, the order reversed every other
# round, the page cache dropped (with the primer of bench/caches.sh) before each command,
# and the time taken up to a final `sync`. Restores and first-backup repositories are deleted
# after each round, and the next round waits 65 s (ext4 without a journal scans recently
# freed inodes: see bench/files.sh). On a shared machine compare the binaries' times within
# a round and their user+sys CPU; peak RSS is exact. Scratch: $AB_DIR [target/bench-ab],
# deleted first. Output: one TSV line per command on stdout.
set -euo pipefail
(($# >= 4)) || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
DATA=$(realpath "$1") RUNS=$2 STEPS=$3
shift 3
BINS=("$@")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
S=$(realpath -m "${AB_DIR:-$ROOT/target/bench-ab}")
case $S in / | "$ROOT" | "$HOME") echo "ab.sh: refusing to use $S" >&2; exit 2 ;; esac
rm -rf "$S"
mkdir -p "$S/repos" "$S/out"
# shellcheck source=bench/caches.sh
source "$ROOT/bench/caches.sh"
caches_init "$S/primer" 2048
export COFFER_PASSWORD=bench-password-not-secret RESTIC_PASSWORD=bench-password-not-secret RESTIC_CACHE_DIR=$S/rcache
unset COFFER_REPO RESTIC_REPOSITORY COFFER_PASSWORD_FILE
tools=()
for i in "${!BINS[@]}"; do
    cp "${BINS[$i]}" "$S/coffer$i"
    "$S/coffer$i" init --repo "$S/repos/c$i" >/dev/null 2>&1
    "$S/coffer$i" backup --repo "$S/repos/c$i" "$DATA" >/dev/null 2>&1
    tools+=("c$i")
done
restic -r "$S/repos/restic" init --repository-version 2 -q
restic -r "$S/repos/restic" backup -q "$DATA" >/dev/null
tools+=(restic)
sync
sleep 65

runone() { # STEP TOOL RUN
    local step=$1 t=$2 r=$3 out=$S/out/$2-$3 fresh=$S/repos/f-$2-$3 cmd
    local bin=$S/coffer${t#c} repo=$S/repos/$t
    case $step in
    first)
        if [[ $t == restic ]]; then
            restic -r "$fresh" init --repository-version 2 -q
            cmd=(restic -r "$fresh" backup -q "$DATA")
        else
            "$bin" init --repo "$fresh" >/dev/null 2>&1
            cmd=("$bin" backup --repo "$fresh" "$DATA")
        fi
        ;;
    nochange) if [[ $t == restic ]]; then cmd=(restic -r "$repo" backup -q "$DATA"); else cmd=("$bin" backup --repo "$repo" "$DATA"); fi ;;
    restore)
        mkdir -p "$out"
        if [[ $t == restic ]]; then cmd=(restic -r "$repo" restore latest --target "$out" -q); else cmd=("$bin" restore --repo "$repo" latest --target "$out"); fi
        ;;
    verify) if [[ $t == restic ]]; then cmd=(restic -r "$repo" check --read-data); else cmd=("$bin" verify --repo "$repo" --read-data); fi ;;
    *) echo "ab.sh: unknown step $step" >&2; exit 2 ;;
    esac
    drop_caches
    local t0 t1 rss u s status=ok
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$S/time.out" "${cmd[@]}" >"$S/last.log" 2>&1 || status=FAILED
    sync
    t1=$(date +%s%N)
    read -r rss u s < <(tail -n1 "$S/time.out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$r" "$t" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')" \
        "$u" "$s" "$rss" "$(cut -d' ' -f1 /proc/loadavg)" "$status"
}

printf 'step\trun\ttool\tsecs\tuser\tsys\trss_kib\tload1\tstatus\n'
for step in ${STEPS//,/ }; do
    for r in $(seq 1 "$RUNS"); do
        order=("${tools[@]}")
        if ((r % 2 == 0)); then
            order=()
            for ((k = ${#tools[@]} - 1; k >= 0; k--)); do order+=("${tools[$k]}"); done
        fi
        for t in "${order[@]}"; do runone "$step" "$t" "$r"; done
        if [[ $step == restore || $step == first ]]; then
            rm -rf "$S"/out/* "$S"/repos/f-*
            sync
            sleep 65
        fi
    done
done
rm -rf "$S"
