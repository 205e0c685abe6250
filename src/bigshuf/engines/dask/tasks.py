"""The Dask engine's two task kinds, written once for every record format.

Pass 1 (``scatter_task``) scatters one part of one input into k buckets, one object per
block holding every bucket's part, bucket after bucket. Pass 2 (``gather_task``) loads the
buckets one output object overlaps, permutes each with its named stream, splits again one
that does not fit in -S, and writes its slice. What depends on the records (reading blocks,
scattering a block, decoding a bucket, permuting it, writing an output) is a ``TaskFormat``.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ...core import plan, streams
from ...core.fingerprint import Fingerprint
from ...core.gather import permutation
from ...core.level import Level, Slice, fits, sublevel_buckets
from ...core.streams import Key, rng_for
from ...errors import InputError, OutputError, TempSpaceError
from ...quoting import quote_name
from ...storage import remote
from ...storage.sinks import CodecChoice

#: Most input bytes one pass-1 task reads (a task reads -S/4 below that). Smaller tasks retry
#: and balance better, but pass 2 reads one byte range per pass-1 object and bucket: M x k
#: requests, with M = T/range and k about 3T/S for T bytes of input. At 10 TB with -S 8G that
#: is 9,300 objects and 3,600 buckets, 34M reads of ~300 KB; a 256 MiB cap would make them
#: 134M reads of 75 KB.
MAX_RANGE = 1 << 30

#: Bytes of temporary objects fetched at once by a pass-2 task while it loads a bucket.
FETCH_BYTES = 16 << 20


def range_bytes(limit: int) -> int:
    """Input bytes per pass-1 task: a quarter of the record budget (the task holds the range and
    its scattered copy), at most MAX_RANGE."""
    return max(64, min(MAX_RANGE, plan.block_budget(limit) // 4))


def bucket_count(need: float, limit: int, shards: int | None) -> int:
    """Buckets so that the expected bucket (``need`` bytes with bookkeeping in all) needs a third
    of a task's record budget, as the local engine plans, and at least one per shard so a shard
    task loads about two buckets."""
    return max(plan.buckets_needed(need, limit), shards or 1)


@dataclass(frozen=True)
class ScatterTask:
    """Pass 1 for one part of one input: bytes ``[start, end)`` of a plain line file, a whole
    compressed one, or row groups (record batches) ``[start, end)`` of a table of ``kind``."""

    source: str
    size: int
    codec: str | None
    file_index: int
    range_index: int
    start: int
    end: int
    object_prefix: str
    nbytes: int  # input bytes it reads, for progress
    kind: str | None = None
    shown: str | None = None  # the input's name in messages, as given (None: ``source``)

    def named(self) -> str:
        """The input's name as messages show it: as the user gave it, quoted."""
        return quote_name(self.shown or self.source)


@dataclass
class Segment:
    """One pass-1 object: bucket ``j`` is bytes ``[bounds[j], bounds[j+1])``, ``counts[j]`` records."""

    name: str
    bounds: np.ndarray
    counts: np.ndarray


@dataclass
class ScatterResult:
    """What a pass-1 task wrote, with the fingerprint of the records it read (``--verify``)."""

    segments: list[Segment]
    read: Fingerprint
    #: Each block's records and bytes as read, where the segments do not tell them (weighted
    #: sources: they hold the records' copies; tar samples: they hold each sample's length too).
    counted: list[tuple[int, int]] | None = None
    #: What the format's client-side check across tasks needs (``TaskFormat.check_scattered``).
    summary: Any = None


@dataclass(frozen=True)
class Copies:
    """Weighted sources: the copies of each record of a block in the multiset (``mult``), and with
    ``--stratify`` the splits' bucket bounds and each copy's split, in the copies' order (``strata``)."""

    mult: np.ndarray
    strata: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class Piece:
    """Records ``[first, stop)`` of bucket ``bucket``'s permutation, and where its bytes lie."""

    bucket: int
    size: int
    count: int
    parts: tuple[tuple[str, int, int], ...]
    first: int
    stop: int


@dataclass(frozen=True)
class GatherTask:
    """Pass 2 for one output object: the pieces of buckets it holds, in output order."""

    target: str
    codec: CodecChoice | None
    pieces: tuple[Piece, ...]
    scratch: str  # where buckets too big for -S are scattered again
    offset: int | None = None  # write at this byte of the existing local file ``target``
    #: The output file ``target`` becomes, as messages name it (a write that fails names it), if it is one.
    shown: str | None = None


@dataclass
class GatherResult:
    """Records and bytes a pass-2 task wrote, with their fingerprint (``--verify``)."""

    records: int = 0
    bytes: int = 0
    written: Fingerprint = field(default_factory=Fingerprint)
    depth: int = 0  # deepest re-split of a bucket too big for -S
    #: The bytes of a file that goes beside the output, made by its writer (a Megatron ``.idx``); None for most formats.
    companion: list[builtins.bytes] | None = None


