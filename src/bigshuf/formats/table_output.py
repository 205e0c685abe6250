"""Writing table rows: Parquet row groups, Arrow IPC record batches or JSON Lines, to one file or
N shards through the storage layer's output, with the column codec ``--compress`` names."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..core.fingerprint import Fingerprint
from ..errors import OutputError, UsageError, option
from ..quoting import quote_arg, quote_name
from ..storage.output import Output
from ..storage.layout import SplitPart
from ..storage.threads import each
from ..storage.sinks import CodecChoice, Sink
from ..storage.writeback import WriteBehind
from .rowhash import row_fingerprint
from .tables import ARROW_ERRORS, arrow_reason, decoded_schema, row_sizes


#: Column codecs each output format offers (``--compress``), the first being the default.
FORMAT_CODECS = {
    "parquet": ("zstd", "snappy", "gzip", "lz4", "brotli", "none"),
    "arrow": ("none", "zstd", "lz4"),
}


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
    ``group_rows`` rows if given, else of about ``group_bytes``. ``shown`` names the output in a
    refusal of rows JSON cannot hold, where the sink does not know its name (the Dask engine's)."""

    def __init__(
        self, kind: str, sink: Sink, schema: pa.Schema, codec: CodecChoice, group_rows: int | None, group_bytes: int,
        shown: str | None = None,
    ) -> None:
        self.kind = kind
        self.sink = sink
        self.shown = sink.shown if shown is None else shown
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

            for data in json_lines(table, self.shown):
                self.sink.write(data)
            return
        if self.kind == "parquet" and table.num_rows and not table.num_columns:
            raise OutputError(
                f"{self.sink.shown}: rows without columns (JSON objects '{{}}') cannot be written as Parquet, "
                f"which keeps no row without a column; write Arrow IPC ({option('output_format')}=arrow or an .arrow name)"
            )
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
            raise OutputError(f"{self.sink.shown}: cannot write {self.kind}: {arrow_reason(e)}") from None
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
            raise OutputError(f"{self.sink.shown}: cannot write {self.kind}: {arrow_reason(e)}") from None


def shown_output(target: str | None) -> str:
    """The output ``target`` as messages name it: quoted, or standard output in words."""
    return quote_name(target) if target not in (None, "-") else "standard output"


def check_parquet_columns(target: str | None, schema: pa.Schema) -> None:
    """Refuse, before anything is read, a Parquet output of a column Parquet cannot store (a union,
    say, read from an Arrow file), naming the column: the writer would fail only once the rows are shuffled."""
    import pyarrow.parquet as pq

    def fails(fields: list[pa.Field]) -> pa.ArrowException | None:
        try:
            pq.ParquetWriter(pa.BufferOutputStream(), pa.schema(fields)).close()
        except pa.ArrowException as e:
            return e
        return None

    if fails(list(schema)) is None:
        return
    for field in schema:
        if fails([field]) is not None:
            raise UsageError(
                f"{quote_name(target) if target else 'standard output'}: column {quote_arg(field.name)} of type {field.type} cannot be written as Parquet; "
                f"write Arrow IPC ({option('output_format')}=arrow or an .arrow name)"
            )


def check_row_columns(kind: str, target: str | None, schema: pa.Schema) -> None:
    """Refuse, before anything is read, columns the output format ``kind`` cannot hold (Parquet's
    types, JSON text's values), naming the output and the column: on every engine and in a dry run."""
    if kind == "parquet":
        check_parquet_columns(target, schema)
    elif kind == "jsonl":
        from .jsonl import check_json_columns

        check_json_columns(shown_output(target), schema)


class TableOutput(Output):
    """The output of a table shuffle: one file or shards, atomic as for lines, rows in ``kind``'s format."""

    def __init__(
        self, target: str | None, writer: WriteBehind, *, kind: str, shards: int | None,
        codec: CodecChoice, schema: pa.Schema, group_rows: int | None, group_bytes: int, sync: bool = True,
        shard_records: int | None = None, split: tuple[SplitPart, ...] | None = None, manifest: str | None = None,
        shard_size: int | None = None,
    ) -> None:
        line_codec = codec if kind == "jsonl" else None
        super().__init__(
            target, writer, shards=shards, compress=line_codec, sync=sync, shard_records=shard_records, split=split,
            manifest=manifest, shard_size=shard_size,
        )
        self.kind = kind
        self.codec = codec
        self.schema = schema
        check_row_columns(kind, target, schema)
        self.group_rows = group_rows
        self.group_bytes = group_bytes
        self.formats: list[RowWriter] = []
        self.shard_suffix = table_shard_suffix(kind, codec)

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

    def _fingerprint(self, records: Any) -> Fingerprint:
        return row_fingerprint(records)

    def _record_bytes(self, records: Any) -> np.ndarray:
        """Each row's Arrow bytes as ``tables.row_sizes`` counts them (what ``-S`` holds), for ``--shard-size``."""
        return np.concatenate([np.empty(0, np.int64), *(row_sizes(batch) for batch in records.to_batches())])

    def describe_kind(self) -> str:
        return "rows"

    def abort(self) -> None:
        """The row writers' buffers go too, every step taken even if one before it raised (see ``Output.abort``)."""
        each([self.writer.wait_idle, *(rows.discard for rows in self.formats), super().abort])


def table_shard_suffix(kind: str, codec: CodecChoice) -> str:
    """The suffix of the files of a ``--shards`` directory of rows written as ``kind`` with ``codec``."""
    from ..storage.codecs import CODECS

    compressed = kind == "jsonl" and codec[0] != "none"
    return {"parquet": ".parquet", "arrow": ".arrow"}.get(kind, ".jsonl" + (CODECS[codec[0]].suffixes[0] if compressed else ""))


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
        raise UsageError(f"{option('compress')}: {kind} output takes {', '.join(choices)} (optionally :LEVEL), not {quote_arg(spec)}")
    if not colon:
        return name, None
    if name in ("none", "snappy"):
        raise UsageError(f"{option('compress')}: {name} takes no level (got {quote_arg(spec)})")
    low, high = pa.Codec.minimum_compression_level(name), pa.Codec.maximum_compression_level(name)
    if not (level_text.isascii() and level_text.isdigit() and low <= int(level_text) <= high):
        raise UsageError(f"{option('compress')}: {name} level must be an integer from {max(low, 0)} to {high} (got {quote_arg(spec)})")
    return name, int(level_text)
