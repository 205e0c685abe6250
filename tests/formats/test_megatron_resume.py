"""--resume for Megatron datasets: a run stopped (in-process) or killed (SIGKILL) in pass 1 or pass 2
resumes and writes exactly the .bin, .idx and manifest bytes of an uninterrupted run, for one pair,
shards, splits and weighted sources; tampered checkpoints and changed inputs are refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.core import plan
from bigshuf.progress import Progress

from helpers import checkpoint_state, kill_at_checkpoint, temp_leftovers
from test_megatron import as_docs, make_docs, read_dataset, write_dataset
from test_uniformity import assert_uniform


@pytest.fixture
def tmp_path(ram_tmp_path: Path) -> Path:
    """This module's ``--resume`` runs in memory where they can be (``ram_tmp_path``): they fsync at every checkpoint."""
    return ram_tmp_path

SEED, MEMORY = 5, "1M"
State = Callable[[dict[str, Any]], bool]

#: Where a run is stopped: its checkpoint as the run reaches them (10 buckets, about 8 pass-1 checkpoints).
POINTS: dict[str, State] = {
    "in pass 1": lambda s: s.get("blocks_done", 0) >= 2 and "pass1_done" not in s,
    "pass 1 complete": lambda s: "pass1_done" in s,
    "early in pass 2": lambda s: s.get("buckets_done", 0) >= 2,
    "late in pass 2": lambda s: s.get("buckets_done", 0) >= 7,
}
LAYOUTS = {"one pair": ("out/shuffled", {}), "shards": ("shards/", {"shards": 3})}


class Stop(Exception):
    """Raised by ``StopWhen`` to interrupt a run."""


class StopWhen(Progress):
    """Progress hooks that interrupt the run once its checkpoint satisfies ``ready``."""

    def __init__(self, temp: Path, ready: State) -> None:
        self.temp, self.ready = temp, ready

    def update(self, nbytes: int) -> None:
        if self.ready(checkpoint_state(self.temp)):
            raise Stop


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 documents (1.6 MB of tokens): 10 buckets at -S 1M."""
    return write_dataset(tmp_path_factory.mktemp("mega") / "corpus", make_docs(20_000, seed=1))


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(src: Path | None, work: Path, target: str, progress: Progress | None = None, **options: Any) -> None:
    """One --resume run of ``src`` into ``work/target``, temporary files in ``work/t``."""
    (work / "t").mkdir(parents=True, exist_ok=True)
    (work / target).parent.mkdir(exist_ok=True)
    inputs = None if src is None else str(src)
    options.setdefault("memory", MEMORY)
    bigshuf.shuffle(inputs, f"{work}/{target}", seed=SEED, tmp_dir=work / "t", resume=True, sync=False, progress=progress, **options)


def stop_and_resume(src: Path | None, work: Path, target: str, ready: State, **options: Any) -> dict[str, Any]:
    """Run until the checkpoint satisfies ``ready``, stop, run again to the end; return the checkpoint stopped at."""
    with pytest.raises(Stop):
        run(src, work, target, StopWhen(work / "t", ready), **options)
    state = checkpoint_state(work / "t")
    assert ready(state)
    run(src, work, target, **options)
    assert temp_leftovers(work / "t") == [] and list((work / "t").iterdir()) == []
    assert not [p for p in work.rglob("*") if p.name.endswith((".bigshuf-tmp", ".lock"))]
    return state


@pytest.fixture(scope="module")
def references(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """Each layout's files from an uninterrupted --resume run, the same as from a run without it."""
    out = {}
    for name, (target, options) in LAYOUTS.items():
        work = tmp_path_factory.mktemp("ref")
        run(corpus, work, target, **options)
        plain = tmp_path_factory.mktemp("plain")
        (plain / target).parent.mkdir(exist_ok=True)
        bigshuf.shuffle(str(corpus), f"{plain}/{target}", seed=SEED, memory=MEMORY, tmp_dir=plain, sync=False, **options)
        out[name] = files_of(work / target.split("/")[0])
        assert out[name] == files_of(plain / target.split("/")[0])
    return out