class Writable(Protocol):
    """Where an output's bytes go: an object being written whole, or a local file at an offset."""

    def write(self, data: Any, /) -> Any:
        """Write all of ``data``."""


class RecordWriter(Protocol):
    """One output object being written in a format's framing."""

    def write(self, records: Any) -> int:
        """Write a chunk of records; return the bytes it added."""

    def close(self) -> int:
        """Write what ends the output (a footer); return the bytes it added."""


class TaskFormat(Protocol):
    """The record-specific steps of both passes: lines, Arrow rows, tar samples or Megatron documents."""

    #: Whether an output is one file that cannot be cut into concatenated parts (a Parquet footer).
    whole_output: bool
    #: What the format calls a record, for the run's summary.
    unit: str
    #: What a record is called in the manifest's ``kind``: ``lines``, ``rows``, ``samples`` or ``documents``.
    records_kind: str
    #: Whether the manifest lists each input's bytes beside its records, as the local engine counts
    #: them (lines, tar samples, Megatron documents' tokens); rows have no byte form.
    input_bytes: bool

    def format_entry(self) -> dict[str, Any]:
        """The manifest's ``format`` entry."""

    def finish(self, result: ScatterResult, last: Any) -> None:
        """Add to a pass-1 task's ``result`` what its ``last`` block tells beyond the objects (tars:
        the samples and bytes read, and the keys the client checks across inputs)."""

    def check_scattered(self, tasks: Sequence[ScatterTask], results: Sequence[ScatterResult]) -> None:
        """On the client, after pass 1: refuse what no one task could see (tars: a sample that continues
        into the next tar, a key in two tars)."""

    def check_unique(self) -> None:
        """``--unique``: refuse, before anything is read, records it cannot compare (rows of a type
        with no equality)."""

    def blocks(self, task: ScatterTask, cfg: Config) -> Iterator[Any]:
        """Pass 1: the task's records, a block at a time (``len(block)`` records)."""

    def scatter(
        self, block: Any, rng: np.random.Generator, k: int, cfg: Config, name: str, copies: Copies | None = None,
    ) -> tuple[Segment, Fingerprint]:
        """Draw a bucket for each record of ``block`` (each of its ``copies``), write the object
        ``name`` bucket after bucket; return its index and the records' fingerprint (``--verify``)."""

    def count(self, block: Any) -> tuple[int, int]:
        """Records of ``block`` and their bytes, as the local engine's counting pass counts them."""

    def hash_scatter(self, block: Any, level: int, k: int, cfg: Config, name: str) -> tuple[Segment, int]:
        """``--unique``: drop the copies within each run of ``block`` and write the rest as the object
        ``name``, by their hash buckets of ``level`` (``core.dedup.bucket_ids``); return its index and
        how many copies were dropped."""

    def dedup(self, block: Any, count: int, name: str) -> tuple[Any, np.ndarray]:
        """``--unique``: the first copy of each record of a hash bucket read back (``count`` records),
        in their order, and their indices, ascending, among the ``count``."""

    def write_groups(self, block: Any, ids: np.ndarray, k: int, name: str) -> tuple[Segment, np.ndarray]:
        """Write the records of ``block`` grouped by ``ids`` as the object ``name`` (group ``j`` as bucket
        ``j``, in order); return its index and each group's bytes as ``count`` counts them."""

    def sizes(self, records: Any) -> np.ndarray:
        """Each emitted record's bytes as ``--shard-size`` counts them (the local engine's output does)."""

    def chunks(self, block: Any, parts: int) -> list[tuple[Any, int]]:
        """``block`` cut at record ends into about ``parts`` chunks of like size, each with its records."""

    def decode(self, data: np.ndarray, sizes: Sequence[int]) -> Any:
        """A bucket's bytes read back (parts of ``sizes`` bytes, concatenated) as a block."""

    def permute(self, block: Any, count: int, order: np.ndarray, size: int, cfg: Config, emit: Callable[[Any], None], name: str) -> None:
        """Check that ``block`` holds ``count`` records, then ``emit`` records ``order`` of it in chunks."""

    def open_output(self, f: Writable, codec: CodecChoice | None) -> RecordWriter:
        """A writer of records into ``f`` (compressed with ``codec``)."""

    def fingerprint(self, records: Any) -> Fingerprint:
        """The fingerprint of emitted records (``--verify``)."""


@dataclass(frozen=True)
class Config:
    """What every task of one run needs to know."""

    entropy: int
    fmt: TaskFormat
    limit: int
    k: int
    verify: bool
    manifest: bool = False  # pass 2 fingerprints each output file for ``--manifest``
    unique: bool = False  # ``--unique``: pass 1 reads blocks for the dedup stage


