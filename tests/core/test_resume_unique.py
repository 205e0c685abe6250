"""--resume with --unique for lines (issue 15): the dedup pass's hash buckets are a checkpoint of
their own, pass 1 reads its blocks from them again. A run interrupted at several points in turn
(during the dedup pass, after it, in pass 1, after it, early and late in pass 2), each time
resumed, writes exactly the files an uninterrupted run writes; each new field of the checkpoint,
tampered with, is refused in one line naming its directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bigshuf
from bigshuf.progress import Progress

from helpers import checkpoint_state
import test_resume_layouts as layouts
from test_resume_layouts import files_under


@pytest.fixture
def tmp_path(ram_tmp_path: Path) -> Path:
    """This module's ``--resume`` runs in memory where they can be (``ram_tmp_path``): they fsync at every checkpoint."""
    return ram_tmp_path

SEED, MEMORY = 11, "1M"

#: Whether to stop, from the checkpoint as it stands and the job's ``-T``.
Ready = Callable[[dict[str, Any], Path], bool]


class Stop(Exception):
    """Raised by ``StopWhen`` to interrupt a run."""


class StopWhen(Progress):
    """Progress hooks that interrupt the run once its checkpoint satisfies ``ready``."""

    def __init__(self, temp: Path, ready: Ready) -> None:
        self.temp, self.ready = temp, ready

    def _check(self) -> None:
        if self.ready(checkpoint_state(self.temp), self.temp):
            raise Stop

    def start(self, description: str, total: int | None) -> None:
        self._check()

    def update(self, nbytes: int) -> None:
        self._check()


def hash_buckets(temp: Path) -> list[Path]:
    """The top level's hash bucket files of the job whose ``-T`` is ``temp``."""
    return list(temp.glob("bigshuf-resume-*/unique/bucket-*"))


DURING_DEDUP = "during the dedup pass"
POINTS: dict[str, Ready] = {
    DURING_DEDUP: lambda s, temp: not s and len(hash_buckets(temp)) >= 2,
    "after the dedup pass": lambda s, temp: "dedup" in s and "k" not in s,
    "in pass 1": lambda s, temp: "blocks_done" in s and "pass1_done" not in s,
    "after pass 1": lambda s, temp: "pass1_done" in s,
    "in pass 2": lambda s, temp: s.get("buckets_done", 0) >= 1,
}

#: Each job, with where it is interrupted in turn (each resumed run goes on to the next point).
JOBS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "sources mixed, stratified split, manifest, verify": (
        {
            "output": "out/{split}.txt", "weighted": True, "mix": {"web": 0.7, "code": 0.3}, "total": 18_000,
            "split": "valid=0.02,train=rest", "stratify": True, "manifest": "out/m.json", "verify": True,
        },
        list(POINTS),
    ),
    "-n, gzip shards, compressed buckets, manifest": (
        {
            "output": "out/p-{:02d}.txt.gz", "head_count": 15_000, "shard_records": 6_000, "compress_temp": True,
            "manifest": "out/m.json",
        },
        [DURING_DEDUP, "in pass 1", "in pass 2"],
    ),
}
WEIGHTED = JOBS["sources mixed, stratified split, manifest, verify"][0]


