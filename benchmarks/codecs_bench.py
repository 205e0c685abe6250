"""Time the candidate gzip/zstd/bzip2/xz libraries the way bigshuf's engine drives them.

Reading: ``readinto`` of one reused 16 MiB buffer from a stream over the compressed file.
Writing: ``write`` of 16 MiB memoryviews into a compressing stream over a file opened as the
output sink opens it. Speeds are MB/s (10^6 bytes) of uncompressed data; ``cpu`` is process CPU
seconds (all threads) per wall second, so 2.0 means both cores were busy. Each figure is the
median of ``--reps`` runs, taken round-robin so that a noisy spell hits every row alike.

    /work/venv/bin/python benchmarks/codecs_bench.py               # 256 MiB corpus, 3 reps
    /work/venv/bin/python benchmarks/codecs_bench.py --size 16M --reps 1   # a quick look

The zlib-ng rows appear only where it is installed (``pip install zlib-ng``): a candidate, not
a dependency.
"""

# mypy: disable-error-code="no-untyped-call,misc,import-untyped"
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

CHUNK = 16 << 20

#: Makes a reading or writing stream over a raw binary file.
Opener = Callable[[BinaryIO], Any]
#: (operation, library, a call timing it once: wall seconds, CPU seconds, compressed size or 0).
Row = tuple[str, str, Callable[[], tuple[float, float, int]]]


