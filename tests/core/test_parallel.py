"""Worker threads: results in order, failures and abandoned maps handled, and every path's output
for a seed the same whatever the number of workers (1, 2, 3, 8)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.core import gather, parallel, records
from bigshuf.core.parallel import Workers, default_threads
from bigshuf.core.records import RecordFormat, find_offsets, find_offsets_split
from helpers import assert_permutation, make_records, run_child, write_records

THREADS = (1, 2, 3, 8)


def test_results_come_back_in_order_while_jobs_overlap() -> None:
    workers = Workers(3)
    running, most = [0], [0]
    lock = threading.Lock()

    def job(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02 * (5 - i % 5))  # later jobs finish first
        with lock:
            running[0] -= 1
        return i

    try:
        assert list(workers.ordered((lambda i=i: job(i)) for i in range(12))) == list(range(12))
    finally:
        workers.close()
    assert most[0] == 3


def test_ahead_bounds_the_jobs_in_flight() -> None:
    workers = Workers(4)
    started: list[int] = []
    taken = []
    try:
        for value in workers.ordered(((lambda i=i: started.append(i) or i) for i in range(10)), ahead=2):
            taken.append(value)
            assert len(started) <= value + 2  # never more than two jobs past the one taken
    finally:
        workers.close()
    assert taken == list(range(10))


def test_jobs_already_started_count_against_ahead() -> None:
    """Pieces started while their block was read are handed to ``ordered`` as ``started``: they
    take the room, so no job of the block starts until one of them is taken."""
    workers = Workers(4)
    begun: list[int] = []
    try:
        started = [workers.submit(lambda i=i: begun.append(i) or i) for i in range(2)]  # type: ignore[misc]
        taken = []
        for value in workers.ordered(((lambda i=i: begun.append(i) or i) for i in range(2, 10)), ahead=2, started=started):
            taken.append(value)
            time.sleep(0.01)  # time for a job started too soon to begin
            assert len(begun) <= value + 2  # never more than two jobs past the one taken
    finally:
        workers.close()
    assert taken == list(range(10))


def test_one_worker_runs_jobs_in_the_caller() -> None:
    seen = Workers(1).map(lambda i: threading.get_ident(), 3)
    assert seen == [threading.get_ident()] * 3


def test_a_failed_job_is_raised_and_running_ones_finish_first() -> None:
    workers = Workers(2)
    finished: list[int] = []

    def job(i: int) -> int:
        if i == 1:
            raise ValueError("job 1")
        time.sleep(0.05)
        finished.append(i)
        return i

    try:
        with pytest.raises(ValueError, match="job 1"):
            list(workers.ordered((lambda i=i: job(i)) for i in range(6)))
        done = list(finished)
        time.sleep(0.1)
        assert finished == done  # nothing still running once the error is raised
    finally:
        workers.close()


def test_default_is_the_cores_the_process_may_use() -> None:
    import os

    assert default_threads() == len(os.sched_getaffinity(0))


def test_small_work_stays_in_the_calling_thread() -> None:
    workers = Workers(4)
    assert workers.sized(parallel.INLINE_BELOW) is workers
    assert workers.sized(parallel.INLINE_BELOW - 1).n == 1


@pytest.mark.parametrize("sep", [10, 0])
def test_split_search_finds_the_same_record_ends(monkeypatch: pytest.MonkeyPatch, sep: int) -> None:
    monkeypatch.setattr(records, "SPLIT_BYTES", 64)
    data = b"".join(r + bytes([sep]) for r in make_records(300, seed=3, max_len=40, sep=bytes([sep]))) + b"tail"
    block = np.frombuffer(data, np.uint8)
    fmt = RecordFormat(sep)
    for n in THREADS:
        workers = Workers(n)
        try:
            assert np.array_equal(find_offsets_split(block, fmt, workers), find_offsets(block, fmt))
            capped = find_offsets_split(block, fmt, workers, 50)  # crowded ranges fall back to one search
            assert np.array_equal(capped, find_offsets(block, fmt, 50))
        finally:
            workers.close()


def test_parts_are_emitted_in_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each part of a shuffle in parts reaches ``emit`` as two halves, in order (two of them fit in
    the output's queue where two whole parts of just over a piece would not): the same bytes."""
    from bigshuf.core import streams

    data = b"".join(r + b"\n" for r in make_records(900, seed=4, max_len=30))
    block = np.frombuffer(data, np.uint8)
    parts: list[Any] = []  # each part as gathered whole
    take = gather.take_records
    monkeypatch.setattr(gather, "take_records", lambda *args: parts.append(take(*args)) or parts[-1])
    monkeypatch.setattr(gather, "PART_RECORDS", 64)
    chunks: list[Any] = []
    offsets = find_offsets(block, RecordFormat())
    assert gather.shuffle_block(block, offsets, 7, streams.IN_MEMORY, chunks.append, Workers(2), limit=1 << 30, held=0) == 900
    assert len(parts) == 15 and len(chunks) == 2 * len(parts)
    for part, first, second in zip(parts, chunks[::2], chunks[1::2]):
        assert (len(first), len(second)) == (len(part) // 2, len(part) - len(part) // 2)
        assert records.array_bytes(first).tobytes() + records.array_bytes(second).tobytes() == records.array_bytes(part).tobytes()
    assert sorted(b"".join(records.array_bytes(p).tobytes() for p in parts).splitlines()) == sorted(data.splitlines())


def test_the_longest_record_beyond_a_piece_is_found_exactly() -> None:
    """``longest_beyond`` measures strided spans first: it must still find the longest record
    whenever one is longer than the piece (and say 0 otherwise), wherever it lies."""
    rng = np.random.default_rng(5)
    for _ in range(400):
        n = int(rng.integers(1, 3000))
        lengths = rng.integers(1, 50, n)
        for _long in range(int(rng.integers(0, 4))):
            lengths[rng.integers(0, n)] = int(rng.integers(1, 3000))
        offsets = np.concatenate([[int(rng.integers(0, 5))], lengths]).cumsum()
        piece = int(rng.integers(64, 2000))
        assert gather.longest_beyond(offsets, piece) == (int(lengths.max()) if lengths.max() > piece else 0)


def test_parts_of_records_longer_than_a_piece_are_gathered_fewer_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A part holding a record longer than a piece is that record's size: fewer are gathered at
    once, so that -S still bounds them (a WebDataset run of 10 MB samples at -S 32M peaked 20 MB
    higher when two were gathered while a third was written); the output is the same."""
    from bigshuf.core import plan, streams

    limit = 1 << 20
    piece = plan.piece_bytes(limit)
    assert plan.parts_ahead(limit, 0, 0) == plan.parts_ahead(limit, 0) > 2
    assert plan.parts_ahead(limit, 0, 4 * piece) < plan.parts_ahead(limit, 0)
    assert plan.parts_ahead(limit, 0, limit // 2) == 1
    data = b"".join(r + b"\n" for r in make_records(2000, seed=6, max_len=30)) + b"z" * (3 * piece) + b"\n"
    block = np.frombuffer(data, np.uint8)
    offsets = find_offsets(block, RecordFormat())
    asked: list[int | None] = []
    ordered = Workers.ordered

    def spy(self: Workers, jobs: Any, ahead: int | None = None, started: Any = ()) -> Any:
        asked.append(ahead)
        return ordered(self, jobs, ahead, started)

    monkeypatch.setattr(Workers, "ordered", spy)
    chunks: list[Any] = []
    gather.shuffle_block(block, offsets, 3, streams.IN_MEMORY, chunks.append, Workers(2), limit=limit, held=len(data))
    assert asked[-1] == 1  # (the draws before are a map of their own)
    assert sorted(b"".join(records.array_bytes(c).tobytes() for c in chunks).splitlines()) == sorted(data.splitlines())


def _digest(path: Path) -> str:
    """SHA-256 of a file, or of every file under a directory in name order."""
    h = hashlib.sha256()
    for part in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if part.is_file():
            h.update(str(part.relative_to(path)).encode() + b"\0" if path.is_dir() else b"")
            h.update(part.read_bytes())
    return h.hexdigest()


# (label, keyword arguments): every path and the options that change how records are cut or drawn.
RUNS: list[tuple[str, dict[str, Any]]] = [
    ("in-memory", {}),
    ("in-memory -n", {"head_count": 700}),
    ("external", {"memory": "8K"}),
    ("external -n", {"memory": "8K", "head_count": 1000}),
    ("recursive", {"memory": "4K"}),
    ("shards", {"memory": "8K", "shards": 3}),
    ("verify", {"memory": "8K", "verify": True}),
    ("-z", {"memory": "8K", "zero_terminated": True}),
    ("groups of 4", {"memory": "8K", "lines_per_record": 4}),
    ("header", {"memory": "8K", "header": 2}),
    ("gzip", {"memory": "8K", "compress": "gzip"}),
    ("compressed buckets", {"memory": "8K", "compress_temp": True}),
    ("resume", {"memory": "8K", "resume": True}),
    ("repeat", {"repeat": True, "head_count": 5000}),
]


@pytest.mark.parametrize("label,settings", RUNS, ids=[r[0] for r in RUNS])
def test_output_does_not_depend_on_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, settings: dict[str, Any]
) -> None:
    # Small parts, draw chunks and search ranges, so that a small input is split as a large one
    # is, and handed to the workers however small.
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    monkeypatch.setattr(gather, "PART_RECORDS", 64)
    monkeypatch.setattr(gather, "PART_DRAW", 256)
    monkeypatch.setattr(gather, "MAX_DRAWS", 8)  # more records than 8 x 256: runs of 313
    monkeypatch.setattr(records, "SPLIT_BYTES", 512)
    sep = b"\0" if settings.get("zero_terminated") else b"\n"
    lines = make_records(2500, seed=5, max_len=60, sep=sep)
    src = write_records(tmp_path / "in.txt", lines, sep=sep)
    digests = set()
    for n in THREADS:
        out = tmp_path / f"out-{n}.txt"
        if "shards" in settings:
            (out := tmp_path / f"out-{n}").mkdir()
        bigshuf.shuffle(src, out, seed=11, tmp_dir=tmp_path, sync=False, threads=n, **settings)
        digests.add(_digest(out))
        if label in ("in-memory", "external", "recursive", "verify", "-z", "groups of 4"):
            assert_permutation(out.read_bytes(), lines, sep)
    assert len(digests) == 1, label


@pytest.mark.parametrize("memory", [None, "24K"])
def test_table_output_does_not_depend_on_the_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str | None) -> None:
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"id": np.arange(3000), "text": [f"row {i}" * (i % 7) for i in range(3000)]})
    src = tmp_path / "in.parquet"
    pq.write_table(table, src, row_group_size=300)
    digests = set()
    for n in THREADS:
        out = tmp_path / f"out-{n}.arrow"
        bigshuf.shuffle(src, out, seed=4, memory=memory, tmp_dir=tmp_path, sync=False, threads=n)
        got = pa.ipc.open_file(out).read_all()
        assert sorted(got["id"].to_pylist()) == list(range(3000))
        digests.add(hashlib.sha256(str(got.to_pylist()).encode()).hexdigest())
    assert len(digests) == 1


def test_threads_on_the_command_line(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", make_records(3000, seed=2, max_len=30))
    outs = set()
    for flags in (["-j1"], ["--threads=3"], ["-j", "8"], []):
        args = [sys.executable, "-m", "bigshuf", "--seed", "5", "-S", "16K", "-T", str(tmp_path), *flags, str(src)]
        run = subprocess.run(args, capture_output=True)
        assert run.returncode == 0, run.stderr
        outs.add(run.stdout)
    assert len(outs) == 1
    bad = subprocess.run([sys.executable, "-m", "bigshuf", "-j0", str(src)], capture_output=True)
    assert (bad.returncode, bad.stdout, bad.stderr) == (1, b"", b"bigshuf: invalid --threads value: '0'\n")


def test_threads_on_the_library() -> None:
    with pytest.raises(bigshuf.UsageError, match="invalid threads= value: '0'"):
        bigshuf.shuffle(["-"], threads=0)
    with pytest.raises(bigshuf.UsageError, match="threads"):
        bigshuf.shuffle(["-"], threads="2")  # type: ignore[arg-type]


def test_the_dask_engine_refuses_threads(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", [b"a", b"b"])
    with pytest.raises(bigshuf.UsageError, match=r"engine='dask' does not support threads="):
        bigshuf.shuffle(src, tmp_path / "out.txt", engine="dask", threads=2)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heaps per thread")
@pytest.mark.parametrize("share", [True, False])
def test_threads_started_after_share_one_heap_allocate_from_one_heap(share: bool) -> None:
    """Six threads alive at once, each allocating: after ``share_one_heap`` glibc's ``malloc_stats``
    lists one heap; without it, several (the control, so that the count can tell them apart)."""
    script = f"""
import ctypes, threading
from bigshuf.core.parallel import share_one_heap
if {share}:
    share_one_heap()
together = threading.Barrier(6)
def work():
    held = [bytearray(200_000) for _ in range(4)]
    together.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(None).malloc_stats()
"""
    done = run_child(script)
    assert done.returncode == 0, done.stderr
    count = sum(line.startswith("Arena ") for line in done.stderr.splitlines())
    assert (count == 1 if share else count > 1), done.stderr
