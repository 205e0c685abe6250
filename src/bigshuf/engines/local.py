"""The local engine: the shuffle in this process, with temporary buckets on this machine's disk."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import option
from .base import Engine

if TYPE_CHECKING:
    from ..progress import Progress
    from ..request import Request, ShuffleStats
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
    from ..core.streams import seed_entropy
    from ..formats.detect import refuse_terminal
    from ..formats.line_run import LineRun
    from ..request import ShuffleStats
    from ..storage.codecs import parse_compress
    from ..storage.sources import FileSource

    expanded = _open_urls(list(request.inputs))
    entropy = seed_entropy(request.seed, request.random_source)
    if request.tables:
        return _shuffle_tables(request, [s for s in expanded if isinstance(s, str)], entropy, progress)
    if request.output in (None, "-") and request.compress is not None:
        codec = parse_compress(request.compress)[0]
        if codec != "none":
            refuse_terminal(f"{codec}-compressed data")
    sources: list[Source] = [FileSource(s) if isinstance(s, str) else s for s in expanded]
    return ShuffleStats(*LineRun(request, sources, entropy, progress).run())


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


def _shuffle_tables(request: Request, paths: list[str], entropy: int, progress: Progress) -> ShuffleStats:
    """Shuffle the rows of Parquet / Arrow / JSON Lines inputs into a table output (see ``api.shuffle``)."""
    from ..formats.detect import output_kind, refuse_terminal
    from ..formats.table_run import TableRun
    from ..formats.table_input import open_inputs
    from ..formats.table_output import resolve_codec
    from ..formats.tables import parse_schema
    from ..request import ShuffleStats

    target = request.output
    inputs = open_inputs(paths, parse_schema(request.schema) if request.schema is not None else None)
    kind = output_kind(target, inputs[0].kind, request.output_format)
    if kind != "jsonl" and target in (None, "-"):
        refuse_terminal("Parquet" if kind == "parquet" else "Arrow IPC")
    codec = resolve_codec(kind, request.compress, target)
    return ShuffleStats(*TableRun(request, inputs, kind, codec, entropy, progress).run())
