"""What a Dask run shuffles, decided once from its inputs: lines, Parquet / Arrow rows, tar samples or
Megatron documents.

Either way the result is the same plan for the driver: a ``TaskFormat``, the pass-1 tasks,
the bucket count, and how output files are compressed and named.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import UsageError, option
from ...formats import detect
from ...core.records import RecordFormat
from ...storage import remote
from ...storage.codecs import parse_compress
from ...storage.sinks import CodecChoice
from ...formats.tar_run import shard_suffix
from . import lines, megatron, rows, tars
from .tasks import ScatterTask, TaskFormat


@dataclass(frozen=True)
class Prepared:
    """A run's plan of pass 1: how records are handled, its tasks and buckets, and the output's
    stream codec (``compress``) and shard suffix in a directory (None: by the codec)."""

    fmt: TaskFormat
    tasks: list[ScatterTask]
    k: int
    compress: CodecChoice | None
    suffix: str | None
    names: tuple[str, ...] = ()  # every input file, as expanded (for the manifest)
    pairs: megatron.Pairs | None = None  # Megatron documents: the output pairs, every file laid out with its .idx


@dataclass(frozen=True)
class Settings:
    """The options that decide how records are read and written."""

    target: str | None
    shards: int | None
    limit: int
    zero_terminated: bool = False
    compress: str | None = None
    row_group_size: int | None = None
    output_format: str | None = None
    manifest: bool = False
    sharded: bool = False  # cut into files by --shard-records or --shard-size (a directory -o holds them)


def prepare(names: Sequence[str], settings: Settings, root: str) -> Prepared:
    """Expand the inputs (globs, directories of data files), tell lines from tables, and plan pass 1."""
    expanded = _expand_directories(list(names) or ["-"])
    if any(megatron.is_dataset(name) for name in expanded):
        return _prepare_documents(expanded, settings, root)
    files = remote.expand_inputs(expanded)
    heads = remote.read_ranges([(f.name, 0, min(8, f.size)) for f in files]) if files else []
    kinds = [rows.table_kind(head) for head in heads]
    if any(kinds):
        shown = _shown_names(expanded, files)
        if not all(kinds):
            raise UsageError(
                f"{shown[kinds.index(None)]}: not a Parquet or Arrow file; line files and tables cannot be shuffled together"
            )
        described = [rows.describe(f, k, name) for f, k, name in zip(files, kinds, shown) if k]
        return _prepare_rows(described, settings, root)
    is_tar = [_is_tar(f) for f in files]
    if any(is_tar):
        return _prepare_tars(files, is_tar, _shown_names(expanded, files), settings, root)
    target = settings.target
    if settings.output_format in ("parquet", "arrow") or (target not in (None, "-") and detect.suffix_kind(target or "") in ("parquet", "arrow")):
        raise UsageError(f"{option('dask')} writes Parquet and Arrow only from Parquet or Arrow inputs; convert line files with the local engine")
    if settings.row_group_size is not None or settings.output_format is not None:
        raise UsageError(f"{option('row_group_size')} and {option('output_format')} apply to Parquet and Arrow inputs")
    fmt = RecordFormat(0 if settings.zero_terminated else 10)
    choice = None if settings.compress is None else parse_compress(settings.compress)
    tasks = lines._scatter_tasks(files, settings.limit, root)
    k = lines._bucket_count(files, settings.limit, settings.shards, fmt.sep)
    return Prepared(lines.LineTasks(fmt), tasks, k, choice, None, tuple(f.name for f in files))


def _prepare_rows(files: list[rows.TableFile], settings: Settings, root: str) -> Prepared:
    """Plan a table run: schemas checked, output format and codec resolved as the local engine does."""
    from ...formats.table_output import resolve_codec
    from ...storage.codecs import CODECS

    if settings.zero_terminated:
        raise UsageError(f"{option('zero_terminated')} applies to lines, not to Parquet or Arrow rows")
    rows.check_schemas(files)
    target = settings.target
    kind = detect.output_kind(target, files[0].kind, settings.output_format)
    if kind != "jsonl" and target in (None, "-"):
        detect.refuse_terminal("Parquet" if kind == "parquet" else "Arrow IPC")
    codec = resolve_codec(kind, settings.compress, target)
    if settings.manifest and kind == "jsonl":
        raise UsageError(f"{option('manifest')}: rows written as JSON Lines cannot be checked against it; write .parquet or .arrow files")
    if settings.row_group_size is not None and settings.row_group_size < 1:
        raise UsageError(f"invalid {option('row_group_size')} value: '{settings.row_group_size}'")
    fmt = rows.row_format(files, kind, codec, settings.row_group_size, settings.limit)
    tasks = rows.scatter_tasks(files, settings.limit, root)
    k = rows.row_bucket_count(files, settings.limit, settings.shards)
    names = tuple(f.name for f in files)
    if kind != "jsonl":
        return Prepared(fmt, tasks, k, ("none", None), "." + kind, names)
    compressed = codec[0] != "none"
    return Prepared(fmt, tasks, k, codec, ".jsonl" + (CODECS[codec[0]].suffixes[0] if compressed else ""), names)


def _is_tar(f: remote.RemoteFile) -> bool:
    """Whether an input is a tar, as the local engine tells: a URL by its name (``.tar``, ``.tar.gz``,
    ``.tgz``...), a local file by its name or else its first block."""
    from ...formats import registry
    from ...formats.tar_input import is_tar_path

    if remote.is_url(f.name):
        return detect.data_kind(f.name.split("?", 1)[0].rsplit("/", 1)[-1]) == registry.WEBDATASET
    return is_tar_path(f.name)


def _prepare_tars(files: list[remote.RemoteFile], is_tar: list[bool], shown: list[str], settings: Settings, root: str) -> Prepared:
    """Plan a run of tar samples: every input a tar, a tar output, one pass-1 task per tar."""
    if not all(is_tar):
        raise UsageError(
            f"{shown[is_tar.index(True)]} is a tar archive and {shown[is_tar.index(False)]} is not: "
            "shuffle WebDataset tars in a run of their own"
        )
    used = (
        ("zero_terminated", settings.zero_terminated), ("row_group_size", settings.row_group_size is not None),
        ("output_format", settings.output_format is not None),
    )
    given = [option(name) for name, on in used if on]
    if given:
        raise UsageError(f"{', '.join(given)}: not available for WebDataset tar shards (samples, not lines)")
    tars.check_tar_target(settings.target)
    choice = None if settings.compress is None else parse_compress(settings.compress)
    return Prepared(
        tars.TarTasks(), tars.scatter_tasks(files, shown, root), tars.tar_bucket_count(files, settings.limit, settings.shards),
        choice, shard_suffix(choice), tuple(f.name for f in files),
    )
def _prepare_documents(names: list[str], settings: Settings, root: str) -> Prepared:
    """Plan a run of Megatron datasets: headers read and checked, pass 1 as runs of documents, ``.bin`` files out."""
    sharded = settings.sharded or settings.shards is not None
    fmt, tasks, k, pairs = megatron.prepare(names, settings.target, sharded, settings.shards, settings.limit, root)
    return Prepared(fmt, tasks, k, None, ".bin", tuple(d.bin_path for d in fmt.datasets), pairs)


def _shown_names(expanded: list[str], files: list[remote.RemoteFile]) -> list[str]:
    """The inputs' names for messages: as given (a relative path stays relative), glob matches as found."""
    if len(expanded) != len(files):
        return [f.name for f in files]
    return [f.name if any(c in name for c in "*?[") else name for name, f in zip(expanded, files)]


def _expand_directories(names: list[str]) -> list[str]:
    """Local directories replaced by their data files as the local engine finds them; directories
    on object stores by theirs (data-file suffixes, no name starting with ``.`` or ``_``)."""
    out: list[str] = []
    for name in names:
        if name == "-" or not remote.is_url(name):
            out.extend(detect.expand_directories([name]))
            continue
        fs, path = remote.filesystem(remote.canonical(name))
        if any(c in path for c in "*?[") or not fs.isdir(path):
            out.append(name)
            continue
        found = [p for p in sorted(fs.find(path)) if _data_file(p[len(path.rstrip("/")) + 1 :])]
        out.extend(fs.unstrip_protocol(p) for p in found)
        if not found:
            out.append(name)
    return out


def _data_file(relative: str) -> bool:
    """Whether a path inside a dataset directory names a data file (no part hidden or ``_``)."""
    parts = relative.split("/")
    return not any(p.startswith((".", "_")) for p in parts) and detect.data_kind(os.path.basename(relative)) is not None
