"""Megatron documents with the options of the line path: a manifest of every .bin/.idx pair (and
--check-manifest, --check-permutation reading datasets as documents), --unique (same tokens and
same sequence lengths), and weighted sources (--source/--rate/--mix, --stratify with --split)."""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from fractions import Fraction
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

import bigshuf
from bigshuf.api import check_manifest
from bigshuf.core import plan
from bigshuf.errors import BigShufError, InputError, UsageError

from test_megatron import PATHS, Doc, as_docs, make_docs, read_dataset, write_dataset
from test_uniformity import assert_uniform


def move_boundary(prefix: Path) -> None:
    """Move the end of the first document of two or more sequences one sequence back: the same tokens
    and sequence lengths, other documents (the pair stays a valid dataset)."""
    idx = Path(f"{prefix}.idx")
    raw = bytearray(idx.read_bytes())
    seqs, entries = struct.unpack_from("<QQ", raw, 18)
    at = 34 + 12 * seqs
    documents = np.frombuffer(bytes(raw), "<i8", entries, at)
    d = int(np.flatnonzero(np.diff(documents) >= 2)[0])
    struct.pack_into("<q", raw, at + 8 * (d + 1), int(documents[d + 1]) - 1)
    idx.write_bytes(bytes(raw))


def test_the_manifest_lists_every_pair_and_is_checked_against_it(tmp_path: Path, run_cli) -> None:
    a, b = make_docs(300, seed=1), make_docs(200, seed=2)
    write_dataset(tmp_path / "a", a)
    write_dataset(tmp_path / "b", b)
    out, manifest = tmp_path / "out", tmp_path / "out" / "m.json"
    bigshuf.shuffle(
        [str(tmp_path / "a"), str(tmp_path / "b.idx")], f"{out}/", shards=3, manifest=str(manifest), verify=True,
        memory="32K", seed=1, tmp_dir=tmp_path, sync=False,
    )
    doc = json.loads(manifest.read_text())
    assert doc["kind"] == "documents" and doc["format"] == {"documents": "megatron", "dtype": "uint16", "modes": False}
    sizes = [(tmp_path / f"{p}.bin").stat().st_size for p in "ab"]
    assert [(i["path"], i["records"], i["bytes"]) for i in doc["inputs"]] == [
        (str(tmp_path / "a.bin"), 300, sizes[0]), (str(tmp_path / "b.bin"), 200, sizes[1]),
    ]
    assert doc["records_read"] == doc["records_written"] == 500
    parts = [read_dataset(out / f"part-0000{i}")[1] for i in range(3)]
    assert sorted(d for p in parts for d in p) == sorted(as_docs(a) + as_docs(b))
    for i, (entry, part) in enumerate(zip(doc["outputs"], parts)):
        size = (out / f"part-0000{i}.bin").stat().st_size
        assert entry["path"] == f"part-0000{i}.bin" and entry["records"] == entry["fingerprint"]["records"] == len(part)
        assert entry["bytes"] == entry["file_bytes"] == size == sum(len(s) for d in part for s in d[0])
    assert check_manifest(manifest) == ([], f"3 output file(s) match {manifest}: 500 documents, {sum(sizes)} bytes of tokens")
    # The same tokens cut into other documents; an index through a symlink; the manifest's dtype a lie.
    move_boundary(out / "part-00000")
    os.rename(out / "part-00001.idx", out / "real.idx")
    os.symlink(out / "real.idx", out / "part-00001.idx")
    problems, _ = check_manifest(manifest)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{out}/part-00000.bin: records differ from those the manifest lists")
    assert problems[1].startswith(f"{out}/part-00001.idx: ")
    doc["format"]["dtype"] = "int32"
    manifest.write_text(json.dumps(doc))
    code, _, err = run_cli(["--check-manifest", manifest])
    assert code == 1 and f"bigshuf: {out}/part-00002.idx: tokens are uint16 without modes, the manifest says int32 without modes\n".encode() in err
    doc["format"] = {"documents": "megatron", "dtype": "uint16"}
    manifest.write_text(json.dumps(doc))
    with pytest.raises(BigShufError, match="'format' of documents needs 'documents': 'megatron', a token 'dtype' and 'modes'"):
        check_manifest(manifest)


