"""Pass 1 of the external shuffle: send every record to one of k buckets chosen uniformly at random."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from .errors import TempSpaceError
from .records import INT32_LIMIT, RecordFormat, array_bytes, as_binary_array, find_offsets
from .tempspace import full_disk_hint
from .writeback import WriteBehind


@dataclass
class Scattered:
    """One piece of a block regrouped by bucket: its bytes and where each bucket starts."""

    data: memoryview
    byte_bounds: np.ndarray  # k+1 byte offsets into data, bucket j is [bounds[j], bounds[j+1])
    counts: np.ndarray  # records per bucket


def iter_pieces(
    block: np.ndarray, fmt: RecordFormat, max_bytes: int, max_records: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Split a block of whole records into pieces of bounded bytes and record count.

    Yields ``(piece, offsets)`` as ``find_offsets`` gives them; a single record longer than
    ``max_bytes`` is a piece of its own.
    """
    pos, size = 0, len(block)
    while pos < size:
        offsets = find_offsets(block[pos : pos + max_bytes], fmt, max_records)
        if len(offsets) == 1:
            # A record longer than max_bytes: extend to its end (the block ends at one).
            offsets = find_offsets(block[pos:], fmt, 1)
        cut = int(offsets[-1])
        yield block[pos : pos + cut], offsets
        pos += cut


def scatter_piece(
    piece: np.ndarray, offsets: np.ndarray, rng: np.random.Generator, k: int, keep: int
) -> Scattered:
    """Draw an i.i.d. uniform bucket in ``[0, k)`` for every record and regroup the piece by bucket.

    Only buckets ``< keep`` are gathered (``-n`` drops buckets past the ones it needs).
    Within a bucket records keep their input order; pass 2 shuffles them.
    """
    import pyarrow.compute as pc

    dtype = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.uint32
    ids = rng.integers(0, k, len(offsets) - 1, dtype=dtype)
    counts = np.bincount(ids, minlength=k)
    counts[keep:] = 0
    order = np.argsort(ids, kind="stable")
    del ids
    kept = int(counts.sum())
    if offsets.dtype != np.int32 and len(piece) <= INT32_LIMIT:
        offsets = offsets.astype(np.int32)
    arr = as_binary_array(piece, offsets)
    gathered = pc.take(arr, order[:kept])
    rec_bounds = np.zeros(k + 1, np.int64)
    np.cumsum(counts, out=rec_bounds[1:])
    lengths = np.diff(offsets)[order[:kept]]
    byte_ends = np.zeros(kept + 1, np.int64)
    np.cumsum(lengths, out=byte_ends[1:])
    return Scattered(array_bytes(gathered), byte_ends[rec_bounds], counts)


