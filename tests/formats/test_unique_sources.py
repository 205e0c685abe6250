"""``--unique`` with weighted sources (lines): copies are dropped before the mix, the first copy in
input order is kept (sources in the order given, so a record two sources hold counts for the first),
the rates apply to each source's records left, and each source's copies dropped are reported.

Expected multisets are worked out here from the inputs with a plain ``set``; each path is forced
by ``-S``: in memory, the dedup's hash buckets, and hash buckets split again one level deeper.
"""

from __future__ import annotations

import json
from collections import Counter
from fractions import Fraction
from itertools import combinations, permutations
from pathlib import Path

import numpy as np
import pytest

import bigshuf
from bigshuf.api import check_manifest, plan_shuffle
from bigshuf.core import dedup
from helpers import split_records, write_records
from test_uniformity import assert_uniform

#: (label, -S, passes at least): in memory; hash buckets that fit; hash buckets split again.
PATHS = [("in-memory", "64M", 1), ("external", "64K", 3), ("recursive", "8K", 4)]


def repeated(tag: bytes, n: int, distinct: int, seed: int) -> list[bytes]:
    """``n`` records drawn from ``distinct`` ones of 3-40 bytes tagged ``tag``."""
    picks = np.random.default_rng(seed).integers(0, distinct, n)
    return [b"%s%d:" % (tag, v) + b"y" * (v % 37) for v in picks.tolist()]


def corpus(tmp_path: Path, scale: int = 1) -> tuple[dict[str, list[Path]], dict[str, list[bytes]]]:
    """Sources web (two files) and code, with copies within each file, across web's two files, and
    records of web's that code holds too (shared tag ``s``, and some of web's own ``w``)."""
    web1 = repeated(b"w", 900 * scale, 300 * scale, 1) + repeated(b"s", 100 * scale, 40 * scale, 2)
    web2 = repeated(b"w", 500 * scale, 250 * scale, 3)
    code = repeated(b"c", 700 * scale, 150 * scale, 4) + repeated(b"s", 200 * scale, 60 * scale, 5) + repeated(b"w", 80, 30, 6)
    files = {"web": [write_records(tmp_path / "web1", web1), write_records(tmp_path / "web2", web2)],
             "code": [write_records(tmp_path / "code", code)]}
    return files, {"web": web1 + web2, "code": code}


