"""Putting outputs in place: a kill, a signal or a failed rename at any step of a commit never loses
old output or input records; output temporaries are exclusive and private; leftover cleanup never
fails a run; --shards keeps few descriptors open and scales linearly; the output is checked first.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers import make_records, split_records, write_records

import bigshuf
from bigshuf.storage import safefs, tempspace

ROOT = os.geteuid() == 0

#: The test hook of bigshuf.storage.commit: end the run by a signal at the K-th step of putting outputs in place.
KILL_AT = "BIGSHUF_TEST_KILL_AT"


def cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 120,
        preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m bigshuf ARGS`` and return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "bigshuf", *args], capture_output=True, timeout=timeout,
        env={**os.environ, **(env or {})}, preexec_fn=preexec,
    )


def dot_files(directory: Path) -> list[str]:
    """What bigshuf may have left in ``directory``: its hidden files."""
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


def records_in(paths: list[Path]) -> Counter[bytes]:
    """The records of the files ``paths``, as a multiset."""
    return Counter(r for p in paths for r in split_records(p.read_bytes()))


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every visible file of ``directory`` and its bytes."""
    return {n: (directory / n).read_bytes() for n in sorted(os.listdir(directory)) if not n.startswith(".")}


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory under /tmp that a second user can reach (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="commit-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def as_nobody(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a child process as uid/gid 65534; fail the test if it fails."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            fn()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- kills and failures at every step of a --shards commit -------------------------------------


def _old_and_new(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes], dict[str, bytes]]:
    """An input, an output directory holding an older run's two shards (of three), and both
    the old files and what an uninterrupted run writes there."""
    src = write_records(tmp_path / "in.txt", make_records(300, seed=11))
    out = tmp_path / "out"
    reference = tmp_path / "reference"
    assert cli(["--seed", "1", "--shards", "2", str(src), "-o", f"{out}/"]).returncode == 0
    assert cli(["--seed", "2", "--shards", "3", str(src), "-o", f"{reference}/"]).returncode == 0
    return src, out, snapshot(out), snapshot(reference)


def test_sigkill_at_every_commit_step_leaves_old_or_new_shards(tmp_path: Path) -> None:
    src, out, old, new = _old_and_new(tmp_path)
    assert sorted(old) == ["part-00000.txt", "part-00001.txt"] and len(new) == 3
    outcomes = []
    for step in range(1, 40):
        proc = cli(["--seed", "2", "--shards", "3", str(src), "-o", f"{out}/"],
                   env={KILL_AT: str(step)})
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        # Whatever the step, the next run touching the directory finds the old or the new files.
        tempspace.remove_dead_outputs(str(out))
        now = snapshot(out)
        assert now in (old, new), f"step {step}: {sorted(now)}"
        assert dot_files(out) == [], f"step {step}"
        outcomes.append("new" if now == new else "old")
        # Put the old files back for the next step.
        for name in os.listdir(out):
            os.unlink(out / name)
        for name, data in old.items():
            (out / name).write_bytes(data)
    else:
        pytest.fail("the commit never completed")
    # Steps: journal, 2 backups, 3 renames, directory sync, 2 backup removals, journal removal.
    assert len(outcomes) >= 10
    assert snapshot(out) == new and dot_files(out) == []


def test_a_killed_commit_whose_temporary_file_went_before_its_backups_is_undone(tmp_path: Path) -> None:
    """Found by review: a temporary file removed by hand after a kill before any backup was made
    left the journal alone for good (its targets, not backed up yet, were taken for copies); the
    commit is undone as README says, nothing left behind."""
    src, out, old, _new = _old_and_new(tmp_path)
    assert cli(["--seed", "2", "--shards", "3", str(src), "-o", f"{out}/"], env={KILL_AT: "1"}).returncode == -signal.SIGKILL
    (temp,) = [name for name in dot_files(out) if name.startswith(".part-00001.txt.") and name.endswith(".bigshuf-tmp")]
    os.unlink(out / temp)
    tempspace.remove_dead_outputs(str(out))
    assert snapshot(out) == old and dot_files(out) == []


