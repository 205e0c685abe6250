"""Group files: a level of unknown size writes its first bytes to a few files, its later ones to a
file a bucket, and every bucket reads back (and the run shuffles) as with a file a bucket only."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bigshuf
from bigshuf.core import bucket_groups
from bigshuf.core.bucket_groups import BucketGroups
from bigshuf.core.buckets import BucketSet
from bigshuf.errors import TempSpaceError
from bigshuf.formats import line_run
from bigshuf.storage.sources import GeneratedSource
from bigshuf.storage.writeback import WriteBehind
from helpers import assert_permutation, make_records
from test_scatter import buckets_of, lines, read_back, scattered

K = 200  # 4 buckets a group file, 50 group files
PIECES = 6
PARTS = 100  # room in the table of parts


def appended(directory: Path, grouped: int, writer: WriteBehind | None = None, keep: int | None = None
             ) -> tuple[BucketSet, list[list[bytes]]]:
    """A bucket set of ``K`` buckets whose first ``grouped`` bytes go to group files, ``PIECES``
    scattered pieces appended (of the first ``keep`` buckets), and the records each bucket should hold."""
    buckets = BucketSet(str(directory), K, writer=writer, grouped=grouped, group_parts=PARTS)
    expected: list[list[bytes]] = [[] for _ in range(K)]
    for p in range(PIECES):
        s = scattered(lines(300, seed=p), K, seed=100 + p)
        buckets.append(s, keep)
        for j, recs in enumerate(buckets_of(s)):
            if keep is None or j < keep:
                expected[j] += recs
    if writer is not None:
        writer.flush()
    buckets.close()
    return buckets, expected


def piece_bytes() -> int:
    return int(scattered(lines(300, seed=0), K, seed=100).byte_bounds[-1])


def names(directory: Path, prefix: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith(prefix))


@pytest.mark.parametrize("written_behind", [False, True])
@pytest.mark.parametrize("pieces_grouped", [PIECES, 2, 0])
def test_buckets_read_back_whatever_part_went_to_group_files(tmp_path: Path, written_behind: bool, pieces_grouped: int) -> None:
    """All pieces grouped, the first two (then a file a bucket), or none (the first piece is over ``grouped``)."""
    writer = WriteBehind(1 << 20) if written_behind else None
    try:
        grouped = pieces_grouped * piece_bytes() + (1 if pieces_grouped else 0) if pieces_grouped < PIECES else 1 << 30
        buckets, expected = appended(tmp_path / "b", max(1, grouped), writer)
        for j in range(K):
            assert read_back(buckets, j) == expected[j]
            assert int(buckets.sizes[j]) == sum(map(len, expected[j])) + len(expected[j])
    finally:
        if writer is not None:
            writer.close()
    groups, own = names(tmp_path / "b", "group-"), names(tmp_path / "b", "bucket-")
    assert len(groups) == (50 if pieces_grouped else 0)
    assert len(own) == (0 if pieces_grouped == PIECES else K)
    assert buckets.groups is not None
    assert all(buckets.mappable(j) == (buckets.early(j) == 0) for j in range(K))
    mappable = sum(buckets.mappable(j) for j in range(K))
    assert mappable == {PIECES: 0, 2: mappable, 0: K}[pieces_grouped] and (pieces_grouped != 2 or 0 < mappable < K / 4)


@pytest.mark.parametrize("written_behind", [False, True])
def test_the_group_files_are_closed_when_the_buckets_files_take_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written_behind: bool
) -> None:
    """Their descriptors are the buckets' own files' to take: a level never holds both, even while
    the writer thread is behind (group writes slowed here; closing them as a queued job left 64 group
    files open beside the buckets' own, and ``ulimit -n 192`` failed, found by review)."""
    real = BucketGroups.write

    def slow(self: BucketGroups, *args: Any) -> None:
        time.sleep(0.01)
        real(self, *args)

    monkeypatch.setattr(BucketGroups, "write", slow)
    writer = WriteBehind(1 << 30) if written_behind else None
    try:
        before = len(os.listdir("/proc/self/fd"))
        buckets = BucketSet(str(tmp_path / "b"), K, writer=writer, grouped=piece_bytes() + 1, group_parts=PARTS)
        buckets.append(scattered(lines(300, seed=0), K, seed=100))
        assert len(os.listdir("/proc/self/fd")) == before + 50
        second = scattered(lines(300, seed=1), K, seed=101)
        buckets.append(second)
        assert len(os.listdir("/proc/self/fd")) == before + int((second.counts > 0).sum())
        if writer is not None:
            writer.flush()
        buckets.close()
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        if writer is not None:
            writer.close()


def test_the_table_of_parts_is_bounded(tmp_path: Path) -> None:
    """Short records come in many small parts, each a row of ``8 (k+1)`` bytes: the group files take
    at most ``group_parts`` of them (64 MiB of empty lines at ``-S 4M`` had a 56 MB table, found by
    review), then the buckets' own files take over; the table's rows are a 32nd of the limit."""
    buckets, expected = appended(tmp_path / "b", 1 << 30)
    assert buckets.groups is not None and buckets.groups.held > 0
    few = BucketSet(str(tmp_path / "c"), K, grouped=1 << 30, group_parts=2)
    for p in range(PIECES):
        few.append(scattered(lines(300, seed=p), K, seed=100 + p))
    few.close()
    assert few.groups is not None and not few.groups.taking
    assert [read_back(few, j) for j in range(K)] == expected
    assert bucket_groups.table_parts(4 << 20, 1024) * 8 * 1025 <= (4 << 20) // 32
    assert bucket_groups.table_parts(256 << 20, 1024) == 1023 and bucket_groups.table_parts(64 << 10, 1024) == 1


def test_no_groups_for_few_buckets_or_compressed_ones(tmp_path: Path) -> None:
    assert BucketSet(str(tmp_path / "a"), 64, grouped=1 << 30, group_parts=PARTS).groups is None
    assert BucketSet(str(tmp_path / "b"), 65, grouped=1 << 30, group_parts=PARTS).groups is not None
    assert BucketSet(str(tmp_path / "c"), 1024, grouped=1 << 30, group_parts=PARTS, compress=True).groups is None
    assert BucketSet(str(tmp_path / "d"), 1024).groups is None
    assert bucket_groups.per_group(1024) == 16 and bucket_groups.per_group(65) == 2


def test_parts_are_read_the_same_without_the_compiled_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buckets, expected = appended(tmp_path / "b", 2 * piece_bytes() + 1)
    monkeypatch.setattr(bucket_groups, "native", None)
    assert [read_back(buckets, j) for j in range(K)] == expected


def test_a_grouped_bucket_is_written_whole_to_its_own_file_for_a_deeper_level(tmp_path: Path) -> None:
    """``check_file`` (before a recursive pass reads the bucket as a file) writes the grouped parts
    and then the own file's into one file, in that order."""
    buckets, expected = appended(tmp_path / "b", 2 * piece_bytes() + 1)
    buckets.check_file(7)
    assert buckets.mappable(7) and not buckets.mappable(8)
    assert Path(buckets.path(7)).read_bytes() == b"".join(r + b"\n" for r in expected[7])
    assert read_back(buckets, 7) == expected[7]
    assert not [n for n in os.listdir(tmp_path / "b") if n.endswith("-whole")]


def test_group_files_go_once_pass_2_is_past_them(tmp_path: Path) -> None:
    buckets, _ = appended(tmp_path / "b", 1 << 30)
    buckets.remove(2)
    assert names(tmp_path / "b", "group-")[0] == "group-00000"
    buckets.remove(3)  # the last of group 0
    assert names(tmp_path / "b", "group-")[0] == "group-00001"
    buckets.remove(13)  # group 3's second: groups 1 and 2 are past
    assert names(tmp_path / "b", "group-")[0] == "group-00003"
    buckets.remove(K - 1)
    assert names(tmp_path / "b", "group-") == []


def test_drop_after_removes_the_group_files_wholly_past_the_last_bucket(tmp_path: Path) -> None:
    buckets = BucketSet(str(tmp_path / "b"), K, grouped=1 << 30, group_parts=PARTS)
    expected: list[list[bytes]] = [[] for _ in range(K)]
    for p in range(3):
        s = scattered(lines(300, seed=p), K, seed=100 + p)
        keep = K if p == 0 else 10
        buckets.append(s, keep)
        for j, recs in enumerate(buckets_of(s)):
            if j < keep:
                expected[j] += recs
        if p == 0:
            buckets.drop_after(9)
    buckets.close()
    assert names(tmp_path / "b", "group-") == ["group-00000", "group-00001", "group-00002"]
    assert [read_back(buckets, j) for j in range(10)] == expected[:10]
    assert buckets.early(10) == 0 and int(buckets.sizes[10]) == 0


def test_a_changed_group_file_is_refused(tmp_path: Path) -> None:
    """Read back, a group file is checked as a bucket file is: regular, as long as written, not a
    link; and each bucket's bytes against its CRC."""
    buckets, _ = appended(tmp_path / "b", 1 << 30)
    assert buckets.groups is not None
    path = Path(buckets.groups.path(0))
    data = bytearray(path.read_bytes())
    data[5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(TempSpaceError, match="group-00000 \\(bucket [0-3]\\): temporary bucket is corrupt \\(checksum mismatch\\)"):
        for j in range(4):
            read_back(buckets, j)
    fresh, _ = appended(tmp_path / "c", 1 << 30)
    assert fresh.groups is not None
    Path(fresh.groups.path(1)).write_bytes(b"short")
    with pytest.raises(TempSpaceError, match="group-00001: temporary group of buckets is corrupt"):
        read_back(fresh, 4)
    os.unlink(fresh.groups.path(2))
    os.symlink(fresh.groups.path(3), fresh.groups.path(2))
    with pytest.raises(TempSpaceError, match="group-00002: cannot open this temporary group of buckets"):
        read_back(fresh, 8)


def test_group_files_are_private_and_never_written_through_a_link(tmp_path: Path) -> None:
    directory = tmp_path / "b"
    buckets = BucketSet(str(directory), K, grouped=1 << 30, group_parts=PARTS)
    target = tmp_path / "victim"
    target.write_bytes(b"keep")
    os.symlink(target, directory / "group-00000")
    with pytest.raises(TempSpaceError, match="group-00000"):
        buckets.append(scattered(lines(300, seed=0), K, seed=100))
    assert target.read_bytes() == b"keep"
    fresh, _ = appended(tmp_path / "c", 1 << 30)
    assert fresh.groups is not None
    assert oct(os.stat(fresh.groups.path(0)).st_mode & 0o777) == "0o600"


# A whole run over an input of unknown size: the same output with or without group files.


def unsized(data: bytes) -> GeneratedSource:
    """``data`` as a source of unknown size (as a pipe is), in chunks of 1000 bytes."""
    return GeneratedSource("piped", lambda: (data[i : i + 1000] for i in range(0, len(data), 1000)))


def counting_groups(monkeypatch: pytest.MonkeyPatch) -> list[BucketGroups]:
    """The group files' sets the runs make from now on."""
    made: list[BucketGroups] = []
    real = bucket_groups.BucketGroups.__init__

    def spy(self: BucketGroups, *args: Any) -> None:
        real(self, *args)
        made.append(self)

    monkeypatch.setattr(bucket_groups.BucketGroups, "__init__", spy)
    return made


def run(tmp_path: Path, data: bytes, name: str, **options: Any) -> bytes:
    """The output of a run of ``data`` as a source of unknown size (its shards' in order, if a pattern is named)."""
    out = tmp_path / name
    bigshuf.shuffle([unsized(data)], out, tmp_dir=tmp_path, sync=False, **options)
    if "{}" not in name:
        return out.read_bytes()
    return b"".join((tmp_path / name.format(i)).read_bytes() for i in range(options["shards"]))


RECORDS = make_records(6000, seed=3, min_len=5, max_len=120)
DATA = b"".join(r + b"\n" for r in RECORDS)


def cases() -> Iterator[Any]:
    for threads in (1, 2, 3, 8):
        yield pytest.param({"memory": "64K", "threads": threads}, id=f"j{threads}")
    yield pytest.param({"memory": "64K", "head_count": 700}, id="head")
    yield pytest.param({"memory": "64K", "verify": True}, id="verify")
    yield pytest.param({"memory": "64K", "shards": 3}, id="shards")


@pytest.mark.parametrize("options", list(cases()))
@pytest.mark.parametrize("until", ["all", "some"])
def test_a_run_of_unknown_size_shuffles_as_without_group_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], until: str
) -> None:
    """Grouped wholly, or for its first 40 KB (then a file a bucket), the output is the one the
    run makes with a file a bucket throughout, for every seed and thread count."""
    made = counting_groups(monkeypatch)
    monkeypatch.setattr(line_run, "table_parts", lambda limit, k: 10_000)  # -S 64K's own allows one part
    if until == "some":
        monkeypatch.setattr(line_run, "grouped_bytes", lambda limit: 40_000)
    for seed in (1, 2):
        shards = options.get("shards")
        grouped = run(tmp_path, DATA, f"g{seed}-{{}}" if shards else f"g{seed}", seed=seed, **options)
        with monkeypatch.context() as m:
            m.setattr(line_run, "grouped_bytes", lambda limit: 0)
            plain = run(tmp_path, DATA, f"p{seed}-{{}}" if shards else f"p{seed}", seed=seed, **options)
        assert grouped == plain
        if "head_count" in options:
            assert len(grouped.split(b"\n")) == 701
        else:
            assert_permutation(grouped, RECORDS)
    assert len(made) == 2 and all(g.k == 1024 and g.n == 64 for g in made)
    held = [g.held for g in made]
    if until == "some":
        assert all(0 < h <= 40_000 for h in held)
    elif "head_count" in options:  # only the buckets -n keeps
        assert all(0 < h < len(DATA) for h in held)
    else:
        assert held == [len(DATA)] * 2
    assert not [n for n in os.listdir(tmp_path) if n.startswith("bigshuf-")]


