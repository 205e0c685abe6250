"""Megatron indexed datasets (PREFIX.bin + PREFIX.idx): documents permuted exactly on every path,
the .idx checked field by field by a reader written here from the format description, hostile
indexes refused in one line with nothing left behind."""

from __future__ import annotations

import os
import re
import struct
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import bigshuf
from bigshuf.core import plan
from bigshuf.errors import InputError, UsageError
from bigshuf.formats.megatron import IndexedInput, IndexParts

from helpers import measure_table_buckets, run_child, temp_leftovers
from test_uniformity import assert_uniform

MAGIC = b"MMIDIDX\x00\x00"
CODES = {np.dtype(np.uint8): 1, np.dtype(np.int32): 4, np.dtype(np.uint16): 8}

#: A document: its sequences' tokens (bytes each) and their modes (None: no modes).
Doc = tuple[tuple[bytes, ...], tuple[int, ...] | None]


def make_docs(n: int, seed: int = 0, dtype: type = np.uint16, most: int = 40, modes: bool = False) -> list[list[np.ndarray]]:
    """``n`` documents of 1-3 sequences of 1-``most`` tokens; the first token of each is its number (all differ)."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        seqs = [rng.integers(0, 200, rng.integers(1, most + 1)).astype(dtype) for _ in range(rng.integers(1, 4))]
        seqs[0][0] = i % 250 if dtype == np.uint8 else i
        docs.append(seqs)
    return docs


def write_dataset(prefix: Path, docs: list[list[np.ndarray]], dtype: type = np.uint16, modes: bool = False) -> Path:
    """Write ``docs`` as Megatron's writer lays them out (contiguous sequences; modes as seq number % 3)."""
    dt = np.dtype(dtype)
    lengths = [len(s) for d in docs for s in d]
    pointers = np.concatenate(([0], np.cumsum(np.array(lengths, np.int64) * dt.itemsize)[:-1])) if lengths else []
    documents = np.concatenate(([0], np.cumsum([len(d) for d in docs]))).astype(np.int64)
    Path(f"{prefix}.bin").write_bytes(b"".join(s.astype(dt).tobytes() for d in docs for s in d))
    head = MAGIC + struct.pack("<QBQQ", 1, CODES[dt], len(lengths), len(documents))
    body = np.array(lengths, "<i4").tobytes() + np.array(pointers, "<i8").tobytes() + documents.astype("<i8").tobytes()
    tail = (np.arange(len(lengths)) % 3).astype(np.int8).tobytes() if modes else b""
    Path(f"{prefix}.idx").write_bytes(head + body + tail)
    return prefix


def put_datasets(bucket: Any, tmp_path: Path, datasets: dict[str, list[list[np.ndarray]]]) -> None:
    """Write each of ``datasets`` (its prefix: its documents) under ``tmp_path`` and upload its pair
    to ``in/`` of the (moto) ``bucket``."""
    for prefix, docs in datasets.items():
        write_dataset(tmp_path / prefix, docs)
        for ext in (".bin", ".idx"):
            bucket.put(str(tmp_path / f"{prefix}{ext}"), f"{bucket.bucket}/in/{prefix}{ext}")


def read_dataset(prefix: Path, modes: bool = False) -> tuple[np.dtype, list[Doc]]:
    """Read a dataset from the format description alone, asserting every field of the .idx."""
    raw = Path(f"{prefix}.idx").read_bytes()
    assert raw[:9] == MAGIC
    version, code, seqs, entries = struct.unpack_from("<QBQQ", raw, 9)
    assert version == 1
    dt = {v: k for k, v in CODES.items()}[code]
    base = 9 + 8 + 1 + 8 + 8
    assert len(raw) == base + 12 * seqs + 8 * entries + (seqs if modes else 0)
    lengths = np.frombuffer(raw, "<i4", seqs, base)
    pointers = np.frombuffer(raw, "<i8", seqs, base + 4 * seqs)
    documents = np.frombuffer(raw, "<i8", entries, base + 12 * seqs)
    mode_values = np.frombuffer(raw, np.int8, seqs, base + 12 * seqs + 8 * entries) if modes else None
    assert documents[0] == 0 and documents[-1] == seqs and np.all(np.diff(documents) >= 0)
    expected = np.concatenate(([0], np.cumsum(lengths.astype(np.int64) * dt.itemsize)[:-1])) if seqs else np.empty(0)
    assert np.array_equal(pointers, expected)
    size = Path(f"{prefix}.bin").stat().st_size
    assert size == int(lengths.astype(np.int64).sum()) * dt.itemsize
    tokens = np.memmap(f"{prefix}.bin", dtype=dt, mode="r") if size else np.empty(0, dt)
    docs: list[Doc] = []
    for d in range(entries - 1):
        seq = range(int(documents[d]), int(documents[d + 1]))
        parts = tuple(tokens[pointers[s] // dt.itemsize :][: lengths[s]].tobytes() for s in seq)
        docs.append((parts, None if mode_values is None else tuple(int(mode_values[s]) for s in seq)))
    return dt, docs


def as_docs(docs: list[list[np.ndarray]], dtype: type = np.uint16, modes: bool = False) -> list[Doc]:
    """Documents as ``read_dataset`` gives them."""
    out: list[Doc] = []
    n = 0
    for d in docs:
        out.append((tuple(s.astype(dtype).tobytes() for s in d), tuple((n + i) % 3 for i in range(len(d))) if modes else None))
        n += len(d)
    return out


# (label, -S, bucket cap, passes): 600 documents of ~60 tokens are ~80 KB as rows.
PATHS = [("in-memory", "64M", None, {1}), ("external", "32K", None, {2}), ("recursive", "32K", 2, None)]


@pytest.mark.parametrize("label,memory,cap,passes", PATHS)
def test_documents_permuted_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None, passes: set[int] | None
) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    docs = make_docs(600)
    src = write_dataset(tmp_path / "corpus_text_document", docs)
    out = tmp_path / "out" / "shuffled"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out.parent.mkdir()
    stats = bigshuf.shuffle(str(src), str(out), memory=memory, seed=3, tmp_dir=tmp, sync=False)
    dtype, got = read_dataset(out)
    assert dtype == np.uint16 and stats.records == 600
    assert sorted(got) == sorted(as_docs(docs)) and len(set(got)) == 600
    assert got != as_docs(docs)
    if passes is not None:
        assert stats.passes in passes, stats
    else:
        assert stats.passes >= 3, stats
    assert temp_leftovers(tmp) == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["shuffled.bin", "shuffled.idx"]


def test_several_prefixes_merged_with_modes_and_seeded(tmp_path: Path, run_cli) -> None:
    a, b = make_docs(300, seed=1, modes=True), make_docs(200, seed=2, modes=True)
    write_dataset(tmp_path / "a", a, modes=True)
    write_dataset(tmp_path / "b", b, modes=True)
    args = [tmp_path / "a.idx", tmp_path / "b.bin", "--seed", "9", "-S", "40K", "-T", tmp_path]
    code, _, err = run_cli([*args, "-o", tmp_path / "m1"])
    assert code == 0, err
    code, _, err = run_cli([*args, "-o", tmp_path / "m2.idx"])
    assert code == 0, err
    _, got = read_dataset(tmp_path / "m1", modes=True)
    assert sorted(got) == sorted(as_docs(a, modes=True) + as_docs(b, modes=True))
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"m1{ext}").read_bytes() == (tmp_path / f"m2{ext}").read_bytes()


