"""``--unique`` for WebDataset samples: one copy of each sample whose members carry the same
suffixes and the same bytes, in the same order, before the shuffle.

A sample's identity is what a training pipeline reads of it: for each member in order, its suffix
as WebDataset gives it (``jpg``, ``seg.png``; the key is not part of it) and its data. Names'
keys, modes, mtimes, owners and extension headers are not: the same image and caption stored
twice under two keys, or copied on another day, are one sample. The first copy in reading order
is kept, with its own name and metadata. Identities are compared byte for byte: their 64-bit
hashes only group them (``core.dedup``).

Samples are deduplicated as lines are (``line_unique``): each block read drops its own copies and
scatters the rest by the hash of their identity into hash buckets (bytes and lengths, as the
shuffle's), so all copies of a sample meet in one bucket; each bucket is read back, deduplicated
in memory and handed to the shuffle's pass 1. A bucket too big for memory is split again with
another hash one level deeper, each level dropping the copies within each block it reads.

With weighted sources each sample's source travels with it as a line's does: the first copy in
input order (the sources' files in the order given) is kept, each source's copies dropped are
counted, and the rates apply to the samples left (``TarRun`` plans its mix once they are counted).
"""

from __future__ import annotations

import io
import os
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import plan
from ..core.dedup import DEDUP_META, bucket_ids, first_copies, gather, hash_bucket_count
from ..core.checkpoint import advice
from ..core.fingerprint import record_hashes
from ..core.scatter import regroup
from ..progress import scatter_phase
from ..storage.tempspace import TempSpace
from .line_unique import SOURCE_META, first_inputs
from .tar_buckets import SampleBuckets, bucket_samples
from .tar_input import sample_key
from .tar_members import BLOCK, GNU_LONG_LINK, GNU_LONG_NAME, PAX, _header_name, _Members, _number
from .dedup_stage import TOP, DedupStage, dropped_per_source

if TYPE_CHECKING:
    from .tar_run import TarRun


class _ViewStream(io.RawIOBase):
    """A readable stream over a memoryview, read without copying it first (``io.BytesIO`` would)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self.view = view
        self.pos = 0

    def readable(self) -> bool:
        """Always: it is only read."""
        return True

    def readinto(self, b: Any) -> int:
        """Copy the next bytes into ``b``; 0 at the end."""
        n = min(len(b), len(self.view) - self.pos)
        b[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n


def identities(block: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's identity, as one block and its offsets: for every member in order, its suffix,
    a NUL, its data size (8 bytes) and its data (no header, no padding).

    A member's identity is shorter than its raw blocks (a 512-byte header holds its name), so the
    identities fit in one buffer the block's size."""
    ident = np.empty(len(block), np.uint8)
    ends = np.zeros(len(offsets), np.int64)
    view = block.data
    pos = 0
    for i in range(len(offsets) - 1):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        members = _plain_members(view, lo, hi)
        for suffix, start, size in _parsed_members(view, lo, hi) if members is None else members:
            head = suffix + b"\0" + size.to_bytes(8, "little")
            ident[pos : pos + len(head)] = np.frombuffer(head, np.uint8)
            pos += len(head)
            ident[pos : pos + size] = block[start : start + size]
            pos += size
        ends[i + 1] = pos
    return ident[:pos], ends


