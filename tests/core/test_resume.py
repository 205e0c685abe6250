"""--resume: a run killed with SIGKILL at any checkpoint continues where it stopped and writes
exactly what an uninterrupted run writes; changed inputs are refused."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import bigshuf
from bigshuf.storage.commit import TEST_KILL_VARIABLE

from helpers import checkpoint_state, kill_at_checkpoint, write_short_lines


@pytest.fixture
def tmp_path(ram_tmp_path: Path) -> Path:
    """This module's ``--resume`` runs in memory where they can be (``ram_tmp_path``): they fsync at every checkpoint."""
    return ram_tmp_path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_short_lines(tmp_path_factory.mktemp("resume") / "in.txt", 700_000, seed=3)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough lines for several buckets at -S 1M, for the tests that run a job many times."""
    return write_short_lines(tmp_path_factory.mktemp("resume") / "small.txt", 150_000, seed=5)


def _args(corpus: Path, temp: Path, target: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bigshuf", "--resume", "--seed", "7", "-S", "1M", "-T", str(temp), str(corpus), "-o", target, *extra]


POINTS = {
    "early in pass 1": lambda s: s.get("blocks_done", 0) >= 3,
    "late in pass 1": lambda s: s.get("blocks_done", 0) >= 40,
    "early in pass 2": lambda s: s.get("buckets_done", 0) >= 2,
    "late in pass 2": lambda s: s.get("buckets_done", 0) >= 60,
}


#: Every point for one output; for shards, one point in each pass (their checkpoints
#: differ from one output's only in the files, which one point in each pass exercises).
KILLS = [(False, point) for point in POINTS] + [(True, "early in pass 1"), (True, "late in pass 2")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Callable[[bool], dict[str, bytes]]:
    """What an uninterrupted ``--resume`` run writes, one output or three shards (each file's bytes by
    name), made once in a test process for every kill point below; for one output, also checked to be
    what a run without ``--resume`` writes."""

    @functools.cache
    def made(shards: bool) -> dict[str, bytes]:
        top = tmp_path_factory.mktemp("reference")
        (top / "rt").mkdir()
        extra = ["--shards", "3"] if shards else []
        subprocess.run(_args(corpus, top / "rt", str(top / ("ref/p{}.txt.gz" if shards else "ref.txt")), *extra), check=True)
        assert list((top / "rt").iterdir()) == []
        files = sorted((top / "ref").iterdir()) if shards else [top / "ref.txt"]
        if not shards:
            bigshuf.shuffle(corpus, top / "plain.txt", memory="1M", seed=7, tmp_dir=top)
            assert (top / "plain.txt").read_bytes() == files[0].read_bytes()
        return {f.name: f.read_bytes() for f in files}

    return made


@pytest.mark.parametrize(("shards", "point"), KILLS)
def test_killed_run_resumes_to_the_same_output(
    tmp_path: Path, corpus: Path, uninterrupted: Callable[[bool], dict[str, bytes]], point: str, shards: bool
) -> None:
    extra = ["--shards", "3"] if shards else []
    target = str(tmp_path / ("s/p{}.txt.gz" if shards else "out.txt"))
    temp = tmp_path / "t"
    temp.mkdir()
    state = kill_at_checkpoint(_args(corpus, temp, target, *extra), temp, POINTS[point])
    assert state  # a checkpoint was written before the kill
    resumed = subprocess.run(_args(corpus, temp, target, *extra), capture_output=True)
    assert resumed.returncode == 0, resumed.stderr
    reference = uninterrupted(shards)
    assert sorted(reference) == ([f"p{i}.txt.gz" for i in range(3)] if shards else ["ref.txt"])
    for name, data in reference.items():
        assert (Path(target).parent / (name if shards else "out.txt")).read_bytes() == data
    assert list(temp.iterdir()) == []
    leftovers = [p.name for p in Path(target).parent.iterdir() if p.name.endswith(".bigshuf-tmp")]
    assert leftovers == []


@pytest.mark.parametrize("point", ["late in pass 1", "late in pass 2"])
def test_bytes_written_past_the_checkpoint_are_cut_back(
    tmp_path: Path, corpus: Path, uninterrupted: Callable[[bool], dict[str, bytes]], point: str
) -> None:
    """A run killed between checkpoints leaves its buckets (in pass 1) or its output (in pass 2)
    longer than the checkpoint says. Records appended to them (to the output, more than the rest of
    it holds) are cut back on resuming: the output is the uninterrupted run's. A kill lands between
    checkpoints only by its timing; this puts the files there every time."""
    target = tmp_path / "out.txt"
    temp = tmp_path / "t"
    temp.mkdir()
    kill_at_checkpoint(_args(corpus, temp, str(target)), temp, POINTS[point])
    (job,) = temp.iterdir()
    if point.endswith("1"):
        grown = [p for p in job.rglob("bucket-*") if p.is_file()]
        assert len(grown) > 100
    else:
        grown = list(tmp_path.glob(".out.txt.*.bigshuf-tmp"))
        assert len(grown) == 1
    for path in grown:
        with open(path, "ab") as f:
            f.write(b"written past the checkpoint\n" * (10 if point.endswith("1") else 600_000))
    resumed = subprocess.run(_args(corpus, temp, str(target)), capture_output=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert target.read_bytes() == uninterrupted(False)["ref.txt"]
    assert list(temp.iterdir()) == []


def test_the_test_hook_stops_the_run_at_each_checkpoint(tmp_path: Path, small: Path) -> None:
    """What ``kill_at_checkpoint`` counts on: with the hook set, the run stops after each checkpoint
    it saves, the checkpoint complete and newer each time, and ends as usual when let go on."""
    from bigshuf.core.checkpoint import TEST_STOP_VARIABLE

    temp = tmp_path / "t"
    temp.mkdir()
    proc = subprocess.Popen(_args(small, temp, str(tmp_path / "out")), env={**os.environ, TEST_STOP_VARIABLE: "1"})
    seen: list[tuple[int, bool, int]] = []
    try:
        while True:
            _, status = os.waitpid(proc.pid, os.WUNTRACED)
            if not os.WIFSTOPPED(status):
                break
            state = checkpoint_state(temp)
            seen.append((state["blocks_done"], "pass1_done" in state, state.get("buckets_done", -1)))
            os.kill(proc.pid, signal.SIGCONT)
    except BaseException:
        proc.kill()  # (stopped or not: never left behind)
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    assert len(seen) > 5 and seen == sorted(set(seen))
    assert seen[-1][2] > 0  # pass 2's checkpoints too
    assert (tmp_path / "out").read_bytes() != small.read_bytes() and sorted((tmp_path / "out").read_bytes().splitlines()) == sorted(small.read_bytes().splitlines())


def test_changed_input_is_refused(tmp_path: Path, corpus: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(corpus.read_bytes())
    temp = tmp_path / "t"
    temp.mkdir()
    kill_at_checkpoint(_args(src, temp, str(tmp_path / "out")), temp, POINTS["early in pass 1"])
    with open(src, "ab") as f:
        f.write(b"one more line\n")
    again = subprocess.run(_args(src, temp, str(tmp_path / "out")), capture_output=True)
    assert again.returncode == 1
    assert b"changed since the interrupted run" in again.stderr and b"remove" in again.stderr
    assert not (tmp_path / "out").exists()


def test_resume_needs_a_seed_and_files(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(bigshuf.UsageError, match="seed="):
        bigshuf.shuffle(corpus, tmp_path / "out", resume=True)
    with pytest.raises(bigshuf.UsageError, match="standard input"):
        bigshuf.shuffle("-", tmp_path / "out", resume=True, seed=1)
    with pytest.raises(bigshuf.UsageError, match=r"^resume=True needs output= a file \(not standard output\)$"):
        bigshuf.shuffle(corpus, None, resume=True, seed=1)
    with pytest.raises(bigshuf.UsageError, match=r"^resume=True cannot be used with repeat=True$"):
        bigshuf.shuffle(corpus, tmp_path / "out", resume=True, seed=1, repeat=True, head_count=3)


@pytest.mark.parametrize("change", [5, -1])
def test_a_checkpoint_miscounting_a_bucket_is_refused(tmp_path: Path, corpus: Path, change: int) -> None:
    """A bucket's record count edited in the checkpoint (its bytes and CRC untouched) planned the
    splits by it: +5 moved records from one split to the other and exited 0, -1 was an internal
    IndexError. The bucket read back is counted, and the run is refused in one line."""
    import json

    temp = tmp_path / "t"
    temp.mkdir()
    target = str(tmp_path / "o" / "{split}.txt")
    args = _args(corpus, temp, target, "--split", "a=0.5,b=rest")
    state = kill_at_checkpoint(args, temp, POINTS["late in pass 1"])
    records = state["buckets"]["records"]
    j = next(j for j, n in enumerate(records) if n > 1)
    (path,) = list(temp.glob("*/state.json"))
    saved = json.loads(path.read_text())
    saved["buckets"]["records"][j] += change
    path.write_text(json.dumps(saved))
    again = subprocess.run(args, capture_output=True)
    assert again.returncode == 1
    assert again.stderr.splitlines()[-1].endswith(b"to start afresh") and b"temporary bucket is corrupt" in again.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


CUT_THEN_KILL = """
import os, signal, sys
from bigshuf.core import driver
cutoff = driver.TwoPass.cutoff
def cut_then_die(self, buckets, keep):
    kept = cutoff(self, buckets, keep)
    if kept < keep and self.state.get("blocks_done"):  # buckets dropped since the last checkpoint
        os.kill(os.getpid(), signal.SIGKILL)
    return kept
