"""Inputs: files, stdin, records in memory and generated lines, each a name, a size if known and a stream.

``reader.RecordReader`` reads them as blocks of whole records.
"""

from __future__ import annotations

import io
import operator
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, NoReturn, Protocol

from ..errors import InputError, UsageError
from ..quoting import quote_name
from .decoding import Decompressed, decompressing
from .safefs import file_system
from .threads import descriptor

if TYPE_CHECKING:
    from .guarded import Watch



def changed(name: str, why: str) -> InputError:
    """The refusal of an input that changed while a run read it (``why``: what showed it), in the one
    wording every reader and engine gives."""
    return InputError(f"{name}: file changed while being read ({why})")


def resized(opened: int, now: int, read: int | None = None) -> str:
    """What showed a change: the size when opened and now (and the bytes read), or, the size the same,
    its modification."""
    if opened == now and read is None:
        return f"modified, its size still {now} bytes"
    return f"size {opened} bytes when opened, {now} now" + ("" if read is None else f", {read} read")

class Stamp:
    """A local file as a run planned it (its identity, size and modification time), to refuse it once
    read if it changed meanwhile, a rewrite of the same size or another file renamed over it included:
    for readers that open a file again for each part they read (tables, Megatron datasets), whose
    plan (row counts, an index) was made from what it held then."""

    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name
        try:
            st: os.stat_result | None = os.stat(path)
        except OSError:
            st = None
        # Only a regular file of stored data is held to its status: a FIFO's time moves with every
        # write into it (a named pipe of JSON Lines was refused as changed), a generated file's as it is looked at.
        self._was = _fields(st) if st is not None and stat.S_ISREG(st.st_mode) and not generated(st) else None

    def _now(self) -> tuple[int, int, int, int] | None:
        try:
            return _fields(os.stat(self.path))
        except OSError:
            return None

    def stamped(self) -> tuple[int, int] | None:
        """The file's size and modification time (ns) when stamped; None if it was not (not there,
        or not a regular file of stored data)."""
        return None if self._was is None else (self._was[2], self._was[3])

    def check(self, st: os.stat_result | None = None) -> None:
        """Refuse the file (``changed``) if it is not as it was when stamped: as ``st`` says, the status
        of a descriptor the reader holds, else as its name now finds it."""
        now = self._now() if st is None else _fields(st)
        if now == self._was or self._was is None:
            return
        if now is None:
            raise changed(self.name, "gone")
        if now[:2] != self._was[:2]:
            raise changed(self.name, "another file now has its name")
        raise changed(self.name, resized(self._was[2], now[2]))


