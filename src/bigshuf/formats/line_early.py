"""Pass 1's next block scattered while it is still being read.

A compressed input is decompressed, and a pipe read, by one thread; scattering a block waited
until it was whole, so the two took turns. Here a piece goes to the workers as soon as the
bytes that decide where it ends are in, and the pieces come out as ``cut_pieces`` cuts the
whole block, so every seeded output stays the same.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

import numpy as np

from ..core.records import RecordFormat
from ..core.scatter import last_end
from ..core.streams import Key

T = TypeVar("T")

#: Starts piece ``p`` of the block expected: ``buf[lo:hi]``, on a worker.
Start = Callable[[int, np.ndarray, int, int], "Future[T]"]


class EarlyPieces(Generic[T]):
    """The pieces of the block being read that start before it is handed out (lines only).

    ``cut_pieces`` ends a piece at the last separator before its most bytes unless the block
    ends first, and a block ends at the last separator read: once more than that many bytes
    past a piece's start are read, its end is known whatever follows. At most ``most`` run at
    once; those done are given to ``finish`` in order (on the reading thread) as reads go on.
    """

    def __init__(self, fmt: RecordFormat, max_bytes: int, most: int) -> None:
        assert fmt.group == 1
        self.fmt = fmt
        self.max_bytes = max_bytes
        self.most = most
        self.start: Start[T] | None = None  # the block's, from ``expect``
        self.finish: Callable[[T], object] | None = None
        self.key: Key | None = None  # the block being read, once expected
        self.pos = 0  # where its next piece starts
        self.count = 0  # its pieces started so far
        self.stalled = False  # a record longer than a piece: the rest waits for the whole block
        self.started: deque[Future[T]] = deque()
        #: Pieces started before their block was handed out, over the run (for tests and measures).
        self.early = 0

    def expect(self, key: Key, start: Start[T], finish: Callable[[T], object]) -> None:
        """Start the pieces of the block ``key``, the next one read, as its bytes come in (``start``),
        and give those done to ``finish``."""
        self.key, self.pos, self.count, self.stalled = key, 0, 0, False
        self.start, self.finish = start, finish

    def read(self, buf: np.ndarray, filled: int) -> None:
        """``RecordReader.on_read``: finish the pieces done, in order, and start those now known."""
        if self.key is None or self.start is None or self.finish is None:
            return
        while self.started and self.started[0].done():
            self.finish(self.started.popleft().result())
        while not self.stalled and len(self.started) < self.most and filled - self.pos > self.max_bytes:
            end = last_end(buf, self.pos, self.pos + self.max_bytes, self.fmt)
            if end == self.pos:
                self.stalled = True
                break
            self.started.append(self.start(self.count, buf, self.pos, end))
            self.count += 1
            self.early += 1
            self.pos = end

    def settle(self) -> None:
        """Cancel the pieces not yet begun and wait for those running (the run is ending, or failed):
        none then outlives the buffer it reads."""
        for future in self.started:
            future.cancel()
        for future in self.started:
            if not future.cancelled():
                future.exception()
        self.started.clear()
        self.key = None

    def take(self, key: Key) -> tuple[list[Future[T]], int, int]:
        """For the block ``key`` as handed out: its pieces still running, in order, and where its
        next piece starts and its number. Nothing started if it is not the block expected."""
        if key != self.key:
            if self.count:
                raise RuntimeError(f"pieces of block {self.key} were started, block {key} came")
            return [], 0, 0
        started, self.started = list(self.started), deque()
        taken = (started, self.pos, self.count)
        self.key, self.pos, self.count = None, 0, 0
        return taken
