"""A lone plain input file's blocks as windows of one read-only mapping, cut where a read buffer
of the same capacity would cut them, so no byte is copied out of the page cache to be scattered.

Reading a block costs the kernel a copy of every byte into the buffer (a quarter of an external
run's CPU on 1 GiB of JSONL, benchmarks/README.md); a window of a mapping costs page-table entries
only. Each window's entries are dropped once the next block is asked for, so the pages mapped at
once stay within one block, as the buffer's did.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Generator

import numpy as np

from ..core.records import count_separators
from ..errors import InputError
from .sources import FileSource

PAGE = mmap.PAGESIZE


def mappable(source: FileSource) -> int | None:
    """The size of ``source`` if it is a plain (uncompressed) regular file that is not empty, else None."""
    if source.path == "-":
        return None
    size = source.size()
    return size if size else None


def mapped_blocks(
    source: FileSource, size: int, capacity: int, sep: int, limit_flag: str, report: Callable[[int], None],
    counts: list[int] | None = None,
) -> Generator[tuple[np.ndarray, bool], None, None]:
    """Yield ``(block, final)`` as ``RecordReader.blocks(capacity)`` would for this one file:
    while ``capacity`` bytes or more are left, the block up to the last separator among them;
    then the rest, with a separator added if the file lacks its last one (that block is a copy).
    ``report`` is told each block's bytes as read from the file; ``counts`` (separators, bytes), if
    given, holds at each block what a read buffer would have read by then (``--resume`` checkpoints
    keep it). A block is only valid until the next one is requested."""
    try:
        f = open(source.path, "rb")
    except OSError as e:
        raise InputError(f"{source.name}: {e.strerror}") from None
    with f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except OSError as e:
            raise InputError(f"{source.name}: {e.strerror}") from None
        data = np.frombuffer(mapped, np.uint8)
        try:
            yield from _windows(source, f.fileno(), mapped, data, (size, capacity, sep), limit_flag, report, counts)
        finally:
            del data
            _close(mapped)


def _windows(
    source: FileSource, fd: int, mapped: mmap.mmap, data: np.ndarray, cut_by: tuple[int, int, int], limit_flag: str,
    report: Callable[[int], None], counts: list[int] | None,
) -> Generator[tuple[np.ndarray, bool], None, None]:
    """The blocks of ``mapped_blocks`` (``cut_by``: the file's size, the capacity, the separator).
    The file's size is checked before each block is touched: a mapping's pages past a shortened
    file's end fault (SIGBUS) where a read would end early."""
    size, capacity, sep = cut_by
    pos = counted = 0

    def count(upto: np.ndarray) -> None:
        nonlocal counted
        if counts is not None:
            counts[0] += count_separators(upto, sep)
            counts[1] += len(upto)
        counted += len(upto)

    while True:
        now = os.fstat(fd).st_size
        if now != size or len(mapped) != size:
            _changed(source, size, now)
        if size - pos < capacity:
            break
        cut = mapped.rfind(bytes([sep]), pos, pos + capacity) + 1
        if not cut:
            raise InputError(
                f"{source.name}: a record is longer than {capacity} bytes, the most this memory "
                f"limit allows; raise {limit_flag}"
            )
        report(cut - pos)
        count(data[counted : pos + capacity])  # a full buffer: read up to here
        yield data[pos:cut], False
        _drop(mapped, pos, cut)
        pos = cut
    report(size - pos)
    if data[-1] == sep:
        last = data[pos:]
    else:
        last = np.empty(size - pos + 1, np.uint8)
        last[:-1] = data[pos:]
        last[-1] = sep
    count(last[counted - pos :])
    yield last, True


def _drop(mapped: mmap.mmap, lo: int, hi: int) -> None:
    """Unmap the pages of a consumed block ``[lo, hi)`` but the one it shares with the next (the
    page cache keeps them all): they no longer count in the process's memory."""
    start, end = lo // PAGE * PAGE, hi // PAGE * PAGE
    if end > start:
        mapped.madvise(mmap.MADV_DONTNEED, start, end - start)


def _close(mapped: mmap.mmap) -> None:
    """Unmap now unless a block is still referred to (then it goes with the last reference)."""
    try:
        mapped.close()
    except BufferError:
        pass


def _changed(source: FileSource, was: int, now: int) -> None:
    """Refuse an input whose size changed since it was sized, as a read-through check would."""
    raise InputError(f"{source.name}: file changed while being read (size {was} bytes when opened, {now} now, {was} read)")
