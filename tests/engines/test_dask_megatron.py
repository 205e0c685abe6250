"""Megatron indexed datasets (PREFIX.bin + PREFIX.idx) on the Dask engine: documents permuted exactly
(each document's sequences and modes identical, the .idx read field by field by the format tests'
own reader and the tokens by numpy memmap), in one level and when buckets are split again, several
prefixes merged into shards, -n, --verify, --split with --manifest, --shard-size; uniformity of
the document orders by chi-square over fixed seeds (tasks run in-process); S3 datasets in and
pairs out on moto; a corrupt .idx refused in one line with nothing left, the tasks' checks of
their parts of an index giving the local engine's message (a fault at a task boundary too);
--unique keeping the local engine's documents (hash buckets split again) and uniform over their
orders, weighted sources (a rate above 1, --by bytes, --stratify, with --unique) counted as the
local engine counts them (the counting pass reading the indexes alone), --dry-run from the headers,
mixed dtypes with --unique refused in one line.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf import cli
from bigshuf.api import check_manifest
from bigshuf.core import plan
from bigshuf.engines.dask import megatron as dask_megatron
from bigshuf.engines.dask.tasks import Config
from bigshuf.engines.dask.weights import count_task
from bigshuf.errors import InputError, OutputError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "formats"))
from test_megatron import as_docs, make_docs, put_datasets, read_dataset, write_dataset  # noqa: E402
from test_uniformity import assert_uniform  # noqa: E402

distributed = pytest.importorskip("distributed")

#: Generous bound for one CLI run against a cluster (they take a few seconds).
TIMEOUT = 180


def _shuffle(runner: Any, inputs: Any, output: Any, **options: Any) -> Any:
    """``bigshuf.shuffle`` on the Dask engine, its tasks run by ``runner`` in this process."""
    names = [str(i) for i in inputs] if isinstance(inputs, list) else str(inputs)
    return bigshuf.shuffle(names, str(output), engine="dask", scheduler=runner, sync=False, **options)


def _tokens_by_memmap(prefix: Path) -> list[bytes]:
    """Each document's tokens, read by numpy memmap from the .idx's pointers into the .bin (uint16 tokens)."""
    raw = Path(f"{prefix}.idx").read_bytes()
    seqs, entries = struct.unpack_from("<QQ", raw, 18)
    idx = np.memmap(f"{prefix}.idx", mode="r", dtype=np.uint8)
    base = 34
    lengths = idx[base : base + 4 * seqs].view("<i4")
    pointers = idx[base + 4 * seqs : base + 12 * seqs].view("<i8")
    documents = idx[base + 12 * seqs : base + 12 * seqs + 8 * entries].view("<i8")
    tokens = np.memmap(f"{prefix}.bin", mode="r", dtype=np.uint8) if os.path.getsize(f"{prefix}.bin") else np.empty(0, np.uint8)
    out = []
    for d in range(entries - 1):
        parts = [tokens[pointers[s] : pointers[s] + 2 * lengths[s]].tobytes() for s in range(documents[d], documents[d + 1])]
        out.append(b"".join(parts))
    return out


@pytest.mark.parametrize("label,memory,buckets", [("one level", "64K", None), ("split again", "16K", 2)])
def test_documents_permuted_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, buckets: int | None) -> None:
    # 600 documents (~80 KB as rows): under -S 16K with 2 buckets, every bucket is scattered again in its task.
    if buckets is not None:
        monkeypatch.setattr(dask_megatron, "bucket_count", lambda *args: buckets)
    docs = make_docs(600)
    src = write_dataset(tmp_path / "corpus", docs)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp_path / "out").mkdir()
    with ThreadPoolExecutor(2) as runner:
        stats = _shuffle(runner, src, tmp_path / "out" / "shuffled", memory=memory, seed=3, tmp_dir=tmp, verify=True)
    dtype, got = read_dataset(tmp_path / "out" / "shuffled")
    assert dtype == np.uint16 and stats.records == 600
    assert sorted(got) == sorted(as_docs(docs)) and len(set(got)) == 600 and got != as_docs(docs)
    assert _tokens_by_memmap(tmp_path / "out" / "shuffled") == [b"".join(parts) for parts, _modes in got]
    assert stats.passes == 2 if buckets is None else stats.passes >= 3, stats
    assert os.listdir(tmp) == []
    assert sorted(os.listdir(tmp_path / "out")) == ["shuffled.bin", "shuffled.idx"]


def test_prefixes_merged_into_shards_and_the_head(tmp_path: Path) -> None:
    # Two datasets with modes (named by .idx and by prefix); 3 shards in order are the single pair
    # of the same seed (as many buckets), and -n 37 its first 37 documents.
    a, b = make_docs(300, seed=1, modes=True), make_docs(200, seed=2, modes=True)
    inputs = [write_dataset(tmp_path / "a", a, modes=True).with_suffix(".idx"), write_dataset(tmp_path / "b", b, modes=True)]
    with ThreadPoolExecutor(2) as runner:
        single = _shuffle(runner, inputs, tmp_path / "one.bin", memory="32K", seed=9, tmp_dir=tmp_path)
        _shuffle(runner, inputs, f"{tmp_path}/sh/", memory="32K", seed=9, tmp_dir=tmp_path, shards=3, verify=True)
        head = _shuffle(runner, inputs, tmp_path / "head", memory="32K", seed=9, tmp_dir=tmp_path, head_count=37)
    assert single.buckets > 3
    _, got = read_dataset(tmp_path / "one", modes=True)
    assert sorted(got) == sorted(as_docs(a, modes=True) + as_docs(b, modes=True))
    names = sorted(os.listdir(tmp_path / "sh"))
    assert names == [f"part-0000{i}{ext}" for i in range(3) for ext in (".bin", ".idx")]
    shards = [read_dataset(tmp_path / "sh" / f"part-0000{i}", modes=True)[1] for i in range(3)]
    assert [len(s) for s in shards] == [166, 167, 167]
    assert shards[0] + shards[1] + shards[2] == got
    assert head.records == 37 and read_dataset(tmp_path / "head", modes=True)[1] == got[:37]


def test_split_manifest_and_shard_size(tmp_path: Path) -> None:
    docs = make_docs(400, seed=10)
    write_dataset(tmp_path / "c", docs)
    manifest = tmp_path / "m.json"
    with ThreadPoolExecutor(2) as runner:
        _shuffle(runner, tmp_path / "c", f"{tmp_path}/sp/{{split}}", memory="32K", seed=3, tmp_dir=tmp_path,
                 split="valid=50,train=rest", manifest=str(manifest), verify=True)
        _shuffle(runner, tmp_path / "c.bin", f"{tmp_path}/sz/", memory="32K", seed=3, tmp_dir=tmp_path, shard_size="8K")
    valid, train = (read_dataset(tmp_path / "sp" / name)[1] for name in ("valid", "train"))
    assert len(valid) == 50 and len(train) == 350 and sorted(valid + train) == sorted(as_docs(docs))
    document = json.loads(manifest.read_text())
    assert document["kind"] == "documents" and document["format"] == {"documents": "megatron", "dtype": "uint16", "modes": False}
    assert [(o["split"], o["path"], o["records"]) for o in document["outputs"]] == [
        ("valid", "sp/valid.bin", 50), ("train", "sp/train.bin", 350),
    ]
    assert check_manifest(manifest)[0] == []
    names = sorted(p.name[:-4] for p in (tmp_path / "sz").glob("*.bin"))
    assert names == [f"part-{i:05d}" for i in range(len(names))] and len(names) > 3
    sizes = [(tmp_path / "sz" / f"{n}.bin").stat().st_size for n in names]
    assert all(size >= 8192 for size in sizes[:-1]) and sizes[-1] > 0, sizes
    assert sorted(d for n in names for d in read_dataset(tmp_path / "sz" / n)[1]) == sorted(as_docs(docs))


def test_every_order_of_documents_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 documents in two datasets (two pass-1 tasks), 3 buckets: all 24 orders over 192 seeds.
    monkeypatch.setattr(dask_megatron, "bucket_count", lambda *args: 3)
    for name, first in (("x", 0), ("y", 2)):
        write_dataset(tmp_path / name, [[np.full(20, first, np.uint16)], [np.full(20, first + 1, np.uint16)]])
    inputs = [tmp_path / "x", tmp_path / "y"]
    counts: Counter[tuple[int, ...]] = Counter()
    with ThreadPoolExecutor(1) as runner:
        for seed in range(192):
            _shuffle(runner, inputs, tmp_path / "o", memory="1M", seed=seed, tmp_dir=tmp_path)
            counts[tuple(d[0][0][0] for d in read_dataset(tmp_path / "o")[1])] += 1
    assert_uniform(counts, list(permutations(range(4))), "dask megatron")


@pytest.mark.slow
def test_s3_datasets_in_and_pairs_out(bucket: Any, tmp_path: Path) -> None:
    # Tasks in-process, every object on the S3 API that moto serves on loopback.
    name = bucket.bucket
    a, b = make_docs(250, seed=3), make_docs(150, seed=4)
    put_datasets(bucket, tmp_path, {"a": a, "b": b})
    with ThreadPoolExecutor(2) as runner:
        stats = bigshuf.shuffle([f"s3://{name}/in/*.idx"], f"s3://{name}/out/", engine="dask", scheduler=runner, memory="32K",
                                seed=2, shards=2, temp_url=f"s3://{name}/tmp/", tmp_dir=str(tmp_path), verify=True)
        bigshuf.shuffle([f"s3://{name}/in/a.idx"], f"s3://{name}/one/corpus", engine="dask", scheduler=runner, memory="32K",
                        seed=2, temp_url=f"s3://{name}/tmp/", tmp_dir=str(tmp_path))
    assert stats.records == 400
    assert sorted(bucket.ls(f"{name}/one", detail=False)) == [f"{name}/one/corpus.bin", f"{name}/one/corpus.idx"]
    for ext in (".bin", ".idx"):
        bucket.get(f"{name}/one/corpus{ext}", str(tmp_path / f"one{ext}"))
    assert sorted(read_dataset(tmp_path / "one")[1]) == sorted(as_docs(a))
    names = sorted(bucket.ls(f"{name}/out", detail=False))
    assert names == [f"{name}/out/_SUCCESS"] + [f"{name}/out/part-0000{i}{ext}" for i in range(2) for ext in (".bin", ".idx")]
    got = []
    for i in range(2):
        for ext in (".bin", ".idx"):
            bucket.get(f"{name}/out/part-0000{i}{ext}", str(tmp_path / f"got{i}{ext}"))
        got += read_dataset(tmp_path / f"got{i}")[1]
    assert sorted(got) == sorted(as_docs(a) + as_docs(b)) and len(got) == 400
    assert bucket.find(f"{name}/tmp") == []


def _corrupt_pointer(prefix: Path) -> None:
    """Point the last sequence of the dataset at ``prefix`` past the end of its .bin."""
    idx = Path(f"{prefix}.idx")
    raw = bytearray(idx.read_bytes())
    seqs = struct.unpack_from("<Q", raw, 18)[0]
    struct.pack_into("<q", raw, 34 + 4 * seqs + 8 * (seqs - 1), Path(f"{prefix}.bin").stat().st_size + 10)
    idx.write_bytes(bytes(raw))


@pytest.mark.slow
def test_pointers_past_the_bin_refused_in_one_line(tmp_path: Path) -> None:
    write_dataset(tmp_path / "good", make_docs(50, seed=5))
    write_dataset(tmp_path / "bad", make_docs(50, seed=6))
    _corrupt_pointer(tmp_path / "bad")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.bin").write_bytes(b"old bin")
    (out / "keep.idx").write_bytes(b"old idx")
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--engine=dask", "-S", "8K", "-T", str(temp), "good", "bad.idx", "-o", "out/keep"],
        capture_output=True, timeout=TIMEOUT, cwd=tmp_path,
    )
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr.startswith(b"bigshuf: bad.idx: sequence ") and b"runs past the end of bad.bin" in proc.stderr
    assert proc.stderr.count(b"\n") == 1, proc.stderr
    assert sorted(os.listdir(out)) == ["keep.bin", "keep.idx"]
    assert (out / "keep.bin").read_bytes() == b"old bin" and (out / "keep.idx").read_bytes() == b"old idx"
    assert os.listdir(temp) == []
    assert sorted(os.listdir(tmp_path)) == ["bad.bin", "bad.idx", "good.bin", "good.idx", "out", "temp"]


def _lengthen_before_task(prefix: Path, memory: str) -> None:
    """Make the last sequence before the second pass-1 task's first one longer by a token: only a
    check across the tasks' boundary sees that the next sequence does not start where it ends."""
    tasks = dask_megatron.scatter_tasks([dask_megatron.open_dataset(str(prefix))], plan.parse_size(memory), "root")
    assert len(tasks) > 2
    idx = Path(f"{prefix}.idx")
    raw = bytearray(idx.read_bytes())
    seqs = struct.unpack_from("<Q", raw, 18)[0]
    first = struct.unpack_from("<q", raw, 34 + 12 * seqs + 8 * tasks[1].start)[0]
    struct.pack_into("<i", raw, 34 + 4 * (first - 1), struct.unpack_from("<i", raw, 34 + 4 * (first - 1))[0] + 1)
    idx.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["task-boundary", "size-vs-pointers", "doc-index", "negative-length", "bin-size"])
