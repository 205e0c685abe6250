"""Peak memory of whole runs, measured on a child process: the -S limit holds on every path.

A lean launcher (python -S, no NumPy) forks the run, so the child's ru_maxrss does not
inherit this test process's high-water mark, and reports it via os.wait4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bigshuf.core import plan
from bigshuf.storage.ahead import plan_ahead
from helpers import compress, run_peak

MiB = 1 << 20

#: Allowed on top of the baseline (interpreter, NumPy, PyArrow: ~76 MiB here) and the limit:
#: the 1 MiB search slices with their hit lists, thread stacks, allocator slack. Measured
#: 20-31 MiB over limit+baseline at -S 4M..64M on the inputs below.
SLACK = 48 * MiB



def peak_rss(args: list[str], cwd: Path) -> int:
    """Peak RSS in bytes of ``python -m bigshuf ARGS``, which must succeed."""
    status, peak = run_peak(args, cwd)
    assert status == 0, f"bigshuf {' '.join(args)} exited {status}"
    return peak


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """~64 MiB of lognormal short lines, 16 MiB of empty lines, and a one-line file."""
    d = tmp_path_factory.mktemp("mem")
    rng = np.random.default_rng(0)
    lengths = np.maximum(1, rng.lognormal(np.log(60), 1.0, 700_000).astype(np.int64))
    data = rng.integers(97, 123, int(lengths.sum()), dtype=np.uint8)
    data[np.cumsum(lengths) - 1] = 10
    files = {"short": d / "short.txt", "empty": d / "empty-lines.txt", "one": d / "one.txt"}
    files["short"].write_bytes(data.tobytes())
    files["empty"].write_bytes(b"\n" * (16 * MiB))
    files["one"].write_bytes(b"x\n")
    return files


@pytest.fixture(scope="module")
def baseline(corpus: dict[str, Path]) -> int:
    return peak_rss([str(corpus["one"]), "-o", str(corpus["one"].with_suffix(".out"))], corpus["one"].parent)


@pytest.mark.parametrize("kind,limit_mib,threads", [("short", 4, 1), ("short", 16, 2), ("short", 16, 8), ("empty", 4, 8)])
def test_external_run_stays_within_the_limit(
    corpus: dict[str, Path], baseline: int, kind: str, limit_mib: int, threads: int
) -> None:
    """-S covers every worker thread together."""
    src = corpus[kind]
    assert src.stat().st_size >= 4 * limit_mib * MiB  # the input is many times the limit
    out = src.with_suffix(".out")
    args = ["-S", f"{limit_mib}M", f"-j{threads}", "-T", str(src.parent), str(src), "-o", str(out)]
    peak = peak_rss(args, src.parent)
    assert out.stat().st_size == src.stat().st_size
    assert peak <= baseline + limit_mib * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"


def _shards(data: bytes, directory: Path, codec: str, n: int) -> list[Path]:
    """``data`` cut at line ends into ``n`` files compressed with ``codec``."""
    cuts = [0] + [data.index(b"\n", len(data) * i // n) + 1 for i in range(1, n)] + [len(data)]
    paths = []
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
        paths.append(directory / f"part{i:03d}.txt.{codec}")
        paths[-1].write_bytes(compress(codec, data[lo:hi]))
    return paths


@pytest.mark.parametrize("codec,threads", [("gzip", 2), ("zstd", 8)])
def test_compressed_shards_decoded_ahead_stay_within_the_limit(
    corpus: dict[str, Path], baseline: int, tmp_path: Path, codec: str, threads: int
) -> None:
    """The next shards decoded ahead on the workers (``storage.ahead``) are held within -S, the
    pieces scattered at once giving up their room: eight compressed shards of the corpus at the
    smallest -S that decodes ahead."""
    limit = 96 * MiB
    assert plan_ahead(lambda job: None, threads, plan.decode_ahead(limit)) is not None  # type: ignore[arg-type, return-value]
    shards = _shards(corpus["short"].read_bytes(), tmp_path, codec, 8)
    out = tmp_path / "out.txt"
    args = ["-S", "96M", f"-j{threads}", "-T", str(tmp_path), *map(str, shards), "-o", str(out)]
    peak = peak_rss(args, tmp_path)
    assert out.stat().st_size == corpus["short"].stat().st_size
    assert peak <= baseline + limit + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"


@pytest.mark.parametrize("threads", [1, 4])
def test_many_compressed_inputs_cost_no_more_than_one(baseline: int, tmp_path: Path, threads: int) -> None:
    """A finished input's decoder is let go: each zstd decoder keeps a window as large as its
    frame (up to 8 MiB), and a run keeps its sources to the end. Kept, 120 shards of 2 MiB held
    about 500 MiB more."""
    line = b"a fairly long line of text, repeated so that it compresses well enough\n"
    shards = _shards(line * (120 * (2 * MiB) // len(line)), tmp_path, "zstd", 120)
    out = tmp_path / "out.txt"
    peak = peak_rss(["-S", "16M", f"-j{threads}", "-T", str(tmp_path), *map(str, shards), "-o", str(out)], tmp_path)
    assert peak <= baseline + 16 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"


def test_compressing_buckets_on_many_workers_costs_no_memory(tmp_path: Path) -> None:
    """``--compress-temp`` at ``-j16``: the workers make each part's frame and the writing thread
    frees it. With a heap per thread, each kept what it freed: peak RSS at ``-S 128M`` was 238-255
    MiB on 200 MiB of barely compressible lines, against 176-186 MiB without ``--compress-temp``."""
    rng = np.random.default_rng(7)
    data = rng.integers(33, 97, 200 * MiB, dtype=np.uint8)  # 64 symbols: zstd keeps ~80%
    data[np.cumsum(rng.integers(20, 400, 2 * MiB)) % len(data)] = 10
    data[-1] = 10
    src = tmp_path / "in.txt"
    src.write_bytes(data.tobytes())
    del data
    peaks = {}
    for name, extra in (("plain", []), ("compressed", ["--compress-temp"])):
        out = tmp_path / f"{name}.out"
        peaks[name] = peak_rss(["-S", "128M", "-j16", *extra, "-T", str(tmp_path), str(src), "-o", str(out)], tmp_path)
        assert out.stat().st_size == src.stat().st_size
        out.unlink()
    assert peaks["compressed"] <= peaks["plain"] + 24 * MiB, {k: f"{v / MiB:.0f} MiB" for k, v in peaks.items()}


def test_a_pipe_shuffled_ahead_on_many_workers_stays_within_the_limit(baseline: int, tmp_path: Path) -> None:
    """A pipe leaves many small buckets, which pass 2 shuffles ahead on the workers while the
    writing thread writes and frees them. With a heap per thread each worker kept what it had
    gathered: 256 MiB of short lines piped at ``-S 64M -j16`` (200 descriptors leaving ~100
    buckets of ~2.5 MiB) peaked at 232-236 MiB, against 149-159 MiB with the one heap (baseline 66)."""
    rng = np.random.default_rng(11)
    data = rng.integers(97, 123, 256 * MiB, dtype=np.uint8)
    data[np.cumsum(rng.integers(10, 110, 5 * MiB)) % len(data)] = 10
    data[-1] = 10
    out = tmp_path / "out.txt"
    args = ["-S", "64M", "-j16", "-T", str(tmp_path), "--seed", "5", "-o", str(out)]
    status, peak = run_peak(args, tmp_path, input=data.tobytes(), open_files=200)
    assert status == 0
    assert out.stat().st_size == len(data)
    assert peak <= baseline + 64 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"


def test_weighted_sources_with_many_copies_stay_within_the_limit(corpus: dict[str, Path], baseline: int) -> None:
    """A record copied 12 times does not make a piece 12 times larger: pieces shrink by the copies.
    The input is the corpus's first 16 MiB (its copies are still 23 times the limit)."""
    data = corpus["short"].read_bytes()[: 16 * MiB]
    src = corpus["short"].with_name("short-16M.txt")
    src.write_bytes(data[: data.rindex(b"\n") + 1])
    out = src.with_suffix(".mix")
    args = ["-S", "8M", "-j2", "-T", str(src.parent), "--source", f"a={src}", "--rate", "a=11.5", "--max-rate", "12", "-o", str(out)]
    peak = peak_rss(args, src.parent)
    assert out.stat().st_size > 11 * src.stat().st_size
    out.unlink()
    src.unlink()
    assert peak <= baseline + 8 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"


