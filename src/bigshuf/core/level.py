"""One level of the two-pass scatter as data: what pass 1 left in each bucket, and pass 2's plan over it.

The output of a level is its buckets' permutations one after another, so record ``r`` of it lies
in the bucket whose span of the order holds ``r``. Both engines decide here, from the buckets'
record counts and byte sizes alone, where each bucket starts, which buckets ``-n`` still needs,
which records of which buckets an output span takes, which buckets fit in memory and which are
scattered one level deeper: the local driver (``driver.TwoPass``) over its bucket files, the Dask
engine over its pass-1 objects. Nothing here reads or writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import plan


@dataclass(frozen=True)
class Slice:
    """Records ``[first, stop)`` of bucket ``bucket``'s permutation."""

    bucket: int
    first: int
    stop: int


def fits(nbytes: int, records: int, limit: int, *, alone: bool = False) -> bool:
    """Whether a bucket of ``records`` records in ``nbytes`` is shuffled in memory rather than
    scattered one level deeper. ``alone``: a bucket of one record is loaded whatever its size, as
    it cannot be split (a Dask task holds nothing else; the local driver refuses it instead, past
    ``plan.MAX_DEPTH``, as its buffers are sized for the level)."""
    return records > 0 and ((alone and records == 1) or plan.fits_in_memory(nbytes, records, limit))


def sublevel_buckets(depth: int, nbytes: int, records: int, limit: int, unit: str, *, open_files: bool) -> int:
    """Buckets to scatter a bucket of ``records`` records in ``nbytes`` into, as level ``depth``
    (refused past ``plan.MAX_DEPTH``); ``open_files`` as ``plan.bucket_count`` takes it."""
    plan.check_depth(depth, limit, unit)
    return plan.bucket_count(nbytes, records, limit, open_files=open_files)


class Level:
    """The k buckets of one level: each one's records and bytes, where each starts in the level's
    output, and what pass 2 does with each under memory ``limit`` (``alone`` as ``fits`` takes it)."""

    def __init__(self, counts: Sequence[int] | np.ndarray, sizes: Sequence[int] | np.ndarray, limit: int, *, alone: bool = False) -> None:
        self.counts = np.asarray(counts, np.int64)
        self.sizes = np.asarray(sizes, np.int64)
        if self.counts.shape != self.sizes.shape or self.counts.ndim != 1:
            raise ValueError(f"{self.counts.shape} counts for {self.sizes.shape} sizes")
        self.k = len(self.counts)
        self.limit = limit
        self.alone = alone
        self.starts = np.zeros(self.k + 1, np.int64)  # the first output record of each bucket, and the end
        np.cumsum(self.counts, out=self.starts[1:])

    @property
    def total(self) -> int:
        """Records in all the buckets."""
        return int(self.starts[-1])

    def last(self, n: int) -> int:
        """The bucket where the level's first ``n`` records end, which ``-n n`` keeps up to (0 when
        ``n`` is 0; ``k`` when the level holds fewer than ``n``)."""
        return int(np.searchsorted(self.starts[1:], n))

    def slices(self, a: int, b: int) -> list[Slice]:
        """The output records ``[a, b)`` as slices of the buckets' permutations, in order; empty
        buckets take no slice."""
        out: list[Slice] = []
        j = int(np.searchsorted(self.starts, a, side="right")) - 1
        while b > a and j < self.k and self.starts[j] < b:
            lo, hi = max(a, int(self.starts[j])), min(b, int(self.starts[j + 1]))
            if hi > lo:
                out.append(Slice(j, lo - int(self.starts[j]), hi - int(self.starts[j])))
            j += 1
        return out

    def fits(self, j: int) -> bool:
        """Whether bucket ``j`` is shuffled in memory (else it is scattered one level deeper)."""
        return fits(int(self.sizes[j]), int(self.counts[j]), self.limit, alone=self.alone)

    def room(self, keep: int) -> int:
        """The largest of the first ``keep`` buckets that fits in memory: what one shuffled in
        memory may need (0: none does)."""
        return max((int(self.sizes[j]) for j in range(keep) if self.fits(j)), default=0)

    def following(self, keep: int) -> list[int | None]:
        """For each of the first ``keep`` buckets, the next of them shuffled in memory (None: none)."""
        after: list[int | None] = [None] * keep
        for j in range(keep - 2, -1, -1):
            after[j] = j + 1 if self.fits(j + 1) else after[j + 1]
        return after