@pytest.mark.parametrize("modes", [False, True])
def test_many_pairs_hold_no_descriptor_each(tmp_path: Path, modes: bool) -> None:
    """Each input pair held three descriptors for the whole run (its index's arrays mapped once, each
    mapping holding one): 60 pairs under ``ulimit -n 100`` failed "Too many open files", naming a
    NumPy module or nothing, where ``--dry-run`` said 43 were needed (attack); a corpus of thousands
    of shards failed at the default limit. Each array is now mapped where it is read."""
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    expected = []
    for p in range(60):
        docs = make_docs(20, seed=p, modes=modes)
        write_dataset(tmp_path / "in" / f"p{p:03d}_text_document", docs, modes=modes)
        expected += as_docs(docs, modes=modes)

    def lower() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    cmd = [sys.executable, "-m", "bigshuf", "-S", "64K", "--seed", "1", "-T", str(tmp_path), str(tmp_path / "in"), "-o", str(tmp_path / "m")]
    done = subprocess.run(cmd, capture_output=True, timeout=120, preexec_fn=lower, check=False)
    assert (done.returncode, done.stderr) == (0, b"")
    assert Counter(read_dataset(tmp_path / "m", modes=modes)[1]) == Counter(expected)


def test_an_index_cut_short_after_its_check_is_an_input_error(tmp_path: Path) -> None:
    """An index truncated while the run reads it: mapping an array past its new end was an internal
    error, "ValueError: mmap length is greater than file size" (review of the per-use mapping)."""
    from bigshuf.formats.megatron import IndexedInput

    write_dataset(tmp_path / "a", make_docs(100))
    dataset = IndexedInput(str(tmp_path / "a"))
    os.truncate(tmp_path / "a.idx", 100)
    with pytest.raises(InputError, match=r"a\.idx: file changed while being read \(now shorter than its header says\)$"):
        dataset.documents(0, dataset.count + 1)


def test_documents_read_with_the_index_a_few_entries_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index read three entries at a time, documents of one to seven sequences: each window's
    document starts come from pointers read from its first sequence not yet placed, a long
    document's other sequences skipped; rows, sizes and ``document_at`` as the index says."""
    from bigshuf.formats import megatron

    monkeypatch.setattr(megatron, "WINDOW", 3)
    rng = np.random.default_rng(5)
    docs = [[rng.integers(0, 200, int(rng.integers(1, 9))).astype(np.uint16) for _ in range(int(k))] for k in rng.choice([1, 2, 7], 40)]
    write_dataset(tmp_path / "a", docs, modes=True)
    dataset = megatron.IndexedInput(str(tmp_path / "a"))
    rows = [row for batch in dataset.batches(64) for row in batch.to_pylist()]
    first = np.cumsum([0] + [len(d) for d in docs])
    assert rows == [
        {"tokens": b"".join(s.tobytes() for s in d), "lengths": [len(s) for s in d], "modes": [(first[i] + j) % 3 for j in range(len(d))]}
        for i, d in enumerate(docs)
    ]
    assert [dataset.document_at(i) for i in range(len(docs))] == [(sum(2 * len(s) for s in d), len(d)) for d in docs]


@pytest.mark.parametrize("cut", ["a.idx", "a.bin"])
def test_a_dataset_cut_short_while_its_documents_are_shuffled_is_an_input_error(tmp_path: Path, cut: str) -> None:
    """A file of the dataset emptied by another process once the first batch of documents is read.
    That batch's sequence lengths were views of the mapped index, and touching them ended the run
    by SIGBUS (-7), its temporary directory left behind; the next read of the index now finds it cut
    short, and the files' sizes then say how. The ``.bin`` is read, and was refused as 'ended at byte
    N, before M (changed while read?)'."""
    write_dataset(tmp_path / "a", make_docs(3000))
    (tmp_path / "tmp").mkdir()
    done = run_child(f"""
import os, sys
from bigshuf.cli import main
from bigshuf.formats import megatron
made = megatron.documents_batch
def cutting(*args):
    batch = made(*args)
    os.truncate({str(tmp_path / cut)!r}, 0)
    return batch
megatron.documents_batch = cutting
sys.exit(main([{str(tmp_path / "a")!r}, "-o", {str(tmp_path / "o")!r}, "-S", "32K", "-T", {str(tmp_path / "tmp")!r}, "--seed", "1"]))
""")
    assert done.returncode == 1, (done.returncode, done.stderr[-800:])
    assert re.fullmatch(rf"bigshuf: .*{re.escape(cut)}: file changed while being read \(size \d+ bytes when opened, 0 now\)\n", done.stderr), done.stderr
    assert not (tmp_path / "o.bin").exists() and not (tmp_path / "o.idx").exists()
    assert temp_leftovers(tmp_path / "tmp") == []