def test_tasks_refuse_a_bad_index_as_the_local_engine_does(tmp_path: Path, how: str) -> None:
    # Checked by the pass-1 tasks, each its part of the index: the same one-line error as the local engine's whole check.
    from test_megatron import _corrupt

    write_dataset(tmp_path / "good", make_docs(50, seed=5))
    write_dataset(tmp_path / "bad", make_docs(300, seed=6))
    if how == "task-boundary":
        _lengthen_before_task(tmp_path / "bad", "16K")
    else:
        _corrupt(tmp_path / "bad", how)
    inputs = [str(tmp_path / "good"), str(tmp_path / "bad.idx")]
    with pytest.raises(InputError) as local:
        bigshuf.shuffle(inputs, str(tmp_path / "o"), memory="16K", tmp_dir=str(tmp_path))
    with ThreadPoolExecutor(1) as runner, pytest.raises(InputError) as dask:
        _shuffle(runner, inputs, tmp_path / "o", memory="16K", tmp_dir=tmp_path)
    assert str(dask.value) == str(local.value) and "\n" not in str(dask.value)
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob(".o*"))


def test_a_bad_header_and_mixed_dtypes_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "u16", make_docs(20))
    write_dataset(tmp_path / "i32", make_docs(20, dtype=np.int32), dtype=np.int32)
    write_dataset(tmp_path / "bad", make_docs(20))
    (tmp_path / "bad.idx").write_bytes(b"NOTMMIDX\x00" + (tmp_path / "bad.idx").read_bytes()[9:])
    with ThreadPoolExecutor(1) as runner:
        with pytest.raises(InputError, match=r"i32\.idx: tokens are int32 but .*u16\.idx's are uint16"):
            _shuffle(runner, [tmp_path / "u16", tmp_path / "i32"], tmp_path / "o", tmp_dir=tmp_path)
        with pytest.raises(InputError, match=r"bad\.idx: not a Megatron index \(bad magic"):
            _shuffle(runner, [tmp_path / "u16", tmp_path / "bad.idx"], tmp_path / "o", tmp_dir=tmp_path)
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob("bigshuf-*"))


