#!/usr/bin/env python3
"""Helpers for bench/files.sh: make the data sets, change 2 % of the files, print the table.

    files_helper.py copy-tree SRC DST BUDGET_BYTES   copy a deterministic subset of SRC
    files_helper.py gen-large DST EACH_BYTES         4 large files, 2 random + 2 text
    files_helper.py modify DIR PERCENT               change PERCENT % of the files
    files_helper.py size DIR                         "<files> <bytes>" of the regular files
    files_helper.py report RESULTS_DIR               the table and the issue's targets

Everything is deterministic (fixed seeds, sorted paths), so every run and every tool
sees the same bytes.
"""

import hashlib
import os
import random
import shutil
import sys

FIXED_MTIME = 1767225600  # 2026-01-01T00:00:00Z: generated files get a stable mtime


def walk_files(root):
    """Sorted relative paths of every non-directory entry under root."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            out.append(os.path.relpath(full, root))
    out.sort()
    return out


def regular_size(root):
    n = total = 0
    for rel in walk_files(root):
        st = os.lstat(os.path.join(root, rel))
        if os.path.isfile(os.path.join(root, rel)) and not os.path.islink(os.path.join(root, rel)):
            n += 1
            total += st.st_size
    return n, total


def copy_tree(src, dst, budget):
    """Copy SRC to DST whole when it fits (+5 %); else a deterministic pseudo-random subset
    of its files (order: BLAKE2 of the path; a file is taken if it still fits), so the
    subset has the same mix of small and large files as the whole tree. Metadata (mode,
    mtimes) is preserved with copy2; directory mtimes are set at the end."""
    files = walk_files(src)
    sizes = {rel: os.lstat(os.path.join(src, rel)).st_size for rel in files}
    total = sum(sizes.values())
    if total <= budget * 1.05:
        chosen = files
    else:
        order = sorted(files, key=lambda r: hashlib.blake2b(r.encode(), digest_size=8).digest())
        chosen, used = [], 0
        for rel in order:
            if used + sizes[rel] <= budget:
                chosen.append(rel)
                used += sizes[rel]
        chosen.sort()
    dirs = set()
    for rel in chosen:
        s, d = os.path.join(src, rel), os.path.join(dst, rel)
        parent = os.path.dirname(rel)
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = os.path.dirname(parent)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        if os.path.islink(s):
            os.symlink(os.readlink(s), d)
        else:
            shutil.copy2(s, d)
    for rel in sorted(dirs, key=len, reverse=True):
        shutil.copystat(os.path.join(src, rel), os.path.join(dst, rel))
    n, b = regular_size(dst)
    print(f"copied {n} of {len(files)} files, {b} of {total} bytes")


def gen_large(dst, each):
    """a-random.bin, c-random.bin: incompressible; b-access.log: web-server log lines;
    d-records.csv: sensor records. The text files compress roughly 3-6x with zstd and
    have no long repeats (no dedup inside a file)."""
    os.makedirs(dst, exist_ok=True)
    piece = 4 << 20

    def write_random(name, seed):
        rng = random.Random(seed)
        with open(os.path.join(dst, name), "wb") as f:
            left = each
            while left > 0:
                n = min(piece, left)
                f.write(rng.randbytes(n))
                left -= n

    def write_text(name, seed, make_block):
        rng = random.Random(seed)
        with open(os.path.join(dst, name), "wb") as f:
            left, i = each, 0
            while left > 0:
                block = make_block(rng, i)
                i += 1
                if len(block) > left:
                    block = block[:left]
                f.write(block)
                left -= len(block)

    methods = ["GET"] * 8 + ["POST"] * 3 + ["PUT", "DELETE", "PATCH"]
    words = ("api v1 v2 items users orders search static img css js cart checkout login "
             "logout account settings report export import admin health metrics feed "
             "tags comments reviews billing invoice shipping").split()
    agents = ["curl/8.1.2", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
              "Mozilla/5.0 (Macintosh) Safari/605.1.15", "python-requests/2.31",
              "Go-http-client/2.0", "okhttp/4.12.0"]
    statuses = [200] * 30 + [201, 204, 301, 302, 304, 304, 400, 401, 403, 404, 404, 500, 502, 503]
    levels = ["INFO"] * 12 + ["WARN", "DEBUG", "DEBUG", "ERROR"]

    def log_block(rng, i):
        lines = []
        t = 1767225600 * 1000 + i * 40000
        r = rng.random
        ri = rng.randrange
        for k in range(8192):
            t += ri(0, 10)
            path = "/" + "/".join(words[ri(len(words))] for _ in range(ri(1, 4)))
            if r() < 0.5:
                path += f"/{ri(100000)}"
            if r() < 0.3:
                path += f"?page={ri(1, 50)}&sort={words[ri(len(words))]}"
            lines.append(
                f"{t // 1000}.{t % 1000:03d} {levels[ri(len(levels))]:5} [worker-{ri(16):02d}] "
                f"10.{ri(4)}.{ri(256)}.{ri(256)} {methods[ri(len(methods))]} {path} "
                f"{statuses[ri(len(statuses))]} {ri(200, 90000)}B {r() * 250:.1f}ms "
                f"req={rng.getrandbits(48):012x} ua=\"{agents[ri(len(agents))]}\"\n")
        return "".join(lines).encode()

    def csv_block(rng, i):
        lines = [] if i else ["id,timestamp,sensor,site,temperature,humidity,pressure,voltage,status\n"]
        r = rng.random
        ri = rng.randrange
        base = i * 16384
        for k in range(16384):
            n = base + k
            lines.append(
                f"{n},{1767225600 + n // 8},s{ri(512):03d},site-{ri(24):02d},"
                f"{18 + r() * 12:.2f},{30 + r() * 50:.1f},{990 + r() * 40:.2f},"
                f"{3.1 + r() * 0.3:.3f},{'OK' if r() < 0.97 else 'ALARM'}\n")
        return "".join(lines).encode()

    write_random("a-random.bin", 1)
    write_text("b-access.log", 2, log_block)
    write_random("c-random.bin", 3)
    write_text("d-records.csv", 4, csv_block)
    for name in os.listdir(dst):
        os.utime(os.path.join(dst, name), (FIXED_MTIME, FIXED_MTIME))
    os.utime(dst, (FIXED_MTIME, FIXED_MTIME))
    n, b = regular_size(dst)
    print(f"generated {n} files, {b} bytes")


def modify(root, percent):
    """Changes max(1, round(percent % of the regular files)) files, evenly spaced in path
    order: 64 bytes in the middle are overwritten and 100 bytes appended (so both the
    size and the mtime change). The new bytes depend only on the path."""
    files = [r for r in walk_files(root)
             if os.path.isfile(os.path.join(root, r)) and not os.path.islink(os.path.join(root, r))]
    count = len(files)
    n = max(1, round(count * percent / 100))
    picked = sorted({files[i * count // n] for i in range(n)})
    changed = 0
    for rel in picked:
        p = os.path.join(root, rel)
        h = hashlib.sha512(rel.encode()).digest()
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            if size:
                f.seek(size // 2)
                f.write(h)
            f.seek(0, os.SEEK_END)
            f.write(h + h[:36])
        changed += 1
    print(f"changed {changed} of {count} files ({100 * changed / count:.1f} %)")


# ---------------------------------------------------------------- report

STEP_ORDER = ["tar|zstd -1", "cp -a", "init", "first backup", "no-change backup", "changed backup",
              "list snapshots", "restore", "verify read-data"]
TOOL_ORDER = ["coffer", "restic", "borg", "reference"]
THROUGHPUT_STEPS = {"tar|zstd -1", "cp -a", "first backup", "no-change backup", "changed backup",
                    "restore", "verify read-data"}
RSS_STEPS = {"first backup", "no-change backup", "changed backup", "restore", "verify read-data"}


def load_results(results_dir):
    rows = []
    with open(os.path.join(results_dir, "results.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            vals = line.rstrip("\n").split("\t")
            rows.append(dict(zip(header, vals)))
    return rows


def fmt(v, digits=1):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def report(results_dir):
    meta = os.path.join(results_dir, "meta.txt")
    if os.path.exists(meta):
        with open(meta) as f:
            sys.stdout.write(f.read())
        print()
    rows = load_results(results_dir)
    datasets = []
    for r in rows:
        if r["dataset"] not in datasets:
            datasets.append(r["dataset"])
    by = {(r["dataset"], r["step"], r["tool"]): r for r in rows}

    def num(r, k):
        try:
            return float(r[k])
        except (KeyError, ValueError, TypeError):
            return None

    cols = ["dataset", "step", "tool", "seconds", "MB/s", "CPU%", "RSS MiB", "repo MiB",
            "time/restic", "RSS/restic", "repo/restic", "others CPU%", "load1", "status"]
    table = []
    for ds in datasets:
        steps = sorted({r["step"] for r in rows if r["dataset"] == ds},
                       key=lambda s: STEP_ORDER.index(s) if s in STEP_ORDER else 99)
        for step in steps:
            tools = sorted({r["tool"] for r in rows if r["dataset"] == ds and r["step"] == step},
                           key=lambda t: TOOL_ORDER.index(t) if t in TOOL_ORDER else 99)
            ref = by.get((ds, step, "restic"))
            for tool in tools:
                r = by[(ds, step, tool)]
                sec = num(r, "seconds")
                data = num(r, "data_bytes")
                mbs = data / 1e6 / sec if (step in THROUGHPUT_STEPS and sec and data) else None
                cpu = (num(r, "user_s") + num(r, "sys_s")) / sec * 100 if sec else None
                rss = num(r, "rss_kib") / 1024 if num(r, "rss_kib") is not None else None
                repo = num(r, "repo_bytes") / 2**20 if num(r, "repo_bytes") is not None else None
                tr = rr = pr = None
                if ref is not None and tool not in ("restic", "reference"):
                    if num(ref, "seconds"):
                        tr = sec / num(ref, "seconds")
                    if num(ref, "rss_kib") and rss is not None:
                        rr = rss * 1024 / num(ref, "rss_kib")
                    if num(ref, "repo_bytes") and repo is not None:
                        pr = num(r, "repo_bytes") / num(ref, "repo_bytes")
                table.append([ds, step, tool, fmt(sec, 2), fmt(mbs, 1), fmt(cpu, 0),
                              fmt(rss, 0) if tool != "reference" else "-",
                              fmt(repo, 1) if tool != "reference" else "-",
                              fmt(tr, 2), fmt(rr, 2), fmt(pr, 2),
                              fmt(num(r, "others_cpu_pct"), 0), r.get("load1", "-"),
                              r.get("status", "?")])
        table.append(None)
    widths = [max(len(c), *(len(t[i]) for t in table if t)) for i, c in enumerate(cols)]
    right = set(range(3, 13))

    def line(vals):
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(vals, widths))).rstrip()

    print(line(cols))
    print("  ".join("-" * w for w in widths))
    for t in table[:-1]:
        print(line(t) if t else "")
    print()
    print("time/restic, RSS/restic, repo/restic: the tool's value divided by restic's in the same")
    print("step (below 1 = better than restic). MB/s: dataset bytes (10^6) / seconds. CPU%: the")
    print("tool's user+sys time / wall time (200 % = both cores). others CPU%: CPU used by every")
    print("other process on the machine during the step (background load; % of one core).")
    print()

    # first backup as a fraction of tar | zstd -1
    print("First backup throughput as a fraction of `tar -cf - DIR | zstd -1 >/dev/null`:")
    for ds in datasets:
        ref = by.get((ds, "tar|zstd -1", "reference"))
        if not ref or not num(ref, "seconds"):
            continue
        ref_mbs = num(ref, "data_bytes") / 1e6 / num(ref, "seconds")
        parts = []
        for tool in ("coffer", "restic", "borg"):
            r = by.get((ds, "first backup", tool))
            if r and num(r, "seconds"):
                mbs = num(r, "data_bytes") / 1e6 / num(r, "seconds")
                parts.append(f"{tool} {mbs / ref_mbs:.2f}")
        print(f"  {ds}: tar|zstd -1 {ref_mbs:.1f} MB/s; " + ", ".join(parts))
    print()

    # the targets
    print("Targets of issue 3 (Coffer vs restic on this machine):")
    all_met = True
    for ds in datasets:
        def pair(step):
            return by.get((ds, step, "coffer")), by.get((ds, step, "restic"))

        checks = []
        c, r = pair("first backup")
        if c and r:
            ratio = num(r, "seconds") / num(c, "seconds")
            checks.append(("first backup throughput >= 2x restic", ratio >= 2, f"{ratio:.2f}x"))
        c, r = pair("no-change backup")
        if c and r:
            ratio = num(c, "seconds") / num(r, "seconds")
            checks.append(("no-change backup time <= 0.5x restic", ratio <= 0.5, f"{ratio:.2f}x"))
        c, r = pair("restore")
        if c and r:
            ratio = num(r, "seconds") / num(c, "seconds")
            detail = f"{ratio:.2f}x"
            if num(c, "cmd_seconds") and num(r, "cmd_seconds"):
                detail += f"; {num(r, 'cmd_seconds') / num(c, 'cmd_seconds'):.2f}x on command times alone (Coffer's syncs)"
            cp = by.get((ds, "cp -a", "reference"))
            if cp and num(cp, "seconds"):
                detail += (f"; cp -a of the data takes {num(cp, 'seconds'):.1f} s,"
                           f" restic / cp -a = {num(r, 'seconds') / num(cp, 'seconds'):.2f}x")
            checks.append(("restore throughput >= 2x restic", ratio >= 2, detail))
        cr = [(s, num(by[(ds, s, "coffer")], "rss_kib")) for s in STEP_ORDER
              if s in RSS_STEPS and (ds, s, "coffer") in by]
        rr = [num(by[(ds, s, "restic")], "rss_kib") for s in STEP_ORDER
              if s in RSS_STEPS and (ds, s, "restic") in by]
        if cr and rr:
            cmax, rmax = max(v for _, v in cr), max(rr)
            worse = [s for s, v in cr if (ds, s, "restic") in by and v > num(by[(ds, s, "restic")], "rss_kib")]
            note = f"{cmax / 1024:.0f} vs {rmax / 1024:.0f} MiB"
            if worse:
                note += "; above restic in: " + ", ".join(worse)
            checks.append(("peak RSS <= restic (max over steps)", cmax <= rmax, note))
        c, r = pair("verify read-data")
        c = c or pair("changed backup")[0]
        r = r or pair("changed backup")[1]
        if c and r and num(c, "repo_bytes") and num(r, "repo_bytes"):
            ratio = num(c, "repo_bytes") / num(r, "repo_bytes")
            checks.append(("repository size <= restic", ratio <= 1,
                           f"{ratio:.3f}x ({num(c, 'repo_bytes') / 2**20:.1f} vs {num(r, 'repo_bytes') / 2**20:.1f} MiB)"))
        bad = [r for r in rows if r["dataset"] == ds and r.get("status", "ok") != "ok"]
        for name, ok, detail in checks:
            all_met &= ok
            print(f"  {ds:6} {name:40} {'met' if ok else 'NOT MET':8} {detail}")
        for b in bad:
            print(f"  {ds:6} WARNING: {b['tool']} {b['step']}: {b['status']}")
    print()
    print("all targets met" if all_met else "some targets not met")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "copy-tree":
        copy_tree(args[0], args[1], int(args[2]))
    elif cmd == "gen-large":
        gen_large(args[0], int(args[1]))
    elif cmd == "modify":
        modify(args[0], float(args[1]))
    elif cmd == "size":
        n, b = regular_size(args[0])
        print(n, b)
    elif cmd == "report":
        report(args[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