@pytest.mark.parametrize(("victim", "change"), [("a.idx", "touch"), ("a.bin", "touch"), ("a.idx", "scramble"), ("a.idx", "replace")])
def test_a_dataset_rewritten_while_its_documents_are_shuffled_is_an_input_error(tmp_path: Path, victim: str, change: str) -> None:
    """A file of the dataset rewritten in place (same size) or replaced by another process once the
    first batch of documents is read: the run went on with what the files then held, exit 0, the
    documents cut by an index that was not the one checked. Refused as a line file is."""
    write_dataset(tmp_path / "a", make_docs(3000))
    (tmp_path / "tmp").mkdir()
    path = str(tmp_path / victim)
    done = run_child(f"""
import os, shutil, sys
import numpy as np
from bigshuf.cli import main
from bigshuf.formats import megatron
made = megatron.documents_batch
changed = []
def changing(*args):
    batch = made(*args)
    if not changed:
        changed.append(1)
        if {change!r} == "touch":
            os.utime({path!r}, ns=(1, 1))
        elif {change!r} == "scramble":
            with open({path!r}, "r+b") as f:
                f.seek(34)
                f.write(np.random.default_rng(1).integers(0, 256, os.path.getsize({path!r}) - 34, dtype=np.uint8).tobytes())
        else:
            shutil.copy({path!r}, {path!r} + ".new")
            os.rename({path!r} + ".new", {path!r})
    return batch
megatron.documents_batch = changing
sys.exit(main([{str(tmp_path / "a")!r}, "-o", {str(tmp_path / "o")!r}, "-S", "32K", "-T", {str(tmp_path / "tmp")!r}, "--seed", "1"]))
""")
    why = "another file now has its name" if change == "replace" else r"modified, its size still \d+ bytes"
    assert done.returncode == 1, (done.returncode, done.stderr[-800:])
    assert re.fullmatch(rf"bigshuf: .*{re.escape(victim)}: file changed while being read \({why}\)\n", done.stderr), done.stderr
    assert not (tmp_path / "o.bin").exists() and not (tmp_path / "o.idx").exists()
    assert temp_leftovers(tmp_path / "tmp") == []


def test_shards_sample_and_verify(tmp_path: Path, run_cli) -> None:
    docs = make_docs(500, seed=4, dtype=np.int32)
    write_dataset(tmp_path / "c", docs, dtype=np.int32)
    code, _, err = run_cli([tmp_path / "c", "-o", tmp_path / "s" / "part_{}", "--shards", "3", "--seed", "1", "--verify", "-S", "32K"])
    assert code == 0, err
    parts = [read_dataset(tmp_path / "s" / f"part_{i}")[1] for i in range(3)]
    assert [len(p) for p in parts] == [166, 167, 167]
    assert sorted(d for p in parts for d in p) == sorted(as_docs(docs, np.int32))
    code, _, err = run_cli([tmp_path / "c", "-o", f"{tmp_path}/d/", "--shards", "2", "-n", "10%", "--seed", "1"])
    assert code == 0, err
    halves = [read_dataset(tmp_path / "d" / f"part-0000{i}")[1] for i in range(2)]
    sample = halves[0] + halves[1]
    assert len(sample) == 50 and set(sample) <= set(as_docs(docs, np.int32)) and len(set(sample)) == 50
    code, _, err = run_cli([tmp_path / "c", "-o", tmp_path / "n7", "-n", "7", "--seed", "1"])
    assert code == 0, err
    assert len(read_dataset(tmp_path / "n7")[1]) == 7


@pytest.mark.parametrize("target", ["/dev/null", "/dev/null.bin", "/dev/stdout", "fifo"])
@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_dataset_output_on_a_device_or_descriptor_is_refused(tmp_path: Path, run_cli, target: str, engine: str) -> None:
    """``-o /dev/null`` took /dev/null as a prefix and wrote ``/dev/null.bin`` and ``.idx``, full-size
    regular files in ``/dev`` (devtmpfs: memory), exit 0; ``/dev/stdout`` the same. A dataset is two
    files: a device, FIFO or descriptor is refused in one line, before anything is read or made."""
    write_dataset(tmp_path / "a", make_docs(50))
    os.mkfifo(tmp_path / "fifo")
    given = str(tmp_path / target) if target == "fifo" else target
    prefix = given.removesuffix(".bin")
    made = [prefix + ".bin", prefix + ".idx"]
    assert not any(os.path.lexists(name) for name in made), "left by an earlier run"
    try:
        code, out, err = run_cli([tmp_path / "a", "-o", given, f"--engine={engine}", "--seed", "1"])
        written = [name for name in made if os.path.lexists(name)]
    finally:
        for name in made:  # (the bug this guards against wrote them into /dev)
            if os.path.isfile(name) and not os.path.islink(name):
                os.unlink(name)
    assert (code, out, written) == (1, b"", []), err
    assert err == (
        f"bigshuf: {prefix}: a dataset is two files, PREFIX.bin and PREFIX.idx, and cannot be written to a "
        "device, FIFO or open descriptor; give -o a dataset prefix\n"
    ).encode()
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "a.idx", "fifo"]


@pytest.mark.parametrize("memory,in_memory", [("8M", True), ("2M", False)])
def test_a_long_first_document_does_not_size_the_plan(tmp_path: Path, memory: str, in_memory: bool) -> None:
    """The run chose its path, buckets and temporary space from the first batch's mean document
    times the documents: one document of 100,000 sequences before 20,000 short ones went to the
    external path with 4,096 buckets and asked for GBs of temporary space (found by review: 260.8 GiB
    for 44 MB), where ``--dry-run``, from the indexes, planned what the run needs. Both plan from the
    indexes now, in memory or not."""
    long = [np.full(3, 7, np.uint16) for _ in range(100_000)]
    short = [[np.full(3, i % 100, np.uint16)] for i in range(20_000)]
    write_dataset(tmp_path / "v", [long, *short])
    options = {"memory": memory, "seed": 1, "tmp_dir": str(tmp_path)}
    planned = bigshuf.plan_shuffle([str(tmp_path / "v")], str(tmp_path / "o"), **options)
    stats = bigshuf.shuffle([str(tmp_path / "v")], str(tmp_path / "o"), **options)
    assert planned.in_memory == in_memory and planned.buckets is not None and planned.buckets < 64, planned.render()
    assert stats.buckets == planned.buckets
    assert sorted(read_dataset(tmp_path / "o")[1]) == sorted(as_docs([long, *short]))


@pytest.mark.parametrize("memory", ["1M", "2M"])
def test_a_unique_plan_of_documents_takes_the_runs_path(tmp_path: Path, memory: str) -> None:
    """``--dry-run --unique`` of 3,000 documents that fit in ``-S 1M`` once but not beside their unique
    copy said "in memory, 1 pass"; the run took 3 passes and 7 buckets (found by review). From the
    indexes, the plan now gives the run's path and its buckets: hash buckets, then the others."""
    write_dataset(tmp_path / "s", make_docs(3000, seed=1))
    options = {"memory": memory, "unique": True, "seed": 1, "tmp_dir": str(tmp_path)}
    planned = bigshuf.plan_shuffle([str(tmp_path / "s")], str(tmp_path / "o"), **options)
    stats = bigshuf.shuffle([str(tmp_path / "s")], str(tmp_path / "o"), **options)
    assert (planned.in_memory, planned.passes) == (stats.passes == 1, stats.passes), planned.render()
    said = re.search(r"(\d+) hash buckets then (\d+) buckets", planned.render())
    assert stats.buckets == (0 if said is None else int(said[1]) + int(said[2])), planned.render()
    assert sorted(read_dataset(tmp_path / "o")[1]) == sorted(set(as_docs(make_docs(3000, seed=1))))