def _with_copies(directory: Path) -> tuple[list[str], list[Any]]:
    """Two datasets of 40 and 26 documents, and the 53 distinct ones: 6 repeated within the first, 6
    of the first's in the second, and twice in the second a document of the first's tokens cut into
    other sequences (one sequence): another document."""
    a, b = make_docs(34, seed=1), make_docs(18, seed=2)
    recut = [np.concatenate(next(d for d in a if len(d) > 1))]
    directory.mkdir(exist_ok=True)
    write_dataset(directory / "a", a + a[:6])
    write_dataset(directory / "b", b + a[10:16] + [recut, recut])
    return [str(directory / "a"), str(directory / "b.idx")], as_docs(a + b + [recut])


def test_unique_keeps_one_copy_of_each_document(tmp_path: Path) -> None:
    # At 8K the hash buckets are split again; the documents kept are the local engine's, each once, byte for byte.
    inputs, distinct = _with_copies(tmp_path)
    with ThreadPoolExecutor(2) as runner:
        dask = _shuffle(runner, inputs, tmp_path / "d", memory="8K", seed=1, unique=True, verify=True, tmp_dir=tmp_path)
    local = bigshuf.shuffle(inputs, str(tmp_path / "l"), memory="8K", seed=1, unique=True)
    assert (dask.records, dask.duplicates) == (local.records, local.duplicates) == (53, 13)
    assert dask.passes > 3, dask
    got = read_dataset(tmp_path / "d")[1]
    assert sorted(got) == sorted(distinct) == sorted(read_dataset(tmp_path / "l")[1])
    assert _tokens_by_memmap(tmp_path / "d") == [b"".join(parts) for parts, _modes in got]


