"""The Dask engine: the local engine's exact two-pass scatter, run as Dask tasks over fsspec URLs.

Pass 1 is one task per input byte range (a range owns the records that start inside it;
a compressed input is one task of several blocks): it draws every record's bucket with the
stream ``rng_for(entropy, streams.scatter(TOP, file, range, block))`` and writes one temporary object holding
its part of every bucket, bucket after bucket; it returns that object's index (byte bounds
and record counts per bucket). Pass 2 is one task per output shard (or per bucket for a
single output file): it loads the buckets it overlaps from every pass-1 object, permutes
each with ``rng_for(entropy, streams.bucket(TOP, bucket))`` and writes its slice of the concatenated
permutation; a bucket too big for -S is scattered again inside the task. Streams are keyed by
position, objects are written whole under fixed names, so any worker count gives the same
output and a retried task rewrites the same bytes.

Dask and fsspec are imported only here and in ``remote``: the local engine needs neither.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol, TypeVar

import numpy as np

from ..core import plan

from ..storage import remote
from ..api import ShuffleStats, resolve_memory
from ..core import streams
from ..core.streams import rng_for, seed_entropy
from ..storage.codecs import open_writer, parse_compress
from ..errors import BigShufError, InputError, OutputError, TempSpaceError, UsageError, option
from ..core.fingerprint import Fingerprint, fingerprint
from ..core.gather import emit_in_order, permutation
from ..progress import Progress, scatter_phase, shuffle_phase
from ..core.records import RecordFormat, array_block, array_bytes, as_binary_array, find_offsets
from ..core.scatter import Scattered, iter_pieces, scatter_piece
from ..storage.commit import OutputFiles
from ..storage.safefs import open_nofollow, sync_file
from ..storage.shards import check_output_directory, shard_names, shard_paths
from ..storage.sinks import AtomicFileSink, CodecChoice, Sink, open_output, output_codec
from ..storage.sources import RecordReader

#: ``-S`` of the Dask engine when none is given: the memory one task may use. A fixed
#: default (not a share of this machine's RAM) keeps the plan, and so a seeded output,
#: the same whichever machine submits the job.
DEFAULT_MEMORY = "1G"

#: Most input bytes one pass-1 task reads (a task reads -S/4 below that). Smaller tasks retry
#: and balance better, but pass 2 reads one byte range per pass-1 object and bucket: M x k
#: requests, with M = T/range and k about 3T/S for T bytes of input. At 10 TB with -S 8G that
#: is 9,300 objects and 3,600 buckets, 34M reads of ~300 KB; a 256 MiB cap would make them
#: 134M reads of 75 KB.
MAX_RANGE = 1 << 30

#: First step of the read past a range's end that completes its last record; it doubles.
TAIL_STEP = 64 << 10

#: Bytes of temporary objects fetched at once by a pass-2 task while it loads a bucket.
FETCH_BYTES = 16 << 20

T = TypeVar("T")


class Runner(Protocol):
    """What runs the tasks: a ``distributed.Client`` or, for tests, a ``concurrent.futures`` executor."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """Start ``fn(*args)``; the returned future's ``result()`` gives its value."""


@dataclass(frozen=True)
class Config:
    """What every task of one run needs to know."""

    entropy: int
    fmt: RecordFormat
    limit: int
    k: int
    verify: bool


@dataclass(frozen=True)
class ScatterTask:
    """Pass 1 for one byte range ``[start, end)`` of a plain input, or for a whole compressed one."""

    source: str
    size: int
    codec: str | None
    file_index: int
    range_index: int
    start: int
    end: int
    object_prefix: str


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
    disk_bytes: int


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


@dataclass
class GatherResult:
    """Records and bytes a pass-2 task wrote, with their fingerprint (``--verify``)."""

    records: int = 0
    bytes: int = 0
    written: Fingerprint = field(default_factory=Fingerprint)
    depth: int = 0  # deepest re-split of a bucket too big for -S


