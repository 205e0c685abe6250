"""``--stratify``: every split holds its share of each source's records in the multiset, exactly,
and is still a uniformly random subset of each source in uniformly random order.

Paths: in memory (64M), external (4K: blocks of a few records, so a source's copies are assigned
over several blocks), recursive (2K with at most 2 buckets a level). Records name their source
(``web17:xxx``), so each split's records per source are counted from its bytes. Chi-square
checks run a fixed list of seeds (threshold as in tests/test_uniformity.py).
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations, permutations
from pathlib import Path

import numpy as np
import pytest

import bigshuf
from bigshuf.core import parallel, plan, streams
from bigshuf.core.stratify import Stratifier, largest_remainder, split_table
from bigshuf.errors import InputError, UsageError
from bigshuf.storage.layout import parse_split
from helpers import source_records, split_records, write_records
from test_uniformity import assert_uniform

#: (label, memory, bucket cap): the three paths of the line shuffle.
PATHS = [("in-memory", "64M", None), ("external", "4K", None), ("recursive", "2K", 2)]

#: Runs per end-to-end chi-square check.
RUNS = 240



def source_of(record: bytes) -> str:
    """The source a record names (``web17:xx`` -> ``web``)."""
    return record.split(b":")[0].rstrip(b"0123456789").decode()


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """Three sources: web (300 records, two files), code (70) and wiki (40)."""
    web = source_records("web", 300)
    write_records(tmp_path / "web-1.txt", web[:180])
    write_records(tmp_path / "web-2.txt", web[180:])
    write_records(tmp_path / "code.txt", source_records("code", 70))
    write_records(tmp_path / "wiki.txt", source_records("wiki", 40))
    return {"web": tmp_path / "web-*.txt", "code": tmp_path / "code.txt", "wiki": tmp_path / "wiki.txt"}


def split_outputs(tmp_path: Path, names: list[str]) -> dict[str, list[bytes]]:
    """Each split's records, as written to ``out/{split}.txt``."""
    return {name: split_records((tmp_path / "out" / f"{name}.txt").read_bytes()) for name in names}


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize(
    "spec,sizes",
    [
        ("valid=0.1,test=0.1,train=rest", [150, 140, 60]),
        ("valid=7,train=rest,test=0.33", [1, 0, 999, 5]),
        ("a=0.5,b=0.25,c=0.25", [3, 3, 3]),
        ("valid=0,train=rest", [4, 9]),
        ("only=rest", [2, 5]),
    ],
)
def test_the_table_sums_to_the_splits_and_to_the_sources(spec: str, sizes: list[int]) -> None:
    parts = parse_split(spec)
    s = Stratifier([f"s{i}" for i in range(len(sizes))], sizes, parts)
    assert [sum(row) for row in s.table] == s.totals
    assert [sum(col) for col in zip(*s.table)] == sizes
    assert all(c >= 0 for row in s.table for c in row)
    for k in (len(parts), len(parts) + 5, 100):
        bounds = s.bucket_bounds(k)
        assert bounds[0] == 0 and bounds[-1] == k and all(np.diff(bounds) >= 1)


def test_each_split_takes_in_proportion_to_what_is_left() -> None:
    """valid=10 of 30 web and 7 code: 8.1 and 1.9 -> 8 and 2; the rest split, named first, takes what
    the later splits leave."""
    assert largest_remainder(10, [30, 7]) == [8, 2]
    assert split_table([10, 27], [30, 7], taker=1) == [[8, 2], [22, 5]]
    assert split_table([27, 10], [30, 7], taker=0) == [[22, 5], [8, 2]]
    assert largest_remainder(1, [1, 1]) == [1, 0]  # ties to the earlier source


def test_assignment_over_blocks_is_a_uniform_subset() -> None:
    """The draws alone: 5 copies of a source met in blocks of 1, 2 and 2, of which 2 go to split 0,
    send each of the 10 pairs there equally often (3000 seeds)."""
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(3000):
        s = Stratifier(["a"], [5], parse_split("v=2,t=rest"))
        labels: list[int] = []
        for b, size in enumerate([1, 2, 2]):
            (drawn,) = s.assign(seed, streams.stratify(streams.scatter(streams.TOP, b)), [(0, size)])
            labels += drawn.tolist()
        assert s.left.tolist() == [[0, 0]]
        counts[tuple(i for i, v in enumerate(labels) if v == 0)] += 1
    assert_uniform(counts, list(combinations(range(5), 2)), "blocks of 1, 2, 2")


