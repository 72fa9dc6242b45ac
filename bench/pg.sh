#!/usr/bin/env bash
# Coffer's PostgreSQL backup against pgBackRest on the same database, in one run; prints a table.
#
#   bench/pg.sh [--scale N] [--keep] [--dir DIR] [--coffer-bin PATH]
#
#   --scale N          pgbench scale [default: 10]; the issue asks for 50, which takes too
#                      long on the shared 2-core machine (see bench/README.md)
#   --keep             keep the scratch directory (clusters, repositories) at the end
#   --dir DIR          scratch directory [default: target/bench-pg]; everything in it is
#                      deleted first
#   --coffer-bin PATH  benchmark this coffer binary instead of building a release one
#
# One PostgreSQL 15 cluster (initdb in the scratch directory, unix socket only), archived
# into both repositories at once (archive_command = coffer pg wal-push && pgbackrest
# archive-push). Data: pgbench -i -s N plus a table of random bytes as large as
# pgbench_accounts (pgbench's own rows compress about 20x). Steps, each timed (wall):
#   1. base backup: `coffer pg backup` and `pgbackrest backup --type=full`;
#   2. a pgbench run with random payload inserts, a recorded target time in its middle;
#   3. restore + recovery to that time, until the server is promoted and answers:
#      `coffer pg restore --time T --start` and `pgbackrest restore --type=time` + pg_ctl
#      start; the restored row counts are compared;
#   4. WAL push throughput: the segments of the load and the run pushed one call per segment (as
#      archive_command does) into fresh repositories, in segments/s;
#   5. repository sizes (du -sb) after everything.
# pgBackRest: zstd (level 3, its default), process-max=2, AES-256-CBC encryption (Coffer
# encrypts too), synchronous archive-push (archive-async off, like Coffer's wal-push).
#
# Needs root (apt-get for pgbackrest, and to run the servers as `postgres`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCALE=10
KEEP=0
SCRATCH=$ROOT/target/bench-pg
COFFER_BIN=

while (($#)); do
    case $1 in
    --scale) SCALE=$2; shift ;;
    --keep) KEEP=1 ;;
    --dir) SCRATCH=$2; shift ;;
    --coffer-bin) COFFER_BIN=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "pg.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

PGBIN=/usr/lib/postgresql/15/bin
PW=bench-password-not-secret
say() { printf '== %s\n' "$*" >&2; }

[[ -x $PGBIN/postgres ]] || { echo "pg.sh: PostgreSQL 15 is not installed ($PGBIN)" >&2; exit 2; }
if ! command -v pgbackrest >/dev/null; then
    say "installing pgbackrest"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null
fi

SCRATCH=$(realpath -m "$SCRATCH")
case $SCRATCH in
/ | "$ROOT" | "$HOME") echo "pg.sh: refusing to use $SCRATCH as scratch directory" >&2; exit 2 ;;
esac
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"

if [[ -z $COFFER_BIN ]]; then
    say "building coffer (release)"
    (cd "$ROOT" && cargo build --release -q -p coffer-cli)
    COFFER_BIN=$ROOT/target/release/coffer
fi
# A copy: a rebuild during the run does not change what is measured.
cp "$COFFER_BIN" "$SCRATCH/coffer"
COFFER=$SCRATCH/coffer

DATA=$SCRATCH/data
SOCK=$SCRATCH/sock
VAULT=$SCRATCH/coffer-vault
PGBR_REPO=$SCRATCH/pgbackrest-repo
CONF=$SCRATCH/pgbackrest.conf
mkdir -p "$SOCK" "$SCRATCH/home" "$SCRATCH/pgbr-log" "$SCRATCH/pgbr-lock" "$SCRATCH/pgbr-spool"
cat >"$CONF" <<EOF
[global]
repo1-path=$PGBR_REPO
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$PW
compress-type=zst
process-max=2
repo1-retention-full=2
start-fast=y
log-level-console=warn
log-level-file=off
log-path=$SCRATCH/pgbr-log
lock-path=$SCRATCH/pgbr-lock
spool-path=$SCRATCH/pgbr-spool

[bench]
pg1-path=$DATA
pg1-socket-path=$SOCK
pg1-user=postgres
EOF
chown -R postgres:postgres "$SCRATCH"