def parse_size(text: str) -> int:
    """``256M`` → bytes (binary suffixes K, M, G)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def make_corpus(path: str, size: int, seed: int = 1) -> None:
    """Lines of 60-1000 bytes of random lowercase words drawn from a Zipf-like vocabulary.

    Random words from a skewed vocabulary compress about as well as English text (gzip -6 to
    0.44 of the size), unlike uniformly random letters, so the codecs work about as hard as on
    real corpora.
    """
    rng = np.random.default_rng(seed)
    nvocab = 20000
    lens = rng.integers(2, 11, nvocab)
    letters = rng.integers(ord("a"), ord("z") + 1, int(lens.sum()), dtype=np.uint8)
    # Each vocabulary word is stored followed by a space, so a token is one contiguous slice.
    word_end = np.cumsum(lens + 1)
    vocab = np.full(int(word_end[-1]), ord(" "), np.uint8)
    starts = word_end - lens - 1
    vocab[np.arange(len(letters)) + np.repeat(np.arange(nvocab), lens)] = letters
    weights = 1.0 / (np.arange(nvocab) + 10.0)
    weights /= weights.sum()
    written = 0
    with open(path, "wb") as f:
        while written < size:
            tokens = rng.choice(nvocab, 4_000_000, p=weights)
            tlen = lens[tokens] + 1
            ends = np.cumsum(tlen)
            total = int(ends[-1])
            firsts = ends - tlen
            src = np.repeat(starts[tokens] - firsts, tlen) + np.arange(total)
            out = vocab[src]
            # Line breaks: replace the space after the word that crosses each line boundary.
            bounds = np.cumsum(rng.integers(60, 1001, total // 60 + 1))
            bounds = bounds[bounds < total]
            cut = np.unique(np.searchsorted(ends, bounds))
            out[ends[cut] - 1] = ord("\n")
            # Whole lines only; the last block stops at the last line end within ``size``.
            stops = ends[cut]
            stops = stops[stops <= size - written]
            block = out[: int(stops[-1]) if len(stops) else 0]
            if not len(block):
                break
            f.write(block.tobytes())
            written += len(block)


def time_read(open_stream: Opener, path: str) -> tuple[float, float, int]:
    """Seconds and CPU seconds to drain ``open_stream(raw)`` with 16 MiB ``readinto`` calls."""
    buf = memoryview(bytearray(CHUNK))
    t0, c0 = time.perf_counter(), time.process_time()
    total = 0
    with open(path, "rb", buffering=0) as raw:
        stream = open_stream(raw)
        while n := stream.readinto(buf):
            total += n
        stream.close()
    assert total > 0
    return time.perf_counter() - t0, time.process_time() - c0, 0


def time_write(open_stream: Opener, data: memoryview, out: str) -> tuple[float, float, int]:
    """Seconds, CPU seconds and compressed size to write ``data`` in 16 MiB chunks."""
    t0, c0 = time.perf_counter(), time.process_time()
    with open(out, "wb", buffering=1 << 20) as raw:
        stream = open_stream(raw)
        for i in range(0, len(data), CHUNK):
            stream.write(data[i : i + CHUNK])
        stream.close()
    return time.perf_counter() - t0, time.process_time() - c0, os.path.getsize(out)


def time_cli(argv: list[str], src: str) -> tuple[float, float, int]:
    """Seconds and child CPU seconds of ``argv < src > /dev/null``."""
    t0 = time.perf_counter()
    before = os.times()
    with open(src, "rb") as fin, open(os.devnull, "wb") as fout:
        subprocess.run(argv, stdin=fin, stdout=fout, check=True)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return time.perf_counter() - t0, cpu, 0


def member_loop(codec: str, new: Callable[[], object]) -> Opener:
    """An opener running a library's decompressobj through bigshuf.storage.codecs' strict member loop."""
    from bigshuf.storage import decoding
    def opener(raw: BinaryIO) -> Any:
        source = decoding._Counted(raw)
        loop = decoding._MemberLoop(source, codec, new, "zlib")
        return decoding._Reader(source, loop, codec, "bench", (Exception,))

    return opener


def candidates(src: dict[str, str], raw_path: str) -> tuple[list[Row], int]:
    """(operation, library, timed call) rows, and the uncompressed size each row processes."""
    import isal.igzip
    import isal.igzip_threaded
    import pyarrow as pa
    import zstandard

    try:
        import zlib_ng.gzip_ng
        import zlib_ng.gzip_ng_threaded
        import zlib_ng.zlib_ng
    except ImportError:  # only a candidate: pip install zlib-ng for its rows
        zlib_ng = None  # type: ignore[assignment]

    from bigshuf.storage import codecs, decoding
    with open(raw_path, "rb") as f:
        data = memoryview(f.read())
    out = src["out"]
    rows: list[Row] = []

    def read(op: str, lib: str, path: str, opener: Opener) -> None:
        rows.append((op, lib, lambda: time_read(opener, path)))

    def write(op: str, lib: str, opener: Opener) -> None:
        rows.append((op, lib, lambda: time_write(opener, data, out)))

    gz, zs = src["gz"], src["zst"]
    read("gzip read", "stdlib gzip.GzipFile", gz, lambda r: gzip.GzipFile(fileobj=r))
    read("gzip read", "isal igzip.IGzipFile", gz, lambda r: isal.igzip.IGzipFile(fileobj=r))
    if zlib_ng:
        read("gzip read", "zlib-ng GzipNGFile", gz, lambda r: zlib_ng.gzip_ng.GzipNGFile(fileobj=r))
        ng_loop = member_loop("gzip", lambda: zlib_ng.zlib_ng.decompressobj(wbits=31))
        read("gzip read", "zlib-ng decompressobj loop", gz, ng_loop)
    arrow = "pyarrow CompressedInputStream"
    read("gzip read", f"{arrow}(PythonFile)", gz, lambda r: pa.CompressedInputStream(pa.PythonFile(r, "r"), "gzip"))
    read("gzip read", f"{arrow}(OSFile)", gz, lambda r: pa.CompressedInputStream(pa.OSFile(gz), "gzip"))
    read("gzip read", "bigshuf.storage.decoding.open_reader (isal decompressobj loop)", gz, lambda r: decoding.open_reader(r, "gzip", gz))
    if shutil.which("gzip"):
        rows.append(("gzip read", "`gzip -dc` (reference)", lambda: time_cli(["gzip", "-dc"], gz)))

    read("zstd read", "zstandard stream_reader", zs, lambda r: zstandard.ZstdDecompressor().stream_reader(r, read_across_frames=True))
    read("zstd read", f"{arrow}(PythonFile)", zs, lambda r: pa.CompressedInputStream(pa.PythonFile(r, "r"), "zstd"))
    read("zstd read", f"{arrow}(OSFile)", zs, lambda r: pa.CompressedInputStream(pa.OSFile(zs), "zstd"))
    read("zstd read", "bigshuf.storage.decoding.open_reader (decompressobj loop)", zs, lambda r: decoding.open_reader(r, "zstd", zs))
    if shutil.which("zstd"):
        rows.append(("zstd read", "`zstd -dc` (reference)", lambda: time_cli(["zstd", "-dc"], zs)))

    for level in (1, 6):
        write(f"gzip write L{level}", "stdlib gzip.GzipFile", lambda r, lv=level: gzip.GzipFile(fileobj=r, mode="wb", compresslevel=lv))
        if zlib_ng:
            write(
                f"gzip write L{level}",
                "zlib-ng GzipNGFile",
                lambda r, lv=level: zlib_ng.gzip_ng.GzipNGFile(fileobj=r, mode="wb", compresslevel=lv),
            )
            write(
                f"gzip write L{level}",
                "zlib-ng gzip_ng_threaded, 2 threads",
                lambda r, lv=level: zlib_ng.gzip_ng_threaded.open(r, "wb", compresslevel=lv, threads=2),
            )
        if shutil.which("gzip"):
            cli = ["gzip", f"-{level}"]
            rows.append((f"gzip write L{level}", f"`gzip -{level}` (reference)", lambda a=cli: time_cli(a, raw_path)))
    for level in (1, 2, 3):
        write(
            f"gzip write isal L{level}",
            "isal igzip.IGzipFile",
            lambda r, lv=level: isal.igzip.IGzipFile(fileobj=r, mode="wb", compresslevel=lv),
        )
    write("gzip write isal L1", "isal igzip_threaded, 2 threads", lambda r: isal.igzip_threaded.open(r, "wb", compresslevel=1, threads=2))
    write("gzip write isal L3", "isal igzip_threaded, 2 threads", lambda r: isal.igzip_threaded.open(r, "wb", compresslevel=3, threads=2))
    write("gzip write (arrow's fixed level)", "pyarrow CompressedOutputStream", lambda r: pa.CompressedOutputStream(r, "gzip"))
    write("gzip write L6 (default)", "bigshuf.storage.codecs.open_writer (isal L3)", lambda r: codecs.open_writer(r, "gzip", None))
    write("gzip write L1", "bigshuf.storage.codecs.open_writer (isal L1)", lambda r: codecs.open_writer(r, "gzip", 1))

    for level in (1, 3):
        write(
            f"zstd write L{level}",
            "zstandard stream_writer",
            lambda r, lv=level: zstandard.ZstdCompressor(level=lv).stream_writer(r, closefd=False),
        )
        write(
            f"zstd write L{level}",
            "zstandard stream_writer, threads=2",
            lambda r, lv=level: zstandard.ZstdCompressor(level=lv, threads=2).stream_writer(r, closefd=False),
        )
    write("zstd write (arrow's fixed level)", "pyarrow CompressedOutputStream", lambda r: pa.CompressedOutputStream(r, "zstd"))
    write("zstd write L3 (default)", "bigshuf.storage.codecs.open_writer (all CPUs)", lambda r: codecs.open_writer(r, "zstd", None))
    write("zstd write L1", "bigshuf.storage.codecs.open_writer (all CPUs)", lambda r: codecs.open_writer(r, "zstd", 1))
    if shutil.which("zstd"):
        rows.append(("zstd write L3", "`zstd -3` (reference)", lambda: time_cli(["zstd", "-3", "-c"], raw_path)))
        rows.append(("zstd write L3", "`zstd -3 -T2` (reference)", lambda: time_cli(["zstd", "-3", "-T2", "-c"], raw_path)))
    return rows, len(data)


def slow_codecs(src: dict[str, str], raw_path: str) -> list[Row]:
    """bzip2 and xz through bigshuf.storage.codecs (stdlib underneath) and their CLIs, on the small corpus."""
    from bigshuf.storage import codecs, decoding
    with open(raw_path, "rb") as f:
        data = memoryview(f.read())
    rows: list[Row] = []
    for codec, tool, levels in (("bzip2", "bzip2", (1, 9)), ("xz", "xz", (1, 6))):
        path = src[codec]
        reader = lambda c=codec, p=path: time_read(lambda r: decoding.open_reader(r, c, p), p)  # noqa: E731
        rows.append((f"{codec} read", "bigshuf.storage.decoding.open_reader", reader))
        if shutil.which(tool):
            rows.append((f"{codec} read", f"`{tool} -dc` (reference)", lambda t=tool, p=path: time_cli([t, "-dc"], p)))
        for level in levels:
            rows.append(
                (
                    f"{codec} write L{level}",
                    "bigshuf.storage.codecs.open_writer",
                    lambda c=codec, lv=level: time_write(lambda r: codecs.open_writer(r, c, lv), data, src["out"]),
                )
            )
    return rows


def run(rows: list[Row], nbytes: int, reps: int) -> None:
    """Time every row ``reps`` times round-robin and print a markdown table of medians."""
    results: list[list[tuple[float, float, int]]] = [[] for _ in rows]
    for rep in range(reps):
        for i, (op, lib, call) in enumerate(rows):
            print(f"rep {rep + 1}/{reps}: {op}: {lib}", file=sys.stderr)
            results[i].append(call())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"| operation | library | MB/s | cpu | ratio |  ({nbytes / 1e6:.0f} MB uncompressed, median of {reps}, load after: {load})")
    print("| --- | --- | ---: | ---: | ---: |")
    for (op, lib, _), res in zip(rows, results):
        wall = statistics.median(r[0] for r in res)
        cpu = statistics.median(r[1] for r in res)
        size = res[0][2]
        ratio = f"{size / nbytes:.3f}" if size else ""
        print(f"| {op} | {lib} | {nbytes / wall / 1e6:.0f} | {cpu / wall:.2f} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256M", help="corpus size for gzip and zstd (default 256M)")
    parser.add_argument("--slow-size", default="32M", help="corpus size for bzip2 and xz (default 32M)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    args = parser.parse_args()
    import zstandard

    from bigshuf.storage import codecs
    scratch = tempfile.mkdtemp(prefix="bigshuf-codecs-", dir=args.scratch)
    try:
        big, small = os.path.join(scratch, "corpus"), os.path.join(scratch, "small")
        print("generating corpora", file=sys.stderr)
        make_corpus(big, parse_size(args.size))
        make_corpus(small, parse_size(args.slow_size), seed=2)
        src = {"out": os.path.join(scratch, "out"), "gz": big + ".gz", "zst": big + ".zst"}
        with open(big, "rb") as f:
            text = f.read()
        with open(src["gz"], "wb") as f:
            f.write(gzip.compress(text, 6, mtime=0))  # what `gzip -6` writes
        with open(src["zst"], "wb") as f:
            f.write(zstandard.ZstdCompressor(level=3).compress(text))
        del text
        for codec, level in (("bzip2", 9), ("xz", 6)):
            src[codec] = f"{small}.{codec}"
            with open(small, "rb") as fin, open(src[codec], "wb") as fout:
                w = codecs.open_writer(fout, codec, level)
                w.write(fin.read())
                w.close()
        rows, nbytes = candidates(src, big)
        run(rows, nbytes, args.reps)
        print()
        run(slow_codecs(src, small), os.path.getsize(small), args.reps)
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