def test_a_bucket_too_big_for_memory_is_scattered_again_as_without_group_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records of 300 bytes under a 1 KiB limit: buckets of two or more recurse, read from their group file."""
    made = counting_groups(monkeypatch)
    monkeypatch.setattr(line_run, "table_parts", lambda limit, k: 10_000)
    records = [(b"%d:" % i).ljust(300, b"x") for i in range(800)]
    data = b"".join(r + b"\n" for r in records)
    stats = bigshuf.shuffle([unsized(data)], tmp_path / "g", memory="1K", seed=4, tmp_dir=tmp_path, sync=False)
    monkeypatch.setattr(line_run, "grouped_bytes", lambda limit: 0)
    bigshuf.shuffle([unsized(data)], tmp_path / "p", memory="1K", seed=4, tmp_dir=tmp_path, sync=False)
    assert stats.passes > 2 and made and made[0].held > 0
    assert (tmp_path / "g").read_bytes() == (tmp_path / "p").read_bytes()
    assert_permutation((tmp_path / "g").read_bytes(), records)


def test_a_piped_run_groups_its_buckets_from_the_shell(tmp_path: Path) -> None:
    """``bigshuf < pipe`` (planned for 1024 buckets) writes pass 1 to no more than 64 files, and its
    output is a permutation of the input (fails before: a file a bucket)."""
    import subprocess
    import sys

    records = make_records(40_000, seed=4, min_len=5, max_len=150)  # 3 MB: over half of -S 4M, in 12 pieces
    data = b"".join(r + b"\n" for r in records)
    cmd = [sys.executable, "-m", "bigshuf", "--seed", "5", "-S", "4M", "-T", str(tmp_path)]
    piped = subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
    assert_permutation(piped, records)
    script = (
        "import os, sys\n"
        "from bigshuf.core import buckets\n"
        "from bigshuf.cli import main\n"
        "real = buckets.BucketSet.close\n"
        "def close(self):\n"
        "    print(len(os.listdir(self.directory)), file=sys.stderr)\n"
        "    real(self)\n"
        "buckets.BucketSet.close = close\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *cmd[3:]], input=data, capture_output=True, check=True)
    assert done.stdout == piped
    assert 0 < int(done.stderr.split()[0]) <= 64