@pytest.mark.parametrize("step", [4, 5])
def test_a_killed_commit_whose_files_were_copied_since_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], step: int,
) -> None:
    """Found by attack: a commit killed between its renames, its directory then copied back (a
    restore, a move across file systems: new inode numbers), was "undone" with every backup
    removed, though the replaced files' backups were the only copies of the old ones: a mix of old
    and new shards, records lost. Files the journal cannot recognise are now left alone, every
    old file kept, and the journal says so."""
    src, out, old, _new = _old_and_new(tmp_path)
    proc = cli(["--seed", "2", "--shards", "3", str(src), "-o", f"{out}/"], env={KILL_AT: str(step)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    subprocess.run(["cp", "-a", str(out), str(tmp_path / "copy")], check=True)
    shutil.rmtree(out)
    os.rename(tmp_path / "copy", out)
    capsys.readouterr()
    tempspace.remove_dead_outputs(str(out))
    said = capsys.readouterr().err
    assert "whose files are not the ones it recorded (copied or restored since?); left alone" in said, said
    kept = {(out / name).read_bytes() for name in os.listdir(out)}
    assert set(old.values()) <= kept  # every old shard, in place or as its .bigshuf-old backup
    assert any(name.endswith(".commit") for name in os.listdir(out))


@pytest.mark.parametrize("step", [1, 2, 4])
@pytest.mark.parametrize("target", ["part-00001.txt", "part-00002.txt"])
def test_a_file_put_over_a_killed_commits_target_is_not_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], step: int, target: str,
) -> None:
    """Found by attack: a user's file moved onto a target whose new file was still to be renamed
    (the run killed before or between its renames) was replaced by it when the next run finished the
    commit, though bigshuf never removes files it did not write; so was one put where a new shard was
    to go. The journal now records each target's file; the commit is undone instead: the user's file
    stays, the files replaced come back (an old file under the user's stays as its backup)."""
    src, out, old, _new = _old_and_new(tmp_path)
    proc = cli(["--seed", "2", "--shards", "3", str(src), "-o", f"{out}/"], env={KILL_AT: str(step)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    mine = tmp_path / "mine.txt"
    mine.write_bytes(b"mine\n")
    os.rename(mine, out / target)  # an old shard still to be replaced, or where a third, new one goes
    capsys.readouterr()
    tempspace.remove_dead_outputs(str(out))
    assert "undid the commit" in capsys.readouterr().err
    assert (out / target).read_bytes() == b"mine\n"
    assert {name: (out / name).read_bytes() for name in old if name != target} == {n: d for n, d in old.items() if n != target}
    if target in old and step > 2:  # backed up before the kill: the old file stays beside the user's
        assert old[target] in {(out / name).read_bytes() for name in dot_files(out)}


def test_a_killed_commit_is_finished_before_the_next_run_reads_its_inputs(tmp_path: Path) -> None:
    # Files shuffled onto their own names, killed half-way through the renames: the rerun of the
    # same command first finishes the commit, so it reads every record exactly once.
    ip = tmp_path / "ip"
    ip.mkdir()
    # The case: 1000 files of 20 records each.
    records = make_records(20_000, seed=3, max_len=20)
    for i in range(1000):
        write_records(ip / f"part-{i:04d}.txt", records[i * 20 : (i + 1) * 20])
    inputs = [str(ip / f"part-{i:04d}.txt") for i in range(1000)]
    command = ["--seed", "5", "--shards", "1000", "-o", str(ip / "part-{:04d}.txt"), *inputs]
    # Step 1 journal, 2-1001 backups, 1002-2001 renames: kill after the 500th rename.
    first = cli(command, env={KILL_AT: "1501"})
    assert first.returncode == -signal.SIGKILL
    assert any(n.endswith(".commit") for n in dot_files(ip))
    second = cli(command)
    assert second.returncode == 0, second.stderr
    assert b"finished the commit of 1000 file(s)" in second.stderr
    assert records_in([Path(p) for p in inputs]) == Counter(records)
    assert dot_files(ip) == []


def test_sigterm_during_the_commit_of_files_onto_their_own_names_completes_it(tmp_path: Path) -> None:
    # The case scaled down (200 files, not 1000): SIGTERM once renaming has begun.
    ip = tmp_path / "ip"
    ip.mkdir()
    records = make_records(4000, seed=4)
    for i in range(200):
        write_records(ip / f"part-{i:04d}.txt", records[i * 20 : (i + 1) * 20])
    inputs = [str(ip / f"part-{i:04d}.txt") for i in range(200)]
    for sig in ("TERM", "INT", "HUP"):
        proc = cli(["--shards", "200", "-o", str(ip / "part-{:04d}.txt"), *inputs],
                   env={KILL_AT: f"300:{sig}"})
        # The signal is held until every file is in place, then ends the run as usual; a signal
        # the tests inherit as ignored (SIGHUP under nohup, SIGINT in a shell's background job)
        # stays ignored, as in any program.
        ignored = signal.getsignal(getattr(signal, f"SIG{sig}")) == signal.SIG_IGN
        assert proc.returncode in ((0,) if ignored else (-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP)), (sig, proc.returncode, proc.stderr)
        assert records_in([Path(p) for p in inputs]) == Counter(records), sig
        assert dot_files(ip) == [], sig


@pytest.mark.skipif(not ROOT, reason="chattr +i needs root")
def test_an_immutable_shard_refuses_the_commit_and_keeps_every_old_shard(tmp_path: Path) -> None:
    src = write_records(tmp_path / "s.txt", make_records(10_000, seed=5))
    out = tmp_path / "shi"
    assert cli(["--seed", "1", "--shards", "5", str(src), "-o", f"{out}/"]).returncode == 0
    old = snapshot(out)
    locked = out / sorted(old)[3]
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("this file system does not take chattr +i")
    try:
        proc = cli(["--seed", "2", "--shards", "5", str(src), "-o", f"{out}/"])
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert proc.returncode == 1
    assert proc.stderr.count(b"\n") == 1 and locked.name.encode() in proc.stderr and b"Operation not permitted" in proc.stderr
    assert snapshot(out) == old
    assert dot_files(out) == []


def test_a_rename_failing_mid_commit_puts_the_old_shards_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_records(tmp_path / "in.txt", make_records(500, seed=6))
    out = tmp_path / "out"
    bigshuf.shuffle(src, f"{out}/", seed=1, shards=5)
    old = snapshot(out)
    renames = 0
    real_rename, real_replace = os.rename, os.replace

    def failing(move: Callable[..., None]) -> Callable[..., None]:
        def move_or_fail(a: str, b: str, *args: object, **kw: object) -> None:
            nonlocal renames
            if os.fspath(a).endswith(".bigshuf-tmp") and os.path.dirname(os.fspath(b)) == str(out):
                renames += 1
                if renames == 4:
                    raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(b))
            move(a, b, *args, **kw)
        return move_or_fail

    monkeypatch.setattr(os, "rename", failing(real_rename))
    monkeypatch.setattr(os, "replace", failing(real_replace))
    with pytest.raises(bigshuf.OutputError, match="Input/output error"):
        bigshuf.shuffle(src, f"{out}/", seed=2, shards=5)
    assert renames == 4
    assert snapshot(out) == old
    assert dot_files(out) == []


def test_a_journal_copy_that_cannot_be_written_is_the_one_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attack: with a manifest on a full disk, the commit's failure named the journal copy
    beside the shards (the first), not the one beside the manifest that could not be written."""
    src = write_records(tmp_path / "in.txt", make_records(300, seed=7))
    (tmp_path / "m").mkdir()
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / "m" / ".bigshuf-")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(bigshuf.OutputError) as caught:
        bigshuf.shuffle(src, f"{tmp_path / 'out'}/", seed=2, shards=2, manifest=tmp_path / "m" / "m.json")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'm'}/.bigshuf-") and message.endswith(
        ".commit: cannot commit: No space left on device; nothing was replaced"
    ), message
    assert os.listdir(tmp_path / "m") == [] and not (tmp_path / "out").exists()


def test_a_commit_that_cannot_be_undone_leaves_what_its_journal_needs_to_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename failing mid-commit, then the renames putting the old files back failing too: the
    message says the journal records the commit for the next run to finish, but the run removed its
    new files, so the next run could only undo it ("a new file was missing"). It now finishes it."""
    src = write_records(tmp_path / "in.txt", make_records(500, seed=6))
    out = tmp_path / "out"
    bigshuf.shuffle(src, f"{out}/", seed=1, shards=5)
    real_rename = os.rename
    failing = False

    def rename(a: str, b: str, *args: object, **kw: object) -> None:
        nonlocal failing
        if os.fspath(a).endswith(".bigshuf-tmp") and os.fspath(b).endswith("part-00003.txt"):
            failing = True  # from here on, as a disk gone read-only would: the rollback fails too
        if failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(b))
        real_rename(a, b, *args, **kw)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(bigshuf.OutputError, match="putting the old files back failed too"):
        bigshuf.shuffle(src, f"{out}/", seed=2, shards=5)
    monkeypatch.setattr(os, "rename", real_rename)
    assert sum(n.endswith(".bigshuf-tmp") for n in dot_files(out)) == 2  # shards 3 and 4, not yet renamed
    proc = cli(["--seed", "2", "--shards", "5", str(src), "-o", f"{out}/"])  # the same run again
    assert proc.returncode == 0 and b"finished the commit of 5 file(s)" in proc.stderr, proc.stderr
    reference = tmp_path / "reference"
    bigshuf.shuffle(src, f"{reference}/", seed=2, shards=5)
    assert snapshot(out) == snapshot(reference)
    assert dot_files(out) == []


@pytest.mark.parametrize("step", [1, 2])
def test_a_kill_while_putting_a_single_output_over_its_input_loses_nothing(tmp_path: Path, step: int) -> None:
    records = make_records(2000, seed=7)
    f = write_records(tmp_path / "f.txt", records)
    proc = cli(["--seed", "3", str(f), "-o", str(f)], env={KILL_AT: str(step)})
    assert proc.returncode == -signal.SIGKILL
    # Before the rename the input is whole; after it the output is.
    assert records_in([f]) == Counter(records)
    assert (f.read_bytes() == write_records(tmp_path / "g", records).read_bytes()) == (step == 1)
    (tmp_path / "g").unlink()
    again = cli(["--seed", "3", str(f), "-o", str(f)])
    assert again.returncode == 0 and records_in([f]) == Counter(records)
    assert dot_files(tmp_path) == []


def test_a_run_reading_a_directory_finishes_its_interrupted_commit_first(tmp_path: Path) -> None:
    src, out, _old, new = _old_and_new(tmp_path)
    # Journal (1), backups (2, 3), two renames (4, 5): killed with one new file still to rename.
    proc = cli(["--seed", "2", "--shards", "3", str(src), "-o", f"{out}/"], env={KILL_AT: "5"})
    assert proc.returncode == -signal.SIGKILL
    reader = cli([*(str(out / n) for n in new), "-o", str(tmp_path / "all.txt")])
    assert reader.returncode == 0, reader.stderr
    assert b"finished the commit of 3 file(s)" in reader.stderr
    assert records_in([tmp_path / "all.txt"]) == records_in([src])
    assert snapshot(out) == new and dot_files(out) == []


def test_a_journal_cut_short_by_a_kill_is_removed_with_the_temporary_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000.txt").write_bytes(b"old\n")
    (out / ".part-00000.txt.0123456789ab-0.bigshuf-tmp").write_bytes(b"new\n")
    (out / ".bigshuf-0123456789ab.commit").write_bytes(b'{"bigshuf_commit": 1, "files": [{"temp": "/x/.p')
    tempspace.remove_dead_outputs(str(out))
    assert snapshot(out) == {"part-00000.txt": b"old\n"} and dot_files(out) == []


def test_an_interrupted_commit_whose_new_file_vanished_is_undone(tmp_path: Path) -> None:
    src, out, old, _new = _old_and_new(tmp_path)
    # Journal (1), backups (2, 3), the first rename (4): killed with two new files still to rename.
    proc = cli(["--seed", "2", "--shards", "3", str(src), "-o", f"{out}/"], env={KILL_AT: "4"})
    assert proc.returncode == -signal.SIGKILL
    temps = [n for n in dot_files(out) if n.endswith(".bigshuf-tmp")]
    assert len(temps) == 2
    os.unlink(out / temps[0])
    tempspace.remove_dead_outputs(str(out))
    assert snapshot(out) == old
    assert dot_files(out) == []


