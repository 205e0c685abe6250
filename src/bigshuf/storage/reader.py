"""Inputs read as records: the concatenated inputs in blocks of whole records, in one reused buffer.

Every input's last record gets its separator, ``--header`` records are kept aside, a record too
long for ``-S`` is refused, and a lone plain file can be mapped whole instead of read.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import stat
from collections.abc import Callable, Generator, Sequence
from typing import BinaryIO, cast

import numpy as np

from ..core.records import RecordFormat, count_separators
from ..errors import InputError, option
from ..progress import Progress
from . import guarded
from .ahead import AheadPlan, DecodeAhead
from .codecs import Replay
from .expansion import DecodedSizes
from .sources import UNSIZED_READ, FileSource, Source, changed, input_sizes

#: How many first bytes (decompressed) of an input that is not a regular file a reader's
#: ``stream_check`` is shown (all of them, if it holds fewer).
STDIN_HEAD = 512

#: The least a worker reads of a plain file in one ``RecordReader`` read spread over the workers:
#: below it, one thread's read costs less than handing out the parts.
SPLIT_READ = 8 << 20

#: Runs ``fn(0) ... fn(count - 1)`` on the workers and returns their results (``Workers.map``).
ParallelMap = Callable[[Callable[[int], int], int], list[int]]

#: With ``RecordReader.on_read`` set, the most bytes read at once from a stream that is read in
#: turn rather than in parts (a decompressed one, a pipe, a file after its ``--header``): what was
#: read is shown to it that often.
READ_STEP = 4 << 20

#: The least of a plain file's bytes copied out of a mapping rather than read: a mapping costs
#: two system calls, a read of fewer bytes less than that.
MAP_READ = 1 << 20

#: The most bytes the search for a buffer's last whole record compares at once.
LAST_END_WINDOW = 4 << 20


def map_whole(sources: Sequence[Source], sep: int) -> np.ndarray | None:
    """Map a lone regular input file that ends with ``sep`` read-only, or return None.

    Mapping page-cache pages costs 0.04 s per GiB here where reading into fresh memory
    cost 0.3-2.7 s (benchmarks/README.md), so the in-memory path maps when it can. The mapping is
    watched (``guarded``): if the file is shortened meanwhile, its lost pages read as zeros
    rather than killing the process, and the check before the output is committed refuses it.
    """
    if len(sources) != 1 or not isinstance(sources[0], FileSource) or sources[0].path == "-":
        return None
    try:
        with open(sources[0].path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or _written_here(st):
                return None
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            try:
                mapped = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
            except OSError:  # a file system that cannot map it (sysfs): read it
                return None
            sources[0].mapped(st, guarded.Watch(mapped))
    except OSError as e:
        raise InputError(f"{sources[0].name}: {e.strerror}") from None
    block = np.frombuffer(mapped, np.uint8)
    if block[-1] == sep:
        return block
    del block
    sources[0].unmap()
    return None


def reserving_is_free() -> bool:
    """Whether address space reserved and never touched costs nothing: not under ``ulimit -v``,
    nor under strict overcommit (``vm.overcommit_memory`` 2), where a reservation counts whole
    and would leave the libraries loaded later too little."""
    import resource

    try:
        if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
            return False
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() != "2"
    except (OSError, ValueError):
        return False


def _is_plain_file(stream: BinaryIO) -> bool:
    """Whether ``stream`` reads a regular file itself (not decompressed), whose reads fill the view."""
    return type(stream) is io.FileIO and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)


def _written_here(st: os.stat_result) -> bool:
    """Whether this process holds the file of status ``st`` open for writing: standard output in
    ``bigshuf f >> f`` or ``1<>f`` (which GNU shuf allows), or the descriptor ``-o /dev/fd/N`` writes
    through. It is then read whole before any output is written, not mapped, as the output would
    change the records while they are gathered."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        names = ["1"]  # no /proc: standard output is the one such descriptor a command has
    for name in names:
        try:
            other = os.fstat(int(name))
        except (OSError, ValueError):
            continue  # (the listing's own descriptor, closed since)
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino) and _writable(name):
            return True
    return False


