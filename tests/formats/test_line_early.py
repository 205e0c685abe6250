"""Pass 1's next block scattered while it is read (``line_early``): the pieces started before the
block is complete are those ``cut_pieces`` cuts from the whole block, done ones are finished in
order, no more than ``most`` run at once, and a run's output does not change for it, whatever
the threads, for compressed inputs and standard input, whose reads come in steps."""

from __future__ import annotations

import gzip
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.core import parallel
from bigshuf.core.records import RecordFormat
from bigshuf.core.scatter import cut_pieces, last_end
from bigshuf.formats import line_early
from bigshuf.formats.line_early import EarlyPieces
from bigshuf.storage import reader
from helpers import assert_permutation, make_records, write_records

KEY = (1, 4)


def _done(value: Any) -> Future[Any]:
    """A future that has its result already."""
    f: Future[Any] = Future()
    f.set_result(value)
    return f


def _records(rng: np.random.Generator, size: int, sep: int, longest: int) -> np.ndarray:
    """About ``size`` bytes of records of up to ``longest`` bytes (no ``sep`` inside), each ended by ``sep``."""
    out = bytearray()
    while len(out) < size:
        body = rng.integers(0, 256, int(rng.integers(0, longest)), dtype=np.uint8).tobytes().replace(bytes([sep]), b"x")
        out += body + bytes([sep])
    return np.frombuffer(bytes(out), np.uint8).copy()


