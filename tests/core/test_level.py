"""core.level: one level of the scatter as data, the decisions both engines take from it."""

from __future__ import annotations

import numpy as np
import pytest

from bigshuf.core import plan
from bigshuf.core.level import Level, Slice, fits, sublevel_buckets
from bigshuf.errors import InputError

LIMIT = 64 << 10


def test_starts_and_total_skip_nothing_for_empty_buckets() -> None:
    level = Level([3, 0, 2, 0], [30, 0, 20, 0], LIMIT)
    assert level.k == 4 and level.total == 5
    assert level.starts.tolist() == [0, 3, 3, 5, 5]


def test_refuses_counts_and_sizes_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        Level([1, 2], [10], LIMIT)


@pytest.mark.parametrize(
    "n, last",
    [(0, 0), (1, 0), (3, 0), (4, 2), (5, 2), (6, 4)],  # -n 0, inside a bucket, at its end, past an empty one, past all
)
def test_last_is_the_bucket_where_the_count_is_reached(n: int, last: int) -> None:
    counts = [3, 0, 2, 0]
    level = Level(counts, [1] * 4, LIMIT)
    assert level.last(n) == last == int(np.searchsorted(np.cumsum(counts), n))


def test_slices_of_a_span_crossing_buckets() -> None:
    level = Level([3, 0, 2, 4], [3, 0, 2, 4], LIMIT)
    assert level.slices(2, 7) == [Slice(0, 2, 3), Slice(2, 0, 2), Slice(3, 0, 2)]


def test_slices_of_a_span_inside_one_bucket() -> None:
    level = Level([3, 0, 5], [3, 0, 5], LIMIT)
    assert level.slices(4, 6) == [Slice(2, 1, 3)]
    assert level.slices(3, 4) == [Slice(2, 0, 1)]  # starting where an empty bucket ends


def test_slices_of_nothing() -> None:
    level = Level([0, 3, 0], [0, 3, 0], LIMIT)
    assert level.slices(0, 0) == []  # -n 0
    assert level.slices(2, 2) == []
    assert level.slices(3, 3) == []  # at the end
    assert Level([0, 0], [0, 0], LIMIT).slices(0, 0) == []
    assert level.slices(0, 3) == [Slice(1, 0, 3)]  # the empty buckets take none


def test_spans_tile_every_bucket_once() -> None:
    """Any cut of ``[0, n)`` into spans (shards, -n) takes each record of the first ``n`` once, in order."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        counts = rng.integers(0, 4, rng.integers(1, 8))
        level = Level(counts, counts * 10, LIMIT)
        n = int(rng.integers(0, level.total + 1))
        cuts = sorted({0, n, *rng.integers(0, n + 1, 3).tolist()})
        taken = [
            (s.bucket, r) for a, b in zip(cuts, cuts[1:]) for s in level.slices(a, b) for r in range(s.first, s.stop)
        ]
        wanted = [(j, r) for j, c in enumerate(counts.tolist()) for r in range(c)][:n]
        assert taken == wanted
        kept = level.last(n) + 1 if n else 0
        assert {j for j, _ in taken} <= set(range(kept))


def test_fits_takes_no_empty_bucket_and_one_record_alone_where_asked() -> None:
    budget = plan.block_budget(LIMIT)
    assert not fits(0, 0, LIMIT)
    assert fits(budget - plan.META_PER_RECORD, 1, LIMIT)
    assert not fits(budget, 1, LIMIT)
    assert fits(budget, 1, LIMIT, alone=True)
    assert not fits(budget, 2, LIMIT, alone=True)


def test_room_and_following_count_only_buckets_that_fit() -> None:
    big = plan.block_budget(LIMIT)
    level = Level([1, 0, 5, 9, 2], [100, 0, 500, big, 200], LIMIT)
    assert [level.fits(j) for j in range(5)] == [True, False, True, False, True]
    assert level.room(5) == 500 and level.room(2) == 100 and level.room(0) == 0
    assert level.following(5) == [2, 2, 4, 4, None]
    assert level.following(4) == [2, 2, None, None]


def test_bucket_count_caps_open_files_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "_open_file_allowance", lambda: 3)
    nbytes, records = 50 * LIMIT, 1000
    needed = max(2, plan.buckets_needed(nbytes + plan.META_PER_RECORD * records, LIMIT))
    assert needed > 3
    assert plan.bucket_count(nbytes, records, LIMIT) == 3
    assert plan.bucket_count(nbytes, records, LIMIT, files=2) == 2  # a tar bucket's two files: one bucket, but never fewer than 2
    assert plan.bucket_count(nbytes, records, LIMIT, open_files=False) == needed
    assert plan.bucket_count(nbytes, records, LIMIT, max_buckets=5, open_files=False) == 5
    assert plan.bucket_count(1, 1, LIMIT, open_files=False) == 2


def test_sublevel_buckets_as_the_dask_engine_counted_them() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        nbytes, records = int(rng.integers(1, 1 << 30)), int(rng.integers(1, 1 << 20))
        before = max(2, plan.buckets_needed(nbytes + plan.META_PER_RECORD * records, LIMIT))
        assert sublevel_buckets(1, nbytes, records, LIMIT, "lines", open_files=False) == before


def test_sublevel_buckets_refuse_past_the_deepest_level() -> None:
    sublevel_buckets(plan.MAX_DEPTH, 10 * LIMIT, 10, LIMIT, "rows", open_files=False)
    with pytest.raises(InputError, match="rows could not be split below 64.0 KiB after 17 passes"):
        sublevel_buckets(plan.MAX_DEPTH + 1, 10 * LIMIT, 10, LIMIT, "rows", open_files=False)
