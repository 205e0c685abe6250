"""Arrow rows in batches: schemas, row sizes, rebatching, merging into large chunks, gathering in
random order, and the temporary buckets (Arrow IPC streams) that table runs scatter rows into.

Rows are read in record batches. Pass 1 draws an i.i.d. uniform bucket for every row and
appends each bucket's rows to an Arrow IPC stream file; pass 2 loads one bucket at a time,
permutes it uniformly and writes it out, so every permutation of the rows is equally
likely. The memory limit is held against Arrow buffer sizes (``nbytes``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import plan
from ..core.records import array_block, list_spans, union_spans
from ..errors import InputError, TempSpaceError, UsageError, option
from ..quoting import quote_arg, quote_name
from ..storage.safefs import create_exclusive
from ..storage.tempspace import full_disk_hint
from .detect import sniff_kind


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


def arrow_reason(e: BaseException) -> str:
    """An Arrow error's message, on one line."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def unreadable(name: str, what: str, e: BaseException) -> InputError:
    """The refusal of a table file (``what``: "Parquet file"...) whose footer or schema Arrow could not
    read: Arrow's error, or a column name that is not UTF-8 (PyArrow decoding a Parquet footer)."""
    reason = "a column's name is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else arrow_reason(e)
    return InputError(f"{quote_name(name)}: not a readable {what} ({reason})")


#: What follows an IPC stream's last record batch: its end-of-stream marker, or the 4 zero bytes
#: that marked it before Arrow 0.15.
END_OF_STREAM = (b"\xff\xff\xff\xff\x00\x00\x00\x00", b"\x00\x00\x00\x00")


def stream_batches(shown: str, source: Any) -> Iterator[pa.RecordBatch]:
    """The record batches of the Arrow IPC stream ``source`` (named ``shown`` in messages), refused once
    read if it ends without its end-of-stream marker: a writer stopped part way (a killed ``datasets``
    job) leaves a stream cut between batches, which reads as a shorter one."""
    reader = pa.ipc.open_stream(source)
    last = source.tell()  # where the schema or the last batch ended: the reader reads no further ahead
    for batch in reader:
        last = source.tell()
        yield batch
    end = source.tell()
    source.seek(last)
    if source.read(end - last) not in END_OF_STREAM:  # nothing, or a dictionary a cut stream ends with
        raise InputError(
            f"{quote_name(shown)}: corrupt Arrow IPC stream: it ends without its end-of-stream marker (cut short after a record batch)"
        )


def parse_schema(spec: str) -> pa.Schema:
    """``--schema``: a Parquet or Arrow file whose schema to use, or ``name:type,...`` with Arrow type names."""
    if os.path.exists(spec):
        kind = sniff_kind(spec)
        schema = None
        try:
            if kind == "parquet":
                import pyarrow.parquet as pq

                schema = pq.read_schema(spec)
            elif kind == "arrow":
                with pa.OSFile(spec) as f:
                    schema = pa.ipc.open_file(f).schema
            elif kind == "stream":  # as Hugging Face datasets writes .arrow files, read as inputs too
                with pa.OSFile(spec) as f:
                    schema = pa.ipc.open_stream(f).schema
        except ARROW_ERRORS as e:
            raise InputError(f"{quote_name(spec)}: cannot read its schema: {arrow_reason(e)}") from None
        except UnicodeDecodeError:  # PyArrow naming the columns of a Parquet footer
            raise InputError(f"{quote_name(spec)}: cannot read its schema: a column's name is not UTF-8 text") from None
        if schema is not None:
            if not names_are_utf8(schema):
                raise InputError(f"{quote_name(spec)}: cannot read its schema: a column's name is not UTF-8 text")
            return schema
        raise UsageError(f"{option('schema')}: {quote_name(spec)} is not a Parquet or Arrow file")
    fields = []
    for item in spec.split(","):
        name, colon, type_name = item.partition(":")
        try:
            if not colon or not name.strip():
                raise ValueError
            fields.append(pa.field(name.strip(), pa.type_for_alias(type_name.strip())))
        except (ValueError, KeyError):
            raise UsageError(
                f"{option('schema')}: cannot read {quote_arg(item)}; give NAME:TYPE,... with Arrow type names (int64, string, "
                "float64, bool, timestamp[ms]) or a Parquet or Arrow file"
            ) from None
    names = [f.name for f in fields]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:  # a row has one value a name: JSON's last would win, Arrow refuses the schema
        raise UsageError(f"{option('schema')}: the column {quote_arg(twice)} is named twice")
    return pa.schema(fields)


