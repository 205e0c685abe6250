#!/usr/bin/env python3
"""Benchmark the training formats (issue 16): WebDataset tar shards against `tar -cf` of the same
members, and a Megatron indexed dataset against `cp` of its .bin and .idx.

Both corpora are generated here (random bytes; nothing is downloaded). Every row runs round-robin in
one run, alternating directions; each output is checked (tars: the multiset of samples, every
member's name and bytes; Megatron: the multiset of documents) outside the timing, and the medians
are printed as markdown tables with ratios to the floor. Exits 1 if a row fails or its check does not hold.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import statistics
import struct
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the timer, the cache warmer and the size parser of bench.py)

MiB = bench.MiB


@dataclass(frozen=True)
class Row:
    """A command with ``{out}`` (a file, a prefix or a directory), the check of what it wrote, and
    the files to read into the page cache before it."""

    name: str
    argv: tuple[str, ...]
    check: Callable[[str], str]


def make_tars(directory: str, members_dir: str, size: int, shards: int, rng: np.random.Generator) -> int:
    """Tar ``shards`` of samples (a ~100 KB ``.bin`` and a ~1 KB ``.json`` each) of about ``size``
    bytes in all, in ``directory``; the same member files also under ``members_dir`` (the floor's
    input). Returns the number of samples."""
    n = max(shards, size // (101 * 1024))
    per = -(-n // shards)
    for s in range(shards):
        with tarfile.open(os.path.join(directory, f"shard-{s:04d}.tar"), "w", format=tarfile.GNU_FORMAT) as tar:
            for i in range(s * per, min(n, (s + 1) * per)):
                for suffix, length in ((".bin", int(rng.integers(90_000, 110_000))), (".json", int(rng.integers(500, 1500)))):
                    name = f"{i:07d}{suffix}"
                    data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = length, 1_700_000_000, 0o644
                    tar.addfile(info, io.BytesIO(data))
                    with open(os.path.join(members_dir, name), "wb") as f:
                        f.write(data)
    return n


def tar_samples(paths: list[str]) -> Counter[bytes]:
    """The multiset of samples in the tars ``paths``: each sample's member names and bytes, hashed."""
    samples: Counter[bytes] = Counter()
    for path in paths:
        key, h = None, hashlib.blake2b(digest_size=16)
        with tarfile.open(path) as tar:
            for member in tar:
                this = member.name.split("/")[-1].split(".")[0]
                if key is not None and this != key:
                    samples[h.digest()] += 1
                    h = hashlib.blake2b(digest_size=16)
                key = this
                h.update(member.name.encode() + b"\0")
                f = tar.extractfile(member)
                h.update(f.read() if f else b"")
        if key is not None:
            samples[h.digest()] += 1
    return samples


def make_megatron(prefix: str, size: int, rng: np.random.Generator) -> int:
    """``prefix.bin``/``.idx`` of uint16 tokens, about ``size`` bytes of documents of one or two
    sequences of 100-2000 tokens (the MMIDIDX layout, version 1). Returns the number of documents."""
    tokens = size // 2
    lengths: list[int] = []
    doc_index = [0]
    total = 0
    while total < tokens:
        for _ in range(int(rng.integers(1, 3))):
            length = int(rng.integers(100, 2000))
            lengths.append(length)
            total += length
        doc_index.append(len(lengths))
    with open(prefix + ".bin", "wb") as f:
        f.write(rng.integers(0, 65_000, total, dtype=np.uint16).tobytes())
    sizes = np.array(lengths, np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes[:-1], dtype=np.int64) * 2]).astype(np.int64)
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 8, len(sizes), len(doc_index)))
        f.write(sizes.tobytes() + pointers.tobytes() + np.array(doc_index, np.int64).tobytes())
    return len(doc_index) - 1


def megatron_documents(prefix: str) -> Counter[bytes]:
    """The multiset of documents of ``prefix.bin``/``.idx`` (read from the format, not by bigshuf): each document's tokens, hashed."""
    with open(prefix + ".idx", "rb") as f:
        head = f.read(34)
        _version, code, count, docs = struct.unpack("<QBQQ", head[9:34])
        sizes = np.frombuffer(f.read(4 * count), np.int32)
        pointers = np.frombuffer(f.read(8 * count), np.int64)
        doc_index = np.frombuffer(f.read(8 * docs), np.int64)
    assert code == 8, code
    data = np.memmap(prefix + ".bin", np.uint8, "r")
    out: Counter[bytes] = Counter()
    for d in range(docs - 1):
        first, stop = int(doc_index[d]), int(doc_index[d + 1])
        h = hashlib.blake2b(digest_size=16)
        for s in range(first, stop):
            h.update(struct.pack("<i", int(sizes[s])) + data[int(pointers[s]) : int(pointers[s]) + 2 * int(sizes[s])].tobytes())
        out[h.digest()] += 1
    return out


