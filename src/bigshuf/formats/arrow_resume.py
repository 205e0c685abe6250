"""``--resume`` for Arrow buckets: the temporary IPC stream files of a table-like run (Megatron
documents) counted, CRC'd and synced so that a checkpoint can name them, and taken up again.

A bucket file is created when its first rows come, so an empty bucket has none (as the
checkpoint's fields want). Its bytes go through ``_Tail``, which keeps their count and CRC-32 as
written. A stream is never ended (a reader takes a file's end as the stream's): a checkpoint taken
mid-pass-1 counts whole messages, and a resumed run cuts a bucket back to them and appends a new
writer's messages, its schema (already in the file) dropped.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from ..core.buckets import append_bucket, restore_bucket
from ..errors import TempSpaceError
from ..quoting import quote_name
from ..storage.safefs import check_private_directory, sync_directory, sync_file
from ..storage.tempspace import full_disk_hint
from .tables import ARROW_ERRORS, TableBuckets, arrow_reason


def schema_message(schema: pa.Schema, options: pa.ipc.IpcWriteOptions) -> bytes:
    """The bytes a stream writer starts a stream of ``schema`` with (before its first batch)."""
    sink = pa.BufferOutputStream()
    writer = pa.ipc.new_stream(sink, schema, options=options)
    writer.close()
    data: bytes = sink.getvalue().to_pybytes()
    assert data.endswith(b"\xff\xff\xff\xff\x00\x00\x00\x00"), "an IPC stream ends with its end-of-stream marker"
    return data[:-8]


class _Tail:
    """A bucket file as pyarrow's stream writer sees it: its bytes counted and CRC'd as written; on a
    bucket taken up from a checkpoint, the new writer's schema message (``skip``) checked and dropped."""

    closed = False

    def __init__(self, f: BinaryIO, size: int, crc: int, skip: bytes) -> None:
        self.f = f
        self.size = size
        self.crc = crc
        self.skip = skip

    def write(self, data: Any) -> int:
        from isal.isal_zlib import crc32

        view = memoryview(data).cast("B")
        n = len(view)
        if self.skip:
            cut = min(len(self.skip), n)
            if bytes(view[:cut]) != self.skip[:cut]:
                raise TempSpaceError(f"{quote_name(str(getattr(self.f, 'name', '?')))}: the bucket's schema changed while resuming")
            self.skip, view = self.skip[cut:], view[cut:]
        self.crc = crc32(view, self.crc)
        self.size += len(view)
        self.f.write(view)
        return n

    def flush(self) -> None:
        """Written out at ``sync`` and ``close``."""


