"""The file formats bigshuf knows, registered by name: the suffixes and magic bytes that detect
each, and the family of records it holds (lines, or table rows), which decides the run.

Detection (``formats.detect``), directory listing, shard names and the output's format all read
this table, so a new format is one entry here plus the module that reads and writes it.
Importing it costs nothing: the command consults it before pyarrow is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, option

if TYPE_CHECKING:
    from collections.abc import Sequence
    from fractions import Fraction

LINES, TABLE = "lines", "table"
#: Samples of WebDataset tar shards: consecutive members sharing a key (``formats.tar_input``).
WEBDATASET = "webdataset"
#: Documents of Megatron indexed datasets (``PREFIX.idx`` + ``PREFIX.bin``).
MEGATRON = "megatron"

#: The run (a ``core.driver.TwoPass`` with a ``for_request`` constructor) that shuffles each
#: family's records, as "module:Class", imported on first use.
RUNS: dict[str, str] = {LINES: "bigshuf.formats.line_run:LineRun", TABLE: "bigshuf.formats.table_run:TableRun"}


@dataclass(frozen=True)
class FileFormat:
    """One kind of data file."""

    name: str
    #: ``lines`` (records are separated lines) or ``table`` (records are rows of a schema).
    family: str
    #: Lower-case name suffixes, with the dot.
    suffixes: tuple[str, ...] = ()
    #: (offset, bytes) pairs, any of which identifies a regular file of this format.
    magic: tuple[tuple[int, bytes], ...] = ()
    #: Whether a name may add a compression suffix (``.jsonl.zst``); the file is then compressed as a whole.
    compressible: bool = False
    #: Whether table rows can be written in it (JSON Lines: yes; plain text: no).
    holds_rows: bool = True
    #: Why one of its records may not be written twice, as a rate above 1 would (None: it may); the
    #: refusal of such a rate that ``check_rates`` words for every engine.
    no_copies: str | None = None


FORMATS: dict[str, FileFormat] = {}


def register(fmt: FileFormat, run: str | None = None) -> None:
    """Add ``fmt`` (a later entry of the same name replaces the earlier), and the run of a new
    family (``"module:Class"``)."""
    FORMATS[fmt.name] = fmt
    if run is not None:
        RUNS[fmt.family] = run


def run_class(family: str) -> Any:
    """The run class of ``family``'s records, imported now."""
    module, _, name = RUNS[family].partition(":")
    return getattr(importlib.import_module(module), name)


register(FileFormat("parquet", TABLE, (".parquet", ".pq"), ((0, b"PAR1"),)))
register(FileFormat("arrow", TABLE, (".arrow", ".feather", ".ipc"), ((0, b"ARROW1"),)))
# An Arrow IPC stream (as Hugging Face ``datasets`` writes ``.arrow``): its continuation marker.
register(FileFormat("stream", TABLE, (), ((0, b"\xff\xff\xff\xff"),)))
register(FileFormat("jsonl", LINES, (".jsonl", ".ndjson", ".json"), compressible=True))
# Tar shards (``.tar``, ``.tar.gz``, ``.tar.zst``): the ustar magic, in the first header.
# A tar sample written twice keeps its one key, and WebDataset reads two samples of one key side by side as one.
register(
    FileFormat(
        "tar", WEBDATASET, (".tar",), ((257, b"ustar"),), compressible=True, holds_rows=False,
        no_copies="would write samples twice under one key, which WebDataset reads as one sample; tar sources take rates up to 1",
    ),
    "bigshuf.formats.tar_run:TarRun",
)
# Named by its .idx; the .bin beside it is read with it (formats.megatron).
register(
    FileFormat("megatron", MEGATRON, (".idx",), ((0, b"MMIDIDX\x00\x00"),), holds_rows=False),
    run="bigshuf.formats.megatron_run:MegatronRun",
)
register(FileFormat("text", LINES, (".txt", ".csv", ".tsv", ".fastq", ".fq"), compressible=True, holds_rows=False))


def check_rates(family: str, names: Sequence[str], rates: Sequence[Fraction], mixed: bool) -> None:
    """Refuse a rate above 1 (given, or solved from a ``--mix`` when ``mixed``) when ``family``'s
    records may not be written twice (its format's ``no_copies`` says why): every engine's check."""
    from fractions import Fraction

    why = next((fmt.no_copies for fmt in FORMATS.values() if fmt.family == family and fmt.no_copies), None)
    if why is None:
        return
    for name, rate in zip(names, rates):
        if rate > 1:
            how = f"the {option('mix')} needs it: lower {option('total')} or this source's share" if mixed else "give 1 or less"
            shown = f"{float(rate):g}"
            if Fraction(shown) <= 1:  # rounded down to 1 (1.0000001): shown in full, as it is above 1
                shown = repr(float(rate)) if float(rate) > 1 else str(rate)
            raise UsageError(f"source '{name}': rate {shown} {why} ({how})")


def is_table(name: str | None) -> bool:
    """Whether ``name`` is a registered format of table rows (Parquet, Arrow...)."""
    return name in FORMATS and FORMATS[name].family == TABLE


def by_magic(head: bytes) -> FileFormat | None:
    """The format whose magic bytes ``head`` (a file's first ``MAGIC_BYTES``) starts with, if any."""
    for fmt in FORMATS.values():
        if any(head[offset : offset + len(magic)] == magic for offset, magic in fmt.magic):
            return fmt
    return None


def by_suffix(name: str) -> FileFormat | None:
    """The format a (lower-case, compression suffix already removed if ``compressible``) name ends in."""
    for fmt in FORMATS.values():
        if fmt.suffixes and name.endswith(fmt.suffixes):
            return fmt
    return None


def magic_bytes() -> int:
    """How many leading bytes decide every registered format's magic."""
    return max((offset + len(magic) for fmt in FORMATS.values() for offset, magic in fmt.magic), default=0)


def suffixes(family: str, *, compressible: bool | None = None) -> tuple[str, ...]:
    """The suffixes of ``family``'s formats (only those that may be compressed, or not, if asked)."""
    return tuple(
        s for fmt in FORMATS.values() if fmt.family == family and compressible in (None, fmt.compressible) for s in fmt.suffixes
    )
