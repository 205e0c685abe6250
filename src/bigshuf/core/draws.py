"""Distinct numbers drawn from a range without listing it (``-i LO-HI -n K``), in random order and
in memory that follows the sample, not the range.

``Generator.choice(N, K, replace=False)`` lists all N numbers once K passes N/50: 8 bytes a
number, 800 MiB for ``-i 1-100000000 -n 3000000`` whatever ``-S`` says. It is kept where it
fits, so those seeded outputs stay as they were; elsewhere the first appearances of a stream
of uniform draws are kept, which is the same distribution.
"""

from __future__ import annotations

import numpy as np

#: Most numbers drawn at once by the sampler that keeps first appearances (bounds its working memory).
BATCH = 1 << 18

#: Bytes a number of a batch takes while its first appearances are found (the draws, ``unique``'s
#: sorted copy and indices, the new ones): a batch is held to the limit by this, down to ``MIN_BATCH``.
BATCH_BYTES = 128

#: Fewest numbers drawn at once, whatever the limit.
MIN_BATCH = 1 << 12

#: Ranges up to this many numbers ``choice`` samples without listing them, whatever the sample (NumPy's own cut).
CHOICE_NEVER_LISTS = 10_000


def distinct(rng: np.random.Generator, records: int, n: int, limit: int) -> np.ndarray:
    """``n`` distinct numbers of ``0..records-1`` (``records`` below 2**63, ``n`` at most half of
    them) in uniformly random order, in about ``limit`` bytes or less beside 8 bytes a number drawn."""
    floyd = records <= CHOICE_NEVER_LISTS or n <= records // 50  # choice's sampler that lists nothing
    if floyd or 16 * records <= limit:
        return rng.choice(records, size=n, replace=False)
    return _first_appearances(rng, records, n, max(MIN_BATCH, min(BATCH, limit // BATCH_BYTES)))


def _first_appearances(rng: np.random.Generator, records: int, n: int, batch: int = BATCH) -> np.ndarray:
    """``n`` distinct numbers of ``0..records-1`` in random order: the first appearance of each
    number in a stream of uniform draws is a uniform pick among those not yet picked. A bitmap of
    the range (``records / 8`` bytes) remembers the picks; at most ``batch`` numbers are drawn at once."""
    seen = np.zeros((records + 7) // 8, np.uint8)
    out = np.empty(n, np.int64)
    got = 0
    while got < n:
        drawn = rng.integers(0, records, min(batch, 2 * (n - got) + 64))
        _, first = np.unique(drawn, return_index=True)
        drawn = drawn[np.sort(first)]  # each number once, where it first came
        bit = np.left_shift(1, drawn & 7).astype(np.uint8)
        new = np.flatnonzero((seen[drawn >> 3] & bit) == 0)[: n - got]
        drawn = drawn[new]
        np.bitwise_or.at(seen, drawn >> 3, bit[new])
        out[got : got + len(drawn)] = drawn
        got += len(drawn)
    return out


def distinct_wide(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    """``n`` distinct numbers of ``lo..hi`` (``n`` at most half of them; any range up to
    ``0..2**64-1``) in uniformly random order, as unsigned 64-bit numbers: first appearances of a
    stream of uniform draws, drawing again for the repeats. A repeat is checked for in a sorted
    copy first, so that a sample without one (nearly every sample of so wide a range) costs 17
    bytes a number rather than the 80 finding first appearances takes."""
    chosen = np.empty(0, np.uint64)
    while len(chosen) < n:
        drawn = np.concatenate([chosen, rng.integers(lo, hi, n - len(chosen), dtype=np.uint64, endpoint=True)])
        ordered = np.sort(drawn)
        if not (ordered[1:] == ordered[:-1]).any():
            return drawn
        del ordered
        _, first = np.unique(drawn, return_index=True)
        chosen = drawn[np.sort(first)]
    return chosen