def test_weighted_sources_as_the_local_engine_weighs_them(tmp_path: Path) -> None:
    # A --mix solving web's rate above 1 (documents copied, as the local run allows), --by bytes with
    # --stratify and --manifest, and rates on what --unique leaves: the same counts per source and split.
    a, b = make_docs(60, seed=1), make_docs(40, seed=2)
    write_dataset(tmp_path / "a", a)
    write_dataset(tmp_path / "b", b)
    sources = {"web": [str(tmp_path / "a")], "code": [str(tmp_path / "b")]}
    _with_copies(tmp_path / "u")
    runs: dict[str, Any] = {}
    for engine in ("dask", "local"):
        with ThreadPoolExecutor(2) as runner:
            extra: dict[str, Any] = {"engine": "dask", "scheduler": runner} if engine == "dask" else {}
            mixed = bigshuf.shuffle(None, str(tmp_path / f"{engine}-mix"), sources=sources, mix={"web": 0.75, "code": 0.25},
                                    total=120, memory="32K", seed=3, verify=True, **extra)
            split = bigshuf.shuffle(None, str(tmp_path / f"{engine}-{{split}}"), sources=sources, mix={"web": 0.5, "code": 0.5},
                                    total=6000, by="bytes", split="valid=10,train=rest", stratify=True,
                                    manifest=str(tmp_path / f"{engine}.json"), memory="32K", seed=3, **extra)
            unique = bigshuf.shuffle(None, str(tmp_path / f"{engine}-u"), sources={"x": [str(tmp_path / "u" / "a")],
                                     "y": [str(tmp_path / "u" / "b")]}, rates={"y": 0.5}, unique=True, memory="32K", seed=3,
                                     verify=True, **extra)
        runs[engine] = (mixed.sources, split.sources, unique.sources, json.loads((tmp_path / f"{engine}.json").read_text()))
        got = read_dataset(tmp_path / f"{engine}-mix")[1]
        web = Counter(d for d in got if d in set(as_docs(a)))
        assert len(got) == 120 and sum(web.values()) == 90 and set(web.values()) == {1, 2}  # rate 1.5: 30 copied twice
        assert not Counter(got) - Counter(as_docs(a) * 2 + as_docs(b))
        kept = read_dataset(tmp_path / f"{engine}-u")[1]
        assert len(kept) == len(set(kept)) == 34 + unique.sources[1].written
    (dask_mixed, dask_split, dask_unique, dask_doc), (local_mixed, local_split, local_unique, local_doc) = runs["dask"], runs["local"]
    assert [s.written for s in dask_mixed] == [90, 30] and dask_mixed == local_mixed
    assert dask_split == local_split and dask_unique == local_unique
    assert [(s.read, s.dropped, s.written) for s in dask_unique] == [(40, 6, 34), (26, 7, 10)]
    for entry in ("sources", "stratified", "inputs", "format", "kind"):
        assert dask_doc[entry] == local_doc[entry], entry
    assert check_manifest(tmp_path / "dask.json")[0] == []


