"""Distinct numbers drawn from a range without listing it (``core.draws``): exact, uniform, and the
same draws as before wherever ``Generator.choice`` fits the memory limit."""

from __future__ import annotations

import numpy as np
import pytest

from bigshuf.core import draws
from bigshuf.core.streams import rng_for


def test_first_appearances_are_distinct_and_uniform_in_value_and_position() -> None:
    """Chi-square over 20000 seeds of 5 numbers of 0..9: each number equally likely at each place.
    (Seeds 0-3999 alone gave 93.6, the next four thousands 37.8-45.6; 100000 draws of one stream
    gave 56.7, and its first pairs 66.3 on 89 degrees of freedom.)"""
    n, records, seeds = 5, 10, 20000
    counts = np.zeros((n, records))
    for seed in range(seeds):
        got = draws._first_appearances(rng_for(seed, (9,)), records, n)
        assert len(set(got.tolist())) == n
        counts[np.arange(n), got] += 1
    expected = seeds / records
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 80, counts  # 45 degrees of freedom: the 99.9th percentile is about 80


def test_first_appearances_over_several_batches_are_a_sample() -> None:
    """Half of a range larger than a batch: every number distinct and in the range."""
    records = 3 * draws.BATCH
    got = draws._first_appearances(np.random.default_rng(1), records, records // 2)
    assert len(got) == records // 2 and len(np.unique(got)) == records // 2
    assert got.min() >= 0 and got.max() < records


@pytest.mark.parametrize("records,n,limit", [(10**9, 10**4, 1 << 20), (5000, 2500, 1), (10**5, 4 * 10**4, 16 * 10**5)])
def test_a_sample_choice_can_draw_in_the_limit_is_drawn_by_choice(records: int, n: int, limit: int) -> None:
    """Where ``choice`` lists nothing (a fiftieth or less, or a small range) or its list fits the
    limit, the draws are ``choice``'s own, so seeded outputs of those ranges stay as they were."""
    got = draws.distinct(np.random.default_rng(4), records, n, limit)
    assert np.array_equal(got, np.random.default_rng(4).choice(records, size=n, replace=False))


def test_a_sample_whose_list_would_not_fit_is_drawn_without_one() -> None:
    got = draws.distinct(np.random.default_rng(4), 10**6, 10**5, 1 << 20)
    assert not np.array_equal(got, np.random.default_rng(4).choice(10**6, size=10**5, replace=False))
    assert len(np.unique(got)) == 10**5 and 0 <= got.min() and got.max() < 10**6


@pytest.mark.parametrize("records,n,limit", [(10**6, 10**5, 2 << 20), (10**7, 3 * 10**5, 5 << 20)])
def test_a_small_limit_bounds_the_batches_of_draws(records: int, n: int, limit: int) -> None:
    """Batches of 2**18 draws took 9-13 MiB beside the output whatever the limit (measured by
    review: 4.6 times -S 2M); they now follow the limit (NumPy's allocations, traced)."""
    import tracemalloc

    tracemalloc.start()
    try:
        got = draws.distinct(np.random.default_rng(5), records, n, limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(np.unique(got)) == n
    assert peak - got.nbytes <= 2 * limit