def test_a_record_copied_millions_of_times_stays_within_the_limit(corpus: dict[str, Path], baseline: int) -> None:
    """Found by attack: one record at rate 2*10^7 was scattered from an index of all its copies held
    at once (535 MB at -S 16M; at the default -S, rates of 2^32 were killed by the kernel). Its runs
    of copies are now made one at a time: the output is the same, each of them a line of the input."""
    out = corpus["one"].with_suffix(".copies")
    args = ["-S", "16M", "-T", str(out.parent), "--source", f"a={corpus['one']}", "--rate", "a=20000000",
            "--max-rate", "20000000", "--seed", "1", "-o", str(out)]
    peak = peak_rss(args, out.parent)
    assert out.stat().st_size == 2 * 20_000_000 and out.read_bytes() == b"x\n" * 20_000_000
    out.unlink()
    assert peak <= baseline + 16 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"


@pytest.mark.parametrize("threads", [1, 8])
def test_in_memory_run_costs_about_the_input(corpus: dict[str, Path], baseline: int, threads: int) -> None:
    src = corpus["short"]
    size = src.stat().st_size
    out = src.with_suffix(".out")
    peak = peak_rss(["-S", "1G", f"-j{threads}", str(src), "-o", str(out)], src.parent)
    # The input; its int32 offsets, part indices and permutation (12 bytes a record); two
    # 16 MiB pieces queued for writing and, on each worker, a gathered part of up to a piece.
    pieces = 2 + threads
    assert peak <= baseline + size + 12 * 700_000 + pieces * 16 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB"


