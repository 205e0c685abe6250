"""The Dask engine: exact permutations on a 2-worker LocalCluster, on local files and on an S3 API
served by moto on loopback; the same seed gives the same bytes for 1 and 2 workers and for the
in-process runner; uniformity by chi-square over fixed seeds (tasks run in-process); a worker
killed mid-run; one-line errors with nothing left behind.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest

import bigshuf
from bigshuf.core import plan
from bigshuf.engines import dask as dask_engine
from bigshuf.errors import InputError, OutputError
from bigshuf.engines.dask import lines as dask_lines
from helpers import assert_permutation, compress, decompress, make_records, split_records, write_records
from test_uniformity import assert_uniform, records_of

distributed = pytest.importorskip("distributed")

#: Generous bound for one CLI run against a cluster (they take a few seconds).
TIMEOUT = 180


def run_bigshuf(args: list[str], env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """``python -m bigshuf ARGS`` -> (returncode, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=TIMEOUT, env=env,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _start_cluster(workers: int, scratch: Path) -> Any:
    import dask
    from distributed import LocalCluster

    with dask.config.set({"temporary-directory": str(scratch)}):
        return LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR, local_directory=str(scratch),
        )


@pytest.fixture(scope="module")
def cluster(s3: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A LocalCluster of 2 single-threaded worker processes; yields its scheduler address."""
    c = _start_cluster(2, tmp_path_factory.mktemp("scratch"))
    yield c.scheduler_address
    c.close()


def _inputs(tmp_path: Path, seed: int = 0) -> tuple[list[Path], list[bytes]]:
    """Three local inputs: records of 0-300 bytes, one file lacking its final newline, one empty."""
    a = make_records(700, seed, max_len=300)
    b = make_records(500, seed + 1, max_len=40)
    paths = [
        write_records(tmp_path / "a.txt", a),
        write_records(tmp_path / "b.txt", b, final_sep=False),
        write_records(tmp_path / "empty.txt", []),
    ]
    return paths, a + b


@pytest.mark.slow
def test_local_files_on_two_workers(cluster: str, tmp_path: Path) -> None:
    paths, records = _inputs(tmp_path)
    temp = tmp_path / "temp"
    temp.mkdir()
    out = tmp_path / "out.txt"
    code, _, err = run_bigshuf(
        ["--engine=dask", f"--scheduler={cluster}", f"--temp-url={temp}", "-S", "16K", "--verify", "--seed=3",
         *map(str, paths), "-o", str(out)]
    )
    assert (code, err) == (0, b"")
    got = assert_permutation(out.read_bytes(), records)
    assert got != records  # the chance that a shuffle of 1200 records is the identity is 1/1200!
    assert os.listdir(temp) == []
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt", "empty.txt", "out.txt", "temp"]


@pytest.mark.slow
def test_same_seed_same_bytes_for_one_and_two_workers(cluster: str, tmp_path: Path) -> None:
    paths, records = _inputs(tmp_path, seed=7)
    options: dict[str, Any] = dict(memory="16K", seed=11, shards=3, compress="gzip")
    outputs = {}
    one = _start_cluster(1, tmp_path / "scratch1")
    try:
        for label, address in (("one", one.scheduler_address), ("two", cluster)):
            target = tmp_path / label
            dask_engine.shuffle(paths, f"{target}/", scheduler=address, temp_url=str(tmp_path), **options)
            outputs[label] = [p.read_bytes() for p in sorted(target.iterdir())]
    finally:
        one.close()
    with ThreadPoolExecutor(1) as runner:
        dask_engine.shuffle(paths, f"{tmp_path / 'inproc'}/", runner=runner, tmp_dir=tmp_path, **options)
    outputs["in-process"] = [p.read_bytes() for p in sorted((tmp_path / "inproc").iterdir())]
    assert outputs["one"] == outputs["two"] == outputs["in-process"]
    shards = [split_records(gzip.decompress(blob)) for blob in outputs["two"]]
    assert sorted(len(s) for s in shards) == [400, 400, 400]
    assert Counter(r for s in shards for r in s) == Counter(records)


def test_shards_are_consecutive_pieces_of_the_single_output(tmp_path: Path) -> None:
    # With -S small enough for more buckets than shards, the bucket count (and so the
    # permutation) does not depend on --shards: the shards, in order, are the single output.
    paths, records = _inputs(tmp_path, seed=2)
    with ThreadPoolExecutor(2) as runner:
        single = tmp_path / "single.txt"
        stats = dask_engine.shuffle(paths, single, memory="16K", seed=5, runner=runner, tmp_dir=tmp_path)
        assert stats.buckets > 7
        dask_engine.shuffle(paths, str(tmp_path / "part-{}.txt"), memory="16K", seed=5, runner=runner,
                            tmp_dir=tmp_path, shards=7)
    shards = [(tmp_path / f"part-{i}.txt").read_bytes() for i in range(7)]
    assert [len(split_records(s)) for s in shards] == [len(records) * (i + 1) // 7 - len(records) * i // 7 for i in range(7)]
    assert b"".join(shards) == single.read_bytes()
    assert_permutation(single.read_bytes(), records)


@pytest.mark.parametrize("memory", ["1K", "4K", "16K", "1M"])
@pytest.mark.parametrize("sep", [b"\n", b"\0"])
def test_ranges_split_at_record_boundaries(tmp_path: Path, memory: str, sep: bytes) -> None:
    # Ranges of 192 bytes to 250 KB over records of 0-400 bytes: records cross range ends,
    # span whole ranges, and the last one lacks its separator.
    records = make_records(300, 9, max_len=400, sep=sep)
    path = write_records(tmp_path / "in", records, sep=sep, final_sep=False)
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle([path], tmp_path / "out", memory=memory, seed=1, runner=runner, tmp_dir=tmp_path,
                            zero_terminated=sep == b"\0", verify=True)
    assert_permutation((tmp_path / "out").read_bytes(), records, sep)
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


def test_buckets_too_big_for_a_task_are_split_again(tmp_path: Path) -> None:
    # 1K leaves 768 bytes to shuffle a bucket in: buckets of a few 300-400-byte records
    # overflow and are scattered again inside their pass-2 task, as the local engine recurses.
    records = make_records(300, 9, min_len=300, max_len=400)
    path = write_records(tmp_path / "in", records)
    with ThreadPoolExecutor(2) as runner:
        stats = dask_engine.shuffle([path], tmp_path / "out", memory="1K", seed=1, runner=runner, tmp_dir=tmp_path,
                                    verify=True)
    assert stats.passes >= 3
    assert_permutation((tmp_path / "out").read_bytes(), records)
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]


def test_a_bucket_split_past_the_deepest_level_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The depth guard of both engines (``core.level.sublevel_buckets``): the local driver's message, nothing left."""
    monkeypatch.setattr(plan, "MAX_DEPTH", 0)
    records = make_records(60, 9, min_len=300, max_len=400)
    path = write_records(tmp_path / "in", records)
    with ThreadPoolExecutor(2) as runner, pytest.raises(InputError, match="records could not be split below 1.0 KiB after 1 passes"):
        dask_engine.shuffle([path], tmp_path / "out", memory="1K", seed=1, runner=runner, tmp_dir=tmp_path)
    assert os.listdir(tmp_path) == ["in"]


def test_head_count_and_compressed_inputs(tmp_path: Path) -> None:
    records = make_records(600, 4, max_len=120)
    data = b"".join(r + b"\n" for r in records)
    paths = []
    for codec, suffix in (("zstd", ".zst"), ("gzip", ".gz"), ("bzip2", ".bz2")):
        path = tmp_path / f"in{suffix}"
        path.write_bytes(compress(codec, data))
        paths.append(path)
    with ThreadPoolExecutor(2) as runner:
        stats = dask_engine.shuffle(paths, tmp_path / "out.zst", memory="8K", seed=2, runner=runner, tmp_dir=tmp_path,
                                    head_count=1000)
    got = split_records(decompress("zstd", (tmp_path / "out.zst").read_bytes()))
    assert stats.records == len(got) == 1000
    assert not Counter(got) - Counter(records * 3)


def test_a_compressed_line_is_as_long_as_a_plain_ones_may_be(tmp_path: Path) -> None:
    """A line of 200 bytes at -S 1K: the local engine and Dask on the plain file take it; Dask on the
    gzip file refused it ("longer than 192 bytes": its blocks were a range's bytes, a quarter of the
    budget; found by a statistical audit). A longer record grows the block, as in a plain file."""
    records = [b"%d:" % i + b"0" * 196 for i in range(4)]
    data = b"".join(r + b"\n" for r in records)
    (tmp_path / "in.txt").write_bytes(data)
    (tmp_path / "in.txt.gz").write_bytes(gzip.compress(data))
    with ThreadPoolExecutor(2) as runner:
        for i, name in enumerate(("in.txt", "in.txt.gz")):
            out = tmp_path / f"out-{i}.txt"
            dask_engine.shuffle([tmp_path / name], out, memory="1K", seed=1, runner=runner, tmp_dir=tmp_path)
            assert_permutation(out.read_bytes(), records)


@pytest.mark.parametrize(
    "options",
    [{"shards": 2}, {"shards": 2, "compress": "zstd"}, {"shard_records": 250}, {"shards": 2, "compress": "none"}],
)
def test_a_shard_directory_is_named_and_compressed_as_the_local_engine_does(tmp_path: Path, options: dict[str, Any]) -> None:
    """``-o dir/`` of .jsonl.gz inputs: the local engine writes part-00000.jsonl.gz (gzip); the Dask
    engine wrote part-00000, plain, and part-00000.zst under --compress zstd (found by a new user)."""
    import bigshuf

    records = make_records(600, 8, max_len=60)
    paths = []
    for i in range(2):
        path = tmp_path / f"in{i}.jsonl.gz"
        path.write_bytes(compress("gzip", b"".join(r + b"\n" for r in records[i * 300 : (i + 1) * 300])))
        paths.append(path)
    local, remote = tmp_path / "local", tmp_path / "dask"
    bigshuf.shuffle(paths, f"{local}/", memory="16K", seed=1, tmp_dir=tmp_path, **options)
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle(paths, f"{remote}/", memory="16K", seed=1, runner=runner, tmp_dir=tmp_path, **options)
    names = sorted(p.name for p in local.iterdir())
    assert sorted(p.name for p in remote.iterdir()) == names
    suffix = {None: ".jsonl.gz", "zstd": ".jsonl.zst", "none": ".jsonl"}[options.get("compress")]
    assert names[0] == "part-00000" + suffix and len(names) >= 2
    codec = {".jsonl.gz": "gzip", ".jsonl.zst": "zstd"}.get(suffix)
    got = [r for name in names for r in split_records(decompress(codec, (remote / name).read_bytes()) if codec else (remote / name).read_bytes())]
    assert Counter(got) == Counter(records)


def test_a_file_url_output_is_written_as_the_local_path_it_names(tmp_path: Path) -> None:
    """``-o file:///dir/`` was written in place through fsspec, unchecked: shard 0 went into a directory
    of its name (exit 0, half the records where no reader looks), stale shards were left beside the
    new ones, and a missing directory failed the run at its end (found by attack)."""
    from bigshuf.errors import OutputError

    paths, records = _inputs(tmp_path)
    url = f"file://{tmp_path}"
    (tmp_path / "taken" / "part-00000.txt").mkdir(parents=True)
    (tmp_path / "taken" / "part-00000.txt" / "data").write_bytes(b"keep\n")
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "part-00002.txt").write_bytes(b"old\n")
    with ThreadPoolExecutor(2) as runner:
        with pytest.raises(OutputError, match="taken/part-00000.txt'?: Is a directory$"):
            dask_engine.shuffle(paths, f"{url}/taken/", memory="16K", seed=1, shards=2, runner=runner, tmp_dir=tmp_path)
        with pytest.raises(OutputError, match="stale/part-00002.txt'?: is not one of the 2 shards this run writes"):
            dask_engine.shuffle(paths, f"{url}/stale/", memory="16K", seed=1, shards=2, runner=runner, tmp_dir=tmp_path)
        dask_engine.shuffle(paths, f"{url}/new/dir/", memory="16K", seed=1, shards=2, runner=runner, tmp_dir=tmp_path)
    assert sorted(os.listdir(tmp_path / "taken")) == ["part-00000.txt"] and os.listdir(tmp_path / "taken" / "part-00000.txt") == ["data"]
    assert sorted(os.listdir(tmp_path / "stale")) == ["part-00002.txt"]
    shards = sorted((tmp_path / "new" / "dir").iterdir())
    assert [p.name for p in shards] == ["part-00000.txt", "part-00001.txt"]
    assert_permutation(b"".join(p.read_bytes() for p in shards), records)
    # Local, so a manifest goes with it (it was refused as for URL outputs), by either kind of name.
    import bigshuf.api

    for manifest in (f"{url}/m/m.json", str(tmp_path / "m" / "n.json")):
        with ThreadPoolExecutor(2) as runner:
            bigshuf.shuffle(paths, f"{url}/m/", engine="dask", scheduler=runner, seed=1, shards=2, manifest=manifest, tmp_dir=tmp_path)
        problems, summary = bigshuf.api.check_manifest(manifest.removeprefix("file://"))
        assert problems == [] and summary.startswith("2 output file(s) match"), (problems, summary)
    # The plan takes both as the run does: a manifest on a shard's name fails its output check (it said ok).
    with ThreadPoolExecutor(1) as runner:
        found = bigshuf.api.plan_shuffle(
            paths, f"{url}/m/", engine="dask", scheduler=runner, shards=2, manifest=f"{url}/m/part-00000.txt", tmp_dir=str(tmp_path)
        )
    assert [(c.name, c.reason) for c in found.failures] == [("output", f"{tmp_path}/m/part-00000.txt: the manifest would be written over an output")]


