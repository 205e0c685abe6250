"""What kind of data a path holds (Parquet, Arrow IPC, JSON Lines, lines), without importing pyarrow.

The command line decides Arrow's memory pool from this before pyarrow is first imported.
"""

from __future__ import annotations

import glob
import os
import posixpath
import re
import stat
from typing import TYPE_CHECKING

from ..errors import InputError, UsageError, option
from . import registry
from ..quoting import quote_arg, quote_name
from ..storage.paths import LiteralName

if TYPE_CHECKING:
    from ..storage.sinks import CodecChoice


def sniff_kind(path: str, strict: bool = False) -> str | None:
    """The registered format (``parquet``, ``arrow``, ``stream``...) a regular file's magic bytes
    name, else None.

    Only regular files are opened: reading a FIFO's first bytes would take them from the run.
    ``strict`` makes an unreadable file an error instead of None.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            head = f.read(registry.magic_bytes())
    except OSError as e:
        if strict:
            raise InputError(f"{quote_name(path)}: {e.strerror}") from None
        return None
    fmt = registry.by_magic(head)
    return None if fmt is None else fmt.name


def refuse_data_files_in_streams(head: bytes, name: str) -> None:
    """Refuse an input read as a stream (standard input, a pipe) that starts (``head``: its first
    bytes, decompressed) as a tar archive, a table or a Megatron index does: a line run would
    shuffle its bytes as text (exit 0, garbage out), and such data is read from named files."""
    from .tar_members import looks_like_tar

    fmt = registry.FORMATS["tar"] if looks_like_tar(head) else registry.by_magic(head)
    if fmt is None or fmt.family == registry.LINES:
        return
    files = registry.FAMILIES[fmt.family].files_words
    shown = "standard input" if name == "-" else quote_name(name)
    raise InputError(f"{shown} holds {fmt.noun}: name the file(s) ({files} are read from files)")


def _without_codec(name: str) -> str:
    """A lower-case file name without its compression suffix (``.zst``, ``.gz``...), if it has one;
    a compressed tar's short name (``.tgz``, ``.tzst``...) becomes its ``.tar`` name."""
    from ..storage.codecs import CODECS, codec_for_suffix

    codec = codec_for_suffix(name)
    if codec is None:
        return name
    short = [s for s in CODECS[codec].tar_suffixes if name.endswith(s)]
    if short:
        return name[: -len(short[0])] + ".tar"
    return name[: -len(next(s for s in CODECS[codec].suffixes if name.endswith(s)))]


def _named_format(name: str) -> registry.FileFormat | None:
    """The format a file name's suffix names (after a compression suffix, for formats compressed whole)."""
    lower = name.lower()
    fmt = registry.by_suffix(lower)
    if fmt is not None and not fmt.compressible:
        return fmt
    fmt = registry.by_suffix(_without_codec(lower))
    return fmt if fmt is not None and fmt.compressible else None


def suffix_kind(path: str) -> str | None:
    """The row format a name's suffix names (``parquet``, ``arrow`` or ``jsonl``, a compression suffix
    after ``.jsonl`` allowed); None for line files that hold no rows (``.txt``) and other names."""
    fmt = _named_format(path)
    return fmt.name if fmt is not None and fmt.holds_rows else None


def is_table_input(path: str) -> bool:
    """Whether ``path`` is a directory of tables, a Parquet / Arrow IPC file, or a file named as one."""
    if path == "-":
        return False
    if os.path.isdir(path):
        found = dataset_files(path)
        return bool(found) and data_kind(found[0]) == registry.TABLE
    sniffed = sniff_kind(path)
    if sniffed is not None:
        return registry.is_table(sniffed)
    return os.path.isfile(path) and data_kind(path) == registry.TABLE


def misnamed_table(name: str) -> InputError | None:
    """The error for a file named as a table (``.parquet``, ``.arrow``...) whose first bytes are no
    table's magic (None for other names): on every engine a damaged or misnamed table is refused,
    not shuffled as lines."""
    named = suffix_kind(name)
    if named == "parquet":
        return InputError(f"{quote_name(name)}: not a Parquet file (it does not start with PAR1 and a page header)")
    if named == "arrow":
        return InputError(f"{quote_name(name)}: not an Arrow IPC file or stream (it starts with neither ARROW1 nor 0xFFFFFFFF)")
    return None


def data_kind(name: str) -> str | None:
    """``table`` or ``lines`` (the format family) by a file name's suffix, else None."""
    fmt = _named_format(name)
    return None if fmt is None else fmt.family


#: The JSON files Hugging Face ``datasets`` writes beside the Arrow files of ``save_to_disk`` (a
#: ``DatasetDict``'s ``dataset_dict.json`` one level up, beside its splits' directories): metadata, not records.
DATASETS_METADATA = frozenset({"dataset_info.json", "state.json"})
DATASET_DICT = "dataset_dict.json"