def _plain_members(view: memoryview, lo: int, hi: int) -> list[tuple[bytes, int, int]] | None:
    """The suffix, data start and data size of each member of the sample ``view[lo:hi]`` when
    every header is a plain one (the reader checked them all); None when one is an extension
    header (pax, GNU long name), which ``_parsed_members`` reads."""
    out = []
    pos = lo
    while pos < hi:
        header = bytes(view[pos : pos + BLOCK])
        if header[156:157] in (PAX, GNU_LONG_NAME, GNU_LONG_LINK):
            return None
        size = _number(header[124:136]) or 0
        parsed = sample_key(_header_name(header))
        out.append((b"" if parsed is None else parsed[1], pos + BLOCK, size))
        pos += BLOCK + -(-size // BLOCK) * BLOCK
    return out


def _parsed_members(view: memoryview, lo: int, hi: int) -> list[tuple[bytes, int, int]]:
    """``_plain_members`` of a sample with extension headers, read by the tar reader itself."""
    members = _Members(_ViewStream(view[lo:hi]), "a sample")
    out = []
    for _headers, name, size in members:
        parsed = sample_key(name)
        out.append((b"" if parsed is None else parsed[1], lo + members.offset, size))
        members.skip_data()
    return out


def hash_buckets(nbytes: int, limit: int, files: int, held: int = 0) -> int:
    """Hash buckets (of ``files`` files each) of a level of ``nbytes`` (-1: unknown) of samples, their
    count unknown (``fits`` counts three times their bytes), beside ``held`` open bucket files of pass 1."""
    return hash_bucket_count(-1 if nbytes < 0 else 3 * nbytes, limit, files, held)


def fits(nbytes: int, nrecords: int, limit: int, meta: int = DEDUP_META) -> bool:
    """Whether a block of samples can be deduplicated in memory: it, its identities, its unique copy
    and the bookkeeping (``meta`` a sample) within the read buffer's share of the limit."""
    return 3 * nbytes + meta * nrecords <= plan.read_capacity(limit)


def unique_capacity(limit: int) -> int:
    """The blocks a ``--unique`` run reads from its inputs, and so the longest sample it takes: a
    sixth of the read buffer. A hash bucket too big to deduplicate in memory is read back in blocks
    twice as big (a third: each is held with its identities and a regrouped copy), so each holds
    two samples or more, and copies of one sample always shrink from one level to the next."""
    return plan.read_capacity(limit) // 6


def first_samples(block: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Indices, ascending, of the samples of ``block`` that are the first copy of their identity in it."""
    ident, ends = identities(block, offsets)
    return first_copies(ident, ends)


def kept_samples(block: np.ndarray, offsets: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples ``kept`` of ``block`` (ascending indices) copied together, with their offsets."""
    data, new = gather(block, offsets, kept)
    return data, new.astype(np.int64)


def unique_samples(block: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The first copy of each sample of ``block`` (in order), their offsets, and the copies dropped."""
    kept = first_samples(block, offsets)
    data, new = kept_samples(block, offsets, kept)
    return data, new, len(offsets) - 1 - len(kept)


def unique_with_sources(
    block: np.ndarray, offsets: np.ndarray, files: np.ndarray, file_source: list[int], sources: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[int]]]:
    """``--unique`` with weighted sources, every sample in memory (``files``: each one's input): the
    first copy of each sample in input order, their offsets and inputs, and per source the samples
    kept, their bytes and the copies dropped."""
    labels = np.asarray(file_source, np.int64)[files]
    kept = first_samples(block, offsets)
    dropped = dropped_per_source(labels, kept, sources)
    mine = labels[kept]
    counts = np.bincount(mine, minlength=sources).tolist()
    nbytes = np.bincount(mine, np.diff(offsets)[kept].astype(np.float64), sources).astype(np.int64).tolist()
    data, new = kept_samples(block, offsets, kept)
    return data, new, files[kept], [counts, nbytes, dropped]


def _labelled(
    blocks: Generator[tuple[np.ndarray, np.ndarray], None, None], per_source: np.ndarray | None
) -> Generator[tuple[np.ndarray, np.ndarray, np.ndarray | None], None, None]:
    """A bucket's samples read back in order (``blocks``), each block with its samples' sources:
    the bucket holds ``per_source[s]`` samples of source s, sources in order (None: no sources)."""
    bounds = None if per_source is None else np.cumsum(per_source)
    done = 0
    try:
        for data, offsets in blocks:
            n = len(offsets) - 1
            labels = None if bounds is None else np.searchsorted(bounds, np.arange(done, done + n), side="right").astype(np.uint16)
            done += n
            yield data, offsets, labels
    finally:
        blocks.close()


class TarDedup(DedupStage):
    """The dedup stage of one ``--unique`` tar run: its hash buckets under the run's temp space.

    With weighted sources (``file_source``: the source of each input, ``sources`` of them) each
    sample's source travels with it, as a line's does (``line_unique.Dedup``): a bucket holds its
    samples in input order, so its samples per source are counts; the first copy in input order is
    kept, so a sample two sources hold counts for the first as given, and each source's copies
    dropped are counted (``dropped``)."""

    repeated = "the samples repeated to be shorter than about a sixth"
    run: TarRun

    def __init__(self, run: TarRun, temp: TempSpace, file_source: list[int] | None = None, sources: int = 0) -> None:
        super().__init__(run, temp, sources)
        self.buf = np.empty(0, np.uint8)  # read buffer of the buckets that fit, reused
        self.file_source = np.asarray(file_source or [], np.int64)
        self.meta = DEDUP_META + (SOURCE_META if sources else 0)
        # The first input of each source: unique blocks name their samples' sources by it.
        self.first_input = np.asarray(first_inputs(file_source or [], sources), np.int64)
        # With sources, each level's samples per bucket and source (by the level's name); and the
        # buckets a counting pass split one level deeper, to be read from there by the next.
        self.per_source: dict[str, np.ndarray] = {}
        self.below: dict[str, dict[int, SampleBuckets]] = {}

    def bucket_bytes(self, buckets: Any) -> int:
        """The bytes the hash ``buckets`` hold."""
        return int(buckets.sizes.sum())

    def scatter(self, blocks: Iterator[tuple[np.ndarray, ...]], nbytes: int | None) -> SampleBuckets:
        """The input's ``blocks`` (``nbytes`` in all, if known; with sources each with its samples'
        inputs) scattered into the top level's hash buckets, each block's copies dropped."""
        labelled: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
        if self.sources:
            labelled = ((b[0], b[1], self.file_source[b[2]].astype(np.uint16)) for b in blocks)
        else:
            labelled = ((b[0], b[1], None) for b in blocks)
        try:
            buckets = self._fill(labelled, -1 if nbytes is None else nbytes, 0, TOP)
        finally:
            if isinstance(blocks, Generator):
                blocks.close()
        if self.keep_top:
            per_source = self.per_source.get(TOP)
            # Identities are hashed again as buckets are read: no file of hashes beside them.
            state = {"k": buckets.k, "buckets": buckets.state(), "hashes": None}
            self.run.save_checkpoint(dedup={**state, "per_source": None if per_source is None else per_source.tolist()})
        return buckets

    def resume(self, blocks: Iterator[tuple[np.ndarray, ...]]) -> SampleBuckets:
        """``--resume`` past the dedup pass: its hash buckets as the (validated) checkpoint left them,
        the input's ``blocks`` read again only to count each source's samples, from which the copies
        the pass dropped follow (refused if the buckets hold more than was read)."""
        run = self.run
        state = run.state["dedup"]
        buckets = SampleBuckets(os.path.join(self.temp.path, TOP), int(state["k"]), run.writer, run.request.compress_temp, fresh=False)
        buckets.advice = advice(run.state_dir)
        buckets.restore(state["buckets"], 0, True)
        read = np.zeros(max(1, self.sources), np.int64)
        try:
            for block in blocks:
                if self.sources:
                    read += np.bincount(self.file_source[block[2]], minlength=self.sources)
                else:
                    read[0] += len(block[1]) - 1
        finally:
            if isinstance(blocks, Generator):
                blocks.close()
        if self.sources:
            self.per_source[TOP] = np.array(state["per_source"], np.int64)
            kept = self.per_source[TOP].sum(axis=0)
        else:
            kept = buckets.records.sum(keepdims=True)
        self.settle_resumed(buckets.k, kept, read)
        return buckets

    def unique(self, buckets: SampleBuckets) -> Generator[tuple[np.ndarray, ...], None, None]:
        """The unique samples of the top level's hash ``buckets``, a block per bucket (with sources,
        each with its samples' inputs, as pass 1 takes a block of weighted sources)."""
        self.run.progress.start(scatter_phase(0), int(buckets.sizes.sum()))
        yield from self._unique_buckets(buckets, 0, TOP)
        self.buf = np.empty(0, np.uint8)  # pass 2 of the shuffle has its own

    def _fill(self, blocks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]], nbytes: int, level: int, name: str) -> SampleBuckets:
        """Scatter ``blocks`` (each with its samples' sources, or None) into new hash buckets of
        ``level`` (in directory ``name``); return them, closed."""
        run = self.run
        self.enter_level(level)
        k = hash_buckets(nbytes, run.limit, run.files_per_bucket, run.held_files)
        run.buckets += k
        buckets = SampleBuckets(os.path.join(self.temp.path, name), k, run.writer, run.request.compress_temp)
        if self.sources:
            self.per_source[name] = np.zeros((k, self.sources), np.int64)

        def one(block: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> int:
            self._scatter(block[0], block[1], block[2], buckets, level, name)
            return len(block[0])

        self.scatter_all(blocks, buckets, level, nbytes, one)
        return buckets

    def _scatter(
        self, data: np.ndarray, offsets: np.ndarray, labels: np.ndarray | None, buckets: SampleBuckets, level: int, name: str
    ) -> None:
        """Drop the copies within the block, and scatter the rest by the hash of their identity
        (with ``labels``, each sample's source, counting each bucket's samples per source)."""
        run, k = self.run, buckets.k
        ident, ends = identities(data, offsets)
        hashes = record_hashes(ident, ends)
        kept = first_copies(ident, ends, hashes)
        del ident, ends
        ids = np.full(len(offsets) - 1, k, np.uint16 if k < 1 << 16 else np.uint32)
        ids[kept] = bucket_ids(hashes[kept], level, k)
        run.duplicates += len(ids) - len(kept)
        if labels is not None:
            n = self.sources
            self.per_source[name] += np.bincount(ids[kept].astype(np.int64) * n + labels[kept], minlength=k * n).reshape(k, n)
            self.drop(labels, kept)
        lengths = np.diff(offsets).astype("<i8").view(np.uint8)
        length_offsets = np.arange(0, len(lengths) + 1, 8, dtype=np.int64)
        buckets.append(regroup(data, offsets, ids, k, k), regroup(lengths, length_offsets, ids, k, k), k)

    def _unique_buckets(
        self, buckets: SampleBuckets, level: int, name: str, tally: list[list[int]] | None = None
    ) -> Generator[tuple[np.ndarray, ...], None, None]:
        """Each hash bucket's unique samples, in bucket order, each bucket removed once used; with
        ``tally``, nothing yielded or removed: each source's unique samples and bytes added to it."""
        run = self.run
        per_source = self.per_source.get(name)
        split = self.below.setdefault(name, {})
        for j in range(buckets.k):
            size, count = int(buckets.sizes[j]), int(buckets.records[j])
            kept_on = level == 0 and self.keep_top  # --resume: the top level's buckets stay
            if not count:
                continue
            below = split.get(j)
            if below is None and (count == 1 or fits(size, count, run.limit, self.meta)):
                if len(self.buf) < size:
                    self.buf = np.empty(size, np.uint8)
                offsets = buckets.offsets(j)
                view = buckets.data.read_into(j, self.buf)
                kept = first_samples(view, offsets) if count > 1 else np.zeros(1, np.int64)
                labels = None if per_source is None else np.repeat(np.arange(self.sources, dtype=np.uint16), per_source[j])
                if tally is not None:
                    assert labels is not None
                    mine = labels[kept]
                    for s, (c, b) in enumerate(zip(np.bincount(mine, minlength=self.sources).tolist(), np.bincount(
                        mine, np.diff(offsets)[kept].astype(np.float64), self.sources
                    ).astype(np.int64).tolist())):
                        tally[0][s] += c
                        tally[1][s] += b
                    run.progress.update(size)
                    continue
                data, new = (view, offsets) if len(kept) == count else kept_samples(view, offsets, kept)
                run.duplicates += count - len(kept)
                files = None
                if labels is not None:
                    self.drop(labels, kept)
                    files = self.first_input[labels[kept]]
                if not kept_on:
                    buckets.remove(j)
                yield (data, new) if files is None else (data, new, files)
                del data, new, view
                if level == 0:
                    run.progress.update(size)
            else:
                if below is None:
                    self.buf = np.empty(0, np.uint8)
                    buckets.data.check_file(j)
                    buckets.lengths.check_file(j)
                    blocks = bucket_samples(buckets, j, 2 * unique_capacity(run.limit))
                    sub = _labelled(blocks, None if per_source is None else per_source[j])
                    below = self._fill(sub, size, level + 1, f"{name}-{j}")
                    if not kept_on:
                        buckets.remove(j)
                    if tally is not None:
                        split[j] = below
                else:
                    del split[j]
                yield from self._unique_buckets(below, level + 1, f"{name}-{j}", tally)
                if level == 0:
                    run.progress.start("counting" if tally is not None else scatter_phase(0), int(buckets.sizes[j + 1 :].sum()))
