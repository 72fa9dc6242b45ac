#!/usr/bin/env python3
"""Helpers for bench/scale.sh: tree sizes, the byte-counting proxy, the history tree, the table.

    scale_helper.py size DIR                     "<files> <bytes>" of the regular files
    scale_helper.py proxy PORT TARGET_PORT LOG   forward 127.0.0.1:PORT to TARGET_PORT,
                                                 append "<up> <down>" bytes per closed
                                                 connection to LOG
    scale_helper.py bytes LOG FROM               "<up> <down>": sums of LOG's lines FROM..end
    scale_helper.py json FILE KEY[.KEY…]         a value from a JSON document (last line of FILE
                                                 that parses), "-" when absent
    scale_helper.py report RESULTS_DIR           the tables and the issue's targets

The proxy exists because moto's log (werkzeug) has no response sizes: the bytes a command
reads from the server ("down") are what the history goals call metadata bytes (the tree is
a few KiB, so nearly everything read is metadata).
"""

import asyncio
import json
import math
import os
import statistics
import sys


def tree_size(root):
    n = total = 0
    stack = [root]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    n += 1
                    total += e.stat(follow_symlinks=False).st_size
    return n, total


# ------------------------------------------------------------------ proxy
def proxy(port, target, log):
    out = open(log, "a", buffering=1)

    async def pump(reader, writer, counter, i):
        try:
            while True:
                data = await reader.read(1 << 18)
                if not data:
                    break
                counter[i] += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                if writer.can_write_eof():
                    writer.write_eof()
            except (ConnectionError, OSError, RuntimeError):
                pass

    async def handle(cr, cw):
        counter = [0, 0]
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pump(cr, sw, counter, 0), pump(sr, cw, counter, 1))
        for w in (cw, sw):
            try:
                w.close()
            except (ConnectionError, OSError):
                pass
        out.write(f"{counter[0]} {counter[1]}\n")

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def sum_bytes(log, start):
    up = down = 0
    with open(log) as f:
        for i, line in enumerate(f, 1):
            if i >= start:
                a, b = line.split()
                up += int(a)
                down += int(b)
    return up, down


def json_get(path, keys):
    doc = None
    with open(path) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError:
        for line in reversed(text.splitlines()):
            try:
                doc = json.loads(line)
                break
            except ValueError:
                continue
    for k in keys.split("."):
        if isinstance(doc, dict) and k in doc:
            doc = doc[k]
        else:
            return "-"
    return doc


# ------------------------------------------------------------------ report
def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def mib(kib):
    return f"{kib / 1024:.0f}" if kib is not None else "-"