def test_a_local_temp_url_must_exist_and_its_run_directory_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing local ``--temp-url`` was made (parents too) and left behind after the run, and the
    run's directory under an existing one was made by fsspec as any directory (0755), so pass 1's
    buckets could be read by every user. Now the first is refused as a missing ``-T`` is, and the
    second is made 0700 as the local scratch directory is."""
    from bigshuf.errors import TempSpaceError
    from bigshuf.storage import remote

    paths, records = _inputs(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    modes: set[int] = set()
    write_whole = remote.write_whole

    def watched(name: str, write: Any) -> None:
        if name.startswith(str(shared) + os.sep):
            run_dir = shared / Path(name).relative_to(shared).parts[0]
            modes.add(os.stat(run_dir).st_mode & 0o777)
        write_whole(name, write)

    monkeypatch.setattr(remote, "write_whole", watched)
    with ThreadPoolExecutor(2) as runner:
        for missing in (str(tmp_path / "missing" / "tmp"), f"file://{tmp_path}/missing/tmp"):
            with pytest.raises(TempSpaceError, match="missing/tmp: No such file or directory$"):
                dask_engine.shuffle(paths, tmp_path / "out.txt", memory="16K", seed=1, runner=runner,
                                    tmp_dir=tmp_path, temp_url=missing)
        assert not (tmp_path / "missing").exists() and not (tmp_path / "out.txt").exists()
        # A file is no directory, and an empty name no place (they were "No such file or directory", "': ...").
        (tmp_path / "afile").write_bytes(b"")
        with pytest.raises(TempSpaceError, match="afile: Not a directory$"):
            dask_engine.shuffle(paths, tmp_path / "out.txt", runner=runner, tmp_dir=tmp_path, temp_url=str(tmp_path / "afile"))
        with pytest.raises(bigshuf.UsageError, match="^invalid temp_url= value: ''$"):
            dask_engine.shuffle(paths, tmp_path / "out.txt", runner=runner, tmp_dir=tmp_path, temp_url="")
        (tmp_path / "afile").unlink()
        dask_engine.shuffle(paths, tmp_path / "out.txt", memory="16K", seed=1, runner=runner, tmp_dir=tmp_path,
                            temp_url=str(shared))
    assert modes == {0o700}
    assert os.listdir(shared) == []
    assert_permutation((tmp_path / "out.txt").read_bytes(), records)


def test_head_count_zero_opens_no_input(tmp_path: Path) -> None:
    """``-n 0`` draws nothing, and shuf (and the local engine) open no input for it; the Dask engine
    read its inputs first and failed on a missing one. Its empty outputs (shards, a manifest, by a
    local path or a file:// URL) are written and planned as the local engine writes them."""
    missing = str(tmp_path / "missing.txt")
    with ThreadPoolExecutor(1) as runner:
        stats = bigshuf.shuffle([missing], f"file://{tmp_path}/out/", engine="dask", scheduler=runner, head_count=0,
                                shards=2, manifest=f"file://{tmp_path}/m.json")
        found = bigshuf.api.plan_shuffle([missing], str(tmp_path / "one.txt"), engine="dask", scheduler=runner, head_count=0)
    assert stats.records == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-00000.txt", "part-00001.txt"]
    assert all(p.stat().st_size == 0 for p in (tmp_path / "out").iterdir())
    problems, summary = bigshuf.api.check_manifest(str(tmp_path / "m.json"))
    assert problems == [] and summary.startswith("2 output file(s) match"), (problems, summary)
    assert found.ok and found.failures == ()
    # What the Dask run refuses before it reads anything is refused still (it was skipped: found by review).
    src = tmp_path / "a.txt"
    src.write_bytes(b"a\n")
    for settings, message in (
        ({"scheduler": ""}, "invalid scheduler= value: '': an address like tcp://host:8786 is needed"),
        ({"temp_url": str(tmp_path / "gone")}, f"{tmp_path / 'gone'}: No such file or directory"),
    ):
        with pytest.raises(bigshuf.BigShufError) as caught:
            bigshuf.shuffle([str(src)], tmp_path / "o.txt", engine="dask", head_count=0, **settings)
        assert str(caught.value) == message
        plan = bigshuf.api.plan_shuffle([str(src)], tmp_path / "o.txt", engine="dask", head_count=0, **settings)
        assert not plan.ok
    assert not (tmp_path / "o.txt").exists()


def test_head_count_zero_lists_no_url(tmp_path: Path) -> None:
    """``-n 0`` on the local engine listed its URL inputs first (asking the store for credentials,
    failing on a missing object), where shuf opens no input."""
    missing = "memory://bigshuf-test-nothing/a.txt"
    for engine in ("local", "dask"):
        with ThreadPoolExecutor(1) as runner:
            scheduler = runner if engine == "dask" else None
            stats = bigshuf.shuffle([missing], tmp_path / f"{engine}.txt", engine=engine, scheduler=scheduler, head_count=0)
        assert stats.records == 0 and (tmp_path / f"{engine}.txt").read_bytes() == b""


def test_head_count_into_a_local_file_written_in_place(tmp_path: Path) -> None:
    # Plain output to a local file: pass-2 tasks write their buckets at their offsets; with -n
    # the last part is a bucket's head, and the file ends there.
    paths, records = _inputs(tmp_path, seed=8)
    with ThreadPoolExecutor(2) as runner:
        full = dask_engine.shuffle(paths, tmp_path / "full.txt", memory="16K", seed=3, runner=runner, tmp_dir=tmp_path)
        head = dask_engine.shuffle(paths, tmp_path / "head.txt", memory="16K", seed=3, runner=runner, tmp_dir=tmp_path,
                                   head_count=555)
    assert (full.records, head.records) == (1200, 555)
    everything = assert_permutation((tmp_path / "full.txt").read_bytes(), records)
    assert split_records((tmp_path / "head.txt").read_bytes()) == everything[:555]


@pytest.mark.slow
def test_standard_output_and_the_scheduler_from_the_environment(cluster: str, tmp_path: Path) -> None:
    paths, records = _inputs(tmp_path, seed=9)
    env = dict(os.environ, DASK_SCHEDULER_ADDRESS=cluster)
    (tmp_path / "t").mkdir()
    code, out, err = run_bigshuf(["--engine=dask", f"--temp-url={tmp_path / 't'}", "-S", "16K", *map(str, paths)], env)
    assert (code, err) == (0, b"")
    assert_permutation(out, records)
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt", "empty.txt", "t"]
    assert os.listdir(tmp_path / "t") == []


def _seeded_orders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: int, buckets: int = 5, **options: Any
) -> tuple[Counter[tuple[bytes, ...]], int]:
    """Outputs of ``runs`` seeded in-process runs over 4 records of 250 bytes in two files,
    under -S 1K: 5 buckets, of which one holding 3 or 4 records does not fit and is split
    again (p=0.136 a run); ranges of 192 bytes, each owning one record or none. With
    ``buckets=1`` the one bucket never fits, so every run splits it into 5, and again any
    of those holding 3 or more records. Also returns in how many runs a bucket was split."""
    records = records_of(4, 250)
    paths = [write_records(tmp_path / "a", records[:2]), write_records(tmp_path / "b", records[2:])]
    shards = options.get("shards")
    counts: Counter[tuple[bytes, ...]] = Counter()
    resplit: set[int] = set()
    real = dask_lines._scatter_block

    def spy(block: Any, rng: Any, k: int, cfg: Any, name: str) -> Any:
        if "/p3/" in name:
            resplit.add(seed)
        return real(block, rng, k, cfg, name)

    monkeypatch.setattr(dask_lines, "_scatter_block", spy)
    if buckets != 5:
        monkeypatch.setattr(dask_lines, "_bucket_count", lambda *args: buckets)
    with ThreadPoolExecutor(1) as runner:
        for seed in range(runs):
            target = tmp_path / "out" if shards is None else str(tmp_path / "out-{}")
            stats = dask_engine.shuffle(paths, target, memory="1K", seed=seed, runner=runner, tmp_dir=tmp_path, **options)
            assert stats.buckets == (max(5, shards or 1) if buckets == 5 else buckets)
            if shards is None:
                data = (tmp_path / "out").read_bytes()
            else:
                data = b"".join((tmp_path / f"out-{i}").read_bytes() for i in range(shards))
            counts[tuple(split_records(data))] += 1
    return counts, len(resplit)