def write_copies(path: Path, lines: int, distinct: int, seed: int) -> Path:
    """``lines`` lines drawn with replacement from ``distinct`` lines of 3-47 bytes: most have copies."""
    rng = np.random.default_rng(seed)
    pool = [b"%d:" % i + b"x" * int(n) for i, n in enumerate(rng.integers(1, 40, distinct))]
    path.write_bytes(b"".join(pool[i] + b"\n" for i in rng.integers(0, distinct, lines)))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60,000 lines, 20,000 distinct (1.5 MB): 14 hash buckets and 3-4 pass-1 buckets at ``-S 3M``;
    beside it ``code.txt``, 9,000 lines of which many are also in the corpus (copies across sources)."""
    top = tmp_path_factory.mktemp("unique")
    write_copies(top / "code.txt", 9_000, 6_000, seed=2)
    return write_copies(top / "in.txt", 60_000, 20_000, seed=1)


def run(corpus: Path, where: Path, options: dict[str, Any], progress: Progress | None = None) -> None:
    """The ``--resume --unique`` job of ``options`` in ``where`` (its ``out/`` and its ``-T``)."""
    (where / "out").mkdir(parents=True, exist_ok=True)
    layouts.run(corpus, where, {**options, "unique": True}, progress, memory=MEMORY, seed=SEED)


def job_directory(where: Path) -> Path:
    """The job's checkpoint directory under ``where``'s ``-T``."""
    (directory,) = [d for d in (where / "t").iterdir() if d.name.startswith("bigshuf-resume-")]
    return directory


@pytest.fixture(scope="module")
def references(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """What each job writes uninterrupted, by file."""
    out = {}
    for name, (options, _points) in JOBS.items():
        where = tmp_path_factory.mktemp("reference")
        run(corpus, where, options)
        out[name] = files_under(where / "out")
    return out


@pytest.mark.parametrize("job", list(JOBS))
def test_run_interrupted_at_several_points_writes_what_an_uninterrupted_run_writes(
    tmp_path: Path, corpus: Path, references: dict[str, dict[str, bytes]], job: str,
) -> None:
    options, points = JOBS[job]
    for name in points:
        with pytest.raises(Stop):
            run(corpus, tmp_path, options, StopWhen(tmp_path / "t", POINTS[name]))
        state = checkpoint_state(tmp_path / "t")
        # Stopped during the dedup pass, a run has saved no checkpoint: it leaves nothing, the next starts afresh.
        assert POINTS[name](state, tmp_path / "t") if name != DURING_DEDUP else state == {}, name
        assert all(p.is_dir() or ".bigshuf-" in p.name for p in (tmp_path / "out").rglob("*"))
    run(corpus, tmp_path, options)
    assert files_under(tmp_path / "out") == references[job]
    assert list((tmp_path / "t").iterdir()) == []
    manifest = json.loads((tmp_path / options["manifest"]).read_text())
    assert manifest["duplicates"] > 0
    checked = subprocess.run([sys.executable, "-m", "bigshuf", "--check-manifest", str(tmp_path / options["manifest"])], capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_a_run_killed_during_the_dedup_pass_is_started_afresh_and_writes_what_an_uninterrupted_run_writes(
    tmp_path: Path, corpus: Path,
) -> None:
    """From the command line, killed by SIGKILL during the dedup pass (none of the run's own clean-up
    runs, its hash buckets are left behind, no checkpoint saved yet): the rerun starts afresh."""
    cmd = [
        sys.executable, "-m", "bigshuf", "--resume", "--unique", "--seed", str(SEED), "-S", MEMORY, "-T", str(tmp_path / "t"),
        str(corpus), "-o", str(tmp_path / "out" / "all.txt"),
    ]
    (tmp_path / "t").mkdir()
    (tmp_path / "out").mkdir()
    subprocess.run(cmd, check=True)
    reference = (tmp_path / "out" / "all.txt").read_bytes()
    os.unlink(tmp_path / "out" / "all.txt")
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not POINTS[DURING_DEDUP](checkpoint_state(tmp_path / "t"), tmp_path / "t"):
        assert proc.poll() is None, "the run ended before its dedup pass was killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    assert hash_buckets(tmp_path / "t") and checkpoint_state(tmp_path / "t") == {}
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    assert (tmp_path / "out" / "all.txt").read_bytes() == reference
    assert list((tmp_path / "t").iterdir()) == []


def _cut_to_the_dedup_pass(s: dict[str, Any]) -> None:
    """Only the dedup pass's fields kept, as its own checkpoint has them."""
    for key in set(s) - {"format", "job", "inputs", "records", "read_fingerprint", "dedup"}:
        del s[key]
    s["read_fingerprint"] = [0, 0, 0]


