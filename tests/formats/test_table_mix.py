"""Weighted sources of Parquet, Arrow and JSON Lines rows (``--source``, ``--rate``, ``--mix``): exact
counts per source, the multiset of rows (by their ``id``), uniformity of the picks and of the copies'
places, and the same output for any ``-j``, on every path.

Paths: in memory (64M), external (16K: batches of a few dozen rows, so picks span batches and
batches span files and sources), recursive (8K with at most 2 buckets a level).
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations, permutations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import bigshuf
from bigshuf.core import parallel, plan
from bigshuf.errors import UsageError
from bigshuf.formats.tables import row_sizes
from helpers import expected_passes
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


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_stratify_gives_each_split_each_sources_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, object], label: str, memory: str, cap: int | None
) -> None:
    """Rates 0.5, 2, 1 make web 150, code 140, wiki 40 copies (330); valid=33 takes 15, 14 and 4 of
    them, train the rest, and the splits together hold the multiset."""
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    out = tmp_path / "out" / "{split}.parquet"
    stats = bigshuf.shuffle(sources=corpus, rates={"web": 0.5, "code": 2}, output=str(out), split="valid=33,train=rest",
                            stratify=True, memory=memory, seed=6, tmp_dir=tmp_path, sync=False, verify=True,
                            manifest=tmp_path / "m.json")
    valid = pq.read_table(tmp_path / "out" / "valid.parquet")["id"].to_pylist()
    train = pq.read_table(tmp_path / "out" / "train.parquet")["id"].to_pylist()
    assert Counter(map(source_of, valid)) == {"web": 15, "code": 14, "wiki": 4}
    assert Counter(map(source_of, train)) == {"web": 135, "code": 126, "wiki": 36}
    assert Counter(valid + train)[FIRST["code"]] == 2 and Counter(map(source_of, set(valid + train)))["web"] == 150
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["stratified"][0] == {"split": "valid", "records": 33, "sources": {"web": 15, "code": 14, "wiki": 4}}
    expected_passes(label, stats.passes)


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_stratified_split_is_a_uniform_subset_in_uniform_order(tmp_path: Path, label: str, memory: str) -> None:
    """Two sources of 2 rows each, valid=2 stratified: valid holds one row of each source, each of the
    4 pairs in each of its 2 orders equally often."""
    pq.write_table(pad_rows("web", 2), tmp_path / "a.parquet")
    pq.write_table(pad_rows("code", 2), tmp_path / "b.parquet")
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(160):
        stats = bigshuf.shuffle(
            sources={"a": tmp_path / "a.parquet", "b": tmp_path / "b.parquet"}, split="valid=2,train=rest", stratify=True,
            output=str(tmp_path / "o" / "{split}.parquet"), memory=memory, seed=seed, tmp_dir=tmp_path, sync=False,
        )
        counts[tuple(pq.read_table(tmp_path / "o" / "valid.parquet")["id"].to_pylist())] += 1
    assert (stats.passes == 1) == (label == "in-memory")
    cells = [(a, b) for a in (0, 1) for b in (1000, 1001)] + [(b, a) for a in (0, 1) for b in (1000, 1001)]
    assert_uniform(counts, cells, label)


def test_cli(tmp_path: Path, corpus: dict[str, object], run_cli) -> None:  # type: ignore[no-untyped-def]
    base = ["--source", "web=web-1.parquet", "--source", "web=web", "--source", "code=cod*.arrow", "--seed", "1"]
    code, out, err = run_cli([*base, "--rate", "web=0.5,code=2", "-o", "out.parquet"], cwd=tmp_path)
    assert (code, out, err) == (0, b"", b"")
    assert Counter(map(source_of, pq.read_table(tmp_path / "out.parquet")["id"].to_pylist())) == {"web": 150, "code": 140}
    code, out, err = run_cli([*base, "--mix", "web=0.75,code=0.25", "--total", "40", "-o", "out.arrow"], cwd=tmp_path)
    assert (code, err) == (0, b"")
    with pa.memory_map(str(tmp_path / "out.arrow")) as f:
        assert Counter(map(source_of, pa.ipc.open_file(f).read_all()["id"].to_pylist())) == {"web": 30, "code": 10}
    code, out, err = run_cli([*base, "--unique", "--rate", "web=0.5,code=2", "-o", "o.parquet"], cwd=tmp_path)
    assert (code, out, err) == (0, b"", b"")  # no row repeated: the plain run's counts
    assert Counter(map(source_of, pq.read_table(tmp_path / "o.parquet")["id"].to_pylist())) == {"web": 150, "code": 140}


def test_dry_run_counts_only_json_lines(tmp_path: Path, corpus: dict[str, object]) -> None:
    """Parquet and Arrow sources say their rows: a plan of a fractional rate announces no counting pass."""
    found = bigshuf.plan_shuffle((), tmp_path / "o.parquet", sources=corpus, rates={"web": 0.5})
    # The inputs are small enough to be read whole by the plan: the multiset is counted, as the run writes it.
    assert plan_lines(found)["sources"] == "web 2 files rate 0.5, code 1 file rate 1, wiki 1 file rate 1; 260 records to shuffle"
    assert bigshuf.shuffle((), tmp_path / "o.parquet", sources=corpus, rates={"web": 0.5}).records == 260
    (tmp_path / "j.jsonl").write_text('{"id": 1}\n')
    found = bigshuf.plan_shuffle((), tmp_path / "o.parquet", sources={"j": tmp_path / "j.jsonl"}, rates={"j": 0.5})
    assert plan_lines(found)["sources"] == "j 1 file rate 0.5; 1 record to shuffle; a counting pass reads every input first"


# ---------------------------------------------------------------- --unique for rows


def canonical(table: pa.Table) -> list[tuple[object, ...]]:
    """Each row as a key that is equal exactly when the rows are the same for ``--unique``: floats
    by their bits, nulls as None whatever lies under them, lists and structs by their values."""
    def key(value: object, t: pa.DataType) -> object:
        if value is None:
            return None
        if pa.types.is_floating(t):
            return struct.pack("<d", value)
        if pa.types.is_list(t):
            return ("list", tuple(key(v, t.value_type) for v in value))  # type: ignore[attr-defined]
        if pa.types.is_struct(t):
            return ("struct", tuple(key(value[f.name], f.type) for f in t))  # type: ignore[index]
        return value

    types = [f.type.value_type if pa.types.is_dictionary(f.type) else f.type for f in table.schema]
    columns = [c.to_pylist() for c in table.columns]
    return [tuple(key(v, t) for v, t in zip(row, types)) for row in zip(*columns)]


def tricky_rows(copies: int) -> pa.Table:
    """Rows that look alike but differ (-0.0 and 0.0, NaN payloads, [] and null, a null struct and one of
    nulls) and rows that are the same though their bytes differ (nulls over different values), each
    repeated ``copies`` times, with an ``id`` telling the rows' kinds apart only where they differ."""
    nan_a, nan_b = np.array([0x7FF8000000000001, 0x7FF8000000000002], np.uint64).view(np.float64)
    floats = [0.0, -0.0, float(nan_a), float(nan_a), float(nan_b), 1.5, 1.5, None]
    lists = [[1, 2], [1, 2], [], None, [2, 1], [1], [1], None]
    structs = [{"x": 1}, {"x": 1}, None, {"x": None}, {"x": 1}, {"x": 1}, {"x": 1}, None]
    # Column "n": nulls over the values 5 and 7 (the same row for --unique), else 3.
    n_values = pa.array([3, 3, 3, 3, 3, 5, 7, 3], pa.int64())
    validity = pa.array([True] * 5 + [False, False, True]).buffers()[1]
    n = pa.Array.from_buffers(pa.int64(), 8, [validity, n_values.buffers()[1]])
    base = pa.table({
        "f": pa.array(floats, pa.float64()), "l": pa.array(lists, pa.list_(pa.int64())),
        "s": pa.array(structs, pa.struct([("x", pa.int64())])), "n": n,
        "c": pa.array(["a", "a", "b", "b", "b", "c", "c", "d"]).dictionary_encode(),
    })
    return pa.concat_tables([base] * copies).combine_chunks()


