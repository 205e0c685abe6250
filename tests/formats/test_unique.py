"""``--unique``: one copy of each byte-identical record, as ``sort -u`` keeps, then a uniform shuffle.

Outputs are compared with ``LC_ALL=C sort -u`` (or an exact reference for record groups) as
multisets: both sorted, byte for byte. Each path is forced by ``-S``: in memory, the dedup stage's
hash buckets, and hash buckets split again one level deeper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

import bigshuf
from bigshuf.core.dedup import first_copies, gather
from bigshuf.core.fingerprint import record_hashes
from bigshuf.core.records import RecordFormat, find_offsets
from bigshuf.errors import UsageError
from bigshuf.formats import dedup_stage
from helpers import run_peak, split_records, write_records
from test_uniformity import assert_uniform

MiB = 1 << 20

#: (label, -S, least passes): in memory; hash buckets that fit; hash buckets split again.
PATHS = [("in-memory", "64M", 1), ("external", "256K", 3), ("recursive", "8K", 4)]


def duplicated_lines(n: int, distinct: int, seed: int, sep: bytes = b"\n") -> bytes:
    """``n`` records drawn from ``distinct`` ones of 1-70 bytes (skewed: low numbers come often)."""
    rng = np.random.default_rng(seed)
    picks = (rng.pareto(1.0, n) * 3).astype(np.int64) % distinct
    bodies = [b"%d:" % v + b"ab" * (v * 7 % 34) for v in range(distinct)]
    return b"".join(bodies[v] + sep for v in picks.tolist())


def sort_u(path: Path, *flags: str) -> bytes:
    """GNU ``sort -u`` of ``path`` in byte order."""
    if shutil.which("sort") is None:
        pytest.skip("no sort(1)")
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(["sort", "-u", *flags, str(path)], capture_output=True, check=True, env=env).stdout


def sorted_records(data: bytes, sep: bytes = b"\n") -> bytes:
    """The records of ``data`` sorted in byte order, each with its separator (``sort``'s output)."""
    return b"".join(r + sep for r in sorted(split_records(data, sep)))


@pytest.mark.parametrize("label,memory,passes", PATHS)
def test_matches_sort_u(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, passes: int) -> None:
    """The same records as ``sort -u`` on every path, the duplicates counted; the last record, without
    its newline, equals an earlier one (sort -u takes them as one line, and so does bigshuf)."""
    levels: list[int] = []
    monkeypatch.setattr(dedup_stage, "dedup_phase", lambda depth: levels.append(depth) or "")  # named at levels below the first
    data = duplicated_lines(40_000 if label != "recursive" else 3_000, 1_500, 1)
    first = data.split(b"\n", 1)[0]
    src = tmp_path / "in.txt"
    src.write_bytes(data + first)  # no newline at the end
    out = tmp_path / "out.txt"
    stats = bigshuf.shuffle(src, out, memory=memory, seed=5, tmp_dir=tmp_path, unique=True, sync=False, threads=2)
    expected = sort_u(src)
    assert sorted_records(out.read_bytes()) == expected
    lines = data.count(b"\n") + 1
    assert stats.records == expected.count(b"\n") and stats.duplicates == lines - stats.records
    assert stats.passes >= passes and (stats.passes == 1) == (label == "in-memory")
    assert bool(levels) == (label == "recursive")
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "out.txt"]  # hash buckets removed


def test_zero_terminated_and_several_inputs(tmp_path: Path) -> None:
    """-z records, and copies spread over two inputs, on the external path with compressed buckets."""
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.write_bytes(duplicated_lines(5_000, 300, 2, b"\0"))
    b.write_bytes(duplicated_lines(5_000, 400, 3, b"\0"))
    both = tmp_path / "both"
    both.write_bytes(a.read_bytes() + b.read_bytes())
    out = tmp_path / "out"
    stats = bigshuf.shuffle([a, b], out, memory="32K", seed=1, zero_terminated=True, unique=True, compress_temp=True, sync=False)
    assert sorted_records(out.read_bytes(), b"\0") == sort_u(both, "-z")
    assert stats.duplicates == 10_000 - stats.records and stats.passes >= 4  # hash buckets split again