def test_more_records_than_counted_are_an_error() -> None:
    s = Stratifier(["a"], [3], parse_split("v=1,t=rest"))
    with pytest.raises(InputError, match="source 'a': more records than were counted"):
        s.assign(1, streams.stratify(streams.IN_MEMORY), [(0, 4)])


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_exact_counts_per_split_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, Path], label: str, memory: str, cap: int | None
) -> None:
    """Rates web 0.5, code 2, wiki 1.5 make 150 + 140 + 60 = 350 copies; valid=0.1 and test=35 take
    15 web, 14 code and 6 wiki each (their share of what is left), train the other 120, 112, 48.
    Together the splits are exactly the multiset the same seed gives unstratified."""
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    out = str(tmp_path / "out" / "{split}.txt")
    settings = dict(
        sources={k: str(v) for k, v in corpus.items()}, rates={"web": 0.5, "code": 2, "wiki": 1.5},
        split="valid=0.1,test=35,train=rest", memory=memory, tmp_dir=tmp_path, seed=3, sync=False,
    )
    stats = bigshuf.shuffle(output=out, stratify=True, verify=True, manifest=tmp_path / "m.json", **settings)  # type: ignore[arg-type]
    assert stats.passes == 1 if label == "in-memory" else stats.passes >= (3 if label == "recursive" else 2), stats
    names = ["valid", "test", "train"]
    got = split_outputs(tmp_path, names)
    want = {"valid": {"web": 15, "code": 14, "wiki": 6}, "test": {"web": 15, "code": 14, "wiki": 6},
            "train": {"web": 120, "code": 112, "wiki": 48}}
    assert {name: dict(Counter(map(source_of, recs))) for name, recs in got.items()} == want
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["stratified"] == [{"split": n, "records": sum(want[n].values()), "sources": want[n]} for n in names]
    assert bigshuf.api.check_manifest(tmp_path / "m.json")[0] == []
    stratified = Counter(r for recs in got.values() for r in recs)
    bigshuf.shuffle(output=out, **settings)  # type: ignore[arg-type]
    assert Counter(r for recs in split_outputs(tmp_path, names).values() for r in recs) == stratified


@pytest.mark.parametrize("label,memory,cap", PATHS)
def test_threads_do_not_change_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: dict[str, Path], label: str, memory: str, cap: int | None
) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    monkeypatch.setattr(parallel, "INLINE_BELOW", 0)  # the workers run even these small blocks
    outputs = []
    for j in (1, 2, 3):
        bigshuf.shuffle(
            sources={k: str(v) for k, v in corpus.items()}, rates={"web": 0.3, "code": 2.5}, split="valid=50,train=rest",
            stratify=True, output=str(tmp_path / "out" / "{split}.txt"), memory=memory, tmp_dir=tmp_path, seed=11,
            threads=j, sync=False,
        )
        outputs.append(split_outputs(tmp_path, ["valid", "train"]))
    assert outputs[0] == outputs[1] == outputs[2]


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_which_records_a_split_receives_is_uniform_per_source(tmp_path: Path, label: str, memory: str) -> None:
    """5 web and 4 code records, valid=4 stratified: valid gets 2 of each, each pair of web records
    and each pair of code records equally often."""
    web, code = source_records("web", 5, 200), source_records("code", 4, 200)
    write_records(tmp_path / "web.txt", web)
    write_records(tmp_path / "code.txt", code)
    webs: Counter = Counter()  # type: ignore[type-arg]
    codes: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(RUNS):
        stats = bigshuf.shuffle(
            sources={"web": tmp_path / "web.txt", "code": tmp_path / "code.txt"}, split="valid=4,train=rest", stratify=True,
            output=str(tmp_path / "out" / "{split}.txt"), memory=memory, tmp_dir=tmp_path, seed=seed, sync=False,
        )
        valid = split_outputs(tmp_path, ["valid"])["valid"]
        webs[tuple(sorted(web.index(r) for r in valid if r in web))] += 1
        codes[tuple(sorted(code.index(r) for r in valid if r in code))] += 1
    assert (stats.passes == 1) == (label == "in-memory")
    assert_uniform(webs, list(combinations(range(5), 2)), f"{label}: web")
    assert_uniform(codes, list(combinations(range(4), 2)), f"{label}: code")


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_order_within_each_split_is_uniform(tmp_path: Path, label: str, memory: str) -> None:
    """1 web and 3 code records, valid=2 stratified: valid holds the web record and one code record,
    the web record first half the time (taking each source's first records of one shuffle would put
    it first a quarter of the time); train's two code records come in either order. All 12 outcomes
    (which code record, valid's order, train's order) equally often."""
    web, code = source_records("web", 1, 200), source_records("code", 3, 200)
    write_records(tmp_path / "web.txt", web)
    write_records(tmp_path / "code.txt", code)
    records = web + code
    counts: Counter = Counter()  # type: ignore[type-arg]
    for seed in range(RUNS):
        stats = bigshuf.shuffle(
            sources={"web": tmp_path / "web.txt", "code": tmp_path / "code.txt"}, split="valid=2,train=rest", stratify=True,
            output=str(tmp_path / "out" / "{split}.txt"), memory=memory, tmp_dir=tmp_path, seed=seed, sync=False,
        )
        got = split_outputs(tmp_path, ["valid", "train"])
        counts[tuple(records.index(r) for r in got["valid"] + got["train"])] += 1
    assert (stats.passes == 1) == (label == "in-memory")
    cells = [p for p in permutations(range(4)) if 0 in p[:2]]
    assert_uniform(counts, cells, label)


