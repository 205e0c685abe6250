"""Parquet and Arrow IPC datasets: their rows shuffled by the same two-pass scatter as lines.

Rows are read in record batches. Pass 1 draws an i.i.d. uniform bucket for every row and
appends each bucket's rows to an Arrow IPC stream file; pass 2 loads one bucket at a time,
permutes it uniformly and writes it out, so every permutation of the rows is equally
likely. The memory limit is held against Arrow buffer sizes (``nbytes``). JSON Lines converts
both ways: read with pyarrow's JSON reader, written by the vectorised encoder in ``jsonout``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from . import plan
from .api import rng_for
from .errors import InputError, OutputError, TempSpaceError, UsageError
from .fingerprint import Fingerprint
from .progress import Progress
from .rowhash import row_fingerprint
from .sinks import CodecChoice, Output, Sink, check_output_directory
from .sources import FileSource
from .tempspace import TempSpace
from .writeback import WriteBehind

#: File kinds by suffix; ``jsonl`` may also carry a compression suffix (``.jsonl.zst``).
TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")

#: Column codecs each output format offers (``--compress``), the first being the default.
FORMAT_CODECS = {
    "parquet": ("zstd", "snappy", "gzip", "lz4", "brotli", "none"),
    "arrow": ("none", "zstd", "lz4"),
}

#: Largest default row group: pyarrow's own default, and about 64 MiB of Arrow data.
MAX_GROUP_ROWS = 1 << 20
GROUP_BYTES = 64 << 20

ARROW_ERRORS = (pa.ArrowException, OSError)


def sniff_kind(path: str) -> str | None:
    """``parquet`` or ``arrow`` (IPC file, Feather v2) by the file's magic bytes, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return None
    if head[:4] == b"PAR1":
        return "parquet"
    if head == b"ARROW1":
        return "arrow"
    return None


def suffix_kind(path: str) -> str | None:
    """``parquet``, ``arrow`` or ``jsonl`` by the name's suffix (a compression suffix after ``.jsonl`` allowed)."""
    from .codecs import CODECS, codec_for_suffix

    lower = path.lower()
    for suffix, kind in TABLE_SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    codec = codec_for_suffix(lower)
    if codec is not None:
        lower = lower[: -len(next(s for s in CODECS[codec].suffixes if lower.endswith(s)))]
    return "jsonl" if lower.endswith(JSON_SUFFIXES) else None


def is_table_input(path: str) -> bool:
    """Whether ``path`` is a dataset directory or a Parquet / Arrow IPC file."""
    return path != "-" and (os.path.isdir(path) or sniff_kind(path) is not None)


def dataset_files(path: str) -> list[str]:
    """A directory's Parquet and Arrow files, recursively in name order; hidden and ``_`` files are skipped."""
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if not name.startswith((".", "_")) and suffix_kind(name) in ("parquet", "arrow"):
                found.append(os.path.join(root, name))
    if not found:
        raise InputError(f"{path}: directory holds no .parquet, .arrow or .feather files")
    return found


def output_kind(target: str | None, shards: int | None, input_kind: str) -> str:
    """The output's format: named by ``-o``'s suffix (or the shard pattern's), else the input's."""
    if target is None or target == "-" or os.path.isdir(target) or target.endswith(os.sep):
        return input_kind
    return suffix_kind(target) or input_kind


def parse_schema(spec: str) -> pa.Schema:
    """``--schema``: a Parquet or Arrow file whose schema to use, or ``name:type,...`` with Arrow type names."""
    if os.path.exists(spec):
        kind = sniff_kind(spec)
        try:
            if kind == "parquet":
                import pyarrow.parquet as pq

                return pq.read_schema(spec)
            if kind == "arrow":
                with pa.memory_map(spec) as f:
                    return pa.ipc.open_file(f).schema
        except ARROW_ERRORS as e:
            raise InputError(f"{spec}: cannot read its schema: {e}") from None
        raise UsageError(f"--schema: {spec} is not a Parquet or Arrow file")
    fields = []
    for item in spec.split(","):
        name, colon, type_name = item.partition(":")
        try:
            if not colon or not name.strip():
                raise ValueError
            fields.append(pa.field(name.strip(), pa.type_for_alias(type_name.strip())))
        except (ValueError, KeyError):
            raise UsageError(
                f"--schema: cannot read '{item}'; give NAME:TYPE,... with Arrow type names (int64, string, "
                "float64, bool, timestamp[ms]) or a Parquet or Arrow file"
            ) from None
    return pa.schema(fields)


