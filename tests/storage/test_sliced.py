"""The compiled sliced writes: every byte in order, in calls of at most the slice, errors as OSError."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bigshuf.storage import sliced
from bigshuf.storage.sliced import WRITE_SLICE, SlicedFile


@pytest.fixture
def native():  # type: ignore[no-untyped-def]
    """The compiled module (built by ``pip install``, as CI does)."""
    assert sliced.native is not None, "bigshuf._sliced was not built (pip install -e . builds it)"
    return sliced.native


def _write_calls() -> int:
    """Write system calls this thread has made (``/proc/thread-self/io``)."""
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/thread-self/io")


@pytest.mark.parametrize("size", [1, WRITE_SLICE, WRITE_SLICE + 1, 5 * WRITE_SLICE + 7])
@pytest.mark.parametrize("first", [WRITE_SLICE, 100])
def test_a_buffer_is_written_whole_in_slices(tmp_path: Path, native, size: int, first: int) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(size)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        before = _write_calls()
        assert native.write_sliced(fd, memoryview(data), WRITE_SLICE, first) == size
        # One call up to the first boundary, then one a slice, none longer.
        calls = 1 + -(-(size - first) // WRITE_SLICE) if size > first else 1
        assert _write_calls() - before == calls
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == data


def test_a_sliced_file_writes_a_large_buffer_in_one_compiled_call(tmp_path: Path, native) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(9 * WRITE_SLICE + 3)
    with SlicedFile(str(tmp_path / "out"), "wb") as f:
        assert f.write(b"head") == 4
        before = _write_calls()
        assert f.write(data) == len(data)  # one compiled call, its slices ending at the file's boundaries
        assert _write_calls() - before == 10
        assert f.write(b"tail") == 4
    assert (tmp_path / "out").read_bytes() == b"head" + data + b"tail"
    f = SlicedFile(str(tmp_path / "again"), "wb")
    f.close()
    with pytest.raises(ValueError, match="closed file"):
        f.write(data)


def test_errors_are_oserrors_with_their_errno(native) -> None:  # type: ignore[no-untyped-def]
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            native.write_sliced(fd, b"x" * (3 * WRITE_SLICE), WRITE_SLICE, WRITE_SLICE)
        assert e.value.errno == errno.ENOSPC and e.value.strerror == os.strerror(errno.ENOSPC)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as bad:
        native.write_sliced(fd, b"x", WRITE_SLICE, WRITE_SLICE)  # closed
    assert bad.value.errno == errno.EBADF
    for slice_, first in ((0, 1), (8, 0), (8, 9)):
        with pytest.raises(ValueError):
            native.write_sliced(1, b"x", slice_, first)


def test_a_full_non_blocking_pipe_takes_nothing_and_says_so() -> None:
    """``FileIO``'s answer for a write that would block is None (buffered writers raise on it):
    a sliced file passes it on rather than failing on its own position's arithmetic."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    f = SlicedFile(w, "wb")
    try:
        written = 0
        while (n := f.write(b"x" * 4096)) is not None:
            written += n
        assert written > 0 and f.write(b"y") is None
    finally:
        f.close()
        os.close(r)