def test_every_permutation_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = records_of(4, 250)
    counts, resplit = _seeded_orders(tmp_path, monkeypatch, 600)
    assert_uniform(counts, [tuple(p) for p in permutations(records)], "dask")
    assert 40 <= resplit <= 130  # Binomial(600, 0.136): mean 82, sd 8.4


@pytest.mark.parametrize("shards", [None, 3])
def test_every_permutation_equally_likely_when_split_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: int | None
) -> None:
    # With shards, all three pass-2 tasks share the one bucket: each splits it again (the
    # same objects, rewritten) and writes its slice of the same permutation.
    records = records_of(4, 250)
    counts, resplit = _seeded_orders(tmp_path, monkeypatch, 360, buckets=1, shards=shards)  # 15 runs an order
    assert_uniform(counts, [tuple(p) for p in permutations(records)], f"dask split again, shards={shards}")
    assert resplit == 360


def test_every_ordered_sample_equally_likely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = records_of(4, 250)
    counts, _ = _seeded_orders(tmp_path, monkeypatch, 600, head_count=2)
    assert_uniform(counts, [tuple(p) for p in permutations(records, 2)], "dask -n 2")


@pytest.mark.slow
def test_s3_inputs_temp_and_output(cluster: str, bucket: Any, tmp_path: Path) -> None:
    name = bucket.bucket
    plain = make_records(900, 5, max_len=200)
    zipped = make_records(400, 6, max_len=60)
    bucket.pipe(f"{name}/in/a.jsonl", b"".join(r + b"\n" for r in plain))
    bucket.pipe(f"{name}/in/b.jsonl.zst", compress("zstd", b"".join(r + b"\n" for r in zipped)))
    bucket.pipe(f"{name}/out/_SUCCESS", b"stale")
    code, _, err = run_bigshuf([
        "--engine=dask", f"--scheduler={cluster}", f"s3://{name}/in/*", "--shards=3", "-o", f"s3://{name}/out/",
        f"--temp-url=s3://{name}/tmp/", "-S", "32K", "--compress=gzip", "--verify", "--seed=1",
    ])
    assert (code, err) == (0, b"")
    names = sorted(bucket.ls(f"{name}/out", detail=False))
    assert names == [f"{name}/out/_SUCCESS"] + [f"{name}/out/part-0000{i}.jsonl.gz" for i in range(3)]
    assert bucket.cat(f"{name}/out/_SUCCESS") == b""
    shards = [split_records(gzip.decompress(bucket.cat(n))) for n in names[1:]]
    assert sorted(len(s) for s in shards) == [433, 433, 434]
    assert Counter(r for s in shards for r in s) == Counter(plain + zipped)
    assert bucket.find(f"{name}/tmp") == []

    # A single output object, written from the parts by the client.
    code, _, err = run_bigshuf([
        "--engine=dask", f"--scheduler={cluster}", f"s3://{name}/in/a.jsonl", "-o", f"s3://{name}/all.txt",
        f"--temp-url=s3://{name}/tmp/", "-S", "32K",
    ])
    assert (code, err) == (0, b"")
    assert_permutation(bucket.cat(f"{name}/all.txt"), plain)
    assert bucket.find(f"{name}/tmp") == []