def schema_difference(first: pa.Schema, other: pa.Schema) -> str:
    """Why ``other`` does not match ``first``, naming the first column that differs."""
    for field in first:
        if field.name not in other.names:
            return f"column '{field.name}' is missing"
    for field in other:
        if field.name not in first.names:
            return f"it has an extra column '{field.name}'"
    for field in first:
        theirs = other.field(field.name)
        if not theirs.type.equals(field.type):
            return f"column '{field.name}' is {theirs.type} here, {field.type} there"
        if theirs.nullable != field.nullable:
            return f"column '{field.name}' is {'' if theirs.nullable else 'not '}nullable here"
    return "the columns are in a different order"


class TableInput:
    """One Parquet, Arrow IPC or JSON Lines file, read in record batches."""

    def __init__(self, path: str, kind: str, schema: pa.Schema | None = None) -> None:
        self.path = path
        self.kind = kind
        self.rows: int | None = None
        self.schema = schema
        self._open: Any = None
        self._live: Iterator[pa.RecordBatch] | None = None  # a peeked JSON stream, to go on with
        if kind == "parquet":
            import pyarrow.parquet as pq

            try:
                # Pages streamed through a small buffer: pre-buffering reads whole row groups
                # (188 MB of pool for 77 MB row groups, against 44 MB streamed).
                self._open = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
            except ARROW_ERRORS as e:
                raise InputError(f"{path}: not a readable Parquet file ({_reason(e)})") from None
            self.schema = self._open.schema_arrow
            self.rows = self._open.metadata.num_rows
        elif kind == "arrow":
            try:
                self._open = pa.ipc.open_file(pa.memory_map(path))
                counts = [self._open.get_batch(i).num_rows for i in range(self._open.num_record_batches)]
            except ARROW_ERRORS as e:
                raise InputError(f"{path}: not a readable Arrow IPC file ({_reason(e)})") from None
            self.schema = self._open.schema
            self.rows = sum(counts)

    def disk_size(self) -> int:
        """Bytes on disk (0 for standard input)."""
        try:
            return os.path.getsize(self.path) if self.path != "-" else 0
        except OSError:
            return 0

    def batches(self, rows: int, block_bytes: int) -> Iterator[pa.RecordBatch]:
        """The file's rows in batches of about ``rows`` rows (JSON: about ``block_bytes`` of text)."""
        if self._live is not None:
            live, self._live = self._live, None
            yield from live
            return
        yield from self._guarded(self._read(rows, block_bytes))

    def peek(self, block_bytes: int) -> pa.RecordBatch | None:
        """The first batch of JSON Lines, which the next ``batches`` starts with (a pipe cannot be read twice)."""
        live = self._guarded(self._json_batches(block_bytes))
        first = next(live, None)
        self._live = live if first is None else chain([first], live)
        return first

    def _read(self, rows: int, block_bytes: int) -> Iterator[pa.RecordBatch]:
        if self.kind == "parquet":
            for group in range(self._open.num_row_groups):
                # One decoding thread: the writer thread has the other core, and Arrow's
                # reader threads held 20 MB more memory here.
                yield from self._open.iter_batches(batch_size=rows, row_groups=[group], use_threads=False)
        elif self.kind == "arrow":
            for i in range(self._open.num_record_batches):
                yield self._open.get_batch(i)
        else:
            yield from self._json_batches(block_bytes)

    def _guarded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches`` with Arrow's errors turned into one-line input errors naming the file."""
        try:
            yield from batches
        except ARROW_ERRORS as e:
            what = {"parquet": "Parquet file", "arrow": "Arrow IPC file", "jsonl": "JSON Lines input"}[self.kind]
            hint = "; give the column types with --schema" if self.kind == "jsonl" and "changed" in str(e) else ""
            raise InputError(f"{self.path}: corrupt or unreadable {what} ({_reason(e)}){hint}") from None

    def _json_batches(self, block_bytes: int) -> Iterator[pa.RecordBatch]:
        import pyarrow.json as pj

        source = FileSource(self.path)
        stream = source.open()
        try:
            reader = pj.open_json(
                stream,
                read_options=pj.ReadOptions(block_size=max(1 << 16, block_bytes)),
                parse_options=pj.ParseOptions(
                    explicit_schema=self.schema, unexpected_field_behavior="infer" if self.schema is None else "error"
                ),
            )
            if self.schema is None:
                self.schema = reader.schema
            for batch in reader:
                yield batch
        except pa.ArrowInvalid as e:
            if "Empty JSON stream" not in str(e):
                raise  # an empty input is no rows, not an error
        finally:
            stream.close()