def _fields(st: os.stat_result) -> tuple[int, int, int, int]:
    """What a ``Stamp`` compares: identity, size and modification time."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


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
        #: The path as messages show it: quoted as GNU shuf quotes it where a shell would need it.
        self.name = quote_name(self.path)
        self._raw: BinaryIO | None = None
        self._decoded: Decompressed | None = None  # the stream ``open`` returned, if it decompresses
        self._size_at_open: int | None = None
        self._mtime_at_open = 0
        self._id_at_open = (0, 0)  # device and inode of the file opened or mapped
        self._watch: Watch | None = None  # the mapping of a file mapped whole rather than read (``reader.map_whole``)
        self._stdin_start: int | None = None  # standard input's offset when first sized or opened (a regular file)

    def disk_size(self) -> int | None:
        """Bytes on disk of a regular file (compressed or not), else None; standard input's from
        where it was first read (``bigshuf < file.gz``)."""
        if self.path == "-":
            st = stdin_file()
            if st is None:
                return None
            try:
                start = os.lseek(0, 0, os.SEEK_CUR) if self._stdin_start is None else self._stdin_start
            except OSError:
                return None
            return max(0, st.st_size - start)
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def check_unchanged(self) -> None:
        """After reading to the end (or using a mapping of it): a regular file must still have the
        size and modification time it had when opened and, if read, have been read to exactly that
        size, or the records read are not the file's (a same-size rewrite changes only the time)."""
        self.check_pages()
        mapped = self._watch is not None  # nothing read to count: the whole file is in use
        if (self._raw is None and not mapped) or self._size_at_open is None:
            return
        try:
            # Standard input has no name to stat: ask its descriptor (``bigshuf < file``); a file read
            # through its descriptor too, which still reads it if another file was renamed over its name
            # (another run's commit of its output), as GNU shuf reads it.
            if self.path == "-":
                st = os.fstat(0)
            elif self._raw is not None and not self._raw.closed:
                st = os.fstat(self._raw.fileno())
            else:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) != self._id_at_open:
                    return  # a mapping of the file the name named, renamed over since: its pages were checked above
            now, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            now, mtime = -1, 0
        read = self._size_at_open if mapped else self.position() + (self._stdin_start or 0)
        if now == self._size_at_open == 0:
            return  # empty, or a generated file (``generated``) of a file system not listed there
        # Standard input whose offset stood past the file's end read nothing and stays there.
        end = max(self._size_at_open, self._stdin_start or 0)
        if now != self._size_at_open or read != end:
            raise changed(self.name, resized(self._size_at_open, now, read))
        if mtime != self._mtime_at_open:
            raise changed(self.name, resized(now, now))

    def read_as(self) -> tuple[int, int] | None:
        """The regular file's size and modification time (ns) when last opened, which
        ``check_unchanged`` holds what was read to; None if not opened, or not such a file."""
        if self._size_at_open is None or self.path == "-":
            return None
        return self._size_at_open, self._mtime_at_open

    def still_as_opened(self) -> bool:
        """Whether the path still names the file the open stream reads, as it was when opened (same
        file, size and modification time): an input opened ahead of its turn is opened again if not."""
        if self._raw is None or self._raw.closed or self.path == "-":
            return False
        try:
            was, now = os.fstat(self._raw.fileno()), os.stat(self.path)
        except OSError:
            return False
        same = (was.st_dev, was.st_ino) == (now.st_dev, now.st_ino)
        return same and (now.st_size, now.st_mtime_ns) == (self._size_at_open, self._mtime_at_open)

    def mapped(self, st: os.stat_result, watch: Watch) -> None:
        """The file is used through the mapping ``watch`` holds, made when it had the status ``st``:
        ``check_unchanged`` then compares the file with it, and refuses it if a page of the
        mapping read as zeros (lost to a shortening, or not readable)."""
        self._size_at_open, self._mtime_at_open = st.st_size, st.st_mtime_ns
        self._id_at_open = (st.st_dev, st.st_ino)
        self._watch = watch

    def unmap(self) -> None:
        """Done with the mapping: end its watch and unmap it (with its last view, if one is left).
        The file is then checked as one read, if it is read."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def check_pages(self) -> None:
        """Refuse a mapped file whose mapping lost pages (they read as zeros): shortened while
        mapped, or a page the disk could not read."""
        if self._watch is not None and self._watch.faults():
            raise InputError(f"{self.name}: file changed or unreadable while being read (pages of it were gone while mapped)")

    def position(self) -> int:
        """Bytes of the file on disk consumed so far by the open stream (0 if not open); standard
        input's since the offset it was first read from."""
        if self._raw is None or self._raw.closed:
            return 0
        try:
            at = self._raw.tell()
        except OSError:
            return 0
        if self._decoded is not None:  # what was decompressed ahead is not counted until read
            at = self._decoded.position()
        return at - (self._stdin_start or 0)

    def size(self) -> int | None:
        """The file's size if it is a plain regular file; None for pipes, compressed files and
        files whose size says nothing (0 with data in them). Standard input redirected from a
        regular file (``bigshuf < file``) is sized as that file from where it is read, so the run
        is planned as ``bigshuf file`` is."""
        from .codecs import SNIFF_BYTES, detect

        if self.path == "-":
            return self._stdin_size(SNIFF_BYTES, detect)
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise InputError(f"{self.name}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode) or generated(st):
            return None
        try:
            with open(self.path, "rb") as f:
                head = f.read(SNIFF_BYTES)
        except OSError as e:
            raise InputError(f"{self.name}: {e.strerror}") from None
        # A file of a file system not listed as generated may still say it holds 0 bytes and have more.
        return None if detect(head) or (st.st_size == 0 and head) else st.st_size

    def _stdin_size(self, sniff: int, detect: Callable[[bytes], object]) -> int | None:
        """Bytes left on standard input from its first offset if it is a plain regular file (its
        head is looked at where it is, the offset left as it was), else None."""
        st = stdin_file()
        start = None if st is None else self.stdin_offset()
        if st is None or start is None:
            return None
        try:
            head = os.pread(0, sniff, start)
        except OSError:
            return None
        left = st.st_size - start
        return None if detect(head) or left <= 0 and head else max(0, left)

    def stdin_offset(self) -> int | None:
        """Where standard input is read from: its offset when first sized or opened, kept from
        then on (None for a pipe or a terminal)."""
        if self._stdin_start is None:
            try:
                self._stdin_start = os.lseek(0, 0, os.SEEK_CUR)
            except OSError:
                pass
        return self._stdin_start

    def open(self) -> BinaryIO:
        if self.path == "-":
            raw: BinaryIO = StandardInput()  # type: ignore[assignment]
            self.stdin_offset()
        else:
            try:
                raw = open(self.path, "rb", buffering=0)
            except IsADirectoryError:
                _read_directory(self.path, self.name)
            except OSError as e:
                raise InputError(f"{self.name}: {e.strerror}") from None
        self._raw = raw
        try:
            st = os.fstat(raw.fileno())
        except OSError as e:  # standard input closed (``<&-``): as its read fails, and as GNU shuf says
            raise InputError(f"read error: {e.strerror}") from None
        if stat.S_ISFIFO(st.st_mode):
            _widen_pipe(raw.fileno())
        self._size_at_open = st.st_size if stat.S_ISREG(st.st_mode) and not generated(st) else None
        self._mtime_at_open = st.st_mtime_ns
        self._id_at_open = (st.st_dev, st.st_ino)
        stream = decompressing(raw, self.name)
        self._decoded = stream if isinstance(stream, Decompressed) else None
        return stream


def stdin_file() -> os.stat_result | None:
    """Standard input's status if it is a regular file whose size says what it holds
    (``bigshuf < file``), else None (a pipe, a terminal, a generated file, closed)."""
    try:
        st = os.fstat(0)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) and not generated(st) else None