def test_the_counting_pass_reads_the_indexes_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each pass-1 task's blocks counted from its part of the index: what reading them would count, no .bin read.
    write_dataset(tmp_path / "m", make_docs(300, seed=4, modes=True), modes=True)
    fmt, tasks, k, _pairs = dask_megatron.prepare([str(tmp_path / "m")], str(tmp_path / "o"), False, None, 16 << 10, "root")
    cfg = Config(0, fmt, 16 << 10, k, False)
    read = [[fmt.count(block) for block in fmt.blocks(task, cfg)] for task in tasks]
    assert len(tasks) > 1 and max(len(r) for r in read) > 1
    ranges: list[str] = []
    real = dask_megatron.remote.read_exactly

    def recorded(url: str, *args: Any) -> Any:
        ranges.append(url)
        return real(url, *args)

    monkeypatch.setattr(dask_megatron.remote, "read_exactly", recorded)
    assert [count_task(cfg, task) for task in tasks] == read
    assert ranges and not [url for url in ranges if url.endswith(".bin")]


def test_every_order_of_unique_documents_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 documents in two datasets, one a copy: the 3 kept in all 6 orders alike over 72 seeds.
    monkeypatch.setattr(dask_megatron, "bucket_count", lambda *args: 3)
    for name, values in (("x", (0, 1)), ("y", (2, 0))):
        write_dataset(tmp_path / name, [[np.full(20, v, np.uint16)] for v in values])
    counts: Counter[tuple[int, ...]] = Counter()
    with ThreadPoolExecutor(1) as runner:
        for seed in range(72):
            _shuffle(runner, [tmp_path / "x", tmp_path / "y"], tmp_path / "o", memory="1M", seed=seed, tmp_dir=tmp_path, unique=True)
            counts[tuple(d[0][0][0] for d in read_dataset(tmp_path / "o")[1])] += 1
    assert_uniform(counts, list(permutations(range(3))), "dask megatron --unique")


