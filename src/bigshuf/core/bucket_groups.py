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
from collections.abc import Callable
from types import ModuleType
from typing import BinaryIO

import numpy as np

from ..errors import TempSpaceError
from . import plan
from ..quoting import quote_name
from ..storage.safefs import create_exclusive, open_nofollow
from ..storage.sliced import open_sliced
from ..storage.tempspace import full_disk_hint
from ..storage.threads import opened, owned

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


def table_parts(limit: int, k: int) -> int:
    """Parts the group files take at most under memory ``limit``: their table (``8 (k+1)`` bytes a
    part) is held within a 32nd of it."""
    return max(1, limit // 32 // (8 * (k + 1)))


def per_group(k: int) -> int:
    """Buckets a group file holds for a level of ``k`` buckets (1: no groups, they would save nothing)."""
    return 1 if k <= GROUP_FILES else -(-k // GROUP_FILES)


class BucketGroups:
    """Group files of ``k`` buckets, ``size`` to a file, in ``directory``, written while they hold
    less than ``until`` bytes in at most ``most_parts`` parts (the table of parts takes ``8 (k+1)``
    bytes a part: short records come in many small parts). Appends run on the caller's thread in
    order, writes on a writer thread (in the same order); reads run on any thread once the writes
    are done, each opening the group file for itself."""

    def __init__(self, directory: str, k: int, size: int, until: int, most_parts: int) -> None:
        self.directory, self.k, self.size, self.until = directory, k, size, until
        self.n = -(-k // size)
        self.taking = True
        self.held = 0  # bytes appended so far
        self.disk = [0] * self.n  # bytes in each group file
        self.early = np.zeros(k, np.int64)  # each bucket's bytes in its group file
        self._files: list[BinaryIO | None] = [None] * self.n
        # Per part, the end of each bucket's bytes in it (the buckets it does not write hold none):
        # rows filled as parts come, pages touched only as they are.
        self._ends = np.empty((max(1, most_parts), k + 1), np.int64)
        self._parts_held = 0
        self._starts: np.ndarray | None = None  # per part, where each group's slice of it is in the group's file
        self._gone = 0  # group files before this one are removed

    def path(self, g: int) -> str:
        """The file of group ``g``."""
        return os.path.join(self.directory, f"group-{g:05d}")

    def takes(self, nbytes: int) -> bool:
        """Whether a part of ``nbytes`` still goes to the group files: once one would take them past
        ``until`` or the table is full, that part and every later one go to the buckets' own files."""
        if self.taking and (self.held + nbytes > self.until or self._parts_held == len(self._ends)):
            self.taking = False
        return self.taking

    def plan(self, bounds: np.ndarray, counts: np.ndarray) -> list[tuple[int, int, int, BinaryIO]]:
        """Record a part whose bucket ``j`` is ``[bounds[j], bounds[j+1])`` of its data (``counts``:
        its records, zero in buckets it does not write, which all come after those it does); return
        the writes it makes: group, data range, file."""
        sizes = np.where(counts > 0, np.diff(bounds), 0)
        self.early += sizes
        ends = self._ends[self._parts_held]
        ends[0] = 0
        np.cumsum(sizes, out=ends[1:])
        self._parts_held += 1
        per = np.add.reduceat(sizes, np.arange(0, self.k, self.size))
        writes = []
        for g in np.flatnonzero(per).tolist():
            f = self._files[g]
            if f is None:
                f = self._files[g] = self._open(g)
            lo = int(bounds[g * self.size])
            writes.append((g, lo, lo + int(per[g]), f))
            self.disk[g] += int(per[g])
        self.held += int(per.sum())
        return writes

    def write(self, g: int, f: BinaryIO, part: memoryview) -> None:
        """Write a part to group ``g``'s file (on the writer thread)."""
        try:
            while part:
                part = part[f.write(part) :]
        except OSError as e:
            raise TempSpaceError(f"{quote_name(self.path(g))}: write error: {e.strerror}{full_disk_hint(e)}") from None

    def _open(self, g: int) -> BinaryIO:
        """Group ``g``'s file, created exclusively and private."""
        try:
            return owned(lambda: open_sliced(create_exclusive(self.path(g), 0o600, os.O_WRONLY | os.O_APPEND), "ab", 0))
        except OSError as e:
            raise TempSpaceError(f"{quote_name(self.path(g))}: {e.strerror}{full_disk_hint(e)}") from None

    def close(self) -> None:
        """Close the group files written (once the writer's last write to them is done), and make
        the table of where each group's slice of each part is (before any read)."""
        for g, f in enumerate(self._files):
            if f is not None:
                self._files[g] = None
                try:
                    f.close()
                except OSError as e:
                    raise TempSpaceError(f"{quote_name(self.path(g))}: write error: {e.strerror}{full_disk_hint(e)}") from None
        if self._starts is None:
            ends = self._ends[: self._parts_held]
            firsts = np.arange(0, self.k, self.size)
            slices = ends[:, np.minimum(firsts + self.size, self.k)] - ends[:, firsts]
            self._starts = np.cumsum(slices, axis=0) - slices

    def read(self, j: int, view: np.ndarray) -> None:
        """Read bucket ``j``'s bytes in its group file into ``view`` (``early[j]`` bytes long)."""
        offsets, lengths = self.parts(j)
        g = j // self.size
        with opened(lambda: self._reading(g)) as fd:
            if native is None:  # built without a C compiler: a call from Python a part
                at = 0
                for offset, length in zip(offsets.tolist(), lengths.tolist()):
                    self._pread(g, fd, offset, view.data[at : at + length])
                    at += length
                return
            try:
                got = native.read_parts(fd, view, offsets, lengths)
            except OSError as e:
                raise TempSpaceError(f"{quote_name(self.path(g))}: read error: {e.strerror}") from None
            if got != len(view):
                raise TempSpaceError(f"{quote_name(self.path(g))}: temporary group of buckets is shorter than written")

    def copy(self, j: int, write: Callable[[memoryview], None]) -> None:
        """Pass bucket ``j``'s bytes in its group file to ``write``, a MiB at most at a time."""
        buf = memoryview(bytearray(COPY_CHUNK))
        offsets, lengths = self.parts(j)
        g = j // self.size
        with opened(lambda: self._reading(g)) as fd:
            for offset, length in zip(offsets.tolist(), lengths.tolist()):
                for at in range(0, length, COPY_CHUNK):
                    n = min(COPY_CHUNK, length - at)
                    self._pread(g, fd, offset + at, buf[:n])
                    write(buf[:n])

    def parts(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Where bucket ``j``'s parts are in its group file, in the order they were written, and their lengths."""
        assert self._starts is not None, "group files read before they were closed"
        ends = self._ends[: self._parts_held]
        g = j // self.size
        lengths = ends[:, j + 1] - ends[:, j]
        offsets = self._starts[:, g] + ends[:, j] - ends[:, g * self.size]
        used = lengths > 0
        return np.ascontiguousarray(offsets[used]), np.ascontiguousarray(lengths[used])

    def _reading(self, g: int) -> int:
        """Group ``g``'s file opened for reading (never through a link), refused unless it is a
        regular file as long as written. Each read opens it for itself: no descriptor is shared
        between the threads reading and the one removing group files."""
        try:
            fd = open_nofollow(self.path(g))  # (a planted FIFO does not block it)
        except OSError as e:
            raise TempSpaceError(f"{quote_name(self.path(g))}: cannot open this temporary group of buckets: {e.strerror}") from None
        st = os.fstat(fd)
        why = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"{st.st_size} bytes where pass 1 wrote {self.disk[g]}"
        if not stat.S_ISREG(st.st_mode) or st.st_size != self.disk[g]:
            os.close(fd)
            raise TempSpaceError(f"{quote_name(self.path(g))}: temporary group of buckets is corrupt ({why})")
        return fd

    def _pread(self, g: int, fd: int, offset: int, out: memoryview) -> None:
        """Fill ``out`` from group ``g``'s file (open as ``fd``) at ``offset``."""
        try:
            while len(out):
                n = os.preadv(fd, [out], offset)
                if not n:
                    raise TempSpaceError(f"{quote_name(self.path(g))}: temporary group of buckets is shorter than written")
                out, offset = out[n:], offset + n
        except OSError as e:
            raise TempSpaceError(f"{quote_name(self.path(g))}: read error: {e.strerror}") from None

    def forget(self, j: int) -> None:
        """Bucket ``j`` is consumed (or dropped): remove the group files wholly before its own, and its
        own if ``j`` is its last bucket (pass 2 goes through the buckets in order)."""
        g = j // self.size
        upto = g + 1 if (j + 1) % self.size == 0 or j + 1 == self.k else g
        while self._gone < upto:
            try:
                os.unlink(self.path(self._gone))
            except FileNotFoundError:
                pass
            self._gone += 1

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
