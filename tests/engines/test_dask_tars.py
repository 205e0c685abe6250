"""WebDataset tar samples on the Dask engine: exact permutations of samples (every member's
header fields and bytes kept, each sample's members together and in order) into one tar and into
shards, buckets split again, -n, compressed tars in and out, --split, --shard-records,
--shard-size and --manifest; uniformity by chi-square over fixed seeds (tasks run in-process);
weighted sources (rates up to 1, --mix, --stratify) and --unique against the local engine's counts; S3 in and
out on moto; what spans tars refused naming both; a truncated tar failing in a task
on the cluster bigshuf starts, in one line with nothing left.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from fractions import Fraction
from concurrent.futures import ThreadPoolExecutor
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.engines import dask as dask_engine
from bigshuf.engines.dask import tars as dask_tars
from bigshuf.api import check_manifest
from bigshuf.errors import InputError, UsageError
from helpers import compress, decompress
from helpers import tar_bytes
from test_dask import TIMEOUT
from test_uniformity import assert_uniform

distributed = pytest.importorskip("distributed")

#: A member as tarfile reads it: name, mode, mtime, uid, gid, uname, gname, data.
Member = tuple[str, int, int, int, int, str, str, bytes]
Sample = tuple[Member, ...]

END = bytes(1024)


def _samples(n: int, seed: int, size: int = 700, members: tuple[str, ...] = ("jpg", "json")) -> list[Sample]:
    """``n`` samples of random members (up to ``size`` bytes each) with varied metadata."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(tuple(
            (f"s/{seed:02d}{i:05d}.{ext}", int(rng.choice([0o600, 0o644, 0o755])), 1_600_000_000 + int(rng.integers(0, 10**6)),
             int(rng.integers(0, 2000)), int(rng.integers(0, 2000)), f"user{i % 3}", "group",
             rng.integers(0, 256, int(rng.integers(0, size)), dtype=np.uint8).tobytes())
            for ext in members
        ))
    return out


def _read(data: bytes) -> list[Sample]:
    """A tar's members as tarfile reads them, grouped into samples by WebDataset's key."""
    samples: list[list[Member]] = []
    last = None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar:
            f = tar.extractfile(info)
            assert info.isreg() and f is not None
            key = info.name.split(".", 1)[0]
            if key != last:
                samples.append([])
                last = key
            samples[-1].append((info.name, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname, f.read()))
    return [tuple(s) for s in samples]


def _inputs(tmp_path: Path, per: tuple[int, ...] = (40, 1, 35)) -> tuple[list[Path], list[Sample]]:
    """Tars of ``per`` samples each, GNU and pax headers alternating; and all their samples."""
    paths, every = [], []
    for i, n in enumerate(per):
        samples = _samples(n, i)
        path = tmp_path / f"in-{i}.tar"
        path.write_bytes(tar_bytes(samples, tarfile.PAX_FORMAT if i % 2 else tarfile.GNU_FORMAT))
        paths.append(path)
        every += samples
    return paths, every


def _assert_permutation(got: list[Sample], expected: list[Sample]) -> None:
    assert Counter(got) == Counter(expected)
    assert got != expected  # 1/n! for the sizes used here


def _shuffle(inputs: Any, output: Any, tmp_path: Path, workers: int = 2, **options: Any) -> Any:
    with ThreadPoolExecutor(workers) as runner:
        return dask_engine.shuffle(inputs, output, runner=runner, tmp_dir=tmp_path, **options)


