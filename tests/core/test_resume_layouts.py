"""--resume with the training mix's output layouts (issue 15): ``--shard-records``, ``--split``,
``--manifest`` and ``--shard-size``. A run interrupted at several points in turn (in pass 1,
after it, early and late in pass 2), each time resumed, writes exactly the files an
uninterrupted run writes; a checkpoint whose new fields were tampered with is refused in one
line naming its directory, and so is a rerun that changes the layout.
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

import pytest

import bigshuf
from bigshuf.core import resume
from bigshuf.progress import Progress
from bigshuf.storage.layout import Sharding, file_places

from helpers import checkpoint_state, write_short_lines


@pytest.fixture
def tmp_path(ram_tmp_path: Path) -> Path:
    """This module's ``--resume`` runs in memory where they can be (``ram_tmp_path``): they fsync at every checkpoint."""
    return ram_tmp_path

SEED, MEMORY = 7, "2M"

Ready = Callable[[dict[str, Any]], bool]


class Stop(Exception):
    """Raised by ``StopWhen`` to interrupt a run."""


class StopWhen(Progress):
    """Progress hooks that interrupt the run once its checkpoint satisfies ``ready``."""

    def __init__(self, temp: Path, ready: Ready) -> None:
        self.temp, self.ready = temp, ready

    def update(self, nbytes: int) -> None:
        if self.ready(checkpoint_state(self.temp)):
            raise Stop


#: Where the run is interrupted, one after the other: each resumed run goes on to the next point.
POINTS: list[tuple[str, Ready]] = [
    ("in pass 1", lambda s: s.get("blocks_done", 0) >= 2 and "pass1_done" not in s),
    ("after pass 1", lambda s: "pass1_done" in s),
    ("early in pass 2", lambda s: s.get("buckets_done", 0) >= 2),
    ("late in pass 2", lambda s: s.get("buckets_done", 0) >= s.get("keep", 0) - 2),
]

