"""Plain files' blocks are mapped windows: the same blocks, byte for byte, as the read buffer cuts."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import bigshuf
from bigshuf.core.records import RecordFormat
from bigshuf.progress import Progress
from bigshuf.storage.reader import RecordReader
from bigshuf.storage.sources import FileSource


def _blocks(
    paths: list[Path], capacity: int, sep: int, mapped: bool, counted: bool = False
) -> tuple[list[tuple[bytes, bool, str]], int | str, list[list[int]] | None]:
    """Every block (with the inputs' runs in it and the records counted by then, if ``counted``), the
    bytes read (or the blocks before a refusal and its message) and the final counts, through the
    mappings or (``mapped`` False) the read buffer."""
    reader = RecordReader([FileSource(p) for p in paths], RecordFormat(sep=sep), Progress())
    reader.per_input = [] if counted else None
    if not mapped:
        reader._mappable = lambda: False  # type: ignore[method-assign]
    out: list[tuple[bytes, bool, str]] = []
    try:
        for b, final in reader.blocks(capacity, "-S"):
            out.append((bytes(b), final, f"{reader.block_runs} {reader.per_input}"))  # what a checkpoint after it keeps
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
                outcome = _compare([path], capacity, sep, counted)
                refused, whole = refused + (outcome == "refused"), whole + (outcome == "whole")
    assert refused and whole > 3 * refused  # both outcomes were compared


@pytest.mark.parametrize("sep", [10, 0])
def test_blocks_across_several_mapped_files_are_the_read_buffers_blocks(tmp_path: Path, sep: int) -> None:
    rng = np.random.default_rng(11)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    files = [_file(tmp_path, rng, size, sep, last) for size in (1, 63, 64, 65, 150, 700) for last in (True, False)]
    outcomes = []
    for trial in range(150):
        chosen = [files[i] if i < len(files) else empty for i in rng.integers(0, len(files) + 2, rng.integers(1, 5))]
        capacity = int(rng.choice([64, 65, 100, 128, 300, 1000]))
        outcomes.append(_compare(chosen, capacity, sep, trial % 2 == 0))
    assert outcomes.count("whole") > 50 and "refused" in outcomes


def _compare(paths: list[Path], capacity: int, sep: int, counted: bool) -> str:
    """Assert the mapped blocks of ``paths`` are the read buffer's; say whether they were refused."""
    mapped, read = _blocks(paths, capacity, sep, True, counted), _blocks(paths, capacity, sep, False, counted)
    where = (paths, capacity, counted)
    if isinstance(mapped[1], str):  # refused: the same blocks first, the same words (counts are moot)
        assert mapped[:2] == read[:2], where
        return "refused"
    assert mapped == read, where
    joined = b"".join(b for b, _, _ in mapped[0])
    assert joined == b"".join(p.read_bytes() + (b"" if p.read_bytes().endswith(bytes([sep])) or not p.read_bytes() else bytes([sep])) for p in paths)
    return "whole"


def test_a_record_longer_than_the_capacity_is_refused_in_the_same_words(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(b"short\n" + b"x" * 500 + b"\nend\n")
    mapped, read = _blocks([path], 256, 10, True), _blocks([path], 256, 10, False)
    assert mapped[:2] == read[:2]
    assert isinstance(mapped[1], str) and "long: a record is longer than 256 bytes" in mapped[1]


def test_only_plain_files_read_as_plain_lines_are_mapped(tmp_path: Path) -> None:
    plain, empty, packed = tmp_path / "a.txt", tmp_path / "e.txt", tmp_path / "a.txt.gz"
    plain.write_bytes(b"a\nb\n")
    empty.write_bytes(b"")
    packed.write_bytes(gzip.compress(b"a\nb\n"))

    def mapped(paths: list[Path | str], **kw: int) -> bool:
        return RecordReader([FileSource(p) for p in paths], RecordFormat(group=kw.pop("group", 1)), Progress(), **kw)._mappable()

    assert mapped([plain]) and mapped([plain, empty, plain])
    assert not mapped([plain, packed]) and not mapped([packed]) and not mapped(["-"]) and not mapped([plain, "-"])
    assert not mapped([plain], header=1) and not mapped([plain], group=2)


def _mapped_kib(path: Path) -> int:
    """KiB of ``path``'s pages this process has mapped (``/proc/self/smaps``)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isdigit() or line[:1] in "abcdef":
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.parametrize("aligned", [True, False])
def test_a_consumed_window_is_unmapped_when_the_next_block_is_asked_for(tmp_path: Path, aligned: bool) -> None:
    """The pages mapped at once stay within about two blocks however long the file (``aligned``:
    every block ends exactly at the capacity, so nothing of the file is left in the buffer)."""
    capacity = 4 << 20
    line = b"x" * (1023 if aligned else 999) + b"\n"
    path = tmp_path / "in"
    path.write_bytes(line * (16 * capacity // len(line)))
    reader = RecordReader([FileSource(path)], RecordFormat(), Progress())
    most = blocks = 0
    for block, final in reader.blocks(capacity, "-S"):
        blocks += 1
        assert final or int(block[::4096].max()) == ord("x")  # every page touched
        most = max(most, _mapped_kib(path))
    # Two blocks, and a large page-cache folio (up to 2 MiB) on either side mapped whole by a fault.
    assert blocks >= 16 and 0 < most <= (2 * capacity + (4 << 20)) // 1024
