# shellcheck shell=bash
# Shared shell code of the benchmarks (sourced; sourced by bench/scale.sh). Set BENCH
# (the script's name, for messages) and ROOT (the checkout) before sourcing.
#
# What is here: messages, the scratch directory's safety check, the coffer build, the
# machine's busy time (others' CPU share of a step), and the moto S3 server with per-step
# request counting from its log. bench/caches.sh (page cache drop and primer) stays separate.

say() { printf '== %s\n' "$*" >&2; }
die() {
    echo "$BENCH: $*" >&2
    exit 1
}

# prepare_scratch DIR: refuse dangerous directories and directories this family of scripts
# did not make (they hold .coffer-bench), then wipe DIR and mark it as ours. Prints the
# absolute path.
prepare_scratch() {
    local dir
    dir=$(realpath -m "$1")
    case $dir in
    / | "$ROOT" | "$HOME" | /work | /tmp) die "refusing to use $dir as scratch directory" ;;
    esac
    if [[ -d $dir && ! -e $dir/.coffer-bench && -n $(ls -A "$dir") ]]; then
        die "$dir is not empty and not a scratch directory of this script; choose another --dir"
    fi
    rm -rf "$dir"
    mkdir -p "$dir/bin"
    touch "$dir/.coffer-bench"
    echo "$dir"
}

# build_coffer BIN: prints the binary to measure: BIN, or a release build of the checkout.
build_coffer() {
    if [[ -n $1 ]]; then
        [[ -x $1 ]] || die "--coffer-bin $1 is not an executable"
        realpath "$1"
        return
    fi
    say "building coffer (release)"
    (cd "$ROOT" && cargo build --release -p coffer-cli --quiet) >&2 ||
        die "cargo build --release -p coffer-cli failed; fix the build or pass --coffer-bin PATH"
    echo "$ROOT/target/release/coffer"
}

# coffer_rev: the checkout's commit, "+ uncommitted changes" when it has them.
coffer_rev() {
    local rev dirty=""
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || {
        echo unknown
        return
    }
    [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] && dirty=" + uncommitted changes"
    echo "$rev$dirty"
}

# busy jiffies of the whole machine (for "others CPU%": the machine's busy time during a
# step minus the step's own user+sys)
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
HZ=$(getconf CLK_TCK)
others_cpu_pct() { # J0 J1 USER SYS SECS
    awk -v j="$(($2 - $1))" -v hz="$HZ" -v u="$3" -v s="$4" -v w="$5" \
        'BEGIN{ if (w <= 0) { print 0; exit } o=(j/hz-u-s)/w*100; if(o<0)o=0; printf "%.0f", o}'
}

# ------------------------------------------------------------------ moto
MOTO_VENV=${COFFER_S3_VENV:-$HOME/.cache/coffer/s3-venv}
MOTO_PID=

# free_port: an unused 127.0.0.1 port
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# moto_start DIR LOG: starts moto (its own process group) on a free port with its working
# directory DIR, logging to LOG; sets MOTO_PID and MOTO_PORT and waits until it answers.
moto_start() {
    local dir=$1 log=$2 i
    [[ -x $MOTO_VENV/moto/bin/moto_server ]] || die "moto is not installed in $MOTO_VENV (run .ci/s3-venv.sh)"
    MOTO_PORT=$(free_port)
    mkdir -p "$dir"
    (cd "$dir" && exec setsid "$MOTO_VENV/moto/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT") >"$log" 2>&1 &
    MOTO_PID=$!
    for i in $(seq 900); do
        curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && return 0
        kill -0 "$MOTO_PID" 2>/dev/null || die "moto exited; see $log"
        ((i < 900)) || die "moto not ready after 90 s; see $log"
        sleep 0.1
    done
}