@pytest.mark.parametrize("name", ["a\nb", "a\n", "plain"])
def test_a_live_runs_temporary_file_is_kept_whatever_its_output_is_named(tmp_path: Path, name: str) -> None:
    """A run writing ``-o 'a<newline>b'`` lost its temporary file to the next run in the directory:
    the name did not match the pattern of bigshuf's temporary files (``.`` stops at a newline), so
    it was taken for an older bigshuf's, whose own lock was free, and removed once 10 s old. The
    live run then failed (``a b: No such file or directory``); now its lock keeps it."""
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    run = "0123456789ab"
    temp = out / f".{name}.{run}.bigshuf-tmp"
    temp.write_bytes(b"being written\n")
    lock = out / f".bigshuf-{run}.lock"
    lock.write_bytes(b"")
    old = time.time() - 3600
    os.utime(temp, (old, old))
    os.utime(lock, (old, old))
    held = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        tempspace.remove_dead_outputs(str(out))
        assert temp.read_bytes() == b"being written\n"
    finally:
        os.close(held)
    tempspace.remove_dead_outputs(str(out))  # its run gone, its files go
    assert dot_files(out) == []


def test_a_journal_not_written_by_bigshuf_is_left_alone(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    journal = out / ".bigshuf-0123456789ab.commit"
    journal.write_text(f'{{"bigshuf_commit": 1, "files": [{{"temp": "{victim}", "final": "{out}/x", '
                       f'"backup": "{victim}.old", "ino": {victim.stat().st_ino}}}]}}')
    tempspace.remove_dead_outputs(str(out))
    assert victim.read_bytes() == b"keep me\n" and journal.exists() and not (out / "x").exists()



def test_a_planted_journal_naming_files_in_another_directory_touches_nothing_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal is this user's file, but another user can rename any file this user's run wrote
    (its text theirs) into a directory they own. Undone, such a journal unlinked a file of this
    user's anywhere, its inode copied into the entry (found by attack). Now every target must lie
    in the journal's directory or in one holding a file of its run (its lock, its journal's copy);
    one naming a directory with none is only removed itself, as a commit that never began is."""
    run = "aaaaaaaaaaaa"
    etc = tmp_path / "etc"
    etc.mkdir()
    victim = etc / "important.txt"
    victim.write_bytes(b"precious\n")
    planted = tmp_path / "planted"
    planted.mkdir()
    entries = [
        {"temp": f"{etc}/.important.txt.{run}.bigshuf-tmp", "final": str(victim),
         "backup": f"{etc}/.important.txt.{run}.bigshuf-old", "ino": victim.stat().st_ino},
        {"temp": f"{planted}/.x.{run}.bigshuf-tmp", "final": f"{planted}/x",
         "backup": f"{planted}/.x.{run}.bigshuf-old", "ino": 1},
    ]
    journal = planted / f".bigshuf-{run}.commit"
    journal.write_text(json.dumps({"bigshuf_commit": 1, "files": entries}))
    tempspace.remove_dead_outputs(str(planted))
    assert victim.read_bytes() == b"precious\n" and not journal.exists()
    assert f"commit had not begun or had ended (nothing of that run is left in {etc})" in capsys.readouterr().err
    # Its run's lock in that directory, as a killed run leaves it, makes the same entries its own.
    journal.write_text(json.dumps({"bigshuf_commit": 1, "files": entries}))
    (etc / f".bigshuf-{run}.lock").write_bytes(b"")
    (etc / f".important.txt.{run}.bigshuf-old").write_bytes(b"older\n")
    tempspace.remove_dead_outputs(str(planted))
    assert victim.read_bytes() == b"older\n" and not journal.exists()


def test_a_journal_whose_files_carry_another_run_id_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_bytes(b"keep\n")
    temp = out / ".x.bbbbbbbbbbbb.bigshuf-tmp"
    temp.write_bytes(b"other\n")
    journal = out / ".bigshuf-aaaaaaaaaaaa.commit"
    journal.write_text(json.dumps({"bigshuf_commit": 1, "files": [
        {"temp": str(temp), "final": f"{out}/x", "backup": f"{out}/.x.bbbbbbbbbbbb.bigshuf-old", "ino": temp.stat().st_ino},
    ]}))
    tempspace.remove_dead_outputs(str(out))
    assert (out / "x").read_bytes() == b"keep\n" and journal.exists()


def test_a_journal_cut_short_after_its_commit_began_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal cut after its backups were made (tampering, or a power loss under --no-sync) was
    taken as one a kill cut before the commit began: the new files not yet renamed were deleted,
    leaving old and new shards mixed and the backups behind for good (found by attack)."""
    src, out, old, _new = _old_and_new(tmp_path)
    # Journal (1), backups (2, 3), the first rename (4), the second (5): killed with one to go.
    proc = cli(["--seed", "2", "--shards", "3", "--no-sync", str(src), "-o", f"{out}/"], env={KILL_AT: "5"})
    assert proc.returncode == -signal.SIGKILL
    journal = next(out / n for n in dot_files(out) if n.endswith(".commit"))
    with open(journal, "r+b") as f:
        f.truncate(200)
    before = {n: (out / n).read_bytes() for n in os.listdir(out) if n.endswith((".bigshuf-tmp", ".bigshuf-old"))}
    assert len(before) == 3  # one new file still to rename, two backups
    tempspace.remove_dead_outputs(str(out))
    err = capsys.readouterr().err
    assert "cut short after its commit began; left alone" in err
    assert {n: (out / n).read_bytes() for n in os.listdir(out) if n.endswith((".bigshuf-tmp", ".bigshuf-old"))} == before
    assert journal.exists()
    # The old records are all still there, in the backups and the shards not yet replaced.
    kept = [out / n for n in os.listdir(out) if n.endswith(".bigshuf-old")]
    assert records_in(kept) == Counter(r for data in old.values() for r in split_records(data))


def test_a_split_over_two_directories_killed_mid_commit_is_finished(tmp_path: Path) -> None:
    """Each directory the commit renames into holds the run's lock and a copy of its journal, so the
    commit is finished whichever directory is tidied first (it was undone when the other directory
    came first, its temporary file removed as a dead run's), and the copies go with it."""
    src = write_records(tmp_path / "in.txt", make_records(300, seed=12))
    for other_first in (False, True):
        top = tmp_path / str(other_first)
        for d in ("train", "valid"):
            (top / d).mkdir(parents=True)
            (top / d / "x.txt").write_bytes(b"old\n")
        command = ["--seed", "4", "--split", "train=0.8,valid=rest", str(src), "-o", f"{top}/{{split}}/x.txt"]
        # Journals (1), two backups (2, 3), the first rename (4): killed with the second still to rename.
        proc = cli(command, env={KILL_AT: "4"})
        assert proc.returncode == -signal.SIGKILL
        journals = [d for d in ("train", "valid") if any(n.endswith(".commit") for n in dot_files(top / d))]
        assert journals == ["train", "valid"]
        for d in ["valid", "train"] if other_first else ["train", "valid"]:
            tempspace.remove_dead_outputs(str(top / d))
        for d in ("train", "valid"):
            assert dot_files(top / d) == [], (other_first, d)
        assert records_in([top / "train" / "x.txt", top / "valid" / "x.txt"]) == records_in([src]), other_first


def test_finishing_a_split_from_one_directory_removes_the_killed_runs_locks_in_the_others(tmp_path: Path) -> None:
    """Found by attack: a killed --split commit finished by a run writing into one of its directories
    removed the journal's copies in the others but left the killed run's locks there, until some
    later run wrote there too. They go with the commit now."""
    src = write_records(tmp_path / "in.txt", make_records(300, seed=12))
    for d in ("train", "valid"):
        (tmp_path / d).mkdir()
    command = ["--seed", "4", "--split", "train=0.8,valid=rest", str(src), "-o", f"{tmp_path}/{{split}}/x.txt"]
    assert cli(command, env={KILL_AT: "4"}).returncode == -signal.SIGKILL
    assert any(n.endswith(".lock") for n in dot_files(tmp_path / "valid"))
    tempspace.remove_dead_outputs(str(tmp_path / "train"))
    assert dot_files(tmp_path / "train") == [] and dot_files(tmp_path / "valid") == []
    assert records_in([tmp_path / "train" / "x.txt", tmp_path / "valid" / "x.txt"]) == records_in([src])