def test_dry_run_plans_from_the_headers_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "a", make_docs(300, seed=1))
    write_dataset(tmp_path / "b", make_docs(200, seed=2))
    args = ["--engine=dask", "--dry-run", "-S", "64K", "--source", "web=a", "--source", "code=b.idx", "--rate", "code=0.5"]
    assert cli.main([*args, "--unique", "-o", "mix"]) == 0
    lines = capsys.readouterr().out.splitlines()
    size = sum(f.stat().st_size for f in tmp_path.iterdir())
    assert lines[0] == f"inputs: 2 datasets, {plan.format_size(size)}" and lines[1].startswith("records: 500, "), lines
    assert lines[1].endswith("(counted: from the .idx headers)"), lines  # no token is read to count
    assert any(line.startswith("path: Dask tasks, 4 passes (--unique's hashing and dedup passes") for line in lines), lines
    assert "output: mix.bin" in lines and lines[-1] == "ok", lines
    assert cli.main([*args, "-o", "mix"]) == 0
    assert "sources: web 1 file rate 1, code 1 file rate 0.5; 400 records to shuffle" in capsys.readouterr().out
    os.symlink("a.idx", "link.idx")  # the pair's .idx, checked as the run checks it
    assert cli.main([*args, "-o", "link"]) == 1
    assert "failed: output: link.idx: is a symbolic link; a dataset is written as two" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "a.idx", "b.bin", "b.idx", "link.idx"]