# localstack_start DIR LOG: starts LocalStack (S3 only, its own process group) on a free port
# with its state in DIR, logging one line per request to LOG; sets MOTO_PID and MOTO_PORT
# (the names of "the S3 server" here) and waits until S3 is running.
localstack_start() {
    local dir=$1 log=$2 i body
    [[ -x $MOTO_VENV/localstack/bin/python ]] || die "LocalStack is not installed in $MOTO_VENV (run .ci/s3-venv.sh)"
    MOTO_PORT=$(free_port)
    mkdir -p "$dir"
    (cd "$dir" && GATEWAY_LISTEN=127.0.0.1:$MOTO_PORT LOCALSTACK_HOST=127.0.0.1:$MOTO_PORT SERVICES=s3 \
        EAGER_SERVICE_LOADING=1 GATEWAY_SERVER=hypercorn DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
        DNS_ADDRESS=0 LOCALSTACK_VOLUME_DIR=$dir/volume TMPDIR=$dir \
        exec setsid "$MOTO_VENV/localstack/bin/python" -m localstack.runtime.main) >"$log" 2>&1 &
    MOTO_PID=$!
    for i in $(seq 900); do
        body=$(curl -fsS "http://127.0.0.1:$MOTO_PORT/_localstack/health" 2>/dev/null || true)
        [[ $body == *'"s3": "running"'* || $body == *'"s3":"running"'* ]] && return 0
        kill -0 "$MOTO_PID" 2>/dev/null || die "LocalStack exited; see $log"
        ((i < 900)) || die "LocalStack not ready after 90 s; see $log"
        sleep 0.1
    done
}

# stop_group PID: stops the process group PID leads (started with setsid), TERM then KILL.
stop_group() {
    local pid=$1
    [[ -n $pid ]] || return 0
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

# moto_lock_bucket ENDPOINT BUCKET LOG: an Object Lock bucket with versioning, made with
# moto's boto3: moto's GetBucketVersioning reply is unreadable by the AWS SDK for Rust
# (quirk get-bucket-versioning-unparseable in docs/s3-compatibility.md), so `coffer vault
# init` cannot check the bucket there.
moto_lock_bucket() {
    "$MOTO_VENV/moto/bin/python" - "$1" "$2" >"$3" 2>&1 <<'PY' || die "cannot create bucket $2; see $3"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="coffer-admin", aws_secret_access_key="secret-of-admin")
s3.create_bucket(Bucket=sys.argv[2], ObjectLockEnabledForBucket=True)
s3.put_bucket_versioning(Bucket=sys.argv[2], VersioningConfiguration={"Status": "Enabled"})
PY
}

# log_lines FILE: its number of lines (the next step's requests start after them)
log_lines() { wc -l <"$1"; }

# count_requests LOG FROM TO: the server's requests in log lines FROM..TO, counted by kind:
# prints "<total>\t<N kind, M kind, …>" (most first). LocalStack: by operation; moto
# (werkzeug): by method and sub-resource (PUT?retention, HEAD?versionId, …), where a bucket
# listing (a prefix that is empty or ends in "/") is "LIST" or "LIST?versions" and a
# ListObjectVersions of one key (a prefix naming an object) is "GET?versions-of-key".
count_requests() {
    sed -n "$2,$3p" "$1" | python3 -c '
import collections, re, sys, urllib.parse
c = collections.Counter()
for line in sys.stdin:
    m = re.search(r"AWS s3\.(\w+) =>", line)  # LocalStack
    if not m:  # moto (werkzeug): "METHOD /bucket/key?sub=... HTTP/1.1" STATUS
        m = re.search(r"\"(?:\x1b\[[0-9;]*m)*(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP/[0-9.]+", line)
        if m and not m.group(2).startswith("/moto-api"):
            path, _, q = m.group(2).partition("?")
            params = urllib.parse.parse_qs(q, keep_blank_values=True)
            if m.group(1) == "GET" and path.rstrip("/").count("/") == 1 and (
                    "versions" in params or "list-type" in params or "delimiter" in params or "prefix" in params):
                prefix = params.get("prefix", [""])[0]
                if prefix == "" or prefix.endswith("/"):
                    c["LIST?versions" if "versions" in params else "LIST"] += 1
                else:
                    c["GET?versions-of-key" if "versions" in params else "LIST-of-key"] += 1
                continue
            sub = q.split("&")[0].split("=")[0] if q else ""
            c[m.group(1) + ("?" + sub if sub and sub not in ("x-id",) else "")] += 1
        continue
    c[m.group(1)] += 1
print(sum(c.values()), ", ".join(f"{n} {k}" for k, n in c.most_common()) or "-", sep="\t")'
}