def _reason(e: BaseException) -> str:
    """An Arrow error's message, on one line."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly ``rows`` rows (the last may be short): big ones sliced, small ones combined.

    Batch boundaries decide the random draws, so they depend only on the data and ``rows``.
    """
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        start = 0
        while start < batch.num_rows:
            take = min(rows - count, batch.num_rows - start)
            held.append(batch.slice(start, take))
            count += take
            start += take
            if count == rows:
                yield _combine(held)
                held, count = [], 0
    if count:
        yield _combine(held)


def _combine(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def take_rows(batches: list[pa.RecordBatch], starts: np.ndarray, order: np.ndarray) -> pa.Table:
    """Rows ``order`` (numbered across ``batches``, which start at rows ``starts``) as one table.

    Arrow's ``take`` on a table of many chunks concatenates each whole column first (4x slower
    on 19 chunks of text, and a copy of the table each call); taking from each batch what it
    holds and putting those rows in order costs two passes over the output rows instead.
    """
    if len(batches) == 1:
        return pa.Table.from_batches([batches[0].take(order)])
    which = np.searchsorted(starts, order, side="right") - 1
    grouped = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[grouped], np.arange(len(batches) + 1))
    parts = []
    for c in np.flatnonzero(np.diff(bounds)).tolist():
        rows = order[grouped[bounds[c] : bounds[c + 1]]] - starts[c]
        parts.append(batches[c].take(rows))
    inverse = np.empty(len(order), np.int64)
    inverse[grouped] = np.arange(len(order))
    return pa.Table.from_batches(parts, schema=batches[0].schema).combine_chunks().take(inverse)


class _SinkFile:
    """A sink seen by pyarrow's writers as a binary file."""

    closed = False

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.discarding = False  # the run failed: the writer's last words go nowhere

    def write(self, data: Any) -> int:
        view = memoryview(data)
        if not self.discarding:
            self.sink.write(view)
        return len(view)

    def flush(self) -> None:
        """Nothing buffered here; the sink flushes at its end."""


class RowWriter:
    """Writes rows in one format to one sink, in row groups (Parquet) or batches (Arrow) of ``group_rows``."""

    def __init__(self, kind: str, sink: Sink, schema: pa.Schema, codec: CodecChoice, group_rows: int) -> None:
        self.kind = kind
        self.sink = sink
        self.schema = schema
        self.codec = codec
        self.group_rows = group_rows
        self._writer: Any = None
        self._file = _SinkFile(sink)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def _open(self) -> Any:
        if self._writer is None:
            name, level = self.codec
            compression = None if name == "none" else name
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(
                    self._file, self.schema, compression=compression or "none", compression_level=level
                )
            else:
                options = pa.ipc.IpcWriteOptions(compression=compression if level is None else pa.Codec(compression, level))
                self._writer = pa.ipc.new_file(self._file, self.schema, options=options)
        return self._writer

    def write(self, table: pa.Table) -> None:
        """Add rows; whole groups are written as soon as they are complete."""
        if self.kind == "jsonl":
            from .jsonout import json_lines

            for data in json_lines(table):
                self.sink.write(data)
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        rows = self._pending_rows if final else self._pending_rows - self._pending_rows % self.group_rows
        if not rows:
            return
        joined = pa.concat_tables(self._pending)
        try:
            if self.kind == "parquet":
                self._open().write_table(joined.slice(0, rows), row_group_size=self.group_rows)
            else:
                self._open().write_table(joined.slice(0, rows), max_chunksize=self.group_rows)
        except pa.ArrowException as e:
            raise OutputError(f"{self.sink.name}: cannot write {self.kind}: {_reason(e)}") from None
        rest = joined.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def discard(self) -> None:
        """The run failed: close the format's writer without writing anything more."""
        self._file.discarding = True
        self._pending = []
        if self._writer is not None:
            try:
                self._writer.close()
            except ARROW_ERRORS:
                pass

    def close(self) -> None:
        """Write the last group and the format's footer (an empty output is still a valid file)."""
        if self.kind == "jsonl":
            return
        self._flush(final=True)
        try:
            self._open().close()
        except pa.ArrowException as e:
            raise OutputError(f"{self.sink.name}: cannot write {self.kind}: {_reason(e)}") from None