def range_bytes(limit: int) -> int:
    """Input bytes per pass-1 task: a quarter of the record budget (the task holds the range and
    its scattered copy), at most MAX_RANGE."""
    return max(64, min(MAX_RANGE, plan.block_budget(limit) // 4))


# ---------------------------------------------------------------------------------------------
# Pass 1


def _owned_records(task: ScatterTask, sep: int, limit: int) -> np.ndarray:
    """The records that start inside ``[start, end)`` of a plain input, the last one completed by
    reading past ``end``; the file's final record gets its missing separator."""
    lo = max(0, task.start - 1)
    filled = task.end - lo
    buf = np.empty(filled + TAIL_STEP + 1, np.uint8)
    remote.read_exactly(task.source, lo, buf[:filled].data)
    first = 0
    if task.start > 0:
        # A record starts just after the first separator at task.start-1 .. task.end-2,
        # searched in growing windows (scanning whole ranges took 0.9 s of a 9.5 s profile of 1 GiB).
        lo_win, width = 0, 1 << 16
        while True:
            window = buf[lo_win : min(lo_win + width, filled - 1)]
            hits = np.flatnonzero(window == sep)
            if len(hits):
                first = lo_win + int(hits[0]) + 1
                break
            lo_win += len(window)
            if lo_win >= filled - 1:
                return buf[:0]
            width *= 4
    pos, step = task.end, TAIL_STEP
    while buf[filled - 1] != sep:
        if pos >= task.size:
            buf[filled] = sep  # the file's last record lacks its separator
            filled += 1
            break
        # The last record runs on past the range; that part alone may take read_capacity bytes.
        room = plan.read_capacity(limit) - (filled - (task.end - lo))
        if room <= 0:
            raise InputError(
                f"{task.source}: a record is longer than {plan.read_capacity(limit)} bytes, the most this "
                f"memory limit allows; raise {option('memory')}"
            )
        want = min(step, task.size - pos, room)
        if filled + want + 1 > len(buf):
            grown = np.empty(filled + 2 * want + 1, np.uint8)
            grown[:filled] = buf[:filled]
            buf = grown
        remote.read_exactly(task.source, pos, buf[filled : filled + want].data)
        hits = np.flatnonzero(buf[filled : filled + want] == sep)
        filled += int(hits[0]) + 1 if len(hits) else want
        pos += want
        step *= 2
    return buf[first:filled]


def _blocks(task: ScatterTask, cfg: Config) -> Iterator[np.ndarray]:
    """The blocks of whole records a pass-1 task scatters: its range, or a compressed file's blocks."""
    if task.codec is None:
        yield _owned_records(task, cfg.fmt.sep, cfg.limit)
        return
    reader = RecordReader([_UrlSource(task.source)], cfg.fmt, Progress())
    for block, _final in reader.blocks(range_bytes(cfg.limit), option("memory")):
        yield block


class _UrlSource:
    """A compressed input as ``RecordReader`` reads it: sniffed and decompressed as a stream."""

    def __init__(self, name: str) -> None:
        self.name = name

    def size(self) -> int | None:
        """Unknown until decompressed."""
        return None

    def open(self) -> BinaryIO:
        """The decompressed stream."""
        from ..storage.decoding import decompressing

        return decompressing(remote.open_input(self.name), self.name)


def _scatter_block(block: np.ndarray, rng: np.random.Generator, k: int, cfg: Config, name: str) -> tuple[Segment, Fingerprint]:
    """Scatter a block of whole records into ``k`` buckets and write them as the object ``name``,
    bucket after bucket; return its index and the fingerprint of the records (``--verify``)."""
    read = Fingerprint()
    parts: list[Scattered] = []
    for piece, offsets in iter_pieces(block, cfg.fmt, plan.piece_bytes(cfg.limit), plan.piece_records(cfg.limit)):
        if cfg.verify:
            read += fingerprint(piece, offsets)
        parts.append(scatter_piece(piece, offsets, rng, k, k))
    counts = np.array([p.counts for p in parts], np.int64).sum(axis=0)
    sizes = np.array([np.diff(p.byte_bounds) for p in parts], np.int64).sum(axis=0)
    bounds = np.zeros(k + 1, np.int64)
    np.cumsum(sizes, out=bounds[1:])

    def write(f: BinaryIO) -> None:
        # Bucket-major: one contiguous byte range per bucket for pass 2 to fetch.
        for j in np.flatnonzero(sizes).tolist():
            for p in parts:
                lo, hi = int(p.byte_bounds[j]), int(p.byte_bounds[j + 1])
                if hi > lo:
                    f.write(p.data[lo:hi])

    remote.write_whole(name, write)
    return Segment(name, bounds, counts), read


def scatter_task(cfg: Config, task: ScatterTask) -> ScatterResult:
    """Pass 1 for one task: scatter its records into k buckets, one object per block, and
    return the objects' indexes."""
    segments: list[Segment] = []
    read = Fingerprint()
    for b, block in enumerate(_blocks(task, cfg)):
        if len(block):
            rng = rng_for(cfg.entropy, streams.scatter(streams.TOP, task.file_index, task.range_index, b))
            segment, fp = _scatter_block(block, rng, cfg.k, cfg, f"{task.object_prefix}-{b:06d}")
            segments.append(segment)
            read += fp
    return ScatterResult(segments, read, task.end - task.start)


# ---------------------------------------------------------------------------------------------
# Pass 2


def _index(segments: Sequence[Segment], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Record counts (M x k) and byte bounds (M x k+1) of M objects' buckets."""
    counts = np.array([s.counts for s in segments], np.int64).reshape(len(segments), k)
    bounds = np.array([s.bounds for s in segments], np.int64).reshape(len(segments), k + 1)
    return counts, bounds


def _parts(segments: Sequence[Segment], counts: np.ndarray, bounds: np.ndarray, j: int) -> tuple[tuple[str, int, int], ...]:
    """Where bucket ``j`` lies: ``(object, lo, hi)`` in each object holding some of it, in order."""
    return tuple(
        (segments[t].name, int(bounds[t, j]), int(bounds[t, j + 1])) for t in np.flatnonzero(counts[:, j]).tolist()
    )


def _load(parts: Sequence[tuple[str, int, int]], size: int) -> np.ndarray:
    """The bytes of ``parts`` concatenated (``size`` in all): read straight into place from
    local files, fetched a batch of requests at a time from other stores."""
    buf = np.empty(size, np.uint8)
    pos = 0
    local = bool(parts) and not remote.is_url(parts[0][0])
    batch: list[tuple[str, int, int]] = []
    batch_bytes = 0
    for i, (name, lo, hi) in enumerate(parts):
        if pos + hi - lo > size:
            raise TempSpaceError(f"{name}: temporary object holds more than was written")
        if local:
            try:
                remote.read_exactly(name, lo, buf[pos : pos + hi - lo].data)
            except InputError as e:
                raise TempSpaceError(f"temporary data unreadable: {e}") from None
            pos += hi - lo
            continue
        batch.append((name, lo, hi))
        batch_bytes += hi - lo
        if batch_bytes >= FETCH_BYTES or i == len(parts) - 1:
            for (got_name, got_lo, got_hi), blob in zip(batch, remote.read_ranges(batch)):
                if len(blob) != got_hi - got_lo:
                    raise TempSpaceError(f"{got_name}: temporary object is shorter than written")
                buf[pos : pos + len(blob)] = np.frombuffer(blob, np.uint8)
                pos += len(blob)
            batch, batch_bytes = [], 0
    if pos != size:
        raise TempSpaceError(f"temporary data: {pos} bytes read back, {size} written")
    return buf


def _records(block: np.ndarray, count: int, fmt: RecordFormat, name: str) -> np.ndarray:
    """Offsets of the ``count`` records of a bucket read back, checked."""
    offsets = find_offsets(block, fmt)
    if len(offsets) - 1 != count or int(offsets[-1]) != len(block):
        raise TempSpaceError(f"{name}: {len(offsets) - 1} records read back, {count} written")
    return offsets


def _emit_bucket(
    cfg: Config, key: tuple[int, ...], parts: Sequence[tuple[str, int, int]], size: int, count: int,
    span: tuple[int, int], emit: Callable[[Any], None], scratch: str, depth: int = 0,
) -> int:
    """Emit records ``span`` of the uniform permutation of one bucket, whose streams ``key`` names.

    Every task sharing a bucket draws the same whole permutation, so their slices tile it. A
    bucket too big for -S is scattered again into sub-buckets (objects under ``scratch``), one
    level deeper, exactly as the local engine recurses: still a uniform permutation.
    Returns the depth reached.
    """
    name = "bucket " + "-".join(map(str, key[1:]))
    if plan.fits_in_memory(size, count, cfg.limit):
        block = _load(parts, size)
        offsets = _records(block, count, cfg.fmt, name)
        order = permutation(count, rng_for(cfg.entropy, key))[span[0] : span[1]]
        per_chunk = max(1, int(plan.piece_bytes(cfg.limit) * count / max(1, size)))
        emit_in_order(as_binary_array(block, offsets), order, emit, per_chunk)
        return depth
    if depth >= plan.MAX_DEPTH:
        raise InputError(f"records could not be split below {plan.format_size(cfg.limit)} after {depth} passes; raise {option('memory')}")
    target = max(1, plan.block_budget(cfg.limit) // plan.BUCKET_FRACTION)
    k = max(2, math.ceil((size + plan.META_PER_RECORD * count) / target))
    here = remote.join(scratch, "-".join(map(str, key)))
    segments = []
    for t, part in enumerate(parts):
        block = _load([part], part[2] - part[1])
        rng = rng_for(cfg.entropy, streams.scatter(key, t))
        segments.append(_scatter_block(block, rng, k, cfg, remote.join(here, f"{t:06d}"))[0])
        del block
    counts, bounds = _index(segments, k)
    sub_counts = counts.sum(axis=0)
    sub_sizes = np.diff(bounds, axis=1).sum(axis=0)
    starts = np.zeros(k + 1, np.int64)
    np.cumsum(sub_counts, out=starts[1:])
    deepest = depth + 1
    for s in range(k):
        lo, hi = max(span[0], int(starts[s])), min(span[1], int(starts[s + 1]))
        if hi > lo:
            deepest = max(deepest, _emit_bucket(
                cfg, streams.bucket(key, s), _parts(segments, counts, bounds, s), int(sub_sizes[s]), int(sub_counts[s]),
                (lo - int(starts[s]), hi - int(starts[s])), emit, scratch, depth + 1,
            ))
    return deepest


def gather_task(cfg: Config, task: GatherTask) -> GatherResult:
    """Pass 2 for one output object: permute each bucket it overlaps and write its slice."""
    result = GatherResult()

    def run(write: Callable[[memoryview], Any]) -> None:
        def emit(records: Any) -> None:
            data = array_bytes(records)
            write(data)
            result.bytes += len(data)
            result.records += len(records)
            if cfg.verify:
                result.written += fingerprint(*array_block(records))

        for piece in task.pieces:
            span = (piece.first, piece.stop)
            depth = _emit_bucket(cfg, streams.bucket(streams.TOP, piece.bucket), piece.parts, piece.size, piece.count, span, emit, task.scratch)
            result.depth = max(result.depth, depth)

    def whole(f: BinaryIO) -> None:
        out: BinaryIO = f if task.codec is None else open_writer(f, task.codec[0], task.codec[1])
        run(out.write)
        if out is not f:
            out.close()

    if task.offset is None:
        remote.write_whole(task.target, whole)
    else:
        _write_at(task.target, task.offset, run)
    return result


def _write_at(path: str, offset: int, run: Callable[[Callable[[memoryview], Any]], None]) -> None:
    """Let ``run`` write into the local file ``path`` from byte ``offset`` on (``pwrite``): a
    retried task writes the same bytes to the same place."""
    fd = os.open(path, os.O_WRONLY)
    pos = offset

    def write(data: memoryview) -> None:
        nonlocal pos
        view = memoryview(data).cast("B")
        while view:
            n = os.pwrite(fd, view, pos)
            pos += n
            view = view[n:]

    try:
        run(write)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# The client side: plan, submit, check, put in place


@dataclass
class _Output:
    """Where pass 2 writes and what the commit does: shard files renamed into place, or parts
    concatenated into one file (or standard output)."""

    target: str | None
    shards: int | None
    codec: CodecChoice | None  # of a single output's parts
    finals: list[str] = field(default_factory=list)
    codecs: list[CodecChoice | None] = field(default_factory=list)  # of each shard
    temps: list[str] = field(default_factory=list)
    marker: str | None = None
    files: OutputFiles | None = None  # local shards: the run's locks and the journalled commit


def _shard_names(target: str, shards: int, compress: CodecChoice | None) -> list[str]:
    """The shard files of ``-o`` as URLs or local paths (a URL ending in ``/`` is a directory)."""
    if not remote.is_url(target):
        return [os.path.abspath(p) for p in shard_paths(target, shards, compress)]
    return shard_names(
        target, shards, compress, target.endswith("/"), example="s3://bucket/out/part-{:05d}.jsonl",
        directory_words="a directory (a URL ending in /)",
    )


def _plan_output(output: str | None, shards: int | None, compress: CodecChoice | None, root: str, sync: bool) -> _Output:
    """Name the pass-2 objects: shard temps beside local targets (a rename puts them in place),
    under the temp URL for remote ones; parts of a single output under the temp URL."""
    target = None if output in (None, "-") else output
    if shards is None:
        if target is not None and not remote.is_url(target):
            check_output_directory(target, None)
        codec = output_codec(target, compress) if target is not None else output_codec(None, compress)
        return _Output(target, None, codec)
    if target is None:
        raise UsageError(
            f"{option('shards')} needs {option('output')} naming a directory or a pattern like out/part-{{:05d}}.jsonl"
        )
    if not remote.is_url(target):
        check_output_directory(target, shards, compress)  # up front: writable, no two shards on one file
    out = _Output(target, shards, None, finals=_shard_names(target, shards, compress))
    out.codecs = [output_codec(final, compress) for final in out.finals]
    if remote.is_url(target):
        out.temps = [remote.join(root, "out", f"{i:05d}") for i in range(shards)]
    else:
        # Named and locked as the local engine's shards are, so the same commit and cleanup apply.
        out.files = OutputFiles(sync)
        out.temps = [out.files.temp_name(final, i) for i, final in enumerate(out.finals)]
    if remote.is_url(target) and target.endswith("/"):
        out.marker = target + "_SUCCESS"
    return out


def _bucket_count(files: list[remote.RemoteFile], limit: int, shards: int | None, sep: int) -> int:
    """Buckets so that the expected bucket needs a third of a task's record budget (as the local
    engine plans), and at least one per shard so a shard task loads about two buckets."""
    est_bytes = sum(f.size for f in files if f.codec is None)
    compressed = sum(f.size for f in files if f.codec is not None)
    if compressed:
        est_bytes += int(compressed * _compression_ratio(next(f for f in files if f.codec is not None)))
    sample = next((f for f in files if f.codec is None and f.size), None)
    per_record = _record_size(sample, sep) if sample is not None else 64.0
    need = est_bytes + plan.META_PER_RECORD * est_bytes / per_record
    target = max(1, plan.block_budget(limit) // plan.BUCKET_FRACTION)
    return max(1, math.ceil(need / target), shards or 1)


#: Bytes sampled to estimate record size and decompressed size when planning.
SAMPLE_BYTES = 1 << 20

#: Margin on a compressed input's sampled expansion ratio: the rest of a file may compress better.
RATIO_MARGIN = 1.5


def _record_size(f: remote.RemoteFile, sep: int) -> float:
    """Mean record size at the start of a plain input (its whole sample if no separator)."""
    head = remote.read_ranges([(f.name, 0, min(f.size, SAMPLE_BYTES))])[0]
    n = head.count(bytes([sep]))
    return len(head) / n if n else float(len(head) or 1)


def _compression_ratio(f: remote.RemoteFile) -> float:
    """Decompressed over compressed size of a compressed input's first megabyte or so, with a margin."""
    from ..storage.decoding import open_reader

    raw = remote.open_input(f.name)
    with open_reader(raw, f.codec or "", f.name) as stream:
        data = stream.read(SAMPLE_BYTES)
        consumed = raw.tell()
    return RATIO_MARGIN * max(1.0, len(data) / max(1, min(consumed, f.size)))


def _scatter_tasks(files: list[remote.RemoteFile], limit: int, root: str) -> list[ScatterTask]:
    """One task per ``range_bytes`` of every plain input, one per compressed input."""
    step = range_bytes(limit)
    tasks = []
    for i, f in enumerate(files):
        ends = [f.size] if f.codec is not None else list(range(step, f.size, step)) + [f.size]
        start = 0
        for r, end in enumerate(ends if f.size else []):
            prefix = remote.join(root, "p1", f"{i:06d}-{r:06d}")
            tasks.append(ScatterTask(f.name, f.size, f.codec, i, r, 0 if f.codec else start, end, prefix))
            start = end
    return tasks


def _gather_tasks(
    segments: list[Segment], k: int, total: int, out: _Output, root: str, direct: str | None
) -> tuple[list[GatherTask], np.ndarray]:
    """Pass-2 tasks covering output records ``[0, total)``: one per shard, or one per non-empty
    bucket (a part) for a single output, written as objects or, with ``direct``, into that
    local file at the bucket's place. Also returns the bytes of each bucket."""
    counts, bounds = _index(segments, k)
    bucket_counts = counts.sum(axis=0)
    bucket_sizes = np.diff(bounds, axis=1).sum(axis=0)
    starts = np.zeros(k + 1, np.int64)
    np.cumsum(bucket_counts, out=starts[1:])
    offsets: list[int | None]
    if out.shards is not None:
        spans = [(i * total // out.shards, (i + 1) * total // out.shards) for i in range(out.shards)]
        targets, codecs, offsets = out.temps, out.codecs, [None] * out.shards
    else:
        used = [j for j in range(k) if starts[j] < total and bucket_counts[j]]
        # No record: an empty part, for a compressed output's empty stream (a file in place is empty).
        spans = [(int(starts[j]), min(int(starts[j + 1]), total)) for j in used] or ([] if direct else [(0, 0)])
        targets = [direct or remote.join(root, "p2", f"part-{i:06d}") for i in range(len(spans))]
        codecs = [out.codec] * len(spans)
        # Every part but a -n run's last is a whole bucket, so its place in the file is known.
        ends = np.cumsum([int(bucket_sizes[j]) for j in used], dtype=np.int64)
        offsets = [int(e) for e in np.concatenate([[0], ends[:-1]])] if direct and used else [None] * len(spans)
    pieces: dict[int, tuple[tuple[str, int, int], ...]] = {}
    tasks = []
    for (a, b), target, codec, offset in zip(spans, targets, codecs, offsets):
        chosen = []
        j = int(np.searchsorted(starts, a, side="right")) - 1
        while b > a and j < k and starts[j] < b:
            lo, hi = max(a, int(starts[j])), min(b, int(starts[j + 1]))
            if hi > lo:
                if j not in pieces:
                    pieces[j] = _parts(segments, counts, bounds, j)
                size, count = int(bucket_sizes[j]), int(bucket_counts[j])
                chosen.append(Piece(j, size, count, pieces[j], lo - int(starts[j]), hi - int(starts[j])))
            j += 1
        tasks.append(GatherTask(target, codec, tuple(chosen), remote.join(root, "p3"), offset))
    return tasks, bucket_sizes


def _run(runner: Runner, fn: Callable[[Config, T], Any], cfg: Config, tasks: Sequence[T],
         progress: Progress, sizes: Sequence[int]) -> list[Any]:
    """Submit every task, then collect the results in task order (progress by bytes)."""
    futures = [runner.submit(fn, cfg, t) for t in tasks]
    try:
        results = []
        for fut, size in zip(futures, sizes):
            results.append(_result(fut))
            progress.update(size)
        return results
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise


def _result(fut: Any) -> Any:
    """A task's value; a cluster failure (a worker that kept dying, a lost scheduler) becomes one message."""
    try:
        return fut.result()
    except BigShufError:
        raise
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        raise BigShufError(f"task failed: {where}{e.strerror or e}") from None
    except Exception as e:
        name = type(e).__name__
        if name in ("KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError"):
            raise BigShufError(f"cluster failure: {name}: {e}") from None
        raise


@contextmanager
def connect(scheduler: str | None, scratch: str) -> Iterator[Runner]:
    """A Dask client of the scheduler at ``scheduler``, or of a LocalCluster of processes (one
    single-threaded worker per core) made for this run with its scratch space in ``scratch``."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as e:
            raise UsageError(f"{option('scheduler')}: cannot reach '{scheduler}': {e}") from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    # Workers' scratch space (and Dask's lock files) inside this run's directory, removed with it;
    # the scheduler's HTTP server on a free port, so that runs side by side do not collide.
    with dask.config.set({"temporary-directory": scratch}):
        cluster = LocalCluster(
            n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.CRITICAL, local_directory=scratch,
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def shuffle(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] | None = None,
    *,
    memory: int | str | None = None,
    seed: int | None = None,
    random_source: str | os.PathLike[str] | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    temp_url: str | None = None,
    scheduler: str | None = None,
    runner: Runner | None = None,
    head_count: int | None = None,
    zero_terminated: bool = False,
    shards: int | None = None,
    compress: str | None = None,
    verify: bool = False,
    progress: Progress | None = None,
    sync: bool = True,
) -> ShuffleStats:
    """Shuffle ``inputs`` (paths or fsspec URLs, globs allowed) into ``output`` on a Dask cluster.

    ``memory`` (default 1G) is what one task may use; ``scheduler`` a Dask scheduler address
    (else ``$DASK_SCHEDULER_ADDRESS``, else a local cluster of processes); ``temp_url`` the
    shared place for temporary objects (default ``tmp_dir`` or the system's, which only a
    local cluster can share). ``runner`` replaces the cluster with any executor (tests). The
    same inputs, seed, ``memory`` and ``shards`` give the same output for any number of workers.
    """
    start = time.perf_counter()
    progress = progress or Progress()
    names = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(i) for i in inputs]
    if head_count is not None and head_count < 0:
        raise UsageError(f"invalid line count: '{head_count}'")
    if shards is not None and shards < 1:
        raise UsageError(f"invalid {option('shards')} value: '{shards}'")
    if verify and head_count is not None:
        raise UsageError(f"{option('verify')} checks whole shuffles; it cannot check a sample ({option('head_count')})")
    scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if scheduler and runner is None and temp_url is None:
        raise UsageError(f"{option('scheduler')} needs {option('temp_url')}: a place every worker can reach, e.g. s3://bucket/tmp/")
    try:
        import fsspec  # noqa: F401

        if runner is None:
            import distributed  # noqa: F401
    except ImportError:
        raise UsageError(f"{option('dask')} needs Dask: pip install 'bigshuf[dask]'") from None
    entropy = seed_entropy(seed, random_source)
    limit = resolve_memory(memory if memory is not None else DEFAULT_MEMORY)
    fmt = RecordFormat(0 if zero_terminated else 10)
    choice = None if compress is None else parse_compress(compress)
    out_name = None if output is None else os.fspath(output)
    files = remote.expand_inputs(names or ["-"])
    run_id = uuid.uuid4().hex[:12]
    local_parent = os.fspath(tmp_dir) if tmp_dir is not None else tempfile.gettempdir()
    if not os.path.isdir(local_parent):
        raise TempSpaceError(f"{local_parent}: No such file or directory")
    scratch = os.path.join(local_parent, f"bigshuf-dask-{run_id}")
    root = remote.join(remote.canonical(temp_url), f"bigshuf-dask-{run_id}") if temp_url is not None else scratch
    out = _plan_output(out_name, shards, choice, root, sync)
    cfg = Config(entropy, fmt, limit, _bucket_count(files, limit, shards, fmt.sep), verify)
    os.makedirs(scratch)
    committed = False
    sink: Sink | None = None
    try:
        with (connect(scheduler, scratch) if runner is None else _given(runner)) as run:
            tasks1 = _scatter_tasks(files, limit, root)
            progress.start(scatter_phase(0), sum(t.end - t.start for t in tasks1))
            results1: list[ScatterResult] = _run(run, scatter_task, cfg, tasks1, progress, [t.end - t.start for t in tasks1])
            segments = [s for r in results1 for s in r.segments]
            found = int(sum(int(s.counts.sum()) for s in segments))
            total = found if head_count is None else min(found, head_count)
            if out.shards is None and (out.target is None or not remote.is_url(out.target)):
                sink = open_output(out.target, ("none", None), sync=sync)
            # Plain output to a local file: tasks write their parts in place, no concatenation.
            direct = sink.tmp_path if isinstance(sink, AtomicFileSink) and out.codec is None else None
            tasks2, bucket_sizes = _gather_tasks(segments, cfg.k, total, out, root, direct)
            progress.start(shuffle_phase(0), int(bucket_sizes.sum()))
            sizes2 = [sum(p.size for p in t.pieces) for t in tasks2]
            results2: list[GatherResult] = _run(run, gather_task, cfg, tasks2, progress, sizes2)
        progress.close()
        written = sum(r.records for r in results2)
        if written != total:
            raise OutputError(f"wrote {written} records, expected {total}; output not put in place")
        if verify:
            read = sum((r.read for r in results1), Fingerprint())
            wrote = sum((r.written for r in results2), Fingerprint())
            if read != wrote:
                raise OutputError(f"verification failed: read {read}, wrote {wrote}; output not put in place")
        _commit(out, [t.target for t in tasks2], sink, direct is not None)
        committed = True
        passes = 2 + max((r.depth for r in results2), default=0)
        return ShuffleStats(total, sum(r.bytes for r in results2), cfg.k, passes, time.perf_counter() - start)
    finally:
        progress.close()
        if not committed:
            if sink is not None:
                sink.abort()
            for name in out.temps:
                remote.remove(name)
            if out.files is not None:
                out.files.release()
        remote.remove_tree(root)
        remote.remove_tree(scratch)


@contextmanager
def _given(runner: Runner) -> Iterator[Runner]:
    yield runner


def _commit(out: _Output, parts: list[str], sink: Sink | None, direct: bool) -> None:
    """Put the output in place: shards renamed (all, or none left on failure), parts concatenated
    into ``sink`` (a local file, standard output) or the output object, or the file the tasks
    wrote in place renamed."""
    if out.shards is None:
        if not direct:
            _concatenate(parts, out.target, sink)
        if sink is not None:
            sink.commit()
        return
    if out.files is not None:
        if out.files.sync:
            for temp in out.temps:
                fd = open_nofollow(temp)
                try:
                    sync_file(fd)
                finally:
                    os.close(fd)
        out.files.commit(list(zip(out.temps, out.finals)))
        return
    if out.marker is not None:
        remote.remove(out.marker)
    for i, (temp, final) in enumerate(zip(out.temps, out.finals)):
        try:
            remote.move(temp, final)
        except OutputError as e:
            # Shards moved so far are the new ones and stay: removing them would lose the old
            # and the new data alike. The marker stays absent, so readers know it is incomplete.
            raise OutputError(f"{e}; {i} of {len(out.finals)} shards were replaced, the rest keep their old contents") from None
    if out.marker is not None:
        remote.write_whole(out.marker, lambda f: None)


def _concatenate(parts: list[str], target: str | None, sink: Sink | None) -> None:
    """Copy the parts, in order, into ``sink``, or else into the object ``target`` (written whole)."""

    def copy(write: Callable[[bytes], Any]) -> None:
        for part in parts:
            with remote.open_input(part) as f:
                while chunk := f.read(FETCH_BYTES):
                    write(chunk)

    if sink is not None:
        copy(sink.write)
    else:
        assert target is not None
        remote.write_whole(target, lambda f: copy(f.write))
