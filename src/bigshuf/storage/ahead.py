"""Compressed inputs decoded ahead on the workers while the input before them is read.

Decompressing is the slow part of reading a compressed input, and it runs on the thread that
reads. While that thread reads one input, the next compressed ones are opened and decoded on
workers into memory, up to a byte budget each; the reader then takes those bytes first. The
records read are the same, and so are the positions in the compressed files that plans are
made from (``Decompressed.position``), so the output does not depend on how many workers there
are. An input that changed after it was opened ahead, or failed to open, is opened again in
its turn, so what is read is what reading in turn would have read.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import BinaryIO

from ..core.plan import spare_descriptors
from ..errors import InputError
from .decoding import LARGEST_PIECE, Decompressed
from .sources import FileSource, Source

#: Memory held for one input's decoder state beside its pieces: zstd's window at the levels
#: people use and xz's dictionary at its default level are 8 MiB at most.
DECODER_STATE = 8 << 20

#: Least memory an input decoded ahead is given: its decoder's state, a piece decoded past its
#: budget, and at least as much again in pieces.
LEAST_PER_FILE = 2 * DECODER_STATE

#: Smallest compressed file decoded ahead: a smaller one decodes in a few milliseconds, less than
#: handing it to a worker and back costs (10,000 files of a few lines took 2.6 s so, 1.8 s without).
SMALLEST_FILE = 1 << 20

#: Most inputs open ahead at once: their descriptors come out of the run's spare ones (at most
#: half of them: output shards take some), not out of the buckets' (``plan.spare_descriptors``).
MOST_FILES = 8


@dataclass(frozen=True)
class AheadPlan:
    """How far ahead to decode: ``files`` inputs at once, each up to ``most`` bytes, by ``submit``."""

    submit: Callable[[Callable[[], BinaryIO | None]], Future[BinaryIO | None]]
    files: int
    most: int


def plan_ahead(
    submit: Callable[[Callable[[], BinaryIO | None]], Future[BinaryIO | None]], workers: int, held: int
) -> AheadPlan | None:
    """Decoding ahead on ``workers`` threads (the reader's among them) within ``held`` bytes in all,
    decoder states included, or None where not even one input gets ``LEAST_PER_FILE`` or a spare
    descriptor."""
    files = min(workers - 1, held // LEAST_PER_FILE, MOST_FILES, spare_descriptors() // 2)
    if files < 1:
        return None
    return AheadPlan(submit, files, held // files - DECODER_STATE - LARGEST_PIECE)


def compressed_file(source: Source) -> bool:
    """Whether ``source`` is a named regular file that is compressed and not small: one worth
    decoding ahead (not standard input, whose offset others share, nor a pipe, whose opening can
    wait on its writer; a plain file is read in parts on every worker already)."""
    if not isinstance(source, FileSource) or source.path == "-":
        return False
    try:
        st = os.stat(source.path)
        if not stat.S_ISREG(st.st_mode) or st.st_size < SMALLEST_FILE:
            return False
        return source.size() is None
    except (OSError, InputError):
        return False  # opened in its turn, failing then as it would have


class DecodeAhead:
    """The compressed inputs after the one being read, opened and decoded ahead (``AheadPlan``).

    ``start_after(i)`` starts on the next ones; ``take(i)`` gives input ``i``'s stream if it was
    started and is still the file's, after its worker stops; ``close`` stops and closes every
    stream not taken (a read abandoned or failed).
    """

    def __init__(self, sources: Sequence[Source], plan: AheadPlan) -> None:
        self.sources = sources
        self.plan = plan
        self._started: dict[int, Future[BinaryIO | None]] = {}
        self._stopped: set[int] = set()
        # A source object listed twice is opened by each of its turns: one opened ahead would
        # take the place of the one being read.
        listed = Counter(id(s) for s in sources)
        self._once = {key for key, times in listed.items() if times == 1}
        self._looked = 0  # the inputs before this one were looked at (and started, if worth it)

    def start_after(self, index: int) -> None:
        """Start opening and decoding the ``files`` inputs after ``index`` that are not started yet."""
        for i in range(max(index + 1, self._looked), min(len(self.sources), index + 1 + self.plan.files)):
            self._looked = i + 1  # each input is looked at once: a run may name thousands
            source = self.sources[i]
            if id(source) in self._once and compressed_file(source):
                self._started[i] = self.plan.submit(lambda i=i: self._open(i))  # type: ignore[misc]

    def _open(self, i: int) -> BinaryIO | None:
        """Run on a worker: input ``i`` opened and decoded up to the budget; None if it could not
        be opened (it is then opened in its turn, and fails then if it still cannot be)."""
        try:
            stream = self.sources[i].open()
        except InputError:
            return None
        try:
            if isinstance(stream, Decompressed):
                stream.decode_ahead(self.plan.most, lambda: i in self._stopped)
        except BaseException:
            stream.close()
            raise
        return stream

    def take(self, index: int) -> BinaryIO | None:
        """Input ``index``'s stream if it was started and its file has not changed since (None:
        open it now); its decoding stops first."""
        future = self._started.pop(index, None)
        if future is None or future.cancel():  # not started (the workers busy): no wait for one
            return None
        self._stopped.add(index)
        try:
            stream = future.result()
        finally:
            self._stopped.discard(index)
        source = self.sources[index]
        if stream is not None and not (isinstance(source, FileSource) and source.still_as_opened()):
            stream.close()
            return None
        return stream

    def close(self) -> None:
        """Stop every input started and not taken, and close its stream."""
        self._stopped.update(self._started)
        for future in self._started.values():
            if future.cancel() or future.exception() is not None:
                continue
            stream = future.result()
            if stream is not None:
                stream.close()
        self._started.clear()
        self._stopped.clear()
