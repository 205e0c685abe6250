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

import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import mix, plan
from ..core.driver import closing
from ..core.dedup import DEDUP_META, bucket_ids, dedup_need, first_copies, gather, hash_bucket_count, keeps_hashes
from ..core.fingerprint import record_hashes
from ..core.parallel import Workers
from ..core.records import count_separators, find_offsets
from ..core.checkpoint import advice
from ..core.buckets import BucketSet
from ..core.scatter import Scattered, regroup
from ..errors import TempSpaceError, option
from ..progress import Progress, scatter_phase
from ..quoting import quote_name
from ..storage.reader import RecordReader
from ..storage.sources import FileSource
from ..storage.tempspace import TempSpace
from ..storage.writeback import WriteBehind
from .dedup_stage import TOP, DedupStage, dropped_per_source

if TYPE_CHECKING:
    from .line_run import LineRun


#: Bytes per record the dedup holds beside ``DEDUP_META`` with weighted sources: each record's
#: source and its first copy's (2 each).
SOURCE_META = 4

#: A record's source within a run of records at byte ``pos`` of a block (``offsets``: the run's, from ``pos``).
Labels = Callable[[int, np.ndarray], np.ndarray]


def hash_buckets(nbytes: int, records: int, limit: int, sources: int, held: int = 0) -> int:
    """Hash buckets of a level of ``nbytes`` (-1: unknown) in ``records`` lines (with ``sources``
    weighted sources, their bookkeeping too), beside ``held`` open bucket files of pass 1."""
    meta = DEDUP_META + (SOURCE_META if sources else 0)
    return hash_bucket_count(dedup_need(nbytes, records, meta), limit, held=held)


def fits(nbytes: int, nrecords: int, limit: int, meta: int = DEDUP_META) -> bool:
    """Whether a hash bucket can be deduplicated in memory: it, its unique copy and the bookkeeping
    (``meta`` a record) within the pass-1 read buffer's share of the limit (the shuffle's scatter takes the rest)."""
    return dedup_need(nbytes, nrecords, meta) <= plan.read_capacity(limit)


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


class HashBuckets:
    """One dedup level's hash buckets: each bucket's records, beside them a file of their 64-bit
    hashes in the same order (read back rather than computed again; left out when twice the
    buckets would be more files than may be open, so that the bucket count, and with it the
    output, never depends on them), and with weighted sources each bucket's records per source (a
    bucket holds its records in input order, so it holds its first source's, then its next
    source's, and so on)."""

    def __init__(
        self, directory: str, k: int, writer: WriteBehind, compress: bool, sources: int, hashed: bool, fresh: bool = True
    ) -> None:
        self.data = BucketSet(directory, k, writer, compress=compress, fresh=fresh)
        # ``hashed``: as ``keeps_hashes`` says for a new level; a checkpoint's keeps the hashes it was
        # written with, whatever the limit on open files now.
        self.hashes = BucketSet(f"{directory}-hashes", k, writer, compress=compress, fresh=fresh) if hashed else None
        self.k = k
        self.per_source = np.zeros((k, sources), np.int64) if sources else None
        # Buckets split one level deeper by a counting pass, to be read from there by the next.
        self.below: dict[int, HashBuckets] = {}

    def append(self, records: Scattered, hashes: Scattered | None) -> None:
        """Append a piece's records regrouped by bucket, and their hashes regrouped alike."""
        self.data.append(records)
        if self.hashes is not None and hashes is not None:
            self.hashes.append(hashes)

    def read_hashes(self, j: int) -> np.ndarray | None:
        """The hashes of bucket ``j``'s records, in their order (checked as the records are); None if not kept."""
        if self.hashes is None:
            return None
        hashes = np.empty(int(self.data.records[j]), np.uint64)
        if int(self.hashes.sizes[j]) != hashes.nbytes:
            raise TempSpaceError(f"{quote_name(self.hashes.path(j))}: {self.hashes.sizes[j]} bytes of hashes for {len(hashes)} records")
        self.hashes.read_into(j, hashes.view(np.uint8))
        return hashes

    def sync(self) -> None:
        """``--resume``: make every file of the level durable, for the checkpoint that counts them."""
        self.data.sync()
        if self.hashes is not None:
            self.hashes.sync()

    def state(self) -> dict[str, Any]:
        """``--resume``: the level as its checkpoint holds it (``core.checkpoint`` validates it)."""
        return {
            "k": self.k, "buckets": self.data.state(), "hashes": None if self.hashes is None else self.hashes.state(),
            "per_source": None if self.per_source is None else self.per_source.tolist(),
        }

    def restore(self, state: dict[str, Any], advice: str) -> None:
        """``--resume``: return to a validated checkpoint's complete level, every file there and exactly
        as long as it says (its CRC checked as it is read); a problem names ``advice``."""
        for files, kept in ((self.data, state["buckets"]), (self.hashes, state["hashes"])):
            if files is not None:
                files.advice = advice
                files.restore(kept, 0, True)
        if self.per_source is not None:
            self.per_source[:] = state["per_source"]

    def remove(self, j: int) -> None:
        """Delete bucket ``j``'s files once it has been consumed."""
        self.data.remove(j)
        if self.hashes is not None:
            self.hashes.remove(j)

    def close(self) -> None:
        """Flush and close every file of the level."""
        try:
            self.data.close()
        finally:
            if self.hashes is not None:
                self.hashes.close()


