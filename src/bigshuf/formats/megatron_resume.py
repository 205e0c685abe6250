"""``--resume`` for Megatron datasets: the job, its Arrow buckets, and the ``.idx`` of what was written.

A ``.bin`` is written as its documents come, its ``.idx`` only once it is complete, from the
documents' sequence lengths the output keeps. So that a resumed run can write the ``.idx`` of a
``.bin`` it takes up, each output file's documents are logged as they are written (``IndexLogs``:
per chunk, its sequences per document, sequence lengths and modes) in the checkpoint's directory,
and every ``.idx`` is written from its log, read back a chunk at a time (``LogStore``), none of it held in memory. ``index.json`` there holds each log's size and CRC-32 as of the last two
checkpoints of the output, written before ``state.json``: whichever of them ``state.json`` is at
is the one taken up, and the logs read back must account for the checkpoint's documents and for
the ``.bin`` bytes it counts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..core import plan, streams
from ..core.driver import Buckets
from ..core.fingerprint import Fingerprint
from ..core.checkpoint import load_state, refusal, save_state
from ..core.resume import FileCheck, ResumePoint, open_output_temp
from ..core.streams import Key
from ..quoting import quote_name
from ..storage.safefs import open_nofollow
from ..storage.sinks import CodecChoice
from ..storage.tempspace import TempSpace
from .arrow_resume import ResumableTableBuckets
from .megatron import Chunk, IndexedInput, IndexParts, document_fingerprint, put_chunks, read_chunks, read_field, schema
from .resumable import ResumableRun
from .table_run import TableRun

if TYPE_CHECKING:
    from .megatron_run import MegatronOutput

#: The checkpoint's file of the index logs' sizes and CRCs, beside ``state.json``.
INDEX_NAME = "index.json"
#: Version of the index logs' layout.
INDEX_FORMAT = "megatron-index/1"
#: Documents fingerprinted at once when an output file is read back.
READ_BACK = 1 << 16


class IndexLogs:
    """The index log of each output file of one ``--resume`` job, in its checkpoint directory."""

    def __init__(self, directory: str, itemsize: int, modes: bool) -> None:
        self.directory = directory
        self.itemsize = itemsize
        self.modes = modes
        self.fds: list[int] = []  # -1 once the file's .bin is finished
        self.sizes: list[int] = []
        self.checks: list[FileCheck] = []
        self.points: list[dict[str, Any]] = []

    def path(self, i: int) -> str:
        return os.path.join(self.directory, f"index-{i:05d}.log")

    def open(self, i: int, at: ResumePoint | None) -> None:
        """Output file ``i``'s log: created (a leftover of this job removed), or taken up ``at`` a checkpoint."""
        assert i == len(self.fds)
        self.fds.append(open_output_temp(self.path(i), at, self.directory))
        self.sizes.append(0 if at is None else at.size)
        self.checks.append(FileCheck(self.path(i), at))

    def append(self, i: int, chunks: Sequence[Chunk]) -> None:
        """Log a chunk of file ``i``'s documents (``chunks``, as one; run on the writer thread, as their tokens are written)."""
        self.sizes[i] += put_chunks(self.fds[i], chunks)

    def finish(self, i: int) -> None:
        """File ``i``'s ``.idx`` is written: its log takes no more."""
        if self.fds[i] >= 0:
            os.close(self.fds[i])
            self.fds[i] = -1

    def close(self) -> None:
        for i in range(len(self.fds)):
            self.finish(i)

    def checkpoint(self, done: int) -> None:
        """Sync every log up to what has been written (queued writes done) and record it in
        ``index.json`` as the point of an output checkpoint at ``done`` documents, beside the one before."""
        logs = [check.advance(size if fd >= 0 else None) for check, size, fd in zip(self.checks, self.sizes, self.fds)]
        self.points = [p for p in self.points if p["done"] != done][-1:] + [{"done": done, "logs": logs}]
        save_state(self.directory, {"format": INDEX_FORMAT, "points": self.points}, INDEX_NAME)

    def restore(self, restore: dict[str, Any]) -> list[IndexParts]:
        """Take up the logs of output checkpoint ``restore`` (validated by ``core.resume``): each at
        the size and CRC ``index.json`` gives it at that checkpoint, read back a chunk at a time, and
        checked to hold the file's documents and, in their sequence lengths, its ``.bin``'s bytes;
        return each file's parts, kept in its log alone (a finished file's stays open for its ``.idx``)."""
        files, records = restore["files"], restore["records"]
        point = self._point(restore["done"], len(files))
        parts = []
        for i, ((size, crc), (bin_size, _crc), count) in enumerate(zip(point["logs"], files, records)):
            self.open(i, ResumePoint(size, crc, finished=i < len(files) - 1))
            part = IndexParts(self.modes, LogStore(self, i))
            tokens = 0
            for counts, lengths, _kinds in self.read(i):
                part.documents += len(counts)
                part.sequences += len(lengths)
                tokens += int(lengths.sum(dtype=np.int64)) * self.itemsize
            if part.documents != count or tokens != bin_size:
                raise refusal(
                    self.directory,
                    f"{quote_name(self.path(i))} logs {part.documents} documents of {tokens} bytes; output file {i} holds {count} of {bin_size}",
                )
            parts.append(part)
        self.points = [point]
        return parts

    def read(self, i: int) -> Iterator[Chunk]:
        """The chunks log ``i`` holds, each checked as it is read."""
        return read_chunks(self.fds[i], self.sizes[i], self.modes, self._bad(i))

    def read_field(self, i: int, k: int) -> Iterator[np.ndarray]:
        """Array ``k`` of each chunk log ``i`` holds, only its bytes read, checked as far as it tells."""
        return read_field(self.fds[i], self.sizes[i], self.modes, self._bad(i), k)

    def _bad(self, i: int) -> Callable[[str], Exception]:
        """The refusal of log ``i`` for a reason."""
        return lambda why: refusal(self.directory, f"{quote_name(self.path(i))}: {why}")

    def _point(self, done: int, files: int) -> dict[str, Any]:
        """The point of ``index.json`` at the output checkpoint of ``done`` documents, every field checked."""
        doc = load_state(self.directory, INDEX_NAME)
        where = os.path.join(self.directory, INDEX_NAME)
        if doc is None:
            raise refusal(self.directory, f"has no {quote_name(where)}, though it counts {files} output files")
        points = doc.get("points")
        if set(doc) != {"format", "points"} or doc["format"] != INDEX_FORMAT or not isinstance(points, list) or len(points) > 2:
            raise refusal(self.directory, f"{quote_name(where)} is not an index of the output files")
        for point in points:  # both points, the one not taken up too: what is read back is checked
            if (
                not isinstance(point, dict) or set(point) != {"done", "logs"} or type(point["done"]) is not int
                or not 0 <= point["done"] < 2**63 or not isinstance(point["logs"], list)
                or not all(_size_crc(entry) for entry in point["logs"])
            ):
                raise refusal(self.directory, f"{quote_name(where)}: a point is not a count of documents and [size, crc] pairs")
        for point in points:
            if point["done"] != done:
                continue
            if len(point["logs"]) != files:
                raise refusal(self.directory, f"{quote_name(where)}: its point at {done} documents is not {files} [size, crc] pairs")
            found: dict[str, Any] = point
            return found
        raise refusal(self.directory, f"{quote_name(where)} holds no point at the checkpoint's {done} documents")


