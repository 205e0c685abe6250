"""Statistical tests that every path draws every permutation (or sample) equally often.

Each test runs a fixed list of seeds, so CI is deterministic; the threshold is a chi-square
upper tail of ALPHA, i.e. a correct implementation fails a given test for 1 seed list in
10,000. Chi-square tails use the Wilson-Hilferty normal approximation (accurate to a few
percent in p at these degrees of freedom), so the suite needs no SciPy.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from itertools import combinations, permutations
from pathlib import Path
from typing import Any

import pytest

import bigshuf
from bigshuf.core import gather, parallel, plan
from helpers import split_records, write_records

ALPHA = 1e-4


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df), Wilson-Hilferty approximation."""
    z = ((x / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


#: Fewest draws a cell must expect for the per-cell checks: a correct shuffle then misses a cell
#: with probability under e**-15 (3e-7) a cell, and a cell's count is near enough to normal.
PER_CELL_FROM = 15


def assert_uniform(counts: Counter, cells: list, label: str) -> None:
    """Chi-square goodness of fit of ``counts`` over ``cells`` against equal frequencies, and where
    each cell expects ``PER_CELL_FROM`` draws or more, each cell alone: seen, and within a two-sided
    z-test at ``ALPHA`` shared among the cells. A chi-square over many cells hardly sees one cell
    never drawn or drawn twice as often (the helper's review: 12% and 26% of 600 runs over 24 orders)."""
    total = sum(counts.values())
    assert set(counts) <= set(cells), f"{label}: impossible outcome {set(counts) - set(cells)}"
    expected = total / len(cells)
    stat = sum((counts.get(c, 0) - expected) ** 2 / expected for c in cells)
    p = chi2_sf(stat, len(cells) - 1)
    assert p > ALPHA, f"{label}: chi2={stat:.1f} df={len(cells) - 1} p={p:.2e}"
    if expected < PER_CELL_FROM:
        return
    unseen = [c for c in cells if not counts.get(c)]
    assert not unseen, f"{label}: never drawn: {unseen[:5]} ({expected:.1f} expected each)"
    share = 1 / len(cells)
    spread = math.sqrt(total * share * (1 - share))
    worst = max(cells, key=lambda c: abs(counts.get(c, 0) - expected))
    z = (counts.get(worst, 0) - expected) / spread
    assert math.erfc(abs(z) / math.sqrt(2)) * len(cells) > ALPHA, f"{label}: {worst} drawn {counts.get(worst, 0)} times, {expected:.1f} expected (z={z:.1f})"


def records_of(n: int, size: int) -> list[bytes]:
    """n distinct records of ``size`` bytes each, so memory limits act predictably."""
    return [(b"%d:" % i).ljust(size, b"x") for i in range(n)]


# (label, memory, bucket cap, record size): 4 records of `size` bytes under `memory`.
# 1 KiB leaves 768 bytes for records: 4 x 200-byte records do not fit (external), and with
# 300-byte records and 2 buckets a bucket of 3 or 4 records overflows (recursion, p=10/16).
PATHS = [
    ("in-memory", "64M", None, 200),
    ("in-memory parts", "64M", None, 200),  # split into parts as a block of millions of records is
    ("external", "1K", None, 200),
    ("recursive", "1K", 2, 300),
]


@pytest.mark.parametrize("label,memory,cap,size", PATHS)
def test_all_permutations_equally_likely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None, size: int
) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    if label == "in-memory parts":
        # One record a part, parts drawn from two streams, the parts permuted on three workers.
        monkeypatch.setattr(gather, "PART_RECORDS", 1)
        monkeypatch.setattr(gather, "PART_DRAW", 2)
        monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    records = records_of(4, size)
    src = write_records(tmp_path / "in", records)
    out = tmp_path / "out"
    counts: Counter = Counter()
    passes: Counter = Counter()
    for seed in range(24 * 25):  # 25 runs an order expected: the suite's time limit allows no more
        stats = bigshuf.shuffle(src, out, memory=memory, seed=seed, tmp_dir=tmp_path, sync=False, threads=3)
        counts[tuple(records.index(r) for r in split_records(out.read_bytes()))] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(4))), label)
    deeper = sum(passes[p] for p in passes if p > 2)
    if label.startswith("in-memory"):
        assert set(passes) == {1}
    elif label == "external":
        assert min(passes) == 2 and deeper < 100  # a bucket holds all 4 records with p=1/64
    else:
        assert min(passes) >= 2 and deeper > 300


