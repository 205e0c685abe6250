"""``--shard-size`` on the Dask engine: where each shard ends, found before pass 2 writes.

A shard ends after the record that brings it to the size (``storage.output.Output`` cuts so), so
its end depends on the size of every record before it in shuffled order. A measuring pass of
tasks, one per bucket the output uses, draws each bucket's permutation exactly as pass 2 will
(the same streams) and writes the running total of its records' sizes in that order, 8 bytes a
record, as a temporary object; it returns the bucket's bytes and every ``STRIDE``-th running
total. The client then finds each shard's end with one small read per shard (the stride's slice
of the totals it falls in), and pass 2 writes each shard as a file of known records, as for
``--shard-records``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, BinaryIO

import numpy as np

from ...core import streams
from ...errors import TempSpaceError
from ...storage import remote
from ...progress import Progress
from .tasks import Config, Index, Piece, RunTasks, _emit_bucket

#: Records between the running totals a measuring task returns; the client reads at most this
#: many totals (8 bytes each) to find one shard's end.
STRIDE = 4096


@dataclass(frozen=True)
class MeasureTask:
    """Measure one bucket: its records' sizes in permuted order, written as running totals to ``target``."""

    piece: Piece
    target: str
    scratch: str  # where a bucket too big for -S is scattered again


@dataclass
class Measured:
    """A bucket's records and bytes in all, and its running total after every ``STRIDE``-th record."""

    records: int
    bytes: int
    strides: np.ndarray


def measure_task(cfg: Config, task: MeasureTask) -> Measured:
    """The measuring pass for one bucket: permute it as pass 2 will and write its running totals."""
    piece = task.piece
    strides: list[np.ndarray] = []
    done = [0, 0]  # records and bytes so far

    def run(f: BinaryIO) -> None:
        def emit(records: Any) -> None:
            ends = np.cumsum(cfg.fmt.sizes(records), dtype=np.int64) + done[1]
            f.write(ends.tobytes())
            # The totals after records STRIDE, 2 STRIDE, ... (numbered from 1) that fall in this chunk.
            first = (-done[0] - 1) % STRIDE
            strides.append(ends[first::STRIDE].copy())
            done[0] += len(ends)
            done[1] = int(ends[-1]) if len(ends) else done[1]

        _emit_bucket(
            cfg, streams.bucket(streams.TOP, piece.bucket), piece.parts, piece.size, piece.count, (0, piece.count), emit, task.scratch,
        )

    remote.write_whole(task.target, run)
    if done[0] != piece.count:
        raise TempSpaceError(f"bucket {piece.bucket}: {done[0]} records measured, {piece.count} written")
    return Measured(done[0], done[1], np.concatenate([np.empty(0, np.int64), *strides]))


class Cutter:
    """Running totals of record bytes over the whole shuffled output (buckets in order), read
    from the measuring pass: ``before(r)``, the bytes of records ``[0, r)``, and ``first_reaching(x)``."""

    def __init__(self, starts: np.ndarray, measured: dict[int, Measured], names: dict[int, str]) -> None:
        self.starts = starts  # first output record of each bucket, and the end
        self.names = names
        self.measured = measured
        sizes = np.array([measured[j].bytes if j in measured else 0 for j in range(len(starts) - 1)], np.int64)
        self.base = np.zeros(len(sizes) + 1, np.int64)  # bytes before each bucket, and in all
        np.cumsum(sizes, out=self.base[1:])

    def _ends(self, j: int, lo: int, hi: int) -> np.ndarray:
        """Bucket ``j``'s running totals after its records ``lo+1 .. hi`` (indices ``[lo, hi)``)."""
        blob = remote.read_ranges([(self.names[j], 8 * lo, 8 * hi)])[0]
        if len(blob) != 8 * (hi - lo):
            raise TempSpaceError(f"{self.names[j]}: temporary object is shorter than written")
        return np.frombuffer(blob, np.int64)

    def before(self, r: int) -> int:
        """Bytes of output records ``[0, r)``."""
        j = int(np.searchsorted(self.starts, r, side="right")) - 1
        i = r - int(self.starts[j])
        if i == 0 or j >= len(self.starts) - 1:
            return int(self.base[min(j, len(self.base) - 1)])
        return int(self.base[j]) + int(self._ends(j, i - 1, i)[0])

    def first_reaching(self, x: int) -> int | None:
        """The fewest output records whose bytes reach ``x`` (None: all of them do not)."""
        j = int(np.searchsorted(self.base[1:], x, side="left"))
        if j >= len(self.base) - 1:
            return None
        local = x - int(self.base[j])
        m = self.measured[j]
        s = int(np.searchsorted(m.strides, local, side="left"))  # the stride the answer falls in
        lo, hi = s * STRIDE, min(m.records, (s + 1) * STRIDE)
        i = lo + int(np.searchsorted(self._ends(j, lo, hi), local, side="left"))
        return int(self.starts[j]) + i + 1

    def split_ends(self, start: int, count: int, size: int) -> list[int]:
        """Where each file of the split holding records ``[start, start + count)`` ends: a file ends
        after the record that brings it to ``size`` bytes, the next starts only if records remain."""
        stop = start + count
        ends: list[int] = []
        s = start
        while True:
            reach = self.first_reaching(self.before(s) + size) if s < stop else None
            e = stop if reach is None else min(stop, reach)
            ends.append(e)
            s = e
            if s >= stop:
                return ends


def measure(run_tasks: RunTasks, cfg: Config, scattered: Index, total: int, root: str, progress: Progress) -> Cutter:
    """``--shard-size``: the measuring pass over every bucket output records ``[0, total)`` of the
    pass-1 objects ``scattered`` use (``cuts``), and what finds each file's end from it."""
    pieces = [scattered.piece(s) for s in scattered.level.slices(0, total)]
    used = [p.bucket for p in pieces]
    names = {j: remote.join(root, "sizes", f"{j:06d}") for j in used}
    # Each bucket measured whole: a file's end may fall anywhere in it.
    tasks = [MeasureTask(replace(p, first=0, stop=p.count), names[p.bucket], remote.join(root, "p3")) for p in pieces]
    sizes = [t.piece.size for t in tasks]
    progress.start("measuring", sum(sizes))
    results: list[Measured] = run_tasks(measure_task, cfg, tasks, sizes)
    return Cutter(scattered.level.starts, dict(zip(used, results)), names)
