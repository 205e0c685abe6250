"""WebDataset tar shards read from fsspec URLs, described by a manifest, checked by
``check_permutation``, deduplicated with ``--unique`` and mixed from weighted sources."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.errors import InputError, OutputError, UsageError
from helpers import compress, temp_leftovers
from test_webdataset import Member, as_set, make_samples, make_tar, read_samples, refused, run, shards


@pytest.fixture
def memfs() -> Iterator[Any]:
    """fsspec's in-memory filesystem, emptied of this module's files afterwards."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    yield fs
    if fs.exists("/wds"):
        fs.rm("/wds", recursive=True)


@pytest.mark.parametrize("memory", ["64M", "64K"])
def test_tars_from_urls_shuffle_as_the_same_local_files_do(tmp_path: Path, memfs: Any, memory: str) -> None:
    """memory:// tars (plain, gzip and zstd, through a glob and by name) give the bytes the same local
    files give: all of them in memory; through buckets, the plain one (compressed local tars are planned
    at their decoded size, which a URL's is not, as for lines, so they get other buckets)."""
    paths, every = shards(tmp_path, count=3, per=30)
    names = ["a.tar", "b.tar.gz", "c.tar.zst"]
    local = []
    for path, name, codec in zip(paths, names, (None, "gzip", "zstd")):
        data = path.read_bytes() if codec is None else compress(codec, path.read_bytes())
        memfs.pipe(f"/wds/{name}", data)
        local.append(tmp_path / name)
        local[-1].write_bytes(data)
    (tmp_path / "t").mkdir()
    out, mine = tmp_path / "url.tar", tmp_path / "local.tar"
    options = dict(memory=memory, seed=5, tmp_dir=tmp_path / "t", sync=False, verify=True)
    stats = bigshuf.shuffle(["memory://wds/*.tar", "memory://wds/b.tar.gz", "memory://wds/c.tar.zst"], out, **options)
    bigshuf.shuffle(local, mine, **options)
    assert stats.records == 90 and stats.passes == (1 if memory == "64M" else 2)
    assert as_set(read_samples(out.read_bytes())) == as_set(every)
    if memory == "64K":
        bigshuf.shuffle("memory://wds/*.tar", out, **options)
        bigshuf.shuffle(local[0], mine, **options)
    assert out.read_bytes() == mine.read_bytes()
    assert temp_leftovers(tmp_path / "t") == []


def test_tar_urls_are_refused_in_one_line_where_they_cannot_be_read(tmp_path: Path, memfs: Any) -> None:
    """A tar URL beside other data, a glob finding tars in a line run, a URL output, a key in two URLs:
    one line each, nothing written."""
    one = make_samples(4, 1)
    memfs.pipe("/wds/a.tar", make_tar(tmp_path / "a.tar", one).read_bytes())
    memfs.pipe("/wds/again.tar", (tmp_path / "a.tar").read_bytes())
    (tmp_path / "lines.txt").write_bytes(b"x\n")
    with pytest.raises(UsageError, match=r"^memory://wds/a.tar is a tar archive and .*lines.txt is not: shuffle WebDataset"):
        bigshuf.shuffle(["memory://wds/a.tar", tmp_path / "lines.txt"], tmp_path / "out.tar")
    with pytest.raises(UsageError, match=r"^memory:///wds/a.tar: a tar archive, found by memory://wds/\* in a run of lines; name tar URLs as tars"):
        bigshuf.shuffle("memory://wds/*", tmp_path / "out.txt")
    with pytest.raises(UsageError, match=r"^s3://b/out.tar: this engine writes local files"):
        bigshuf.shuffle("memory://wds/a.tar", "s3://b/out.tar")
    refused(tmp_path, ["memory://wds/a.tar", "memory://wds/again.tar"], "memory:///wds/again.tar: sample s/0100000 (member s/0100000.jpg) is also in memory:///wds/a.tar")  # type: ignore[list-item]
    assert not (tmp_path / "out.txt").exists()
    code, out, err = run([f"file://{tmp_path}/a.tar", "--seed", "2", "-o", "cli.tar"], tmp_path)
    assert (code, out, err) == (0, b"", b"")
    assert as_set(read_samples((tmp_path / "cli.tar").read_bytes())) == as_set(one)
    with pytest.raises(InputError, match=r"^memory://wds/none.tar: No such file or directory$"):
        bigshuf.shuffle("memory://wds/none.tar", tmp_path / "out.tar")


