"""A run killed with SIGKILL leaves the target untouched; the next run removes what it left.

Only what a dead run left is removed: a live run's directory (its lock held) stays.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import write_short_lines

from bigshuf.storage.tempspace import LOCK_NAME, remove_dead_runs


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_short_lines(tmp_path_factory.mktemp("crash") / "in.txt", 1_600_000, seed=2)


def _run(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bigshuf", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("when", ["pass 1", "pass 2"])
def test_sigkill_leaves_target_untouched_and_next_run_cleans_up(tmp_path: Path, big_input: Path, when: str) -> None:
    temp = tmp_path / "t"
    temp.mkdir()
    outdir = tmp_path / "o"
    outdir.mkdir()
    out = outdir / "out.txt"
    out.write_bytes(b"previous\n")
    proc = _run(["-S", "1M", "-T", str(temp), str(big_input), "-o", str(out)])
    deadline = time.monotonic() + 60
    # Pass 1 has begun once the private directory exists; pass 2 once the output's temp file does.
    while not (
        any((d / LOCK_NAME).exists() for d in temp.iterdir())
        if when == "pass 1"
        else any(p.name.endswith(".bigshuf-tmp") for p in outdir.iterdir())
    ):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == b"previous\n"
    left_dirs = list(temp.iterdir())
    assert left_dirs
    stale = [p for p in outdir.iterdir() if p.name.endswith(".bigshuf-tmp")]
    for p in stale:  # as if the crash were older than the 10-second grace period
        os.utime(p, (time.time() - 60, time.time() - 60))
    second = subprocess.run(
        [sys.executable, "-m", "bigshuf", "-S", "1M", "-T", str(temp), str(big_input), "-o", str(out)],
        capture_output=True, timeout=300,
    )
    assert second.returncode == 0, second.stderr
    assert b"left by a run that is gone" in second.stderr
    assert list(temp.iterdir()) == []
    assert sorted(p.name for p in outdir.iterdir()) == ["out.txt"]
    assert sorted(out.read_bytes().splitlines()) == sorted(big_input.read_bytes().splitlines())


def test_a_live_runs_directory_is_left_alone(tmp_path: Path) -> None:
    live = tmp_path / "bigshuf-00000000000a"
    live.mkdir()
    fd = os.open(live / LOCK_NAME, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    dead = tmp_path / "bigshuf-00000000000b"
    dead.mkdir()
    (dead / LOCK_NAME).write_bytes(b"")
    (dead / "bucket-00000").write_bytes(b"x" * 100)
    other = tmp_path / "bigshuf-not-ours"
    other.mkdir()
    try:
        removed = remove_dead_runs(str(tmp_path))
    finally:
        os.close(fd)
    assert removed == [str(dead)]
    assert live.exists() and other.exists() and not dead.exists()


def test_a_users_own_bigshuf_directories_are_never_removed(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """Only a run's directory (``bigshuf-`` and 12 hex digits) is removed as dead: a user's
    ``bigshuf-experiments`` holding a file named lock, or an old empty ``bigshuf-notes``, was deleted
    whole by any run under that temporary directory (found by attack)."""
    temp = tmp_path / "tmp"
    kept = [temp / "bigshuf-experiments", temp / "bigshuf-0123456789abc", temp / "bigshuf-0123456789AB", temp / "bigshuf-notes"]
    for d in kept[:3]:
        (d / "results").mkdir(parents=True)
        (d / "results" / "table.csv").write_bytes(b"week of work\n")
        (d / LOCK_NAME).write_bytes(b"")
    kept[3].mkdir()
    os.utime(kept[3], (time.time() - 60, time.time() - 60))
    dead = temp / "bigshuf-0123456789ab"
    dead.mkdir()
    (dead / LOCK_NAME).write_bytes(b"")
    (tmp_path / "in").write_bytes(b"b\na\n")
    code, out, err = run_cli(["--seed", "1", "-T", temp, "-S", "1K", tmp_path / "in", "-o", tmp_path / "out"])
    assert (code, out) == (0, b"")
    assert err == f"bigshuf: removed {dead} (0 B), left by a run that is gone\n".encode()
    assert sorted(temp.iterdir()) == sorted(kept)
    assert all((d / "results" / "table.csv").read_bytes() == b"week of work\n" for d in kept[:3])


def test_a_run_killed_while_starting_is_removed_after_a_grace_period(tmp_path: Path) -> None:
    empty = tmp_path / "bigshuf-00000000000c"
    empty.mkdir()
    young = tmp_path / "bigshuf-00000000000d"
    young.mkdir()
    half = tmp_path / "bigshuf-00000000000e"
    half.mkdir()
    (half / (LOCK_NAME + ".new")).write_bytes(b"")
    for d in (empty, half):
        os.utime(d, (time.time() - 60, time.time() - 60))
    # A Dask run's --temp-url prefix has a run directory's name but never a lock: empty while its
    # cluster starts, it was removed from under the live run (found by review). Only a lock tells.
    prefix = tmp_path / "bigshuf-dask-00000000000f"
    prefix.mkdir()
    os.utime(prefix, (time.time() - 60, time.time() - 60))
    assert sorted(remove_dead_runs(str(tmp_path))) == sorted([str(empty), str(half)])
    assert young.exists() and prefix.exists()
