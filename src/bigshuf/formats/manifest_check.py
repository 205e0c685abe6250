"""``--check-manifest``: every output file a manifest lists read back as the records of its kind
(lines, rows, tar samples, Megatron documents) and checked against what the manifest says."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from typing import Any

from ..core.fingerprint import Fingerprint, fingerprint_records
from ..core.records import RecordFormat
from ..errors import InputError
from ..quoting import quote_name
from ..storage.manifest import CHECK_BLOCK, expected_written, is_count, load_manifest
from ..storage.safefs import open_nofollow


def file_fingerprint(path: str, fmt: RecordFormat, header: int, memory: int) -> tuple[Fingerprint, bytes]:
    """The fingerprint of the records of the regular file ``path`` (decompressed), and the ``header``
    lines set aside before them."""
    from ..progress import Progress
    from ..storage.reader import RecordReader
    from ..storage.sources import FileSource

    reader = RecordReader([FileSource(path)], fmt, Progress(), header)
    total = Fingerprint()
    capacity = max(256, memory)
    for block, _final in reader.blocks(capacity, "-S", block=min(CHECK_BLOCK, capacity)):
        total += fingerprint_records(block, fmt)
    return total, reader.header


def rows_fingerprint(path: str, kind: str, memory: int) -> tuple[Fingerprint, Any]:
    """The fingerprint of the rows of the Parquet or Arrow IPC file ``path`` (``kind``), as ``--verify``
    hashes them, and its schema (which the fingerprint does not cover: ``odd_schemas``)."""
    from .detect import sniff_kind
    from .rowhash import row_fingerprint
    from .table_input import TableInput

    found = sniff_kind(path)
    if found != kind:
        raise InputError(f"{quote_name(path)}: not a {'Parquet' if kind == 'parquet' else 'Arrow IPC'} file")
    rows = TableInput(path, kind)
    schema = rows.schema
    assert schema is not None, "a Parquet or Arrow file's schema is read as it is opened"
    total = Fingerprint()
    for batch in rows.batches(max(1 << 20, memory // 4)):
        total += row_fingerprint(batch)
    return total, schema


def odd_schemas(schemas: list[tuple[str, Any]]) -> list[str]:
    """A problem for each row output whose schema is not the one most outputs have (the first
    output's where as many have each): a run writes one schema, and the row fingerprint hashes values
    by their kind of type, not the columns' names, units or scales (a renamed column passed)."""
    from .tables import schema_difference

    groups: list[list[tuple[str, Any]]] = []
    for where, schema in schemas:
        group = next((g for g in groups if g[0][1].equals(schema, check_metadata=False)), None)
        if group is None:
            groups.append([(where, schema)])
        else:
            group.append((where, schema))
    if len(groups) < 2:
        return []
    most = max(groups, key=len)  # (the first of the largest: the first output's, in a tie)
    return [
        f"{quote_name(where)}: schema does not match {quote_name(most[0][0])}: {schema_difference(most[0][1], schema)}"
        for group in groups if group is not most for where, schema in group
    ]


def samples_fingerprint(path: str, memory: int) -> Fingerprint:
    """The fingerprint of the WebDataset samples of the tar ``path`` (decompressed): each sample's
    raw tar blocks, as the run copied and fingerprinted them."""
    from .tar_input import tar_fingerprint

    return tar_fingerprint([path], memory)


def documents_fingerprint(path: str, fmt: dict[str, Any], memory: int) -> Fingerprint:
    """The fingerprint of the documents of the Megatron pair whose ``.bin`` is ``path`` (its ``.idx``
    beside it, a regular file too, checked as a run checks an input), which must hold the tokens
    and modes ``fmt`` says."""
    from .megatron import DTYPES, IndexedInput, dataset_fingerprint

    if not path.endswith(".bin"):
        raise InputError(f"{quote_name(path)}: not the .bin of a Megatron dataset")
    index = path[:-4] + ".idx"
    try:
        fd = open_nofollow(index)
    except OSError as e:
        raise InputError(f"{quote_name(index)}: {e.strerror}") from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    if not regular:
        raise InputError(f"{quote_name(index)}: not a regular file")
    dataset = IndexedInput(path[:-4])
    if DTYPES[dataset.code].name != fmt["dtype"] or dataset.modes != fmt["modes"]:
        modes = {True: "with modes", False: "without modes"}
        raise InputError(
            f"{quote_name(index)}: tokens are {DTYPES[dataset.code].name} {modes[dataset.modes]}, the manifest says {fmt['dtype']} {modes[fmt['modes']]}"
        )
    return dataset_fingerprint(path[:-4], memory)


def format_problem(kind: str, fmt: Any) -> str | None:
    """What is wrong with a manifest's ``format`` entry for records of ``kind`` (None: nothing)."""
    from .megatron import DTYPES

    if kind == "documents":
        if not (
            isinstance(fmt, dict) and fmt.get("documents") == "megatron"
            and fmt.get("dtype") in [dtype.name for dtype in DTYPES.values()] and isinstance(fmt.get("modes"), bool)
        ):
            return "'format' of documents needs 'documents': 'megatron', a token 'dtype' and 'modes'"
    elif kind == "rows":
        if not (isinstance(fmt, dict) and fmt.get("rows") in ("parquet", "arrow")):
            return "'format' of rows needs 'rows': 'parquet' or 'arrow'"
    elif kind == "samples":
        if not (isinstance(fmt, dict) and fmt.get("samples") == "tar"):
            return "'format' of samples needs 'samples': 'tar'"
    elif kind != "lines":
        return "'kind' is not 'lines', 'rows', 'samples' or 'documents'"
    elif not (
        isinstance(fmt, dict) and fmt.get("separator") in (0, 10) and is_count(fmt.get("lines_per_record"))
        and fmt["lines_per_record"] >= 1 and is_count(fmt["header_lines"] if "header_lines" in fmt else fmt.get("header"))
        and ("header_sha256" not in fmt or (isinstance(fmt["header_sha256"], str) and re.fullmatch("[0-9a-f]{64}", fmt["header_sha256"])))
    ):
        return "'format' needs separator 0 or 10, lines_per_record and header_lines (and header_sha256 as 64 hex digits, if given)"
    return None


def header_readings(fmt: dict[str, Any]) -> list[int]:
    """The lines an output's header may hold: ``header_lines``; in a manifest written before that
    key, ``header`` meant records of ``lines_per_record`` lines up to efd96e5 and lines after it
    (every version said 0.1.0), so both readings are tried, records first."""
    if "header_lines" in fmt:
        return [int(fmt["header_lines"])]
    return list(dict.fromkeys([int(fmt["header"]) * int(fmt["lines_per_record"]), int(fmt["header"])]))


def _lines_fingerprint(
    where: str, fmt: RecordFormat, readings: list[int], memory: int, want: dict[str, Any]
) -> tuple[Fingerprint, bytes]:
    """The fingerprint and header of the lines output ``where`` under the first header reading that
    gives the manifest's ``want``; if none does, the first reading that can be read (else its error)."""
    read: list[tuple[Fingerprint, bytes]] = []
    errors: list[InputError] = []
    for lines in readings:
        try:
            got = file_fingerprint(where, fmt, lines, memory)
        except InputError as e:
            errors.append(e)
            continue
        fp = got[0]
        if (fp.records, fp.bytes, f"{fp.digest:016x}") == (want["records"], want["bytes"], want["digest"]):
            return got
        read.append(got)
    if read:
        return read[0]
    raise errors[0]


def check_manifest(path: str, memory: int) -> tuple[list[str], str]:
    """Check every output the manifest at ``path`` lists (records, bytes, fingerprint, size on disk)
    and that together they hold the records the run wrote; never writes anything. Returns the
    problems (one line each, options as ``errors.option`` placeholders) and a summary."""
    data = load_manifest(path, format_problem)
    base = os.path.dirname(os.path.realpath(path))  # (through a link to it, the paths are still relative to the manifest)
    fmt_entry = data["format"]
    rows = fmt_entry.get("rows")
    samples = data["kind"] == "samples"
    documents = data["kind"] == "documents"
    fmt = None if rows is not None or samples or documents else RecordFormat(fmt_entry["separator"], fmt_entry["lines_per_record"])
    problems: list[str] = []
    seen: set[str] = set()
    total = Fingerprint()
    listed = Fingerprint()
    schemas: list[tuple[str, Any]] = []  # (rows) each output read and its schema
    for out in data["outputs"]:
        where = os.path.join(base, out["path"])
        name = os.path.normpath(where)
        if name in seen:
            problems.append(f"{quote_name(where)}: listed twice in {quote_name(path)}")
            continue
        seen.add(name)
        want = out["fingerprint"]
        listed += Fingerprint(out["records"], out["bytes"], 0)
        try:
            fd = open_nofollow(where)
        except OSError as e:
            why = "not a regular file (a symbolic link)" if e.errno == errno.ELOOP and os.path.islink(where) else e.strerror
            problems.append(f"{quote_name(where)}: {why}")
            continue
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{quote_name(where)}: not a regular file")
            continue
        if out.get("file_bytes") is not None and st.st_size != out["file_bytes"]:
            problems.append(f"{quote_name(where)}: {st.st_size} bytes on disk, the manifest says {out['file_bytes']}")
        try:
            if samples:
                got = samples_fingerprint(where, memory)
            elif documents:
                got = documents_fingerprint(where, fmt_entry, memory)
            elif fmt is None:
                got, schema = rows_fingerprint(where, rows, memory)
                schemas.append((where, schema))
            else:
                got, header = _lines_fingerprint(where, fmt, header_readings(fmt_entry), memory, want)
                if "header_sha256" in fmt_entry and hashlib.sha256(header).hexdigest() != fmt_entry["header_sha256"]:
                    lines = fmt_entry["header_lines"]
                    problems.append(f"{quote_name(where)}: its header (first {lines} line{'s' if lines != 1 else ''}) differs from the one the run wrote")
        except InputError as e:
            problems.append(e.args[0])  # its placeholders spelt by the caller, for a command line or a library
            continue
        total += got
        if got.records != out["records"] or got.records != want["records"]:
            problems.append(f"{quote_name(where)}: {got.records} records, the manifest says {out['records']}")
        elif got.bytes != out["bytes"] or got.bytes != want["bytes"]:
            problems.append(f"{quote_name(where)}: {got.bytes} bytes of records, the manifest says {out['bytes']}")
        elif f"{got.digest:016x}" != want["digest"]:
            problems.append(f"{quote_name(where)}: records differ from those the manifest lists (fingerprint {got.digest:016x}, not {want['digest']})")
    problems += odd_schemas(schemas)
    if listed.records != data["records_written"]:
        problems.append(f"{quote_name(path)}: its outputs list {listed.records} records, but it says {data['records_written']} were written")
    expected = expected_written(data)
    if expected is not None and expected != data["records_written"]:
        shuffled = data.get("records_shuffled", data.get("records_read"))
        problems.append(f"{quote_name(path)}: {data['records_written']} records written, but {expected} were to be of the {shuffled} shuffled")
    if documents:
        what = f"{total.records} documents, {total.bytes} bytes of tokens"
    elif samples:
        what = f"{total.records} samples, {total.bytes} bytes"
    else:
        what = f"{total.records} rows" if fmt is None else f"{total.records} records, {total.bytes} bytes"
    if problems:
        return problems, f"{len(problems)} problem(s) in the output files {quote_name(path)} lists"
    summary = f"{len(data['outputs'])} output file(s) match {quote_name(path)}: {what}"
    return problems, summary
