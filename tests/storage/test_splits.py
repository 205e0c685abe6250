"""--split: exact counts on every path, the splits concatenated in order are byte for byte the plain
seeded shuffle (consecutive pieces of one permutation), fractions resolved by largest remainder,
refusals in one line, and which records a split receives is uniform."""

from __future__ import annotations

import itertools
import re
import os
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

import test_uniformity
from helpers import make_records, split_records, write_records

import bigshuf
from bigshuf.core import plan
from bigshuf.storage.layout import parse_split, split_counts

#: -S, a bucket cap and the passes of the in-memory, external and recursive paths on 3000 records
#: of up to 80 bytes (two buckets a pass cannot split them to fit in 4 KiB at once).
PATHS = [("64M", None, 1), ("16K", None, 2), ("4K", 2, 3)]


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bigshuf", *args], capture_output=True, timeout=120)


SPECS = [
    ("valid=100,test=100,train=rest", [100, 100, 2800]),
    ("train=0.98,valid=0.01,test=0.01", [2940, 30, 30]),
    ("a=0.5,b=7,c=rest", [1500, 7, 1493]),
]


# Every spec in memory and external; the slow recursive path (5 s a run) with one.
@pytest.mark.parametrize("memory,cap,passes,spec,counts", [
    *(path + spec for path in PATHS[:2] for spec in SPECS), PATHS[2] + SPECS[2],
])
def test_splits_are_consecutive_pieces_of_the_plain_shuffle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str, cap: int | None, passes: int, spec: str, counts: list[int]
) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    src = write_records(tmp_path / "in", make_records(3000, seed=4))
    plain = tmp_path / "plain"
    stats = bigshuf.shuffle(src, plain, memory=memory, seed=9, tmp_dir=tmp_path)
    assert stats.passes == passes if passes < 3 else stats.passes >= 3, stats
    split = bigshuf.shuffle(src, str(tmp_path / "{split}.txt"), memory=memory, seed=9, tmp_dir=tmp_path, split=spec)
    names = [part.split("=")[0] for part in spec.split(",")]
    pieces = [(tmp_path / f"{name}.txt").read_bytes() for name in names]
    assert [len(split_records(p)) for p in pieces] == counts
    assert b"".join(pieces) == plain.read_bytes()
    assert split.records == 3000


@pytest.mark.parametrize("memory", ["64M", "16K"])
def test_head_count_applies_before_splitting(tmp_path: Path, memory: str) -> None:
    src = write_records(tmp_path / "in", make_records(3000, seed=5))
    bigshuf.shuffle(src, tmp_path / "plain", memory=memory, seed=2, head_count=200, tmp_dir=tmp_path)
    bigshuf.shuffle(src, str(tmp_path / "{split}"), memory=memory, seed=2, head_count=200, split="v=0.25,t=rest", tmp_dir=tmp_path)
    v, t = (tmp_path / "v").read_bytes(), (tmp_path / "t").read_bytes()
    assert (len(split_records(v)), len(split_records(t))) == (50, 150)
    assert v + t == (tmp_path / "plain").read_bytes()