#: Output layouts with their options, each written under ``out/`` (the manifest beside the files).
LAYOUTS: dict[str, dict[str, Any]] = {
    "split, shard-records, manifest, gzip, -n": {
        "output": "out/{split}/p-{:03d}.txt.gz", "split": "valid=1000,test=0.1,train=rest", "shard_records": 30_000,
        "manifest": "out/manifest.json", "head_count": 150_001,
    },
    "shard-size, split, manifest, zstd": {
        "output": "out/{split}/p-{:03d}.txt", "split": "small=0.03,big=rest", "shard_size": "700K", "manifest": "out/m.json",
        "compress": "zstd",
    },
    "sources mixed, stratified, shard-records": {
        "output": "out/{split}/p-{:02d}.txt", "weighted": True, "mix": {"web": 0.7, "code": 0.3}, "total": 150_000,
        "split": "valid=0.02,train=rest", "stratify": True, "shard_records": 40_000,
    },
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200,000 short lines (6 MB): 21 buckets and 6 pass-1 blocks at ``-S 2M``; beside it, for
    weighted sources, ``code.txt`` of 30,000."""
    top = tmp_path_factory.mktemp("layouts")
    write_short_lines(top / "code.txt", 30_000, seed=6)
    return write_short_lines(top / "in.txt", 200_000, seed=5)


def run(
    corpus: Path, where: Path, options: dict[str, Any], progress: Progress | None = None, memory: str = MEMORY, seed: int = SEED,
) -> None:
    """The job of ``options`` in directory ``where`` (its ``out/`` and its ``-T``); ``weighted``: the
    corpus and ``code.txt`` as two sources."""
    opts = dict(options)
    output = str(where / opts.pop("output"))
    inputs: Path | tuple[()] = corpus
    if opts.pop("weighted", False):
        opts["sources"] = {"web": str(corpus), "code": str(corpus.parent / "code.txt")}
        inputs = ()
    if "manifest" in opts:
        opts["manifest"] = str(where / opts["manifest"])
    (where / "t").mkdir(parents=True, exist_ok=True)
    bigshuf.shuffle(
        inputs, output, memory=memory, seed=seed, tmp_dir=where / "t", resume=True, progress=progress or Progress(), **opts,
    )


def files_under(top: Path) -> dict[str, bytes]:
    """Every file under ``top``, by its path relative to it."""
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_run_interrupted_at_several_points_writes_what_an_uninterrupted_run_writes(
    tmp_path: Path, corpus: Path, layout: str,
) -> None:
    options = LAYOUTS[layout]
    run(corpus, tmp_path / "ref", options)
    reference = files_under(tmp_path / "ref" / "out")
    assert len(reference) >= 2
    job = tmp_path / "job"
    for name, ready in POINTS:
        with pytest.raises(Stop):
            run(corpus, job, options, StopWhen(job / "t", ready))
        assert ready(checkpoint_state(job / "t")), name
        assert not (job / "out").exists() or all(p.is_dir() or ".bigshuf-" in p.name for p in (job / "out").rglob("*"))
    run(corpus, job, options)
    assert files_under(job / "out") == reference
    assert list((job / "t").iterdir()) == []
    if "manifest" in options:
        checked = subprocess.run(
            [sys.executable, "-m", "bigshuf", "--check-manifest", str(job / options["manifest"])], capture_output=True,
        )
        assert checked.returncode == 0, checked.stderr


def test_runs_killed_at_several_points_write_what_an_uninterrupted_run_writes(tmp_path: Path, corpus: Path) -> None:
    """As above, with the command killed by SIGKILL (nothing of the run's own clean-up runs), on
    weighted sources at rates cut into splits and shards by size, with a manifest and ``--verify``.
    The uninterrupted run writes in the same place with the same command line first (the manifest
    records it)."""
    options = {
        "output": "out/{split}/p-{:03d}.txt.gz", "split": "valid=0.01,train=rest", "shard_size": "1M",
        "manifest": "out/m.json", "rate": ["web=0.6", "code=2.5"], "verify": True,
        "source": ["web=" + str(corpus), "code=" + str(corpus.parent / "code.txt")],
    }
    cmd = argv(tmp_path, (), options)
    (tmp_path / "t").mkdir()
    subprocess.run(cmd, check=True)
    (tmp_path / "out").rename(tmp_path / "ref")
    for name, ready in [POINTS[0], *POINTS[2:]]:
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not ready(checkpoint_state(tmp_path / "t")):
            assert proc.poll() is None, f"the run ended before {name}"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.kill()
        proc.wait()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    assert files_under(tmp_path / "out") == files_under(tmp_path / "ref")
    assert list((tmp_path / "t").iterdir()) == []


def interrupted(where: Path, corpus: Path, options: dict[str, Any], ready: Ready) -> tuple[Path, dict[str, Any]]:
    """A job of ``options`` in ``where`` stopped once its checkpoint satisfies ``ready``: its directory and checkpoint."""
    with pytest.raises(Stop):
        run(corpus, where, options, StopWhen(where / "t", ready))
    (directory,) = [d for d in (where / "t").iterdir() if d.name.startswith("bigshuf-resume-")]
    return directory, checkpoint_state(where / "t")


def argv(where: Path, inputs: Path | tuple[()], options: dict[str, Any]) -> list[str]:
    """The command line of the job of ``options`` in ``where`` (a list value: the option repeated)."""
    args = [sys.executable, "-m", "bigshuf", "--resume", "--seed", str(SEED), "-S", MEMORY, "-T", str(where / "t")]
    for key, value in options.items():
        if key != "output":
            flag = "-n" if key == "head_count" else "--" + key.replace("_", "-")
            for each in value if isinstance(value, list) else [value]:
                args += [flag] if each is True else [flag, str(where / each) if key == "manifest" else str(each)]
    return [*args, *([] if inputs == () else [str(inputs)]), "-o", str(where / options["output"])]


SPLIT_MANIFEST = LAYOUTS["split, shard-records, manifest, gzip, -n"]
SIZED = LAYOUTS["shard-size, split, manifest, zstd"]


def _move_a_record(s: dict[str, Any]) -> None:
    """One record counted in the last file but one instead of the last (the sum kept)."""
    records = s["output"]["records"]
    records[-2] += 1
    records[-1] -= 1


def _drop_a_file(s: dict[str, Any]) -> None:
    """The last file forgotten, its records counted in the one before."""
    out = s["output"]
    last = out["records"].pop()
    out["records"][-1] += last
    out["files"].pop()


def _one_more_file(s: dict[str, Any]) -> None:
    """A file more than the output has so far, with one of the last file's records."""
    out = s["output"]
    out["records"][-1] -= 1
    out["records"].append(1)
    out["files"].append(list(out["files"][-1]))


def _fingerprint_digest(s: dict[str, Any]) -> None:
    """The output's fingerprint changed, its counts kept."""
    s["output"]["fingerprint"][2] ^= 1


def _records_missing(s: dict[str, Any]) -> None:
    del s["output"]["records"]


def _bytes_done(s: dict[str, Any]) -> None:
    """Pass 1 said to have scattered a byte more (weighted sources' buckets do not hold the bytes read)."""
    s["bytes_done"] += 1


def _bucket_records(s: dict[str, Any]) -> None:
    """A record more in the first bucket, its bytes kept."""
    s["buckets"]["records"][0] += 1


TAMPER: dict[str, Callable[[dict[str, Any]], None]] = {
    "records missing": _records_missing,
    "a record moved between files": _move_a_record,
    "a file dropped": _drop_a_file,
    "a file added": _one_more_file,
    "fingerprint": _fingerprint_digest,
}
#: Weighted sources at rates (the tampering tests; the SIGKILL test runs the like from the command line).
WEIGHTED = {
    "output": "out/{split}.txt", "weighted": True, "rates": {"web": 0.5, "code": 2.5}, "split": "valid=0.01,train=rest",
    "manifest": "out/m.json", "verify": True,
}
JOBS = {"records": SPLIT_MANIFEST, "size": SIZED, "weighted": WEIGHTED}
def _input_records(s: dict[str, Any]) -> None:
    """An input's record count (from the counting pass) not a count."""
    s["records"][0] = -1


def _records_read(s: dict[str, Any]) -> None:
    """An input's records read by pass 1 not a count."""
    s["records_read"][0][1] = -1


TAMPER.update({
    "bytes_done": _bytes_done, "a bucket's records": _bucket_records, "an input's records": _input_records,
    "an input's records read": _records_read,
})
#: Each layout's tampering, with what the refusal says: which check caught it.
CASES = [
    ("records", "records missing", "output is not {files, done, fingerprint, records}"),
    ("records", "a record moved between files", "by the output's plan it ends at record"),
    ("records", "a file dropped", "by the output's plan it ends at record"),
    ("records", "a file added", "by the output's plan it ends at record"),
    ("records", "fingerprint", "output fingerprint that the files taken up from it do not add up to"),
    ("size", "a record moved between files", "the checkpoint in"),  # each file's records, read back
    ("size", "a file dropped", "the checkpoint in"),
    ("size", "a file added", "the checkpoint says"),  # the last file is then a finished one, cut short
    ("size", "fingerprint", "output fingerprint that the files taken up from it do not add up to"),
    ("weighted", "a file added", "by the output's plan it ends at record"),
    ("weighted", "bytes_done", "the inputs hold"),  # read again, the draws replayed
    ("weighted", "a bucket's records", "read_fingerprint"),
    ("weighted", "an input's records", "records[0] is -1"),
    ("weighted", "an input's records read", "records_read[0] records is -1"),
]


@pytest.fixture(scope="module")
def stopped(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, dict[str, Any]]]:
    """Per layout (split and shards by records; split and shards by size; weighted sources), a job
    interrupted in pass 2 with several output files: where it runs, its checkpoint's directory and
    the checkpoint."""
    jobs = {}
    for name, options in JOBS.items():
        where = tmp_path_factory.mktemp(name)
        directory, state = interrupted(where, corpus, options, lambda s: s.get("buckets_done", 0) >= 8)
        assert len(state["output"]["files"]) >= 2
        jobs[name] = (where, directory, state)
    return jobs


@pytest.mark.parametrize("layout,tamper,caught", CASES)
def test_tampered_layout_fields_are_refused(
    corpus: Path, stopped: dict[str, tuple[Path, Path, dict[str, Any]]], tamper: str, layout: str, caught: str,
) -> None:
    """Each tampered field is refused naming the directory to remove, before any output is put in
    place; the checkpoint put back, the job still resumes (the refused run changed nothing)."""
    where, directory, state = stopped[layout]
    changed = json.loads(json.dumps(state))
    TAMPER[tamper](changed)
    (directory / "state.json").write_text(json.dumps(changed))
    try:
        with pytest.raises((bigshuf.TempSpaceError, bigshuf.OutputError, bigshuf.InputError)) as refused:
            run(corpus, where, JOBS[layout])
    finally:
        (directory / "state.json").write_text(json.dumps(state))
    assert caught in str(refused.value) and str(refused.value).endswith(f"remove {directory} to start afresh"), refused.value
    assert [p for p in (where / "out").rglob("*") if p.is_file() and ".bigshuf-" not in p.name] == []


@pytest.mark.parametrize("layout,change", [
    ("records", {"split": "valid=1000,test=0.2,train=rest"}), ("records", {"shard_records": 29_000}),
    ("records", {"manifest": "out/other.json"}), ("size", {"shard_size": "701K"}),
    ("weighted", {"rates": {"web": 0.5, "code": 2}}), ("weighted", {"stratify": True}),
])
def test_a_rerun_with_another_layout_is_refused_naming_the_checkpoint(
    corpus: Path, stopped: dict[str, tuple[Path, Path, dict[str, Any]]], layout: str, change: dict[str, Any],
) -> None:
    """The checkpoint is named by the output alone: a rerun with another split, shard cut, manifest
    or rate finds it, and is refused by its key before it reads or writes anything."""
    where, directory, state = stopped[layout]
    with pytest.raises(bigshuf.TempSpaceError) as refused:
        run(corpus, where, {**JOBS[layout], **change})
    assert str(refused.value).startswith(f"{directory}: checkpoint ") and "other inputs, seed or options" in str(refused.value)
    assert str(refused.value).endswith(f"remove {directory} to start afresh")
    assert checkpoint_state(where / "t") == state


def test_a_rerun_with_another_split_says_so_in_one_line(corpus: Path, stopped: dict[str, tuple[Path, Path, dict[str, Any]]]) -> None:
    where, directory, state = stopped["records"]
    result = subprocess.run(argv(where, corpus, {**SPLIT_MANIFEST, "split": "valid=1000,test=0.2,train=rest"}), capture_output=True)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.startswith(f"bigshuf: {directory}: ") and err.count("\n") == 1, err
    assert checkpoint_state(where / "t") == state


@pytest.mark.parametrize("counts,splits,sharding,places", [
    ([3, 3, 1], [7], Sharding(records=3), [(0, 0), (0, 1), (0, 2)]),
    ([2, 3, 1], [2, 5], Sharding(records=3), [(0, 0), (1, 0), (1, 1)]),
    ([0, 0, 2, 3, 1], [0, 5, 4], Sharding(count=2), [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]),  # an empty split: empty shards
    ([4, 1, 2], [5, 2], Sharding(size=100), [(0, 0), (0, 1), (1, 0)]),
    ([5], [5, 2], Sharding(), [(0, 0)]),
])
def test_file_places_follow_the_plan(counts: list[int], splits: list[int], sharding: Sharding, places: list[tuple[int, int]]) -> None:
    assert file_places(counts, splits, sharding) == places


@pytest.mark.parametrize("counts,splits,sharding", [
    ([2, 3], [7], Sharding(records=3)),  # a file cut by count that is not full
    ([3, 3, 1, 1], [7], Sharding(records=3)),  # a file more than the split has
    ([3, 0], [7], Sharding(records=3)),  # the last file empty: none is opened without a record
    ([6], [5, 2], Sharding(size=100)),  # past the split's end
    ([5, 2, 1], [5, 2], Sharding()),  # more files than the splits
])
def test_file_places_refuse_what_no_run_cuts(counts: list[int], splits: list[int], sharding: Sharding) -> None:
    with pytest.raises(ValueError):
        file_places(counts, splits, sharding)


@pytest.mark.parametrize("layout", ["records", "size"])
def test_a_finished_output_file_changed_on_disk_is_refused(
    corpus: Path, stopped: dict[str, tuple[Path, Path, dict[str, Any]]], layout: str,
) -> None:
    """A file the checkpoint counts as finished (one byte of it changed, its size kept) is checked,
    not trusted: refused naming it and the directory to remove."""
    where, directory, _state = stopped[layout]
    temps = sorted((p for p in (where / "out").rglob("*.bigshuf-tmp")), key=lambda p: p.stat().st_mtime_ns)
    first = temps[0]
    data = first.read_bytes()
    first.write_bytes(data[:50] + bytes([data[50] ^ 1]) + data[51:])
    try:
        with pytest.raises(bigshuf.OutputError) as refused:
            run(corpus, where, JOBS[layout])
    finally:
        first.write_bytes(data)
    assert str(refused.value).startswith(f"{first}: ") and str(refused.value).endswith(f"remove {directory} to start afresh")


@pytest.mark.parametrize("options,caught", [
    ({"weighted": True, "mix": {"web": 0.5, "code": 0.5}, "total": 60_000, "stratify": True}, "the interrupted run counted"),
    ({"weighted": True, "rates": {"web": 1, "code": 2}}, "its part read again holds"),  # no counting pass: pass 1's count
    ({}, "its part read again holds"),  # the manifest's counts
], ids=["counted sources", "sources at rates", "manifest"])
def test_an_input_whose_record_count_changed_where_the_content_check_does_not_look_is_refused(
    tmp_path: Path, corpus: Path, options: dict[str, Any], caught: str,
) -> None:
    """The run interrupted in pass 2: a byte of an input between the content check's samples turned
    into a newline (size and mtime put back) adds a record that the draws made (or the counts the
    manifest gives) did not see. Refused naming the input and the directory to remove, nothing
    written; the byte put back, the job resumes."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    web = inputs / "in.txt"
    web.write_bytes(corpus.read_bytes())
    (inputs / "code.txt").write_bytes((corpus.parent / "code.txt").read_bytes())
    options = {"output": "out/{split}.txt", "split": "valid=0.1,train=rest", "manifest": "out/m.json", **options}
    where = tmp_path / "job"
    directory, state = interrupted(where, web, options, lambda s: s.get("buckets_done", 0) >= 2)
    data = bytearray(web.read_bytes())
    size, mtime = len(data), web.stat().st_mtime_ns
    second = (size - resume.SAMPLE_BYTES) // (resume.SAMPLES - 1)  # where the content check's second sample starts
    at = data.index(b"\n", second - resume.SAMPLE_BYTES // 2) - 1  # between its first and second samples: a letter
    assert resume.SAMPLE_BYTES <= at < second and data[at] != 10
    was = data[at]
    data[at] = 10
    web.write_bytes(data)
    os.utime(web, ns=(mtime, mtime))
    assert resume.input_identity([str(web)])[0][3] == state["inputs"][0][3]  # the content check sees no change
    with pytest.raises(bigshuf.InputError) as refused:
        run(web, where, options)
    message = str(refused.value)
    assert message.startswith(f"{web}: changed since the interrupted run") and caught in message, message
    assert message.endswith(f"remove {directory} to start afresh"), message
    assert "\n" not in message
    assert [p for p in (where / "out").rglob("*") if p.is_file() and ".bigshuf-" not in p.name] == []
    assert checkpoint_state(where / "t") == state
    data[at] = was
    web.write_bytes(data)
    os.utime(web, ns=(mtime, mtime))
    run(web, where, options)
    assert [e["records"] for e in json.loads((where / "out" / "m.json").read_text())["inputs"]][0] == data.count(b"\n")


def test_a_failed_run_removes_the_directory_it_made_for_its_lock(tmp_path: Path) -> None:
    """``-o 'run/{split}/...'`` with ``--resume`` makes ``run/`` for the job's lock first; a run that
    failed before writing anything there left it behind, empty (found by attack), where a run
    without ``--resume`` removes the directories it made."""
    src = tmp_path / "odd.txt"
    src.write_bytes(b"".join(b"%d\n" % i for i in range(7)))  # 3 records of 2 lines, and 1 line over
    with pytest.raises(bigshuf.InputError, match="left over"):
        bigshuf.shuffle(
            src, str(tmp_path / "run" / "{split}" / "out.txt"), split="a=0.5,b=0.5", lines_per_record=2,
            resume=True, seed=1, tmp_dir=tmp_path,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.txt"]
