"""Weighted sources of Parquet, Arrow and JSON Lines rows (``--source``, ``--rate``, ``--mix``): exact
counts per source, the multiset of rows (by their ``id``), uniformity of the picks and of the copies'
places, and the same output for any ``-j``, on every path.

Paths: in memory (64M), external (16K: batches of a few dozen rows, so picks span batches and
batches span files and sources), recursive (8K with at most 2 buckets a level).
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import bigshuf
from bigshuf.core import parallel, plan
from bigshuf.errors import UsageError
from bigshuf.formats.tables import row_sizes
from test_mix_together import plan_lines
from test_uniformity import assert_uniform

#: (label, memory, bucket cap): the three paths of the table shuffle.
PATHS = [("in-memory", "64M", None), ("external", "16K", None), ("recursive", "8K", 2)]

#: Rows each source holds, and where its ids start.
SIZES = {"web": 300, "code": 70, "wiki": 40}
FIRST = {"web": 0, "code": 1000, "wiki": 2000}


def rows_of(name: str, lo: int, hi: int, pad: int = 40) -> pa.Table:
    """Rows ``lo`` to ``hi - 1`` of source ``name``: a unique id, the source's tag (4 bytes) and padding,
    every row the same size."""
    ids = [FIRST[name] + i for i in range(lo, hi)]
    return pa.table({"id": pa.array(ids, pa.int64()), "tag": [name[:4].ljust(4, ".")] * len(ids), "pad": ["p" * pad] * len(ids)})


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, object]:
    """Three sources in four files: web (two Parquet files, one in a directory), code (Arrow IPC), wiki (Parquet)."""
    pq.write_table(rows_of("web", 0, 180), tmp_path / "web-1.parquet", row_group_size=50)
    (tmp_path / "web").mkdir()
    pq.write_table(rows_of("web", 180, 300), tmp_path / "web" / "2.parquet", row_group_size=70)
    feather.write_feather(rows_of("code", 0, 70), tmp_path / "code.arrow", compression="uncompressed")
    pq.write_table(rows_of("wiki", 0, 40), tmp_path / "wiki.parquet")
    return {"web": [tmp_path / "web-1.parquet", tmp_path / "web"], "code": str(tmp_path / "cod*.arrow"), "wiki": tmp_path / "wiki.parquet"}


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str, cap: int | None, **kw: object) -> tuple[bigshuf.ShuffleStats, list[int]]:
    """Shuffle the corpus's sources with ``kw`` into Parquet; the stats and the output's ids in order."""
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    out = tmp_path / "out.parquet"
    stats = bigshuf.shuffle(output=out, memory=memory, tmp_dir=tmp_path, sync=False, **kw)  # type: ignore[arg-type]
    return stats, pq.read_table(out)["id"].to_pylist()


def ids_of(name: str) -> list[int]:
    """Every id of source ``name``."""
    return [FIRST[name] + i for i in range(SIZES[name])]


def source_of(row_id: int) -> str:
    """The source an id belongs to."""
    return next(name for name in ("wiki", "code", "web") if row_id >= FIRST[name])


def expected_passes(label: str, passes: int) -> None:
    """The run took the path it was meant to."""
    assert passes == 1 if label == "in-memory" else passes >= 2, label
    if label == "recursive":
        assert passes >= 3


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_integer_rates_give_the_exact_multiset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, object], label: str, memory: str, cap: int | None
) -> None:
    stats, got = run(tmp_path, monkeypatch, memory, cap, sources=corpus, rates={"web": 0, "code": 3, "wiki": 2}, seed=4, verify=True)
    assert Counter(got) == Counter(ids_of("code") * 3 + ids_of("wiki") * 2)
    assert stats.records == 70 * 3 + 40 * 2
    assert [(s.name, s.read, s.rate, s.written) for s in stats.sources] == [
        ("web", 300, 0.0, 0), ("code", 70, 3.0, 210), ("wiki", 40, 2.0, 80),
    ]
    expected_passes(label, stats.passes)


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_fractional_rates_copy_exactly_round_frac_n_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, object], label: str, memory: str, cap: int | None
) -> None:
    rates = {"web": 0.35, "code": 2.5, "wiki": 1.25}
    stats, got = run(tmp_path, monkeypatch, memory, cap, sources=corpus, rates=rates, seed=9, verify=True)
    seen = Counter(got)
    for name, rate in rates.items():
        n = SIZES[name]
        floor, extra = int(rate), round((rate - int(rate)) * n)
        assert Counter(seen.get(i, 0) for i in ids_of(name)) == Counter({floor: n - extra, floor + 1: extra}), name
    assert set(seen) <= {i for name in SIZES for i in ids_of(name)}
    assert [s.written for s in stats.sources] == [105, 175, 50]
    assert stats.records == len(got) == 105 + 175 + 50
    expected_passes(label, stats.passes)


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_mix_of_rows_gives_each_source_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, object], label: str, memory: str, cap: int | None
) -> None:
    stats, got = run(tmp_path, monkeypatch, memory, cap, sources=corpus, mix={"web": 0.5, "code": 0.3, "wiki": 0.2}, total=401, seed=2)
    # 200.5, 120.3, 80.2: the largest remainder takes the one row left.
    assert Counter(map(source_of, got)) == {"web": 201, "code": 120, "wiki": 80}
    assert [round(s.rate, 9) for s in stats.sources] == [round(201 / 300, 9), round(120 / 70, 9), 2.0]
    expected_passes(label, stats.passes)


def test_mix_of_bytes_counts_arrow_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, object]) -> None:
    """``by="bytes"``: shares of the rows' Arrow bytes as ``row_sizes`` counts them (all rows one size here)."""
    size = int(row_sizes(rows_of("web", 0, 1).to_batches()[0])[0])
    stats, got = run(tmp_path, monkeypatch, "16K", None, sources=corpus, mix={"web": 0.5, "code": 0.25, "wiki": 0.25}, total=size * 200, by="bytes", seed=3)
    assert [s.written for s in stats.sources] == [100, 50, 50]
    assert Counter(map(source_of, got)) == {"web": 100, "code": 50, "wiki": 50}


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_rates_of_one_give_todays_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, object], label: str, memory: str, cap: int | None
) -> None:
    _stats, mixed = run(tmp_path, monkeypatch, memory, cap, sources=corpus, rates={"web": 1, "code": 1}, seed=7)
    files = [tmp_path / "web-1.parquet", tmp_path / "web" / "2.parquet", tmp_path / "code.arrow", tmp_path / "wiki.parquet"]
    plain = tmp_path / "plain.parquet"
    bigshuf.shuffle(files, plain, memory=memory, seed=7, tmp_dir=tmp_path, sync=False)
    assert mixed == pq.read_table(plain)["id"].to_pylist()
    assert (tmp_path / "out.parquet").read_bytes() == plain.read_bytes()


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_threads_do_not_change_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, object], label: str, memory: str, cap: int | None
) -> None:
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)  # the workers run even these small batches
    outputs = [run(tmp_path, monkeypatch, memory, cap, sources=corpus, rates={"web": 0.3, "code": 2.5}, seed=11, threads=j)[1] for j in (1, 2, 3)]
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0]) == 90 + 175 + 40


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_head_count_samples_the_multiset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, object], label: str, memory: str, cap: int | None
) -> None:
    stats, head = run(tmp_path, monkeypatch, memory, cap, sources=corpus, rates={"web": 0, "code": 2, "wiki": 0}, seed=5, head_count=100)
    assert len(head) == stats.records == 100
    assert not Counter(head) - Counter(ids_of("code") * 2)  # copies of code only, none more than twice
    assert max(Counter(head).values()) == 2  # 100 of 140 copies of 70 rows: some row twice


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "16K")])
def test_json_lines_sources_are_counted_first(tmp_path: Path, label: str, memory: str) -> None:
    """JSON Lines read into a table output have no row count: a fractional rate counts them first."""
    for name, n in (("web", 300), ("code", 70)):
        lines = [json.dumps({"id": FIRST[name] + i, "pad": "p" * 40}) for i in range(n)]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    sources = {"web": tmp_path / "web.jsonl", "code": tmp_path / "code.jsonl"}
    out = tmp_path / "out.parquet"
    stats = bigshuf.shuffle(sources=sources, rates={"web": 0.5, "code": 1.5}, output=out, memory=memory, seed=1, tmp_dir=tmp_path)
    got = Counter(pq.read_table(out)["id"].to_pylist())
    assert Counter(map(source_of, got.elements())) == {"web": 150, "code": 105}
    assert Counter(got[i] for i in range(1000, 1070)) == {1: 35, 2: 35}
    assert [s.written for s in stats.sources] == [150, 105]
    assert (stats.passes == 1) == (label == "in-memory")