def without_datasets_metadata(files: list[str]) -> list[str]:
    """``files`` (paths or URLs, ``/``-separated) less the metadata ``save_to_disk`` writes where it
    wrote tables: ``DATASETS_METADATA`` in a directory of table files, ``DATASET_DICT`` in one whose
    subdirectories hold them. A file of those names anywhere else is data like any other."""
    tables = {posixpath.dirname(f) for f in files if data_kind(f) == registry.TABLE}
    parents = {posixpath.dirname(d) for d in tables}

    def metadata(f: str) -> bool:
        where, name = posixpath.split(f)
        return (name in DATASETS_METADATA and where in tables) or (name == DATASET_DICT and where in parents)

    return [f for f in files if not metadata(f)]


#: How a manifest bigshuf wrote starts (``storage.manifest``: pretty-printed, its format number
#: ``bigshuf_manifest`` the first key, as it still is with keys sorted): one JSON object over several
#: lines, which no JSON Lines record is. At most ``MANIFEST_PREFIX`` bytes of a file are read to tell.
_MANIFEST_START = re.compile(rb'\A\s*\{[ \t\r]*\n\s*"bigshuf_manifest"\s*:\s*[0-9]')
MANIFEST_PREFIX = 64


def is_bigshuf_manifest(path: str) -> bool:
    """Whether the file ``path`` (a link followed, as an input's is) is a manifest bigshuf wrote:
    an uncompressed line file that is a regular file and starts as one (``_MANIFEST_START``). One
    that cannot be opened or read is not: its read as an input says why."""
    from ..storage.codecs import codec_for_suffix

    if data_kind(path) != registry.LINES or codec_for_suffix(path) is not None:
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # (a device is not opened: that alone may act)
            return False
        # Non-blocking: a FIFO put in its place since opens at once, and is no regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        head = os.pread(fd, MANIFEST_PREFIX, 0) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        return False
    finally:
        os.close(fd)
    return _MANIFEST_START.match(head) is not None


