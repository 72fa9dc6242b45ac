#!/usr/bin/env bash
# Installs the S3 test servers that the S3Store tests start: moto (plumbing, SigV4, IAM) and
# LocalStack (the Object Lock oracle), each in its own virtualenv, from the pinned,
# known-good requirement sets in .ci/s3-pins/ (measured in shared/notes/s3-test-peers.md).
# Two environments because their pins disagree (boto3/botocore).
#
#   DIR=${COFFER_S3_VENV:-$HOME/.cache/coffer/s3-venv}
#   DIR/moto/bin/moto_server           moto 5.2.5 (moto[s3] + flask, flask-cors)
#   DIR/localstack/bin/python          localstack-core 2026.3.0 on CPython 3.13
#                                      (4.4.0 on 3.11 when no 3.13 is installed)
#   DIR/localstack-events/bin/python   the same with SQS + EventBridge (moto-ext), 3.13 only
#   DIR/*/.pins-sha256                 stamp: an environment whose pins are unchanged is kept
#
# Idempotent and quick when nothing changed. The tests find DIR the same way
# (crates/testkit/src/s3.rs); a missing server fails the tests that need it.
set -euo pipefail
cd "$(dirname "$0")/.."
pins=.ci/s3-pins
dir=${COFFER_S3_VENV:-$HOME/.cache/coffer/s3-venv}
mkdir -p "$dir"

find_python() {
    # $1: minimum minor version of Python 3.
    local root candidates=()
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
        # pyenv's python3.13 shim exits 127 on these machines: call the interpreter by path.
        candidates+=("$root/versions/3.13.0/bin/python3.13")
        for p in "$root"/versions/3.1[3-9]*/bin/python3 "$root"/versions/3.12*/bin/python3 "$root"/versions/3.11*/bin/python3; do
            candidates+=("$p")
        done
    fi
    candidates+=(/usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11 /usr/bin/python3)
    for p in "${candidates[@]}"; do
        if [ -x "$p" ] && "$p" -c "import sys, venv; sys.exit(0 if sys.version_info >= (3, $1) else 1)" 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# make_env NAME PYTHON REQUIREMENTS
make_env() {
    local name=$1 py=$2 req=$3 env="$dir/$1"
    local want
    want="$(sha256sum "$req" | cut -d' ' -f1) $("$py" -c 'import sys; print(sys.version.split()[0])')"
    if [ -f "$env/.pins-sha256" ] && [ "$(cat "$env/.pins-sha256")" = "$want" ]; then
        echo "s3-venv: $name up to date in $env"
        return 0
    fi
    echo "s3-venv: installing $name into $env ($py, $req)"
    rm -rf "$env"
    "$py" -m venv "$env"
    "$env/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$req"
    echo "$want" >"$env/.pins-sha256"
}

start=$(date +%s)
py_moto=$(find_python 11) || { echo "s3-venv: no Python >= 3.11 found" >&2; exit 1; }
make_env moto "$py_moto" "$pins/moto-5.2.5-s3.requirements.txt"

if py_ls=$(find_python 13); then
    make_env localstack "$py_ls" "$pins/localstack-2026.3.0-py313.requirements.txt"
    # The CloudTrail emulator's bus (SQS + EventBridge; crates/testkit/src/cloudtrail.rs):
    # LocalStack's EventBridge needs moto-ext, which the S3-only set leaves out.
    make_env localstack-events "$py_ls" "$pins/localstack-events-2026.3.0-py313.requirements.txt"
else
    # LocalStack 2026.x needs Python >= 3.12; 4.4.0 runs on 3.11 (it lets compliance be
    # turned to governance: S3Store refuses that itself).
    make_env localstack "$py_moto" "$pins/localstack-4.4.0-py311.requirements.txt"
fi
echo "s3-venv: ready in $(( $(date +%s) - start )) s"
