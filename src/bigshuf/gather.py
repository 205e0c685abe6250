"""In-memory shuffling of one block of records: permute, gather and emit the bytes in chunks.

These are plain functions over a NumPy byte block, its record ends and a Generator, with
the output handed to an ``emit`` callback, so any driver (a file, a bucket, a thread, a
Dask task) can reuse them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .records import array_bytes, as_binary_array, offsets_for

Emit = Callable[[memoryview], None]

# Random gathers of short records miss the CPU cache on every record: pyarrow's take ran
# at 242 MB/s over a 256 MiB block of ~60-byte records, but at 889 MB/s when the order is
# grouped by random sub-bucket (then in-cache permutation of each ~1 MiB sub-bucket).
# Measured with /tmp-built blocks in benchmarks/micro_gather.py; SUB_BUCKET picks the size.
SUB_BUCKET = 1 << 20

#: Records at least this short on average go through the two-level (sub-bucket) gather.
TWO_LEVEL_MAX_RECORD = 512


def _chunks_by_records(total_records: int, nbytes: int, n: int, chunk_bytes: int) -> int:
    """Records per output chunk so a chunk holds about ``chunk_bytes``."""
    avg = max(1.0, nbytes / max(1, n))
    return max(1, min(total_records, int(chunk_bytes / avg)))


def emit_in_order(arr, order: np.ndarray, emit: Emit, per_chunk: int) -> None:
    """Gather ``arr[order]`` a chunk at a time and emit each chunk's bytes."""
    import pyarrow.compute as pc

    for lo in range(0, len(order), per_chunk):
        emit(array_bytes(pc.take(arr, order[lo : lo + per_chunk])))


def shuffle_block(
    block: np.ndarray,
    ends: np.ndarray,
    rng: np.random.Generator,
    emit: Emit,
    *,
    head: int | None = None,
    chunk_bytes: int,
) -> int:
    """Emit the records of ``block`` in uniformly random order; at most ``head`` of them.

    Returns the number of records emitted. Short records take a two-level path: an
    i.i.d. uniform sub-bucket per record, then a uniform permutation inside each sub-bucket,
    which is an exactly uniform permutation overall (the two-pass scatter, in cache).
    """
    n = len(ends)
    m = n if head is None else min(head, n)
    if m == 0:
        return 0
    arr = as_binary_array(block, offsets_for(ends, len(block)))
    nbytes = int(ends[-1])
    per_chunk = _chunks_by_records(m, nbytes, n, chunk_bytes)
    if m < n // 2:
        # A uniform m-permutation without permuting everything (Floyd / tail shuffle).
        emit_in_order(arr, rng.choice(n, size=m, replace=False, shuffle=True), emit, per_chunk)
        return m
    subs = nbytes // SUB_BUCKET
    if subs < 2 or nbytes > n * TWO_LEVEL_MAX_RECORD:
        emit_in_order(arr, rng.permutation(n)[:m], emit, per_chunk)
        return m
    _two_level(arr, n, m, subs, rng, emit, per_chunk)
    return m


def _two_level(arr, n: int, m: int, subs: int, rng: np.random.Generator, emit: Emit, per_chunk: int) -> None:
    """Uniform permutation as random sub-buckets (cache-sized) each permuted in turn."""
    import pyarrow.compute as pc

    dtype = np.uint16 if subs <= 1 << 16 else np.uint32
    ids = rng.integers(0, subs, n, dtype=dtype)
    counts = np.bincount(ids, minlength=subs)
    order = np.argsort(ids, kind="stable")
    del ids
    bounds = np.zeros(subs + 1, np.int64)
    np.cumsum(counts, out=bounds[1:])
    done = 0
    first = 0
    while first < subs and done < m:
        # A group of whole sub-buckets holding about one chunk of records.
        last = int(np.searchsorted(bounds, bounds[first] + per_chunk, side="right")) - 1
        last = min(max(last, first + 1), subs)
        lo, hi = int(bounds[first]), int(bounds[last])
        group = pc.take(arr, order[lo:hi])
        local = np.empty(hi - lo, np.int64)
        for s in range(first, last):
            a, b = int(bounds[s]) - lo, int(bounds[s + 1]) - lo
            local[a:b] = rng.permutation(b - a)
            local[a:b] += a
        take = min(hi - lo, m - done)
        emit(array_bytes(pc.take(group, local[:take])))
        done += take
        first = last


def sample_with_replacement(
    block: np.ndarray,
    ends: np.ndarray,
    rng: np.random.Generator,
    emit: Emit,
    *,
    count: int | None,
    chunk_bytes: int,
) -> None:
    """Emit ``count`` records drawn independently and uniformly (forever if None)."""
    n = len(ends)
    arr = as_binary_array(block, offsets_for(ends, len(block)))
    per_chunk = _chunks_by_records(count or (1 << 62), int(ends[-1]), n, chunk_bytes)
    left = count
    while left is None or left > 0:
        size = per_chunk if left is None else min(per_chunk, left)
        emit_in_order(arr, rng.integers(0, n, size), emit, size)
        if left is not None:
            left -= size
