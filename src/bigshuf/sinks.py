"""Outputs: standard output, or a file written beside its target and renamed into place at the end."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from typing import BinaryIO

from .errors import OutputError


class Sink:
    """Where shuffled bytes go; ``commit`` makes them visible, ``abort`` leaves no trace."""

    name = "standard output"

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.bytes_written = 0

    def write(self, data: memoryview) -> None:
        """Write all of ``data``."""
        try:
            self._stream.write(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(f"{self.name}: write error: {e.strerror}") from None
        self.bytes_written += len(data)

    def commit(self) -> None:
        """Flush; the output is complete."""
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(f"{self.name}: write error: {e.strerror}") from None

    def abort(self) -> None:
        """The run failed: nothing more is written."""


class StdoutSink(Sink):
    """Standard output, written through its file descriptor in large calls."""

    def __init__(self) -> None:
        super().__init__(open(sys.stdout.fileno(), "wb", buffering=1 << 20, closefd=False))


class DeviceSink(Sink):
    """A character device, FIFO or socket named by ``-o`` (``/dev/null``): written in place."""

    def __init__(self, path: str) -> None:
        self.name = path
        try:
            stream = open(path, "wb", buffering=1 << 20)
        except OSError as e:
            raise OutputError(f"{path}: {e.strerror}") from None
        super().__init__(stream)

    def commit(self) -> None:
        super().commit()
        try:
            self._stream.close()
        except OSError as e:
            raise OutputError(f"{self.name}: write error: {e.strerror}") from None

    def abort(self) -> None:
        try:
            self._stream.close()
        except OSError:
            pass


def open_output(path: str | os.PathLike[str] | None) -> Sink:
    """The sink for ``-o PATH``: stdout for None or ``-``; a symlink is followed to the file it names."""
    if path is None or os.fspath(path) == "-":
        return StdoutSink()
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return DeviceSink(real)
    return AtomicFileSink(real)


class AtomicFileSink(Sink):
    """A file built under a temporary name in the target's directory and renamed at commit.

    A failed run removes the temporary file, so an existing target is never touched and a
    new one never appears half-written. The target keeps its permission bits if it existed
    (but, being a new file, not its other hard links).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.name = self.path
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, self.tmp_path = tempfile.mkstemp(
                prefix=f".{os.path.basename(self.path)}.", suffix=".bigshuf-tmp", dir=directory
            )
        except OSError as e:
            raise OutputError(f"{self.path}: {e.strerror}") from None
        super().__init__(open(fd, "wb", buffering=1 << 20))

    def commit(self) -> None:
        super().commit()
        try:
            self._stream.close()
            try:
                mode = os.stat(self.path).st_mode & 0o7777
            except FileNotFoundError:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(self.tmp_path, mode)
            os.replace(self.tmp_path, self.path)
        except OSError as e:
            self.abort()
            raise OutputError(f"{self.path}: {e.strerror}") from None

    def abort(self) -> None:
        try:
            self._stream.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp_path)
        except FileNotFoundError:
            pass