class LogStore:
    """Where an output file's ``IndexParts`` are put with ``--resume``: its index log, which holds
    every chunk anyway, so that none is held in memory or put in a second file."""

    def __init__(self, logs: IndexLogs, i: int) -> None:
        self.logs = logs
        self.i = i
        self.name = logs.path(i)

    def put(self, chunks: Sequence[Chunk]) -> None:
        self.logs.append(self.i, chunks)

    def field(self, k: int) -> Iterator[np.ndarray]:
        return self.logs.read_field(self.i, k)

    def close(self) -> None:
        self.logs.finish(self.i)


def _size_crc(entry: Any) -> bool:
    """Whether ``entry`` is ``[size, crc]``: a byte count and a CRC-32."""
    return (
        isinstance(entry, list) and len(entry) == 2 and all(type(v) is int for v in entry)
        and 0 <= entry[0] < 2**63 and 0 <= entry[1] < 2**32
    )


def written_fingerprint(path: str, itemsize: int, logs: IndexLogs, i: int) -> Fingerprint:
    """The documents of output temp file ``path`` (a ``.bin``) as its index log (``i`` of ``logs``) cuts them, as
    a fingerprint: a resumed run counts (and sizes) what its files hold, not what its checkpoint says.
    Read a chunk of the log at a time, ``READ_BACK`` documents of it at once."""
    total = Fingerprint()
    fd = open_nofollow(path)
    at = 0  # the .bin's bytes before the chunk
    try:
        for counts, lengths, kinds in logs.read(i):
            seq_starts = np.zeros(len(counts) + 1, np.int64)
            np.cumsum(counts, out=seq_starts[1:])
            byte_starts = np.full(len(lengths) + 1, at, np.int64)
            byte_starts[1:] += np.cumsum(lengths.astype(np.int64) * itemsize)
            for lo in range(0, len(counts), READ_BACK):
                seqs = seq_starts[lo : lo + READ_BACK + 1]
                docs = byte_starts[seqs]
                data = os.pread(fd, int(docs[-1] - docs[0]), int(docs[0]))
                if len(data) != int(docs[-1] - docs[0]):
                    raise refusal(os.path.dirname(path), f"{quote_name(path)} ends before the documents its index log counts")
                n, s0, s1 = len(seqs) - 1, int(seqs[0]), int(seqs[-1])
                offsets = pa.array((seqs - s0).astype(np.int32))
                columns = [
                    pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(docs - docs[0]), pa.py_buffer(data)]),
                    pa.ListArray.from_arrays(offsets, pa.array(lengths[s0:s1])),
                ]
                if kinds is not None:
                    columns.append(pa.ListArray.from_arrays(offsets, pa.array(kinds[s0:s1])))
                total += document_fingerprint(pa.RecordBatch.from_arrays(columns, schema=schema(logs.modes)))
            at = int(byte_starts[-1])
    finally:
        os.close(fd)
    return total