def _writable(fd: str) -> bool:
    """Whether descriptor ``fd`` was opened for writing, by its flags in ``/proc/self/fdinfo``
    (taken as writable where they cannot be read)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY
    except (OSError, ValueError, IndexError):
        pass
    return True


def _pread_fully(fd: int, view: np.ndarray, offset: int) -> int:
    """Read ``view``'s bytes from ``fd`` at ``offset``, as many calls as it takes; fewer at the file's end."""
    got, size = 0, len(view)
    while got < size:
        n = os.preadv(fd, [view[got:].data], offset + got)
        if not n:
            break
        got += n
    return got


def _lost(name: str, fd: int, end: int) -> InputError:
    """The error for a mapped part of an input whose pages read as zeros: the file was shortened
    to before ``end``, else a page could not be read in (a disk or network error)."""
    try:
        size = os.fstat(fd).st_size
    except OSError:
        size = -1
    if 0 <= size < end:
        return changed(name, f"shorter than {end} bytes")
    return InputError(f"{name}: read error: {os.strerror(errno.EIO)}")


def _streamed(source: Source) -> bool:
    """Whether ``source`` is read as a stream (standard input, a pipe, a device): its records were
    not told by its name or magic bytes, so the reader's ``stream_check`` looks at its first bytes."""
    return isinstance(source, FileSource) and (source.path == "-" or source.disk_size() is None)


def _stored_size(source: Source) -> int | None:
    """Bytes of ``source`` as stored, if it is a file or object whose stored position can be followed."""
    disk_size = getattr(source, "disk_size", None)
    return None if disk_size is None or not hasattr(source, "position") else disk_size()


def _checked_count(got: object, size: int, name: str) -> int:
    """``readinto``'s answer for a buffer of ``size`` bytes, checked as Python's own buffered reader
    checks a raw stream's: from a library caller's stream, None (no data yet, from a non-blocking
    one) ended its input early, a negative count was taken, and a str was a bare TypeError."""
    if isinstance(got, int) and not isinstance(got, bool) and 0 <= got <= size:
        return got
    raise InputError(f"{name}: its stream's readinto() gave {got!r} for a buffer of {size} bytes, not a count from 0 to {size}")


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


def leftover_error(name: str, left: int, group: int) -> InputError:
    """The error for an input whose last ``left`` lines do not make a whole record of ``group``."""
    lines = "line" if left == 1 else "lines"
    return InputError(
        f"{name}: ends with {left} {lines} left over after the last whole record of {group} lines ({option('lines_per_record')})"
    )


