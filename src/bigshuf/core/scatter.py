"""Pass 1 of the external shuffle: send every record to one of k buckets chosen uniformly at random."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .records import INT32_LIMIT, RecordFormat, find_offsets, gather_records
from .streams import draw_ids
from .stratify import split_ids


@dataclass
class Scattered:
    """One piece of a block regrouped by bucket: its bytes and where each bucket starts."""

    data: memoryview
    byte_bounds: np.ndarray  # k+1 byte offsets into data, bucket j is [bounds[j], bounds[j+1])
    counts: np.ndarray  # records per bucket
    #: CRC-32 of each bucket's part, if taken where the piece was scattered (``checksummed``).
    crcs: list[int] | None = None
    #: Each bucket's part as the frame its compressed file takes, if made where the piece was
    #: scattered (``checksummed(compress=True)``); ``data`` is then empty.
    frames: list[bytes] | None = None

    def checksummed(self, compress: bool) -> Scattered:
        """This piece with its parts' CRC-32s taken now, and with ``compress`` its parts compressed
        now (``--compress-temp``), on the worker that scattered it rather than on the one thread
        that writes every bucket (which then only combines the CRCs and writes the frames)."""
        from isal.isal_zlib import crc32

        bounds = self.byte_bounds.tolist()
        parts = [self.data[lo:hi] for lo, hi in zip(bounds, bounds[1:])]
        self.crcs = [crc32(part) if len(part) else 0 for part in parts]
        if compress:
            compressor = temp_compressor()
            self.frames = [compressor.compress(part) if len(part) else b"" for part in parts]
            self.data = memoryview(b"")  # the raw bytes are not held while the frames wait to be written
        return self


def temp_compressor() -> Any:
    """A compressor for temporary buckets (``--compress-temp``): zstd level 1, one frame a part."""
    import zstandard

    return zstandard.ZstdCompressor(level=1)


def iter_pieces(
    block: np.ndarray, fmt: RecordFormat, max_bytes: int, max_records: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Split a block of whole records into pieces of bounded bytes and record count (the Dask engine's pieces).

    Yields ``(piece, offsets)`` as ``find_offsets`` gives them; a single record longer than
    ``max_bytes`` is a piece of its own.
    """
    pos, size = 0, len(block)
    while pos < size:
        offsets = find_offsets(block[pos : pos + max_bytes], fmt, max_records)
        if len(offsets) == 1:
            # A record longer than max_bytes: extend to its end (the block ends at one).
            offsets = find_offsets(block[pos:], fmt, 1)
        cut = int(offsets[-1])
        yield block[pos : pos + cut], offsets
        pos += cut


