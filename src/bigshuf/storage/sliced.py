"""Files whose writes reach the kernel in slices of at most ``WRITE_SLICE`` bytes.

Linux (6.x, ext4 and others with large folios) sizes the page-cache folios a buffered write
allocates from the length of the write call: a 16 MiB write takes 2 MiB folios, a 32 KiB one
32 KiB folios. On the 2-vCPU VM bigshuf is measured on, writing 1 GiB to a new file cost 2.8-3.7
CPU-seconds of system time in 16 MiB calls and 0.4-0.5 s in 32 KiB calls (wsize pairs in
benchmarks/README.md, issue 14), most likely because large folios come from the free blocks
the VM hands back to its host (free page reporting), slow to touch again. 32 KiB calls cost
only more system calls elsewhere (32k per GiB), so every output and bucket file is written so.
The slices are aligned to the file's ``WRITE_SLICE`` boundaries (a file written from an odd
offset, such as any output after its first record run of odd length, starts with a shorter
call): a 32 KiB folio must start at a multiple of 32 KiB in the file, so a call across a
boundary takes two smaller folios and half-fills them, and 1 GiB written in 32 KiB calls
shifted by 100 bytes cost 0.84-2.09 s of system time against 0.49-0.81 s aligned (four pairs).

An output that will be synced also has its written data sent to the disk as it goes
(``EarlyWriteback``), so the final ``fsync`` waits for the last stretch only, not the whole file.
"""

from __future__ import annotations

import io
import os
import queue
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, BinaryIO

from .threads import signals_held

native: ModuleType | None
try:
    from .. import _sliced as native
except ImportError:  # built without a C compiler: each slice is a call from Python
    native = None

#: Longest single write call (order-3 folios: the largest the kernel keeps on its per-CPU lists).
WRITE_SLICE = 32 << 10

#: Bytes written between two requests to start writing a synced output back to disk.
WRITEBACK_EVERY = 64 << 20


class SlicedFile(io.FileIO):
    """A raw file (``io.FileIO``) that writes at most ``WRITE_SLICE`` bytes a call, up to the next
    multiple of ``WRITE_SLICE`` in the file; like any raw file it may write less than it is given
    and says how much, which buffered writers loop on."""

    def __init__(self, fd: int, mode: str, *, closefd: bool = True) -> None:
        super().__init__(fd, mode, closefd=closefd)
        try:
            self._pos = os.lseek(self.fileno(), 0, os.SEEK_CUR)  # where the next write lands (FileIO put an "ab" file's at its end)
        except OSError:  # a pipe or terminal: no offsets to align to
            self._pos = 0

    def write(self, data: Any, /) -> int | None:  # type: ignore[override]
        """Write ``data`` in calls of at most ``WRITE_SLICE`` bytes, each ending at the next
        ``WRITE_SLICE`` boundary of the file: all in one compiled loop that holds no lock other
        threads need, or else only the first call; return the bytes written."""
        view = memoryview(data).cast("B")
        room = WRITE_SLICE - self._pos % WRITE_SLICE
        if native is not None and len(view) > room:
            n = int(native.write_sliced(self.fileno(), view, WRITE_SLICE, room))  # fileno() refuses a closed file
        else:
            n = super().write(view[:room] if len(view) > room else view)
        if n is not None:  # None: a non-blocking file took nothing (FileIO's answer, which buffered writers raise on)
            self._pos += n
        return n

    def seek(self, pos: int, whence: int = os.SEEK_SET, /) -> int:
        """Move to ``pos`` as ``FileIO`` does, following the offset the slices are aligned to."""
        self._pos = super().seek(pos, whence)
        return self._pos


class EarlyWriteback(SlicedFile):
    """A ``SlicedFile`` that, every ``WRITEBACK_EVERY`` bytes, has the kernel start writing what
    was written back to disk (``sync_file_range``, which waits for nothing), from a thread of its
    own so the writes go on meanwhile. For a file about to be synced: the disk then works during
    the run instead of in the final ``fsync`` (0.6-0.9 s for 1 GiB of output here). Only a hint:
    where it is missing or fails, the ``fsync`` does all the work, as without it."""

    def __init__(self, fd: int, mode: str, *, closefd: bool = True) -> None:
        super().__init__(fd, mode, closefd=closefd)
        self._sent = self._pos
        self._ranges: queue.SimpleQueue[tuple[int, int] | None] | None = None
        self._thread: threading.Thread | None = None

    def write(self, data: Any, /) -> int | None:  # type: ignore[override]
        """Write as ``SlicedFile`` does, up to the next ``WRITEBACK_EVERY`` bytes at most; past them,
        queue them for writeback."""
        view = memoryview(data).cast("B")
        n = super().write(view[: max(WRITE_SLICE, self._sent + WRITEBACK_EVERY - self._pos)])
        # At interpreter exit (a file flushed by its finalizer) no thread can start: no hint then.
        if self._pos - self._sent >= WRITEBACK_EVERY and not sys.is_finalizing():
            whole = self._pos & ~0xFFF  # whole pages: the last one is still being filled
            self._queue().put((self._sent, whole - self._sent))
            self._sent = whole
        return n

    def _queue(self) -> queue.SimpleQueue[tuple[int, int] | None]:
        if self._ranges is None:
            self._ranges = queue.SimpleQueue()
            start = _writeback_call()
            self._thread = threading.Thread(target=self._send, args=(self._ranges, start), name="bigshuf-writeback", daemon=True)
            with signals_held():
                self._thread.start()
        return self._ranges

    def _send(self, ranges: queue.SimpleQueue[tuple[int, int] | None], start: Callable[[int, int, int], None]) -> None:
        fd = self.fileno()
        while (item := ranges.get()) is not None:
            start(fd, *item)

    def close(self) -> None:
        """Stop the writeback thread (after its queued requests), then close the file."""
        thread, ranges = getattr(self, "_thread", None), getattr(self, "_ranges", None)  # None if __init__ failed
        if thread is not None and ranges is not None:
            ranges.put(None)
            thread.join()
            self._thread = None
        super().close()


def _writeback_call() -> Callable[[int, int, int], None]:
    """``start(fd, offset, nbytes)``: Linux's ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, or nothing where it is missing."""
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (ImportError, OSError, AttributeError):
        return lambda fd, offset, nbytes: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, nbytes: int) -> None:
        call(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE; an error is the final fsync's to report

    return start


def open_sliced(fd: int, mode: str, buffering: int, *, closefd: bool = True, writeback: bool = False) -> BinaryIO:
    """Descriptor ``fd`` as a ``SlicedFile`` (``mode`` ``"wb"`` or ``"ab"``; an ``EarlyWriteback``
    for a file that will be synced, with ``writeback``), behind a buffered writer of ``buffering``
    bytes unless it is 0 (raw)."""
    raw = EarlyWriteback(fd, mode, closefd=closefd) if writeback else SlicedFile(fd, mode, closefd=closefd)
    return raw if buffering == 0 else io.BufferedWriter(raw, buffering)