@pytest.mark.parametrize("modes", [False, True])
def test_an_output_index_is_made_a_part_at_a_time(tmp_path: Path, modes: bool) -> None:
    """An output's ``.idx`` was made as whole arrays beside the parts kept for it (lengths joined, the
    pointers, the document index and the bytes of each): 8 M sequences at ``-S 16M`` peaked at 509 MB
    against 200 MB now (found by review). Made a part at a time, it holds one part's arrays at once,
    and its bytes are the index of the documents written, read back as Megatron reads it."""
    docs = make_docs(4000, seed=9, modes=modes)
    write_dataset(tmp_path / "d", docs, modes=modes)
    parts = IndexParts(modes)
    table = pa.Table.from_batches(list(IndexedInput(str(tmp_path / "d")).batches(16 << 10)))
    for batch in table.to_batches(max_chunksize=100):
        parts.add(batch)
    assert len(parts.kept) > 10  # many parts, each document in one
    assert b"".join(parts.index_parts(8)) == (tmp_path / "d.idx").read_bytes()
    many = IndexParts(modes)
    chunk = (np.full(5_000, 2, np.int64), np.full(10_000, 3, np.int32), np.zeros(10_000, np.int8) if modes else None)
    for _ in range(200):  # 2 M sequences in 200 parts
        many.keep(chunk)
    tracemalloc.start()
    try:
        written = sum(len(part) for part in many.index_parts(8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == 34 + 2_000_000 * (4 + 8 + (1 if modes else 0)) + 8 * 1_000_001
    assert peak < 1 << 20, peak  # one part: 80 KB of pointers and their bytes, not 40 MB of arrays


def test_split_and_shard_size(tmp_path: Path, run_cli) -> None:
    docs = make_docs(400, seed=10)
    write_dataset(tmp_path / "c", docs)
    code, _, err = run_cli([tmp_path / "c", "-o", f"{tmp_path}/sp/{{split}}", "--split", "valid=50,train=rest", "--seed", "3"])
    assert code == 0, err
    valid, train = (read_dataset(tmp_path / "sp" / name)[1] for name in ("valid", "train"))
    assert len(valid) == 50 and len(train) == 350 and sorted(valid + train) == sorted(as_docs(docs))
    code, _, err = run_cli([tmp_path / "c", "-o", f"{tmp_path}/sz/", "--shard-size", "8K", "--seed", "3", "-S", "32K"])
    assert code == 0, err
    names = sorted(p.name[:-4] for p in (tmp_path / "sz").glob("*.bin"))
    assert names == [f"part-{i:05d}" for i in range(len(names))] and len(names) > 3
    sizes = [(tmp_path / "sz" / f"{n}.bin").stat().st_size for n in names]
    assert all(size >= 8192 for size in sizes[:-1]) and sizes[-1] > 0, sizes
    assert sorted(d for n in names for d in read_dataset(tmp_path / "sz" / n)[1]) == sorted(as_docs(docs))


@pytest.mark.parametrize("label,memory,cap", [(p[0], p[1], p[2]) for p in PATHS])
def test_document_orders_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    docs = [[np.full(150, i, np.uint16)] for i in range(3)]  # 300 bytes each: external at 1K, a bucket of 3 recurses
    src = str(write_dataset(tmp_path / "three", docs))
    out = str(tmp_path / "o")
    counts: Counter = Counter()
    passes: Counter = Counter()
    for seed in range(6 * 30):
        stats = bigshuf.shuffle(src, out, memory="1K" if memory != "64M" else memory, seed=seed, tmp_dir=tmp_path, sync=False)
        counts[tuple(d[0][0][0] for d in read_dataset(Path(out))[1])] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(3))), label)
    # Where the path is decided: in memory always; external at least 2 passes; recursive more, at times.
    assert min(passes) == {"in-memory": 1}.get(label, 2) and max(passes) > (2 if label == "recursive" else 0), passes


def test_sample_positions_uniform(tmp_path: Path) -> None:
    docs = [[np.full(150, i, np.uint16)] for i in range(4)]
    src = str(write_dataset(tmp_path / "four", docs))
    pairs: Counter = Counter()
    for seed in range(12 * 16):
        bigshuf.shuffle(src, str(tmp_path / "o"), memory="1K", seed=seed, head_count=2, tmp_dir=tmp_path, sync=False)
        pairs[tuple(d[0][0][0] for d in read_dataset(tmp_path / "o")[1])] += 1
    assert_uniform(pairs, list(permutations(range(4), 2)), "-n 2")


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "1K")])
def test_split_documents_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str) -> None:
    """``--split valid=1,train=rest`` of 3 documents: valid's document, then train's two in order, are
    each of the 6 orders equally often (20 runs an order expected). Externally in 2 buckets: a bucket
    of 2 documents is permuted in pass 2 (so a bias there shows), one of 3 is scattered again."""
    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)
    docs = [[np.full(150, i, np.uint16)] for i in range(3)]
    src = str(write_dataset(tmp_path / "three", docs))
    counts: Counter[tuple[int, ...]] = Counter()
    passes: Counter[int] = Counter()
    for seed in range(6 * 20):
        stats = bigshuf.shuffle(src, f"{tmp_path}/sp/{{split}}", memory=memory, seed=seed, split="valid=1,train=rest",
                                tmp_dir=tmp_path, sync=False)
        valid, train = (read_dataset(tmp_path / "sp" / name)[1] for name in ("valid", "train"))
        assert len(valid) == 1 and sorted(valid + train) == as_docs(docs)
        counts[tuple(d[0][0][0] for d in valid + train)] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(3))), f"--split, {label}")
    assert (set(passes) == {1}) if label == "in-memory" else (min(passes) == 2), passes


