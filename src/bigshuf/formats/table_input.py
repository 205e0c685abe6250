"""Reading table rows: Parquet, Arrow IPC (file or stream) and JSON Lines (parsed by pyarrow on blocks
read here, so that a bad line is named by its number), checked against one schema."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import InputError, UsageError, option
from ..quoting import quote_arg, quote_name
from ..storage import guarded
from ..storage.sources import FileSource, Stamp, changed
from .detect import dataset_files, misnamed_table, sniff_kind
from .tables import ARROW_ERRORS, FILE_KINDS, arrow_reason, check_columns, names_are_utf8, plain_schema, schema_difference, stream_batches, unreadable


def _scanned(path: str, kind: str) -> tuple[pa.Schema, int]:
    """An Arrow IPC file's schema and rows, each batch's lengths checked against its buffers (cheap),
    through a watched mapping (``guarded``): only the batches' headers (and the end offsets of their
    variable-length columns) are read, not their data, and a page cut from the file meanwhile reads
    as zeros rather than killing the process (SIGBUS), the file then refused as changed. Where no
    watch can be had, the file is read (all of it)."""
    watch: guarded.Watch | None = None
    if guarded.available:
        with open(path, "rb") as f:
            try:
                watch = guarded.Watch(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
            except (ValueError, OSError):  # empty, or a file system that cannot map it
                watch = None
        if watch is not None and watch.slot < 0:
            watch.close()
            watch = None
    if watch is None:
        with pa.OSFile(path) as f:
            return _counted(path, kind, f)
    try:
        return _counted(path, kind, pa.BufferReader(pa.py_buffer(watch.mapped)))
    finally:
        faults = watch.faults()
        watch.close()
        if faults:
            raise changed(quote_name(path), "cut short while its batches were counted")


def _counted(path: str, kind: str, f: Any) -> tuple[pa.Schema, int]:
    """The schema and rows of the Arrow IPC file or stream ``f``, each batch's lengths checked (its
    batches are let go on return, so that a mapping under them can be closed)."""
    reader = pa.ipc.open_file(f) if kind == "arrow" else pa.ipc.open_stream(f)
    schema = reader.schema
    check_columns(path, schema)
    batches: Iterator[pa.RecordBatch]
    if kind == "arrow":
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        f.seek(0)
        batches = stream_batches(path, f)
    rows = 0
    for batch in batches:
        batch.validate()  # lengths against buffer sizes (cheap): row counts to plan with
        rows += batch.num_rows
    return schema, rows


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
        #: The files read anew for each pass, checked once read: the rows planned are those they held.
        self.stamps: list[Stamp] = []
        if path != "-":
            self.stamps.append(Stamp(path, quote_name(path)))
        what = FILE_KINDS.get(kind)
        if what is None:
            return
        try:
            if kind == "parquet":
                with self._parquet() as pf:
                    self.schema = pf.schema_arrow
                    self.rows = pf.metadata.num_rows
                check_columns(path, self.schema)
            else:
                self.schema, self.rows = _scanned(path, kind)
        except (*ARROW_ERRORS, UnicodeDecodeError) as e:
            self.check_unchanged()
            raise unreadable(path, what, e) from None

    def check_unchanged(self) -> None:
        """Refuse the file if it is not as it was when opened (``Stamp``)."""
        for stamp in self.stamps:
            stamp.check()

    def _parquet(self, f: pa.NativeFile | None = None) -> Any:
        """The Parquet file, read from ``f`` if given (else opened by its name)."""
        import pyarrow.parquet as pq

        # Pages streamed through a small buffer: pre-buffering reads whole row groups
        # (188 MB of pool for 77 MB row groups, against 44 MB streamed).
        return pq.ParquetFile(self.path if f is None else f, pre_buffer=False, buffer_size=1 << 20)

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
            raise InputError(f"{quote_name(self.path)}: corrupt {what}: it holds {rows} rows, its metadata says {self.rows}")

    def _stored(self, block_bytes: int) -> Iterator[pa.RecordBatch]:
        """The record batches of a Parquet or Arrow file as the file's reader gives them, unchecked."""
        with pa.OSFile(self.path) as f:  # read, not mapped: a mapped page cut from the file is a SIGBUS
            self._check_open(f)
            if self.kind == "parquet":
                with self._parquet(f) as pf:
                    for group in range(pf.num_row_groups):
                        meta = pf.metadata.row_group(group)
                        rows = max(1, block_bytes * meta.num_rows // max(1, meta.total_byte_size))
                        # One decoding thread: the writer thread has the other core, and Arrow's
                        # reader threads held 20 MB more memory here.
                        yield from pf.iter_batches(batch_size=rows, row_groups=[group], use_threads=False)
            elif self.kind == "arrow":
                reader = pa.ipc.open_file(f)
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)
            else:
                yield from stream_batches(self.path, f)
            self._check_open(f)

    def _check_open(self, f: pa.NativeFile) -> None:
        """Refuse the file read through ``f`` if it is not as it was when first opened: another file
        renamed over the name since, or this one modified. (Its name renamed away or removed while it
        is read is no change: the open file is read whole, as a line file is.)"""
        st = os.fstat(f.fileno())
        for stamp in self.stamps:
            stamp.check(st)

    def _guarded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches`` made plain (no views), with Arrow's errors as one-line input errors naming the file."""
        plain: pa.Schema | None = None  # known once the first batch is read (JSON infers it)
        try:
            for batch in batches:
                if plain is None:
                    assert self.schema is not None
                    plain = plain_schema(self.schema)
                yield batch if batch.schema.equals(plain) else batch.cast(plain)
        except InputError:
            self.check_unchanged()  # (a stream cut short meanwhile lacks its end-of-stream marker)
            raise
        except ARROW_ERRORS as e:
            if "Failed to launch worker thread" in str(e):  # (Arrow's pool, out of memory or of threads): not the file's fault
                raise RuntimeError("can't start new thread") from None
            self.check_unchanged()  # a file cut short meanwhile reads as a corrupt one
            what = FILE_KINDS.get(self.kind, "JSON Lines input")
            hint = f"; give the column types with {option('schema')}" if self.kind == "jsonl" and self._inferred else ""
            raise InputError(f"{quote_name(self.path)}: corrupt or unreadable {what} ({arrow_reason(e)}){hint}") from None
        except RecursionError:  # a column type nested past Python's depth (JSON arrays 1,000 deep)
            raise InputError(f"{quote_name(self.path)}: a column is nested too deeply to shuffle") from None

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

        source = FileSource(self.path)
        stream = source.open()
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
                # A line that is not an object, or nested deeper than Arrow reads, is found here
                # first: Arrow crashed (segfault) on a block starting with a null line, and on an array
                # nested 100,000 deep.
                odd = _odd_lines(block, starts) or _deep_lines(block, starts)
                problem = _json_scan(block, line, given, self._inferred) if odd else None
                try:
                    if problem is None:
                        table = pj.read_json(pa.BufferReader(owned), read_options=read, parse_options=parse)
                        rows = _object_lines(block, starts)
                        invalid = _invalid(table)  # (Arrow's reader checks neither this nor the count)
                        if table.num_rows != rows or invalid is not None:
                            problem = _json_scan(block, line, given, self._inferred) or (
                                f"the lines from {line} hold {table.num_rows} objects in {rows} lines" if invalid is None
                                else f"the lines from {line}: {invalid}"
                            )
                except pa.ArrowInvalid:
                    problem = _json_problem(owned, block, line, given, self._inferred, parse)
                if problem is not None:
                    raise InputError(f"{quote_name(self.path)}: {problem}")
                line += block.count(b"\n")
                if self.schema is None:
                    if not table.num_rows:
                        continue  # blank lines: nothing to infer the columns from yet
                    self.schema = table.schema
                    self._inferred = True
                yield from table.to_batches()
            # Read to its end: refused if it changed meanwhile, or since the run planned it, as a line
            # file is (rows appended while read were taken, and a manifest listed the grown file).
            source.check_unchanged()
            self.check_unchanged()
        finally:
            stream.close()