def test_one_tar_and_shards_are_the_same_permutation(tmp_path: Path) -> None:
    # -S 64K: a dozen buckets; the shards, each a complete tar, are consecutive pieces of the single
    # output of the same seed, byte for byte.
    paths, every = _inputs(tmp_path)
    stats = _shuffle(paths, tmp_path / "one.tar", tmp_path, memory="64K", seed=5, verify=True)
    _shuffle(paths, f"{tmp_path / 'out'}/", tmp_path, memory="64K", seed=5, verify=True, shards=4)
    assert stats.records == 76 and stats.buckets > 4 and stats.passes == 2
    single = (tmp_path / "one.tar").read_bytes()
    assert single.endswith(END) and stats.bytes == len(single)  # as the local engine counts: the end blocks too
    _assert_permutation(_read(single), every)
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == [f"part-0000{i}.tar" for i in range(4)]
    shards = [(tmp_path / "out" / n).read_bytes() for n in names]
    assert [len(_read(s)) for s in shards] == [19, 19, 19, 19]
    assert all(s.endswith(END) for s in shards)
    assert b"".join(s[: -len(END)] for s in shards) == single[: -len(END)]
    assert sorted(os.listdir(tmp_path)) == ["in-0.tar", "in-1.tar", "in-2.tar", "one.tar", "out"]


def test_same_seed_same_bytes_for_one_and_two_workers(tmp_path: Path) -> None:
    paths, _ = _inputs(tmp_path, (20, 20))
    _shuffle(paths, tmp_path / "a.tar", tmp_path, workers=1, memory="32K", seed=3)
    _shuffle(paths, tmp_path / "b.tar", tmp_path, workers=2, memory="32K", seed=3)
    _shuffle(paths, tmp_path / "c.tar", tmp_path, workers=2, memory="32K", seed=4)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes() != (tmp_path / "c.tar").read_bytes()


def test_buckets_too_big_for_a_task_are_split_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two buckets of ~40 samples of ~1.7 KB overflow the 12 KB that -S 16K leaves a task: each is
    # scattered again inside its pass-2 task, as the local engine recurses.
    paths, every = _inputs(tmp_path, (40, 40))
    monkeypatch.setattr(dask_tars, "tar_bucket_count", lambda *args: 2)
    stats = _shuffle(paths, tmp_path / "out.tar", tmp_path, memory="16K", seed=3, verify=True)
    assert stats.passes >= 3
    _assert_permutation(_read((tmp_path / "out.tar").read_bytes()), every)
    assert sorted(os.listdir(tmp_path)) == ["in-0.tar", "in-1.tar", "out.tar"]


@pytest.mark.parametrize("codec,suffix", [("gzip", ".tar.gz"), ("zstd", ".tar.zst")])
def test_compressed_tars_in_and_out_and_head_count(tmp_path: Path, codec: str, suffix: str) -> None:
    # Compressed inputs are one task each; the output's codec is its name's; -n gives the head of
    # the full shuffle of the same seed.
    paths, every = _inputs(tmp_path, (30, 25))
    zipped = []
    for i, path in enumerate(paths):
        zipped.append(tmp_path / f"z-{i}{suffix}")
        zipped[-1].write_bytes(compress(codec, path.read_bytes()))
    _shuffle(zipped, tmp_path / f"full{suffix}", tmp_path, memory="32K", seed=8, verify=True)
    stats = _shuffle(zipped, tmp_path / f"head{suffix}", tmp_path, memory="32K", seed=8, head_count=20)
    full = _read(decompress(codec, (tmp_path / f"full{suffix}").read_bytes()))
    _assert_permutation(full, every)
    assert stats.records == 20
    assert _read(decompress(codec, (tmp_path / f"head{suffix}").read_bytes())) == full[:20]