@dataclass
class BucketSet:
    """The k temporary bucket files of one external pass, with their byte and record counts.

    With a ``writer`` the writes are queued on its thread (call its ``flush`` before
    ``close``); without one they happen at once.
    """

    directory: str
    k: int
    writer: WriteBehind | None = None
    compress: bool = False
    fresh: bool = True
    sizes: np.ndarray = field(init=False)
    records: np.ndarray = field(init=False)
    _files: list[BinaryIO | None] = field(init=False)
    _zstd: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.fresh:
            shutil.rmtree(self.directory, ignore_errors=True)  # leftovers of an interrupted attempt
        os.makedirs(self.directory, exist_ok=True)
        self.disk = [0] * self.k  # bytes in each file (compressed or not), kept by the writer thread
        self.sizes = np.zeros(self.k, np.int64)
        self.records = np.zeros(self.k, np.int64)
        # CRC-32 of each bucket's bytes as written, checked when it is read back (isal: 25 GB/s).
        self.crcs = [0] * self.k
        self._files = [None] * self.k

    def path(self, j: int) -> str:
        """The file of bucket ``j``."""
        return os.path.join(self.directory, f"bucket-{j:05d}")

    def append(self, s: Scattered) -> None:
        """Append each bucket's part of a scattered piece to its file (one queued job a piece)."""
        targets = []
        for j in np.flatnonzero(s.counts).tolist():
            f = self._files[j]
            if f is None:
                f = self._files[j] = self._open(j)
            targets.append((j, f, int(s.byte_bounds[j]), int(s.byte_bounds[j + 1])))
        self.sizes += np.diff(s.byte_bounds)
        self.records += s.counts

        compressor = self._compressor()
        crcs, disk = self.crcs, self.disk
        from isal.isal_zlib import crc32

        def write(data: memoryview) -> None:
            for j, f, lo, hi in targets:
                part = data[lo:hi]
                crcs[j] = crc32(part, crcs[j])
                if compressor is not None:
                    part = memoryview(compressor.compress(part))
                disk[j] += len(part)
                try:
                    while part:
                        part = part[f.write(part) :]
                except OSError as e:
                    raise TempSpaceError(f"{self.path(j)}: write error: {e.strerror}{full_disk_hint(e)}") from None

        if self.writer is None:
            write(s.data)
        else:
            self.writer.submit(write, s.data)

    def _compressor(self) -> Any:
        """With ``compress``, a zstd level-1 compressor: every part becomes one frame."""
        if not self.compress:
            return None
        if self._zstd is None:
            import zstandard

            self._zstd = zstandard.ZstdCompressor(level=1)
        return self._zstd

    def state(self) -> dict[str, list[int]]:
        """Sizes, record counts, CRCs and file sizes once queued writes are done (a checkpoint)."""
        return {
            "sizes": self.sizes.tolist(), "records": self.records.tolist(),
            "crcs": list(self.crcs), "disk": list(self.disk),
        }

    def restore(self, state: dict[str, list[int]], consumed: int = 0) -> None:
        """Return to a checkpoint: cut each bucket file back to its size there; appends follow.

        The first ``consumed`` buckets were already output (and removed) by pass 2.
        """
        self.sizes[:] = state["sizes"]
        self.records[:] = state["records"]
        self.crcs[:] = state["crcs"]
        self.disk[:] = state["disk"]
        for j, size in enumerate(self.disk):
            if j < consumed:
                continue
            try:
                if size or os.path.exists(self.path(j)):
                    os.truncate(self.path(j), size)
            except OSError as e:
                raise TempSpaceError(f"{self.path(j)}: cannot resume from this bucket: {e.strerror}") from None

    def _open(self, j: int) -> BinaryIO:
        try:
            return open(self.path(j), "ab", buffering=0)
        except OSError as e:
            raise TempSpaceError(f"{self.path(j)}: {e.strerror}") from None

    def drop_after(self, last: int) -> None:
        """Forget buckets past ``last``: ``-n`` will never reach them."""
        if self.writer is not None:
            self.writer.flush()
        for j in range(last + 1, self.k):
            f = self._files[j]
            if f is not None:
                f.close()
                self._files[j] = None
                os.unlink(self.path(j))
            self.sizes[j] = self.records[j] = 0
            self.disk[j] = 0

    def close(self) -> None:
        """Flush and close every bucket file."""
        for j, f in enumerate(self._files):
            if f is not None:
                try:
                    f.close()
                except OSError as e:
                    raise TempSpaceError(f"{self.path(j)}: write error: {e.strerror}{full_disk_hint(e)}") from None
                self._files[j] = None

    def read_into(self, j: int, buf: np.ndarray) -> np.ndarray:
        """Load bucket ``j`` (decompressing it if need be) into the front of ``buf``; return that view."""
        size = int(self.sizes[j])
        view = buf[:size]
        if size:
            with open(self.path(j), "rb", buffering=0) as raw:
                stream: Any = raw
                if self.compress:
                    from .codecs import open_reader

                    stream = open_reader(raw, "zstd", self.path(j))
                got = 0
                mv = view.data
                while got < size:
                    n = stream.readinto(mv[got:])
                    if not n:
                        raise TempSpaceError(f"{self.path(j)}: bucket file is shorter than written")
                    got += n
        self.check(j, view)
        return view

    def check(self, j: int, data: np.ndarray) -> None:
        """Raise if bucket ``j`` read back as ``data`` differs from what was written (CRC-32)."""
        from isal.isal_zlib import crc32

        if crc32(data.data) != self.crcs[j]:
            raise TempSpaceError(f"{self.path(j)}: temporary bucket is corrupt (checksum mismatch); its disk may be failing")

    def check_file(self, j: int) -> None:
        """Stream bucket ``j``'s file through the checksum (before a recursive pass re-reads it)."""
        from isal.isal_zlib import crc32

        crc, size = 0, 0
        with open(self.path(j), "rb", buffering=0) as raw:
            stream: Any = raw
            if self.compress:
                from .codecs import open_reader

                stream = open_reader(raw, "zstd", self.path(j))
            while chunk := stream.read(1 << 20):
                crc = crc32(chunk, crc)
                size += len(chunk)
        if crc != self.crcs[j] or size != self.sizes[j]:
            raise TempSpaceError(f"{self.path(j)}: temporary bucket is corrupt (checksum mismatch); its disk may be failing")

    def remove(self, j: int) -> None:
        """Delete bucket ``j``'s file once it has been consumed."""
        try:
            os.unlink(self.path(j))
        except FileNotFoundError:
            pass