@pytest.mark.parametrize("tidied_first", ["a", "b"])
def test_a_run_killed_between_two_journal_copies_leaves_nothing_behind(tmp_path: Path, tidied_first: str) -> None:
    """Killed after its journal's copy in one directory and before the other's, with the other
    directory tidied first (its temporary file and lock removed as a dead run's): the first copy
    named a directory holding nothing of its run and was "not a commit journal of this user's
    bigshuf; left alone" by every later run there, with its lock and temporary file (found by
    review). Tidied in either order, nothing is left and the old files or the new are whole."""
    src = write_records(tmp_path / "in.txt", make_records(300, seed=15))
    out = tmp_path / "o"
    for d in ("a", "b"):
        (out / d).mkdir(parents=True)
        (out / d / "x.txt").write_bytes(b"old\n")
    command = ["--seed", "4", "--split", "a=0.5,b=rest", str(src), "-o", f"{out}/{{split}}/x.txt"]
    assert cli(command, env={KILL_AT: "1"}).returncode == -signal.SIGKILL
    (copy,) = [n for n in dot_files(out / "b") if n.endswith(".commit")]
    (out / "b" / copy).unlink()  # as a kill before it was written leaves it
    other = "b" if tidied_first == "a" else "a"
    assert tempspace.remove_dead_outputs(str(out / tidied_first)) is not None
    tempspace.remove_dead_outputs(str(out / other))
    assert [dot_files(out / d) for d in ("a", "b")] == [[], []]
    got = records_in([out / "a" / "x.txt", out / "b" / "x.txt"])
    assert got in (Counter([b"old", b"old"]), records_in([src])), got


@pytest.mark.parametrize("step", [1, 4, 6])
def test_a_resumed_split_over_two_directories_killed_mid_commit_is_finished(tmp_path: Path, step: int) -> None:
    """A --resume job's temporary files are named after the job, not the run, and only the first
    directory held the run's lock: the journal was refused as not this user's ("left alone"), and
    every rerun failed on the backup name it had left ("cannot be replaced: File exists"), the old
    file of one split and the new one of the other in place for good (found by attack)."""
    src = write_records(tmp_path / "in.txt", make_records(3000, seed=14))
    temp = tmp_path / "T"
    temp.mkdir()
    for d in ("a", "b"):
        (tmp_path / "o" / d).mkdir(parents=True)
        (tmp_path / "o" / d / "x.txt").write_bytes(b"old\n")
    command = ["--resume", "--seed", "1", "-S", "64K", "-T", str(temp), "--split", "a=0.5,b=rest", str(src),
               "-o", f"{tmp_path}/o/{{split}}/x.txt"]
    assert cli(command, env={KILL_AT: str(step)}).returncode == -signal.SIGKILL
    rerun = cli(command)
    assert rerun.returncode == 0, rerun.stderr
    assert b"finished the commit of 2 file(s)" in rerun.stderr and b"left alone" not in rerun.stderr
    assert [dot_files(tmp_path / "o" / d) for d in ("a", "b")] == [[], []]
    assert os.listdir(temp) == []
    assert records_in([tmp_path / "o" / d / "x.txt" for d in ("a", "b")]) == records_in([src])


def test_a_rerun_reading_its_shard_directory_after_a_killed_commit_loses_no_shard(tmp_path: Path) -> None:
    """Killed half-way through renaming 5 new shards over 4 old ones, then run again on the same
    directory: the inputs were listed before the commit was finished, so the fifth shard (still
    under its temporary name) was left out of them and then replaced unread, 1/5 of the records
    lost (found by attack). Now that run reads nothing and says to run again; the next one is whole."""
    src = write_records(tmp_path / "s.txt", make_records(700, seed=13))
    out = tmp_path / "sd"
    assert cli(["--seed", "1", str(src), "--shards", "4", "-o", f"{out}/"]).returncode == 0
    command = ["--seed", "2", "--shards", "5", "-o", f"{out}/", f"{out}/"]
    # Journal (1), four backups (2-5), two renames (6, 7).
    assert cli(command, env={KILL_AT: "7"}).returncode == -signal.SIGKILL
    second = cli(command)
    assert second.returncode == 1
    lines = second.stderr.decode().splitlines()
    assert lines[0].startswith("bigshuf: finished the commit of 5 file(s)")
    assert lines[1].endswith("nothing was read: run the command again") and len(lines) == 2
    assert records_in(sorted(out.iterdir())) == records_in([src]) and dot_files(out) == []
    third = cli(command)
    assert third.returncode == 0, third.stderr
    assert records_in(sorted(out.iterdir())) == records_in([src]) and len(list(out.iterdir())) == 5


def test_shards_put_in_place_by_finishing_a_killed_commit_count_as_there(tmp_path: Path) -> None:
    """``--shards 4`` after a killed ``--shards 5`` run: shard 4 existed only under its temporary
    name when the names were checked, and was put in place afterwards, beside the 4 new shards:
    its records twice in the directory, exit 0 (found by attack). Now it is refused as a stale shard."""
    src = write_records(tmp_path / "s.txt", make_records(700, seed=14))
    pattern = f"{tmp_path}/sd/p{{}}.txt"
    (tmp_path / "sd").mkdir()
    # No old files, so no backups: journal (1), the first rename (2).
    assert cli(["--seed", "2", "--shards", "5", "-o", pattern, str(src)], env={KILL_AT: "2"}).returncode == -signal.SIGKILL
    proc = cli(["--seed", "3", "--shards", "4", "-o", pattern, str(src)])
    assert proc.returncode == 1
    assert b"finished the commit of 5 file(s)" in proc.stderr and b"p4.txt" in proc.stderr.splitlines()[-1]
    assert records_in(sorted((tmp_path / "sd").iterdir())) == records_in([src])


@pytest.mark.skipif(not ROOT or shutil.which("setpriv") is None, reason="needs root and setpriv to run as another user")
def test_a_replaced_file_keeps_its_group_and_for_root_its_owner(open_dir: Path) -> None:
    """GNU shuf writes -o's file in place, so its owner and group stay; bigshuf's replacement took
    the runner's, and the group's members lost their access (found by attack). Now the group is
    kept where this user may set it, and root keeps the owner too; a shard too."""
    os.chmod(open_dir, 0o777)
    src = write_records(open_dir / "in", make_records(50, seed=15))
    for name in ("root.txt", "grouped.txt", "part-00000.txt"):
        (open_dir / name).write_bytes(b"old\n")
        os.chown(open_dir / name, 65534, 100)
        os.chmod(open_dir / name, 0o660)
    assert cli([str(src), "-o", str(open_dir / "root.txt")]).returncode == 0
    assert cli([str(src), "--shards", "1", "-o", str(open_dir / "part-{:05d}.txt")]).returncode == 0
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--groups=100"]
    proc = subprocess.run([*nobody, sys.executable, "-m", "bigshuf", str(src), "-o", str(open_dir / "grouped.txt")], capture_output=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (0, b"")
    for name in ("root.txt", "grouped.txt", "part-00000.txt"):
        st = os.stat(open_dir / name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 100, 0o660), name
        assert records_in([open_dir / name]) == records_in([src])

# --- durability ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [None, 3])
def test_outputs_and_their_directory_are_synced_unless_asked_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: int | None
) -> None:
    src = write_records(tmp_path / "in.txt", make_records(300, seed=8))
    out = tmp_path / "out"
    out.mkdir()
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = f"{out}/" if shards else str(out / "o.txt")
    bigshuf.shuffle(src, target, seed=1, shards=shards)
    files = [p for p in synced if os.path.basename(p).endswith(".bigshuf-tmp")]
    assert len(files) == (shards or 1)  # each file before its rename
    assert str(out) in synced  # the directory after
    synced.clear()
    bigshuf.shuffle(src, target, seed=1, shards=shards, sync=False)
    assert synced == []


