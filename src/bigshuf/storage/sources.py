"""Inputs: files, stdin and generated lines, read as blocks of whole records into one reused buffer."""

from __future__ import annotations

import io
import mmap
import os
import stat
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import BinaryIO, NoReturn, Protocol

import numpy as np

from ..errors import InputError, option
from .codecs import Replay
from ..progress import Progress
from ..core.records import RecordFormat, count_separators


class Source(Protocol):
    """One input: a name for messages, a size if known, and a binary stream."""

    name: str

    def size(self) -> int | None:
        """Bytes it holds, or None when only reading it tells (pipes, stdin)."""

    def open(self) -> BinaryIO:
        """A binary stream supporting ``readinto``."""


class FileSource:
    """A file on disk, or ``-`` for standard input; gzip, zstd, bzip2 and xz are decompressed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.name = self.path
        self._raw: BinaryIO | None = None
        self._size_at_open: int | None = None

    def disk_size(self) -> int | None:
        """Bytes on disk of a regular file (compressed or not), else None."""
        if self.path == "-":
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def check_unchanged(self) -> None:
        """After reading to the end: a regular file must still have the size it had when opened
        and have been read to exactly that size, or the records read are not the file's."""
        if self._raw is None or self._size_at_open is None:
            return
        try:
            # Standard input has no name to stat: ask its descriptor (``bigshuf < file``).
            now = os.fstat(0).st_size if self.path == "-" else os.stat(self.path).st_size
        except OSError:
            now = -1
        read = self.position()
        if now == self._size_at_open == 0:
            return  # empty, or a /proc or /sys file, whose size is always 0 whatever it holds
        if now != self._size_at_open or read != self._size_at_open:
            raise InputError(
                f"{self.name}: file changed while being read (size {self._size_at_open} bytes when opened, "
                f"{now} now, {read} read)"
            )

    def position(self) -> int:
        """Bytes of the file on disk consumed so far by the open stream (0 if not open)."""
        if self._raw is None or self._raw.closed:
            return 0
        try:
            return self._raw.tell()
        except OSError:
            return 0

    def size(self) -> int | None:
        """The file's size if it is a plain regular file; None for pipes, compressed files and
        files whose size says nothing (0 with data in them)."""
        if self.path == "-":
            return None
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise InputError(f"{self.name}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            return None
        from .codecs import SNIFF_BYTES, detect

        try:
            with open(self.path, "rb") as f:
                head = f.read(SNIFF_BYTES)
        except OSError as e:
            raise InputError(f"{self.name}: {e.strerror}") from None
        # A file of /proc or /sys says it holds 0 bytes and has more: only reading it tells.
        return None if detect(head) or (st.st_size == 0 and head) else st.st_size

    def open(self) -> BinaryIO:
        from .decoding import decompressing

        if self.path == "-":
            raw: BinaryIO = StandardInput()  # type: ignore[assignment]
        else:
            try:
                raw = open(self.path, "rb", buffering=0)
            except IsADirectoryError:
                _read_directory(self.path, self.name)
            except OSError as e:
                raise InputError(f"{self.name}: {e.strerror}") from None
        self._raw = raw
        st = os.fstat(raw.fileno())
        self._size_at_open = st.st_size if stat.S_ISREG(st.st_mode) else None
        return decompressing(raw, self.name)


#: How many of standard input's first bytes (decompressed) a reader's ``stdin_check`` is shown.
STDIN_HEAD = 512


def _read_directory(path: str, name: str) -> NoReturn:
    """Read a directory named as an input file, as shuf does, so the error is the read's own."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.read(fd, 1)
        finally:
            os.close(fd)
    except OSError as e:
        raise InputError(f"{name}: read error: {e.strerror}") from None
    raise InputError(f"{name}: read error: Is a directory")


class StandardInput(io.RawIOBase):
    """File descriptor 0, read up to its first end of file and never again.

    A terminal ends input once per Ctrl-D: a second read after the end (the format sniffer
    reading on, say) would wait for another. Read failures are GNU shuf's message for stdin,
    ``read error: ...``; the descriptor is the process's, so closing this leaves it open.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ended = False

    def readable(self) -> bool:
        """Always: it is read, never written."""
        return True

    def fileno(self) -> int:
        """Descriptor 0, for fstat and the like."""
        return 0

    def tell(self) -> int:
        """The descriptor's offset (a regular file on stdin); OSError for a pipe or terminal."""
        return os.lseek(0, 0, os.SEEK_CUR)

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        """Read into ``b``; 0 at the end of file, and for ever after it."""
        if self._ended:
            return 0
        try:
            n = os.readv(0, [b])
        except OSError as e:
            raise InputError(f"read error: {e.strerror}") from None
        self._ended = n == 0
        return n


class BytesSource:
    """Records already in memory, e.g. the operands of ``-e``."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def size(self) -> int | None:
        return len(self.data)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


class _ChunkStream(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending = memoryview(chunk)
        n = min(len(b), len(self.pending))
        b[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


class GeneratedSource:
    """Records produced on the fly by ``make_chunks()``, e.g. numbers drawn for ``-i`` with ``-n``."""

    def __init__(self, name: str, make_chunks: Callable[[], Iterator[bytes]]) -> None:
        self.name = name
        self.make_chunks = make_chunks

    def size(self) -> int | None:
        return None

    def open(self) -> BinaryIO:
        return _ChunkStream(self.make_chunks())  # type: ignore[return-value]


class RangeSource(GeneratedSource):
    """The integers ``lo..hi`` as decimal records (``-i LO-HI``), generated, never stored."""

    CHUNK = 1 << 16

    def __init__(self, lo: int, hi: int, sep: bytes) -> None:
        def chunks() -> Iterator[bytes]:
            for first in range(lo, hi + 1, self.CHUNK):
                yield sep.join(b"%d" % i for i in range(first, min(hi + 1, first + self.CHUNK))) + sep

        super().__init__(f"{lo}-{hi}", chunks)


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


def _stored_size(source: Source) -> int | None:
    """Bytes of ``source`` as stored, if it is a file or object whose stored position can be followed."""
    disk_size = getattr(source, "disk_size", None)
    return None if disk_size is None or not hasattr(source, "position") else disk_size()


def split_head(stream: BinaryIO, lines: int, sep: int, name: str) -> tuple[bytes, BinaryIO]:
    """Read the first ``lines`` separator-terminated lines off ``stream`` (``--header``).

    Returns them and a stream of the rest. A header is a few lines, so a plain loop serves.
    """
    head = bytearray()
    found = 0
    sep_byte = bytes([sep])
    while found < lines:
        try:
            chunk = stream.read(1 << 16)
        except OSError as e:
            raise InputError(f"{name}: read error: {e.strerror}") from None
        if not chunk:
            if head and head[-1] != sep:
                head += sep_byte
            return bytes(head), stream
        pos = -1
        while found < lines:
            pos = chunk.find(sep_byte, pos + 1)
            if pos < 0:
                break
            found += 1
        if found < lines:
            head += chunk
        else:
            head += chunk[: pos + 1]
            return bytes(head), Replay(chunk[pos + 1 :], stream)  # type: ignore[return-value]
    return bytes(head), stream


class RecordReader:
    """Streams the concatenated inputs as blocks of whole records.

    Every input's last record gets a separator if it lacks one, as GNU sort and shuf do,
    so records never run across inputs. A record longer than the buffer is an error, and so
    is an input that ends inside a ``--lines-per-record`` group. With ``header`` records, the
    first input's leading records are kept aside in ``self.header`` and every later input's
    are dropped.
    """

    #: First size of the read buffer; it doubles up to the capacity the caller allows.
    INITIAL_BUFFER = 64 << 20

    def __init__(
        self, sources: Sequence[Source], fmt: RecordFormat, progress: Progress, header: int = 0,
        stdin_check: Callable[[bytes], None] | None = None,
    ) -> None:
        self.sources = list(sources)
        #: Shown standard input's first ``STDIN_HEAD`` bytes, to refuse data that is not records
        #: (a format's check: a line run refuses a tar archive).
        self.stdin_check = stdin_check
        self.fmt = fmt
        self.progress = progress
        self.header_records = header
        self.header = b""
        self.bytes_read = 0
        self.progress_done = 0  # bytes reported to progress: of the inputs as stored
        self._stored_at = 0  # stored bytes of the current input reported so far
        self._seps = 0  # separators in the buffer, counted only for --lines-per-record
        self._current = 0  # index of the source being read
        self._eager = False  # blocks handed out whenever the buffer is full (``blocks(block=...)``)
        # Where each input's records start in the last block handed out: (input index, byte offset),
        # in order (weighted sources tell their records apart by it); ``_runs`` is the buffer's.
        self.block_runs: list[tuple[int, int]] = []
        self._runs: list[tuple[int, int]] = []
        #: Per input, ``[separators, bytes]`` read (header excepted), when ``--manifest`` asks (``counted``).
        self.per_input: list[list[int]] | None = None

    def counted(self) -> list[tuple[int, int]] | None:
        """Each input's records and bytes as read, if counting was asked for (``per_input`` set to ``[]``)."""
        if self.per_input is None:
            return None
        return [(seps // self.fmt.group, nbytes) for seps, nbytes in self.per_input]

    def total_size(self) -> int | None:
        """Bytes of all inputs, or None if any size is unknown (plus one per missing separator)."""
        total = 0
        for s in self.sources:
            size = s.size()
            if size is None:
                return None
            total += size
        return total

    def progress_total(self) -> int | None:
        """Bytes of all inputs as stored (a compressed file at its compressed size), or None if any is unknown."""
        total = 0
        for s in self.sources:
            size = s.size()
            if size is None:
                size = _stored_size(s)
            if size is None:
                return None
            total += size
        return total

    def _report(self, source: Source, stored: bool, n: int) -> None:
        """Tell progress about ``n`` bytes just read from ``source``: as stored where the stored
        position is known (compressed bytes consumed), else as read."""
        if stored:
            position = source.position()  # type: ignore[attr-defined]
            n, self._stored_at = position - self._stored_at, position
        if n:
            self.progress_done += n
            self.progress.update(n)

    def estimate_total(self) -> int | None:
        """Expected bytes of all inputs once decompressed, from the ratio seen so far.

        Compressed files do not tell their size; planning the bucket count from the ratio of
        bytes produced to bytes consumed keeps buckets near their target size. None when an
        input is not a regular file or nothing has been read.
        """
        disk: list[int] = []
        for s in self.sources:
            size = s.disk_size() if isinstance(s, FileSource) else None
            if size is None:
                return None
            disk.append(size)
        current = self.sources[self._current]
        consumed = sum(disk[: self._current]) + (current.position() if isinstance(current, FileSource) else 0)
        if not consumed or not self.bytes_read:
            return None
        return int(sum(disk) * self.bytes_read / consumed)

    def _open(self, index: int, source: Source) -> BinaryIO:
        stream = source.open()
        if self.header_records:
            head, stream = split_head(stream, self.header_records * self.fmt.group, self.fmt.sep, source.name)
            if index == 0:
                self.header = head
        return stream

    def blocks(
        self, capacity: int, limit_flag: str, block: int | None = None
    ) -> Generator[tuple[np.ndarray, bool], None, None]:
        """Yield ``(block, final)``: views of one reused buffer holding whole records.

        A block is only valid until the next one is requested. ``final`` is True for the
        last block. ``limit_flag`` names the option to raise in the too-long-record error.
        With ``block``, the buffer starts at that size and hands out its records whenever it
        is full, growing towards ``capacity`` only to hold a record longer than it: blocks of
        about ``block`` bytes in the same pages, for callers that gain nothing from big ones.
        """
        self._eager = block is not None
        buf = np.empty(min(capacity, block or self.INITIAL_BUFFER), np.uint8)
        filled = 0
        self._runs = []
        sep, group = self.fmt.sep, self.fmt.group
        for index, source in enumerate(self.sources):
            self._current = index
            if self._runs and self._runs[-1][1] == filled:
                self._runs.pop()  # the input before held nothing past this point
            self._runs.append((index, filled))
            if self.per_input is not None:
                self.per_input.append([0, 0])
            stream = self._open(index, source)
            stored, self._stored_at = _stored_size(source) is not None, 0
            # Standard input's first bytes, until they tell whether it holds a tar archive.
            check = self.stdin_check if isinstance(source, FileSource) and source.path == "-" else None
            head = None if check is None else bytearray()
            try:
                last = -1
                while True:
                    if filled == len(buf):
                        buf, filled = yield from self._make_room(buf, filled, capacity, source.name, limit_flag)
                    try:
                        n = stream.readinto(buf[filled:].data)  # type: ignore[attr-defined]
                    except OSError as e:
                        raise InputError(f"{source.name}: read error: {e.strerror}") from None
                    if not n:
                        break
                    if head is not None:
                        head += buf[filled : filled + min(n, STDIN_HEAD - len(head))].tobytes()
                        if len(head) == STDIN_HEAD and check is not None:
                            check(bytes(head))
                            head = None
                    if group > 1:
                        self._seps += count_separators(buf[filled : filled + n], sep)
                    if self.per_input is not None:
                        self.per_input[-1][0] += count_separators(buf[filled : filled + n], sep)
                        self.per_input[-1][1] += n
                    filled += n
                    last = int(buf[filled - 1])
                    self.bytes_read += n
                    self._report(source, stored, n)
                self._report(source, stored, 0)
                if isinstance(source, FileSource):
                    source.check_unchanged()
            finally:
                stream.close()
            if last not in (-1, sep):
                if filled == len(buf):
                    buf, filled = yield from self._make_room(buf, filled, capacity, source.name, limit_flag)
                buf[filled] = sep
                filled += 1
                self._seps += 1
                if self.per_input is not None:
                    self.per_input[-1][0] += 1
                    self.per_input[-1][1] += 1
            if group > 1 and self._seps % group:
                raise InputError(
                    f"{source.name}: ends with {self._seps % group} lines left over after the last "
                    f"whole record of {group} lines ({option('lines_per_record')})"
                )
        self.block_runs = [run for run in self._runs if run[1] < filled] or self._runs[-1:]
        yield buf[:filled], True

    def _make_room(
        self, buf: np.ndarray, filled: int, capacity: int, name: str, limit_flag: str
    ) -> Generator[tuple[np.ndarray, bool], None, tuple[np.ndarray, int]]:
        """Free space in a full buffer: grow it towards ``capacity``, else hand out its whole records.

        Growing only as the input turns out to need it means a generous -S on a small pipe
        allocates little. Returns (via ``yield from``) the buffer and its new fill.
        """
        cut = self._last_end(buf, filled) if self._eager or len(buf) == capacity else None
        if cut is None and len(buf) < capacity:
            grown = np.empty(min(capacity, 2 * len(buf)), np.uint8)
            grown[:filled] = buf[:filled]
            return grown, filled
        if cut is None:
            raise InputError(
                f"{name}: a record is longer than {filled} bytes, the most this memory "
                f"limit allows; raise {limit_flag}"
            )
        self.block_runs = [run for run in self._runs if run[1] < cut]
        self._runs = [(self._runs[-1][0], 0)]  # what stays in the buffer is the current input's
        yield buf[:cut], False
        if self.fmt.group > 1:
            self._seps -= self._seps // self.fmt.group * self.fmt.group
        buf[: filled - cut] = buf[cut:filled]
        return buf, filled - cut

    def _last_end(self, buf: np.ndarray, filled: int) -> int | None:
        """Position just past the last whole record in ``buf[:filled]``, searched backwards; None if it holds none."""
        group = self.fmt.group
        # Separators after the last whole record, which the backward search skips.
        skip = self._seps % group if group > 1 else 0
        if group > 1 and self._seps < group:
            skip = -1
        window = 1 << 16
        while skip >= 0:
            lo = max(0, filled - window)
            hits = np.flatnonzero(buf[lo:filled] == self.fmt.sep)
            if len(hits) > skip:
                return lo + int(hits[-1 - skip]) + 1
            if lo == 0:
                break
            window *= 4
        return None
