"""The training-mix options together, as a recipe combines them: -n P% with --split, --unique
with -n P%, --split and --manifest, weighted sources with all of them, and what --dry-run says.

Each part has its own tests (test_fractions, formats/test_unique, formats/test_sources,
storage/test_splits, storage/test_manifest, test_dry_run); these check that they compose: the
counts resolve in order (dedup, then the multiset, then -n, then the splits) and the manifest
records what the run did, so --check-manifest holds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import bigshuf
from bigshuf.api import check_manifest, plan_shuffle
from helpers import make_records, split_records, write_records

PATHS = [("in-memory", "64M"), ("external", "16K")]


@pytest.mark.parametrize("label,memory", PATHS)
def test_share_then_splits_are_pieces_of_the_sample(tmp_path: Path, label: str, memory: str) -> None:
    records = make_records(2001, seed=3, min_len=10, max_len=40)
    src = write_records(tmp_path / "in.txt", records)
    sample = tmp_path / "sample.txt"
    bigshuf.shuffle(src, sample, memory=memory, seed=4, head_count="10%", tmp_dir=tmp_path, sync=False)
    bigshuf.shuffle(src, str(tmp_path / "out" / "{split}.txt"), memory=memory, seed=4, head_count="10%",
                    split="valid=0.25,train=rest", tmp_dir=tmp_path, sync=False)
    valid, train = ((tmp_path / "out" / f"{name}.txt").read_bytes() for name in ("valid", "train"))
    assert [len(split_records(valid)), len(split_records(train))] == [50, 150]  # 200 = round(200.1)
    assert valid + train == sample.read_bytes()


@pytest.mark.parametrize("label,memory", PATHS)
def test_unique_then_share_then_splits_with_a_manifest(tmp_path: Path, label: str, memory: str) -> None:
    distinct = make_records(600, seed=5, min_len=10, max_len=40)
    assert len(set(distinct)) == 600
    src = write_records(tmp_path / "in.txt", distinct + distinct[:300] + distinct[:100])  # 400 copies
    manifest = tmp_path / "out" / "manifest.json"
    stats = bigshuf.shuffle(src, str(tmp_path / "out" / "{split}.txt"), memory=memory, seed=6, unique=True,
                            head_count="50%", split="a=100,b=rest", manifest=manifest, tmp_dir=tmp_path, sync=False)
    assert stats.duplicates == 400 and stats.records == 300
    got = [split_records((tmp_path / "out" / f"{n}.txt").read_bytes()) for n in ("a", "b")]
    assert [len(g) for g in got] == [100, 200]
    written = got[0] + got[1]
    assert len(set(written)) == 300 and set(written) <= set(distinct)
    problems, _summary = check_manifest(manifest)
    assert problems == []
    doc = json.loads(manifest.read_text())
    assert (doc["records_read"], doc["duplicates"], doc["records_shuffled"], doc["head_count"]) == (1000, 400, 600, 300)
    assert doc["head_share"] == "50%" and doc["unique"] is True


@pytest.mark.parametrize("label,memory", PATHS)
def test_sources_with_a_share_splits_and_a_manifest(tmp_path: Path, label: str, memory: str) -> None:
    web = write_records(tmp_path / "web.txt", [b"web-%d" % i for i in range(1000)])
    code = write_records(tmp_path / "code.txt", [b"code-%d" % i for i in range(300)])
    manifest = tmp_path / "m" / "manifest.json"
    stats = bigshuf.shuffle(
        sources={"web": str(web), "code": str(code)}, rates={"web": 0.5, "code": 2}, output=str(tmp_path / "o" / "{split}.txt"),
        memory=memory, seed=7, head_count="10%", split="valid=10,train=rest", manifest=manifest, tmp_dir=tmp_path, sync=False,
    )
    assert stats.records == 110  # 10% of 500 + 600
    got = [split_records((tmp_path / "o" / f"{n}.txt").read_bytes()) for n in ("valid", "train")]
    assert [len(g) for g in got] == [10, 100]
    counts = Counter(got[0] + got[1])
    assert all(r.startswith(b"web-") and c == 1 or r.startswith(b"code-") and c <= 2 for r, c in counts.items())
    problems, _summary = check_manifest(manifest)
    assert problems == []
    doc = json.loads(manifest.read_text())
    assert doc["records_shuffled"] == 1100 and doc["head_count"] == 110
    assert [(s["name"], s["read"], s["rate"], s["written"]) for s in doc["sources"]] == [("web", 1000, 0.5, 500), ("code", 300, 2.0, 600)]
    assert doc["sources"][0]["files"] == [str(web)]


def test_manifest_check_catches_a_wrong_count_of_records_shuffled(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", [b"%d" % i for i in range(100)])
    manifest = tmp_path / "manifest.json"
    bigshuf.shuffle(src, tmp_path / "out.txt", seed=1, head_count="10%", manifest=manifest, sync=False)
    assert check_manifest(manifest)[0] == []
    doc = json.loads(manifest.read_text())
    doc["records_shuffled"], doc["head_count"] = 50, None  # as if the run had no -n and shuffled 50
    manifest.write_text(json.dumps(doc))
    problems = check_manifest(manifest)[0]
    assert len(problems) == 1 and "10 records written, but 50 were to be of the 50 shuffled" in problems[0]


def plan_lines(found: object) -> dict[str, str]:
    """A plan's ``name: value`` lines as the library renders them."""
    text = found.render()  # type: ignore[attr-defined]
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def test_dry_run_says_what_the_mix_options_add(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", [b"%d" % i for i in range(1000)])
    code = write_records(tmp_path / "code.txt", [b"c%d" % i for i in range(10)])
    lines = plan_lines(plan_shuffle(src, head_count="10%"))
    assert lines["records written"] == "100 (head_count= 10%)"
    lines = plan_lines(plan_shuffle(src, head_count="10%", unique=True))
    assert lines["records written"] == "at most 100 (head_count= 10%)" and "unique=True" in lines["duplicates"]
    lines = plan_lines(plan_shuffle((), sources={"web": str(src), "code": str(code)}, rates={"web": 0.5}))
    # Inputs this small are read whole by the plan, so the multiset is counted: 500 + 10, as the run writes.
    assert lines["sources"] == "web 1 file rate 0.5, code 1 file rate 1; 510 records to shuffle; a counting pass reads every input first"
    assert "records written" not in lines
    before = sorted(p.name for p in tmp_path.iterdir())
    found = plan_shuffle(src, str(tmp_path / "new" / "{split}.txt"), split="a=1,b=rest", manifest=tmp_path / "new" / "m.json")
    assert found.ok and plan_lines(found)["output"].endswith("(splits a=1,b=rest: a 1, b 999 records)")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