def _stall_writes(flags: str) -> None:
    """In a worker: make every object write drop a flag naming this process, then wait for
    ``flags/release`` (at most 60 s) half-way through its data."""
    from bigshuf.storage import remote
    real = remote.write_whole

    def stalled(name: str, write: Any) -> None:
        def half_then_wait(f: Any) -> None:
            class Stall:
                def __init__(self) -> None:
                    self.calls = 0

                def write(self, data: Any) -> int:
                    self.calls += 1
                    if self.calls == 2:
                        Path(flags, f"started-{os.getpid()}").touch()
                        deadline = time.monotonic() + 60
                        while not Path(flags, "release").exists() and time.monotonic() < deadline:
                            time.sleep(0.05)
                    return int(f.write(data))

            write(Stall())

        real(name, half_then_wait)

    remote.write_whole = stalled


def run_killing_a_worker(tmp_path: Path, args: list[str]) -> Path:
    """Run ``bigshuf --engine=dask ARGS`` on a 2-worker cluster, SIGKILL the worker whose task
    reached the stalled write, and check the run still ends well; return its ``--temp-url``."""
    flags, temp = tmp_path / "flags", tmp_path / "temp"
    flags.mkdir()
    temp.mkdir()
    c = _start_cluster(2, tmp_path / "scratch")
    try:
        with distributed.Client(c) as client:
            pids = set(client.run(os.getpid).values())
            client.run(_stall_writes, str(flags))
            proc = subprocess.Popen(
                [sys.executable, "-m", "bigshuf", "--engine=dask", f"--scheduler={c.scheduler_address}",
                 f"--temp-url={temp}", *args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 60
            started: list[str] = []
            while not started and time.monotonic() < deadline and proc.poll() is None:
                started = [n for n in os.listdir(flags) if n.startswith("started-")]
                time.sleep(0.05)
            assert started, "no task reached the stall"
            victim = int(started[0].split("-")[1])
            assert victim in pids
            os.kill(victim, signal.SIGKILL)
            (flags / "release").touch()
            _, err = proc.communicate(timeout=TIMEOUT)
            assert (proc.returncode, err) == (0, b"")
            assert victim not in set(client.run(os.getpid).values())
    finally:
        c.close()
    return temp


@pytest.mark.slow
def test_worker_killed_mid_run_output_still_exact(tmp_path: Path) -> None:
    paths, records = _inputs(tmp_path, seed=12)
    temp = run_killing_a_worker(
        tmp_path, ["-S", "16K", "--verify", "--seed=4", "--shards=2", *map(str, paths), "-o", str(tmp_path / "out") + "/"]
    )
    shards = [(tmp_path / "out" / f"part-0000{i}.txt").read_bytes() for i in range(2)]
    assert_permutation(b"".join(shards), records)
    assert os.listdir(temp) == []
    assert sorted(os.listdir(tmp_path / "out")) == ["part-00000.txt", "part-00001.txt"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.txt"], b"bigshuf: missing.txt: No such file or directory\n"),
        (["nosuch://x/y"], b"bigshuf: nosuch://x/y: Protocol not known: nosuch\n"),
        (["--header=1", "a.txt"], b"bigshuf: --engine=dask does not support --header\n"),
        (["-r", "a.txt"], b"bigshuf: --engine=dask does not support --repeat\n"),
        (["--resume", "--seed=1", "a.txt"], b"bigshuf: --engine=dask does not support --resume\n"),
        (["a.txt", "--scheduler=tcp://127.0.0.1:1"],
         b"bigshuf: --scheduler needs --temp-url: a place every worker can reach, e.g. s3://bucket/tmp/ "
         b"(or a local path if every worker runs on this machine)\n"),
        (["-"], b"bigshuf: --engine=dask cannot read standard input; name input files or URLs\n"),
        (["--shards=2", "a.txt"], b"bigshuf: --shards needs -o naming a directory or a pattern like out/part-{:05d}.jsonl\n"),
    ],
)
def test_errors_are_one_line_and_leave_nothing(tmp_path: Path, args: list[str], message: bytes) -> None:
    write_records(tmp_path / "a.txt", [b"x"])
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--engine=dask", "-T", str(temp), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT, cwd=tmp_path,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"", message)
    assert os.listdir(temp) == []
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "temp"]


