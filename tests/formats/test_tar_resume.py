"""--resume for WebDataset tar samples: a job interrupted in pass 1, after it and in pass 2 (in
process by a progress hook, or killed with SIGKILL from the command line), then run again, writes
the same bytes as a run that was never interrupted, for one tar, shards, splits, shard cuts, a
manifest and weighted sources; a checkpoint whose fields were tampered with, a damaged bucket
pair and a changed input are refused in one line naming the directory to remove."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.progress import Progress
from helpers import checkpoint_state, kill_at_checkpoint
from test_webdataset import as_set, make_samples, make_tar, read_samples, shards


@pytest.fixture
def tmp_path(ram_tmp_path: Path) -> Path:
    """This module's ``--resume`` runs in memory where they can be (``ram_tmp_path``): they fsync at every checkpoint."""
    return ram_tmp_path

SEED, MEMORY = 11, "256K"

Ready = Callable[[dict[str, Any]], bool]

IN_PASS1: Ready = lambda s: s.get("blocks_done", 0) >= 3 and "pass1_done" not in s
AFTER_PASS1: Ready = lambda s: "pass1_done" in s and "buckets_done" not in s
EARLY_PASS2: Ready = lambda s: s.get("buckets_done", 0) >= 3
LATE_PASS2: Ready = lambda s: s.get("buckets_done", 0) >= s.get("keep", 0) - 3

#: The points a job is interrupted at, one after the other, each rerun going on to the next.
POINTS = [("in pass 1", IN_PASS1), ("after pass 1", AFTER_PASS1), ("early in pass 2", EARLY_PASS2), ("late in pass 2", LATE_PASS2)]


class Interrupted(Exception):
    """Raised by ``StopAt`` inside the run."""


class StopAt(Progress):
    """A progress hook that stops the run once the job's checkpoint under ``temp`` satisfies ``ready``."""

    def __init__(self, temp: Path, ready: Ready) -> None:
        self.temp, self.ready = temp, ready

    def start(self, description: str, total: int | None) -> None:
        self.update(0)

    def update(self, nbytes: int) -> None:
        if self.ready(checkpoint_state(self.temp)):
            raise Interrupted