@contextmanager
def stdin_offset_kept() -> Iterator[None]:
    """Put standard input's offset back where it stood once the block is done, if it is a regular
    file: a plan may read it, the run reads it again (they share the offset)."""
    at = None
    if stdin_file() is not None:
        try:
            at = os.lseek(0, 0, os.SEEK_CUR)
        except OSError:
            pass
    try:
        yield
    finally:
        if at is not None:
            os.lseek(0, at, os.SEEK_SET)


def later_stdin(sources: Sequence[Source]) -> set[int]:
    """The indices of the ``-`` inputs after the first: each reads only what the one before left,
    nothing if standard input is a regular file (from a pipe, what is unknown)."""
    at = [i for i, s in enumerate(sources) if isinstance(s, FileSource) and s.path == "-"]
    return set(at[1:])


def input_sizes(sources: Sequence[Source]) -> Iterator[int | None]:
    """Each source's ``size()``, standard input counted once (``later_stdin``)."""
    again = later_stdin(sources)
    for i, source in enumerate(sources):
        if i in again:
            yield 0 if stdin_file() is not None else None
        else:
            yield source.size()


#: File systems whose files are made as they are read: their sizes say nothing (sysfs gives
#: 4096, procfs 0), so a read is not checked against them.
GENERATED_FILE_SYSTEMS = frozenset({"proc", "sysfs", "debugfs", "tracefs", "securityfs", "configfs", "cgroup", "cgroup2", "efivarfs"})