def test_a_manifest_lists_each_tar_and_checks_against_it(tmp_path: Path) -> None:
    """--manifest for tar shards: each input's samples and bytes as read, each shard's samples,
    bytes and fingerprint (of the samples' blocks as copied); --check-manifest and
    check_permutation read tars as samples, and find a changed byte."""
    import json

    from bigshuf.api import check_manifest

    paths, every = shards(tmp_path, count=2, per=25)
    gz = paths[1].with_name("in-01.tar.gz")
    gz.write_bytes(compress("gzip", paths[1].read_bytes()))
    inputs = [paths[0], gz]
    (tmp_path / "t").mkdir()
    stats = bigshuf.shuffle(
        inputs, f"{tmp_path / 'out'}/", shard_records=20, manifest=tmp_path / "m.json", memory="64K", seed=3,
        tmp_dir=tmp_path / "t", sync=False,
    )
    assert stats.records == 50 and stats.passes == 2
    doc = json.loads((tmp_path / "m.json").read_text())
    assert (doc["kind"], doc["format"], doc["records_written"]) == ("samples", {"samples": "tar"}, 50)
    sample_bytes = [sum(len(m[7]) for s in every[i * 25 : i * 25 + 25] for m in s) for i in range(2)]
    for entry, path, data in zip(doc["inputs"], inputs, sample_bytes):
        assert entry["path"] == str(path) and entry["records"] == 25
        assert data < entry["bytes"] <= paths[0].stat().st_size * 2  # member data plus headers and padding
    outs = sorted((tmp_path / "out").iterdir())
    assert [o["records"] for o in doc["outputs"]] == [20, 20, 10]
    assert [o["path"] for o in doc["outputs"]] == [f"out/{p.name}" for p in outs]
    assert sum(o["bytes"] for o in doc["outputs"]) == sum(e["bytes"] for e in doc["inputs"])
    problems, summary = check_manifest(tmp_path / "m.json")
    assert problems == [] and summary.endswith(f"3 output file(s) match {tmp_path / 'm.json'}: 50 samples, {sum(e['bytes'] for e in doc['inputs'])} bytes")
    fp_in, fp_out = bigshuf.check_permutation(inputs, outs)
    assert fp_in == fp_out and fp_in.records == 50
    # One byte of one member's data changed: the sizes hold, the fingerprints do not.
    data = bytearray(outs[1].read_bytes())
    data[512 + 3] ^= 1
    outs[1].write_bytes(bytes(data))
    problems, _ = check_manifest(tmp_path / "m.json")
    assert len(problems) == 1 and problems[0].startswith(f"{outs[1]}: records differ from those the manifest lists")
    fp_in, fp_out = bigshuf.check_permutation(inputs, outs)
    assert fp_in != fp_out and (fp_in.records, fp_in.bytes) == (fp_out.records, fp_out.bytes)
    outs[2].write_bytes(outs[2].read_bytes()[:1000])
    problems, _ = check_manifest(tmp_path / "m.json")
    assert any(p.startswith(f"{outs[2]}: truncated") for p in problems), problems


@pytest.mark.parametrize("kind", ["tar", "lines"])
def test_a_manifest_over_an_input_named_by_a_file_url_is_refused(tmp_path: Path, kind: str) -> None:
    """An input read through a file:// URL (by name or by a glob) is a local file all the same: a
    manifest named as it is refused, and the input keeps its bytes."""
    pytest.importorskip("fsspec")
    if kind == "tar":
        paths, _ = shards(tmp_path, count=2, per=3)
    else:
        paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
        for i, path in enumerate(paths):
            path.write_bytes(b"".join(b"%d\n" % (10 * i + j) for j in range(10)))
    before = paths[1].read_bytes()
    pattern = f"file://{tmp_path}/*{paths[1].suffix}"
    for inputs in ([f"file://{p}" for p in paths], [pattern]):
        refused(tmp_path, inputs, f"{paths[1]}: the manifest would be written over an input", error=OutputError,  # type: ignore[arg-type]
                manifest=paths[1], output=f"out{paths[1].suffix}")
        assert paths[1].read_bytes() == before


