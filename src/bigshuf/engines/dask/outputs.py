"""``--split``, ``--shard-records``, ``--shard-size`` and ``--manifest`` on the Dask engine: the output cut as the local
engine cuts it (``storage.layout`` resolves the counts), each file written whole by one pass-2 task
under a temporary name, and all of them put in place together, with the manifest if asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError, option
from ...formats.detect import read_back
from ...quoting import quote_arg
from ...storage import remote
from ...storage.layout import Sharding, SplitPart, shard_option, split_counts, split_target
from ...storage.manifest import build_manifest, input_entries, write_manifest
from ...storage.manifest import OutputFile
from ...storage.commit import refuse_shared_name
from ...storage.paths import followed_path, generated_path
from ...storage.shards import OPEN_ENDED_PROBE, check_outputs, check_shard_count, shard_names
from ...storage.sinks import CodecChoice
from ..cluster import url_manifest_refusal
from .tasks import GatherResult, ScatterResult, ScatterTask

#: How a URL pattern is shown in errors about shard names.
URL_EXAMPLE = "s3://bucket/out/part-{:05d}.jsonl"


@dataclass(frozen=True)
class Layout:
    """How a run's output is cut: into ``split`` parts, each into files by ``sharding``, with a ``manifest``."""

    sharding: Sharding
    split: tuple[SplitPart, ...] | None
    manifest: str | None
    files: bool = False  # every file laid out, even one (a Megatron pair is committed as two files)

    @property
    def on(self) -> bool:
        """Whether the output is laid out here (else the plain or ``--shards`` output of ``driver``)."""
        return self.files or self.split is not None or self.sharding.open_ended or self.manifest is not None


@dataclass(frozen=True)
class PlannedFile:
    """One output file: its split (None without ``--split``), that split's target, its final name
    (a URL or a real local path) and the output records ``[first, stop)`` it holds."""

    split: str | None
    target: str
    final: str
    first: int
    stop: int


def check_layout(
    target: str | None, layout: Layout, compress: CodecChoice | None, suffix: str | None, inputs: Sequence[str] = (),
    dry_run: bool = False, input_directories: Sequence[str] = (),
) -> None:
    """Before pass 1, as the local engine checks: local targets writable and distinct, the
    manifest's directory writable; URL patterns that name shards; no manifest of URL outputs
    (``dry_run``: the same checks touching nothing, for ``--dry-run``)."""
    if target is None or target == "-":
        given = option("split") if layout.split else shard_option(layout.sharding) if layout.sharding.on else option("manifest")
        raise UsageError(f"{given} needs {option('output')} naming files")
    if layout.manifest is not None:
        why = url_manifest_refusal(target, layout.manifest)
        if why is not None:
            raise UsageError(why)
    if not remote.is_url(target):
        check_outputs(
            target, layout.sharding, layout.split, layout.manifest, compress, suffix, inputs=inputs, dry_run=dry_run,
            input_directories=input_directories, taken=read_back,
        )
        return
    targets = [target] if layout.split is None else [split_target(target, p.name) for p in layout.split]
    owner: dict[str, str] = {}
    for name, each in zip([""] if layout.split is None else [p.name for p in layout.split], targets):
        if layout.sharding.count is not None:
            urls = _names(each, layout.sharding, range(layout.sharding.count), compress, suffix)
        elif layout.sharding.open_ended:
            urls = _names(each, layout.sharding, OPEN_ENDED_PROBE, compress, suffix)
        else:
            urls = [each]
        for url in urls:  # objects are written in place: two splits on one URL would lose one
            if url in owner:
                raise UsageError(f"{option('split')}: splits {quote_arg(owner[url])} and {quote_arg(name)} would both be written to {url}")
            owner[url] = name


def _names(
    target: str, sharding: Sharding, numbers: Sequence[int], compress: CodecChoice | None, suffix: str | None,
    split: bool = False,
) -> list[str]:
    """The final names of files ``numbers`` of one (``split``'s) ``target``: URLs, or local paths
    (a name bigshuf made, a shard's or a split's, with only its directory resolved)."""
    if not sharding.on:
        return [target if remote.is_url(target) else generated_path(target) if split else followed_path(target)]
    flag = shard_option(sharding)
    if remote.is_url(target):
        return shard_names(
            target, len(numbers), compress, target.endswith("/"), suffix=suffix, example=URL_EXAMPLE,
            directory_words="a directory (a URL ending in /)", indices=numbers, option_name=flag,
        )
    directory = os.path.isdir(target) or target.endswith(os.sep)
    names = shard_names(target, len(numbers), compress, directory, suffix=suffix, indices=numbers, option_name=flag)
    return [generated_path(name) for name in names]