def test_a_spoiled_pair_or_a_path_that_is_no_bin_is_one_problem_each(tmp_path: Path) -> None:
    """--check-manifest reads a listed pair as an input is read: a spoiled index is one problem naming
    it, and a listed path that is not a .bin is one problem, not a crash."""
    write_dataset(tmp_path / "a", make_docs(40, seed=11))
    out = tmp_path / "o"
    out.mkdir()
    bigshuf.shuffle(str(tmp_path / "a"), f"{out}/", shards=2, manifest=str(out / "m.json"), seed=1, sync=False)
    raw = bytearray((out / "part-00000.idx").read_bytes())
    raw[:9] = b"NOTMMIDX\x00"
    (out / "part-00000.idx").write_bytes(bytes(raw))
    doc = json.loads((out / "m.json").read_text())
    doc["outputs"][1].update(path="part-00001.idx", file_bytes=None)
    (out / "m.json").write_text(json.dumps(doc))
    problems, _ = check_manifest(out / "m.json")
    assert problems == [
        f"{out}/part-00000.idx: not a Megatron index (bad magic: b'NOTMMIDX\\x00')",
        f"{out}/part-00001.idx: not the .bin of a Megatron dataset",
    ], problems


@pytest.mark.parametrize("name,why", [
    ("a.bin", "a manifest named as a dataset file would be taken for one"),
    ("out.idx", "a manifest named as a dataset file would be taken for one"),
    ("link.json", "the manifest would be written over an input"),
    ("link.json --dry-run", "the manifest would be written over an input"),
    ("a", "the manifest would take the name of dataset"),  # a later run naming a would read the JSON as lines
    ("out", "the manifest would take the name of dataset"),
])
def test_a_manifest_over_a_dataset_file_is_refused(tmp_path: Path, run_cli, name: str, why: str) -> None:
    write_dataset(tmp_path / "a", make_docs(20))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    os.link(tmp_path / "a.idx", tmp_path / "link.json")
    if name.endswith("--dry-run"):  # the plan checks the manifest against both files of each pair, as the run does
        code, _, err = run_cli([tmp_path / "a", "-o", tmp_path / "out", "--manifest", tmp_path / "link.json", "--dry-run"])
        assert code == 1 and err == f"bigshuf: {tmp_path}/link.json: {why} ({tmp_path}/a.idx)\n".encode(), err
    else:
        with pytest.raises(BigShufError, match=why):
            bigshuf.shuffle(str(tmp_path / "a"), str(tmp_path / "out"), manifest=str(tmp_path / name), seed=1)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "link.json"} == before


def test_check_permutation_compares_documents(tmp_path: Path, run_cli) -> None:
    from bigshuf import check_permutation

    a, b = make_docs(120, seed=3, modes=True), make_docs(80, seed=4, modes=True)
    write_dataset(tmp_path / "a", a, modes=True)
    write_dataset(tmp_path / "b", b, modes=True)
    (tmp_path / "o").mkdir()
    bigshuf.shuffle([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "o/"), shards=2, seed=2, sync=False)
    got_in, got_out = check_permutation([tmp_path / "a.idx", tmp_path / "b.bin"], [tmp_path / "o"])
    tokens = sum((tmp_path / f"{p}.bin").stat().st_size for p in "ab")
    assert got_in == got_out and (got_in.records, got_in.bytes) == (200, tokens)
    move_boundary(tmp_path / "o" / "part-00001")
    code, _, err = run_cli(["--check-permutation", tmp_path / "a", tmp_path / "b", "--against", tmp_path / "o"])
    assert code == 1 and err.startswith(b"bigshuf: records differ: inputs 200 documents, ") and err.count(b"\n") == 1, err
    got_in, got_out = check_permutation([tmp_path / "a", tmp_path / "b"], [tmp_path / "o"])
    assert (got_in.records, got_in.bytes) == (got_out.records, got_out.bytes) and got_in.digest != got_out.digest
    (tmp_path / "t.txt").write_bytes(b"line\n")
    with pytest.raises(UsageError, match=f"^{tmp_path}/t.txt is not a Megatron dataset and {tmp_path}/a is: "):
        check_permutation([tmp_path / "a"], [tmp_path / "t.txt"])
    with pytest.raises(InputError, match=f"^{tmp_path}/missing: No such file or directory \\(nor {tmp_path}/missing.idx\\)$"):
        check_permutation([tmp_path / "a"], [tmp_path / "missing"])
    with pytest.raises(UsageError, match="apply to lines, not to Megatron documents"):
        check_permutation([tmp_path / "a"], [tmp_path / "o"], header=1)


def _resplit(doc: list[np.ndarray]) -> list[np.ndarray]:
    """The same tokens as ``doc`` in other sequences: joined into one, or the one cut in two."""
    joined = np.concatenate(doc)
    return [joined] if len(doc) > 1 else [joined[:1], joined[1:]]


