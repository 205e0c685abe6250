"""--resume trusts nothing it finds on disk (issue 11, items 2-7; issue 12's resume note).

A run is interrupted in-process at a chosen checkpoint (a progress hook raises once the
checkpoint says so), its files are damaged, tampered with or attacked, and the command is
run again: it must refuse with one line naming the file or the directory to remove, exit 1,
and leave no output, or (where the damage is harmless) resume to the right output.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import bigshuf
from bigshuf.progress import Progress

from helpers import checkpoint_state, write_short_lines


@pytest.fixture
def tmp_path(ram_tmp_path: Path) -> Path:
    """This module's ``--resume`` runs in memory where they can be (``ram_tmp_path``): they fsync at every checkpoint."""
    return ram_tmp_path

SEED, MEMORY = 7, "4M"


class Stop(Exception):
    """Raised by ``StopWhen`` to interrupt a run."""


class StopWhen(Progress):
    """Progress hooks that interrupt the run once its checkpoint satisfies ``ready``."""

    def __init__(self, temp: Path, ready: Callable[[dict[str, Any]], bool]) -> None:
        self.temp, self.ready = temp, ready

    def update(self, nbytes: int) -> None:
        if self.ready(checkpoint_state(self.temp)):
            raise Stop


def state_dir(temp: Path) -> Path:
    """The one ``bigshuf-resume-*`` directory under ``temp``."""
    (found,) = [d for d in temp.iterdir() if d.name.startswith("bigshuf-resume-")]
    return found