def schema_difference(first: pa.Schema, other: pa.Schema) -> str:
    """Why ``other`` does not match ``first``, naming the first column that differs."""
    for field in first:
        if field.name not in other.names:
            return f"column {quote_arg(field.name)} is missing"
    for field in other:
        if field.name not in first.names:
            return f"it has an extra column {quote_arg(field.name)}"
    for field in first:
        theirs = other.field(field.name)
        if not theirs.type.equals(field.type):
            return f"column {quote_arg(field.name)} is {theirs.type} here, {field.type} there"
        if theirs.nullable != field.nullable:
            return f"column {quote_arg(field.name)} is {'' if theirs.nullable else 'not '}nullable here"
    return "the columns are in a different order"


def plain_type(t: pa.DataType) -> pa.DataType:
    """``t`` with string and binary views made large strings and binaries, which every kernel takes
    (pyarrow has no ``take`` for views; Polars writes them by default), at any depth but in a union or
    a list view (which Arrow cannot cast: ``unshufflable`` refuses those)."""
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        return pa.large_binary() if pa.types.is_binary_view(t) else pa.large_string()
    if pa.types.is_map(t):
        key, item = plain_type(t.key_type), plain_type(t.item_type)
        if key.equals(t.key_type) and item.equals(t.item_type):
            return t
        return pa.map_(t.key_field.with_type(key), t.item_field.with_type(item), t.keys_sorted)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        field = t.value_field
        inner = plain_type(field.type)
        if inner.equals(field.type):
            return t
        if pa.types.is_fixed_size_list(t):
            return pa.list_(field.with_type(inner), t.list_size)
        return (pa.list_ if pa.types.is_list(t) else pa.large_list)(field.with_type(inner))
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        return pa.struct([f.with_type(plain_type(f.type)) for f in fields])
    return t


def unshufflable(t: pa.DataType) -> str | None:
    """Why rows with a column of type ``t`` (as ``plain_type`` makes it) cannot be shuffled, if they
    cannot: Arrow has no ``take`` for run-end encoded arrays nor for views, and cannot cast a union's."""
    if isinstance(t, pa.BaseExtensionType):
        return unshufflable(t.storage_type)
    if pa.types.is_run_end_encoded(t):
        return "it is run-end encoded, which Arrow cannot take rows from; decode it first"
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        return "it holds a string or binary view inside a union or list view, which Arrow can neither take rows from nor cast"
    if pa.types.is_dictionary(t):
        return None  # rows take the indices; the dictionary goes along whole
    for i in range(t.num_fields):
        why = unshufflable(t.field(i).type)
        if why is not None:
            return why
    return None


def names_are_utf8(fields: Iterable[pa.Field]) -> bool:
    """Whether the names of ``fields`` and of the fields nested in them are UTF-8 (Arrow checks
    neither when it reads a file nor when it parses JSON; PyArrow fails on a name that is not)."""
    try:
        for field in fields:
            _ = field.name  # decoded here
            kind = field.type
            if pa.types.is_struct(kind) and not names_are_utf8(kind.field(i) for i in range(kind.num_fields)):
                return False
            if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and not names_are_utf8([kind.value_field]):
                return False
    except UnicodeDecodeError:
        return False
    return True