class ResumableMegatron(ResumableRun, TableRun):
    """What a Megatron run does for ``--resume``: its job, the checkpoint's directory around pass 1
    and pass 2, resumable Arrow buckets, and weighted sources' draws replayed; what every format
    shares is ``resumable.ResumableRun``'s."""

    encoded_buckets = True
    token_fingerprints = True
    datasets: list[IndexedInput]
    table_out: MegatronOutput

    def _resume_job(self) -> tuple[str, str]:
        request = self.request
        settings = [self.limit, self.entropy, request.head_count, request.shards, request.compress_temp, request.verify, "megatron"]
        return self._job_names([d.prefix for d in self.datasets], settings)

    def _read_output_back(self, path: str, codec: CodecChoice | None) -> Fingerprint:
        return self.table_out.read_back(path, codec)

    def prepare(self) -> None:
        if self.resume_name is not None:
            self._lock_job()

    def take_up(self, temp: TempSpace) -> None:
        """The external path of a ``--resume`` run (``temp``: the job's checkpoint directory): its checkpoint
        loaded if there is one (before the dedup pass, whose hash buckets it may hold), and its index logs."""
        if self.resume_name is not None:
            self._load_checkpoint(temp, [path for d in self.datasets for path in (d.idx_path, d.bin_path)])
            first = self.datasets[0]
            self.table_out.logs = IndexLogs(temp.path, first.dtype.itemsize, first.modes)

    def make_buckets(self, directory: str, k: int, top: bool) -> Buckets:
        if self.resume_name is None:
            return super().make_buckets(directory, k, top)
        if top and self.stratifier is not None:
            self.strata_bounds = self.stratifier.bucket_bounds(k)
        fresh = not (top and "k" in self.state)
        buckets = ResumableTableBuckets(directory, k, self.table_out.schema, self.request.compress_temp, self.piece, fresh)
        if top:
            self.resume_buckets(buckets)
        return buckets

    def scatter(self, block: Any, key: Key, buckets: Buckets, keep: int, depth: int) -> int:
        # --resume --verify: a block's documents are counted as read when scattered, so that the blocks
        # read again (scattered before the interruption) are not counted twice.
        # (--unique: the table run counts the unique documents as scattered.)
        if depth == 0 and self.resume_name is not None and self.request.verify and len(block) == 2 and not self.request.unique:
            self.read_fingerprint += document_fingerprint(block[0])
        return super().scatter(block, key, buckets, keep, depth)

    def replay(self, block: Any, key: Key) -> None:
        """A block of weighted sources scattered before the interruption: its copies (and splits) drawn again."""
        if len(block) == 3:
            mult = self._copies(streams.selection(key), block[2])
            if self.stratifier is not None:
                self._split_labels(streams.stratify(key), block[2], mult)

    def rereads_inputs(self) -> bool:
        # Weighted sources' draws run on from batch to batch, and are checked complete; --unique's
        # batches come from the hash buckets, read again for the copies they drop.
        return self.mixer is not None or self.request.unique

    def checkpoint_due(self, nbytes: int) -> bool:
        # Batches are pieces of a few MiB: a checkpoint (a sync of every bucket written) per half a read buffer.
        return nbytes >= plan.read_capacity(self.limit) // 2
