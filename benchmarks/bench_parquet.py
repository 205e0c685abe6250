#!/usr/bin/env python3
"""Benchmark bigshuf on a Parquet dataset against pyarrow, DuckDB, Polars and `cp -r`.

Generates a dataset of an LM-corpus shape (int64 id, variable-length text with some nulls, a
small list column and a struct), then times, round-robin, every tool shuffling all its rows
into one zstd Parquet file, with wall time and peak RSS of the tool's process. Every output is
checked: the row count, the ids a permutation of 0..n-1, and each row's text length, null and
list length matching its id (so columns did not come apart). Exits 1 if bigshuf, cp, Polars
or unlimited DuckDB fails or any output is wrong; DuckDB at a memory limit and pyarrow (whose
take overflows string offsets past 2 GiB) may fail, and the table says why. DuckDB and
Polars are optional: a tool whose package is missing is skipped with a note. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from bench import GiB, MiB, fmt_size, machine, parse_against, parse_size, ram_bytes, timed, warm, with_against  # noqa: E402

SEED = 20240601
TEXT_MIN, TEXT_MAX = 200, 2000  # text lengths are uniform in this range (bytes, ASCII)
TEXT_NULL = 0.01  # share of rows whose text is null
SCORE_NULL = 0.05  # share of rows whose meta.score is null
GROUP_ROWS = 128 * 1024  # row groups of the generated dataset
SOURCES = ["web", "books", "wiki", "code", "arxiv", "forums"]
ALPHABET = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz      .,;-'eeeaaoint", np.uint8)
IN_MEMORY_FACTOR = 3.5  # in-memory tools are skipped when this x the Arrow size exceeds 85% of RAM
IN_MEMORY_RAM_FRACTION = 0.85


@dataclass(frozen=True)
class Dataset:
    """The generated dataset: where it is, its sizes and what each row must hold."""

    path: str
    files: int
    rows: int
    arrow_bytes: int  # sum of Table.nbytes of the generated tables
    disk_bytes: int
    text_len: np.ndarray  # by id; -1 where text is null
    tags_len: np.ndarray  # by id


@dataclass(frozen=True)
class Tool:
    name: str
    argv: tuple[str, ...]  # with {data}, {out} and {tmp} placeholders
    may_fail: bool = False  # a failure is a result (e.g. out of memory at a limit), not a benchmark error
    spill_dir: bool = False  # the tool reports the peak size of {tmp} in {out}.spill


@dataclass(frozen=True)
class Sample(bench.Sample):
    """One timed run of one tool, with the peak size of its spill directory (DuckDB)."""

    spill: int | None = None


def generate(directory: str, size: int, files: int) -> Dataset:
    """About ``size`` bytes of Arrow data in ``files`` zstd Parquet files; vectorised with NumPy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(directory)
    rng = np.random.default_rng(SEED)
    mean_row = (TEXT_MIN + TEXT_MAX) / 2 + 4 + 8 + 8 + 2 * 4 + 4 + 4 + 6 + 4  # text + offsets, id, tags, meta
    rows = max(files, int(size / mean_row))
    text_len = rng.integers(TEXT_MIN, TEXT_MAX + 1, rows).astype(np.int64)
    text_null = rng.random(rows) < TEXT_NULL
    text_len[text_null] = -1
    tags_len = rng.integers(0, 5, rows).astype(np.int32)
    arrow = disk = 0
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for i in range(files):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        n = hi - lo
        lens = np.maximum(text_len[lo:hi], 0)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        # Random bytes mapped through a 48-symbol alphabet with repeated spaces and vowels:
        # text-like in length and in what zstd can gain (about 1.6x), not in content.
        chars = ALPHABET[rng.integers(0, len(ALPHABET), int(offsets[-1]), dtype=np.uint8)]
        valid = pa.py_buffer(np.packbits(~text_null[lo:hi], bitorder="little"))
        text = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars), valid)
        text = text.cast(pa.string()) if offsets[-1] < 2**31 else text
        tag_off = np.zeros(n + 1, np.int32)
        np.cumsum(tags_len[lo:hi], out=tag_off[1:])
        tag_values = pa.array(rng.integers(0, 50_000, int(tag_off[-1]), dtype=np.int32))
        tags = pa.ListArray.from_arrays(pa.array(tag_off), tag_values)
        score = rng.random(n).astype(np.float32)
        meta = pa.StructArray.from_arrays(
            [
                pa.array(SOURCES).take(pa.array(rng.integers(0, len(SOURCES), n, dtype=np.int32))),
                pa.array(score, mask=rng.random(n) < SCORE_NULL),
            ],
            names=["source", "score"],
        )
        table = pa.table({"id": pa.array(np.arange(lo, hi, dtype=np.int64)), "text": text, "tags": tags, "meta": meta})
        table = table.replace_schema_metadata({"bench": "bigshuf bench_parquet"})
        arrow += table.nbytes
        path = os.path.join(directory, f"part-{i:05d}.parquet")
        pq.write_table(table, path, compression="zstd", row_group_size=GROUP_ROWS)
        disk += os.path.getsize(path)
    return Dataset(directory, files, rows, arrow, disk, text_len, tags_len)