def hashes_regrouped(hashes: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> Scattered:
    """``hashes`` regrouped by bucket ``ids`` as ``regroup`` regroups their records (stable; ids of
    ``len(counts)`` or more dropped), ``counts`` per bucket."""
    kept = int(counts.sum())
    grouped = hashes[np.argsort(ids, kind="stable")[:kept]]
    bounds = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=bounds[1:])
    bounds *= 8
    return Scattered(grouped.view(np.uint8).data, bounds, counts)


def byte_labels(file_source: np.ndarray, runs: list[tuple[int, int]], size: int) -> Labels:
    """The source of each record of a block of ``size`` bytes whose inputs start at ``runs``
    (input index, byte), from where the record starts."""
    segments = mix.segments(file_source, runs, size)
    starts = np.array([lo for _s, lo, _hi in segments], np.int64)
    sources = np.array([s for s, _lo, _hi in segments], np.uint16)

    def labels(pos: int, offsets: np.ndarray) -> np.ndarray:
        """Sources of the records at ``pos + offsets[:-1]``."""
        found: np.ndarray = sources[np.searchsorted(starts, offsets[:-1].astype(np.int64) + pos, side="right") - 1]
        return found

    return labels


def counted_labels(per_source: np.ndarray) -> Labels:
    """The source of each record of a bucket read back in order, from its records per source (its
    first ``per_source[0]`` records are source 0's, and so on); runs of records must come in order."""
    bounds = np.cumsum(per_source)
    done = [0]

    def labels(_pos: int, offsets: np.ndarray) -> np.ndarray:
        """Sources of the next ``len(offsets) - 1`` records of the bucket."""
        n = len(offsets) - 1
        found = np.searchsorted(bounds, np.arange(done[0], done[0] + n), side="right").astype(np.uint16)
        done[0] += n
        return found

    return labels


def source_runs(labels: np.ndarray, offsets: np.ndarray, first_input: list[int]) -> list[tuple[int, int]]:
    """Where each source's records start in a block (``labels``: each record's source, ascending;
    ``offsets``: the records'), as ``(input, byte)`` runs naming each source by its first input."""
    starts = np.searchsorted(labels, np.arange(len(first_input), dtype=np.uint16), side="left")
    present = np.flatnonzero(np.bincount(labels, minlength=len(first_input)))
    return [(first_input[s], int(offsets[starts[s]])) for s in present.tolist()]