def report(res):
    meta = open(f"{res}/meta.txt").read().rstrip()
    print(meta)
    rows = [l.split("\t") for l in open(f"{res}/results.tsv").read().splitlines()]
    head, rows = rows[0], rows[1:]
    rows = [dict(zip(head, r)) for r in rows]
    facts = {}
    if os.path.exists(f"{res}/facts.tsv"):
        for l in open(f"{res}/facts.tsv").read().splitlines():
            part, dset, tool, key, value = l.split("\t")
            facts[(part, dset, tool, key)] = value
    verdicts = []

    # ---------------------------------------------------------- files part
    sets = []
    for r in rows:
        if r["part"] == "files" and r["set"] not in sets:
            sets.append(r["set"])
    for dset in sets:
        t = {(r["step"], r["tool"]): r for r in rows if r["part"] == "files" and r["set"] == dset}
        files = num(facts.get(("files", dset, "-", "files")))
        data_bytes = num(facts.get(("files", dset, "-", "bytes")))
        print()
        print(f"== files: {dset}: {facts.get(('files', dset, '-', 'desc'), '')}")
        ctools = [c for c in ("coffer", "coffer+init") if any(k[1] == c for k in t)]
        for ctool in ctools:
            if ctool != "coffer":
                print()
                print(f"-- {ctool} (a repository made with extra `coffer init` arguments, see above) against restic")
            print(f"{'step':<19} {'coffer s':>9} {'restic s':>9} {'c/r s':>6} {'coffer MiB':>11} {'restic MiB':>11} {'c/r RSS':>8} "
                  f"{'B/file c':>9} {'B/file r':>9} {'B/blob c':>9} {'B/blob r':>9} {'+B/file c':>10} {'+B/file r':>10} {'load':>5} {'others%':>8}  status")
            base = {tool: num(t[("init", tool)]["rss_kib"]) if ("init", tool) in t else None for tool in ("coffer", "coffer+init", "restic")}
            for step in ["init", "backup", "ls", "restore", "verify", "verify read-data"]:
                c, r = t.get((step, ctool)), t.get((step, "restic"))
                if not c and not r:
                    continue
                cs, rs = num(c and c["seconds"]), num(r and r["seconds"])
                cm, rm = num(c and c["rss_kib"]), num(r and r["rss_kib"])
                cb = num(facts.get(("files", dset, ctool, "blobs")))
                rb = num(facts.get(("files", dset, "restic", "blobs")))

                def per(kib, n):
                    return f"{kib * 1024 / n:.0f}" if kib is not None and n else "-"

                def above(kib, tool):  # above what the tool's `init` peaked at (its fixed cost)
                    return f"{max(0.0, (kib - base[tool]) * 1024 / files):.0f}" if kib is not None and base[tool] and files and step != "init" else "-"

                status = "; ".join(f"{x['tool']}: {x['status']}" for x in (c, r) if x and x["status"] != "ok") or "ok"
                load = c["load1"] if c else r["load1"]
                others = "/".join(x["others_cpu_pct"] for x in (c, r) if x)
                print(f"{step:<19} {cs if cs is not None else '-':>9} {rs if rs is not None else '-':>9} {fmt_ratio(cs, rs):>6} "
                      f"{mib(cm):>11} {mib(rm):>11} {fmt_ratio(cm, rm):>8} {per(cm, files):>9} {per(rm, files):>9} "
                      f"{per(cm, cb):>9} {per(rm, rb):>9} {above(cm, ctool):>10} {above(rm, 'restic'):>10} {load:>5} {others:>8}  {status}")
                if step in ("backup", "ls", "restore", "verify") and cm and rm:
                    ok = cm / rm <= 0.75
                    verdicts.append(f"files {dset}: {step} peak RSS {ctool}/restic {cm / rm:.3f} (target <= 0.75): {'met' if ok else 'NOT MET'}")
            cr = num(facts.get(("files", dset, ctool, "repo_bytes")))
            rr = num(facts.get(("files", dset, "restic", "repo_bytes")))
            print(f"repository: {ctool} {cr and cr / 1e6:.1f} MB, restic {rr and rr / 1e6:.1f} MB, {ctool}/restic {fmt_ratio(cr, rr)}"
                  f" (data {data_bytes and data_bytes / 1e6:.1f} MB; coffer/data {fmt_ratio(cr, data_bytes)}, restic/data {fmt_ratio(rr, data_bytes)})"
                  if cr and rr else "repository: -")
            print(f"blobs:      {ctool} {facts.get(('files', dset, ctool, 'blobs'), '-')} in {facts.get(('files', dset, ctool, 'packs'), '-')} packs, "
                  f"restic {facts.get(('files', dset, 'restic', 'blobs'), '-')}; files {facts.get(('files', dset, '-', 'files'), '-')}; "
                  f"ls lines {ctool} {facts.get(('files', dset, ctool, 'ls_lines'), '-')}, restic {facts.get(('files', dset, 'restic', 'ls_lines'), '-')}")
            if cr and rr:
                verdicts.append(f"files {dset}: repository {ctool}/restic {cr / rr:.3f} (target <= 0.85): {'met' if cr / rr <= 0.85 else 'NOT MET'}")

    # ---------------------------------------------------------- history part
    hist = [r for r in rows if r["part"] == "history"]
    if hist:
        ns = {}
        for tool in ("coffer", "restic"):
            v = facts.get(("history", "-", tool, "snapshots"))
            if v:
                ns[tool] = int(v)
        print()
        print(f"== history (S3: moto on loopback): coffer {ns.get('coffer', '-')} snapshots, restic {ns.get('restic', '-')}")
        print(f"{'tool':<7} {'step':<9} {'at':>6} {'seconds':>8} {'requests':>9} {'down KiB':>9} {'up KiB':>8}  requests by kind")
        t = {}
        for r in hist:
            step, _, at = r["step"].rpartition(" #")
            t[(r["tool"], step, int(at))] = r
        details = {}
        if os.path.exists(f"{res}/requests.txt"):
            for l in open(f"{res}/requests.txt").read().splitlines():
                key, _, d = l.partition(": ")
                details[key] = d
        for (tool, step, at), r in sorted(t.items(), key=lambda kv: (kv[0][0], STEPS.index(kv[0][1]) if kv[0][1] in STEPS else 9, kv[0][2])):
            d = details.get(f"history/{tool}/{r['step']}", "")
            print(f"{tool:<7} {step:<9} {'#' + str(at):>6} {r['seconds']:>8} {r['requests']:>9} "
                  f"{int(r['down_bytes']) / 1024:>9.1f} {int(r['up_bytes']) / 1024:>8.1f}  {d}  {'' if r['status'] == 'ok' else r['status']}")
        # per-backup series (every backup): medians of 5 around #2 and #N
        series = {}
        if os.path.exists(f"{res}/history.tsv"):
            for l in open(f"{res}/history.tsv").read().splitlines()[1:]:
                tool, k, secs, reqs, up, down, *cpu = l.split("\t")
                # cpu_s (the backup process's user + sys) is in runs from 2026-12-06 on
                series.setdefault(tool, {})[int(k)] = (float(secs), int(reqs), int(down), float(cpu[0]) if cpu and cpu[0] else None)
        print()
        print("ratios #N/#2 (time: also the median of backups #2-#6 against #N-4..#N, which the verdict uses;")
        print("requests and bytes: exact, they do not depend on the machine's load)")
        for tool in ("coffer", "restic"):
            n = ns.get(tool)
            if not n or n < 3:  # nothing to compare #2 with
                continue
            if (tool, "backup", n) not in t:  # an interrupted run: its last checkpoint
                n = max([at for (tl, st, at) in t if tl == tool and st == "backup"] or [0])
                if n < 3:
                    continue
                print(f"  ({tool}: the run stopped before #{ns[tool]}; ratios at #{n})")
            for step in STEPS[1:]:
                a, b = t.get((tool, step, 2)), t.get((tool, step, n))
                if not a or not b:
                    continue
                ts, tr = num(b["seconds"]) / max(num(a["seconds"]), 1e-9), int(b["requests"]) / max(int(a["requests"]), 1)
                tb = int(b["down_bytes"]) / max(int(a["down_bytes"]), 1)
                line = f"  {tool:<7} {step:<9} time {ts:.2f}  requests {tr:.2f} ({a['requests']} -> {b['requests']})  down bytes {tb:.2f}"
                if step == "backup" and tool in series and n >= 10:
                    s = series[tool]
                    lo = [s[k][0] for k in range(2, 7) if k in s]
                    hi = [s[k][0] for k in range(n - 4, n + 1) if k in s]
                    if lo and hi:
                        tm = statistics.median(hi) / statistics.median(lo)
                        line += f"  median-of-5 time {tm:.2f} ({statistics.median(lo):.3f}s -> {statistics.median(hi):.3f}s)"
                        ts = tm
                    clo = [s[k][3] for k in range(2, 7) if k in s and s[k][3] is not None]
                    chi = [s[k][3] for k in range(n - 4, n + 1) if k in s and s[k][3] is not None]
                    if clo and chi:
                        line += f"  median-of-5 CPU {statistics.median(chi) / max(statistics.median(clo), 1e-9):.2f} ({statistics.median(clo):.2f}s -> {statistics.median(chi):.2f}s)"
                        # Wall minus the process's CPU: waiting on the server (and the disk).
                        wlo = [s[k][0] - s[k][3] for k in range(2, 7) if k in s and s[k][3] is not None]
                        whi = [s[k][0] - s[k][3] for k in range(n - 4, n + 1) if k in s and s[k][3] is not None]
                        line += f"  median-of-5 waiting (wall - CPU) {statistics.median(wlo):.3f}s -> {statistics.median(whi):.3f}s"
                print(line)
                if tool == "coffer":
                    if step == "backup":
                        verdicts.append(f"history: backup #{n}/#2 time {ts:.2f} (target <= 1.2): {'met' if ts <= 1.2 else 'NOT MET'}")
                        verdicts.append(f"history: backup #{n}/#2 requests {tr:.2f} (target <= 1.2): {'met' if tr <= 1.2 else 'NOT MET'}")
                    if step == "relist":
                        verdicts.append(f"history: a backup that lists (once per --relist-after, a day by default) #{n}/#2 time {ts:.2f}, requests {tr:.2f}")
                    # "not growing beyond a listing": requests other than LIST and the bytes read
                    da = details.get(f"history/coffer/{step} #2", "")
                    db = details.get(f"history/coffer/{step} #{n}", "")
                    la, lb = list_count(da), list_count(db)
                    ra, rb = int(a["requests"]) - la, int(b["requests"]) - lb
                    extra_pages = max(0, math.ceil(n / 1000) - 1)
                    ok = rb <= max(ra * 1.2, ra + 1) and tb <= 1.2
                    verdicts.append(
                        f"history: {step}: requests besides listings #2 {ra} -> #{n} {rb}, listings {la} -> {lb} "
                        f"(a listing page holds 1 000 objects: ~{extra_pages} more page(s) per listed prefix at #{n}), "
                        f"bytes read x{tb:.2f}: {'flat' if ok else 'GROWS'}")
        if series:
            print()
            print("backups along the history (seconds / requests / KiB read):")
            for tool, s in sorted(series.items()):
                n = max(s)
                marks = sorted({k for k in (1, 2, 10, 50, 100, 200, 500, 1000, 1500, 2000, n) if k in s})
                print(f"  {tool:<7} " + "  ".join(f"#{k}: {s[k][0]:.2f}s/{s[k][1]}/{s[k][2] / 1024:.0f}" for k in marks))
    if verdicts:
        print()
        print("issue 16 goals:")
        for v in verdicts:
            print("  " + v)


# The history part's steps, in the order the table prints them ("relist": a backup with
# --relist-after 0s, i.e. one that lists index/ and snapshots/, made at each checkpoint).
STEPS = ["init", "backup", "relist", "snapshots", "restore", "verify"]


def list_count(detail):
    """Requests that are bucket listings in a "N kind, M kind" detail (moto: LIST,
    LIST?versions, as bench/lib.sh names them; LocalStack: List*)."""
    n = 0
    for part in detail.split(", "):
        cnt, _, kind = part.partition(" ")
        if kind.startswith("LIST?") or kind == "LIST" or kind.startswith("List"):
            try:
                n += int(cnt)
            except ValueError:
                pass
    return n


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "size":
        print(*tree_size(args[0]))
    elif cmd == "proxy":
        proxy(int(args[0]), int(args[1]), args[2])
    elif cmd == "bytes":
        print(*sum_bytes(args[0], int(args[1])))
    elif cmd == "json":
        print(json_get(args[0], args[1]))
    elif cmd == "report":
        report(args[0])
    else:
        sys.exit(f"scale_helper.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
