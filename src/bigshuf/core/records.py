"""Finding records in a block of bytes, gathering them in a new order and viewing them as an Arrow
array: vectorised, or compiled (``_records``) where it was built."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from .parallel import Workers

native: ModuleType | None
try:
    from .. import _records as native
except ImportError:  # built without a C compiler: NumPy finds and Arrow gathers the same records
    native = None

# Boundaries are searched in 1 MiB slices so the temporary mask and hit list stay small
# (at most 1 MiB and 8 MiB) even for a block of empty records, at no measurable cost: over
# 1 GiB of ~60-byte records, 0.43-0.75 s with 1 MiB slices and 0.61 s with 16 MiB ones
# (four alternating runs of find_offsets on a mapped file).
FIND_SLICE = 1 << 20

#: Offsets fit in int32 (Arrow ``binary``) below this many bytes, else int64 (``large_binary``).
INT32_LIMIT = (1 << 31) - 1


@dataclass(frozen=True)
class RecordFormat:
    """What ends a record: a separator byte (newline, or NUL for ``-z``), ``group`` times in a row
    (``--lines-per-record``, e.g. 4 for FASTQ)."""

    sep: int = 10
    group: int = 1


def find_offsets(block: np.ndarray, fmt: RecordFormat, max_records: int | None = None) -> np.ndarray:
    """Arrow offsets of the records of ``block`` (uint8): ``[0, end_1, ..., end_n]``.

    Record ``i`` spans ``[offsets[i], offsets[i+1])``, separator included; bytes after the
    last complete record belong to none. ``block`` must start at a record boundary. With
    ``max_records`` the search stops after that many records, so a block of tiny records
    cannot make the offsets outgrow the limit. The offsets are int32 when the block allows,
    halving their memory, else int64.
    """
    dtype = np.int32 if len(block) <= INT32_LIMIT else np.int64
    cap = len(block) if max_records is None else max_records
    parts = [np.zeros(1, dtype)]
    found = seen = 0
    scratch: np.ndarray = np.empty(min(FIND_SLICE, len(block)), np.int64 if native else np.bool_)
    lo, step = 0, 1 << 16
    while lo < len(block) and found < cap:
        # Slices grow to FIND_SLICE, so a search capped at a few records scans little.
        part = block[lo : lo + step]
        hits = _ends(part, fmt.sep, lo + 1, scratch)
        if fmt.group > 1:
            seen += len(hits)
            hits = hits[(fmt.group - 1 - (seen - len(hits))) % fmt.group :: fmt.group]
        if len(hits):
            hits = hits[: cap - found]
            parts.append(hits.astype(dtype))  # a copy: ``hits`` may be a view of the reused scratch
            found += len(hits)
        lo += step
        step = min(FIND_SLICE, 2 * step)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _ends(part: np.ndarray, sep: int, add: int, scratch: np.ndarray) -> np.ndarray:
    """Where ``part``'s bytes ``sep`` are, plus ``add`` (``scratch``: ``len(part)`` entries to work in)."""
    if native is not None:
        return scratch[: native.find_ends(part, sep, add, scratch)]
    hits = np.flatnonzero(np.equal(part, sep, out=scratch[: len(part)]))
    hits += add
    return hits


#: Smallest share of a block one worker searches for record ends.
SPLIT_BYTES = 16 << 20