class TableOutput(Output):
    """The output of a table shuffle: one file or shards, atomic as for lines, rows in ``kind``'s format."""

    def __init__(
        self, target: str | None, writer: WriteBehind, *, kind: str, shards: int | None,
        codec: CodecChoice, schema: pa.Schema, group_rows: int,
    ) -> None:
        line_codec = codec if kind == "jsonl" else None
        super().__init__(target, writer, shards=shards, compress=line_codec)
        self.kind = kind
        self.codec = codec
        self.schema = schema
        self.group_rows = group_rows
        self.formats: list[RowWriter] = []
        from .codecs import CODECS

        compressed = kind == "jsonl" and codec[0] != "none"
        self.shard_suffix = {"parquet": ".parquet", "arrow": ".arrow"}.get(
            kind, ".jsonl" + (CODECS[codec[0]].suffixes[0] if compressed else "")
        )

    def _codec_choice(self) -> CodecChoice | None:
        return self.codec if self.kind == "jsonl" else ("none", None)

    def _open(self, sink: Sink) -> None:
        self.sinks.append(sink)
        self.formats.append(RowWriter(self.kind, sink, self.schema, self.codec, self.group_rows))

    def _write(self, shard: int, records: Any) -> None:
        self.writer.submit_job(lambda: self.formats[shard].write(records), records.nbytes)

    def _close_format(self, shard: int) -> None:
        self.formats[shard].close()

    def _count(self, records: Any) -> None:
        self.fingerprint += row_fingerprint(records)

    def abort(self) -> None:
        self.writer.wait_idle()
        for rows in self.formats:
            rows.discard()
        super().abort()


def resolve_codec(kind: str, spec: str | None, target: str | None) -> CodecChoice:
    """``--compress`` for a table output: a column codec for Parquet/Arrow, a stream codec for JSON Lines."""
    if kind == "jsonl":
        from .codecs import codec_for_suffix, parse_compress

        if spec is not None:
            return parse_compress(spec)
        named = codec_for_suffix(target) if target not in (None, "-") else None
        return ("none", None) if named is None else (named, None)
    choices = FORMAT_CODECS[kind]
    if spec is None:
        return choices[0], None
    name, colon, level_text = spec.strip().lower().partition(":")
    if name not in choices:
        raise UsageError(f"--compress: {kind} output takes {', '.join(choices)} (optionally :LEVEL), not '{spec}'")
    if colon and not (level_text.isdigit() and name not in ("none", "snappy")):
        raise UsageError(f"--compress: invalid level in '{spec}'")
    return name, int(level_text) if colon else None


@dataclass(frozen=True)
class TableJob:
    """A table shuffle, resolved: inputs, output and the options that apply to rows."""

    inputs: list[TableInput]
    output: str | None
    kind: str
    codec: CodecChoice
    memory: int
    entropy: int
    head_count: int | None
    tmp_dir: str | None
    shards: int | None
    compress_temp: bool
    verify: bool
    row_group_size: int | None


def open_inputs(paths: Sequence[str], json_schema: pa.Schema | None) -> list[TableInput]:
    """Open every input (directories expanded) and check that their schemas match the first's."""
    files: list[str] = []
    for path in paths:
        files.extend(dataset_files(path) if os.path.isdir(path) else [path])
    inputs = []
    for path in files:
        kind = sniff_kind(path) if path != "-" else None
        if kind is None:
            if path != "-" and not os.path.exists(path):
                raise InputError(f"{path}: No such file or directory")
            named = suffix_kind(path)
            if named in ("parquet", "arrow"):
                magic = "PAR1" if named == "parquet" else "ARROW1"
                raise InputError(f"{path}: not a {named.capitalize()} file (it does not start with {magic})")
            kind = "jsonl"
        inputs.append(TableInput(path, kind, json_schema if kind == "jsonl" else None))
    kinds = {i.kind for i in inputs}
    if len(kinds) > 1 and "jsonl" in kinds:
        odd = next(i for i in inputs if i.kind == "jsonl")
        raise UsageError(f"{odd.path}: not a Parquet or Arrow file; line files and tables cannot be shuffled together")
    first = next((i for i in inputs if i.schema is not None), None)
    for other in inputs:
        if first is not None and other.schema is not None and not other.schema.equals(first.schema, check_metadata=False):
            raise InputError(
                f"{other.path}: schema does not match {first.path}: {schema_difference(first.schema, other.schema)}"
            )
    return inputs


