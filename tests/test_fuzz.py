"""Damaged Parquet and Arrow inputs, fuzzed with a fixed seed: never a signal, always a clean result.

Each damaged file goes through the command line in its own process. A run either exits 0 with
exactly the rows pyarrow reads from the file (after full validation), or exits 1 with one line
naming the file; it never dies of a signal and never leaves files behind.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import make_table

#: Damaged files per format: about 0.6 s each (one interpreter start with pyarrow). Twelve a
#: format, alternating the in-memory and external paths, kept CI under its time limit.
CASES = 12


def _write(path: Path, table: pa.Table, fmt: str) -> None:
    """``table`` in ``fmt``: Parquet, an Arrow IPC file or stream in several batches, or a zstd-compressed IPC file."""
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=60)
        return
    options = pa.ipc.IpcWriteOptions(compression="zstd" if fmt == "zstd-file" else None)
    opener = pa.ipc.new_stream if fmt == "stream" else pa.ipc.new_file
    with opener(path, table.schema, options=options) as writer:
        for batch in table.to_batches(max_chunksize=50):
            writer.write_batch(batch)


def _damage(data: bytes, rng: random.Random) -> bytes:
    """``data`` cut short (one case in five) or with one to four bytes replaced by random ones."""
    if rng.random() < 0.2:
        return data[: rng.randrange(len(data))]
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    return bytes(damaged)


def _read_valid(path: Path, fmt: str) -> pa.Table:
    """The rows pyarrow reads from ``path``, fully validated (raises on a damaged file)."""
    if fmt == "parquet":
        table = pq.read_table(path)
    else:
        with pa.memory_map(str(path)) as f:
            reader = pa.ipc.open_stream(f) if fmt == "stream" else pa.ipc.open_file(f)
            table = reader.read_all()
    table.validate(full=True)
    return table


def _rows(table: pa.Table) -> Counter[str]:
    """The rows of ``table`` as a multiset of their Python values (timestamps as integers, any range)."""
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        columns[name] = column
    return Counter(map(repr, pa.table(columns).to_pylist()))


@pytest.mark.parametrize(("fmt", "seed"), [("arrow", 1), ("stream", 2), ("zstd-file", 3), ("parquet", 4)])
def test_damaged_tables_never_crash(tmp_path: Path, fmt: str, seed: int) -> None:
    suffix = ".parquet" if fmt == "parquet" else ".arrows" if fmt == "stream" else ".arrow"
    good = tmp_path / f"good{suffix}"
    _write(good, make_table(200), fmt)
    data = good.read_bytes()
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    rng = random.Random(seed)
    outcomes = Counter[int]()
    for case in range(CASES):
        src = work / f"in{suffix}"
        src.write_bytes(_damage(data, rng))
        out = work / "out.arrow"
        memory = ["-S", "64K"] if case % 2 else []  # in memory and through temporary buckets
        proc = subprocess.run(
            [sys.executable, "-m", "bigshuf", "--seed", "1", *memory, "-T", str(temp), str(src), "-o", str(out)],
            capture_output=True, timeout=120,
        )
        what = f"case {case}: rc {proc.returncode}, stderr {proc.stderr[-300:]!r}"
        outcomes[proc.returncode] += 1
        assert proc.returncode in (0, 1), what
        if proc.returncode == 1:
            assert proc.stderr.startswith(f"bigshuf: {src}: ".encode()) and proc.stderr.count(b"\n") == 1, what
            assert b"internal error" not in proc.stderr, what
            assert not out.exists(), what
        else:
            expected = _rows(_read_valid(src, fmt))  # raises if bigshuf accepted a damaged file
            with pa.memory_map(str(out)) as f:
                written = pa.ipc.open_file(f).read_all()
            assert _rows(written) == expected, what
            out.unlink()
        assert sorted(os.listdir(work)) == [src.name], what
        assert os.listdir(temp) == [], what
    assert outcomes[1] > 0  # the damage was noticed at least once
