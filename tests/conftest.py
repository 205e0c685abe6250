"""Shared fixtures for the command-line tests: run bigshuf and GNU shuf as subprocesses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

GNU_SHUF = "/usr/bin/shuf"

#: Generous bound for one command; every run here takes well under a second.
TIMEOUT = 60

Result = tuple[int, bytes, bytes]
Runner = Callable[..., Result]


def _run(
    cmd: Sequence[str | bytes], input: bytes, cwd: str | os.PathLike[str] | None, executable: str | None = None
) -> Result:
    proc = subprocess.run(
        list(cmd), input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, timeout=TIMEOUT,
        executable=executable,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def run_cli() -> Runner:
    """``run_cli(args, input=b"", cwd=None) -> (returncode, stdout, stderr)`` of ``python -m bigshuf``.

    Arguments may be bytes (passed to the program undecoded). stdin, stdout and stderr
    are pipes, so progress bars stay off unless asked for.
    """

    def run(args: Sequence[str | bytes | os.PathLike[str]], input: bytes = b"", cwd: str | os.PathLike[str] | None = None) -> Result:
        argv = [a if isinstance(a, (str, bytes)) else os.fspath(a) for a in args]
        return _run([sys.executable, "-m", "bigshuf", *argv], input, cwd)

    return run


def gnu_to_bigshuf(stderr: bytes) -> bytes:
    """GNU shuf's message as bigshuf should print it: program name swapped, fancy quotes made plain."""
    text = stderr.replace("‘".encode(), b"'").replace("’".encode(), b"'")
    return re.sub(rb"\bshuf\b", b"bigshuf", text)


@pytest.fixture
def run_gnu() -> Runner:
    """``run_gnu(args, input=b"", cwd=None)`` runs GNU shuf, its stderr rewritten by :func:`gnu_to_bigshuf`.

    Skips the test when GNU shuf is not installed.
    """
    if not os.access(GNU_SHUF, os.X_OK):
        pytest.skip(f"GNU shuf not found at {GNU_SHUF}")

    def run(args: Sequence[str | bytes | os.PathLike[str]], input: bytes = b"", cwd: str | os.PathLike[str] | None = None) -> Result:
        argv = [a if isinstance(a, (str, bytes)) else os.fspath(a) for a in args]
        # argv[0] "shuf", so that messages say "shuf:" rather than the full path.
        code, out, err = _run(["shuf", *argv], input, cwd, executable=GNU_SHUF)
        return code, out, gnu_to_bigshuf(err)

    return run


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    """An empty directory to pass as ``-T``; tests check it is empty again afterwards."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path