def generated(st: os.stat_result) -> bool:
    """Whether the file of status ``st`` is on a file system of generated files (``file_system``)."""
    return file_system(st) in GENERATED_FILE_SYSTEMS



def _read_directory(path: str, name: str) -> NoReturn:
    """Read a directory named as an input file, as shuf does, so the error is the read's own."""
    try:
        fd = descriptor(lambda: os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        try:
            os.read(fd, 1)
        finally:
            os.close(fd)
    except OSError as e:
        raise InputError(f"{name}: read error: {e.strerror}") from None
    raise InputError(f"{name}: read error: Is a directory")


#: The most bytes asked of a regular file at once past the size it states (a ``/proc/sys`` file
#: states 0, and its handler refuses a read of 4 MiB or more with ENOMEM; a growing file).
UNSIZED_READ = 1 << 20


def past_size(fd: int) -> bool:
    """Whether ``fd`` is a regular file read up to (or past) the size it states."""
    st = os.fstat(fd)
    return stat.S_ISREG(st.st_mode) and os.lseek(fd, 0, os.SEEK_CUR) >= st.st_size


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

    def seekable(self) -> bool:
        """Whether stdin is a regular file: the codec sniffer then looks at its head and seeks back,
        rather than replaying the head, so the offset stays that of the bytes decompressed."""
        return stdin_file() is not None

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        """Move the descriptor's offset (a regular file on stdin)."""
        self._ended = False
        return os.lseek(0, pos, whence)

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        """Read into ``b``; 0 at the end of file, and for ever after it."""
        if self._ended:
            return 0
        try:
            if len(b) > UNSIZED_READ and past_size(0):
                b = b[:UNSIZED_READ]
            n = os.readv(0, [b])
        except OSError as e:
            raise InputError(f"read error: {e.strerror}") from None
        self._ended = n == 0
        return n


#: Bytes a pipe read as input is widened to (``F_SETPIPE_SZ``). Linux's default of 64 KiB costs a
#: read and a wake-up of the writing process every 64 KiB: ``cat`` of 1 GiB into a reader took
#: 2.9-4.1 s through it, 1.1-1.3 s through 1 MiB (benchmarks/README.md).
PIPE_SIZE = 1 << 20


def _widen_pipe(fd: int) -> None:
    """Let the pipe ``fd`` hold ``PIPE_SIZE`` bytes, or the most the system allows an unprivileged
    process, unless it holds more already; where it cannot be widened (another system, a user
    over its pipe allowance) it stays."""
    import fcntl

    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is None:
        return
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            wanted = min(PIPE_SIZE, int(f.read()))
        if fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) < wanted:  # one its writer widened further stays so
            fcntl.fcntl(fd, setsize, wanted)
    except (OSError, ValueError, AttributeError):
        return


