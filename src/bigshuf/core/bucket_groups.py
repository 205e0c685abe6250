"""The first bytes a level of unknown size scatters, kept in a few group files rather than one file a bucket.

Input of unknown size (a pipe) is planned for the most buckets its free space may need: up to
1024, each of which then takes tiny appends, which the kernel pays for by the file (1 GiB piped
at ``-S 256M`` took 3.2-3.7 s at 1024 buckets against 1.9-2.0 s at 64). While a level's first
bytes come, bucket ``j``'s parts go to group file ``j // per_group``, one write a group a piece
(a piece's buckets lie in bucket order); a table of each piece's bucket bounds and each group's
offset finds a bucket's parts again. Once the group files hold ``until`` bytes the level's later
parts go to a file a bucket (``BucketSet``), after the grouped ones: each bucket's bytes, and so
the shuffled output, are the same as with no groups.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from types import ModuleType
from typing import BinaryIO

import numpy as np

from ..errors import TempSpaceError
from . import plan
from ..storage.safefs import create_exclusive, open_nofollow
from ..storage.sliced import open_sliced
from ..storage.tempspace import full_disk_hint

native: ModuleType | None
try:
    from .. import _sliced as native
except ImportError:  # built without a C compiler: each part is a call from Python
    native = None

#: Group files a level's buckets are written to at first.
GROUP_FILES = 64

#: Bytes copied at once when a bucket's grouped parts are written out to a file of its own.
COPY_CHUNK = 1 << 20


def grouped_bytes(limit: int) -> int:
    """Bytes a level of unknown size writes to group files at most under memory ``limit``: as many
    as the planned buckets' expected size in each (a bucket's share of the record budget)."""
    return GROUP_FILES * (plan.block_budget(limit) // plan.BUCKET_FRACTION)


def per_group(k: int) -> int:
    """Buckets a group file holds for a level of ``k`` buckets (1: no groups, they would save nothing)."""
    return 1 if k <= GROUP_FILES else -(-k // GROUP_FILES)


class BucketGroups:
    """Group files of ``k`` buckets, ``size`` to a file, in ``directory``, written while they hold
    less than ``until`` bytes. Appends run on the caller's thread in order, writes on a writer thread
    (in the same order); reads run on any thread once the writes are done."""

    def __init__(self, directory: str, k: int, size: int, until: int) -> None:
        self.directory, self.k, self.size, self.until = directory, k, size, until
        self.n = -(-k // size)
        self.taking = True
        self.held = 0  # bytes appended so far
        self.disk = [0] * self.n  # bytes in each group file (its next part's offset)
        self.early = np.zeros(k, np.int64)  # each bucket's bytes in its group file
        self._files: list[BinaryIO | None] = [None] * self.n
        self._bounds: list[np.ndarray] = []  # per part: its buckets' k+1 byte bounds
        self._starts: list[np.ndarray] = []  # per part: where each group's slice of it is in the group's file
        self._table: tuple[np.ndarray, np.ndarray] | None = None
        self._gone = 0  # group files before this one are removed
        self._readers: dict[int, int] = {}  # group -> descriptor, opened for pass 2's reads
        self._lock = threading.Lock()

    def path(self, g: int) -> str:
        """The file of group ``g``."""
        return os.path.join(self.directory, f"group-{g:05d}")

    def takes(self, nbytes: int) -> bool:
        """Whether a part of ``nbytes`` still goes to the group files: once one would take them past
        ``until``, that part and every later one go to the buckets' own files."""
        if self.taking and self.held + nbytes > self.until:
            self.taking = False
        return self.taking

    def plan(self, bounds: np.ndarray, counts: np.ndarray) -> list[tuple[int, int, int, BinaryIO]]:
        """Record a part whose bucket ``j`` is ``[bounds[j], bounds[j+1])`` of its data (``counts``:
        its records, zero in buckets it does not write); return the writes it makes: group, data
        range, file."""
        sizes = np.where(counts > 0, np.diff(bounds), 0)
        self.early += sizes
        per = np.add.reduceat(sizes, np.arange(0, self.k, self.size))
        starts = np.array(self.disk, np.int64)
        writes = []
        for g in np.flatnonzero(per).tolist():
            f = self._files[g]
            if f is None:
                f = self._files[g] = self._open(g)
            lo = int(bounds[g * self.size])
            writes.append((g, lo, lo + int(per[g]), f))
            self.disk[g] += int(per[g])
        self.held += int(per.sum())
        self._bounds.append(bounds)
        self._starts.append(starts)
        return writes

    def write(self, g: int, f: BinaryIO, part: memoryview) -> None:
        """Write a part to group ``g``'s file (on the writer thread)."""
        try:
            while part:
                part = part[f.write(part) :]
        except OSError as e:
            raise TempSpaceError(f"{self.path(g)}: write error: {e.strerror}{full_disk_hint(e)}") from None

    def _open(self, g: int) -> BinaryIO:
        """Group ``g``'s file, created exclusively and private."""
        try:
            fd = create_exclusive(self.path(g), 0o600, os.O_WRONLY | os.O_APPEND)
        except OSError as e:
            raise TempSpaceError(f"{self.path(g)}: {e.strerror}") from None
        return open_sliced(fd, "ab", 0)

    def stop_writing(self) -> None:
        """Close the group files written, after the writer's last write to them (on its thread when
        the later parts go to the buckets' own files: their descriptors are needed there)."""
        for g, f in enumerate(self._files):
            if f is not None:
                self._files[g] = None
                try:
                    f.close()
                except OSError as e:
                    raise TempSpaceError(f"{self.path(g)}: write error: {e.strerror}{full_disk_hint(e)}") from None

    def close(self) -> None:
        """Close every group file, and make the table of parts pass 2's reads use (on the thread
        that appended, before any read)."""
        if self._bounds:
            self._table = np.array(self._bounds, np.int64), np.array(self._starts, np.int64)
            self._bounds, self._starts = [], []
        self.stop_writing()
        for g in list(self._readers):
            self._stop_reading(g)

    def read(self, j: int, view: np.ndarray) -> None:
        """Read bucket ``j``'s bytes in its group file into ``view`` (``early[j]`` bytes long)."""
        offsets, lengths = self._parts(j)
        if native is None:  # built without a C compiler: a call from Python a part
            at = 0
            for offset, length in zip(offsets.tolist(), lengths.tolist()):
                self._pread(j, offset, view.data[at : at + length])
                at += length
            return
        g = j // self.size
        try:
            got = native.read_parts(self._reading(g), view, offsets, lengths)
        except OSError as e:
            raise TempSpaceError(f"{self.path(g)}: read error: {e.strerror}") from None
        if got != len(view):
            raise TempSpaceError(f"{self.path(g)}: temporary group of buckets is shorter than written")

    def copy(self, j: int, write: Callable[[memoryview], None]) -> None:
        """Pass bucket ``j``'s bytes in its group file to ``write``, a MiB at most at a time."""
        buf = memoryview(bytearray(COPY_CHUNK))
        offsets, lengths = self._parts(j)
        for offset, length in zip(offsets.tolist(), lengths.tolist()):
            for at in range(0, length, COPY_CHUNK):
                n = min(COPY_CHUNK, length - at)
                self._pread(j, offset + at, buf[:n])
                write(buf[:n])

    def _parts(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Where bucket ``j``'s parts are in its group file, in the order they were written, and their lengths."""
        assert self._table is not None, "group files read before they were closed"
        bounds, starts = self._table
        g = j // self.size
        lengths = bounds[:, j + 1] - bounds[:, j]
        offsets = starts[:, g] + bounds[:, j] - bounds[:, g * self.size]
        used = lengths > 0
        return np.ascontiguousarray(offsets[used]), np.ascontiguousarray(lengths[used])

    def _reading(self, g: int) -> int:
        """Group ``g``'s file opened for reading (once, whichever thread reads first; never through a
        link), refused unless it is a regular file as long as written."""
        with self._lock:
            fd = self._readers.get(g)
            if fd is not None:
                return fd
            try:
                fd = open_nofollow(self.path(g), os.O_RDONLY | os.O_NONBLOCK)  # a planted FIFO must not block
            except OSError as e:
                raise TempSpaceError(f"{self.path(g)}: cannot open this temporary group of buckets: {e.strerror}") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != self.disk[g]:
                os.close(fd)
                raise TempSpaceError(
                    f"{self.path(g)}: temporary group of buckets is corrupt "
                    f"(not a regular file of the {self.disk[g]} bytes written)"
                )
            self._readers[g] = fd
            return fd

    def _pread(self, j: int, offset: int, out: memoryview) -> None:
        """Fill ``out`` from bucket ``j``'s group file at ``offset``. The file must be a regular file as
        long as written (checked once a reader opens it)."""
        g = j // self.size
        fd = self._reading(g)
        try:
            while len(out):
                n = os.preadv(fd, [out], offset)
                if not n:
                    raise TempSpaceError(f"{self.path(g)}: temporary group of buckets is shorter than written")
                out, offset = out[n:], offset + n
        except OSError as e:
            raise TempSpaceError(f"{self.path(g)}: read error: {e.strerror}") from None

    def forget(self, j: int) -> None:
        """Bucket ``j`` is consumed (or dropped): remove the group files wholly before its own, and its
        own if ``j`` is its last bucket (pass 2 goes through the buckets in order)."""
        g = j // self.size
        upto = g + 1 if (j + 1) % self.size == 0 or j + 1 == self.k else g
        while self._gone < upto:
            self._stop_reading(self._gone)
            try:
                os.unlink(self.path(self._gone))
            except FileNotFoundError:
                pass
            self._gone += 1

    def _stop_reading(self, g: int) -> None:
        """Close group ``g``'s reading descriptor, if it has one."""
        with self._lock:
            fd = self._readers.pop(g, None)
        if fd is not None:
            os.close(fd)

    def drop_after(self, last: int) -> None:
        """Forget buckets past ``last`` (``-n`` never reaches them): the group files wholly past it go."""
        self.early[last + 1 :] = 0
        for g in range(last // self.size + 1, self.n):
            f = self._files[g]
            if f is not None:
                self._files[g] = None
                f.close()
            try:
                os.unlink(self.path(g))
            except FileNotFoundError:
                pass