def test_manifest_lists_each_source(tmp_path: Path, corpus: dict[str, object]) -> None:
    out = tmp_path / "out" / "{split}.parquet"
    bigshuf.shuffle(sources=corpus, rates={"web": 0.5, "code": 2}, output=str(out), split="valid=10,train=rest",
                    manifest=tmp_path / "m.json", seed=1, sync=False)
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert [(s["name"], s["written"]) for s in manifest["sources"]] == [("web", 150), ("code", 140), ("wiki", 40)]
    assert [o["records"] for o in manifest["outputs"]] == [10, 320]
    assert bigshuf.api.check_manifest(tmp_path / "m.json")[0] == []


# ---------------------------------------------------------------- uniformity

#: Runs per chi-square check: 20 expected in each of 10 cells.
RUNS = 200


def pad_rows(name: str, n: int) -> pa.Table:
    """``n`` rows of 300 bytes: at 1K a run of them does not fit in memory, and batches hold a row or two."""
    return pa.table({"id": pa.array([FIRST[name] + i for i in range(n)], pa.int64()), "pad": ["p" * 300] * n})


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_fractional_rate_keeps_a_uniform_subset(tmp_path: Path, label: str, memory: str) -> None:
    """Rate 0.4 over 5 rows behind another source's 3 keeps 2 of them, each of the 10 pairs equally often."""
    pq.write_table(pad_rows("web", 3), tmp_path / "pad.parquet")
    pq.write_table(pad_rows("code", 5), tmp_path / "keep.parquet")
    out = tmp_path / "out.parquet"
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(RUNS):
        stats = bigshuf.shuffle(
            sources={"pad": tmp_path / "pad.parquet", "keep": tmp_path / "keep.parquet"}, rates={"keep": 0.4}, output=out,
            memory=memory, seed=seed, tmp_dir=tmp_path, sync=False,
        )
        counts[tuple(sorted(i - 1000 for i in pq.read_table(out)["id"].to_pylist() if i >= 1000))] += 1
    assert (stats.passes == 1) == (label == "in-memory")
    assert_uniform(counts, list(combinations(range(5), 2)), label)


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_copies_land_independently(tmp_path: Path, label: str, memory: str) -> None:
    """One row at rate 2 among three others: its two copies take each of the 10 pairs of the 5 places equally often."""
    pq.write_table(pad_rows("code", 1), tmp_path / "one.parquet")
    pq.write_table(pad_rows("web", 3), tmp_path / "rest.parquet")
    out = tmp_path / "out.parquet"
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(RUNS):
        stats = bigshuf.shuffle(
            sources={"one": tmp_path / "one.parquet", "rest": tmp_path / "rest.parquet"}, rates={"one": 2}, output=out,
            memory=memory, seed=seed, tmp_dir=tmp_path, sync=False,
        )
        counts[tuple(p for p, i in enumerate(pq.read_table(out)["id"].to_pylist()) if i == 1000)] += 1
    assert (stats.passes == 1) == (label == "in-memory")
    assert_uniform(counts, list(combinations(range(5), 2)), label)


