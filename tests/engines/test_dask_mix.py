"""``--split``, ``--shard-records`` and ``--manifest`` on the Dask engine (tasks in-process): the
splits and shards concatenated are the plain seeded output byte for byte, with exact counts per
split and per shard; the manifest passes ``check_manifest`` and a changed file fails it; Parquet
rows; which record lands in the first split is uniform (chi-square over fixed seeds); and the
one-line refusals of what stays unsupported (a manifest of URL outputs, ``--compress-temp``). ``--shard-size``
cuts each file after the record that brings it to the size, as the local engine's output does
(checked against that rule applied to the plain output), lines and rows, with splits, ``-n``,
compression and a bucket re-split in pass 2.

Weighted sources (``--source``, ``--rate``, ``--mix``, ``--stratify``): exact copies per record and
per source, the output a permutation of that multiset, per-source stats and manifest entries as
the local engine gives them, lines and Parquet rows, pass 2 recursing; which records a fractional
rate keeps and which a stratified split receives are uniform (chi-square over fixed seeds).

``--unique`` with weighted sources: per-source read, dropped and written are the local engine's, the
output is exactly the multiset of the unique records' copies, a record two sources hold counts for
the first, lines (a hash bucket split again too) and stratified Parquet rows; which unique records a
fractional rate keeps is uniform.
"""

from __future__ import annotations

import gzip
import os
import struct
import json
import subprocess
import sys
from collections import Counter
from itertools import permutations
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bigshuf import api
from bigshuf.core.mix import SourceStats
from bigshuf.engines.dask import cuts as dask_cuts, lines as dask_lines, weights as dask_weights
from bigshuf.engines.dask.outputs import Layout, check_layout, plan_files
from bigshuf.errors import InputError, OutputError, UsageError
from bigshuf.storage.layout import Sharding, parse_split
from helpers import assert_permutation, make_records, source_records, split_records, write_records
from test_uniformity import assert_uniform

distributed = pytest.importorskip("distributed")
from bigshuf.engines import dask as dask_engine  # noqa: E402


def _input(tmp_path: Path, n: int = 3000) -> tuple[Path, list[bytes]]:
    """One line file of ``n`` records of 2 to 60 bytes."""
    records = make_records(n, 7, max_len=60)
    return write_records(tmp_path / "in.txt", records), records


def _files(directory: Path) -> list[Path]:
    """The files of ``directory`` in name order (hidden ones too: none may be left)."""
    return sorted(p for p in directory.iterdir() if p.is_file())


def _manifest(path: Path) -> Any:
    """A manifest's document."""
    return json.loads(path.read_text())


def test_splits_concatenated_are_the_plain_output(tmp_path: Path) -> None:
    path, records = _input(tmp_path)
    with ThreadPoolExecutor(2) as runner:
        plain = dask_engine.shuffle([path], tmp_path / "plain.txt", memory="16K", seed=3, runner=runner, tmp_dir=tmp_path)
        stats = dask_engine.shuffle([path], str(tmp_path / "out" / "{split}.txt"), memory="16K", seed=3, runner=runner,
                                    tmp_dir=tmp_path, split="valid=100,test=0.1,train=rest")
        sample = dask_engine.shuffle([path], str(tmp_path / "head" / "{split}.txt"), memory="16K", seed=3, runner=runner,
                                     tmp_dir=tmp_path, split="a=0.25,b=0.75", head_count=1001)
    assert stats.buckets == plain.buckets > 4  # several buckets, cut across by the splits
    data = {name: (tmp_path / "out" / f"{name}.txt").read_bytes() for name in ("valid", "test", "train")}
    assert [d.count(b"\n") for d in data.values()] == [100, 300, 2600]
    whole = (tmp_path / "plain.txt").read_bytes()
    assert data["valid"] + data["test"] + data["train"] == whole
    assert_permutation(whole, records)
    assert [p.name for p in _files(tmp_path / "out")] == ["test.txt", "train.txt", "valid.txt"]
    # -n first, then the splits of its 1001 records by largest remainder: 250.25 and 750.75 -> 250, 751.
    a, b = ((tmp_path / "head" / f"{s}.txt").read_bytes() for s in "ab")
    assert (a.count(b"\n"), b.count(b"\n")) == (250, 751)
    assert a + b == whole[: len(a) + len(b)]


def test_shard_records_per_split_with_a_manifest(tmp_path: Path) -> None:
    path, _records = _input(tmp_path)
    out = tmp_path / "out"
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle([path], tmp_path / "plain.txt", memory="16K", seed=5, runner=runner, tmp_dir=tmp_path)
        stats = dask_engine.shuffle([path], f"{out}/{{split}}/", memory="16K", seed=5, runner=runner, tmp_dir=tmp_path,
                                    split="valid=0.05,train=rest", shard_records=1000, manifest=out / "manifest.json")
    assert stats.records == 3000
    valid, train = _files(out / "valid"), _files(out / "train")
    assert [p.name for p in train] == [f"part-{i:05d}.txt" for i in range(3)]  # named by the inputs' kind, as locally
    assert [p.read_bytes().count(b"\n") for p in valid + train] == [150, 1000, 1000, 850]
    assert b"".join(p.read_bytes() for p in valid + train) == (tmp_path / "plain.txt").read_bytes()
    assert [p.name for p in _files(out)] == ["manifest.json"]  # no temporary file, lock or journal left
    problems, summary = api.check_manifest(out / "manifest.json")
    assert problems == [] and summary.startswith("4 output file(s) match")
    document = _manifest(out / "manifest.json")
    assert [(o["split"], o["path"], o["records"]) for o in document["outputs"]] == [
        ("valid", "valid/part-00000.txt", 150), ("train", "train/part-00000.txt", 1000), ("train", "train/part-00001.txt", 1000),
        ("train", "train/part-00002.txt", 850),
    ]
    assert document["inputs"][0]["records"] == 3000 and document["inputs"][0]["bytes"] == path.stat().st_size
    assert document["seed"] == 5 and document["split"] == "valid=0.05,train=rest"
    # The same number of bytes, one record changed: the fingerprint tells.
    shard = train[1].read_bytes()
    train[1].write_bytes(shard[:-2] + (b"a" if shard[-2:-1] != b"a" else b"b") + b"\n")
    problems, _ = api.check_manifest(out / "manifest.json")
    assert len(problems) == 1 and "records differ" in problems[0] and "train/part-00001" in problems[0]


