"""Tar samples' temporary buckets: pairs of files, the samples' bytes and each sample's length
(int64), so a bucket's offsets are one cumulative sum of its lengths file and its bytes are read
as written. With ``--resume`` the top level's pairs are synced, described and taken up again."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import numpy as np

from ..core.buckets import BucketSet, read_exactly
from ..core.scatter import Scattered
from ..errors import TempSpaceError
from ..quoting import quote_name
from ..storage.writeback import WriteBehind

#: Lengths read at once when a bucket is scattered again.
LENGTHS_CHUNK = 1 << 16


class SampleBuckets:
    """One level's k buckets of samples: a file of their bytes and a file of their lengths each.
    ``fresh`` False: a ``--resume`` run's top level, whose files ``restore`` takes up."""

    def __init__(self, directory: str, k: int, writer: WriteBehind, compress: bool, fresh: bool = True) -> None:
        self.k = k
        os.makedirs(directory, 0o700, exist_ok=True)  # private, as its two bucket sets' directories are
        self.data = BucketSet(os.path.join(directory, "data"), k, writer, compress=compress, fresh=fresh)
        self.lengths = BucketSet(os.path.join(directory, "lengths"), k, writer, compress=compress, fresh=fresh)
        self.records = self.data.records  # the same arrays, updated in place as samples are appended
        self.sizes = self.data.sizes

    def append(self, data: Scattered, lengths: Scattered, keep: int) -> None:
        """Append one scattered piece's samples and their lengths."""
        self.data.append(data, keep)
        self.lengths.append(lengths, keep)

    def close(self) -> None:
        """Flush and close both files of every bucket."""
        self.data.close()
        self.lengths.close()

    def remove(self, j: int) -> None:
        """Delete bucket ``j``'s two files once it has been consumed."""
        self.data.remove(j)
        self.lengths.remove(j)

    def drop_after(self, last: int) -> None:
        """Forget the buckets past ``last`` (``-n`` will never reach them)."""
        self.data.drop_after(last)
        self.lengths.drop_after(last)

    def offsets(self, j: int) -> np.ndarray:
        """Bucket ``j``'s sample offsets, from its lengths file (checked against its byte count)."""
        size = int(self.lengths.sizes[j])
        lengths = self.lengths.read_into(j, np.empty(size, np.uint8)).view("<i8")
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] != self.sizes[j] or len(lengths) != self.records[j]:
            raise TempSpaceError(f"{quote_name(self.lengths.path(j))}: temporary bucket does not match its samples")
        return offsets

    # --resume: the driver's ``Resumable`` buckets, both files of each bucket counted.

    @property
    def advice(self) -> str:
        """What to do about a bucket file that does not hold up (``--resume``'s way out)."""
        return self.data.advice

    @advice.setter
    def advice(self, text: str) -> None:
        self.data.advice = self.lengths.advice = text

    def sync(self) -> None:
        """Make both files of every bucket written since the last call durable."""
        self.data.sync()
        self.lengths.sync()

    def state(self) -> dict[str, Any]:
        """The samples' bucket state, with their lengths files' as ``lengths`` (see ``BucketSet.state``)."""
        return {**self.data.state(), "lengths": self.lengths.state()}

    def restore(self, state: dict[str, Any], consumed: int, complete: bool) -> None:
        """Take up both files of each bucket as a (validated) ``state`` counts them (see ``BucketSet.restore``)."""
        self.data.restore({name: value for name, value in state.items() if name != "lengths"}, consumed, complete)
        self.lengths.restore(state["lengths"], consumed, complete)


def bucket_samples(buckets: SampleBuckets, j: int, capacity: int) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """Bucket ``j``'s samples in blocks of at most ``capacity`` bytes (every sample fits one: the
    input's were refused otherwise), read from its two files, to scatter one level deeper."""
    data, lengths = buckets.data.open(j), buckets.lengths.open(j)
    buf = np.empty(capacity, np.uint8)
    try:
        pending = np.zeros(0, np.int64)
        left = bytearray()  # the part of a length the last read ended in
        ended = False
        while not ended:
            chunk = lengths.read(8 * LENGTHS_CHUNK)
            ended = not chunk
            left += chunk
            whole = len(left) // 8 * 8
            pending = np.concatenate([pending, np.frombuffer(bytes(left[:whole]), "<i8")])
            del left[:whole]
            while len(pending) and (ended or int(pending.sum()) > capacity):
                ends = np.cumsum(pending)
                take = max(1, int(np.searchsorted(ends, capacity, side="right")))
                view = buf[: int(ends[take - 1])]
                read_exactly(data, view, buckets.data.path(j))
                yield view, np.concatenate([[0], ends[:take]])
                pending = pending[take:]
        if left:
            raise TempSpaceError(f"{quote_name(buckets.lengths.path(j))}: temporary bucket does not match its samples")
    finally:
        data.close()
        lengths.close()
