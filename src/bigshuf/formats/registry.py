"""The file formats bigshuf knows, registered by name: the suffixes and magic bytes that detect
each, and the family of records it holds (lines, table rows, tar samples, Megatron documents),
whose ``Family`` entry names the code that runs, checks and plans it.

Detection (``formats.detect``), directory listing, shard names and the output's format all read
this table, and the engines, the request's checks and --dry-run ask a family's entry rather than
which family a run is, so a new format is one entry here plus the modules that read and write it.
Importing it costs nothing: the command consults it before pyarrow is loaded, and every module a
family names is imported only when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LINES, TABLE = "lines", "table"
#: Samples of WebDataset tar shards: consecutive members sharing a key (``formats.tar_input``).
WEBDATASET = "webdataset"
#: Documents of Megatron indexed datasets (``PREFIX.idx`` + ``PREFIX.bin``).
MEGATRON = "megatron"


@dataclass(frozen=True)
class Operands:
    """A request's inputs as the families' ``detect`` look at them: the local paths (directories
    expanded), the URLs that are not local paths, how many inputs in all (sources too), and the
    output as named, with ``output_format``."""

    paths: tuple[str, ...]
    urls: tuple[str, ...]
    count: int
    output: str | None
    output_format: str | None


@dataclass(frozen=True)
class Family:
    """What every format of one family of records shares, and the code ("module:name", imported on
    first use) that handles its records on each engine."""

    name: str
    #: The local run: a ``core.driver.TwoPass`` with ``for_request``, ``sample`` and ``output_plan`` classmethods.
    run: str
    #: The request's checks for these records, ``f(request, all_paths)`` (``all_paths``: every input a local path).
    check: str
    #: Whether a request's ``Operands`` are this family's records, ``f(operands) -> bool`` (refusing
    #: inputs of its records mixed with others); None: the records of inputs no family claims (lines).
    detect: str | None
    #: The Dask engine's ``engines.dask.prepared.TaskKind`` (claims inputs, plans pass 1, samples for
    #: --dry-run); None: the Dask engine does not run this family.
    tasks: str | None = None
    #: What one input is called in plans (a Megatron dataset is a pair of files), and its files in
    #: the error of a directory holding two families' files.
    input_unit: str = "file"
    files_words: str = "files"
    #: The files one input stands for, ``f(path) -> list[str]`` (None: the path itself).
    stored_files: str | None = None
    #: Whether its run opens URL inputs itself (each Megatron ``.idx`` with its ``.bin``), not as
    #: fsspec sources the local engine opens for it.
    opens_urls: bool = False
    #: How --dry-run weighs a multiset of weighted sources: by its records when each source's are
    #: known (runs of rows), else by the bytes a counting pass counts (not table runs), else by sizes.
    weighs_records: bool = False
    weighs_counted_bytes: bool = True
    #: Whether a run whose every rate is 1 still holds an index of copies beside its records (a table run does not).
    copies_index_at_one: bool = True
    #: What the inputs tell of each source without a counting pass: "" (nothing), "rows" (Parquet and
    #: Arrow files their rows, not their bytes) or "all" (Megatron indexes: documents and token bytes).
    listed_counts: str = ""


#: Every family by name; the Dask engine asks their ``tasks`` in this order (a family registered
#: later is asked after those below), the lines (which take any input) last.
FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    """Add ``family`` (a later entry of the same name replaces the earlier)."""
    FAMILIES[family.name] = family


def _imported(target: str) -> Any:
    """The object a "module:name" names, its module imported now."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run_class(family: str) -> Any:
    """The run class of ``family``'s records, imported now."""
    return _imported(FAMILIES[family].run)


def settings_check(family: str) -> Any:
    """The request checks of ``family``'s records (``f(request, all_paths)``), imported now."""
    return _imported(FAMILIES[family].check)


