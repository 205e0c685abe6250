"""Interrupted runs: SIGINT and SIGTERM exit 130 and 143 and leave no temporary or output files."""

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


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_cleans_up_and_sets_the_exit_status(tmp_path: Path, big_input: Path, signum: int, status: int) -> None:
    temp = tmp_path / "t"
    temp.mkdir()
    out = tmp_path / "out.txt"
    out.write_bytes(b"previous content\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigshuf", "-S", "1M", "-T", str(temp), str(big_input), "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # A background job (as under CI) starts with SIGINT ignored, and then, like GNU sort,
        # bigshuf leaves it ignored; a terminal's Ctrl-C finds it at its default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for_buckets(temp, proc)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    assert b"Traceback" not in err
    assert list(temp.iterdir()) == []
    assert out.read_bytes() == b"previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "t"]