def check(ds: Dataset, out: str) -> str:
    """``ok`` if ``out`` (a file or a directory) holds exactly the dataset's rows; else what is wrong."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        meta_rows = (
            sum(pq.ParquetFile(os.path.join(out, f)).metadata.num_rows for f in os.listdir(out))
            if os.path.isdir(out) else pq.ParquetFile(out).metadata.num_rows
        )
        if meta_rows != ds.rows:
            return f"{meta_rows} rows, not {ds.rows}"
        table = pq.read_table(out, columns=["id", "text", "tags"])
    except Exception as e:  # noqa: BLE001 - any unreadable output is a failed check
        return f"unreadable: {type(e).__name__}"
    ids = table.column("id").to_numpy()
    if len(ids) != ds.rows or ids.min() < 0 or ids.max() >= ds.rows:
        return "ids out of range"
    seen = np.zeros(ds.rows, bool)
    seen[ids] = True
    if not seen.all():
        return "ids not a permutation"
    text_len = pc.fill_null(pc.binary_length(table.column("text")), -1).to_numpy().astype(np.int64)
    if not np.array_equal(text_len, ds.text_len[ids]):
        return "text does not match its id"
    tags_len = pc.fill_null(pc.list_value_length(table.column("tags")), 0).to_numpy()
    if not np.array_equal(tags_len, ds.tags_len[ids]):
        return "tags do not match their id"
    return "ok" if os.path.isdir(out) else ("ok" if not np.all(ids[:-1] < ids[1:]) else "NOT SHUFFLED (sorted)")


# Child scripts: each runs as its own process under the timing helper, so its RSS is its own.
PYARROW = """\
import sys, numpy as np, pyarrow.parquet as pq
data, out = sys.argv[1:3]
t = pq.read_table(data)
t = t.take(np.random.default_rng(1).permutation(t.num_rows))
pq.write_table(t, out, compression="zstd")
"""

DUCKDB = """\
import os, sys, threading, duckdb
data, out, tmp, limit, threads = sys.argv[1:6]
os.makedirs(tmp, exist_ok=True)
peak, done = [0], threading.Event()
def watch():  # peak bytes in the spill directory, sampled every 50 ms
    while not done.wait(0.05):
        try:
            peak[0] = max(peak[0], sum(e.stat().st_size for e in os.scandir(tmp) if e.is_file()))
        except OSError:
            pass
threading.Thread(target=watch, daemon=True).start()
con = duckdb.connect()
con.execute(f"SET temp_directory='{tmp}'")
if limit != "-":
    con.execute(f"SET memory_limit='{limit}'")
if threads != "-":
    con.execute(f"SET threads={threads}")
