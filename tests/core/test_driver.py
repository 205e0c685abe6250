"""The two-pass driver against a toy record format that lives in memory.

If the driver knows nothing about bytes or rows, a format whose records are Python ints, whose
buckets are lists and whose output is a list must get every guarantee the real formats get from
it: every record once, uniform permutations on every path, a uniform ``-n`` sample, the depth
limit, and an aborted output when a hook fails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bigshuf.core import plan, streams
from bigshuf.core.driver import Buckets, Estimate, TwoPass
from bigshuf.core.fingerprint import Fingerprint
from bigshuf.core.streams import Key, rng_for
from bigshuf.errors import InputError
from bigshuf.progress import Progress
from bigshuf.storage.tempspace import TempSpace
from bigshuf.storage.writeback import WriteBehind
from test_uniformity import assert_uniform

#: Records per block that pass 1 reads.
BLOCK = 3


class ListOutput:
    """The output side the driver talks to, kept in a list."""

    def __init__(self) -> None:
        self.records: list[int] = []
        self.total: int | None = None
        self.state = "open"
        self.bytes_written = 0

    def note_start(self) -> None:
        """Nothing to remember: no files."""

    def begin(self, total: int, restore: dict[str, Any] | None = None) -> None:
        if self.total is None:
            self.total = total

    def emit(self, records: list[int]) -> None:
        assert self.total is not None, "records emitted before the output was begun"
        self.records.extend(records)

    def commit_checked(self, read: Fingerprint) -> None:
        assert len(self.records) == self.total, "the output got a different count than it was promised"
        self.state = "committed"

    def abort(self) -> None:
        self.state = "aborted"

    def checkpoint(self) -> dict[str, Any]:
        return {}


class ListBuckets:
    """k buckets as lists, with the counts the driver reads."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.lists: list[list[int]] = [[] for _ in range(k)]
        self.records = np.zeros(k, np.int64)
        self.sizes = np.zeros(k, np.int64)
        self.dropped = 0

    def close(self) -> None:
        pass

    def remove(self, j: int) -> None:
        self.lists[j] = []

    def drop_after(self, last: int) -> None:
        self.dropped += sum(1 for lst in self.lists[last + 1 :] if lst)
        for j in range(last + 1, self.k):
            self.lists[j] = []
        self.records[last + 1 :] = 0
        self.sizes[last + 1 :] = 0


class ToyRun(TwoPass):
    """A shuffle of the ints ``items`` whose records, buckets and output are Python objects."""

    def __init__(
        self, items: list[int], limit: int, entropy: int, tmp: Path, head_count: int | None = None, size: int = 100
    ) -> None:
        super().__init__(entropy, limit, head_count, str(tmp), Progress())
        self.items = items
        self.size = size  # bytes each record counts for against the memory limit
        self.writer = WriteBehind(1 << 20)
        self.out = ListOutput()  # type: ignore[assignment]
        self.made: list[ListBuckets] = []

    @classmethod
    def for_request(cls, request: Any, inputs: list[Any], entropy: int, progress: Progress) -> ToyRun:
        raise NotImplementedError("the toy run is made directly, never from a request")

    @classmethod
    def sample(cls, request: Any, inputs: list[Any]) -> Any:
        raise NotImplementedError("the toy run is never planned")

    @classmethod
    def output_plan(cls, request: Any, inputs: list[Any]) -> Any:
        raise NotImplementedError("the toy run is never planned")

    def prepare(self) -> None:
        pass

    def shuffle(self) -> None:
        n = len(self.items)
        if plan.fits_in_memory(n * self.size, n, self.limit):
            order = rng_for(self.entropy, streams.IN_MEMORY).permutation(n)[: self.wanted(n)]
            self.begin_output(len(order))
            self.emit([self.items[i] for i in order])
            self.records += len(order)
            return
        with TempSpace(self.tmp_dir) as temp:
            self.external(self._blocks(self.items), Estimate(n * self.size, n, self.size), temp, streams.TOP, 0)

    @staticmethod
    def _blocks(items: list[int]) -> Iterator[list[int]]:
        return (items[i : i + BLOCK] for i in range(0, len(items), BLOCK))

    def make_buckets(self, directory: str, k: int, top: bool) -> Buckets:
        self.made.append(ListBuckets(k))
        return self.made[-1]

    def scatter(self, block: Any, key: Key, buckets: Buckets, keep: int, depth: int) -> int:
        assert isinstance(buckets, ListBuckets)
        for item, j in zip(block, rng_for(self.entropy, key).integers(0, buckets.k, len(block)).tolist()):
            if j < keep:
                buckets.lists[j].append(item)
                buckets.records[j] += 1
                buckets.sizes[j] += self.size
        return self.cutoff(buckets, keep)

    def shuffle_bucket(self, buckets: Buckets, j: int, key: Key, left: int | None, room: int) -> int:
        assert isinstance(buckets, ListBuckets)
        bucket = buckets.lists[j]
        chosen = [bucket[i] for i in rng_for(self.entropy, key).permutation(len(bucket))][:left]
        self.emit(chosen)
        return len(chosen)

    def bucket_blocks(self, buckets: Buckets, j: int) -> tuple[Iterator[Any], Estimate]:
        assert isinstance(buckets, ListBuckets)
        bucket = buckets.lists[j]
        return self._blocks(bucket), Estimate(len(bucket) * self.size, len(bucket), self.size)