def test_a_fifo_or_standard_input_by_name_is_one_line_and_the_plan_does_not_open_it(tmp_path: Path) -> None:
    """A FIFO or /dev/stdin given to the Dask engine was an internal TypeError from reading its first
    bytes, and --dry-run blocked on a FIFO without a writer (found by attack)."""
    os.mkfifo(tmp_path / "ff")
    message = b"bigshuf: %s: not a regular file: --engine=dask reads files and URLs by byte ranges\n"
    for args, name in ((["ff"], b"ff"), (["--dry-run", "ff"], b"ff"), (["/dev/stdin"], b"/dev/stdin")):
        proc = subprocess.run(
            [sys.executable, "-m", "bigshuf", "--engine=dask", *args, "-o", "o.txt"], input=b"a\nb\n", capture_output=True,
            timeout=TIMEOUT, cwd=tmp_path,
        )
        assert proc.returncode == 1
        if "--dry-run" in args:
            assert proc.stdout.endswith(b"failed: inputs: " + (message % name)[len(b"bigshuf: ") :])
        else:
            assert (proc.stdout, proc.stderr) == (b"", message % name)
    assert os.listdir(tmp_path) == ["ff"]


def test_a_local_name_holding_two_colons_is_a_path(tmp_path: Path) -> None:
    """fsspec reads ``x::y.txt`` as a chain of URLs: the Dask engine said "No such file or directory"
    for a file the local engine reads (found by attack)."""
    records = make_records(50, 3)
    write_records(tmp_path / "x::y.txt", records)
    with ThreadPoolExecutor(2) as runner:
        stats = dask_engine.shuffle([str(tmp_path / "x::y.txt")], tmp_path / "o.txt", seed=1, runner=runner, tmp_dir=tmp_path)
    assert stats.records == 50
    assert_permutation((tmp_path / "o.txt").read_bytes(), records)


def test_a_scheduler_from_the_environment_is_named_as_such(tmp_path: Path) -> None:
    """$DASK_SCHEDULER_ADDRESS without --temp-url was told "--scheduler needs --temp-url", an option
    the user had not given (found by a new user)."""
    write_records(tmp_path / "a.txt", [b"x"])
    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--engine=dask", "a.txt"], capture_output=True, timeout=TIMEOUT, cwd=tmp_path,
        env={**os.environ, "DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1"},
    )
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr == (
        b"bigshuf: a scheduler from $DASK_SCHEDULER_ADDRESS needs --temp-url: a place every worker can reach, "
        b"e.g. s3://bucket/tmp/ (or a local path if every worker runs on this machine)\n"
    )
    assert os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.slow
def test_failure_in_a_task_on_the_default_cluster(tmp_path: Path) -> None:
    # A record longer than -S allows is found by a pass-1 task on the cluster bigshuf starts.
    write_records(tmp_path / "in.txt", [b"short", b"y" * 4000, b"short too"])
    temp = tmp_path / "temp"
    temp.mkdir()
    code, out, err = run_bigshuf(["--engine=dask", "-T", str(temp), "-S", "2K", str(tmp_path / "in.txt"),
                                  "-o", str(tmp_path / "out.txt")])
    assert (code, out) == (1, b"")
    assert err.startswith(b"bigshuf: ") and err.count(b"\n") == 1 and b"raise -S" in err
    assert os.listdir(temp) == []
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "temp"]