@pytest.fixture(scope="module")
def parquet_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """~64 MiB of Arrow rows (ids and 50-450 letter texts) in a zstd Parquet file, and a one-row file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path_factory.mktemp("mem-parquet")
    rng = np.random.default_rng(1)
    n = 250_000
    lengths = rng.integers(50, 450, n)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    letters = rng.integers(97, 123, int(offsets[-1]), dtype=np.uint8)
    text = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(letters)])
    table = pa.table({"id": np.arange(n), "text": text})
    files = {"rows": d / "rows.parquet", "one": d / "one.parquet"}
    pq.write_table(table, files["rows"], row_group_size=100_000)
    pq.write_table(table.slice(0, 1), files["one"])
    return files


def test_parquet_external_run_stays_within_the_limit(parquet_data: dict[str, Path]) -> None:
    src = parquet_data["rows"]
    one = parquet_data["one"]
    base = peak_rss([str(one), "-o", str(one.with_suffix(".out.parquet"))], one.parent)
    out = src.with_suffix(".out.parquet")
    peak = peak_rss(["-S", "16M", "-T", str(src.parent), str(src), "-o", str(out)], src.parent)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(out).metadata.num_rows == 250_000
    # Parquet decoding and encoding buffers come on top of the rows the limit counts.
    assert peak <= base + 16 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {base / MiB:.0f} MiB"


@pytest.fixture(scope="module")
def short_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """100,000 short Arrow rows (an id and 5-14 letters, ~2 MiB in Parquet), and a one-row file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path_factory.mktemp("mem-short-rows")
    rng = np.random.default_rng(2)
    n = 100_000
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(rng.integers(5, 15, n), out=offsets[1:])
    letters = rng.integers(97, 123, int(offsets[-1]), dtype=np.uint8)
    text = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(letters)])
    table = pa.table({"id": np.arange(n), "text": text})
    files = {"rows": d / "rows.parquet", "one": d / "one.parquet"}
    pq.write_table(table, files["rows"])
    pq.write_table(table.slice(0, 1), files["one"])
    return files