def test_check_permutation_of_tars_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    paths, _ = shards(tmp_path, count=1, per=3)
    (tmp_path / "l.txt").write_bytes(b"a\n")
    with pytest.raises(UsageError, match=r"in-00.tar is a tar archive and .*l.txt is not: check_permutation\(\) compares samples of tars"):
        bigshuf.check_permutation(paths, tmp_path / "l.txt")
    with pytest.raises(UsageError, match=r"^zero_terminated=True, lines_per_record= and header= apply to lines, not to samples of tars$"):
        bigshuf.check_permutation(paths, paths, zero_terminated=True)
    refused(tmp_path, paths, f"{paths[0]}: the manifest would be written over an input", manifest=paths[0], error=OutputError)
    with pytest.raises(UsageError, match=rf"^file://{paths[0]}: check_permutation\(\) reads local files, not URLs$"):  # not 'No such file'
        bigshuf.check_permutation(f"file://{paths[0]}", paths)
    code, _, err = run(["--check-permutation", paths[0], "--against", paths[0]], tmp_path)
    assert (code, err.split(b":")[:2]) == (0, [b"bigshuf", b" same records"])
    assert err.startswith(b"bigshuf: same records: 3 samples, "), err  # the format's unit, as a run's summary gives it


def _copies() -> tuple[list[list[Member]], list[list[Member]]]:
    """Samples with copies under other keys, mtimes, modes and owners (dropped by --unique), and
    near-copies that are not copies (another suffix, another member order, one byte more); and the
    samples --unique keeps, the first of each in order."""
    base = make_samples(12, 3, size=1500)
    samples, kept = [], []
    for i, sample in enumerate(base):
        samples.append(sample)
        kept.append(sample)
        if i % 3 == 0:  # a copy under another key, with other metadata
            copy = [(f"t/copy{i}.{m[0].split('.', 1)[1]}", 0o600, 7, 1, 2, "x", "y", m[7]) for m in sample]
            samples.append(copy)
        if i % 4 == 1:  # not copies: a suffix changed, the members' order swapped, a byte added
            other = [
                [(f"o/a{i}.png", *sample[0][1:]), (f"o/a{i}.json", *sample[1][1:])],
                [(f"o/b{i}.json", *sample[1][1:]), (f"o/b{i}.jpg", *sample[0][1:])],
                [(f"o/c{i}.jpg", *sample[0][1:7], sample[0][7] + b"!"), (f"o/c{i}.json", *sample[1][1:])],
            ]
            samples += other
            kept += other
    samples += [list(s) for s in base[:2]]  # exact copies, keys too, at the end of another tar
    return samples, kept


@pytest.mark.parametrize(
    "label,memory,cap", [("in-memory", "64M", None), ("colliding hashes", "64M", None), ("external", "96K", None), ("recursive", "96K", 2)],
)
def test_unique_keeps_the_first_copy_of_each_samples_suffixes_and_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None
) -> None:
    """--unique: a sample is a copy when its members have the same suffixes and bytes in the same
    order (keys, mtimes, modes and owners aside); the first is kept; hashes that collide never merge
    distinct samples."""
    from bigshuf.core import dedup, plan

    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    if label == "colliding hashes":
        # Every identity hashes alike: samples are told apart by their bytes alone.
        monkeypatch.setattr(dedup, "record_hashes", lambda block, offsets: np.zeros(len(offsets) - 1, np.uint64))
    samples, kept = _copies()
    first = make_tar(tmp_path / "a.tar", samples[:-2])
    second = make_tar(tmp_path / "b.tar", make_samples(2, 9) + samples[-2:])
    (tmp_path / "t").mkdir()
    out = tmp_path / "out.tar"
    stats = bigshuf.shuffle(
        [first], out, unique=True, memory=memory, seed=2, tmp_dir=tmp_path / "t", sync=False, verify=True, manifest=tmp_path / "m.json",
    )
    got = read_samples(out.read_bytes())
    assert as_set(got) == as_set(kept)
    assert stats.duplicates == len(samples) - 2 - len(kept) == 4 and stats.records == len(kept)
    assert (stats.passes == 1) if memory == "64M" else (stats.passes >= (4 if cap else 3)), stats.passes
    assert temp_leftovers(tmp_path / "t") == []
    import json

    doc = json.loads((tmp_path / "m.json").read_text())
    assert (doc["duplicates"], doc["records_read"], doc["records_written"]) == (4, len(samples) - 2, len(kept))
    # The same sample under its own key in two tars is still two samples of one key: refused, naming both.
    refused(tmp_path, [first, second], f"{second}: sample s/0300000 (member s/0300000.jpg) is also in {first}", unique=True, memory=memory, output="no.tar")