def test_the_engine_plug_in_records_a_share_in_the_manifest(tmp_path: Path) -> None:
    # Through bigshuf.shuffle(engine="dask"): -n 10% of the 3000 records read, then the splits of those 300.
    path, _records = _input(tmp_path)
    out = tmp_path / "out"
    with ThreadPoolExecutor(2) as runner:
        stats = api.shuffle([str(path)], str(out / "{split}.txt"), engine="dask", scheduler=runner, seed=1, tmp_dir=str(tmp_path),
                            head_count="10%", split="valid=0.1,train=rest", manifest=str(out / "m.json"))
    assert stats.records == 300
    assert [(out / f"{s}.txt").read_bytes().count(b"\n") for s in ("valid", "train")] == [30, 270]
    document = _manifest(out / "m.json")
    assert (document["head_share"], document["head_count"], document["records_written"]) == ("10%", 300, 300)
    assert api.check_manifest(out / "m.json")[0] == []


def test_shards_per_split_compressed(tmp_path: Path) -> None:
    # --shards 2 within each split, gzip by the pattern's name; the decompressed files, in order, are the plain output.
    path, _records = _input(tmp_path)
    with ThreadPoolExecutor(2) as runner:
        plain = dask_engine.shuffle([path], tmp_path / "plain.txt", memory="16K", seed=9, runner=runner, tmp_dir=tmp_path)
        stats = dask_engine.shuffle([path], str(tmp_path / "{split}-{}.txt.gz"), memory="16K", seed=9, runner=runner,
                                    tmp_dir=tmp_path, split="small=7,big=rest", shards=2)
    assert stats.buckets == plain.buckets
    names = ["small-0", "small-1", "big-0", "big-1"]
    parts = [gzip.decompress((tmp_path / f"{n}.txt.gz").read_bytes()) for n in names]
    assert [p.count(b"\n") for p in parts] == [3, 4, 1496, 1497]
    assert b"".join(parts) == (tmp_path / "plain.txt").read_bytes()