def test_split_shard_records_and_manifest(tmp_path: Path) -> None:
    paths, every = _inputs(tmp_path)
    target = str(tmp_path / "out" / "{split}") + "/"
    _shuffle(paths, target, tmp_path, memory="32K", seed=2, split="valid=10,train=rest", shard_records=25,
             manifest=tmp_path / "m.json", compress="gzip")
    train = sorted(os.listdir(tmp_path / "out" / "train"))
    assert train == ["part-00000.tar.gz", "part-00001.tar.gz", "part-00002.tar.gz"]
    assert os.listdir(tmp_path / "out" / "valid") == ["part-00000.tar.gz"]
    files = [tmp_path / "out" / "valid" / "part-00000.tar.gz"] + [tmp_path / "out" / "train" / n for n in train]
    got = [_read(decompress("gzip", f.read_bytes())) for f in files]
    assert [len(g) for g in got] == [10, 25, 25, 16]
    _assert_permutation([s for g in got for s in g], every)
    assert check_manifest(tmp_path / "m.json")[0] == []
    # The document is the local engine's, run for run: the same inputs' samples and bytes, kind and format.
    bigshuf.shuffle(paths, target.replace("out", "local"), memory="32K", seed=2, split="valid=10,train=rest", shard_records=25,
                    manifest=tmp_path / "local.json", compress="gzip")
    dask, local = (json.loads((tmp_path / n).read_text()) for n in ("m.json", "local.json"))
    assert (dask["kind"], dask["format"]) == ("samples", {"samples": "tar"})
    for entry in ("kind", "format", "inputs", "records_written", "split"):
        assert dask[entry] == local[entry], entry
    assert [(o["records"], o["path"]) for o in dask["outputs"]] == [(o["records"], o["path"].replace("local", "out")) for o in local["outputs"]]


def test_shard_size(tmp_path: Path) -> None:
    # Each shard ends after the sample that brings it to 20 KB of samples' blocks; in order they are the single output.
    paths, every = _inputs(tmp_path, (40, 30))
    _shuffle(paths, tmp_path / "one.tar", tmp_path, memory="32K", seed=6)
    _shuffle(paths, f"{tmp_path / 'out'}/", tmp_path, memory="32K", seed=6, shard_size=20_000)
    shards = [(tmp_path / "out" / n).read_bytes() for n in sorted(os.listdir(tmp_path / "out"))]
    assert len(shards) > 3
    assert b"".join(s[: -len(END)] for s in shards) == (tmp_path / "one.tar").read_bytes()[: -len(END)]
    assert all(len(s) - len(END) >= 20_000 for s in shards[:-1])
    assert all(_last_sample_start(s) < 20_000 for s in shards)
    _assert_permutation([x for s in shards for x in _read(s)], every)


def _last_sample_start(data: bytes) -> int:
    """Where a tar's last sample starts (its first member's header)."""
    starts, last = [], None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar:
            key = info.name.split(".", 1)[0]
            if key != last:
                starts.append(info.offset)
                last = key
    return starts[-1]