@pytest.mark.parametrize("memory", ["64M", "64K"])
def test_lines_per_record_groups(tmp_path: Path, memory: str) -> None:
    """--lines-per-record=2: a record is two lines, equal only if both are (``1\\n2\\n`` is not ``1\\n3\\n``)."""
    rng = np.random.default_rng(4)
    pairs = [b"%d\n%d\n" % (int(x), int(y)) for x, y in rng.integers(0, 12, (6_000, 2))]
    src = tmp_path / "in.fq"
    src.write_bytes(b"".join(pairs))
    out = tmp_path / "out"
    stats = bigshuf.shuffle(src, out, memory=memory, seed=2, lines_per_record=2, unique=True, sync=False)
    got = out.read_bytes()
    offsets = find_offsets(np.frombuffer(got, np.uint8), RecordFormat(10, 2))
    records = [got[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    assert sorted(records) == sorted(set(pairs)) and stats.duplicates == len(pairs) - len(set(pairs))


@pytest.mark.parametrize("memory", ["64M", "64K"])
def test_head_count_samples_the_unique_records(tmp_path: Path, memory: str) -> None:
    """-n after the dedup: COUNT distinct records, all from the input."""
    src = tmp_path / "in"
    src.write_bytes(duplicated_lines(20_000, 500, 6))
    out = tmp_path / "out"
    stats = bigshuf.shuffle(src, out, memory=memory, seed=3, head_count=300, unique=True, sync=False)
    got = split_records(out.read_bytes())
    assert len(got) == len(set(got)) == stats.records == 300
    assert set(got) <= set(split_records(src.read_bytes()))


def test_shards_hold_the_unique_records(tmp_path: Path) -> None:
    """--shards: the shards together are the unique records, counts equal to within one."""
    src = tmp_path / "in"
    src.write_bytes(duplicated_lines(20_000, 700, 7))
    (tmp_path / "out").mkdir()
    stats = bigshuf.shuffle(src, tmp_path / "out", memory="128K", seed=3, shards=3, unique=True, sync=False)
    shards = sorted((tmp_path / "out").iterdir())
    counts = [p.read_bytes().count(b"\n") for p in shards]
    assert len(shards) == 3 and max(counts) - min(counts) <= 1 and sum(counts) == stats.records
    assert sorted_records(b"".join(p.read_bytes() for p in shards)) == sort_u(src)


@pytest.mark.parametrize("memory", ["64M", "64K"])
def test_verify_checks_the_unique_records(tmp_path: Path, memory: str) -> None:
    """--verify holds: what was written is what pass 1 read, the unique records."""
    src = tmp_path / "in"
    src.write_bytes(duplicated_lines(10_000, 300, 8))
    out = tmp_path / "out"
    stats = bigshuf.shuffle(src, out, memory=memory, seed=3, verify=True, unique=True, sync=False)
    assert sorted_records(out.read_bytes()) == sort_u(src) and stats.duplicates > 0


def test_deterministic_and_independent_of_threads(tmp_path: Path) -> None:
    """One seed, one output, whatever -j, on the external path; another seed, another order."""
    src = tmp_path / "in"
    src.write_bytes(duplicated_lines(30_000, 2_000, 9))
    outputs = set()
    for threads in (1, 2, 3):
        out = tmp_path / f"out{threads}"
        bigshuf.shuffle(src, out, memory="256K", seed=11, tmp_dir=tmp_path, unique=True, threads=threads, sync=False)
        outputs.add(out.read_bytes())
    assert len(outputs) == 1
    other = tmp_path / "other"
    bigshuf.shuffle(src, other, memory="256K", seed=12, unique=True, sync=False)
    assert other.read_bytes() != outputs.pop()


@pytest.mark.parametrize("label,memory,distinct,runs", [("in-memory", "64M", 4, 25), ("external", "2K", 3, 40)])
def test_order_of_unique_records_is_uniform(tmp_path: Path, label: str, memory: str, distinct: int, runs: int) -> None:
    """Records a, c, a, b, c, (d,) c of 200 bytes each: every order of the distinct ones equally often
    (``runs`` runs an order expected; the external path is slower, so it has three records)."""
    records = [(b"%d:" % i).ljust(200, b"x") for i in range(distinct)]
    src = write_records(tmp_path / "in", [records[i] for i in (0, 2, 0, 1, 2, 3, 2) if i < distinct])
    out = tmp_path / "out"
    counts: Counter = Counter()
    for seed in range(len(list(permutations(range(distinct)))) * runs):
        stats = bigshuf.shuffle(src, out, memory=memory, seed=seed, tmp_dir=tmp_path, unique=True, sync=False, threads=2)
        assert stats.duplicates == 3 and (stats.passes == 1) == (label == "in-memory")
        counts[tuple(records.index(r) for r in split_records(out.read_bytes()))] += 1
    assert_uniform(counts, list(permutations(range(distinct))), label)


def test_duplicate_heavy_input_far_larger_than_memory(tmp_path: Path) -> None:
    """~40 MiB of 3,000 distinct lines at -S 2M (20x): exact, and the peak RSS within the limit
    and the memory tests' slack over a one-line run."""
    from test_memory import SLACK

    src = tmp_path / "in"
    src.write_bytes(duplicated_lines(1_700_000, 3_000, 10))
    assert src.stat().st_size >= 20 * 2 * MiB
    one = write_records(tmp_path / "one", [b"x"])
    _, baseline = run_peak(["--unique", str(one), "-o", str(tmp_path / "one.out")], tmp_path)
    out = tmp_path / "out"
    status, peak = run_peak(["--unique", "-S", "2M", "-T", str(tmp_path), str(src), "-o", str(out)], tmp_path)
    assert status == 0
    assert sorted_records(out.read_bytes()) == sort_u(src)
    assert peak <= baseline + 2 * MiB + SLACK, f"peak {peak / MiB:.0f} MiB, baseline {baseline / MiB:.0f} MiB"


def test_long_records(tmp_path: Path) -> None:
    """30 KB records, some repeated, at -S 128K: a bucket of one record is passed on whole, copies split
    until they fit; at -S 100K copies in a quarter of the limit cannot be split: one line, exit 1."""
    rng = np.random.default_rng(3)
    big = [(b"%d:" % i).ljust(30_000, b"z") for i in range(5)]
    records = [big[i] for i in rng.integers(0, 5, 40).tolist()] + [b"small%d" % i for i in range(100)]
    src = write_records(tmp_path / "in", [records[i] for i in rng.permutation(len(records)).tolist()])
    out = tmp_path / "out"
    stats = bigshuf.shuffle(src, out, memory="128K", seed=1, unique=True, sync=False)
    assert sorted_records(out.read_bytes()) == sort_u(src) and stats.duplicates == 35 and stats.passes > 4
    refused = subprocess.run([sys.executable, "-m", "bigshuf", "--unique", "-S", "100K", str(src)], capture_output=True)
    assert refused.returncode == 1 and refused.stdout == b""
    assert refused.stderr == (
        b"bigshuf: copies could not be split below 100.0 KiB after 17 passes: --unique needs the records repeated "
        b"to be shorter than about a quarter of -S; raise -S\n"
    )


def test_hash_collisions_never_merge_distinct_records() -> None:
    """first_copies with every hash equal, or one of three values of the bytes: exactly the first copy
    of each distinct record."""
    records = [b"%d\n" % v for v in np.random.default_rng(5).integers(0, 40, 500).tolist()]
    block = np.frombuffer(b"".join(records), np.uint8)
    offsets = find_offsets(block, RecordFormat())
    expected = [i for i, r in enumerate(records) if records.index(r) == i]
    for hashes in (np.zeros(500, np.uint64), record_hashes(block, offsets) % np.uint64(3)):
        kept = first_copies(block, offsets, hashes)
        assert kept.tolist() == expected
        data, new_offsets = gather(block, offsets, kept)
        assert data.tobytes() == b"".join(records[i] for i in expected) and len(new_offsets) == len(expected) + 1


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"repeat": True}, "unique=True cannot be used with repeat=True"),
    ],
)
def test_refusals(tmp_path: Path, settings: dict[str, object], message: str) -> None:
    src = write_records(tmp_path / "in", [b"a", b"a"])
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bigshuf.shuffle(src, tmp_path / "out", unique=True, **settings)  # type: ignore[arg-type]


def test_rows_are_deduplicated_too(tmp_path: Path) -> None:
    """JSON Lines read into Parquet are rows: ``--unique`` compares them as rows (tests/formats/test_table_mix.py)."""
    src = write_records(tmp_path / "in.jsonl", [b'{"a": 1}', b'{"a":1}', b'{"a": 2}'])
    stats = bigshuf.shuffle(src, tmp_path / "out.parquet", unique=True, seed=1)
    assert (stats.records, stats.duplicates) == (2, 1)