@pytest.mark.parametrize("grouped", ["all", "first record", "two buckets"])
def test_an_input_of_unknown_size_draws_every_permutation_equally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grouped: str
) -> None:
    """A pipe's run: 1024 buckets, its first bytes (all, or the first record's) in group files; and
    two buckets, so that pass 2 shuffles buckets of several records (of 1024, each holds one)."""
    from bigshuf.formats import line_run
    from bigshuf.storage.sources import GeneratedSource

    if grouped == "first record":
        monkeypatch.setattr(line_run, "grouped_bytes", lambda limit: 201)
    buckets = 2 if grouped == "two buckets" else 1024
    if buckets == 2:
        monkeypatch.setattr(plan, "MAX_BUCKETS", 2)
    records = records_of(4, 200)
    data = b"".join(r + b"\n" for r in records)
    out = tmp_path / "out"
    counts: Counter = Counter()
    two_levels = 0
    for seed in range(24 * 25):
        source = GeneratedSource("piped", lambda: iter([data[:500], data[500:]]))
        stats = bigshuf.shuffle([source], out, memory="1K", seed=seed, tmp_dir=tmp_path, sync=False, threads=2)
        if buckets == 1024:
            assert stats.passes == 2 and stats.buckets == 1024
        else:  # 4 records in 2 buckets (a bucket of all 4 does not fit 1K: split again)
            assert stats.passes >= 2 and stats.buckets >= 2
            two_levels += stats.passes == 2
        counts[tuple(records.index(r) for r in split_records(out.read_bytes()))] += 1
    assert buckets == 1024 or two_levels > 400
    assert_uniform(counts, list(permutations(range(4))), f"unknown size, {grouped} grouped")


def test_records_holding_the_separator_draw_every_order_equally(tmp_path: Path) -> None:
    """Records cut where their source says (``-e`` operands holding a newline), on three workers."""
    from bigshuf.storage.sources import BytesSource

    records = [b"a\nb", b"c", b"d\n\ne"]
    out = tmp_path / "out"
    counts: Counter = Counter()
    for seed in range(6 * 40):
        bigshuf.shuffle(BytesSource.of_records("-e", records, b"\n"), out, seed=seed, sync=False, threads=3)
        data, order = out.read_bytes(), []
        while data:
            order.append(next(i for i, r in enumerate(records) if data.startswith(r + b"\n")))
            data = data[len(records[order[-1]]) + 1 :]
        counts[tuple(order)] += 1
    assert_uniform(counts, list(permutations(range(3))), "records holding the separator")


def test_small_buckets_shuffled_ahead_draw_every_order_equally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipe's small buckets shuffled ahead on the workers (handed over whatever their size here;
    8 buckets, so 4 probe records among 36 others often share one): the probes' order is uniform."""
    from bigshuf.core import driver
    from bigshuf.formats import line_run
    from bigshuf.storage.sources import GeneratedSource

    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    monkeypatch.setattr(driver, "level_buckets", lambda est, limit, files=1: 8)
    shuffled = 0
    real = line_run.shuffled_in_one_part

    def counted(*args: Any) -> Any:
        nonlocal shuffled
        shuffled += 1
        return real(*args)

    monkeypatch.setattr(line_run, "shuffled_in_one_part", counted)
    records = records_of(40, 29)  # 1200 bytes: more than -S 2K reads at once
    probes = records[::10]
    data = b"".join(r + b"\n" for r in records)
    out = tmp_path / "out"
    counts: Counter = Counter()
    two_levels = 0
    for seed in range(24 * 25):
        source = GeneratedSource("piped", lambda: iter([data[:500], data[500:]]))
        stats = bigshuf.shuffle([source], out, memory="2K", seed=seed, tmp_dir=tmp_path, sync=False, threads=2)
        assert stats.passes == 2 and stats.buckets == 8
        counts[tuple(probes.index(r) for r in split_records(out.read_bytes()) if r in probes)] += 1
    assert shuffled > 24 * 25 * 2  # of 7 buckets a run after the first, as many as the limit lets be held ahead
    assert_uniform(counts, list(permutations(range(4))), "small buckets shuffled ahead")


def test_positions_uniform_across_many_blocks(tmp_path: Path) -> None:
    # 12 records of 100 bytes through a 512-byte read buffer: pass 1 sees several blocks.
    records = records_of(12, 100)
    src = write_records(tmp_path / "in", records)
    out = tmp_path / "out"
    counts: Counter = Counter()
    for seed in range(1200):
        stats = bigshuf.shuffle(src, out, memory="1K", seed=seed, sync=False)
        assert stats.passes >= 2
        for pos, r in enumerate(split_records(out.read_bytes())):
            counts[(records.index(r), pos)] += 1
    assert_uniform(counts, [(i, p) for i in range(12) for p in range(12)], "positions")


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_head_count_samples_ordered_pairs_uniformly(tmp_path: Path, label: str, memory: str) -> None:
    records = records_of(6, 150)
    src = write_records(tmp_path / "in", records)
    out = tmp_path / "out"
    counts: Counter = Counter()
    for seed in range(30 * 40):
        bigshuf.shuffle(src, out, memory=memory, seed=seed, head_count=2, sync=False)
        counts[tuple(records.index(r) for r in split_records(out.read_bytes()))] += 1
    assert_uniform(counts, list(permutations(range(6), 2)), label)