def check_columns(path: str, schema: pa.Schema) -> None:
    """Refuse, naming ``path`` and the column, a schema with a column whose rows cannot be shuffled
    (or whose name cannot be read)."""
    if not names_are_utf8(schema):
        raise InputError(f"{quote_name(path)}: a column's name is not UTF-8 text")
    for field in plain_schema(schema):
        why = unshufflable(field.type)
        if why is not None:
            raise InputError(f"{quote_name(path)}: column {quote_arg(field.name)} cannot be shuffled: {why}")


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with views replaced (see ``plain_type``), metadata kept."""
    fields = [f.with_type(plain_type(f.type)) for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def decoded_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with dictionary columns as their values: buckets give each chunk its own
    dictionary, and the Arrow IPC file format cannot replace a dictionary midway."""
    fields = [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def row_sizes(batch: pa.RecordBatch) -> np.ndarray:
    """Bytes each row takes in Arrow buffers, about: fixed widths, string lengths with their
    offsets, list elements summed. Depends only on the row's values, so batches cut by it are
    the same whatever the input's row groups."""
    total = np.ones(batch.num_rows, np.int64)
    for column in batch.columns:
        total += _value_sizes(column)
    return total


def _value_sizes(arr: Any) -> np.ndarray:
    """Bytes each value of ``arr`` takes in Arrow buffers, about (see ``row_sizes``)."""
    t = arr.type
    n = len(arr)
    if isinstance(t, pa.BaseExtensionType):
        return _value_sizes(arr.storage)
    if pa.types.is_null(t):
        return np.zeros(n, np.int64)  # no buffers at all
    if pa.types.is_dictionary(t):
        return np.full(n, t.index_type.bit_width // 8, np.int64)
    if pa.types.is_struct(t):
        sizes = np.zeros(n, np.int64)
        for field in arr.flatten():
            sizes += _value_sizes(field)
        return sizes
    if pa.types.is_union(t):
        return _union_sizes(arr)
    if pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return _list_view_sizes(arr)
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


def _union_sizes(arr: Any) -> np.ndarray:
    """A union's values: a type code byte each, and the child value it holds (dense: plus its 4-byte
    offset), or every child's value in its slot (sparse: each child has a slot for every row)."""
    t = arr.type
    sizes = np.ones(len(arr), np.int64)
    if t.mode == "sparse":
        for c in range(t.num_fields):
            sizes += _value_sizes(arr.field(c))  # sliced to the union's rows
        return sizes
    sizes += 4
    children, offsets = union_spans(arr)
    for c in range(t.num_fields):
        rows = np.flatnonzero(children == c)
        if len(rows):
            lo, hi = int(offsets[rows].min()), int(offsets[rows].max()) + 1
            sizes[rows] += _value_sizes(arr.field(c).slice(lo, hi - lo))[offsets[rows] - lo]
    return sizes


def _list_view_sizes(arr: Any) -> np.ndarray:
    """A list view's values: its offset and size, and the elements in its range (views may share
    elements; each row counts its own, as a copy of the row would hold them)."""
    t = arr.type
    offsets = np.asarray(arr.offsets, np.int64)
    lengths = np.asarray(arr.sizes, np.int64)
    if arr.null_count:
        lengths = np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, lengths)  # a null's range may be anything
    width = 16 if pa.types.is_large_list_view(t) else 8
    used = np.flatnonzero(lengths)
    if not len(used):
        return np.full(len(arr), width, np.int64)
    lo, hi = int(offsets[used].min()), int((offsets[used] + lengths[used]).max())
    sums = np.zeros(hi - lo + 1, np.int64)
    np.cumsum(_value_sizes(arr.values.slice(lo, hi - lo)), out=sums[1:])
    starts = np.where(lengths > 0, offsets - lo, 0)
    spans: np.ndarray = sums[starts + lengths] - sums[starts]
    return spans + width


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


def consolidate(batches: Iterable[pa.RecordBatch], limit: int) -> list[pa.RecordBatch]:
    """``batches`` merged into chunks of up to an eighth of the limit (at most ``MAX_CHUNK``),
    one group at a time, each original let go once merged (pass an iterator that keeps none).

    Gathering a piece takes from every chunk of a table, so hundreds of small chunks make
    the gather quadratic; a few large ones keep it one pass, with an eighth of the limit copied
    at a time.
    """
    most = min(MAX_CHUNK, max(1, plan.block_budget(limit) // 8))
    merged: list[pa.RecordBatch] = []
    group: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        if group and size + batch.nbytes > most:
            merged.append(_combine(group))
            group, size = [], 0
        group.append(batch)
        size += batch.nbytes
    if group:
        merged.append(_combine(group))
    return merged


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
        # Leftovers of an interrupted attempt (a --resume job's level split again), as ``BucketSet``'s.
        shutil.rmtree(directory, ignore_errors=True)
        try:
            os.makedirs(directory, 0o700)
            for j in range(k):
                os.close(create_exclusive(self.path(j)))  # this user's alone, refusing anything there; Arrow opens it by name
                stream = pa.BufferedOutputStream(pa.OSFile(self.path(j), "wb"), buffer)
                self._writers.append((pa.ipc.new_stream(stream, self.schema, options=options), stream))
        except ARROW_ERRORS as e:
            self.close()
            raise TempSpaceError(f"{quote_name(directory)}: cannot create temporary buckets: {arrow_reason(e)}") from None

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
            raise TempSpaceError(f"{quote_name(self.directory)}: cannot write temporary bucket: {arrow_reason(e)}{full_disk_hint(e)}") from None

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
                f"{quote_name(self.directory)}: cannot write temporary bucket: {arrow_reason(problem)}{full_disk_hint(problem)}"
            )

    def batches(self, j: int) -> Iterator[pa.RecordBatch]:
        """Bucket ``j``'s rows as written."""
        try:
            # Read, not mapped: the batches are merged into larger chunks as they come, and
            # mapped pages would count twice against the limit meanwhile.
            with pa.OSFile(self.path(j)) as f:
                yield from pa.ipc.open_stream(f)
        except ARROW_ERRORS as e:
            raise TempSpaceError(f"{quote_name(self.path(j))}: temporary bucket unreadable: {arrow_reason(e)}") from None

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