UNIQUE_PATHS = [("in-memory", "64M", None), ("external", "16K", None), ("recursive", "8K", 2)]


@pytest.mark.parametrize("label,memory,cap", UNIQUE_PATHS)
def test_unique_rows_match_a_reference_dedup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    tricky = tricky_rows(40)
    src = tmp_path / "in.arrow"
    feather.write_feather(tricky, src, compression="uncompressed")
    many = pa.table({"k": pa.array([i % 97 for i in range(4000)], pa.int64()), "pad": ["p" * 20] * 4000})
    pq.write_table(many, tmp_path / "many.parquet", row_group_size=300)
    for table, path in ((tricky, src), (many, tmp_path / "many.parquet")):
        out = tmp_path / "out.arrow"
        stats = bigshuf.shuffle(path, out, unique=True, memory=memory, seed=3, verify=True, tmp_dir=tmp_path, sync=False)
        with pa.memory_map(str(out)) as f:
            got = canonical(pa.ipc.open_file(f).read_all())
        expected = set(canonical(table))
        assert len(got) == len(set(got)) == stats.records and set(got) == expected
        assert stats.duplicates == table.num_rows - len(expected)
        expected_passes(label, stats.passes)
    if label == "recursive":
        assert stats.passes >= 5  # hash buckets of copies too big for 8K split again, more than once
    assert len(expected) == 97 and len(set(canonical(tricky))) == 7  # of 8 kinds, the 6th and 7th are the same rows


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "16K")])
def test_unique_output_same_for_any_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str) -> None:
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)
    pq.write_table(pa.table({"k": pa.array([i % 211 for i in range(3000)], pa.int64()), "pad": ["q" * 30] * 3000}), tmp_path / "in.parquet")
    outputs = []
    for j in (1, 2, 3):
        bigshuf.shuffle(tmp_path / "in.parquet", tmp_path / "out.parquet", unique=True, memory=memory, seed=5, threads=j, tmp_dir=tmp_path)
        outputs.append(pq.read_table(tmp_path / "out.parquet")["k"].to_pylist())
    assert outputs[0] == outputs[1] == outputs[2] and sorted(outputs[0]) == list(range(211))


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "4K")])
def test_unique_rows_in_uniform_order(tmp_path: Path, label: str, memory: str) -> None:
    """Three distinct rows, each three times: the three kept come in each of their 6 orders equally often."""
    rows = pa.table({"id": pa.array([0, 1, 2] * 3, pa.int64()), "pad": ["p" * 300] * 9})
    pq.write_table(rows, tmp_path / "in.parquet", row_group_size=2)
    out = tmp_path / "out.parquet"
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(120):
        stats = bigshuf.shuffle(tmp_path / "in.parquet", out, unique=True, memory=memory, seed=seed, tmp_dir=tmp_path, sync=False)
        counts[tuple(pq.read_table(out)["id"].to_pylist())] += 1
    assert (stats.passes == 1) == (label == "in-memory") and stats.duplicates == 6
    assert_uniform(counts, list(permutations(range(3))), label)


