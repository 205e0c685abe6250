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

from bigshuf.storage.expansion import decoded_sizes, spread
from bigshuf.storage.sources import FileSource

from helpers import make_records


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
    sizes = decoded_sizes([FileSource(tmp_path / "a.zst"), FileSource(tmp_path / "b.zst")], [0, 1])
    assert sizes[0] == len(one) + len(two)
    assert sizes[1] is not None and sizes[1] != len(one) + len(two)


def test_xz_indexes_are_added_up_over_streams_and_padding(tmp_path: Path) -> None:
    one, two = repetitive(2 << 20), random_lines(300_000)
    blob = lzma.compress(one) + b"\0" * 8 + lzma.compress(two, check=lzma.CHECK_NONE) + b"\0" * 4
    (tmp_path / "a.xz").write_bytes(blob)
    assert decoded_sizes([FileSource(tmp_path / "a.xz")]) == [len(one) + len(two)]


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
    sizes = decoded_sizes(sources, [0] * 6 + [1] * 3)
    for got, want in zip(sizes, truth):
        assert got is not None and abs(got - want) < want * 0.05


def test_spread_takes_the_first_last_and_evenly_between() -> None:
    assert spread(list(range(100)), 4) == [0, 33, 66, 99]
    assert spread([3, 5], 4) == [3, 5]