#: What runs tasks for the client: ``run_tasks(fn, cfg, tasks, sizes)`` runs ``fn(cfg, task)`` for
#: each task on the cluster (``sizes``: its bytes, for progress) and returns the results in order.
RunTasks = Callable[[Callable[[Config, Any], Any], Config, Sequence[Any], Sequence[int]], list[Any]]


# ---------------------------------------------------------------------------------------------
# Pass 1


def scatter_task(cfg: Config, task: ScatterTask) -> ScatterResult:
    """Pass 1 for one task: scatter its records into k buckets, one object per block, and
    return the objects' indexes."""
    segments: list[Segment] = []
    read = Fingerprint()
    block = None
    for b, block in enumerate(cfg.fmt.blocks(task, cfg)):
        if len(block):
            rng = rng_for(cfg.entropy, streams.scatter(streams.TOP, task.file_index, task.range_index, b))
            segment, fp = cfg.fmt.scatter(block, rng, cfg.k, cfg, f"{task.object_prefix}-{b:06d}")
            segments.append(segment)
            read += fp
    result = ScatterResult(segments, read)
    cfg.fmt.finish(result, block)
    return result


# ---------------------------------------------------------------------------------------------
# Pass 2


class Index:
    """M pass-1 objects' buckets: record counts (M x k) and byte bounds (M x k+1), and the level of
    the scatter they make together (``core.level.Level``: a bucket of one record is loaded alone)."""

    def __init__(self, segments: Sequence[Segment], k: int, limit: int) -> None:
        self.segments = segments
        self.counts = np.array([s.counts for s in segments], np.int64).reshape(len(segments), k)
        self.bounds = np.array([s.bounds for s in segments], np.int64).reshape(len(segments), k + 1)
        self.level = Level(self.counts.sum(axis=0), np.diff(self.bounds, axis=1).sum(axis=0), limit, alone=True)
        self._parts: dict[int, tuple[tuple[str, int, int], ...]] = {}

    def holding(self, j: int) -> list[int]:
        """The objects holding records of bucket ``j``, in order."""
        return [int(t) for t in np.flatnonzero(self.counts[:, j])]

    def parts(self, j: int) -> tuple[tuple[str, int, int], ...]:
        """Where bucket ``j`` lies: ``(object, lo, hi)`` in each object holding some of it, in order."""
        if j not in self._parts:
            self._parts[j] = tuple((self.segments[t].name, int(self.bounds[t, j]), int(self.bounds[t, j + 1])) for t in self.holding(j))
        return self._parts[j]

    def piece(self, s: Slice) -> Piece:
        """The slice ``s`` of a bucket's permutation, with the bucket's bytes, records and parts."""
        level = self.level
        return Piece(s.bucket, int(level.sizes[s.bucket]), int(level.counts[s.bucket]), self.parts(s.bucket), s.first, s.stop)


def load(where: Sequence[tuple[str, int, int]], size: int) -> np.ndarray:
    """The bytes of ``where`` concatenated (``size`` in all): read straight into place from
    local files, fetched a batch of requests at a time from other stores."""
    buf = np.empty(size, np.uint8)
    pos = 0
    local = bool(where) and not remote.is_url(where[0][0])
    batch: list[tuple[str, int, int]] = []
    batch_bytes = 0
    for i, (name, lo, hi) in enumerate(where):
        if pos + hi - lo > size:
            raise TempSpaceError(f"{quote_name(name)}: temporary object holds more than was written")
        if local:
            try:
                remote.read_exactly(name, lo, buf[pos : pos + hi - lo].data)
            except InputError as e:
                raise TempSpaceError(f"temporary data unreadable: {e}") from None
            pos += hi - lo
            continue
        batch.append((name, lo, hi))
        batch_bytes += hi - lo
        if batch_bytes >= FETCH_BYTES or i == len(where) - 1:
            for (got_name, got_lo, got_hi), blob in zip(batch, remote.read_ranges(batch)):
                if len(blob) != got_hi - got_lo:
                    raise TempSpaceError(f"{quote_name(got_name)}: temporary object is shorter than written")
                buf[pos : pos + len(blob)] = np.frombuffer(blob, np.uint8)
                pos += len(blob)
            batch, batch_bytes = [], 0
    if pos != size:
        raise TempSpaceError(f"temporary data: {pos} bytes read back, {size} written")
    return buf