def searched_whole(nbytes: int, fmt: RecordFormat, workers: Workers) -> bool:
    """Whether ``find_offsets_split`` searches a block of ``nbytes`` on the calling thread alone
    (too small to share, or records of several lines)."""
    return min(workers.n, nbytes // SPLIT_BYTES) < 2 or fmt.group > 1


def find_offsets_split(block: np.ndarray, fmt: RecordFormat, workers: Workers, max_records: int | None = None) -> np.ndarray:
    """``find_offsets`` with the block's byte ranges searched on every worker at once (the ends
    a range holds do not depend on where it starts, as ``find_offsets`` needs, for single lines)."""
    if searched_whole(len(block), fmt, workers):
        return find_offsets(block, fmt, max_records)
    ranges = min(workers.n, len(block) // SPLIT_BYTES)
    dtype = np.int32 if len(block) <= INT32_LIMIT else np.int64
    step = -(-len(block) // ranges)
    cap = None if max_records is None else max_records // ranges + 1

    def ends(r: int) -> np.ndarray:
        """The record ends in range ``r``, as block offsets (at most ``cap``)."""
        lo = r * step
        found: np.ndarray = find_offsets(block[lo : lo + step], RecordFormat(fmt.sep), cap)[1:].astype(dtype, copy=False)
        np.add(found, lo, out=found)
        return found

    parts = workers.map(ends, ranges)
    if cap is not None and any(len(p) == cap for p in parts):
        del parts  # tiny records crowd a range: search the whole block within the one cap
        return find_offsets(block, fmt, max_records)
    return np.concatenate([np.zeros(1, dtype), *parts])


def record_cuts(block: np.ndarray, fmt: RecordFormat, parts: int) -> list[int]:
    """Ends of whole records cutting ``block`` (starting at a record boundary) into about ``parts``
    equal parts: ``[0, ..., len(block)]`` with no repeats, for spreading a block over workers."""
    cuts = [0]
    seen = 0  # separators before cuts[-1]
    for k in range(1, parts):
        aim = len(block) * k // parts
        if aim <= cuts[-1]:  # the last part's record runs past this aim
            continue
        if fmt.group > 1:
            for at in range(cuts[-1], aim, FIND_SLICE):
                seen += count_separators(block[at : min(aim, at + FIND_SLICE)], fmt.sep)
        need = fmt.group - seen % fmt.group  # separators from ``aim`` to the end of the record there
        ends = find_offsets(block[aim:], RecordFormat(fmt.sep), max_records=need)
        if len(ends) <= need:
            break
        cuts.append(aim + int(ends[need]))
        seen += need
    if cuts[-1] < len(block):
        cuts.append(len(block))
    return cuts


def count_separators(data: np.ndarray, sep: int) -> int:
    """How many ``sep`` bytes ``data`` holds (for checking whole record groups)."""
    return int(np.count_nonzero(data == sep))


def as_binary_array(block: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """View ``block`` as an Arrow (large) binary array of its records without copying (offsets from ``find_offsets``)."""
    import pyarrow as pa

    kind = pa.binary() if offsets.dtype == np.int32 else pa.large_binary()
    return pa.Array.from_buffers(
        kind, len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(block)]
    )


def decimal_records(values: np.ndarray, sep: int) -> pa.Array:
    """Unsigned integers written in decimal, each followed by ``sep``, as an Arrow binary array:
    vectorised, where writing each number in Python ran ten times slower than GNU shuf."""
    values = values.astype(np.uint64, copy=False)
    width = len(str(int(values.max()))) if len(values) else 1
    digits = np.empty((len(values), width + 1), np.uint8)
    digits[:, width] = sep
    rest = values.copy()
    for col in range(width - 1, -1, -1):
        digits[:, col] = rest % np.uint64(10) + np.uint64(48)
        rest //= np.uint64(10)
    lengths = np.ones(len(values), np.int64)
    for power in range(1, width):
        lengths += values >= np.uint64(10**power)
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths + 1, out=offsets[1:])
    if offsets[-1] < 2**31:
        offsets = offsets.astype(np.int32)
    # Each row's leading zeros dropped: its last ``length`` digits and the separator, in row order.
    return as_binary_array(digits[np.arange(width + 1) >= (width - lengths)[:, None]], offsets)


class BufferPool:
    """Byte buffers for gathered records, reused: a fresh buffer costs the kernel a fault and the
    zeroing of each huge page it touches (8-12% of the CPU of an external run over 1 GiB). A
    buffer is free again once nothing refers to it: every NumPy view of it refers to it directly
    (NumPy collapses bases to the array owning the memory), and every Arrow buffer or memoryview
    over such a view holds the view, so the writer, the Arrow arrays and the hashing all keep it
    leased until they are done with its bytes. At most ``keep`` buffers are pooled, none larger
    than ``largest`` bytes: one gathered for a record longer than a piece is freed after its use,
    rather than held (resident) for the rest of the run beyond what ``-S`` counts."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.largest: int | None = None
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()

    def lease(self, nbytes: int) -> np.ndarray:
        """``nbytes`` bytes of a pooled buffer nothing refers to, or of a new one."""
        with self._lock:
            for i in range(len(self._buffers)):
                # References: the list's, the call's argument, and none else when it is free.
                if len(self._buffers[i]) >= nbytes and sys.getrefcount(self._buffers[i]) == 2:
                    return self._buffers[i][:nbytes]
            base = np.empty(-(-(nbytes + nbytes // 8) // POOL_ROUND) * POOL_ROUND, np.uint8)
            if self.largest is not None and len(base) > self.largest:
                return base[:nbytes]
            if len(self._buffers) >= self.keep:
                smallest = min(range(len(self._buffers)), key=lambda i: len(self._buffers[i]))
                del self._buffers[smallest]  # freed when its last reader lets go
            self._buffers.append(base)
            return base[:nbytes]

    def clear(self) -> None:
        """Pool nothing any more (a run ended): buffers still in use are freed when their readers let go."""
        with self._lock:
            self._buffers.clear()
            self.largest = None

    def hold_at_most(self, piece: int) -> None:
        """Pool buffers of pieces of about ``piece`` bytes (a run's), none for records longer than that."""
        self.largest = 2 * piece + POOL_ROUND


#: Gathers of at least this many bytes take their buffer from ``GATHERED`` (smaller ones are cheap to allocate).
POOL_MIN = 1 << 20

#: Pooled buffers are sized in multiples of this, with an eighth to spare, so pieces of about one size share them.
POOL_ROUND = 1 << 20

#: The buffers of gathered pieces: as many as are in flight at once (two workers gathering, two
#: pieces queued for the writer) stay for the next pieces.
GATHERED = BufferPool(keep=4)


def gather_records(block: np.ndarray, offsets: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records ``index`` lists, in that order: their bytes in a new block, and its offsets
    (of ``offsets``' type, as Arrow's ``take`` gives, or int64 past 2 GiB), compiled where built,
    else with Arrow."""
    if native is None:
        return array_block(take_records(block, offsets, index))
    starts = np.empty(len(index), np.int64)
    for dtype in (np.int32, np.int64) if offsets.dtype == np.int32 else (np.int64,):
        ends = np.empty(len(index) + 1, dtype)
        try:
            total = native.plan_gather(block, offsets, index, ends, starts)
        except OverflowError:  # copies of records (weighted sources, --repeat) past 2 GiB
            continue
        data = GATHERED.lease(total) if total >= POOL_MIN else np.empty(total, np.uint8)
        native.copy_gather(block, starts, ends, data)
        return data, ends
    raise AssertionError("unreachable")


def take_records(block: np.ndarray, offsets: np.ndarray, index: np.ndarray) -> pa.Array:
    """The records ``index`` lists, in that order, as an Arrow binary array (``pyarrow.compute.take``'s result)."""
    if native is not None:
        data, ends = gather_records(block, offsets, index)
        return as_binary_array(data, ends)
    import pyarrow.compute as pc

    taken: pa.Array = pc.take(as_binary_array(block, offsets), index)
    return taken


def array_block(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A binary (or string) array's records as ``(block, offsets)`` for ``find_offsets``-style consumers, no copy."""
    import pyarrow as pa

    otype = np.dtype(np.int32 if arr.type in (pa.binary(), pa.string()) else np.int64)
    offsets = np.frombuffer(arr.buffers()[1], otype, len(arr) + 1, arr.offset * otype.itemsize)
    data = arr.buffers()[2]
    block = np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)
    return block, offsets


def array_bytes(arr: pa.Array) -> memoryview:
    """The contiguous bytes of all records of a binary array, in order, without copying."""
    block, offsets = array_block(arr)
    return block[int(offsets[0]) : int(offsets[-1])].data


def list_spans(arr: Any) -> tuple[np.ndarray, Any]:
    """A list-like array's (list, large list, fixed-size list, map) element offsets, rebased to
    start at 0, and the slice of its values they index: the elements of exactly these rows."""
    import pyarrow as pa

    n = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        offsets = (np.arange(n + 1, dtype=np.int64) + arr.offset) * arr.type.list_size
    else:
        offsets = np.asarray(arr.offsets, np.int64)
    lo, hi = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    return offsets - lo, arr.values.slice(lo, hi - lo)


def union_spans(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """A union array's child (by position, not type code) for each row, and where in that child
    (``arr.field(c)``) its value is. Read from the buffers: pyarrow's ``type_codes`` and ``offsets``
    ignore a slice's offset."""
    t = arr.type
    n, at = len(arr), arr.offset
    buffers = arr.buffers()
    codes = np.frombuffer(buffers[1], np.int8)[at : at + n] if n else np.empty(0, np.int8)
    child_of = np.zeros(128, np.int64)
    child_of[t.type_codes] = np.arange(t.num_fields)
    if t.mode == "sparse":  # each child has a slot for every row; ``field`` slices it to the rows
        return child_of[codes], np.arange(n, dtype=np.int64)
    offsets = np.frombuffer(buffers[2], np.int32)[at : at + n] if n else np.empty(0, np.int32)
    return child_of[codes], offsets.astype(np.int64)