# ---------------------------------------------------------------- refusals and the CLI


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(sources=None), "stratify=True needs sources= and split="),
        (dict(split=None, output="out.txt"), "stratify=True needs sources= and split="),
        (dict(head_count=10), "stratify=True cannot be combined with head_count="),
        (dict(head_count="10%"), "stratify=True cannot be combined with head_count="),
    ],
)
def test_refusals(tmp_path: Path, corpus: dict[str, Path], settings: dict[str, object], message: str) -> None:
    given: dict[str, object] = {
        "sources": {k: str(v) for k, v in corpus.items()}, "split": "valid=5,train=rest", "output": "out/{split}.txt",
        "stratify": True, **settings,
    }
    output = str(tmp_path / str(given.pop("output")))
    inputs = () if given["sources"] is not None else tmp_path / "wiki.txt"
    with pytest.raises(UsageError, match=message):
        bigshuf.shuffle(inputs, output, **given)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_cli(tmp_path: Path, corpus: dict[str, Path], run_cli) -> None:  # type: ignore[no-untyped-def]
    base = ["--source", "web=web-*.txt", "--source", "code=code.txt", "--split", "valid=37,train=rest", "-o", "out/{split}.txt"]
    code, out, err = run_cli([*base, "--stratify", "--seed", "1"], cwd=tmp_path)
    assert (code, out, err) == (0, b"", b"")
    got = split_outputs(tmp_path, ["valid", "train"])
    # 37 of 370: 300 / 370 and 70 / 370 of it, 30 and 7.
    assert Counter(map(source_of, got["valid"])) == {"web": 30, "code": 7}
    assert Counter(map(source_of, got["train"])) == {"web": 270, "code": 63}
    code, out, err = run_cli([*base, "--stratify", "--dry-run"], cwd=tmp_path)
    assert code == 0 and b"(splits valid=37,train=rest, stratified by source: valid 37, train 333 records)" in out, out
    for args, message in [
        (["--stratify", "--split", "v=1,t=rest", "-o", "{split}", "wiki.txt"], b"bigshuf: --stratify needs --source and --split"),
        ([*base[:4], "--stratify", "-o", "x.txt"], b"bigshuf: --stratify needs --source and --split"),
        ([*base, "--stratify", "-n", "10"], b"bigshuf: --stratify cannot be combined with -n\n"),
        (["--source", "in=-", *base[4:], "--stratify"], b"bigshuf: source 'in' reads standard input, but its records must be counted"),
    ]:
        code, out, err = run_cli(args, cwd=tmp_path)
        assert (code, out) == (1, b""), args
        assert err.startswith(message) and err.count(b"\n") == 1, (args, err)


def test_split_ids_are_uniform_over_each_splits_buckets() -> None:
    """Each copy's bucket is uniform over its split's whole range: every bucket of the range, the last
    included, about equally often. A draw that never reached a split's last bucket passed every
    test (mutation review): its buckets only held more records than planned."""
    from bigshuf.core.stratify import split_ids

    bounds = np.array([0, 2, 5, 6], np.int64)  # splits of 2, 3 and 1 buckets
    labels = np.repeat(np.arange(3), 3000)
    ids = split_ids(np.random.default_rng(7), bounds, labels, 6)
    for s in range(2):
        got = Counter(ids[labels == s].tolist())
        assert_uniform(got, list(range(int(bounds[s]), int(bounds[s + 1]))), f"split {s}")
    assert set(ids[labels == 2].tolist()) == {5}