def test_a_split_larger_than_the_output_writes_nothing(tmp_path: Path) -> None:
    path, _records = _input(tmp_path, 50)
    with ThreadPoolExecutor(2) as runner, pytest.raises(UsageError, match="split 'valid' needs 60 records, but only 50"):
        dask_engine.shuffle([path], str(tmp_path / "out" / "{split}.txt"), seed=1, runner=runner, tmp_dir=tmp_path,
                            split="valid=60,train=rest", manifest=tmp_path / "m.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_parquet_rows_split_into_shards_with_a_manifest(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        ids = list(range(500 * i, 500 * i + 500))
        pq.write_table(pa.table({"id": ids, "text": [f"{j}:" + "x" * (j % 31) for j in ids]}), data / f"{i}.parquet",
                       row_group_size=100)
    out = tmp_path / "out"
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle([data], tmp_path / "plain.parquet", memory="64K", seed=4, runner=runner, tmp_dir=tmp_path)
        dask_engine.shuffle([data], f"{out}/{{split}}/", memory="64K", seed=4, runner=runner, tmp_dir=tmp_path,
                            split="test=0.1,train=rest", shard_records=400, manifest=out / "manifest.json")
        with pytest.raises(UsageError, match="rows written as JSON Lines"):
            dask_engine.shuffle([data], f"{out}/{{split}}.jsonl", runner=runner, tmp_dir=tmp_path, split="a=1",
                                manifest=out / "other.json")
    files = _files(out / "test") + _files(out / "train")
    assert [p.name for p in files] == [f"part-{i:05d}.parquet" for i in (0, 0, 1, 2)]
    tables = [pq.read_table(p) for p in files]
    assert [t.num_rows for t in tables] == [100, 400, 400, 100]
    assert pa.concat_tables(tables).column("id").to_pylist() == pq.read_table(tmp_path / "plain.parquet").column("id").to_pylist()
    problems, summary = api.check_manifest(out / "manifest.json")
    assert problems == [] and "1000 rows" in summary
    assert _manifest(out / "manifest.json")["format"] == {"rows": "parquet"}


def test_which_record_lands_in_the_first_split_is_uniform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 records in 3 buckets, valid=1: over 400 fixed seeds each record is valid's equally often.
    monkeypatch.setattr(dask_lines, "_bucket_count", lambda *args: 3)
    path = write_records(tmp_path / "in.txt", [b"a", b"b", b"c", b"d"])
    counts: Counter[bytes] = Counter()
    with ThreadPoolExecutor(1) as runner:
        for seed in range(400):
            dask_engine.shuffle([path], str(tmp_path / "{split}.txt"), seed=seed, runner=runner, tmp_dir=tmp_path,
                                split="valid=1,train=rest")
            counts[(tmp_path / "valid.txt").read_bytes()] += 1
    assert_uniform(counts, [b"a\n", b"b\n", b"c\n", b"d\n"], "dask --split valid=1")


def test_refusals_are_one_line(tmp_path: Path) -> None:
    path, _records = _input(tmp_path, 20)
    with ThreadPoolExecutor(1) as runner:
        with pytest.raises(UsageError, match=r"writes manifest= only with local outputs"):
            api.shuffle([str(path)], "s3://bucket/{split}.txt", engine="dask", scheduler=runner, split="a=1",
                        manifest=str(tmp_path / "m.json"))
    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--engine=dask", str(path), "--compress-temp", "-o", f"{tmp_path}/o/"],
        capture_output=True, timeout=60,
    )
    assert (proc.returncode, proc.stderr) == (1, b"bigshuf: --engine=dask does not support --compress-temp\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_splits_sharded_on_s3(bucket: Any, tmp_path: Path) -> None:
    # Tasks in-process, the output and temporary objects on the S3 API that moto serves on loopback.
    name = bucket.bucket
    path, _records = _input(tmp_path, 500)
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle([path], tmp_path / "plain.txt", memory="16K", seed=2, runner=runner, tmp_dir=tmp_path)
        dask_engine.shuffle([path], f"s3://{name}/out/{{split}}/", memory="16K", seed=2, runner=runner, tmp_dir=tmp_path,
                            temp_url=f"s3://{name}/tmp/", split="valid=50,train=rest", shard_records=200)
    found = sorted(bucket.find(f"{name}/out"))
    parts = [f"{name}/out/{s}/part-{i:05d}.txt" for s, i in (("valid", 0), ("train", 0), ("train", 1), ("train", 2))]
    assert found == sorted(parts + [f"{name}/out/train/_SUCCESS", f"{name}/out/valid/_SUCCESS"])
    data = [bucket.cat(p) for p in parts]
    assert [d.count(b"\n") for d in data] == [50, 200, 200, 50]
    assert b"".join(data) == (tmp_path / "plain.txt").read_bytes()
    assert bucket.find(f"{name}/tmp") == []


# ---------------------------------------------------------------------------------------------
# Weighted sources


def _sources(tmp_path: Path) -> dict[str, list[bytes]]:
    """Source ``web`` in two plain files (1,500 records each), ``code`` in one gzip file (700)."""
    web, code = source_records("web", 3000, 40), source_records("code", 700, 50)
    write_records(tmp_path / "web-0.txt", web[:1500])
    write_records(tmp_path / "web-1.txt", web[1500:])
    (tmp_path / "code.txt.gz").write_bytes(gzip.compress(b"\n".join(code) + b"\n"))
    return {"web": web, "code": code}


def _multiplicities(output: bytes, records: list[bytes]) -> Counter[int]:
    """How many of ``records`` appear how many times in ``output`` (0 included)."""
    seen = Counter(split_records(output))
    return Counter(seen[r] for r in records)


@pytest.mark.parametrize("path", ["two passes", "recursive"])
def test_rates_give_each_source_its_exact_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    # web at 0.3: 900 of its 3000 records once; code at 2.5: all 700 twice and 350 of them a third time.
    if path == "recursive":
        monkeypatch.setattr(dask_lines, "_bucket_count", lambda *args: 1)  # buckets far over -S: re-split in pass 2
    corpus = _sources(tmp_path)
    sources = {"web": [str(tmp_path / "web-0.txt"), str(tmp_path / "web-1.txt")], "code": str(tmp_path / "code.txt.gz")}
    with ThreadPoolExecutor(2) as runner:
        stats = api.shuffle((), str(tmp_path / "out.txt"), engine="dask", scheduler=runner, memory="16K", seed=4,
                            tmp_dir=str(tmp_path), sources=sources, rates={"web": 0.3, "code": "2.5"}, verify=True)
    assert stats.sources == (SourceStats("web", 3000, 0.3, 900), SourceStats("code", 700, 2.5, 1750))
    assert stats.records == 2650 and (stats.passes >= 3) == (path == "recursive")
    output = (tmp_path / "out.txt").read_bytes()
    assert _multiplicities(output, corpus["web"]) == Counter({0: 2100, 1: 900})
    assert _multiplicities(output, corpus["code"]) == Counter({2: 350, 3: 350})
    assert len(split_records(output)) == 2650  # nothing else written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.txt.gz", "out.txt", "web-0.txt", "web-1.txt"]


def test_every_rate_1_is_the_plain_run(tmp_path: Path) -> None:
    _sources(tmp_path)
    files = [tmp_path / "web-0.txt", tmp_path / "web-1.txt", tmp_path / "code.txt.gz"]
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle(files, tmp_path / "plain.txt", memory="16K", seed=5, runner=runner, tmp_dir=tmp_path)
        stats = api.shuffle((), str(tmp_path / "mixed.txt"), engine="dask", scheduler=runner, memory="16K", seed=5,
                            tmp_dir=str(tmp_path), sources={"web": [str(f) for f in files[:2]], "code": str(files[2])},
                            rates={"web": 1})
    assert (tmp_path / "mixed.txt").read_bytes() == (tmp_path / "plain.txt").read_bytes()
    assert stats.sources == (SourceStats("web", 3000, 1.0, 3000), SourceStats("code", 700, 1.0, 700))


def test_records_that_differ_from_the_counting_pass_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if a file changed between the counting pass and pass 1: one block counted a record short.
    _sources(tmp_path)
    counting = dask_weights.count_task

    def short(cfg: Any, task: Any) -> list[tuple[int, int]]:
        blocks = counting(cfg, task)
        return [(blocks[0][0] - 1, blocks[0][1]), *blocks[1:]] if task.file_index == 1 else blocks

    monkeypatch.setattr(dask_weights, "count_task", short)
    with ThreadPoolExecutor(1) as runner, pytest.raises(InputError, match=r"web-1.txt: more or fewer records than were counted"):
        api.shuffle((), str(tmp_path / "out.txt"), engine="dask", scheduler=runner, memory="16K", seed=1, tmp_dir=str(tmp_path),
                    sources={"web": str(tmp_path / "web-*.txt"), "code": str(tmp_path / "code.txt.gz")}, rates={"web": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code.txt.gz", "web-0.txt", "web-1.txt"]


def test_a_mix_by_records_and_by_bytes_with_its_manifest(tmp_path: Path) -> None:
    corpus = _sources(tmp_path)
    sources = {"web": str(tmp_path / "web-*.txt"), "code": str(tmp_path / "code.txt.gz")}
    out = tmp_path / "out"
    with ThreadPoolExecutor(2) as runner:
        shared = dict(engine="dask", scheduler=runner, memory="16K", seed=8, tmp_dir=str(tmp_path), sources=sources)
        stats = api.shuffle((), str(out / "{split}.txt"), mix={"web": 0.6, "code": 0.4}, total=2000, split="valid=0.1,train=rest",
                            manifest=str(out / "m.json"), **shared)  # type: ignore[arg-type]
        by_bytes = api.shuffle((), str(tmp_path / "bytes.txt"), mix={"web": 0.5, "code": 0.5}, total="40K", by="bytes",
                               **shared)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match=r"needs rate 3.71571 for source 'code', above the maximum of 2"):
            api.shuffle((), str(tmp_path / "no.txt"), mix={"web": 0.1, "code": 0.9}, total=2890, max_rate=2, **shared)  # type: ignore[arg-type]
    # 1200 of web's 3000 records once (rate 0.4); code's 700 each once, and 100 of them twice (rate 8/7).
    assert [(s.name, s.read, s.written) for s in stats.sources] == [("web", 3000, 1200), ("code", 700, 800)]
    assert stats.records == 2000
    parts = {name: (out / f"{name}.txt").read_bytes() for name in ("valid", "train")}
    assert [len(split_records(p)) for p in parts.values()] == [200, 1800]
    whole = parts["valid"] + parts["train"]
    assert _multiplicities(whole, corpus["web"]) == Counter({0: 1800, 1: 1200})
    assert _multiplicities(whole, corpus["code"]) == Counter({1: 600, 2: 100})
    document = _manifest(out / "m.json")
    assert [(s["name"], s["read"], s["written"]) for s in document["sources"]] == [("web", 3000, 1200), ("code", 700, 800)]
    assert [e["records"] for e in document["inputs"]] == [1500, 1500, 700] and document["records_read"] == 3700
    assert api.check_manifest(out / "m.json")[0] == []
    # By bytes: each source 20,480 bytes of the multiset, to within one record (41 and 51 bytes each).
    data = split_records((tmp_path / "bytes.txt").read_bytes())
    assert [s.read for s in by_bytes.sources] == [3000, 700]
    web_bytes = sum(len(r) + 1 for r in data if r.startswith(b"web"))
    code_bytes = sum(len(r) + 1 for r in data if r.startswith(b"code"))
    assert abs(web_bytes - 20480) <= 41 and abs(code_bytes - 20480) <= 51
    assert len(data) == by_bytes.records == sum(s.written for s in by_bytes.sources)


def test_stratified_splits_lines_and_rows(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    corpus = _sources(tmp_path)
    (tmp_path / "rows").mkdir()
    pq.write_table(pa.table({"id": list(range(900)), "s": ["a" * (i % 30) for i in range(900)]}), tmp_path / "rows" / "a.parquet",
                   row_group_size=100)
    pq.write_table(pa.table({"id": list(range(10000, 10300)), "s": ["b"] * 300}), tmp_path / "rows" / "b.parquet",
                   row_group_size=64)
    with ThreadPoolExecutor(2) as runner:
        shared = dict(engine="dask", scheduler=runner, memory="64K", seed=6, tmp_dir=str(tmp_path), stratify=True)
        api.shuffle((), str(tmp_path / "lines" / "{split}.txt"), sources={"web": str(tmp_path / "web-*.txt"), "code": str(tmp_path / "code.txt.gz")},
                    rates={"web": 0.5, "code": 1.5}, split="valid=50,test=0.1,train=rest", manifest=str(tmp_path / "lines" / "m.json"),
                    **shared)  # type: ignore[arg-type]
        rows = api.shuffle((), str(tmp_path / "table" / "{split}.parquet"), sources={"a": str(tmp_path / "rows" / "a.parquet"),
                           "b": str(tmp_path / "rows" / "b.parquet")}, rates={"a": 1, "b": 2.5}, split="valid=0.2,train=rest",
                           verify=True, **shared)  # type: ignore[arg-type]
    # 1500 web and 1050 code copies; valid=50 takes 29 and 21 of them, test (255) 150 and 105, train the rest.
    table = {"valid": (29, 21), "test": (150, 105), "train": (1321, 924)}
    for name, (web, code) in table.items():
        got = split_records((tmp_path / "lines" / f"{name}.txt").read_bytes())
        assert (sum(r.startswith(b"web") for r in got), sum(r.startswith(b"code") for r in got)) == (web, code), name
    document = _manifest(tmp_path / "lines" / "m.json")
    assert document["stratified"] == [
        {"split": name, "records": web + code, "sources": {"web": web, "code": code}} for name, (web, code) in table.items()
    ]
    assert api.check_manifest(tmp_path / "lines" / "m.json")[0] == []
    whole = b"".join((tmp_path / "lines" / f"{n}.txt").read_bytes() for n in table)
    assert _multiplicities(whole, corpus["web"]) == Counter({0: 1500, 1: 1500})
    assert _multiplicities(whole, corpus["code"]) == Counter({1: 350, 2: 350})
    # Rows: a 900 once, b 300 twice and 150 of them a third time; valid (330) takes 180 of a's and 150 of b's.
    assert [(s.read, s.written) for s in rows.sources] == [(900, 900), (300, 750)]
    ids = {name: pq.read_table(tmp_path / "table" / f"{name}.parquet").column("id").to_pylist() for name in ("valid", "train")}
    assert [(sum(i < 10000 for i in v), sum(i >= 10000 for i in v)) for v in ids.values()] == [(180, 150), (720, 600)]
    copies = Counter(ids["valid"] + ids["train"])
    assert Counter(copies[i] for i in range(900)) == Counter({1: 900})
    assert Counter(copies[i] for i in range(10000, 10300)) == Counter({2: 150, 3: 150})


def test_which_records_a_fractional_rate_keeps_and_a_stratified_split_gets_are_uniform(tmp_path: Path) -> None:
    # Source a: four records in two files (so its two picks are shared between two tasks), rate 0.5; source b: three
    # records, rate 1. valid=2 takes one copy of each source. Over 60 fixed seeds: which pair of a is kept (6 pairs),
    # which of a's and which of b's records land in valid, each uniform.
    write_records(tmp_path / "a0.txt", [b"a0", b"a1"])
    write_records(tmp_path / "a1.txt", [b"a2", b"a3"])
    write_records(tmp_path / "b.txt", [b"b0", b"b1", b"b2"])
    kept: Counter[tuple[bytes, ...]] = Counter()
    valid_a: Counter[bytes] = Counter()
    valid_b: Counter[bytes] = Counter()
    with ThreadPoolExecutor(1) as runner:
        for seed in range(60):
            api.shuffle((), str(tmp_path / "{split}.txt"), engine="dask", scheduler=runner, seed=seed, tmp_dir=str(tmp_path),
                        sources={"a": [str(tmp_path / "a0.txt"), str(tmp_path / "a1.txt")], "b": str(tmp_path / "b.txt")},
                        rates={"a": 0.5}, split="valid=2,train=rest", stratify=True)
            valid, train = (split_records((tmp_path / f"{n}.txt").read_bytes()) for n in ("valid", "train"))
            assert sorted(r for r in valid + train if r.startswith(b"b")) == [b"b0", b"b1", b"b2"]
            kept[tuple(sorted(r for r in valid + train if r.startswith(b"a")))] += 1
            valid_a.update(r for r in valid if r.startswith(b"a"))
            valid_b.update(r for r in valid if r.startswith(b"b"))
    pairs = [(x, y) for i, x in enumerate([b"a0", b"a1", b"a2", b"a3"]) for y in [b"a0", b"a1", b"a2", b"a3"][i + 1 :]]
    assert_uniform(kept, pairs, "dask --rate a=0.5: the pair kept")
    assert_uniform(valid_a, [b"a0", b"a1", b"a2", b"a3"], "dask --stratify: a's record in valid")
    assert_uniform(valid_b, [b"b0", b"b1", b"b2"], "dask --stratify: b's record in valid")


# ---------------------------------------------------------------------------------------------
# --shard-size


def _size_cuts(sizes: list[int], size: int) -> list[int]:
    """The local engine's rule (``storage.output.Output.emit``), for a split of records of ``sizes``:
    each file's record count; a file ends with the record that brings it to ``size``, the next
    starts only if records remain (an empty split still gets one file)."""
    files, held, n = [], 0, 0
    for length in sizes:
        n, held = n + 1, held + length
        if held >= size:
            files.append(n)
            n = held = 0
    return files + [n] if n or not files else files


@pytest.mark.parametrize("path", ["two passes", "recursive"])
def test_shard_size_cuts_as_the_local_engine_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    path_in, _records = _input(tmp_path)
    if path == "recursive":
        monkeypatch.setattr(dask_lines, "_bucket_count", lambda *args: 1)
    monkeypatch.setattr(dask_cuts, "STRIDE", 7)  # shard ends found past many strides of a bucket's running totals
    out = tmp_path / "out"
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle([path_in], tmp_path / "plain.txt", memory="16K", seed=7, runner=runner, tmp_dir=tmp_path)
        stats = dask_engine.shuffle([path_in], f"{out}/{{split}}/", memory="16K", seed=7, runner=runner, tmp_dir=tmp_path,
                                    split="valid=0.1,empty=0,train=rest", shard_size=9000, head_count=2500, compress="gzip",
                                    manifest=out / "m.json")
    assert stats.records == 2500 and stats.passes == (4 if path == "recursive" else 3)  # the measuring pass counted
    plain = split_records((tmp_path / "plain.txt").read_bytes())[:2500]
    start = 0
    for split, count in (("valid", 250), ("empty", 0), ("train", 2250)):
        files = _files(out / split)
        assert [p.name for p in files] == [f"part-{i:05d}.txt.gz" for i in range(len(files))]
        got = [split_records(gzip.decompress(p.read_bytes())) for p in files]
        assert [r for g in got for r in g] == plain[start : start + count], split
        assert [len(g) for g in got] == _size_cuts([len(r) + 1 for r in plain[start : start + count]], 9000), split
        start += count
    assert len(_files(out / "train")) > 5
    assert api.check_manifest(out / "m.json")[0] == []


def test_shard_size_of_rows_counts_their_arrow_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from bigshuf.formats.tables import row_sizes

    pq.write_table(pa.table({"id": list(range(1200)), "s": ["z" * (i % 40) for i in range(1200)]}), tmp_path / "in.parquet",
                   row_group_size=200)
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle([tmp_path / "in.parquet"], tmp_path / "plain.parquet", memory="64K", seed=1, runner=runner,
                            tmp_dir=tmp_path)
        api.shuffle([str(tmp_path / "in.parquet")], f"{tmp_path}/out/", engine="dask", scheduler=runner, memory="64K", seed=1,
                    tmp_dir=str(tmp_path), shard_size="5K")
    plain = pq.read_table(tmp_path / "plain.parquet")
    tables = [pq.read_table(p) for p in _files(tmp_path / "out")]
    assert pa.concat_tables(tables).column("id").to_pylist() == plain.column("id").to_pylist()
    sizes = [int(x) for b in plain.to_batches() for x in row_sizes(b)]
    assert [t.num_rows for t in tables] == _size_cuts(sizes, 5 * 1024) and len(tables) > 3
    # Again with larger shards: the earlier run's shards past the new last one stay, named in one line.
    with ThreadPoolExecutor(1) as runner:
        dask_engine.shuffle([tmp_path / "in.parquet"], f"{tmp_path}/out/", memory="64K", seed=1, runner=runner, tmp_dir=tmp_path,
                            shard_size=len(tables) * 5 * 1024)
    err = capsys.readouterr().err
    assert err == (
        f"bigshuf: note: {tmp_path}/out/part-00001.parquet (and any later shard) was there before this run and is not one of "
        "the 1 shards it wrote; it was left in place\n"
    )
    assert len(_files(tmp_path / "out")) == len(tables)


# ---------------------------------------------------------------------------------------------
# --unique


@pytest.mark.parametrize("memory,passes", [("1M", 3), ("16K", 4)])
def test_unique_keeps_one_copy_of_each_line(tmp_path: Path, memory: str, passes: int) -> None:
    # 3,000 lines of 600 distinct ones and 2,000 copies of one line (about 90 KB): at -S 1M the hash buckets fit
    # (3 passes); at -S 16K the copies' bucket is far over -S and is split again inside its dedup task (4).
    rng = np.random.default_rng(3)
    distinct = make_records(600, 11, min_len=5, max_len=40)
    lines = [distinct[i] for i in rng.integers(0, 600, 3000)] + [b"the same line"] * 2000
    rng.shuffle(lines)  # type: ignore[arg-type]
    source = write_records(tmp_path / "in.txt", lines)
    expected = sorted(set(lines))
    out = tmp_path / "out"
    with ThreadPoolExecutor(2) as runner:
        stats = api.shuffle([str(source)], str(out / "{split}.txt"), engine="dask", scheduler=runner, memory=memory, seed=2,
                            tmp_dir=str(tmp_path), unique=True, split="valid=100,train=rest", manifest=str(out / "m.json"),
                            verify=True)
    assert stats.records == len(expected) and stats.duplicates == 5000 - len(expected)
    assert stats.passes == passes
    valid, train = ((out / f"{n}.txt").read_bytes() for n in ("valid", "train"))
    assert sorted(split_records(valid + train)) == expected and valid.count(b"\n") == 100  # as sort -u
    document = _manifest(out / "m.json")
    assert (document["duplicates"], document["records_read"], document["records_written"]) == (5000 - len(expected), 5000,
                                                                                               len(expected))
    assert api.check_manifest(out / "m.json")[0] == []


def test_the_order_of_the_unique_lines_is_uniform(tmp_path: Path) -> None:
    # a, b, c with copies: over 60 fixed seeds each of the 6 orders of the 3 unique lines equally often.
    source = write_records(tmp_path / "in.txt", [b"c", b"a", b"c", b"b", b"a", b"c"])
    counts: Counter[bytes] = Counter()
    with ThreadPoolExecutor(1) as runner:
        for seed in range(60):
            dask_engine.shuffle([source], tmp_path / "out.txt", seed=seed, runner=runner, tmp_dir=tmp_path, unique=True)
            counts[(tmp_path / "out.txt").read_bytes()] += 1
    assert_uniform(counts, [b"\n".join(p) + b"\n" for p in permutations([b"a", b"b", b"c"])], "dask --unique order")


def test_unique_rows(tmp_path: Path) -> None:
    # Two Parquet files with rows repeated within and across them, nulls and -0.0: rows are the same when
    # every column is (nulls equal, -0.0 not 0.0), as on the local engine. At -S 24K a hash bucket is split again.
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(4)
    rows = [(int(i) % 97, None if i % 5 == 0 else float(i % 3) * (-1.0 if i % 2 else 1.0)) for i in rng.integers(0, 400, 1200)]
    for part in range(2):
        chunk = rows[part * 600 : (part + 1) * 600]
        pq.write_table(pa.table({"a": [r[0] for r in chunk], "b": pa.array([r[1] for r in chunk], pa.float64())}),
                       tmp_path / f"{part}.parquet", row_group_size=150)
    with ThreadPoolExecutor(2) as runner:
        stats = api.shuffle([str(tmp_path / "0.parquet"), str(tmp_path / "1.parquet")], str(tmp_path / "out.parquet"), engine="dask",
                            scheduler=runner, memory="24K", seed=3, tmp_dir=str(tmp_path), unique=True, verify=True)
    got = pq.read_table(tmp_path / "out.parquet").to_pylist()
    keys = [(r["a"], None if r["b"] is None else struct.pack("<d", r["b"])) for r in got]
    expected = {(a, None if b is None else struct.pack("<d", b)) for a, b in rows}
    assert len(keys) == len(set(keys)) == stats.records and set(keys) == expected
    assert stats.duplicates == 1200 - len(expected) and stats.passes >= 4  # a hash bucket split again


# ---------------------------------------------------------------------------------------------
# --unique with weighted sources


def _unique_sources(tmp_path: Path) -> tuple[dict[str, list[str]], list[bytes], list[bytes]]:
    """Source ``web`` in a plain and a gzip file, with copies within and across them (and 1,200 of one
    line); source ``code`` with copies of its own and of web's records (those count for web). Returns
    the sources' files and each source's records as read, in order."""
    rng = np.random.default_rng(9)
    web = [b"web-%d" % i for i in rng.integers(0, 200, 600)] + [b"web-7"] * 1200
    rng.shuffle(web)  # type: ignore[arg-type]
    web += [b"web-%d" % i for i in rng.integers(100, 300, 400)]
    code = [b"code-%d" % i for i in rng.integers(0, 80, 300)] + [b"web-%d" % i for i in range(5, 25)] + [b"web-7"] * 300
    rng.shuffle(code)  # type: ignore[arg-type]
    write_records(tmp_path / "web-0.txt", web[:1800])
    (tmp_path / "web-1.txt.gz").write_bytes(gzip.compress(b"\n".join(web[1800:]) + b"\n"))
    write_records(tmp_path / "code.txt", code)
    files = {"web": [str(tmp_path / "web-0.txt"), str(tmp_path / "web-1.txt.gz")], "code": [str(tmp_path / "code.txt")]}
    return files, web, code


@pytest.mark.parametrize("memory,passes", [("1M", 4), ("16K", 5)])
def test_unique_with_sources_drops_copies_before_the_rates(tmp_path: Path, memory: str, passes: int) -> None:
    # web at 0.5 on its unique records, code at 2 on its own: the stats are the local engine's (read, dropped, written),
    # the output is exactly that multiset, and a line held by both sources is web's. At -S 16K the hash bucket of the
    # 1,500 copies of web-7 is split again inside its dedup task (one pass more).
    files, web, code = _unique_sources(tmp_path)
    unique_web = set(web)
    unique_code = set(code) - unique_web
    out = tmp_path / "out"
    options: dict[str, Any] = dict(seed=3, sources=files, rates={"web": 0.5, "code": 2}, unique=True, tmp_dir=str(tmp_path))
    local = api.shuffle((), str(tmp_path / "local.txt"), **options)
    with ThreadPoolExecutor(2) as runner:
        stats = api.shuffle((), str(out / "{split}.txt"), engine="dask", scheduler=runner, memory=memory, verify=True,
                            split="valid=0.1,train=rest", manifest=str(out / "m.json"), **options)
    web_kept = (len(unique_web) + 1) // 2  # round(0.5 n), halves up
    assert stats.sources == local.sources == (
        SourceStats("web", len(web), 0.5, web_kept, len(web) - len(unique_web)),
        SourceStats("code", len(code), 2.0, 2 * len(unique_code), len(code) - len(unique_code)),
    )
    assert stats.duplicates == len(web) + len(code) - len(unique_web) - len(unique_code) and stats.passes == passes
    whole = (out / "valid.txt").read_bytes() + (out / "train.txt").read_bytes()
    seen = Counter(split_records(whole))
    assert Counter(seen[r] for r in unique_web) == Counter({1: web_kept, 0: len(unique_web) - web_kept})
    assert Counter(seen[r] for r in unique_code) == Counter({2: len(unique_code)})
    assert set(seen) <= unique_web | unique_code and sum(seen.values()) == stats.records == web_kept + 2 * len(unique_code)
    document = _manifest(out / "m.json")
    assert [(s["name"], s["read"], s["dropped"], s["written"]) for s in document["sources"]] == [
        (s.name, s.read, s.dropped, s.written) for s in local.sources
    ]
    assert document["duplicates"] == stats.duplicates and api.check_manifest(out / "m.json")[0] == []


def test_unique_rows_with_stratified_sources_as_the_local_engine(tmp_path: Path) -> None:
    # Rows of a repeated within a and in b (b's copies count for a), 800 copies of one row; b at 1.5 on its rows left.
    # Per source and per split the counts are the local engine's, and the output holds each kept row its copies' times.
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(5)
    a_ids = rng.integers(0, 300, 900).tolist() + [5] * 600
    b_ids = rng.integers(250, 400, 500).tolist() + [5] * 200
    for name, ids in (("a", a_ids), ("b", b_ids)):
        pq.write_table(pa.table({"id": ids, "s": ["r%d" % (i % 7) * 15 for i in ids]}), tmp_path / f"{name}.parquet", row_group_size=128)
    options: dict[str, Any] = dict(seed=4, sources={"a": str(tmp_path / "a.parquet"), "b": str(tmp_path / "b.parquet")},
                                   rates={"b": 1.5}, unique=True, split="valid=0.2,train=rest", stratify=True,
                                   tmp_dir=str(tmp_path))
    local = api.shuffle((), str(tmp_path / "local" / "{split}.parquet"), **options)
    with ThreadPoolExecutor(2) as runner:
        stats = api.shuffle((), str(tmp_path / "dask" / "{split}.parquet"), engine="dask", scheduler=runner, memory="24K",
                            verify=True, **options)
    only_b = set(b_ids) - set(a_ids)
    assert stats.sources == local.sources and stats.passes == 5  # the hash bucket of row 5's 800 copies split again
    assert [(s.read, s.dropped, s.written) for s in stats.sources] == [
        (1500, 1500 - len(set(a_ids)), len(set(a_ids))), (700, 700 - len(only_b), (3 * len(only_b) + 1) // 2),
    ]
    copies: Counter[int] = Counter()
    for split in ("valid", "train"):
        got = {engine: pq.read_table(tmp_path / engine / f"{split}.parquet").column("id").to_pylist() for engine in ("local", "dask")}
        per_source = {e: (sum(i in set(a_ids) for i in ids), sum(i in only_b for i in ids)) for e, ids in got.items()}
        assert per_source["dask"] == per_source["local"], split
        copies.update(got["dask"])
    assert Counter(copies[i] for i in set(a_ids)) == Counter({1: len(set(a_ids))})
    picks = (len(only_b) + 1) // 2  # round(0.5 n), halves up
    assert Counter(copies[i] for i in only_b) == Counter({1: len(only_b) - picks, 2: picks})


def test_which_unique_records_a_fractional_rate_keeps_is_uniform(tmp_path: Path) -> None:
    # a: x y x z (unique x, y, z), rate 0.5: round(1.5) = 2 of them, each of the 3 pairs equally often over 45 fixed
    # seeds; b: x w, its x a copy of a's (dropped, never written as b's), w once.
    write_records(tmp_path / "a.txt", [b"x", b"y", b"x", b"z"])
    write_records(tmp_path / "b.txt", [b"x", b"w"])
    kept: Counter[tuple[bytes, ...]] = Counter()
    with ThreadPoolExecutor(1) as runner:
        for seed in range(45):
            stats = api.shuffle((), str(tmp_path / "out.txt"), engine="dask", scheduler=runner, seed=seed, tmp_dir=str(tmp_path),
                                sources={"a": str(tmp_path / "a.txt"), "b": str(tmp_path / "b.txt")}, rates={"a": 0.5},
                                unique=True)
            got = split_records((tmp_path / "out.txt").read_bytes())
            assert [(s.read, s.dropped, s.written) for s in stats.sources] == [(4, 1, 2), (2, 1, 1)]
            assert got.count(b"w") == 1 and len(got) == 3
            kept[tuple(sorted(r for r in got if r != b"w"))] += 1
    assert_uniform(kept, [(b"x", b"y"), (b"x", b"z"), (b"y", b"z")], "dask --unique --rate a=0.5: the pair kept")


# ---------------------------------------------------------------- --dry-run on the Dask engine


def _tree(path: Path) -> list[str]:
    """Every name under ``path``, hidden ones too (a plan leaves none)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"shards": 3},
        {"unique": True},
        {"split": "valid=100,train=rest", "shard_size": 4096},
        {"sources": "AB", "rates": {"a": 2, "b": 1}},
        {"sources": "AB", "rates": {"a": "0.5", "b": 1}, "shard_records": 700},
    ],
    ids=["plain", "shards", "unique", "split-shard-size", "integer-rates", "counted-rates"],
)
def test_a_dry_run_plans_the_buckets_passes_and_records_the_run_reports(tmp_path: Path, options: dict[str, Any]) -> None:
    """``plan_shuffle(engine="dask")`` writes nothing and leaves no temp; its buckets, passes and
    records read are those the in-process run then reports (weighted: the multiset's buckets)."""
    a = source_records("a", 1200, 40)
    b = source_records("b", 900, 40)
    write_records(tmp_path / "A.txt", a)
    write_records(tmp_path / "B.txt", b + a[:300])  # duplicates for --unique
    inputs = [] if "sources" in options else [str(tmp_path / "A.txt"), str(tmp_path / "B.txt")]
    if "sources" in options:
        options = {**options, "sources": {"a": str(tmp_path / "A.txt"), "b": str(tmp_path / "B.txt")}}
    target = f"{tmp_path}/out/{{split}}/" if "split" in options else f"{tmp_path}/out/" if "shards" in options or "shard_records" in options else f"{tmp_path}/o.txt"
    temp = tmp_path / "tmp"
    temp.mkdir()
    before = _tree(tmp_path)
    with ThreadPoolExecutor(2) as runner:
        found = api.plan_shuffle(inputs, target, engine="dask", scheduler=runner, memory="16K", seed=2, tmp_dir=str(temp), **options)
        assert _tree(tmp_path) == before, "a plan wrote or left something"
        assert found.ok, found.render()
        stats = api.shuffle(inputs, target, engine="dask", scheduler=runner, memory="16K", seed=2, tmp_dir=str(temp), **options)
    assert (found.buckets, found.passes) == (stats.buckets, stats.passes)
    assert found.buckets is not None and found.buckets > 1 and found.exact
    assert found.records == 2400
    if "sources" not in options and "unique" not in options:
        assert stats.records == found.records
    if "shard_size" in options:
        assert stats.passes == 3
    if "sources" in options:
        assert f"; {stats.records:,} records to shuffle" in found.render()
    text = found.render()
    assert f"{stats.buckets} buckets" in text and "pass-1 task" in text, text


def test_rates_on_a_compressed_source_size_the_buckets_by_its_decoded_bytes(tmp_path: Path) -> None:
    """Integer rates weigh each source by its bytes: the Dask engine took a compressed source's
    bytes on disk, so ``--rate`` 5 on a gzip that decodes 100:1 planned buckets for little more
    than the plain source (283 here, against 680 for the same sources uncompressed), each more than
    twice the size meant. It now weighs them decoded, as the local engine does (1,077: the margin on
    compressed inputs' estimate), in the run and in ``--dry-run``."""
    a = [b"%s %d" % (b"a" * 60, i % 7) for i in range(6000)]
    b = source_records("b", 3000, 40)
    write_records(tmp_path / "a.txt", a)
    write_records(tmp_path / "b.txt", b)
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress((tmp_path / "a.txt").read_bytes()))
    temp = tmp_path / "tmp"
    temp.mkdir()
    planned = {}
    with ThreadPoolExecutor(2) as runner:
        for name in ("a.txt", "a.txt.gz"):
            options: dict[str, Any] = {
                "engine": "dask", "scheduler": runner, "memory": "16K", "seed": 2, "tmp_dir": str(temp),
                "sources": {"a": str(tmp_path / name), "b": str(tmp_path / "b.txt")}, "rates": {"a": 5, "b": 1},
            }
            found = api.plan_shuffle((), str(tmp_path / "out.txt"), **options)
            stats = api.shuffle((), str(tmp_path / "out.txt"), **options)
            assert found.buckets == stats.buckets
            assert sorted(split_records((tmp_path / "out.txt").read_bytes())) == sorted(a * 5 + b)
            planned[name] = stats.buckets
    assert planned["a.txt.gz"] >= planned["a.txt"], planned


def test_a_dry_run_that_would_fail_exits_1_naming_the_check(tmp_path: Path) -> None:
    """The command line: a plan that passes prints its lines and ``ok`` (exit 0, nothing written); a
    split the records cannot fill, a missing -T and an output directory that is a file each fail
    their check (exit 1, one line each on stderr), as the run would fail before reading; so does
    ``--shards`` without ``-o``, with the run's message."""
    src = write_records(tmp_path / "in.txt", make_records(50, 3))
    (tmp_path / "file").write_bytes(b"")
    before = _tree(tmp_path)
    run = [sys.executable, "-m", "bigshuf", "--engine=dask", "--dry-run", str(src)]
    good = subprocess.run([*run, "-o", str(tmp_path / "out.txt"), "-S", "1M"], capture_output=True, text=True)
    assert good.returncode == 0 and good.stderr == "", good.stderr
    assert good.stdout.splitlines()[0] == "inputs: 1 file, " + good.stdout.split("inputs: 1 file, ")[1].splitlines()[0]
    assert "records: 50, " in good.stdout and "memory: 1.0 MiB per task (-S)" in good.stdout
    assert good.stdout.endswith("output: " + str(tmp_path / "out.txt") + "\nok\n"), good.stdout
    bad = subprocess.run(
        [*run, "-o", str(tmp_path / "file" / "{split}.txt"), "--split", "valid=60,train=rest", "-T", str(tmp_path / "nowhere")],
        capture_output=True, text=True,
    )
    assert bad.returncode == 1
    failed = [line for line in bad.stdout.splitlines() if line.startswith("failed: ")]
    assert [line.split(":")[1].strip() for line in failed] == ["temporary space", "splits", "output"], bad.stdout
    assert "split 'valid' needs 60 records, but only 50" in bad.stdout
    assert len(bad.stderr.splitlines()) == 3 and all(line.startswith("bigshuf: ") for line in bad.stderr.splitlines())
    assert _tree(tmp_path) == before
    with ThreadPoolExecutor(1) as runner:
        shards = api.plan_shuffle([str(src)], engine="dask", scheduler=runner, shards=2)
        with pytest.raises(UsageError) as refused:
            api.shuffle([str(src)], engine="dask", scheduler=runner, shards=2, tmp_dir=str(tmp_path))
    assert [(c.name, c.reason) for c in shards.failures] == [("output", str(refused.value))]


def test_a_dry_run_names_url_inputs_and_temp_space_without_guessing(tmp_path: Path) -> None:
    """URL inputs (``file://``) are sized by fsspec; a remote ``--temp-url``'s free space is said to be
    unknown, not guessed; a manifest of URL outputs is refused as the run refuses it, a split of URL
    outputs that the records cannot fill fails its check."""
    src = write_records(tmp_path / "in.txt", make_records(40, 4))
    with ThreadPoolExecutor(1) as runner:
        found = api.plan_shuffle(
            [f"file://{src}"], f"memory://plan-{tmp_path.name}/out/", engine="dask", scheduler=runner, shards=2,
            temp_url="memory://plan-tmp/", tmp_dir=str(tmp_path),
        )
        with pytest.raises(UsageError, match="only with local outputs"):
            api.plan_shuffle(
                [str(src)], f"memory://plan-{tmp_path.name}/o/", engine="dask", scheduler=runner, shard_records=10,
                manifest=str(tmp_path / "m.json"), tmp_dir=str(tmp_path),
            )
        refused = api.plan_shuffle(
            [str(src)], f"memory://plan-{tmp_path.name}/{{split}}/", engine="dask", scheduler=runner, split="a=50,b=rest", tmp_dir=str(tmp_path),
        )
    lines = dict(found.lines)
    assert lines["inputs"].startswith("1 file (from 1 URL), ") and found.input_bytes == src.stat().st_size
    assert lines["temporary space"].startswith("needs ") and "on URL memory://plan-tmp/, free space unknown" in lines["temporary space"]
    # Named by the URL input's kind, as a file's would be (URL inputs gave suffixless shards).
    assert lines["output"].endswith("out/part-00001.txt (2 shards)") and found.ok, found.render()
    assert [c.name for c in refused.failures] == ["splits"] and "needs 50 records, but only 40" in refused.failures[0].reason
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_a_dry_run_fails_temporary_space_smaller_than_the_buckets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local scratch space (``-T``) with less free than pass 1's objects need fails its check with the
    local engine's message; with ``--unique`` the need is the hash buckets beside the shuffle's."""
    from bigshuf.engines.dask import plan as dask_plan

    src = write_records(tmp_path / "in.txt", make_records(400, 6))
    free = src.stat().st_size + 100  # room for the buckets, not for the hash buckets beside them
    monkeypatch.setattr(dask_plan.shutil, "disk_usage", lambda _path: type("Usage", (), {"free": free})())
    with ThreadPoolExecutor(1) as runner:
        fits = api.plan_shuffle([str(src)], engine="dask", scheduler=runner, tmp_dir=str(tmp_path))
        short = api.plan_shuffle([str(src)], engine="dask", scheduler=runner, tmp_dir=str(tmp_path), unique=True)
    assert fits.ok and fits.temp_needed == src.stat().st_size, fits.render()
    assert [c.name for c in short.failures] == ["temporary space"]
    assert "not enough temporary space: need" in short.failures[0].reason and short.temp_needed == 2 * src.stat().st_size


@pytest.mark.parametrize(
    "inputs,settings,check,message",
    [
        (["missing.txt"], {}, "inputs", "missing.txt: No such file or directory"),
        (["nosuch://x/y"], {}, "inputs", "nosuch://x/y: Protocol not known: nosuch"),
        (["a.txt"], {"scheduler": "tcp://127.0.0.1:1"}, "options",
         "--scheduler needs --temp-url: a place every worker can reach, e.g. s3://bucket/tmp/ "
         "(or a local path if every worker runs on this machine)"),
        (["-"], {}, "inputs", "--engine=dask cannot read standard input; name input files or URLs"),
        (["a.txt"], {"shards": 2}, "output", "--shards needs -o naming a directory or a pattern like out/part-{:05d}.jsonl"),
    ],
    ids=["missing", "protocol", "scheduler", "stdin", "shards"],
)
def test_a_dry_run_fails_where_the_run_refuses_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inputs: list[str], settings: dict[str, Any], check: str, message: str,
) -> None:
    """The refusals ``test_dask.test_errors_are_one_line_and_leave_nothing`` gets from runs fail the
    plan's named check with the same words, and nothing is written."""
    from bigshuf.errors import render

    write_records(tmp_path / "a.txt", [b"x"])
    monkeypatch.chdir(tmp_path)
    found = api.plan_shuffle(inputs, engine="dask", tmp_dir=str(tmp_path), **settings)
    assert [(c.name, render(c.message, True)) for c in found.failures] == [(check, message)]
    assert os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize("sharding", [Sharding(12, None, None), Sharding(None, 2, None)], ids=["--shards 12", "--shard-records 2"])
def test_url_splits_never_share_an_object(sharding: Sharding) -> None:
    """Split a's shard 10 and split a1's shard 0 are both .../a10.txt: objects are written in place,
    so one would replace the other. Only shards within one split were compared for URL outputs."""
    layout = Layout(sharding, parse_split("a=0.5,a1=rest"), None)
    with pytest.raises(UsageError, match=r"^split=: splits 'a' and 'a1' would both be written to s3://bucket/out/a10\.txt$"):
        check_layout("s3://bucket/out/{split}{}.txt", layout, None, None)
    check_layout("s3://bucket/out/{split}-{}.txt", layout, None, None)


def test_planned_files_past_the_checked_names_never_share_an_object() -> None:
    """Split a's shard 1000 and split a1's shard 0 are both a1000.txt under {split}{:03d}, past the
    names checked before pass 1; URL objects are written in place, so the plan refuses them."""
    layout = Layout(Sharding(None, 1, None), parse_split("a=0.5,a1=rest"), None)
    with pytest.raises(OutputError, match=r"^s3://bucket/out/a1000\.txt: two of this run's files would be written to it; nothing was written$"):
        plan_files("s3://bucket/out/{split}{:03d}.txt", layout, 2004, None, None)
    assert len(plan_files("s3://bucket/out/{split}-{:03d}.txt", layout, 2004, None, None)) == 2004