IN_PASS1: Callable[[dict[str, Any]], bool] = lambda s: s.get("blocks_done", 0) >= 2 and "pass1_done" not in s
AFTER_PASS1: Callable[[dict[str, Any]], bool] = lambda s: "pass1_done" in s
IN_PASS2: Callable[[dict[str, Any]], bool] = lambda s: s.get("buckets_done", 0) >= 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400,000 short lines (12 MB): 21 buckets and 6 pass-1 blocks at ``-S 4M``."""
    return write_short_lines(tmp_path_factory.mktemp("checks") / "in.txt", 400_000, seed=11)


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """What an uninterrupted run writes (a run without --resume writes the same plain output)."""
    out = tmp_path_factory.mktemp("ref") / "ref.txt"
    bigshuf.shuffle(corpus, out, memory=MEMORY, seed=SEED, tmp_dir=out.parent)
    return out.read_bytes()


class Job:
    """One ``--resume`` job: input, -T and -o, run interrupted in-process or to the end with the CLI."""

    def __init__(self, src: Path, temp: Path, out: Path, *extra: str) -> None:
        self.src, self.temp, self.out, self.extra = src, temp, out, extra
        temp.mkdir(exist_ok=True)

    def interrupt(self, ready: Callable[[dict[str, Any]], bool], **options: Any) -> dict[str, Any]:
        """Run until the checkpoint satisfies ``ready``, then stop it; return that checkpoint."""
        with pytest.raises(Stop):
            bigshuf.shuffle(
                self.src, self.out, memory=MEMORY, seed=SEED, tmp_dir=self.temp, resume=True,
                progress=StopWhen(self.temp, ready), **options,
            )
        state = checkpoint_state(self.temp)
        assert ready(state)
        return state

    def argv(self, temp: Path | None = None) -> list[str]:
        """The job's command line (with another -T if ``temp`` is given)."""
        return [
            sys.executable, "-m", "bigshuf", "--resume", "--seed", str(SEED), "-S", MEMORY,
            "-T", str(temp or self.temp), *self.extra, str(self.src), "-o", str(self.out),
        ]

    def rerun(self, temp: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run the job's command to its end."""
        return subprocess.run(self.argv(temp), capture_output=True, timeout=120)

    def output_temp(self) -> Path:
        """The one output temp file beside the output."""
        (found,) = [p for p in self.out.parent.iterdir() if p.name.endswith(".bigshuf-tmp")]
        return found


def assert_refused(result: subprocess.CompletedProcess[bytes], *words: str, noted: bool = False) -> str:
    """Exit 1 with one line ``bigshuf: ...`` holding each of ``words``; return that line.
    ``noted``: the run got as far as saying where it resumes (one line) before it failed."""
    err = result.stderr.decode()
    if noted:
        note, _, err = err.partition("\n")
        assert note.startswith("bigshuf: resuming from "), result.stderr
    assert result.returncode == 1, err
    assert err.startswith("bigshuf: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


# --- item 2: a missing, short or corrupt output temp or bucket is refused ----------------------------


def damage_output(how: str) -> Callable[[Path], None]:
    """A function removing a file, cutting it to half, giving it to another user, or changing one byte of it."""
    def damage(temp_file: Path) -> None:
        data = temp_file.read_bytes()
        if how == "missing":
            temp_file.unlink()
        elif how == "short":
            temp_file.write_bytes(data[: len(data) // 2])
        elif how == "another user's":
            os.chown(temp_file, 65534, 65534)
        else:  # one byte changed, size kept
            temp_file.write_bytes(data[:100] + bytes([data[100] ^ 0x20]) + data[101:])

    return damage


@pytest.mark.parametrize("how", ["missing", "short", "flipped", "another user's"])
def test_damaged_output_temp_is_refused(tmp_path: Path, corpus: Path, how: str) -> None:
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt", "--verify")
    job.interrupt(IN_PASS2, verify=True)
    directory = state_dir(job.temp)
    temp_file = job.output_temp()
    damage_output(how)(temp_file)
    before = temp_file.read_bytes() if temp_file.exists() else None
    # Another user's is refused before the checkpoint is read (``refuse_foreign_temps``): remove it, not the job.
    advice = "is not a file this user made; remove it" if how == "another user's" else f"remove {directory}"
    err = assert_refused(job.rerun(), str(temp_file), advice)
    assert ("missing" in err) == (how == "missing")
    assert not job.out.exists()
    # Never created (nor grown) by the refused run.
    assert (temp_file.read_bytes() if temp_file.exists() else None) == before


@pytest.mark.parametrize("how", ["missing", "short", "flipped"])
def test_damaged_bucket_is_refused(tmp_path: Path, corpus: Path, how: str) -> None:
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    state = job.interrupt(AFTER_PASS1)
    j = max(range(state["k"]), key=lambda i: state["buckets"]["sizes"][i])
    directory = state_dir(job.temp)
    bucket = directory / "top" / f"bucket-{j:05d}"
    damage_output(how)(bucket)
    # A changed byte shows only when the bucket is read, in pass 2, after the resume note.
    assert_refused(job.rerun(), str(bucket), f"remove {directory}", noted=how == "flipped")
    assert not job.out.exists()


def test_leftover_output_temp_of_the_same_job_is_replaced(tmp_path: Path, corpus: Path, reference: bytes) -> None:
    """Interrupted after its output temp was made but before a checkpoint counted it: the rerun
    starts that file afresh (it is this job's own, its lock held) and writes the right output."""
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    job.interrupt(lambda s: "pass1_done" in s and any(p.name.endswith(".bigshuf-tmp") for p in tmp_path.iterdir()))
    assert "output" not in checkpoint_state(job.temp)
    result = job.rerun()
    assert result.returncode == 0, result.stderr
    assert job.out.read_bytes() == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "t"]


# --- item 3: one job, two runs, different -T ------------------------------------------------------

HOLD = """
import sys, time, pathlib, bigshuf
from bigshuf.progress import Progress
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
class Hold(Progress):
    def update(self, nbytes):
        if ready.exists():
            return
        state = next(pathlib.Path(sys.argv[3]).glob("bigshuf-resume-*/state.json"), None)
        if state is not None and '"buckets_done"' in state.read_text():
            ready.touch()
            while not go.exists():
                time.sleep(0.01)
bigshuf.shuffle(sys.argv[4], sys.argv[5], memory=sys.argv[6], seed=int(sys.argv[7]), tmp_dir=sys.argv[3],
                resume=True, progress=Hold())
"""


def test_second_run_with_another_temp_dir_is_refused(tmp_path: Path, corpus: Path, reference: bytes) -> None:
    job = Job(corpus, tmp_path / "ta", tmp_path / "out.txt")
    ready, go, log = tmp_path / "ready", tmp_path / "go", tmp_path / "log"
    with open(log, "wb") as stderr:
        first = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(ready), str(go), str(job.temp), str(corpus), str(job.out), MEMORY, str(SEED)],
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        temp_file = job.output_temp()
        before = temp_file.read_bytes()
        other = tmp_path / "tb"
        other.mkdir()
        err = assert_refused(job.rerun(other), "already running", f"pid {first.pid}", str(state_dir(job.temp)))
        lock = [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]
        assert len(lock) == 1 and str(lock[0]) in err
        assert temp_file.read_bytes() == before
        assert list(other.iterdir()) == []
    finally:
        go.touch()
        first.wait(120)
    assert first.returncode == 0, log.read_text()
    assert job.out.read_bytes() == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "log", "out.txt", "ready", "ta", "tb"]


# --- item 4: data is on disk before a checkpoint counts it ----------------------------------------


def test_checkpoint_counts_only_synced_data(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At every rename of state.json, each bucket and output temp is as long as when last fsync'd,
    state.json.new itself was fsync'd, and the directory is fsync'd after the rename."""
    synced: dict[str, int] = {}
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        """The real fsync, noting the file and its size."""
        real_fsync(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced[path] = os.fstat(fd).st_size
        events.append(("fsync", path))

    def replace(src: Any, dst: Any) -> None:
        """The real rename; a checkpoint's first checks that everything it counts was synced."""
        if os.fspath(dst).endswith("state.json"):
            directory = os.path.dirname(os.fspath(dst))
            files = [str(p) for p in Path(directory).rglob("bucket-*")]
            files += [str(p) for p in tmp_path.iterdir() if p.name.endswith(".bigshuf-tmp")]
            for path in [*files, os.fspath(src)]:
                assert synced.get(path) == os.path.getsize(path), f"{path} not synced before the checkpoint"
            events.append(("checkpoint", directory))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    (tmp_path / "t").mkdir()
    bigshuf.shuffle(corpus, tmp_path / "out.txt", memory=MEMORY, seed=SEED, tmp_dir=tmp_path / "t", resume=True)
    checkpoints = [i for i, e in enumerate(events) if e[0] == "checkpoint"]
    assert len(checkpoints) > 10
    for i in checkpoints:
        assert events[i + 1] == ("fsync", events[i][1])  # the directory, after the rename


# --- item 5: an input rewritten with its size and mtime put back ----------------------------------


@pytest.mark.parametrize("where", ["everywhere", "first line"])
def test_changed_content_with_same_size_and_mtime_is_refused(tmp_path: Path, corpus: Path, where: str) -> None:
    src = tmp_path / "in.txt"
    shutil.copyfile(corpus, src)
    job = Job(src, tmp_path / "t", tmp_path / "out.txt")
    job.interrupt(IN_PASS1)
    directory = state_dir(job.temp)
    st = src.stat()
    data = src.read_bytes()
    changed = data.swapcase() if where == "everywhere" else data[:1].swapcase() + data[1:]
    src.write_bytes(changed)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (src.stat().st_size, src.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert_refused(job.rerun(), str(src), "changed since the interrupted run", f"remove {directory}")
    assert not job.out.exists()


# --- item 6: state.json is validated, field by field ----------------------------------------------


def _set_output_size(s: dict[str, Any]) -> None:
    """Claim a 1 TB output file (the issue's ``output.size=1e12``)."""
    out = s["output"]
    if "size" in out:  # the layout before issue 11
        out["size"] = 1e12
    else:
        out["files"][-1][0] = 10**12


def _skip_a_bucket(s: dict[str, Any]) -> None:
    """Count the next bucket as written without writing it: buckets_done and records_out both moved
    on, consistently (a resumed run then dropped its records and exited 0)."""
    done = s["buckets_done"]
    s.update(buckets_done=done + 1, records_out=s["records_out"] + s["buckets"]["records"][done])


TAMPER: dict[str, Callable[[dict[str, Any]], Any]] = {
    "a bucket skipped": _skip_a_bucket,
    "empty object": lambda s: {},
    "buckets_done=999": lambda s: s.update(buckets_done=999),
    "output size 1e12": _set_output_size,
    "k a string": lambda s: s.update(k=str(s["k"])),
    "records_out a float": lambda s: s.update(records_out=s["records_out"] + 0.5),
    "a bucket size negative": lambda s: s["buckets"]["sizes"].__setitem__(0, -1),
    "buckets_done off by one": lambda s: s.update(buckets_done=s["buckets_done"] + 1),
    "keep zero": lambda s: s.update(keep=0),
    "inputs missing": lambda s: s.pop("inputs"),
    "a list": lambda s: [s],
    "another job": lambda s: s.update(job="0" * 16),
    "another record hash": lambda s: s.update(format="1/hash1"),
    "a read fingerprint without --verify": lambda s: s.update(read_fingerprint=[1, *s["read_fingerprint"][1:]]),
}


@pytest.mark.parametrize("tamper", [*TAMPER, "truncated JSON", "nested too deeply"])
def test_tampered_state_is_refused(tmp_path: Path, corpus: Path, tamper: str) -> None:
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    state = job.interrupt(IN_PASS2)
    directory = state_dir(job.temp)
    path = directory / "state.json"
    if tamper == "truncated JSON":
        text = path.read_text()
        path.write_text(text[: len(text) // 2])
    elif tamper == "nested too deeply":  # was an internal error: RecursionError from the JSON parser
        path.write_text("[" * 100000)
    else:
        changed = TAMPER[tamper](state)
        path.write_text(json.dumps(state if changed is None else changed))
    assert_refused(job.rerun(), f"remove {directory}")
    assert not job.out.exists()


# --- item 7: attacks by another user in a shared (1777) directory ---------------------------------


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable sticky directory that uid 65534 can reach (skips unless run as root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to act as a second user (nobody)")
    top = Path(tempfile.mkdtemp(prefix="bigshuf-shared-", dir="/tmp"))
    os.chmod(top, 0o755)
    (top / "shared").mkdir()
    os.chmod(top / "shared", 0o1777)
    try:
        yield top / "shared"
    finally:
        shutil.rmtree(top)


def as_nobody(script: str, *args: str) -> None:
    """Run a shell ``script`` (arguments ``$1``...) as uid/gid 65534."""
    subprocess.run(["/bin/sh", "-c", script, "sh", *args], check=True, user=65534, group=65534, extra_groups=[])


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of root's (0600) that an attack would overwrite or chmod."""
    path = tmp_path / "important.db"
    path.write_bytes(b"precious\n")
    os.chmod(path, 0o600)
    return path


def job_key(job: Job, **options: Any) -> str:
    """This job's key, learnt from an interrupted attempt (with ``options``) whose files are then removed."""
    job.interrupt(IN_PASS1, **options)
    key = state_dir(job.temp).name.removeprefix("bigshuf-resume-")
    shutil.rmtree(job.temp)
    job.temp.mkdir()
    os.chmod(job.temp, 0o1777)
    return key


def assert_untouched(victim: Path) -> None:
    """The victim has its content and mode."""
    assert victim.read_bytes() == b"precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_symlink_at_the_output_temp_name_is_not_followed(shared: Path, corpus: Path, victim: Path) -> None:
    job = Job(corpus, shared / "t", shared / "out.txt")
    key = job_key(job)
    planted = shared / f".out.txt.bigshuf-resume-{key}.bigshuf-tmp"
    as_nobody('ln -s "$1" "$2"', str(victim), str(planted))
    assert_refused(job.rerun(), str(planted), "symbolic link")
    assert_untouched(victim)
    assert not job.out.exists()


@pytest.mark.parametrize("split", [False, True])
def test_symlink_at_an_output_temp_name_is_refused_before_any_input_is_read(
    shared: Path, corpus: Path, victim: Path, split: bool,
) -> None:
    """A fresh job whose output temp name (the single output's, or a later split's) is a link
    another user planted is refused as it starts: no checkpoint, no bucket, nothing of the input
    read, rather than after all of pass 1."""
    (shared / "out").mkdir()
    os.chmod(shared / "out", 0o1777)
    extra = ("--split", "valid=0.1,train=rest") if split else ()
    job = Job(corpus, shared / "t", shared / "out" / ("{split}.txt" if split else "out.txt"), *extra)
    key = job_key(job, **({"split": "valid=0.1,train=rest"} if split else {}))
    shutil.rmtree(shared / "out")
    (shared / "out").mkdir()
    os.chmod(shared / "out", 0o1777)
    planted = shared / "out" / f".{'train.txt' if split else 'out.txt'}.bigshuf-resume-{key}.bigshuf-tmp"
    as_nobody('ln -s "$1" "$2"', str(victim), str(planted))
    assert_refused(job.rerun(), f"{planted}: already exists and is a symbolic link; remove it")
    assert_untouched(victim)
    assert list(job.temp.iterdir()) == []
    assert [p.name for p in (shared / "out").iterdir()] == [planted.name]


def test_resume_directory_made_by_another_user_is_refused(shared: Path, corpus: Path, victim: Path) -> None:
    job = Job(corpus, shared / "t", shared / "out.txt")
    key = job_key(job)
    planted = job.temp / f"bigshuf-resume-{key}"
    as_nobody('mkdir -m 777 "$1" && ln -s "$2" "$1/state.json.new"', str(planted), str(victim))
    assert_refused(job.rerun(), str(planted), "owned by uid 65534")
    assert_untouched(victim)
    assert not job.out.exists()


def test_resume_directory_symlinked_by_another_user_is_refused(shared: Path, corpus: Path, victim: Path) -> None:
    job = Job(corpus, shared / "t", shared / "out.txt")
    key = job_key(job)
    planted = job.temp / f"bigshuf-resume-{key}"
    as_nobody('mkdir -m 700 "$1" && ln -s "$1" "$2"', str(shared / "elsewhere"), str(planted))
    assert_refused(job.rerun(), str(planted), "symbolic link")
    assert list((shared / "elsewhere").iterdir()) == []


def test_resume_directory_open_to_others_is_refused(tmp_path: Path, corpus: Path) -> None:
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    job.interrupt(IN_PASS1)
    directory = state_dir(job.temp)
    os.chmod(directory, 0o755)
    assert_refused(job.rerun(), str(directory), "accessible to other users")


def test_leftover_state_json_new_symlink_is_not_followed(tmp_path: Path, corpus: Path, victim: Path, reference: bytes) -> None:
    """A state.json.new that is a link (as a crash mid-save could never leave, but an intruder
    could) is replaced, not written through."""
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    job.interrupt(IN_PASS1)
    os.symlink(victim, state_dir(job.temp) / "state.json.new")
    result = job.rerun()
    assert result.returncode == 0, result.stderr
    assert_untouched(victim)
    assert job.out.read_bytes() == reference


def test_a_checkpoint_file_of_another_user_is_refused_naming_it(tmp_path: Path, corpus: Path, reference: bytes) -> None:
    """A ``state.json`` owned by another user was taken up, where every bucket, log and output temp
    file it counts must be this user's (found by attack); given back, the job resumes."""
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    job.interrupt(IN_PASS1)
    state = state_dir(job.temp) / "state.json"
    os.chown(state, 65534, 65534)
    assert_refused(subprocess.run(job.argv(), capture_output=True, timeout=30), f"{state} is not a file this user made", "to start afresh")
    os.chown(state, os.geteuid(), os.getegid())
    result = job.rerun()
    assert result.returncode == 0, result.stderr
    assert job.out.read_bytes() == reference


@pytest.mark.parametrize("kind", ["FIFO", "directory"])
def test_a_checkpoint_that_is_not_a_file_is_refused_naming_it(tmp_path: Path, corpus: Path, reference: bytes, kind: str) -> None:
    """Found by attack: a state.json that is a FIFO made --resume wait for a writer for ever (SIGTERM
    ignored in the open); one that is a directory said only "Is a directory". Both are refused in
    the checkpoint's one line naming it; put back, the job resumes to the uninterrupted output."""
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    job.interrupt(IN_PASS1)
    state = state_dir(job.temp) / "state.json"
    saved = state.read_bytes()
    state.unlink()
    os.mkfifo(state) if kind == "FIFO" else state.mkdir()
    assert_refused(subprocess.run(job.argv(), capture_output=True, timeout=30), f"{state} is not a checkpoint file", "to start afresh")
    os.unlink(state) if kind == "FIFO" else state.rmdir()
    state.write_bytes(saved)
    result = job.rerun()
    assert result.returncode == 0, result.stderr
    assert job.out.read_bytes() == reference


def test_resume_files_are_private(tmp_path: Path, corpus: Path) -> None:
    old = os.umask(0o022)
    try:
        job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
        job.interrupt(IN_PASS2)
    finally:
        os.umask(old)
    directory = state_dir(job.temp)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "top").stat().st_mode) == 0o700
    files = [directory / "state.json", job.output_temp(), *(directory / "top").iterdir()]
    assert len(files) > 3
    for path in files:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600, path


def test_a_job_directory_others_may_read_is_refused_by_the_callers_spelling(tmp_path: Path, corpus: Path) -> None:
    """The command line says -T, the library tmp_dir= (it said -T to both: found by a review of the library)."""
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    job.interrupt(IN_PASS1)
    directory = state_dir(job.temp)
    os.chmod(directory, 0o755)
    line = assert_refused(job.rerun(), str(directory), "it cannot hold this job's checkpoint")
    assert line.rstrip("\n").endswith("remove it or choose another -T")
    with pytest.raises(bigshuf.TempSpaceError, match="it cannot hold this job's checkpoint: remove it or choose another tmp_dir=$"):
        bigshuf.shuffle(job.src, job.out, memory=MEMORY, seed=SEED, tmp_dir=job.temp, resume=True)


# --- issue 12: a resumed run says where it resumed from --------------------------------------------


@pytest.mark.parametrize("point", ["pass 1", "pass 2"])
def test_resumed_run_says_where_it_resumed(tmp_path: Path, corpus: Path, reference: bytes, point: str) -> None:
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt")
    state = job.interrupt(IN_PASS1 if point == "pass 1" else IN_PASS2)
    directory = state_dir(job.temp)
    result = job.rerun()
    assert result.returncode == 0, result.stderr
    where = f"pass 1 after {state['blocks_done']} blocks (" if point == "pass 1" else (
        f"pass 2 after {state['buckets_done']} of {state['keep']} buckets ({state['records_out']} records written)\n"
    )
    err = result.stderr.decode()
    assert err.count("\n") == 1 and err.startswith(f"bigshuf: resuming from {directory}: {where}"), err
    assert job.out.read_bytes() == reference


# --- the checks accept every legitimate checkpoint ------------------------------------------------

OPTIONS: dict[str, dict[str, Any]] = {
    "-n": {"head_count": 150_000},
    "-n with shards": {"head_count": 150_000, "shards": 4},
    "--compress-temp": {"compress_temp": True},
    "gzip shards, --verify": {"shards": 3, "verify": True},
}


@pytest.mark.parametrize("point", ["pass 1", "pass 2"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_interrupted_run_resumes_with_options(tmp_path: Path, corpus: Path, name: str, point: str) -> None:
    """Checkpoints of runs with -n (buckets dropped), shards, compressed buckets and --verify
    pass validation and resume to what an uninterrupted run writes."""
    options = OPTIONS[name]
    pattern = "p{}.txt.gz" if "shards" in options else "out.txt"
    (tmp_path / "ref").mkdir()
    bigshuf.shuffle(corpus, tmp_path / "ref" / pattern, memory=MEMORY, seed=SEED, tmp_dir=tmp_path, resume=True, **options)
    (tmp_path / "out").mkdir()
    job = Job(corpus, tmp_path / "t", tmp_path / "out" / pattern)
    job.interrupt(IN_PASS1 if point == "pass 1" else IN_PASS2, **options)
    bigshuf.shuffle(job.src, job.out, memory=MEMORY, seed=SEED, tmp_dir=job.temp, resume=True, **options)
    names = sorted(os.listdir(tmp_path / "ref"))
    assert sorted(os.listdir(tmp_path / "out")) == names and len(names) == options.get("shards", 1)
    for file in names:
        assert (tmp_path / "out" / file).read_bytes() == (tmp_path / "ref" / file).read_bytes()
    assert list(job.temp.iterdir()) == []


@pytest.mark.parametrize("kind", ["fifo", "device", "link to a device"])
def test_resume_refuses_an_output_that_is_a_device_or_fifo(tmp_path: Path, kind: str) -> None:
    """``--resume -o /dev/null`` renamed a regular file over the device (another user's
    ``> /dev/null`` then filled it); a FIFO went the same way. Both are refused in one line."""
    if kind != "fifo" and os.geteuid() != 0:
        pytest.skip("needs root to make a device node")
    (tmp_path / "abc").write_bytes(b"a\nb\nc\n")
    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        os.mknod(tmp_path / "dev", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
        os.symlink("dev", target) if kind.startswith("link") else os.rename(tmp_path / "dev", target)
    before = os.stat(target).st_mode
    proc = subprocess.run(
        [sys.executable, "-m", "bigshuf", "--resume", "--seed", "1", "abc", "-o", "target", "-T", str(tmp_path)],
        capture_output=True, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.startswith(b"bigshuf: --resume needs -o naming a regular file, not target") and proc.stderr.count(b"\n") == 1
    assert os.stat(target).st_mode == before
    assert sorted(os.listdir(tmp_path)) == sorted(["abc", "target"] + (["dev"] if kind.startswith("link") else []))


def test_a_finished_shard_grown_since_its_checkpoint_is_refused(tmp_path: Path, corpus: Path) -> None:
    """A shard the checkpoint counts as finished must be exactly as long as it says: bytes appended
    to it were cut off, where the last shard's may be (a mutation that cut it back passed every test)."""
    (tmp_path / "out").mkdir()
    job = Job(corpus, tmp_path / "t", tmp_path / "out" / "p{}.txt", "--shards", "4")
    state = job.interrupt(lambda s: len(s.get("output", {}).get("files", [])) >= 2, shards=4)
    (first,) = [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".p0.txt.") and p.name.endswith(".bigshuf-tmp")]
    size = state["output"]["files"][0][0]
    assert first.stat().st_size == size
    with first.open("ab") as f:
        f.write(b"appended\n")
    assert_refused(job.rerun(), str(first), f"holds {size + 9} bytes, the checkpoint says {size}")
    assert first.stat().st_size == size + 9  # left as it is


def test_a_checkpoint_counting_records_in_a_bucket_n_dropped_is_refused(tmp_path: Path, corpus: Path) -> None:
    """``-n`` drops the buckets its count will never reach: a checkpoint saying one of them holds
    records does not hold up (a mutation that accepted it passed every test)."""
    job = Job(corpus, tmp_path / "t", tmp_path / "out.txt", "-n", "150000")
    state = job.interrupt(IN_PASS2, head_count=150_000)
    keep, k = state["keep"], state["k"]
    assert keep < k, (keep, k)
    buckets = state["buckets"]
    for field, value in (("sizes", 8), ("records", 1), ("disk", 8), ("crcs", 12345)):
        buckets[field][keep] = value
    path = state_dir(job.temp) / "state.json"
    path.write_text(json.dumps(state))
    assert_refused(job.rerun(), f"bucket {keep} has 8 bytes, 1 records", f"remove {state_dir(job.temp)}")
    assert not job.out.exists()