def family_of(operands: Operands) -> str:
    """The family of a request's records: the first (in ``FAMILIES``' order) whose ``detect`` claims its operands, else lines."""
    for family in FAMILIES.values():
        if family.detect is not None and _imported(family.detect)(operands):
            return family.name
    return LINES


def task_families() -> list[str]:
    """The families the Dask engine runs, in the order it asks whether inputs are theirs: lines last."""
    return sorted((f.name for f in FAMILIES.values() if f.tasks is not None), key=lambda name: name == LINES)


def task_kind(family: str) -> Any:
    """The Dask engine's ``TaskKind`` of ``family``'s records, imported now."""
    tasks = FAMILIES[family].tasks
    assert tasks is not None, f"{family}: no Dask tasks"
    return _imported(tasks)


def stored_files(family: str, path: str) -> list[str]:
    """The files an input ``path`` of ``family`` stands for (a Megatron dataset: its ``.bin`` and ``.idx``)."""
    how = FAMILIES[family].stored_files
    return [path] if how is None else list(_imported(how)(path))


# In the order requests and the Dask engine ask: a Megatron dataset is told by its name alone, before
# any file is read; tars before tables, so that one tar among tables is refused as a tar.
register_family(Family(
    MEGATRON, "bigshuf.formats.megatron_run:MegatronRun", "bigshuf.request:check_megatron_settings",
    "bigshuf.formats.detect:megatron_inputs", "bigshuf.engines.dask.megatron:Documents", input_unit="dataset", files_words="Megatron indexes",
    stored_files="bigshuf.formats.detect:megatron_files", opens_urls=True, weighs_records=True, listed_counts="all",
))
register_family(Family(
    WEBDATASET, "bigshuf.formats.tar_run:TarRun", "bigshuf.formats.tar_run:check_settings", "bigshuf.formats.tar_input:tar_inputs",
    "bigshuf.engines.dask.tars:Tars", files_words="tars",
))
register_family(Family(
    TABLE, "bigshuf.formats.table_run:TableRun", "bigshuf.request:check_table_settings", "bigshuf.formats.detect:table_inputs",
    "bigshuf.engines.dask.rows:Rows", files_words="tables", weighs_records=True, weighs_counted_bytes=False,
    copies_index_at_one=False, listed_counts="rows",
))
register_family(Family(
    LINES, "bigshuf.formats.line_run:LineRun", "bigshuf.request:check_line_settings", None, "bigshuf.engines.dask.lines:Lines",
    files_words="line files",
))


@dataclass(frozen=True)
class FileFormat:
    """One kind of data file."""

    name: str
    #: The ``Family`` of its records: ``lines`` (separated lines), ``table`` (rows of a schema),
    #: ``webdataset`` (tar samples) or ``megatron`` (documents).
    family: str
    #: Lower-case name suffixes, with the dot.
    suffixes: tuple[str, ...] = ()
    #: (offset, bytes) pairs, any of which identifies a regular file of this format.
    magic: tuple[tuple[int, bytes], ...] = ()
    #: A file of it in a message ("a Parquet file"); formats of records that are not lines name theirs.
    noun: str = ""
    #: A further test of a head its magic matched, where the magic alone is too common (None: none).
    confirm: Callable[[bytes], bool] | None = None
    #: Whether a name may add a compression suffix (``.jsonl.zst``); the file is then compressed as a whole.
    compressible: bool = False
    #: Whether table rows can be written in it (JSON Lines: yes; plain text: no).
    holds_rows: bool = True
    #: Why one of its records may not be written twice, as a rate above 1 would (None: it may); the
    #: refusal of such a rate that ``core.mix.refuse_copies`` words for every engine.
    no_copies: str | None = None


FORMATS: dict[str, FileFormat] = {}


def register(fmt: FileFormat, family: Family | None = None) -> None:
    """Add ``fmt`` (a later entry of the same name replaces the earlier), and ``family`` if given
    (replacing a family of its name, as ``register_family`` does)."""
    FORMATS[fmt.name] = fmt
    if family is not None:
        register_family(family)


