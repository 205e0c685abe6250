"""In-memory shuffling of one block of records: permute, gather and emit the records in chunks.

These are plain functions over a NumPy byte block, its record offsets and a named random
stream, with the output handed to an ``emit`` callback as Arrow arrays, so any driver (a file,
a bucket, a Dask task) can reuse them; the work is spread over the run's worker threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

from . import plan, streams
from .parallel import Workers
from .records import take_records
from .streams import Key, rng_for

#: Receives each chunk of shuffled records as an Arrow binary array.
Emit = Callable[["pa.Array"], None]


def records_per_chunk(total_records: int, nbytes: int, n: int, chunk_bytes: int) -> int:
    """Records per output chunk so a chunk holds about ``chunk_bytes``."""
    avg = max(1.0, nbytes / max(1, n))
    return max(1, min(total_records, int(chunk_bytes / avg)))


def emit_in_order(block: np.ndarray, offsets: np.ndarray, order: np.ndarray, emit: Emit, per_chunk: int) -> None:
    """Gather the records ``order`` lists a chunk at a time and emit each chunk of them."""
    for lo in range(0, len(order), per_chunk):
        emit(take_records(block, offsets, order[lo : lo + per_chunk]))


def permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of ``range(n)``, int32 when it fits (half the memory of int64)."""
    order = np.arange(n, dtype=np.int32 if n < 1 << 31 else np.int64)
    rng.shuffle(order)
    return order


#: Records whose parts are drawn from one stream, in a shuffle split into parts (at least).
PART_DRAW = 1 << 20

#: Most streams the parts are drawn from: a part gathers its indices from each one's draws.
MAX_DRAWS = 64

#: Most records in one part of a shuffle split into parts: small enough that permuting a
#: part stays in the CPU's cache (18 M records: 1.6 s permuted whole, 0.7 s as 275 parts).
PART_RECORDS = 1 << 16