def test_compressed_temp_buckets_document_orders_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--compress-temp`` on the external path: the buckets (Arrow IPC streams of documents) are
    compressed, smaller than the same run's without it, and every order of 3 documents as likely
    (in 2 buckets, as above)."""
    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)

    docs = [[np.full(150, i, np.uint16)] for i in range(3)]
    src = str(write_dataset(tmp_path / "three", docs))
    on_disk = measure_table_buckets(monkeypatch)
    for compress_temp in (False, True):
        bigshuf.shuffle(src, str(tmp_path / "o"), memory="1K", seed=0, tmp_dir=tmp_path, sync=False, compress_temp=compress_temp)
    assert on_disk[-1] < on_disk[0], on_disk
    counts: Counter[tuple[int, ...]] = Counter()
    passes: Counter[int] = Counter()
    for seed in range(6 * 20):
        stats = bigshuf.shuffle(src, str(tmp_path / "o"), memory="1K", seed=seed, tmp_dir=tmp_path, sync=False, compress_temp=True)
        got = read_dataset(tmp_path / "o")[1]
        assert sorted(got) == as_docs(docs)
        counts[tuple(d[0][0][0] for d in got)] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(3))), "compressed temporary buckets")
    assert min(passes) == 2, passes


def _corrupt(prefix: Path, how: str) -> str:
    """Spoil the dataset at ``prefix`` as ``how`` says; return the file the message must name."""
    idx, binf = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    raw = bytearray(idx.read_bytes())
    seqs, entries = struct.unpack_from("<QQ", raw, 18)
    base = 34
    if how == "magic":
        raw[0:9] = b"NOTMMIDX\x00"
    elif how == "version":
        raw[9:17] = struct.pack("<Q", 2)
    elif how == "dtype":
        raw[17] = 42
    elif how == "pointer-past-bin":
        struct.pack_into("<q", raw, base + 4 * seqs + 8 * (seqs - 1), binf.stat().st_size + 10)
    elif how == "size-vs-pointers":
        struct.pack_into("<i", raw, base, struct.unpack_from("<i", raw, base)[0] + 1)
    elif how == "doc-index":
        struct.pack_into("<q", raw, base + 12 * seqs + 8 * 2, 0)
    elif how == "negative-length":
        struct.pack_into("<i", raw, base + 4, -3)
    elif how == "idx-size":
        del raw[-5:]
    elif how == "bin-size":
        binf.write_bytes(binf.read_bytes() + b"\0\0")
        return str(binf)
    elif how == "bin-missing":
        binf.unlink()
        return str(binf)
    idx.write_bytes(bytes(raw))
    return str(idx)


HOSTILE = ["magic", "version", "dtype", "pointer-past-bin", "size-vs-pointers", "doc-index", "negative-length", "idx-size",
           "bin-size", "bin-missing"]


@pytest.mark.parametrize("how", HOSTILE)
def test_hostile_index_refused(tmp_path: Path, run_cli, how: str) -> None:
    """Each spoiled dataset: one line naming the file, nothing written, the old output kept, no temporary files
    (through the command line for two of them, the library for the rest, to keep the suite fast)."""
    write_dataset(tmp_path / "good", make_docs(50, seed=5))
    write_dataset(tmp_path / "bad", make_docs(50, seed=6))
    named = _corrupt(tmp_path / "bad", how)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.bin").write_bytes(b"old bin")
    (out / "keep.idx").write_bytes(b"old idx")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    if how in ("magic", "pointer-past-bin"):
        code, stdout, err = run_cli([tmp_path / "good", tmp_path / "bad.idx", "-o", out / "keep", "-T", tmp, "-S", "8K"])
        assert code == 1 and stdout == b""
        assert err.startswith(f"bigshuf: {named}: ".encode()) and err.count(b"\n") == 1, err
    else:
        with pytest.raises(InputError) as caught:
            bigshuf.shuffle([str(tmp_path / "good"), str(tmp_path / "bad.idx")], str(out / "keep"), tmp_dir=tmp, memory="8K")
        assert str(caught.value).startswith(f"{named}: ") and "\n" not in str(caught.value), caught.value
    assert sorted(p.name for p in out.iterdir()) == ["keep.bin", "keep.idx"]
    assert (out / "keep.bin").read_bytes() == b"old bin" and (out / "keep.idx").read_bytes() == b"old idx"
    assert temp_leftovers(tmp) == []


def test_mismatched_dtypes_and_refusals(tmp_path: Path, run_cli) -> None:
    write_dataset(tmp_path / "u16", make_docs(20))
    write_dataset(tmp_path / "i32", make_docs(20, dtype=np.int32), dtype=np.int32)
    code, _, err = run_cli([tmp_path / "u16", tmp_path / "i32", "-o", tmp_path / "o"])
    assert code == 1
    assert err == (
        f"bigshuf: {tmp_path}/i32.idx: tokens are int32 but {tmp_path}/u16.idx's are uint16; "
        "datasets shuffled together must share a dtype\n"
    ).encode()
    assert not list(tmp_path.glob("o*"))
    for settings, word in (
        ({"compress": "zstd"}, "compress="), ({"zero_terminated": True}, "zero_terminated="),
        ({"engine": "dask", "resume": True, "seed": 1}, "engine='dask'"), ({"repeat": True}, "repeat="),
    ):
        with pytest.raises(UsageError, match=word):
            bigshuf.shuffle(str(tmp_path / "u16"), str(tmp_path / "o"), **settings)
    code, _, err = run_cli([tmp_path / "u16", "-o", tmp_path / "o", "--compress", "zstd"])
    assert code == 1 and err == b"bigshuf: --compress: not available for Megatron datasets (.bin/.idx documents)\n"
    with pytest.raises(UsageError, match="is a directory; give output= a dataset prefix"):
        bigshuf.shuffle(str(tmp_path / "u16"), str(tmp_path))
    code, _, err = run_cli([tmp_path / "u16"])
    assert code == 1 and err == b"bigshuf: a Megatron dataset is written to files: give -o PREFIX (PREFIX.bin and PREFIX.idx are written)\n"
    # A text file named t.idx (GNU shuf shuffles its lines) was told to give -o, naming no file (found
    # by a differential test): its own problem comes first, as with -o.
    (tmp_path / "t.idx").write_bytes(b"a\nb\n")
    for argv in ([tmp_path / "t.idx"], [tmp_path / "t.idx", "-o", tmp_path / "o"]):
        code, _, err = run_cli(argv)
        assert (code, err) == (1, f"bigshuf: {tmp_path}/t.idx: not a Megatron index (bad magic: b'a\\nb\\n')\n".encode()), argv
    (tmp_path / "text.txt").write_bytes(b"a line\n")
    code, _, err = run_cli([tmp_path / "u16", tmp_path / "text.txt", "-o", tmp_path / "o"])
    assert code == 1 and err.startswith(f"bigshuf: {tmp_path}/text.txt: not a Megatron indexed dataset".encode())
    # A mistyped name was "not a Megatron indexed dataset" too; it is said as of any missing file.
    code, _, err = run_cli([tmp_path / "u16", tmp_path / "nothing.txt", "-o", tmp_path / "o"])
    assert (code, err) == (1, f"bigshuf: {tmp_path}/nothing.txt: No such file or directory\n".encode())


@pytest.mark.parametrize(
    "args", [["-e", "a", "b", "-o", "x.idx"], ["-i", "1-3", "-o", "x.bin"], ["in.txt", "-o", "x.bin"], ["in.bin", "-o", "out.bin"]],
)
def test_lines_may_still_be_written_to_a_name_ending_in_bin_or_idx(tmp_path: Path, run_cli, run_gnu, args: list[str]) -> None:
    """As in GNU shuf, which writes lines to any name, and reads any file as lines: a .bin without
    its .idx is no Megatron dataset (refusing it with a .bin output, tried, refused records in
    a file named in.bin, which shuf shuffles)."""
    (tmp_path / "in.txt").write_bytes(b"a\nb\nc\n")
    (tmp_path / "in.bin").write_bytes(b"\x00\x01\n\xff\n\x02\n")
    assert run_gnu(args, cwd=tmp_path)[0] == 0
    gnu = sorted((tmp_path / args[-1]).read_bytes().splitlines())
    code, _, err = run_cli(args, cwd=tmp_path)
    assert code == 0 and err == b"" and sorted((tmp_path / args[-1]).read_bytes().splitlines()) == gnu


@pytest.mark.parametrize("beside", ["fifo", "directory"])
def test_a_bin_beside_an_idx_that_is_no_file_is_refused_not_read_as_lines(tmp_path: Path, run_cli, beside: str) -> None:
    """``g.bin`` with a FIFO (or a directory) at ``g.idx`` was shuffled as lines, exit 0, where a
    regular ``g.idx`` makes it a Megatron dataset: the .bin's bytes were cut at newline bytes."""
    (tmp_path / "g.bin").write_bytes(b"\x00\x01\n\xff\n\x02\n")
    if beside == "fifo":
        os.mkfifo(tmp_path / "g.idx")
    else:
        (tmp_path / "g.idx").mkdir()
    code, out, err = run_cli(["g.bin", "-o", "out"], cwd=tmp_path)
    assert (code, out, err) == (1, b"", b"bigshuf: g.idx: not a regular file (an index is read at offsets)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.bin", "g.idx"]


