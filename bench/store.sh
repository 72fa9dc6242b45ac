#!/bin/sh
# LocalVault throughput against plain write+fsync+rename on the same disk, in one run.
# Prints a table (case, coffer, reference, ratio) and a breakdown of a 4 MiB put.
#
#   bench/store.sh [--dir DIR] [--quick]
#
# DIR: where to put the vault and the reference files (a fresh subdirectory, removed at
# exit); by default under the system temp directory. Put it on the disk you care about.
set -eu
cd "$(dirname "$0")/.."
exec cargo run --quiet --release -p coffer-store --example vault_bench -- "$@"
