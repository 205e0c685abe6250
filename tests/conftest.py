"""Shared fixtures: run bigshuf and GNU shuf as subprocesses; an S3 API on loopback (moto) for the Dask tests."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

GNU_SHUF = "/usr/bin/shuf"

#: Generous bound for one command; every run here takes well under a second.
TIMEOUT = 60

Result = tuple[int, bytes, bytes]
Runner = Callable[..., Result]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than the cores this process may use. Many tests wait (on the
    bigshuf processes they start, on fsync, on a Dask cluster starting), and with one worker a
    core the suite kept the two cores of a CI machine busy only 1.6 of the time."""
    return len(os.sched_getaffinity(0)) + 1


#: A tmpfs for the tests whose runs checkpoint (``ram_tmp_path``), if it has this much room.
RAM_DISK, RAM_DISK_ROOM = "/dev/shm", 2 << 30


def _ram_disk() -> str | None:
    """``RAM_DISK`` if it is a tmpfs this process may write, with ``RAM_DISK_ROOM`` free; else None."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            tmpfs = any(line.split()[1:3] == [RAM_DISK, "tmpfs"] for line in f if len(line.split()) > 2)
        st = os.statvfs(RAM_DISK)
    except OSError:
        return None
    room = st.f_bavail * st.f_frsize >= RAM_DISK_ROOM
    return RAM_DISK if tmpfs and room and os.access(RAM_DISK, os.W_OK | os.X_OK) else None


@pytest.fixture
def ram_tmp_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private directory on the tmpfs ``RAM_DISK`` where there is one with room, removed after the
    test (else one as ``tmp_path`` makes). For the ``--resume`` tests: a run checkpoints (fsync)
    after each block and bucket, 10-14 s a run on this disk against 2 s in memory, and what they
    check (a kill loses no written page) is the same on either."""
    root = _ram_disk()
    if root is None:
        yield tmp_path_factory.mktemp(re.sub(r"\W", "_", request.node.name)[:30])
        return
    path = Path(tempfile.mkdtemp(prefix="bigshuf-tests-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3 API on 127.0.0.1 (moto's server in a thread); yields the environment that points boto at it.

    The variables are set in this process too, so that a cluster started afterwards passes
    them on to its workers. One server per session: fsspec reads ``FSSPEC_S3_ENDPOINT_URL``
    once, so a second server on another port would go unseen.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "FSSPEC_S3_ENDPOINT_URL": f"http://{host}:{port}",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield dict(os.environ)
    server.stop()


@pytest.fixture
def bucket(s3: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh bucket named after the test; yields an s3fs filesystem."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    name = request.node.name.lower().replace("_", "-")[:50]
    fs.mkdir(name)
    fs.bucket = name
    yield fs