def test_unique_samples_are_shuffled_uniformly(tmp_path: Path) -> None:
    """Three distinct one-member samples and a copy of each, deduplicated through hash buckets
    (--unique at 24 KiB holds the 9 KiB of samples only externally): every order equally likely."""
    from itertools import permutations

    from test_uniformity import assert_uniform

    samples = [[(f"{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i]) * 1000)] for i in range(3)]
    copies = [[(f"c{i}.bin", 0o600, 9, 0, 0, "", "", bytes([i]) * 1000)] for i in range(3)]
    src = make_tar(tmp_path / "in.tar", samples + copies)
    out = tmp_path / "out.tar"
    counts: Counter[tuple[int, ...]] = Counter()
    for seed in range(48):
        stats = bigshuf.shuffle(src, out, unique=True, memory="24K", seed=seed, tmp_dir=tmp_path, sync=False, threads=1)
        assert stats.passes >= 3 and stats.duplicates == 3
        counts[tuple(s[0][7][0] for s in read_samples(out.read_bytes()))] += 1
    assert_uniform(counts, list(permutations(range(3))), "unique, external")


def test_unique_with_members_of_megabytes_stays_within_the_limit(tmp_path: Path) -> None:
    """Four 5 MB members and a copy (25 MB) at -S 64M: deduplicated through hash buckets, within the limit."""
    from helpers import run_peak
    from test_memory import SLACK

    rng = np.random.default_rng(1)
    samples = [[(f"{i}.jpg", 0o644, 0, 0, 0, "", "", rng.integers(0, 256, 5_000_000 + i, dtype=np.uint8).tobytes())] for i in range(4)]
    make_tar(tmp_path / "big.tar", samples + [[("copy.jpg", 0o600, 1, 0, 0, "", "", samples[2][0][7])]])
    make_tar(tmp_path / "small.tar", make_samples(5, 1))
    _, baseline = run_peak(["small.tar", "-o", "small-out.tar"], tmp_path)
    status, peak = run_peak(["big.tar", "-S", "64M", "-T", ".", "--seed", "1", "--unique", "-o", "out.tar"], tmp_path)
    assert status == 0
    assert peak <= baseline + (64 << 20) + SLACK, f"peak {peak >> 20} MiB, baseline {baseline >> 20} MiB"
    assert as_set(read_samples((tmp_path / "out.tar").read_bytes())) == as_set(samples)


@pytest.mark.parametrize("memory", ["64M", "64K"])
def test_sources_rates_and_mixes_pick_samples_once_each(tmp_path: Path, memory: str) -> None:
    """--source/--rate/--mix over tars: each source gives the samples its rate (up to 1) or share
    says, each at most once, whole; the manifest lists the sources and checks."""
    import json

    from bigshuf.api import check_manifest

    web = make_samples(60, 1, prefix="web", size=600)
    code = make_samples(20, 2, prefix="code", size=600)
    make_tar(tmp_path / "web-0.tar", web[:30])
    make_tar(tmp_path / "web-1.tar", web[30:])
    make_tar(tmp_path / "code.tar", code)
    sources = {"web": [tmp_path / "web-0.tar", tmp_path / "web-1.tar"], "code": tmp_path / "code.tar"}
    (tmp_path / "t").mkdir()
    common = dict(memory=memory, tmp_dir=tmp_path / "t", sync=False, verify=True)
    for how, want in ((dict(rates={"web": 0.25}), (15, 20)), (dict(mix={"web": 0.75, "code": 0.25}, total=40), (30, 10))):
        out = tmp_path / "out.tar"
        stats = bigshuf.shuffle(sources=sources, output=out, seed=4, manifest=tmp_path / "m.json", **how, **common)  # type: ignore[arg-type]
        got = read_samples(out.read_bytes())
        assert len(set(got)) == len(got) == sum(want)
        assert as_set(got) <= as_set(web + code)
        assert (sum(s[0][0].startswith("web/") for s in got), sum(s[0][0].startswith("code/") for s in got)) == want
        assert [(s.name, s.read, s.written) for s in stats.sources] == [("web", 60, want[0]), ("code", 20, want[1])]
        doc = json.loads((tmp_path / "m.json").read_text())
        assert (doc["records_read"], doc["records_shuffled"], [s["written"] for s in doc["sources"]]) == (80, sum(want), list(want))
        assert check_manifest(tmp_path / "m.json")[0] == []
        (tmp_path / "m.json").unlink()
    assert temp_leftovers(tmp_path / "t") == []
    # Sources of tars without a sample: nothing to pick, an empty tar written.
    make_tar(tmp_path / "none-a.tar", [])
    make_tar(tmp_path / "none-b.tar", [])
    stats = bigshuf.shuffle(
        sources={"a": tmp_path / "none-a.tar", "b": tmp_path / "none-b.tar"}, output=tmp_path / "none.tar", rates={"a": 0.5},
        seed=1, memory=memory, sync=False,
    )
    assert stats.records == 0 and (tmp_path / "none.tar").read_bytes() == bytes(1024)


@pytest.mark.parametrize("memory", ["64M", "4K"])
def test_a_fractional_rate_picks_every_subset_of_samples_equally_often(tmp_path: Path, memory: str) -> None:
    """Rate 0.5 over four samples: each of the six pairs equally likely, in memory and through buckets."""
    from itertools import combinations

    from test_uniformity import assert_uniform

    samples = [[(f"a/{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i]) * 1000)] for i in range(4)]
    make_tar(tmp_path / "a.tar", samples)
    make_tar(tmp_path / "b.tar", [[("b/9.bin", 0o644, 0, 0, 0, "", "", b"b")]])
    out = tmp_path / "out.tar"
    counts: Counter[tuple[int, ...]] = Counter()
    passes = set()
    for seed in range(48):
        stats = bigshuf.shuffle(
            sources={"a": tmp_path / "a.tar", "b": tmp_path / "b.tar"}, output=out, rates={"a": 0.5}, memory=memory, seed=seed,
            tmp_dir=tmp_path, sync=False, threads=1,
        )
        passes.add(stats.passes)
        counts[tuple(sorted(s[0][7][0] for s in read_samples(out.read_bytes()) if s[0][0].startswith("a/")))] += 1
    assert_uniform(counts, list(combinations(range(4), 2)), memory)
    assert passes == {1} if memory == "64M" else min(passes) >= 2


def test_tar_sources_refuse_rates_above_one(tmp_path: Path) -> None:
    """A rate above 1, given or solved from a mix, would write a key twice: one line."""
    make_tar(tmp_path / "a.tar", make_samples(4, 1))
    make_tar(tmp_path / "b.tar", make_samples(2, 2))
    sources = {"a": tmp_path / "a.tar", "b": tmp_path / "b.tar"}
    refused(
        tmp_path, [], "source 'b': rate 2 would write samples twice under one key, which WebDataset reads as one sample; "
        "tar sources take rates up to 1 (give 1 or less)", UsageError, sources=sources, rates={"b": 2},
    )
    refused(
        tmp_path, [], "source 'b': rate 2 would write samples twice under one key, which WebDataset reads as one sample; "
        "tar sources take rates up to 1 (the mix= needs it: lower total= or this source's share)", UsageError, sources=sources,
        mix={"a": 0.5, "b": 0.5}, total=8,
    )
    # Above --max-rate too, the tar refusal comes first: raising --max-rate, as the other message
    # advised, only led to this one (new-user trial).
    refused(
        tmp_path, [], "source 'b': rate 12 would write samples twice under one key", UsageError, sources=sources, rates={"b": 12},
    )
    refused(
        tmp_path, [], "source 'a': rate 25 would write samples twice under one key", UsageError, sources=sources,
        mix={"a": 0.5, "b": 0.5}, total=200,
    )
    # A rate just above 1 is shown as given, not rounded to the 1 it is refused for exceeding.
    refused(tmp_path, [], "source 'b': rate 1.0000001 would write samples twice", UsageError, sources=sources, rates={"b": "1.0000001"})
    # The dry run counts the samples when it reads them all, and fails as the run would.
    planned = bigshuf.plan_shuffle([], tmp_path / "p.tar", sources=sources, mix={"a": 0.5, "b": 0.5}, total=8)
    assert not planned.ok
    failed = [c.reason for c in planned.checks if not c.passed]
    assert len(failed) == 1 and failed[0].startswith("source 'b': rate 2 would write samples twice under one key"), failed
    assert "tar sources take rates up to 1 (the mix= needs it: lower total= " in planned.render()
    assert bigshuf.plan_shuffle([], tmp_path / "p.tar", sources=sources, mix={"a": 0.5, "b": 0.5}, total=4).ok


def test_stratified_splits_take_each_sources_share_uniformly(tmp_path: Path) -> None:
    """--stratify over tar sources: every split holds its share of each source, exactly, and which
    samples go to a split is uniform (the six pairs of four, through buckets); in memory too."""
    from itertools import combinations

    from test_uniformity import assert_uniform

    make_tar(tmp_path / "a.tar", [[(f"a/{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i]) * 1000)] for i in range(4)])
    make_tar(tmp_path / "b.tar", [[(f"b/{i}.bin", 0o644, 0, 0, 0, "", "", b"b%d" % i)] for i in range(2)])
    sources = {"a": tmp_path / "a.tar", "b": tmp_path / "b.tar"}
    counts: Counter[tuple[int, ...]] = Counter()
    for seed in range(37):
        memory = "64M" if seed == 0 else "4K"
        stats = bigshuf.shuffle(
            sources=sources, output=str(tmp_path / "{split}.tar"), split="x=0.5,y=rest", stratify=True, memory=memory,
            seed=seed, tmp_dir=tmp_path, sync=False, threads=1, verify=True,
        )
        assert stats.passes == 1 if memory == "64M" else stats.passes >= 2
        x, y = (read_samples((tmp_path / f"{name}.tar").read_bytes()) for name in ("x", "y"))
        for split in (x, y):
            assert sorted(s[0][0][0] for s in split) == ["a", "a", "b"]
        assert sorted(s[0][0] for s in x + y) == sorted([f"a/{i}.bin" for i in range(4)] + ["b/0.bin", "b/1.bin"])
        if memory == "4K":
            counts[tuple(sorted(s[0][7][0] for s in x if s[0][0].startswith("a/")))] += 1
    assert_uniform(counts, list(combinations(range(4), 2)), "stratified")


def _identity(sample: list[Member] | tuple[Member, ...]) -> tuple[tuple[str, bytes], ...]:
    """What --unique compares of a sample: each member's suffix and data, in order."""
    return tuple((m[0].rsplit("/", 1)[-1].split(".", 1)[1], m[7]) for m in sample)


def _renamed(sample: list[Member], key: str) -> list[Member]:
    """A copy of ``sample`` under another key, mode, mtime and owner: the same sample to --unique."""
    return [(f"{key}.{m[0].rsplit('/', 1)[-1].split('.', 1)[1]}", 0o600, 7, 1, 2, "x", "y", m[7]) for m in sample]


@pytest.mark.parametrize("label,memory,cap", [("in-memory", "64M", None), ("external", "96K", None), ("recursive", "96K", 2)])
def test_unique_with_sources_keeps_the_first_copy_and_weighs_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, memory: str, cap: int | None
) -> None:
    """--unique with --source over tars: copies are dropped before the rates, the first in source
    order kept (a sample both sources hold is a's), each source's read, dropped and written exact,
    in the stats and the manifest; a --mix and --stratify are solved from the samples left."""
    import json

    from bigshuf.core import plan

    if cap is not None:
        monkeypatch.setattr(plan, "MAX_BUCKETS", cap)
    a, b = make_samples(40, 1, size=300, prefix="a"), make_samples(30, 2, size=300, prefix="b")
    a_in = a[:20] + [_renamed(a[i], f"a/d{i}") for i in range(8)] + a[20:]  # 8 copies within a, across its two tars
    b_in = b + [_renamed(a[i], f"b/a{i}") for i in range(5, 15)] + [_renamed(b[i], f"b/d{i}") for i in range(3)]
    make_tar(tmp_path / "a-0.tar", a_in[:24])
    make_tar(tmp_path / "a-1.tar", a_in[24:])
    make_tar(tmp_path / "b.tar", b_in)
    sources = {"a": [tmp_path / "a-0.tar", tmp_path / "a-1.tar"], "b": tmp_path / "b.tar"}
    (tmp_path / "t").mkdir()
    common = dict(sources=sources, unique=True, memory=memory, tmp_dir=tmp_path / "t", sync=False, verify=True)
    out = tmp_path / "out.tar"
    stats = bigshuf.shuffle([], out, rates={"a": 1, "b": 1}, seed=3, manifest=tmp_path / "m.json", **common)  # type: ignore[arg-type]
    assert Counter(read_samples(out.read_bytes())) == as_set(a + b)  # the first copies, with their own names
    want = [("a", 48, 8, 40), ("b", 43, 13, 30)]  # b's 10 copies of a's samples are dropped from b
    assert [(s.name, s.read, s.dropped, s.written) for s in stats.sources] == want
    assert stats.duplicates == 21 and stats.records == 70
    assert (stats.passes == 1) == (label == "in-memory") and stats.passes >= {"in-memory": 1, "external": 3, "recursive": 4}[label]
    doc = json.loads((tmp_path / "m.json").read_text())
    assert [(s["name"], s["read"], s["dropped"], s["written"]) for s in doc["sources"]] == want and doc["duplicates"] == 21
    # --mix of the samples left (40 and 30): 20 of each, 5 of each in the valid split.
    stats = bigshuf.shuffle(
        [], str(tmp_path / "{split}.tar"), mix={"a": 0.5, "b": 0.5}, total=40, split="valid=0.25,train=rest", stratify=True,
        seed=5, **common,  # type: ignore[arg-type]
    )
    valid, train = (read_samples((tmp_path / f"{name}.tar").read_bytes()) for name in ("valid", "train"))
    firsts = {_identity(s): tuple(s) for s in a + b}
    assert all(firsts.get(_identity(s)) == s for s in valid + train) and len(set(valid + train)) == 40
    assert [sum(s[0][0].startswith(f"{p}/") for s in valid) for p in "ab"] == [5, 5] and len(train) == 30
    assert [(s.name, s.dropped, s.written) for s in stats.sources] == [("a", 8, 20), ("b", 13, 20)]
    assert temp_leftovers(tmp_path / "t") == []


def test_unique_with_a_fractional_rate_picks_among_the_samples_left_uniformly(tmp_path: Path) -> None:
    """a: four distinct samples and two copies; b: one of its own and a copy of a's (dropped from b).
    At rate 0.5 through the dedup's hash buckets, each pair of a's four unique samples equally likely."""
    from itertools import combinations

    from test_uniformity import assert_uniform

    one = [[(f"a/{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i]) * 1000)] for i in range(4)]
    make_tar(tmp_path / "a.tar", one[:2] + [_renamed(one[0], "a/c0"), *one[2:], _renamed(one[3], "a/c3")])
    make_tar(tmp_path / "b.tar", [[("b/9.bin", 0o644, 0, 0, 0, "", "", b"b")], _renamed(one[2], "b/c2")])
    out = tmp_path / "out.tar"
    counts: Counter[tuple[int, ...]] = Counter()
    for seed in range(36):
        stats = bigshuf.shuffle(
            [], out, sources={"a": tmp_path / "a.tar", "b": tmp_path / "b.tar"}, rates={"a": 0.5}, unique=True, memory="24K",
            seed=seed, tmp_dir=tmp_path, sync=False, threads=1,
        )
        assert stats.passes >= 3 and [(s.dropped, s.written) for s in stats.sources] == [(2, 2), (1, 1)]
        counts[tuple(sorted(s[0][7][0] for s in read_samples(out.read_bytes()) if s[0][0].startswith("a/")))] += 1
    assert_uniform(counts, list(combinations(range(4), 2)), "unique, rate 0.5, external")
