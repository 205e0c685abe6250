"""What kind of data a path holds (Parquet, Arrow IPC, JSON Lines, lines), without importing pyarrow.

The command line decides Arrow's memory pool from this before pyarrow is first imported.
"""

from __future__ import annotations

import os
import stat

from ..errors import InputError, UsageError, option

#: File kinds by suffix; ``jsonl`` may also carry a compression suffix (``.jsonl.zst``).
TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
#: Line files a directory operand contributes (each also with a compression suffix, ``.jsonl.zst``).
LINE_SUFFIXES = (".txt", *JSON_SUFFIXES, ".csv", ".tsv", ".fastq", ".fq")

#: Output suffixes that name formats bigshuf does not write rows in.
UNWRITABLE_SUFFIXES = (".csv", ".tsv", ".txt")


def sniff_kind(path: str, strict: bool = False) -> str | None:
    """``parquet``, ``arrow`` (IPC file, Feather v2) or ``stream`` (IPC stream, as Hugging Face
    ``datasets`` writes ``.arrow``) by a regular file's magic bytes, else None.

    Only regular files are opened: reading a FIFO's first bytes would take them from the run.
    ``strict`` makes an unreadable file an error instead of None.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        if strict:
            raise InputError(f"{path}: {e.strerror}") from None
        return None
    if head[:4] == b"PAR1":
        return "parquet"
    if head == b"ARROW1":
        return "arrow"
    if head[:4] == b"\xff\xff\xff\xff":
        return "stream"
    return None


def suffix_kind(path: str) -> str | None:
    """``parquet``, ``arrow`` or ``jsonl`` by the name's suffix (a compression suffix after ``.jsonl`` allowed)."""
    from ..storage.codecs import CODECS, codec_for_suffix

    lower = path.lower()
    for suffix, kind in TABLE_SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    codec = codec_for_suffix(lower)
    if codec is not None:
        lower = lower[: -len(next(s for s in CODECS[codec].suffixes if lower.endswith(s)))]
    return "jsonl" if lower.endswith(JSON_SUFFIXES) else None


def is_table_input(path: str) -> bool:
    """Whether ``path`` is a directory of tables, a Parquet / Arrow IPC file, or a file named as one."""
    if path == "-":
        return False
    if os.path.isdir(path):
        found = dataset_files(path)
        return bool(found) and data_kind(found[0]) == "table"
    if sniff_kind(path) is not None:
        return True
    return os.path.isfile(path) and suffix_kind(path) in ("parquet", "arrow")


def data_kind(name: str) -> str | None:
    """``table`` or ``lines`` by a file name's suffix (line files may add a compression suffix), else None."""
    from ..storage.codecs import CODECS, codec_for_suffix

    lower = name.lower()
    if lower.endswith(tuple(TABLE_SUFFIXES)):
        return "table"
    codec = codec_for_suffix(lower)
    if codec is not None:
        lower = lower[: -len(next(s for s in CODECS[codec].suffixes if lower.endswith(s)))]
    return "lines" if lower.endswith(LINE_SUFFIXES) else None


def dataset_files(path: str) -> list[str]:
    """A directory's data files (see ``data_kind``), recursively in name order; names starting with
    ``.`` or ``_`` are skipped and symlinked directories not followed. One kind only: a directory
    mixing line files and tables is an error naming one of each."""
    found = []
    for root, dirs, files in os.walk(path, onerror=_unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if not name.startswith((".", "_")) and data_kind(name) is not None:
                found.append(os.path.join(root, name))
    kinds: dict[str | None, str] = {}
    for f in found:
        kinds.setdefault(data_kind(f), f)
    if len(kinds) > 1:
        raise UsageError(
            f"{path}: holds both line files ({kinds['lines']}) and tables ({kinds['table']}); "
            "shuffle them in separate runs, or name the files to use"
        )
    return found


def _unreadable(error: OSError) -> None:
    """A directory of a dataset that cannot be listed fails the run: skipping it would lose its data."""
    raise InputError(f"{error.filename}: cannot list directory: {error.strerror}")


def expand_directories(paths: list[str]) -> list[str]:
    """``paths`` with every directory replaced by its data files (``dataset_files``).

    A directory holding none stays as it is and is read as a file, so the read reports it
    (``read error: Is a directory``), as GNU shuf does.
    """
    out: list[str] = []
    for path in paths:
        found = dataset_files(path) if path != "-" and os.path.isdir(path) else []
        out.extend(found or [path])
    return out


def refuse_terminal(what: str) -> None:
    """Refuse to write binary data (``what``) to standard output when it is a terminal, as zstd does."""
    if os.isatty(1):
        raise UsageError(f"refusing to write {what} to a terminal; give {option('output')} a file name, or pipe the output")


def output_kind(target: str | None, input_kind: str, chosen: str | None = None) -> str:
    """The output's format: ``chosen`` (``--output-format``), else named by ``-o``'s suffix (or the
    shard pattern's), else the input's (an IPC stream is written as an IPC file)."""
    if chosen is not None:
        if chosen not in ("parquet", "arrow", "jsonl"):
            raise UsageError(f"{option('output_format')}: choose parquet, arrow or jsonl, not '{chosen}'")
        return chosen
    default = "arrow" if input_kind == "stream" else input_kind
    if target is None or target == "-" or os.path.isdir(target) or target.endswith(os.sep):
        return default
    if target.lower().endswith(UNWRITABLE_SUFFIXES):
        raise UsageError(f"{target}: rows are written as Parquet, Arrow or JSON Lines; give {option('output')} a .parquet, .arrow or .jsonl name")
    return suffix_kind(target) or default