@pytest.mark.parametrize("point", ["in pass 1", "pass 1 complete", "early in pass 2", "late in pass 2"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_stopped_run_resumes_to_the_same_bytes(tmp_path: Path, corpus: Path, references: dict[str, dict[str, bytes]], point: str, layout: str) -> None:
    """Stopped, then run again to the end: the files of an uninterrupted run. Late in pass 2 the
    first of 3 shards is finished: taking it up failed on every run again ("flush of closed file",
    found by attack), so such a job could never be finished."""
    target, options = LAYOUTS[layout]
    state = stop_and_resume(corpus, tmp_path, target, POINTS[point], **options)
    assert state["k"] == 10
    got = files_of(tmp_path / target.split("/")[0])
    assert got == references[layout]
    if layout == "one pair":
        _, docs = read_dataset(tmp_path / "out" / "shuffled")
        assert sorted(docs) == sorted(as_docs(make_docs(20_000, seed=1)))


def test_weighted_sources_with_modes_and_a_count(tmp_path: Path) -> None:
    """Two sources (one taken 1.5 times, its fractional picks running on from batch to batch), with
    sequence modes and -n: stopped in pass 1 and in pass 2, the output is the uninterrupted one's."""
    a, b = make_docs(9000, seed=2), make_docs(6000, seed=3)
    write_dataset(tmp_path / "a", a, modes=True)
    write_dataset(tmp_path / "b", b, modes=True)
    options = {"sources": {"web": str(tmp_path / "a"), "code": str(tmp_path / "b")}, "rates": {"web": "1.5"}, "head_count": 17_000}
    run(None, tmp_path / "ref", "o/x", **options)
    want = files_of(tmp_path / "ref" / "o")
    _, docs = read_dataset(tmp_path / "ref" / "o" / "x", modes=True)
    assert len(docs) == 17_000 and set(docs) <= set(as_docs(a, modes=True)) | set(as_docs(b, modes=True))
    for name in ("in pass 1", "early in pass 2"):
        work = tmp_path / name.replace(" ", "_")
        stop_and_resume(None, work, "o/x", POINTS[name], **options)
        assert files_of(work / "o") == want, name


SPLIT_ARGS = [
    "--resume", "--seed", str(SEED), "-S", "512K", "-T", "t", "--split", "train=0.9,val=rest", "--shards", "2",
    "--manifest", "sp/manifest.json", "--verify", "corpus", "-o", "sp/{split}-{}",
]


@pytest.mark.parametrize("point", ["late in pass 2", "during the dedup pass"])
def test_killed_run_with_splits_manifest_and_verify(tmp_path: Path, corpus: Path, point: str) -> None:
    """SIGKILL (nothing flushed, nothing cleaned up), splits of shards, a manifest: the same files.
    Killed during --unique's dedup pass, before its first checkpoint, the rerun starts it afresh."""
    for name in ("corpus.bin", "corpus.idx"):
        shutil.copy(f"{corpus}{name[6:]}", tmp_path / name)
    (tmp_path / "t").mkdir()
    unique = point == "during the dedup pass"
    cmd = [sys.executable, "-m", "bigshuf", *SPLIT_ARGS, *(["--unique"] if unique else [])]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    want = files_of(tmp_path / "sp")
    assert sorted(want) == ["manifest.json", *sorted(f"{s}-{i}.{e}" for s in ("train", "val") for i in (0, 1) for e in ("bin", "idx"))]
    shutil.rmtree(tmp_path / "sp")
    ready = UNIQUE_POINTS[point](tmp_path) if unique else POINTS[point]
    state = kill_at_checkpoint(cmd, tmp_path / "t", ready, cwd=tmp_path)
    assert state == {} if unique else state
    resumed = subprocess.run(cmd, cwd=tmp_path, capture_output=True)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.startswith(b"bigshuf: resuming from ") != unique
    assert files_of(tmp_path / "sp") == want
    assert list((tmp_path / "t").iterdir()) == []
    check = subprocess.run([sys.executable, "-m", "bigshuf", "--check-manifest", "sp/manifest.json"], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_resumed_runs_draw_every_order_equally(tmp_path: Path) -> None:
    """Each seed's run is stopped at a checkpoint (after pass 1, or in turn after pass 2's first
    bucket where more follow) and run again to the end: the orders the resumed runs write are uniform."""
    docs = [[np.full(150, i, np.uint16)] for i in range(3)]  # 300 bytes each: external at -S 1K
    src = str(write_dataset(tmp_path / "three", docs))
    stops: list[State] = [POINTS["pass 1 complete"], lambda s: s.get("buckets_done", 0) >= 1]
    # Every checkpoint is synced whatever sync= says: in memory where there is a tmpfs, for speed.
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp_path) as work:
        temp = Path(work) / "t"
        temp.mkdir()
        counts: Counter = Counter()
        stopped = [0, 0]
        for seed in range(6 * 20):
            options: dict[str, Any] = {"memory": "1K", "seed": seed, "tmp_dir": temp, "sync": False, "resume": True}
            try:
                bigshuf.shuffle(src, f"{work}/o", progress=StopWhen(temp, stops[seed % 2]), **options)
                os.unlink(f"{work}/o.bin")  # finished: its buckets held no second checkpoint to stop at
                os.unlink(f"{work}/o.idx")
            except Stop:
                stopped[seed % 2] += 1
            bigshuf.shuffle(src, f"{work}/o", **options)
            assert list(temp.iterdir()) == []
            counts[tuple(d[0][0][0] for d in read_dataset(Path(work) / "o")[1])] += 1
    assert stopped[0] == 60 and stopped[1] >= 40, stopped
    assert_uniform(counts, list(permutations(range(3))), "--resume, stopped and run again")


# Refusals: the job is stopped in pass 2 with a shard finished, its files damaged, and the command run again.

CLI = ["--resume", "--seed", str(SEED), "-S", MEMORY, "--shards", "3"]


class Job:
    """A job stopped late in pass 2 (a shard and its index log finished), rerun with the CLI. It is
    stopped once (``stopped_job``) and its files put back before each test: same paths, same job."""

    def __init__(self, corpus: Path, work: Path) -> None:
        self.src = work / "corpus"
        self.work = work
        work.mkdir()
        for ext in (".bin", ".idx"):
            shutil.copy2(f"{corpus}{ext}", f"{self.src}{ext}")
        with pytest.raises(Stop):
            run(self.src, work, "shards/", StopWhen(work / "t", POINTS["late in pass 2"]), shards=3)
        (self.dir,) = (work / "t").iterdir()
        self.snapshot = work.with_name(work.name + "-snapshot")
        shutil.copytree(work, self.snapshot)

    def put_back(self) -> Job:
        """The stopped job's files as they were, whatever the last test did to them."""
        shutil.rmtree(self.work)
        shutil.copytree(self.snapshot, self.work)
        return self

    def rerun(self) -> subprocess.CompletedProcess[bytes]:
        argv = [sys.executable, "-m", "bigshuf", *CLI, "-T", str(self.work / "t"), str(self.src), "-o", f"{self.work}/shards/"]
        return subprocess.run(argv, capture_output=True, timeout=120)

    def index(self) -> dict[str, Any]:
        return json.loads((self.dir / "index.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stopped_job(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Job:
    return Job(corpus, tmp_path_factory.mktemp("stopped") / "job")


@pytest.fixture
def job(stopped_job: Job) -> Job:
    return stopped_job.put_back()


def assert_refused(result: subprocess.CompletedProcess[bytes], *words: str) -> None:
    """Exit 1 with one line holding each of ``words``, no traceback."""
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert err.startswith("bigshuf: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


TAMPER: dict[str, tuple[Callable[[Job], None], tuple[str, ...]]] = {
    "index log byte": (lambda j: _flip(j.dir / "index-00000.log", 40), ("index-00000.log", "checksum", "remove")),
    "index log gone": (lambda j: (j.dir / "index-00001.log").unlink(), ("index-00001.log", "missing", "remove")),
    "index log cut": (lambda j: os.truncate(j.dir / "index-00001.log", 10), ("index-00001.log", "holds 10 bytes", "remove")),
    "index.json gone": (lambda j: (j.dir / "index.json").unlink(), ("has no", "index.json", "remove")),
    "index.json other point": (
        lambda j: (j.dir / "index.json").write_text(json.dumps({**j.index(), "points": [{**j.index()["points"][-1], "done": 1}]})),
        ("holds no point", "remove"),
    ),
    "index.json size": (
        lambda j: (j.dir / "index.json").write_text(
            json.dumps({**j.index(), "points": [{**p, "logs": [[s + 8, c] for s, c in p["logs"]]} for p in j.index()["points"]]})
        ),
        ("index-0000", "remove"),
    ),
    "index.json field": (lambda j: (j.dir / "index.json").write_text(json.dumps({**j.index(), "extra": 1})), ("not an index", "remove")),
    # The point not taken up is checked too (found by attack: it was skipped, whatever it held).
    "index.json other point's done": (
        lambda j: (j.dir / "index.json").write_text(json.dumps({**j.index(), "points": [*j.index()["points"], {"done": -1, "logs": []}][-2:]})),
        ("a point is not a count of documents", "remove"),
    ),
    "bucket byte": (lambda j: _flip(sorted((j.dir / "top").iterdir())[-1], 300), ("bucket", "checksum", "remove")),
    "bucket crc in state": (
        lambda j: (j.dir / "state.json").write_text(
            json.dumps({**(s := json.loads((j.dir / "state.json").read_text())), "buckets": {**s["buckets"], "crcs": [1] * s["k"]}})
        ),
        ("bucket does not match the checkpoint's checksum", "remove"),
    ),
    "state keep": (
        lambda j: (j.dir / "state.json").write_text(json.dumps({**json.loads((j.dir / "state.json").read_text()), "keep": 11})),
        ("state.json does not hold up", "keep", "remove"),
    ),
}


@pytest.mark.parametrize("how", list(TAMPER))
def test_tampered_checkpoint_refused(job: Job, how: str) -> None:
    assert json.loads((job.dir / "state.json").read_text())["output"]["records"][0] > 0
    spoil, words = TAMPER[how]
    spoil(job)
    assert_refused(job.rerun(), *words)
    assert not (job.work / "shards" / "part-00000.bin").exists()


def test_index_log_not_matching_the_output_refused(job: Job) -> None:
    """A log whose CRC and size in index.json were made to agree with it, but whose documents do
    not account for the .bin's bytes, is refused (the logs are checked against the output)."""
    log = job.dir / "index-00000.log"
    data = bytearray(log.read_bytes())
    docs = int.from_bytes(data[:8], "little")
    at = 16 + 8 * docs  # the first sequence length of the first chunk
    data[at : at + 4] = (int.from_bytes(data[at : at + 4], "little") + 1).to_bytes(4, "little")
    log.write_bytes(bytes(data))
    index = job.index()
    for point in index["points"]:
        point["logs"][0] = [len(data), zlib.crc32(bytes(data))]
    (job.dir / "index.json").write_text(json.dumps(index))
    assert_refused(job.rerun(), "index-00000.log", "logs", "output file 0 holds", "remove")


def test_changed_input_refused(job: Job) -> None:
    data = bytearray(Path(f"{job.src}.bin").read_bytes())
    data[100] ^= 1
    Path(f"{job.src}.bin").write_bytes(bytes(data))
    assert_refused(job.rerun(), "corpus.bin: changed since the interrupted run", "remove")


def test_resume_without_a_seed_refused(tmp_path: Path, corpus: Path, run_cli) -> None:
    code, _, err = run_cli(["--resume", corpus, "-o", tmp_path / "o"])
    assert code == 1 and err.startswith(b"bigshuf: --resume needs --seed")
    assert not list(tmp_path.iterdir())


def test_stopped_in_a_deeper_level_resumes_to_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two buckets, each too big for -S: stopped while the second is scattered one level deeper,
    the resumed run does that bucket again from the checkpoint after the first."""
    monkeypatch.setattr(plan, "MAX_BUCKETS", 2)
    src = write_dataset(tmp_path / "c", make_docs(3000, seed=8))
    (tmp_path / "plain").mkdir()
    stats = bigshuf.shuffle(str(src), str(tmp_path / "plain" / "x"), seed=SEED, memory="64K", tmp_dir=tmp_path, sync=False)
    assert stats.passes >= 3 and stats.buckets > 2, stats
    state = stop_and_resume(src, tmp_path / "job", "o/x", lambda s: s.get("buckets_done", 0) >= 1, memory="64K")
    assert state["k"] == 2 and state["buckets_done"] == 1
    assert files_of(tmp_path / "job" / "o") == files_of(tmp_path / "plain")


# --resume --unique: the dedup pass's hash buckets (Arrow streams, with their hashes) are a checkpoint of their own.


def hash_buckets(work: Path) -> list[Path]:
    """The top level's hash bucket files of the job in ``work``."""
    return list((work / "t").glob("bigshuf-resume-*/unique/*.arrows"))


#: Where a --unique job is stopped in turn (each resumed run goes on to the next point).
UNIQUE_POINTS: dict[str, Callable[[Path], State]] = {
    "during the dedup pass": lambda work: lambda s: not s and len(hash_buckets(work)) >= 2,
    "after the dedup pass": lambda work: lambda s: "dedup" in s and "k" not in s,
    "in pass 1": lambda work: lambda s: "blocks_done" in s and "pass1_done" not in s,
    "pass 1 complete": lambda work: POINTS["pass 1 complete"],
    "early in pass 2": lambda work: POINTS["early in pass 2"],
}


def with_copies(path: Path, n: int, seed: int, modes: bool = False) -> tuple[Path, list[Any]]:
    """A dataset of ``n`` documents and a copy of each of its first ``n // 2``, the copies in random order."""
    docs = make_docs(n, seed=seed)
    order = np.random.default_rng(seed).permutation(n // 2)
    return write_dataset(path, docs + [docs[i] for i in order], modes=modes), docs


@pytest.mark.parametrize(
    "points,options",
    [
        (["during the dedup pass", "in pass 1", "early in pass 2"], {"shards": 2, "manifest": "m.json", "verify": True}),
        (["after the dedup pass", "pass 1 complete"], {"sources": True, "rates": {"web": "1.5"}, "stratify": True}),
    ],
    ids=["shards, manifest, verify", "weighted sources, stratified split"],
)
def test_unique_stopped_in_turn_resumes_to_the_same_bytes(tmp_path: Path, points: list[str], options: dict[str, Any]) -> None:
    """A --resume --unique job stopped in turn during and after the dedup pass, in and after pass 1 and
    in pass 2, each time run again: the .bin, .idx and manifest bytes of an uninterrupted run."""
    src, docs = with_copies(tmp_path / "c", 12_000, seed=4, modes=bool(options.get("sources")))
    if options.pop("sources", False):
        other, _ = with_copies(tmp_path / "d", 4000, seed=4, modes=True)  # its first documents are also in c
        options = {**options, "sources": {"web": str(src), "code": str(other)}, "split": "v=0.1,t=rest"}
        target, inputs = "o/{split}", None
    else:
        target, inputs = "o/", src
    manifest = options.pop("manifest", None)
    for work, stops in ((tmp_path / "ref", []), (tmp_path / "job", points)):
        if manifest is not None:
            options["manifest"] = str(work / "o" / manifest)
        for name in stops:
            ready = UNIQUE_POINTS[name](work)
            with pytest.raises(Stop):
                run(inputs, work, target, StopWhen(work / "t", ready), unique=True, **options)
            state = checkpoint_state(work / "t")
            assert state == {} if name == "during the dedup pass" else ready(state), name  # no checkpoint: nothing kept
        run(inputs, work, target, unique=True, **options)
        assert temp_leftovers(work / "t") == [] and list((work / "t").iterdir()) == []
    got, want = files_of(tmp_path / "job" / "o"), files_of(tmp_path / "ref" / "o")
    assert got == want and len(got) >= 4
    if inputs is not None:  # the pairs of a run without --resume: the job shuffles exactly as --unique does
        (tmp_path / "plain").mkdir()
        bigshuf.shuffle(str(src), f"{tmp_path}/plain/", seed=SEED, memory=MEMORY, tmp_dir=tmp_path, sync=False, unique=True, shards=2)
        assert files_of(tmp_path / "plain") == {name: data for name, data in got.items() if name != "m.json"}
        unique = {doc for shard in ("part-00000", "part-00001") for doc in read_dataset(tmp_path / "job" / "o" / shard)[1]}
        assert unique == set(as_docs(docs)) and json.loads(want["m.json"])["duplicates"] == 6000


class UniqueJob(Job):
    """A --unique job stopped after its dedup pass (its hash buckets checkpointed), rerun with the CLI."""

    def __init__(self, work: Path) -> None:
        self.src, _ = with_copies(work / "corpus", 12_000, seed=4)
        self.work = work
        with pytest.raises(Stop):
            run(self.src, work, "shards/", StopWhen(work / "t", UNIQUE_POINTS["after the dedup pass"](work)), shards=3, unique=True)
        (self.dir,) = (work / "t").iterdir()
        self.snapshot = work.with_name(work.name + "-snapshot")
        shutil.copytree(work, self.snapshot)

    def rerun(self) -> subprocess.CompletedProcess[bytes]:
        argv = [sys.executable, "-m", "bigshuf", *CLI, "--unique", "-T", str(self.work / "t"), str(self.src), "-o", f"{self.work}/shards/"]
        return subprocess.run(argv, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def unique_job(tmp_path_factory: pytest.TempPathFactory) -> UniqueJob:
    work = tmp_path_factory.mktemp("unique") / "job"
    work.mkdir()
    return UniqueJob(work)


def _set_dedup(job: Job, **fields: Any) -> None:
    state = json.loads((job.dir / "state.json").read_text())
    state["dedup"] = {**state["dedup"], **fields}
    (job.dir / "state.json").write_text(json.dumps(state))


UNIQUE_TAMPER: dict[str, tuple[Callable[[Job], None], tuple[str, ...]]] = {
    "hash bucket byte": (lambda j: _flip(sorted((j.dir / "unique").iterdir())[-1], 300), ("unique", "checksum", "remove")),
    "dedup.k": (lambda j: _set_dedup(j, k=1), ("state.json does not hold up", "dedup.k", "remove")),
    "dedup records kept above those read": (
        lambda j: _set_dedup(j, buckets={**(b := json.loads((j.dir / "state.json").read_text())["dedup"]["buckets"]), "records": [
            r + 10_000 * (i == 0) for i, r in enumerate(b["records"])
        ], "sizes": [s + 10_000 * (i == 0) for i, s in enumerate(b["sizes"])]}, hashes=None),
        ("documents kept in its hash buckets, the inputs hold", "remove"),
    ),
}


@pytest.mark.parametrize("how", list(UNIQUE_TAMPER))
def test_unique_tampered_checkpoint_refused(unique_job: UniqueJob, how: str) -> None:
    job = unique_job.put_back()
    assert "dedup" in json.loads((job.dir / "state.json").read_text())
    spoil, words = UNIQUE_TAMPER[how]
    spoil(job)
    assert_refused(job.rerun(), *words)
    assert not (job.work / "shards" / "part-00000.bin").exists()