def run_rows(title: str, table: list[Row], warm: list[str], floor: str, reps: int, scratch: str) -> bool:
    """Time ``table`` round-robin ``reps`` times, print its markdown table (ratios to row ``floor``); False if a check failed."""
    log = os.path.join(scratch, "stderr.log")
    out = os.path.join(scratch, "out")
    samples: dict[str, list[tuple[float, float, int, str]]] = {r.name: [] for r in table}
    for rep in range(reps):
        order = table[rep % len(table):] + table[: rep % len(table)]
        for row in order[::-1] if rep % 2 else order:
            for path in warm:
                bench.warm(path)
            os.mkdir(out)
            wall, cpu, rss, status = bench.timed([a.format(out=out) for a in row.argv], log)
            check = row.check(out) if status == 0 else f"exit {status}"
            samples[row.name].append((wall, cpu, rss, check))
            print(f"{title} rep {rep + 1}/{reps} {row.name}: {wall:.2f} s, {check}", file=sys.stderr)
            shutil.rmtree(out)
            os.sync()
    med = {name: statistics.median(s[0] for s in runs) for name, runs in samples.items()}
    print(f"\n{title}; median of {reps}, warm cache; {sys.executable} -m bigshuf")
    print(f"| run | wall s | CPU s | peak RSS MiB | × {floor} | check |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    ok = True
    for name, runs in samples.items():
        checks = sorted({s[3] for s in runs})
        ok &= checks == ["ok"]
        print(f"| {name} | {med[name]:.2f} | {statistics.median(s[1] for s in runs):.2f} | "
              f"{statistics.median(s[2] for s in runs) / MiB:.0f} | {med[name] / med[floor]:.2f} | {'; '.join(checks)} |")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Generate both corpora, time every row, print the tables; 1 if a row failed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=bench.parse_size, default=bench.parse_size("512M"), help="each corpus's size (default 512M)")
    p.add_argument("--shards", type=int, default=16, help="input tar shards (default 16)")
    p.add_argument("--limit", default="128M", help="-S of the external runs (default 128M)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scratch", default=None, help="parent of the scratch directory (default $TMPDIR or /tmp)")
    args = p.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bigshuf-bench-formats-", dir=args.scratch)
    rng = np.random.default_rng(16)
    try:
        tars, members = os.path.join(scratch, "tars"), os.path.join(scratch, "members")
        os.mkdir(tars)
        os.mkdir(members)
        n = make_tars(tars, members, args.size, args.shards, rng)
        inputs = sorted(os.path.join(tars, f) for f in os.listdir(tars))
        want = tar_samples(inputs)
        big = tuple(bench.bigshuf_argv(scratch))
        in_memory = str(4 * args.size // MiB) + "M"

        def tar_ok(out: str) -> str:
            got = tar_samples(sorted(os.path.join(out, f) for f in os.listdir(out)))
            return "ok" if got == want else f"NOT A PERMUTATION ({sum(got.values()):,} samples of {n:,})"

        def members_ok(out: str) -> str:
            with tarfile.open(os.path.join(out, "all.tar")) as tar:
                return "ok" if sum(m.isfile() for m in tar.getmembers()) == 2 * n else "members missing"

        tar_rows = [
            Row("tar -cf of the members", ("tar", "-cf", "{out}/all.tar", "-C", members, "."), members_ok),
            Row("tar -cf of the members, then sync", ("sh", "-c", f"tar -cf {{out}}/all.tar -C {members} . && sync {{out}}/all.tar"), members_ok),
            Row(f"bigshuf -S {in_memory} (in memory)", big + ("-S", in_memory, tars, "--shards", str(args.shards), "-o", "{out}/"), tar_ok),
            Row(f"bigshuf -S {args.limit}", big + ("-S", args.limit, tars, "--shards", str(args.shards), "-o", "{out}/"), tar_ok),
        ]
        ok = run_rows(f"{bench.fmt_size(sum(map(os.path.getsize, inputs)))} of {len(inputs)} tars, {n:,} samples",
                      tar_rows, inputs, tar_rows[1].name, args.reps, scratch)
        shutil.rmtree(tars)
        shutil.rmtree(members)

        prefix = os.path.join(scratch, "corpus_text_document")
        docs = make_megatron(prefix, args.size, rng)
        want_docs = megatron_documents(prefix)

        def docs_ok(out: str) -> str:
            got = megatron_documents(os.path.join(out, "shuffled"))
            return "ok" if got == want_docs else f"NOT A PERMUTATION ({sum(got.values()):,} documents of {docs:,})"

        def copied(out: str) -> str:
            return "ok" if os.path.getsize(os.path.join(out, "shuffled.bin")) == os.path.getsize(prefix + ".bin") else "short copy"

        mg_rows = [
            Row("cp .bin .idx", ("sh", "-c", f"cp --reflink=never {prefix}.bin {{out}}/shuffled.bin && cp {prefix}.idx {{out}}/shuffled.idx"), copied),
            Row("cp .bin .idx, then sync", ("sh", "-c", f"cp --reflink=never {prefix}.bin {{out}}/shuffled.bin && cp {prefix}.idx {{out}}/shuffled.idx && sync {{out}}/shuffled.bin {{out}}/shuffled.idx"), copied),
            Row(f"bigshuf -S {in_memory} (in memory)", big + ("-S", in_memory, prefix, "-o", "{out}/shuffled"), docs_ok),
            Row(f"bigshuf -S {args.limit}", big + ("-S", args.limit, prefix, "-o", "{out}/shuffled"), docs_ok),
        ]
        ok &= run_rows(f"Megatron dataset: {bench.fmt_size(os.path.getsize(prefix + '.bin'))} of uint16 tokens, {docs:,} documents",
                       mg_rows, [prefix + ".bin", prefix + ".idx"], mg_rows[1].name, args.reps, scratch)
        return 0 if ok else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