def cut_pieces(block: np.ndarray, fmt: RecordFormat, max_bytes: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """Byte ranges of whole records that tile ``block`` (which ends at a record's end) from
    ``start`` (a range's start), each at most ``max_bytes`` unless one record is longer. Lines are
    cut by searching back from each range's end, so the records inside are found by whichever
    worker scatters the range."""
    pos, size = start, len(block)
    while pos < size:
        end = min(size, pos + max_bytes)
        if end < size:
            end = last_end(block, pos, end, fmt)
            if end == pos:  # a record longer than max_bytes: a range of its own
                end = pos + int(find_offsets(block[pos:], fmt, 1)[-1])
        yield pos, end
        pos = end


def last_end(block: np.ndarray, lo: int, hi: int, fmt: RecordFormat) -> int:
    """The end of the last whole record in ``block[lo:hi]`` (``lo`` if none ends there)."""
    if fmt.group > 1:
        return lo + int(find_offsets(block[lo:hi], fmt)[-1])
    window = 1 << 16
    while hi > lo:
        start = max(lo, hi - window)
        hits = np.flatnonzero(block[start:hi] == fmt.sep)
        if len(hits):
            return start + int(hits[-1]) + 1
        hi = start
        window *= 2
    return lo


def scatter_records(
    piece: np.ndarray,
    offsets: np.ndarray,
    rng: np.random.Generator,
    k: int,
    keep: int,
    max_records: int,
    mult: np.ndarray | None = None,
    max_bytes: int = 0,
    strata: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[Scattered]:
    """``scatter_piece`` over the records of ``piece`` (its offsets), ``max_records`` at a time
    from the one stream, so that bookkeeping stays bounded however short the records are.

    With ``mult`` (weighted sources) record ``i`` is scattered ``mult[i]`` times, each copy with its
    own bucket draw, in runs of at most ``max_bytes`` bytes too; with ``strata`` (``--stratify``: the
    splits' bucket bounds, and each copy's split) each copy draws its bucket from its split's range.
    Runs are drawn as they are taken, so a caller may hold one at a time."""
    if mult is None or (strata is None and len(mult) and int(mult.min()) == 1 and int(mult.max()) == 1):
        for first in range(0, len(offsets) - 1, max_records):
            stop = min(len(offsets) - 1, first + max_records)
            lo, hi = int(offsets[first]), int(offsets[stop])
            yield scatter_piece(piece[lo:hi], offsets[first : stop + 1] - offsets[first], rng, k, keep)
        return
    for lo, hi, index in copy_runs(offsets, mult, max_records, max_bytes):
        yield scatter_piece(piece, offsets, rng, k, keep, index, None if strata is None else (strata[0], strata[1][lo:hi]))


def copy_runs(offsets: np.ndarray, mult: np.ndarray, max_records: int, max_bytes: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """The copies ``mult`` lists (record ``i``'s ``mult[i]`` before record ``i + 1``'s) in runs
    ``[lo, hi)`` of at most ``max_records`` copies and, unless one copy is longer, ``max_bytes``
    bytes, each with its index of records. Each index is made as its run is taken: the index of
    every copy is never held (one record copied 20 million times held ~500 MB of it)."""
    sizes = np.diff(offsets).astype(np.int64)
    mult = mult.astype(np.int64, copy=False)
    copies, nbytes = np.cumsum(mult), np.cumsum(mult * sizes)  # up to and including each record
    total = int(copies[-1]) if len(mult) else 0
    cuts = set(range(0, total, max_records))
    if max_bytes and total and int(nbytes[-1]) > max_bytes:
        at = np.arange(max_bytes, int(nbytes[-1]), max_bytes, dtype=np.int64)  # a run ends after the last copy ending by each
        r = np.searchsorted(nbytes, at, side="right")  # the record whose copies cross it
        before = np.where(r > 0, copies[np.maximum(r - 1, 0)], 0)
        bytes_before = np.where(r > 0, nbytes[np.maximum(r - 1, 0)], 0)
        cuts.update((before + (at - bytes_before) // sizes[np.minimum(r, len(sizes) - 1)]).tolist())
    bounds = sorted(c for c in cuts if 0 <= c < total) + [total]
    dtype = np.int32 if len(mult) < 1 << 31 else np.int64
    for lo, hi in zip(bounds, bounds[1:]):
        if hi > lo:
            first, last = np.searchsorted(copies, [lo, hi - 1], side="right").tolist()
            ends = copies[first : last + 1]
            held = np.minimum(ends, hi) - np.maximum(ends - mult[first : last + 1], lo)  # each record's copies in the run
            yield lo, hi, np.repeat(np.arange(first, last + 1, dtype=dtype), held)


def scatter_piece(
    piece: np.ndarray, offsets: np.ndarray, rng: np.random.Generator, k: int, keep: int, index: np.ndarray | None = None,
    strata: tuple[np.ndarray, np.ndarray] | None = None,
) -> Scattered:
    """Draw an i.i.d. uniform bucket in ``[0, k)`` for every record (every entry of ``index``,
    when given) and regroup the piece by bucket.

    Only buckets ``< keep`` are gathered (``-n`` drops buckets past the ones it needs).
    Within a bucket records keep their input order; pass 2 shuffles them. With ``strata`` (the
    splits' bucket bounds and each record's split) a record's bucket is uniform over its split's.
    """
    if strata is not None:
        return regroup(piece, offsets, split_ids(rng, strata[0], strata[1], k), k, keep, index)
    return regroup(piece, offsets, draw_ids(rng, k, len(offsets) - 1 if index is None else len(index)), k, keep, index)


def regroup(
    piece: np.ndarray, offsets: np.ndarray, ids: np.ndarray, k: int, keep: int, index: np.ndarray | None = None
) -> Scattered:
    """The records of ``piece`` (its records ``index[i]``, when given) regrouped by bucket ``ids[i]``
    (``k`` or more: dropped), of the first ``keep`` buckets only."""
    counts = np.bincount(ids, minlength=k)
    counts[keep:] = 0
    order = np.argsort(ids, kind="stable")
    if index is not None:
        order = index[order]
    del ids
    kept = int(counts.sum())
    if offsets.dtype != np.int32 and len(piece) <= INT32_LIMIT:
        offsets = offsets.astype(np.int32)
    data, byte_ends = gather_records(piece, offsets, order[:kept])
    rec_bounds = np.zeros(k + 1, np.int64)
    np.cumsum(counts[:k], out=rec_bounds[1:])
    return Scattered(data[: int(byte_ends[-1])].data, byte_ends[rec_bounds].astype(np.int64), counts[:k])