@pytest.mark.skipif(not ROOT or shutil.which("setpriv") is None, reason="needs root and setpriv to run as another user")
@pytest.mark.parametrize("target", ["o.txt", "part-{}.txt"])
def test_a_directory_one_may_write_but_not_read_takes_a_file_but_not_a_journaled_commit(open_dir: Path, target: str) -> None:
    """In a mode-0333 directory the output was renamed into place, then the run failed on syncing
    the directory it cannot open ("Permission denied", exit 1); GNU shuf writes there. Shards are
    still refused, nothing replaced: their commit's journal, were it killed, could not be found by
    the next run, which cannot list the directory either, and would write over the half-done commit
    (found by review: a stale journal later finished over newer shards)."""
    src = write_records(open_dir / "in", make_records(200, seed=16))
    out = open_dir / "wx"
    out.mkdir()
    (out / "o.txt").write_bytes(b"old\n")
    for path in (out, out / "o.txt"):
        os.chown(path, 65534, 65534)
    os.chmod(out, 0o333)
    shards = [] if target == "o.txt" else ["--shards", "2"]
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    proc = subprocess.run([*nobody, sys.executable, "-m", "bigshuf", *shards, str(src), "-o", str(out / target)],
                          capture_output=True, timeout=120)
    if not shards:
        assert (proc.returncode, proc.stderr) == (0, b"")
        assert records_in([out / "o.txt"]) == records_in([src])
        assert sorted(os.listdir(out)) == ["o.txt"]
        return
    assert proc.returncode == 1
    assert proc.stderr == (
        f"bigshuf: {out}: cannot commit: Permission denied (this user cannot list it, so a killed commit there "
        "could not be found again); nothing was replaced\n"
    ).encode()
    assert sorted(os.listdir(out)) == ["o.txt"] and (out / "o.txt").read_bytes() == b"old\n"


