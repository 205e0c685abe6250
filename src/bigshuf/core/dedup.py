"""Exact dedup (``--unique``): which records of a block are first copies, and hash buckets for the rest.

Records are grouped by a 64-bit hash of their bytes (``fingerprint.record_hashes``) and those
sharing a hash are compared byte for byte, so a hash collision never merges distinct records:
the hash only decides grouping and speed. The shuffle that follows draws its own random
buckets, so the output order never depends on the hash.
"""

from __future__ import annotations

import numpy as np

from . import plan
from .fingerprint import mix, record_hashes
from .records import INT32_LIMIT, array_block, as_binary_array

#: Bytes of bookkeeping per record while a block is deduplicated, at most: its hash, their order,
#: where runs of equal hashes start (8 each), the pairs of equal hashes and their indices (8 x 5
#: when nearly every record is a copy), the lengths (4) and masks.
DEDUP_META = 64

#: Bytes of record pairs gathered at once to be compared (bounds the copies a comparison makes).
#: first_copies over 64 MiB of lines, half of them copies, took 0.23 s with 256 KiB, 1 MiB or 4 MiB
#: and 0.22 s with 16 MiB (second of two alternating runs each, after a warm-up).
COMPARE_BYTES = 4 << 20


def first_copies(block: np.ndarray, offsets: np.ndarray, hashes: np.ndarray | None = None) -> np.ndarray:
    """Indices, ascending, of the records of ``block`` (its ``offsets``) that are the first of
    their bytes in it; ``hashes``: the records' hashes if already computed."""
    n = len(offsets) - 1
    if n < 2:
        return np.arange(max(0, n), dtype=np.int64)
    h = record_hashes(block, offsets) if hashes is None else hashes
    # NumPy's quicksort is 4x as fast as its stable sort on 64-bit keys; which of equal hashes comes
    # first is then the machine's, so each group keeps its smallest index, not its sorted first.
    order = np.argsort(h)
    sorted_h = h[order]
    same = np.flatnonzero(sorted_h[1:] == sorted_h[:-1])
    if not len(same):
        return np.arange(n, dtype=np.int64)
    runs = np.flatnonzero(sorted_h[1:] != sorted_h[:-1])
    del sorted_h
    runs += 1
    keep = np.zeros(n, np.bool_)
    keep[np.minimum.reduceat(order, np.concatenate(([0], runs)))] = True
    del runs
    equal = _records_equal(block, offsets, order[same], order[same + 1])
    unequal = same[~equal]
    if len(unequal):
        # A hash shared by distinct records (about n**2 / 2**65 odds): its groups are settled by bytes.
        _settle_collisions(block, offsets, h[order[unequal]], h, keep)
    kept: np.ndarray = np.flatnonzero(keep)
    return kept


def _records_equal(block: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether record ``a[i]`` has the same bytes as record ``b[i]``, for every i (exact)."""
    import pyarrow.compute as pc

    lengths = np.diff(offsets)
    equal: np.ndarray = lengths[a] == lengths[b]
    candidates = np.flatnonzero(equal)
    if not len(candidates):
        return equal
    arr = as_binary_array(block, offsets)
    ends = np.cumsum(lengths[a[candidates]])
    lo = 0
    while lo < len(candidates):
        hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + COMPARE_BYTES, side="right")))
        batch = candidates[lo:hi]
        same = pc.equal(pc.take(arr, a[batch]), pc.take(arr, b[batch]))
        equal[batch] = same.to_numpy(zero_copy_only=False)
        lo = hi
    return equal


def _settle_collisions(block: np.ndarray, offsets: np.ndarray, shared: np.ndarray, h: np.ndarray, keep: np.ndarray) -> None:
    """Mark in ``keep`` the first copy of each distinct record among those whose hash is in ``shared``."""
    for value in np.unique(shared).tolist():
        seen: set[bytes] = set()
        for i in np.flatnonzero(h == np.uint64(value)).tolist():
            data = block[int(offsets[i]) : int(offsets[i + 1])].tobytes()
            keep[i] = data not in seen
            seen.add(data)


def gather(block: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records ``rows`` of ``block`` copied together, in that order, with their offsets."""
    import pyarrow.compute as pc

    if len(rows) == len(offsets) - 1:
        return block[int(offsets[0]) : int(offsets[-1])], offsets - offsets[0]
    if offsets.dtype != np.int32 and int(offsets[-1]) <= INT32_LIMIT:
        offsets = offsets.astype(np.int32)
    taken = pc.take(as_binary_array(block, offsets), rows)
    data, new_offsets = array_block(taken)
    lo = int(new_offsets[0])
    return data[lo : int(new_offsets[-1])], new_offsets - new_offsets[0]


def bucket_ids(hashes: np.ndarray, level: int, k: int) -> np.ndarray:
    """Hash bucket in ``[0, k)`` of each record from its hash, differently at every ``level`` of
    splitting (so that a bucket split again spreads over the next level's buckets)."""
    with np.errstate(over="ignore"):
        salted = mix(hashes ^ mix(np.full(1, level + 1, np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
    dtype = np.uint16 if k < 1 << 16 else np.uint32  # k itself marks a dropped record
    ids: np.ndarray = ((salted >> np.uint64(32)) * np.uint64(k) >> np.uint64(32)).astype(dtype)
    return ids


def dedup_need(nbytes: int, nrecords: int, meta: int = DEDUP_META) -> int:
    """Bytes deduplicating ``nbytes`` (``nrecords``) of records needs: they, their unique copy and
    ``meta`` bytes of bookkeeping a record; -1 if ``nbytes`` is unknown (-1)."""
    return -1 if nbytes < 0 else 2 * nbytes + meta * nrecords


def hash_bucket_count(need: int, limit: int, files: int = 1, held: int = 0) -> int:
    """Hash buckets (of ``files`` files each) for a level whose dedup needs ``need`` bytes in all
    (records, their unique copy and bookkeeping), so that the expected bucket needs a third of the
    read buffer, beside ``held`` bucket files open meanwhile (pass 1's, for a level split while it
    runs); -1 (unknown): as many as pass 1 gives a pipe, whatever the free space (the output
    follows the count)."""
    if need < 0:
        return plan.unsized_buckets(files)
    most = plan.most_buckets(files, held)
    return max(2, min(most, -(-need // max(1, plan.read_capacity(limit) // plan.BUCKET_FRACTION))))


def keeps_hashes(k: int, held: int = 0) -> bool:
    """Whether ``k`` hash buckets can each keep a file of their records' hashes beside them (twice
    the files open, beside ``held`` others): then a bucket read back is not hashed again. Else they
    are hashed again, and the bucket count, so the output, never depends on it."""
    return 2 * k <= plan.most_buckets(1, held)
