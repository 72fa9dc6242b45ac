#!/usr/bin/env python3
"""Generate the scale benchmark's many-files trees: a mail spool in Maildir layout.

    scale_gen.py DST NFILES [--avg-bytes N] [--per-dir N] [--seed S]

DST/uNNNNN/cur/<n>.<host>:2,S — NFILES messages, --per-dir (default 1000) per directory,
sizes log-normal around --avg-bytes (default 2100: 500 000 files make ~1.05 GB, the size
issue 16 measured). Below 1000 bytes (e.g. --avg-bytes 250 for 5 000 000 files, which fit
in their inodes on a file system made with inline_data) a message keeps only the
From/To/Subject/Date/Message-ID headers (~200 bytes); trees of 1000 bytes or more are the
same as before that option existed. Each message is RFC 5322-shaped text: Received/From/To/Subject/Date/
Message-ID headers drawn from fixed vocabularies, then a body of words with a Zipf-like
frequency, so messages share structure (headers, common words) but no two are equal —
what a real spool looks like to a compressor, and the case where compressing each small
file alone leaves most of the redundancy in place.

Deterministic: the same arguments give the same bytes (and mtimes) on every run, so every
tool and every run sees the same data. Prints "<files> <bytes>" at the end.
"""

import argparse
import os
import random

FIXED_MTIME = 1767225600  # 2026-01-01T00:00:00Z


def pseudo_words(rng, n, lo=2, hi=11):
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = [12, 9, 8, 7.5, 7, 6.7, 6.3, 6, 5.9, 4.3, 4, 2.8, 2.4, 2.4, 2.2, 2, 2, 1.9, 1.5, 1.3, 1, 0.8, 0.2, 0.1, 0.15, 0.07]
    out = set()
    while len(out) < n:
        out.add("".join(rng.choices(letters, weights, k=rng.randint(lo, hi))))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dst")
    ap.add_argument("nfiles", type=int)
    ap.add_argument("--avg-bytes", type=int, default=2100)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=16)
    a = ap.parse_args()

    rng = random.Random(a.seed)
    words = pseudo_words(rng, 20000)
    # Zipf-like: word i has weight 1/(i+1); cumulative weights make choices() one bisect.
    cum, acc = [], 0.0
    for i in range(len(words)):
        acc += 1.0 / (i + 1)
        cum.append(acc)
    people = [f"{rng.choice(words)}.{rng.choice(words)}" for _ in range(3000)]
    domains = [f"{rng.choice(words)}.{rng.choice(['com', 'org', 'net', 'de', 'fr', 'io'])}" for _ in range(300)]
    hosts = [f"mx{rng.randint(1, 40)}.{rng.choice(domains)}" for _ in range(200)]
    short = a.avg_bytes < 1000
    # full headers are ~880 bytes, short ones ~200
    mean_body = max(a.avg_bytes - 200, 20) if short else max(a.avg_bytes - 880, 100)

    total = 0
    for n in range(a.nfiles):
        d = os.path.join(a.dst, f"u{n // a.per_dir:05d}", "cur")
        if n % a.per_dir == 0:
            os.makedirs(d, exist_ok=True)
        t = FIXED_MTIME - rng.randint(0, 86400 * 365 * 3)
        sender, rcpt = rng.choice(people), rng.choice(people)
        sdom, rdom = rng.choice(domains), rng.choice(domains)
        subject = " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(3, 9)))
        if short:
            hdr = (
                f"From: <{sender}@{sdom}>\nTo: <{rcpt}@{rdom}>\nSubject: {subject}\nDate: {t}\n"
                f"Message-ID: <{rng.getrandbits(64):016x}.{n}@{sdom}>\n\n"
            )
        else:
            hdr = (
                f"Return-Path: <{sender}@{sdom}>\n"
                f"Received: from {rng.choice(hosts)} ({rng.choice(hosts)} [10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}])\n"
                f"\tby {rng.choice(hosts)} (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\n"
                f"\tfor <{rcpt}@{rdom}>; {t}\n"
                f"Received: from localhost (localhost [127.0.0.1])\n\tby {rng.choice(hosts)} (Postfix) with ESMTP id {rng.getrandbits(40):010X}\n"
                f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={sdom}; s=mail; h=from:to:subject:date;\n"
                f"\tb={rng.getrandbits(256):064x}\n"
                f"From: {sender.replace('.', ' ').title()} <{sender}@{sdom}>\n"
                f"To: {rcpt.replace('.', ' ').title()} <{rcpt}@{rdom}>\n"
                f"Subject: {subject}\n"
                f"Date: {t}\n"
                f"Message-ID: <{rng.getrandbits(64):016x}.{n}@{sdom}>\n"
                "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            )
        body_len = max(10 if short else 40, int(rng.lognormvariate(0, 0.6) * mean_body * 0.68))
        nwords = body_len // 6 + 1
        body_words = rng.choices(words, cum_weights=cum, k=nwords)
        lines, line = [], []
        width = 0
        for w in body_words:
            line.append(w)
            width += len(w) + 1
            if width > 68:
                lines.append(" ".join(line))
                line, width = [], 0
        if line:
            lines.append(" ".join(line))
        data = (hdr + "\n".join(lines) + "\n").encode()
        p = os.path.join(d, f"{t}.M{n}P{n % 977}.{rng.choice(hosts)}:2,S")
        with open(p, "wb") as f:
            f.write(data)
        os.utime(p, (t, t))
        total += len(data)
    print(a.nfiles, total)


if __name__ == "__main__":
    main()
