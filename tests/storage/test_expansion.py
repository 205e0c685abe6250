"""Decompressed sizes planned before a run reads its inputs: as the format records them (xz's index,
zstd frames stating their sizes), else by each source's own sampled ratio, so that sources
compressed at very different ratios are each planned at their own size (session 50: a 150:1 and a
13:1 source were planned from the first one read, 53 MiB of temporary space for a run needing 83)."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest
import zstandard
from helpers import make_records

import bigshuf
from bigshuf.storage.expansion import decoded_sizes, spread
from bigshuf.storage.sources import FileSource


def repetitive(n: int) -> bytes:
    """``n`` bytes of lines that compress hundreds of times."""
    line = b'{"text": "the same words again and again"}\n'
    return (line * (n // len(line) + 1))[:n]


def random_lines(n: int, seed: int = 0) -> bytes:
    """About ``n`` bytes of random lines, which barely compress."""
    out = b"".join(r + b"\n" for r in make_records(n // 40 + 1, seed=seed))
    return out[: out.rindex(b"\n", 0, n) + 1]


def zstd_streamed(data: bytes) -> bytes:
    """``data`` as ``zstd < in`` writes it: frames that do not state their size."""
    return zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data)


def test_zstd_frames_that_state_their_sizes_are_added_up(tmp_path: Path) -> None:
    one, two = repetitive(3 << 20), random_lines(200_000)
    sized = zstandard.ZstdCompressor(level=3, write_checksum=True)
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    (tmp_path / "a.zst").write_bytes(sized.compress(one) + skippable + sized.compress(two))
    (tmp_path / "b.zst").write_bytes(sized.compress(one) + zstd_streamed(two))  # a frame without its size: sampled
    sizes, exact = decoded_sizes([FileSource(tmp_path / "a.zst"), FileSource(tmp_path / "b.zst")], [0, 1])
    assert sizes[0] == len(one) + len(two)
    assert sizes[1] is not None and sizes[1] != len(one) + len(two)
    assert not exact  # b.zst was sampled


def test_xz_indexes_are_added_up_over_streams_and_padding(tmp_path: Path) -> None:
    one, two = repetitive(2 << 20), random_lines(300_000)
    blob = lzma.compress(one) + b"\0" * 8 + lzma.compress(two, check=lzma.CHECK_NONE) + b"\0" * 4
    (tmp_path / "a.xz").write_bytes(blob)
    assert decoded_sizes([FileSource(tmp_path / "a.xz")]) == ([len(one) + len(two)], True)


def test_each_source_is_planned_at_its_own_ratio(tmp_path: Path) -> None:
    """Without recorded sizes, a source's files are sampled for its ratio: one source of 3 MiB that
    compresses ~300 times and one of random lines, their files spread over several shards."""
    dense, loose = tmp_path / "dense", tmp_path / "loose"
    dense.mkdir(), loose.mkdir()
    sources: list[FileSource] = []
    truth = []
    for i in range(6):
        data = repetitive(1 << 20)
        (dense / f"{i}.zst").write_bytes(zstd_streamed(data))
        sources.append(FileSource(dense / f"{i}.zst"))
        truth.append(len(data))
    for i in range(3):
        data = random_lines(1_500_000, seed=i)
        (loose / f"{i}.gz").write_bytes(gzip.compress(data, mtime=0))
        sources.append(FileSource(loose / f"{i}.gz"))
        truth.append(len(data))
    sizes, _exact = decoded_sizes(sources, [0] * 6 + [1] * 3)
    for got, want in zip(sizes, truth):
        assert got is not None and abs(got - want) < want * 0.05


@pytest.mark.parametrize("first", ["dense", "loose"])
def test_a_plan_of_sources_compressed_unlike_needs_their_decoded_bytes(tmp_path: Path, first: str) -> None:
    """The plan's bytes (and so its buckets and temporary space) are the sources' decoded bytes,
    whichever source is read first: from the first block's ratio, a dense source read first made
    the plan ~20 times too large, a loose one read first ~3 times too small."""
    dense, loose = repetitive(4 << 20), random_lines(2 << 20)
    (tmp_path / "dense.zst").write_bytes(zstd_streamed(dense))
    (tmp_path / "loose.gz").write_bytes(gzip.compress(loose, mtime=0))
    named = {"dense": str(tmp_path / "dense.zst"), "loose": str(tmp_path / "loose.gz")}
    order = [first, *(n for n in named if n != first)]
    planned = bigshuf.plan_shuffle(None, sources={n: named[n] for n in order}, memory="1M", tmp_dir=str(tmp_path))
    whole = len(dense) + len(loose)
    assert planned.nbytes is not None and abs(planned.nbytes - whole) < whole * 0.05
    assert planned.temp_needed is not None and planned.temp_needed >= whole * 0.95


def test_files_of_one_group_sampled_are_each_taken_at_their_own_ratio(tmp_path: Path) -> None:
    """Files given as operands are one group: those sampled are planned at their own ratio, not the
    group's (a dense and a loose file, both sampled, were both taken at their mean ratio: ~40% short)."""
    dense, loose = repetitive(4 << 20), random_lines(2 << 20)
    (tmp_path / "dense.zst").write_bytes(zstd_streamed(dense))
    (tmp_path / "loose.gz").write_bytes(gzip.compress(loose, mtime=0))
    planned = bigshuf.plan_shuffle([tmp_path / "loose.gz", tmp_path / "dense.zst"], memory="1M", tmp_dir=str(tmp_path))
    whole = len(dense) + len(loose)
    assert planned.nbytes is not None and abs(planned.nbytes - whole) < whole * 0.05


