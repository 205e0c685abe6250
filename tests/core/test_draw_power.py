"""The draws every path is built on, checked with enough draws to see a small bias: the orders of a
permutation, an ``-n`` sample's ordered picks, a block shuffled in parts, the bucket draws and a
fractional rate's picks. The end-to-end tests in test_uniformity.py run each path a few hundred
times, enough to catch a path wired to the wrong stream but not a draw 10-40% off; these run the
draws themselves tens of thousands of times. ``assert_uniform`` is shown to fail on such biases."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from itertools import combinations, permutations, product

import numpy as np
import pytest

from bigshuf.core import gather, parallel
from bigshuf.core.mix import Mixer
from bigshuf.core.streams import draw_ids, rng_for
from test_uniformity import assert_uniform

ORDERS = list(permutations(range(4)))


def _swap_with_any_shuffle_counts(total: int) -> Counter:
    """The counts a classic biased shuffle (each place swapped with any place) expects over ``total``
    runs of 4 records: its 256 swap sequences enumerated, no draws."""
    ways: Counter = Counter()
    for swaps in product(range(4), repeat=4):
        order = list(range(4))
        for i, j in enumerate(swaps):
            order[i], order[j] = order[j], order[i]
        ways[tuple(order)] += 1
    return Counter({order: round(total * w / 256) for order, w in ways.items()})


def test_the_check_fails_on_biased_draws() -> None:
    """``assert_uniform`` refuses, at the draw counts used here and in the end-to-end tests: one
    order never drawn (600 runs), the swap-with-any shuffle (the draw count of the permutation test
    below), and one order 10% too likely there. (One order drawn twice as often in 600 runs is at the
    edge: z = 4.5 where 4.6 refuses.)"""
    never = Counter({order: 25 for order in ORDERS})
    never[ORDERS[0]], never[ORDERS[1]] = 0, 50
    naive = _swap_with_any_shuffle_counts(240_000)
    assert max(naive.values()) > 1.4 * 10_000 and min(naive.values()) < 0.8 * 10_000  # the bias being tested for
    tenth = Counter({order: 10_000 for order in ORDERS})
    tenth[ORDERS[3]] = 11_000
    for label, counts in (("never", never), ("swap with any", naive), ("a tenth more", tenth)):
        with pytest.raises(AssertionError):
            assert_uniform(counts, ORDERS, label)
    assert_uniform(Counter({order: 25 for order in ORDERS}), ORDERS, "even")  # and passes what is even


def test_a_permutation_draws_every_order_equally() -> None:
    """``gather.permutation``, 240,000 times from one stream: 10,000 expected for each of 24 orders."""
    rng = rng_for(1, (401,))
    counts: Counter = Counter(tuple(gather.permutation(4, rng).tolist()) for _ in range(240_000))
    assert_uniform(counts, ORDERS, "permutation")


@pytest.mark.parametrize("n,m", [(10, 2), (5, 3)])
def test_a_sample_draws_every_ordered_pick_equally(n: int, m: int) -> None:
    """``one_part_order``'s first ``m`` of ``n``: Floyd's sampling (m < n/2) and a permutation's
    head, 1,000 times each ordered pick."""
    rng = rng_for(2, (402, n))
    cells = list(permutations(range(n), m))
    counts: Counter = Counter(tuple(gather.one_part_order(n, m, rng).tolist()) for _ in range(1000 * len(cells)))
    assert_uniform(counts, cells, f"{m} of {n}")


def test_a_block_shuffled_in_parts_draws_every_order_equally(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shuffle_block`` split into four parts of one record, drawn from two streams: 12,000 blocks,
    500 expected for each order (each block its own entropy, as each run's seed)."""
    monkeypatch.setattr(gather, "PART_RECORDS", 1)
    monkeypatch.setattr(gather, "PART_DRAW", 2)
    block = np.frombuffer(b"0\n1\n2\n3\n", np.uint8)
    offsets = np.array([0, 2, 4, 6, 8], np.int64)
    assert gather.part_count(4, 8, 1 << 26) == 4
    workers = parallel.Workers(1)
    counts: Counter = Counter()
    for entropy in range(12_000):
        emitted: list = []
        assert gather.shuffle_block(block, offsets, entropy, (403,), emitted.append, workers, limit=1 << 26, held=64) == 4
        counts[tuple(int(r[:1]) for chunk in emitted for r in chunk.to_pylist())] += 1
    assert_uniform(counts, ORDERS, "in parts")


@pytest.mark.parametrize("k", [7, 300, 70_000])
def test_bucket_draws_are_uniform(k: int) -> None:
    """``draw_ids`` in each of its types (uint8, uint16, uint32): 100 expected draws a bucket and more."""
    ids = draw_ids(rng_for(3, (404,)), k, max(700_000, 100 * k))
    assert ids.dtype == (np.uint8 if k <= 256 else np.uint16 if k <= 65536 else np.uint32)
    counts = np.bincount(ids, minlength=k)
    assert len(counts) == k
    assert_uniform(Counter(dict(enumerate(counts.tolist()))), list(range(k)), f"k={k}")


def test_a_fractional_rate_picks_every_subset_equally_over_blocks() -> None:
    """Rate 1.5 on six records read as two blocks of three: three picked, each of the 20 subsets
    1,000 times expected (the hypergeometric split between blocks, then each block's choice)."""
    cells = list(combinations(range(6), 3))
    counts: Counter = Counter()
    for entropy in range(20 * 1000):
        mixer = Mixer(["a"], [0], [Fraction(3, 2)], [6])
        first, second = (mixer.pick(entropy, (405, b), [(0, 3)])[0] for b in range(2))
        counts[tuple(first.tolist() + (second + 3).tolist())] += 1
    assert_uniform(counts, cells, "rate 1.5")
