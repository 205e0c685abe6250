"""Parquet and Arrow IPC datasets: their rows shuffled by the same two-pass scatter as lines.

Rows are read in record batches. Pass 1 draws an i.i.d. uniform bucket for every row and
appends each bucket's rows to an Arrow IPC stream file; pass 2 loads one bucket at a time,
permutes it uniformly and writes it out, so every permutation of the rows is equally
likely. The memory limit is held against Arrow buffer sizes (``nbytes``). JSON Lines converts
both ways: read with pyarrow's JSON reader, written by the vectorised encoder in ``jsonout``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from ..core.fingerprint import Fingerprint
from ..errors import InputError, OutputError, TempSpaceError, UsageError, option
from ..storage.output import Output
from ..storage.sinks import CodecChoice, Sink
from ..storage.sources import FileSource
from ..storage.tempspace import full_disk_hint
from ..storage.writeback import WriteBehind
from .detect import dataset_files, sniff_kind, suffix_kind
from ..core.records import array_block, list_spans
from .rowhash import row_fingerprint

#: Column codecs each output format offers (``--compress``), the first being the default.
FORMAT_CODECS = {
    "parquet": ("zstd", "snappy", "gzip", "lz4", "brotli", "none"),
    "arrow": ("none", "zstd", "lz4"),
}

#: Default row group (Arrow record batch) of a table output: about 64 MiB of rows, or an
#: eighth of the memory limit if that is less (the writer holds a group before writing it).
GROUP_BYTES = 64 << 20

#: Largest batch of rows scattered (and gathered) at once. Below jemalloc's 8 MiB threshold,
#: above which every allocation is fresh memory to fault in: 1 GiB of Parquet rows at -S 256M
#: took 5.8-6.1 s (1.5 s system time) with 6 MiB batches, 6.7-7.2 s (4.3 s) with 16 MiB ones
#: and 9.1-9.6 s with 3 MiB ones (per-batch costs).
TABLE_PIECE = 6 << 20

#: Largest chunk a table (or bucket) is merged into before it is gathered: gathering a piece
#: takes from every chunk, so a bucket left in its thousands of scattered slices makes the gather
#: quadratic, while huge chunks are fresh memory to fault in. 1 GiB in memory took 6.9-7.5 s
#: with 64 MiB chunks, 9-10 s with 512 MiB ones.
MAX_CHUNK = 64 << 20

ARROW_ERRORS = (pa.ArrowException, OSError)

#: What each kind of table file is called in messages.
FILE_KINDS = {"parquet": "Parquet file", "arrow": "Arrow IPC file", "stream": "Arrow IPC stream"}


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
        raise UsageError(f"{option('schema')}: {spec} is not a Parquet or Arrow file")
    fields = []
    for item in spec.split(","):
        name, colon, type_name = item.partition(":")
        try:
            if not colon or not name.strip():
                raise ValueError
            fields.append(pa.field(name.strip(), pa.type_for_alias(type_name.strip())))
        except (ValueError, KeyError):
            raise UsageError(
                f"{option('schema')}: cannot read '{item}'; give NAME:TYPE,... with Arrow type names (int64, string, "
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


def plain_type(t: pa.DataType) -> pa.DataType:
    """``t`` with string and binary views made large strings and binaries, which every kernel takes
    (pyarrow has no ``take`` for views; Polars writes them by default)."""
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        return pa.large_binary() if pa.types.is_binary_view(t) else pa.large_string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        field = t.value_field
        make = pa.list_ if pa.types.is_list(t) else pa.large_list
        return make(field.with_type(plain_type(field.type)))
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        return pa.struct([f.with_type(plain_type(f.type)) for f in fields])
    return t


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with views replaced (see ``plain_type``), metadata kept."""
    fields = [f.with_type(plain_type(f.type)) for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


class TableInput:
    """One Parquet, Arrow IPC or JSON Lines file, read in record batches.

    Files are opened only while they are read: a dataset may have more files than a process
    may hold open, and pyarrow's Parquet reader keeps its last row group while it lives.
    """

    def __init__(self, path: str, kind: str, schema: pa.Schema | None = None) -> None:
        self.path = path
        self.kind = kind
        self.rows: int | None = None
        self.schema = schema  # as read; batches come cast to plain_schema(schema)
        self._live: Iterator[pa.RecordBatch] | None = None  # a peeked JSON stream, to go on with
        what = FILE_KINDS.get(kind)
        if what is None:
            return
        try:
            if kind == "parquet":
                with self._parquet() as pf:
                    self.schema = pf.schema_arrow
                    self.rows = pf.metadata.num_rows
            else:
                with pa.memory_map(path) as f:
                    reader = pa.ipc.open_file(f) if kind == "arrow" else pa.ipc.open_stream(f)
                    self.schema = reader.schema
                    batches = (reader.get_batch(i) for i in range(reader.num_record_batches)) if kind == "arrow" else reader
                    self.rows = 0
                    for batch in batches:
                        batch.validate()  # lengths against buffer sizes (cheap): row counts to plan with
                        self.rows += batch.num_rows
        except ARROW_ERRORS as e:
            raise InputError(f"{path}: not a readable {what} ({_reason(e)})") from None

    def _parquet(self) -> Any:
        import pyarrow.parquet as pq

        # Pages streamed through a small buffer: pre-buffering reads whole row groups
        # (188 MB of pool for 77 MB row groups, against 44 MB streamed).
        return pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20)

    def disk_size(self) -> int:
        """Bytes on disk (0 for standard input)."""
        try:
            return os.path.getsize(self.path) if self.path != "-" else 0
        except OSError:
            return 0

    def batches(self, block_bytes: int) -> Iterator[pa.RecordBatch]:
        """The file's rows in record batches of about ``block_bytes`` (Parquet, JSON) or as stored (Arrow)."""
        if self._live is not None:
            live, self._live = self._live, None
            yield from live
            return
        yield from self._guarded(self._read(block_bytes))

    def peek(self, block_bytes: int) -> pa.RecordBatch | None:
        """The first batch of JSON Lines, which the next ``batches`` starts with (a pipe cannot be read twice)."""
        live = self._guarded(self._json_batches(block_bytes))
        first = next(live, None)
        self._live = live if first is None else chain([first], live)
        return first

    def _read(self, block_bytes: int) -> Iterator[pa.RecordBatch]:
        if self.kind == "jsonl":
            yield from self._json_batches(block_bytes)
            return
        rows = 0
        for batch in self._stored(block_bytes):
            # Arrow's kernels trust the arrays they get: offsets, dictionary indices and lengths
            # out of range in a damaged file made ``take`` read wild memory (a segfault). Full
            # validation reads every offset and index once; see the README for its cost.
            batch.validate(full=True)
            rows += batch.num_rows
            yield batch
        if rows != self.rows:
            what = FILE_KINDS[self.kind]
            raise InputError(f"{self.path}: corrupt {what}: it holds {rows} rows, its metadata says {self.rows}")

    def _stored(self, block_bytes: int) -> Iterator[pa.RecordBatch]:
        """The record batches of a Parquet or Arrow file as the file's reader gives them, unchecked."""
        if self.kind == "parquet":
            with self._parquet() as pf:
                for group in range(pf.num_row_groups):
                    meta = pf.metadata.row_group(group)
                    rows = max(1, block_bytes * meta.num_rows // max(1, meta.total_byte_size))
                    # One decoding thread: the writer thread has the other core, and Arrow's
                    # reader threads held 20 MB more memory here.
                    yield from pf.iter_batches(batch_size=rows, row_groups=[group], use_threads=False)
        elif self.kind in ("arrow", "stream"):
            with pa.memory_map(self.path) as f:
                if self.kind == "arrow":
                    reader = pa.ipc.open_file(f)
                    for i in range(reader.num_record_batches):
                        yield reader.get_batch(i)
                else:
                    yield from pa.ipc.open_stream(f)

    def _guarded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches`` made plain (no views), with Arrow's errors as one-line input errors naming the file."""
        plain: pa.Schema | None = None  # known once the first batch is read (JSON infers it)
        try:
            for batch in batches:
                if plain is None:
                    assert self.schema is not None
                    plain = plain_schema(self.schema)
                yield batch if batch.schema.equals(plain) else batch.cast(plain)
        except ARROW_ERRORS as e:
            what = FILE_KINDS.get(self.kind, "JSON Lines input")
            hint = f"; give the column types with {option('schema')}" if self.kind == "jsonl" and self._inferred else ""
            raise InputError(f"{self.path}: corrupt or unreadable {what} ({_reason(e)}){hint}") from None

    _inferred = False  # JSON columns inferred from the first block (no --schema)

    def _json_batches(self, block_bytes: int) -> Iterator[pa.RecordBatch]:
        """JSON Lines rows, parsed from memory a block of whole lines at a time.

        Arrow's streaming JSON reader reads ahead from a Python stream on its own threads: after
        a parse error they went on calling into Python while the interpreter shut down (``Fatal
        Python error: PyGILState_Release``, or a hang at exit). Blocks read here and copied into
        Arrow's own memory keep Arrow's threads away from Python objects (its parse threads
        still share a block), and a failing block can be looked at to say which line is wrong.
        """
        import pyarrow.json as pj

        stream = FileSource(self.path).open()
        line = 1  # the number of the block's first line
        try:
            for block in _line_blocks(stream, max(1 << 16, block_bytes), self.path):
                given = self.schema
                parse = pj.ParseOptions(
                    explicit_schema=given, unexpected_field_behavior="infer" if given is None else "error"
                )
                # Parsed in four parts at once; a Python buffer would be let go from Arrow's threads.
                owned = pa.allocate_buffer(len(block))
                np.frombuffer(owned, np.uint8)[:] = np.frombuffer(block, np.uint8)
                starts = _line_starts(block)
                # Arrow's parts must each hold the longest line whole.
                longest = int(np.diff(starts, append=len(block)).max())
                read = pj.ReadOptions(block_size=max(1 << 16, len(block) // 4 + 1, longest + 1))
                # A line that is not an object is found here first: Arrow crashed (segfault) on
                # a block starting with a null line.
                problem = _json_scan(block, line, given, self._inferred) if _odd_lines(block, starts) else None
                try:
                    if problem is None:
                        table = pj.read_json(pa.BufferReader(owned), read_options=read, parse_options=parse)
                except pa.ArrowInvalid:
                    problem = _json_problem(owned, block, line, given, self._inferred, parse)
                if problem is not None:
                    raise InputError(f"{self.path}: {problem}")
                line += block.count(b"\n")
                if self.schema is None:
                    if not table.num_rows:
                        continue  # blank lines: nothing to infer the columns from yet
                    self.schema = table.schema
                    self._inferred = True
                yield from table.to_batches()
        finally:
            stream.close()


def _line_blocks(stream: Any, size: int, name: str) -> Iterator[bytes]:
    """The bytes of ``stream`` in blocks of whole lines of about ``size`` bytes (the last may lack
    its newline); a line over eight blocks long is an error."""
    carry = b""
    while True:
        parts, have = [carry], len(carry)
        while have < size or have == len(carry):
            more = stream.read(max(size - have, 1 << 16))
            if not more:
                break
            parts.append(more)
            have += len(more)
        data = b"".join(parts)
        if have == len(carry):
            if carry:
                yield carry
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > 8 * size:
            raise InputError(f"{name}: a JSON line is longer than {8 * size} bytes, the most this memory limit allows; raise {option('memory')}")
        if cut:
            yield data[:cut]
        carry = data[cut:]


def _line_starts(block: bytes) -> np.ndarray:
    """Where each line of a non-empty ``block`` starts."""
    data = np.frombuffer(block, np.uint8)
    return np.concatenate([np.zeros(1, np.int64), np.flatnonzero(data[:-1] == 10) + 1])


def _odd_lines(block: bytes, starts: np.ndarray) -> bool:
    """Whether a line of ``block`` (starting at ``starts``) starts with something other than ``{``
    (blank lines aside)."""
    firsts = np.frombuffer(block, np.uint8)[starts]
    return bool(np.any((firsts != ord("{")) & (firsts != 10) & (firsts != 13)))


def _json_scan(block: bytes, first: int, schema: pa.Schema | None, inferred: bool) -> str | None:
    """The first line of ``block`` (which starts at line ``first``) that is not JSON, not an object,
    or has a field ``schema`` lacks, said as such; None if every line is a fitting object."""
    import json

    names = None if schema is None else set(schema.names)
    for number, text in enumerate(block.split(b"\n"), first):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except ValueError as e:
            what = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
            return f"line {number} is not JSON ({what})"
        if not isinstance(value, dict):
            return f"line {number} is not a JSON object (it is {_json_kind(value)})"
        extra = [key for key in value if names is not None and key not in names]
        if extra:
            where = "the first rows did not have; give the column types with " + option("schema") if inferred else option("schema") + " does not name"
            return f"line {number} has a field '{extra[0]}' that {where}"
    return None


def _json_problem(
    owned: pa.Buffer, block: bytes, first: int, schema: pa.Schema | None, inferred: bool, parse: Any
) -> str:
    """What is wrong in a block of JSON Lines Arrow would not read (it starts at line ``first``),
    naming the line and field where they can be found."""
    import re

    import pyarrow.json as pj

    found = _json_scan(block, first, schema, inferred)
    if found is not None:
        return found
    try:  # again as one part, so that Arrow's row numbers count from the block's start
        pj.read_json(pa.BufferReader(owned), read_options=pj.ReadOptions(use_threads=False, block_size=len(block) + 1),
                     parse_options=parse)
        reason = "it reads when parsed whole"
    except pa.ArrowInvalid as e:
        reason = _reason(e).removeprefix("JSON parse error: ")
    hint = "; give the column types with " + option("schema") if inferred or schema is None else ""
    rows = [n for n, text in enumerate(block.split(b"\n"), first) if text.strip()]  # the line of each row
    change = re.fullmatch(r"Column\((.*)\) changed from (\w+) to (\w+) in row (\d+)", reason)
    if change and int(change[4]) < len(rows):
        path, before, after, row = change.groups()
        return f"line {rows[int(row)]}: field '{path.lstrip('/')}' changed from {before} to {after}{hint}"
    return f"corrupt or unreadable JSON Lines input in the lines from {first} ({reason}){hint}"


def _json_kind(value: Any) -> str:
    """How JSON calls the type of a decoded value."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else "a number"


def _reason(e: BaseException) -> str:
    """An Arrow error's message, on one line."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def row_sizes(batch: pa.RecordBatch) -> np.ndarray:
    """Bytes each row takes in Arrow buffers, about: fixed widths, string lengths with their
    offsets, list elements summed. Depends only on the row's values, so batches cut by it are
    the same whatever the input's row groups."""
    total = np.ones(batch.num_rows, np.int64)
    for column in batch.columns:
        total += _value_sizes(column)
    return total


def _value_sizes(arr: Any) -> np.ndarray:
    t = arr.type
    n = len(arr)
    if isinstance(t, pa.ExtensionType):
        return _value_sizes(arr.storage)
    if pa.types.is_dictionary(t):
        return np.full(n, t.index_type.bit_width // 8, np.int64)
    if pa.types.is_struct(t):
        sizes = np.zeros(n, np.int64)
        for field in arr.flatten():
            sizes += _value_sizes(field)
        return sizes
    if pa.types.is_fixed_size_list(t):
        values = arr.values.slice(arr.offset * t.list_size, n * t.list_size)
        per_row: np.ndarray = _value_sizes(values).reshape(n, t.list_size).sum(axis=1)
        return per_row
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        offsets, values = list_spans(arr)
        sums = np.zeros(len(values) + 1, np.int64)
        np.cumsum(_value_sizes(values), out=sums[1:])
        spans: np.ndarray = sums[offsets[1:]] - sums[offsets[:-1]]
        return spans + (8 if pa.types.is_large_list(t) else 4)
    if pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t) or pa.types.is_large_string(t):
        _, ends = array_block(arr)
        return np.diff(ends).astype(np.int64) + ends.itemsize
    width = getattr(t, "bit_width", 64)
    return np.full(n, max(1, width // 8), np.int64)


def _rebatch(
    batches: Iterable[pa.RecordBatch], max_bytes: int, max_rows: int
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Batches of the rows of ``batches`` cut at ``max_bytes`` (by ``row_sizes``) or ``max_rows``,
    whichever comes first, with their row sizes; a row bigger than ``max_bytes`` is a batch alone.

    Cut points depend only on the rows, so the random draws (one stream per batch) do not
    depend on how the input happens to be split into row groups or files.
    """
    held: list[pa.RecordBatch] = []
    held_sizes: list[np.ndarray] = []
    held_bytes = held_rows = 0
    for batch in batches:
        sizes = row_sizes(batch)
        ends = np.cumsum(sizes)
        start = 0
        while start < batch.num_rows:
            before = int(ends[start - 1]) if start else 0
            fit = int(np.searchsorted(ends, before + max_bytes - held_bytes, side="right")) - start
            take = min(fit, max_rows - held_rows, batch.num_rows - start)
            if take <= 0 and not held:
                take = 1
            if take > 0:
                held.append(batch.slice(start, take))
                held_sizes.append(sizes[start : start + take])
                held_bytes += int(ends[start + take - 1]) - before
                held_rows += take
                start += take
            if start < batch.num_rows or held_rows >= max_rows or held_bytes >= max_bytes:
                yield _combine(held), np.concatenate(held_sizes)
                held, held_sizes, held_bytes, held_rows = [], [], 0, 0
    if held:
        yield _combine(held), np.concatenate(held_sizes)


def _drain(items: list[Any]) -> Iterator[Any]:
    """The items of a list, each let go as soon as it is taken (a plain iterator keeps them all)."""
    items.reverse()
    while items:
        yield items.pop()


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
    """Writes rows in one format to one sink, in row groups (Parquet) or record batches (Arrow) of
    ``group_rows`` rows if given, else of about ``group_bytes``."""

    def __init__(
        self, kind: str, sink: Sink, schema: pa.Schema, codec: CodecChoice, group_rows: int | None, group_bytes: int
    ) -> None:
        self.kind = kind
        self.sink = sink
        self.schema = schema
        self.codec = codec
        self.group_rows = group_rows
        self.group_bytes = group_bytes
        self._writer: Any = None
        self._file = _SinkFile(sink)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0

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
            from .jsonl import json_lines

            for data in json_lines(table):
                self.sink.write(data)
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        if self.group_rows is not None and self._pending_rows >= self.group_rows:
            self._flush(self._pending_rows - self._pending_rows % self.group_rows)
        elif self.group_rows is None and self._pending_bytes >= self.group_bytes:
            self._flush(self._pending_rows)

    def _flush(self, rows: int) -> None:
        """Write the first ``rows`` pending rows, in groups of ``group_rows`` (or as one group)."""
        if not rows:
            return
        joined = pa.concat_tables(self._pending)
        if self.kind == "arrow" and not joined.schema.equals(self.schema):
            joined = joined.cast(self.schema)  # dictionaries decoded: an IPC file cannot replace them
        group = self.group_rows or rows
        try:
            if self.kind == "parquet":
                self._open().write_table(joined.slice(0, rows), row_group_size=group)
            else:
                self._open().write_table(joined.slice(0, rows), max_chunksize=group)
        except pa.ArrowException as e:
            raise OutputError(f"{self.sink.name}: cannot write {self.kind}: {_reason(e)}") from None
        rest = joined.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self._pending_bytes = rest.nbytes if rest.num_rows else 0

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
        self._flush(self._pending_rows)
        try:
            self._open().close()
        except pa.ArrowException as e:
            raise OutputError(f"{self.sink.name}: cannot write {self.kind}: {_reason(e)}") from None


def decoded_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with dictionary columns as their values: buckets give each chunk its own
    dictionary, and the Arrow IPC file format cannot replace a dictionary midway."""
    fields = [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


class TableOutput(Output):
    """The output of a table shuffle: one file or shards, atomic as for lines, rows in ``kind``'s format."""

    def __init__(
        self, target: str | None, writer: WriteBehind, *, kind: str, shards: int | None,
        codec: CodecChoice, schema: pa.Schema, group_rows: int | None, group_bytes: int, sync: bool = True,
    ) -> None:
        line_codec = codec if kind == "jsonl" else None
        super().__init__(target, writer, shards=shards, compress=line_codec, sync=sync)
        self.kind = kind
        self.codec = codec
        self.schema = schema
        self.group_rows = group_rows
        self.group_bytes = group_bytes
        self.formats: list[RowWriter] = []
        from ..storage.codecs import CODECS

        compressed = kind == "jsonl" and codec[0] != "none"
        self.shard_suffix = {"parquet": ".parquet", "arrow": ".arrow"}.get(
            kind, ".jsonl" + (CODECS[codec[0]].suffixes[0] if compressed else "")
        )

    def _codec_choice(self) -> CodecChoice | None:
        return self.codec if self.kind == "jsonl" else ("none", None)

    def _open(self, sink: Sink) -> None:
        self.sinks.append(sink)
        schema = decoded_schema(self.schema) if self.kind == "arrow" else self.schema
        self.formats.append(RowWriter(self.kind, sink, schema, self.codec, self.group_rows, self.group_bytes))

    def _write(self, shard: int, records: Any) -> None:
        self.writer.submit_job(lambda: self.formats[shard].write(records), records.nbytes)

    def _close_format(self, shard: int) -> None:
        self.formats[shard].close()

    def _count(self, records: Any) -> None:
        self.fingerprint += row_fingerprint(records)

    def describe(self, fp: Fingerprint) -> str:
        return f"{fp.records} rows (digest {fp.digest:016x})"

    def abort(self) -> None:
        self.writer.wait_idle()
        for rows in self.formats:
            rows.discard()
        super().abort()


def resolve_codec(kind: str, spec: str | None, target: str | None) -> CodecChoice:
    """``--compress`` for a table output: a column codec for Parquet/Arrow, a stream codec for JSON Lines."""
    if kind == "jsonl":
        from ..storage.codecs import codec_for_suffix, parse_compress

        if spec is not None:
            return parse_compress(spec)
        named = codec_for_suffix(target) if target not in (None, "-") else None
        return ("none", None) if named is None else (named, None)
    choices = FORMAT_CODECS[kind]
    if spec is None:
        return choices[0], None
    name, colon, level_text = spec.strip().lower().partition(":")
    if name not in choices:
        raise UsageError(f"{option('compress')}: {kind} output takes {', '.join(choices)} (optionally :LEVEL), not '{spec}'")
    if not colon:
        return name, None
    if name in ("none", "snappy"):
        raise UsageError(f"{option('compress')}: {name} takes no level (got '{spec}')")
    low, high = pa.Codec.minimum_compression_level(name), pa.Codec.maximum_compression_level(name)
    if not (level_text.isdigit() and low <= int(level_text) <= high):
        raise UsageError(f"{option('compress')}: {name} level must be an integer from {max(low, 0)} to {high} (got '{spec}')")
    return name, int(level_text)


def open_inputs(paths: Sequence[str], json_schema: pa.Schema | None) -> list[TableInput]:
    """Open every input (directories expanded) and check that their schemas match the first's."""
    files: list[str] = []
    for path in paths:
        found = dataset_files(path) if os.path.isdir(path) else [path]
        if not found:
            raise InputError(f"{path}: directory holds no .parquet, .arrow, .jsonl or other data files")
        files.extend(found)
    inputs = []
    for path in files:
        kind = sniff_kind(path, strict=True) if path != "-" else None
        if kind is None:
            if path != "-" and not os.path.exists(path):
                raise InputError(f"{path}: No such file or directory")
            named = suffix_kind(path)
            if named == "parquet":
                raise InputError(f"{path}: not a Parquet file (it does not start with PAR1)")
            if named == "arrow":
                raise InputError(f"{path}: not an Arrow IPC file or stream (it starts with neither ARROW1 nor 0xFFFFFFFF)")
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


class TableBuckets:
    """The k temporary buckets of one pass, each an Arrow IPC stream file, with their row counts
    (``records``) and bytes by ``row_sizes`` (``sizes``), which the scattering pass keeps."""

    def __init__(self, directory: str, k: int, schema: pa.Schema, compress: bool, buffer_bytes: int) -> None:
        self.k = k
        self.directory = directory
        self.records = np.zeros(k, np.int64)
        self.sizes = np.zeros(k, np.int64)
        self.schema = schema.remove_metadata()
        options = pa.ipc.IpcWriteOptions(compression="zstd" if compress else None)
        buffer = max(4096, min(1 << 20, buffer_bytes // k))  # all k buffers: about one piece
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
                self._writers[j][0].write_batch(scattered.slice(start, int(counts[j])))
                start += int(counts[j])
        except ARROW_ERRORS as e:
            raise TempSpaceError(f"{self.directory}: cannot write temporary bucket: {_reason(e)}{full_disk_hint(e)}") from None

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
            raise TempSpaceError(
                f"{self.directory}: cannot write temporary bucket: {_reason(problem)}{full_disk_hint(problem)}"
            )

    def batches(self, j: int) -> Iterator[pa.RecordBatch]:
        """Bucket ``j``'s rows as written."""
        try:
            # Read, not mapped: the batches are merged into larger chunks as they come, and
            # mapped pages would count twice against the limit meanwhile.
            with pa.OSFile(self.path(j)) as f:
                yield from pa.ipc.open_stream(f)
        except ARROW_ERRORS as e:
            raise TempSpaceError(f"{self.path(j)}: temporary bucket unreadable: {_reason(e)}") from None

    def drop_after(self, last: int) -> None:
        """Forget buckets past ``last``: ``-n`` will never reach them (their files go with the temp directory)."""
        self.records[last + 1 :] = 0
        self.sizes[last + 1 :] = 0

    def remove(self, j: int) -> None:
        """Delete bucket ``j``'s file (pass 2 is done with it)."""
        try:
            os.unlink(self.path(j))
        except FileNotFoundError:
            pass