# Everything PostgreSQL-side runs as postgres, with both repositories in its environment.
aspg() {
    setpriv --reuid=postgres --regid=postgres --init-groups \
        env HOME="$SCRATCH/home" PATH="$PGBIN:$PATH" PGHOST="$SOCK" PGUSER=postgres PGDATABASE=postgres \
        COFFER_REPO="$VAULT" COFFER_PASSWORD="$PW" "$@"
}
psql_() { aspg psql -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
declare -A R

# Before each timed command: the page cache dropped (both tools read the database and the
# repositories from disk) and a 2 GiB primer read through it and dropped again
# (bench/caches.sh): Coffer always goes first here.
# shellcheck source=bench/caches.sh
source "$ROOT/bench/caches.sh"
caches_init "$SCRATCH/primer" 2048

stop_all() {
    for d in "$DATA" "$SCRATCH/r-coffer" "$SCRATCH/r-pgbr"; do
        [[ -f $d/postmaster.pid ]] && aspg pg_ctl stop -m immediate -D "$d" >/dev/null 2>&1 || true
    done
}
trap stop_all EXIT

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "cluster: initdb, pgbench -i -s $SCALE, random payload"
aspg initdb -A trust -U postgres -D "$DATA" >/dev/null
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$SOCK'
max_wal_size = 4GB
archive_mode = on
archive_command = '$COFFER pg wal-push --key-file $SCRATCH/coffer.key %p && pgbackrest --config=$CONF --stanza=bench archive-push %p'
EOF
aspg "$COFFER" init >/dev/null
# archive_command, the base backup and the restore open the repository with the exported
# key (docs/postgres.md), as pgBackRest reads its cipher pass from its configuration: no
# password key derivation (Argon2id, ~0.2 s) in any timed step.
aspg "$COFFER" pg export-key "$SCRATCH/coffer.key" >/dev/null
aspg pg_ctl start -w -D "$DATA" -l "$SCRATCH/data.log" >/dev/null
aspg pgbackrest --config="$CONF" --stanza=bench stanza-create >/dev/null
# The WAL push measurement uses every segment from here on (the load's and the run's).
FIRST_SEG=$(psql_ "select pg_walfile_name(pg_current_wal_lsn())")
aspg pgbench -q -i -s "$SCALE" >/dev/null 2>&1
# 96 random bytes a row, as many rows as pgbench_accounts.
psql_ "create table payload (id bigserial primary key, data bytea);
       insert into payload (data) select decode(md5(random()::text) || md5(random()::text) || md5(random()::text)
         || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex') from generate_series(1, $SCALE * 100000)"
psql_ "checkpoint"
DBSIZE=$(psql_ "select pg_database_size('postgres')")
say "database: $((DBSIZE >> 20)) MiB"

say "base backups"
drop_caches
t0=$(now); aspg "$COFFER" pg backup --key-file "$SCRATCH/coffer.key" --cluster bench >"$SCRATCH/coffer-backup.log"; t1=$(now)
R[backup_coffer]=$(secs "$t0" "$t1")
drop_caches
t0=$(now); aspg pgbackrest --config="$CONF" --stanza=bench backup --type=full; t1=$(now)
R[backup_pgbr]=$(secs "$t0" "$t1")

say "pgbench run with random payload, target time in the middle"
cat >"$SCRATCH/payload.sql" <<'EOF'
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO payload (data) VALUES (decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex'));
END;
EOF
chown postgres "$SCRATCH/payload.sql"
aspg pgbench -n -c 2 -T 15 -f "$SCRATCH/payload.sql" >/dev/null 2>&1
sleep 1
# The same instant in the forms each tool reads (ms: pgBackRest's precision).
NOW=$(psql_ "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')")
TARGET=${NOW/ /T}Z
TARGET_PGBR="$NOW+00"
sleep 1
# Nothing runs between the two sleeps: the rows committed by the target.
EXPECT=$(psql_ "select count(*) from payload")
aspg pgbench -n -c 2 -T 15 -f "$SCRATCH/payload.sql" >/dev/null 2>&1
LAST_SEG=$(psql_ "select pg_walfile_name(pg_switch_wal())")
until [[ $(psql_ "select coalesce(last_archived_wal, '') >= '$LAST_SEG' from pg_stat_archiver") == t ]]; do sleep 0.5; done
SYSID=$(psql_ "select system_identifier from pg_control_system()")

say "restore + recovery to $TARGET"
drop_caches
t0=$(now)
aspg "$COFFER" pg restore --key-file "$SCRATCH/coffer.key" --time "$TARGET" --start --target "$SCRATCH/r-coffer" >/dev/null
t1=$(now)
R[restore_coffer]=$(secs "$t0" "$t1")
GOT_COFFER=$(aspg psql -X -A -t -h "$SCRATCH/r-coffer" -c "select count(*) from payload")
aspg pg_ctl stop -m immediate -D "$SCRATCH/r-coffer" >/dev/null
drop_caches
t0=$(now)
aspg pgbackrest --config="$CONF" --stanza=bench restore --pg1-path="$SCRATCH/r-pgbr" \
    --type=time --target="$TARGET_PGBR" --target-action=promote >/dev/null
aspg pg_ctl start -w -t 3600 -D "$SCRATCH/r-pgbr" -l "$SCRATCH/r-pgbr.log" \
    -o "-c listen_addresses='' -c unix_socket_directories='$SCRATCH/r-pgbr' -c archive_mode=off" >/dev/null
until [[ $(aspg psql -X -A -t -h "$SCRATCH/r-pgbr" -c "select pg_is_in_recovery()" 2>/dev/null) == f ]]; do sleep 0.2; done
t1=$(now)
R[restore_pgbr]=$(secs "$t0" "$t1")
GOT_PGBR=$(aspg psql -X -A -t -h "$SCRATCH/r-pgbr" -c "select count(*) from payload")
aspg pg_ctl stop -m immediate -D "$SCRATCH/r-pgbr" >/dev/null

say "WAL push throughput (fresh repositories, one call per segment)"
SEGS=$SCRATCH/segments
aspg mkdir -p "$SEGS"
mapfile -t NAMES < <(aspg "$COFFER" pg info --json | python3 -c '
import json, sys
d = json.load(sys.stdin)["clusters"][0]
first, last = sys.argv[1], sys.argv[2]
for n in range(int(first[8:16], 16) * 256 + int(first[16:], 16), int(last[8:16], 16) * 256 + int(last[16:], 16) + 1):
    print(first[:8] + "%08X%08X" % (n // 256, n % 256))' "$FIRST_SEG" "$LAST_SEG")
for n in "${NAMES[@]}"; do
    aspg "$COFFER" pg wal-fetch --prefetch 0 --sysid "$SYSID" "$n" "$SEGS/$n"
done
NSEG=${#NAMES[@]}
sed "s|^repo1-path=.*|repo1-path=$SCRATCH/pgbr-push|" "$CONF" >"$SCRATCH/push.conf"
chown postgres "$SCRATCH/push.conf"
aspg env COFFER_REPO="$SCRATCH/coffer-push" "$COFFER" init >/dev/null
aspg env COFFER_REPO="$SCRATCH/coffer-push" "$COFFER" pg export-key "$SCRATCH/coffer-push.key" >/dev/null
aspg pgbackrest --config="$SCRATCH/push.conf" --stanza=bench stanza-create >/dev/null
drop_caches
t0=$(now)
for n in "${NAMES[@]}"; do
    aspg env COFFER_REPO="$SCRATCH/coffer-push" COFFER_PASSWORD= "$COFFER" pg wal-push --key-file "$SCRATCH/coffer-push.key" "$SEGS/$n"
done
t1=$(now)
R[push_coffer]=$(secs "$t0" "$t1")
drop_caches
t0=$(now)
for n in "${NAMES[@]}"; do aspg pgbackrest --config="$SCRATCH/push.conf" --stanza=bench archive-push "$SEGS/$n"; done
t1=$(now)
R[push_pgbr]=$(secs "$t0" "$t1")

aspg pg_ctl stop -m fast -D "$DATA" >/dev/null
SIZE_COFFER=$(du -sb "$VAULT" | cut -f1)
SIZE_PGBR=$(du -sb "$PGBR_REPO" | cut -f1)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

rate() { python3 -c "print(f'{$1 / $2:.1f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
cat <<EOF

PostgreSQL backup: coffer vs pgBackRest $(pgbackrest version | cut -d' ' -f2) — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores
pgbench scale $SCALE + random payload, database $((DBSIZE >> 20)) MiB; load average at start $LOAD_START, at end $LOAD_END
pgBackRest: zstd, process-max=2, aes-256-cbc, archive-push synchronous. Coffer: $("$COFFER" --version)

| step | coffer | pgBackRest | coffer/pgBackRest (time, size: below 1 is better) |
| --- | --- | --- | --- |
| base backup (s) | ${R[backup_coffer]} | ${R[backup_pgbr]} | $(ratio "${R[backup_coffer]}" "${R[backup_pgbr]}") |
| restore + recovery to a time, until promoted (s) | ${R[restore_coffer]} | ${R[restore_pgbr]} | $(ratio "${R[restore_coffer]}" "${R[restore_pgbr]}") |
| repository size (MiB) | $((SIZE_COFFER >> 20)) | $((SIZE_PGBR >> 20)) | $(ratio "$SIZE_COFFER" "$SIZE_PGBR") |
| WAL push, $NSEG segments (segments/s) | $(rate "$NSEG" "${R[push_coffer]}") | $(rate "$NSEG" "${R[push_pgbr]}") | $(ratio "${R[push_pgbr]}" "${R[push_coffer]}") (rate: above 1 is better) |

restored rows of payload at the target: coffer $GOT_COFFER, pgBackRest $GOT_PGBR (committed by then: $EXPECT)
EOF
if [[ $GOT_COFFER != "$GOT_PGBR" ]]; then echo "RESTORES DIFFER" >&2; exit 1; fi
if ((!KEEP)); then rm -rf "$SCRATCH"; fi