@pytest.mark.parametrize("label,memory,cap,passes", PATHS)
def test_unique_keeps_one_of_each_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None, passes: set[int] | None
) -> None:
    """Copies (same tokens, same sequence lengths) are dropped, within a dataset and across two; the same
    tokens cut into other sequences are another document."""
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    base = make_docs(300, seed=5, most=20)
    copies = [base[i] for i in range(0, 300, 6)]  # 50 copies in the other dataset
    resplit = [_resplit(base[i]) for i in range(1, 300, 15) if len(np.concatenate(base[i])) > 1]
    write_dataset(tmp_path / "a", base + base[:10])  # 10 copies within the dataset
    write_dataset(tmp_path / "b", copies + resplit)
    manifest = tmp_path / "m.json"
    stats = bigshuf.shuffle(
        [str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "u"), unique=True, verify=True, memory=memory, seed=4,
        tmp_dir=tmp_path, sync=False, manifest=str(manifest),
    )
    got = read_dataset(tmp_path / "u")[1]
    assert sorted(got) == sorted(as_docs(base) + as_docs(resplit)) and len(set(got)) == len(got) == 300 + len(resplit)
    assert stats.duplicates == 60 and json.loads(manifest.read_text())["duplicates"] == 60
    # A dedup pass of hash buckets before the shuffle's two passes; more with two buckets a level.
    assert stats.passes == 1 if label == "in-memory" else stats.passes == 3 if label == "external" else stats.passes >= 4, stats


@pytest.mark.parametrize("label,memory", [("in-memory", "64M"), ("external", "2K")])
def test_unique_documents_in_uniform_order(tmp_path: Path, label: str, memory: str) -> None:
    """Documents 0, 2, 0, 1, 2, 2 of 20 tokens: the 3 kept come in each of their 6 orders equally often
    (20 runs an order expected); at 2K through a dedup pass of hash buckets, then the shuffle's two."""
    docs = [[np.full(20, i, np.uint16)] for i in (0, 2, 0, 1, 2, 2)]
    src = str(write_dataset(tmp_path / "dup", docs))
    counts: Counter[tuple[int, ...]] = Counter()
    passes: Counter[int] = Counter()
    for seed in range(6 * 20):
        stats = bigshuf.shuffle(src, str(tmp_path / "o"), unique=True, memory=memory, seed=seed, tmp_dir=tmp_path, sync=False)
        got = read_dataset(tmp_path / "o")[1]
        assert sorted(got) == sorted(as_docs(docs[:2] + docs[3:4])) and stats.duplicates == 3
        counts[tuple(d[0][0][0] for d in got)] += 1
        passes[stats.passes] += 1
    assert_uniform(counts, list(permutations(range(3))), f"--unique, {label}")
    assert (set(passes) == {1}) if label == "in-memory" else (min(passes) == 3), passes


def _source_of(docs: list[Doc], web: list[Doc]) -> Counter:
    """How many documents of ``docs`` come from ``web`` and how many from elsewhere."""
    known = set(web)
    return Counter("web" if d in known else "code" for d in docs)


@pytest.mark.parametrize("memory", ["64M", "16K"])
def test_weighted_sources_of_documents(tmp_path: Path, memory: str) -> None:
    """--rate: each source's documents taken floor(r) times and a uniform share once more, in memory
    and on two passes; every copy byte-identical; the manifest names each source's counts."""
    web, code = make_docs(300, seed=6), make_docs(200, seed=7)
    write_dataset(tmp_path / "web", web)
    write_dataset(tmp_path / "code", code)
    stats = bigshuf.shuffle(
        None, str(tmp_path / "o"), sources={"web": str(tmp_path / "web"), "code": str(tmp_path / "code.idx")},
        rates={"web": "0.5", "code": "2.5"}, verify=True, memory=memory, seed=3, tmp_dir=tmp_path, sync=False,
        manifest=str(tmp_path / "m.json"),
    )
    got = read_dataset(tmp_path / "o")[1]
    assert (stats.passes == 1) == (memory == "64M"), stats
    web_docs, code_docs = set(as_docs(web)), Counter(as_docs(code))
    from_web = [d for d in got if d in web_docs]
    from_code = Counter(d for d in got if d in code_docs)
    assert len(from_web) == len(set(from_web)) == 150 and sum(from_code.values()) == 500 and len(got) == 650
    assert set(from_code) == set(code_docs) and Counter(from_code.values()) == {2: 100, 3: 100}
    sources = json.loads((tmp_path / "m.json").read_text())["sources"]
    assert [(s["name"], s["read"], s["written"]) for s in sources] == [("web", 300, 150), ("code", 200, 500)]
    assert [(s.name, s.read, s.written) for s in stats.sources] == [("web", 300, 150), ("code", 200, 500)]