@pytest.mark.parametrize("engine", ["local", "dask"])
@pytest.mark.parametrize("empty", ["no documents", "one document of no sequences"])
def test_a_dataset_of_no_sequences_goes_with_modes_or_without(tmp_path: Path, engine: str, empty: str) -> None:
    """An index of no sequences is the same size with modes or without, so it was read as having
    none, and bigshuf refused its own -n 0 of a multimodal dataset beside that dataset."""
    docs = make_docs(30, seed=5)
    write_dataset(tmp_path / "am", docs, modes=True)
    write_dataset(tmp_path / "e", [] if empty == "no documents" else [[]])
    write_dataset(tmp_path / "plain", make_docs(5, seed=6))
    (tmp_path / "t").mkdir()
    with ThreadPoolExecutor(2) as runner:
        kw: dict[str, object] = {"engine": "dask", "scheduler": runner, "tmp_dir": tmp_path / "t"} if engine == "dask" else {}
        for order in (["e", "am"], ["am", "e"]):
            out = tmp_path / f"mm-{order[0]}"
            bigshuf.shuffle([str(tmp_path / n) for n in order], str(out), seed=1, sync=False, **kw)  # type: ignore[arg-type]
            got = read_dataset(out, modes=True)[1]
            want = as_docs(docs, modes=True) + ([] if empty == "no documents" else [((), ())])
            assert sorted(got) == sorted(want)
        bigshuf.shuffle([str(tmp_path / "e"), str(tmp_path / "plain")], str(tmp_path / "p"), seed=1, sync=False, **kw)  # type: ignore[arg-type]
    assert len(read_dataset(tmp_path / "p")[1]) == 5 + (empty != "no documents")


def test_empty_documents_and_shuffle_in_place(tmp_path: Path, run_cli) -> None:
    """Documents of no sequences (Megatron's writer makes them) are kept; -o may name the input."""
    docs = make_docs(60, seed=12)
    docs[5], docs[17] = [], []
    write_dataset(tmp_path / "c", docs)
    before = sorted(as_docs(docs))
    code, _, err = run_cli([tmp_path / "c.bin", "-o", tmp_path / "c", "--seed", "4", "-S", "4K", "-T", tmp_path])
    assert code == 0, err
    after = read_dataset(tmp_path / "c")[1]
    assert sorted(after) == before and after != as_docs(docs) and after.count(((), None)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin", "c.idx"]


@pytest.mark.parametrize("link", ["out.idx", "out.bin", "sh/part-00001.idx"])
def test_a_symlink_at_a_file_of_the_output_pair_is_never_written_through(tmp_path: Path, run_cli, link: str) -> None:
    """Found on merging: with out.idx a symlink to the input's d.idx, `-o out` replaced d.idx with the
    shuffled index, leaving d.bin beside an index of another order. Each file of a pair is refused
    as a link before any input is read, and the input is untouched."""
    write_dataset(tmp_path / "d", make_docs(50, seed=3))
    before = {p: p.read_bytes() for p in (tmp_path / "d.bin", tmp_path / "d.idx")}
    (tmp_path / "sh").mkdir()
    target = tmp_path / link
    os.symlink(tmp_path / ("d" + target.suffix), target)
    out = ["--shards", "2", "-o", f"{tmp_path / 'sh'}/"] if link.startswith("sh/") else ["-o", tmp_path / "out"]
    if "/" not in link:  # --dry-run refuses the single pair's link as the run does (it missed the .idx)
        code, stdout, err = run_cli([tmp_path / "d", "--dry-run", *out, "-T", tmp_path])
        assert code == 1 and f"failed: output: {target}: is a symbolic link".encode() in stdout, stdout
    code, stdout, err = run_cli([tmp_path / "d", "--seed", "1", *out, "-T", tmp_path])
    assert (code, stdout) == (1, b"") and err.count(b"\n") == 1 and b"is a symbolic link" in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["d.bin", "d.idx", "sh", *([link] if "/" not in link else [])])
    assert [p.name for p in (tmp_path / "sh").iterdir()] == (["part-00001.idx"] if "/" in link else [])