# ---------------------------------------------------------------- refusals and the CLI


def test_stratify_is_refused_for_rows(tmp_path: Path, corpus: dict[str, object]) -> None:
    with pytest.raises(UsageError, match=r"^stratify=True: not available for Parquet or Arrow data \(rows, not lines\)$"):
        bigshuf.shuffle(sources=corpus, split="valid=5,train=rest", stratify=True, output=str(tmp_path / "o" / "{split}.parquet"))
    assert not (tmp_path / "o").exists()


def test_cli(tmp_path: Path, corpus: dict[str, object], run_cli) -> None:  # type: ignore[no-untyped-def]
    base = ["--source", "web=web-1.parquet", "--source", "web=web", "--source", "code=cod*.arrow", "--seed", "1"]
    code, out, err = run_cli([*base, "--rate", "web=0.5,code=2", "-o", "out.parquet"], cwd=tmp_path)
    assert (code, out, err) == (0, b"", b"")
    assert Counter(map(source_of, pq.read_table(tmp_path / "out.parquet")["id"].to_pylist())) == {"web": 150, "code": 140}
    code, out, err = run_cli([*base, "--mix", "web=0.75,code=0.25", "--total", "40", "-o", "out.arrow"], cwd=tmp_path)
    assert (code, err) == (0, b"")
    with pa.memory_map(str(tmp_path / "out.arrow")) as f:
        assert Counter(map(source_of, pa.ipc.open_file(f).read_all()["id"].to_pylist())) == {"web": 30, "code": 10}
    code, out, err = run_cli([*base, "--unique", "-o", "o.parquet"], cwd=tmp_path)
    assert (code, out, err) == (1, b"", b"bigshuf: --source cannot be combined with --unique\n")


def test_dry_run_counts_only_json_lines(tmp_path: Path, corpus: dict[str, object]) -> None:
    """Parquet and Arrow sources say their rows: a plan of a fractional rate announces no counting pass."""
    found = bigshuf.plan_shuffle((), tmp_path / "o.parquet", sources=corpus, rates={"web": 0.5})
    assert plan_lines(found)["sources"] == "web 2 files rate 0.5, code 1 file rate 1, wiki 1 file rate 1"
    (tmp_path / "j.jsonl").write_text('{"id": 1}\n')
    found = bigshuf.plan_shuffle((), tmp_path / "o.parquet", sources={"j": tmp_path / "j.jsonl"}, rates={"j": 0.5})
    assert plan_lines(found)["sources"] == "j 1 file rate 0.5; a counting pass reads every input first"