def test_mix_by_token_bytes_and_stratified_split(tmp_path: Path, run_cli) -> None:
    """--mix --by bytes weighs sources by their tokens' bytes (from the indexes: no counting pass, as
    --dry-run says); --stratify gives each split its share of every source."""
    web, code = make_docs(300, seed=8, most=10), make_docs(100, seed=9, most=60)
    write_dataset(tmp_path / "web", web)
    write_dataset(tmp_path / "code", code)
    sources = {"web": str(tmp_path / "web"), "code": str(tmp_path / "code")}
    args = ["--source", f"web={tmp_path}/web", "--source", f"code={tmp_path}/code", "--seed", "1", "-T", tmp_path]
    mix = ["--mix", "web=0.5,code=0.5", "--total", "40K", "--by", "bytes", "-o", tmp_path / "m", "-S", "16K", "--dry-run"]
    code_, out, err = run_cli([*args, *mix])
    settings = {"sources": sources, "seed": 1, "tmp_dir": tmp_path, "memory": "16K", "verify": True, "sync": False}
    stats = bigshuf.shuffle(None, str(tmp_path / "m"), mix={"web": 0.5, "code": 0.5}, total="40K", by="bytes", **settings)
    got = read_dataset(tmp_path / "m")[1]
    assert stats.records == len(got) and stats.passes == 2
    assert code_ == 0 and b"counting pass" not in out and f"; {len(got):,} records to shuffle".encode() in out, out + err
    stored = sum((tmp_path / f"{p}.{e}").stat().st_size for p in ("web", "code") for e in ("bin", "idx"))
    assert out.startswith(f"inputs: 2 datasets, {plan.format_size(stored)}\n".encode()), out
    web_set = set(as_docs(web))
    tokens: Counter = Counter()
    for d in got:
        tokens["web" if d in web_set else "code"] += sum(len(s) for s in d[0])
    assert all(abs(tokens[s] - 20480) < 400 for s in ("web", "code")), tokens
    bigshuf.shuffle(None, f"{tmp_path}/s/{{split}}", stratify=True, split="valid=0.1,train=rest", **settings)
    valid, train = (read_dataset(tmp_path / "s" / name)[1] for name in ("valid", "train"))
    assert sorted(valid + train) == sorted(as_docs(web) + as_docs(code))
    assert _source_of(valid, as_docs(web)) == {"web": 30, "code": 10} and _source_of(train, as_docs(web)) == {"web": 270, "code": 90}


