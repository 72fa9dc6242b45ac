"""bench/daemon.sh's arithmetic and log reading (the daemon's JSON log lines, docs/monitoring.md).

    daemon_helper.py latency LOG          -> "N MEDIAN_MS MAX_MS" (started events: timestamp - slot)
    daemon_helper.py scrape TIMES         -> "MEDIAN_MS P90_MS" (curl time_total lines, seconds)
    daemon_helper.py data DIR MIB         writes MIB MiB of files (fixed seed) into DIR
    daemon_helper.py run-time LOG JOB     -> seconds from JOB's first `started` event to its run event
    daemon_helper.py ratio "H…" "D…"      -> "HAND DAEMON RATIO" (medians, seconds)
"""

import json
import os
import random
import statistics
import sys
from datetime import datetime


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def events(path):
    for line in open(path, encoding="utf-8", errors="replace"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict):
            yield e


def is_started(e):
    return e.get("message", "").endswith(" started") and "attempt" in e


def latency(path):
    d = [
        (ts(e["timestamp"]) - ts(e["slot"])).total_seconds() * 1000
        for e in events(path)
        if is_started(e) and e.get("attempt") == 1 and e.get("slot") and not e.get("late")
    ]
    if not d:
        print("0 - -")
        return
    print(len(d), f"{statistics.median(d):.1f}", f"{max(d):.1f}")


def scrape(path):
    t = sorted(float(x) * 1000 for x in open(path) if x.strip())
    print(f"{statistics.median(t):.2f}", f"{t[int(len(t) * 0.9)]:.2f}")


def data(d, mib):
    # 64 files of random bytes; every fourth repeats the one before, so deduplication has
    # something to do, as in a real tree.
    os.makedirs(d, exist_ok=True)
    rng = random.Random(13)
    each = int(mib) * 1024 * 1024 // 64
    prev = b""
    for i in range(64):
        blob = prev if i % 4 == 3 else rng.randbytes(each)
        with open(os.path.join(d, f"f{i:02d}"), "wb") as f:
            f.write(blob)
        prev = blob


def run_time(path, job):
    start = end = None
    for e in events(path):
        if e.get("job") != job:
            continue
        if is_started(e) and start is None:
            start = ts(e["timestamp"])
        elif "duration_ms" in e and e.get("outcome") in ("success", "warning"):
            end = ts(e["timestamp"])
    print(f"{(end - start).total_seconds():.3f}" if start and end else "nan")


def ratio(hand, daemon):
    h = statistics.median(float(x) for x in hand.split())
    ds = [float(x) for x in daemon.split() if x != "nan"]
    if not ds:
        print(f"{h:.2f}", "failed", "-")
        return
    d = statistics.median(ds)
    print(f"{h:.2f}", f"{d:.2f}", f"{d / h:.2f}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"latency": latency, "scrape": scrape, "data": data, "run-time": run_time, "ratio": ratio}[cmd](*args)