def _orders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: int, memory: int | str, buckets: int | None) -> Counter[tuple[str, ...]]:
    """The orders of 4 one-member samples of 1 KB in two tars over ``runs`` seeded in-process runs
    (``buckets``: forced, else planned)."""
    samples = [((f"k{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i]) * 100),) for i in range(4)]
    paths = [tmp_path / "a.tar", tmp_path / "b.tar"]
    paths[0].write_bytes(tar_bytes(samples[:2]))
    paths[1].write_bytes(tar_bytes(samples[2:]))
    if buckets is not None:
        monkeypatch.setattr(dask_tars, "tar_bucket_count", lambda *args: buckets)
    counts: Counter[tuple[str, ...]] = Counter()
    deepest = 0
    with ThreadPoolExecutor(1) as runner:
        for seed in range(runs):
            stats = dask_engine.shuffle(
                paths, tmp_path / "out.tar", memory=memory, seed=seed, runner=runner, tmp_dir=tmp_path, sync=False,
            )
            deepest = max(deepest, stats.passes)
            counts[tuple(s[0][0] for s in _read((tmp_path / "out.tar").read_bytes()))] += 1
    assert deepest > 2 if buckets == 1 else deepest == 2
    return counts


@pytest.mark.parametrize("memory,buckets", [("16K", None), (5500, 1)])
def test_every_order_of_samples_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: int | str, buckets: int | None) -> None:
    # 16K: 6 buckets that always fit. 5500 bytes leave 4128 for a bucket: forced into one bucket, the
    # 4 samples (4 KB with their lengths and bookkeeping) never fit and are scattered again every run.
    counts = _orders(tmp_path, monkeypatch, 192, memory, buckets)
    assert_uniform(counts, list(permutations([f"k{i}.bin" for i in range(4)])), f"dask tars, -S {memory}")


@pytest.mark.slow
def test_s3_tars_in_and_shards_out(bucket: Any, tmp_path: Path) -> None:
    # Tasks in-process, every object on the S3 API that moto serves on loopback.
    name = bucket.bucket
    paths, every = _inputs(tmp_path, (30, 20))
    bucket.pipe(f"{name}/in/a.tar", paths[0].read_bytes())
    bucket.pipe(f"{name}/in/b.tar.gz", compress("gzip", paths[1].read_bytes()))
    stats = _shuffle([f"s3://{name}/in/*.tar*"], f"s3://{name}/out/", tmp_path, memory="32K", seed=2, shards=3,
                     temp_url=f"s3://{name}/tmp/", verify=True, compress="zstd")
    assert stats.records == 50
    names = sorted(bucket.ls(f"{name}/out", detail=False))
    assert names == [f"{name}/out/_SUCCESS"] + [f"{name}/out/part-0000{i}.tar.zst" for i in range(3)]
    shards = [_read(decompress("zstd", bucket.cat(n))) for n in names[1:]]
    assert [len(s) for s in shards] == [16, 17, 17]
    _assert_permutation([x for s in shards for x in s], every)
    assert bucket.find(f"{name}/tmp") == []
    assert sorted(os.listdir(tmp_path)) == ["in-0.tar", "in-1.tar"]


def test_what_spans_tars_is_refused_naming_both(tmp_path: Path) -> None:
    a, b = _samples(3, 0), _samples(3, 1)
    (tmp_path / "a.tar").write_bytes(tar_bytes(a))
    (tmp_path / "b.tar").write_bytes(tar_bytes([a[2][:1]] + b))  # a's last key again, first in b
    (tmp_path / "c.tar").write_bytes(tar_bytes(b[1:2]))  # b's second sample again
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"b\.tar: sample s/0000002 continues from the end of .*a\.tar; a sample must be within one tar"):
        _shuffle([tmp_path / "a.tar", tmp_path / "b.tar"], f"{out}/", tmp_path, shards=2, memory="32K")
    with pytest.raises(InputError, match=r"c\.tar: sample s/0100001 \(member s/0100001\.jpg\) is also in .*b\.tar"):
        _shuffle([tmp_path / "b.tar", tmp_path / "c.tar"], f"{out}/", tmp_path, shards=2, memory="32K")
    with pytest.raises(InputError, match=r"b\.tar: given twice \(sample s/0000002 is in both\)"):
        _shuffle([tmp_path / "b.tar", tmp_path / "b.tar"], tmp_path / "o.tar", tmp_path, memory="32K")
    assert sorted(os.listdir(tmp_path)) == ["a.tar", "b.tar", "c.tar"]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bigshuf", "--engine=dask", *args], capture_output=True, timeout=TIMEOUT, cwd=cwd)


@pytest.mark.slow
def test_truncated_tar_fails_in_a_task_on_the_default_cluster(tmp_path: Path) -> None:
    paths, _ = _inputs(tmp_path, (10, 10))
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:3000])
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = _cli(["-T", str(temp), "-S", "32K", "in-0.tar", "in-1.tar", "--shards=2", "-o", "out/"], tmp_path)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr.startswith(b"bigshuf: in-1.tar: truncated") and proc.stderr.count(b"\n") == 1, proc.stderr
    assert os.listdir(temp) == []
    assert sorted(os.listdir(tmp_path)) == ["in-0.tar", "in-1.tar", "temp"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["a.tar", "-o", "o.jsonl"],
         b"bigshuf: o.jsonl: tar samples are written as a tar; give -o a tar name (.tar, .tar.gz or .tgz, .tar.zst, .tar.bz2, .tar.xz) "
         b"or a directory\n"),
        (["-z", "a.tar", "-o", "o.tar"], b"bigshuf: -z: not available for WebDataset tar shards (samples, not lines)\n"),
    ],
)
def test_refusals_are_one_line(tmp_path: Path, args: list[str], message: bytes) -> None:
    (tmp_path / "a.tar").write_bytes(tar_bytes(_samples(2, 0)))
    proc = _cli(args, tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"", message)
    assert os.listdir(tmp_path) == ["a.tar"]