def test_a_dataset_in_two_sources_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", make_docs(20))
    for sources, where in (
        ({"web": str(tmp_path / "a"), "code": str(tmp_path / "a.bin")}, "in source 'web' and in 'code'"),
        ({"web": [str(tmp_path / "a.idx"), str(tmp_path / "a")]}, "twice in source 'web'"),
    ):
        with pytest.raises(UsageError, match=f"^{tmp_path}/a.idx: named {where}; a dataset may be in one source, once$"):
            bigshuf.shuffle(None, str(tmp_path / "o"), sources=sources, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.idx"]


def test_fractional_rate_picks_documents_uniformly(tmp_path: Path) -> None:
    """A rate of 2/3 over three documents on two passes (picks drawn batch by batch): each of the
    six ordered pairs equally likely."""
    docs = [[np.full(150, i, np.uint16)] for i in range(3)]
    src = str(write_dataset(tmp_path / "three", docs))
    counts: Counter = Counter()
    passes = set()
    for seed in range(6 * 20):
        stats = bigshuf.shuffle(
            None, str(tmp_path / "o"), sources={"s": src}, rates={"s": Fraction(2, 3)}, memory="1K", seed=seed, tmp_dir=tmp_path,
            sync=False,
        )
        counts[tuple(d[0][0][0] for d in read_dataset(tmp_path / "o")[1])] += 1
        passes.add(stats.passes)
    assert min(passes) == 2, passes
    assert_uniform(counts, list(permutations(range(3), 2)), "rate 2/3, -S 1K")


def test_sources_of_datasets_get_the_pool_rows_get(tmp_path: Path) -> None:
    """The command gives Arrow's jemalloc pool to runs of rows, which hands memory back sooner; it looked
    at FILE operands only, so a run of --source datasets kept the default pool (at -S 16M on 67 MB of
    tokens: 165-189 MB peak RSS against 110 MB for the same datasets as operands; 112 MB now)."""
    import subprocess
    import sys

    write_dataset(tmp_path / "a", make_docs(10))
    script = (
        "import sys; from bigshuf.cli import main; "
        f"main(['--source', 'w={tmp_path}/a', '-o', '{tmp_path}/o', '--dry-run']); "
        "import pyarrow; print(pyarrow.default_memory_pool().backend_name, file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env, timeout=60)
    assert done.stderr.decode().splitlines()[-1] == "jemalloc", done.stderr


def _first_copies(*sources: list[Doc]) -> list[list[Doc]]:
    """Each source's documents that are the first of their kind in input order, sources in order."""
    seen: set[Doc] = set()
    kept = []
    for docs in sources:
        kept.append([d for d in docs if d not in seen and not seen.add(d)])  # type: ignore[func-returns-value]
    return kept


@pytest.mark.parametrize("label,memory,cap,passes", PATHS)
def test_unique_with_sources_keeps_the_first_copy_and_weighs_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None, passes: set[int] | None
) -> None:
    """--unique with --source over datasets: copies dropped before the rates, the first in source order
    kept (a document web and code both hold is web's), each source's read, dropped and written exact,
    in the stats and the manifest; a --mix and --stratify are solved from the documents left."""
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    web, code = make_docs(200, seed=11, most=30), make_docs(100, seed=12, most=30)
    web_in = web + web[:20]  # 20 copies within web
    code_in = code + [web[i] for i in range(0, 200, 10)] + code[:5]  # 20 of web's documents, 5 of its own
    write_dataset(tmp_path / "web-0", web_in[:150])
    write_dataset(tmp_path / "web-1", web_in[150:])
    write_dataset(tmp_path / "code", code_in)
    kept_web, kept_code = _first_copies(as_docs(web_in), as_docs(code_in))
    assert len(kept_web) == 200 and len(kept_code) == 100
    sources = {"web": [str(tmp_path / "web-0"), str(tmp_path / "web-1")], "code": str(tmp_path / "code")}
    common = dict(sources=sources, unique=True, memory=memory, tmp_dir=tmp_path, sync=False, verify=True)
    stats = bigshuf.shuffle([], str(tmp_path / "o"), rates={"web": 1, "code": 2}, seed=4, manifest=str(tmp_path / "m.json"), **common)  # type: ignore[arg-type]
    assert Counter(read_dataset(tmp_path / "o")[1]) == Counter(kept_web + 2 * kept_code)
    want = [("web", 220, 20, 200), ("code", 125, 25, 200)]  # code's 20 copies of web's documents are dropped from code
    assert [(s.name, s.read, s.dropped, s.written) for s in stats.sources] == want
    assert stats.duplicates == 45 and stats.records == 400
    assert stats.passes == 1 if label == "in-memory" else stats.passes == 3 if label == "external" else stats.passes >= 4, stats
    doc = json.loads((tmp_path / "m.json").read_text())
    assert [(s["name"], s["read"], s["dropped"], s["written"]) for s in doc["sources"]] == want
    assert doc["duplicates"] == stats.duplicates and check_manifest(tmp_path / "m.json")[0] == []
    # --mix of the documents left: 60 of each, each at most once, 12 of each in the valid split.
    stats = bigshuf.shuffle(
        [], f"{tmp_path}/s/{{split}}", mix={"web": 0.5, "code": 0.5}, total=120, split="valid=0.2,train=rest",
        stratify=True, seed=6, **common,  # type: ignore[arg-type]
    )
    valid, train = (read_dataset(tmp_path / "s" / name)[1] for name in ("valid", "train"))
    assert len(set(valid + train)) == 120 and set(valid + train) <= set(kept_web + kept_code)
    web_set = set(kept_web)
    assert Counter(d in web_set for d in valid) == {True: 12, False: 12} and len(train) == 96
    assert [(s.name, s.dropped, s.written) for s in stats.sources] == [("web", 20, 60), ("code", 25, 60)]
    # --by bytes: each source's tokens left (not the documents' row sizes) make up its share.
    stats = bigshuf.shuffle([], str(tmp_path / "b"), mix={"web": 0.5, "code": 0.5}, total=4000, by="bytes", seed=7, **common)  # type: ignore[arg-type]
    tokens = [sum(len(seq) for d in kept for seq in d[0]) for kept in (kept_web, kept_code)]
    assert [s.rate for s in stats.sources] == [float(Fraction(2000, t)) for t in tokens]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["code.bin", "code.idx", "web-0.bin", "web-0.idx", "web-1.bin", "web-1.idx", "o.bin", "o.idx", "b.bin", "b.idx", "m.json", "s"]
    )