class RecordReader(DecodedSizes):
    """Streams the concatenated inputs as blocks of whole records.

    Every input's last record gets a separator if it lacks one, as GNU sort and shuf do,
    so records never run across inputs. A record longer than the buffer is an error, and so
    is an input that ends inside a ``--lines-per-record`` group. With ``header`` lines (lines, not
    records: groups start after them), the first input's leading lines are kept aside in
    ``self.header`` and every later input's are dropped.
    """

    #: Size of a read buffer that has to grow (``_new_buffer``); it doubles up to the capacity the caller allows.
    INITIAL_BUFFER = 64 << 20

    def __init__(
        self, sources: Sequence[Source], fmt: RecordFormat, progress: Progress, header: int = 0,
        stream_check: Callable[[bytes, str], None] | None = None, parallel: ParallelMap | None = None,
        ahead: AheadPlan | None = None, groups: Sequence[int] | None = None,
    ) -> None:
        self.sources = list(sources)
        #: Each input's weighted source, whose files' compression ratio is sampled together (None: one group).
        self.groups = groups
        #: Decodes the compressed inputs after the one being read on the workers (``DecodeAhead``).
        self.ahead = ahead
        #: Spreads a read of a plain file over the workers (page-cache copies run on every core).
        self.parallel = parallel
        #: Shown the first ``STDIN_HEAD`` bytes of an input read as a stream, and its name, to refuse
        #: data that is not records (a format's check: a line run refuses a tar archive or a table).
        self.stream_check = stream_check
        self.fmt = fmt
        self.progress = progress
        self.header_lines = header
        self.header = b""
        self._split = b""  # the header lines taken from the input being opened
        self.progress_done = 0  # bytes reported to progress: of the inputs as stored
        self._stored_at = 0  # stored bytes of the current input reported so far
        self._seps = 0  # separators in the buffer, counted only for --lines-per-record
        self.separators_added = 0  # one for each input whose last record had none (as shuf adds it)
        self._eager = False  # blocks handed out whenever the buffer is full (``blocks(block=...)``)
        # Where each input's records start in the last block handed out: (input index, byte offset),
        # in order (weighted sources tell their records apart by it); ``_runs`` is the buffer's.
        self.block_runs: list[tuple[int, int]] = []
        self._runs: list[tuple[int, int]] = []
        #: Per input, ``[separators, bytes]`` read (header excepted), when ``--manifest`` asks (``counted``).
        self.per_input: list[list[int]] | None = None
        #: Shown the buffer and how much of it is filled after every read of a stream that is not a
        #: plain file (``READ_STEP`` at most at once unless a pipe), so the records read can be put to
        #: work before the block is complete. The buffer's first bytes are those of the next block.
        self.on_read: Callable[[np.ndarray, int], None] | None = None

    def counted(self) -> list[tuple[int, int]] | None:
        """Each input's records and bytes as read, if counting was asked for (``per_input`` set to ``[]``)."""
        if self.per_input is None:
            return None
        return [(seps // self.fmt.group, nbytes) for seps, nbytes in self.per_input]

    def total_size(self, enough: int | None = None) -> int | None:
        """Bytes of all inputs, or None if any size is unknown (plus one per missing separator);
        with ``enough``, the bytes of the first inputs once they hold that many (the rest unasked)."""
        total = 0
        for size in input_sizes(self.sources):
            if size is None:
                return None
            total += size
            if enough is not None and total >= enough:
                break
        return total

    def progress_total(self) -> int | None:
        """Bytes of all inputs as stored (a compressed file at its compressed size), or None if any is unknown."""
        total = 0
        for s, size in zip(self.sources, input_sizes(self.sources)):
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
        """Expected bytes of all inputs once decompressed (their ``decoded_sizes``), plus one per input
        for a final separator it may lack, as plain files are planned; None if an input's is unknown (a pipe).

        Compressed files do not tell their size; planning the bucket count and temporary space
        from an estimate keeps buckets near their target size, and a recorded size then plans the
        buckets, and so the output, of the same file uncompressed.
        """
        planned = self.decoded_sizes()
        return None if None in planned else sum(cast(list[int], planned)) + len(self.sources)

    def _open(self, index: int, source: Source, early: DecodeAhead | None = None) -> BinaryIO:
        taken = None if early is None else early.take(index)
        stream = source.open() if taken is None else taken
        if early is not None:
            early.start_after(index)
        self._split = b""
        if self.header_lines:
            head, stream = split_head(stream, self.header_lines, self.fmt.sep, source.name)
            self._split = head  # (the first bytes a ``stream_check`` is shown)
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
        buf = self._new_buffer(self._first_size(capacity, block))
        early = None if self.ahead is None else DecodeAhead(self.sources, self.ahead)
        try:
            yield from self._fill(buf, capacity, limit_flag, early)
        finally:
            if early is not None:
                early.close()

    def _fill(
        self, buf: np.ndarray, capacity: int, limit_flag: str, early: DecodeAhead | None
    ) -> Generator[tuple[np.ndarray, bool], None, None]:
        """``blocks``' loop over the inputs, reading each into ``buf`` (the next ones decoded ``early``)."""
        filled = 0
        self._runs = []
        sep, group = self.fmt.sep, self.fmt.group
        for index, source in enumerate(self.sources):
            if self._runs and self._runs[-1][1] == filled:
                self._runs.pop()  # the input before held nothing past this point
            self._runs.append((index, filled))
            if self.per_input is not None:
                self.per_input.append([0, 0])
            stream = self._open(index, source, early)
            stored, self._stored_at = _stored_size(source) is not None, 0
            # A plain file's block comes in one read: nothing to put to work before it is whole.
            stepwise = not _is_plain_file(stream)
            # A stream's first bytes (its header lines first), until they tell whether it holds records.
            check = self.stream_check if _streamed(source) else None
            head = None if check is None else bytearray(self._split[:STDIN_HEAD])
            try:
                last = -1
                while True:
                    if filled == len(buf):
                        buf, filled = yield from self._make_room(buf, filled, capacity, source.name, limit_flag)
                    view = buf[filled:]
                    if self.on_read is not None and type(stream) is not io.FileIO:
                        view = view[:READ_STEP]
                    try:
                        n = self._read(stream, view, source.name)
                    except OSError as e:
                        raise InputError(f"{source.name}: read error: {e.strerror}") from None
                    if not n:
                        break
                    if head is not None:
                        head += buf[filled : filled + min(n, STDIN_HEAD - len(head))].tobytes()
                        if len(head) == STDIN_HEAD and check is not None:
                            check(bytes(head), source.name)
                            head = None
                    if group > 1:
                        self._seps += count_separators(buf[filled : filled + n], sep)
                    if self.per_input is not None:
                        self.per_input[-1][0] += count_separators(buf[filled : filled + n], sep)
                        self.per_input[-1][1] += n
                    filled += n
                    last = int(buf[filled - 1])
                    self._report(source, stored, n)
                    if self.on_read is not None and stepwise:
                        self.on_read(buf, filled)
                if head and check is not None:  # shorter than STDIN_HEAD: checked whole
                    check(bytes(head), source.name)
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
                self.separators_added += 1
                if self.per_input is not None:
                    self.per_input[-1][0] += 1
                    self.per_input[-1][1] += 1
            if group > 1 and self._seps % group:
                raise leftover_error(source.name, self._seps % group, group)
        self.block_runs = [run for run in self._runs if run[1] < filled] or self._runs[-1:]
        yield buf[:filled], True

    def _read(self, stream: BinaryIO, view: np.ndarray, name: str) -> int:
        """Read into ``view`` as ``readinto`` does. A plain file's next bytes are taken in parts of
        ``SPLIT_READ`` to twice that, as many at once as there are workers, each copied out of a
        watched mapping of it where one can be made (``guarded``), else read at its offset. The
        bytes counted end at the first part that came back short (the file ended there)."""
        if type(stream) is not io.FileIO:
            return _checked_count(stream.readinto(view.data), len(view), name)  # type: ignore[attr-defined]
        fd = stream.fileno()
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a named pipe or a device: no offsets to read at
            return stream.readinto(view.data)
        start = stream.tell()
        want = min(len(view), st.st_size - start)
        if want <= 0:  # nothing more, as its size says: what there is, read as it comes
            return stream.readinto(view.data[:UNSIZED_READ])
        mapped = guarded.available and want >= MAP_READ
        split = self.parallel is not None and want >= 2 * SPLIT_READ
        if not (mapped or split):
            return stream.readinto(view.data)
        step = (-(-want // (want // SPLIT_READ)) + 4095) & ~4095 if split else want  # equal parts, whole pages of the file if it starts on one
        bounds = list(range(0, want, step)) + [want]

        def take(i: int) -> int:
            part = view[bounds[i] : bounds[i + 1]]
            if mapped:
                try:
                    whole = guarded.read_mapped(fd, start + bounds[i], part)
                except OSError:  # a file system that cannot map it: read it
                    return _pread_fully(fd, part, start + bounds[i])
                if not whole:
                    raise _lost(name, fd, start + bounds[i + 1])
                return len(part)
            return _pread_fully(fd, part, start + bounds[i])

        got = self.parallel(take, len(bounds) - 1) if split and self.parallel is not None else [take(0)]
        n = 0
        for lo, hi, part in zip(bounds, bounds[1:], got):
            n += part
            if part < hi - lo:
                break
        stream.seek(start + n)
        return n

    def _first_size(self, capacity: int, block: int | None) -> int:
        """The buffer's first size: ``block``; else the capacity, or less where the inputs' sizes say
        they need less. Its pages are touched only as it is filled, so a generous -S costs a small
        pipe nothing; growing a smaller buffer instead zeroed and copied it at every step (reading
        512 MiB from a pipe took 2.6-3.0 s so, 0.7 s into one buffer: benchmarks/README.md). Where a
        reservation is not free (``reserving_is_free``), a buffer for inputs of unknown size starts at
        ``INITIAL_BUFFER`` and grows as they turn out to need it (inputs of known size are given what
        they need: 64 MiB for a few bytes could fail under ``ulimit -v``)."""
        if block is not None:
            return min(capacity, block)
        total = self.total_size(enough=capacity)  # the first inputs that fill it, not every input sized again
        if total is not None and total >= capacity:
            return capacity
        if total is None:
            return capacity if reserving_is_free() else min(capacity, self.INITIAL_BUFFER)
        return min(capacity, total + len(self.sources) + 1)  # a separator added to each input, at most

    def _new_buffer(self, size: int) -> np.ndarray:
        """The read buffer of ``size`` bytes; where the system refuses so large an allocation (``ulimit
        -v``), one of ``INITIAL_BUFFER`` or, failing that too, of 1 MiB to grow from (Arrow, loaded
        as the command starts under such a limit, may leave too little for 64 MiB)."""
        for tried in (size, min(size, self.INITIAL_BUFFER)):
            try:
                return np.empty(tried, np.uint8)
            except MemoryError:
                continue
        return np.empty(min(size, 1 << 20), np.uint8)

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
        # Windows grow, so a short search stays short, up to a cap: each compares its bytes into a
        # temporary array as large, which across a whole buffer (a long record) cost one more -S.
        hi, window = filled, 1 << 16
        while skip >= 0 and hi > 0:
            lo = max(0, hi - window)
            hits = np.flatnonzero(buf[lo:hi] == self.fmt.sep)
            if len(hits) > skip:
                return lo + int(hits[-1 - skip]) + 1
            skip -= len(hits)
            hi, window = lo, min(4 * window, LAST_END_WINDOW)
        return None
