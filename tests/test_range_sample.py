"""``-i LO-HI -n K`` whose sample does not fit in memory: drawn into files under -T, never by
listing the range (which ran for ever at ``-i 1-18446744073709551615 -n 5000 -S 64K``)."""

from __future__ import annotations

import errno
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from helpers import split_records, temp_leftovers

import bigshuf
from bigshuf import api
from bigshuf.errors import TempSpaceError
from bigshuf.storage.sources import RangeSource

if TYPE_CHECKING:  # (imported by the tests that use it, so that on code without it the others run, and fail)
    from bigshuf.core import range_sample


@pytest.fixture
def unlisted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail at once a run that would list its range (rather than run for minutes, or for ever)."""
    real = api.shuffle

    @functools.wraps(real)  # (shuffle_range checks its keywords against shuffle's)
    def shuffle(inputs: Any, output: Any = None, **options: Any) -> Any:
        assert not isinstance(inputs, RangeSource), f"the range {inputs.name} was listed"
        return real(inputs, output, **options)

    monkeypatch.setattr(api, "shuffle", shuffle)


@pytest.mark.parametrize("lo,hi,k,memory", [
    (1, 2**64 - 1, 5000, "64K"),  # never ended
    (1, 10**8, 100_000, "1M"),  # the range listed through the external shuffle: 37 s at 3e6 and -S 10M
    (0, 10**10, 100_000, "1M"),
    (5, 200_004, 100_000, "1M"),  # half the range, the most that is drawn
])
def test_sample_past_memory_is_distinct_and_in_range(tmp_path: Path, unlisted: None, lo: int, hi: int, k: int, memory: str) -> None:
    out = tmp_path / "out"
    temp = tmp_path / "temp"
    temp.mkdir()
    bigshuf.shuffle_range(lo, hi, out, head_count=k, memory=memory, seed=7, tmp_dir=temp, sync=False)
    numbers = [int(x) for x in split_records(out.read_bytes())]
    assert len(numbers) == len(set(numbers)) == k
    assert lo <= min(numbers) and max(numbers) <= hi
    assert temp_leftovers(temp) == []


def test_shaped_sample_past_memory_keeps_whole_records(tmp_path: Path, unlisted: None) -> None:
    """``--header 2 --lines-per-record 3``: the header on top, then whole distinct records."""
    out = tmp_path / "out"
    bigshuf.shuffle_range(10, 10**9 + 10, out, head_count=30_000, header=2, lines_per_record=3, memory="1M",
                          seed=3, tmp_dir=tmp_path, sync=False)
    numbers = [int(x) for x in split_records(out.read_bytes())]
    assert numbers[:2] == [10, 11] and len(numbers) == 2 + 3 * 30_000
    records = np.array(numbers[2:]).reshape(-1, 3)
    assert ((records[:, 0] - 12) % 3 == 0).all() and (records[:, 1] == records[:, 0] + 1).all() and (records[:, 2] == records[:, 0] + 2).all()
    assert len(set(records[:, 0].tolist())) == 30_000
    assert temp_leftovers(tmp_path) == ["out"]


def test_sample_past_memory_is_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same seed, the same output; the sample drawn in several rounds and buckets."""
    from bigshuf.core import range_sample

    monkeypatch.setattr(api, "SAMPLE_NUMBER_BYTES", 1 << 40)
    monkeypatch.setattr(range_sample, "MIN_NUMBERS", 4096)
    monkeypatch.setattr(range_sample, "BUCKET_BYTES", 1 << 40)
    real, rounds = range_sample.BucketedSample.draw, []

    def draw(self: range_sample.BucketedSample, rng: np.random.Generator) -> None:
        real(self, rng)
        rounds.append((self.rounds, self.buckets))

    monkeypatch.setattr(range_sample.BucketedSample, "draw", draw)
    outputs = []
    for name in ("a", "b"):
        bigshuf.shuffle_range(1, 40_000, tmp_path / name, head_count=20_000, seed=11, tmp_dir=tmp_path, sync=False)
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1] and len(set(split_records(outputs[0]))) == 20_000
    assert rounds[0] == rounds[1] and rounds[0][0] > 2 and rounds[0][1] == 5, rounds


def test_fitting_samples_are_not_drawn_into_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample that fits in memory is chosen there, as before (its seeded output unchanged)."""
    from bigshuf.core import range_sample

    def refuse(*args: Any) -> None:
        raise AssertionError("drawn into files")

    monkeypatch.setattr(range_sample.BucketedSample, "draw", refuse)
    bigshuf.shuffle_range(1, 2**64 - 1, tmp_path / "out", head_count=4000, memory="64K", seed=1, sync=False)
    assert len(split_records((tmp_path / "out").read_bytes())) == 4000


def test_full_disk_while_drawing_is_one_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write of the sample's files failing: a TempSpaceError saying so, nothing left in -T, no output."""
    from bigshuf.core import range_sample

    def full(self: range_sample.BucketedSample, j: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(range_sample.BucketedSample, "_keep_new", full)
    temp = tmp_path / "temp"
    temp.mkdir()
    with pytest.raises(TempSpaceError, match="cannot write the sample of 1-100000000: No space left on device; the temporary directory is full"):
        bigshuf.shuffle_range(1, 10**8, tmp_path / "out", head_count=100_000, memory="1M", tmp_dir=temp)
    assert temp_leftovers(temp) == []
    assert not (tmp_path / "out").exists()


def test_interrupted_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the shuffle reads the sample's files: they go with the run's."""
    from bigshuf.core import range_sample

    real = range_sample.BucketedSample.pieces

    def interrupted(self: range_sample.BucketedSample, per: int) -> Iterator[np.ndarray]:
        pieces = real(self, per)
        yield next(pieces)
        raise KeyboardInterrupt

    monkeypatch.setattr(range_sample.BucketedSample, "pieces", interrupted)
    temp = tmp_path / "temp"
    temp.mkdir()
    with pytest.raises(KeyboardInterrupt):
        bigshuf.shuffle_range(1, 10**8, tmp_path / "out", head_count=100_000, memory="1M", tmp_dir=temp)
    assert temp_leftovers(temp) == []
    assert not (tmp_path / "out").exists()
