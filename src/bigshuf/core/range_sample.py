"""Distinct numbers of a range drawn in bounded memory when the sample itself does not fit
(``-i LO-HI -n K`` with K numbers past ``-S``), kept in files under -T rather than by listing the range.

The sample is the first K distinct values of a stream of uniform draws, which is uniform over the
K-subsets by symmetry. The stream is drawn in rounds: the first draws K numbers, each later one as
many as are still missing, so the K-th distinct value can only come at a round's last draw and the
stopping point depends on nothing but counts of distinct values. Each round's draws are scattered to
files by value range, so a range's bucket alone finds which of its new numbers are new.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import numpy as np

from ..storage.safefs import create_exclusive, open_nofollow, write_all

#: Bytes a number of a bucket takes while its new numbers are found: the new draws, ``unique``'s
#: sorted copy, mask and result, their positions among the kept numbers (8 bytes each), and the kept ones.
BUCKET_BYTES = 48

#: Fewest numbers a bucket is sized for, and drawn at once, whatever the limit (3 MiB of work):
#: fewer would only multiply the files and the writes.
MIN_NUMBERS = 1 << 16

#: Bytes of one number in the files.
NUMBER_BYTES = 8


class BucketedSample:
    """``n`` distinct numbers of ``lo..hi`` (any range within ``0..2**64-1``, ``n`` at most half of
    it) drawn into files by value range in ``directory``, which the caller owns and removes: about
    half of ``limit`` bytes at work at once."""

    def __init__(self, directory: str, lo: int, hi: int, n: int, limit: int) -> None:
        self.directory, self.lo, self.hi, self.n = directory, lo, hi, n
        self.per = max(MIN_NUMBERS, limit // 2 // BUCKET_BYTES)
        self.buckets = max(1, -(-n // self.per))
        width = -(-(hi - lo + 1) // self.buckets)
        #: The first number of each bucket but the first, in order: a number's bucket is found by search.
        self.bounds = np.array([min(hi, lo + width * j) for j in range(1, self.buckets)], np.uint64)
        self.kept = [0] * self.buckets
        self.rounds = 0

    def _path(self, kind: str, j: int) -> str:
        return os.path.join(self.directory, f"{kind}-{j}")

    def draw(self, rng: np.random.Generator) -> None:
        """Draw rounds until ``n`` distinct numbers are kept."""
        missing = self.n
        while missing:
            self.rounds += 1
            fresh = [False] * self.buckets
            for start in range(0, missing, self.per):
                drawn = rng.integers(self.lo, self.hi, min(self.per, missing - start), dtype=np.uint64, endpoint=True)
                drawn.sort()
                cuts = [0, *np.searchsorted(drawn, self.bounds).tolist(), len(drawn)]
                for j in range(self.buckets):
                    if cuts[j] < cuts[j + 1]:
                        self._append("new", j, drawn[cuts[j] : cuts[j + 1]], fresh[j])
                        fresh[j] = True
                del drawn
            for j in range(self.buckets):
                if fresh[j]:
                    self._keep_new(j)
            missing = self.n - sum(self.kept)

    def _keep_new(self, j: int) -> None:
        """Add to bucket ``j``'s kept numbers those of its new draws it does not hold yet, each once."""
        path = self._path("new", j)
        new = np.unique(self._read(path, 0, None))
        os.unlink(path)
        if self.kept[j]:
            kept = self._read(self._path("kept", j), 0, self.kept[j])
            kept.sort()
            at = np.minimum(np.searchsorted(kept, new), len(kept) - 1)
            new = new[kept[at] != new]
            del kept, at
        if len(new):
            self._append("kept", j, new, self.kept[j] > 0)
            self.kept[j] += len(new)

    def _append(self, kind: str, j: int, numbers: np.ndarray, exists: bool) -> None:
        """Write ``numbers`` at the end of the file ``kind-j``, created now unless it ``exists``."""
        path = self._path(kind, j)
        fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND) if exists else create_exclusive(path, flags=os.O_WRONLY)
        try:
            write_all(fd, np.ascontiguousarray(numbers).data)
        finally:
            os.close(fd)

    def _read(self, path: str, first: int, count: int | None) -> np.ndarray:
        """``count`` numbers of the file ``path`` from its ``first`` (all the rest if None)."""
        fd = open_nofollow(path)
        try:
            if count is None:
                count = os.fstat(fd).st_size // NUMBER_BYTES - first
            out = np.empty(count, np.uint64)
            view, at = out.data.cast("B"), first * NUMBER_BYTES
            while view:
                got = os.preadv(fd, [view], at)
                if not got:  # (only if another process cut the run's private file)
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                view, at = view[got:], at + got
        finally:
            os.close(fd)
        return out

    def pieces(self, per: int) -> Iterator[np.ndarray]:
        """The kept numbers, bucket after bucket, ``per`` at most at once."""
        for j in range(self.buckets):
            for first in range(0, self.kept[j], per):
                yield self._read(self._path("kept", j), first, min(per, self.kept[j] - first))