class ResumableTableBuckets(TableBuckets):
    """``TableBuckets`` that a ``--resume`` checkpoint can count on (the driver's ``Resumable``):
    ``sync``, ``state`` (sizes, rows, CRC-32 and bytes on disk of each) and ``restore``."""

    def __init__(self, directory: str, k: int, schema: pa.Schema, compress: bool, buffer_bytes: int, fresh: bool) -> None:
        self.k = k
        self.directory = directory
        self.records = np.zeros(k, np.int64)
        self.sizes = np.zeros(k, np.int64)
        self.schema = schema.remove_metadata()
        self.options = pa.ipc.IpcWriteOptions(compression="zstd" if compress else None)
        self.buffer = max(4096, min(1 << 20, buffer_bytes // k))
        self.crcs = [0] * k
        self.disk = [0] * k
        self.advice = ""  # what to do about a bucket that does not hold up
        self._writers = []
        self._tails: list[_Tail | None] = [None] * k
        self._streams: list[Any] = [None] * k
        self._existing: set[int] = set()  # restored buckets, reopened rather than created
        self._dirty: set[int] = set()
        self._created = False
        self._keep = k  # buckets past this -n has dropped: whatever still reaches them is not counted
        self._schema_bytes = schema_message(self.schema, self.options)
        if fresh:
            shutil.rmtree(directory, ignore_errors=True)  # leftovers of an interrupted attempt
        elif os.path.lexists(directory) and (problem := check_private_directory(directory)):
            raise TempSpaceError(f"{quote_name(directory)}: {problem}; cannot resume from its buckets")
        try:
            os.makedirs(directory, 0o700, exist_ok=True)
        except OSError as e:
            raise TempSpaceError(f"{quote_name(directory)}: cannot create temporary buckets: {e.strerror}") from None

    def append(self, scattered: pa.RecordBatch, counts: np.ndarray) -> None:
        start = 0
        try:
            for j in np.flatnonzero(counts).tolist():
                if j >= self._keep:
                    break
                self._stream(j).write_batch(scattered.slice(start, int(counts[j])))
                self._dirty.add(j)
                start += int(counts[j])
        except ARROW_ERRORS as e:
            raise TempSpaceError(f"{quote_name(self.directory)}: cannot write temporary bucket: {arrow_reason(e)}{full_disk_hint(e)}") from None

    def _stream(self, j: int) -> Any:
        """Bucket ``j``'s stream writer: over a new file, or appending to one taken up from a checkpoint."""
        writer = self._streams[j]
        if writer is None:
            fd = append_bucket(self.path(j), j in self._existing)
            self._created |= j not in self._existing
            f = open(fd, "ab", buffering=self.buffer)
            tail = self._tails[j] = _Tail(f, self.disk[j], self.crcs[j], self._schema_bytes if self.disk[j] else b"")
            writer = self._streams[j] = pa.ipc.new_stream(tail, self.schema, options=self.options)
        return writer

    def sync(self) -> None:
        """Make the buckets written since the last call durable (for a checkpoint that counts them)."""
        for j in sorted(j for j in self._dirty if j < self._keep):
            tail = self._tails[j]
            assert tail is not None
            try:
                tail.f.flush()
                sync_file(tail.f.fileno())
            except OSError as e:
                raise TempSpaceError(f"{quote_name(self.path(j))}: write error: {e.strerror}{full_disk_hint(e)}") from None
            self.disk[j], self.crcs[j] = tail.size, tail.crc
        self._dirty.clear()
        if self._created:
            sync_directory(self.directory)
            self._created = False

    def state(self) -> dict[str, list[int]]:
        """Sizes, rows, CRCs and file sizes as of the last ``sync``."""
        return {"sizes": self.sizes.tolist(), "records": self.records.tolist(), "crcs": list(self.crcs), "disk": list(self.disk)}

    def restore(self, state: dict[str, list[int]], consumed: int, complete: bool) -> None:
        """Return to a (validated) checkpoint: each bucket not yet ``consumed`` by pass 2 that holds
        rows must be as ``restore_bucket`` takes it up, with the CRC-32 it recorded."""
        self.sizes[:] = state["sizes"]
        self.records[:] = state["records"]
        self.crcs[:] = state["crcs"]
        self.disk[:] = state["disk"]
        for j in range(consumed, self.k):
            if restore_bucket(self.path(j), self.disk[j], complete, self.advice, self.crcs[j]):
                self._existing.add(j)
        self._created = True  # a removed file's entry: the directory is synced at the next sync

    def close(self) -> None:
        """Write out and close every bucket file (idempotent); their streams are left unended."""
        problem: OSError | None = None
        for j, tail in enumerate(self._tails):
            if tail is None:
                continue
            self._tails[j] = self._streams[j] = None
            try:
                tail.f.close()
            except OSError as e:
                problem = problem or e
        if problem is not None:
            raise TempSpaceError(f"{quote_name(self.directory)}: cannot write temporary bucket: {problem.strerror}{full_disk_hint(problem)}")

    def drop_after(self, last: int) -> None:
        """Forget buckets past ``last``: ``-n`` will never reach them, nor a checkpoint count them (rows
        scattered to them before may still be on their way: written, never counted, cut off on resume)."""
        super().drop_after(last)
        self._keep = min(self._keep, last + 1)
        for j in range(last + 1, self.k):
            self.crcs[j] = self.disk[j] = 0