def first_copies(records: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    """Each source's records that are the first of their bytes in input order, sources in order."""
    seen: set[bytes] = set()
    kept: dict[str, list[bytes]] = {}
    for name, recs in records.items():
        kept[name] = [r for r in recs if r not in seen and not seen.add(r)]  # type: ignore[func-returns-value]
    return kept


@pytest.mark.parametrize("label,memory,passes", PATHS)
def test_counts_and_multiset_on_every_path(tmp_path: Path, label: str, memory: str, passes: int) -> None:
    """Integer rates: the output is exactly each kept record times its source's rate; read, dropped
    and written per source exact; a record of web's that code repeats is web's, kept once."""
    files, records = corpus(tmp_path, 1 if label == "recursive" else 2)
    kept = first_copies(records)
    out = tmp_path / "out"
    stats = bigshuf.shuffle(
        [], out, sources=files, rates={"web": 1, "code": 3}, unique=True, memory=memory, seed=4, tmp_dir=tmp_path,
        sync=False, verify=True,
    )
    assert Counter(split_records(out.read_bytes())) == Counter(kept["web"] + kept["code"] * 3)
    got = [(s.name, s.read, s.dropped, s.written) for s in stats.sources]
    assert got == [
        (name, len(records[name]), len(records[name]) - len(kept[name]), len(kept[name]) * rate)
        for name, rate in (("web", 1), ("code", 3))
    ]
    assert stats.duplicates == sum(s.dropped for s in stats.sources)
    assert stats.passes >= passes and (stats.passes == 1) == (label == "in-memory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code", "out", "web1", "web2"]  # buckets removed


@pytest.mark.parametrize("label,memory,passes", PATHS)
def test_mix_and_fractional_rates_apply_to_the_records_left(tmp_path: Path, label: str, memory: str, passes: int) -> None:
    """--mix solved from each source's unique records (a counting pass over the hash buckets when
    external), and a fractional rate's picks drawn among them: every record's copies are floor(r) or
    one more, the totals exact, no copy ever of a dropped record."""
    files, records = corpus(tmp_path)
    kept = first_copies(records)
    out = tmp_path / "out"
    stats = bigshuf.shuffle(
        [], out, sources=files, mix={"web": "0.5", "code": "0.5"}, total=900, unique=True, memory=memory, seed=7,
        tmp_dir=tmp_path, sync=False,
    )
    got = Counter(split_records(out.read_bytes()))
    assert [(s.name, s.written, s.dropped) for s in stats.sources] == [
        ("web", 450, len(records["web"]) - len(kept["web"])), ("code", 450, len(records["code"]) - len(kept["code"]))
    ]
    for name in ("web", "code"):
        rate = Fraction(450, len(kept[name]))
        mine = [got[r] for r in kept[name]]
        assert set(mine) <= {int(rate), int(rate) + 1} and sum(mine) == 450, name
    assert sum(got.values()) == 900 and set(got) <= set(kept["web"] + kept["code"])
    assert stats.passes >= passes
    twice = tmp_path / "again"
    bigshuf.shuffle([], twice, sources=files, rates={"web": "0.5", "code": "2.25"}, unique=True, memory=memory, seed=7,
                    tmp_dir=tmp_path, sync=False)
    again = Counter(split_records(twice.read_bytes()))
    assert sum(again[r] for r in kept["web"]) == int(len(kept["web"]) * Fraction(1, 2) + Fraction(1, 2))  # rounded half up
    assert sum(again[r] for r in kept["code"]) == int(len(kept["code"]) * Fraction(9, 4) + Fraction(1, 2))


def test_seeded_output_is_deterministic_and_independent_of_threads(tmp_path: Path) -> None:
    """One seed, one output on the external path whatever -j; another seed, another order."""
    files, _records = corpus(tmp_path)
    outputs = set()
    for threads in (1, 2):
        out = tmp_path / f"out{threads}"
        bigshuf.shuffle([], out, sources=files, rates={"web": "1.5", "code": 1}, unique=True, memory="64K", seed=3,
                        tmp_dir=tmp_path, threads=threads, sync=False)
        outputs.add(out.read_bytes())
    assert len(outputs) == 1
    other = tmp_path / "other"
    bigshuf.shuffle([], other, sources=files, rates={"web": "1.5", "code": 1}, unique=True, memory="64K", seed=4,
                    tmp_dir=tmp_path, sync=False)
    assert other.read_bytes() != outputs.pop()


def test_external_path_hashes_each_record_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash buckets that fit are deduplicated with the hashes written beside them: reading them back
    hashes nothing (``first_copies`` is never left to hash a bucket itself)."""
    files, records = corpus(tmp_path, 2)
    kept = first_copies(records)

    def refuse(*_args: object) -> None:
        raise AssertionError("a hash bucket was hashed again")

    monkeypatch.setattr(dedup, "record_hashes", refuse)
    out = tmp_path / "out"
    stats = bigshuf.shuffle([*files["web"], *files["code"]], out, unique=True, memory="64K", seed=1, tmp_dir=tmp_path, sync=False)
    assert sorted(split_records(out.read_bytes())) == sorted(kept["web"] + kept["code"]) and stats.passes == 3


def test_output_is_the_same_with_hashes_kept_or_computed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash buckets too many to keep a file of hashes beside each are hashed again when read back:
    the same output either way, with and without sources."""
    from bigshuf.formats import line_unique

    files, _records = corpus(tmp_path)
    outputs: dict[bool, list[bytes]] = {}
    for kept in (True, False):
        monkeypatch.setattr(line_unique, "keeps_hashes", lambda k, held, kept=kept: kept)
        runs = [({"sources": files, "rates": {"web": "0.5", "code": 2}}, "64K"), ({}, "64K")]
        for n, (settings, memory) in enumerate(runs):
            out = tmp_path / f"out{n}"
            inputs = [] if settings else [*files["web"], *files["code"]]
            bigshuf.shuffle(inputs, out, unique=True, memory=memory, seed=8, tmp_dir=tmp_path, sync=False, **settings)  # type: ignore[arg-type]
            outputs.setdefault(kept, []).append(out.read_bytes())
    assert outputs[True] == outputs[False]


def test_stratified_splits_and_manifest(tmp_path: Path) -> None:
    """--stratify over the deduplicated multiset; the manifest's sources say read, dropped and written,
    and --check-manifest holds."""
    files, records = corpus(tmp_path)
    kept = first_copies(records)
    stats = bigshuf.shuffle(
        [], str(tmp_path / "o" / "{split}.txt"), sources=files, rates={"web": 1, "code": 2}, unique=True, memory="64K",
        seed=2, split="valid=0.2,train=rest", stratify=True, manifest=tmp_path / "o" / "m.json", tmp_dir=tmp_path, sync=False,
    )
    doc = json.loads((tmp_path / "o" / "m.json").read_text())
    written = {"web": len(kept["web"]), "code": 2 * len(kept["code"])}
    assert [(s["name"], s["read"], s["dropped"], s["written"]) for s in doc["sources"]] == [
        (name, len(records[name]), len(records[name]) - len(kept[name]), written[name]) for name in ("web", "code")
    ]
    assert doc["duplicates"] == stats.duplicates and doc["records_shuffled"] == sum(written.values())
    valid = {row["split"]: row["sources"] for row in doc["stratified"]}["valid"]
    assert all(abs(valid[name] - 0.2 * n) < 1 for name, n in written.items())  # each source's share of the split
    assert check_manifest(tmp_path / "o" / "m.json")[0] == []


def test_in_memory_order_and_picks_are_uniform(tmp_path: Path) -> None:
    """web a b a c b d (four unique records at rate 0.5: two picked) and code c e (c is web's): each
    pair of web's picked equally often, and the three records' order uniform (fixed seeds, in memory)."""
    web = write_records(tmp_path / "web", [b"a", b"b", b"a", b"c", b"b", b"d"])
    code = write_records(tmp_path / "code", [b"c", b"e"])
    out = tmp_path / "out"
    picks: Counter = Counter()
    orders: Counter = Counter()
    for seed in range(180):
        stats = bigshuf.shuffle([], out, sources={"web": web, "code": code}, rates={"web": "0.5", "code": 1}, unique=True,
                                seed=seed, sync=False, threads=1)
        got = split_records(out.read_bytes())
        assert [(s.dropped, s.written) for s in stats.sources] == [(2, 2), (1, 1)] and got.count(b"e") == 1
        chosen = tuple(sorted(r for r in got if r != b"e"))
        picks[chosen] += 1
        orders[tuple(b"x" if r != b"e" else r for r in got)] += 1
    assert_uniform(picks, list(combinations([b"a", b"b", b"c", b"d"], 2)), "picks")
    assert_uniform(orders, list(set(permutations([b"x", b"x", b"e"]))), "position of code's record")


def test_summary_line_names_each_sources_copies(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The summary on stderr: each source's records read, copies dropped, rate and records in the mix."""
    write_records(tmp_path / "w", [b"a", b"b", b"a"])
    write_records(tmp_path / "c", [b"b", b"c"])
    code, out, err = run_cli(["--unique", "--progress", "--source", "web=w", "--source", "code=c", "--rate", "code=2"], cwd=tmp_path)
    assert code == 0 and sorted(split_records(out)) == [b"a", b"b", b"c", b"c"]
    lines = [line for line in err.decode().replace("\r", "\n").splitlines() if line.startswith("bigshuf: source")]
    assert lines == [
        "bigshuf: source web: 3 records read, 1 duplicates dropped, rate 1, 2 in the mix",
        "bigshuf: source code: 2 records read, 1 duplicates dropped, rate 2, 2 in the mix",
    ]


def test_dry_run_says_the_rates_apply_after_the_dedup(tmp_path: Path) -> None:
    """The plan does not solve a mix from counts that still hold copies: the rates are the run's."""
    files, _records = corpus(tmp_path)
    found = plan_shuffle([], tmp_path / "o", sources=files, mix={"web": "0.5", "code": "0.5"}, total=100, unique=True)
    lines = dict(line.split(": ", 1) for line in found.render().splitlines() if ": " in line)
    assert lines["sources"] == (
        "web 2 files share 0.5, code 1 file share 0.5 of 100 records; the rates apply to each source's records left "
        "once unique=True drops copies, counted as it drops them"
    )


def test_a_multiset_that_outgrows_memory_after_the_dedup_goes_external(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An input deduplicated in memory whose multiset (rate 10) then does not fit: the in-memory plan
    is dropped and the external path deduplicates again, counting each copy once."""
    from bigshuf.formats import line_mix

    calls: list[int] = []
    real = line_mix.unique_with_sources
    monkeypatch.setattr(line_mix, "unique_with_sources", lambda *a: calls.append(1) or real(*a))
    x = write_records(tmp_path / "x", [b"%d" % (i % 3000) for i in range(6000)])
    y = write_records(tmp_path / "y", [b"%d" % i for i in range(2500, 4000)])
    out = tmp_path / "out"
    stats = bigshuf.shuffle([], out, sources={"x": x, "y": y}, rates={"x": 10, "y": 1}, unique=True, memory="1M", seed=1,
                            tmp_dir=tmp_path, sync=False)
    assert calls == [1] and stats.passes == 3
    assert Counter(split_records(out.read_bytes())) == Counter([b"%d" % i for i in range(3000)] * 10 + [b"%d" % i for i in range(3000, 4000)])
    assert [(s.read, s.dropped, s.written) for s in stats.sources] == [(6000, 3000, 30000), (1500, 500, 1000)]


# ---------------------------------------------------------------- Parquet rows

ROW_PATHS = [("in-memory", "64M", 1), ("external", "256K", 3), ("recursive", "8K", 4)]


def row_corpus(tmp_path: Path) -> tuple[dict[str, list[Path]], dict[str, list[tuple[object, ...]]]]:
    """Parquet sources web (two files, several row groups) and code as ``corpus`` makes them for lines:
    rows repeated within and across files, and rows of web's that code holds too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def table(tag: str, n: int, distinct: int, seed: int) -> pa.Table:
        picks = np.random.default_rng(seed).integers(0, distinct, n).tolist()
        return pa.table({"k": [f"{tag}{v}" for v in picks], "v": [v % 7 for v in picks], "pad": ["x" * (v % 40) for v in picks]})

    parts = {
        "web1": pa.concat_tables([table("w", 1500, 500, 1), table("s", 200, 50, 2)]), "web2": table("w", 700, 400, 3),
        "code": pa.concat_tables([table("c", 1000, 250, 4), table("s", 250, 80, 5), table("w", 100, 30, 6)]),
    }
    for name, t in parts.items():
        pq.write_table(t, tmp_path / f"{name}.parquet", row_group_size=600)
    rows = {name: list(zip(*(t[c].to_pylist() for c in ("k", "v", "pad")))) for name, t in parts.items()}
    return ({"web": [tmp_path / "web1.parquet", tmp_path / "web2.parquet"], "code": [tmp_path / "code.parquet"]},
            {"web": rows["web1"] + rows["web2"], "code": rows["code"]})


@pytest.mark.parametrize("label,memory,passes", ROW_PATHS)
def test_rows_counts_and_multiset_on_every_path(tmp_path: Path, label: str, memory: str, passes: int) -> None:
    """Rows as lines: the first copy in input order kept, integer rates applied to the rows left,
    each source's read, dropped and written exact (the files' row counts still hold the copies)."""
    import pyarrow.parquet as pq

    files, rows = row_corpus(tmp_path)
    kept = first_copies(rows)  # type: ignore[arg-type]
    out = tmp_path / "out.parquet"
    stats = bigshuf.shuffle([], out, sources=files, rates={"web": 1, "code": 3}, unique=True, memory=memory, seed=4,
                            tmp_dir=tmp_path, sync=False, verify=True)
    table = pq.read_table(out)
    assert Counter(zip(*(table[c].to_pylist() for c in ("k", "v", "pad")))) == Counter(kept["web"] + kept["code"] * 3)
    assert [(s.name, s.read, s.dropped, s.written) for s in stats.sources] == [
        (name, len(rows[name]), len(rows[name]) - len(kept[name]), len(kept[name]) * rate) for name, rate in (("web", 1), ("code", 3))
    ]
    assert stats.passes >= passes and (stats.passes == 1) == (label == "in-memory")


@pytest.mark.parametrize("label,memory,passes", ROW_PATHS[:2])
def test_rows_mix_stratified_with_a_manifest(tmp_path: Path, label: str, memory: str, passes: int) -> None:
    """A --mix of rows solved from the rows left (counted from the hash buckets when external),
    --stratify and the manifest; the same counts on every path."""
    files, rows = row_corpus(tmp_path)
    kept = first_copies(rows)  # type: ignore[arg-type]
    (tmp_path / "o").mkdir()
    stats = bigshuf.shuffle(
        [], str(tmp_path / "o" / "{split}.parquet"), sources=files, mix={"web": "0.5", "code": "0.5"}, total=600,
        split="valid=0.25,train=rest", stratify=True, manifest=tmp_path / "o" / "m.json", unique=True, memory=memory,
        seed=3, tmp_dir=tmp_path, sync=False,
    )
    doc = json.loads((tmp_path / "o" / "m.json").read_text())
    assert [(s["name"], s["read"], s["dropped"], s["written"]) for s in doc["sources"]] == [
        (name, len(rows[name]), len(rows[name]) - len(kept[name]), 300) for name in ("web", "code")
    ]
    assert doc["stratified"][0] == {"split": "valid", "records": 150, "sources": {"web": 75, "code": 75}}
    assert check_manifest(tmp_path / "o" / "m.json")[0] == [] and stats.passes >= passes


def test_rows_whose_multiset_outgrows_memory_after_the_dedup_go_external(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows deduplicated in memory whose multiset (rate 30) then does not fit: the in-memory plan is
    dropped and the dedup pass runs, each copy counted once."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from bigshuf.formats import table_run

    tried: list[bool] = []
    real = table_run.unique_mix_in_memory

    def spy(run: table_run.TableRun, held: list) -> object:  # type: ignore[type-arg]
        got = real(run, held)
        tried.append(got is not None)
        return got

    monkeypatch.setattr(table_run, "unique_mix_in_memory", spy)
    pq.write_table(pa.table({"k": [i % 3000 for i in range(6000)]}), tmp_path / "x.parquet")
    pq.write_table(pa.table({"k": list(range(2500, 4000))}), tmp_path / "y.parquet")
    out = tmp_path / "out.parquet"
    stats = bigshuf.shuffle([], out, sources={"x": tmp_path / "x.parquet", "y": tmp_path / "y.parquet"}, rates={"x": 30, "y": 1},
                            max_rate=30, unique=True, memory="2M", seed=1, tmp_dir=tmp_path, sync=False)
    assert tried == [False] and stats.passes == 3
    assert Counter(pq.read_table(out)["k"].to_pylist()) == Counter(list(range(3000)) * 30 + list(range(3000, 4000)))
    assert [(s.read, s.dropped, s.written) for s in stats.sources] == [(6000, 3000, 90000), (1500, 500, 1000)]


def test_rows_hashed_once_with_the_same_output_either_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row hash buckets keep their rows' hashes beside them: read back, they are not hashed again
    (only the input's batches are), and the output is the one a run that hashes them again writes."""
    from bigshuf.formats import row_unique

    files, records = row_corpus(tmp_path)
    real = row_unique.table_hashes
    outputs, hashed = [], []
    for kept in (True, False):
        calls: list[int] = []
        monkeypatch.setattr(row_unique, "keeps_hashes", lambda k, held, kept=kept: kept)
        monkeypatch.setattr(row_unique, "table_hashes", lambda table, calls=calls: calls.append(table.num_rows) or real(table))
        out = tmp_path / f"out{kept}.parquet"
        bigshuf.shuffle([], out, sources=files, rates={"web": "0.5", "code": 2}, unique=True, memory="256K", seed=5,
                        tmp_dir=tmp_path, sync=False)
        outputs.append(out.read_bytes())
        hashed.append(sum(calls))
    total = sum(len(v) for v in records.values())
    assert outputs[0] == outputs[1] and hashed[0] == total < hashed[1]


def test_a_source_left_without_records_cannot_take_a_share(tmp_path: Path) -> None:
    """Every record of y is one of x's: y has none left for its share of --mix, and says why."""
    from bigshuf.errors import InputError

    x = write_records(tmp_path / "x", [b"a", b"b"])
    y = write_records(tmp_path / "y", [b"b", b"a", b"b"])
    with pytest.raises(InputError, match=r"^source 'y' has no records left once unique=True drops copies: it cannot make up a share"):
        bigshuf.shuffle([], tmp_path / "out", sources={"x": x, "y": y}, mix={"x": "0.5", "y": "0.5"}, unique=True)
    assert not (tmp_path / "out").exists()


def test_summary_line_counts_rows_in_their_own_word(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """Per-source lines said "records read" where the totals line says rows (found by a README walk-through)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2, 3]}), tmp_path / "a.parquet")
    code, _out, err = run_cli(["--progress", "--source", "a=a.parquet", "--rate", "a=2", "-o", "o.parquet"], cwd=tmp_path)
    assert code == 0
    lines = [line for line in err.decode().replace("\r", "\n").splitlines() if line.startswith("bigshuf:")]
    assert lines[0].startswith("bigshuf: 6 rows, ") and lines[1] == "bigshuf: source a: 3 rows read, rate 2, 6 in the mix"