class TableRun:
    """One table shuffle: reads batches, decides in-memory or external, writes the output."""

    def __init__(self, job: TableJob, progress: Progress) -> None:
        self.job = job
        self.progress = progress
        self.limit = job.memory
        self.piece = plan.piece_bytes(self.limit)
        self.records = 0
        self.buckets = 0
        self.depth = 0
        self.read_fingerprint = Fingerprint()
        check_output_directory(job.output, job.shards)

    def run(self) -> tuple[int, int, int, int, float]:
        """Shuffle; return records and bytes written, buckets, passes and seconds."""
        start = time.perf_counter()
        row_bytes, schema = self._sample()
        batch_rows = max(1, self.piece // max(1, row_bytes))
        group_rows = self.job.row_group_size or max(
            1, min(MAX_GROUP_ROWS, min(GROUP_BYTES, plan.block_budget(self.limit) // 8) // max(1, row_bytes))
        )
        writer = WriteBehind(plan.IN_FLIGHT_PIECES * self.piece)
        self.out = TableOutput(
            self.job.output, writer, kind=self.job.kind, shards=self.job.shards,
            codec=self.job.codec, schema=schema, group_rows=group_rows,
        )
        self.out.verify = self.job.verify
        self.writer = writer
        try:
            if self.job.head_count != 0:
                self._shuffle(batch_rows, row_bytes)
            self.progress.close()
            self.out.begin(0)
            if self.job.verify:
                writer.flush()
                if self.out.fingerprint != self.read_fingerprint:
                    raise OutputError(
                        f"verification failed: read {self.read_fingerprint.records} rows (digest "
                        f"{self.read_fingerprint.digest:016x}), wrote {self.out.fingerprint.records} (digest "
                        f"{self.out.fingerprint.digest:016x}); output not put in place"
                    )
            self.out.commit()
        except BaseException:
            self.out.abort()
            raise
        finally:
            writer.close()
            self.progress.close()
        passes = 1 if self.buckets == 0 else 2 + self.depth
        return self.records, self.out.bytes_written, self.buckets, passes, time.perf_counter() - start

    def _sample(self) -> tuple[int, pa.Schema]:
        """Arrow bytes per row, from the first rows of the first input, and the schema to write."""
        first = self.job.inputs[0]
        if first.kind == "jsonl":
            # Without --schema the first block's columns are inferred, and the rest must follow them.
            batch = first.peek(self.piece)
            if first.schema is None:
                raise InputError(f"{first.path}: no JSON rows to infer the columns from; give them with --schema")
            for other in self.job.inputs:
                other.schema = first.schema
            if batch is None:
                return 1, first.schema
            return max(1, batch.nbytes // max(1, batch.num_rows)), first.schema
        assert first.schema is not None
        for source in self.job.inputs:
            batch = next(source.batches(1024, 1 << 16), None)
            if batch is not None and batch.num_rows:
                return max(1, batch.slice(0, 1024).nbytes // min(1024, batch.num_rows)), first.schema
        return 1, first.schema

    def _batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        """Every input's rows in batches of ``rows``, fingerprinted when verifying."""
        def read() -> Iterator[pa.RecordBatch]:
            for source in self.job.inputs:
                for batch in source.batches(rows, self.piece):
                    self.progress.update(batch.nbytes)
                    yield batch

        for batch in _rebatch(read(), rows):
            if self.job.verify:
                self.read_fingerprint += row_fingerprint(batch)
            yield batch

    def _shuffle(self, batch_rows: int, row_bytes: int) -> None:
        inputs = self.job.inputs
        known = all(i.rows is not None for i in inputs)
        total_rows = sum(i.rows or 0 for i in inputs) if known else None
        est_bytes: int | None
        if total_rows is not None:
            est_bytes = total_rows * row_bytes
        else:
            est_bytes = sum(i.disk_size() for i in inputs) or None
        self.progress.start("reading", est_bytes)
        batches = self._batches(batch_rows)
        held: list[pa.RecordBatch] = []
        held_bytes = held_rows = 0
        if est_bytes is None or plan.fits_in_memory(est_bytes, total_rows or 0, self.limit):
            for batch in batches:
                held.append(batch)
                held_bytes += batch.nbytes
                held_rows += batch.num_rows
                if not plan.fits_in_memory(held_bytes, held_rows, self.limit):
                    break
            else:
                self._in_memory(held)
                return
        if est_bytes is None or est_bytes < held_bytes:
            est_bytes = held_bytes * 4  # an unknown total, at least this much more: recursion absorbs a miss
        with TempSpace(self.job.tmp_dir) as temp:
            everything = chain(held, batches)
            del held
            self._external(everything, est_bytes, total_rows or max(1, est_bytes // row_bytes), temp, (), 0)

    def _in_memory(self, batches: list[pa.RecordBatch]) -> None:
        table = pa.Table.from_batches(batches, schema=self.out.schema.remove_metadata() if not batches else None)
        batches.clear()
        n = table.num_rows
        head = self.job.head_count
        count = n if head is None else min(n, head)
        self.out.begin(count)
        self._emit_permuted(table, rng_for(self.job.entropy, (0,)), count)

    def _emit_permuted(self, table: pa.Table, rng: np.random.Generator, count: int) -> None:
        """Write ``count`` rows of ``table`` in uniformly random order (a uniform sample if fewer than all)."""
        n = table.num_rows
        if count == n:
            order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
            rng.shuffle(order)
        else:
            order = rng.choice(n, size=count, replace=False)
        chunk = max(1, self.piece * n // max(1, table.nbytes)) if n else 1
        batches = table.to_batches()
        starts = np.zeros(len(batches) + 1, np.int64)
        np.cumsum([b.num_rows for b in batches], out=starts[1:])
        for lo in range(0, count, chunk):
            self.out.emit(take_rows(batches, starts, order[lo : lo + chunk]))
        self.records += count

    def _external(
        self, batches: Iterator[pa.RecordBatch], est_bytes: int, est_rows: int,
        temp: TempSpace, key: tuple[int, ...], depth: int,
    ) -> None:
        """Two-pass scatter over ``batches``; a bucket too big for memory is scattered again, one level deeper."""
        if depth > plan.MAX_DEPTH:
            raise InputError(f"rows could not be split below {plan.format_size(self.limit)} after {depth} passes; raise -S")
        self.depth = max(self.depth, depth)
        if depth == 0:
            temp.check_free(est_bytes)
        k = plan.bucket_count(est_bytes, est_rows, self.limit)
        self.buckets += k
        buckets = TableBuckets(os.path.join(temp.path, "-".join(map(str, key)) or "top"), k, self.out.schema, self.job.compress_temp)
        try:
            keep = self._pass1(batches, buckets, key)
            self.writer.flush()
            buckets.close()
            if depth == 0:
                total = int(buckets.rows[:keep].sum())
                self.progress.close()
                self.out.begin(total if self.job.head_count is None else min(total, self.job.head_count))
            self._pass2(buckets, keep, temp, key, depth)
        finally:
            self.writer.wait_idle()
            buckets.close()

    def _pass1(self, batches: Iterator[pa.RecordBatch], buckets: TableBuckets, key: tuple[int, ...]) -> int:
        """Scatter every batch into ``buckets``; return how many leading buckets ``-n`` still needs."""
        k = keep = buckets.k
        head = self.job.head_count
        dtype = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.uint32
        for index, batch in enumerate(batches):
            rng = rng_for(self.job.entropy, key + (1, index))
            ids = rng.integers(0, k, batch.num_rows, dtype=dtype)
            counts = np.bincount(ids, minlength=k)
            counts[keep:] = 0
            order = np.argsort(ids, kind="stable")[: int(counts.sum())]
            del ids
            scattered = batch.take(order)
            buckets.rows += counts
            self.writer.submit_job(partial(buckets.append, scattered, counts), scattered.nbytes)
            if head is not None:
                last = int(np.searchsorted(np.cumsum(buckets.rows), head))
                keep = min(keep, last + 1)
        return keep

    def _pass2(self, buckets: TableBuckets, keep: int, temp: TempSpace, key: tuple[int, ...], depth: int) -> None:
        name = "pass 2: shuffle" if depth == 0 else f"pass {depth + 2}: shuffle"
        self.progress.start(name, int(buckets.nbytes[:keep].sum()))
        for j in range(keep):
            left = None if self.job.head_count is None else self.job.head_count - self.records
            if left == 0:
                break
            rows, nbytes = int(buckets.rows[j]), int(buckets.nbytes[j])
            if not rows:
                continue
            if plan.fits_in_memory(nbytes, rows, self.limit):
                table = buckets.table(j)
                if table.num_rows != rows:
                    raise TempSpaceError(
                        f"{buckets.path(j)}: temporary bucket holds {table.num_rows} rows, not the {rows} written; "
                        "the temporary directory was changed or is failing"
                    )
                self._emit_permuted(table, rng_for(self.job.entropy, key + (2, j)), rows if left is None else min(rows, left))
                del table
            else:
                self._external(
                    _rebatch(buckets.batches(j), max(1, self.piece * rows // nbytes)),
                    nbytes, rows, temp, key + (3, j), depth + 1,
                )
                self.progress.start(name, None)
            self.progress.update(nbytes)
            buckets.remove(j)


class TableBuckets:
    """The k temporary buckets of one pass, each an Arrow IPC stream file, with row and byte counts."""

    def __init__(self, directory: str, k: int, schema: pa.Schema, compress: bool) -> None:
        self.k = k
        self.directory = directory
        self.rows = np.zeros(k, np.int64)
        self.nbytes = np.zeros(k, np.int64)
        self.schema = schema.remove_metadata()
        options = pa.ipc.IpcWriteOptions(compression="zstd" if compress else None)
        buffer = max(4096, min(1 << 20, plan.MAX_PIECE // k))
        self._writers: list[Any] = []
        try:
            os.makedirs(directory)
            for j in range(k):
                stream = pa.BufferedOutputStream(pa.OSFile(self.path(j), "wb"), buffer)
                self._writers.append((pa.ipc.new_stream(stream, self.schema, options=options), stream))
        except ARROW_ERRORS as e:
            self.close()
            raise TempSpaceError(f"{directory}: cannot create temporary buckets: {_reason(e)}") from None

    def path(self, j: int) -> str:
        return os.path.join(self.directory, f"{j:05d}.arrows")

    def append(self, scattered: pa.RecordBatch, counts: np.ndarray) -> None:
        """Append each bucket's run of ``scattered`` (rows grouped by bucket, ``counts`` per bucket)."""
        start = 0
        try:
            for j in np.flatnonzero(counts).tolist():
                part = scattered.slice(start, int(counts[j]))
                self._writers[j][0].write_batch(part)
                self.nbytes[j] += part.nbytes
                start += int(counts[j])
        except ARROW_ERRORS as e:
            raise TempSpaceError(f"{self.directory}: cannot write temporary bucket: {_reason(e)}") from None

    def close(self) -> None:
        """End every bucket's stream (idempotent)."""
        writers, self._writers = self._writers, []
        problem: BaseException | None = None
        for writer, stream in writers:
            try:
                writer.close()
                stream.close()
            except ARROW_ERRORS as e:
                problem = problem or e
        if problem is not None:
            raise TempSpaceError(f"{self.directory}: cannot write temporary bucket: {_reason(problem)}")

    def batches(self, j: int) -> Iterator[pa.RecordBatch]:
        """Bucket ``j``'s rows as written."""
        try:
            with pa.memory_map(self.path(j)) as f:
                yield from pa.ipc.open_stream(f)
        except ARROW_ERRORS as e:
            raise TempSpaceError(f"{self.path(j)}: temporary bucket unreadable: {_reason(e)}") from None

    def table(self, j: int) -> pa.Table:
        """Bucket ``j`` in memory (mapped when uncompressed)."""
        return pa.Table.from_batches(list(self.batches(j)), schema=self.schema)

    def remove(self, j: int) -> None:
        try:
            os.unlink(self.path(j))
        except FileNotFoundError:
            pass


def shuffle_tables(job: TableJob, progress: Progress) -> tuple[int, int, int, int, float]:
    """Run a table shuffle (see ``api.shuffle``): records, bytes, buckets, passes, seconds."""
    return TableRun(job, progress).run()