def _stream_start(head: bytes) -> bool:
    """Whether ``head``, after an Arrow IPC stream's continuation marker, goes on as one does: a
    first message's metadata length, padded to 8 bytes (so binary records that merely start with
    four 0xFF bytes are still lines)."""
    length = int.from_bytes(head[4:8], "little", signed=True)
    return len(head) >= 8 and length > 0 and length % 8 == 0


# PAR1, then a Thrift compact struct whose first field is an i32 (a page header's type, or, with no
# row groups, the footer's version): 0x15. Text that starts with "PAR1" is not taken for Parquet.
register(FileFormat("parquet", TABLE, (".parquet", ".pq"), ((0, b"PAR1\x15"),), noun="a Parquet file"))
# ARROW1 and two bytes of padding.
register(FileFormat("arrow", TABLE, (".arrow", ".feather", ".ipc"), ((0, b"ARROW1\x00\x00"),), noun="an Arrow file"))
# An Arrow IPC stream (as Hugging Face ``datasets`` writes ``.arrow``): its continuation marker.
register(FileFormat("stream", TABLE, (), ((0, b"\xff\xff\xff\xff"),), noun="an Arrow IPC stream", confirm=_stream_start))
register(FileFormat("jsonl", LINES, (".jsonl", ".ndjson", ".json"), compressible=True))
# Tar shards (``.tar``, ``.tar.gz``, ``.tar.zst``): the ustar magic, in the first header.
# A tar sample written twice keeps its one key, and WebDataset reads two samples of one key side by side as one.
register(FileFormat(
    "tar", WEBDATASET, (".tar",), ((257, b"ustar"),), compressible=True, holds_rows=False, noun="a tar archive",
    no_copies="would write samples twice under one key, which WebDataset reads as one sample; tar sources take rates up to 1",
))
# Named by its .idx; the .bin beside it is read with it (formats.megatron).
register(FileFormat("megatron", MEGATRON, (".idx",), ((0, b"MMIDIDX\x00\x00"),), holds_rows=False, noun="a Megatron index"))
register(FileFormat("text", LINES, (".txt", ".csv", ".tsv", ".fastq", ".fq"), compressible=True, holds_rows=False))


def no_copies(family: str) -> str | None:
    """Why a record of ``family`` may not be written twice, as a rate above 1 would (its format's
    ``no_copies``; None: it may), which ``core.mix.refuse_copies`` words for every engine."""
    return next((fmt.no_copies for fmt in FORMATS.values() if fmt.family == family and fmt.no_copies), None)


def is_table(name: str | None) -> bool:
    """Whether ``name`` is a registered format of table rows (Parquet, Arrow...)."""
    return name in FORMATS and FORMATS[name].family == TABLE


def by_magic(head: bytes) -> FileFormat | None:
    """The format whose magic bytes ``head`` (a file's first ``MAGIC_BYTES``) starts with, if any."""
    for fmt in FORMATS.values():
        if any(head[offset : offset + len(magic)] == magic for offset, magic in fmt.magic):
            if fmt.confirm is None or fmt.confirm(head):
                return fmt
    return None


def by_suffix(name: str) -> FileFormat | None:
    """The format a (lower-case, compression suffix already removed if ``compressible``) name ends in."""
    for fmt in FORMATS.values():
        if fmt.suffixes and name.endswith(fmt.suffixes):
            return fmt
    return None


def magic_bytes() -> int:
    """How many leading bytes decide every registered format's magic (and its ``confirm``: at least 8)."""
    return max([8, *(offset + len(magic) for fmt in FORMATS.values() for offset, magic in fmt.magic)])


def suffixes(family: str) -> tuple[str, ...]:
    """The suffixes of ``family``'s formats."""
    return tuple(s for fmt in FORMATS.values() if fmt.family == family for s in fmt.suffixes)