def test_without_dask_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bigshuf import cli

    write_records(tmp_path / "a.txt", [b"x"])
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert cli.main(["--engine=dask", str(tmp_path / "a.txt")]) == 1
    assert capsys.readouterr().err == "bigshuf: --engine=dask needs Dask: pip install 'bigshuf[dask]'\n"


def test_local_engine_imports_neither_dask_nor_fsspec(tmp_path: Path) -> None:
    write_records(tmp_path / "a.txt", [b"1", b"2"])
    code = (
        "import sys, bigshuf, bigshuf.cli; "
        f"bigshuf.shuffle({str(tmp_path / 'a.txt')!r}, {str(tmp_path / 'o.txt')!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'fsspec', 's3fs')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, timeout=TIMEOUT, check=True)
    assert proc.stdout == b"[]\n"


@pytest.mark.slow
def test_bench_dask_smoke(tmp_path: Path) -> None:
    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_dask.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--size", "2M", "--reps", "1", "--scratch", str(tmp_path)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    for row in ("| cp |", "(local engine) |", "one output file |", "--shards=", "(fixed cost) |"):
        assert row in proc.stdout
    assert list(tmp_path.iterdir()) == []



@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs root")
def test_an_immutable_local_shard_fails_the_commit_and_keeps_every_old_shard(tmp_path: Path) -> None:
    # Issue 11 item 1 on the Dask engine: its commit removed the shards it had already moved
    # over old ones when a later move failed, losing the old and the new data alike.
    paths, records = _inputs(tmp_path, seed=8)
    out = tmp_path / "out"
    with ThreadPoolExecutor(1) as runner:
        dask_engine.shuffle(paths, f"{out}/", memory="16K", seed=1, shards=5, runner=runner, tmp_dir=tmp_path)
        old = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        locked = out / sorted(old)[3]
        if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
            pytest.skip("this file system does not take chattr +i")
        try:
            with pytest.raises(OutputError, match="Operation not permitted"):
                dask_engine.shuffle(paths, f"{out}/", memory="16K", seed=2, shards=5, runner=runner, tmp_dir=tmp_path)
        finally:
            subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == old
    assert Counter(r for blob in old.values() for r in split_records(blob)) == Counter(records)
    assert [n for n in os.listdir(out) if n.startswith(".")] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_replaced_shards_keep_their_mode_group_and_owner_and_the_scratch_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dask engine's shards took the runner's owner and 0644 where the local engine keeps the
    replaced file's (found by attack: a 0600 shard became readable by all), and its scratch
    directory, holding pass 1's records, was 0755."""
    paths, records = _inputs(tmp_path, seed=3)
    out = tmp_path / "pm"
    seen: dict[str, int] = {}
    real_remove = dask_engine.driver.remote.remove_tree

    def remove_tree(path: str) -> None:
        if os.path.isdir(path) and os.path.basename(path).startswith("bigshuf-dask-"):
            seen[path] = os.stat(path).st_mode & 0o777
        real_remove(path)

    monkeypatch.setattr(dask_engine.driver.remote, "remove_tree", remove_tree)
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle(paths, f"{out}/", seed=1, runner=runner, tmp_dir=tmp_path, shards=2)
        os.chmod(out / "part-00000.txt", 0o640)
        os.chown(out / "part-00000.txt", 0, 1)
        os.chown(out / "part-00001.txt", 65534, 0)
        os.chmod(out / "part-00001.txt", 0o600)
        dask_engine.shuffle(paths, f"{out}/", seed=2, runner=runner, tmp_dir=tmp_path, shards=2)
    kept = [(s.st_uid, s.st_gid, s.st_mode & 0o7777) for s in (os.stat(out / f"part-0000{i}.txt") for i in range(2))]
    assert kept == [(0, 1, 0o640), (65534, 0, 0o600)]
    assert_permutation((out / "part-00000.txt").read_bytes() + (out / "part-00001.txt").read_bytes(), records)
    assert seen and set(seen.values()) == {0o700}


@pytest.mark.parametrize("address", ["localhost", "tcp://h:notaport", "http://x:1"])
def test_a_malformed_scheduler_address_is_refused_in_one_line(tmp_path: Path, address: str) -> None:
    """``--scheduler localhost`` was "internal error: ValueError: missing port number"; the library raised ValueError."""
    src = tmp_path / "a.txt"
    src.write_bytes(b"a\nb\n")
    code, out, err = run_bigshuf(["--engine=dask", "--scheduler", address, "--temp-url", str(tmp_path), str(src), "-o", str(tmp_path / "o.txt")])
    assert (code, out) == (1, b"")
    assert err.startswith(f"bigshuf: --scheduler: '{address}' is not a scheduler address (like tcp://host:8786): ".encode())
    assert err.count(b"\n") == 1 and sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_an_empty_scheduler_address_is_refused(tmp_path: Path) -> None:
    """``--scheduler ''`` (an unset shell variable) started a local cluster as if no address were given."""
    src = tmp_path / "a.txt"
    src.write_bytes(b"a\nb\n")
    code, out, err = run_bigshuf(["--engine=dask", "--scheduler=", str(src), "-o", str(tmp_path / "o.txt")])
    assert (code, out, err) == (1, b"", b"bigshuf: invalid --scheduler value: '': an address like tcp://host:8786 is needed\n")
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_what_a_task_killed_while_writing_a_shard_left_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed while writing a shard left its part (``remote.local_part_name``) in the output
    directory; the retried task wrote the shard again and the run succeeded, leaving it there for
    good (found by attack). Here each shard's first attempt is cut off after its first bytes, as a
    kill leaves it."""
    from bigshuf.storage import remote

    paths, records = _inputs(tmp_path, seed=4)
    out = tmp_path / "o"
    real = dask_engine.tasks.remote.write_whole
    cut: set[str] = set()

    def write_whole(name: str, write: Any) -> None:
        if name.endswith(".bigshuf-tmp") and name not in cut:
            cut.add(name)
            with open(remote.local_part_name(name, "0123456789ab"), "wb") as f:
                f.write(b"a partial shard\n")
        real(name, write)

    monkeypatch.setattr(dask_engine.tasks.remote, "write_whole", write_whole)
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle(paths, f"{out}/", seed=1, runner=runner, tmp_dir=tmp_path, shards=3)
    assert len(cut) == 3
    assert sorted(os.listdir(out)) == ["part-00000.txt", "part-00001.txt", "part-00002.txt"]
    assert_permutation(b"".join((out / f"part-0000{i}.txt").read_bytes() for i in range(3)), records)


def test_a_part_left_by_a_killed_run_is_tidied_as_its_temporary_files_are(tmp_path: Path) -> None:
    """The part a worker writes a shard's temporary file under ended in ``.part``: a run killed with
    SIGKILL (its workers too) left it beside the outputs, and no later run removed it (found by
    review). Named so that it ends as the temporary file does, the next run there removes it with
    that run's other files once the run is gone, and leaves a live run's alone."""
    from bigshuf.storage import remote, tempspace

    out = tmp_path / "o"
    out.mkdir()
    dead = remote.local_part_name(str(out / ".part-00000.txt.aaaaaaaaaaaa-0.bigshuf-tmp"), "0123456789ab")
    live = remote.local_part_name(str(out / ".part-00000.txt.bbbbbbbbbbbb-0.bigshuf-tmp"), "0123456789ab")
    for name in (dead, live):
        Path(name).write_bytes(b"part of a shard\n")
    lock = out / ".bigshuf-bbbbbbbbbbbb.lock"
    lock.write_bytes(b"")
    import fcntl

    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        tempspace.remove_dead_outputs(str(out))
    assert sorted(os.listdir(out)) == sorted([".bigshuf-bbbbbbbbbbbb.lock", os.path.basename(live)])


def test_url_inputs_name_a_shard_directory_as_files_do(tmp_path: Path) -> None:
    """``'file:///.../*.jsonl.zst' --shards 2 -o u/`` wrote plain ``part-00000``, where the same
    files by path give zstd ``part-00000.jsonl.zst`` (README's Dask example reads s3 URLs so), on
    both engines (found by attack)."""
    records = make_records(300, 9, max_len=40)
    for i in range(3):
        (tmp_path / f"p{i}.jsonl.zst").write_bytes(compress("zstd", b"".join(r + b"\n" for r in records[i * 100 : (i + 1) * 100])))
    url = f"file://{tmp_path}/*.jsonl.zst"
    bigshuf.shuffle([url], f"{tmp_path / 'local'}/", seed=1, shards=2, tmp_dir=tmp_path)
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle([url], f"{tmp_path / 'dask'}/", seed=1, shards=2, runner=runner, tmp_dir=tmp_path)
    for out in ("local", "dask"):
        names = sorted(os.listdir(tmp_path / out))
        assert names == ["part-00000.jsonl.zst", "part-00001.jsonl.zst"], out
        got = [r for n in names for r in split_records(decompress("zstd", (tmp_path / out / n).read_bytes()))]
        assert Counter(got) == Counter(records), out


def _spawned_children(pid: int) -> list[int]:
    """The processes multiprocessing spawned for ``pid`` (the local cluster's workers)."""
    found = []
    for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split():
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"--multiprocessing-fork" in f.read():
                    found.append(int(child))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/status") or shutil.which("pgrep") is None, reason="needs /proc and pgrep")
def test_the_local_clusters_workers_can_be_ended_by_sigterm(tmp_path: Path) -> None:
    """The command held SIGINT, SIGTERM and SIGHUP from its entry module's first line, and each
    worker the local cluster spawned ran that module again (as ``__mp_main__``) without ever
    restoring them: a worker SIGTERM could not end hung the run's exit after a Ctrl-C (found by
    attack: 10 minutes, until killed)."""
    src = write_records(tmp_path / "in.txt", make_records(200_000, seed=5, max_len=40))
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("bigshuf")), "--engine=dask", "--seed", "1", "-S", "256K", str(src), "-o", str(tmp_path / "o.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    masks: dict[int, list[int]] = {}
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # sampled for the whole run
        for child in _spawned_children(proc.pid):
            try:
                with open(f"/proc/{child}/status") as f:
                    masks.setdefault(child, []).append(int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16))
            except (OSError, StopIteration):
                pass
        time.sleep(0.01)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert masks, "no worker was seen"
    # Most of each worker's samples: a worker blocks every signal for an instant whenever it starts
    # a process of its own (CPython does around fork), which a sample may catch.
    term = 1 << (signal.SIGTERM - 1)
    held = {pid: sum(bool(m & term) for m in seen) / len(seen) for pid, seen in masks.items()}
    assert all(share < 0.5 for share in held.values()), {pid: sorted({hex(m) for m in masks[pid]}) for pid in held}


def test_a_killed_runs_scratch_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """Found by attack: a SIGKILLed Dask run left its ``bigshuf-dask-*`` scratch (pass 1's records)
    under -T for good, where a local run's is removed by the next run: it held no lock, so a dead
    one could not be told from a live one. Its client now locks it: here a process holding one so is
    killed, and the next run (either engine) removes what it left, saying so; a live one's is kept."""
    temp = tmp_path / "temp"
    temp.mkdir()
    hold = (
        "import sys, time\nfrom bigshuf.storage.tempspace import TempSpace\n"
        "TempSpace(sys.argv[1], name=sys.argv[2]).__enter__()\nprint('held', flush=True)\ntime.sleep(600)\n"
    )
    holders = {}
    for name in ("bigshuf-dask-0123456789ab", "bigshuf-dask-ba9876543210"):
        holders[name] = subprocess.Popen([sys.executable, "-c", hold, str(temp), name], stdout=subprocess.PIPE)
        assert holders[name].stdout is not None and holders[name].stdout.readline() == b"held\n"
        (temp / name / "p1").mkdir()
        (temp / name / "p1" / "records").write_bytes(b"x" * 1000)
    dead = temp / "bigshuf-dask-0123456789ab"
    holders[dead.name].kill()
    holders[dead.name].wait()
    try:
        paths, _records = _inputs(tmp_path, seed=5)
        proc = subprocess.run(
            [sys.executable, "-m", "bigshuf", "--engine=dask", "-T", str(temp), *map(str, paths), "-o", str(tmp_path / "out")],
            capture_output=True, timeout=TIMEOUT,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.decode() == f"bigshuf: removed {dead} (1000 B), left by a run that is gone\n"
        assert sorted(os.listdir(temp)) == ["bigshuf-dask-ba9876543210"]
    finally:
        for holder in holders.values():
            holder.kill()
            holder.wait()
            assert holder.stdout is not None
            holder.stdout.close()


@pytest.mark.parametrize("change", ["rewrite", "append"])
def test_an_input_changed_during_pass_one_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """Found by attack: the Dask engine's tasks read byte ranges, so a file rewritten in place (same
    size) or grown while pass 1 ran gave exit 0 and an output of neither version (1229 old lines and
    1771 new ones), or dropped what was appended; the local engine refuses both. The client now
    checks each local input's size and modification time once pass 1 is done, and names the file
    as it was given (it named it by its absolute path)."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "m.txt"
    src.write_bytes(b"".join(b"old %05d\n" % i for i in range(3000)))

    class ChangingAfterTheFirstTask(ThreadPoolExecutor):
        submitted = 0

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            done = super().submit(fn, *args, **kwargs)
            done.result()
            ChangingAfterTheFirstTask.submitted += 1
            if ChangingAfterTheFirstTask.submitted == 1:
                if change == "rewrite":
                    time.sleep(0.01)  # past the file system's clock tick
                    src.write_bytes(src.read_bytes().replace(b"old", b"NEW"))
                else:
                    with open(src, "ab") as f:
                        f.write(b"more\n" * 500)
            return done

    with ChangingAfterTheFirstTask(1) as executor:
        with pytest.raises(InputError, match=r"^m\.txt: file changed while being read \((modified|size 30000 bytes when opened, 32500 now)"):
            dask_engine.shuffle(["m.txt"], tmp_path / "out.txt", memory="64K", seed=1, runner=executor, tmp_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["m.txt"]


def test_temporary_places_as_the_local_engine_takes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attack: ``-T T --temp-url T`` (the README's local --temp-url, pointed at -T) always
    failed with ``File exists`` (the one directory made twice); ``-T FILE`` said ``No such file or
    directory`` of a file that exists, in the run and in the dry run. The first runs; the second is
    the local engine's refusal."""
    from bigshuf import cli

    monkeypatch.chdir(tmp_path)
    paths, records = _inputs(tmp_path, seed=6)
    (tmp_path / "T").mkdir()
    with ThreadPoolExecutor(2) as runner:
        dask_engine.shuffle(paths, tmp_path / "out.txt", memory="16K", seed=1, runner=runner, tmp_dir=tmp_path / "T", temp_url=str(tmp_path / "T"))
    assert_permutation((tmp_path / "out.txt").read_bytes(), records)
    assert os.listdir(tmp_path / "T") == []
    for extra in ([], ["--dry-run"]):
        assert cli.main(["--engine=dask", "-T", "a.txt", "a.txt", "-o", "o.txt", *extra]) == 1
        said = capsys.readouterr()
        assert "a.txt: temporary directory is not a directory; choose another with -T" in said.err + said.out, extra


def test_a_name_with_a_newline_stays_on_its_line(tmp_path: Path) -> None:
    """Found by attack: the Dask engine printed the names of a truncated gzip file or tar raw, so a
    newline in one split the message over two lines (and a terminal escape reached the terminal);
    they are quoted as the local engine quotes them."""
    import gzip

    data = gzip.compress(b"".join(b"%d\n" % i for i in range(50000)))
    (tmp_path / "x\ny.txt.gz").write_bytes(data[:5000])
    (tmp_path / "x\ny.tar").write_bytes(b"\0" * 100 + b"not a tar header" + b"\0" * 300)
    for name in ("x\ny.txt.gz", "x\ny.tar"):
        proc = subprocess.run([sys.executable, "-m", "bigshuf", "--engine=dask", name, "-o", "out"],
                              capture_output=True, timeout=TIMEOUT, cwd=tmp_path)
        assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1, proc.stderr
        assert proc.stderr.startswith(b"bigshuf: 'x'$'\\n''y."), proc.stderr  # (as given, not made absolute)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_truncated_compressed_input_is_named_as_given(tmp_path: Path, codec: str, dry_run: bool) -> None:
    """Found by attack: ``--engine dask bad/tr.jsonl.zst`` named the file by its absolute path (its
    first bytes are decoded on the client to plan the buckets), where the local engine names it as given."""
    suffix = "gz" if codec == "gzip" else "zst"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / f"tr.jsonl.{suffix}").write_bytes(compress(codec, b"".join(b"%d\n" % i for i in range(5000)))[:3000])
    args = ["--dry-run"] if dry_run else ["-o", "q.txt"]
    proc = subprocess.run([sys.executable, "-m", "bigshuf", "--engine=dask", f"bad/tr.jsonl.{suffix}", *args],
                          capture_output=True, timeout=TIMEOUT, cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    why = f"bad/tr.jsonl.{suffix}: truncated {codec} data (ends inside a {'member' if codec == 'gzip' else 'frame'})"
    if dry_run:
        assert proc.stdout.decode().splitlines()[-1] == f"failed: inputs: {why}", proc.stdout
    else:
        assert proc.stderr.decode() == f"bigshuf: {why}\n"


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_compressed_inputs_plan_is_sized_from_what_its_decoder_was_fed(tmp_path: Path, codec: str) -> None:
    """Found by a new user: the Dask plan measured a compressed input's ratio by how far its decoder's
    reads ran (all of a small file) and took records to be 64 bytes with no plain input, so 10 MiB of
    JSON Lines gzipped tenfold was planned as ~4 MiB and ~65,000 records (20,000 really): its
    temporary space and split checks passed runs that then failed. Bytes and records now come within
    a fifth of the truth."""
    rng = __import__("random").Random(1)
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    data = b"".join(b'{"id": %d, "text": "%s"}\n' % (i, " ".join(rng.choice(words) for _ in range(90)).encode()) for i in range(20000))
    path = tmp_path / f"r.jsonl.{'gz' if codec == 'gzip' else 'zst'}"
    path.write_bytes(compress(codec, data))
    assert len(data) > 5 * path.stat().st_size  # compressed enough for the read-ahead to matter
    got = bigshuf.plan_shuffle(path, tmp_path / "out.jsonl", engine="dask")
    assert got.nbytes is not None and got.records is not None, got.render()
    assert 0.8 < got.nbytes / len(data) < 1.25 and 0.8 < got.records / 20000 < 1.25, got.render()


@pytest.mark.parametrize("dense_first", [True, False])
def test_inputs_compressed_unlike_are_each_planned_at_their_own_ratio(tmp_path: Path, dense_first: bool) -> None:
    """The Dask plan took every compressed input at the first one's ratio: a zstd file of 4 MiB
    that compresses hundreds of times beside a gzip of random lines was planned ~3 times too small
    (the loose one first) or ~20 times too large (the dense one first). It now plans as the local
    engine does (``storage.expansion``)."""
    import zstandard

    line = b'{"text": "the same words again and again"}\n'
    dense = line * ((4 << 20) // len(line))
    loose = b"".join(r + b"\n" for r in make_records(40_000, seed=3))
    (tmp_path / "dense.zst").write_bytes(zstandard.ZstdCompressor(write_content_size=False).compress(dense))
    (tmp_path / "loose.gz").write_bytes(gzip.compress(loose, mtime=0))
    paths = [tmp_path / "dense.zst", tmp_path / "loose.gz"]
    got = bigshuf.plan_shuffle(paths if dense_first else paths[::-1], tmp_path / "out.txt", engine="dask")
    assert got.nbytes is not None and 0.95 < got.nbytes / (len(dense) + len(loose)) < 1.05, got.render()