def _emit_bucket(
    cfg: Config, key: Key, where: Sequence[tuple[str, int, int]], size: int, count: int,
    span: tuple[int, int], emit: Callable[[Any], None], scratch: str, depth: int = 0,
) -> int:
    """Emit records ``span`` of the uniform permutation of one bucket, whose streams ``key`` names.

    Every task sharing a bucket draws the same whole permutation, so their slices tile it. A
    bucket too big for -S is scattered again into sub-buckets (objects under ``scratch``), one
    level deeper, exactly as the local engine recurses: still a uniform permutation.
    Returns the depth reached.
    """
    name = "bucket " + "-".join(map(str, key[1:]))
    # One record cannot be split further: it is loaded alone (a line always fits; a row of
    # Arrow data may not, with its IPC framing).
    if fits(size, count, cfg.limit, alone=True):
        block = cfg.fmt.decode(load(where, size), [hi - lo for _, lo, hi in where])
        order = permutation(count, rng_for(cfg.entropy, key))[span[0] : span[1]]
        cfg.fmt.permute(block, count, order, size, cfg, emit, name)
        return depth
    k = sublevel_buckets(depth + 1, size, count, cfg.limit, cfg.fmt.unit, open_files=False)
    here = remote.join(scratch, "-".join(map(str, key)))
    segments = []
    for t, part in enumerate(where):
        block = cfg.fmt.decode(load([part], part[2] - part[1]), [part[2] - part[1]])
        rng = rng_for(cfg.entropy, streams.scatter(key, t))
        segments.append(cfg.fmt.scatter(block, rng, k, cfg, remote.join(here, f"{t:06d}"))[0])
        del block
    below = Index(segments, k, cfg.limit)
    deepest = depth + 1
    for piece in map(below.piece, below.level.slices(*span)):
        deepest = max(deepest, _emit_bucket(
            cfg, streams.bucket(key, piece.bucket), piece.parts, piece.size, piece.count, (piece.first, piece.stop), emit, scratch,
            depth + 1,
        ))
    return deepest


def gather_task(cfg: Config, task: GatherTask) -> GatherResult:
    """Pass 2 for one output object: permute each bucket it overlaps and write its slice."""
    result = GatherResult()

    def run(f: Writable) -> None:
        out = cfg.fmt.open_output(f if task.shown is None else _Named(f, task.shown), task.codec)

        def emit(records: Any) -> None:
            result.bytes += out.write(records)
            result.records += len(records)
            if cfg.verify or cfg.manifest:
                result.written += cfg.fmt.fingerprint(records)

        for piece in task.pieces:
            span = (piece.first, piece.stop)
            depth = _emit_bucket(cfg, streams.bucket(streams.TOP, piece.bucket), piece.parts, piece.size, piece.count, span, emit, task.scratch)
            result.depth = max(result.depth, depth)
        result.bytes += out.close()
        result.companion = getattr(out, "companion", None)  # a writer of pairs keeps one; others have none

    try:
        if task.offset is None:
            remote.write_whole(task.target, run)
        else:
            _write_at(task.target, task.offset, run)
    except OSError as e:  # the output's closing write (a scratch object's are named by theirs)
        if task.shown is None or e.errno not in remote.WRITE_ERRORS or e.filename not in (None, task.target):
            raise
        raise write_error(task.shown, e) from None
    return result


def write_error(shown: str, e: OSError) -> OutputError:
    """A failed write of the output file ``shown`` (as messages name it), as the local engine says it."""
    return OutputError(f"{quote_name(shown)}: write error: {e.strerror}")


class _Named:
    """An output file's writes, a failed one (a full disk) an ``OutputError`` naming the file as the
    local engine does: its writers named standard output, or nothing (``task failed: ...``)."""

    def __init__(self, out: Writable, shown: str) -> None:
        self.out = out
        self.shown = shown

    def write(self, data: Any) -> Any:
        """Write all of ``data``."""
        try:
            return self.out.write(data)
        except OSError as e:
            if e.errno not in remote.WRITE_ERRORS:
                raise
            raise write_error(self.shown, e) from None


class _FileAt:
    """A local file written from byte ``pos`` on (``pwrite``): a retried task writes the same
    bytes to the same place."""

    def __init__(self, fd: int, pos: int) -> None:
        self.fd = fd
        self.pos = pos

    def write(self, data: Any) -> int:
        """Write all of ``data`` at the current place."""
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            n = os.pwrite(self.fd, view, self.pos)
            self.pos += n
            view = view[n:]
        return size


def _write_at(path: str, offset: int, run: Callable[[Writable], None]) -> None:
    """Let ``run`` write into the local file ``path`` from byte ``offset`` on."""
    fd = os.open(path, os.O_WRONLY)
    try:
        run(_FileAt(fd, offset))
    finally:
        os.close(fd)


def write_stream(f: Writable, codec: CodecChoice | None) -> tuple[Writable, Callable[[], None]]:
    """``f``, or a compressing stream into it for ``codec``, with what ends that stream."""
    if codec is None:
        return f, lambda: None
    from ...storage.codecs import open_writer

    stream = open_writer(f, codec[0], codec[1])  # type: ignore[arg-type]
    return stream, stream.close