driver.TwoPass.cutoff = cut_then_die
from bigshuf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_after_head_count_drops_buckets_resumes(tmp_path: Path, small: Path) -> None:
    """``-n`` drops the buckets it will never reach as pass 1 goes; their files were removed at
    once, while the last checkpoint still counted them, so a run killed before the next one could
    never resume ("bucket missing, the checkpoint counts 74858 bytes"), every later try the same.
    Found by an attack killing runs at random times (3 of 6 with -n); here the kill comes right
    after a cut that follows a checkpoint."""
    ref = tmp_path / "ref.txt"
    (tmp_path / "rt").mkdir()
    subprocess.run(_args(small, tmp_path / "rt", str(ref), "-n", "20000"), check=True)
    temp = tmp_path / "t"
    temp.mkdir()
    killed = subprocess.run([sys.executable, "-c", CUT_THEN_KILL, *_args(small, temp, str(tmp_path / "out.txt"), "-n", "20000")[3:]])
    assert killed.returncode == -9
    resumed = subprocess.run(_args(small, temp, str(tmp_path / "out.txt"), "-n", "20000"), capture_output=True)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "out.txt").read_bytes() == ref.read_bytes()
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("shards", [False, True])
def test_a_run_killed_at_any_step_of_its_commit_resumes(tmp_path: Path, small: Path, shards: bool) -> None:
    """A run killed after its commit renamed the output but before it removed its checkpoint
    could never resume: "...bigshuf-tmp: missing, though the checkpoint counts 18288895 bytes in
    it", every later try the same, though the output was complete. The temp file is now made
    again from the committed file when that holds the bytes the checkpoint counts."""
    import os

    extra = ["--shards", "3"] if shards else []
    target = str(tmp_path / ("s/p{}.txt.gz" if shards else "out.txt"))
    (tmp_path / "rt").mkdir()
    ref_target = str(tmp_path / ("ref/p{}.txt.gz" if shards else "ref.txt"))
    subprocess.run(_args(small, tmp_path / "rt", ref_target, *extra), check=True)
    names = [f"p{i}.txt.gz" for i in range(3)] if shards else ["out.txt"]
    refs = [Path(ref_target).parent / (name if shards else "ref.txt") for name in names]
    killed_at = []
    for step in range(1, 9):
        temp = tmp_path / f"t{step}"
        temp.mkdir()
        env = {**os.environ, "BIGSHUF_TEST_KILL_AT": str(step)}
        if subprocess.run(_args(small, temp, target, *extra), env=env, capture_output=True).returncode != -9:
            continue  # the commit has fewer steps
        killed_at.append(step)
        resumed = subprocess.run(_args(small, temp, target, *extra), capture_output=True)
        assert resumed.returncode == 0, (step, resumed.stderr)
        assert [(Path(target).parent / n).read_bytes() for n in names] == [r.read_bytes() for r in refs], step
        assert list(temp.iterdir()) == []
        assert [p.name for p in Path(target).parent.iterdir() if p.name.startswith(".")] == []
    assert len(killed_at) >= 2