class BytesSource:
    """Records already in memory, e.g. the operands of ``-e``: ``data`` read as lines, or (``ends``)
    cut where it says, so that a record may hold the separator, as one ``-e`` operand may hold a newline."""

    def __init__(self, name: str, data: bytes, ends: Sequence[int] | None = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise UsageError(f"BytesSource takes the records as bytes, not {type(data).__name__}")
        self.name = name
        self.data = bytes(data)
        self.ends = None if ends is None else list(ends)
        if self.ends is not None and (
            any(b <= a for a, b in zip([0, *self.ends], self.ends)) or (self.ends[-1] if self.ends else 0) != len(self.data)
        ):
            raise UsageError("BytesSource's ends must rise, each past the last, to the length of its data")

    @classmethod
    def of_records(cls, name: str, records: Sequence[bytes], sep: bytes) -> BytesSource:
        """``records``, each ended by ``sep``; cut at their own ends only if one holds ``sep`` (else read
        as lines, which gives the same records and the draws lines always had)."""
        data = b"".join(r + sep for r in records)
        if not any(sep in r for r in records):
            return cls(name, data)
        ends, at = [], 0
        for r in records:
            at += len(r) + len(sep)
            ends.append(at)
        return cls(name, data, ends)

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

    #: Bytes of ``-r -n``'s draws above which they are written as drawn rather than shuffled again.
    REPEAT_SHUFFLED = 16 << 20

    def __init__(self, lo: int, hi: int, sep: bytes) -> None:
        def chunks() -> Iterator[bytes]:
            for first in range(lo, hi + 1, self.CHUNK):
                yield sep.join(b"%d" % i for i in range(first, min(hi + 1, first + self.CHUNK))) + sep

        super().__init__(f"{lo}-{hi}", chunks)
        self.lo, self.hi, self.sep = lo, hi, sep

    def drawn_unlisted(self, repeat: bool, head_count: int | None, header: int, lines_per_record: int, budget: int) -> bool:
        """Whether ``-r`` draws the numbers without listing the range and writes them as drawn: when
        each record is one number (no ``--header``, no ``--lines-per-record``), without ``-n``, or with
        an ``-n`` whose draws are more than ``REPEAT_SHUFFLED`` bytes or the memory ``budget`` (smaller
        samples are shuffled again, as they always were): i.i.d. draws are already in uniform order,
        and GNU shuf streams them (``-r -n 1000000000 -i 1-3 | head -1`` took minutes)."""
        if not repeat or header or lines_per_record != 1:
            return False
        return head_count is None or head_count * (len(str(self.hi)) + len(self.sep)) > min(budget, self.REPEAT_SHUFFLED)

    def leftover(self, header: int, lines_per_record: int) -> int:
        """Numbers past the last whole record of ``lines_per_record`` after the ``header`` numbers,
        as the file of the numbers leaves them (which the run refuses)."""
        count = self.hi - self.lo + 1
        return (count - header) % lines_per_record if count > header else 0

    def listed_bytes(self) -> int:
        """Bytes of the numbers written in decimal, each with its separator: the records' bytes once listed."""
        total, digits = 0, 1
        while 10 ** (digits - 1) <= self.hi or digits == 1:
            first, last = max(self.lo, 10 ** (digits - 1) if digits > 1 else 0), min(self.hi, 10**digits - 1)
            total += max(0, last - first + 1) * (digits + len(self.sep))
            digits += 1
        return total


class CallerSource:
    """A library caller's own ``Source``, its answers checked as they are used: a size that is not
    a byte count (or None), or a stream without ``readinto``, is a ``UsageError`` naming it, and an
    ``OSError`` opening it an ``InputError``; a bare TypeError or OSError from deep in a run used to
    leak out instead. Anything else it has is its own."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.name = str(inner.name)

    def __getattr__(self, attribute: str) -> object:
        return getattr(self.inner, attribute)

    def size(self) -> int | None:
        size = self.inner.size()
        if size is None:
            return None
        try:
            count = -1 if isinstance(size, bool) else operator.index(size)
        except TypeError:
            count = -1
        if count < 0:
            raise UsageError(f"source {quote_name(self.name)}: size() gave {size!r}, not a byte count or None")
        return count

    def open(self) -> BinaryIO:
        try:
            stream = self.inner.open()
        except OSError as e:
            raise InputError(f"{quote_name(self.name)}: {e.strerror or e}") from None
        if not callable(getattr(stream, "readinto", None)):
            raise UsageError(f"source {quote_name(self.name)}: open() gave {type(stream).__name__}, not a binary stream (with readinto)")
        return stream