def part_count(n: int, nbytes: int, limit: int) -> int:
    """How many parts a shuffle of ``n`` records in ``nbytes`` is split into under memory ``limit``:
    each holds at most about ``PART_RECORDS`` records and a piece's records and bytes (1: not split)."""
    most = min(PART_RECORDS, plan.piece_records(limit))
    return max(1, -(-n // most), -(-nbytes // plan.piece_bytes(limit)))


def shuffle_block(
    block: np.ndarray,
    offsets: np.ndarray,
    entropy: int,
    key: Key,
    emit: Emit,
    workers: Workers,
    *,
    head: int | None = None,
    limit: int,
    held: int,
    index: np.ndarray | None = None,
) -> int:
    """Emit the records of ``block`` in uniformly random order (stream ``key``), at most ``head``
    of them; return how many were emitted. ``limit`` is the run's memory limit, of which the
    block, its offsets and its buffer hold ``held``: the parts gathered at once take the rest.
    With ``index`` the records shuffled are those it lists (weighted sources: copies included).

    A block of more than one part's records is shuffled as the external path does, in memory:
    every record draws a part uniformly and independently, each part is permuted on its own,
    and the parts follow one another. That is exact (a sort by i.i.d. uniform keys whose leading
    digit is the part), and the parts are permuted and gathered on every worker at once.
    """
    n = len(offsets) - 1 if index is None else len(index)
    m = n if head is None else min(head, n)
    if m == 0:
        return 0
    nbytes = int(offsets[-1]) if index is None else int(np.diff(offsets)[index].sum())
    parts = part_count(n, nbytes, limit)
    workers = workers.sized(len(block))
    if parts == 1:
        order = one_part_order(n, m, rng_for(entropy, key))
        emit_in_order(block, offsets, order if index is None else index[order], emit, m)
        return m
    draw = max(PART_DRAW, -(-n // MAX_DRAWS))
    groups = workers.map(lambda c: _draw_parts(entropy, key, c, draw, n, parts), -(-n // draw))
    sizes = np.sum([np.diff(bounds) for _order, bounds in groups], axis=0)
    last = int(np.searchsorted(np.cumsum(sizes), m))  # the part that reaches the count
    wanted = np.minimum(sizes[: last + 1], m - np.concatenate([[0], np.cumsum(sizes[:last])]))

    def gather(b: int) -> pa.Array:
        """Part ``b``'s records, permuted, the first ``wanted[b]`` of them."""
        chosen = np.concatenate([order[bounds[b] : bounds[b + 1]] for order, bounds in groups])
        rng_for(entropy, streams.part(key, b)).shuffle(chosen)
        chosen = chosen[: int(wanted[b])]
        return take_records(block, offsets, chosen if index is None else index[chosen])

    gathers = ((lambda b=b: gather(b)) for b in range(last + 1))
    ahead = plan.parts_ahead(limit, held, longest_beyond(offsets, plan.piece_bytes(limit)))
    for chunk in workers.ordered(gathers, ahead=ahead):
        # In halves: the output's queue holds two pieces' bytes, two parts of just over a piece
        # each do not fit in it together, and its writer would wait for the next to be handed over.
        half = len(chunk) // 2
        if half:
            emit(chunk.slice(0, half))
        emit(chunk.slice(half))
    return m


def longest_beyond(offsets: np.ndarray, piece: int) -> int:
    """The longest record of those ``offsets`` bound, if one is longer than ``piece`` bytes, else 0.
    Spans of records expected to hold half a piece are measured first, and only those longer than a
    piece record by record: a block of short records costs a strided look, not a pass over its offsets."""
    n = len(offsets) - 1
    if n <= 0 or int(offsets[-1] - offsets[0]) <= piece:
        return 0
    stride = max(1, piece // 2 // max(1, int(offsets[-1] - offsets[0]) // n))
    ends = offsets[::stride] if n % stride == 0 else np.append(offsets[::stride], offsets[-1])
    longest = 0
    for w in np.flatnonzero(np.diff(ends) > piece):
        lo = int(w) * stride
        longest = max(longest, int(np.diff(offsets[lo : min(n, lo + stride) + 1]).max()))
    return longest if longest > piece else 0


def in_one_part(n: int, nbytes: int, limit: int) -> bool:
    """Whether ``shuffle_block`` shuffles ``n`` records in ``nbytes`` in one part (one draw, one gather)."""
    return part_count(n, nbytes, limit) == 1


def one_part_order(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """The first ``m`` records of a uniformly random order of ``range(n)``: a shuffle in one part."""
    if m < n // 2:
        # A uniform m-permutation without permuting everything (Floyd / tail shuffle).
        order: np.ndarray = rng.choice(n, size=m, replace=False, shuffle=True)
        return order
    return permutation(n, rng)[:m]


def shuffled_in_one_part(block: np.ndarray, offsets: np.ndarray, entropy: int, key: Key, head: int | None) -> tuple[pa.Array | None, int]:
    """What ``shuffle_block`` emits for a block shuffled in one part (``in_one_part``), as one
    gathered chunk (None: no record) and its record count: for a job that shuffles a whole
    small block on a worker while the caller emits the one before."""
    n = len(offsets) - 1
    m = n if head is None else min(head, n)
    if m == 0:
        return None, 0
    return take_records(block, offsets, one_part_order(n, m, rng_for(entropy, key))), m


def _draw_parts(entropy: int, key: Key, c: int, draw: int, n: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """Records ``c * draw`` onwards (``draw`` of them, or to ``n``) grouped by the part each
    draws: their indices, part by part in input order, and where each part starts."""
    lo = c * draw
    count = min(n, lo + draw) - lo
    ids = streams.draw_ids(rng_for(entropy, streams.part_draws(key, c)), parts, count)
    order: np.ndarray = np.argsort(ids, kind="stable").astype(np.int32 if n < 1 << 31 else np.int64)
    np.add(order, lo, out=order)
    bounds = np.zeros(parts + 1, np.int64)
    np.cumsum(np.bincount(ids, minlength=parts), out=bounds[1:])
    return order, bounds


def sample_with_replacement(
    block: np.ndarray,
    offsets: np.ndarray,
    rng: np.random.Generator,
    emit: Emit,
    workers: Workers,
    *,
    count: int | None,
    limit: int,
    held: int,
) -> None:
    """Emit ``count`` records drawn independently and uniformly (forever if None); the draws are
    made in order here, the records gathered on the workers (``limit`` and ``held`` as for
    ``shuffle_block``)."""
    n = len(offsets) - 1
    per_chunk = records_per_chunk(count or (1 << 62), int(offsets[-1]), n, plan.piece_bytes(limit))
    workers = workers.sized(plan.piece_bytes(limit) if count is None else count * int(offsets[-1]) // max(1, n))

    def draws() -> Iterator[np.ndarray]:
        """The indices of each chunk, drawn one chunk after another."""
        left = count
        while left is None or left > 0:
            size = per_chunk if left is None else min(per_chunk, left)
            yield rng.integers(0, n, size)
            if left is not None:
                left -= size

    gathers = ((lambda index=index: take_records(block, offsets, index)) for index in draws())
    ahead = plan.parts_ahead(limit, held, longest_beyond(offsets, plan.piece_bytes(limit)))
    for chunk in workers.ordered(gathers, ahead=ahead):
        emit(chunk)