@pytest.mark.parametrize("layout", ["pattern shards", "directory shards", "split"])
@pytest.mark.parametrize("what", ["symlink", "fifo"])
def test_a_shards_or_splits_idx_is_checked_before_reading(tmp_path: Path, run_cli, layout: str, what: str) -> None:
    """Only the .bin names of shards and splits were checked up front: a link or FIFO at q_1.idx was
    found at the commit, after the whole run (nothing lost, the work wasted)."""
    write_dataset(tmp_path / "d", make_docs(50, seed=3))
    (tmp_path / "sh").mkdir()
    name, args = {
        "pattern shards": ("q_1.idx", ["--shards", "2", "-o", "q_{}"]),
        "directory shards": ("sh/part-00001.idx", ["--shards", "2", "-o", "sh/"]),
        "split": ("sh/v.idx", ["--split", "t=0.5,v=rest", "-o", "sh/{split}"]),
    }[layout]
    if what == "symlink":
        os.symlink("elsewhere", tmp_path / name)
    else:
        os.mkfifo(tmp_path / name)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    code, out, err = run_cli(["d", "--seed", "1", *args], cwd=tmp_path)
    assert (code, out) == (1, b"") and err.count(b"\n") == 1, err
    assert err.startswith(f"bigshuf: {name}".encode()) and b"bigshuf writes its shards, splits and manifest only as regular files" in err, err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_empty_and_zero_count(tmp_path: Path) -> None:
    src = write_dataset(tmp_path / "e", [])
    bigshuf.shuffle(str(src), str(tmp_path / "o"), seed=1)
    assert read_dataset(tmp_path / "o")[1] == []
    src = write_dataset(tmp_path / "f", make_docs(10))
    bigshuf.shuffle(str(src), str(tmp_path / "z"), seed=1, head_count=0)
    assert read_dataset(tmp_path / "z")[1] == []


def test_directory_of_datasets_and_mixed_directory(tmp_path: Path, run_cli) -> None:
    data = tmp_path / "data"
    data.mkdir()
    a, b = make_docs(30, seed=7), make_docs(40, seed=8)
    write_dataset(data / "a", a)
    write_dataset(data / "b", b)
    code, _, err = run_cli([data, "-o", tmp_path / "all", "--seed", "2"])
    assert code == 0, err
    assert sorted(read_dataset(tmp_path / "all")[1]) == sorted(as_docs(a) + as_docs(b))
    (data / "notes.txt").write_text("a line\n")
    code, _, err = run_cli([data, "-o", tmp_path / "again"])
    assert code == 1 and err == f"bigshuf: {data}: holds both Megatron indexes ({data}/a.idx) and line files ({data}/notes.txt); shuffle them in separate runs, or name the files to use\n".encode()


def test_dry_run_counts_documents(tmp_path: Path, run_cli) -> None:
    write_dataset(tmp_path / "c", make_docs(100, seed=9))
    code, out, err = run_cli([tmp_path / "c", "-o", tmp_path / "o", "--dry-run", "-S", "4K", "-T", tmp_path])
    assert code == 0, err
    assert b"records: 100, " in out and f"output: {tmp_path}/o.bin".encode() in out, out
    assert b"(counted: from the .idx headers)\n" in out, out  # no token is read to count them
    assert not list(tmp_path.glob("o.*"))


def test_a_document_larger_than_the_limit_allows_is_refused_from_the_index(tmp_path: Path, run_cli) -> None:
    """A document the external path could never place (its tokens, or its many empty sequences, past
    ``plan.largest_record``) is refused before any token is read, by the run and by --dry-run alike,
    in one line naming the .idx and the document; one at the bound is shuffled. Before, the run
    scattered it 17 times, past -S, and failed naming no file."""
    # 49128, plan.largest_record at 64K: a document of 1 sequence takes 17 bytes besides its tokens.
    most = plan.block_budget(64 << 10) - plan.META_PER_RECORD
    small = make_docs(200, seed=12, dtype=np.uint8)
    fits = np.zeros(most - 17, np.uint8)
    write_dataset(tmp_path / "fits", [small[0], [fits], *small[1:]], dtype=np.uint8)
    bigshuf.shuffle(str(tmp_path / "fits"), str(tmp_path / "fits_out"), memory="64K", seed=1, tmp_dir=tmp_path)
    assert sorted(read_dataset(tmp_path / "fits_out")[1]) == sorted(as_docs([small[0], [fits], *small[1:]], np.uint8))
    write_dataset(tmp_path / "big", [small[0], [np.zeros(most - 16, np.uint8)], *small[1:]], dtype=np.uint8)
    empty = np.zeros(0, np.uint8)
    write_dataset(tmp_path / "many", [*small, [empty] * 20000], dtype=np.uint8)  # 4 bytes a sequence: 80013
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    for name, doc, size, held in (
        ("big", 1, most + 1, f"{most - 16} of tokens in 1 sequence"), ("many", 200, 80013, "0 of tokens in 20000 sequences"),
    ):
        line = (
            f"bigshuf: {tmp_path}/{name}.idx: document {doc} takes {size} bytes ({held}), more than the {most} bytes "
            "a document may take at this memory limit; raise -S\n"
        ).encode()
        for dry in ([], ["--dry-run"]):
            code, out, err = run_cli([tmp_path / name, "-o", tmp_path / "o", "-S", "64K", "-T", tmp, "--seed", "1", *dry])
            assert (code, err) == (1, line), err
            assert dry or out == b""
            assert dry == [] or out.endswith(b"failed: inputs: " + line[len(b"bigshuf: "):]), out
            assert not list(tmp_path.glob("o.*")) and temp_leftovers(tmp) == []
    with pytest.raises(InputError, match=r"many\.idx: document 200 takes 80013 bytes .* raise memory=$"):
        bigshuf.shuffle(str(tmp_path / "many"), str(tmp_path / "o"), memory="64K", seed=1)


