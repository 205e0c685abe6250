"""Lines on the Dask engine: a pass-1 task owns the records that start in its byte range of a
plain input (or every record of a compressed one), scattered as bytes; buckets are read back
as bytes and found by their separators; outputs are the records' bytes, optionally compressed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ...core import plan
from ...core.dedup import bucket_ids, first_copies, gather
from ...core.driver import Estimate, Sample
from ...core.fingerprint import Fingerprint, fingerprint, record_hashes
from ...core.gather import emit_in_order
from ...core.mix import multiset_fingerprint
from ...core.scatter import Scattered, cut_pieces, iter_pieces, regroup, scatter_piece, scatter_records
from ...errors import InputError, TempSpaceError, UsageError, option
from ...quoting import quote_name
from ...core.records import RecordFormat, array_block, array_bytes, count_separators, find_offsets
from ...progress import Progress
from ...storage import remote
from ...storage.sinks import CodecChoice
from ...storage.reader import RecordReader
from .prepared import Inputs, Prepared, Settings, TaskKind, by_source, decoded_by_source, decoded_sizes
from .tasks import Config, Copies, ScatterResult, ScatterTask, Segment, Writable, bucket_count, range_bytes, write_stream

if TYPE_CHECKING:
    from ...request import Request

#: First step of the read past a range's end that completes its last record; it doubles.
TAIL_STEP = 64 << 10

#: Bytes sampled to estimate record size and decompressed size when planning.
SAMPLE_BYTES = 1 << 20

#: Margin on a compressed input's sampled expansion ratio: the rest of a file may compress better.
RATIO_MARGIN = 1.5


@dataclass(frozen=True)
class LineTasks:
    """The ``TaskFormat`` of lines ended by ``fmt``'s separator."""

    fmt: RecordFormat
    whole_output = False
    unit = "records"
    records_kind = "lines"
    input_bytes = True

    def format_entry(self) -> dict[str, Any]:
        """The separator of lines, as the local engine's manifest gives it."""
        return {"separator": self.fmt.sep, "lines_per_record": 1, "header_lines": 0}

    def finish(self, result: ScatterResult, last: Any) -> None:
        """Nothing to add: the objects' indexes tell the lines and their bytes."""

    def check_scattered(self, tasks: Sequence[ScatterTask], results: Sequence[ScatterResult]) -> None:
        """Nothing to check across tasks."""

    def check_unique(self) -> None:
        """Nothing to refuse: lines are compared byte for byte."""

    def blocks(self, task: ScatterTask, cfg: Config) -> Iterator[np.ndarray]:
        """The blocks of whole records a pass-1 task scatters: its range, or a compressed file's blocks."""
        if task.codec is None:
            yield _owned_records(task, self.fmt.sep, cfg.limit)
            return
        reader = RecordReader([_UrlSource(task.source, task.named())], self.fmt, Progress())
        # Blocks of a range's bytes, grown only for a longer record: as long as a plain file's may be (half of -S).
        for block, _final in reader.blocks(plan.read_capacity(cfg.limit), option("memory"), range_bytes(cfg.limit)):
            yield block

    def scatter(
        self, block: np.ndarray, rng: np.random.Generator, k: int, cfg: Config, name: str, copies: Copies | None = None,
    ) -> tuple[Segment, Fingerprint]:
        """See ``_scatter_block`` (``_scatter_copies`` with weighted sources)."""
        if copies is not None:
            return _scatter_copies(block, rng, k, cfg, name, copies)
        return _scatter_block(block, rng, k, cfg, name)

    def count(self, block: np.ndarray) -> tuple[int, int]:
        """Records (separators: a block ends at a record's end) and bytes, separators included."""
        return count_separators(block, self.fmt.sep), len(block)

    def hash_scatter(self, block: np.ndarray, level: int, k: int, cfg: Config, name: str) -> tuple[Segment, int]:
        """Runs of at most ``piece_records`` lines (the bookkeeping stays bounded), each without its
        own copies, regrouped by hash bucket and written bucket after bucket."""
        scattered: list[Scattered] = []
        dropped = pos = 0
        most = plan.piece_records(cfg.limit)
        while pos < len(block):
            offsets = find_offsets(block[pos:], self.fmt, most)
            unit = block[pos : pos + int(offsets[-1])]
            hashes = record_hashes(unit, offsets)
            kept = first_copies(unit, offsets, hashes)
            ids = np.full(len(offsets) - 1, k, np.uint16 if k < 1 << 16 else np.uint32)
            ids[kept] = bucket_ids(hashes[kept], level, k)
            dropped += len(ids) - len(kept)
            scattered.append(regroup(unit, offsets, ids, k, k))
            pos += len(unit)
        return _write_parts(scattered, k, name), dropped

    def dedup(self, block: np.ndarray, count: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The first copy of each line, in their order, and their indices, ascending, among the ``count``."""
        if count < 2:
            return block, np.arange(count, dtype=np.int64)
        offsets = _records(block, count, self.fmt, name)
        kept = first_copies(block, offsets)
        return gather(block, offsets, kept)[0], kept

    def write_groups(self, block: np.ndarray, ids: np.ndarray, k: int, name: str) -> tuple[Segment, np.ndarray]:
        """Write the records of ``block`` grouped by ``ids`` (group ``j`` as bucket ``j``, in order within
        it) as the object ``name``; return its index and each group's bytes, separators included."""
        offsets = _records(block, len(ids), self.fmt, name)
        segment = _write_parts([regroup(block, offsets, ids, k, k)], k, name)
        return segment, np.diff(segment.bounds)

    def sizes(self, records: Any) -> np.ndarray:
        """Each record's bytes, its separator included."""
        return np.diff(array_block(records)[1])

    def chunks(self, block: np.ndarray, parts: int) -> list[tuple[np.ndarray, int]]:
        """Byte ranges of whole records of about ``len(block) / parts`` bytes each."""
        size = max(1, -(-len(block) // max(1, parts)))
        return [(block[lo:hi], count_separators(block[lo:hi], self.fmt.sep)) for lo, hi in cut_pieces(block, self.fmt, size)]

    def decode(self, data: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
        """Bytes of whole records are their own block."""
        return data

    def permute(self, block: np.ndarray, count: int, order: np.ndarray, size: int, cfg: Config, emit: Callable[[Any], None], name: str) -> None:
        """Emit records ``order`` of a bucket read back, in chunks of about a piece."""
        offsets = _records(block, count, self.fmt, name)
        per_chunk = max(1, int(plan.piece_bytes(cfg.limit) * count / max(1, size)))
        emit_in_order(block, offsets, order, emit, per_chunk)

    def open_output(self, f: Writable, codec: CodecChoice | None) -> BytesWriter:
        """The records' bytes into ``f``, compressed with ``codec`` if given."""
        return BytesWriter(*write_stream(f, codec))

    def fingerprint(self, records: Any) -> Fingerprint:
        """The fingerprint of a binary array of records."""
        return fingerprint(*array_block(records))


class BytesWriter:
    """Writes binary arrays of records as their bytes, then the format's ``trailer`` (lines: none)."""

    trailer = b""

    def __init__(self, out: Writable, end: Callable[[], None]) -> None:
        self.out = out
        self.end = end

    def write(self, records: Any) -> int:
        """Write the records' bytes; return how many (before compression)."""
        data = array_bytes(records)
        self.out.write(data)
        return len(data)

    def close(self) -> int:
        """Write the trailer and end the compressed stream, if any; return the trailer's bytes
        (counted in the run's bytes, as the local engine counts a tar's end blocks)."""
        if self.trailer:
            self.out.write(self.trailer)
        self.end()
        return len(self.trailer)


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
                f"{task.named()}: a record is longer than {plan.read_capacity(limit)} bytes, the most this "
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


class _UrlSource:
    """A compressed input as ``RecordReader`` reads it: sniffed and decompressed as a stream."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name  # as messages show it

    def size(self) -> int | None:
        """Unknown until decompressed."""
        return None

    def open(self) -> BinaryIO:
        """The decompressed stream."""
        from ...storage.decoding import decompressing

        return decompressing(remote.open_input(self.url), self.name)


def _scatter_block(block: np.ndarray, rng: np.random.Generator, k: int, cfg: Config, name: str) -> tuple[Segment, Fingerprint]:
    """Scatter a block of whole records into ``k`` buckets and write them as the object ``name``,
    bucket after bucket; return its index and the fingerprint of the records (``--verify``)."""
    read = Fingerprint()
    parts: list[Scattered] = []
    for piece, offsets in iter_pieces(block, _record_format(cfg), plan.piece_bytes(cfg.limit), plan.piece_records(cfg.limit)):
        if cfg.verify:
            read += fingerprint(piece, offsets)
        parts.append(scatter_piece(piece, offsets, rng, k, k))
    return _write_parts(parts, k, name), read


def _scatter_copies(block: np.ndarray, rng: np.random.Generator, k: int, cfg: Config, name: str, copies: Copies) -> tuple[Segment, Fingerprint]:
    """``_scatter_block`` of the multiset a block of weighted sources makes: each record ``copies.mult``
    times, every copy with its own bucket draw (from its split's buckets with ``--stratify``)."""
    read = Fingerprint()
    parts: list[Scattered] = []
    first = copied = 0  # records and copies of the pieces before this one
    for piece, offsets in iter_pieces(block, _record_format(cfg), plan.piece_bytes(cfg.limit), plan.piece_records(cfg.limit)):
        mult = copies.mult[first : first + len(offsets) - 1]
        first += len(mult)
        if cfg.verify:
            read += multiset_fingerprint(piece, offsets, mult)
        strata = None
        if copies.strata is not None:
            n = int(mult.sum())
            strata = (copies.strata[0], copies.strata[1][copied : copied + n])
            copied += n
        parts += scatter_records(piece, offsets, rng, k, k, plan.piece_records(cfg.limit), mult, plan.piece_bytes(cfg.limit), strata)
    return _write_parts(parts, k, name), read


def _write_parts(parts: list[Scattered], k: int, name: str) -> Segment:
    """Write scattered pieces as the object ``name``, bucket after bucket; return its index."""
    counts = np.zeros(k, np.int64) + np.array([p.counts for p in parts], np.int64).reshape(len(parts), k).sum(axis=0)
    sizes = np.zeros(k, np.int64) + np.array([np.diff(p.byte_bounds) for p in parts], np.int64).reshape(len(parts), k).sum(axis=0)
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
    return Segment(name, bounds, counts)


def _record_format(cfg: Config) -> RecordFormat:
    """The separator of a line run's tasks."""
    assert isinstance(cfg.fmt, LineTasks)
    return cfg.fmt.fmt


def _records(block: np.ndarray, count: int, fmt: RecordFormat, name: str) -> np.ndarray:
    """Offsets of the ``count`` records of a bucket read back, checked."""
    offsets = find_offsets(block, fmt)
    if len(offsets) - 1 != count or int(offsets[-1]) != len(block):
        raise TempSpaceError(f"{quote_name(name)}: {len(offsets) - 1} records read back, {count} written")
    return offsets


def _bucket_count(files: list[remote.RemoteFile], shown: Sequence[str], limit: int, shards: int | None, sep: int) -> int:
    """Buckets so that the expected bucket needs a third of a task's record budget (as the local
    engine plans), and at least one per shard so a shard task loads about two buckets."""
    est_bytes, per_record = estimate(files, shown, sep)
    return bucket_count(est_bytes + plan.META_PER_RECORD * est_bytes / per_record, limit, shards)


def estimate(files: list[remote.RemoteFile], shown: Sequence[str], sep: int) -> tuple[int, float]:
    """The bytes of records pass 1 expects (``estimated_bytes``) and the mean record size at the
    start of the first plain input, else of the first compressed one decoded (named ``shown[i]``
    in an error, as given): the bucket plan's figures."""
    plain = next((f for f in files if f.codec is None and f.size), None)
    compressed = next(((f, name) for f, name in zip(files, shown) if f.codec is not None), None)
    if plain is not None:
        head = remote.read_ranges([(plain.name, 0, min(plain.size, SAMPLE_BYTES))])[0]
    else:
        head = b"" if compressed is None else _decoded_head(*compressed)
    return estimated_bytes(files), (_record_size(head, sep) if head else 64.0)


def estimated_bytes(files: list[remote.RemoteFile]) -> int:
    """The bytes the inputs hold decompressed: plain ones by their size, compressed ones as the local
    engine plans them (``decoded_sizes``), with a margin."""
    packed = [f for f in files if f.codec is not None]
    decoded = decoded_sizes(packed, [0] * len(packed))
    return sum(f.size for f in files if f.codec is None) + int(RATIO_MARGIN * sum(decoded))


def _record_size(head: bytes, sep: int) -> float:
    """Mean record size in the first bytes of an input (all of them if no separator)."""
    n = head.count(bytes([sep]))
    return len(head) / n if n else float(len(head) or 1)


def _decoded_head(f: remote.RemoteFile, shown: str) -> bytes:
    """A compressed input's first megabyte or so, decoded (an error naming it ``shown``)."""
    from ...storage.decoding import open_reader

    with open_reader(remote.open_input(f.name), f.codec or "", quote_name(shown)) as stream:
        return stream.read(SAMPLE_BYTES)


def _scatter_tasks(files: list[remote.RemoteFile], shown: list[str], limit: int, root: str) -> list[ScatterTask]:
    """One task per ``range_bytes`` of every plain input, one per compressed input (each named ``shown`` in messages)."""
    step = range_bytes(limit)
    tasks = []
    for i, (f, name) in enumerate(zip(files, shown)):
        ends = [f.size] if f.codec is not None else list(range(step, f.size, step)) + [f.size]
        start = 0
        for r, end in enumerate(ends if f.size else []):
            prefix = remote.join(root, "p1", f"{i:06d}-{r:06d}")
            first = 0 if f.codec else start
            tasks.append(ScatterTask(f.name, f.size, f.codec, i, r, first, end, prefix, end - first, shown=name))
            start = end
    return tasks


class Lines(TaskKind):
    """Lines on the Dask engine (``formats.registry``'s lines family): any inputs no other family claims."""

    @classmethod
    def claims(cls, inputs: Inputs) -> bool:
        """Every input: lines are what no other family takes."""
        return True

    @classmethod
    def prepare(cls, inputs: Inputs, settings: Settings, root: str) -> Prepared:
        """Plan pass 1 over line files: byte ranges of plain inputs, whole compressed ones."""
        from ...formats import detect
        from ...storage.codecs import parse_compress

        target = settings.target
        if settings.output_format in ("parquet", "arrow") or (target not in (None, "-") and detect.suffix_kind(target or "") in ("parquet", "arrow")):
            raise UsageError(f"{option('dask')} writes Parquet and Arrow only from Parquet or Arrow inputs; convert line files with the local engine")
        if settings.row_group_size is not None or settings.output_format is not None:
            raise UsageError(f"{option('row_group_size')} and {option('output_format')} apply to Parquet and Arrow inputs")
        files = inputs.files
        fmt = RecordFormat(0 if settings.zero_terminated else 10)
        choice = None if settings.compress is None else parse_compress(settings.compress)
        tasks = _scatter_tasks(files, inputs.shown, settings.limit, root)
        k = _bucket_count(files, inputs.shown, settings.limit, settings.shards, fmt.sep)
        # A shard directory's files named by the inputs' kind and codec, as the local engine names them.
        sharded = settings.shards is not None or settings.sharded
        suffix = detect.line_shard_suffix([f.name for f in files], choice) if sharded else None
        return Prepared(LineTasks(fmt), tasks, k, choice, suffix, tuple(f.name for f in files), stored=tuple(files))

    @classmethod
    def sample(cls, prepared: Prepared, request: Request) -> Sample:
        """Lines counted when every input is a plain file of at most a sample's size (read whole),
        else estimated as the bucket plan estimates them; each source's size by its tasks' bytes."""
        assert isinstance(prepared.fmt, LineTasks)
        files, sep = prepared.stored, prepared.fmt.fmt.sep
        sizes: tuple[int | None, ...] = decoded_by_source(request, prepared) if request.sources else ()
        if all(f.codec is None and f.size <= SAMPLE_BYTES for f in files):
            heads = remote.read_ranges([(f.name, 0, f.size) for f in files])
            counts = [h.count(bytes([sep])) + (1 if h and h[-1] != sep else 0) for h in heads]
            nbytes = [len(h) + (1 if h and h[-1] != sep else 0) for h in heads]
            total = sum(nbytes)
            records, source_records, source_bytes = sum(counts), None, None
            if request.sources:
                source_records, source_bytes = by_source(request, counts), by_source(request, nbytes)
            return Sample(
                Estimate(total, records, total / max(1, records)), total, exact=True, sized=True, temp_bytes=total,
                source_records=source_records, source_bytes=source_bytes, source_sizes=sizes,
            )
        est_bytes, per_record = estimate(list(files), prepared.stored_shown(), sep)
        # The bucket plan sizes compressed inputs with a margin; the records are estimated without it.
        plain = sum(f.size for f in files if f.codec is None)
        expected = plain + int((est_bytes - plain) / RATIO_MARGIN)
        return Sample(
            Estimate.of(expected, per_record), min(SAMPLE_BYTES, est_bytes), sized=True, temp_bytes=est_bytes, source_sizes=sizes,
        )