def test_a_copy_back_from_the_committed_output_cut_short_is_made_again(tmp_path: Path, small: Path) -> None:
    """The temp file made again from the committed output, if a kill cuts that copy short, is
    shorter than the checkpoint counts: it was refused for good (found by review); it is copied again."""
    import os

    (tmp_path / "rt").mkdir()
    subprocess.run(_args(small, tmp_path / "rt", str(tmp_path / "ref.txt")), check=True)
    temp = tmp_path / "t"
    temp.mkdir()
    target = tmp_path / "out.txt"
    killed = subprocess.run(_args(small, temp, str(target)), env={**os.environ, "BIGSHUF_TEST_KILL_AT": "2"})
    assert killed.returncode == -9 and target.exists()
    (lock,) = [p for p in tmp_path.iterdir() if p.name.startswith(".out.txt.bigshuf-resume-") and p.name.endswith(".lock")]
    Path(str(lock)[: -len(".lock")] + ".bigshuf-tmp").write_bytes(target.read_bytes()[:1000])
    resumed = subprocess.run(_args(small, temp, str(target)), capture_output=True)
    assert resumed.returncode == 0, resumed.stderr
    assert target.read_bytes() == (tmp_path / "ref.txt").read_bytes()
    assert list(temp.iterdir()) == [] and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_job_over_its_own_input_killed_after_its_commit_finishes_on_rerun(tmp_path: Path) -> None:
    """``--resume -o data.txt data.txt`` killed after the output was renamed into place, before its
    checkpoint was removed: the rerun refused, calling the job's own output a changed input and
    advising a fresh start, which would shuffle the shuffled data (found by attack). It now takes
    the output back from the file, as for any output, and ends with the same bytes."""
    data = write_short_lines(tmp_path / "data.txt", 20_000, seed=8)
    copy = tmp_path / "copy.txt"
    copy.write_bytes(data.read_bytes())
    temp = tmp_path / "T"
    temp.mkdir()
    common = [sys.executable, "-m", "bigshuf", "--resume", "--seed", "3", "-S", "64K", "-T", str(temp)]
    subprocess.run([*common, str(copy), "-o", str(tmp_path / "reference.txt")], check=True, timeout=120)
    expected = (tmp_path / "reference.txt").read_bytes()
    # Commit step 2 of a single output: just after the rename.
    killed = subprocess.run([*common, str(data), "-o", str(data)], env={**os.environ, TEST_KILL_VARIABLE: "2"},
                            capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert data.read_bytes() == expected and os.listdir(temp) != []
    again = subprocess.run([*common, str(data), "-o", str(data)], capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert b"resuming from" in again.stderr and b"changed" not in again.stderr
    assert data.read_bytes() == expected
    assert os.listdir(temp) == [] and sorted(os.listdir(tmp_path)) == ["T", "copy.txt", "data.txt", "reference.txt"]


def test_a_job_over_its_own_input_grown_after_its_commit_is_refused_not_cut(tmp_path: Path) -> None:
    """The rerun took the job's committed output back when the file began with the bytes its
    checkpoint counts, so lines appended since were cut off without a word (found by review)."""
    data = write_short_lines(tmp_path / "data.txt", 20_000, seed=9)
    temp = tmp_path / "T"
    temp.mkdir()
    common = [sys.executable, "-m", "bigshuf", "--resume", "--seed", "3", "-S", "64K", "-T", str(temp), str(data), "-o", str(data)]
    killed = subprocess.run(common, env={**os.environ, TEST_KILL_VARIABLE: "2"}, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    with open(data, "ab") as f:
        f.write(b"appended since\n")
    grown = data.read_bytes()
    again = subprocess.run(common, capture_output=True, timeout=120)
    assert again.returncode == 1 and b"changed since the interrupted run" in again.stderr, again.stderr
    assert data.read_bytes() == grown


#: ``python -c`` this, N, then bigshuf's arguments: the command, killed (SIGKILL) at its Nth removal of a
#: directory tree, the first ones those of its finished ``--resume`` job's directory.
_KILL_IN_DISCARD = """
import os, signal, sys
from bigshuf.storage import tempspace
from bigshuf.command import main
real, calls, at = tempspace.remove_tree, [0], int(sys.argv[1])
def remove_tree(path):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), signal.SIGKILL)
    real(path)
tempspace.remove_tree = remove_tree
sys.argv = ["bigshuf", *sys.argv[2:]]
sys.exit(main())
"""


@pytest.mark.parametrize("unique", [False, True])
@pytest.mark.parametrize("at", [1, 2])
def test_a_job_killed_while_removing_its_finished_checkpoint_is_finished_by_a_rerun(tmp_path: Path, unique: bool, at: int) -> None:
    """Killed while its directory was removed, the output in place: a rerun exits 0, the output the
    same bytes, and nothing is left. The directory went in pieces, ``state.json`` last: a rerun of a
    ``--unique`` job then found its hash buckets gone and refused to resume, telling the user to start
    afresh (found by attack). Now it is first renamed away whole, to a dead run's name that the rerun removes."""
    src, ref, out = tmp_path / "in.txt", tmp_path / "ref.txt", tmp_path / "out.txt"
    write_short_lines(src, 150_000, seed=3)
    with src.open("ab") as f:
        f.write(src.read_bytes()[:300_000])  # copies, for --unique to drop
    temp = tmp_path / "t"
    temp.mkdir()
    args = ["--seed", "4", "-S", "512K", *(["--unique"] if unique else []), str(src)]
    subprocess.run([sys.executable, "-m", "bigshuf", *args, "-o", str(ref)], check=True, timeout=120)
    resumed = ["--resume", "-T", str(temp), *args, "-o", str(out)]
    killed = subprocess.run([sys.executable, "-c", _KILL_IN_DISCARD, str(at), *resumed], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert out.read_bytes() == ref.read_bytes()  # in place before the kill
    left = os.listdir(temp)
    assert len(left) == 1 and re.fullmatch(r"bigshuf-[0-9a-f]{12}", left[0]), left  # renamed from bigshuf-resume-*
    again = subprocess.run([sys.executable, "-m", "bigshuf", *resumed], capture_output=True, timeout=120)
    assert again.returncode == 0 and again.stderr.endswith(b"left by a run that is gone\n"), again.stderr
    assert out.read_bytes() == ref.read_bytes()
    assert os.listdir(temp) == []


def test_a_job_lock_name_hard_linked_to_a_file_never_writes_into_it(tmp_path: Path) -> None:
    """The job's lock was opened read-write where its name already was, and its holder written over
    the file's bytes: a hard link planted at the predictable name (``.OUT.bigshuf-resume-HASH.lock``)
    truncated whatever file it named (found by attack). The name goes, and a lock of its own is made."""
    from bigshuf.core.resume import JobLock

    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"precious data\n")
    lock_path = tmp_path / ".out.lock"
    os.link(precious, lock_path)
    lock = JobLock(str(lock_path))
    lock.acquire("pid 1, checkpoint in t")
    try:
        assert precious.read_bytes() == b"precious data\n" and precious.stat().st_nlink == 1
        assert lock_path.read_bytes() == b"pid 1, checkpoint in t\n"
    finally:
        lock.release()
    assert not lock_path.exists()


def test_a_job_lock_that_cannot_be_written_is_one_error_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while the lock was written raised a bare OSError ("No space left on device", no
    file named) and left the lock file behind (found by attack)."""
    from bigshuf.core.resume import JobLock
    from bigshuf.errors import OutputError

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    lock_path = tmp_path / ".out.lock"
    with pytest.raises(OutputError) as info:
        JobLock(str(lock_path)).acquire("pid 1")
    assert str(info.value) == f"{lock_path}: cannot write this resume=True job's lock: No space left on device"
    assert os.listdir(tmp_path) == []