def _records(s: dict[str, Any]) -> None:
    """A record more in the first non-empty hash bucket, its bytes kept."""
    s["dedup"]["buckets"]["records"][0] += 1


def _records_everywhere(s: dict[str, Any]) -> None:
    """A record more in the first hash bucket and its hashes, every count kept consistent."""
    d = s["dedup"]
    d["buckets"]["records"][0] += 1
    d["hashes"]["records"][0] += 1
    d["hashes"]["sizes"][0] += 8
    d["hashes"]["disk"][0] += 8
    d["per_source"][0][0] += 1


def _crc(s: dict[str, Any]) -> None:
    s["dedup"]["buckets"]["crcs"][0] ^= 1


def _per_source_sum(s: dict[str, Any]) -> None:
    s["dedup"]["per_source"][0][0] += 1


def _all_kept(s: dict[str, Any]) -> None:
    """Every record of every source said kept: the second source's hash buckets hold more than it has."""
    for row in s["dedup"]["per_source"]:
        row[1] += row[0]
        row[0] = 0


TAMPER: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "dedup missing": (lambda s: s.pop("dedup"), "its fields are"),
    "dedup.k": (lambda s: s["dedup"].update(k=s["dedup"]["k"] + 1), "dedup.buckets.sizes is not a list of"),
    "dedup.hashes not an object": (lambda s: s["dedup"].update(hashes=[]), "dedup.hashes is not {sizes, records, crcs, disk}"),
    "a hash bucket's records": (_records, "dedup.hashes do not count the buckets' records"),
    "a hash bucket's records and hashes": (_records_everywhere, "bucket holds"),
    "a hash bucket's crc": (_crc, "temporary bucket is corrupt (checksum mismatch)"),
    "per_source not adding up": (_per_source_sum, "adds up to"),
    "per_source: a source holding more than it read": (_all_kept, "records kept in its hash buckets, the inputs hold"),
    "bytes_done past the hash buckets": (lambda s: s.update(bytes_done=10**12), "more than the hash buckets'"),
    # Pass 2's own fields, checked without --unique, were trusted with it (found by attack: one bucket
    # more done lost its records with exit 0, or looped for ever making empty shard files).
    "buckets_done off by one": (lambda s: s.update(buckets_done=s["buckets_done"] + 1), "buckets done hold"),
    "records_out": (lambda s: s.update(records_out=s["records_out"] + 1000), "records_out is"),
    "output.done": (lambda s: s["output"].update(done=s["output"]["done"] + 1), "output.done is"),
    "read_fingerprint before pass 1": (
        lambda s: (_cut_to_the_dedup_pass(s), s.update(read_fingerprint=[1, 9, 1])), "read_fingerprint is not [0, 0, 0]"
    ),
}


