"""Interrupted runs: SIGINT, SIGHUP and SIGTERM end the process by the signal (a shell's status 130, 129
and 143), as GNU shuf dies of them, and leave no temporary or output files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import write_short_lines


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~48 MiB of short lines: at -S 1M a run lasts long enough to be interrupted."""
    return write_short_lines(tmp_path_factory.mktemp("sig") / "in.txt", 1_600_000, seed=1)


def _wait_for_buckets(temp: Path, proc: subprocess.Popen[bytes]) -> None:
    """Block until the run has created its private temp directory (pass 1 has begun)."""
    deadline = time.monotonic() + 60
    while not any(temp.iterdir()):
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _default_disposition(signum: int) -> None:
    """In the child: ``signum`` at its default, as a terminal's run finds it.

    A background job (as under CI) starts with SIGINT ignored, and ``nohup`` ignores SIGHUP; then,
    like GNU sort, bigshuf leaves them ignored."""
    signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_cleans_up_and_ends_the_process_by_the_signal(tmp_path: Path, big_input: Path, signum: int) -> None:
    # SIGHUP (the terminal closed) killed the run at once, its temporary directory left for the
    # next run to tidy; it now cleans up as SIGTERM does. The process then dies of the signal, as
    # GNU shuf does: it exited 130, 143 or 129, and a shell's loop or xargs went on to the next
    # command as if it had handled the signal (differential test).
    temp = tmp_path / "t"
    temp.mkdir()
    out = tmp_path / "out.txt"
    out.write_bytes(b"previous content\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigshuf", "-S", "1M", "-T", str(temp), str(big_input), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: _default_disposition(signum),
    )
    _wait_for_buckets(temp, proc)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signum
    assert b"Traceback" not in err
    assert list(temp.iterdir()) == []
    assert out.read_bytes() == b"previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "t"]


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_signal_ignored_when_the_run_starts_stays_ignored(tmp_path: Path, signum: int) -> None:
    # Under ``nohup`` (SIGHUP) or a parent that ignores SIGTERM, the run must go on, as GNU sort's
    # does; bigshuf took SIGTERM whatever the disposition it inherited. (~6 MiB: the run lasts
    # long enough to be signalled in pass 1, and is then run to its end.)
    big_input = write_short_lines(tmp_path / "in.txt", 200_000, seed=2)
    temp = tmp_path / "t"
    temp.mkdir()
    out = tmp_path / "out.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigshuf", "-S", "1M", "-T", str(temp), str(big_input), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signum, signal.SIG_IGN),
    )
    _wait_for_buckets(temp, proc)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert (proc.returncode, err) == (0, b"")
    assert sorted(out.read_bytes().splitlines()) == sorted(big_input.read_bytes().splitlines())
    assert list(temp.iterdir()) == []


def _thread_masks(pid: int) -> dict[int, int]:
    """Each thread of process ``pid`` and its blocked-signal mask, from /proc."""
    masks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            blocked = next(line for line in f if line.startswith("SigBlk:"))
        masks[int(tid)] = int(blocked.split()[1], 16)
    return masks


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs /proc to read each thread's signal mask")
@pytest.mark.parametrize("args", [[], ["-S", "1M"], ["-n", "3", "-r"]], ids=["memory", "external", "repeat"])
def test_only_the_main_thread_takes_ctrl_c(args: list[str]) -> None:
    """A process-directed SIGINT may go to any thread that does not block it. The write-behind
    thread did not: Python's handler then only set a flag, the main thread stayed blocked
    reading standard input, and Ctrl-C did nothing until the input ended (about 1 run in 200
    also died of the signal, silently). Every other thread now blocks SIGINT, SIGTERM and SIGHUP."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigshuf", "--seed", "1", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Records enough for the external run to scatter its first blocks, so its writer and workers
        # have started (threads start with their first job); the write returns once most are read.
        assert proc.stdin is not None
        proc.stdin.write(b"".join(b"%d\n" % i for i in range(400_000)))
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        # The main thread holds the signals only while it starts.
        started = 2 if args == ["-S", "1M"] else 1
        while len(masks := _thread_masks(proc.pid)) < started or masks[proc.pid] & (1 << (signal.SIGINT - 1)):
            assert proc.poll() is None and time.monotonic() < deadline, "bigshuf never started its threads"
            time.sleep(0.01)
        workers = {tid: mask for tid, mask in masks.items() if tid != proc.pid}
        wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        for tid, mask in workers.items():
            assert {s for s in wanted if mask & (1 << (s - 1))} == wanted, f"thread {tid} takes signals: {mask:#x}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out, err) == (-signal.SIGINT, b"", b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("settings", [[], ["-S", "1M"]], ids=["in memory", "external"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_a_run_whose_output_pipe_nobody_reads(tmp_path: Path, big_input: Path, settings: list[str], signum: int) -> None:
    """``bigshuf FILE | less`` and Ctrl-C: the run's clean-up waited for the writes queued to a pipe
    nobody read, so it went on until the reader went away (found by review); GNU shuf dies at once.
    The pipe is full here (the writer blocked in it) before the signal is sent."""
    import fcntl
    import termios

    temp = tmp_path / "t"
    temp.mkdir()
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bigshuf", "--seed", "1", "-T", str(temp), *settings, str(big_input)],
            stdout=w, stderr=subprocess.PIPE, preexec_fn=lambda: _default_disposition(signum),
        )
        os.close(w)
        size = fcntl.fcntl(r, 1032)  # F_GETPIPE_SZ: the bytes that fill it
        deadline = time.monotonic() + 60
        while int.from_bytes(fcntl.ioctl(r, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder) < size:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signum)
        try:
            _, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    finally:
        os.close(r)
    assert (proc.returncode, err) == (-signum, b"")
    assert list(temp.iterdir()) == []