try:
    con.execute(f"COPY (SELECT * FROM read_parquet('{data}/*.parquet') ORDER BY random()) "
                f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
finally:
    done.set()
    with open(out + ".spill", "w") as f:
        f.write(str(peak[0]))
"""

POLARS = """\
import sys, polars as pl
data, out = sys.argv[1:3]
df = pl.scan_parquet(f"{data}/*.parquet").collect()
df.sample(fraction=1, shuffle=True, seed=1).write_parquet(out, compression="zstd")
"""


def tools_for(ds: Dataset, limit: int, ram: int, notes: list[str], skip: list[str]) -> list[Tool]:
    """The tools to run; skipped ones are explained in ``notes``."""
    py = sys.executable
    big = (py, "-m", "bigshuf", "--seed", "1", "-T", "{tmp}", "--compress", "zstd")
    lim = fmt_size(limit)
    tools = [
        Tool("cp -r", ("cp", "-r", "--reflink=never", "{data}", "{out}")),
        Tool(f"bigshuf -S {lim}", big + ("-S", lim, "{data}", "-o", "{out}")),
    ]
    fits = IN_MEMORY_FACTOR * ds.arrow_bytes <= IN_MEMORY_RAM_FRACTION * ram
    if fits:
        mem = fmt_size(-(-3 * ds.arrow_bytes // MiB) * MiB)
        tools.append(Tool(f"bigshuf -S {mem} (in memory)", big + ("-S", mem, "{data}", "-o", "{out}")))
        # may fail: take concatenates each column, and a string column over 2 GiB overflows its offsets
        tools.append(Tool("pyarrow read_table + take", (py, "-c", PYARROW, "{data}", "{out}"), may_fail=True))
    else:
        notes.append(
            f"in-memory tools skipped: {IN_MEMORY_FACTOR}x the Arrow size is above "
            f"{IN_MEMORY_RAM_FRACTION:.0%} of RAM."
        )
    if importlib.util.find_spec("duckdb") is None:
        notes.append("DuckDB skipped: the duckdb package is not installed in this Python.")
    else:
        duck = (py, "-c", DUCKDB, "{data}", "{out}", "{tmp}")
        if fits:
            tools.append(Tool("duckdb ORDER BY random()", duck + ("-", "-"), spill_dir=True))
        # At the same limit as bigshuf (with its default threads, and with the single thread its
        # out-of-memory message suggests), and at 4x that limit, where it has room to spill.
        for mib, threads in ((limit // MiB, "-"), (limit // MiB, "1"), (4 * limit // MiB, "-")):
            name = f"duckdb ORDER BY random(), memory_limit={max(1, mib)}MB"
            name += f", threads={threads}" if threads != "-" else ""
            tools.append(Tool(name, duck + (f"{max(1, mib)}MB", threads), may_fail=True, spill_dir=True))
    if importlib.util.find_spec("polars") is None:
        notes.append("Polars skipped: the polars package is not installed in this Python.")
    elif fits:
        tools.append(Tool("polars collect + sample(shuffle)", (py, "-c", POLARS, "{data}", "{out}")))
    if skip:
        kept = [t for t in tools if t.name == f"bigshuf -S {lim}" or not any(s in t.name for s in skip)]
        notes += [f"{t.name} skipped (--skip)." for t in tools if t not in kept]
        tools = kept
    if ds.arrow_bytes < limit:
        notes.append(f"the dataset fits in -S {lim}, so the bigshuf -S {lim} row may be the in-memory path.")
    return tools


def warm_dataset(ds: Dataset) -> None:
    for name in sorted(os.listdir(ds.path)):
        warm(os.path.join(ds.path, name))


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def bench(ds: Dataset, tools: list[Tool], reps: int, scratch: str) -> dict[str, list[Sample]]:
    """Time every tool ``reps`` times, round-robin, checking and deleting each output."""
    out, tmp, log = (os.path.join(scratch, n) for n in ("out.parquet", "tmp", "stderr.log"))
    samples: dict[str, list[Sample]] = {t.name: [] for t in tools}
    for rep in range(reps):
        order = tools[rep % len(tools):] + tools[: rep % len(tools)]
        for tool in order[::-1] if rep % 2 else order:  # as bench.bench_file: no fixed neighbour
            os.makedirs(tmp)
            warm_dataset(ds)
            argv = [a.replace("{data}", ds.path).replace("{out}", out).replace("{tmp}", tmp) for a in tool.argv]
            wall, cpu, rss, status = timed(argv, log)
            spill = None
            if tool.spill_dir and os.path.exists(out + ".spill"):
                with open(out + ".spill") as f:
                    spill = int(f.read() or 0)
                os.remove(out + ".spill")
            if status != 0:
                with open(log, "rb") as f:
                    tail = f.read()[-1500:].decode(errors="replace").strip()
                print(f"[{tool.name}] failed (exit {status}):\n{tail}", file=sys.stderr)
                last = tail.splitlines()[-1] if tail else ""
                if "out of memory" in tail.lower() or "OutOfMemory" in tail:
                    reason = "out of memory"
                elif "offset overflow" in last:
                    reason = "offset overflow (string column over 2 GiB)"
                else:
                    reason = f"exit {status}" + (f", {last[:80]}" if last else "")
                result = f"failed: {reason}"
            elif not os.path.exists(out):
                result = "no output"
            else:
                result = check(ds, out)
            samples[tool.name].append(Sample(wall, cpu, rss, result, spill))
            extra = f", spilled {spill / MiB:.0f} MiB" if spill else ""
            print(f"rep {rep + 1}/{reps} {tool.name}: {wall:.2f} s, {rss / MiB:.0f} MiB{extra}, {result}",
                  file=sys.stderr)
            remove(out)
            shutil.rmtree(tmp, ignore_errors=True)
            os.sync()  # start the next run without this output's writeback pending
    return samples


def table(ds: Dataset, samples: dict[str, list[Sample]], reference: str) -> list[str]:
    """Markdown rows of medians (over the successful runs), with ratios."""
    def med(values: Sequence[float]) -> float:
        return statistics.median(values) if values else float("nan")

    good = {n: [s for s in runs if not s.check.startswith("failed")] for n, runs in samples.items()}
    ref = med([s.wall for s in good.get(reference, [])])
    rows = [
        "| tool | wall s | × bigshuf external | CPU s | peak RSS MiB | RSS × Arrow size | spilled MiB | check |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, runs in samples.items():
        ok = good[name]
        checks = sorted({s.check for s in runs})
        if not ok:
            rss_failed = med([s.rss for s in runs]) / MiB
            rows.append(f"| {name} | — | — | — | {rss_failed:.0f} | — | — | {'; '.join(checks)} |")
            continue
        wall, rss = med([s.wall for s in ok]), med([s.rss for s in ok])
        spills = [s.spill for s in ok if s.spill is not None]
        spill = f"{med(spills) / MiB:.0f}" if spills else "—"
        rows.append(
            f"| {name} | {wall:.2f} | {wall / ref:.2f} | {med([s.cpu for s in ok]):.2f} | {rss / MiB:.0f} | "
            f"{rss / ds.arrow_bytes:.2f} | {spill} | {'; '.join(checks)} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, help="Arrow size of the dataset (default 1G; --quick 64M)")
    p.add_argument("--files", type=int, default=8, help="Parquet files in the dataset (default 8)")
    p.add_argument("--limit", type=parse_size, help="bigshuf -S and DuckDB memory_limit (default 256M; --quick 16M)")
    p.add_argument("--reps", type=int, help="repetitions per tool (default 2; --quick 1)")
    p.add_argument("--scratch", help="parent of the scratch directory (default $TMPDIR or /tmp)")
    p.add_argument("--skip", default="", help="comma-separated substrings of row names not to run, e.g. polars")
    p.add_argument("--quick", action="store_true", help="64M, one repetition, -S 16M: a smoke run")
    p.add_argument(
        "--against", action="append", default=[], metavar="NAME=PYTHON",
        help="also run every bigshuf row with another install's Python, alternating (before/after in one run)",
    )
    args = p.parse_args(argv)
    try:
        against = parse_against(args.against)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    size = args.size or (64 * MiB if args.quick else GiB)
    limit = args.limit or (16 * MiB if args.quick else 256 * MiB)
    reps = args.reps or (1 if args.quick else 2)
    if reps < 1 or args.files < 1 or size < 1 * MiB:
        p.error("--reps and --files must be at least 1 and --size at least 1M")
    if args.scratch:
        os.makedirs(args.scratch, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="bigshuf-bench-parquet-", dir=args.scratch)
    ram = ram_bytes()
    failed = False
    try:
        if shutil.disk_usage(scratch).free < 4 * size:
            raise SystemExit(f"needs about {fmt_size(4 * size)} free in {scratch}; use --scratch")
        t0 = time.perf_counter()
        ds = generate(os.path.join(scratch, "data"), size, args.files)
        print(f"generated {ds.rows:,} rows, {ds.arrow_bytes / MiB:.0f} MiB Arrow, {ds.disk_bytes / MiB:.0f} MiB "
              f"Parquet in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        notes: list[str] = []
        tools = with_against(tools_for(ds, limit, ram, notes, [s for s in args.skip.split(",") if s]), against)
        samples = bench(ds, tools, reps, scratch)
        for tool in tools:
            for s in samples[tool.name]:
                if s.check.startswith("failed") and tool.may_fail:
                    continue
                failed |= s.check != "ok"
        versions = []
        for mod in ("pyarrow", "duckdb", "polars"):
            if importlib.util.find_spec(mod) is not None:
                versions.append(f"{mod} {__import__(mod).__version__}")
        header = machine(ram, scratch)
        header[1] += ", " + ", ".join(versions)
        header.append(
            f"- Dataset: {ds.files} zstd Parquet files, {ds.rows:,} rows (int64 id; text {TEXT_MIN}-{TEXT_MAX} chars, "
            f"{TEXT_NULL:.0%} null; list<int32> tags; struct<source, score>), row groups of {GROUP_ROWS:,} rows: "
            f"{ds.arrow_bytes / MiB:.0f} MiB of Arrow data, {ds.disk_bytes / MiB:.0f} MiB on disk"
        )
        header.append(
            f"- {reps} repetition(s), round-robin; medians of successful runs; wall and CPU (user+sys) s, peak RSS "
            "(ru_maxrss) of the tool's process; every tool writes one zstd Parquet file (cp -r copies the dataset)"
        )
        print("\n".join(["## bigshuf Parquet benchmark", "", *header, ""]))
        print("\n".join(table(ds, samples, f"bigshuf -S {fmt_size(limit)}")))
        if notes:
            print("\n" + "\n".join(f"- {n}" for n in notes))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print("FAILED: a tool that must succeed failed, or an output did not hold the dataset's rows", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
