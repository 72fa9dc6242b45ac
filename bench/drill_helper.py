#!/usr/bin/env python3
"""bench/drill.sh's table: reads RESULTS_DIR/results.tsv, the drills' --json reports
(docs/drills.md, DrillReport v1) and meta.txt, and prints one Markdown table per part.

    drill_helper.py report RESULTS_DIR

A step whose command exited with anything but 0 or 10 (10: ran, but a drill did not pass or
an audit clause is not met) has no time: the table says why, from the end of its log.
"""

import json
import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone

OK_CODES = ("0", "10")


def load(results):
    rows = []
    with open(os.path.join(results, "results.tsv")) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(head, line.rstrip("\n").split("\t"))))
    return rows


def runs(rows, part, step):
    return [r for r in rows if r["part"] == part and r["step"] == step]


def why(results, row):
    """A failed step's reason: 'not built yet', or the last line of its log."""
    log = os.path.join(results, "logs", f"{row['part']}.{row['step'].replace(' ', '-')}.{row['round']}.log")
    try:
        lines = [l.strip() for l in open(log, errors="replace") if l.strip()]
    except OSError:
        lines = []
    text = " ".join(lines[-3:])
    if "not built yet" in text:
        return "not built yet"
    last = lines[-1] if lines else ""
    return f"failed (exit {row['rc']}: {last[:80]})"


def ok(rows):
    return [r for r in rows if r["rc"] in OK_CODES]


def med(xs):
    return statistics.median(xs) if xs else None


def secs(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f} s"


def report_of(row):
    """The drill's --json report (None when missing or not a report)."""
    path = row.get("report", "-")
    if path in ("", "-"):
        return None
    try:
        d = json.load(open(path))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def num(d, key):
    v = d.get(key) if d else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def wall(r):
    return float(r["seconds"])


def cell(results, plain_rows, drill_rows, drill_value=wall):
    """(plain median, drill median, per-round ratios, note): the plain side's wall time, the
    drill's `drill_value` (None: missing), ratios over the rounds both finished."""
    p = {r["round"]: wall(r) for r in ok(plain_rows)}
    d = {}
    for r in ok(drill_rows):
        v = drill_value(r)
        if v is not None:
            d[r["round"]] = v
    ratios = [d[k] / p[k] for k in sorted(p, key=int) if k in d and p[k]]
    note = ""
    bad = [r for r in plain_rows + drill_rows if r["rc"] not in OK_CODES]
    if bad:
        note = "; ".join(sorted({f"{r['step']}: {why(results, r)}" for r in bad}))
    return med(list(p.values())), med(list(d.values())), ratios, note


def ratio_text(ratios):
    if not ratios:
        return "—"
    rs = ", ".join(f"{x:.2f}" for x in ratios)
    return f"**{statistics.median(ratios):.2f}** ({rs})"


def meta(results):
    m = {}
    for line in open(os.path.join(results, "meta.txt")):
        k, _, v = line.partition(":")
        m.setdefault(k.strip(), []).append(v.strip())
    return m


