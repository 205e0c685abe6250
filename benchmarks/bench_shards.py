#!/usr/bin/env python3
"""Benchmark the pretraining-corpus job: a compressed JSONL corpus in, 32 .zst shards out.

Compares, in one run and round-robin, bigshuf against the usual pipeline
``zstdcat IN | shuf | split -n r/32 --filter='zstd > $FILE.zst'`` and against ``zstd -dc``
alone (the cost of reading the corpus at all), and checks that the shards of every run hold
exactly the corpus's lines. The corpus comes in one file or, with ``--inputs N``, in N shards
(zstd or, with ``--codec gzip``, gzip), as corpora are kept; bigshuf also runs with ``-j1``,
and with ``--against NAME=PYTHON`` under another install too. Reuses bench.py's corpus
generator, timer and fingerprint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import (  # noqa: E402
    CORPORA, GiB, MiB, fingerprint, fmt_size, joined_fingerprint, generate, machine, parse_against, parse_size, ram_bytes,
    timed, warm,
)

#: How each codec's files are read by the shell pipeline, and their suffix.
READERS = {"zstd": (["zstd", "-dcq"], "zst"), "gzip": (["gzip", "-dc"], "gz")}


def compress_inputs(plain: str, codec: str, n: int) -> list[str]:
    """``plain`` cut at line ends into ``n`` files of about equal size, each compressed with the
    Python library bigshuf reads it with (zstd level 3, gzip level 1 by ISA-L: fast to make)."""
    with open(plain, "rb") as f:
        data = f.read()
    cuts = [0] + [data.index(b"\n", len(data) * i // n) + 1 for i in range(1, n)] + [len(data)]
    paths = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        if codec == "zstd":
            import zstandard

            blob = zstandard.ZstdCompressor(level=3, threads=-1).compress(data[lo:hi])
        else:
            from isal import igzip

            blob = igzip.compress(data[lo:hi], compresslevel=1)
        path = f"{plain}.{i:04d}.{READERS[codec][1]}" if n > 1 else f"{plain}.{READERS[codec][1]}"
        with open(path, "wb") as out:
            out.write(blob)
        paths.append(path)
    return paths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=GiB, help="uncompressed corpus size (default 1G)")
    p.add_argument("--shards", type=int, default=32)
    p.add_argument("--limit", default="256M", help="bigshuf -S (default 256M)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scratch", default=None)
    p.add_argument("--inputs", type=int, default=1, help="compressed input files the corpus is cut into (default 1)")
    p.add_argument("--codec", choices=sorted(READERS), default="zstd", help="their codec (default zstd)")
    p.add_argument(
        "--against", action="append", default=[], metavar="NAME=PYTHON",
        help="also run every bigshuf row with another install's Python, alternating",
    )
    args = p.parse_args()
    against = parse_against(args.against)
    if not shutil.which("zstd"):
        raise SystemExit("zstd is needed on PATH")
    scratch = tempfile.mkdtemp(prefix="bigshuf-bench-shards-", dir=args.scratch)
    try:
        plain = os.path.join(scratch, "corpus.jsonl")
        generate(plain, CORPORA["jsonl"], args.size)
        expected = fingerprint(plain)
        inputs = compress_inputs(plain, args.codec, args.inputs)
        reader = " ".join(READERS[args.codec][0])
        out = os.path.join(scratch, "out")
        n = args.shards
        digits = len(str(n - 1))
        named = f"{args.inputs} .{READERS[args.codec][1]}" if args.inputs > 1 else f".{READERS[args.codec][1]}"
        listed = " ".join(inputs)
        tools = {
            f"{reader} > /dev/null": ["sh", "-c", f"{reader} {listed} > /dev/null"],
            f"{reader}, shuf, split -n r/{n} --filter=zstd": [
                "sh", "-c",
                f"{reader} {listed} | shuf | split -a {digits} -d -n r/{n} "
                f"--filter='zstd -q -3 > $FILE.zst' - {out}/part-",
            ],
        }
        shards = ["--shards", str(n), "-o", f"{out}/part-{{:0{digits}d}}.jsonl.zst"]
        for label, python in [("", sys.executable)] + [(f" ({name})", py) for name, py in against]:
            big = [python, "-m", "bigshuf", "--seed", "1", "-T", scratch, "-S", args.limit]
            tools[f"bigshuf{label} -S {args.limit} {named} in, {n} .zst shards"] = big + inputs + shards
            tools[f"bigshuf{label} -S {args.limit} -j1 {named} in, {n} .zst shards"] = big + ["-j1"] + inputs + shards
        tools[f"bigshuf -S {args.limit} plain in, {n} .zst shards"] = [
            sys.executable, "-m", "bigshuf", "--seed", "1", "-T", scratch, "-S", args.limit, plain, *shards
        ]
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in tools}
        for rep in range(args.reps):
            for name, argv in tools.items():
                os.makedirs(out, exist_ok=True)
                for path in inputs + [plain]:
                    warm(path)
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
        stored = sum(os.path.getsize(path) for path in inputs)
        ratio = os.path.getsize(plain) / stored
        print(f"- Corpus: {fmt_size(args.size)} of JSONL in {args.inputs} {args.codec} file(s), {stored / MiB:.0f} MiB "
              f"(ratio {ratio:.1f}); {args.reps} repetitions round-robin, medians; shards checked as a permutation\n")
        print(f"| tool | wall s | CPU s | peak RSS MiB | × {reader} |")
        print("| --- | ---: | ---: | ---: | ---: |")
        base = statistics.median(w for w, _, _ in results[f"{reader} > /dev/null"])
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