def test_weighted_rows_with_many_copies_stay_within_the_limit(short_rows: dict[str, Path]) -> None:
    """Regression: a batch of rows was gathered as many times as its rows have copies, all at once (a 192 MiB
    peak over an 87 MiB baseline at -S 16M with 31 copies; 111 MiB since): batches shrink by the most copies."""
    import pyarrow as pa

    src, one = short_rows["rows"], short_rows["one"]
    base = peak_rss([str(one), "-o", str(one.with_suffix(".out.arrow"))], one.parent)
    out = src.with_suffix(".mix.arrow")
    args = ["-S", "16M", "-j2", "-T", str(src.parent), "--source", f"a={src}", "--rate", "a=30.5", "--max-rate", "31",
            "-o", str(out)]
    peak = peak_rss(args, src.parent)
    with pa.memory_map(str(out)) as f:
        reader = pa.ipc.open_file(f)
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    out.unlink()
    assert rows == 3_050_000
    assert peak <= base + 16 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {base / MiB:.0f} MiB"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's mappings from /proc")
def test_each_bucket_mapping_is_let_go_once_its_bucket_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pass 2 maps every bucket (the next on a worker, ahead) and holds no mapping of one once its
    records are written: when the bucket is removed, nothing in the process maps it any more."""
    import threading

    import bigshuf
    from bigshuf.core import parallel
    from bigshuf.core.buckets import BucketSet

    from helpers import assert_permutation, make_records, write_records

    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)  # the next bucket is loaded ahead even this small
    real_map, real_remove = BucketSet.map, BucketSet.remove
    mapped_on: list[str] = []
    still_mapped: list[str] = []

    def watched_map(self: BucketSet, j: int) -> np.ndarray:
        mapped_on.append(threading.current_thread().name)
        return real_map(self, j)

    def watched_remove(self: BucketSet, j: int) -> None:
        if self.path(j) in Path("/proc/self/maps").read_text():
            still_mapped.append(self.path(j))
        real_remove(self, j)

    monkeypatch.setattr(BucketSet, "map", watched_map)
    monkeypatch.setattr(BucketSet, "remove", watched_remove)
    records = make_records(3000, seed=11)
    src, out = write_records(tmp_path / "in", records), tmp_path / "out"
    stats = bigshuf.shuffle(src, out, memory="16K", seed=4, tmp_dir=tmp_path, sync=False)
    assert stats.passes == 2 and len(mapped_on) == stats.buckets
    assert any(name != "MainThread" for name in mapped_on) and still_mapped == []
    assert_permutation(out.read_bytes(), records)


@pytest.mark.parametrize("args", [
    ["-i", "1-20000000", "-n", "1000000"],
    ["-i", "1-1000000", "--lines-per-record=100000", "-r", "-n", "30"],
])
def test_a_sample_of_a_range_stays_within_the_limit(baseline: int, tmp_path: Path, args: list[str]) -> None:
    """A twentieth of a range was drawn by ``Generator.choice``, which lists the whole range (8
    bytes a number: 160 MiB here, 800 MiB for ``-n 3000000`` of ``1-100000000``); records of
    many numbers were turned into text 2**20 records at once (3 million numbers here, ~460 MiB)."""
    out = tmp_path / "out.txt"
    peak = peak_rss([*args, "-S", "64M", "--seed", "3", "-o", str(out)], tmp_path)
    assert out.read_bytes().count(b"\n") == (1_000_000 if "-r" not in args else 3_000_000)
    assert peak <= baseline + 64 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"


@pytest.mark.parametrize("args", [["-e", "a", "b"], ["-i", "1-3"]], ids=["operands", "range"])
def test_draws_with_repeats_take_little_memory_whatever_the_limit(baseline: int, tmp_path: Path, args: list[str]) -> None:
    """``-r`` streams its draws: under the default -S (half the RAM) ``-r -e a b`` held 540 MB
    and ``-r -i 1-3`` 300 MB in pieces and indices sized from that -S, where GNU shuf holds 1.5 MB
    (found by a differential test; under ``ulimit -v`` the endless stream failed after 16 MiB)."""
    out = tmp_path / "out.txt"
    peak = peak_rss(["-r", "-n", "40000000", *args, "--seed", "3", "-o", str(out)], tmp_path)
    data = out.read_bytes()
    assert len(data) == 80_000_000 and data.count(b"\n") == 40_000_000
    assert peak <= baseline + 16 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"