def commit():
    try:
        return subprocess.run(
            ["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def drill_rows(results, part, plain_step, rows):
    plain, drill = runs(rows, part, plain_step), runs(rows, part, "drill")
    if not plain and not drill:
        return [], []
    label = {"files": "tree", "pg": "PostgreSQL"}[part]
    out = []
    p, d, ratios, note = cell(results, plain, drill)
    out.append(f"| {label}: `{plain_step}` vs drill, wall | {secs(p)} | {secs(d)} | {ratio_text(ratios)} |")
    p2, d2, ratios2, _ = cell(results, plain, drill, lambda r: num(report_of(r), "rto_seconds"))
    out.append(f"| {label}: `{plain_step}` (wall) vs the drill's RTO (its report) | {secs(p2)} | {secs(d2)} | {ratio_text(ratios2)} |")
    notes = [f"{label}: {note}"] if note else []

    # The drill's own breakdown, per round.
    brk = []
    for r in ok(drill):
        rep = report_of(r)
        if rep is None:
            brk.append(f"| {label} | {r['round']} | {float(r['seconds']):.2f} s | — | — | — | no report on stdout | — |")
            continue
        rto = num(rep, "rto_seconds")
        wall = float(r["seconds"])
        thr = num(rep, "throughput")
        checks = rep.get("checks") if isinstance(rep.get("checks"), list) else []
        names = ", ".join(
            f"{c.get('name', '?')} {'ok' if c.get('outcome') == 'passed' else c.get('outcome', '?')}"
            for c in checks if isinstance(c, dict)
        )
        restored = rep.get("restored") if isinstance(rep.get("restored"), list) else []
        size = sum(x.get("bytes", 0) for x in restored if isinstance(x, dict) and isinstance(x.get("bytes"), int))
        brk.append(
            f"| {label} | {r['round']} | {wall:.2f} s (CPU {float(r['user_s']) + float(r['sys_s']):.1f} s) | {secs(rto)} | "
            f"{secs(None if rto is None else wall - rto)} | "
            f"{'—' if thr is None else f'{thr / 1e6:.0f} MB/s'}{f' of {size / 2**20:.0f} MiB' if size else ''} | "
            f"{names or '—'} | {'yes' if rep.get('passed') is True else 'NO'} |"
        )
    return out + [("note", n) for n in notes], brk


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "report":
        sys.exit(__doc__)
    results = sys.argv[2]
    rows = load(results)
    m = meta(results)
    loads = [v.split()[2] if len(v.split()) > 2 else v for v in m.get("load avg", [])]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rev = m.get("commit", [commit()])[0].split(" (")[0]
    print(f"## bench/drill.sh ({now}, commit {rev}, load {' → '.join(loads)})")
    print()
    for k in ("coffer", "caches", "rounds", "files", "pg", "audit"):
        for v in m.get(k, []):
            print(f"- {k}: {v}")
    print()

    table, notes, breakdown = [], [], []
    for part, step in (("files", "restore"), ("pg", "restore --start")):
        lines, brk = drill_rows(results, part, step, rows)
        for line in lines:
            if isinstance(line, tuple):
                notes.append(line[1])
            else:
                table.append(line)
        breakdown += brk
    if table:
        print("| step | plain | drill | drill ÷ plain: median (per round) |")
        print("| --- | --- | --- | --- |")
        print("\n".join(table))
        print()
        for n in notes:
            print(f"- {n}")
        if notes:
            print()
    if breakdown:
        print("The drill's own breakdown (RTO from its report: restore until the last byte is synced, or")
        print("the server ready at the target; the rest: checks, stopping, removing the scratch space):")
        print()
        print("| drill | round | wall | RTO | rest | throughput | checks | passed |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        print("\n".join(breakdown))
        print()

    audit = [r for r in rows if r["part"] == "audit"]
    if audit:
        n = None
        setup = os.path.join(results, "audit-setup.tsv")
        if os.path.exists(setup):
            f = open(setup).read().split("\t")
            n, made_in = int(f[2]), f[3].strip()
        print(f"| on {n if n is not None else '?'} snapshots | median of rounds | per snapshot | rounds | exit |")
        print("| --- | --- | --- | --- | --- |")
        for step, label in (("snapshots", "`coffer snapshots --json` (reference)"),
                            ("verify", "`coffer verify` (reference: structure and locks)"),
                            ("audit", "**`coffer audit --format json`**"),
                            ("audit html", "`coffer audit --format html`")):
            rs = runs(audit, "audit", step)
            if not rs:
                continue
            good = [float(r["seconds"]) for r in ok(rs)]
            mm = med(good)
            per = "—" if mm is None or not n else f"{mm / n * 1000:.2f} ms"
            codes = ", ".join(sorted({r["rc"] for r in rs}))
            bad = {why(results, r) for r in rs if r["rc"] not in OK_CODES}
            exitinfo = codes + (f" ({'; '.join(sorted(bad))})" if bad else "")
            print(f"| {label} | {secs(mm)} | {per} | {', '.join(f'{x:.2f}' for x in good) or '—'} | {exitinfo} |")
        if n is not None:
            print()
            print(f"Setup: {n} snapshots made in {made_in} s by `coffer backup` ({float(made_in) / max(n, 1) * 1000:.0f} ms each).")
        print()

    others = [int(r["others_cpu_pct"]) for r in rows if r["others_cpu_pct"].isdigit()]
    if others:
        print(f"Other processes' CPU during the timed steps: {min(others)}–{max(others)} % of one core "
              "(high values: the step competed with something else).")


if __name__ == "__main__":
    main()
