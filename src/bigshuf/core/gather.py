"""In-memory shuffling of one block of records: permute, gather and emit the records in chunks.

These are plain functions over a NumPy byte block, its record offsets and a Generator, with
the output handed to an ``emit`` callback as Arrow arrays, so any driver (a file, a bucket,
a thread, a Dask task) can reuse them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

from .records import as_binary_array

#: Receives each chunk of shuffled records as an Arrow binary array.
Emit = Callable[["pa.Array"], None]


def _chunks_by_records(total_records: int, nbytes: int, n: int, chunk_bytes: int) -> int:
    """Records per output chunk so a chunk holds about ``chunk_bytes``."""
    avg = max(1.0, nbytes / max(1, n))
    return max(1, min(total_records, int(chunk_bytes / avg)))


def emit_in_order(arr: pa.Array, order: np.ndarray, emit: Emit, per_chunk: int) -> None:
    """Gather ``arr[order]`` a chunk at a time and emit each chunk of records."""
    import pyarrow.compute as pc

    for lo in range(0, len(order), per_chunk):
        emit(pc.take(arr, order[lo : lo + per_chunk]))


def permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of ``range(n)``, int32 when it fits (half the memory of int64)."""
    order = np.arange(n, dtype=np.int32 if n < 1 << 31 else np.int64)
    rng.shuffle(order)
    return order


def shuffle_block(
    block: np.ndarray,
    offsets: np.ndarray,
    rng: np.random.Generator,
    emit: Emit,
    *,
    head: int | None = None,
    chunk_bytes: int,
) -> int:
    """Emit the records of ``block`` in uniformly random order, at most ``head`` of them.

    Returns the number of records emitted. The gather runs a chunk of the permutation at a
    time so the output buffers stay small and are reused by Arrow's allocator. (A two-level
    gather through cache-sized random sub-buckets measured no faster: 2.7 s against 2.6 s
    for 1 GiB of ~60-byte records, so the plain permutation stays.)
    """
    n = len(offsets) - 1
    m = n if head is None else min(head, n)
    if m == 0:
        return 0
    arr = as_binary_array(block, offsets)
    per_chunk = _chunks_by_records(m, int(offsets[-1]), n, chunk_bytes)
    if m < n // 2:
        # A uniform m-permutation without permuting everything (Floyd / tail shuffle).
        order = rng.choice(n, size=m, replace=False, shuffle=True)
    else:
        order = permutation(n, rng)[:m]
    emit_in_order(arr, order, emit, per_chunk)
    return m


def sample_with_replacement(
    block: np.ndarray,
    offsets: np.ndarray,
    rng: np.random.Generator,
    emit: Emit,
    *,
    count: int | None,
    chunk_bytes: int,
) -> None:
    """Emit ``count`` records drawn independently and uniformly (forever if None)."""
    n = len(offsets) - 1
    arr = as_binary_array(block, offsets)
    per_chunk = _chunks_by_records(count or (1 << 62), int(offsets[-1]), n, chunk_bytes)
    left = count
    while left is None or left > 0:
        size = per_chunk if left is None else min(per_chunk, left)
        emit_in_order(arr, rng.integers(0, n, size), emit, size)
        if left is not None:
            left -= size
