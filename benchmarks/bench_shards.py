#!/usr/bin/env python3
"""Benchmark the pretraining-corpus job: a .zst JSONL corpus in, 32 .zst shards out.

Compares, in one run and round-robin, bigshuf against the usual pipeline
``zstdcat IN | shuf | split -n r/32 --filter='zstd > $FILE.zst'`` and against ``zstd -dc``
alone (the cost of reading the corpus at all), and checks that the shards of every run hold
exactly the corpus's lines. Reuses bench.py's corpus generator, timer and fingerprint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import CORPORA, GiB, MiB, fingerprint, fmt_size, joined_fingerprint, generate, machine, parse_size, ram_bytes, timed, warm  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=GiB, help="uncompressed corpus size (default 1G)")
    p.add_argument("--shards", type=int, default=32)
    p.add_argument("--limit", default="256M", help="bigshuf -S (default 256M)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scratch", default=None)
    args = p.parse_args()
    if not shutil.which("zstd"):
        raise SystemExit("zstd is needed on PATH")
    scratch = tempfile.mkdtemp(prefix="bigshuf-bench-shards-", dir=args.scratch)
    try:
        plain = os.path.join(scratch, "corpus.jsonl")
        generate(plain, CORPORA["jsonl"], args.size)
        expected = fingerprint(plain)
        corpus = plain + ".zst"
        subprocess.run(["zstd", "-q", "-3", "-T2", plain, "-o", corpus], check=True)
        out = os.path.join(scratch, "out")
        n = args.shards
        digits = len(str(n - 1))
        big = [sys.executable, "-m", "bigshuf", "--seed", "1", "-T", scratch, "-S", args.limit]
        tools = {
            "zstd -dc > /dev/null": ["sh", "-c", f"zstd -dcq {corpus} > /dev/null"],
            f"zstdcat, shuf, split -n r/{n} --filter=zstd": [
                "sh", "-c",
                f"zstd -dcq {corpus} | shuf | split -a {digits} -d -n r/{n} "
                f"--filter='zstd -q -3 > $FILE.zst' - {out}/part-",
            ],
            f"bigshuf -S {args.limit} .zst in, {n} .zst shards": big
            + [corpus, "--shards", str(n), "-o", f"{out}/part-{{:0{digits}d}}.jsonl.zst"],
            f"bigshuf -S {args.limit} plain in, {n} .zst shards": big
            + [plain, "--shards", str(n), "-o", f"{out}/part-{{:0{digits}d}}.jsonl.zst"],
        }
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in tools}
        for rep in range(args.reps):
            for name, argv in tools.items():
                os.makedirs(out, exist_ok=True)
                warm(corpus)
                warm(plain)
                wall, cpu, rss, code = timed(argv, os.path.join(scratch, "log"))
                if code != 0:
                    raise SystemExit(f"{name} exited {code}")
                if "shards" in name or "split" in name:
                    got = joined_fingerprint(sorted(os.path.join(out, n) for n in os.listdir(out)), scratch, ["zstd", "-dcq"])
                    if got != (expected.lines, expected.bytes, expected.digest):
                        raise SystemExit(f"{name}: the shards are not a permutation of the corpus")
                shutil.rmtree(out)
                os.sync()
                results[name].append((wall, cpu, rss))
                print(f"rep {rep + 1}/{args.reps} {name}: {wall:.2f} s", file=sys.stderr)
        print("\n".join(machine(ram_bytes(), scratch)))
        ratio = os.path.getsize(plain) / os.path.getsize(corpus)
        print(f"- Corpus: {fmt_size(args.size)} of JSONL, zstd -3 to {os.path.getsize(corpus) / MiB:.0f} MiB "
              f"(ratio {ratio:.1f}); {args.reps} repetitions round-robin, medians; shards checked as a permutation\n")
        print("| tool | wall s | CPU s | peak RSS MiB | × zstd -dc |")
        print("| --- | ---: | ---: | ---: | ---: |")
        base = statistics.median(w for w, _, _ in results["zstd -dc > /dev/null"])
        for name, runs in results.items():
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rss = statistics.median(r[2] for r in runs)
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rss / MiB:.0f} | {wall / base:.2f} |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