def dataset_files(path: str) -> list[str]:
    """A directory's data files (see ``data_kind``), recursively in name order; names starting with
    ``.`` or ``_`` are skipped and symlinked directories not followed, as are ``DATASETS_METADATA``
    beside tables and bigshuf's own manifests (``--manifest out/manifest.json`` beside the shards
    it describes: its JSON read back as records, or a line file among tars). One kind only: a
    directory mixing two kinds (line files and tables, say) is an error naming one of each."""
    found = []
    for root, dirs, files in os.walk(path, onerror=_unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if not name.startswith((".", "_")) and data_kind(name) is not None:
                found.append(os.path.join(root, name))
    found = [f for f in without_datasets_metadata(found) if not is_bigshuf_manifest(f)]
    kinds: dict[str | None, str] = {}
    for f in found:
        kinds.setdefault(data_kind(f), f)
    if len(kinds) > 1:
        (one, first), (two, second) = [(registry.FAMILIES[str(kind)].files_words, name) for kind, name in list(kinds.items())[:2]]
        raise UsageError(
            f"{quote_name(path)}: holds both {one} ({quote_name(first)}) and {two} ({quote_name(second)}); "
            "shuffle them in separate runs, or name the files to use"
        )
    return found


def _unreadable(error: OSError) -> None:
    """A directory of a dataset that cannot be listed fails the run: skipping it would lose its data."""
    raise InputError(f"{quote_name(error.filename)}: cannot list directory: {error.strerror}")


def named_files(path: str) -> list[str]:
    """The files a local input name stands for (``named_inputs``)."""
    return named_inputs(path)[0]


def named_inputs(path: str) -> tuple[list[str], list[str]]:
    """The files a local input name stands for, and the directories among what it names: a glob's
    matches (``data/*.jsonl.gz``, ``**`` recursive), sorted, each once (a directory it matches stands
    for its data files, which ``**`` may match again), [] where it matches none; else, where a file
    has that very name, the name holds no pattern or it is a ``LiteralName``, ``expand_directories``
    of it. The directories are those whose later read would take back an output (``read_back``)."""
    if isinstance(path, LiteralName) or path == "-" or os.path.lexists(path) or not glob.has_magic(path):
        return expand_directories([path]), [path] if path != "-" and os.path.isdir(path) else []
    found: list[str] = []
    directories: list[str] = []
    for match in sorted(glob.glob(path, recursive=True)):
        if os.path.isdir(match):
            directories.append(match)
            found.extend(dataset_files(match))
        else:
            found.append(match)
    return list(dict.fromkeys(found)), directories


def read_back(name: str) -> bool:
    """Whether a directory's read takes the file ``name`` as data (its suffix names a kind): what
    ``storage.shards.check_not_read_back`` asks of an output in an input directory."""
    return data_kind(name) is not None


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


def megatron_prefix(path: str) -> str | None:
    """The dataset prefix an operand names (``PREFIX.idx``, ``PREFIX.bin`` with an ``.idx`` beside it, or
    ``PREFIX`` itself when it is no file and ``PREFIX.idx`` is one), else None; the files are checked later."""
    if path == "-" or "://" in path:
        return None
    if path.endswith(".idx"):
        return path[:-4]
    if path.endswith(".bin") and os.path.lexists(path[:-4] + ".idx"):
        return path[:-4]
    if not os.path.lexists(path) and os.path.isfile(path + ".idx"):
        return path
    return None


def megatron_files(path: str) -> list[str]:
    """The files an input of a Megatron run stands for: its dataset's ``.bin`` and ``.idx``, or ``path`` itself."""
    prefix = megatron_prefix(path)
    return [path] if prefix is None else [prefix + ".bin", prefix + ".idx"]


def megatron_inputs(operands: registry.Operands) -> bool:
    """Whether a request shuffles Megatron documents: an input names a dataset (``PREFIX``, ``.idx``,
    ``.bin``; a URL's ``.idx``, URLs being told by their names)."""
    return any(megatron_prefix(p) is not None for p in operands.paths) or any(megatron_url_prefix(u) is not None for u in operands.urls)


def table_inputs(operands: registry.Operands) -> bool:
    """Whether a request shuffles rows of Parquet / Arrow data: every input a local file and one a
    table, or a table output by ``output_format`` or the output's suffix."""
    target = operands.output
    named = [operands.output_format, None if target in (None, "-") else suffix_kind(target or "")]
    tables_in = len(operands.paths) == operands.count and any(is_table_input(p) for p in operands.paths)
    return tables_in or any(registry.is_table(n) for n in named)


def megatron_url_prefix(name: str) -> str | None:
    """The dataset prefix a URL names by its index (``s3://bucket/corpus.idx``, a glob of them), else None:
    URLs are told to be datasets by their names, not read to decide."""
    return name[:-4] if "://" in name and name.endswith(".idx") else None


def refuse_terminal(what: str) -> None:
    """Refuse to write binary data (``what``) to standard output when it is a terminal, as zstd does."""
    if os.isatty(1):
        raise UsageError(f"refusing to write {what} to a terminal; give {option('output')} a file name, or pipe the output")


def output_kind(target: str | None, input_kind: str, chosen: str | None = None) -> str:
    """The output's format: ``chosen`` (``--output-format``), else named by ``-o``'s suffix (or the
    shard pattern's), else the input's (an IPC stream is written as an IPC file)."""
    if chosen is not None:
        writable = [f.name for f in registry.FORMATS.values() if f.holds_rows and f.suffixes]
        if chosen not in writable:
            raise UsageError(f"{option('output_format')}: choose {', '.join(writable[:-1])} or {writable[-1]}, not {quote_arg(chosen)}")
        return chosen
    default = "arrow" if input_kind == "stream" else input_kind
    if target is None or target == "-" or os.path.isdir(target) or target.endswith(os.sep):
        return default
    named = _named_format(target)
    if named is not None and not named.holds_rows:
        raise UsageError(f"{quote_name(target)}: rows are written as Parquet, Arrow or JSON Lines; give {option('output')} a .parquet, .arrow or .jsonl name")
    return suffix_kind(target) or default


def line_shard_suffix(inputs: list[str], compress: CodecChoice | None) -> str | None:
    """The suffix of the files of a ``--shards`` directory shuffled from line files ``inputs``: their
    record kind (``.jsonl``, ``.txt``, ...) and, unless ``compress`` says otherwise, their codec
    (``.jsonl.zst``); None (the codec's suffix alone) if they do not all share a kind. A URL is
    named by its path, its query string aside."""
    from ..storage.codecs import CODECS, codec_for_suffix
    from ..storage.sinks import output_codec

    kinds: set[str] = set()
    codecs: set[str | None] = set()
    for path in inputs:
        name = os.path.basename(path.split("?", 1)[0] if "://" in path else path).lower()
        codecs.add(codec_for_suffix(name))
        kinds.add(os.path.splitext(_without_codec(name))[1])
    if len(kinds) != 1 or not kinds <= set(registry.suffixes(registry.LINES)):
        return None
    if compress is not None:
        chosen = output_codec(None, compress)
        codec = None if chosen is None else chosen[0]
    else:
        codec = codecs.pop() if len(codecs) == 1 else None
    return kinds.pop() + (CODECS[codec].suffixes[0] if codec is not None else "")
