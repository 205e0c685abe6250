"""``-n P%``: a uniform sample of round(P/100 x N) of the N records read, on every path.

The sample is the seeded run's ``-n COUNT`` output for that count, byte for byte, so it is the
head of the same uniform permutation; the external path drops the buckets past the count once
pass 1 has counted the records (no third pass).
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bigshuf
from bigshuf.core import plan
from bigshuf.core.head import count_of, parse_share
from bigshuf.engines import dask as dask_engine
from bigshuf.progress import Progress
from helpers import make_records, split_records, temp_leftovers, write_records
from test_uniformity import assert_uniform, records_of

# (label, memory, bucket cap): in memory, external, and external with buckets that recurse.
PATHS = [("in-memory", "64M", None), ("external", "16K", None), ("recursive", "16K", 2)]


def expected_count(share: str, n: int) -> int:
    fraction = parse_share(share)
    assert fraction is not None
    return count_of(fraction, n)


@pytest.mark.parametrize("label,memory,cap", PATHS)
@pytest.mark.parametrize("share", ["10%", "0.5%", "33.3%", "0%", "100%"])
def test_share_is_the_count_sample_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None, share: str
) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    records = make_records(1999, seed=4, min_len=20, max_len=60)
    src = write_records(tmp_path / "in.txt", records)
    want = expected_count(share, len(records))
    by_share, by_count = tmp_path / "share.txt", tmp_path / "count.txt"
    stats = bigshuf.shuffle(src, by_share, memory=memory, seed=9, head_count=share, tmp_dir=tmp_path, sync=False)
    bigshuf.shuffle(src, by_count, memory=memory, seed=9, head_count=want, tmp_dir=tmp_path, sync=False)
    got = split_records(by_share.read_bytes())
    assert stats.records == len(got) == want
    assert by_share.read_bytes() == by_count.read_bytes()
    assert not Counter(got) - Counter(records)  # a sample: no record more often than it was read
    if want > 1:
        assert len(set(got)) == want or len(set(records)) < len(records)
    if label != "in-memory" and want:
        assert stats.passes >= 2
    if label == "recursive" and share == "100%":
        assert stats.passes > 2
    assert temp_leftovers(tmp_path) == ["count.txt", "in.txt", "share.txt"]


def test_share_of_a_full_shuffle_drops_buckets_after_pass_1(tmp_path: Path) -> None:
    # 10% of an external run needs only the first buckets: fewer bytes go through pass 2.
    records = make_records(4000, seed=1, min_len=40, max_len=40)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out.txt"
    seen: list[tuple[str, int | None]] = []

    class Bars(Progress):
        def start(self, name: str, total: int | None) -> None:
            seen.append((name, total))

    bigshuf.shuffle(src, out, memory="16K", seed=2, head_count="10%", progress=Bars(), sync=False)
    assert len(split_records(out.read_bytes())) == 400
    pass2 = [total for name, total in seen if "shuffl" in name.lower()]
    assert pass2 and pass2[0] is not None and pass2[0] < src.stat().st_size // 2


def test_parquet_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = pa.table({"id": list(range(1234)), "text": [f"row {i}" * 3 for i in range(1234)]})
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    for memory in ("64M", "64K"):
        out, ref = tmp_path / f"s{memory}.parquet", tmp_path / f"c{memory}.parquet"
        stats = bigshuf.shuffle(src, out, memory=memory, seed=3, head_count="25%", tmp_dir=tmp_path)
        bigshuf.shuffle(src, ref, memory=memory, seed=3, head_count=309, tmp_dir=tmp_path)  # 308.5 rounds up
        got = pq.read_table(out)
        assert stats.records == got.num_rows == 309
        assert len(set(got["id"].to_pylist())) == 309
        assert got.equals(pq.read_table(ref))


def test_dask_engine(tmp_path: Path) -> None:
    records = make_records(3001, seed=6)
    src = write_records(tmp_path / "in.txt", records)
    with ThreadPoolExecutor(2) as runner:
        stats = dask_engine.shuffle([str(src)], tmp_path / "out.txt", memory="16K", seed=5, runner=runner,
                                    tmp_dir=tmp_path, head_share=parse_share("10%"))
    got = split_records((tmp_path / "out.txt").read_bytes())
    assert stats.records == len(got) == 300  # 300.1
    assert not Counter(got) - Counter(records)


def run(args: list[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bigshuf", *args], cwd=cwd, input=stdin, capture_output=True)


def test_command_line(tmp_path: Path) -> None:
    data = b"".join(b"%d\n" % i for i in range(1, 1001))
    (tmp_path / "a.txt").write_bytes(data)
    assert len(run(["-n", "10%", "a.txt"], tmp_path).stdout.split()) == 100
    assert len(run(["-n", "10%"], tmp_path, stdin=data).stdout.split()) == 100  # a pipe
    assert len(run(["--head-count=0.5%", "a.txt"], tmp_path).stdout.split()) == 5
    assert len(run(["-n", "20%", "-n", "10%", "a.txt"], tmp_path).stdout.split()) == 100  # the smaller
    assert len(run(["-i", "1-1000", "-n", "10%"], tmp_path).stdout.split()) == 100
    assert len(run(["-r", "-n", "50%", "a.txt"], tmp_path).stdout.split()) == 500
    echoed = run(["-e", "-n", "50%", "a", "b", "c", "d"], tmp_path).stdout.split()
    assert len(echoed) == 2 and set(echoed) <= {b"a", b"b", b"c", b"d"}
    out = run(["-S", "16K", "--seed", "1", "-n", "10%", "a.txt", "-o", "o.txt"], tmp_path)
    assert out.returncode == 0 and len((tmp_path / "o.txt").read_bytes().split()) == 100


@pytest.mark.parametrize(
    "args,message",
    [
        (["-n", "101%"], "invalid line count: '101%'"),
        (["-n", "-5%"], "invalid line count: '-5%'"),
        (["-n", "12.%"], "invalid line count: '12.%' (a percentage from 0% to 100% such as 10% or 0.5%: digits with digits after any dot"),
        (["-n", ".5%"], "invalid line count: '.5%' (a percentage from 0% to 100%"),
        (["-n", "5", "-n", "10%"], "invalid line count: '10%' (-n was given as a count already)"),
        (["-n", "10%", "-n", "5"], "invalid line count: '5' (-n was given as a percentage already)"),
        (["-n", "10%", "--verify"], "--verify checks whole shuffles; it cannot check a sample (-n)"),
        (["-n", "10%", "--resume", "--seed", "1", "-o", "o.txt"], "--resume cannot be used with -n P%"),
    ],
)
def test_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "a.txt").write_bytes(b"1\n2\n")
    result = run([*args, "a.txt"], tmp_path)
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bigshuf: ") and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_library_refuses_a_bad_share(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", [b"a", b"b"])
    for call in (lambda: bigshuf.shuffle(src, head_count="ten%"), lambda: bigshuf.shuffle_range(1, 5, head_count="3")):
        with pytest.raises(bigshuf.UsageError, match="head_count must be an integer or a percentage"):
            call()
    # It read "(its number digits with digits after any dot...)" (found by a review of the library).
    with pytest.raises(bigshuf.UsageError) as caught:
        bigshuf.shuffle(src, head_count="x")
    assert str(caught.value) == (
        "head_count must be an integer or a percentage from '0%' to '100%' such as '10%' or '0.5%' "
        "(digits with digits after any dot, such as 0.5 or 2.5), not str 'x'"
    )


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_which_records_a_share_keeps_is_uniform(tmp_path: Path, label: str, memory: str) -> None:
    # 50% of 6 records keeps 3: each of the 20 subsets equally often over a fixed seed list.
    records = records_of(6, 150)
    src = write_records(tmp_path / "in", records)
    out = tmp_path / "out"
    kept: Counter = Counter()
    for seed in range(20 * 30):
        bigshuf.shuffle(src, out, memory=memory, seed=seed, head_count="50%", tmp_dir=tmp_path, sync=False)
        got = [records.index(r) for r in split_records(out.read_bytes())]
        assert len(got) == 3
        kept[tuple(sorted(got))] += 1
    assert_uniform(kept, list(combinations(range(6), 3)), label)
