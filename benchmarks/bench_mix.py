#!/usr/bin/env python3
"""Benchmark the training-mix options (issue 15) against a plain bigshuf shuffle, `cp`, `shuf` and `sort -u`.

One corpus of the bench.py kind, with a share of its lines repeated (so ``--unique`` has duplicates
to drop), is shuffled by every row round-robin in one run; each output is checked (a permutation,
the right count, the splits together a permutation, the unique lines those of ``sort -u``) and the
medians are printed as a markdown table with ratios to the plain shuffle and to ``cp``. Exits 1 if a
row fails or its check does not hold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the corpus generator, the timer and the fingerprint of bench.py)

MiB = bench.MiB


@dataclass(frozen=True)
class Row:
    """A command with ``{inp}``, ``{out}`` (a file or, for splits, a directory) and the check of its output."""

    name: str
    argv: tuple[str, ...]
    check: Callable[[str], str]


def with_repeats(src: str, dst: str, share: float) -> None:
    """``dst``: the lines of ``src``, then the first ``share`` of them again (exact duplicates)."""
    size = os.path.getsize(src)
    with open(src, "rb") as f:
        data = f.read()
    cut = data.rfind(b"\n", 0, int(size * share)) + 1
    with open(dst, "wb") as f:
        f.write(data)
        f.write(data[:cut])


def count_lines(path: str) -> int:
    """Newlines in ``path``."""
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(16 * MiB):
            n += chunk.count(b"\n")
    return n


def rows(scratch: str, limit: str, ref: bench.Fingerprint, unique: bench.Fingerprint) -> list[Row]:
    """The rows of the run; ``ref`` fingerprints the input, ``unique`` its distinct lines."""
    big = tuple(bench.bigshuf_argv(scratch)) + ("-S", limit)
    tenth = (ref.lines + 5) // 10  # round(0.1 N), halves up as bigshuf rounds

    def permutation(out: str) -> str:
        got = bench.fingerprint(out)
        return "ok" if got == ref else f"NOT A PERMUTATION ({got.lines:,} lines)"

    def sample(out: str) -> str:
        lines = count_lines(out)
        return "ok" if lines == tenth else f"{lines:,} lines, not {tenth:,}"

    def splits(out: str) -> str:
        parts = [os.path.join(out, f"{name}.txt") for name in ("train", "valid", "test")]
        lines, nbytes, digest = bench.joined_fingerprint(parts, scratch)
        counts = [count_lines(p) for p in parts]
        want = [ref.lines - 2 * (ref.lines // 100), ref.lines // 100, ref.lines // 100]
        if (lines, nbytes, digest) != (ref.lines, ref.bytes, ref.digest):
            return "the splits together are not a permutation"
        return "ok" if abs(counts[1] - want[1]) <= 1 and abs(counts[2] - want[2]) <= 1 else f"split counts {counts}"

    def deduplicated(out: str) -> str:
        got = bench.fingerprint(out)
        return "ok" if got == unique else f"NOT THE UNIQUE LINES ({got.lines:,} lines, {unique.lines:,} expected)"

    out_split = os.path.join("{out}", "{{split}}.txt")
    return [
        Row("cp", ("cp", "--reflink=never", "{inp}", "{out}"), permutation),
        Row("shuf", ("shuf", "{inp}", "-o", "{out}"), permutation),
        Row(f"bigshuf -S {limit}", big + ("{inp}", "-o", "{out}"), permutation),
        Row("bigshuf -n 10%", big + ("-n", "10%", "{inp}", "-o", "{out}"), sample),
        Row("bigshuf --split train=0.98,valid=0.01,test=0.01", big + (
            "--split", "train=0.98,valid=0.01,test=0.01", "{inp}", "-o", out_split), splits),
        Row("bigshuf --unique", big + ("--unique", "{inp}", "-o", "{out}"), deduplicated),
        Row(f"sort -u -S {limit}", ("sort", "-u", "-S", limit, "-T", scratch, "{inp}", "-o", "{out}"), deduplicated),
    ]


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus, time every row, print the table; 1 if a row failed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=bench.parse_size, default=bench.parse_size("1G"), help="corpus size before repeats (default 1G)")
    p.add_argument("--corpus", default="jsonl", choices=sorted(bench.CORPORA))
    p.add_argument("--repeats", type=float, default=0.25, help="share of the lines repeated once more (default 0.25)")
    p.add_argument("--limit", default="256M", help="-S for bigshuf and sort (default 256M)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scratch", default=None, help="parent of the scratch directory (default $TMPDIR or /tmp)")
    args = p.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bigshuf-bench-mix-", dir=args.scratch)
    try:
        base, inp, out, log = (os.path.join(scratch, n) for n in ("base.txt", "input.txt", "out", "stderr.log"))
        bench.generate(base, bench.CORPORA[args.corpus], args.size)
        with_repeats(base, inp, args.repeats)
        os.remove(base)
        ref = bench.fingerprint(inp)
        subprocess.run(["sort", "-u", "-S", args.limit, "-T", scratch, inp, "-o", out], check=True)
        unique = bench.fingerprint(out)
        os.remove(out)
        table = rows(scratch, args.limit, ref, unique)
        samples: dict[str, list[tuple[float, float, int, str]]] = {r.name: [] for r in table}
        for rep in range(args.reps):
            order = table[rep % len(table):] + table[: rep % len(table)]
            for row in order[::-1] if rep % 2 else order:
                bench.warm(inp)
                if "{split}" in " ".join(row.argv):
                    os.mkdir(out)
                wall, cpu, rss, status = bench.timed([a.format(inp=inp, out=out) for a in row.argv], log)
                check = row.check(out) if status == 0 else f"exit {status}"
                samples[row.name].append((wall, cpu, rss, check))
                print(f"rep {rep + 1}/{args.reps} {row.name}: {wall:.2f} s, {check}", file=sys.stderr)
                if os.path.isdir(out):
                    shutil.rmtree(out)
                elif os.path.exists(out):
                    os.remove(out)
                os.sync()
        med = {name: statistics.median(s[0] for s in runs) for name, runs in samples.items()}
        plain = f"bigshuf -S {args.limit}"
        size = os.path.getsize(inp)
        print(f"{bench.fmt_size(size)} {args.corpus} corpus, {ref.lines:,} lines, {unique.lines:,} distinct; "
              f"median of {args.reps}, warm cache; {sys.executable} -m bigshuf")
        print("| run | wall s | CPU s | peak RSS MiB | × plain shuffle | × cp | check |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        failed = False
        for name, runs in samples.items():
            checks = sorted({s[3] for s in runs})
            failed |= checks != ["ok"]
            print(f"| {name} | {med[name]:.2f} | {statistics.median(s[1] for s in runs):.2f} | "
                  f"{statistics.median(s[2] for s in runs) / MiB:.0f} | {med[name] / med[plain]:.2f} | "
                  f"{med[name] / med['cp']:.2f} | {'; '.join(checks)} |")
        return 1 if failed else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
