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
"""

from __future__ import annotations

import io
import math
import os
import shutil
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import plan
from ..core.dedup import DEDUP_META, bucket_ids, first_copies, gather
from ..core.fingerprint import record_hashes
from ..core.scatter import regroup
from ..errors import InputError, option
from ..progress import dedup_phase, scatter_phase
from ..storage.tempspace import TempSpace
from .tar_input import BLOCK, GNU_LONG_LINK, GNU_LONG_NAME, PAX, _header_name, _Members, _number, sample_key

if TYPE_CHECKING:
    from .tar_run import SampleBuckets, TarRun

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


def fits(nbytes: int, nrecords: int, limit: int) -> bool:
    """Whether a block of samples can be deduplicated in memory: it, its identities, its unique copy
    and the bookkeeping within the read buffer's share of the limit."""
    return 3 * nbytes + DEDUP_META * nrecords <= plan.read_capacity(limit)


def unique_capacity(limit: int) -> int:
    """The blocks a ``--unique`` run reads from its inputs, and so the longest sample it takes: a
    sixth of the read buffer. A hash bucket too big to deduplicate in memory is read back in blocks
    twice as big (a third: each is held with its identities and a regrouped copy), so each holds
    two samples or more, and copies of one sample always shrink from one level to the next."""
    return plan.read_capacity(limit) // 6


def unique_samples(block: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The first copy of each sample of ``block`` (in order), their offsets, and the copies dropped."""
    ident, ends = identities(block, offsets)
    kept = first_copies(ident, ends)
    del ident, ends
    data, new = gather(block, offsets, kept)
    return data, new.astype(np.int64), len(offsets) - 1 - len(kept)


class TarDedup:
    """The dedup stage of one ``--unique`` tar run: its hash buckets under the run's temp space."""

    def __init__(self, run: TarRun, temp: TempSpace) -> None:
        self.run = run
        self.temp = temp
        self.buf = np.empty(0, np.uint8)  # read buffer of the buckets that fit, reused

    def scatter(self, blocks: Iterable[tuple[np.ndarray, np.ndarray]], nbytes: int | None) -> SampleBuckets:
        """The input's ``blocks`` (``nbytes`` in all, if known) scattered into the top level's hash
        buckets, each block's copies dropped."""
        return self._fill(blocks, -1 if nbytes is None else nbytes, 0, "unique")

    def unique(self, buckets: SampleBuckets) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """The unique samples of the top level's hash ``buckets``, a block per bucket."""
        self.run.progress.start(scatter_phase(0), int(buckets.sizes.sum()))
        yield from self._unique_buckets(buckets, 0, "unique")
        self.buf = np.empty(0, np.uint8)  # pass 2 of the shuffle has its own

    def _bucket_count(self, nbytes: int) -> int:
        """Hash buckets for ``nbytes`` of samples (-1: unknown, planned from the free space), so
        that the expected bucket needs a third of what ``fits`` allows."""
        most = plan.most_buckets()
        if nbytes < 0:
            nbytes, most = shutil.disk_usage(self.temp.path).free, min(most, 1024)
        return max(2, min(most, math.ceil(3 * nbytes / max(1, plan.read_capacity(self.run.limit) // plan.BUCKET_FRACTION))))

    def _fill(self, blocks: Iterable[tuple[np.ndarray, np.ndarray]], nbytes: int, level: int, name: str) -> SampleBuckets:
        """Scatter ``blocks`` into new hash buckets of ``level`` (in directory ``name``); return them, closed."""
        from .tar_run import SampleBuckets

        run = self.run
        if level > plan.MAX_DEPTH:
            raise InputError(
                f"copies could not be split below {plan.format_size(run.limit)} after {level} passes: {option('unique')} "
                f"needs the samples repeated to be shorter than about a sixth of {option('memory')}; raise {option('memory')}"
            )
        run.extra_passes = max(run.extra_passes, level + 1)
        k = self._bucket_count(nbytes)
        run.buckets += k
        buckets = SampleBuckets(os.path.join(self.temp.path, name), k, run.writer, run.request.compress_temp)
        try:
            if level:
                run.progress.start(dedup_phase(level), nbytes)
            for data, offsets in blocks:
                self._scatter(data, offsets, buckets, level)
                if level:
                    run.progress.update(len(data))
            run.writer.flush()
        finally:
            run.writer.wait_idle()
            buckets.close()
            if isinstance(blocks, Generator):
                blocks.close()
        return buckets

    def _scatter(self, data: np.ndarray, offsets: np.ndarray, buckets: SampleBuckets, level: int) -> None:
        """Drop the copies within the block, and scatter the rest by the hash of their identity."""
        run, k = self.run, buckets.k
        ident, ends = identities(data, offsets)
        hashes = record_hashes(ident, ends)
        kept = first_copies(ident, ends, hashes)
        del ident, ends
        ids = np.full(len(offsets) - 1, k, np.uint16 if k < 1 << 16 else np.uint32)
        ids[kept] = bucket_ids(hashes[kept], level, k)
        run.duplicates += len(ids) - len(kept)
        lengths = np.diff(offsets).astype("<i8").view(np.uint8)
        length_offsets = np.arange(0, len(lengths) + 1, 8, dtype=np.int64)
        buckets.append(regroup(data, offsets, ids, k, k), regroup(lengths, length_offsets, ids, k, k), k)

    def _unique_buckets(self, buckets: SampleBuckets, level: int, name: str) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """Each hash bucket's unique samples, in bucket order, each bucket removed once used."""
        from .tar_run import _bucket_samples

        run = self.run
        for j in range(buckets.k):
            size, count = int(buckets.sizes[j]), int(buckets.records[j])
            if not count:
                buckets.remove(j)
                continue
            if count == 1 or fits(size, count, run.limit):
                if len(self.buf) < size:
                    self.buf = np.empty(size, np.uint8)
                offsets = buckets.offsets(j)
                view = buckets.data.read_into(j, self.buf)
                data, new, dropped = (view, offsets, 0) if count == 1 else unique_samples(view, offsets)
                run.duplicates += dropped
                buckets.remove(j)
                yield data, new
                del data, new, view
                if level == 0:
                    run.progress.update(size)
            else:
                self.buf = np.empty(0, np.uint8)
                buckets.data.check_file(j)
                buckets.lengths.check_file(j)
                blocks = _bucket_samples(buckets, j, 2 * unique_capacity(run.limit))
                below = self._fill(blocks, size, level + 1, f"{name}-{j}")
                buckets.remove(j)
                yield from self._unique_buckets(below, level + 1, f"{name}-{j}")
                if level == 0:
                    run.progress.start(scatter_phase(0), int(buckets.sizes[j + 1 :].sum()))
