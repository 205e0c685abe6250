"""A lone plain file's blocks are mapped windows: the same blocks, byte for byte, as the read buffer cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bigshuf
from bigshuf.core.records import RecordFormat
from bigshuf.progress import Progress
from bigshuf.storage.reader import RecordReader
from bigshuf.storage.sources import FileSource


def _blocks(
    path: Path, capacity: int, sep: int, mapped: bool, counted: bool = False
) -> tuple[list[tuple[bytes, bool, str]], int | str, list[list[int]] | None]:
    """Every block (with the records counted by then, if ``counted``), the bytes read (or the blocks
    before a refusal and its message) and the final counts, through the mapping or (``mapped``
    False) the read buffer."""
    reader = RecordReader([FileSource(path)], RecordFormat(sep=sep), Progress())
    reader.per_input = [] if counted else None
    if not mapped:
        reader._mappable = lambda: None  # type: ignore[method-assign]
    out: list[tuple[bytes, bool, str]] = []
    try:
        for b, final in reader.blocks(capacity, "-S"):
            out.append((bytes(b), final, str(reader.per_input)))  # the counts a checkpoint after it would keep
    except bigshuf.InputError as e:
        return out, str(e), reader.per_input
    return out, reader.bytes_read, reader.per_input


def _file(tmp_path: Path, rng: np.random.Generator, size: int, sep: int, last: bool) -> Path:
    """``size`` bytes of records 1-40 bytes long, ending with ``sep`` or (``last`` False) not."""
    data = rng.integers(97, 123, size, dtype=np.uint8)
    data[rng.random(size) < 1 / 20] = sep
    data[-1] = sep if last else 97
    path = tmp_path / f"in-{size}-{sep}-{last}"
    path.write_bytes(data.tobytes())
    return path


@pytest.mark.parametrize("sep", [10, 0])
def test_mapped_blocks_are_the_read_buffers_blocks(tmp_path: Path, sep: int) -> None:
    rng = np.random.default_rng(7)
    refused = whole = 0
    for size in [1, 2, 199, 200, 201, 4000]:
        for last in (True, False):
            path = _file(tmp_path, rng, size, sep, last)
            for capacity in sorted({256, 200, 199, 201, size - 1, size, size + 1, max(64, size // 3)}):
                if capacity < 64:
                    continue
                counted = capacity % 2 == 1  # with each input's records counted (--manifest, --resume) half the time
                mapped, read = _blocks(path, capacity, sep, True, counted), _blocks(path, capacity, sep, False, counted)
                if isinstance(mapped[1], str):  # refused: the same blocks first, the same words (counts are moot)
                    assert mapped[:2] == read[:2], (size, last, capacity)
                    refused += 1
                    continue
                assert mapped == read, (size, last, capacity)
                whole += 1
                assert b"".join(b for b, _, _ in mapped[0]).rstrip(bytes([sep])) == path.read_bytes().rstrip(bytes([sep]))
    assert refused and whole > 3 * refused  # both outcomes were compared


def test_a_block_is_a_window_of_the_mapping_not_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "in"
    path.write_bytes(b"".join(b"%06d\n" % i for i in range(1000)))
    reader = RecordReader([FileSource(path)], RecordFormat(), Progress())
    first, final = next(reader.blocks(1000, "-S"))
    assert not final and len(first) == 994 and not first.flags.writeable and not first.flags.owndata


def test_a_record_longer_than_the_capacity_is_refused_in_the_same_words(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(b"short\n" + b"x" * 500 + b"\nend\n")
    mapped, read = _blocks(path, 256, 10, True), _blocks(path, 256, 10, False)
    assert mapped[:2] == read[:2]
    assert isinstance(mapped[1], str) and "long: a record is longer than 256 bytes" in mapped[1]


def test_only_a_lone_plain_file_is_mapped(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_bytes(b"a\nb\n")
    assert RecordReader([FileSource(plain)], RecordFormat(), Progress())._mappable() == 4
    assert RecordReader([FileSource(plain), FileSource(plain)], RecordFormat(), Progress())._mappable() is None
    assert RecordReader([FileSource(plain)], RecordFormat(), Progress(), header=1)._mappable() is None
    assert RecordReader([FileSource(plain)], RecordFormat(group=2), Progress())._mappable() is None
    assert RecordReader([FileSource("-")], RecordFormat(), Progress())._mappable() is None
    empty = tmp_path / "e.txt"
    empty.write_bytes(b"")
    assert RecordReader([FileSource(empty)], RecordFormat(), Progress())._mappable() is None
    import gzip

    packed = tmp_path / "a.txt.gz"
    packed.write_bytes(gzip.compress(b"a\nb\n"))
    assert RecordReader([FileSource(packed)], RecordFormat(), Progress())._mappable() is None