def test_a_directory_that_cannot_be_opened_is_synced_with_the_file_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a mode-0333 directory does to a user who is not root: its open is refused."""
    synced: list[str] = []

    def refused(*args: Any, **kwargs: Any) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "open", refused)
    monkeypatch.setattr(os, "sync", lambda: synced.append("all"))
    safefs.sync_directory(str(tmp_path))
    assert synced == ["all"]


# --- exclusive, private temporary files -------------------------------------------------------


@pytest.mark.skipif(not ROOT, reason="needs root to act as a second user")
def test_a_symlink_planted_at_the_temporary_name_is_never_followed(
    open_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = open_dir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    victim = open_dir / "important.db"
    victim.write_bytes(b"precious\n")
    os.chmod(victim, 0o600)
    run_id = "abcdefabcdef"
    monkeypatch.setattr("bigshuf.storage.commit.new_run_id", lambda: run_id)
    planted = shared / f".out.txt.{run_id}.bigshuf-tmp"
    as_nobody(lambda: os.symlink(victim, planted))
    src = write_records(tmp_path / "in.txt", make_records(100, seed=9))
    with pytest.raises(bigshuf.OutputError, match="File exists"):
        bigshuf.shuffle(src, shared / "out.txt", seed=1)
    assert victim.read_bytes() == b"precious\n" and victim.stat().st_mode & 0o777 == 0o600
    assert os.path.islink(planted)  # another user's: not ours to remove
    assert not (shared / "out.txt").exists()
    assert dot_files(shared) == [planted.name]


def test_temporary_files_are_private_until_finished(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", make_records(200_000, seed=10))
    out = tmp_path / "out.txt"
    out.write_bytes(b"old\n")
    os.chmod(out, 0o640)
    proc = subprocess.Popen([sys.executable, "-m", "bigshuf", "-S", "1M", "-T", str(tmp_path), str(src), "-o", str(out)],
                            env={**os.environ, KILL_AT: "1"})
    proc.wait(120)
    assert proc.returncode == -signal.SIGKILL
    temps = [tmp_path / n for n in dot_files(tmp_path) if n.endswith(".bigshuf-tmp")]
    assert len(temps) == 1
    # Finished: the target's permission bits, given on the descriptor before the rename.
    assert temps[0].stat().st_mode & 0o777 == 0o640
    assert out.read_bytes() == b"old\n"


# --- leftover cleanup never fails a run --------------------------------------------------------


def test_a_dangling_symlink_named_like_a_leftover_is_skipped(tmp_path: Path) -> None:
    src = write_records(tmp_path / "s.txt", make_records(1000, seed=12))
    dd = tmp_path / "dd"
    dd.mkdir()
    os.symlink("/nonexistent", dd / ".x.bigshuf-tmp")
    os.symlink("/nonexistent", dd / ".x.0123456789ab.bigshuf-tmp")
    proc = cli([str(src), "-o", str(dd / "out.txt")])
    assert proc.returncode == 0, proc.stderr
    assert records_in([dd / "out.txt"]) == records_in([src])
    assert dot_files(dd) == [".x.0123456789ab.bigshuf-tmp", ".x.bigshuf-tmp"]


def test_a_symlink_leftover_pointing_at_a_file_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    dd = tmp_path / "dd"
    dd.mkdir()
    link = dd / ".y.0123456789ab.bigshuf-tmp"
    os.symlink(victim, link)
    old = time.time() - 3600
    os.utime(victim, (old, old))
    tempspace.remove_dead_outputs(str(dd))
    assert victim.read_bytes() == b"keep\n" and os.path.islink(link)


@pytest.mark.skipif(not ROOT, reason="needs root to act as a second user")
def test_another_users_leftovers_are_left_alone(open_dir: Path) -> None:
    dd = open_dir / "dd"
    dd.mkdir()
    os.chmod(dd, 0o1777)
    theirs = dd / ".z.0123456789ab.bigshuf-tmp"
    legacy = dd / ".z.abcdefgh.bigshuf-tmp"
    run_dir = dd / "bigshuf-0123456789ab"

    def plant() -> None:
        for p in (theirs, legacy):
            p.write_bytes(b"theirs\n")
            os.utime(p, (time.time() - 3600, time.time() - 3600))
        run_dir.mkdir()
        (run_dir / "lock").write_bytes(b"")

    as_nobody(plant)
    tempspace.remove_dead_outputs(str(dd))
    assert tempspace.remove_dead_runs(str(dd)) == []
    assert theirs.exists() and legacy.exists() and run_dir.exists()


def test_a_symlink_named_like_a_run_directory_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lock").write_bytes(b"")
    (elsewhere / "data").write_bytes(b"keep\n")
    parent = tmp_path / "t"
    parent.mkdir()
    os.symlink(elsewhere, parent / "bigshuf-0123456789ab")
    assert tempspace.remove_dead_runs(str(parent)) == []
    assert (elsewhere / "data").read_bytes() == b"keep\n"


def test_concurrent_runs_cleaning_the_same_leftovers_all_succeed(tmp_path: Path) -> None:
    src = write_records(tmp_path / "s.txt", make_records(2000, seed=13))
    dd = tmp_path / "dd"
    dd.mkdir()
    old = time.time() - 3600
    for i in range(3000):
        for name in (f".out.txt.{i:08d}.bigshuf-tmp", f".out.txt.{i:012x}-0.bigshuf-tmp"):
            (dd / name).write_bytes(b"x")
            os.utime(dd / name, (old, old))
    procs = [
        subprocess.Popen([sys.executable, "-m", "bigshuf", str(src), "-o", str(dd / f"out{i}.txt")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for i, p in enumerate(procs):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-500:]
        assert records_in([dd / f"out{i}.txt"]) == records_in([src])
    assert dot_files(dd) == []


# --- descriptors, scale and the output checked before pass 1 -----------------------------------


def test_many_shards_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    records = make_records(5000, seed=14)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    for memory in ("64M", "64K"):  # in memory, and external
        proc = cli(["-S", memory, "-T", str(tmp_path), "--shards", "200", str(src), "-o", f"{out}/"], preexec=limit)
        assert proc.returncode == 0, proc.stderr
        names = sorted(os.listdir(out))
        assert names == [f"part-{i:05d}.txt" for i in range(200)]
        assert records_in([out / n for n in names]) == Counter(records)
        assert [n for n in os.listdir(tmp_path) if n.startswith(("bigshuf-", "."))] == []


def test_an_impossible_shard_count_is_refused_before_reading(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", make_records(10_000, seed=15))

    def limit() -> None:  # the old code allocated gigabytes before failing
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    start = time.monotonic()
    proc = cli(["--shards", "100000000", str(src), "-o", str(tmp_path / "out") + "/"], preexec=limit)
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"bigshuf: 100000000 shards: ") and proc.stderr.count(b"\n") == 1
    assert b"files" in proc.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "out").exists()


def test_thousands_of_shards_scan_the_directory_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = make_records(4_000, seed=16, max_len=10)
    src = write_records(tmp_path / "in.txt", records)
    out = tmp_path / "out"
    out.mkdir()
    scans = Counter[str]()
    real = os.listdir

    def listdir(path: str | os.PathLike[str] = ".") -> list[str]:
        scans[os.fspath(path)] += 1
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    bigshuf.shuffle(src, f"{out}/", seed=1, shards=2_000, sync=False, tmp_dir=tmp_path)
    monkeypatch.undo()
    assert scans[f"{out}/"] + scans[str(out)] <= 1
    names = sorted(os.listdir(out))
    assert len(names) == 2_000 and names[-1] == "part-01999.txt"
    assert sum(len(split_records((out / n).read_bytes())) for n in names) == 4_000


@pytest.mark.parametrize("owner", [65534, os.geteuid()])
def test_fifos_named_as_a_runs_lock_or_journal_are_passed_over(tmp_path: Path, owner: int) -> None:
    """Found by attack: in a shared sticky directory another user's FIFO named as a run's lock or
    commit journal made every run there wait for a writer for ever (SIGTERM and SIGINT ignored in
    the open). They are passed over as files that are not a run's, and left where they are."""
    if owner != os.geteuid() and not ROOT:
        pytest.skip("needs root to give the FIFOs to another user")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    fifos = [shared / ".bigshuf-abcdef123457.lock", shared / ".bigshuf-abcdef123458.commit"]
    for fifo in fifos:
        os.mkfifo(fifo)
        os.chown(fifo, owner, owner)
    proc = cli(["-e", "a", "b", "-o", str(shared / "o.txt")], timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert sorted((shared / "o.txt").read_bytes().split()) == [b"a", b"b"]
    assert all(stat.S_ISFIFO(os.lstat(f).st_mode) for f in fifos)


def _fifo_input(tmp_path: Path) -> tuple[Path, int]:
    """A FIFO that a run would wait on forever if it read it (a writer holds it open, silent)."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    return fifo, os.open(fifo, os.O_RDWR)


@pytest.mark.parametrize("case", ["long name", "directory", "missing parent", "read-only file system"])
def test_an_unwritable_target_is_refused_before_pass_1(tmp_path: Path, case: str) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if case == "read-only file system":
        if not ROOT or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]).returncode:
            pytest.skip("cannot mount a read-only tmpfs here")
    fifo, writer = _fifo_input(tmp_path)
    target = {
        "long name": tmp_path / ("a" * 256),
        "directory": tmp_path,
        "missing parent": tmp_path / "no" / "out.txt",
        "read-only file system": ro / "out.txt",
    }[case]
    try:
        proc = cli([str(fifo), "-o", str(target)], timeout=60)
    finally:
        os.close(writer)
        if case == "read-only file system":
            subprocess.run(["umount", str(ro)], check=True)
    assert proc.returncode == 1
    assert proc.stderr.count(b"\n") == 1 and proc.stderr.startswith(b"bigshuf: ")
    words = {"long name": b"File name too long", "directory": b"Is a directory",
             "missing parent": b"No such file or directory", "read-only file system": b"Read-only file system"}[case]
    assert words in proc.stderr


@pytest.mark.skipif(not ROOT, reason="chattr needs root")
@pytest.mark.parametrize("flag", ["+i", "+a"])
@pytest.mark.parametrize("shards", [None, 3])
def test_an_immutable_or_append_only_target_is_refused_before_pass_1(tmp_path: Path, flag: str, shards: int | None) -> None:
    # Found by the issue-11 verification: such a target was reported only at the commit, after the whole shuffle.
    out = tmp_path / "out"
    out.mkdir()
    target = out / ("part-00001.txt" if shards else "out.txt")
    target.write_bytes(b"old\n")
    if subprocess.run(["chattr", flag, str(target)], capture_output=True).returncode != 0:
        pytest.skip("this file system does not take chattr")
    fifo, writer = _fifo_input(tmp_path)
    try:
        proc = cli([str(fifo), "-o", str(out / "part-{:05d}.txt") if shards else str(target),
                    *(["--shards", str(shards)] if shards else [])], timeout=60)
    finally:
        os.close(writer)
        subprocess.run(["chattr", "-" + flag[1], str(target)], check=True)
    assert proc.returncode == 1
    assert proc.stderr == f"bigshuf: {target}: cannot be replaced: Operation not permitted\n".encode()
    assert target.read_bytes() == b"old\n" and sorted(os.listdir(out)) == [target.name]


def test_a_long_output_name_that_fits_is_written(tmp_path: Path) -> None:
    # 250 bytes is a legal name; its temporary name is cut to fit beside it.
    src = write_records(tmp_path / "in.txt", make_records(100, seed=17))
    out = tmp_path / ("b" * 250)
    proc = cli([str(src), "-o", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert records_in([out]) == records_in([src])
    assert dot_files(tmp_path) == []


# --- issue 12: shard names, directories made, leftovers under -T -------------------------------


def test_shards_from_compressed_json_lines_keep_their_kind_and_codec(tmp_path: Path) -> None:
    from helpers import compress, decompress

    records = [b'{"i": %d}' % i for i in range(100)]
    data = b"\n".join(records) + b"\n"
    src = tmp_path / "corpus.jsonl.zst"
    src.write_bytes(compress("zstd", data))
    for flag, suffix, codec in ((None, ".jsonl.zst", "zstd"), ("gzip", ".jsonl.gz", "gzip"), ("none", ".jsonl", None)):
        out = tmp_path / f"out-{flag}"
        bigshuf.shuffle(src, f"{out}/", seed=1, shards=2, compress=flag)
        names = sorted(os.listdir(out))
        assert names == [f"part-00000{suffix}", f"part-00001{suffix}"]
        got = b"".join(decompress(codec, (out / n).read_bytes()) if codec else (out / n).read_bytes() for n in names)
        assert Counter(split_records(got)) == Counter(records)


def test_a_failed_sharded_run_removes_the_directories_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_records(tmp_path / "in.txt", make_records(1000, seed=19))

    def full(self: object, data: object) -> None:
        raise bigshuf.OutputError("write error: No space left on device")

    # The shards' directories exist by the time anything is written; the write then fails.
    monkeypatch.setattr(bigshuf.storage.sinks.AtomicFileSink, "write", full)
    with pytest.raises(bigshuf.OutputError, match="No space left"):
        bigshuf.shuffle(src, str(tmp_path / "new" / "deeper") + "/", shards=4, tmp_dir=tmp_path)
    with pytest.raises(bigshuf.OutputError, match="No space left"):
        bigshuf.shuffle(src, str(tmp_path / "a{}" / "part.txt"), memory="16K", shards=3, tmp_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_an_in_memory_run_removes_dead_runs_under_T_as_an_external_run_does(tmp_path: Path) -> None:
    src = write_records(tmp_path / "in.txt", make_records(100, seed=18))
    temp = tmp_path / "t"
    temp.mkdir()
    dead = temp / "bigshuf-0123456789ab"
    dead.mkdir()
    (dead / "lock").write_bytes(b"")
    (dead / "bucket-00000").write_bytes(b"x" * 100)
    proc = cli(["-T", str(temp), str(src), "-o", str(tmp_path / "out.txt")])
    assert proc.returncode == 0
    assert b"left by a run that is gone" in proc.stderr
    assert os.listdir(temp) == []


@pytest.mark.parametrize("layout", ["symlinked name", "dot-dot pattern"])
def test_two_shards_that_name_one_file_are_refused_before_reading(tmp_path: Path, layout: str) -> None:
    # Found by the issue-11 verification: each shard was renamed onto the same file in turn, and
    # the run exited 0 with one shard's records in it, the others lost.
    src = write_records(tmp_path / "in.txt", make_records(1000, seed=18))
    out = tmp_path / "sl"
    out.mkdir()
    if layout == "symlinked name":
        (out / "p-0.txt").write_bytes(b"old\n")
        os.symlink("p-0.txt", out / "p-1.txt")
        pattern = str(out / "p-{}.txt")
    else:
        pattern = str(out / "pc{}" / ".." / "same.txt")
    before = sorted(os.listdir(out))
    proc = cli(["--seed", "1", "--shards", "2", str(src), "-o", pattern])
    assert proc.returncode == 1, proc.stderr
    # A symlink at a shard's name is refused as such (since the attack on issue 15), before the names are compared.
    why = b"p-1.txt (from " if layout == "symlinked name" else b"shards 0 and 1 would both be written to"
    assert proc.stderr.count(b"\n") == 1 and why in proc.stderr
    assert sorted(os.listdir(out)) == before
    if layout == "symlinked name":
        assert (out / "p-0.txt").read_bytes() == b"old\n"


def test_a_signal_just_after_a_shard_file_is_created_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by the issue-11 verification: SIGINT/SIGTERM while shards were being opened left a
    # 0-byte temporary shard now and then, created but not yet known to the run's cleanup.
    from bigshuf.storage import sinks
    src = write_records(tmp_path / "in.txt", make_records(2000, seed=19))
    out = tmp_path / "out"
    created = 0
    real = sinks.create_exclusive

    def create_then_interrupt(path: str, *args: Any, **kw: Any) -> int:
        nonlocal created
        fd = real(path, *args, **kw)
        created += 1
        if created == 5:
            os.close(fd)
            raise KeyboardInterrupt  # as Python delivers SIGINT: between two bytecodes
        return fd

    monkeypatch.setattr(sinks, "create_exclusive", create_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        bigshuf.shuffle(src, f"{out}/", seed=1, shards=20, tmp_dir=tmp_path, sync=False)
    assert created == 5
    assert not out.exists() or os.listdir(out) == []


def test_shards_left_by_an_earlier_run_with_more_are_refused_or_named(tmp_path: Path) -> None:
    # Found by an attack: `--shards 3 -o ip/` then `--shards 2 -o ip/ ip/` (resharding in place)
    # left part-00002 beside the new shards: 160 samples for 120, silently. A known count is refused
    # before reading; an open-ended one (known only at the end) is named in one line; nothing is removed.
    src = write_records(tmp_path / "in.txt", make_records(300, seed=4))
    out = tmp_path / "o"
    assert cli(["--seed", "1", "--shards", "3", str(src), "-o", f"{out}/"]).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = cli(["--seed", "2", "--shards", "2", str(out), "-o", f"{out}/"])
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr == f"bigshuf: {out}/part-00002.txt: is not one of the 2 shards this run writes, and would be left beside them (its records read twice by whoever reads them all): move it away, or write the shards elsewhere\n".encode()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert cli(["--seed", "2", "--shards", "3", str(out), "-o", f"{out}/"]).returncode == 0  # the same count replaces them all
    assert sorted(b"".join(p.read_bytes() for p in out.iterdir()).splitlines()) == sorted(src.read_bytes().splitlines())
    proc = cli(["--seed", "3", "--shard-records", "150", str(src), "-o", f"{out}/"])
    assert proc.returncode == 0
    assert proc.stderr == f"bigshuf: note: {out}/part-00002.txt (and any later shard) was there before this run and is not one of the 2 shards it wrote; it was left in place\n".encode()
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.txt", "part-00001.txt", "part-00002.txt"]


@contextmanager
def directory_locked(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s flock, as a run's commit there does."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def wait_for_temporary_files(directory: Path, running: Callable[[], bool]) -> None:
    """Wait until a run has its temporary files in ``directory`` (it is about to commit), then a
    little more; fail if it finishes meanwhile, which it may not while the test holds the lock."""
    deadline = time.monotonic() + 60
    while not any(n.endswith(".bigshuf-tmp") for n in os.listdir(directory)):
        assert running(), "it finished while another commit held the directory's lock"
        assert time.monotonic() < deadline, "it never wrote its files"
        time.sleep(0.01)
    time.sleep(0.5)
    assert running(), "it finished while another commit held the directory's lock"


@pytest.mark.parametrize("another_run", [True, False], ids=["more shards committed meanwhile", "same shards"])
def test_a_commit_waits_for_another_in_its_directory_and_checks_again(tmp_path: Path, another_run: bool) -> None:
    # Found reviewing: two runs writing shards into one directory checked, each at its start, that
    # no shard past its last was there; a run with three shards committing after that check left
    # its part-00002 beside the two of the run committing last, whose reader counts those records
    # twice. A commit now holds its directories' lock, and under it looks again.
    src = write_records(tmp_path / "in.txt", make_records(300, seed=5))
    out = tmp_path / "o"
    out.mkdir()
    theirs = {f"part-0000{i}.txt": b"another run's shard %d\n" % i for i in range(3)}
    with directory_locked(out):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bigshuf", "--seed", "1", "--shards", "2", str(src), "-o", f"{out}/"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        wait_for_temporary_files(out, lambda: proc.poll() is None)
        if another_run:
            for name, data in theirs.items():
                (out / name).write_bytes(data)
    stdout, stderr = proc.communicate(timeout=60)
    assert stdout == b"" and dot_files(out) == []
    if another_run:
        assert proc.returncode == 1
        assert stderr == (
            f"bigshuf: {out}/part-00002.txt: appeared while this run was writing (another run's shard?) and would be left "
            "beside the new shards; nothing was replaced\n"
        ).encode()
        assert snapshot(out) == theirs
    else:
        assert (proc.returncode, stderr) == (0, b"")
        assert sorted(snapshot(out)) == ["part-00000.txt", "part-00001.txt"]
        assert records_in(sorted(out.iterdir())) == records_in([src])


def test_a_dask_commit_waits_for_another_in_its_directory_and_checks_again(tmp_path: Path) -> None:
    """The Dask engine's commit of local shards is the same commit: it waits, and looks again."""
    from concurrent.futures import ThreadPoolExecutor

    from bigshuf.engines import dask as dask_engine
    from bigshuf.errors import OutputError

    src = write_records(tmp_path / "in.txt", make_records(300, seed=6))
    out = tmp_path / "o"
    out.mkdir()
    with ThreadPoolExecutor(2) as runner, ThreadPoolExecutor(1) as caller:
        for split in (None, "a=0.5,b=rest"):
            target = f"{out}/" if split is None else f"{out}/{{split}}/"
            where = out if split is None else out / "a"
            where.mkdir(exist_ok=True)
            with directory_locked(where):
                done = caller.submit(
                    dask_engine.shuffle, [str(src)], target, memory="16K", seed=1, shards=2, split=split,
                    runner=runner, tmp_dir=tmp_path, sync=False,
                )
                wait_for_temporary_files(where, lambda: not done.done())
                (where / "part-00002.txt").write_bytes(b"another run's shard\n")
            with pytest.raises(OutputError, match="part-00002.txt'?: appeared while this run was writing"):
                done.result(timeout=60)
            assert sorted(os.listdir(where)) == ["part-00002.txt"]


def test_finishing_a_killed_commit_waits_for_a_commit_in_every_directory_it_renames_into(tmp_path: Path) -> None:
    """A killed run's commit is finished under the same locks, never between another commit's
    renames, in each directory its journal names (it locked only the journal's: found by review)."""
    from concurrent.futures import ThreadPoolExecutor

    src = write_records(tmp_path / "in.txt", make_records(300, seed=7))
    out = tmp_path / "k"
    command = ["--seed", "2", "--split", "a=0.5,b=rest", str(src), "-o", f"{out}/{{split}}/x"]
    assert cli(command).returncode == 0
    new = {d: (out / d / "x").read_bytes() for d in ("a", "b")}
    assert cli(["--seed", "1", *command[2:]]).returncode == 0
    assert cli(["--seed", "2", *command[2:]], env={KILL_AT: "3"}).returncode == -signal.SIGKILL
    journals = [d for d in ("a", "b") if any(n.endswith(".commit") for n in dot_files(out / d))]
    assert journals == ["a", "b"]  # a copy in each directory it renames into
    with ThreadPoolExecutor(1) as cleaner:
        with directory_locked(out / "b"):
            done = cleaner.submit(tempspace.remove_dead_outputs, str(out / "a"))
            time.sleep(0.5)
            assert not done.done(), "it finished while another commit held a directory it renames into"
        assert len(done.result(timeout=60)) == 1
    assert {d: (out / d / "x").read_bytes() for d in ("a", "b")} == new


def test_a_directory_locked_past_any_commit_is_written_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """``flock DIR bigshuf ... -o DIR/``: the caller's lock is never released while the run waits for
    it; the run waited for ever (found by review). Past LOCK_WAIT it puts its files in place and says so."""
    from bigshuf.storage import commit

    monkeypatch.setattr(commit, "LOCK_WAIT", 0.3)
    src = write_records(tmp_path / "in.txt", make_records(300, seed=8))
    out = tmp_path / "o"
    out.mkdir()
    with directory_locked(out):
        bigshuf.shuffle(src, f"{out}/", seed=1, shards=2, sync=False)
    assert sorted(snapshot(out)) == ["part-00000.txt", "part-00001.txt"] and dot_files(out) == []
    assert capsys.readouterr().err == f"bigshuf: note: {out}: locked by another process for over 0.3 s; files put in place there without waiting\n"


def test_a_pattern_naming_the_shard_after_the_last_as_one_of_its_own_commits(tmp_path: Path) -> None:
    """``{:.0e}`` names shard 11 as it names shard 10: the check at the commit took the run's own
    shard for another run's, after all the work (found by review); the check at the start skips it."""
    src = write_records(tmp_path / "in.txt", make_records(300, seed=9))
    for _ in range(2):
        proc = cli(["--seed", "1", "--shards", "11", str(src), "-o", str(tmp_path / "e" / "p{:.0e}")])
        assert (proc.returncode, proc.stderr) == (0, b"")
    assert len(os.listdir(tmp_path / "e")) == 11


def test_inputs_named_before_a_killed_commit_was_tidied_are_refused_in_words_that_fit_both_ends(tmp_path: Path) -> None:
    """The refusal said "finishing" a killed run's commit, also where the commit was undone."""
    from bigshuf.formats.line_run import _refuse_inputs_named_before

    a, b = tmp_path / "part-0.txt", tmp_path / "part-1.txt"
    with pytest.raises(bigshuf.OutputError, match=r"part-1.txt: put in place just now by finishing or undoing a killed run's commit"):
        _refuse_inputs_named_before({str(a)}, [str(a), str(b)])
    _refuse_inputs_named_before({str(a), str(b)}, [str(a), str(b)])  # every target among the inputs
    _refuse_inputs_named_before(set(), [str(a), str(b)])  # none of them read: nothing missed


def test_a_killed_commits_files_elsewhere_than_the_inputs_are_not_missed_inputs(tmp_path: Path) -> None:
    """A killed split commit put files in v/, t/ and a manifest beside them; a run reading only
    v/p00.txt finished it and was then refused, naming t/p00.txt as an input it missed, though
    nothing had named t/ (found by attack). Only a target in a directory an input was named in can
    be one that a listing missed."""
    from bigshuf.formats.line_run import _refuse_inputs_named_before

    root = tmp_path.resolve()
    v0, t0, t1, manifest = root / "v" / "p00.txt", root / "t" / "p00.txt", root / "t" / "p01.txt", root / "m.json"
    targets = [str(v0), str(t0), str(t1), str(manifest)]
    _refuse_inputs_named_before({str(v0)}, targets)
    with pytest.raises(bigshuf.OutputError, match=r"t/p01.txt: put in place just now"):
        _refuse_inputs_named_before({str(v0), str(t0)}, targets)  # t/ listed, its second file missed


def test_open_ended_shards_another_run_put_in_place_meanwhile_are_refused(tmp_path: Path) -> None:
    """Two runs into one directory with ``--shard-records``: the other committed 5 shards while this
    one wrote its 3. This one put its 3 over the other's first 3 and left its last 2 beside them, a
    mix of two runs, with a note calling them an earlier run's (found by attack). A later shard made
    since this run started is refused at the commit, as with ``--shards``; the other run's files stay."""
    from bigshuf.progress import Progress

    src = write_records(tmp_path / "in.txt", make_records(300, seed=4))
    out = tmp_path / "o"
    out.mkdir()

    class OtherRunCommits(Progress):
        """Puts another run's 5 shards in place as this run reads its input."""

        done = False

        def update(self, nbytes: int) -> None:
            if not self.done:
                self.done = True
                for i in range(5):
                    (out / f"part-{i:05d}.txt").write_bytes(b"the other run's\n")

    with pytest.raises(bigshuf.OutputError, match=r"^.*/o/part-00003\.txt: appeared while this run was writing \(another run's shard\?\)"):
        bigshuf.shuffle(src, f"{out}/", seed=1, shard_records=100, progress=OtherRunCommits(), sync=False, tmp_dir=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == [f"part-{i:05d}.txt" for i in range(5)]
    assert all(p.read_bytes() == b"the other run's\n" for p in out.iterdir())


def test_a_probe_left_by_a_killed_run_is_removed_where_it_is_a_second_name(tmp_path: Path) -> None:
    """A run killed between the link of its pre-read probe (``.NAME.ID.bigshuf-old``, a second name
    of the target) and its unlink left the probe for good (found by attack). The next run there
    removes it while it is only another name of the file in place; one whose target has since been
    replaced holds the old file's only copy, and stays."""
    src = write_records(tmp_path / "in.txt", make_records(50, seed=2))
    out = tmp_path / "out.txt"
    out.write_bytes(b"old\n")
    other = tmp_path / "other.txt"
    other.write_bytes(b"other old\n")
    run = "0123456789ab"
    (tmp_path / f".bigshuf-{run}.lock").write_bytes(b"")  # the killed run's lock, held by no one
    os.link(out, tmp_path / f".out.txt.{run}.bigshuf-old")
    os.link(other, tmp_path / f".other.txt.{run}-1.bigshuf-old")
    other.unlink()
    other.write_bytes(b"replaced since\n")
    assert cli(["--seed", "1", str(src), "-o", str(out)]).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.txt.{run}-1.bigshuf-old", "in.txt", "other.txt", "out.txt"]
    assert (tmp_path / f".other.txt.{run}-1.bigshuf-old").read_bytes() == b"other old\n"


def test_a_run_ending_as_a_cleaner_looks_at_it_is_not_called_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs sharing ``-T``: one opened the other's lock just as that run removed its own
    directory and let go of it, took the lock, and said "removed ..., left by a run that is gone"
    of a run that had ended well (found by a statistical audit's loops, once in 4,000 runs)."""
    import fcntl

    run = tmp_path / "bigshuf-0123456789ab"
    run.mkdir(0o700)
    lock = run / tempspace.LOCK_NAME
    owner = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX)
    real = tempspace.open_nofollow

    def then_the_owner_ends(path: str, *args: Any, **kwargs: Any) -> int:
        fd = real(path, *args, **kwargs)
        if path == str(lock):  # the owner's end, between the cleaner's open and its flock
            shutil.rmtree(run)
            os.close(owner)
        return fd

    monkeypatch.setattr(tempspace, "open_nofollow", then_the_owner_ends)
    assert tempspace.remove_dead_runs(str(tmp_path)) == []
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["lines", "tar"])
def test_open_ended_shards_a_killed_commit_put_in_place_at_the_start_are_an_earlier_runs(tmp_path: Path, kind: str) -> None:
    """A run finishing a killed commit of 10 shards as it starts, then writing 3: its files were
    remembered before that commit was finished, so the killed run's shard 3 counted as made since,
    and the run was refused (review of the fix above). It is an earlier run's, named in the note."""
    import io
    import tarfile

    def source(n: int, name: str) -> Path:
        path = tmp_path / f"{name}.{'tar' if kind == 'tar' else 'txt'}"
        if kind == "lines":
            path.write_bytes(b"".join(b"%d\n" % i for i in range(n)))
        else:
            with tarfile.open(path, "w") as tar:
                for i in range(n):
                    info = tarfile.TarInfo(f"{i:04d}.txt")
                    info.size = 2
                    tar.addfile(info, io.BytesIO(b"x\n"))
        return path

    big, small = source(100, "big"), source(30, "small")
    out = tmp_path / "o"
    suffix = ".tar" if kind == "tar" else ".txt"
    killed = cli(["--seed", "1", "--shard-records", "10", str(big), "-o", f"{out}/"], env={KILL_AT: "3"})
    assert killed.returncode == -signal.SIGKILL
    proc = cli(["--seed", "1", "--shard-records", "10", str(small), "-o", f"{out}/"])
    assert proc.returncode == 0, proc.stderr
    said = proc.stderr.decode().splitlines()
    assert len(said) == 2 and said[0].startswith("bigshuf: finished the commit of 10 file(s) that a killed run began")
    assert said[1] == (
        f"bigshuf: note: {out}/part-00003{suffix} (and any later shard) was there before this run and is not one of "
        "the 3 shards it wrote; it was left in place"
    )
