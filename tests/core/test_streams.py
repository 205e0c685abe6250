"""core/streams, directly: the random-stream keys are distinct per position and pinned (they
decide every seeded output), a stream depends only on its root entropy and key, and the root
entropy comes from a seed, a random source or the OS by the documented rules.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from bigshuf.core.streams import IN_MEMORY, RANGE_DRAWS, TOP, Key, bucket, name, rng_for, scatter, seed_entropy, sublevel
from bigshuf.errors import InputError, UsageError


def keys_near_the_top(n: int = 12) -> dict[str, Key]:
    """Every key a run of up to ``n`` blocks and buckets, three levels deep, can use, by the step it names."""
    keys: dict[str, Key] = {"in memory": IN_MEMORY, "range draws": RANGE_DRAWS}
    levels: dict[str, Key] = {"top": TOP}
    levels |= {f"top/{j}": sublevel(TOP, j) for j in range(n)}
    levels |= {f"top/0/{j}": sublevel(sublevel(TOP, 0), j) for j in range(n)}
    for where, level in levels.items():
        keys |= {f"{where} scatter {i}": scatter(level, i) for i in range(n)}
        keys |= {f"{where} bucket {j}": bucket(level, j) for j in range(n)}
        keys |= {f"{where} sublevel {j}": sublevel(level, j) for j in range(n)}
        keys |= {f"{where} dask block {b}": scatter(level, *b) for b in itertools.product(range(3), repeat=3)}
    return keys


def test_keys_are_distinct_for_distinct_positions() -> None:
    """Scatter, bucket and sublevel keys at every level never collide, with each other or the
    in-memory and range keys (a collision would give two steps the same random numbers)."""
    keys = keys_near_the_top()
    steps: dict[Key, list[str]] = {}
    for step, key in keys.items():
        steps.setdefault(key, []).append(step)
    assert [names for names in steps.values() if len(names) > 1] == []
    assert len(keys) == 2 + 25 * (3 * 12 + 27)


def test_streams_of_distinct_keys_differ() -> None:
    """The streams behind distinct keys start differently (SeedSequence keeps keys apart)."""
    keys = list(keys_near_the_top(6).values())
    starts = {tuple(rng_for(1234, key).integers(0, 2**63, 2).tolist()) for key in keys}
    assert len(starts) == len(keys)


def test_keys_are_pinned() -> None:
    """The key values themselves: changing one changes what every seed gives."""
    assert TOP == () and IN_MEMORY == (0,) and RANGE_DRAWS == (4,)
    assert scatter(TOP, 5) == (1, 5)
    assert scatter(TOP, 2, 3, 4) == (1, 2, 3, 4)
    assert bucket(TOP, 3) == (2, 3)
    assert sublevel(TOP, 7) == (3, 7)
    assert bucket(sublevel(TOP, 1), 2) == (3, 1, 2, 2)
    assert scatter(sublevel(sublevel(TOP, 1), 0), 9) == (3, 1, 3, 0, 1, 9)


def test_draws_are_pinned() -> None:
    """The numbers a few streams give, recorded: the generator, its seeding or a key changing shows here."""
    assert rng_for(42, scatter(TOP, 0)).integers(0, 2**32, 3).tolist() == [3339658784, 2448254547, 3139668386]
    assert rng_for(0, IN_MEMORY).integers(0, 2**32, 2).tolist() == [3445585646, 4049885951]
    assert rng_for(7, bucket(sublevel(TOP, 1), 2)).integers(0, 2**32, 2).tolist() == [3016297173, 1172103756]


def test_a_stream_depends_only_on_its_entropy_and_key() -> None:
    """Same entropy and key: the same numbers, whatever was drawn from other streams meanwhile."""
    first = rng_for(99, bucket(TOP, 4)).random(50)
    rng_for(99, bucket(TOP, 3)).random(1000)
    assert np.array_equal(rng_for(99, bucket(TOP, 4)).random(50), first)
    assert not np.array_equal(rng_for(100, bucket(TOP, 4)).random(50), first)
    assert not np.array_equal(rng_for(99, bucket(TOP, 5)).random(50), first)
    big = 2**200 + 12345  # a random source's 256-bit entropy
    assert np.array_equal(rng_for(big, TOP).random(5), rng_for(big, TOP).random(5))


def test_level_names() -> None:
    """A level's bucket directory name: ``top`` for the first, else its key joined by dashes."""
    assert name(TOP) == "top"
    assert name(sublevel(TOP, 12)) == "3-12"
    assert name(sublevel(sublevel(TOP, 1), 0)) == "3-1-3-0"


def test_a_seed_is_the_entropy() -> None:
    """``seed=N`` is used as it is, 0 included."""
    assert seed_entropy(seed=0) == 0
    assert seed_entropy(seed=5) == 5
    assert seed_entropy(seed=2**100) == 2**100


def test_a_negative_seed_is_refused() -> None:
    """A negative seed is a usage error quoting it."""
    with pytest.raises(UsageError, match="^invalid seed= value: '-1': a non-negative integer is needed$"):
        seed_entropy(seed=-1)


def test_seed_and_random_source_are_exclusive(tmp_path: Path) -> None:
    """Both given: refused, worded for the command line and for the library."""
    source = tmp_path / "r"
    source.write_bytes(b"x")
    with pytest.raises(UsageError) as info:
        seed_entropy(seed=1, random_source=source)
    assert info.value.cli_message() == "--seed and --random-source cannot be combined"
    assert str(info.value) == "seed= and random_source= cannot be combined"


def test_a_random_source_gives_entropy_from_its_first_4_kib(tmp_path: Path) -> None:
    """Files equal in their first 4096 bytes give the same entropy; a difference there changes it."""
    head = os.urandom(4096)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(head + b"one tail")
    b.write_bytes(head + b"another, longer tail")
    c.write_bytes(head[:-1] + bytes([head[-1] ^ 1]))
    assert seed_entropy(random_source=a) == seed_entropy(random_source=str(b))
    assert seed_entropy(random_source=a) != seed_entropy(random_source=c)
    short = tmp_path / "short"
    short.write_bytes(b"1")
    assert seed_entropy(random_source=short) >= 0


def test_an_empty_random_source_is_refused(tmp_path: Path) -> None:
    """An empty file is an input error naming it, in GNU shuf's words."""
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=f"^'{empty}': end of file$"):
        seed_entropy(random_source=empty)


def test_an_unreadable_random_source_is_refused(tmp_path: Path) -> None:
    """A missing file (or a directory, as GNU shuf words a read that fails) is an input error naming it and the reason."""
    missing = tmp_path / "missing"
    with pytest.raises(InputError, match=f"^{missing}: No such file or directory$"):
        seed_entropy(random_source=missing)
    with pytest.raises(InputError, match=f"^'{tmp_path}': read error: Is a directory$"):
        seed_entropy(random_source=tmp_path)


def test_no_seed_gives_fresh_entropy() -> None:
    """Without a seed or source each run gets different entropy (two 128-bit draws colliding: ~2^-128)."""
    first, second = seed_entropy(), seed_entropy()
    assert first != second and first >= 0 and second >= 0