def plan_files(
    target: str, layout: Layout, total: int, compress: CodecChoice | None, suffix: str | None,
    size_ends: Callable[[int, int], list[int]] | None = None,
) -> list[PlannedFile]:
    """Every output file in order, once ``total`` output records are known: the splits' counts as
    ``storage.layout`` resolves them, each split cut into files as the local engine cuts it (by
    ``--shard-size``: where ``size_ends(start, count)`` says each file of the split ends)."""
    counts = [total] if layout.split is None else split_counts(layout.split, total)
    names: list[str | None] = [None] if layout.split is None else [p.name for p in layout.split]
    planned: list[PlannedFile] = []
    start = 0
    for name, count in zip(names, counts):
        each = target if name is None else split_target(target, name)
        files = layout.sharding.files(count)
        ends = None
        if files is None:
            assert size_ends is not None, "files cut by size need their ends measured"
            ends = size_ends(start, count)
            files = len(ends)
        if layout.sharding.open_ended and files > 1 and not remote.is_url(each):
            check_shard_count(each, files * len(names))
        first = start
        for i, final in enumerate(_names(each, layout.sharding, range(files), compress, suffix, name is not None)):
            stop = layout.sharding.file_end(start, count, i) if ends is None else ends[i]
            planned.append(PlannedFile(name, each, final, first, stop))
            first = stop
        start += count
    refuse_shared_name((file.final for file in planned), "nothing was written")  # (URL objects have no commit)
    return planned


def shards_after(layout: Layout, planned: Sequence[PlannedFile], compress: CodecChoice | None, suffix: str | None) -> list[tuple[str, int]]:
    """Each local split's shard after its last, and how many shards it has (none unsharded), as the local engine names them."""
    if not layout.sharding.on:
        return []
    after = []
    for target in dict.fromkeys(p.target for p in planned):
        if not remote.is_url(target):
            written = sum(1 for p in planned if p.target == target)
            after.append((_names(target, layout.sharding, [written], compress, suffix)[0], written))
    return after


def input_counts(tasks: Sequence[ScatterTask], results: Sequence[ScatterResult], inputs: int, with_bytes: bool) -> list[tuple[int, int | None]]:
    """Each input's records as pass 1 read them, and ``with_bytes`` (the format's ``input_bytes``) their
    bytes as the local engine counts them (lines: separators included; tar samples: their raw blocks), else None."""
    records = [0] * inputs
    nbytes = [0] * inputs
    for task, result in zip(tasks, results):
        if result.counted is not None:  # the segments do not tell them: copies of records, or samples with their lengths
            records[task.file_index] += sum(r for r, _b in result.counted)
            nbytes[task.file_index] += sum(b for _r, b in result.counted)
            continue
        for segment in result.segments:
            records[task.file_index] += int(segment.counts.sum())
            nbytes[task.file_index] += int(segment.bounds[-1])
    return [(r, b if with_bytes else None) for r, b in zip(records, nbytes)]


def write_run_manifest(
    manifest: str, temp: str, info: dict[str, Any], planned: Sequence[PlannedFile], results: Sequence[GatherResult],
    temps: Sequence[str], kind: str, sync: bool,
) -> tuple[str, str]:
    """Write the manifest (``build_manifest``'s document: ``info`` and every file's records, bytes,
    size on disk and fingerprint from its task) to ``temp``; return its move into place."""
    final = generated_path(manifest)
    outputs = [OutputFile(p.split, p.final, r.records, fingerprint=r.written) for p, r in zip(planned, results)]
    sizes = {p.final: os.stat(t).st_size for p, t in zip(planned, temps)}
    document = build_manifest(info, outputs, [None] * len(outputs), sizes, os.path.dirname(final), kind)
    write_manifest(temp, final, document, sync, manifest)
    return temp, final


def inputs_entry(
    names: Sequence[str], counts: list[tuple[int, int | None]], stamps: dict[str, tuple[int, int] | None],
) -> list[dict[str, Any]]:
    """The manifest's inputs: local files with their size and mtime as pass 1 read them (``stamps``,
    by name, as ``remote.stamp`` took them before it), URLs by name; records (and bytes) read."""
    read_as = [stamps.get(n, stamps.get(remote.canonical(n))) for n in names]  # (a Megatron .bin is stored by its URL)
    return input_entries(names, counts, [not remote.is_url(n) for n in names], [s if s != (-1, 0) else None for s in read_as])

