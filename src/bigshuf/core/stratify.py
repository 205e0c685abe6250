"""``--stratify``: splits that hold each source's share, each still a uniform subset in uniform order.

With weighted sources, the multiset holds m_s copies of source s's records, M in all. The split
totals T_v are resolved over M as ``--split`` resolves them (``layout.split_counts``), then each
split takes from every source in proportion to what the source has left (``split_table``).

Pass 1 decides which split each copy goes to block by block in input order, as the fractional
rates' picks are decided: a block holding c of a source's R copies still to come takes a
multivariate hypergeometric share of each split's remaining picks from that source, placed
uniformly among its c copies. That is a uniformly random assignment with exactly the table's
counts. The k buckets are partitioned among the splits in output order (``bucket_bounds``); a
copy draws its bucket uniformly from its split's range, so pass 2, writing buckets in order,
writes split 0's records in uniformly random order, then split 1's, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from ..errors import InputError, option
from ..quoting import quote_arg
from ..storage.layout import SplitPart, split_counts
from .streams import Key, rng_for

#: NumPy's multivariate hypergeometric draws take fewer than this many copies in all.
DRAW_LIMIT = 10**9


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` shared out in proportion to ``weights`` (summing to at least ``total``, or all 0
    with ``total`` 0): each its floor, and one more to the largest remainders (ties to the
    earlier). No share exceeds its weight."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    exact = [Fraction(total * w, whole) for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def split_table(totals: Sequence[int], sizes: Sequence[int], taker: int) -> list[list[int]]:
    """Copies of each source (``sizes``: m_s) in each split (``totals``: T_v): the splits in order,
    but for ``taker`` (the ``rest`` split, else the last), each take their total from the sources
    in proportion to what each has left (``largest_remainder``); ``taker`` takes what remains.
    Row v sums to T_v, column s to m_s."""
    left = list(sizes)
    table: list[list[int]] = [[] for _ in totals]
    for v, total in enumerate(totals):
        if v != taker:
            table[v] = largest_remainder(total, left)
            left = [a - b for a, b in zip(left, table[v])]
    table[taker] = left
    return table


class Stratifier:
    """Which split each copy of each source goes to, drawn block by block in input order, and the
    ranges of buckets the splits own."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int], parts: Sequence[SplitPart]) -> None:
        self.names = list(names)
        self.totals = split_counts(tuple(parts), sum(sizes))
        taker = next((v for v, p in enumerate(parts) if p.rest), len(parts) - 1)
        self.table = split_table(self.totals, sizes, taker)
        # Picks still to make per source and split (a copy of the table's columns).
        self.left = np.array(self.table, np.int64).T.copy()
        self.dtype = np.uint8 if len(parts) <= 1 << 8 else np.int32
        for name, m in zip(names, sizes):
            if m >= DRAW_LIMIT:
                raise InputError(f"source {quote_arg(name)} has {m} records in the mix: {option('stratify')} supports fewer than 10^9; split the source")

    @property
    def splits(self) -> int:
        """How many splits there are."""
        return len(self.totals)

    def assign(self, entropy: int, key: Key, copies: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """For a block holding ``copies`` copies of each source (``(source, count)`` in order), the
        split of each copy, in the copies' order, drawn from stream ``key``; blocks come in input order."""
        rng = rng_for(entropy, key)
        out = []
        for s, c in copies:
            labels = np.repeat(np.arange(self.splits, dtype=self.dtype), self.take(rng, s, c))
            rng.shuffle(labels)
            out.append(labels)
        return out

    def take(self, rng: np.random.Generator, s: int, c: int) -> np.ndarray:
        """How many of the next ``c`` copies of source ``s`` go to each split (a multivariate
        hypergeometric draw from ``rng`` of what each split still needs); the Dask engine's client
        draws these for each block, its tasks place them."""
        want = self.left[s]
        remaining = int(want.sum())
        if c > remaining:
            raise InputError(
                f"source {quote_arg(self.names[s])}: more records than were counted before the shuffle (did a file change?)"
            )
        got: np.ndarray = want.copy() if c == remaining else rng.multivariate_hypergeometric(want, c)
        want -= got
        return got

    def cut(
        self, per_source: Sequence[tuple[int, int]], drawn: Sequence[np.ndarray], pieces: Sequence[Sequence[tuple[int, int]]]
    ) -> list[np.ndarray]:
        """A block's splits (``drawn`` by ``assign`` for its copies ``per_source``) cut into its pieces'
        shares: each piece's copies (``(source, copies)`` in order) take the next of their source's."""
        where = {s: i for i, (s, _c) in enumerate(per_source)}
        seen = [0] * len(per_source)
        out = []
        for piece in pieces:
            parts = [np.empty(0, self.dtype)]
            for s, c in piece:
                i = where[s]
                parts.append(drawn[i][seen[i] : seen[i] + c])
                seen[i] += c
            out.append(np.concatenate(parts))
        return out

    def bucket_bounds(self, k: int) -> np.ndarray:
        """The first bucket of each split and the end (``splits + 1`` bounds) when ``k`` buckets
        (at least one a split) are shared among the splits in output order: one each, and the rest
        in proportion to the splits' totals by largest remainder."""
        assert k >= self.splits
        weights = self.totals if sum(self.totals) else [1] * self.splits
        sizes = [1 + extra for extra in largest_remainder(k - self.splits, weights)]
        bounds = np.zeros(self.splits + 1, np.int64)
        np.cumsum(sizes, out=bounds[1:])
        return bounds


def split_ids(rng: np.random.Generator, bounds: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """A bucket for each copy, uniform over its split's range (``bounds``; ``labels``: the copies'
    splits), in the smallest unsigned type that holds ``k`` buckets."""
    dtype = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.uint32
    first: np.ndarray = bounds[labels]
    ids: np.ndarray = first + rng.integers(0, bounds[1:][labels] - first)
    return ids.astype(dtype)
