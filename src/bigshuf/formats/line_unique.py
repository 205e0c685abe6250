"""``--unique`` on the line run's external path: a dedup stage in front of the two-pass shuffle.

Every run of records of the input (at most ``piece_records`` of them, so the bookkeeping stays
bounded) drops its own copies and scatters the rest by a hash of their bytes into k hash buckets,
so all copies of a record meet in one bucket, at most one per run. Each bucket is then read
back, deduplicated in memory, and its unique records handed to the shuffle's pass 1 as a block.
A bucket too big for memory is split again with another hash one level deeper; each level keeps
one copy per run, so copies shrink until the buckets fit. The shuffle draws its own random
buckets, so its output is a uniform permutation of the unique records whatever the hash does.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..core import plan
from ..core.driver import closing
from ..core.dedup import DEDUP_META, bucket_ids, first_copies, gather
from ..core.fingerprint import record_hashes
from ..core.parallel import Workers
from ..core.records import find_offsets
from ..core.scatter import BucketSet, Scattered, regroup
from ..errors import InputError, option
from ..progress import Progress, dedup_phase, scatter_phase
from ..storage.sources import FileSource, RecordReader
from ..storage.tempspace import TempSpace

if TYPE_CHECKING:
    from .line_run import LineRun


def fits(nbytes: int, nrecords: int, limit: int) -> bool:
    """Whether a hash bucket can be deduplicated in memory: it, its unique copy and the bookkeeping
    within the pass-1 read buffer's share of the limit (the shuffle's scatter takes the rest)."""
    return 2 * nbytes + DEDUP_META * nrecords <= plan.read_capacity(limit)


def hash_bucket_count(nbytes: int, nrecords: int, limit: int, temp: str) -> int:
    """Hash buckets for ``nbytes`` (``nrecords``) of records (-1: unknown, planned from the free
    space, as pass 1 plans), so that the expected bucket needs a third of what ``fits`` allows."""
    most = plan.most_buckets()
    if nbytes < 0:
        nbytes = shutil.disk_usage(temp).free
        nrecords, most = nbytes // 64, min(most, 1024)
    need = 2 * nbytes + DEDUP_META * nrecords
    return max(2, min(most, math.ceil(need / max(1, plan.read_capacity(limit) // plan.BUCKET_FRACTION))))


def record_ranges(offsets: np.ndarray, nbytes: int) -> list[tuple[int, int]]:
    """Record ranges ``(first, stop)`` of about ``nbytes`` each (a longer record alone) tiling the records of ``offsets``."""
    ranges, first, n = [], 0, len(offsets) - 1
    while first < n:
        stop = int(np.searchsorted(offsets, int(offsets[first]) + nbytes, side="right")) - 1
        stop = min(n, max(first + 1, stop))
        ranges.append((first, stop))
        first = stop
    return ranges


def parallel_hashes(block: np.ndarray, offsets: np.ndarray, ranges: list[tuple[int, int]], workers: Workers) -> np.ndarray:
    """``record_hashes`` of the records of ``block``, a range of ``ranges`` per worker job."""

    def one(r: int) -> np.ndarray:
        """The hashes of the records of range ``r``."""
        first, stop = ranges[r]
        return record_hashes(block[int(offsets[first]) :], offsets[first : stop + 1] - offsets[first])

    if len(ranges) < 2:
        return record_hashes(block, offsets)
    return np.concatenate(workers.sized(len(block)).map(one, len(ranges)))


class Dedup:
    """The dedup stage of one ``--unique`` line run: its hash buckets under the run's temp space."""

    def __init__(self, run: LineRun, temp: TempSpace) -> None:
        self.run = run
        self.temp = temp
        self.buf = np.empty(0, np.uint8)  # read buffer of the buckets that fit, reused

    def scatter(self, blocks: Iterator[np.ndarray], nbytes: int | None, per_record: float) -> BucketSet:
        """The input's ``blocks`` (``nbytes`` in all, if known) scattered into the top level's hash
        buckets, each run's copies dropped: after this, the input is read and the unique records are
        at most the buckets' bytes (``unique`` yields them)."""
        return self._fill(blocks, -1 if nbytes is None else nbytes, per_record, 0, "unique")

    def unique(self, buckets: BucketSet) -> Generator[np.ndarray, None, None]:
        """The unique records of the top level's hash ``buckets``, a block per bucket."""
        self.run.progress.start(scatter_phase(0), int(buckets.sizes.sum()))
        yield from self._unique_buckets(buckets, 0, "unique")

    def _fill(self, blocks: Iterator[np.ndarray], nbytes: int, per_record: float, level: int, name: str) -> BucketSet:
        """Scatter ``blocks`` into new hash buckets of ``level`` (in directory ``name``); return them, closed."""
        run = self.run
        if level > plan.MAX_DEPTH:
            raise InputError(
                f"copies could not be split below {plan.format_size(run.limit)} after {level} passes: {option('unique')} "
                f"needs the records repeated to be shorter than about a quarter of {option('memory')}; raise {option('memory')}"
            )
        run.extra_passes = max(run.extra_passes, level + 1)
        k = hash_bucket_count(nbytes, int(nbytes / max(1.0, per_record)), run.limit, self.temp.path)
        run.buckets += k
        buckets = BucketSet(os.path.join(self.temp.path, name), k, run.writer, compress=run.request.compress_temp)
        try:
            if level:
                run.progress.start(dedup_phase(level), nbytes)
            for block in blocks:
                self._scatter(block, buckets, level)
                if level:
                    run.progress.update(len(block))
            run.writer.flush()
        finally:
            run.writer.wait_idle()
            buckets.close()
            if isinstance(blocks, Generator):
                blocks.close()
        return buckets

    def _unique_buckets(self, buckets: BucketSet, level: int, name: str) -> Generator[np.ndarray, None, None]:
        """Each hash bucket's unique records, in bucket order, each bucket removed once used."""
        run = self.run
        for j in range(buckets.k):
            size, count = int(buckets.sizes[j]), int(buckets.records[j])
            if not count:
                continue
            if count == 1 or fits(size, count, run.limit):
                # One record is unique, and no longer than the read buffer: it is passed on as it is.
                if len(self.buf) < size:
                    self.buf = np.empty(size, np.uint8)
                view = buckets.read_into(j, self.buf)
                unique = view
                if count > 1:
                    offsets = find_offsets(view, run.fmt)
                    kept = first_copies(view, offsets)
                    run.duplicates += count - len(kept)
                    unique = gather(view, offsets, kept)[0]
                    del offsets, kept
                del view
                buckets.remove(j)
                yield unique
                del unique
                if level == 0:
                    run.progress.update(size)
            else:
                self.buf = np.empty(0, np.uint8)
                buckets.check_file(j)
                reader = RecordReader([FileSource(buckets.path(j))], run.fmt, Progress())
                flagged = reader.blocks(plan.read_capacity(run.limit), option("memory"))
                below = self._fill(closing((b for b, _final in flagged), flagged), size, size / count, level + 1, f"{name}-{j}")
                buckets.remove(j)
                yield from self._unique_buckets(below, level + 1, f"{name}-{j}")
                if level == 0:
                    run.progress.start(scatter_phase(0), int(buckets.sizes[j + 1 :].sum()))

    def _scatter(self, block: np.ndarray, buckets: BucketSet, level: int) -> None:
        """Drop the duplicates of ``block`` within each run of at most ``piece_records`` records
        (the dedup's bookkeeping stays bounded), and scatter the rest by hash, a piece per worker.

        A run spans many pieces: a bucket too big for memory then holds fewer copies one level
        down, however long its records (up to a quarter of the limit)."""
        run = self.run
        most = plan.piece_records(run.limit)
        k = buckets.k
        pos = 0
        while pos < len(block):
            offsets = find_offsets(block[pos:], run.fmt, most)
            unit = block[pos : pos + int(offsets[-1])]
            pieces = record_ranges(offsets, run.piece)
            hashes = parallel_hashes(unit, offsets, pieces, run.workers)
            kept = first_copies(unit, offsets, hashes)
            ids = np.full(len(offsets) - 1, k, np.uint16 if k < 1 << 16 else np.uint32)
            ids[kept] = bucket_ids(hashes[kept], level, k)
            run.duplicates += len(ids) - len(kept)
            del hashes, kept

            def one(first: int, stop: int, offsets: np.ndarray = offsets, unit: np.ndarray = unit, ids: np.ndarray = ids) -> Scattered:
                """Records ``first`` to ``stop - 1`` of the run regrouped by their hash buckets."""
                lo, hi = int(offsets[first]), int(offsets[stop])
                return regroup(unit[lo:hi], offsets[first : stop + 1] - offsets[first], ids[first:stop], k, k)

            jobs = ((lambda first=first, stop=stop: one(first, stop)) for first, stop in pieces)
            for part in run.workers.sized(len(unit)).ordered(jobs, ahead=plan.pieces_ahead(run.limit)):
                buckets.append(part)
            pos += len(unit)
