"""The library API: every path (in-memory, external, recursive, sampling, repeat) yields a permutation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import bigshuf
from bigshuf.core import plan
from helpers import assert_permutation, make_records, split_records, temp_leftovers, write_records


@pytest.fixture
def tmpdir_t(tmp_path: Path) -> Path:
    t = tmp_path / "t"
    t.mkdir()
    return t


# (memory limit, bucket cap, expected minimum passes): in memory, external, and external
# with recursion (two buckets a pass cannot split 3000 records to fit in 4 KiB at once).
PATHS = [("64M", None, 1), ("16K", None, 2), ("4K", 2, 3)]


@pytest.mark.parametrize("memory,cap,passes", PATHS)
def test_every_path_is_a_permutation(
    tmp_path: Path, tmpdir_t: Path, monkeypatch: pytest.MonkeyPatch, memory: str, cap: int | None, passes: int
) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    records = make_records(3000, seed=1)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out.txt"
    stats = bigshuf.shuffle(src, out, memory=memory, seed=7, tmp_dir=tmpdir_t)
    got = assert_permutation(out.read_bytes(), records)
    assert got != records  # odds of the identity: 1/3000!
    assert stats.records == len(records)
    assert stats.passes >= passes
    assert (stats.buckets == 0) == (passes == 1)
    assert temp_leftovers(tmpdir_t) == []


def test_recursion_splits_an_overflowing_bucket(tmp_path: Path, tmpdir_t: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two buckets per pass for 200 records of ~100 bytes under 2 KiB: several levels deep.
    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)
    records = make_records(200, seed=2, min_len=80, max_len=120)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out.txt"
    stats = bigshuf.shuffle(src, out, memory="2K", seed=3, tmp_dir=tmpdir_t)
    assert_permutation(out.read_bytes(), records)
    assert stats.passes >= 4
    assert temp_leftovers(tmpdir_t) == []


@pytest.mark.parametrize("memory", ["64M", "16K", "2K"])
def test_bytes_survive_untouched(tmp_path: Path, tmpdir_t: Path, memory: str) -> None:
    records = [b"crlf\r", b"\xff\xfe invalid utf-8", b"nul\x00inside", b"", b"", b"tab\there", b"\x80" * 300]
    records += make_records(300, seed=3)
    src = write_records(tmp_path / "in.bin", records)
    out = tmp_path / "out.bin"
    bigshuf.shuffle(src, out, memory=memory, seed=1, tmp_dir=tmpdir_t)
    assert_permutation(out.read_bytes(), records)


@pytest.mark.parametrize("memory", ["64M", "16K"])
def test_zero_terminated(tmp_path: Path, tmpdir_t: Path, memory: str) -> None:
    records = [r.replace(b"\0", b"") + b"\nnewline inside" for r in make_records(500, seed=4, sep=b"\0")]
    src = write_records(tmp_path / "in.bin", records, sep=b"\0")
    out = tmp_path / "out.bin"
    bigshuf.shuffle(src, out, memory=memory, seed=2, zero_terminated=True, tmp_dir=tmpdir_t)
    assert_permutation(out.read_bytes(), records, sep=b"\0")


@pytest.mark.parametrize("memory", ["64M", "16K", "2K"])
def test_missing_final_separators_are_added_per_input(tmp_path: Path, tmpdir_t: Path, memory: str) -> None:
    a = make_records(100, seed=5)
    b = make_records(150, seed=6)
    pa_ = write_records(tmp_path / "a", a, final_sep=False)
    pb = write_records(tmp_path / "b", b, final_sep=False)
    out = tmp_path / "out"
    stats = bigshuf.shuffle([pa_, pb], out, memory=memory, seed=3, tmp_dir=tmpdir_t)
    assert_permutation(out.read_bytes(), a + b)
    assert stats.records == 250


@pytest.mark.parametrize("memory", ["64M", "16K"])
def test_empty_input_gives_empty_output(tmp_path: Path, tmpdir_t: Path, memory: str) -> None:
    src = tmp_path / "empty"
    src.write_bytes(b"")
    out = tmp_path / "out"
    stats = bigshuf.shuffle(src, out, memory=memory, tmp_dir=tmpdir_t)
    assert out.read_bytes() == b""
    assert stats.records == 0


@pytest.mark.parametrize("memory", ["64M", "16K", "2K"])
@pytest.mark.parametrize("head", [0, 1, 7, 500, 2999, 3000, 5000])
def test_head_count_is_a_sample_without_replacement(tmp_path: Path, tmpdir_t: Path, memory: str, head: int) -> None:
    records = make_records(3000, seed=8)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out.txt"
    stats = bigshuf.shuffle(src, out, memory=memory, seed=11, head_count=head, tmp_dir=tmpdir_t)
    got = split_records(out.read_bytes())
    assert len(got) == min(head, len(records)) == stats.records
    assert len(set(got)) == len(got)
    assert set(got) <= set(records)
    assert temp_leftovers(tmpdir_t) == []


def test_head_count_on_external_path_keeps_little_temp_data(tmp_path: Path, tmpdir_t: Path) -> None:
    # -n 5 over ~1 MB at a 16 KiB limit: pass 1 keeps only the leading buckets it needs.
    records = make_records(20000, seed=9)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out.txt"
    stats = bigshuf.shuffle(src, out, memory="16K", seed=1, head_count=5, tmp_dir=tmpdir_t)
    assert len(split_records(out.read_bytes())) == 5
    assert stats.passes == 2


@pytest.mark.parametrize("count", [1, 10, 10000])
def test_repeat_draws_with_replacement(tmp_path: Path, count: int) -> None:
    records = make_records(20, seed=10)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out.txt"
    bigshuf.shuffle(src, out, seed=5, head_count=count, repeat=True)
    got = split_records(out.read_bytes())
    assert len(got) == count
    assert set(got) <= set(records)
    if count == 10000:
        assert set(got) == set(records)  # odds of a missed record: 20 * (19/20)**10000


def test_repeat_on_input_larger_than_memory_is_an_error(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", make_records(2000, seed=11))
    with pytest.raises(bigshuf.UsageError, match="memory="):
        bigshuf.shuffle(src, tmp_path / "out", memory="8K", head_count=3, repeat=True)
    assert not (tmp_path / "out").exists()


def test_repeat_on_empty_input_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.write_bytes(b"")
    with pytest.raises(bigshuf.InputError, match="no lines to repeat"):
        bigshuf.shuffle(src, tmp_path / "out", head_count=3, repeat=True)


@pytest.mark.parametrize("memory", ["64M", "16K"])
def test_same_seed_same_output_and_seeds_differ(tmp_path: Path, memory: str) -> None:
    src = write_records(tmp_path / "in.txt", make_records(1000, seed=12))
    outs = []
    for seed in (1, 1, 2):
        out = tmp_path / f"out{len(outs)}"
        bigshuf.shuffle(src, out, memory=memory, seed=seed)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_output_may_be_the_input(tmp_path: Path) -> None:
    records = make_records(2000, seed=13)
    src = write_records(tmp_path / "in.txt", records)
    for memory in ("64M", "16K"):
        bigshuf.shuffle(src, src, memory=memory, seed=4)
        assert_permutation(src.read_bytes(), records)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_record_longer_than_the_limit_names_S(tmp_path: Path, tmpdir_t: Path) -> None:
    src = write_records(tmp_path / "in.txt", [b"short", b"x" * 100_000, b"short too"])
    target = tmp_path / "out"
    target.write_bytes(b"keep me\n")
    with pytest.raises(bigshuf.InputError, match=r"record is longer.*memory="):
        bigshuf.shuffle(src, target, memory="16K", tmp_dir=tmpdir_t)
    assert target.read_bytes() == b"keep me\n"
    assert temp_leftovers(tmpdir_t) == []
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "out", "t"]


def test_record_near_the_piece_size_is_handled(tmp_path: Path, tmpdir_t: Path) -> None:
    # Records longer than a pass-1 piece (limit/16) but shorter than the read buffer.
    records = [b"y" * 5000, b"z" * 7000] + make_records(200, seed=14)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out"
    bigshuf.shuffle(src, out, memory="32K", seed=9, tmp_dir=tmpdir_t)
    assert_permutation(out.read_bytes(), records)


def test_missing_input_is_an_error_and_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(bigshuf.InputError, match="nope: No such file or directory"):
        bigshuf.shuffle([tmp_path / "nope"], out)
    assert not out.exists()


def test_missing_temp_directory_is_an_error(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", make_records(2000, seed=15))
    with pytest.raises(bigshuf.TempSpaceError, match="does not exist.*tmp_dir="):
        bigshuf.shuffle(src, tmp_path / "out", memory="8K", tmp_dir=tmp_path / "absent")
    assert not (tmp_path / "out").exists()


def test_too_little_temp_space_fails_before_pass_one(tmp_path: Path, tmpdir_t: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    src = write_records(tmp_path / "in.txt", make_records(2000, seed=16))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(bigshuf.TempSpaceError, match=r"need .* free"):
        bigshuf.shuffle(src, tmp_path / "out", memory="8K", tmp_dir=tmpdir_t)
    assert temp_leftovers(tmpdir_t) == []


def test_memory_sizes_parse_like_sort() -> None:
    assert plan.parse_size("1024") == 1024 * 1024
    assert plan.parse_size("10b") == 10
    assert plan.parse_size("2K") == 2048
    assert plan.parse_size("3M") == 3 << 20
    assert plan.parse_size("1G") == 1 << 30
    assert plan.parse_size("1T") == 1 << 40
    assert plan.parse_size("50%") == plan.physical_memory() // 2
    for bad in ("", "abc", "12Q", "-5", "200%"):
        with pytest.raises(bigshuf.UsageError):
            plan.parse_size(bad)


def test_memory_below_minimum_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(bigshuf.UsageError, match="memory="):
        bigshuf.shuffle(write_records(tmp_path / "in", [b"a"]), tmp_path / "out", memory="100b")


def test_range_source_and_sampling(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bigshuf.shuffle_range(1, 1000, out, seed=1, memory="16K")
    assert sorted(int(x) for x in split_records(out.read_bytes())) == list(range(1, 1001))
    bigshuf.shuffle_range(1, 10**12, out, seed=1, head_count=50)
    got = [int(x) for x in split_records(out.read_bytes())]
    assert len(set(got)) == 50 and all(1 <= x <= 10**12 for x in got)
    bigshuf.shuffle_range(5, 7, out, seed=1, head_count=100, repeat=True)
    got = [int(x) for x in split_records(out.read_bytes())]
    assert len(got) == 100 and set(got) == {5, 6, 7}


def test_range_sample_is_reproducible_from_a_random_source(tmp_path: Path) -> None:
    # Regression: the re-shuffle of drawn numbers took fresh entropy when only
    # --random-source (no --seed) was given, so `-i 1-100 -n 5` differed run to run.
    source = tmp_path / "bytes"
    source.write_bytes(bytes(range(256)))
    outs = []
    for name in ("a", "b"):
        bigshuf.shuffle_range(1, 100, tmp_path / name, head_count=5, random_source=source)
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
