#!/usr/bin/env python3
"""Benchmark the Dask engine against the local engine on the same file and machine.

Times, round-robin: `cp` (the one-pass floor), the local engine, and ``--engine=dask`` on the
LocalCluster it starts (one single-threaded worker process per core) writing one file and
writing one shard per worker; plus the Dask engine on a one-line file, its fixed cost
(starting and stopping the cluster). Every output is checked to hold exactly the input's
lines. Reuses bench.py's corpus generator, timer and fingerprint. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import CORPORA, GiB, MiB, fingerprint, fmt_size, joined_fingerprint, generate, machine, parse_size, ram_bytes, timed, warm  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=GiB, help="corpus size (default 1G)")
    p.add_argument("--limit", default="1G", help="bigshuf -S for both engines (default 1G)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scratch", default=None)
    args = p.parse_args()
    scratch = tempfile.mkdtemp(prefix="bigshuf-bench-dask-", dir=args.scratch)
    try:
        corpus = os.path.join(scratch, "corpus.jsonl")
        generate(corpus, CORPORA["jsonl"], args.size)
        expected = fingerprint(corpus)
        tiny = os.path.join(scratch, "tiny.jsonl")
        with open(tiny, "wb") as f:
            f.write(b'{"text":"one line"}\n')
        out = os.path.join(scratch, "out")
        workers = os.cpu_count() or 1
        big = [sys.executable, "-m", "bigshuf", "--seed", "1", "-T", scratch, "-S", args.limit]
        dask = big + ["--engine=dask"]
        tools = {
            "cp": ["cp", "--reflink=never", corpus, out],
            f"bigshuf -S {args.limit} (local engine)": big + [corpus, "-o", out],
            f"bigshuf --engine=dask -S {args.limit}, one output file": dask + [corpus, "-o", out],
            f"bigshuf --engine=dask -S {args.limit}, --shards={workers}": dask
            + [corpus, f"--shards={workers}", "-o", out + "/"],
            "bigshuf --engine=dask on a one-line file (fixed cost)": dask + [tiny, "-o", out],
        }
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in tools}
        for rep in range(args.reps):
            for name, argv in tools.items():
                warm(corpus)
                wall, cpu, rss, code = timed(argv, os.path.join(scratch, "log"))
                if code != 0:
                    with open(os.path.join(scratch, "log"), errors="replace") as f:
                        raise SystemExit(f"{name} exited {code}:\n{f.read()}")
                if "one-line" not in name:
                    got = joined_fingerprint(sorted(os.path.join(out, n) for n in os.listdir(out)), scratch) if os.path.isdir(out) else None
                    if got is None:
                        fp = fingerprint(out)
                        got = (fp.lines, fp.bytes, fp.digest)
                    if got != (expected.lines, expected.bytes, expected.digest):
                        raise SystemExit(f"{name}: the output is not a permutation of the corpus")
                if os.path.isdir(out):
                    shutil.rmtree(out)
                else:
                    os.remove(out)
                os.sync()
                results[name].append((wall, cpu, rss))
                print(f"rep {rep + 1}/{args.reps} {name}: {wall:.2f} s", file=sys.stderr)
        print("\n".join(machine(ram_bytes(), scratch)))
        print(f"- Corpus: {fmt_size(args.size)} of JSONL ({expected.lines} lines); {args.reps} repetitions "
              f"round-robin, medians; every output checked as a permutation; Dask LocalCluster of {workers} "
              "single-threaded worker processes, started and stopped by each run\n")
        print("| tool | wall s | CPU s | peak RSS MiB | × cp | × local engine |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        med = {name: tuple(statistics.median(r[i] for r in runs) for i in range(3)) for name, runs in results.items()}
        cp_wall = med["cp"][0]
        local_wall = med[f"bigshuf -S {args.limit} (local engine)"][0]
        for name, (wall, cpu, rss) in med.items():
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rss / MiB:.0f} | {wall / cp_wall:.2f} | {wall / local_wall:.2f} |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