def _run(
    tmp_path: Path, items: list[int], limit: int, seed: int, head: int | None = None, size: int = 100
) -> tuple[ToyRun, list[int], int]:
    """Run the toy shuffle; return it, its output and its passes (checking the temp space is left empty)."""
    run = ToyRun(items, limit, seed, tmp_path, head, size)
    _records, _bytes, _buckets, passes, _seconds = run.run()
    assert not list(tmp_path.iterdir()), "the run left temporary files"
    out = run.out
    assert isinstance(out, ListOutput) and out.state == "committed"
    return run, out.records, passes


@pytest.fixture
def two_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most 2 buckets a level, so that buckets overflow the memory limit and recurse."""
    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)


@pytest.mark.parametrize("path,n,passes", [("in memory", 5, 1), ("external", 40, 2)])
def test_every_record_once(tmp_path: Path, path: str, n: int, passes: int) -> None:
    items = list(range(n))
    for seed in range(5):
        _run_, out, got = _run(tmp_path, items, plan.MIN_MEMORY, seed)
        assert sorted(out) == items and got == passes, path


def test_every_record_once_recursing(tmp_path: Path, two_buckets: None) -> None:
    items = list(range(60))
    for seed in range(5):
        _run_, out, passes = _run(tmp_path, items, plan.MIN_MEMORY, seed)
        assert sorted(out) == items and passes > 2


# (path, bytes a record counts for, bucket cap): 4 records at 1 KiB, whose budget for records is
# 768 bytes with 24 bytes of bookkeeping each. 4 x 200 bytes do not fit (external); with 300-byte
# records and 2 buckets, a bucket of 3 or 4 does not fit either (recursion).
PATHS = [("in memory", 1, None), ("external", 200, None), ("recursive", 300, 2)]


@pytest.mark.parametrize("path,size,cap", PATHS)
def test_all_permutations_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, size: int, cap: int | None) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    counts: Counter[tuple[int, ...]] = Counter()
    seen: set[int] = set()
    for seed in range(1200):
        _run_, out, passes = _run(tmp_path, [0, 1, 2, 3], plan.MIN_MEMORY, seed, size=size)
        counts[tuple(out)] += 1
        seen.add(passes)
    assert {"in memory": seen == {1}, "external": min(seen) == 2, "recursive": max(seen) > 2}[path], seen
    assert_uniform(counts, list(permutations(range(4))), f"toy format, {path}")


def test_head_count_is_a_uniform_sample_and_drops_buckets(tmp_path: Path) -> None:
    """``-n 2`` of 30 records (external): two distinct records, the first and the second each
    uniform over all 30; the driver's cutoff drops the buckets past the count while pass 1 runs."""
    firsts: Counter[int] = Counter()
    seconds: Counter[int] = Counter()
    dropped = 0
    for seed in range(600):
        run, out, passes = _run(tmp_path, list(range(30)), plan.MIN_MEMORY, seed, head=2)
        assert len(out) == 2 and len(set(out)) == 2 and passes >= 2
        firsts[out[0]] += 1
        seconds[out[1]] += 1
        dropped += sum(b.dropped for b in run.made)
    assert dropped > 0, "the -n cutoff never dropped a bucket"
    assert_uniform(firsts, list(range(30)), "toy format, -n 2, first record")
    assert_uniform(seconds, list(range(30)), "toy format, -n 2, second record")


def test_depth_limit(tmp_path: Path, two_buckets: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "MAX_DEPTH", 0)
    run = ToyRun(list(range(60)), plan.MIN_MEMORY, 1, tmp_path)
    with pytest.raises(InputError, match="records could not be split below 1.0 KiB after 1 passes"):
        run.run()
    assert isinstance(run.out, ListOutput) and run.out.state == "aborted"
    assert not list(tmp_path.iterdir())


def test_a_failing_hook_aborts_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> int:
        raise OSError(28, "No space left on device")

    run = ToyRun(list(range(40)), plan.MIN_MEMORY, 1, tmp_path)
    monkeypatch.setattr(run, "shuffle_bucket", broken)
    with pytest.raises(OSError, match="No space left"):
        run.run()
    assert isinstance(run.out, ListOutput) and run.out.state == "aborted" and not run.out.records
    assert not list(tmp_path.iterdir())