def first_inputs(file_source: list[int], sources: int) -> list[int]:
    """The first input of each of ``sources`` sources (``file_source``: each input's source)."""
    return [file_source.index(s) for s in range(sources)]


class Dedup(DedupStage):
    """The dedup stage of one ``--unique`` line run: its hash buckets under the run's temp space.

    With weighted sources (``file_source``: the source of each input, ``sources`` of them) every
    record's source travels with it: the first copy in input order is kept, so a record found in
    two sources counts for the first of them as given, and each source's copies dropped are
    counted (``dropped``)."""

    repeated = "the records repeated to be shorter than about a quarter"
    run: LineRun

    def __init__(self, run: LineRun, temp: TempSpace, file_source: list[int] | None = None, sources: int = 0) -> None:
        super().__init__(run, temp, sources)
        self.buf = np.empty(0, np.uint8)  # read buffer of the buckets that fit, reused
        self.file_source = np.asarray(file_source or [], np.int64)
        self.meta = DEDUP_META + (SOURCE_META if sources else 0)
        # The first input of each source: unique blocks name their sources' runs by it.
        self.first_input = first_inputs(file_source or [], sources)

    def bucket_bytes(self, buckets: Any) -> int:
        """The bytes the hash ``buckets`` hold."""
        return int(buckets.data.sizes.sum())

    def scatter(self, blocks: Iterator[Any], nbytes: int | None, per_record: float) -> HashBuckets:
        """The input's ``blocks`` (``nbytes`` in all, if known; with sources each with its inputs'
        runs) scattered into the top level's hash buckets, each run's copies dropped: after this,
        the input is read and the unique records are at most the buckets' bytes (``unique`` yields them)."""
        labelled: Iterator[tuple[np.ndarray, Labels | None]]
        if self.sources:
            labelled = ((b, byte_labels(self.file_source, runs, len(b))) for b, runs in blocks)
        else:
            labelled = ((b, None) for b in blocks)
        try:
            buckets = self._fill(labelled, -1 if nbytes is None else nbytes, per_record, 0, TOP)
        finally:
            if isinstance(blocks, Generator):
                blocks.close()
        if self.keep_top:
            self.run.save_checkpoint(dedup=buckets.state())
        return buckets

    def resume(self, blocks: Iterator[Any]) -> HashBuckets:
        """``--resume`` past the dedup pass: its hash buckets as the (validated) checkpoint left them,
        the input's ``blocks`` read again only to count each source's records, from which the copies
        the pass dropped follow (refused if the buckets hold more than was read)."""
        run = self.run
        state = run.state["dedup"]
        k = int(state["k"])
        buckets = HashBuckets(
            os.path.join(self.temp.path, TOP), k, run.writer, run.request.compress_temp, self.sources, state["hashes"] is not None,
            fresh=False,
        )
        buckets.restore(state, advice(run.state_dir))
        read = self._recount(blocks)
        kept = buckets.data.records.sum(keepdims=True) if buckets.per_source is None else buckets.per_source.sum(axis=0)
        self.settle_resumed(k, kept, read)
        return buckets

    def _recount(self, blocks: Iterator[Any]) -> np.ndarray:
        """Records of each source in ``blocks`` (the input's; with sources, each with its inputs' runs), or of all of them."""
        fmt = self.run.fmt
        read = np.zeros(max(1, self.sources), np.int64)
        try:
            for item in blocks:
                if self.sources:
                    block, runs = item
                    for s, lo, hi in mix.segments(self.file_source, runs, len(block)):
                        read[s] += count_separators(block[lo:hi], fmt.sep) // fmt.group
                else:
                    read[0] += count_separators(item, fmt.sep) // fmt.group
        finally:
            if isinstance(blocks, Generator):
                blocks.close()
        return read

    def unique(self, buckets: HashBuckets) -> Generator[Any, None, None]:
        """The unique records of the top level's hash ``buckets``, a block per bucket (with sources,
        each with its sources' runs, as pass 1 takes a block of weighted sources)."""
        self.run.progress.start(scatter_phase(0), int(buckets.data.sizes.sum()))
        yield from self._unique_buckets(buckets, 0, TOP)


    def _fill(
        self, blocks: Iterator[tuple[np.ndarray, Labels | None]], nbytes: int, per_record: float, level: int, name: str
    ) -> HashBuckets:
        """Scatter ``blocks`` into new hash buckets of ``level`` (in directory ``name``); return them, closed."""
        run = self.run
        self.enter_level(level)
        k = hash_buckets(nbytes, int(nbytes / max(1.0, per_record)), run.limit, self.sources, run.held_files)
        run.buckets += k
        buckets = HashBuckets(
            os.path.join(self.temp.path, name), k, run.writer, run.request.compress_temp, self.sources, keeps_hashes(k, run.held_files)
        )

        def one(block: tuple[np.ndarray, Labels | None]) -> int:
            self._scatter(block[0], block[1], buckets, level)
            return len(block[0])

        self.scatter_all(blocks, buckets, level, nbytes, one)
        return buckets

    def _unique_buckets(
        self, buckets: HashBuckets, level: int, name: str, tally: list[list[int]] | None = None
    ) -> Generator[Any, None, None]:
        """Each hash bucket's unique records, in bucket order, each bucket removed once used; with
        ``tally``, nothing yielded or removed: each source's unique records and bytes added to it."""
        run = self.run
        sizes, records = buckets.data.sizes, buckets.data.records
        for j in range(buckets.k):
            size, count = int(sizes[j]), int(records[j])
            if not count:
                continue
            below = buckets.below.get(j)
            if below is None and (count == 1 or fits(size, count, run.limit, self.meta)):
                # One record is unique, and no longer than the read buffer: it is passed on as it is.
                if len(self.buf) < size:
                    self.buf = np.empty(size, np.uint8)
                view = buckets.data.read_into(j, self.buf)
                labels = None if buckets.per_source is None else np.repeat(np.arange(self.sources, dtype=np.uint16), buckets.per_source[j])
                offsets = find_offsets(view, run.fmt)
                if len(offsets) - 1 != count:
                    raise TempSpaceError(
                        f"{buckets.data.path(j)}: hash bucket holds {len(offsets) - 1} records, {count} were counted; "
                        f"{buckets.data.advice or 'its disk may be failing'}"
                    )
                kept = first_copies(view, offsets, buckets.read_hashes(j)) if count > 1 else np.zeros(1, np.int64)
                if tally is not None:
                    assert labels is not None
                    tally[0] = (np.asarray(tally[0]) + np.bincount(labels[kept], minlength=self.sources)).tolist()
                    weights = np.diff(offsets)[kept].astype(np.float64)
                    tally[1] = (np.asarray(tally[1]) + np.bincount(labels[kept], weights, self.sources).astype(np.int64)).tolist()
                    run.progress.update(size)
                    continue
                unique = view
                if len(kept) < count:
                    run.duplicates += count - len(kept)
                    unique, offsets = gather(view, offsets, kept)
                    if labels is not None:
                        self.drop(labels, kept)
                        labels = labels[kept]
                del view, kept
                if level or not self.keep_top:
                    buckets.remove(j)
                yield unique if labels is None else (unique, self._runs(labels, offsets))
                del unique, offsets, labels
                if level == 0:
                    run.progress.update(size)
            else:
                if below is None:
                    self.buf = np.empty(0, np.uint8)
                    buckets.data.check_file(j)
                    reader = RecordReader([FileSource(buckets.data.path(j))], run.fmt, Progress())
                    flagged = reader.blocks(plan.read_capacity(run.limit), option("memory"))
                    labeller = None if buckets.per_source is None else counted_labels(buckets.per_source[j])
                    sub = ((b, labeller) for b, _final in flagged)
                    below = self._fill(closing(sub, flagged), size, size / count, level + 1, f"{name}-{j}")
                    if level or not self.keep_top:
                        buckets.remove(j)
                    if tally is not None:
                        buckets.below[j] = below
                else:
                    del buckets.below[j]
                yield from self._unique_buckets(below, level + 1, f"{name}-{j}", tally)
                if level == 0:
                    run.progress.start("counting" if tally is not None else scatter_phase(0), int(sizes[j + 1 :].sum()))

    def _runs(self, labels: np.ndarray, offsets: np.ndarray) -> list[tuple[int, int]]:
        """Where each source's records start in a unique block (``labels``: each record's source)."""
        return source_runs(labels, offsets, self.first_input)

    def _scatter(self, block: np.ndarray, labels: Labels | None, buckets: HashBuckets, level: int) -> None:
        """Drop the duplicates of ``block`` within each run of at most ``piece_records`` records
        (the dedup's bookkeeping stays bounded), and scatter the rest by hash, a piece per worker,
        their hashes beside them (and with ``labels``, each bucket's records per source counted).

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
            if labels is not None:
                self._count_sources(labels(pos, offsets), ids, kept, buckets)
            del kept

            def one(
                first: int, stop: int, offsets: np.ndarray = offsets, unit: np.ndarray = unit, ids: np.ndarray = ids,
                hashes: np.ndarray = hashes,
            ) -> tuple[Scattered, Scattered | None]:
                """Records ``first`` to ``stop - 1`` of the run regrouped by their hash buckets, and their hashes alike."""
                lo, hi = int(offsets[first]), int(offsets[stop])
                part = regroup(unit[lo:hi], offsets[first : stop + 1] - offsets[first], ids[first:stop], k, k)
                grouped = None if buckets.hashes is None else hashes_regrouped(hashes[first:stop], ids[first:stop], part.counts)
                return part, grouped

            jobs = ((lambda first=first, stop=stop: one(first, stop)) for first, stop in pieces)
            for part, grouped in run.workers.sized(len(unit)).ordered(jobs, ahead=plan.pieces_ahead(run.limit)):
                buckets.append(part, grouped)
            del hashes
            pos += len(unit)

    def _count_sources(self, sources: np.ndarray, ids: np.ndarray, kept: np.ndarray, buckets: HashBuckets) -> None:
        """Add a run's records kept to their buckets' counts per source, and its copies to ``dropped``."""
        assert buckets.per_source is not None
        n, k = self.sources, buckets.k
        mine = ids[kept].astype(np.int64) * n + sources[kept]
        buckets.per_source += np.bincount(mine, minlength=k * n).reshape(k, n)
        self.drop(sources, kept)


def unique_with_sources(
    block: np.ndarray, offsets: np.ndarray, runs: list[tuple[int, int]], file_source: list[int], sources: int, piece: int,
    workers: Workers,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], list[list[int]]]:
    """``--unique`` with weighted sources, the whole input in memory (its inputs start at ``runs``):
    the first copy of each record in input order, gathered with their offsets and their sources'
    runs, and per source the records kept, their bytes and the copies dropped."""
    labels = byte_labels(np.asarray(file_source, np.int64), runs, len(block))(0, offsets)
    kept = first_copies(block, offsets, parallel_hashes(block, offsets, record_ranges(offsets, piece), workers))
    dropped = dropped_per_source(labels, kept, sources)
    labels = labels[kept]
    counts = np.bincount(labels, minlength=sources).tolist()
    nbytes = np.bincount(labels, np.diff(offsets)[kept].astype(np.float64), sources).astype(np.int64).tolist()
    unique, new_offsets = gather(block, offsets, kept)
    return unique, new_offsets, source_runs(labels, new_offsets, first_inputs(file_source, sources)), [counts, nbytes, dropped]