def test_library_engine_dask_with_a_runner(tmp_path: Path) -> None:
    # bigshuf.shuffle(..., engine="dask") takes an executor as its scheduler.
    paths, every = _inputs(tmp_path, (15, 15))
    with ThreadPoolExecutor(2) as runner:
        stats = bigshuf.shuffle(paths, tmp_path / "o.tar", engine="dask", scheduler=runner, memory="32K", seed=1, verify=True)
    assert stats.records == 30
    _assert_permutation(_read((tmp_path / "o.tar").read_bytes()), every)


def test_standard_output(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    # A single tar to standard output (not a terminal): one task's part, copied out by the client.
    paths, every = _inputs(tmp_path, (12, 9))
    _shuffle(paths, None, tmp_path, memory="32K", seed=3)
    out = capfdbinary.readouterr().out
    assert out.endswith(END)
    _assert_permutation(_read(out), every)
    assert sorted(os.listdir(tmp_path)) == ["in-0.tar", "in-1.tar"]


def test_dry_run_plans_one_task_pertar_bytes(tmp_path: Path) -> None:
    _inputs(tmp_path, (5, 5))
    proc = _cli(["--dry-run", "-S", "64K", "in-0.tar", "in-1.tar", "--shards=2", "-o", "out/"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert "records: unknown (tar samples are counted as pass 1 reads them)" in lines
    assert any(line.startswith("path: Dask tasks, 2 passes,") and line.endswith("2 pass-1 tasks, one per tar, each reading blocks of up to 12.0 KiB")
               for line in lines), lines
    assert any(line.endswith("out/part-00000.tar ... out/part-00001.tar (2 shards)") for line in lines), lines
    assert sorted(os.listdir(tmp_path)) == ["in-0.tar", "in-1.tar"]


def test_weighted_sources_as_the_local_engine_weighs_them(tmp_path: Path) -> None:
    # The same rates, counts per source and per split, and manifest entries as the local engine; each
    # sample in the mix once, every member as it was.
    paths, every = _inputs(tmp_path, (30, 20, 25))
    sources = {"web": [str(paths[0]), str(paths[1])], "code": [str(paths[2])]}
    runs: dict[str, Any] = {}
    for engine in ("dask", "local"):
        with ThreadPoolExecutor(2) as runner:
            extra: dict[str, Any] = {"engine": "dask", "scheduler": runner} if engine == "dask" else {}
            mixed = bigshuf.shuffle(None, tmp_path / f"{engine}.tar", sources=sources, mix={"web": 0.6, "code": 0.4}, total=40,
                                    memory="32K", seed=3, verify=True, **extra)
            split = bigshuf.shuffle(None, str(tmp_path / f"{engine}-{{split}}.tar"), sources=sources, rates={"web": 0.5},
                                    split="valid=10,train=rest", stratify=True, manifest=tmp_path / f"{engine}.json",
                                    memory="32K", seed=3, **extra)
        runs[engine] = (mixed.sources, split.sources, json.loads((tmp_path / f"{engine}.json").read_text()))
        got = _read((tmp_path / f"{engine}.tar").read_bytes())
        assert len(got) == 40 and not Counter(got) - Counter(every)
        valid, train = (_read((tmp_path / f"{engine}-{n}.tar").read_bytes()) for n in ("valid", "train"))
        assert (len(valid), len(train)) == (10, 40) and not Counter(valid + train) - Counter(every)
        assert sum(1 for x in valid + train if x in every[50:]) == 25  # every code sample, once
    (dask_mixed, dask_split, dask_doc), (local_mixed, local_split, local_doc) = runs["dask"], runs["local"]
    assert dask_mixed == local_mixed and [s.written for s in dask_mixed] == [24, 16]
    assert dask_split == local_split
    for entry in ("sources", "stratified", "inputs", "format", "kind"):
        assert dask_doc[entry] == local_doc[entry], entry


def test_a_mix_needing_a_rate_above_one_is_refused(tmp_path: Path) -> None:
    # Both engines read the tar format's refusal of copies (core.mix.refuse_copies, where the rates are resolved): one message.
    paths, _ = _inputs(tmp_path, (10, 10))
    messages = []
    with ThreadPoolExecutor(1) as runner:
        for extra in ({"engine": "dask", "scheduler": runner}, {}):
            with pytest.raises(UsageError, match=r"^source 'a': rate 1\.8 would write samples twice") as refused:
                bigshuf.shuffle(None, tmp_path / "o.tar", sources={"a": [paths[0]], "b": [paths[1]]}, mix={"a": 0.9, "b": 0.1},
                                total=20, memory="32K", seed=1, **extra)
            messages.append(str(refused.value))
    assert messages[0] == messages[1], messages
    assert sorted(os.listdir(tmp_path)) == ["in-0.tar", "in-1.tar"]


def test_every_ordered_pick_of_a_source_equally_likely(tmp_path: Path) -> None:
    # A source of 4 samples at rate 1/2: which 2 are in the mix and in what order, over all 12 outcomes.
    samples = [((f"k{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i]) * 100),) for i in range(4)]
    (tmp_path / "a.tar").write_bytes(tar_bytes(samples[:2]))
    (tmp_path / "b.tar").write_bytes(tar_bytes(samples[2:]))
    counts: Counter[tuple[str, ...]] = Counter()
    with ThreadPoolExecutor(1) as runner:
        for seed in range(144):
            bigshuf.shuffle(None, tmp_path / "o.tar", sources={"s": [tmp_path / "a.tar", tmp_path / "b.tar"]}, rates={"s": 0.5},
                            engine="dask", scheduler=runner, memory="16K", seed=seed, sync=False, tmp_dir=tmp_path)
            counts[tuple(s[0][0] for s in _read((tmp_path / "o.tar").read_bytes()))] += 1
    assert_uniform(counts, list(permutations([f"k{i}.bin" for i in range(4)], 2)), "dask tars, rate 1/2")


def test_library_refusals_before_anything_runs(tmp_path: Path) -> None:
    # engines.dask.shuffle called directly tells tars by their names or first block, as the local engine does.
    (tmp_path / "a.tar").write_bytes(tar_bytes(_samples(2, 0)))
    (tmp_path / "noname").write_bytes(tar_bytes(_samples(2, 1)))
    (tmp_path / "lines.txt").write_bytes(b"a\nb\n")
    with pytest.raises(UsageError, match=r"a\.tar is a tar archive and .*lines\.txt is not: shuffle WebDataset tars in a run of their own"):
        _shuffle([tmp_path / "a.tar", tmp_path / "lines.txt"], tmp_path / "o.tar", tmp_path)
    with pytest.raises(UsageError, match=r"^zero_terminated=True: not available for WebDataset tar shards"):
        _shuffle([tmp_path / "a.tar", tmp_path / "noname"], tmp_path / "o.tar", tmp_path, zero_terminated=True)
    with pytest.raises(UsageError, match=r"o\.jsonl: tar samples are written as a tar"):
        _shuffle([tmp_path / "noname"], tmp_path / "o.jsonl", tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["a.tar", "lines.txt", "noname"]


def _copies(tmp_path: Path) -> list[Path]:
    """Two tars of 12 samples whose data repeat under other keys: 9 distinct samples in all."""
    paths = [tmp_path / "u1.tar", tmp_path / "u2.tar"]
    paths[0].write_bytes(tar_bytes([((f"a/{i:02d}.txt", 0o644, i, 0, 0, "", "", b"d%d" % (i % 6) * 150),) for i in range(12)]))
    paths[1].write_bytes(tar_bytes([((f"b/{i:02d}.txt", 0o600, i, 0, 0, "", "", b"d%d" % (i % 9) * 150),) for i in range(12)]))
    return paths


@pytest.mark.parametrize("memory", ["64K", "12K"])
def test_unique_keeps_the_local_engines_first_copies(tmp_path: Path, memory: str) -> None:
    # The first copy in reading order of each sample (its suffixes and data), with its own name and
    # metadata, as the local engine keeps it; at 12K the hash buckets are split again.
    paths = _copies(tmp_path)
    dask = _shuffle(paths, tmp_path / "d.tar", tmp_path, memory=memory, seed=1, unique=True, verify=True)
    local = bigshuf.shuffle(paths, tmp_path / "l.tar", memory=memory, seed=1, unique=True)
    assert (dask.records, dask.duplicates) == (local.records, local.duplicates) == (9, 15)
    assert dask.passes > (3 if memory == "12K" else 2)
    got = _read((tmp_path / "d.tar").read_bytes())
    assert Counter(got) == Counter(_read((tmp_path / "l.tar").read_bytes()))
    assert {s[0][0] for s in got} == {f"a/{i:02d}.txt" for i in range(6)} | {f"b/{i:02d}.txt" for i in range(6, 9)}


def test_unique_with_weighted_sources(tmp_path: Path) -> None:
    paths = _copies(tmp_path)
    sources = {"x": [str(paths[0])], "y": [str(paths[1])]}
    with ThreadPoolExecutor(2) as runner:
        dask = bigshuf.shuffle(None, tmp_path / "d.tar", sources=sources, rates={"y": Fraction(2, 3)}, unique=True, engine="dask",
                               scheduler=runner, memory="64K", seed=1)
    local = bigshuf.shuffle(None, tmp_path / "l.tar", sources=sources, rates={"y": Fraction(2, 3)}, unique=True, memory="64K", seed=1)
    assert dask.sources == local.sources and dask.duplicates == local.duplicates == 15
    assert [(s.read, s.written, s.dropped) for s in dask.sources] == [(12, 6, 6), (12, 2, 9)]
    assert len(_read((tmp_path / "d.tar").read_bytes())) == 8


def test_every_order_of_unique_samples_equally_likely(tmp_path: Path) -> None:
    # 6 samples, 2 of them copies of others under other keys: the 4 kept, in every order alike.
    samples = [((f"k{i}.bin", 0o644, 0, 0, 0, "", "", bytes([i % 4]) * 100),) for i in range(6)]
    (tmp_path / "a.tar").write_bytes(tar_bytes(samples[:3]))
    (tmp_path / "b.tar").write_bytes(tar_bytes(samples[3:]))
    counts: Counter[tuple[str, ...]] = Counter()
    with ThreadPoolExecutor(1) as runner:
        for seed in range(144):
            dask_engine.shuffle([tmp_path / "a.tar", tmp_path / "b.tar"], tmp_path / "o.tar", memory="16K", seed=seed, runner=runner,
                                tmp_dir=tmp_path, sync=False, unique=True)
            counts[tuple(s[0][0] for s in _read((tmp_path / "o.tar").read_bytes()))] += 1
    assert_uniform(counts, list(permutations([f"k{i}.bin" for i in range(4)])), "dask tars --unique")
