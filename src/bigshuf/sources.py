"""Inputs: files, stdin and generated lines, read as blocks of whole records into one reused buffer."""

from __future__ import annotations

import io
import mmap
import os
import stat
import sys
from collections.abc import Generator, Iterator, Sequence
from typing import BinaryIO, Protocol

import numpy as np

from .errors import InputError
from .progress import Progress


class Source(Protocol):
    """One input: a name for messages, a size if known, and a binary stream."""

    name: str

    def size(self) -> int | None:
        """Bytes it holds, or None when only reading it tells (pipes, stdin)."""

    def open(self) -> BinaryIO:
        """A binary stream supporting ``readinto``."""


class FileSource:
    """A file on disk, or ``-`` for standard input."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.name = self.path

    def size(self) -> int | None:
        if self.path == "-":
            return None
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise InputError(f"{self.name}: {e.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{self.name}: read error: Is a directory")
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def open(self) -> BinaryIO:
        if self.path == "-":
            return open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
        try:
            return open(self.path, "rb", buffering=0)
        except OSError as e:
            raise InputError(f"{self.name}: {e.strerror}") from None


class BytesSource:
    """Records already in memory, e.g. the operands of ``-e``."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def size(self) -> int | None:
        return len(self.data)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


class _RangeStream(io.RawIOBase):
    """The decimal numbers lo..hi, one per record, produced a chunk at a time."""

    CHUNK = 1 << 16

    def __init__(self, lo: int, hi: int, sep: bytes) -> None:
        self.next, self.hi, self.sep = lo, hi, sep
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        if not self.pending:
            if self.next > self.hi:
                return 0
            stop = min(self.hi + 1, self.next + self.CHUNK)
            text = self.sep.join(b"%d" % i for i in range(self.next, stop)) + self.sep
            self.pending, self.next = memoryview(text), stop
        n = min(len(b), len(self.pending))
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


class RangeSource:
    """The integers ``lo..hi`` as decimal records (``-i LO-HI``), generated, never stored."""

    def __init__(self, lo: int, hi: int, sep: bytes) -> None:
        self.lo, self.hi, self.sep = lo, hi, sep
        self.name = f"{lo}-{hi}"

    def size(self) -> int | None:
        return None

    def open(self) -> BinaryIO:
        return io.BufferedReader(_RangeStream(self.lo, self.hi, self.sep), 1 << 16)  # type: ignore[return-value]


def map_whole(sources: Sequence[Source], sep: int) -> np.ndarray | None:
    """Map a lone regular input file that ends with ``sep`` read-only, or return None.

    Mapping page-cache pages costs 0.04 s per GiB here where reading into fresh memory
    cost 0.3-2.7 s (benchmarks/README.md), so the in-memory path maps when it can.
    """
    if len(sources) != 1 or not isinstance(sources[0], FileSource) or sources[0].path == "-":
        return None
    try:
        with open(sources[0].path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                return None
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            mapped = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    except OSError as e:
        raise InputError(f"{sources[0].name}: {e.strerror}") from None
    block = np.frombuffer(mapped, np.uint8)
    return block if block[-1] == sep else None


class RecordReader:
    """Streams the concatenated inputs as blocks of whole records.

    Every input's last record gets a separator if it lacks one, as GNU sort and shuf do,
    so records never run across inputs. A record longer than the buffer is an error.
    """

    #: First size of the read buffer; it doubles up to the capacity the caller allows.
    INITIAL_BUFFER = 64 << 20

    def __init__(self, sources: Sequence[Source], sep: int, progress: Progress) -> None:
        self.sources = list(sources)
        self.sep = sep
        self.progress = progress
        self.bytes_read = 0

    def total_size(self) -> int | None:
        """Bytes of all inputs, or None if any size is unknown (plus one per missing separator)."""
        total = 0
        for s in self.sources:
            size = s.size()
            if size is None:
                return None
            total += size
        return total

    def blocks(self, capacity: int, limit_flag: str) -> Iterator[tuple[np.ndarray, bool]]:
        """Yield ``(block, final)``: views of one reused buffer holding whole records.

        A block is only valid until the next one is requested. ``final`` is True for the
        last block. ``limit_flag`` names the option to raise in the too-long-record error.
        """
        buf = np.empty(min(capacity, self.INITIAL_BUFFER), np.uint8)
        filled = 0
        sep = self.sep
        for source in self.sources:
            stream = source.open()
            try:
                last = -1
                while True:
                    if filled == len(buf):
                        buf, filled = yield from self._make_room(buf, filled, capacity, source.name, limit_flag)
                    try:
                        n = stream.readinto(memoryview(buf)[filled:])
                    except OSError as e:
                        raise InputError(f"{source.name}: read error: {e.strerror}") from None
                    if not n:
                        break
                    filled += n
                    last = int(buf[filled - 1])
                    self.bytes_read += n
                    self.progress.update(n)
            finally:
                stream.close()
            if last not in (-1, sep):
                if filled == len(buf):
                    buf, filled = yield from self._make_room(buf, filled, capacity, source.name, limit_flag)
                buf[filled] = sep
                filled += 1
        yield buf[:filled], True

    def _make_room(
        self, buf: np.ndarray, filled: int, capacity: int, name: str, limit_flag: str
    ) -> Generator[tuple[np.ndarray, bool], None, tuple[np.ndarray, int]]:
        """Free space in a full buffer: grow it towards ``capacity``, else hand out its whole records.

        Growing only as the input turns out to need it means a generous -S on a small pipe
        allocates little. Returns (via ``yield from``) the buffer and its new fill.
        """
        if len(buf) < capacity:
            grown = np.empty(min(capacity, 2 * len(buf)), np.uint8)
            grown[:filled] = buf[:filled]
            return grown, filled
        cut = self._last_end(buf, filled, name, limit_flag)
        yield buf[:cut], False
        buf[: filled - cut] = buf[cut:filled]
        return buf, filled - cut

    def _last_end(self, buf: np.ndarray, filled: int, name: str, limit_flag: str) -> int:
        """Position just past the last separator in ``buf[:filled]``, searched backwards."""
        window = 1 << 16
        while True:
            lo = max(0, filled - window)
            hits = np.flatnonzero(buf[lo:filled] == self.sep)
            if len(hits):
                return lo + int(hits[-1]) + 1
            if lo == 0:
                raise InputError(
                    f"{name}: a record is longer than {filled} bytes, the most this memory "
                    f"limit allows; raise {limit_flag}"
                )
            window *= 4