def test_a_source_weighs_its_decoded_bytes(tmp_path: Path) -> None:
    """A rate on a source of unknown size weighs its decoded bytes, not its bytes on disk: doubling
    the dense source doubles most of the multiset (by disk bytes it was a few percent of it)."""
    dense, loose = repetitive(4 << 20), random_lines(1 << 20)
    (tmp_path / "dense.zst").write_bytes(zstd_streamed(dense))
    (tmp_path / "loose.gz").write_bytes(gzip.compress(loose, mtime=0))
    planned = bigshuf.plan_shuffle(
        None, sources={"loose": str(tmp_path / "loose.gz"), "dense": str(tmp_path / "dense.zst")}, rates={"dense": 2},
        memory="1M", tmp_dir=str(tmp_path),
    )
    multiset = 2 * len(dense) + len(loose)
    assert planned.temp_needed is not None and abs(planned.temp_needed - multiset) < multiset * 0.05


def test_spread_takes_the_first_last_and_evenly_between() -> None:
    assert spread(list(range(100)), 4) == [0, 33, 66, 99]
    assert spread([3, 5], 4) == [3, 5]


def test_a_run_of_sources_compressed_unlike_makes_the_buckets_of_their_decoded_bytes(tmp_path: Path) -> None:
    """The run plans as ``--dry-run`` does: compressed, a dense and a loose source get about the
    buckets the same records get uncompressed (from the loose one's first block, a third of them)."""
    dense, loose = repetitive(4 << 20), random_lines(2 << 20)
    (tmp_path / "dense.zst").write_bytes(zstd_streamed(dense))
    (tmp_path / "loose.gz").write_bytes(gzip.compress(loose, mtime=0))
    (tmp_path / "dense.txt").write_bytes(dense)
    (tmp_path / "loose.txt").write_bytes(loose)
    buckets = []
    for dense_name, loose_name in (("dense.zst", "loose.gz"), ("dense.txt", "loose.txt")):
        stats = bigshuf.shuffle(
            None, tmp_path / "out.txt", sources={"loose": str(tmp_path / loose_name), "dense": str(tmp_path / dense_name)},
            memory="1M", seed=1, tmp_dir=str(tmp_path),
        )
        buckets.append(stats.buckets)
    assert abs(buckets[0] - buckets[1]) <= buckets[1] * 0.1, buckets


def test_too_little_temp_space_for_recorded_sizes_fails_before_pass_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compressed input whose size its format records is checked against the free temporary space
    before pass 1, as a plain file is (the run skipped the check and could fill the disk); one that
    is only sampled (more than the sample decodes) is not refused on an estimate."""
    import shutil
    from collections import namedtuple

    from bigshuf.core.plan import format_size

    data = random_lines(3 << 20)
    (tmp_path / "sized.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    (tmp_path / "streamed.zst").write_bytes(zstd_streamed(data))
    temp = tmp_path / "temp"
    temp.mkdir()
    assert f"needs {format_size(len(data))} in" in bigshuf.plan_shuffle(tmp_path / "sized.zst", memory="256K", tmp_dir=str(temp)).render()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(bigshuf.TempSpaceError, match=r"need .* free"):
        bigshuf.shuffle(tmp_path / "sized.zst", tmp_path / "out.txt", memory="256K", seed=1, tmp_dir=temp)
    assert list(temp.iterdir()) == [] and not (tmp_path / "out.txt").exists()
    bigshuf.shuffle(tmp_path / "streamed.zst", tmp_path / "out.txt", memory="256K", seed=1, tmp_dir=temp)
    assert sorted((tmp_path / "out.txt").read_bytes().splitlines()) == sorted(data.splitlines())


@pytest.mark.parametrize("name", ["in.txt", "in.zst"])
def test_a_recorded_size_is_planned_as_the_plain_file_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """With its final separator missing, a file needs a byte more than it holds: the plain file's plan
    counted it, the zstd one's recorded size did not, and passed a free-space check the plain file failed."""
    import shutil
    from collections import namedtuple

    data = random_lines(3 << 20).rstrip(b"\n")
    (tmp_path / "in.txt").write_bytes(data)
    (tmp_path / "in.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - len(data), len(data)))
    with pytest.raises(bigshuf.TempSpaceError, match=r"need .* free"):
        bigshuf.shuffle(tmp_path / name, tmp_path / "out.txt", memory="256K", seed=1, tmp_dir=tmp_path)