@pytest.mark.parametrize("sep", [10, 0])
@pytest.mark.parametrize("seed", range(12))
def test_pieces_started_while_reading_are_those_of_the_whole_block(sep: int, seed: int) -> None:
    """Reads of random sizes into a buffer; the block handed out ends at the last record end read
    when the buffer is full (or is all of it, at the end of input): the pieces started early, then
    the rest cut from where they stopped, are ``cut_pieces`` of that block, piece by piece."""
    rng = np.random.default_rng(seed)
    fmt = RecordFormat(sep)
    max_bytes = int(rng.integers(40, 400))
    data = _records(rng, int(rng.integers(500, 6000)), sep, int(rng.choice([30, max_bytes, 3 * max_bytes])))
    capacity = len(data) if seed % 3 == 0 else int(rng.integers(len(data) // 2, len(data) + 1))
    buf = data[:capacity]
    starts: list[tuple[int, int, int]] = []
    finished: list[int] = []
    early: EarlyPieces[int] = EarlyPieces(fmt, max_bytes, 1 << 30)
    early.expect(KEY, lambda p, b, lo, hi: starts.append((p, lo, hi)) or _done(p), finished.append)
    filled = 0
    while filled < len(buf):
        filled = min(len(buf), filled + int(rng.integers(1, 3 * max_bytes)))
        early.read(buf, filled)
    end_of_input = capacity == len(data)
    block = buf if end_of_input else buf[: last_end(buf, 0, len(buf), fmt)]
    running, pos, count = early.take(KEY)
    assert [f.result() for f in running] == list(range(len(finished), count))
    assert finished == list(range(len(finished)))  # finished in order, those done first
    assert len(starts) == count and early.early == count
    whole = list(cut_pieces(block, fmt, max_bytes))
    assert [(lo, hi) for _p, lo, hi in starts] + list(cut_pieces(block, fmt, max_bytes, pos)) == whole
    assert [p for p, _lo, _hi in starts] == list(range(count))
    assert count >= 1 or len(block) <= 2 * max_bytes or max(np.diff(np.flatnonzero(block == sep))) > max_bytes


def test_no_more_than_most_pieces_run_at_once_and_done_ones_finish_in_order() -> None:
    fmt = RecordFormat()
    block = np.frombuffer(b"".join(b"%05d\n" % i for i in range(400)), np.uint8)
    futures: list[Future[int]] = []

    def start(p: int, buf: np.ndarray, lo: int, hi: int) -> Future[int]:
        futures.append(Future())
        return futures[-1]

    finished: list[int] = []
    early: EarlyPieces[int] = EarlyPieces(fmt, 60, 3)
    early.expect(KEY, start, finished.append)
    early.read(block, len(block))
    assert len(futures) == 3 and not finished
    futures[1].set_result(1)
    early.read(block, len(block))
    assert len(futures) == 3 and not finished  # the first is still running: nothing finishes past it
    futures[0].set_result(0)
    early.read(block, len(block))
    assert finished == [0, 1] and len(futures) == 5
    running, pos, count = early.take(KEY)
    assert running == futures[2:] and count == 5 and pos == 5 * 60


def test_pieces_wait_for_the_block_when_a_record_is_longer_than_a_piece() -> None:
    fmt = RecordFormat()
    block = np.frombuffer(b"a\n" + b"x" * 500 + b"\n" + b"b\n" * 300, np.uint8)
    starts: list[tuple[int, int]] = []
    early: EarlyPieces[int] = EarlyPieces(fmt, 100, 8)
    early.expect(KEY, lambda p, b, lo, hi: starts.append((lo, hi)) or _done(p), lambda done: None)
    early.read(block, len(block))
    assert starts == [(0, 2)]  # the long record's piece is cut with the whole block, and all after it
    _running, pos, count = early.take(KEY)
    assert (pos, count) == (2, 1)


def test_a_block_other_than_the_one_expected_is_not_taken() -> None:
    early: EarlyPieces[int] = EarlyPieces(RecordFormat(), 10, 2)
    assert early.take(KEY) == ([], 0, 0)  # none expected: nothing was started
    early.expect(KEY, lambda p, b, lo, hi: _done(p), lambda done: None)
    early.read(np.frombuffer(b"abc\n" * 20, np.uint8), 80)
    with pytest.raises(RuntimeError, match="were started"):
        early.take((1, 5))


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[EarlyPieces[Any]]:
    """Every ``EarlyPieces`` a run makes, to see how many pieces it started early."""
    made: list[EarlyPieces[Any]] = []
    real = EarlyPieces.__init__

    def init(self: EarlyPieces[Any], *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(line_early.EarlyPieces, "__init__", init)
    return made


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
@pytest.mark.parametrize("settings", [{}, {"verify": True}, {"resume": True}], ids=["plain", "verify", "resume"])
def test_a_compressed_input_gives_the_same_output_whatever_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str, settings: dict[str, Any]
) -> None:
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    monkeypatch.setattr(reader, "READ_STEP", 333)
    made = _counting(monkeypatch)
    lines = make_records(3000, seed=8, max_len=70)
    raw = write_records(tmp_path / "in.txt", lines).read_bytes()
    src = tmp_path / ("in.txt.gz" if codec == "gzip" else "in.txt.zst")
    if codec == "gzip":
        src.write_bytes(gzip.compress(raw))
    else:
        zstandard = pytest.importorskip("zstandard")
        src.write_bytes(zstandard.ZstdCompressor().compress(raw))
    outputs = set()
    for n in (1, 2, 3, 8):
        out = tmp_path / f"out-{n}.txt"
        bigshuf.shuffle(src, out, seed=3, memory="16K", tmp_dir=tmp_path, sync=False, threads=n, **settings)
        outputs.add(out.read_bytes())
    assert len(outputs) == 1
    assert_permutation(outputs.pop(), lines)
    assert len(made) == 3 and all(e.early > 10 for e in made)  # none for -j1; many pieces started early


def test_standard_input_gives_the_same_output_whatever_the_threads(tmp_path: Path) -> None:
    lines = make_records(6000, seed=9, max_len=40)
    data = b"\n".join(lines) + b"\n"
    outputs = set()
    for flags in (["-j1"], ["-j3"]):
        run = subprocess.run(
            [sys.executable, "-m", "bigshuf", "--seed", "6", "-S", "32K", "-T", str(tmp_path), *flags],
            input=data, capture_output=True,
        )
        assert (run.returncode, run.stderr) == (0, b"")
        outputs.add(run.stdout)
    assert len(outputs) == 1
    assert_permutation(outputs.pop(), lines)


def test_a_plain_file_starts_nothing_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain file's block comes in one read, so its pieces are started as the block is handed
    out: started early they only held their memory longer (peak RSS 296-344 against 262 MiB on
    1 GiB at -S 256M). Its gzip copy, read in steps, starts pieces early."""
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    monkeypatch.setattr(reader, "READ_STEP", 333)
    made = _counting(monkeypatch)
    lines = make_records(3000, seed=5, max_len=70)
    src = write_records(tmp_path / "in.txt", lines)
    packed = tmp_path / "in.txt.gz"
    packed.write_bytes(gzip.compress(src.read_bytes()))
    outputs = []
    for path, threads in ((src, 1), (src, 2), (packed, 2)):
        out = tmp_path / f"out-{len(outputs)}.txt"
        bigshuf.shuffle(path, out, seed=2, memory="16K", tmp_dir=tmp_path, sync=False, threads=threads)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert_permutation(outputs[1], lines)
    assert_permutation(outputs[2], lines)
    assert len(made) == 2 and made[0].early == 0 and made[1].early > 10  # none for -j1


def test_weighted_sources_sampling_and_groups_start_nothing_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a piece's records are not decided by its bytes alone, the block is cut whole, as before."""
    made = _counting(monkeypatch)
    src = write_records(tmp_path / "in.txt", make_records(2000, seed=1, max_len=40))
    for settings in ({"head_count": 50}, {"lines_per_record": 2}, {"unique": True}):
        bigshuf.shuffle(src, tmp_path / "out.txt", seed=1, memory="16K", tmp_dir=tmp_path, sync=False, threads=2, **settings)
    assert made == []
    bigshuf.shuffle(src, tmp_path / "out.txt", seed=1, memory="16K", tmp_dir=tmp_path, sync=False, threads=2)
    assert len(made) == 1


def test_a_run_stopped_after_pieces_of_the_next_block_were_appended_resumes_to_the_same_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces appended to the buckets ahead of the next checkpoint are cut off when the run resumes."""
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    monkeypatch.setattr(reader, "READ_STEP", 333)
    lines = make_records(4000, seed=4, max_len=70)
    src = tmp_path / "in.txt.gz"
    src.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    settings: dict[str, Any] = {"seed": 9, "memory": "16K", "sync": False, "threads": 2, "resume": True}
    (tmp_path / "ref").mkdir()
    bigshuf.shuffle(src, tmp_path / "ref.txt", tmp_dir=tmp_path / "ref", **settings)
    blocks = []
    real = EarlyPieces.read

    def read(self: EarlyPieces[Any], buf: np.ndarray, filled: int) -> None:
        real(self, buf, filled)
        blocks.append(self.key)
        if len(set(blocks)) > 5 and self.count:
            for future in list(self.started):  # this block's pieces reach the buckets, however busy the workers
                future.result()
            real(self, buf, filled)  # which hands the finished ones on
            assert self.count - len(self.started) > 0  # pieces of this block are in the buckets
            raise KeyboardInterrupt

    monkeypatch.setattr(line_early.EarlyPieces, "read", read)
    temp = tmp_path / "t"
    temp.mkdir()
    with pytest.raises(KeyboardInterrupt):
        bigshuf.shuffle(src, tmp_path / "out.txt", tmp_dir=temp, **settings)
    assert list(temp.iterdir())  # the checkpoint is kept
    monkeypatch.setattr(line_early.EarlyPieces, "read", real)
    bigshuf.shuffle(src, tmp_path / "out.txt", tmp_dir=temp, **settings)
    assert (tmp_path / "out.txt").read_bytes() == (tmp_path / "ref.txt").read_bytes()
    assert list(temp.iterdir()) == []