@pytest.fixture(scope="module")
def tars(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three tars of 150 two-member samples (about 1.2 MB, GNU and pax headers): some 15 blocks
    and 25 buckets at ``-S 256K``."""
    paths, _samples = shards(tmp_path_factory.mktemp("tars"), count=3, per=150)
    return paths


#: Output layouts: the options of ``bigshuf.shuffle`` besides the inputs (``sources``: the
#: first tar, and the other two, as two sources), each written under ``out/``.
LAYOUTS: dict[str, dict[str, Any]] = {
    "one tar": {"output": "out/all.tar"},
    "shards, gzip, --verify": {"output": "out/p-{}.tar.gz", "shards": 3, "verify": True},
    "split, shard-records, manifest, -n": {
        "output": "out/{split}/p-{:02d}.tar", "split": "valid=40,test=0.1,train=rest", "shard_records": 90,
        "manifest": "out/m.json", "head_count": 401,
    },
    "shard-size, manifest, zstd": {"output": "out/p-{:03d}.tar.zst", "shard_size": "150K", "manifest": "out/m.json"},
    "sources mixed, stratified, shards by records": {
        "output": "out/{split}/p-{:02d}.tar", "sources": True, "mix": {"one": 0.4, "two": 0.6}, "total": 300,
        "split": "valid=0.1,train=rest", "stratify": True, "shard_records": 100, "manifest": "out/m.json",
    },
    "sources at rates, compressed buckets": {
        "output": "out/all.tar", "sources": True, "rates": {"one": "0.5", "two": 1}, "compress_temp": True,
    },
}


def shuffle(tars: list[Path], where: Path, options: dict[str, Any], progress: Progress | None = None, resume: bool = True) -> None:
    """Run the job of ``options`` in ``where`` (its ``out/`` and, as ``-T``, its ``t/``)."""
    opts = dict(options)
    output = str(where / opts.pop("output"))
    inputs: list[Path] = tars
    if opts.pop("sources", False):
        opts["sources"] = {"one": str(tars[0]), "two": [str(tars[1]), str(tars[2])]}
        inputs = []
    if "manifest" in opts:
        opts["manifest"] = str(where / opts["manifest"])
    (where / "t").mkdir(parents=True, exist_ok=True)
    (where / "out").mkdir(exist_ok=True)
    bigshuf.shuffle(
        inputs, output, memory=MEMORY, seed=SEED, tmp_dir=where / "t", resume=resume, progress=progress or Progress(), **opts,
    )


def files_under(top: Path) -> dict[str, bytes]:
    """Every file under ``top`` by its relative path: what the job left there, leftovers included."""
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def interrupt(tars: list[Path], where: Path, options: dict[str, Any], ready: Ready, kept: bool = True) -> dict[str, Any]:
    """Run the job until its checkpoint satisfies ``ready``, stop it there; return that checkpoint
    (``kept`` False: there was none yet, and the failed run removed its directory)."""
    with pytest.raises(Interrupted):
        shuffle(tars, where, options, StopAt(where / "t", ready))
    state = checkpoint_state(where / "t")
    assert ready(state) if kept else list((where / "t").iterdir()) == [], state
    return state


def state_dir(where: Path) -> Path:
    """The job's checkpoint directory under ``where/t``."""
    (found,) = [d for d in (where / "t").iterdir() if d.name.startswith("bigshuf-resume-")]
    return found


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_interrupted_again_and_again_writes_what_an_uninterrupted_run_writes(tmp_path: Path, tars: list[Path], layout: str) -> None:
    options = LAYOUTS[layout]
    shuffle(tars, tmp_path / "ref", options)
    reference = files_under(tmp_path / "ref" / "out")
    assert reference and all(".bigshuf" not in name for name in reference)
    job = tmp_path / "job"
    for name, ready in POINTS:
        interrupt(tars, job, options, ready)
        assert not any(name.endswith((".tar", ".gz", ".zst", ".json")) for name in files_under(job / "out")), name
    shuffle(tars, job, options)
    assert files_under(job / "out") == reference
    assert list((job / "t").iterdir()) == []
    if "manifest" in options:
        checked = subprocess.run([sys.executable, "-m", "bigshuf", "--check-manifest", str(job / options["manifest"])], capture_output=True)
        assert checked.returncode == 0, checked.stderr
    if layout == "one tar":  # the same bytes as a run without --resume, and a permutation of the input's samples
        shuffle(tars, tmp_path / "plain", options, resume=False)
        assert (tmp_path / "plain" / "out" / "all.tar").read_bytes() == reference["all.tar"]
        every = [sample for path in tars for sample in read_samples(path.read_bytes())]
        assert as_set(read_samples(reference["all.tar"])) == as_set(every)


def argv(tars: list[Path], where: Path, *extra: str) -> list[str]:
    """The job's command line, its output and ``-T`` in ``where``."""
    return [
        sys.executable, "-m", "bigshuf", "--resume", "--seed", str(SEED), "-S", MEMORY, "-T", str(where / "t"), *extra,
        *map(str, tars), "-o", str(where / "out" / "p-{:02d}.tar"),
    ]


def test_killed_with_sigkill_resumes_to_the_same_shards(tmp_path: Path, tars: list[Path]) -> None:
    """The command killed outright (none of its clean-up runs) in pass 1 and twice in pass 2, with
    shards cut by size and a manifest, then run to its end: every shard and the manifest are the
    uninterrupted run's, byte for byte."""
    extra = ("--shard-size", "200K", "--manifest", str(tmp_path / "out" / "m.json"))
    (tmp_path / "t").mkdir()
    subprocess.run(argv(tars, tmp_path, *extra), check=True)
    (tmp_path / "out").rename(tmp_path / "ref")
    reference = files_under(tmp_path / "ref")
    for _name, ready in [POINTS[0], POINTS[2], POINTS[3]]:
        kill_at_checkpoint(argv(tars, tmp_path, *extra), tmp_path / "t", ready)
    directory = state_dir(tmp_path)
    done = subprocess.run(argv(tars, tmp_path, *extra), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().startswith(f"bigshuf: resuming from {directory}: pass 2 after ")
    assert b"samples written" in done.stderr
    assert files_under(tmp_path / "out") == reference  # the manifest names the same paths: the same -o
    assert list((tmp_path / "t").iterdir()) == []


# --- what a resumed run reads back is checked --------------------------------------------------------


def refused(tars: list[Path], where: Path, *extra: str, noted: bool = False) -> str:
    """Run the job's command (``--shards 2``) again: it must fail with one line, and write no
    output; return the line. ``noted``: a line saying where it resumes comes first."""
    result = subprocess.run(argv(tars, where, "--shards", "2", *extra), capture_output=True, timeout=60)
    err = result.stderr.decode()
    if noted:
        note, _, err = err.partition("\n")
        assert note.startswith("bigshuf: resuming from "), result.stderr
    assert result.returncode == 1 and err.startswith("bigshuf: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not [name for name in files_under(where / "out") if not name.startswith(".")]
    return err


def _bucket(state: dict[str, Any]) -> int:
    """The fullest bucket of a checkpoint."""
    sizes = state["buckets"]["sizes"]
    return max(range(len(sizes)), key=lambda j: sizes[j])


def _size_off_by_a_block(s: dict[str, Any]) -> None:
    s["buckets"]["sizes"][_bucket(s)] += 512


def _size_not_whole_blocks(s: dict[str, Any]) -> None:
    j = _bucket(s)
    s["buckets"]["sizes"][j] += 1
    s["buckets"]["disk"][j] += 1
    s["bytes_done"] += 1


def _lengths_count_another_sample(s: dict[str, Any]) -> None:
    j, lengths = _bucket(s), s["buckets"]["lengths"]
    lengths["records"][j] += 1
    lengths["sizes"][j] += 8
    lengths["disk"][j] += 8


def _lengths_missing(s: dict[str, Any]) -> None:
    del s["buckets"]["lengths"]


def _lengths_cut_short(s: dict[str, Any]) -> None:
    """A lengths file said to hold a length less, as its samples' records say too (its file is longer)."""
    j = _bucket(s)
    s["buckets"]["records"][j] -= 1
    for field in ("sizes", "disk"):
        s["buckets"]["lengths"][field][j] -= 8
    s["buckets"]["lengths"]["records"][j] -= 1


def _input_size(s: dict[str, Any]) -> None:
    s["inputs"][0][1] += 512


def _input_check(s: dict[str, Any]) -> None:
    s["inputs"][1][3] = "0" * 32


def _samples_read(s: dict[str, Any]) -> None:
    """Pass 1 said to have read a sample more of the first input than it holds in those blocks."""
    s["records_read"][0][1] += 1


def _records_out(s: dict[str, Any]) -> None:
    s["records_out"] += 1


TAMPER: dict[str, tuple[Ready, Callable[[dict[str, Any]], None], str]] = {
    "a bucket's size off by a block": (AFTER_PASS1, _size_off_by_a_block, "does not hold up"),
    "a bucket's size not whole blocks": (AFTER_PASS1, _size_not_whole_blocks, "does not hold up: buckets: bucket"),
    "a lengths file counting another sample": (AFTER_PASS1, _lengths_count_another_sample, "buckets.lengths do not count"),
    "the lengths files missing": (IN_PASS1, _lengths_missing, "buckets is not {sizes, records, crcs, disk, lengths}"),
    "a lengths file and its samples a sample short": (AFTER_PASS1, _lengths_cut_short, "the checkpoint says"),
    "samples written": (EARLY_PASS2, _records_out, "records_out is"),
    "samples read of an input": (IN_PASS1, _samples_read, "changed since the interrupted run (its part read again holds"),
    "an input's size": (IN_PASS1, _input_size, "changed since the interrupted run (size or modification time differ)"),
    "an input's content check": (EARLY_PASS2, _input_check, "changed since the interrupted run (content differs)"),
}


@pytest.mark.parametrize("tamper", list(TAMPER))
def test_tampered_checkpoint_is_refused(tmp_path: Path, tars: list[Path], tamper: str) -> None:
    ready, change, words = TAMPER[tamper]
    state = interrupt(tars, tmp_path, {"output": "out/p-{:02d}.tar", "shards": 2}, ready)
    change(state)
    directory = state_dir(tmp_path)
    (directory / "state.json").write_text(json.dumps(state))
    # Samples read are counted as the blocks are read again, after the note saying where it resumes.
    err = refused(tars, tmp_path, noted=tamper == "samples read of an input")
    assert words in err and f"remove {directory}" in err, err


@pytest.mark.parametrize("part", ["data", "lengths"])
@pytest.mark.parametrize("how", ["short", "flipped"])
def test_damaged_bucket_file_is_refused(tmp_path: Path, tars: list[Path], part: str, how: str) -> None:
    state = interrupt(tars, tmp_path, {"output": "out/p-{:02d}.tar", "shards": 2}, AFTER_PASS1)
    directory = state_dir(tmp_path)
    bucket = directory / "top" / part / f"bucket-{_bucket(state):05d}"
    data = bucket.read_bytes()
    bucket.write_bytes(data[:-8] if how == "short" else data[:-1] + bytes([data[-1] ^ 1]))
    # A changed byte shows only when pass 2 reads the bucket, after the note saying where it resumes.
    err = refused(tars, tmp_path, noted=how == "flipped")
    assert str(bucket) in err and f"remove {directory}" in err, err


@pytest.mark.parametrize("change", ["a sample added", "a byte changed, size and mtime kept"])
def test_changed_input_is_refused(tmp_path: Path, tars: list[Path], change: str) -> None:
    mine = [tmp_path / path.name for path in tars]
    for path, copy in zip(tars, mine):
        copy.write_bytes(path.read_bytes())
    interrupt(mine, tmp_path, {"output": "out/p-{:02d}.tar", "shards": 2}, IN_PASS1)
    st = mine[1].stat()
    if change == "a sample added":
        make_tar(mine[1], [*read_samples(mine[1].read_bytes()), *make_samples(1, 99)])  # type: ignore[list-item]
    else:
        with tarfile.open(mine[1]) as tar:
            first = next(info for info in tar if info.size)
        data = bytearray(mine[1].read_bytes())
        data[first.offset_data] ^= 1  # in the first sample's data, which the content check reads
        mine[1].write_bytes(bytes(data))
        os.utime(mine[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    err = refused(mine, tmp_path)
    assert f"{mine[1]}: changed since the interrupted run" in err and f"remove {state_dir(tmp_path)}" in err, err


def test_rerun_with_other_options_is_refused(tmp_path: Path, tars: list[Path]) -> None:
    interrupt(tars, tmp_path, {"output": "out/p-{:02d}.tar", "shards": 2}, IN_PASS1)
    err = refused(tars, tmp_path, "--verify")
    assert "belongs to a run of this output with other inputs, seed or options" in err, err


# --- --unique: the dedup pass's hash buckets are a checkpoint of their own -------------------------


def hash_buckets(temp: Path) -> list[Path]:
    """The top level's hash bucket files (samples' bytes) of the job whose ``-T`` is ``temp``."""
    return list(temp.glob("bigshuf-resume-*/unique/data/bucket-*"))


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three tars of 200 samples each, drawn with replacement from 250 distinct ones, each under a
    key of its own (a copy is the same suffixes and data, whatever its key): about 1.5 MB."""
    top = tmp_path_factory.mktemp("copies")
    pool = make_samples(250, 7)
    rng = np.random.default_rng(3)
    paths = []
    for t in range(3):
        samples = []
        for i, pick in enumerate(rng.integers(0, len(pool), 200).tolist()):
            samples.append([(f"c/{t}{i:04d}.{name.rsplit('.', 1)[1]}", *rest) for name, *rest in pool[pick]])
        paths.append(make_tar(top / f"copies-{t}.tar", samples))  # type: ignore[arg-type]
    return paths


#: After the first, which each job makes of its own -T (the run has no checkpoint yet then).
UNIQUE_POINTS: list[tuple[str, Ready]] = [
    ("after the dedup pass", lambda s: "dedup" in s and "k" not in s),
    ("in pass 1", lambda s: "blocks_done" in s and "pass1_done" not in s),
    ("after pass 1", AFTER_PASS1),
    ("in pass 2", lambda s: s.get("buckets_done", 0) >= 1),
]

UNIQUE_JOBS: dict[str, dict[str, Any]] = {
    "shards by records, manifest, -n, compressed buckets": {
        "output": "out/p-{:02d}.tar", "unique": True, "shard_records": 60, "manifest": "out/m.json", "head_count": 201,
        "compress_temp": True,
    },
    "sources mixed, stratified split, verify": {
        "output": "out/{split}.tar", "unique": True, "sources": True, "mix": {"one": 0.5, "two": 0.5}, "total": 150,
        "split": "valid=0.1,train=rest", "stratify": True, "verify": True, "manifest": "out/m.json",
    },
}


@pytest.mark.parametrize("job", list(UNIQUE_JOBS))
def test_unique_interrupted_again_and_again_writes_what_an_uninterrupted_run_writes(
    tmp_path: Path, copies: list[Path], job: str,
) -> None:
    options = UNIQUE_JOBS[job]
    shuffle(copies, tmp_path / "ref", options)
    reference = files_under(tmp_path / "ref" / "out")
    assert reference
    where = tmp_path / "job"
    during: Ready = lambda s: not s and len(hash_buckets(where / "t")) >= 2
    for name, ready in [("during the dedup pass", during), *UNIQUE_POINTS]:
        interrupt(copies, where, options, ready, kept=ready is not during)
    shuffle(copies, where, options)
    assert files_under(where / "out") == reference
    assert list((where / "t").iterdir()) == []
    manifest = json.loads(reference["m.json"])
    assert manifest["duplicates"] > 0


def test_unique_checkpoint_tampered_is_refused(tmp_path: Path, copies: list[Path]) -> None:
    """The dedup pass's hash buckets described otherwise than they are: refused in one line."""
    options = {"output": "out/p-{:02d}.tar", "shards": 2, "unique": True}
    state = interrupt(copies, tmp_path, options, UNIQUE_POINTS[0][1])
    directory = state_dir(tmp_path)
    for change, words in [
        (lambda d: d["buckets"]["lengths"]["records"].__setitem__(0, d["buckets"]["lengths"]["records"][0] + 1), "dedup.buckets.lengths"),
        (lambda d: d["buckets"].pop("lengths"), "dedup.buckets is not"),
        (lambda d: d["buckets"]["sizes"].__setitem__(0, d["buckets"]["sizes"][0] + 1), "dedup.buckets: bucket 0"),
    ]:
        tampered = json.loads(json.dumps(state))
        change(tampered["dedup"])
        (directory / "state.json").write_text(json.dumps(tampered))
        err = refused(copies, tmp_path, "--unique")
        assert words in err and f"remove {directory}" in err, err
