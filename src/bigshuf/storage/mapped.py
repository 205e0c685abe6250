"""Plain input files' blocks as windows of read-only mappings, cut where a read buffer of the same
capacity would cut them, so no byte is copied out of the page cache to be scattered.

Reading a block costs the kernel a copy of every byte into the buffer (a quarter of an external
run's CPU on 1 GiB of JSONL, benchmarks/README.md); a window of a mapping costs page-table entries
only. A block that spans two files, or ends with the separator a file lacked, is a copy. A
consumed window's entries are dropped when the next block is asked for, so the pages mapped at
once stay within about one block, as the buffer's did.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from ..core.records import count_separators
from ..errors import InputError
from .sources import FileSource

PAGE = mmap.PAGESIZE

Blocks = Generator[tuple[np.ndarray, bool], None, None]


def mappable(source: FileSource) -> int | None:
    """The size of ``source`` if it is a plain (uncompressed) regular file, else None."""
    return None if source.path == "-" else source.size()


@dataclass
class _Span:
    """Bytes ``[lo, hi)`` of one file's mapping (``mapped`` None: the separator a file lacked)."""

    data: np.ndarray
    lo: int
    hi: int
    mapped: mmap.mmap | None = None


class MappedBlocks:
    """The blocks ``RecordReader.blocks(capacity)`` reads from plain files, as mapped windows.

    The reader's buffer is cut whenever it is full (``capacity`` bytes), after its last separator;
    a file that does not end with the separator gets one; the last block is what is left. Here
    the buffer is a list of spans of the files' mappings, and only a block made of two or more
    spans is copied. ``runs`` and ``counts`` follow the reader's ``block_runs`` and ``per_input``.
    """

    def __init__(self, sources: list[FileSource], capacity: int, sep: int, limit_flag: str, report: Callable[[int], None]) -> None:
        self.sources, self.capacity, self.sep, self.limit_flag, self.report = sources, capacity, sep, limit_flag, report
        self.spans: list[_Span] = []
        self.filled = 0
        self.runs: list[tuple[int, int]] = []  # (input, offset in the buffer) of each input starting in it
        self.block_runs: list[tuple[int, int]] = []
        self.counts: list[list[int]] | None = None  # per input (separators, bytes), when asked for

    def blocks(self) -> Blocks:
        """Yield ``(block, final)``; a block is only valid until the next one is asked for."""
        for index, source in enumerate(self.sources):
            if self.runs and self.runs[-1][1] == self.filled:
                self.runs.pop()  # the input before held nothing past this point
            self.runs.append((index, self.filled))
            if self.counts is not None:
                self.counts.append([0, 0])
            yield from self._read(source)
        self.block_runs = [run for run in self.runs if run[1] < self.filled] or self.runs[-1:]
        yield from self._hand_out(self.filled, True)

    def _read(self, source: FileSource) -> Blocks:
        """Add ``source``'s bytes to the buffer, cutting a block each time it is full."""
        size = mappable(source)
        if size is None:
            raise InputError(f"{source.name}: file changed while being read (no longer a plain file)")
        if size == 0:
            if self.filled == self.capacity:
                yield from self._cut(source)
            return
        try:
            with open(source.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except OSError as e:
            raise InputError(f"{source.name}: {e.strerror}") from None
        data = np.frombuffer(mapped, np.uint8)
        pos = 0
        while True:
            if self.filled == self.capacity:
                yield from self._cut(source)
            _check_size(source, mapped, size)  # before a window is touched: past a shortened file's end it faults (SIGBUS)
            if pos == size:
                break
            n = min(self.capacity - self.filled, size - pos)
            self._add(_Span(data, pos, pos + n, mapped))
            pos += n
        if data[-1] != self.sep:  # the buffer has room: a full one was cut above
            self._add(_Span(np.array([self.sep], np.uint8), 0, 1))

    def _add(self, span: _Span) -> None:
        """Append ``span`` to the buffer (to the last span, where it goes on in the same mapping)."""
        last = self.spans[-1] if self.spans else None
        if last is not None and last.mapped is not None and last.mapped is span.mapped and last.hi == span.lo:
            last.hi = span.hi
        else:
            self.spans.append(span)
        self.filled += span.hi - span.lo
        if span.mapped is not None:
            self.report(span.hi - span.lo)  # bytes read from a file (an added separator is not)
        if self.counts is not None:
            self.counts[-1][0] += count_separators(span.data[span.lo : span.hi], self.sep)
            self.counts[-1][1] += span.hi - span.lo

    def _cut(self, source: FileSource) -> Blocks:
        """The full buffer's records up to its last separator, as one block."""
        cut = self._last_end()
        if cut is None:
            raise InputError(
                f"{source.name}: a record is longer than {self.filled} bytes, the most this memory "
                f"limit allows; raise {self.limit_flag}"
            )
        self.block_runs = [run for run in self.runs if run[1] < cut]
        self.runs = [(self.runs[-1][0], 0)]  # what stays in the buffer is the current input's
        yield from self._hand_out(cut, False)

    def _last_end(self) -> int | None:
        """Position just past the buffer's last separator, or None if it holds none."""
        end = self.filled
        for span in reversed(self.spans):
            end -= span.hi - span.lo
            if span.mapped is None:
                return end + span.hi - span.lo  # an added separator
            found = span.mapped.rfind(bytes([self.sep]), span.lo, span.hi)
            if found >= 0:
                return end + found - span.lo + 1
        return None

    def _hand_out(self, n: int, final: bool) -> Blocks:
        """Yield the buffer's first ``n`` bytes as a block (a view when they lie in one span) and drop
        them from it; once the next block is asked for, their mapped pages are unmapped (the page
        cache keeps them) and mappings nothing is left of are closed."""
        first = self.spans[0] if self.spans else None
        if first is not None and first.hi - first.lo >= n:
            block = first.data[first.lo : first.lo + n]
        else:
            block = np.empty(n, np.uint8)
            at = 0
            for span in self.spans:
                part = min(span.hi - span.lo, n - at)
                block[at : at + part] = span.data[span.lo : span.lo + part]
                at += part
                if at == n:
                    break
        used: list[tuple[mmap.mmap, int, int]] = []
        self.filled -= n
        while n:
            span = self.spans[0]
            part = min(span.hi - span.lo, n)
            if span.mapped is not None:
                used.append((span.mapped, span.lo, span.lo + part))
            span.lo += part
            n -= part
            if span.lo == span.hi:
                self.spans.pop(0)
        yield block, final
        del block
        pending = {id(span.mapped) for span in self.spans}
        for mapped, lo, hi in used:
            _drop(mapped, lo, hi)
            if id(mapped) not in pending:
                _close(mapped)


def _check_size(source: FileSource, mapped: mmap.mmap, size: int) -> None:
    """Refuse an input whose size changed since it was mapped, as a read-through check would."""
    now = mapped.size()  # the file's size now (fstat)
    if now != size or len(mapped) != size:
        raise InputError(
            f"{source.name}: file changed while being read (size {size} bytes when opened, {now} now, {size} read)"
        )


def _drop(mapped: mmap.mmap, lo: int, hi: int) -> None:
    """Unmap the pages of consumed bytes ``[lo, hi)`` of a mapping but the one they share with the
    bytes after them: they no longer count in the process's memory."""
    start, end = lo // PAGE * PAGE, hi // PAGE * PAGE
    if end > start:
        mapped.madvise(mmap.MADV_DONTNEED, start, end - start)


def _close(mapped: mmap.mmap) -> None:
    """Unmap a file nothing is left of in the buffer, unless its last block is still referred to
    (it then goes with the last reference)."""
    try:
        mapped.close()
    except BufferError:
        pass