def test_unique_refuses_columns_it_cannot_compare(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    union = pa.UnionArray.from_sparse(pa.array([0, 1], pa.int8()), [pa.array([1, 2]), pa.array(["a", "b"])])
    feather.write_feather(pa.table({"id": [1, 2], "u": union}), tmp_path / "u.arrow", compression="uncompressed")
    code, out, err = run_cli(["--unique", "u.arrow", "-o", "o.arrow"], cwd=tmp_path)
    assert (code, out) == (1, b"")
    assert err == b"bigshuf: --unique cannot compare column 'u' of type sparse_union<0: int64=0, 1: string=1>\n"
    assert not (tmp_path / "o.arrow").exists()
    # The Dask engine asks its task format (TaskFormat.check_unique) and refuses it the same way.
    with ThreadPoolExecutor(1) as runner, pytest.raises(UsageError, match=r"^unique=True cannot compare column 'u' of type sparse_union"):
        bigshuf.shuffle(tmp_path / "u.arrow", tmp_path / "o.arrow", unique=True, engine="dask", scheduler=runner)
    assert not (tmp_path / "o.arrow").exists()


# ---------------------------------------------------------------- --shard-size for rows


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_shard_size_cuts_rows_by_their_arrow_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None
) -> None:
    """Every shard but the last holds ``shard_size`` to ``shard_size`` plus one row of bytes (by
    ``row_sizes``), rows of varied sizes never cut, and the shards together are the plain run's output."""
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    rows = pa.table({"id": pa.array(range(600), pa.int64()), "text": ["t" * (i % 37) for i in range(600)]})
    src = tmp_path / "in.parquet"
    pq.write_table(rows, src, row_group_size=100)
    plain = tmp_path / "plain.parquet"
    bigshuf.shuffle(src, plain, memory=memory, seed=8, tmp_dir=tmp_path, sync=False)
    stats = bigshuf.shuffle(src, str(tmp_path / "out" / "part-{:03d}.parquet"), memory=memory, seed=8, shard_size="1K",
                            tmp_dir=tmp_path, sync=False, manifest=tmp_path / "m.json")
    names = sorted((tmp_path / "out").iterdir())
    parts = [pq.read_table(p) for p in names]
    sizes = [int(row_sizes(p.combine_chunks().to_batches()[0]).sum()) if p.num_rows else 0 for p in parts]
    largest = int(row_sizes(rows.to_batches()[0]).max())
    assert all(1024 <= size < 1024 + largest for size in sizes[:-1]) and 0 < sizes[-1] < 1024 + largest, sizes
    assert sum(sizes) == int(row_sizes(rows.to_batches()[0]).sum()) and len(parts) == len(sizes) > 10
    assert pa.concat_tables(parts)["id"].to_pylist() == pq.read_table(plain)["id"].to_pylist()
    assert bigshuf.api.check_manifest(tmp_path / "m.json")[0] == []
    expected_passes(label, stats.passes)


@pytest.mark.parametrize("memory", ["64M", "16K"])
def test_unique_rows_in_two_sources_count_for_the_first(tmp_path: Path, memory: str) -> None:
    """A row in two sources is kept as the first source's, as README says for ``--unique`` with
    sources; a copy within one source is that source's drop. Keeping the last copy instead passed
    every table test (mutation review)."""
    a = pa.table({"v": [f"row {i}" for i in range(10)] + ["row 3"]})  # row 3 twice in a
    b = pa.table({"v": [f"row {i}" for i in range(5, 15)]})  # rows 5-9 are a's too
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    stats = bigshuf.shuffle(
        sources={"a": tmp_path / "a.parquet", "b": tmp_path / "b.parquet"}, output=tmp_path / "o.parquet", unique=True,
        memory=memory, seed=1, tmp_dir=tmp_path, sync=False,
    )
    assert [(s.name, s.read, s.dropped, s.written) for s in stats.sources] == [("a", 11, 1, 10), ("b", 10, 5, 5)]
    assert sorted(pq.read_table(tmp_path / "o.parquet")["v"].to_pylist()) == sorted(f"row {i}" for i in range(15))
