"""Pass 2 of a pipe's many small buckets: the next few shuffled whole on the workers while the
current one is written, with the same output as one bucket at a time on one thread."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import bigshuf
from bigshuf.core import parallel
from bigshuf.errors import TempSpaceError
from bigshuf.formats import line_run
from bigshuf.storage.sources import GeneratedSource
from helpers import assert_permutation, make_records

RECORDS = make_records(6000, seed=8, min_len=5, max_len=120)
DATA = b"".join(r + b"\n" for r in RECORDS)


def unsized(data: bytes) -> GeneratedSource:
    """``data`` as a source of unknown size (as a pipe is): 1024 buckets of a few hundred bytes at ``-S 256K``."""
    return GeneratedSource("piped", lambda: (data[i : i + 4000] for i in range(0, len(data), 4000)))


class Spy:
    """What the runs from now on shuffle ahead: each bucket's ``left``, and the most in flight at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lefts: list[int | None] = []
        self.most = 0
        real = line_run.LineRun.read_ahead

        def read_ahead(run: line_run.LineRun, buckets: Any, j: int, room: int, key: Any, left: int | None) -> bool:
            more = real(run, buckets, j, room, key, left)
            ahead = run._ahead.get(j)
            if ahead is not None and ahead.shuffled and (id(buckets), j) not in self.seen:
                self.seen.add((id(buckets), j))
                self.lefts.append(left)
            self.most = max(self.most, sum(a.shuffled for a in run._ahead.values()))
            return more

        self.seen: set[tuple[int, int]] = set()
        monkeypatch.setattr(line_run.LineRun, "read_ahead", read_ahead)


def run(tmp_path: Path, name: str, **options: Any) -> bytes:
    out = tmp_path / name
    bigshuf.shuffle([unsized(DATA)], out, memory="256K", tmp_dir=tmp_path, sync=False, **options)
    return out.read_bytes()


def one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **options: Any) -> bytes:
    """The run with no bucket started ahead: each loaded and shuffled in turn on the main thread."""
    with monkeypatch.context() as m:
        m.setattr(line_run.LineRun, "read_ahead", lambda *args: False)
        return run(tmp_path, name, **options)


@pytest.mark.parametrize("threads", [2, 8])
def test_small_buckets_shuffled_ahead_give_the_output_of_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """Every bucket after the first is shuffled ahead (small buckets are handed to the workers
    here), no more at once than there are workers, and the output is the one-thread run's."""
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    spy = Spy(monkeypatch)
    for seed in (1, 2):
        ahead = run(tmp_path, f"a{seed}", seed=seed, threads=threads)
        assert ahead == one_at_a_time(tmp_path, monkeypatch, f"o{seed}", seed=seed, threads=threads)
        assert ahead == run(tmp_path, f"j{seed}", seed=seed, threads=1)
        assert_permutation(ahead, RECORDS)
    assert len(spy.lefts) > 2 * 900 and set(spy.lefts) == {None}
    assert 1 < spy.most <= threads
    assert not [n for n in os.listdir(tmp_path) if n.startswith("bigshuf-")]


@pytest.mark.parametrize("head", [1, 37, 2999, 6000, 7000])
def test_buckets_shuffled_ahead_take_what_n_leaves_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, head: int) -> None:
    """With ``-n``, a bucket shuffled ahead draws the records ``-n`` will leave it, and none past
    the last bucket it needs is started: the output is the one-thread run's."""
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    spy = Spy(monkeypatch)
    for seed in (4, 5):
        ahead = run(tmp_path, f"a{seed}", seed=seed, threads=2, head_count=head)
        assert ahead == one_at_a_time(tmp_path, monkeypatch, f"o{seed}", seed=seed, threads=2, head_count=head)
        assert ahead.count(b"\n") == min(head, len(RECORDS))
        assert set(ahead.split(b"\n")[:-1]) <= set(RECORDS)
    if head > 37:
        assert all(left is not None and 0 < left <= head for left in spy.lefts) and len(spy.lefts) > 100
        assert head >= len(RECORDS) or min(spy.lefts) <= 10  # the last bucket -n needs was started ahead


def test_an_error_in_a_bucket_shuffled_ahead_fails_the_run_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bucket that cannot be read on a worker fails the run with its own error, once the buckets
    before it are written; nothing is left in the temporary directory and no output is made."""
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    spy = Spy(monkeypatch)
    failing = 300
    for name in ("read_into", "map"):
        real = getattr(line_run.BucketSet, name)

        def load(buckets: line_run.BucketSet, j: int, *args: Any, real: Any = real) -> Any:
            if j == failing:
                raise TempSpaceError(f"{buckets.path(j)}: bucket {j} unreadable")
            return real(buckets, j, *args)

        monkeypatch.setattr(line_run.BucketSet, name, load)
    out = tmp_path / "out"
    with pytest.raises(TempSpaceError, match=f"bucket {failing} unreadable"):
        bigshuf.shuffle([unsized(DATA)], out, memory="256K", seed=1, tmp_dir=tmp_path, sync=False, threads=2)
    assert len(spy.lefts) > 100
    assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n != "out"]