def _invalid(table: pa.Table) -> str | None:
    """Why a table Arrow's JSON reader parsed is not a valid one, or None: a string or field name
    that is not UTF-8 (it checks neither: a Parquet file written from them could not be read
    back), or a value its ``--schema`` type cannot hold (a time32[s] past a day)."""
    if not names_are_utf8(table.schema):
        return "a field name that is not UTF-8"
    try:
        table.validate(full=True)
    except UnicodeDecodeError:
        return "text that is not UTF-8"
    except pa.ArrowInvalid as e:
        reason = arrow_reason(e)
        if "UTF8" in reason or "UTF-8" in reason:
            return "text that is not UTF-8"
        return reason.rsplit("Invalid: ", 1)[-1]  # (without Arrow's "Column 0: In chunk 0: ")
    return None


def _line_blocks(stream: Any, size: int, name: str) -> Iterator[bytes]:
    """The bytes of ``stream`` in blocks of whole lines of about ``size`` bytes (the last may lack
    its newline); a line over eight blocks long is an error. A block is read until it holds
    ``size`` bytes and a newline, in reads that grow with it and are joined once: a line longer
    than a block was joined again after every 64 KiB read, quadratic (8 s for one 40 MB line)."""
    carry = b""
    while True:
        parts, have, ended = [carry], len(carry), False  # (``carry`` holds no newline)
        while have < size or not ended:
            if not ended and have > 8 * size:
                raise InputError(
                    f"{quote_name(name)}: a JSON line is longer than {8 * size} bytes, the most this memory limit allows; "
                    f"raise {option('memory')}"
                )
            more = stream.read(max(size - have, 1 << 16, have // 8))
            if not more:
                break
            parts.append(more)
            have += len(more)
            ended = ended or b"\n" in more
        data = b"".join(parts)
        if have == len(carry):
            if carry:
                yield carry
            return
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        carry = data[cut:]


def _line_starts(block: bytes) -> np.ndarray:
    """Where each line of a non-empty ``block`` starts."""
    data = np.frombuffer(block, np.uint8)
    return np.concatenate([np.zeros(1, np.int64), np.flatnonzero(data[:-1] == 10) + 1])


def _object_lines(block: bytes, starts: np.ndarray) -> int:
    """How many lines of ``block`` (starting at ``starts``) hold more than JSON's blanks (space, tab,
    CR): each is one object to Arrow, once no line was found odd or each odd one was read as one.
    Only the few lines that start with a blank are looked at whole."""
    firsts = np.frombuffer(block, np.uint8)[starts]
    blank = (firsts == 32) | (firsts == 9) | (firsts == 13)
    count = int(np.count_nonzero(~blank & (firsts != 10)))
    ends = np.append(starts[1:], len(block))
    for at in np.flatnonzero(blank).tolist():
        count += bool(block[int(starts[at]) : int(ends[at])].strip(b" \t\r\n"))
    return count


def _odd_lines(block: bytes, starts: np.ndarray) -> bool:
    """Whether a line of ``block`` (starting at ``starts``) starts with something other than ``{``
    (blank lines aside)."""
    firsts = np.frombuffer(block, np.uint8)[starts]
    return bool(np.any((firsts != ord("{")) & (firsts != 10) & (firsts != 13)))


#: Brackets opened on one line past which it is parsed by Python first (whose parser refuses a
#: nesting deeper than about 1,000) rather than handed to Arrow's (read 10,000 levels here; crashed
#: on 30,000 in its own test and on 100,000 in a run).
DEEP_LINE = 4096


def _deep_lines(block: bytes, starts: np.ndarray) -> bool:
    """Whether a line of ``block`` opens more than ``DEEP_LINE`` arrays and objects (in strings too).
    Only a line longer than that can: a block of shorter lines is not scanned."""
    if int(np.diff(starts, append=len(block)).max()) <= DEEP_LINE:
        return False
    data = np.frombuffer(block, np.uint8)
    opened = np.flatnonzero((data | np.uint8(0x20)) == np.uint8(0x7B))  # "[" is 0x5B, "{" 0x7B
    return bool(np.diff(np.searchsorted(opened, starts), append=len(opened)).max() > DEEP_LINE)


def _json_scan(block: bytes, first: int, schema: pa.Schema | None, inferred: bool) -> str | None:
    """The first line of ``block`` (which starts at line ``first``) that is not JSON, not an object,
    or has a field ``schema`` lacks, said as such; None if every line is a fitting object."""
    import json

    names = None if schema is None else set(schema.names)
    for number, text in enumerate(block.split(b"\n"), first):
        if not text.strip():
            continue
        try:
            value = json.loads(text.decode("utf-8"))  # strict: json.loads(bytes) lets encoded surrogates by
        except ValueError as e:
            what = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
            return f"line {number} is not JSON ({what})"
        except RecursionError:
            return f"line {number} is JSON nested too deeply to read"
        if not isinstance(value, dict):
            return f"line {number} is not a JSON object (it is {_json_kind(value)})"
        extra = [key for key in value if names is not None and key not in names]
        if extra:
            where = "the first rows did not have; give the column types with " + option("schema") if inferred else option("schema") + " does not name"
            return f"line {number} has a field {quote_arg(extra[0])} that {where}"
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
        reason = arrow_reason(e).removeprefix("JSON parse error: ")
    hint = "; give the column types with " + option("schema") if inferred or schema is None else ""
    rows = [n for n, text in enumerate(block.split(b"\n"), first) if text.strip()]  # the line of each row
    change = re.fullmatch(r"Column\((.*)\) changed from (\w+) to (\w+) in row (\d+)", reason)
    if change and int(change[4]) < len(rows):
        path, before, after, row = change.groups()
        name = path.lstrip("/")
        if schema is not None and not inferred and name in schema.names:
            # The type is the user's, not one a first line set: Arrow reads it from ``before``.
            typed = schema.field(name).type
            return f"line {rows[int(row)]}: field '{name}' holds a {after}, but {option('schema')} makes it {typed}, read from a JSON {before}"
        return f"line {rows[int(row)]}: field '{name}' changed from {before} to {after}{hint}"
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


def open_inputs(paths: Sequence[str], json_schema: pa.Schema | None) -> list[TableInput]:
    """Open every input (directories expanded) and check that their schemas match the first's."""
    files: list[str] = []
    for path in paths:
        found = dataset_files(path) if os.path.isdir(path) else [path]
        if not found:
            raise InputError(f"{quote_name(path)}: directory holds no .parquet, .arrow, .jsonl or other data files")
        files.extend(found)
    inputs = []
    for path in files:
        kind = sniff_kind(path, strict=True) if path != "-" else None
        if kind is None:
            if path != "-" and not os.path.exists(path):
                raise InputError(f"{quote_name(path)}: No such file or directory")
            misnamed = misnamed_table(path)
            if misnamed is not None:
                raise misnamed
            kind = "jsonl"
        inputs.append(TableInput(path, kind, json_schema if kind == "jsonl" else None))
    kinds = {i.kind for i in inputs}
    if json_schema is not None and "jsonl" not in kinds:
        raise UsageError(
            f"{option('schema')} types JSON Lines read as rows; {quote_name(inputs[0].path)} is a table whose columns "
            "have their types already"
        )
    if len(kinds) > 1 and "jsonl" in kinds:
        odd = next(i for i in inputs if i.kind == "jsonl")
        raise UsageError(f"{quote_name(odd.path)}: not a Parquet or Arrow file; line files and tables cannot be shuffled together")
    first = next((i for i in inputs if i.schema is not None), None)
    for other in inputs:
        if first is not None and other.schema is not None and not other.schema.equals(first.schema, check_metadata=False):
            raise InputError(
                f"{quote_name(other.path)}: schema does not match {quote_name(first.path)}: {schema_difference(first.schema, other.schema)}"
            )
    return inputs
