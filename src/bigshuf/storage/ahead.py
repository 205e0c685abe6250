"""Compressed inputs decoded ahead on the workers while the input before them is read.

Decompressing is the slow part of reading a compressed input, and it runs on the thread that
reads. While that thread reads one input, the next ones are opened and decoded on workers into
memory, up to a byte budget each; the reader then takes those bytes first. The records read
are the same, and so are the positions in the compressed files that plans are made from
(``Decompressed.position``), so the output does not depend on how many workers there are.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import InputError
from .decoding import Decompressed
from .sources import FileSource, Source


#: Least budget worth decoding ahead for: a piece is decoded whole (up to ``_MemberLoop.OUT_CHUNK``,
#: 2 MiB), so a smaller budget would be overshot by more than itself.
LEAST_AHEAD = 8 << 20


@dataclass(frozen=True)
class AheadPlan:
    """How far ahead to decode: ``files`` inputs at once, each up to ``most`` bytes, by ``submit``."""

    submit: Callable[[Callable[[], BinaryIO | InputError]], Future[BinaryIO | InputError]]
    files: int
    most: int


def compressed_file(source: Source) -> bool:
    """Whether ``source`` is a named regular file that is compressed: one worth decoding ahead."""
    return _ahead_worthy(source) and source.size() is None


def _ahead_worthy(source: Source) -> bool:
    """Whether ``source`` may be opened early: a named regular file (not standard input, whose
    offset others share, nor a pipe, whose opening can wait on its writer)."""
    if not isinstance(source, FileSource) or source.path == "-":
        return False
    try:
        return stat.S_ISREG(os.stat(source.path).st_mode)
    except OSError:
        return False  # opened when its turn comes, failing then as it would have


class DecodeAhead:
    """The inputs after the one being read, opened and decoded ahead (``AheadPlan``).

    ``take(i)`` gives input ``i``'s stream if it was started, after its worker stops, or raises
    the error its opening met; ``start_after(i)`` starts on the next ones; ``close`` stops and
    closes every stream not taken (a read abandoned or failed).
    """

    def __init__(self, sources: Sequence[Source], plan: AheadPlan) -> None:
        self.sources = sources
        self.plan = plan
        self._started: dict[int, Future[BinaryIO | InputError]] = {}
        self._stopped: set[int] = set()

    def start_after(self, index: int) -> None:
        """Start opening and decoding the ``files`` inputs after ``index`` that are not started yet."""
        for i in range(index + 1, min(len(self.sources), index + 1 + self.plan.files)):
            if i not in self._started and _ahead_worthy(self.sources[i]):
                self._started[i] = self.plan.submit(lambda i=i: self._open(i))  # type: ignore[misc]

    def _open(self, i: int) -> BinaryIO | InputError:
        """Run on a worker: input ``i`` opened and, if compressed, decoded up to the budget."""
        try:
            stream = self.sources[i].open()
        except InputError as e:
            return e
        if isinstance(stream, Decompressed):
            stream.decode_ahead(self.plan.most, lambda: i in self._stopped)
        return stream

    def take(self, index: int) -> BinaryIO | None:
        """Input ``index``'s stream if it was started (None: open it now); its decoding stops first."""
        future = self._started.pop(index, None)
        if future is None:
            return None
        self._stopped.add(index)
        got = future.result()
        if isinstance(got, InputError):
            raise got
        return got

    def close(self) -> None:
        """Stop every input started and not taken, and close its stream."""
        self._stopped.update(self._started)
        for future in self._started.values():
            if future.cancel() or future.exception() is not None:
                continue
            got = future.result()
            if not isinstance(got, InputError):
                got.close()
        self._started.clear()