@pytest.fixture(scope="module")
def stopped(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """The weighted job stopped in pass 2: where it runs, its checkpoint's directory and the checkpoint."""
    where = tmp_path_factory.mktemp("stopped")
    with pytest.raises(Stop):
        run(corpus, where, WEIGHTED, StopWhen(where / "t", POINTS["in pass 2"]))
    return where, job_directory(where), checkpoint_state(where / "t")


@pytest.mark.parametrize("tamper", list(TAMPER))
def test_tampered_dedup_fields_are_refused(corpus: Path, stopped: tuple[Path, Path, dict[str, Any]], tamper: str) -> None:
    """Each tampered field of the dedup's checkpoint (or hash bucket) is refused naming the directory
    to remove, nothing put in place; the checkpoint put back, the job still resumes."""
    where, directory, state = stopped
    change, caught = TAMPER[tamper]
    changed = json.loads(json.dumps(state))
    change(changed)
    (directory / "state.json").write_text(json.dumps(changed))
    try:
        with pytest.raises((bigshuf.TempSpaceError, bigshuf.OutputError, bigshuf.InputError)) as refused:
            run(corpus, where, WEIGHTED)
    finally:
        (directory / "state.json").write_text(json.dumps(state))
    assert caught in str(refused.value) and str(refused.value).endswith(f"remove {directory} to start afresh"), refused.value
    assert [p for p in (where / "out").rglob("*") if p.is_file() and ".bigshuf-" not in p.name] == []


def test_a_checkpoint_cut_back_to_the_dedup_pass_resumes_to_the_same_output(
    corpus: Path, stopped: tuple[Path, Path, dict[str, Any]], references: dict[str, dict[str, bytes]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The dedup pass's own checkpoint, with pass 1's buckets and the output's temp files of a later
    one left beside it, starts pass 1 afresh from the hash buckets and writes what a run writes
    (runs after the tampering tests: it finishes their job)."""
    where, directory, state = stopped
    cut = json.loads(json.dumps(state))
    _cut_to_the_dedup_pass(cut)
    (directory / "state.json").write_text(json.dumps(cut))
    run(corpus, where, WEIGHTED)
    assert capsys.readouterr().err == f"bigshuf: resuming from {directory}: the start of pass 1 (the dedup pass complete)\n"
    assert files_under(where / "out") == references["sources mixed, stratified split, manifest, verify"]
    assert list((where / "t").iterdir()) == []


def test_a_rerun_without_unique_is_refused_naming_the_checkpoint(tmp_path: Path, corpus: Path) -> None:
    options = JOBS["-n, gzip shards, compressed buckets, manifest"][0]
    with pytest.raises(Stop):
        run(corpus, tmp_path, options, StopWhen(tmp_path / "t", POINTS["after the dedup pass"]))
    state = checkpoint_state(tmp_path / "t")
    opts = dict(options)
    with pytest.raises(bigshuf.TempSpaceError) as refused:
        bigshuf.shuffle(
            corpus, str(tmp_path / opts.pop("output")), memory=MEMORY, seed=SEED, tmp_dir=tmp_path / "t", resume=True, **opts,
        )
    assert "other inputs, seed or options" in str(refused.value)
    assert checkpoint_state(tmp_path / "t") == state


def test_hash_buckets_split_again_are_read_again_on_resuming(tmp_path: Path) -> None:
    """Copies of a few records spread over many runs make hash buckets too big for ``-S 8K``: split
    one level deeper (while counting each source for the rates, then read from there), those
    levels are made again from the top level's hash buckets, kept for it, by a run resumed in
    pass 1, and the output is an uninterrupted run's."""
    from formats.test_unique import duplicated_lines

    (tmp_path / "in.txt").write_bytes(duplicated_lines(1_000, 500, 1))
    (tmp_path / "code.txt").write_bytes(duplicated_lines(300, 150, 2))
    options = {"output": "out/a.txt", "weighted": True, "rates": {"web": 0.5, "code": 1.5}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules[__name__], "MEMORY", "8K")
        run(tmp_path / "in.txt", tmp_path / "ref", options)
        split: list[bool] = []

        def in_pass_1(state: dict[str, Any], temp: Path) -> bool:
            if not split and any(temp.glob("bigshuf-resume-*/unique-*")):
                split.append(True)
            return state.get("blocks_done", 0) >= 10 and "pass1_done" not in state

        with pytest.raises(Stop):
            run(tmp_path / "in.txt", tmp_path / "job", options, StopWhen(tmp_path / "job" / "t", in_pass_1))
        run(tmp_path / "in.txt", tmp_path / "job", options)
    assert split
    assert (tmp_path / "job" / "out" / "a.txt").read_bytes() == (tmp_path / "ref" / "out" / "a.txt").read_bytes()
    assert list((tmp_path / "job" / "t").iterdir()) == []
