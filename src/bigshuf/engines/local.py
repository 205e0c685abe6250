"""The local engine: the shuffle in this process, with temporary buckets on this machine's disk."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import option
from .base import Engine

if TYPE_CHECKING:
    from ..formats.line_run import Options
    from ..progress import Progress
    from ..request import Request, ShuffleStats
    from ..storage.sinks import CodecChoice
    from ..storage.sources import Source


class LocalEngine(Engine):
    """Runs everything a request can ask for, except writing to URLs and the cluster's settings."""

    name = "local"

    def supports(self, request: Request) -> str | None:
        """Refuse the Dask engine's settings and a URL output (this engine writes local files)."""
        for setting in ("scheduler", "temp_url"):
            if getattr(request, setting) is not None:
                return f"{option(setting)} needs {option('dask')}"
        target = request.output
        if target is not None and "://" in target and not os.path.exists(os.path.dirname(target) or "."):
            return f"{target}: this engine writes local files; write to URLs with {option('dask')}"
        return None

    def run(self, request: Request, progress: Progress) -> ShuffleStats:
        """Shuffle in this process (see ``shuffle_local``)."""
        return shuffle_local(request, progress)


def shuffle_local(request: Request, progress: Progress) -> ShuffleStats:
    """The two local runs on the one driver, chosen here and only here: lines (``formats.line_run``)
    or Parquet / Arrow rows (``formats.table_run``)."""
    from ..core.records import RecordFormat
    from ..core.streams import seed_entropy
    from ..formats.detect import refuse_terminal
    from ..formats.line_run import LineRun, Options
    from ..request import ShuffleStats, resolve_memory
    from ..storage.sources import FileSource

    expanded = _open_urls(list(request.inputs))
    sources: list[Source] = [FileSource(s) if isinstance(s, str) else s for s in expanded]
    entropy = seed_entropy(request.seed, request.random_source)
    if request.tables:
        paths = [s for s in expanded if isinstance(s, str)]
        return _shuffle_tables(request, paths, entropy, resolve_memory(request.memory), progress)
    opts = Options(
        memory=resolve_memory(request.memory),
        entropy=entropy,
        fmt=RecordFormat(0 if request.zero_terminated else 10, request.lines_per_record),
        head_count=request.head_count,
        repeat=request.repeat,
        tmp_dir=request.tmp_dir,
        header=request.header,
        shards=request.shards,
        compress=_parse_compress(request.compress),
        compress_temp=request.compress_temp,
        verify=request.verify,
    )
    if request.output in (None, "-") and opts.compress is not None and opts.compress[0] != "none":
        refuse_terminal(f"{opts.compress[0]}-compressed data")
    if request.resume:
        assert request.output is not None  # Request.build refuses --resume without -o
        opts = replace(opts, resume_key=_resume_key(opts, sources, request.output))
    return ShuffleStats(*LineRun(opts, sources, request.output, progress, request.sync).run())


def _open_urls(inputs: list[str | Source]) -> list[str | Source]:
    """``inputs`` with every URL (``s3://...``, ``https://...``; globs expanded) that is not also a
    local path made a source read through fsspec."""
    from ..storage.remote import is_url, url_sources

    out: list[str | Source] = []
    for item in inputs:
        if isinstance(item, str) and is_url(item) and not os.path.exists(item):
            out.extend(url_sources([item]))
        else:
            out.append(item)
    return out


def _shuffle_tables(request: Request, paths: list[str], entropy: int, memory: int, progress: Progress) -> ShuffleStats:
    """Shuffle the rows of Parquet / Arrow / JSON Lines inputs into a table output (see ``api.shuffle``)."""
    from ..formats.detect import output_kind, refuse_terminal
    from ..formats.table_run import TableJob, shuffle_tables
    from ..formats.tables import open_inputs, parse_schema, resolve_codec
    from ..request import ShuffleStats

    target = request.output
    inputs = open_inputs(paths, parse_schema(request.schema) if request.schema is not None else None)
    kind = output_kind(target, inputs[0].kind, request.output_format)
    if kind != "jsonl" and target in (None, "-"):
        refuse_terminal("Parquet" if kind == "parquet" else "Arrow IPC")
    job = TableJob(
        inputs=inputs, output=target, kind=kind, codec=resolve_codec(kind, request.compress, target), memory=memory,
        entropy=entropy, head_count=request.head_count, tmp_dir=request.tmp_dir, shards=request.shards,
        compress_temp=request.compress_temp, verify=request.verify, row_group_size=request.row_group_size,
        sync=request.sync,
    )
    return ShuffleStats(*shuffle_tables(job, progress))


def _resume_key(opts: Options, sources: list[Source], output: str) -> str:
    """Names a job: same inputs (by path), output, seed and options give the same key."""
    from .. import __version__
    from ..storage.sources import FileSource

    job = {
        "version": __version__,
        "inputs": [os.path.abspath(s.path) for s in sources if isinstance(s, FileSource)],
        "output": os.path.abspath(output),
        "options": repr(replace(opts, tmp_dir=None)),
    }
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]


def _parse_compress(spec: str | None) -> CodecChoice | None:
    """``compress`` as a codec and level, None when the output's suffix decides."""
    if spec is None:
        return None
    from ..storage.codecs import parse_compress

    return parse_compress(spec)