@pytest.mark.parametrize("memory,cap,passes", PATHS[:2])
def test_splits_sharded_within_each_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str, cap: int | None, passes: int) -> None:
    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    src = write_records(tmp_path / "in", make_records(3000, seed=6))
    bigshuf.shuffle(src, tmp_path / "plain", memory=memory, seed=3, tmp_dir=tmp_path, compress="zstd")
    target = str(tmp_path / "out" / "{split}" / "part-{:05d}.txt.zst")
    bigshuf.shuffle(src, target, memory=memory, seed=3, tmp_dir=tmp_path, split="valid=0.1,train=rest", shards=3)
    import zstandard

    got = b""
    for name, count in (("valid", 300), ("train", 2700)):
        files = sorted((tmp_path / "out" / name).iterdir())
        assert [f.name for f in files] == [f"part-{i:05d}.txt.zst" for i in range(3)]
        data = [zstandard.ZstdDecompressor().decompress(f.read_bytes(), max_output_size=1 << 24) for f in files]
        assert [len(split_records(d)) for d in data] == [count // 3] * 3
        got += b"".join(data)
    plain = zstandard.ZstdDecompressor().decompress((tmp_path / "plain").read_bytes(), max_output_size=1 << 24)
    assert got == plain


def test_an_empty_split_still_gets_its_file(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(10, seed=1))
    bigshuf.shuffle(src, str(tmp_path / "{split}"), seed=1, split="a=10,b=rest")
    assert len(split_records((tmp_path / "a").read_bytes())) == 10
    assert (tmp_path / "b").read_bytes() == b""


def test_largest_remainder_sums_exactly_to_the_total() -> None:
    parts = parse_split("a=0.333,b=0.333,c=0.334")
    for total in range(0, 50):
        counts = split_counts(parts, total)
        assert sum(counts) == total
        for c, f in zip(counts, ("0.333", "0.333", "0.334")):
            assert abs(c - Fraction(f) * total) < 1
    assert split_counts(parse_split("a=0.5,b=0.5"), 3) == [2, 1]  # the tie goes to the earlier split
    assert split_counts(parse_split("a=0.1,r=rest,b=0.1"), 15) == [2, 12, 1]


@pytest.mark.parametrize("spec,message", [
    ("a=0.5,b=0.4", "add up to 0.9, not 1"),
    ("a=0.7,b=0.6,c=rest", "more than 1"),
    ("a=rest,b=rest", "only one split may be 'rest'"),
    ("a=1,a=rest", "named twice"),
    ("../x=rest", "invalid --split part"),
    # Refused as the message said they were allowed (found by a new-user test): a hidden file, an option's look.
    (".a=0.5,b=rest", "invalid --split part '.a=0.5': use NAME=COUNT, NAME=FRACTION or NAME=rest (names of letters, digits, _ . -, not starting with . or -)"),
    ("a=0.5,-b=rest", "invalid --split part '-b=rest'"),
    ("a=-1,b=rest", "invalid --split value for 'a'"),
    ("a=1.5,b=rest", "invalid --split value for 'a'"),
    # One spelling of numbers for every mix option: "1." is neither the count 1 nor the fraction 1.0.
    ("a=1.,b=rest", "invalid --split value for 'a': '1.' (a record count such as 100, a fraction up to 1 with digits after its dot"),
    ("a=.5,b=rest", "invalid --split value for 'a': '.5'"),
    ("a=1e-1,b=rest", "invalid --split value for 'a': '1e-1'"),
    ("a=1/2,b=rest", "invalid --split value for 'a': '1/2'"),
    ("a=\u00b2,b=rest", "invalid --split value for 'a'"),
])
def test_malformed_splits_are_one_line(tmp_path: Path, spec: str, message: str) -> None:
    src = write_records(tmp_path / "in", make_records(10, seed=1))
    proc = cli(str(src), "--split", spec, "-o", str(tmp_path / "{split}"))
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1 and message.encode() in proc.stderr, proc.stderr


def test_a_count_is_an_integer_and_a_fraction_has_its_dot(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", [b"%d" % i for i in range(10)])
    for value, first in (("1", 1), ("1.0", 10), ("0.50", 5)):
        proc = cli(str(src), "--split", f"a={value},b=rest", "-o", str(tmp_path / "{split}"))
        assert proc.returncode == 0, proc.stderr
        assert (len((tmp_path / "a").read_bytes().split()), len((tmp_path / "b").read_bytes().split())) == (first, 10 - first)


def test_a_count_larger_than_the_total_names_the_split_and_writes_nothing(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(10, seed=1))
    (tmp_path / "train").write_bytes(b"old\n")
    proc = cli(str(src), "--split", "valid=4,test=7,train=rest", "-o", str(tmp_path / "{split}"))
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1 and b"split 'test' needs 7" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "train"]
    assert (tmp_path / "train").read_bytes() == b"old\n"


@pytest.mark.parametrize("args,message", [
    (["--split", "a=rest", "-o", "out"], "needs -o with a {split} placeholder"),
    (["--split", "a=rest"], "needs -o with a {split} placeholder"),
    (["--split", "a=rest", "-o", "{split}", "-r"], "--split needs -n with --repeat"),
])
def test_split_refusals_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    src = write_records(tmp_path / "in", make_records(10, seed=1))
    proc = cli(str(src), *args)
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1 and message.encode() in proc.stderr, proc.stderr


@pytest.mark.parametrize("layout", [["--split", "v=0.1,t=rest", "-o", "{split}.txt"], ["--shard-records", "50", "-o", "d/"],
                                    ["--manifest", "m.json", "-o", "x.txt"]])
def test_repeat_with_a_share_of_the_records_cuts_known_outputs(tmp_path: Path, layout: list[str]) -> None:
    """``-r -n 10%`` is 10% of N draws, a known count: these layouts said "needs -n with --repeat"
    although -n was given (its share was not taken as one; found by review). They hold the draws
    of the plain run, in order."""
    src = write_records(tmp_path / "in", [b"%d" % i for i in range(1300)])
    plain = cli(str(src), "-r", "-n", "10%", "--seed", "1").stdout
    assert len(plain.splitlines()) == 130
    layout = [f"{tmp_path}/{a}" if a.endswith(("/", ".txt", ".json")) else a for a in layout]
    proc = cli(str(src), "-r", "-n", "10%", "--seed", "1", *layout)
    assert (proc.returncode, proc.stderr) == (0, b"")
    if "--split" in layout:
        written = [tmp_path / "v.txt", tmp_path / "t.txt"]
    elif "--shard-records" in layout:
        written = sorted((tmp_path / "d").iterdir())
    else:
        written = [tmp_path / "x.txt"]
    assert b"".join(p.read_bytes() for p in written) == plain


@pytest.mark.parametrize("pattern", ["{split}/{:05d}.txt", "{split}-{}.txt", "{0}/{split}.txt"])
def test_a_shard_field_without_a_shard_option_is_refused(tmp_path: Path, pattern: str) -> None:
    """It was written as a literal file name ('{:05d}.txt' in each split's directory)."""
    src = write_records(tmp_path / "in", make_records(10, seed=1))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    proc = cli(str(src), "--split", "a=3,b=rest", "-o", str(tmp_path / pattern))
    field = pattern.replace("{split}", "").split("}")[0].split("{")[1]
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode() == (
        f"bigshuf: -o '{tmp_path / pattern}' numbers shards with '{{{field}}}', but no shard option is given: "
        f"add --shards, --shard-size or --shard-records, or take '{{{field}}}' out\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "in"] and not os.listdir(tmp_path / "a")
    assert cli(str(src), "--split", "a=3,b=rest", "-o", str(tmp_path / pattern), "--shard-records", "5").returncode == 0


def test_library_refusal_words_the_keyword(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in", make_records(10, seed=1))
    with pytest.raises(bigshuf.UsageError, match="split= needs output= with a {split} placeholder"):
        bigshuf.shuffle(src, tmp_path / "out", split="a=rest")


def test_which_records_a_split_receives_is_uniform(tmp_path: Path) -> None:
    # 4 records, a split of 2: each of the 6 pairs is equally likely, and so is the order within it.
    src = write_records(tmp_path / "in", [b"a", b"b", b"c", b"d"])
    seen: Counter[bytes] = Counter()
    for seed in range(240):
        bigshuf.shuffle(src, str(tmp_path / "{split}"), seed=seed, split="v=2,t=rest")
        seen[(tmp_path / "v").read_bytes()] += 1
    cells = [b"%s\n%s\n" % pair for pair in itertools.permutations([b"a", b"b", b"c", b"d"], 2)]
    test_uniformity.assert_uniform(seen, cells, "the first split of 2 of 4 records")


@pytest.mark.parametrize("memory", ["64M", "16K"])
def test_verify_passes_over_splits_and_catches_a_lost_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str) -> None:
    src = write_records(tmp_path / "in", make_records(3000, seed=7))
    bigshuf.shuffle(src, str(tmp_path / "{split}-{}"), memory=memory, seed=1, verify=True, tmp_dir=tmp_path,
                    split="v=0.1,t=rest", shard_records=1000)
    if memory != "64M":
        return  # the gather bug below is planted in the in-memory path's gathering only
    (tmp_path / "old").mkdir()
    real = bigshuf.core.gather.emit_in_order

    def lossy(block, offsets, order, emit, per_chunk):  # type: ignore[no-untyped-def]  # a gather bug that drops a record
        real(block, offsets, order[1:], emit, per_chunk)

    monkeypatch.setattr(bigshuf.core.gather, "emit_in_order", lossy)
    target = tmp_path / "old" / "{split}"
    with pytest.raises(bigshuf.OutputError, match="verification failed"):
        bigshuf.shuffle(src, str(target), memory=memory, seed=1, verify=True, tmp_dir=tmp_path, split="v=0.1,t=rest")
    assert os.listdir(tmp_path / "old") == []


def test_check_manifest_takes_no_operands(tmp_path: Path) -> None:
    proc = cli("--check-manifest", str(tmp_path / "m.json"), "extra")
    assert proc.returncode == 1 and proc.stderr == (
        b"bigshuf: extra operand 'extra': --check-manifest takes only the manifest\nTry 'bigshuf --help' for more information.\n"
    )  # one line, and --help pointed to (it was two lines before the pointer: found by a new-user test)


def test_a_split_given_as_a_mapping_is_the_split_given_as_text(tmp_path: Path) -> None:
    """``split={"train": 0.9, ...}``, as a datasets user writes it, was a UsageError (found by a new-user test)."""
    from fractions import Fraction

    src = write_records(tmp_path / "in", make_records(500, seed=8))
    outputs = []
    for i, split in enumerate(("a=0.00001,b=0.25,c=100,d=rest", {"a": 1e-05, "b": Fraction(1, 4), "c": 100, "d": "rest"})):
        target = tmp_path / f"o{i}" / "{split}.txt"
        bigshuf.shuffle(src, str(target), seed=3, split=split, manifest=tmp_path / f"o{i}" / "m.json")
        outputs.append({p.name: p.read_bytes() for p in sorted(target.parent.glob("*.txt"))})
        assert bigshuf.check_manifest(tmp_path / f"o{i}" / "m.json")[0] == []
    assert outputs[0] == outputs[1] and sorted(outputs[0]) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert [v.count(b"\n") for v in outputs[0].values()] == [0, 125, 100, 275]
    for split, message in (
        ({"a": Fraction(1, 3), "b": "rest"}, "split 'a' must be a count (int), a fraction (float or a Fraction with a finite decimal) or 'rest', not Fraction"),
        ({"a": True, "b": "rest"}, "split 'a' must be a count"),
        ({1: 0.5, "b": "rest"}, "split names must be str, not int 1"),
        (["a=0.5", "b=rest"], "split must be a str, a mapping of names to counts or fractions, or None, not list"),
        ({"a": 1.5, "b": "rest"}, "invalid split= value for 'a': '1.5'"),
        # Found by review: a Fraction or float of 1, 5 or 1e16 was written as a count; a value or a
        # name brought its own ',' or '=' into the text (a split 'c' the caller never named).
        ({"a": Fraction(5), "b": "rest"}, "invalid split= value for 'a': '5.0'"),
        ({"a": 1e16, "b": "rest"}, "invalid split= value for 'a': '10000000000000000.0'"),
        ({"a": "3,c=4", "b": "rest"}, "split 'a' must be a count (int), a fraction"),
        ({"a=b": 3, "c": "rest"}, "invalid split name 'a=b'"),
        ({"a,b": 3, "c": "rest"}, "invalid split name 'a,b'"),
        ({}, "split names no split"),
    ):
        with pytest.raises(bigshuf.UsageError, match=re.escape(message)):
            bigshuf.shuffle(src, str(tmp_path / "x" / "{split}.txt"), seed=3, split=split)
    assert not (tmp_path / "x").exists()
    import numpy as np

    for whole, part in ((Fraction(1), np.float64(0.5)), (1.0, Fraction(1, 2))):
        bigshuf.shuffle(src, str(tmp_path / "w" / "{split}.txt"), seed=3, split={"a": whole})
        assert (tmp_path / "w" / "a.txt").read_bytes().count(b"\n") == 500  # the fraction 1, not 1 record
        bigshuf.shuffle(src, str(tmp_path / "w" / "{split}.txt"), seed=3, split={"h": part, "t": "rest"})
        assert (tmp_path / "w" / "h.txt").read_bytes().count(b"\n") == 250


@pytest.mark.parametrize("split,total,expected", [
    ("v=0.001,w=0.001,t=rest", 1300, [2, 1, 1297]),  # the fractions' 2.6 rounded to 3, shared by largest remainder
    ("v=0.001,w=0.001,t=0.998", 1300, [1, 1, 1298]),
    ("a=0.45,b=rest", 11, [5, 6]),  # 4.95 rounds to 5 (floored, it was 4)
    ("a=0.5,b=0.5", 3, [2, 1]),  # halves up; the tie to the earlier split
])
def test_split_counts_are_the_readmes(split: str, total: int, expected: list[int]) -> None:
    """README's rule and examples for ``--split``: the fractions together take their sum of the total,
    rounded (halves up), shared by largest remainder (ties to the earlier split); ``rest`` the remainder."""
    from bigshuf.storage.layout import parse_split, split_counts

    assert split_counts(parse_split(split), total) == expected
