"""Parquet and Arrow IPC rows on the Dask engine.

A pass-1 task reads a run of Parquet row groups (or Arrow record batches; an IPC stream is one
task) through pyarrow, over fsspec for URLs, and cuts its rows into blocks by ``row_sizes``
as the local engine does. A block's bucket parts are Arrow IPC streams, one per bucket,
written one after another as one object. Pass 2 reads a bucket's streams back, takes its
rows in permuted order and writes them with ``formats.table_output.RowWriter`` (Parquet row groups,
an Arrow IPC file or JSON Lines), so that one task writes one whole output file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
import pyarrow as pa

from ...core import plan
from ...core.driver import Estimate, Sample
from ...core.fingerprint import Fingerprint
from ...core.mix import copies_index
from ...core.stratify import split_ids
from ...core.streams import draw_ids
from ...errors import InputError, TempSpaceError, UsageError, option
from ...core.dedup import bucket_ids
from ...formats import registry
from ...formats.row_unique import check_comparable, first_rows, table_hashes
from ...formats.rowhash import row_fingerprint
from ...formats.table_mix import multiset_fingerprint
from ...formats.table_output import RowWriter, check_row_columns, shown_output
from ...formats.tables import (
    ARROW_ERRORS, FILE_KINDS, GROUP_BYTES, TABLE_PIECE, _rebatch, arrow_reason, check_columns, decoded_schema, plain_schema, row_sizes,
    schema_difference, stream_batches, take_rows, unreadable,
)
from ...quoting import quote_arg, quote_name
from ...request import not_for_rows
from ...storage import remote
from ...storage.sinks import CodecChoice, Sink
from .prepared import Inputs, Prepared, Settings, TaskKind, by_source
from .tasks import Config, Copies, RecordWriter, ScatterResult, ScatterTask, Segment, Writable, bucket_count, range_bytes, write_stream

if TYPE_CHECKING:
    from ...request import Request


@dataclass(frozen=True)
class RowTasks:
    """The ``TaskFormat`` of Arrow rows of ``schema`` (views made plain), written as ``kind``
    (parquet, arrow or jsonl) with the column ``codec`` in groups of ``group_rows`` or ``group_bytes``."""

    schema: pa.Schema
    kind: str
    codec: CodecChoice
    group_rows: int | None
    group_bytes: int
    #: The output as a refusal of rows JSON cannot hold names it.
    shown: str = "standard output"
    whole_output = True
    unit = "rows"
    records_kind = "rows"
    input_bytes = False

    def format_entry(self) -> dict[str, Any]:
        """The file kind rows are written as, as the local engine's manifest gives it."""
        return {"rows": self.kind}

    def finish(self, result: ScatterResult, last: Any) -> None:
        """Nothing to add: the objects' indexes tell the rows and their bytes."""

    def check_scattered(self, tasks: Sequence[ScatterTask], results: Sequence[ScatterResult]) -> None:
        """Nothing to check across tasks."""

    def check_unique(self) -> None:
        """Refuse a column whose values cannot be compared (``row_unique.check_comparable``)."""
        check_comparable(self.schema)

    def blocks(self, task: ScatterTask, cfg: Config) -> Iterator[pa.RecordBatch]:
        """The task's rows in blocks of about ``range_bytes`` (cut by row sizes, not by how the file is stored)."""
        stored = _task_batches(task, plain_schema(self.schema), range_bytes(cfg.limit))
        for block, _sizes in _rebatch(stored, range_bytes(cfg.limit), sys.maxsize):
            yield block

    def scatter(
        self, block: Any, rng: np.random.Generator, k: int, cfg: Config, name: str, copies: Copies | None = None,
    ) -> tuple[Segment, Fingerprint]:
        """Draw a bucket for every row (every copy of one, with weighted sources), and write each
        bucket's rows as one IPC stream of the object ``name``."""
        if copies is None:
            read = self.fingerprint(block) if cfg.verify else Fingerprint()
            ids = draw_ids(rng, k, block.num_rows)
            index = None
        else:
            read = self.copies_fingerprint(block, copies.mult) if cfg.verify else Fingerprint()
            index = copies_index(copies.mult)
            if index is None:
                index = np.arange(block.num_rows, dtype=np.int32)
            ids = draw_ids(rng, k, len(index)) if copies.strata is None else split_ids(rng, *copies.strata, k)
        counts = np.bincount(ids, minlength=k).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        if index is not None:
            order = index[order]
        del ids, index
        return _write_buckets(block, counts, order, k, name), read

    def hash_scatter(self, block: Any, level: int, k: int, cfg: Config, name: str) -> tuple[Segment, int]:
        """The block (at most a quarter of the read budget, a run as the local engine's) without its
        own copies, each bucket's rows one IPC stream of the object ``name``."""
        table = block if isinstance(block, pa.Table) else pa.Table.from_batches([block])
        hashes = table_hashes(table)
        kept = first_rows(table, hashes)
        ids = bucket_ids(hashes[kept], level, k)
        counts = np.bincount(ids, minlength=k).astype(np.int64)
        return _write_buckets(table, counts, kept[np.argsort(ids, kind="stable")], k, name), table.num_rows - len(kept)

    def dedup(self, block: Any, count: int, name: str) -> tuple[Any, np.ndarray]:
        """The first copy of each row, in their order, and their indices, ascending, among the ``count``."""
        if block.num_rows != count:
            raise TempSpaceError(f"{quote_name(name)}: {block.num_rows} rows read back, {count} written")
        kept = first_rows(block, table_hashes(block))
        return (block.take(kept) if len(kept) < count else block), kept

    def write_groups(self, block: Any, ids: np.ndarray, k: int, name: str) -> tuple[Segment, np.ndarray]:
        """Write the rows of ``block`` grouped by ``ids`` (group ``j`` as bucket ``j``, in order within
        it) as the object ``name``; return its index and each group's bytes by ``row_sizes``."""
        counts = np.bincount(ids, minlength=k).astype(np.int64)
        nbytes = np.bincount(ids, weights=self.sizes(block), minlength=k).astype(np.int64)
        return _write_buckets(block, counts, np.argsort(ids, kind="stable"), k, name), nbytes

    def count(self, block: Any) -> tuple[int, int]:
        """Rows and their bytes by ``row_sizes``, as the local engine's counting pass counts them."""
        return block.num_rows, int(row_sizes(block).sum())

    def sizes(self, records: Any) -> np.ndarray:
        """Each row's Arrow bytes by ``row_sizes`` (what ``-S`` holds)."""
        batches = records.to_batches() if isinstance(records, pa.Table) else [records]
        return np.concatenate([np.empty(0, np.int64), *(row_sizes(b) for b in batches)])

    def chunks(self, block: Any, parts: int) -> list[tuple[Any, int]]:
        """Runs of about ``num_rows / parts`` rows."""
        step = max(1, -(-block.num_rows // max(1, parts)))
        return [(block.slice(lo, step), min(step, block.num_rows - lo)) for lo in range(0, block.num_rows, step)]

    def decode(self, data: np.ndarray, sizes: Sequence[int]) -> pa.Table:
        """The rows of a bucket's IPC streams (``sizes`` bytes each, back to back), without copying."""
        buffer = pa.py_buffer(data)
        batches: list[pa.RecordBatch] = []
        pos = 0
        try:
            for size in sizes:
                batches.extend(pa.ipc.open_stream(buffer.slice(pos, size)))
                pos += size
        except ARROW_ERRORS as e:
            raise TempSpaceError(f"temporary bucket unreadable: {arrow_reason(e)}") from None
        return pa.Table.from_batches(batches, schema=batches[0].schema if batches else self.schema.remove_metadata())

    def permute(self, block: Any, count: int, order: np.ndarray, size: int, cfg: Config, emit: Callable[[Any], None], name: str) -> None:
        """Emit rows ``order`` of a bucket read back, in tables of about a piece."""
        if block.num_rows != count:
            raise TempSpaceError(f"{quote_name(name)}: {block.num_rows} rows read back, {count} written")
        batches = block.to_batches()
        starts = np.zeros(len(batches) + 1, np.int64)
        np.cumsum([b.num_rows for b in batches], out=starts[1:])
        chunk = max(1, min(plan.piece_bytes(cfg.limit), TABLE_PIECE) * count // max(1, size))
        for lo in range(0, len(order), chunk):
            emit(take_rows(batches, starts, order[lo : lo + chunk]))

    def open_output(self, f: Writable, codec: CodecChoice | None) -> RecordWriter:
        """A writer of this run's output format into ``f`` (JSON Lines compressed with ``codec``)."""
        stream, end = write_stream(f, codec)
        sink = Sink(cast(BinaryIO, stream), None)
        schema = decoded_schema(self.schema) if self.kind == "arrow" else self.schema
        rows = RowWriter(self.kind, sink, schema, self.codec, self.group_rows, self.group_bytes, self.shown)
        return _TableWriter(rows, end)

    def fingerprint(self, records: Any) -> Fingerprint:
        """The fingerprint of a table of rows."""
        return row_fingerprint(records)

    def copies_fingerprint(self, block: Any, mult: np.ndarray) -> Fingerprint:
        """The fingerprint of the rows of ``block``, each counted ``mult`` times (weighted sources' multiset)."""
        return multiset_fingerprint(block, mult)


def _write_buckets(block: Any, counts: np.ndarray, order: np.ndarray, k: int, name: str) -> Segment:
    """Write the rows ``order`` of ``block`` (``counts`` of them per bucket, bucket after bucket) as
    the object ``name``, each bucket's one IPC stream; return its index."""
    table = block if isinstance(block, pa.Table) else pa.Table.from_batches([block])
    table = table.combine_chunks().replace_schema_metadata(None)  # a schema in every stream: keep it short
    streams: list[pa.Buffer] = []
    sizes = np.zeros(k, np.int64)
    start = 0
    for j in np.flatnonzero(counts).tolist():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.take(order[start : start + int(counts[j])]))
        streams.append(sink.getvalue())
        sizes[j] = streams[-1].size
        start += int(counts[j])
    del table, order
    bounds = np.zeros(k + 1, np.int64)
    np.cumsum(sizes, out=bounds[1:])

    def write(f: BinaryIO) -> None:
        for stream in streams:
            f.write(stream)

    remote.write_whole(name, write)
    return Segment(name, bounds, counts)


class _TableWriter:
    """A ``RowWriter`` seen as a ``RecordWriter``: bytes counted as its sink takes them."""

    def __init__(self, rows: RowWriter, end: Callable[[], None]) -> None:
        self.rows = rows
        self.end = end
        self.counted = 0

    def _added(self) -> int:
        now = self.rows.sink.bytes_written
        added, self.counted = now - self.counted, now
        return added

    def write(self, records: Any) -> int:
        """Add rows (whole row groups are written as they fill)."""
        self.rows.write(records)
        return self._added()

    def close(self) -> int:
        """Write the last row group and the footer, and end a compressed stream."""
        self.rows.close()
        self.end()
        return self._added()


# ---------------------------------------------------------------------------------------------
# Reading a task's rows


@contextmanager
def _opened(name: str) -> Iterator[Any]:
    """A random-access file of ``name``: Arrow's own for a local file, fsspec's for a URL."""
    if not remote.is_url(name):
        with pa.OSFile(name) as f:
            yield f
        return
    fs, path = remote.filesystem(name)
    with fs.open(path, "rb") as f:
        yield f


def _parquet(source: Any) -> Any:
    """A Parquet reader streaming pages through a small buffer (as ``TableInput`` reads)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)


def _stored(task: ScatterTask, source: Any, block_bytes: int) -> Iterator[pa.RecordBatch]:
    """The record batches of the task's row groups (or record batches), as the file gives them;
    a Parquet task checks that it read the rows its row groups say they hold."""
    if task.kind == "parquet":
        pf = _parquet(source)
        rows = expected = 0
        for group in range(task.start, task.end):
            meta = pf.metadata.row_group(group)
            expected += meta.num_rows
            size = max(1, block_bytes * meta.num_rows // max(1, meta.total_byte_size))
            for batch in pf.iter_batches(batch_size=size, row_groups=[group], use_threads=False):
                rows += batch.num_rows
                yield batch
        if rows != expected:
            raise InputError(f"{task.named()}: corrupt Parquet file: it holds {rows} rows, its metadata says {expected}")
    elif task.kind == "arrow":
        reader = pa.ipc.open_file(source)
        for i in range(task.start, task.end):
            yield reader.get_batch(i)
    else:
        yield from stream_batches(task.shown or task.source, source)


def _task_batches(task: ScatterTask, plain: pa.Schema, block_bytes: int) -> Iterator[pa.RecordBatch]:
    """The task's rows, validated (Arrow's kernels trust what they get) and cast to ``plain``;
    Arrow's errors become one-line input errors naming the file."""
    try:
        with _opened(task.source) as source:
            for batch in _stored(task, source, block_bytes):
                batch.validate(full=True)
                yield batch if batch.schema.equals(plain) else batch.cast(plain)
    except ARROW_ERRORS as e:
        raise InputError(f"{task.named()}: corrupt or unreadable {FILE_KINDS[task.kind or 'parquet']} ({arrow_reason(e)})") from None


# ---------------------------------------------------------------------------------------------
# Planning, on the client


@dataclass(frozen=True)
class TableFile:
    """One table input as planned: its kind, schema, bytes and, per row group (record batch),
    its rows and uncompressed bytes (an IPC stream has none listed)."""

    name: str
    kind: str
    size: int
    schema: pa.Schema
    units: tuple[tuple[int, int], ...]
    shown: str  # the name in messages, as the user gave it


def table_kind(head: bytes) -> str | None:
    """The table format whose magic a file's first bytes hold in ``formats.registry``: ``parquet``,
    ``arrow`` (IPC file) or ``stream`` (IPC stream); None for any other."""
    fmt = registry.by_magic(head)
    return fmt.name if fmt is not None and fmt.family == registry.TABLE else None


def describe(f: remote.RemoteFile, kind: str, shown: str) -> TableFile:
    """Read a table input's schema and row groups (record batches) from its footer (``shown``: its name in messages)."""
    try:
        with _opened(f.name) as source:
            if kind == "parquet":
                meta = _parquet(source).metadata
                groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
                units = tuple((g.num_rows, g.total_byte_size) for g in groups)
                return TableFile(f.name, kind, f.size, meta.schema.to_arrow_schema(), units, shown)
            if kind == "arrow":
                reader = pa.ipc.open_file(source)
                n = reader.num_record_batches
                # Batch sizes are not listed: each is taken as its share of the file.
                units = tuple((0, f.size // max(1, n)) for _ in range(n))
                return TableFile(f.name, kind, f.size, reader.schema, units, shown)
            return TableFile(f.name, kind, f.size, pa.ipc.open_stream(source).schema, (), shown)
    except (*ARROW_ERRORS, UnicodeDecodeError) as e:
        raise unreadable(shown, FILE_KINDS[kind], e) from None


def check_schemas(files: Sequence[TableFile]) -> None:
    """Every input's schema must be the first's (metadata aside), and its rows shufflable, as the local engine requires."""
    first = files[0]
    check_columns(first.shown, first.schema)
    for other in files[1:]:
        if not other.schema.equals(first.schema, check_metadata=False):
            raise InputError(f"{quote_name(other.shown)}: schema does not match {quote_name(first.shown)}: {schema_difference(first.schema, other.schema)}")


def scatter_tasks(files: Sequence[TableFile], limit: int, root: str) -> list[ScatterTask]:
    """Pass-1 tasks: runs of consecutive row groups (record batches) of about ``range_bytes``
    each; an IPC stream is one task."""
    step = range_bytes(limit)
    tasks = []
    for i, f in enumerate(files):
        runs: list[tuple[int, int, int]] = []  # (first unit, end unit, bytes)
        if f.kind == "stream":
            runs.append((0, 0, f.size))
        for u, (_rows, nbytes) in enumerate(f.units):
            if not runs or runs[-1][2] >= step:
                runs.append((u, u, 0))
            first, _end, held = runs[-1]
            runs[-1] = (first, u + 1, held + nbytes)
        for r, (first, end, nbytes) in enumerate(runs):
            prefix = remote.join(root, "p1", f"{i:06d}-{r:06d}")
            tasks.append(ScatterTask(f.name, f.size, None, i, r, first, end, prefix, nbytes, f.kind, shown=f.shown))
    return tasks


def row_bucket_count(files: Sequence[TableFile], limit: int, shards: int | None) -> int:
    """Buckets for the rows as for lines: from the bytes the footers list (at least the files'
    sizes) and their row counts (Arrow IPC rows guessed at 64 bytes each)."""
    nbytes = sum(max(f.size, sum(b for _, b in f.units)) for f in files)
    rows = sum(sum(r for r, _ in f.units) if f.kind == "parquet" else f.size // 64 for f in files)
    return bucket_count(nbytes + plan.META_PER_RECORD * rows, limit, shards)


def row_format(
    files: Sequence[TableFile], kind: str, codec: CodecChoice, group_rows: int | None, limit: int, shown: str = "standard output"
) -> RowTasks:
    """The rows' task format: the first input's schema, views made plain, written as ``kind`` to the output ``shown``."""
    group_bytes = min(GROUP_BYTES, max(1, plan.block_budget(limit) // 8))
    return RowTasks(plain_schema(files[0].schema), kind, codec, group_rows, group_bytes, shown)


class Rows(TaskKind):
    """Parquet and Arrow IPC rows on the Dask engine (``formats.registry``'s table family): inputs
    whose first bytes are a table format's magic."""

    @classmethod
    def claims(cls, inputs: Inputs) -> bool:
        """Whether any input file starts with a table format's magic, or is named as a table (then
        every one must start so: a damaged ``.parquet`` is refused, as by the local engine)."""
        from ...formats.detect import misnamed_table

        return any(table_kind(head) for head in inputs.heads) or any(misnamed_table(name) for name in inputs.shown)

    @classmethod
    def prepare(cls, inputs: Inputs, settings: Settings, root: str) -> Prepared:
        """Plan a table run: schemas checked, output format and codec resolved as the local engine does."""
        from ...formats import detect
        from ...formats.table_output import resolve_codec
        from ...storage.codecs import CODECS

        kinds, shown = [table_kind(head) for head in inputs.heads], inputs.shown
        for kind, name in zip(kinds, shown):
            misnamed = None if kind else detect.misnamed_table(name)
            if misnamed is not None:
                raise misnamed
        if not all(kinds):
            raise UsageError(
                f"{quote_name(shown[kinds.index(None)])}: not a Parquet or Arrow file; line files and tables cannot be shuffled together"
            )
        files = [describe(f, k, name) for f, k, name in zip(inputs.files, kinds, shown) if k]
        if settings.zero_terminated:
            raise not_for_rows([option("zero_terminated")])
        check_schemas(files)
        target = settings.target
        kind = detect.output_kind(target, files[0].kind, settings.output_format)
        if kind != "jsonl" and target in (None, "-"):
            detect.refuse_terminal("Parquet" if kind == "parquet" else "Arrow IPC")
        codec = resolve_codec(kind, settings.compress, target)
        if settings.manifest and kind == "jsonl":
            raise UsageError(f"{option('manifest')}: rows written as JSON Lines cannot be checked against it; write .parquet or .arrow files")
        if settings.row_group_size is not None and settings.row_group_size < 1:
            raise UsageError(f"invalid {option('row_group_size')} value: {quote_arg(settings.row_group_size)}")
        fmt = row_format(files, kind, codec, settings.row_group_size, settings.limit, shown_output(target))
        check_row_columns(kind, target, fmt.schema)
        tasks = scatter_tasks(files, settings.limit, root)
        k = row_bucket_count(files, settings.limit, settings.shards)
        names, stored = tuple(f.name for f in files), tuple(inputs.files)
        if kind != "jsonl":
            return Prepared(fmt, tasks, k, ("none", None), "." + kind, names, stored=stored)
        compressed = codec[0] != "none"
        suffix = ".jsonl" + (CODECS[codec[0]].suffixes[0] if compressed else "")
        return Prepared(fmt, tasks, k, codec, suffix, names, stored=stored)

    @classmethod
    def sample(cls, prepared: Prepared, request: Request) -> Sample:
        """Rows as the Parquet footers list them (Arrow IPC files list none: estimated by their bytes)."""
        by_file = prepared.task_bytes()
        stored, files = sum(by_file), prepared.stored
        if {t.kind for t in prepared.tasks} != {"parquet"}:
            return Sample(Estimate(stored, None, 64.0), why="Arrow IPC files do not list their rows", sized=True, temp_bytes=stored)
        rows = [sum(r for r, _b in describe(f, "parquet", f.name).units) for f in files]
        sizes: tuple[int | None, ...] = by_source(request, by_file) if request.sources else ()
        counted = None if not request.sources else by_source(request, rows)
        return Sample(
            Estimate(stored, sum(rows), stored / max(1, sum(rows))), 0, exact=True, sized=True, temp_bytes=stored,
            counted="from the Parquet footers", source_records=counted,
            source_bytes=None if counted is None else by_source(request, by_file), source_sizes=sizes,
        )