def test_input_range_sample_is_uniform(tmp_path: Path) -> None:
    out = tmp_path / "out"
    counts: Counter = Counter()
    for seed in range(30 * 40):
        bigshuf.shuffle_range(1, 6, out, seed=seed, head_count=2, sync=False)
        counts[tuple(int(x) for x in split_records(out.read_bytes()))] += 1
    assert_uniform(counts, list(permutations(range(1, 7), 2)), "-i -n")


def test_input_range_sample_past_memory_is_uniform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-i 1-6 -n 3`` drawn into files as a sample past memory is (one number a bucket, one drawn
    at once): each subset equally often (40 runs a subset expected), and each number first as
    often; the draws repeated a number (a second round, or more) in some runs and not in others."""
    from bigshuf import api
    from bigshuf.core import range_sample

    monkeypatch.setattr(api, "SAMPLE_NUMBER_BYTES", 1 << 40)
    monkeypatch.setattr(range_sample, "MIN_NUMBERS", 1)
    monkeypatch.setattr(range_sample, "BUCKET_BYTES", 1 << 40)
    real, rounds = range_sample.BucketedSample.draw, Counter()

    def draw(self: range_sample.BucketedSample, rng: Any) -> None:
        real(self, rng)
        assert self.buckets == 3
        rounds[self.rounds] += 1

    monkeypatch.setattr(range_sample.BucketedSample, "draw", draw)
    out = tmp_path / "out"
    subsets: Counter = Counter()
    firsts: Counter = Counter()
    for seed in range(20 * 40):
        bigshuf.shuffle_range(1, 6, out, seed=seed, head_count=3, tmp_dir=tmp_path, sync=False)
        got = [int(x) for x in split_records(out.read_bytes())]
        subsets[tuple(sorted(got))] += 1
        firsts[got[0]] += 1
    assert_uniform(subsets, list(combinations(range(1, 7), 3)), "-i -n past memory, subsets")
    assert_uniform(firsts, list(range(1, 7)), "-i -n past memory, first number")
    assert sum(rounds.values()) == 20 * 40 and rounds[1] > 0 and rounds[2] > 0 and max(rounds) >= 3, rounds


@pytest.mark.parametrize("label,memory,newline", [
    ("in-memory", "64M", False), ("external", "1K", False), ("an operand holding a newline", "64M", True),
])
def test_echo_sample_is_uniform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, newline: bool) -> None:
    """``-e A B C -n 2`` (operands of 300 bytes: at -S 1K through 2 buckets, the count often reached
    within one of 2; one holding a newline, cut where the operands end): each ordered pair equally
    often (20 runs a pair expected)."""
    from bigshuf.storage.sources import BytesSource

    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)

    records = records_of(3, 300)
    if newline:
        records[1] = records[1][:100] + b"\n" + records[1][101:]
    out = tmp_path / "out"
    counts: Counter = Counter()
    passes: Counter = Counter()
    for seed in range(6 * 20):
        source = BytesSource.of_records("-e", records, b"\n")
        assert (source.ends is not None) == newline
        stats = bigshuf.shuffle(source, out, memory=memory, seed=seed, head_count=2, tmp_dir=tmp_path, sync=False)
        data, got = out.read_bytes(), []
        while data:
            got.append(next(i for i, r in enumerate(records) if data.startswith(r + b"\n")))
            data = data[len(records[got[-1]]) + 1 :]
        assert len(got) == len(set(got)) == 2, got  # two of the operands, whole, neither twice
        counts[tuple(got)] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(3), 2)), f"-e -n, {label}")
    assert (set(passes) == {1}) if memory == "64M" else (min(passes) >= 2), passes


def test_echo_repeat_draws_are_uniform_and_independent(tmp_path: Path) -> None:
    """``-r -e a b c -n 10000`` with seeds 0-2: each operand a third of the draws, each of the 9 pairs of
    consecutive draws a ninth (as ``test_repeat_draws_are_uniform_and_independent`` for a file)."""
    from bigshuf.storage.sources import BytesSource

    records = [b"a", b"b", b"c"]
    out = tmp_path / "out"
    counts: Counter = Counter()
    pairs: Counter = Counter()
    for seed in range(3):
        bigshuf.shuffle(BytesSource.of_records("-e", records, b"\n"), out, seed=seed, head_count=10000, repeat=True, sync=False)
        got = split_records(out.read_bytes())
        assert len(got) == 10000
        counts.update(got)
        pairs.update(zip(got, got[1:]))
    assert_uniform(counts, records, "-r -e counts")
    assert_uniform(pairs, [(a, b) for a in records for b in records], "-r -e pairs")


@pytest.mark.parametrize("repeat", [False, True])
def test_input_range_draws_shuffled_as_a_listed_range_are_uniform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repeat: bool) -> None:
    """``-i 1-3 -n 2`` (more than half the range: the range listed and shuffled) and ``-r -i 1-3 -n 2``
    (the draws shuffled again as a generated input), neither with a header: each ordered pair, with
    ``-r`` each pair, equally often (25 runs a pair expected)."""
    from bigshuf import api

    shuffled: list[str] = []
    real = api.shuffle

    @functools.wraps(real)  # (shuffle_range checks its keywords against shuffle's signature)
    def seen(inputs: Any, *args: Any, **kwargs: Any) -> Any:
        shuffled.append(type(inputs).__name__)
        return real(inputs, *args, **kwargs)

    monkeypatch.setattr(api, "shuffle", seen)
    out = tmp_path / "out"
    counts: Counter = Counter()
    cells = [(a, b) for a in range(1, 4) for b in range(1, 4) if repeat or a != b]
    for seed in range(len(cells) * 25):
        bigshuf.shuffle_range(1, 3, out, seed=seed, head_count=2, repeat=repeat, sync=False)
        counts[tuple(int(x) for x in split_records(out.read_bytes()))] += 1
    assert set(shuffled) == {"GeneratedSource" if repeat else "RangeSource"}, set(shuffled)
    assert_uniform(counts, cells, "-r -i -n" if repeat else "-i -n, most of the range")


def test_input_range_repeat_draws_written_as_drawn_are_uniform_and_independent(tmp_path: Path) -> None:
    """``-r -i 1-5 -n 30000`` with -S 64K: more draws than are shuffled again, written as drawn."""
    from bigshuf.storage.sources import RangeSource

    assert RangeSource(1, 5, b"\n").drawn_unlisted(True, 30000, 0, 1, plan.block_budget(64 << 10))
    out = tmp_path / "out"
    bigshuf.shuffle_range(1, 5, out, seed=1, head_count=30000, repeat=True, memory="64K", sync=False)
    got = [int(x) for x in split_records(out.read_bytes())]
    assert len(got) == 30000
    assert_uniform(Counter(got), list(range(1, 6)), "-r -i counts")
    assert_uniform(Counter(zip(got, got[1:])), [(a, b) for a in range(1, 6) for b in range(1, 6)], "-r -i pairs")


@pytest.mark.parametrize("repeat", [False, True])
def test_input_range_sample_of_records_under_a_header_is_uniform(tmp_path: Path, repeat: bool) -> None:
    """``-i 1-12 --header=2 --lines-per-record=2 -n 2``: the header 1 2 on top, then two of the
    five records (3 4 ... 11 12), each ordered pair (or, with ``-r``, each pair) equally likely."""
    out = tmp_path / "out"
    counts: Counter = Counter()
    firsts = list(range(3, 12, 2))
    for seed in range(30 * 25 if repeat else 30 * 20):
        bigshuf.shuffle_range(1, 12, out, seed=seed, head_count=2, repeat=repeat, header=2, lines_per_record=2, sync=False)
        got = [int(x) for x in split_records(out.read_bytes())]
        assert got[:2] == [1, 2] and len(got) == 6 and got[3] == got[2] + 1 and got[5] == got[4] + 1, got
        counts[(got[2], got[4])] += 1
    pairs = [(a, b) for a in firsts for b in firsts if repeat or a != b]
    assert_uniform(counts, pairs, "-i -n with --header and --lines-per-record")


def test_repeat_draws_are_uniform_and_independent(tmp_path: Path) -> None:
    records = records_of(5, 10)
    src = write_records(tmp_path / "in", records)
    out = tmp_path / "out"
    bigshuf.shuffle(src, out, seed=1, head_count=25000, repeat=True)
    got = [records.index(r) for r in split_records(out.read_bytes())]
    assert_uniform(Counter(got), list(range(5)), "repeat counts")
    assert_uniform(Counter(zip(got, got[1:])), [(a, b) for a in range(5) for b in range(5)], "repeat pairs")