def test_external_run_stays_within_the_limit(tmp_path: Path) -> None:
    """-S 4M over 24 MiB of tokens: the peak over a one-document run stays within the limit and the house slack."""
    from helpers import run_peak

    rng = np.random.default_rng(3)
    per = rng.integers(1, 4, 9000)
    lengths = rng.integers(50, 1283, int(per.sum()))
    docs, at = [], 0
    tokens = rng.integers(0, 60000, int(lengths.sum()), dtype=np.uint16)
    for count in per:
        seqs = []
        for n in lengths[at : at + count]:
            seqs.append(tokens[:n])
            tokens = tokens[n:]
        docs.append(seqs)
        at += count
    write_dataset(tmp_path / "big", docs)
    write_dataset(tmp_path / "one", docs[:1])
    status, base = run_peak([str(tmp_path / "one"), "-o", str(tmp_path / "o1")], tmp_path)
    assert status == 0
    status, peak = run_peak(["-S", "4M", "-T", str(tmp_path), str(tmp_path / "big"), "-o", str(tmp_path / "o2")], tmp_path)
    assert status == 0 and len(read_dataset(tmp_path / "o2")[1]) == 9000
    assert peak <= base + (4 + 48) * (1 << 20), f"peak {peak >> 20} MiB, baseline {base >> 20} MiB"


@pytest.mark.parametrize("modes", [False, True])
def test_batches_sized_and_cut_as_rows_are(tmp_path: Path, modes: bool) -> None:
    """The reader's row sizes, taken from the index, are what the table code measures, and its batches
    are cut where the table code's re-batching would cut them (so it does not copy them again)."""
    from bigshuf.formats.megatron import IndexedInput
    from bigshuf.formats.tables import _rebatch, row_sizes

    docs = make_docs(300, seed=11, modes=modes)
    write_dataset(tmp_path / "c", docs, modes=modes)
    dataset = IndexedInput(str(tmp_path / "c"))
    ours = list(dataset.sized_batches(2000, 40))
    for batch, sizes in ours:
        assert np.array_equal(sizes, row_sizes(batch))
    theirs = list(_rebatch((b for b, _ in ours), 2000, 40))
    assert [b.num_rows for b, _ in ours] == [b.num_rows for b, _ in theirs]
    assert sum(b.num_rows for b, _ in ours) == 300 and len(ours) > 5


def test_kill_during_the_commit_leaves_the_old_pair_or_the_new(tmp_path: Path) -> None:
    """A pair's .bin and .idx are put in place together: a SIGKILL at a step of the commit (the journal
    written, the old files linked aside, one file renamed, both) leaves, once the next run has finished
    or undone it, both old files or both new ones."""
    import os
    import signal
    import subprocess
    import sys

    from bigshuf.storage import tempspace

    write_dataset(tmp_path / "c", make_docs(40, seed=13))
    out = tmp_path / "out"
    out.mkdir()

    def run(env: dict[str, str] | None = None) -> int:
        args = [sys.executable, "-m", "bigshuf", str(tmp_path / "c"), "-o", str(out / "p"), "--seed", "2"]
        return subprocess.run(args, capture_output=True, env={**os.environ, **(env or {})}, timeout=60).returncode

    def pair() -> tuple[bytes, bytes]:
        return (out / "p.bin").read_bytes(), (out / "p.idx").read_bytes()

    assert run() == 0
    new = pair()
    old = (b"old bin", b"old idx")
    for step in (1, 3, 4, 5):
        (out / "p.bin").write_bytes(old[0])
        (out / "p.idx").write_bytes(old[1])
        assert run({"BIGSHUF_TEST_KILL_AT": str(step)}) == -signal.SIGKILL
        tempspace.remove_dead_outputs(str(out))
        assert pair() in (old, new), step
        assert sorted(os.listdir(out)) == ["p.bin", "p.idx"], step


def test_s3_datasets_on_the_local_engine(bucket: Any, tmp_path: Path, run_cli) -> None:
    """Datasets on URLs (moto's S3 API on loopback), named by a glob of their .idx: the same pair as from
    local copies of them, through two passes; an .idx pointing past its .bin: one line, exit 1, nothing written."""
    name = bucket.bucket
    a, b = make_docs(900, seed=3), make_docs(600, seed=4)
    put_datasets(bucket, tmp_path, {"a": a, "b": b})
    options: dict[str, Any] = {"memory": "64K", "seed": 2, "tmp_dir": str(tmp_path), "sync": False, "verify": True}
    stats = bigshuf.shuffle([f"s3://{name}/in/*.idx"], str(tmp_path / "url"), **options)
    bigshuf.shuffle([str(tmp_path / "a"), str(tmp_path / "b.idx")], str(tmp_path / "here"), **options)
    assert stats.records == 1500 and stats.passes == 2, stats
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"url{ext}").read_bytes() == (tmp_path / f"here{ext}").read_bytes()
    assert sorted(read_dataset(tmp_path / "url")[1]) == sorted(as_docs(a) + as_docs(b))
    named = _corrupt(tmp_path / "b", "pointer-past-bin")
    bucket.put(named, f"{name}/bad/b.idx")
    bucket.put(str(tmp_path / "b.bin"), f"{name}/bad/b.bin")
    (tmp_path / "t").mkdir()
    code, stdout, err = run_cli([f"s3://{name}/in/a.idx", f"s3://{name}/bad/b.idx", "-o", tmp_path / "x", "-T", tmp_path / "t"])
    assert code == 1 and stdout == b"" and err.count(b"\n") == 1, err
    assert err.startswith(f"bigshuf: s3://{name}/bad/b.idx: sequence ".encode()) and b"runs past the end of" in err, err
    assert not list(tmp_path.glob("x*")) and list((tmp_path / "t").iterdir()) == []
    # A glob finding datasets is not read as lines (their .bin and .idx were, before): refused, naming the .idx.
    code, stdout, err = run_cli([f"s3://{name}/in/*", "-o", tmp_path / "y", "-T", tmp_path / "t"])
    assert (code, stdout, err.count(b"\n")) == (1, b"", 1), err
    assert err.startswith(f"bigshuf: s3://{name}/in/a.idx: a Megatron index, found by s3://{name}/in/* ".encode()), err
    assert not list(tmp_path.glob("y*")) and list((tmp_path / "t").iterdir()) == []


def test_the_example_in_a_shard_pattern_refusal_is_a_dataset_pattern(tmp_path: Path, run_cli) -> None:
    """``--shards 2 -o x`` suggested ``out/part-{:05d}.jsonl``, which would name ``.jsonl.bin`` files."""
    write_dataset(tmp_path / "d", make_docs(10))
    code, _, err = run_cli([tmp_path / "d", "--shards", "2", "-o", tmp_path / "x"])
    assert (code, err) == (1, b"bigshuf: 2 shards need -o to be a directory or a pattern with {}, like out/part-{:05d}.bin\n")
    assert not list(tmp_path.glob("x*"))