@pytest.mark.parametrize("target", ["od", "/dev/null"])
def test_a_refused_output_fails_the_plan_under_the_output_as_the_local_plan_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """``-o DIR`` or ``-o /dev/null``: the Dask plan said ``failed: inputs: ...`` (the pair's name was
    refused as the inputs were prepared) with the inputs' size unknown; it plans the inputs now and
    fails the output, with the local plan's lines."""
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "a", make_docs(50, seed=3))
    os.mkdir("od")
    plans = []
    for engine in ("local", "dask"):
        assert cli.main([f"--engine={engine}", "--dry-run", "a", "-o", target]) == 1
        lines = capsys.readouterr().out.splitlines()
        plans.append(([line for line in lines if line.startswith(("output", "failed"))], lines[0]))
    (local, local_inputs), (dask, dask_inputs) = plans
    assert local[0] == "output: unknown" and len(local) == 2 and local[1].startswith("failed: output: "), local
    assert dask == local and dask_inputs == local_inputs, (dask, dask_inputs)
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "a.idx", "od"]


@pytest.mark.parametrize("damage", ["short bin", "documents out of order"])
def test_a_damaged_dataset_fails_the_plan_as_the_local_plan_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    """A .bin shorter than its index says, or document entries that decrease: the Dask plan said ok
    (its tasks meet them), and now fails its inputs with the local plan's line."""
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "a", make_docs(50, seed=3))
    if damage == "short bin":
        os.truncate("a.bin", os.path.getsize("a.bin") - 10)
    else:
        raw = bytearray(Path("a.idx").read_bytes())
        seqs, docs = struct.unpack_from("<QQ", raw, 18)
        at = 34 + seqs * 12 + 2 * 8  # documents[2], then documents[3]
        raw[at:at + 16] = raw[at + 8:at + 16] + raw[at:at + 8]
        Path("a.idx").write_bytes(raw)
    assert cli.main(["--dry-run", "a.idx", "-o", "out"]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith("failed: inputs: a.idx: "), failed
    assert cli.main(["--engine=dask", "--dry-run", "a.idx", "-o", "out"]) == 1
    assert failed[0] in capsys.readouterr().out.splitlines()
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "a.idx"]


def test_mixed_dtypes_with_unique_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "u16", make_docs(20))
    write_dataset(tmp_path / "i32", make_docs(20, dtype=np.int32), dtype=np.int32)
    assert cli.main(["--engine=dask", "--unique", "--source", "a=u16", "--source", "b=i32", "-o", "o"]) == 1
    assert capsys.readouterr() == (
        "", "bigshuf: i32.idx: tokens are int32 but u16.idx's are uint16; datasets shuffled together must share a dtype\n",
    )
    assert sorted(os.listdir(tmp_path)) == ["i32.bin", "i32.idx", "u16.bin", "u16.idx"]


def test_a_link_at_a_file_of_the_output_pair_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", make_docs(20))
    os.symlink(tmp_path / "a.idx", tmp_path / "out.idx")
    with ThreadPoolExecutor(1) as runner, pytest.raises(OutputError, match=r"out\.idx: is a symbolic link; a dataset is written as two"):
        _shuffle(runner, tmp_path / "a", tmp_path / "out", tmp_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "a.idx", "out.idx"]
